"""Review of ``puhui reserve`` and ``puhui monitor`` (session 22, helper s22-rev22): a
ledger written by hand with SQL (no claims engine) holding two products, monthly
batches, a reversal answered at once (dated after the payments it takes back: a
negative increment), a direct payout (business date = its settlement date) and the
other product's payments on its own policies; the truth from a plain SQL query over
payments joined to settlement_dates and policies, cumulated by a loop, and from a
day-by-day loop over the policies, never from the commands' code."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from conftest import puhui
from tests.ledgers import run_sql
from tests.test_reserve_command import by_running_total

from puhui.claims import ledger

PRODUCT, OTHER = "hand-2024", "other-2024"
ENDS = [dt.date(2024, m + 1, 1) - dt.timedelta(days=1) for m in range(1, 7)]
PRICING = {"product_id": PRODUCT, "pure_premium": {"hospital": 100.0, "special_drugs": 30.0},
           "expected_loss_ratio": 1.08, "process_sd_per_policy": 60.0}


def _payment(url, row):
    run_sql(url, "INSERT INTO payments (setl_id, applies_to, benefit, psn_no, policy_no,"
                 " payout_fen, kind, batch_id, recorded_at, business_date) VALUES"
                 " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def _batches(url):
    for k, e in enumerate(ENDS):
        for prefix, prod in (("b", PRODUCT), ("o", OTHER)):
            run_sql(url, "INSERT INTO batches VALUES (?, 'claimed', ?, 'h', 'h', ?, ?, 'done',"
                         " ?)", (f"{prefix}{k + 1}", prod, f"{e}T23:00:00", f"{e}T23:00:00",
                                 str(e)))
    for b, mode in ((f"direct:{PRODUCT}", "direct"), (f"reversals:{PRODUCT}", "reversal")):
        run_sql(url, "INSERT INTO batches VALUES (?, ?, ?, 'h', 'h', '2024-01-01', NULL,"
                     " 'open', NULL)", (b, mode, PRODUCT))


def hand_ledger(url, scale: int = 1) -> str:
    """100 policies of hand-2024 (120 yuan x ``scale``), 50 of other-2024; each month
    one settlement per benefit on the 15th, paid 60 % in the month's batch and the rest
    in the next; a reversal of February's hospital settlement on 2024-04-10; a direct
    payout on 2024-05-20; other-2024 pays 9,999.99 yuan a month on its own policies."""
    ledger.connect(url).close()
    run_sql(url, "INSERT INTO policies VALUES " + ",".join(
        f"('P{i}', 'S{i}', '{PRODUCT}', '2024-01-01', '2024-12-31', {12000 * scale}, 0, 1, 0)"
        for i in range(100)))
    run_sql(url, "INSERT INTO policies VALUES " + ",".join(
        f"('Q{i}', 'T{i}', '{OTHER}', '2024-01-01', '2024-12-31', 9900, 0, 1, 0)"
        for i in range(50)))
    _batches(url)
    for m in range(1, 7):
        for b, amount in (("hospital", 300000), ("special_drugs", 80000)):
            sid, cost = f"s{m}{b}", (amount + 1000 * m) * scale
            run_sql(url, "INSERT INTO settlement_dates VALUES (?, ?)", (sid, f"2024-{m:02d}-15"))
            first = round(cost * 0.6)
            for part, k in ((first, m), (cost - first, m + 1)):
                if k <= 6:
                    _payment(url, (sid if k == m else f"{sid}-late", sid, b, f"S{m}", f"P{m}",
                                   part, "pay", f"b{k}", f"{ENDS[k - 1]}T23:00:00",
                                   str(ENDS[k - 1])))
            osid = f"x{m}{b}"
            run_sql(url, "INSERT INTO settlement_dates VALUES (?, ?)", (osid, f"2024-{m:02d}-10"))
            _payment(url, (osid, osid, b, f"T{m}", f"Q{m}", 999999, "pay", f"o{m}",
                           f"{ENDS[m - 1]}T23:00:00", str(ENDS[m - 1])))
    for sid, day in (("r1", "2024-04-10"), ("d1", "2024-05-20")):
        run_sql(url, "INSERT INTO settlement_dates VALUES (?, ?)", (sid, day))
    _payment(url, ("r1", "s2hospital", "hospital", "S2", "P2", -302000 * scale, "reverse",
                   f"reversals:{PRODUCT}", "2024-04-10T10:00:00", "2024-04-10"))
    _payment(url, ("d1", "d1", "hospital", "S9", "P9", 45600 * scale, "pay",
                   f"direct:{PRODUCT}", "2024-05-20T09:00:00", "2024-05-20"))
    return url


def _month(text: str) -> int:
    d = dt.date.fromisoformat(str(text)[:10])
    return d.year * 12 + d.month - 1


def sql_triangle(url, as_of: str) -> tuple[list[str], list[list[int | None]]]:
    """Cumulative fen by settlement month x months of development, from a plain query."""
    rows = run_sql(url, "SELECT d.setl_date, p.business_date, p.payout_fen FROM payments p"
                        " JOIN settlement_dates d ON d.setl_id = p.applies_to JOIN policies o"
                        " ON o.policy_no = p.policy_no WHERE o.product_id = ? AND"
                        " p.business_date <= ?", (PRODUCT, as_of))
    inc: dict[tuple[int, int], int] = defaultdict(int)
    for setl, paid, fen in rows:
        inc[(_month(setl), _month(paid) - _month(setl))] += int(fen)
    first, last = min(o for o, _ in inc), _month(as_of)
    n = last - first + 1
    cum = []
    for i in range(n):
        total, row = 0, []
        for j in range(n):
            total += inc.get((first + i, j), 0)
            row.append(total if i + j < n else None)
        cum.append(row)
    return [f"{(first + i) // 12}-{(first + i) % 12 + 1:02d}" for i in range(n)], cum


def chain_ladder_ibnr(cum) -> list[float]:
    """Volume-weighted factors and each origin's IBNR, fen, by a loop."""
    n = len(cum)
    f = []
    for j in range(n - 1):
        rows = [r for r in cum if r[j + 1] is not None]
        f.append(sum(r[j + 1] for r in rows) / sum(r[j] for r in rows))
    out = []
    for i, row in enumerate(cum):
        latest = row[n - 1 - i]
        ult = latest
        for j in range(n - 1 - i, n - 1):
            ult *= f[j]
        out.append(ult - latest)
    return out


