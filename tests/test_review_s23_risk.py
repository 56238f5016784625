"""Review s23 (rev22): treaties in pricing and co-insurance in the ledger, as a careless
or hostile user, an actuary checking the figures and a claims team would try them.

Truth is built apart from the model: a treaty toy worked year by year in a plain loop
with Python integers and a sorted list for the quantile; the ledger read back with
plain SQL and every insurer's net set against a split built by handing over fen one at
a time (:func:`tests.test_coinsurance._brute`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from puhui.errors import InputError, RuleFileError
from puhui.pricing import risk_transfer as rt
from puhui.products.model import load_product
from puhui.reserving.treaty_basis import Treaty, TreatySet, load_treaties
from tests.conftest import puhui
from tests.ledgers import run_sql
from tests.test_coinsurance import G3, _brute, _files, _product_with
from tests.test_reversal import _body, _loaded, _reversal, city  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- treaties: the figures recomputed by hand --------------------------------------------

YEARS = [41_000, 55_500, 70_000, 80_000, 95_000, 120_000, 180_000]   # fen, 7 simulated years
POLICIES, PREMIUM = 10, 100_000                                       # fen in total


def _sim():
    t = np.array(YEARS, dtype=np.int64)
    m = sum(YEARS) / len(YEARS) / 100 / POLICIES
    return rt.SimYear(t, np.full(len(t), m), 1.0, m, PREMIUM, POLICIES)


def _var(values, q):
    """The q-quantile as the smallest simulated year with at least q of the years at or
    below it (a sorted list, no numpy)."""
    s = sorted(values)
    return s[math.ceil(q * len(s)) - 1]


def test_quota_share_then_rated_stop_loss_by_hand():
    """QS 25 % with a 10 % commission, then a stop loss 40 % xs 80 % priced at a rate of 5 %
    of its subject premium (the premium left after the quota share, 75,000 fen), capital
    at 6/7: every figure from a plain loop over the seven years."""
    qs = Treaty("qs", "quota_share", share_bp=2500, commission_bp=1000)
    sl = Treaty("sl", "stop_loss", attachment_bp=8000, width_bp=4000, rate_bp=500)
    fig = rt.risk_transfer(TreatySet("toy", Path("toy.toml"), (qs, sl), 6 / 7), _sim(), {},
                           None, level=0.5)
    left = [y - round(y * 0.25) for y in YEARS]
    subject = PREMIUM - 25_000
    sl_ceded = [min(max(x - 0.8 * subject, 0), 0.4 * subject) for x in left]
    net = [x - c for x, c in zip(left, sl_ceded)]
    q, s = fig["treaties"]
    assert q["ceded_premium_total"] == 250.00 and q["ceding_commission_total"] == 25.00
    assert q["reinsurance_premium_total"] == 225.00
    assert s["reinsurance_premium_total"] == round(0.05 * subject / 100, 2)     # 37.50
    assert s["expected_ceded_total"] == round(sum(sl_ceded) / len(YEARS) / 100, 2)
    kept = PREMIUM - 22_500 - 3_750
    assert fig["net"]["premium_total"] == kept / 100
    mean_net = sum(net) / len(net)
    assert fig["net"]["claims_at_quantile_total"] == _var(net, 6 / 7) / 100
    assert fig["net"]["capital_total"] == round((_var(net, 6 / 7) - mean_net) / 100, 2)
    gross_mean = sum(YEARS) / len(YEARS)
    assert fig["net"]["expected_claims_total"] == round(
        (gross_mean * 0.75 - sum(sl_ceded) / len(YEARS)) / 100, 2)
    # the stop loss alone is on the gross premium: attachment 80,000, width 40,000
    alone = [min(max(y - 80_000, 0), 40_000) for y in YEARS]
    assert s["alone"]["expected_ceded_total"] == round(sum(alone) / len(YEARS) / 100, 2)
    assert s["alone"]["reinsurance_premium_total"] == 50.00


def test_order_matters_a_stop_loss_before_the_quota_share():
    """The same two treaties the other way round: the stop loss now attaches at 80 % of
    the gross premium and the quota share takes 25 % of what it leaves (the order
    written; docs/pricing.md "Risk transfer")."""
    qs = Treaty("qs", "quota_share", share_bp=2500, commission_bp=1000)
    sl = Treaty("sl", "stop_loss", attachment_bp=8000, width_bp=4000, rate_bp=500)
    fig = rt.risk_transfer(TreatySet("toy", Path("toy.toml"), (sl, qs), 0.9), _sim(), {},
                           None, level=0.5)
    sl_ceded = [min(max(y - 80_000, 0), 40_000) for y in YEARS]
    after = [y - c for y, c in zip(YEARS, sl_ceded)]
    net = [x - round(x * 0.25) for x in after]
    s, q = fig["treaties"]
    assert s["reinsurance_premium_total"] == 50.00            # 5 % of the gross premium
    assert q["ceded_premium_total"] == 250.00                 # the stop loss cedes no premium
    assert fig["net"]["claims_at_quantile_total"] == _var(net, 0.9) / 100


def test_a_treaty_id_given_twice_is_refused(tmp_path):
    """Two excesses of loss under one id were both costed with the second's layer (the
    per-person figures are keyed by id); a duplicated id is refused, naming it."""
    f = tmp_path / "dup.toml"
    f.write_text('id = "d"\ncapital_quantile = 0.99\n'
                 '[[treaties]]\nid = "xl"\nkind = "excess_of_loss"\nretention = 100000\n'
                 'limit = 100000\nloading = 0.3\n'
                 '[[treaties]]\nid = "xl"\nkind = "excess_of_loss"\nretention = 300000\n'
                 'limit = 500000\nloading = 0.3\n', encoding="utf-8")
    with pytest.raises(RuleFileError, match="treaty id 'xl' is given 2 times"):
        load_treaties(f)


@pytest.mark.parametrize("body, words", [
    ('capital_quantile = 0.99\n[[treaties]]\nid = "sl"\nkind = "stop_loss"\n'
     'attachment = nan\nwidth = 0.5\nloading = 0.1\n', "not a finite number"),
    ('capital_quantile = 0.99\n[[treaties]]\nid = "sl"\nkind = "stop_loss"\n'
     'attachment = 1\nwidth = -0.0\nloading = 0.1\n', "cedes nothing"),
    ('capital_quantile = 0.99\n[[treaties]]\nid = "xl"\nkind = "excess_of_loss"\n'
     'retention = 0\nlimit = 1e15\nloading = 0.3\n', "largest plausible"),
    ('capital_quantile = 0.99\n[[treaties]]\nid = "ｑｓ"\nkind = "quota_share"\nshare = 0.2\n',
     "an id of lower-case"),
    ('capital_quantile = 0.99999\n[[treaties]]\nid = "qs"\nkind = "quota_share"\n'
     'share = 0.2\n', "finer than a basis point"),
])
def test_hostile_treaty_files_exit_2(tmp_path, body, words):
    f = tmp_path / "t.toml"
    f.write_text('id = "t"\n' + body, encoding="utf-8")
    with pytest.raises(RuleFileError) as e:
        load_treaties(f)
    assert words in str(e.value), str(e.value)


def test_an_excess_of_loss_never_leaves_negative_expected_claims():
    """Review s23: the layer's expected cost came from the person distribution and was
    subtracted from the pricing's expected claims (negative where it is the larger);
    since session 23 the layer's share c / E[X] of the pricing's expected is ceded."""
    s = _sim()
    xl = Treaty("xl", "excess_of_loss", retention_fen=0, limit_fen=10 ** 10, loading_bp=0)
    layer = {"ceded": s.expected * 1.2, "var_before": 4.0, "var_after": 1.0,
             "mean_before": s.expected * 1.2}
    rt.apply_excess_of_loss(s, xl, layer)
    pos = rt.position(s, PREMIUM, 0.9, 0.99)
    assert pos["expected_claims_total"] >= 0, pos


def test_an_excess_of_loss_taking_the_whole_payout_leaves_no_claims():
    """Review s23: a layer taking every fen of every payout left 9.74 of the sample's
    199.55 yuan a policy as net claims (the person distribution's mean, 189.81, taken
    off the pricing's); it now leaves none."""
    s = _sim()
    whole = s.expected * 0.95                     # the person distribution's mean
    xl = Treaty("xl", "excess_of_loss", retention_fen=0, limit_fen=10 ** 10, loading_bp=0)
    rt.apply_excess_of_loss(s, xl, {"ceded": whole, "var_before": 4.0, "var_after": 0.0,
                                    "mean_before": whole})
    assert rt.position(s, PREMIUM, 0.9, 0.99)["expected_claims_total"] == 0


def test_a_product_file_given_as_treaties_exits_2(tmp_path):
    r = puhui("price", "--product", "huhuibao-2025", "--data", str(tmp_path), "--out",
              str(tmp_path / "o"), "--treaties", "actuarial/products/huhuibao-2025.toml")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


# --- co-insurance: hostile product files -------------------------------------------------

def _insurer(i, share, lead=False):
    return f'[[co_insurers]]\nid = "{i}"\nshare = {share}\n' + ("lead = true\n" if lead else "")


def test_insurer_ids_differing_only_in_case_are_refused(tmp_path):
    """"Lead" and "lead" were two insurers: insurers.csv, a spreadsheet's lookup or a
    case-blind database collation would merge them."""
    f = _product_with(tmp_path, _insurer("Lead", 0.5, True) + _insurer("lead", 0.5))
    with pytest.raises(RuleFileError, match="differ only in upper and lower case"):
        load_product(f)


def test_ten_thousand_insurers_are_refused(tmp_path):
    """10,000 insurers of 1 basis point each loaded, and every payment entry would have
    recorded 10,000 shares."""
    block = "".join(_insurer(f"i{i:05d}", 0.0001, i == 0) for i in range(10_000))
    f = _product_with(tmp_path, block)
    with pytest.raises(RuleFileError, match="at most 100"):
        load_product(f)
    ok = _product_with(tmp_path, "".join(_insurer(f"i{i:03d}", 0.01, i == 0)
                                         for i in range(100)))
    assert len(load_product(ok).co_insurers) == 100


# --- co-insurance: the ledger, on both backends --------------------------------------------

def _insurer_nets(url, product_id):
    """{(applies_to, benefit): (net fen, {insurer: fen})} of a product's entries, by SQL."""
    out = {}
    for a, b, net in run_sql(
            url, "SELECT m.applies_to, m.benefit, SUM(m.payout_fen) FROM payments m JOIN"
                 " policies p ON p.policy_no = m.policy_no WHERE p.product_id = ?"
                 " GROUP BY m.applies_to, m.benefit", (product_id,)):
        out[(a, b)] = (int(net), {})
    for a, b, i, fen in run_sql(
            url, "SELECT m.applies_to, m.benefit, s.insurer_id, SUM(s.share_fen) FROM"
                 " payment_shares s JOIN payments m ON m.entry_id = s.entry_id JOIN policies p"
                 " ON p.policy_no = m.policy_no WHERE p.product_id = ?"
                 " GROUP BY m.applies_to, m.benefit, s.insurer_id", (product_id,)):
        out[(a, b)][1][i] = int(fen)
    return out


def test_a_service_started_before_the_group_was_registered_cannot_pay_unsplit(
        city, tmp_path, new_ledger):
    """The service started under the file naming no co-insurers (passing its start's
    check: the ledger had split nothing yet); the counter then pays T1 under the
    co-insured file, registering the group. The service's next payout, T2, was recorded
    unsplit (201): T2's net 700.00 yuan belonged to no insurer. Now refused (400),
    nothing written, and every settlement's insurers net to the split of its net."""
    from fastapi.testclient import TestClient

    from puhui.claims.direct import direct_payout
    from puhui.service import create_app

    tight, thirds, _f = _files(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("svc"))
    key = puhui("keys", "create", "--ledger", url, "--scope", "settle", "--name",
                "platform").stdout.strip()
    client = TestClient(create_app(tight, url))
    direct_payout(thirds, url, _body("T1", psn, "2025-03-01", 3300, kind))
    r = client.post("/v1/settlement", json=_body("T2", psn, "2025-05-01", 1000, kind),
                    headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and "names no co-insurers" in r.text, r.text
    for (_a, _b), (net, got) in _insurer_nets(url, thirds.id).items():
        assert got == _brute(net, G3)
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE applies_to = 'T2'")[0][0] == 0


def test_counter_reversal_and_batch_keep_every_insurer_on_the_split(city, tmp_path,
                                                                    new_ledger):
    """Direct payouts T1 and T2, T1 reversed at once, then the city's batch (stated
    complete, so T2, not in the data, is taken back) run again under its id and under a
    new one, under the co-insured file: for every settlement and benefit
    each insurer's net (SQL) is the split of the net, built fen by fen; the export's
    shares file adds up per insurer to the SQL sums; a reversal under the plain file is
    refused before anything is written."""
    from puhui.claims.direct import direct_payout
    from puhui.claims.reverse import reverse_payout

    tight, thirds, f = _files(tmp_path)
    full, psn, kind, *_ = city
    url = _loaded(city, new_ledger("l"))
    t1, t2 = _body("T1", psn, "2025-03-01", 3300, kind), _body("T2", psn, "2025-05-01", 1000, kind)
    direct_payout(thirds, url, t1)
    direct_payout(thirds, url, t2)
    with pytest.raises(InputError, match="names no co-insurers"):
        reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    reverse_payout(thirds, url, _reversal(t1, "R1", "2025-08-01"))
    for b in ("b1", "b1", "b2"):
        r = puhui("claims", "run", "--product", str(f), "--data", full, "--ledger", url,
                  "--batch", b, "--out", str(tmp_path / b), "--complete")
        assert r.returncode == 0, r.stderr
    nets = _insurer_nets(url, thirds.id)
    assert len(nets) > 3 and nets[("T1", "hospital")] == (0, _brute(0, G3))
    assert nets[("T2", "hospital")] == (0, _brute(0, G3))          # taken back whole
    assert run_sql(url, "SELECT kind, payout_fen FROM payments WHERE applies_to = 'T2' AND"
                        " batch_id = 'b1'") == [("adjust", -49_000)]
    for key, (net, got) in nets.items():
        assert got == _brute(net, G3), key
    import pandas as pd

    # batch b1's outputs against its rows in the ledger (the take-back of T2 among them)
    want = sorted((a, b, i, int(fen)) for a, b, i, fen in run_sql(
        url, "SELECT m.applies_to, m.benefit, s.insurer_id, s.share_fen FROM payment_shares s"
             " JOIN payments m ON m.entry_id = s.entry_id WHERE m.batch_id = 'b1'"))
    eob_sh = pd.read_parquet(tmp_path / "b1" / "eob_shares.parquet")
    got = sorted((str(a), str(b), str(i), round(x * 100)) for a, b, i, x in eob_sh[
        ["applies_to", "benefit", "insurer_id", "share_amt"]].itertuples(index=False))
    assert got == want
    assert ("T2", "hospital", "a-lead", _brute(-49_000, G3)["a-lead"]) in got
    summary = json.loads((tmp_path / "b1" / "summary.json").read_text())
    per = {}
    for _a, _b, i, fen in want:
        per[i] = per.get(i, 0) + fen
    assert {x["id"]: round(x["paid_this_batch_yuan"] * 100) for x in summary["insurers"]} == per
    assert summary["insurers_match_ledger"] is True
    csv = pd.read_csv(tmp_path / "b1" / "insurers.csv")
    assert dict(zip(csv["id"], (csv["paid_this_batch_yuan"] * 100).round().astype(int))) == per
    r = puhui("ledger", "export", "--ledger", url, "--out", str(tmp_path / "pay.parquet"))
    assert r.returncode == 0, r.stderr

    sh = pd.read_parquet(tmp_path / "pay.shares.parquet")
    by = (sh.groupby("insurer_id")["share_amt"].sum() * 100).round().astype(int).to_dict()
    sql = dict(run_sql(url, "SELECT insurer_id, SUM(share_fen) FROM payment_shares"
                            " GROUP BY insurer_id"))
    assert by == {i: int(v) for i, v in sql.items()}


KILL_SCRIPT = """
import sys
from puhui.claims.batch import run_batch
from puhui.products.model import load_product
p = load_product(sys.argv[3])
run_batch(p, p.path, sys.argv[1], sys.argv[2], "k1", block_persons=20,
          progress=lambda k, n: print(f"block {k} {n}", flush=True))
"""


def test_a_batch_killed_mid_way_then_resumed_splits_as_one_run(city, tmp_path, new_ledger):
    """The co-insured batch SIGKILLed just after its middle block, then run to the end:
    the same entries and the same shares per entry (SQL) as an uninterrupted run, every
    entry split exactly once and every settlement's insurers on the fen-by-fen split."""
    import os
    import signal

    from puhui.claims.batch import run_batch
    from tests.procs import python_c

    tight, thirds, f = _files(tmp_path)
    full = city[0]
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(thirds, f, full, ref, "k1", block_persons=20)
    url = new_ledger("k")
    # a process of its own, forked with the claims stack imported (tests/procs.py)
    proc = python_c(KILL_SCRIPT, full, url, f, stdout="stream", stderr=None)
    killed = False
    for line in proc.stdout:
        k, n = map(int, line.split()[1:])
        if k == n // 2:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.stdout.close()
    proc.wait()
    assert killed
    assert 0 < run_sql(url, "SELECT COUNT(*) FROM payments")[0][0] < \
        run_sql(ref, "SELECT COUNT(*) FROM payments")[0][0]
    run_batch(thirds, f, full, url, "k1", block_persons=20)

    def shares(u):
        return sorted((a, b, k, int(fen), i, int(s)) for a, b, k, fen, i, s in run_sql(
            u, "SELECT m.applies_to, m.benefit, m.kind, m.payout_fen, s.insurer_id,"
               " s.share_fen FROM payments m JOIN payment_shares s ON s.entry_id = m.entry_id"))
    assert shares(url) == shares(ref) and len(shares(url)) == \
        3 * run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    for key, (net, got) in _insurer_nets(url, thirds.id).items():
        assert got == _brute(net, G3), key


def test_two_products_on_one_person_one_co_insured(city, tmp_path, new_ledger):
    """One person holds the co-insured huhuibao-2025 and a second product (another id,
    no co-insurers) over the same year; both pay T1 and T2 at the counter, T1 is
    reversed at once under the first (the second refuses it: its batch takes it back). The second product's entries carry no shares; the first's
    insurers net to the split of its nets; each product's answer names only its own."""
    from puhui.claims.direct import direct_payout
    from puhui.claims.reverse import reverse_payout

    tight, thirds, f = _files(tmp_path)
    full, psn, kind, *_ = city
    solo_f = tmp_path / "solo.toml"
    solo_f.write_text('extends = "tight.toml"\nid = "solo-2025"\n', encoding="utf-8")
    solo = load_product(solo_f)
    url = _loaded(city, new_ledger("two"))
    run_sql(url, "INSERT INTO policies VALUES ('SOLO1', ?, 'solo-2025', '2025-01-01',"
                 " '2025-12-31', 5000, 0, 1, 0)", (psn,))
    t1, t2 = _body("T1", psn, "2025-03-01", 3300, kind), _body("T2", psn, "2025-05-01", 1000, kind)
    for p in (thirds, solo):
        a = direct_payout(p, url, t1)
        assert a["total_payout"] == 2100.0
        assert ("insurers" in a) == (p is thirds)
        direct_payout(p, url, t2)
    reverse_payout(thirds, url, _reversal(t1, "R1", "2025-08-01"))
    with pytest.raises(InputError, match="reversed at once under one product"):
        reverse_payout(solo, url, _reversal(t1, "R1", "2025-08-01"))
    assert run_sql(url, "SELECT COUNT(*) FROM payment_shares s JOIN payments m ON m.entry_id"
                        " = s.entry_id WHERE m.policy_no = 'SOLO1'")[0][0] == 0
    nets = _insurer_nets(url, thirds.id)
    assert nets[("T1", "hospital")] == (0, _brute(0, G3))
    assert nets[("T2", "hospital")] == (49_000, _brute(49_000, G3))
    solo_net = run_sql(url, "SELECT applies_to, SUM(payout_fen) FROM payments WHERE policy_no"
                            " = 'SOLO1' GROUP BY applies_to ORDER BY 1")
    assert solo_net == [("T1", 210_000), ("T2", 70_000)]     # its next batch takes T1 back


def test_two_workers_split_as_one(city, tmp_path, new_ledger):
    """The co-insured batch with --workers 2: the same shares per entry as with one, and
    eob_shares.parquet the batch's shares in the ledger."""
    import pandas as pd

    _t, thirds, f = _files(tmp_path)
    urls = {}
    for w in ("1", "2"):
        urls[w] = new_ledger(f"w{w}")
        r = puhui("claims", "run", "--product", str(f), "--data", city[0], "--ledger",
                  urls[w], "--batch", "b", "--out", str(tmp_path / w), "--workers", w)
        assert r.returncode == 0, r.stderr

    def shares(u):
        return sorted((a, b, i, int(s)) for a, b, i, s in run_sql(
            u, "SELECT m.applies_to, m.benefit, s.insurer_id, s.share_fen FROM payments m"
               " JOIN payment_shares s ON s.entry_id = m.entry_id"))
    assert shares(urls["2"]) == shares(urls["1"]) and len(shares(urls["1"])) > 0
    sh = pd.read_parquet(tmp_path / "2" / "eob_shares.parquet")
    assert sorted((str(a), str(b), str(i), round(x * 100)) for a, b, i, x in sh[
        ["applies_to", "benefit", "insurer_id", "share_amt"]].itertuples(index=False)) \
        == shares(urls["2"])


def test_reproduce_refuses_a_treaty_file_changed_since_the_pricing(small_city_dir, tmp_path):
    """A treaty set of the user's own (outside the basis, so the basis hashes do not see
    it) changed after the pricing: reproduce re-ran with the new share and reported the
    figures as differing (exit 1), though the manifest holds the file's hash. Now exit 2
    naming the file, as for a changed product file; the file restored, it reproduces."""
    t = tmp_path / "mine.toml"
    text = ('id = "mine"\ncapital_quantile = 0.99\n[[treaties]]\nid = "qs"\n'
            'kind = "quota_share"\nshare = 0.2\nceding_commission = 0.1\n')
    t.write_text(text, encoding="utf-8")
    out = tmp_path / "o"
    r = puhui("price", "--product", "huhuibao-2025", "--data", small_city_dir, "--out", out,
              "--treaties", t, "--no-backtest")
    assert r.returncode == 0, r.stderr
    t.write_text(text.replace("share = 0.2", "share = 0.3"), encoding="utf-8")
    r = puhui("reproduce", out / "manifest.json")
    assert r.returncode == 2 and "mine.toml" in r.stderr and "changed since the pricing" \
        in r.stderr, r.stdout + r.stderr
    t.write_text(text, encoding="utf-8")
    r = puhui("reproduce", out / "manifest.json")
    assert r.returncode == 0, r.stdout + r.stderr


def two_people_co_ledger(new_ledger, name: str):
    """A PostgreSQL ledger (SQLite: the test is skipped, one writer at a time) holding
    two people's policies of product co-2025; (its URL, the product under the
    co-insured file G3, the same product under a file naming no co-insurers)."""
    from types import SimpleNamespace

    from puhui.claims import ledger

    if new_ledger.backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: no race")
    url = new_ledger(name)
    ledger.connect(url).close()
    for pol, psn in (("PA", "P1"), ("PB", "P2")):
        run_sql(url, "INSERT INTO policies VALUES (?, ?, 'co-2025', '2025-01-01',"
                     " '2025-12-31', 12900, 0, 1, 0)", (pol, psn))
    return (url, SimpleNamespace(id="co-2025", co_insurers=tuple(G3)),
            SimpleNamespace(id="co-2025", co_insurers=()))


def test_a_registration_beside_an_unsplit_payout_on_postgres(new_ledger):
    from puhui.claims import ledger

    url, co, plain = two_people_co_ledger(new_ledger, "race")
    import threading
    import time

    a, b = ledger.connect(url), ledger.connect(url)
    outcome = {}

    def unsplit_payout():
        try:
            with ledger.unit_of_work(b, locks=("psn:P2", "setl:S2")
                                     + ledger.group_locks(b, plain)):
                ledger.ensure_open_batch(b, "d2", "direct", "co-2025")
                ledger.record_entries(b, [("S2", "S2", "h", "P2", "PB", 100, "pay", "d2",
                                           ledger.now())], "2025-06-30", plain)
            outcome["b"] = "written"
        except InputError as e:
            outcome["b"] = str(e)

    # the registration's unit is open when the unsplit payout begins: the payout waits
    # for the group's lock at its BEGIN (session 23), then reads the committed group
    # and is refused; it read no group and recorded unsplit before
    try:
        with ledger.unit_of_work(a, locks=("psn:P1", "setl:S1") + ledger.group_locks(a, co)):
            ledger.ensure_open_batch(a, "d1", "direct", "co-2025")
            ledger.record_entries(a, [("S1", "S1", "h", "P1", "PA", 100, "pay", "d1",
                                       ledger.now())], "2025-06-30", co)
            t = threading.Thread(target=unsplit_payout, daemon=True)
            t.start()
            time.sleep(1.0)
            waited = t.is_alive() and "b" not in outcome
        t.join(30)
    finally:
        a.close()
        b.close()
    assert waited
    assert "the ledger split its payments" in outcome["b"], outcome
    n = run_sql(url, "SELECT COUNT(*) FROM payments")[0][0]
    assert n == 1 and run_sql(url, "SELECT COUNT(*) FROM payment_shares")[0][0] == 3 * n
