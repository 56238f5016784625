"""Time to first hospital admission, from the fund data's settlements.

Everyone alive on 1 January of the first data year is followed from then to their
first inpatient settlement (med_type 21-24, 52; a reversed settlement does not count)
or, without one, to their death or the end of the last data year (censored). Time is
in years. Kaplan-Meier by age band and a Cox model (lifelines) of the hazard on age
band, sex, employee and low income, with two diagnostics: the hazard ratio of the
oldest band by window of follow-up (proportional hazards) and calibration, the
predicted against the Kaplan-Meier one-year risk by decile of predicted risk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.fund.schema import INPATIENT_MED_TYPES
from puhui.pricing.frequency import age_band

#: Covariates of the admission model (age bands as indicators against 0-60).
ADMISSION_COVARIATES = ("age_61_70", "age_71_80", "age_81", "male", "employee", "low_income")


def first_admissions(persons: pd.DataFrame, settlements: pd.DataFrame, years) -> pd.DataFrame:
    """One row per person alive on 1 January of the first of ``years``: ``time`` (years
    to the first admission or the end of follow-up), ``admitted`` and the covariates.

    >>> per = pd.DataFrame({"psn_no": ["a", "b"], "birth_year": [1950, 1990],
    ...     "gender": ["1", "2"], "insutype": ["310", "390"], "low_income": False,
    ...     "death_date": pd.to_datetime([None, "2024-07-02"])})
    >>> st = pd.DataFrame({"setl_id": ["s1"], "psn_no": ["a"], "med_type": ["21"],
    ...     "setl_time": pd.to_datetime(["2024-04-01"]), "refund_of": [None]})
    >>> first_admissions(per, st, [2024])[["psn_no", "time", "admitted"]].round(3).values.tolist()
    [['a', 0.249, True], ['b', 0.501, False]]
    """
    years = sorted(int(y) for y in years)
    start = pd.Timestamp(years[0], 1, 1)
    end = pd.Timestamp(years[-1] + 1, 1, 1)
    death = pd.to_datetime(persons["death_date"])
    alive = (death.isna() | (death >= start)).to_numpy()
    p = persons[alive]
    st = settlements
    inpatient = st["med_type"].astype(str).isin(INPATIENT_MED_TYPES).to_numpy()
    if "refund_of" in st.columns:
        reversed_ids = set(st["refund_of"].dropna().astype(str))
        inpatient &= st["refund_of"].isna().to_numpy()
        inpatient &= ~st["setl_id"].astype(str).isin(reversed_ids).to_numpy()
    inp = st[inpatient & (pd.to_datetime(st["setl_time"]) >= start).to_numpy()]
    first = inp.groupby(inp["psn_no"].astype(str), observed=True)["setl_time"].min()
    ids = p["psn_no"].astype(str)
    adm = pd.to_datetime(first.reindex(ids.to_numpy())).to_numpy()
    dd = pd.to_datetime(p["death_date"]).to_numpy()
    stop = np.where(pd.isna(dd) | (dd >= np.datetime64(end)), np.datetime64(end), dd)
    admitted = ~pd.isna(adm) & (adm < stop)
    t_end = np.where(admitted, adm, stop)
    time = (t_end - np.datetime64(start)) / np.timedelta64(1, "D") / 365.25
    age = years[0] - p["birth_year"].to_numpy()
    out = pd.DataFrame({"psn_no": ids.to_numpy(), "time": np.maximum(time, 1e-6),
                        "admitted": admitted, "age": age,
                        "age_band": np.asarray(age_band(age).astype(str)),
                        "male": (p["gender"].astype(str).to_numpy() == "1").astype(int),
                        "employee": (p["insutype"].astype(str).to_numpy() == "310").astype(int),
                        "low_income": p["low_income"].astype(bool).to_numpy().astype(int)})
    out["age_61_70"] = ((age >= 61) & (age <= 70)).astype(int)
    out["age_71_80"] = ((age >= 71) & (age <= 80)).astype(int)
    out["age_81"] = (age >= 81).astype(int)
    return out


def fit_admission_cox(fa: pd.DataFrame, covariates=ADMISSION_COVARIATES):
    """lifelines' CoxPHFitter of years to the first admission."""
    from lifelines import CoxPHFitter

    cols = [c for c in covariates if fa[c].nunique() > 1]
    return CoxPHFitter().fit(fa[["time", "admitted", *cols]], duration_col="time",
                             event_col="admitted")


def hazard_ratio_by_window(fa: pd.DataFrame, covariate: str, windows,
                           covariates=ADMISSION_COVARIATES) -> pd.DataFrame:
    """The proportional-hazards check of the admission model
    (:func:`puhui.survival.diagnostics.hazard_ratio_by_window`)."""
    from puhui.survival.diagnostics import hazard_ratio_by_window as by_window

    return by_window(fa, "time", "admitted", covariate, windows, covariates)


def calibration(cox, fa: pd.DataFrame, horizon: float = 1.0, groups: int = 10) -> pd.DataFrame:
    """The admission model's calibration (:func:`puhui.survival.diagnostics.calibration`)."""
    from puhui.survival.diagnostics import calibration as by_decile

    return by_decile(cox, fa, "time", "admitted", horizon, groups)
