"""``puhui monitor`` (issue 22 point 3): a product year to date from the ledger and its
pricing.json.

Two ledgers. A 600-person synthetic city with reporting lags run the way a product year
is run: a claimed batch at the end of each month over the settlements to date and the
claims filed by then (``--as-of`` the month's end); the truth is built from what the
batches wrote out (their eob.parquet rows, each dated by its batch's as-of date, each
settlement's date from settlements.parquet) and from plain day-by-day loops over
policies.parquet, never from the monitor's code. And a ledger written by hand (SQL, no
claims engine) whose costs from month 4 on are 1.5 times the priced ones under one
benefit, each month's cost paid 60 % in the month and 40 % the month after: the monitor's
A/E for months 4 to 6 is 1.5 under that benefit and month 4 is signalled.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from conftest import puhui
from test_reports import english_runs, raw_values
from test_reserve_command import LOW, _extract, _mack_directly, _truth, by_running_total

from puhui.products.model import product_path

MONTH_ENDS = ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31",
              "2024-06-30", "2024-07-31"]
#: a pricing.json of the low-deductible product (the figures are the test's: the monitor
#: reads them, it does not check the pricing)
PURE = {"hospital": 180.0, "special_drugs": 40.0, "proton": 2.0, "cart": 1.5,
        "overseas_drugs": 0.25}


def _pricing(folder, product_id="huhuibao-2024", **extra):
    doc = {"product_id": product_id, "pure_premium": {**PURE, "total": sum(PURE.values())},
           "expected_loss_ratio": 1.1, "process_sd_per_policy": 1800.0,
           "loss_ratio_interval": {"level": 0.9, "lower": 0.8, "upper": 1.6}, **extra}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pricing.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder / "pricing.json"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The city, its ledger filled by a claimed batch at each month's end."""
    work = tmp_path_factory.mktemp("monitor")
    c = work / "city"
    r = puhui("synth", "--persons", 600, "--years", 2, "--seed", 7, "--out", c, "--claims")
    assert r.returncode == 0, r.stderr
    product = work / "low.toml"
    product.write_text(LOW.format(base=product_path("huhuibao-2024")), encoding="utf-8")
    url = f"sqlite:///{work / 'ledger.db'}"
    eobs = {}
    for end in MONTH_ENDS:
        data = _extract(c, end, work / f"data-{end}")
        r = puhui("claims", "run", "--product", product, "--data", data, "--ledger", url,
                  "--batch", f"m-{end}", "--out", work / f"out-{end}", "--claims",
                  data / "claims.parquet", "--as-of", end, "--workers", "1")
        assert r.returncode == 0, r.stderr
        eobs[end] = work / f"out-{end}"
    return {"url": url, "city": c, "eobs": eobs, "pricing": _pricing(work / "priced")}


def _monitor(url, out, as_of, pricing, *args):
    r = puhui("monitor", "--ledger", url, "--product", "huhuibao-2024", "--as-of", as_of,
              "--pricing", pricing, "--out", out, *args)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "monitor.json").read_text(encoding="utf-8")), r


def _policy_days(city, as_of: dt.date):
    """(month, premium yuan / cover days, share of a policy-year) for each covered day
    of each huhuibao-2024 policy up to ``as_of``: a plain loop."""
    pol = pd.read_parquet(city / "policies.parquet")
    pol = pol[pol["product_id"] == "huhuibao-2024"]
    for start, end, premium in zip(pol["start_date"].dt.date, pol["end_date"].dt.date,
                                   pol["premium"]):
        days = (end - start).days + 1
        d = start
        while d <= min(end, as_of):
            yield f"{d.year}-{d.month:02d}", premium / days, 1 / days
            d += dt.timedelta(days=1)


