"""The ledger on PostgreSQL (issue 20): the same statements as SQLite, translated; a
batch through the command line gives the same EOB, summary and ledger as SQLite; a
database that is not a ledger is left alone; a server that is not there is a clear
message. (The money-safety suite runs on both backends: tests/test_money_safety.py.)"""
import json

import pandas as pd
import pytest

from puhui.claims import ledger
from puhui.claims.ledger_pg import pg_schema, translate
from puhui.errors import InputError
from tests.conftest import puhui
from tests.ledgers import new_postgres_database, run_sql


@pytest.mark.parametrize("sql, want", [
    ("SELECT a FROM t WHERE x = ? AND y IS NOT ?",
     "SELECT a FROM t WHERE x = %s AND y IS DISTINCT FROM %s"),
    ("SELECT MAX(batch_id = ?) AS d FROM payments", "SELECT MAX((batch_id = %s)::int) AS d FROM payments"),
    ("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
     "INSERT INTO decisions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
     "(setl_id, benefit) DO UPDATE SET psn_no = excluded.psn_no, policy_no = "
     "excluded.policy_no, eligible_fen = excluded.eligible_fen, deductible_fen = "
     "excluded.deductible_fen, ratio_bp = excluded.ratio_bp, payout_fen = "
     "excluded.payout_fen, reason = excluded.reason, batch_id = excluded.batch_id"),
    ("INSERT OR REPLACE INTO settlements (setl_id, psn_no) VALUES (?, ?)",
     "INSERT INTO settlements (setl_id, psn_no) VALUES (%s, %s) ON CONFLICT (setl_id) DO "
     "UPDATE SET psn_no = excluded.psn_no, seq = nextval('settlements_seq_seq')"),
    ("SELECT 1 WHERE a + b > 0 AND 100%", "SELECT 1 WHERE a + b > 0 AND 100%%"),
])
def test_statements_in_postgresql(sql, want):
    assert translate(sql) == want


def test_every_statement_of_the_ledger_translates():
    """A statement with a SQLite-only form the translation does not know (a new
    INSERT OR REPLACE table, a function PostgreSQL lacks) fails here, not in a batch."""
    import inspect
    import re

    src = inspect.getsource(ledger)
    for m in re.finditer(r"INSERT OR REPLACE INTO (\w+)", src):
        translate(m.group(0) + " VALUES (?)")
    for word in ("GROUP_CONCAT(", "IFNULL(", "strftime('", "julianday(", "datetime('", "rowid",
                 "last_insert_rowid"):
        assert word not in src.replace("sqlite_master", ""), word
    assert "BIGINT" in pg_schema(ledger.SCHEMA) and " INTEGER " not in pg_schema(ledger.SCHEMA)


def _ledger_rows(url):
    """The ledger's contents, comparable across backends (no entry numbers, no times)."""
    q = {"payments": "SELECT setl_id, applies_to, benefit, psn_no, policy_no, payout_fen, "
                     "kind, batch_id FROM payments ORDER BY 1, 2, 3, 8",
         "decisions": "SELECT * FROM decisions ORDER BY setl_id, benefit",
         "accumulators": "SELECT * FROM accumulators ORDER BY 1, 2",
         "settlements": "SELECT setl_id, psn_no, setl_date, med_type, hosp_lv, insutype, "
                        "psn_part_fen, fulamt_ownpay_fen, overlmt_selfpay_fen, source, digest "
                        "FROM settlements ORDER BY setl_id",
         "lines": "SELECT * FROM settlement_lines ORDER BY 1, 2, 3, 4",
         "reversals": "SELECT * FROM reversals ORDER BY 1",
         "policies": "SELECT * FROM policies ORDER BY 1"}
    return {k: [tuple(int(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, float)
                      else v for v in r) for r in run_sql(url, sql)] for k, sql in q.items()}


