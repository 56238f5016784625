"""Enrolment in the Huhuibao-style product: first-year take-up that rises with age and
ill health (anti-selection), renewal that the healthy let lapse, late entrants."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_policies(people: pd.DataFrame, py: pd.DataFrame, heavy: np.ndarray, P: dict,
                  rng: np.random.Generator) -> pd.DataFrame:
    """One row per enrolled person-year.

    ``heavy`` flags person-years (rows of ``py``) with large hospital or special-drug
    spending; it raises the next year's renewal.
    """
    E = P["enrolment"]
    consent = rng.random(len(people)) < E["consent_share"]
    enrolled_prev = np.zeros(len(people), bool)
    heavy_prev = np.zeros(len(people), bool)
    out = []
    years = sorted(py["year"].unique())
    for year in years:
        cur = py[py["year"] == year]
        p = cur["person"].to_numpy()
        age = cur["age"].to_numpy()
        chronic = people["chronic"].to_numpy()[p]
        since = people["cancer_since"].to_numpy()[p]
        cancer_known = (since > 0) & (since < year)
        health = E["chronic"] * chronic + E["cancer"] * cancer_known
        if year == years[0]:
            x = (E["intercept"] + E["age_per_decade"] * (age - 45) / 10 + health
                 + E["employee"] * (people["insutype"].to_numpy()[p] == "310"))
        else:
            renew = (E["renew_intercept"] + E["renew_chronic"] * chronic
                     + E["renew_cancer"] * cancer_known + E["renew_claimed"] * heavy_prev[p])
            late = E["late_entry_intercept"] + E["age_per_decade"] * (age - 45) / 10 + health
            x = np.where(enrolled_prev[p], renew, late)
        takes = rng.random(len(p)) < _logistic(x)
        sel = p[takes]
        out.append(pd.DataFrame({
            "person": sel, "year": year,
            "preexisting": (cancer_known | people["severe_chronic"].to_numpy()[p])[takes],
            "consent": consent[sel],
        }))
        enrolled_prev[:] = False
        enrolled_prev[sel] = True
        heavy_prev[:] = False
        hv = cur[heavy[cur.index.to_numpy()]]["person"].to_numpy()
        heavy_prev[hv] = True
    pol = pd.concat(out, ignore_index=True)
    pol["product_id"] = [f"{P['product_prefix']}-{y}" for y in pol["year"]]
    pol["premium"] = [int(P["premium"][str(y)]) * 100 for y in pol["year"]]
    pol["start_date"] = pd.to_datetime(pol["year"].astype(str) + "-01-01")
    pol["end_date"] = pd.to_datetime(pol["year"].astype(str) + "-12-31")
    return pol
