"""Bühlmann-Straub credibility: how far a thin cell's own experience should move it.

For groups i (rating cells) observed over periods j (years) with values X_ij (here the
actual-to-expected ratio of the cell's as-if payouts) and weights w_ij (the expected
payouts), the non-parametric estimators (Bühlmann and Gisler, "A Course in Credibility
Theory", section 4.8)::

    w_i = sum_j w_ij,   Xbar_i = sum_j w_ij X_ij / w_i,   Xbar = sum_i w_i Xbar_i / w
    sigma2 = sum_i sum_j w_ij (X_ij - Xbar_i)^2 / sum_i (n_i - 1)       (within)
    a      = [sum_i w_i (Xbar_i - Xbar)^2 - (I - 1) sigma2] / (w - sum_i w_i^2 / w)  (between)
    k = sigma2 / a,   Z_i = w_i / (w_i + k)
    credibility estimate_i = Z_i Xbar_i + (1 - Z_i) Xbar

With no detectable between-cell variation (a <= 0) every Z_i is 0 and every cell gets
the collective Xbar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def buhlmann_straub(data: pd.DataFrame, group: str, value: str, weight: str) -> tuple[pd.DataFrame, dict]:
    """Per group: weight, periods, mean, Z and the credibility estimate; and the
    structural parameters (within, between, k, collective mean).

    Two groups over two periods, worked by hand: group a has X = 1.0, 1.2 with weights
    1, 1; group b has X = 2.0, 2.4 with weights 1, 1. Xbar_a = 1.1, Xbar_b = 2.2,
    Xbar = 1.65; sigma2 = (0.01 + 0.01 + 0.04 + 0.04) / 2 = 0.05;
    a = (2 (0.55^2 + 0.55^2) - 0.05) / (4 - 8 / 4) = (1.21 - 0.05) / 2 = 0.58;
    k = 0.05 / 0.58; Z = 2 / (2 + k) = 0.9587.

    >>> d = pd.DataFrame({"g": ["a", "a", "b", "b"], "x": [1.0, 1.2, 2.0, 2.4], "w": 1.0})
    >>> t, p = buhlmann_straub(d, "g", "x", "w")
    >>> round(p["within"], 4), round(p["between"], 4), round(float(t["Z"].iloc[0]), 4)
    (0.05, 0.58, 0.9587)
    >>> round(float(t["estimate"].iloc[0]), 4)
    1.1227
    """
    d = data[data[weight] > 0]
    wx = d[weight] * d[value]
    g = pd.DataFrame({"w": d[weight], "wx": wx, "grp": d[group]}).groupby("grp", sort=True)
    t = g.agg(weight=("w", "sum"), wx=("wx", "sum"), periods=("w", "size"))
    t["mean"] = t["wx"] / t["weight"]
    w = float(t["weight"].sum())
    overall = float(t["wx"].sum() / w) if w > 0 else float("nan")
    dev = d[weight] * (d[value] - d[group].map(t["mean"])) ** 2
    dof = int((t["periods"] - 1).sum())
    within = float(dev.sum() / dof) if dof > 0 else float("nan")
    n_groups = len(t)
    denom = w - float((t["weight"] ** 2).sum()) / w if w > 0 else 0.0
    between = (float((t["weight"] * (t["mean"] - overall) ** 2).sum())
               - (n_groups - 1) * within) / denom if denom > 0 and np.isfinite(within) else 0.0
    if between > 0:
        k = within / between
        t["Z"] = t["weight"] / (t["weight"] + k)
    else:
        k = float("inf")
        t["Z"] = 0.0
    t["estimate"] = t["Z"] * t["mean"] + (1 - t["Z"]) * overall
    params = {"within": within, "between": between, "k": k, "collective": overall,
              "groups": n_groups}
    return t.drop(columns="wx").reset_index(names=group), params


def credibility_factors(keys: pd.DataFrame, year, actual, expected,
                        by: tuple[str, ...]) -> tuple[pd.DataFrame, dict]:
    """Credibility-weighted correction of the model per cell of ``by``.

    Per cell i and data year j, X_ij = actual_ij / expected_ij (the as-if payouts over
    the model's expected, weights w_ij = expected_ij); :func:`buhlmann_straub` gives
    each cell's credibility estimate, and the factor applied to the model is

        factor_i = estimate_i / Xbar

    so the model keeps its overall level (its tail fit is a better estimate of the mean
    than two years of payouts) and only the cells' relative positions move, each by as
    much as its own experience is credible. A cell with little expected cost (a thin
    cell) gets Z near 0 and stays at the model.

    By hand: cell a has A/E 22/20 = 1.1 and 24/20 = 1.2, cell b 2.8 and 2.8; Xbar_a =
    1.15, Xbar_b = 2.8, Xbar = 1.975; sigma2 = 20 (0.05^2) 2 / 2 = 0.05; a = (2 40
    0.825^2 - 0.05) / (80 - 40) = 1.36; k = 0.0368, Z = 40 / 40.0368 = 0.999;
    factor_a = (0.999 x 1.15 + 0.001 x 1.975) / 1.975 = 0.583.

    >>> k = pd.DataFrame({"band": ["a"] * 4 + ["b"] * 4})
    >>> f, p = credibility_factors(k, [1, 1, 2, 2] * 2, [10, 12, 11, 13, 30, 26, 31, 25],
    ...                            [10.0] * 8, ("band",))
    >>> f[["band", "Z", "factor"]].round(3).to_dict("list")
    {'band': ['a', 'b'], 'Z': [0.999, 0.999], 'factor': [0.583, 1.417]}
    """
    d = keys[list(by)].copy()
    d["year"] = np.asarray(year)
    d["actual"] = np.asarray(actual, dtype=float)
    d["expected"] = np.asarray(expected, dtype=float)
    d["person_years"] = 1
    cy = (d.groupby([*by, "year"], observed=True, sort=True)[["actual", "expected", "person_years"]]
          .sum().reset_index())
    cy["cell"] = cy[list(by)].astype(str).agg("|".join, axis=1)
    cy["x"] = np.where(cy["expected"] > 0, cy["actual"] / cy["expected"].where(cy["expected"] > 0, 1), 0.0)
    t, params = buhlmann_straub(cy, "cell", "x", "expected")
    first = cy.drop_duplicates("cell").set_index("cell")[list(by)]
    t = first.join(t.set_index("cell")).reset_index(drop=True)
    t["person_years"] = t[list(by)].merge(cy.groupby(list(by), observed=True)["person_years"].sum()
                                          .reset_index(), on=list(by), how="left")["person_years"].to_numpy()
    coll = params["collective"]
    t["factor"] = t["estimate"] / coll if coll and np.isfinite(coll) and coll > 0 else 1.0
    return t.rename(columns={"mean": "actual_to_expected", "weight": "expected"}), params
