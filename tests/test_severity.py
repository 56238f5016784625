"""The gamma severity GLM: the cell fit has the event-level coefficients and standard
errors (statsmodels on the events as the independent fit); an intercept-only fit is the
sample mean (closed form)."""

import numpy as np
import pandas as pd

from puhui.pricing.frequency import age_band
from puhui.pricing.severity import GammaSeverity

FACTORS = ("age_band", "preexisting")


def events(n=40_000, seed=5):
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 95, n)
    pre = rng.random(n) < 0.15
    mean = np.exp(9 + 0.01 * (age - 40) + 0.5 * pre)
    shape = 1.3
    return pd.DataFrame({"age_band": age_band(age), "preexisting": pre.astype(int),
                         "eligible": rng.gamma(shape, mean / shape)})


def test_cell_fit_equals_event_fit():
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    ev = events()
    cell = GammaSeverity(FACTORS).fit(ev)
    row = smf.glm("eligible ~ C(age_band) + C(preexisting)", data=ev,
                  family=sm.families.Gamma(sm.families.links.Log())).fit()
    assert np.allclose(cell.params_.to_numpy(), row.params.to_numpy(), atol=1e-6)
    assert abs(cell.dispersion_ - row.scale) / row.scale < 1e-6
    assert np.allclose(cell.bse_.to_numpy(), row.bse.to_numpy(), rtol=1e-4)


def test_intercept_only_is_the_mean_and_effects_are_recovered():
    ev = events()
    # closed form: the intercept-only gamma GLM's fitted mean is the sample mean
    one = GammaSeverity(()).fit(ev)
    assert abs(np.exp(one.params_["Intercept"]) / ev["eligible"].mean() - 1) < 1e-9
    fit = GammaSeverity(FACTORS).fit(events(120_000, seed=6))
    assert abs(fit.params_["C(preexisting)[T.1]"] - 0.5) < 3 * fit.bse_["C(preexisting)[T.1]"]
    assert abs(fit.dispersion_ - 1 / 1.3) < 0.02     # gamma shape 1.3: phi = 1 / shape


def test_fit_from_event_cells_equals_fit_from_events():
    """fit_cells (each event's row in a table of finer cells, as pricing gives it at ten
    million events) is the same fit as fit on the table of events: the same cells, the
    same group means in the same order, the same dispersion."""
    from puhui.pricing.benefit_cost import cells_of

    ev = events()
    rng = np.random.default_rng(9)
    ev["gender"] = np.where(rng.random(len(ev)) < 0.5, "1", "2")   # a finer cell factor
    cells, cell = cells_of(ev.assign(exposure=1.0), ("age_band", "gender", "preexisting"))
    for factors in (FACTORS, ("preexisting",), ()):
        a = GammaSeverity(factors).fit(ev)
        b = GammaSeverity(factors).fit_cells(cells, cell, ev["eligible"].to_numpy())
        assert np.array_equal(a.cells_["mean"].to_numpy(), b.cells_["mean"].to_numpy())
        assert np.allclose(a.params_.to_numpy(), b.params_.to_numpy(), rtol=0, atol=1e-12)
        assert abs(a.dispersion_ - b.dispersion_) <= 1e-12 * a.dispersion_
        assert np.allclose(a.predict(cells), b.predict(cells), rtol=1e-12)
