"""The ledger on PostgreSQL (``postgresql://user@host:port/db``), behind the same
functions as the SQLite ledger (:mod:`puhui.claims.ledger`; issue 20).

:mod:`puhui.claims.ledger` keeps one text of every statement, in the SQLite dialect it
was written in; :class:`PgConnection` is a psycopg 3 connection that takes those
statements and says them in PostgreSQL (:func:`translate`, each statement translated
once and kept), so both backends run the same statements with the same meaning:

- ``?`` parameters are psycopg's ``%s``;
- ``INSERT OR IGNORE`` is ``ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE`` updates the
  row under the table's key (:data:`REPLACE_KEYS`) and, for ``settlements``, gives it a
  new ``seq`` as SQLite's delete-and-insert does (a block's stamp reads it);
- ``BEGIN IMMEDIATE`` (SQLite's database-wide write lock, taken at the start of a unit
  of work) is ``BEGIN`` and a transaction-level advisory lock on one key
  (:data:`WRITE_LOCK`): writers queue as on SQLite, readers never wait;
- ``IS NOT ?`` is ``IS DISTINCT FROM``; a boolean inside ``MAX`` is cast to an integer;
  SQLite's ``+column`` (an index hint) is the column;
- amounts are ``BIGINT`` (fen beyond 21 million yuan do not fit PostgreSQL's 32-bit
  ``INTEGER``), ``SUM`` of them comes back as an ``int`` (PostgreSQL's ``numeric``).

>>> translate("INSERT OR IGNORE INTO reversals VALUES (?, ?, ?, ?)")
'INSERT INTO reversals VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING'
>>> translate("SELECT 1 FROM settlements WHERE +setl_date BETWEEN ? AND ?")
'SELECT 1 FROM settlements WHERE setl_date BETWEEN %s AND %s'
"""
from __future__ import annotations

import functools
import re

from puhui.errors import InputError

#: The advisory lock key every unit of work takes (``hashtext('puhui ledger writes')``
#: would do too; a fixed number is plainer to find in ``pg_locks``).
WRITE_LOCK = 0x70756875               # "puhu"

