"""Mortality against the CL tables (puhui.survival.mortality).

Reference values: the synthetic city draws deaths from CL1/CL2 (the truth); the exact
Poisson interval checked against scipy.stats.poisson's distribution function (an
independent computation); the Gompertz GLM against the force used to simulate."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from puhui.survival.mortality import (
    actual_to_expected,
    expected_deaths,
    fit_gompertz,
    observed_years,
    poisson_interval,
)
from puhui.synth.params import load_params
from puhui.synth.population import make_people, simulate_years


@pytest.fixture(scope="module")
def million():
    """A million people of the synthetic city followed over 2024-2025 (deaths from
    CL1/CL2 with the cancer excess normalised by age)."""
    P = load_params()
    rng = np.random.default_rng(1)
    people = make_people(1_000_000, 2024, P, rng)
    simulate_years(people, 2024, 2, P, rng)
    return observed_years(people, [2024, 2025])


def test_the_table_is_recovered_at_a_million_people(million):
    """The issue's check: A/E within 5 % for ages 60-90 (per sex, all those ages
    together), and each band's 95 % interval in 60-90 near 1."""
    old = million[(million["age"] >= 60) & (million["age"] <= 90)]
    for g, f in old.groupby("gender", observed=True):
        ae = f["died"].sum() / expected_deaths(f["gender"], f["age"]).sum()
        assert abs(ae - 1) < 0.05, (g, ae)
    t = actual_to_expected(million)
    mid = t[t["band"].isin(["60-64", "65-69", "70-74", "75-79", "80-84", "85-90"])]
    assert len(mid) == 12
    covered = ((mid["lower"] <= 1) & (mid["upper"] >= 1)).sum()
    assert covered >= 10                         # 95 % intervals: one or two may miss
    assert (mid["a_to_e"].between(0.85, 1.15)).all()


def test_poisson_interval_is_exact():
    """At the upper limit P(X <= d) = a/2, at the lower P(X >= d) = a/2."""
    d = np.array([1, 7, 40, 300])
    lo, hi = poisson_interval(d, level=0.9)
    assert stats.poisson.cdf(d, hi) == pytest.approx(0.05, rel=1e-6)
    assert stats.poisson.sf(d - 1, lo) == pytest.approx(0.05, rel=1e-6)


def test_observed_years_follow_people_until_death():
    p = pd.DataFrame({"birth_year": [1940, 1960, 1990], "gender": ["1", "2", "1"],
                      "death_date": pd.to_datetime(["2023-05-01", "2025-12-31", None])})
    o = observed_years(p, [2024, 2025])
    # person 0 died before the data: never observed; person 1 dies on the last day
    assert o["person"].tolist() == [1, 2, 1, 2]
    assert o["died"].tolist() == [False, False, True, False]
    assert o["exposure"].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_small_bands_are_not_reported():
    o = pd.DataFrame({"gender": "2", "age": [70] * 9 + [50] * 30, "died": False,
                      "exposure": 1.0})
    assert actual_to_expected(o)["band"].tolist() == ["50-59"]


def test_gompertz_glm_recovers_a_known_force():
    """Times to death drawn from mu(x) = exp(a + b x), constant within each year of age
    at its mid-year value; the Poisson GLM on deaths and years lived is the maximum
    likelihood of that model, so it recovers a and b within sampling error."""
    rng = np.random.default_rng(4)
    a, b = -10.0, 0.1
    age = rng.integers(40, 100, 400_000)
    mu = np.exp(a + b * (age + 0.5))
    t = rng.exponential(1 / mu)
    o = pd.DataFrame({"gender": "1", "age": age, "died": t < 1, "exposure": np.minimum(t, 1)})
    g = fit_gompertz(o).iloc[0]
    assert abs(g["a"] - a) < 3 * g["se_a"] and abs(g["b"] - b) < 3 * g["se_b"]


