import os
import shutil

import pytest

from puhui.execution import quiet_native_threads
from puhui.fund.files import write_fund
from puhui.synth.city import synth_city

# Native thread pools as the command line has them (one thread, idle threads sleeping)
# from the first test on, not only after the first test that runs a command in this
# process: pricing in this process with the pools at their defaults took several times
# as long on a busy machine (threads spinning while they wait for each other;
# docs/benchmarks.md "Native threads"). A test of the user's own thread setting sets it
# itself (tests/test_review14.py).
quiet_native_threads()


def _freeze_what_lives():
    """Collect, then move every object still alive out of the garbage collector's sight
    (``gc.freeze``): the engines call ``gc.collect()`` between their steps
    (puhui.process_memory: three a claims batch, more a pricing) and Python runs full
    collections of its own; in a test process each walked the whole heap of the libraries
    imported, the test modules and their parameters, 0.1-0.3 s of CPU against a few
    milliseconds in a command's process: about 15 % of test_bad_inputs.py's CPU. Frozen
    objects stay where they are (they are alive: what the tests check does not change);
    what the tests make afterwards is collected as before."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_collection_finish(session):
    """The imported libraries and the collected tests, frozen (:func:`_freeze_what_lives`)."""
    import sys

    _freeze_what_lives()
    _MODULES_AT_FREEZE[0] = len(sys.modules)


_MODULES_AT_FREEZE = [0]


def pytest_sessionfinish(session, exitstatus):
    """The server that forks the tests' processes (multiprocessing's forkserver:
    tests/procs.py, and Dask's workers in tests/test_execution_worker_loss.py), stopped
    and waited for: its CPU and that of the processes it forked counted in this
    process's children, as a subprocess's are (`/usr/bin/time make test`)."""
    from multiprocessing import forkserver

    if forkserver._forkserver._forkserver_pid is not None:
        forkserver._forkserver._stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After a test that imported libraries (statsmodels, lifelines, matplotlib... are
    imported by the first test that prices, not at collection) and after a module's last
    test (its fixtures torn down): what is alive then, frozen too."""
    import sys

    yield
    if len(sys.modules) >= _MODULES_AT_FREEZE[0] + 10 or nextitem is None \
            or nextitem.path != item.path:        # (a doctest item has no .module)
        _freeze_what_lives()
        _MODULES_AT_FREEZE[0] = len(sys.modules)


#: The modules that cost most CPU (seconds in one process, measured in session 22 on a busy
#: machine; the list in that order): collected first. `make test` runs the modules in the
#: order collected (--dist loadfile --no-loadscope-reorder; xdist's default puts the
#: modules with the most tests first, which left heavy modules of few tests, the
#: examples, the kill tests, for the end, one worker running them while the other waited)
#: so the last modules to start are short ones and the two workers end together.
HEAVY_FIRST = (
    "test_money_safety",            # 128
    "test_service",                 # 106 (session 22, from a worker's half of the suite)
    "test_claims",                  # 85
    "test_bad_inputs",              # 63
    "test_pricing_out_of_sample",   # 63
    "test_examples",                # 57
    "test_duck_validate",           # 48
    "test_docs_examples",           # 36
    "test_execution",               # 34
    "test_batch_speed18",           # 35 (session 22, as test_service)
    "test_privacy_corpus",          # 34 (idem)
    "test_api",                     # 32
    "test_reproduce_moved",         # 31
    "test_reports",                 # 30
    "test_versions",                # 30
    "test_review20",                # 29
    "test_whatif",                  # 20
    "test_execution_worker_loss",   # 50; 17 in session 24 (Dask's workers forked)
    "test_price_speed18",           # 18
    "test_pricing_lifetime",        # 17
    "test_api_batch",               # 14
    "test_wheel",                   # 14
    "test_reserve_command",         # 25 (session 22's new modules)
    "test_monitor_command",         # 25
    "test_holds",                   # 24
    "test_review14",                # 22
)


