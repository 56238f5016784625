"""Actual against estimate of ``puhui reserve`` (issue 22, "must show"): IBNR at several
as-of dates set against the money that later arrives, per method.

A city is written with ``puhui synth --claims`` (each claim's filing date: a reporting
lag). Its product years (``--years``, from ``--start-year``; one product each,
huhuibao-YEAR) run through one ledger: a claimed batch per product at the end of every
month from the product year's first month to twelve months after the last product year,
over that year's settlements to date and the claims filed by then (``--as-of`` the
month's end), and one last batch per product two years after the last product year
(every claim filed: the lags are capped at two years) gives the ultimate. At each
valuation date (every quarter end from the first year's 30 June to six months after the
last year) ``puhui reserve`` (the Python function the command runs) estimates each
product year's IBNR by chain ladder (with Mack's standard error), Bornhuetter-Ferguson
and Cape Cod with a prior loss ratio; the actual is what the ledger paid later for the
settlements dated to the valuation: the last batch's paid for those origins minus the
paid to date. Each product year is an origin year (its own triangle by settlement
month); the total's s.e. adds the years' variances (their triangles are separate).

The prior loss ratio (``--loss-ratio``) is a number, or ``priced``: each product year
priced by ``puhui price --no-backtest`` on the city's data of the years before it
(pricing.json's ``expected_loss_ratio``), so the city starts one year earlier than the
first product year (a year of history the ledger does not run).

With one product year (the default, session 22's study) the chain ladder is also run
with each ``--tail`` and with the tail the study's own final batch implies beyond the
valuation's last age (the three oldest origins' paid by the last batch over their paid
at that age: the answer's own tail, not a method); ``--no-tails`` leaves them out.

The products are huhuibao-YEAR with the hospital deductible lowered to ``--deductible``
yuan (300 by default) so that a small city has claims every month (the premium stays
Huhuibao's 129 yuan: the loss ratio is several times 1), and their policy period the
calendar year, as the synthetic city's policies (huhuibao-2022 and -2023 run from 1 July);
their claim-free steps are emptied (``extends`` keeps the base's steps, 14,000 and 13,000
yuan after two and three claim-free years, beside a lowered amount: they would raise a
claim-free renewal's deductible from 300 to 14,000).

    python benchmarks/reserve_actual_vs_estimate.py [--persons 5000] [--seed 7]
        [--deductible 300] [--loss-ratio 0.85]            # session 22: one year
    python benchmarks/reserve_actual_vs_estimate.py --years 3 --start-year 2023 \\
        --persons 3000 --seed 7 --seed 8 --seed 9 --loss-ratio priced --no-tails \\
        [--json out.json]                                  # session 23: three years

Prints the machine, the figures (yuan) and the CPU time of the batches, the pricings and
the reserves (per seed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

PRODUCT = """
extends = "{base}"
id = "{pid}"
[policy_period]
start = {year}-01-01
end = {year}-12-31
[[benefits]]
id = "hospital"
deductible = {{ amount = {amount}, claim_free = [] }}
"""


def puhui(*args) -> None:
    r = subprocess.run([sys.executable, "-m", "puhui", *map(str, args)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"puhui {' '.join(map(str, args[:2]))}: {r.stderr.strip()}")


class Plan:
    """The study's dates: product years, batch month ends, valuations, the last batch."""

    def __init__(self, start_year: int, years: int):
        self.years = list(range(start_year, start_year + years))
        last = self.years[-1]
        self.run_to = f"{last + 1}-12-31"           # monthly batches to here
        self.last = f"{last + 2}-12-31"             # every claim filed by then
        self.valuations = [d.date().isoformat() for d in pd.date_range(
            f"{start_year}-06-30", f"{last + 1}-06-30", freq="QE")]

    def batch_ends(self, year: int) -> list[str]:
        return [d.date().isoformat() for d in pd.date_range(
            f"{year}-01-31", self.run_to, freq="ME")] + [self.last]


def product_id(year: int) -> str:
    return f"huhuibao-{year}"


