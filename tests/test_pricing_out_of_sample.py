"""Pricing out of sample (issue 18): enrolment as it happens, the equilibrium premium,
the priced period, and the backtest.

Reference values: hand-worked (the two-cell equilibrium, the trend period), an
independent code path (the backtest's realised cost against the claims batch, which
pays the data's real policies through the ledger), and the data's own counts.
"""

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puhui.fund.files import POLICIES, read_raw, write_fund
from puhui.pricing.enrolment import ConstantRate, EnrolmentModel
from puhui.pricing.premium import _equilibrium, priced_period, trend_years
from puhui.products.model import load_product, product_path

# the commands in this process (conftest.puhui): what they compute and say
from conftest import puhui as run  # noqa: E402


def _three_years(n=30_000, seed=1):
    """Launch take-up 40 %, renewal 70 %, later entry 5 %, over 2024-2026."""
    rng = np.random.default_rng(seed)
    base = pd.DataFrame({"psn_no": np.arange(n).astype(str), "age_band": "31-40",
                         "gender": "1", "insutype": "310", "preexisting_seen": 0,
                         "prior_stay": 0})
    e = rng.random(n) < 0.40
    years = [base.assign(year=2024, enrolled=e)]
    for y in (2025, 2026):
        e = np.where(e, rng.random(n) < 0.70, rng.random(n) < 0.05)
        years.append(base.assign(year=y, enrolled=e))
    return pd.concat(years, ignore_index=True)


def test_launch_take_up_is_not_pooled_with_later_entry():
    m = EnrolmentModel(lookback_years=1).fit(_three_years())
    assert m.launch_year_ == 2024 and m.launch_rate_ == pytest.approx(0.40, abs=0.01)
    assert m.entry_rate_ == pytest.approx(0.05, abs=0.005)       # not 2024's 40 % pooled in
    assert m.renewal_rate_ == pytest.approx(0.70, abs=0.01)
    assert m.fit_years_ == [2025, 2026] and m.lookback_years_ == 1


def test_fits_use_only_years_with_the_full_look_back_when_the_data_has_them():
    f = _three_years()
    assert EnrolmentModel(lookback_years=2).fit(f).fit_years_ == [2026]
    short = EnrolmentModel(lookback_years=3).fit(f)            # none has 3: all but the first
    assert short.fit_years_ == [2025, 2026] and short.lookback_years_ == 1


def test_first_data_year_is_look_back_for_enrolled_and_others_alike():
    """In the sample's first year nobody has history; in 2025 the product's rule finds
    pre-existing conditions among the people without a policy too, by the same rule as
    among the enrolled (the policy flag plays no part in ``preexisting_seen``)."""
    from puhui.pricing.experience import experience
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions

    p = load_product(product_path("huhuibao-2025"))
    data = load_for_pricing("data-samples/city", p, load_assumptions()[0])
    py = experience(p, data)
    first, second = py[py["year"] == 2024], py[py["year"] == 2025]
    assert not first["preexisting_seen"].any()
    seen = second.groupby("enrolled")["preexisting_seen"].mean()
    assert seen[False] > 0.01 and seen[True] > 0.01
    # the enrolled's flag differs from the rule (it is the insurer's): not what is read
    enr = second[second["enrolled"]]
    assert (enr["preexisting"] != enr["preexisting_seen"]).any()


def test_equilibrium_premium_two_cells_by_hand():
    """Healthy: 100 people, cost 50, odds of joining moved by -2 log(P/100) from 1:1
    (take-up 1 / (1 + (P/100)^2)); sick: 10 people, cost 800, price-insensitive, half
    join. At P = 200: 100 / 5 = 20 healthy and 5 sick, (20 x 50 + 5 x 800) / 25 = 200
    = P, target 1. Below 200 the mix costs more than the price (P = 100: 50 healthy,
    (2,500 + 4,000) / 55 = 118.2)."""
    m = EnrolmentModel()
    m.entry_, m.renewal_, m.launch_ = ConstantRate(0.5), ConstantRate(0.5), None
    cells = pd.DataFrame({"preexisting": [0, 1], "prior_stay": [0, 0]})
    eq = _equilibrium(m, cells, np.array([100.0, 10.0]), np.array([0.0, 0.0]),
                      np.array([50.0, 800.0]), p_ref=100.0, target=1.0,
                      en={"beta_healthy": -2.0, "beta_other": 0.0}, draw_factors=None,
                      quantiles=(0.05, 0.95))
    assert eq["premium"] == pytest.approx(200.0, abs=0.01)
    assert eq["policies"] == 25


def test_priced_period_is_the_year_the_mix_is_projected_to():
    p = load_product(product_path("huhuibao-2025"))
    start, end, note = priced_period(p, 2025)       # the product's year is in the data
    assert (start, end) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31)) and "2026" in note
    assert priced_period(p, 2024)[:2] == (p.start, p.end) and priced_period(p, 2024)[2] is None
    # equal exposure in 2024 and 2025 (mid-point 2025.0) to mid-2026: 1.5 years
    assert trend_years(start, end, np.array([2024, 2025]), np.array([1.0, 1.0])) == \
        pytest.approx(1.5, abs=0.002)


@pytest.fixture(scope="module")
def backtested(backtested_small_city):
    """`puhui backtest` of huhuibao-2025 on (a copy of) the small city (conftest, shared
    with test_price_backtest.py)."""
    return backtested_small_city


