"""A hand-written DuckDB query of the Huhuibao hospital benefit: a second implementation.

Written from docs/data-schema.md, docs/claims.md,
docs/product-files.md and the product files, without puhui's engine (nothing of
puhui is imported), so that it can disagree with `puhui claims run`. It pays the
hospital in-list self-pay benefit of one Huhuibao product year over a fund-data folder
(a fresh ledger: one batch, every settlement claimed):

- a settlement counts when it is effective (neither a reversal nor reversed: the
  `refund_of` pairs), its person has a policy of the product whose cover period
  (start_date..end_date, inclusive, by date) contains the settlement date, the person's
  insutype is eligible, and its med_type and hosp_lv pass the benefit's filters;
- base = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay (in-list self-pay), in
  integer fen (round(yuan x 100) per column);
- per policy, in time order (the settlement date, ties in file order), the annual
  deductible is consumed by a running sum of the base:
  deductible = min(base, D - min(D, base so far)).
  setl_time is a date in the contract ("settlement date", docs/data-schema.md; a Parquet
  timestamp or date): a time of day in a file is not part of it, so the order is by
  date and then file order (puhui does the same: a probe with times of day against
  file order agreed only this way; no document says so outright);
- payout = round((base - deductible) x ratio) half away from zero to the fen (ratio in
  basis points: 70 %, or the pre-existing ratio for a policy with `preexisting`), then
  capped by the annual limit against the running sum of the payouts before it:
  min(payout, L - min(L, payouts so far)) (payouts are never negative, so the capped
  running sum is min(L, uncapped running sum)).

D is lowered by `claim_free_years` when policies.parquet has that column filled for
every policy of the product (docs/data-schema.md: "when absent or not filled for every
policy of a product, derived from the policy history and what was paid"); otherwise
every policy has 0, what a fresh ledger derives (no earlier year's batch: docs/claims.md,
"Claim-free years").

    python benchmarks/duckdb_hospital.py --data DIR --product-year 2025 --out FILE.parquet
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import duckdb

# The hospital benefit's terms, by hand from the product files (all amounts in fen,
# ratios in basis points):
# - actuarial/products/huhuibao-2025.toml: deductible 12,000 (11,000 after 2 claim-free
#   years, 10,000 after 3), ratio 0.70, preexisting_ratio 0.50, limit 1,000,000; the
#   filters, eligibility and waiting period (0) inherited from 2024 <- 2023 <- 2022 <- 2021.
# - actuarial/products/huhuibao-2024.toml: terms as 2023: deductible 15,000 (14,000 after
#   2, 13,000 after 3), ratio 0.70 and preexisting_ratio 0.30 (from 2021), limit 1,000,000.
# - filters (2022, kept since): med_type 21, 22, 23, 24, 52, 14 and hosp_lv 2 or 3;
#   eligibility (2021): insutypes 310 and 390.
TERMS = {
    2025: {
        "product_id": "huhuibao-2025",
        "deductible_fen": 1_200_000,
        "claim_free": [(3, 1_000_000), (2, 1_100_000)],   # (years at least, amount)
        "ratio_bp": 7000,
        "preexisting_ratio_bp": 5000,
        "limit_fen": 100_000_000,
        "med_types": ["21", "22", "23", "24", "52", "14"],
        "hosp_lvs": [2, 3],
        "insutypes": ["310", "390"],
    },
    2024: {
        "product_id": "huhuibao-2024",
        "deductible_fen": 1_500_000,
        "claim_free": [(3, 1_300_000), (2, 1_400_000)],
        "ratio_bp": 7000,
        "preexisting_ratio_bp": 3000,
        "limit_fen": 100_000_000,
        "med_types": ["21", "22", "23", "24", "52", "14"],
        "hosp_lvs": [2, 3],
        "insutypes": ["310", "390"],
    },
}

# One statement; {placeholders} are filled by hospital_payouts (file paths, terms).
HOSPITAL_SQL = """
WITH s AS (
    SELECT setl_id, psn_no, CAST(setl_time AS DATE) AS setl_date,
           CAST(med_type AS VARCHAR) AS med_type, CAST(hosp_lv AS BIGINT) AS hosp_lv,
           refund_of, file_row_number AS row_no,
           CAST(round(psn_part_amt * 100) AS BIGINT)
             - CAST(round(fulamt_ownpay_amt * 100) AS BIGINT)
             - CAST(round(overlmt_selfpay * 100) AS BIGINT) AS base_fen
    FROM read_parquet({settlements}, file_row_number = true)
),
reversed AS (
    SELECT DISTINCT refund_of AS setl_id FROM s WHERE refund_of IS NOT NULL
),
pol AS (
    SELECT policy_no, psn_no, CAST(start_date AS DATE) AS start_date,
           CAST(end_date AS DATE) AS end_date, coalesce(preexisting, false) AS preexisting,
           {claim_free_years} AS claim_free_years
    FROM read_parquet({policies})
    WHERE product_id = {product_id}
),
per AS (
    SELECT psn_no FROM read_parquet({persons})
    WHERE CAST(insutype AS VARCHAR) IN ({insutypes})
),
counted AS (
    SELECT s.setl_id, pol.policy_no, s.setl_date, s.row_no, s.base_fen,
           CASE {deductible_case} END AS deductible_amt,
           CASE WHEN pol.preexisting THEN {preexisting_ratio_bp} ELSE {ratio_bp} END
             AS ratio_bp
    FROM s
    JOIN pol ON pol.psn_no = s.psn_no
            AND s.setl_date BETWEEN pol.start_date AND pol.end_date
    JOIN per ON per.psn_no = s.psn_no
    WHERE s.refund_of IS NULL
      AND s.setl_id NOT IN (SELECT setl_id FROM reversed)
      AND s.setl_id NOT IN (SELECT setl_id FROM held)
      AND s.med_type IN ({med_types})
      AND s.hosp_lv IN ({hosp_lvs})
),
ded AS (
    SELECT *,
           least(base_fen, greatest(0, deductible_amt - coalesce(sum(base_fen) OVER (
               PARTITION BY policy_no ORDER BY setl_date, row_no
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS deductible_fen
    FROM counted
),
raw AS (
    SELECT *,
           -- half away from zero; the amount is never negative
           ((base_fen - deductible_fen) * ratio_bp + 5000) // 10000 AS uncapped_fen
    FROM ded
)
SELECT setl_id, policy_no, base_fen, deductible_fen,
       least(uncapped_fen, greatest(0, {limit_fen} - coalesce(sum(uncapped_fen) OVER (
           PARTITION BY policy_no ORDER BY setl_date, row_no
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS payout_fen
FROM raw
"""


def _lit(v) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(int(v))


def hospital_payouts(con: duckdb.DuckDBPyConnection, data_dir, terms: dict, held=()):
    """The counted settlements of ``terms``' product in ``data_dir`` with their hospital
    base, deductible and payout in fen: a DuckDB relation over the temp table
    ``hospital_payouts`` (setl_id, policy_no, base_fen, deductible_fen, payout_fen).

    ``held``: setl_ids held for review (puhui's fraud and quality flags, whose rules no
    document states; the batch's quarantined EOB rows). A fresh ledger kept nothing of
    them, so they count for nothing, not even the deductible (docs/claims.md)."""
    d = os.fspath(data_dir)
    con.execute("CREATE OR REPLACE TEMP TABLE held (setl_id VARCHAR)")
    held = sorted(set(held))
    if held:
        con.execute("INSERT INTO held SELECT unnest(?::VARCHAR[])", [held])
    paths = {k: _lit(os.path.join(d, f"{k}.parquet"))
             for k in ("settlements", "policies", "persons")}
    cols = {r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({paths['policies']})").fetchall()}
    # the column counts only when every policy of the product has it filled
    cfy = ("CASE WHEN count(*) FILTER (claim_free_years IS NULL) OVER () = 0 "
           "THEN CAST(claim_free_years AS BIGINT) ELSE 0 END"
           if "claim_free_years" in cols else "0")
    case = " ".join(f"WHEN pol.claim_free_years >= {y} THEN {amt}"
                    for y, amt in sorted(terms["claim_free"], reverse=True))
    case += f" ELSE {terms['deductible_fen']}"
    sql = HOSPITAL_SQL.format(
        **paths, claim_free_years=cfy, deductible_case=case,
        product_id=_lit(terms["product_id"]),
        insutypes=", ".join(_lit(x) for x in terms["insutypes"]),
        med_types=", ".join(_lit(x) for x in terms["med_types"]),
        hosp_lvs=", ".join(_lit(x) for x in terms["hosp_lvs"]),
        ratio_bp=_lit(terms["ratio_bp"]),
        preexisting_ratio_bp=_lit(terms["preexisting_ratio_bp"]),
        limit_fen=_lit(terms["limit_fen"]))
    con.execute(f"CREATE OR REPLACE TEMP TABLE hospital_payouts AS {sql}")
    return con.table("hospital_payouts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="fund-data folder (the four Parquet files)")
    ap.add_argument("--product-year", type=int, default=2025, choices=sorted(TERMS))
    ap.add_argument("--out", required=True, help="Parquet file of the counted settlements")
    ap.add_argument("--held", default=None,
                    help="Parquet file with a setl_id column: settlements held for review "
                         "(e.g. the quarantined rows of a batch's eob.parquet), skipped")
    a = ap.parse_args()
    for f in ("settlements", "policies", "persons"):
        if not os.path.exists(os.path.join(a.data, f"{f}.parquet")):
            sys.exit(f"error: {a.data}: no {f}.parquet")
    t = time.perf_counter()
    con = duckdb.connect()
    held = ([r[0] for r in con.execute(
        f"SELECT DISTINCT setl_id FROM read_parquet({_lit(a.held)})").fetchall()]
        if a.held else ())
    rel = hospital_payouts(con, a.data, TERMS[a.product_year], held)
    con.execute(f"COPY hospital_payouts TO {_lit(a.out)} (FORMAT parquet)")
    n, total, paid = con.execute(
        "SELECT count(*), coalesce(sum(payout_fen), 0), count(*) FILTER (payout_fen > 0) "
        "FROM hospital_payouts").fetchone()
    del rel
    print(f"huhuibao-{a.product_year} hospital: {n:,} counted settlements, {paid:,} paid, "
          f"total {total // 100:,}.{total % 100:02d} yuan ({time.perf_counter() - t:.2f} s)")


if __name__ == "__main__":
    main()
