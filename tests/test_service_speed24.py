"""A payout's statements cut again on PostgreSQL (issue 20, the throughput target;
session 24) without changing what it decides, records or refuses:

- the unit of work's advisory locks are one ``SELECT`` (five were five statements on
  each side), taken in the same order;
- kept writes of one statement one after the other go as one (the payout's audit row
  and the request's), and a settlement the ledger never kept inputs of deletes no lines;
- a statement of more than 50 parameters (the five decisions) is sent with PostgreSQL's
  own placeholders, converted once (psycopg converts such a statement at every call);
- a read's column names are taken without psycopg's Column objects.
"""
import psycopg
import pytest

from puhui.claims import ledger, ledger_pg
from tests.ledgers import new_postgres_database, run_sql
from tests.test_service_speed19 import served_pg  # noqa: F401 - the fixture


def _statements(monkeypatch) -> list[str]:
    """Every statement psycopg is asked to send from now (text, and ``xN`` for N rows
    of an ``executemany``), from any cursor of any connection."""
    sent: list[str] = []
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def one(self, query, *a, **k):
        sent.append(str(query))
        return execute(self, query, *a, **k)

    def many(self, query, rows, *a, **k):
        rows = list(rows)
        sent.extend([str(query)] * len(rows))
        return executemany(self, query, rows, *a, **k)

    monkeypatch.setattr(psycopg.Cursor, "execute", one)
    monkeypatch.setattr(psycopg.Cursor, "executemany", many)
    return sent


def test_a_payout_sends_fifteen_statements(served_pg, monkeypatch):  # noqa: F811
    """BEGIN, the locks, five reads; the decisions, the entry, the stored settlement and
    its date, the accumulators, the two audit rows, the Idempotency-Key's answer and the
    COMMIT: 15 statements (21 in session 23). A change that adds one fails here."""
    svc, body = served_pg
    svc.settlement(body("T0"), "k", "idem-0", "who")       # learns the standing facts
    sent = _statements(monkeypatch)
    status, answer, _ = svc.settlement(body("T1"), "k", "idem-1", "who")
    assert status == 201 and answer["setl_id"] == "T1"
    locks = [s for s in sent if "pg_advisory" in s]
    assert len(locks) == 1 and locks[0].count("pg_advisory_xact_lock") >= 4, locks
    audits = [s for s in sent if s.startswith("INSERT INTO audit")]
    assert len(audits) == 1 and audits[0].count("), (") == 1, audits   # two rows, one
    assert not [s for s in sent if "DELETE FROM settlement_lines" in s]
    assert len(sent) == 15, sent
    # what was recorded: the payout's audit row, then the request's
    con = svc.connections.get()
    rows = con.execute("SELECT command FROM audit ORDER BY id DESC LIMIT 2").fetchall()
    assert [r[0] for r in rows] == ["api POST /v1/settlement", "claims direct"]
    assert ledger.idempotent_answer(con, "k", ledger_pg_key("idem-1"))[2] == 201


def ledger_pg_key(idem: str) -> str:
    """The Idempotency-Key as the service keeps it (per product served)."""
    from puhui.service import per_product

    return per_product("huhuibao-2025", idem)


@pytest.fixture
def pg_url(postgres_server):
    url = new_postgres_database(postgres_server)
    ledger.connect(url).close()
    return url


def test_the_locks_of_one_statement_are_held_as_named(pg_url):
    """Each named lock is held by the unit of work, shared or exclusive as named, and
    a second unit asking for an exclusive one waits for the first (checked from a
    third connection with PostgreSQL's own view of locks)."""
    con = ledger.connect(pg_url)
    other = ledger.connect(pg_url)
    watch = psycopg.connect(pg_url, autocommit=True)
    try:
        with ledger.unit_of_work(con, locks=("psn:P1", "shared:grp", "idem:k:1")):
            held = watch.execute(
                "SELECT (classid::bigint << 32) | objid::bigint, mode FROM pg_locks WHERE "
                "locktype = 'advisory' AND granted AND pid = %s",
                (con._con.info.backend_pid,)).fetchall()
            want = {(ledger_pg.lock_key("psn:P1"), "ExclusiveLock"),
                    (ledger_pg.lock_key("grp"), "ShareLock"),
                    (ledger_pg.lock_key("idem:k:1"), "ExclusiveLock"),
                    (ledger_pg.WRITE_LOCK, "ShareLock")}
            got = {(k & 0xFFFFFFFFFFFFFFFF, m) for k, m in held}
            assert {(k & 0xFFFFFFFFFFFFFFFF, m) for k, m in want} == got
            # another unit of work for P1 waits: its lock is not granted within 0.3 s
            other._con.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                with ledger.unit_of_work(other, locks=("psn:P1",)):
                    pass
    finally:
        watch.close()
        other.close()
        con.close()


