"""A listener on a free loopback port, in this process, over a fresh SQLite ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.files import make_settings
from worker.listener import Listener


class Running:
    """A started listener, its drop folder and the ids it handed on."""

    def __init__(self, listener: Listener, root: Path, url: str) -> None:
        self.listener = listener
        self.root = root
        self.url = url
        self.sent: list[int] = []

    @property
    def port(self) -> int:
        return self.listener.port

    def received(self) -> list[Path]:
        """The files in the drop folder (the incoming folder left out)."""
        return sorted(p for p in (self.root / "dicom").rglob("*") if p.is_file())

    def incoming(self) -> list[Path]:
        return sorted((self.root / ".usqa-incoming").iterdir())


@pytest.fixture
def start_listener(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., Running]]:
    """``start_listener(**settings)``: a running listener (stopped after the test)."""
    started: list[Running] = []

    def start(url: str | None = None, **overrides: Any) -> Running:
        overrides.setdefault("dicom_port", 0)
        overrides.setdefault("dicom_address", "127.0.0.1")
        settings = make_settings(url or sqlite_url, tmp_path / "no-weights.pt", **overrides)
        root = tmp_path / "drop"
        running: Running
        listener = Listener(str(root), settings, lambda ids: running.sent.extend(ids))
        running = Running(listener, root, url or sqlite_url)
        listener.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.listener.stop()
