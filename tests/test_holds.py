"""A settlement a claims batch holds for review stays held (session 21, issue 20's open
item). The ledger records the hold (schema 4); a reversal at once (``POST /v1/reversal``,
``claims direct`` with refund_of), a direct payout under the held id, a re-run batch and
a batch on data holding only a reversal leave the held settlement as it was paid; after
``puhui claims release`` the next batch (or reversal) pays what is due. Truth: hand
figures and a plain loop over the policy year (deductible then 70 %), both backends.

The story (one insured person, huhuibao-2025's hospital benefit: 12,000 yuan deductible,
70 % above it): T1 20,000 / T2 10,000 / T3 6,000 yuan in-list self-pay on 1 March, 1 May,
1 July. X (29 April, the same hospital, nothing self-paid) makes T2 an admission split
from X (F_SPLIT_ADMISSION): a batch whose data holds X holds T2."""
import json

import pandas as pd
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import held_of_policy, reverse_payout
from puhui.fund.files import read_raw
from puhui.fund.schema import SETTLEMENTS
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_reversal import (DAYS, PRODUCT, _acc, _body, _data, _loaded, _net,
                                 _reversal, _three, city)  # noqa: F401 - city: a fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FLAG = "F_SPLIT_ADMISSION"


def _x(psn, kind):
    """A stay two days before T2 at the same hospital, paid wholly by the fund."""
    return _body("X1", psn, "2025-04-29", 0, kind) | {"medfee_sumamt": 300, "hifp_pay": 300}


