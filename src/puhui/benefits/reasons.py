"""Stable reason codes of benefit decisions (one per settlement and benefit).

The codes are part of the outside contract (explanations of benefit, reports): add new
ones, never rename or renumber. Precedence is top to bottom: the first that applies is
the reason.
"""

from __future__ import annotations

import numpy as np

#: code -> (number, status, meaning). Status: "paid", "zero" or "denied".
REASONS: dict[str, tuple[int, str, str]] = {
    "NO_POLICY": (1, "denied", "the person has no policy of the product"),
    "OUTSIDE_POLICY": (2, "denied", "the settlement date is outside the policy period"),
    "NOT_ELIGIBLE": (3, "denied", "the person's scheme is not eligible for the product"),
    "WAITING_PERIOD": (4, "denied", "within the waiting period of a new policy"),
    "EXCLUDED_BASIC_PAID": (5, "denied", "the listed items were paid by basic insurance"),
    "NOT_COVERED": (6, "zero", "nothing in the settlement is of the kind this benefit pays"),
    "DEDUCTIBLE": (7, "zero", "all of the eligible amount went to the deductible"),
    "LIMIT_REACHED": (8, "zero", "the benefit's annual limit was already used up"),
    "PAID_TO_LIMIT": (9, "paid", "paid in part: the annual limit was reached"),
    "PAID": (10, "paid", "paid"),
    "ZERO_RATIO": (11, "zero", "the payout ratio is zero"),
    "LINES_NOT_GIVEN": (12, "zero", "the benefit pays from settlement lines and none were "
                        "given: decided again when they are"),
}
# index = number - 1. Object arrays of the codes' own strings: indexing them hands out
# references to a dozen strings (hashes cached), not millions of fresh ones.
CODES = np.array(list(REASONS), dtype=object)
STATUSES = np.array([v[1] for v in REASONS.values()], dtype=object)
NUMBER = {k: v[0] for k, v in REASONS.items()}


def decision_reasons(block: np.ndarray, applies: np.ndarray, eligible: np.ndarray,
                     excluded: np.ndarray, deductible: np.ndarray, uncapped: np.ndarray,
                     paid: np.ndarray) -> np.ndarray:
    """Reason numbers (see :data:`REASONS`) for arrays of decisions.

    ``block`` holds a denial number decided before the benefit (no policy, waiting
    period, ...) or 0.
    """
    after = eligible - deductible
    conds = [
        block > 0,
        ~applies | ((eligible == 0) & (excluded == 0)),
        (eligible == 0) & (excluded > 0),
        after == 0,
        (paid == 0) & (uncapped > 0),
        (paid > 0) & (paid < uncapped),
        paid > 0,
    ]
    choices = [block, NUMBER["NOT_COVERED"], NUMBER["EXCLUDED_BASIC_PAID"],
               NUMBER["DEDUCTIBLE"], NUMBER["LIMIT_REACHED"], NUMBER["PAID_TO_LIMIT"],
               NUMBER["PAID"]]
    return np.select(conds, choices, default=NUMBER["ZERO_RATIO"]).astype("int8")


def decision_reason(block: int, applies: bool, eligible: int, excluded: int,
                    deductible: int, uncapped: int, paid: int) -> int:
    """The reason number of one decision: :func:`decision_reasons` for scalars (a direct
    payout decides one settlement; NumPy on one-element arrays cost it about 0.3 ms).

    >>> decision_reason(0, True, 50000, 0, 20000, 30000, 30000) == NUMBER["PAID"]
    True
    >>> decision_reason(0, True, 50000, 0, 50000, 0, 0) == NUMBER["DEDUCTIBLE"]
    True
    """
    if block > 0:
        return block
    if not applies or (eligible == 0 and excluded == 0):
        return NUMBER["NOT_COVERED"]
    if eligible == 0 and excluded > 0:
        return NUMBER["EXCLUDED_BASIC_PAID"]
    if eligible - deductible == 0:
        return NUMBER["DEDUCTIBLE"]
    if paid == 0 and uncapped > 0:
        return NUMBER["LIMIT_REACHED"]
    if 0 < paid < uncapped:
        return NUMBER["PAID_TO_LIMIT"]
    return NUMBER["PAID"] if paid > 0 else NUMBER["ZERO_RATIO"]


def lines_not_given(reason: np.ndarray, applies: np.ndarray) -> np.ndarray:
    """Reasons of a line benefit decided without any settlement lines (none given at all,
    not an empty set): where the benefit applies and the reason would read NOT_COVERED
    (nothing of its kind), it reads LINES_NOT_GIVEN instead, so an explanation of
    benefit never says the product does not cover what the data simply did not hold.

    >>> r = np.array([NUMBER["NOT_COVERED"], NUMBER["NOT_COVERED"], NUMBER["NO_POLICY"]])
    >>> [CODES[x - 1] for x in lines_not_given(r, np.array([True, False, True]))]
    ['LINES_NOT_GIVEN', 'NOT_COVERED', 'NO_POLICY']
    """
    reason = np.asarray(reason)
    return np.where((reason == NUMBER["NOT_COVERED"]) & np.asarray(applies, dtype=bool),
                    NUMBER["LINES_NOT_GIVEN"], reason).astype(reason.dtype)


def status_of(number: np.ndarray) -> np.ndarray:
    return STATUSES[np.asarray(number) - 1]