def _paid_loop(city, valuation: dt.date):
    """{(settlement month, benefit): fen} and {settlement: net fen} from the EOB files of
    the batches effective by ``valuation``."""
    st = pd.read_parquet(city["city"] / "settlements.parquet")
    day = dict(zip(st["setl_id"].astype(str), st["setl_time"].dt.date))
    original = {str(s): str(o) for s, o in zip(st["setl_id"], st["refund_of"]) if pd.notna(o)}
    by, per_setl = defaultdict(int), defaultdict(int)
    for end, out in city["eobs"].items():
        if dt.date.fromisoformat(end) > valuation:
            continue
        eob = pd.read_parquet(out / "eob.parquet")
        for sid, ben, amt in zip(eob["setl_id"].astype(str), eob["benefit"], eob["payout_amt"]):
            if amt:
                o = original.get(sid, sid)
                by[(f"{day[o].year}-{day[o].month:02d}", ben)] += int(round(amt * 100))
                per_setl[o] += int(round(amt * 100))
    return by, per_setl


@pytest.mark.parametrize("as_of", ["2024-06-30", "2024-07-15"])
def test_earned_paid_and_expected_against_plain_loops(city, tmp_path, as_of):
    """At a month's end (a batch recorded since, effective later, left out) and in the
    middle of a month (the month partly earned and exposed)."""
    res, _ = _monitor(city["url"], tmp_path, as_of, city["pricing"])
    day = dt.date.fromisoformat(as_of)
    earned, expo = defaultdict(float), defaultdict(float)
    for month, per_day, share in _policy_days(city["city"], day):
        earned[month] += per_day * 100
        expo[month] += share
    months = [m["month"] for m in res["by_month"]]
    assert months == [f"2024-{k:02d}" for k in range(1, day.month + 1)]
    assert [m["earned_yuan"] for m in res["by_month"]] == by_running_total(
        [earned[m] for m in months])
    assert res["earned_premium_yuan"] == pytest.approx(round(sum(earned[m] for m in months))
                                                       / 100, abs=1e-9)
    paid, _ = _paid_loop(city, day)
    assert res["paid_yuan"] == pytest.approx(sum(paid.values()) / 100, abs=1e-9)
    got = {(r["month"], r["benefit"]): r for r in res["by_month_benefit"]}
    for (month, ben), fen in paid.items():
        assert got[(month, ben)]["paid_yuan"] == pytest.approx(fen / 100, abs=1e-9)
    for (month, ben), r in got.items():
        assert r["paid_yuan"] == pytest.approx(paid.get((month, ben), 0) / 100, abs=1e-9)
        assert r["expected_yuan"] == round(PURE[ben] * 100 * expo[month]) / 100
    assert sum(paid.values()) > 0 and len({b for _, b in paid}) >= 1


def test_ibnr_and_the_loss_ratio_from_their_parts(city, tmp_path):
    """IBNR by month: chainladder called directly on the loop's triangle; the loss
    ratio (paid + IBNR) / earned and its interval by hand (lognormal with Mack's s.e.,
    quantiles from the standard library's NormalDist); each month's IBNR split over the
    benefits adds up to it, in proportion to the month's paid by benefit."""
    res, r = _monitor(city["url"], tmp_path, "2024-06-30", city["pricing"])
    filled = {"city": city["city"], "eobs": city["eobs"]}
    labels, cum = _truth(filled, "2024-06-30", 1)
    periods = pd.period_range(pd.Period(labels[0], freq="M"), periods=2 * len(labels))
    ibnr, se = _mack_directly(cum, list(periods.end_time.normalize()),
                              list(periods.start_time))
    by_month = {m["month"]: m for m in res["by_month"]}
    for label, x in zip(labels, ibnr):
        assert by_month[label]["ibnr_yuan"] == pytest.approx(round(x) / 100, abs=0.011)
    assert res["ibnr_std_err_yuan"] == pytest.approx(se / 100, abs=0.011)
    paid, ib, ep = res["paid_yuan"], res["ibnr_yuan"], res["earned_premium_yuan"]
    lr = res["comprehensive_loss_ratio"]
    assert lr["value"] == pytest.approx((paid + ib) / ep, abs=1e-4)
    assert lr["priced"] == 1.1
    s2 = math.log(1 + (res["ibnr_std_err_yuan"] / ib) ** 2)
    z = NormalDist().inv_cdf(0.95)
    lo = math.exp(math.log(ib) - s2 / 2 - z * math.sqrt(s2))
    hi = math.exp(math.log(ib) - s2 / 2 + z * math.sqrt(s2))
    assert lr["interval"]["lower"] == pytest.approx((paid + lo) / ep, abs=2e-4)
    assert lr["interval"]["upper"] == pytest.approx((paid + hi) / ep, abs=2e-4)
    assert lr["interval"]["lower"] < lr["value"] < lr["interval"]["upper"]
    for m in res["by_month"]:
        rows = [x for x in res["by_month_benefit"] if x["month"] == m["month"]]
        assert sum(round(x["ibnr_yuan"] * 100) for x in rows) == round(m["ibnr_yuan"] * 100)
        total_paid = sum(max(x["paid_yuan"], 0) for x in rows)
        for x in rows:
            if total_paid > 0:
                assert x["ibnr_yuan"] == pytest.approx(
                    m["ibnr_yuan"] * max(x["paid_yuan"], 0) / total_paid, abs=0.011)
        assert m["actual_yuan"] == pytest.approx(m["paid_yuan"] + m["ibnr_yuan"], abs=1e-6)
    assert "loss ratio" in r.stdout and "monitor.html" in r.stdout


