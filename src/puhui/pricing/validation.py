"""Out-of-sample checks of a frequency model with scikit-learn: cross-validated Poisson
deviance, Gini and the Lorenz curve, calibration by decile, and a gradient-boosted
challenger (scikit-learn's HistGradientBoostingRegressor with a Poisson loss) on the
same rating factors.

Folds are by person (GroupKFold), so a person's years never sit on both sides. Above
``max_rows`` person-years a random subset (fixed seed) is used: the checks compare
models, they do not price.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.pricing.frequency import PoissonFrequency


def lorenz_curve(actual: np.ndarray, predicted: np.ndarray, exposure: np.ndarray):
    """Cumulative share of exposure and of actual claims, people ordered from the
    lowest predicted rate to the highest (the ordered Lorenz curve)."""
    order = np.argsort(predicted, kind="stable")
    x = np.concatenate([[0.0], np.cumsum(exposure[order]) / exposure.sum()])
    y = np.concatenate([[0.0], np.cumsum(actual[order]) / max(actual.sum(), 1e-12)])
    return x, y


def gini_index(actual: np.ndarray, predicted: np.ndarray, exposure: np.ndarray) -> float:
    """Gini = 1 - 2 x area under the ordered Lorenz curve (0: no ordering power).

    >>> round(gini_index(np.array([0, 0, 1.0]), np.array([0.1, 0.2, 0.9]), np.ones(3)), 4)
    0.6667
    """
    x, y = lorenz_curve(actual, predicted, exposure)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))     # trapezoid rule
    return 1 - 2 * area


def _encode(frame: pd.DataFrame, factors) -> np.ndarray:
    return np.column_stack([pd.Categorical(frame[f].astype(str)).codes for f in factors]) \
        if factors else np.zeros((len(frame), 1))


def cross_validate_frequency(frame: pd.DataFrame, count: str, factors, folds: int = 5,
                             seed: int = 0, max_rows: int = 400_000,
                             gbm_iterations: int = 200, use: np.ndarray | None = None) -> dict:
    """Per fold and on average: mean Poisson deviance of a null model (the training
    mean rate), the Poisson GLM and the GBM challenger; Gini of the GLM and the GBM;
    and, pooled over the test folds, calibration of the GLM by decile of predicted rate.
    ``frame``: one row per person-year (``psn_no``, ``exposure``, the factors);
    ``count``: its column of claim counts, or the counts per row (an array). Only the
    rows checked are copied (the subset is drawn before anything else). ``use``: the
    rows the model was fitted on (default: all).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import mean_poisson_deviance

    from puhui.execution import MANY_ROWS, limited_threads, native_threads
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(seed)
    on = frame["exposure"].to_numpy() > 0
    at = np.flatnonzero(on if use is None else on & np.asarray(use, dtype=bool))
    if len(at) > max_rows:
        at = at[np.sort(rng.choice(len(at), max_rows, replace=False))]
    if isinstance(count, str):
        f = frame.take(at)[["psn_no", "exposure", *factors, count]]
    else:
        f = frame.take(at)[["psn_no", "exposure", *factors]]
        f["_count"] = np.asarray(count)[at]
        count = "_count"
    f = f.reset_index(drop=True)
    y = f[count].to_numpy(dtype=float) / f["exposure"].to_numpy()
    e = f["exposure"].to_numpy(dtype=float)
    X = _encode(f, factors)
    rows, pooled = [], []
    for k, (tr, te) in enumerate(GroupKFold(n_splits=folds).split(X, y, groups=f["psn_no"])):
        glm = PoissonFrequency(factors).fit(f.iloc[tr], count)
        p_glm = np.maximum(glm.predict(f.iloc[te]), 1e-12)
        gbm = HistGradientBoostingRegressor(
            loss="poisson", max_iter=gbm_iterations, random_state=seed,
            categorical_features=list(range(X.shape[1])) if factors else None)
        with limited_threads(native_threads(1) if len(tr) >= MANY_ROWS else 1):
            gbm.fit(X[tr], y[tr], sample_weight=e[tr])
        p_gbm = np.maximum(gbm.predict(X[te]), 1e-12)
        p_null = np.full(len(te), np.average(y[tr], weights=e[tr]))
        rows.append({
            "fold": k + 1,
            "deviance_null": mean_poisson_deviance(y[te], p_null, sample_weight=e[te]),
            "deviance_glm": mean_poisson_deviance(y[te], p_glm, sample_weight=e[te]),
            "deviance_gbm": mean_poisson_deviance(y[te], p_gbm, sample_weight=e[te]),
            "gini_glm": gini_index(y[te] * e[te], p_glm, e[te]),
            "gini_gbm": gini_index(y[te] * e[te], p_gbm, e[te])})
        pooled.append(pd.DataFrame({"actual": y[te] * e[te], "expected": p_glm * e[te],
                                    "rate": p_glm, "gbm": p_gbm, "exposure": e[te]}))
    folds_t = pd.DataFrame(rows)
    p = pd.concat(pooled, ignore_index=True)
    order = np.argsort(p["rate"].to_numpy(), kind="stable")
    dec = np.empty(len(p), dtype=int)
    dec[order] = np.arange(len(p)) * 10 // len(p)
    calib = p.groupby(dec).agg(people=("actual", "size"), actual=("actual", "sum"),
                               expected=("expected", "sum")).reset_index(names="decile")
    calib["decile"] += 1
    mean = folds_t.drop(columns="fold").mean()
    lx, ly = lorenz_curve(p["actual"].to_numpy(), p["rate"].to_numpy(), p["exposure"].to_numpy())
    gx, gy = lorenz_curve(p["actual"].to_numpy(), p["gbm"].to_numpy(), p["exposure"].to_numpy())
    return {"rows": len(f), "folds": folds_t, "mean": mean.to_dict(), "calibration": calib,
            "lorenz_glm": (lx, ly), "lorenz_gbm": (gx, gy)}
