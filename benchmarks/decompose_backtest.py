"""Decompose a backtest year's error (issue 18): where does realised minus priced per
policy come from?

The backtest row of year t (``puhui backtest``) sets the pure premium priced from the
years before t against what t's enrollees cost. This script re-runs that price (the same
build-up, :data:`puhui.pricing.premium.BACKTEST_STEPS`), keeps its cells, and puts each
of year t's actual policies in the cell the price put that person in (the people of the
last data year in next year's state, ``premium.next_year_state``). With

    w_c  the policies the price expected in cell c,   a_c  the actual policies,
    E_c  the price's cost per policy of cell c (its claim-free step shares predicted),
    E'_c the same at the cell's actual claim-free step shares,
    R_c  the realised cost per policy of cell c (the backtest's own realised cost),

    priced    P  = sum w_c E_c  / W
    mix       M  = sum a_c E_c  / A       (who enrolled, at the model's cell costs)
    steps     S  = sum a_c E'_c / A       (and their actual claim-free years)
    realised  R  = sum a_c R_c  / A

so R - P = (M - P) [mix] + (S - M) [claim-free steps] + (R - S) [cost per cell], each
by benefit, renewal against new entrant, and cell. Policies of year t whose person is
not among the priced people (not in the last data year) are counted apart.

    python benchmarks/decompose_backtest.py --data DIR [--year 2026] [--product huhuibao-2025]
        [--json OUT.json] [--cost-factor preexisting_seen] [--prevalent MODE]

``--cost-factor``: an experiment (the cost models may choose one more factor); the
shipped price is without it.

Memory: about what ``puhui backtest`` takes for one year (4-5 GB at 1,000,000 people).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

FACTORS_SHOWN = ("age_band", "preexisting", "preexisting_seen", "prior_stay", "insutype",
                 "retired", "gender")


def priced_cells(product, data, year: int, assumptions: dict, seed: int) -> dict:
    """The price of ``year`` from the data before it, reduced to its cells: per cell the
    expected policies (all, renewals), the cost per policy per benefit at the predicted
    claim-free shares and per claim-free step, and each priced person's cell."""
    from puhui.pricing.backtest import data_before
    from puhui.pricing.premium import BACKTEST_STEPS, MIX_FACTORS, BuildUp

    s = BuildUp(product, data_before(data, year), assumptions, seed)
    for step in BACKTEST_STEPS:
        step(s)
    benefits = [b.id for b in product.benefits]
    per_b = {b: np.zeros(len(s.cells)) for b in benefits}      # E_c by benefit
    steps_b = {}                                                # E_c at step k, by benefit
    for terms in s.groups:
        m1 = s.group_m1[terms.id] * s.cell_factor
        at_step = None
        if terms.claim_free_steps:
            assert len(terms.benefits) > 1 or terms.id not in s.ext.state, \
                "a group with claim-free steps and an external blend: not decomposed"
            base = s.models[terms.id].moments(s.cells, terms, severity_factor=s.sev_trend)[0]
            at_step = [base] + [s.models[terms.id].moments(
                s.cells, dataclasses.replace(terms, deductible=d),
                severity_factor=s.sev_trend)[0] for _, d in terms.claim_free_steps]
        for b in terms.benefits:
            k = s.elig_share[b] * (1.0 - s.frac.get(b, 0.0))
            per_b[b] += m1 * k
            if at_step is not None:
                steps_b[b] = (terms.claim_free_steps, [m * s.cell_factor * k for m in at_step])
    total = sum(per_b.values())
    check = float(np.dot(s.w, total) / s.w.sum())
    person = s.frame["person"].to_numpy()[s.last_rows]
    # what each priced person's last data year paid (as if in force; yuan): the
    # renewals' own claims, which the cells see only through a stay
    paid_last = sum(s.frame[f"payout_{b}"].to_numpy()[s.last_rows] for b in benefits) / 100.0
    out = {"cells": s.cells[list(MIX_FACTORS)].reset_index(drop=True), "w": s.w,
           "renewing": np.asarray(s.renewing, dtype=float), "per_benefit": per_b,
           "steps": steps_b, "person": person, "cur_cell": s.cur_cell,
           "enrolled_last": s.cur["enrolled"].to_numpy(dtype=bool), "paid_last": paid_last,
           "figures": s.figures, "cell_check": check, "benefits": benefits}
    del s
    return out


