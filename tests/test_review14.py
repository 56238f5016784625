"""Hostile review 14 of the execution seam (puhui.execution, issue 19 point 3): the
reproductions of what broke, kept as tests (each failed before its fix): a Dask
worker's cached ledger connection (a replaced file, a second thread), a relative ledger
URL on a worker, forked workers left waiting after their batch was killed, a --dask
address whose server never answers or is not Dask, a user's thread settings, a ledger
created by another process between two reads."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.cli import run
from puhui.execution import Execution, configured
from puhui.fund.files import write_fund
from puhui.products.model import load_product, product_path
from puhui.synth.city import synth_city

distributed = pytest.importorskip("distributed")

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    d = tmp_path_factory.mktemp("r14_city")
    write_fund(synth_city(1500, 1, seed=1, start_year=2025), d)
    return d


def _entries(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT batch_id, setl_id, applies_to, benefit, psn_no, "
                           "policy_no, payout_fen, kind FROM payments ORDER BY batch_id, "
                           "applies_to, benefit").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(city, tmp_path_factory):
    """The ledger of the batch in one process."""
    db = tmp_path_factory.mktemp("r14_ref") / "l.db"
    run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{db}", "b1", block_persons=100,
              workers=1)
    rows = _entries(db)
    assert len(rows) > 10
    return rows


@contextlib.contextmanager
def _dask(threads: int):
    """A one-worker LocalCluster with ``threads`` threads, configured as the execution
    of what runs inside; its client is yielded, and cluster and client closed after."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=threads, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           scheduler_kwargs={"dashboard": False,
                                             "dashboard_address": "127.0.0.1:0"})
    client = Client(cluster)
    try:
        with configured(Execution(scheduler="local", client=client)):
            yield client
    finally:
        client.close()
        cluster.close()


def test_a_long_lived_dask_worker_writes_into_the_ledger_at_the_path_now(
        city, reference, tmp_path):
    with _dask(1):
        db = tmp_path / "l.db"
        run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{db}", "b1", block_persons=100)
        assert _entries(db) == reference
        for f in tmp_path.glob("l.db*"):      # a fresh ledger at the same path
            f.unlink()
        run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{db}", "b1", block_persons=100)
        assert _entries(db) == reference


def test_a_dask_worker_with_two_threads_finishes_the_batch(city, reference, tmp_path):
    with _dask(2):
        db = tmp_path / "l.db"
        run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{db}", "b1", block_persons=50)
        assert _entries(db) == reference


def test_a_relative_ledger_url_is_the_same_ledger_on_a_dask_worker(
        city, reference, tmp_path, monkeypatch):
    elsewhere = tmp_path / "worker_cwd"
    elsewhere.mkdir()
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with _dask(1) as client:
        client.run(os.chdir, str(elsewhere))      # a worker started in another folder
        run_batch(PRODUCT, PRODUCT.path, city, "sqlite:///l.db", "b1", block_persons=100)
        assert _entries(here / "l.db") == reference
        assert not (elsewhere / "l.db").exists()


ORPHAN_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from puhui.execution import Execution, map_blocks
    import r14_pieces
    for _ in map_blocks(r14_pieces.slow, 50, execution=Execution(workers=2)):
        print("piece", flush=True)
""")

PIECES = textwrap.dedent("""
    import time
    def slow(shared, i):
        time.sleep(0.3)
        return b"x" * 200_000       # a block's EOB parts are results of this size
