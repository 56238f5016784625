"""A direct payout made cheaper (issue 20, point 4: the throughput target) without
changing what it decides or records:

- one decision's reason by a scalar rule, equal to the vectorised rule of the batch on
  every combination of its inputs' cases;
- on PostgreSQL, a unit of work's writes sent in one pipeline with its COMMIT: the
  transaction reads its own writes, a write's error rolls the whole unit back and
  leaves the connection usable, a rollback forgets what the connection learnt;
- a payout's round trips to PostgreSQL counted, so a change that adds some is seen.
"""
import itertools

import numpy as np
import pytest

from puhui.benefits.reasons import decision_reason, decision_reasons
from puhui.claims import ledger
from tests.ledgers import new_postgres_database, run_sql


def test_the_scalar_reason_is_the_vectorised_reason():
    # every case of each input around its boundaries: blocked or not, applies or not,
    # eligible zero or not, excluded, a deductible taking none / part / all, a limit
    # paying nothing / part / all of what the ratio gives
    cases = list(itertools.product(
        [0, 1, 4], [True, False], [0, 100, 5000], [0, 30], [0, 100, 5000],
        [0, 200, 3000], [0, 200, 3000]))
    cols = [np.array(c) for c in zip(*cases)]
    want = decision_reasons(*cols)
    got = [decision_reason(*c) for c in cases]
    assert got == want.tolist()


@pytest.fixture
def pg_ledger(postgres_server):
    url = new_postgres_database(postgres_server)
    con = ledger.connect(url)
    for pol in ("POL1", "POL2"):
        run_sql(url, "INSERT INTO policies VALUES (?, 'P1', 'p', '2025-01-01', "
                     "'2025-12-31', 12900, 0, 1, 0)", (pol,))
    yield url, con
    con.close()


def test_a_unit_of_work_reads_its_own_kept_writes(pg_ledger):
    url, con = pg_ledger
    with ledger.unit_of_work(con, locks=("psn:P1",)):
        ledger.update_accumulators(con, "POL1", {"hospital": 1234})
        # kept, not sent: another session does not see it yet ...
        assert run_sql(url, "SELECT COUNT(*) FROM accumulators")[0][0] == 0
        # ... but this transaction's next read does (the writes go first)
        assert ledger.accumulators_of(con, "POL1") == {"hospital": 1234}
    assert run_sql(url, "SELECT used_fen FROM accumulators")[0][0] == 1234


def test_a_kept_write_that_fails_rolls_the_whole_unit_back(pg_ledger):
    url, con = pg_ledger
    with pytest.raises(Exception):
        with ledger.unit_of_work(con, locks=("psn:P1",)):
            ledger.update_accumulators(con, "POL1", {"hospital": 1})
            # a NULL amount breaks NOT NULL: raised by the COMMIT that sends it
            con.execute("INSERT INTO accumulators VALUES (?, ?, ?)", ("POL2", "x", None))
    assert run_sql(url, "SELECT COUNT(*) FROM accumulators")[0][0] == 0   # nothing half
    # the connection is usable at once, and its next unit of work commits
    with ledger.unit_of_work(con, locks=("psn:P1",)):
        ledger.update_accumulators(con, "POL1", {"hospital": 7})
    assert run_sql(url, "SELECT used_fen FROM accumulators")[0][0] == 7


def test_a_rollback_forgets_what_the_connection_learnt(pg_ledger):
    url, con = pg_ledger
    with pytest.raises(RuntimeError):
        with ledger.unit_of_work(con, locks=()):
            ledger.ensure_open_batch(con, ledger.DIRECT_BATCH, "direct", "p")
            raise RuntimeError("the payout failed")
    # the standing batch was never committed: the next payout must make it again
    with ledger.unit_of_work(con, locks=()):
        ledger.ensure_open_batch(con, ledger.DIRECT_BATCH, "direct", "p")
    assert run_sql(url, "SELECT batch_id FROM batches") == [("direct",)]


def test_a_payout_takes_few_round_trips(served_pg):
    """Counted on the connection: a payout with an Idempotency-Key is one round trip to
    begin, lock and make its four reads, and one for its writes with the COMMIT (it was
    fifteen in session 18: each write and the commit its own; six in session 19: the
    reads each their own). A change that adds round trips fails here."""
    svc, body = served_pg
    con = svc.connections.get()
    trips = _count_round_trips(con)
    svc.settlement(body("T0"), "k", "idem-0", "who")       # learns the standing facts
    trips.clear()
    svc.settlement(body("T1"), "k", "idem-1", "who")
    assert trips == ["begin+reads", "write+commit"], trips


def _count_round_trips(con) -> list[str]:
    """Patch the connection to list its round trips by kind."""
    trips: list[str] = []
    raw = con._con
    pipeline, cursor = raw.pipeline, raw.cursor

    class Cursor:
        def __init__(self, cur):
            self.cur = cur

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.cur.__exit__(*exc)

        def execute(self, sql, *a, **k):
            if not getattr(con, "_in_pipe", False):    # a statement of its own
                trips.append("begin" if str(sql).startswith("BEGIN") else "read")
            else:
                con._piped.append(str(sql))
            return self.cur.execute(sql, *a, **k)

        def executemany(self, *a, **k):
            return self.cur.executemany(*a, **k)

        def __getattr__(self, name):
            return getattr(self.cur, name)

    class Pipe:
        def __enter__(self):
            con._in_pipe, con._piped = True, []
            self.p = pipeline()
            return self.p.__enter__()

        def __exit__(self, *exc):
            con._in_pipe = False
            # a pipeline that begins (BEGIN, locks and reads) or one that writes and
            # commits (its writes go by executemany, not listed)
            first = con._piped[0] if con._piped else ""
            trips.append("begin+reads" if first.startswith("BEGIN") else "write+commit")
            return self.p.__exit__(*exc)

    raw.pipeline = Pipe
    raw.cursor = lambda *a, **k: Cursor(cursor(*a, **k))
    raw.execute = lambda sql, *a, **k: Cursor(cursor()).execute(sql, *a, **k)
    return trips


@pytest.fixture
def served_pg(city_1500_2025, postgres_server):
    import pandas as pd

    from puhui.products.model import load_product, product_path
    from puhui.service import Service
    from tests.conftest import puhui

    url = new_postgres_database(postgres_server)
    assert puhui("ledger", "load", "--data", str(city_1500_2025), "--ledger", url
                 ).returncode == 0
    pol = pd.read_parquet(city_1500_2025 / "policies.parquet")
    per = pd.read_parquet(city_1500_2025 / "persons.parquet")
    psn = str(pol.loc[pol["product_id"] == "huhuibao-2025", "psn_no"].iloc[0])
    kind = str(per.loc[per["psn_no"].astype(str) == psn, "insutype"].iloc[0])

    def body(sid):
        return dict(setl_id=sid, psn_no=psn, setl_time="2025-06-01", med_type="21",
                    hosp_lv=3, insutype=kind, medfee_sumamt=90000, fulamt_ownpay_amt=0,
                    overlmt_selfpay=0, psn_part_amt=30000, hifp_pay=60000, hifob_pay=0,
                    hifmi_pay=0, maf_pay=0)

    svc = Service(load_product(product_path("huhuibao-2025")), url)
    yield svc, body
    svc.connections.drop()
