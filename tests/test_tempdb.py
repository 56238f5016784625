"""The throwaway PostgreSQL server the ledger tests run against (issue 20)."""
import os
from pathlib import Path

import pytest

from puhui.errors import InputError
from puhui.tempdb import TempPostgres


def _server_pid(pg) -> int:
    return int((pg.directory / "data" / "postmaster.pid").read_text().splitlines()[0])


def test_the_server_is_local_unprivileged_and_empty(postgres_server):
    import psycopg

    pg = postgres_server
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/puhui"
    with psycopg.connect(pg.url) as c:
        assert c.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        tables = c.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema = 'public'").fetchone()[0]
    assert tables == 0
    uid = next(int(line.split()[1]) for line in
               Path(f"/proc/{_server_pid(pg)}/status").read_text().splitlines()
               if line.startswith("Uid:"))
    assert uid != 0                       # PostgreSQL refuses root; it runs as postgres


def test_two_servers_at_once_and_nothing_left_after_stop():
    import psycopg

    a, b = TempPostgres().start(), TempPostgres().start()
    try:
        assert a.port != b.port
        dirs = [a.directory, b.directory]
        pids = [_server_pid(a), _server_pid(b)]
        with psycopg.connect(a.url, autocommit=True) as c:
            c.execute("CREATE TABLE t (x int)")
        with psycopg.connect(b.url) as c:      # a table of one is not in the other
            assert c.execute("SELECT to_regclass('t')").fetchone()[0] is None
    finally:
        a.stop()
        b.stop()
    a.stop()                                   # again: harmless
    assert not any(d.exists() for d in dirs)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    """Running (a zombie the container's init has not reaped yet is not running)."""
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines()
                     if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return " Z " not in state + " " and "zombie" not in state


def test_no_server_installed_is_a_clear_message(tmp_path):
    with pytest.raises(InputError, match="no PostgreSQL server is installed"):
        _no_server(tmp_path)


def _no_server(tmp_path):
    pg = TempPostgres()
    pg.bindir = None
    pg.start()


def test_a_start_pg_ctl_gave_up_on_is_stopped_not_left_running(monkeypatch):
    # review 20: `pg_ctl start -w -t N` returning non-zero (it stopped waiting) left a
    # server that came up anyway running; the next attempt then found the data directory
    # in use, and the test session ended with a server nobody stops
    if TempPostgres().bindir is None:
        pytest.skip("no PostgreSQL server installed")
    first_pids = []
    real = TempPostgres._run

    def gives_up_once(self, *args, check=True):
        r = real(self, *args, check=check)
        if "start" in args and not first_pids:
            first_pids.append(_server_pid(self))         # it did start ...
            r.returncode = 1                              # ... but pg_ctl said it timed out
        return r

    monkeypatch.setattr(TempPostgres, "_run", gives_up_once)
    pg = TempPostgres().start()
    try:
        assert not _alive(first_pids[0])                  # the first one was stopped
        assert _server_pid(pg) != first_pids[0]
    finally:
        pg.stop()
    assert not _alive(first_pids[0])
