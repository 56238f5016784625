"""Benefits with little or no data: external assumptions blended with the data by credibility.

A benefit the fund data rarely or never shows (CAR-T at 1.2 million yuan an infusion,
overseas drugs, proton therapy) cannot be priced from its experience alone: with no
event its model gives 0, with two events a price that moves by half on one more case.
``actuarial/assumptions/benefits.toml`` gives, per benefit id, the figures a pricing
actuary takes from outside the data, each with its source:

- incidence per 100,000 person-years by age band (the pricing's bands,
  :data:`puhui.pricing.frequency.AGE_BANDS`): people who would need the treatment;
- uptake: the share of them who receive it (and claim);
- cost per case in yuan: the treatment's price (a fixed-cost treatment).

For each pricing cell (the cells of :func:`puhui.pricing.premium.price`):

    payout per case   P_c = min(max(cost - deductible, 0) x r_c, limit)
                      (r_c the pre-existing ratio in pre-existing cells, else the ratio)
    external E[B_c]   = incidence(band of c) / 100,000 x uptake x P_c
    external Var[B_c] = incidence(band of c) / 100,000 x uptake x P_c^2
                      (cases Poisson, each costing P_c)

and the data's own E[B_c] (the benefit's fitted models) is blended with it by
limited-fluctuation credibility on the benefit's events n in the data:

    Z = min(1, sqrt(n / n_full))       n_full from benefits.toml (1,082: 90 % / +-5 %)
    E[B_c] = Z x data E[B_c] + (1 - Z) x external E[B_c]
    Var[B_c] = Z x data Var[B_c] + (1 - Z) x external Var[B_c]

A benefit with no events is priced on the assumption alone (Z = 0); one with n_full
events or more on its data alone (Z = 1). :func:`price_external` is the one step
:func:`puhui.pricing.premium.price` calls, after the per-group models and before the
cells' credibility factors (which then apply to the blended cost as to any other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.basis import actuarial_dir, read_toml
from puhui.errors import InputError
from puhui.pricing.frequency import AGE_BANDS, banded

DEFAULT_FILE = "assumptions/benefits.toml"
#: The figures each benefit's table must give, with a ``<figure>_source`` beside each.
FIGURES = ("incidence_per_100000", "uptake", "cost_per_case")
#: How the per-group loop of premium.price words the note for a benefit with no event.
NO_EVENTS_NOTE = ": no events in the data, so no experience to price on"


def band_labels() -> list[str]:
    """The pricing's age bands as labelled in the rating cells: 0-17, 18-30, ..., 81+."""
    return [str(c) for c in banded([], AGE_BANDS).categories]


@dataclass(frozen=True)
class ExternalAssumption:
    """One benefit's external figures (yuan; incidence per 100,000 person-years)."""

    benefit: str
    incidence: dict[str, float]          # age band label -> cases per 100,000 person-years
    uptake: float
    cost_per_case: float
    sources: dict[str, str] = field(default_factory=dict)   # figure -> its source text


@dataclass
class ExternalBasis:
    """The assumptions file: every benefit's assumption and the full-credibility standard."""

    path: Path | None
    n_full: float
    benefits: dict[str, ExternalAssumption]
    n_full_source: str = ""