def test_rows_sent_with_numbered_placeholders_are_the_rows_given(pg_url):
    """Five decisions of eleven columns (55 parameters: PostgreSQL's own placeholders)
    and text holding a percent sign are written as given."""
    con = ledger.connect(pg_url)
    try:
        rows = [(f"S{i}", b, "P1", "POL1", 500 + i, 0, 5000, 100 * i, "PAID 100%",
                 "direct:p") for i in range(1) for b in ("a", "b", "c", "d", "e")]
        with ledger.unit_of_work(con, locks=("psn:P1",)):
            ledger.ensure_open_batch(con, "direct:p", "direct", "p")
            ledger.record_decisions(con, rows, "p")
        got = con.execute("SELECT setl_id, benefit, psn_no, policy_no, eligible_fen, "
                          "deductible_fen, ratio_bp, payout_fen, reason, batch_id FROM "
                          "decisions ORDER BY benefit").fetchall()
        assert [tuple(r) for r in got] == rows
    finally:
        con.close()
    run_sql(pg_url, "SELECT 1")


def test_a_reversal_reads_its_few_ids_without_the_temporary_table(served_pg, monkeypatch):  # noqa: F811
    """A reversal's reads of its policy year's ids name them as an array (no temporary
    table filled and emptied five times), and every such read gives what it gives
    through the table (the path of more than FEW_WANTED ids), on the same ledger."""
    svc, body = served_pg
    for i in range(4):
        svc.settlement(body(f"R{i}") | {"setl_time": f"2025-0{i + 2}-01"}, "k", f"r{i}", "w")
    con = svc.connections.get()
    ids = [f"R{i}" for i in range(4)] + ["nobody"]
    pol = con.execute("SELECT policy_no FROM decisions WHERE setl_id = 'R0' LIMIT 1"
                      ).fetchone()[0]
    reads = {
        "paid": lambda: ledger.paid_by_benefit(con, ids, "huhuibao-2025"),
        "reasons": lambda: ledger.decision_reasons_of(con, ids, "huhuibao-2025"),
        "ours": lambda: ledger.decided_or_paid_by(con, ids, "huhuibao-2025", pol),
        "kept": lambda: ledger.kept_of(con, ids),
        "frame": lambda: ledger.paid_for_settlements(con, ids, "huhuibao-2025")
        .sort_values(["applies_to", "benefit"]).to_dict("list"),
    }
    by_array = {k: f() for k, f in reads.items()}
    monkeypatch.setattr(ledger, "FEW_WANTED", 0)          # the temporary table's path
    by_table = {k: f() for k, f in reads.items()}
    assert by_array == by_table
    assert by_array["paid"] and by_array["reasons"] and by_array["kept"]
    monkeypatch.undo()
    sent = _statements(monkeypatch)
    raw = dict(body("R1"), setl_id="V1", refund_of="R1", setl_time="2025-03-02")
    for k in ("medfee_sumamt", "psn_part_amt", "hifp_pay"):
        raw[k] = -raw[k]
    status, answer, _ = svc.reversal(raw, "k", "v1", "w")
    assert status == 201 and answer["refund_of"] == "R1"
    assert not [s for s in sent if "INTO wanted" in s or s.startswith("DELETE FROM wanted")]
    assert len([s for s in sent if s.startswith("WITH wanted AS")]) >= 3
