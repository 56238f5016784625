"""The payout ledger: an embedded SQLite database (WAL, foreign keys).

What it holds
-------------
``policies``      the policies loaded from fund data
``batches``       one row per batch run (mode, product and data hashes, status)
``payments``      signed payment entries: every payout, reversal and adjustment. The net
                  paid for a settlement's benefit is the sum of its entries
                  (``applies_to`` = the settlement the money is for; a reversal's entry
                  has the reversal's ``setl_id`` and applies to the original)
``decisions``     the current decision (target payout, reason) per settlement and benefit
``accumulators``  running deductible and limit use per policy and accumulator
``recoveries``    signed entries of refunds due to the product under drug agreements
                  (per batch, agreement, patient and quarter; the amount due is the sum)
``audit``         append-only log: who ran what, with which product and data hashes, when

Unique keys make replays harmless: a batch writes at most one entry per
(batch, settlement, benefit). Callers use the functions here, never SQL, so a
PostgreSQL URL can be added behind the same functions.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
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
    finished_at TEXT, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    setl_id TEXT NOT NULL, applies_to TEXT NOT NULL, benefit TEXT NOT NULL,
    psn_no TEXT NOT NULL, policy_no TEXT, payout_fen INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pay', 'adjust', 'reverse')),
    batch_id TEXT NOT NULL REFERENCES batches (batch_id), recorded_at TEXT NOT NULL,
    UNIQUE (batch_id, applies_to, benefit));
CREATE INDEX IF NOT EXISTS payments_psn ON payments (psn_no);
CREATE INDEX IF NOT EXISTS payments_applies ON payments (applies_to, benefit);
CREATE TABLE IF NOT EXISTS decisions (
    setl_id TEXT NOT NULL, benefit TEXT NOT NULL, psn_no TEXT NOT NULL, policy_no TEXT,
    eligible_fen INTEGER NOT NULL, deductible_fen INTEGER NOT NULL,
    ratio_bp INTEGER NOT NULL, payout_fen INTEGER NOT NULL, reason TEXT NOT NULL,
    batch_id TEXT NOT NULL, PRIMARY KEY (setl_id, benefit));
CREATE INDEX IF NOT EXISTS decisions_psn ON decisions (psn_no);
CREATE TABLE IF NOT EXISTS accumulators (
    policy_no TEXT NOT NULL REFERENCES policies (policy_no), accumulator TEXT NOT NULL,
    used_fen INTEGER NOT NULL, PRIMARY KEY (policy_no, accumulator));
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
"""
SCHEMA_VERSION = "1"


def sqlite_path(url: str) -> Path:
    """``sqlite:///path/to/ledger.db`` (or a plain path) to a file path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if "://" in url:
        raise InputError(f"ledger URL {url!r}: only sqlite:///PATH (or a file path) is "
                         f"supported so far")
    return Path(url)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def connect(url: str, must_exist: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) a ledger. Autocommit off; use :func:`unit_of_work`.
    ``must_exist``: refuse a ledger file that is not there (for read-only commands)."""
    path = sqlite_path(url)
    if must_exist and not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise InputError(f"{path}: no ledger there ({what}); give the --ledger the "
                         f"batches were run into")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=60000")
        con.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a usable ledger database ({exc})") from None
    with unit_of_work(con):
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    return con


