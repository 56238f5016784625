"""The waiting period, on the shipped elderly product (waiting_period_days = 90).

Convention (docs/product-files.md): the policy's start date is day 0; a settlement dated
on days 0 to 89 of a *new* policy (the time of day does not matter) is denied
WAITING_PERIOD for every benefit, and from day 90 (start + 90 days) it is paid. A renewal
(a policy of the same person starting the day after another ends) has no waiting period.
A denied settlement uses no deductible.

The elderly hospital in-list benefit: deductible 5,000 a year, 70 %, so a stay leaving
20,000 yuan of in-list self-pay pays (20,000 - 5,000) x 70 % = 10,500 yuan.

Checked through (a) the vectorised calculator, (b) the per-settlement reference,
(c) `puhui claims run`, (d) `puhui claims direct` after `puhui ledger load`, and
(e) pricing's experience (the product applied as if in force).
"""

import json

import pandas as pd
import pytest

from puhui.benefits.calculator import adjudicate
from puhui.benefits.reasons import CODES
from puhui.benefits.reference import adjudicate_sequence
from puhui.fund.files import FundData, read_fund, write_fund
from puhui.products.model import load_product, product_path
from puhui.synth.city import synth_city

ELDERLY = load_product(product_path("elderly-medical-60-80"))
HOSP = "hospital_in_list"
PAID = 1050000                       # fen: (20,000 - 5,000) x 70 %


def day(start: str, n: int, time: str = "10:00") -> pd.Timestamp:
    """Day ``n`` of a policy starting on ``start`` (day 0 is the start date)."""
    return pd.Timestamp(start) + pd.Timedelta(days=n) + pd.Timedelta(time + ":00")


def stay(sid, when, psn, inlist=20000.0):
    f = int(round(inlist * 100))
    return dict(setl_id=sid, psn_no=psn, setl_time=pd.Timestamp(when), med_type="21",
                hosp_lv=3, insutype="310", medfee_sumamt=f * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=f, refund_of=None)


def policy(no, psn, start, end, product=ELDERLY.id):
    return dict(policy_no=no, psn_no=psn, product_id=product, start_date=pd.Timestamp(start),
                end_date=pd.Timestamp(end), premium=80000, preexisting=False, consent=True,
                claim_free_years=0)


def both(settlements, policies):
    """The vectorised calculator and the per-settlement reference, which must agree."""
    st, pol = pd.DataFrame(settlements), pd.DataFrame(policies)
    v = adjudicate(ELDERLY, st, pol)
    r = adjudicate_sequence(ELDERLY, st, pol)
    for b in v.benefits:
        for k in ("eligible", "deductible", "ratio_bp", "payout", "reason"):
            assert (getattr(v, k)[b] == getattr(r, k)[b]).all(), (b, k)
    return v


def reasons(d, benefit=HOSP):
    return [CODES[r - 1] for r in d.reason[benefit]]


def test_the_shipped_elderly_product_has_its_90_days():
    assert ELDERLY.waiting_period_days == 90


@pytest.mark.parametrize("start", ["2025-01-01", "2025-03-15", "2024-02-20"])
def test_inside_and_just_outside_the_waiting_period_of_a_new_policy(start):
    # day 0, day 89 (late in the evening) are denied; day 90 (just after midnight) pays;
    # the denied stays used none of the deductible, so day 90 pays in full.
    end = (pd.Timestamp(start) + pd.DateOffset(years=1) - pd.Timedelta(days=1)).date()
    d = both([stay("S0", day(start, 0), "P1"), stay("S89", day(start, 89, "23:59"), "P1"),
              stay("S90", day(start, 90, "00:01"), "P1")],
             [policy("N1", "P1", start, end)])
    assert reasons(d) == ["WAITING_PERIOD", "WAITING_PERIOD", "PAID"]
    assert d.payout[HOSP].tolist() == [0, 0, PAID]
    assert d.deductible[HOSP].tolist() == [0, 0, 500000]
    for b in d.benefits:                              # every benefit is denied inside it
        assert reasons(d, b)[:2] == ["WAITING_PERIOD", "WAITING_PERIOD"]
        assert d.payout[b][:2].tolist() == [0, 0]