def _plain_loop(inlists, kept=(), deductible=1_200_000, limit=10**12):
    """Net paid and the policy's accumulators (fen, those used) by a plain loop: the
    held settlements' kept (deductible, payout) in fen first, whatever their dates (they
    are not adjudicated again), then the others (in-list yuan) in time order: the
    deductible, 70 % of the rest, what the limit leaves of that."""
    used_ded = sum(d for d, _ in kept)
    used_lim = net = sum(p for _, p in kept)
    for inlist in inlists:
        fen = inlist * 100
        ded = max(0, min(fen, deductible - used_ded))
        used_ded += ded
        pay = max(0, min((fen - ded) * 7000 // 10000, limit - used_lim))
        used_lim += pay
        net += pay
    return net, [(a, v) for a, v in (("deductible:hospital", used_ded),
                                     ("limit:hospital", used_lim)) if v]


def _entries(url, batch, psn):
    return run_sql(url, "SELECT applies_to, benefit, payout_fen, kind FROM payments WHERE"
                        " batch_id = ? AND psn_no = ? ORDER BY entry_id", (batch, psn))


def test_the_pure_parts():
    assert held_of_policy({"T2": FLAG, "Z9": FLAG}, [("T2", {}), ("T3", {})]) == {"T2": FLAG}
    assert _plain_loop([10000, 6000]) == (280000, [
        ("deductible:hospital", 1_200_000), ("limit:hospital", 280000)])
    # kept first: the deductible left after a kept 0 is all 12,000, so 6,000 pays 0
    assert _plain_loop([6000], kept=[(0, 700000)]) == (700000, [
        ("deductible:hospital", 600000), ("limit:hospital", 700000)])
    # the limit left after a kept 1,400 (of 4,000): 2,100 pays 2,100, then 500
    assert _plain_loop([3300, 3000], [(0, 140000)], 30000, 400000) == (400000, [
        ("deductible:hospital", 30000), ("limit:hospital", 400000)])


def test_a_reversal_leaves_a_held_settlement_as_it_was_paid(city, tmp_path, new_ledger):
    """T1..T3 paid at the counter (5,600 / 7,000 / 4,200); a batch on data holding X holds
    T2 (its 7,000 kept, paid after no deductible); T1 reversed at once: T1 -5,600 and T3
    -4,200 (T2 counts at what it keeps, 0 deductible and 7,000, so the whole 12,000
    deductible is left for T3: 6,000 of it), and nothing for T2 (it was -7,000 before the
    ledger recorded holds). Net 7,000, the plain loop's with T2's kept amounts first
    (counted at what it would be paid now - the deductible on T2 - T3 was paid 2,800 more
    until session 21). Then: a direct resend of T2, a new settlement T4 (1,000: pays 0,
    5,000 of deductible are left), the batch again, data holding only the reversal:
    nothing moves for T2. Released: the next batch takes T2 to what is due (0), T3 to
    2,800 and T4 to 700: net 3,500 as if never held."""
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1, t2, t3 = _three(psn, kind)
    assert [direct_payout(PRODUCT, url, b)["total_payout"] for b in (t1, t2, t3)] == \
        [5600.0, 7000.0, 4200.0]
    with_x = _data(city, tmp_path, "with-x", [t1, _x(psn, kind), t2, t3])
    res = run_batch(PRODUCT, PRODUCT.path, with_x, url, "b-hold")
    held = res.eob[res.eob["setl_id"] == "T2"]
    assert set(held["reason"].astype(str)) == {FLAG} and (held["payout_amt"] == 0).all()
    assert _net(url, psn) == 1_680_000 and _entries(url, "b-hold", psn) == []
    h = ledger.hold_of(ledger.connect(url), "T2")
    assert h[:3] == (psn, FLAG, "b-hold") and h[4] is None
    # the reversal at once
    answer = reverse_payout(PRODUCT, url, _reversal(t1, "R1", "2025-08-01"))
    assert [(e["applies_to"], e["kind"], e["payout_amt"]) for e in answer["entries"]] == \
        [("T1", "reverse", -5600.0), ("T3", "adjust", -4200.0)]
    assert answer["held"] == [{"setl_id": "T2", "reason": FLAG}]
    net, acc = _plain_loop([6000], kept=[(0, 700000)])
    assert net == 700000 and _net(url, psn) == net and _acc(url, psn) == acc
    assert acc == [("deductible:hospital", 600000), ("limit:hospital", 700000)]
    # a direct resend of the held id: answered from the ledger, with the hold
    again = direct_payout(PRODUCT, url, t2)
    assert again["already_decided"] and again["held"]["reason"] == FLAG
    # the holding batch again, data holding the reversal (and X), and data holding the
    # reversal without its original: T2 stays as paid
    run_batch(PRODUCT, PRODUCT.path, with_x, url, "b-hold")
    rev = _reversal(t1, "R1", "2025-08-01")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "with-rev",
                                           [t1, _x(psn, kind), t2, t3, rev]), url, "b-rev")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "only-rev",
                                           [_x(psn, kind), t2, t3, rev]), url, "b-only-rev")
    assert _net(url, psn) == 700000 and _acc(url, psn) == acc
    # a new settlement of the person after the hold: decided against the accumulators
    # (6,000 of the deductible left: 1,000 pays nothing)
    t4 = _body("T4", psn, "2025-09-01", 1000, kind)
    assert direct_payout(PRODUCT, url, t4)["total_payout"] == 0.0
    assert (_net(url, psn), _acc(url, psn)) == _plain_loop([6000, 1000], kept=[(0, 700000)])
    assert run_sql(url, "SELECT COALESCE(SUM(payout_fen), 0) FROM payments WHERE applies_to"
                        " = 'T2'")[0][0] == 700000
    # released after review: the next batch holding T2 pays what is due for it (0: the
    # deductible falls on it once T1 is reversed), and T3 and T4 what the deductible
    # then leaves them, as if T2 had never been held
    r = puhui("claims", "release", "--ledger", url, "--setl-id", "T2", "--reason",
              "same stay billed in two parts; reviewed, genuine")
    assert r.returncode == 0, r.stderr
    assert "held for review: 0 settlement(s); released after review: 1" in \
        puhui("ledger", "status", "--ledger", url).stdout
    rev_data = _data(city, tmp_path, "all", [t1, _x(psn, kind), t2, t3, rev, t4])
    run_batch(PRODUCT, PRODUCT.path, rev_data, url, "b-released")
    assert sorted(e[:3] for e in _entries(url, "b-released", psn)) == [
        ("T2", "hospital", -700000), ("T3", "hospital", 280000), ("T4", "hospital", 70000)]
    net, acc = _plain_loop([10000, 6000, 1000])
    assert _net(url, psn) == net == 280000 + 70000 and _acc(url, psn) == acc


