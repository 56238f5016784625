"""Benchmark: `puhui synth` for 1,000,000 people and 1 year, then `puhui validate`.

Targets (issue "Foundation"): synth under 2 minutes and 4 GB peak; validate under 30 s.
Each step runs as its own process; peak memory is that process's maximum resident set.

    python benchmarks/bench_synth.py [--persons N] [--years Y] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.node()}: {os.cpu_count()} cores, {mem:.1f} GiB, {cpu}; "
            f"Python {platform.python_version()}")


def timed(args: list[str]) -> tuple[float, float, str]:
    """Run a command in a child; return (seconds, that child's peak GiB, its output)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        dt = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(args)}\n{err.read()}")
        return dt, usage.ru_maxrss / 2**20, out.read().strip()


def city(data: str | None, persons: int, years: int, work) -> str:
    """``data``, or a city of ``persons`` x ``years`` generated into ``work`` (timed)."""
    if data is not None:
        return data
    out = str(work / "city")
    dt, peak, _ = timed([sys.executable, "-m", "puhui", "synth", "--persons", str(persons),
                         "--years", str(years), "--seed", "1", "--out", out])
    print(f"generated {persons:,} people x {years} years in {dt:.1f} s (peak {peak:.2f} GiB)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--years", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="puhui-bench-")
    exe = [sys.executable, "-m", "puhui"]
    print(machine())
    dt, peak, text = timed(exe + ["synth", "--persons", str(a.persons), "--years", str(a.years),
                                  "--seed", str(a.seed), "--out", out])
    print(text.splitlines()[0])
    print(f"synth    {a.persons:,} persons x {a.years} year(s): {dt:7.1f} s, peak {peak:.2f} GiB "
          f"(target < 120 s, < 4 GiB)")
    dt, peak2, text = timed(exe + ["validate", out])
    print(f"validate {text}: {dt:7.1f} s, peak {peak2:.2f} GiB (target < 30 s)")


if __name__ == "__main__":
    main()
