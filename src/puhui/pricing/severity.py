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
from puhui.pricing.loglinear import LogLinearFit


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
        if (events[amount] <= 0).any():
            raise ValueError("severity amounts must be positive")
        if self.factors:
            g = events.groupby(list(self.factors), observed=True)[amount]
            cells = g.agg(mean="mean", events="size").reset_index()
        else:
            cells = pd.DataFrame({"mean": [events[amount].mean()], "events": [len(events)]})
        return self._fit(cells, events[amount].to_numpy(), lambda res: predict_by_cell(
            lambda f: res.predict(f).to_numpy(), events, self.factors))

    def fit_cells(self, cells: pd.DataFrame, event_cell: np.ndarray,
                  amounts: np.ndarray, weights: np.ndarray | None = None) -> "GammaSeverity":
        """The same fit from each event's row in ``cells`` (a table of distinct
        combinations of the factors and possibly more, such as
        :func:`puhui.pricing.benefit_cost.cells_of` gives) and its amount (> 0): no
        table of events and factors is made (ten million events). The cells' means are
        pandas' group means over the events in their order, as :meth:`fit` takes them.
        ``weights``: each event's frequency weight (> 0; a launch year's fractional rows,
        :mod:`puhui.pricing.launch_flags`): the cells' means weighted, their ``events``
        (the GLM's var_weights) the weights' sums, the dispersion's sums weighted."""
        amounts = np.asarray(amounts, dtype=float)
        if (amounts <= 0).any():
            raise ValueError("severity amounts must be positive")
        if weights is not None:
            return self._fit_weighted(cells, event_cell, amounts,
                                      np.asarray(weights, dtype=float))
        if self.factors:
            g = cells.groupby(list(self.factors), observed=True, sort=True)
            code = g.ngroup().to_numpy()[event_cell]      # each event's combination
            combos = g.size().reset_index()[list(self.factors)]
            a = pd.Series(amounts).groupby(code).agg(["mean", "size"])
            at = a.index.to_numpy()
            fit_cells = combos.take(at).reset_index(drop=True).assign(
                mean=a["mean"].to_numpy(), events=a["size"].to_numpy())
            mu_of = lambda res: res.predict(fit_cells).to_numpy()[  # noqa: E731
                np.searchsorted(at, code)]
        else:
            fit_cells = pd.DataFrame({"mean": [pd.Series(amounts).mean()],
                                      "events": [len(amounts)]})
            mu_of = lambda res: np.repeat(res.predict(fit_cells).to_numpy(),  # noqa: E731
                                          len(amounts))
        return self._fit(fit_cells, amounts, mu_of)

    def _fit_weighted(self, cells: pd.DataFrame, event_cell: np.ndarray,
                      amounts: np.ndarray, weights: np.ndarray) -> "GammaSeverity":
        """:meth:`fit_cells` with frequency weights on the events."""
        if (weights <= 0).any():
            raise ValueError("severity weights must be positive")
        if self.factors:
            g = cells.groupby(list(self.factors), observed=True, sort=True)
            code = g.ngroup().to_numpy()[event_cell]
            combos = g.size().reset_index()[list(self.factors)]
        else:
            code, combos = np.zeros(len(amounts), dtype=np.int64), pd.DataFrame(index=[0])
        sums = pd.DataFrame({"wy": weights * amounts, "w": weights}).groupby(code).sum()
        at = sums.index.to_numpy()
        fit_cells = combos.take(at).reset_index(drop=True).assign(
            mean=(sums["wy"] / sums["w"]).to_numpy(), events=sums["w"].to_numpy())
        mu_of = lambda res: res.predict(fit_cells).to_numpy()[  # noqa: E731
            np.searchsorted(at, code)]
        return self._fit(fit_cells, amounts, mu_of, weights)

    def _fit(self, cells: pd.DataFrame, amounts: np.ndarray, mu_of,
             weights: np.ndarray | None = None) -> "GammaSeverity":
        """The GLM on ``cells`` (factors, ``mean``, ``events``); ``mu_of(result)``: the
        fitted mean of each of the events (``amounts``) for the dispersion."""
        import statsmodels.formula.api as smf
        from statsmodels.genmod import families
        from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

        model = smf.glm(self.formula(), data=cells,
                        family=families.Gamma(families.links.Log()),
                        var_weights=cells["events"].to_numpy())
        # coefficients do not depend on the scale; a one-cell fit (no factors) has no
        # residual degrees of freedom, which statsmodels' inner step warns about.
        # statsmodels also warns of "perfect separation or prediction" at every
        # iteration whose fitted means equal the responses (np.allclose(mu - y, 0)), a
        # check meant for binary and count models. On a gamma GLM of cells' means it
        # fires when the fit reproduces every cell (``exact_``): (a) every event has
        # the same amount (at 10M person-years, proton stays priced at one list price:
        # 170 events in 12 cells; the dispersion is then 0 and the second fit, at that
        # scale, never converges: 100 warnings), ``no_spread_``, which the price notes;
        # (b) a saturated fit (as many cells as parameters: one factor), whose means
        # are the cells' own; its coefficients are identified when the design has full
        # column rank, ``identified_`` (false only for factors confounded on the cells
        # with events: some coefficients are then pinv's choice, and so are the means
        # of cells without events; the price notes it). Neither is a failed fit.
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", PerfectSeparationWarning)
            res = model.fit(scale=1.0)
        exog = model.exog
        self.saturated_ = bool(len(cells) <= exog.shape[1])
        self.identified_ = bool(np.linalg.matrix_rank(exog) == exog.shape[1])
        self.exact_ = bool(np.allclose(res.fittedvalues.to_numpy()
                                       - cells["mean"].to_numpy(dtype=float), 0))
        # the event-level dispersion (Pearson): sum ((y - mu) / mu)^2 / (n - p); with no
        # residual degrees of freedom (as many events as parameters: proton on two
        # events) it cannot be estimated and is taken as 1, the exponential's
        mu = mu_of(res)
        resid = (amounts - mu) / mu
        if weights is None:
            dof = len(amounts) - len(res.params)
            self.dispersion_ = float((resid ** 2).sum() / dof) if dof > 0 else 1.0
        else:              # frequency weights: the events they stand for
            dof = float(weights.sum()) - len(res.params)
            self.dispersion_ = float((weights * resid ** 2).sum() / dof) if dof > 0 else 1.0
        self.no_spread_ = bool(dof > 0 and self.dispersion_ <= 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", PerfectSeparationWarning)
            res_scaled = model.fit(scale=self.dispersion_)
        self.result_ = LogLinearFit.of(res_scaled)  # no formula objects (models.pkl)
        self.params_ = res_scaled.params
        self.bse_ = res_scaled.bse
        self.cells_ = cells.assign(expected=res_scaled.fittedvalues.to_numpy())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected amount per event for each row of ``frame``."""
        return predict_by_cell(lambda f: self.result_.predict(f).to_numpy(), frame,
                               self.factors)
