"""The execution seam (puhui.execution): one map over blocks, run in this process, in
forked processes or on a Dask cluster, gives the same results in the same order, bit
for bit; native thread pools sized to the cores each worker has; ``--dask`` on the
command line."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

import puhui.pricing.experience as ex
from puhui.cli import run
from puhui.errors import InputError
from puhui.execution import (Execution, available_cores, configured, dask_client,
                             map_blocks, native_threads)
from puhui.fund.files import read_fund
from puhui.fund.validate import validate_dir
from puhui.pricing.fund_data import load_for_pricing
from puhui.pricing.premium import load_assumptions, price
from puhui.products.model import load_product, product_path

pytest.importorskip("distributed")

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture(scope="module")
def dask_local():
    """One LocalCluster of two worker processes for the module's tests."""
    ex_ = Execution(workers=2, scheduler="local")
    with dask_client(ex_, 2) as client:
        yield Execution(workers=2, scheduler="local", client=client)


def _slow_square(shared, piece):
    """Later pieces finish first (so order is the map's, not the finishing order)."""
    i, values = piece
    time.sleep(0.02 * (5 - i % 5))
    return shared["k"] * values, os.getpid()


def _cut(source, i):
    return i, source[i * 7:(i + 1) * 7].copy()


def _threads_seen(shared, piece):
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401 - its BLAS is what the pools list

    return {d["user_api"]: d["num_threads"] for d in threadpool_info()}


@pytest.mark.parametrize("backend", ["here", "fork", "dask"])
def test_every_backend_gives_the_pieces_in_order(backend, dask_local):
    source = np.arange(70, dtype="int64")
    execution = {"here": Execution(workers=1), "fork": Execution(workers=2),
                 "dask": dask_local}[backend]
    out = list(map_blocks(_slow_square, 10, {"k": 3}, source=source, cut=_cut,
                          execution=execution))
    assert [o[0].tolist() for o in out] == [(3 * source[i * 7:(i + 1) * 7]).tolist()
                                            for i in range(10)]
    pids = {o[1] for o in out}
    if backend == "here":
        assert pids == {os.getpid()}
    elif backend == "fork":                 # pieces here while waiting, the others forked
        assert len(pids) == 2 and os.getpid() in pids
    else:                                   # the work really ran elsewhere
        assert os.getpid() not in pids and len(pids) >= 1


def test_a_forked_worker_sizes_its_thread_pools_to_its_share_of_the_cores():
    seen = list(map_blocks(_threads_seen, 2, None, execution=Execution(workers=2)))
    want = native_threads(2)
    for pools in seen:
        assert pools and all(v == want for v in pools.values()), pools
    assert native_threads(1) == available_cores()


def test_the_configured_execution_is_used_and_restored():
    from puhui.execution import current

    before = current()
    with configured(Execution(workers=1)):
        assert current().n_workers == 1
    assert current() == before


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="whole number"):
        Execution(workers=0)
    with pytest.raises(InputError, match="scheduler address"):
        Execution(scheduler=" ")
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        with dask_client(Execution(scheduler="nonsense://x"), 1):
            pass


def test_experience_blocks_on_dask_equal_one_block(small_city_dir, dask_local):
    d = read_fund(small_city_dir)
    one, one_ev = ex.experience(PRODUCT, d, events=True)
    with configured(dask_local):
        blocks, blocks_ev = ex.experience_in_blocks(PRODUCT, d, block_persons=97)
    pd.testing.assert_frame_equal(ex._narrow(one), blocks)
    pd.testing.assert_frame_equal(ex._narrow(one_ev), blocks_ev)


def test_validation_by_chunks_on_dask_gives_the_same_report(tmp_path, dask_local):
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    write_fund(synth_city(300, 1, seed=5, dirty=True), tmp_path)
    here = validate_dir(tmp_path, chunk_rows=900, workers=1)
    forked = validate_dir(tmp_path, chunk_rows=900, workers=2)
    with configured(dask_local):
        on_dask = validate_dir(tmp_path, chunk_rows=900)
    assert not here.ok and here.problems
    for other in (forked, on_dask):
        assert other.messages() == here.messages()


def test_validation_on_a_dask_worker_with_two_threads_gives_the_same_report(tmp_path,
                                                                           monkeypatch):
    """Review 16: `dask worker` gives a worker one thread per core by default, and two
    chunks checked at once in one worker process shared validation's money block (wrong
    counts on every run). A worker's pieces now run one at a time."""
    from distributed import Client, LocalCluster

    import puhui.fund.files as files
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    monkeypatch.setattr(files, "ROW_GROUP", 400)      # many chunks of the same size
    write_fund(synth_city(400, 1, seed=5, dirty=True), tmp_path)
    here = validate_dir(tmp_path, chunk_rows=400, workers=1)
    assert not here.ok and here.problems
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        two_threads = Execution(workers=1, scheduler=cluster.scheduler_address, client=client)
        for _ in range(3):
            with configured(two_threads):
                assert validate_dir(tmp_path, chunk_rows=400).messages() == here.messages()


def test_pricing_on_dask_gives_the_same_figures(small_city_dir, small_city_figures, dask_local,
                                                monkeypatch):
    assumptions, _ = load_assumptions(None)
    a = small_city_figures      # priced here (conftest; the same figures for any chunking)
    monkeypatch.setattr(ex, "BLOCK_PERSONS", 150)        # four blocks of people, on Dask
    with configured(dask_local):
        kept2 = load_for_pricing(small_city_dir, PRODUCT, assumptions, chunk_rows=1200)
        b = price(PRODUCT, kept2, assumptions, seed=3).figures
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                    default=str)


