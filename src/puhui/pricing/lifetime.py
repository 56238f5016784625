"""The lifetime price of a renewable cover (the elderly product: entry 60-80, renewable
to 100) from the annual models of ``puhui price``, on a prudent basis
(docs/pricing.md, "Lifetime pricing"):

1. **claims by single attained age**: a graduated curve g(x) of the as-if payouts per
   person-year of the ages the cover sells to (60-100), smooth (a Whittaker-Henderson
   graduation of log cost: penalised quasi-Poisson, second differences, the smoothing
   chosen by generalised cross-validation), with the younger ages only as a weak prior
   (a log-linear fit on 40-59 extrapolated, worth ``prior_person_years`` at each age)
   and monotone (isotonic after smoothing) unless the data contradict it. The models
   set the level: C_s(x) = k_s g(x), k_s such that the enrolled mix of sex s costs what
   the models say (trended, after credibility and refunds). One factor per sex, not
   per band: a factor per band would bring back the steps at the band boundaries;
   the curve's band means against the models' are reported;
2. **decrements**: death from CL1/CL2 or a Gompertz force fitted on the fund data's
   deaths; the headline premium has no lapse (death only: a lapse-supported premium
   counts on those who leave forfeiting their reserve); the lapse sensitivity takes
   lapse by policy duration from the persistency data where it is credible (Wilson
   half-width within ``lapse_max_halfwidth``), else ``lapse_ultimate``;
3. **trend**: none in the level premium (today's money, G(t) = 1); medical trend is
   carried by premium reviews every ``review_years``: at each review the premium rises
   by the benefit growth since the last review times the future claims over the
   future premiums (the re-rating path), G(t) from :func:`benefit_growth`;
4. per entry age, men and women projected apart and combined by the entrants' sex mix,
   then the level premium, reserves and a step-rated schedule
   (:mod:`puhui.survival.lifetime_pricing`);
5. **loss ratio at the filed schedule**: PV(claims) / PV(the product file's premiums
   by attained age), per entry age and over the entrants' mix, and the first-year
   loss ratio of the eligible mix; never the target by construction;
6. the 2025 mortality improvement as scenarios: q(x) times (1 - reduction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.pricing.frequency import AGE_BANDS, banded
from puhui.survival import lifetime_pricing as lp

#: The [lifetime] keys of the assumptions file and their defaults.
DEFAULTS = {"interest": 0.02, "claim_timing": 0.5, "mortality": "table",
            "mortality_multiplier": 1.0, "lapse": "persistency", "lapse_ultimate": 0.05,
            "lapse_max_halfwidth": 0.05, "prior_ages": [40, 59], "prior_person_years": 25.0,
            "review_years": 3,
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
    if a["lapse"] != "persistency" and not (isinstance(a["lapse"], (int, float))
                                            and 0 <= a["lapse"] < 1):
        raise InputError(f"{path}: [lifetime] lapse = {a['lapse']!r}; give \"persistency\" "
                         f"(by policy duration from the data where credible) or an annual "
                         f"rate from 0 to below 1")
    for key in ("lapse_ultimate", "lapse_max_halfwidth"):
        if not (isinstance(a[key], (int, float)) and 0 <= a[key] < 1):
            raise InputError(f"{path}: [lifetime] {key} = {a[key]!r}; give a rate from 0 "
                             f"to below 1")
    if not (isinstance(a["review_years"], int) and a["review_years"] >= 1):
        raise InputError(f"{path}: [lifetime] review_years = {a['review_years']!r}; give "
                         f"the whole number of years between premium reviews (1 or more)")
    pa = a["prior_ages"]
    if not (isinstance(pa, list) and len(pa) == 2 and pa[0] <= pa[1]) or \
            float(a["prior_person_years"]) < 0:
        raise InputError(f"{path}: [lifetime] prior_ages = {pa!r}, prior_person_years = "
                         f"{a['prior_person_years']!r}; give [first, last] ages of the "
                         f"prior and a weight of 0 or more person-years")
    for r in a["improvement_scenarios"]:
        if not 0 <= r < 1:
            raise InputError(f"{path}: [lifetime] improvement_scenarios holds {r}; each is "
                             f"a reduction of mortality from 0 to below 1 (0.25 = 25 % lower)")
    return a


def band_of(age) -> np.ndarray:
    """The rating age band of each age (as the cells' ``age_band``), as text."""
    return np.asarray(banded(age, AGE_BANDS).astype(str))


# ---------------------------------------------------------------- the age curve

def prior_line(ages, payouts, exposure) -> tuple[float, float]:
    """(a, b) of a quasi-Poisson log-linear fit, cost per person-year = exp(a + b x)."""
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.tools import add_constant

    x, d, e = (np.asarray(v, dtype=float) for v in (ages, payouts, exposure))
    on = e > 0
    if on.sum() < 3 or d[on].sum() <= 0:
        raise InputError("too few person-years with payouts at the prior ages")
    res = GLM(d[on], add_constant(x[on]), family=families.Poisson(),
              offset=np.log(e[on])).fit(scale="X2")
    return float(res.params[0]), float(res.params[1])


def penalised_fit(d, e, lam: float, order: int = 2, iters: int = 200):
    """Whittaker-Henderson graduation on the log scale: eta maximising the Poisson
    log-likelihood sum(d eta - e exp(eta)) less lam mean(W) |Delta^order eta|^2 / 2
    (penalised IRLS; mean(W) makes lam free of the money unit). Returns eta and the
    effective degrees of freedom."""
    d, e = np.asarray(d, dtype=float), np.asarray(e, dtype=float)
    n = len(d)
    diff = np.diff(np.eye(n), order, axis=0)
    pen = diff.T @ diff
    eta = np.full(n, np.log(max(d.sum() / max(e.sum(), 1e-12), 1e-9)))
    for _ in range(iters):
        w = e * np.exp(eta)
        z = eta + np.divide(d - w, w, out=np.zeros(n), where=w > 0)
        new = np.linalg.solve(np.diag(w) + lam * w.mean() * pen, w * z)
        done = np.max(np.abs(new - eta)) < 1e-10
        eta = new
        if done:
            break
    w = e * np.exp(eta)
    edf = float(np.trace(np.linalg.solve(np.diag(w) + lam * w.mean() * pen, np.diag(w))))
    return eta, edf


def poisson_deviance(d, e, rate) -> float:
    d, mu = np.asarray(d, dtype=float), np.asarray(e, dtype=float) * np.asarray(rate)
    t = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0) / np.maximum(mu, 1e-300)), 0.0)
    return float(2 * np.sum(t - (d - mu)))


