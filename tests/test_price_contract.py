"""`puhui price` on valid data of every shape the contract allows (issue 18, point 7):
without settlement_lines.parquet, on a single data year, on insured-only data; and a
product whose policy period does not fit the data's policies refused with exit 2."""

import datetime as dt
import json
import re
import shutil
import types

import pandas as pd
import pytest

from puhui.basis import actuarial_dir
from puhui.errors import InputError
from puhui.pricing.period import check_period_shape

PRODUCT = "huhuibao-2025"


@pytest.fixture(scope="module")
def fast_assumptions(tmp_path_factory):
    """The shipped assumptions with 500 simulations and no validation folds (the runs
    below test that pricing finishes, not its interval)."""
    text = (actuarial_dir() / "assumptions" / "pricing.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^simulations = \d+", "simulations = 500", text)
    text = re.sub(r"(?m)^min_events = \d+", "min_events = 100000000", text)
    p = tmp_path_factory.mktemp("assumptions") / "pricing.toml"
    p.write_text(text, encoding="utf-8")
    return p


def price(data, out, assumptions):
    """`puhui price` in this process (conftest.puhui): what it computes and says."""
    from conftest import puhui

    return puhui("price", "--product", PRODUCT, "--data", data, "--out", out,
                 "--assumptions", assumptions)


def _finishes(r, out):
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return json.loads((out / "pricing.json").read_text())


def test_price_without_settlement_lines(city_copy, tmp_path, fast_assumptions):
    (city_copy / "settlement_lines.parquet").unlink()
    f = _finishes(price(city_copy, tmp_path / "out", fast_assumptions), tmp_path / "out")
    note = [n for n in f["notes"] if "line benefits have no lines to price on" in n]
    assert note and "special_drugs" in note[0] and "settlement_lines.parquet" in note[0]
    assert f["pure_premium"]["special_drugs"] == 0.0           # no lines, no experience
    assert f["pure_premium"]["cart"] > 0                      # its external assumption
    assert [y["year"] for y in f["backtest"]["years"]] == [2025]   # the backtest runs too


def test_price_on_a_single_data_year(city_copy, tmp_path, fast_assumptions):
    st = pd.read_parquet(city_copy / "settlements.parquet")
    last = int(st["setl_time"].dt.year.max())
    keep = st["setl_time"].dt.year == last
    st[keep].to_parquet(city_copy / "settlements.parquet", index=False)
    ln = pd.read_parquet(city_copy / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st.loc[keep, "setl_id"])].to_parquet(
        city_copy / "settlement_lines.parquet", index=False)
    pol = pd.read_parquet(city_copy / "policies.parquet")
    pol[pol["start_date"].dt.year == last].to_parquet(city_copy / "policies.parquet", index=False)
    f = _finishes(price(city_copy, tmp_path / "out", fast_assumptions), tmp_path / "out")
    assert f["data"]["years"] == [last]
    # no year with earlier years: no backtest, and the report says why
    assert f["backtest"]["years"] == [] and "at least two" in f["backtest"]["reason"]
    assert "No backtest: the fund data has 1 year" in (tmp_path / "out" / "report.html").read_text()


def test_price_on_insured_only_data(city_copy, tmp_path, fast_assumptions):
    pol = pd.read_parquet(city_copy / "policies.parquet")
    insured = set(pol["psn_no"])
    pe = pd.read_parquet(city_copy / "persons.parquet")
    pe[pe["psn_no"].isin(insured)].to_parquet(city_copy / "persons.parquet", index=False)
    st = pd.read_parquet(city_copy / "settlements.parquet")
    keep = st["psn_no"].isin(insured)
    st[keep].to_parquet(city_copy / "settlements.parquet", index=False)
    ln = pd.read_parquet(city_copy / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st.loc[keep, "setl_id"])].to_parquet(
        city_copy / "settlement_lines.parquet", index=False)
    f = _finishes(price(city_copy, tmp_path / "out", fast_assumptions), tmp_path / "out")
    assert f["data"]["person_years"] > 0 and f["pure_premium"]["total"] > 0
    assert [y["year"] for y in f["backtest"]["years"]] == [2025]   # the backtest runs too


def test_a_product_year_that_no_policy_starts_like_is_refused(city_copy, tmp_path,
                                                              fast_assumptions):
    # the data's policies run July to June; the product is a calendar year
    pol = pd.read_parquet(city_copy / "policies.parquet")
    pol["start_date"] = pol["start_date"] + pd.DateOffset(months=6)
    pol["end_date"] = pol["end_date"] + pd.DateOffset(months=6)
    pol.to_parquet(city_copy / "policies.parquet", index=False)
    r = price(city_copy, tmp_path / "out", fast_assumptions)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "2025-01-01 to 2025-12-31" in r.stderr               # the product's period
    assert re.search(r"huhuibao-202\d 20\d\d-07-01 to 20\d\d-06-30", r.stderr)  # the data's
    assert "[policy_period]" in r.stderr                        # what to do
    assert not (tmp_path / "out" / "pricing.json").exists()


def _product(start, end):
    return types.SimpleNamespace(id="p", start=start, end=end)


def _policies(*starts):
    s = pd.to_datetime(list(starts))
    return pd.DataFrame({"product_id": "x", "start_date": s,
                         "end_date": s + pd.DateOffset(years=1) - pd.Timedelta(days=1)})


def test_the_period_shapes_priced_and_refused():
    cal = _product(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    # next year's product from this year's calendar policies: priced
    check_period_shape(cal, _policies("2024-01-01", "2025-01-01"))
    # policies sold through January (within 31 days of the start): priced
    check_period_shape(cal, _policies("2025-01-20"))
    # no policies at all: priced (the whole eligible population)
    check_period_shape(cal, None)
    check_period_shape(cal, _policies()[:0])
    # July-June policies against a calendar product: refused
    with pytest.raises(InputError, match="starts on 01-01"):
        check_period_shape(cal, _policies("2024-07-01", "2025-07-01"))
    # a July-June product against July-June policies: priced
    check_period_shape(_product(dt.date(2025, 7, 1), dt.date(2026, 6, 30)),
                       _policies("2024-07-01"))
    # a period that is not one year: refused, whatever the policies
    with pytest.raises(InputError, match="546 days"):
        check_period_shape(_product(dt.date(2025, 1, 1), dt.date(2026, 6, 30)),
                           _policies("2025-01-01"))
    # a leap year's 366 days is one year
    check_period_shape(_product(dt.date(2028, 1, 1), dt.date(2028, 12, 31)),
                       _policies("2028-01-01"))