def realised_rows(product, data, year: int) -> pd.DataFrame:
    """Year ``year``'s policies as the backtest's realised cost counts them (its own book,
    payouts at each renewal's claim-free deductible): person, claim-free years, payout
    per benefit in yuan."""
    from puhui.pricing.backtest import data_through, own_book
    from puhui.pricing.enrolment import (
        first_claim_free_step,
        paid_under_own_terms,
        policy_claim_free_years,
        repay_with_claim_free_years,
    )
    from puhui.pricing.experience import experience_in_blocks
    from puhui.pricing.premium import EXPERIENCE_DROP, eligible_rows

    through = data_through(data, year)
    frame, _ = experience_in_blocks(product, through, drop=EXPERIENCE_DROP)
    on = ((frame["year"].to_numpy() == year) & frame["enrolled"].to_numpy(dtype=bool)
          & eligible_rows(product, frame))
    on, _ = own_book(product, through, frame, year, on)
    cfy = np.zeros(len(frame), dtype=int)
    first = first_claim_free_step(product)
    if first is not None:
        own_paid, _ = paid_under_own_terms(product, through, frame, last=year - 1)
        cfy = policy_claim_free_years(frame, through.policies, own_paid)
        rows = np.flatnonzero(on & (cfy >= first))
        if len(rows):
            paid = repay_with_claim_free_years(product, through, frame, year, rows, cfy[rows])
            for col, v in paid.items():
                frame[col].to_numpy()[rows] = v
    out = pd.DataFrame({"person": frame["person"].to_numpy()[on], "cfy": cfy[on]})
    for b in product.benefits:
        out[b.id] = frame[f"payout_{b.id}"].to_numpy()[on] / 100.0
    return out


def step_index(cfy: np.ndarray, steps) -> np.ndarray:
    """0 for the first-year deductible, k + 1 for claim-free step k."""
    k = np.zeros(len(cfy), dtype=int)
    for j, (y, _) in enumerate(steps):
        k[cfy >= y] = j + 1
    return k


def decompose(p: dict, real: pd.DataFrame) -> dict:
    """The tables of the module docstring from :func:`priced_cells` and
    :func:`realised_rows`."""
    benefits = p["benefits"]
    pos = pd.Series(np.arange(len(p["person"])), index=p["person"])
    pos = pos[~pos.index.duplicated()]
    at = pos.reindex(real["person"].to_numpy()).to_numpy()
    inside = ~np.isnan(at)
    at = at[inside].astype(int)
    r = real[inside].reset_index(drop=True)
    cell = p["cur_cell"][at]
    renewal = p["enrolled_last"][at]
    paid_last = p["paid_last"][at] > 0
    per_person = {}
    for b in benefits:
        e = p["per_benefit"][b][cell]
        e_steps = e
        if b in p["steps"]:
            steps, at_step = p["steps"][b]
            k = step_index(r["cfy"].to_numpy(), steps)
            e_steps = np.choose(k, [m[cell] for m in at_step])
        per_person[b] = (e, e_steps, r[b].to_numpy())
    n_cells = len(p["cells"])
    rows = pd.DataFrame(p["cells"])
    rows["w"] = p["w"]
    rows["w_renew"] = p["renewing"]
    rows["a"] = np.bincount(cell, minlength=n_cells)
    rows["a_renew"] = np.bincount(cell, weights=renewal.astype(float), minlength=n_cells)
    for b in benefits:
        e, es, rr = per_person[b]
        rows[f"E_{b}"] = p["per_benefit"][b]
        rows[f"S_{b}"] = np.bincount(cell, weights=es, minlength=n_cells)     # sums
        rows[f"R_{b}"] = np.bincount(cell, weights=rr, minlength=n_cells)
    rows["E"] = sum(rows[f"E_{b}"] for b in benefits)
    rows["S"] = sum(rows[f"S_{b}"] for b in benefits)
    rows["R"] = sum(rows[f"R_{b}"] for b in benefits)
    outside = real[~inside]
    return {"rows": rows, "renewal": renewal, "paid_last": paid_last, "cell": cell,
            "per_person": per_person,
            "outside": {"policies": int(len(outside)),
                        "paid_per_policy": (float(outside[benefits].to_numpy().sum()) /
                                            len(outside)) if len(outside) else None},
            "benefits": benefits}


