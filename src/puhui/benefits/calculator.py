"""The benefit calculator, vectorised: a product's benefits over whole tables.

Given a product, the settlements (engine types, money in fen), the policies to apply
and the settlement lines, :func:`adjudicate` returns, per settlement and benefit, the
eligible amount, the deductible applied, the ratio, the payout and a stable reason
code (:mod:`puhui.benefits.reasons`). It runs the product's layers with
:func:`puhui.tiers.waterfall.run_waterfall`, the engine of the basic tier, and agrees to
the fen with the per-settlement face (:mod:`puhui.benefits.reference`).

Each settlement row is an effective settlement: reversals and the settlements they
reverse are the caller's to remove (claims re-adjudicates; pricing drops both).
Running accumulators are per policy: a policy is one person's policy year. Settlements
are processed per person in time order, ties in input order; results come back in
input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.benefits.quantities import LineMatcher, settlement_quantities
from puhui.benefits.reasons import (CODES, NUMBER, decision_reasons, lines_not_given,
                                   status_of)
from puhui.products.model import Product
from puhui.tiers.waterfall import run_waterfall

DAY = np.timedelta64(1, "D")


@dataclass
class Decisions:
    """Per settlement (rows of :attr:`settlements`, in processing order) and benefit."""

    settlements: pd.DataFrame        # setl_id, psn_no, setl_time, policy_no (None if none)
    benefits: list[str]
    eligible: dict[str, np.ndarray]
    deductible: dict[str, np.ndarray]
    ratio_bp: dict[str, np.ndarray]
    payout: dict[str, np.ndarray]
    reason: dict[str, np.ndarray]    # reason numbers (int8)

    def total_payout(self) -> np.ndarray:
        return sum(self.payout[b] for b in self.benefits)

    def long(self) -> pd.DataFrame:
        """One row per settlement and benefit (the explanation-of-benefit shape)."""
        n, k = len(self.settlements), len(self.benefits)
        st = self.settlements

        def stacked(values: dict) -> np.ndarray:      # benefit after benefit
            return np.concatenate([values[b] for b in self.benefits])

        r = stacked(self.reason)
        return pd.DataFrame({
            "setl_id": np.tile(st["setl_id"].to_numpy(), k),
            "psn_no": np.tile(st["psn_no"].to_numpy(), k),
            "policy_no": np.tile(st["policy_no"].to_numpy(), k),
            "benefit": np.repeat(np.array(self.benefits, dtype=object), n),
            "eligible_amt": stacked(self.eligible), "deductible_amt": stacked(self.deductible),
            "ratio_bp": stacked(self.ratio_bp), "payout_amt": stacked(self.payout),
            "status": status_of(r), "reason": CODES[r - 1]})

    def by_policy(self) -> pd.DataFrame:
        """Per policy and benefit b: ``eligible_b`` and ``payout_b`` (fen), ``claims_b``
        (settlements paid) and ``events_b`` (settlements with an eligible amount)."""
        pol = self.settlements["policy_no"]
        has = pol.notna().to_numpy()
        cols = {}
        for b in self.benefits:
            cols[f"eligible_{b}"] = self.eligible[b][has]
            cols[f"payout_{b}"] = self.payout[b][has]
            cols[f"claims_{b}"] = (self.payout[b][has] > 0).astype("int64")
            cols[f"events_{b}"] = (self.eligible[b][has] > 0).astype("int64")
        return pd.DataFrame(cols).groupby(pol[has].to_numpy()).sum()


def person_codes(policies: pd.DataFrame, st: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer person codes for policies and settlements (one hash of both columns)."""
    both = np.concatenate([policies["psn_no"].to_numpy(dtype=object),
                           st["psn_no"].to_numpy(dtype=object)])
    codes, _ = pd.factorize(both)
    return codes[:len(policies)].astype("int64"), codes[len(policies):].astype("int64")


