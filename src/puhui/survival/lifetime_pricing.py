"""Lifetime pricing of a renewable cover (the elderly product: entry 60-80, renewable
to 100): one small function per actuarial quantity, each with its formula.

Timing (stated because it moves every figure): policy year t = 0, 1, ... runs from
age x + t to x + t + 1; premiums are paid at the start of the year by the policies in
force then; a year's claims are paid at its end (``claim_timing`` 1.0; 0.5 puts them
mid-year); deaths and lapses happen during the year, and a policy that dies or lapses
in year t has its claims of year t (the expected annual claims per policy in force at
the start, ``claims[t]``, already carry the part-year of those who leave).

Quantities, with v = 1 / (1 + i):

- in force at the start of year t:  l_t = prod_{s<t} (1 - qd_s)(1 - ql_s),  l_0 = 1
- present value of claims:          PVC = sum_t v^(t + c) l_t C_t
- premium annuity:                  a = sum_t v^t l_t
- level premium:                    P = PVC / a
- natural (step) premium of year t: C_t v^c (each year pays for itself)
- reserve per policy in force at the start of year t, before its premium:
      V_t = (sum_{s>=t} v^(s - t + c) l_s C_s - P sum_{s>=t} v^(s - t) l_s) / l_t

A toy case worked by hand is in tests/test_lifetime_pricing.py.

``puhui price`` uses them for a renewable cover through :mod:`puhui.pricing.lifetime`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def discount_factors(rate: float, n: int, shift: float = 0.0) -> np.ndarray:
    """v^(t + shift) for t = 0..n-1, v = 1 / (1 + rate).

    >>> discount_factors(0.1, 2, shift=1.0).round(6).tolist()
    [0.909091, 0.826446]
    """
    return (1.0 + rate) ** -(np.arange(n) + shift)


def in_force(q_death, q_lapse=0.0) -> np.ndarray:
    """l_t: policies in force at the start of each year per policy written.

    >>> in_force([0.1, 0.2, 0.3]).round(6).tolist()
    [1.0, 0.9, 0.72]
    """
    qd = np.asarray(q_death, dtype=float)
    ql = np.broadcast_to(np.asarray(q_lapse, dtype=float), qd.shape)
    stay = (1 - qd) * (1 - ql)
    return np.concatenate([[1.0], np.cumprod(stay)[:-1]])


def pv_claims(claims, l, rate: float, claim_timing: float = 1.0) -> float:
    """PVC = sum_t v^(t + c) l_t C_t."""
    c = np.asarray(claims, dtype=float)
    return float(np.sum(discount_factors(rate, len(c), claim_timing) * l * c))


def premium_annuity(l, rate: float) -> float:
    """a = sum_t v^t l_t (a premium of 1 a year while in force)."""
    l = np.asarray(l, dtype=float)
    return float(np.sum(discount_factors(rate, len(l)) * l))


def level_premium(claims, l, rate: float, claim_timing: float = 1.0) -> float:
    """P = PVC / a: the level annual premium for the whole term (no loads)."""
    return pv_claims(claims, l, rate, claim_timing) / premium_annuity(l, rate)


def natural_premiums(claims, rate: float, claim_timing: float = 1.0) -> np.ndarray:
    """C_t v^c: each year's own cost, paid at its start."""
    return np.asarray(claims, dtype=float) * (1.0 + rate) ** -claim_timing


def reserves(claims, l, premium: float, rate: float, claim_timing: float = 1.0) -> np.ndarray:
    """V_t per policy in force at the start of year t, before that year's premium
    (prospective: expected claims to come less premiums to come, discounted to t)."""
    c = np.asarray(claims, dtype=float)
    l = np.asarray(l, dtype=float)
    n = len(c)
    out = np.zeros(n)
    for t in range(n):
        v_c = discount_factors(rate, n - t, claim_timing)
        v_p = discount_factors(rate, n - t)
        out[t] = (np.sum(v_c * l[t:] * c[t:]) - premium * np.sum(v_p * l[t:])) / l[t]
    return out


def step_rated_premiums(claims, l, ages, bands, rate: float,
                        claim_timing: float = 1.0) -> list[dict]:
    """A premium per age band, each band paying for its own years:
    P_band = sum_{t in band} v^(t + c) l_t C_t / sum_{t in band} v^t l_t."""
    c, l, ages = (np.asarray(v, dtype=float) for v in (claims, l, ages))
    vc = discount_factors(rate, len(c), claim_timing)
    vp = discount_factors(rate, len(c))
    out = []
    for lo, hi in bands:
        on = (ages >= lo) & (ages <= hi)
        a = float(np.sum(vp[on] * l[on]))
        out.append({"min_age": lo, "max_age": hi,
                    "premium": float(np.sum(vc[on] * l[on] * c[on])) / a if a > 0 else None})
    return out


def projection(entry_age: int, max_age: int, claims_by_age, q_death_by_age,
               q_lapse: float, rate: float, trend: float = 0.0,
               claim_timing: float = 1.0) -> pd.DataFrame:
    """Year by year from ``entry_age`` to ``max_age``: attained age, in force, expected
    claims per policy in force (``claims_by_age`` at that age, grown by ``trend`` a
    year), natural premium, the level premium and the reserve it implies.
    ``claims_by_age`` and ``q_death_by_age``: callables of an age array."""
    ages = np.arange(entry_age, max_age + 1)
    t = ages - entry_age
    claims = np.asarray(claims_by_age(ages), dtype=float) * (1 + trend) ** t
    qd = np.asarray(q_death_by_age(ages), dtype=float)
    l = in_force(qd, q_lapse)
    p = level_premium(claims, l, rate, claim_timing)
    return pd.DataFrame({"year": t, "age": ages, "in_force": l, "q_death": qd,
                         "claims": claims,
                         "natural_premium": natural_premiums(claims, rate, claim_timing),
                         "level_premium": p,
                         "reserve": reserves(claims, l, p, rate, claim_timing)})
