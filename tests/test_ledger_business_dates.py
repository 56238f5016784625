"""Business dates in the ledger (issue 22 point 1, schema 6): a batch's entries carry the
date the batch is effective for (``--as-of``, by default the data's last settlement
date), a direct payout's and a reversal's their settlement's date, each apart from when
it was recorded; an older ledger is upgraded with the dates it can tell. Every test runs
on SQLite and PostgreSQL (``new_ledger``); the expected dates come from the data read
with pandas and from the requests the test writes, never from the ledger's own code."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from conftest import puhui

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import reverse_payout
from puhui.fund.files import read_raw
from puhui.fund.schema import POLICIES, SETTLEMENTS
from puhui.products.model import load_product, product_path
from tests.ledgers import run_sql

#: huhuibao-2025 with a 300 yuan hospital deductible, so a small city is paid something
LOW = """
extends = "{base}"
id = "huhuibao-2025"
[[benefits]]
id = "hospital"
deductible = {{ amount = 300, claim_free = [] }}
"""


@pytest.fixture(scope="module")
def product_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("product") / "low.toml"
    f.write_text(LOW.format(base=product_path("huhuibao-2025")), encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def product(product_file):
    return load_product(product_file)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """300 people, 2025, settlements before November (direct payouts come after)."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city
    from tests.test_money_safety import _copy_fund

    full = tmp_path_factory.mktemp("full")
    write_fund(synth_city(300, 1, seed=31, start_year=2025), full)
    st = read_raw(full, SETTLEMENTS)
    early = st[st["setl_time"] < pd.Timestamp("2025-11-01")]
    early = early[~early["refund_of"].notna() | early["refund_of"].isin(set(early["setl_id"]))]
    return _copy_fund(full, tmp_path_factory.mktemp("city"), early.reset_index(drop=True))


def _last_day(city) -> str:
    return str(read_raw(city, SETTLEMENTS)["setl_time"].max().date())


def _entries_by_batch(url) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for b, d in run_sql(url, "SELECT batch_id, business_date FROM payments"):
        out.setdefault(b, set()).add(d)
    return out


