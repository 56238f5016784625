"""The payout ledger: an embedded SQLite database (WAL, foreign keys).

What it holds
-------------
``policies``      the policies loaded from fund data
``batches``       one row per batch run (mode, product and data hashes, status, and
                  ``as_of``: the business date the batch is effective for, schema 6;
                  NULL for the standing batches of direct payouts and reversals)
``payments``      signed payment entries: every payout, reversal and adjustment. The net
                  paid for a settlement's benefit is the sum of its entries
                  (``applies_to`` = the settlement the money is for; a reversal's entry
                  has the reversal's ``setl_id`` and applies to the original);
                  ``business_date``: the date the entry is effective for (its batch's
                  ``as_of``; a direct payout's or reversal's settlement date), apart
                  from ``recorded_at``, when it was written (schema 6)
``decisions``     the current decision (target payout, reason) per settlement and benefit
``accumulators``  running deductible and limit use per policy and accumulator
``settlements``   the inputs of every settlement the ledger decided with something
                  eligible (the calculator's fields, dated), and ``settlement_lines``
                  the lines of those settlements on one of the product's lists: a batch
                  whose data does not hold a settlement the ledger knows adjudicates it
                  from here (a partial extract, a direct payout not yet in the data)
``reversals``     the reversals batches applied (a later extract holding an original
                  without its reversal keeps it reversed)
``recoveries``    signed entries of refunds due to the product under drug agreements
                  (per batch, agreement, patient and quarter; the amount due is the sum)
``holds``         settlements a batch's fraud or quality flags held for review: the
                  code, the batch and when; a release (who, when, why) lets the next
                  batch or reversal pay them (schema 4)
``settlement_dates`` the date of every settlement the ledger stored, kept when the
                  stored settlement is forgotten (reversed, taken back): the origin
                  period of its payments in a triangle (schema 6)
``co_insurers``   a co-insured product's insurers and quota shares (basis points, the
                  lead), as its first split payment registered them (schema 7)
``payment_shares`` each insurer's share (fen) of every payment entry of a co-insured
                  product: the shares of an entry add up to it (schema 7)
``claim_filings`` the date each claim was filed, per settlement and product, from a
                  claimed batch's claims file with a ``filed_date`` column; the first
                  filing recorded is kept (schema 8)
``audit``         append-only log: who ran what, with which product and data hashes, when

Unique keys make replays harmless: a batch writes at most one entry per
(batch, settlement, benefit). Callers use the functions here, never SQL, so a
PostgreSQL URL can be added behind the same functions.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from puhui.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    policy_no TEXT PRIMARY KEY, psn_no TEXT NOT NULL, product_id TEXT NOT NULL,
    start_date TEXT NOT NULL, end_date TEXT NOT NULL, premium_fen INTEGER NOT NULL,
    preexisting INTEGER NOT NULL, consent INTEGER NOT NULL,
    claim_free_years INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS policies_psn ON policies (psn_no);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, mode TEXT NOT NULL, product_id TEXT NOT NULL,
    product_hash TEXT NOT NULL, data_hash TEXT NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT, status TEXT NOT NULL, as_of TEXT);
CREATE TABLE IF NOT EXISTS payments (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    setl_id TEXT NOT NULL, applies_to TEXT NOT NULL, benefit TEXT NOT NULL,
    psn_no TEXT NOT NULL, policy_no TEXT, payout_fen INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pay', 'adjust', 'reverse')),
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), recorded_at TEXT NOT NULL,
    business_date TEXT NOT NULL, UNIQUE (batch_id, applies_to, benefit));
CREATE INDEX IF NOT EXISTS payments_psn ON payments (psn_no);
CREATE INDEX IF NOT EXISTS payments_applies ON payments (applies_to, benefit);
CREATE TABLE IF NOT EXISTS decisions (
    setl_id TEXT NOT NULL, benefit TEXT NOT NULL, psn_no TEXT NOT NULL, policy_no TEXT,
    eligible_fen INTEGER NOT NULL, deductible_fen INTEGER NOT NULL,
    ratio_bp INTEGER NOT NULL, payout_fen INTEGER NOT NULL, reason TEXT NOT NULL,
    batch_id TEXT NOT NULL, product_id TEXT NOT NULL,
    PRIMARY KEY (setl_id, product_id, benefit));
CREATE INDEX IF NOT EXISTS decisions_psn ON decisions (psn_no);
CREATE TABLE IF NOT EXISTS accumulators (
    policy_no TEXT NOT NULL REFERENCES policies (policy_no), accumulator TEXT NOT NULL,
    used_fen INTEGER NOT NULL, PRIMARY KEY (policy_no, accumulator));
CREATE TABLE IF NOT EXISTS settlements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, setl_id TEXT NOT NULL UNIQUE,
    psn_no TEXT NOT NULL, setl_date TEXT NOT NULL, med_type TEXT NOT NULL,
    hosp_lv INTEGER NOT NULL, insutype TEXT NOT NULL, psn_part_fen INTEGER NOT NULL,
    fulamt_ownpay_fen INTEGER NOT NULL, overlmt_selfpay_fen INTEGER NOT NULL,
    source TEXT NOT NULL, digest TEXT);
CREATE INDEX IF NOT EXISTS settlements_psn ON settlements (psn_no);
CREATE INDEX IF NOT EXISTS settlements_date ON settlements (setl_date);
CREATE TABLE IF NOT EXISTS settlement_lines (
    setl_id TEXT NOT NULL, hilist_code TEXT NOT NULL, list_class TEXT NOT NULL,
    amount_fen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS settlement_lines_setl ON settlement_lines (setl_id);
CREATE TABLE IF NOT EXISTS reversals (
    setl_id TEXT PRIMARY KEY, refund_of TEXT NOT NULL UNIQUE, psn_no TEXT NOT NULL,
    batch_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reversals_psn ON reversals (psn_no);
CREATE TABLE IF NOT EXISTS recoveries (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), agreement TEXT NOT NULL,
    psn_no TEXT NOT NULL, quarter TEXT NOT NULL, outcome TEXT NOT NULL,
    refund_fen INTEGER NOT NULL, recorded_at TEXT NOT NULL,
    UNIQUE (batch_id, agreement, psn_no, quarter));
CREATE INDEX IF NOT EXISTS recoveries_key ON recoveries (agreement, psn_no, quarter);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, who TEXT NOT NULL,
    command TEXT NOT NULL, batch_id TEXT, product_hash TEXT, data_hash TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL
    CHECK (scope IN ('settle', 'read')), secret_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS idempotency (
    idem_key TEXT NOT NULL, key_id TEXT NOT NULL, endpoint TEXT NOT NULL,
    body_sha256 TEXT NOT NULL, status INTEGER NOT NULL, response TEXT NOT NULL,
    recorded_at TEXT NOT NULL, PRIMARY KEY (key_id, idem_key));
CREATE TABLE IF NOT EXISTS holds (
    setl_id TEXT PRIMARY KEY, psn_no TEXT NOT NULL, reason TEXT NOT NULL,
    batch_id TEXT NOT NULL, held_at TEXT NOT NULL, released_at TEXT, released_by TEXT,
    release_reason TEXT);
CREATE INDEX IF NOT EXISTS holds_psn ON holds (psn_no);
CREATE TABLE IF NOT EXISTS settlement_dates (
    setl_id TEXT PRIMARY KEY, setl_date TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS co_insurers (
    product_id TEXT NOT NULL, insurer_id TEXT NOT NULL, name TEXT NOT NULL,
    share_bp INTEGER NOT NULL, lead INTEGER NOT NULL, registered_at TEXT NOT NULL,
    PRIMARY KEY (product_id, insurer_id));
CREATE TABLE IF NOT EXISTS payment_shares (
    entry_id INTEGER NOT NULL REFERENCES payments (entry_id), insurer_id TEXT NOT NULL,
    share_fen INTEGER NOT NULL, PRIMARY KEY (entry_id, insurer_id));
CREATE TABLE IF NOT EXISTS claim_filings (
    setl_id TEXT NOT NULL, product_id TEXT NOT NULL, filed_date TEXT NOT NULL,
    batch_id TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (setl_id, product_id));
"""
#: 3 (session 18): ``api_keys`` and ``idempotency`` for the service (``puhui serve``);
#: a version-2 ledger gains them (empty) when opened.
#: 4 (session 21): ``holds``, the settlements a batch's fraud and quality flags hold for
#: review (reason code, batch, when; released by ``puhui claims release``); a version-3
#: ledger gains the table (empty: its earlier batches' holds were not recorded) when
#: opened, as every command opens it.
#: 5 (session 22): ``decisions`` are kept per product (``product_id``, in the key): two
#: products deciding one settlement under benefits of the same name (Huhuibao's and the
#: elderly cover's ``special_drugs``) overwrote each other's row, so the first product's
#: deductible use of it counted 0. A version-4 (or older) ledger's decisions are copied
#: into the new table when it is opened (:data:`DECISIONS_V5`), each under the product
#: of its policy, else of its batch.
#: 6 (session 22, after the decisions of 5): business dates. ``batches.as_of`` (the date a
#: batch is effective for), ``payments.business_date`` (the date an entry is effective
#: for) and ``settlement_dates`` (every stored settlement's date, kept when the stored
#: settlement is forgotten); an older ledger gains them when opened
#: (:func:`_add_business_dates` says how they are filled).
#: 7 (session 23): co-insurance. ``co_insurers``: the co-insuring group a product's
#: payments were split with (registered at its first split payment; a product file
#: naming another split later is refused), ``payment_shares``: every insurer's share of
#: each payment entry of such a product, in fen (:mod:`puhui.claims.shares` says how;
#: :func:`record_entries` writes them). An older ledger gains the two tables, empty,
#: when opened: nothing it recorded is split then (no product file could name
#: co-insurers before schema 7, so each of its payments was one insurer's whole, and
#: opening a ledger takes no product file); a product's earlier entries are split when
#: its first payment with co-insurers is recorded (:func:`_register_co_insurers`), so
#: a product year is split whole, with the quotas of the file that first split it.
#: 8 (session 23, after the co-insurance of 7): filing dates. ``claim_filings``: the date
#: each claim was filed, per settlement and product (the key), written by a claimed
#: batch whose claims file has a ``filed_date`` column (:func:`record_filings`: the first
#: filing recorded is kept; a later file giving another date is counted, not written);
#: ``puhui reserve --triangle reported`` reads it. An older ledger gains the table,
#: empty, when opened: it never held filing dates, and none can be made up.
SCHEMA_VERSION = "8"
#: The upgrade of ``decisions`` to schema 5 (both backends; run once, after
#: :data:`SCHEMA`, inside the opening transaction). The old table is renamed and dropped
#: after the copy; its index is remade on the new one.
DECISIONS_V5 = """
ALTER TABLE decisions RENAME TO decisions_v4;
DROP INDEX IF EXISTS decisions_psn;
CREATE TABLE decisions (
    setl_id TEXT NOT NULL, benefit TEXT NOT NULL, psn_no TEXT NOT NULL, policy_no TEXT,
    eligible_fen INTEGER NOT NULL, deductible_fen INTEGER NOT NULL,
    ratio_bp INTEGER NOT NULL, payout_fen INTEGER NOT NULL, reason TEXT NOT NULL,
    batch_id TEXT NOT NULL, product_id TEXT NOT NULL,
    PRIMARY KEY (setl_id, product_id, benefit));
INSERT INTO decisions SELECT d.setl_id, d.benefit, d.psn_no, d.policy_no, d.eligible_fen,
    d.deductible_fen, d.ratio_bp, d.payout_fen, d.reason, d.batch_id,
    COALESCE((SELECT p.product_id FROM policies p WHERE p.policy_no = d.policy_no),
             (SELECT b.product_id FROM batches b WHERE b.batch_id = d.batch_id), '')
    FROM decisions_v4 d;
DROP TABLE decisions_v4;
CREATE INDEX decisions_psn ON decisions (psn_no);
"""
#: Columns of a stored settlement, in the calculator's names and units (fen).
STORED = ("setl_id", "psn_no", "setl_time", "med_type", "hosp_lv", "insutype",
          "psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay")


