"""The lifetime price of a renewable cover (the elderly product: entry 60-80, renewable
to 100) from the annual models of ``puhui price``.

The annual models give the expected benefit per rating cell, whose age is an age band
(61-70, 71-80, 81+: the data are too thin for single ages). A lifetime price needs the
expected claims at each attained age, so (docs/pricing.md, "Lifetime pricing"):

1. **claims by single attained age and sex**::

       C_s(x) = M_sb exp(beta x) / mean_{i in s,b} exp(beta x_i)

   with M_sb the enrolled-mix mean of the cells' expected benefit (trended, after
   credibility) among the eligible people of sex s in x's age band b, and beta the
   within-band age gradient (:func:`age_gradient`) fitted on the as-if payouts against
   the band's mean: the band's mean stays what the models say, the slope inside it is
   the data's (ageing and the rising share of chronic conditions alike);
2. **decrements**: death from CL1/CL2 or a Gompertz force fitted on the fund data's
   deaths (the user's choice); lapse from the renewal model (1 - renewal probability
   of the people alive in both years), or a stated rate;
3. **trend**: G(t), the expected benefit of the whole mix when the severity has grown
   t years by the medical inflation, over today's: the deductible's leverage makes it
   grow faster than the inflation, less so as the deductible wears away and the limit
   starts to bind (:func:`benefit_growth`; evaluated every five years, log-linear
   between);
4. per entry age, men and women projected apart and combined by the entrants' sex mix
   (in force l_t and claims per policy written l_t C_t add), then the level premium,
   reserves and a step-rated schedule (:mod:`puhui.survival.lifetime_pricing`);
5. the 2025 mortality improvement as scenarios: q(x) times (1 - reduction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.pricing.frequency import AGE_BANDS, banded
from puhui.survival import lifetime_pricing as lp

#: The [lifetime] keys of the assumptions file and their defaults.
DEFAULTS = {"interest": 0.02, "claim_timing": 0.5, "mortality": "table",
            "mortality_multiplier": 1.0, "lapse": "fitted",
            "improvement_scenarios": [0.2, 0.3], "entry_ages": [60, 65, 70, 75, 80]}


def is_lifetime(product) -> bool:
    """A cover renewable past its last entry age is priced over its lifetime too."""
    return (product.max_renewal_age is not None
            and product.max_renewal_age > (product.max_entry_age or 0))


def lifetime_basis(assumptions: dict, path="the assumptions file") -> dict:
    """The [lifetime] section with its defaults, checked."""
    a = {**DEFAULTS, **assumptions.get("lifetime", {})}
    if a["mortality"] not in ("table", "fitted"):
        raise InputError(f"{path}: [lifetime] mortality = {a['mortality']!r}; give \"table\" "
                         f"(CL1/CL2) or \"fitted\" (Gompertz on the fund data's deaths)")
    if a["lapse"] != "fitted" and not (isinstance(a["lapse"], (int, float))
                                       and 0 <= a["lapse"] < 1):
        raise InputError(f"{path}: [lifetime] lapse = {a['lapse']!r}; give \"fitted\" (the "
                         f"renewal model) or an annual rate from 0 to below 1")
    for r in a["improvement_scenarios"]:
        if not 0 <= r < 1:
            raise InputError(f"{path}: [lifetime] improvement_scenarios holds {r}; each is "
                             f"a reduction of mortality from 0 to below 1 (0.25 = 25 % lower)")
    return a


def band_of(age) -> np.ndarray:
    """The rating age band of each age (as the cells' ``age_band``), as text."""
    return np.asarray(banded(age, AGE_BANDS).astype(str))


def age_gradient(age, gender, actual, expected) -> dict:
    """beta, the within-band slope of log claims in age: a quasi-Poisson GLM
    (statsmodels) of the as-if payouts by single age and sex on (age - the band's mean
    age), offset log of what the band's mean cost per person-year gives those
    person-years::

        log E[actual_sx] = log(E_sb / n_sb * n_sx) + alpha + beta (x - xbar_b)

    ``expected``: the models' expected benefit of each person-year (its cell, exposure),
    ``actual``: its as-if payout. Returns beta, its standard error, the person-years
    fitted on and ``table``: per single age (sexes added) the people, the actual
    payouts, the band means' expectation (``band``) and the fit's (``fitted``), for the
    report's calibration plot."""
    import statsmodels.api as sm

    f = pd.DataFrame({"age": np.asarray(age, dtype=float), "gender": np.asarray(gender, dtype=str),
                      "actual": np.asarray(actual, dtype=float),
                      "expected": np.asarray(expected, dtype=float)})
    f["band"] = band_of(f["age"])
    band = f.groupby(["band", "gender"]).agg(exp_b=("expected", "sum"), n_b=("age", "size"),
                                            age_b=("age", "mean"))
    cells = f.groupby(["band", "gender", "age"]).agg(actual=("actual", "sum"),
                                                     n=("age", "size")).reset_index()
    cells = cells.join(band, on=["band", "gender"])
    cells = cells[cells["exp_b"] > 0]
    cells["band_expected"] = cells["exp_b"] / cells["n_b"] * cells["n"]
    if len(cells) < 3 or cells["actual"].sum() <= 0:
        return {"beta": 0.0, "se": None, "person_years": int(len(f)), "table": None,
                "note": "too few ages with claims for a within-band slope: flat within bands"}
    X = sm.add_constant((cells["age"] - cells["age_b"]).to_numpy())
    res = sm.GLM(cells["actual"].to_numpy(), X, family=sm.families.Poisson(),
                 offset=np.log(cells["band_expected"].to_numpy())).fit(scale="X2")
    cells["fitted"] = res.fittedvalues
    table = (cells.groupby("age").agg(people=("n", "sum"), actual=("actual", "sum"),
                                      band=("band_expected", "sum"), fitted=("fitted", "sum"))
             .reset_index())
    return {"beta": float(res.params[1]), "se": float(res.bse[1]), "person_years": int(len(f)),
            "table": table}


def claims_by_age(ages, people: pd.DataFrame, beta: float) -> pd.DataFrame:
    """C_s(x) per age in ``ages`` and sex (module docstring, step 1). ``people``: the
    eligible people of the last data year with ``age``, ``gender``, ``weight`` (expected
    policies per person: the enrolled mix) and ``cost`` (their cell's expected annual
    benefit). A band without people of one sex takes both sexes' mean.

    The weighted mean of C_s over a band's people is the band's mean cost, M_sb:

    >>> p = pd.DataFrame({"age": [61, 65, 70], "gender": ["1", "1", "1"],
    ...                   "weight": [1.0, 1.0, 2.0], "cost": [100.0, 100.0, 400.0]})
    >>> c = claims_by_age([61, 65, 70], p, beta=0.05)
    >>> float(np.dot(p["weight"], c["1"]) / 4), float((p["weight"] * p["cost"]).sum() / 4)
    (250.0, 250.0)
    """
    ages = np.asarray(ages)
    m = band_means(ages, people, people["cost"].to_numpy(dtype=float))
    hbar = band_means(ages, people, np.exp(beta * (people["age"].to_numpy() - ages.min())))
    h = np.exp(beta * (ages - ages.min()))
    return pd.DataFrame({"age": ages, **{s: m[s].to_numpy() * h / hbar[s].to_numpy()
                                         for s in ("1", "2")}})


def band_means(ages, people: pd.DataFrame, value: np.ndarray) -> pd.DataFrame:
    """The weighted mean of ``value`` (one per person of ``people``) by age band and
    sex, at each age of ``ages`` (a band without people of one sex: both sexes'; a
    band without people is an InputError: the lifetime price needs every band)."""
    ages = np.asarray(ages)
    band_x = band_of(ages)
    band_p = band_of(people["age"])
    g = people["gender"].astype(str).to_numpy()
    w = people["weight"].to_numpy(dtype=float)
    out = {"age": ages}
    for s in ("1", "2"):
        col = np.full(len(ages), np.nan)
        for b in np.unique(band_x):
            on = (band_p == b) & (g == s)
            if w[on].sum() <= 0:
                on = band_p == b
            if w[on].sum() <= 0:
                raise InputError(f"no eligible person of the data is aged {b}: the lifetime "
                                 f"price needs the models' cost in every age band to "
                                 f"{int(np.max(ages))}")
            col[band_x == b] = np.dot(w[on], value[on]) / w[on].sum()
        out[s] = col
    return pd.DataFrame(out)


def death_rates(ages, basis: dict, persons: pd.DataFrame | None = None,
                years=None) -> tuple[pd.DataFrame, dict]:
    """q(x) by sex at ``ages``: CL1/CL2 times ``mortality_multiplier`` ("table"), or a
    Gompertz force fitted by sex on the fund data's deaths at ages 60-100 ("fitted";
    :func:`puhui.survival.mortality.fit_gompertz`). Returns the rates and what they are."""
    from puhui.mortality import qx

    ages = np.asarray(ages)
    m = float(basis["mortality_multiplier"])
    if basis["mortality"] == "table":
        q = {s: qx(np.full(len(ages), s), ages, m) for s in ("1", "2")}
        return pd.DataFrame({"age": ages, **q}), {"source": "CL1 (men) / CL2 (women), "
                                                  "China life insurance mortality table "
                                                  "2010-2013", "multiplier": m}
    from puhui.survival.mortality import fit_gompertz, gompertz_qx, observed_years

    fit = fit_gompertz(observed_years(persons, years), min_age=60, max_age=100)
    got = set(fit["gender"]) if len(fit) else set()
    if got != {"1", "2"}:
        raise InputError("[lifetime] mortality = \"fitted\": the fund data has too few "
                         "deaths at ages 60-100 to fit a Gompertz force for both sexes; "
                         "use mortality = \"table\"")
    q, info = {}, {"source": "Gompertz force exp(a + b x) fitted by sex on the fund data's "
                             "deaths, ages 60-100", "multiplier": m}
    for _, r in fit.iterrows():
        q[r["gender"]] = np.minimum(gompertz_qx(r["a"], r["b"], ages) * m, 1.0)
        info[r["gender"]] = {k: round(float(r[k]), 6) for k in ("a", "b", "se_a", "se_b")} | {
            "deaths": int(r["deaths"]), "exposure": round(float(r["exposure"]), 2)}
    return pd.DataFrame({"age": ages, "1": q["1"], "2": q["2"]}), info


def benefit_growth(expected_at, years: int, step: int = 5) -> np.ndarray:
    """G(t) for t = 0..years: ``expected_at(t)`` (the mix's expected benefit with the
    severity grown t years) over ``expected_at(0)``, evaluated every ``step`` years and
    at ``years``, log-linear in between.

    >>> benefit_growth(lambda t: 100 * 1.05 ** t, 7, step=5).round(4).tolist()
    [1.0, 1.05, 1.1025, 1.1576, 1.2155, 1.2763, 1.3401, 1.4071]
    """
    knots = sorted(set(range(0, years + 1, step)) | {years})
    e0 = float(expected_at(0))
    if e0 <= 0:
        return np.ones(years + 1)
    logs = [0.0] + [float(np.log(expected_at(t) / e0)) for t in knots[1:]]
    return np.exp(np.interp(np.arange(years + 1), knots, logs))


def cohort(entry_age: int, max_age: int, share_men: float, claims: pd.DataFrame,
           q_death: pd.DataFrame, q_lapse: pd.DataFrame, rate: float, growth,
           claim_timing: float, improvement: float = 0.0) -> pd.DataFrame:
    """One entry age's projection, men and women apart then combined per policy
    written: l_t = s l_t(men) + (1 - s) l_t(women), claims per policy in force
    C_t = (s l_t(m) C_t(m) G(t) + (1 - s) l_t(w) C_t(w) G(t)) / l_t, ``growth`` G(t)
    for t = 0, 1, ... (at least as long as the cover). Columns as
    :func:`puhui.survival.lifetime_pricing.projection`, plus ``lapse``."""
    on = (claims["age"] >= entry_age) & (claims["age"] <= max_age)
    ages = claims.loc[on, "age"].to_numpy()
    t = ages - entry_age
    grow = np.asarray(growth, dtype=float)[t]
    parts = []
    for s, share in (("1", share_men), ("2", 1.0 - share_men)):
        qd = q_death.set_index("age").loc[ages, s].to_numpy() * (1.0 - improvement)
        ql = q_lapse.set_index("age").loc[ages, s].to_numpy()
        ql = np.where(ages >= max_age, 0.0, ql)      # the last year ends the cover anyway
        l = lp.in_force(qd, ql)
        parts.append((share * l, claims.loc[on, s].to_numpy() * grow, qd, ql))
    l = parts[0][0] + parts[1][0]
    lc = parts[0][0] * parts[0][1] + parts[1][0] * parts[1][1]
    c = np.divide(lc, l, out=np.zeros_like(lc), where=l > 0)
    qd = (parts[0][0] * parts[0][2] + parts[1][0] * parts[1][2]) / l
    ql = (parts[0][0] * parts[0][3] + parts[1][0] * parts[1][3]) / l
    p = lp.level_premium(c, l, rate, claim_timing)
    return pd.DataFrame({"year": t, "age": ages, "in_force": l, "q_death": qd, "lapse": ql,
                         "claims": c, "natural_premium": lp.natural_premiums(c, rate, claim_timing),
                         "level_premium": p, "reserve": lp.reserves(c, l, p, rate, claim_timing)})


def lifetime_price(product, people: pd.DataFrame, gradient: dict, lapse_per_person,
                   growth: np.ndarray, basis: dict, target: float,
                   persons: pd.DataFrame | None = None, years=None) -> tuple[dict, dict]:
    """The lifetime figures of ``pricing.json`` and the report's tables.

    ``people``: the eligible people of the last data year (see :func:`claims_by_age`);
    ``lapse_per_person``: each one's annual lapse probability (None: the stated rate);
    ``growth``: G(t), t = 0..(last age - first entry age) (:func:`benefit_growth`);
    ``target``: the target loss ratio (gross = pure / target)."""
    lo, hi = int(product.min_entry_age or 60), int(product.max_renewal_age)
    ages = np.arange(lo, hi + 1)
    beta = gradient["beta"]
    claims = claims_by_age(ages, people, beta)
    q_death, mort_info = death_rates(ages, basis, persons, years)
    if basis["lapse"] == "fitted" and lapse_per_person is not None:
        q_lapse = band_means(ages, people, np.asarray(lapse_per_person, dtype=float))
        lapse_info = "1 - renewal probability of the renewal model, by age band and sex"
    else:
        rate = 0.0 if basis["lapse"] == "fitted" else float(basis["lapse"])
        q_lapse = pd.DataFrame({"age": ages, "1": rate, "2": rate})
        lapse_info = (f"{rate} a year (stated)" if basis["lapse"] != "fitted" else
                      "none: the data has no renewal year to fit on")
    rate, timing = float(basis["interest"]), float(basis["claim_timing"])
    men = people["gender"].astype(str).to_numpy() == "1"
    bands = [(c.min_age, c.max_age) for c in product.premium_cells if c.preexisting is None]
    entries, projections = [], {}
    max_entry = int(product.max_entry_age or lo)
    for x in sorted({int(a) for a in basis["entry_ages"] if lo <= int(a) <= max_entry}):
        at = people["age"].to_numpy() == x
        w = people["weight"].to_numpy()
        share = float(w[at & men].sum() / w[at].sum()) if w[at].sum() > 0 else float(
            w[men].sum() / w.sum())
        proj = cohort(x, hi, share, claims, q_death, q_lapse, rate, growth, timing)
        projections[x] = proj
        pure = float(proj["level_premium"].iloc[0])
        no_lapse = cohort(x, hi, share, claims, q_death, q_lapse.assign(**{"1": 0.0, "2": 0.0}),
                          rate, growth, timing)
        scen = []
        for r in basis["improvement_scenarios"]:
            pr = cohort(x, hi, share, claims, q_death, q_lapse, rate, growth, timing,
                        improvement=float(r))
            pr0 = cohort(x, hi, share, claims, q_death, q_lapse.assign(**{"1": 0.0, "2": 0.0}),
                         rate, growth, timing, improvement=float(r))
            scen.append({"mortality_reduction": r,
                         "level_pure_premium": round(float(pr["level_premium"].iloc[0]), 2),
                         "level_gross_premium": round(float(pr["level_premium"].iloc[0]) / target, 2),
                         "change": round(float(pr["level_premium"].iloc[0]) / pure - 1, 4),
                         "change_without_lapse": round(float(pr0["level_premium"].iloc[0])
                                                       / float(no_lapse["level_premium"].iloc[0])
                                                       - 1, 4)})
        entries.append({
            "entry_age": x, "share_men": round(share, 4),
            "pv_claims": round(lp.pv_claims(proj["claims"], proj["in_force"], rate, timing), 2),
            "premium_annuity": round(lp.premium_annuity(proj["in_force"], rate), 4),
            "level_pure_premium": round(pure, 2), "level_gross_premium": round(pure / target, 2),
            "level_gross_premium_without_lapse": round(
                float(no_lapse["level_premium"].iloc[0]) / target, 2),
            "first_year_natural_premium": round(float(proj["natural_premium"].iloc[0]), 2),
            "peak_reserve": round(float(proj["reserve"].max()), 2),
            "peak_reserve_age": int(proj.loc[proj["reserve"].idxmax(), "age"]),
            "reserve_by_year": [round(float(v), 2) for v in proj["reserve"]],
            "mortality_improvement": scen})
    if not entries:
        raise InputError(f"[lifetime] entry_ages {basis['entry_ages']} holds no age from "
                         f"{lo} to {max_entry} ({product.id}'s entry ages)")
    # the step-rated schedule: today's money (no trend; re-rated each year with it), the
    # youngest entrants' years in each band
    young = entries[0]["entry_age"]
    flat = cohort(young, hi, entries[0]["share_men"], claims, q_death, q_lapse, rate,
                  np.ones(len(growth)), timing)
    steps = lp.step_rated_premiums(flat["claims"], flat["in_force"], flat["age"], bands, rate,
                                   timing)
    figures = {
        "basis": {"interest": rate, "claim_timing": timing, "mortality": mort_info,
                  "lapse": lapse_info,
                  "benefit_growth": {f"year {t}": round(float(growth[t]), 4)
                                     for t in range(0, len(growth), 10)},
                  "age_gradient": {"beta": round(beta, 6),
                                   "se": round(gradient["se"], 6) if gradient.get("se") else None,
                                   "person_years": gradient["person_years"]},
                  "ages": [lo, hi],
                  "note": "claims by single age: the models' band means with the data's "
                          "within-band slope; level premiums include the benefit trend, "
                          "the step schedule is in today's money; deductibles and limits "
                          "held fixed; no selection wearing off after entry. A level "
                          "premium with lapses is lapse-supported (those who leave forfeit "
                          "their reserve): the premium without lapse is the prudent one "
                          "when the data's renewals are of an annual product"},
        "claims_by_age": [{"age": int(a), "men": round(float(m), 2), "women": round(float(f), 2)}
                          for a, m, f in claims[["age", "1", "2"]].itertuples(index=False)],
        "entry_ages": entries,
        "step_rated": [{"min_age": s["min_age"], "max_age": s["max_age"],
                        "pure_premium": round(s["premium"], 2) if s["premium"] else None,
                        "gross_premium": round(s["premium"] / target, 2) if s["premium"] else None}
                       for s in steps],
        "step_rated_entry_age": young,
    }
    tables = {"lifetime_age_fit": gradient.get("table"),
              "lifetime_claims": claims.rename(columns={"1": "men", "2": "women"}),
              "lifetime_decrements": q_death.rename(columns={"1": "q_men", "2": "q_women"}).merge(
                  q_lapse.rename(columns={"1": "lapse_men", "2": "lapse_women"}), on="age"),
              "lifetime_projection": projections}
    return figures, tables