def _strict(path):
    return json.loads(path.read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"{c} in {path.name}"))


def _reserve(url, out, as_of, *args):
    r = puhui("reserve", "--ledger", url, "--product", PRODUCT, "--as-of", as_of, "--out",
              out, *args)
    assert r.returncode == 0, r.stderr
    return _strict(out / "reserve.json"), r


def _monitor(url, tmp_path, as_of, pricing=None):
    p = tmp_path / "pricing.json"
    p.write_text(json.dumps(pricing or PRICING), encoding="utf-8")
    return puhui("monitor", "--ledger", url, "--product", PRODUCT, "--as-of", as_of,
                 "--pricing", p, "--out", tmp_path / "m")


@pytest.mark.parametrize("as_of", ["2024-06-30", "2024-05-31"])
def test_triangle_ibnr_and_earned_against_sql_and_loops(new_ledger, tmp_path, as_of):
    """Held: the triangle (reversal a negative increment, the direct payout at its own
    date, the other product absent) is the SQL query's; the chain ladder's IBNR by
    origin the loop's; earned premium a day-by-day loop's; on both backends."""
    url = hand_ledger(new_ledger("h"))
    res, _ = _reserve(url, tmp_path / "o", as_of)
    labels, cum = sql_triangle(url, as_of)
    assert res["triangle"]["origins"] == labels
    assert res["triangle"]["cumulative_paid_yuan"] == [
        [None if v is None else v / 100 for v in row] for row in cum]
    assert res["paid_to_date_yuan"] == sum(r[len(cum) - 1 - i] for i, r in enumerate(cum)) / 100
    want = chain_ladder_ibnr(cum)
    got = [r["ibnr_yuan"] for r in res["methods"]["chainladder"]["by_origin"]]
    assert got == pytest.approx([w / 100 for w in want], abs=0.011)
    earned: dict[str, float] = defaultdict(float)
    stop = dt.date.fromisoformat(as_of)
    for start, end, fen in run_sql(url, "SELECT start_date, end_date, premium_fen FROM"
                                        " policies WHERE product_id = ?", (PRODUCT,)):
        a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        d = a
        while d <= min(b, stop):
            earned[f"{d.year}-{d.month:02d}"] += fen / ((b - a).days + 1)
            d += dt.timedelta(days=1)
    assert res["earned_premium_yuan"] == by_running_total([earned[o] for o in labels])


