"""`puhui price` shows the backtest (issue 18, item 1): by default the last data year
priced from the years before it, the same figures `puhui backtest` writes for that year,
in the report and in pricing.json's `backtest`; reproducible; left out on request."""

import json
import shutil

import pytest

PRODUCT = "huhuibao-2025"


def run(*args):
    """The command in this process (conftest.puhui): what it computes and says."""
    from conftest import puhui

    return puhui(*args)


@pytest.fixture(scope="module")
def priced(priced_small_city):
    """`puhui price --seed 5` on a copy of the small city (conftest, shared)."""
    return priced_small_city


def test_price_holds_the_last_years_backtest_as_puhui_backtest_computes_it(
        priced, backtested_small_city):
    data, out, r = priced
    f = json.loads((out / "pricing.json").read_text())
    b = f["backtest"]
    assert b["scope"] == "last" and b["data_years"] == [2024, 2025]
    (y,) = b["years"]
    assert y["year"] == 2025 and y["data_years"] == [2024]
    # the contract's fields are still there, unchanged in meaning
    for key in ("product_id", "gross_premium", "pure_premium", "expected_loss_ratio",
                "loss_ratio_interval"):
        assert key in f
    # the same year through `puhui backtest`: every figure equal
    bt, _ = backtested_small_city          # `puhui backtest --seed 5` on the same data
    alone = json.loads((bt / "backtest.json").read_text())
    (same,) = [z for z in alone["years"] if z["year"] == 2025]
    assert y == same
    assert b["summary"] == alone["summary"] and b["notes"] == alone["notes"]
    # A/E is realised over priced, and the reading says which way the price missed
    assert y["ae"]["total"] == pytest.approx(y["realised_cost"]["total"]
                                             / y["priced_pure_premium"]["total"], abs=1e-3)
    (reading,) = b["reading"]
    gap = y["priced_pure_premium"]["total"] / y["realised_cost"]["total"] - 1
    assert f"{abs(gap):.1%}".replace("%", " %") in reading
    assert ("below" if gap < 0 else "above") in reading and "2025's enrollees" in reading
    assert ("covers the realised cost" if y["interval"]["covers"]
            else "does not cover") in reading
    # the command's own lines say it, as `puhui backtest` does
    assert "backtest 2025 (priced from 2024)" in r.stdout


def test_the_report_shows_the_backtest_section(priced):
    _, out, _ = priced
    f = json.loads((out / "pricing.json").read_text())
    (y,) = f["backtest"]["years"]
    html = (out / "report.html").read_text()
    section = html.split("<h2>Backtest")[1].split("<h2>")[0]
    assert "2025, priced from 2024" in section
    assert f"{y['priced_pure_premium']['total']:,.2f}" in section
    assert f"{y['realised_cost']['total']:,.2f}" in section
    assert f"{y['ae']['total']:.3f}" in section
    assert f"{y['policies_predicted']:,}" in section and f"{y['policies_actual']:,}" in section
    assert f"{y['interval']['lower']:,.2f} to {y['interval']['upper']:,.2f}" in section
    for b in y["priced_pure_premium"]:
        assert f"<td>{b}</td>" in section
    assert "below what 2025" in section or "above what 2025" in section


def test_reproduce_re_runs_the_backtest(priced):
    """The re-run computes the backtest again and gets every figure (a re-run without
    it would differ by the whole key)."""
    _, out, _ = priced
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["backtest"] == "last"
    r = run("reproduce", str(out / "manifest.json"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_both_backtest_options_at_once_are_refused(tmp_path):
    r = run("price", "--product", PRODUCT, "--data", str(tmp_path), "--out",
            str(tmp_path / "o"), "--no-backtest", "--backtest-all-years")
    assert r.returncode == 2 and "--no-backtest" in r.stderr and "Traceback" not in r.stderr


def test_a_single_data_year_has_no_backtest_and_says_why(small_city_dir):
    from puhui.fund.files import read_fund
    from puhui.pricing.premium import load_assumptions
    from puhui.pricing.run import backtest_section
    from puhui.products.model import load_product, product_path

    d = read_fund(small_city_dir)
    d.settlements = d.settlements[d.settlements["setl_time"].dt.year == 2025]
    d.settlement_years = (2025,)
    product = load_product(product_path(PRODUCT))
    assumptions, _ = load_assumptions()
    b = backtest_section(product, d, assumptions, 0, "last")
    assert b["years"] == [] and b["data_years"] == [2025]
    assert "1 year of settlements (2025)" in b["reason"] and "at least two" in b["reason"]
    assert backtest_section(product, d, assumptions, 0, "none") is None


def test_the_backtest_reading_of_a_price_that_was_too_high_and_missed():
    from puhui.pricing.run import backtest_reading

    text = backtest_reading({
        "year": 2025, "data_years": [2023, 2024], "priced_pure_premium": {"total": 120.0},
        "realised_cost": {"total": 100.0}, "ae": {"total": 0.8333},
        "policies_predicted": 1000, "policies_actual": 1100,
        "interval": {"level": 0.9, "lower": 105.0, "upper": 140.0, "covers": False}})
    assert "from 2023, 2024 alone was 20.0 % above what 2025's enrollees cost" in text
    assert "1,100 were sold (10.0 % more)" in text and "does not cover" in text


def test_the_report_shows_the_balance_table(priced):
    """pricing.json's balance per group, in the report as a table (its figures)."""
    _, out, _ = priced
    f = json.loads((out / "pricing.json").read_text())
    html = (out / "report.html").read_text()
    section = html.split("<h3>Balance")[1].split("</table>")[0]
    assert "model_bias_sd" in section and "&tau; = 0.15" in section
    for gid, b in f["balance"].items():
        assert f"<td>{gid}</td>" in section
        # three decimals, as every ratio of the reports (issue 21)
        assert f"{b['factor']:.3f}" in section and f"{b['Z']:.3f}" in section
        assert f"{b['actual']:,.2f}" in section and f"{b['claims']:,}" in section
        if b.get("enrolled"):
            assert f"{b['enrolled']['factor']:.3f}" in section
    assert not any(b.get("enrolled") for b in f["balance"].values())    # off: no columns
    assert "enrolled: A/E" not in section
