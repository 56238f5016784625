"""Reversals answered at once (issue 20, ``POST /v1/reversal`` and ``claims direct`` with
refund_of): a hand computation, a batch on data holding the same settlements and the
reversal (the independent implementation), no double reversal either way round, a
batch-paid original, two reversals of one original at once, bad bodies; on both ledger
backends. The pure rule is tested without a database."""
import json
import threading

import pandas as pd
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.claims.reverse import checked_reversal, due_entries, readjudicate, reverse_payout
from puhui.errors import Conflict, InputError, Unprocessable
from puhui.fund.files import read_raw
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENTS
from puhui.products.model import load_product, product_path
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_money_safety import _copy_fund

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PRODUCT = load_product(product_path("huhuibao-2025"))
# in-list self-pay of three settlements, yuan: the first uses the whole deductible
# (12,000 yuan) and 8,000 above it; the hospital benefit pays 70 % above the deductible
S1, S2, S3 = 20000, 10000, 6000
DAYS = ("2025-03-01", "2025-05-01", "2025-07-01")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """400 people, 2025: the city's data and one insured person (no pre-existing
    condition, no settlement of their own) with their insutype."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    full = tmp_path_factory.mktemp("rev-city")
    write_fund(synth_city(400, 1, seed=22, start_year=2025), full)
    pol = read_raw(full, POLICIES)
    st = read_raw(full, SETTLEMENTS)
    per = read_raw(full, PERSONS)
    kind = dict(zip(per["psn_no"].astype(str), per["insutype"].astype(str)))
    mine = pol[(pol["product_id"] == PRODUCT.id) & ~pol["preexisting"].astype(bool)
               & ~pol["psn_no"].isin(set(st["psn_no"]))
               & pol["psn_no"].map(kind).isin(PRODUCT.insutypes)].sort_values("policy_no")
    psn = str(mine["psn_no"].iloc[0])
    other = str(mine["psn_no"].iloc[1])
    return full, psn, kind[psn], other, kind[other]


def _body(sid, psn, day, inlist, kind):
    """A settlement at the counter (yuan): in-list self-pay ``inlist``."""
    return dict(setl_id=sid, psn_no=psn, setl_time=day, med_type="21", hosp_lv=3,
                insutype=kind, medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def _reversal(body, rid, day):
    """The reversing settlement of ``body`` as the platform sends it."""
    neg = {k: -v for k, v in body.items() if isinstance(v, (int, float)) and k != "hosp_lv"}
    return body | neg | {"setl_id": rid, "refund_of": body["setl_id"], "setl_time": day}


def _three(psn, kind):
    return [_body(f"T{i + 1}", psn, d, x, kind) for i, (d, x) in enumerate(zip(DAYS, (S1, S2, S3)))]


def _data(city, tmp_path, name, bodies):
    """The city's data folder with ``bodies`` (settlements or reversals) added as rows."""
    full = city[0]
    st = read_raw(full, SETTLEMENTS)
    template = st[st["refund_of"].isna()].iloc[[0]]
    rows = []
    for b in bodies:
        row = template.copy().assign(
            **{k: v for k, v in b.items() if k != "setl_time"},
            setl_time=pd.Timestamp(b["setl_time"]), preselfpay_amt=0.0, act_pay_dedc=0.0,
            inscp_scp_amt=float(b["medfee_sumamt"]) - float(b["fulamt_ownpay_amt"]))
        if "refund_of" not in b:
            row["refund_of"] = None
        rows.append(row)
    out = pd.concat([st, *rows], ignore_index=True)
    for c in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "psn_part_amt",
              "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay", "inscp_scp_amt"):
        out[c] = out[c].astype("float64")
    return _copy_fund(full, tmp_path / name, out)


def _loaded(city, url):
    assert puhui("ledger", "load", "--data", city[0], "--ledger", url).returncode == 0
    return url


