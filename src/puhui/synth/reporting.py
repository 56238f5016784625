"""Claim reporting lags: the claims file of a synthetic city (``puhui synth --claims``).

In claimed mode a settlement is paid once its claim is filed (``puhui claims run
--claims FILE``). The file made here lists the settlements a claim was filed for, each
with the date it was filed, so batches and triangles by filing date have a development
pattern (issue 22). For each settlement that is not a reversal:

- with probability ``DIRECT_SHARE`` the claim is filed the day of the settlement (the
  one-stop settlement at discharge that many Huiminbao products offer);
- with probability ``NEVER_SHARE`` no claim is ever filed (the settlement is not in the
  file; a batch lists its payout as NOT_CLAIMED);
- otherwise after a lognormal lag, median ``LAG_MEDIAN_DAYS`` and log-sd ``LAG_SIGMA``,
  rounded up to whole days and capped at ``CLAIM_WINDOW_DAYS`` (the Insurance Law's two
  years to claim, article 26): of these about 37 % are filed more than a month after
  the settlement, 10 % more than three months and 0.8 % more than a year.

The shares and the lag are assumptions, not estimates (no Huiminbao reporting-lag study
is published; Huhuibao 2021's cover ended 2022-06-30 and its paid total was counted to
2022-07-20, with later claims still to come). Reversals are not claims: a batch takes
them as the data brings them.

The draws come from a random stream of their own (``SeedSequence(seed, spawn_key=
(STREAM,))``, a child of the seed no generator spawns), after the city is written and
from its settlements file: the other files are the same bytes with or without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DIRECT_SHARE = 0.35
NEVER_SHARE = 0.03
LAG_MEDIAN_DAYS = 20.0
LAG_SIGMA = 1.2
CLAIM_WINDOW_DAYS = 730
#: the spawn key of the lags' own stream (the generators spawn at most a few children)
STREAM = 2201
#: the file's name beside the fund data
CLAIMS_FILE = "claims.parquet"


def filing_lags(n: int, seed: int) -> np.ndarray:
    """Days from settlement to filing for ``n`` settlements, -1 for never filed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM,)))
    u = rng.random(n)
    lag = rng.lognormal(np.log(LAG_MEDIAN_DAYS), LAG_SIGMA, n)
    days = np.minimum(np.ceil(lag), CLAIM_WINDOW_DAYS).astype(np.int64)
    days[u < DIRECT_SHARE] = 0
    days[u >= 1 - NEVER_SHARE] = -1
    return days


def claims_frame(settlements: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The claims file for a settlements frame (``setl_id``, ``setl_time``,
    ``refund_of``): one row per settlement a claim was filed for, ``setl_id`` and
    ``filed_date``, in the settlements' order."""
    original = settlements["refund_of"].isna().to_numpy()
    ids = settlements["setl_id"].to_numpy()[original]
    days = filing_lags(len(ids), seed)
    filed = days >= 0
    setl = pd.to_datetime(settlements["setl_time"]).to_numpy("datetime64[D]")[original]
    return pd.DataFrame({
        "setl_id": pd.Series(ids[filed], dtype=object).astype(str),
        "filed_date": (setl[filed] + days[filed].astype("timedelta64[D]"))
        .astype("datetime64[ns]")})


def write_claims_file(folder, seed: int):
    """Read the written city's settlements and write ``claims.parquet`` beside them;
    returns its path and row count."""
    from pathlib import Path

    from puhui.fund.files import read_parquet, write_parquet

    folder = Path(folder)
    settlements = read_parquet(folder / "settlements.parquet",
                               columns=["setl_id", "setl_time", "refund_of"])
    claims = claims_frame(settlements, seed)
    return write_parquet(claims, folder / CLAIMS_FILE), len(claims)