def test_backtest_writes_the_contract_fields(backtested):
    out, r = backtested
    b = json.loads((out / "backtest.json").read_text())
    (y,) = b["years"]
    assert y["year"] == 2025 and y["data_years"] == [2024]
    for k in ("priced_pure_premium", "realised_cost", "ae"):
        assert "total" in y[k]
    assert isinstance(y["policies_predicted"], int) and isinstance(y["policies_actual"], int)
    assert y["ae"]["total"] == pytest.approx(y["realised_cost"]["total"]
                                             / y["priced_pure_premium"]["total"], abs=1e-3)
    assert "<table" in (out / "report.html").read_text() and "Traceback" not in r.stderr


def test_backtest_flags_a_year_priced_from_the_launch_year_alone(backtested):
    """2025 is priced from 2024 alone, the launch: the row says so, and the report
    loudly."""
    out, _ = backtested
    b = json.loads((out / "backtest.json").read_text())
    (y,) = b["years"]
    assert y["launch_year_projection"] is True
    assert y["enrolment"]["mode"] == "launch take-up with renewal assumed"
    assert "launch year (2024) alone" in y["launch_year_note"]
    assert "actuarial/assumptions/enrolment.toml" in y["launch_year_note"]
    assert b["summary"]["launch_year_projections"] == [2025]
    html = (out / "report.html").read_text()
    assert 'class="loud"' in html
    assert "[A] launch-year projection</h2>" in html


def test_backtest_reprices_a_launch_year_row_at_the_size_its_year_shows(backtested):
    """The row priced from the launch year alone is re-priced at the year-2 size the
    year shows (actual policies / launch policies): its expected policies are then the
    actual ones (the size is what fills the mix; up to the rounding of the counts), its
    A/E is the realised cost over that price, and the report and the line say it."""
    out, r = backtested
    b = json.loads((out / "backtest.json").read_text())
    (y,) = b["years"]
    z, a = y["at_realised_year2"], y["enrolment"]["assumed"]
    assert z["year2_to_launch"] == pytest.approx(y["policies_actual"] / a["launch_policies"],
                                                 abs=5e-5)
    assert z["policies"] == pytest.approx(max(y["policies_actual"], a["renewals"]), abs=1.5)
    assert z["ae"] == pytest.approx(y["realised_cost"]["total"] / z["pure_premium"], abs=1e-3)
    # the borrowed size's own row is the price itself
    own = [s for s in a["year2_sensitivity"] if s["year2_to_launch"] == a["year2_to_launch"]]
    assert own[0]["pure_premium"] == y["priced_pure_premium"]["total"]
    assert "At the year-2 size this year shows" in (out / "report.html").read_text()
    assert "at the year-2 size the year shows" in r.stdout


def test_backtest_sets_the_years_renewals_beside_the_borrowed_ones(backtested, small_city_dir):
    """The re-priced launch-year row still holds the borrowed renewal by health, so it
    carries the year's renewals (2025 policyholders with a 2024 policy, counted here
    from the policies file with plain sets) beside the expected ones; the report says
    so, and backtest.xlsx has the row's figures (review 18, session 21)."""
    from puhui.excel import backtest_sheets

    out, _ = backtested
    b = json.loads((out / "backtest.json").read_text())
    (y,) = b["years"]
    z = y["at_realised_year2"]
    pol = read_raw(small_city_dir, POLICIES)
    yr = pol["start_date"].dt.year
    both = set(pol.loc[yr == 2024, "psn_no"]) & set(pol.loc[yr == 2025, "psn_no"])
    assert z["renewals_actual"] == len(both) > 0
    assert z["entrants_actual"] == y["policies_actual"] - len(both)
    assert z["fills_size"] == "yes"
    html = (out / "report.html").read_text()
    assert f"{len(both):,} in the year" in html and "renewal by health included" in html
    (_, header, rows, _), *_ = backtest_sheets(b)
    row = dict(zip(header, rows[0]))
    assert row["year-2 size the year shows [A]"] == z["year2_to_launch"]
    assert row["A/E at that size"] == z["ae"] and row["renewals sold"] == len(both)
    assert row["pure premium at that size, yuan"] == z["pure_premium"]


def _launch_row(**z):
    return {"year": 2025, "terms": "t", "data_years": [2024],
            "priced_pure_premium": {"total": 10.0}, "realised_cost": {"total": 11.0},
            "ae": {"total": 1.1}, "policies_predicted": 880, "policies_actual": 500,
            "policies_ae": 0.568, "interval": {"level": 0.9, "lower": 1, "upper": 20,
                                               "covers": True},
            "parameter_interval": {"lower": 9, "upper": 11}, "notes": [],
            "launch_year_projection": True, "launch_year_note": "n",
            "at_realised_year2": {"year2_to_launch": 0.5, "policies": 669.0,
                                  "renewals": 669.0, "entrants": 0.0, "pure_premium": 12.0,
                                  "ae": 0.917, "policies_ae": 0.747, "renewals_actual": 300,
                                  "entrants_actual": 200, **z}}


@pytest.mark.parametrize("fills, says, zh", [
    ("renewals above", "The borrowed renewals alone (669)", "仅借用的续保件数（669）"),
    ("entry capped", "Later entry at its cap", "后续新增参保已达上限")])