def _net(url, psn):
    return run_sql(url, "SELECT COALESCE(SUM(payout_fen), 0) FROM payments WHERE psn_no = ?",
                   (psn,))[0][0]


def _acc(url, psn):
    return run_sql(url, "SELECT a.accumulator, a.used_fen FROM accumulators a JOIN policies p"
                        " ON p.policy_no = a.policy_no WHERE p.psn_no = ? AND a.used_fen != 0"
                        " ORDER BY 1", (psn,))


def _by_entry(answer):
    return [(e["kind"], e["applies_to"], e["benefit"], e["payout_amt"])
            for e in answer["entries"]]


# the pure rule, no database -------------------------------------------------------------
def test_the_pure_rule_by_hand():
    """Three settlements of 20,000 / 10,000 / 6,000 yuan in-list self-pay; the first
    reversed: the 12,000 deductible falls on the second (nothing paid) and 2,000 of the
    third (70 % of 4,000 = 2,800)."""
    from puhui.benefits.quantities import LineMatcher

    pol = {"policy_no": "X1", "psn_no": "P1", "start_date": "2025-01-01",
           "end_date": "2025-12-31", "preexisting": 0, "claim_free_years": 0}
    rest = [{"setl_id": s, "psn_no": "P1", "setl_time": pd.Timestamp(d).date(), "med_type": "21",
             "hosp_lv": 3, "insutype": "310", "psn_part_amt": x * 100, "fulamt_ownpay_amt": 0,
             "overlmt_selfpay": 0} for s, d, x in (("T2", DAYS[1], S2), ("T3", DAYS[2], S3))]
    results, state = readjudicate(PRODUCT, rest, {}, (pol, False, True), LineMatcher(PRODUCT))
    assert [r["hospital"]["payout"] for _, r in results] == [0, 280000]
    assert state["deductible:hospital"] == 1200000 and state["limit:hospital"] == 280000
    paid = {("T1", "hospital"): 560000, ("T2", "hospital"): 700000, ("T3", "hospital"): 420000}
    got = due_entries([b.id for b in PRODUCT.benefits], results, paid, "T1", "R1")
    assert got == [("R1", "T1", "hospital", -560000, "reverse"),
                   ("T2", "T2", "hospital", -700000, "adjust"),
                   ("T3", "T3", "hospital", -140000, "adjust")]
    # a settlement not claimed keeps what it was (not) paid
    got = due_entries(["hospital"], results, paid, "T1", "R1", {("T3", "hospital")})
    assert [g[1] for g in got] == ["T1", "T2"]


@pytest.mark.parametrize("change, words", [
    ({"psn_part_amt": 100}, "positive"),
    ({"refund_of": None}, "missing field(s) refund_of"),
    ({"refund_of": "R9"}, "reversal itself"),
    ({"lines": [{"hilist_code": "X", "amount": -1}]}, "lines are not taken"),
    ({"medfee_sumamt": -1}, "medfee_sumamt is not"),
    ({"psn_part_amt": "-1.234"}, "not an amount"),
    ({"psn_part_amt": -1.234}, "more than two decimals"),
    ({"psn_no": "110101199003077777"}, "personal data"),
])
def test_a_bad_reversal_body_is_refused_on_its_own(change, words):
    body = _reversal(_body("T1", "P1", DAYS[0], 100, "310"), "R9", DAYS[0]) | change
    with pytest.raises(InputError) as err:
        checked_reversal(body)
    assert words in str(err.value) and "110101199003077777" not in str(err.value)


def test_a_decimal_text_with_its_sign_is_an_amount():
    body = _reversal(_body("T1", "P1", DAYS[0], 100, "310"), "R9", DAYS[0])
    r = checked_reversal(body | {"psn_part_amt": "-100.00"})
    assert r["psn_part_amt"] == -10000 and r["medfee_sumamt"] == -30000


