"""Bounds on every amount and date (issue 17, point 4): just inside passes, just outside
is a problem (exit 2 in ``puhui validate``), an open end date or year 3000 is a clear
message and no traceback, one settlement checked for ``claims direct`` the same way, and
a settlement beyond the range can no longer overflow the int64 calculator."""

import datetime as dt
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from fastparquet import write

from puhui.benefits.calculator import adjudicate
from puhui.benefits.quantities import LineMatcher
from puhui.benefits.reference import adjudicate_sequence
from puhui.errors import InputError
from puhui.fund.files import FundData, date_days, read_raw, write_fund
from puhui.fund.schema import (
    FIRST_DATE,
    LAST_DATE,
    MAX_PREMIUM_YUAN,
    MAX_SETTLEMENT_FEN,
    MAX_SETTLEMENT_YUAN,
    PERSONS,
    POLICIES,
    SETTLEMENT_LINES,
    SETTLEMENT_MONEY,
    SETTLEMENTS,
)
from puhui.fund.validate import check_settlement_record, validate_dir
from puhui.products.model import load_product, product_path
from puhui.tiers.layers import check_ratio_operands, grouped_cumsum

AMOUNT_RULE = "amount within -100,000,000..100,000,000 yuan"
DATE_RULE = "date within 1950-01-01..2100-12-31"
THIS_YEAR = dt.date.today().year


def save(df, d, table):
    write(str(d / table.file), df.reset_index(drop=True), write_index=False)


def problems(d):
    return [(p.file, p.column, p.rule, p.count) for p in validate_dir(d).problems]


def puhui(*args):
    return subprocess.run([sys.executable, "-m", "puhui", *args], capture_output=True,
                          text=True)


def plain_row(d):
    """A settlement that is neither a reversal nor reversed, has no lines, and whose
    person is alive: its amounts and date can be set freely."""
    st = read_raw(d, SETTLEMENTS)
    lines = read_raw(d, SETTLEMENT_LINES)
    persons = read_raw(d, PERSONS)
    dead = set(persons.loc[persons["death_date"].notna(), "psn_no"])
    ok = (st["refund_of"].isna() & ~st["setl_id"].isin(set(st["refund_of"].dropna()))
          & ~st["setl_id"].isin(set(lines["setl_id"])) & ~st["psn_no"].isin(dead))
    return st, st.index[ok][0]


def set_bill(st, i, total):
    """Settlement ``i`` becomes a bill of ``total`` yuan, all of it the person's share
    (the identity and the in-list rule hold)."""
    for c in SETTLEMENT_MONEY:
        st.loc[i, c] = 0.0
    st.loc[i, "medfee_sumamt"] = total
    st.loc[i, "psn_part_amt"] = total


# --- validate: each bound, just inside and just outside ------------------------------------

def test_settlement_amount_at_the_bound_passes_and_a_fen_more_is_refused(city_copy):
    st, i = plain_row(city_copy)
    set_bill(st, i, float(MAX_SETTLEMENT_YUAN))
    save(st, city_copy, SETTLEMENTS)
    assert problems(city_copy) == []
    set_bill(st, i, MAX_SETTLEMENT_YUAN + 0.01)
    save(st, city_copy, SETTLEMENTS)
    got = problems(city_copy)
    assert got == [("settlements.parquet", "medfee_sumamt", AMOUNT_RULE, 1),
                   ("settlements.parquet", "psn_part_amt", AMOUNT_RULE, 1)], got


def test_the_reviewers_settlement_of_2e13_yuan_is_refused_with_exit_2(city_copy):
    st, i = plain_row(city_copy)
    set_bill(st, i, 2e13)
    save(st, city_copy, SETTLEMENTS)
    r = puhui("validate", str(city_copy))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    sid = st.loc[i, "setl_id"]
    assert (f"settlements.parquet: column medfee_sumamt: rule '{AMOUNT_RULE}' broken by 1 row "
            f"(e.g. {sid}). Fix: an amount of more than 100,000,000 yuan in one settlement is "
            f"not plausible") in r.stderr


