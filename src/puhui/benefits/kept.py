"""What a settlement that keeps what it was paid uses of a policy's accumulators.

A settlement held for review by a claims batch's fraud or quality flags, or quarantined
by one (its row is wrong in this data), is not adjudicated again: it keeps what it was
paid. Its use of the policy's running deductible and limits is therefore what it
keeps, not what it would be paid now: per benefit, the deductible its decision applied
when it was paid (to the benefit's yearly deductible accumulator) and the payout it
keeps (to the benefit's limit accumulator); benefits sharing an accumulator add up.

These uses are counted **before** the policy year's other settlements, whatever their
dates: the kept amounts are facts, and the others are adjudicated, in time order, on
what the deductible and limits leave. (Counted at the held settlement's date instead,
a settlement dated before it that reaches the ledger later would take the limit the
kept payout already used, and the deductible it already consumed: 4,000 yuan limit,
2,100 + 1,400 paid, an earlier settlement arriving later paid 1,900 - 5,400 in all.)

A held settlement never paid (held the first time a batch saw it, so never decided
or stored) keeps nothing and uses nothing. A settlement decided but left unpaid by
choice - no claim filed (NOT_CLAIMED) or no consent to a proactive payout
(NO_CONSENT) - uses the limit at what was due on it when decided (its decision's
payout), or at what it keeps if that is more: the claims rule runs the limit over
every settlement in time order, claimed or not, so that a claim filed later is paid
what it would have been paid at once (counted at its 0 paid, a month's extract after
a full-year batch paid the next settlement the unclaimed one's share of the limit,
1,600 yuan, and took it back when the claim came). Used by the claims batch (as the
calculator's ``priors``) and by a reversal at once (as the starting state of the
per-settlement face), so both count a held settlement the same way.
"""

from __future__ import annotations

from typing import Iterable

from puhui.products.model import Product

#: Decisions whose payout is due but left unpaid by choice (docs/claims.md).
LEFT_UNPAID = ("NOT_CLAIMED", "NO_CONSENT")


def limit_use(paid: int, decided: int, reason: str) -> int:
    """What a kept settlement uses of its benefit's limit (fen): what it keeps, or,
    for one left unpaid by choice (:data:`LEFT_UNPAID`), what was due on it when
    decided if that is more.

    >>> limit_use(140_000, 140_000, "PAID"), limit_use(0, 210_000, "NOT_CLAIMED")
    (140000, 210000)
    >>> limit_use(210_000, 190_000, "NO_CONSENT"), limit_use(0, 210_000, "PAID")
    (210000, 0)
    """
    return max(int(paid), int(decided)) if reason in LEFT_UNPAID else int(paid)


def kept_uses(product: Product, kept: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    """The accumulators' use (name -> fen) of one policy's settlements that keep what
    they were paid; ``kept``: (benefit id, deductible applied, payout kept) in fen, one
    per settlement and benefit. A benefit the product does not have is refused (its
    use could not be counted).

    >>> from puhui.products.model import load_product, product_path
    >>> p = load_product(product_path("huhuibao-2025"))
    >>> kept_uses(p, [("hospital", 1_200_000, 700_000), ("hospital", 0, 140_000)])
    {'deductible:hospital': 1200000, 'limit:hospital': 840000}
    >>> kept_uses(p, [])
    {}
    """
    layers = {b.id: b.layer for b in product.benefits}
    out: dict[str, int] = {}
    for benefit, deductible, payout in kept:
        if benefit not in layers:
            raise ValueError(f"a kept payout under benefit '{benefit}', which product "
                             f"{product.id} does not have")
        la = layers[benefit]
        for acc, fen in ((la.deductible_accumulator, deductible),
                         (la.limit_accumulator, payout)):
            if acc:
                out[acc] = out.get(acc, 0) + int(fen)
    return out


def kept_by_policy(product: Product, kept: Iterable[tuple]) -> dict[str, dict[str, int]]:
    """:func:`kept_uses` per policy; ``kept``: (setl_id, benefit, policy_no, deductible
    applied, payout kept[, the decision's payout, its reason]) in fen, one per
    settlement and benefit (as the ledger's decisions and payments give them); with the
    last two, the limit use is :func:`limit_use`.

    >>> from puhui.products.model import load_product, product_path
    >>> p = load_product(product_path("huhuibao-2025"))
    >>> kept_by_policy(p, [("H1", "hospital", "P1", 0, 140_000),
    ...                    ("H2", "hospital", "P2", 30_000, 0)])
    {'P1': {'deductible:hospital': 0, 'limit:hospital': 140000}, \
'P2': {'deductible:hospital': 30000, 'limit:hospital': 0}}
    >>> kept_by_policy(p, [("T1", "hospital", "P1", 30_000, 0, 210_000, "NOT_CLAIMED")])
    {'P1': {'deductible:hospital': 30000, 'limit:hospital': 210000}}
    """
    rows: dict[str, list[tuple[str, int, int]]] = {}
    for _sid, benefit, policy_no, deductible, payout, *decided in kept:
        use = limit_use(payout, *decided) if decided else payout
        rows.setdefault(policy_no, []).append((benefit, deductible, use))
    return {pol: kept_uses(product, r) for pol, r in rows.items()}