def is_postgres(url: str) -> bool:
    """A PostgreSQL ledger's URL (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The ledger's URL as messages show it: a PostgreSQL password masked.

    >>> shown_url("postgresql://claims:s3cret@db:5432/ledger")
    'postgresql://claims:***@db:5432/ledger'
    """
    if is_postgres(url):
        from puhui.claims.ledger_pg import describe_url

        return describe_url(url)
    return url


def sqlite_path(url: str) -> Path:
    """``sqlite:///path/to/ledger.db`` (or a plain path) to a file path."""
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    if "://" in path:
        raise InputError(f"ledger URL {url!r}: give sqlite:///PATH (or a file path) or "
                         f"postgresql://USER@HOST:PORT/DATABASE")
    if not path.strip() or path.strip() == ":memory:" or "?" in path:
        raise InputError(f"ledger URL {url!r}: give the path of a ledger file (an in-memory "
                         f"ledger would forget what it paid; URL options are not taken)")
    return Path(path)


def absolute_url(url: str) -> str:
    """The ledger's URL naming its file by absolute path (for a process whose working
    folder is another: a Dask worker).

    >>> absolute_url("sqlite:////data/ledger.db")
    'sqlite:////data/ledger.db'
    """
    if is_postgres(url):
        return url
    return "sqlite:///" + str(sqlite_path(url).resolve())


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def _frame(sql: str, con, params=None):
    """``pandas.read_sql_query`` on either backend (a PostgreSQL connection builds the
    frame itself the same way: pandas takes only sqlite3 or SQLAlchemy connections)."""
    import pandas as pd

    if isinstance(con, sqlite3.Connection):
        return pd.read_sql_query(sql, con, params=params)
    return con.frame(sql, params)


def connect(url: str, must_exist: bool = False) -> sqlite3.Connection:
    """Open a ledger, creating it unless ``must_exist`` (commands that only read, or
    that pay against policies already loaded, refuse a ledger that is not there: a
    mistyped path must not read as an empty ledger). Autocommit off; use
    :func:`unit_of_work`."""
    if is_postgres(url):
        from puhui.claims import ledger_pg

        con, version = ledger_pg.connect(url, SCHEMA, SCHEMA_VERSION, LEDGER_OBJECTS,
                                         must_exist, upgrade=_upgrade)
        return con
    path = sqlite_path(url)
    if path.is_dir():
        raise InputError(f"ledger {path}: is a folder; give the ledger's file "
                         f"(sqlite:///PATH/ledger.db)")
    if must_exist and not path.is_file():
        raise InputError(f"ledger {path}: no such ledger. Check the path, or create the "
                         f"ledger with 'puhui ledger load' or a 'puhui claims run'")
    con, version = _open_retrying(path, must_exist)
    try:
        _set_up(con, version)
    except sqlite3.OperationalError as exc:
        con.close()
        if "locked" not in str(exc):
            raise
        # review s22: "internal error ... please report it", exit 1
        raise InputError(f"ledger {path}: busy - another process held its write lock for "
                         f"over {BUSY_SECONDS:.0f} s (a batch's block, or the upgrade of a "
                         f"large older ledger when this puhui first opens it: a minute or "
                         f"two per 2 million decisions); run the command again when it is "
                         f"done") from None
    return con


def _set_up(con: sqlite3.Connection, version: str | None) -> None:
    """An opened SQLite ledger's upgrades and version row, in one unit of work."""
    with unit_of_work(con):
        if version == "1":     # the reversals a version-1 ledger applied, from its entries
            con.execute("INSERT OR IGNORE INTO reversals SELECT setl_id, MAX(applies_to),"
                        " MAX(psn_no), MAX(batch_id) FROM payments WHERE kind = 'reverse'"
                        " GROUP BY setl_id")
        _upgrade(con, _schema_version(con))    # read again under the write lock
        con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO "
                    "UPDATE SET value = excluded.value", (SCHEMA_VERSION,))


def _upgrade(con, version: str | None) -> None:
    """Bring an older ledger's tables to this schema, inside the opening transaction
    (after :data:`SCHEMA` made the tables it lacked): a ledger of version 4 or before
    (or of no version) whose decisions lack ``product_id`` gets :data:`DECISIONS_V5`
    (chosen by the table's shape: review s22), one before 6 the business dates
    (:func:`_add_business_dates`). Schema 7's tables (``co_insurers``,
    ``payment_shares``) are made empty by :data:`SCHEMA`; nothing is split here (a
    product's earlier entries are split at its first split entry:
    :func:`_register_co_insurers`). Schema 8's ``claim_filings`` is made empty by
    :data:`SCHEMA` too (an older ledger kept no filing dates). Statement by statement (``executescript`` would
    commit the transaction first)."""
    if not _decisions_per_product(con):
        _decisions_v5(con)
    _add_business_dates(con)


def _decisions_v5(con) -> None:
    """:data:`DECISIONS_V5` on either backend."""
    script = DECISIONS_V5
    if not isinstance(con, sqlite3.Connection):
        from puhui.claims.ledger_pg import pg_schema

        script = pg_schema(script)
    for statement in script.split(";"):
        if statement.strip():
            con.execute(statement)


def _columns(con, table: str) -> set[str]:
    """The columns of a ledger table, on either backend."""
    if isinstance(con, sqlite3.Connection):
        return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = ?", (table,))}


def _add_business_dates(con) -> None:
    """Schema 6 on a ledger written before it (inside the unit of work that opens it;
    nothing to do where the columns are there). What the old ledger has fills them:

    - ``settlement_dates``: the dates of the settlements it still stores (one it
      forgot, reversed or taken back, has none: its payments, which net to what was
      taken back, have no origin in a triangle, and ``puhui reserve`` counts them);
    - ``batches.as_of`` of a batch (not the standing batches of direct payouts and
      reversals): the latest settlement date its entries apply to, else the day it
      started (UTC);
    - ``payments.business_date``: the batch's ``as_of``; a direct payout's own
      settlement date where the ledger still stores the settlement; else (a reversal
      answered at once, a direct payout since reversed) the day it was recorded."""
    if "business_date" in _columns(con, "payments"):
        return
    con.execute("INSERT INTO settlement_dates SELECT setl_id, setl_date FROM settlements"
                " WHERE true ON CONFLICT (setl_id) DO NOTHING")
    if "as_of" not in _columns(con, "batches"):
        con.execute("ALTER TABLE batches ADD COLUMN as_of TEXT")
    con.execute("UPDATE batches SET as_of = COALESCE((SELECT MAX(d.setl_date) FROM payments p"
                " JOIN settlement_dates d ON d.setl_id = p.applies_to WHERE p.batch_id ="
                " batches.batch_id), substr(started_at, 1, 10)) WHERE status != 'open'")
    con.execute("ALTER TABLE payments ADD COLUMN business_date TEXT NOT NULL DEFAULT ''")
    con.execute("UPDATE payments SET business_date = COALESCE((SELECT b.as_of FROM batches b"
                " WHERE b.batch_id = payments.batch_id), (SELECT d.setl_date FROM"
                " settlement_dates d WHERE d.setl_id = payments.setl_id AND"
                " (payments.batch_id = ? OR payments.batch_id LIKE ?)),"
                " substr(recorded_at, 1, 10))", (DIRECT_BATCH, DIRECT_BATCH + ":%"))


def _decisions_per_product(con) -> bool:
    """Whether the ledger's ``decisions`` table has schema 5's ``product_id`` (review s22:
    a version-4 ledger whose version row was never written - an older puhui killed in
    its first opening - was marked 5 without its decisions upgraded, and every decision
    then failed)."""
    return "product_id" in _columns(con, "decisions")


class _Locked(Exception):
    """Another process holds the new ledger's lock while it creates it."""


#: How long a SQLite ledger's statement waits for the write lock another process holds.
BUSY_SECONDS = 60.0
#: How long :func:`connect` keeps trying a ledger another process is creating (SQLite
#: answers "database is locked" at once, without its busy handler, when two connections
#: both holding a read lock need a write lock to set up the file).
OPEN_RETRY_SECONDS = 60.0


#: The tables and indexes of :data:`SCHEMA` (any version of it).
LEDGER_OBJECTS = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))


def _open_retrying(path: Path, must_exist: bool):
    """:func:`_open`, again after a short random pause while another process holds the
    lock of a ledger it is creating (two batches started together on a new ledger)."""
    import random
    import time

    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    while True:
        try:
            return _open(path, must_exist)
        except _Locked:
            if time.monotonic() > deadline:
                raise InputError(f"ledger {path}: not a usable ledger database (database "
                                 f"is locked for over {OPEN_RETRY_SECONDS:.0f} s by another "
                                 f"process)") from None
            time.sleep(random.uniform(0.02, 0.2))


def _open(path: Path, must_exist: bool):
    """Open ``path`` as a ledger (checked before anything is written), set its pragmas
    and make sure its tables exist; (connection, schema version found)."""
    con = None
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(path), timeout=BUSY_SECONDS, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
        # before anything is written: a database that is not a ledger is left as it is
        version = _schema_version(con)
        # foreign: it holds something a ledger does not (read once: a ledger another
        # process is creating right now holds only a ledger's tables, whenever it is read)
        # (a `meta` table without puhui's version row is another application's, unless
        # nothing but a ledger's tables is there: review 20, as on PostgreSQL)
        foreign = not version and any(
            not name.startswith("sqlite_") and name not in LEDGER_OBJECTS
            for (name,) in con.execute("SELECT name FROM sqlite_master"))
        if foreign or (must_exist and version is None):
            con.close()
            raise InputError(f"ledger {path}: not a puhui ledger ("
                             f"{'another database' if foreign else 'an empty file'}); give "
                             f"the ledger the batches were run into")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=FULL")
        # indexes keyed by settlement id take inserts all over their B-trees: a page cache
        # of 128 MB (SQLite's default is 2 MB) keeps a batch of millions from reading
        # back the pages it just wrote
        con.execute("PRAGMA cache_size=-131072")
        if version and int(version) > int(SCHEMA_VERSION):
            con.close()
            raise InputError(f"ledger {path}: schema version {version} is newer than this "
                             f"puhui understands ({SCHEMA_VERSION}); upgrade puhui")
        con.executescript(SCHEMA)
    except sqlite3.OperationalError as exc:
        if con is not None:
            con.close()
        if "locked" in str(exc):
            raise _Locked() from None
        raise InputError(f"ledger {path}: not a usable ledger database ({exc})") from None
    except (sqlite3.DatabaseError, OSError) as exc:
        if con is not None:
            con.close()
        raise InputError(f"ledger {path}: not a usable ledger database ({exc})") from None
    return con, version


