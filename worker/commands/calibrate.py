"""``usqa calibrate --reviews``: grade thresholds for this site from the reviewers' ratings.

The ratings of one model version are split by scan into a fit part and a held-out part;
the thresholds that agree best with the reviewers on the fit part are proposed and checked
on the held-out part (:mod:`db.qa.calibration`). Nothing is written unless ``--write FILE``
is given and the proposal does better on the held-out ratings; then the two lines
``USQA_GOOD_THRESHOLD=`` and ``USQA_AVERAGE_THRESHOLD=`` of that env file are replaced (or
added), every other line kept, and the file replaced atomically.

Exit codes: 0 proposal made (and written with --write), or nothing to change; 1 no ratings,
too few, or the proposal does not do better on held-out ratings (nothing written);
2 usage or configuration (e.g. the --write file does not exist).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import db
from db.qa.calibration import DEFAULT_HELD_OUT, MIN_FIT, MIN_HELD_OUT, Thresholds, build_calibration
from worker.commands.options import add_database_option
from worker.report.agreement_text import calibration_text
from worker.settings import Settings

__all__ = ["EnvChange", "add_parser", "env_values", "run", "update_env_file"]

GOOD, AVERAGE = "USQA_GOOD_THRESHOLD", "USQA_AVERAGE_THRESHOLD"


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 100.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage above 0, below 100")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate",
        help="propose grade thresholds that match the reviewers' ratings",
        description="Propose USQA_GOOD_THRESHOLD and USQA_AVERAGE_THRESHOLD from the "
        "reviewers' ratings of one model version: the scans are split into a fit part and "
        "a held-out part, the thresholds with the best linear-weighted kappa on the fit "
        "part are proposed, and agreement and kappa with the current and the proposed "
        "thresholds are shown on the held-out ratings. Writes nothing unless --write FILE "
        "is given and the proposal does better on the held-out ratings.",
        epilog=f"At least {MIN_FIT} ratings to fit and {MIN_HELD_OUT} held out are needed. "
        "Exit codes: 0 proposal made (written with --write) or nothing to change; 1 no or too "
        "few ratings, or no gain on the held-out ratings (nothing written); 2 usage or "
        "configuration. docs/reviews.md, 'Agreement and calibration'.",
    )
    p.add_argument(
        "--reviews",
        action="store_true",
        help="calibrate on the reviewers' ratings in the ledger (the only source today)",
    )
    p.add_argument(
        "--model-version",
        metavar="VERSION",
        default=None,
        help="the model version to calibrate (default: the one with the most ratings)",
    )
    p.add_argument(
        "--held-out",
        type=_percent,
        default=DEFAULT_HELD_OUT * 100,
        metavar="PERCENT",
        help=f"share of the scans kept out of the search to check it "
        f"(default {DEFAULT_HELD_OUT * 100:g})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="which scans are held out (default 0; the same seed gives the same split)",
    )
    p.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="FILE",
        help="put the proposal into this env file (e.g. /etc/usqa/usqa.env), replacing or "
        "adding its two threshold lines; only when it does better on held-out ratings",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_database_option(p)
    return p


@dataclass(frozen=True)
class EnvChange:
    """One setting changed in an env file: ``line`` (1-based) is where it now is; ``old``
    None: the setting was added."""

    name: str
    old: str | None
    new: str
    line: int


def _number(value: float) -> str:
    return f"{value:.10g}"


def _assignment(name: str) -> re.Pattern[str]:
    return re.compile(rf"^(\s*(?:export\s+)?){re.escape(name)}\s*=(.*)$")


def env_values(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The values the env file ``path`` assigns to ``names`` (the last assignment wins, as
    in a shell, systemd and compose); names it does not assign are left out."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        for name in names:
            match = _assignment(name).match(line)
            if match:
                found[name] = match.group(2).strip().strip("\"'")
    return found


def update_env_file(path: Path, values: dict[str, str]) -> list[EnvChange]:
    """Set each ``NAME=value`` of ``values`` in the env file ``path``: every uncommented
    assignment of NAME is replaced (an ``export`` prefix kept); a NAME not there is appended.
    Other lines, comments, the line endings and the file's mode stay. The file is replaced
    atomically (a temporary file beside it, then ``os.replace``); a symbolic link is
    followed, so the file it points to is the one updated. Returns what changed (nothing
    when the file already holds these values)."""
    target = Path(os.path.realpath(path))
    raw = target.read_bytes()
    text = raw.decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    changes: list[EnvChange] = []
    for name, value in values.items():
        pattern = _assignment(name)
        found = False
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if match is None:
                continue
            found = True
            old = match.group(2).strip().strip("\"'")
            if old != value:
                lines[i] = f"{match.group(1)}{name}={value}"
                changes.append(EnvChange(name, old, value, i + 1))
        if not found:
            lines.append(f"{name}={value}")
            changes.append(EnvChange(name, None, value, len(lines)))
    if not changes:
        return []
    content = newline.join(lines) + newline
    info = target.stat()
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            os.fchmod(fh.fileno(), info.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):  # not root: the copy stays ours
                os.fchown(fh.fileno(), info.st_uid, info.st_gid)
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        temp.replace(target)  # os.replace: readers see the old file or the new, whole
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return changes


def _check_writable(path: Path) -> str | None:
    """Why ``path`` cannot be updated, or None."""
    if not path.exists():
        return (
            f"--write {path}: no such file; give the env file the usqa services read (e.g. "
            "/etc/usqa/usqa.env or the compose usqa.env), made from deploy/usqa.env.example"
        )
    target = Path(os.path.realpath(path))
    if not target.is_file():
        return f"--write {path}: not a regular file"
    if not os.access(target, os.R_OK | os.W_OK) or not os.access(target.parent, os.W_OK):
        return (
            f"--write {path}: cannot write it or its folder as this user (run as the file's "
            "owner, e.g. with sudo)"
        )
    return None


def _usage(message: str) -> int:
    print(f"usqa calibrate: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.reviews:
        return _usage("say where the judgement comes from: --reviews (the reviewers' ratings)")
    if args.write is not None:
        problem = _check_writable(args.write)
        if problem:
            return _usage(problem)
    current = Thresholds(good=settings.good_threshold, average=settings.average_threshold)
    db.require_current(settings.database_url)
    with db.session_scope(settings.database_url, readonly=True) as session:
        result, counts = build_calibration(
            session,
            current,
            model_version=args.model_version,
            held_out=args.held_out / 100.0,
            seed=args.seed,
        )
    if result is None:
        which = f" of model {args.model_version}" if args.model_version else ""
        rated = f" (ratings of: {', '.join(counts)})" if counts else ""
        print(
            f"usqa calibrate: no ratings{which} in the ledger{rated}. Reviewers rate scans "
            "on the review page (usqa serve; docs/reviews.md).",
            file=sys.stderr,
        )
        return 1
    others = {v: n for v, n in counts.items() if v != result.model_version}
    written: list[EnvChange] = []
    note = _file_differs(args.write, current) if args.write is not None else ""
    if args.write is not None and result.usable:
        assert result.proposed is not None
        proposed = {GOOD: _number(result.proposed.good), AVERAGE: _number(result.proposed.average)}
        try:
            written = update_env_file(args.write, proposed)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"usqa calibrate: cannot update {args.write}: {exc}", file=sys.stderr)
            return 2
        note = "\n".join(filter(None, [note, _written_text(args.write, written)]))
    elif args.write is not None and result.verdict != "unchanged":
        note = "\n".join(filter(None, [note, f"Not written to {args.write}."]))
    if args.json:
        payload = {
            "calibration": result.to_json(),
            "model_versions": counts,
            "written_to": str(args.write) if args.write is not None and result.usable else None,
            "changes": [asdict(c) for c in written],
        }
        print(json.dumps(payload))
    else:
        sys.stdout.write(calibration_text(result, others))
        if note:
            print(note)
    return 0 if result.verdict in ("improves", "unchanged") else 1


def _file_differs(path: Path, current: Thresholds) -> str:
    """A warning when the env file's thresholds are not the ones this command runs with
    (the 'current' figures are then not those of the services that read the file)."""
    try:
        values = env_values(path, (GOOD, AVERAGE))
    except (OSError, UnicodeDecodeError):
        return ""
    differ = []
    for name, value in ((GOOD, current.good), (AVERAGE, current.average)):
        text = values.get(name)
        try:
            same = text is None or float(text) == value
        except ValueError:
            same = False
        if not same:
            differ.append(f"{name}={text} there, {value:g} here")
    if not differ:
        return ""
    return (
        f"Note: {path} does not hold the thresholds this command ran with ({'; '.join(differ)}): "
        "the 'current' rows above are for this command's settings. Run it with the services' "
        "settings (e.g. after `set -a; . FILE`) to compare with what they use."
    )


def _written_text(path: Path, changes: list[EnvChange]) -> str:
    if not changes:
        return f"{path} already holds these thresholds: nothing changed."
    said = "; ".join(
        f"{c.name} {c.old} -> {c.new} (line {c.line})"
        if c.old is not None
        else f"{c.name}={c.new} added (line {c.line})"
        for c in changes
    )
    return (
        f"Updated {path}: {said}. Restart the usqa services that read it (workers, ingester, "
        "listener, review page) to grade with the new thresholds; scans scored before keep "
        "the grades they were given."
    )
