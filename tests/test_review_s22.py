"""Review of session 22's ledger schema 5 (decisions per product): a person holding two
products (huhuibao-2025 with tight terms and other-2025: each a hospital benefit, 300
yuan deductible, 70 %, 4,000 yuan limit), direct payouts, reversals at once, batches.
The truth: a ledger holding one product alone, and the hand figures in each docstring.
"""
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import reverse_payout
from puhui.errors import Conflict
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_decisions_per_product import _net_of, _products
from tests.test_review_carried import _two_products
from tests.test_reversal import _body, _reversal, city  # noqa: F401  (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _loaded(city, tmp_path, url, bodies=()):
    data = _two_products(city, tmp_path, list(bodies), "a")
    assert puhui("ledger", "load", "--data", data, "--ledger", url).returncode == 0
    return data


def test_a_settlement_reversed_under_one_product_is_not_paid_under_the_other(
        city, tmp_path, new_ledger):
    """huhuibao pays T1 (3,300: 2,100) at the counter, the platform reverses it (R1)
    at once under huhuibao. The counter then asks other-2025 about T1: T1 was refunded,
    so other-2025 pays nothing for it (before schema 5 the ledger answered huhuibao's
    REVERSED decision with a 409; a ledger holding other-2025 alone that applied R1
    answers 409 too). Paying it 2,100 would pay a reversed settlement."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    url = new_ledger("l")
    _loaded(city, tmp_path, url)
    assert direct_payout(tight, url, t1)["total_payout"] == 2100.0
    reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    with pytest.raises(Conflict, match="revers"):
        direct_payout(other, url, t1)
    assert _net_of(url, psn, "other-2025") == 0
    assert _net_of(url, psn, "huhuibao-2025") == 0


def test_one_setl_id_with_another_body_under_the_other_product_is_refused(
        city, tmp_path, new_ledger):
    """huhuibao pays T1 (3,300 in-list) at the counter; other-2025 is then asked about
    T1 with 5,000 in-list. One settlement has one body: the second is refused as a
    resend with other amounts is under one product (409), and the stored inputs stay
    huhuibao's (a later reversal of T1 under huhuibao checks its amounts against them)."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    url = new_ledger("l")
    _loaded(city, tmp_path, url)
    direct_payout(tight, url, t1)
    with pytest.raises(Conflict, match="other amounts"):
        direct_payout(other, url, _body("T1", psn, "2025-03-01", 5000, kind))
    assert _net_of(url, psn, "other-2025") == 0
    r = reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    assert r["total_amt"] == -2100.0