def _schema_version(con: sqlite3.Connection) -> str | None:
    has = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
    if not has:
        return None
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else ""          # a ledger another process is creating


@contextmanager
def unit_of_work(con: sqlite3.Connection, locks: tuple[str, ...] | None = None,
                 reads=()):
    """One transaction that holds its write locks from the start, so concurrent writers
    queue instead of losing an update.

    ``locks=None`` locks the whole ledger (a batch's block: its people's payments,
    accumulators and stored settlements, read before and checked inside). ``locks`` as
    names (``"psn:P1"``, ``"setl:S1"``, ...) locks only those on PostgreSQL, beside
    every other such unit of work and never beside a whole-ledger one: two direct
    payouts for different people run at once, two for one person queue (issue 20,
    point 3). SQLite has one write lock: every unit of work takes it (``BEGIN
    IMMEDIATE``).

    ``reads``: (statement, parameters) of reads the unit will make before it writes
    (the ``*_query`` functions here); on PostgreSQL with named locks they are sent with
    the BEGIN and the locks, one round trip for all (:meth:`PgConnection.begin`); the
    unit's own calls are answered from them. Elsewhere ignored."""
    if locks is not None and not isinstance(con, sqlite3.Connection):
        con.begin(locks, reads)
    else:
        con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


@contextmanager
def read_only(con):
    """One read transaction (no write lock): what a pre-settlement reads is one state of
    the ledger; nothing is written (rolled back whatever happens)."""
    con.execute("BEGIN")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")


def audit(con: sqlite3.Connection, command: str, batch_id: str | None = None,
          product_hash: str | None = None, data_hash: str | None = None,
          who: str | None = None, **detail) -> None:
    """Append to the audit log (call inside a unit of work). ``who``: the operating
    system's user where not given (the service gives the API key's name)."""
    if who is None:
        who = _os_user()
    con.execute("INSERT INTO audit (at, who, command, batch_id, product_hash, data_hash, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now(), who, command, batch_id, product_hash, data_hash,
                 json.dumps(detail, sort_keys=True, default=str)))


@functools.lru_cache(maxsize=1)
def _os_user() -> str:
    """The operating system's user running this process, asked once (``getpass`` reads
    the password file each time when no variable names the user: about 40 us a payout)."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def upsert_policies(con: sqlite3.Connection, policies) -> int:
    """Load policies (engine types). Existing policy numbers are updated."""
    import numpy as np

    n = len(policies)
    cfy = (policies["claim_free_years"].fillna(0).to_numpy(dtype="int64")
           if "claim_free_years" in policies.columns else np.zeros(n, dtype="int64"))
    # column by column (vectorised), then zipped: a row-by-row build was most of the time
    rows = list(zip(
        policies["policy_no"].astype(str).tolist(), policies["psn_no"].astype(str).tolist(),
        policies["product_id"].astype(str).tolist(),
        policies["start_date"].dt.strftime("%Y-%m-%d").tolist(),
        policies["end_date"].dt.strftime("%Y-%m-%d").tolist(),
        policies["premium"].to_numpy(dtype="int64").tolist(),
        policies["preexisting"].astype(bool).to_numpy().astype(int).tolist(),
        policies["consent"].astype(bool).to_numpy().astype(int).tolist(), cfy.tolist()))
    con.executemany(
        "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (policy_no) DO "
        "UPDATE SET psn_no=excluded.psn_no, product_id=excluded.product_id, "
        "start_date=excluded.start_date, end_date=excluded.end_date, "
        "premium_fen=excluded.premium_fen, preexisting=excluded.preexisting, "
        "consent=excluded.consent, claim_free_years=excluded.claim_free_years", rows)
    return len(rows)


def policy_periods(con: sqlite3.Connection):
    """Every policy the ledger holds: policy_no, psn_no, product_id, start_date,
    end_date (dates as timestamps), for working out renewals across products."""
    import pandas as pd

    df = _frame("SELECT policy_no, psn_no, product_id, start_date, end_date"
                           " FROM policies", con)
    for c in ("start_date", "end_date"):
        df[c] = pd.to_datetime(df[c], format="%Y-%m-%d")
    return df


def policies_of(con: sqlite3.Connection, psn_no: str, product_id: str | None) -> list[dict]:
    """A person's policies of ``product_id`` (of every product where None)."""
    cur = con.execute(*policies_query(psn_no, product_id))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def policies_query(psn_no: str, product_id: str | None) -> tuple[str, tuple]:
    """The read of :func:`policies_of` (for :func:`unit_of_work`'s ``reads``)."""
    return ("SELECT policy_no, psn_no, product_id, start_date, end_date, premium_fen,"
            " preexisting, consent, claim_free_years FROM policies"
            " WHERE psn_no = ? AND product_id = COALESCE(?, product_id)", (psn_no, product_id))


def has_policies(con: sqlite3.Connection, product_id: str) -> bool:
    if _known(con, ("policies", product_id)):
        return True
    found = con.execute("SELECT 1 FROM policies WHERE product_id = ? LIMIT 1",
                        (product_id,)).fetchone() is not None
    if found:
        _learn(con, ("policies", product_id))
    return found


def _known(con, fact: tuple) -> bool:
    """Whether the connection remembers ``fact``: something about the ledger that never
    becomes false once committed (a product has policies, a standing batch exists; the
    ledger deletes neither), so a long-lived connection (the service's) asks once, not
    for every payout. Only PostgreSQL connections remember (:class:`PgConnection`
    ``facts``, forgotten on a rollback, which may undo what was learnt); on SQLite every
    statement is a local call."""
    facts = getattr(con, "facts", None)
    return facts is not None and fact in facts


def _learn(con, fact: tuple) -> None:
    facts = getattr(con, "facts", None)
    if facts is not None:
        facts.add(fact)


def accumulators_of(con: sqlite3.Connection, policy_no: str) -> dict[str, int]:
    return dict(con.execute("SELECT accumulator, used_fen FROM accumulators WHERE policy_no = ?",
                            (policy_no,)).fetchall())


def accumulators_of_person(con, psn_no: str) -> dict[str, dict[str, int]]:
    """Policy -> :func:`accumulators_of` for every policy of the person that has some
    (one read, which :func:`unit_of_work` can send with its locks: the policy a payout
    needs is known only after its policies are read)."""
    out: dict[str, dict[str, int]] = {}
    for pol, name, used in con.execute(*accumulators_of_person_query(psn_no)).fetchall():
        out.setdefault(pol, {})[name] = used
    return out


def accumulators_of_person_query(psn_no: str) -> tuple[str, tuple]:
    return ("SELECT a.policy_no, a.accumulator, a.used_fen FROM accumulators a JOIN policies"
            " p ON p.policy_no = a.policy_no WHERE p.psn_no = ?", (psn_no,))


def start_batch(con: sqlite3.Connection, batch_id: str, mode: str, product_id: str,
                product_hash: str, data_hash: str) -> bool:
    """Record a batch as running; True when it ran before with the same inputs (a
    resumed run). A batch id reused with other inputs is refused."""
    row = con.execute("SELECT product_hash, data_hash, mode FROM batches WHERE batch_id = ?",
                      (batch_id,)).fetchone()
    if row is not None and tuple(row) != (product_hash, data_hash, mode):
        raise InputError(f"batch {batch_id!r} already ran with other inputs (product, "
                         f"data or mode differ); give a new batch id")
    if row is None:
        con.execute("INSERT INTO batches (batch_id, mode, product_id, product_hash,"
                    " data_hash, started_at, finished_at, status) VALUES"
                    " (?, ?, ?, ?, ?, ?, NULL, 'running')",
                    (batch_id, mode, product_id, product_hash, data_hash, now()))
    return row is not None


