"""Development triangles from payments, in integer fen.

A payments frame has one row per ledger entry (a reversal is a negative row): the date
the claim belongs to (the settlement, or accident, date), the business date of the
payment (the date it is effective for) and the amount in integer fen. A triangle puts
the amounts of origin period i (the settlement's month or quarter) paid in development
period j (j periods after i: the payment's period minus the origin's) into cell (i, j)
and sums them along j (cumulative); cell (i, j) is known when origin i plus j periods
is not after the as-of date's period. A *reported* triangle is the same with the date
the claim was filed instead of the payment's date.

Money stays in fen: the cells are ``int64``; yuan appear only in :meth:`Triangle.frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.errors import InputError

#: periods a year for each grain: "M" month, "Q" quarter, "Y" year
GRAINS = {"M": 12, "Q": 4, "Y": 1}


@dataclass(frozen=True)
class Triangle:
    """A cumulative triangle: ``values[i, j]`` fen paid (or reported) for origin period
    ``origins[i]`` up to the end of development period j (0 = the origin's own period);
    ``known[i, j]`` says the cell lies on or above the as-of diagonal (unknown cells
    hold 0)."""

    values: np.ndarray          # int64 (n, n), cumulative fen
    known: np.ndarray           # bool (n, n)
    origins: pd.PeriodIndex     # the origin periods, in order
    grain: str                  # "M", "Q" or "Y"
    as_of: pd.Timestamp         # the valuation date

    @property
    def latest(self) -> np.ndarray:
        """The latest known cumulative amount of each origin (the diagonal), fen."""
        last = self.known.sum(axis=1) - 1
        return self.values[np.arange(len(last)), np.maximum(last, 0)] * (last >= 0)

    @property
    def incremental(self) -> np.ndarray:
        """The amounts of each development period alone, fen (unknown cells 0)."""
        inc = np.diff(self.values, axis=1, prepend=0)
        return np.where(self.known, inc, 0)

    def frame(self) -> pd.DataFrame:
        """The cumulative triangle in yuan, origins as rows and development periods as
        columns, unknown cells empty (the edge: a report or a notebook)."""
        yuan = np.where(self.known, self.values / 100, np.nan)
        return pd.DataFrame(yuan, index=self.origins.astype(str),
                            columns=pd.RangeIndex(len(self.origins), name="development"))


def period_number(dates, grain: str) -> np.ndarray:
    """A running number of each date's period: year x 12 + month - 1 by month, year x 4
    + quarter - 1 by quarter, the year by year, so consecutive periods differ by one."""
    months = pd.DatetimeIndex(dates).to_numpy().astype("datetime64[M]").astype(np.int64)
    return (months + 1970 * 12) // (12 // GRAINS[grain])


def build_triangle(frame: pd.DataFrame, *, origin: str, development: str,
                   amount: str = "amount_fen", as_of, grain: str = "M") -> Triangle:
    """The cumulative triangle of ``frame[amount]`` (fen) by the period of
    ``frame[origin]`` and the development period of ``frame[development]``, as known at
    ``as_of`` (rows dated after it are not yet known and are left out).

    Refused with :class:`~puhui.errors.InputError`: an unknown grain, missing columns or
    dates, an amount that is not integer fen, a development date before its origin.
    """
    origin_dates, dev_dates, fen = _checked_columns(frame, origin, development, amount,
                                                    grain)
    as_of = pd.Timestamp(as_of).normalize()
    # by day: a payment effective on the as-of day is known then, whatever its time
    keep = dev_dates.astype("datetime64[D]") <= np.datetime64(as_of.date(), "D")
    o = period_number(origin_dates[keep], grain)
    last = int(period_number([as_of], grain)[0])
    first = int(o.min()) if len(o) else last
    n = last - first + 1
    i = o - first
    j = period_number(dev_dates[keep], grain) - first - i
    inc = np.zeros(n * n, dtype=np.int64)
    np.add.at(inc, i * n + j, fen[keep])
    values = np.cumsum(inc.reshape(n, n), axis=1)
    known = (np.arange(n)[:, None] + np.arange(n)[None, :]) <= n - 1
    values = np.where(known, values, 0)
    origins = pd.period_range(pd.Period(_period_start(first, grain), freq=grain),
                              periods=n, freq=grain)
    return Triangle(values, known, origins, grain, as_of)


def _period_start(number: int, grain: str) -> pd.Timestamp:
    per_year = GRAINS[grain]
    year, k = divmod(number, per_year)
    return pd.Timestamp(year=year, month=k * (12 // per_year) + 1, day=1)


def _checked_columns(frame, origin, development, amount, grain):
    """The origin and development dates (datetime64[ns]) and the fen (int64), checked."""
    if grain not in GRAINS:
        raise InputError(f"triangle grain {grain!r}: use 'M' (month), 'Q' (quarter) or "
                         "'Y' (year)")
    missing = [c for c in (origin, development, amount) if c not in frame.columns]
    if missing:
        raise InputError(f"payments: column(s) {', '.join(missing)} missing; a triangle "
                         f"needs {origin}, {development} and {amount}")
    if not pd.api.types.is_integer_dtype(frame[amount]):
        raise InputError(f"payments, column {amount}: amounts must be integer fen "
                         f"(int64), not {frame[amount].dtype}; convert yuan with "
                         "puhui.money.yuan_to_fen first")
    dates = []
    for col in (origin, development):
        d = pd.to_datetime(frame[col]).to_numpy("datetime64[ns]")
        bad = int(np.isnat(d).sum())
        if bad:
            raise InputError(f"payments, column {col}: {bad} row(s) without a date; "
                             "every payment needs its dates")
        dates.append(d)
    early = int((dates[1] < dates[0].astype("datetime64[D]")).sum())
    if early:
        raise InputError(f"payments, columns {origin}/{development}: {early} row(s) dated "
                         f"before their {origin}; a payment cannot precede its claim")
    return dates[0], dates[1], frame[amount].to_numpy(np.int64)