#: The key of each table SQLite's ``INSERT OR REPLACE`` replaces a row by, and the
#: columns of the table in order (for a statement without a column list).
REPLACE_KEYS = {
    "decisions": (("setl_id", "product_id", "benefit"),
                  ("setl_id", "benefit", "psn_no", "policy_no", "eligible_fen",
                   "deductible_fen", "ratio_bp", "payout_fen", "reason", "batch_id",
                   "product_id")),
    "settlements": (("setl_id",),
                    ("seq", "setl_id", "psn_no", "setl_date", "med_type", "hosp_lv",
                     "insutype", "psn_part_fen", "fulamt_ownpay_fen", "overlmt_selfpay_fen",
                     "source", "digest")),
}
#: A table whose replaced row takes a new number from its sequence (SQLite deletes the
#: old row and inserts a new one, which takes the next AUTOINCREMENT value).
RENUMBERED = {"settlements": ("seq", "settlements_seq_seq")}


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a lock's name; never the whole
    ledger's key. Two names sharing a key only queue one behind the other.

    >>> lock_key("psn:P1") == lock_key("psn:P1") != lock_key("psn:P2")
    True
    """
    import hashlib

    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                         signed=True)
    return key if key != WRITE_LOCK else key + 1


def pg_schema(sqlite_schema: str) -> str:
    """The ledger's SQLite schema in PostgreSQL: integers 64-bit, AUTOINCREMENT keys as
    ``BIGSERIAL``.

    >>> pg_schema("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL);")
    'CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL);'
    """
    s = sqlite_schema.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    return re.sub(r"\bINTEGER\b", "BIGINT", s)


_INSERT = re.compile(r"^\s*INSERT OR (IGNORE|REPLACE) INTO (\w+)\s*(\(([^)]*)\))?", re.S)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """One statement of the ledger's SQLite dialect in PostgreSQL's (see the module)."""
    s = sql.replace("%", "%%").replace("?", "%s")
    s = re.sub(r"\bIS NOT %s", "IS DISTINCT FROM %s", s)
    s = re.sub(r"MAX\((\w+) = %s\)", r"MAX((\1 = %s)::int)", s)
    s = re.sub(r"(?<![\w)])\+(?=[A-Za-z_])", "", s)
    m = _INSERT.match(s)
    if m is None:
        return s
    kind, table, cols = m.group(1), m.group(2), m.group(4)
    s = (s[:m.start()] + f"INSERT INTO {table}" + (f" ({cols})" if cols else "") + " "
         + s[m.end():].lstrip())
    if kind == "IGNORE":
        return s + " ON CONFLICT DO NOTHING"
    if table not in REPLACE_KEYS:
        raise ValueError(f"INSERT OR REPLACE INTO {table}: no key known for PostgreSQL")
    key, every = REPLACE_KEYS[table]
    named = [c.strip() for c in cols.split(",")] if cols else list(every)
    sets = [f"{c} = excluded.{c}" for c in named if c not in key]
    if table in RENUMBERED:
        col, seq = RENUMBERED[table]
        sets.append(f"{col} = nextval('{seq}')")
    return s + f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"


#: What :func:`any_wanted` rewrites.
_IN_WANTED = "IN (SELECT setl_id FROM wanted)"


def with_wanted(text: str, args: tuple | None, ids: list[str]) -> tuple[str, tuple]:
    """A statement reading ``wanted`` (the ids of :func:`puhui.claims.ledger._wanted`)
    with ``wanted`` its own array of ``ids`` (a ``WITH``), looked up by index
    (:func:`any_wanted`); the ids are the first parameter.

    >>> with_wanted("SELECT 1 FROM t WHERE x IN (SELECT setl_id FROM wanted) AND y = %s",
    ...             ("a",), ["S1"])[1]
    (['S1'], 'a')
    """
    return ("WITH wanted AS (SELECT DISTINCT unnest(%s::text[]) AS setl_id) "
            + any_wanted(text), (ids, *(args or ())))


@functools.lru_cache(maxsize=128)
def any_wanted(sql: str) -> str:
    """A translated statement reading the few ids of ``wanted`` by index: ``x IN (SELECT
    setl_id FROM wanted)`` as ``x = ANY (ARRAY(SELECT setl_id FROM wanted))``, the same
    rows (``wanted.setl_id`` is a key, never NULL), which the planner answers with an
    index scan per table instead of a scan of every row (it knows nothing of the
    temporary table, so it guessed a thousand ids and a hash join).

    >>> any_wanted("SELECT 1 FROM decisions WHERE setl_id IN (SELECT setl_id FROM wanted)")
    'SELECT 1 FROM decisions WHERE setl_id = ANY (ARRAY(SELECT setl_id FROM wanted))'
    """
    return sql.replace(_IN_WANTED, "= ANY (ARRAY(SELECT setl_id FROM wanted))")


class _Result:
    """A statement's rows, as sqlite3's cursor gives them (``fetchone``, ``fetchall``,
    iteration, ``description``)."""

    def __init__(self, cur):
        from psycopg.pq import ExecStatus

        res = cur.pgresult if cur is not None else None
        # rows, as psycopg's ``description`` decides, without making its Column objects
        # (a payout's reads made 27 of them, about 5 % of its Python, session 24)
        tuples = res is not None and (res.nfields > 0 or res.status in (
            ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE))
        self._res = res if tuples else None
        self._rows = cur.fetchall() if tuples else []
        self._at = 0

    @property
    def description(self) -> list[tuple] | None:
        """DB-API's description (name first, the rest None), or None for a statement
        that returns no rows."""
        if self._res is None:
            return None
        return [(self._res.fname(i).decode(), None, None, None, None, None, None)
                for i in range(self._res.nfields)]

    def fetchone(self):
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self):
        rows, self._at = self._rows[self._at:], len(self._rows)
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection that runs the ledger's statements (:func:`translate`) with
    the sqlite3 connection's calls the ledger uses: ``execute``, ``executemany``,
    ``executescript``, ``close``, and :meth:`frame` for ``pandas.read_sql_query``.
    Autocommit, as the SQLite ledger's ``isolation_level=None``: a unit of work is an
    explicit ``BEGIN`` ... ``COMMIT``.

    Inside a unit of work, a statement that writes and returns nothing (``INSERT``,
    ``UPDATE``, ``DELETE`` without ``RETURNING``) is kept and sent with the others in
    one pipeline (one round trip) before the next statement that reads, or with the
    ``COMMIT``: the transaction still reads its own writes, and a write's error still
    rolls the whole unit of work back (it is raised by the read or the ``COMMIT`` that
    sent it). A direct payout's nine writes and its commit were nine round trips."""

    backend = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self.url = url
        self._con = psycopg.connect(url, autocommit=True)
        #: what this connection learnt of the ledger that stays true once committed
        #: (:func:`puhui.claims.ledger._known`); forgotten on a rollback
        self.facts: set[tuple] = set()
        self._writing = False           # inside a unit of work that may write
        self._pending: list[tuple[str, str, object]] = []   # (kind, sql, params or rows)
        #: reads sent with the unit of work's BEGIN and locks (:meth:`begin`), by
        #: (statement, parameters), each answered once, until the unit's first write
        self._ahead: dict[tuple[str, tuple | None], _Result] = {}
        #: the few ids a read names as ``wanted`` (:func:`puhui.claims.ledger._wanted`),
        #: or None (the temporary table ``wanted`` holds them)
        self.wanted_ids: list[str] | None = None
        #: the named locks the open unit of work holds: name -> shared (:meth:`lock`);
        #: None: the whole ledger's, exclusively (nothing else writes)
        self._held: dict[str, bool] | None = {}
        self._con.adapters.register_loader("numeric", _integral_numeric_loader())

    def begin(self, locks: tuple[str, ...] | None = None, reads=()) -> None:
        """``BEGIN`` and the transaction's advisory locks: the whole ledger's lock
        exclusively (``locks=None``: SQLite's ``BEGIN IMMEDIATE``), or shared with the
        other such transactions and each named lock exclusively, in one order (no two
        transactions wait for each other in a circle).

        ``reads``: statements (ledger SQL, parameters) the unit of work will read
        before it writes, sent in the same round trip after the locks (so they read
        what the locks guard, as if run later) and answered from here when the unit
        runs them (:meth:`execute`); forgotten at the unit's first write, so a read
        after a write still goes to the server and sees it. A direct payout's four
        reads and its BEGIN were five round trips."""
        self._pending, self._ahead = [], {}
        if locks is None:
            self._held = None
            self._run(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            self._writing = True
            return
        self._held = held_locks(locks)
        keys = sorted({(lock_key(name), shared) for name, shared in self._held.items()})
        read = [(translate(sql), tuple(params) if params else None) for sql, params in reads]
        try:
            with self._con.pipeline():
                # in this order: the shared lock, then each named lock by its key (no
                # circle of waits), in one statement, then the reads
                self._con.execute("BEGIN")
                self._con.execute(*locks_statement([(WRITE_LOCK, True), *keys]))
                curs = [self._con.execute(sql, args) for sql, args in read]
            self._ahead = {k: _Result(cur) for k, cur in zip(read, curs)}
        except BaseException:
            self._failed()
            raise
        self._writing = True

    def lock(self, name: str, shared: bool) -> None:
        """Hold the advisory lock ``name`` (shared with other shared holders, or
        exclusive) in the open unit of work: nothing when the unit holds it already
        (taken with its BEGIN, where every lock of a unit should be: they are taken
        there in one order) or holds the whole ledger's lock exclusively; else taken
        now, the reads sent ahead with the BEGIN forgotten (what the unit reads next is
        read after the lock)."""
        if self._held is None or (name in self._held and (shared or not self._held[name])):
            return
        self._ahead = {}
        self._flush()
        try:
            self._con.execute(*locks_statement([(lock_key(name), shared)]))
        except BaseException:
            self._failed()
            raise
        self._held[name] = shared and self._held.get(name, True)

    def execute(self, sql: str, params=()):
        word = sql.strip().upper()
        if word == "BEGIN IMMEDIATE":
            self.begin(None)
            return _Result(None)
        if word in ("COMMIT", "ROLLBACK"):
            self._end(word)
            return _Result(None)
        if word == "BEGIN":
            # a read transaction (:func:`puhui.claims.ledger.read_only`): one state of the
            # ledger for all its statements, as SQLite's (WAL) read transaction gives;
            # PostgreSQL's default (read committed) would let each statement see what
            # committed since the one before
            self._run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _Result(None)
        if self._writing and _WRITE.match(sql) and "RETURNING" not in word:
            self._ahead = {}
            self._pending.append(("one", *self._named(translate(sql), params)))
            return _Result(None)
        if self._ahead:
            # read with the BEGIN (:meth:`begin`): no write of this unit since
            ahead = self._ahead.pop((translate(sql), tuple(params) if params else None), None)
            if ahead is not None:
                return ahead
            if _WRITE.match(sql):
                self._ahead = {}
        self._flush()
        text, args = self._named(translate(sql), params)
        try:
            with self._con.cursor() as cur:
                cur.execute(text, args)
                return _Result(cur)
        except BaseException:
            self._failed()
            raise

    def _named(self, text: str, params) -> tuple[str, tuple | None]:
        """A translated statement and its parameters, ``wanted`` made the array of
        :attr:`wanted_ids` where it names it (:func:`with_wanted`)."""
        args = tuple(params) if params else None
        if self.wanted_ids is not None and "wanted" in text:
            return with_wanted(text, args, self.wanted_ids)
        return text, args

    def executemany(self, sql: str, rows) -> None:
        rows = list(rows)
        if not rows:
            return
        self._ahead = {}
        text = translate(sql)
        if self.wanted_ids is not None and "wanted" in text:
            # each row reads the few ids as the array, as :meth:`execute` does (there is
            # no temporary table of them; one a larger call left is empty: review s24)
            text, rows = (with_wanted(text, None, self.wanted_ids)[0],
                          [self._named(text, r)[1] for r in rows])
        if self._writing:
            self._pending.append(("many", text, rows))
            return
        try:
            with self._con.cursor() as cur:
                cur.executemany(text, rows)
        except BaseException:
            self._failed()
            raise

    def _flush(self, then: str | None = None) -> None:
        """Send the kept writes (and ``then``, a COMMIT) in one pipeline; a few rows of
        one ``INSERT`` as one statement (:func:`rows_in_one`)."""
        if not self._pending and then is None:
            return
        import psycopg

        pending, self._pending = together(self._pending), []
        try:
            with self._con.pipeline(), self._con.cursor() as cur, \
                    psycopg.RawCursor(self._con) as raw:
                for kind, sql, args in pending:
                    if kind != "many":
                        cur.execute(sql, args)
                        continue
                    for part in parts_of(args):
                        one = rows_in_one(sql, part)
                        if one is not None:
                            raw.execute(numbered(one[0]), one[1])
                        else:
                            cur.executemany(sql, part)
                if then is not None:
                    cur.execute(then)
        except BaseException:
            self._failed()
            raise

    def _end(self, word: str) -> None:
        """``COMMIT`` (with the kept writes, one round trip) or ``ROLLBACK`` (the kept
        writes dropped)."""
        wrote, self._writing = self._writing, False
        self._ahead = {}
        if word == "ROLLBACK":
            self._pending = []
            if wrote:
                self.facts.clear()       # what this transaction taught may be undone
            self._run("ROLLBACK")
            return
        self._flush(then="COMMIT")

    def _failed(self) -> None:
        """After a statement's error: the transaction is void (PostgreSQL refuses
        everything until ``ROLLBACK``; in a pipeline the statements after the error
        were not run, a ``COMMIT`` among them): what was kept or learnt is dropped, and
        an open transaction is rolled back, so the connection is usable again and the
        caller's own ``ROLLBACK`` is harmless."""
        self._pending, self._ahead = [], {}
        self.facts.clear()
        if self._writing or self._con.info.transaction_status != 0:   # 0: idle
            self._writing = False
            try:
                self._con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - a broken connection: the caller sees why
                pass
        if self._con.pgconn.pipeline_status != 0 or self._con.info.transaction_status != 0:
            # not back to idle: a session the server ended while a pipeline's results
            # were read stays "open" in an aborted pipeline it cannot leave ("cannot exit
            # pipeline mode while busy"), and every later statement fails; closed, so
            # :attr:`closed` says so and the caller's pool connects again (review 19:
            # a server thread failed every request, for good)
            self._con.close()

    def _run(self, sql: str) -> None:
        self._ahead = {}
        try:
            self._flush()
            self._con.execute(sql)
        except BaseException:
            self._failed()
            raise

    def executescript(self, script: str) -> None:
        self._run(script)

    def frame(self, sql: str, params=None):
        """``pandas.read_sql_query(sql, con, params=params)`` as on SQLite: the same
        column names and the same inference of types from the rows."""
        import pandas as pd

        self._flush()
        text, args = self._named(translate(sql), params)
        with self._con.cursor() as cur:
            cur.execute(text, args)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols, coerce_float=True)

    def close(self) -> None:
        self._pending = []
        self._con.close()

    @property
    def closed(self) -> bool:
        """The connection is lost (closed, or broken by the server or the network)."""
        return self._con.closed or self._con.broken


