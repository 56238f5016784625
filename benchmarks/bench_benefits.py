"""Benchmark: the vectorised benefit calculator on 10 million settlements, against the
per-settlement reference.

Generates N settlements for N/10 people with one Huhuibao 2025 policy each (amounts,
medical types, hospital levels and a special-drug line on 2 % of settlements drawn at
random), then times `puhui.benefits.calculator.adjudicate` and, on a sample, the
per-settlement reference. Targets (issue "Products"): at least 300,000 settlements a
second on 2 cores and at least 50 times the reference.

    python benchmarks/bench_benefits.py [--settlements 10000000] [--sample 20000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd

from bench_synth import machine


def rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def make(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    people = max(n // 10, 1)
    person = np.sort(rng.integers(0, people, size=n))
    psn = np.array([f"P{i:08d}" for i in range(people)], dtype=object)
    day = rng.integers(0, 365, size=n)
    inlist = np.rint(rng.lognormal(6.5, 1.6, size=n) * 100).astype("int64")
    outlist = np.rint(rng.lognormal(5.0, 1.8, size=n) * 100).astype("int64")
    st = pd.DataFrame({
        "setl_id": np.array([f"S{i:09d}" for i in range(n)], dtype=object),
        "psn_no": psn[person],
        "setl_time": np.datetime64("2025-01-01") + day.astype("timedelta64[D]"),
        "med_type": pd.Categorical(rng.choice(["11", "14", "21"], size=n, p=[.7, .2, .1])),
        "hosp_lv": rng.integers(1, 4, size=n),
        "insutype": pd.Categorical(rng.choice(["310", "390"], size=n, p=[.75, .25])),
        "fulamt_ownpay_amt": outlist, "overlmt_selfpay": np.zeros(n, "int64"),
        "psn_part_amt": inlist + outlist,
    })
    st["setl_time"] = st["setl_time"].astype("datetime64[ns]")
    has = np.flatnonzero(rng.random(n) < 0.02)
    lines = pd.DataFrame({"setl_id": st["setl_id"].to_numpy()[has], "line_no": 1,
                          "hilist_code": rng.choice(["SD-01", "SD-05", "OS-01", "C2025-10",
                                                     "TX-PROTON"], size=len(has)),
                          "list_class": "self", "amount": outlist[has], "preselfpay_amt": 0})
    pol = pd.DataFrame({"policy_no": [f"N{i:08d}" for i in range(people)], "psn_no": psn,
                        "product_id": "huhuibao-2025",
                        "start_date": pd.Timestamp("2025-01-01"),
                        "end_date": pd.Timestamp("2025-12-31"),
                        "preexisting": rng.random(people) < 0.15,
                        "claim_free_years": rng.integers(0, 4, size=people),
                        "premium": 12900, "consent": True})
    return st, pol, lines


def main() -> None:
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.quantities import LineMatcher
    from puhui.benefits.reference import adjudicate_sequence
    from puhui.products.model import load_product, product_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--settlements", type=int, default=10_000_000)
    ap.add_argument("--sample", type=int, default=20_000)
    a = ap.parse_args()
    print(machine())
    product = load_product(product_path("huhuibao-2025"))
    matcher = LineMatcher(product)
    t = time.perf_counter()
    st, pol, lines = make(a.settlements)
    print(f"generated {len(st):,} settlements, {len(pol):,} policies, {len(lines):,} lines "
          f"in {time.perf_counter() - t:.1f} s; rss {rss_gib():.2f} GiB")
    before = rss_gib()
    t = time.perf_counter()
    dec = adjudicate(product, st, pol, lines, matcher=matcher)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    paid = int(dec.total_payout().sum())
    rate = len(st) / dt
    print(f"vectorised: {dt:.1f} s, {rate:,.0f} settlements/s (target >= 300,000); "
          f"process peak {peak:.2f} GiB (data before the run {before:.2f} GiB); "
          f"paid {paid / 100:,.2f} yuan")
    sample_people = pol["psn_no"].iloc[: max(a.sample // 10, 1)]
    sub = st[st["psn_no"].isin(sample_people)]
    t = time.perf_counter()
    ref = adjudicate_sequence(product, sub, pol, lines, matcher=matcher)
    rdt = time.perf_counter() - t
    rrate = len(sub) / rdt
    vsub = adjudicate(product, sub, pol, lines, matcher=matcher)
    agree = all((vsub.payout[b] == ref.payout[b]).all() for b in vsub.benefits)
    print(f"reference: {len(sub):,} settlements in {rdt:.1f} s, {rrate:,.0f} settlements/s; "
          f"vectorised / reference = {rate / rrate:.0f}x (target >= 50x); "
          f"faces agree on the sample: {agree}")


if __name__ == "__main__":
    main()
