"""Benchmark: `puhui survival` end to end (validation, mortality A/E and Gompertz fits,
Cox models, persistency, first admission, report) on a synthetic city, in its own
process; peak = that process tree's maximum resident set (bench_synth.timed).

    python benchmarks/bench_survival.py [--persons 1000000] [--years 2] [--data DIR]
                                        [--max-people 200000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench_synth import city, machine, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="an existing city (else one is generated)")
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--max-people", type=int, default=200_000)
    a = ap.parse_args()
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="puhui-survival-"))
    data = city(a.data, a.persons, a.years, work)
    dt, peak, _ = timed([sys.executable, "-m", "puhui", "survival", data, "--out",
                         str(work / "out"), "--max-people", str(a.max_people)])
    f = json.loads((work / "out" / "survival.json").read_text())
    m, fa = f["mortality"], f["first_admission"]
    print(f"person-years {m['person_years']:,}, deaths {m['deaths']:,}; Cox on "
          f"{m['cox_people']:,} people (mortality), {fa['people']:,} (first admission)")
    print(f"survival: {dt:.1f} s, peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
