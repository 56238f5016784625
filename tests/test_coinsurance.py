"""Co-insurance in claims (issue 22, point 4; ledger schema 7).

A product file may name a co-insuring group (``[[co_insurers]]``); every payment entry
the ledger records for it is split between the insurers in fen. The truth here is built
apart from the model's rule: :func:`_brute` hands each fen over one at a time, with
fractions, to the insurer furthest below its exact share (the model computes floors and
integer remainders); the ledger is read back with plain SQL, summed in plain loops.
"""
from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from types import SimpleNamespace

import pandas as pd
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import reverse_payout
from puhui.claims.shares import carry, entry_shares, split
from puhui.errors import InputError, RuleFileError
from puhui.products.model import CoInsurer, load_product
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_money_safety import TIGHT
from tests.test_reversal import PRODUCT, _body, _loaded, _reversal, city  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

THIRDS = """
extends = "tight.toml"
id = "huhuibao-2025"
[[co_insurers]]
id = "a-lead"
name = "A (lead)"
share = 0.3334
lead = true
[[co_insurers]]
id = "b"
share = 0.3333
[[co_insurers]]
id = "c"
share = 0.3333
"""


def _q(i, bp, lead=False):
    return CoInsurer(i, i.upper(), bp, lead)


G3 = [_q("a-lead", 3334, True), _q("b", 3333), _q("c", 3333)]


def _brute(amount: int, group) -> dict[str, int]:
    """The split built differently: the floor of each exact share (a fraction), then the
    fen left one at a time to the insurer furthest below its exact share (ties: the
    lead, then the smallest id); a negative amount as its opposite, negated."""
    a = abs(amount)
    exact = {q.id: Fraction(a * q.share_bp, 10_000) for q in group}
    got = {i: math.floor(x) for i, x in exact.items()}
    while sum(got.values()) < a:
        q = min(group, key=lambda q: (-(exact[q.id] - got[q.id]), not q.lead, q.id))
        got[q.id] += 1
    return {i: (-v if amount < 0 else v) for i, v in got.items()}


def _files(tmp_path):
    """The tight huhuibao-2025 (300 yuan deductible, 4,000 limit) and the same product
    with three co-insurers at 33.34 / 33.33 / 33.33 %."""
    (tmp_path / "tight.toml").write_text(TIGHT.format(base=PRODUCT.path), encoding="utf-8")
    f = tmp_path / "thirds.toml"
    f.write_text(THIRDS, encoding="utf-8")
    return load_product(tmp_path / "tight.toml"), load_product(f), f


# --- the product file -----------------------------------------------------------------

def _product_with(tmp_path, block: str):
    f = tmp_path / "p.toml"
    f.write_text(f'extends = "{PRODUCT.path}"\nid = "huhuibao-2025"\n{block}', encoding="utf-8")
    return f


def _insurer(i, share, lead=None):
    return (f'[[co_insurers]]\nid = "{i}"\nshare = {share}\n'
            + (f"lead = {str(lead).lower()}\n" if lead is not None else ""))


@pytest.mark.parametrize("block, words", [
    (_insurer("x", 0.5, True) + _insurer("y", 0.4999), "add up to 99.99 %, not 100 %"),
    (_insurer("x", 0.5, True) + _insurer("y", 0.6), "add up to 110 %"),
    (_insurer("x", 0.5, True) + _insurer("x", 0.5), "'x' is given 2 times"),
    (_insurer("x", 0.5) + _insurer("y", 0.5), "0 co-insurers are marked lead"),
    (_insurer("x", 0.5, True) + _insurer("y", 0.5, True), "2 co-insurers are marked lead"),
    (_insurer("x", 1.0, True) + _insurer("y", 0), "'y' has share 0"),
    (_insurer("x", 0.50005, True), "finer than a basis point"),
    ('[[co_insurers]]\nid = "x"\nlead = true\n', "missing 'share'"),
    (_insurer("x", '"0.5"', True), "should be a ratio"),
])
def test_a_bad_co_insuring_group_is_refused(tmp_path, block, words):
    f = _product_with(tmp_path, block)
    with pytest.raises(RuleFileError, match="co_insurers") as e:
        load_product(f)
    assert words in str(e.value), str(e.value)
    r = puhui("product", "check", str(f))
    assert r.returncode == 2 and words in r.stderr, r.stderr


