"""A claims batch from DataFrames into a ledger (SQLite here; a ``postgresql://`` URL
works the same), month by month as a fund sends its extracts: the first half of 2025,
then the whole year. The second batch pays only what is new; running a batch again
pays nothing twice. On the sample's first 2,000 persons, so it runs in seconds."""

import sqlite3
import sys
import tempfile
from pathlib import Path

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(2000)
folder = Path(sys.argv[1]).parent if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
db = folder / "ledger.db"
url = f"sqlite:///{db}"


def ledger_total() -> float:
    """Net paid in the ledger, yuan, read with SQL (the ledger keeps fen)."""
    with sqlite3.connect(db) as con:
        return (con.execute("SELECT COALESCE(SUM(payout_fen), 0) FROM payments")
                .fetchone()[0]) / 100


st, lines = fund.settlements, fund.lines
in_2025 = st["setl_time"].dt.year == 2025
half = st[in_2025 & (st["setl_time"] < "2025-07-01")]
year = st[in_2025]

june = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="2025-06").run(
    half, fund.policies, lines[lines["setl_id"].isin(half["setl_id"])], fund.persons)
print(f"batch 2025-06: {len(half):,} settlements, paid {june.paid_:,.2f} yuan; "
      f"ledger {ledger_total():,.2f}")
print(june.by_benefit_.query("paid_yuan != 0").to_string(index=False))

dec = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="2025-12").run(
    year, fund.policies, lines[lines["setl_id"].isin(year["setl_id"])], fund.persons)
status = dec.summary_["settlements_by_status"]
print(f"batch 2025-12: {len(year):,} settlements, paid {dec.paid_:,.2f} yuan more "
      f"({status.get('paid', 0):,} paid now, {status.get('zero', 0):,} with nothing to pay now); "
      f"ledger {ledger_total():,.2f}")

again = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="2025-12").run(
    year, fund.policies, lines[lines["setl_id"].isin(year["setl_id"])], fund.persons)
print(f"batch 2025-12 run again: ledger {ledger_total():,.2f} yuan (unchanged)")

once = puhui.adjudicate(year, fund.policies, "huhuibao-2025",
                        lines=lines[lines["setl_id"].isin(year["setl_id"])],
                        persons=fund.persons)
print(f"the year adjudicated at once (no ledger): {once['payout_amt'].sum():,.2f} yuan")