def test_a_settlement_a_batch_paid_under_one_product_at_the_counter_of_the_other(
        city, tmp_path, new_ledger):
    """huhuibao's batch pays T1 (3,300: 2,100) and keeps its inputs. The counter asks
    other-2025 about the same T1: it pays 2,100, as in a ledger holding other-2025
    alone; asked about T1 with 5,000 in-list instead, it refuses (409) and pays nothing."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    for name, body, paid in (("same", t1, 210000),
                             ("other", _body("T1", psn, "2025-03-01", 5000, kind), 0)):
        url = new_ledger(name)
        data = _two_products(city, tmp_path, [t1], name)
        assert puhui("ledger", "load", "--data", data, "--ledger", url).returncode == 0
        run_batch(tight, f, data, url, "b1")
        if paid:
            alone = f"sqlite:///{tmp_path / 'alone.db'}"
            assert puhui("ledger", "load", "--data", data, "--ledger", alone).returncode == 0
            assert direct_payout(other, url, body) == direct_payout(other, alone, body)
        else:
            with pytest.raises(Conflict, match="other amounts"):
                direct_payout(other, url, body)
        assert _net_of(url, psn, "other-2025") == paid
        assert _net_of(url, psn, "huhuibao-2025") == 210000


def _as_version_4(url, later):
    """The ledger as schema 4 would hold it: one decision per settlement and benefit,
    the ``later`` product's where two decided it (its row replaced the other's)."""
    from tests.test_decisions_per_product import V4_DECISIONS

    run_sql(url, "DELETE FROM decisions WHERE product_id != ? AND EXISTS (SELECT 1 FROM"
                 " decisions d WHERE d.setl_id = decisions.setl_id AND d.benefit ="
                 " decisions.benefit AND d.product_id = ?)", (later, later))
    run_sql(url, "ALTER TABLE decisions RENAME TO decisions_new")
    run_sql(url, "DROP INDEX IF EXISTS decisions_psn")
    run_sql(url, V4_DECISIONS)
    run_sql(url, "INSERT INTO decisions SELECT setl_id, benefit, psn_no, policy_no,"
                 " eligible_fen, deductible_fen, ratio_bp, payout_fen, reason, batch_id"
                 " FROM decisions_new")
    run_sql(url, "DROP TABLE decisions_new")
    run_sql(url, "CREATE INDEX decisions_psn ON decisions (psn_no)")
    run_sql(url, "UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def test_a_settlement_paid_before_the_upgrade_is_not_paid_again_at_the_counter(
        city, tmp_path, new_ledger):
    """Under schema 4 both products' batches paid T1 (3,300: 2,100 each) and other-2025's
    decision replaced huhuibao's. Upgraded, huhuibao holds no decision of T1 though it
    paid it: the counter then sending T1 to huhuibao must not pay it again (a ledger
    holding huhuibao alone answers it as already decided and pays nothing more)."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    url = new_ledger("l")
    data = _loaded(city, tmp_path, url, [t1])
    run_batch(tight, f, data, url, "b1")
    run_batch(other, of, data, url, "o1")
    _as_version_4(url, "other-2025")
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    run_batch(tight, f, data, alone, "b1")
    assert direct_payout(tight, alone, t1)["already_decided"]
    try:
        answer = direct_payout(tight, url, t1)
    except Conflict:
        answer = None
    assert answer is None or answer.get("already_decided")
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(alone, psn, "huhuibao-2025") == 210000
    assert _net_of(url, psn, "other-2025") == 210000


