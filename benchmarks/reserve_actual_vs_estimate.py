"""Actual against estimate of ``puhui reserve`` (issue 22, "must show"): IBNR at several
as-of dates set against the money that later arrives, per method.

A city of one year (2024) is written with ``puhui synth --claims`` (each claim's filing
date: a reporting lag). A claimed batch at the end of every month of 2024 and 2025 runs
over the settlements to date and the claims filed by then (``--as-of`` the month's end),
into one ledger, and one last batch at the end of 2026 (every claim filed: the lags are
capped at two years) gives the ultimate. At each valuation date ``puhui reserve`` (the
Python function the command runs) estimates the IBNR by chain ladder (with Mack's
standard error), Bornhuetter-Ferguson and Cape Cod with a prior loss ratio, and the chain
ladder again with an exponential and an inverse-power tail (``--tail``); the actual
is what the ledger paid later for the settlements dated to the valuation: the last
batch's paid for those origins minus the paid to date.

A last column sizes what a right tail does: the chain ladder with ``--tail-factor F``,
F the tail the study's own final batch implies beyond the valuation's last age (the
oldest origin's age: 15 months at 2025-03-31) for the three oldest origins (the
product year's first months): their paid by the last batch over their paid at that age.
It is the answer's own tail, not a method: no reserve could know it at the valuation.

The product is huhuibao-2024 with its hospital deductible lowered to ``--deductible``
yuan (300 by default) so that a small city has claims every month; the prior loss ratio
(``--loss-ratio``) is an input, as pricing.json's ``expected_loss_ratio`` would be.

    python benchmarks/reserve_actual_vs_estimate.py [--persons 5000] [--seed 7]
        [--deductible 300] [--loss-ratio 0.85]

Prints the machine, the figures (yuan) and the CPU time of the batches and the reserves.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

VALUATIONS = ["2024-06-30", "2024-09-30", "2024-12-31", "2025-03-31", "2025-06-30"]
LAST = "2026-12-31"
PRODUCT = """
extends = "{base}"
id = "huhuibao-2024"
[[benefits]]
id = "hospital"
deductible = {{ amount = {amount} }}
"""


def puhui(*args) -> None:
    r = subprocess.run([sys.executable, "-m", "puhui", *map(str, args)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"puhui {' '.join(map(str, args[:2]))}: {r.stderr.strip()}")


def extract(city: Path, end: str, folder: Path) -> Path:
    """The settlements to ``end`` (and their lines) and the claims filed by then."""
    folder.mkdir()
    for f in ("persons.parquet", "policies.parquet"):
        shutil.copy(city / f, folder / f)
    st = pd.read_parquet(city / "settlements.parquet")
    st = st[st["setl_time"] <= pd.Timestamp(end)]
    st.to_parquet(folder / "settlements.parquet", index=False)
    ln = pd.read_parquet(city / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st["setl_id"])].to_parquet(folder / "settlement_lines.parquet",
                                                     index=False)
    cl = pd.read_parquet(city / "claims.parquet")
    cl[cl["filed_date"] <= pd.Timestamp(end)].to_parquet(folder / "claims.parquet",
                                                         index=False)
    return folder


def fill(city: Path, product: Path, url: str, work: Path) -> None:
    """A claimed batch at every month's end of 2024-2025, and the last one."""
    ends = [d.date().isoformat() for d in pd.date_range("2024-01-31", "2025-12-31",
                                                          freq="ME")] + [LAST]
    for end in ends:
        data = extract(city, end, work / f"data-{end}")
        puhui("claims", "run", "--product", product, "--data", data, "--ledger", url,
              "--batch", f"m-{end}", "--out", work / f"out-{end}", "--claims",
              data / "claims.parquet", "--as-of", end, "--workers", "1")
        shutil.rmtree(data)


def paid_by_origin(res: dict) -> dict[str, float]:
    """Paid to date per origin month (yuan) of a reserve result."""
    m = res["methods"]["chainladder"]
    return {r["origin"]: r["latest_yuan"] or 0.0 for r in m["by_origin"]}


#: the oldest origins whose development gives the implied tail factor
OLDEST = 3


def implied_tail(final: dict, age: int) -> float:
    """The tail factor beyond ``age`` (a development index, 0 = the origin's own month)
    that the final batch shows for the ``OLDEST`` oldest origins: their paid by the
    last batch over their paid at that age."""
    rows = final["triangle"]["cumulative_paid_yuan"][:OLDEST]
    last = sum([v for v in row if v is not None][-1] for row in rows)
    return last / sum(row[age] for row in rows)