def graduate(ages, payouts, exposure, prior=None, prior_weight: float = 0.0,
             lambdas=None, level: float = 0.95) -> dict:
    """The graduated cost per person-year by single age (module docstring, step 1).

    ``payouts``, ``exposure``: per age of ``ages`` (consecutive); ``prior``: (a, b) of
    exp(a + b x) or None, added as ``prior_weight`` pseudo person-years at each age
    paying the prior's rate (a gamma prior on each age's rate). The smoothing lam is
    the generalised cross-validation minimum over ``lambdas`` (the data's deviance:
    m dev / (m - edf)^2, m ages with exposure). Then, if the smooth
    curve falls anywhere, its isotonic (rising) version replaces it unless the data
    reject it: the quasi-likelihood ratio (deviance change over the Pearson
    dispersion) above the chi-square ``level`` quantile with as many degrees of
    freedom as ages the constraint moves.

    Returns ``rate`` (the curve), ``smooth`` (before the monotone step), ``lambda``,
    ``edf``, ``monotone`` (the curve never falls), ``monotone_test`` and ``table``."""
    from scipy import stats
    from sklearn.isotonic import IsotonicRegression

    x = np.asarray(ages, dtype=float)
    d, e = np.asarray(payouts, dtype=float), np.asarray(exposure, dtype=float)
    if prior is not None and prior_weight > 0:
        d_fit = d + prior_weight * np.exp(prior[0] + prior[1] * x)
        e_fit = e + prior_weight
    else:
        d_fit, e_fit = d, e
    if d_fit.sum() <= 0:
        raise InputError("no payouts at the ages the cover sells to and no prior: the "
                         "claims-by-age curve cannot be graduated")
    lambdas = np.logspace(-2, 7, 37) if lambdas is None else np.asarray(lambdas)
    n = len(d)
    m = int((e > 0).sum())                   # the ages with data: the prior is no data
    best = None
    for lam in lambdas:
        eta, edf = penalised_fit(d_fit, e_fit, float(lam))
        gcv = m * poisson_deviance(d, e, np.exp(eta)) / max(m - edf, 1e-9) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, float(lam), edf, eta)
    _, lam, edf, eta = best
    smooth = np.exp(eta)
    on = e > 0
    mu = e * smooth
    dispersion = float(np.sum(np.divide((d - mu) ** 2, mu, out=np.zeros(n), where=mu > 0)[on])
                       / max(on.sum() - edf, 1.0))
    test = {"dispersion": round(dispersion, 4)}
    rate = smooth
    if (np.diff(smooth) < 0).any():
        iso = IsotonicRegression(increasing=True).fit_transform(x, smooth,
                                                               sample_weight=e_fit + 1e-9)
        moved = int(np.sum(~np.isclose(iso, smooth, rtol=1e-9)))
        stat = (poisson_deviance(d, e, iso) - poisson_deviance(d, e, smooth)) / dispersion
        crit = float(stats.chi2.ppf(level, max(moved, 1)))
        test.update({"statistic": round(float(stat), 4), "ages_moved": moved,
                     "critical": round(crit, 4), "accepted": bool(stat <= crit)})
        if stat <= crit:
            rate = iso
    else:
        test.update({"statistic": 0.0, "ages_moved": 0, "accepted": True,
                     "note": "the smooth curve already rises"})
    table = pd.DataFrame({"age": np.asarray(ages).astype(int), "exposure": e, "actual": d,
                          "crude": np.divide(d, e, out=np.full(n, np.nan), where=e > 0),
                          "prior": np.exp(prior[0] + prior[1] * x) if prior is not None
                          else np.nan, "smooth": smooth, "graduated": rate})
    return {"rate": rate, "smooth": smooth, "lambda": lam, "edf": round(edf, 3),
            "monotone": bool((np.diff(rate) >= -1e-9 * rate[:-1]).all()),
            "monotone_test": test, "table": table}


