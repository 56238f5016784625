"""The second synthetic city (puhui.synth.second): valid, deterministic, and with the
structure it claims (persistent frailty, a common factor, anti-selection, healthy lapse,
medical inflation), measured on its data."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from puhui.basis import actuarial_dir
from puhui.benefits.quantities import LineMatcher
from puhui.cli import cli
from puhui.icd import matches_prefixes
from puhui.products.model import load_product
from puhui.synth.second import calibration, load_params, second_city


def _year(s: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(s).year.to_numpy()


def _per_person_year(data, value: np.ndarray, years) -> pd.DataFrame:
    """persons x years table of sums of ``value`` over each person's settlements (0 when
    none), for the persons alive all through ``years``."""
    st = data.settlements
    df = pd.DataFrame({"psn": st["psn_no"].astype(str).to_numpy(),
                       "year": _year(st["setl_time"]), "v": value})
    t = df.groupby(["psn", "year"])["v"].sum().unstack(fill_value=0)
    dy = _year(data.persons["death_date"])
    alive = data.persons.loc[np.isnan(dy) | (dy > max(years)), "psn_no"].astype(str)
    return t.reindex(index=alive, columns=list(years), fill_value=0)


@pytest.fixture(scope="module")
def city():
    """20,000 people over 2024-2026 (about 3 s): enough stays for the statistical checks."""
    return second_city(20_000, 3, seed=2024)


def test_same_seed_same_city_and_another_seed_another():
    a = second_city(500, 2, seed=5)
    b = second_city(500, 2, seed=5)
    c = second_city(500, 2, seed=6)
    for name in ("persons", "policies", "settlements", "lines"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.settlements["medfee_sumamt"].equals(c.settlements["medfee_sumamt"])


def test_cli_city_is_valid_and_byte_identical(tmp_path):
    run = CliRunner()
    for d in ("a", "b"):
        r = run.invoke(cli, ["synth", "--generator", "second", "--persons", "3000",
                             "--years", "3", "--seed", "3", "--out", str(tmp_path / d)])
        assert r.exit_code == 0, r.output
    r = run.invoke(cli, ["validate", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    for f in ("persons", "policies", "settlements", "settlement_lines"):
        assert (tmp_path / "a" / f"{f}.parquet").read_bytes() == \
            (tmp_path / "b" / f"{f}.parquet").read_bytes(), f


def test_cli_refuses_dirty_with_the_second_generator(tmp_path, capsys):
    from puhui.cli import run

    code = run(["synth", "--generator", "second", "--dirty", "--persons", "10",
                "--years", "1", "--seed", "1", "--out", str(tmp_path / "x")])
    assert code == 2 and "--dirty" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_policies_are_the_huhuibao_line(city):
    pol = city.policies
    y = _year(pol["start_date"])
    assert set(y) == {2024, 2025, 2026}
    assert (pol["product_id"] == [f"huhuibao-{v}" for v in y]).all()
    assert (pol["premium"] == 129_00).all()
    assert (pol["start_date"].dt.strftime("%m-%d") == "01-01").all()
    assert (pol["end_date"].dt.strftime("%m-%d") == "12-31").all()
    assert pol["policy_no"].is_unique
    assert 0.75 < pol["consent"].mean() < 0.95


def test_preexisting_follows_the_product_definition(city):
    """Whoever had a settlement with a listed diagnosis in the look-back years of the
    data is flagged on every later policy (conditions persist, cancers count for the
    look-back); and the flag is not given to everybody."""
    prod = load_product(actuarial_dir() / "products" / load_params()["preexisting_product"])
    st, pol = city.settlements, city.policies
    listed = matches_prefixes(st["dise_code"], prod.preexisting_codes)
    sy = _year(st["setl_time"])
    for year in (2025, 2026):
        before = set(st.loc[listed & (sy < year) & (sy >= year - prod.preexisting_lookback_years),
                            "psn_no"].astype(str))
        p = pol[_year(pol["start_date"]) == year]
        had = p["psn_no"].astype(str).isin(before).to_numpy()
        assert had.sum() > 100
        assert p["preexisting"].to_numpy()[had].all()
    assert 0.02 < pol["preexisting"].mean() < 0.5


def test_special_drug_lines_are_items_the_product_pays_on(city):
    ln = city.lines
    matcher = LineMatcher(load_product(actuarial_dir() / "products" / "huhuibao-2025.toml"))
    special = ln[~ln["list_class"].astype(str).isin(["A", "B"])
                 & ~ln["hilist_code"].astype(str).str.startswith("SELF")]
    assert len(special) > 50
    assert special["hilist_code"].astype(str).isin(matcher.codes).all()
    # a purchase is one line with the whole bill
    st = city.settlements.set_index("setl_id")
    one = ln.groupby("setl_id").filter(lambda g: len(g) == 1)
    assert (one["amount"].to_numpy() == st.loc[one["setl_id"], "medfee_sumamt"].to_numpy()).all()


def test_frailty_persists_across_years(city):
    """A person's yearly cost is correlated across years (rank correlation)."""
    cost = _per_person_year(city, city.settlements["medfee_sumamt"].to_numpy(), (2024, 2025))
    r = cost[2024].rank().corr(cost[2025].rank())
    assert r > 0.4, r


