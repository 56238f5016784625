"""Where block work runs: one seam for every map over blocks of people or rows.

Validation checks settlements.parquet chunk by chunk and pricing computes the as-if
experience block of people by block; both are the same shape of work, a map
``fn(shared, piece)`` over ``n`` pieces whose results are consumed **in order**, so the
answer cannot depend on where or when a piece ran. :func:`map_blocks` runs it on one of
two backends chosen by an :class:`Execution`:

local (the default)
    in this process (one worker, or one piece), or in this process and ``workers - 1``
    processes forked from it. A forked worker inherits ``source`` (the data, gigabytes
    at ten million settlements) without a copy and cuts its own piece from it; only
    results are pickled back.
dask
    a Dask distributed cluster: ``scheduler`` is its address (``tcp://host:8786``) or
    ``"local"`` for a LocalCluster of ``workers`` processes on this machine (tests,
    and a check that a cluster gives the figures one machine gives). ``shared`` is sent
    once to every worker; each piece is cut here and sent with its task, at most
    ``2 x workers`` pieces in flight, so the parent holds a few pieces, not all of them.
    A worker lost in the middle of a run costs its pieces, which run again on the
    workers left (:func:`_dask_map`; docs/scaling.md "A worker lost in the middle of a
    run").

Native thread pools (OpenMP in scikit-learn's gradient boosting, the BLAS under numpy
and statsmodels) are sized here too, to the cores each worker really has
(:func:`native_threads`): a forked or Dask worker runs its piece with
``cores // workers`` threads. The command line starts every pool at one thread with
idle threads sleeping (:func:`quiet_native_threads`), and work that gains from more
asks for them: on a 600-person city one ``puhui price`` took 16.6 s with the pools at
their defaults and 10.1 s with one thread; two at once took 50 s each (threads
spinning while they wait for each other) and 10 s each with one thread
(docs/benchmarks.md "Native threads").

The same pieces in the same order give the same results on either backend, bit for
bit (tests/test_execution.py; pricing.json and the validation report are compared).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from puhui.errors import InputError, JobFailed


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it, else
    the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):         # not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Processes for block work: two on a machine with two cores or more (the memory of
    a third copy of the working arrays is not worth the third core's time)."""
    return min(2, available_cores())


def native_threads(workers: int) -> int:
    """Threads each of ``workers`` concurrent workers gives its native pools:
    ``max(1, cores // workers)``.

    >>> native_threads(1) >= 1
    True
    """
    return max(1, available_cores() // max(1, workers))


#: The environment variables that size native thread pools when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Rows from which the gradient-boosted challenger is given every core: below it, a
#: second OpenMP thread cost more than it gave (measured, session 14: 2,000 rows 0.19 ->
#: 0.34 s a fit; 400,000 rows 1.02 -> 0.65 s; docs/benchmarks.md "Native threads").
MANY_ROWS = 200_000


#: The variables :func:`quiet_native_threads` set, with the value it gave them (a
#: variable holding another value is the user's).
_OURS: dict[str, str] = {}


def quiet_native_threads() -> None:
    """Native pools start with one thread and idle OpenMP threads sleep rather than
    spin, unless the user's environment says otherwise (its variables are left as
    they are). Work that gains from threads asks for them (:func:`limited_threads`).

    The CLI calls this first: the variables count only for libraries not yet loaded,
    so pools already loaded (numpy's BLAS) are limited here too."""
    unset = [v for v in THREAD_VARIABLES if v not in os.environ]
    for v in unset:
        os.environ[v] = _OURS[v] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if unset:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)       # the pools loaded before now, for good


def users_threads() -> int | None:
    """The thread count the user's environment asks for (the first of
    :data:`THREAD_VARIABLES` they set, to a whole number of 1 or more), else None."""
    for v in THREAD_VARIABLES:
        if v in os.environ and os.environ[v] != _OURS.get(v):
            try:
                n = int(os.environ[v].split(",")[0])
            except ValueError:
                continue
            if n >= 1:
                return n
    return None


