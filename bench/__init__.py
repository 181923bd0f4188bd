"""The pipeline benchmark: ``python -m bench`` measures the model alone, a naive baseline,
``usqa run`` and the scaled mode end to end, a cine workload, drop-to-row latency and the
peak memory of every process, in one run on the same files (see docs/performance.md).

``bench/report_bench.py`` is a separate script that times ``usqa report``.
"""

from bench.cli import main

__all__ = ["main"]
