"""The ledger schema (SQLAlchemy 2 declarative models). Alembic owns the tables; see
``db/migrations``. Every timestamp is stored in UTC and read back as an aware datetime.

Tables:

``scans``           one row per received file: where it was, its content hash, its status
                    (``queued`` -> ``processing`` -> ``scored`` | ``skipped`` | ``failed``), why,
                    how many attempts, the timestamps of each step and the QA metadata from
                    :mod:`dicom_io` (no patient names; patient ids only as salted hashes).
``scan_scores``     the score and grade of a scan for one model version. Unique per scan,
                    per content hash and per SOP instance UID for that version, so re-delivery
                    can never produce a second score.
``scan_defects``    the defects a scored scan lists for one model version, one row each,
                    ranked (1 = the scan's ``first_defect``).
``frame_scores``    the score (and first defect) of each scored frame.
``model_versions``  the model versions that have produced scores, and the defect names each
                    judges (NULL: none, so a scan without defects is "not judged", not clean).

Defect names are those of :data:`model.defects.DEFECTS`; no CHECK constraint lists them
(``model`` owns the vocabulary), the ledger's writers refuse any other name.
``workers``         processes that score scans, with their last heartbeat.
``site_settings``   facts about the site the ledger must remember, by name: the fingerprint
                    of the pseudonym salt its scans were pseudonymised with (never the salt).
``result_outbox``   one row per structured report (SR) to deliver: a scored DICOM scan, its
                    model version and a destination (a PACS AE or the results folder), with
                    its delivery state (``pending`` -> ``sent`` | ``failed``) and retries.
``users``           the review page's accounts (``usqa user add``): a login name, a role
                    (``viewer`` < ``reviewer`` < ``admin``) and an adaptive password hash
                    (NULL: signs in only through the site's trusted single sign-on proxy).
``web_sessions``    signed-in browser sessions: the sha256 of the cookie's random token
                    (never the token), the CSRF token of its forms, and when it expires.
``reviews``         a reviewer's rating of a scan: the grade they give (and whether they
                    agreed with the model's), with the model version, score and grade they
                    were shown; one per scan and reviewer (rating again replaces it).
``review_defects``  the defects a reviewer sees in a rated scan, one row each.
``audit_log``       who signed in (or failed to), viewed which scan or image, and rated what,
                    when and from where; never deleted by the application.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ACTIVE",
    "GRADES",
    "ROLES",
    "STATUSES",
    "TERMINAL",
    "AuditEntry",
    "Base",
    "FrameScore",
    "ModelVersion",
    "ResultOutbox",
    "Review",
    "ReviewDefect",
    "Scan",
    "ScanDefect",
    "ScanScore",
    "SiteSetting",
    "UTCDateTime",
    "User",
    "WebSession",
    "WorkerProcess",
    "utcnow",
]

QUEUED = "queued"
PROCESSING = "processing"
SCORED = "scored"
SKIPPED = "skipped"
FAILED = "failed"
STATUSES = (QUEUED, PROCESSING, SCORED, SKIPPED, FAILED)
ACTIVE = (QUEUED, PROCESSING)
TERMINAL = (SCORED, SKIPPED, FAILED)

GRADES = ("good", "average", "poor")  # model.grading owns them; repeated for the CHECKs
ROLES = ("viewer", "reviewer", "admin")  # each may do what the ones before it may

# Stable constraint names, so migrations behave the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite.
    Values come back timezone-aware (UTC) on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from SQLite expressions
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelVersion(Base):
    """A model version: the first 12 hex characters of its weights file's sha256."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    architecture: Mapped[str | None] = mapped_column(String(64))
    weights_name: Mapped[str | None] = mapped_column(String(255))
    # JSON list of the defect names the model judges; NULL: the model has no defect head
    defect_names: Mapped[str | None] = mapped_column(Text)
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Scan(Base):
    """One received file and everything that happened to it."""

    __tablename__ = "scans"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'processing', 'scored', 'skipped', 'failed')",
            name="status",
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_scans_status_queued_at", "status", "queued_at"),
        Index("ix_scans_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # --- the file, as received -------------------------------------------------------
    # ``path`` is always printable text: a name that is not valid UTF-8 or holds control
    # characters is stored escaped, with its original bytes in ``path_bytes`` (db/paths.py)
    path: Mapped[str] = mapped_column(Text, index=True)
    path_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    # the file's device and inode (signed 64-bit): disposal acts only on that same file
    file_device: Mapped[int | None] = mapped_column(BigInteger)
    file_inode: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # --- the ledger --------------------------------------------------------------------
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    model_version: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # what happened to the file afterwards (USQA_AFTER_SCORING): kept, moved or deleted
    disposition: Mapped[str | None] = mapped_column(String(16))
    disposed_path: Mapped[str | None] = mapped_column(Text)
    disposed_path_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    disposed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- what the header says (dicom_io) ----------------------------------------------
    kind: Mapped[str | None] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    samples_per_pixel: Mapped[int | None] = mapped_column(Integer)
    crop_x0: Mapped[int | None] = mapped_column(Integer)
    crop_y0: Mapped[int | None] = mapped_column(Integer)
    crop_x1: Mapped[int | None] = mapped_column(Integer)
    crop_y1: Mapped[int | None] = mapped_column(Integer)
    crop_source: Mapped[str | None] = mapped_column(String(16))
    # --- QA metadata (dicom_io Scan.metadata; patient ids only as salted hashes) --------
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    model_name: Mapped[str | None] = mapped_column(String(128))
    station_name: Mapped[str | None] = mapped_column(String(128), index=True)
    device_serial_number: Mapped[str | None] = mapped_column(String(128))
    software_versions: Mapped[str | None] = mapped_column(String(255))
    transducer: Mapped[str | None] = mapped_column(String(128))
    institution: Mapped[str | None] = mapped_column(String(255))
    operator: Mapped[str | None] = mapped_column(String(128))
    body_part: Mapped[str | None] = mapped_column(String(64))
    # scanner-local wall-clock time as recorded in the file (DICOM has no time zone)
    study_datetime: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    acquisition_datetime: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=False), index=True
    )
    patient_id_hash: Mapped[str | None] = mapped_column(String(128))
    frame_time_ms: Mapped[float | None] = mapped_column(Float)
    photometric: Mapped[str | None] = mapped_column(String(32))
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    burned_in_annotation: Mapped[str | None] = mapped_column(String(8))  # YES | NO


