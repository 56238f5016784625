"""Does the product's policy period fit the data's policies? (docs/pricing.md, "The
product's policy period and the data's policies")

Pricing reads the data by calendar year: the as-if experience of every person-year, and
enrolment with a policy counted in the calendar year it starts (renewal, entry, the
enrolled mix of the year after the data, claim-free years, new entrants' waiting
periods). It prices one policy year of the product's terms (annual deductible and limit,
claims per year). So:

- a product whose period is not one year (365 or 366 days) cannot be priced: the annual
  benefit is not its benefit;
- a product whose year starts on another day of the year than every policy in the data
  (give or take :data:`START_TOLERANCE_DAYS`) is refused: its policy year straddles two
  of the data's policy years, so the enrolled mix, renewals and claim-free years the
  pricing reads are those of policies of another shape, not of the product's.

A product for another *year* than the data's (next year's product from this year's data)
is the normal case and is priced (:func:`puhui.pricing.run.check_period` only bounds the
trend). Data with no policy at all is priced for the whole eligible population.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from puhui.errors import InputError

#: A policy year starting within this many days of the product's start day counts as
#: the same shape (policies sold through January against a 1 January product).
START_TOLERANCE_DAYS = 31


def period_days(start: dt.date, end: dt.date) -> int:
    """Days covered, both ends inclusive: 2025-01-01 to 2025-12-31 -> 365."""
    return (end - start).days + 1


def day_distance(a, b) -> np.ndarray:
    """Days between days of the year on a circle of 365 (12-31 and 01-01 are 1 apart)."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % 365
    return np.minimum(d, 365 - d)


def _day_of_year(d: dt.date) -> int:
    """Day of the year on a 365-day calendar (29 February counts as 28 February)."""
    return dt.date(2001, d.month, min(d.day, 28) if d.month == 2 else d.day).timetuple().tm_yday


def _periods_text(pol: pd.DataFrame, limit: int = 4) -> str:
    """The policies' periods by product: 'huhuibao-2024 2024-01-01 to 2024-12-31 (12,000)'."""
    g = (pol.assign(product_id=pol["product_id"].astype(str))
         .groupby(["product_id", pol["start_date"].dt.date, pol["end_date"].dt.date])
         .size().sort_values(ascending=False))
    parts = [f"{pid} {s} to {e} ({n:,})" for (pid, s, e), n in g.head(limit).items()]
    if len(g) > limit:
        parts.append(f"and {len(g) - limit} other periods")
    return "; ".join(parts)


def check_period_shape(product, policies: pd.DataFrame | None) -> None:
    """Refuse (InputError, exit 2) a product whose period is not one year, or whose year
    starts on a day no policy of the data starts on (module docstring), naming the
    product's period, the policies' periods and what to do."""
    days = period_days(product.start, product.end)
    if days not in (365, 366):
        raise InputError(
            f"{product.id}: its policy period {product.start} to {product.end} is {days} days; "
            f"pricing prices one policy year (annual deductible, limit and claims), so "
            f"[policy_period] must cover one year (365 or 366 days, end inclusive): set "
            f"end to {product.start.replace(year=product.start.year + 1) - dt.timedelta(days=1)}")
    if policies is None or len(policies) == 0:
        return
    starts = policies["start_date"].dropna()
    if starts.empty:
        return
    doy = starts.dt.dayofyear.to_numpy() - (starts.dt.is_leap_year & (starts.dt.month > 2)).to_numpy()
    if (day_distance(doy, _day_of_year(product.start)) <= START_TOLERANCE_DAYS).any():
        return
    raise InputError(
        f"{product.id}: its policy year {product.start} to {product.end} starts on "
        f"{product.start:%m-%d}, and no policy in the data starts within "
        f"{START_TOLERANCE_DAYS} days of that day of the year (policies in the data: "
        f"{_periods_text(policies)}). Pricing counts a policy in the calendar year it "
        f"starts, so a product year that straddles the data's policy years would be priced "
        f"on the enrolment of policies of another shape. Set the product's [policy_period] "
        f"to the policies' shape (for next year's product, the same start day one year "
        f"on), or price on data whose policies run as the product's")
