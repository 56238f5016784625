"""Session 18's pricing changes pinned on small data.

- A backtest year's price runs the build-up without the cross-validation (its
  gradient-boosted challenger) and the class-C budget impact
  (:data:`puhui.pricing.premium.BACKTEST_STEPS`): the backtest year is the same dict as
  with every step.
- The severity GLM on cells no longer lets statsmodels' ``PerfectSeparationWarning``
  through: a saturated fit (one factor: as many cells as parameters) reproduces every
  cell's mean, which statsmodels' check (fitted means equal to the responses) takes for
  perfect prediction; the fit is right and identified. ``identified_`` says when it is
  not (factors confounded on the cells with events).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from puhui.products.model import load_product, product_path


def _events(levels, amounts, factor="gender"):
    return pd.DataFrame({factor: pd.Categorical(levels), "eligible": amounts})


def _raw_glm_warns(cells: pd.DataFrame, formula: str) -> bool:
    """statsmodels' own Gamma GLM on the cells, as GammaSeverity._fit made it before:
    does it warn of perfect separation?"""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    model = smf.glm(formula, data=cells, family=sm.families.Gamma(sm.families.links.Log()),
                    var_weights=cells["events"].to_numpy())
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        model.fit(scale=1.0)
    return any(issubclass(w.category, PerfectSeparationWarning) for w in got)


def test_a_saturated_severity_fit_raised_perfect_separation_and_no_longer_does():
    """The smallest case: one factor with two levels, amounts that differ within each.
    The GLM as it was called warns (the cause pinned); GammaSeverity does not, and its
    fit is the saturated one: every cell's expected amount is its mean, the
    coefficient the log of the ratio of the means."""
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    from puhui.pricing.severity import GammaSeverity

    ev = _events(["f", "f", "m", "m", "m"], [100.0, 300.0, 50.0, 70.0, 90.0])
    cells = ev.groupby("gender", observed=True)["eligible"].agg(
        mean="mean", events="size").reset_index()
    assert _raw_glm_warns(cells, "mean ~ C(gender)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        sev = GammaSeverity(("gender",)).fit(ev)
    assert sev.saturated_ and sev.identified_
    np.testing.assert_allclose(sev.cells_["expected"], [200.0, 70.0], rtol=1e-9)
    np.testing.assert_allclose(sev.params_.iloc[1], np.log(70.0 / 200.0), rtol=1e-9)
    # and through fit_cells, the path the benefit models take
    cells2 = pd.DataFrame({"gender": pd.Categorical(["f", "m"])})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        sev2 = GammaSeverity(("gender",)).fit_cells(
            cells2, np.array([0, 0, 1, 1, 1]), ev["eligible"].to_numpy())
    np.testing.assert_allclose(sev2.params_.to_numpy(), sev.params_.to_numpy(), rtol=1e-12)


def test_an_unsaturated_fit_is_neither_saturated_nor_unidentified():
    """Two factors over four cells, three parameters: no exact fit, no warning before
    either (the catch changes nothing there)."""
    from puhui.pricing.severity import GammaSeverity

    rng = np.random.default_rng(1)
    g = np.repeat(["f", "m"], 40)
    s = np.tile(np.repeat(["a", "b"], 20), 2)
    amt = rng.gamma(2.0, 100.0, size=80)
    ev = pd.DataFrame({"gender": pd.Categorical(g), "insutype": pd.Categorical(s),
                       "eligible": amt})
    cells = ev.groupby(["gender", "insutype"], observed=True)["eligible"].agg(
        mean="mean", events="size").reset_index()
    assert not _raw_glm_warns(cells, "mean ~ C(gender) + C(insutype)")
    sev = GammaSeverity(("gender", "insutype")).fit(ev)
    assert not sev.saturated_ and sev.identified_


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.SingularMatrixWarning")
def test_confounded_factors_are_recorded_as_not_identified():
    """Two factors that say the same thing on the cells with events (f with a, m with
    b): three parameters, two cells; the fit reproduces both means, and ``identified_``
    is false (the case the price notes)."""
    from puhui.pricing.severity import GammaSeverity

    ev = pd.DataFrame({"gender": pd.Categorical(["f", "f", "m", "m"]),
                       "insutype": pd.Categorical(["a", "a", "b", "b"]),
                       "eligible": [100.0, 300.0, 50.0, 90.0]})
    sev = GammaSeverity(("gender", "insutype")).fit(ev)
    assert sev.saturated_ and not sev.identified_
    np.testing.assert_allclose(sev.cells_["expected"], [200.0, 70.0], rtol=1e-9)


@pytest.fixture(scope="module")
def loaded(small_city_dir):
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions

    p = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    return p, a, load_for_pricing(small_city_dir, p, a)


def test_backtest_year_without_validation_and_budget_impact_is_the_same(loaded,
                                                                         monkeypatch):
    """The backtest's price leaves out the cross-validation and the budget impact: the
    backtest year (every figure it reads from the price) is the same as with the whole
    build-up."""
    import puhui.pricing.premium as pr
    from puhui.pricing.backtest import backtest_year, data_years

    p, a, data = loaded
    year = data_years(data)[-1]
    assert pr._step_validation not in pr.BACKTEST_STEPS
    assert pr._step_budget_impact not in pr.BACKTEST_STEPS
    short = backtest_year([p], data, year, a, seed=5)
    monkeypatch.setattr(pr, "BACKTEST_STEPS", pr.BUILD_UP)
    full = backtest_year([p], data, year, a, seed=5)
    assert json.dumps(short, sort_keys=True) == json.dumps(full, sort_keys=True)


def test_price_without_steps_given_runs_every_step(loaded):
    """``price`` with no ``steps`` is the whole build-up (the what-if state and the
    validation figures are there); with the backtest's steps they are not."""
    from puhui.pricing.premium import BACKTEST_STEPS, price
    from puhui.pricing.backtest import data_before

    p, a, data = loaded
    from puhui.pricing.backtest import data_years

    before = data_before(data, data_years(data)[-1])
    full = price(p, before, a, seed=5)
    short = price(p, before, a, seed=5, steps=BACKTEST_STEPS)
    assert full.state is not None and "validation" in full.figures
    assert short.state is None and "validation" not in short.figures
    for k in ("pure_premium", "pure_premium_interval", "process_sd_per_policy", "policies",
              "gross_premium", "enrolment", "notes", "data"):
        assert json.dumps(short.figures[k]) == json.dumps(full.figures[k]), k


