"""What-if re-pricing without refitting, and the budget impact of class-C drugs.

``puhui price`` keeps what it fitted in ``OUT/models.pkl`` (:class:`PricingState`); a
what-if changes a benefit's deductible, ratio, pre-existing ratio or limit, or takes
drugs off a line benefit's list, and recomputes the annual benefit per cell from the
same frequency and severity models and the same enrolled mix:

- terms: the compound distribution per cell is recomputed with the new terms (exact
  within the models);
- a drug taken off the list: the benefit's claims lose that drug's share, to first
  order: frequency x (1 - share of events), severity x (1 - share of amounts) /
  (1 - share of events), with the shares from the experience's list lines.

The budget impact of adding class-C drugs (:func:`class_c_budget_impact`) has no
experience to fit (the class-C list starts in 2026), so it is built from the data's
diagnoses: for each drug, policyholders expected next year with a main diagnosis among
the drug's indications, times an uptake rate (an assumption), times the benefit one
year of the drug's price pays under the benefit that would pay it (a CAR-T under the
product's CAR-T benefit, with its limit; the other drugs under the special-drug
benefit: deductible, ratio, pre-existing ratio, limit).

``models.pkl`` is a Python pickle: load only files your own runs wrote.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.pricing.benefit_cost import BenefitCostModel, GroupTerms, step_moments
from puhui.pricing.external import blend, external_moments

STATE_FILE = "models.pkl"


@dataclass
class PricingState:
    """What a what-if needs from a pricing run."""

    product_id: str
    groups: list[GroupTerms]
    models: dict[str, BenefitCostModel]
    cells: pd.DataFrame
    weights: np.ndarray
    severity_trend: float
    target_loss_ratio: float
    policies: int
    eligible_shares: dict[str, float]               # benefit -> share of its group's eligible
    drug_shares: dict[str, pd.DataFrame] = field(default_factory=dict)
    cell_factors: np.ndarray | None = None          # credibility factor per cell
    step_shares: dict[str, np.ndarray] = field(default_factory=dict)  # claim-free steps
    # benefit -> share of its pure premium refunded under drug agreements and caps,
    # held fixed by a what-if (puhui.pricing.drug_agreements)
    refund_shares: dict[str, float] = field(default_factory=dict)
    # group id -> (Z, ExternalAssumption): its E[B] per cell is Z x the models' + (1 - Z)
    # x the assumption's under the terms priced (puhui.pricing.external)
    external: dict = field(default_factory=dict)

    def save(self, out: Path) -> Path:
        p = Path(out) / STATE_FILE
        with open(p, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return p

    @staticmethod
    def load(out: Path) -> "PricingState":
        p = Path(out) / STATE_FILE
        if not p.is_file():
            raise InputError(f"{p}: not found; run `puhui price ... --out {out}` first")
        try:
            with open(p, "rb") as fh:
                state = pickle.load(fh)
        except Exception as exc:      # noqa: BLE001 - truncated, corrupt, another version
            raise InputError(f"{p}: not a readable pricing state ({type(exc).__name__}); "
                             f"run `puhui price ... --out {out}` again") from None
        if not isinstance(state, PricingState):
            raise InputError(f"{p}: not a pricing state; run `puhui price ... --out {out}` "
                             f"again")
        return state


def drug_shares(product, data, matcher=None) -> dict[str, pd.DataFrame]:
    """For each line benefit: per listed drug, its share of the benefit's events
    (settlements with a line of it) and of its amounts, from the effective settlements'
    lines."""
    from puhui.benefits.quantities import LineMatcher
    from puhui.pricing.experience import effective_mask

    st, lines = data.settlements, data.lines
    if lines is None:            # settlement_lines.parquet is optional (docs/data-schema.md)
        return {}
    matcher = matcher or LineMatcher(product)
    if "refund_of" in st.columns:        # (pricing's kept data has no reversals left)
        lines = lines[lines["setl_id"].isin(st["setl_id"][effective_mask(st)])]
    hc = lines["hilist_code"]
    out = {}
    for b in product.benefits:
        if not b.lines or b.quantity not in matcher.specs:
            continue
        codes = set(matcher.specs[b.quantity].codes)
        if isinstance(hc.dtype, pd.CategoricalDtype):     # each distinct code tested once
            on = np.asarray(hc.cat.categories.astype(str).isin(codes))
            at = hc.cat.codes.to_numpy()
            ln = lines[(at >= 0) & on[np.maximum(at, 0)]] if len(on) else lines.iloc[:0]
        else:
            ln = lines[hc.astype(str).isin(codes)]
        if ln.empty:
            continue
        by = ln.groupby(ln["hilist_code"].astype(str)).agg(
            events=("setl_id", "nunique"), amount=("amount", "sum"))
        n_events = ln["setl_id"].nunique()
        out[b.id] = pd.DataFrame({"code": by.index,
                                  "event_share": by["events"].to_numpy() / n_events,
                                  "amount_share": by["amount"].to_numpy() / by["amount"].sum()})
    return out


def no_lines_note(product, data) -> str | None:
    """The note for ``pricing.json`` when the data has no settlement lines (the contract
    makes ``settlement_lines.parquet`` optional) and the product has benefits that pay on
    lines: those benefits have no lines to price on, so their experience is nil."""
    if data.lines is not None:
        return None
    on_lines = [b.id for b in product.benefits if b.lines]
    if not on_lines:
        return None
    return (f"{', '.join(on_lines)}: line benefits have no lines to price on (the data has "
            f"no settlement_lines.parquet), so the data's experience of them is nil; "
            f"their price rests on an external assumption where one is given, else 0")


def _group_of(state: PricingState, benefit: str) -> GroupTerms:
    for g in state.groups:
        if benefit in g.benefits:
            return g
    raise InputError(f"benefit {benefit!r} is not in {state.product_id} "
                     f"({', '.join(b for g in state.groups for b in g.benefits)})")


def pure_premiums(state: PricingState, groups: list[GroupTerms] | None = None,
                  factors: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Pure premium per benefit (yuan per policy) under ``groups`` (default the priced
    terms) and optional (frequency, severity) factors per group."""
    w = state.weights
    out = {}
    for g in groups or state.groups:
        f, s = (factors or {}).get(g.id, (1.0, 1.0))
        m1, _ = step_moments(state.models[g.id], state.cells, g, state.step_shares.get(g.id),
                             frequency_factor=f, severity_factor=state.severity_trend * s)
        ext = getattr(state, "external", {}).get(g.id)      # (absent in older states)
        if ext is not None:
            z, assumption = ext
            m1 = blend(z, m1, external_moments(assumption, state.cells, g)[0])
        if state.cell_factors is not None:
            m1 = m1 * state.cell_factors
        cost = float(np.dot(w, m1) / w.sum())
        refunds = getattr(state, "refund_shares", {})      # (absent in older states)
        for b in g.benefits:
            out[b] = (cost * state.eligible_shares.get(b, 1.0 / len(g.benefits))
                      * (1.0 - refunds.get(b, 0.0)))
    return out


