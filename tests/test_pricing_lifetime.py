"""The elderly product's lifetime price (puhui.pricing.lifetime) and `puhui price` on it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puhui.errors import InputError
from puhui.pricing import lifetime as lt
from puhui.survival import lifetime_pricing as lp

SAMPLE = Path(__file__).resolve().parents[1] / "data-samples" / "city"
ELDERLY = "elderly-medical-60-80"


def _people(n=400, seed=1):
    rng = np.random.default_rng(seed)
    age = rng.integers(60, 101, n)
    return pd.DataFrame({"age": age, "gender": rng.choice(["1", "2"], n),
                         "weight": rng.uniform(0.2, 1.0, n),
                         "cost": rng.gamma(2.0, 500.0, n) * (1 + (age - 60) / 20)})


def test_claims_by_age_keep_each_sexs_model_mean_without_band_steps():
    # one level factor per sex: the enrolled mix of each sex costs what the models say,
    # and the curve's shape (here exp(0.04 x)) is kept, with no step at a band boundary
    p = _people()
    ages = np.arange(60, 101)
    c, k = lt.claims_by_age(ages, np.exp(0.04 * (ages - 60)), p)
    c = c.set_index("age")
    w = p["weight"].to_numpy()
    for s in ("1", "2"):
        on = (p["gender"] == s).to_numpy()
        mean_model = np.dot(w[on], p["cost"].to_numpy()[on]) / w[on].sum()
        mean_curve = np.dot(w[on], c.loc[p["age"].to_numpy()[on], s].to_numpy()) / w[on].sum()
        assert mean_curve == pytest.approx(mean_model, rel=1e-12)
    ratios = (c["1"] / c["1"].shift()).dropna()
    np.testing.assert_allclose(ratios, np.exp(0.04), rtol=1e-12)     # 70->71, 80->81 too


def _rising_experience(seed, n0=600.0, slope=0.045, shape=0.4):
    """As-if payouts by single age 60-100: a rising cost per person-year, exposure
    thinning with age, heavy gamma noise (about 5,000 person-years)."""
    rng = np.random.default_rng(seed)
    ages = np.arange(60, 101)
    e = np.maximum(n0 * np.exp(-0.08 * (ages - 60)), 2.0)
    true = 500.0 * np.exp(slope * (ages - 60))
    d = rng.gamma(shape * e, true / shape)
    return ages, d, e, true


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_graduated_curve_is_monotone_and_smooth_on_monotone_data(seed):
    ages, d, e, true = _rising_experience(seed)
    crude = d / e
    assert (np.diff(crude) < 0).sum() > 10              # the raw data zig-zag
    g = lt.graduate(ages, d, e)
    r = g["rate"]
    assert g["monotone"] and (np.diff(r) >= -1e-9 * r[:-1]).all()
    # no jump: a year of age moves the cost by less than 12 % anywhere
    assert (r[1:] / r[:-1]).max() < 1.12
    # and the curve follows the truth where the data are (60-85) within 25 %
    np.testing.assert_allclose(r[:26], true[:26], rtol=0.25)


def test_graduation_keeps_a_fall_the_data_clearly_show():
    # a hump with plenty of data (cost halves after 80): the monotone step is rejected
    ages = np.arange(60, 101)
    true = np.where(ages <= 80, 500.0 * np.exp(0.05 * (ages - 60)), 1359.0 * 0.5 ** ((ages - 80) / 5))
    e = np.full(len(ages), 20_000.0)
    d = np.random.default_rng(7).gamma(0.5 * e, true / 0.5)
    g = lt.graduate(ages, d, e)
    assert not g["monotone"] and not g["monotone_test"]["accepted"]
    assert g["rate"][-1] < 0.5 * g["rate"][20]


def test_the_prior_decides_only_where_the_data_are_thin():
    # no data at all past 90: the curve there follows the prior's slope (a log-linear
    # rise of 0.05 a year), not a flat or falling extrapolation
    ages, d, e, true = _rising_experience(3, n0=3000.0, slope=0.05)
    e[31:], d[31:] = 0.0, 0.0
    prior = (np.log(500.0) - 0.05 * 60, 0.05)
    g = lt.graduate(ages, d, e, prior=prior, prior_weight=25.0)
    np.testing.assert_allclose(g["rate"][31:], true[31:], rtol=0.3)
    assert g["rate"][-1] > g["rate"][30] * 1.3
    # the data's ages barely move with the prior (a weight of 25 against thousands)
    g0 = lt.graduate(ages[:31], d[:31], e[:31])
    np.testing.assert_allclose(g["rate"][:21], g0["rate"][:21], rtol=0.05)


def test_the_level_premium_without_lapse_by_hand():
    # entry 98, cover to 100, men only: claims 1,000 / 1,200 / 1,500, death 0.3 / 0.4 / 0.5,
    # interest 2 %, claims mid-year. Without lapse: l = 1, 0.7, 0.7 x 0.6 = 0.42;
    # PVC = 1000 v^.5 + 0.7 x 1200 v^1.5 + 0.42 x 1500 v^2.5, a = 1 + 0.7 v + 0.42 v^2
    ages = np.array([98, 99, 100])
    claims = pd.DataFrame({"age": ages, "1": [1000.0, 1200.0, 1500.0], "2": 0.0})
    qd = pd.DataFrame({"age": ages, "1": [0.3, 0.4, 0.5], "2": 0.0})
    v = 1 / 1.02
    pvc = 1000 * v ** 0.5 + 0.7 * 1200 * v ** 1.5 + 0.42 * 1500 * v ** 2.5
    a = 1 + 0.7 * v + 0.42 * v ** 2
    # on paper: PVC = 990.148 + 815.416 + 599.570 = 2,405.134; a = 1 + 0.686275 + 0.403691
    # = 2.089965; P = 1,150.80
    assert pvc == pytest.approx(2405.134, abs=1e-3) and a == pytest.approx(2.089965, abs=1e-6)
    assert pvc / a == pytest.approx(1150.80, abs=0.005)
    head = lt.cohort(98, 100, 1.0, claims, qd, None, 0.02, 0.5)
    assert head["in_force"].tolist() == pytest.approx([1.0, 0.7, 0.42])
    assert head["level_premium"].iloc[0] == pytest.approx(pvc / a, rel=1e-12)
    # with a 20 % lapse fewer reach the dear years: cheaper, the lapse-supported figure;
    # l = 1, 0.7 x 0.8 = 0.56, 0.56 x 0.6 x 0.8 (no lapse charged in the last year)
    sens = lt.cohort(98, 100, 1.0, claims, qd, [0.2, 0.2, 0.2], 0.02, 0.5)
    assert sens["in_force"].tolist() == pytest.approx([1.0, 0.56, 0.56 * 0.6 * 0.8])
    assert sens["lapse"].tolist() == [0.2, 0.2, 0.0]
    assert sens["level_premium"].iloc[0] < head["level_premium"].iloc[0]


def test_the_re_rating_path_by_hand():
    # flat claims 100 for 4 years, no death, no interest, claims at year end; the level
    # premium is 100; reviews every 2 years with the benefit grown 1.5x by year 2:
    # at year 2 the premium rises by (1.5 - 1) x PVFC / a = 0.5 x 200 / 2 = 50
    p = pd.DataFrame({"age": [60, 61, 62, 63], "in_force": 1.0, "claims": 100.0,
                      "level_premium": 100.0})
    path, lag = lt.review_path(p, [1.0, 1.2, 1.5, 1.8], 2, 0.0, 1.0)
    assert [(r["year"], r["premium"]) for r in path] == [(0, 100.0), (2, 150.0)]
    # the lag: claims 100 (1.2 - 1) + 100 (1.8 - 1.5) unfunded of 100 (1 + 1.2 + 1.5 + 1.8)
    assert lag == pytest.approx(50 / 550)


def test_the_loss_ratio_at_the_filed_schedule_by_hand():
    from types import SimpleNamespace

    cell = lambda lo, hi, fen: SimpleNamespace(min_age=lo, max_age=hi, preexisting=None,
                                               amount_fen=fen)
    prod = SimpleNamespace(premium_flat_fen=None,
                           premium_cells=(cell(60, 61, 50_000), cell(62, 70, 80_000)))
    sched = lt.filed_schedule(prod, [60, 61, 62])
    assert sched.tolist() == [500.0, 500.0, 800.0]
    assert lt.filed_schedule(prod, [60, 75]) is None                 # an age left out
    proj = pd.DataFrame({"age": [60, 61, 62], "in_force": [1.0, 0.5, 0.25]})
    # no interest: 500 + 0.5 x 500 + 0.25 x 800
    assert lt.pv_filed(proj, pd.Series(sched, index=[60, 61, 62]), 0.0) == pytest.approx(950.0)


def test_lapse_by_duration_from_the_data_where_credible():
    # 3 data years: 400 enrol in year 1 (100 lapse), the 300 renew and 30 lapse at
    # duration 2 (credible); 20 first enrol in year 2 and 10 of them lapse (duration 1)
    pol, per = [], []
    for i in range(420):
        first = 2023 if i < 400 else 2024
        last = {True: 2023}.get(i < 100, 2024 if (i >= 370 and i < 400) or i >= 410 else 2025)
        for y in range(first, last + 1):
            pol.append({"psn_no": str(i), "preexisting": False,
                        "start_date": pd.Timestamp(f"{y}-01-01")})
        per.append({"psn_no": str(i), "birth_year": 1955, "gender": "1", "insutype": "310",
                    "death_date": pd.NaT})
    pol, per = pd.DataFrame(pol), pd.DataFrame(per)
    basis = {**lt.DEFAULTS, "lapse_max_halfwidth": 0.05}
    q, info = lt.lapse_by_duration(pol, per, 5, basis, 60, 100)
    rows = {r["duration"]: r for r in info["by_duration"]}
    assert rows[1]["at_risk"] == 420 and rows[1]["lapsed"] == 110 and rows[1]["credible"]
    assert rows[2]["at_risk"] == 300 and rows[2]["lapsed"] == 30 and rows[2]["credible"]
    assert q.tolist() == pytest.approx([110 / 420, 0.1, 0.05, 0.05, 0.05])
    # a stricter credibility standard drops duration 2 to the stated rate
    q, _ = lt.lapse_by_duration(pol, per, 3, {**basis, "lapse_max_halfwidth": 0.03}, 60, 100)
    assert q.tolist() == pytest.approx([0.05, 0.05, 0.05])
    q, info = lt.lapse_by_duration(pol, per, 3, {**basis, "lapse": 0.08}, 60, 100)
    assert q.tolist() == [0.08, 0.08, 0.08] and "stated" in info["source"]


def test_lifetime_basis_checks_the_assumptions():
    assert lt.lifetime_basis({})["mortality"] == "table"
    for bad in ({"mortality": "cl3"}, {"lapse": 1.5}, {"lapse": "none"},
                {"improvement_scenarios": [1.2]}, {"review_years": 0}, {"lapse_ultimate": 1.0},
                {"prior_ages": [59, 40]}):
        with pytest.raises(InputError, match=r"\[lifetime\]"):
            lt.lifetime_basis({"lifetime": bad})


def test_fitted_mortality_is_a_gompertz_near_the_table_the_city_was_made_with():
    from puhui.fund.files import read_fund

    persons = read_fund(SAMPLE).persons
    q, info = lt.death_rates(np.arange(60, 101), {**lt.DEFAULTS, "mortality": "fitted"},
                             persons, [2024, 2025])
    table, _ = lt.death_rates(np.arange(60, 101), lt.DEFAULTS)
    assert info["1"]["deaths"] > 50 and info["2"]["deaths"] > 50
    assert (np.diff(q["1"]) > 0).all()              # a Gompertz force rises with age
    # 20,000 people, two years: within a factor of two of CL at 70-90
    ratio = (q["1"] / table["1"]).to_numpy()[10:31]
    assert 0.5 < ratio.min() and ratio.max() < 2.0


@pytest.fixture(scope="module")
def elderly(tmp_path_factory):
    from puhui.pricing.run import run_price
    from puhui.products.model import product_path

    out = tmp_path_factory.mktemp("elderly")
    f = run_price(product_path(ELDERLY), SAMPLE, out, backtest="none")
    return f, out


def test_price_gives_the_elderly_product_a_lifetime_price(elderly):
    f, out = elderly
    L = f["lifetime"]
    assert [e["entry_age"] for e in L["entry_ages"]] == [60, 65, 70, 75, 80]
    assert len(L["claims_by_age"]) == 41 and L["claims_by_age"][-1]["age"] == 100
    # the graduated curve: monotone on the sample and without steps at band boundaries
    for sex in ("men", "women"):
        c = np.array([r[sex] for r in L["claims_by_age"]])
        assert L["basis"]["age_curve"]["monotone"] and (np.diff(c) >= 0).all()
        assert (c[1:] / c[:-1]).max() < 1.10
    gross_by_entry = [e["level_gross_premium"] for e in L["entry_ages"]]
    assert gross_by_entry == sorted(gross_by_entry)        # no pre-funded trend: rises with age
    filed = {r["entry_age"]: r for r in L["loss_ratio_at_filed_schedule"]["by_entry_age"]}
    for e in L["entry_ages"]:
        # the headline: P = PVC / a with death only, the reserve before the first premium
        # is nil, gross = pure / 0.85; the lapse-supported figure beside it
        assert e["level_pure_premium"] == pytest.approx(e["pv_claims"] / e["premium_annuity"],
                                                        rel=1e-4)
        assert e["reserve_by_year"][0] == pytest.approx(0.0, abs=0.01)
        assert len(e["reserve_by_year"]) == 101 - e["entry_age"]
        assert e["level_gross_premium"] == pytest.approx(e["level_pure_premium"] / 0.85, abs=0.01)
        assert e["level_gross_premium_with_lapse"] != e["level_gross_premium"]
        # the loss ratio at the product file's schedule, not the target
        r = filed[e["entry_age"]]
        assert e["loss_ratio_at_filed_schedule"] == pytest.approx(
            r["pv_claims"] / r["pv_filed_premiums"], abs=1e-4)
        assert abs(e["loss_ratio_at_filed_schedule"] - 0.85) > 0.01
        # the re-rating path starts at the level premium and rises with the trend
        path = [p["premium"] for p in e["review_path"]]
        assert path[0] == e["level_pure_premium"] and np.all(np.diff(path) > 0)
        assert [p["year"] for p in e["review_path"]][:3] == [0, 3, 6]
        for m in e["mortality_improvement"]:
            assert m["change"] > 0                 # more people live to the dear ages
    lr = L["loss_ratio_at_filed_schedule"]
    assert lr["entrants_mix"] > 1.0 and lr["first_year_eligible_mix"] > 1.0   # under-priced
    assert [s["min_age"] for s in L["step_rated"]] == [60, 65, 70, 75, 80, 85, 90]
    assert L["basis"]["trend"]["benefit_growth"]["year 0"] == 1.0
    assert L["basis"]["trend"]["benefit_growth"]["year 40"] > 1.05 ** 40 * 0.9
    assert L["basis"]["lapse_by_duration"][0]["duration"] == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Lifetime price" in html and "Projection for entrants at 60" in html
    assert "premium schedule" in html and "Re-rating path" in html
    # pricing.json is the figures returned
    assert json.loads((out / "pricing.json").read_text(encoding="utf-8"))["lifetime"] == \
        json.loads(json.dumps(L))


def test_an_annual_product_has_no_lifetime_section():
    from puhui.products.model import load_product, product_path

    assert not lt.is_lifetime(load_product(product_path("huhuibao-2025")))
    assert lt.is_lifetime(load_product(product_path(ELDERLY)))


def test_bad_lifetime_assumption_exits_2_before_reading_data(tmp_path):
    from puhui.pricing.premium import load_assumptions

    _, default = load_assumptions()
    bad = tmp_path / "a.toml"
    bad.write_text(default.read_text(encoding="utf-8").replace(
        'mortality = "table"', 'mortality = "cl5"'), encoding="utf-8")
    from conftest import puhui          # in this process: what the command says

    r = puhui("price", "--product", ELDERLY, "--data", tmp_path / "nowhere", "--out",
              tmp_path / "o", "--assumptions", bad)
    assert r.returncode == 2 and "[lifetime] mortality" in r.stderr and "Traceback" not in r.stderr


def test_the_elderly_special_drug_premium_is_net_of_expected_agreement_refunds(elderly):
    f, out = elderly
    ag = f["drug_agreements"]
    b = ag["benefits"]["special_drugs"]
    share = sum(d["share_of_benefit_amounts"] * d["expected_refund_share"] for d in ag["drugs"])
    caps = ag["price_volume_caps"]
    assert [c["drug"] for c in caps] == ["SD-05"] and caps[0]["clawback_per_policy"] > 0
    share += sum(c["clawback_per_policy"] for c in caps) / b["pure_premium_before"]
    assert b["refund_share"] == pytest.approx(share, abs=2e-4)
    assert b["pure_premium_after"] == pytest.approx(b["pure_premium_before"] * (1 - share),
                                                    abs=0.05)
    assert f["pure_premium"]["special_drugs"] == b["pure_premium_after"]
    assert {d["endpoint"] for d in ag["drugs"]} == {"os", "pfs", "effect"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Outcome-based drug agreements" in html


def test_what_if_starts_from_the_premium_net_of_agreement_refunds(elderly):
    from puhui.pricing.whatif import PricingState, reprice

    f, out = elderly
    t = reprice(PricingState.load(out), "hospital_in_list", deductible=6000).set_index("benefit")
    for b in ("special_drugs", "hospital_in_list", "total"):
        assert t.loc[b, "pure_before"] == pytest.approx(f["pure_premium"][b], abs=0.02)
    assert t.loc["special_drugs", "pure_after"] == pytest.approx(t.loc["special_drugs", "pure_before"])


def test_a_toy_lifetime_price_without_renewals_or_younger_ages():
    # a cover of entry 60-62 renewable to 65, data at 60-65 only (no prior ages) and no
    # policies (no renewals): the curve has no prior, lapse is the stated ultimate rate,
    # and the loss ratio over the entrants' mix adds their PVs
    from types import SimpleNamespace

    cell = lambda lo, hi, fen: SimpleNamespace(min_age=lo, max_age=hi, preexisting=None,
                                               amount_fen=fen)
    prod = SimpleNamespace(id="toy", min_entry_age=60, max_entry_age=62, max_renewal_age=65,
                           premium_flat_fen=None,
                           premium_cells=(cell(60, 62, 50_000), cell(63, 65, 90_000)))
    ages = np.arange(60, 66)
    people = pd.DataFrame({"age": np.repeat(ages, 2), "gender": ["1", "2"] * 6,
                           "weight": 1.0, "cost": np.repeat(400.0 + 50 * (ages - 60), 2)})
    experience = pd.DataFrame({"age": ages, "paid": 1000.0 * (400 + 50 * (ages - 60)),
                               "exposure": 1000.0})
    basis = {**lt.DEFAULTS, "entry_ages": [60, 62]}
    fig, tab = lt.lifetime_price(prod, people, experience, 1.05 ** np.arange(6), basis, 0.85)
    assert fig["basis"]["age_curve"]["prior"].startswith("none")
    assert "0.05 a year" in fig["basis"]["lapse"] and fig["basis"]["lapse_by_duration"] == []
    c = pd.DataFrame(fig["claims_by_age"])
    assert (np.diff(c["men"]) > 0).all()
    assert c["men"].mean() == pytest.approx(people["cost"].mean(), rel=1e-3)
    lr = fig["loss_ratio_at_filed_schedule"]
    rows = pd.DataFrame(lr["by_entry_age"])
    assert rows["entry_age"].tolist() == [60, 61, 62]
    assert lr["entrants_mix"] == pytest.approx(
        rows["pv_claims"].sum() / rows["pv_filed_premiums"].sum(), abs=1e-4)
    e60 = fig["entry_ages"][0]
    proj = tab["lifetime_projection"][60]
    assert (proj["lapse"] == 0).all() and e60["level_pure_premium"] == pytest.approx(
        proj["level_premium"].iloc[0], abs=0.005)
    assert e60["level_pure_premium_with_lapse"] < e60["level_pure_premium"]
