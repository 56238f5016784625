"""A throwaway PostgreSQL server for tests and benchmarks (issue 20).

The ledger's PostgreSQL backend is tested against a server the test suite starts
itself: Debian's ``postgresql`` package (installed by ``make test`` when missing) run
from a fresh data directory in the system's temporary folder, on a free port of
127.0.0.1 only, and removed afterwards. Never a shared or pre-existing server.

PostgreSQL refuses to initialise or run as root (these machines run as root): the
server is then run as the unprivileged ``postgres`` user the package creates
(``runuser -u postgres``), and its directory is given to that user.

>>> with TempPostgres() as pg:              # doctest: +SKIP
...     pg.url
'postgresql://postgres@127.0.0.1:54321/puhui'

A server started for tests trades durability for speed (``fsync=off``): a crash of
the *server* may lose its data, which a test never relies on (the kill tests kill the
client). :class:`TempPostgres` ``durable=True`` keeps PostgreSQL's defaults.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from puhui.errors import InputError

#: the server's own user where this process is root
SERVER_USER = "postgres"
#: the database the ledger tests use (``postgres`` stays the maintenance database)
DATABASE = "puhui"
START_SECONDS = 60


def server_bindir() -> Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``: ``PUHUI_PG_BINDIR``
    where set, else the newest ``/usr/lib/postgresql/N/bin`` (Debian's layout), else
    where ``pg_ctl`` is on the PATH; None when no server is installed."""
    env = os.environ.get("PUHUI_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).parent / "initdb").exists():
        return Path(pg_ctl).parent
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at this moment (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the servers of this process not stopped yet (stopped on SIGTERM: :func:`_on_sigterm`)
_RUNNING: set = set()


def _on_sigterm(signum, frame) -> None:
    """A plain ``kill`` (SIGTERM) ends Python without its atexit functions: the server
    outlived the process and its folder stayed in the temporary folder. Stop them, then
    die of the signal as before."""
    import signal

    for pg in list(_RUNNING):
        with contextlib.suppress(Exception):
            pg.stop()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _stop_on_sigterm() -> None:
    """Install :func:`_on_sigterm` where SIGTERM has no handler of the program's own
    (and only from the main thread, where Python takes signals)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _reachable_temp() -> str:
    """The temporary folder, if the server's user can reach it when this process is
    root (every folder above it open to others), else ``/tmp``: a ``TMPDIR`` private to
    root (``/root/tmp``) made initdb fail with "Permission denied"."""
    temp = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() != 0:
        return str(temp)
    for folder in (temp, *temp.parents):
        if not folder.stat().st_mode & 0o001:
            return "/tmp"
    return str(temp)


class TempPostgres:
    """A PostgreSQL server in a temporary directory on a free local port, with one
    empty database (:data:`DATABASE`); :meth:`stop` (or leaving the ``with`` block, or
    the interpreter's exit) stops it and removes its directory.

    Attributes once started: ``port``, ``url`` (``postgresql://postgres@127.0.0.1:PORT/
    puhui``), ``directory``."""

    def __init__(self, durable: bool = False, bindir: str | Path | None = None):
        self.durable = durable
        self.bindir = Path(bindir) if bindir else server_bindir()
        self.directory: Path | None = None
        self.port: int | None = None
        self._running = False

    @property
    def url(self) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def __enter__(self) -> "TempPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A server program as the server's user (``runuser`` when this process is
        root), its output captured for the message if it fails."""
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                               f"{self._log_tail()}")
        return r

    def _log_tail(self) -> str:
        log = self.directory / "server.log" if self.directory else None
        if log and log.exists():
            return "\nserver log:\n" + "\n".join(log.read_text(errors="replace")
                                                  .splitlines()[-20:])
        return ""

    def start(self) -> "TempPostgres":
        if self.bindir is None:
            raise InputError("no PostgreSQL server is installed (initdb not found in "
                             "/usr/lib/postgresql/*/bin or on the PATH): `make test` "
                             "installs Debian's postgresql package; or set PUHUI_PG_BINDIR "
                             "to the directory holding initdb and pg_ctl")
        # under the system's temporary folder itself: the server's user must reach the
        # directory, and pytest's own temporary folders are private to root
        self.directory = Path(tempfile.mkdtemp(prefix="puhui-pg-", dir=_reachable_temp()))
        atexit.register(self.stop)
        _RUNNING.add(self)
        _stop_on_sigterm()
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.directory / "data"), "-U", SERVER_USER,
                  "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):            # a port taken between its choice and the bind
            self.port = free_port()
            if self._start_server():
                break
        else:
            raise RuntimeError(f"the PostgreSQL server would not start{self._log_tail()}")
        self._create_database()
        return self

    def _start_server(self) -> bool:
        opts = [f"-p {self.port}", f"-k {self.directory}", "-c listen_addresses=127.0.0.1",
                "-c max_connections=200"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        r = self._run("pg_ctl", "-D", str(self.directory / "data"), "-l",
                      str(self.directory / "server.log"), "-w", "-t", str(START_SECONDS),
                      "-o", " ".join(opts), "start", check=False)
        self._running = r.returncode == 0
        if not self._running and (self.directory / "data" / "postmaster.pid").exists():
            # pg_ctl gave up waiting (-t) on a server that may still come up: stopped, or
            # it would outlive the tests and hold the data directory (review 20)
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate",
                      "-w", "stop", check=False)
        return self._running

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with psycopg.connect(f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/"
                                     f"postgres", autocommit=True, connect_timeout=5) as c:
                    c.execute(f"CREATE DATABASE {DATABASE}")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and remove its directory; again is harmless. The shutdown is
        PostgreSQL's "immediate" one (no checkpoint, open connections cut): the data is
        thrown away, and a fast shutdown's checkpoint of a test session's databases took
        25 s."""
        if self._running:
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w",
                      "stop", check=False)
            self._running = False
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        _RUNNING.discard(self)
