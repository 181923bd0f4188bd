"""``usqa evaluate --reviews`` and ``usqa calibrate --reviews`` as text: the model against
the reviewers, reviewers against each other, and the proposed grade thresholds.

Station, operator and transducer names come from file headers and are shown escaped
(:func:`worker.report.text.shown_text`), like every group name of ``usqa report``.
"""

from __future__ import annotations

from collections.abc import Sequence

from db.qa.agreement import (
    GRADE_ORDER,
    OVERALL,
    AgreementReport,
    DefectAgreement,
    Figure,
    GroupAgreement,
    ReviewerPairs,
)
from db.qa.calibration import Calibration, Part
from worker.report.text import group_label, shown_text, table

__all__ = ["agreement_text", "calibration_text", "figure_text"]

LABELS = {
    OVERALL: "All ratings",
    "reviewer": "Reviewer",
    "station": "Station",
    "operator": "Operator",
    "transducer": "Transducer",
}


def figure_text(figure: Figure, *, percent: bool = False) -> str:
    """``60% [28, 83]`` or ``0.52 [-0.20, 0.82]``; ``-`` when undefined."""
    if figure.value is None:
        return "-"
    if percent:
        text = f"{figure.value * 100:.0f}%"
        if figure.low is not None and figure.high is not None:
            text += f" [{figure.low * 100:.0f}, {figure.high * 100:.0f}]"
        return text
    text = f"{figure.value:.2f}"
    if figure.low is not None and figure.high is not None:
        text += f" [{figure.low:.2f}, {figure.high:.2f}]"
    return text


def _label(dimension: str, group: str | None) -> str:
    if dimension == OVERALL:
        return LABELS[OVERALL]
    return f"{LABELS.get(dimension, dimension)} {shown_text(group_label(group))}"


def _notes(label: str, figures: Sequence[tuple[str, Figure]]) -> list[str]:
    return [
        f"  {label}: {name} undefined, {f.reason}."
        for name, f in figures
        if f.value is None and f.reason
    ]


def _version_lines(report: AgreementReport, version: str) -> list[str]:
    groups = [g for g in report.groups if g.model_version == version]
    overall = groups[0]
    lines = [
        "",
        f"Model {shown_text(version)}: {overall.ratings} ratings of {overall.scans} scans, "
        f"{overall.accepted} of them accepted as shown.",
    ]
    rows, notes = [], []
    for g in groups:
        label = _label(g.dimension, g.group)
        rows.append(
            [
                label,
                str(g.ratings),
                str(g.scans),
                str(g.accepted),
                figure_text(g.agreement, percent=True),
                figure_text(g.kappa),
                figure_text(g.spearman),
            ]
        )
        notes += _notes(label, [("kappa", g.kappa), ("Spearman", g.spearman)])
    header = ["Group", "Ratings", "Scans", "Accepted", "Agreement", "Kappa", "Spearman"]
    lines += table(header, rows)
    if notes:
        lines += ["Not computed:", *notes]
    lines += _confusion_lines(overall)
    lines += _defect_lines(overall)
    return lines


def _confusion_lines(g: GroupAgreement) -> list[str]:
    header = ["Reviewer \\ model", *GRADE_ORDER]
    rows = [
        [grade, *(str(c) for c in counts)]
        for grade, counts in zip(GRADE_ORDER, g.confusion, strict=True)
    ]
    title = "Grades, all ratings (rows: the reviewer's grade; columns: the model's):"
    return ["", title, *table(header, rows)]


def _defect_row(d: DefectAgreement) -> list[str]:
    return [
        d.defect,
        str(d.tp),
        str(d.fp),
        str(d.fn),
        figure_text(d.precision, percent=True),
        figure_text(d.recall, percent=True),
    ]


def _defect_lines(g: GroupAgreement) -> list[str]:
    if g.defect_ratings == 0:
        return ["", "Defects: this model version does not name defects."]
    if not g.defects:
        return [
            "",
            f"Defects: neither the model nor the reviewers named any on the {g.defect_ratings} "
            "ratings.",
        ]
    header = ["Defect", "Both", "Model only", "Reviewer only", "Precision", "Recall"]
    lines = ["", f"Defects, model against reviewers ({g.defect_ratings} ratings):"]
    lines += table(header, [_defect_row(d) for d in g.defects])
    notes = [n for d in g.defects for n in _notes(d.defect, [("precision", d.precision)])]
    notes += [n for d in g.defects for n in _notes(d.defect, [("recall", d.recall)])]
    if notes:
        lines += ["Not computed:", *notes]
    return lines


