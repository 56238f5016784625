"""Actual against estimate: IBNR of *reported* claims on a synthetic city with reporting
lags (issue 22), before the ledger has business dates.

A city is written with ``puhui synth --claims`` (claims.parquet: the filing date of each
claim). At each as-of date, the claims filed by then give a reported triangle by
settlement month x month of filing (amounts: each settlement's personal part,
``psn_part_amt``, the amount Huiminbao benefits start from; not payouts), and Mack's
chain ladder (with and without a tail) estimates what is still to be filed for the
settlements up to that date; the actual is what the claims file holds as filed later.

    python benchmarks/bench_reserving_lags.py [--persons 20000] [--years 2] [--seed 20240101]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from puhui.fund.files import read_parquet
from puhui.money import yuan_to_fen
from puhui.reserving.methods import MackChainLadder
from puhui.reserving.triangles import build_triangle


def reported(folder: Path) -> pd.DataFrame:
    s = read_parquet(folder / "settlements.parquet",
                     columns=["setl_id", "setl_time", "psn_part_amt"])
    c = read_parquet(folder / "claims.parquet")
    f = c.merge(s, on="setl_id")
    f["amount_fen"] = yuan_to_fen(f.psn_part_amt)
    return f


def as_of_dates(f: pd.DataFrame) -> list[str]:
    first, last = f.setl_time.min(), f.setl_time.max()
    ends = pd.date_range(first + pd.offsets.MonthEnd(6), last, freq="3ME")
    return [d.date().isoformat() for d in ends]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=20000)
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20240101)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "city"
        subprocess.run([sys.executable, "-m", "puhui", "synth", "--persons",
                        str(args.persons), "--years", str(args.years), "--seed",
                        str(args.seed), "--out", str(out), "--claims"], check=True,
                       stdout=subprocess.DEVNULL)
        f = reported(out)
    print("as of       actual   | chain ladder (s.e.)  | exponential tail | inverse power"
          "   (yuan, thousands)")
    for as_of in as_of_dates(f):
        known = f[f.setl_time <= as_of]
        tri = build_triangle(known, origin="setl_time", development="filed_date",
                             as_of=as_of, grain="M")
        actual = int(known.amount_fen[known.filed_date > pd.Timestamp(as_of)].sum())
        cells = []
        for tail in (None, "exponential", "inverse_power"):
            m = MackChainLadder(tail=tail).fit(tri)
            cells.append(f"{m.ibnr_total_fen_ / 1e5:8,.0f} ({m.total_std_err_fen_ / 1e5:5,.0f})")
        print(f"{as_of}  {actual / 1e5:8,.0f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
