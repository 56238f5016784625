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


# --- a launch year alone: borrowed renewal by health (issue 18) -------------------------

def test_assumed_renewal_mix_by_hand_two_cells():
    """Two cells, renewal 0.5 healthy and 0.9 sick, year 2 = 0.7 x launch.

    A: 200 healthy (80 enrolled) and 20 sick (10 enrolled), take-up 0.3;
    B: 50 healthy (10 enrolled) and 50 sick (30 enrolled), take-up 0.6.
    Renewals: A 80 x 0.5 + 10 x 0.9 = 49; B 10 x 0.5 + 30 x 0.9 = 32; 81 in all.
    Year 2: 0.7 x 130 = 91, so 10 entrants over 130 x 0.3 + 60 x 0.6 = 75: k = 2/15,
    entry A 0.04, B 0.08; E = 49 + 5.2 = 54.2 and 32 + 4.8 = 36.8.
    Sick: 40 of 130 at launch (30.8 %); next year 40 x 0.9 + 10 x 0.04 + 20 x 0.08 = 38
    of 91 (41.8 %): the healthy lapse moves the mix to the sick."""
    from puhui.pricing.enrolment import assumed_renewal_mix

    m = assumed_renewal_mix(np.array([[200, 20], [50, 50]]), np.array([[80, 10], [10, 30]]),
                            np.array([0.3, 0.6]), 0.5, 0.9, 0.7)
    assert m["w"] == pytest.approx([54.2, 36.8])
    assert m["entry"] == pytest.approx([0.04, 0.08])
    assert m["renew"] == pytest.approx([49 / 90, 32 / 40])
    assert m["k"] == pytest.approx(2 / 15) and not m["capped"]
    assert (m["renewals"], m["entrants"]) == pytest.approx((81, 10))
    assert m["sick_share_launch"] == pytest.approx(40 / 130)
    assert m["sick_share_next"] == pytest.approx(38 / 91)
    # renewal alone above the year-2 size: no entrants; a gap larger than the launch's
    # take-up allows: entry capped at it
    none = assumed_renewal_mix(np.array([[200, 20], [50, 50]]),
                               np.array([[80, 10], [10, 30]]), np.array([0.3, 0.6]),
                               0.5, 0.9, 0.5)
    assert none["entrants"] == 0 and none["w"] == pytest.approx([49, 32])
    full = assumed_renewal_mix(np.array([[200, 20], [50, 50]]),
                               np.array([[80, 10], [10, 30]]), np.array([0.3, 0.6]),
                               0.5, 0.9, 2.0)
    assert full["capped"] and full["entry"] == pytest.approx([0.3, 0.6])


def test_assumed_rates_drive_the_transition_and_the_spiral():
    """The model carrying the assumed rates gives the same mix at the status quo, looks
    cells up by their keys (a subset in another order), and the spiral runs on them."""
    from puhui.pricing.enrolment import assumed_renewal_mix

    cells = pd.DataFrame({"age_band": ["18-30", "61-70"], "preexisting": [0, 1],
                          "prior_stay": [0, 0]})
    people, enrolled = np.array([[200, 20], [50, 50]]), np.array([[80, 10], [10, 30]])
    m = assumed_renewal_mix(people, enrolled, np.array([0.3, 0.6]), 0.5, 0.9, 0.7)
    model = EnrolmentModel().assume_renewal(cells, ["age_band", "preexisting"], m["renew"],
                                            m["entry"], {"file": "x"})
    n, e = people.sum(axis=1).astype(float), enrolled.sum(axis=1).astype(float)
    assert model.transition(cells, e, n) == pytest.approx(m["w"])
    back = cells.iloc[[1, 0]].reset_index(drop=True)
    assert model.probabilities(back)[1] == pytest.approx(m["renew"][::-1])
    assert model.assumed_ == {"file": "x"} and model.can_project
    sp = spiral(model, cells, n, e, np.array([100.0, 1000.0]), 129.0, 0.85, 0.0, -2.0, -0.5,
                years=2)
    assert sp["enrolled"].iloc[0] < m["w"].sum()      # the break-even price drives some out


def test_enrolment_basis_is_read_and_checked(tmp_path):
    from puhui.errors import RuleFileError
    from puhui.pricing.enrolment import load_enrolment_basis

    b = load_enrolment_basis()
    assert b["healthy"] == pytest.approx(0.15 ** 0.5, abs=1e-4)
    assert b["sick"] == pytest.approx(0.80 ** 0.5, abs=1e-4)
    assert b["year2_to_launch"] == pytest.approx(6.5 / 7.39, abs=1e-3)
    assert "[unverified]" in b["healthy_source"] and "[published]" in b["year2_to_launch_source"]
    bad = tmp_path / "e.toml"
    bad.write_text("[renewal]\nhealthy = 1.5\nsick = 0.9\n[later_entry]\nyear2_to_launch = 0.9\n")
    with pytest.raises(RuleFileError, match=r"\[renewal\] healthy = 1.5"):
        load_enrolment_basis(bad)


