"""The ledger: SQLAlchemy models, the engine/session factory, Alembic migrations, and the
ledger and query helpers (see ../shared/DESIGN.md). Never imports torch or ``model``: the
worker passes in what db needs of the model (the defect vocabulary)."""

from db.migrate import current_revision, head_revision, require_current, upgrade
from db.models import Base, FrameScore, ModelVersion, Scan, ScanDefect, ScanScore, WorkerProcess
from db.session import Session, dispose_engines, get_engine, session_scope

__all__ = [
    "Base",
    "FrameScore",
    "ModelVersion",
    "Scan",
    "ScanDefect",
    "ScanScore",
    "Session",
    "WorkerProcess",
    "current_revision",
    "dispose_engines",
    "get_engine",
    "head_revision",
    "require_current",
    "session_scope",
    "upgrade",
]
