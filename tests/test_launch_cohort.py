"""A launch year priced at the launch cohort's own level (issue 18, session 24;
``[launch_year] prevalent = "cohort"``, puhui.pricing.launch_flags): the non-enrolled
get a level of their own (their pre-existing flag is unknown, all 0), the flag's effect
is the enrolled's, the cohort's coefficient is taken at its credibility, and next year's
cells with a listed diagnosis seen by the data's end cost as pre-existing 1.

Truth here is built apart from the model: a hand-drawn population whose cell rates are
counted with pandas, statsmodels' GLM on the person-years themselves, and the covariance
of a linear map worked by hand."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.benefit_cost import (
    LAUNCH_COHORT,
    BenefitCostModel,
    GroupTerms,
    choose_factors,
    mean_draws,
)
from puhui.pricing.launch_flags import mark_cohort, price_cohort
from puhui.pricing.loglinear import at_level

TERMS = GroupTerms("g", ("g",), deductible=2_000.0, ratio=0.8, preexisting_ratio=0.4,
                   limit=np.inf)


def _launch_year(rng, n=30_000, enrolled_flag0_rate=0.25):
    """One launch year drawn by hand: 40 % enrolled, whose flag (their policy's) is 1
    for 12 %; the non-enrolled are all at flag 0 though 10 % of them carry the
    diagnosis (rate 2.0 a year); the enrolled of flag 0 have their own rate (within-cell
    selection), flag 1 rate 1.5, the other non-enrolled 0.2. Returns (frame, events)."""
    enrolled = rng.random(n) < 0.4
    flag = (enrolled & (rng.random(n) < 0.12)).astype("int8")
    sick = ~enrolled & (rng.random(n) < 0.10)
    rate = np.where(flag == 1, 1.5, np.where(enrolled, enrolled_flag0_rate,
                                             np.where(sick, 2.0, 0.2)))
    exposure = np.where(rng.random(n) < 0.1, rng.uniform(0.2, 1.0, n), 1.0)
    counts = rng.poisson(rate * exposure)
    frame = pd.DataFrame({"year": 2024, "preexisting": flag, "enrolled": enrolled,
                          "exposure": exposure})
    rows = np.repeat(np.arange(n), counts)
    mean = np.where(flag[rows] == 1, 3_000.0, np.where(enrolled[rows], 1_500.0, 2_000.0))
    events = pd.DataFrame({"row": rows, "amount": rng.gamma(2.0, mean / 2.0),
                           "inpatient": True})
    return frame, events


def _fit(frame, events):
    """The cost model on the hand frame's factors (the cohort's when marked)."""
    factors = ("preexisting", LAUNCH_COHORT) if LAUNCH_COHORT in frame else ("preexisting",)
    model = BenefitCostModel(factors=factors, min_exceedances=10_000)   # empirical tail
    return model.fit(frame, events, amount="amount", kind="inpatient")


def test_the_cohort_fit_prices_the_enrolled_own_rates_counted_by_hand():
    """Saturated (flag and cohort on three cells): held at the cohort, the frequency of
    flag 0 and flag 1 are the enrolled's own counts over exposure, and the mean amounts
    theirs, counted with pandas; without the cohort factor flag 0 mixes in the
    non-enrolled, the diagnosed among them (the bias the setting removes)."""
    rng = np.random.default_rng(11)
    frame, events = _launch_year(rng)
    plain = _fit(frame, events)
    assert mark_cohort(frame, {"prevalent": "cohort"})
    model = _fit(frame, events)
    kind = model.kinds_[0]
    assert set(kind.factors) == {"preexisting", LAUNCH_COHORT}
    assert model.at_level(LAUNCH_COHORT, 1)
    assert model.kinds_[0].factors == ("preexisting",)
    ev = events.merge(frame, left_on="row", right_index=True)
    enr = frame[frame["enrolled"]]
    cells = pd.DataFrame({"preexisting": np.array([0, 1], dtype="int8")})
    (lam, mu), = model.rates(cells)
    for f in (0, 1):
        n = int((ev["enrolled"] & (ev["preexisting"] == f)).sum())
        x = float(enr.loc[enr["preexisting"] == f, "exposure"].sum())
        m = float(ev.loc[ev["enrolled"] & (ev["preexisting"] == f), "amount"].mean())
        assert lam[f] == pytest.approx(n / x, rel=1e-6)
        assert mu[f] == pytest.approx(m, rel=1e-6)
    # everyone at flag 0 (the non-enrolled's diagnosed included): far above the cohort's
    (lam0, _), = plain.rates(cells.iloc[:1])
    assert lam0[0] > 1.2 * lam[0]


def test_credibility_of_the_cohort_coefficient_against_statsmodels_on_the_rows():
    """price_cohort keeps Z b of the cohort's coefficient, Z = tau^2 / (tau^2 + se^2):
    b and se from statsmodels' Poisson GLM on the person-years themselves, and the
    priced flag-0 rate the non-enrolled's own (counted) times exp(Z b)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(12)
    frame, events = _launch_year(rng, n=6_000)
    mark_cohort(frame, {"prevalent": "cohort"})
    model = _fit(frame, events)
    rows = frame.assign(n=np.bincount(events["row"], minlength=len(frame)))
    glm = smf.glm("n ~ C(preexisting) + C(launch_cohort)", data=rows,
                  family=sm.families.Poisson(), offset=np.log(rows["exposure"])).fit()
    b, se = glm.params["C(launch_cohort)[T.1]"], glm.bse["C(launch_cohort)[T.1]"]
    tau = 0.1                                   # small, so Z is well inside (0, 1)
    fig = price_cohort(model, {"prevalent": "cohort", "cohort_log_sd": tau})
    z = tau ** 2 / (tau ** 2 + se ** 2)
    got = fig["inpatient"]["frequency"]
    assert got["coefficient"] == pytest.approx(b, abs=1e-4)
    assert got["se"] == pytest.approx(se, abs=1e-4)
    assert got["Z"] == pytest.approx(z, abs=1e-4) and 0.05 < z < 0.95
    non = frame[~frame["enrolled"]]
    rate_non = (np.bincount(events["row"], minlength=len(frame))[~frame["enrolled"]].sum()
                / non["exposure"].sum())
    (lam, _), = model.rates(pd.DataFrame({"preexisting": np.array([0, 1], dtype="int8")}))
    assert lam[0] == pytest.approx(rate_non * np.exp(z * b), rel=1e-6)
    # flag 1 (among the enrolled only) keeps the enrolled's whole level: their own rate
    e1 = (frame["preexisting"] == 1).to_numpy()
    assert lam[1] == pytest.approx(np.bincount(events["row"], minlength=len(frame))[e1].sum()
                                   / frame["exposure"][e1].sum(), rel=1e-6)
    assert model.morbidity_ == "preexisting_seen"