def test_negative_amount_below_the_bound_is_refused_on_a_reversal_too(city_copy):
    st = read_raw(city_copy, SETTLEMENTS)
    rev = st.index[st["refund_of"].notna()][0]
    st.loc[rev, "medfee_sumamt"] = -MAX_SETTLEMENT_YUAN - 0.01
    save(st, city_copy, SETTLEMENTS)
    assert ("settlements.parquet", "medfee_sumamt", AMOUNT_RULE, 1) in problems(city_copy)


def test_infinite_amount_is_out_of_range_not_a_crash(city_copy):
    st, i = plain_row(city_copy)
    st.loc[i, "inscp_scp_amt"] = np.inf
    save(st, city_copy, SETTLEMENTS)
    assert ("settlements.parquet", "inscp_scp_amt", AMOUNT_RULE, 1) in problems(city_copy)


def test_line_amount_bound(city_copy):
    ln = read_raw(city_copy, SETTLEMENT_LINES)
    ln.loc[0, "amount"] = MAX_SETTLEMENT_YUAN + 0.01
    save(ln, city_copy, SETTLEMENT_LINES)
    assert ("settlement_lines.parquet", "amount", AMOUNT_RULE, 1) in problems(city_copy)


def test_part_of_the_bill_above_the_total_is_refused(city_copy):
    st, i = plain_row(city_copy)
    set_bill(st, i, 100.0)
    st.loc[i, "preselfpay_amt"] = 100.0
    st.loc[i, "act_pay_dedc"] = 100.0
    save(st, city_copy, SETTLEMENTS)
    assert problems(city_copy) == []
    st.loc[i, "act_pay_dedc"] = 100.01
    save(st, city_copy, SETTLEMENTS)
    assert problems(city_copy) == [("settlements.parquet", "act_pay_dedc",
                                    "part of the bill <= medfee_sumamt (except on reversals)", 1)]


@pytest.mark.parametrize("value, ok", [(float(MAX_PREMIUM_YUAN), True),
                                       (MAX_PREMIUM_YUAN + 0.01, False), (0.0, True),
                                       (-0.01, False)])
def test_premium_bounds(city_copy, value, ok):
    p = read_raw(city_copy, POLICIES)
    p.loc[0, "premium"] = value
    save(p, city_copy, POLICIES)
    want = [] if ok else [("policies.parquet", "premium", "amount within 0..1,000,000 yuan", 1)]
    assert problems(city_copy) == want


@pytest.mark.parametrize("year, rule", [(1900, None), (1899, "value >= 1900"),
                                        (THIS_YEAR, None),
                                        (THIS_YEAR + 1, f"value <= {THIS_YEAR}")])
def test_birth_year_bounds(city_copy, year, rule):
    p = read_raw(city_copy, PERSONS)
    p.loc[p["death_date"].isna().idxmax(), "birth_year"] = year
    save(p, city_copy, PERSONS)
    want = [] if rule is None else [("persons.parquet", "birth_year", rule, 1)]
    assert problems(city_copy) == want


@pytest.mark.parametrize("day, ok", [(FIRST_DATE, True), (LAST_DATE, True),
                                     (FIRST_DATE - dt.timedelta(days=1), False),
                                     (LAST_DATE + dt.timedelta(days=1), False),
                                     (dt.date(3000, 1, 1), False),
                                     (dt.date(9999, 12, 31), False)])
def test_settlement_date_bounds(city_copy, day, ok):
    st, i = plain_row(city_copy)
    # microseconds, as pandas 2 and other writers store them: year 3000 and 9999 fit
    st["setl_time"] = st["setl_time"].astype("datetime64[us]")
    st.loc[i, "setl_time"] = np.datetime64(day, "us")
    save(st, city_copy, SETTLEMENTS)
    want = [] if ok else [("settlements.parquet", "setl_time", DATE_RULE, 1)]
    assert problems(city_copy) == want