def keep_business_date(con, batch_id: str, as_of: str) -> str:
    """A started batch's business date (ISO): the one it has (a resumed run keeps the
    date its first run wrote its entries with; a batch of a ledger upgraded to schema 6
    has the one the upgrade gave it), else ``as_of``, recorded now."""
    row = con.execute("SELECT as_of FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    if row is not None and row[0] is not None:
        return str(row[0])
    con.execute("UPDATE batches SET as_of = ? WHERE batch_id = ?", (as_of, batch_id))
    return as_of


def ensure_open_batch(con: sqlite3.Connection, batch_id: str, mode: str, product_id: str) -> None:
    """A standing batch (direct payouts record into one)."""
    if _known(con, ("batch", batch_id)):
        return
    con.execute("INSERT OR IGNORE INTO batches (batch_id, mode, product_id, product_hash,"
                " data_hash, started_at, finished_at, status) VALUES"
                " (?, ?, ?, '', '', ?, NULL, 'open')", (batch_id, mode, product_id, now()))
    _learn(con, ("batch", batch_id))


def finish_batch(con: sqlite3.Connection, batch_id: str) -> int:
    """Mark a batch done; returns how many entries it holds."""
    con.execute("UPDATE batches SET finished_at = ?, status = 'done' WHERE batch_id = ?",
                (now(), batch_id))
    return int(con.execute("SELECT COUNT(*) FROM payments WHERE batch_id = ?",
                           (batch_id,)).fetchone()[0])


def claim_free_history(con: sqlite3.Connection, exclude_batch: str | None = None
                       ) -> tuple[dict[str, int], set[str]]:
    """What claim-free years are derived from (:mod:`puhui.benefits.claim_free`): net paid
    per policy, and the policies whose outcome is known (their product has a finished
    batch). ``exclude_batch``'s own entries are left out, so a batch that is killed and
    re-run derives the same counts as one that ran through."""
    paid = dict(con.execute(
        "SELECT policy_no, SUM(payout_fen) FROM payments WHERE policy_no IS NOT NULL"
        " AND batch_id IS NOT ? GROUP BY policy_no", (exclude_batch,)).fetchall())
    known = {r[0] for r in con.execute(
        "SELECT policy_no FROM policies WHERE product_id IN"
        " (SELECT product_id FROM batches WHERE status = 'done' AND batch_id IS NOT ?)",
        (exclude_batch,))}
    return paid, known


def paid_between(con: sqlite3.Connection, lo: str, hi: str, product_id: str):
    """Net paid per (settlement, benefit) under ``product_id``'s policies for the people
    with ``lo <= psn_no <= hi``: columns applies_to, benefit, paid, paid_psn,
    paid_policy, by_direct (1 when a direct payout paid some of it). Only the product's own payments: a batch of one product never adjusts
    what another product's policies paid (a 2024 batch over data that still holds 2023
    settlements leaves the 2023 payouts alone)."""
    return _frame(
        "SELECT applies_to, benefit, SUM(payout_fen) AS paid, MAX(psn_no) AS paid_psn,"
        " MAX(policy_no) AS paid_policy, MAX(CASE WHEN batch_id IN (?, ?) THEN 1"
        " ELSE 0 END) AS by_direct"
        " FROM payments WHERE psn_no BETWEEN ? AND ?"
        " AND EXISTS (SELECT 1 FROM policies p WHERE p.policy_no = payments.policy_no"
        " AND p.product_id = ?)"       # by the policy's key: not a scan of every policy
        " GROUP BY applies_to, benefit", con,
        params=[DIRECT_BATCH, direct_batch(product_id), lo, hi, product_id])


def paid_for_benefits(con: sqlite3.Connection, product_id: str, benefits: list[str]):
    """Net paid per (settlement, benefit) of ``benefits`` under ``product_id``'s
    policies: applies_to, benefit, paid, paid_psn."""
    marks = ", ".join("?" * len(benefits))
    return _frame(
        "SELECT applies_to, benefit, SUM(payout_fen) AS paid, MAX(psn_no) AS paid_psn"
        f" FROM payments WHERE benefit IN ({marks}) AND policy_no IN"
        " (SELECT policy_no FROM policies WHERE product_id = ?)"
        " GROUP BY applies_to, benefit", con, params=[*benefits, product_id])


def booked_recoveries(con: sqlite3.Connection, agreements: list[str]):
    """What is booked per (agreement, psn_no, quarter): booked_fen."""
    marks = ", ".join("?" * len(agreements))
    return _frame(
        "SELECT agreement, psn_no, quarter, SUM(refund_fen) AS booked_fen FROM recoveries"
        f" WHERE agreement IN ({marks}) GROUP BY agreement, psn_no, quarter", con,
        params=list(agreements))


def record_recoveries(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """Recovery entries (batch_id, agreement, psn_no, quarter, outcome, refund_fen,
    recorded_at); one per batch, agreement, patient and quarter (a replay adds nothing)."""
    con.executemany("INSERT OR IGNORE INTO recoveries (batch_id, agreement, psn_no, quarter,"
                    " outcome, refund_fen, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def batch_entries_between(con: sqlite3.Connection, batch_id: str, lo: str, hi: str):
    """A batch's entries for the people with ``lo <= psn_no <= hi``."""
    return _frame(
        "SELECT setl_id, applies_to, benefit, payout_fen, kind FROM payments"
        " WHERE batch_id = ? AND psn_no BETWEEN ? AND ?", con, params=[batch_id, lo, hi])


def record_entries(con: sqlite3.Connection, entries: list[tuple], business_date: str,
                   product=None, unsplit_checked: bool = False) -> None:
    """Payment entries (setl_id, applies_to, benefit, psn_no, policy_no, payout_fen,
    kind, batch_id, recorded_at), all effective for ``business_date`` (ISO date: the
    batch's as-of date, a direct payout's or reversal's settlement date); one per
    batch, settlement and benefit (a replay adds nothing). ``product``: the product
    (:class:`puhui.products.model.Product`) they are paid under; where it names
    co-insurers, every entry's share per insurer is recorded with it (schema 7,
    :func:`_entry_share_rows`); where it names none, the entries are refused if the
    ledger splits the product's payments (:func:`refuse_unsplit`; ``unsplit_checked``:
    the caller did so in this unit of work before its first write, as a direct payout
    does with the read sent ahead with its BEGIN)."""
    day = dt.date.fromisoformat(str(business_date)[:10]).isoformat()
    group = tuple(getattr(product, "co_insurers", ()) or ())
    if not group and entries and product is not None and not unsplit_checked:
        _refuse_unsplit(con, product.id)
    shares = _entry_share_rows(con, entries, product.id, group) if group and entries else []
    con.executemany(
        "INSERT OR IGNORE INTO payments (setl_id, applies_to, benefit, psn_no, policy_no, "
        "payout_fen, kind, batch_id, recorded_at, business_date) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [(*e, day) for e in entries])
    if not shares:
        return
    # by the entry's unique key: its number is the one just given (or the replayed one's)
    con.executemany("INSERT OR IGNORE INTO payment_shares (entry_id, insurer_id, share_fen)"
                    " SELECT entry_id, ?, ? FROM payments WHERE batch_id = ? AND"
                    " applies_to = ? AND benefit = ?", shares)


def _entry_share_rows(con, entries: list[tuple], product_id: str, group: tuple) -> list:
    """(insurer, share fen, batch_id, applies_to, benefit) of each new entry of
    ``entries`` (:func:`record_entries`' rows) paid under ``product_id`` with its
    co-insurers ``group``: :func:`puhui.claims.shares.entry_shares` from the earlier
    entries of the same settlement and benefit under the product's policies. An entry
    already recorded (a replay: its batch holds one for that settlement and benefit)
    gets none. Earlier entries recorded unsplit are split first (:func:`_split_unsplit`)."""
    from puhui.claims.shares import entry_shares

    _register_co_insurers(con, product_id, group)
    ids = sorted({str(e[1]) for e in entries})
    with _wanted(con, ids):
        before, batches = _split_unsplit(con, product_id, group, only_wanted=True)
    rows = []
    for _sid, a, b, _psn, _pol, fen, _kind, batch, _at in entries:
        if (batch, a, b) in batches:
            continue
        net, got = before.get((a, b), (0, {}))
        rows.extend((i, share, batch, a, b)
                    for i, share in entry_shares(int(fen), net, got, group).items())
    return rows


def _split_unsplit(con, product_id: str, group: tuple, only_wanted: bool
                   ) -> tuple[dict, set]:
    """Every entry under ``product_id``'s policies (only those applying to the settlements
    in ``wanted`` where ``only_wanted``) read with its shares; those recorded unsplit
    (before schema 7, or under a product file naming no co-insurers) split now, in the
    order recorded (:func:`puhui.claims.shares.carry`). Returns ({(applies_to, benefit):
    (net, {insurer: fen})}, {(batch_id, applies_to, benefit)} of the entries read)."""
    from puhui.claims.shares import carry

    where = "m.applies_to IN (SELECT setl_id FROM wanted) AND " if only_wanted else ""
    rows = con.execute(
        "SELECT m.entry_id, m.applies_to, m.benefit, m.batch_id, m.payout_fen, s.insurer_id,"
        " s.share_fen FROM payments m LEFT JOIN payment_shares s ON s.entry_id = m.entry_id"
        f" WHERE {where}EXISTS (SELECT 1 FROM policies p WHERE p.policy_no = m.policy_no"
        " AND p.product_id = ?) ORDER BY m.entry_id", (product_id,)).fetchall()
    entries: dict[int, list] = {}
    for eid, a, b, batch, fen, ins, share in rows:
        e = entries.setdefault(int(eid), [(str(a), str(b)), int(eid), int(fen), None,
                                          (str(batch), str(a), str(b))])
        if ins is not None:
            e[3] = (e[3] or {}) | {str(ins): int(share)}
    state, new = carry([e[:4] for e in entries.values()], group)
    con.executemany("INSERT OR IGNORE INTO payment_shares (entry_id, insurer_id, share_fen)"
                    " VALUES (?, ?, ?)", new)
    return state, {e[4] for e in entries.values()}


def _register_co_insurers(con, product_id: str, group: tuple) -> None:
    """The co-insurers ``product_id``'s payments are split with: registered at its first
    split payment (and every earlier entry of the product split then, so a product
    year is split whole), checked afterwards. Another group (other insurers or quotas)
    is refused: the shares already recorded were split with the registered one."""
    mine = sorted((q.id, int(q.share_bp), bool(q.lead)) for q in group)
    if _known(con, ("co_insurers", product_id, tuple(mine))):
        return
    _group_lock(con, product_id, shared=False)
    had = sorted((str(i), int(bp), bool(lead)) for i, bp, lead in con.execute(
        "SELECT insurer_id, share_bp, lead FROM co_insurers WHERE product_id = ?",
        (product_id,)))
    if not had:
        stamp = now()
        con.executemany("INSERT OR IGNORE INTO co_insurers VALUES (?, ?, ?, ?, ?, ?)",
                        [(product_id, q.id, q.name, int(q.share_bp), int(bool(q.lead)), stamp)
                         for q in group])
        _split_unsplit(con, product_id, group, only_wanted=False)
    elif had != mine:
        _refuse_other_group(product_id, had, mine)
    _learn(con, ("co_insurers", product_id, tuple(mine)))


def _refuse_other_group(product_id: str, had: list, mine: list) -> None:
    def text(g):
        return ", ".join(f"{i} {bp / 100:g} %{' (lead)' if lead else ''}"
                         for i, bp, lead in g) or "no co-insurers"
    raise InputError(f"product {product_id}: the ledger split its payments between "
                     f"{text(had)}; the product file names {text(mine)}. Nothing was "
                     f"written. A product year's co-insurers and quotas cannot change once "
                     f"its payments are split: give the file with the [[co_insurers]] the "
                     f"ledger holds, or the change as a new product (id)")


def _refuse_unsplit(con, product_id: str) -> None:
    """Refuse (:class:`InputError`, nothing written: the unit of work rolls back) entries
    recorded without shares for a product the ledger splits: a long-lived writer (the
    service) started under a file naming no co-insurers before a batch or the counter
    registered the product's group would otherwise record them unsplit, and every
    insurer's net would stop being the split of the net (review s23)."""
    _group_lock(con, product_id, shared=True)
    had = co_insurers_of(con, product_id)
    if had:
        _refuse_other_group(product_id, [(i, bp, lead) for i, _n, bp, lead in had], [])


def group_lock_name(product_id: str) -> str:
    """The advisory lock on ``product_id``'s co-insuring group (:func:`group_locks`)."""
    return f"co-insurers {product_id}"


def group_locks(con, product) -> tuple[str, ...]:
    """The lock on the product's co-insuring group a unit of work that records payouts
    takes with its BEGIN (PostgreSQL; :func:`unit_of_work`'s ``locks``): shared where
    the file names no co-insurers (the unit checks there is no registered group, and
    such units do not wait for each other), exclusive where it names some and this
    connection has not seen the group registered (the unit may register it), none
    otherwise. Review s23: a payout under a file naming none, beside the transaction
    registering the group, read no group before that one committed and recorded its
    entry unsplit. Taken at the BEGIN, in one key order with the person locks, no two
    units wait for each other in a circle."""
    group = tuple(getattr(product, "co_insurers", ()) or ())
    name = group_lock_name(product.id)
    if not group:
        return (f"shared:{name}",)
    mine = sorted((q.id, int(q.share_bp), bool(q.lead)) for q in group)
    return () if _known(con, ("co_insurers", product.id, tuple(mine))) else (name,)


def _group_lock(con, product_id: str, shared: bool) -> None:
    """Hold :func:`group_lock_name`'s lock in the open unit of work: PostgreSQL only
    (SQLite has one writer at a time), and nothing where the unit took it with its
    BEGIN (:func:`group_locks`) or holds the whole ledger's lock (a batch)."""
    if not isinstance(con, sqlite3.Connection):
        con.lock(group_lock_name(product_id), shared)


def refuse_unsplit(con, product) -> None:
    """:func:`_refuse_unsplit` for a product whose file names no co-insurers (nothing
    for one that names them: its entries are split)."""
    if not tuple(getattr(product, "co_insurers", ()) or ()):
        _refuse_unsplit(con, product.id)


def register_co_insurers(con, product) -> None:
    """Register a co-insured product's group now (inside a unit of work; nothing for a
    product without co-insurers), splitting its earlier entries if it is the first:
    a batch does it where it starts, so a product year is split whole even when the
    batch pays nothing new (:func:`_register_co_insurers`)."""
    if product.co_insurers:
        _register_co_insurers(con, product.id, tuple(product.co_insurers))


def check_co_insurers(con, product) -> None:
    """Refuse (:class:`InputError`) a product file whose co-insurers are not those the
    ledger split the product's payments with (none named, other insurers or quotas);
    a product the ledger never split passes. Where a command starts (a batch, the
    service, a direct payout from the command line), before anything is written."""
    had = sorted((i, bp, lead) for i, _n, bp, lead in co_insurers_of(con, product.id))
    mine = sorted((q.id, int(q.share_bp), bool(q.lead)) for q in product.co_insurers)
    if had and had != mine:
        _refuse_other_group(product.id, had, mine)


def co_insurers_query(product_id: str) -> tuple[str, tuple]:
    """:func:`co_insurers_of`'s read (for a unit of work to send with its locks)."""
    return ("SELECT insurer_id, name, share_bp, lead FROM co_insurers WHERE"
            " product_id = ?", (product_id,))


def co_insurers_of(con, product_id: str) -> list[tuple[str, str, int, bool]]:
    """(insurer_id, name, share_bp, lead) of the co-insurers ``product_id``'s payments
    were split with, lead first then by id (none: never split)."""
    rows = con.execute(*co_insurers_query(product_id)).fetchall()
    return sorted(((str(i), str(n), int(bp), bool(lead)) for i, n, bp, lead in rows),
                  key=lambda r: (not r[3], r[0]))


def settlement_shares(con, setl_id: str, product_id: str) -> dict[str, int]:
    """{insurer_id: net fen} of the split entries applying to ``setl_id`` under
    ``product_id``'s policies."""
    return {str(i): int(fen) for i, fen in con.execute(
        "SELECT s.insurer_id, SUM(s.share_fen) FROM payment_shares s JOIN payments m ON"
        " m.entry_id = s.entry_id WHERE m.applies_to = ? AND EXISTS (SELECT 1 FROM policies"
        " p WHERE p.policy_no = m.policy_no AND p.product_id = ?) GROUP BY s.insurer_id",
        (setl_id, product_id))}


def batch_entry_shares(con, batch_id: str, setl_id: str | None = None) -> dict:
    """{(setl_id, applies_to, benefit): {insurer_id: fen}} of a batch's split entries
    (only those of ``setl_id`` where given)."""
    sql = ("SELECT p.setl_id, p.applies_to, p.benefit, s.insurer_id, s.share_fen FROM"
           " payment_shares s JOIN payments p ON p.entry_id = s.entry_id WHERE p.batch_id = ?")
    rows = (con.execute(sql, (batch_id,)) if setl_id is None else
            con.execute(sql + " AND p.setl_id = ?", (batch_id, setl_id)))
    out: dict = {}
    for sid, a, b, i, fen in rows:
        out.setdefault((str(sid), str(a), str(b)), {})[str(i)] = int(fen)
    return out


def batch_insurer_totals(con, batch_id: str) -> list[tuple[str, int, int]]:
    """(insurer_id, entries, paid fen) of a batch's split entries, by insurer id (none:
    its product names no co-insurers)."""
    return [(str(i), int(n), int(fen)) for i, n, fen in con.execute(
        "SELECT s.insurer_id, COUNT(*), SUM(s.share_fen) FROM payment_shares s JOIN payments"
        " p ON p.entry_id = s.entry_id WHERE p.batch_id = ? GROUP BY s.insurer_id ORDER BY"
        " s.insurer_id", (batch_id,))]


def batch_shares(con, batch_id: str):
    """Every insurer's share of each entry of a batch: setl_id, applies_to, benefit,
    kind, insurer_id, share_fen (in the order written)."""
    df = _frame("SELECT p.setl_id, p.applies_to, p.benefit, p.kind, s.insurer_id,"
                " s.share_fen FROM payment_shares s JOIN payments p ON p.entry_id ="
                " s.entry_id WHERE p.batch_id = ? ORDER BY p.entry_id, s.insurer_id", con,
                params=[batch_id])
    df["share_fen"] = df["share_fen"].astype("int64")
    return df


def export_shares(con):
    """Every insurer's share of each split payment entry (yuan): ``ledger export``'s
    shares file, one row per entry and insurer, keyed as the payment file's rows
    (batch, applies_to, benefit)."""
    df = _frame(
        "SELECT p.setl_id, p.applies_to, p.benefit, p.kind, p.batch_id AS batch,"
        " p.business_date, s.insurer_id, s.share_fen FROM payment_shares s JOIN payments p"
        " ON p.entry_id = s.entry_id ORDER BY p.entry_id, s.insurer_id", con)
    df["share_amt"] = df.pop("share_fen").astype("int64") / 100
    return df


def record_decisions(con: sqlite3.Connection, rows: list[tuple], product_id: str) -> None:
    """The current decisions of ``product_id`` (rows of setl_id, benefit, psn_no,
    policy_no, eligible, deductible, ratio_bp, payout, reason, batch_id), replacing its
    earlier ones; another product's decisions of the same settlements stay (schema 5)."""
    con.executemany("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*r, product_id) for r in rows])


def decisions_of(con: sqlite3.Connection, setl_id: str, product_id: str) -> list[tuple]:
    """(benefit, eligible, deductible, ratio_bp, payout, reason) of a settlement as
    ``product_id`` decided it (none: that product never decided it)."""
    return con.execute("SELECT benefit, eligible_fen, deductible_fen, ratio_bp, payout_fen, "
                       "reason FROM decisions WHERE setl_id = ? AND product_id = ? ORDER BY"
                       " benefit", (setl_id, product_id)).fetchall()


def decided_by_any(con, setl_id: str) -> bool:
    """Whether any product decided ``setl_id`` (a reversal's id must not be one)."""
    return con.execute("SELECT 1 FROM decisions WHERE setl_id = ? LIMIT 1",
                       (setl_id,)).fetchone() is not None


def decisions_or_reversal(con, setl_id: str, product_id: str
                          ) -> tuple[list[tuple], bool, str | None, set[str]]:
    """:func:`decisions_of`, whether ``setl_id`` is the id of a reversal the ledger
    applied, the code of a hold in force on it (None: not held), and what else the
    ledger holds of it (``"reversed"``: a reversal it applied refunded it;
    ``"stored"``: its inputs are kept, by this or another product's decision;
    ``"paid"``: entries apply to it under ``product_id``'s policies), in one read (a
    payout's round trips are counted)."""
    rows = con.execute(*decisions_or_reversal_query(setl_id, product_id)).fetchall()
    decided = sorted((tuple(r[1:]) for r in rows if r[0] == "d"), key=lambda r: r[0])
    held = [r[6] for r in rows if r[0] == "h"]
    seen = {{"x": "reversed", "s": "stored", "p": "paid"}[r[0]] for r in rows
            if r[0] in "xsp"}
    return decided, any(r[0] == "r" for r in rows), (held[0] if held else None), seen


def decisions_or_reversal_query(setl_id: str, product_id: str) -> tuple[str, tuple]:
    """The read of :func:`decisions_or_reversal` (for :func:`unit_of_work`'s ``reads``)."""
    return (
        "SELECT 'd', benefit, eligible_fen, deductible_fen, ratio_bp, payout_fen, reason"
        " FROM decisions WHERE setl_id = ? AND product_id = ? UNION ALL SELECT 'r', NULL,"
        " 0, 0, 0, 0, NULL FROM reversals WHERE setl_id = ? UNION ALL SELECT 'h', NULL, 0,"
        " 0, 0, 0, reason FROM holds WHERE setl_id = ? AND released_at IS NULL UNION ALL"
        " SELECT 'x', NULL, 0, 0, 0, 0, NULL FROM reversals WHERE refund_of = ? UNION ALL"
        " SELECT 's', NULL, 0, 0, 0, 0, NULL FROM settlements WHERE setl_id = ? UNION ALL"
        " SELECT 'p', NULL, 0, 0, 0, 0, NULL FROM payments m WHERE m.applies_to = ? AND"
        " EXISTS (SELECT 1 FROM policies p WHERE p.policy_no = m.policy_no AND"
        " p.product_id = ?)",
        (setl_id, product_id, setl_id, setl_id, setl_id, setl_id, setl_id, product_id))


def replace_accumulators(con: sqlite3.Connection, rows: list[tuple[str, str, int]]) -> None:
    """Set the accumulators of the policies named in ``rows`` (policy, name, used) to
    exactly these."""
    pols = list({p for p, _, _ in rows})
    con.executemany("DELETE FROM accumulators WHERE policy_no = ?", [(p,) for p in pols])
    con.executemany("INSERT INTO accumulators VALUES (?, ?, ?)", rows)


def update_accumulators(con: sqlite3.Connection, policy_no: str, state: dict[str, int]) -> None:
    """Set one policy's accumulators named in ``state``."""
    con.executemany("INSERT INTO accumulators VALUES (?, ?, ?) ON CONFLICT "
                    "(policy_no, accumulator) DO UPDATE SET used_fen = excluded.used_fen",
                    [(policy_no, k, v) for k, v in state.items()])


DIRECT_BATCH = "direct"      # the standing batch direct payouts recorded into (schema < 5)


def direct_batch(product_id: str) -> str:
    """The standing batch ``product_id``'s direct payouts record into (session 22: one
    per product; a batch writes one entry per settlement and benefit, so two products
    paying one settlement under benefits of the same name in one standing batch lost
    the second's entry). Entries of earlier puhuis stay in :data:`DIRECT_BATCH`.

    >>> direct_batch("huhuibao-2025")
    'direct:huhuibao-2025'
    """
    return f"{DIRECT_BATCH}:{product_id}"


def is_direct_batch(batch_id: str) -> bool:
    """Whether ``batch_id`` is a standing batch of direct payouts (any product's)."""
    return batch_id == DIRECT_BATCH or batch_id.startswith(DIRECT_BATCH + ":")


def last_entry(con: sqlite3.Connection) -> int:
    """The newest payment entry's number (entries are only appended)."""
    return int(con.execute("SELECT COALESCE(MAX(entry_id), 0) FROM payments").fetchone()[0])


def block_stamp(con: sqlite3.Connection, lo: str, hi: str) -> tuple[int, int, int]:
    """What the ledger knows of the people ``lo <= psn_no <= hi`` has changed when this
    changes: the last payment entry, the last stored settlement and the number of
    reversals applied for those people. Entries and reversals are only ever added; a
    settlement stored again gets a new ``seq``, and one forgotten (reversed or taken
    back) goes with a payment entry or a reversal of the same people, except one that
    had nothing eligible any more - which changes no payout."""
    pay = con.execute("SELECT COALESCE(MAX(entry_id), 0) FROM payments"
                      " WHERE psn_no BETWEEN ? AND ?", (lo, hi)).fetchone()[0]
    st = con.execute("SELECT COALESCE(MAX(seq), 0) FROM settlements"
                     " WHERE psn_no BETWEEN ? AND ?", (lo, hi)).fetchone()[0]
    rev = con.execute("SELECT COUNT(*) FROM reversals WHERE psn_no BETWEEN ? AND ?",
                      (lo, hi)).fetchone()[0]
    return int(pay), int(st), int(rev)


def store_settlements(con: sqlite3.Connection, rows: list[tuple], lines: list[tuple],
                      source: str, digest: str | None = None,
                      replaced: list[str] | None = None) -> None:
    """Keep the inputs of decided settlements: ``rows`` as :data:`STORED` (date as
    ``YYYY-MM-DD``, amounts in fen), ``lines`` as (setl_id, hilist_code, list_class,
    amount_fen) - the lines on one of the product's lists. A settlement stored again
    replaces what was stored (the newest data is the settlement). ``digest``: of the
    whole request a direct payout was decided on (every field and line), so a resent
    settlement with any change is told apart."""
    # the lines of the settlements stored before (``replaced``, when the caller knows
    # them; else any of ``rows``) go: the new ones replace them
    ids = [(i,) for i in replaced] if replaced is not None else [(r[0],) for r in rows]
    con.executemany("DELETE FROM settlement_lines WHERE setl_id = ?", ids)
    con.executemany("INSERT OR REPLACE INTO settlements (setl_id, psn_no, setl_date, med_type,"
                    " hosp_lv, insutype, psn_part_fen, fulamt_ownpay_fen, overlmt_selfpay_fen,"
                    " source, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*r, source, digest) for r in rows])
    con.executemany("INSERT INTO settlement_lines VALUES (?, ?, ?, ?)", lines)
    con.executemany("INSERT INTO settlement_dates VALUES (?, ?) ON CONFLICT (setl_id) DO"
                    " UPDATE SET setl_date = excluded.setl_date", [(r[0], r[2]) for r in rows])


def record_reversals(con: sqlite3.Connection, rows: list[tuple[str, str, str]],
                     batch_id: str) -> None:
    """Reversals a batch applied (setl_id, refund_of, psn_no): a later batch whose data
    holds the original but not the reversal keeps the original reversed."""
    con.executemany("INSERT OR IGNORE INTO reversals VALUES (?, ?, ?, ?)",
                    [(*r, batch_id) for r in rows])


def reversals_between(con: sqlite3.Connection, lo: str, hi: str) -> dict[str, str]:
    """Original -> reversal of the reversals applied for the people ``lo..hi``."""
    return dict(con.execute("SELECT refund_of, setl_id FROM reversals WHERE psn_no"
                            " BETWEEN ? AND ?", (lo, hi)).fetchall())


def reversal_person(con: sqlite3.Connection, setl_id: str) -> str | None:
    """The psn_no of the reversal ``setl_id`` the ledger applied (None if none)."""
    row = con.execute("SELECT psn_no FROM reversals WHERE setl_id = ?", (setl_id,)).fetchone()
    return None if row is None else row[0]


def known_reversals(con: sqlite3.Connection) -> dict[str, str]:
    """Original setl_id -> the setl_id of the reversal the ledger applied."""
    return dict(con.execute("SELECT refund_of, setl_id FROM reversals").fetchall())


def forget_settlements(con: sqlite3.Connection, ids: list[str], product_id: str) -> None:
    """Drop stored settlements that ``product_id`` reversed, took back or found nothing
    eligible in; not those another product decided and neither reversed nor took back
    (review s22: their inputs are that product's still - forgotten, its every later
    batch was refused as holding history of ledger schema 1, and its own take-back of
    them never came)."""
    keep = (" AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.setl_id = {t}.setl_id AND"
            " d.product_id != ? AND d.reason NOT IN ('REVERSED', 'NOT_IN_DATA'))")
    rows = [(i, product_id) for i in ids]
    for t in ("settlement_lines", "settlements"):
        con.executemany(f"DELETE FROM {t} WHERE setl_id = ?" + keep.format(t=t), rows)


def stored_settlements(con: sqlite3.Connection, lo: str, hi: str, first: str, last: str):
    """The stored settlements of the people ``lo <= psn_no <= hi`` dated ``first`` to
    ``last`` (ISO dates), in engine types, and their lines."""
    import pandas as pd

    # "+setl_date": the people's index, never the dates' (SQLite's planner, with no
    # statistics, took the date index: a year's dates cover every stored settlement, so
    # each block of a batch read the whole table, 0.2 s a block at 900,000 stored)
    st = _frame(
        "SELECT setl_id, psn_no, setl_date AS setl_time, med_type, hosp_lv, insutype,"
        " psn_part_fen AS psn_part_amt, fulamt_ownpay_fen AS fulamt_ownpay_amt,"
        " overlmt_selfpay_fen AS overlmt_selfpay, source FROM settlements"
        " WHERE psn_no BETWEEN ? AND ? AND +setl_date BETWEEN ? AND ?",
        con, params=[lo, hi, first, last])
    st["setl_time"] = pd.to_datetime(st["setl_time"], format="%Y-%m-%d")
    for c in ("hosp_lv", "psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay"):
        st[c] = st[c].astype("int64")
    lines = _frame(
        "SELECT l.setl_id, l.hilist_code, l.list_class, l.amount_fen AS amount"
        " FROM settlement_lines l JOIN settlements s ON s.setl_id = l.setl_id"
        " WHERE s.psn_no BETWEEN ? AND ? AND +s.setl_date BETWEEN ? AND ?",
        con, params=[lo, hi, first, last])
    lines["amount"] = lines["amount"].astype("int64")
    return st, lines


def stored_settlement(con: sqlite3.Connection, setl_id: str
                      ) -> tuple[dict, list[dict], str | None] | None:
    """One stored settlement (fields in :data:`STORED`, date as text), its lines and the
    digest of the direct request it came from (None from a batch)."""
    cur = con.execute("SELECT setl_id, psn_no, setl_date, med_type, hosp_lv, insutype,"
                      " psn_part_fen, fulamt_ownpay_fen, overlmt_selfpay_fen, digest"
                      " FROM settlements WHERE setl_id = ?", (setl_id,))
    row = cur.fetchone()
    if row is None:
        return None
    digest, row = row[-1], row[:-1]
    lines = [dict(zip(("hilist_code", "list_class", "amount"), r)) for r in con.execute(
        "SELECT hilist_code, list_class, amount_fen FROM settlement_lines WHERE setl_id = ?"
        " ORDER BY hilist_code, list_class, amount_fen", (setl_id,))]
    return dict(zip(STORED, row)), lines, digest


def unstored_decided(con: sqlite3.Connection, product_id: str):
    """Settlements decided under ``product_id``'s policies with something eligible whose
    inputs the ledger did not keep (decided by puhui before ledger schema 2) and that no
    reversal undid: setl_id, psn_no."""
    return _frame(
        "SELECT DISTINCT d.setl_id, d.psn_no FROM decisions d JOIN policies p ON"
        " p.policy_no = d.policy_no WHERE p.product_id = ? AND d.eligible_fen > 0"
        " AND d.reason != 'REVERSED' AND NOT EXISTS (SELECT 1 FROM settlements s WHERE"
        " s.setl_id = d.setl_id) AND NOT EXISTS (SELECT 1 FROM reversals r WHERE"
        " r.refund_of = d.setl_id)", con, params=[product_id])


def decided_in_period(con: sqlite3.Connection, product_id: str, first: str, last: str):
    """The stored settlements dated ``first`` to ``last`` (ISO dates) that were decided
    under one of ``product_id``'s policies: setl_id, psn_no, setl_date."""
    return _frame(
        "SELECT s.setl_id, s.psn_no, s.setl_date FROM settlements s"
        " WHERE s.setl_date BETWEEN ? AND ? AND EXISTS (SELECT 1 FROM decisions d JOIN"
        " policies q ON q.policy_no = d.policy_no WHERE d.setl_id = s.setl_id AND"
        " q.product_id = ?)", con, params=[first, last, product_id])


@contextmanager
def _wanted(con: sqlite3.Connection, ids: list[str]):
    """The settlement ids ``ids`` in a temporary table ``wanted`` (no limit on how many).

    On PostgreSQL a few ids (a reversal's policy year, up to :data:`FEW_WANTED`) are no
    table: each read names ``wanted`` as its own array of the ids, looked up by index
    (:attr:`PgConnection.wanted_ids`): the planner, which knows nothing of a temporary
    table, scanned all of ``decisions`` and ``payments`` for each such read, a cost that
    grew with the ledger (about 10 ms a read at 15,000 decisions, session 23)."""
    if hasattr(con, "wanted_ids") and len(ids) <= FEW_WANTED:
        # PostgreSQL, a few ids: sent with each read as an array (no temporary table to
        # fill and empty: a reversal filled it five times, session 24)
        con.wanted_ids = sorted(set(ids))
        try:
            yield
        finally:
            con.wanted_ids = None
        return
    if not _known(con, ("wanted",)):
        con.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (setl_id TEXT PRIMARY KEY)")
        _learn(con, ("wanted",))
    con.execute("DELETE FROM wanted")
    con.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(i,) for i in ids])
    try:
        yield
    finally:
        con.execute("DELETE FROM wanted")


#: Up to this many ids in ``wanted``, PostgreSQL reads them by index (:func:`_wanted`).
FEW_WANTED = 2000


def paid_for_settlements(con: sqlite3.Connection, ids: list[str], product_id: str):
    """Net paid per (settlement, benefit) of the settlements ``ids`` under
    ``product_id``'s policies: applies_to, benefit, paid, psn_no, policy_no."""
    with _wanted(con, ids):
        return _frame(
            "SELECT applies_to, benefit, SUM(payout_fen) AS paid, MAX(psn_no) AS psn_no,"
            " MAX(policy_no) AS policy_no FROM payments WHERE applies_to IN (SELECT setl_id"
            " FROM wanted) AND policy_no IN (SELECT policy_no FROM policies WHERE"
            " product_id = ?) GROUP BY applies_to, benefit", con, params=[product_id])


def paid_by_benefit(con, ids: list[str], product_id: str) -> dict[tuple[str, str], int]:
    """(applies_to, benefit) -> net paid (fen) of the settlements ``ids`` under
    ``product_id``'s policies: :func:`paid_for_settlements` without a frame (a reversal's
    policy year: pandas cost it about 1 ms, session 24)."""
    with _wanted(con, ids):
        return {(str(a), str(b)): int(p) for a, b, p in con.execute(
            "SELECT applies_to, benefit, SUM(payout_fen) FROM payments WHERE applies_to IN"
            " (SELECT setl_id FROM wanted) AND policy_no IN (SELECT policy_no FROM policies"
            " WHERE product_id = ?) GROUP BY applies_to, benefit", (product_id,)).fetchall()}


def paid_for_reversed_elsewhere(con, ids: list[str], product_id: str):
    """Net paid under ``product_id``'s policies for those of the originals ``ids`` that a
    reversal applied under another product undid (it took back that product's payouts
    only): applies_to, benefit, paid, psn_no, policy_no, reversal (its setl_id)."""
    with _wanted(con, ids):
        return _frame(
            "SELECT m.applies_to, m.benefit, SUM(m.payout_fen) AS paid, MAX(m.psn_no) AS"
            " psn_no, MAX(m.policy_no) AS policy_no, MAX(r.setl_id) AS reversal FROM"
            " payments m JOIN reversals r ON r.refund_of = m.applies_to JOIN batches b ON"
            " b.batch_id = r.batch_id WHERE m.applies_to IN (SELECT setl_id FROM wanted)"
            " AND b.product_id != ? AND EXISTS (SELECT 1 FROM policies p WHERE"
            " p.policy_no = m.policy_no AND p.product_id = ?) GROUP BY m.applies_to,"
            " m.benefit", con, params=[product_id, product_id])


def kept_of(con, ids: list[str]) -> list[tuple[str, str, str, int, int, int, str]]:
    """What the settlements ``ids`` keep (carried, held or quarantined): per settlement,
    benefit and policy that decided or paid it (setl_id, benefit, policy_no, deductible
    its decision applied, net paid under that policy, the decision's payout, its
    reason); a settlement never decided has none (:func:`puhui.benefits.kept.kept_by_policy`).
    The net paid comes from the payments, per policy; the decision is the policy's
    product's (schema 5: before it a second product deciding the same settlement under
    a benefit of the same name replaced the first's row, whose deductible then counted
    0)."""
    with _wanted(con, ids):
        return [(str(s), str(b), str(p), int(d), int(paid), int(due), str(why))
                for s, b, p, d, paid, due, why in con.execute(
            "SELECT k.setl_id, k.benefit, k.policy_no, COALESCE(d.deductible_fen, 0),"
            " COALESCE((SELECT SUM(m.payout_fen) FROM payments m WHERE m.applies_to ="
            " k.setl_id AND m.benefit = k.benefit AND m.policy_no = k.policy_no), 0),"
            " COALESCE(d.payout_fen, 0), COALESCE(d.reason, '') FROM"
            " (SELECT setl_id, benefit, policy_no FROM decisions WHERE setl_id IN"
            " (SELECT setl_id FROM wanted) AND policy_no IS NOT NULL UNION"
            " SELECT applies_to, benefit, policy_no FROM payments WHERE applies_to IN"
            " (SELECT setl_id FROM wanted) AND policy_no IS NOT NULL) k"
            " LEFT JOIN decisions d ON d.setl_id = k.setl_id AND d.benefit = k.benefit"
            " AND d.policy_no = k.policy_no"
            " ORDER BY k.setl_id, k.benefit, k.policy_no").fetchall()]


def decided_not_in_data(con: sqlite3.Connection, batch_id: str) -> list[tuple[str, str]]:
    """(setl_id, psn_no) of the settlements ``batch_id`` took back as not in its data."""
    return con.execute("SELECT DISTINCT setl_id, psn_no FROM decisions WHERE batch_id = ?"
                       " AND reason = 'NOT_IN_DATA'", (batch_id,)).fetchall()


def batch_entries_for(con: sqlite3.Connection, batch_id: str, ids: list[str]):
    """A batch's entries for the settlements ``ids`` (applies_to)."""
    with _wanted(con, ids):
        return _frame(
            "SELECT setl_id, applies_to, benefit, payout_fen, kind FROM payments"
            " WHERE batch_id = ? AND applies_to IN (SELECT setl_id FROM wanted)",
            con, params=[batch_id])


def batch_total(con: sqlite3.Connection, batch_id: str) -> int:
    """The sum of a batch's entries (fen)."""
    return int(con.execute("SELECT COALESCE(SUM(payout_fen), 0) FROM payments WHERE"
                           " batch_id = ?", (batch_id,)).fetchone()[0])


def status(con: sqlite3.Connection) -> tuple[int, list[tuple], int]:
    """(policies, [(batch, mode, status, entries, net fen)], net paid fen)."""
    n_pol = con.execute("SELECT COUNT(*) FROM policies").fetchone()[0]
    batches = con.execute(
        "SELECT b.batch_id, b.mode, b.status, COUNT(p.entry_id), COALESCE(SUM(p.payout_fen), 0)"
        " FROM batches b LEFT JOIN payments p ON p.batch_id = b.batch_id"
        " GROUP BY b.batch_id ORDER BY b.started_at").fetchall()
    total = con.execute("SELECT COALESCE(SUM(payout_fen), 0) FROM payments").fetchone()[0]
    return n_pol, batches, total


def export_payments(con: sqlite3.Connection):

    """Every payment entry (yuan): ``ledger export``'s rows, with the business date each
    is effective for beside when it was recorded."""
    df = _frame(
        "SELECT setl_id, applies_to, psn_no, policy_no, benefit, payout_fen, kind, "
        "batch_id AS batch, recorded_at, business_date FROM payments ORDER BY entry_id", con)
    df["payout_amt"] = df.pop("payout_fen") / 100
    return df[["setl_id", "applies_to", "psn_no", "policy_no", "benefit", "payout_amt",
               "kind", "batch", "recorded_at", "business_date"]]


# what a reserve reads (schema 6) ------------------------------------------------------
def product_ids(con) -> list[str]:
    """The products the ledger holds policies of, sorted."""
    return sorted(str(r[0]) for r in con.execute("SELECT DISTINCT product_id FROM policies"))


def reserve_entries(con, product_id: str):
    """Every payment entry under ``product_id``'s policies as a triangle reads it:
    setl_date (the date of the settlement it applies to, the origin; None where the
    ledger never kept it: forgotten before schema 6), business_date (the date it is
    effective for), payout_fen (signed), kind, batch, benefit, applies_to (the
    settlement the money is for)."""
    df = _frame(
        "SELECT d.setl_date, p.business_date, p.payout_fen, p.kind, p.batch_id AS batch,"
        " p.benefit, p.applies_to"
        " FROM payments p LEFT JOIN settlement_dates d ON d.setl_id = p.applies_to"
        " WHERE p.policy_no IN (SELECT policy_no FROM policies WHERE product_id = ?)"
        " ORDER BY p.entry_id", con, params=[product_id])
    df["payout_fen"] = df["payout_fen"].astype("int64")
    return df


def record_filings(con, product_id: str, batch_id: str, filings) -> dict[str, int]:
    """Record the filing dates of ``filings`` (``setl_id``, ``filed_date`` ISO text, one
    row per claim) under ``product_id``, inside the caller's unit of work. The key is
    (settlement, product) and the first filing recorded is kept: a claim already on
    record with the same date is left as it is (a claims file listing every claim to
    date names it again); one with another date keeps its first date and is counted
    (``kept_earlier_date``: a correction of a filing date is not taken from a claims
    file, since the claim was known from its first filing). Returns the counts:
    recorded, already_recorded, kept_earlier_date."""
    mine = filings[["setl_id", "filed_date"]].astype(str)
    known = _frame("SELECT setl_id, filed_date AS known FROM claim_filings WHERE"
                   " product_id = ?", con, params=[product_id])
    both = mine.merge(known.astype(str), on="setl_id", how="left")
    new = both["known"].isna().to_numpy()
    other = int((~new & (both["known"] != both["filed_date"]).to_numpy()).sum())
    at = now()
    con.executemany("INSERT INTO claim_filings (setl_id, product_id, filed_date, batch_id,"
                    " recorded_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (setl_id, product_id)"
                    " DO NOTHING", [(i, product_id, d, batch_id, at) for i, d in
                                    zip(both["setl_id"][new], both["filed_date"][new])])
    return {"recorded": int(new.sum()), "already_recorded": int((~new).sum()) - other,
            "kept_earlier_date": other}


def claim_filings(con, product_id: str):
    """The filing dates recorded under ``product_id``: setl_id, filed_date (ISO text)."""
    return _frame("SELECT setl_id, filed_date FROM claim_filings WHERE product_id = ?"
                  " ORDER BY setl_id", con, params=[product_id])


def product_premiums(con, product_id: str):
    """The policies of ``product_id``: start_date, end_date (ISO text), premium_fen."""
    df = _frame("SELECT start_date, end_date, premium_fen FROM policies WHERE"
                " product_id = ?", con, params=[product_id])
    df["premium_fen"] = df["premium_fen"].astype("int64")
    return df


def create_api_key(con, name: str, scope: str) -> tuple[str, str]:
    """A new API key of ``scope`` (``settle``: pre-settlement, settlement, reversal and
    reads; ``read``: reads only): (key_id, secret). Only the secret's SHA-256 is kept;
    the secret is shown once, to whoever creates it."""
    import hashlib
    import secrets

    if scope not in ("settle", "read"):
        raise InputError(f"scope {scope!r}: settle or read")
    key_id = "k_" + secrets.token_hex(6)
    secret = f"phk_{key_id[2:]}_{secrets.token_urlsafe(32)}"
    con.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                (key_id, name, scope, hashlib.sha256(secret.encode()).hexdigest(), now()))
    return key_id, secret


def api_key(con, secret: str) -> tuple[str, str, str] | None:
    """(key_id, name, scope) of a secret that is a key not revoked, else None."""
    import hashlib

    row = con.execute("SELECT key_id, name, scope FROM api_keys WHERE secret_sha256 = ? AND"
                      " revoked_at IS NULL", (hashlib.sha256(secret.encode()).hexdigest(),)
                      ).fetchone()
    return None if row is None else tuple(row)


def revoke_api_key(con, key_id: str) -> bool:
    """Revoke a key (requests with it are refused from now); False if no such key."""
    cur = con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at"
                      " IS NULL RETURNING key_id", (now(), key_id))
    return cur.fetchone() is not None


def api_keys(con) -> list[tuple]:
    """(key_id, name, scope, created_at, revoked_at) of every key, oldest first."""
    return [tuple(r) for r in con.execute("SELECT key_id, name, scope, created_at, revoked_at"
                                          " FROM api_keys ORDER BY created_at, key_id")]


def prune_idempotency(con, before: str) -> int:
    """Forget the answers kept under Idempotency-Keys recorded before ``before`` (an ISO
    time as :func:`now` gives); how many. A platform retries within minutes or hours;
    a settlement stays idempotent on its setl_id without them (call inside a unit of
    work)."""
    n = int(con.execute("SELECT COUNT(*) FROM idempotency WHERE recorded_at < ?",
                        (before,)).fetchone()[0])
    con.execute("DELETE FROM idempotency WHERE recorded_at < ?", (before,))
    return n


def idempotent_answer(con, key_id: str, idem_key: str) -> tuple[str, str, int, str] | None:
    """What was answered under an Idempotency-Key of an API key: (endpoint, body_sha256,
    status, response JSON), or None."""
    row = con.execute(*idempotent_answer_query(key_id, idem_key)).fetchone()
    return None if row is None else (row[0], row[1], int(row[2]), row[3])


def idempotent_answer_query(key_id: str, idem_key: str) -> tuple[str, tuple]:
    """The read of :func:`idempotent_answer` (for :func:`unit_of_work`'s ``reads``)."""
    return ("SELECT endpoint, body_sha256, status, response FROM idempotency"
            " WHERE key_id = ? AND idem_key = ?", (key_id, idem_key))


def record_idempotent_answer(con, key_id: str, idem_key: str, endpoint: str,
                             body_sha256: str, status: int, response: str) -> None:
    """Keep an answer under its Idempotency-Key, in the transaction that made it (an
    acknowledged answer is kept exactly when what it says was written)."""
    con.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?, ?)",
                (idem_key, key_id, endpoint, body_sha256, status, response, now()))


