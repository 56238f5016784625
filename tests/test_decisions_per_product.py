"""Two products deciding one settlement (issue 20, money safety; ledger schema 5).

A person may hold two products whose benefits share a name (Huhuibao's and the elderly
cover's ``special_drugs``; here huhuibao-2025 with tight terms and ``other-2025``, each
a hospital benefit with a 300 yuan deductible, 70 %, a 4,000 yuan limit). Before schema 5
the ledger kept one decision per settlement and benefit, so the second product's
decision replaced the first's: the first product's deductible use of it counted 0, a
reversal at once under the first was refused ("not decided under the policy"), and a
direct payout under the second answered the first's decision as its own and paid
nothing. The truth here: each product alone, in a ledger of its own (a SQLite file the
test makes), and the hand figures in each docstring.
"""
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import reverse_payout
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_holds import _tight
from tests.test_review_carried import OTHER, _two_products
from tests.test_reversal import _body, _reversal, city  # noqa: F401  (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _products(tmp_path):
    from puhui.products.model import load_product

    tight, f = _tight(tmp_path)
    of = tmp_path / "other.toml"
    of.write_text(OTHER.format(base=f), encoding="utf-8")
    return (tight, f), (load_product(of), of)


def _net_of(url, psn, product_id):
    """Net paid (fen) to ``psn`` under ``product_id``'s policies."""
    return run_sql(url, "SELECT COALESCE(SUM(m.payout_fen), 0) FROM payments m JOIN policies"
                        " p ON p.policy_no = m.policy_no WHERE m.psn_no = ? AND p.product_id"
                        " = ?", (psn, product_id))[0][0]


def test_each_product_keeps_its_own_decision(city, tmp_path, new_ledger):
    """T1 (1 March, 3,300 in-list) then T2 (1 May, 1,000). Each product alone: T1 pays
    (3,300 - 300) x 70 % = 2,100, T2 1,000 x 70 % = 700. Both products' batches on one
    ledger keep both decisions (two rows per settlement and benefit), each with its own
    deductible (300 on T1, 0 on T2), and pay 2,800 each."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, t2 = _body("T1", psn, "2025-03-01", 3300, kind), _body("T2", psn, "2025-05-01", 1000, kind)
    data = _two_products(city, tmp_path, [t1, t2], "a")
    url = new_ledger("l")
    run_batch(tight, f, data, url, "b1")
    run_batch(other, of, data, url, "o1")
    rows = run_sql(url, "SELECT setl_id, product_id, deductible_fen, payout_fen FROM decisions"
                        " WHERE psn_no = ? AND benefit = 'hospital' ORDER BY 1, 2", (psn,))
    assert [tuple(r) for r in rows] == [("T1", "huhuibao-2025", 30000, 210000),
                                        ("T1", "other-2025", 30000, 210000),
                                        ("T2", "huhuibao-2025", 0, 70000),
                                        ("T2", "other-2025", 0, 70000)]
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(url, psn, "other-2025") == 280000


def test_a_reversal_at_once_under_one_product_after_both_decided(city, tmp_path, new_ledger):
    """Both products' batches pay T1 (1 March, 3,300: 2,100) and H (20 May, 2,000:
    1,400). T1 reversed at once under huhuibao: H is decided again and takes the
    deductible, (2,000 - 300) x 70 % = 1,190; other-2025 keeps its 3,500. (Before
    schema 5 the reversal was refused: the original's decision was other-2025's.) The
    same story in a ledger holding huhuibao alone gives the same huhuibao figures."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data = _two_products(city, tmp_path, [t1, h], "a")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    for u in (url, alone):
        run_batch(tight, f, data, u, "b1")
    run_batch(other, of, data, url, "o1")
    for u in (url, alone):
        reverse_payout(tight, u, _reversal(t1, "R1", "2025-08-01"))
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(alone, psn, "huhuibao-2025") == 119000
    assert _net_of(url, psn, "other-2025") == 350000
    d = run_sql(url, "SELECT setl_id, product_id, reason FROM decisions WHERE psn_no = ? AND"
                     " benefit = 'hospital' ORDER BY 1, 2", (psn,))
    assert [tuple(r) for r in d] == [("H1", "huhuibao-2025", "PAID"),
                                     ("H1", "other-2025", "PAID"),
                                     ("T1", "huhuibao-2025", "REVERSED"),
                                     ("T1", "other-2025", "PAID")]


