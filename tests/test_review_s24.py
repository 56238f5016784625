"""Session 24's review (s24-rev): the PostgreSQL ledger's new write and lock paths
against SQLite's answer on the same calls, and the order the one-statement locks are
taken in, seen from PostgreSQL's own view of locks.

Truth is built apart from the code under test: the same ledger calls on a SQLite file
(its own engine, one statement a row), and ``pg_locks`` read from a third connection."""
import random
import threading
import time

import psycopg
import pytest

from puhui.claims import ledger, ledger_pg
from tests.ledgers import new_postgres_database, run_sql


@pytest.fixture
def pg_url(postgres_server):
    url = new_postgres_database(postgres_server)
    ledger.connect(url).close()
    return url


def _settlement_rows(rng: random.Random, n: int, ids: int) -> list[tuple]:
    """``n`` stored-settlement rows (:data:`puhui.claims.ledger.STORED` order) over
    ``ids`` setl_ids, so most ids come back several times, within one part of 256 rows
    and across parts; text with percent signs, quotes and placeholders' look."""
    rows = []
    for i in range(n):
        sid = f"S{rng.randrange(ids):04d}"
        rows.append((sid, rng.choice(["P1", "P%s", "P'2", "P?"]),
                     f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                     rng.choice(["11", "21"]), rng.randint(1, 3), "390",
                     rng.randint(0, 10**9), i, rng.choice([0, 5])))
    return rows


def _stored(url: str) -> dict[str, list]:
    return {
        "settlements": run_sql(url, "SELECT setl_id, psn_no, setl_date, med_type, hosp_lv, "
                                    "insutype, psn_part_fen, fulamt_ownpay_fen, "
                                    "overlmt_selfpay_fen, source FROM settlements ORDER BY "
                                    "setl_id"),
        # the replaced row is renumbered as SQLite's delete-and-insert does: the order of
        # seq is the order of the last write of each id
        "by_seq": [r[0] for r in run_sql(url, "SELECT setl_id FROM settlements ORDER BY seq")],
        "dates": run_sql(url, "SELECT setl_id, setl_date FROM settlement_dates ORDER BY 1"),
        "lines": run_sql(url, "SELECT setl_id, hilist_code, list_class, amount_fen FROM "
                              "settlement_lines ORDER BY 1, 2, 4"),
        "accumulators": run_sql(url, "SELECT policy_no, accumulator, used_fen FROM "
                                     "accumulators ORDER BY 1, 2"),
        "audit": [r[:2] for r in run_sql(url, "SELECT command, detail FROM audit ORDER BY id")],
    }


