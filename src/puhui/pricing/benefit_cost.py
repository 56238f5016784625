"""The expected annual cost of a benefit per rating cell, from frequency and severity.

For each *pricing group* of a product (one benefit, or benefits that share an annual
deductible or limit and so must be priced on their joint annual sum):

    N_kc ~ NB(mean lambda_kc, size 1 / alpha_k)  events of kind k a year (Poisson GLM
                                                 on cells, NB2 dispersion by moments)
    X_k  = mu_kc Z_k                             eligible amount of one event (gamma GLM
                                                 for mu_kc; Z_k spliced empirical + GPD)
    S    = sum_k (X_k1 + ... + X_kN_kc)           the annual sum, kinds independent
    B   = min(r_c (S - d)+, L)                   the annual benefit (r_c the pre-existing
                                                 ratio in pre-existing cells)

and E[B], E[B^2] per cell come from the discretised compound distribution
(:func:`puhui.pricing.aggregate.annual_benefit_moments`). Money here is in yuan, as
floats: pricing estimates, it does not pay.

Rating factors are chosen by the data: a factor enters only when each of its levels has
at least ``min_level_events`` events (for age, the coarse ``age_group`` is tried when the
bands are too thin), so sparse benefits (proton, CAR-T) get an intercept-only model
rather than a fit that runs to minus infinity on an empty level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.pricing.aggregate import annual_benefit_moments_of
from puhui.pricing.frequency import PoissonFrequency
from puhui.pricing.severity import GammaSeverity
from puhui.pricing.tail import SplicedSeverity
from puhui.products.model import Product

#: Rating factors in order of preference (all categorical).
RATING_FACTORS = ("age_band", "gender", "insutype", "retired", "preexisting", "prior_stay")
#: Coarse age groups (lower bounds) used when age bands are too thin.
AGE_GROUPS = (0, 41, 61, 76)


def age_group(age) -> pd.Categorical:
    """0-40, 41-60, 61-75, 76+.

    >>> list(age_group([3, 41, 75, 99]))
    ['0-40', '41-60', '61-75', '76+']
    """
    edges = list(AGE_GROUPS) + [200]
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-2], edges[1:-1])] + [f"{AGE_GROUPS[-1]}+"]
    return pd.cut(np.asarray(age), bins=edges, right=False, labels=labels)


@dataclass(frozen=True)
class GroupTerms:
    """The annual terms a pricing group's joint sum is priced with (yuan)."""

    id: str
    benefits: tuple[str, ...]
    deductible: float
    ratio: float
    preexisting_ratio: float
    limit: float
    note: str = ""


def _amount(raw, key) -> tuple[float, str | None]:
    v = raw.get(key)
    if v is None:
        return (0.0 if key == "deductible" else np.inf), None
    if isinstance(v, dict):
        return float(v["amount"]), v.get("shared")
    return float(v), None


def pricing_groups(product: Product, weights: dict[str, float] | None = None) -> list[GroupTerms]:
    """Benefits joined by a shared deductible or limit form one group.

    A single benefit's terms are its own (the first-year deductible: claim-free
    reductions are not priced, which errs on the side of cost). A group of several
    benefits is priced on their joint sum with the shared deductible, the
    eligible-weighted ratio (``weights``: eligible amounts by benefit) and the shared
    limit, or the sum of the members' limits when they are separate; this is an
    approximation and the group's ``note`` says so.
    """
    bens = product.benefits
    parent = {b.id: b.id for b in bens}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    owner: dict[str, str] = {}
    for b in bens:
        for key in ("deductible", "limit"):
            _, shared = _amount(b.raw, key)
            if shared:
                name = f"{key}:{shared}"
                if name in owner:
                    parent[find(b.id)] = find(owner[name])
                else:
                    owner[name] = b.id
    groups: dict[str, list] = {}
    for b in bens:
        groups.setdefault(find(b.id), []).append(b)
    out = []
    for members in groups.values():
        ids = tuple(b.id for b in members)
        ded = max(_amount(b.raw, "deductible")[0] for b in members)
        if len(members) == 1:
            b = members[0]
            r = float(b.raw["ratio"])
            out.append(GroupTerms(b.id, ids, ded, r, float(b.raw.get("preexisting_ratio", r)),
                                  _amount(b.raw, "limit")[0]))
            continue
        w = np.array([max((weights or {}).get(b.id, 0.0), 0.0) for b in members])
        w = w / w.sum() if w.sum() > 0 else np.full(len(members), 1 / len(members))
        r = float(sum(wi * float(b.raw["ratio"]) for wi, b in zip(w, members)))
        pre = float(sum(wi * float(b.raw.get("preexisting_ratio", b.raw["ratio"]))
                        for wi, b in zip(w, members)))
        limits = {}
        for b in members:
            amt, shared = _amount(b.raw, "limit")
            limits[shared or b.id] = amt
        out.append(GroupTerms("+".join(ids), ids, ded, r, pre, float(sum(limits.values())),
                              note="priced jointly (shared deductible or limit): eligible-"
                                   "weighted ratio, limits added where separate"))
    return out


def choose_factors(frame: pd.DataFrame, count: str, candidates=RATING_FACTORS,
                   min_level_events: int = 5) -> tuple[str, ...]:
    """The candidate factors each of whose levels has ``min_level_events`` events;
    ``age_group`` stands in for ``age_band`` when the bands are too thin."""
    chosen = []
    for f in candidates:
        options = [f, "age_group"] if f == "age_band" else [f]
        for opt in options:
            by = frame.groupby(opt, observed=True)[count].sum()
            if len(by) > 1 and by.min() >= min_level_events:
                chosen.append(opt)
                break
    return tuple(chosen)