# against the ledger, both backends ------------------------------------------------------
def test_reversing_the_first_makes_the_later_ones_pay_less(city, tmp_path, new_ledger):
    """Direct payouts of the three settlements, the first reversed at once: the hand
    computation's entries; the person's net and accumulators equal a batch on data
    holding the three settlements and the reversal (a fresh SQLite ledger); that batch
    run on this ledger afterwards moves nothing, nor a batch holding only the reversal."""
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    bodies = _three(psn, kind)
    paid = [direct_payout(PRODUCT, url, b)["total_payout"] for b in bodies]
    assert paid == [5600.0, 7000.0, 4200.0]
    rev = _reversal(bodies[0], "R1", "2025-08-01")
    answer = reverse_payout(PRODUCT, url, rev)
    assert _by_entry(answer) == [("reverse", "T1", "hospital", -5600.0),
                                 ("adjust", "T2", "hospital", -7000.0),
                                 ("adjust", "T3", "hospital", -1400.0)]
    assert answer["total_amt"] == -14000.0 and answer["net_payout_amt"] == 2800.0
    assert answer["entries"][0]["setl_id"] == "R1"
    assert _net(url, psn) == 280000
    assert _acc(url, psn) == [("deductible:hospital", 1200000), ("limit:hospital", 280000)]
    assert [r[4] for r in ledger.decisions_of(ledger.connect(url), "T3", PRODUCT.id)
            if r[0] == "hospital"] == [280000]
    # the independent implementation: a batch on data with the same four rows
    data = _data(city, tmp_path, "with-rev", [*bodies, rev])
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, data, ref, "ref")
    assert _net(ref, psn) == _net(url, psn) and _acc(ref, psn) == _acc(url, psn)
    # that batch on this ledger: nothing moves for the person (no double reversal)
    res = run_batch(PRODUCT, PRODUCT.path, data, url, "b-after")
    assert _net(url, psn) == 280000 and _acc(url, psn) == _acc(ref, psn)
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE batch_id = 'b-after' AND "
                        "psn_no = ?", (psn,))[0][0] == 0
    assert res.summary["reconciles"]
    # data holding only the reversal, or only the original: nothing moves either
    only_rev = _data(city, tmp_path, "only-rev", [bodies[1], bodies[2], rev])
    run_batch(PRODUCT, PRODUCT.path, only_rev, url, "b-only-rev")
    only_orig = _data(city, tmp_path, "only-orig", bodies)
    run_batch(PRODUCT, PRODUCT.path, only_orig, url, "b-only-orig")
    assert _net(url, psn) == 280000
    # the same reversal again: its first entries, already applied, nothing written
    again = reverse_payout(PRODUCT, url, rev)
    assert again["already_applied"] and _by_entry(again) == _by_entry(answer)
    assert _net(url, psn) == 280000
    # the original sent again as a settlement: refused, it is reversed
    with pytest.raises(Conflict, match="reversed"):
        direct_payout(PRODUCT, url, bodies[0])


def test_a_batch_paid_settlement_reversed_at_once(city, tmp_path, new_ledger):
    """The three settlements paid by a batch, the first reversed at once: the same
    entries, equal to a batch on data holding the reversal; a batch that applied the
    reversal first answers 200 already applied (its reversing entries)."""
    full, psn, kind, *_ = city
    bodies = _three(psn, kind)
    rev = _reversal(bodies[0], "R1", "2025-08-01")
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "three", bodies), url, "b1")
    assert _net(url, psn) == 1680000
    answer = reverse_payout(PRODUCT, url, rev)
    assert _by_entry(answer) == [("reverse", "T1", "hospital", -5600.0),
                                 ("adjust", "T2", "hospital", -7000.0),
                                 ("adjust", "T3", "hospital", -1400.0)]
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "four", [*bodies, rev]), ref, "r")
    assert _net(url, psn) == _net(ref, psn) == 280000
    assert _acc(url, psn) == _acc(ref, psn)
    # the batch first, then the reversal at once: already applied, nothing moves (the
    # batch never paid the original: no entry undid it)
    again = reverse_payout(PRODUCT, ref, rev)
    assert again["already_applied"] and again["batch"] == "r" and again["entries"] == []
    assert _net(ref, psn) == 280000
    # paid by one batch, reversed by the next: the answer lists the batch's reversing entry
    url2 = new_ledger("l2")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "three", bodies), url2, "b1")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "four", [*bodies, rev]), url2, "b2")
    again = reverse_payout(PRODUCT, url2, rev)
    assert again["already_applied"] and again["batch"] == "b2"
    assert _by_entry(again) == [("reverse", "T1", "hospital", -5600.0)]
    assert _net(url2, psn) == 280000


