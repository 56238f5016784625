"""``puhui reserve`` (issue 22 point 2): the paid triangle of a product from the ledger at
an as-of date by business date, and its IBNR.

The ledger is filled the way a product year is run: a synthetic city with reporting
lags (``synth --claims``), a claimed batch at the end of each quarter over the
settlements to date and the claims filed by then (``--as-of`` the quarter's end). The
truth is built from what the batches wrote out, not from the ledger: each batch's
eob.parquet rows (its signed entries), dated by the batch's as-of date, and each
settlement's date from settlements.parquet (a reversal's money belongs to its original),
summed into cells by a plain loop; the IBNR is set against chainladder called directly on
that loop's triangle, the earned premium against a day-by-day loop over the policies."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from conftest import puhui

from puhui.products.model import product_path

#: huhuibao-2024 with a 300 yuan hospital deductible, so a small city is paid every month
LOW = """
extends = "{base}"
id = "huhuibao-2024"
[[benefits]]
id = "hospital"
deductible = {{ amount = 300, claim_free = [] }}
"""
AS_OFS = ["2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31", "2025-03-31"]


def _extract(city, end: str, folder):
    """The settlements to ``end`` (and their lines) and the claims filed by then."""
    folder.mkdir()
    for f in ("persons.parquet", "policies.parquet"):
        shutil.copy(city / f, folder / f)
    st = pd.read_parquet(city / "settlements.parquet")
    st = st[st["setl_time"] <= pd.Timestamp(end)]
    st.to_parquet(folder / "settlements.parquet", index=False)
    ln = pd.read_parquet(city / "settlement_lines.parquet")
    ln[ln["setl_id"].isin(st["setl_id"])].to_parquet(folder / "settlement_lines.parquet",
                                                     index=False)
    cl = pd.read_parquet(city / "claims.parquet")
    cl[cl["filed_date"] <= pd.Timestamp(end)].to_parquet(folder / "claims.parquet", index=False)
    return folder


def _fill(url, city, product, work) -> dict[str, object]:
    """One claimed batch a quarter into ``url``: {as-of: the batch's EOB folder}."""
    outs = {}
    for end in AS_OFS:
        data = _extract(city, end, work / f"data-{end}")
        r = puhui("claims", "run", "--product", product, "--data", data, "--ledger", url,
                  "--batch", f"q-{end}", "--out", work / f"out-{end}", "--claims",
                  data / "claims.parquet", "--as-of", end, "--workers", "1")
        assert r.returncode == 0, r.stderr
        outs[end] = work / f"out-{end}"
    return outs


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("reserve")
    city = work / "city"
    r = puhui("synth", "--persons", 600, "--years", 2, "--seed", 7, "--out", city, "--claims")
    assert r.returncode == 0, r.stderr
    product = work / "low.toml"
    product.write_text(LOW.format(base=product_path("huhuibao-2024")), encoding="utf-8")
    url = f"sqlite:///{work / 'ledger.db'}"
    return {"url": url, "city": city, "product": product, "work": work,
            "eobs": _fill(url, city, product, work)}


def _months(a: dt.date, b: dt.date, per: int) -> int:
    """Periods from a's to b's (months per period ``per``)."""
    return (b.year * 12 + b.month - 1) // per - (a.year * 12 + a.month - 1) // per


def _cumulative(inc: dict, v, per: int) -> tuple[int, np.ndarray]:
    """The cumulative triangle (NaN below the diagonal) of increments ``inc`` keyed by
    (origin period, development period), periods of ``per`` months, to the valuation
    date ``v``: (the first origin period, the triangle)."""
    first = min(k for k, _ in inc)
    n = (v.year * 12 + v.month - 1) // per - first + 1
    cum = np.full((n, n), np.nan)
    for i in range(n):
        total = 0
        for j in range(n - i):
            total += inc.get((first + i, j), 0)
            cum[i, j] = total
    return first, cum


def _truth(filled, valuation: str, per: int) -> tuple[list[str], np.ndarray]:
    """Cumulative fen by origin period (settlement month or quarter) x development period,
    from the EOB files of the batches effective by ``valuation``; unknown cells NaN."""
    st = pd.read_parquet(filled["city"] / "settlements.parquet")
    day = dict(zip(st["setl_id"].astype(str), st["setl_time"].dt.date))
    original = {str(s): str(o) for s, o in zip(st["setl_id"], st["refund_of"]) if pd.notna(o)}
    v = dt.date.fromisoformat(valuation)
    inc: dict[tuple[int, int], int] = defaultdict(int)
    for end, out in filled["eobs"].items():
        paid = dt.date.fromisoformat(end)
        if paid > v:
            continue
        eob = pd.read_parquet(out / "eob.parquet")
        for sid, amt in zip(eob["setl_id"].astype(str), eob["payout_amt"]):
            if amt:
                origin = day[original.get(sid, sid)]
                key = (origin.year * 12 + origin.month - 1) // per
                inc[(key, _months(origin, paid, per))] += int(round(amt * 100))
    first, cum = _cumulative(inc, v, per)
    n = len(cum)
    labels = [(f"{(first + i) * per // 12}-{(first + i) * per % 12 + 1:02d}" if per == 1 else
               f"{(first + i) // 4}Q{(first + i) % 4 + 1}") for i in range(n)]
    return labels, cum


def by_running_total(fen: list[float]) -> list[float]:
    """Yuan per period from fen per period (floats), as the earned premium is rounded:
    the running total rounded to the fen, each period its difference (so the periods
    add up to the total to the fen)."""
    import itertools

    run = [round(x) for x in itertools.accumulate(fen)]
    return [(b - a) / 100 for a, b in zip([0, *run], run)]


def _reserve(filled, out, *args, url=None):
    r = puhui("reserve", "--ledger", url or filled["url"], "--product", "huhuibao-2024",
              "--out", out, *args)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "reserve.json").read_text(encoding="utf-8"))