def test_a_batch_on_postgresql_is_the_batch_on_sqlite(small_city_dir, tmp_path,
                                                      postgres_server):
    """`claims run` twice (the second a resumed run under the same id) and a direct
    payout, on each backend: the same eob.parquet bytes, summary, status and ledger."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'l.db'}",
            "postgres": new_postgres_database(postgres_server)}
    out = {}
    for name, url in urls.items():
        for k in (1, 2):
            r = puhui("claims", "run", "--product", "huhuibao-2024", "--data", small_city_dir,
                      "--ledger", url, "--out", tmp_path / f"{name}{k}", "--batch", "b1")
            assert r.returncode == 0, r.stderr
        s = run_sql(urls["sqlite"], "SELECT psn_no FROM policies WHERE product_id ="
                    " 'huhuibao-2024' ORDER BY policy_no LIMIT 1")[0][0]
        f = tmp_path / "direct.json"
        f.write_text(json.dumps(dict(
            setl_id="D1", psn_no=s, setl_time="2024-12-30", med_type="21", hosp_lv=3,
            insutype="310", medfee_sumamt=90000, fulamt_ownpay_amt=0, overlmt_selfpay=0,
            psn_part_amt=30000, hifp_pay=60000, hifob_pay=0, hifmi_pay=0, maf_pay=0)))
        d = puhui("claims", "direct", "--product", "huhuibao-2024", "--ledger", url,
                  "--settlement", f)
        assert d.returncode in (0, 2), d.stderr            # the same answer either way
        st = puhui("ledger", "status", "--ledger", url)
        out[name] = (d.returncode, d.stdout, st.stdout.split("\n", 1)[1], _ledger_rows(url))
    for k in (1, 2):
        assert (tmp_path / f"sqlite{k}" / "eob.parquet").read_bytes() == \
            (tmp_path / f"postgres{k}" / "eob.parquet").read_bytes()
        a, b = (json.loads((tmp_path / f"{n}{k}" / "summary.json").read_text())
                for n in ("sqlite", "postgres"))
        assert a == b
    assert out["sqlite"] == out["postgres"]
    assert out["postgres"][3]["payments"], "the batch paid something"


def test_a_database_that_is_not_a_ledger_is_refused_and_left_alone(postgres_server):
    url = new_postgres_database(postgres_server)
    with pytest.raises(InputError, match="an empty database"):
        ledger.connect(url, must_exist=True)
    run_sql(url, "CREATE TABLE foo (x int)")
    for must in (True, False):
        with pytest.raises(InputError, match="a database holding other tables"):
            ledger.connect(url, must_exist=must)
    assert run_sql(url, "SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = 'public'") == [("foo",)]


def test_a_newer_schema_is_refused(postgres_server):
    url = new_postgres_database(postgres_server)
    ledger.connect(url).close()
    run_sql(url, "UPDATE meta SET value = '9'")
    with pytest.raises(InputError, match="newer than this puhui"):
        ledger.connect(url)


def test_no_server_there_is_a_clear_message_without_the_password(tmp_path):
    from puhui.tempdb import free_port

    url = f"postgresql://claims:s3cret@127.0.0.1:{free_port()}/ledger"
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 2
    assert "cannot connect" in r.stderr and "s3cret" not in r.stderr + r.stdout
    assert "claims:***@127.0.0.1" in r.stderr
    assert "Traceback" not in r.stderr


def test_two_ledgers_created_at_once_on_one_new_database(postgres_server):
    """Two batches started together on a new database both create the tables: the
    second waits for the first's write lock instead of failing on a half-made schema."""
    import threading

    url = new_postgres_database(postgres_server)
    errors = []

    def open_it():
        try:
            ledger.connect(url).close()
        except Exception as exc:          # noqa: BLE001 - collected for the assert
            errors.append(exc)

    ts = [threading.Thread(target=open_it) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert errors == []
    assert run_sql(url, "SELECT value FROM meta")[0][0] == ledger.SCHEMA_VERSION


def test_amounts_beyond_32_bits(postgres_server):
    """Fen of a large product year (over 21,474,836.47 yuan) fit: BIGINT, and SUM comes
    back as an int as on SQLite."""
    url = new_postgres_database(postgres_server)
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.ensure_open_batch(con, "b", "claimed", "p")
        ledger.record_entries(con, [("S1", "S1", "hospital", "P1", None, 3_000_000_000, "pay",
                                     "b", "now"),
                                    ("S2", "S2", "hospital", "P1", None, 3_000_000_000, "pay",
                                     "b", "now")])
    assert ledger.batch_total(con, "b") == 6_000_000_000
    n_pol, batches, total = ledger.status(con)
    assert total == 6_000_000_000 and isinstance(total, int)
    df = ledger.batch_entries_between(con, "b", "P0", "P9")
    assert df["payout_fen"].dtype == "int64" and df["payout_fen"].sum() == 6_000_000_000
    assert isinstance(ledger.export_payments(con), pd.DataFrame)
    con.close()