def test_two_reversals_of_one_original_at_once_are_decided_once(city, new_ledger):
    """Threads: two reversal ids of one original (one applies, the other is a 409) and
    the same reversal twice (one applies, the other is answered as applied)."""
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    bodies = _three(psn, kind)
    for b in bodies:
        direct_payout(PRODUCT, url, b)
    out: list = []

    def send(body):
        try:
            out.append(reverse_payout(PRODUCT, url, body))
        except Conflict as exc:
            out.append(exc)

    for ids in (("RA", "RB"), ("RC", "RC")):
        orig = bodies[0] if ids[0] == "RA" else bodies[1]
        out.clear()
        ts = [threading.Thread(target=send, args=(_reversal(orig, i, "2025-09-01"),))
              for i in ids]
        [t.start() for t in ts]
        [t.join() for t in ts]
        if ids[0] == "RA":
            assert sorted(type(x).__name__ for x in out) == ["Conflict", "dict"]
        else:
            assert sorted(bool(x.get("already_applied")) for x in out) == [False, True]
    assert run_sql(url, "SELECT COUNT(*) FROM reversals")[0][0] == 2
    # T1 and T2 reversed: T3 alone pays 70 % of (6,000 - 12,000)^+ = 0
    assert _net(url, psn) == 0
    assert run_sql(url, "SELECT COUNT(*) FROM (SELECT applies_to, benefit FROM payments "
                        "WHERE kind = 'reverse' GROUP BY applies_to, benefit HAVING "
                        "COUNT(*) > 1) AS d")[0][0] == 0


def test_reversals_that_cannot_be_applied(city, new_ledger):
    full, psn, kind, other, okind = city
    url = _loaded(city, new_ledger("l"))
    bodies = _three(psn, kind)
    direct_payout(PRODUCT, url, bodies[0])
    direct_payout(PRODUCT, url, _body("U1", other, DAYS[0], 30000, okind))
    before = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    cases = [
        (_reversal(bodies[0], "R1", "2025-08-01") | {"psn_part_amt": -19999.99,
                                                         "medfee_sumamt": -59999.99},
         Unprocessable, "not the original's amount negated"),
        (_reversal(bodies[1], "R1", "2025-08-01"), Unprocessable, "no settlement this ledger"),
        (_reversal(bodies[0], "R1", "2025-08-01") | {"refund_of": "U1"}, Unprocessable,
         "another person's"),
        (_reversal(bodies[0], "R1", "2025-02-01"), Unprocessable, "before the original"),
        (_reversal(bodies[0], "R1", "2025-08-01") | {"hosp_lv": 2}, Unprocessable,
         "hosp_lv not the original's"),
        (_reversal(bodies[0], "U1", "2025-08-01"), Conflict, "a settlement the ledger decided"),
    ]
    for body, kind_of, words in cases:
        with pytest.raises(kind_of, match=words):
            reverse_payout(PRODUCT, url, body)
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == before
    reverse_payout(PRODUCT, url, _reversal(bodies[0], "R1", "2025-08-01"))
    with pytest.raises(Conflict, match="reversed already by another"):
        reverse_payout(PRODUCT, url, _reversal(bodies[0], "R2", "2025-08-01"))
    with pytest.raises(Conflict, match="applied already as the reversal of another"):
        reverse_payout(PRODUCT, url, _reversal(bodies[0], "R1", "2025-08-01")
                       | {"refund_of": "U1", "psn_no": other})