@pytest.mark.filterwarnings("ignore")          # statsmodels: the separation, as built
def test_a_separated_cohort_leaves_the_non_enrolled_level_and_finite_draws():
    """No event among the enrolled of flag 0 (their flag-1 events give the cohort's level
    its 30): the coefficient runs off to minus infinity with a huge se, Z is about 0,
    the flag-0 rate is the non-enrolled's and the parameter draws stay finite."""
    rng = np.random.default_rng(13)
    frame, events = _launch_year(rng, n=8_000, enrolled_flag0_rate=0.0)
    mark_cohort(frame, {"prevalent": "cohort"})
    model = _fit(frame, events)
    # chosen like a rating factor: each cohort level has its 30 events (flag 1's)
    c = (frame.assign(_count=np.bincount(events["row"], minlength=len(frame)))
         .groupby(["preexisting", LAUNCH_COHORT], as_index=False)["_count"].sum())
    assert choose_factors(c, "_count", candidates=("preexisting",)) == \
        ("preexisting", LAUNCH_COHORT)
    assert c.loc[(c["preexisting"] == 0) & (c[LAUNCH_COHORT] == 1), "_count"].sum() == 0
    fig = price_cohort(model, {"prevalent": "cohort", "cohort_log_sd": 1.0})
    assert fig["inpatient"]["frequency"]["Z"] < 1e-3
    non = ~frame["enrolled"].to_numpy()
    n = np.bincount(events["row"], minlength=len(frame))
    cells = pd.DataFrame({"preexisting": np.array([0, 1], dtype="int8")})
    (lam, _), = model.rates(cells)
    assert lam[0] == pytest.approx(n[non].sum() / frame["exposure"][non].sum(), rel=1e-3)
    e1 = (frame["preexisting"] == 1).to_numpy()
    assert lam[1] == pytest.approx(n[e1].sum() / frame["exposure"][e1].sum(), rel=1e-6)
    # the diagnosis seen is not priced at flag 1 on top of that level (Z about 0)
    seen = pd.DataFrame({"preexisting": np.array([0, 0], dtype="int8"),
                         "preexisting_seen": [0, 1]})
    (lam_seen, _), = model.rates(seen)
    assert lam_seen[1] == pytest.approx(lam_seen[0], rel=1e-3)
    d = mean_draws(model.kinds_[0].frequency.result_, cells, np.array([0.9, 0.1]),
                   np.random.default_rng(0), 2_000)
    assert np.isfinite(d).all() and 0.5 < d.mean() < 2.0


