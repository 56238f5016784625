"""Persistency: how long people stay insured (time to lapse), from the fund data's
policies.

A person is enrolled in a data year when they hold a policy starting in it (any
product of the file). Each enrolled year but the last ends in one of:

- ``renewed``: enrolled again the next year;
- ``died``: died in the year (cannot renew; not a lapse);
- ``lapsed``: alive at the year's end and not enrolled the next year.

The annual lapse rate of a group is lapsed / (renewed + lapsed), with a Wilson 95 %
interval. This is the discrete-time hazard of lapse, and 1 - it is what the pricing
renewal model (:class:`puhui.pricing.enrolment.EnrolmentModel`, a logistic GLM on
cells of people alive in both years) fits by cell; the lifetime price's lapse
sensitivity takes it by policy duration from :func:`policy_years`
(:func:`puhui.pricing.lifetime.lapse_by_duration`). Spells of consecutive enrolment from a person's first enrolled data year
give the persistency curve (Kaplan-Meier on years enrolled: lifelines) and a Cox
model of lapse on age band, pre-existing condition and funding.

Funding source: the data contract has no payer field; in Shanghai the premium may be
paid from the employee's personal medical account (docs/domain.md §2: about 80 % are), and
only employees (insutype 310) have one, so ``employee`` stands for "may pay from a
personal account".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.pricing.frequency import age_band

RENEWED, LAPSED, DIED = "renewed", "lapsed", "died"


def enrolled_years(policies: pd.DataFrame) -> pd.DataFrame:
    """Distinct (psn_no, year) with a policy starting in the year."""
    y = pd.to_datetime(policies["start_date"]).dt.year
    return (pd.DataFrame({"psn_no": policies["psn_no"].astype(str).to_numpy(), "year": y.to_numpy(),
                          "preexisting": policies["preexisting"].astype(bool).to_numpy()})
            .groupby(["psn_no", "year"], as_index=False)["preexisting"].max())


def policy_years(policies: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """One row per person and enrolled year that has a next data year: ``year``,
    ``age`` (year - birth year), ``age_band``, ``male``, ``employee``, ``preexisting``
    (the policy's flag), ``outcome`` (renewed, lapsed or died; module docstring).

    >>> pol = pd.DataFrame({"psn_no": ["a", "a", "b", "c"], "preexisting": False,
    ...     "start_date": pd.to_datetime(["2024-01-01", "2025-01-01", "2024-01-01", "2024-01-01"])})
    >>> per = pd.DataFrame({"psn_no": ["a", "b", "c"], "birth_year": 1950, "gender": "1",
    ...     "insutype": "310", "death_date": pd.to_datetime([None, None, "2024-05-01"])})
    >>> policy_years(pol, per)[["psn_no", "year", "outcome"]].values.tolist()
    [['a', 2024, 'renewed'], ['b', 2024, 'lapsed'], ['c', 2024, 'died']]
    """
    ey = enrolled_years(policies)
    last = int(ey["year"].max()) if len(ey) else 0
    nxt = set(zip(ey["psn_no"], ey["year"] - 1))
    py = ey[ey["year"] < last].copy()
    p = persons.set_index(persons["psn_no"].astype(str))
    p = p.reindex(py["psn_no"])
    death_year = pd.to_datetime(p["death_date"]).dt.year.to_numpy()
    renewed = np.fromiter(((a, y) in nxt for a, y in zip(py["psn_no"], py["year"])), bool,
                          count=len(py))
    died = (death_year == py["year"].to_numpy())
    py["outcome"] = np.where(renewed, RENEWED, np.where(died, DIED, LAPSED))
    py["age"] = py["year"].to_numpy() - p["birth_year"].to_numpy()
    py["age_band"] = np.asarray(age_band(py["age"]).astype(str))
    py["male"] = (p["gender"].astype(str).to_numpy() == "1").astype(int)
    py["employee"] = (p["insutype"].astype(str).to_numpy() == "310").astype(int)
    py["preexisting"] = py["preexisting"].astype(int)
    return py.reset_index(drop=True)


def wilson_interval(k, n, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion k / n.

    >>> [round(float(v[0]), 4) for v in wilson_interval(np.array([5]), np.array([20]))]
    [0.1119, 0.4687]
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    p = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    d = 1 + z ** 2 / np.maximum(n, 1)
    c = (p + z ** 2 / (2 * np.maximum(n, 1))) / d
    h = z * np.sqrt(p * (1 - p) / np.maximum(n, 1) + z ** 2 / (4 * np.maximum(n, 1) ** 2)) / d
    return c - h, c + h


def lapse_rates(py: pd.DataFrame, by: str) -> pd.DataFrame:
    """Annual lapse rate by ``by`` among those alive to renew, with a Wilson interval."""
    alive = py[py["outcome"] != DIED]
    g = alive.groupby(by, observed=True)["outcome"].agg(
        at_risk="size", lapsed=lambda s: int((s == LAPSED).sum())).reset_index()
    lo, hi = wilson_interval(g["lapsed"], g["at_risk"])
    return g.assign(factor=by, level=g[by].astype(str), lapse_rate=g["lapsed"] / g["at_risk"],
                    lower=lo, upper=hi)[["factor", "level", "at_risk", "lapsed", "lapse_rate",
                                         "lower", "upper"]]


def spells(py: pd.DataFrame) -> pd.DataFrame:
    """Each person's first spell of consecutive enrolment from their first row of
    ``py``: ``years`` enrolled in it, ``lapsed`` (ended by an observed lapse; a death or
    the data's end censors it), the covariates of its first year."""
    py = py.sort_values(["psn_no", "year"], kind="stable")
    first = py.groupby("psn_no", sort=False).head(1).set_index("psn_no")
    # years enrolled = rows of the spell (renewed rows, then its ending row)
    ended = py[py["outcome"] != RENEWED].groupby("psn_no", sort=False).head(1).set_index("psn_no")
    start = first["year"]
    end = ended["year"].reindex(first.index)
    last_year = int(py["year"].max()) + 1 if len(py) else 0
    years = np.where(end.notna(), end - start + 1, last_year - start + 1)
    out = first[["age", "age_band", "male", "employee", "preexisting"]].copy()
    out["years"] = years.astype(float)
    out["lapsed"] = (ended["outcome"].reindex(first.index) == LAPSED).to_numpy()
    return out.reset_index()


def persistency_curve(sp: pd.DataFrame, label: str = "all"):
    """lifelines' Kaplan-Meier of years enrolled (event: lapse)."""
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter(label=label).fit(sp["years"], event_observed=sp["lapsed"])


#: Covariates of the lapse model; ``old``: aged 61 or more at the spell's start.
LAPSE_COVARIATES = ("employee", "preexisting", "old")


def lapse_frame(sp: pd.DataFrame) -> pd.DataFrame:
    """The spells with the lapse model's covariates."""
    return sp.assign(old=(sp["age"] >= 61).astype(int))


def fit_lapse_cox(sp: pd.DataFrame, covariates=LAPSE_COVARIATES):
    """lifelines' CoxPHFitter of years enrolled to lapse (Efron ties on whole years)."""
    from lifelines import CoxPHFitter

    d = lapse_frame(sp)
    cols = [c for c in covariates if d[c].nunique() > 1]
    return CoxPHFitter().fit(d[["years", "lapsed", *cols]], duration_col="years",
                             event_col="lapsed")
