"""Benchmark: `puhui validate` and `puhui claims run` on one city, medians of N runs,
for the Parquet engine move (issue 19, point 1: fastparquet -> pyarrow).

Give the old code and the new as two ``--src`` folders (``src`` folders whose puhui is
measured, put first on PYTHONPATH): their runs alternate (old, new, old, new, ...), so a
load that comes and goes on a shared machine falls on both alike. The city is generated
once (by the first ``--src``) and reused with ``--data``:

    git archive OLD src | tar -x -C /tmp/old
    python benchmarks/bench_parquet_engine.py --src /tmp/old/src --src src --data DIR
        [--persons 200000] [--runs 3] [--product huhuibao-2025]
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
    ap.add_argument("--src", required=True, action="append")
    ap.add_argument("--data", required=True, help="the city folder (generated if absent)")
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--product", default="huhuibao-2025")
    a = ap.parse_args()
    print(machine())
    exe = [sys.executable, "-m", "puhui"]

    def on(src):
        os.environ["PYTHONPATH"] = str(Path(src).resolve())

    if not Path(a.data, "settlements.parquet").exists():
        on(a.src[0])
        dt, peak, _ = timed(exe + ["synth", "--persons", str(a.persons), "--years", "1",
                                   "--start-year", "2025", "--seed", "1", "--out", a.data])
        print(f"generated {a.persons:,} people in {dt:.1f} s (peak {peak:.2f} GiB)")
    work = Path(tempfile.mkdtemp(prefix="puhui-engine-"))
    figures = {src: {"validate": [], "claims run": []} for src in a.src}
    lines = {}
    for k in range(a.runs):
        for j, src in enumerate(a.src):
            on(src)
            figures[src]["validate"].append(timed(exe + ["validate", a.data])[:2])
            dt, peak, text = timed(exe + ["claims", "run", "--product", a.product, "--data",
                                          a.data, "--ledger",
                                          f"sqlite:///{work / f'l{j}-{k}.db'}", "--batch",
                                          "bench", "--out", str(work / f"o{j}-{k}")])
            figures[src]["claims run"].append((dt, peak))
            lines[src] = text.splitlines()[0]
    for src in a.src:
        print(f"{src}: {lines[src]}")
        for name, runs in figures[src].items():
            ts = ", ".join(f"{t:.1f}" for t, _ in runs)
            ps = ", ".join(f"{p:.2f}" for _, p in runs)
            print(f"  {name}: median {statistics.median(t for t, _ in runs):.1f} s ({ts}), "
                  f"peak median {statistics.median(p for _, p in runs):.2f} GiB ({ps})")


if __name__ == "__main__":
    main()
