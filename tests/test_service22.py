"""Session 22 (issue 20): failed authentications are audited in aggregate, one audit row
per (endpoint, reason, minute) with their count, written when a later minute's failure
arrives and at shutdown; authenticated requests keep one row each. A client without a
key could otherwise flood the ledger's append-only audit log. On both ledger backends,
through FastAPI's TestClient, with an injected clock (no sleeping)."""
import json
import threading

import pytest

from puhui.claims import ledger
from tests.ledgers import run_sql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PRODUCT = "huhuibao-2025"
T0 = 1_800_000_000.0          # 2027-01-15T08:00:00Z, a minute's start (T0 % 60 == 0)
NO_KEY = {"type": "about:blank", "title": "no API key", "status": 401,
          "detail": "send the key as 'Authorization: Bearer KEY' (keys are made with "
                    "'puhui keys create')"}


class Clock:
    """Epoch seconds that a test moves."""

    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def served(new_ledger):
    """(app factory taking a clock, url, read key, its key_id) on an empty ledger."""
    from puhui.products.model import load_product, product_path
    from puhui.service import create_app

    url = new_ledger("svc")
    con = ledger.connect(url)
    try:
        with ledger.unit_of_work(con, locks=()):
            key_id, secret = ledger.create_api_key(con, "analyst", "read")
    finally:
        con.close()
    product = load_product(product_path(PRODUCT))
    return (lambda clock: create_app(product, url, clock)), url, secret, key_id


def _api_rows(url):
    """(who, command, detail) of the service's audit rows, in order: an SQL query."""
    return [(w, c, json.loads(d)) for w, c, d in run_sql(
        url, "SELECT who, command, detail FROM audit WHERE command LIKE 'api %' ORDER BY id")]


def _iso(t):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds")


def test_500_requests_without_a_key_in_a_minute_are_one_row_of_count_500(served):
    from fastapi.testclient import TestClient

    make, url, _, _ = served
    clock = Clock()
    app = make(clock)
    with TestClient(app) as c:
        for i in range(500):
            clock.t = T0 + i * 0.1                       # 0 to 49.9 s into the minute
            r = c.get("/v1/settlements/S1")
            assert r.status_code == 401 and r.json() == NO_KEY      # the answer as before
            assert r.headers["content-type"] == "application/problem+json"
        assert _api_rows(url) == []                      # the minute is still open
        assert app.state.service.failed_auth.pending() == 500
    rows = _api_rows(url)                                # the shutdown wrote it
    assert rows == [("anonymous", "api GET /v1/settlements", {
        "status": 401, "reason": "no API key", "count": 500, "minute": "2027-01-15T08:00Z",
        "first": _iso(T0), "last": _iso(T0 + 49.9)})]
    assert app.state.service.failed_auth.pending() == 0


def test_two_minutes_are_two_rows_the_first_written_when_the_second_begins(served):
    from fastapi.testclient import TestClient

    make, url, _, _ = served
    clock = Clock()
    with TestClient(make(clock)) as c:
        for i in range(30):
            clock.t = T0 + 59 + i / 30                   # the last second of minute 0
            assert c.post("/v1/settlement", json={}).status_code == 401
        assert _api_rows(url) == []
        clock.t = T0 + 60                                # minute 1's first failure
        assert c.post("/v1/settlement", json={}).status_code == 401
        first = _api_rows(url)
        assert [(d["minute"], d["count"]) for _, _, d in first] == [("2027-01-15T08:00Z", 30)]
        for i in range(19):
            clock.t = T0 + 61 + i
            assert c.post("/v1/settlement", json={}).status_code == 401
    rows = _api_rows(url)
    assert [(c, d["minute"], d["count"]) for _, c, d in rows] == [
        ("api POST /v1/settlement", "2027-01-15T08:00Z", 30),
        ("api POST /v1/settlement", "2027-01-15T08:01Z", 20)]
    assert rows[1][2]["first"] == _iso(T0 + 60) and rows[1][2]["last"] == _iso(T0 + 79)


