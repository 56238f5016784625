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

#: Days in an average year (exact ages from dates).
YEAR_DAYS = 365.25


def lifetimes(persons: pd.DataFrame, first_year: int, last_year: int) -> pd.DataFrame:
    """``person``, ``gender``, ``entry`` (exact age on 1 January of ``first_year``),
    ``exit`` (at death or on 31 December of ``last_year``) and ``died``, for the people
    alive at the start.

    >>> p = pd.DataFrame({"birth_year": [1950, 1980], "gender": ["1", "2"],
    ...                   "death_date": pd.to_datetime(["2024-07-01", None])})
    >>> lifetimes(p, 2024, 2025).round(2).values.tolist()
    [[0, '1', 73.5, 74.0, True], [1, '2', 43.5, 45.5, False]]
    """
    death = pd.to_datetime(persons["death_date"])
    start, end = pd.Timestamp(f"{first_year}-01-01"), pd.Timestamp(f"{last_year}-12-31")
    alive = (death.isna() | (death >= start)).to_numpy()
    who = np.flatnonzero(alive)
    birth = pd.to_datetime(pd.DataFrame({"year": persons["birth_year"].to_numpy()[who],
                                         "month": 7, "day": 1}))
    d = death.iloc[who].reset_index(drop=True)
    died = (d.notna() & (d <= end)).to_numpy()
    last = d.where(died, end + pd.Timedelta(days=1))     # to the end of the last day
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


def conditional_survival(km, from_age: float, ages) -> np.ndarray:
    """S(x) / S(from_age) from a fitted Kaplan-Meier curve: the chance of reaching each
    age in ``ages`` for someone alive at ``from_age``."""
    s = km.survival_function_at_times(np.asarray([from_age, *np.atleast_1d(ages)],
                                                 dtype=float)).to_numpy()
    return s[1:] / s[0] if s[0] > 0 else np.full(len(s) - 1, np.nan)
