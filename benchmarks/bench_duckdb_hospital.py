"""Benchmark and truth check: `puhui claims run` against a hand-written DuckDB query.

benchmarks/duckdb_hospital.py pays the Huhuibao 2025 hospital benefit from the documents
alone (no puhui code). Both run in their own process on the same city, 3 runs each
(medians of wall time and of the peak of the process tree, bench_synth.timed), the
batch into a fresh SQLite ledger each time. The hospital rows of the batch's eob.parquet
are then compared with the query's rows, per settlement and to the fen (payout and
deductible). Settlements the batch held for review (quarantined: fraud and quality
flags, whose rules are in code only) are given to the query as held. Target (issue 19):
claims run within 3x of the query. Exit 1 if they disagree.

    python benchmarks/bench_duckdb_hospital.py [--data DIR | --persons 200000 [--city DIR]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import duckdb

from bench_synth import machine, timed

HERE = Path(__file__).resolve().parent


def generate(persons: int, out: Path) -> None:
    dt, peak, _ = timed([sys.executable, "-m", "puhui", "synth", "--persons", str(persons),
                         "--years", "1", "--start-year", "2025", "--seed", "1",
                         "--out", str(out)])
    print(f"generated {persons:,} people x 1 year (2025) in {dt:.1f} s (peak {peak:.2f} GiB)")


def compare(eob: Path, sql_rows: Path) -> dict:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("""
        CREATE TEMP TABLE cmp AS
        WITH e AS (
            SELECT setl_id,
                   sum(CAST(round(payout_amt * 100) AS BIGINT)) AS eob_payout,
                   sum(CAST(round(deductible_amt * 100) AS BIGINT)) AS eob_deductible
            FROM read_parquet(?) WHERE benefit = 'hospital' GROUP BY setl_id)
        SELECT setl_id, coalesce(eob_payout, 0) AS eob_payout,
               coalesce(eob_deductible, 0) AS eob_deductible,
               coalesce(payout_fen, 0) AS sql_payout,
               coalesce(deductible_fen, 0) AS sql_deductible
        FROM e FULL JOIN read_parquet(?) USING (setl_id)""", [str(eob), str(sql_rows)])
    n_diff, eob_total, sql_total, eob_ded, sql_ded, paid = con.execute("""
        SELECT count(*) FILTER (eob_payout <> sql_payout OR eob_deductible <> sql_deductible),
               sum(eob_payout), sum(sql_payout), sum(eob_deductible), sum(sql_deductible),
               count(*) FILTER (sql_payout > 0) FROM cmp""").fetchone()
    examples = con.execute("""
        SELECT * FROM cmp WHERE eob_payout <> sql_payout OR eob_deductible <> sql_deductible
        ORDER BY setl_id LIMIT 10""").fetchall()
    return dict(differ=n_diff, eob_total=int(eob_total), sql_total=int(sql_total),
                eob_deductible=int(eob_ded), sql_deductible=int(sql_ded), paid=paid,
                examples=examples)


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="an existing 2025 city (else one is generated)")
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--city", default=None, help="where to generate the city (kept)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None,
                    help="claims run --workers (default: its own default)")
    a = ap.parse_args()
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="puhui-duck-"))
    if a.data:
        data = Path(a.data)
    else:
        data = Path(a.city) if a.city else work / "city"
        generate(a.persons, data)
    con = duckdb.connect()
    n = con.execute("SELECT count(*) FROM read_parquet(?)",
                    [str(data / "settlements.parquet")]).fetchone()[0]
    print(f"city {data}: {n:,} settlements")

    exe = [sys.executable, "-m", "puhui", "claims", "run", "--product", "huhuibao-2025",
           "--data", str(data)]
    if a.workers:
        exe += ["--workers", str(a.workers)]
    runs_c, line = [], ""
    for i in range(a.runs):
        out = work / f"out{i}"
        dt, peak, text = timed(exe + ["--ledger", f"sqlite:///{work / f'ledger{i}.db'}",
                                      "--batch", "bench", "--out", str(out)])
        runs_c.append((dt, peak))
        line = text.splitlines()[0]
        print(f"claims run {i + 1}: {dt:.2f} s, peak {peak:.2f} GiB", flush=True)
    print(f"  {line}")
    eob = work / f"out{a.runs - 1}" / "eob.parquet"

    held = work / "held.parquet"
    con.execute(f"COPY (SELECT DISTINCT setl_id FROM read_parquet('{eob}') "
                f"WHERE status = 'quarantined') TO '{held}' (FORMAT parquet)")
    n_held = con.execute("SELECT count(*) FROM read_parquet(?)", [str(held)]).fetchone()[0]

    sql_out = work / "duckdb_hospital.parquet"
    runs_d = []
    for i in range(a.runs):
        dt, peak, text = timed([sys.executable, str(HERE / "duckdb_hospital.py"),
                                "--data", str(data), "--product-year", "2025",
                                "--out", str(sql_out), "--held", str(held)])
        runs_d.append((dt, peak))
        print(f"duckdb     {i + 1}: {dt:.2f} s, peak {peak:.2f} GiB", flush=True)
    print(f"  {text}")

    c = compare(eob, sql_out)
    tc, mc = (statistics.median(x) for x in zip(*runs_c))
    td, md = (statistics.median(x) for x in zip(*runs_d))
    print(f"claims run (huhuibao-2025, fresh SQLite ledger): median {tc:.2f} s, "
          f"peak {mc:.2f} GiB")
    print(f"DuckDB hospital query (its own process):        median {td:.2f} s, "
          f"peak {md:.2f} GiB")
    print(f"ratio claims run / duckdb: {tc / td:.1f}x wall (target <= 3x), "
          f"{mc / md:.1f}x memory")
    print(f"hospital benefit: claims run {yuan(c['eob_total'])} yuan, DuckDB "
          f"{yuan(c['sql_total'])} yuan ({c['paid']:,} settlements paid); deductibles "
          f"{yuan(c['eob_deductible'])} / {yuan(c['sql_deductible'])} yuan; "
          f"{n_held:,} settlements held for review by the batch (given to the query)")
    if c["differ"]:
        print(f"DISAGREE: {c['differ']:,} settlements differ (setl_id, eob payout, eob "
              f"deductible, sql payout, sql deductible in fen), first: {c['examples']}")
        sys.exit(1)
    print("agree: every settlement to the fen")


if __name__ == "__main__":
    main()