def experience_by_age(age, paid, exposure, lo: int, hi: int) -> pd.DataFrame:
    """As-if payouts (yuan) and exposure (person-years) per single age lo..hi."""
    f = pd.DataFrame({"age": np.asarray(age, dtype=int), "paid": np.asarray(paid, dtype=float),
                      "exposure": np.asarray(exposure, dtype=float)})
    f = f[(f["age"] >= lo) & (f["age"] <= hi)]
    return (f.groupby("age")[["paid", "exposure"]].sum()
            .reindex(range(lo, hi + 1), fill_value=0.0).reset_index())


def age_curve(experience: pd.DataFrame, lo: int, hi: int, basis: dict) -> dict:
    """:func:`graduate` on ages lo..hi of ``experience`` (:func:`experience_by_age` over
    all the data's ages), with the prior from ``basis['prior_ages']`` when they hold
    payouts (else none, said in ``prior``)."""
    ex = experience.set_index("age")
    p_lo, p_hi = (int(v) for v in basis["prior_ages"])
    pr = ex.reindex(range(p_lo, p_hi + 1), fill_value=0.0)
    weight = float(basis["prior_person_years"])
    try:
        prior = prior_line(pr.index, pr["paid"], pr["exposure"]) if weight > 0 else None
        prior_info = (None if prior is None else
                      {"ages": [p_lo, p_hi], "person_years_each_age": weight,
                       "a": round(prior[0], 6), "b": round(prior[1], 6)})
    except InputError:
        prior, prior_info = None, f"none: too few payouts at ages {p_lo}-{p_hi}"
    on = ex.reindex(range(lo, hi + 1), fill_value=0.0)
    g = graduate(np.arange(lo, hi + 1), on["paid"].to_numpy(), on["exposure"].to_numpy(),
                 prior, weight)
    g["prior"] = prior_info
    return g