# reversals answered at once (puhui.claims.reverse) ------------------------------------
def reversal_by_id(con, setl_id: str) -> tuple[str, str, str, str | None] | None:
    """(refund_of, psn_no, batch_id, the batch's product) of the reversal ``setl_id``
    the ledger applied."""
    row = con.execute("SELECT r.refund_of, r.psn_no, r.batch_id, b.product_id FROM reversals"
                      " r LEFT JOIN batches b ON b.batch_id = r.batch_id WHERE r.setl_id = ?",
                      (setl_id,)).fetchone()
    return None if row is None else tuple(row)


def reversal_of_original(con, refund_of: str) -> tuple[str, str, str] | None:
    """(setl_id, psn_no, batch_id) of the reversal the ledger applied to ``refund_of``."""
    row = con.execute("SELECT setl_id, psn_no, batch_id FROM reversals WHERE refund_of = ?",
                      (refund_of,)).fetchone()
    return None if row is None else tuple(row)


def decided_or_paid_by(con, ids: list[str], product_id: str, policy_no: str) -> set[str]:
    """Those of the settlements ``ids`` that ``product_id`` decided or that entries under
    ``policy_no`` apply to (a ledger upgraded to schema 5 may hold the payments of a
    settlement whose decision another product's replaced; one it reversed or took back
    is not among them): a policy year re-adjudicated holds these, not the settlements
    only another product was asked about."""
    with _wanted(con, ids):
        return {str(r[0]) for r in con.execute(
            "SELECT setl_id FROM decisions WHERE setl_id IN (SELECT setl_id FROM wanted)"
            " AND product_id = ? AND reason NOT IN ('REVERSED', 'NOT_IN_DATA') UNION"
            " SELECT applies_to FROM payments m WHERE applies_to IN (SELECT setl_id FROM"
            " wanted) AND policy_no = ? AND NOT EXISTS (SELECT 1 FROM decisions d WHERE"
            " d.setl_id = m.applies_to AND d.product_id = ?)",
            (product_id, policy_no, product_id))}




