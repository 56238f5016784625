"""Benchmark: the pricing chain recovers a known pure premium (issue "Pricing").

Simulates portfolios from a known frequency and severity by cell
(:mod:`puhui.pricing.known_truth`: inpatient and outpatient claims, negative-binomial
counts, gamma amounts, age and pre-existing effects, a 10,000 deductible, 70 % / 50 %,
200,000 limit), fits the same models `puhui price` fits, and prints per seed the
recovered pure premium, its 90 % parameter-uncertainty interval and whether it covers
the truth. Targets: within 3 % at a million person-years; the interval covers the
truth in at least 85 of 100 seeds.

    python benchmarks/bench_truth_recovery.py [--person-years 1000000] [--seeds 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_synth import machine


def main() -> None:
    from puhui.pricing.known_truth import estimate, simulate, true_pure_premium

    ap = argparse.ArgumentParser()
    ap.add_argument("--person-years", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=100)
    args = ap.parse_args()
    print(machine())
    truth = true_pure_premium()
    print(f"true pure premium {truth:.4f} yuan; {args.person_years:,} person-years per seed")
    errors, covered = [], 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        frame, events = simulate(args.person_years, seed)
        est, lo, hi = estimate(frame, events, seed)
        ok = lo <= truth <= hi
        covered += ok
        errors.append(est / truth - 1)
        print(f"seed {seed:3d}: {est:9.3f} [{lo:9.3f}, {hi:9.3f}] error {errors[-1]:+.4f} "
              f"{'covers' if ok else 'MISSES'}", flush=True)
    e = np.abs(errors)
    print(f"\n{args.seeds} seeds in {time.perf_counter() - t0:.0f} s: largest error "
          f"{e.max():.4f} (target 0.03), mean error {np.mean(errors):+.4f}, "
          f"interval covers {covered}/{args.seeds} (target at least 85 of 100)")


if __name__ == "__main__":
    main()
