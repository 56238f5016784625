"""A direct payout (直赔): one bill paid at the counter against the ledger, then the
month's batch on data that holds it. The batch keeps what was paid directly and pays
nothing twice. One person of the sample with a large hospital bill in 2025."""

import tempfile

import puhui

url = f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
one = puhui.read_fund(puhui.api.SAMPLE).people(["P00001065"])
st, lines = one.settlements, one.lines
bill = st[st["setl_id"] == "S000178115"].iloc[0]
before = st["setl_id"] != bill["setl_id"]

# the ledger learns the person's policy and earlier bills from a batch
first = puhui.ClaimsBatch("huhuibao-2025", url, "earlier").run(
    st[before], one.policies, lines[lines["setl_id"].isin(st.loc[before, "setl_id"])],
    one.persons)
print(f"batch 'earlier': {before.sum()} settlements, paid {first.paid_:,.2f} yuan")

eob = puhui.pay_direct("huhuibao-2025", url, bill, lines=lines)
print(f"direct payout of {bill['setl_id']} ({bill['medfee_sumamt']:,.2f} yuan billed): "
      f"{eob['total_payout']:,.2f} yuan")
for b in eob["benefits"]:
    if b["eligible_amt"]:
        print(f"  {b['benefit']}: eligible {b['eligible_amt']:,.2f}, deductible "
              f"{b['deductible_amt']:,.2f}, ratio {b['ratio']:.0%} -> {b['payout_amt']:,.2f} "
              f"({b['reason']})")
again = puhui.pay_direct("huhuibao-2025", url, bill, lines=lines)
print(f"sent again: already decided {again.get('already_decided', False)}, "
      f"{again['total_payout']:,.2f} yuan (not paid twice)")

month = puhui.ClaimsBatch("huhuibao-2025", url, "month").run(one)
print(f"the month's batch on data holding the bill: paid {month.paid_:,.2f} yuan more")
