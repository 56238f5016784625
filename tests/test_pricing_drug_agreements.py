"""Expected refunds of drug agreements in the price (puhui.pricing.drug_agreements).

Reference values: a Kaplan-Meier curve of simulated exponential survival times against
the closed form of the same exponential (the agreement's rule integrated in
tests/test_agreements.py); the sample's pricing.json against its own identities."""

import numpy as np
import pandas as pd
import pytest

from puhui.fund.files import FundData
from puhui.pricing.drug_agreements import survival_curve, treated_patients
from puhui.survival.agreements import (
    Agreement,
    expected_refund_share,
    exponential_survival,
)


def _treated_city(n=20_000, median=15.0, follow_days=1200, seed=5):
    """n patients starting a drug on day 0-199 with exponential survival (median in
    months); the data ends on day ``follow_days``."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 200, n), "D")
    life = rng.exponential(median / np.log(2), n) * 365.25 / 12
    death = start + pd.to_timedelta(np.round(life), "D")
    end = pd.Timestamp("2023-01-01") + pd.Timedelta(days=follow_days)
    ids = [f"P{i:05d}" for i in range(n)]
    persons = pd.DataFrame({"psn_no": ids, "death_date": death.where(death <= end)})
    st = pd.DataFrame({"setl_id": [f"S{i}" for i in range(n)] + ["LAST"],
                       "psn_no": ids + [ids[0]], "setl_time": list(start) + [end]})
    lines = pd.DataFrame({"setl_id": [f"S{i}" for i in range(n)], "hilist_code": "SD-01"})
    return FundData(persons, None, st, lines)


def test_kaplan_meier_of_treated_patients_gives_the_exponential_refund():
    data = _treated_city()
    t = treated_patients(data, "SD-01")
    assert len(t) == 20_000 and t["died"].sum() > 14_000
    a = Agreement("SD-01", 10.7, 22.0, 5000)
    s, what, median = survival_curve(a, t, "fitted", min_deaths=20)
    assert what.startswith("Kaplan-Meier") and median is None
    want = expected_refund_share(a, exponential_survival(15.0))
    # 20,000 patients: the standard error of S(t) is under 0.004
    assert expected_refund_share(a, s) == pytest.approx(want, abs=0.012)


def test_too_few_deaths_or_too_short_a_follow_up_uses_the_published_median():
    data = _treated_city(n=200, follow_days=300)          # followed < 22 months
    t = treated_patients(data, "SD-01")
    a = Agreement("SD-01", 10.7, 22.0, 5000)
    s, what, median = survival_curve(a, t, "fitted", min_deaths=20)
    assert median == 22.0 and "published" in what and "fewer than 20" in what
    assert s(22.0) == pytest.approx(0.5)
    # a cost-timed scheme prices on its curve median when the file gives one
    pfs = Agreement("X", None, 6.0, endpoint="effect", partial_share_bp=3000)
    assert survival_curve(pfs, t, "fitted", 20, curve_median=9.0)[2] == 9.0


@pytest.mark.parametrize("mean,sd,cap", [(100.0, 50.0, 150.0), (100.0, 120.0, 50.0),
                                         (80.0, 10.0, 200.0)])
def test_expected_excess_over_a_cap_is_the_gamma_integral(mean, sd, cap):
    from scipy import integrate
    from scipy.stats import gamma

    from puhui.drug_caps import expected_excess

    a, th = (mean / sd) ** 2, sd ** 2 / mean
    want = integrate.quad(lambda s: (s - cap) * gamma.pdf(s, a, scale=th), cap, np.inf)[0]
    assert expected_excess(mean, sd ** 2, cap) == pytest.approx(want, rel=1e-6, abs=1e-9)