def test_dates_as_text_out_of_range_are_problems_not_crashes(city_copy):
    st, i = plain_row(city_copy)
    st["setl_time"] = st["setl_time"].dt.strftime("%Y-%m-%d")
    st.loc[i, "setl_time"] = "9999-12-31"
    save(st, city_copy, SETTLEMENTS)
    assert problems(city_copy) == [("settlements.parquet", "setl_time", DATE_RULE, 1)]


def test_open_end_date_and_year_3000_exit_2_with_a_clear_message(city_copy):
    p = read_raw(city_copy, POLICIES)
    for c in ("start_date", "end_date"):
        p[c] = p[c].astype("datetime64[us]")
    p.loc[0, "end_date"] = np.datetime64("9999-12-31", "us")
    p.loc[1, "start_date"] = np.datetime64("3000-01-01", "us")
    save(p, city_copy, POLICIES)
    people = read_raw(city_copy, PERSONS)
    people["death_date"] = people["death_date"].astype("datetime64[us]")
    people.loc[0, "death_date"] = np.datetime64("9999-12-31", "us")
    save(people, city_copy, PERSONS)
    r = puhui("validate", str(city_copy))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "OutOfBounds" not in r.stderr
    err = r.stderr
    assert (f"policies.parquet: column end_date: rule '{DATE_RULE}' broken by 1 row "
            f"(e.g. {p.loc[0, 'policy_no']}). Fix: give the policy's real last day of cover "
            f"(a Huiminbao policy runs one policy year); an open end date such as "
            f"9999-12-31 is not accepted") in err
    assert (f"policies.parquet: column start_date: rule '{DATE_RULE}' broken by 1 row "
            f"(e.g. {p.loc[1, 'policy_no']})") in err
    assert f"persons.parquet: column death_date: rule '{DATE_RULE}' broken by 1 row" in err


def test_date_days_reads_any_unit_and_flags_what_is_not_a_date():
    s = pd.Series(np.array(["1950-01-01", "2100-12-31", "9999-12-31"], "datetime64[ms]"))
    days, bad = date_days(s)
    assert days.tolist() == [(dt.date(1950, 1, 1) - dt.date(1970, 1, 1)).days,
                             (dt.date(2100, 12, 31) - dt.date(1970, 1, 1)).days,
                             (dt.date(9999, 12, 31) - dt.date(1970, 1, 1)).days]
    assert not bad.any()
    days, bad = date_days(pd.Series([dt.date(3000, 1, 1), "31/02/2024", None], dtype=object))
    assert bad.tolist() == [False, True, False]


# --- one settlement, for claims direct --------------------------------------------------------

OK = dict(setl_id="D1", psn_no="P1", setl_time="2025-06-01", med_type="21", hosp_lv=3,
          insutype="310", medfee_sumamt=900, fulamt_ownpay_amt=100, overlmt_selfpay=0,
          psn_part_amt=300, hifp_pay=600, hifob_pay=0, hifmi_pay=0, maf_pay=0)


