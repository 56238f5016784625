"""Benchmark: `puhui backtest` on a multi-year city, the check that does not share the
model's structure (issue 18): each year priced from the years before it, against what
that year's enrollees cost.

Prints, per backtest year: the priced pure premium and the realised cost per policy
(total and by benefit), A/E, policies predicted against actual, whether the interval
covers the realised cost; then the time and peak memory of the run and the machine.
Targets (issue 18): priced total within +/-10 % of the realised cost per policy and
projected policies within +/-15 %, on a 1,000,000-person three-year city of each
generator (`puhui synth`, and `puhui synth --generator second`).

    python benchmarks/bench_backtest.py --data DIR [--product huhuibao-2025]
    python benchmarks/bench_backtest.py --persons 100000 --years 3 [--generator second]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench_synth import machine, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="an existing city (else one is generated)")
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--years", type=int, default=3)
    ap.add_argument("--generator", default=None, help="puhui synth --generator (default its own)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--product", default="huhuibao-2025")
    a = ap.parse_args()
    print(machine())
    exe = [sys.executable, "-m", "puhui"]
    work = Path(tempfile.mkdtemp(prefix="puhui-backtest-"))
    data = a.data
    if data is None:
        data = str(work / "city")
        gen = ["--generator", a.generator] if a.generator else []
        dt, peak, _ = timed(exe + ["synth", "--persons", str(a.persons), "--years",
                                   str(a.years), "--seed", str(a.seed), "--out", data, *gen])
        print(f"synth{' ' + a.generator if a.generator else ''}: {a.persons:,} persons x "
              f"{a.years} years, {dt:.1f} s, peak {peak:.2f} GiB")
    dt, peak, _ = timed(exe + ["backtest", "--product", a.product, "--data", data,
                               "--out", str(work / "out")])
    b = json.loads((work / "out" / "backtest.json").read_text())
    for y in b["years"]:
        print(f"\n{y['year']} priced from {y['data_years']} ({y['enrolment']['mode']}):")
        print(f"  {'benefit':<16}{'priced':>10}{'realised':>10}{'A/E':>8}")
        for k, v in y["priced_pure_premium"].items():
            ae = y["ae"].get(k)
            print(f"  {k:<16}{v:>10.2f}{(y['realised_cost'].get(k) or 0):>10.2f}"
                  f"{'' if ae is None else f'{ae:>8.3f}'}")
        iv = y["interval"]
        print(f"  policies predicted {y['policies_predicted']:,}, actual "
              f"{y['policies_actual']:,} (A/E {y['policies_ae']}); interval "
              f"{iv['lower']}-{iv['upper']} { {True: 'covers', False: 'misses', None: 'n/a'}[iv['covers']] }; "
              f"equilibrium {y['equilibrium_premium']}")
    s = b["summary"]
    print(f"\nA/E total by year {s['ae_total']}; within 10 %: {s['within_10_percent']} of "
          f"{s['years']}; policies within 15 %: {s['policies_within_15_percent']}; interval "
          f"covers {s['interval_covers']}")
    print(f"backtest: {dt:.1f} s, peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
