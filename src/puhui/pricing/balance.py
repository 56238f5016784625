"""Balance: each pricing group's model brought to the level of the experience it was
fitted on, as far as that experience is credible.

The frequency and severity GLMs reproduce the data's event counts and amounts, but the
quantity priced is the annual benefit after a deductible, a ratio and a limit, a convex
function of the year's total; its expectation depends on the whole compound
distribution (the count's dispersion, the severity's tail, and how they go together in
one person's year), and a mis-specified shape moves it. On a city whose people carry a
persistent frailty (puhui synth --generator second), the hospital benefit's model
expected 106.21 yuan per person-year against 80.45 as-if paid in the very years it was
fitted on (2025, 100,000 people): the price was a third too high before any question of
who enrols. So each group's expected annual benefit is set against the product's own
calculator on the same person-years (the as-if payouts) and scaled::

    A/E    = sum as-if paid / sum (E[B | cell] x exposure)   over the models' years
    Z      = min(1, sqrt(n / (n_full (1 + cv^2))))          limited fluctuation
    factor = Z A/E + (1 - Z)

where n is the number of person-years the group paid (as if in force) and cv the
coefficient of variation of those payments: full credibility for a pure premium needs
n_full (1 + cv^2) claims, n_full = 1,082 for the level within +-5 % with probability
90 % (Mahler and Dean, "Credibility", Foundations of Casualty Actuarial Science,
chapter 8: the standard for pure premiums). The factor
multiplies the model's E[B] (and E[B^2] by its square) wherever the model is used: the
cells' costs, the claim-free steps, the credibility by cell (which then moves relative
positions only), what-if, the lifetime projection. A thin group stays near its model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.pricing.external import credibility_weight

#: Events for full credibility of a group's level (90 % / +-5 %).
FULL_CREDIBILITY_EVENTS = 1082.0


def balance_factor(actual: float, expected: float, events: float,
                   n_full: float = FULL_CREDIBILITY_EVENTS) -> tuple[float, float]:
    """(factor, Z) for a group with ``actual`` as-if paid against ``expected`` by its
    model, ``events`` claims against a standard of ``n_full``: factor = Z A/E + (1 - Z),
    Z = min(1, sqrt(events / n_full)); 1 when nothing was expected.

    >>> balance_factor(80.0, 100.0, 4328)      # credible: the experience's level
    (0.8, 1.0)
    >>> f, z = balance_factor(80.0, 100.0, 270.5); round(f, 3), round(z, 3)
    (0.9, 0.5)
    >>> balance_factor(5.0, 0.0, 10)
    (1.0, 0.0)
    """
    if not expected > 0:
        return 1.0, 0.0
    z = credibility_weight(events, n_full)
    return z * (actual / expected) + (1.0 - z), z


def balance(model, terms, frame: pd.DataFrame, benefit_ids, cells: tuple,
            use: np.ndarray | None = None, n_full: float = FULL_CREDIBILITY_EVENTS) -> dict:
    """Set ``model.level_`` to the balance factor of group ``terms`` and return its
    figures. ``frame``: the rating frame (``exposure``, ``payout_<b>`` in fen);
    ``benefit_ids``: the group's benefits; ``cells``: ``cells_of(frame, ...)`` with the
    factors the model reads; ``use``: the rows the model was fitted on (default all)."""
    model.level_ = 1.0
    combos, code = cells
    on = slice(None) if use is None else np.asarray(use, dtype=bool)
    m1 = model.moments(combos, terms)[0]
    expected = float(np.dot(m1[code[on]], frame["exposure"].to_numpy(dtype=float)[on]))
    paid = sum(frame[f"payout_{b}"].to_numpy()[on] for b in benefit_ids) / 100.0
    paid = paid[paid > 0]
    actual = float(paid.sum())
    cv = float(paid.std() / paid.mean()) if len(paid) > 1 else 0.0
    standard = n_full * (1.0 + cv ** 2)
    factor, z = balance_factor(actual, expected, len(paid), standard)
    model.level_ = factor
    return {"actual": round(actual, 2), "expected": round(expected, 2),
            "actual_to_expected": round(actual / expected, 4) if expected > 0 else None,
            "claims": int(len(paid)), "cv": round(cv, 4),
            "full_credibility_claims": round(standard, 1), "Z": round(z, 4),
            "factor": round(factor, 6)}
