"""Is this usqa process doing its job? The answer behind ``usqa health``, the container
HEALTHCHECK and the Kubernetes probes.

A long-running process (``usqa worker``, ``usqa ingest``, ``usqa run``) writes a small JSON
heartbeat file (``USQA_HEARTBEAT_FILE``) from its *main loop*, after each piece of work and on
every idle turn. A separate short-lived ``usqa health`` reads it and also pings the broker:

* no file, or a file older than three beat intervals: the loop has died or hangs;
* a task in hand for longer than its limit (``USQA_TASK_TIME_LIMIT``, plus as long again
  and at most a minute): the process is alive but stuck;
* the broker does not answer within a few seconds: the worker cannot consume.

Any of these makes the process unhealthy (exit 1). Under systemd (``Type=notify`` with
``WatchdogSec=``) each beat also pings systemd's watchdog, except while a task is stuck, so
systemd restarts a hung or stuck process by itself. In a Celery worker the beat comes from a
worker bootstep on Celery's own timer, in the pool's parent process: the timer runs in the
same event loop that receives tasks, so a hung consumer stops the beat, and the oldest
running task is read from Celery's table of active requests.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from dicom_io.messages import shown_url
from worker.errors import ConfigError
from worker.logs import Outage

__all__ = [
    "Beat",
    "Check",
    "HeartbeatFile",
    "beating",
    "celery_heartbeat_step",
    "check_broker",
    "check_heartbeat",
    "notify_systemd",
    "run_checks",
]

log = logging.getLogger(__name__)

STALE_AFTER_BEATS = 3.0
STUCK_GRACE_SECONDS = 60.0
LOOP_INTERVAL_FLOOR_SECONDS = 20.0
BROKER_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Beat:
    """One heartbeat as written to the file."""

    role: str  # worker | ingest | run
    pid: int
    hostname: str
    time: float  # wall clock (epoch seconds) of this beat
    interval: float  # seconds between beats the writer promises
    busy_since: float | None = None  # wall clock start of the oldest task in hand
    busy_limit: float | None = None  # seconds a task may take before it counts as stuck
    scans_done: int = 0  # work items finished (scans, or Celery tasks for a worker)


@dataclass(frozen=True)
class Check:
    """The result of one health check."""

    name: str
    ok: bool
    detail: str


class HeartbeatFile:
    """Writes this process's beats to ``path`` atomically (write a temporary file, rename)."""

    def __init__(
        self, path: Path, role: str, interval: float, busy_limit: float | None = None
    ) -> None:
        if interval <= 0:
            raise ConfigError(f"heartbeat interval must be > 0 seconds, got {interval}")
        self.path = Path(path)
        self.role = role
        self.interval = float(interval)
        self.busy_limit = busy_limit
        self.hostname = socket.gethostname()
        self._outage = Outage(log)
        self._last_write = float("-inf")
        self._ready_sent = False

    @classmethod
    def from_settings(cls, settings: Any, role: str) -> HeartbeatFile | None:
        """The heartbeat file named by ``USQA_HEARTBEAT_FILE``, or None when it is unset."""
        path = getattr(settings, "heartbeat_file", None)
        if path is None:
            return None
        interval = float(settings.heartbeat_seconds)
        if role != "worker":
            # The ingester's loop may spend a while hashing a burst of large files or walking
            # a big folder between turns: it promises a beat at least every 20 s.
            interval = max(interval, LOOP_INTERVAL_FLOOR_SECONDS)
        task_limit = float(settings.task_time_limit)
        # Celery replaces a pool process at the limit; allow it that long again (at most a
        # minute) before calling the worker stuck.
        limit = task_limit + min(STUCK_GRACE_SECONDS, task_limit)
        return cls(Path(path), role, interval, busy_limit=limit)

    def write(self, *, busy_since: float | None = None, scans_done: int = 0) -> None:
        """Record a beat now. Never raises: an unwritable file shows up as unhealthy."""
        beat = Beat(
            role=self.role,
            pid=os.getpid(),
            hostname=self.hostname,
            time=time.time(),
            interval=self.interval,
            busy_since=busy_since,
            busy_limit=self.busy_limit if busy_since is not None else None,
            scans_done=scans_done,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".heartbeat-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(beat), fh)
            Path(tmp).replace(self.path)
            self._outage.recovered("heartbeat file %s written again", self.path)
        except OSError as exc:
            self._outage.failed("cannot write heartbeat file %s: %s", self.path, exc.strerror)
        stuck = (
            busy_since is not None
            and self.busy_limit is not None
            and beat.time - busy_since > self.busy_limit
        )
        if not stuck:  # a stuck process stops feeding systemd's watchdog, which restarts it
            self._notify_systemd()

    def _notify_systemd(self) -> None:
        """Under systemd (Type=notify, WatchdogSec=): READY=1 once, then WATCHDOG=1 per beat."""
        message = b"WATCHDOG=1" if self._ready_sent else b"READY=1\nWATCHDOG=1"
        if notify_systemd(message):
            self._ready_sent = True

    def tick(self, *, busy_since: float | None = None, scans_done: int = 0) -> None:
        """Call from the main loop as often as it turns: writes a beat when half an interval
        has passed since the last one (a loop that stops turning stops the beats)."""
        now = time.monotonic()
        if now - self._last_write >= self.interval / 2.0:
            self._last_write = now
            self.write(busy_since=busy_since, scans_done=scans_done)

    def remove(self) -> None:
        """On a clean stop: no heartbeat means not running."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("heartbeat file %s not removed: %s", self.path, exc)


def beating(
    heartbeat: HeartbeatFile | None,
    until_idle: Callable[[], bool] | None,
    *,
    busy_since: Callable[[], float | None] | None = None,
    done: Callable[[], int] | None = None,
) -> Callable[[], bool] | None:
    """Wrap the ``until_idle`` callback that the ingester's loop calls after every tick so
    that each turn of the loop also ticks the heartbeat (``busy_since`` and ``done`` read the
    scorer's state in ``usqa run``). Returns ``until_idle`` itself when there is no heartbeat."""
    if heartbeat is None:
        return until_idle
    beat = heartbeat

    def after_tick() -> bool:
        beat.tick(
            busy_since=busy_since() if busy_since is not None else None,
            scans_done=done() if done is not None else 0,
        )
        return bool(until_idle()) if until_idle is not None else False

    return after_tick


def notify_systemd(message: bytes) -> bool:
    """Send ``message`` to systemd's notification socket (``NOTIFY_SOCKET``, set for units of
    Type=notify). Returns False when there is none or it cannot be reached; never raises."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "@/":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message)
    except OSError as exc:
        log.debug("systemd notification not sent: %s", exc)
        return False
    return True


def read_beat(path: Path) -> Beat:
    """The last beat in ``path``. Raises OSError (missing) or ValueError (malformed)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    fields = Beat.__dataclass_fields__
    return Beat(**{k: v for k, v in data.items() if k in fields})


def check_heartbeat(path: Path | None, now: float | None = None) -> Check:
    """Fresh beat and no task stuck past its limit."""
    if path is None:
        return Check(
            "heartbeat",
            False,
            "USQA_HEARTBEAT_FILE is not set: the process writes no heartbeat to check; set it "
            "to the same path for the process and for `usqa health`",
        )
    try:
        beat = read_beat(path)
    except FileNotFoundError:
        return Check(
            "heartbeat",
            False,
            f"{path}: no heartbeat file; the process is not running or has not started yet",
        )
    except (OSError, ValueError, TypeError) as exc:
        return Check("heartbeat", False, f"{path}: unreadable heartbeat file ({exc})")
    now = time.time() if now is None else now
    age = now - beat.time
    limit = STALE_AFTER_BEATS * beat.interval
    who = f"{beat.role} pid {beat.pid} on {beat.hostname}"
    if age > limit:
        return Check(
            "heartbeat",
            False,
            f"{who}: last heartbeat {age:.0f} s ago, expected every {beat.interval:g} s; its "
            "main loop has stopped or hangs",
        )
    if beat.busy_since is not None and beat.busy_limit is not None:
        busy = now - beat.busy_since
        if busy > beat.busy_limit:
            return Check(
                "heartbeat",
                False,
                f"{who}: stuck on one task for {busy:.0f} s (limit {beat.busy_limit:.0f} s)",
            )
    state = "idle" if beat.busy_since is None else f"busy {now - beat.busy_since:.0f} s"
    return Check(
        "heartbeat", True, f"{who}: beat {age:.0f} s ago, {state}, {beat.scans_done} scans done"
    )


def check_broker(url: str | None, timeout: float = BROKER_TIMEOUT_SECONDS) -> Check:
    """The broker answers within ``timeout`` seconds (Redis: PING; others: a connection)."""
    if not url:
        return Check("broker", True, "embedded mode (no USQA_BROKER_URL): no broker to reach")
    shown = shown_url(url)
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        why = text[0] if text else type(exc).__name__
        return Check(
            "broker",
            False,
            f"{shown}: no answer within {timeout:g} s ({why}); the worker cannot receive scans",
        )
    return Check("broker", True, f"{shown}: answers")


def run_checks(settings: Any, *, broker: bool = True) -> list[Check]:
    """Every check ``usqa health`` makes for ``settings``."""
    path = getattr(settings, "heartbeat_file", None)
    checks = [check_heartbeat(Path(path) if path else None)]
    if broker:
        checks.append(check_broker(settings.broker_url))
    return checks


def celery_heartbeat_step(settings: Any) -> type | None:
    """A Celery worker bootstep that writes the heartbeat file from the worker's timer (the
    parent process's event loop), with the start time of the oldest running task. None when
    ``USQA_HEARTBEAT_FILE`` is unset. Add it with ``app.steps["worker"].add(step)``."""
    found = HeartbeatFile.from_settings(settings, "worker")
    if found is None:
        return None
    heartbeat: HeartbeatFile = found
    from celery import bootsteps

    class HeartbeatStep(bootsteps.StartStopStep):
        requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None

        def start(self, parent: Any) -> None:
            self.beat()
            self.tref = parent.timer.call_repeatedly(heartbeat.interval, self.beat, priority=10)

        def stop(self, parent: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None
            heartbeat.remove()

        def beat(self) -> None:
            from celery.worker import state

            starts = [r.time_start for r in list(state.active_requests) if r.time_start]
            # total_count: tasks this worker finished, by task name.
            done = sum(int(n) for n in getattr(state, "total_count", {}).values())
            heartbeat.write(busy_since=min(starts) if starts else None, scans_done=done)

    return HeartbeatStep
