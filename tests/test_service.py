"""`puhui serve` (issue 20, point 2): the endpoints on both ledger backends, keys,
idempotency, audit, the privacy guard, problems; a small load test with a kill -9 of
the server in the middle (benchmarks/bench_service.py); the curl example of
docs/service.md run as written."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from puhui.claims import ledger
from tests.conftest import puhui
from tests.ledgers import run_sql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
PRODUCT = "huhuibao-2025"


@pytest.fixture
def served(city_1500_2025, new_ledger):
    """(TestClient, settle key, read key, url, an insured person and insutype)."""
    from fastapi.testclient import TestClient

    from puhui.products.model import load_product, product_path
    from puhui.service import create_app

    url = new_ledger("svc")
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    settle = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                   "platform").stdout.strip()
    read = puhui("keys", "create", "--ledger", url, "--scope", "read", "--name",
                 "analyst").stdout.strip()
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0])
    client = TestClient(create_app(load_product(product_path(PRODUCT)), url))
    return client, settle, read, url, psn, kind


def _body(psn, kind, sid="D1", inlist=60000, day="2025-12-15"):
    return dict(setl_id=sid, psn_no=psn, setl_time=day, med_type="21", hosp_lv=3,
                insutype=kind, medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def test_pre_settlement_settlement_and_reads(served):
    c, settle, read, url, psn, kind = served
    h = {"Authorization": f"Bearer {settle}"}
    body = _body(psn, kind)
    quote = c.post("/v1/pre-settlement", json=body, headers=h)
    assert quote.status_code == 200 and quote.json()["recorded"] is False
    assert run_sql(url, "SELECT COUNT(*) FROM decisions")[0][0] == 0     # nothing written
    paid = c.post("/v1/settlement", json=body, headers=h)
    assert paid.status_code == 201
    assert paid.json()["total_payout"] == quote.json()["total_payout"] > 0
    # what the CLI's direct payout pays for the same settlement on a fresh ledger
    eob = c.get("/v1/settlements/D1", headers={"X-API-Key": read})
    assert eob.status_code == 200 and eob.json()["total_payout"] == paid.json()["total_payout"]
    acc = c.get(f"/v1/persons/{psn}/accumulators", headers={"X-API-Key": read}).json()
    used = acc["policies"][0]["used_amt"]
    assert used["limit:hospital"] == paid.json()["total_payout"]
    # the same settlement again, without a key: answered from the ledger, not paid again
    again = c.post("/v1/settlement", json=body, headers=h)
    assert again.status_code == 200 and again.json()["already_decided"]
    order = [b["benefit"] for b in paid.json()["benefits"]]        # the product's order
    assert [b["benefit"] for b in again.json()["benefits"]] == order
    assert [b["benefit"] for b in eob.json()["benefits"]] == order
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == 1
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["schema_version"] == ledger.SCHEMA_VERSION


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(served):
    c, settle, _, url, psn, kind = served
    h = {"Authorization": f"Bearer {settle}", "Idempotency-Key": "k-1"}
    first = c.post("/v1/settlement", json=_body(psn, kind), headers=h)
    again = c.post("/v1/settlement", json=_body(psn, kind), headers=h)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = c.post("/v1/settlement", json=_body(psn, kind, sid="D2"), headers=h)
    assert other.status_code == 409 and "was used for another request" in other.json()["detail"]
    assert other.headers["content-type"] == "application/problem+json"
    # a corrected settlement under a used id: 409, nothing moves
    fixed = c.post("/v1/settlement", json=_body(psn, kind, inlist=50000),
                   headers={"Authorization": f"Bearer {settle}"})
    assert fixed.status_code == 409 and "already decided" in fixed.json()["detail"]
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == 1


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"X-API-Key": ""}, 401),
    ("read", 403)])
def test_keys(served, headers, status):
    c, settle, read, url, psn, kind = served
    if headers == "read":
        headers = {"Authorization": f"Bearer {read}"}
    with c:     # its shutdown writes the open minute's failed authentications (a 401)
        r = c.post("/v1/settlement", json=_body(psn, kind), headers=headers)
    assert r.status_code == status and r.json()["status"] == status
    assert run_sql(url, "SELECT COUNT(*) FROM decisions")[0][0] == 0
    who, command, detail = run_sql(url, "SELECT who, command, detail FROM audit "
                                        "ORDER BY id DESC LIMIT 1")[0]
    assert command == "api POST /v1/settlement" and json.loads(detail)["status"] == status
    assert who == ("analyst" if status == 403 else "anonymous")
    if status == 401:           # counted per endpoint, reason and minute (session 22)
        assert json.loads(detail)["count"] == 1


def test_a_revoked_key_is_refused_at_once(served):
    c, settle, _, url, psn, kind = served
    key_id = run_sql(url, "SELECT key_id FROM api_keys WHERE name = 'platform'")[0][0]
    assert puhui("keys", "revoke", key_id, "--ledger", url).returncode == 0
    r = c.get(f"/v1/persons/{psn}/accumulators", headers={"X-API-Key": settle})
    assert r.status_code == 401
    assert settle not in json.dumps(run_sql(url, "SELECT * FROM api_keys"))  # only hashes


@pytest.mark.parametrize("body, status, words", [
    (b"{", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"setl_id": "A", "setl_id": "B"}', 400, "given twice"),
    (b'{"hifp_pay": NaN}', 400, "not an amount"),
    (b"\xff\xfe", 400, "not UTF-8"),
    (b"{" + b'"x": 1,' * 20000 + b'"y": 2}', 413, "at most 64 KB"),
])
def test_bad_bodies_are_problems_not_errors(served, body, status, words):
    c, settle, *_ = served
    r = c.post("/v1/settlement", content=body, headers={"Authorization": f"Bearer {settle}",
                                                        "Content-Type": "application/json"})
    assert r.status_code == status and words in r.json()["detail"]


def test_personal_data_is_refused_and_never_echoed(served):
    c, settle, _, url, psn, kind = served
    h = {"Authorization": f"Bearer {settle}"}
    idn = "110101199003077777"
    r = c.post("/v1/settlement", json=_body(psn, kind) | {"psn_no": idn}, headers=h)
    assert r.status_code == 400 and idn not in r.text
    r = c.get(f"/v1/persons/{idn}/accumulators", headers=h)
    assert r.status_code in (400, 404) and idn not in r.text
    r = c.get("/v1/persons/张三/accumulators", headers=h)
    assert r.status_code == 400 and "张三" not in r.text
    assert idn not in json.dumps(run_sql(url, "SELECT * FROM audit"))


def test_unknown_paths_settlements_and_people(served):
    c, settle, read, url, psn, kind = served
    h = {"X-API-Key": read}
    assert c.get("/v1/settlements/NOPE", headers=h).status_code == 404
    assert c.get("/v1/persons/P999999999/accumulators", headers=h).status_code == 404
    r = c.get("/v1/nothing", headers=h)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert c.delete("/v1/settlement", headers=h).status_code == 405
    bad = c.post("/v1/settlement", json=_body(psn, kind),
                 headers={"X-API-Key": read.replace("_", "-")})
    assert bad.status_code == 401
    spec = c.get("/openapi.json").json()
    assert {"/v1/pre-settlement", "/v1/settlement", "/v1/settlements/{setl_id}",
            "/v1/persons/{psn_no}/accumulators", "/healthz"} <= set(spec["paths"])


def _bench():
    spec = importlib.util.spec_from_file_location("bench_service",
                                                  ROOT / "benchmarks" / "bench_service.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_load_with_a_kill_of_the_server_in_the_middle(backend, postgres_server):
    """The load test's small version: 8 clients, 240 settlements, reversals of some of
    them and repeats for overlapping people, the server SIGKILLed after 120 answers and
    started again; every acknowledged settlement and reversal is in the ledger as
    answered, a repeat under its key gets the first answer, nothing half-written, every
    settlement's entries add up to its decision, and the ledger equals a sequential
    replay (payouts and reversals) in commit order."""
    out = _bench().main(["--backend", backend, "--requests", "240", "--clients", "8",
                         "--persons", "800", "--kill-after", "120"])
    checks = out["checks"]
    assert checks["decided"] > 200 and checks["reversed"] >= 3
    counts = ("decided", "reversed", "replayed_in_order")
    assert {k: v for k, v in checks.items() if k not in counts} == {
        "acknowledged_missing": 0, "acknowledged_other_payout": 0, "half_written": 0,
        "replay_differs": 0, "sequential_differs": 0, "double_entries": 0,
        "net_not_decided": 0, "conflict_unexpected": 0}
    assert checks["replayed_in_order"] == checks["decided"] + checks["reversed"]
    # 409: a repeat without a key of a settlement reversed since (conflict_unexpected)
    assert set(out["by_status"]) <= {"200", "201", "409", "unanswered"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_of_the_docs_runs(city_1500_2025, tmp_path):
    """docs/service.md's example, run as written (its shell block), against a server
    on a free port: the settlement is paid and read back."""
    from puhui.tempdb import free_port

    text = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    script = re.search(r"```sh\n(.*?)```", text[text.index("<!-- example: run by"):], re.S).group(1)
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DATA": str(city_1500_2025),
           "PORT": str(free_port()), "PSN": psn,
           "INSUTYPE": str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0]),
           "HOME": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"total_payout"' in r.stdout and '"already_decided"' not in r.stdout.split("\n")[0]


def test_a_batch_and_the_service_at_once_on_postgresql(postgres_server, tmp_path):
    """Issue 20's must-show: a replay batch and the service (two server processes, four
    clients sending December settlements for overlapping people) at once on one
    PostgreSQL ledger, after a first batch: net paid per person and every accumulator
    equal running them one after the other (the batch, then the settlements in the
    order the ledger recorded them)."""
    import threading
    import time

    import httpx

    from puhui.claims.batch import run_batch
    from puhui.claims.direct import direct_payout
    from puhui.tempdb import free_port
    from tests.ledgers import new_postgres_database
    from tests.test_money_safety import (PRODUCT as P, _direct, accumulators,
                                         net_by_person, puhui_proc)

    data = _money_city(tmp_path)
    url = new_postgres_database(postgres_server)
    run_batch(P, P.path, data, url, "b1")
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    per = pd.read_parquet(data / "persons.parquet")
    kind = dict(zip(per["psn_no"].astype(str), per["insutype"].astype(str)))
    pol = pd.read_parquet(data / "policies.parquet")
    people = sorted(set(pol.loc[pol["product_id"] == P.id, "psn_no"].astype(str)))[:8]
    work = [[_direct(f"H{k}-{i}", people[(3 * k + i) % 8], f"2025-12-{10 + i:02d}",
                     3000 + 1000 * ((k + i) % 4), kind[people[(3 * k + i) % 8]])
             for i in range(8)] for k in range(4)]
    bench = _bench()
    server = bench.Server(P.id, url, free_port(), tmp_path / "server.log", workers=2)
    server.start()
    try:
        batch = puhui_proc("claims", "run", "--product", P.id, "--data", data, "--ledger", url,
                           "--batch", "b2", "--out", tmp_path / "o", "--workers", 1,
                           "--block-persons", 10)
        codes = []

        def client(bodies):
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as c:
                for b in bodies:
                    codes.append(c.post("/v1/settlement", json=b).status_code)

        for _ in range(600):            # the clients start once the batch has begun
            if run_sql(url, "SELECT COUNT(*) FROM batches WHERE batch_id = 'b2'")[0][0]:
                break
            time.sleep(0.05)
        ts = [threading.Thread(target=client, args=(w,)) for w in work]
        [t.start() for t in ts]
        [t.join() for t in ts]
        out, err = batch.communicate(timeout=300)
        assert batch.returncode == 0, err[-2000:]
    finally:
        server.stop()
    assert codes == [201] * 32
    # they did run at once: settlements were recorded while the batch was running
    start, end = run_sql(url, "SELECT started_at, finished_at FROM batches WHERE "
                              "batch_id = 'b2'")[0]
    during = run_sql(url, "SELECT COUNT(*) FROM audit WHERE command = 'claims direct' AND "
                          "at > ? AND at < ?", (start, end))[0][0]
    assert during > 0, (start, end)
    order = [json.loads(d)["setl_id"] for (d,) in run_sql(
        url, "SELECT detail FROM audit WHERE command = 'claims direct' ORDER BY id")]
    by_id = {b["setl_id"]: b for w in work for b in w}
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(P, P.path, data, ref, "b1")
    for sid in order:
        direct_payout(P, ref, by_id[sid])
    assert len(order) == 32
    assert net_by_person(url) == net_by_person(ref)
    assert accumulators(url) == accumulators(ref)


def _money_city(tmp_path):
    """test_money_safety's city (400 people, 2025, settlements before December), made
    here: its fixture is module-scoped there."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city
    from tests.test_money_safety import SETTLEMENTS, _copy_fund, read_raw

    full = tmp_path / "full"
    write_fund(synth_city(400, 1, seed=22, start_year=2025), full)
    st = read_raw(full, SETTLEMENTS)
    early = st[st["setl_time"] < pd.Timestamp("2025-12-01")]
    early = early[~early["refund_of"].notna() | early["refund_of"].isin(set(early["setl_id"]))]
    return _copy_fund(full, tmp_path / "early", early.reset_index(drop=True))


