"""`claims run` against a hand-written DuckDB query of the hospital benefit (issue 19).

benchmarks/duckdb_hospital.py pays the Huhuibao hospital benefit from the documents
alone (no puhui code). Each case runs a batch into a fresh ledger and asserts, per
settlement and to the fen, the same hospital payout and deductible, and equal totals:
the shipped sample city (2024 and 2025), a city of the second generator, a policies
file with claim_free_years (lowered deductibles; a column with a null is not used), and
amounts scaled up (the annual limit is reached) with the settlements' file order
reversed and times of day against file order (ties on a date are taken in file order;
the time of day is not part of the contract's settlement date).

Settlements that the batch holds for review (fraud and quality flags, quarantined: their
rules are in code only) are given to the query as ``held``; the cases assert they are
few.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import puhui  # the commands in this process: what they pay and write

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data-samples" / "city"

_spec = importlib.util.spec_from_file_location(
    "duckdb_hospital", ROOT / "benchmarks" / "duckdb_hospital.py")
dh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dh)

AMOUNTS = ["medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
           "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay",
           "maf_pay", "psn_part_amt"]


def claims_run(data: Path, year: int, work: Path) -> Path:
    out = work / f"out-{year}"
    r = puhui("claims", "run", "--product", f"huhuibao-{year}", "--data", data, "--ledger",
              f"sqlite:///{work / f'ledger-{year}.db'}", "--batch", "truth", "--out", out,
              "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "eob.parquet"


def agree(data: Path, year: int, work: Path):
    """Run both; assert per-settlement equality; return (connection, the query's rows)."""
    eob = claims_run(data, year, work)
    con = duckdb.connect()
    held = [r[0] for r in con.execute(
        "SELECT DISTINCT setl_id FROM read_parquet(?) WHERE status = 'quarantined'",
        [str(eob)]).fetchall()]
    n_settlements = con.execute("SELECT count(*) FROM read_parquet(?)",
                                [str(data / "settlements.parquet")]).fetchone()[0]
    assert len(held) <= n_settlements // 500, held[:20]
    dh.hospital_payouts(con, data, dh.TERMS[year], held)
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
        FROM e FULL JOIN hospital_payouts USING (setl_id)""", [str(eob)])
    diff = con.execute("""
        SELECT * FROM cmp WHERE eob_payout <> sql_payout OR eob_deductible <> sql_deductible
        ORDER BY setl_id LIMIT 10""").fetchall()
    assert diff == [], f"{len(diff)} settlements differ (setl_id, eob, sql): {diff}"
    totals = con.execute("""SELECT sum(eob_payout), sum(sql_payout), sum(eob_deductible),
                                   sum(sql_deductible), count(*) FILTER (sql_payout > 0)
                            FROM cmp""").fetchone()
    assert totals[0] == totals[1] and totals[2] == totals[3]
    assert totals[4] >= 50, "too few paid settlements to be a check"
    return con


def copy_city(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("*.parquet"):
        shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.parametrize("year", [2024, 2025])
def test_sample_city_agrees(tmp_path, year):
    agree(SAMPLE, year, tmp_path)


def test_second_generator_agrees(tmp_path):
    city = tmp_path / "second"
    r = puhui("synth", "--generator", "second", "--persons", "3000", "--years", "1",
              "--start-year", "2025", "--seed", "7", "--out", city)
    assert r.returncode == 0, r.stderr[-2000:]
    agree(city, 2025, tmp_path)


@pytest.mark.parametrize("filled", [True, False])
def test_claim_free_years_lower_the_deductible(tmp_path, filled):
    """0/2/3 claim-free years give 12,000 / 11,000 / 10,000 yuan. With one policy's
    count missing the column is not used (docs/data-schema.md: derived when "not filled
    for every policy of a product"; a fresh ledger derives 0), so 12,000 for all."""
    city = copy_city(SAMPLE, tmp_path / "cfy")
    pol = pq.read_table(city / "policies.parquet")
    cfy = [(0, 2, 3)[i % 3] for i in range(pol.num_rows)]
    if not filled:
        first = pol["product_id"].to_pylist().index("huhuibao-2025")
        cfy[first] = None
    pq.write_table(pol.append_column("claim_free_years", pa.array(cfy, pa.int64())),
                   city / "policies.parquet")
    con = agree(city, 2025, tmp_path)
    full = {r[0] for r in con.execute("""
        SELECT sum(deductible_fen) FROM hospital_payouts GROUP BY policy_no""").fetchall()}
    if filled:   # every deductible amount is in use: some policy's total reaches each
        assert {1_000_000, 1_100_000, 1_200_000} <= full
    else:
        assert 1_200_000 in full and not {1_000_000, 1_100_000} & full


def _scaled(t: pa.Table, cols, k: int) -> pa.Table:
    for c in cols:
        fen = pc.round(pc.multiply(t[c], 100)).cast(pa.int64())
        t = t.set_column(t.schema.get_field_index(c), c,
                         pc.divide(pc.multiply(fen, k).cast(pa.float64()), 100.0))
    return t


def test_limit_and_tie_order(tmp_path):
    """Amounts x 97 (fen exact, identities kept): policies reach the 1,000,000 limit.
    The same data with the settlements' rows reversed and a time of day that grows
    with the original row (so, within a day, against the new file order): same-day
    settlements of a policy swap order, which changes deductibles (checked), and both
    sides agree: the date counts, then file order."""
    fwd = copy_city(SAMPLE, tmp_path / "fwd")
    s = _scaled(pq.read_table(SAMPLE / "settlements.parquet"), AMOUNTS, 97)
    pq.write_table(s, fwd / "settlements.parquet")
    lines = pq.read_table(SAMPLE / "settlement_lines.parquet")
    pq.write_table(_scaled(lines, ["amount", "preselfpay_amt"], 97),
                   fwd / "settlement_lines.parquet")
    rev = copy_city(fwd, tmp_path / "rev")
    secs = pa.array([i % 80_000 for i in range(s.num_rows)], pa.int64())
    day = s["setl_time"].cast(pa.timestamp("s"))
    timed = s.set_column(s.schema.get_field_index("setl_time"), "setl_time",
                         pc.add(day, secs.cast(pa.duration("s"))))
    pq.write_table(timed.take(pa.array(range(s.num_rows - 1, -1, -1))),
                   rev / "settlements.parquet")

    con = duckdb.connect()
    forward = dict(((r[0], r[1:]) for r in
                    dh.hospital_payouts(con, fwd, dh.TERMS[2025]).fetchall()))
    con = agree(rev, 2025, tmp_path)
    reverse = {r[0]: r[1:] for r in con.execute("SELECT * FROM hospital_payouts").fetchall()}
    assert forward.keys() == reverse.keys()
    swapped = [k for k in forward if forward[k][2] != reverse[k][2]]
    assert swapped, "no tie on a date changes a deductible: the case checks no tie order"
    at_limit = con.execute("""SELECT count(*) FROM (SELECT policy_no FROM hospital_payouts
                              GROUP BY policy_no HAVING sum(payout_fen) = 100000000)""")
    assert at_limit.fetchone()[0] >= 1