def test_past_policies_judged_once_for_the_price_and_its_backtest(small_city_dir, tmp_path,
                                                                   monkeypatch):
    """``puhui price`` with its backtest judges past policies under their own terms once:
    the backtest's price (the data before the last year) takes the shared data's
    judging of the earlier years, its realised cost the same, and the price judges on
    from there; pricing.json is the same bytes as with each caller judging alone."""
    import shutil

    import puhui.pricing.enrolment as en
    from puhui.pricing.run import run_price

    data = tmp_path / "city"
    shutil.copytree(small_city_dir, data)
    calls = []
    inner = en._judged

    def counting(product, d, exp, last=None, resume=None):
        out = inner(product, d, exp, last, resume)
        calls.append((last, None if resume is None else resume[1], out[2]))
        return out

    monkeypatch.setattr(en, "_judged", counting)
    run_price(product_path("huhuibao-2025"), data, tmp_path / "shared", seed=5)
    first, last = 2024, 2025
    # the backtest's price judges the first year on the whole data, the realised cost
    # finds it judged, the price judges the last year only
    assert calls == [(first, None, first), (first, first, first), (None, first, last)]
    calls.clear()
    monkeypatch.setattr(en, "_shared_own_paid", lambda *a: None)
    run_price(product_path("huhuibao-2025"), data, tmp_path / "alone", seed=5)
    assert [c[1] for c in calls] == [None, None, None]
    assert (tmp_path / "shared" / "pricing.json").read_bytes() == \
        (tmp_path / "alone" / "pricing.json").read_bytes()


def test_renewed_policy_the_same_with_categorical_people():
    """renewed_policy numbers people by a categorical's codes (pricing's policies) or by
    their text: the same links either way."""
    from puhui.benefits.calculator import renewed_policy

    pol = pd.DataFrame({
        "psn_no": ["b", "a", "a", "b", "c", "a"],
        "start_date": pd.to_datetime(["2024-01-01", "2024-01-01", "2025-01-01",
                                      "2025-01-01", "2025-01-01", "2026-01-01"]),
        "end_date": pd.to_datetime(["2024-12-31", "2024-12-31", "2025-12-31",
                                    "2025-12-31", "2025-12-31", "2026-12-31"])})
    text = renewed_policy(pol)
    cat = renewed_policy(pol.assign(psn_no=pd.Categorical(pol["psn_no"],
                                                          categories=["c", "b", "a", "z"])))
    assert text.tolist() == [-1, -1, 1, 0, -1, 2]
    assert cat.tolist() == text.tolist()


