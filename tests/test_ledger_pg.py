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
    ("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
     "INSERT INTO decisions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
     "(setl_id, product_id, benefit) DO UPDATE SET psn_no = excluded.psn_no, policy_no = "
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
                                     "b", "now")], "2025-01-31")
    assert ledger.batch_total(con, "b") == 6_000_000_000
    n_pol, batches, total = ledger.status(con)
    assert total == 6_000_000_000 and isinstance(total, int)
    df = ledger.batch_entries_between(con, "b", "P0", "P9")
    assert df["payout_fen"].dtype == "int64" and df["payout_fen"].sum() == 6_000_000_000
    assert isinstance(ledger.export_payments(con), pd.DataFrame)
    con.close()


def _insured_ledger(city, server):
    """A PostgreSQL ledger with the city's policies, and two insured people of 2025."""
    url = new_postgres_database(server)
    assert puhui("ledger", "load", "--data", city, "--ledger", url).returncode == 0
    pol = pd.read_parquet(city / "policies.parquet")
    per = pd.read_parquet(city / "persons.parquet")
    kind = dict(zip(per["psn_no"].astype(str), per["insutype"].astype(str)))
    people = sorted(set(pol.loc[pol["product_id"] == "huhuibao-2025", "psn_no"].astype(str)))
    return url, [(p, kind[p]) for p in people[:2]]


def _direct(sid, psn, kind, inlist=60000):
    return dict(setl_id=sid, psn_no=psn, setl_time="2025-12-15", med_type="21", hosp_lv=3,
                insutype=kind, medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def test_direct_payouts_lock_their_person_not_the_ledger(city_1500_2025, postgres_server):
    """Issue 20, point 3: while one unit of work holds person A, a direct payout for
    person B finishes; one for A waits until A's unit of work ends; a whole-ledger unit
    (a batch's block) waits for both kinds."""
    import threading

    from puhui.claims.direct import direct_payout
    from puhui.products.model import load_product, product_path

    product = load_product(product_path("huhuibao-2025"))
    url, [(a, ka), (b, kb)] = _insured_ledger(city_1500_2025, postgres_server)
    holder = ledger.connect(url)
    done = {}

    def pay(name, body):
        done[name] = direct_payout(product, url, body)["total_payout"]

    with ledger.unit_of_work(holder, locks=(f"psn:{a}",)):
        tb = threading.Thread(target=pay, args=("b", _direct("DB1", b, kb)))
        ta = threading.Thread(target=pay, args=("a", _direct("DA1", a, ka)))
        tb.start()
        ta.start()
        tb.join(timeout=30)
        assert "b" in done, "a payout for another person waited for person A's lock"
        ta.join(timeout=1.0)
        assert "a" not in done, "a payout for person A did not wait for A's lock"
    ta.join(timeout=30)
    assert "a" in done and done["a"] > 0 and done["b"] > 0
    with ledger.unit_of_work(holder):                     # the whole ledger
        tc = threading.Thread(target=pay, args=("c", _direct("DB2", b, kb, 30000)))
        tc.start()
        tc.join(timeout=1.0)
        assert "c" not in done, "a payout did not wait for a whole-ledger unit of work"
    tc.join(timeout=30)
    assert "c" in done
    holder.close()


def test_one_setl_id_sent_for_two_people_at_once_is_decided_once(city_1500_2025,
                                                                 postgres_server):
    """Two requests with the same setl_id for different people, at once (their person
    locks differ): the id's own lock makes one of them see the other's decision, so the
    id is decided once and the second is a conflict, never two payouts under one id."""
    import threading

    from puhui.claims.direct import direct_payout
    from puhui.errors import Conflict
    from puhui.products.model import load_product, product_path

    product = load_product(product_path("huhuibao-2025"))
    url, [(a, ka), (b, kb)] = _insured_ledger(city_1500_2025, postgres_server)
    outcome = []

    def pay(psn, kind):
        try:
            outcome.append(direct_payout(product, url, _direct("SAME", psn, kind)))
        except Conflict as exc:
            outcome.append(exc)

    for _ in range(3):
        ts = [threading.Thread(target=pay, args=p) for p in ((a, ka), (b, kb))]
        [t.start() for t in ts]
        [t.join() for t in ts]
    assert run_sql(url, "SELECT COUNT(DISTINCT psn_no) FROM decisions WHERE setl_id = "
                        "'SAME'")[0][0] == 1
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE applies_to = 'SAME'")[0][0] == 1
    assert sum(isinstance(o, Conflict) for o in outcome) >= 1
