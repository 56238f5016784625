"""The ledger's per-block reads go through the people's index, whatever the planner
would guess.

A batch reads the ledger once per block of people (``psn_no`` from lo to hi). SQLite,
with no statistics, chose the index on settlement dates for "these people, dated within
their policies" (a year's dates cover every stored settlement) and scanned every policy
for "payments under this product": each block then read the whole table, 0.2 s a block
at 900,000 stored settlements and growing with every month the ledger holds (found in
session 15 on the 10-million-settlement batch). The plans are read with EXPLAIN QUERY
PLAN from the statements the ledger functions really run.
"""

from __future__ import annotations

import pytest

from puhui.claims import ledger


def _plans(con, call) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT that ``call()`` runs on ``con``."""
    seen: list[str] = []
    con.set_trace_callback(lambda sql: seen.append(sql))
    try:
        call()
    finally:
        con.set_trace_callback(None)
    plans = []
    for sql in seen:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = con.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans.append(" | ".join(r[-1] for r in rows))
    return plans


@pytest.fixture
def con(tmp_path):
    c = ledger.connect(f"sqlite:///{tmp_path / 'l.db'}")
    yield c
    c.close()


def test_stored_settlements_read_by_the_people_index(con):
    plans = _plans(con, lambda: ledger.stored_settlements(con, "P1", "P9", "2025-01-01",
                                                          "2025-12-31"))
    assert len(plans) == 2, plans
    for p in plans:
        assert "settlements_psn" in p and "settlements_date" not in p, p


def test_paid_between_looks_each_policy_up_by_its_key(con):
    plans = _plans(con, lambda: ledger.paid_between(con, "P1", "P9", "huhuibao-2025"))
    assert len(plans) == 1, plans
    assert "payments_psn" in plans[0], plans[0]
    assert "SCAN policies" not in plans[0], plans[0]


def test_block_reads_scan_no_table(con):
    """No per-block read of the ledger scans a whole table."""
    calls = [lambda: ledger.block_stamp(con, "P1", "P9"),
             lambda: ledger.reversals_between(con, "P1", "P9"),
             lambda: ledger.stored_settlements(con, "P1", "P9", "2025-01-01", "2025-12-31"),
             lambda: ledger.paid_between(con, "P1", "P9", "huhuibao-2025")]
    for call in calls:
        for p in _plans(con, call):
            assert "SCAN " not in p.replace("SCAN CONSTANT", ""), p
