"""Claim frequency: a Poisson GLM with log exposure as offset, fitted on rating cells.

For the Poisson GLM with a log link the claim counts and exposures summed by rating
cell are sufficient statistics: the fit on cells (count = sum of counts, offset =
log of summed exposure) has the same coefficients as the fit on person-years, so ten
million person-years fit as a few hundred cells (tested against the row fit and against
scikit-learn's PoissonRegressor, an independent implementation).

    log E[N_i] = log(exposure_i) + x_i' beta
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from puhui.pricing.experience import NARROW_COLUMNS
from puhui.pricing.loglinear import LogLinearFit

#: Age bands of the rating factor ``age_band`` (lower bounds).
AGE_BANDS = (0, 18, 31, 41, 51, 61, 71, 81)
DEFAULT_FACTORS = ("age_band", "gender", "insutype", "preexisting")


def banded(age, lower_bounds: tuple[int, ...]) -> pd.Categorical:
    """Ages as labelled bands from their lower bounds: "lo-hi" and "last+".

    >>> list(banded([5, 30, 31, 90], (0, 31, 81)))
    ['0-30', '0-30', '31-80', '81+']
    """
    edges = list(lower_bounds) + [200]
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-2], edges[1:-1])] + [f"{lower_bounds[-1]}+"]
    return pd.cut(np.asarray(age), bins=edges, right=False, labels=labels)


def age_band(age) -> pd.Categorical:
    """Label of the age band: 0-17, 18-30, ..., 81+.

    >>> list(age_band([5, 30, 31, 90]))
    ['0-17', '18-30', '31-40', '81+']
    """
    return banded(age, AGE_BANDS)


#: Columns of the rating frame held narrower than int64 (ten million rows: 41 bytes a
#: row less): the experience's (:data:`puhui.pricing.experience.NARROW_COLUMNS`) and
#: the 0/1 flags. Money (payouts, fen) stays int64.
NARROW = {**NARROW_COLUMNS, "retired": "int8", "preexisting": "int8", "prior_stay": "int8",
          "preexisting_seen": "int8"}


def rating_frame(exp: pd.DataFrame, consume: bool = False) -> pd.DataFrame:
    """The experience table with the rating factors an actuary would use, as one new
    table whose integer columns of each width share one block (ten million rows: a
    table whose columns sit in separate blocks is copied again by every row selection);
    the small integers of :data:`NARROW` are held narrow. Columns come by block (the
    integers of each width in ``exp``'s order), then the others. ``consume``: each of
    ``exp``'s columns is dropped from it once copied (``exp`` ends empty), so the two
    tables are never held whole at the same time."""
    derived = {
        "age_band": age_band(exp["age"]),
        "gender": exp["gender"].astype(str).to_numpy(),
        "insutype": exp["insutype"].astype(str).to_numpy(),
        "retired": exp["retired"].astype(bool).to_numpy(),
        "preexisting": exp["preexisting"].astype(bool).to_numpy(),
        "prior_stay": (exp["stays_prior"] > 0).to_numpy()}
    if "preexisting_seen" in exp.columns:
        derived["preexisting_seen"] = exp["preexisting_seen"].astype(bool).to_numpy()
    names = list(dict.fromkeys([*exp.columns, *derived]))     # exp's order, then new

    def take(c):
        v = derived.pop(c) if c in derived else (
            exp[c].array if isinstance(exp[c].dtype, pd.CategoricalDtype) else exp[c].to_numpy())
        if consume and c in exp.columns:
            del exp[c]
        return v

    def width(c):
        if c in NARROW:
            return np.dtype(NARROW[c])
        dt = derived[c].dtype if c in derived else exp[c].dtype
        return dt if dt == np.int64 else None

    widths = {c: width(c) for c in names}
    frame = pd.DataFrame(index=pd.RangeIndex(len(exp)))
    for dt in dict.fromkeys(w for w in widths.values() if w is not None):
        cols = [c for c in names if widths[c] == dt]
        block = np.empty((len(cols), len(exp)), dtype=dt)
        for i, c in enumerate(cols):
            block[i] = take(c)
        part = pd.DataFrame(block.T, columns=cols, copy=False)   # the block adopted
        frame = pd.concat([frame, part], axis=1, copy=False) if len(frame.columns) else part
    for c in names:                            # the rest, one column each
        if widths[c] is None:
            frame[c] = take(c)
    return frame


def rating_cells(frame: pd.DataFrame, factors, count: str) -> pd.DataFrame:
    """Sufficient statistics by rating cell: exposure, claim count, person-years."""
    if not factors:
        cells = pd.DataFrame({"exposure": [frame["exposure"].sum()],
                              "count": [frame[count].sum()], "person_years": [len(frame)]})
        return cells[cells["exposure"] > 0]
    g = frame.groupby(list(factors), observed=True)
    cells = g.agg(exposure=("exposure", "sum"), count=(count, "sum"),
                  person_years=("exposure", "size")).reset_index()
    return cells[cells["exposure"] > 0]


def predict_by_cell(predict, frame: pd.DataFrame, factors) -> np.ndarray:
    """``predict`` evaluated once per distinct combination of ``factors`` and spread
    back to the rows of ``frame`` (a model formula over ten million rows is slow)."""
    if len(frame) == 0:
        return np.zeros(0)
    if not factors:
        return np.repeat(predict(frame.iloc[:1]), len(frame))
    g = frame.groupby(list(factors), observed=True, sort=False)
    combos = g.size().reset_index()[list(factors)]
    return predict(combos)[g.ngroup().to_numpy()]


class PoissonFrequency:
    """Poisson frequency GLM (statsmodels), fitted on rating cells.

    Parameters
    ----------
    factors : rating factors (categorical), treatment-coded against their first level

    Attributes (after ``fit``)
    --------------------------
    params_, bse_ : coefficients and standard errors (pandas Series)
    deviance_, null_deviance_ : on the cells
    cells_ : the fitted cells with ``expected`` counts
    """

    def __init__(self, factors=DEFAULT_FACTORS):
        self.factors = tuple(factors)

    def formula(self) -> str:
        return "count ~ " + (" + ".join(f"C({f})" for f in self.factors) or "1")

    def fit(self, frame: pd.DataFrame, count: str) -> "PoissonFrequency":
        cells = rating_cells(frame, self.factors, count)
        return self.fit_cells(cells)

    def fit_cells(self, cells: pd.DataFrame) -> "PoissonFrequency":
        import statsmodels.formula.api as smf
        from statsmodels.genmod import families

        model = smf.glm(self.formula(), data=cells, family=families.Poisson(),
                        offset=np.log(cells["exposure"].to_numpy()))
        with warnings.catch_warnings():
            # an intercept-only fit on one cell has no residual degrees of freedom, which
            # statsmodels' inner least-squares step warns about; the fit is exact
            warnings.simplefilter("ignore", RuntimeWarning)
            res = model.fit()
            self.null_deviance_ = float(res.null_deviance)   # fits the null model (lazily)
        self.result_ = LogLinearFit.of(res)        # no formula objects (models.pkl)
        self.params_ = res.params
        self.bse_ = res.bse
        self.deviance_ = float(res.deviance)
        self.cells_ = cells.assign(expected=res.fittedvalues.to_numpy())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected claims per unit of exposure for each row (or cell) of ``frame``."""
        return predict_by_cell(
            lambda f: self.result_.predict(f, offset=np.zeros(len(f))).to_numpy(),
            frame, self.factors)


class NegBinFrequency:
    """Negative-binomial (NB2) frequency with the dispersion estimated, log exposure as
    offset (statsmodels' discrete NegativeBinomial, maximum likelihood)::

        N_i ~ NB(mean mu_i, Var = mu_i + alpha mu_i^2),  log mu_i = log(exposure_i) + x_i' beta

    Counts are not sufficient by cell for the NB likelihood, so this fits on
    person-years (use it where over-dispersion matters; the Poisson cell fit gives the
    same mean structure).

    Attributes (after ``fit``): params_, bse_ (including ``alpha``), alpha_.
    """

    def __init__(self, factors=DEFAULT_FACTORS):
        self.factors = tuple(factors)

    def formula(self, count: str) -> str:
        rhs = " + ".join(f"C({f})" for f in self.factors) if self.factors else "1"
        return f"{count} ~ {rhs}"

    def fit(self, frame: pd.DataFrame, count: str) -> "NegBinFrequency":
        import statsmodels.formula.api as smf

        data = frame[frame["exposure"] > 0]
        model = smf.negativebinomial(self.formula(count), data=data, loglike_method="nb2",
                                     offset=np.log(data["exposure"].to_numpy()))
        res = model.fit(disp=0, maxiter=200)
        self.result_ = res
        self.params_ = res.params
        self.bse_ = res.bse
        self.alpha_ = float(res.params["alpha"])
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected claims per unit of exposure."""
        return np.asarray(self.result_.predict(frame, offset=np.zeros(len(frame))))
