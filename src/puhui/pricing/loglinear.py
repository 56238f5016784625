"""A fitted log-link GLM reduced to what pricing reads after the fit: coefficients,
standard errors, covariance and prediction, exp(X beta + offset), with the design
matrix built from the coefficient names.

statsmodels' formula results carry the formula's evaluation environment; pickled in
``models.pkl`` they rebuild their design matrices on load and fail outside the frame
that made them (a script loading the file at its top level). This holds no formula
objects, so the saved pricing state loads anywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def design_matrix(params: pd.Series, cells: pd.DataFrame) -> np.ndarray:
    """The treatment-coded design matrix of ``cells`` for a fit of ``y ~ C(a) + C(b)``,
    built from the coefficient names (``Intercept``, ``C(a)[T.level]``), so it does not
    depend on the formula engine's internals.

    >>> p = pd.Series([0.1, 0.2], index=["Intercept", "C(sex)[T.2]"])
    >>> design_matrix(p, pd.DataFrame({"sex": ["1", "2"]})).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    cols = []
    for name in params.index:
        if name == "Intercept":
            cols.append(np.ones(len(cells)))
            continue
        if not (name.startswith("C(") and "[T." in name and name.endswith("]")):
            raise ValueError(f"cannot build the design column for {name!r}")
        factor = name[2:name.index(")")]
        level = name[name.index("[T.") + 3:-1]
        cols.append((cells[factor].astype(str).to_numpy() == level).astype(float))
    return np.column_stack(cols)


class LogLinearFit:
    """params, bse (Series), cov_params() (DataFrame) and predict() of a log-link GLM."""

    def __init__(self, params: pd.Series, bse: pd.Series, cov: pd.DataFrame):
        self.params, self.bse, self._cov = params, bse, cov

    @classmethod
    def of(cls, result) -> "LogLinearFit":
        """From a fitted statsmodels GLM result (log link)."""
        return cls(result.params.copy(), result.bse.copy(), result.cov_params().copy())

    def cov_params(self) -> pd.DataFrame:
        return self._cov

    def predict(self, frame: pd.DataFrame, offset=None) -> pd.Series:
        """exp(X beta + offset) for each row of ``frame``."""
        eta = design_matrix(self.params, frame) @ self.params.to_numpy()
        if offset is not None:
            eta = eta + np.asarray(offset, dtype=float)
        return pd.Series(np.exp(eta), index=frame.index)


def at_level(fit: LogLinearFit, factor: str, level, weight: float = 1.0,
             carry: tuple[str, ...] = ()) -> LogLinearFit:
    """``fit`` with ``factor`` held at ``level`` and taken out of the design: its
    coefficient at that level, times ``weight`` (a credibility, 1 by default), added
    to the intercept (0 at the base level), the rest of it, (1 - weight) times, to
    each coefficient named in ``carry`` (cells the level's data identify apart, which
    keep the whole of it), its other coefficients dropped, the covariance carried by
    the same linear map (beta' = T beta, cov' = T cov T'), so a cell without the
    factor's column is predicted as it would be at ``level``.

    >>> f = LogLinearFit(pd.Series([0.1, 0.2, 0.3], index=["Intercept", "C(a)[T.2]",
    ...                  "C(c)[T.1]"]), pd.Series([0.0] * 3, index=["Intercept", "C(a)[T.2]",
    ...                  "C(c)[T.1]"]), pd.DataFrame(np.eye(3)))
    >>> g = at_level(f, "c", 1)
    >>> g.params.round(6).to_dict(), g.cov_params().to_numpy().tolist()
    ({'Intercept': 0.4, 'C(a)[T.2]': 0.2}, [[2.0, 0.0], [0.0, 1.0]])
    >>> at_level(f, "c", 1, 0.25, carry=("C(a)[T.2]",)).params.round(6).to_dict()
    {'Intercept': 0.175, 'C(a)[T.2]': 0.425}
    """
    names = list(fit.params.index)
    own = [n for n in names if n.startswith(f"C({factor})[")]
    keep = [n for n in names if n not in own]
    if "Intercept" not in keep:
        raise ValueError("a fit without an intercept cannot hold a factor at a level")
    t = np.zeros((len(keep), len(names)))
    for i, n in enumerate(keep):
        t[i, names.index(n)] = 1.0
    at = f"C({factor})[T.{level}]"
    if at in names:
        t[keep.index("Intercept"), names.index(at)] = weight
        for c in carry:
            if c in keep:
                t[keep.index(c), names.index(at)] = 1.0 - weight
    beta = t @ fit.params.to_numpy()
    cov = t @ np.asarray(fit.cov_params(), dtype=float) @ t.T
    return LogLinearFit(pd.Series(beta, index=keep), pd.Series(np.sqrt(np.diag(cov)), index=keep),
                        pd.DataFrame(cov, index=keep, columns=keep))