def test_a_settlement_no_policy_covers_is_answered_not_kept(served):
    """Review 20: a psn_no typo (or a date outside cover) was recorded as decided
    NO_POLICY, so the corrected resend under the same setl_id was a 409 for good. No
    policy covers it: the answer says what would be paid (nothing), nothing is kept, and
    the corrected settlement is decided as new."""
    c, settle, _, url, psn, kind = served
    h = {"Authorization": f"Bearer {settle}"}
    typo = c.post("/v1/settlement", json=_body(psn, kind) | {"psn_no": "P999999999"},
                  headers=h)
    assert typo.status_code == 200 and typo.json()["recorded"] is False
    assert typo.json()["total_payout"] == 0
    assert run_sql(url, "SELECT COUNT(*) FROM decisions")[0][0] == 0
    before = c.post("/v1/settlement", json=_body(psn, kind, day="2024-06-01"), headers=h)
    assert before.status_code == 200 and before.json()["recorded"] is False
    fixed = c.post("/v1/settlement", json=_body(psn, kind), headers=h)
    assert fixed.status_code == 201 and fixed.json()["total_payout"] > 0


def test_a_retry_serialised_otherwise_is_the_same_request(served):
    """Review 20: the Idempotency-Key compared raw bytes, so a retry whose JSON orders
    its keys or spaces otherwise was a 409. The same meaning is the same request: the
    first answer again; another value is still a 409."""
    c, settle, *_, psn, kind = served
    h = {"Authorization": f"Bearer {settle}", "Idempotency-Key": "k-9",
         "Content-Type": "application/json"}
    body = _body(psn, kind, sid="D9")
    first = c.post("/v1/settlement", content=json.dumps(body).encode(), headers=h)
    other_order = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    again = c.post("/v1/settlement", content=other_order, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    changed = c.post("/v1/settlement", content=json.dumps(body | {"hosp_lv": 2}).encode(),
                     headers=h)
    assert changed.status_code == 409
