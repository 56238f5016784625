"""Ledgers for tests on both backends (issue 20): a fresh ledger URL of either kind and
SQL run on it directly (what a test inspects or breaks behind the ledger's back)."""
from __future__ import annotations

import sqlite3
import uuid

from puhui.claims import ledger


def run_sql(url: str, sql: str, params=()) -> list[tuple]:
    """``sql`` (statements separated by ``;`` when there are no ``params``) on the
    ledger at ``url``, committed; the last statement's rows."""
    if ledger.is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            cur = con.execute(sql.replace("?", "%s"), params or None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    con = sqlite3.connect(ledger.sqlite_path(url))
    try:
        if not params and sql.count(";") > 1:
            con.executescript(sql)
            return []
        rows = con.execute(sql, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def new_postgres_database(server) -> str:
    """A new, empty database on the test session's PostgreSQL server: its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
