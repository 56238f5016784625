"""Hostile review of the PostgreSQL ledger and `puhui serve` (session 18, issue 20)."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

from tests.conftest import puhui
from tests.ledgers import run_sql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PRODUCT = "huhuibao-2025"
ID_NUMBER = "110101199003074514"          # a valid resident ID number (check digit)
PHONE = "13812345678"


@pytest.fixture(scope="module")
def served_sqlite(city_1500_2025, tmp_path_factory):
    """(app, settle key, url, insured person, insutype) on a SQLite ledger."""
    from puhui.products.model import load_product, product_path
    from puhui.service import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('rev18') / 'l.db'}"
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0])
    return create_app(load_product(product_path(PRODUCT)), url), key, url, psn, kind


def _body(psn, kind, sid="R1", inlist=600):
    return dict(setl_id=sid, psn_no=psn, setl_time="2025-06-15", med_type="21", hosp_lv=3,
                insutype=kind, medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def _audit_text(url: str) -> str:
    return json.dumps(run_sql(url, "SELECT who, command, detail FROM audit"))


def test_an_id_or_phone_number_as_setl_id_is_neither_echoed_nor_audited(served_sqlite):
    # An ID number is ASCII digits, so it passed as a "pseudonymous token": GET
    # /v1/settlements/<ID number> answered 404 "settlement <ID number> has not been
    # decided" and the audit kept it; a body refused by the privacy guard (400) had its
    # setl_id kept in the audit row too.
    from fastapi.testclient import TestClient

    app, key, url, psn, kind = served_sqlite
    c = TestClient(app)
    h = {"Authorization": f"Bearer {key}"}
    for value in (ID_NUMBER, PHONE):
        r = c.get(f"/v1/settlements/{value}", headers=h)
        assert r.status_code == 400 and value not in r.text
        assert "personal data" in r.json()["detail"]
        r = c.get(f"/v1/persons/{value}/accumulators", headers=h)
        assert r.status_code == 400 and value not in r.text
        r = c.post("/v1/pre-settlement", json=_body(psn, kind, sid=value), headers=h)
        assert r.status_code == 400 and value not in r.text
        r = c.post("/v1/settlement", json=_body(psn, kind, sid=value), headers=h)
        assert r.status_code == 400 and value not in r.text
    audit = _audit_text(url)
    assert ID_NUMBER not in audit and PHONE not in audit
    # a pseudonymous id is still audited and answered
    assert c.get("/v1/settlements/S-not-there", headers=h).status_code == 404
    assert "S-not-there" in _audit_text(url)


def test_an_idempotency_key_holding_personal_data_is_refused_and_never_echoed(served_sqlite):
    # The key was kept in the ledger's idempotency table and echoed by the 409
    # ("Idempotency-Key '110101199003074514' was used for another request").
    from fastapi.testclient import TestClient

    app, key, url, psn, kind = served_sqlite
    c = TestClient(app)
    h = {"Authorization": f"Bearer {key}", "Idempotency-Key": ID_NUMBER}
    r = c.post("/v1/settlement", json=_body(psn, kind, sid="R-idem-1"), headers=h)
    assert r.status_code == 400 and ID_NUMBER not in r.text
    assert "Idempotency-Key" in r.json()["detail"]
    assert run_sql(url, "SELECT COUNT(*) FROM decisions WHERE setl_id = 'R-idem-1'")[0][0] == 0
    assert ID_NUMBER not in json.dumps(run_sql(url, "SELECT * FROM idempotency"))
    # a 409 names no key
    h["Idempotency-Key"] = "k-secretive-42"
    assert c.post("/v1/settlement", json=_body(psn, kind, sid="R-idem-2"),
                  headers=h).status_code == 201
    r = c.post("/v1/settlement", json=_body(psn, kind, sid="R-idem-3"), headers=h)
    assert r.status_code == 409 and "k-secretive-42" not in r.text


def _asgi_post(app, headers: list[tuple[bytes, bytes]], receive):
    """POST /v1/pre-settlement straight to the ASGI app: (status, body)."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/pre-settlement",
             "raw_path": b"/v1/pre-settlement", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent
                                     if m["type"] == "http.response.body")


