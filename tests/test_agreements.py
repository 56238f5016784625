"""Outcome-based drug agreements: hand-worked refunds in each region, and the expected
refund from an exponential survival curve against numerical integration of the refund
rule over the exponential density (scipy.integrate.quad, independent of the closed
form the code uses)."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from puhui.survival.agreements import (
    FULL,
    MONTH_DAYS,
    NONE,
    PARTIAL,
    PENDING,
    Agreement,
    expected_refund_share,
    exponential_survival,
    quarterly_refunds,
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
    q = quarterly_refunds(A, pts, as_of=_at(24))
    assert q[["quarter", "patients", "refund_fen"]].values.tolist() == [
        ["2024Q3", 1, 10_000_000], ["2025Q2", 1, 5_000_000]]


def test_progression_free_variant_and_rounding():
    """PFS: progression at 8 months, death at 30 -> full refund (the earlier event);
    a partial share of 33.33 % of 1 fen-odd cost rounds half up in whole fen."""
    a = Agreement("X", 12, 18, 3333, endpoint="pfs")
    pts = pd.DataFrame({"start": pd.Timestamp("2024-01-01"), "cost_fen": [1_000_001, 1_000_001],
                        "death_date": [_at(30), _at(14)],
                        "progression_date": [_at(8), None]})
    r = refunds_due(a, pts, as_of=_at(40))
    assert r["outcome"].tolist() == [FULL, PARTIAL]
    assert r["refund_fen"].tolist() == [1_000_001, (1_000_001 * 3333 + 5000) // 10_000]


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


def test_bad_terms_are_refused():
    with pytest.raises(ValueError, match="median"):
        Agreement("X", 20, 10, 5000)
    with pytest.raises(ValueError, match="basis points"):
        Agreement("X", 10, 20, 12_000)