def pytest_collection_modifyitems(session, config, items):
    """The modules of :data:`HEAVY_FIRST` first, in its order; every other module after
    them in the order collected; the tests of a module in their own order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank))
               if item.path.parent.name == "tests" else len(rank))


@pytest.fixture(scope="session")
def small_city_dir(tmp_path_factory):
    """A small valid city (600 people, 2 years), written once per test session."""
    d = tmp_path_factory.mktemp("city")
    write_fund(synth_city(600, 2, seed=11), d)
    return d


@pytest.fixture(scope="session")
def city_1500_2025(tmp_path_factory):
    """1,500 people over 2025 (seed 21), written once per test session: the claims batch's
    speed tests (sessions 16 and 17) compare their builders on it (read only)."""
    d = tmp_path_factory.mktemp("city_1500_2025")
    write_fund(synth_city(1500, 1, seed=21, start_year=2025), d)
    return d


@pytest.fixture(scope="session")
def small_city_figures(small_city_dir):
    """``price(huhuibao-2025, load_for_pricing(small city), seed=3).figures`` in this
    process (read only): the reference figures of test_execution.py (Dask gives the
    same) and test_pricing_out_of_sample.py (the build-up's steps give the same)."""
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions, price
    from puhui.products.model import load_product, product_path

    p = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    return price(p, load_for_pricing(small_city_dir, p, a), a, seed=3).figures


@pytest.fixture(scope="session")
def priced_small_city(small_city_dir, tmp_path_factory):
    """`puhui price --product huhuibao-2025 --seed 5` on a copy of the small city, with
    its default backtest of the last year: (data, out, result). Read only: shared by
    test_price_backtest.py and test_pricing_out_of_sample.py."""
    data = tmp_path_factory.mktemp("btdata") / "city"
    shutil.copytree(small_city_dir, data)
    out = tmp_path_factory.mktemp("btpriced")
    r = puhui("price", "--product", "huhuibao-2025", "--data", data, "--out", out,
              "--seed", "5")
    assert r.returncode == 0, r.stderr
    return data, out, r


@pytest.fixture(scope="session")
def backtested_small_city(priced_small_city, tmp_path_factory):
    """`puhui backtest --product huhuibao-2025 --seed 5` on the data priced by
    :func:`priced_small_city`: (out, result). Read only: shared by test_price_backtest.py
    (the price's backtest is this) and test_pricing_out_of_sample.py."""
    data, _, _ = priced_small_city
    out = tmp_path_factory.mktemp("bt")
    r = puhui("backtest", "--product", "huhuibao-2025", "--data", data, "--out", out,
              "--seed", "5")
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture
def city_copy(small_city_dir, tmp_path):
    """A copy of the small city that a test may break."""
    dst = tmp_path / "city"
    shutil.copytree(small_city_dir, dst)
    return dst


def puhui(*args, env=None):
    """``puhui ARGS`` in this process, through ``puhui.cli.run`` (what ``python -m puhui``
    and the console script run), stdout and stderr captured by click's test isolation:
    a ``subprocess.CompletedProcess`` as a run in a child process gives. For tests of
    what a command does, writes and says (not of the process itself: tests/test_cli.py
    runs ``python -m puhui``); it saves the interpreter's start and the pricing stack's
    imports, about 2.5 s of CPU a call."""
    import subprocess

    from click.testing import CliRunner

    from puhui.cli import run

    argv = [str(a) for a in args]
    with CliRunner().isolation(env=env) as (out, err, _):
        code = run(argv)
        o, e = out.getvalue(), err.getvalue()
    return subprocess.CompletedProcess(["puhui", *argv], code, o.decode("utf-8", "replace"),
                                       e.decode("utf-8", "replace"))


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this test session only (``puhui.tempdb.TempPostgres``: a
    temporary directory, a free port of 127.0.0.1, run as the ``postgres`` user when
    the tests run as root), stopped and removed at the session's end. Skipped where no
    server is installed, unless ``PUHUI_REQUIRE_POSTGRES`` is set (CI sets it: there a
    missing server is a failure, not a skip)."""
    from puhui.tempdb import TempPostgres, server_bindir

    if server_bindir() is None:
        if os.environ.get("PUHUI_REQUIRE_POSTGRES"):
            pytest.fail("PUHUI_REQUIRE_POSTGRES is set and no PostgreSQL server is installed "
                        "(`make test` installs Debian's postgresql package)")
        pytest.skip("no PostgreSQL server installed (`make test` installs it)")
    pg = TempPostgres().start()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def new_ledger(request, tmp_path):
    """``new_ledger(name)``: the URL of a new, empty ledger, a test run on each backend:
    a SQLite file in the test's folder, or a new database on the session's PostgreSQL
    server (:func:`postgres_server`). A test compares with ledgers it makes itself as
    ``sqlite:///...``, so the PostgreSQL run is checked against SQLite's answer."""
    from tests.ledgers import new_postgres_database

    def make(name: str = "l") -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        return new_postgres_database(request.getfixturevalue("postgres_server"))

    make.backend = request.param
    return make