def write_products(work: Path, years: list[int], deductible: int) -> dict[int, Path]:
    from puhui.products.model import product_path

    out = {}
    for y in years:
        out[y] = work / f"product-{y}.toml"
        out[y].write_text(PRODUCT.format(base=product_path(product_id(y)), pid=product_id(y),
                                         year=y, amount=deductible), encoding="utf-8")
    return out


def extract(city: Path, end: str, folder: Path, year: int | None = None) -> Path:
    """The settlements to ``end`` (and their lines) and the claims filed by then; with
    ``year``, only that product year's policies and settlements."""
    folder.mkdir()
    shutil.copy(city / "persons.parquet", folder / "persons.parquet")
    pol = pd.read_parquet(city / "policies.parquet")
    st = pd.read_parquet(city / "settlements.parquet")
    st = st[st["setl_time"] <= pd.Timestamp(end)]
    if year is not None:
        pol = pol[pol["product_id"] == product_id(year)]
        st = st[st["setl_time"] >= pd.Timestamp(f"{year}-01-01")]
        st = st[st["setl_time"] <= pd.Timestamp(f"{year}-12-31 23:59:59")]
    pol.to_parquet(folder / "policies.parquet", index=False)
    st.to_parquet(folder / "settlements.parquet", index=False)
    ln = pd.read_parquet(city / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st["setl_id"])].to_parquet(folder / "settlement_lines.parquet",
                                                     index=False)
    cl = pd.read_parquet(city / "claims.parquet")
    cl[(cl["filed_date"] <= pd.Timestamp(end)) & cl["setl_id"].isin(st["setl_id"])
       ].to_parquet(folder / "claims.parquet", index=False)
    return folder


def fill(city: Path, products: dict[int, Path], plan: Plan, url: str, work: Path) -> int:
    """A claimed batch per product year at every month's end, and the last one; the
    number of batches."""
    n = 0
    for year, product in products.items():
        for end in plan.batch_ends(year):
            data = extract(city, end, work / f"data-{year}-{end}",
                           year if len(products) > 1 else None)
            puhui("claims", "run", "--product", product, "--data", data, "--ledger", url,
                  "--batch", f"m-{year}-{end}", "--out", work / f"out-{year}-{end}",
                  "--claims", data / "claims.parquet", "--as-of", end, "--workers", "1")
            shutil.rmtree(data)
            shutil.rmtree(work / f"out-{year}-{end}")
            n += 1
    return n


def history(city: Path, year: int, folder: Path) -> Path:
    """The city's data of the years before ``year`` (what its pricing knew)."""
    folder.mkdir()
    shutil.copy(city / "persons.parquet", folder / "persons.parquet")
    pol = pd.read_parquet(city / "policies.parquet")
    pol[pol["start_date"] < pd.Timestamp(f"{year}-01-01")].to_parquet(
        folder / "policies.parquet", index=False)
    st = pd.read_parquet(city / "settlements.parquet")
    st = st[st["setl_time"] < pd.Timestamp(f"{year}-01-01")]
    st.to_parquet(folder / "settlements.parquet", index=False)
    ln = pd.read_parquet(city / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st["setl_id"])].to_parquet(folder / "settlement_lines.parquet",
                                                     index=False)
    return folder


def priced_loss_ratios(city: Path, products: dict[int, Path], work: Path) -> dict[int, dict]:
    """Each product year's pricing.json figures, priced on the years before it."""
    out = {}
    for year, product in products.items():
        data = history(city, year, work / f"history-{year}")
        puhui("price", "--product", product, "--data", data, "--out", work / f"price-{year}",
              "--no-backtest")
        f = json.loads((work / f"price-{year}" / "pricing.json").read_text(encoding="utf-8"))
        out[year] = {"expected_loss_ratio": f["expected_loss_ratio"],
                     "pure_premium_yuan": f["pure_premium"]["total"],
                     "premium_yuan": f["filed_premium"] or f["gross_premium"],
                     "data_years": f["data"]["years"]}
        shutil.rmtree(data)
    return out


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


