"""Money safety under real operations (issue 17): batches and direct payouts at once on
one ledger, partial extracts, direct payouts before the data has them, a corrected
settlement under a used id. Each check compares with an independent, sequential run."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from puhui.claims import ledger
from tests.ledgers import run_sql
from tests.procs import python_c
from puhui.claims.batch import run_batch
from puhui.claims.direct import direct_payout
from puhui.errors import InputError
from puhui.fund.files import read_raw
from puhui.fund.schema import POLICIES, SETTLEMENT_LINES, SETTLEMENTS
from puhui.fund.validate import validate_dir
from puhui.products.model import load_product, product_path

PRODUCT = load_product(product_path("huhuibao-2025"))


def write_raw(df, directory, table):
    from fastparquet import write

    write(str(directory / table.file), df, write_index=False)


def _copy_fund(src, dst, settlements=None):
    """A fund-data folder like ``src`` with other settlements (raw, yuan)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.parquet"):
        shutil.copy(f, dst / f.name)
    if settlements is not None:
        write_raw(settlements, dst, SETTLEMENTS)
        if (src / SETTLEMENT_LINES.file).exists():
            ln = read_raw(src, SETTLEMENT_LINES)
            ln = ln[ln["setl_id"].isin(set(settlements["setl_id"]))]
            write_raw(ln.reset_index(drop=True), dst, SETTLEMENT_LINES)
    return dst


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """400 people, 2025, settlements before December (direct payouts come after)."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    full = tmp_path_factory.mktemp("full")
    write_fund(synth_city(400, 1, seed=22, start_year=2025), full)
    st = read_raw(full, SETTLEMENTS)
    early = st[st["setl_time"] < pd.Timestamp("2025-12-01")]
    # a reversal whose original falls in December would lose its original: drop both
    early = early[~early["refund_of"].notna() | early["refund_of"].isin(set(early["setl_id"]))]
    return _copy_fund(full, tmp_path_factory.mktemp("city"), early.reset_index(drop=True))


def net_by_person(url):
    return {p: int(v) for p, v in run_sql(
        url, "SELECT psn_no, SUM(payout_fen) FROM payments GROUP BY psn_no"
        " HAVING SUM(payout_fen) != 0")}


def accumulators(url):
    return run_sql(url, "SELECT policy_no, accumulator, used_fen FROM accumulators"
                        " WHERE used_fen != 0 ORDER BY 1, 2")


def puhui_proc(*args):
    """``puhui ARGS`` in a process of its own, forked with the claims stack imported
    (tests/procs.py): stdout and stderr read by communicate()."""
    from tests import procs

    return procs.puhui(*args)


@pytest.fixture(scope="module")
def reference(city, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('ref') / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, url, "ref")
    return url


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("trial", range(2))
def test_batches_started_together_pay_once(city, reference, tmp_path, new_ledger, n, trial):
    """n batches with different ids on one ledger at once: every person ends with what
    one uninterrupted run pays, to the fen (small blocks, so the runs interleave). The
    two trials give each batch the other worker count (1 or 2 processes), so with two
    batches both orders of a one-process and a two-process batch run; a third trial
    repeated the first's mix. On PostgreSQL one trial (each n still mixes a one-process
    and a two-process batch; the suite's time)."""
    if new_ledger.backend == "postgres" and trial:
        pytest.skip("one trial on PostgreSQL")
    url = new_ledger("l")
    procs = [puhui_proc("claims", "run", "--product", "huhuibao-2025", "--data", city,
                        "--ledger", url, "--batch", f"b{k}", "--out", tmp_path / f"o{k}",
                        "--workers", 1 + (k + trial) % 2, "--block-persons", 15)
             for k in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [o[1][-500:] for o in outs]
    assert net_by_person(url) == net_by_person(reference)
    assert accumulators(url) == accumulators(reference)
    # every entry of every batch is in its EOB, and its summary says so
    total = 0.0
    for k in range(n):
        s = json.loads((tmp_path / f"o{k}" / "summary.json").read_text())
        assert s["eob_matches_ledger"] and s["reconciles"]
        eob = pd.read_parquet(tmp_path / f"o{k}" / "eob.parquet", engine="fastparquet")
        assert round(eob["payout_amt"].sum(), 2) == s["paid_this_batch_yuan"]
        total += s["paid_this_batch_yuan"]
    assert round(total * 100) == sum(net_by_person(reference).values())


DIRECT_SCRIPT = """
import json, sys
from puhui.claims.direct import direct_payout
from puhui.products.model import load_product, product_path
p = load_product(product_path("huhuibao-2025"))
for s in json.loads(sys.argv[2]):
    direct_payout(p, sys.argv[1], s)
"""


def _direct(sid, psn, day, inlist, insutype="310"):
    """A settlement at the counter: in-list self-pay ``inlist`` yuan (a multiple of 100, so
    70 % and 50 % shares are exact and the order of same-day payouts cannot move a fen)."""
    return dict(setl_id=sid, psn_no=psn, setl_time=day, med_type="21", hosp_lv=3,
                insutype=insutype, medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2, hifob_pay=0,
                hifmi_pay=0, maf_pay=0)


def test_a_batch_and_four_direct_processes_at_once(city, tmp_path, new_ledger):
    """A replay batch and four processes of direct payouts (December, after the data) for
    overlapping people, all at once, after a first batch. Nobody is paid twice and no
    accumulator update is lost: net paid per person and every accumulator equal a
    sequential run (first batch, then the same direct payouts one by one)."""
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    pol = read_raw(city, POLICIES)
    pol = pol[pol["product_id"] == PRODUCT.id].sort_values("psn_no")
    people = list(zip(pol["psn_no"].astype(str), pol["policy_no"].astype(str)))[:12]
    persons = read_raw(city, __import__("puhui.fund.schema", fromlist=["PERSONS"]).PERSONS)
    kind = dict(zip(persons["psn_no"].astype(str), persons["insutype"].astype(str)))
    work = [[_direct(f"D{k}-{i}", people[(3 * k + i) % 12][0], f"2025-12-{10 + i:02d}",
                     4000 + 100 * ((k + i) % 5) * 10, kind[people[(3 * k + i) % 12][0]])
             for i in range(6)] for k in range(4)]
    procs = [puhui_proc("claims", "run", "--product", "huhuibao-2025", "--data", city,
                        "--ledger", url, "--batch", "b2", "--out", tmp_path / "o",
                        "--workers", 1, "--block-persons", 10)]
    procs += [python_c(DIRECT_SCRIPT, url, json.dumps(w), stdout=None) for w in work]
    errs = [p.communicate(timeout=300)[-1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, errs
    # the sequential run: the directs in the order the ledger recorded them
    order = [json.loads(d)["setl_id"] for (d,) in run_sql(
        url, "SELECT detail FROM audit WHERE command = 'claims direct' ORDER BY id")]
    by_id = {s["setl_id"]: s for w in work for s in w}
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, ref, "b1")
    for sid in order:
        direct_payout(PRODUCT, ref, by_id[sid])
    assert len(order) == 24
    assert net_by_person(url) == net_by_person(ref)
    assert accumulators(url) == accumulators(ref)
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["eob_matches_ledger"] and s["paid_this_batch_yuan"] == 0.0


def test_a_one_month_extract_after_the_full_year_takes_nothing_back(city, reference, tmp_path, new_ledger):
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "year")
    before = net_by_person(url)
    st = read_raw(city, SETTLEMENTS)
    jan = st[st["setl_time"] < pd.Timestamp("2025-02-01")]
    jan = jan[~jan["refund_of"].notna() | jan["refund_of"].isin(set(jan["setl_id"]))]
    extract = _copy_fund(city, tmp_path / "jan", jan.reset_index(drop=True))
    assert not validate_dir(extract).problems            # the extract is valid data
    res = run_batch(PRODUCT, PRODUCT.path, extract, url, "jan")
    assert net_by_person(url) == before
    assert res.summary["paid_this_batch_yuan"] == 0.0
    assert res.summary["scope"]["last"] < "2025-02-01"
    assert res.summary["carried_from_ledger"] > 0     # Feb-Nov, kept as paid
    assert (res.eob["payout_amt"] == 0).all()


def test_settlements_missing_from_a_period_the_data_covers(city, tmp_path, new_ledger):
    """Paid settlements the data lacks inside its period: refused (nothing written)
    unless --complete, which takes back exactly what they were paid, in EOB and
    summary."""
    url = new_ledger("l")
    first = run_batch(PRODUCT, PRODUCT.path, city, url, "year")
    paid = first.eob[(first.eob["payout_amt"] > 0) & (first.eob["status"] == "paid")]
    gone = sorted(set(paid["setl_id"]))[:5]
    st = read_raw(city, SETTLEMENTS)
    keep = st[~st["setl_id"].isin(gone) & ~st["refund_of"].isin(gone)].reset_index(drop=True)
    lacking = _copy_fund(city, tmp_path / "lacking", keep)
    before = net_by_person(url)
    with pytest.raises(InputError, match="5 settlements decided before .* not in the data"):
        run_batch(PRODUCT, PRODUCT.path, lacking, url, "again")
    assert net_by_person(url) == before
    assert run_sql(url, "SELECT COUNT(*) FROM batches WHERE batch_id = 'again'")[0][0] == 0
    res = run_batch(PRODUCT, PRODUCT.path, lacking, url, "again", complete=True)
    back = res.eob[res.eob["reason"] == "NOT_IN_DATA"]
    assert sorted(set(back["setl_id"])) == gone
    was = paid[paid["setl_id"].isin(gone)]["payout_amt"].sum()
    assert round(back["payout_amt"].sum(), 2) == -round(was, 2)
    assert res.summary["not_in_data"] == {"settlements": 5,
                                          "taken_back_yuan": -round(was, 2)}
    assert res.summary["eob_matches_ledger"] and res.summary["reconciles"]
    # the ledger now pays exactly what a fresh run on the lacking data pays
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_batch(PRODUCT, PRODUCT.path, lacking, fresh, "one")
    assert net_by_person(url) == net_by_person(fresh)
    again = run_batch(PRODUCT, PRODUCT.path, lacking, url, "again2", complete=True)
    assert again.summary["paid_this_batch_yuan"] == 0.0


def _one_insured(city):
    pol = read_raw(city, POLICIES)
    pol = pol[pol["product_id"] == PRODUCT.id].sort_values("policy_no").iloc[0]
    from puhui.fund.schema import PERSONS
    persons = read_raw(city, PERSONS)
    kind = dict(zip(persons["psn_no"].astype(str), persons["insutype"].astype(str)))
    return str(pol["psn_no"]), kind[str(pol["psn_no"])]


def test_direct_payout_then_batch(city, tmp_path, new_ledger):
    """A direct payout the batch's data does not hold yet stays paid (outside the data's
    period: carried; inside it: the batch refuses); once the data holds it with other
    amounts, the batch books a visible adjustment (DIRECT_ADJUSTED)."""
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    psn, kind = _one_insured(city)
    # 60,000 yuan in-list self-pay: over any deductible, paid at once
    d = direct_payout(PRODUCT, url, _direct("DX1", psn, "2025-12-15", 60000, kind))
    assert d["total_payout"] > 0
    net = net_by_person(url)[psn]
    res = run_batch(PRODUCT, PRODUCT.path, city, url, "b2")      # data ends in November
    assert net_by_person(url)[psn] == net and res.summary["paid_this_batch_yuan"] == 0.0
    assert res.summary["carried_from_ledger"] >= 1
    # data that covers December without it: refused, nothing taken back
    st = read_raw(city, SETTLEMENTS)
    dec = st.iloc[[0]].assign(setl_id="LATE1", setl_time=pd.Timestamp("2025-12-20"))
    covering = _copy_fund(city, tmp_path / "dec", pd.concat([st, dec], ignore_index=True))
    with pytest.raises(InputError, match="not in the data"):
        run_batch(PRODUCT, PRODUCT.path, covering, url, "b3")
    assert net_by_person(url)[psn] == net
    # the data now holds it, corrected (in-list self-pay 50,000 instead of 60,000)
    row = st[st["refund_of"].isna()].iloc[[0]].copy()
    row = row.assign(setl_id="DX1", psn_no=psn, setl_time=pd.Timestamp("2025-12-15"),
                     med_type="21", hosp_lv=3, insutype=kind, medfee_sumamt=150000.0,
                     fulamt_ownpay_amt=0.0, overlmt_selfpay=0.0, preselfpay_amt=0.0,
                     inscp_scp_amt=150000.0, act_pay_dedc=0.0, hifp_pay=100000.0,
                     hifob_pay=0.0, hifmi_pay=0.0, maf_pay=0.0, psn_part_amt=50000.0,
                     acct_pay=0.0, psn_cash_pay=50000.0)
    holding = _copy_fund(city, tmp_path / "hold", pd.concat([st, row], ignore_index=True))
    assert not validate_dir(holding).problems
    res = run_batch(PRODUCT, PRODUCT.path, holding, url, "b4")
    mine = res.eob[(res.eob["setl_id"] == "DX1") & (res.eob["payout_amt"] != 0)]
    assert len(mine) == 1 and mine["reason"].iloc[0] == "DIRECT_ADJUSTED"
    assert round(mine["payout_amt"].iloc[0], 2) < 0         # 10,000 yuan less eligible
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_batch(PRODUCT, PRODUCT.path, holding, fresh, "one")
    assert net_by_person(url)[psn] == net_by_person(fresh)[psn]


def test_a_corrected_settlement_under_a_used_id_is_a_conflict(city, tmp_path, new_ledger):
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    psn, kind = _one_insured(city)
    s = _direct("DC1", psn, "2025-12-02", 30000, kind)
    first = direct_payout(PRODUCT, url, s)
    assert direct_payout(PRODUCT, url, s)["already_decided"]
    before = net_by_person(url)
    with pytest.raises(InputError, match="already decided with other amounts"):
        direct_payout(PRODUCT, url, _direct("DC1", psn, "2025-12-02", 40000, kind))
    with pytest.raises(InputError, match="already decided with other amounts"):
        direct_payout(PRODUCT, url, _direct("DC1", psn, "2025-12-03", 30000, kind))
    assert net_by_person(url) == before and first["total_payout"] >= 0
    # a settlement a batch decided, sent to the counter with other amounts
    st = read_raw(city, SETTLEMENTS)
    row = st[st["refund_of"].isna() & (st["psn_part_amt"] > 20000)].iloc[0]
    raw = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in
           ("setl_id", "psn_no", "med_type", "hosp_lv", "insutype", "medfee_sumamt",
            "fulamt_ownpay_amt", "overlmt_selfpay", "psn_part_amt", "hifp_pay", "hifob_pay",
            "hifmi_pay", "maf_pay")}
    raw["setl_time"] = str(row["setl_time"].date())
    raw["psn_part_amt"] += 1000
    raw["medfee_sumamt"] += 1000
    with pytest.raises(InputError, match="already decided"):
        direct_payout(PRODUCT, url, raw)