@contextlib.contextmanager
def limited_threads(threads: int):
    """Native thread pools (OpenMP, BLAS) limited to ``threads`` inside the block, or
    to what the user's environment asks for (:func:`users_threads`: their setting is
    kept, in workers too)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=users_threads() or max(1, int(threads))):
        yield


@dataclass(frozen=True)
class Execution:
    """Where :func:`map_blocks` runs its pieces.

    Parameters
    ----------
    workers : processes (local) or Dask workers of a LocalCluster; default
        :func:`default_workers`
    scheduler : None (local), a Dask scheduler address, or ``"local"`` for a
        LocalCluster of ``workers`` processes
    """

    workers: int | None = None
    scheduler: str | None = None
    #: an open distributed Client to reuse (see :func:`dask_client`); else each map
    #: opens its own
    client: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise InputError(f"workers: {self.workers!r}: a whole number of processes, 1 or more")
        if self.scheduler is not None and not str(self.scheduler).strip():
            raise InputError("--dask: give a scheduler address (tcp://host:8786) or 'local'")

    @property
    def n_workers(self) -> int:
        return self.workers or default_workers()


_CURRENT: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "puhui_execution", default=None)


def current() -> Execution:
    """The execution set by :func:`configured` (the CLI's ``--workers`` / ``--dask``),
    else the local default."""
    return _CURRENT.get() or Execution()


@contextlib.contextmanager
def configured(execution: Execution):
    """Every :func:`map_blocks` inside the block runs on ``execution`` unless told
    otherwise (as joblib's ``parallel_config``)."""
    token = _CURRENT.set(execution)
    try:
        yield execution
    finally:
        _CURRENT.reset(token)


def map_blocks(fn: Callable[[Any, Any], Any], n: int, shared: Any = None, *,
               source: Any = None, cut: Callable[[Any, int], Any] | None = None,
               execution: Execution | None = None, workers: int | None = None,
               after: Callable[[], Any] | None = None,
               rerun_lost: bool = True) -> Iterator[Any]:
    """``fn(shared, piece)`` for ``piece = cut(source, i)`` (``i`` itself without
    ``cut``), ``i = 0 .. n-1``, yielded in that order.

    ``fn`` and ``cut`` must be module-level functions (a Dask worker imports them);
    ``shared`` and the pieces must pickle on the Dask backend. ``workers`` overrides the
    execution's count (a caller that knows better, e.g. a small table). ``after`` runs in
    a local worker after each piece (handing freed memory back to the system).

    On Dask a piece whose worker is lost is run again on the workers left
    (:func:`_dask_map`): ``fn`` must be safe to run twice for a piece, also at once (pure,
    or its effects one transaction that a second run leaves as the first made them).
    A caller whose pieces are not passes ``rerun_lost=False``: a lost worker then fails
    the map with :class:`~puhui.errors.JobFailed` (exit 1, run the command again).
    """
    ex = execution or current()
    k = workers or ex.n_workers
    if ex.scheduler is not None:
        yield from _dask_map(fn, n, shared, source, cut, ex, k, rerun_lost)
    elif k <= 1 or n <= 1:
        for i in range(n):
            yield fn(shared, cut(source, i) if cut else i)
    else:
        yield from _fork_map(fn, n, shared, source, cut, k, after)


#: What forked workers run, by map (a module global: they inherit it at the fork,
#: unpickled); several maps may run at once, one inside another's piece too.
_JOBS: dict[str, tuple] = {}


def _fork_piece(job: str, i: int):
    fn, shared, source, cut, threads, after = _JOBS[job]
    with limited_threads(threads):
        out = fn(shared, cut(source, i) if cut else i)
    if after is not None:
        after()
    return out


def _watch_parent(parent: int) -> None:
    """In a forked worker: end the worker when the process that forked it is gone
    (killed: nobody would read its results, and it would wait for its next piece for
    ever). A piece cut short this way is one whose results nobody can use; a claims
    block's transaction rolls back."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="puhui-watch-parent", daemon=True).start()


def _in_order(pool, job: str, n: int, workers: int) -> Iterator[Any]:
    """Pieces ``0..n-1``'s results in order: every ``workers``-th piece is this process's
    own, computed when its turn comes; the forked workers' pieces are handed out a few
    ahead, not all at once (a worker running far ahead would leave its results waiting
    here). Measured at ten million settlements (claims run, two workers): an equal share
    103-109 s, 3.81-3.90 GiB; this process taking a third 132 s (the worker was then
    the bottleneck); taking a piece only while it waited for a worker 110 s, 4.03 GiB;
    two forked workers and this process only writing 97 s, 4.20 GiB; the session-13
    scheme 96-105 s, 3.66-3.74 GiB."""
    stride = workers
    theirs = iter([i for i in range(n) if i % stride != stride - 1])
    futures: dict[int, Any] = {}
    for i in range(n):
        while len(futures) < 2 * (workers - 1) and (nxt := next(theirs, None)) is not None:
            futures[nxt] = pool.submit(_fork_piece, job, nxt)
        if i % stride == stride - 1:
            yield _fork_piece(job, i)
        else:
            yield futures.pop(i).result()


def _fork_map(fn, n, shared, source, cut, workers, after) -> Iterator[Any]:
    """The pieces in this process and ``workers - 1`` forked ones, results in order
    (:func:`_in_order`; a third process at work would hold its own copy of a block's
    working memory: +0.4 GiB at ten million settlements, measured).
    A worker that dies (killed, out of memory) fails the map with
    :class:`~puhui.errors.JobFailed` instead of leaving it waiting for a result that will
    not come (multiprocessing's Pool would)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from puhui.errors import JobFailed

    job = uuid.uuid4().hex
    _JOBS[job] = (fn, shared, source, cut, native_threads(workers), after)
    try:
        pool = ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_watch_parent, initargs=(os.getpid(),))
        try:
            yield from _in_order(pool, job, n, workers)
        except BrokenProcessPool:
            raise JobFailed(
                "a worker process died (killed, or out of memory: see the system log); "
                "nothing of its unfinished piece was kept. Run the command again; with "
                "less memory free, give it fewer workers") from None
        finally:
            # on a failure, or a caller that stops early, the pieces not started are
            # not run (a claims block would still write to the ledger)
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        del _JOBS[job]


#: One piece at a time in a Dask worker process, whatever its thread count: a piece's
#: code keeps state per process (validation's reused money block, a column reader's
#: open file, a claims worker's ledger connection), written as a forked worker runs it,
#: one piece after another. A worker with two threads checked two chunks at once in
#: one money block and reported wrong counts (review 16). Give a cluster processes
#: (``dask worker --nworkers N --nthreads 1``), not threads.
_PIECE_LOCK = threading.Lock()


def _dask_piece(fn, shared, piece, threads: int | None):
    """A piece on a Dask worker (one at a time in its process: :data:`_PIECE_LOCK`);
    ``threads`` None leaves the worker's pools as its nanny set them (one thread per
    task by default: Dask sets OMP_NUM_THREADS=1)."""
    with _PIECE_LOCK:
        if threads is None:
            return fn(shared, piece)
        with limited_threads(threads):
            return fn(shared, piece)


class _RanBefore(Exception):
    """A piece that may run once only was started a second time (Dask's scheduler
    re-runs a task whose worker died when its inputs survive elsewhere)."""


def _dask_piece_once(fn, shared, piece, threads: int | None, mark: list):
    """:func:`_dask_piece` at most once: the scheduler keeps a mark of each piece
    started (``mark``: the map's run and the piece), and a second start refuses."""
    from distributed import get_client

    client = get_client()
    if client.get_metadata(mark, None) is not None:
        raise _RanBefore(mark[-1])
    client.set_metadata(mark, True)
    return _dask_piece(fn, shared, piece, threads)


def _without_interrupts(start):
    """``start()`` with Ctrl-C ignored, so the worker processes it starts inherit that
    (Python keeps an ignored SIGINT ignored): Ctrl-C stops this process, which closes
    the cluster, instead of printing each worker's traceback."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return start()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return start()
    finally:
        signal.signal(signal.SIGINT, before)


def _in_gc_callback(frame) -> bool:
    """Whether ``frame`` (or a caller of it) runs one of the garbage collector's callbacks."""
    import gc

    codes = {getattr(cb, "__code__", None) or getattr(getattr(cb, "__func__", None),
                                                      "__code__", None) for cb in gc.callbacks}
    codes.discard(None)
    while frame is not None and codes:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _interrupts_not_lost():
    """Ctrl-C while a garbage-collector callback runs is delivered again once it has
    returned. distributed's scheduler (in this process for a local cluster) hooks a
    callback into the collector, and an exception raised inside one cannot propagate:
    Python prints 'Exception ignored in ... KeyboardInterrupt' with a traceback and the
    batch goes on, as if Ctrl-C had not been pressed (review of session 14's test, one
    run in three when Ctrl-C came as the cluster started)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        if _in_gc_callback(frame):
            threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@contextlib.contextmanager
def dask_client(ex: Execution, workers: int):
    """A distributed Client for ``ex`` (a LocalCluster of ``workers`` processes, one
    thread each, for ``"local"``); closed on leaving."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--dask needs Dask distributed: pip install 'puhui[dask]' "
                         "(or dask[distributed])") from None
    if ex.scheduler == "local":
        with _interrupts_not_lost():
            yield from _local_client(Client, LocalCluster, workers)
        return
    client = _connect(Client, ex.scheduler, CONNECT_SECONDS)
    with client:
        yield client


def _local_client(Client, LocalCluster, workers: int):
    """A LocalCluster of ``workers`` processes, one thread each, and its client."""
    cluster = _without_interrupts(lambda: LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        # no dashboard; its HTTP server (health checks) on a free loopback port,
        # not 8787 (another cluster may hold it)
        dashboard_address=None, scheduler_kwargs={"dashboard": False,
                                                  "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR))
    scheduler_log = logging.getLogger("distributed.scheduler")
    hush = _RecoveredLoss()
    scheduler_log.addFilter(hush)
    try:
        with cluster, Client(cluster) as client:
            yield client
    finally:
        scheduler_log.removeFilter(hush)


class _RecoveredLoss(logging.Filter):
    """Drops what the scheduler of a local cluster (in this process) says of the pieces
    lost with a worker, which :func:`_dask_map` sends again: "lost scattered data, which
    can't be recovered" is not so here (the note on stderr says what happened)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("caused the cluster to lose scattered data" in text
                    or text.startswith("Couldn't gather keys"))


#: How long a scheduler has to answer ``--dask ADDRESS``.
CONNECT_SECONDS = 10


def _connect(client_class, address: str, seconds: float):
    """A Client of the scheduler at ``address``, or an :class:`InputError` within about
    ``seconds``: Client's own timeout does not bound the handshake with a server that
    accepts and then waits (a web server, such as the dashboard's port given for the
    scheduler's), so the connection is made in a thread that is given up on."""
    import threading

    out: dict = {}

    def connect():
        try:
            out["client"] = client_class(address, timeout=seconds)
        except Exception as e:  # noqa: BLE001 - any failure to connect is said below
            out["error"] = e

    t = threading.Thread(target=connect, name="puhui-dask-connect", daemon=True)
    t.start()
    t.join(seconds + 5)
    if "client" in out:
        return out["client"]
    why = out.get("error")
    reason = (f"{type(why).__name__}: {why}" if why is not None
              else f"no answer from a Dask scheduler within {seconds + 5:.0f} s")
    raise InputError(f"--dask {address}: cannot reach the Dask scheduler ({reason}); "
                     f"start one with `dask scheduler` and workers with `dask worker "
                     f"ADDRESS` (docs/scaling.md)")


#: How long a scheduler without workers is waited for.
WORKER_WAIT_SECONDS = 30


def _workers_of(client, ex: Execution) -> int:
    """The cluster's worker count, waiting up to :data:`WORKER_WAIT_SECONDS` for a first
    worker; a cluster without any is exit 2 with what to do."""
    workers = len(client.scheduler_info().get("workers", {}))
    if workers:
        return workers
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except (TimeoutError, OSError):
        raise InputError(f"--dask {ex.scheduler}: the Dask scheduler has no workers "
                         f"(none joined within {WORKER_WAIT_SECONDS} s); start them with "
                         f"`dask worker {ex.scheduler} --nthreads 1` (docs/scaling.md)"
                         ) from None
    return max(1, len(client.scheduler_info().get("workers", {})))


#: How many times one piece is sent again after the worker running it (or holding its
#: data) was lost; one more loss fails the map. Dask's scheduler also re-runs a task
#: whose inputs survive on its own, up to its ``allowed-failures`` (3), and then
#: raises ``KilledWorker``: a piece that kills every worker it runs on (out of memory)
#: ends the command instead of taking the cluster down a worker at a time.
LOST_PIECE_RETRIES = 3


def _lost_worker_errors() -> tuple[type[BaseException], ...]:
    """The errors with which a Dask future says its worker (or its data) is gone: the
    piece's data scattered to a worker that died is cancelled ("lost scattered data");
    a task that was running when its worker died is re-run by the scheduler (and comes
    back as ``KilledWorker`` after too many); ``CancelledError`` also covers a future
    whose result died with its worker before it was fetched."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    return (CancelledError, KilledWorker)


def _lost(i: int, n: int, times: int, why: BaseException, rerun: bool) -> JobFailed:
    """What a user is told when a piece is lost for good."""
    from distributed import KilledWorker

    what = ("the worker running it died or left the cluster (killed, out of memory, "
            "or its machine went away: see the worker's log)")
    if isinstance(why, KilledWorker):
        times = why.allowed_failures + 1
    if rerun:
        return JobFailed(f"piece {i + 1} of {n} on the Dask cluster was lost {times} times: "
                         f"{what}, and run again each time ({type(why).__name__}). "
                         f"Nothing of an unfinished piece is kept; run the same command "
                         f"again (a claims batch with the same id finishes the batch without "
                         f"paying twice); if it is lost again, give the workers more memory")
    return JobFailed(f"piece {i + 1} of {n} on the Dask cluster was lost: {what} "
                     f"({type(why).__name__}); it is not run again by itself. Nothing of an "
                     f"unfinished piece is kept: run the same command again to finish it")


def _scatter_piece(client, piece, broadcast: bool = False,
                   tries: int = 1 + LOST_PIECE_RETRIES):
    """``piece`` sent to a worker, or to every worker (``broadcast``), as one object (a
    list of one: scatter would split a dict or a list), not hashed (tokenising gigabytes
    of frames costs more than sending them); sent again if a worker chosen dies
    meanwhile (``CommClosedError``, an ``OSError``) or none is left for a moment (a
    ``TimeoutError``: waited for one, up to :data:`WORKER_WAIT_SECONDS`)."""
    for t in range(tries):
        try:
            return client.scatter([piece], broadcast=broadcast, hash=False)[0]
        except OSError as e:
            if t + 1 == tries:
                raise JobFailed(f"could not send a piece of the work to a Dask worker "
                                f"{tries} times ({type(e).__name__}: {e}): workers are "
                                f"dying or unreachable (see their log). Nothing of an "
                                f"unfinished piece is kept; run the same command again"
                                ) from None
            # every worker gone ("No valid workers found", after the scheduler's 2 s):
            # a local cluster's nanny starts new ones, a remote one's may come back
            with contextlib.suppress(OSError):
                client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)


def _say(line: str) -> None:
    """A line for the user on stderr (the command's output stays on stdout)."""
    import sys

    print(line, file=sys.stderr, flush=True)


def _dask_map(fn, n, shared, source, cut, ex: Execution, workers: int,
              rerun_lost: bool = True) -> Iterator[Any]:
    """The pieces on a Dask cluster, results in order. A piece whose worker is lost
    (its process killed, out of memory, its machine gone) is sent again, cut again from
    ``source``, to the workers left (``rerun_lost``; at most :data:`LOST_PIECE_RETRIES`
    times); otherwise the map fails with :class:`~puhui.errors.JobFailed` saying so.
    Without ``rerun_lost`` a piece is also kept from Dask's own re-run (the scheduler
    re-runs a task whose worker died when its inputs survive on another): each piece
    leaves a mark on the scheduler when it starts and refuses to start again.

    Sending a piece again is right for every caller today: validation and pricing's
    pieces are pure (the same piece gives the same result, bit for bit, wherever it
    runs), and a claims batch's block is one ledger transaction whose plan is "target
    minus what the ledger says is paid", checked again under the write lock, so a block
    re-run after its worker died mid-transaction (rolled back) writes it once, and one
    re-run after its commit writes nothing and reports the same EOB
    (tests/test_execution_worker_loss.py kills a worker in both places). A worker that
    only seems lost (cut off from the scheduler, still running) and finishes the piece
    too is the case of two batches at once on one ledger, which the same check covers.
    """
    from distributed import KilledWorker

    lost_errors = _lost_worker_errors()
    with (contextlib.nullcontext(ex.client) if ex.client is not None
          else dask_client(ex, workers)) as client:
        n_workers = _workers_of(client, ex)
        threads = native_threads(n_workers) if ex.scheduler == "local" else None

        def share():
            return _scatter_piece(client, shared, broadcast=True)

        shared_f = share()
        window = 2 * n_workers
        run = uuid.uuid4().hex[:12]
        pending: dict[int, Any] = {}
        losses: dict[int, int] = {}
        sends = iter(range(1 << 62))      # a new key for every task sent, again or not

        def send(i: int):
            piece = _scatter_piece(client, cut(source, i)) if cut else i
            once = () if rerun_lost else ([f"puhui-started-{run}", str(i)],)
            return client.submit(_dask_piece_once if once else _dask_piece, fn, shared_f,
                                 piece, threads, *once, pure=False,
                                 key=f"puhui-block-{run}-{i}-{next(sends)}")

        try:
            submitted = 0
            for i in range(n):
                while submitted < n and submitted < i + window:
                    pending[submitted] = send(submitted)
                    submitted += 1
                while True:
                    fut = pending[i]
                    try:
                        out = fut.result()
                        break
                    except _RanBefore as e:
                        raise _lost(i, n, 1, e, False) from None
                    except lost_errors as e:
                        times = losses.get(i, 0) + 1
                        if (not rerun_lost or isinstance(e, KilledWorker)
                                or times > LOST_PIECE_RETRIES):
                            raise _lost(i, n, times, e, rerun_lost) from None
                        if shared_f.status != "finished":      # every copy died with workers
                            shared_f = share()
                        losses[i] = times
                        # this piece and the others whose data died with the same worker
                        for j, other in list(pending.items()):
                            if j == i or other.status in ("cancelled", "lost"):
                                other.release()
                                pending[j] = send(j)
                        _say(f"note: a Dask worker was lost, and piece {i + 1} of {n} with it "
                             f"({type(e).__name__}); its pieces run again on the workers left")
                del pending[i]
                fut.release()
                yield out
        finally:
            if not rerun_lost:      # the marks go
                with contextlib.suppress(Exception):
                    client.set_metadata([f"puhui-started-{run}"], None)
