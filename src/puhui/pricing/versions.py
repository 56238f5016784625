"""Versions of one product priced jointly (docs/pricing.md, "Versions priced jointly").

Huhuibao 2025 is sold as a standard, a community mutual-aid and a new-citizen version:
each its own product file, and a person takes at most one of them (or none). Priced
one at a time, each version would be priced for everyone who enrols in the line; sold
together, a cheaper version draws the price-sensitive (the healthy) away from a dearer
one, so each version's cost depends on every version's price. Here:

1. each version runs the existing build-up (:mod:`puhui.pricing.premium`) up to its
   cost per cell: the same benefit engine and models on the same fund data, the
   version's own terms;
2. the people of the last data year are put in **joint cells**: the same pricing cell
   in every version and the same set of versions they may take (scheme, ages and the
   version's ``eligibility.persons_column``);
3. a **multinomial choice** per joint cell k among the versions V_k it may take and
   none::

       P(v | k) = o_vk (P_v / R_v)^beta_k / (1 + sum_{w in V_k} o_wk (P_w / R_w)^beta_k)

   ``beta_k`` the assumptions' price response (healthy or other), ``R_v`` the premium
   the data's policies of v were sold at (its filed premium where the data has none);
   the odds ``o_vk`` make the status quo what the data show: the line's take-up q_k
   (the enrolment model's expected policies per person of the cell) split by the
   versions' shares of the cell's last-year policies (:func:`status_quo_odds`);
4. version v's cost per policy at prices P is its cells' costs over its own expected
   mix, and the **joint equilibrium** is the vector fixed point
   P_v = cost_v(mix(P)) / target for every v (:func:`joint_equilibrium`);
5. each version's ``pricing.json`` (every contract field) is its build-up re-run on
   its expected mix at the filed premiums of all versions; ``versions.json`` holds the
   joint figures per version and per cell (age band x health status).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError

#: Pseudo-policies of the version split's prior: a cell's shares of the versions are
#: its own policies plus this many spread as its eligibility group's shares, so a thin
#: cell's split leans to its group's and no held version gets a zero share [assumption].
PRIOR_POLICIES = 5.0
#: Fewer expected policies than this: the version has no market at those prices.
MIN_POLICIES = 1.0
MANIFEST_COMMAND = "price-versions"


# --- the choice model and the joint fixed point (pure, hand-checked in the tests) ---------

@dataclass
class VersionChoice:
    """A multinomial choice among versions and none, per joint cell.

    ``people`` (K), ``odds`` (V x K, 0 where the cell may not take the version),
    ``beta`` (K, the price response of the cell), ``reference`` (V, the premium each
    version's odds are at)."""

    people: np.ndarray
    odds: np.ndarray
    beta: np.ndarray
    reference: np.ndarray

    def shares(self, prices) -> np.ndarray:
        """P(v | k) at the versions' ``prices`` (V x K); the rest choose none."""
        ratio = np.asarray(prices, dtype=float) / self.reference
        x = self.odds * ratio[:, None] ** self.beta[None, :]
        return x / (1.0 + x.sum(axis=0))

    def mix(self, prices) -> np.ndarray:
        """Expected policies of each version in each cell (V x K)."""
        return self.shares(prices) * self.people[None, :]


def status_quo_odds(take_up: np.ndarray, counts: np.ndarray, eligible: np.ndarray,
                    group: np.ndarray, prior: float = PRIOR_POLICIES) -> tuple[np.ndarray, list[str]]:
    """The odds o_vk of each version in each cell at the reference premiums.

    ``take_up`` q_k: expected policies per person of cell k in the line (all versions);
    ``counts`` n_vk: the cell's last-year policies of each version (V x K);
    ``eligible`` (V x K bool); ``group``: each cell's eligibility group (cells with the
    same set of versions). For the versions the data hold (some policy anywhere)::

        s_vg = n_vg / sum_w n_wg                   (the group's split; equal if none)
        s_vk = (n_vk + prior s_vg) / (N_k + prior)   N_k = sum_w n_wk
        o_vk = q_k / (1 - q_k) s_vk

    so at the reference premiums the cell's take-up is q_k and its split the data's.
    A version no policy of the data holds gets, in each cell, the odds of the first
    version there (the standard, when given first): at equal price relative to their
    references the eligible would take it as often [assumption]. Returns the odds and
    notes."""
    take_up = np.clip(np.asarray(take_up, dtype=float), 1e-9, 1 - 1e-9)
    counts = np.where(eligible, np.asarray(counts, dtype=float), 0.0)
    held = counts.sum(axis=1) > 0
    odds = np.zeros(counts.shape)
    notes = []
    total_odds = take_up / (1.0 - take_up)
    for g in np.unique(group):
        on = group == g
        elig_g = eligible[:, on].any(axis=1)
        known = elig_g & held
        n_g = counts[:, on].sum(axis=1) * known
        if n_g.sum() > 0:
            s_g = n_g / n_g.sum()
        elif known.any():
            s_g = known / known.sum()
        else:                   # none of the group's versions is held: equal split
            s_g = elig_g / elig_g.sum()
            known = elig_g
        n_k = counts[:, on] * known[:, None]
        denom = n_k.sum(axis=0) + prior
        s_k = np.where(denom > 0, (n_k + prior * s_g[:, None]) / np.maximum(denom, 1e-300),
                       s_g[:, None])            # a cell with no policy: its group's split
        odds[:, on] = np.where(known[:, None], s_k * total_odds[on][None, :], 0.0)
        for v in np.flatnonzero(elig_g & ~known):
            first = np.flatnonzero(known)[0]
            odds[v, on] = odds[first, on]
    for v in np.flatnonzero(~held & eligible.any(axis=1)):
        notes.append(f"version {v + 1} has no policy in the data's last year: its choice "
                     f"constants are assumed equal to the first held version's in each cell "
                     f"(at equal price to their references it draws as many)")
    return np.where(eligible, odds, 0.0), notes


def version_costs(mix: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Each version's expected benefit per policy over its own mix (V); NaN with no
    policy."""
    n = mix.sum(axis=1)
    tot = (mix * cost).sum(axis=1)
    return np.divide(tot, n, out=np.full(len(n), np.nan), where=n > 0)


@dataclass
class JointEquilibrium:
    prices: np.ndarray | None      # V, None when the iteration does not settle
    mix: np.ndarray | None         # V x K
    iterations: int
    converged: bool


def joint_equilibrium(choice: VersionChoice, cost: np.ndarray, target: float,
                      tol: float = 1e-10, max_iter: int = 5000) -> JointEquilibrium:
    """The premiums that break even on the people they draw, all versions at once::

        P_v = sum_k m_vk(P) cost_vk / sum_k m_vk(P) / target     for every v

    by iteration P <- G(P) in logs from the lowest premium a version can need (its
    cheapest cell's cost / target, at least 1/100 of its reference; as the single
    product's search starts at the bottom, so the lowest fixed point is found where
    the map is monotone), damped by halves when a step does not shrink the gap.
    ``cost``: V x K, each version's expected benefit per policy in each cell."""
    cost = np.asarray(cost, dtype=float)
    on = choice.odds > 0
    low = np.array([cost[v, on[v]].min() if on[v].any() else np.nan
                    for v in range(len(cost))]) / target
    p = np.maximum(np.nan_to_num(low, nan=0.0), choice.reference / 100.0)

    def g(prices):
        return version_costs(choice.mix(prices), cost) / target

    step, gap_before = 1.0, np.inf
    for i in range(1, max_iter + 1):
        new = g(p)
        if not np.isfinite(new).all() or (new <= 0).any():
            return JointEquilibrium(None, None, i, False)
        gap = float(np.max(np.abs(np.log(new / p))))
        if gap < tol:
            return JointEquilibrium(new, choice.mix(new), i, True)
        if gap >= gap_before:
            step = max(step / 2, 1 / 64)
        gap_before = gap
        p = np.exp(np.log(p) + step * (np.log(new) - np.log(p)))
    return JointEquilibrium(None, None, max_iter, False)


# --- checks of the inputs ---------------------------------------------------------------

def check_versions(products) -> None:
    """Versions priced jointly: distinct ids, the same policy period, one premium each
    (a rated version's schedule in the joint price is not built)."""
    ids = [p.id for p in products]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"--product {', '.join(dup)} given twice; give each version once")
    first = products[0]
    for p in products[1:]:
        if (p.start, p.end) != (first.start, first.end):
            raise InputError(
                f"{p.id} ({p.path}): policy period {p.start} to {p.end}, but {first.id}'s is "
                f"{first.start} to {first.end}; the versions priced together are of one "
                f"product and one year: give versions with the same [policy_period]")
    rated = [p.id for p in products if p.premium_flat_fen is None]
    if rated:
        raise InputError(f"{', '.join(rated)}: premium by cell or none; joint pricing of "
                         f"versions prices one flat premium per version (a rated version's "
                         f"schedule is not built yet): give [premium] flat, or price it alone")


def one_version_per_person(policies: pd.DataFrame, ids: list[str]) -> None:
    """A person holds at most one of the versions in a policy year: two is invalid
    data (exit 2), named with the count and examples."""
    pol = policies[policies["product_id"].astype(str).isin(ids)]
    key = pd.DataFrame({"psn_no": pol["psn_no"].astype(str).to_numpy(),
                        "year": pol["start_date"].dt.year.to_numpy()})
    dup = key[key.duplicated(keep=False)]
    if len(dup):
        pairs = dup.drop_duplicates()
        ex = ", ".join(f"{r.psn_no} in {r.year}" for r in pairs.head(5).itertuples())
        raise InputError(
            f"policies.parquet: product_id: {len(pairs)} person-year(s) hold two or more of "
            f"the versions {', '.join(ids)} (e.g. {ex}); a person takes at most one version "
            f"a year: keep one policy per person and year, then price again")


def eligibility_columns(products, data_dir: Path) -> dict[str, pd.Series]:
    """Each version's ``eligibility.persons_column`` read from persons.parquet as a
    true/false Series by ``psn_no``. A missing column, or one not true/false, is exit 2
    naming the version, the column and what to do."""
    from puhui.fund.files import ColumnReader

    path = Path(data_dir) / "persons.parquet"
    wanted = {p.id: p.raw.get("eligibility", {}).get("persons_column") for p in products}
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted:
        return {}
    pf = ColumnReader(path)             # InputError naming the file when it is not Parquet
    have = set(pf.names)
    missing = {k: c for k, c in wanted.items() if c not in have}
    if missing:
        raise InputError("; ".join(
            f"{path}: no column {c!r}, which {pid}'s eligibility names (persons_column): "
            f"only people with true there may take that version" for pid, c in missing.items())
            + ". The data contract has no such field: add the column (true/false per person), "
              "or price without that version")
    df = pf.frame(["psn_no", *sorted(set(wanted.values()))])
    out = {}
    for pid, col in wanted.items():
        out[pid] = pd.Series(_true_false(df[col], f"{path}: column {col!r} ({pid}'s eligibility)"),
                             index=df["psn_no"].astype(str).to_numpy())
    return out


def _true_false(s: pd.Series, where: str) -> np.ndarray:
    """A true/false column as booleans, nulls false: booleans, 0/1 integers, 0/1 with
    nulls (read as floats or nullable integers), the words true/false and the text
    "1"/"0", plain or as categories; anything else is exit 2 naming the values found.

    >>> _true_false(pd.Series([1.0, None, 0.0]), "c").tolist()
    [True, False, False]
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    vals = set(s.dropna().unique().tolist())
    if pd.api.types.is_bool_dtype(s) or vals <= {True, False}:     # 0/1 and 0.0/1.0 too
        return s.astype("boolean").fillna(False).to_numpy(dtype=bool)
    words = {str(v).strip().lower() for v in vals}
    if s.dtype == object and words <= {"true", "false", "1", "0"}:
        return s.map(lambda v: str(v).strip().lower() in ("true", "1") if v is not None
                     and v == v else False).to_numpy(dtype=bool)
    raise InputError(f"{where} holds {sorted(map(repr, vals))[:5]} ({s.dtype}); give "
                     f"true/false (or 0/1) per person, nulls count as false")


# --- the joint pricing run ----------------------------------------------------------------

def _steps():
    """The build-up split after the enrolled mix (the first step whose figures the
    versions' joint mix replaces is the benefit costs), found by name so a reordered
    build-up still splits in the right place."""
    from puhui.pricing import premium

    names = [f.__name__ for f in premium.BUILD_UP]
    to_mix = names.index("_step_enrolled_mix") + 1
    return premium.BUILD_UP[:to_mix], premium.BUILD_UP[to_mix:]


@dataclass
class VersionsResult:
    joint: dict                     # versions.json
    pricings: list                  # per version: premium.Pricing at the joint mix
    tables: dict


def price_versions(products, datas, assumptions: dict, elig_cols: dict[str, pd.Series],
                   seed: int = 0, progress=None) -> VersionsResult:
    """Price ``products`` (versions of one product, one ``FundData`` each, read for that
    version) jointly; see the module docstring."""
    from puhui.pricing.enrolment import healthy
    from puhui.pricing.premium import BuildUp, Pricing, _r, _r_opt

    say = progress or (lambda step: None)
    ids = [p.id for p in products]
    head, rest = _steps()
    states = []
    for product, data in zip(products, datas):
        say(f"{product.id}: experience and enrolled mix")
        s = BuildUp(product, data, assumptions, seed, None, progress, release_data=True)
        for step in head:
            step(s)
        states.append(s)
    last = states[0].last
    target = states[0].target
    en = assumptions["enrolment"]
    V = len(products)

    # every eligible person of the last data year: their cell in each version (-1: not
    # eligible for it)
    cell_of = {}
    for v, s in enumerate(states):
        psn = s.frame.loc[s.cur.index, "psn_no"].astype(str).to_numpy()
        col = elig_cols.get(s.product.id)
        ok = np.ones(len(psn), dtype=bool) if col is None else \
            col.reindex(psn, fill_value=False).to_numpy()
        cell_of[v] = pd.Series(s.cur_cell[ok], index=psn[ok])
    persons = pd.Index(sorted(set().union(*(c.index for c in cell_of.values()))))
    cell = np.column_stack([cell_of[v].reindex(persons, fill_value=-1).to_numpy()
                            for v in range(V)]) if len(persons) else np.zeros((0, V), int)
    eligible_people = {ids[v]: int((cell[:, v] >= 0).sum()) for v in range(V)}
    empty = [ids[v] for v in range(V) if eligible_people[ids[v]] == 0]
    if empty:
        raise InputError(f"no person of the data's last year ({last}) may take "
                         f"{', '.join(empty)} (its schemes, ages and eligibility column): "
                         f"nothing to price it on")
    # the version each person held in the last year (a product not among the versions,
    # such as last year's huhuibao-2024, counts as the first version: the line's own)
    pol = datas[0].policies
    pol = pol[pol["start_date"].dt.year == last]
    held = pd.Series(pol["product_id"].astype(str).to_numpy(),
                     index=pol["psn_no"].astype(str).to_numpy())
    held = held[~held.index.duplicated()].reindex(persons)
    held_v = np.full(len(persons), -1)
    for v, pid in enumerate(ids):
        held_v[(held == pid).to_numpy()] = v
    other = held.notna().to_numpy() & (held_v < 0)
    held_v[other] = 0
    notes = []
    if other.any():
        notes.append(f"{int(other.sum())} policies of {last} are of products other than the "
                     f"versions ({', '.join(sorted(set(held[other])))}): counted as "
                     f"{ids[0]}'s (the first --product, the line's standard) in the split")
    not_elig = (held_v >= 0) & (cell[np.arange(len(persons)), np.maximum(held_v, 0)] < 0)
    if not_elig.any():
        notes.append(f"{int(not_elig.sum())} people held a version in {last} they may not take "
                     f"under its eligibility (its schemes, ages or column): left out of the "
                     f"split of the versions")
        held_v[not_elig] = -1

    # joint cells: the same cell in every version
    key = pd.DataFrame(cell, columns=[f"c{v}" for v in range(V)])
    grouped = key.groupby(list(key.columns), sort=True)
    k_of = grouped.ngroup().to_numpy()
    jc = grouped.size().reset_index(name="people")
    K = len(jc)
    jcell = jc[[f"c{v}" for v in range(V)]].to_numpy().T            # V x K
    eligible = jcell >= 0
    people = jc["people"].to_numpy(dtype=float)
    counts = np.zeros((V, K))
    has = held_v >= 0
    np.add.at(counts, (held_v[has], k_of[has]), 1.0)
    first = eligible.argmax(axis=0)                   # each cell's first eligible version
    take_up = np.empty(K)
    beta = np.empty(K)
    band = np.empty(K, dtype=object)
    well = np.empty(K, dtype=bool)
    for v, s in enumerate(states):
        on = first == v
        c = jcell[v, on]
        take_up[on] = s.w[c] / s.people[c]
        h = healthy(s.cells)[c]
        well[on] = h
        beta[on] = np.where(h, en["beta_healthy"], en["beta_other"])
        band[on] = s.cells["age_band"].astype(str).to_numpy()[c]
    group = pd.factorize(pd.Series(map(tuple, eligible.T.tolist())))[0]
    odds, odds_notes = status_quo_odds(take_up, counts, eligible, group)
    notes += [n.replace(f"version {i + 1} ", f"{pid} ") for n in odds_notes
              for i, pid in enumerate(ids) if n.startswith(f"version {i + 1} ")]
    filed = np.array([p.premium_flat_fen / 100.0 for p in products])
    # the premium each version's policies were sold at (fen in the engine's tables)
    paid = pd.Series(pol["premium"].to_numpy(dtype=float) / 100.0,
                     index=pol["psn_no"].astype(str).to_numpy())
    paid = paid[~paid.index.duplicated()].reindex(persons).to_numpy()
    reference = filed.copy()
    for v in range(V):
        sold = paid[held_v == v]
        if len(sold) and np.nanmean(sold) > 0:
            reference[v] = float(np.nanmean(sold))
    choice = VersionChoice(people, odds, beta, reference)
    at_filed = choice.mix(filed)
    # each version's build-up on its expected mix at every version's filed premium
    # (the mix needs no cost: only the choice), so pricing.json has every contract field
    pricings = []
    for v, s in enumerate(states):
        w = np.bincount(jcell[v, eligible[v]], weights=at_filed[v, eligible[v]],
                        minlength=len(s.cells)).astype(float)
        say(f"{s.product.id}: the build-up on its mix among the versions")
        if w.sum() >= MIN_POLICIES:
            # renewals in proportion: the version's share of each cell's expected policies
            # renews as the cell does (the claim-free steps' shares stay the cell's)
            s.renewing = s.renewing * np.divide(w, s.w, out=np.zeros(len(w)), where=s.w > 0)
            s.w, s.n_policies = w, int(round(w.sum()))
            s.notes.append(
                f"priced with the versions {', '.join(ids)}: the mix is this version's "
                f"expected policies at every version's filed premium (a multinomial choice per "
                f"cell, versions.json); the equilibrium and spiral here treat this version "
                f"alone, the joint equilibrium is in versions.json")
        else:
            s.notes.append(
                f"priced with the versions {', '.join(ids)}: fewer than {MIN_POLICIES:g} "
                f"expected policy at the filed premiums, so priced on its own mix alone")
        for step in rest:
            step(s)
        pricings.append(Pricing(s.figures, s.tables, s.models, s.enrol_model, s.lr, s.state))
    # each version's cost per cell (its build-up's: credibility and drug agreements in)
    cost = np.zeros((V, K))
    for v, s in enumerate(states):
        cost[v, eligible[v]] = s.cell_cost[jcell[v, eligible[v]]]
    say("joint equilibrium of the versions' premiums")
    eq = joint_equilibrium(choice, cost, target)
    if not eq.converged:
        notes.append("the joint equilibrium did not settle (no vector of premiums at which "
                     "every version breaks even on the people it draws was found): none given")

    # the joint figures per version and per cell (age band x health status)
    rep = pd.DataFrame({"age_band": band, "health": np.where(well, "healthy", "other")})
    versions = []
    eq_costs = version_costs(eq.mix, cost) if eq.converged else None
    filed_costs = version_costs(at_filed, cost)
    for v, p in enumerate(products):
        cells_out = []
        for (b, h), idx in rep.groupby(["age_band", "health"], sort=True).groups.items():
            idx = np.asarray(idx)
            idx = idx[eligible[v, idx]]
            if not len(idx):
                continue
            row = {"age_band": b, "health": h, "eligible_people": int(people[idx].sum()),
                   "policies_in_data": int(counts[v, idx].sum())}
            m = at_filed[v, idx]
            c_f = float(np.dot(m, cost[v, idx]) / m.sum()) if m.sum() > 0 else None
            row["at_filed"] = {"premium": _r(filed[v], 2), "policies": _r(m.sum(), 1),
                               "cost_per_policy": _r_opt(c_f),
                               "break_even_premium": _r_opt(c_f / target if c_f is not None else None),
                               "loss_ratio": _r_opt(c_f / filed[v] if c_f is not None else None, 4)}
            if eq.converged:
                m = eq.mix[v, idx]
                c_e = float(np.dot(m, cost[v, idx]) / m.sum()) if m.sum() > 0 else None
                row["at_equilibrium"] = {
                    "premium": _r(eq.prices[v], 2), "policies": _r(m.sum(), 1),
                    "cost_per_policy": _r_opt(c_e),
                    "break_even_premium": _r_opt(c_e / target if c_e is not None else None),
                    "loss_ratio": _r_opt(c_e / eq.prices[v] if c_e is not None else None, 4)}
            cells_out.append(row)
        n_eq = float(eq.mix[v].sum()) if eq.converged else 0.0
        versions.append({
            "product_id": p.id, "product_name": p.name,
            "eligibility": {"persons_column": p.raw.get("eligibility", {}).get("persons_column"),
                            "insutypes": list(p.insutypes),
                            "eligible_people": eligible_people[p.id]},
            "filed_premium": _r(filed[v], 2), "reference_premium": _r(reference[v], 2),
            "policies_in_data": int(counts[v].sum()),
            "at_filed": {"policies": _r(at_filed[v].sum(), 1),
                         "pure_premium": _r_opt(filed_costs[v]),
                         "gross_premium": _r_opt(filed_costs[v] / target),
                         "loss_ratio": _r_opt(filed_costs[v] / filed[v], 4)},
            "at_equilibrium": None if not eq.converged else {
                "premium": _r(eq.prices[v], 2) if n_eq >= MIN_POLICIES else None,
                "policies": _r(n_eq, 1),
                "pure_premium": _r_opt(eq_costs[v]),
                "loss_ratio": _r_opt(eq_costs[v] / eq.prices[v], 4)},
            "cells": cells_out})
    joint = {
        "products": ids,
        "seed": seed,
        "data_last_year": int(last),
        "priced_period": states[0].figures["basis"]["priced_period"],
        "target_loss_ratio": _r(target, 4),
        "people": int(people.sum()),
        "joint_cells": K,
        "choice": {"beta_healthy": en["beta_healthy"], "beta_other": en["beta_other"],
                   "prior_policies": PRIOR_POLICIES,
                   "take_up_at_reference": _r(float(np.dot(take_up, people) / people.sum()), 4),
                   "note": "per joint cell (the same pricing cell in every version, the same "
                           "versions open): P(v) = o_v (P_v/R_v)^beta / (1 + sum_w o_w "
                           "(P_w/R_w)^beta) among the versions the cell may take; o from the "
                           "line's take-up and the versions' split of the last year's policies; "
                           "R_v the premium the data's policies of v were sold at (else its "
                           "filed premium)"},
        "equilibrium": {"converged": eq.converged, "iterations": eq.iterations,
                        "note": "the premiums at which every version breaks even on the "
                                "people it draws, all versions at once: P_v = cost_v(mix(P)) "
                                "/ target loss ratio (first-year mix; the costs per cell are "
                                "each version's build-up on its mix at the filed premiums)"},
        "versions": versions,
        "policies_at_filed": _r(at_filed.sum(), 1),
        "policies_at_equilibrium": _r(eq.mix.sum(), 1) if eq.converged else None,
        "notes": notes,
    }
    tables = {"joint_cells": jc.assign(take_up=take_up, beta=beta, age_band=band,
                                       healthy=well)}
    return VersionsResult(joint, pricings, tables)


# --- files: OUT/versions.json, OUT/<id>/pricing.json, reports, manifest ---------------------

def run_versions(product_files, data_dir, out, seed: int = 0, assumptions_file=None,
                 progress=None, lang: str = "en") -> dict:
    """``puhui price`` with two or more ``--product``: the versions priced jointly.

    Writes ``OUT/versions.json`` (the joint figures), ``OUT/report.html`` (the joint
    report, linking each version's), ``OUT/manifest.json`` (every input's hash, as a
    single pricing's, with ``command`` = "price-versions") and per version
    ``OUT/<product_id>/`` with ``pricing.json`` (every contract field), ``report.html``
    and the fitted state for ``what-if``. The reports are in ``lang`` ("en" or "zh"; the
    JSON files are the same in either). Returns versions.json's figures."""
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions
    from puhui.pricing.report import render
    from puhui.reporting import synthetic_marker
    from puhui.excel import write_pricing_workbook
    from puhui.pricing.manifest_inputs import path_options
    from puhui.pricing.run import MANIFEST_VERSION, _versions, check_period, input_hashes
    from puhui.products.model import load_product
    from puhui import __version__

    files = [Path(f) for f in product_files]
    data_dir, out = Path(data_dir), Path(out)
    products = [load_product(f) for f in files]
    check_versions(products)
    assumptions, a_path = load_assumptions(assumptions_file)
    elig = eligibility_columns(products, data_dir)
    say = progress or (lambda step: None)
    datas = []
    for i, p in enumerate(products):
        say(f"reading and validating the fund data for {p.id}")
        data = load_for_pricing(data_dir, p, assumptions)
        check_period(p, data)
        if i == 0:
            one_version_per_person(data.policies, [q.id for q in products])
        datas.append(data)
    r = price_versions(products, datas, assumptions, elig, seed=seed, progress=progress)
    del datas
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "command": MANIFEST_COMMAND,
        "package_version": __version__,
        "versions": _versions(),
        "seed": seed,
        "options": {"products": [str(f.resolve()) for f in files],
                    "data": str(data_dir.resolve()), "assumptions": str(a_path.resolve()),
                    "policies": None,
                    **path_options(out, {"data": data_dir, "products": files,
                                         "assumptions": a_path})},
        "inputs": {**input_hashes(data_dir, files[0], a_path),
                   "product_files": {p.id: _sha(f) for p, f in zip(products, files)}},
    }
    out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    min_people = int(assumptions.get("report", {}).get("min_cell_people", 10))
    a_text = a_path.read_text(encoding="utf-8")
    for p, f, res in zip(products, files, r.pricings):
        d = out / p.id
        d.mkdir(exist_ok=True)
        text = json.dumps(res.figures, indent=2, ensure_ascii=False)
        (d / "pricing.json").write_text(text + "\n", encoding="utf-8")
        write_pricing_workbook(res.figures, d / "premium.xlsx")
        outputs[f"{p.id}/pricing.json"] = hashlib.sha256(text.encode()).hexdigest()
        if res.state is not None:
            res.state.save(d)
        one = {**manifest, "options": {**manifest["options"], "product": str(f.resolve())}}
        html = render(res.figures, res.tables, one, a_text, res.lr_draws, min_people, lang=lang,
                      synthetic=synthetic_marker(data_dir))
        (d / "report.html").write_text(html, encoding="utf-8")
    text = json.dumps(r.joint, indent=2, ensure_ascii=False)
    (out / "versions.json").write_text(text + "\n", encoding="utf-8")
    outputs["versions.json"] = hashlib.sha256(text.encode()).hexdigest()
    manifest["outputs"] = outputs
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render_joint(r.joint, manifest, min_people, lang),
                                     encoding="utf-8")
    return r.joint


def _sha(path: Path) -> str:
    from puhui.digests import sha256_file

    return sha256_file(path)


def is_versions_manifest(manifest_file) -> bool:
    """Whether a manifest is of a joint pricing of versions (false for anything else,
    including an unreadable file: the single pricing's checks then say what is wrong)."""
    try:
        m = json.loads(Path(manifest_file).read_text(encoding="utf-8"))
        return isinstance(m, dict) and m.get("command") == MANIFEST_COMMAND
    except (OSError, ValueError):
        return False


def reproduce_versions(manifest_file, progress=None, data=None) -> tuple[bool, list[str]]:
    """Re-run a joint pricing from its manifest; (identical, differences) over
    versions.json and every version's pricing.json. Inputs are found as for a single
    pricing (:func:`puhui.pricing.run.reproduce`; ``data`` gives the data folder)."""
    import tempfile

    from puhui.basis import actuarial_dir
    from puhui.pricing.manifest_inputs import input_changes, refuse_changed
    from puhui.pricing.run import _differences, input_hashes

    manifest_file = Path(manifest_file)
    m, originals = _read_versions_manifest(manifest_file)
    data, products, a_file = _locate_versions_inputs(manifest_file, m, data)
    from puhui.products.model import load_product

    now = {**input_hashes(data, products[0], a_file),
           "product_files": {load_product(p).id: _sha(p) for p in products}}
    refuse_changed(manifest_file, input_changes(m["inputs"], now, {
        "data": data, "actuarial": actuarial_dir(), "product_file": products[0],
        "assumptions_file": a_file}))
    with tempfile.TemporaryDirectory() as tmp:
        run_versions(products, data, tmp, seed=m["seed"], assumptions_file=a_file,
                     progress=progress)
        diffs = []
        for k, original in originals.items():
            p = Path(tmp) / k
            if not p.is_file():
                diffs.append(f"{k}: not made by the re-run")
                continue
            diffs += [f"{k}: {d}" for d in _differences(
                original, json.loads(p.read_text(encoding="utf-8")))]
    return not diffs, diffs


def _read_versions_manifest(manifest_file: Path) -> tuple[dict, dict]:
    """(manifest, the outputs beside it by name), checked."""
    try:
        m = json.loads(manifest_file.read_text(encoding="utf-8"))
        opts = m["options"]
        products = [str(p) for p in opts["products"]]
        for k in ("data", "assumptions"):
            if not isinstance(opts.get(k), str):
                raise KeyError(f"options.{k}")
        if not isinstance(m["seed"], int) or len(products) < 2:
            raise ValueError("seed is not a whole number, or fewer than two products")
        originals = {k: json.loads((manifest_file.parent / k).read_text(encoding="utf-8"))
                     for k in m["outputs"]}
        if not isinstance(m["inputs"], dict):
            raise KeyError("inputs")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{manifest_file}: not a manifest of versions priced jointly with "
                         f"its versions.json and pricing.json files beside it "
                         f"({type(e).__name__}: {e})") from None
    return m, originals