def summary(d: dict) -> dict:
    """P, M, S, R per benefit and in total, over all policies and by renewal/entrant."""
    rows, benefits = d["rows"], d["benefits"]
    W, A = rows["w"].sum(), rows["a"].sum()
    out = {}
    for b in [*benefits, None]:
        E = rows["E"] if b is None else rows[f"E_{b}"]
        S = rows["S"] if b is None else rows[f"S_{b}"]
        R = rows["R"] if b is None else rows[f"R_{b}"]
        out[b or "total"] = {"priced": float((rows["w"] * E).sum() / W),
                             "mix": float((rows["a"] * E).sum() / A),
                             "steps": float(S.sum() / A), "realised": float(R.sum() / A)}
    split = {}
    for name, on in (("renewal", d["renewal"]), ("new entrant", ~d["renewal"])):
        wk = rows["w_renew"] if name == "renewal" else rows["w"] - rows["w_renew"]
        e = sum(d["per_person"][b][0][on] for b in benefits)
        es = sum(d["per_person"][b][1][on] for b in benefits)
        rr = sum(d["per_person"][b][2][on] for b in benefits)
        split[name] = {"predicted": float(wk.sum()), "actual": int(on.sum()),
                       "priced": float((wk * rows["E"]).sum() / wk.sum()) if wk.sum() else None,
                       "mix": float(e.mean()) if on.any() else None,
                       "steps": float(es.mean()) if on.any() else None,
                       "realised": float(rr.mean()) if on.any() else None}
    own = {}
    for name, on in (("renewal, paid last year", d["renewal"] & d["paid_last"]),
                     ("renewal, paid nothing", d["renewal"] & ~d["paid_last"]),
                     ("entrant, paid last year", ~d["renewal"] & d["paid_last"]),
                     ("entrant, paid nothing", ~d["renewal"] & ~d["paid_last"])):
        es = sum(d["per_person"][b][1][on] for b in benefits)
        rr = sum(d["per_person"][b][2][on] for b in benefits)
        own[name] = {"actual": int(on.sum()), "model": float(es.mean()) if on.any() else None,
                     "realised": float(rr.mean()) if on.any() else None,
                     "A/E": float(rr.sum() / es.sum()) if es.sum() else None,
                     "cost_eff": float((rr.sum() - es.sum()) / len(on))}
    return {"by_benefit": out, "by_enrolment": split, "by_own_claims": own}


def by_factor(d: dict, factors) -> pd.DataFrame:
    """Per value of each factor (the cells grouped): policies predicted / actual, the
    contribution to R - P of the mix ((a/A - w/W) E), of the steps and of the cost per
    cell ((S - a E) / A and (R - S) / A), and the cell A/E R / S."""
    rows = d["rows"]
    W, A = rows["w"].sum(), rows["a"].sum()
    t = rows.assign(mix=(rows["a"] / A - rows["w"] / W) * rows["E"],
                    step=(rows["S"] - rows["a"] * rows["E"]) / A,
                    cost=(rows["R"] - rows["S"]) / A, wE=rows["w"] * rows["E"],
                    aE=rows["a"] * rows["E"])
    out = []
    for f in factors:
        g = t.groupby(f, observed=True)[["w", "a", "mix", "step", "cost", "S", "R", "wE"]].sum()
        for v, x in g.iterrows():
            out.append({"factor": f, "value": str(v), "pred": x["w"], "actual": x["a"],
                        "priced_per_pol": x["wE"] / x["w"] if x["w"] else np.nan,
                        "realised_per_pol": x["R"] / x["a"] if x["a"] else np.nan,
                        "A/E cell": x["R"] / x["S"] if x["S"] else np.nan,
                        "mix": x["mix"], "steps": x["step"], "cost": x["cost"]})
    return pd.DataFrame(out)


