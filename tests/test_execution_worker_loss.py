"""A Dask worker lost in the middle of a run (issue 19, point 3): its piece runs again
on the workers left and the command gives what it gives without the loss, bit for bit;
a claims batch's block re-run after its worker died inside its ledger transaction or
just after it pays nothing twice and skips nothing; a piece that is lost for good (or a
caller that does not allow a re-run) fails with exit 1 and what to do.

A worker is killed with SIGKILL (``os.kill`` of its process id, one of
``client.run(os.getpid)``) while it waits at a chosen point of a piece: the function it
runs is wrapped, in the workers only, so that its k-th call writes the process id to a
flag file and waits there to be killed (once per test: a piece run again passes)."""

import contextlib
import importlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from puhui.errors import JobFailed
from puhui.execution import Execution, configured, dask_client, map_blocks

pytest.importorskip("distributed")


@pytest.fixture(autouse=True)
def workers_forked_from_a_preloaded_server():
    """The clusters' worker processes forked from a server process that imported the
    libraries once (distributed's ``forkserver`` method, which its own test suite uses),
    not each started as a new interpreter (``spawn``, the default): each is still a
    process of its own that SIGKILL ends and its nanny replaces; the start saves the
    imports of distributed, numpy and pandas in every worker and every replacement."""
    import dask.config

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield


@pytest.fixture
def dask():
    """A new LocalCluster of two worker processes, one thread each, for each test (a
    killed worker's nanny starts a new one, not always within a minute on a busy
    machine: no test waits on it)."""
    ex = Execution(workers=2, scheduler="local")
    with dask_client(ex, 2) as client:
        yield Execution(workers=2, scheduler="local", client=client)