def test_premium_deficiency_by_hand(city, tmp_path):
    """The unexpired premium and the remaining exposure from a day-by-day loop over the
    policies after the as-of date; the credibility from the settlements' net payouts in
    the EOB files; the deficiency = max(0, priced x exposure x (Z A/E + 1 - Z) - UPR)."""
    res, _ = _monitor(city["url"], tmp_path, "2024-06-30", city["pricing"])
    d = res["premium_deficiency"]
    upr, rest = 0.0, 0.0
    pol = pd.read_parquet(city["city"] / "policies.parquet")
    pol = pol[pol["product_id"] == "huhuibao-2024"]
    cut = dt.date(2024, 6, 30)
    for start, end, premium in zip(pol["start_date"].dt.date, pol["end_date"].dt.date,
                                   pol["premium"]):
        days = (end - start).days + 1
        left = max(0, (end - max(start, cut + dt.timedelta(days=1))).days + 1)
        upr += premium * 100 * left / days
        rest += left / days
    assert d["unexpired_premium_yuan"] == round(upr) / 100
    assert d["remaining_exposure_policy_years"] == pytest.approx(rest, abs=1e-4)
    _, per_setl = _paid_loop(city, cut)
    x = np.array([v for v in per_setl.values() if v > 0], dtype=float)
    cv = x.std(ddof=1) / x.mean()
    z = min(1.0, math.sqrt(len(x) / (1082 * (1 + cv * cv))))
    assert d["credibility"]["claims"] == len(x)
    assert d["credibility"]["Z"] == pytest.approx(z, abs=1e-4)
    ae = res["year_to_date"]["actual_to_expected"]
    assert ae == pytest.approx(res["year_to_date"]["actual_yuan"]
                               / res["year_to_date"]["expected_yuan"], abs=1e-4)
    priced = sum(PURE.values()) * rest
    expected = priced * (z * ae + 1 - z)
    assert d["expected_claims_yuan"] == pytest.approx(expected, rel=1e-3)
    assert d["deficiency_yuan"] == pytest.approx(max(0.0, expected - upr / 100), abs=1.0)
    assert d["deficient"] == (d["deficiency_yuan"] > 0)


def test_the_report_pages(city, tmp_path):
    """monitor.html in English and Chinese: no raw Python value, the figures of
    monitor.json on the page, no English sentence left on the Chinese one; monitor.md
    says the headline; the language changes the page, not monitor.json."""
    en, _ = _monitor(city["url"], tmp_path / "en", "2024-06-30", city["pricing"])
    zh, _ = _monitor(city["url"], tmp_path / "zh", "2024-06-30", city["pricing"],
                     "--lang", "zh")
    assert en == zh
    for lang in ("en", "zh"):
        page = (tmp_path / lang / "monitor.html").read_text(encoding="utf-8")
        assert raw_values(page) == []
        assert f"{en['earned_premium_yuan']:,.2f}" in page
        assert f"{en['ibnr_yuan']:,.2f}" in page
    zh_page = (tmp_path / "zh" / "monitor.html").read_text(encoding="utf-8")
    assert english_runs(zh_page) == [] and "综合赔付率" in zh_page
    assert len(english_runs((tmp_path / "en" / "monitor.html").read_text("utf-8"))) > 3
    md = (tmp_path / "en" / "monitor.md").read_text(encoding="utf-8")
    assert "huhuibao-2024 as of 2024-06-30" in md and f"{en['paid_yuan']:,.2f}" in md