def top_cells(d: dict, factors, n: int = 15) -> pd.DataFrame:
    """The cells (grouped by ``factors``) with the largest cost-per-cell contribution."""
    rows = d["rows"]
    A = rows["a"].sum()
    g = rows.groupby(list(factors), observed=True)[["w", "a", "S", "R"]].sum()
    g["cost"] = (g["R"] - g["S"]) / A
    g["A/E"] = g["R"] / g["S"]
    g["model_per_pol"] = g["S"] / g["a"]
    g["realised_per_pol"] = g["R"] / g["a"]
    return g.reindex(g["cost"].abs().sort_values(ascending=False).index).head(n)


def backtest_row(figures: dict, real: pd.DataFrame, benefits) -> dict:
    """The backtest's figures of the year (as ``backtest.json`` has them): priced and
    realised per policy, A/E, policies, the prediction interval and whether it covers."""
    from puhui.pricing.backtest import prediction_interval

    n = len(real)
    realised = float(real[list(benefits)].to_numpy().sum()) / n
    pure = figures["pure_premium"]["total"]
    iv = prediction_interval(pure, figures["pure_premium_interval"],
                             figures.get("process_sd_per_policy"), n)
    iv["covers"] = iv["lower"] is not None and iv["lower"] <= realised <= iv["upper"]
    return {"priced": pure, "realised": realised, "ae": realised / pure,
            "policies_predicted": figures["policies"], "policies_actual": n,
            "parameter_interval": figures["pure_premium_interval"], "interval": iv,
            "process_sd_per_policy": figures.get("process_sd_per_policy"),
            "balance": figures.get("balance"),
            "priced_by_benefit": figures["pure_premium"],
            "realised_by_benefit": {b: float(real[b].sum()) / n for b in benefits}}


def with_cost_factor(factor: str) -> None:
    """An experiment, not the shipped price: let the cost models choose ``factor`` too
    (a person-year column of the rating frame, e.g. ``preexisting_seen``, the product's
    pre-existing rule by the look-back for everyone), by the same rule as the rating
    factors (each level with 30 events)."""
    import puhui.pricing.premium as premium
    from puhui.pricing import benefit_cost as bc

    candidates, choose = bc.BenefitCostModel.candidates, bc.choose_factors

    def cand(self, frame):
        c = candidates(self, frame)
        return c + (factor,) if self.factors is None and factor in frame.columns else c

    def chosen(frame, count, candidates=None, min_level_events=30):
        return choose(frame, count, (*bc.RATING_FACTORS, factor) if candidates is None
                      else candidates, min_level_events)

    bc.BenefitCostModel.candidates = cand
    bc.choose_factors = chosen
    premium.CELL_FACTORS = premium.CELL_FACTORS + (factor,)


