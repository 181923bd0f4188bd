"""The fault-test harness: a Stack of real services and processes for one test, and the
helpers that restart Redis and PostgreSQL. Everything waits by polling, and every limit a
test waits under is scaled by :meth:`Stack.patience` from the start-up time measured on
this machine now (a loaded machine, another job on the second core, gets longer limits)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

import db
from db.models import ACTIVE, TERMINAL, Scan, ScanScore, WorkerProcess
from tests.helpers.poll import until

STARTUP_REFERENCE_S = 20.0  # a worker's start-up to its first heartbeat on an idle CI machine
STARTUP_LIMIT_S = 900.0  # the most a worker may take to start, however loaded the machine
REDIS_RESTART = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _stop_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (PR_SET_PDEATHSIG), so
    an interrupted test run leaves no worker behind to take the next run's tasks."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def foreign_consumers(client: redis.Redis) -> list[str]:
    """Connections to ``client``'s database that consume tasks (blocked in BRPOP) or listen
    for worker control messages: workers of another test run, which would take this one's
    tasks and drop them (their ledger is another database)."""
    mine = int(client.connection_pool.connection_kwargs.get("db", 0))
    return [
        str(c.get("addr"))
        for c in client.client_list()
        if int(c.get("db", -1)) == mine and (c.get("cmd") == "brpop" or int(c.get("psub", 0)))
    ]


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        return []
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Stack:
    """One test's services: the ledger URL, the broker, the drop folder, the processes."""

    def __init__(self, tmp: Path, url: str, broker: str, weights: Path) -> None:
        self.tmp = tmp
        self.url = url
        self.broker = broker
        self.drop = tmp / "drop"
        self.drop.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.load = 1.0  # measured start-up / STARTUP_REFERENCE_S, at least 1
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
        self.env.update(
            USQA_DATABASE_URL=url,
            USQA_BROKER_URL=broker,
            USQA_WEIGHTS=str(weights),
            USQA_STABLE_SECONDS="0.5",
            USQA_HEARTBEAT_SECONDS="0.5",
            USQA_FILES_PER_TASK="4",
            USQA_LINGER_SECONDS="0.1",
            USQA_TASK_TIME_LIMIT="60",
            USQA_STUCK_SECONDS="90",
            USQA_VISIBILITY_TIMEOUT="120",
            USQA_THREADS="1",
            USQA_PRECISION="fp32",
            USQA_MAX_ATTEMPTS="3",
            # generous: a loaded machine decodes slowly (the poison test sets its own 2 s)
            USQA_DECODE_TIMEOUT="30",
            USQA_LOG_FORMAT="json",
        )

    # --- processes ----------------------------------------------------------------------

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> int:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=self.tmp,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes all of it
            preexec_fn=_stop_with_parent,
        )
        log.close()
        self.procs[name] = proc
        return proc.pid

    def patience(self, seconds: float) -> float:
        """A limit of ``seconds`` on an idle machine, scaled by the measured load."""
        return seconds * self.load

    def beat(self) -> dict[str, str]:
        """The heartbeat period for a process started now. A scoring process is presumed
        dead after three periods of silence (by the reconciler, and by a worker claiming
        its scans); on a loaded machine a live one can be that late, and each false death
        costs its scans an attempt, so the period is scaled by the load measured so far."""
        beat = float(self.env["USQA_HEARTBEAT_SECONDS"]) * self.load
        return {"USQA_HEARTBEAT_SECONDS": f"{beat:.2f}"}

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> int:
        """Start ``usqa worker`` and wait for a heartbeat of one of its pool processes (any
        of them: Celery may replace a pool process that starts slowly). The time that took
        is this machine's start-up time now; it scales every later limit of the test."""
        started = time.monotonic()
        env = {**self.beat(), **(env or {})}
        pid = self.start(name, "worker", "--concurrency", "1", env=env)

        def beating() -> bool:
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited: {self.log(name)[-2000:]}")
            return any(self.heartbeat_of(child) for child in self.pool_pids(name))

        until(beating, STARTUP_LIMIT_S, f"{name}'s first heartbeat", interval=0.25)
        self.load = max(self.load, (time.monotonic() - started) / STARTUP_REFERENCE_S)
        return pid

    def start_ingester(self, name: str = "ingest", *extra: str) -> int:
        """Start ``usqa ingest`` (with the reconciler)."""
        pid = self.start(name, "ingest", "--watch", str(self.drop), *extra, env=self.beat())
        until(
            lambda: "watching" in self.log(name),
            self.patience(120),
            "the ingester to watch the folder",
        )
        return pid

    def pool_pids(self, name: str) -> list[int]:
        """The Celery pool processes of worker ``name`` (not its decoder children)."""
        proc = self.procs[name]
        return [p for p in children(proc.pid) if "worker.decod" not in cmdline(p)]

    def heartbeat_of(self, pid: int) -> bool:
        with db.session_scope(self.url, readonly=True) as s:
            name = f"{socket.gethostname()}:{pid}"
            return s.get(WorkerProcess, name) is not None

    def stop(self, name: str, timeout: float = 60) -> int:
        """SIGTERM and wait (the graceful path)."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill_group(self, name: str) -> None:
        """kill -9 the process and everything it started (a machine dying)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def records(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log(name).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (decoder children)
            if proc.poll() is None:
                proc.wait(10)

    # --- the ledger ---------------------------------------------------------------------

    def rows(self) -> list[Scan]:
        with db.session_scope(self.url, readonly=True) as s:
            return list(s.scalars(select(Scan).order_by(Scan.id)).all())

    def count(self, *statuses: str) -> int:
        with db.session_scope(self.url, readonly=True) as s:
            query = select(func.count()).select_from(Scan)
            if statuses:
                query = query.where(Scan.status.in_(statuses))
            return int(s.scalar(query) or 0)

    def wait_all_terminal(self, expected: int, timeout: float) -> None:
        def done() -> bool:
            try:
                return self.count() >= expected and self.count(*ACTIVE) == 0
            except Exception:  # the database may be restarting
                return False

        until(done, self.patience(timeout), f"{expected} scans with a final status", interval=0.25)

    def check_exactly_once(self, files: list[Path]) -> list[Scan]:
        """Every dropped file has exactly one row, in a final status; no scan, content or
        SOP instance has two scores for one model version."""
        rows = self.rows()
        by_path = Counter(r.path for r in rows)
        assert sorted(by_path) == sorted(str(f) for f in files), "rows != dropped files"
        assert set(by_path.values()) == {1}, [p for p, n in by_path.items() if n > 1]
        assert {r.status for r in rows} <= set(TERMINAL), Counter(r.status for r in rows)
        with db.session_scope(self.url, readonly=True) as s:
            scores = s.execute(
                select(ScanScore.scan_id, ScanScore.model_version, ScanScore.sha256)
            ).all()
        assert len(scores) == len({(a, v) for a, v, _ in scores}), "a scan scored twice"
        assert len(scores) == len({(h, v) for _, v, h in scores}), "content scored twice"
        scored = {r.id for r in rows if r.status == "scored"}
        assert {a for a, _, _ in scores} == scored, "scored rows and scores disagree"
        return rows


def ensure_redis() -> None:
    """Start Redis as CI does if it is not answering (a test restarts it)."""
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.ping()
        return
    except redis.RedisError:
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(REDIS_RESTART, check=True)
    finally:
        client.close()

    def up() -> bool:
        probe = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
        try:
            return bool(probe.ping())
        except redis.RedisError:
            return False
        finally:
            probe.close()

    until(up, 30, "Redis to answer")


def restart_redis_empty() -> None:
    """Stop Redis without saving (everything queued is lost) and start it again."""
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], check=False
    )
    ensure_redis()


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=False
    )


def restart_postgres() -> None:
    """Restart the PostgreSQL server (every connection is cut)."""
    _pg_ctl("restart")
    until(_pg_ready, 60, "PostgreSQL to accept connections")


def ensure_postgres() -> None:
    """Start PostgreSQL if it is not answering (used in finally blocks)."""
    if not _pg_ready():
        _pg_ctl("start")
        until(_pg_ready, 60, "PostgreSQL to accept connections")
