"""The synthetic claims file with filing dates (``puhui synth --claims``,
puhui.synth.reporting): the other files keep their bytes, the file is what a claimed
batch reads, and the lags follow the documented shares and lognormal law."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import puhui
from scipy import stats

from puhui.claims.batch import read_claims
from puhui.fund.files import read_parquet
from puhui.synth import reporting as r


def test_the_claims_file_leaves_every_other_file_byte_for_byte(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = puhui("synth", "--persons", 300, "--years", 2, "--seed", 5, "--out", a, "--claims")
    rb = puhui("synth", "--persons", 300, "--years", 2, "--seed", 5, "--out", b)
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    assert sorted(p.name for p in a.iterdir()) == sorted(
        [p.name for p in b.iterdir()] + [r.CLAIMS_FILE])
    for p in b.iterdir():
        assert (a / p.name).read_bytes() == p.read_bytes(), p.name
    again = tmp_path / "c"
    puhui("synth", "--persons", 300, "--years", 2, "--seed", 5, "--out", again, "--claims")
    assert (again / r.CLAIMS_FILE).read_bytes() == (a / r.CLAIMS_FILE).read_bytes()
    claims = read_claims(a / r.CLAIMS_FILE)      # what `claims run --claims` reads
    settlements = read_parquet(a / "settlements.parquet")
    originals = set(settlements.loc[settlements.refund_of.isna(), "setl_id"].astype(str))
    assert claims <= originals and len(claims) > 0.9 * len(originals)


def test_claims_with_dirty_data_is_refused(tmp_path):
    res = puhui("synth", "--persons", 50, "--years", 1, "--seed", 1, "--out", tmp_path / "d",
                "--dirty", "--claims")
    assert res.returncode == 2 and "--claims" in res.stderr


def test_each_claim_is_filed_on_or_after_its_settlement_within_the_window(small_city_dir):
    settlements = read_parquet(small_city_dir / "settlements.parquet",
                               columns=["setl_id", "setl_time", "refund_of"])
    claims = r.claims_frame(settlements, seed=11)
    assert claims.setl_id.is_unique
    setl = settlements.set_index(settlements.setl_id.astype(str)).setl_time
    lag = (claims.filed_date.to_numpy() - pd.to_datetime(
        setl.loc[claims.setl_id]).to_numpy()).astype("timedelta64[D]").astype(int)
    assert lag.min() == 0 and lag.max() <= r.CLAIM_WINDOW_DAYS
    reversals = set(settlements.loc[settlements.refund_of.notna(), "setl_id"].astype(str))
    assert not reversals & set(claims.setl_id)


def test_the_lags_follow_the_stated_shares_and_law():
    """200,000 draws: the shares filed the same day and never filed within four binomial
    standard errors of DIRECT_SHARE and NEVER_SHARE; the lags of the others (those below
    the cap, rounded up to whole days) against the lognormal's distribution function by
    a Kolmogorov-Smirnov distance on whole days."""
    n = 200_000
    days = r.filing_lags(n, seed=3)
    assert np.array_equal(days, r.filing_lags(n, seed=3))
    never = r.NEVER_SHARE
    assert abs((days == -1).mean() - never) < 4 * np.sqrt(never * (1 - never) / n)
    lagged_share = 1 - r.DIRECT_SHARE - r.NEVER_SHARE
    # same day: the direct share only (a lognormal lag rounded up is at least one day)
    assert abs((days == 0).mean() - r.DIRECT_SHARE) < 4 * np.sqrt(
        r.DIRECT_SHARE * (1 - r.DIRECT_SHARE) / n)
    lagged = days[days > 0]
    assert abs(len(lagged) / n - lagged_share) < 4 * np.sqrt(lagged_share / n)
    law = stats.lognorm(s=r.LAG_SIGMA, scale=r.LAG_MEDIAN_DAYS)
    grid = np.arange(1, 366)
    empirical = np.searchsorted(np.sort(lagged), grid, side="right") / len(lagged)
    # P(ceil(L) <= d) = P(L <= d)
    assert np.abs(empirical - law.cdf(grid)).max() < 0.01
    # the cap holds what lies beyond two years: P(L > 729) of the lagged, a Poisson count
    capped = int((lagged == r.CLAIM_WINDOW_DAYS).sum())
    expected = len(lagged) * law.sf(r.CLAIM_WINDOW_DAYS - 1)
    assert lagged.max() == r.CLAIM_WINDOW_DAYS
    assert abs(capped - expected) < 4 * np.sqrt(expected)
