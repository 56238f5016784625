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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puhui.money import BP_PER_UNIT, apply_ratio


def _group_order(group: np.ndarray) -> np.ndarray | None:
    """A stable order that makes ``group`` contiguous; None when it already is sorted
    (the usual case: items in processing order with periods numbered in that order)."""
    g = np.asarray(group)
    if len(g) < 2 or bool((g[1:] >= g[:-1]).all()):
        return None
    return np.argsort(g, kind="stable")


def grouped_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` within each ``group``, in the items' order.

    >>> grouped_cumsum(np.array([1, 2, 3, 4]), np.array([7, 8, 7, 8])).tolist()
    [1, 2, 4, 6]
    """
    values = np.asarray(values, dtype="int64")
    n = len(values)
    if n == 0:
        return values.copy()
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
    uncapped = apply_ratio(after, ratio_bp)
    if limit_group is not None:
        limit_amount = np.broadcast_to(np.asarray(limit_amount, dtype="int64"), (n,))
    paid = limited_payment(uncapped, limit_amount, limit_group, limit_prior)
    covered = covered_base(after, uncapped, paid, ratio_bp)
    return LayerOutcome(base=base, deductible=ded, ratio_bp=np.array(ratio_bp),
                        uncapped=uncapped, paid=paid, covered=covered,
                        overflow=after - covered)