""")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:        # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_forked_workers_end_when_their_parent_is_killed(tmp_path):
    (tmp_path / "script.py").write_text(ORPHAN_SCRIPT)
    (tmp_path / "r14_pieces.py").write_text(PIECES)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, str(tmp_path / "script.py")], env=env,
                         stdout=subprocess.PIPE, text=True)
    kids = []
    try:
        for _ in range(3):
            assert p.stdout.readline().startswith("piece")
        kids = _children(p.pid)
        assert len(kids) >= 1          # workers=2: one forked, the caller the other
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        assert not [k for k in kids if _alive(k)], "workers left running after the kill"
    finally:
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            p.kill()


class _Server:
    """A TCP server on a free loopback port that is not Dask: ``mode`` 'talk' sends
    text at once (a banner), 'http' waits for a request (a web server: the Dask
    dashboard's port 8787 given for the scheduler's 8786)."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.mode == "talk":
                try:
                    c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello\n")
                except OSError:
                    pass

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_port_that_is_not_dask_is_exit_2_not_out_of_memory(small_city_dir, capsys):
    """Fixed here (one line): Dask read the banner as a frame length and asked for
    3 EiB; the MemoryError said 'out of memory ... run it on a machine with more
    memory', exit 1."""
    srv = _Server("talk")
    try:
        code = run(["validate", str(small_city_dir), "--dask", f"tcp://127.0.0.1:{srv.port}"])
    finally:
        srv.close()
    err = capsys.readouterr().err
    assert code == 2, err
    assert "out of memory" not in err and "Dask scheduler" in err


def test_a_web_server_port_is_said_at_once_not_a_hang(small_city_dir, capsys, monkeypatch):
    """A server that accepts and then waits (a web server): the connection is given up
    on after the connect deadline (CONNECT_SECONDS + 5 s; made short here, it is the
    same code path) with exit 2, not a hang."""
    import puhui.execution as execution

    monkeypatch.setattr(execution, "CONNECT_SECONDS", 0.5)
    srv = _Server("http")
    code = []
    try:
        t = threading.Thread(target=lambda: code.append(run([
            "validate", str(small_city_dir), "--dask", f"tcp://127.0.0.1:{srv.port}"])),
            daemon=True)
        t.start()
        t.join(40)
    finally:
        srv.close()
    assert code, "still waiting after 40 s"
    err = capsys.readouterr().err
    assert code == [2], err
    assert "Dask scheduler" in err and "within 6 s" in err


def test_dask_on_a_command_without_it_is_a_usage_error(tmp_path, capsys):
    assert run(["synth", "--persons", "10", "--years", "1", "--out", str(tmp_path / "x"),
                "--dask", "local"]) == 2
    assert "No such option '--dask'" in capsys.readouterr().err


def _gbm_threads(monkeypatch):
    """The OpenMP threads each gradient-boosted fit of the cross-validation runs with."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_info

    from puhui.pricing.validation import cross_validate_frequency

    seen = []
    fit = HistGradientBoostingRegressor.fit

    def spy(self, *a, **k):
        seen.extend(d["num_threads"] for d in threadpool_info() if d["user_api"] == "openmp")
        return fit(self, *a, **k)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", spy)
    rng = np.random.default_rng(0)
    n = 400
    f = pd.DataFrame({"psn_no": [f"P{i}" for i in range(n)], "exposure": np.ones(n),
                      "sex": pd.Categorical(rng.choice(["F", "M"], n)),
                      "n": rng.poisson(0.3, n)})
    cross_validate_frequency(f, "n", ["sex"], folds=2, seed=1, gbm_iterations=5)
    assert seen
    return set(seen)


@pytest.mark.skipif(__import__("puhui.execution").execution.available_cores() < 2,
                    reason="needs two cores to tell one thread from every core")
@pytest.mark.parametrize("user, many", [("2", False), ("1", True)])
def test_a_users_omp_num_threads_is_kept(monkeypatch, user, many):
    import puhui.execution as execution

    # a user's environment is there before puhui sets anything (an earlier command run
    # in this test process may have set the variables: forget that)
    monkeypatch.setattr(execution, "_OURS", {})
    monkeypatch.setenv("OMP_NUM_THREADS", user)
    if many:
        monkeypatch.setattr(execution, "MANY_ROWS", 10)
    assert _gbm_threads(monkeypatch) == {int(user)}


def test_a_ledger_created_between_the_two_reads_is_not_foreign(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    real = ledger._schema_version

    def other_process_creates_it_now(con):
        v = real(con)
        other = sqlite3.connect(path, isolation_level=None)
        other.executescript(ledger.SCHEMA)     # what the other batch's _open does next
        other.close()
        return v

    monkeypatch.setattr(ledger, "_schema_version", other_process_creates_it_now)
    ledger.connect(f"sqlite:///{path}").close()