def test_persistence_comes_from_the_ar1_frailty():
    """The same city with rho = 0 (frailty redrawn every year) has clearly less
    correlation of a person's stays across years: the structure is in the frailty."""
    P = load_params()
    Q = copy.deepcopy(P)
    Q["frailty"]["rho"] = 0.0

    def corr(params):
        d = second_city(15_000, 2, seed=9, params=params)
        stays = (d.settlements["med_type"].astype(str) == "21").to_numpy().astype(int)
        t = _per_person_year(d, stays, (2024, 2025))
        visits = (d.settlements["med_type"].astype(str) == "11").to_numpy().astype(int)
        v = _per_person_year(d, visits, (2024, 2025))
        return v[2024].corr(v[2025]), t[2024].corr(t[2025])
    (v_hi, s_hi), (v_lo, s_lo) = corr(P), corr(Q)
    assert v_hi > v_lo + 0.15, (v_hi, v_lo)
    assert s_hi > s_lo + 0.03, (s_hi, s_lo)


def test_inpatient_and_outpatient_use_are_correlated_per_person(city):
    st = city.settlements
    mt = st["med_type"].astype(str).to_numpy()
    stays = _per_person_year(city, (mt == "21").astype(int), (2024,))[2024]
    visits = _per_person_year(city, (mt == "11").astype(int), (2024,))[2024]
    assert stays.corr(visits) > 0.1
    # people with a stay make more general visits than people without
    assert visits[stays > 0].mean() > 1.3 * visits[stays == 0].mean()


def test_launch_year_enrollees_cost_more_than_others_of_their_age(city):
    """Anti-selection: in each age band the launch year's enrollees cost more per head
    (all their settlements of that year) than the eligible who did not enrol."""
    pol, per = city.policies, city.persons
    cost = _per_person_year(city, city.settlements["medfee_sumamt"].to_numpy() / 100,
                            (2024,))[2024]
    dy = _year(per["death_date"])
    p = per[np.isnan(dy) | (dy >= 2024)].set_index("psn_no")
    enrolled = p.index.isin(pol.loc[_year(pol["start_date"]) == 2024, "psn_no"])
    band = np.minimum((2024 - p["birth_year"].to_numpy()) // 20, 4)
    c = cost.reindex(p.index, fill_value=0).to_numpy()
    ratios = []
    for b in range(5):
        on, off = (band == b) & enrolled, (band == b) & ~enrolled
        assert on.sum() > 300 and off.sum() > 300
        ratios.append(c[on].mean() / c[off].mean())
    assert min(ratios) > 1.05, ratios
    assert np.mean(ratios) > 1.3, ratios


def test_the_healthy_lapse(city):
    """Renewal into 2025 is lower for 2024 enrollees without a stay in 2024."""
    pol, st = city.policies, city.settlements
    py = _year(pol["start_date"])
    y24 = set(pol.loc[py == 2024, "psn_no"].astype(str))
    y25 = set(pol.loc[py == 2025, "psn_no"].astype(str))
    dy = _year(city.persons["death_date"])
    alive = set(city.persons.loc[np.isnan(dy) | (dy >= 2025), "psn_no"].astype(str))
    stayed = set(st.loc[(_year(st["setl_time"]) == 2024)
                        & (st["med_type"].astype(str) == "21"), "psn_no"].astype(str))
    claim = (y24 & alive) & stayed
    no_claim = (y24 & alive) - stayed
    r_claim = len(claim & y25) / len(claim)
    r_none = len(no_claim & y25) / len(no_claim)
    assert r_none < r_claim - 0.08, (r_none, r_claim)


def test_rates_are_in_the_stated_ranges(city):
    cal = calibration(city).set_index("year")
    assert 0.33 <= cal.loc[2024, "take_up"] <= 0.42
    assert 0.58 <= cal.loc[2025, "renewal"] <= 0.72
    assert 0.58 <= cal.loc[2026, "renewal"] <= 0.72
    assert 0.025 <= cal.loc[2025, "entry"] <= 0.07
    assert (cal["stays_per_1000"].between(120, 260)).all()
    # the insured cost more than the population: selection
    assert (cal["cost_per_policy"] > cal["cost_per_person"]).all()


def test_severity_rises_by_the_inflation(city):
    """Mean log cost per stay (and per general visit) rises by log(1 + inflation) a year,
    within sampling error (the mixture's weights do not change)."""
    infl = load_params()["costs"]["inflation"]
    st = city.settlements
    y = _year(st["setl_time"])
    mt = st["med_type"].astype(str).to_numpy()
    cancer = st["dise_code"].astype(str).str.startswith("C").to_numpy()
    logc = np.log(st["medfee_sumamt"].to_numpy(dtype="float64"))
    for kind, tol in (("21", 0.06), ("11", 0.02)):
        sel = (mt == kind) & ~cancer
        m = {yr: logc[sel & (y == yr)].mean() for yr in (2024, 2025, 2026)}
        step = (m[2026] - m[2024]) / 2
        assert abs(step - math.log(1 + infl)) < tol, (kind, step)
