"""The benefit calculator on Huhuibao 2025 as written in actuarial/products/huhuibao-2025.toml
(hospital in-list self-pay: deductible 12,000, 11,000 after 2 claim-free years, 10,000
after 3; 70 %, 50 % pre-existing; limit 1,000,000. Special drugs: no deductible, 70 %,
30 % pre-existing, limit 1,000,000. Proton 300,000, overseas drugs 300,000, CAR-T
500,000, each 70 % / 30 %). Every scenario runs through both faces, the vectorised
calculator and the per-settlement reference, which must agree to the fen. Amounts in
yuan in the comments, fen in the assertions."""

import pandas as pd
import pytest

from puhui.benefits.calculator import adjudicate
from puhui.benefits.reasons import CODES
from puhui.benefits.reference import adjudicate_sequence
from puhui.products.model import load_product, product_path

HHB25 = load_product(product_path("huhuibao-2025"))


def settlement(sid, day, inlist=0.0, outlist=0.0, psn="P1", med_type="21", hosp_lv=3,
               insutype="310"):
    """A settlement whose person still owes ``inlist`` (in-list) and ``outlist``
    (out-of-list) yuan after basic insurance."""
    f = lambda y: int(round(y * 100))
    return dict(setl_id=sid, psn_no=psn, setl_time=pd.Timestamp(day), med_type=med_type,
                hosp_lv=hosp_lv, insutype=insutype, medfee_sumamt=f(inlist + outlist) * 3,
                fulamt_ownpay_amt=f(outlist), overlmt_selfpay=0,
                psn_part_amt=f(inlist + outlist), refund_of=None)


def policy(psn="P1", pre=False, claim_free=0, no="HHB25-1", start="2025-01-01",
           end="2025-12-31"):
    return dict(policy_no=no, psn_no=psn, product_id="huhuibao-2025",
                start_date=pd.Timestamp(start), end_date=pd.Timestamp(end), premium=12900,
                preexisting=pre, consent=True, claim_free_years=claim_free)


def line(sid, code, amount, cls="self", no=1):
    return dict(setl_id=sid, line_no=no, hilist_code=code, list_class=cls,
                amount=int(round(amount * 100)), preselfpay_amt=0)


def both(settlements, policies, lines=()):
    st = pd.DataFrame(settlements)
    pol = pd.DataFrame(policies)
    ln = pd.DataFrame(list(lines)) if lines else None
    v = adjudicate(HHB25, st, pol, ln)
    r = adjudicate_sequence(HHB25, st, pol, ln)
    assert list(v.settlements["setl_id"]) == list(r.settlements["setl_id"])
    for b in v.benefits:
        for k in ("eligible", "deductible", "ratio_bp", "payout", "reason"):
            assert (getattr(v, k)[b] == getattr(r, k)[b]).all(), (b, k)
    return v


def paid(d, benefit):
    return d.payout[benefit].tolist()


def reasons(d, benefit):
    return [CODES[r - 1] for r in d.reason[benefit]]


def test_a_stay_crossing_the_deductible():
    # In-list self-pay 20,000: deductible 12,000, then (20,000 - 12,000) x 70 % = 5,600.
    d = both([settlement("S1", "2025-03-01", inlist=20000)], [policy()])
    assert d.deductible["hospital"].tolist() == [1200000]
    assert paid(d, "hospital") == [560000]
    assert reasons(d, "hospital") == ["PAID"]


def test_two_stays_sharing_the_deductible():
    # 8,000 then 9,000: the first goes wholly to the deductible (8,000 of 12,000);
    # the second takes the remaining 4,000 and pays (9,000 - 4,000) x 70 % = 3,500.
    d = both([settlement("S1", "2025-03-01", inlist=8000),
              settlement("S2", "2025-05-01", inlist=9000)], [policy()])
    assert d.deductible["hospital"].tolist() == [800000, 400000]
    assert paid(d, "hospital") == [0, 350000]
    assert reasons(d, "hospital") == ["DEDUCTIBLE", "PAID"]