def test_direct_payout_needs_a_ledger_with_the_products_policies(tmp_path):
    with pytest.raises(InputError, match="no such ledger"):
        direct_payout(PRODUCT, f"sqlite:///{tmp_path / 'typo.db'}",
                      _direct("S1", "P1", "2025-03-01", 100))
    assert not (tmp_path / "typo.db").exists()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ledger.connect(url).close()
    with pytest.raises(InputError, match="no policy of product huhuibao-2025"):
        direct_payout(PRODUCT, url, _direct("S1", "P1", "2025-03-01", 100))


@pytest.mark.parametrize("change, message", [
    (dict(medfee_sumamt=1.0), "medfee_sumamt is not hifp_pay"),
    (dict(psn_part_amt=-5, medfee_sumamt=-5 + 200), "negative"),
    (dict(fulamt_ownpay_amt=150), "less than fulamt_ownpay_amt"),
    (dict(hifp_pay=float("inf")), "outside 0 to"),
    (dict(hifp_pay=float("nan")), "outside 0 to"),
    (dict(hifp_pay=2e13), "outside 0 to"),
    (dict(hifp_pay="lots"), "not an amount"),
    (dict(hifp_pay=True), "not an amount"),
    (dict(hifp_pay=None), "missing field"),
    (dict(psn_part_amt=100.001), "two decimals"),
    (dict(setl_time="9999-12-31"), "outside 1950-01-01"),
    (dict(setl_time="2025-02-30"), "not a date"),
    (dict(hosp_lv=7), "hosp_lv must be"),
    (dict(psn_no=""), "non-empty"),
    (dict(psn_no=["P1"]), "non-empty"),
    (dict(lines={"a": 1}), "lines must be a list"),
    (dict(lines=[{"hilist_code": "X"}]), "needs hilist_code and amount"),
    (dict(lines=[{"hilist_code": "X", "amount": 1e6}]), "lines add up"),
])
def test_a_direct_settlement_that_breaks_the_contract_is_refused(tmp_path, change, message):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.upsert_policies(con, pd.DataFrame([dict(
            policy_no="N1", psn_no="P1", product_id=PRODUCT.id,
            start_date=pd.Timestamp("2025-01-01"), end_date=pd.Timestamp("2025-12-31"),
            premium=12900, preexisting=False, consent=True)]))
    con.close()
    s = _direct("S1", "P1", "2025-03-01", 100) | change
    with pytest.raises(InputError, match=message):
        direct_payout(PRODUCT, url, s)
    assert net_by_person(url) == {}