def _mack_expected(cum: np.ndarray, labels: list[str], per: int, res: dict):
    """chainladder's IBNR and s.e. on the loop's triangle (origins ``labels``, periods of
    ``per`` months), with Mack's sigma approximation where the log-linear one failed
    (1e141 at 2024-09-30 by month), as reserve.json must then say (session 23)."""
    periods = pd.period_range(pd.Period(labels[0], freq="M" if per == 1 else "Q"),
                              periods=len(labels) + cum.shape[1])
    ends, starts = list(periods.end_time.normalize()), list(periods.start_time)
    ibnr, se = _mack_directly(cum, ends, starts)
    if se > 1e6 * ibnr.sum():
        assert any("Mack's own approximation" in w for w in res["warnings"])
        ibnr, se = _mack_directly(cum, ends, starts, sigma="mack")
    return ibnr, se


def _mack_directly(cum: np.ndarray, valuation_end: list[pd.Timestamp], origin_start,
                   tail=None, sigma="log-linear"):
    """chainladder's Mack chain ladder on the loop's triangle (fen): IBNR by origin and
    the total standard error; ``tail`` a ``TailCurve`` curve after the development, or
    a number: ``TailConstant(tail=F)``'s factor; ``sigma`` its sigma interpolation."""
    import chainladder as cl

    rows = [{"origin": origin_start[i], "valuation": valuation_end[i + j],
             "fen": cum[i, j]} for i in range(cum.shape[0]) for j in range(cum.shape[1])
            if not np.isnan(cum[i, j])]
    tri = cl.Triangle(pd.DataFrame(rows), origin="origin", development="valuation",
                      columns=["fen"], cumulative=True)
    dev = cl.Development(sigma_interpolation=sigma).fit_transform(tri)
    if isinstance(tail, float):
        dev = cl.TailConstant(tail=tail).fit_transform(dev)
    elif tail is not None:
        dev = cl.TailCurve(curve=tail).fit_transform(dev)
    mack = cl.MackChainladder().fit(dev)
    ibnr = np.nan_to_num(np.asarray(mack.ibnr_.values)[0, 0, :, -1])
    return ibnr, float(np.asarray(mack.total_mack_std_err_.values).ravel()[0])


@pytest.mark.parametrize("valuation,by,per", [("2024-09-30", "month", 1),
                                              ("2025-03-31", "quarter", 3)])
def test_triangle_and_ibnr_against_the_batches_own_output(filled, tmp_path, valuation, by,
                                                          per):
    """2024-09-30 by month: three later batches were recorded since, and what they paid
    is left out (by business date); 2025-03-31 by quarter: every batch."""
    res = _reserve(filled, tmp_path, "--as-of", valuation, "--by", by)
    labels, cum = _truth(filled, valuation, per)
    got = res["triangle"]
    assert got["origins"] == labels
    want = [[None if np.isnan(x) else round(x / 100, 2) for x in row] for row in cum]
    assert got["cumulative_paid_yuan"] == want
    assert np.nansum(cum[:, 0]) > 0
    assert (res["entries"]["after_as_of"] > 0) == (valuation < AS_OFS[-1])
    ibnr, se = _mack_expected(cum, labels, per, res)
    m = res["methods"]["chainladder"]
    by_origin = [r["ibnr_yuan"] for r in m["by_origin"]]
    assert np.allclose(by_origin, np.round(ibnr) / 100, atol=0.011)
    assert abs(m["ibnr_total_yuan"] - ibnr.sum() / 100) <= 0.01 * len(labels) + 1e-9
    assert m["ibnr_total_yuan"] > 0
    assert abs(m["std_err_total_yuan"] - se / 100) <= 0.01


