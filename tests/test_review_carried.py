"""Hostile review of session 21's carried settlements (issue 20): every settlement a
batch carries counts at what it keeps (``puhui.benefits.kept``), before the batch's own.
Truth: plain loops over the policy year (:func:`_loop`, :func:`_shared_loop`,
``tests.test_holds._plain_loop``), the rule each follows stated in its docstring.

Found here (session 21): a one-month extract after a full-year batch booked +1,600 for
a settlement whose earlier neighbour had no claim filed (carried at its 0 paid, not at
its due); a claims file naming only the claims filed since left a paid settlement at
its old payout while the limit ran over its lower due (4,200 paid of a 4,000 limit); a
second product deciding the same settlements under a benefit of the same name made the
first product's carried settlements count nothing (5,390 of 4,000).

The tight terms (tests/test_holds.py): huhuibao-2025's hospital benefit with a 300 yuan
deductible, 70 %, a 4,000 yuan annual limit."""
import pandas as pd
import pytest

from puhui.claims.batch import run_batch
from puhui.fund.files import read_raw
from puhui.fund.schema import POLICIES, SETTLEMENTS
from tests.ledgers import run_sql
from tests.test_holds import TIGHT_TERMS, _entries, _extract, _plain_loop, _tight
from tests.test_money_safety import write_raw
from tests.test_reversal import (PRODUCT, _acc, _body, _data, _loaded, _net,  # noqa: F401
                                 city)                                         # a fixture

PRODUCT_PATH = PRODUCT.path

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
    assert _acc(url, psn) == [("deductible:hospital", 30000), ("limit:hospital", 400000)]
    # T1's claim filed: the year's batch pays it its 2,100 and moves nothing else
    run_batch(tight, f, _data(city, tmp_path, "c", [t1, t2]), url, "b3", claims=claims | {"T1"})
    due, net = _loop([(3300, True), (5000, True)])
    assert _entries(url, "b3", psn) == [("T1", "hospital", 210000, "pay")]
    assert _net(url, psn) == net == 400000


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
    write_raw(read_raw(data, POLICIES), may, POLICIES)     # both policies, as in ``data``
    run_batch(tight, f, may, url, "b2", period=("2025-05-01", "2025-05-02"))
    assert _entries(url, "b2", psn) == [("T2", "hospital", 50000, "pay")]
    huhuibao = run_sql(url, "SELECT SUM(m.payout_fen) FROM payments m JOIN policies p ON"
                            " p.policy_no = m.policy_no WHERE m.psn_no = ? AND p.product_id"
                            " = 'huhuibao-2025'", (psn,))[0][0]
    assert huhuibao == 400000      # 2,100 + 1,400 + 500 (it was 1,890: 5,390)


def test_counter_extract_reversal_and_full_year_converge(city, tmp_path, new_ledger):
    """At the counter T1 (1 March, 3,300: 2,100) and H (20 May, 2,000: 1,400); the 1-2 May
    extract brings T2 (1 May, 3,000): 500, what the limit leaves after what the counter
    paid. T1 reversed at once: the ledger's T2 and H re-decided in time order (T2 takes
    the deductible: 1,890; H 1,400). A batch on the whole year with the reversal then
    books nothing, and the May extract after it books nothing: the plain loop in time
    order over T2 and H (net 3,290)."""
    from puhui.claims.direct import direct_payout
    from puhui.claims.reverse import reverse_payout
    from tests.test_reversal import _reversal

    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    h = _body("H1", psn, "2025-05-20", 2000, kind)
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    assert [direct_payout(tight, url, b)["total_payout"] for b in (t1, h)] == [2100.0, 1400.0]
    may = _extract(city, tmp_path, "may", [t2], "2025-05-01", "2025-05-02")
    run_batch(tight, f, may, url, "m1", period=("2025-05-01", "2025-05-02"))
    assert _entries(url, "m1", psn) == [("T2", "hospital", 50000, "pay")]
    assert _net(url, psn) == 400000
    rev = _reversal(t1, "R1", "2025-08-01")
    reverse_payout(tight, url, rev)
    due, net = _loop([(3000, True), (2000, True)])
    assert _net(url, psn) == net == 329000
    run_batch(tight, f, _data(city, tmp_path, "year", [t1, t2, h, rev]), url, "y1")
    assert _entries(url, "y1", psn) == [] and _net(url, psn) == net
    run_batch(tight, f, may, url, "m2", period=("2025-05-01", "2025-05-02"))
    assert _entries(url, "m2", psn) == [] and _net(url, psn) == net
    _, acc = _plain_loop([3000, 2000], **TIGHT_TERMS)
    assert _acc(url, psn) == acc


SHARED = """
extends = "{base}"
id = "huhuibao-2025"
[[benefits]]
id = "hospital"
deductible = {{ amount = 300, shared = "hospital", claim_free = [{{ years = 2, amount = 200 }}] }}
limit = 4000
[[benefits]]
id = "hospital_out"
name = "out-of-list self-pay of a stay"
pays_on = "out_of_list_self_pay"
filters = {{ med_type = ["21", "22", "23", "24", "52", "14"] }}
deductible = {{ amount = 300, shared = "hospital", claim_free = [{{ years = 2, amount = 200 }}] }}
ratio = 0.50
preexisting_ratio = 0.30
limit = 600
"""


