"""Findings of the hostile reviews of issue 17 (privacy, ledger URLs, claims files,
renewals across yearly extracts, product files), each pinned by a test."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from puhui.basis import RuleFileError
from puhui.claims import ledger
from puhui.errors import InputError
from puhui.fund.files import FundData, read_raw, write_fund
from puhui.fund.schema import PERSONS, POLICIES
from tests.test_waiting_period import ELDERLY, HOSP, PAID, _full, _persons, policy, stay


def puhui(*args):
    """The command in this process (conftest.puhui): what it does and says."""
    from conftest import puhui as in_process

    r = in_process(*args)
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from puhui.synth.city import synth_city

    d = tmp_path_factory.mktemp("city")
    write_fund(synth_city(200, 1, seed=4, start_year=2025), d)
    return d


def _with_column(city, tmp_path, name, value):
    import shutil

    from fastparquet import write

    d = tmp_path / "d"
    shutil.copytree(city, d)
    p = read_raw(d, PERSONS)
    p[name] = value
    write(str(d / PERSONS.file), p, write_index=False)
    return d


@pytest.mark.parametrize("name", ["身份证310104198003154313", "310104198003154313",
                                  "13812345678", "手机13812345678",
                                  "上海市徐汇区漕溪北路600弄12号", "zhangwei1980@163.com",
                                  "bbxrmc", "policyholder", "被保险人"])
def test_a_column_whose_name_is_personal_data_is_refused_and_never_shown(city, tmp_path, name):
    d = _with_column(city, tmp_path, name, "x")
    r = puhui("validate", d)
    assert r.returncode == 2
    shown = r.stdout + r.stderr
    assert "privacy" in shown
    for part in (name, name[-8:]):
        if len(part) >= 6 and any(ch.isdigit() for ch in part) or name == part and \
                not name.isascii():
            assert part not in shown


def test_a_name_as_psn_no_is_refused(city, tmp_path):
    import shutil

    from fastparquet import write

    d = tmp_path / "d"
    shutil.copytree(city, d)
    for t in (PERSONS, POLICIES):
        df = read_raw(d, t)
        first = df["psn_no"].iloc[0]
        df["psn_no"] = df["psn_no"].replace({first: "张建国"})
        write(str(d / t.file), df, write_index=False)
    r = puhui("validate", d)
    assert r.returncode == 2 and "pseudonymous" in r.stderr and "张建国" not in r.stderr


@pytest.fixture
def policy_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pd.DataFrame([
            policy("E1", "W1", "2025-01-01", "2025-12-31")]).drop(columns="claim_free_years"))
    con.close()
    return url


def _settlement(**kw):
    return dict(setl_id="D1", psn_no="W1", setl_time="2025-06-20", med_type="21", hosp_lv=3,
                insutype="310", medfee_sumamt=60000, fulamt_ownpay_amt=0, overlmt_selfpay=0,
                psn_part_amt=20000, hifp_pay=40000, hifob_pay=0, hifmi_pay=0, maf_pay=0) | kw


@pytest.mark.parametrize("change", [{"psn_no": "张建国"}, {"setl_id": "结算一"},
                                    {"310104198003154313": "x"},
                                    {"psn_no": "P 13812345678"}])
def test_direct_refuses_names_and_identifiers_without_echo(policy_ledger, change):
    from puhui.claims.direct import direct_payout

    with pytest.raises(InputError) as e:
        direct_payout(ELDERLY, policy_ledger, _settlement(**change))
    for v in [*change.values(), *change.keys()]:
        assert v not in str(e.value) or v in ("psn_no", "setl_id")


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///x.db?mode=ro", "sqlite:///",
                                 ":memory:"])
def test_a_ledger_url_that_is_no_file_is_refused(url):
    with pytest.raises(InputError, match="ledger URL"):
        ledger.sqlite_path(url)


def test_a_claims_file_naming_nothing_in_the_data_is_refused(city, tmp_path):
    (tmp_path / "c.csv").write_text("setl_id\nNOPE1\nNOPE2\n")
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city, "--ledger",
              f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b1", "--out", tmp_path / "o",
              "--claims", tmp_path / "c.csv", "--workers", 1)
    assert r.returncode == 2 and "none of them" in r.stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def test_a_claims_file_with_personal_data_is_refused(city, tmp_path):
    (tmp_path / "c.csv").write_text("setl_id,patient_name\nS1,x\n")
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city, "--ledger",
              f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b1", "--out", tmp_path / "o",
              "--claims", tmp_path / "c.csv", "--workers", 1)
    assert r.returncode == 2 and "privacy" in r.stderr


def test_a_yearly_extract_counts_renewals_from_the_ledgers_policies(tmp_path):
    """This year's data holds only this year's policies; last year's (another product id)
    are in the ledger: a renewal's stay on day 10 is paid, as claims direct pays it."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pd.DataFrame([
            policy("O1", "W1", "2024-01-01", "2024-12-31", "huhuibao-2024")]).drop(
            columns="claim_free_years"))
    con.close()
    d = tmp_path / "data"
    pol = pd.DataFrame([policy("E1", "W1", "2025-01-01", "2025-12-31"),
                        policy("E2", "W2", "2025-01-01", "2025-12-31")]
                       ).drop(columns="claim_free_years")
    st = pd.DataFrame([_full(stay("S1", "2025-01-11 10:00", "W1")),
                       _full(stay("S2", "2025-01-11 10:00", "W2"))])
    write_fund(FundData(_persons(["W1", "W2"]), pol, st, None), d)
    r = puhui("claims", "run", "--product", ELDERLY.id, "--data", d, "--ledger", url,
              "--batch", "b1", "--out", tmp_path / "o", "--workers", 1)
    assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "o" / "eob.parquet", engine="fastparquet")
    h = eob[eob["benefit"].astype(str) == HOSP].set_index("setl_id")
    assert h.loc["S1", "reason"] == "PAID" and round(h.loc["S1", "payout_amt"] * 100) == PAID
    assert h.loc["S2", "reason"] == "WAITING_PERIOD"         # a new policy


