"""ONNX Runtime against eager torch on this CPU, side by side on the same images.

Not part of ``python -m bench``: ONNX Runtime is not a usqa dependency, and it did not beat
eager torch here (docs/performance.md), so usqa offers no ONNX backend. Reproduce with::

    pip install onnxruntime onnx onnxscript
    python -m bench.onnx_trial          # about a minute on 2 cores

The shipped network (BatchNorm folded, as the Scorer runs it) is exported in fp32 and run by
ONNX Runtime's CPU provider in two single-threaded sessions side by side, as usqa's two
inference streams run; torch runs the same batches through ``Scorer.predict``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.inference import _images
from bench.workload import BUSI, test_pngs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.onnx_trial", description=__doc__)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--busi", type=Path, default=BUSI)
    args = p.parse_args(argv)
    import onnxruntime as ort
    import torch

    from model import Scorer

    images = _images(test_pngs(args.busi)) * 2
    bs = args.batch_size
    chunks = [images[i : i + bs] for i in range(0, len(images), bs)]
    results: dict[str, tuple[float, np.ndarray]] = {}
    for precision in ("fp32", "bf16"):
        scorer = Scorer.load(precision=precision, threads=2, streams=2, batch_size=bs)
        scorer.predict(images[: 2 * bs])
        started = time.perf_counter()
        scores = scorer.predict(images)
        fps = len(images) / (time.perf_counter() - started)
        results[f"torch eager {precision}"] = (fps, scores)
        scorer.close()
    scorer = Scorer.load(precision="fp32", threads=2, streams=2, batch_size=bs)
    prep, scale = scorer.checkpoint.preprocess, scorer.checkpoint.target_scale
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "usqa.onnx"
        torch.onnx.export(
            scorer.checkpoint.net.eval(),
            (prep.tensor(images[:bs]),),
            str(model),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}},
            dynamo=False,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        sessions = [ort.InferenceSession(str(model), options) for _ in range(2)]

        def run(i_chunk: tuple[int, list[np.ndarray]]) -> np.ndarray:
            i, chunk = i_chunk
            y = sessions[i % 2].run(None, {"x": prep.tensor(chunk).numpy()})[0]
            return np.clip(np.asarray(y, dtype=np.float32).reshape(-1) * scale, 0.0, 100.0)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, enumerate(chunks[:2])))
            started = time.perf_counter()
            scores = np.concatenate(list(pool.map(run, enumerate(chunks))))
            seconds = time.perf_counter() - started
        results["onnxruntime fp32"] = (len(images) / seconds, scores)
    reference = results["torch eager fp32"][1]
    print(f"{len(images)} frames, batch {bs}, 2 streams x 1 thread")
    for name, (fps, scores) in results.items():
        gap = float(np.abs(scores - reference).max())
        print(f"{name:<22} {fps:7.1f} frames/s   max |score - torch fp32| {gap:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
