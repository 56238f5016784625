"""Triangles from payments (puhui.reserving.triangles) against a plain loop over the rows
with Python dates and a dictionary, and the input the builder refuses."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from puhui.errors import InputError
from puhui.reserving.triangles import build_triangle


def _payments(seed: int, n: int = 400) -> pd.DataFrame:
    """Payments over two and a half years, some reversed (negative), some paid after
    the as-of dates the tests use."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01")
    settled = start + rng.integers(0, 900, n).astype("timedelta64[D]")
    lag = rng.geometric(1 / 60, n).astype("timedelta64[D]") - np.timedelta64(1, "D")
    fen = rng.integers(1, 2_000_000, n)
    fen[rng.random(n) < 0.1] *= -1
    return pd.DataFrame({"settlement_date": settled, "business_date": settled + lag,
                         "amount_fen": fen.astype(np.int64)})


def _loop_triangle(frame, as_of: dt.date, months_per_period: int):
    """The cumulative triangle by a loop: each row's origin and payment period counted
    in months from year 0, added to a dict of cells, then summed along each row."""
    def period(d):
        return (d.year * 12 + d.month - 1) // months_per_period

    cells, origins = {}, []
    for s, b, fen in zip(frame.settlement_date, frame.business_date, frame.amount_fen):
        if b.date() > as_of:
            continue
        o = period(s)
        origins.append(o)
        key = (o, period(b) - o)
        cells[key] = cells.get(key, 0) + int(fen)
    first, last = min(origins), period(as_of)
    n = last - first + 1
    out = [[None] * n for _ in range(n)]
    for i in range(n):
        running = 0
        for j in range(n - i):
            running += cells.get((first + i, j), 0)
            out[i][j] = running
    return first, out


@pytest.mark.parametrize("grain,months", [("M", 1), ("Q", 3), ("Y", 12)])
@pytest.mark.parametrize("as_of", ["2025-02-14", "2025-06-30", "2026-12-31"])
def test_triangle_equals_a_plain_loop(grain, months, as_of):
    frame = _payments(seed=len(as_of) + months)
    tri = build_triangle(frame, origin="settlement_date", development="business_date",
                         as_of=as_of, grain=grain)
    first, expected = _loop_triangle(frame, dt.date.fromisoformat(as_of), months)
    n = len(expected)
    assert tri.values.shape == (n, n) and tri.values.dtype == np.int64
    got = [[int(tri.values[i, j]) if tri.known[i, j] else None for j in range(n)]
           for i in range(n)]
    assert got == expected
    first_month = first * months
    assert tri.origins[0].start_time == pd.Timestamp(first_month // 12, first_month % 12 + 1, 1)


def test_latest_and_incremental_from_the_cells():
    frame = pd.DataFrame({"settlement_date": pd.to_datetime(["2024-01-05", "2024-01-20",
                                                             "2024-02-03", "2024-03-01"]),
                          "business_date": pd.to_datetime(["2024-01-30", "2024-03-02",
                                                           "2024-02-10", "2024-03-09"]),
                          "amount_fen": np.array([100, 50, 70, 9], dtype=np.int64)})
    tri = build_triangle(frame, origin="settlement_date", development="business_date",
                         as_of="2024-03-31")
    # Jan: 100 in month 0, 50 in month 2; Feb: 70 in month 0; Mar: 9 in month 0
    assert tri.values.tolist() == [[100, 100, 150], [70, 70, 0], [9, 0, 0]]
    assert tri.latest.tolist() == [150, 70, 9]
    assert tri.incremental.tolist() == [[100, 0, 50], [70, 0, 0], [9, 0, 0]]
    assert tri.frame().iloc[0].tolist() == [1.0, 1.0, 1.5]


def test_a_payment_on_the_as_of_day_counts_whatever_its_time():
    frame = pd.DataFrame({"settlement_date": pd.to_datetime(["2024-01-05 09:30"] * 2),
                          "business_date": pd.to_datetime(["2024-03-31 15:00",
                                                           "2024-04-01 00:00"]),
                          "amount_fen": np.array([7, 100], dtype=np.int64)})
    tri = build_triangle(frame, origin="settlement_date", development="business_date",
                         as_of="2024-03-31")
    assert tri.values[0].tolist() == [0, 0, 7]


def test_a_reversal_cancels_its_payment():
    frame = pd.DataFrame({"settlement_date": pd.to_datetime(["2024-01-05"] * 2),
                          "business_date": pd.to_datetime(["2024-01-06", "2024-02-06"]),
                          "amount_fen": np.array([12345, -12345], dtype=np.int64)})
    tri = build_triangle(frame, origin="settlement_date", development="business_date",
                         as_of="2024-02-29")
    assert tri.values[0].tolist() == [12345, 0]


@pytest.mark.parametrize("change,words", [
    (lambda f: f.assign(amount_fen=f.amount_fen / 100), "integer fen"),
    (lambda f: f.drop(columns="business_date"), "business_date missing"),
    (lambda f: f.assign(business_date=f.settlement_date - pd.Timedelta(days=3)),
     "before their settlement_date"),
    (lambda f: f.assign(settlement_date=pd.NaT), "without a date"),
])
def test_bad_payments_are_refused_with_a_message(change, words):
    frame = change(_payments(seed=1, n=20))
    with pytest.raises(InputError, match=words):
        build_triangle(frame, origin="settlement_date", development="business_date",
                       as_of="2025-06-30")


def test_an_unknown_grain_is_refused():
    with pytest.raises(InputError, match="grain 'W'"):
        build_triangle(_payments(seed=1, n=5), origin="settlement_date",
                       development="business_date", as_of="2025-06-30", grain="W")


def test_reserving_modules_load_chainladder_only_when_a_method_runs():
    """chainladder (and numba under it, ~2.3 s of CPU to import) is imported inside the
    methods: importing the package, building a triangle and the treaty arithmetic
    load neither."""
    import subprocess
    import sys

    code = ("import sys, pandas as pd, numpy as np\n"
            "import puhui.reserving.methods, puhui.reserving.treaties as t\n"
            "from puhui.reserving.triangles import build_triangle\n"
            "f = pd.DataFrame({'o': pd.to_datetime(['2024-01-02']), "
            "'d': pd.to_datetime(['2024-02-03']), 'amount_fen': np.array([5], 'int64')})\n"
            "build_triangle(f, origin='o', development='d', as_of='2024-03-31')\n"
            "t.quota_share_ceded(100, 3000)\n"
            "print(sorted(m for m in ('chainladder', 'numba', 'sparse') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