def test_very_large_amounts_are_exact_in_yuan(tmp_path):
    """Held: a million times the amounts (billions of yuan per settlement)."""
    url = hand_ledger(f"sqlite:///{tmp_path / 'big.db'}", scale=10 ** 6)
    res, _ = _reserve(url, tmp_path / "o", "2024-06-30")
    _, cum = sql_triangle(url, "2024-06-30")
    assert res["triangle"]["cumulative_paid_yuan"] == [
        [None if v is None else v / 100 for v in row] for row in cum]


@pytest.mark.parametrize("as_of", ["9999-12-31", "2262-05-01", "1900-01-01"])
def test_an_as_of_date_out_of_range_exits_2(tmp_path, as_of):
    """Broke: far-future dates were an internal error (OutOfBoundsDatetime, exit 1)."""
    url = hand_ledger(f"sqlite:///{tmp_path / 'h.db'}")
    r = puhui("reserve", "--ledger", url, "--product", PRODUCT, "--as-of", as_of, "--out",
              tmp_path / "o")
    assert r.returncode == 2 and "dates lie from" in r.stderr, r.stderr
    r = _monitor(url, tmp_path, as_of)
    assert r.returncode == 2 and "dates lie from" in r.stderr, r.stderr


def test_an_entry_known_only_after_the_as_of_date_is_counted_so(tmp_path):
    """Broke: an adjustment effective 2024-05-20 of a settlement dated 2024-06-15 (as a
    reversal answered at once re-deciding a later settlement writes it) is counted from
    the settlement's date; at as-of 2024-05-31 it was counted as used while the triangle
    left it out, and the monitor's paid disagreed with the sum of its months."""
    url = hand_ledger(f"sqlite:///{tmp_path / 'h.db'}")
    _payment(url, ("r2", "s6hospital", "hospital", "S6", "P6", -100000, "adjust",
                   f"reversals:{PRODUCT}", "2024-06-20T00:00:00", "2024-05-20"))
    res, _ = _reserve(url, tmp_path / "o", "2024-05-31")
    n_effective = run_sql(url, "SELECT COUNT(*) FROM payments p JOIN policies o ON"
                               " o.policy_no = p.policy_no WHERE o.product_id = ? AND"
                               " p.business_date <= '2024-05-31'", (PRODUCT,))[0][0]
    assert res["entries"]["used"] == n_effective - 1
    assert res["entries"]["dated_before_settlement"] == 0
    _, cum = sql_triangle(url, "2024-05-31")     # r2 is in no month up to May
    latest = sum(r[len(cum) - 1 - i] for i, r in enumerate(cum))
    assert res["paid_to_date_yuan"] == latest / 100
    assert _monitor(url, tmp_path, "2024-05-31").returncode == 0
    mon = _strict(tmp_path / "m" / "monitor.json")
    assert mon["paid_yuan"] == pytest.approx(sum(m["paid_yuan"] for m in mon["by_month"]))
    assert mon["paid_yuan"] == latest / 100


def test_an_as_of_date_past_the_last_batch_warns(tmp_path):
    """Broke (a silent zero): reserved or monitored at 2024-09-30 while the last batch is
    effective 2024-06-30, July to September showed 0 paid and 0 IBNR without a word."""
    url = hand_ledger(f"sqlite:///{tmp_path / 'h.db'}")
    res, r = _reserve(url, tmp_path / "o", "2024-09-30")
    assert any("effective 2024-06-30" in w for w in res["warnings"]), res["warnings"]
    assert "no claims batch effective since" in r.stderr
    res, _ = _reserve(url, tmp_path / "o2", "2024-06-30")
    assert not any("no claims batch" in w for w in res["warnings"])
    assert _monitor(url, tmp_path, "2024-09-30").returncode == 0
    mon = _strict(tmp_path / "m" / "monitor.json")
    assert any("effective 2024-06-30" in w for w in mon["warnings"])


def test_the_interval_holds_a_negative_ibnr():
    """Broke: with reversals the IBNR can be negative; the interval, bounded below by 0,
    then lay wholly above the loss ratio it is for."""
    from puhui.monitor_run import Z90, lognormal_interval

    iv = lognormal_interval(100_000_00, -5_000_00, 2_000_00, 100_000_00)
    assert iv["lower"] == round((100_000_00 - 5_000_00 - Z90 * 2_000_00) / 100_000_00, 4)
    assert iv["upper"] == round((100_000_00 - 5_000_00 + Z90 * 2_000_00) / 100_000_00, 4)
    assert iv["lower"] < 0.95 < iv["upper"]
    iv = lognormal_interval(100_000_00, 0, 2_000_00, 100_000_00)     # unchanged at 0
    assert iv["lower"] == 1.0


