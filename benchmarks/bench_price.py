"""Benchmark: `puhui price` end to end (validation, experience, models, enrolment,
interval, cross-validation, spiral, report) on a synthetic city.

Target (issue "Pricing"): 10 million person-years under 5 minutes and 6 GB peak on 2
cores. The default is 5,000,000 people over 2 years (10 million person-years); smaller
runs (--persons) measure how time and memory grow. Each step runs as its own process;
peak = that process's maximum resident set.

    python benchmarks/bench_price.py [--persons 5000000] [--years 2] [--data DIR]
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
    a = ap.parse_args()
    print(machine())
    exe = [sys.executable, "-m", "puhui"]
    work = Path(tempfile.mkdtemp(prefix="puhui-price-"))
    data = city(a.data, a.persons, a.years, work)
    dt, peak, text = timed(exe + ["price", "--product", a.product, "--data", data,
                                  "--out", str(work / "out")])
    import json

    f = json.loads((work / "out" / "pricing.json").read_text())
    print(f"person-years {f['data']['person_years']:,}; pure premium {f['pure_premium']['total']}; "
          f"gross {f['gross_premium']}")
    print(f"price: {dt:.1f} s, peak {peak:.2f} GiB (target at 10M person-years: < 300 s, < 6 GB)")


if __name__ == "__main__":
    main()
