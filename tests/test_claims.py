"""Claims batches and direct payouts on the ledger: idempotency, reversals, quarantine,
crash safety (SIGKILL) and concurrent direct payouts."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from fastparquet import write

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.errors import InputError
from puhui.fund.files import read_raw, write_fund
from puhui.fund.schema import POLICIES, SETTLEMENTS
from puhui.products.model import load_product, product_path
from puhui.synth.city import synth_city
from tests.procs import python_c

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    d = tmp_path_factory.mktemp("claims_city")
    write_fund(synth_city(1500, 1, seed=21, start_year=2025), d)
    return d


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_city")
    write_fund(synth_city(400, 1, seed=22, start_year=2025), d)
    return d


def entries(url):
    """The ledger's payments without timestamps and entry numbers, sorted."""
    con = sqlite3.connect(ledger.sqlite_path(url))
    rows = con.execute("SELECT batch_id, setl_id, applies_to, benefit, psn_no, policy_no, "
                       "payout_fen, kind FROM payments ORDER BY batch_id, applies_to, benefit").fetchall()
    acc = con.execute("SELECT * FROM accumulators ORDER BY policy_no, accumulator").fetchall()
    con.close()
    return rows, acc


def net_by_person(url):
    con = sqlite3.connect(ledger.sqlite_path(url))
    out = dict(con.execute("SELECT psn_no, SUM(payout_fen) FROM payments GROUP BY psn_no"))
    con.close()
    return out