class ScanScore(Base):
    """The score and grade of one scan for one model version.

    ``sha256`` and ``sop_instance_uid`` repeat the scan's so that the unique constraints can
    refuse a second score for the same content or the same SOP instance."""

    __tablename__ = "scan_scores"
    __table_args__ = (
        UniqueConstraint("scan_id", "model_version"),
        UniqueConstraint("sha256", "model_version"),
        UniqueConstraint("sop_instance_uid", "model_version"),
        CheckConstraint("grade IN ('good', 'average', 'poor')", name="grade"),
        Index("ix_scan_scores_model_version_scored_at", "model_version", "scored_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    sha256: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    mean_score: Mapped[float] = mapped_column(Float)
    min_score: Mapped[float] = mapped_column(Float)
    p10_score: Mapped[float] = mapped_column(Float)
    grade: Mapped[str] = mapped_column(String(16))
    # the most probable listed defect; NULL: clean, or not judged (model_versions.defect_names)
    first_defect: Mapped[str | None] = mapped_column(String(32))
    frames_scored: Mapped[int] = mapped_column(Integer)
    aggregate: Mapped[str] = mapped_column(String(16))
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    decode_ms: Mapped[float | None] = mapped_column(Float)
    inference_ms: Mapped[float | None] = mapped_column(Float)


class FrameScore(Base):
    """The score of one frame of a scan for one model version."""

    __tablename__ = "frame_scores"

    scan_id: Mapped[int] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(
        ForeignKey("model_versions.version"), primary_key=True
    )
    frame_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    # the frame's most probable defect at the threshold; NULL: none, or not judged
    first_defect: Mapped[str | None] = mapped_column(String(32))


class ScanDefect(Base):
    """One defect a scored scan lists for one model version (a clean scan has none).

    ``probability`` is the mean of its frames' probabilities, ``frame_share`` the share of
    its scored frames that show the defect. The index on (defect, model_version, scan_id)
    answers "scans with this defect" for reports, joined to ``scans`` for the period."""

    __tablename__ = "scan_defects"
    __table_args__ = (
        CheckConstraint("rank >= 1", name="rank"),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability"),
        CheckConstraint("frame_share >= 0 AND frame_share <= 1", name="frame_share"),
        Index("ix_scan_defects_defect_model_version_scan_id", "defect", "model_version", "scan_id"),
    )

    scan_id: Mapped[int] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(
        ForeignKey("model_versions.version"), primary_key=True
    )
    defect: Mapped[str] = mapped_column(String(32), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)  # 1 = the scan's first defect
    probability: Mapped[float] = mapped_column(Float)
    frame_share: Mapped[float] = mapped_column(Float)


class WorkerProcess(Base):
    """A process that scores scans (``usqa run`` or one ``usqa worker`` pool process).
    ``last_seen_at`` is its heartbeat; a scan held by a process whose heartbeat stopped is
    handed to another."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))  # embedded | celery
    model_version: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scans_done: Mapped[int] = mapped_column(Integer, default=0)


class SiteSetting(Base):
    """One named fact about the site (``pseudonym_salt_fingerprint``: see db/site.py), with
    the process that recorded it and when."""

    __tablename__ = "site_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_FAILED = "failed"
OUTBOX_STATES = (OUTBOX_PENDING, OUTBOX_SENT, OUTBOX_FAILED)


class ResultOutbox(Base):
    """One structured report to deliver: the score of ``scan_id`` by ``model_version``, to
    ``destination`` (``AE@host:port`` or ``dir:FOLDER``). Queued in the transaction that
    scores the scan; a delivering process claims due rows (``claim_token`` until
    ``claimed_until``), then marks them ``sent``, or ``pending`` again with
    ``next_attempt_at`` pushed back (a PACS that is down), or ``failed`` (never deliverable:
    the file is gone, the destination refuses the object)."""

    __tablename__ = "result_outbox"
    __table_args__ = (
        UniqueConstraint("scan_id", "model_version", "destination"),
        CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_result_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    destination: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=OUTBOX_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sr_sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    sr_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    """An account of the review page. ``password_hash`` is an argon2id hash (worker/web);
    NULL: the account signs in only through the trusted proxy header. A disabled account
    (``disabled_at``) keeps its reviews and audit entries but cannot sign in."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'reviewer', 'admin')", name="role"),
        UniqueConstraint("name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser session. The cookie holds a random token; the ledger keeps only
    its sha256, so reading the table does not let anyone sign in. ``csrf_token`` goes in
    every form of the session and is checked on every POST."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Review(Base):
    """One reviewer's rating of one scan: the grade they give (``agrees``: the model's
    grade, accepted as it was shown) and, in ``review_defects``, the defects they see.
    ``model_version``, ``model_score`` and ``model_grade`` record what they were shown."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("scan_id", "reviewer_id"),
        CheckConstraint("grade IN ('good', 'average', 'poor')", name="grade"),
        CheckConstraint(
            "model_grade IS NULL OR model_grade IN ('good', 'average', 'poor')",
            name="model_grade",
        ),
        Index("ix_reviews_reviewer_id_rated_at", "reviewer_id", "rated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    model_version: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version"))
    model_score: Mapped[float | None] = mapped_column(Float)
    model_grade: Mapped[str | None] = mapped_column(String(16))
    agrees: Mapped[bool] = mapped_column(Boolean)
    grade: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewDefect(Base):
    """One defect a reviewer sees in the scan they rated."""

    __tablename__ = "review_defects"

    review_id: Mapped[int] = mapped_column(
        ForeignKey("reviews.id", ondelete="CASCADE"), primary_key=True
    )
    defect: Mapped[str] = mapped_column(String(32), primary_key=True)


class AuditEntry(Base):
    """One audited event of the review page: ``action`` is ``login``, ``login_failed``,
    ``login_refused`` (rate limit), ``logout``, ``view_scans``, ``view_scan``,
    ``view_image``, ``view_overlay``, ``rate`` or an account change. ``scan_id`` has no
    foreign key, so the trail outlives a deleted scan. ``user_name`` is the account (or the
    name typed at a failed login, cut to 64 characters); ``client`` the remote address."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_user_name_at", "user_name", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    scan_id: Mapped[int | None] = mapped_column(Integer)
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
