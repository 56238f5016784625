"""Hostile review of session 21's carried settlements (issue 20): every settlement a
batch carries counts at what it keeps (``puhui.benefits.kept``), before the batch's own.
Truth: a plain loop over the policy year (:func:`_loop`), stated per test.

The tight terms (tests/test_holds.py): huhuibao-2025's hospital benefit with a 300 yuan
deductible, 70 %, a 4,000 yuan annual limit."""
import pandas as pd
import pytest

from puhui.claims.batch import run_batch
from puhui.fund.files import read_raw
from puhui.fund.schema import SETTLEMENTS
from tests.test_holds import TIGHT_TERMS, _entries, _extract, _plain_loop, _tight
from tests.ledgers import run_sql
from tests.test_reversal import _body, _data, _loaded, _net, city  # noqa: F401 - fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _loop(items, deductible=30000, limit=400000):
    """The project's stated rule (docs/claims.md "A claims file"): every settlement of
    the policy year in time order, claimed or not, uses the deductible and the limit
    at what is due on it; ``items`` (in-list yuan, claimed) in time order. Returns the
    due per settlement (fen) and the net paid (the claimed ones' due)."""
    used_ded = used_lim = 0
    due, net = [], 0
    for inlist, claimed in items:
        fen = inlist * 100
        ded = max(0, min(fen, deductible - used_ded))
        used_ded += ded
        pay = max(0, min((fen - ded) * 7000 // 10000, limit - used_lim))
        used_lim += pay
        due.append(pay)
        net += pay if claimed else 0
    return due, net


def _city_ids(city):
    return set(read_raw(city[0], SETTLEMENTS)["setl_id"].astype(str))


def test_an_unclaimed_carried_settlement_holds_its_share_of_the_limit(city, tmp_path,
                                                                      new_ledger):
    """A full-year batch with a claims file naming T2 only: T1 (1 March, 3,300) is due
    2,100 and NOT_CLAIMED, T2 (1 May, 5,000) is paid what the limit leaves after T1's
    due, 1,900 (the claims-file rule: the limit runs over every settlement in time
    order). May's extract after it, the same claims: T1 is carried; it must hold its
    2,100 of the limit as the full-year batch counted it, so nothing is booked."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    t2 = _body("T2", psn, "2025-05-01", 5000, kind)
    claims = _city_ids(city) | {"T2"}
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, t2]), url, "b1", claims=claims)
    due, net = _loop([(3300, False), (5000, True)])
    assert due == [210000, 190000] and _net(url, psn) == net == 190000
    may = _extract(city, tmp_path, "may", [t2], "2025-05-01", "2025-05-31")
    run_batch(tight, f, may, url, "b2", period=("2025-05-01", "2025-05-31"), claims=claims)
    assert _entries(url, "b2", psn) == []
    assert _net(url, psn) == net


def test_a_paid_settlement_left_out_of_a_later_claims_file_stays_within_the_limit(
        city, tmp_path, new_ledger):
    """T1 (1 March, 3,300: 2,100) and T2 (1 May, 3,300: 1,900 of the 4,000 limit) claimed
    and paid by b1. b2's data adds T0 (1 February, 3,300), and its claims file names only
    the new claim T0 (claims filed since: the docs allow claiming in several batches).
    In time order T0 takes the deductible and 2,100, T1 1,900 and T2 nothing. T1 and T2
    were claimed (they were paid): the person must not be paid past 4,000."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t0 = _body("T0", psn, "2025-02-01", 3300, kind)
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    t2 = _body("T2", psn, "2025-05-01", 3300, kind)
    ids = _city_ids(city)
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, t2]), url, "b1", claims=ids | {"T1", "T2"})
    assert _net(url, psn) == 400000
    run_batch(tight, f, _data(city, tmp_path, "b", [t0, t1, t2]), url, "b2", claims=ids | {"T0"})
    due, net = _loop([(3300, True), (3300, True), (3300, True)])
    assert due == [210000, 190000, 0] and _net(url, psn) == net == 400000
    assert sorted(_entries(url, "b2", psn)) == [("T0", "hospital", 210000, "pay"),
                                               ("T1", "hospital", -20000, "adjust"),
                                               ("T2", "hospital", -190000, "adjust")]


OTHER = """
extends = "{base}"
id = "other-2025"
name = "another product with a hospital benefit"
[[benefits]]
id = "hospital"
deductible = {{ amount = 300 }}
limit = 4000
"""


def _two_products(city, tmp_path, bodies, name):
    """The city's data with ``bodies`` and a second policy for the person, of
    ``other-2025`` (the same dates), as a person holding two products in a year."""
    from tests.test_money_safety import write_raw
    from puhui.fund.schema import POLICIES

    d = _data(city, tmp_path, name, bodies)
    pol = read_raw(d, POLICIES)
    mine = pol[pol["psn_no"] == city[1]].iloc[[0]].copy()
    mine["policy_no"] = "OTHER-" + mine["policy_no"].astype(str)
    mine["product_id"] = "other-2025"
    write_raw(pd.concat([pol, mine], ignore_index=True), d, POLICIES)
    return d


def test_two_products_of_one_person_keep_their_own_limits(city, tmp_path, new_ledger):
    """The person holds huhuibao-2025 (tight) and other-2025 (the same terms, its own
    limit). Both products' batches pay T1 (1 March, 3,300: 2,100) and H (20 May, 2,000:
    1,400). Then huhuibao's extract of 1-2 May brings T2 (1 May, 3,000): carried T1 and
    H must count under huhuibao's policy at what huhuibao paid them (3,500 of its 4,000),
    so T2 is paid 500 - whatever the other product decided on the same settlements."""
    from puhui.products.model import load_product

    tight, f = _tight(tmp_path)
    of = tmp_path / "other.toml"
    of.write_text(OTHER.format(base=f), encoding="utf-8")
    other = load_product(of)
    full, psn, kind, *_ = city
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    h = _body("H1", psn, "2025-05-20", 2000, kind)
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    data = _two_products(city, tmp_path, [t1, h], "a")
    url = new_ledger("l")
    run_batch(tight, f, data, url, "b1")
    run_batch(other, of, data, url, "o1")
    assert _net(url, psn) == 2 * 350000
    may = _extract(city, tmp_path, "may", [t2], "2025-05-01", "2025-05-02")
    from puhui.fund.schema import POLICIES
    from tests.test_money_safety import write_raw
    write_raw(read_raw(data, POLICIES), may, POLICIES)
    run_batch(tight, f, may, url, "b2", period=("2025-05-01", "2025-05-02"))
    assert _entries(url, "b2", psn) == [("T2", "hospital", 50000, "pay")]
    huhuibao = run_sql(url, "SELECT SUM(m.payout_fen) FROM payments m JOIN policies p ON"
                            " p.policy_no = m.policy_no WHERE m.psn_no = ? AND p.product_id"
                            " = 'huhuibao-2025'", (psn,))[0][0]
    assert huhuibao == 400000      # 2,100 + 1,400 + 500 (it was 1,890: 5,390)