def test_batch_pays_once_and_replays_pay_nothing(city, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    a = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    first = entries(url)
    paid = a.summary["paid_this_batch_yuan"]
    assert paid > 0 and a.summary["reconciles"]
    # the same batch id again: nothing new, the same EOB
    again = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    assert entries(url) == first
    pd.testing.assert_frame_equal(a.eob, again.eob)
    # a new batch over the same data: pays nothing
    b = run_batch(PRODUCT, PRODUCT.path, city, url, "b2")
    assert b.summary["paid_this_batch_yuan"] == 0
    assert entries(url)[0] == first[0]
    # then the proactive scan: pays nothing more either
    c = run_batch(PRODUCT, PRODUCT.path, city, url, "p1", mode="proactive")
    assert c.summary["paid_this_batch_yuan"] == 0


def test_every_settlement_in_eob_and_amounts_match_the_calculator(city, tmp_path):
    from puhui.benefits.calculator import adjudicate
    from puhui.fund.files import read_fund

    url = f"sqlite:///{tmp_path / 'l.db'}"
    res = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    d = read_fund(city)
    assert set(res.eob["setl_id"]) == set(d.settlements["setl_id"])
    st = d.settlements
    rev = set(st["refund_of"].dropna())
    eff = st[st["refund_of"].isna() & ~st["setl_id"].isin(rev)]
    pol = d.policies[d.policies["product_id"] == PRODUCT.id]
    expected = adjudicate(PRODUCT, eff, pol, d.lines).total_payout().sum()
    assert round(res.eob["payout_amt"].sum() * 100) == expected
    assert sum(net_by_person(url).values()) == expected


def test_proactive_pays_only_with_consent(city, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    res = run_batch(PRODUCT, PRODUCT.path, city, url, "p1", mode="proactive")
    eob = res.eob
    no = eob[eob["reason"] == "NO_CONSENT"]
    assert len(no) > 0 and (no["payout_amt"] == 0).all()
    # a later claimed batch pays those the scan could not
    later = run_batch(PRODUCT, PRODUCT.path, city, url, "c1")
    paid_later = later.eob[later.eob["payout_amt"] != 0]
    pol = read_raw(city, POLICIES)
    consent = dict(zip(pol["psn_no"].astype(str), pol["consent"]))
    assert not paid_later["psn_no"].astype(str).map(consent).fillna(True).any()


def test_reversal_in_a_later_batch_undoes_and_readjusts(tmp_path):
    # Person P1, policy 2025: stays 8,000 (all deductible) and 9,000 (pays 3,500); then
    # the first stay is reversed: its payout (0) is undone and the second is re-adjudicated
    # against the whole deductible: 9,000 - 9,000 = 0, an adjustment of -3,500.
    d = synth_city(50, 1, seed=2, start_year=2025)
    p = d.persons.iloc[[0]].copy()
    p["psn_no"], p["death_date"] = "P1", pd.NaT
    pol = pd.DataFrame([dict(policy_no="N1", psn_no="P1", product_id=PRODUCT.id,
                             start_date=pd.Timestamp("2025-01-01"),
                             end_date=pd.Timestamp("2025-12-31"), premium=12900,
                             preexisting=False, consent=True)])

    def stay(sid, day, inlist, refund_of=None, sign=1):
        f = int(inlist * 100) * sign
        return dict(setl_id=sid, psn_no="P1", setl_time=pd.Timestamp(day), med_type="21",
                    hosp_lv=3, insutype=str(p["insutype"].iloc[0]), dise_code="J18",
                    medfee_sumamt=f, fulamt_ownpay_amt=0, overlmt_selfpay=0, preselfpay_amt=0,
                    inscp_scp_amt=f, act_pay_dedc=0, hifp_pay=0, hifob_pay=0, hifmi_pay=0,
                    maf_pay=0, psn_part_amt=f, refund_of=refund_of)

    from puhui.fund.files import FundData
    base = [stay("S1", "2025-03-01", 8000), stay("S2", "2025-05-01", 9000)]
    d1, d2 = tmp_path / "v1", tmp_path / "v2"
    p["insutype"] = p["insutype"].astype(str)
    p["gender"] = p["gender"].astype(str)
    write_fund(FundData(p, pol, pd.DataFrame(base), None), d1)
    write_fund(FundData(p, pol, pd.DataFrame(base + [stay("R1", "2025-06-01", 8000, "S1", -1)]),
                        None), d2)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    a = run_batch(PRODUCT, PRODUCT.path, d1, url, "b1")
    assert a.eob[(a.eob["setl_id"] == "S2") & (a.eob["benefit"] == "hospital")]["payout_amt"].tolist() == [3500.0]
    b = run_batch(PRODUCT, PRODUCT.path, d2, url, "b2")
    e = b.eob[b.eob["benefit"] == "hospital"].set_index("setl_id")
    assert e.loc["S2", "payout_amt"] == -3500.0 and e.loc["S2", "entry"] == "adjust"
    assert e.loc["R1", "status"] == "reversed" and e.loc["S1", "status"] == "reversed"
    assert net_by_person(url) == {"P1": 0}


def test_bad_rows_are_quarantined_and_the_batch_goes_on(city, tmp_path):
    import shutil
    d = tmp_path / "c"
    shutil.copytree(city, d)
    st = read_raw(d, SETTLEMENTS)
    i = st.index[st["refund_of"].isna() & (st["med_type"].astype(str) == "21")][0]
    st.loc[i, "medfee_sumamt"] += 0.01            # identity broken
    write(str(d / SETTLEMENTS.file), st, write_index=False)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    res = run_batch(PRODUCT, PRODUCT.path, d, url, "b1")
    q = res.eob[res.eob["setl_id"] == st.loc[i, "setl_id"]]
    assert (q["status"] == "quarantined").all() and (q["reason"] == "Q_IDENTITY").all()
    assert res.summary["reconciles"]


def test_bad_file_stops_before_the_ledger_changes(city, tmp_path):
    import shutil
    url = f"sqlite:///{tmp_path / 'l.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    before = entries(url)
    d = tmp_path / "c"
    shutil.copytree(city, d)
    pol = read_raw(d, POLICIES)
    write(str(d / POLICIES.file), pd.concat([pol, pol.iloc[[0]]]), write_index=False)
    with pytest.raises(InputError, match="nothing was written"):
        run_batch(PRODUCT, PRODUCT.path, d, url, "b2")
    (d / SETTLEMENTS.file).write_bytes((city / SETTLEMENTS.file).read_bytes()[:500])
    r = subprocess.run([sys.executable, "-m", "puhui", "claims", "run", "--product",
                        "huhuibao-2025", "--data", str(d), "--ledger", url, "--batch", "b3",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert entries(url) == before


KILL_SCRIPT = """
import sys
from pathlib import Path
from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.eob_file import EobWriter
from puhui.products.model import load_product, product_path
p = load_product(product_path("huhuibao-2025"))
workers = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else 1
sink = None
if workers > 1:
    Path(sys.argv[5]).mkdir(exist_ok=True)
    sink = EobWriter(Path(sys.argv[5]) / "eob.parquet", p)

# markers on stdout for the test to kill at a phase: 'go' (the data is read next),
# 'start' (inside the transaction that records the batch), 'block k n' (block k of n is
# in the ledger; the next one is under way, in a forked worker too with two workers)
def say(text):
    print(text, flush=True)

real_start = ledger.start_batch
def start_batch(*a, **k):
    say("start")
    return real_start(*a, **k)
ledger.start_batch = start_batch
say("go")
run_batch(p, p.path, sys.argv[1], sys.argv[2], "crash", block_persons=int(sys.argv[3]),
          eob_sink=sink, workers=workers, progress=lambda k, n: say(f"block {k} {n}"))
"""

#: People per block in the kill test: 400 people, about 20 blocks.
KILL_BLOCK = "20"

#: The phases of a batch a kill lands in: (marker the run has printed, then a random
#: delay up to this many seconds). 'go' + a delay: while the process reads, validates
#: and flags the data (no batch in the ledger yet); 'start': in or just after the
#: transaction that records the batch, before any block; 'first' / 'middle' / 'last':
#: just after that block's unit of work (the next block is being planned and written,
#: with two workers by the forked worker too; after the last, the quarantined rows, the
#: take-back and the transaction that finishes the batch).
PHASE_DELAY = {"go": 0.1, "start": 0.0, "first": 0.02, "middle": 0.02, "last": 0.0}

#: Kill points: (workers, phase of the first kill, phase of the kill in the resumed run).
#: Every phase is hit by a first run and a resumed one, with one and with two workers.
KILL_POINTS = [
    (1, "go", "start"),
    (2, "start", "first"),
    (1, "first", "middle"),
    (2, "middle", "last"),
    (1, "last", "go"),
    (2, "go", "middle"),
    (1, "middle", "first"),
    (2, "last", "start"),
]


def _block_marker(line: str, phase: str) -> bool:
    if not line.startswith("block "):
        return False
    k, n = map(int, line.split()[1:])
    return {"first": k == 1, "middle": k == n // 2, "last": k == n}[phase]


def _kill_at(args, phase, rng) -> bool:
    """Run the batch script, SIGKILL it in ``phase``; True when it was still running."""
    # a process of its own, forked with the claims stack imported (tests/procs.py)
    proc = python_c(KILL_SCRIPT, *args, stdout="stream", stderr=None)
    for line in proc.stdout:
        line = line.strip()
        if line == phase or _block_marker(line, phase):
            break
    time.sleep(rng.uniform(0, PHASE_DELAY[phase]))
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.stdout.close()
    proc.wait()
    return running


@pytest.mark.slow
def test_sigkill_at_every_phase_then_rerun_gives_the_same_ledger(tiny_city, tmp_path):
    """A batch SIGKILLed in each of its phases (reading the data, recording the batch,
    after the first, a middle and the last block), then killed again in the resumed run,
    with one worker and with two (only the parent is killed: its forked worker may still
    be finishing a block as the resumed run starts), and run once more to the end: the
    ledger is that of one uninterrupted run."""
    city = tiny_city
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, ref, "crash", block_persons=int(KILL_BLOCK))
    want = entries(ref)
    rng = random.Random(7)
    interrupted = []
    for k, (workers, first, second) in enumerate(KILL_POINTS):
        url = f"sqlite:///{tmp_path / f'k{k}.db'}"
        args = [str(city), url, KILL_BLOCK] + (["2", str(tmp_path / f"o{k}")] if workers == 2 else [])
        for phase in (first, second):
            if _kill_at(args, phase, rng):
                interrupted.append(phase)
        # the run to the end (in this process: it is not killed)
        sink = None
        if workers == 2:
            from puhui.claims.eob_file import EobWriter
            (tmp_path / f"o{k}").mkdir(exist_ok=True)
            sink = EobWriter(tmp_path / f"o{k}" / "eob.parquet", PRODUCT)
        run_batch(PRODUCT, PRODUCT.path, city, url, "crash", block_persons=int(KILL_BLOCK),
                  eob_sink=sink, workers=workers)
        assert entries(url) == want, f"kill point {k}: {workers} worker(s), {first}, {second}"
    # every phase was cut short at least once (a kill just after the last block may
    # come after the run ended; at most two of all did)
    assert set(interrupted) == set(PHASE_DELAY), interrupted
    assert len(interrupted) >= 2 * len(KILL_POINTS) - 2, interrupted


DIRECT_SCRIPT = """
import json, sys
from puhui.claims.direct import direct_payout
from puhui.products.model import load_product, product_path
p = load_product(product_path("huhuibao-2025"))
for s in json.loads(sys.argv[2]):
    direct_payout(p, sys.argv[1], s)
"""


def _policy_ledger(tmp_path, name):
    url = f"sqlite:///{tmp_path / name}"
    con = ledger.connect(url)
    pol = pd.DataFrame([dict(policy_no="N1", psn_no="P1", product_id=PRODUCT.id,
                             start_date=pd.Timestamp("2025-01-01"),
                             end_date=pd.Timestamp("2025-12-31"), premium=12900,
                             preexisting=False, consent=True)])
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pol)
    con.close()
    return url


def _direct(sid, day, inlist):
    return dict(setl_id=sid, psn_no="P1", setl_time=day, med_type="21", hosp_lv=3,
                insutype="310", medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)



def test_direct_payouts_deductible_and_replay(tmp_path):
    url = _policy_ledger(tmp_path, "d.db")
    # 8,000 -> deductible; 9,000 -> (9,000 - 4,000) x 70 % = 3,500
    a = direct_payout(PRODUCT, url, _direct("S1", "2025-03-01", 8000))
    b = direct_payout(PRODUCT, url, _direct("S2", "2025-04-01", 9000))
    assert a["total_payout"] == 0 and b["total_payout"] == 3500.0
    hosp = {x["benefit"]: x for x in b["benefits"]}["hospital"]
    assert hosp["deductible_amt"] == 4000.0 and hosp["reason"] == "PAID"
    again = direct_payout(PRODUCT, url, _direct("S2", "2025-04-01", 9000))
    assert again["already_decided"] and net_by_person(url) == {"P1": 350000}
    with pytest.raises(InputError, match="missing field"):
        direct_payout(PRODUCT, url, {"setl_id": "S9"})


def test_concurrent_direct_payouts_lose_no_update(tmp_path):
    # Two processes, 20 settlements each of 3,000 yuan for the same person at once. In any
    # order the deductible (12,000) is met once and the rest pays 70 %:
    # (40 x 3,000 - 12,000) x 70 % = 75,600 yuan in total.
    url = _policy_ledger(tmp_path, "c.db")
    a = [_direct(f"A{i:02d}", "2025-03-01", 3000) for i in range(20)]
    b = [_direct(f"B{i:02d}", "2025-03-01", 3000) for i in range(20)]
    procs = [python_c(DIRECT_SCRIPT, url, json.dumps(x), stdout=None) for x in (a, b)]
    errs = [p.communicate(timeout=300)[1] for p in procs]      # (a guard against a hang)
    assert [p.returncode for p in procs] == [0, 0], errs
    assert net_by_person(url) == {"P1": 7560000}
    con = sqlite3.connect(ledger.sqlite_path(url))
    acc = dict(con.execute("SELECT accumulator, used_fen FROM accumulators"))
    assert acc["deductible:hospital"] == 1200000 and acc["limit:hospital"] == 7560000


def test_flags_hold_settlements_and_keep_earlier_payments(city, tmp_path):
    import shutil

    url = f"sqlite:///{tmp_path / 'l.db'}"
    first = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    paid_rows = first.eob[(first.eob["payout_amt"] > 0) & (first.eob["benefit"] == "special_drugs")]
    assert len(paid_rows), "the test city should have a paid special drug"
    target = paid_rows["setl_id"].iloc[0]
    d = tmp_path / "c"
    shutil.copytree(city, d)
    st = read_raw(d, SETTLEMENTS)
    # (1) the same settlement again under another id; (2) the paid special drug's
    # settlement now carries a diagnosis its drug is not indicated for
    i = st.index[st["refund_of"].isna() & (st["med_type"].astype(str) == "11")][0]
    dup = st.loc[[i]].copy()
    dup["setl_id"] = "S999999990"
    st["dise_code"] = st["dise_code"].astype(str)
    st.loc[st["setl_id"] == target, "dise_code"] = "J06"
    write(str(d / SETTLEMENTS.file), pd.concat([st, dup], ignore_index=True), write_index=False)
    res = run_batch(PRODUCT, PRODUCT.path, d, url, "b2")
    by = res.eob.drop_duplicates("setl_id").set_index("setl_id")
    assert by.loc["S999999990", "reason"] == "F_DUPLICATE_SETTLEMENT"
    assert by.loc[target, "reason"] == "F_DRUG_NO_DIAGNOSIS"
    assert by.loc[target, "status"] == "quarantined"
    # held, not clawed back: the earlier payment stands
    con = sqlite3.connect(ledger.sqlite_path(url))
    net = con.execute("SELECT SUM(payout_fen) FROM payments WHERE applies_to = ?", (target,)).fetchone()[0]
    con.close()
    assert net == round(paid_rows["payout_amt"].iloc[0] * 100)


def test_split_admission_flag():
    from puhui.claims.flags import flag_settlements

    st = pd.DataFrame({"setl_id": ["A", "B", "C"], "psn_no": ["P1"] * 3,
                       "setl_time": pd.to_datetime(["2025-03-01", "2025-03-03", "2025-05-01"]),
                       "med_type": ["21"] * 3, "fixmedins_code": ["H1"] * 3,
                       "medfee_sumamt": [100, 200, 300], "dise_code": ["J18"] * 3})
    assert flag_settlements(st, None, None).to_dict() == {1: "F_SPLIT_ADMISSION"}


def test_duplicate_settlement_flag_by_hand():
    # B repeats A exactly (held); C differs from A only in the total, D only in the
    # institution, E only in the day, F is P2's: none of them is a duplicate. G repeats
    # D (held). Only rows sharing person and day are compared on every field.
    from puhui.claims.flags import flag_settlements

    st = pd.DataFrame({
        "setl_id": list("ABCDEFG"), "psn_no": ["P1"] * 5 + ["P2", "P1"],
        "setl_time": pd.to_datetime(["2025-03-01"] * 4 + ["2025-03-02", "2025-03-01",
                                                          "2025-03-01"]),
        "med_type": ["11"] * 7, "fixmedins_code": ["H1", "H1", "H1", "H2", "H1", "H1", "H2"],
        "medfee_sumamt": [100, 100, 101, 100, 100, 100, 100], "dise_code": ["J06"] * 7},
        index=range(10, 17))
    assert flag_settlements(st, None, None).to_dict() == {11: "F_DUPLICATE_SETTLEMENT",
                                                          16: "F_DUPLICATE_SETTLEMENT"}


def test_trace_code_and_diagnosis_flags_by_hand():
    """Settlement labels are not positions here (index 10, 11, 12): a trace code billed
    in A and again in C holds C; drug D1 (indications C34) on a J18 settlement holds B."""
    from puhui.claims.flags import flag_settlements

    st = pd.DataFrame({"setl_id": ["A", "B", "C"], "psn_no": ["P1", "P2", "P3"],
                       "setl_time": pd.to_datetime(["2025-03-01", "2025-03-02", "2025-03-09"]),
                       "med_type": ["11"] * 3, "fixmedins_code": ["H1"] * 3,
                       "medfee_sumamt": [100, 200, 300], "dise_code": ["C34.1", "J18", "C34"]},
                      index=[10, 11, 12])
    lines = pd.DataFrame({"setl_id": ["A", "B", "C", "X"], "hilist_code": ["D1", "D1", "D1", "D1"],
                          "trace_code": ["T1", "T2", "T1", "T2"]})
    items = pd.DataFrame({"hilist_code": ["D1"], "dise_codes": ["C34;C33"]})
    assert flag_settlements(st, lines, items).sort_index().to_dict() == {
        11: "F_DRUG_NO_DIAGNOSIS", 12: "F_DUPLICATE_TRACE"}


def test_proactive_then_claimed_pays_each_due_amount_once(city, tmp_path):
    one = f"sqlite:///{tmp_path / 'one.db'}"
    two = f"sqlite:///{tmp_path / 'two.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, one, "c1")
    run_batch(PRODUCT, PRODUCT.path, city, two, "p1", mode="proactive")
    run_batch(PRODUCT, PRODUCT.path, city, two, "c1")
    assert net_by_person(one) == {k: v for k, v in net_by_person(two).items()}


def test_cli_claims_run_direct_and_export(city, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    from conftest import puhui          # in this process: what the commands do and say
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", str(city), "--ledger", url,
              "--batch", "b1", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "o" / "eob.parquet", engine="fastparquet")
    for col in ("setl_id", "psn_no", "policy_no", "benefit", "eligible_amt", "deductible_amt",
                "ratio", "payout_amt", "status", "reason"):
        assert col in eob.columns
    assert set(eob["status"]) <= {"paid", "zero", "denied", "quarantined", "reversed"}
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["reconciles"] and (tmp_path / "o" / "report.html").stat().st_size > 1000
    r = puhui("ledger", "export", "--ledger", url, "--out", str(tmp_path / "pay.csv"))
    assert r.returncode == 0
    pay = pd.read_csv(tmp_path / "pay.csv")
    assert list(pay.columns[:6]) == ["setl_id", "applies_to", "psn_no", "policy_no", "benefit",
                                     "payout_amt"]
    assert round(pay["payout_amt"].sum(), 2) == round(eob["payout_amt"].sum(), 2)
    pol = read_raw(city, POLICIES).iloc[0]
    s = dict(setl_id="D1", psn_no=str(pol["psn_no"]), setl_time="2025-06-01", med_type="21",
             hosp_lv=3, insutype="310", medfee_sumamt=90000, fulamt_ownpay_amt=0,
             overlmt_selfpay=0, psn_part_amt=30000, hifp_pay=60000, hifob_pay=0,
             hifmi_pay=0, maf_pay=0)
    (tmp_path / "s.json").write_text(json.dumps(s))
    r = puhui("claims", "direct", "--product", "huhuibao-2025", "--ledger", url,
              "--settlement", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["setl_id"] == "D1" and {"benefit", "eligible_amt", "deductible_amt", "ratio",
                                       "payout_amt", "reason"} <= set(out["benefits"][0])
    (tmp_path / "bad.json").write_text("{not json")
    r = puhui("claims", "direct", "--product", "huhuibao-2025", "--ledger", url,
              "--settlement", str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "not valid JSON" in r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_eob_file_of_many_row_groups_reads_back_exactly(city, tmp_path, workers):
    # The CLI appends each block's EOB as a row group; fastparquet decodes categoricals
    # correctly only if every row group has the same categories (they are fixed). With
    # two workers the second process's row groups are spliced into the file; the ledger
    # and the summary must be those of one process doing every block in order.
    url = f"sqlite:///{tmp_path / 'l.db'}"
    from conftest import puhui          # in this process: what the command writes

    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city, "--ledger", url,
              "--batch", "b1", "--out", tmp_path / "o", "--block-persons", "100",
              "--workers", workers)
    assert r.returncode == 0, r.stderr
    from fastparquet import ParquetFile
    pf = ParquetFile(str(tmp_path / "o" / "eob.parquet"))
    assert len(pf.row_groups) > 3
    assert not list((tmp_path / "o").glob("*.part*")), "the second worker's files are left"
    got = pf.to_pandas()
    one = f"sqlite:///{tmp_path / 'm.db'}"
    res = run_batch(PRODUCT, PRODUCT.path, city, one, "b1", block_persons=100)
    want = res.eob
    assert entries(url) == entries(one)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(res.summary))
    assert len(got) == len(want)
    # the summary's totals are those of the EOB file, by benefit and status, to the fen
    by = got.astype({"benefit": str, "status": str}).groupby(["benefit", "status"]).agg(
        rows=("setl_id", "size"), paid=("payout_amt", "sum"), eligible=("eligible_amt", "sum"))
    listed = {(r["benefit"], r["status"]): r for r in summary["by_benefit_and_status"]}
    assert set(listed) == set(by.index)
    for key, r in by.iterrows():
        assert listed[key]["rows"] == r["rows"], key
        assert round(listed[key]["paid_yuan"] * 100) == round(r["paid"] * 100), key
        assert round(listed[key]["eligible_yuan"] * 100) == round(r["eligible"] * 100), key
    key = ["setl_id", "benefit"]
    g = got.astype({c: str for c in ("benefit", "status", "reason", "entry")}).sort_values(key)
    w = want.astype({c: str for c in ("benefit", "status", "reason", "entry")}).sort_values(key)
    for col in ("setl_id", "benefit", "status", "reason", "entry", "payout_amt", "target_amt"):
        assert (g[col].to_numpy() == w[col].to_numpy()).all(), col


def test_claims_run_on_a_dirty_city_quarantines_and_goes_on(tmp_path):
    d = tmp_path / "dirty"
    write_fund(synth_city(800, 1, seed=5, start_year=2025, dirty=True), d)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    res = run_batch(PRODUCT, PRODUCT.path, d, url, "b1")
    q = res.eob[res.eob["status"] == "quarantined"].drop_duplicates(["setl_id", "reason"])
    codes = set(q["reason"].astype(str))
    assert {"Q_IDENTITY", "Q_DUPLICATE_ID", "Q_UNKNOWN_PERSON", "Q_NEGATIVE_AMOUNT"} <= codes
    assert res.summary["reconciles"]
    # the report's flags table lists the codes that held something, each with its rule
    import re

    from puhui.claims.report import render

    html = render(res.eob, res.summary)
    table = html[html.index("<h2>Flags and quarantine</h2>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr><td>(\w+)</td><td>(.*?)</td><td class=\"n\">([\d,]+)</td></tr>", table)
    assert {c for c, _, _ in rows} >= {"Q_IDENTITY", "Q_DUPLICATE_ID"}
    assert all(int(n.replace(",", "")) > 0 for _, _, n in rows)
    assert all(c.startswith(("Q_", "F_")) for c, _, _ in rows)
    assert "breaks the rule" in dict((c, m) for c, m, _ in rows)["Q_IDENTITY"]


def test_claims_file_pays_only_claimed_settlements_then_the_rest_when_claimed(city, tmp_path):
    """A claimed batch with a claims file pays the claimed settlements what one batch
    without a file pays them; the others are denied NOT_CLAIMED; a later batch with the
    rest of the claims pays exactly what is left, so both ledgers end the same."""
    full = f"sqlite:///{tmp_path / 'full.db'}"
    split = f"sqlite:///{tmp_path / 'split.db'}"
    base = run_batch(PRODUCT, PRODUCT.path, city, full, "c1")
    due = base.eob[base.eob["payout_amt"] > 0]
    ids = sorted(set(due["setl_id"].astype(str)))
    assert len(ids) >= 4
    first = set(ids[::2])
    a = run_batch(PRODUCT, PRODUCT.path, city, split, "c1", claims=first | {"NO-SUCH-SETTLEMENT"})
    paid_a = a.eob[a.eob["payout_amt"] != 0]
    assert set(paid_a["setl_id"].astype(str)) <= first
    # each claimed settlement is paid what the batch without a claims file paid it
    want = due[due["setl_id"].astype(str).isin(first)].groupby(["setl_id", "benefit"],
                                                               observed=True)["payout_amt"].sum()
    got = paid_a.groupby(["setl_id", "benefit"], observed=True)["payout_amt"].sum()
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    unclaimed = a.eob[a.eob["reason"] == "NOT_CLAIMED"]
    assert set(unclaimed["setl_id"].astype(str)) == set(ids) - first
    assert (unclaimed["status"] == "denied").all() and (unclaimed["payout_amt"] == 0).all()
    assert a.summary["reconciles"]
    assert a.summary["claims_file"] == {"claims": len(first) + 1, "matched": len(first),
                                        "unknown_settlements": 1}
    # the rest claimed later: pays exactly the remainder, nothing twice
    b = run_batch(PRODUCT, PRODUCT.path, city, split, "c2", claims=set(ids))
    assert set(b.eob.loc[b.eob["payout_amt"] != 0, "setl_id"].astype(str)) == set(ids) - first
    assert net_by_person(split) == net_by_person(full)
    # a batch whose claims file omits what was paid before takes nothing back
    c = run_batch(PRODUCT, PRODUCT.path, city, split, "c3", claims=set())
    assert c.summary["paid_this_batch_yuan"] == 0
    assert net_by_person(split) == net_by_person(full)


def test_bad_claims_file_is_exit_2(city, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    from conftest import puhui as command     # in this process: what it says

    def puhui(*a):
        return command("claims", "run", "--product", "huhuibao-2025", "--data", city,
                       "--ledger", url, "--batch", "b1", "--out", tmp_path / "o", *a)
    (tmp_path / "noid.csv").write_text("claim_no,amount\n1,20\n")
    r = puhui("--claims", str(tmp_path / "noid.csv"))
    assert r.returncode == 2 and "setl_id" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "trunc.parquet").write_bytes(b"PAR1\x00\x01")
    r = puhui("--claims", str(tmp_path / "trunc.parquet"))
    assert r.returncode == 2 and "cannot read the claims file" in r.stderr
    r = puhui("--claims", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "not found" in r.stderr
    assert not (tmp_path / "l.db").exists() or ledger_is_empty(url)
    (tmp_path / "ok.csv").write_text("setl_id\nnone-of-these\n")
    r = puhui("--claims", str(tmp_path / "ok.csv"), "--mode", "proactive")
    assert r.returncode == 2 and "--mode claimed" in r.stderr
    # a claims file naming no settlement of the data is somebody else's: refused (it
    # was a silent "paid 0.00" before the hostile review of issue 17)
    r = puhui("--claims", str(tmp_path / "ok.csv"))
    assert r.returncode == 2 and "none of them" in r.stderr, r.stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def ledger_is_empty(url):
    con = sqlite3.connect(ledger.sqlite_path(url))
    try:
        return con.execute("SELECT COUNT(*) FROM payments").fetchone()[0] == 0
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


def test_cli_second_batch_over_paid_data_with_reversals_writes_its_eob(city, tmp_path):
    """Regression: a batch with no entries of its own (everything paid before) over data
    with reversals once wrote the reversal rows' amounts as text and failed."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert read_raw(city, SETTLEMENTS)["refund_of"].notna().any()
    for batch in ("b1", "b2"):
        from conftest import puhui      # in this process: what the command writes

        r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city, "--ledger",
                  url, "--batch", batch, "--out", tmp_path / batch)
        assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "b2" / "eob.parquet", engine="fastparquet")
    assert eob["payout_amt"].dtype.kind == "f" and eob["payout_amt"].sum() == 0


def test_claim_free_years_come_from_the_ledger_and_lower_the_deductible(tmp_path):
    """Three yearly batches (Huhuibao 2023, 2024, 2025) in one ledger over the same
    three-year data: no batch touches another product's payouts; each 2025 policy's
    claim-free years are the renewals in a row before it with nothing paid, counted here
    by hand from the earlier batches' EOBs; the 2025 batch pays what the calculator pays
    with those counts (11,000 deductible after 2 claim-free years), which is more than
    it would pay without them."""
    from puhui.benefits.calculator import adjudicate
    from puhui.fund.files import read_fund

    d = tmp_path / "city3"
    write_fund(synth_city(3000, 3, seed=5, start_year=2023), d)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    net = {}
    for y in (2023, 2024):
        prod = load_product(product_path(f"huhuibao-{y}"))
        r = run_batch(prod, prod.path, d, url, f"b{y}")
        assert r.summary["claim_free_years"]["source"] == "ledger"
        e = r.eob.dropna(subset=["policy_no"])
        for k, v in e.groupby(e["policy_no"].astype(str))["payout_amt"].sum().items():
            net[k] = net.get(k, 0) + v
    data = read_fund(d)
    pol = data.policies
    by_psn_year = {(str(p), int(s.year)): str(n) for p, s, n in
                   zip(pol["psn_no"], pol["start_date"], pol["policy_no"])}

    def by_hand(psn):
        years = 0
        for y in (2024, 2023):
            prev = by_psn_year.get((psn, y))
            if prev is None or net.get(prev, 0) > 0:
                break
            years += 1
        return years

    # regression: the 2024 batch once clawed back the 2023 policies' payouts (their
    # settlements are outside the 2024 policies); each product's payouts stay its own
    con = sqlite3.connect(ledger.sqlite_path(url))
    in_ledger = dict(con.execute("SELECT policy_no, SUM(payout_fen) FROM payments "
                                 "GROUP BY policy_no").fetchall())
    con.close()
    assert {k: round(v * 100) for k, v in net.items() if v} == {k: v for k, v in in_ledger.items() if v}
    assert any(k.startswith("HHB23") for k in in_ledger)
    p25 = pol[pol["product_id"] == "huhuibao-2025"].copy()
    p25["claim_free_years"] = [by_hand(str(p)) for p in p25["psn_no"]]
    assert (p25["claim_free_years"] == 2).sum() > 0
    res = run_batch(PRODUCT, PRODUCT.path, d, url, "b2025")
    con = sqlite3.connect(ledger.sqlite_path(url))
    stored = dict(con.execute("SELECT policy_no, claim_free_years FROM policies WHERE "
                              "product_id = 'huhuibao-2025'").fetchall())
    con.close()
    assert {str(k): int(v) for k, v in zip(p25["policy_no"], p25["claim_free_years"])} == stored
    st = data.settlements
    rev = set(st["refund_of"].dropna())
    eff = st[st["refund_of"].isna() & ~st["setl_id"].isin(rev)]
    eff = eff[eff["setl_time"].dt.year == 2025]
    want = adjudicate(PRODUCT, eff, p25, data.lines).total_payout().sum()
    without = adjudicate(PRODUCT, eff, p25.assign(claim_free_years=0), data.lines).total_payout().sum()
    assert round(res.eob["payout_amt"].sum() * 100) == want
    assert want > without


def test_eob_writer_absorbs_another_files_row_groups(tmp_path):
    # Both files with several row groups, a fixed categorical and a nullable text column
    # (as the EOB writer writes them): the joined file reads back as the two tables one
    # after the other, with pyarrow and with fastparquet.
    from fastparquet import ParquetFile

    from puhui.fund.files import ParquetAppender, read_parquet

    cats = ["paid", "zero", "denied"]

    def table(lo, hi):
        return pd.DataFrame({"setl_id": [f"S{i}" for i in range(lo, hi)],
                             "policy_no": [None if i % 3 else f"N{i}" for i in range(lo, hi)],
                             "status": pd.Categorical.from_codes(np.arange(lo, hi) % 3, cats),
                             "payout_amt": np.arange(lo, hi) / 100})

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    wa = ParquetAppender(a)
    for path, parts in ((a, [(0, 5), (5, 9)]), (b, [(9, 12), (12, 20), (20, 21)])):
        w = wa if path == a else ParquetAppender(b)
        for lo, hi in parts:
            w.write(table(lo, hi))
    ParquetAppender.close(w)
    wa.absorb(b)
    wa.close()
    pf = ParquetFile(str(a))
    assert len(pf.row_groups) == 5
    want = table(0, 21)
    for got in (pf.to_pandas(), read_parquet(a)):
        assert got["setl_id"].tolist() == want["setl_id"].tolist()
        assert got["policy_no"].tolist() == want["policy_no"].tolist()
        assert got["status"].astype(str).tolist() == want["status"].astype(str).tolist()
        assert np.allclose(got["payout_amt"].to_numpy(), want["payout_amt"].to_numpy())


def test_a_failed_second_worker_fails_the_batch_and_a_rerun_finishes_it(tiny_city, tmp_path,
                                                                        monkeypatch):
    """The forked worker dies on its first block: the batch says so (JobFailed, exit 1
    from the CLI), keeps every block the parent finished, and a re-run with the same id
    ends with the ledger of an uninterrupted one-process run."""
    import os

    import puhui.claims.batch as batch
    from puhui.claims.eob_file import EobWriter
    from puhui.errors import JobFailed

    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, tiny_city, ref, "b1", block_persons=10)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    parent, real = os.getpid(), batch._run_blocks

    def dies_in_the_worker(*a, **k):
        if os.getpid() != parent:
            raise RuntimeError("worker lost")
        return real(*a, **k)

    monkeypatch.setattr(batch, "_run_blocks", dies_in_the_worker)
    (tmp_path / "o").mkdir()
    with pytest.raises(JobFailed, match="run the batch again"):
        run_batch(PRODUCT, PRODUCT.path, tiny_city, url, "b1", block_persons=10,
                  eob_sink=EobWriter(tmp_path / "o" / "eob.parquet", PRODUCT), workers=2)
    assert not list((tmp_path / "o").glob("*.part*"))
    con = sqlite3.connect(ledger.sqlite_path(url))
    status = con.execute("SELECT status FROM batches WHERE batch_id = 'b1'").fetchone()[0]
    con.close()
    assert status == "running"                   # not marked finished
    monkeypatch.setattr(batch, "_run_blocks", real)
    run_batch(PRODUCT, PRODUCT.path, tiny_city, url, "b1", block_persons=10,
              eob_sink=EobWriter(tmp_path / "o" / "eob.parquet", PRODUCT), workers=2)
    assert entries(url) == entries(ref)


def test_two_workers_give_the_eob_of_one_row_for_row(tiny_city, tmp_path):
    """The blocks run in forked workers (puhui.execution) and their EOB parts are
    written by the batch's process in block order: the file is the one a single process
    writes, row for row, and so is the ledger."""
    from puhui.claims.eob_file import EobWriter
    from puhui.fund.files import read_parquet

    got = {}
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'l{workers}.db'}"
        out = tmp_path / f"o{workers}"
        out.mkdir()
        sink = EobWriter(out / "eob.parquet", PRODUCT)
        run_batch(PRODUCT, PRODUCT.path, tiny_city, url, "b1", block_persons=10,
                  eob_sink=sink, workers=workers)
        sink.close()
        got[workers] = (read_parquet(out / "eob.parquet"), entries(url))
    pd.testing.assert_frame_equal(got[1][0], got[2][0])
    assert got[1][1] == got[2][1]
    assert len(got[1][0]) > 0 and got[1][0]["setl_id"].nunique() > 20
