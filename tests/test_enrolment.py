"""Take-up and renewal models and the death-spiral projection.

Reference values: the cell (binomial counts) logistic fit against statsmodels' Logit on
the person-level rows (an independent likelihood; binomial counts by cell are
sufficient); the transition and spiral arithmetic worked by hand.
"""

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.enrolment import (
    EnrolmentModel,
    LogisticCells,
    claim_free_shares,
    spiral,
    with_previous_enrolment,
)


def _people(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    pre = (rng.random(n) < 0.2).astype(int)
    age = np.where(rng.random(n) < 0.5, "18-30", "61-70")
    p1 = 1 / (1 + np.exp(-(-1.0 + 0.8 * pre + 0.5 * (age == "61-70"))))
    e1 = rng.random(n) < p1
    renew = 1 / (1 + np.exp(-(0.5 + 1.5 * pre)))
    entry = 1 / (1 + np.exp(-(-2.0 + 0.8 * pre)))
    e2 = np.where(e1, rng.random(n) < renew, rng.random(n) < entry)
    base = pd.DataFrame({"psn_no": np.arange(n).astype(str), "age_band": age, "gender": "1",
                         "insutype": "310", "preexisting": pre, "prior_stay": 0})
    return pd.concat([base.assign(year=2024, enrolled=e1), base.assign(year=2025, enrolled=e2)],
                     ignore_index=True)


def test_cell_logistic_equals_the_row_fit():
    import statsmodels.formula.api as smf

    f = _people()
    cell = LogisticCells(("age_band", "preexisting")).fit(f, "enrolled")
    rows = smf.logit("enrolled ~ C(age_band) + C(preexisting)",
                     data=f.assign(enrolled=f["enrolled"].astype(int))).fit(disp=0)
    assert np.allclose(cell.params_.to_numpy(), rows.params.to_numpy(), atol=1e-6)
    assert np.allclose(cell.bse_.to_numpy(), rows.bse.to_numpy(), rtol=1e-4)


def test_previous_enrolment_and_renewal_rates():
    f = with_previous_enrolment(_people())
    assert f.loc[f["year"] == 2024, "prev_enrolled"].isna().all()
    m = EnrolmentModel(("preexisting",)).fit(_people())
    cells = pd.DataFrame({"preexisting": [0, 1]})
    renew = m.renewal_.predict(cells)
    assert renew == pytest.approx(1 / (1 + np.exp(-np.array([0.5, 2.0]))), abs=0.02)
    # E = enrolled renew + (people - enrolled) entry, by hand
    entry = m.entry_.predict(cells)
    got = m.transition(cells, np.array([10.0, 4.0]), np.array([100.0, 10.0]))
    assert got == pytest.approx([10 * renew[0] + 90 * entry[0], 4 * renew[1] + 6 * entry[1]])


def test_enrolment_model_counts_equal_fits_on_the_renewal_and_entry_rows():
    """EnrolmentModel counts renewals and entries by cell in one pass; the same as
    LogisticCells on the explicit row subsets: the years after the first (the first
    data year is look-back only), split by the previous year's enrolment."""
    people = _people()
    factors = ("age_band", "preexisting")
    m = EnrolmentModel(factors).fit(people)
    f = with_previous_enrolment(people)
    later = f[f["year"] > 2024]
    renew = later[later["prev_enrolled"] == 1]
    entry = later[later["prev_enrolled"].isna() | (later["prev_enrolled"] == 0)]
    for got, rows in ((m.renewal_, renew), (m.entry_, entry)):
        ref = LogisticCells(factors).fit(rows, "enrolled")
        pd.testing.assert_frame_equal(got.cells_, ref.cells_)
        assert np.array_equal(got.params_.to_numpy(), ref.params_.to_numpy())
    assert m.renewal_rate_ == float(renew["enrolled"].mean())
    assert m.entry_rate_ == float(entry["enrolled"].mean())
    assert m.fit_years_ == [2025] and m.launch_year_ == 2024
    first = f[f["year"] == 2024]
    assert m.launch_rate_ == float(first["enrolled"].mean())


def test_spiral_drives_the_healthy_out_when_the_price_rises():
    m = EnrolmentModel(("preexisting", "prior_stay")).fit(_people())
    cells = pd.DataFrame({"preexisting": [0, 1], "prior_stay": [0, 0]})
    people = np.array([8000.0, 2000.0])
    enrolled = np.array([2500.0, 1500.0])
    cost = np.array([50.0, 600.0])          # the sick cost twelve times the healthy
    s = spiral(m, cells, people, enrolled, cost, p_ref=100.0, target_lr=0.85, trend=0.0,
               beta_healthy=-2.0, beta_other=-0.2, years=5)
    assert len(s) == 5
    assert s["share_healthy"].iloc[-1] < s["share_healthy"].iloc[0]
    assert s["premium"].is_monotonic_increasing
    # price held: the year-1 loss ratio is the mix cost over the held price
    held = spiral(m, cells, people, enrolled, cost, 100.0, 0.85, 0.0, -2.0, -0.2, years=1,
                  fixed_price=100.0)
    assert held["loss_ratio"].iloc[0] == pytest.approx(held["cost_per_policy"].iloc[0] / 100.0)


def test_claim_free_shares_by_hand():
    """Cell x: 4 enrolled, next claim-free years 0, 2, 2, 3; 3 expected renewals of 6
    expected policies -> step 2 (years 2) share 3 x 2/4 / 6 = 0.25, step 3 (3+) 3 x 1/4
    / 6 = 0.125. Cell y: nobody enrolled -> 0."""
    last = pd.DataFrame({"c": ["x", "x", "x", "x", "y"],
                         "enrolled": [True, True, True, True, False]})
    cells = pd.DataFrame({"c": ["x", "y"]})
    got = claim_free_shares(last, np.array([0, 2, 2, 3, 5]), cells, ["c"],
                            ((2, 11000.0), (3, 10000.0)), np.array([3.0, 0.0]),
                            np.array([6.0, 2.0]))
    np.testing.assert_allclose(got, [[0.25, 0.125], [0.0, 0.0]])


def test_levels_no_cell_has_leave_the_fit_regular_and_predict_as_the_reference():
    # a product for ages 60-100: the younger bands of the categorical are empty, and the
    # renewals have no 51-60 cell (people of 60 renewed from 59, not taken)
    import warnings

    from puhui.pricing.frequency import age_band

    cells = pd.DataFrame({"age_band": age_band([65, 75, 85, 65, 75, 85]),
                          "gender": ["1", "1", "1", "2", "2", "2"],
                          "successes": [30, 40, 50, 35, 45, 60], "trials": [100] * 6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = LogisticCells(("age_band", "gender")).fit_cells(cells)
    assert list(m.levels_["age_band"]) == ["61-70", "71-80", "81+"]
    p = m.predict(pd.DataFrame({"age_band": age_band([60, 65]), "gender": ["1", "1"]}))
    assert p[0] == pytest.approx(p[1])           # 51-60 unseen: as the reference, 61-70
    assert m.predict(cells) == pytest.approx(m.cells_["fitted"].to_numpy())