def test_a_reversal_at_once_pays_nothing_the_product_was_never_asked_about(
        city, tmp_path, new_ledger):
    """The counter asks huhuibao about T1 (1 March, 3,300: 2,100) and other-2025 alone
    about H1 (20 May, 2,000: (2,000 - 300) x 70 % = 1,190 under other-2025, whose
    deductible T1 never used). T1 reversed at once under
    huhuibao: huhuibao's policy year holds no other settlement it decided, so it pays
    nothing more (net 0, as in a ledger where H1 went to other-2025's ledger); H1 is
    other-2025's alone and stays 1,190 there (huhuibao paid it 1,190 before)."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    _loaded(city, tmp_path, url)
    assert puhui("ledger", "load", "--data", str(tmp_path / "a"), "--ledger",
                 alone).returncode == 0
    for u in (url, alone):
        direct_payout(tight, u, t1)
    direct_payout(other, url, h)
    for u in (url, alone):
        reverse_payout(tight, u, _reversal(t1, "R1", "2025-08-01"))
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(alone, psn, "huhuibao-2025") == 0
    assert _net_of(url, psn, "other-2025") == 119000


def test_one_idempotency_key_at_the_services_of_two_products(city, tmp_path, new_ledger):
    """Each product's service on one ledger (``puhui serve`` per product), one platform
    key. The platform sends T1 (3,300) to both with the same Idempotency-Key (its own id
    of the settlement): each product decides and pays it, 2,100 each, and a retry at
    either answers that product's first answer. (The key's answer was kept for the
    ledger, not the product: the second product replayed the first's answer and paid
    nothing.)"""
    from fastapi.testclient import TestClient

    from puhui.service import create_app

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    url = new_ledger("l")
    _loaded(city, tmp_path, url)
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    head = {"Authorization": f"Bearer {key}", "Idempotency-Key": "platform-0001"}
    clients = [TestClient(create_app(p, url), raise_server_exceptions=False)
               for p in (tight, other)]
    first = [c.post("/v1/settlement", json=t1, headers=head) for c in clients]
    assert [r.status_code for r in first] == [201, 201], [r.text for r in first]
    again = [c.post("/v1/settlement", json=t1, headers=head) for c in clients]
    assert [r.json() for r in again] == [r.json() for r in first]
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(url, psn, "other-2025") == 210000


def test_the_other_products_batch_on_data_without_the_reversal(city, tmp_path, new_ledger):
    """Both products' batches pay T1 (3,300: 2,100) and H1 (2,000: 1,400); huhuibao
    reverses T1 at once (R1). other-2025's next batch runs on an extract that holds T1
    and H1 but not yet R1: the ledger knows T1 was reversed, so other-2025 takes its
    2,100 back and H1 takes the deductible: 1,190, as a ledger holding other-2025 alone
    gives on data holding R1."""
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    rev = _reversal(t1, "R1", "2025-08-01")
    data, later = two(city, tmp_path, [t1, h], "a"), two(city, tmp_path, [t1, h, rev], "b")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    run_batch(tight, f, data, url, "b1")
    eobs = [run_batch(other, of, data, url, "o1").eob]
    reverse_payout(tight, url, rev)
    eobs.append(run_batch(other, of, data, url, "o2").eob)
    run_batch(other, of, data, alone, "o1")
    run_batch(other, of, later, alone, "o2")
    assert _net_of(url, psn, "other-2025") == _net_of(alone, psn, "other-2025") == 119000
    assert _net_of(url, psn, "huhuibao-2025") == 119000
    # the EOB rows of other-2025's batches sum to what it paid the person, net
    mine = [e[e["psn_no"].astype(str) == psn] for e in eobs]
    assert round(sum(e["payout_amt"].sum() for e in mine) * 100) == 119000
    t1_rows = mine[1][mine[1]["setl_id"].astype(str) == "T1"]
    assert set(t1_rows["status"]) == {"reversed"} and t1_rows["payout_amt"].sum() == -2100.0
    again = run_batch(other, of, data, url, "o3")          # nothing left to take back
    assert _net_of(url, psn, "other-2025") == 119000
    assert again.eob[again.eob["psn_no"].astype(str) == psn]["payout_amt"].sum() == 0


def test_a_version_4_ledger_without_its_version_row_is_upgraded(city, tmp_path, new_ledger):
    """A version-4 ledger whose version row was never written (an older puhui killed
    between making the tables and writing the row) is opened as a ledger: its
    decisions are upgraded too, not only marked 5 (every decision failed after), and a
    direct payout then pays T1 2,100 as in a new ledger."""
    (tight, f), _ = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    url = new_ledger("l")
    _loaded(city, tmp_path, url)
    _as_version_4(url, "other-2025")
    run_sql(url, "DELETE FROM meta")
    assert puhui("ledger", "status", "--ledger", url).returncode == 0
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    assert direct_payout(tight, url, t1)["total_payout"] == 2100.0
    assert _net_of(url, psn, "huhuibao-2025") == 210000


def test_a_settlement_taken_back_as_not_in_data_under_each_product(city, tmp_path, new_ledger):
    """Both products' batches pay T1 (1 March, 3,300: 2,100) and H1 (20 May, 2,000:
    1,400). The next extract, stated complete for the year, does not hold T1: each
    product's batch on it takes T1 back - huhuibao's first, then other-2025's - as a
    ledger holding other-2025 alone does: other-2025 then pays H1 alone, 1,190."""
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data, later = two(city, tmp_path, [t1, h], "a"), two(city, tmp_path, [h], "b")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    year = ("2025-01-01", "2025-12-31")
    run_batch(tight, f, data, url, "b1")
    for u in (url, alone):
        run_batch(other, of, data, u, "o1")
    run_batch(tight, f, later, url, "b2", period=year, complete=True)
    for u in (url, alone):
        run_batch(other, of, later, u, "o2", period=year, complete=True)
    assert _net_of(alone, psn, "other-2025") == 119000
    assert _net_of(url, psn, "other-2025") == _net_of(url, psn, "huhuibao-2025") == 119000


def test_a_reversal_at_once_after_a_take_back_the_other_product_has_not_made(
        city, tmp_path, new_ledger):
    """As above, huhuibao's complete extract takes T1 back (its inputs stay: other-2025
    still pays it). H1 then reversed at once under huhuibao: T1, taken back under
    huhuibao, is not adjudicated again, so huhuibao's net is 0, as in a ledger holding
    huhuibao alone; other-2025 keeps its 3,500 until its own batch."""
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data, later = two(city, tmp_path, [t1, h], "a"), two(city, tmp_path, [h], "b")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    for u in (url, alone):
        run_batch(tight, f, data, u, "b1")
    run_batch(other, of, data, url, "o1")
    for u in (url, alone):
        run_batch(tight, f, later, u, "b2", period=("2025-01-01", "2025-12-31"), complete=True)
        reverse_payout(tight, u, _reversal(h, "R2", "2025-08-01"))
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(alone, psn, "huhuibao-2025") == 0
    assert _net_of(url, psn, "other-2025") == 350000


def test_the_other_products_complete_batch_after_a_reversal_at_once(city, tmp_path, new_ledger):
    """Both products' batches pay T1 (2,100) and H1 (1,400); huhuibao reverses T1 at
    once. other-2025's next extract, stated complete for the year, holds H1 only: it
    takes T1 back as not in its data and pays H1 1,190, as a ledger holding other-2025
    alone does on the same extracts (T1's inputs were forgotten by huhuibao's reversal,
    so other-2025 kept its 2,100 for good)."""
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data, later = two(city, tmp_path, [t1, h], "a"), two(city, tmp_path, [h], "b")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    run_batch(tight, f, data, url, "b1")
    for u in (url, alone):
        run_batch(other, of, data, u, "o1")
    reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    for u in (url, alone):
        run_batch(other, of, later, u, "o2", period=("2025-01-01", "2025-12-31"), complete=True)
    assert _net_of(url, psn, "other-2025") == _net_of(alone, psn, "other-2025") == 119000
    assert _net_of(url, psn, "huhuibao-2025") == 119000


def test_a_ledger_busy_for_longer_than_the_wait_is_a_message(tmp_path, monkeypatch):
    """Another process holds the SQLite ledger's write lock longer than a command waits
    (the upgrade of a version-4 ledger of 2 million decisions held it 63 to 125 s on
    this machine, the wait is 60 s): the command says the ledger is busy, exit 2 (it
    was "internal error ... please report it", exit 1). SQLite only: on PostgreSQL a
    unit of work waits for the advisory lock."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger.connect(url).close()
    monkeypatch.setattr(ledger, "BUSY_SECONDS", 0.2)
    holder = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = puhui("ledger", "status", "--ledger", url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 2 and "busy" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert puhui("ledger", "status", "--ledger", url).returncode == 0


def test_the_other_products_partial_batch_after_a_reversal_at_once(city, tmp_path, new_ledger):
    """As above, but other-2025's next extract covers May only and holds H1 alone (not
    stated complete): T1, reversed under huhuibao, is taken back (1,190 in all, as on
    data holding R1). Left by review s22 (it kept its 2,100 while H1 was adjudicated
    without it: 3,290); fixed in session 23."""
    from puhui.fund.files import read_raw
    from puhui.fund.schema import POLICIES
    from tests.test_holds import _extract
    from tests.test_money_safety import write_raw
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data = two(city, tmp_path, [t1, h], "a")
    may = _extract(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31")
    write_raw(read_raw(data, POLICIES), may, POLICIES)
    url = new_ledger("l")
    run_batch(tight, f, data, url, "b1")
    run_batch(other, of, data, url, "o1")
    reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    res = run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31"))
    assert _net_of(url, psn, "other-2025") == 119000
    # taken back under the reversal's id, in o2, and said so in the EOB and summary
    took = run_sql(url, "SELECT setl_id, applies_to, kind, SUM(payout_fen) FROM payments "
                        "WHERE batch_id = 'o2' AND applies_to = 'T1' GROUP BY 1, 2, 3")
    assert took == [("R1", "T1", "reverse", -210000)]
    assert res.summary["reversed_elsewhere"] == {"settlements": 1, "taken_back_yuan": -2100.0}
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]
    t1_rows = res.eob[res.eob["setl_id"] == "T1"]
    assert set(t1_rows["status"].astype(str)) == {"reversed"} and \
        round(t1_rows["payout_amt"].sum(), 2) == -2100.0
    # the batch run again, and the next extract: nothing more taken back
    again = run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31"))
    assert _net_of(url, psn, "other-2025") == 119000 and again.summary["reconciles"]
    run_batch(other, of, may, url, "o3", period=("2025-05-01", "2025-05-31"))
    assert _net_of(url, psn, "other-2025") == 119000
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE batch_id = 'o3' "
                        "AND applies_to = 'T1'") == [(0,)]