def stored_of_person(con, psn_no: str, first: str, last: str
                     ) -> tuple[list[dict], dict[str, list[dict]]]:
    """The stored settlements of one person dated ``first`` to ``last`` (ISO dates), in
    the order they were decided (date, then the order the ledger stored them), fields
    as :data:`STORED` (date as text); and their lines by setl_id."""
    rows = [dict(zip(STORED, r)) for r in con.execute(
        "SELECT setl_id, psn_no, setl_date, med_type, hosp_lv, insutype, psn_part_fen,"
        " fulamt_ownpay_fen, overlmt_selfpay_fen FROM settlements WHERE psn_no = ? AND"
        " setl_date BETWEEN ? AND ? ORDER BY setl_date, seq", (psn_no, first, last))]
    lines: dict[str, list[dict]] = {}
    for sid, code, cls, amount in con.execute(
            "SELECT l.setl_id, l.hilist_code, l.list_class, l.amount_fen FROM"
            " settlement_lines l JOIN settlements s ON s.setl_id = l.setl_id WHERE"
            " s.psn_no = ? AND s.setl_date BETWEEN ? AND ? ORDER BY l.setl_id,"
            " l.hilist_code, l.list_class, l.amount_fen", (psn_no, first, last)):
        lines.setdefault(sid, []).append({"hilist_code": code, "list_class": cls,
                                          "amount": int(amount)})
    return rows, lines


