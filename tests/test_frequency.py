"""The frequency GLM: the cell fit equals the row fit (Poisson sufficient statistics),
and statsmodels agrees with scikit-learn's PoissonRegressor (an independent
implementation: penalty 0, rate target, exposure weights) on the same design."""

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.frequency import PoissonFrequency, age_band

FACTORS = ("age_band", "gender", "preexisting")


def simulated(n=60_000, seed=3):
    """Person-years with known rates: log rate = -3 + 0.03 (age - 40) + 0.2 female + 0.9 pre."""
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 95, n)
    female = rng.random(n) < 0.5
    pre = rng.random(n) < 0.1
    expo = np.where(rng.random(n) < 0.1, rng.uniform(0.05, 1, n), 1.0)
    rate = np.exp(-3 + 0.03 * (age - 40) + 0.2 * female + 0.9 * pre)
    return pd.DataFrame({"age_band": age_band(age), "gender": np.where(female, "2", "1"),
                         "preexisting": pre.astype(int), "exposure": expo,
                         "claims": rng.poisson(rate * expo)})


def test_cell_fit_equals_row_fit():
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    rows = simulated()
    cell = PoissonFrequency(FACTORS).fit(rows, "claims")
    row = smf.glm("claims ~ C(age_band) + C(gender) + C(preexisting)", data=rows,
                  family=sm.families.Poisson(), offset=np.log(rows["exposure"])).fit()
    assert np.allclose(cell.params_.to_numpy(), row.params.to_numpy(), atol=1e-8)
    assert np.allclose(cell.bse_.to_numpy(), row.bse.to_numpy(), rtol=1e-6)
    assert len(cell.cells_) <= 8 * 2 * 2


def test_agrees_with_scikit_learn_poisson_regressor():
    from sklearn.linear_model import PoissonRegressor

    rows = simulated()
    fit = PoissonFrequency(FACTORS).fit(rows, "claims")
    cells = fit.cells_
    X = pd.get_dummies(cells[list(FACTORS)].astype(str), drop_first=True).astype(float)
    sk = PoissonRegressor(alpha=0.0, max_iter=10_000, tol=1e-12).fit(
        X, cells["count"] / cells["exposure"], sample_weight=cells["exposure"])
    assert abs(sk.intercept_ - fit.params_["Intercept"]) < 1e-5
    # the same coefficient by name: "gender_2" is statsmodels' "C(gender)[T.2]"
    for col, coef in zip(X.columns, sk.coef_):
        factor, level = col.rsplit("_", 1)
        assert abs(coef - fit.params_[f"C({factor})[T.{level}]"]) < 1e-5, col


def test_recovers_the_known_effects():
    fit = PoissonFrequency(FACTORS).fit(simulated(200_000, seed=4), "claims")
    assert abs(fit.params_["C(gender)[T.2]"] - 0.2) < 3 * fit.bse_["C(gender)[T.2]"]
    assert abs(fit.params_["C(preexisting)[T.1]"] - 0.9) < 3 * fit.bse_["C(preexisting)[T.1]"]
    # predicted total equals observed total (Poisson GLM with intercept)
    assert fit.cells_["expected"].sum() == pytest.approx(fit.cells_["count"].sum(), rel=1e-9)


def test_negative_binomial_dispersion():
    """NB2 with known alpha: the estimate recovers it, and for an intercept-only model it
    agrees with the method-of-moments closed form alpha = (s^2 - m) / m^2 (unit exposure)."""
    from puhui.pricing.frequency import NegBinFrequency

    rng = np.random.default_rng(11)
    n, mu, alpha = 80_000, 0.4, 1.5
    # NB2 as a gamma-Poisson mixture: lambda ~ Gamma(1/alpha, alpha mu)
    counts = rng.poisson(rng.gamma(1 / alpha, alpha * mu, n))
    frame = pd.DataFrame({"claims": counts, "exposure": 1.0})
    fit = NegBinFrequency(()).fit(frame, "claims")
    m, v = counts.mean(), counts.var()
    mom = (v - m) / m ** 2
    assert abs(fit.alpha_ - alpha) < 3 * fit.bse_["alpha"]
    assert abs(fit.alpha_ - mom) < 0.05
    assert abs(np.exp(fit.params_["Intercept"]) - m) < 1e-3
    # with factors, the mean structure matches the Poisson cell fit closely
    rows = simulated(60_000, seed=12)
    nb = NegBinFrequency(FACTORS).fit(rows, "claims")
    po = PoissonFrequency(FACTORS).fit(rows, "claims")
    common = po.params_.index
    assert np.allclose(nb.params_[common].to_numpy(), po.params_.to_numpy(), atol=0.05)


def test_rating_frame_moves_the_columns_and_keeps_their_values():
    """rating_frame(consume=True) empties the experience table as it copies it, and
    gives the table the straightforward construction gives (integer columns in one
    block)."""
    from puhui.pricing.frequency import NARROW, age_band, rating_frame

    rng = np.random.default_rng(2)
    n = 500
    exp = pd.DataFrame({
        "psn_no": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        "person": rng.integers(0, 3, n), "year": rng.integers(2024, 2026, n),
        "exposure": rng.random(n), "age": rng.integers(0, 100, n),
        "gender": rng.choice(["1", "2"], n).astype(object),
        "insutype": rng.choice(["310", "390"], n).astype(object),
        "retired": rng.random(n) < 0.3, "enrolled": rng.random(n) < 0.4,
        "preexisting": rng.random(n) < 0.1, "stays_prior": rng.integers(0, 3, n),
        "preexisting_seen": rng.random(n) < 0.1,
        "payout_hospital": rng.integers(0, 10_000, n)})
    expected = pd.DataFrame({**{c: exp[c].array if c == "psn_no" else exp[c].to_numpy()
                                for c in exp.columns},
                             "gender": exp["gender"].astype(str).to_numpy(),
                             "insutype": exp["insutype"].astype(str).to_numpy(),
                             "retired": exp["retired"].astype(int).to_numpy(),
                             "preexisting": exp["preexisting"].astype(int).to_numpy(),
                             "preexisting_seen": exp["preexisting_seen"].astype(int).to_numpy(),
                             "age_band": age_band(exp["age"]),
                             "prior_stay": (exp["stays_prior"] > 0).astype(int).to_numpy()})
    expected = expected.astype(NARROW)           # small integers narrow, same values
    assert (expected[list(NARROW)].to_numpy() == pd.DataFrame(
        {c: exp[c].astype(int) for c in ("person", "year", "age", "stays_prior")}).assign(
        retired=expected["retired"], preexisting=expected["preexisting"],
        prior_stay=expected["prior_stay"],
        preexisting_seen=expected["preexisting_seen"]).to_numpy()).all()
    # columns come by block (width), so compared by name
    pd.testing.assert_frame_equal(rating_frame(exp), expected, check_like=True)
    moved = rating_frame(exp, consume=True)
    pd.testing.assert_frame_equal(moved, expected, check_like=True)
    assert exp.shape[1] == 0
    # the integers of each width (int64, int32, int16, int8) share a block; the six
    # other columns (text, float, bool, categoricals) are one each
    assert moved._mgr.nblocks == 4 + 6
    assert moved["person"].dtype == np.int32 and moved["retired"].dtype == np.int8
