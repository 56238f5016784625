"""People of the synthetic city: age, sex, scheme, health, and what happens to them
year by year (cancer onset, death)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.mortality import qx
from puhui.synth.params import by_max_age, logistic_curve, weighted_codes


def make_people(n: int, start_year: int, P: dict, rng: np.random.Generator) -> pd.DataFrame:
    """One row per person as at the start of ``start_year``."""
    pop, health, dx = P["population"], P["health"], P["diagnoses"]
    shares = np.asarray(pop["age_band_shares"], dtype="float64")
    band = rng.choice(len(shares), size=n, p=shares / shares.sum())
    age = band * 5 + rng.integers(0, 5, size=n)
    male = rng.random(n) < by_max_age(pop["male_share"], age)
    gender = np.where(male, "1", "2")
    employee = rng.random(n) < by_max_age(pop["employee_share"], age)
    ret_age = np.where(male, pop["retirement_age"]["male"], pop["retirement_age"]["female"])
    retired = employee & (age >= ret_age)
    li = pop["low_income_share"]
    low_income = rng.random(n) < np.where(employee, li["employee"], li["resident"])
    frailty = rng.gamma(health["frailty_shape"], 1.0 / health["frailty_shape"], size=n)
    chronic = rng.random(n) < logistic_curve(health["chronic"], age)
    ccodes, cw = weighted_codes(dx["chronic_codes"])
    chronic_code = np.where(chronic, rng.choice(ccodes, size=n, p=cw), "")
    severe = chronic & (np.isin(chronic_code, dx["severe_chronic_codes"])
                        | (rng.random(n) < health["severe_chronic_share"]))
    cancer = rng.random(n) < logistic_curve(health["cancer"], age)
    return pd.DataFrame({
        "person": np.arange(n, dtype="int64"),
        "birth_year": (start_year - age).astype("int64"),
        "gender": pd.Categorical(gender, categories=["1", "2"]),
        "insutype": pd.Categorical(np.where(employee, "310", "390"), categories=["310", "390"]),
        "retired": retired,
        "low_income": low_income,
        "frailty": frailty,
        "chronic": chronic,
        "chronic_code": chronic_code,
        "severe_chronic": severe,
        "cancer_since": np.where(cancer, start_year - 1, 0).astype("int64"),
        "cancer_code": _cancer_sites(cancer, male, dx, rng),
    })


def _cancer_sites(has: np.ndarray, male: np.ndarray, dx: dict, rng) -> np.ndarray:
    n = len(has)
    mc, mw = weighted_codes(dx["cancer_sites_male"])
    fc, fw = weighted_codes(dx["cancer_sites_female"])
    site = np.where(male, rng.choice(mc, size=n, p=mw), rng.choice(fc, size=n, p=fw))
    return np.where(has, site, "").astype(object)


def simulate_years(people: pd.DataFrame, start_year: int, years: int, P: dict,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Person-years: cancer onset and death, year by year. Updates ``people`` in place
    (``cancer_since``, ``cancer_code``, ``death_date``) and returns one row per person
    alive at the start of each year, with the exposure in days."""
    health, dx = P["health"], P["diagnoses"]
    n = len(people)
    alive = np.ones(n, dtype=bool)
    death = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    male = np.asarray(people["gender"]) == "1"
    rows = []
    for k in range(years):
        year = start_year + k
        age = year - people["birth_year"].to_numpy()
        # cancer onset this year
        since = people["cancer_since"].to_numpy()
        free = alive & (since == 0)
        inc = health["cancer_incidence_ratio"] * logistic_curve(health["cancer"], age)
        onset = free & (rng.random(n) < inc)
        if onset.any():
            people.loc[onset, "cancer_since"] = year
            people.loc[onset, "cancer_code"] = _cancer_sites(
                np.ones(onset.sum(), bool), male[onset], dx, rng)
        has_cancer = people["cancer_since"].to_numpy() > 0
        # death: CL table q(x), cancer excess normalised by the age's expected prevalence
        ex = health["cancer_excess"]
        prev = logistic_curve(health["cancer"], age)
        q = qx(np.asarray(people["gender"]), age, health["mortality_multiplier"])
        q = np.minimum(q * (1 + ex * has_cancer) / (1 + ex * prev), 1.0)
        dies = alive & (rng.random(n) < q)
        y0 = np.datetime64(f"{year}-01-01")
        ndays = int((np.datetime64(f"{year + 1}-01-01") - y0).astype(int))
        day = rng.integers(0, ndays, size=n)
        death[dies] = y0 + day[dies]
        end_day = np.where(dies, day, ndays - 1)
        idx = np.flatnonzero(alive)
        rows.append(pd.DataFrame({
            "person": idx, "year": year, "age": age[idx],
            "start_day": 0, "end_day": end_day[idx], "days_in_year": ndays,
            "dies": dies[idx], "cancer": has_cancer[idx],
        }))
        alive &= ~dies
    people["death_date"] = pd.to_datetime(death).astype("datetime64[ns]")
    return pd.concat(rows, ignore_index=True)
