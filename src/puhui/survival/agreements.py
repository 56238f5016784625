"""Outcome-based drug agreements (Taiwan's model, seed 000; DOMAIN.md section 4).

A drug on the special-drug list may carry an agreement with its manufacturer: measured
from the start of treatment, if the patient dies (overall survival, ``"os"``) or
progresses (``"pfs"``) before the comparator arm's median time, the manufacturer refunds
the whole drug cost; between that and the drug's own median, a stated share of it;
after the drug's median, nothing. Observation stops after ``max_years`` (5): a patient
with no event by then is settled as "no refund".

Two sides of one rule:

- claims (:func:`refunds_due`): per patient, from the outcome dates known at a date,
  the refund due to the product in fen (integer; the share in basis points), the
  quarter it falls due (the quarter of the event), or ``PENDING`` while the patient is
  alive and inside the drug's median;
- pricing (:func:`expected_refund_share`): the expected refund as a share of the drug
  cost, from a survival curve S(t) of the treated patients::

      E[share] = (1 - S(m_c)) + r (S(m_c) - S(m_d))

  m_c, m_d the comparator's and the drug's medians, r the partial share. For an
  exponential survival with median m (:func:`exponential_survival`),
  S(t) = 2^(-t / m).

Time is in months of 365.25 / 12 days.

Not built yet: agreements read from the drug-list file, recoveries booked in the ledger,
the refund in the pricing report (see docs/STATUS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Days in a month of the agreements' clocks.
MONTH_DAYS = 365.25 / 12

#: Outcome of a patient under an agreement (stable codes).
FULL, PARTIAL, NONE, PENDING = "REFUND_FULL", "REFUND_PARTIAL", "NO_REFUND", "PENDING"


@dataclass(frozen=True)
class Agreement:
    """One drug's outcome-based agreement."""

    drug: str                      # hilist_code
    comparator_median_months: float
    drug_median_months: float
    partial_share_bp: int          # refund between the two medians, basis points of cost
    endpoint: str = "os"           # "os": death; "pfs": progression or death
    max_years: float = 5.0

    def __post_init__(self):
        if not 0 < self.comparator_median_months <= self.drug_median_months:
            raise ValueError(f"{self.drug}: need 0 < comparator median <= drug median")
        if not 0 <= self.partial_share_bp <= 10_000:
            raise ValueError(f"{self.drug}: partial share must be 0-10000 basis points")
        if self.endpoint not in ("os", "pfs"):
            raise ValueError(f"{self.drug}: endpoint is 'os' or 'pfs'")


def months_between(start, end) -> np.ndarray:
    """Months of :data:`MONTH_DAYS` days from ``start`` to ``end`` (dates)."""
    days = (pd.to_datetime(pd.Series(end)) - pd.to_datetime(pd.Series(start))).dt.days
    return days.to_numpy(dtype=float) / MONTH_DAYS


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
    """Refunds due under ``a`` as known on ``as_of``. ``patients``: ``start`` (first
    treatment date), ``cost_fen`` (the drug cost the product paid, integer fen),
    ``death_date`` and, for ``"pfs"``, ``progression_date`` (missing when none). Adds
    ``outcome``, ``refund_fen`` (cost x share, whole fen rounded half up) and ``quarter``
    (of the event, e.g. "2025Q3"; empty unless a refund is due).

    By hand (comparator 12 months, drug 18, half between): cost 100,000.00 yuan each;
    dies at 6 months -> 100,000.00; at 15 -> 50,000.00; at 20 -> 0; alive at 10 months
    -> pending.
    """
    as_of = pd.Timestamp(as_of)
    p = patients.copy()
    death = pd.to_datetime(p["death_date"])
    event_date = death
    if a.endpoint == "pfs":
        prog = pd.to_datetime(p["progression_date"])
        event_date = prog.where(prog.notna() & (death.isna() | (prog <= death)), death)
    known = event_date.notna() & (event_date <= as_of)
    t = months_between(p["start"], event_date.where(known, as_of))
    p["outcome"] = outcome(a, t, known.to_numpy(), t)
    share = np.select([p["outcome"] == FULL, p["outcome"] == PARTIAL],
                      [10_000, a.partial_share_bp], 0).astype("int64")
    cost = p["cost_fen"].to_numpy(dtype="int64")
    p["refund_fen"] = (cost * share + 5_000) // 10_000          # half up, in whole fen
    due = p["refund_fen"].to_numpy() > 0
    q = event_date.dt.to_period("Q").astype(str)
    p["quarter"] = np.where(due, q, "")
    return p


def quarterly_refunds(a: Agreement, patients: pd.DataFrame, as_of) -> pd.DataFrame:
    """:func:`refunds_due` summed by quarter: patients and refund (fen)."""
    r = refunds_due(a, patients, as_of)
    r = r[r["refund_fen"] > 0]
    return (r.groupby("quarter").agg(patients=("refund_fen", "size"),
                                     refund_fen=("refund_fen", "sum"))
            .reset_index().assign(drug=a.drug))


def exponential_survival(median_months: float):
    """S(t) = 2^(-t / median): the survival curve with a constant hazard ln 2 / median."""
    return lambda t: np.power(2.0, -np.asarray(t, dtype=float) / median_months)


def expected_refund_share(a: Agreement, survival) -> float:
    """Expected refund as a share of the drug cost for a patient whose time to the
    endpoint has survival function ``survival`` (a callable of months), the horizon of
    :attr:`Agreement.max_years` included (events after it refund nothing)::

        (1 - S(min(m_c, H))) + r (S(min(m_c, H)) - S(min(m_d, H)))

    By hand, exponential with median 12 months, comparator 12, drug 24, half: S(12) =
    1/2, S(24) = 1/4: 1/2 + 0.5 x 1/4 = 0.625.

    >>> expected_refund_share(Agreement("X", 12, 24, 5000), exponential_survival(12))
    0.625
    """
    h = a.max_years * 12
    sc = float(survival(min(a.comparator_median_months, h)))
    sd = float(survival(min(a.drug_median_months, h)))
    return (1 - sc) + a.partial_share_bp / 10_000 * (sc - sd)
