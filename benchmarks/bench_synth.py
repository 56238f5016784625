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
from pathlib import Path


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


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _pss_gib(pids: list[int]) -> float:
    """Proportional set size of the processes, summed (shared pages counted once)."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 2**20


def timed(args: list[str]) -> tuple[float, float, str]:
    """Run a command in a child; return (seconds, peak GiB, its output).

    The peak is the larger of the child's own maximum resident set and the largest sum,
    sampled every 0.2 s, of the proportional set sizes of the child and every process it
    started (a batch may fork a second worker: its pages shared with the parent count
    once, its own pages count)."""
    import threading

    t = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        tree_peak = [0.0]
        done = threading.Event()

        def sample():
            while not done.wait(0.2):
                tree_peak[0] = max(tree_peak[0], _pss_gib(_tree(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        if Path("/proc/self/smaps_rollup").exists():
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
        dt = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(args)}\n{err.read()}")
        return dt, max(usage.ru_maxrss / 2**20, tree_peak[0]), out.read().strip()


def city(data: str | None, persons: int, years: int, work) -> str:
    """``data``, or a city of ``persons`` x ``years`` generated into ``work`` (timed)."""
    if data is not None:
        return data
    out = str(work / "city")
    dt, peak, _ = timed([sys.executable, "-m", "puhui", "synth", "--persons", str(persons),
                         "--years", str(years), "--seed", "1", "--out", out])
    print(f"generated {persons:,} people x {years} years in {dt:.1f} s (peak {peak:.2f} GiB)")
    return out


def sharded_city(persons: int, years: int, shards: int, out: str, first: int = 0) -> str:
    """A city of ``shards`` independent synthetic cities of ``persons`` people each
    (seeds 1, 2, ...), written one after another into one fund-data folder: the way to
    data larger than ``puhui synth`` holds in memory (it assembles a city whole; ten
    million person-years would take some 30 GB). Ids get the shard's letter after their
    first letter (P00000001 -> PB00000001), so they stay unique; each shard's
    settlements are in time order, the file as a whole is not (the contract does not
    ask for an order). ``first``: the shard to start at, appending to a folder that
    holds shards 0 .. first - 1 (a larger city from a copy of a smaller one)."""
    from puhui.fund.files import write_table
    from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS
    from puhui.synth.city import synth_city

    def tag(s, k):
        v = s.astype(object)
        m = v.notna()
        v[m] = [x[0] + chr(65 + k) + x[1:] for x in v[m]]
        return v

    for k in range(first, shards):
        t = time.perf_counter()
        d = synth_city(persons, years, seed=k + 1)
        d.persons["psn_no"] = tag(d.persons["psn_no"], k)
        d.policies["psn_no"] = tag(d.policies["psn_no"], k)
        d.policies["policy_no"] = tag(d.policies["policy_no"], k)
        for c in ("setl_id", "psn_no", "refund_of"):
            d.settlements[c] = tag(d.settlements[c], k)
        d.lines["setl_id"] = tag(d.lines["setl_id"], k)
        for df, table in ((d.persons, PERSONS), (d.policies, POLICIES),
                          (d.settlements, SETTLEMENTS), (d.lines, SETTLEMENT_LINES)):
            write_table(df, out, table, append=k > 0)    # (appending absorbs the old file)
        print(f"shard {k + 1}/{shards}: {len(d.settlements):,} settlements, "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        del d
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
