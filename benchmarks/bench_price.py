"""Benchmark: `puhui price` end to end (validation, experience, models, enrolment,
interval, cross-validation, spiral, report) on a synthetic city.

Target (issue 19): 10 million person-years in 120 s or less and 4 GB or less on 2
cores, for the command as the contract states it (with its default backtest of the
last data year; ``--no-backtest`` measures the price alone). The default is 5,000,000
people over 2 years (10 million person-years); smaller runs (--persons) measure how time
and memory grow. The command runs as its own process; printed: wall time, CPU time
(user + sys of the command and the workers it forks: the figure to compare on a shared
machine) and the peak (:func:`bench_synth.timed`).

    python benchmarks/bench_price.py [--persons 5000000] [--years 2] [--data DIR] [--no-backtest]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench_synth import city, machine, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="an existing city (else one is generated)")
    ap.add_argument("--persons", type=int, default=5_000_000)
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--product", default="huhuibao-2025")
    ap.add_argument("--no-backtest", action="store_true", help="price without the backtest")
    a = ap.parse_args()
    print(machine())
    exe = [sys.executable, "-m", "puhui"]
    work = Path(tempfile.mkdtemp(prefix="puhui-price-"))
    data = city(a.data, a.persons, a.years, work)
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    dt, peak, text = timed(exe + ["price", "--product", a.product, "--data", data,
                                  "--out", str(work / "out")]
                           + (["--no-backtest"] if a.no_backtest else []))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    import json

    f = json.loads((work / "out" / "pricing.json").read_text())
    print(f"person-years {f['data']['person_years']:,}; pure premium {f['pure_premium']['total']}; "
          f"gross {f['gross_premium']}")
    print(f"price{' --no-backtest' if a.no_backtest else ''}: {dt:.1f} s wall, {cpu:.1f} s CPU, "
          f"peak {peak:.2f} GiB (target at 10M person-years: 120 s or less, 4 GB or less)")


if __name__ == "__main__":
    main()
