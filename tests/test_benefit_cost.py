"""The pricing chain: benefit cost per cell, its interval, and known-truth recovery.

Reference values and where they come from:
- the true pure premium of :mod:`puhui.pricing.known_truth` (gamma claims, negative
  binomial counts; gamma limited means in closed form, compounded by the FFT that
  tests/test_aggregate.py checks against closed forms);
- the NB2 dispersion and the quasi-Poisson dispersion of simulated gamma-Poisson counts
  (alpha known; phi = 1 + alpha mu for a constant mean);
- the design matrix against statsmodels' own (the model's exog).
"""

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.benefit_cost import (
    BenefitCostModel,
    choose_factors,
    design_matrix,
    negbin_alpha,
    pearson_dispersion,
    pricing_groups,
    step_moments,
)
from puhui.pricing.frequency import PoissonFrequency, predict_by_cell
from puhui.pricing.known_truth import estimate, simulate, true_pure_premium
from puhui.products.model import load_product, product_path


def test_recovers_the_true_pure_premium():
    """300,000 person-years: within 4 % (the 3 %-at-a-million target and the 100-seed
    interval coverage are measured by benchmarks/bench_truth_recovery.py)."""
    truth = true_pure_premium()
    frame, events = simulate(300_000, seed=42)
    est, lo, hi = estimate(frame, events, seed=42)
    assert est == pytest.approx(truth, rel=0.04)
    assert lo < est < hi


def test_interval_covers_the_truth_in_most_seeds():
    """Ten small portfolios (40,000 person-years each): the 90 % interval covers the
    true pure premium in at least 7 (a 90 % interval would miss 4 or more of 10 with
    probability 1.3 %)."""
    truth = true_pure_premium()
    covered = 0
    for seed in range(10):
        frame, events = simulate(40_000, seed=100 + seed)
        _, lo, hi = estimate(frame, events, seed=seed, sims=1000)
        covered += lo <= truth <= hi
    assert covered >= 7


def test_dispersion_estimates_on_gamma_poisson_counts():
    rng = np.random.default_rng(5)
    n, mu, alpha = 200_000, 2.0, 0.5
    counts = rng.poisson(mu * rng.gamma(1 / alpha, alpha, n))
    frame = pd.DataFrame({"exposure": 1.0, "n": counts})
    rate = np.full(n, counts.mean())
    e = frame["exposure"].to_numpy()
    assert negbin_alpha(frame["n"], e, rate) == pytest.approx(alpha, rel=0.05)
    assert pearson_dispersion(frame["n"], e, rate, 1) == pytest.approx(1 + alpha * mu,
                                                                       rel=0.05)
    assert negbin_alpha(rng.poisson(mu, n), e, np.full(n, mu)) < 0.01


def test_predict_by_cell_and_design_matrix_match_statsmodels():
    frame, _ = simulate(5_000, seed=1)
    frame["n"] = np.random.default_rng(1).poisson(0.3, len(frame))
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    fit = PoissonFrequency(("age_band", "preexisting")).fit(frame, "n")
    # statsmodels' own formula fit on the same cells, predicting row by row
    ref = smf.glm(fit.formula(), data=fit.cells_, family=sm.families.Poisson(),
                  offset=np.log(fit.cells_["exposure"].to_numpy())).fit()
    direct = ref.predict(frame, offset=np.zeros(len(frame))).to_numpy()
    assert np.allclose(predict_by_cell(fit.predict, frame, ("age_band", "preexisting")), direct)
    assert np.allclose(fit.predict(frame), direct)
    assert np.allclose(fit.result_.predict(frame, offset=np.zeros(len(frame))), direct)
    X = design_matrix(fit.params_, fit.cells_)
    assert np.allclose(X, ref.model.exog)
    assert np.allclose(fit.result_.cov_params(), ref.cov_params())