def test_backtest_does_not_blame_the_size_alone_when_the_mix_cannot_hold_it(fills, says, zh):
    """Where the borrowed renewals alone exceed the year's policies, or later entry at
    its cap falls short of them, the re-priced row's policies are not the year's: the
    report and the reading say what misses instead of "the borrowed size's" error."""
    from puhui.pricing.backtest import render
    from puhui.pricing.run import backtest_reading

    row = _launch_row(fills_size=fills)
    result = {"products": ["p"], "data_years": [2024, 2025], "seed": 0, "years": [row],
              "summary": {"launch_year_projections": [2025]}, "notes": []}
    html = render(result)
    assert says in html and "the borrowed size's" not in html
    assert "At the year-2 size this year shows" in html and "669 policies" in html
    assert zh in render(result, lang="zh") and "Later entry" not in render(result, lang="zh")
    reading = backtest_reading(row)
    assert "669 policies, not 500" in reading and "made the policies' error" not in reading


def test_backtest_leaves_no_english_in_the_re_priced_rows_reading_in_zh():
    """The reading of each case of the re-priced launch-year row has a Chinese form."""
    from puhui.pricing.run import backtest_reading
    from puhui.reporting import gettext_for
    from puhui.reporting.notes import translate_note

    from test_reports import english_runs

    for fills in ("yes", "renewals above", "entry capped"):
        text = backtest_reading(_launch_row(fills_size=fills))
        zh = translate_note(text, "zh", gettext_for("zh"))
        assert english_runs(f"<p>{zh}</p>") == [] and "按 2025 年实际的第二年规模" in zh, (fills, zh)
        figures = re.findall(r"\d[\d,.]*\d|\d", text)
        assert all(f in zh for f in figures), (fills, figures, zh)


def test_backtest_reprices_nothing_for_a_year_without_policies():
    """No policy in the year: nothing to re-price at (no size of 0, no A/E)."""
    from puhui.pricing.backtest import at_realised_year2

    class Never:
        def at(self, size):
            raise AssertionError("re-priced a year without policies")

    assert at_realised_year2(Never(), {"assumed": {"launch_policies": 100}}, 0, None, 0) is None


def test_backtest_report_is_quiet_for_rows_with_a_renewal_year():
    from puhui.pricing.backtest import render

    row = {"year": 2026, "terms": "t", "data_years": [2024, 2025],
           "priced_pure_premium": {"total": 10.0}, "realised_cost": {"total": 11.0},
           "ae": {"total": 1.1}, "policies_predicted": 5, "policies_actual": 5,
           "policies_ae": 1.0, "interval": {"level": 0.9, "lower": 1, "upper": 20,
                                            "covers": True},
           "parameter_interval": {"lower": 9, "upper": 11}, "notes": [],
           "launch_year_projection": False}
    html = render({"products": ["p"], "data_years": [2024, 2025, 2026], "seed": 0,
                   "years": [row], "summary": {"launch_year_projections": []}, "notes": []})
    assert 'class="loud"' not in html and "launch-year projection</h2>" not in html


def test_backtest_realised_cost_equals_what_the_claims_batch_pays(backtested, small_city_dir,
                                                                   tmp_path):
    """The realised cost is the calculator on the enrolled's settlements; the claims
    batch pays the same policies through the ledger (another code path)."""
    out, _ = backtested
    b = json.loads((out / "backtest.json").read_text())
    r = run("claims", "run", "--product", "huhuibao-2025", "--data", str(small_city_dir),
            "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b1",
            "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert b["years"][0]["realised_paid_total"] == pytest.approx(s["ledger_entries_yuan"],
                                                                 abs=0.005)
    pol = read_raw(small_city_dir, POLICIES)
    assert b["years"][0]["policies_actual"] == int((pol["start_date"].dt.year == 2025).sum())


def test_backtest_refuses_one_data_year(small_city_dir, tmp_path):
    d = _subset(small_city_dir, tmp_path, years=[2025])
    r = run("backtest", "--product", "huhuibao-2025", "--data", str(d), "--out",
            str(tmp_path / "o"))
    assert r.returncode == 2 and "at least two" in r.stderr and "Traceback" not in r.stderr


def _subset(small_city_dir, tmp_path, keep_people=None, years=None):
    from puhui.fund.files import read_fund

    d = read_fund(small_city_dir)
    if years:
        d.settlements = d.settlements[d.settlements["setl_time"].dt.year.isin(years)]
        d.policies = d.policies[d.policies["start_date"].dt.year.isin(years)]
    if keep_people is not None:
        d.persons = d.persons[d.persons["psn_no"].isin(keep_people)]
        for t in ("settlements", "policies"):
            setattr(d, t, getattr(d, t)[getattr(d, t)["psn_no"].isin(keep_people)])
    d.lines = d.lines[d.lines["setl_id"].isin(d.settlements["setl_id"])]
    out = tmp_path / "data"
    write_fund(d, out)
    return out


def _price(data, tmp_path):
    out = tmp_path / "priced"
    r = run("price", "--product", "huhuibao-2025", "--data", str(data), "--out", str(out),
            "--no-backtest")
    assert r.returncode == 0, r.stderr
    return json.loads((out / "pricing.json").read_text())


