"""Properties of the benefit calculator over random people, policies and settlement
sequences (hypothesis), for every product in actuarial/products/."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puhui.benefits.calculator import adjudicate
from puhui.benefits.quantities import LineMatcher
from puhui.benefits.reference import adjudicate_sequence
from puhui.products.model import load_product, product_path

PRODUCTS = {pid: load_product(product_path(pid)) for pid in
            ("huhuibao-2025", "huhuibao-2021", "beijing-phjkb-2024", "elderly-medical-60-80")}
MATCHERS = {pid: LineMatcher(p) for pid, p in PRODUCTS.items()}
CODES = ["SD-01", "SD-06", "OS-01", "C2025-10", "TX-PROTON", "A-0001", "B-0001"]

settlement_st = st.fixed_dictionaries({
    "person": st.integers(0, 2),
    "day": st.integers(-40, 400),
    "inlist": st.integers(0, 600_000_00),
    "outlist": st.integers(0, 300_000_00),
    "med_type": st.sampled_from(["11", "14", "21"]),
    "hosp_lv": st.integers(1, 3),
    "insutype": st.sampled_from(["310", "310", "390"]),
    "line": st.one_of(st.none(), st.tuples(st.sampled_from(CODES),
                                           st.sampled_from(["self", "C", "B"]))),
})
person_st = st.fixed_dictionaries({
    "pre": st.booleans(), "claim_free": st.integers(0, 4), "renewal": st.booleans(),
    "insured": st.booleans()})


def build(product, people, rows):
    start = pd.Timestamp(product.start)
    pols = []
    for i, p in enumerate(people):
        if not p["insured"]:
            continue
        pols.append(dict(policy_no=f"N{i}", psn_no=f"P{i}", start_date=start,
                         end_date=pd.Timestamp(product.end), preexisting=p["pre"],
                         claim_free_years=p["claim_free"], product_id=product.id,
                         premium=0, consent=True))
        if p["renewal"]:
            pols.append(dict(policy_no=f"O{i}", psn_no=f"P{i}",
                             start_date=start - pd.DateOffset(years=1),
                             end_date=start - pd.Timedelta(days=1), preexisting=p["pre"],
                             claim_free_years=0, product_id="old", premium=0, consent=True))
    st_rows, lines = [], []
    for k, r in enumerate(rows):
        sid = f"S{k:04d}"
        line_amt = 0
        if r["line"] is not None:
            line_amt = min(r["outlist"], 500_000_00)
            lines.append(dict(setl_id=sid, line_no=1, hilist_code=r["line"][0],
                              list_class=r["line"][1], amount=line_amt, preselfpay_amt=0))
        st_rows.append(dict(setl_id=sid, psn_no=f"P{r['person']}",
                            setl_time=start + pd.Timedelta(days=r["day"]),
                            med_type=r["med_type"], hosp_lv=r["hosp_lv"],
                            insutype=r["insutype"], medfee_sumamt=r["inlist"] + r["outlist"],
                            fulamt_ownpay_amt=r["outlist"], overlmt_selfpay=0,
                            psn_part_amt=r["inlist"] + r["outlist"], refund_of=None))
    pol = pd.DataFrame(pols) if pols else pd.DataFrame(
        columns=["policy_no", "psn_no", "start_date", "end_date", "preexisting",
                 "claim_free_years", "product_id", "premium", "consent"])
    pol["start_date"] = pd.to_datetime(pol["start_date"])
    pol["end_date"] = pd.to_datetime(pol["end_date"])
    return pd.DataFrame(st_rows), pol, (pd.DataFrame(lines) if lines else None)


def same(a, b):
    assert list(a.settlements["setl_id"]) == list(b.settlements["setl_id"])
    for bid in a.benefits:
        for k in ("eligible", "deductible", "ratio_bp", "payout", "reason"):
            assert (getattr(a, k)[bid] == getattr(b, k)[bid]).all(), (bid, k)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# found by hypothesis on a fresh clone: the dropped row (day 0) comes after a day-296 row
# of the same person in the input; its 1 fen of deductible moves the later payout by 1 fen
@example(pid='beijing-phjkb-2024', people=[{'pre': False, 'claim_free': 0, 'renewal': False, 'insured': False}, {'pre': False, 'claim_free': 0, 'renewal': False, 'insured': True}, {'pre': False, 'claim_free': 0, 'renewal': False, 'insured': False}], rows=[{'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 0, 'day': 0, 'inlist': 0, 'outlist': 0, 'med_type': '11', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 1, 'day': 296, 'inlist': 1492913, 'outlist': 0, 'med_type': '14', 'hosp_lv': 1, 'insutype': '310', 'line': None}, {'person': 1, 'day': 0, 'inlist': 1, 'outlist': 0, 'med_type': '14', 'hosp_lv': 1, 'insutype': '310', 'line': None}], drop=10,)
@given(pid=st.sampled_from(sorted(PRODUCTS)),
       people=st.lists(person_st, min_size=3, max_size=3),
       rows=st.lists(settlement_st, min_size=1, max_size=25), drop=st.integers(0, 24))
def test_faces_agree_and_payouts_respect_the_terms(pid, people, rows, drop):
    product = PRODUCTS[pid]
    st_, pol, ln = build(product, people, rows)
    v = adjudicate(product, st_, pol, ln, matcher=MATCHERS[pid])
    r = adjudicate_sequence(product, st_, pol, ln, matcher=MATCHERS[pid])
    same(v, r)
    pol_no = v.settlements["policy_no"].to_numpy()
    for b in product.benefits:
        pay, elig, ded = v.payout[b.id], v.eligible[b.id], v.deductible[b.id]
        ratio = v.ratio_bp[b.id]
        assert (pay >= 0).all()
        # never more than the eligible amount after the deductible times the ratio
        assert (pay <= ((elig - ded) * ratio + 5000) // 10000).all()
        assert (ded <= elig).all()
        ded_max = max(v for _, v in b.layer.deductible.options) if b.layer.deductible else 0
        lim = b.layer.limit.options[-1][1] if b.layer.limit else None
        for p in set(pol_no[pol_no != None]):
            mine = pol_no == p
            assert ded[mine].sum() <= ded_max
            if lim is not None:
                assert pay[mine].sum() <= lim
    # shared limits hold across the benefits that share them
    for acc in {b.layer.limit_accumulator for b in product.benefits if b.layer.limit}:
        members = [b for b in product.benefits if b.layer.limit_accumulator == acc]
        lim = members[0].layer.limit.options[-1][1]
        total = sum(v.payout[b.id] for b in members)
        for p in set(pol_no[pol_no != None]):
            assert total[pol_no == p].sum() <= lim

    # A reversal: settlement k leaves the data. Re-adjudicating without it changes
    # nothing before it (per person, in time order), and both faces still agree.
    if drop < len(st_):
        k = st_["setl_id"].iloc[drop]
        st2 = st_[st_["setl_id"] != k]
        v2 = adjudicate(product, st2, pol, ln, matcher=MATCHERS[pid])
        same(v2, adjudicate_sequence(product, st2, pol, ln, matcher=MATCHERS[pid]))
        order = list(v.settlements["setl_id"])
        pos = order.index(k)
        who = v.settlements["psn_no"].iloc[pos]
        when = v.settlements["setl_time"].to_numpy()
        keep = np.array([i for i, s in enumerate(order) if s != k], dtype=int)
        # "before it" is processing order: the person's settlements by time, ties in
        # input order (not input order alone: a later row may be an earlier day)
        for b in product.benefits:
            old = v.payout[b.id][keep]
            new = v2.payout[b.id]
            earlier = np.array([v.settlements["psn_no"].iloc[i] != who
                                or (when[i], i) < (when[pos], pos) for i in keep], dtype=bool)
            assert (old[earlier] == new[earlier]).all()