def _counter(sid, psn, day, inlist=4000):
    """A settlement at the counter (in-list self-pay ``inlist`` yuan)."""
    return dict(setl_id=sid, psn_no=psn, setl_time=day, med_type="21", hosp_lv=3,
                insutype="310", medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def _employee(city) -> str:
    pol = read_raw(city, POLICIES)
    persons = read_raw(city, __import__("puhui.fund.schema", fromlist=["PERSONS"]).PERSONS)
    emp = set(persons.loc[persons["insutype"].astype(str) == "310", "psn_no"].astype(str))
    mine = pol[(pol["product_id"] == "huhuibao-2025") & pol["psn_no"].astype(str).isin(emp)]
    return str(sorted(mine["psn_no"].astype(str))[0])


def test_batch_direct_and_reversal_entries_carry_their_business_dates(city, product, new_ledger):
    url = new_ledger("l")
    res = run_batch(product, product.path, city, url, "b1")
    assert res.summary["as_of"] == _last_day(city)          # the default: the data's last day
    run_batch(product, product.path, city, url, "b2", as_of="2025-11-15")
    psn = _employee(city)
    direct_payout(product, url, _counter("D1", psn, "2025-11-20"))
    reverse_payout(product, url, dict(setl_id="R1", refund_of="D1", psn_no=psn,
                                      setl_time="2025-12-05", psn_part_amt=-4000,
                                      fulamt_ownpay_amt=0, overlmt_selfpay=0))
    dates = _entries_by_batch(url)
    assert dates["b1"] == {_last_day(city)}
    assert "b2" not in dates              # the same data again: nothing new to pay
    assert dates[ledger.direct_batch(product.id)] == {"2025-11-20"}
    assert dates["reversal R1"] == {"2025-12-05"}
    assert run_sql(url, "SELECT batch_id, as_of FROM batches WHERE batch_id IN ('b1', 'b2')"
                        " ORDER BY 1") == [("b1", _last_day(city)), ("b2", "2025-11-15")]
    # recorded today, effective on the dates above: two different columns
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    recorded = {r[0][:10] for r in run_sql(url, "SELECT recorded_at FROM payments")}
    assert recorded <= {today, (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()}
    # the origin of every entry survives the reversal that forgot D1's stored inputs
    assert run_sql(url, "SELECT COUNT(*) FROM settlements WHERE setl_id = 'D1'") == [(0,)]
    assert run_sql(url, "SELECT setl_date FROM settlement_dates WHERE setl_id = 'D1'") == \
        [("2025-11-20",)]


def test_as_of_is_checked_and_kept_by_a_resumed_batch(city, product, product_file, new_ledger,
                                                      tmp_path):
    url = new_ledger("l")
    early = puhui("claims", "run", "--product", product_file, "--data", city, "--ledger",
                  url, "--batch", "b1", "--out", tmp_path / "o", "--as-of", "2025-06-30")
    assert early.returncode == 2 and "dated after --as-of 2025-06-30" in early.stderr
    assert "Traceback" not in early.stderr
    bad = puhui("claims", "run", "--product", product_file, "--data", city, "--ledger",
                url, "--batch", "b1", "--out", tmp_path / "o", "--as-of", "30/11/2025")
    assert bad.returncode == 2 and "not a date" in bad.stderr
    ok = puhui("claims", "run", "--product", product_file, "--data", city, "--ledger", url,
               "--batch", "b1", "--out", tmp_path / "o", "--as-of", "2025-11-30")
    assert ok.returncode == 0 and "as of 2025-11-30" in ok.stdout, ok.stderr
    other = puhui("claims", "run", "--product", product_file, "--data", city, "--ledger",
                  url, "--batch", "b1", "--out", tmp_path / "o", "--as-of", "2025-12-31")
    assert other.returncode == 2 and "ran before as of 2025-11-30" in other.stderr
    again = puhui("claims", "run", "--product", product_file, "--data", city, "--ledger",
                  url, "--batch", "b1", "--out", tmp_path / "o")     # resumed: keeps its date
    assert again.returncode == 0 and "as of 2025-11-30" in again.stdout, again.stderr
    assert {d for (d,) in run_sql(url, "SELECT DISTINCT business_date FROM payments")} == \
        {"2025-11-30"}


def test_a_version_4_ledger_gets_its_business_dates(city, product, new_ledger):
    """A ledger written before schema 6 (the columns and table dropped, version 4) is
    upgraded when opened: a batch's entries take the latest settlement date its entries
    apply to, a direct payout's its settlement's date where the ledger still stores the
    settlement, else (a reversal, a direct payout since reversed) the day it was
    recorded; the stored settlements' dates are kept for the triangles."""
    url = new_ledger("l")
    run_batch(product, product.path, city, url, "b1", as_of="2025-12-31")
    psn = _employee(city)
    direct_payout(product, url, _counter("D1", psn, "2025-11-20"))
    direct_payout(product, url, _counter("D2", psn, "2025-11-22"))
    reverse_payout(product, url, dict(setl_id="R2", refund_of="D2", psn_no=psn,
                                      setl_time="2025-12-05", psn_part_amt=-4000,
                                      fulamt_ownpay_amt=0, overlmt_selfpay=0))
    expected_b1 = run_sql(url, "SELECT MAX(s.setl_date) FROM payments p JOIN settlements s"
                               " ON s.setl_id = p.applies_to WHERE p.batch_id = 'b1'")[0][0]
    recorded_r2 = run_sql(url, "SELECT MIN(recorded_at) FROM payments WHERE batch_id ="
                               " 'reversal R2'")[0][0][:10]
    run_sql(url, "ALTER TABLE payments DROP COLUMN business_date")
    run_sql(url, "ALTER TABLE batches DROP COLUMN as_of")
    run_sql(url, "DROP TABLE settlement_dates")
    run_sql(url, "UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 0, r.stderr
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    dates = _entries_by_batch(url)
    assert dates["b1"] == {expected_b1} and expected_b1 < "2025-11-01"
    # D2's stored inputs went with its reversal: its payout, like the reversal, takes
    # the day it was recorded
    assert dates[ledger.direct_batch(product.id)] == {"2025-11-20", recorded_r2}
    assert dates["reversal R2"] == {recorded_r2}
    assert run_sql(url, "SELECT as_of FROM batches WHERE batch_id = 'b1'") == [(expected_b1,)]
    stored = run_sql(url, "SELECT COUNT(*) FROM settlements")[0][0]
    assert run_sql(url, "SELECT COUNT(*) FROM settlement_dates")[0][0] == stored
    assert run_sql(url, "SELECT setl_date FROM settlement_dates WHERE setl_id = 'D1'") == \
        [("2025-11-20",)]
    # D2 was forgotten by its reversal before the upgrade: no date to keep
    assert run_sql(url, "SELECT COUNT(*) FROM settlement_dates WHERE setl_id = 'D2'") == [(0,)]


def test_ledger_export_shows_the_business_date(city, product, new_ledger, tmp_path):
    url = new_ledger("l")
    run_batch(product, product.path, city, url, "b1", as_of="2025-12-31")
    r = puhui("ledger", "export", "--ledger", url, "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path / "p.csv", dtype=str)
    assert set(df["business_date"]) == {"2025-12-31"} and len(df) > 0
    assert (df["recorded_at"].str[:10] != "2025-12-31").all()
