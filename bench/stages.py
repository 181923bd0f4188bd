"""The end-to-end stages: ``usqa run`` (PNG throughput, then single-file latency), ``usqa
run`` on cine loops, and the scaled mode (``usqa ingest`` + two ``usqa worker`` on Redis and
PostgreSQL). Each starts real processes with a fresh ledger and stops them afterwards."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

import db
from bench.processes import Ledger, MemoryWatch, UsqaProcess, load_average, until
from bench.profile import py_spy
from bench.workload import Workload, drop
from db.models import WorkerProcess

__all__ = ["Stage", "cine", "embedded", "scaled"]

log = logging.getLogger(__name__)

READY = "watching"  # the ingester's first log line: the model is loaded, files are taken


@dataclass
class Stage:
    """What one end-to-end stage measured."""

    name: str
    files: int
    frames: int
    seconds: float  # drop of the first file -> every row final, as the benchmark saw it
    statuses: dict[str, int]
    ledger: dict[str, float]
    load_before: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.statuses) - {"scored"}:
            raise RuntimeError(
                f"{self.name}: not every file was scored ({self.statuses}); a throughput "
                "with failed or skipped files measures nothing (see the usqa log)"
            )

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
            "files_per_s": round(self.files / self.seconds, 2) if self.seconds > 0 else 0.0,
            "statuses": self.statuses,
            "ledger": {k: round(v, 3) for k, v in self.ledger.items()},
            "load_average_before": [round(x, 2) for x in self.load_before],
            **self.extra,
        }


@contextmanager
def _maybe_profile(pid: int, folder: Path | None, name: str) -> Iterator[None]:
    """py-spy on ``pid`` (and its children) during the block when ``folder`` is given."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with py_spy(pid, folder / f"{name}.txt") as running:
        if not running:
            log.warning("py-spy is not installed: no profile of %s", name)
        yield


EXTRA_ENV: dict[str, str] = {}  # `--set NAME=VALUE`: given to every usqa process, last
# the Scorer settings of the end-to-end stages (`--end-to-end best`): the fastest model-only
# configuration; USQA_INFERENCE_STREAMS only where a process has all the cores
SCORER_ENV: dict[str, str] = {}


def base_env(url: str, stable_seconds: float, **more: str) -> dict[str, str]:
    """The environment of a usqa process: ours without USQA_*, then the bench settings,
    then what ``--set`` asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
    env.update(
        USQA_DATABASE_URL=url,
        USQA_STABLE_SECONDS=f"{stable_seconds:g}",
        USQA_LOG_LEVEL="INFO",
        **more,
    )
    env.update(
        {k: v for k, v in SCORER_ENV.items()
         if k != "USQA_INFERENCE_STREAMS" or "USQA_THREADS" not in more}
    )  # fmt: skip
    env.update(EXTRA_ENV)
    return env


def _throughput(
    name: str,
    files: list[Path],
    folder: Path,
    staging: Path,
    ledger: Ledger,
    already: int,
    timeout: float,
) -> tuple[float, float]:
    """Drop ``files`` at once; seconds until ``already + len(files)`` rows are final: from
    the first rename to the last row's own ``finished_at`` (written by usqa as it commits),
    so the poll interval neither adds to the time nor takes CPU from the run."""
    wall, t0 = drop(files, folder, staging)
    seen = ledger.wait_terminal(already + len(files), timeout)
    last = ledger.last_finished()
    seconds = last - wall if last is not None and last > wall else seen - t0
    log.info("%s: %d file(s) final after %.2f s", name, len(files), seconds)
    return t0, seconds


def _latency(
    files: list[Path], folder: Path, staging: Path, ledger: Ledger, gap: float, already: int
) -> dict[str, Any]:
    """Drop single files into the idle runner; drop-to-row seconds for each."""
    observed: list[float] = []
    recorded: list[float] = []
    for i, src in enumerate(files):
        time.sleep(gap)  # idle: nothing queued, nothing running
        wall, t0 = drop([src], folder, staging / str(i))
        target = f"00000-{src.name.replace(' ', '_')}"
        seen = ledger.wait_terminal(already + i + 1, 60.0, interval=0.01)
        observed.append(seen - t0)
        row = ledger.row(target)
        if row is not None and row.finished_at is not None:
            recorded.append(row.finished_at.timestamp() - wall)
    values = np.array(recorded or observed)
    return {
        "files": len(files),
        "gap_s": gap,
        "p50_s": round(float(np.percentile(values, 50)), 3),
        "p95_s": round(float(np.percentile(values, 95)), 3),
        "max_s": round(float(values.max()), 3),
        "source": "ledger finished_at - drop time" if recorded else "poll",
        "observed_p50_s": round(float(np.percentile(observed, 50)), 3),
        "observed_p95_s": round(float(np.percentile(observed, 95)), 3),
    }


def embedded(
    work: Workload,
    tmp: Path,
    memory: MemoryWatch,
    stable_seconds: float,
    latency_gap: float,
    timeout: float,
    profile: Path | None = None,
    *,
    name: str = "embedded",
    measure_latency: bool = True,
) -> tuple[Stage, dict[str, Any]]:
    """``usqa run``: N PNG files at once, then (``measure_latency``) single files into the
    idle runner. ``name`` is the stage's folder and profile name (one per round)."""
    folder = tmp / name
    folder.mkdir()
    url = f"sqlite:///{folder / 'usqa.db'}"
    proc = UsqaProcess(
        "run", ["run", "--watch", str(folder / "drop")], base_env(url, stable_seconds), folder
    )
    memory.add(proc.start(), "run")
    try:
        proc.wait_for(READY, 600)
        ledger = Ledger(url)
        load = load_average()
        with _maybe_profile(proc.pid, profile, name):
            _, seconds = _throughput(
                name, work.pngs, folder / "drop", folder / "staging", ledger, 0, timeout
            )
        stage = Stage(
            "embedded",
            len(work.pngs),
            len(work.pngs),
            seconds,
            ledger.counts(),
            ledger.span(),
            load,
        )
        latency: dict[str, Any] = {}
        if work.latency and measure_latency:
            latency = _latency(
                work.latency,
                folder / "drop",
                folder / "staging",
                ledger,
                latency_gap,
                len(work.pngs),
            )
            latency["stable_seconds"] = stable_seconds
        memory.sample()
    finally:
        proc.stop()
    return stage, latency


