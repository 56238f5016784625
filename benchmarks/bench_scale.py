"""Benchmark: `puhui validate`, `puhui claims run` and `puhui price` on one large city
(issue "One data engine", point 4: about 100 million settlements on this machine within
24 GB).

Each command runs ``--runs`` times as its own process (a fresh ledger each time); the
script prints every run, then the median time and the largest peak (the process tree's,
:func:`bench_synth.timed`) with the machine and the load average before each run (the
machine is shared: a run beside other work is slower, not larger). Make the city with
``bench_synth.sharded_city`` (``puhui synth`` assembles a city whole and cannot hold one
this size): ``sharded_city(500_000, 2, 13, DIR)`` writes 6.5 million people over 2024-25,
99.9 million settlements.

    python benchmarks/bench_scale.py --data DIR [--runs 3] [--steps validate,claims,price]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_synth import machine, timed

STEPS = ("validate", "claims", "price")


def command(step: str, data: str, product: str, work: Path, k: int) -> list[str]:
    exe = [sys.executable, "-m", "puhui"]
    if step == "validate":
        return exe + ["validate", data]
    if step == "claims":
        return exe + ["claims", "run", "--product", product, "--data", data,
                      "--ledger", f"sqlite:///{work / f'ledger{k}.db'}", "--batch", "b1",
                      "--out", str(work / f"claims{k}")]
    return exe + ["price", "--product", product, "--data", data, "--no-backtest",
                  "--out", str(work / f"price{k}")]


def figure(step: str, work: Path, k: int, text: str) -> str:
    """What the run produced, so runs can be seen to agree."""
    if step == "validate":
        return text.splitlines()[0] if text else ""
    if step == "claims":
        s = json.loads((work / f"claims{k}" / "summary.json").read_text())
        return f"paid {s['paid_this_batch_yuan']:,.2f} yuan, reconciles {s['reconciles']}"
    f = json.loads((work / f"price{k}" / "pricing.json").read_text())
    return f"pure premium {f['pure_premium']['total']}, gross {f['gross_premium']}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--product", default="huhuibao-2025")
    a = ap.parse_args()
    steps = [s for s in a.steps.split(",") if s]
    if set(steps) - set(STEPS):
        sys.exit(f"--steps: from {', '.join(STEPS)}")
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="puhui-scale-"))
    try:
        for step in steps:
            times, peaks = [], []
            for k in range(a.runs):
                load = os.getloadavg()[0]
                dt, peak, text = timed(command(step, a.data, a.product, work, k))
                print(f"{step} run {k + 1}: {dt:.1f} s, peak {peak:.2f} GiB (load before "
                      f"{load:.1f}); {figure(step, work, k, text)}", flush=True)
                times.append(dt)
                peaks.append(peak)
                for p in work.glob(f"*{k}*"):       # a run's ledger and outputs
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            print(f"{step}: median {statistics.median(times):.1f} s, largest peak "
                  f"{max(peaks):.2f} GiB over {a.runs} run(s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