def test_a_body_over_the_limit_is_refused_before_it_is_held_in_memory(served_sqlite):
    # The service read the whole body (request.body()) and only then compared it with
    # 64 KB: a client streaming a chunked body of gigabytes had the server hold it all.
    app, key, *_ = served_sqlite
    auth = (b"authorization", f"Bearer {key}".encode())
    calls = [0]

    async def endless(chunk=b"x" * 16384):          # a chunked body that never ends
        calls[0] += 1
        if calls[0] > 200:                           # 3 MB: the old code got here
            raise AssertionError("the server kept reading past the limit")
        return {"type": "http.request", "body": chunk, "more_body": True}

    status, body = _asgi_post(app, [auth, (b"content-type", b"application/json"),
                                    (b"transfer-encoding", b"chunked")], endless)
    assert status == 413 and calls[0] <= 6
    assert json.loads(body)["title"] == "body too large"

    async def never(*_):                             # a declared length over the limit
        raise AssertionError("the body was read although its length is over the limit")

    status, _ = _asgi_post(app, [auth, (b"content-length", str(10 ** 10).encode())], never)
    assert status == 413


def test_a_password_is_masked_whatever_it_holds():
    # describe_url masked up to the first '@': 'claims:p@ss@db' showed 'claims:***@ss@db',
    # and libpq then named part of the password as the host in its error; an empty user
    # (':pw@') and a password= query parameter were shown as they are.
    from puhui.claims.ledger import connect, shown_url
    from puhui.errors import InputError

    for url, secret in [("postgresql://claims:p@ss:w@rd@127.0.0.1:1/l", "ss:w"),
                        ("postgresql://:s3cret@127.0.0.1:1/l", "s3cret"),
                        ("postgresql://claims@127.0.0.1:1/l?sslmode=disable&password=s3cret",
                         "s3cret"),
                        ("postgres://claims:s3cret@[::1]:1/l", "s3cret")]:
        shown = shown_url(url)
        assert secret not in shown and "***" in shown, shown
        with pytest.raises(InputError) as e:
            connect(url, must_exist=True)
        assert secret not in str(e.value) and "***" in str(e.value)
    with pytest.raises(InputError, match="percent-encoded"):
        connect("postgresql://claims:p@ss@127.0.0.1:1/l")


def test_serve_on_a_port_in_use_is_exit_2_saying_so(served_sqlite):
    # uvicorn logged "[Errno 98] address already in use" and exited 3, a code the
    # contract does not have (0 done, 1 job failed, 2 bad usage); an unknown --host too.
    import socket

    from puhui.errors import InputError
    from puhui.products.model import load_product, product_path
    from puhui.service import serve

    _, _, url, _, _ = served_sqlite
    product = load_product(product_path(PRODUCT))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match="cannot listen there"):
            serve(product, url, "127.0.0.1", port, workers=1)
        with pytest.raises(InputError, match="cannot listen there"):
            serve(product, url, "127.0.0.1", port, workers=3)
    with pytest.raises(InputError, match="--host no-such-host.invalid"):
        serve(product, url, "no-such-host.invalid", port)


def test_a_read_transaction_sees_one_state_of_the_ledger_on_both_backends(new_ledger):
    # read_only() (a pre-settlement's reads) is documented as "one state of the ledger";
    # on PostgreSQL its BEGIN was read committed: each statement saw what other
    # transactions committed since the one before (a quote could mix a person's
    # accumulators before a payout with the payout's decisions after it).
    from puhui.claims import ledger

    url = new_ledger("ro")
    con = ledger.connect(url)
    try:
        count = "SELECT COUNT(*) FROM audit"
        with ledger.read_only(con):
            before = con.execute(count).fetchone()[0]
            other = ledger.connect(url)
            try:
                with ledger.unit_of_work(other):
                    ledger.audit(other, "another writer", who="t")
            finally:
                other.close()
            assert con.execute(count).fetchone()[0] == before
        assert con.execute(count).fetchone()[0] == before + 1
    finally:
        con.close()


