"""The per-settlement reference of the layer waterfall: plain Python, one settlement at
a time, with the running accumulators in a dict.

It is the clear statement of what the vectorised engine (:mod:`puhui.tiers.waterfall`)
computes, its test oracle, and the path for a single settlement answered at once (a
direct payout). It shares no arithmetic code with the vectorised engine::

    deductible = min(base, max(D - used, 0))        (per year; per stay: min(base, D))
    uncapped   = round_half_away(after * ratio)      after = base - deductible
    paid       = max(min(uncapped, L - paid_so_far), 0)
    covered    = after if paid == uncapped else min(after, ceil(paid / ratio))
    overflow   = after - covered
"""

from __future__ import annotations

from typing import Any, Mapping

from puhui.tiers.waterfall import LayerSpec

BP = 10_000


def _round_ratio(amount: int, ratio_bp: int) -> int:
    mag = (abs(amount) * ratio_bp + BP // 2) // BP
    return -mag if amount < 0 else mag


def settle_one(layers: list[LayerSpec], quantities: Mapping[str, int],
               attrs: Mapping[str, Any], state: dict[str, int]) -> dict[str, dict[str, int]]:
    """Run the layers for one settlement. ``state`` maps accumulator names to what is
    used so far in this person's period, and is updated in place.

    Examples
    --------
    >>> from puhui.tiers.waterfall import parse_layer
    >>> la = parse_layer({"id": "x", "base": "b", "ratio": 0.85,
    ...                   "deductible": {"amount": 1500}, "limit": {"amount": 10000}},
    ...                  "doc", {"b"})
    >>> state = {}
    >>> [settle_one([la], {"b": q}, {}, state)["x"]["paid"] for q in (100000, 500000, 2000000)]
    [0, 382500, 617500]
    >>> state
    {'x.deductible': 150000, 'x.limit': 1000000}
    """
    out: dict[str, dict[str, int]] = {}
    for la in layers:
        if la.applies is not None and not la.applies.holds(attrs):
            out[la.id] = dict.fromkeys(("base", "deductible", "ratio_bp", "uncapped", "paid",
                                        "covered", "overflow"), 0)
            continue
        base = 0
        for sign, name in la.base:
            if "." in name:
                lid, fld = name.split(".", 1)
                base += sign * out[lid][fld]
            else:
                base += sign * int(quantities[name])
        if base < 0:
            raise ValueError(f"layer '{la.id}': negative base {base}")
        ded = 0
        if la.deductible is not None:
            d = la.deductible.value_for(attrs)
            if la.deductible_per == "stay":
                ded = min(base, d)
            else:
                used = state.get(la.deductible_accumulator, 0)
                ded = min(base, max(d - used, 0))
                state[la.deductible_accumulator] = used + ded
        after = base - ded
        r = la.ratio.value_for(attrs)
        uncapped = _round_ratio(after, r)
        paid = uncapped
        if la.limit is not None:
            lim = la.limit.value_for(attrs)
            so_far = state.get(la.limit_accumulator, 0)
            paid = max(min(uncapped, lim - so_far), 0)
            state[la.limit_accumulator] = so_far + paid
        covered = after if paid == uncapped else min(after, -((-paid * BP) // r))
        out[la.id] = {"base": base, "deductible": ded, "ratio_bp": r, "uncapped": uncapped,
                      "paid": paid, "covered": covered, "overflow": after - covered}
    return out
