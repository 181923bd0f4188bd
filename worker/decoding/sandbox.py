"""What the decoder child may see and use: a scrubbed environment and a memory limit.

The child parses untrusted files, so it is treated as the part most likely to be
subverted. It starts with an environment of known-harmless variables only (no
``USQA_DATABASE_URL``, broker URL, salt, cloud or proxy credentials: it gets the read
options it needs over its pipe) and, once started, caps its own address space at
``USQA_DECODER_MEMORY`` MiB (``RLIMIT_AS``), so a deflate or image bomb ends in a
``MemoryError`` (the file fails with that reason) instead of the out-of-memory killer
choosing a victim.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = ["KEPT_VARIABLES", "child_environment", "decoder_environment", "limit_memory"]

log = logging.getLogger(__name__)

# exact names a Python process, its locale and its numerical libraries need
KEPT_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONWARNINGS",
        "PYTHONFAULTHANDLER",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "COVERAGE_PROCESS_START",
        "USQA_TEST_FAULTS",  # the test suite's poison files (tests/integration/faults)
    }
)
_KEPT_PREFIXES = ("LC_", "MALLOC_")


def child_environment(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` on the allow-list, then ``extra`` (ours win)."""
    kept = {
        name: value
        for name, value in environ.items()
        if name in KEPT_VARIABLES or name.startswith(_KEPT_PREFIXES)
    }
    return {**kept, **extra}


# glibc hands each freed block over 128 KiB back to the kernel, so every decoded frame and its
# float copies fault in fresh pages: about 0.3 ms of a 2.5 ms PNG. The child keeps them.
_CHILD_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
}


# The child decodes one file at a time on one thread. Left alone, numpy's and scipy's
# OpenBLAS each start a thread per core for the grey conversion, threads that spin beside
# the inference streams after every frame.
_CHILD_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def decoder_environment() -> dict[str, str]:
    """The harmless part of our environment (:func:`child_environment`:
    no database URL, broker URL or salt), glibc settings that keep freed frame buffers in
    the child (an operator's own MALLOC_* settings win), and one thread for its numerical
    libraries (always: the operator's thread settings are for inference)."""
    return child_environment({**_CHILD_MALLOC, **os.environ}, _CHILD_THREADS)


def limit_memory(mib: int) -> None:
    """Cap this process's address space at ``mib`` MiB (0: no cap). Best effort where the
    platform has no ``RLIMIT_AS``; a cap above the hard limit is lowered to it."""
    if mib <= 0:
        return
    try:
        import resource
    except ImportError:  # not POSIX
        return
    wanted = int(mib) << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("decoder memory limit of %d MiB not applied: %s", mib, exc)