@contextmanager
def unit_of_work(con: sqlite3.Connection):
    """One transaction; ``BEGIN IMMEDIATE`` takes the write lock at once, so concurrent
    writers queue instead of losing an update."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def audit(con: sqlite3.Connection, command: str, batch_id: str | None = None,
          product_hash: str | None = None, data_hash: str | None = None,
          **detail) -> None:
    """Append to the audit log (call inside a unit of work)."""
    try:
        who = getpass.getuser()
    except Exception:  # no user name in some containers
        who = "unknown"
    con.execute("INSERT INTO audit (at, who, command, batch_id, product_hash, data_hash, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now(), who, command, batch_id, product_hash, data_hash,
                 json.dumps(detail, sort_keys=True, default=str)))


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


def policies_of(con: sqlite3.Connection, psn_no: str, product_id: str) -> list[dict]:
    cur = con.execute("SELECT policy_no, psn_no, product_id, start_date, end_date, premium_fen,"
                      " preexisting, consent, claim_free_years FROM policies"
                      " WHERE psn_no = ? AND product_id = ?", (psn_no, product_id))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def accumulators_of(con: sqlite3.Connection, policy_no: str) -> dict[str, int]:
    return dict(con.execute("SELECT accumulator, used_fen FROM accumulators WHERE policy_no = ?",
                            (policy_no,)).fetchall())


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
        con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, NULL, 'running')",
                    (batch_id, mode, product_id, product_hash, data_hash, now()))
    return row is not None


def ensure_open_batch(con: sqlite3.Connection, batch_id: str, mode: str, product_id: str) -> None:
    """A standing batch (direct payouts record into one)."""
    con.execute("INSERT OR IGNORE INTO batches VALUES (?, ?, ?, '', '', ?, NULL, 'open')",
                (batch_id, mode, product_id, now()))


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
    paid_policy. Only the product's own payments: a batch of one product never adjusts
    what another product's policies paid (a 2024 batch over data that still holds 2023
    settlements leaves the 2023 payouts alone)."""
    import pandas as pd

    return pd.read_sql_query(
        "SELECT applies_to, benefit, SUM(payout_fen) AS paid, MAX(psn_no) AS paid_psn,"
        " MAX(policy_no) AS paid_policy FROM payments WHERE psn_no BETWEEN ? AND ?"
        " AND policy_no IN (SELECT policy_no FROM policies WHERE product_id = ?)"
        " GROUP BY applies_to, benefit", con, params=[lo, hi, product_id])


def paid_for_benefits(con: sqlite3.Connection, product_id: str, benefits: list[str]):
    """Net paid per (settlement, benefit) of ``benefits`` under ``product_id``'s
    policies: applies_to, benefit, paid, paid_psn."""
    import pandas as pd

    marks = ", ".join("?" * len(benefits))
    return pd.read_sql_query(
        "SELECT applies_to, benefit, SUM(payout_fen) AS paid, MAX(psn_no) AS paid_psn"
        f" FROM payments WHERE benefit IN ({marks}) AND policy_no IN"
        " (SELECT policy_no FROM policies WHERE product_id = ?)"
        " GROUP BY applies_to, benefit", con, params=[*benefits, product_id])


def booked_recoveries(con: sqlite3.Connection, agreements: list[str]):
    """What is booked per (agreement, psn_no, quarter): booked_fen."""
    import pandas as pd

    marks = ", ".join("?" * len(agreements))
    return pd.read_sql_query(
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
    import pandas as pd

    return pd.read_sql_query(
        "SELECT setl_id, applies_to, benefit, payout_fen, kind FROM payments"
        " WHERE batch_id = ? AND psn_no BETWEEN ? AND ?", con, params=[batch_id, lo, hi])


def record_entries(con: sqlite3.Connection, entries: list[tuple]) -> None:
    """Payment entries (setl_id, applies_to, benefit, psn_no, policy_no, payout_fen,
    kind, batch_id, recorded_at); one per batch, settlement and benefit (a replay adds
    nothing)."""
    con.executemany(
        "INSERT OR IGNORE INTO payments (setl_id, applies_to, benefit, psn_no, policy_no, "
        "payout_fen, kind, batch_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)


def record_decisions(con: sqlite3.Connection, rows: list[tuple]) -> None:
    """The current decisions (setl_id, benefit, psn_no, policy_no, eligible, deductible,
    ratio_bp, payout, reason, batch_id), replacing earlier ones."""
    con.executemany("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows)


def decisions_of(con: sqlite3.Connection, setl_id: str) -> list[tuple]:
    """(benefit, eligible, deductible, ratio_bp, payout, reason) of a decided settlement."""
    return con.execute("SELECT benefit, eligible_fen, deductible_fen, ratio_bp, payout_fen, "
                       "reason FROM decisions WHERE setl_id = ?", (setl_id,)).fetchall()


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
    import pandas as pd

    df = pd.read_sql_query(
        "SELECT setl_id, applies_to, psn_no, policy_no, benefit, payout_fen, kind, "
        "batch_id AS batch, recorded_at FROM payments ORDER BY entry_id", con)
    df["payout_amt"] = df.pop("payout_fen") / 100
    return df[["setl_id", "applies_to", "psn_no", "policy_no", "benefit", "payout_amt",
               "kind", "batch", "recorded_at"]]