def reprice(state: PricingState, benefit: str, deductible: float | None = None,
            ratio: float | None = None, preexisting_ratio: float | None = None,
            limit: float | None = None, drop_drugs: tuple[str, ...] = ()) -> pd.DataFrame:
    """Pure and gross premium per benefit, as priced and with the change. A new
    deductible keeps the product's claim-free reductions (12,000 with steps 11,000 and
    10,000, moved to 20,000, has steps 19,000 and 18,000)."""
    g = _group_of(state, benefit)
    changes = {k: v for k, v in (("deductible", deductible), ("ratio", ratio),
                                 ("preexisting_ratio", preexisting_ratio), ("limit", limit))
               if v is not None}
    if deductible is not None and g.claim_free_steps:
        changes["claim_free_steps"] = tuple((y, max(float(deductible) - (g.deductible - d), 0.0))
                                            for y, d in g.claim_free_steps)
    new_g = dataclasses.replace(g, **changes)
    groups = [new_g if x.id == g.id else x for x in state.groups]
    factors = {}
    if drop_drugs:
        shares = state.drug_shares.get(benefit)
        if shares is None:
            raise InputError(f"benefit {benefit!r} pays no list lines seen in the data; "
                             f"--drop-drug applies to a line benefit such as special_drugs")
        unknown = set(drop_drugs) - set(shares["code"])
        if unknown:
            raise InputError(f"drug(s) {', '.join(sorted(unknown))} have no lines under "
                             f"{benefit!r} in the data; known: {', '.join(shares['code'])}")
        gone = shares[shares["code"].isin(drop_drugs)]
        s_ev, s_amt = float(gone["event_share"].sum()), float(gone["amount_share"].sum())
        f = max(1.0 - s_ev, 0.0)
        factors[g.id] = (f, (1.0 - s_amt) / f if f > 0 else 0.0)
    before = pure_premiums(state)
    # only the changed group is priced again: the others' figures are the same numbers
    # (the same models, cells and terms), and each group costs seconds of FFTs
    after = {**before, **pure_premiums(state, [new_g], factors)}
    rows = [{"benefit": b, "pure_before": before[b], "pure_after": after[b]} for b in before]
    t = pd.DataFrame(rows)
    total = {"benefit": "total", "pure_before": t["pure_before"].sum(),
             "pure_after": t["pure_after"].sum()}
    t = pd.concat([t, pd.DataFrame([total])], ignore_index=True)
    t["gross_before"] = t["pure_before"] / state.target_loss_ratio
    t["gross_after"] = t["pure_after"] / state.target_loss_ratio
    return t