def test_choose_factors_drops_thin_levels_and_coarsens_age():
    frame = pd.DataFrame({
        "age_band": ["0-17"] * 3 + ["41-50"] * 50 + ["61-70"] * 50,
        "age_group": ["0-40"] * 3 + ["41-60"] * 50 + ["61-80"] * 50,
        "gender": ["1", "2"] * 51 + ["1"],
        "thin": ["a"] * 100 + ["b"] * 3,
        "n": [2] * 103})
    # age bands: 0-17 has 6 events (>= 5) so bands stay; 'thin' level b has 6 too
    assert choose_factors(frame, "n", ("age_band", "gender", "thin"),
                          min_level_events=5) == ("age_band", "gender", "thin")
    frame["n"] = [1] * 103
    # now 0-17 has 3 events: the coarse age groups have 3 too, so age goes; thin goes
    assert choose_factors(frame, "n", ("age_band", "gender", "thin"),
                          min_level_events=5) == ("gender",)


def test_pricing_groups_join_shared_deductibles():
    hhb = pricing_groups(load_product(product_path("huhuibao-2025")))
    assert [g.benefits for g in hhb] == [("hospital",), ("special_drugs",), ("proton",),
                                         ("cart",), ("overseas_drugs",)]
    h = hhb[0]
    assert (h.deductible, h.ratio, h.preexisting_ratio, h.limit) == (12000.0, 0.7, 0.5, 1_000_000.0)
    assert h.claim_free_steps == ((2, 11000.0), (3, 10000.0))
    elderly = pricing_groups(load_product(product_path("elderly-medical-60-80")),
                             {"hospital_in_list": 3.0, "hospital_out_of_list": 1.0})
    joint = [g for g in elderly if len(g.benefits) > 1][0]
    assert joint.benefits == ("hospital_in_list", "hospital_out_of_list")
    assert joint.deductible == 5000.0
    assert joint.ratio == pytest.approx(0.75 * 0.70 + 0.25 * 0.50)
    assert joint.limit == 500_000.0 + 100_000.0          # separate limits added
    assert "approximat" in joint.note or "jointly" in joint.note


def test_no_events_costs_nothing():
    frame, events = simulate(1_000, seed=2)
    m = BenefitCostModel().fit(frame, events.iloc[:0])
    terms = pricing_groups(load_product(product_path("huhuibao-2025")))[0]
    m1, m2 = m.moments(frame.head(3), terms)
    assert m.kinds_ == [] and m1.tolist() == [0, 0, 0] and m2.tolist() == [0, 0, 0]


def test_a_saved_model_prices_the_same_without_the_per_row_counts():
    """The per-person-year counts (for cross-validation in the fitting run) are left
    out of a pickled model; what it prices is unchanged."""
    import pickle

    frame, events = simulate(5_000, seed=3)
    m = BenefitCostModel(factors=("age_band",)).fit(frame, events)
    kind = m.kinds_[0].name
    assert m.counts(kind).sum() == (events["inpatient"] == (kind == "inpatient")).sum()
    back = pickle.loads(pickle.dumps(m))
    assert not hasattr(back, "counts_") and hasattr(m, "counts_")
    with pytest.raises(ValueError, match="not saved"):
        back.counts(kind)
    terms = pricing_groups(load_product(product_path("huhuibao-2025")))[0]
    cells = frame.head(5)
    for a, b in zip(m.moments(cells, terms), back.moments(cells, terms)):
        np.testing.assert_array_equal(a, b)