def test_price_on_a_launch_year_alone_borrows_renewal_by_health(small_city_dir, tmp_path):
    """A single data year (the launch): no renewal to fit, so next year's mix is the
    launch's enrollees x the assumed renewal by health plus later entrants up to the
    assumed year-2 size, with a note naming the file and figures, [A] in the report."""
    f = _price(_subset(small_city_dir, tmp_path, years=[2025]), tmp_path)
    e = f["enrolment"]
    assert e["mode"] == "launch take-up with renewal assumed" and f["data"]["years"] == [2025]
    a = e["assumed"]
    assert a["file"] == "actuarial/assumptions/enrolment.toml"
    assert (a["renewal_healthy"], a["renewal_sick"]) == (0.3873, 0.8944)
    # the year-2 size: 0.880 x the launch's policies, renewals + entrants
    assert f["policies"] == pytest.approx(0.88 * a["launch_policies"], abs=1)
    assert a["renewals"] + a["entrants"] == pytest.approx(f["policies"], abs=2)
    assert a["renewals"] < a["launch_policies"] * a["renewal_sick"]
    assert a["sick_share_next"] > a["sick_share_launch"]        # the healthy lapse
    note = [n for n in f["notes"] if "borrowed renewal" in n]
    assert note and "actuarial/assumptions/enrolment.toml" in note[0] and "0.3873" in note[0]
    # the same price at other year-2 sizes: the policies are max(renewals, size x launch)
    # (the summary's own counts, not the function's), the size priced gives the price
    sens = {r["year2_to_launch"]: r for r in a["year2_sensitivity"]}
    # the range's own source, tagged, as every borrowed figure's
    assert a["sources"]["year2_sensitivity"].startswith("[assumption]")
    assert set(sens) == {0.6, 0.7, 0.8, 0.88, 0.9, 1.0}
    assert sens[0.88]["pure_premium"] == f["pure_premium"]["total"]
    for size, r in sens.items():
        assert r["policies"] == pytest.approx(max(a["renewals"], size * a["launch_policies"]),
                                              abs=1.5), size
        assert r["renewals"] == pytest.approx(a["renewals"], abs=1)
    html = (tmp_path / "priced" / "report.html").read_text()
    assert "The same price at other year-2 sizes" in html and "0.600 x launch" in html
    assert "policies priced for (expected enrolment next year) [A]" in html
    assert "launch take-up with renewal assumed" in html and "Equilibrium gross premium [A]" in html
    # premium.xlsx carries the same rows, each figure in a cell of its own (read back
    # without openpyxl), the size priced marked and the range's source last
    from tests.test_excel import read_xlsx

    sheet = read_xlsx(tmp_path / "priced" / "premium.xlsx")["year-2 sensitivity"]
    assert [r[:7] for r in sheet[1:-1]] == [
        [r["year2_to_launch"], "yes" if r["year2_to_launch"] == a["year2_to_launch"] else None,
         r["policies"], r["renewals"], r["entrants"], r["pure_premium"], r["fills_size"]]
        for r in a["year2_sensitivity"]]
    assert sheet[-1] == [f"source: {a['sources']['year2_sensitivity']}"]


def test_price_on_a_data_set_with_a_renewal_year_reads_no_assumed_renewal(priced_small_city):
    _, out, _ = priced_small_city       # `puhui price` on the small city (conftest, shared)
    f = json.loads((out / "pricing.json").read_text())
    assert f["enrolment"]["mode"] == "renewal and later entry" and "assumed" not in f["enrolment"]
    assert "[A] The data ends" not in (out / "report.html").read_text()


def test_price_on_insured_only_data_prices_the_book_as_it_is(small_city_dir, tmp_path):
    from puhui.fund.files import read_fund

    fund = read_fund(small_city_dir)
    pol = fund.policies
    insured = set(pol["psn_no"].astype(str))
    f = _price(_subset(small_city_dir, tmp_path, keep_people=insured), tmp_path)
    assert f["enrolment"]["mode"] == "insured book as it is"
    assert f["enrolment"]["insured_only"] is True
    # next year's book: 2025's policyholders who lived through 2025 (all within the
    # product's ages next year: it has no age limit)
    died = set(fund.persons.loc[fund.persons["death_date"].dt.year == 2025, "psn_no"].astype(str))
    book = pol[(pol["start_date"].dt.year == 2025) & ~pol["psn_no"].astype(str).isin(died)]
    assert (pol["start_date"].dt.year == 2025).sum() > len(book) > 0     # the test bites
    assert f["policies"] == len(book)
    assert "spiral" not in f and "equilibrium" not in f


