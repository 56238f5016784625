"""Mortality of the fund data's people against the CL 2010-2013 tables.

The fund data has each person's birth year, sex and death date; every person alive on
1 January of a data year is observed that year (the city is followed from the first
data year: people enter observation at their age then, which is left truncation). Two
views of the same experience:

- **Actual to expected by age band and sex** (:func:`actual_to_expected`): actual deaths
  in a year over the deaths the table expects of the people alive at its start,

      A/E = sum d_i / sum q(x_i),   x_i = year - birth year (the age label of the year)

  with an exact Poisson interval on the actual count (Garwood:
  chi2(a/2, 2d) / 2 .. chi2(1 - a/2, 2d + 2) / 2, divided by the expected). This is the
  initial-exposure (binomial) estimate: a person dying in the year counts a whole year,
  so expected and actual are on the same footing whatever the day of death.
- **A Gompertz law fitted to the experience** (:func:`fit_gompertz`):
  mu(x) = exp(a + b x), a Poisson GLM (statsmodels) of deaths on age with the log of
  the central exposure (years lived in the year) as offset, by sex: the force of
  mortality and its standard errors, and the one-year q(x) = 1 - exp(-mu(x + 1/2)) it
  implies, to compare with the table.

Kaplan-Meier and Cox fits with lifelines (age as the time scale, entry at the age of
first observation) are in :mod:`puhui.survival.lifetime`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.mortality import CL_BY_GENDER, qx

#: Age bands of the A/E table (the issue asks for 60-90; all ages are shown).
MORTALITY_BANDS = ((0, 39), (40, 49), (50, 59), (60, 64), (65, 69), (70, 74), (75, 79),
                   (80, 84), (85, 90), (91, 120))


def alive_on(death_date: pd.Series, day) -> np.ndarray:
    """True for the people alive on ``day`` (no death date, or one on or after it: the
    day of death is a day lived)."""
    death = pd.to_datetime(death_date)
    return (death.isna() | (death >= pd.Timestamp(day))).to_numpy()


def year_at_risk(death_date: pd.Series, year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``year``: the people alive on 1 January (a mask), and for each of them
    whether they die in the year and the share of it they live (days to the end of the
    day of death, or all of them, over the days of the year). The one rule of exposure
    for pricing's person-years and for the mortality experience.

    >>> alive, died, share = year_at_risk(pd.Series(pd.to_datetime(
    ...     ["2023-12-31", "2024-07-01", None])), 2024)
    >>> alive.tolist(), died.tolist(), share.round(4).tolist()
    ([False, True, True], [True, False], [0.5, 1.0])
    """
    start, end = pd.Timestamp(f"{year}-01-01"), pd.Timestamp(f"{year}-12-31")
    days = (end - start).days + 1
    alive = alive_on(death_date, start)
    d = pd.to_datetime(death_date)[alive]
    died = (d.notna() & (d <= end)).to_numpy()
    last = d.where(died, end)
    return alive, died, (((last - start).dt.days + 1) / days).to_numpy()


def observed_years(persons: pd.DataFrame, years) -> pd.DataFrame:
    """One row per person alive on 1 January of each year: ``person`` (row in
    ``persons``), ``year``, ``gender``, ``age`` (year - birth year), ``died`` (in the
    year) and ``exposure`` (share of the year lived: central exposure;
    :func:`year_at_risk`).

    Person a dies on 2024-07-01: 183 of the leap year's 366 days, and is not observed
    in 2025.

    >>> p = pd.DataFrame({"birth_year": [1950, 1990], "gender": ["1", "2"],
    ...                   "death_date": pd.to_datetime(["2024-07-01", None])})
    >>> observed_years(p, [2024, 2025])[["person", "year", "age", "died", "exposure"]
    ...                                 ].round(3).values.tolist()
    [[0, 2024, 74, True, 0.5], [1, 2024, 34, False, 1.0], [1, 2025, 35, False, 1.0]]
    """
    birth = persons["birth_year"].to_numpy(dtype="int64")
    gender = persons["gender"].astype(str).to_numpy()
    parts = []
    for y in sorted(int(v) for v in years):
        alive, died, share = year_at_risk(persons["death_date"], y)
        who = np.flatnonzero(alive)
        parts.append(pd.DataFrame({"person": who, "year": y, "gender": gender[who],
                                   "age": y - birth[who], "died": died, "exposure": share}))
    if not parts:
        return pd.DataFrame(columns=["person", "year", "gender", "age", "died", "exposure"])
    return pd.concat(parts, ignore_index=True)