def test_claim_free_steps_mix_the_moments_of_each_deductible():
    """No shares: the first-year moments; all of a cell at a step: that deductible's
    moments; a split: the mixture, by hand."""
    import dataclasses

    frame, events = simulate(20_000, seed=4)
    m = BenefitCostModel(factors=("age_band",)).fit(frame, events)
    terms = dataclasses.replace(pricing_groups(load_product(product_path("huhuibao-2025")))[0],
                                deductible=12_000.0, limit=200_000.0)
    cells = frame.groupby(["age_band", "gender", "preexisting"], observed=True).size(
        ).reset_index()[["age_band", "gender", "preexisting"]].head(3)
    d1 = m.moments(cells, dataclasses.replace(terms, deductible=11_000.0))
    d2 = m.moments(cells, dataclasses.replace(terms, deductible=10_000.0))
    d0 = m.moments(cells, terms)
    for got, want in zip(step_moments(m, cells, terms, np.zeros((3, 2))), d0):
        np.testing.assert_allclose(got, want)
    shares = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.5]])
    got1, got2 = step_moments(m, cells, terms, shares)
    assert got1[0] == pytest.approx(d1[0][0]) and got2[1] == pytest.approx(d2[1][1])
    assert got1[2] == pytest.approx(0.25 * d0[0][2] + 0.25 * d1[0][2] + 0.5 * d2[0][2])
    assert d2[0][2] > d1[0][2] > d0[0][2]          # a lower deductible costs more


def test_the_moments_of_each_cell_are_its_compound_sum_computed_once(monkeypatch):
    """Each cell's E[B], E[B^2] are the compound sum of its kinds, as a plain loop over
    the cells calls :func:`annual_benefit_moments_of` (bit for bit, with and without
    scaled kinds and other terms); a compound sum the model already computed (a cell
    repeated, the same call again) is not computed again, and the model saved leaves
    those sums out."""
    import dataclasses
    import pickle

    import puhui.pricing.benefit_cost as bc
    from puhui.pricing.aggregate import annual_benefit_moments_of

    frame, events = simulate(5_000, seed=6)
    m = BenefitCostModel(factors=("age_band",)).fit(frame, events)
    terms = pricing_groups(load_product(product_path("huhuibao-2025")))[0]
    cells = frame.head(40).reset_index(drop=True)          # cells repeat in 40 rows

    def by_hand(t, ff=1.0, sf=1.0, kf=None):
        kf = kf or {}
        rates = [(k.frequency.predict(cells), k.severity.predict(cells)) for k in m.kinds_]
        m1, m2, sums = [], [], set()
        for i in range(len(cells)):
            comps = [(k.shape.limited_mean, mu[i] * sf * kf.get(k.name, (1.0, 1.0))[1],
                      lam[i] * ff * kf.get(k.name, (1.0, 1.0))[0],
                      1.0 / k.alpha if k.alpha > 0 else None)
                     for k, (lam, mu) in zip(m.kinds_, rates)]
            r = t.preexisting_ratio if int(cells["preexisting"][i]) == 1 else t.ratio
            a, b = annual_benefit_moments_of(comps, t.deductible, r, t.limit, n=m.grid)
            m1.append(a * m.level_)
            m2.append(b * m.level_ ** 2)
            sums.add((tuple(c[1:] for c in comps), r))
        return np.array(m1), np.array(m2), len(sums)

    calls = []
    real = bc.annual_benefit_moments_of
    monkeypatch.setattr(bc, "annual_benefit_moments_of",
                        lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    lower = dataclasses.replace(terms, deductible=8_000.0)
    scaled = {m.kinds_[0].name: (1.05, 1.0)}
    distinct = 0
    for args, kw in [((terms,), {}), ((lower,), {}), ((terms, 1.1, 0.9), {}),
                     ((terms,), {"kind_factors": scaled})]:
        got = m.moments(cells, *args, **kw)
        *want, n = by_hand(args[0], *args[1:], kf=kw.get("kind_factors"))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert n < len(cells)                               # cells repeat in 40 rows
        distinct += n
    assert len(calls) == distinct                           # each distinct sum once
    np.testing.assert_array_equal(m.moments(cells, terms)[0], by_hand(terms)[0])
    assert len(calls) == distinct                           # asked again: no new sums
    assert "_moments_memo" not in pickle.loads(pickle.dumps(m)).__dict__