def claims_by_age(ages, rate, people: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """C_s(x) = k_s g(x) per age of ``ages`` and sex: ``rate`` g at those ages; ``people``
    the eligible people of the last data year with ``age``, ``gender``, ``weight``
    (expected policies per person: the enrolled mix) and ``cost`` (their cell's expected
    annual benefit from the models). k_s makes the weighted mean of C_s over the people
    of sex s their models' mean (a sex without people: both sexes').

    >>> p = pd.DataFrame({"age": [60, 61, 61], "gender": ["1", "1", "2"],
    ...                   "weight": [1.0, 1.0, 1.0], "cost": [100.0, 200.0, 300.0]})
    >>> c, k = claims_by_age([60, 61], [1.0, 2.0], p)
    >>> c.round(4).values.tolist(), k
    ([[60.0, 100.0, 150.0], [61.0, 200.0, 300.0]], {'1': 100.0, '2': 150.0})
    """
    ages, rate = np.asarray(ages), np.asarray(rate, dtype=float)
    g_at = pd.Series(rate, index=ages).reindex(people["age"].to_numpy()).to_numpy()
    sex = people["gender"].astype(str).to_numpy()
    w, cost = people["weight"].to_numpy(dtype=float), people["cost"].to_numpy(dtype=float)
    k = {}
    for s in ("1", "2"):
        on = sex == s
        if w[on].sum() <= 0:
            on = np.ones(len(sex), dtype=bool)
        k[s] = float(np.dot(w[on], cost[on]) / np.dot(w[on], g_at[on]))
    return pd.DataFrame({"age": ages, **{s: k[s] * rate for s in ("1", "2")}}), k


def band_check(claims: pd.DataFrame, people: pd.DataFrame) -> list[dict]:
    """Per model age band: the enrolled mix's mean cost by the models and by the curve."""
    c = claims.set_index("age")
    sex = people["gender"].astype(str).to_numpy()
    ages = people["age"].to_numpy()
    curve = np.where(sex == "1", c["1"].reindex(ages).to_numpy(), c["2"].reindex(ages).to_numpy())
    f = pd.DataFrame({"band": band_of(ages), "w": people["weight"].to_numpy(dtype=float),
                      "model": people["cost"].to_numpy(dtype=float), "curve": curve})
    out = []
    for b, g in f.groupby("band", sort=False):
        m, cv = (float(np.dot(g["w"], g[k]) / g["w"].sum()) for k in ("model", "curve"))
        out.append({"band": b, "models": round(m, 2), "curve": round(cv, 2),
                    "curve_over_models": round(cv / m, 4)})
    return sorted(out, key=lambda r: int(r["band"].split("-")[0].rstrip("+")))


# ---------------------------------------------------------------- decrements

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


def lapse_by_duration(policies: pd.DataFrame | None, persons: pd.DataFrame | None,
                      years: int, basis: dict, lo: int, hi: int) -> tuple[np.ndarray, dict]:
    """The lapse sensitivity's rate for policy years t = 0..years-1: a stated rate
    (``lapse`` a number), or by policy duration from the persistency data
    (:func:`puhui.survival.persistency.policy_years` of people aged lo..hi; duration =
    years since the person's first enrolled data year) where the Wilson interval's
    half-width is within ``lapse_max_halfwidth``, else ``lapse_ultimate``
    (:func:`cohort` charges none in the cover's last year). Returns the rates and what they
    are (with the table by duration)."""
    from puhui.survival.persistency import DIED, LAPSED, policy_years, wilson_interval

    ult = float(basis["lapse_ultimate"])
    if basis["lapse"] != "persistency":
        return np.full(years, float(basis["lapse"])), {"source": f"{float(basis['lapse'])} a year (stated)"}
    q = np.full(years, ult)
    rows = []
    if policies is not None and persons is not None and len(policies):
        py = policy_years(policies, persons)
        py = py[(py["age"] >= lo) & (py["age"] <= hi) & (py["outcome"] != DIED)]
        # a person's first enrolled data year may be any year of theirs: policies
        # enrolled before the data are left-truncated into duration 1
        first_all = (pd.to_datetime(policies["start_date"]).dt.year
                     .groupby(policies["psn_no"].astype(str)).min())
        if len(py):
            first = first_all.reindex(py["psn_no"]).to_numpy()
            dur = py["year"].to_numpy() - first + 1
            g = pd.DataFrame({"duration": dur, "lapsed": (py["outcome"] == LAPSED).to_numpy()})
            g = g.groupby("duration")["lapsed"].agg(at_risk="size", lapsed="sum").reset_index()
            low, up = wilson_interval(g["lapsed"].to_numpy(), g["at_risk"].to_numpy())
            for (_, r), l_, u_ in zip(g.iterrows(), low, up):
                rate = r["lapsed"] / r["at_risk"]
                credible = (u_ - l_) / 2 <= float(basis["lapse_max_halfwidth"])
                rows.append({"duration": int(r["duration"]), "at_risk": int(r["at_risk"]),
                             "lapsed": int(r["lapsed"]), "lapse_rate": round(float(rate), 4),
                             "lower": round(float(l_), 4), "upper": round(float(u_), 4),
                             "credible": bool(credible)})
                if credible and r["duration"] - 1 < years:
                    q[int(r["duration"]) - 1] = rate
    used = [r["duration"] for r in rows if r["credible"]]
    src = (f"by policy duration from the persistency data at ages {lo}-{hi} where credible "
           f"(Wilson 95 % half-width <= {basis['lapse_max_halfwidth']}: duration(s) "
           f"{', '.join(map(str, used)) or 'none'}), else {ult} a year (stated)")
    return q, {"source": src, "by_duration": rows}


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
           q_death: pd.DataFrame, lapse, rate: float, claim_timing: float,
           improvement: float = 0.0) -> pd.DataFrame:
    """One entry age's projection in today's money, men and women apart then combined
    per policy written: l_t = s l_t(men) + (1 - s) l_t(women), claims per policy in
    force C_t = (s l_t(m) C_t(m) + (1 - s) l_t(w) C_t(w)) / l_t. ``lapse``: the rate of
    each policy year t = 0, 1, ... (at least as long as the cover; None or 0: death
    only), none in the last year (the cover ends anyway). Columns as
    :func:`puhui.survival.lifetime_pricing.projection`, plus ``lapse``."""
    on = (claims["age"] >= entry_age) & (claims["age"] <= max_age)
    ages = claims.loc[on, "age"].to_numpy()
    n = len(ages)
    ql = np.zeros(n) if lapse is None else np.broadcast_to(
        np.asarray(lapse, dtype=float), (max(n, np.size(lapse)),))[:n].copy()
    ql[-1] = 0.0
    parts = []
    for s, share in (("1", share_men), ("2", 1.0 - share_men)):
        qd = q_death.set_index("age").loc[ages, s].to_numpy() * (1.0 - improvement)
        parts.append((share * lp.in_force(qd, ql), claims.loc[on, s].to_numpy(), qd))
    l = parts[0][0] + parts[1][0]
    lc = parts[0][0] * parts[0][1] + parts[1][0] * parts[1][1]
    c = np.divide(lc, l, out=np.zeros_like(lc), where=l > 0)
    qd = (parts[0][0] * parts[0][2] + parts[1][0] * parts[1][2]) / l
    p = lp.level_premium(c, l, rate, claim_timing)
    return pd.DataFrame({"year": ages - entry_age, "age": ages, "in_force": l, "q_death": qd,
                         "lapse": ql, "claims": c,
                         "natural_premium": lp.natural_premiums(c, rate, claim_timing),
                         "level_premium": p, "reserve": lp.reserves(c, l, p, rate, claim_timing)})