@pytest.mark.parametrize("body", [None, [], 3, "x"])
def test_a_direct_settlement_that_is_not_an_object_is_refused(tmp_path, body):
    with pytest.raises(InputError, match="JSON object"):
        direct_payout(PRODUCT, f"sqlite:///{tmp_path / 'l.db'}", body)


def test_a_batch_whose_product_matches_no_policy_is_refused(city, tmp_path):
    other = load_product(product_path("huhuibao-2024"))
    with pytest.raises(InputError, match=r"no policy is for product huhuibao-2024 .*"
                                         r"huhuibao-2025 \(2025-2025\)"):
        run_batch(other, other.path, city, f"sqlite:///{tmp_path / 'l.db'}", "b1")


def test_period_must_hold_every_settlement(city, tmp_path):
    with pytest.raises(InputError, match="fall outside --period"):
        run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{tmp_path / 'l.db'}", "b1",
                  period=("2025-03-01", "2025-03-31"))
    res = run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{tmp_path / 'l.db'}", "b1",
                    period=("2025-01-01", "2025-12-31"))
    assert res.summary["scope"] == {"first": "2025-01-01", "last": "2025-12-31",
                                    "stated": True, "complete": False}
    assert np.isclose(res.eob["payout_amt"].sum(), res.summary["ledger_entries_yuan"])