def paying_benefit(product, is_cart: bool, default: str = "special_drugs"):
    """The benefit of ``product`` that would pay a class-C drug: a CAR-T under the
    product's CAR-T benefit (one paying the lines a list selects as ``cart``, else one
    with id ``cart``), every other drug, and a CAR-T when the product has no CAR-T
    benefit, under ``default`` (the special-drug benefit); None when it has neither."""
    ids = {b.id: b for b in product.benefits}
    if is_cart:
        for b in product.benefits:
            if b.lines is not None and b.lines.select == "cart":
                return b
        if "cart" in ids:
            return ids["cart"]
    return ids.get(default)


def benefit_terms(benefit) -> tuple[float, float, float, float]:
    """(deductible, ratio, pre-existing ratio, limit) of a benefit in yuan, as priced
    (the first-year deductible; no limit: infinity)."""
    from puhui.pricing.benefit_cost import _amount

    ratio = float(benefit.raw["ratio"])
    return (_amount(benefit.raw, "deductible")[0], ratio,
            float(benefit.raw.get("preexisting_ratio", ratio)), _amount(benefit.raw, "limit")[0])


def class_c_budget_impact(product, data, frame: pd.DataFrame, cells: pd.DataFrame,
                          weights: np.ndarray, cell_factors, policies: int, uptake: float,
                          list_id: str = "class-c-2025", benefit: str = "special_drugs",
                          min_people: int = 10, cur_cell: np.ndarray | None = None) -> dict:
    """Budget impact of adding a class-C list to the product, each drug paid under the
    benefit that would pay it (:func:`paying_benefit`: a CAR-T under the CAR-T benefit,
    the others under ``benefit``, the special-drug one): per drug, expected users = sum
    over diagnosed people of (expected policies per person of their cell) x uptake /
    (drugs listed for the same indications); benefit per user = min(max(price -
    deductible, 0) x ratio, limit) with that benefit's terms (the pre-existing ratio for
    pre-existing people); per insured = sum of users x benefit / policies; total = per
    insured x policies (yuan).

    ``cur_cell``: the row of ``cells`` of each of ``frame``'s last-year rows, in order,
    when the caller has it (-1: none); else found by matching ``cell_factors``."""
    from puhui.drug_lists import load_lists
    from puhui.pricing.experience import effective_mask, person_ids, person_rows
    from puhui.pricing.external import payout_per_case

    lists = load_lists()
    if list_id not in lists:
        raise InputError(f"list {list_id!r} is not in actuarial/drugs/lists.toml")
    items = lists[list_id].items
    is_cart = (items["is_cart"].astype(str).str.strip().str.lower().isin(["true", "1"])
               if "is_cart" in items.columns else pd.Series(False, index=items.index))
    payers = [paying_benefit(product, bool(c), benefit) for c in is_cart]
    if all(p is None for p in payers):
        return {"note": f"{product.id} has no {benefit!r} benefit; no budget impact computed"}
    last = int(frame["year"].max())
    # the last year's settlements that stand: their person and diagnosis only (ten
    # million person-years have some 15 million settlements; none is copied whole)
    st = data.settlements
    on_st = effective_mask(st) & (st["setl_time"].dt.year == last).to_numpy()
    f = list(cell_factors)
    last_rows = (frame["year"] == last).to_numpy()
    if cur_cell is None:
        cur = frame.loc[last_rows, f]
        key = pd.MultiIndex.from_frame(cells[f]).get_indexer(pd.MultiIndex.from_frame(cur))
        del cur
    else:
        key = np.asarray(cur_cell)
        if len(key) != int(last_rows.sum()):
            raise ValueError("cur_cell must have one entry per last-year row of frame")
    ok = key >= 0
    # per person (by the position of the id in the person-years' psn_no categories):
    # expected policies of their cell per person, pre-existing flag, priced this year
    index = person_ids(frame)
    cur_who = person_rows(index, frame["psn_no"][last_rows])
    per_person = np.zeros(len(index))
    per_person[cur_who] = np.where(ok, (weights / cells["people"].to_numpy())[
        np.where(ok, key, 0).astype(int)], 0.0)
    pre = np.zeros(len(index), dtype=bool)
    pre[cur_who] = frame["preexisting"].to_numpy()[last_rows].astype(bool)
    priced = np.zeros(len(index), dtype=bool)
    priced[cur_who] = True
    from puhui.icd import matches_prefixes

    # each distinct diagnosis is tested once per drug, then spread to the settlements
    dise = st["dise_code"]
    if isinstance(dise.dtype, pd.CategoricalDtype):
        dx, dx_uniques = dise.cat.codes.to_numpy()[on_st], dise.cat.categories
    else:
        dx, dx_uniques = pd.factorize(dise[on_st].astype(object), use_na_sentinel=True)
    who = person_rows(index, st["psn_no"][on_st])
    rows = []
    # drugs with the same indications compete for the same patients: they share the uptake
    competitors = items["dise_codes"].astype(str).map(items["dise_codes"].astype(str).value_counts())
    for (_, it), n_comp, payer in zip(items.iterrows(), competitors, payers):
        codes = [c.strip() for c in str(it.get("dise_codes", "")).split(";") if c.strip()]
        on = matches_prefixes(dx_uniques, codes)
        hit = (dx >= 0) & on[np.maximum(dx, 0)] if len(on) else np.zeros(len(dx), bool)
        people = np.unique(who[hit & (who >= 0)])
        people = people[priced[people]]
        expected_holders = float(per_person[people].sum())
        users = expected_holders * uptake / n_comp
        price = float(it["price_yuan"])
        if payer is None:            # neither benefit in the product: not paid
            per_user = 0.0
        else:
            ded, ratio, pre_ratio, limit = benefit_terms(payer)
            r = np.where(pre[people], pre_ratio, ratio)
            per_user = float(np.mean(payout_per_case(price, ded, r, limit))) if len(people) else 0.0
        rows.append({"code": str(it["hilist_code"]), "name": str(it.get("name_zh", "")),
                     "paid_under": payer.id if payer is not None else "-",
                     "diagnosed_people": len(people) if len(people) >= min_people or
                     len(people) == 0 else f"<{min_people}",
                     "expected_users": users, "price": price,
                     "benefit_per_user": per_user, "cost": users * per_user})
    t = pd.DataFrame(rows)
    per_insured = float(t["cost"].sum() / policies) if policies else 0.0
    return {"list": list_id, "benefit": benefit,
            "benefits": sorted({p.id for p in payers if p is not None}),
            "uptake": uptake, "policies": policies,
            "pure_premium_per_insured": per_insured, "total": per_insured * policies,
            "drugs": t}