@pytest.mark.parametrize("tail", ["exponential", "inverse_power"])
def test_a_tail_beyond_the_triangle(filled, tmp_path, tail):
    """``--tail``: the curve fitted to the loop triangle's factors by chainladder called
    directly (Development, TailCurve, Mack) gives the same IBNR by origin, and a tail
    factor above 1 adds to every origin's IBNR against no tail."""
    valuation = "2024-12-31"
    res = _reserve(filled, tmp_path / "t", "--as-of", valuation, "--tail", tail)
    plain = _reserve(filled, tmp_path / "p", "--as-of", valuation)
    assert (res["tail"], plain["tail"]) == (tail, "none")
    labels, cum = _truth(filled, valuation, 1)
    periods = pd.period_range(pd.Period(labels[0], freq="M"), periods=len(labels) + cum.shape[1])
    ibnr, _ = _mack_directly(cum, list(periods.end_time.normalize()),
                             list(periods.start_time), tail=tail)
    m = res["methods"]["chainladder"]
    assert np.allclose([r["ibnr_yuan"] for r in m["by_origin"]], np.round(ibnr) / 100,
                       atol=0.011)
    assert m["tail_factor"] > 1 and plain["methods"]["chainladder"]["tail_factor"] == 1
    more = [a["ibnr_yuan"] - b["ibnr_yuan"] for a, b in
            zip(m["by_origin"], plain["methods"]["chainladder"]["by_origin"])]
    assert all(d > 0 for d in more)


def test_a_tail_factor_given_from_outside(filled, tmp_path):
    """``--tail-factor 1.1``: chainladder called directly on the loop triangle
    (Development, TailConstant(tail=1.1), Mack) gives the same IBNR by origin and total
    s.e.; by hand, every origin's chain-ladder ultimate is the no-tail one x 1.1 and
    BF's IBNR is prior x P_i x (1 - 1 / (CDF_i x 1.1)) with the no-tail CDFs; every
    method says the constant tail and its factor."""
    valuation = "2024-12-31"
    args = ("--as-of", valuation, "--method", "all", "--loss-ratio", "0.9")
    res = _reserve(filled, tmp_path / "t", *args, "--tail-factor", "1.1")
    plain = _reserve(filled, tmp_path / "p", *args)
    assert res["tail"] == "constant"
    assert all(m["tail_factor"] == pytest.approx(1.1, rel=1e-12)
               for m in res["methods"].values())
    labels, cum = _truth(filled, valuation, 1)
    periods = pd.period_range(pd.Period(labels[0], freq="M"), periods=len(labels) + cum.shape[1])
    ibnr, se = _mack_directly(cum, list(periods.end_time.normalize()),
                              list(periods.start_time), tail=1.1)
    m = res["methods"]["chainladder"]
    assert np.allclose([r["ibnr_yuan"] for r in m["by_origin"]], np.round(ibnr) / 100,
                       atol=0.011)
    assert abs(m["std_err_total_yuan"] - se / 100) <= 0.01
    assert m["std_err_total_yuan"] > plain["methods"]["chainladder"]["std_err_total_yuan"]
    p = plain["methods"]["chainladder"]["by_origin"]
    assert all(abs(a["ultimate_yuan"] - b["ultimate_yuan"] * 1.1) <= 0.02
               for a, b in zip(m["by_origin"], p))
    assert m["by_origin"][0]["ibnr_yuan"] > 0      # the oldest origin develops too
    text = (tmp_path / "t" / "summary.md").read_text(encoding="utf-8")
    assert text.count("Tail beyond the last age: constant, factor 1.100000.") == 3
    f = plain["methods"]["chainladder"]["development_factors"]
    cdf = [float(np.prod(f[len(f) - i:])) for i in range(len(labels))]
    want = [0.9 * p * (1 - 1 / (c * 1.1)) for p, c in zip(res["earned_premium_yuan"], cdf)]
    assert np.allclose([r["ibnr_yuan"] for r in res["methods"]["bf"]["by_origin"]], want,
                       atol=0.011)


@pytest.mark.parametrize("args", [["--tail-factor", "0.9"], ["--tail-factor", "-1"],
                                  ["--tail-factor", "nan"], ["--tail-factor", "inf"],
                                  ["--tail-factor", "much"],
                                  ["--tail-factor", "1.1", "--tail", "exponential"]])
def test_a_bad_tail_factor_exits_2(filled, tmp_path, args):
    r = puhui("reserve", "--ledger", filled["url"], "--product", "huhuibao-2024",
              "--as-of", "2024-12-31", "--out", tmp_path / "o", *args)
    assert r.returncode == 2 and "--tail-factor" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("valuation", ["2024-06-30", "2025-03-31"])