def premium_check(url: str, city: Path, year: int) -> tuple[float, float]:
    """The premium of the product year's policies (yuan): as the ledger holds it, and
    as the city's policies.parquet wrote it (a check of the earned premium's base)."""
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        fen = con.execute("SELECT SUM(premium_fen) FROM policies WHERE product_id = ?",
                          (product_id(year),)).fetchone()[0]
    pol = pd.read_parquet(city / "policies.parquet")
    return fen / 100, float(pol.loc[pol["product_id"] == product_id(year), "premium"].sum())


def tails(url: str, pid: str, v: str, final: dict, res: dict) -> dict:
    """The chain ladder with each fitted tail and with the answer's own tail."""
    from puhui.reserve_run import reserve

    row = {}
    for tail in ("exponential", "inverse_power"):
        row[tail] = reserve(url, pid, v, tail=tail)["methods"]["chainladder"]["ibnr_total_yuan"]
    row["implied_tail"] = implied_tail(final, len(res["triangle"]["origins"]) - 1)
    t = reserve(url, pid, v, tail_factor=row["implied_tail"])["methods"]["chainladder"]
    row["with_implied_tail"] = t["ibnr_total_yuan"]
    row["se_implied_tail"] = t["std_err_total_yuan"]
    return row


def one_year(url: str, year: int, v: str, final: dict, loss_ratio: float,
             with_tails: bool) -> dict:
    """One product year at one valuation: paid, actual later, each method's IBNR."""
    from puhui.reserve_run import reserve

    pid = product_id(year)
    res = reserve(url, pid, v, method="all", loss_ratio=loss_ratio)
    last, now = paid_by_origin(final), paid_by_origin(res)
    row = {"as_of": v, "year": year, "paid": res["paid_to_date_yuan"],
           "actual": sum(last.get(o, 0.0) - p for o, p in now.items()),
           "prior": loss_ratio, "earned": sum(res["earned_premium_yuan"])}
    for name, m in res["methods"].items():
        row[name] = None if isinstance(m, str) else m["ibnr_total_yuan"]
    cl = res["methods"]["chainladder"]
    row["se"] = None if isinstance(cl, str) else cl.get("std_err_total_yuan")
    cc = res["methods"].get("capecod")
    row["capecod_lr"] = None if isinstance(cc, str) or cc is None else cc.get("loss_ratio")
    if with_tails:
        row.update(tails(url, pid, v, final, res))
    return row


def study(url: str, plan: Plan, priors: dict[int, float], with_tails: bool) -> list[dict]:
    from puhui.reserve_run import reserve

    finals = {y: reserve(url, product_id(y), plan.last) for y in plan.years}
    for y, final in finals.items():
        ult = sum(paid_by_origin(final).values())
        print(f"{product_id(y)}: ultimate (paid by {plan.last}) {ult:,.2f} yuan on earned "
              f"premium {sum(final['earned_premium_yuan']):,.2f}: loss ratio "
              f"{ult / sum(final['earned_premium_yuan']):.3f} (BF and Cape Cod's prior: "
              f"{priors[y]})")
    rows = []
    for v in plan.valuations:
        for y in plan.years:
            if pd.Timestamp(v) >= pd.Timestamp(f"{y}-01-31"):
                rows.append(one_year(url, y, v, finals[y], priors[y], with_tails))
    return rows


def totals(rows: list[dict]) -> list[dict]:
    """Per valuation, the product years added (s.e.: the variances added)."""
    out = []
    for v in dict.fromkeys(r["as_of"] for r in rows):
        part = [r for r in rows if r["as_of"] == v]
        t = {"as_of": v, "year": "total"}
        for k in ("paid", "actual", "chainladder", "bf", "capecod"):
            vals = [r.get(k) for r in part]
            t[k] = None if any(x is None for x in vals) else sum(vals)
        # a year whose development is over (IBNR 0) has no s.e.: it adds none
        ses = [0.0 if r.get("se") is None and r.get("chainladder") == 0 else r.get("se")
               for r in part]
        t["se"] = None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses))
        out.append(t)
    return out