def review_path(proj: pd.DataFrame, growth, every: int, rate: float,
                claim_timing: float) -> tuple[list[dict], float]:
    """The re-rating path of a level premium set in today's money when the medical
    trend G(t) is carried by reviews every ``every`` years: at review t_k the premium
    rises by the growth since the last review times the future claims over the future
    premiums (both per policy in force at t_k)::

        P_k = P_{k-1} + (G(t_k) - G(t_{k-1})) PVFC(t_k) / a(t_k)

    so the reserve held (the old basis's, when claims ran at its level) plus the new
    premiums meet the claims at the new level. Returns the path (year, age, G,
    premium, factor over the entry premium) and the review lag's share of the
    trended claims' present value (claims grow G(t) / G(t_k) inside a review period
    with no premium for it: a margin or loading must carry it).

    >>> p = pd.DataFrame({"age": [60, 61], "in_force": [1.0, 1.0], "claims": [100.0, 100.0],
    ...                   "level_premium": 100.0})
    >>> path, lag = review_path(p, [1.0, 1.5], 1, 0.0, 0.0)
    >>> [r["premium"] for r in path], lag
    ([100.0, 150.0], 0.0)
    """
    c, l = proj["claims"].to_numpy(dtype=float), proj["in_force"].to_numpy(dtype=float)
    ages = proj["age"].to_numpy()
    g = np.asarray(growth, dtype=float)[:len(c)]
    n = len(c)
    p0 = float(proj["level_premium"].iloc[0])
    path = [{"year": 0, "age": int(ages[0]), "growth": 1.0, "premium": round(p0, 2),
             "factor": 1.0}]
    p, g_prev = p0, 1.0
    at = np.zeros(n, dtype=int)                  # each year's last review
    for t in range(every, n, every):
        pvfc = float(np.sum(lp.discount_factors(rate, n - t, claim_timing) * l[t:] * c[t:]))
        ann = float(np.sum(lp.discount_factors(rate, n - t) * l[t:]))
        p = float(p + (g[t] - g_prev) * pvfc / ann)
        g_prev = g[t]
        at[t:] = t
        path.append({"year": t, "age": int(ages[t]), "growth": round(float(g[t]), 4),
                     "premium": round(p, 2), "factor": round(p / p0, 4)})
    vc = lp.discount_factors(rate, n, claim_timing) * l * c
    lag = float(np.sum(vc * (g - g[at])) / np.sum(vc * g))
    return path, lag