def main() -> None:
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions
    from puhui.products.model import load_product, product_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--year", type=int, default=None, help="default: the last data year")
    ap.add_argument("--product", default="huhuibao-2025")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the tables here too")
    ap.add_argument("--cost-factor", default=None,
                    help="experiment: let the cost models choose this factor too "
                         "(e.g. preexisting_seen)")
    ap.add_argument("--prevalent", default=None,
                    help="[launch_year] prevalent for this run (flag_0, flag_1, left_out, "
                         "enrolled); default: pricing.toml's")
    ap.add_argument("--balance-enrolled", action="store_true",
                    help="experiment: [balance] enrolled = true for this run")
    a = ap.parse_args()
    if a.cost_factor:
        with_cost_factor(a.cost_factor)
    product = load_product(product_path(a.product))
    assumptions, _ = load_assumptions(None)
    if a.prevalent:
        assumptions = {**assumptions, "launch_year": {"prevalent": a.prevalent}}
    if a.balance_enrolled:
        assumptions = {**assumptions, "balance": {**assumptions["balance"], "enrolled": True}}
    data = load_for_pricing(Path(a.data), product, assumptions)
    from puhui.pricing.backtest import data_years

    year = a.year or data_years(data)[-1]
    p = priced_cells(product, data, year, assumptions, a.seed)
    real = realised_rows(product, data, year)
    del data
    d = decompose(p, real)
    s, row, f = show(year, p, real, d)
    if p["figures"].get("launch_year_flags"):
        print("\nLaunch-year flags (the diagnosed non-enrolled split by the prevalent share):",
              {k: v for k, v in p["figures"]["launch_year_flags"].items() if k != "note"})
    if a.json:
        Path(a.json).write_text(json.dumps({
            "year": year, "backtest_row": row, "summary": s, "outside": d["outside"],
            "launch_year_flags": p["figures"].get("launch_year_flags"),
            "by_factor": f.to_dict("records"),
            "rows": d["rows"].astype({c: str for c in p["cells"].columns}).to_dict("records")},
            indent=1, default=float) + "\n")


def show(year: int, p: dict, real: pd.DataFrame, d: dict) -> tuple:
    """Print the tables; returns (summary, backtest row, by-factor table)."""
    s = summary(d)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    row = backtest_row(p["figures"], real, d["benefits"])
    print(f"{year} priced from the years before: pure premium {row['priced']}"
          f" (cells give {p['cell_check']:.2f}); realised {row['realised']:.2f} (A/E "
          f"{row['ae']:.4f}); policies predicted {row['policies_predicted']:,}, actual "
          f"{len(real):,}, of which {d['outside']['policies']:,} outside the priced people "
          f"(paid {d['outside']['paid_per_policy']} per policy)")
    print(f"parameter interval {row['parameter_interval']}; prediction interval "
          f"{row['interval']['lower']} to {row['interval']['upper']} "
          f"({'covers' if row['interval']['covers'] else 'misses'}); balance: "
          + "; ".join(f"{g} Z {b['Z']} factor {b['factor']} level_sd {b.get('level_sd')}"
                      for g, b in (p["figures"].get("balance") or {}).items()))
    t = pd.DataFrame(s["by_benefit"]).T
    t["mix"], t["steps"], t["cost"] = (t["mix"] - t["priced"], t["steps"] - t["mix"],
                                       t["realised"] - t["steps"])
    t = t.rename(columns={"steps": "steps_eff", "mix": "mix_eff", "cost": "cost_eff"})
    t["A/E"] = t["realised"] / t["priced"]
    print("\nBy benefit (yuan per policy; R - P = mix_eff + steps_eff + cost_eff):")
    print(t[["priced", "realised", "A/E", "mix_eff", "steps_eff", "cost_eff"]].round(3))
    print("\nRenewal against new entrant (predicted policies from the enrolment model; "
          "'priced' and 'mix' at the cells' costs, which carry renewals' and entrants' "
          "claim-free shares together; 'steps' puts each at its own deductible):")
    print(pd.DataFrame(s["by_enrolment"]).T.round(2))
    print("\nBy the person's own as-if payout in the last data year (the cells see a stay, "
          "not this; cost_eff in yuan per policy of the whole book):")
    print(pd.DataFrame(s["by_own_claims"]).T.round(3))
    f = by_factor(d, FACTORS_SHOWN)
    print("\nBy factor (contributions in yuan per policy of the whole book):")
    print(f.round(3).to_string(index=False))
    print("\nCells (age band x pre-existing x prior stay x insutype) with the largest "
          "cost-per-cell contribution:")
    print(top_cells(d, ("age_band", "preexisting", "prior_stay", "insutype")).round(3))
    return s, row, f


if __name__ == "__main__":
    main()