def _locate_versions_inputs(manifest_file: Path, m: dict, data) -> tuple[Path, list, Path]:
    from puhui.pricing.manifest_inputs import candidates, data_hashes, locate

    opts, inputs = m["options"], m["inputs"]
    recorded = set((inputs.get("product_files") or {}).values())
    places = [Path(data)] if data is not None else candidates(manifest_file, opts, "data")
    data_dir = locate(places, lambda d: d.is_dir() and data_hashes(d) == inputs.get("data"),
                      "data", manifest_file, " (a data folder that moved: give it with "
                                             "--data DIR)")
    products = [locate(candidates(manifest_file, opts, "products", i),
                       lambda f: f.is_file() and _sha(f) in recorded,
                       f"product {i + 1}", manifest_file)
                for i in range(len(opts["products"]))]
    a_file = locate(candidates(manifest_file, opts, "assumptions"),
                    lambda f: f.is_file() and _sha(f) == inputs.get("assumptions_file"),
                    "assumptions", manifest_file)
    return data_dir, products, a_file


def render_joint(joint: dict, manifest: dict, min_people: int = 10, lang: str = "en") -> str:
    """The joint report (template ``versions.html.j2``, in ``lang``; no row describes
    fewer than ``min_people`` people)."""
    from puhui import __version__
    from puhui.reporting import gettext_for, render as render_page, synthetic_marker

    _ = gettext_for(lang)

    def num(x, d=2):
        return _("n/a") if x is None else f"{x:,.{d}f}"

    def pct(x):
        return _("n/a") if x is None else f"{x * 100:.1f} %"

    hidden = sum(1 for v in joint["versions"] for c in v["cells"]
                 if c["eligible_people"] < min_people)
    return render_page(
        "versions.html.j2", lang, j=joint, m=manifest, num=num, pct=pct, min_people=min_people,
        version=__version__,
        synthetic=synthetic_marker(manifest.get("options", {}).get("data")),
        hidden=(_("%(n)s cell(s) of fewer than %(m)s people are left out.")
                % {"n": hidden, "m": min_people} if hidden else ""))