@pytest.mark.parametrize("change, rule", [
    ({}, None),
    ({"medfee_sumamt": MAX_SETTLEMENT_YUAN, "hifp_pay": MAX_SETTLEMENT_YUAN - 300}, None),
    ({"medfee_sumamt": MAX_SETTLEMENT_YUAN + 0.01, "hifp_pay": MAX_SETTLEMENT_YUAN - 299.99},
     "medfee_sumamt: rule 'amount within 0..100,000,000 yuan'"),
    ({"medfee_sumamt": 2e13, "hifp_pay": 2e13 - 300},
     "medfee_sumamt: rule 'amount within 0..100,000,000 yuan'"),
    ({"medfee_sumamt": 200, "hifp_pay": -100},
     "psn_part_amt: rule 'part of the bill <= medfee_sumamt' broken (300.00 > 200.00 yuan)"),
    ({"medfee_sumamt": 901}, "medfee_sumamt: rule 'medfee_sumamt = hifp_pay"),
    ({"fulamt_ownpay_amt": 300.01}, "psn_part_amt: rule 'in-list self-pay"),
    ({"maf_pay": float("nan")}, "maf_pay: is not a finite amount"),
    ({"maf_pay": "inf"}, "maf_pay: is not a finite amount"),
    ({"maf_pay": "1e400"}, "maf_pay: rule 'amount within 0..100,000,000 yuan' broken (1.000E+400 yuan)"),
    ({"maf_pay": 0.001}, "maf_pay: has more than two decimals"),
    ({"setl_time": "9999-12-31"}, f"setl_time: rule '{DATE_RULE}' broken (9999-12-31)"),
    ({"setl_time": "3000-01-01"}, f"setl_time: rule '{DATE_RULE}' broken (3000-01-01)"),
    ({"setl_time": str(LAST_DATE)}, None),
    ({"setl_time": "2025-02-30"}, "setl_time: rule 'date' broken"),
    ({"lines": [{"hilist_code": "X", "amount": MAX_SETTLEMENT_YUAN + 1}]},
     "lines[0].amount: rule 'amount within 0..100,000,000 yuan'"),
    ({"lines": [{"hilist_code": "X", "amount": 901}]},
     "lines: rule 'lines sum to at most medfee_sumamt'"),
])
def test_check_settlement_record(change, rule):
    got = check_settlement_record(OK | change)
    if rule is None:
        assert got == []
    else:
        assert any(p.startswith(rule) for p in got), got


def test_direct_record_without_fund_payments_checks_what_it_has():
    rec = {k: v for k, v in OK.items() if not k.endswith("_pay")}
    assert check_settlement_record(rec) == []
    # the reviewer's case: a total below the person's share
    got = check_settlement_record(rec | {"medfee_sumamt": 200})
    assert got and got[0].startswith("psn_part_amt: rule 'part of the bill <= medfee_sumamt'")


# --- the calculator: both faces at the top of the range, and refusal beyond it ---------------

HHB = load_product(product_path("huhuibao-2025"))
HOSPITAL_LIMIT = dict(HHB.benefits[0].layer.limit.options)[None]


def _person_with(first_bill_fen):
    """One insured person: a first bill of ``first_bill_fen`` in-list self-pay, then nine
    ordinary inpatient bills (50,000 yuan in-list, 10,000 out-of-list)."""
    start = pd.Timestamp(HHB.start)
    pol = pd.DataFrame([dict(policy_no="N1", psn_no="P1", start_date=start,
                             end_date=pd.Timestamp(HHB.end), premium=12900,
                             preexisting=False, consent=True, product_id=HHB.id)])
    rows = [(first_bill_fen, 0)] + [(5_000_000, 1_000_000)] * 9
    st = pd.DataFrame([dict(setl_id=f"S{k}", psn_no="P1",
                            setl_time=start + pd.Timedelta(days=10 + 7 * k), med_type="21",
                            hosp_lv=3, insutype="310", medfee_sumamt=a + b,
                            fulamt_ownpay_amt=b, overlmt_selfpay=0, psn_part_amt=a + b,
                            refund_of=None) for k, (a, b) in enumerate(rows)])
    return st, pol


def test_top_of_range_then_nine_ordinary_bills_pay_exactly_the_limit_on_both_faces():
    st, pol = _person_with(MAX_SETTLEMENT_FEN)
    m = LineMatcher(HHB)
    v = adjudicate(HHB, st, pol, matcher=m)
    r = adjudicate_sequence(HHB, st, pol, matcher=m)
    assert v.total_payout().tolist() == r.total_payout().tolist()
    assert v.total_payout().tolist() == [HOSPITAL_LIMIT] + [0] * 9


def test_a_bill_beyond_the_range_is_refused_by_both_faces_not_paid_wrong():
    st, pol = _person_with(2 * 10**15)          # the reviewer's 2e13 yuan
    m = LineMatcher(HHB)
    with pytest.raises(InputError, match="outside the accepted range.*S0"):
        adjudicate(HHB, st, pol, matcher=m)
    with pytest.raises(InputError, match="outside the accepted range.*S0"):
        adjudicate_sequence(HHB, st, pol, matcher=m)