def test_the_example_and_a_product_without_co_insurers(tmp_path):
    from pathlib import Path

    ex = load_product(Path(__file__).resolve().parents[1] / "examples" / "products"
                      / "huhuibao-2025-coinsured.toml")
    assert ex.id == "huhuibao-2025" and sum(q.share_bp for q in ex.co_insurers) == 10_000
    assert [q.id for q in ex.co_insurers if q.lead] == ["lead-life"]
    assert ex.benefits == load_product(PRODUCT.path).benefits      # the same terms
    assert load_product(PRODUCT.path).co_insurers == ()
    ok = load_product(_product_with(tmp_path, _insurer("x", 0.6, True) + _insurer("y", 0.4)))
    assert [(q.id, q.share_bp, q.lead) for q in ok.co_insurers] == [("x", 6000, True),
                                                                    ("y", 4000, False)]


# --- the rule, without a database ------------------------------------------------------

def test_thirds_on_one_fen_and_a_hundred():
    """33.34 / 33.33 / 33.33 %: 1 fen goes to the lead (the largest remainder, 3,334 of
    10,000); 100 fen is 34 / 33 / 33; 2 fen 1 / 1 / 0 (remainders 6,668, 6,666, 6,666:
    b before c by id)."""
    assert split(1, G3) == {"a-lead": 1, "b": 0, "c": 0}
    assert split(100, G3) == {"a-lead": 34, "b": 33, "c": 33}
    assert split(2, G3) == {"a-lead": 1, "b": 1, "c": 0}
    assert split(-1, G3) == {"a-lead": -1, "b": 0, "c": 0}
    assert split(0, G3) == {"a-lead": 0, "b": 0, "c": 0}


def test_ties_go_to_the_lead_then_by_id():
    """Half and half, the lead named second by id: 1 fen to the lead. A quarter, a quarter
    and a half (the lead): 1 fen to the half (remainder 5,000 against 2,500); 2 fen: the
    half has 1 exactly, the quarters tie at 5,000: the fen to 'a' by id."""
    assert split(1, [_q("a", 5000), _q("b-lead", 5000, True)]) == {"a": 0, "b-lead": 1}
    g = [_q("a", 2500), _q("b", 2500), _q("z-lead", 5000, True)]
    assert split(1, g) == {"a": 0, "b": 0, "z-lead": 1}
    assert split(2, g) == {"a": 1, "b": 0, "z-lead": 1}


def test_split_against_the_brute_force():
    rng = random.Random(7)
    groups = [G3, [_q("x", 10_000, True)], [_q("a", 1), _q("b", 9999, True)]]
    for _ in range(40):                      # random groups of 2 to 6 insurers
        n = rng.randint(2, 6)
        cuts = sorted(rng.sample(range(1, 10_000), n - 1))
        bps = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000])]
        lead = rng.randrange(n)
        groups.append([_q(f"i{rng.randint(0, 99):02d}{k}", bp, k == lead)
                       for k, bp in enumerate(bps)])
    for g in groups:
        for a in [0, 1, 2, 3, 99, 100, 101, 9999, 10_001, *rng.sample(range(1, 3000), 15)]:
            for amount in (a, -a):
                got = split(amount, g)
                assert got == _brute(amount, g), (amount, g)
                assert sum(got.values()) == amount