def predict_by_cell(predict, frame: pd.DataFrame, factors) -> np.ndarray:
    """``predict`` evaluated once per distinct combination of ``factors`` and spread
    back to the rows of ``frame`` (a model formula over ten million rows is slow)."""
    if not factors:
        return np.repeat(predict(frame.iloc[:1]), len(frame))
    g = frame.groupby(list(factors), observed=True, sort=False)
    combos = g.size().reset_index()[list(factors)]
    return predict(combos)[g.ngroup().to_numpy()]


def negbin_alpha(frame: pd.DataFrame, count: str, rate: np.ndarray) -> float:
    """Moment estimate of the NB2 dispersion given fitted rates per unit exposure::

        mu_i = exposure_i rate_i,   alpha = sum[(n_i - mu_i)^2 - n_i] / sum mu_i^2

    (0 when the counts are not over-dispersed: a Poisson count).
    """
    n = frame[count].to_numpy(dtype=float)
    mu = frame["exposure"].to_numpy(dtype=float) * rate
    denom = float(np.dot(mu, mu))
    if denom <= 0:
        return 0.0
    return max(0.0, float(((n - mu) ** 2 - n).sum()) / denom)


@dataclass
class ClaimKind:
    """Frequency and severity of one kind of claim (inpatient stays, or outpatient
    settlements and drug purchases) of a pricing group."""

    name: str
    factors: tuple[str, ...]
    frequency: PoissonFrequency
    alpha: float
    severity: GammaSeverity
    shape: SplicedSeverity
    events: int


class BenefitCostModel:
    """Frequency x severity for one pricing group, and its annual benefit per cell.

    The group's claims are split by kind, inpatient and outpatient, each with its own
    frequency, severity and tail: a stay's self-pay is about fifteen times a monthly
    outpatient settlement's, and people with many settlements have small ones, so one
    severity for both would put far too much of the annual sum above a deductible. The
    annual sum is the sum of the kinds' independent compound sums.

    Parameters
    ----------
    factors : rating factors, or None to choose them from the data (:func:`choose_factors`)
    threshold_quantile, min_exceedances : the severity tail (:class:`SplicedSeverity`)
    min_level_events : thinnest level a chosen factor may have
    grid : points of the discretised annual sum

    Attributes (after ``fit``)
    --------------------------
    kinds_ : one :class:`ClaimKind` per kind of claim with events (empty: no events);
    events_, exposure_ : totals seen
    """

    def __init__(self, factors=None, threshold_quantile: float = 0.95,
                 min_exceedances: int = 50, min_level_events: int = 5, grid: int = 2 ** 15):
        self.factors = factors
        self.threshold_quantile = threshold_quantile
        self.min_level_events = min_level_events
        self.min_exceedances = min_exceedances
        self.grid = grid

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame, amount: str = "amount",
            kind: str = "inpatient") -> "BenefitCostModel":
        """``frame``: one row per person-year (``psn_no``, ``year``, the factors,
        ``exposure``); ``events``: one row per event (``psn_no``, ``year``, the factors,
        its amount in yuan, > 0, and a ``kind`` column whose values split the claims)."""
        self.events_ = int(len(events))
        self.exposure_ = float(frame["exposure"].sum())
        self.kinds_: list[ClaimKind] = []
        key = pd.MultiIndex.from_arrays([frame["psn_no"], frame["year"]])
        for value, ev in events.groupby(kind, sort=True):
            counts = ev.groupby(["psn_no", "year"]).size()
            f = frame.assign(_count=counts.reindex(key, fill_value=0).to_numpy())
            factors = (tuple(self.factors) if self.factors is not None
                       else choose_factors(f, "_count", min_level_events=self.min_level_events))
            freq = PoissonFrequency(factors).fit(f, "_count")
            alpha = negbin_alpha(f, "_count", predict_by_cell(freq.predict, f, factors))
            sev = GammaSeverity(factors).fit(ev, amount)
            z = ev[amount].to_numpy(dtype=float) / predict_by_cell(sev.predict, ev, factors)
            shape = SplicedSeverity(self.threshold_quantile, self.min_exceedances).fit(z)
            name = {True: "inpatient", False: "outpatient"}.get(value, str(value))
            self.kinds_.append(ClaimKind(name, factors, freq, alpha, sev, shape, len(ev)))
        return self

    def rates(self, cells: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per kind: expected events per year and mean amount per event, per cell."""
        return [(k.frequency.predict(cells), k.severity.predict(cells)) for k in self.kinds_]

    def moments(self, cells: pd.DataFrame, terms: GroupTerms, frequency_factor: float = 1.0,
                severity_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """E[B] and E[B^2] per cell (yuan, one full policy year), with the frequency and
        severity optionally scaled (trend, what-if, sensitivities)."""
        m1, m2 = np.zeros(len(cells)), np.zeros(len(cells))
        if not self.kinds_:
            return m1, m2
        rates = self.rates(cells)
        pre = cells["preexisting"].astype(int).to_numpy() == 1
        for i in range(len(cells)):
            comps = [(k.shape.limited_mean, mu[i] * severity_factor, lam[i] * frequency_factor,
                      1.0 / k.alpha if k.alpha > 0 else None)
                     for k, (lam, mu) in zip(self.kinds_, rates)]
            r = terms.preexisting_ratio if pre[i] else terms.ratio
            m1[i], m2[i] = annual_benefit_moments_of(comps, terms.deductible, r, terms.limit,
                                                     n=self.grid)
        return m1, m2