def test_claims_direct_applies_a_reversal(city, tmp_path):
    full, psn, kind, *_ = city
    url = _loaded(city, f"sqlite:///{tmp_path / 'l.db'}")
    bodies = _three(psn, kind)
    for b in bodies:
        direct_payout(PRODUCT, url, b)
    f = tmp_path / "rev.json"
    f.write_text(json.dumps(_reversal(bodies[0], "R1", "2025-08-01")))
    r = puhui("claims", "direct", "--product", PRODUCT.id, "--ledger", url, "--settlement", f)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["net_payout_amt"] == 2800.0
    f.write_text(json.dumps(_reversal(bodies[0], "R2", "2025-08-01")))
    r = puhui("claims", "direct", "--product", PRODUCT.id, "--ledger", url, "--settlement", f)
    assert r.returncode == 2 and "reversed already" in r.stderr and "Traceback" not in r.stderr


# over HTTP -------------------------------------------------------------------------------
@pytest.fixture
def served(city, new_ledger):
    from fastapi.testclient import TestClient

    from puhui.service import create_app

    url = _loaded(city, new_ledger("svc"))
    settle = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                   "platform").stdout.strip()
    return TestClient(create_app(PRODUCT, url)), {"Authorization": f"Bearer {settle}"}, url


def test_the_reversal_endpoint(served, city):
    c, h, url = served
    full, psn, kind, other, okind = city
    bodies = _three(psn, kind)
    for b in bodies:
        assert c.post("/v1/settlement", json=b, headers=h).status_code == 201
    rev = _reversal(bodies[0], "R1", "2025-08-01")
    hk = h | {"Idempotency-Key": "rev-1"}
    first = c.post("/v1/reversal", json=rev, headers=hk)
    assert first.status_code == 201, first.text
    assert first.json()["net_payout_amt"] == 2800.0 and len(first.json()["entries"]) == 3
    again = c.post("/v1/reversal", json=rev, headers=hk)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    plain = c.post("/v1/reversal", json=rev, headers=h)
    assert plain.status_code == 200 and plain.json()["already_applied"]
    assert plain.json()["entries"] == first.json()["entries"]
    other_body = c.post("/v1/reversal", json=rev | {"setl_id": "R2"}, headers=hk)
    assert other_body.status_code == 409
    eob = c.get("/v1/settlements/T1", headers=h).json()
    assert {b["reason"] for b in eob["benefits"]} == {"REVERSED"}
    assert c.post("/v1/settlement", json=bodies[0], headers=h).status_code == 409
    audit = run_sql(url, "SELECT command, detail FROM audit WHERE command LIKE '%reverse%' "
                         "OR command LIKE '%reversal%' ORDER BY id")
    assert [a[0] for a in audit] == ["claims reverse"] + ["api POST /v1/reversal"] * 4
    assert "/v1/reversal" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("change, status, words", [
    ({"psn_part_amt": -1.0, "medfee_sumamt": -40001.0}, 422, "negated"),
    ({"psn_part_amt": -1.0}, 400, "medfee_sumamt is not"),
    ({"refund_of": "NOPE"}, 422, "no settlement this ledger decided"),
    ({"refund_of": "U1"}, 422, "another person's"),
    ({"psn_part_amt": 5}, 400, "positive"),
    ({"setl_time": "2025-13-01"}, 400, "setl_time"),
    ({"refund_of": None}, 400, "missing"),
    ({"amount": 1}, 400, "unknown field"),
    ({"refund_of": 3.5}, 400, "refund_of"),
    ({"psn_part_amt": [1]}, 400, "not an amount"),
    ({"refund_of": "110101199003077777"}, 400, "personal data"),
])
def test_bad_reversals_are_4xx_problems(served, city, change, status, words):
    c, h, url = served
    full, psn, kind, other, okind = city
    b = _body("T1", psn, DAYS[0], S1, kind)
    assert c.post("/v1/settlement", json=b, headers=h).status_code == 201
    assert c.post("/v1/settlement", json=_body("U1", other, DAYS[0], 30000, okind),
                  headers=h).status_code == 201
    before = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    r = c.post("/v1/reversal", json=_reversal(b, "R1", "2025-08-01") | change, headers=h)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and "110101199003077777" not in r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == before
    read = puhui("keys", "create", "--ledger", url, "--scope", "read", "--name",
                 "analyst").stdout.strip()
    assert c.post("/v1/reversal", json=_reversal(b, "R1", "2025-08-01"),
                  headers={"X-API-Key": read}).status_code == 403


