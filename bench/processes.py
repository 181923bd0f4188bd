"""Real ``usqa`` processes for the benchmark, their peak memory, and the ledger they fill.

Peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``) of every
process in a started process tree (the command, Celery pool processes, decoder children),
sampled a few times a second so that children which exit are caught too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

import db
from db.models import ACTIVE, Scan
from db.session import READONLY

__all__ = [
    "Ledger",
    "MemoryWatch",
    "UsqaProcess",
    "load_average",
    "peak_rss_mb",
    "until",
]


def until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def _status_kb(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def peak_rss_mb(pid: int | None = None) -> float | None:
    """The peak resident set size of ``pid`` (default: this process) in MiB."""
    kb = _status_kb(os.getpid() if pid is None else pid, "VmHWM")
    return None if kb is None else kb / 1024.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        return []
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class _Seen:
    role: str
    peak_kb: int = 0


class MemoryWatch:
    """Samples the peak RSS of every process under some root pids, in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.roots: dict[int, str] = {}
        self.seen: dict[int, _Seen] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, pid: int, role: str) -> None:
        with self._lock:
            self.roots[pid] = role

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _role(self, pid: int, parent_role: str, depth: int) -> str:
        line = _cmdline(pid)
        if "worker.decod" in line:  # worker.decoding.child (worker.decoder before)
            return f"{parent_role.split('/')[0]}/decoder"
        if depth == 0:
            return parent_role
        return f"{parent_role}/pool" if "worker" in parent_role else f"{parent_role}/child"

    def sample(self) -> None:
        """Read the high-water mark of every process in the trees now."""
        with self._lock:
            roots = dict(self.roots)
        for root, role in roots.items():
            stack = [(root, role, 0)]
            while stack:
                pid, parent_role, depth = stack.pop()
                kb = _status_kb(pid, "VmHWM")
                if kb is None:
                    continue
                with self._lock:
                    entry = self.seen.get(pid)
                    if entry is None:
                        entry = self.seen[pid] = _Seen(self._role(pid, parent_role, depth))
                    entry.peak_kb = max(entry.peak_kb, kb)
                stack += [(c, entry.role, depth + 1) for c in _children(pid)]

    def by_role(self) -> dict[str, float]:
        """The largest peak RSS (MiB) per role (several pids of one role: the largest)."""
        out: dict[str, float] = {}
        with self._lock:
            for entry in self.seen.values():
                out[entry.role] = max(out.get(entry.role, 0.0), entry.peak_kb / 1024.0)
        return dict(sorted(out.items()))


def usqa_command() -> list[str]:
    """The ``usqa`` console script of this environment (or ``python -m worker.cli``)."""
    script = Path(sys.executable).with_name("usqa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "worker.cli"]


@dataclass
class UsqaProcess:
    """One ``usqa`` command running in its own process group, its log in ``log``."""

    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.cwd / f"{self.name}.log"

    def start(self) -> int:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*usqa_command(), *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, needle: str, timeout: float) -> None:
        """Wait until the log shows ``needle``; fail at once if the process exits."""

        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = "\n".join(self.text().splitlines()[-15:])
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            return needle in self.text()

        until(seen, timeout, f"{self.name} to log {needle!r}", interval=0.1)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; then SIGKILL whatever is left of its process group."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (decoder children)
        return proc.returncode


class Ledger:
    """Read-only views of the ``scans`` table that the benchmark polls."""

    def __init__(self, url: str) -> None:
        self.url = url

    def counts(self) -> dict[str, int]:
        with db.session_scope(self.url, readonly=True) as session:
            rows = session.execute(select(Scan.status, func.count()).group_by(Scan.status)).all()
        return {str(status): int(n) for status, n in rows}

    def terminal(self) -> int:
        counts = self.counts()
        return sum(n for status, n in counts.items() if status not in ACTIVE)

    def wait_terminal(self, expected: int, timeout: float, interval: float = 0.1) -> float:
        """Wait until ``expected`` rows are in a final status; the monotonic time seen. One
        connection and one ``COUNT`` per poll, so the benchmark takes little CPU from the
        processes it measures."""
        query = select(func.count()).select_from(Scan).where(Scan.status.not_in(ACTIVE))
        engine = db.get_engine(self.url)
        with engine.connect().execution_options(**{READONLY: True}) as conn:

            def done() -> bool:
                count = conn.execute(query).scalar_one()
                conn.rollback()  # end the read, so the next poll sees new rows
                return int(count) >= expected

            until(done, timeout, f"{expected} scans with a final status", interval)
        return time.monotonic()

    def last_finished(self) -> float | None:
        """Wall-clock time (epoch seconds) of the latest ``finished_at``, None if none."""
        with db.session_scope(self.url, readonly=True) as session:
            last = session.execute(select(func.max(Scan.finished_at))).scalar_one()
        return None if last is None else float(last.timestamp())

    def row(self, name: str) -> Scan | None:
        """The newest row of the file called ``name`` (any folder)."""
        with db.session_scope(self.url, readonly=True) as session:
            return session.scalars(
                select(Scan).where(Scan.path.endswith("/" + name)).order_by(Scan.id.desc())
            ).first()

    def span(self) -> dict[str, float]:
        """What the ledger says about the work: seconds from the first ``received_at`` to
        the last ``finished_at``, frames scored, and the decode and inference milliseconds
        the workers recorded (summed over scans)."""
        from db.models import ScanScore

        with db.session_scope(self.url, readonly=True) as session:
            first, last = session.execute(
                select(func.min(Scan.received_at), func.max(Scan.finished_at))
            ).one()
            frames, decode_ms, inference_ms = session.execute(
                select(
                    func.sum(ScanScore.frames_scored),
                    func.sum(ScanScore.decode_ms),
                    func.sum(ScanScore.inference_ms),
                )
            ).one()
        span = (last - first).total_seconds() if first is not None and last is not None else 0.0
        return {
            "ledger_span_s": span,
            "frames_scored": float(frames or 0),
            "decode_s": float(decode_ms or 0.0) / 1000.0,
            "inference_s": float(inference_ms or 0.0) / 1000.0,
        }