def load_external(assumptions: dict) -> ExternalBasis:
    """The benefits' external assumptions named by the pricing assumptions'
    ``[external] benefits`` (a path, absolute or under actuarial/), else
    :data:`DEFAULT_FILE` when it exists, else none (every benefit priced on its data)."""
    given = assumptions.get("external", {}).get("benefits")
    p = Path(given) if given else actuarial_dir() / DEFAULT_FILE
    if given and not p.is_absolute():
        p = actuarial_dir() / p
    if not p.is_file():
        if given:
            raise InputError(f"{p}: the benefits' external assumptions file named by "
                             f"[external] benefits is not there; give an existing file or "
                             f"leave the key out for actuarial/{DEFAULT_FILE}")
        return ExternalBasis(None, np.inf, {})
    raw = read_toml(p)
    cred = raw.get("credibility", {})
    n_full = cred.get("n_full")
    if not isinstance(n_full, (int, float)) or n_full <= 0:
        raise InputError(f"{p}: [credibility] n_full must be a positive number of events "
                         f"(1082 is the 90 % / +-5 % standard); got {n_full!r}")
    bands = band_labels()
    out = {}
    for bid, t in raw.items():
        if bid == "credibility":
            continue
        if not isinstance(t, dict):
            raise InputError(f"{p}: {bid!r} must be a table [{bid}] of a benefit's figures")
        missing = [k for k in FIGURES if k not in t] + [
            f"{k}_source" for k in FIGURES if not str(t.get(f"{k}_source", "")).strip()]
        if missing:
            raise InputError(f"{p}: [{bid}] lacks {', '.join(missing)}; every benefit gives "
                             f"{', '.join(FIGURES)} and a source for each")
        inc = t["incidence_per_100000"]
        if not isinstance(inc, dict) or set(inc) != set(bands):
            raise InputError(f"{p}: [{bid}] incidence_per_100000 must give every age band "
                             f"{', '.join(bands)} (got {', '.join(map(str, inc)) if isinstance(inc, dict) else inc!r})")
        values = {b: float(inc[b]) for b in bands}
        if min(values.values()) < 0 or not 0 <= float(t["uptake"]) <= 1 or float(t["cost_per_case"]) < 0:
            raise InputError(f"{p}: [{bid}] incidence and cost must be >= 0 and uptake "
                             f"between 0 and 1")
        out[bid] = ExternalAssumption(bid, values, float(t["uptake"]), float(t["cost_per_case"]),
                                      {k: str(t[f"{k}_source"]) for k in FIGURES})
    return ExternalBasis(p, float(n_full), out, str(cred.get("n_full_source", "")))


def payout_per_case(cost: float, deductible: float, ratio, limit: float):
    """Benefit paid for one case of a fixed-cost treatment::

        P = min(max(cost - deductible, 0) x ratio, limit)

    >>> float(payout_per_case(1_200_000, 0, 0.7, 500_000))
    500000.0
    >>> float(payout_per_case(278_000, 0, 0.7, 300_000))
    194600.0
    """
    return np.minimum(np.maximum(cost - deductible, 0.0) * np.asarray(ratio, dtype=float),
                      limit)


def expected_cost(incidence_per_100000, uptake: float, payout):
    """Expected benefit per person-year: E[B] = incidence / 100,000 x uptake x payout.

    >>> round(float(expected_cost(2.0, 0.1, 500_000)), 2)
    1.0
    """
    return np.asarray(incidence_per_100000, dtype=float) / 100_000.0 * uptake * payout


def credibility_weight(events: float, n_full: float) -> float:
    """Limited-fluctuation credibility of the data's experience: Z = min(1, sqrt(n / n_full)).

    >>> credibility_weight(0, 1082), credibility_weight(2164, 1082)
    (0.0, 1.0)
    >>> round(credibility_weight(270.5, 1082), 3)
    0.5
    """
    if not np.isfinite(n_full):
        return 1.0
    return float(min(1.0, np.sqrt(max(events, 0.0) / n_full)))


def blend(z: float, data, external):
    """Z x data + (1 - Z) x external (per cell, or one figure)."""
    return z * np.asarray(data, dtype=float) + (1.0 - z) * np.asarray(external, dtype=float)


def external_moments(a: ExternalAssumption, cells: pd.DataFrame, terms) -> tuple[np.ndarray, np.ndarray]:
    """External E[B_c] and Var[B_c] per cell under ``terms`` (a GroupTerms: deductible,
    ratio, preexisting_ratio, limit; a claim-free step is not applied: the first-year
    deductible). Cells need ``age_band`` and ``preexisting``."""
    band = np.asarray(cells["age_band"]).astype(str)
    rate = np.array([a.incidence[b] for b in band]) / 100_000.0 * a.uptake
    pre = cells["preexisting"].astype(int).to_numpy() == 1
    r = np.where(pre, terms.preexisting_ratio, terms.ratio)
    p = payout_per_case(a.cost_per_case, terms.deductible, r, terms.limit)
    return rate * p, rate * p ** 2


@dataclass
class ExternalResult:
    """What :func:`price_external` changes: per-cell differences to add to the cell
    cost and variance, the difference to the draws of the pure premium, the figure for
    pricing.json, and the blend per group for a what-if (group id -> (Z, assumption))."""

    d_cost: np.ndarray | float = 0.0
    d_var: np.ndarray | float = 0.0
    d_draws: np.ndarray | float = 0.0
    figure: dict | None = None
    state: dict = field(default_factory=dict)


