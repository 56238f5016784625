"""Session 18 (issue 19): the claims batch at ten million settlements, cheaper.

- The EOB rows of people without a policy (83 % of the settlements at 10M) are held as
  each settlement's ids once (``UniformPart``) and made into Arrow where eob.parquet is
  written: the same table, schema and pandas metadata, report rows and reasons as the
  rows built before; the same file, byte for byte.
- Several blocks of people may be written in one unit of work (``BLOCKS_PER_UNIT``; one
  by default, measured: see its comment): the same ledger and EOB as a transaction a
  block, and a kill inside a unit (after some of its blocks were written in the open
  transaction) loses the whole unit, which the rerun of the same batch id writes: the
  same money as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys

import numpy as np
import pandas as pd
import pytest

from puhui.claims import batch, ledger
from puhui.claims.batch import _Tally, eob_categories, run_batch
from puhui.claims.eob_file import EobWriter, LeanPart, UniformPart, prepare_part
from puhui.fund.files import write_fund
from puhui.products.model import load_product, product_path
from puhui.synth.city import synth_city
from tests.procs import python_c

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory):
    """400 people over 2025 (test_claims.py's kill-test city): about 20 blocks of 20."""
    d = tmp_path_factory.mktemp("tiny_city_18")
    write_fund(synth_city(400, 1, seed=22, start_year=2025), d)
    return d


def _no_policy_rows_before(st, product):
    """The session-17 builder of the rows of people without a policy (a LeanPart with
    a frame of settlements x benefits rows): the reference."""
    k = len(product.benefits)
    n = len(st)
    cats = eob_categories(product)

    def cat(col, value_codes):
        return pd.Categorical.from_codes(value_codes, categories=cats[col])

    each = np.repeat(np.arange(n), k)
    ids = {"setl_id": (st["setl_id"].to_numpy(), each),
           "psn_no": (st["psn_no"].astype(str).to_numpy(), each),
           "policy_no": (np.array([None], dtype=object), np.zeros(n * k, dtype="int64"))}
    frame = batch._columns({
        "benefit": cat("benefit", np.tile(np.arange(k), n)),
        **{c: np.zeros(n * k) for c in ("eligible_amt", "deductible_amt", "ratio",
                                        "payout_amt", "target_amt")},
        "status": cat("status", np.full(n * k, cats["status"].index("denied"))),
        "reason": cat("reason", np.full(n * k, cats["reason"].index("NO_POLICY"))),
        "entry": cat("entry", np.zeros(n * k, dtype="int64"))}, n * k)
    frame.attrs["uniform"] = ("denied", n)
    return LeanPart(frame, ids, list(batch.EOB_COLUMNS))


@pytest.mark.parametrize("n", [1, 2, 7])
def test_uniform_part_prepares_and_tallies_as_the_rows_built_before(n):
    st = pd.DataFrame({"setl_id": np.array([f"S{i}\u4e00" * (1 + i % 3) for i in range(n)],
                                           dtype=object),
                       "psn_no": np.array([f"P{i % 3}" for i in range(n)], dtype=object)})
    cats = eob_categories(PRODUCT)
    new, old = batch._no_policy_rows(st, PRODUCT), _no_policy_rows_before(st, PRODUCT)
    assert isinstance(new, UniformPart) and len(new) == len(old) == n * len(PRODUCT.benefits)
    pd.testing.assert_frame_equal(new.to_frame(), old.to_frame())
    got, want = prepare_part(new, cats), prepare_part(old, cats)
    table = got.table.arrow()
    assert table.equals(want.table)
    # the pandas metadata holds the part's attrs (its n): the file's schema when the
    # part is the first written
    assert table.schema.equals(want.table.schema, check_metadata=True)
    pd.testing.assert_frame_equal(got.report_rows, want.report_rows)
    pd.testing.assert_series_equal(got.reasons, want.reasons)
    # the part pickles small (ids once) and as itself
    import pickle

    back = pickle.loads(pickle.dumps(got))
    assert back.table.arrow().equals(want.table)
    t_new, t_old = _Tally(), _Tally()
    t_new.add(new)
    t_old.add(old.frame)
    assert t_new.status == t_old.status == {"denied": n}
    pd.testing.assert_frame_equal(t_new.by, t_old.by)
    assert t_new.paid == t_old.paid == 0


def test_units_of_blocks(monkeypatch):
    monkeypatch.setattr(batch, "BLOCKS_PER_UNIT", 4)
    assert batch._units(0, 2) == []
    assert batch._units(65, 2) == [(i, min(i + 4, 65)) for i in range(0, 65, 4)]
    assert batch._units(20, 2) == [(i, i + 2) for i in range(0, 20, 2)]
    assert batch._units(10, 1) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    for per in (1, 3, 4):
        monkeypatch.setattr(batch, "BLOCKS_PER_UNIT", per)
        for n in range(0, 40):
            for w in (1, 2):
                u = batch._units(n, w)
                assert [k for a, b in u for k in range(a, b)] == list(range(n))
                assert all(1 <= b - a <= per for a, b in u)


def _ledger_rows(url):
    """Every table a batch writes, sorted, without timestamps and entry numbers."""
    con = sqlite3.connect(ledger.sqlite_path(url))
    out = {}
    for table, cols in (("payments", "batch_id, setl_id, applies_to, benefit, psn_no, "
                                     "policy_no, payout_fen, kind"),
                        ("decisions", "*"), ("accumulators", "*"), ("reversals", "*"),
                        ("settlements", "setl_id, psn_no, setl_date, med_type, hosp_lv, "
                                        "insutype, psn_part_fen, fulamt_ownpay_fen, "
                                        "overlmt_selfpay_fen, source, digest"),
                        ("settlement_lines", "*"), ("policies", "*")):
        out[table] = sorted(con.execute(f"SELECT {cols} FROM {table}").fetchall(),
                            key=repr)
    con.close()
    return out


def test_units_of_several_blocks_write_what_a_transaction_a_block_writes(
        city_1500_2025, tmp_path, monkeypatch):
    """Units of several blocks (and the rows of people without a policy as ids) give
    the eob.parquet bytes, summary, report inputs and ledger of a transaction a block
    with the session-17 rows; so for a second batch on the same ledger; one worker and
    two."""
    outs = {}
    for way in ("session17", "units", "units2"):
        with monkeypatch.context() as m:
            if way == "session17":
                m.setattr(batch, "BLOCKS_PER_UNIT", 1)
                m.setattr(batch, "_no_policy_rows", _no_policy_rows_before)
            else:
                m.setattr(batch, "BLOCKS_PER_UNIT", 3)
            units = []
            real = batch._units
            m.setattr(batch, "_units", lambda n, w: units.append(real(n, w)) or units[-1])
            url = f"sqlite:///{tmp_path / way / 'l.db'}"
            (tmp_path / way).mkdir()
            got = []
            for b in ("b1", "b2"):
                w = EobWriter(tmp_path / way / f"{b}.parquet", PRODUCT)
                res = run_batch(PRODUCT, PRODUCT.path, city_1500_2025, url, b,
                                block_persons=40, eob_sink=w,
                                workers=2 if way == "units2" else 1)
                w.close()
                rows, reasons = w.report_inputs()
                got.append((res.summary, (tmp_path / way / f"{b}.parquet").read_bytes(),
                            rows.reset_index(drop=True), reasons.sort_index()))
            if way != "session17":
                assert any(b - a == 3 for a, b in units[0]), units    # units of several blocks
            outs[way] = (got, _ledger_rows(url))
    want, want_ledger = outs["session17"]
    for way in ("units", "units2"):
        got, got_ledger = outs[way]
        assert got_ledger == want_ledger
        for (s1, b1, r1, n1), (s2, b2, r2, n2) in zip(got, want):
            assert s1 == s2
            assert b1 == b2
            pd.testing.assert_frame_equal(r1, r2)
            pd.testing.assert_series_equal(n1, n2)
    assert want[0][0]["paid_this_batch_yuan"] > 0
    assert want[0][0]["settlements_by_status"]["denied"] > 0


KILL_IN_UNIT = """
import os, signal, sys
from puhui.claims import batch
from puhui.claims.batch import run_batch
from puhui.products.model import load_product, product_path

p = load_product(product_path("huhuibao-2025"))
batch.BLOCKS_PER_UNIT = 3
at = int(sys.argv[3])            # kill as this process's at-th block plan is written
written, unit = [0], [None]
real_write, real_run = batch._write_plan, batch._run_blocks
def write_plan(*a, **k):
    written[0] += 1
    if written[0] == at:
        print("killed", *unit[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(*a, **k)
def run_blocks(con, ctx, pieces, lean=False):
    unit[0] = (str(pieces[0][0][0]), str(pieces[-1][0][-1]), len(pieces))
    return real_run(con, ctx, pieces, lean=lean)
batch._write_plan, batch._run_blocks = write_plan, run_blocks
run_batch(p, p.path, sys.argv[1], sys.argv[2], "crash", block_persons=20,
          workers=int(sys.argv[4]))
"""


@pytest.mark.parametrize("workers,at", [(1, 5), (1, 9), (2, 4)])
def test_a_kill_inside_a_unit_of_blocks_resumes_to_the_same_money(tiny_city, tmp_path,
                                                                   workers, at):
    """SIGKILL while a unit of blocks (three, or two with two workers) is being written (its first block or two
    already inside the open transaction; with two workers, in whichever process first
    writes its at-th block): nothing of that unit is in the ledger, and the rerun of the
    batch id ends with the ledger of an uninterrupted run."""
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    run_batch(PRODUCT, PRODUCT.path, tiny_city, ref, "crash", block_persons=20)
    want = _ledger_rows(ref)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # a process of its own, forked with the claims stack imported (tests/procs.py)
    proc = python_c(KILL_IN_UNIT, tiny_city, url, at, workers, env=env)
    stdout, stderr = proc.communicate(timeout=300)
    killed = [ln.split() for ln in stdout.splitlines() if ln.startswith("killed")]
    assert killed, stderr[-2000:]
    assert proc.returncode != 0
    _, lo, hi, n = killed[0]
    # inside a unit of several blocks, after some of them were written
    assert int(n) >= 2 and (at - 1) % int(n) != 0
    cut = _ledger_rows(url)
    # nothing of the killed unit's people (their blocks written before the kill were
    # in its open transaction); something of the units before it
    assert not [r for r in cut["decisions"] if lo <= r[2] <= hi]
    assert not [r for r in cut["payments"] if lo <= r[4] <= hi]
    assert not [r for r in cut["settlements"] if lo <= r[1] <= hi]
    assert [r for r in want["decisions"] if lo <= r[2] <= hi]
    assert 0 < len(cut["decisions"]) < len(want["decisions"])
    run_batch(PRODUCT, PRODUCT.path, tiny_city, url, "crash", block_persons=20,
              workers=workers)
    assert _ledger_rows(url) == want