def _pause_at(module: str, name: str, flag: str, call: int) -> None:
    """In a worker: the ``call``-th call of ``module.name`` in this process writes the
    process id to ``flag`` and waits to be killed, unless another worker got there first
    (the piece run again then passes)."""
    mod = importlib.import_module(module)
    real = getattr(mod, name)
    real = getattr(real, "__wrapped__", real)
    calls = [0]

    def paused(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            try:                             # the first worker here only
                os.close(os.open(flag + ".first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return real(*args, **kwargs)
            Path(flag + ".tmp").write_text(str(os.getpid()))
            os.rename(flag + ".tmp", flag)
            while True:                      # killed here
                time.sleep(0.05)
        return real(*args, **kwargs)

    paused.__wrapped__ = real
    setattr(mod, name, paused)


def _unpause(module: str, name: str) -> None:
    mod = importlib.import_module(module)
    setattr(mod, name, getattr(getattr(mod, name), "__wrapped__", getattr(mod, name)))


@contextlib.contextmanager
def worker_killed_at(client, tmp_path, module: str, name: str, call: int = 2):
    """Inside the block, the worker that reaches the ``call``-th call of
    ``module.name`` first is SIGKILLed there (by this process, from a thread); yields
    the list of the process ids killed (one, once the block has run)."""
    flag = str(tmp_path / f"paused-{name}")
    pids = set(client.run(os.getpid).values())
    client.run(_pause_at, module, name, flag, call)
    killed: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                pid = int(Path(flag).read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.02)
                continue
            assert pid in pids, (pid, pids)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield killed
    finally:
        stop.set()
        t.join(5)
        # the workers left (one killed may be between going and coming back)
        client.run(_unpause, module, name, on_error="ignore")


# --- pure pieces ---------------------------------------------------------------------


def _cut(source, i):
    return i, source[i * 5:(i + 1) * 5].copy()


def _work(shared, piece):
    i, values = piece
    return i, values * shared, float(np.sqrt(values).sum())


def test_a_piece_lost_with_its_worker_runs_again_and_gives_the_same_results(dask, tmp_path):
    """(Sent again by the map when its data died with the worker, else re-run by Dask's
    scheduler itself: which one depends on where the piece's data was.)"""
    source = np.arange(60, dtype="float64")
    here = list(map_blocks(_work, 12, 3.0, source=source, cut=_cut,
                           execution=Execution(workers=1)))
    with worker_killed_at(dask.client, tmp_path, __name__, "_work", call=3) as killed:
        t = time.monotonic()
        got = list(map_blocks(_work, 12, 3.0, source=source, cut=_cut, execution=dask))
        seconds = time.monotonic() - t
    assert len(killed) == 1
    assert [g[0] for g in got] == list(range(12))
    for a, b in zip(here, got):
        assert a[0] == b[0] and a[2] == b[2] and np.array_equal(a[1], b[1])
    assert seconds < 15, seconds


def _work_on_number(shared, piece):
    return piece * shared


@pytest.mark.parametrize("cut", [True, False], ids=["data sent", "number only"])
def test_a_caller_that_does_not_allow_a_re_run_is_told_to_run_the_command_again(
        dask, tmp_path, cut):
    """Also when the piece's inputs survive (a number only), which Dask's scheduler
    would run again by itself."""
    fn = _work if cut else _work_on_number
    cutting = {"source": np.arange(60, dtype="float64"), "cut": _cut} if cut else {}
    with worker_killed_at(dask.client, tmp_path, __name__, fn.__name__, call=2) as killed:
        with pytest.raises(JobFailed, match="not run again by itself.*run the same command "
                                            "again"):
            list(map_blocks(fn, 12, 3.0, execution=dask, rerun_lost=False, **cutting))
    assert len(killed) == 1
    # allowed, the same map runs to its end (the marks of the first do not count)
    assert list(map_blocks(_work_on_number, 4, 2, execution=dask, rerun_lost=False)) == \
        [0, 2, 4, 6]


def _kills_its_worker(shared, piece):
    i = piece[0] if isinstance(piece, tuple) else piece
    if i == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return i


@pytest.mark.parametrize("cut", [True, False], ids=["sent again", "Dask re-runs"])
def test_a_piece_that_kills_every_worker_it_runs_on_fails_the_map(cut, monkeypatch):
    """Out of memory on every worker: the map stops after a few tries (its own, or
    Dask's ``allowed-failures`` and then KilledWorker), it does not go on for ever.
    (One re-run, not three, to keep the test short: each death waits for a new worker.)"""
    import dask.config

    import puhui.execution

    monkeypatch.setattr(puhui.execution, "LOST_PIECE_RETRIES", 1)
    cutting = {"source": np.arange(30), "cut": _cut} if cut else {}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            dask_client(Execution(workers=2, scheduler="local"), 2) as client:
        with pytest.raises(JobFailed, match="piece [1-6] of 6 .* lost 2 times.*run the same "
                                            "command again"):
            list(map_blocks(_kills_its_worker, 6, None, **cutting,
                            execution=Execution(workers=2, scheduler="local", client=client)))


def test_validation_loses_a_worker_and_gives_the_same_report(dask, tmp_path):
    from puhui.fund.files import write_fund
    from puhui.fund.validate import validate_dir
    from puhui.synth.city import synth_city

    data = tmp_path / "city"
    write_fund(synth_city(300, 1, seed=5, dirty=True), data)
    # row groups of 300 rows: eight chunks (a chunk is whole row groups)
    setl = data / "settlements.parquet"
    pq.write_table(pq.read_table(setl), setl, row_group_size=300)
    here = validate_dir(data, chunk_rows=300, workers=1)
    with worker_killed_at(dask.client, tmp_path, "puhui.fund.validate",
                          "_check_settlement_chunk", call=2) as killed:
        with configured(dask):
            on_dask = validate_dir(data, chunk_rows=300)
    assert len(killed) == 1
    assert not here.ok and here.problems
    assert on_dask.messages() == here.messages()


def test_pricing_experience_loses_a_worker_and_gives_the_same_tables(dask, tmp_path,
                                                                     small_city_dir):
    import puhui.pricing.experience as ex
    from puhui.fund.files import read_fund
    from puhui.products.model import load_product, product_path

    product = load_product(product_path("huhuibao-2025"))
    d = read_fund(small_city_dir)
    one, one_ev = ex.experience(product, d, events=True)
    with worker_killed_at(dask.client, tmp_path, "puhui.pricing.experience",
                          "_block_experience", call=2) as killed:
        with configured(dask):
            blocks, blocks_ev = ex.experience_in_blocks(product, d, block_persons=97)
    assert len(killed) == 1
    pd.testing.assert_frame_equal(ex._narrow(one), blocks)
    pd.testing.assert_frame_equal(ex._narrow(one_ev), blocks_ev)


# --- the claims batch's blocks (they write to the ledger) ----------------------------


def _batch(city, tmp_path, name, where):
    """``run_batch`` of ``city`` into a new ledger: (EOB, ledger entries, summary)."""
    from puhui.claims.batch import run_batch
    from puhui.claims.eob_file import EobWriter
    from puhui.fund.files import read_parquet
    from puhui.products.model import load_product, product_path
    from tests.test_claims import entries

    product = load_product(product_path("huhuibao-2025"))
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    out = tmp_path / name
    out.mkdir()
    sink = EobWriter(out / "eob.parquet", product)
    with configured(where):
        r = run_batch(product, product.path, city, url, "b1", block_persons=25,
                      eob_sink=sink, workers=1)
    sink.close()
    return read_parquet(out / "eob.parquet"), entries(url), r.summary


@pytest.fixture(scope="module")
def claims_city(tmp_path_factory):
    """A small city of one year (300 people: twelve blocks of 25) and its batch in one
    process: (city, EOB, entries, summary)."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    d = tmp_path_factory.mktemp("claims")
    city = d / "city"
    write_fund(synth_city(300, 1, seed=23, start_year=2025), city)
    return (city, *_batch(city, d, "here", Execution(workers=1)))


@pytest.mark.parametrize("where, call", [
    # inside the block's transaction: its entries are written, not committed
    ("record_decisions", 3),
    # after the commit, before the block's EOB goes back: the block is all in the ledger
    ("batch_entries_between", 3)])
def test_a_claims_block_whose_worker_dies_runs_again_and_pays_once(dask, tmp_path,
                                                                  claims_city, where, call):
    city, eob, paid, summary = claims_city
    assert len(paid[0]) > 0
    with worker_killed_at(dask.client, tmp_path, "puhui.claims.ledger", where,
                          call=call) as killed:
        got_eob, got_paid, got_summary = _batch(city, tmp_path, "dask", dask)
    assert len(killed) == 1
    assert got_paid == paid                   # every entry once, none missing
    pd.testing.assert_frame_equal(got_eob, eob)
    assert got_summary == summary
