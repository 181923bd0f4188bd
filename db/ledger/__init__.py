"""The ledger: every write to ``scans`` and the questions asked of it on the scoring path.

It owns, one module each:

- :mod:`~db.ledger.transitions`: every change of a scan's status, through one guarded
  UPDATE (:func:`move`) and the table of allowed moves (:data:`MOVES`): claim, scored,
  skipped or failed, release, requeue, give up, re-queue for a rescore.
- :mod:`~db.ledger.received`: the row of each received file (``queued``, a ``skipped``
  copy, or ``failed`` on arrival), before anything is queued.
- :mod:`~db.ledger.lookups`: what a path or a content already has, what a model version
  already scored, what waits or looks lost, where a scan's file is now and whether it
  is still the file received (shared by the scoring path and ``usqa rescore``).
- :mod:`~db.ledger.columns`: the scan header as ``scans`` columns.
- :mod:`~db.ledger.scores`: a scan's score, defect and frame rows.
- :mod:`~db.ledger.versions`: ``model_versions`` and the defect vocabulary check.
- :mod:`~db.ledger.workers`: heartbeats and who counts as alive.
- :mod:`~db.ledger.disposal`: what the after-scoring policy did with each file.
- :mod:`~db.ledger.outbox`: the structured reports waiting to be delivered, and their fate.

Every function takes an open session and never commits (the caller's
:func:`~db.session.session_scope` does). Writes that finish a scan are guarded by the
claim token, so a worker that lost its claim (it was presumed dead and the scan handed to
another) cannot write a second outcome. Use it as ``from db import ledger``; the names
below are its public ones.
"""

from db.clock import db_now
from db.ledger.columns import METADATA_COLUMNS, metadata_columns, update_columns
from db.ledger.disposal import mark_disposed, pending_disposal
from db.ledger.lookups import (
    active_under,
    failed_under,
    file_location,
    file_problem,
    find_original,
    find_originals,
    find_scored_duplicate,
    has_score,
    known_files,
    known_scores,
    paths_text,
    queued_count,
    queued_ids,
    stuck_scans,
)
from db.ledger.outbox import (
    OutboxSummary,
    ReportFacts,
    claim_due,
    mark_failed,
    mark_retry,
    mark_sent,
    outbox_summary,
    queue_results,
    report_facts,
)
from db.ledger.received import (
    Received,
    ReceivedFile,
    file_identity,
    record_failed_many,
    record_received,
    record_received_many,
)
from db.ledger.scores import (
    ScoreEntry,
    ScoreWrite,
    insert_frame_scores,
    try_write_score,
    try_write_scores,
    write_score,
    write_scores,
)
from db.ledger.transitions import (
    ALLOWED,
    MOVES,
    DisallowedMoveError,
    Outcome,
    check_move,
    claim,
    finish,
    give_up,
    mark_scored,
    move,
    release,
    requeue,
    rescore_requeue,
    restore_scored,
)
from db.ledger.versions import check_defect_names, ensure_model_version
from db.ledger.workers import age_cutoff, heartbeat, live_model_versions
from db.models import utcnow

__all__ = [
    "ALLOWED",
    "METADATA_COLUMNS",
    "MOVES",
    "DisallowedMoveError",
    "OutboxSummary",
    "Outcome",
    "Received",
    "ReceivedFile",
    "ReportFacts",
    "ScoreEntry",
    "ScoreWrite",
    "active_under",
    "age_cutoff",
    "check_defect_names",
    "check_move",
    "claim",
    "claim_due",
    "db_now",
    "ensure_model_version",
    "failed_under",
    "file_identity",
    "file_location",
    "file_problem",
    "find_original",
    "find_originals",
    "find_scored_duplicate",
    "finish",
    "give_up",
    "has_score",
    "heartbeat",
    "insert_frame_scores",
    "known_files",
    "known_scores",
    "live_model_versions",
    "mark_disposed",
    "mark_failed",
    "mark_retry",
    "mark_scored",
    "mark_sent",
    "metadata_columns",
    "move",
    "outbox_summary",
    "paths_text",
    "pending_disposal",
    "queue_results",
    "queued_count",
    "queued_ids",
    "record_failed_many",
    "record_received",
    "record_received_many",
    "release",
    "report_facts",
    "requeue",
    "rescore_requeue",
    "restore_scored",
    "stuck_scans",
    "try_write_score",
    "try_write_scores",
    "update_columns",
    "utcnow",
    "write_score",
    "write_scores",
]
