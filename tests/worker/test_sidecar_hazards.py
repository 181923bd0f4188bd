"""Sidecars get the checks images get: a ``<image>.json`` that is a link to /dev/zero, a
FIFO, a hard link, a link out of the folder or a huge file fails its scan with a reason
(read by the real decoder child, written to the real ledger); the neighbours are scored."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from db.models import Scan
from dicom_io import read
from dicom_io.metadata import MAX_SIDECAR_BYTES
from tests.helpers.files import write_png
from tests.helpers.ledger import receive
from worker.errors import InputError
from worker.scoring import ScoringContext, process_scans

pytestmark = pytest.mark.integration


def _symlink_to_dev_zero(side: Path, outside: Path) -> None:
    side.symlink_to("/dev/zero")


def _fifo(side: Path, outside: Path) -> None:
    os.mkfifo(side)


def _oversized(side: Path, outside: Path) -> None:
    side.write_text(json.dumps({"station_name": "x" * (MAX_SIDECAR_BYTES + 10)}))


def _sparse_oversized(side: Path, outside: Path) -> None:
    with side.open("wb") as f:
        f.truncate(1 << 40)  # 1 TiB claimed, no disk used


def _symlink_out(side: Path, outside: Path) -> None:
    outside.write_text(json.dumps({"station_name": "outside"}))
    side.symlink_to(outside)


def _hard_link(side: Path, outside: Path) -> None:
    outside.write_text(json.dumps({"station_name": "outside"}))
    os.link(outside, side)


HAZARDS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink-to-dev-zero": (_symlink_to_dev_zero, "symbolic link"),
    "fifo": (_fifo, "FIFO"),
    "oversized": (_oversized, "more than the 1 MiB allowed"),
    "sparse-1-TiB": (_sparse_oversized, "more than the 1 MiB allowed"),
    "symlink-out": (_symlink_out, "symbolic link"),
    "hard-link": (_hard_link, "hard links"),
}


@pytest.mark.parametrize("hazard", list(HAZARDS))
def test_a_hostile_sidecar_is_refused_with_a_reason(tmp_path: Path, hazard: str) -> None:
    make, reason = HAZARDS[hazard]
    image = write_png(tmp_path / "drop" / "scan.png", 1)
    make(image.with_name("scan.png.json"), tmp_path / "outside.json")
    with pytest.raises(InputError, match=reason) as caught:
        read(image)
    assert "scan.png.json" in str(caught.value)


def test_a_regular_sidecar_is_still_read(tmp_path: Path) -> None:
    image = write_png(tmp_path / "scan.png", 1)
    image.with_name("scan.png.json").write_text(json.dumps({"station_name": "US-3"}))
    assert read(image).metadata["station_name"] == "US-3"


def test_hostile_sidecars_fail_their_scans_and_the_neighbours_are_scored(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    drop = tmp_path / "drop"
    ids: dict[str, int] = {}
    for i, (hazard, (make, _)) in enumerate(HAZARDS.items()):
        image = write_png(drop / f"{hazard}.png", i)
        make(image.with_name(image.name + ".json"), tmp_path / f"outside-{hazard}.json")
        ids[hazard] = receive(any_url, image)
    ids["plain"] = receive(any_url, write_png(drop / "plain.png", 99))
    result = process_scans(list(ids.values()), pipeline_for(any_url))
    assert result.statuses[ids["plain"]] == "scored"
    with db.session_scope(any_url, readonly=True) as s:
        rows = {r.id: r for r in s.scalars(select(Scan)).all()}
    for hazard, (_, reason) in HAZARDS.items():
        row = rows[ids[hazard]]
        assert row.status == "failed", hazard
        assert row.reason is not None and reason in row.reason, (hazard, row.reason)
