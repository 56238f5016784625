"""The benefit calculator, one settlement at a time: the clear statement of what
:func:`puhui.benefits.calculator.adjudicate` computes, its test oracle, and the path of
a direct payout answered at settlement time.

The arithmetic is :func:`puhui.tiers.reference.settle_one` (plain Python, no shared
code with the vectorised engine); policy matching and renewals are simple loops here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from puhui.benefits.calculator import Decisions
from puhui.benefits.quantities import LineMatcher, settlement_quantities_one
from puhui.benefits.reasons import NUMBER, decision_reason, lines_not_given
from puhui.products.model import Product
from puhui.tiers.reference import settle_one


def _day(x) -> dt.date:
    return pd.Timestamp(x).date()


def adjudicate_one(product: Product, settlement: dict[str, Any], lines: list[dict],
                   policy: dict[str, Any] | None, state: dict[str, int], *,
                   matcher: LineMatcher, renewal: bool = False,
                   has_any_policy: bool = False, lines_given: bool = True
                   ) -> dict[str, dict[str, int]]:
    """Decide one settlement. ``policy`` is the person's policy covering the date (or
    None); ``state`` holds that policy's accumulators and is updated in place;
    ``lines_given`` False: no lines were given at all (line benefits say so).

    Returns per benefit: eligible, deductible, ratio_bp, payout, reason (number).
    """
    day = _day(settlement["setl_time"])
    block = 0
    if policy is None:
        block = NUMBER["OUTSIDE_POLICY"] if has_any_policy else NUMBER["NO_POLICY"]
    elif str(settlement["insutype"]) not in product.insutypes:
        block = NUMBER["NOT_ELIGIBLE"]
    elif product.waiting_period_days > 0 and not renewal and \
            (day - _day(policy["start_date"])).days < product.waiting_period_days:
        block = NUMBER["WAITING_PERIOD"]
    q = settlement_quantities_one(settlement)
    elig_l, excl_l = matcher.line_quantities_one(settlement["setl_time"], lines)
    q.update(elig_l)
    if block:
        q = dict.fromkeys(q, 0)
    attrs = {
        "preexisting": bool(policy["preexisting"]) if policy is not None else False,
        "claim_free_years": int(policy.get("claim_free_years", 0) or 0) if policy is not None else 0,
        "med_type": str(settlement["med_type"]),
        "hosp_lv": int(settlement["hosp_lv"]),
    }
    res = settle_one(product.layers, q, attrs, state if not block else {})
    out = {}
    for b in product.benefits:
        r = res[b.id]
        applies = b.layer.applies is None or b.layer.applies.holds(attrs)
        excluded = 0 if block else excl_l.get(b.quantity, 0)
        reason = decision_reason(block, applies, r["base"], excluded, r["deductible"],
                                 r["uncapped"], r["paid"])
        if not lines_given and b.lines:
            reason = int(lines_not_given(np.array([reason]), np.array([applies]))[0])
        out[b.id] = {"eligible": r["base"], "deductible": r["deductible"],
                     "ratio_bp": r["ratio_bp"] if applies and not block else 0,
                     "payout": r["paid"], "reason": int(reason)}
    return out


def adjudicate_sequence(product: Product, settlements: pd.DataFrame, policies: pd.DataFrame,
                        lines: pd.DataFrame | None = None, *,
                        matcher: LineMatcher | None = None) -> Decisions:
    """Run :func:`adjudicate_one` over tables, settlement by settlement, in the same
    processing order as the vectorised calculator (per person by time, ties in input
    order); returns the same :class:`Decisions`, rows in input order."""
    matcher = matcher or LineMatcher(product)
    # processing order: per person, by time, ties in input order; results in input order
    records = settlements.reset_index(drop=True).to_dict("records")
    order = sorted(range(len(records)),
                   key=lambda i: (str(records[i]["psn_no"]), pd.Timestamp(records[i]["setl_time"]), i))
    pols: dict[str, list[dict]] = {}
    for p in policies.to_dict("records"):
        pols.setdefault(str(p["psn_no"]), []).append(p)
    ends = {(str(p["psn_no"]), _day(p["end_date"]) + dt.timedelta(days=1))
            for p in policies.to_dict("records")}
    by_setl: dict[str, list[dict]] = {}
    if lines is not None:
        for ln in lines.to_dict("records"):
            by_setl.setdefault(str(ln["setl_id"]), []).append(ln)
    states: dict[str, dict[str, int]] = {}
    benefits = [b.id for b in product.benefits]
    cols = {k: {b: [] for b in benefits} for k in ("eligible", "deductible", "ratio_bp",
                                                  "payout", "reason")}
    policy_no: list = [None] * len(records)
    for b in benefits:
        for k in cols:
            cols[k][b] = [0] * len(records)
    for i in order:
        s = records[i]
        mine = pols.get(str(s["psn_no"]), [])
        day = _day(s["setl_time"])
        cover = [p for p in mine if _day(p["start_date"]) <= day <= _day(p["end_date"])]
        # the latest-starting policy covering the date, as the vectorised matcher picks
        p = max(cover, key=lambda x: _day(x["start_date"])) if cover else None
        renewal = p is not None and (str(p["psn_no"]), _day(p["start_date"])) in ends
        state = states.setdefault(str(p["policy_no"]), {}) if p is not None else {}
        res = adjudicate_one(product, s, by_setl.get(str(s["setl_id"]), []), p, state,
                             matcher=matcher, renewal=renewal, has_any_policy=bool(mine),
                             lines_given=lines is not None)
        policy_no[i] = p["policy_no"] if p is not None else None
        for b in benefits:
            for k in cols:
                cols[k][b][i] = res[b][k]
    arr = {k: {b: np.array(v[b], dtype="int64" if k != "reason" else "int8")
               for b in benefits} for k, v in cols.items()}
    return Decisions(
        settlements=pd.DataFrame({"setl_id": settlements["setl_id"].to_numpy(),
                                  "psn_no": settlements["psn_no"].to_numpy(),
                                  "setl_time": settlements["setl_time"].to_numpy(),
                                  "policy_no": np.array(policy_no, dtype=object)}),
        benefits=benefits, eligible=arr["eligible"], deductible=arr["deductible"],
        ratio_bp=arr["ratio_bp"], payout=arr["payout"], reason=arr["reason"])