def test_reasons_and_endpoints_are_rows_apart_and_authenticated_requests_one_row_each(
        served):
    from fastapi.testclient import TestClient

    make, url, secret, key_id = served
    clock = Clock()
    with TestClient(make(clock)) as c:
        for i in range(4):
            clock.t = T0 + i
            assert c.get("/v1/settlements/S1").status_code == 401
            bad = c.get("/v1/settlements/S1", headers={"X-API-Key": "phk_nope"})
            assert bad.status_code == 401 and bad.json()["title"] == "unknown API key"
            assert c.get("/v1/persons/P1/accumulators").status_code == 401
            ok = c.get("/v1/settlements/S1", headers={"X-API-Key": secret})
            assert ok.status_code == 404                 # known key: the ledger is empty
        authed = [r for r in _api_rows(url) if r[0] != "anonymous"]
        assert len(authed) == 4 and len(_api_rows(url)) == 4    # one row each, at once
        assert all(d == {"status": 404, "setl_id": "S1", "key_id": key_id}
                   for _, _, d in authed)
    failed = sorted((c, d["reason"], d["count"]) for w, c, d in _api_rows(url)
                    if w == "anonymous")
    assert failed == [("api GET /v1/persons/accumulators", "no API key", 4),
                      ("api GET /v1/settlements", "no API key", 4),
                      ("api GET /v1/settlements", "unknown API key", 4)]


def test_failures_counted_from_many_threads_are_all_written_once_per_minute(served):
    """Eight threads count 250 failures each through one Service while the clock moves
    across minutes (each count a step of 0.05 s): the rows' counts add up to 2000, no
    (endpoint, reason, minute) has two rows, and their minutes are those the clock
    passed (100 s from T0)."""
    from puhui.products.model import load_product, product_path
    from puhui.service import Service

    _, url, _, _ = served
    lock, ticks = threading.Lock(), [0]

    def clock():
        with lock:
            ticks[0] += 1
            return T0 + ticks[0] * 0.05

    svc = Service(load_product(product_path(PRODUCT)), url, clock)
    reasons = ("no API key", "unknown API key")

    def client(t):
        for i in range(250):
            svc.failed_auth.count("GET /v1/settlements", reasons[(t + i) % 2])

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    svc.failed_auth.flush()
    rows = [d for _, _, d in _api_rows(url)]
    assert sum(d["count"] for d in rows) == 2000
    keys = [(d["reason"], d["minute"]) for d in rows]
    assert len(keys) == len(set(keys))
    assert {d["minute"] for d in rows} == {"2027-01-15T08:00Z", "2027-01-15T08:01Z"}  # 100 s


def test_a_row_the_ledger_could_not_take_is_kept_and_written_later(tmp_path, caplog):
    """The ledger's file gone when minute 0's row is due (a failure of minute 1): the
    server's log says so and the row is kept; once the ledger is back, the shutdown's
    flush writes both minutes, every failure counted."""
    from puhui.products.model import load_product, product_path
    from puhui.service import Service

    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger.connect(url).close()
    clock = Clock()
    svc = Service(load_product(product_path(PRODUCT)), url, clock)
    for i in range(3):
        svc.failed_auth.count("POST /v1/settlement", "no API key")
    (tmp_path / "l.db").rename(tmp_path / "away.db")
    clock.t = T0 + 60
    svc.failed_auth.count("POST /v1/settlement", "no API key")
    assert "audit of 3 failed authentications not written yet" in caplog.text
    assert svc.failed_auth.pending() == 4
    (tmp_path / "away.db").rename(tmp_path / "l.db")
    assert svc.failed_auth.flush() == 2
    rows = [(d["minute"], d["count"]) for _, _, d in _api_rows(url)]
    assert sorted(rows) == [("2027-01-15T08:00Z", 3), ("2027-01-15T08:01Z", 1)]