def cine(
    work: Workload, tmp: Path, memory: MemoryWatch, stable_seconds: float, timeout: float
) -> Stage:
    """``usqa run`` with M multi-frame JPEG cine loops dropped at once (default settings:
    USQA_FRAMES_TO_SCORE frames scored per loop)."""
    folder = tmp / "cine"
    folder.mkdir()
    url = f"sqlite:///{folder / 'usqa.db'}"
    proc = UsqaProcess(
        "run-cine", ["run", "--watch", str(folder / "drop")], base_env(url, stable_seconds), folder
    )
    memory.add(proc.start(), "run-cine")
    try:
        proc.wait_for(READY, 600)
        ledger = Ledger(url)
        load = load_average()
        _, seconds = _throughput(
            "cine", work.cines, folder / "drop", folder / "staging", ledger, 0, timeout
        )
        info = ledger.span()
        stage = Stage(
            "cine",
            len(work.cines),
            int(info["frames_scored"]),
            seconds,
            ledger.counts(),
            info,
            load,
            {"frames_per_file": work.cine_frames},
        )
        memory.sample()
    finally:
        proc.stop()
    return stage


@contextmanager
def _postgres(server: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server (dropped afterwards); its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"usqa_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        db.dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def _redis(url: str) -> Iterator[str]:
    """The dedicated Redis database, flushed before and after (only that database)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def _celery_processes_ready(url: str) -> int:
    """Pool processes alive with their model loaded (compiled, for the compile backend):
    before that, a pool process that has a heartbeat is still starting up."""
    with db.session_scope(url, readonly=True) as session:
        rows = session.scalars(
            select(WorkerProcess).where(
                WorkerProcess.mode == "celery",
                WorkerProcess.stopped_at.is_(None),
                WorkerProcess.model_version.is_not(None),
            )
        ).all()
    return len(rows)


def scaled(
    work: Workload,
    tmp: Path,
    memory: MemoryWatch,
    stable_seconds: float,
    timeout: float,
    redis_url: str,
    postgres_url: str,
    workers: int = 2,
    profile: Path | None = None,
) -> tuple[Stage, Stage | None]:
    """``usqa ingest`` + ``workers`` x ``usqa worker`` on Redis and PostgreSQL: the N PNG
    files at once, then the long cine alone (every frame scored: USQA_FRAMES_TO_SCORE=0)."""
    folder = tmp / "scaled"
    folder.mkdir()
    with _redis(redis_url), _postgres(postgres_url) as url:
        db.upgrade(url)
        # several `usqa worker` on one machine: each gets its share of the cores, as
        # docs/operations.md tells operators to do (they do not know of each other)
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        env = base_env(
            url,
            stable_seconds,
            USQA_BROKER_URL=redis_url,
            USQA_FRAMES_TO_SCORE="0",
            USQA_THREADS=str(threads),
        )
        procs = [UsqaProcess("ingest", ["ingest", "--watch", str(folder / "drop")], env, folder)]
        procs += [
            UsqaProcess(f"worker-{i + 1}", ["worker", "--concurrency", "1"], env, folder)
            for i in range(workers)
        ]
        try:
            for p in procs:
                memory.add(p.start(), p.name)
            procs[0].wait_for(READY, 600)
            for p in procs[1:]:
                p.wait_for("ready", 600)  # Celery's "<node> ready." once it consumes
            # Celery is "ready" before its pool processes have loaded (and compiled) the
            # model; timing from then on would count their start-up as scoring time
            until(lambda: _celery_processes_ready(url) >= workers, 600, "models loaded")
            ledger = Ledger(url)
            load = load_average()
            with _maybe_profile(procs[1].pid, profile, "scaled-worker-1"):
                _, seconds = _throughput(
                    "scaled", work.pngs, folder / "drop", folder / "staging", ledger, 0, timeout
                )
            stage = Stage(
                "scaled",
                len(work.pngs),
                len(work.pngs),
                seconds,
                ledger.counts(),
                ledger.span(),
                load,
                {
                    "workers": workers,
                    "threads_per_worker": threads,
                    "note": "timed from the drop, once every pool process has loaded its model",
                },
            )
            long_stage = None
            if work.long_cine is not None:
                before = ledger.span()
                load = load_average()
                _, seconds = _throughput(
                    "long cine",
                    [work.long_cine],
                    folder / "drop",
                    folder / "staging-long",
                    ledger,
                    len(work.pngs),
                    timeout,
                )
                after = ledger.span()
                frames = int(after["frames_scored"] - before["frames_scored"])
                long_stage = Stage(
                    "long cine (scaled)",
                    1,
                    frames,
                    seconds,
                    ledger.counts(),
                    {k: after[k] - before[k] for k in ("frames_scored", "decode_s", "inference_s")},
                    load,
                    {"frames_per_file": work.long_cine_frames},
                )
            memory.sample()
        finally:
            for p in reversed(procs):
                p.stop()
    return stage, long_stage
