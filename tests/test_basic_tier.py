"""The basic-insurance tier on hand-worked bills (Shanghai rule files of
actuarial/basic/, 2024). Each expected value's arithmetic is in the comments; amounts
in yuan there, fen in the assertions."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puhui.fund.schema import FUND_PAYMENTS
from puhui.tiers.basic import BILL_AMOUNTS, load_schemes, settle

SCHEMES = load_schemes()


def bill(person=1, date="2024-03-01", med_type="21", hosp_lv=3, insutype="310", age=45,
         retired=False, low_income=False, a=0, b=0, c=0, self_=0, over=0):
    return dict(person=person, setl_time=pd.Timestamp(date), med_type=med_type,
                hosp_lv=hosp_lv, insutype=insutype, age=age, retired=retired,
                low_income=low_income, gender="1", amt_a=round(a * 100), amt_b=round(b * 100),
                amt_c=round(c * 100), amt_self=round(self_ * 100), amt_overlimit=round(over * 100))


def run(*bills):
    return settle(pd.DataFrame(list(bills)), SCHEMES)


def test_employee_deductible_crossed_within_a_stay():
    # In-service employee, inpatient: deductible 1,500/yr, 85 %.
    # stay 1: 1,000 class A -> all deductible; fund 0; person 1,000
    # stay 2: 3,000 class A -> deductible 500 more; fund (3,000 - 500) x 85 % = 2,125
    r = run(bill(a=1000), bill(date="2024-04-01", a=3000))
    assert r["act_pay_dedc"].tolist() == [100000, 50000]
    assert r["hifp_pay"].tolist() == [0, 212500]
    assert r["psn_part_amt"].tolist() == [100000, 87500]      # 3,000 - 2,125


def test_retired_versus_in_service():
    # Same 10,000 class A stay. In service: (10,000 - 1,500) x 85 % = 7,225.
    # Retired: (10,000 - 1,200) x 92 % = 8,096.
    r = run(bill(person=1, a=10000), bill(person=2, a=10000, retired=True, age=65))
    assert r["hifp_pay"].tolist() == [722500, 809600]
    assert r["act_pay_dedc"].tolist() == [150000, 120000]


def test_class_b_up_front_share_and_primary_care():
    # 5,000 class A + 2,000 class B at a level-3 hospital: up-front 10 % of 2,000 = 200;
    # in scope 6,800; fund (6,800 - 1,500) x 85 % = 4,505.
    # The same at level 1 (class B paid as class A, seed 002): no up-front share;
    # in scope 7,000; fund (7,000 - 1,500) x 85 % = 4,675.
    r = run(bill(person=1, a=5000, b=2000), bill(person=2, a=5000, b=2000, hosp_lv=1))
    assert r["preselfpay_amt"].tolist() == [20000, 0]
    assert r["inscp_scp_amt"].tolist() == [680000, 700000]
    assert r["hifp_pay"].tolist() == [450500, 467500]


def test_out_of_list_items_stay_with_the_person():
    # 10,000 class A + 3,000 self-pay + 500 over a price cap:
    # fund (10,000 - 1,500) x 85 % = 7,225; person 13,500 - 7,225 = 6,275, of which
    # out-of-list 3,500 and in-list 2,775 (deductible 1,500 + 15 % of 8,500 = 1,275).
    r = run(bill(a=10000, self_=3000, over=500)).iloc[0]
    assert r["fulamt_ownpay_amt"] == 300000 and r["overlmt_selfpay"] == 50000
    assert r["hifp_pay"] == 722500 and r["psn_part_amt"] == 627500
    assert r["psn_part_amt"] - r["fulamt_ownpay_amt"] - r["overlmt_selfpay"] == 277500


def test_cap_reached_mid_year_then_supplementary_fund():
    # In service, in scope 400,000 then 400,000 (class A), same year.
    # stay 1: (400,000 - 1,500) x 85 % = 338,725.
    # stay 2: uncapped 400,000 x 85 % = 340,000; cap 550,000 leaves 211,275 -> paid.
    #   covered = 211,275 / 0.85 = 248,558.8235..., rounded up to the fen: 248,558.83;
    #   overflow = 400,000 - 248,558.83 = 151,441.17; supplementary 80 % = 121,152.936
    #   -> 121,152.94.
    r = run(bill(a=400000), bill(date="2024-06-01", a=400000))
    assert r["hifp_pay"].tolist() == [33872500, 21127500]
    assert r["hifob_pay"].tolist() == [0, 12115294]
    assert r["hifp_pay"].sum() == 55000000


def test_cap_shared_by_outpatient_and_inpatient():
    # Outpatient 1,000 (in service, level 3, 65 %, outpatient deductible 1,500):
    # all deductible. Inpatient 2,000: its own deductible of 1,500 -> fund 500 x 85 % = 425.
    r = run(bill(med_type="11", a=1000), bill(date="2024-05-01", a=2000))
    assert r["hifp_pay"].tolist() == [0, 42500]
    assert r["act_pay_dedc"].tolist() == [100000, 150000]


@pytest.mark.parametrize("age,level,ratio", [(70, 1, 0.90), (70, 2, 0.80), (70, 3, 0.70),
                                             (40, 1, 0.80), (40, 2, 0.75), (40, 3, 0.60)])
def test_resident_age_bands_and_levels(age, level, ratio):
    # Resident inpatient: per-stay deductible 50 / 100 / 300 by level; ratio by age band.
    # Bill 10,000 class A: fund = (10,000 - deductible) x ratio.
    ded = {1: 50, 2: 100, 3: 300}[level]
    r = run(bill(insutype="390", age=age, hosp_lv=level, a=10000)).iloc[0]
    assert r["act_pay_dedc"] == ded * 100
    assert r["hifp_pay"] == round((10000 - ded) * ratio * 100)


def test_resident_per_stay_deductible_repeats():
    # Two level-2 stays of 1,000: each pays its own 100 deductible; 60+ -> 80 %.
    r = run(bill(insutype="390", age=65, hosp_lv=2, a=1000),
            bill(insutype="390", age=65, hosp_lv=2, a=1000, date="2024-07-01"))
    assert r["act_pay_dedc"].tolist() == [10000, 10000]
    assert r["hifp_pay"].tolist() == [72000, 72000]


def test_resident_critical_illness_above_its_deductible():
    # Resident aged 40, level 3, 200,000 class A: pooled (200,000 - 300) x 60 % = 119,820;
    # left in scope 80,180; critical illness (80,180 - 42,417) x 60 % = 22,657.80.
    r = run(bill(insutype="390", age=40, a=200000)).iloc[0]
    assert r["hifp_pay"] == 11982000
    assert r["hifmi_pay"] == 2265780


def test_medical_assistance_for_low_income():
    # Low-income in-service employee, 10,000 class A: pooled 7,225; left 2,775;
    # assistance 70 % = 1,942.50.
    r = run(bill(a=10000, low_income=True)).iloc[0]
    assert r["maf_pay"] == 194250


def test_accumulators_are_per_calendar_year():
    # December and January stays each meet a fresh 1,500 deductible.
    r = run(bill(date="2024-12-20", a=2000), bill(date="2025-01-05", a=2000))
    assert r["act_pay_dedc"].tolist() == [150000, 150000]


def test_rows_come_back_in_input_order():
    r = run(bill(date="2024-06-01", a=3000), bill(date="2024-01-01", a=1000))
    # processing is by time: the January bill takes 1,000 of deductible first
    assert r["act_pay_dedc"].tolist() == [50000, 100000]


amounts = st.integers(0, 300_000_00)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["11", "14", "21"]),
                          st.integers(1, 3), st.sampled_from(["310", "390"]),
                          st.integers(0, 100), st.booleans(), st.booleans(),
                          amounts, amounts, amounts, amounts, amounts,
                          st.integers(0, 364)), min_size=1, max_size=30))
def test_every_settlement_satisfies_the_identity(rows):
    df = pd.DataFrame([dict(person=p, setl_time=pd.Timestamp("2024-01-01") + pd.Timedelta(days=d),
                            med_type=m, hosp_lv=lv, insutype=ins, age=age,
                            retired=ret and ins == "310", low_income=low, gender="2",
                            amt_a=a, amt_b=b, amt_c=c, amt_self=s, amt_overlimit=o)
                       for p, m, lv, ins, age, ret, low, a, b, c, s, o, d in rows])
    r = settle(df, SCHEMES)
    total = df[list(BILL_AMOUNTS)].sum(axis=1).to_numpy()
    assert (r["medfee_sumamt"].to_numpy() == total).all()
    funds = sum(r[k] for k in FUND_PAYMENTS)
    assert (r["medfee_sumamt"] == funds + r["psn_part_amt"]).all()
    assert (r[list(FUND_PAYMENTS)] >= 0).all().all()
    inlist = r["psn_part_amt"] - r["fulamt_ownpay_amt"] - r["overlmt_selfpay"]
    assert (inlist >= 0).all()
    assert (funds <= r["inscp_scp_amt"]).all()


def test_rule_files_are_strict_and_name_the_file_that_is_wrong(tmp_path):
    # A misspelt key in a year's file that extends 2024 is reported in that file, with the
    # table and a "did you mean"; a ratio of 1.2 in a condition's option likewise.
    from puhui.basis import actuarial_dir
    from puhui.errors import RuleFileError
    from puhui.tiers.basic import load_scheme

    base = (actuarial_dir() / "basic" / "shanghai-employee-2024.toml").read_text(encoding="utf-8")
    (tmp_path / "base.toml").write_text(base, encoding="utf-8")
    child = tmp_path / "y2025.toml"
    child.write_text('extends = "base.toml"\nid = "y2025"\nvalid_from = 2025-01-01\n'
                     'valid_to = 2025-12-31\n\n[[layers]]\nid = "supplementary"\nratoi = 0.9\n',
                     encoding="utf-8")
    with pytest.raises(RuleFileError) as err:
        load_scheme(child)
    assert str(err.value).startswith(f"{child}: layers[0] (id \"supplementary\"): unknown key "
                                     f"'ratoi'; did you mean 'ratio'?")
    child.write_text(child.read_text(encoding="utf-8").replace("ratoi = 0.9", "ratio = 0.9"),
                     encoding="utf-8")
    s = load_scheme(child)                 # the corrected child loads, its change applied
    assert s.id == "y2025" and [la.ratio.constant for la in s.layers
                                if la.id == "supplementary"] == [9000]
    bad = tmp_path / "bad.toml"
    bad.write_text(base.replace("{ when = { retired = true }, value = 0.92 },",
                                "{ when = { retired = true }, value = 1.2 },"), encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"layers\[1\] \(id \"pooled_inpatient\"\)\.ratio\[0\]: "
                                            r"'value' = 1\.2: a ratio is from 0 to 1"):
        load_scheme(bad)