def _as_version_5(path, keep_settlements: bool):
    """The hand ledger as schema 5 left it: no business dates, no settlement_dates; the
    stored settlements (the monthly ones, not the reversal nor the direct payout) only
    where ``keep_settlements``."""
    con = sqlite3.connect(path)
    if keep_settlements:
        for m in range(1, 7):
            for b in ("hospital", "special_drugs"):
                con.execute("INSERT INTO settlements (setl_id, psn_no, setl_date, med_type,"
                            " hosp_lv, insutype, psn_part_fen, fulamt_ownpay_fen,"
                            " overlmt_selfpay_fen, source) VALUES (?, ?, ?, '21', 3, '310', 0,"
                            " 0, 0, 'batch')", (f"s{m}{b}", f"S{m}", f"2024-{m:02d}-15"))
    con.execute("DROP TABLE settlement_dates")
    con.execute("ALTER TABLE payments DROP COLUMN business_date")
    con.execute("ALTER TABLE batches DROP COLUMN as_of")
    con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    con.commit()
    con.close()


def test_a_version_5_ledger_upgraded_then_reserved(tmp_path):
    """Held: the upgrade dates each batch by its latest settlement, the triangle is the
    SQL query's over the upgraded ledger, and the direct payout whose settlement was not
    stored is counted without a settlement date. Broke: where no settlement was stored,
    the message said there was no payment effective (and to give a later date)."""
    path = tmp_path / "v5.db"
    url = hand_ledger(f"sqlite:///{path}")
    _as_version_5(path, keep_settlements=True)
    res, _ = _reserve(url, tmp_path / "o", "2024-06-30")
    _, cum = sql_triangle(url, "2024-06-30")
    assert res["triangle"]["cumulative_paid_yuan"] == [
        [None if v is None else v / 100 for v in row] for row in cum]
    assert res["entries"]["without_settlement_date"] == {"entries": 1, "yuan": 456.0}
    path2 = tmp_path / "v5none.db"
    url2 = hand_ledger(f"sqlite:///{path2}")
    _as_version_5(path2, keep_settlements=False)
    r = puhui("reserve", "--ledger", url2, "--product", PRODUCT, "--as-of", "2024-06-30",
              "--out", tmp_path / "o2")
    assert r.returncode == 2 and "have no settlement date" in r.stderr, r.stderr
    assert "give a later date" not in r.stderr


def test_a_pricing_too_large_to_compute_exits_2(tmp_path):
    """Broke: a pure premium of 1e308 yuan was an internal error (OverflowError)."""
    url = hand_ledger(f"sqlite:///{tmp_path / 'h.db'}")
    r = _monitor(url, tmp_path, "2024-06-30", {**PRICING, "pure_premium": {
        "hospital": 1e308, "special_drugs": 1e308}})
    assert r.returncode == 2 and "key pure_premium.hospital" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_an_origin_whose_factor_cannot_be_estimated_is_said_not_estimated():
    """Nothing is paid at age 0 of the two oldest origins, so the first link's factor is
    (100 + 120) / 0: no estimate. The newest origin, 50 paid at age 0, rests on it:
    chainladder takes the link as 1 (no development), so every method gives it an IBNR
    that is not an estimate, which reserve.json must not pass off as one - ``estimated``
    false and a warning per method naming it."""
    from puhui.reserve_run import fit_methods, method_result, warnings_of
    from puhui.reserving.triangles import build_triangle

    rows = [("2024-01-15", "2024-02-10", 10000), ("2024-01-15", "2024-03-10", 5000),
            ("2024-02-15", "2024-03-10", 12000), ("2024-03-15", "2024-03-20", 5000)]
    frame = pd.DataFrame(rows, columns=["setl_date", "business_date", "payout_fen"])
    tri = build_triangle(frame, origin="setl_date", development="business_date",
                         amount="payout_fen", as_of=pd.Timestamp("2024-03-31"), grain="M")
    fitted = fit_methods(tri, np.array([100000, 100000, 100000]), ("chainladder", "bf",
                                                                    "capecod"), 0.8)
    for name, est in fitted.items():
        r = method_result(est)["by_origin"]
        assert [x["estimated"] for x in r] == [True, True, False], name
        assert r[2]["latest_yuan"] == 50.0
    said = warnings_of(frame, fitted)
    for name in ("chainladder", "bf", "capecod"):
        assert any(w.startswith(f"{name}: 1 origin(s)") and "2024-03" in w for w in said), said