def test_a_write_between_a_blocks_plan_and_its_write_is_seen(city, reference, tmp_path, new_ledger,
                                                              monkeypatch):
    """Deterministic interleaving: while batch A holds its plan for a block, batch B runs
    whole and a direct payout is made for a person of that block. A's write must see
    both (it plans again under the write lock): nobody is paid twice and the direct
    payout's accumulator use is not lost."""
    import puhui.claims.batch as batch

    url = new_ledger("l")
    real = batch._plan_block
    psn, kind = _one_insured(city)
    calls = {"n": 0, "replanned": 0}

    def plan_then_interleave(con, ctx, lo, hi, *a):
        plan = real(con, ctx, lo, hi, *a)
        calls["n"] += 1
        if ctx.batch_id == "A" and calls["n"] == 1:
            run_batch(PRODUCT, PRODUCT.path, city, url, "B")
            direct_payout(PRODUCT, url, _direct("DZ1", psn, "2025-12-20", 60000, kind))
        elif ctx.batch_id == "A" and calls["n"] > 1 and not calls["replanned"]:
            calls["replanned"] = calls["n"]
        return plan

    monkeypatch.setattr(batch, "_plan_block", plan_then_interleave)
    run_batch(PRODUCT, PRODUCT.path, city, url, "A", block_persons=10_000)
    monkeypatch.setattr(batch, "_plan_block", real)
    assert calls["replanned"]                      # A planned its block again
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, city, ref, "B")
    direct_payout(PRODUCT, ref, _direct("DZ1", psn, "2025-12-20", 60000, kind))
    assert net_by_person(url) == net_by_person(ref)
    assert accumulators(url) == accumulators(ref)


