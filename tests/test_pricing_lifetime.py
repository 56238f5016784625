"""The elderly product's lifetime price (puhui.pricing.lifetime) and `puhui price` on it."""

import json
import subprocess
import sys
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


def test_claims_by_age_keep_each_band_mean_of_the_models():
    # the slope moves cost inside a band, never the band's enrolled-mix mean
    p = _people()
    c = lt.claims_by_age(np.arange(60, 101), p, beta=0.04).set_index("age")
    band = lt.band_of(p["age"])
    for s in ("1", "2"):
        for b in np.unique(band):
            on = (band == b) & (p["gender"] == s).to_numpy()
            w = p["weight"].to_numpy()[on]
            mean_model = np.dot(w, p["cost"].to_numpy()[on]) / w.sum()
            mean_curve = np.dot(w, c.loc[p["age"].to_numpy()[on], s].to_numpy()) / w.sum()
            assert mean_curve == pytest.approx(mean_model, rel=1e-12)
    # and inside a band it rises by exp(beta) a year
    assert c.loc[75, "1"] / c.loc[74, "1"] == pytest.approx(np.exp(0.04))


def test_a_band_without_people_of_one_sex_takes_both_sexes_mean():
    p = pd.DataFrame({"age": [62, 63, 75], "gender": ["1", "2", "2"], "weight": 1.0,
                      "cost": [100.0, 300.0, 500.0]})
    c = lt.claims_by_age([62, 75], p, beta=0.0).set_index("age")
    assert c.loc[75, "1"] == 500.0 and c.loc[62, "1"] == 100.0 and c.loc[62, "2"] == 300.0
    with pytest.raises(InputError, match="81\\+"):
        lt.claims_by_age([62, 85], p, beta=0.0)


def test_age_gradient_recovers_a_known_slope_within_bands():
    # payouts per person-year exp(0.05 (x - 60)) times a band level the offset carries:
    # the quasi-Poisson slope on (age - band mean) must find 0.05
    rng = np.random.default_rng(3)
    n = 200_000
    age = rng.integers(60, 100, n)
    gender = rng.choice(["1", "2"], n)
    mean = 300.0 * np.exp(0.05 * (age - 60))
    actual = rng.gamma(0.5, mean / 0.5)
    band = lt.band_of(age)
    expected = pd.Series(mean).groupby(band).transform("mean").to_numpy()  # flat in band
    g = lt.age_gradient(age, gender, actual, expected)
    assert abs(g["beta"] - 0.05) < 3 * g["se"] and g["se"] < 0.005
    assert g["table"]["people"].sum() == n


def test_cohort_of_one_sex_is_the_single_projection_and_sexes_add_per_policy_written():
    ages = np.arange(60, 66)
    claims = pd.DataFrame({"age": ages, "1": 100.0 * 1.1 ** (ages - 60), "2": 80.0})
    qd = pd.DataFrame({"age": ages, "1": 0.02 * 1.1 ** (ages - 60), "2": 0.01})
    ql = pd.DataFrame({"age": ages, "1": 0.05, "2": 0.03})
    g = 1.03 ** np.arange(6)
    men = lt.cohort(60, 65, 1.0, claims, qd, ql, 0.03, g, 0.5)
    ref = lp.projection(60, 65, lambda a: 100.0 * 1.1 ** (a - 60),
                        lambda a: 0.02 * 1.1 ** (a - 60), 0.0, 0.03, trend=0.03, claim_timing=0.5)
    # projection() has no lapse; with lapse zero the two must agree
    men0 = lt.cohort(60, 65, 1.0, claims, qd, ql.assign(**{"1": 0.0}), 0.03, g, 0.5)
    for col in ("in_force", "claims", "level_premium", "reserve"):
        np.testing.assert_allclose(men0[col], ref[col], rtol=1e-12)
    # lapse in the last year of cover is not charged (the cover ends anyway)
    assert men["lapse"].iloc[-1] == 0.0 and men["lapse"].iloc[0] == 0.05
    # by hand, year 1: l = .4 (1-.02)(1-.05) + .6 (1-.01)(1-.03); C = (.4 l_m 110 + .6 l_w 80) 1.03 / l
    mix = lt.cohort(60, 65, 0.4, claims, qd, ql, 0.03, g, 0.5)
    lm, lw = 0.98 * 0.95, 0.99 * 0.97
    assert mix["in_force"].iloc[1] == pytest.approx(0.4 * lm + 0.6 * lw)
    assert mix["claims"].iloc[1] == pytest.approx(
        (0.4 * lm * 110.0 + 0.6 * lw * 80.0) * 1.03 / (0.4 * lm + 0.6 * lw))
    # the level premium leaves no reserve at entry (before the first premium)
    assert mix["reserve"].iloc[0] == pytest.approx(0.0, abs=1e-9)


def test_lifetime_basis_checks_the_assumptions():
    assert lt.lifetime_basis({})["mortality"] == "table"
    for bad in ({"mortality": "cl3"}, {"lapse": 1.5}, {"lapse": "none"},
                {"improvement_scenarios": [1.2]}):
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
    f = run_price(product_path(ELDERLY), SAMPLE, out)
    return f, out


def test_price_gives_the_elderly_product_a_lifetime_price(elderly):
    f, out = elderly
    L = f["lifetime"]
    assert [e["entry_age"] for e in L["entry_ages"]] == [60, 65, 70, 75, 80]
    assert len(L["claims_by_age"]) == 41 and L["claims_by_age"][-1]["age"] == 100
    for e in L["entry_ages"]:
        # P = PVC / a, the reserve before the first premium is nil, gross = pure / 0.85
        assert e["level_pure_premium"] == pytest.approx(e["pv_claims"] / e["premium_annuity"],
                                                        rel=1e-4)
        assert e["reserve_by_year"][0] == pytest.approx(0.0, abs=0.01)
        assert len(e["reserve_by_year"]) == 101 - e["entry_age"]
        assert e["level_gross_premium"] == pytest.approx(e["level_pure_premium"] / 0.85, abs=0.01)
        # lower mortality keeps more people to the ages that cost most
        for m in e["mortality_improvement"]:
            assert m["change_without_lapse"] > 0
    assert [s["min_age"] for s in L["step_rated"]] == [60, 65, 70, 75, 80, 85, 90]
    assert L["basis"]["benefit_growth"]["year 0"] == 1.0
    assert L["basis"]["benefit_growth"]["year 40"] > 1.05 ** 40 * 0.9
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Lifetime price" in html and "Projection for entrants at 60" in html
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
    r = subprocess.run([sys.executable, "-m", "puhui", "price", "--product", ELDERLY,
                        "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                        "--assumptions", str(bad)], capture_output=True, text=True)
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