def test_at_level_carries_the_covariance_by_its_linear_map():
    """The folded intercept's variance V00 + 2 w V0c + w^2 Vcc and its covariance with
    another coefficient V0j + w Vcj, by hand from a statsmodels fit's covariance;
    prediction at the level equals statsmodels' prediction with the factor at it."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    from puhui.pricing.loglinear import LogLinearFit

    rng = np.random.default_rng(14)
    d = pd.DataFrame({"a": rng.choice(["x", "y"], 500), "c": rng.choice([0, 1], 500)})
    d["n"] = rng.poisson(np.exp(0.2 + 0.5 * (d["a"] == "y") - 0.7 * d["c"]))
    res = smf.glm("n ~ C(a) + C(c)", data=d, family=sm.families.Poisson()).fit()
    fit = LogLinearFit.of(res)
    v = res.cov_params()
    for w in (1.0, 0.3):
        g = at_level(fit, "c", 1, w)
        assert list(g.params.index) == ["Intercept", "C(a)[T.y]"]
        i, c, a = "Intercept", "C(c)[T.1]", "C(a)[T.y]"
        assert g.params[i] == pytest.approx(res.params[i] + w * res.params[c])
        assert g.cov_params().loc[i, i] == pytest.approx(v.loc[i, i] + 2 * w * v.loc[i, c]
                                                         + w * w * v.loc[c, c])
        assert g.cov_params().loc[i, a] == pytest.approx(v.loc[i, a] + w * v.loc[c, a])
    grid = pd.DataFrame({"a": ["x", "y"], "c": [1, 1]})
    assert np.allclose(at_level(fit, "c", 1).predict(grid[["a"]]).to_numpy(),
                       res.predict(grid).to_numpy())


def test_a_diagnosis_seen_costs_as_the_flag_while_the_ratio_stays_the_policy():
    """With ``morbidity_`` set, a cell of flag 0 with a diagnosis seen costs what a flag-1
    cell costs at the flag-0 benefit ratio (the same cell priced through terms whose
    pre-existing ratio is the ordinary one); without it the column is ignored."""
    rng = np.random.default_rng(15)
    frame, events = _launch_year(rng, n=6_000)
    model = _fit(frame, events)
    seen = pd.DataFrame({"preexisting": np.array([0, 0, 1], dtype="int8"),
                         "preexisting_seen": [0, 1, 1]})
    before = model.moments(seen, TERMS)[0]
    assert before[1] == pytest.approx(before[0])            # the column not read
    model.morbidity_ = "preexisting_seen"
    m1 = model.moments(seen, TERMS)[0]
    as_flag1 = model.moments(pd.DataFrame({"preexisting": np.array([1], dtype="int8")}),
                             dataclasses.replace(TERMS, preexisting_ratio=TERMS.ratio))[0]
    assert m1[0] == pytest.approx(before[0])
    assert m1[1] == pytest.approx(as_flag1[0]) and m1[1] > 2 * m1[0]
    assert m1[2] == pytest.approx(before[2])                # flag 1: its own ratio
    # weighted (a cohort level credible at Z): the rates mixed by hand
    (lam, mu), = model.rates(seen)
    model.morbidity_weights_ = {"inpatient": (0.25, 0.5)}
    (lam_w, mu_w), = model.rates(seen)
    assert lam_w[1] == pytest.approx(0.25 * lam[1] + 0.75 * lam[0])
    assert mu_w[1] == pytest.approx(0.5 * mu[1] + 0.5 * mu[0])
    assert lam_w[0] == pytest.approx(lam[0]) and lam_w[2] == pytest.approx(lam[2])