def test_a_version_1_ledger_is_upgraded_with_its_reversals(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    ledger.connect(url).close()
    con = sqlite3.connect(ledger.sqlite_path(url))
    con.executescript("DROP TABLE reversals; UPDATE meta SET value = '1';"
                      "INSERT INTO batches (batch_id, mode, product_id, product_hash, data_hash,"
                      " started_at, finished_at, status) VALUES"
                      " ('b', 'claimed', 'p', '', '', 'now', NULL, 'done');"
                      "INSERT INTO payments (setl_id, applies_to, benefit, psn_no, policy_no,"
                      " payout_fen, kind, batch_id, recorded_at, business_date) VALUES"
                      " ('R1', 'S1', 'hospital', 'P1', 'N1', -500, 'reverse', 'b', 'now', ''),"
                      " ('R1', 'S1', 'drugs', 'P1', 'N1', -100, 'reverse', 'b', 'now', '');")
    con.commit()
    con.close()
    con = ledger.connect(url)
    assert ledger.known_reversals(con) == {"S1": "R1"}
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == ledger.SCHEMA_VERSION
    con.close()
    con = sqlite3.connect(ledger.sqlite_path(url))
    con.execute("UPDATE meta SET value = '9'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer than this puhui"):
        ledger.connect(url)


def _reversal_of(st: pd.DataFrame, sid: str) -> pd.DataFrame:
    """The reversal of settlement ``sid`` (negated amounts, the next day)."""
    from puhui.fund.schema import SETTLEMENTS as T

    row = st[st["setl_id"] == sid].copy()
    money = [c.name for c in T.columns if c.kind == "money" and c.name in row.columns]
    row[money] = -row[money]
    return row.assign(setl_id="R-" + sid, refund_of=sid,
                      setl_time=row["setl_time"] + pd.Timedelta(days=1))


def test_a_reversal_applied_by_another_batch_meanwhile_is_not_undone(city, tmp_path, new_ledger,
                                                                      monkeypatch):
    """Batch A replays data without a reversal; while A holds its plan, batch R applies
    the reversal of a paid settlement. A's write must not pay it again (found by the
    hostile review: the reversal's originals were read once, at A's start)."""
    import puhui.claims.batch as batch

    url = new_ledger("l")
    first = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    paid = first.eob[(first.eob["payout_amt"] > 0) & (first.eob["benefit"] == "hospital")]
    lines = read_raw(city, SETTLEMENT_LINES)
    sid = next(s for s in paid["setl_id"] if s not in set(lines["setl_id"]))
    st = read_raw(city, SETTLEMENTS)
    with_rev = _copy_fund(city, tmp_path / "rev",
                          pd.concat([st, _reversal_of(st, sid)], ignore_index=True))
    assert not validate_dir(with_rev).problems
    real, calls = batch._plan_block, {"n": 0}

    def plan_then_reverse(con, ctx, lo, hi, *a):
        plan = real(con, ctx, lo, hi, *a)
        calls["n"] += 1
        if ctx.batch_id == "A" and calls["n"] == 1:
            run_batch(PRODUCT, PRODUCT.path, with_rev, url, "R")
        return plan

    monkeypatch.setattr(batch, "_plan_block", plan_then_reverse)
    res = run_batch(PRODUCT, PRODUCT.path, city, url, "A", block_persons=10_000)
    monkeypatch.setattr(batch, "_plan_block", real)
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, with_rev, ref, "one")
    assert net_by_person(url) == net_by_person(ref)
    mine = res.eob[res.eob["setl_id"] == sid]
    assert set(mine["status"]) == {"reversed"} and (mine["payout_amt"] == 0).all()
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]
    # a later extract holding the original without its reversal keeps it reversed
    again = run_batch(PRODUCT, PRODUCT.path, city, url, "later")
    assert again.summary["paid_this_batch_yuan"] == 0.0
    assert net_by_person(url) == net_by_person(ref)