def test_entries_net_to_the_split_of_the_net_and_a_reversal_to_zero():
    """Random chains of a payment, adjustments and a reversal: after each entry every
    insurer's net is the brute split of the net; each entry's shares add up to it; the
    reversal's shares are the negative of everything before it."""
    rng = random.Random(3)
    for _ in range(300):
        net, got = 0, {}
        for amount in [rng.randint(1, 5000)] + [rng.randint(-300, 300) for _ in range(3)]:
            if net + amount < 0:
                continue
            s = entry_shares(amount, net, got, G3)
            assert sum(s.values()) == amount
            net += amount
            got = {i: got.get(i, 0) + s[i] for i in s}
            assert got == _brute(net, G3)
        back = entry_shares(-net, net, got, G3)
        assert back == {i: -v for i, v in got.items()}


def test_carry_splits_unsplit_entries_in_order():
    state, new = carry([("k", 1, 100, None), ("k", 2, -1, None), ("j", 3, 1, None),
                        ("k", 4, -99, None)], G3)
    assert state == {"k": (0, {"a-lead": 0, "b": 0, "c": 0}),
                     "j": (1, {"a-lead": 1, "b": 0, "c": 0})}
    assert [x for x in new if x[0] == 2] == [(2, "a-lead", -1), (2, "b", 0), (2, "c", 0)]


# --- the ledger, on both backends ------------------------------------------------------

def _shares_by_entry(url):
    """{entry_id: (applies_to, benefit, kind, payout_fen, {insurer: fen})} by plain SQL,
    in entry order."""
    out = {}
    for eid, a, b, kind, fen in run_sql(url, "SELECT entry_id, applies_to, benefit, kind,"
                                             " payout_fen FROM payments ORDER BY entry_id"):
        out[int(eid)] = (a, b, kind, int(fen), {})
    for eid, i, fen in run_sql(url, "SELECT entry_id, insurer_id, share_fen FROM"
                                    " payment_shares"):
        out[int(eid)][4][i] = int(fen)
    return out


def _check_ledger(url):
    """Every entry split, its shares adding up to it; every settlement's benefit's net per
    insurer the brute split of its net (a plain loop over the entries in order)."""
    per_key: dict = {}
    for eid, (a, b, kind, fen, shares) in _shares_by_entry(url).items():
        assert sorted(shares) == ["a-lead", "b", "c"], (eid, shares)
        assert sum(shares.values()) == fen, eid
        net, got = per_key.get((a, b), (0, {}))
        if kind == "reverse":
            assert shares == {i: -v for i, v in _brute(net, G3).items()}, eid
        net += fen
        got = {i: got.get(i, 0) + shares[i] for i in shares}
        assert got == _brute(net, G3), (a, b)
        per_key[(a, b)] = (net, got)
    return per_key


def test_a_batch_splits_every_entry_and_writes_the_shares(city, tmp_path, new_ledger):
    """The city's batch under the co-insured tight product: every entry is split; the
    summary's and insurers.csv's totals per insurer are the SQL sums over the batch;
    eob_shares.parquet adds up, per settlement and benefit, to eob.parquet's payouts.
    Run again, nothing is paid twice to any insurer."""
    _, thirds, f = _files(tmp_path)
    url = new_ledger("l")
    out = tmp_path / "o1"
    r = puhui("claims", "run", "--product", str(f), "--data", city[0], "--ledger", url,
              "--batch", "b1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    per_key = _check_ledger(url)
    assert sum(n for n, _ in per_key.values()) > 0
    sums = dict(run_sql(url, "SELECT s.insurer_id, SUM(s.share_fen) FROM payment_shares s"
                             " JOIN payments p ON p.entry_id = s.entry_id WHERE p.batch_id ="
                             " 'b1' GROUP BY s.insurer_id"))
    summary = json.loads((out / "summary.json").read_text())
    assert {x["id"]: round(x["paid_this_batch_yuan"] * 100) for x in summary["insurers"]} \
        == {i: int(v) for i, v in sums.items()}
    assert summary["insurers_match_ledger"] is True
    csv = pd.read_csv(out / "insurers.csv")
    assert list(csv["id"]) == ["a-lead", "b", "c"] and bool(csv["lead"].iloc[0])
    assert round(csv["paid_this_batch_yuan"].sum() * 100) == \
        round(summary["paid_this_batch_yuan"] * 100)
    eob = pd.read_parquet(out / "eob.parquet").astype({"setl_id": str, "benefit": str})
    shares = pd.read_parquet(out / "eob_shares.parquet").astype({"benefit": str})
    paid = eob[eob["payout_amt"] != 0].groupby(["setl_id", "benefit"])["payout_amt"].sum()
    by = shares.groupby(["setl_id", "benefit"])["share_amt"].sum()
    assert len(paid) and paid.round(2).sort_index().equals(by.round(2).sort_index())
    n_entries = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    n_shares = run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0]
    assert n_shares == 3 * n_entries
    # the batch run again, under its id and under a new one: nothing new, for any insurer
    for b in ("b1", "b2"):
        r = puhui("claims", "run", "--product", str(f), "--data", city[0], "--ledger", url,
                  "--batch", b, "--out", str(tmp_path / "o2"))
        assert r.returncode == 0, r.stderr
        assert run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == n_shares
    again = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert [x["paid_this_batch_yuan"] for x in again["insurers"]] == [0.0, 0.0, 0.0]
    assert _check_ledger(url) == per_key