def test_the_same_story_over_the_api(city, tmp_path, new_ledger):
    """The service's POST /v1/reversal leaves the held T2 alone, lists the hold, and the
    settlement's EOB (GET) and a resend say held."""
    from fastapi.testclient import TestClient

    from puhui.service import create_app

    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("svc"))
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    c, h = TestClient(create_app(PRODUCT, url)), {"Authorization": f"Bearer {key}"}
    t1, t2, t3 = _three(psn, kind)
    for b in (t1, t2, t3):
        assert c.post("/v1/settlement", json=b, headers=h).status_code == 201
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "x", [t1, _x(psn, kind), t2, t3]),
              url, "b-hold")
    r = c.post("/v1/reversal", json=_reversal(t1, "R1", "2025-08-01"), headers=h)
    assert r.status_code == 201, r.text
    assert [e["applies_to"] for e in r.json()["entries"]] == ["T1", "T3"]
    assert r.json()["net_payout_amt"] == 7000.0 and r.json()["held"][0]["reason"] == FLAG
    resend = c.post("/v1/settlement", json=t2, headers=h)
    assert resend.status_code == 200 and resend.json()["held"]["reason"] == FLAG
    assert c.get("/v1/settlements/T2", headers=h).json()["held"]["reason"] == FLAG


def test_a_settlement_held_at_first_sight_is_paid_after_release(city, tmp_path, new_ledger):
    """The batch sees T2 first with X: held, nothing paid or stored (T1 5,600, T3 4,200);
    sent at the counter it is answered held, 0, nothing recorded; a re-run pays nothing;
    released, the same data's next batch pays it 7,000; then T1 reversed at once: T2 and
    T3 re-adjudicated (-7,000, -1,400), net 2,800 - the plain loop's figures each time."""
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1, t2, t3 = _three(psn, kind)
    data = _data(city, tmp_path, "first", [t1, _x(psn, kind), t2, t3])
    run_batch(PRODUCT, PRODUCT.path, data, url, "b1")
    assert _net(url, psn) == 560000 + 420000
    counter = direct_payout(PRODUCT, url, t2)
    assert counter["total_payout"] == 0 and counter["recorded"] is False
    assert {b["reason"] for b in counter["benefits"]} == {FLAG}
    assert ledger.decisions_of(ledger.connect(url), "T2", PRODUCT.id) == []
    run_batch(PRODUCT, PRODUCT.path, data, url, "b1")            # resumed / re-run
    run_batch(PRODUCT, PRODUCT.path, data, url, "b2")            # a later batch, flagged again
    # data without X: the flag does not fire, the ledger's hold still holds T2
    no_x = run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "no-x", [t1, t2, t3]),
                     url, "b-no-x")
    held = no_x.eob[no_x.eob["setl_id"] == "T2"]
    assert set(held["reason"].astype(str)) == {FLAG} and (held["payout_amt"] == 0).all()
    assert _net(url, psn) == 980000
    assert puhui("claims", "release", "--ledger", url, "--setl-id", "T2", "--reason",
                 "reviewed").returncode == 0
    run_batch(PRODUCT, PRODUCT.path, data, url, "b3")
    net, acc = _plain_loop([20000, 10000, 6000])
    assert _entries(url, "b3", psn) == [("T2", "hospital", 700000, "pay")]
    assert _net(url, psn) == net == 1_680_000 and _acc(url, psn) == acc
    f = tmp_path / "r1.json"              # through `claims direct`, as a counter sends it
    f.write_text(json.dumps(_reversal(t1, "R1", "2025-08-01")), encoding="utf-8")
    r = puhui("claims", "direct", "--product", PRODUCT.id, "--ledger", url, "--settlement", f)
    assert r.returncode == 0 and "held" not in json.loads(r.stdout), r.stderr
    net, acc = _plain_loop([10000, 6000])
    assert _net(url, psn) == net == 280000 and _acc(url, psn) == acc


