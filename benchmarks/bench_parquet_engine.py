"""Benchmark: `puhui validate` and `puhui claims run` on one city, medians of N runs,
for the Parquet engine move (issue 19, point 1: fastparquet -> pyarrow).

Run it once with the old code and once with the new on the same city (the city is
generated once, by whichever code runs first, and reused with ``--data``):

    python benchmarks/bench_parquet_engine.py --src SRC_DIR --data DIR [--persons 200000]
        [--runs 3] [--product huhuibao-2025]

``--src`` is the ``src`` folder whose puhui is measured (put first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_synth import machine, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--data", required=True, help="the city folder (generated if absent)")
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--product", default="huhuibao-2025")
    a = ap.parse_args()
    os.environ["PYTHONPATH"] = str(Path(a.src).resolve())
    print(machine())
    exe = [sys.executable, "-m", "puhui"]
    if not Path(a.data, "settlements.parquet").exists():
        dt, peak, _ = timed(exe + ["synth", "--persons", str(a.persons), "--years", "1",
                                   "--start-year", "2025", "--seed", "1", "--out", a.data])
        print(f"generated {a.persons:,} people in {dt:.1f} s (peak {peak:.2f} GiB)")
    work = Path(tempfile.mkdtemp(prefix="puhui-engine-"))
    figures: dict[str, list[tuple[float, float]]] = {"validate": [], "claims run": []}
    last = ""
    for k in range(a.runs):
        figures["validate"].append(timed(exe + ["validate", a.data])[:2])
        dt, peak, text = timed(exe + ["claims", "run", "--product", a.product, "--data",
                                      a.data, "--ledger", f"sqlite:///{work / f'l{k}.db'}",
                                      "--batch", "bench", "--out", str(work / f"o{k}")])
        figures["claims run"].append((dt, peak))
        last = text.splitlines()[0]
    print(last)
    for name, runs in figures.items():
        ts = ", ".join(f"{t:.1f}" for t, _ in runs)
        print(f"{name}: median {statistics.median(t for t, _ in runs):.1f} s ({ts}), "
              f"peak median {statistics.median(p for _, p in runs):.2f} GiB")


if __name__ == "__main__":
    main()