def test_earned_premium_and_bornhuetter_ferguson(filled, tmp_path, valuation):
    """Earned premium by origin month from a day-by-day loop over the policies (to the
    as-of date), and BF's IBNR = prior x P_i x (1 - 1 / CDF_i) with the CDFs of the
    chain ladder's own factors in reserve.json: inside the product year, and after it
    (the months of 2025 are empty origins of the 2024 product: no premium, no IBNR)."""
    res = _reserve(filled, tmp_path, "--as-of", valuation, "--method", "all",
                   "--loss-ratio", "0.9")
    pol = pd.read_parquet(filled["city"] / "policies.parquet")
    pol = pol[pol["product_id"] == "huhuibao-2024"]
    earned: dict[str, float] = defaultdict(float)
    stop = dt.date.fromisoformat(valuation)
    for start, end, premium in zip(pol["start_date"].dt.date, pol["end_date"].dt.date,
                                   pol["premium"]):
        days = (end - start).days + 1
        d = start
        while d <= min(end, stop):
            earned[f"{d.year}-{d.month:02d}"] += premium * 100 / days
            d += dt.timedelta(days=1)
    origins = res["triangle"]["origins"]
    assert res["earned_premium_yuan"] == by_running_total([earned[o] for o in origins])
    if valuation >= "2024-12-31":      # the year earned: every fen written, none more
        assert round(sum(res["earned_premium_yuan"]) * 100) == round(pol["premium"].sum() * 100)
    f = res["methods"]["chainladder"]["development_factors"]
    # origin i's latest age is i periods short of the oldest's: CDF_i = f_{m-i} ... f_m
    cdf = [float(np.prod(f[len(f) - i:])) for i in range(len(origins))]
    assert len(f) == len(res["triangle"]["cumulative_paid_yuan"][0]) - 1
    bf = res["methods"]["bf"]
    want = [0.9 * p * (1 - 1 / c) for p, c in zip(res["earned_premium_yuan"], cdf)]
    assert np.allclose([r["ibnr_yuan"] for r in bf["by_origin"]], want, atol=0.011)
    assert "capecod" in res["methods"] and "loss_ratio" in res["methods"]["capecod"]


def test_postgres_gives_the_same_reserve(filled, tmp_path, postgres_server):
    """The same batches into a PostgreSQL ledger: the same reserve.json as SQLite's, paid,
    and reported (its filing dates recorded on PostgreSQL) with the bootstrap."""
    from tests.ledgers import new_postgres_database

    url = new_postgres_database(postgres_server)
    work = tmp_path / "pg"
    work.mkdir()
    _fill(url, filled["city"], filled["product"], work)
    for extra in ([], ["--triangle", "reported", "--bootstrap", "200", "--seed", "9"]):
        a = _reserve(filled, tmp_path / "a", "--as-of", "2024-12-31", "--method", "all",
                     *extra)
        b = _reserve(filled, tmp_path / "b", "--as-of", "2024-12-31", "--method", "all",
                     *extra, url=url)
        a.pop("ledger"), b.pop("ledger")
        assert a == b
    assert "filings" in a and "bootstrap" in a["methods"]["chainladder"]


def test_summary_says_what_it_did(filled, tmp_path):
    res = _reserve(filled, tmp_path, "--as-of", "2024-12-31")
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "huhuibao-2024" in text and "as of 2024-12-31" in text
    assert f"{res['methods']['chainladder']['ibnr_total_yuan']:,.2f}" in text
    assert "Reported triangle: not built" in text and res["reported_triangle"].startswith("not")


