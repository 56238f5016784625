"""The layer: deductible, ratio and limit with running accumulators, vectorised.

Items (one per settlement and layer) arrive **in processing order** (for each person,
settlements in time order). Accumulator groups (a person's deductible or limit in one
period) are integer codes; items of a group need not be contiguous.

For item *i* of a deductible group with annual deductible *D* and prior use *u0*::

    used_i       = min(u0 + sum_{j<=i} base_j, D)           running deductible used
    deductible_i = used_i - used_{i-1}                       deductible applied here
    after_i      = base_i - deductible_i
    uncapped_i   = round(after_i * ratio_i)                  half away from zero, fen

and for item *i* of a limit group with annual limit *L* and prior payments *p0*::

    paid_i       = min(p0 + sum_{j<=i} uncapped_j, L) - min(p0 + sum_{j<i} uncapped_j, L)

which is exactly the sequential rule ``paid_i = min(uncapped_i, L - paid so far)``.
The part of ``after_i`` the payment stands for is ``covered_i`` (all of it unless the
limit cut the payment, then ``ceil(paid_i / ratio_i)``); the rest, ``overflow_i``, is
what a layer above the limit (such as Shanghai's supplementary fund) pays on.

A per-stay deductible has no group: ``deductible_i = min(base_i, D_i)``.
*D* and *L* must be constant within a group (they are chosen from per-period
attributes); the engine takes each group's first value.

Overflow. Amounts are int64 fen, and NumPy's int64 arithmetic wraps around silently, so
the two places where it could are checked and refused with an :class:`OverflowError`
rather than paid wrong: a running sum within a group (:func:`grouped_cumsum`; it is
exact whenever every group's sum of magnitudes fits, since the wrap of one cumulative
sum over all groups cancels in the difference) and an amount times a ratio in basis
points (``after * ratio_bp`` in the payment, ``paid * 10000`` in :func:`covered_base`;
checked on ``after``). Inside the accepted range of the fund data (a settlement's
amounts within 10^10 fen, :data:`puhui.fund.schema.MAX_SETTLEMENT_FEN`) neither can
happen: 10^10 x 10^4 = 10^14, and a group's sum needs 9 x 10^8 settlements at the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.money import BP_PER_UNIT, apply_ratio


def _group_order(group: np.ndarray) -> np.ndarray | None:
    """A stable order that makes ``group`` contiguous; None when it already is sorted
    (the usual case: items in processing order with periods numbered in that order)."""
    g = np.asarray(group)
    if len(g) < 2 or bool((g[1:] >= g[:-1]).all()):
        return None
    return np.argsort(g, kind="stable")


#: Largest magnitude of an amount that may be multiplied by a ratio in basis points
#: (``a * 10000 + 5000`` stays within int64): about 9.2 x 10^14 fen.
MAX_RATIO_OPERAND = (np.iinfo("int64").max - BP_PER_UNIT) // BP_PER_UNIT
#: Largest sum of magnitudes allowed in one group's running sum (half the int64 range,
#: so adding the prior use of an accumulator cannot overflow either).
MAX_RUNNING_SUM = 2**62


def _span(values: np.ndarray) -> int:
    """The largest magnitude in ``values`` (a Python int: no overflow)."""
    return max(abs(int(values.max())), abs(int(values.min()))) if len(values) else 0


def check_running_sums(values: np.ndarray, group: np.ndarray) -> None:
    """Raise :class:`OverflowError` when a group's running sum of ``values`` might not
    fit int64 (its sum of magnitudes reaches :data:`MAX_RUNNING_SUM`).

    >>> check_running_sums(np.array([2**61, 2**61, 5]), np.array([0, 1, 0]))
    >>> check_running_sums(np.array([2**61, 2**61]), np.array([0, 0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    OverflowError: running sums of amounts beyond int64 fen in 1 accumulator group(s) ...
    """
    if _span(values) * len(values) < MAX_RUNNING_SUM:         # the usual case: one pass
        return
    mag = np.abs(values.astype("float64"))                   # float: no wrap while checking
    sums = pd.Series(mag).groupby(np.asarray(group)).sum()
    bad = int((sums >= MAX_RUNNING_SUM).sum())
    if bad:
        raise OverflowError(
            f"running sums of amounts beyond int64 fen in {bad} accumulator group(s) "
            f"(a sum of {sums.max():.3g} fen); amounts this large are outside the accepted "
            f"range of the fund data (docs/data-schema.md, Bounds): validate the data")


def check_ratio_operands(amount: np.ndarray) -> None:
    """Raise :class:`OverflowError` when an amount is too large to multiply by a ratio in
    basis points within int64 (:data:`MAX_RATIO_OPERAND`).

    >>> check_ratio_operands(np.array([10**10, -10**10]))
    >>> check_ratio_operands(np.array([2 * 10**15]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    OverflowError: an amount of 2e+15 fen times a ratio in basis points overflows int64; ...
    """
    m = _span(np.asarray(amount))
    if m > MAX_RATIO_OPERAND:
        raise OverflowError(
            f"an amount of {m:.3g} fen times a ratio in basis points overflows int64; "
            f"amounts this large are outside the accepted range of the fund data "
            f"(docs/data-schema.md, Bounds): validate the data")


def grouped_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` within each ``group``, in the items' order. Exact, or
    an :class:`OverflowError` (see :func:`check_running_sums`).

    >>> grouped_cumsum(np.array([1, 2, 3, 4]), np.array([7, 8, 7, 8])).tolist()
    [1, 2, 4, 6]

    One cumulative sum over all groups may wrap around int64; each group's own sums
    are still exact (the wrap cancels in the difference):

    >>> big = 2**61
    >>> grouped_cumsum(np.array([big, big, big, big, 3]), np.array([0, 1, 2, 3, 3])).tolist()[-1]
    2305843009213693955
    """
    values = np.asarray(values, dtype="int64")
    n = len(values)
    if n == 0:
        return values.copy()
    check_running_sums(values, group)
    order = _group_order(group)
    if order is None:
        v, g = values, np.asarray(group)
    else:
        v, g = values[order], np.asarray(group)[order]
    cs = np.cumsum(v)
    starts = np.empty(n, bool)
    starts[0] = True
    np.not_equal(g[1:], g[:-1], out=starts[1:])
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    before = (cs - v)[start_idx]
    if order is None:
        return cs - before
    out = np.empty(n, dtype="int64")
    out[order] = cs - before
    return out


def group_first(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each item gets the value of its group's first item.

    >>> group_first(np.array([5, 6, 9, 1]), np.array([7, 8, 7, 8])).tolist()
    [5, 6, 5, 6]
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return values.copy()
    order = _group_order(group)
    g = np.asarray(group) if order is None else np.asarray(group)[order]
    starts = np.empty(n, bool)
    starts[0] = True
    np.not_equal(g[1:], g[:-1], out=starts[1:])
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    if order is None:
        return values[start_idx]
    out = np.empty_like(values)
    out[order] = values[order][start_idx]
    return out


@dataclass
class LayerOutcome:
    """Per-item results of one layer (all int64 fen except ``ratio_bp``). A field is
    ``None`` when the caller of :func:`puhui.tiers.waterfall.run_waterfall` did not keep it."""

    base: np.ndarray
    deductible: np.ndarray
    ratio_bp: np.ndarray
    uncapped: np.ndarray
    paid: np.ndarray
    covered: np.ndarray
    overflow: np.ndarray

    @property
    def after_deductible(self) -> np.ndarray:
        return self.base - self.deductible


def deductible_applied(base, amount, group=None, prior=None) -> np.ndarray:
    """Deductible applied to each item (see the module formula).

    ``group=None`` means a per-item (per-stay) deductible: ``min(base, amount)``.

    >>> deductible_applied(np.array([800, 800, 800]), np.array([1500] * 3),
    ...                    group=np.array([0, 0, 0])).tolist()
    [800, 700, 0]
    """
    base = np.asarray(base, dtype="int64")
    amount = np.asarray(amount, dtype="int64")
    if group is None:
        return np.minimum(base, amount)
    d = group_first(amount, group)
    u0 = np.zeros_like(base) if prior is None else np.asarray(prior, dtype="int64")
    cum = u0 + grouped_cumsum(base, group)
    return np.minimum(cum, d) - np.minimum(cum - base, d)


def limited_payment(uncapped, limit, group=None, prior=None) -> np.ndarray:
    """Payment after the running limit (see the module formula); no group: no limit.

    >>> limited_payment(np.array([600, 600, 600]), np.array([1000] * 3),
    ...                 group=np.array([0, 0, 0])).tolist()
    [600, 400, 0]
    """
    uncapped = np.asarray(uncapped, dtype="int64")
    if group is None:
        return uncapped.copy()
    lim = group_first(np.asarray(limit, dtype="int64"), group)
    p0 = np.zeros_like(uncapped) if prior is None else np.asarray(prior, dtype="int64")
    cum = p0 + grouped_cumsum(uncapped, group)
    return np.maximum(np.minimum(cum, lim) - np.minimum(cum - uncapped, lim), 0)


def covered_base(after, uncapped, paid, ratio_bp) -> np.ndarray:
    """The part of the after-deductible base that the payment stands for.

    All of it when the payment was not cut by the limit; otherwise
    ``min(after, ceil(paid * 10000 / ratio_bp))``.
    """
    after = np.asarray(after, dtype="int64")
    # the payment was ``after * ratio`` (apply_ratio); this checks that product, and
    # ``paid * 10000`` below (|paid| <= |after|), could not wrap around
    check_ratio_operands(after)
    r = np.asarray(ratio_bp, dtype="int64")
    cut = paid != uncapped
    safe_r = np.where(r > 0, r, 1)
    part = np.minimum(after, -((-paid * BP_PER_UNIT) // safe_r))
    return np.where(cut, part, after)


def run_layer(base, ratio_bp, *, ded_amount=0, ded_group=None, ded_prior=None,
              limit_amount=None, limit_group=None, limit_prior=None) -> LayerOutcome:
    """Apply one layer to items in processing order (see the module formulas).

    Parameters
    ----------
    base : int64 fen, >= 0
    ratio_bp : payout ratio in basis points, per item
    ded_amount : deductible per item (constant within ``ded_group``); 0 for none
    ded_group : accumulator codes of the deductible; ``None`` for a per-item deductible
    ded_prior : deductible already used in the group before these items
    limit_amount, limit_group, limit_prior : the same for the limit on payments;
        ``limit_group=None`` means no limit

    Examples
    --------
    A 1,500-yuan annual deductible, 85 %, limit 10,000 yuan, three bills of
    1,000 / 5,000 / 20,000 yuan (amounts in fen):

    >>> out = run_layer(np.array([100000, 500000, 2000000]), np.full(3, 8500),
    ...                 ded_amount=150000, ded_group=np.zeros(3, int),
    ...                 limit_amount=1000000, limit_group=np.zeros(3, int))
    >>> out.deductible.tolist(), out.paid.tolist(), out.overflow.tolist()
    ([100000, 50000, 0], [0, 382500, 617500], [0, 0, 1273529])
    """
    base = np.asarray(base, dtype="int64")
    if (base < 0).any():
        raise ValueError("layer bases must be >= 0; reversals are handled by the caller")
    n = len(base)
    ratio_bp = np.broadcast_to(np.asarray(ratio_bp, dtype="int64"), (n,))
    ded_amount = np.broadcast_to(np.asarray(ded_amount, dtype="int64"), (n,))
    ded = deductible_applied(base, ded_amount, ded_group, ded_prior)
    after = base - ded
    check_ratio_operands(after)
    uncapped = apply_ratio(after, ratio_bp)
    if limit_group is not None:
        limit_amount = np.broadcast_to(np.asarray(limit_amount, dtype="int64"), (n,))
    paid = limited_payment(uncapped, limit_amount, limit_group, limit_prior)
    covered = covered_base(after, uncapped, paid, ratio_bp)
    return LayerOutcome(base=base, deductible=ded, ratio_bp=np.array(ratio_bp),
                        uncapped=uncapped, paid=paid, covered=covered,
                        overflow=after - covered)
