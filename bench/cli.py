"""``python -m bench``: the pipeline benchmark of issue #6, in one run on one machine.

    nice -n 10 /work/venv/bin/python -m bench --json bench-results.json
    /work/venv/bin/python -m bench --quick          # 3 files, seconds-scale smoke run

Stages, all on the same BUSI test-split files: model only (the Scorer's forward on
preprocessed batches, fp32 and bf16, two batch sizes), the naive baseline, ``usqa run``
(N files at once, then single files for latency), ``usqa run`` on cine loops, and the scaled
mode (``usqa ingest`` + two ``usqa worker``, Redis + PostgreSQL) followed by one long cine
with every frame scored. Peak RSS of every process is sampled throughout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.processes import MemoryWatch, load_average, peak_rss_mb
from bench.results import Results
from bench.workload import BUSI, Workload

if TYPE_CHECKING:
    from bench.inference import ModelRun

__all__ = ["build_parser", "main"]

log = logging.getLogger("bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure usqa's throughput, latency and memory against the model alone "
        "and a naive baseline (issue #6 targets).",
    )
    p.add_argument(
        "--files",
        type=int,
        default=468,
        help="PNG files dropped at once: the 156 BUSI test images, then copies of them "
        "re-saved with a tag (same pixels, other bytes)",
    )
    p.add_argument("--cine-files", type=int, default=4, help="multi-frame JPEG DICOM files")
    p.add_argument("--cine-frames", type=int, default=120, help="frames per cine file")
    p.add_argument(
        "--long-cine-frames",
        type=int,
        default=500,
        help="frames of the long cine scored whole by the scaled workers (0: skip)",
    )
    p.add_argument("--latency-files", type=int, default=20, help="single files for latency")
    p.add_argument("--latency-gap", type=float, default=1.0, help="idle seconds between them")
    p.add_argument(
        "--stable-seconds",
        type=float,
        default=2.0,
        help="USQA_STABLE_SECONDS for every stage (default: usqa's own default; files are "
        "renamed into the drop folder, so usqa takes them without waiting for it)",
    )
    p.add_argument("--model-frames", type=int, default=0, help="frames per model-only run "
                   "(default: the PNG files, at least 64)")  # fmt: skip
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads "
                   "of the in-process measurements (model only, naive)")  # fmt: skip
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every usqa process (e.g. USQA_BATCH_SIZE=16); "
        "repeat for more",
    )
    p.add_argument(
        "--backends",
        default="eager,compile",
        help="Scorer backends the model-only sweep tries (compile: bf16, or fp32 without "
        "native bf16, at batch 16 and 8, most streams; --quick: eager only)",
    )
    p.add_argument(
        "--end-to-end",
        choices=("best", "default"),
        default="best",
        help="Scorer settings of the end-to-end stages: those of the fastest model-only "
        "configuration (best; usqa defaults when the model stage is skipped) or usqa's "
        "defaults; --set still wins",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated stages to leave out: model,naive,embedded,cine,scaled",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database for the bench alone (flushed before and after)",
    )
    p.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server; a fresh schema is made and dropped",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="embedded throughput rounds (a fresh `usqa run` each), each after a fresh "
        "model-only run of the best configuration; the ratio compares the two medians",
    )
    p.add_argument("--busi", type=Path, default=BUSI, help="the BUSI copy (splits.csv)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write results here")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="record py-spy profiles of the runner and a worker into DIR")  # fmt: skip
    p.add_argument("--timeout", type=float, default=1800.0, help="per-stage limit, seconds")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 PNGs, 2 cines of 100 frames, a 40-frame long cine, 3 latency "
        "files, fp32 and bf16 at the default batch size (1 and 2 streams), 2 rounds",
    )
    return p


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    import torch

    from model.scorer import bf16_supported

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "bf16_native": bf16_supported("cpu"),
        "load_average_start": [round(x, 2) for x in load_average()],
        "code": _revision(),
    }


def _revision() -> str | None:
    """The checkout's commit, with "+changes" when the working tree differs from it (None
    outside a git checkout): which code a run measured."""
    import subprocess

    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _model_configs(args: argparse.Namespace, bf16: bool) -> list[tuple[str, int, int, str]]:
    """(precision, batch, streams, backend) for the model-only sweep."""
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    sizes = [8] if args.quick else [32, 16, 8]
    streams = [1, 2] if args.threads >= 2 else [1]
    configs = [(p, b, n, "eager") for p in precisions for b in sizes for n in streams]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "compile" in backends and not args.quick:
        configs += [(precisions[-1], b, streams[-1], "compile") for b in (16, 8)]
    return configs


def _score_gaps(runs: list[ModelRun], files: int) -> list[str]:
    """How far bf16 and the compile backend move the scores from eager fp32."""
    eager32 = next((r for r in runs if (r.backend, r.precision) == ("eager", "fp32")), None)
    if eager32 is None:
        return []
    notes = []
    for backend, precision in (("eager", "bf16"), ("compile", "bf16"), ("compile", "fp32")):
        other = next((r for r in runs if (r.backend, r.precision) == (backend, precision)), None)
        if other is not None:
            gap = float(abs(eager32.scores - other.scores).max())
            notes.append(
                f"{backend} {precision} vs eager fp32 scores on these {files} test images: "
                f"max |difference| {gap:.3f} points"
            )
    return notes


def _embedded_rounds(
    args: argparse.Namespace,
    results: Results,
    work: Workload,
    tmp: Path,
    memory: MemoryWatch,
    best: ModelRun | None,
    frames: int,
) -> None:
    """``--rounds`` times: the best model-only configuration again (in this process), then
    ``usqa run`` on the N files (a fresh process and ledger). The two are measured side by
    side, round after round, so a slow minute on a shared host slows both; the median round
    counts. Latency (and the profile) are taken in the last round."""
    from bench import inference, stages

    rounds = max(1, args.rounds)
    for i in range(rounds):
        if best is not None:
            again = inference.model_only(work.pngs, [best.config()], args.threads, frames)
            results.model_rounds.append(again[0].as_dict())
        last = i == rounds - 1
        stage, latency = stages.embedded(
            work,
            tmp,
            memory,
            args.stable_seconds,
            args.latency_gap,
            args.timeout,
            args.profile if last else None,
            name="embedded" if rounds == 1 else f"embedded-{i + 1}",
            measure_latency=last,
        )
        results.embedded_rounds.append(stage.as_dict())
        if latency:
            results.latency = latency
    fps = [r["frames_per_s"] for r in results.embedded_rounds]
    median = statistics.median_low(fps)
    results.stages["embedded"] = results.embedded_rounds[fps.index(median)]
    if best is not None and results.model_rounds:
        sweep = best.fps
        results.notes.append(
            f"embedded / model only against the sweep's single best run ({sweep:.1f} frames/s, "
            f"the largest of {len(results.model_only)} runs): {median / sweep:.3f}"
        )


def run(args: argparse.Namespace) -> Results:
    from bench import inference, stages

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    stages.EXTRA_ENV.clear()
    stages.SCORER_ENV.clear()
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set {item}: expected NAME=VALUE")
        stages.EXTRA_ENV[name] = value
    bad = skip - {"model", "naive", "embedded", "cine", "scaled"}
    if bad:
        raise SystemExit(f"--skip {','.join(sorted(bad))}: unknown stage")
    results = Results(
        machine=_machine(),
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    memory = MemoryWatch()
    memory.start()
    with tempfile.TemporaryDirectory(prefix="usqa-bench-") as tmp_text:
        tmp = Path(tmp_text)
        log.info("building the workload in %s", tmp)
        work = Workload.build(
            tmp,
            args.files,
            args.latency_files,
            args.cine_files,
            args.cine_frames,
            args.long_cine_frames,
            args.busi,
        )
        best: ModelRun | None = None
        frames = args.model_frames or max(64, len(work.pngs))
        try:
            if "model" not in skip:
                from model.scorer import bf16_supported

                configs = _model_configs(args, bf16_supported("cpu"))
                runs = inference.model_only(work.pngs, configs, args.threads, frames)
                results.model_only = [r.as_dict() for r in runs]
                results.notes.extend(_score_gaps(runs, len(work.pngs)))
                best = max(runs, key=lambda r: r.fps)
                if args.end_to_end == "best":
                    stages.SCORER_ENV.update(best.settings())
                    results.notes.append(
                        "end-to-end stages ran with the fastest model-only configuration: "
                        + " ".join(f"{k}={v}" for k, v in stages.SCORER_ENV.items())
                    )
            if "naive" not in skip:
                naive = inference.naive_baseline(work.pngs, tmp / "naive.db", args.threads)
                results.naive = naive.as_dict()
            results.memory_mb["bench (model only + naive, in-process)"] = peak_rss_mb() or 0.0
            if "embedded" not in skip:
                _embedded_rounds(args, results, work, tmp, memory, best, frames)
            if "cine" not in skip and work.cines:
                stage = stages.cine(work, tmp, memory, args.stable_seconds, args.timeout)
                results.stages["cine (embedded)"] = stage.as_dict()
            if "scaled" not in skip:
                stage, long_stage = stages.scaled(
                    work,
                    tmp,
                    memory,
                    args.stable_seconds,
                    args.timeout,
                    args.redis_url,
                    args.postgres_url,
                    profile=args.profile,
                )
                results.stages["scaled"] = stage.as_dict()
                if long_stage is not None:
                    results.stages["long cine (scaled, all frames)"] = long_stage.as_dict()
        finally:
            memory.stop()
            results.memory_mb.update(memory.by_role())
    results.machine["load_average_end"] = [round(x, 2) for x in load_average()]
    if args.profile is not None:
        from bench.profile import summarise

        for raw in sorted(args.profile.glob("*.txt")):
            results.notes.append(f"profile {raw.stem}: {json.dumps(summarise(raw))}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.files = min(args.files, 3) if "--files" in (argv or sys.argv) else 3
        args.cine_files, args.cine_frames = 2, 100
        args.long_cine_frames, args.latency_files, args.latency_gap = 40, 3, 0.5
        args.rounds = min(args.rounds, 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run(args)
    print(results.table())
    for note in results.notes:
        print("note:", note)
    if args.json is not None:
        args.json.write_text(json.dumps(results.as_dict(), indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    return 0
