"""Where the CPU goes inside ``usqa run`` during a burst: CPU seconds per thread of the
process and of its decoder children, from ``/proc``, named by ``py-spy dump`` when py-spy is
installed. Not part of ``python -m bench`` (it reads the same workload)::

    PYTHONPATH=. python -m bench.cpu_by_thread --files 468 --set USQA_BACKEND=compile
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.processes import Ledger, UsqaProcess, _children
from bench.stages import READY, base_env
from bench.workload import BUSI, Workload, drop

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_thread(pid: int) -> dict[tuple[int, int], float]:
    """CPU seconds (user + system) of every thread of ``pid`` and its child processes."""
    out: dict[tuple[int, int], float] = {}
    for proc in [pid, *_children(pid)]:
        with_tasks = Path(f"/proc/{proc}/task")
        for task in with_tasks.iterdir() if with_tasks.exists() else []:
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[(proc, int(task.name))] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and of each of its child processes, threads that have ended
    included."""
    out: dict[int, float] = {}
    for proc in [pid, *_children(pid)]:
        try:
            stat = Path(f"/proc/{proc}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[proc] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _thread_names(pid: int) -> dict[int, str]:
    beside = Path(sys.executable).with_name("py-spy")
    exe = str(beside) if beside.is_file() else shutil.which("py-spy")
    if exe is None:
        return {}
    dump = subprocess.run(
        [exe, "dump", "--pid", str(pid), "--subprocesses"], capture_output=True, text=True
    ).stdout
    return {int(m[1]): m[2] for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]*)"', dump)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_by_thread", description=__doc__)
    p.add_argument("--files", type=int, default=468)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--busi", type=Path, default=BUSI)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usqa-cpu-") as tmp_text:
        tmp = Path(tmp_text)
        work = Workload.build(tmp, args.files, 0, 0, 0, 0, args.busi)
        folder = tmp / "run"
        folder.mkdir()
        url = f"sqlite:///{folder / 'usqa.db'}"
        env = base_env(url, 2.0)
        env.update(item.split("=", 1) for item in args.set)
        proc = UsqaProcess("run", ["run", "--watch", str(folder / "drop")], env, folder)
        proc.start()
        try:
            proc.wait_for(READY, 600)
            ledger = Ledger(url)
            before = _cpu_by_thread(proc.pid)
            before_all = _cpu_by_process(proc.pid)
            wall, _ = drop(work.pngs, folder / "drop", folder / "staging")
            ledger.wait_terminal(len(work.pngs), 600)
            after = _cpu_by_thread(proc.pid)
            after_all = _cpu_by_process(proc.pid)
            last = ledger.last_finished() or wall
            names = _thread_names(proc.pid)
        finally:
            proc.stop()
    seconds = last - wall
    n = len(work.pngs)
    print(f"{n} files in {seconds:.2f} s ({n / seconds:.1f} frames/s); 2 x wall = CPU available")
    total = 0.0
    for (pid, tid), value in sorted(after.items(), key=lambda kv: before.get(kv[0], 0) - kv[1]):
        used = value - before.get((pid, tid), 0.0)
        total += used
        if used >= 0.01:
            name = names.get(tid, f"thread {tid}")
            if pid != proc.pid:  # decoder children (and TorchInductor's compile workers)
                name = f"child {pid}: {name}"
            print(f"  {name:<24} {used:6.2f} s  {1000 * used / n:5.2f} ms per file")
    ended = sum(v - before_all.get(p, 0.0) for p, v in after_all.items()) - total
    if ended >= 0.01:  # e.g. the read-ahead thread of each batch
        total += ended
        print(f"  {'(threads that ended)':<24} {ended:6.2f} s  {1000 * ended / n:5.2f} ms per file")
    cores = os.cpu_count() or 1
    print(f"  {'all':<24} {total:6.2f} s of {cores * seconds:.2f} ({cores} cores x wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
