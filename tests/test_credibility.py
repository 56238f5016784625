"""Bühlmann-Straub credibility: the hand-worked cases are doctests in
puhui.pricing.credibility; here its defining properties and, by simulation from a
known two-level model, the unbiasedness of its structural parameters and its smaller
error than either the raw cell means or the collective mean."""

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.credibility import buhlmann_straub, credibility_factors


def _two_level(rng, groups=40, periods=4, mu=1.0, a=0.04, s2=2.0, w_lo=5.0, w_hi=200.0):
    """X_ij = theta_i + e_ij, theta_i ~ N(mu, a), e_ij ~ N(0, s2 / w_ij)."""
    theta = rng.normal(mu, np.sqrt(a), groups)
    w = rng.uniform(w_lo, w_hi, (groups, periods))
    x = theta[:, None] + rng.normal(0, 1, (groups, periods)) * np.sqrt(s2 / w)
    d = pd.DataFrame({"g": np.repeat(np.arange(groups), periods), "x": x.ravel(), "w": w.ravel()})
    return d, theta


def test_no_between_variation_gives_everyone_the_collective():
    d = pd.DataFrame({"g": list("aabb"), "x": [1.0, 1.2, 1.2, 1.0], "w": 1.0})
    t, p = buhlmann_straub(d, "g", "x", "w")
    assert p["between"] <= 0
    assert (t["Z"] == 0).all()
    assert t["estimate"].tolist() == pytest.approx([1.1, 1.1])


def test_more_weight_more_credibility():
    rng = np.random.default_rng(1)
    d, _ = _two_level(rng)
    t, _ = buhlmann_straub(d, "g", "x", "w")
    order = np.argsort(t["weight"].to_numpy())
    assert np.all(np.diff(t["Z"].to_numpy()[order]) >= 0)
    assert ((t["Z"] > 0) & (t["Z"] < 1)).all()


def test_structural_parameters_are_unbiased_and_credibility_beats_both_extremes():
    """Over 300 simulated portfolios from the known model (a = 0.04, sigma2 = 2.0):
    the mean estimates are within 10 % of the truth, and the credibility estimate has a
    smaller mean squared error against theta than the raw means or the collective."""
    rng = np.random.default_rng(7)
    within, between, mse = [], [], np.zeros(3)
    for _ in range(300):
        d, theta = _two_level(rng)
        t, p = buhlmann_straub(d, "g", "x", "w")
        within.append(p["within"])
        between.append(p["between"])
        mse += [np.mean((t["estimate"] - theta) ** 2), np.mean((t["mean"] - theta) ** 2),
                np.mean((p["collective"] - theta) ** 2)]
    assert np.mean(within) == pytest.approx(2.0, rel=0.10)
    assert np.mean(between) == pytest.approx(0.04, rel=0.10)
    assert mse[0] < mse[1] and mse[0] < mse[2]


def test_factors_keep_the_collective_level_and_thin_cells_near_one():
    rng = np.random.default_rng(3)
    n = 20000
    keys = pd.DataFrame({"band": rng.choice(["a", "b", "c"], n, p=[0.49, 0.49, 0.02])})
    year = rng.integers(2023, 2025, n)
    expected = np.full(n, 100.0)
    true_ae = keys["band"].map({"a": 0.8, "b": 1.2, "c": 3.0}).to_numpy()
    actual = rng.gamma(2.0, expected * true_ae / 2.0)
    f, p = credibility_factors(keys, year, actual, expected, ("band",))
    f = f.set_index("band")
    # large cells move nearly all the way; the thin cell c much less than its raw A/E
    assert f.loc["a", "Z"] > 0.9 and f.loc["b", "Z"] > 0.9
    assert f.loc["c", "Z"] < f.loc["a", "Z"]
    raw_c = f.loc["c", "actual_to_expected"] / p["collective"]
    assert 1.0 < f.loc["c", "factor"] < raw_c
    # weighted by expected, the credibility estimates average near the collective
    avg = np.average(f["estimate"], weights=f["expected"])
    assert avg == pytest.approx(p["collective"], rel=0.02)
    assert f["person_years"].sum() == n