def test_the_service_comes_back_after_postgresql_cut_its_sessions(city_1500_2025,
                                                                  postgres_server):
    # After PostgreSQL ended the service's sessions (a restart, a failover, an idle
    # timeout), every request was a 500 "internal error" for good: each server thread
    # kept its dead connection (drop() ran in the event loop's thread, not the
    # request's). Now: 503 "send it again" for the request that found the connection
    # dead, then a new connection.
    import psycopg
    from fastapi.testclient import TestClient

    from puhui.products.model import load_product, product_path
    from puhui.service import create_app
    from tests.ledgers import new_postgres_database

    url = new_postgres_database(postgres_server)
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0])
    h = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(load_product(product_path(PRODUCT)), url)) as c:
        for i in range(3):
            assert c.post("/v1/settlement", json=_body(psn, kind, sid=f"C{i}", inlist=100),
                          headers=h).status_code == 201
        db = url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            cut = admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM "
                                "pg_stat_activity WHERE datname = %s", (db,)).fetchone()[0]
        assert cut >= 1
        statuses = []
        for i in range(8):
            r = c.post("/v1/settlement", json=_body(psn, kind, sid=f"K{i}", inlist=100),
                       headers={**h, "Idempotency-Key": f"k-{i}"})
            if r.status_code == 503:           # the platform sends it again, same key
                assert "again" in r.json()["detail"]
                r = c.post("/v1/settlement", json=_body(psn, kind, sid=f"K{i}", inlist=100),
                           headers={**h, "Idempotency-Key": f"k-{i}"})
            statuses.append(r.status_code)
        assert statuses == [201] * 8, statuses
        assert c.get("/healthz").status_code == 200
    assert run_sql(url, "SELECT COUNT(DISTINCT setl_id) FROM decisions")[0][0] == 11


def test_an_unknown_path_holding_personal_data_is_not_echoed(served_sqlite):
    # The 404/405 of an unknown path answered "GET /v1/persons/<ID number>: see /docs"
    # (a client that left out '/accumulators'), or a name in the path, as sent.
    from fastapi.testclient import TestClient

    app, key, *_ = served_sqlite
    c = TestClient(app)
    h = {"Authorization": f"Bearer {key}"}
    for r in (c.get(f"/v1/persons/{ID_NUMBER}", headers=h),
              c.post(f"/v1/settlement/{PHONE}", headers=h),
              c.get("/v1/persons/%E5%BC%A0%E4%B8%89/x", headers=h)):
        assert r.status_code in (404, 405) and r.headers["content-type"].startswith(
            "application/problem+json")
        assert ID_NUMBER not in r.text and PHONE not in r.text and "张三" not in r.text
        assert "not shown" in r.json()["detail"]
    r = c.get("/v1/nothing-here", headers=h)           # a harmless path is still named
    assert r.status_code == 404 and "/v1/nothing-here" in r.json()["detail"]


def test_two_idempotency_keys_in_one_request_are_refused(served_sqlite):
    # Two Idempotency-Key headers: the first was taken silently, so a platform's
    # retry carrying them in the other order was a new request.
    from fastapi.testclient import TestClient

    app, key, url, psn, kind = served_sqlite
    c = TestClient(app)
    r = c.post("/v1/settlement", json=_body(psn, kind, sid="R-two-keys"),
               headers=[("Authorization", f"Bearer {key}"), ("Idempotency-Key", "a1"),
                        ("Idempotency-Key", "b2")])
    assert r.status_code == 400 and "more than once" in r.json()["detail"]
    assert run_sql(url, "SELECT COUNT(*) FROM decisions WHERE setl_id = 'R-two-keys'"
                   )[0][0] == 0


def test_a_throwaway_server_starts_under_a_temporary_folder_private_to_root(
        tmp_path, monkeypatch):
    # With TMPDIR private to root (CI often sets one), initdb, run as the postgres
    # user, failed with "could not access directory ... Permission denied".
    import os
    import tempfile

    from puhui.tempdb import TempPostgres, server_bindir

    if server_bindir() is None or os.geteuid() != 0:
        pytest.skip("needs an installed PostgreSQL server and root")
    private = tmp_path / "private-tmp"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with TempPostgres() as pg:
        assert run_sql(pg.url, "SELECT 1") == [(1,)]
        where = pg.directory
    assert not where.exists() and list(private.iterdir()) == []


