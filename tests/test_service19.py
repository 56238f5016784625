"""Issue 20's leftovers of review 20 mended in session 19: the audit names the key by
its id (two keys may share a name); idempotency records that expire."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import puhui
from tests.ledgers import run_sql

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PRODUCT = "huhuibao-2025"


@pytest.fixture(scope="module")
def served(city_1500_2025, tmp_path_factory):
    """(TestClient, url, person, insutype, two keys named alike) on a SQLite ledger."""
    from fastapi.testclient import TestClient

    from puhui.products.model import load_product, product_path
    from puhui.service import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('s19') / 'l.db'}"
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    keys = [puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                  "counter").stdout.strip() for _ in range(2)]
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0])
    app = create_app(load_product(product_path(PRODUCT)), url)
    return TestClient(app), url, psn, kind, keys


def _body(psn, kind, sid):
    return dict(setl_id=sid, psn_no=psn, setl_time="2025-06-15", med_type="21", hosp_lv=3,
                insutype=kind, medfee_sumamt=1800, fulamt_ownpay_amt=0, overlmt_selfpay=0,
                psn_part_amt=600, hifp_pay=1200, hifob_pay=0, hifmi_pay=0, maf_pay=0)


def test_the_audit_tells_two_keys_of_one_name_apart(served):
    c, url, psn, kind, keys = served
    ids = {name_id for (name_id,) in run_sql(url, "SELECT key_id FROM api_keys")}
    for i, key in enumerate(keys):
        r = c.post("/v1/settlement", json=_body(psn, kind, f"K{i}"),
                   headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201
    c.get("/v1/settlements/K0", headers={"Authorization": f"Bearer {keys[1]}"})
    rows = run_sql(url, "SELECT who, detail FROM audit WHERE command LIKE 'api %' "
                        "ORDER BY id")
    got = [json.loads(d).get("key_id") for _, d in rows[-3:]]
    assert all(who == "counter" for who, _ in rows[-3:])
    assert len(set(got[:2])) == 2 and set(got) <= ids and got[2] == got[1]


def test_old_idempotency_answers_are_pruned_and_a_retry_still_pays_once(new_ledger,
                                                                     city_1500_2025):
    from fastapi.testclient import TestClient

    from puhui.products.model import load_product, product_path
    from puhui.service import create_app

    url = new_ledger()
    assert puhui("ledger", "load", "--data", city_1500_2025, "--ledger", url).returncode == 0
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "p").stdout.strip()
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == PRODUCT, "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"] == psn, "insutype"].iloc[0])
    c = TestClient(create_app(load_product(product_path(PRODUCT)), url))
    h = {"Authorization": f"Bearer {key}"}
    for sid in ("I1", "I2"):
        assert c.post("/v1/settlement", json=_body(psn, kind, sid),
                      headers=h | {"Idempotency-Key": f"k-{sid}"}).status_code == 201
    run_sql(url, "UPDATE idempotency SET recorded_at = '2020-01-01T00:00:00.000000+00:00' "
                 "WHERE idem_key = 'huhuibao-2025 k-I1'")
    r = puhui("ledger", "prune-idempotency", "--ledger", url, "--older-than", "30")
    assert r.returncode == 0 and "forgot 1 " in r.stdout
    assert run_sql(url, "SELECT idem_key FROM idempotency") == [("huhuibao-2025 k-I2",)]
    paid = run_sql(url, "SELECT SUM(payout_fen) FROM payments")[0][0]
    again = c.post("/v1/settlement", json=_body(psn, kind, "I1"),
                   headers=h | {"Idempotency-Key": "k-I1"})
    assert again.status_code == 200 and again.json()["already_decided"] is True
    assert run_sql(url, "SELECT SUM(payout_fen) FROM payments")[0][0] == paid
    assert puhui("ledger", "prune-idempotency", "--ledger", url, "--older-than", "0"
                 ).returncode == 2


def test_another_applications_sqlite_database_with_a_meta_table_is_left_alone(tmp_path):
    import sqlite3

    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                      "INSERT INTO meta VALUES ('owner', 'billing');"
                      "CREATE TABLE invoices (id INTEGER);")
    con.close()
    before = db.read_bytes()
    r = puhui("ledger", "load", "--data", "data-samples/city", "--ledger", f"sqlite:///{db}")
    assert r.returncode == 2 and "not a puhui ledger" in r.stderr
    assert db.read_bytes() == before
