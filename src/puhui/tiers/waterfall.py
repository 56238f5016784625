"""A waterfall of layers: the shared mechanism of the basic tier and commercial benefits.

A layer spec (from a rule or product file) names its base as a signed sum of
quantities of the bill (``in_scope``, ``in_list_self_pay`` ...) and of results of
earlier layers (``pooled_inpatient.overflow``, ``-critical_illness.paid``), the items
it applies to (a ``when`` condition), its deductible (per year with a named
accumulator, per stay, or none), its ratio and its limit (with a named accumulator).

Layers that share an accumulator (one deductible for two benefits, one fund cap for
outpatient and inpatient layers) are run *jointly*: their items are interleaved in
processing order (settlement, then layer order in the file) so that the running
deductible and limit are consumed exactly as a clerk would, one settlement at a time.
A layer's base may only use layers of earlier joint groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from puhui.basis import Flag, OneOrList, Options, Ratio, Table, Text, Yuan, check_value
from puhui.errors import RuleFileError
from puhui.money import NO_LIMIT, apply_ratio, ratio_to_bp, yuan_text_to_fen
from puhui.tiers.layers import (
    LayerOutcome,
    covered_base,
    deductible_applied,
    limited_payment,
)
from puhui.tiers.rules import WHEN, Choice, Condition, parse_choice, parse_condition

#: Attributes that may change from one settlement to the next within a period; an
#: annual deductible or limit may not depend on them (it must be one amount a year).
PER_SETTLEMENT_ATTRIBUTES = {"hosp_lv", "med_type"}
LAYER_FIELDS = ("base", "deductible", "paid", "covered", "overflow", "uncapped")


@dataclass(frozen=True)
class LayerSpec:
    id: str
    base: tuple[tuple[int, str], ...]
    ratio: Choice
    pays_into: str | None = None
    applies: Condition | None = None
    deductible_per: str = "none"          # "year", "stay" or "none"
    deductible: Choice | None = None
    deductible_accumulator: str | None = None
    limit: Choice | None = None
    limit_accumulator: str | None = None
    reports_deductible: bool = False

    @property
    def accumulators(self) -> set[str]:
        return {a for a in (self.deductible_accumulator, self.limit_accumulator) if a}

    @property
    def layer_refs(self) -> set[str]:
        return {name.split(".", 1)[0] for _, name in self.base if "." in name}


#: A layer's (or accumulator's) name: letters, digits, ``_`` and ``-`` (a base term
#: ``x.paid`` refers to layer ``x``; a leading ``-`` is a sign).
NAME = Text(pattern=r"[A-Za-z0-9_][A-Za-z0-9_:-]*",
            what="a name of letters, digits, _ and - (no dots, no spaces)")
#: One ``[[layers]]`` table of a rule file: its keys and what each must be.
LAYER = Table({
    "id": NAME,
    "name": Text(), "note": Text(), "status": Text(), "source": Text(),
    "pays_into": Text(),
    "base": OneOrList(Text(what="a quantity or a layer result such as 'x.paid'")),
    "applies": WHEN,
    "deductible": Table({"per": Text(("year", "stay")), "accumulator": NAME,
                         "amount": Options(Yuan(), WHEN)},
                        required=("amount",), what="a deductible"),
    "ratio": Options(Ratio(), WHEN),
    "limit": Table({"accumulator": NAME, "amount": Options(Yuan(), WHEN)},
                   required=("amount",), what="a limit"),
    "reports_deductible": Flag(),
}, required=("id", "base", "ratio"), what="a layer")


def parse_layer(raw: Mapping, where: str, quantities: set[str]) -> LayerSpec:
    """Parse one ``[[layers]]`` table. ``quantities`` are the bill quantities a base may use."""
    check_value(LAYER, dict(raw), where)
    lid = raw["id"]
    where = f"{where} ({lid})"
    terms = raw["base"] if isinstance(raw["base"], list) else [raw["base"]]
    base = []
    for t in terms:
        sign, name = (-1, t[1:]) if t.startswith("-") else (1, t)
        if "." in name:
            if name.split(".", 1)[1] not in LAYER_FIELDS:
                raise RuleFileError(f"{where}.base: '{t}': a layer result is one of "
                                    f"{', '.join(LAYER_FIELDS)}")
        elif name not in quantities:
            raise RuleFileError(f"{where}.base: unknown quantity '{name}'; known: "
                                f"{', '.join(sorted(quantities))}")
        base.append((sign, name))
    ratio = parse_choice(raw["ratio"], ratio_to_bp, f"{where}.ratio")
    applies = parse_condition(raw["applies"], f"{where}.applies") if "applies" in raw else None

    per, ded, ded_acc = "none", None, None
    if "deductible" in raw:
        d = raw["deductible"]
        per = d.get("per", "year")
        if per not in ("year", "stay"):
            raise RuleFileError(f"{where}.deductible.per: 'year' or 'stay', not {per!r}")
        ded = parse_choice(d.get("amount"), yuan_text_to_fen, f"{where}.deductible.amount")
        if per == "year":
            ded_acc = d.get("accumulator", f"{lid}.deductible")
            _check_period_constant(ded, f"{where}.deductible.amount")
    lim, lim_acc = None, None
    if "limit" in raw:
        lraw = raw["limit"]
        lim = parse_choice(lraw.get("amount"), yuan_text_to_fen, f"{where}.limit.amount")
        lim_acc = lraw.get("accumulator", f"{lid}.limit")
        _check_period_constant(lim, f"{where}.limit.amount")
    return LayerSpec(id=lid, base=tuple(base), ratio=ratio, pays_into=raw.get("pays_into"),
                     applies=applies, deductible_per=per, deductible=ded,
                     deductible_accumulator=ded_acc, limit=lim, limit_accumulator=lim_acc,
                     reports_deductible=bool(raw.get("reports_deductible", False)))


def _check_period_constant(choice: Choice, where: str) -> None:
    bad = choice.attributes & PER_SETTLEMENT_ATTRIBUTES
    if bad:
        raise RuleFileError(f"{where}: an annual amount cannot depend on {', '.join(sorted(bad))}"
                            f" (it changes between settlements); use a per-stay deductible "
                            f"or separate layers")


def joint_groups(layers: list[LayerSpec]) -> list[list[int]]:
    """Indices of layers grouped by shared accumulators, in order of first member."""
    parent = list(range(len(layers)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for acc in layer.accumulators:
            if acc in owner:
                parent[find(i)] = find(owner[acc])
            else:
                owner[acc] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(layers)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def check_layers(layers: list[LayerSpec], where: str) -> None:
    """Ids unique; accumulators used as one kind; bases refer only to earlier groups."""
    ids = [la.id for la in layers]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuleFileError(f"{where}: layer ids must be unique: {', '.join(sorted(dup))}")
    kinds: dict[str, str] = {}
    amounts: dict[str, tuple[str, Choice]] = {}
    for la in layers:
        for acc, kind, amount in ((la.deductible_accumulator, "deductible", la.deductible),
                                  (la.limit_accumulator, "limit", la.limit)):
            if not acc:
                continue
            if kinds.setdefault(acc, kind) != kind:
                raise RuleFileError(f"{where}: accumulator '{acc}' is used both as a "
                                    f"deductible and as a limit")
            # one running amount has one size: layers sharing it must state the same
            first = amounts.setdefault(acc, (la.id, amount))
            if first[1] != amount:
                raise RuleFileError(f"{where}: layers '{first[0]}' and '{la.id}' share the "
                                    f"{kind} '{acc}' but state different amounts; a shared "
                                    f"{kind} has one amount (state it the same in both)")
    group_of = {}
    for gi, g in enumerate(joint_groups(layers)):
        for i in g:
            group_of[layers[i].id] = gi
    for la in layers:
        for ref in la.layer_refs:
            if ref not in group_of:
                raise RuleFileError(f"{where}: layer '{la.id}' refers to unknown layer '{ref}'")
            if group_of[ref] >= group_of[la.id]:
                raise RuleFileError(f"{where}: layer '{la.id}' uses '{ref}', which is not "
                                    f"computed before it (order the layers so it comes first, "
                                    f"and do not let them share an accumulator)")


def _base(layer: LayerSpec, quantities: Mapping[str, np.ndarray],
          results: Mapping[str, LayerOutcome], n: int) -> np.ndarray:
    total = np.zeros(n, dtype="int64")
    for sign, name in layer.base:
        if "." in name:
            lid, fld = name.split(".", 1)
            arr = getattr(results[lid], fld)
        else:
            arr = quantities[name]
        total += sign * np.asarray(arr, dtype="int64")
    return total


def _empty_outcome(n: int) -> LayerOutcome:
    z = np.zeros(n, dtype="int64")
    return LayerOutcome(base=z, deductible=z.copy(), ratio_bp=z.copy(), uncapped=z.copy(),
                        paid=z.copy(), covered=z.copy(), overflow=z.copy())


def run_waterfall(layers: list[LayerSpec], quantities: Mapping[str, np.ndarray],
                  attrs: Mapping[str, np.ndarray], period: np.ndarray,
                  priors: Mapping[str, np.ndarray] | None = None,
                  keep: set[str] | None = None) -> dict[str, LayerOutcome]:
    """Run every layer over rows already in processing order.

    Parameters
    ----------
    quantities : bill quantities by name (int64 fen, one per row)
    attrs : per-row attributes for conditions (see :data:`puhui.tiers.rules.ATTRIBUTES`)
    period : int64 code of the row's accumulator period (a person's year)
    priors : per accumulator name, the amount already used in the row's period
        before these rows (deductible used, or payments against a limit)

    keep : the outcome fields to return (default all); fields no caller and no later
        layer needs are dropped as soon as possible (``None`` in the outcome), which
        keeps memory flat on tens of millions of rows.

    Returns one :class:`LayerOutcome` per layer id, with full-length arrays (zero where
    the layer does not apply).
    """
    n = len(period)
    period = np.asarray(period, dtype="int64")
    priors = priors or {}
    results: dict[str, LayerOutcome] = {}
    for group in joint_groups(layers):
        row_parts, pos_parts = [], []
        for pos, li in enumerate(group):
            la = layers[li]
            mask = la.applies.mask(attrs, n) if la.applies else np.ones(n, bool)
            r = np.flatnonzero(mask)
            row_parts.append(r)
            pos_parts.append(np.full(len(r), pos, dtype="int64"))
        rows = np.concatenate(row_parts)
        pos = np.concatenate(pos_parts)
        if len(group) > 1:        # one layer: its rows are already in processing order
            order = np.lexsort((pos, rows))
            rows, pos = rows[order], pos[order]
        m = len(rows)
        used = set()
        for li in group:
            la = layers[li]
            for ch in (la.ratio, la.deductible, la.limit):
                if ch is not None:
                    used |= ch.attributes
        sub_attrs = {k: np.asarray(attrs[k])[rows] for k in used}
        base = np.zeros(m, "int64")
        ratio = np.zeros(m, "int64")
        ded_amt = np.zeros(m, "int64")
        lim_amt = np.full(m, NO_LIMIT, "int64")
        ded_acc = np.full(m, -1, "int64")
        lim_acc = np.full(m, -1, "int64")
        acc_names: list[str] = []
        for p, li in enumerate(group):
            la = layers[li]
            sel = pos == p
            r = rows[sel]
            a = {k: v[sel] for k, v in sub_attrs.items()}
            b = _base(la, quantities, results, n)[r]
            if (b < 0).any():
                raise ValueError(f"layer '{la.id}': negative base on {(b < 0).sum()} rows; "
                                 f"its base terms do not describe an amount still owed")
            base[sel] = b
            ratio[sel] = la.ratio.evaluate(a, len(r))
            if la.deductible is not None:
                ded_amt[sel] = la.deductible.evaluate(a, len(r))
            if la.deductible_accumulator:
                acc_names.append(la.deductible_accumulator)
                ded_acc[sel] = acc_names.index(la.deductible_accumulator)
            if la.limit is not None:
                lim_amt[sel] = la.limit.evaluate(a, len(r))
                if la.limit_accumulator not in acc_names:
                    acc_names.append(la.limit_accumulator)
                lim_acc[sel] = acc_names.index(la.limit_accumulator)
        n_acc = max(len(acc_names), 1)
        item_period = period[rows]

        def prior_of(acc_idx: np.ndarray) -> np.ndarray:
            out = np.zeros(m, "int64")
            for k, name in enumerate(acc_names):
                if name in priors:
                    sel = acc_idx == k
                    out[sel] = np.asarray(priors[name], dtype="int64")[rows[sel]]
            return out

        # deductible: annual (grouped) items, then per-stay items
        ded = np.zeros(m, "int64")
        yearly = ded_acc >= 0
        if yearly.any():
            g = item_period[yearly] * n_acc + ded_acc[yearly]
            ded[yearly] = deductible_applied(base[yearly], ded_amt[yearly], g,
                                             prior_of(ded_acc)[yearly])
        per_item = ~yearly
        ded[per_item] = np.minimum(base[per_item], ded_amt[per_item])
        after = base - ded
        uncapped = apply_ratio(after, ratio)
        paid = uncapped.copy()
        limited = lim_acc >= 0
        if limited.any():
            g = item_period[limited] * n_acc + lim_acc[limited]
            paid[limited] = limited_payment(uncapped[limited], lim_amt[limited], g,
                                            prior_of(lim_acc)[limited])
        covered = covered_base(after, uncapped, paid, ratio)
        for p, li in enumerate(group):
            sel = pos == p
            r = rows[sel]
            out = _empty_outcome(n)
            for fld, arr in (("base", base), ("deductible", ded), ("ratio_bp", ratio),
                             ("uncapped", uncapped), ("paid", paid), ("covered", covered)):
                getattr(out, fld)[r] = arr[sel]
            out.overflow[r] = (after - covered)[sel]
            results[layers[li].id] = out
        if keep is not None:
            _drop_unneeded(results, layers, keep)
    return results


def _drop_unneeded(results: dict[str, LayerOutcome], layers: list[LayerSpec],
                   keep: set[str]) -> None:
    """Release result arrays that neither the caller nor any layer's base needs."""
    referenced = {name for la in layers for _, name in la.base if "." in name}
    for lid, out in results.items():
        for fld in LAYER_FIELDS + ("ratio_bp",):
            if fld not in keep and f"{lid}.{fld}" not in referenced:
                setattr(out, fld, None)