def test_layer_engine_refuses_to_wrap_around():
    with pytest.raises(OverflowError):
        check_ratio_operands(np.array([0, 2 * 10**15]))
    with pytest.raises(OverflowError):
        grouped_cumsum(np.array([2**61, 2**61, 1]), np.array([0, 0, 1]))
    # exact where one global cumulative sum wraps but no group's sum does
    big = 4 * 10**18
    assert grouped_cumsum(np.array([big, big, big, 7]), np.array([0, 1, 2, 2])).tolist() == \
        [big, big, big, big + 7]


# --- a claims batch quarantines what validate refuses ------------------------------------------

def _fund(first_bill_yuan, tmp_path, first_day=None):
    """A fund-data folder of one insured person and the ten bills of
    :func:`_person_with`, the first of ``first_bill_yuan`` (on ``first_day`` if given)."""
    persons = pd.DataFrame(dict(psn_no=["P1"], birth_year=[1980], gender=["1"],
                                insutype=["310"], retired=[False],
                                death_date=pd.Series([pd.NaT], dtype="datetime64[ns]")))
    st, pol = _person_with(0)
    for c in SETTLEMENT_MONEY:
        if c not in st:
            st[c] = 0
    st["dise_code"] = "C34"
    st.loc[0, ["medfee_sumamt", "psn_part_amt"]] = round(first_bill_yuan * 100)
    st = st[[c.name for c in SETTLEMENTS.columns if c.required]]
    d = tmp_path / "fund"
    write_fund(FundData(persons, pol, st, None), d)
    if first_day is not None:
        raw = read_raw(d, SETTLEMENTS)
        raw["setl_time"] = raw["setl_time"].astype("datetime64[us]")
        raw.loc[0, "setl_time"] = np.datetime64(first_day, "us")
        save(raw, d, SETTLEMENTS)
    return d, st


@pytest.mark.parametrize("amount, day", [(2e13, None), (1000.0, "9999-12-31")])
def test_batch_quarantines_an_out_of_range_settlement_and_pays_the_rest(tmp_path, amount, day):
    from puhui.claims.batch import run_batch

    d, st = _fund(amount, tmp_path, day)
    assert not validate_dir(d).ok
    res = run_batch(HHB, product_path(HHB.id), d, f"sqlite:///{tmp_path / 'l.db'}", "b1")
    eob = res.eob
    assert set(eob.loc[eob["setl_id"] == "S0", "status"]) == {"quarantined"}
    # the other nine are paid as if the refused one were not there
    nine, pol = _person_with(0)
    want = adjudicate(HHB, nine.iloc[1:], pol).total_payout()
    got = eob[eob["setl_id"] != "S0"].groupby("setl_id")["payout_amt"].sum()
    assert (got * 100).round().astype(int).tolist() == want.tolist()
    assert want.sum() > 0


def test_batch_and_direct_pay_the_top_of_range_bill_the_same(tmp_path):
    from puhui.claims import ledger
    from puhui.claims.batch import run_batch
    from puhui.claims.direct import direct_payout

    d, st = _fund(float(MAX_SETTLEMENT_YUAN), tmp_path)
    assert validate_dir(d).ok
    res = run_batch(HHB, product_path(HHB.id), d, f"sqlite:///{tmp_path / 'b.db'}", "b1")
    batch = res.eob.groupby("setl_id")["payout_amt"].sum()
    url = f"sqlite:///{tmp_path / 'd.db'}"
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, _person_with(0)[1])
    con.close()
    direct = {}
    for rec in st.to_dict("records"):
        rec = rec | {"setl_time": str(rec["setl_time"].date())}
        for c in SETTLEMENT_MONEY:
            rec[c] = rec[c] / 100
        direct[rec["setl_id"]] = direct_payout(HHB, url, rec)["total_payout"]
    assert round(batch["S0"] * 100) == HOSPITAL_LIMIT
    assert {k: round(v * 100) for k, v in direct.items()} == \
        {k: round(v * 100) for k, v in batch.items()}
