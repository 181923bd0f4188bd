"""The benchmark's results: the table, the ratios against issue #6's targets, and JSON."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RSS_LIMIT_MB", "Results", "check_targets"]

RSS_LIMIT_MB = 1.5 * 1024  # 1.5 GB, read as GiB: the stricter reading would be 1430 MiB


@dataclass
class Results:
    """Everything one run measured (plain values, ready for JSON)."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    model_only: list[dict[str, Any]] = field(default_factory=list)
    naive: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # paired rounds: the best model-only configuration measured again, then `usqa run`
    model_rounds: list[dict[str, Any]] = field(default_factory=list)
    embedded_rounds: list[dict[str, Any]] = field(default_factory=list)

    def best_model(self) -> dict[str, Any] | None:
        return max(self.model_only, key=lambda r: r["frames_per_s"], default=None)

    def model_fps(self) -> float | None:
        """Model-only throughput for the ratio: the (low) median of the rounds' fresh runs of the
        best configuration; without rounds, the sweep's best run. (The sweep's best is the
        largest of many noisy runs, so it overstates what that configuration does.)"""
        if self.model_rounds:
            return float(statistics.median_low(r["frames_per_s"] for r in self.model_rounds))
        best = self.best_model()
        return None if best is None else float(best["frames_per_s"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "model_only": self.model_only,
            "model_only_best": self.best_model(),
            "model_only_rounds": self.model_rounds,
            "embedded_rounds": self.embedded_rounds,
            "naive": self.naive,
            "stages": self.stages,
            "latency": self.latency,
            "peak_rss_mb": {k: round(v, 1) for k, v in self.memory_mb.items()},
            "targets": {
                name: {"value": value, "goal": goal, "met": met}
                for name, (value, goal, met) in check_targets(self).items()
            },
            "notes": self.notes,
        }

    def table(self) -> str:
        """The table and the target ratios, as text."""
        m = self.machine
        lines = [
            f"machine: {m.get('cpu') or 'unknown CPU'}, {m.get('cores')} cores, "
            f"{m.get('memory_gib')} GiB, torch {m.get('torch')}; code {m.get('code') or 'unknown'}",
            "",
            f"{'measurement':<48} {'frames':>7} {'seconds':>8} {'frames/s':>9}",
        ]
        lines.append("-" * len(lines[-1]))
        for run in self.model_only:
            name = (
                f"model only ({_backend(run)}{run['precision']}, batch {run['batch_size']}, "
                f"{run['streams']} x {run['threads_per_stream']} thr)"
            )
            lines.append(_row(name, run["frames"], run["seconds"], run["frames_per_s"]))
        for i, run in enumerate(self.model_rounds, 1):
            name = f"round {i}: model only, best config again"
            lines.append(_row(name, run["frames"], run["seconds"], run["frames_per_s"]))
            if i <= len(self.embedded_rounds):
                stage = self.embedded_rounds[i - 1]
                name = f"round {i}: embedded ({stage['files']} files)"
                lines.append(_row(name, stage["frames"], stage["seconds"], stage["frames_per_s"]))
        if self.naive:
            n = self.naive
            lines.append(
                _row(
                    "naive baseline (PIL, bs 1, fp32, INSERT)",
                    n["files"],
                    n["seconds"],
                    n["frames_per_s"],
                )
            )
        for name, stage in self.stages.items():
            median = (
                f", median of {len(self.embedded_rounds)} rounds"
                if (name == "embedded" and len(self.embedded_rounds) > 1)
                else ""
            )
            lines.append(
                _row(
                    f"{name} ({stage['files']} files{median})",
                    stage["frames"],
                    stage["seconds"],
                    stage["frames_per_s"],
                )
            )
        if self.latency:
            lat = self.latency
            lines.append(
                f"latency, single file into idle `usqa run` (stable {lat['stable_seconds']:g} s): "
                f"p50 {lat['p50_s']:.3f} s, p95 {lat['p95_s']:.3f} s, max {lat['max_s']:.3f} s "
                f"(n={lat['files']})"
            )
        if self.memory_mb:
            lines.append(
                "peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in self.memory_mb.items())
            )
        lines.append("")
        lines.append(f"{'target':<32} {'measured':>10} {'goal':>8}  met")
        for name, (value, goal, met) in check_targets(self).items():
            shown = "n/a" if value is None else f"{value:.3f}" if value < 100 else f"{value:.0f}"
            verdict = "-" if met is None else "yes" if met else "NO"
            lines.append(f"{name:<32} {shown:>10} {goal:>8}  {verdict}")
        return "\n".join(lines)


def _row(name: str, frames: int, seconds: float, fps: float) -> str:
    return f"{name:<48} {frames:>7} {seconds:>8.2f} {fps:>9.2f}"


def check_targets(results: Results) -> dict[str, tuple[float | None, str, bool | None]]:
    """Each target: (measured value, goal, met?) — None where the run did not measure it."""
    model = results.model_fps()
    embedded = results.stages.get("embedded")
    scaled = results.stages.get("scaled")
    naive = results.naive.get("frames_per_s") if results.naive else None
    out: dict[str, tuple[float | None, str, bool | None]] = {}

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    value = ratio(embedded["frames_per_s"] if embedded else None, model)
    out["embedded / model only"] = (value, ">= 0.8", None if value is None else value >= 0.8)
    value = ratio(embedded["frames_per_s"] if embedded else None, naive)
    out["embedded / naive"] = (value, ">= 2.0", None if value is None else value >= 2.0)
    value = ratio(scaled["frames_per_s"] if scaled else None, naive)
    out["scaled / naive"] = (value, ">= 2.0", None if value is None else value >= 2.0)
    p95 = results.latency.get("p95_s") if results.latency else None
    out["latency p95 (s)"] = (p95, "<= 1.5", None if p95 is None else p95 <= 1.5)
    workers = [
        v
        for k, v in results.memory_mb.items()
        if k in ("run", "run-cine") or (k.startswith("worker-") and k.endswith("/pool"))
    ]
    peak = max(workers) if workers else None
    out["worker peak RSS (MiB)"] = (
        peak,
        f"<= {RSS_LIMIT_MB:.0f}",
        None if peak is None else peak <= RSS_LIMIT_MB,
    )
    return out


def _backend(run: dict[str, Any]) -> str:
    """``compile, `` for a compiled run; eager (the default) is not named."""
    backend = run.get("backend", "eager")
    return "" if backend == "eager" else f"{backend}, "