def _stay(sid, psn, day, inlist, out, kind):
    """A stay with ``inlist`` in-list and ``out`` out-of-list self-pay (yuan)."""
    b = _body(sid, psn, day, inlist, kind)
    return b | {"psn_part_amt": inlist + out, "fulamt_ownpay_amt": out,
                "medfee_sumamt": inlist * 3 + out}


def _shared_loop(stays, used=(0, 0, 0)):
    """Two benefits sharing the 300 yuan deductible (in-list 70 % to 4,000; out-of-list
    50 % to 600), in file order within a stay, stays in the order given, from ``used``
    (deductible, in-list limit, out-of-list limit, fen). Payouts per stay (fen)."""
    ded, lim_in, lim_out = used
    out = []
    for inlist, extra in stays:
        pays = []
        for fen, bp, cap, kind in ((inlist * 100, 7000, 400000, "in"), (extra * 100, 5000,
                                                                        60000, "out")):
            d = max(0, min(fen, 30000 - ded))
            ded += d
            room = cap - (lim_in if kind == "in" else lim_out)
            p = max(0, min((fen - d) * bp // 10000, room))
            if kind == "in":
                lim_in += p
            else:
                lim_out += p
            pays.append(p)
        out.append(tuple(pays))
    return out, (ded, lim_in, lim_out)


def test_a_shared_deductible_month_extract_after_the_year_and_a_late_stay(city, tmp_path,
                                                                         new_ledger):
    """A (1 March: 200 in-list, 400 out-of-list) and B (1 May: 3,000 / 1,000), one batch
    on the year, as the loop in time order: A 0 / 150 (the deductible: 200 + 100), B
    2,100 / 450 (the 600 out-of-list limit). May's extract after it books nothing. C (1
    April: 1,000 / 500) then arrives in April's extract: A and B count at what they keep
    (the whole deductible, 2,100 and 600 of the limits), so C is paid 700 and 0; the
    year's batch then re-decides A, C, B in time order (C 700 / 250, B 2,100 / 200)."""
    from puhui.products.model import load_product

    sf = tmp_path / "shared.toml"
    sf.write_text(SHARED.format(base=PRODUCT_PATH), encoding="utf-8")
    shared = load_product(sf)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    a = _stay("A1", psn, "2025-03-01", 200, 400, kind)
    b = _stay("B1", psn, "2025-05-01", 3000, 1000, kind)
    c = _stay("C1", psn, "2025-04-01", 1000, 500, kind)
    run_batch(shared, sf, _data(city, tmp_path, "year", [a, b]), url, "y1")
    pays, used = _shared_loop([(200, 400), (3000, 1000)])
    assert _net(url, psn) == sum(map(sum, pays))
    may = _extract(city, tmp_path, "may", [b], "2025-05-01", "2025-05-31")
    run_batch(shared, sf, may, url, "m1", period=("2025-05-01", "2025-05-31"))
    assert _entries(url, "m1", psn) == []
    april = _extract(city, tmp_path, "april", [c], "2025-04-01", "2025-04-30")
    run_batch(shared, sf, april, url, "a1", period=("2025-04-01", "2025-04-30"))
    late, _ = _shared_loop([(1000, 500)], used)
    assert sorted(e[1:3] for e in _entries(url, "a1", psn) if e[2]) == sorted(
        [(bn, p) for bn, p in zip(("hospital", "hospital_out"), late[0]) if p])
    run_batch(shared, sf, _data(city, tmp_path, "year2", [a, b, c]), url, "y2")
    pays, used = _shared_loop([(200, 400), (1000, 500), (3000, 1000)])
    assert _net(url, psn) == sum(map(sum, pays))
    assert used[1] <= 400000 and used[2] <= 60000


def test_a_complete_month_takes_back_and_the_carried_keep_their_room(city, tmp_path,
                                                                     new_ledger):
    """The year's batch pays T1 (1 March, 3,300: 2,100) and T2 (1 May, 3,300: 1,900).
    May's extract stated complete lacks T2 and brings T3 (10 May, 3,000): T2 is taken
    back (NOT_IN_DATA) and T3 paid what T1's kept use leaves (1,900); the year's batch
    on T1 and T3 then books nothing: the loop in time order over T1, T3."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    t2 = _body("T2", psn, "2025-05-01", 3300, kind)
    t3 = _body("T3", psn, "2025-05-10", 3000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, t2]), url, "y1")
    assert _net(url, psn) == 400000
    may = _extract(city, tmp_path, "may", [t3], "2025-05-01", "2025-05-31")
    run_batch(tight, f, may, url, "m1", period=("2025-05-01", "2025-05-31"), complete=True)
    assert sorted(e[:3] for e in _entries(url, "m1", psn)) == [
        ("T2", "hospital", -190000), ("T3", "hospital", 190000)]
    due, net = _loop([(3300, True), (3000, True)])
    assert _net(url, psn) == net == 400000
    run_batch(tight, f, _data(city, tmp_path, "b", [t1, t3]), url, "y2")
    assert _entries(url, "y2", psn) == [] and _net(url, psn) == net
    assert (net, _acc(url, psn)) == _plain_loop([3300, 3000], **TIGHT_TERMS)
