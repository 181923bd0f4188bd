"""Sampling profiles of the running ``usqa`` processes with py-spy (when installed), and a
summary of where the samples fall."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PHASES", "py_spy", "summarise"]

# Inclusive time of these functions (by "function (file" prefix) answers "where does it go".
PHASES = {
    "process_scans (whole batch)": "process_scans (worker/scoring/batch.py",
    "decode: dicom_io read + frames (decoder child)": "main (worker/decoding/child.py",
    "decode: waiting on the decoder pipe": "_read_exact (worker/decoding/client.py",
    "preprocess: grey + resize (Preprocess.image)": "image (model/preprocess.py",
    "inference: forward_images (score, defects, gate)": "forward_images (model/inference.py",
    "ledger: claim": "claim_batch (worker/scoring/claim.py",
    "ledger: write outcomes": "write_outcomes (worker/scoring/write.py",
    "ingest: tick (walk, stability, record)": "tick (worker/ingest/ingester.py",
    "ingest: sha256 of new files (hasher threads)": "hash_file (worker/ingest/hasher.py",
    "ingest: record in ledger": "_record (worker/ingest/recording.py",
    "heartbeat": "beat (worker/scoring/context.py",
    "celery: task plumbing (excl. process_scans)": "trace_task (celery/app/trace.py",
}


@contextmanager
def py_spy(pid: int, out: Path) -> Iterator[bool]:
    """Record ``pid`` and its children while the block runs (raw collapsed stacks)."""
    beside = Path(sys.executable).with_name("py-spy")
    exe = str(beside) if beside.is_file() else shutil.which("py-spy")
    if exe is None:
        yield False
        return
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--subprocesses", "--rate", "100",
         "--format", "raw", "--output", str(out), "--nonblocking", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield True
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


def summarise(raw: Path, top: int = 15) -> dict[str, object]:
    """Share of samples per phase (inclusive) and the top leaf functions (self time)."""
    total = 0
    phases: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for name, prefix in PHASES.items():
            if any(f.startswith(prefix) for f in frames):
                phases[name] += count
        leaves[frames[-1]] += count
    return {
        "samples": total,
        "phases": {k: round(100.0 * v / total, 1) for k, v in phases.most_common()}
        if total
        else {},
        "top_self": [(k, round(100.0 * v / total, 1)) for k, v in leaves.most_common(top)]
        if total
        else [],
    }
