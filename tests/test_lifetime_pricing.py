"""Lifetime pricing of a renewable cover, worked by hand (the issue's two-age toy case)
and checked for the properties a reserve must have."""

import numpy as np
import pytest

from puhui.survival.lifetime_pricing import (
    in_force,
    level_premium,
    projection,
    reserves,
    step_rated_premiums,
)


def test_two_age_toy_case_by_hand():
    """Ages 60 and 61, deaths q = 0.1 then 0.2, no lapse, claims 100 then 200 a policy
    in force (paid at the year's end), 10 % interest, v = 1/1.1.

    l = 1, 0.9. PV claims = 100 v + 0.9 x 200 v^2 = 90.909 + 148.760 = 239.669;
    annuity = 1 + 0.9 v = 1.81818; P = 239.669 / 1.81818 = 131.818.
    Reserve at 61 per survivor, before the premium: 200 v - P = 181.818 - 131.818 = 50.
    At 60 it is 0 (the premium is set so)."""
    claims, l = [100.0, 200.0], in_force([0.1, 0.2])
    assert l.tolist() == pytest.approx([1.0, 0.9])
    p = level_premium(claims, l, 0.10)
    # exactly: PVC = (110 + 180) / 1.21, a = 2 / 1.1, P = 145 / 1.1
    assert p == pytest.approx(145 / 1.1, rel=1e-12)
    assert reserves(claims, l, p, 0.10) == pytest.approx([0.0, 50.0], abs=1e-9)
    # step-rated: each age pays for itself: 100 v and 200 v
    s = step_rated_premiums(claims, l, [60, 61], [(60, 60), (61, 61)], 0.10)
    assert [b["premium"] for b in s] == pytest.approx([90.909091, 181.818182])


def test_reserve_recursion_holds_year_by_year():
    """(V_t + P)(1 + i) = C_t + p_t V_{t+1} (p_t = chance to stay in force), the
    recursion every prospective reserve satisfies."""
    proj = projection(60, 100, lambda a: 800 * 1.08 ** (a - 60),
                      lambda a: np.minimum(0.005 * 1.1 ** (a - 60), 1.0), q_lapse=0.05,
                      rate=0.03, trend=0.04)
    V, P, C = proj["reserve"].to_numpy(), proj["level_premium"].iloc[0], proj["claims"].to_numpy()
    stay = (1 - proj["q_death"].to_numpy()) * 0.95
    lhs = (V[:-1] + P) * 1.03
    rhs = C[:-1] + stay[:-1] * V[1:]
    assert lhs == pytest.approx(rhs, rel=1e-9)
    assert V[0] == pytest.approx(0.0, abs=1e-6) and V.max() > 0    # front-loaded
    # lower mortality (the 2025 table's 20-30 % improvement) raises the level premium
    # of rising claims: more policies live to the expensive ages
    better = projection(60, 100, lambda a: 800 * 1.08 ** (a - 60),
                        lambda a: 0.75 * np.minimum(0.005 * 1.1 ** (a - 60), 1.0),
                        q_lapse=0.05, rate=0.03, trend=0.04)
    assert better["level_premium"].iloc[0] > P