TIGHT = """
extends = "{base}"
id = "huhuibao-2025"
[[benefits]]
id = "hospital"
deductible = {{ amount = 300, claim_free = [{{ years = 2, amount = 200 }}, {{ years = 3, amount = 100 }}] }}
limit = 4000
"""


def test_a_held_settlement_keeps_its_payout_and_its_limit_use(city, tmp_path, new_ledger):
    """A paid settlement quarantined by a later batch keeps what it was paid; its limit
    use must stay counted, or the person's other settlements are paid over the annual
    limit (found by the hostile review)."""
    f = tmp_path / "tight.toml"
    f.write_text(TIGHT.format(base=PRODUCT.path), encoding="utf-8")
    tight = load_product(f)
    url = new_ledger("l")
    first = run_batch(tight, f, city, url, "b1")
    hosp = first.eob[(first.eob["benefit"] == "hospital") & (first.eob["payout_amt"] > 0)]
    per = hosp.groupby("psn_no")["payout_amt"].agg(["sum", "count"])
    at_limit = per[(per["sum"].round(2) == 4000) & (per["count"] >= 2)].index
    assert len(at_limit), "the tight product has people at its limit"
    psn = at_limit[0]
    sid = hosp[hosp["psn_no"] == psn].sort_values("setl_id")["setl_id"].iloc[0]
    st = read_raw(city, SETTLEMENTS)
    st.loc[st["setl_id"] == sid, "medfee_sumamt"] += 1.0       # breaks the identity
    broken = _copy_fund(city, tmp_path / "broken", st)
    res = run_batch(tight, f, broken, url, "b2")
    q = res.eob[res.eob["setl_id"] == sid]
    assert set(q["status"]) == {"quarantined"} and set(q["reason"]) == {"Q_IDENTITY"}
    over = run_sql(url, "SELECT policy_no, SUM(payout_fen) FROM payments WHERE benefit ="
                        " 'hospital' GROUP BY policy_no HAVING SUM(payout_fen) > 400000")
    assert over == []
    assert res.summary["paid_this_batch_yuan"] == 0.0


