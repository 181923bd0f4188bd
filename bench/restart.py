"""``python -m bench.restart``: a restart of the ingester over a folder of many files kept
from earlier runs (every one already in the ledger), as after a reboot of a site that keeps
its scans (``USQA_AFTER_SCORING=keep``).

It builds the folder (small files in sub-folders) and their ledger rows, then drives a real
:class:`~worker.ingest.Ingester` tick by tick until its first full walk ends, and prints the
walk's time, the longest tick (the loop's heartbeats and SIGTERM wait at most that long),
the ledger lookups, the progress lines logged, the ingester's remembered files and the
process's peak memory before and after the walk. Nothing may be recorded again.

    python -m bench.restart --files 1000000 --folder /tmp/kept
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(root: Path, url: str, files: int) -> float:
    """``files`` small files under ``root`` and their ledger rows; returns the seconds."""
    from db import ledger, session_scope

    started = time.monotonic()
    chunk: list[Any] = []
    for i in range(files):
        path = root / f"d{i % 100:02d}" / f"s{i // 100 % 100:02d}" / f"{i}.dcm"
        if i < 10_000:
            path.parent.mkdir(parents=True, exist_ok=True)
        body = b"kept %d" % i
        path.write_bytes(body)
        st = path.stat()
        chunk.append(
            ledger.ReceivedFile(
                str(path),
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(body).hexdigest(),
                device=st.st_dev,
                inode=st.st_ino,
            )
        )
        if len(chunk) == 5000 or i == files - 1:
            with session_scope(url) as session:
                ledger.record_received_many(session, chunk, originals={})
            chunk = []
    return time.monotonic() - started


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _walk(root: Path, url: str) -> dict[str, Any]:
    """Drive an ingester over ``root`` until its first full walk; what it cost."""
    from db import ledger
    from worker.ingest import Ingester, limits
    from worker.settings import load_settings

    settings = load_settings({"database_url": url, "rescan_seconds": 3600.0}, environ={})
    lookups: list[int] = []
    known_files = ledger.known_files

    def counted(session: Any, paths: Any) -> Any:
        lookups.append(len(paths))
        return known_files(session, paths)

    ledger.known_files = counted
    lines = _Lines()
    logging.getLogger("worker.ingest").addHandler(lines)
    logging.getLogger("worker.ingest").setLevel(logging.INFO)
    sent: list[list[int]] = []
    before = _peak_mib()
    ingester = Ingester(root, settings, sent.append)
    started = time.monotonic()
    longest = remembered = 0.0
    while ingester._passes < 1:
        tick = time.monotonic()
        ingester.tick()
        longest = max(longest, time.monotonic() - tick)
        remembered = max(remembered, len(ingester.known))
    took = time.monotonic() - started
    ledger.known_files = known_files
    return {
        "walk_s": took,
        "longest_tick_s": longest,
        "lookups": len(lookups),
        "largest_lookup": max(lookups, default=0),
        "progress_lines": sum("entries so far" in line for line in lines.lines),
        "remembered_max": int(remembered),
        "remembered_cap": limits.KNOWN_FILES,
        "sent": sum(len(b) for b in sent),
        "peak_mib_before": before,
        "peak_mib_after": _peak_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=None, help="where to build it (temp)")
    args = parser.parse_args(argv)
    base = args.folder or Path(tempfile.mkdtemp(prefix="usqa-restart-"))
    base.mkdir(parents=True, exist_ok=True)
    root, url = base / "drop", f"sqlite:///{base / 'ledger.db'}"
    import db

    db.upgrade(url)
    try:
        built = _build(root, url, args.files)
        print(f"built {args.files} files and their ledger rows in {built:.0f} s")
        got = _walk(root, url)
    finally:
        if args.folder is None:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"restart walk over {args.files} kept files: {got['walk_s']:.1f} s "
        f"({args.files / max(got['walk_s'], 1e-9):.0f} files/s); longest tick "
        f"{got['longest_tick_s']:.2f} s; {got['lookups']} ledger lookups of at most "
        f"{got['largest_lookup']} paths; {got['progress_lines']} progress lines; remembered "
        f"files at most {got['remembered_max']} (cap {got['remembered_cap']}); recorded again: "
        f"{got['sent']}; peak memory {got['peak_mib_before']:.0f} MiB before the walk, "
        f"{got['peak_mib_after']:.0f} MiB after"
    )
    return 0 if got["sent"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