_GOOD = "[renewal]\nhealthy = 0.4\nsick = 0.9\n[later_entry]\nyear2_to_launch = 0.88\n"


@pytest.mark.parametrize("grid, says", [
    ('"0.6"', "is str '0.6'"), ('["0.6", 0.7]', "entry 1 of 2 is '0.6'"),
    ("[0.6, -0.1]", "entry 2 of 2 is '-0.1'"), ("[true]", "entry 1 of 1 is 'True'"),
    ("[nan]", "is 'nan'"), ("[inf]", "is 'inf'"), ("[-inf]", "is '-inf'"),
    ("[2.5]", "is '2.5'"), ("[[0.6]]", "is '[0.6]'"), ("{a = 1}", "is dict"),
    ("[1979-05-27]", "is '1979-05-27'"),
    ("[" + ", ".join(["0.5"] * 100_000 + ['"x"']) + "]", "entry 100001 of 100001 is 'x'"),
    ("[" + ", ".join(f"{i / 1000:.3f}" for i in range(1000)) + "]", "1,000|1000 distinct"),
])
def test_enrolment_basis_refuses_a_malformed_year2_sensitivity(tmp_path, grid, says):
    """Strings, negatives, bools, NaN and inf, nested lists, tables, dates, a list of
    more sizes than a report can show: RuleFileError (exit 2), the file and key named,
    the message short (the first bad entry, not a list of 100,000) (review 18, s21)."""
    from puhui.errors import RuleFileError
    from puhui.pricing.enrolment import load_enrolment_basis

    bad = tmp_path / "e.toml"
    bad.write_text(_GOOD + f"year2_sensitivity = {grid}\n")
    with pytest.raises(RuleFileError, match=r"\[later_entry\] year2_sensitivity") as e:
        load_enrolment_basis(bad)
    assert any(s in str(e.value) for s in says.split("|")) and len(str(e.value)) < 400


def test_enrolment_basis_year2_sensitivity_edges(tmp_path):
    """Left out or empty: the size priced alone; integers and duplicates (0.88 twice,
    once as the priced size) kept once, sorted; a section that is not a table refused."""
    from puhui.errors import RuleFileError
    from puhui.pricing.enrolment import load_enrolment_basis

    f = tmp_path / "e.toml"
    f.write_text(_GOOD)
    assert load_enrolment_basis(f)["year2_sensitivity"] == [0.88]
    f.write_text(_GOOD + "year2_sensitivity = []\n")
    assert load_enrolment_basis(f)["year2_sensitivity"] == [0.88]
    f.write_text(_GOOD + "year2_sensitivity = [2, 0, 0.88, 0.880, 1]\n")
    assert load_enrolment_basis(f)["year2_sensitivity"] == [0.0, 0.88, 1.0, 2.0]
    f.write_text("later_entry = 1\n[renewal]\nhealthy = 0.4\nsick = 0.9\n")
    with pytest.raises(RuleFileError, match=r"no \[later_entry\] table"):
        load_enrolment_basis(f)


def test_year2_sensitivity_is_left_out_for_a_version_priced_among_others():
    """A version priced jointly has its share of the line's mix, not the borrowed mix the
    sizes move: no sensitivity rows (they would show the line's policies as the
    version's), a note instead; the borrowed mix itself gets the rows."""
    from types import SimpleNamespace

    from puhui.pricing.enrolment import assumed_renewal_mix
    from puhui.pricing.premium import _step_borrowed_enrolment

    basis = {"healthy": 0.4, "sick": 0.9, "year2_to_launch": 0.8,
             "year2_sensitivity": [0.6, 0.8]}
    inputs = (np.array([[100, 0], [11, 30]]), np.array([[40, 0], [5, 20]]),
              np.array([0.4, 0.5]), basis)
    w = assumed_renewal_mix(*inputs[:3], 0.4, 0.9, 0.8)["w"]

    def state(mix):
        return SimpleNamespace(enrol_model=SimpleNamespace(assumed_inputs_=inputs),
                               enrol_fig={"assumed": {"launch_policies": 65}}, w=mix,
                               cell_cost=np.array([100.0, 300.0]), pure_total=192.31,
                               notes=[])

    own = state(w)
    _step_borrowed_enrolment(own)
    rows = own.enrol_fig["assumed"]["year2_sensitivity"]
    assert [r["policies"] for r in rows] == [39.0, 52.0] and own.notes == []
    version = state(w * 0.25)
    _step_borrowed_enrolment(version)
    assert "year2_sensitivity" not in version.enrol_fig["assumed"] and version.borrowed is None
    assert "sensitivity is left out" in version.notes[0]