@pytest.mark.parametrize("args,message", [
    (["--product", "huhuibao-2099", "--as-of", "2024-12-31"], "holds no policies of it"),
    (["--product", "huhuibao-2024", "--as-of", "2023-12-31"], "no payment of huhuibao-2024"),
    (["--product", "huhuibao-2024", "--as-of", "31/12/2024"], "not a date"),
    (["--product", "huhuibao-2024", "--as-of", "2024-03-31", "--by", "quarter"],
     "reserving needs at least"),
    (["--product", "huhuibao-2024", "--as-of", "2024-12-31", "--loss-ratio", "85"],
     "as a fraction"),
])
def test_bad_input_exits_2_with_a_message(filled, tmp_path, args, message):
    r = puhui("reserve", "--ledger", filled["url"], "--out", tmp_path / "o", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_ledger_that_does_not_exist_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'nowhere.db'}"
    r = puhui("reserve", "--ledger", url, "--product", "huhuibao-2024", "--as-of",
              "2024-12-31", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no such ledger" in r.stderr
    assert not (tmp_path / "nowhere.db").exists()


def test_one_batch_gives_no_development_and_says_so(filled, tmp_path):
    """A ledger whose payments all have one business date (one batch at the year's end):
    the estimate cannot be read as "nothing to come", and reserve.json and the command
    say why; reserve.json is strict JSON (no NaN where a factor cannot be estimated)."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    r = puhui("claims", "run", "--product", filled["product"], "--data", filled["city"],
              "--ledger", url, "--batch", "all", "--out", tmp_path / "b", "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = puhui("reserve", "--ledger", url, "--product", "huhuibao-2024", "--as-of",
              "2025-12-31", "--out", tmp_path / "o")
    assert r.returncode == 0 and "one business date (2025-12-31)" in r.stderr, r.stderr
    text = (tmp_path / "o" / "reserve.json").read_text(encoding="utf-8")
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in reserve.json"))
    assert any("no development" in w for w in res["warnings"])
    assert None in res["methods"]["chainladder"]["development_factors"]


def test_a_tail_sigma_that_fails_is_said():
    """A constant tail on a triangle whose late links developed nothing (sigma 0):
    chainladder's extrapolated tail sigma is infinite; reserve.json's warnings say the
    s.e. is not given, and the IBNR stands (ultimate x F, by hand)."""
    from test_reserving_methods import _triangle

    from puhui.reserve_run import method_result, warnings_of
    from puhui.reserving.methods import MackChainLadder

    flat = [[100, 150, 170, 175, 175, 175], [110, 160, 180, 186, 186], [90, 140, 160, 165],
            [120, 170, 190], [100, 150], [105]]
    est = MackChainLadder(tail=1.2).fit(_triangle(flat))
    use = pd.DataFrame({"business_date": ["2024-01-31", "2024-02-29"]})
    said = warnings_of(use, {"chainladder": est})
    assert any("standard error with the constant tail is not given" in w for w in said)
    res = method_result(est)
    assert res["std_err_total_yuan"] is None
    assert res["by_origin"][0]["ultimate_yuan"] == pytest.approx(1.75 * 1.2, abs=0.011)
    plain = MackChainLadder().fit(_triangle(flat))
    assert not any("constant tail" in w for w in warnings_of(use, {"chainladder": plain}))


#: paid by month at 2024-12-31 of the 600-person city's quarterly batches (yuan): links
#: within a quarter develop nothing, and chainladder's log-linear sigma of the last link
#: came out at 2e22 (a Mack s.e. of 2.2e24 yuan on an IBNR of 5,972; review s23)
QUARTERLY_BY_MONTH = [
    [0.0, 0.0, 11209.94, 11209.94, 11209.94, 11473.2, 11473.2, 11473.2, 11473.2, 11473.2,
     11473.2, 11473.2],
    [0.0, 5662.23, 5662.23, 5662.23, 8296.25, 8296.25, 8296.25, 8849.66, 8849.66, 8849.66,
     8948.31],
    [4438.4, 4438.4, 4438.4, 6066.69, 6066.69, 6066.69, 6354.99, 6354.99, 6354.99, 6422.81],
    [0.0, 0.0, 2927.1, 2927.1, 2927.1, 2927.1, 2927.1, 2927.1, 2927.1],
    [0.0, 14037.71, 14037.71, 14037.71, 14386.75, 14386.75, 14386.75, 14577.32],
    [3029.15, 3029.15, 3029.15, 4631.78, 4631.78, 4631.78, 4785.85],
    [0.0, 0.0, 20161.71, 20161.71, 20161.71, 20203.58],
    [0.0, 10992.27, 10992.27, 10992.27, 11425.56],
    [8996.62, 8996.62, 8996.62, 10053.81], [0.0, 0.0, 5461.81], [0.0, 10055.85], [10369.96]]


def test_a_last_link_sigma_that_fails_falls_back_to_macks_approximation():
    """The log-linear sigma of the last link far above every other link's: the s.e. use
    Mack's approximation (as chainladder gives with sigma_interpolation='mack', called
    directly), the IBNR is unchanged, and the warning says so; RAA and a triangle whose
    late links are flat keep the log-linear fit (R's figures there)."""
    import warnings as w

    import chainladder as cl
    from test_reserving_methods import _triangle

    from puhui.reserve_run import warnings_of
    from puhui.reserving.methods import MackChainLadder, developed, to_chainladder

    tri = _triangle([[round(x * 100) for x in row] for row in QUARTERLY_BY_MONTH])
    with w.catch_warnings():
        w.simplefilter("ignore")
        est = MackChainLadder().fit(tri)
        plain = cl.MackChainladder().fit(developed(to_chainladder(tri), None))
        mack = cl.MackChainladder().fit(developed(to_chainladder(tri), None, "mack"))
    assert est.sigma_fallback_
    assert float(np.asarray(plain.total_mack_std_err_.values).ravel()[0]) > 1e20
    want = float(np.asarray(mack.total_mack_std_err_.values).ravel()[0])
    assert est.total_std_err_fen_ == pytest.approx(want, abs=0.5) and want < est.ibnr_fen_.sum()
    assert est.ibnr_fen_.sum() == pytest.approx(
        np.nansum(np.asarray(plain.ibnr_.values)), abs=len(QUARTERLY_BY_MONTH))
    use = pd.DataFrame({"business_date": ["2024-01-31", "2024-02-29"]})
    assert any("Mack's own approximation" in x for x in warnings_of(use, {"chainladder": est}))
    flat = [[100, 150, 170, 175, 175, 175], [110, 160, 180, 186, 186], [90, 140, 160, 165],
            [120, 170, 190], [100, 150], [105]]
    assert not MackChainLadder().fit(_triangle(flat)).sigma_fallback_


# --- the reported triangle (ledger schema 8: filing dates) ---------------------------

def _reported_truth(filled, valuation: str, per: int):
    """Cumulative fen by settlement period x filing period, by a plain loop: each
    settlement's net paid = the sum of its rows (and its reversals') in the EOB files of
    the batches effective by ``valuation``, all at the period its claim was filed (the
    city's claims.parquet); settlements paid with no claim, or filed after the
    valuation, are counted apart. Unknown cells NaN."""
    st = pd.read_parquet(filled["city"] / "settlements.parquet")
    day = dict(zip(st["setl_id"].astype(str), st["setl_time"].dt.date))
    original = {str(s): str(o) for s, o in zip(st["setl_id"], st["refund_of"]) if pd.notna(o)}
    claims = pd.read_parquet(filled["city"] / "claims.parquet")
    filed = dict(zip(claims["setl_id"].astype(str), claims["filed_date"].dt.date))
    v = dt.date.fromisoformat(valuation)
    net: dict[str, int] = defaultdict(int)
    for end, out in filled["eobs"].items():
        if dt.date.fromisoformat(end) > v:
            continue
        eob = pd.read_parquet(out / "eob.parquet")
        for sid, amt in zip(eob["setl_id"].astype(str), eob["payout_amt"]):
            if amt:
                net[original.get(sid, sid)] += int(round(amt * 100))
    inc: dict[tuple[int, int], int] = defaultdict(int)
    left = {"none": 0, "late": 0}
    for sid, fen in net.items():
        if sid not in filed:
            left["none"] += 1
        elif filed[sid] > v:
            left["late"] += 1
        else:
            origin = day[sid]
            key = (origin.year * 12 + origin.month - 1) // per
            inc[(key, _months(origin, filed[sid], per))] += fen
    _first, cum = _cumulative(inc, v, per)
    return cum, left, len(net) - left["none"] - left["late"]


@pytest.mark.parametrize("valuation,by,per", [("2024-12-31", "month", 1),
                                              ("2025-03-31", "quarter", 3)])
def test_reported_triangle_against_the_claims_file(filled, tmp_path, valuation, by, per):
    """``--triangle reported``: the cells equal the loop over the claims file and the EOB
    files to the fen, the counts of what is left out too, and the chain ladder's IBNR and
    s.e. equal chainladder called directly on the loop's triangle; it differs from the
    paid triangle (quarterly batches pay a claim at the quarter's end, the reported
    triangle puts it at its filing month)."""
    res = _reserve(filled, tmp_path / "r", "--as-of", valuation, "--by", by,
                   "--triangle", "reported")
    cum, left, n = _reported_truth(filled, valuation, per)
    got = res["triangle"]
    want = [[None if np.isnan(x) else round(x / 100, 2) for x in row] for row in cum]
    assert got["cumulative_reported_yuan"] == want
    assert "cumulative_paid_yuan" not in got and "reported_triangle" not in res
    assert res["basis"].startswith("reported:")
    f = res["filings"]
    assert (f["settlements"], f["without_filing_date"]["settlements"],
            f["filed_after_as_of"]["settlements"]) == (n, left["none"], left["late"])
    assert res["reported_to_date_yuan"] == round(float(np.nansum(
        [row[~np.isnan(row)][-1] for row in cum])) / 100, 2)
    ibnr, se = _mack_expected(cum, got["origins"], per, res)
    m = res["methods"]["chainladder"]
    assert np.allclose([r["ibnr_yuan"] for r in m["by_origin"]], np.round(ibnr) / 100,
                       atol=0.011)
    assert abs(m["std_err_total_yuan"] - se / 100) <= 0.01
    paid = _reserve(filled, tmp_path / "p", "--as-of", valuation, "--by", by)
    if by == "month":
        assert paid["triangle"]["cumulative_paid_yuan"] != want
    text = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert text.count("Reported triangle by") == 1 and "not yet filed" in text


def _one_quarter(filled, tmp_path, claims: pd.DataFrame, name: str, as_of="2024-03-31",
                 url=None, csv=False):
    """One claimed batch of the first quarter's data with the claims frame given."""
    data = filled["work"] / "data-2024-03-31"
    path = tmp_path / (f"{name}.csv" if csv else f"{name}.parquet")
    claims.to_csv(path, index=False) if csv else claims.to_parquet(path, index=False)
    url = url or f"sqlite:///{tmp_path / (name + '.db')}"
    return puhui("claims", "run", "--product", filled["product"], "--data", data,
                 "--ledger", url, "--batch", f"b-{name}", "--out", tmp_path / f"o-{name}",
                 "--claims", path, "--as-of", as_of, "--workers", "1"), url


def _first_claims(filled) -> pd.DataFrame:
    return pd.read_parquet(filled["work"] / "data-2024-03-31" / "claims.parquet")


@pytest.mark.parametrize("case,message", [
    ("null", "row(s) without a date"), ("text", "are not dates"),
    ("before", "filed before their settlement's date"),
    ("after", "filed after the batch's as-of date 2024-03-31"),
    ("twice", "named more than once with different filing dates")])
def test_bad_filing_dates_exit_2(filled, tmp_path, case, message):
    """Each bad filed_date is refused with a message, exit 2, and nothing written."""
    cl = _first_claims(filled)
    st = pd.read_parquet(filled["work"] / "data-2024-03-31" / "settlements.parquet")
    setl = dict(zip(st["setl_id"].astype(str), st["setl_time"]))
    csv = case == "text"
    if case == "null":
        cl.loc[3, "filed_date"] = pd.NaT
    elif case == "text":
        cl["filed_date"] = cl["filed_date"].dt.strftime("%Y-%m-%d")
        cl.loc[3, "filed_date"] = "31/01/2024"
    elif case == "before":
        cl.loc[3, "filed_date"] = setl[str(cl.loc[3, "setl_id"])].normalize() - pd.Timedelta(days=1)
    elif case == "after":
        cl.loc[3, "filed_date"] = pd.Timestamp("2024-04-05")
    else:
        cl = pd.concat([cl, cl.iloc[[3]].assign(filed_date=pd.Timestamp("2024-03-30"))])
    r, url = _one_quarter(filled, tmp_path, cl, case, csv=csv)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "1 " in r.stderr
    assert not (tmp_path / f"o-{case}" / "summary.json").exists()


def test_a_later_filing_date_keeps_the_first_and_says_so(filled, tmp_path):
    """A second batch whose claims file gives one claim another (later) date: the ledger
    keeps the first date (the claim was known from then), summary.json counts it and
    warns; a claims file without filed_date records nothing and the reported triangle
    of such a ledger is refused with exit 2."""
    from puhui.claims import ledger

    cl = _first_claims(filled)
    r, url = _one_quarter(filled, tmp_path, cl, "first")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o-first" / "summary.json").read_text(encoding="utf-8"))
    assert s["claims_file"]["filing_dates"] == {"recorded": s["claims_file"]["matched"],
                                                "already_recorded": 0, "kept_earlier_date": 0}
    moved = cl.copy()
    k = int(np.argmax(moved["filed_date"] < pd.Timestamp("2024-03-20")))
    first_day = moved.loc[k, "filed_date"]
    moved.loc[k, "filed_date"] = first_day + pd.Timedelta(days=2)
    r = puhui("claims", "run", "--product", filled["product"], "--data",
              filled["work"] / "data-2024-03-31", "--ledger", url, "--batch", "again",
              "--out", tmp_path / "o-again", "--claims", _saved(moved, tmp_path / "m.parquet"),
              "--as-of", "2024-03-31", "--workers", "1")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o-again" / "summary.json").read_text(encoding="utf-8"))
    assert s["claims_file"]["filing_dates"]["kept_earlier_date"] == 1
    assert s["claims_file"]["filing_dates"]["recorded"] == 0
    assert any("the first is kept" in w for w in s["warnings"])
    con = ledger.connect(url, must_exist=True)
    try:
        got = ledger.claim_filings(con, "huhuibao-2024")
    finally:
        con.close()
    day = dict(zip(got["setl_id"], got["filed_date"]))
    assert day[str(moved.loc[k, "setl_id"])] == first_day.strftime("%Y-%m-%d")
    assert len(got) == s["claims_file"]["matched"]
    r, bare = _one_quarter(filled, tmp_path, cl[["setl_id"]], "bare")
    assert r.returncode == 0, r.stderr
    r = puhui("reserve", "--ledger", bare, "--product", "huhuibao-2024", "--as-of",
              "2024-03-31", "--triangle", "reported", "--out", tmp_path / "rb")
    assert r.returncode == 2 and "has a filing date on record" in r.stderr, r.stderr


def _saved(frame: pd.DataFrame, path):
    frame.to_parquet(path, index=False)
    return path


def test_an_older_ledger_gains_the_filings_table(new_ledger):
    """A schema-7 ledger (its claim_filings dropped, its version set back) opened by any
    command: the table is there, empty (no filing dates can be made up), and the
    version is this one, on both backends."""
    from tests.ledgers import run_sql

    from puhui.claims import ledger

    url = new_ledger("old")
    ledger.connect(url).close()
    run_sql(url, "DROP TABLE claim_filings")
    run_sql(url, "UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    r = puhui("ledger", "status", "--ledger", url)
    assert r.returncode == 0, r.stderr
    assert run_sql(url, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == \
        ledger.SCHEMA_VERSION == "8"
    assert run_sql(url, "SELECT COUNT(*) FROM claim_filings")[0][0] == 0


# --- the ODP bootstrap in the command -------------------------------------------------

def test_bootstrap_reproducible_and_against_chainladder_directly(filled, tmp_path):
    """``--bootstrap 300 --seed 3``: the same bytes twice, other figures with another
    seed; mean, s.d. and quantiles equal chainladder's BootstrapODPSample called directly
    on the loop's triangle with that seed (each simulation's IBNR rounded to the fen by
    origin, as the command does)."""
    import chainladder as cl

    valuation = "2025-03-31"
    args = ("--as-of", valuation, "--by", "quarter", "--bootstrap", "300")
    a = _reserve(filled, tmp_path / "a", *args, "--seed", "3")
    _reserve(filled, tmp_path / "b", *args, "--seed", "3")
    c = _reserve(filled, tmp_path / "c", *args, "--seed", "4")
    for f in ("reserve.json", "summary.md"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    b = a["methods"]["chainladder"]["bootstrap"]
    assert b != c["methods"]["chainladder"]["bootstrap"]
    assert (b["simulations"], b["seed"]) == (300, 3)
    labels, cum = _truth(filled, valuation, 3)
    periods = pd.period_range(pd.Period(labels[0], freq="Q"), periods=2 * len(labels))
    rows = [{"origin": periods[i].start_time, "valuation": periods[i + j].end_time.normalize(),
             "fen": cum[i, j]} for i in range(len(labels)) for j in range(len(labels))
            if not np.isnan(cum[i, j])]
    tri = cl.Triangle(pd.DataFrame(rows), origin="origin", development="valuation",
                      columns=["fen"], cumulative=True)
    sample = cl.BootstrapODPSample(n_sims=300, random_state=3)
    sims = cl.Chainladder().fit(sample.fit_transform(tri))
    # this triangle's hat matrix is singular: chainladder resamples unadjusted residuals
    assert b["hat_adjusted"] is (sample.hat_ is not None)
    assert any("not hat-adjusted" in w for w in a["warnings"]) is not b["hat_adjusted"]
    by_origin = np.nan_to_num(np.asarray(sims.ibnr_.values)[:, 0, :, -1])
    totals = (np.sign(by_origin) * np.floor(np.abs(by_origin) + 0.5)).sum(axis=1)
    assert b["mean_yuan"] == pytest.approx(totals.mean() / 100, abs=0.006)
    assert b["std_dev_yuan"] == pytest.approx(totals.std(ddof=1) / 100, abs=0.006)
    want = np.quantile(totals, [0.5, 0.75, 0.9, 0.95, 0.995]) / 100
    assert list(b["quantiles_yuan"]) == ["50%", "75%", "90%", "95%", "99.5%"]
    assert np.allclose(list(b["quantiles_yuan"].values()), want, atol=0.006)
    assert "Over-dispersed Poisson bootstrap (300 simulations, seed 3)" in \
        (tmp_path / "a" / "summary.md").read_text(encoding="utf-8")
    plain = _reserve(filled, tmp_path / "d", "--as-of", valuation, "--by", "quarter")
    assert "bootstrap" not in plain["methods"]["chainladder"]


def test_bootstrap_spread_beside_macks_on_genins():
    """Taylor and Ashe's triangle (GenIns), where both apply: the command's bootstrap
    s.d. stands to Mack's s.e. (2,447,095) as England and Verrall (2002, table 2) found,
    the ODP prediction error about 16 % of the reserve against Mack's 13 % (a ratio of
    about 1.2: the two models differ); tolerance 1.1 to 1.3, the noise of 2,000
    simulations being about 1.6 % of the s.d."""
    from test_reserving_methods import GENINS, _triangle

    from puhui.reserve_run import bootstrap_result
    from puhui.reserving.methods import MackChainLadder

    tri = _triangle(GENINS, 1991)
    b = bootstrap_result(tri, 2000, 5)
    assert b["hat_adjusted"]
    mack = MackChainLadder(sigma_interpolation="mack").fit(tri)
    assert mack.total_std_err_fen_ == pytest.approx(2_447_095, rel=1e-4)
    assert 1.1 <= b["std_dev_yuan"] * 100 / mack.total_std_err_fen_ <= 1.3
    assert b["mean_yuan"] * 100 == pytest.approx(18_680_856, rel=0.02)
    q = list(b["quantiles_yuan"].values())
    assert q == sorted(q) and q[0] < b["mean_yuan"] * 1.1


@pytest.mark.parametrize("args,message", [
    (["--bootstrap", "9"], "give from 10 to 100,000"),
    (["--bootstrap", "100001"], "give from 10 to 100,000"),
    (["--bootstrap", "100000", "--by", "month"], "takes at most"),
    (["--bootstrap", "100", "--seed", "-1"], "--seed -1"),
    (["--seed", "5"], "without --bootstrap"),
    (["--bootstrap", "100", "--method", "bf", "--loss-ratio", "0.9"], "the chain ladder's"),
    (["--bootstrap", "100", "--tail", "exponential"], "last age only")])
def test_bad_bootstrap_options_exit_2(filled, tmp_path, args, message):
    r = puhui("reserve", "--ledger", filled["url"], "--product", "huhuibao-2024",
              "--as-of", "2024-12-31", "--out", tmp_path / "o", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