def test_the_dates_the_convention_gives():
    # a policy from 2025-01-01: day 89 is 2025-03-31, day 90 is 2025-04-01
    assert day("2025-01-01", 89).date().isoformat() == "2025-03-31"
    d = both([stay("A", "2025-03-31", "P1"), stay("B", "2025-04-01", "P2")],
             [policy("N1", "P1", "2025-01-01", "2025-12-31"),
              policy("N2", "P2", "2025-01-01", "2025-12-31")])
    assert reasons(d) == ["WAITING_PERIOD", "PAID"]


def test_a_renewal_has_no_waiting_period():
    # P2 held a 2024 policy ending the day before the 2025 one starts: day 19 pays.
    d = both([stay("R19", day("2025-01-01", 19), "P2"), stay("N19", day("2025-01-01", 19), "P3")],
             [policy("O2", "P2", "2024-01-01", "2024-12-31"),
              policy("N2", "P2", "2025-01-01", "2025-12-31"),
              policy("N3", "P3", "2025-01-01", "2025-12-31")])
    assert reasons(d) == ["PAID", "WAITING_PERIOD"]
    assert d.payout[HOSP].tolist() == [PAID, 0]


def test_a_gap_of_one_day_is_a_new_policy_and_another_product_still_renews():
    # P4's old policy ended two days before: new. P5's was of another product: a renewal
    # (the calculator counts any product the person held, given the policies).
    d = both([stay("G", day("2025-01-01", 10), "P4"), stay("X", day("2025-01-01", 10), "P5")],
             [policy("O4", "P4", "2024-01-01", "2024-12-30"),
              policy("N4", "P4", "2025-01-01", "2025-12-31"),
              policy("O5", "P5", "2024-01-01", "2024-12-31", product="huhuibao-2024"),
              policy("N5", "P5", "2025-01-01", "2025-12-31")])
    assert reasons(d) == ["WAITING_PERIOD", "PAID"]


# -- (c) and (d): the claims commands on a tiny fund-data folder --------------------------

#: (setl_id, person, date, expected reason of the hospital benefit, payout in fen)
#: (two people for days 89 and 90: stays on consecutive days of one person would be held
#: for review as a split admission)
CASES = [
    ("W1-89", "W1", "2025-03-31", "WAITING_PERIOD", 0),      # new policy from 2025-01-01
    ("W4-90", "W4", "2025-04-01", "PAID", PAID),             # the same
    ("W2-19", "W2", "2025-01-20", "PAID", PAID),             # renewal of a 2024 policy
    ("W3-89", "W3", "2025-06-12", "WAITING_PERIOD", 0),      # new policy from 2025-03-15
    ("W5-90", "W5", "2025-06-13", "PAID", PAID),             # the same
]
POLICIES = [policy("E1", "W1", "2025-01-01", "2025-12-31"),
            policy("E4", "W4", "2025-01-01", "2025-12-31"),
            policy("E2-24", "W2", "2024-01-01", "2024-12-31"),
            policy("E2", "W2", "2025-01-01", "2025-12-31"),
            policy("E3", "W3", "2025-03-15", "2026-03-14"),
            policy("E5", "W5", "2025-03-15", "2026-03-14")]


def _persons(ids):
    p = synth_city(50, 1, seed=2, start_year=2025).persons.iloc[:len(ids)].copy()
    p["psn_no"], p["death_date"] = list(ids), pd.NaT
    p["birth_year"] = 1955
    p["insutype"] = "310"
    p["gender"] = p["gender"].astype(str)
    return p