def match_policies(st: pd.DataFrame, policies: pd.DataFrame,
                   codes: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For each settlement: the row of the policy covering its date (-1 if none; the
    latest-starting one if several), and whether the person has any of these policies."""
    if len(policies) == 0:
        return np.full(len(st), -1, dtype="int64"), np.zeros(len(st), dtype=bool)
    pc, sc = codes if codes is not None else person_codes(policies, st)
    start = policies["start_date"].to_numpy().astype("datetime64[D]").astype("int64")
    end = policies["end_date"].to_numpy().astype("datetime64[D]").astype("int64")
    day = st["setl_time"].to_numpy().astype("datetime64[D]").astype("int64")
    shift = 1 << 22                       # days since 1970 fit in 22 bits until 13,000 AD
    key_p = pc * shift + start
    order = np.argsort(key_p, kind="stable")
    sk = key_p[order]
    j = np.searchsorted(sk, sc * shift + day, side="right") - 1
    cand = order[np.maximum(j, 0)]
    ok = (j >= 0) & (pc[cand] == sc) & (day <= end[cand])
    row = np.where(ok, cand, -1)
    has_any = np.isin(sc, pc)
    return row, has_any


def renewed_policy(policies: pd.DataFrame) -> np.ndarray:
    """For each policy, the position of the policy it renews (the same person's, any
    product, ending the day before it starts), or -1."""
    # (person, day) as one integer: person code x 2^21 + days since 1970 shifted by
    # 2^20 (dates within 2,800 years of 1970)
    ps = policies["psn_no"]
    # a categorical's codes number its people already (pricing's policies: millions of
    # rows, one string made a row by astype(str) was most of this function's time)
    person = (ps.cat.codes.to_numpy() if isinstance(ps.dtype, pd.CategoricalDtype)
              else pd.factorize(ps.astype(str).to_numpy())[0]).astype("int64")
    start = policies["start_date"].to_numpy().astype("datetime64[D]").astype("int64")
    end = policies["end_date"].to_numpy().astype("datetime64[D]").astype("int64")
    ends = pd.Series(np.arange(len(policies)), index=(person << 21) + end + 1 + (1 << 20))
    ends = ends[~ends.index.duplicated(keep="first")]
    prev = ends.reindex((person << 21) + start + (1 << 20)).to_numpy()
    return np.where(np.isnan(prev), -1, prev).astype("int64")


def renewals(policies: pd.DataFrame) -> np.ndarray:
    """True for a policy that continues one of the same person ending the day before."""
    return renewed_policy(policies) >= 0


def adjudicate(product: Product, settlements: pd.DataFrame, policies: pd.DataFrame,
               lines: pd.DataFrame | None = None, *, matcher: LineMatcher | None = None,
               priors: pd.DataFrame | None = None,
               lines_given: np.ndarray | None = None) -> Decisions:
    """Apply a product's benefits to settlements under the given policies.

    Parameters
    ----------
    settlements : effective settlements (no reversals), engine types
    policies : the policies to apply (``claim_free_years`` optional, default 0)
    lines : settlement lines (for line benefits); ``None``: not given at all, and a line
        benefit's decisions that would read NOT_COVERED read LINES_NOT_GIVEN (an empty
        table says there are none: NOT_COVERED)
    priors : accumulators already used, columns ``policy_no``, ``accumulator``, ``used``
        (fen), for example from the ledger
    lines_given : per settlement (input order), whether ``lines`` holds its lines (a
        batch on data without lines decides with the lines the ledger stored, for the
        settlements it stored); default: all when ``lines`` is a table, none when None
    """
    matcher = matcher or LineMatcher(product)
    pol = policies.reset_index(drop=True)
    pc, sc = person_codes(pol, settlements)
    n = len(settlements)
    order = np.lexsort((np.arange(n), settlements["setl_time"].to_numpy(), sc))
    inv = np.empty(n, dtype="int64")
    inv[order] = np.arange(n)
    st = settlements.iloc[order].reset_index(drop=True)
    prow, has_any = match_policies(st, pol, (pc, sc[order]))
    matched = prow >= 0
    block = np.where(matched, 0, np.where(has_any, NUMBER["OUTSIDE_POLICY"],
                                          NUMBER["NO_POLICY"])).astype("int8")
    safe = np.maximum(prow, 0)
    insutype = st["insutype"].astype(str).to_numpy()
    block[matched & ~np.isin(insutype, list(product.insutypes))] = NUMBER["NOT_ELIGIBLE"]
    if product.waiting_period_days > 0 and len(pol):    # no policies: nothing matched
        # a ``renewal`` column where the caller knows policies this table lacks (the
        # person's policy of last year's product id); else renewals within the table
        new = ~(pol["renewal"].to_numpy(dtype=bool) if "renewal" in pol.columns
                else renewals(pol))
        start = pol["start_date"].to_numpy().astype("datetime64[D]")[safe]
        day = st["setl_time"].to_numpy().astype("datetime64[D]")
        waiting = matched & new[safe] & (day < start + product.waiting_period_days * DAY)
        block[(block == 0) & waiting] = NUMBER["WAITING_PERIOD"]

    given = (np.full(n, lines is not None) if lines_given is None
             else np.asarray(lines_given, dtype=bool)[order])
    q = settlement_quantities(st)
    elig_lines, excl_lines = matcher.line_quantities(st, lines)
    q.update(elig_lines)
    go = block == 0
    attrs = {
        "preexisting": _from_policy(pol, "preexisting", prow, False, bool),
        "claim_free_years": _from_policy(pol, "claim_free_years", prow, 0, "int64"),
        "med_type": np.asarray(st["med_type"].astype(str).to_numpy(), dtype=object),
        "hosp_lv": st["hosp_lv"].to_numpy(dtype="int64"),
    }
    # Only settlements a policy covers enter the layers; periods (policies) are numbered
    # in processing order, so each accumulator's items are already contiguous.
    everyone = bool(go.all())
    rows = np.arange(n) if everyone else np.flatnonzero(go)
    sel = (lambda v: v) if everyone else (lambda v: v[rows])  # no copies when all are in
    period = pd.factorize(sel(prow))[0].astype("int64")
    prior_arrays = _priors(priors, pol, sel(prow)) if priors is not None else None
    sub = run_waterfall(product.layers, {k: sel(v) for k, v in q.items()},
                        {k: sel(v) for k, v in attrs.items()}, period, prior_arrays,
                        keep={"base", "deductible", "ratio_bp", "uncapped", "paid"})
    res = sub if everyone else {lid: _spread(o, rows, n) for lid, o in sub.items()}

    # results back in input order
    out = Decisions(
        settlements=pd.DataFrame({
            "setl_id": settlements["setl_id"].to_numpy(),
            "psn_no": settlements["psn_no"].to_numpy(),
            "setl_time": settlements["setl_time"].to_numpy(),
            "policy_no": _from_policy(pol, "policy_no", prow, None, object)[inv]}),
        benefits=[b.id for b in product.benefits], eligible={}, deductible={},
        ratio_bp={}, payout={}, reason={})
    for b in product.benefits:
        r = res[b.id]
        applies = b.layer.applies.mask(attrs, n) if b.layer.applies else np.ones(n, bool)
        excluded = np.where(go, excl_lines.get(b.quantity, np.zeros(n, "int64")), 0)
        out.eligible[b.id] = r.base[inv]
        out.deductible[b.id] = r.deductible[inv]
        out.ratio_bp[b.id] = np.where(applies & go, r.ratio_bp, 0)[inv]
        out.payout[b.id] = r.paid[inv]
        reason = decision_reasons(block, applies, r.base, excluded, r.deductible,
                                  r.uncapped, r.paid)
        if b.lines and not given.all():      # not given: say so, not NOT_COVERED
            reason = lines_not_given(reason, applies & ~given)
        out.reason[b.id] = reason[inv]
    return out


def _spread(o, rows: np.ndarray, n: int):
    """A layer outcome on ``rows`` as full-length arrays (zero elsewhere)."""
    from puhui.tiers.layers import LayerOutcome

    def full(a):
        if a is None:
            return None
        out = np.zeros(n, dtype=a.dtype)
        out[rows] = a
        return out

    return LayerOutcome(base=full(o.base), deductible=full(o.deductible),
                        ratio_bp=full(o.ratio_bp), uncapped=full(o.uncapped),
                        paid=full(o.paid), covered=full(o.covered), overflow=full(o.overflow))


def _from_policy(pol: pd.DataFrame, col: str, prow: np.ndarray, default, dtype) -> np.ndarray:
    """A policy column for each settlement (``default`` where no policy matched or the
    column is absent)."""
    out = np.full(len(prow), default, dtype=dtype)
    if col in pol.columns and len(pol):
        ok = prow >= 0
        out[ok] = pol[col].to_numpy(dtype=dtype)[prow[ok]]
    return out


def _priors(priors: pd.DataFrame, pol: pd.DataFrame, prow: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    pos = pd.Index(pol["policy_no"].astype(str))
    for acc, grp in priors.groupby("accumulator"):
        per_policy = np.zeros(len(pol), "int64")
        idx = pos.get_indexer(grp["policy_no"].astype(str))
        ok = idx >= 0
        per_policy[idx[ok]] = grp["used"].to_numpy(dtype="int64")[ok]
        out[acc] = np.where(prow >= 0, per_policy[np.maximum(prow, 0)], 0)
    return out