def test_a_database_that_is_not_a_ledger_is_refused_and_left_alone(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(InputError, match="not a puhui ledger"):
        ledger.connect(f"sqlite:///{empty}", must_exist=True)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE foo (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    for must in (True, False):
        with pytest.raises(InputError, match="another database"):
            ledger.connect(f"sqlite:///{other}", must_exist=must)
    assert other.read_bytes() == before


@pytest.mark.parametrize("text", ["2025-06-01:9999-12-31", "0001-01-01:2025-01-01",
                                  "2025-06-01", "", "2025-07-01:2025-06-01"])
def test_a_bad_period_is_refused(text):
    from puhui.claims.batch import parse_period

    with pytest.raises(InputError, match="--period"):
        parse_period(text)


def test_a_resent_direct_settlement_with_any_change_is_a_conflict(city, tmp_path, new_ledger):
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    psn, kind = _one_insured(city)
    s = _direct("DF1", psn, "2025-12-02", 30000, kind) | {
        "lines": [{"hilist_code": "X-1", "list_class": "self", "amount": 100}]}
    direct_payout(PRODUCT, url, s)
    assert direct_payout(PRODUCT, url, s)["already_decided"]
    for change in ({"medfee_sumamt": s["medfee_sumamt"] + 100, "hifp_pay": s["hifp_pay"] + 100},
                   {"lines": [{"hilist_code": "X-1", "list_class": "self", "amount": 200}]},
                   {"lines": []}):
        with pytest.raises(InputError, match="already decided with other amounts"):
            direct_payout(PRODUCT, url, s | change)


def test_a_direct_settlement_reversed_since_is_not_answered_as_paid(city, tmp_path, new_ledger):
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    psn, kind = _one_insured(city)
    s = _direct("DR1", psn, "2025-11-02", 60000, kind)
    before = net_by_person(url).get(psn, 0)
    assert direct_payout(PRODUCT, url, s)["total_payout"] > 0
    st = read_raw(city, SETTLEMENTS)
    row = st[st["refund_of"].isna()].iloc[[0]].assign(
        setl_id="DR1", psn_no=psn, setl_time=pd.Timestamp("2025-11-02"), med_type="21",
        hosp_lv=3, insutype=kind, medfee_sumamt=180000.0, fulamt_ownpay_amt=0.0,
        overlmt_selfpay=0.0, preselfpay_amt=0.0, inscp_scp_amt=180000.0, act_pay_dedc=0.0,
        hifp_pay=120000.0, hifob_pay=0.0, hifmi_pay=0.0, maf_pay=0.0, psn_part_amt=60000.0,
        acct_pay=0.0, psn_cash_pay=60000.0)
    both = pd.concat([st, row], ignore_index=True)
    data = _copy_fund(city, tmp_path / "rev", pd.concat([both, _reversal_of(both, "DR1")],
                                                        ignore_index=True))
    run_batch(PRODUCT, PRODUCT.path, data, url, "b2")
    assert net_by_person(url).get(psn, 0) == before       # the reversal took it back
    with pytest.raises(InputError, match="reversed since it was decided"):
        direct_payout(PRODUCT, url, s)


def test_a_ledger_without_the_inputs_of_what_it_paid_refuses_an_extract(city, tmp_path, new_ledger):
    """A schema-1 ledger kept no settlement inputs: an extract cannot run the deductibles
    and limits of what it lacks, so it is refused until a batch on the whole year has
    stored them (found by the hostile review: the extract took money back and rewrote
    accumulators)."""
    url = new_ledger("l")
    run_batch(PRODUCT, PRODUCT.path, city, url, "year")
    run_sql(url, "DELETE FROM settlement_lines; DELETE FROM settlements;")
    before, acc = net_by_person(url), accumulators(url)
    st = read_raw(city, SETTLEMENTS)
    jun = st[(st["setl_time"] >= pd.Timestamp("2025-06-01"))
             & (st["setl_time"] < pd.Timestamp("2025-07-01"))]
    jun = jun[~jun["refund_of"].notna() | jun["refund_of"].isin(set(jun["setl_id"]))]
    extract = _copy_fund(city, tmp_path / "jun", jun.reset_index(drop=True))
    with pytest.raises(InputError, match="did not keep"):
        run_batch(PRODUCT, PRODUCT.path, extract, url, "jun")
    assert net_by_person(url) == before and accumulators(url) == acc
    assert run_batch(PRODUCT, PRODUCT.path, city, url, "again").summary[
        "paid_this_batch_yuan"] == 0.0
    res = run_batch(PRODUCT, PRODUCT.path, extract, url, "jun")
    assert res.summary["paid_this_batch_yuan"] == 0.0
    assert net_by_person(url) == before and accumulators(url) == acc


def _november_reverses_october(city, tmp_path, new_ledger=None):
    """A ledger where batch b1 paid the whole year, and November's extract with the
    reversal of an October settlement b1 paid (its original not in the extract):
    (url, b1's result, the original's setl_id, its reversal row, the extract)."""
    url = new_ledger("l") if new_ledger else f"sqlite:///{tmp_path / 'l.db'}"
    first = run_batch(PRODUCT, PRODUCT.path, city, url, "b1")
    st = read_raw(city, SETTLEMENTS)
    lines = read_raw(city, SETTLEMENT_LINES)
    oct_ = first.eob.merge(st[["setl_id", "setl_time"]], on="setl_id")
    oct_ = oct_[(oct_["payout_amt"] > 0) & (oct_["setl_time"].dt.month == 10)
                & ~oct_["setl_id"].isin(set(lines["setl_id"]))]
    sid = oct_["setl_id"].iloc[0]
    rev = _reversal_of(st, sid).assign(setl_time=pd.Timestamp("2025-11-15"))
    nov = st[st["setl_time"].dt.month == 11]
    nov = nov[~nov["refund_of"].notna() | nov["refund_of"].isin(set(nov["setl_id"]))]
    extract = _copy_fund(city, tmp_path / "nov", pd.concat([nov, rev], ignore_index=True))
    return url, first, sid, rev, extract


def test_a_monthly_extract_reverses_last_months_settlement(city, tmp_path, new_ledger):
    """November's extract holds the reversal of an October settlement that an earlier
    batch paid: the batch applies it (the ledger kept the original), takes its payout back
    with the EOB row and ends as a fresh run on the whole data with the reversal."""
    url, first, sid, rev, extract = _november_reverses_october(city, tmp_path, new_ledger)
    res = run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    back = res.eob[(res.eob["setl_id"] == "R-" + sid) & (res.eob["payout_amt"] != 0)]
    was = first.eob[first.eob["setl_id"] == sid]["payout_amt"].sum()
    assert round(back["payout_amt"].sum(), 2) == -round(was, 2)
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]
    assert res.summary["reversed_from_ledger"] == 1
    whole = _copy_fund(city, tmp_path / "whole", pd.concat([read_raw(city, SETTLEMENTS), rev],
                                                           ignore_index=True))
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_batch(PRODUCT, PRODUCT.path, whole, fresh, "one")
    assert net_by_person(url) == net_by_person(fresh)
    # run again: nothing more; the whole year with the reversal: nothing more either
    assert run_batch(PRODUCT, PRODUCT.path, extract, url, "nov2").summary[
        "paid_this_batch_yuan"] == 0.0
    assert run_batch(PRODUCT, PRODUCT.path, whole, url, "all").summary[
        "paid_this_batch_yuan"] == 0.0


def test_a_ledger_another_process_is_creating_is_opened_once_its_lock_is_free(tmp_path,
                                                                              monkeypatch):
    """SQLite answers "database is locked" at once (no busy handler) when two connections
    setting up a new file both need its write lock: connect tries again, not exit 2 (two
    batches started together on a new ledger once failed so)."""
    from puhui.claims import ledger

    real, calls = ledger._open, []

    def locked_twice(path, must_exist):
        calls.append(1)
        if len(calls) <= 2:
            raise ledger._Locked()
        return real(path, must_exist)

    monkeypatch.setattr(ledger, "_open", locked_twice)
    con = ledger.connect(f"sqlite:///{tmp_path / 'new.db'}")
    assert len(calls) == 3 and ledger._schema_version(con) == ledger.SCHEMA_VERSION
    monkeypatch.setattr(ledger, "OPEN_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(ledger, "_open", lambda path, must_exist: (_ for _ in ()).throw(
        ledger._Locked()))
    with pytest.raises(InputError, match="locked"):
        ledger.connect(f"sqlite:///{tmp_path / 'other.db'}")


