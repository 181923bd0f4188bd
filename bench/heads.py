"""``python -m bench.heads``: model-only throughput of two checkpoints side by side.

Measures what the defect and not-ultrasound outputs cost: the same Scorer configuration
(the fastest measured on these CPUs: bf16 where native, batch 8, two single-threaded
streams, eager) scores the same preprocessed BUSI test images with each checkpoint, in
alternating rounds so that a busy machine slows both alike; the table gives the median
frames/s of each and their ratio.

    git show f9fe4b3:model/weights/usqa-resnet18-graded.pt > /tmp/score-only.pt
    python -m bench.heads --baseline /tmp/score-only.pt            # against the shipped model
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench.workload import BUSI

__all__ = ["main"]


def _images(limit: int) -> list:
    import csv

    import numpy as np
    from PIL import Image

    from model.preprocess import Preprocess

    prep = Preprocess()
    with (BUSI / "splits.csv").open(newline="") as fh:
        rows = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:limit]
    return [prep.image(np.asarray(Image.open(BUSI / r).convert("L"))) for r in rows]


def _rate(scorer: object, images: list) -> float:
    started = time.perf_counter()
    scorer.predict(images)  # type: ignore[attr-defined]
    return len(images) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.heads", description=__doc__)
    p.add_argument("--baseline", type=Path, required=True, help="checkpoint to compare with")
    p.add_argument("--weights", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=624, help="frames per round (cycled)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from model import Scorer

    base = _images(156)
    images = (base * (args.frames // len(base) + 1))[: args.frames]
    scorers = {
        "baseline": Scorer.load(args.baseline, batch_size=8, threads=2, streams=2),
        "this model": Scorer.load(args.weights, batch_size=8, threads=2, streams=2),
    }
    rates: dict[str, list[float]] = {k: [] for k in scorers}
    for scorer in scorers.values():
        scorer.predict(images[:32])  # warm-up
    for _ in range(args.rounds):
        for name, scorer in scorers.items():
            rates[name].append(_rate(scorer, images))
    for scorer in scorers.values():
        scorer.close()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "outputs": {k: len(s.checkpoint.outputs) for k, s in scorers.items()},
        "precision": "bf16" if scorers["this model"].bf16 else "fp32",
        "frames_per_round": len(images),
        "rounds": rates,
        "median_fps": medians,
        "ratio": medians["this model"] / medians["baseline"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, values in rates.items():
            print(
                f"{name:<11} {result['outputs'][name]:>2} outputs  median "
                f"{medians[name]:6.1f} frames/s  rounds {[round(v, 1) for v in values]}"
            )
        print(f"this model / baseline: {result['ratio']:.3f} ({result['precision']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