def test_direct_payouts_of_one_settlement_under_two_products(city, tmp_path, new_ledger):
    """The counter asks both products about T1 (3,300 in-list): each pays 2,100 and
    records it in its own standing batch (one standing batch for both lost the second
    product's entry, and the second answered the first's decision as its own). Asked
    again, each answers its own decision, and nothing more is paid."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    data = _two_products(city, tmp_path, [], "a")
    url = new_ledger("l")
    assert puhui("ledger", "load", "--data", data, "--ledger", url).returncode == 0
    first = [direct_payout(p, url, t1) for p in (tight, other)]
    assert [a["total_payout"] for a in first] == [2100.0, 2100.0]
    assert not any(a.get("already_decided") for a in first)
    again = [direct_payout(p, url, t1) for p in (tight, other)]
    assert all(a["already_decided"] and a["total_payout"] == 2100.0 for a in again)
    assert _net_of(url, psn, "huhuibao-2025") == _net_of(url, psn, "other-2025") == 210000
    assert sorted(r[0] for r in run_sql(url, "SELECT batch_id FROM batches")) == \
        ["direct:huhuibao-2025", "direct:other-2025"]


def test_a_batch_id_named_as_a_standing_batch_is_refused(city, tmp_path, new_ledger):
    url = new_ledger("l")
    for name in ("direct", "direct:huhuibao-2025"):
        r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city[0],
                  "--ledger", url, "--batch", name, "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and "standing batch" in r.stderr, r.stderr


V4_DECISIONS = """CREATE TABLE decisions (
    setl_id TEXT NOT NULL, benefit TEXT NOT NULL, psn_no TEXT NOT NULL, policy_no TEXT,
    eligible_fen INTEGER NOT NULL, deductible_fen INTEGER NOT NULL,
    ratio_bp INTEGER NOT NULL, payout_fen INTEGER NOT NULL, reason TEXT NOT NULL,
    batch_id TEXT NOT NULL, PRIMARY KEY (setl_id, benefit))"""


def _v4_ledger(url):
    """A version-4 ledger (the decisions table as schema 4 made it) with two policies of
    two products, a batch of each, and decisions: S1 under huhuibao's policy, S1 REVERSED
    without a policy in other-2025's batch (its product from the batch), S2 without a
    policy in a batch of a product the ledger holds no policy of."""
    ledger.connect(url).close()
    run_sql(url, "DROP TABLE decisions")
    run_sql(url, V4_DECISIONS)
    run_sql(url, "CREATE INDEX decisions_psn ON decisions (psn_no)")
    for pol, prod in (("PA", "huhuibao-2025"), ("PB", "other-2025")):
        run_sql(url, "INSERT INTO policies VALUES (?, 'P1', ?, '2025-01-01', '2025-12-31',"
                     " 12900, 0, 1, 0)", (pol, prod))
    for b, prod in (("b1", "huhuibao-2025"), ("o1", "other-2025"), ("z1", "zzz-2025")):
        run_sql(url, "INSERT INTO batches (batch_id, mode, product_id, product_hash,"
                     " data_hash, started_at, finished_at, status) VALUES (?, 'claimed', ?,"
                     " 'h', 'd', '2025-06-01', NULL, 'done')", (b, prod))
    for row in (("S1", "hospital", "P1", "PA", 330000, 30000, 7000, 210000, "PAID", "b1"),
                ("S1", "drugs", "P1", None, 0, 0, 0, 0, "REVERSED", "o1"),
                ("S2", "hospital", "P1", None, 0, 0, 0, 0, "NOT_IN_DATA", "z1")):
        run_sql(url, "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    run_sql(url, "UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def test_a_version_4_ledger_is_upgraded(new_ledger):
    """Opened by any command, a version-4 ledger's decisions are copied under the product
    of their policy, else of their batch; the key then takes a second product's
    decision of the same settlement and benefit beside the first."""
    url = new_ledger("old")
    _v4_ledger(url)
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 0, r.stderr
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    got = run_sql(url, "SELECT setl_id, benefit, policy_no, payout_fen, reason, product_id"
                       " FROM decisions ORDER BY 1, 2")
    assert [tuple(x) for x in got] == [
        ("S1", "drugs", None, 0, "REVERSED", "other-2025"),
        ("S1", "hospital", "PA", 210000, "PAID", "huhuibao-2025"),
        ("S2", "hospital", None, 0, "NOT_IN_DATA", "zzz-2025")]
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.record_decisions(con, [("S1", "hospital", "P1", "PB", 330000, 30000, 7000,
                                       210000, "PAID", "o1")], "other-2025")
    assert ledger.decisions_of(con, "S1", "huhuibao-2025") == [
        ("hospital", 330000, 30000, 7000, 210000, "PAID")]
    assert len(ledger.decisions_of(con, "S1", "other-2025")) == 2
    con.close()
    idx = run_sql(url, "SELECT COUNT(*) FROM " + (
        "pg_indexes WHERE indexname = 'decisions_psn'" if url.startswith("postgresql")
        else "sqlite_master WHERE name = 'decisions_psn'"))[0][0]
    assert idx == 1
    # opened again: nothing changes
    assert puhui("ledger", "status", "--ledger", url).returncode == 0
    assert run_sql(url, "SELECT COUNT(*) FROM decisions")[0][0] == 4


def test_two_commands_opening_a_version_4_ledger_at_once(new_ledger, tmp_path):
    """Two processes open the old ledger together: the upgrade runs once (under the
    write lock the version is read again), and no decision is lost or doubled."""
    from tests.procs import python_c      # processes of their own (forked, stack imported)

    url = new_ledger("old")
    _v4_ledger(url)
    code = "import sys; from puhui.claims import ledger; ledger.connect(sys.argv[1]).close()"
    procs = [python_c(code, url, stdout=None) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert run_sql(url, "SELECT COUNT(*) FROM decisions")[0][0] == 3
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    assert run_sql(url, "SELECT COUNT(DISTINCT product_id) FROM decisions")[0][0] == 3


def test_a_reversal_applied_under_one_product_is_refused_at_once_under_the_other(
        city, tmp_path, new_ledger):
    """After huhuibao reversed T1 at once (as above), the same reversal sent to
    other-2025 is refused with what to do (it was answered "already applied" with
    huhuibao's entries while other-2025's 2,100 for T1 stayed paid); other-2025's next
    batch on data holding the reversal takes it back: H then pays 1,190, as under
    huhuibao, and a ledger holding other-2025 alone gives the same."""
    from puhui.errors import Unprocessable
    from tests.test_review_carried import _two_products as two

    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    rev = _reversal(t1, "R1", "2025-08-01")
    data, later = two(city, tmp_path, [t1, h], "a"), two(city, tmp_path, [t1, h, rev], "b")
    url, alone = new_ledger("l"), f"sqlite:///{tmp_path / 'alone.db'}"
    run_batch(tight, f, data, url, "b1")
    for u in (url, alone):
        run_batch(other, of, data, u, "o1")
    reverse_payout(tight, url, rev)
    with pytest.raises(Unprocessable, match="applied already under huhuibao-2025"):
        reverse_payout(other, url, rev)
    assert _net_of(url, psn, "other-2025") == 350000
    for u in (url, alone):
        run_batch(other, of, later, u, "o2")
    assert _net_of(url, psn, "other-2025") == _net_of(alone, psn, "other-2025") == 119000
    assert _net_of(url, psn, "huhuibao-2025") == 119000