def test_a_monthly_extract_run_again_under_its_batch_id_reports_the_same(city, tmp_path, new_ledger):
    """Review 15: a batch re-run under its own id (after a crash, or by mistake) reports
    what its first run did. November's reversal of an October settlement (the original
    only in the ledger) was applied by the first run; the re-run quarantined it as
    reversing an unknown settlement (Q_UNKNOWN_REVERSAL, payout 0): the ledger was right,
    but the EOB no longer said what the batch had taken back."""
    url, first, sid, rev, extract = _november_reverses_october(city, tmp_path, new_ledger)
    res = run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    paid = net_by_person(url)
    again = run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    assert net_by_person(url) == paid
    cols = ["setl_id", "benefit", "payout_amt", "status", "reason"]
    key = ["setl_id", "benefit", "status", "reason"]
    a = res.eob[cols].sort_values(key).reset_index(drop=True)
    b = again.eob[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert again.summary["paid_this_batch_yuan"] == res.summary["paid_this_batch_yuan"]
    assert again.summary["eob_matches_ledger"]


def test_a_used_reversal_id_reversing_another_settlement_of_the_data_is_held(city, tmp_path, new_ledger):
    """Review 15b (left open, then closed): the ledger applied R-S as the reversal of S; a
    later extract holds R-S again, now as the reversal of another paid settlement O that
    the extract holds too. The id is taken: the ledger records one reversal per id, so
    applying it would take O's payout back without recording O as reversed (a batch that
    meets O again would pay it again). It is quarantined (Q_BAD_REVERSAL): O keeps its
    payout, nothing moves."""
    url, first, sid, rev, extract = _november_reverses_october(city, tmp_path, new_ledger)
    run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    nov = read_raw(extract, SETTLEMENTS)
    lines = read_raw(city, SETTLEMENT_LINES)
    # another paid November settlement (no lines, not reversed, not at the month's end)
    paid = first.eob[first.eob["payout_amt"] > 0].merge(nov[["setl_id", "setl_time"]])
    paid = paid[~paid["setl_id"].isin(set(lines["setl_id"]) | set(nov["refund_of"].dropna()))
                & (paid["setl_time"].dt.day < 29)]
    other = paid["setl_id"].iloc[0]
    again = _reversal_of(nov, other).assign(setl_id="R-" + sid)
    dec = _copy_fund(city, tmp_path / "dec", pd.concat(
        [nov[nov["setl_id"] != "R-" + sid], again], ignore_index=True))
    before = net_by_person(url)
    res = run_batch(PRODUCT, PRODUCT.path, dec, url, "dec")
    assert net_by_person(url) == before
    held = res.eob[res.eob["setl_id"] == "R-" + sid]
    assert set(held["reason"]) == {"Q_BAD_REVERSAL"}, held
    assert res.summary["eob_matches_ledger"]
