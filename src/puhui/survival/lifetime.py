"""Lifetimes of the fund data's people on the age time scale, with lifelines.

Each person alive on 1 January of the first data year enters observation at their exact
age that day and leaves it at death or at the end of the last data year: left-truncated
and right-censored lifetimes. Birth dates are not in the data (only the birth year), so
every birth is put on 1 July (the mid-year convention; an age is exact to half a year).

:func:`kaplan_meier` fits lifelines' Kaplan-Meier estimator with ``entry`` (people join
the risk set at the age they were first observed, not at birth: without it the
survival of old ages is overstated, since nobody is seen dying before they are
observed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.survival.mortality import alive_on

#: Days in an average year (exact ages from dates).
YEAR_DAYS = 365.25


def lifetimes(persons: pd.DataFrame, first_year: int, last_year: int) -> pd.DataFrame:
    """``person``, ``gender``, ``entry`` (exact age on 1 January of ``first_year``),
    ``exit`` (at the end of the day of death, or of 31 December of ``last_year``) and
    ``died``, for the people alive at the start.

    >>> p = pd.DataFrame({"birth_year": [1950, 1980], "gender": ["1", "2"],
    ...                   "death_date": pd.to_datetime(["2024-07-01", None])})
    >>> lifetimes(p, 2024, 2025).round(2).values.tolist()
    [[0, '1', 73.5, 74.0, True], [1, '2', 43.5, 45.5, False]]
    """
    death = pd.to_datetime(persons["death_date"])
    start, end = pd.Timestamp(f"{first_year}-01-01"), pd.Timestamp(f"{last_year}-12-31")
    alive = alive_on(death, start)
    who = np.flatnonzero(alive)
    birth = pd.to_datetime(pd.DataFrame({"year": persons["birth_year"].to_numpy()[who],
                                         "month": 7, "day": 1}))
    d = death.iloc[who].reset_index(drop=True)
    died = (d.notna() & (d <= end)).to_numpy()
    # to the end of the last day observed (the day of death counts, as in the exposure
    # of puhui.survival.mortality.observed_years: a death on 1 January is a day lived)
    last = d.where(died, end) + pd.Timedelta(days=1)
    return pd.DataFrame({
        "person": who, "gender": persons["gender"].astype(str).to_numpy()[who],
        "entry": ((start - birth).dt.days / YEAR_DAYS).to_numpy(),
        "exit": ((last - birth).dt.days / YEAR_DAYS).to_numpy(), "died": died})


def kaplan_meier(lt: pd.DataFrame, label: str = "all", from_age: float | None = None):
    """lifelines' KaplanMeierFitter on age, with left truncation at ``entry``.

    ``from_age``: the curve starts there (each life observed from the later of its entry
    and that age; lives ending before it left out). With late entry the risk set at
    the youngest ages can be a handful of people, and one death there drives the
    product-limit estimate to zero for every later age (lifelines refuses such a fit):
    start where the risk set is large."""
    from lifelines import KaplanMeierFitter

    entry, exit, died = (lt[c].to_numpy() for c in ("entry", "exit", "died"))
    if from_age is not None:
        keep = exit > from_age
        entry, exit, died = np.maximum(entry[keep], from_age), exit[keep], died[keep]
    return KaplanMeierFitter(label=label).fit(exit, event_observed=died, entry=entry)


def nelson_aalen(lt: pd.DataFrame, label: str = "all", from_age: float | None = None):
    """lifelines' NelsonAalenFitter on age with left truncation at ``entry``: the
    cumulative hazard, from ``from_age`` when given (as :func:`kaplan_meier`)."""
    from lifelines import NelsonAalenFitter

    entry, exit, died = (lt[c].to_numpy() for c in ("entry", "exit", "died"))
    if from_age is not None:
        keep = exit > from_age
        entry, exit, died = np.maximum(entry[keep], from_age), exit[keep], died[keep]
    return NelsonAalenFitter(label=label).fit(exit, event_observed=died, entry=entry)


def conditional_survival(km, from_age: float, ages) -> np.ndarray:
    """S(x) / S(from_age) from a fitted Kaplan-Meier curve: the chance of reaching each
    age in ``ages`` for someone alive at ``from_age``."""
    s = km.survival_function_at_times(np.asarray([from_age, *np.atleast_1d(ages)],
                                                 dtype=float)).to_numpy()
    return s[1:] / s[0] if s[0] > 0 else np.full(len(s) - 1, np.nan)


def _window(lt: pd.DataFrame, lo: float | None, hi: float | None) -> pd.DataFrame:
    """Lifetimes seen only between ages ``lo`` and ``hi``: entry raised to ``lo``,
    exit cut at ``hi`` (a death after ``hi`` is censored there)."""
    w = lt
    if lo is not None:
        w = w[w["exit"] > lo].assign(entry=lambda d: np.maximum(d["entry"], lo))
    if hi is not None:
        w = w[w["entry"] < hi].assign(died=lambda d: d["died"] & (d["exit"] <= hi),
                                      exit=lambda d: np.minimum(d["exit"], hi))
    return w


def fit_cox(lt: pd.DataFrame, covariates: list[str], from_age: float | None = None,
            to_age: float | None = None):
    """lifelines' CoxPHFitter on the age time scale with entry (left truncation):
    the baseline hazard is a free function of age, the covariates multiply it. Checked
    against statsmodels' PHReg on the same lifetimes (tests/test_survival.py)."""
    from lifelines import CoxPHFitter

    w = _window(lt, from_age, to_age)
    return CoxPHFitter().fit(w[["entry", "exit", "died", *covariates]], duration_col="exit",
                             event_col="died", entry_col="entry")


def hazard_ratios_by_age(lt: pd.DataFrame, covariate: str, windows) -> pd.DataFrame:
    """The proportional-hazards check used here: the covariate's hazard ratio fitted
    separately in each age window (lifelines cannot compute Schoenfeld residuals with
    entry times, so its usual test is not available for left-truncated data); under
    proportional hazards the ratios agree within their intervals."""
    rows = []
    for lo, hi in windows:
        w = _window(lt, lo, hi)
        if int(w["died"].sum()) < 10:
            continue
        s = fit_cox(w, [covariate]).summary.loc[covariate]
        rows.append({"from_age": lo, "to_age": hi, "deaths": int(w["died"].sum()),
                     "hazard_ratio": float(s["exp(coef)"]),
                     "lower_95": float(s["exp(coef) lower 95%"]),
                     "upper_95": float(s["exp(coef) upper 95%"])})
    return pd.DataFrame(rows)
