"""Every survival fit of a fund-data folder with its diagnostics (``puhui survival``).

- **mortality**: deaths against CL1/CL2 (A/E by sex and age band, exact intervals);
  a Gompertz force by sex two ways (puhui's Poisson GLM by single age and lifelines'
  continuous-time MLE) with its calibration (the fitted force's expected deaths by
  band against the actual, Kaplan-Meier from 60 against the Gompertz curve and the
  Nelson-Aalen cumulative hazard against the Gompertz one); a
  Cox model on the age scale with entry (sex, employee, low income) and the
  proportional-hazards check (the sex hazard ratio by age window);
- **persistency** (:mod:`puhui.survival.persistency`): annual lapse rates by age band,
  pre-existing condition and funding (employee), the persistency curve and a Cox
  model of lapse with its diagnostics (:mod:`puhui.survival.diagnostics`: the
  pre-existing hazard ratio by year enrolled, calibration of the one-year lapse);
- **first admission** (:mod:`puhui.survival.admission`): Kaplan-Meier by age band,
  a Cox model, the proportional-hazards check by window of follow-up and the
  calibration by decile of predicted risk.

Cox models and the curves run on at most ``max_people`` people (a random subset with
``seed``, stated in the figures); the A/E and the Gompertz fits on everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from puhui.survival import admission as adm
from puhui.survival import diagnostics as diag
from puhui.survival import persistency as pst
from puhui.survival.lifetime import (
    fit_cox,
    hazard_ratios_by_age,
    kaplan_meier,
    lifetimes,
    nelson_aalen,
)
from puhui.survival.mortality import (
    actual_to_expected,
    fit_gompertz,
    gompertz_mle,
    observed_years,
)

#: Age windows of the mortality proportional-hazards check.
AGE_WINDOWS = ((60, 75), (75, 90), (90, 110))
#: Windows of years enrolled of the lapse proportional-hazards check (whole years).
LAPSE_WINDOWS = ((0.0, 1.5), (1.5, 2.5), (2.5, 50.0))
#: Windows of follow-up (years) of the admission proportional-hazards check.
TIME_WINDOWS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 5.0))


@dataclass
class SurvivalStudy:
    figures: dict
    tables: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)      # for the report's plots


def _subset(n: int, max_people: int | None, seed: int) -> np.ndarray:
    if not max_people or n <= max_people:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_people, replace=False))


def _cox_table(cox) -> pd.DataFrame:
    s = cox.summary
    return pd.DataFrame({"covariate": s.index, "hazard_ratio": s["exp(coef)"].to_numpy(),
                         "lower_95": s["exp(coef) lower 95%"].to_numpy(),
                         "upper_95": s["exp(coef) upper 95%"].to_numpy(),
                         "coef": s["coef"].to_numpy(), "se": s["se(coef)"].to_numpy(),
                         "p": s["p"].to_numpy()})


def gompertz_calibration(obs: pd.DataFrame, fit: pd.DataFrame, bands) -> pd.DataFrame:
    """Actual deaths against the fitted Gompertz force's expected (central exposure x
    mu at the mid-year age) by sex and age band."""
    rows = []
    for r in fit.itertuples():
        o = obs[obs["gender"].astype(str) == r.gender]
        for lo, hi in bands:
            w = o[(o["age"] >= lo) & (o["age"] <= hi)]
            if len(w) < 10:
                continue
            mu = np.exp(r.a + r.b * (w["age"].to_numpy() + 0.5))
            e = float((w["exposure"].to_numpy() * mu).sum())
            rows.append({"gender": r.gender, "band": f"{lo}-{hi}", "person_years": len(w),
                         "deaths": int(w["died"].sum()), "fitted": e,
                         "ratio": int(w["died"].sum()) / e if e > 0 else np.nan})
    return pd.DataFrame(rows)


def mortality_study(persons: pd.DataFrame, years, max_people: int | None, seed: int) -> dict:
    years = sorted(int(y) for y in years)
    obs = observed_years(persons, years)
    ae = actual_to_expected(obs)
    gz = fit_gompertz(obs, min_age=60, max_age=100)
    lt = lifetimes(persons, years[0], years[-1])
    lt = lt.assign(male=(lt["gender"] == "1").astype(int),
                   employee=(persons["insutype"].astype(str).to_numpy()[lt["person"]] == "310")
                   .astype(int),
                   low_income=persons["low_income"].astype(bool).to_numpy()[lt["person"]]
                   .astype(int))
    old = lt[lt["exit"] > 60]
    mle = []
    curves = {}
    for g in ("1", "2"):
        o = old[old["gender"] == g]
        if int(o["died"].sum()) < 10:
            continue
        e, x = np.maximum(o["entry"].to_numpy(), 60), np.minimum(o["exit"].to_numpy(), 101)
        d = o["died"].to_numpy() & (o["exit"].to_numpy() <= 101)
        mle.append({"gender": g, **gompertz_mle(e, x, d)})
        km = kaplan_meier(o, g, from_age=60)
        ages = np.arange(60, 101)
        s_km = km.survival_function_at_times(ages).to_numpy()
        h_na = nelson_aalen(o, from_age=60).cumulative_hazard_at_times(ages).to_numpy()
        r = gz[gz["gender"] == g]
        if len(r):
            a, b = float(r["a"].iloc[0]), float(r["b"].iloc[0])
            h_gz = np.exp(a) / b * (np.exp(b * ages) - np.exp(b * 60))
            curves[g] = pd.DataFrame({"age": ages, "kaplan_meier": s_km, "gompertz": np.exp(-h_gz),
                                      "nelson_aalen": h_na, "gompertz_cumulative_hazard": h_gz})
    sub = old.iloc[_subset(len(old), max_people, seed)]
    cov = [c for c in ("male", "employee", "low_income") if sub[c].nunique() > 1]
    cox = fit_cox(sub, cov, from_age=60) if int(sub["died"].sum()) >= 10 and cov else None
    ph = hazard_ratios_by_age(sub, "male", AGE_WINDOWS) if "male" in cov else pd.DataFrame()
    hazards = pd.DataFrame([
        {"gender": g, "age": int(x), "nelson_aalen": float(c.loc[c["age"] == x, "nelson_aalen"].iloc[0]),
         "gompertz": float(c.loc[c["age"] == x, "gompertz_cumulative_hazard"].iloc[0])}
        for g, c in curves.items() for x in (70, 80, 90)])
    return {"observed": obs, "ae": ae, "gompertz": gz, "gompertz_mle": pd.DataFrame(mle),
            "cumulative_hazard": hazards,
            "calibration": gompertz_calibration(obs, gz, ((60, 69), (70, 79), (80, 89), (90, 100))),
            "cox": _cox_table(cox) if cox is not None else pd.DataFrame(), "ph": ph,
            "curves": curves, "people_cox": len(sub)}


def persistency_study(policies: pd.DataFrame, persons: pd.DataFrame,
                      max_people: int | None, seed: int) -> dict:
    py = pst.policy_years(policies, persons)
    if not len(py):
        return {"note": "one data year of policies: no renewal to observe"}
    rates = pd.concat([pst.lapse_rates(py, by) for by in ("age_band", "preexisting", "employee")],
                      ignore_index=True)
    rates = rates[rates["at_risk"] >= 10].reset_index(drop=True)     # no small groups
    sp = pst.spells(py)
    sp = sp.iloc[_subset(len(sp), max_people, seed)]
    km = pst.persistency_curve(sp)
    kmt = km.survival_function_.reset_index()
    kmt.columns = ["years", "still_enrolled"]
    cox = pst.fit_lapse_cox(sp) if int(sp["lapsed"].sum()) >= 10 else None
    out = {"policy_years": len(py), "outcomes": py["outcome"].value_counts().to_dict(),
           "rates": rates, "curve": kmt, "spells": len(sp),
           "cox": _cox_table(cox) if cox is not None else pd.DataFrame()}
    if cox is not None:
        d = pst.lapse_frame(sp)
        out["ph"] = diag.hazard_ratio_by_window(d, "years", "lapsed", "preexisting",
                                                LAPSE_WINDOWS, pst.LAPSE_COVARIATES)
        out["calibration"] = diag.calibration(cox, d, "years", "lapsed", horizon=1.0)
    return out


def admission_study(persons: pd.DataFrame, settlements: pd.DataFrame, years,
                    max_people: int | None, seed: int) -> dict:
    fa = adm.first_admissions(persons, settlements, years)
    fa = fa.iloc[_subset(len(fa), max_people, seed)].reset_index(drop=True)
    from lifelines import KaplanMeierFitter

    curves = {}
    horizon = float(fa["time"].max()) if len(fa) else 0.0
    grid = np.linspace(0, horizon, 50)
    for band, g in fa.groupby("age_band", sort=True):
        if len(g) < 10:
            continue
        km = KaplanMeierFitter().fit(g["time"], event_observed=g["admitted"])
        curves[band] = pd.DataFrame({"years": grid, "not_admitted":
                                     km.survival_function_at_times(grid).to_numpy()})
    out = {"people": len(fa), "admitted": int(fa["admitted"].sum()), "curves": curves}
    if int(fa["admitted"].sum()) < 10:
        return out
    cox = adm.fit_admission_cox(fa)
    oldest = "age_81" if "age_81" in cox.params_.index else cox.params_.index[0]
    windows = [(lo, hi) for lo, hi in TIME_WINDOWS if lo < horizon]
    out.update({"cox": _cox_table(cox), "ph_covariate": oldest,
                "ph": adm.hazard_ratio_by_window(fa, oldest, windows),
                "calibration": adm.calibration(cox, fa, horizon=min(1.0, horizon))})
    return out


def study(data, years, max_people: int | None = 200_000, seed: int = 0) -> SurvivalStudy:
    """All three studies on ``data`` (a FundData with persons, policies, settlements)."""
    m = mortality_study(data.persons, years, max_people, seed)
    p = persistency_study(data.policies, data.persons, max_people, seed)
    a = admission_study(data.persons, data.settlements, years, max_people, seed)
    obs = m["observed"]

    def records(df, digits=6):
        return [{k: (round(v, digits) if isinstance(v, float) else
                     (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
                for r in df.to_dict("records")] if isinstance(df, pd.DataFrame) else []

    figures = {
        "years": [min(years), max(years)],
        "max_people": max_people, "seed": seed,
        "mortality": {"person_years": len(obs), "deaths": int(obs["died"].sum()),
                      "actual_to_expected": records(m["ae"]),
                      "gompertz_glm": records(m["gompertz"]),
                      "gompertz_lifelines": records(m["gompertz_mle"]),
                      "gompertz_calibration": records(m["calibration"]),
                      "cumulative_hazard_from_60": records(m["cumulative_hazard"]),
                      "cox_people": m["people_cox"], "cox": records(m["cox"]),
                      "sex_hazard_ratio_by_age": records(m["ph"])},
        "persistency": ({"note": p["note"]} if "note" in p else {
            "policy_years": p["policy_years"],
            "outcomes": {k: int(v) for k, v in p["outcomes"].items()},
            "lapse_rates": records(p["rates"]), "spells": p["spells"],
            "curve": records(p["curve"]), "cox": records(p["cox"]),
            "preexisting_hazard_ratio_by_window": records(p.get("ph")),
            "calibration": records(p.get("calibration")),
            "funding": "employee (insutype 310) stands for 'may pay from a personal "
                       "medical account': the data has no payer field"}),
        "first_admission": {"people": a["people"], "admitted": a["admitted"],
                            "cox": records(a.get("cox")),
                            "ph_covariate": a.get("ph_covariate"),
                            "hazard_ratio_by_window": records(a.get("ph")),
                            "calibration": records(a.get("calibration"))},
    }
    tables = {"ae": m["ae"], "gompertz": m["gompertz"], "gompertz_mle": m["gompertz_mle"],
              "gompertz_calibration": m["calibration"], "mortality_cox": m["cox"],
              "cumulative_hazard": m["cumulative_hazard"],
              "mortality_ph": m["ph"], "lapse_rates": p.get("rates"),
              "lapse_cox": p.get("cox"), "persistency_curve": p.get("curve"),
              "lapse_ph": p.get("ph"), "lapse_calibration": p.get("calibration"),
              "admission_cox": a.get("cox"), "admission_ph": a.get("ph"),
              "admission_calibration": a.get("calibration")}
    curves = {"mortality": m["curves"], "admission": a["curves"]}
    return SurvivalStudy(figures, tables, curves)


#: The settlements' columns the study reads.
STUDY_COLUMNS = ("setl_id", "psn_no", "setl_time", "med_type", "refund_of")


def _study_columns(start, st, who, has_lines):
    """Validation's sink: only the settlements' columns the study reads."""
    return (st[[c for c in STUDY_COLUMNS if c in st.columns]],)


def study_folder(directory, max_people: int | None = 200_000, seed: int = 0
                 ) -> tuple[SurvivalStudy, range]:
    """``puhui survival`` without its files: the folder validated (refused with
    ``puhui validate``'s messages when it breaks the contract), its data years (first to
    last settlement) and :func:`study` on it; the command and the Python API
    (:class:`puhui.Survival`) both run it. Returns (the study, the years)."""
    from puhui.errors import InputError
    from puhui.fund.files import FundData, join_chunks
    from puhui.fund.validate import CHUNK_ROWS, default_workers, validate_dir

    rep = validate_dir(directory, keep=True, chunk_rows=CHUNK_ROWS, workers=default_workers(),
                       settlements_sink=_study_columns, codes=False)
    if not rep.ok:
        raise InputError(f"{directory}: the data breaks the contract; fix it first "
                         f"(`puhui validate {directory}` lists the same):\n{rep.messages()}")
    values = rep.take_settlement_values()
    chunks = [c for c in values[0] if c is not None] if values else []
    st = join_chunks(chunks) if chunks else None
    if st is None or len(st) == 0:
        raise InputError(f"{directory}: no settlements, so no data years to observe")
    t = rep.typed
    years = range(int(st["setl_time"].min().year), int(st["setl_time"].max().year) + 1)
    res = study(FundData(t["persons"], t["policies"], st, t.get("settlement_lines")), years,
                max_people=max_people, seed=seed)
    return res, years


def survival_json(figures: dict) -> str:
    """``survival.json``'s text (without its final newline)."""
    import json

    return json.dumps(figures, indent=1, ensure_ascii=False, default=str)