def z_of(r: dict) -> float:
    cl, se = r.get("chainladder"), r.get("se")
    return (r["actual"] - cl) / se if cl is not None and se else float("nan")


def show(rows: list[dict], with_tails: bool) -> None:
    head = (f"{'as of':<11} {'year':>5} {'paid':>13} {'actual later':>13} | "
            f"{'chain ladder':>12} {'(s.e.)':>10} {'z':>6} | {'BF':>11} | {'Cape Cod':>11} "
            f"{'(its LR)':>8}")
    if with_tails:
        head += (f" | {'exp. tail':>10} | {'inv. power':>10} | {'implied F':>9} "
                 f"{'CL with F':>10} {'(s.e.)':>10}")
    print(head)
    for r in rows:
        line = (f"{r['as_of']:<11} {r['year']!s:>5} {r['paid']:>13,.2f} {r['actual']:>13,.2f} | "
                f"{_num(r.get('chainladder')):>12,.2f} {_num(r.get('se')):>10,.2f} "
                f"{z_of(r):>6.2f} | {_num(r.get('bf')):>11,.2f} | "
                f"{_num(r.get('capecod')):>11,.2f} {_num(r.get('capecod_lr')):>8.3f}")
        if with_tails:
            line += (f" | {_num(r.get('exponential')):>10,.2f} | "
                     f"{_num(r.get('inverse_power')):>10,.2f} | {r['implied_tail']:>9.5f} "
                     f"{_num(r['with_implied_tail']):>10,.2f} {_num(r['se_implied_tail']):>10,.2f}")
        print(line)


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run_seed(args, seed: int) -> dict:
    """One city, its ledger, its pricings and its reserves; the rows and the CPU."""
    plan = Plan(args.start_year, args.years)
    priced = args.loss_ratio == "priced"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first = args.start_year - 1 if priced else args.start_year
        puhui("synth", "--persons", args.persons, "--years", args.years + priced,
              "--start-year", first, "--seed", seed, "--out", work / "city", "--claims")
        products = write_products(work, plan.years, args.deductible)
        c0 = children_cpu()
        pricing = priced_loss_ratios(work / "city", products, work) if priced else {}
        c1 = children_cpu()
        priors = ({y: p["expected_loss_ratio"] for y, p in pricing.items()} if priced
                  else {y: float(args.loss_ratio) for y in plan.years})
        url = f"sqlite:///{work / 'ledger.db'}"
        n = fill(work / "city", products, plan, url, work)
        c2 = children_cpu()
        t0 = time.process_time()
        rows = study(url, plan, priors, args.tails)
        t1 = time.process_time()
        premiums = {y: premium_check(url, work / "city", y) for y in plan.years}
    return {"seed": seed, "rows": rows, "pricing": pricing, "premium_check": premiums,
            "cpu": {"pricings_s": round(c1 - c0, 1), "batches_s": round(c2 - c1, 1),
                    "batches": n, "reserves_s": round(t1 - t0, 1)}}


def age_months(r: dict) -> int:
    """Months from the product year's start to the valuation."""
    v = pd.Timestamp(r["as_of"])
    return (v.year - int(r["year"])) * 12 + v.month


def _ratio(est: list, act: list) -> str:
    pairs = [(e, a) for e, a in zip(est, act) if e is not None]
    a = sum(p[1] for p in pairs)
    return f"{sum(p[0] for p in pairs) / a:.2f}" if a else "-"


