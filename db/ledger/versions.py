"""The ``model_versions`` table, and the check that every defect name written to the
ledger is one of the vocabulary the caller passes (the worker passes
:data:`model.defects.DEFECTS`; db imports nothing of ``model``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ModelVersion, utcnow
from worker.errors import ModelError

__all__ = ["check_defect_names", "check_once", "ensure_model_version"]

log = logging.getLogger(__name__)


def check_defect_names(
    names: Iterable[str | None], where: str, vocabulary: Collection[str] | None
) -> None:
    """Raise ModelError unless every name (None aside) is in ``vocabulary`` (the worker's
    :data:`model.defects.DEFECTS`; None: not checked)."""
    if vocabulary is None:
        return
    unknown = sorted({n for n in names if n is not None and n not in vocabulary})
    if unknown:
        raise ModelError(
            f"{where}: unknown defect name(s) {', '.join(map(repr, unknown))}; expected "
            f"names from model.defects.DEFECTS ({', '.join(vocabulary)}); the model and this "
            "usqa disagree on the vocabulary: use weights trained for this usqa version"
        )


def check_once(names: Sequence[str], where: str) -> None:
    """Raise ModelError if a defect name repeats."""
    if len(set(names)) != len(names):
        raise ModelError(
            f"{where}: defect names {list(names)} name a defect twice; expected each once "
            "(the model package is inconsistent)"
        )


def _defect_names_json(
    version: str, names: Sequence[str] | None, vocabulary: Collection[str] | None
) -> str | None:
    """The ``model_versions.defect_names`` value: a JSON list, or None (no defect head)."""
    if not names:
        return None
    where = f"model version {version}"
    check_defect_names(names, where, vocabulary)
    check_once(names, where)
    return json.dumps(list(names))


def ensure_model_version(
    session: Session,
    version: str,
    *,
    weights_sha256: str | None = None,
    architecture: str | None = None,
    weights_name: str | None = None,
    defect_names: Sequence[str] | None = None,
    vocabulary: Collection[str] | None = None,
) -> None:
    """Make sure ``model_versions`` has a row for ``version`` (safe under races).

    ``defect_names``: the defects the model judges, in its output order (None or empty: it
    has no defect head). Stored on a new row, or on an existing row that has none yet; a
    row that already names other defects keeps them (a warning is logged). ModelError for a
    name outside ``vocabulary`` (the worker passes :data:`model.defects.DEFECTS`; None: not
    checked) or a repeated one."""
    names = _defect_names_json(version, defect_names, vocabulary)
    now = utcnow()
    row = session.get(ModelVersion, version)
    if row is not None:
        row.last_used_at = now
        _fill_defect_names(row, names)
        return
    try:
        with session.begin_nested():
            session.add(
                ModelVersion(
                    version=version,
                    weights_sha256=weights_sha256,
                    architecture=architecture,
                    weights_name=weights_name,
                    defect_names=names,
                    first_used_at=now,
                    last_used_at=now,
                )
            )
    except IntegrityError:  # another worker registered it first
        row = session.get(ModelVersion, version, populate_existing=True)
        if row is not None:
            _fill_defect_names(row, names)


def _fill_defect_names(row: ModelVersion, names: str | None) -> None:
    if names is None or row.defect_names == names:
        return
    if row.defect_names is None:
        row.defect_names = names
        return
    log.warning(
        "model version %s: the ledger lists its defects as %s, this process as %s; keeping "
        "the ledger's",
        row.version,
        row.defect_names,
        names,
    )