@pytest.mark.parametrize("years,deductible", [(0, 12000), (1, 12000), (2, 11000), (3, 10000),
                                              (5, 10000)])
def test_claim_free_deductible_reduction(years, deductible):
    # 20,000 in-list: payout (20,000 - deductible) x 70 %.
    d = both([settlement("S1", "2025-03-01", inlist=20000)], [policy(claim_free=years)])
    assert d.deductible["hospital"].tolist() == [deductible * 100]
    assert paid(d, "hospital") == [round((20000 - deductible) * 0.7 * 100)]


def test_pre_existing_member():
    # Hospital at 50 %: (20,000 - 12,000) x 50 % = 4,000.
    # Special drug 10,000 at 30 %: 3,000 (no deductible).
    d = both([settlement("S1", "2025-03-01", inlist=20000),
              settlement("S2", "2025-04-01", outlist=10000, med_type="14")],
             [policy(pre=True)], [line("S2", "SD-01", 10000)])
    assert paid(d, "hospital") == [400000, 0]
    assert paid(d, "special_drugs") == [0, 300000]
    assert d.ratio_bp["hospital"].tolist()[0] == 5000


def test_special_drug_with_no_deductible():
    # Pembrolizumab (SD-01) 16,666.67 out of list: 70 % with no deductible = 11,666.669
    # -> 11,666.67. The hospital benefit pays nothing on out-of-list amounts.
    d = both([settlement("S1", "2025-02-10", outlist=16666.67, med_type="14")], [policy()],
             [line("S1", "SD-01", 16666.67)])
    assert d.deductible["special_drugs"].tolist() == [0]
    assert paid(d, "special_drugs") == [1166667]
    assert reasons(d, "hospital") == ["NOT_COVERED"]


def test_limit_reached_mid_year():
    # Stay 1: in-list 800,000 -> (800,000 - 12,000) x 70 % = 551,600.
    # Stay 2: in-list 800,000 -> 560,000 due, 448,400 left of the 1,000,000 limit.
    # Stay 3: 100,000 -> limit used up, 0.
    d = both([settlement("S1", "2025-02-01", inlist=800000),
              settlement("S2", "2025-06-01", inlist=800000),
              settlement("S3", "2025-09-01", inlist=100000)], [policy()])
    assert paid(d, "hospital") == [55160000, 44840000, 0]
    assert reasons(d, "hospital") == ["PAID", "PAID_TO_LIMIT", "LIMIT_REACHED"]
    assert sum(paid(d, "hospital")) == 100000000


def test_reversal_restores_the_deductible_for_later_settlements():
    # Before: S1 8,000 (all deductible), S2 9,000 -> 3,500 (as above).
    # S1 is reversed: re-adjudicated without it, S2 meets the whole 12,000 deductible
    # alone: 9,000 - 9,000 = 0 paid. The claims batch pays the difference, -3,500.
    before = both([settlement("S1", "2025-03-01", inlist=8000),
                   settlement("S2", "2025-05-01", inlist=9000)], [policy()])
    after = both([settlement("S2", "2025-05-01", inlist=9000)], [policy()])
    assert paid(before, "hospital") == [0, 350000]
    assert paid(after, "hospital") == [0]
    assert after.deductible["hospital"].tolist() == [900000]


def test_drug_excluded_because_basic_insurance_paid_it():
    # SD-06 alectinib billed as a class-B line: basic insurance paid it, so the
    # special-drug benefit does not.
    d = both([settlement("S1", "2025-03-01", inlist=3000, med_type="14")], [policy()],
             [line("S1", "SD-06", 8000, cls="B")])
    assert paid(d, "special_drugs") == [0]
    assert reasons(d, "special_drugs") == ["EXCLUDED_BASIC_PAID"]


