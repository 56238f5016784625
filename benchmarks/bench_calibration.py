"""Calibration of the synthetic city over several seeds.

For each seed, a city of N people over Y years is generated and measured against the
published Huhuibao shape (puhui.synth.calibration). Prints each seed's measures and
the mean and standard deviation over seeds, which is what the tolerances in
puhui.synth.calibration.TARGETS and data-samples/README.md rest on.

    python benchmarks/bench_calibration.py [--persons 150000] [--years 2] [--seeds 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from puhui.synth.calibration import TARGETS, calibration_measures
from puhui.synth.city import synth_city

from bench_synth import machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=150_000)
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    a = ap.parse_args()
    print(machine())
    print(f"{a.persons:,} persons x {a.years} years, seeds {a.seeds}")
    rows = []
    names = [t.name for t in TARGETS]
    print("seed  " + "  ".join(f"{n[:22]:>22}" for n in names))
    for seed in a.seeds:
        t = time.perf_counter()
        m = calibration_measures(synth_city(a.persons, a.years, seed))
        rows.append(m)
        print(f"{seed:<5} " + "  ".join(f"{m[n]:>22.1f}" for n in names)
              + f"   ({time.perf_counter() - t:.0f} s)")
    print("mean  " + "  ".join(f"{statistics.mean(r[n] for r in rows):>22.1f}" for n in names))
    if len(rows) > 1:
        print("sd    " + "  ".join(f"{statistics.stdev(r[n] for r in rows):>22.1f}" for n in names))
    print("target" + "".join(f"{t.published:>18.1f} ±{t.tolerance:<3g}" for t in TARGETS))


if __name__ == "__main__":
    main()
