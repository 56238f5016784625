"""A payout's CPU cut again (issue 20, the throughput target; session 23) without
changing what it decides, records or refuses:

- the privacy guard remembers the field names it found clean (never one it refused);
- on PostgreSQL a unit of work's reads are sent with its BEGIN and locks (one round
  trip), answered only until its first write, and read what the locks guard;
- a reversal's reads of a few settlement ids go by index on PostgreSQL
  (``= ANY (ARRAY(...))`` for ``IN (SELECT ...)``), giving the same rows; its
  decisions' reasons are one read, not one a settlement.
"""
import threading
import time

import pytest

from puhui.claims import ledger
from puhui.fund import privacy
from tests.ledgers import new_postgres_database, run_sql


# the privacy guard's clean names ---------------------------------------------------
NAMES = ["psn_no", "setl_id", "medfee_sumamt", "hzxm", "PatientName", "phone", "姓名",
         "手机13812345678", "note", "lines", "address", "110101199003074578"]


def _by_hand(name: str) -> list[tuple[str, str]]:
    """What the guard says of a field ``name`` holding a harmless value, computed from
    the rules themselves (the guard before its memory of clean names)."""
    if privacy.shown_name(name) != name:
        return [("(a field whose name is not shown)", "personal data in a field name")]
    if privacy.column_rule(name) is not None:
        return [(name, f"{privacy.column_rule(name)} (by its field name)")]
    return []


def test_the_guard_says_the_same_of_a_name_the_first_time_and_after():
    for _ in range(3):                      # the first call decides, the others remember
        for name in NAMES:
            assert privacy.identifying_fields({name: "x1"}) == _by_hand(name), name
            # nested, under another name: the same verdict on the inner name
            got = privacy.identifying_fields({"lines": [{name: "x1"}]})
            want = [(f"lines[0].{p}" if p == name else "lines[0]." + p, r)
                    for p, r in _by_hand(name)]
            assert got == want, name
    # a refused name is never kept (no personal data stays in the process's memory)
    refused = [n for n in NAMES if _by_hand(n)]
    assert refused and not set(refused) & privacy._CLEAN_NAMES
    # a clean name's value is still checked every time
    assert privacy.identifying_fields({"note": "13812345678"}) == [("note",
                                                                    "mobile phone numbers")]


# reads sent with the BEGIN ---------------------------------------------------------
@pytest.fixture
def pg_ledger(postgres_server):
    url = new_postgres_database(postgres_server)
    con = ledger.connect(url)
    run_sql(url, "INSERT INTO policies VALUES ('POL1', 'P1', 'p', '2025-01-01', "
                 "'2025-12-31', 12900, 0, 1, 0)")
    run_sql(url, "INSERT INTO accumulators VALUES ('POL1', 'hospital', 100)")
    yield url, con
    con.close()


def test_reads_sent_with_the_begin_are_what_a_read_then_gives(pg_ledger):
    url, con = pg_ledger
    reads = [ledger.accumulators_of_person_query("P1"), ledger.policies_query("P1", None)]
    with ledger.unit_of_work(con, locks=("psn:P1",), reads=reads):
        assert con._ahead                   # sent with the BEGIN
        got = ledger.accumulators_of_person(con, "P1")
        pols = ledger.policies_of(con, "P1", None)
        assert not con._ahead               # each answered once
    assert got == {"POL1": {"hospital": 100}}
    assert [p["policy_no"] for p in pols] == ["POL1"]
    # a fresh connection without reads ahead reads the same
    other = ledger.connect(url, must_exist=True)
    try:
        assert ledger.accumulators_of_person(other, "P1") == got
    finally:
        other.close()


def test_a_read_after_a_write_goes_to_the_server(pg_ledger):
    url, con = pg_ledger
    with ledger.unit_of_work(con, locks=("psn:P1",),
                             reads=[ledger.accumulators_of_person_query("P1")]):
        ledger.update_accumulators(con, "POL1", {"hospital": 777})
        # the read sent with the BEGIN saw 100; after the write it is not answered
        assert ledger.accumulators_of_person(con, "P1") == {"POL1": {"hospital": 777}}
    assert run_sql(url, "SELECT used_fen FROM accumulators") == [(777,)]
    # and a rollback forgets reads ahead too: the next unit reads what is committed
    with pytest.raises(RuntimeError):
        with ledger.unit_of_work(con, locks=("psn:P1",),
                                 reads=[ledger.accumulators_of_person_query("P1")]):
            raise RuntimeError("the payout failed")
    assert not con._ahead


def test_reads_sent_with_the_locks_see_what_the_holder_of_the_lock_committed(pg_ledger):
    """A unit that waits for a person's lock reads after it got it: the other payout's
    committed accumulators, never those from before it (a lost update)."""
    url, con = pg_ledger
    holder = ledger.connect(url, must_exist=True)
    got = {}
    try:
        with ledger.unit_of_work(holder, locks=("psn:P1",)):
            ledger.update_accumulators(holder, "POL1", {"hospital": 500})

            def waiter():
                with ledger.unit_of_work(con, locks=("psn:P1",),
                                         reads=[ledger.accumulators_of_person_query("P1")]):
                    got["acc"] = ledger.accumulators_of_person(con, "P1")
            t = threading.Thread(target=waiter)
            t.start()
            time.sleep(0.5)                 # the waiter is blocked on the lock
            assert "acc" not in got
        t.join(30)
    finally:
        holder.close()
    assert got["acc"] == {"POL1": {"hospital": 500}}