def study(url: str, loss_ratio: float) -> list[dict]:
    from puhui.reserve_run import reserve

    final = reserve(url, "huhuibao-2024", LAST)
    last = paid_by_origin(final)
    print(f"ultimate (paid by {LAST}): {sum(last.values()):,.2f} yuan on earned premium "
          f"{sum(final['earned_premium_yuan']):,.2f}: loss ratio "
          f"{sum(last.values()) / sum(final['earned_premium_yuan']):.3f} (BF and Cape Cod's "
          f"prior: {loss_ratio})")
    rows = []
    for v in VALUATIONS:
        res = reserve(url, "huhuibao-2024", v, method="all", loss_ratio=loss_ratio)
        now = paid_by_origin(res)
        actual = sum(last.get(o, 0.0) - p for o, p in now.items())
        row = {"as_of": v, "paid": res["paid_to_date_yuan"], "actual": actual}
        for name, m in res["methods"].items():
            row[name] = None if isinstance(m, str) else m["ibnr_total_yuan"]
        row["se"] = res["methods"]["chainladder"].get("std_err_total_yuan")
        for tail in ("exponential", "inverse_power"):
            t = reserve(url, "huhuibao-2024", v, tail=tail)["methods"]["chainladder"]
            row[tail] = t["ibnr_total_yuan"]
        row["implied_tail"] = implied_tail(final, len(res["triangle"]["origins"]) - 1)
        t = reserve(url, "huhuibao-2024", v, tail_factor=row["implied_tail"])
        row["with_implied_tail"] = t["methods"]["chainladder"]["ibnr_total_yuan"]
        row["se_implied_tail"] = t["methods"]["chainladder"]["std_err_total_yuan"]
        rows.append(row)
    return rows


def show(rows: list[dict]) -> None:
    print(f"{'as of':<11} {'paid':>12} {'actual later':>13} | {'chain ladder':>12} "
          f"{'(s.e.)':>10} {'z':>5} | {'BF':>10} | {'Cape Cod':>10} | {'exp. tail':>10} "
          f"| {'inv. power':>10} | {'implied F':>9} {'CL with F':>10} {'(s.e.)':>10}")
    for r in rows:
        cl, se = r.get("chainladder"), r.get("se")
        z = (r["actual"] - cl) / se if cl is not None and se else float("nan")
        print(f"{r['as_of']:<11} {r['paid']:>12,.2f} {r['actual']:>13,.2f} | "
              f"{cl if cl is not None else float('nan'):>12,.2f} "
              f"{se if se is not None else float('nan'):>10,.2f} {z:>5.2f} | "
              f"{r.get('bf') if r.get('bf') is not None else float('nan'):>10,.2f} | "
              f"{r.get('capecod') if r.get('capecod') is not None else float('nan'):>10,.2f} | "
              f"{_num(r.get('exponential')):>10,.2f} | {_num(r.get('inverse_power')):>10,.2f}"
              f" | {r['implied_tail']:>9.5f} {_num(r['with_implied_tail']):>10,.2f} "
              f"{_num(r['se_implied_tail']):>10,.2f}")


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--deductible", type=int, default=300)
    ap.add_argument("--loss-ratio", type=float, default=0.85)
    args = ap.parse_args()
    from puhui.products.model import product_path

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        puhui("synth", "--persons", args.persons, "--years", 1, "--seed", args.seed,
              "--out", work / "city", "--claims")
        product = work / "product.toml"
        product.write_text(PRODUCT.format(base=product_path("huhuibao-2024"),
                                          amount=args.deductible), encoding="utf-8")
        url = f"sqlite:///{work / 'ledger.db'}"
        t0 = time.process_time()
        c0 = os.times()
        fill(work / "city", product, url, work)
        c1 = os.times()
        rows = study(url, args.loss_ratio)
        t1 = time.process_time()
    print(f"city: {args.persons:,} persons, 2024, seed {args.seed}; hospital deductible "
          f"{args.deductible} yuan; prior loss ratio {args.loss_ratio}")
    print(f"CPU: batches {c1.children_user + c1.children_system - c0.children_user - c0.children_system:.1f} s "
          f"(25 processes), extracts and reserves {t1 - t0:.1f} s in this process")
    show(rows)


if __name__ == "__main__":
    main()
