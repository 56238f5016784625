"""Session 19's hostile review of issue 20's new work (reversals at once; the PostgreSQL
ledger's pipelined unit of work): each finding a test, on both backends where the ledger
matters."""
import json
import threading

import pytest

from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import reverse_payout
from puhui.errors import Conflict, InputError, Unprocessable
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_reversal import (DAYS, PRODUCT, S1, S2, S3, _body, _data, _loaded, _net,
                                 _reversal, _three, city)  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PII = "110101199003077777"


@pytest.fixture
def served(city, new_ledger):
    from fastapi.testclient import TestClient

    from puhui.service import create_app

    url = _loaded(city, new_ledger("svc"))
    settle = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                   "platform").stdout.strip()
    c = TestClient(create_app(PRODUCT, url), raise_server_exceptions=False)
    return c, {"Authorization": f"Bearer {settle}"}, url


def _acc_rows(url, psn):
    return run_sql(url, "SELECT a.policy_no, a.accumulator, a.used_fen FROM accumulators a "
                        "JOIN policies p ON p.policy_no = a.policy_no WHERE p.psn_no = ? AND "
                        "a.used_fen != 0 ORDER BY 1, 2", (psn,))


def _payments(url):
    return run_sql(url, "SELECT COUNT(*), COALESCE(SUM(payout_fen), 0) FROM payments")[0]


# 1. a reversal's id reused as a settlement's --------------------------------------------
def test_a_reversal_id_is_not_taken_again_as_a_settlement_id(served, city):
    """The reversal R1 applied; a new settlement sent under the id R1 (same person, or
    another): 409, nothing written, as a reversal under a decided settlement's id is.
    Found: it was paid (201), so the ledger held the id twice (a reversal undoing T1 and a
    settlement paid 350 yuan) and the next reversal of the person re-adjudicated 'R1' as
    a settlement."""
    c, h, url = served
    full, psn, kind, other, okind = city
    bodies = _three(psn, kind)
    for b in bodies:
        assert c.post("/v1/settlement", json=b, headers=h).status_code == 201
    assert c.post("/v1/reversal", json=_reversal(bodies[0], "R1", "2025-08-01"),
                  headers=h).status_code == 201
    before = _payments(url)
    for who, k in ((psn, kind), (other, okind)):
        r = c.post("/v1/settlement", json=_body("R1", who, "2025-09-01", 500, k), headers=h)
        assert r.status_code == 409, r.text
        assert "reversal" in r.json()["detail"]
    assert _payments(url) == before
    with pytest.raises(Conflict, match="reversal"):
        direct_payout(PRODUCT, url, _body("R1", psn, "2025-09-01", 500, kind))
    assert _payments(url) == before