def test_claim_free_history_is_judged_by_what_policies_paid_under_their_own_terms(
        small_city_dir, tmp_path):
    """The 2024 policies ran under huhuibao-2024 (deductible 15,000): what they paid is
    what the claims batch pays them under that product, not 2025's as-if payouts."""
    from puhui.pricing.enrolment import paid_under_own_terms
    from puhui.pricing.experience import experience
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions

    p = load_product(product_path("huhuibao-2025"))
    data = load_for_pricing(small_city_dir, p, load_assumptions()[0])
    exp = experience(p, data)
    own, notes = paid_under_own_terms(p, data, exp)
    as_if = sum(exp[f"payout_{b.id}"].to_numpy() for b in p.benefits)
    y24 = (exp["year"] == 2024).to_numpy()
    r = run("claims", "run", "--product", "huhuibao-2024", "--data", str(small_city_dir),
            "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b24",
            "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    enr24 = y24 & exp["enrolled"].to_numpy()
    assert own[enr24].sum() / 100 == pytest.approx(s["ledger_entries_yuan"], abs=0.005)
    assert own[enr24].sum() < as_if[enr24].sum()            # deductible 15,000 > 12,000
    assert np.array_equal(own[y24 & ~enr24], as_if[y24 & ~enr24])   # no policy: as-if
    assert np.array_equal(own[~y24], as_if[~y24]) and notes == []


def test_a_launch_after_the_first_data_year_is_not_fitted_as_later_entry():
    f = _three_years()
    f.loc[f["year"] == 2024, "enrolled"] = False        # the product starts in 2025
    m = EnrolmentModel(lookback_years=1).fit(f)
    assert m.launch_year_ == 2025 and m.fit_years_ == [2026]
    assert m.entry_rate_ < 0.10                          # 2025's take-up is the launch's


def test_rated_cells_by_hand():
    """Two premium cells. 60-69 (filed 100 yuan) holds 10 healthy people of cost 50 whose
    odds answer the price by -2 log(P / 100): at the filed price half join (5 policies,
    loss ratio 50 / 100); the equilibrium is P = 50 (the cell's cost does not move with
    the mix), where the odds are 1 x 2^2 = 4: 8 of 10 join. 70-100 (filed 200) holds 10
    people with a condition, cost 300, price-insensitive: 5 policies, loss ratio 1.5,
    equilibrium 300."""
    import dataclasses

    from puhui.pricing.premium import _rated_cells
    from puhui.products.model import PremiumCell

    p = dataclasses.replace(load_product(product_path("elderly-medical-60-80")),
                            premium_cells=(PremiumCell(60, 69, None, 10_000),
                                           PremiumCell(70, 100, None, 20_000)))
    m = EnrolmentModel()
    m.entry_, m.renewal_, m.launch_ = ConstantRate(0.5), ConstantRate(0.5), None
    cells = pd.DataFrame({"preexisting": [0, 1], "prior_stay": [0, 0]})
    cur = pd.DataFrame({"age": [65] * 10 + [75] * 10, "preexisting": [0] * 10 + [1] * 10,
                        "enrolled": False})
    got = _rated_cells(p, m, cur, np.array([0] * 10 + [1] * 10), cells,
                       np.array([50.0, 300.0]), p_ref=100.0, target=1.0,
                       en={"beta_healthy": -2.0, "beta_other": 0.0})
    assert [(r["people"], r["policies_at_filed"], r["loss_ratio_at_filed"]) for r in got] == \
        [(10, 5.0, 0.5), (10, 5.0, 1.5)]
    assert got[0]["equilibrium_premium"] == pytest.approx(50.0, abs=0.01)
    assert got[0]["policies_at_equilibrium"] == 8
    assert got[1]["equilibrium_premium"] == pytest.approx(300.0, abs=0.01)


def test_the_build_up_steps_read_and_set_what_their_docstrings_say(small_city_dir,
                                                                  small_city_figures):
    """price() is the steps of BUILD_UP in order; each docstring's "Reads ...; sets ..."
    is kept true: what a step reads was set before it, what it says it sets is there
    after it, and the steps give the figures price() gives."""
    import re

    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import BUILD_UP, BuildUp, load_assumptions

    p = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    s = BuildUp(p, load_for_pricing(small_city_dir, p, a), a, seed=3)
    for step in BUILD_UP:
        m = re.search(r"Reads (.*?); sets (.*?)\.\"*$", " ".join(step.__doc__.split()))
        reads = [x.strip() for x in m.group(1).split(",")]
        sets = [] if m.group(2) == "nothing" else [x.strip() for x in m.group(2).split(",")]
        missing = [x for x in reads if not hasattr(s, x)]
        assert not missing, f"{step.__name__} reads {missing} before any step sets them"
        step(s)
        assert all(hasattr(s, x) for x in sets), step.__name__
    # price(p, load_for_pricing(small_city_dir, p, a), a, seed=3), shared (conftest)
    whole = small_city_figures
    assert json.dumps(s.figures, sort_keys=True) == json.dumps(whole, sort_keys=True)


def test_long_run_enrolment_is_the_stationary_state_by_hand():
    """Entry 0.1, renewal 0.6: the share enrolled settles where inflow = outflow,
    0.9 x ... : pi = 0.1 / (1 - 0.6 + 0.1) = 0.2; from 0 enrolled the chain gets there."""
    m = EnrolmentModel()
    m.entry_, m.renewal_, m.launch_ = ConstantRate(0.1), ConstantRate(0.6), None
    cells = pd.DataFrame({"x": [0]})
    assert m.stationary(cells, np.array([1000.0]))[0] == pytest.approx(200.0)
    state = np.array([0.0])
    for _ in range(60):
        state = m.transition(cells, state, np.array([1000.0]))
    assert state[0] == pytest.approx(200.0, rel=1e-6)


def test_an_equilibrium_with_nobody_insured_is_none():
    m = EnrolmentModel()
    m.entry_, m.renewal_, m.launch_ = ConstantRate(0.5), ConstantRate(0.5), None
    cells = pd.DataFrame({"preexisting": [0], "prior_stay": [0]})
    # one person, cost 50: the fixed point is P = 50, where the odds are 1 x 2^2 = 4, so
    # 0.8 of a policy (first year, and long run: 0.8 / (1 - 0.8 + 0.8)): no market
    eq = _equilibrium(m, cells, np.array([1.0]), np.array([0.0]), np.array([50.0]), 100.0, 1.0,
                      {"beta_healthy": -2.0, "beta_other": 0.0}, None, (0.05, 0.95))
    assert eq["premium"] is None and eq["long_run"]["premium"] is None
    more = _equilibrium(m, cells, np.array([10.0]), np.array([0.0]), np.array([50.0]), 100.0,
                        1.0, {"beta_healthy": -2.0, "beta_other": 0.0}, None, (0.05, 0.95))
    assert more["premium"] == pytest.approx(50.0, abs=0.01) and more["policies"] == 8


@pytest.mark.parametrize("beta", [0.5, -80, "x", True])
def test_a_price_response_of_the_wrong_sign_or_size_is_refused(tmp_path, beta):
    from puhui.basis import actuarial_dir
    from puhui.errors import InputError
    from puhui.pricing.premium import load_assumptions

    text = (actuarial_dir() / "assumptions" / "pricing.toml").read_text(encoding="utf-8")
    bad = tmp_path / "a.toml"
    value = f'"{beta}"' if isinstance(beta, str) else str(beta).lower()
    bad.write_text(text.replace("beta_healthy = -2.0", f"beta_healthy = {value}"),
                   encoding="utf-8")
    with pytest.raises(InputError, match="beta_healthy"):
        load_assumptions(bad)


def test_no_one_left_for_next_year_is_refused_with_exit_2(small_city_dir, tmp_path):
    """Every person dead in the last data year: nobody to hold next year's policy (the
    hostile review found an IndexError deep in the budget impact). They die on 31
    December: a whole year lived, and still out of next year's book (a death on the
    last day once counted as alive at the year's end)."""
    from puhui.fund.files import read_fund

    d = read_fund(small_city_dir)
    d.persons["death_date"] = pd.Timestamp("2025-12-31")
    st = d.settlements[d.settlements["setl_time"] < pd.Timestamp("2026-01-01")]
    st = st[st["refund_of"].isna() | st["refund_of"].isin(st["setl_id"])]
    d.settlements = st
    d.lines = d.lines[d.lines["setl_id"].isin(st["setl_id"])]
    write_fund(d, tmp_path / "dead")
    r = run("price", "--product", "huhuibao-2025", "--data", str(tmp_path / "dead"),
            "--out", str(tmp_path / "o"), "--no-backtest")
    assert r.returncode == 2, r.stderr
    assert "no one of the data's last year (2025)" in r.stderr and "Traceback" not in r.stderr


def test_a_balance_setting_that_is_not_a_finite_number_or_a_table_is_refused(small_city_dir,
                                                                              tmp_path):
    base = Path("actuarial/assumptions/pricing.toml").read_text(encoding="utf-8")
    f = tmp_path / "a.toml"
    for bad, says in (("full_credibility_events = inf", "full_credibility_events = inf"),
                      ("full_credibility_events = 1e400", "full_credibility_events = inf"),
                      ("model_bias_sd = 0", "model_bias_sd = 0"),
                      ("model_bias_sd = -0.1", "model_bias_sd = -0.1"),
                      ("model_bias_sd = nan", "model_bias_sd = nan"),
                      ('model_bias_sd = "0.15"', "model_bias_sd = '0.15'"),
                      ("model_bias_sd = 1e-200", "model_bias_sd = 1e-200"),
                      ("full_credibility_events = 1e308", "full_credibility_events = 1e+308"),
                      ("model_bias_sd = 0.15\nfull_credibility_events = 1082", "give one")):
        f.write_text(base.replace("model_bias_sd = 0.15", bad), encoding="utf-8")
        r = run("price", "--product", "huhuibao-2025", "--data", str(small_city_dir),
                "--out", str(tmp_path / "o"), "--assumptions", str(f))
        assert r.returncode == 2 and says in r.stderr, (bad, r.stderr)
    f.write_text("balance = 3\n" + base.replace("[balance]\n", "[unused]\n"), encoding="utf-8")
    r = run("price", "--product", "huhuibao-2025", "--data", str(small_city_dir),
            "--out", str(tmp_path / "o"), "--assumptions", str(f))
    assert r.returncode == 2 and "[balance] must be a table" in r.stderr, r.stderr


def test_balance_by_hand():
    """Bühlmann: Z = n / (n + (1 + cv^2) / tau^2), factor = Z A/E + 1 - Z, recomputed
    from the group's paid person-years in a plain loop; the limited-fluctuation rule
    when the basis asks for it."""
    import math

    from puhui.pricing.balance import BalanceRule, balance

    class Flat:                               # a model expecting 100 yuan a person-year
        level_ = 1.0

        def moments(self, combos, terms):
            return np.full(len(combos), 100.0), np.full(len(combos), 1e4)

    paid = [0, 0, 30000, 0, 12000, 0, 0, 250000, 0, 9000] * 3     # fen
    frame = pd.DataFrame({"exposure": [1.0] * 30, "payout_h": paid})
    cells = (pd.DataFrame({"c": [0]}), np.zeros(30, dtype="int64"))
    m = Flat()
    fig = balance(m, None, frame, ["h"], cells, rule=BalanceRule("buhlmann", 0.15))
    yuan = [p / 100 for p in paid if p > 0]
    n, mean = len(yuan), sum(yuan) / len(yuan)
    cv = math.sqrt(sum((y - mean) ** 2 for y in yuan) / n) / mean     # population sd
    z = n / (n + (1 + cv * cv) / 0.15 ** 2)
    ae = sum(yuan) / (100.0 * 30)
    assert fig["claims"] == 12 and fig["Z"] == pytest.approx(z, abs=1e-4)
    assert m.level_ == pytest.approx(z * ae + 1 - z, rel=1e-12)
    assert fig["half_credibility_claims"] == pytest.approx((1 + cv * cv) / 0.0225, abs=0.05)
    balance(m, None, frame, ["h"], cells, rule=BalanceRule("limited_fluctuation", 1082))
    zl = min(1.0, math.sqrt(n / (1082 * (1 + cv * cv))))
    assert m.level_ == pytest.approx(zl * ae + 1 - zl, rel=1e-12)


def test_data_years_with_a_gap_are_refused_with_exit_2(tmp_path):
    """History (a stay the year before, the look-back) and renewal read the year before:
    a missing middle year is refused, not priced as if the years touched (the hostile
    review found a KeyError)."""
    from puhui.synth.city import synth_city

    d = synth_city(600, 3, seed=11)
    years = sorted(d.settlements["setl_time"].dt.year.unique())
    st = d.settlements[d.settlements["setl_time"].dt.year != years[1]]
    d.settlements = st[st["refund_of"].isna() | st["refund_of"].isin(st["setl_id"])]
    d.lines = d.lines[d.lines["setl_id"].isin(d.settlements["setl_id"])]
    d.policies = d.policies[d.policies["start_date"].dt.year != years[1]]
    write_fund(d, tmp_path / "gap")
    r = run("price", "--product", "huhuibao-2025", "--data", str(tmp_path / "gap"),
            "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    assert f"({years[1]} missing)" in r.stderr and "Traceback" not in r.stderr


def test_realised_cost_pays_renewals_at_their_claim_free_deductible(tmp_path):
    """A renewal year's realised cost uses each policy's claim-free years, judged on the
    earlier years under their own products' terms (Huhuibao 2025: 12,000, 11,000 after 2
    claim-free years): three yearly batches into one ledger (the ledger's own
    claim-free history, another code path) book the same payouts to the fen and the
    same count of policies at each number of claim-free years."""
    d = tmp_path / "c3"
    r = run("synth", "--persons", "3000", "--years", "3", "--seed", "5", "--start-year",
            "2023", "--out", str(d))
    assert r.returncode == 0, r.stderr
    s, real = _batches_and_realised(d, tmp_path, [2023, 2024, 2025])
    assert real["claim_free_policies"] == s["claim_free_years"]["policies_by_years"]
    assert int(real["claim_free_policies"].get("2", 0)) > 100      # the step is reached
    assert real["paid_total"] == pytest.approx(s["ledger_entries_yuan"], abs=0.005)


def test_the_enrolled_selection_by_hand():
    """The enrolled's level on top of the population's balance: A/E of the enrolled's
    as-if paid against the balanced model, Bühlmann Z on their paid years, a plain loop;
    nothing when everyone (or no one) was enrolled."""
    import math

    from puhui.pricing.balance import BalanceRule, balance, enrolled_selection

    class Flat:
        level_ = 1.0

        def moments(self, combos, terms):
            return np.full(len(combos), 100.0 * self.level_), np.full(len(combos), 1e4)

    paid = [0, 0, 30000, 0, 12000, 0, 0, 250000, 0, 9000] * 3     # fen
    enrolled = [True, False, True, False, False, False, True, True, False, False] * 3
    frame = pd.DataFrame({"exposure": [1.0] * 30, "payout_h": paid, "enrolled": enrolled})
    cells = (pd.DataFrame({"c": [0]}), np.zeros(30, dtype="int64"))
    rule = BalanceRule("buhlmann", 0.15)
    m = Flat()
    balance(m, None, frame, ["h"], cells, rule=rule)
    level = m.level_
    fig = enrolled_selection(m, None, frame, ["h"], cells, rule=rule)
    yuan = [p / 100 for p, e in zip(paid, enrolled) if e and p > 0]
    n, mean = len(yuan), sum(yuan) / len(yuan)
    cv = math.sqrt(sum((y - mean) ** 2 for y in yuan) / n) / mean
    z = n / (n + (1 + cv * cv) / 0.0225)
    ae = sum(yuan) / (100.0 * level * sum(enrolled))
    assert fig["claims"] == n == 6 and fig["actual_to_expected"] == pytest.approx(ae, abs=1e-4)
    assert m.level_ == pytest.approx(level * (z * ae + 1 - z), rel=1e-9)
    everyone = frame.assign(enrolled=True)
    assert enrolled_selection(Flat(), None, everyone, ["h"], cells, rule=rule) is None
    assert enrolled_selection(Flat(), None, frame.assign(enrolled=False), ["h"], cells,
                              rule=rule) is None


def test_the_enrolled_selection_when_asked_for(small_city_dir, tmp_path):
    """[balance] enrolled = true: each group's model is multiplied by the enrolled's
    factor too (pricing.json balance.<group>.enrolled, the report's columns); off by
    default."""
    base = Path("actuarial/assumptions/pricing.toml").read_text(encoding="utf-8")
    assert "enrolled = false" in base
    f = tmp_path / "a.toml"
    f.write_text(base.replace("enrolled = false", "enrolled = true"), encoding="utf-8")
    r = run("price", "--product", "huhuibao-2025", "--data", str(small_city_dir),
            "--out", str(tmp_path / "o"), "--assumptions", str(f), "--no-backtest")
    assert r.returncode == 0, r.stderr
    fig = json.loads((tmp_path / "o" / "pricing.json").read_text(encoding="utf-8"))
    sel = {g: b["enrolled"] for g, b in fig["balance"].items() if b.get("enrolled")}
    assert sel
    for b in sel.values():
        assert b["factor"] == pytest.approx(b["Z"] * b["actual_to_expected"] + 1 - b["Z"],
                                            abs=2e-4)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "enrolled: A/E" in html and f"{next(iter(sel.values()))['factor']:.3f}" in html


@pytest.mark.parametrize("seed", [12, 13])
def test_four_years_judge_earlier_policies_at_their_own_claim_free_deductible(tmp_path, seed):
    """Four data years (the hostile review, session 13): a 2024 policy under huhuibao-2024
    (15,000, 14,000 after two claim-free years) that paid only thanks to its own step was
    judged claim-free at 15,000, so its 2025 renewal got 3 claim-free years where the
    ledger gives 0. Earlier policies are now paid at their own claim-free years, oldest
    first: the counts equal the ledger's (seed 12), and the payouts too where no
    settlement is held for review (seed 13; seed 12 has one the batch quarantines)."""
    d = tmp_path / "c"
    r = run("synth", "--persons", "3000", "--years", "4", "--seed", str(seed), "--start-year",
            "2022", "--out", str(d))
    assert r.returncode == 0, r.stderr
    s, real = _batches_and_realised(d, tmp_path, [2022, 2023, 2024, 2025])
    assert real["claim_free_policies"] == s["claim_free_years"]["policies_by_years"]
    assert "3" in real["claim_free_policies"]
    if seed == 13:
        assert real["paid_total"] == pytest.approx(s["ledger_entries_yuan"], abs=0.005)


def test_a_claim_free_years_column_in_the_policies_file_is_taken_as_the_batch_takes_it(
        tmp_path):
    """The hostile review (session 13): the claims batch takes the policies file's own
    claim_free_years when every policy has one; the backtest derived its own."""
    from puhui.fund.files import read_fund

    d = tmp_path / "c"
    assert run("synth", "--persons", "3000", "--years", "3", "--seed", "5", "--start-year",
               "2023", "--out", str(d)).returncode == 0
    data = read_fund(d)
    data.policies["claim_free_years"] = 0            # the insurer's own count: none
    write_fund(data, d)
    s, real = _batches_and_realised(d, tmp_path, [2023, 2024, 2025])
    assert s["claim_free_years"]["source"] == "data"
    assert real["claim_free_policies"] == s["claim_free_years"]["policies_by_years"] == {
        "0": s["claim_free_years"]["policies_by_years"]["0"]}
    assert real["paid_total"] == pytest.approx(s["ledger_entries_yuan"], abs=0.005)


def _batches_and_realised(d, tmp_path, years):
    """Yearly `claims run` batches of huhuibao-<year> into one ledger, and the backtest's
    realised cost of the last year: (the last batch's summary, the realised cost)."""
    from puhui.basis import actuarial_dir
    from puhui.pricing.backtest import realised_cost
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions

    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    for y in years:
        r = run("claims", "run", "--product", f"huhuibao-{y}", "--data", str(d), "--ledger",
                ledger, "--batch", f"b{y}", "--out", str(tmp_path / f"o{y}"))
        assert r.returncode == 0, r.stderr
    last = years[-1]
    s = json.loads((tmp_path / f"o{last}" / "summary.json").read_text())
    product = load_product(actuarial_dir() / "products" / f"huhuibao-{last}.toml")
    data = load_for_pricing(d, product, load_assumptions(None)[0])
    return s, realised_cost(product, data, last)


def test_backtest_reads_the_year2_size_of_the_line_not_of_one_version(small_city_dir, tmp_path):
    """A version backtested beside others (some 2025 policies relabelled as the community
    version): the launch's policies are the line's, so the size the year shows is every
    product's 2025 policies over them, not this version's alone (it read 0.595 for
    0.700 on a 4,000-person city); the renewals likewise (plain sets on the policies
    file); the report says the size is the line's (review 18, session 21)."""
    from puhui.fund.files import read_fund

    d = read_fund(small_city_dir)
    pol = d.policies.copy()
    pol["product_id"] = pol["product_id"].astype(str)
    yr = pol["start_date"].dt.year
    pick = ((yr == 2025) & (np.arange(len(pol)) % 3 == 0)).to_numpy()
    pol.loc[pick, "product_id"] = "huhuibao-2025-community"
    d.policies = pol
    data = tmp_path / "data"
    write_fund(d, data)
    out = tmp_path / "bt"
    r = run("backtest", "--product", "huhuibao-2025", "--data", str(data), "--out", str(out))
    assert r.returncode == 0, r.stderr
    (y,) = json.loads((out / "backtest.json").read_text())["years"]
    z, a = y["at_realised_year2"], y["enrolment"]["assumed"]
    every, own = int((yr == 2025).sum()), int(((yr == 2025) & ~pick).sum())
    assert y["policies_actual"] == own < every == z["policies_year"]
    assert z["year2_to_launch"] == pytest.approx(every / a["launch_policies"], abs=5e-5)
    both = set(pol.loc[yr == 2024, "psn_no"]) & set(pol.loc[yr == 2025, "psn_no"])
    assert z["renewals_actual"] == len(both)
    assert "The size is the line's" in (out / "report.html").read_text()


def test_a_launch_year_price_in_chinese_has_no_english_sentence(small_city_dir, tmp_path):
    """The launch-year page in zh (the mode, the borrowed figures' sources, the
    sensitivity's list): no English sentence left, the sources quoted as written inside
    lang="en" (review 18, session 21: the mode and the sources were English)."""
    from test_reports import english_runs

    data = _subset(small_city_dir, tmp_path, years=[2025])
    out = tmp_path / "zh"
    r = run("price", "--product", "huhuibao-2025", "--data", str(data), "--out", str(out),
            "--no-backtest", "--lang", "zh")
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "首年投保，续保按借用假设" in html and "首年的 0.600 倍" in html
    assert english_runs(html) == []