def filed_schedule(product, ages) -> np.ndarray | None:
    """The product file's premium (yuan a year) at each attained age: its flat
    premium, or its premium cells by age (cells by health status: the cell without a
    status, else the healthy one); None when it states none or leaves an age out."""
    ages = np.asarray(ages)
    if product.premium_flat_fen is not None:
        return np.full(len(ages), product.premium_flat_fen / 100.0)
    cells = [c for c in product.premium_cells if c.preexisting is None] or \
        [c for c in product.premium_cells if c.preexisting is False]
    if not cells:
        return None
    out = np.full(len(ages), np.nan)
    for c in cells:
        out[(ages >= c.min_age) & (ages <= c.max_age) & np.isnan(out)] = c.amount_fen / 100.0
    return None if np.isnan(out).any() else out


def pv_filed(proj: pd.DataFrame, schedule: pd.Series, rate: float) -> float:
    """sum_t v^t l_t F(x + t): the present value of the filed premiums per policy written."""
    l = proj["in_force"].to_numpy(dtype=float)
    return float(np.sum(lp.discount_factors(rate, len(l)) * l
                        * schedule.reindex(proj["age"].to_numpy()).to_numpy()))


def _share_men(people: pd.DataFrame, x: int) -> float:
    at = people["age"].to_numpy() == x
    men = people["gender"].astype(str).to_numpy() == "1"
    w = people["weight"].to_numpy(dtype=float)
    return float(w[at & men].sum() / w[at].sum()) if w[at].sum() > 0 else float(
        w[men].sum() / w.sum())