def _many_writes(url: str) -> None:
    """One unit of work of repeated keys: settlements stored in three calls (a key
    repeated inside one statement's 256 rows, across its parts and across calls one after
    the other, which the PostgreSQL connection merges), accumulators set one row a call
    for one key several times over (ON CONFLICT DO UPDATE: the last wins), and audit rows
    one after the other (merged into one multi-row INSERT)."""
    rng = random.Random(24)
    con = ledger.connect(url)
    try:
        with ledger.unit_of_work(con):
            con.execute("INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ("POL1", "P1", "p", "2025-01-01", "2025-12-31", 12900, 0, 1, 0))
            for call in range(3):
                rows = _settlement_rows(rng, 700 if call == 1 else 40, 300)
                lines = [(r[0], f"X{j}%", "A", j) for j, r in enumerate(rows[:30])]
                ledger.store_settlements(con, rows, lines, "batch:b%1")
            for v in range(300):
                ledger.update_accumulators(con, "POL1", {f"acc{v % 7}": v,
                                                         "deductible": v * 3})
            for i in range(40):
                ledger.audit(con, "review", "b%1", who="w", n=i, text="50% 'q' %s ?")
    finally:
        con.close()


def test_merged_writes_of_repeated_keys_are_sqlites(pg_url, tmp_path):
    """Settlements, dates, lines, accumulators and audit rows written through the merged,
    multi-row path on PostgreSQL are what SQLite keeps from the same calls, a key repeated
    within a statement, across its parts of 256 rows and across merged calls."""
    sqlite_url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger.connect(sqlite_url).close()
    _many_writes(pg_url)
    _many_writes(sqlite_url)
    pg, lite = _stored(pg_url), _stored(sqlite_url)
    for name in pg:
        assert [tuple(r) for r in pg[name]] == [tuple(r) for r in lite[name]], name
    assert len(lite["settlements"]) > 200 and len(lite["audit"]) == 40


def test_the_locks_of_one_statement_are_taken_left_to_right(pg_url):
    """Deadlock freedom rests on every unit of work taking its locks in one order: the
    one SELECT of :func:`puhui.claims.ledger_pg.locks_statement` must take them from left
    to right. With the higher key held elsewhere, a unit asking for both holds the lower
    one while it waits; with the lower one held elsewhere, it holds neither the higher
    one nor anything else but the shared write lock."""
    names = sorted(["psn:A", "psn:B"], key=ledger_pg.lock_key)
    low, high = (ledger_pg.lock_key(n) for n in names)
    watch = psycopg.connect(pg_url, autocommit=True)

    def granted(pid: int) -> set[int]:
        rows = watch.execute("SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
                             "WHERE locktype = 'advisory' AND granted AND pid = %s",
                             (pid,)).fetchall()
        return {k & 0xFFFFFFFFFFFFFFFF for k, in rows}

    def waiting(pid: int) -> bool:
        return bool(watch.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND "
                                  "NOT granted AND pid = %s", (pid,)).fetchall())

    try:
        for held_elsewhere, expect in ((names[1], {low}), (names[0], set())):
            blocker = ledger.connect(pg_url)
            unit = ledger.connect(pg_url)
            try:
                blocker.begin(locks=(held_elsewhere,))
                pid = unit._con.info.backend_pid
                t = threading.Thread(target=lambda: (unit.begin(locks=tuple(names)),
                                                     unit.execute("ROLLBACK")))
                t.start()
                for _ in range(200):
                    if waiting(pid):
                        break
                    time.sleep(0.02)
                assert waiting(pid)
                mask = 0xFFFFFFFFFFFFFFFF
                got = granted(pid) - {ledger_pg.WRITE_LOCK}
                assert got == {k & mask for k in expect}, held_elsewhere
                blocker.execute("ROLLBACK")
                t.join(10)
                assert not t.is_alive()
            finally:
                blocker.close()
                unit.close()
    finally:
        watch.close()


def test_a_kept_executemany_naming_wanted_reads_the_few_ids(pg_url, monkeypatch):
    """Inside :func:`puhui.claims.ledger._wanted` with a few ids, PostgreSQL has no
    temporary table of them: every statement naming ``wanted`` must read the array. An
    ``executemany`` did not (only ``execute`` and ``frame`` did): it read the temporary
    table a larger call had left on the connection, empty, and silently touched no row
    (or failed where there was none)."""
    con = ledger.connect(pg_url)
    try:
        with ledger.unit_of_work(con):
            con.executemany("INSERT INTO settlement_dates VALUES (?, ?)",
                            [(f"W{i}", "2025-01-01") for i in range(5)])
        # a large call first: the temporary table exists (and is emptied afterwards)
        monkeypatch.setattr(ledger, "FEW_WANTED", 0)
        with ledger._wanted(con, ["W0"]):
            pass
        monkeypatch.undo()
        with ledger.unit_of_work(con):
            with ledger._wanted(con, ["W1", "W2"]):
                assert con.wanted_ids == ["W1", "W2"]
                con.executemany("UPDATE settlement_dates SET setl_date = ? WHERE setl_id IN"
                                " (SELECT setl_id FROM wanted)", [("2025-02-0%d" % d,)
                                                                  for d in (2, 3)])
        got = run_sql(pg_url, "SELECT setl_id, setl_date FROM settlement_dates ORDER BY 1")
        assert got == [("W0", "2025-01-01"), ("W1", "2025-02-03"), ("W2", "2025-02-03"),
                       ("W3", "2025-01-01"), ("W4", "2025-01-01")]
    finally:
        con.close()
