"""Claim severity: a gamma GLM with a log link on the eligible amounts per event.

With categorical rating factors the gamma GLM's coefficients depend on the events only
through each cell's event count and mean amount, so the fit on cells (response = cell
mean, weight = events in the cell) has the event-level coefficients (tested); the
dispersion is estimated from the event-level deviance when the events are at hand.

    log E[Y_j] = x_j' beta,   Var[Y_j] = phi E[Y_j]^2
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from puhui.pricing.frequency import DEFAULT_FACTORS, predict_by_cell


class GammaSeverity:
    """Gamma severity GLM (statsmodels), fitted on rating cells.

    Attributes (after ``fit``): params_, bse_ (cell fit; standard errors use the
    event-level dispersion when events are given), dispersion_, cells_.
    """

    def __init__(self, factors=DEFAULT_FACTORS):
        self.factors = tuple(factors)

    def formula(self) -> str:
        if not self.factors:
            return "mean ~ 1"
        return "mean ~ " + " + ".join(f"C({f})" for f in self.factors)

    def fit(self, events: pd.DataFrame, amount: str = "eligible") -> "GammaSeverity":
        """``events``: one row per event with the factors and the amount (> 0)."""
        import statsmodels.api as sm
        import statsmodels.formula.api as smf

        if (events[amount] <= 0).any():
            raise ValueError("severity amounts must be positive")
        if self.factors:
            g = events.groupby(list(self.factors), observed=True)[amount]
            cells = g.agg(mean="mean", events="size").reset_index()
        else:
            cells = pd.DataFrame({"mean": [events[amount].mean()], "events": [len(events)]})
        model = smf.glm(self.formula(), data=cells,
                        family=sm.families.Gamma(sm.families.links.Log()),
                        var_weights=cells["events"].to_numpy())
        # coefficients do not depend on the scale; a one-cell fit (no factors) has no
        # residual degrees of freedom, which statsmodels' inner step warns about
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = model.fit(scale=1.0)
        # the event-level dispersion (Pearson): sum ((y - mu) / mu)^2 / (n - p)
        mu = predict_by_cell(lambda f: res.predict(f).to_numpy(), events, self.factors)
        resid = (events[amount].to_numpy() - mu) / mu
        self.dispersion_ = float((resid ** 2).sum() / (len(events) - len(res.params)))
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res_scaled = model.fit(scale=self.dispersion_)
        self.result_ = res_scaled
        self.params_ = res_scaled.params
        self.bse_ = res_scaled.bse
        self.cells_ = cells.assign(expected=res_scaled.fittedvalues.to_numpy())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected amount per event for each row of ``frame``."""
        return predict_by_cell(lambda f: self.result_.predict(f).to_numpy(), frame,
                               self.factors)