def test_release_refuses_what_it_cannot_do(city, tmp_path, new_ledger):
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1, t2, t3 = _three(psn, kind)
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "d", [t1, _x(psn, kind), t2, t3]),
              url, "b1")
    for args, words in ((["--setl-id", "NOPE", "--reason", "x"], "no hold"),
                        (["--setl-id", "T2", "--reason", "call 13812345678"], "personal data"),
                        (["--setl-id", "T2", "--reason", " "], "say why")):
        r = puhui("claims", "release", "--ledger", url, *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "13812345678" not in r.stderr
    assert puhui("claims", "release", "--ledger", url, "--setl-id", "T2", "--reason",
                 "ok").returncode == 0
    r = puhui("claims", "release", "--ledger", url, "--setl-id", "T2", "--reason", "ok")
    assert r.returncode == 2 and "released already" in r.stderr
    audit = run_sql(url, "SELECT command, detail FROM audit WHERE command = 'claims release'")
    assert len(audit) == 1 and "F_SPLIT_ADMISSION" in audit[0][1]


def test_a_version_3_ledger_is_upgraded(tmp_path, new_ledger):
    """A version-3 ledger (no holds table) opened by any command gains an empty one (and
    every later upgrade: tests/test_decisions_per_product.py)."""
    url = new_ledger("old")
    ledger.connect(url).close()
    run_sql(url, "DROP TABLE holds")
    run_sql(url, "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 0 and "held for review" not in r.stdout
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    assert run_sql(url, "SELECT COUNT(*) FROM holds")[0][0] == 0


def _tight(tmp_path):
    """huhuibao-2025 with a 300 yuan deductible and a 4,000 yuan limit (70 %)."""
    from puhui.products.model import load_product

    from tests.test_money_safety import TIGHT

    f = tmp_path / "tight.toml"
    f.write_text(TIGHT.format(base=PRODUCT.path), encoding="utf-8")
    return load_product(f), f


TIGHT_TERMS = {"deductible": 30000, "limit": 400000}


def test_a_held_settlement_and_a_new_earlier_one_stay_within_the_limit(city, tmp_path,
                                                                       new_ledger):
    """T1 3,300 (pays 2,100) and H 2,000 on 3 May (pays 1,400) paid by a batch; the next
    batch's data adds T2 3,000 on 1 May at the same hospital, so H is split from T2 and
    held, keeping its 1,400. T2 is paid what the limit leaves, 500 (4,000 - 2,100 -
    1,400; counted at H's fresh 0, it was paid 1,900: 5,400 in all, until session 21).
    Released, the next batch pays as if H had never been held: T2 1,900, H 0."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    h = _body("H1", psn, "2025-05-03", 2000, kind)
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, h]), url, "b1")
    assert _net(url, psn) == 210000 + 140000
    data = _data(city, tmp_path, "b", [t1, t2, h])
    res = run_batch(tight, f, data, url, "b2")
    assert set(res.eob.loc[res.eob["setl_id"] == "H1", "reason"].astype(str)) == {FLAG}
    assert _entries(url, "b2", psn) == [("T2", "hospital", 50000, "pay")]
    net, acc = _plain_loop([3300, 3000], kept=[(0, 140000)], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc
    run_batch(tight, f, data, url, "b3")                 # the next batch: nothing moves
    assert _entries(url, "b3", psn) == [] and _net(url, psn) == 400000
    assert puhui("claims", "release", "--ledger", url, "--setl-id", "H1", "--reason",
                 "reviewed").returncode == 0
    run_batch(tight, f, data, url, "b4")
    assert sorted(e[:3] for e in _entries(url, "b4", psn)) == [
        ("H1", "hospital", -140000), ("T2", "hospital", 140000)]
    net, acc = _plain_loop([3300, 3000, 2000], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc


def test_a_held_settlement_keeps_the_deductible_it_used(city, tmp_path, new_ledger):
    """The deductible side: H 2,000 on 3 May, paid alone (the 300 deductible on it:
    1,190); the next batch's data adds T2 3,000 on 1 May, which holds H. H counts at
    what it keeps (300 deductible, 1,190), so T2 has no deductible left and is paid
    2,100 (counted at H's fresh use, T2 took the deductible again and was paid 1,890:
    the person charged 600 of a 300 deductible)."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    h = _body("H1", psn, "2025-05-03", 2000, kind)
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [h]), url, "b1")
    assert _net(url, psn) == 119000
    run_batch(tight, f, _data(city, tmp_path, "b", [t2, h]), url, "b2")
    assert _entries(url, "b2", psn) == [("T2", "hospital", 210000, "pay")]
    net, acc = _plain_loop([3000], kept=[(30000, 119000)], **TIGHT_TERMS)
    assert _net(url, psn) == net == 329000 and _acc(url, psn) == acc
    assert acc == [("deductible:hospital", 30000), ("limit:hospital", 329000)]


