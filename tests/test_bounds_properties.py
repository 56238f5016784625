"""The two faces of the benefit calculator agree to the fen over the whole accepted range
of the fund data (issue 17, point 4): amounts up to the bound of a settlement
(:data:`~puhui.fund.schema.MAX_SETTLEMENT_FEN`), dates anywhere from
:data:`~puhui.fund.schema.FIRST_DATE` to :data:`~puhui.fund.schema.LAST_DATE`, many
settlements per person. The vectorised face runs in int64 (where an overflow would
show as a difference); the per-settlement face in Python integers, which cannot overflow.
"""

import datetime as dt

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_benefits_properties import CODES, MATCHERS, PRODUCTS, same

from puhui.benefits.calculator import adjudicate
from puhui.benefits.reference import adjudicate_sequence
from puhui.fund.schema import FIRST_DATE, LAST_DATE, MAX_SETTLEMENT_FEN

DAYS = (LAST_DATE - FIRST_DATE).days
#: policy years may start anywhere a whole year of cover fits in the range
LAST_START = (dt.date(LAST_DATE.year, 1, 1) - FIRST_DATE).days

# amounts across the range, its edges drawn often
amount_st = st.one_of(st.integers(0, MAX_SETTLEMENT_FEN),
                      st.sampled_from([0, 1, MAX_SETTLEMENT_FEN - 1, MAX_SETTLEMENT_FEN]),
                      st.integers(0, 2_000_000_00))
settlement_st = st.fixed_dictionaries({
    "person": st.integers(0, 2),
    # near one of the person's policies (most are covered), or anywhere in the range
    "policy": st.integers(0, 2),
    "offset": st.integers(-40, 400),
    "anywhere": st.one_of(st.none(), st.none(), st.none(), st.integers(0, DAYS)),
    "total": amount_st,
    "out_share": st.sampled_from([0, 1, 2, 5, 10]),      # tenths of the total out of list
    "med_type": st.sampled_from(["11", "14", "21"]),
    "hosp_lv": st.integers(1, 3),
    "insutype": st.sampled_from(["310", "310", "390"]),
    "line": st.one_of(st.none(), st.tuples(st.sampled_from(CODES),
                                           st.sampled_from(["self", "C", "B"]))),
})
person_st = st.fixed_dictionaries({
    "pre": st.booleans(), "claim_free": st.integers(0, 4),
    # first policy year's start (days after FIRST_DATE), and how many consecutive years
    "start": st.one_of(st.integers(0, LAST_START),
                       st.sampled_from([0, LAST_START, LAST_START - 365])),
    "years": st.sampled_from([0, 1, 1, 2, 3]), "gap": st.booleans()})


def build(pid, people, rows):
    """Policies (one-year, consecutive or with a gap) and settlements in engine types;
    every settlement's amounts and lines within the accepted range and its identities."""
    product = PRODUCTS[pid]
    first = pd.Timestamp(FIRST_DATE)
    pols, starts = [], {}
    for i, p in enumerate(people):
        day = first + pd.Timedelta(days=p["start"])
        starts[i] = []
        for y in range(p["years"]):
            s = day + pd.DateOffset(years=y) + pd.Timedelta(days=30 * y * p["gap"])
            e = s + pd.DateOffset(years=1) - pd.Timedelta(days=1)
            if e > pd.Timestamp(LAST_DATE):
                break
            starts[i].append(s)
            pols.append(dict(policy_no=f"N{i}-{y}", psn_no=f"P{i}", product_id=product.id,
                             start_date=s, end_date=e, premium=0, preexisting=p["pre"],
                             claim_free_years=p["claim_free"], consent=True))
    st_rows, lines = [], []
    for k, r in enumerate(rows):
        mine = starts[r["person"]]
        if r["anywhere"] is not None or not mine:
            day = first + pd.Timedelta(days=r["anywhere"] or 0)
        else:
            day = mine[r["policy"] % len(mine)] + pd.Timedelta(days=r["offset"])
        day = min(max(day, first), pd.Timestamp(LAST_DATE))
        total = r["total"]
        out = total * r["out_share"] // 10
        sid = f"S{k:04d}"
        if r["line"] is not None:
            lines.append(dict(setl_id=sid, line_no=1, hilist_code=r["line"][0],
                              list_class=r["line"][1], amount=out, preselfpay_amt=0))
        st_rows.append(dict(setl_id=sid, psn_no=f"P{r['person']}", setl_time=day,
                            med_type=r["med_type"], hosp_lv=r["hosp_lv"],
                            insutype=r["insutype"], medfee_sumamt=total,
                            fulamt_ownpay_amt=out, overlmt_selfpay=0, psn_part_amt=total,
                            refund_of=None))
    pol = pd.DataFrame(pols) if pols else pd.DataFrame(
        columns=["policy_no", "psn_no", "product_id", "start_date", "end_date", "premium",
                 "preexisting", "claim_free_years", "consent"])
    for c in ("start_date", "end_date"):
        pol[c] = pd.to_datetime(pol[c]).astype("datetime64[ns]")
    stl = pd.DataFrame(st_rows)
    stl["setl_time"] = stl["setl_time"].astype("datetime64[ns]")
    return stl, pol, (pd.DataFrame(lines) if lines else None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pid=st.sampled_from(sorted(PRODUCTS)),
       people=st.lists(person_st, min_size=3, max_size=3),
       rows=st.lists(settlement_st, min_size=10, max_size=60))
def test_faces_agree_over_the_whole_accepted_range(pid, people, rows):
    st_, pol, ln = build(pid, people, rows)
    v = adjudicate(PRODUCTS[pid], st_, pol, ln, matcher=MATCHERS[pid])
    r = adjudicate_sequence(PRODUCTS[pid], st_, pol, ln, matcher=MATCHERS[pid])
    same(v, r)
    for b in PRODUCTS[pid].benefits:
        assert (v.payout[b.id] >= 0).all()
        assert (v.payout[b.id] <= v.eligible[b.id]).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pid=st.sampled_from(sorted(PRODUCTS)), n=st.integers(200, 400),
       start=st.integers(0, LAST_START))
def test_many_settlements_at_the_bound_in_one_policy_year(pid, n, start):
    """A person with hundreds of settlements each at the top of the range in one policy
    year: the running sums reach n x 10^10 fen, and both faces still agree."""
    people = [dict(pre=False, claim_free=0, start=start, years=1, gap=False)] + \
        [dict(pre=False, claim_free=0, start=0, years=0, gap=False)] * 2
    rows = [dict(person=0, policy=0, offset=k % 365, anywhere=None, total=MAX_SETTLEMENT_FEN,
                 out_share=k % 3, med_type="21", hosp_lv=3, insutype="310", line=None)
            for k in range(n)]
    st_, pol, ln = build(pid, people, rows)
    v = adjudicate(PRODUCTS[pid], st_, pol, ln, matcher=MATCHERS[pid])
    same(v, adjudicate_sequence(PRODUCTS[pid], st_, pol, ln, matcher=MATCHERS[pid]))