def test_the_command_line_says_when_a_scheduler_cannot_be_used(small_city_dir, capsys):
    assert run(["validate", "--dask", "nonsense://x", str(small_city_dir)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler" in err and "Traceback" not in err
    assert run(["validate", "--dask", "", str(small_city_dir)]) == 2
    assert run(["validate", "--dask", "local", str(small_city_dir)]) == 0


def _dies_at_four(shared, piece):
    if os.getpid() == shared:               # the caller is slow: the worker takes most
        time.sleep(0.1)
    elif piece >= 4:                        # a forked worker, not the caller
        os.kill(os.getpid(), 9)
    return piece


def test_a_killed_worker_fails_the_map_instead_of_hanging():
    from puhui.errors import JobFailed

    with pytest.raises(JobFailed, match="worker process died"):
        list(map_blocks(_dies_at_four, 8, os.getpid(), execution=Execution(workers=2)))


def _fails_at_one(shared, piece):
    if piece == 1:
        raise ValueError("piece one is bad")
    time.sleep(0.2)
    with open(shared / f"ran-{piece}", "w"):
        pass
    return piece


def test_after_a_failure_the_pieces_not_started_do_not_run(tmp_path):
    with pytest.raises(ValueError, match="piece one"):
        list(map_blocks(_fails_at_one, 30, tmp_path, execution=Execution(workers=2)))
    ran = len(list(tmp_path.glob("ran-*")))
    assert ran < 10, ran          # at most the pieces already started or queued


def test_a_claims_batch_on_dask_writes_the_ledger_and_eob_of_one_process(tmp_path,
                                                                         dask_local):
    from puhui.claims.batch import run_batch
    from puhui.claims.eob_file import EobWriter
    from puhui.fund.files import read_parquet, write_fund
    from puhui.synth.city import synth_city
    from tests.test_claims import entries

    city = tmp_path / "city"
    write_fund(synth_city(300, 1, seed=23, start_year=2025), city)
    got = {}
    for name, where in (("here", Execution(workers=1)), ("dask", dask_local)):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        out = tmp_path / name
        out.mkdir()
        sink = EobWriter(out / "eob.parquet", PRODUCT)
        with configured(where):
            run_batch(PRODUCT, PRODUCT.path, city, url, "b1", block_persons=25,
                      eob_sink=sink, workers=1)
        sink.close()
        got[name] = (read_parquet(out / "eob.parquet"), entries(url))
    pd.testing.assert_frame_equal(got["here"][0], got["dask"][0])
    assert got["here"][1] == got["dask"][1] and len(got["here"][1][0]) > 0


def _inner_sum(shared, piece):
    """A piece that runs a forked map of its own."""
    return sum(map_blocks(_slow_square_plain, 3, None, execution=Execution(workers=2))) + piece


def _slow_square_plain(shared, piece):
    return piece * piece


def test_maps_may_run_side_by_side_and_one_inside_another():
    two = Execution(workers=2)
    a = map_blocks(_slow_square_plain, 4, None, execution=two)
    b = map_blocks(_slow_square_plain, 4, None, execution=two)
    assert [(x, y) for x, y in zip(a, b)] == [(i * i, i * i) for i in range(4)]
    assert list(map_blocks(_inner_sum, 3, None, execution=two)) == [5, 6, 7]


def test_a_scheduler_without_workers_is_said_as_such(monkeypatch):
    from distributed import LocalCluster

    import puhui.execution as execution

    monkeypatch.setattr(execution, "WORKER_WAIT_SECONDS", 1)
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard": False,
                                        "dashboard_address": "127.0.0.1:0"}) as cluster:
        with pytest.raises(InputError, match="has no workers"):
            list(map_blocks(_slow_square_plain, 2, None,
                            execution=Execution(scheduler=cluster.scheduler_address)))


def test_ctrl_c_on_a_local_cluster_is_one_line_not_the_workers_tracebacks(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group; the LocalCluster's workers
    ignore it (they are closed by the command), so the user sees 'interrupted', exit
    130 (review 14 saw each worker's traceback)."""
    import signal
    import subprocess
    import sys

    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    write_fund(synth_city(2000, 1, seed=3, start_year=2025), tmp_path / "city")
    env = dict(os.environ)
    env.pop("PUHUI_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "puhui", "claims", "run", "--product",
                          "huhuibao-2025", "--data", str(tmp_path / "city"), "--ledger",
                          f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b", "--out",
                          str(tmp_path / "out"), "--dask", "local"],
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    # Ctrl-C once the cluster is up (the batch's ledger is open and the command has
    # started its workers), not after a fixed wait: on a busy machine 4 s was still
    # inside the imports, where Python's own Ctrl-C ends the process (-2); at this point
    # distributed's garbage-collector callback often runs, where an interrupt was lost
    # and printed as 'Exception ignored ... KeyboardInterrupt' (one run in three)
    def children(pid):
        try:
            return [c for t in os.listdir(f"/proc/{pid}/task")
                    for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            return []

    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline and not (
            (tmp_path / "l.db").exists() and children(p.pid)):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, 130), err          # 0: it finished before the Ctrl-C
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_ctrl_c_inside_a_garbage_collector_callback_is_not_lost():
    """An interrupt landing while a gc callback runs (distributed's scheduler hooks one in
    this process for a local cluster) cannot propagate from there: Python prints
    'Exception ignored ... KeyboardInterrupt' and carries on. It is delivered again once
    the callback has returned, so the command stops as Ctrl-C asks."""
    import gc
    import signal

    from puhui.execution import _interrupts_not_lost

    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):        # Python runs the handler here, in the callback
                pass

    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _interrupts_not_lost():
                gc.collect()
                time.sleep(3)            # the interrupt, delivered again, lands here
    finally:
        gc.callbacks.remove(callback)
    assert fired