def unstored_decided_of_policy(con, psn_no: str, policy_no: str) -> int:
    """How many settlements were decided under ``policy_no`` (of ``psn_no``) with
    something eligible whose inputs the ledger did not keep (an earlier puhui's, schema
    1) and that no reversal undid: a policy year that cannot be adjudicated again from
    the ledger. Read through the person's decisions (indexed): decisions have no index by
    policy, and a scan of all of them a reversal doubled the database's CPU a request over
    a 100,000-request load (session 19)."""
    return int(con.execute(
        "SELECT COUNT(DISTINCT d.setl_id) FROM decisions d WHERE d.psn_no = ? AND"
        " d.policy_no = ? AND"
        " d.eligible_fen > 0 AND d.reason NOT IN ('REVERSED', 'NOT_IN_DATA') AND NOT EXISTS"
        " (SELECT 1 FROM settlements s WHERE s.setl_id = d.setl_id) AND NOT EXISTS"
        " (SELECT 1 FROM reversals r WHERE r.refund_of = d.setl_id)",
        (psn_no, policy_no)).fetchone()[0])


def decision_policies(con, setl_id: str, product_id: str) -> set[str]:
    """The policies ``product_id``'s current decisions of a settlement were made under
    (none: no policy)."""
    return {r[0] for r in con.execute("SELECT DISTINCT policy_no FROM decisions WHERE"
                                      " setl_id = ? AND product_id = ? AND policy_no IS NOT"
                                      " NULL", (setl_id, product_id))}


