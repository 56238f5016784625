"""Benchmark: the least a claims batch must write, timed on its own.

The contract asks `claims run` for an eob.parquet with one row per settlement and
benefit (five benefits for Huhuibao: 50 million rows at 10 million settlements) and a
ledger that records what was decided. This script takes the eob.parquet and the SQLite
ledger of a finished batch and times only their writing, from data already in memory,
with no Python per row:

- the EOB: its Arrow table written again to Parquet (zstd, as the batch writes it);
- the ledger: every table copied into a fresh SQLite file by `INSERT ... SELECT`
  (SQLite's own page and index work, indexes included, WAL as the ledger uses).

So it shows the floor the batch's time cannot go below on this machine while it
writes what the contract and the ledger ask, whatever engine computes the payouts.
Medians of ``--runs`` runs.

    python benchmarks/bench_claims_floor.py --eob OUT/eob.parquet --ledger LEDGER.db
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench_synth import machine


def write_eob(table, path: Path) -> float:
    import pyarrow.parquet as pq

    t = time.perf_counter()
    pq.write_table(table, path, compression="zstd")
    return time.perf_counter() - t


def copy_ledger(source: Path, path: Path) -> float:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(path)
    dst.execute("pragma journal_mode=wal")
    for (sql,) in src.execute("select sql from sqlite_master where sql is not null and "
                              "name not like 'sqlite_%'"):
        dst.execute(sql)
    dst.commit()
    names = [n for (n,) in src.execute("select name from sqlite_master where type='table' "
                                       "and name not like 'sqlite_%'")]
    src.close()
    dst.execute("attach ? as o", (str(source),))
    t = time.perf_counter()
    for name in names:
        dst.execute(f"insert into main.{name} select * from o.{name}")
    dst.commit()
    dt = time.perf_counter() - t
    dst.close()
    return dt


def main() -> None:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser()
    ap.add_argument("--eob", required=True, help="a batch's eob.parquet")
    ap.add_argument("--ledger", required=True, help="that batch's SQLite ledger file")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(machine())
    table = pq.read_table(a.eob)
    con = sqlite3.connect(a.ledger)
    rows = {n: con.execute(f"select count(*) from {n}").fetchone()[0] for (n,) in
            con.execute("select name from sqlite_master where type='table' and "
                        "name not like 'sqlite_%'")}
    con.close()
    print(f"eob: {table.num_rows:,} rows; ledger rows: "
          + ", ".join(f"{n} {c:,}" for n, c in rows.items() if c))
    eob_s, led_s = [], []
    with tempfile.TemporaryDirectory() as work:
        for i in range(a.runs):
            eob_s.append(write_eob(table, Path(work) / f"eob{i}.parquet"))
            led_s.append(copy_ledger(Path(a.ledger), Path(work) / f"l{i}.db"))
            os.remove(Path(work) / f"eob{i}.parquet")
    print(f"EOB written from Arrow: median {statistics.median(eob_s):.1f} s "
          f"(runs {', '.join(f'{x:.1f}' for x in eob_s)})")
    print(f"ledger tables copied by SQLite: median {statistics.median(led_s):.1f} s "
          f"(runs {', '.join(f'{x:.1f}' for x in led_s)})")


if __name__ == "__main__":
    main()