def test_overseas_drug():
    # Sotorasib (OS-01, overseas) 40,000: overseas benefit 70 % = 28,000; the domestic
    # special-drug benefit does not count overseas drugs.
    d = both([settlement("S1", "2025-03-01", outlist=40000, med_type="14")], [policy()],
             [line("S1", "OS-01", 40000)])
    assert paid(d, "overseas_drugs") == [2800000]
    assert paid(d, "special_drugs") == [0]


def test_car_t_limited_to_500000():
    # Axicabtagene ciloleucel (C2025-10) 1,200,000 yuan: 70 % = 840,000, limit 500,000.
    # The same stay's in-list self-pay 30,000 goes to the hospital benefit:
    # (30,000 - 12,000) x 70 % = 12,600.
    d = both([settlement("S1", "2025-03-01", inlist=30000, outlist=1200000)], [policy()],
             [line("S1", "C2025-10", 1200000)])
    assert paid(d, "cart") == [50000000]
    assert reasons(d, "cart") == ["PAID_TO_LIMIT"]
    assert paid(d, "hospital") == [1260000]


def test_proton_limit_300000():
    # Proton 278,000 (TX-PROTON) twice: 194,600, then 105,400 left of 300,000.
    d = both([settlement("S1", "2025-03-01", outlist=278000),
              settlement("S2", "2025-08-01", outlist=278000)], [policy()],
             [line("S1", "TX-PROTON", 278000), line("S2", "TX-PROTON", 278000)])
    assert paid(d, "proton") == [19460000, 10540000]


def test_denials_before_the_benefit():
    d = both([settlement("S1", "2024-12-31", inlist=50000),          # before the policy
              settlement("S2", "2025-03-01", inlist=50000, psn="P9")],  # no policy at all
             [policy()])
    r = dict(zip(d.settlements["setl_id"], reasons(d, "hospital")))
    assert r == {"S1": "OUTSIDE_POLICY", "S2": "NO_POLICY"}
    assert sum(d.total_payout()) == 0


def test_hospital_level_filter():
    # 2022 onwards the hospital benefit needs a level 2+ hospital.
    d = both([settlement("S1", "2025-03-01", inlist=50000, hosp_lv=1)], [policy()])
    assert reasons(d, "hospital") == ["NOT_COVERED"]


def test_long_form_has_one_row_per_settlement_and_benefit():
    d = both([settlement("S1", "2025-03-01", inlist=20000)], [policy()])
    lg = d.long()
    assert len(lg) == len(HHB25.benefits)
    row = lg[lg["benefit"] == "hospital"].iloc[0]
    assert (row["eligible_amt"], row["deductible_amt"], row["payout_amt"], row["status"]) == \
        (2000000, 1200000, 560000, "paid")


def test_line_benefits_without_any_lines_say_so_and_with_an_empty_table_are_not_covered():
    """Lines not given at all (None): the line benefits read LINES_NOT_GIVEN, in the
    vectorised calculator and the settlement-by-settlement reference alike; an empty
    lines table says the settlement has none: NOT_COVERED. Denials keep their own reason
    and the benefits that do not read lines are untouched."""
    st = [settlement("S1", "2025-03-01", inlist=20000),
          settlement("S2", "2025-03-01", inlist=500, psn="NOBODY")]
    d = both(st, [policy()])
    assert reasons(d, "special_drugs") == ["LINES_NOT_GIVEN", "NO_POLICY"]
    assert reasons(d, "hospital") == ["PAID", "NO_POLICY"]
    empty = pd.DataFrame({k: pd.Series(dtype=t) for k, t in
                          [("setl_id", object), ("line_no", "int64"), ("hilist_code", object),
                           ("list_class", object), ("amount", "int64"),
                           ("preselfpay_amt", "int64")]})
    for f in (adjudicate, adjudicate_sequence):
        e = f(HHB25, pd.DataFrame(st), pd.DataFrame([policy()]), empty)
        assert reasons(e, "special_drugs") == ["NOT_COVERED", "NO_POLICY"], f
