"""Portfolios simulated from a known frequency and severity by cell, to check that the
pricing chain recovers the pure premium it was generated from (tests and
``benchmarks/bench_truth_recovery.py``).

Two kinds of claims, as in the fund data: inpatient (rare, large) and outpatient
(frequent, small). Per person-year and kind::

    N ~ negative binomial (mean lambda_c, size 1 / alpha)   (gamma-mixed Poisson)
    X ~ gamma (mean mu_c, shape k)

with multiplicative effects of age band and pre-existing condition. The true pure
premium of the annual benefit min(r (S - d)+, L) per cell is computed from these
distributions (gamma limited means in closed form, compounded by FFT: the FFT itself is
tested against closed forms in tests/test_aggregate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.pricing.aggregate import annual_benefit_moments_of
from puhui.pricing.benefit_cost import GroupTerms

AGES = ("18-30", "41-50", "61-70")
AGE_P = (0.3, 0.4, 0.3)
PRE_P = 0.15


@dataclass(frozen=True)
class Kind:
    name: str
    base_rate: float
    rate_age: tuple[float, float, float]
    rate_pre: float
    alpha: float
    base_mean: float
    mean_age: tuple[float, float, float]
    mean_pre: float
    shape: float


KINDS = (
    Kind("inpatient", 0.08, (1.0, 1.8, 3.5), 2.0, 0.5, 6000.0, (1.0, 1.2, 1.5), 1.3, 1.5),
    Kind("outpatient", 1.5, (1.0, 1.5, 2.5), 1.8, 1.0, 300.0, (1.0, 1.1, 1.3), 1.2, 2.0),
)
TERMS = GroupTerms("benefit", ("benefit",), deductible=10_000.0, ratio=0.7,
                   preexisting_ratio=0.5, limit=200_000.0)


def cells() -> pd.DataFrame:
    """The six true cells with their population shares."""
    rows = [{"age_band": a, "preexisting": p, "share": pa * (PRE_P if p else 1 - PRE_P)}
            for a, pa in zip(AGES, AGE_P) for p in (0, 1)]
    return pd.DataFrame(rows)


def _rate(k: Kind, age_i: np.ndarray, pre: np.ndarray) -> np.ndarray:
    return k.base_rate * np.asarray(k.rate_age)[age_i] * np.where(pre == 1, k.rate_pre, 1.0)


def _mean(k: Kind, age_i: np.ndarray, pre: np.ndarray) -> np.ndarray:
    return k.base_mean * np.asarray(k.mean_age)[age_i] * np.where(pre == 1, k.mean_pre, 1.0)


def gamma_limited_mean(shape: float):
    """E[min(Z, z)] for Z ~ gamma(shape, scale 1 / shape) (mean 1)::

        E[min(Z, z)] = F_{shape+1}(z) + z (1 - F_shape(z))   (F with scale 1 / shape)
    """
    from scipy.stats import gamma

    def lev(z):
        z = np.asarray(z, dtype=float)
        return gamma.cdf(z, shape + 1, scale=1 / shape) + z * gamma.sf(z, shape, scale=1 / shape)

    return lev


def true_cell_premiums(terms: GroupTerms = TERMS, grid: int = 2 ** 15) -> pd.DataFrame:
    """E[B] per true cell."""
    c = cells()
    age_i = np.array([AGES.index(a) for a in c["age_band"]])
    pre = c["preexisting"].to_numpy()
    out = []
    for i in range(len(c)):
        comps = [(gamma_limited_mean(k.shape), float(_mean(k, age_i[i:i + 1], pre[i:i + 1])[0]),
                  float(_rate(k, age_i[i:i + 1], pre[i:i + 1])[0]), 1 / k.alpha) for k in KINDS]
        r = terms.preexisting_ratio if pre[i] else terms.ratio
        out.append(annual_benefit_moments_of(comps, terms.deductible, r, terms.limit, n=grid)[0])
    return c.assign(pure_premium=out)


def true_pure_premium(terms: GroupTerms = TERMS) -> float:
    t = true_cell_premiums(terms)
    return float(np.dot(t["share"], t["pure_premium"]))


def simulate(person_years: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame, events): one row per person-year (psn_no, year, exposure 1, age_band,
    gender with no effect, preexisting) and one row per claim (psn_no, year, the
    factors, amount, inpatient)."""
    rng = np.random.default_rng(seed)
    n = person_years
    age_i = rng.choice(3, size=n, p=AGE_P)
    pre = (rng.random(n) < PRE_P).astype(int)
    gender = np.where(rng.random(n) < 0.5, "1", "2")
    frame = pd.DataFrame({"psn_no": np.arange(n).astype(str), "year": 2025, "exposure": 1.0,
                          "age_band": np.asarray(AGES)[age_i], "gender": gender,
                          "preexisting": pre})
    parts = []
    for k in KINDS:
        lam = _rate(k, age_i, pre) * rng.gamma(1 / k.alpha, k.alpha, size=n)
        count = rng.poisson(lam)
        who = np.repeat(np.arange(n), count)
        mean = _mean(k, age_i[who], pre[who])
        amount = rng.gamma(k.shape, mean / k.shape)
        parts.append(pd.DataFrame({"psn_no": frame["psn_no"].to_numpy()[who], "year": 2025,
                                   "age_band": frame["age_band"].to_numpy()[who],
                                   "gender": gender[who], "preexisting": pre[who],
                                   "amount": amount, "inpatient": k.name == "inpatient"}))
    return frame, pd.concat(parts, ignore_index=True)


def estimate(frame: pd.DataFrame, events: pd.DataFrame, seed: int, sims: int = 2000,
             level: float = 0.90, terms: GroupTerms = TERMS):
    """Fit the pricing chain (:class:`~puhui.pricing.benefit_cost.BenefitCostModel`,
    factors chosen from the data) and return (pure premium over the frame's mix, lower,
    upper) of the parameter-uncertainty interval."""
    from puhui.pricing.benefit_cost import BenefitCostModel

    model = BenefitCostModel(factors=("age_band", "gender", "preexisting")).fit(frame, events)
    grid = frame.groupby(["age_band", "gender", "preexisting"]).size().reset_index(name="w")
    w = grid["w"].to_numpy(dtype=float)
    m1, _ = model.moments(grid, terms)
    pure = float(np.dot(w, m1) / w.sum())
    draws = pure * model.cost_draws(grid, terms, w, np.random.default_rng(seed), sims)
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return pure, float(lo), float(hi)