def _full(s):
    """A settlement row as the fund files have it (the basic tier paid nothing)."""
    f = s["psn_part_amt"]
    return {**s, "dise_code": "J18", "medfee_sumamt": f, "preselfpay_amt": 0,
            "inscp_scp_amt": f, "act_pay_dedc": 0, "hifp_pay": 0, "hifob_pay": 0,
            "hifmi_pay": 0, "maf_pay": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("waiting")
    pol = pd.DataFrame(POLICIES).drop(columns="claim_free_years")
    st = pd.DataFrame([_full(stay(sid, f"{when} 10:00", psn)) for sid, psn, when, _, _ in CASES])
    write_fund(FundData(_persons(["W1", "W2", "W3", "W4", "W5"]), pol, st, None), d)
    return d


def puhui(*args):
    """The command in this process (conftest.puhui): what it does and says."""
    from conftest import puhui as in_process

    r = in_process(*args)
    assert "Traceback" not in r.stderr
    return r


def test_claims_run_end_to_end(folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    r = puhui("validate", folder)
    assert r.returncode == 0, r.stderr
    r = puhui("claims", "run", "--product", ELDERLY.id, "--data", folder, "--ledger", url,
              "--batch", "b1", "--out", tmp_path / "o", "--workers", 1)
    assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "o" / "eob.parquet", engine="fastparquet")
    h = eob[eob["benefit"] == HOSP].set_index("setl_id")
    for sid, _, _, reason, fen in CASES:
        assert h.loc[sid, "reason"] == reason, sid
        assert round(h.loc[sid, "payout_amt"] * 100) == fen, sid
        assert h.loc[sid, "status"] == ("denied" if reason == "WAITING_PERIOD" else "paid")
    denied = eob[eob["setl_id"].isin(["W1-89", "W3-89"])]
    assert len(denied) == 2 * len(ELDERLY.benefits)
    assert set(denied["reason"]) == {"WAITING_PERIOD"} and (denied["payout_amt"] == 0).all()


def test_claims_direct_after_ledger_load(folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    r = puhui("ledger", "load", "--data", folder, "--ledger", url)
    assert r.returncode == 0, r.stderr
    for sid, psn, when, reason, fen in CASES:
        s = dict(setl_id=sid, psn_no=psn, setl_time=when, med_type="21", hosp_lv=3,
                 insutype="310", medfee_sumamt=60000, fulamt_ownpay_amt=0, overlmt_selfpay=0,
                 psn_part_amt=20000, hifp_pay=40000, hifob_pay=0, hifmi_pay=0, maf_pay=0)
        f = tmp_path / f"{sid}.json"
        f.write_text(json.dumps(s), encoding="utf-8")
        r = puhui("claims", "direct", "--product", ELDERLY.id, "--ledger", url,
                  "--settlement", f)
        assert r.returncode == 0, r.stderr
        out = {b["benefit"]: b for b in json.loads(r.stdout)["benefits"]}
        assert out[HOSP]["reason"] == reason, sid
        assert round(out[HOSP]["payout_amt"] * 100) == fen, sid
        if reason == "WAITING_PERIOD":
            assert {b["reason"] for b in out.values()} == {"WAITING_PERIOD"}


# The batch and direct payouts give the calculator only the policies of the product being
# paid; a renewal from last year's product id (huhuibao-2024 -> huhuibao-2025, the way
# this project names yearly products) must still count as a renewal there.
def test_claims_run_counts_a_renewal_from_another_product(tmp_path):
    d = tmp_path / "data"
    pol = pd.DataFrame([policy("O1", "W1", "2024-01-01", "2024-12-31", "huhuibao-2024"),
                        policy("E1", "W1", "2025-01-01", "2025-12-31")]
                       ).drop(columns="claim_free_years")
    st = pd.DataFrame([_full(stay("W1-19", "2025-01-20 10:00", "W1"))])
    write_fund(FundData(_persons(["W1"]), pol, st, None), d)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    r = puhui("claims", "run", "--product", ELDERLY.id, "--data", d, "--ledger", url,
              "--batch", "b1", "--out", tmp_path / "o", "--workers", 1)
    assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "o" / "eob.parquet", engine="fastparquet")
    assert eob[eob["benefit"] == HOSP]["reason"].tolist() == ["PAID"]


# -- (e) pricing's experience ---------------------------------------------------------------

def test_experience_applies_the_waiting_period_to_the_entrants_the_data_shows(tmp_path):
    """Pricing applies the product as if in force: one notional calendar-year policy per
    person and data year. The waiting period takes off the claims of a new policy only
    where the data shows an entrant (enrolled this year, not the year before, that year
    in the data): V1 and V2 enter in 2025, V1's stay on day 89 pays nothing as-if and
    V2's on day 90 pays. In the data's first year the history is unknown (V3, day 89 of
    2024, pays), and a renewal (V4, enrolled both years, day 89 of 2025) pays."""
    from puhui.pricing.experience import experience

    st = pd.DataFrame([_full(stay("N89", "2025-03-31 10:00", "V1")),     # 2025: day 89
                       _full(stay("N90", "2025-04-01 10:00", "V2")),
                       _full(stay("F89", "2024-03-30 10:00", "V3")),     # 2024: leap year
                       _full(stay("R89", "2025-03-31 10:00", "V4"))])
    assert day("2025-01-01", 89).date().isoformat() == "2025-03-31"
    pol = pd.DataFrame([policy("E1", "V1", "2025-01-01", "2025-12-31"),
                        policy("E2", "V2", "2025-01-01", "2025-12-31"),
                        policy("E3", "V4", "2024-01-01", "2024-12-31"),
                        policy("E4", "V4", "2025-01-01", "2025-12-31")]
                       ).drop(columns="claim_free_years")
    write_fund(FundData(_persons(["V1", "V2", "V3", "V4"]), pol, st, None), tmp_path)
    e = experience(ELDERLY, read_fund(tmp_path)).set_index(["psn_no", "year"])
    pay = e[f"payout_{HOSP}"]
    assert pay.loc[("V1", 2025)] == 0                 # an entrant inside the waiting period
    assert e.loc[("V1", 2025), f"eligible_{HOSP}"] == 0
    assert pay.loc[("V2", 2025)] == PAID              # day 90
    assert pay.loc[("V3", 2024)] == PAID              # first data year: history unknown
    assert pay.loc[("V4", 2025)] == PAID              # a renewal
    assert pay.sum() == 3 * PAID


def test_claims_direct_counts_a_renewal_from_another_product(tmp_path):
    from puhui.claims import ledger
    from puhui.claims.direct import direct_payout

    url = f"sqlite:///{tmp_path / 'l.db'}"
    con = ledger.connect(url)
    pol = pd.DataFrame([policy("O1", "W1", "2024-01-01", "2024-12-31", "huhuibao-2024"),
                        policy("E1", "W1", "2025-01-01", "2025-12-31")])
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pol)
    con.close()
    out = direct_payout(ELDERLY, url, dict(
        setl_id="D1", psn_no="W1", setl_time="2025-01-20", med_type="21", hosp_lv=3,
        insutype="310", medfee_sumamt=60000, fulamt_ownpay_amt=0, overlmt_selfpay=0,
        psn_part_amt=20000, hifp_pay=40000, hifob_pay=0, hifmi_pay=0, maf_pay=0))
    assert {b["benefit"]: b["reason"] for b in out["benefits"]}[HOSP] == "PAID"


def test_no_policies_at_all_is_no_policy_not_a_crash():
    # found by the property test once the 90 days were read: the waiting-period step
    # indexed an empty policy table
    empty = pd.DataFrame([policy("N1", "P9", "2025-01-01", "2025-12-31")]).iloc[:0]
    d = both([stay("S1", day("2025-01-01", 10), "P1")], empty)
    assert reasons(d) == ["NO_POLICY"]