def test_a_product_file_nested_too_deeply_is_exit_2(tmp_path):
    f = tmp_path / "deep.toml"
    f.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    r = puhui("product", "check", f)
    assert r.returncode == 2 and "nested too deeply" in r.stderr


def test_removing_a_benefit_the_parent_lacks_is_an_error(tmp_path):
    from puhui.products.model import load_product, product_path

    f = tmp_path / "child.toml"
    f.write_text(f'extends = "{product_path("huhuibao-2025")}"\nid = "child"\n'
                 '[[benefits]]\nid = "hospitl"\nremove = true\n')
    with pytest.raises(RuleFileError, match="hospitl.*does not have"):
        load_product(f)


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--persons", "99999999999999999999"]])
def test_synth_options_out_of_range_are_exit_2(tmp_path, args):
    base = {"--persons": "10", "--years": "1", "--seed": "1", "--out": str(tmp_path / "c")}
    base.update(dict(zip(args[::2], args[1::2])))
    r = puhui("synth", *[x for kv in base.items() for x in kv])
    assert r.returncode == 2 and "internal error" not in r.stderr


@pytest.mark.parametrize("body", ['{"setl_id": "S1", "psn_no": "P1", "psn_no": "P2"}',
                                  '{"setl_id": "S1", "hosp_lv": ' + "9" * 5000 + '}'])
def test_direct_refuses_duplicate_keys_and_endless_numbers(policy_ledger, tmp_path, body):
    f = tmp_path / "s.json"
    f.write_text(body)
    r = puhui("claims", "direct", "--product", ELDERLY.id, "--ledger", policy_ledger,
              "--settlement", f)
    assert r.returncode == 2 and "internal error" not in r.stderr, r.stderr