def test_a_settlement_not_claimed_keeps_what_it_was_not_paid(city, tmp_path, new_ledger):
    """A claimed batch with a claims file naming T1 and T2 only (T3 is NOT_CLAIMED: nothing
    paid); T1 reversed at once: T2 takes the deductible (-7,000), T3 stays unpaid and
    NOT_CLAIMED, as a batch on data holding the reversal with the same claims gives."""
    full, psn, kind, *_ = city
    bodies = _three(psn, kind)
    rev = _reversal(bodies[0], "R1", "2025-08-01")
    st = read_raw(full, SETTLEMENTS)
    claims = set(st["setl_id"].astype(str)) | {"T1", "T2"}
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "three", bodies), url, "b1",
              claims=claims)
    assert _net(url, psn) == 1260000
    answer = reverse_payout(PRODUCT, url, rev)
    assert _by_entry(answer) == [("reverse", "T1", "hospital", -5600.0),
                                 ("adjust", "T2", "hospital", -7000.0)]
    con = ledger.connect(url)
    assert [r[5] for r in ledger.decisions_of(con, "T3", PRODUCT.id) if r[0] == "hospital"] == \
        ["NOT_CLAIMED"]
    con.close()
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, _data(city, tmp_path, "four", [*bodies, rev]), ref, "r",
              claims=claims | {"R1"})
    assert _net(url, psn) == _net(ref, psn) == 0 and _acc(url, psn) == _acc(ref, psn)


def test_a_policy_year_with_settlements_an_earlier_puhui_kept_no_inputs_of_is_refused(
        city, new_ledger):
    # a ledger of schema 1 decided settlements without keeping their amounts: the year
    # cannot be adjudicated again from the ledger, so a reversal in it is refused (422),
    # and a decision under another person's policy does not count (read by the person)
    full, psn, kind, other, okind = city
    url = _loaded(city, new_ledger("l"))
    bodies = _three(psn, kind)
    direct_payout(PRODUCT, url, bodies[0])
    direct_payout(PRODUCT, url, _body("U1", other, DAYS[0], 30000, okind))
    pol = run_sql(url, "SELECT policy_no FROM decisions WHERE setl_id = ? LIMIT 1",
                  (bodies[0]["setl_id"],))[0][0]
    other_pol = run_sql(url, "SELECT policy_no FROM decisions WHERE setl_id = 'U1' LIMIT 1"
                        )[0][0]
    run_sql(url, "INSERT INTO decisions VALUES ('OLD2', 'hospital', ?, ?, 500000, 0, 7000,"
                 " 0, 'PAID', 'direct', ?)", (other, other_pol, PRODUCT.id))
    before = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    reverse_payout(PRODUCT, url, _reversal(bodies[0], "R0", "2025-08-01"))   # not psn's
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] > before
    direct_payout(PRODUCT, url, bodies[1])
    run_sql(url, "INSERT INTO decisions VALUES ('OLD1', 'hospital', ?, ?, 500000, 0, 7000,"
                 " 0, 'PAID', 'direct', ?)", (psn, pol, PRODUCT.id))
    before = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    with pytest.raises(Unprocessable, match="earlier puhui"):
        reverse_payout(PRODUCT, url, _reversal(bodies[1], "R1", "2025-08-01"))
    assert run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] == before