#: Up to this many rows of an ``INSERT`` go as one statement (:func:`rows_in_one`): a
#: reversal re-deciding a policy year wrote 170 decisions one statement a row, about
#: half its CPU on both sides (session 24; 16 before)
FEW_ROWS = 256
#: ... and at most this many values (PostgreSQL takes up to 65,535 parameters)
FEW_VALUES = 16384


def parts_of(rows) -> list[list]:
    """``rows`` of one statement cut into parts of at most :data:`FEW_ROWS` rows and
    :data:`FEW_VALUES` values (a row is never cut), in order.

    >>> [len(p) for p in parts_of([(1, 2)] * 600)]
    [256, 256, 88]
    >>> [len(p) for p in parts_of([tuple(range(100))] * 400)]
    [163, 163, 74]
    """
    rows = list(rows)
    width = max(1, len(rows[0]) if rows else 1)
    step = max(1, min(FEW_ROWS, FEW_VALUES // width))
    return [rows[i:i + step] for i in range(0, len(rows), step)]
_VALUES = re.compile(r"^(INSERT INTO \w+(?: \([^)]*\))? VALUES )(\((?:%s, )*%s\))(.*)$", re.S)
_CONFLICT = re.compile(r"^ ON CONFLICT(?: \(([^)]*)\))? DO (NOTHING|UPDATE SET .*)$", re.S)


def held_locks(locks) -> dict[str, bool]:
    """A unit of work's named locks as name -> shared: a name ``"shared:NAME"`` is NAME
    held shared (other shared holders do not wait for it), any other exclusively; a
    name given both ways is held exclusively.

    >>> held_locks(("psn:P1", "shared:g", "g2", "shared:g2"))
    {'psn:P1': False, 'g': True, 'g2': False}
    """
    out: dict[str, bool] = {}
    for name in locks:
        shared = name.startswith("shared:")
        key = name[len("shared:"):] if shared else name
        out[key] = out.get(key, True) and shared
    return out


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``sql``'s ``%s`` placeholders as PostgreSQL's own ``$1``, ``$2``, ... for a
    :class:`psycopg.RawCursor`, converted once a text: psycopg converts a statement of
    more than 50 parameters at every call (its cache leaves those out), and a payout's
    five decisions of eleven columns are one such (about 0.1 ms a payout, session 24).

    >>> numbered("INSERT INTO t VALUES (%s, %s), (%s, '%%')")
    "INSERT INTO t VALUES ($1, $2), ($3, '%')"
    """
    count = iter(range(1, sql.count("%s") + 1))
    return re.sub(r"%[s%]", lambda m: "%" if m.group() == "%%" else f"${next(count)}", sql)


def together(pending: list[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    """Kept writes with a statement repeated one after the other made one ``many`` of
    its rows (so :func:`rows_in_one` sends a few as one statement), in the same order:
    a payout's two audit rows were two statements (session 24).

    >>> together([("one", "A", (1,)), ("one", "A", (2,)), ("many", "A", [(3,)]),
    ...           ("one", "B", None)])
    [('many', 'A', [(1,), (2,), (3,)]), ('one', 'B', None)]
    """
    out: list[tuple[str, str, object]] = []
    for kind, sql, args in pending:
        rows = [args] if kind == "one" else list(args)
        if out and out[-1][1] == sql and args is not None and out[-1][2] is not None:
            out[-1] = ("many", sql, [*(out[-1][2] if out[-1][0] == "many"
                                       else [out[-1][2]]), *rows])
        else:
            out.append((kind, sql, args))
    return out


def locks_statement(keys: list[tuple[int, bool]]) -> tuple[str, tuple]:
    """One ``SELECT`` taking the advisory locks ``keys`` ((key, shared), in the order
    given) in the open transaction: PostgreSQL evaluates a target list from left to
    right, so they are taken in this order, as one statement each took them (a payout
    held five locks: five statements on each side, session 24).

    >>> locks_statement([(7, True), (3, False)])
    ('SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s)', (7, 3))
    """
    calls = ", ".join("pg_advisory_xact_lock_shared(%s)" if shared else
                      "pg_advisory_xact_lock(%s)" for _key, shared in keys)
    return f"SELECT {calls}", tuple(key for key, _shared in keys)


def rows_in_one(sql: str, rows: list) -> tuple[str, tuple] | None:
    """A translated ``INSERT ... VALUES (%s, ...)`` of a few ``rows`` as one statement of
    that many ``VALUES`` (statement, parameters), which PostgreSQL runs as those
    inserts one after the other: a payout's five decisions and its entries were one
    statement a row, each with its own cost on both sides (session 23). None (send
    them one by one) for more than :data:`FEW_ROWS` rows, another statement, or an
    ``ON CONFLICT ... DO UPDATE`` whose rows share a key (one statement may not update
    a row twice; one after the other, the last row wins).

    >>> rows_in_one("INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT DO NOTHING",
    ...             [(1, 2), (3, 4)])
    ('INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s) ON CONFLICT DO NOTHING', (1, 2, 3, 4))
    >>> rows_in_one("INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT (a) DO UPDATE SET "
    ...             "b = excluded.b", [(1, 2), (1, 4)]) is None
    True
    >>> rows_in_one(translate("INSERT INTO accumulators VALUES (?, ?, ?) ON CONFLICT "
    ...             "(policy_no, accumulator) DO UPDATE SET used_fen = excluded.used_fen"),
    ...             [("P", "a", 1), ("P", "b", 2)])[0].split(" ON ")[0]
    'INSERT INTO accumulators VALUES (%s, %s, %s), (%s, %s, %s)'
    """
    if not 1 < len(rows) <= FEW_ROWS:
        return None
    m = _VALUES.match(sql)
    if m is None:
        return None
    head, one, tail = m.groups()
    if tail:
        c = _CONFLICT.match(tail)
        if c is None:
            return None
        if c.group(2) != "NOTHING":
            names = _columns_of(head)
            if c.group(1) is None or names is None:
                return None
            key = [names.index(k.strip()) for k in c.group(1).split(",")]
            if len({tuple(r[i] for i in key) for r in rows}) != len(rows):
                return None
    return (head + ", ".join([one] * len(rows)) + tail,
            tuple(v for r in rows for v in r))


def _columns_of(head: str) -> list[str] | None:
    """The columns an ``INSERT INTO table [(columns)] VALUES`` names, in order (a
    table's own when it names none and the table is known here), else None."""
    m = re.match(r"INSERT INTO (\w+)(?: \(([^)]*)\))?", head)
    if m.group(2) is not None:
        return [x.strip() for x in m.group(2).split(",")]
    every = REPLACE_KEYS.get(m.group(1), (None, _COLUMNS.get(m.group(1))))[1]
    return list(every) if every is not None else None


#: The columns of the tables a payout writes without naming them, beside REPLACE_KEYS'.
_COLUMNS = {"accumulators": ("policy_no", "accumulator", "used_fen")}


#: A statement that writes (deferred inside a unit of work unless it returns rows).
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.I)


def _integral_numeric_loader():
    """A loader of PostgreSQL's ``numeric`` (what ``SUM`` of ``BIGINT`` gives) that
    returns an ``int`` for a whole number, as SQLite's ``SUM`` of integers does, and a
    ``Decimal`` otherwise."""
    from decimal import Decimal

    from psycopg.adapt import Loader

    class IntegralNumericLoader(Loader):
        def load(self, data):
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else Decimal(text)

    return IntegralNumericLoader


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """(``scheme://``, user information, the rest from its ``@``) of a URL that has user
    information: up to the last ``@`` before the query, so that a password holding an
    unencoded ``@`` is all of it. None without any."""
    scheme, sep, rest = url.partition("://")
    at = rest.partition("?")[0].rfind("@")
    if not sep or at < 0:
        return None
    return scheme + sep, rest[:at], rest[at:]


def describe_url(url: str) -> str:
    """The URL without a password, for messages: the user information's password (even
    one holding ``@`` or ``:``) and a ``password=`` query parameter.

    >>> describe_url("postgresql://claims:s3cret@db:5432/ledger")
    'postgresql://claims:***@db:5432/ledger'
    >>> describe_url("postgresql://claims:p@ss:w@db/ledger?sslmode=require&password=x")
    'postgresql://claims:***@db/ledger?sslmode=require&password=***'
    """
    parts = _split_userinfo(url)
    if parts is not None and ":" in parts[1]:
        url = parts[0] + parts[1].partition(":")[0] + ":***" + parts[2]
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def connect(url: str, schema: str, version: str, objects: frozenset[str],
            must_exist: bool, upgrade=None) -> tuple[PgConnection, str | None]:
    """Open the PostgreSQL ledger at ``url``: (connection, schema version found). The
    database is checked before anything is written (one that holds other tables is not
    a ledger and is left alone); its tables are made under the write lock, so two
    batches starting together on a new database do not race. ``upgrade(con, found)``
    brings an older ledger's tables to ``version`` in the same transaction."""
    import psycopg

    parts = _split_userinfo(url)
    if parts is not None and "@" in parts[1]:      # libpq would split at the first one
        raise InputError(f"ledger {describe_url(url)}: the user or password holds '@'; "
                         f"write it percent-encoded (@ as %40, : as %3A, / as %2F)")
    try:
        con = PgConnection(url)
    except psycopg.Error as exc:
        raise InputError(f"ledger {describe_url(url)}: cannot connect ({str(exc).strip()}). "
                         f"Check the host, port, user and database, and that the server "
                         f"runs") from None
    try:
        found = _schema_version(con)
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema()")}
        # foreign: other tables beside no version: no meta, or a meta table of another
        # application without puhui's row (a ledger's tables and its version row are
        # made in one transaction here, so a ledger being made is never seen half-way)
        foreign = not found and bool(tables - objects)
        if foreign or (must_exist and found is None):
            raise InputError(f"ledger {describe_url(url)}: not a puhui ledger ("
                             f"{'a database holding other tables' if foreign else 'an empty database'}"
                             f"); give the ledger the batches were run into")
        if found and found.isdigit() and int(found) > int(version):
            raise InputError(f"ledger {describe_url(url)}: schema version {found} is newer "
                             f"than this puhui understands ({version}); upgrade puhui")
        if found == version:           # made already: no lock, no statement (a ledger's
            return con, found          # connection must not wait behind payouts)
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executescript(pg_schema(schema))
            if upgrade is not None:
                upgrade(con, _schema_version(con))      # read again under the lock
            con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO "
                        "UPDATE SET value = excluded.value", (version,))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    except InputError:
        con.close()
        raise
    except psycopg.Error as exc:
        con.close()
        raise InputError(f"ledger {describe_url(url)}: not a usable ledger database "
                         f"({str(exc).strip()})") from None
    return con, found


def _schema_version(con: PgConnection) -> str | None:
    has = con.execute("SELECT to_regclass('meta')").fetchone()[0]
    if not has:
        return None
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else ""