def _pair_lines(pairs: Sequence[ReviewerPairs]) -> list[str]:
    if not pairs:
        return ["", "Between reviewers: no scan was rated by two or more reviewers."]
    overall = pairs[0]
    lines = [
        "",
        f"Between reviewers: {overall.pairs} pairs of ratings of {overall.scans} scans rated "
        "by two or more reviewers (any model version).",
    ]
    rows, notes = [], []
    for p in pairs:
        label = _label(p.dimension, p.group)
        rows.append(
            [
                label,
                str(p.pairs),
                str(p.scans),
                figure_text(p.agreement, percent=True),
                figure_text(p.kappa),
            ]
        )
        notes += _notes(label, [("kappa", p.kappa)])
    lines += table(["Group", "Pairs", "Scans", "Agreement", "Kappa"], rows)
    if notes:
        lines += ["Not computed:", *notes]
    return lines


def agreement_text(report: AgreementReport, *, heading: str = "") -> str:
    """The tables of :class:`~db.qa.agreement.AgreementReport`, one model version after
    another, then reviewers against each other. ``heading``: what was selected (period,
    model version), said on the first line."""
    intervals = (
        f"95% intervals from {report.rounds} bootstrap resamples of scans"
        if report.rounds
        else "no intervals (--bootstrap 0)"
    )
    lines = [
        f"Agreement with reviewers{heading}: {report.ratings} ratings of {report.scans} scans "
        f"by {len(report.reviewers)} reviewers.",
        f"Each model version on its own; {intervals}; kappa with linear weights (one grade "
        "apart counts half); Spearman: the model's score against the reviewer's grade.",
        "Accepted: ratings that took the model's result as it was shown to the reviewer.",
    ]
    for version in report.model_versions:
        lines += _version_lines(report, version)
    lines += _pair_lines(report.between_reviewers)
    return "\n".join(lines) + "\n"


def _part_row(label: str, part: Part | None) -> list[str]:
    if part is None:
        return [label, "-", "-", "-"]
    agreement = "-" if part.agreement is None else f"{part.agreement * 100:.1f}%"
    kappa = "-" if part.kappa is None else f"{part.kappa:.3f}"
    return [label, str(part.ratings), agreement, kappa]


def calibration_text(c: Calibration, others: dict[str, int] | None = None) -> str:
    """The current and proposed thresholds and how each grades the fit and the held-out
    ratings. ``others``: ratings of the other model versions, named so the reader knows
    they were left out."""
    fit, held = c.fit_before, c.held_out_before
    lines = [
        f"Grade thresholds for model {shown_text(c.model_version)}: {fit.ratings + held.ratings} "
        f"ratings of {fit.scans + held.scans} scans; {c.held_out_share * 100:g}% of the scans "
        f"held out (seed {c.seed}): {fit.ratings} ratings to fit, {held.ratings} to check.",
    ]
    if others:
        shown = ", ".join(f"{shown_text(v)} ({n})" for v, n in others.items())
        lines.append(f"Other model versions not used: {shown} (choose with --model-version).")
    rows = [["Current (settings)", f"{c.current.good:g}", f"{c.current.average:g}"]]
    if c.proposed is not None:
        rows.append(["Proposed", f"{c.proposed.good:g}", f"{c.proposed.average:g}"])
    lines += ["", *table(["Thresholds", "Good at or above", "Poor below"], rows)]
    parts = [
        _part_row("Fit part, current", c.fit_before),
        _part_row("Fit part, proposed", c.fit_after),
        _part_row("Held out, current", c.held_out_before),
        _part_row("Held out, proposed", c.held_out_after),
    ]
    if c.proposed is None:
        parts = [parts[0], parts[2]]
    lines += ["", *table(["Ratings graded with", "Ratings", "Agreement", "Kappa"], parts)]
    lines += ["", c.message]
    return "\n".join(lines) + "\n"
