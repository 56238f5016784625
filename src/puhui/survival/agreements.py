"""Outcome-based drug agreements (Taiwan's model, seed 000; docs/domain.md §4).

A drug on the special-drug list may carry an agreement with its manufacturer, measured
from the patient's first treatment with it, observed for at most ``max_years`` (5).
Seed 000 describes three schemes, each an ``endpoint`` here:

- ``"os"`` (改善整体存活方案, improved overall survival): a patient who dies before
  the comparator arm's median overall survival has the whole drug cost refunded; one
  who dies between that and the drug's own median, a stated share of it; one who
  lives past the drug's median (or the horizon), nothing. The refund falls due in the
  quarter of the death; a living patient inside the drug's median is ``PENDING``.
- ``"pfs"`` (延缓疾病恶化方案, delayed progression): the payer pays for the drug up to
  the median progression-free survival after the start; the manufacturer refunds the
  cost of the drug used after it (a patient treated past the median). Each cost is
  due in the quarter it was claimed. No progression date is needed: the rule is on
  the timing of the cost.
- ``"effect"`` (临床疗效方案, clinical-effect date): the manufacturer refunds a stated
  share of the cost of the drug used before the date its effect can be assessed
  (``drug_median_months`` after the start), whatever the outcome.

Two sides of one rule:

- claims (:func:`refund_lines`): per patient and quarter, from the death dates and the
  drug costs known at a date, the refund due to the product in fen (integer; shares
  in basis points, rounded half up per patient and quarter) with an outcome code;
- pricing (:func:`expected_refund_share`): the expected refund as a share of the drug
  cost, from a survival curve S(t) of the treated patients (for ``"os"`` the time to
  death; for the others the time on the drug, spending at a steady rate while on it)::

      os:      (1 - S(m_c)) + r (S(m_c) - S(m_d))
      pfs:     int_m^H S / int_0^H S
      effect:  r int_0^m S / int_0^H S

  m_c, m_d the comparator's and the drug's medians, r the share, H the horizon. For
  an exponential survival with median m (:func:`exponential_survival`),
  S(t) = 2^(-t / m).

Time is in months of 365.25 / 12 days. The agreements are read from the drug-list file
(:func:`puhui.drug_lists.agreements_of`); ``puhui claims recoveries`` books the refunds
in the ledger (:mod:`puhui.claims.recoveries`); ``puhui price`` takes the expected
refund off the special-drug pure premium.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Days in a month of the agreements' clocks.
MONTH_DAYS = 365.25 / 12

#: Outcome of a patient under an agreement (stable codes). ``AFTER_MEDIAN`` and
#: ``BEFORE_EFFECT_DATE``: the cost-timed schemes' refunds.
FULL, PARTIAL, NONE, PENDING = "REFUND_FULL", "REFUND_PARTIAL", "NO_REFUND", "PENDING"
AFTER_MEDIAN, BEFORE_EFFECT = "REFUND_AFTER_MEDIAN", "REFUND_BEFORE_EFFECT_DATE"
ENDPOINTS = ("os", "pfs", "effect")


@dataclass(frozen=True)
class Agreement:
    """One drug's outcome-based agreement. ``drug_median_months``: the drug's median
    overall survival (``"os"``), its median progression-free survival (``"pfs"``) or the
    months to the effect assessment (``"effect"``). ``comparator_median_months``: the
    comparator arm's median overall survival (``"os"`` only). ``partial_share_bp``: the
    share refunded between the medians (``"os"``) or before the effect date
    (``"effect"``); basis points."""

    drug: str                      # hilist_code
    comparator_median_months: float | None
    drug_median_months: float
    partial_share_bp: int = 0
    endpoint: str = "os"
    max_years: float = 5.0

    def __post_init__(self):
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"{self.drug}: endpoint is one of {', '.join(ENDPOINTS)}")
        if self.endpoint == "os" and not (
                self.comparator_median_months is not None
                and 0 < self.comparator_median_months <= self.drug_median_months):
            raise ValueError(f"{self.drug}: need 0 < comparator median <= drug median")
        if not self.drug_median_months > 0:
            raise ValueError(f"{self.drug}: the drug's median (months) must be above 0")
        if not 0 <= self.partial_share_bp <= 10_000:
            raise ValueError(f"{self.drug}: partial share must be 0-10000 basis points")
        if not self.max_years > 0:
            raise ValueError(f"{self.drug}: the observation horizon must be above 0 years")


def months_between(start, end) -> np.ndarray:
    """Months of :data:`MONTH_DAYS` days from ``start`` to ``end`` (dates, element by
    element by position, whatever their indexes)."""
    s = pd.to_datetime(np.asarray(start)).to_numpy(dtype="datetime64[ns]")
    e = pd.to_datetime(np.asarray(end)).to_numpy(dtype="datetime64[ns]")
    days = (e - s) / np.timedelta64(1, "D")
    return np.asarray(days, dtype=float) / MONTH_DAYS


def outcome(a: Agreement, months_to_event, event, months_followed) -> np.ndarray:
    """Each patient's outcome code: ``event`` (True when the endpoint happened,
    ``months_to_event`` after the start) or else followed ``months_followed`` months
    without it.

    >>> a = Agreement("X", 12, 18, 5000)
    >>> outcome(a, [6, 15, 20, 0, 0], [True, True, True, False, False],
    ...         [6, 15, 20, 10, 24]).tolist()
    ['REFUND_FULL', 'REFUND_PARTIAL', 'NO_REFUND', 'PENDING', 'NO_REFUND']
    """
    t = np.asarray(months_to_event, dtype=float)
    ev = np.asarray(event, dtype=bool)
    followed = np.asarray(months_followed, dtype=float)
    horizon = a.max_years * 12
    out = np.full(len(t), NONE, dtype=object)
    hit = ev & (t < horizon)
    out[hit & (t < a.comparator_median_months)] = FULL
    out[hit & (t >= a.comparator_median_months) & (t < a.drug_median_months)] = PARTIAL
    out[~ev & (followed < min(a.drug_median_months, horizon))] = PENDING
    return out


def refunds_due(a: Agreement, patients: pd.DataFrame, as_of) -> pd.DataFrame:
    """Refunds due under an ``"os"`` agreement as known on ``as_of``. ``patients``:
    ``start`` (first treatment date), ``cost_fen`` (the drug cost the product paid,
    integer fen) and ``death_date`` (missing when alive). Adds ``outcome``,
    ``refund_fen`` (cost x share, whole fen rounded half up) and ``quarter`` (of the
    death, e.g. "2025Q3"; empty unless a refund is due).

    By hand (comparator 12 months, drug 18, half between): cost 100,000.00 yuan each;
    dies at 6 months -> 100,000.00; at 15 -> 50,000.00; at 20 -> 0; alive at 10 months
    -> pending.
    """
    if a.endpoint != "os":
        raise ValueError(f"{a.drug}: refunds_due is the overall-survival rule; "
                         f"use refund_lines for '{a.endpoint}'")
    as_of = pd.Timestamp(as_of)
    p = patients.copy()
    death = pd.to_datetime(p["death_date"])
    known = death.notna() & (death <= as_of)
    t = months_between(p["start"], death.where(known, as_of))
    p["outcome"] = outcome(a, t, known.to_numpy(), t)
    share = np.select([p["outcome"] == FULL, p["outcome"] == PARTIAL],
                      [10_000, a.partial_share_bp], 0).astype("int64")
    p["refund_fen"] = _share_of(p["cost_fen"].to_numpy(dtype="int64"), share)
    due = p["refund_fen"].to_numpy() > 0
    p["quarter"] = np.where(due, death.dt.to_period("Q").astype(str), "")
    return p


def _share_of(cost_fen: np.ndarray, share_bp) -> np.ndarray:
    """cost x share in whole fen, rounded half up (costs are not negative)."""
    return (np.asarray(cost_fen, dtype="int64") * np.asarray(share_bp, dtype="int64")
            + 5_000) // 10_000


def refund_lines(a: Agreement, costs: pd.DataFrame, death_date: pd.Series, as_of) -> pd.DataFrame:
    """The refunds due under ``a`` per patient and quarter, as known on ``as_of``.

    ``costs``: what the product paid for the drug, one row per settlement: ``psn_no``,
    ``date``, ``cost_fen``; rows dated after ``as_of`` are not yet known and left out.
    ``death_date``: per ``psn_no`` (index), missing when alive. A patient's start is
    their first cost. Returns ``psn_no``, ``start``, ``cost_fen`` (the patient's known
    cost), ``outcome``, ``quarter`` and ``refund_fen``: one row per patient and quarter
    with a refund, and one row (quarter empty) for a patient with none.

    PFS by hand (median 6 months): 30,000.00 yuan at the start, 20,000.00 at 3 months,
    25,000.00 at 7 months -> the last is refunded, in its quarter:

    >>> a = Agreement("X", None, 6, endpoint="pfs")
    >>> c = pd.DataFrame({"psn_no": "P1", "cost_fen": [3_000_000, 2_000_000, 2_500_000],
    ...                   "date": pd.to_datetime(["2024-01-10", "2024-04-10", "2024-08-10"])})
    >>> r = refund_lines(a, c, pd.Series(dtype="datetime64[ns]"), "2024-12-31")
    >>> r[["outcome", "quarter", "refund_fen"]].values.tolist()
    [['REFUND_AFTER_MEDIAN', '2024Q3', 2500000]]
    """
    as_of = pd.Timestamp(as_of)
    c = costs[pd.to_datetime(costs["date"]) <= as_of]
    cols = ["psn_no", "start", "cost_fen", "outcome", "quarter", "refund_fen"]
    if not len(c):
        return pd.DataFrame({"psn_no": pd.Series(dtype=object),
                             "start": pd.Series(dtype="datetime64[ns]"),
                             "cost_fen": pd.Series(dtype="int64"),
                             "outcome": pd.Series(dtype=object),
                             "quarter": pd.Series(dtype=object),
                             "refund_fen": pd.Series(dtype="int64")})
    c = c.assign(date=pd.to_datetime(c["date"]), psn_no=c["psn_no"].astype(str))
    per = (c.groupby("psn_no", sort=True).agg(start=("date", "min"), cost_fen=("cost_fen", "sum"))
           .reset_index())
    if a.endpoint == "os":
        per["death_date"] = per["psn_no"].map(death_date) if len(death_date) else pd.NaT
        return refunds_due(a, per, as_of)[cols]
    # cost-timed: each cost line by its months since the patient's start
    c = c.merge(per[["psn_no", "start"]], on="psn_no")
    t = months_between(c["start"], c["date"])
    inside = t < a.max_years * 12
    if a.endpoint == "pfs":
        on, share, code = inside & (t >= a.drug_median_months), 10_000, AFTER_MEDIAN
    else:
        on, share, code = inside & (t < a.drug_median_months), a.partial_share_bp, BEFORE_EFFECT
    due = (c[on].assign(quarter=c.loc[on, "date"].dt.to_period("Q").astype(str))
           .groupby(["psn_no", "quarter"], sort=True)["cost_fen"].sum().reset_index(name="base"))
    due["refund_fen"] = _share_of(due["base"].to_numpy(), share)
    due = due[due["refund_fen"] > 0].merge(per, on="psn_no").assign(outcome=code)
    none = per[~per["psn_no"].isin(due["psn_no"])].copy()
    if a.endpoint == "pfs":
        dead = (none["psn_no"].map(death_date).notna().to_numpy() if len(death_date)
                else np.zeros(len(none), dtype=bool))
        within = months_between(none["start"], [as_of] * len(none)) < a.drug_median_months
        none["outcome"] = np.where(within & ~dead, PENDING, NONE)
    else:
        none["outcome"] = NONE
    none = none.assign(quarter="", refund_fen=0)
    return (pd.concat([due[cols], none[cols]], ignore_index=True)
            .sort_values(["psn_no", "quarter"], kind="stable").reset_index(drop=True))


def quarterly_refunds(a: Agreement, costs: pd.DataFrame, death_date: pd.Series,
                      as_of) -> pd.DataFrame:
    """:func:`refund_lines` summed by quarter: patients and refund (fen)."""
    r = refund_lines(a, costs, death_date, as_of)
    r = r[r["refund_fen"] > 0]
    return (r.groupby("quarter").agg(patients=("refund_fen", "size"),
                                     refund_fen=("refund_fen", "sum"))
            .reset_index().assign(drug=a.drug))


def exponential_survival(median_months: float):
    """S(t) = 2^(-t / median): the survival curve with a constant hazard ln 2 / median."""
    return lambda t: np.power(2.0, -np.asarray(t, dtype=float) / median_months)


def expected_refund_share(a: Agreement, survival, steps: int = 2000) -> float:
    """Expected refund as a share of the drug cost for a patient whose time to death
    (``"os"``) or time on the drug (``"pfs"``, ``"effect"``; spending at a steady rate
    while on it) has survival function ``survival`` (a callable of months), within the
    horizon H of :attr:`Agreement.max_years` (events after it refund nothing)::

        os:      (1 - S(min(m_c, H))) + r (S(min(m_c, H)) - S(min(m_d, H)))
        pfs:     int_{min(m, H)}^H S(t) dt / int_0^H S(t) dt
        effect:  r int_0^{min(m, H)} S(t) dt / int_0^H S(t) dt

    (integrals by the trapezoid rule on ``steps`` intervals).

    By hand, exponential with median 12 months, comparator 12, drug 24, half: S(12) =
    1/2, S(24) = 1/4: 1/2 + 0.5 x 1/4 = 0.625.

    >>> expected_refund_share(Agreement("X", 12, 24, 5000), exponential_survival(12))
    0.625
    """
    h = a.max_years * 12
    if a.endpoint == "os":
        sc = float(survival(min(a.comparator_median_months, h)))
        sd = float(survival(min(a.drug_median_months, h)))
        return (1 - sc) + a.partial_share_bp / 10_000 * (sc - sd)
    t = np.linspace(0.0, h, steps + 1)
    s = np.asarray(survival(t), dtype=float)
    area = np.concatenate([[0.0], np.cumsum((s[1:] + s[:-1]) / 2 * np.diff(t))])
    total = area[-1]
    if total <= 0:
        return 0.0
    before = float(np.interp(min(a.drug_median_months, h), t, area))
    if a.endpoint == "pfs":
        return (total - before) / total
    return a.partial_share_bp / 10_000 * before / total