def band_of(age, bands=MORTALITY_BANDS) -> np.ndarray:
    """Label "lo-hi" of each age's band (``""`` outside every band).

    >>> band_of([59, 60, 90]).tolist()
    ['50-59', '60-64', '85-90']
    """
    age = np.asarray(age)
    out = np.full(len(age), "", dtype=object)
    for lo, hi in bands:
        out[(age >= lo) & (age <= hi)] = f"{lo}-{hi}"
    return out


def poisson_interval(deaths, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) interval for a Poisson mean given ``deaths`` observed::

        lower = chi2.ppf(a/2, 2d) / 2,  upper = chi2.ppf(1 - a/2, 2d + 2) / 2,  a = 1 - level

    >>> lo, hi = poisson_interval([0, 10])
    >>> [round(float(v), 3) for v in (lo[0], hi[0], lo[1], hi[1])]
    [0.0, 3.689, 4.795, 18.39]
    """
    from scipy.stats import chi2

    d = np.asarray(deaths, dtype=float)
    a = 1 - level
    lower = np.where(d > 0, chi2.ppf(a / 2, 2 * np.maximum(d, 1)) / 2, 0.0)
    upper = chi2.ppf(1 - a / 2, 2 * d + 2) / 2
    return lower, upper


def expected_deaths(gender, age, multiplier: float = 1.0) -> np.ndarray:
    """The table's q(x) for each person-year (CL1 men, CL2 women): the deaths it
    expects of a person alive at the start of the year."""
    return qx(np.asarray(gender), np.asarray(age), multiplier)


def actual_to_expected(observed: pd.DataFrame, bands=MORTALITY_BANDS, level: float = 0.95,
                       multiplier: float = 1.0, min_people: int = 10) -> pd.DataFrame:
    """A/E of deaths by sex and age band against CL1/CL2 (see the module docstring),
    with a ``level`` exact Poisson interval; ``table`` names the CL column. Bands with
    fewer than ``min_people`` person-years are left out (small cells never reported).

    By hand: 1,000 men aged 60 (q = 0.009161) with 12 deaths: A/E = 12 / 9.161 = 1.310.

    >>> o = pd.DataFrame({"gender": "1", "age": 60, "died": [True] * 12 + [False] * 988,
    ...                   "exposure": 1.0})
    >>> t = actual_to_expected(o)
    >>> t[["band", "deaths", "expected", "a_to_e"]].round(3).values.tolist()
    [['60-64', 12, 9.161, 1.31]]
    """
    q = expected_deaths(observed["gender"], observed["age"], multiplier)
    f = pd.DataFrame({"gender": observed["gender"].astype(str).to_numpy(),
                      "band": band_of(observed["age"].to_numpy(), bands),
                      "deaths": observed["died"].to_numpy(dtype=int), "expected": q,
                      "exposure": observed["exposure"].to_numpy(dtype=float)})
    f = f[f["band"] != ""]
    t = (f.groupby(["gender", "band"], sort=False)
         .agg(person_years=("deaths", "size"), exposure=("exposure", "sum"),
              deaths=("deaths", "sum"), expected=("expected", "sum")).reset_index())
    order = {f"{lo}-{hi}": i for i, (lo, hi) in enumerate(bands)}
    t = t.assign(_o=t["band"].map(order)).sort_values(["gender", "_o"]).drop(columns="_o")
    t = t[t["person_years"] >= min_people].reset_index(drop=True)
    t.insert(1, "table", t["gender"].map(CL_BY_GENDER))
    lo, hi = poisson_interval(t["deaths"].to_numpy(), level)
    e = t["expected"].to_numpy()
    t["a_to_e"] = t["deaths"] / e
    t["lower"], t["upper"] = lo / e, hi / e
    return t


def fit_gompertz(observed: pd.DataFrame, min_age: int = 40, max_age: int = 100) -> pd.DataFrame:
    """Gompertz force of mortality mu(x) = exp(a + b x) by sex (:func:`gompertz_glm`) on
    the person-years of :func:`observed_years`, ages ``min_age``..``max_age``. Returns
    per sex: a, b, their standard errors, the deaths and the exposure fitted."""
    rows = []
    for g, f in observed.groupby(observed["gender"].astype(str), sort=True):
        f = f[(f["age"] >= min_age) & (f["age"] <= max_age)]
        cells = (f.groupby("age").agg(deaths=("died", "sum"), exposure=("exposure", "sum"))
                 .reset_index())
        fit = gompertz_glm(cells)
        if fit is not None:
            rows.append({"gender": g, "table": CL_BY_GENDER.get(g), **fit,
                         "min_age": min_age, "max_age": max_age})
    return pd.DataFrame(rows)


def gompertz_glm(cells: pd.DataFrame) -> dict | None:
    """mu(x) = exp(a + b x) fitted as a Poisson GLM (statsmodels) of ``deaths`` by single
    ``age`` on the mid-year age x + 1/2, with offset log(``exposure``, years lived): the
    maximum likelihood of a force constant within each year of age. None when there are
    too few deaths or ages to fit."""
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.tools import add_constant

    cells = cells[cells["exposure"] > 0]
    if cells["deaths"].sum() < 2 or len(cells) < 2:
        return None
    X = add_constant(cells["age"].to_numpy(dtype=float) + 0.5)
    res = GLM(cells["deaths"].to_numpy(dtype=float), X, family=families.Poisson(),
              offset=np.log(cells["exposure"].to_numpy(dtype=float))).fit()
    return {"a": float(res.params[0]), "b": float(res.params[1]), "se_a": float(res.bse[0]),
            "se_b": float(res.bse[1]), "deaths": int(cells["deaths"].sum()),
            "exposure": float(cells["exposure"].sum())}


def gompertz_mle(entry, exit, died) -> dict:
    """mu(x) = exp(a + b x) by lifelines' maximum likelihood in continuous time (a
    ``ParametricUnivariateFitter`` with the Gompertz cumulative hazard
    exp(a) / b (e^(b x) - 1), entries as left truncation): an implementation of the
    same law independent of :func:`gompertz_glm`, which holds the force constant
    within each year of age. Returns a, b and their standard errors."""
    import autograd.numpy as anp
    from lifelines.fitters import ParametricUnivariateFitter

    class GompertzFitter(ParametricUnivariateFitter):
        _fitted_parameter_names = ["a_", "b_"]
        _bounds = [(None, None), (1e-6, None)]

        def _cumulative_hazard(self, params, times):
            a, b = params
            return anp.exp(a) / b * (anp.exp(b * times) - 1)

    f = GompertzFitter().fit(np.asarray(exit, dtype=float), event_observed=np.asarray(died),
                             entry=np.asarray(entry, dtype=float),
                             initial_point=np.array([-10.0, 0.1]))
    se = f.summary["se(coef)"]
    return {"a": float(f.params_["a_"]), "b": float(f.params_["b_"]),
            "se_a": float(se["a_"]), "se_b": float(se["b_"])}


def gompertz_qx(a: float, b: float, age) -> np.ndarray:
    """One-year death probability from a Gompertz force: q(x) = 1 - exp(-mu(x + 1/2)),
    mu(x) = exp(a + b x) (the force held at its mid-year value).

    >>> round(float(gompertz_qx(np.log(0.01), 0.0, 60)), 6)     # mu = 0.01 flat
    0.00995
    """
    x = np.asarray(age, dtype=float) + 0.5
    return 1 - np.exp(-np.exp(a + b * x))


def single_age_exposure(entry, exit, died) -> pd.DataFrame:
    """Deaths and central exposure (years lived) by single year of age from lifetimes
    observed from exact age ``entry`` to ``exit`` (a death at ``exit`` when ``died``):
    each interval is cut at whole ages. The table :func:`fit_gompertz` reads.

    One life from 60.5 to 62.25, dying: 0.5 years at 60, 1 at 61, 0.25 at 62 and the
    death at 62.

    >>> single_age_exposure([60.5], [62.25], [True]).values.tolist()
    [[60.0, 0.0, 0.5], [61.0, 0.0, 1.0], [62.0, 1.0, 0.25]]
    """
    entry, exit = np.asarray(entry, dtype=float), np.asarray(exit, dtype=float)
    died = np.asarray(died, dtype=bool)
    ok = exit > entry
    entry, exit, died = entry[ok], exit[ok], died[ok]
    first = np.floor(entry).astype("int64")
    ages, years = [], []
    span = int(np.ceil(exit - first).max()) if len(entry) else 0
    for k in range(span):
        lo = np.maximum(entry, first + k)
        hi = np.minimum(exit, first + k + 1)
        on = hi > lo
        ages.append(first[on] + k)
        years.append(hi[on] - lo[on])
    expo = pd.Series(np.concatenate(years) if years else [], dtype=float).groupby(
        np.concatenate(ages) if ages else np.zeros(0, "int64")).sum()
    # a death at an exact whole age belongs to the age just ended
    death_age = np.ceil(exit[died]).astype("int64") - 1
    deaths = pd.Series(1.0, index=death_age).groupby(level=0).sum()
    t = pd.DataFrame({"exposure": expo}).join(deaths.rename("deaths"), how="outer").fillna(0.0)
    t = t.rename_axis("age").reset_index()
    t["age"] = t["age"].astype(float)
    return t[["age", "deaths", "exposure"]]