# a reversal's few ids read by index ------------------------------------------------
def test_few_ids_read_by_index_give_the_rows_of_the_set_read(pg_ledger, monkeypatch):
    """The reads through ``wanted`` with the index form and with the planner's own
    choice (``FEW_WANTED`` 0) give the same rows, and the decisions' reasons equal a
    read of each settlement's decisions."""
    from puhui.claims import ledger_pg

    url, con = pg_ledger
    run_sql(url, "INSERT INTO batches VALUES ('b', 'full', 'p', '', '', '', NULL, 'open', NULL)")
    for i in range(40):
        sid = f"S{i}"
        for b, why in (("hospital", "PAID"), ("drugs", "REVERSED" if i % 7 == 0 else "PAID")):
            if i % 5 != 4:                  # some ids never decided
                run_sql(url, "INSERT INTO decisions VALUES (?, ?, 'P1', 'POL1', 100, 0, "
                             "5000, ?, ?, 'b', 'p')", (sid, b, 10 * i, why))
            if i % 3 == 0:
                run_sql(url, "INSERT INTO payments (setl_id, applies_to, benefit, psn_no,"
                             " policy_no, payout_fen, kind, batch_id, recorded_at,"
                             " business_date) VALUES (?, ?, ?, 'P1', 'POL1', ?, 'pay', 'b',"
                             " '', '2025-01-01')", (sid, sid, b, 10 * i))
    ids = [f"S{i}" for i in range(0, 45, 2)]     # some not in the ledger at all
    sent = []
    real = ledger_pg.any_wanted
    monkeypatch.setattr(ledger_pg, "any_wanted", lambda sql: sent.append(sql) or real(sql))

    def reads():
        return (ledger.decided_or_paid_by(con, ids, "p", "POL1"),
                ledger.paid_for_settlements(con, ids, "p").sort_values(
                    ["applies_to", "benefit"]).to_dict("records"),
                ledger.kept_of(con, ids), ledger.decision_reasons_of(con, ids, "p"))

    by_index = reads()
    assert len(sent) == 4                   # each read went by index
    monkeypatch.setattr(ledger, "FEW_WANTED", 0)
    assert reads() == by_index and len(sent) == 4
    loop = {(sid, b): why for sid in ids for b, *_, why in ledger.decisions_of(con, sid, "p")}
    assert by_index[3] == loop and len(loop) == 2 * sum(1 for i in range(0, 45, 2)
                                                        if i < 40 and i % 5 != 4)


# a few rows of one INSERT as one statement -------------------------------------------
def test_a_few_rows_in_one_statement_write_what_rows_one_by_one_write(pg_ledger, tmp_path):
    """The kept writes of a unit of work, a few rows of an INSERT sent as one statement
    on PostgreSQL, leave what SQLite's one row after the other leaves: replaced
    decisions, entries kept once, accumulators set, a key written twice in one call
    (sent one by one: the last row wins)."""
    from puhui.claims import ledger_pg

    url, con = pg_ledger
    lite = ledger.connect(f"sqlite:///{tmp_path / 'l.db'}")
    lite.execute("INSERT INTO policies VALUES ('POL1', 'P1', 'p', '2025-01-01', "
                 "'2025-12-31', 12900, 0, 1, 0)")
    lite.execute("INSERT INTO accumulators VALUES ('POL1', 'hospital', 100)")   # as pg's
    sent = []
    real = ledger_pg.rows_in_one
    ledger_pg_rows = lambda sql, rows: (lambda r: sent.append(r is not None) or r)(  # noqa
        real(sql, rows))
    import unittest.mock as mock

    def write(c):
        with ledger.unit_of_work(c, locks=("psn:P1",)):
            ledger.ensure_open_batch(c, "direct:p", "direct", "p")
            for payout in (100, 250):       # decided twice: the second replaces
                ledger.record_decisions(c, [(f"S{i}", b, "P1", "POL1", 500, 0, 5000, payout,
                                             "PAID", "direct:p")
                                            for i in range(3) for b in ("h", "d")], "p")
                ledger.record_entries(c, [(f"S{i}", f"S{i}", b, "P1", "POL1", payout, "pay",
                                           "direct:p", "t") for i in range(3)
                                          for b in ("h", "d")], "2025-02-01")
            ledger.update_accumulators(c, "POL1", {"ded": 300, "lim": 900})
            c.executemany("INSERT INTO accumulators VALUES (?, ?, ?) ON CONFLICT (policy_no,"
                          " accumulator) DO UPDATE SET used_fen = excluded.used_fen",
                          [("POL1", "lim", 1), ("POL1", "lim", 2)])

    with mock.patch.object(ledger_pg, "rows_in_one", ledger_pg_rows):
        write(con)
    write(lite)
    # both ways were taken (the two accumulator writes, one after the other, go as one
    # list of rows whose keys repeat: one by one)
    assert sent.count(True) >= 4 and False in sent
    for q in ("SELECT setl_id, benefit, payout_fen FROM decisions ORDER BY 1, 2",
              "SELECT setl_id, benefit, payout_fen FROM payments ORDER BY entry_id",
              "SELECT accumulator, used_fen FROM accumulators ORDER BY 1"):
        assert [tuple(r) for r in con.execute(q).fetchall()] == \
            [tuple(r) for r in lite.execute(q).fetchall()], q
    assert con.execute("SELECT used_fen FROM accumulators WHERE accumulator = 'lim'"
                       ).fetchone()[0] == 2
    lite.close()