def test_a_postgresql_database_of_another_application_with_a_meta_table_is_left_alone(
        postgres_server):
    # A database holding other tables is refused, unless one of them was called
    # "meta" (a common name): then its missing schema_version row read as "a ledger
    # being made" and the ledger's tables were created beside the application's.
    from puhui.claims import ledger
    from puhui.errors import InputError
    from tests.ledgers import new_postgres_database

    url = new_postgres_database(postgres_server)
    run_sql(url, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    run_sql(url, "INSERT INTO meta VALUES ('app', 'shop')")
    run_sql(url, "CREATE TABLE orders (id INTEGER)")
    with pytest.raises(InputError, match="a database holding other tables"):
        ledger.connect(url)
    tables = {r[0] for r in run_sql(url, "SELECT table_name FROM information_schema.tables"
                                         " WHERE table_schema = current_schema()")}
    assert tables == {"meta", "orders"}


def test_a_ledger_that_cannot_be_reached_is_a_503_not_the_clients_400(city_1500_2025,
                                                                       postgres_server):
    # While the database refused connections (restarting), a request that needed a new
    # connection was "400 bad request: ledger postgresql://...: cannot connect (...)":
    # the platform told its request was wrong (so not to send it again), and shown the
    # ledger's address and the server's message.
    import psycopg
    from fastapi.testclient import TestClient

    from puhui.products.model import load_product, product_path
    from puhui.service import create_app
    from tests.ledgers import new_postgres_database

    url = new_postgres_database(postgres_server)
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    key = puhui("keys", "create", "--ledger", url, "--scope", "read", "--name",
                "r").stdout.strip()
    db = url.rsplit("/", 1)[1]
    h = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(load_product(product_path(PRODUCT)), url)) as c, \
            psycopg.connect(postgres_server.url, autocommit=True) as admin:
        assert c.get("/v1/settlements/S1", headers=h).status_code == 404
        admin.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = %s", (db,))
            for _ in range(3):
                r = c.get("/v1/settlements/S1", headers=h)
                assert r.status_code == 503, r.text
                assert "postgresql://" not in r.text and "again" in r.json()["detail"]
        finally:
            admin.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        assert c.get("/v1/settlements/S1", headers=h).status_code == 404


def test_a_plain_kill_of_the_process_stops_its_throwaway_server(tmp_path):
    # `python -c "pg = TempPostgres().start(); time.sleep(3600)" &` then `kill PID`
    # (SIGTERM: Python ends without its atexit functions) left the PostgreSQL server
    # running and its /tmp/puhui-pg-* folder behind.
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from puhui.tempdb import server_bindir

    if server_bindir() is None:
        pytest.skip("needs an installed PostgreSQL server")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from puhui.tempdb import TempPostgres; import time; "
         "pg = TempPostgres().start(); print(pg.directory, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(
            sys.path)})
    try:
        folder = Path(proc.stdout.readline().strip())
        assert (folder / "data").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM
        deadline = time.monotonic() + 10
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not folder.exists()
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert str(folder) not in ps
    finally:
        if proc.poll() is None:
            proc.kill()


# --- session 18, after review 20: what it found and left, mended ------------------------

@pytest.mark.parametrize("field, value", [
    ("medfee_sumamt", "王小明"), ("setl_time", "王小明"), ("hosp_lv", "王小明"),
    ("med_type", "王小明"), ("insutype", "王小明"), ("hifp_pay", "13912345678x")])
def test_a_refused_settlement_field_is_never_echoed(field, value):
    from puhui.claims.direct import checked_settlement
    from puhui.errors import InputError

    base = dict(setl_id="S1", psn_no="P1", setl_time="2025-03-01", med_type="21", hosp_lv=3,
                insutype="310", medfee_sumamt=300, fulamt_ownpay_amt=0, overlmt_selfpay=0,
                psn_part_amt=100, hifp_pay=200, hifob_pay=0, hifmi_pay=0, maf_pay=0)
    with pytest.raises(InputError) as err:
        checked_settlement(base | {field: value})
    assert value not in str(err.value) and field in str(err.value)


@pytest.mark.parametrize("digits", ["１００", "١٠٠", "१००"])
def test_digits_other_than_ascii_are_not_amounts(digits):
    from puhui.claims.direct import checked_settlement
    from puhui.errors import InputError

    base = dict(setl_id="S1", psn_no="P1", setl_time="2025-03-01", med_type="21", hosp_lv=3,
                insutype="310", medfee_sumamt=300, fulamt_ownpay_amt=0, overlmt_selfpay=0,
                psn_part_amt=100, hifp_pay=200, hifob_pay=0, hifmi_pay=0, maf_pay=0)
    with pytest.raises(InputError, match="not an amount"):
        checked_settlement(base | {"psn_part_amt": digits})