def decision_reasons_of(con, ids: list[str], product_id: str) -> dict[tuple[str, str], str]:
    """(setl_id, benefit) -> the reason of ``product_id``'s current decision, for ``ids``."""
    with _wanted(con, ids):      # one read (it was one a settlement: a reversal's year
        return {(str(sid), str(b)): str(why) for sid, b, why in con.execute(   # of 100
            "SELECT setl_id, benefit, reason FROM decisions WHERE setl_id IN"  # was 100)
            " (SELECT setl_id FROM wanted) AND product_id = ?", (product_id,)).fetchall()}


def reversal_entries(con, setl_id: str, batch_id: str, whole_batch: bool) -> list[tuple]:
    """(setl_id, applies_to, benefit, payout_fen, kind) of what a reversal wrote, in the
    order written: every entry of its own batch (``whole_batch``: a reversal answered
    at once), else the entries undoing its original in the batch that applied it (a
    batch's adjustments of later settlements are not told apart per reversal)."""
    if whole_batch:
        return [tuple(r) for r in con.execute(
            "SELECT setl_id, applies_to, benefit, payout_fen, kind FROM payments WHERE"
            " batch_id = ? ORDER BY entry_id", (batch_id,))]
    return [tuple(r) for r in con.execute(
        "SELECT setl_id, applies_to, benefit, payout_fen, kind FROM payments WHERE"
        " batch_id = ? AND setl_id = ? AND kind = 'reverse' ORDER BY entry_id",
        (batch_id, setl_id))]


def net_paid_of(con, psn_no: str, product_id: str) -> int:
    """What a person has been paid, net, under ``product_id``'s policies (fen)."""
    return int(con.execute(
        "SELECT COALESCE(SUM(payout_fen), 0) FROM payments WHERE psn_no = ? AND policy_no"
        " IN (SELECT policy_no FROM policies WHERE product_id = ?)",
        (psn_no, product_id)).fetchone()[0])


# holds (schema 4) ---------------------------------------------------------------------
def record_holds(con, rows: list[tuple[str, str, str]], batch_id: str) -> int:
    """Record the settlements (setl_id, psn_no, flag code) a batch holds for review. A
    settlement held already keeps its first hold (code, batch, time); a released one
    stays released (the batch does not hold it again: :func:`holds`)."""
    if not rows:
        return 0
    stamp = now()
    con.executemany("INSERT OR IGNORE INTO holds (setl_id, psn_no, reason, batch_id, held_at)"
                    " VALUES (?, ?, ?, ?, ?)", [(s, p, r, batch_id, stamp) for s, p, r in rows])
    return len(rows)


def holds(con) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """({setl_id: (psn_no, code)} of the holds in force, {setl_id} of released holds)."""
    active: dict[str, tuple[str, str]] = {}
    released: set[str] = set()
    for sid, psn, why, gone in con.execute(
            "SELECT setl_id, psn_no, reason, released_at IS NOT NULL FROM holds"):
        if gone:
            released.add(sid)
        else:
            active[sid] = (psn, why)
    return active, released


def holds_of_person(con, psn_no: str) -> dict[str, str]:
    """{setl_id: code} of a person's holds in force."""
    return {sid: why for sid, why in con.execute(
        "SELECT setl_id, reason FROM holds WHERE psn_no = ? AND released_at IS NULL",
        (psn_no,))}


def hold_of(con, setl_id: str) -> tuple | None:
    """(psn_no, code, batch, held_at, released_at, released_by, release_reason) or None."""
    row = con.execute("SELECT psn_no, reason, batch_id, held_at, released_at, released_by,"
                      " release_reason FROM holds WHERE setl_id = ?", (setl_id,)).fetchone()
    return tuple(row) if row else None


def release_hold(con, setl_id: str, reason: str, who: str) -> tuple:
    """Release a hold in force (inside a unit of work): its row before the release."""
    row = hold_of(con, setl_id)
    if row is None:
        raise InputError(f"settlement {setl_id}: the ledger holds no hold of it; nothing "
                         f"was changed (check the setl_id against the batch's EOB)")
    if row[4] is not None:
        raise InputError(f"settlement {setl_id}: its hold was released already "
                         f"({row[4]}); nothing was changed")
    con.execute("UPDATE holds SET released_at = ?, released_by = ?, release_reason = ?"
                " WHERE setl_id = ?", (now(), who, reason, setl_id))
    return row


def holds_count(con) -> tuple[int, int]:
    """(holds in force, released holds)."""
    row = con.execute("SELECT COALESCE(SUM(CASE WHEN released_at IS NULL THEN 1 ELSE 0 END),"
                      " 0), COUNT(*) FROM holds").fetchone()
    return int(row[0]), int(row[1]) - int(row[0])