def price_external(product, assumptions: dict, groups, models, cells: pd.DataFrame,
                   w: np.ndarray, sev_trend: float, step_shares: dict, group_m1: dict,
                   group_draws: dict, pure: dict, notes: list, sims: int) -> ExternalResult:
    """Blend every benefit with an external assumption (module docstring). Updates in
    place ``group_m1`` (per cell), ``group_draws`` (the group's pure premium under
    parameter draws: Z x the data's + (1 - Z) x the external figure, which has no
    parameter uncertainty of its own), ``pure`` and ``notes`` (the no-event note of a
    benefit it prices is replaced by its own); returns the differences to the cell cost,
    variance and total draws, and the ``external_assumptions`` figure."""
    from puhui.pricing.benefit_cost import step_moments

    basis = load_external(assumptions)
    res = ExternalResult()
    if not basis.benefits:
        return res
    fig = {}
    d_cost = np.zeros(len(cells))
    d_var = np.zeros(len(cells))
    d_draws = np.zeros(sims)
    for terms in groups:
        have = [b for b in terms.benefits if b in basis.benefits]
        if not have:
            continue
        if len(terms.benefits) > 1:
            notes.append(f"{', '.join(have)}: the external assumption is not applied, the "
                         f"benefit shares a deductible or limit with "
                         f"{', '.join(b for b in terms.benefits if b not in have)} (priced jointly "
                         f"on the data alone); give it its own deductible and limit to use it")
            continue
        a = basis.benefits[have[0]]
        model = models[terms.id]
        events = int(sum(k.events for k in model.kinds_))
        z = credibility_weight(events, basis.n_full)
        m1_d, m2_d = step_moments(model, cells, terms, step_shares.get(terms.id),
                                  severity_factor=sev_trend)
        var_d = m2_d - m1_d ** 2
        m1_e, var_e = external_moments(a, cells, terms)
        m1_b, var_b = blend(z, m1_d, m1_e), blend(z, var_d, var_e)
        d_cost += m1_b - m1_d
        d_var += var_b - var_d
        data_pp = float(np.dot(w, m1_d) / w.sum())
        ext_pp = float(np.dot(w, m1_e) / w.sum())
        blended_pp = float(np.dot(w, m1_b) / w.sum())
        old = group_draws.get(terms.id)
        new = (z * old if old is not None else np.zeros(sims)) + (1.0 - z) * ext_pp
        d_draws += new - (old if old is not None else 0.0)
        group_draws[terms.id] = new
        group_m1[terms.id] = m1_b
        pure[a.benefit] = blended_pp
        res.state[terms.id] = (z, a)
        gone = f"{a.benefit}{NO_EVENTS_NOTE}"
        notes[:] = [n for n in notes if not n.startswith(gone)]
        notes.append(f"{a.benefit}: priced on an external assumption ({basis.path.name}) "
                     f"blended with the data's {events} events by credibility Z = {z:.3f}: "
                     f"every figure including it rests partly on that assumption")
        fig[a.benefit] = {
            "events": events, "Z": round(z, 4), "n_full": basis.n_full,
            "data_pure_premium": round(data_pp, 2),
            "external_pure_premium": round(ext_pp, 2),
            "blended_pure_premium": round(blended_pp, 2),
            "incidence_per_100000": a.incidence, "uptake": a.uptake,
            "cost_per_case": a.cost_per_case,
            "payout_per_case": round(float(payout_per_case(a.cost_per_case, terms.deductible,
                                                           terms.ratio, terms.limit)), 2),
            "sources": {**a.sources, "n_full": basis.n_full_source}}
    if fig:
        res.figure = {"file": str(basis.path.name), "benefits": fig,
                      "note": "pure premiums before the cells' credibility factors and drug "
                              "refunds; external E[B] = incidence / 100,000 x uptake x "
                              "min(max(cost - deductible, 0) x ratio, limit) per cell, "
                              "blended as Z x data + (1 - Z) x external with "
                              "Z = min(1, sqrt(events / n_full))"}
    res.d_cost, res.d_var, res.d_draws = d_cost, d_var, d_draws
    return res
