"""Benchmark: direct payouts in process, latency per settlement.

Loads 10,000 Huhuibao 2025 policies into a fresh SQLite ledger, then makes 10,000
direct payouts (each a full transaction: read the policy and accumulators, adjudicate,
record) and prints the median and 99th percentile latency. Target (issue "Claims"):
p99 under 10 ms.

    python benchmarks/bench_direct.py [--n 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from bench_synth import machine


def main() -> None:
    from puhui.claims import ledger
    from puhui.claims.direct import direct_payout
    from puhui.products.model import load_product, product_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    print(machine())
    product = load_product(product_path("huhuibao-2025"))
    url = f"sqlite:///{tempfile.mkdtemp(prefix='puhui-direct-')}/ledger.db"
    people = a.n
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pd.DataFrame({
            "policy_no": [f"N{i:07d}" for i in range(people)],
            "psn_no": [f"P{i:07d}" for i in range(people)], "product_id": product.id,
            "start_date": pd.Timestamp("2025-01-01"), "end_date": pd.Timestamp("2025-12-31"),
            "premium": 12900, "preexisting": False, "consent": True}))
    con.close()
    rng = np.random.default_rng(1)
    lat = []
    total = 0.0
    for i in range(a.n):
        inlist = float(np.round(rng.lognormal(8.5, 1.2), 2))
        s = {"setl_id": f"S{i:07d}", "psn_no": f"P{rng.integers(0, people):07d}",
             "setl_time": f"2025-{1 + i % 12:02d}-15", "med_type": "21", "hosp_lv": 3,
             "insutype": "310", "medfee_sumamt": inlist * 3, "fulamt_ownpay_amt": 0,
             "overlmt_selfpay": 0, "psn_part_amt": inlist}
        if i % 50 == 0:
            s["lines"] = [{"hilist_code": "SD-01", "list_class": "self", "amount": 15000}]
            s["fulamt_ownpay_amt"] = 15000
            s["psn_part_amt"] = inlist + 15000
        # the contract's fund fields, adding up to the total (claims direct checks it)
        s |= {"hifp_pay": round(inlist * 2, 2), "hifob_pay": 0, "hifmi_pay": 0, "maf_pay": 0}
        s["medfee_sumamt"] = round(s["psn_part_amt"] + s["hifp_pay"], 2)
        t = time.perf_counter()
        total += direct_payout(product, url, s)["total_payout"]
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    p99 = lat[int(0.99 * len(lat)) - 1]
    print(f"{a.n:,} direct payouts: median {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms, "
          f"max {lat[-1]:.2f} ms (target p99 < 10 ms); paid {total:,.2f} yuan")


if __name__ == "__main__":
    main()