def lifetime_price(product, people: pd.DataFrame, experience: pd.DataFrame,
                   growth: np.ndarray, basis: dict, target: float,
                   persons: pd.DataFrame | None = None, years=None,
                   policies: pd.DataFrame | None = None) -> tuple[dict, dict]:
    """The lifetime figures of ``pricing.json`` and the report's tables.

    ``people``: the eligible people of the last data year (see :func:`claims_by_age`);
    ``experience``: as-if payouts and exposure by single age over all the data's ages
    of the product's schemes (:func:`experience_by_age`); ``growth``: G(t), t = 0..(last
    age - first entry age) (:func:`benefit_growth`), for the re-rating path only;
    ``target``: the target loss ratio (gross = pure / target); ``policies`` and
    ``persons``: the data's, for the lapse by duration and fitted mortality."""
    lo, hi = int(product.min_entry_age or 60), int(product.max_renewal_age)
    ages = np.arange(lo, hi + 1)
    curve = age_curve(experience, lo, hi, basis)
    claims, k = claims_by_age(ages, curve["rate"], people)
    q_death, mort_info = death_rates(ages, basis, persons, years)
    lapse, lapse_info = lapse_by_duration(policies, persons, hi - lo + 1, basis, lo, hi)
    rate, timing = float(basis["interest"]), float(basis["claim_timing"])
    every = int(basis["review_years"])
    filed = filed_schedule(product, ages)
    sched = pd.Series(filed, index=ages) if filed is not None else None
    max_entry = int(product.max_entry_age or lo)
    w_all = people["weight"].to_numpy(dtype=float)
    age_p = people["age"].to_numpy()

    def run(x, lapse_=None, improvement=0.0):
        return cohort(x, hi, _share_men(people, x), claims, q_death, lapse_, rate, timing,
                      improvement)

    # the loss ratio at the filed schedule over every entry age, by the entrants' mix
    lr_rows, pvc_mix, pvp_mix = [], 0.0, 0.0
    if sched is not None:
        for x in range(lo, max_entry + 1):
            proj = run(x)
            pvc = lp.pv_claims(proj["claims"], proj["in_force"], rate, timing)
            pvp = pv_filed(proj, sched, rate)
            wx = float(w_all[age_p == x].sum())
            pvc_mix, pvp_mix = pvc_mix + wx * pvc, pvp_mix + wx * pvp
            lr_rows.append({"entry_age": x, "entrants": round(wx, 2),
                            "pv_claims": round(pvc, 2), "pv_filed_premiums": round(pvp, 2),
                            "loss_ratio": round(pvc / pvp, 4)})
    entries, projections = [], {}
    for x in sorted({int(a) for a in basis["entry_ages"] if lo <= int(a) <= max_entry}):
        proj = run(x)                                      # the headline: death only
        projections[x] = proj
        pure = float(proj["level_premium"].iloc[0])
        with_lapse = run(x, lapse)
        pure_l = float(with_lapse["level_premium"].iloc[0])
        path, lag = review_path(proj, growth, every, rate, timing)
        scen = []
        for r in basis["improvement_scenarios"]:
            pr = float(run(x, None, float(r))["level_premium"].iloc[0])
            prl = float(run(x, lapse, float(r))["level_premium"].iloc[0])
            scen.append({"mortality_reduction": r, "level_pure_premium": round(pr, 2),
                         "level_gross_premium": round(pr / target, 2),
                         "change": round(pr / pure - 1, 4),
                         "change_with_lapse": round(prl / pure_l - 1, 4)})
        pvc = lp.pv_claims(proj["claims"], proj["in_force"], rate, timing)
        e = {"entry_age": x, "share_men": round(_share_men(people, x), 4),
             "pv_claims": round(pvc, 2),
             "premium_annuity": round(lp.premium_annuity(proj["in_force"], rate), 4),
             "level_pure_premium": round(pure, 2), "level_gross_premium": round(pure / target, 2),
             "level_pure_premium_with_lapse": round(pure_l, 2),
             "level_gross_premium_with_lapse": round(pure_l / target, 2),
             "first_year_natural_premium": round(float(proj["natural_premium"].iloc[0]), 2),
             "peak_reserve": round(float(proj["reserve"].max()), 2),
             "peak_reserve_age": int(proj.loc[proj["reserve"].idxmax(), "age"]),
             "reserve_by_year": [round(float(v), 2) for v in proj["reserve"]],
             "loss_ratio_at_filed_schedule": None, "review_path": path,
             "review_lag_share_of_claims": round(lag, 4),
             "mortality_improvement": scen}
        if sched is not None:
            e["loss_ratio_at_filed_schedule"] = round(pvc / pv_filed(proj, sched, rate), 4)
        entries.append(e)
    if not entries:
        raise InputError(f"[lifetime] entry_ages {basis['entry_ages']} holds no age from "
                         f"{lo} to {max_entry} ({product.id}'s entry ages)")
    # the step-rated schedule (today's money), the youngest entrants' years in each band
    young = entries[0]["entry_age"]
    bands = [(c.min_age, c.max_age) for c in product.premium_cells if c.preexisting is None]
    steps = lp.step_rated_premiums(projections[young]["claims"], projections[young]["in_force"],
                                   projections[young]["age"], bands, rate, timing)
    sex = people["gender"].astype(str).to_numpy()
    c_at = np.where(sex == "1", claims.set_index("age")["1"].reindex(age_p).to_numpy(),
                    claims.set_index("age")["2"].reindex(age_p).to_numpy())
    lr_fig = None
    if sched is not None:
        first = float(np.dot(w_all, c_at) / np.dot(w_all, sched.reindex(age_p).to_numpy()))
        lr_fig = {"entrants_mix": round(pvc_mix / pvp_mix, 4) if pvp_mix > 0 else None,
                  "first_year_eligible_mix": round(first, 4),
                  "by_entry_age": lr_rows,
                  "schedule": [{"min_age": int(a), "premium": float(v)}
                               for a, v in sched.items()
                               if a == lo or v != sched.get(a - 1)],
                  "note": "pure claims (no expenses) over the product file's premiums: PV "
                          "over the cover without lapse in today's money (the schedule "
                          "re-rated with the trend as the level premium is), entry ages "
                          "weighted by the enrolled mix of the last data year; the first "
                          "year: the eligible mix's expected claims over its filed premiums"}
    table = curve["table"]
    figures = {
        "basis": {"interest": rate, "claim_timing": timing, "mortality": mort_info,
                  "lapse": "none in the headline premium (death only); the sensitivity: "
                           + lapse_info["source"],
                  "lapse_by_duration": lapse_info.get("by_duration", []),
                  "trend": {"in_level_premium": "none (today's money): carried by reviews",
                            "review_years": every,
                            "benefit_growth": {f"year {t}": round(float(growth[t]), 4)
                                               for t in range(0, len(growth), 10)}},
                  "age_curve": {"ages": [lo, hi], "prior": curve["prior"],
                                "lambda": curve["lambda"], "edf": curve["edf"],
                                "monotone": curve["monotone"],
                                "monotone_test": curve["monotone_test"],
                                "person_years": round(float(table["exposure"].sum()), 2),
                                "level_by_sex": {s: round(v, 6) for s, v in k.items()}},
                  "ages": [lo, hi],
                  "note": "headline level premiums: no lapse, no future trend (reviews every "
                          f"{every} years carry it: the re-rating path), claims by a "
                          "graduated single-age curve at the models' level; deductibles "
                          "and limits held fixed; no selection wearing off after entry"},
        "claims_by_age": [{"age": int(a), "men": round(float(m), 2), "women": round(float(f), 2)}
                          for a, m, f in claims[["age", "1", "2"]].itertuples(index=False)],
        "band_check": band_check(claims, people),
        "entry_ages": entries,
        "loss_ratio_at_filed_schedule": lr_fig,
        "step_rated": [{"min_age": s["min_age"], "max_age": s["max_age"],
                        "pure_premium": round(s["premium"], 2) if s["premium"] else None,
                        "gross_premium": round(s["premium"] / target, 2) if s["premium"] else None}
                       for s in steps],
        "step_rated_entry_age": young,
    }
    tables = {"lifetime_age_fit": table,
              "lifetime_claims": claims.rename(columns={"1": "men", "2": "women"}),
              "lifetime_decrements": q_death.rename(columns={"1": "q_men", "2": "q_women"})
              .assign(policy_year=ages - lo, lapse_sensitivity=lapse[:len(ages)]),
              "lifetime_projection": projections}
    return figures, tables
