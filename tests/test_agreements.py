"""Outcome-based drug agreements: hand-worked refunds in each region of each scheme of
seed 000 (overall survival, delayed progression, clinical-effect date), and the
expected refund from an exponential survival curve against numerical integration of
the refund rule over the exponential density (scipy.integrate.quad, independent of the
closed form and the trapezoid rule the code uses) and against the closed forms."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from puhui.survival.agreements import (
    AFTER_MEDIAN,
    BEFORE_EFFECT,
    FULL,
    MONTH_DAYS,
    NONE,
    PARTIAL,
    PENDING,
    Agreement,
    expected_refund_share,
    exponential_survival,
    quarterly_refunds,
    refund_lines,
    refunds_due,
)

A = Agreement("C2025-05", comparator_median_months=12, drug_median_months=18,
              partial_share_bp=5000)


def _at(months):
    return pd.Timestamp("2024-01-01") + pd.Timedelta(days=round(months * MONTH_DAYS))


def test_refund_in_each_region_by_hand():
    """Cost 100,000.00 yuan each (10,000,000 fen). Dies at 6 months: all of it; at 15:
    half; at 20: nothing; alive after 10 months: pending; alive after 24: nothing."""
    pts = pd.DataFrame({"start": pd.Timestamp("2024-01-01"), "cost_fen": 10_000_000,
                        "death_date": [_at(6), _at(15), _at(20), None, None]})
    r = refunds_due(A, pts.iloc[:4], as_of=_at(21))
    assert r["outcome"].tolist()[:3] == [FULL, PARTIAL, NONE]
    assert r["refund_fen"].tolist()[:3] == [10_000_000, 5_000_000, 0]
    # the same patients seen at 10 months: only the first death is known
    early = refunds_due(A, pts, as_of=_at(10))
    assert early["outcome"].tolist() == [FULL, PENDING, PENDING, PENDING, PENDING]
    late = refunds_due(A, pts, as_of=_at(24))
    assert late["outcome"].tolist() == [FULL, PARTIAL, NONE, NONE, NONE]
    assert late["quarter"].tolist() == ["2024Q3", "2025Q2", "", "", ""]
    # the same through the drug costs the product paid (two settlements each)
    costs = pd.DataFrame({"psn_no": np.repeat(["a", "b", "c", "d", "e"], 2),
                          "date": [pd.Timestamp("2024-01-01"), _at(1)] * 5,
                          "cost_fen": [6_000_000, 4_000_000] * 5})
    deaths = pd.Series(pts["death_date"].to_numpy(), index=list("abcde"))
    lines = refund_lines(A, costs, deaths, as_of=_at(24))
    assert lines[["psn_no", "outcome", "quarter", "refund_fen"]].values.tolist() == [
        ["a", FULL, "2024Q3", 10_000_000], ["b", PARTIAL, "2025Q2", 5_000_000],
        ["c", NONE, "", 0], ["d", NONE, "", 0], ["e", NONE, "", 0]]
    q = quarterly_refunds(A, costs, deaths, as_of=_at(24))
    assert q[["quarter", "patients", "refund_fen"]].values.tolist() == [
        ["2024Q3", 1, 10_000_000], ["2025Q2", 1, 5_000_000]]


def test_progression_variant_refunds_the_cost_after_the_median_in_its_quarters():
    """Seed 000's delayed-progression scheme, PFS median 6 months: the payer pays to
    the median, the manufacturer the drug used after it. Patient a: 10,000.00 at 0, 3,
    6.5 and 8 months -> the last two refunded (20,000.00, in 2024Q3); b: costs at 0 and 2
    months only and seen at 4 months -> pending; c: 1 fen-odd at 0 and 1 month, dead ->
    no refund."""
    a = Agreement("X", None, 6, endpoint="pfs")
    costs = pd.DataFrame({
        "psn_no": ["a"] * 4 + ["b", "b", "c", "c"],
        "date": [_at(0), _at(3), _at(6.5), _at(8), _at(0) + pd.Timedelta(days=150),
                 _at(2) + pd.Timedelta(days=150), _at(0), _at(1)],
        "cost_fen": [1_000_000] * 6 + [101, 101]})
    deaths = pd.Series([_at(1.5)], index=["c"])
    r = refund_lines(a, costs, deaths, as_of=_at(9))
    assert r[["psn_no", "outcome", "quarter", "refund_fen"]].values.tolist() == [
        ["a", AFTER_MEDIAN, "2024Q3", 2_000_000], ["b", PENDING, "", 0], ["c", NONE, "", 0]]
    # costs not yet known at the date are not counted
    assert refund_lines(a, costs, deaths, as_of=_at(7))["refund_fen"].sum() == 1_000_000


def test_effect_date_variant_and_rounding():
    """Clinical-effect scheme: 33.33 % of the cost before the assessment date (4
    months), whatever happens; 1,000,001 fen before it rounds half up per quarter."""
    a = Agreement("X", None, 4, 3333, endpoint="effect")
    costs = pd.DataFrame({"psn_no": "a", "date": [_at(0), _at(0.5), _at(5)],
                          "cost_fen": [1_000_001, 0, 7_000_000]})
    r = refund_lines(a, costs, pd.Series(dtype="datetime64[ns]"), as_of=_at(12))
    assert r[["outcome", "quarter", "refund_fen"]].values.tolist() == [
        [BEFORE_EFFECT, "2024Q1", (1_000_001 * 3333 + 5000) // 10_000]]


def test_after_the_observation_horizon_nothing_is_refunded():
    a = Agreement("X", 50, 70, 5000, max_years=5)
    pts = pd.DataFrame({"start": pd.Timestamp("2020-01-01"), "cost_fen": 100,
                        "death_date": [pd.Timestamp("2025-06-01"), None]})
    assert refunds_due(a, pts, as_of="2026-01-01")["outcome"].tolist() == [NONE, NONE]


@pytest.mark.parametrize("median", [6.0, 12.0, 30.0])
def test_expected_refund_of_an_exponential_curve_is_its_integral(median):
    lam = np.log(2) / median
    share = lambda t: 1.0 if t < 12 else (0.5 if t < 18 else 0.0)
    want = sum(integrate.quad(lambda t: share(t) * lam * np.exp(-lam * t), lo, hi)[0]
               for lo, hi in ((0, 12), (12, 18)))
    assert expected_refund_share(A, exponential_survival(median)) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("median", [3.0, 9.0, 40.0])
def test_expected_refund_of_the_cost_timed_schemes_against_closed_forms(median):
    # time on the drug exponential: int_a^b S = (median / ln 2)(S(a) - S(b)), so
    # pfs: (S(m) - S(H)) / (1 - S(H)); effect: r (1 - S(m)) / (1 - S(H))
    S = exponential_survival(median)
    h = 60.0
    pfs = Agreement("X", None, 6, endpoint="pfs")
    eff = Agreement("X", None, 4, 2500, endpoint="effect")
    assert expected_refund_share(pfs, S) == pytest.approx(
        (S(6) - S(h)) / (1 - S(h)), rel=1e-5)
    assert expected_refund_share(eff, S) == pytest.approx(
        0.25 * (1 - S(4)) / (1 - S(h)), rel=1e-5)
    # and the share of spending after 6 months by quadrature of the spending rate S(t)
    after = integrate.quad(S, 6, h)[0] / integrate.quad(S, 0, h)[0]
    assert expected_refund_share(pfs, S) == pytest.approx(after, rel=1e-5)


def test_bad_terms_are_refused():
    with pytest.raises(ValueError, match="median"):
        Agreement("X", 20, 10, 5000)
    with pytest.raises(ValueError, match="basis points"):
        Agreement("X", 10, 20, 12_000)
    with pytest.raises(ValueError, match="endpoint"):
        Agreement("X", None, 20, endpoint="dfs")
    with pytest.raises(ValueError, match="comparator"):
        Agreement("X", None, 20, endpoint="os")