def test_kaplan_meier_with_late_entry_is_the_hand_worked_product_limit():
    """Four lives on the age scale (entry, exit, died): a (60, 62, yes), b (61, 63,
    yes), c (61.5, 65, no), d (62.5, 64, yes). Risk sets: at 62 {a, b, c} -> 1 - 1/3;
    at 63 {b, c, d} -> 1 - 1/3; at 64 {c, d} -> 1 - 1/2. S(64) = 2/3 x 2/3 x 1/2 = 2/9.
    Without the entries (all at risk from the start) S(64) would be 3/4 x 2/3 x 1/2."""
    from puhui.survival.lifetime import conditional_survival, kaplan_meier

    lt = pd.DataFrame({"entry": [60, 61, 61.5, 62.5], "exit": [62, 63, 65, 64],
                       "died": [True, True, False, True]})
    km = kaplan_meier(lt)
    s = km.survival_function_at_times([62, 63, 64]).to_numpy()
    assert s == pytest.approx([2 / 3, 4 / 9, 2 / 9])
    assert conditional_survival(km, 62, [64]) == pytest.approx([1 / 3])


def test_kaplan_meier_on_the_city_follows_the_table():
    """The one-year chance of death at 70 and 80 from the Kaplan-Meier curve of the
    synthetic city's lifetimes is near the CL table's (each within 15 %: about 4,000
    and 2,000 people at risk, with the city's age labels a half-year off exact ages)."""
    from puhui.mortality import cl_table
    from puhui.survival.lifetime import conditional_survival, kaplan_meier, lifetimes

    P = load_params()
    rng = np.random.default_rng(1)
    people = make_people(300_000, 2024, P, rng)
    simulate_years(people, 2024, 2, P, rng)
    lt = lifetimes(people, 2024, 2025)
    men = lt[lt["gender"] == "1"]
    km = kaplan_meier(men, "men")
    for x in (70, 80):
        q = 1 - conditional_survival(km, x, [x + 1])[0]
        assert q == pytest.approx(cl_table().loc[x, "CL1"], rel=0.15), x


def test_kaplan_meier_from_an_age_leaves_out_the_sparse_young_ages():
    """A lone early death (entry 39, death at 40) would zero the product-limit curve;
    from 60 the fit is the four-life example's (S(64) = 2/9), and a life entering at 58
    counts from 60."""
    from puhui.survival.lifetime import kaplan_meier

    lt = pd.DataFrame({"entry": [39, 60, 61, 61.5, 62.5], "exit": [40, 62, 63, 65, 64],
                       "died": [True, True, True, False, True]})
    km = kaplan_meier(lt, from_age=60)
    assert km.survival_function_at_times([64]).to_numpy() == pytest.approx([2 / 9])
    lt.loc[1, "entry"] = 58
    assert kaplan_meier(lt, from_age=60).survival_function_at_times([64]).to_numpy() == \
        pytest.approx([2 / 9])


def test_cox_on_the_age_scale_agrees_with_statsmodels_and_finds_the_tables_shape():
    """Men against women in the synthetic city from age 60: lifelines' Cox fit with
    entry agrees with statsmodels' PHReg (an independent implementation of the partial
    likelihood with left truncation); the hazard ratio falls with age as CL1 / CL2 does
    (2.08 at 60, 1.48 at 80, 1.28 at 90), which the by-window check shows."""
    from statsmodels.duration.hazard_regression import PHReg

    from puhui.survival.lifetime import fit_cox, hazard_ratios_by_age, lifetimes

    P = load_params()
    rng = np.random.default_rng(1)
    people = make_people(200_000, 2024, P, rng)
    simulate_years(people, 2024, 2, P, rng)
    lt = lifetimes(people, 2024, 2025).assign(male=lambda d: (d["gender"] == "1").astype(int))
    cox = fit_cox(lt, ["male"], from_age=60)
    old = lt[lt["exit"] > 60].assign(entry=lambda d: np.maximum(d["entry"], 60))
    ref = PHReg(old["exit"].to_numpy(), old[["male"]].to_numpy(float),
                status=old["died"].to_numpy(int), entry=old["entry"].to_numpy(),
                ties="efron").fit()
    assert cox.params_["male"] == pytest.approx(ref.params[0], abs=1e-3)
    assert cox.standard_errors_["male"] == pytest.approx(ref.bse[0], rel=1e-3)
    hr = hazard_ratios_by_age(lt, "male", [(60, 75), (75, 110)])
    assert hr["hazard_ratio"].iloc[0] > hr["hazard_ratio"].iloc[1] > 1