# -- drift: a ledger written by hand -------------------------------------------------------

N_POLICIES = 1200
HAND_PURE = {"hospital": 100.0, "special_drugs": 30.0}
DRIFT = 1.5            # hospital's cost from month 4 on, times the priced


def _hand_ledger(tmp_path, drift: float, url: str | None = None):
    """1,200 policies of 2024 (premium 120 yuan); each month m and benefit b cost
    round(pure_b x exposure_m x factor) fen, factor ``drift`` for hospital from April
    on and 1 otherwise, paid 60 % at the month's end and the rest at the next month's
    end, up to 2024-06-30 (June's 40 % not yet paid). Written with SQL: no claims engine.
    Returns (url, {(month, benefit): the month's cost in fen})."""
    from tests.ledgers import run_sql

    from puhui.claims import ledger

    url = url or f"sqlite:///{tmp_path / 'hand.db'}"
    ledger.connect(url).close()
    run_sql(url, "INSERT INTO policies VALUES " + ",".join(
        f"('P{i}', 'S{i}', 'hand-2024', '2024-01-01', '2024-12-31', 12000, 0, 1, 0)"
        for i in range(N_POLICIES)))
    ends = [dt.date(2024, m + 1, 1) - dt.timedelta(days=1) for m in range(1, 7)] + [
        dt.date(2024, 6, 30)]
    for k, e in enumerate(ends[:6]):
        run_sql(url, "INSERT INTO batches VALUES (?, 'claimed', 'hand-2024', 'h', 'h', ?, ?,"
                " 'done', ?)", (f"b{k + 1}", f"{e}T23:00:00", f"{e}T23:00:00", str(e)))
    cost, rows, n = {}, [], 0
    for m in range(1, 7):
        days = (ends[m - 1] - dt.date(2024, m, 1)).days + 1
        for b, pure in HAND_PURE.items():
            f = drift if (b == "hospital" and m >= 4) else 1.0
            c = round(pure * 100 * N_POLICIES * days / 366 * f)
            cost[(f"2024-{m:02d}", b)] = c
            first = round(c * 0.6)
            for part, k in ((first, m), (c - first, m + 1)):
                if k > 6:
                    continue
                n += 1
                sid = f"s{m}{b}"
                rows.append((sid if k == m else f"{sid}-late", sid, b, f"S{m}", f"P{m}", part,
                             "pay", f"b{k}", f"{ends[k - 1]}T23:00:00", str(ends[k - 1])))
        for b in HAND_PURE:
            run_sql(url, "INSERT INTO settlement_dates VALUES (?, ?)",
                    (f"s{m}{b}", f"2024-{m:02d}-15"))
    for row in rows:
        run_sql(url, "INSERT INTO payments (setl_id, applies_to, benefit, psn_no, policy_no,"
                " payout_fen, kind, batch_id, recorded_at, business_date) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    return url, cost


def _hand_pricing(folder):
    return _pricing(folder, "hand-2024", pure_premium={**HAND_PURE, "total": 130.0},
                    expected_loss_ratio=130 / 120, process_sd_per_policy=60.0)


def test_a_drift_from_month_4_is_seen_in_month_4(tmp_path):
    """Hospital costs 1.5 times the priced from April: the monitor's A/E is 1.5 for
    hospital in April to June and 1 before and for the other benefit (each month's
    60/40 pattern is the chain ladder's, so June's IBNR is its 40 % exactly), April's
    total is above its band and March's within; the year's A/E and the projected loss
    ratio carry it, and the same ledger without the drift is not signalled."""
    url, cost = _hand_ledger(tmp_path, DRIFT)
    r = puhui("monitor", "--ledger", url, "--product", "hand-2024", "--as-of", "2024-06-30",
              "--pricing", _hand_pricing(tmp_path / "p"), "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "o" / "monitor.json").read_text(encoding="utf-8"))
    cells = {(x["month"], x["benefit"]): x for x in res["by_month_benefit"]}
    for (month, b), c in cost.items():
        want = DRIFT if (b == "hospital" and month >= "2024-04") else 1.0
        assert cells[(month, b)]["actual_yuan"] == pytest.approx(c / 100, abs=0.05)
        assert cells[(month, b)]["actual_to_expected"] == pytest.approx(want, abs=2e-4)
    signals = {m["month"]: m["signal"] for m in res["by_month"]}
    assert signals == {"2024-01": "within", "2024-02": "within", "2024-03": "within",
                       "2024-04": "above", "2024-05": "above", "2024-06": "above"}
    april = next(m for m in res["by_month"] if m["month"] == "2024-04")
    assert april["actual_to_expected"] == pytest.approx((100 * DRIFT + 30) / 130, abs=2e-4)
    assert "2024-04: A/E" in r.stdout
    (tmp_path / "base").mkdir()
    base_url, _ = _hand_ledger(tmp_path / "base", 1.0)
    r = puhui("monitor", "--ledger", base_url, "--product", "hand-2024", "--as-of",
              "2024-06-30", "--pricing", _hand_pricing(tmp_path / "p"), "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    base = json.loads((tmp_path / "b" / "monitor.json").read_text(encoding="utf-8"))
    assert {m["signal"] for m in base["by_month"]} == {"within"}
    assert base["year_to_date"]["actual_to_expected"] == pytest.approx(1.0, abs=2e-4)
    assert res["year_to_date"]["actual_to_expected"] > 1.1
    assert res["premium_deficiency"]["projected_loss_ratio"] > \
        base["premium_deficiency"]["projected_loss_ratio"]


#: the amount columns of the fund files (settlements; settlement lines)
AMOUNTS = ["medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
           "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay",
           "psn_part_amt"]


def test_a_city_whose_costs_double_from_april(city, tmp_path):
    """The same city with every settlement from 2024-04-01 on (a reversal by its
    original's date) at twice its amounts, lines too (the identities hold to the fen),
    run through the same monthly claimed batches to June into a new ledger. January to
    March pay the same to the fen (nothing else changed before April: the accumulators
    run forward); from April each settlement pays at least twice (a deductible already
    met is met again, one not yet met is met sooner), so the month's paid and its A/E are
    at least twice the undoubled city's (1.8 times for the A/E: the IBNR's development
    factors are shared by the months). With 17 policy-years a month, a month's band is
    too wide for a signal (docs/reserving.md): the hand-built ledger tests that."""
    import shutil

    src, dst = city["city"], tmp_path / "city2"
    shutil.copytree(src, dst)
    st = pd.read_parquet(src / "settlements.parquet")
    day = dict(zip(st["setl_id"], st["setl_time"]))
    origin = st["refund_of"].where(st["refund_of"].notna(), st["setl_id"]).map(day)
    late = origin >= pd.Timestamp("2024-04-01")
    for c in AMOUNTS:
        st.loc[late, c] = st.loc[late, c] * 2
    st.to_parquet(dst / "settlements.parquet", index=False)
    ln = pd.read_parquet(src / "settlement_lines.parquet")
    on = ln["setl_id"].isin(st.loc[late, "setl_id"])
    for c in ("amount", "preselfpay_amt"):
        ln.loc[on, c] = ln.loc[on, c] * 2
    ln.to_parquet(dst / "settlement_lines.parquet", index=False)
    assert puhui("validate", dst).returncode == 0
    product = tmp_path / "low.toml"
    product.write_text(LOW.format(base=product_path("huhuibao-2024")), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for end in MONTH_ENDS[:6]:
        data = _extract(dst, end, tmp_path / f"data-{end}")
        r = puhui("claims", "run", "--product", product, "--data", data, "--ledger", url,
                  "--batch", f"m-{end}", "--out", tmp_path / f"out-{end}", "--claims",
                  data / "claims.parquet", "--as-of", end, "--workers", "1")
        assert r.returncode == 0, r.stderr
    two, _ = _monitor(url, tmp_path / "two", "2024-06-30", city["pricing"])
    one, _ = _monitor(city["url"], tmp_path / "one", "2024-06-30", city["pricing"])
    a = {m["month"]: m for m in one["by_month"]}
    b = {m["month"]: m for m in two["by_month"]}
    for month in ("2024-01", "2024-02", "2024-03"):
        assert b[month]["paid_yuan"] == a[month]["paid_yuan"]
        assert b[month]["expected_yuan"] == a[month]["expected_yuan"]
    for month in ("2024-04", "2024-05", "2024-06"):
        assert b[month]["paid_yuan"] >= 2 * a[month]["paid_yuan"] - 0.01 > 0
        assert b[month]["actual_to_expected"] >= 1.8 * a[month]["actual_to_expected"]
    assert two["year_to_date"]["actual_to_expected"] > one["year_to_date"][
        "actual_to_expected"] * 1.3


def test_postgres_gives_the_same_monitor(tmp_path, postgres_server):
    """The hand-built ledger written into PostgreSQL: the same monitor.json as SQLite's
    (the ledger's URL aside)."""
    from tests.ledgers import new_postgres_database

    pricing = _hand_pricing(tmp_path / "p")
    out = {}
    for name, url in (("sqlite", None), ("pg", new_postgres_database(postgres_server))):
        (tmp_path / name).mkdir()
        url, _ = _hand_ledger(tmp_path / name, DRIFT, url)
        r = puhui("monitor", "--ledger", url, "--product", "hand-2024", "--as-of",
                  "2024-05-20", "--pricing", pricing, "--out", tmp_path / f"o-{name}")
        assert r.returncode == 0, r.stderr
        out[name] = json.loads((tmp_path / f"o-{name}" / "monitor.json").read_text("utf-8"))
        out[name].pop("ledger")
    assert out["sqlite"] == out["pg"]
    assert out["pg"]["premium_deficiency"]["unexpired_premium_yuan"] > 0


# -- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("case,message", [
    ("no ledger", "no such ledger"),
    ("no product", "holds no policies of it"),
    ("other product", "prices 'huhuibao-2025', not --product huhuibao-2024"),
    ("before the year", "before the policy year of huhuibao-2024"),
    ("not a date", "not a date"),
    ("two months in", "paid triangle has 2 month(s) and its IBNR needs at least 3"),
    ("not json", "not a JSON file"),
    ("no pricing file", "no such file"),
    ("no pure premium", "key pure_premium"),
    ("loss ratio text", "key expected_loss_ratio"),
    ("negative benefit", "key pure_premium.hospital"),
])
def test_bad_input_exits_2_with_a_message(city, tmp_path, case, message):
    url, product, as_of = city["url"], "huhuibao-2024", "2024-06-30"
    pricing = city["pricing"]
    if case == "no ledger":
        url = f"sqlite:///{tmp_path / 'nowhere.db'}"
    elif case == "no product":
        product = "huhuibao-2099"
        pricing = _pricing(tmp_path / "p", "huhuibao-2099")
    elif case == "other product":
        pricing = _pricing(tmp_path / "p", "huhuibao-2025")
    elif case == "before the year":
        as_of = "2023-12-31"
    elif case == "two months in":
        as_of = "2024-02-29"
    elif case == "not a date":
        as_of = "30/06/2024"
    elif case == "not json":
        pricing = tmp_path / "pricing.json"
        pricing.write_text("{not json", encoding="utf-8")
    elif case == "no pricing file":
        pricing = tmp_path / "missing" / "pricing.json"
    elif case == "no pure premium":
        pricing = _pricing(tmp_path / "p", pure_premium=None)
    elif case == "loss ratio text":
        pricing = _pricing(tmp_path / "p", expected_loss_ratio="110 %")
    elif case == "negative benefit":
        pricing = _pricing(tmp_path / "p", pure_premium={"hospital": -5.0, "total": -5.0})
    r = puhui("monitor", "--ledger", url, "--product", product, "--as-of", as_of,
              "--pricing", pricing, "--out", tmp_path / "o")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    if case == "no ledger":
        assert not (tmp_path / "nowhere.db").exists()
