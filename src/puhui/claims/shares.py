"""Co-insurance: each insurer's share of a payment, in integer fen (issue 22, point 4).

A product sold by a co-insuring group (共保体) names its insurers and their quota shares
(``[[co_insurers]]`` of the product file, :class:`puhui.products.model.CoInsurer`, in
basis points adding up to 10,000). Every payment entry the ledger records for such a
product is split between them here; nothing in this module reads or writes a database.

The rounding rule (:func:`split`)
---------------------------------
An amount of ``a`` fen (``a >= 0``) gives insurer ``i`` with quota ``q_i`` basis points
first ``floor(a * q_i / 10000)`` fen; the fen left over (fewer than the number of
insurers) go one each to the insurers with the largest remainders ``a * q_i mod 10000``
(largest remainder, Hamilton's method); among equal remainders the lead insurer first,
then by insurer id. A negative amount is split as its opposite and negated, so
``split(-a) == -split(a)`` insurer by insurer. The shares add up to the amount exactly.

An entry's shares (:func:`entry_shares`)
----------------------------------------
Entries apply to a settlement's benefit one after the other (a payment, adjustments, a
reversal). Entry ``e`` takes the split of the net paid *after* it, less what the earlier
entries of that settlement and benefit gave each insurer:

    shares(e) = split(net before e + amount of e) - (sum of the earlier entries' shares)

so each insurer's net for a settlement's benefit is always the split of the net paid
(never a fen of drift from rounding adjustments one by one), the shares of ``e`` add up
to its amount, and a reversal (which takes the net to 0) gets exactly the negative of
the shares recorded before it - of the original payment and of every adjustment -
without rounding anything again. A first payment's shares are ``split(amount)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Quota(Protocol):
    """What a share is computed from (:class:`puhui.products.model.CoInsurer` is one)."""

    id: str
    share_bp: int
    lead: bool


#: The basis points of a whole (the quotas of a group add up to it).
WHOLE_BP = 10_000


def split(amount: int, group: Sequence[Quota]) -> dict[str, int]:
    """``amount`` fen split between the insurers of ``group`` (see the module's rule):
    {insurer id: fen}, in the group's order.

    >>> from types import SimpleNamespace as I
    >>> g = [I(id="a", share_bp=3334, lead=True), I(id="b", share_bp=3333, lead=False),
    ...      I(id="c", share_bp=3333, lead=False)]
    >>> split(100, g)
    {'a': 34, 'b': 33, 'c': 33}
    >>> split(2, g), split(-2, g)
    ({'a': 1, 'b': 1, 'c': 0}, {'a': -1, 'b': -1, 'c': 0})
    """
    if sum(q.share_bp for q in group) != WHOLE_BP:
        raise ValueError(f"quotas add up to {sum(q.share_bp for q in group)} basis points, "
                         f"not {WHOLE_BP}")
    sign, a = (-1, -amount) if amount < 0 else (1, amount)
    base = {q.id: a * q.share_bp // WHOLE_BP for q in group}
    left = a - sum(base.values())
    order = sorted(group, key=lambda q: (-(a * q.share_bp % WHOLE_BP), not q.lead, q.id))
    for q in order[:left]:
        base[q.id] += 1
    return {q.id: sign * base[q.id] for q in group}


def entry_shares(amount: int, net_before: int, shares_before: Mapping[str, int],
                 group: Sequence[Quota]) -> dict[str, int]:
    """The shares of an entry of ``amount`` fen applying to a settlement's benefit whose
    earlier entries net ``net_before`` and gave ``shares_before`` ({insurer: fen}, adding
    up to ``net_before``): ``split(net_before + amount) - shares_before``.

    >>> from types import SimpleNamespace as I
    >>> g = [I(id="a", share_bp=5000, lead=True), I(id="b", share_bp=5000, lead=False)]
    >>> first = entry_shares(101, 0, {}, g); first
    {'a': 51, 'b': 50}
    >>> entry_shares(-101, 101, first, g)                   # a reversal: the negative
    {'a': -51, 'b': -50}
    >>> entry_shares(-2, 101, first, g)                     # an adjustment to 99
    {'a': -1, 'b': -1}
    """
    if sum(shares_before.values()) != net_before:
        raise ValueError(f"earlier shares add up to {sum(shares_before.values())}, not the "
                         f"net {net_before}")
    stray = set(shares_before) - {q.id for q in group}
    if stray:
        raise ValueError(f"earlier shares name insurers not in the group: {sorted(stray)}")
    target = split(net_before + amount, group)
    return {i: fen - shares_before.get(i, 0) for i, fen in target.items()}


def carry(entries: Sequence[tuple], group: Sequence[Quota]
          ) -> tuple[dict, list[tuple[int, str, int]]]:
    """Every insurer's running share of settlements' benefits from their entries as
    recorded, and the shares of the entries recorded without any.

    ``entries``: (key, entry_id, amount, shares) in the order recorded, ``key`` naming
    the settlement and benefit, ``shares`` {insurer: fen} or None for an entry recorded
    unsplit (before ledger schema 7, or under a product file naming no co-insurers).
    An unsplit entry takes :func:`entry_shares` from the entries of its key before it,
    as if it had been split when recorded. Returns ({key: (net, {insurer: fen})}, [(entry_id,
    insurer, fen)] of the unsplit entries' new shares).

    >>> from types import SimpleNamespace as I
    >>> g = [I(id="a", share_bp=5000, lead=True), I(id="b", share_bp=5000, lead=False)]
    >>> carry([("s1", 1, 101, None), ("s1", 2, -101, None)], g)
    ({'s1': (0, {'a': 0, 'b': 0})}, [(1, 'a', 51), (1, 'b', 50), (2, 'a', -51), (2, 'b', -50)])
    """
    state: dict = {}
    new: list[tuple[int, str, int]] = []
    for key, entry_id, amount, shares in entries:
        net, got = state.get(key, (0, {}))
        if shares is None:
            shares = entry_shares(int(amount), net, got, group)
            new.extend((entry_id, i, fen) for i, fen in shares.items())
        elif sum(shares.values()) != int(amount):
            raise ValueError(f"entry {entry_id}: shares add up to {sum(shares.values())}, "
                             f"not its {int(amount)} fen")
        names = [*got, *(i for i in shares if i not in got)]
        got = {i: got.get(i, 0) + shares.get(i, 0) for i in names}
        state[key] = (net + int(amount), got)
    return state, new
