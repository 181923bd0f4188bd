"""What one scan's page on the review page shows (:func:`scan_detail`): its header facts,
its current result (the model version of its outcome, as in the QA views) with the listed
defects and each scored frame's score, and its other model versions' results; and the file
behind its pictures (:func:`scored_file`, never shown). Nothing here returns a patient id
hash, the institution, a DICOM UID or a file name. Read-only; takes an open session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import SCORED, FrameScore, ModelVersion, Scan, ScanScore
from db.qa.queries import ScannedFile, scan_files
from db.queries import scan_defects

__all__ = ["Result", "ScanDetail", "ScoredFile", "scan_detail", "scored_file"]


@dataclass(frozen=True)
class Result:
    """One model version's result for a scan. ``defects_judged``: the version has a defect
    head (otherwise no defect list means "not judged", not "clean")."""

    model_version: str
    score: float
    grade: str
    first_defect: str | None
    mean_score: float
    min_score: float
    p10_score: float
    frames_scored: int
    aggregate: str
    scored_at: datetime
    defects_judged: bool


@dataclass(frozen=True)
class ScanDetail:
    """Everything the scan page shows. ``result`` is the current one (None: not scored);
    ``defects`` its listed defects as ``{name, probability, frames}`` (most probable
    first); ``frame_scores`` ``(frame index, score, first defect)`` of its scored frames;
    ``other_results`` the other model versions' results, newest first."""

    scan_id: int
    status: str
    reason: str | None
    received_at: datetime
    acquired_at: datetime | None
    kind: str | None
    modality: str | None
    manufacturer: str | None
    model_name: str | None
    station: str | None
    transducer: str | None
    operator: str | None
    body_part: str | None
    frame_count: int | None
    rows: int | None
    columns: int | None
    burned_in_annotation: str | None
    disposition: str | None
    result: Result | None
    defects: list[dict[str, Any]]
    frame_scores: list[tuple[int, float, str | None]]
    other_results: list[Result]


def _result(score: ScanScore, names: str | None) -> Result:
    return Result(
        model_version=score.model_version,
        score=float(score.score),
        grade=score.grade,
        first_defect=score.first_defect,
        mean_score=float(score.mean_score),
        min_score=float(score.min_score),
        p10_score=float(score.p10_score),
        frames_scored=int(score.frames_scored),
        aggregate=score.aggregate,
        scored_at=score.scored_at,
        defects_judged=names is not None,
    )


def scan_detail(session: Session, scan_id: int) -> ScanDetail | None:
    """What the page of scan ``scan_id`` shows (None: no such scan)."""
    scan = session.get(Scan, scan_id)
    if scan is None:
        return None
    results = session.execute(
        select(ScanScore, ModelVersion.defect_names)
        .join(ModelVersion, ModelVersion.version == ScanScore.model_version)
        .where(ScanScore.scan_id == scan_id)
        .order_by(ScanScore.scored_at.desc(), ScanScore.id.desc())
    ).all()
    current = next(
        (_result(s, n) for s, n in results if s.model_version == scan.model_version), None
    )
    if scan.status != SCORED:
        current = None
    others = [
        _result(s, n)
        for s, n in results
        if current is None or s.model_version != current.model_version
    ]
    frames: list[tuple[int, float, str | None]] = []
    if current is not None:
        frames = [
            (int(r.frame_index), float(r.score), r.first_defect)
            for r in session.scalars(
                select(FrameScore)
                .where(
                    FrameScore.scan_id == scan_id,
                    FrameScore.model_version == current.model_version,
                )
                .order_by(FrameScore.frame_index)
            )
        ]
    listed = scan_defects(session, [scan_id]).get(scan_id, []) if current is not None else []
    return ScanDetail(
        scan_id=scan.id,
        status=scan.status,
        reason=scan.reason,
        received_at=scan.received_at,
        acquired_at=scan.acquisition_datetime,
        kind=scan.kind,
        modality=scan.modality,
        manufacturer=scan.manufacturer,
        model_name=scan.model_name,
        station=scan.station_name,
        transducer=scan.transducer,
        operator=scan.operator,
        body_part=scan.body_part,
        frame_count=scan.frame_count,
        rows=scan.rows,
        columns=scan.columns,
        burned_in_annotation=scan.burned_in_annotation,
        disposition=scan.disposition,
        result=current,
        defects=[dict(d) for d in listed],
        frame_scores=frames,
        other_results=others,
    )


@dataclass(frozen=True)
class ScoredFile:
    """A scored scan's file (its known locations, recorded size and sha256) and its frame
    count, for the pictures of its page. Never shown."""

    file: ScannedFile
    frame_count: int | None


def scored_file(session: Session, scan_id: int) -> ScoredFile | None:
    """The file of scan ``scan_id`` if the scan is scored (None otherwise)."""
    scan = session.get(Scan, scan_id)
    if scan is None or scan.status != SCORED:
        return None
    found = scan_files(session, [scan_id]).get(scan_id)
    return None if found is None else ScoredFile(found, scan.frame_count)
