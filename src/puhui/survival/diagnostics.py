"""Diagnostics of a Cox model on a time-since-start scale (everyone starts at 0):
the proportional-hazards check by window of follow-up and calibration by decile of
predicted risk. Used by the first-admission and the lapse models."""

from __future__ import annotations

import numpy as np
import pandas as pd


def hazard_ratio_by_window(df: pd.DataFrame, duration: str, event: str, covariate: str,
                           windows, covariates) -> pd.DataFrame:
    """The Cox model refitted on follow-up within each window (those still followed at
    its start, censored at its end), the covariate's hazard ratio with its 95 %
    interval: under proportional hazards they agree. Everyone in a window enters at its
    start, so time is counted from there (the same partial likelihood as with an entry
    time, without lifelines' much slower left-truncated path). A window with too few
    events, or whose fit does not converge, has no row."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    rows = []
    for lo, hi in windows:
        w = df[df[duration] > lo]
        d = pd.DataFrame({"exit": np.minimum(w[duration], hi) - lo,
                          "event": w[event].astype(bool) & (w[duration] <= hi)})
        cols = [c for c in covariates if w[c].nunique() > 1]
        if covariate not in cols or int(d["event"].sum()) < 10:
            continue
        d = pd.concat([d, w[cols]], axis=1)
        try:
            s = CoxPHFitter().fit(d, duration_col="exit", event_col="event").summary.loc[
                covariate]
        except ConvergenceError:
            # a window whose few events a covariate separates (a small fund) has no
            # estimate: left out, as a window of too few events is
            continue
        rows.append({"from": lo, "to": hi, "events": int(d["event"].sum()),
                     "hazard_ratio": float(s["exp(coef)"]),
                     "lower_95": float(s["exp(coef) lower 95%"]),
                     "upper_95": float(s["exp(coef) upper 95%"])})
    return pd.DataFrame(rows)


def calibration(cox, df: pd.DataFrame, duration: str, event: str, horizon: float = 1.0,
                groups: int = 10) -> pd.DataFrame:
    """By group of predicted risk of the event within ``horizon``: people, the mean
    predicted risk (the Cox model's) and the Kaplan-Meier observed risk (lifelines)."""
    from lifelines import KaplanMeierFitter

    surv = cox.predict_survival_function(df, times=[horizon]).to_numpy().ravel()
    risk = 1.0 - surv
    order = np.argsort(risk, kind="stable")
    g = np.empty(len(order), dtype=int)
    g[order] = np.arange(len(order)) * groups // max(len(order), 1)
    rows = []
    for k in range(groups):
        on = g == k
        if not on.any():
            continue
        km = KaplanMeierFitter().fit(df[duration][on], event_observed=df[event][on])
        rows.append({"group": k + 1, "people": int(on.sum()),
                     "predicted": float(risk[on].mean()),
                     "observed": float(1 - km.survival_function_at_times(horizon).iloc[0])})
    return pd.DataFrame(rows)