def test_a_held_settlement_never_paid_counts_as_nothing(city, tmp_path, new_ledger):
    """H (3 May) is held the first time a batch sees it, beside T2 (1 May, 3,000: pays
    1,890): never paid, it uses nothing, so T5 (1 June, 5,000) in the next batch is paid
    the 2,110 the limit leaves. Released, the next batch pays H 1,400 and takes T5 back
    to 710: as a plain loop over T2, H, T5."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    h = _body("H1", psn, "2025-05-03", 2000, kind)
    t5 = _body("T5", psn, "2025-06-01", 5000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [t2, h]), url, "b1")
    assert _entries(url, "b1", psn) == [("T2", "hospital", 189000, "pay")]
    assert ledger.hold_of(ledger.connect(url), "H1")[1] == FLAG
    data = _data(city, tmp_path, "b", [t2, h, t5])
    run_batch(tight, f, data, url, "b2")
    assert _entries(url, "b2", psn) == [("T5", "hospital", 211000, "pay")]
    net, acc = _plain_loop([3000, 5000], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc
    assert puhui("claims", "release", "--ledger", url, "--setl-id", "H1", "--reason",
                 "reviewed").returncode == 0
    run_batch(tight, f, data, url, "b3")
    assert sorted(e[:3] for e in _entries(url, "b3", psn)) == [
        ("H1", "hospital", 140000), ("T5", "hospital", -140000)]
    net, acc = _plain_loop([3000, 2000, 5000], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc


def test_a_reversal_counts_a_held_settlement_at_what_it_keeps(city, tmp_path, new_ledger):
    """The reversal path, the limit side. At the counter: T1 1,000 on 1 March (the 300
    deductible: 490), H 2,000 on 1 May (1,400), T3 5,000 on 1 July (3,500, cut to the
    2,110 the 4,000 limit leaves); a batch on data with X (29 April) holds H. T1 reversed
    at once: T3 is re-adjudicated with H counted at what it keeps (0 deductible, 1,400):
    the deductible falls on T3, 3,290, cut to 2,600: +490; net 4,000. (Counted at H's
    fresh 1,190, T3 was taken to 2,810: 4,210 paid against the 4,000 limit.) Released,
    the next batch takes H to 1,190 and T3 to 2,810."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 1000, kind)
    h = _body("H1", psn, "2025-05-01", 2000, kind)
    t3 = _body("T3", psn, "2025-07-01", 5000, kind)
    assert [direct_payout(tight, url, b)["total_payout"] for b in (t1, h, t3)] == \
        [490.0, 1400.0, 2110.0]
    run_batch(tight, f, _data(city, tmp_path, "x", [t1, _x(psn, kind), h, t3]), url, "b-hold")
    assert ledger.hold_of(ledger.connect(url), "H1")[1] == FLAG
    assert _net(url, psn) == 400000
    answer = reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    assert [(e["applies_to"], e["kind"], e["payout_amt"]) for e in answer["entries"]] == \
        [("T1", "reverse", -490.0), ("T3", "adjust", 490.0)]
    net, acc = _plain_loop([5000], kept=[(0, 140000)], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc
    assert puhui("claims", "release", "--ledger", url, "--setl-id", "H1", "--reason",
                 "reviewed").returncode == 0
    rev = _reversal(t1, "R1", "2025-08-01")
    run_batch(tight, f, _data(city, tmp_path, "all", [t1, _x(psn, kind), h, t3, rev]), url,
              "b-released")
    assert sorted(e[:3] for e in _entries(url, "b-released", psn)) == [
        ("H1", "hospital", -21000), ("T3", "hospital", 21000)]
    net, acc = _plain_loop([2000, 5000], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc


def _extract(city, tmp_path, name, bodies, first, last):
    """A month's extract: the city's settlements dated ``first`` to ``last`` (no
    reversals) and ``bodies``, the batch's period stated."""
    from tests.test_money_safety import _copy_fund

    st = read_raw(_data(city, tmp_path, name, bodies), SETTLEMENTS)
    day = pd.to_datetime(st["setl_time"]).dt.strftime("%Y-%m-%d")
    keep = (day >= first) & (day <= last) & st["refund_of"].isna()
    return _copy_fund(city[0], tmp_path / (name + "-extract"), st[keep].reset_index(drop=True))


def test_a_held_settlement_absent_from_the_data_counts_at_what_it_keeps(city, tmp_path,
                                                                        new_ledger):
    """H (1 May, 1,400) held by a batch on data with X; April's extract then brings T2
    (1 April, 3,000) without H: H's hold is in force, so it counts at what it keeps and
    T2 is paid the 500 the limit leaves (4,000 - 2,100 - 1,400), not 1,900."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    h = _body("H1", psn, "2025-05-01", 2000, kind)
    t2 = _body("T2", psn, "2025-04-01", 3000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, h]), url, "b1")
    run_batch(tight, f, _data(city, tmp_path, "b", [t1, _x(psn, kind), h]), url, "b2")
    assert ledger.hold_of(ledger.connect(url), "H1")[1] == FLAG and _net(url, psn) == 350000
    april = _extract(city, tmp_path, "april", [t2], "2025-04-01", "2025-04-30")
    run_batch(tight, f, april, url, "b3", period=("2025-04-01", "2025-04-30"))
    assert _entries(url, "b3", psn) == [("T2", "hospital", 50000, "pay")]
    net, acc = _plain_loop([3300, 3000], kept=[(0, 140000)], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc


def test_a_carried_settlement_and_a_new_earlier_one_stay_within_the_limit(city, tmp_path,
                                                                         new_ledger):
    """No hold: T1 3,300 and H 2,000 (20 May) paid by a batch (2,100 and 1,400); May's
    first two days' extract brings T2 3,000 (1 May) without them. The carried ones count
    at what they keep, first, so T2 gets what the 4,000 limit leaves: 500 (it was paid
    1,900: 5,400 in all, found in session 21). A batch whose data holds all three then
    re-decides the year in time order: T2 2,100 -> 1,900 of it, H nothing, still 4,000."""
    tight, f = _tight(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1 = _body("T1", psn, "2025-03-01", 3300, kind)
    h = _body("H1", psn, "2025-05-20", 2000, kind)     # far from T2: no split-stay flag
    t2 = _body("T2", psn, "2025-05-01", 3000, kind)
    run_batch(tight, f, _data(city, tmp_path, "a", [t1, h]), url, "b1")
    may = _extract(city, tmp_path, "may", [t2], "2025-05-01", "2025-05-02")
    run_batch(tight, f, may, url, "b2", period=("2025-05-01", "2025-05-02"))
    assert _entries(url, "b2", psn) == [("T2", "hospital", 50000, "pay")]
    net, acc = _plain_loop([3000], kept=[(30000, 210000), (0, 140000)], **TIGHT_TERMS)
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc
    run_batch(tight, f, _data(city, tmp_path, "all", [t1, t2, h]), url, "b3")
    net, acc = _plain_loop([3300, 3000, 2000], **TIGHT_TERMS)      # time order
    assert _net(url, psn) == net == 400000 and _acc(url, psn) == acc
    assert sorted(_entries(url, "b3", psn)) == [("H1", "hospital", -140000, "adjust"),
                                               ("T2", "hospital", 140000, "adjust")]
