"""The benchmark harness (bench/) keeps working: its workload, memory sampling and target
arithmetic on tiny inputs, and a ``python -m bench --quick`` run against the real services."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.processes import MemoryWatch, peak_rss_mb
from bench.results import Results, check_targets
from bench.workload import Workload, drop

REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_workload_files_read_as_the_pipeline_reads_them(tmp_path: Path, busi_dir: Path) -> None:
    from dicom_io import ReadOptions, read

    work = Workload.build(tmp_path, 2, 1, 1, 100, 0, busi_dir)
    assert len(work.pngs) == 2 and work.long_cine is None
    split = {
        line.split(",")[0]: line.rsplit(",", 1)[1]
        for line in (busi_dir / "splits.csv").read_text().splitlines()[1:]
    }
    assert [split[p.relative_to(busi_dir).as_posix()] for p in work.pngs] == ["test", "test"]
    # the latency file: same pixels as its source, other bytes (not deduplicated)
    source = work.pngs[0]
    with Image.open(source) as a, Image.open(work.latency[0]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert _sha(source) != _sha(work.latency[0])
    scan = read(work.cines[0], ReadOptions())
    assert (scan.kind, scan.frame_count, scan.samples_per_pixel) == ("dicom", 100, 3)
    assert scan.metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    frames = list(scan.iter_frames())
    assert len(frames) == 16 and frames[0][1].dtype == np.uint8
    # dropping moves every file into the folder under a unique name
    drop_dir = tmp_path / "drop"
    drop(work.pngs, drop_dir, tmp_path / "staging")
    assert len(list(drop_dir.iterdir())) == 2


def test_memory_watch_sees_a_child_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "x = bytearray(60 * 1024 * 1024); import time; time.sleep(1.5)"]
    )
    watch = MemoryWatch(interval=0.05)
    watch.add(child.pid, "child")
    watch.start()
    try:
        child.wait(30)
    finally:
        watch.stop()
    assert watch.by_role()["child"] >= 60
    assert (peak_rss_mb() or 0) > 0


def test_targets_are_ratios_of_the_measured_rates() -> None:
    results = Results(machine={}, settings={})
    results.model_only = [
        {
            "precision": "fp32",
            "batch_size": 32,
            "streams": 1,
            "threads_per_stream": 2,
            "frames": 10,
            "seconds": 1.0,
            "frames_per_s": 10.0,
        },
        {
            "precision": "bf16",
            "batch_size": 8,
            "streams": 2,
            "threads_per_stream": 1,
            "frames": 10,
            "seconds": 0.5,
            "frames_per_s": 20.0,
        },
    ]
    results.naive = {"files": 10, "seconds": 2.0, "frames_per_s": 5.0}
    results.stages["embedded"] = {"files": 10, "frames": 10, "seconds": 0.625, "frames_per_s": 16.0}
    results.latency = {"p95_s": 1.6, "p50_s": 1.0, "max_s": 2.0, "files": 3, "stable_seconds": 0.5}
    results.memory_mb = {"run": 900.0, "worker-1/pool": 1600.0, "worker-1/decoder": 2000.0}
    targets = check_targets(results)
    assert targets["embedded / model only"] == (0.8, ">= 0.8", True)
    assert targets["embedded / naive"][0] == pytest.approx(3.2)
    assert targets["scaled / naive"] == (None, ">= 2.0", None)
    assert targets["latency p95 (s)"][2] is False
    assert targets["worker peak RSS (MiB)"][:1] == (1600.0,)  # decoders are not the worker
    assert "embedded / model only" in results.table()
    json.dumps(results.as_dict())


def test_the_table_names_the_machine_and_the_code_it_measured() -> None:
    import re

    import bench
    from bench.cli import _revision

    results = Results(
        machine={
            "cpu": "AMD EPYC",
            "cores": 2,
            "memory_gib": 23.5,
            "torch": "2.x",
            "code": "abc1234",
        },
        settings={},
    )
    first = results.table().splitlines()[0]
    assert first == "machine: AMD EPYC, 2 cores, 23.5 GiB, torch 2.x; code abc1234"
    revision = _revision()
    if (Path(bench.__file__).resolve().parent.parent / ".git").exists():
        assert revision is not None and re.fullmatch(r"[0-9a-f]{7,}(\+changes)?", revision)


def test_with_rounds_the_ratio_compares_the_medians_of_fresh_runs() -> None:
    """The sweep's best run is the largest of many noisy runs; with rounds the ratio uses
    the median of that configuration measured again beside each embedded round."""
    results = Results(machine={}, settings={})
    results.model_only = [
        {
            "precision": "bf16",
            "batch_size": 8,
            "streams": 2,
            "threads_per_stream": 1,
            "frames": 10,
            "seconds": 0.4,
            "frames_per_s": 25.0,
        }
    ]
    again = {**results.model_only[0]}
    results.model_rounds = [
        {**again, "frames_per_s": fps, "seconds": 10 / fps} for fps in (20.0, 16.0, 22.0)
    ]
    results.embedded_rounds = [
        {"files": 10, "frames": 10, "seconds": 10 / fps, "frames_per_s": fps}
        for fps in (15.0, 12.0, 17.0)
    ]
    results.stages["embedded"] = results.embedded_rounds[0]  # the median round
    assert results.model_fps() == 20.0
    value, _, met = check_targets(results)["embedded / model only"]
    assert value == pytest.approx(0.75) and met is False
    table = results.table()
    assert "round 3: model only, best config again" in table
    assert "embedded (10 files, median of 3 rounds)" in table
    assert len(json.loads(json.dumps(results.as_dict()))["embedded_rounds"]) == 3


@pytest.mark.integration
@pytest.mark.slow
def test_the_sweep_tries_the_compile_backend_and_the_end_to_end_runs_take_the_best() -> None:
    from bench import stages
    from bench.cli import _model_configs, _score_gaps, build_parser
    from bench.inference import ModelRun

    full = _model_configs(build_parser().parse_args([]), bf16=True)
    assert ("bf16", 8, 2, "compile") in full and ("bf16", 16, 2, "compile") in full
    assert ("fp32", 32, 1, "eager") in full and len(full) == 14
    eager_only = _model_configs(build_parser().parse_args(["--backends", "eager"]), bf16=False)
    assert {c[3] for c in eager_only} == {"eager"} and {c[0] for c in eager_only} == {"fp32"}
    quick = _model_configs(build_parser().parse_args(["--quick"]), bf16=True)
    assert {c[3] for c in quick} == {"eager"}

    scores = np.array([50.0, 60.0])
    runs = [
        ModelRun("fp32", 8, 2, 1, 100, 2.0, scores),
        ModelRun("bf16", 8, 2, 1, 100, 1.0, scores + 0.25),
        ModelRun("bf16", 8, 2, 1, 100, 0.9, scores - 0.125, backend="compile"),
    ]
    notes = _score_gaps(runs, 2)
    assert any("eager bf16" in n and "0.250" in n for n in notes)
    assert any("compile bf16" in n and "0.125" in n for n in notes)
    best = max(runs, key=lambda r: r.fps)
    assert best.settings() == {
        "USQA_BACKEND": "compile",
        "USQA_PRECISION": "bf16",
        "USQA_BATCH_SIZE": "8",
        "USQA_INFERENCE_STREAMS": "2",
    }
    stages.SCORER_ENV.update(best.settings())
    try:
        alone = stages.base_env("sqlite://", 2.0)
        shared = stages.base_env("sqlite://", 2.0, USQA_THREADS="1")
    finally:
        stages.SCORER_ENV.clear()
    assert alone["USQA_BACKEND"] == "compile" and alone["USQA_INFERENCE_STREAMS"] == "2"
    # a worker given a share of the cores keeps its automatic streams
    assert shared["USQA_BACKEND"] == "compile" and "USQA_INFERENCE_STREAMS" not in shared


def test_quick_run_measures_every_stage(tmp_path: Path, postgres_url: str) -> None:
    out = tmp_path / "bench.json"
    redis_url = os.environ.get("USQA_TEST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    env = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out),
         "--redis-url", redis_url, "--postgres-url", postgres_url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["model_only_best"]["frames_per_s"] > 0
    assert data["naive"]["files"] == 3
    stages = data["stages"]
    assert stages["embedded"]["statuses"] == {"scored": 3}
    assert [r["statuses"] for r in data["embedded_rounds"]] == [{"scored": 3}] * 2
    assert len(data["model_only_rounds"]) == 2
    assert data["model_only_rounds"][0]["batch_size"] == data["model_only_best"]["batch_size"]
    assert stages["scaled"]["statuses"] == {"scored": 3}
    assert stages["cine (embedded)"]["frames"] == 2 * 16  # USQA_FRAMES_TO_SCORE default
    assert stages["long cine (scaled, all frames)"]["frames"] == 40
    assert data["latency"]["files"] == 3 and 0 < data["latency"]["p50_s"] < 30
    rss = data["peak_rss_mb"]
    for role in ("run", "run/decoder", "run-cine", "ingest", "worker-1/pool", "worker-2/pool"):
        assert rss[role] > 0, role
    assert set(data["targets"]) >= {"embedded / model only", "latency p95 (s)"}
    assert "embedded / model only" in proc.stdout


def test_a_stage_with_files_not_scored_is_refused() -> None:
    from bench.stages import Stage

    ok = Stage("embedded", 3, 3, 1.5, {"scored": 3}, {}, (0.0, 0.0, 0.0))
    assert ok.fps == 2.0
    with pytest.raises(RuntimeError, match="not every file was scored"):
        Stage("embedded", 3, 3, 0.1, {"scored": 1, "failed": 2}, {}, (0.0, 0.0, 0.0))
