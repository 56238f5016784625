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