def test_a_reversal_nets_every_insurer_to_zero(city, tmp_path, new_ledger):
    """T1 3,300 (pays 2,100.00: 700.14 / 699.93 / 699.93) and T2 1,000 (700.00) paid at
    the counter; T1 reversed at once: T1's shares are taken back exactly (not split
    again), T2 is decided again (it now takes the 300 deductible: 490.00), each
    insurer's net on T1 is 0 and on T2 the brute split of 49,000 fen."""
    _, thirds, f = _files(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1, t2 = _body("T1", psn, "2025-03-01", 3300, kind), _body("T2", psn, "2025-05-01", 1000, kind)
    a1 = direct_payout(thirds, url, t1)
    assert {x["id"]: x["paid_amt"] for x in a1["insurers"]} == \
        {"a-lead": 700.14, "b": 699.93, "c": 699.93}
    direct_payout(thirds, url, t2)
    ans = reverse_payout(thirds, url, _reversal(t1, "R1", "2025-08-01"))
    per_key = _check_ledger(url)
    assert per_key[("T1", "hospital")] == (0, {"a-lead": 0, "b": 0, "c": 0})
    assert per_key[("T2", "hospital")] == (49_000, _brute(49_000, G3))
    back = [e for e in ans["entries"] if e["applies_to"] == "T1"]
    assert back[0]["shares"] == {"a-lead": -700.14, "b": -699.93, "c": -699.93}
    eob = puhui("ledger", "export", "--ledger", url, "--out", str(tmp_path / "pay.csv"))
    assert eob.returncode == 0, eob.stderr
    sh = pd.read_csv(tmp_path / "pay.shares.csv")
    assert (sh.groupby(["applies_to", "insurer_id"])["share_amt"].sum().round(2)
            .loc["T1"] == 0).all()
    pay = pd.read_csv(tmp_path / "pay.csv")
    joined = sh.groupby(["batch", "applies_to", "benefit"])["share_amt"].sum().round(2)
    keyed = pay.set_index(["batch", "applies_to", "benefit"])["payout_amt"].round(2)
    assert (joined == keyed.reindex(joined.index)).all() and len(joined) == len(pay)


def _policy(url, pol, product):
    run_sql(url, "INSERT INTO policies VALUES (?, 'P1', ?, '2025-01-01', '2025-12-31',"
                 " 12900, 0, 1, 0)", (pol, product))


def _record(url, entries, product, batch="m1"):
    con = ledger.connect(url)
    try:
        with ledger.unit_of_work(con):
            ledger.ensure_open_batch(con, batch, "manual", product.id)
            ledger.record_entries(con, [(s, a, b, "P1", pol, fen, kind, batch, ledger.now())
                                        for s, a, b, pol, fen, kind in entries],
                                  "2025-06-30", product)
    finally:
        con.close()


def test_one_fen_and_a_hundred_in_the_ledger(new_ledger):
    """Entries of 1 fen and 100 fen (and their reversals) under thirds: the shares add
    up to the fen, a reversal takes back exactly what was given; a product without
    co-insurers records no shares."""
    url = new_ledger("l")
    ledger.connect(url).close()
    _policy(url, "PA", "co-2025")
    _policy(url, "PB", "solo-2025")
    co = SimpleNamespace(id="co-2025", co_insurers=tuple(G3))
    solo = SimpleNamespace(id="solo-2025", co_insurers=())
    _record(url, [("S1", "S1", "h", "PA", 1, "pay"), ("S2", "S2", "h", "PA", 100, "pay")], co)
    _record(url, [("R1", "S1", "h", "PA", -1, "reverse"), ("R2", "S2", "h", "PA", -100,
                                                            "reverse")], co, "m2")
    _record(url, [("S3", "S3", "h", "PB", 7, "pay")], solo)
    got = {(a, k): s for a, _, k, _, s in _shares_by_entry(url).values()}
    assert got[("S1", "pay")] == {"a-lead": 1, "b": 0, "c": 0}
    assert got[("S2", "pay")] == {"a-lead": 34, "b": 33, "c": 33}
    assert got[("S1", "reverse")] == {"a-lead": -1, "b": 0, "c": 0}
    assert got[("S2", "reverse")] == {"a-lead": -34, "b": -33, "c": -33}
    assert got[("S3", "pay")] == {}
    # the same entries recorded again (a replay): nothing added
    _record(url, [("S1", "S1", "h", "PA", 1, "pay")], co)
    assert run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == 12


def test_another_group_for_a_split_product_is_refused(city, tmp_path, new_ledger):
    url = new_ledger("l")
    ledger.connect(url).close()
    _policy(url, "PA", "co-2025")
    _record(url, [("S1", "S1", "h", "PA", 100, "pay")],
            SimpleNamespace(id="co-2025", co_insurers=tuple(G3)))
    other = SimpleNamespace(id="co-2025", co_insurers=(_q("a-lead", 5000, True), _q("b", 5000)))
    with pytest.raises(InputError, match="cannot change once its payments are split"):
        _record(url, [("S2", "S2", "h", "PA", 100, "pay")], other)
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == 1
    # a batch of a split product with a file naming no co-insurers: exit 2, nothing written
    tight, thirds, f = _files(tmp_path)
    url2 = new_ledger("l2")
    assert puhui("claims", "run", "--product", str(f), "--data", city[0], "--ledger", url2,
                 "--batch", "b1", "--out", str(tmp_path / "o1")).returncode == 0
    n = run_sql(url2, "SELECT COUNT(*) FROM payments")[0][0]
    r = puhui("claims", "run", "--product", str(tmp_path / "tight.toml"), "--data", city[0],
              "--ledger", url2, "--batch", "b2", "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "names no co-insurers" in r.stderr, r.stderr
    assert run_sql(url2, "SELECT COUNT(*) FROM payments")[0][0] == n
    # a direct payout from the command line with that file: exit 2, nothing written
    full, psn, kind, *_ = city
    body = tmp_path / "t9.json"
    body.write_text(json.dumps(_body("T9", psn, "2025-03-01", 3300, kind)))
    r = puhui("claims", "direct", "--product", str(tmp_path / "tight.toml"), "--ledger",
              url2, "--settlement", str(body))
    assert r.returncode == 2 and "names no co-insurers" in r.stderr, r.stderr
    assert run_sql(url2, "SELECT COUNT(*) FROM payments")[0][0] == n


def test_a_version_6_ledger_is_upgraded_and_split_at_first_use(new_ledger):
    """A schema-6 ledger (no co-insurance tables) with entries of two products: opened,
    it gains the tables and splits nothing. The first entry recorded under co-2025 with
    co-insurers splits every earlier co-2025 entry, in the order recorded (S1 paid 1,000,
    adjusted -1, reversed; S2 paid 5): each insurer's nets are the brute splits; solo-2025
    stays unsplit."""
    url = new_ledger("old")
    ledger.connect(url).close()
    _policy(url, "PA", "co-2025")
    _policy(url, "PB", "solo-2025")
    plain = SimpleNamespace(id="co-2025", co_insurers=())
    solo = SimpleNamespace(id="solo-2025", co_insurers=())
    _record(url, [("S1", "S1", "h", "PA", 1000, "pay"), ("S2", "S2", "h", "PA", 5, "pay")],
            plain, "b1")
    _record(url, [("S1", "S1", "h", "PA", -1, "adjust")], plain, "b2")
    _record(url, [("R1", "S1", "h", "PA", -999, "reverse")], plain, "b3")
    _record(url, [("S9", "S9", "h", "PB", 10, "pay")], solo, "b1")
    run_sql(url, "DROP TABLE payment_shares")
    run_sql(url, "DROP TABLE co_insurers")
    run_sql(url, "UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 0, r.stderr
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION
    assert run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == 0
    _record(url, [("S3", "S3", "h", "PA", 100, "pay")],
            SimpleNamespace(id="co-2025", co_insurers=tuple(G3)), "b4")
    rows = _shares_by_entry(url)
    nets: dict = {}
    for a, _, kind, fen, shares in rows.values():
        if a == "S9":
            assert shares == {}
            continue
        assert sum(shares.values()) == fen
        net, got = nets.get(a, (0, {}))
        nets[a] = (net + fen, {i: got.get(i, 0) + shares[i] for i in shares})
    assert nets == {"S1": (0, _brute(0, G3)), "S2": (5, _brute(5, G3)),
                    "S3": (100, _brute(100, G3))}
    s1 = [s for a, _, _, _, s in rows.values() if a == "S1"]
    assert s1[0] == _brute(1000, G3)                # the payment as it would have been
    assert run_sql(url, "SELECT insurer_id, share_bp, lead FROM co_insurers ORDER BY 1") == \
        [("a-lead", 3334, 1), ("b", 3333, 0), ("c", 3333, 0)]


def test_the_service_answers_each_insurers_share(city, tmp_path, new_ledger):
    """The service's settlement and its EOB read back: `insurers` adds up to the payout,
    each the brute split (T1 3,300 in-list: 2,100.00 paid)."""
    from fastapi.testclient import TestClient

    from puhui.service import create_app

    _, thirds, _f = _files(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("svc"))
    settle = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                   "platform").stdout.strip()
    c = TestClient(create_app(thirds, url))
    h = {"Authorization": f"Bearer {settle}"}
    paid = c.post("/v1/settlement", json=_body("T1", psn, "2025-03-01", 3300, kind), headers=h)
    assert paid.status_code == 201, paid.text
    eob = c.get("/v1/settlements/T1", headers=h)
    assert eob.status_code == 200
    for answer in (paid.json(), eob.json()):
        assert {x["id"]: round(x["paid_amt"] * 100) for x in answer["insurers"]} == \
            _brute(210_000, G3)
        assert answer["insurers"][0]["lead"] is True


def test_a_product_year_that_gains_its_co_insurers_is_split_whole(city, tmp_path, new_ledger):
    """The city's batch under the tight product without co-insurers (nothing split), then
    the same data under the thirds file: it pays nothing more, and every entry of the
    first batch is split then, in the order recorded, as if split when recorded."""
    tight, thirds, f = _files(tmp_path)
    url = new_ledger("l")
    run_batch(tight, tmp_path / "tight.toml", city[0], url, "b1")
    assert run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == 0
    n = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    second = run_batch(thirds, f, city[0], url, "b2")
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == n
    assert [x["paid_this_batch_yuan"] for x in second.summary["insurers"]] == [0.0] * 3
    assert run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == 3 * n
    _check_ledger(url)