def test_equal_amounts_raised_perfect_separation_and_now_give_a_note_instead(loaded):
    """The cause at ten million person-years: proton stays all at one list price
    (278,000 yuan), 170 events over 12 cells of four factors. Every cell's mean is the
    same, the intercept alone fits them exactly, and statsmodels warned at every
    iteration (about a hundred warnings a fit: the dispersion is 0 and the fit at that
    scale does not converge). Now: no warning, ``exact_`` and ``no_spread_`` set, and
    the price notes the benefit."""
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    from puhui.pricing.severity import GammaSeverity

    rng = np.random.default_rng(0)
    n = 170
    f = ("gender", "insutype", "retired", "preexisting")
    ev = pd.DataFrame({c: pd.Categorical(rng.choice(["a", "b"], n)) for c in f}
                      ).assign(eligible=np.full(n, 278_000.0))
    cells = ev.groupby(list(f), observed=True)["eligible"].agg(
        mean="mean", events="size").reset_index()
    assert _raw_glm_warns(cells, "mean ~ " + " + ".join(f"C({c})" for c in f))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        sev = GammaSeverity(f).fit(ev)
    assert sev.exact_ and sev.no_spread_ and not sev.saturated_
    np.testing.assert_allclose(sev.cells_["expected"], 278_000.0, rtol=1e-9)
    # amounts with spread: no note
    ev2 = ev.assign(eligible=rng.gamma(2.0, 1000.0, n))
    assert not GammaSeverity(f).fit(ev2).no_spread_


def test_the_price_notes_a_benefit_whose_events_all_have_one_amount(loaded, monkeypatch):
    """The note reaches pricing.json's notes when a benefit's severity has no spread
    (here forced on every severity fit of the small city)."""
    import puhui.pricing.severity as sv
    from puhui.pricing.premium import BACKTEST_STEPS, price

    p, a, data = loaded
    inner = sv.GammaSeverity._fit

    def flat(self, cells, amounts, mu_of):
        out = inner(self, cells, amounts, mu_of)
        self.no_spread_ = True
        return out

    monkeypatch.setattr(sv.GammaSeverity, "_fit", flat)
    notes = price(p, data, a, seed=5, steps=BACKTEST_STEPS).figures["notes"]
    assert any("has the same amount" in n and "dispersion is 0" in n for n in notes)


def test_the_cut_shares_the_judging_only_when_its_policies_end_before_it(loaded):
    """On the data before the last year, the shared judging is the judging made on the
    cut alone (same payouts, same notes); with a policy of the cut running into the
    last year (its settlements there differ between the cut and the whole) nothing is
    shared."""
    import puhui.pricing.enrolment as en
    from puhui.fund.files import FundData
    from puhui.pricing.backtest import data_before, data_years
    from puhui.pricing.experience import experience_in_blocks, experience_shared
    from puhui.pricing.premium import EXPERIENCE_DROP

    p, a, data = loaded
    last = data_years(data)[-1]

    def judged(d):
        with experience_shared(p, d, drop=EXPERIENCE_DROP):
            cut = data_before(d, last)
            exp, _ = experience_in_blocks(p, cut, drop=EXPERIENCE_DROP)
            shared = en._shared_own_paid(p, cut, exp, None)
            alone = en._judged(p, cut, exp)[:2]
        return shared, alone

    shared, alone = judged(data)
    assert shared is not None
    np.testing.assert_array_equal(shared[0], alone[0])
    assert shared[1] == alone[1]
    pol = data.policies.copy()
    first = int(np.flatnonzero((pol["start_date"].dt.year < last).to_numpy())[0])
    pol.loc[first, "end_date"] = pd.Timestamp(last, 3, 31)
    longer = FundData(data.persons, pol, data.settlements, data.lines,
                      settlement_years=data.settlement_years)
    shared, _ = judged(longer)
    assert shared is None