def markdown(runs: list[dict]) -> str:
    """The docs' tables from saved runs (``--json``): the totals by seed and valuation,
    the product years by age (pooled over years and seeds), the loss ratios."""
    out = ["| seed | as of | paid to date | actual later | chain ladder (s.e.) | z | BF | "
           "Cape Cod |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for t in totals(run["rows"]):
            out.append(f"| {run['seed']} | {t['as_of']} | {_num(t['paid']):,.0f} | "
                       f"{_num(t['actual']):,.0f} | {_num(t['chainladder']):,.0f} "
                       f"({_num(t['se']):,.0f}) | {z_of(t):.2f} | {_num(t['bf']):,.0f} | "
                       f"{_num(t['capecod']):,.0f} |")
    rows = [r for run in runs for r in run["rows"] if r["actual"] or r.get("chainladder")]
    out += ["", "| age (months) | product years | CL within 1 s.e. | within 2 s.e. | "
            "sum CL / sum actual | BF | Cape Cod |", "|---|---|---|---|---|---|---|"]
    for age in sorted({age_months(r) for r in rows}):
        part = [r for r in rows if age_months(r) == age]
        zs = [abs(z_of(r)) for r in part if r.get("se")]
        act = [r["actual"] for r in part]
        out.append(f"| {age} | {len(part)} | {sum(z <= 1 for z in zs)} of {len(zs)} | "
                   f"{sum(z <= 2 for z in zs)} of {len(zs)} | "
                   f"{_ratio([r.get('chainladder') for r in part], act)} | "
                   f"{_ratio([r.get('bf') for r in part], act)} | "
                   f"{_ratio([r.get('capecod') for r in part], act)} |")
    out += ["", "| seed | product year | priced on | priced loss ratio | paid by the last "
            "batch / earned premium |", "|---|---|---|---|---|"]
    for run in runs:
        last = {int(r["year"]): r for r in run["rows"]}     # each year's last valuation
        for y, p in run["pricing"].items():
            r = last[int(y)]
            out.append(f"| {run['seed']} | {y} | {', '.join(map(str, p['data_years']))} | "
                       f"{p['expected_loss_ratio']:.3f} | "
                       f"{(r['paid'] + r['actual']) / r['earned']:.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seed", type=int, action="append",
                    help="repeat for several cities (default: 7)")
    ap.add_argument("--years", type=int, default=1, help="product years (ledger)")
    ap.add_argument("--start-year", type=int, default=2024)
    ap.add_argument("--deductible", type=int, default=300)
    ap.add_argument("--loss-ratio", default="0.85",
                    help="the prior loss ratio, or 'priced' (each year priced on the years "
                         "before it)")
    ap.add_argument("--no-tails", dest="tails", action="store_false",
                    help="leave out the tail columns (one product year only)")
    ap.add_argument("--json", type=Path, help="write every seed's rows here")
    ap.add_argument("--from-json", type=Path, action="append",
                    help="print the docs' Markdown tables from saved runs (--json) and stop")
    args = ap.parse_args()
    if args.from_json:
        print(markdown([run for f in args.from_json
                        for run in json.loads(f.read_text(encoding="utf-8"))["seeds"]]))
        return
    if args.years > 1:
        args.tails = False
    seeds = args.seed or [7]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    out = []
    for seed in seeds:
        r = run_seed(args, seed)
        out.append(r)
        print(f"\nseed {seed}: {args.persons:,} persons, product years {args.start_year}-"
              f"{args.start_year + args.years - 1}; hospital deductible {args.deductible} "
              f"yuan; prior loss ratio {args.loss_ratio}")
        for y, p in r["pricing"].items():
            print(f"  {product_id(y)} priced on {p['data_years']}: pure premium "
                  f"{p['pure_premium_yuan']:,.2f} on {p['premium_yuan']:,.2f} yuan: "
                  f"expected loss ratio {p['expected_loss_ratio']}")
        for y, (led, pol) in r["premium_check"].items():
            print(f"  {product_id(y)} premium: ledger {led:,.2f}, policies.parquet {pol:,.2f}")
        print(f"CPU: pricings {r['cpu']['pricings_s']} s, batches {r['cpu']['batches_s']} s "
              f"({r['cpu']['batches']} processes), reserves {r['cpu']['reserves_s']} s")
        rows = r["rows"]
        show(rows + (totals(rows) if args.years > 1 else []), args.tails)
    if args.json:
        for r in out:
            r["totals"] = totals(r["rows"])
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "seeds": out}, indent=1, default=str),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
