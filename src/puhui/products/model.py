"""A Huiminbao-style product, read from its TOML file and compiled to layers.

A product file (one per product and policy year; ``docs/product-files.md``) declares
the policy period, premium, eligibility, waiting period, the pre-existing condition
definition and its benefits. Each benefit compiles to one layer of the layer engine
(:mod:`puhui.tiers.waterfall`), the same mechanism the basic tier runs on:

- ``pays_on`` is the layer's base (a settlement quantity, or the lines of a named list);
- ``filters`` is the layer's ``applies`` condition;
- ``deductible`` (annual, optionally shared through a named accumulator, with amounts
  for consecutive claim-free years) is the layer's running deductible;
- ``ratio`` and ``preexisting_ratio`` are the layer's ratio (pre-existing first);
- ``limit`` (optionally shared) is the layer's running limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puhui.basis import actuarial_dir, read_toml
from puhui.errors import RuleFileError
from puhui.money import ratio_to_bp, yuan_text_to_fen
from puhui.tiers.rules import Condition, parse_condition
from puhui.tiers.waterfall import LayerSpec, check_layers, parse_layer

#: Settlement quantities a benefit may pay on (besides list lines).
SETTLEMENT_QUANTITIES = {
    "in_list_self_pay": "目录内自付: psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay",
    "out_of_list_self_pay": "目录外自费: fulamt_ownpay_amt + overlmt_selfpay",
    "self_pay": "both: psn_part_amt",
}
#: Which items of a list a line benefit counts.
LINE_SELECT = {
    "drugs": "drugs on the list that are neither CAR-T nor overseas",
    "cart": "CAR-T products on the list",
    "overseas": "overseas drugs on the list",
    "all": "every item on the list",
}
FILTER_KEYS = {"med_type", "hosp_lv"}
_PRODUCT_KEYS = {"id", "name", "status", "sources", "notes", "policy_period", "premium",
                 "eligibility", "waiting_period_days", "preexisting", "benefits", "lineage"}
_BENEFIT_KEYS = {"id", "name", "pays_on", "lines", "filters", "deductible", "ratio",
                 "preexisting_ratio", "limit", "exclude_basic_paid", "status", "note", "source"}


@dataclass(frozen=True)
class LineSpec:
    """The lines a line benefit pays on: items of ``list`` chosen by ``select``."""

    list: str
    select: str = "drugs"

    @property
    def quantity(self) -> str:
        return f"lines:{self.list}:{self.select}"


@dataclass(frozen=True)
class Benefit:
    id: str
    name: str
    pays_on: str                      # a settlement quantity, or "lines"
    lines: LineSpec | None
    filters: Condition | None
    layer: LayerSpec
    exclude_basic_paid: bool
    raw: dict[str, Any]

    @property
    def quantity(self) -> str:
        """The name of the quantity this benefit's layer pays on."""
        return self.lines.quantity if self.lines else self.pays_on


@dataclass(frozen=True)
class PremiumCell:
    min_age: int
    max_age: int
    preexisting: bool | None
    amount_fen: int


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    path: Path
    start: dt.date
    end: dt.date
    premium_flat_fen: int | None
    premium_cells: tuple[PremiumCell, ...]
    insutypes: tuple[str, ...]
    region: str
    min_entry_age: int | None
    max_entry_age: int | None
    max_renewal_age: int | None
    waiting_period_days: int
    preexisting_codes: tuple[str, ...]
    preexisting_lookback_years: int
    benefits: tuple[Benefit, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def layers(self) -> list[LayerSpec]:
        return [b.layer for b in self.benefits]

    @property
    def rated(self) -> bool:
        return bool(self.premium_cells)

    def benefit(self, bid: str) -> Benefit:
        for b in self.benefits:
            if b.id == bid:
                return b
        raise KeyError(bid)


def _need(raw: dict, key: str, where: str, kind=None):
    if key not in raw:
        raise RuleFileError(f"{where}: missing '{key}'")
    v = raw[key]
    if kind is not None and not isinstance(v, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RuleFileError(f"{where}: '{key}' should be {names}, not {type(v).__name__}")
    return v


def _money(v, where) -> int:
    try:
        fen = yuan_text_to_fen(v)
    except (ValueError, ArithmeticError) as exc:
        raise RuleFileError(f"{where}: {exc}") from None
    if fen < 0:
        raise RuleFileError(f"{where}: an amount cannot be negative")
    return fen


def _ratio(v, where) -> float:
    try:
        ratio_to_bp(v)
    except (ValueError, ArithmeticError) as exc:
        raise RuleFileError(f"{where}: {exc}") from None
    return v


def _compile_benefit(raw: dict, where: str) -> Benefit:
    unknown = set(raw) - _BENEFIT_KEYS
    if unknown:
        raise RuleFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a benefit "
                            f"takes {', '.join(sorted(_BENEFIT_KEYS))}")
    bid = _need(raw, "id", where, str)
    where = f"{where} ({bid})"
    pays_on = _need(raw, "pays_on", where, str)
    lines = None
    if pays_on == "lines":
        lr = _need(raw, "lines", where, dict)
        lst = _need(lr, "list", f"{where}.lines", str)
        sel = lr.get("select", "drugs")
        if sel not in LINE_SELECT:
            raise RuleFileError(f"{where}.lines.select: one of {', '.join(LINE_SELECT)}, "
                                f"not {sel!r}")
        lines = LineSpec(lst, sel)
    elif pays_on not in SETTLEMENT_QUANTITIES:
        raise RuleFileError(f"{where}.pays_on: expected one of "
                            f"{', '.join([*SETTLEMENT_QUANTITIES, 'lines'])}, not {pays_on!r}")
    filters = None
    if "filters" in raw:
        bad = set(raw["filters"]) - FILTER_KEYS
        if bad:
            raise RuleFileError(f"{where}.filters: unknown filter(s) {', '.join(sorted(bad))}; "
                                f"known: {', '.join(sorted(FILTER_KEYS))}")
        filters = parse_condition(raw["filters"], f"{where}.filters")
    ratio = _ratio(_need(raw, "ratio", where), f"{where}.ratio")
    pre = raw.get("preexisting_ratio", ratio)
    _ratio(pre, f"{where}.preexisting_ratio")
    layer: dict[str, Any] = {
        "id": bid,
        "base": f"lines:{lines.list}:{lines.select}" if lines else pays_on,
        "ratio": [{"when": {"preexisting": True}, "value": pre}, {"value": ratio}]
        if pre != ratio else ratio,
    }
    if filters is not None:
        layer["applies"] = raw["filters"]
    if "deductible" in raw:
        d = raw["deductible"]
        if not isinstance(d, dict):
            d = {"amount": d}
        amount = _need(d, "amount", f"{where}.deductible")
        _money(amount, f"{where}.deductible.amount")
        options = []
        for i, cf in enumerate(sorted(d.get("claim_free", []), key=lambda c: -c.get("years", 0))):
            w = f"{where}.deductible.claim_free[{i}]"
            yrs = _need(cf, "years", w, int)
            _money(_need(cf, "amount", w), w + ".amount")
            options.append({"when": {"min_claim_free_years": yrs}, "value": cf["amount"]})
        layer["deductible"] = {
            "per": "year",
            "accumulator": "deductible:" + d.get("shared", bid),
            "amount": options + [{"value": amount}] if options else amount,
        }
    if "limit" in raw:
        lim = raw["limit"]
        if not isinstance(lim, dict):
            lim = {"amount": lim}
        _money(_need(lim, "amount", f"{where}.limit"), f"{where}.limit.amount")
        layer["limit"] = {"accumulator": "limit:" + lim.get("shared", bid),
                          "amount": lim["amount"]}
    quantity = layer["base"]
    spec = parse_layer(layer, where, {quantity})
    return Benefit(id=bid, name=raw.get("name", bid), pays_on=pays_on, lines=lines,
                   filters=filters, layer=spec,
                   exclude_basic_paid=bool(raw.get("exclude_basic_paid", True)), raw=raw)


def _premium(raw: dict, where: str) -> tuple[int | None, tuple[PremiumCell, ...]]:
    prem = _need(raw, "premium", where)
    if not isinstance(prem, dict):
        return _money(prem, f"{where}.premium"), ()
    if "flat" in prem:
        return _money(prem["flat"], f"{where}.premium.flat"), ()
    cells = []
    for i, c in enumerate(_need(prem, "cells", f"{where}.premium", list)):
        w = f"{where}.premium.cells[{i}]"
        cells.append(PremiumCell(int(c.get("min_age", 0)), int(c.get("max_age", 200)),
                                 c.get("preexisting"), _money(_need(c, "amount", w), w)))
    if not cells:
        raise RuleFileError(f"{where}.premium.cells: give at least one cell")
    return None, tuple(cells)


def load_product(path: str | Path) -> Product:
    """Read, check and compile a product file. Raises :class:`RuleFileError` naming
    the file and key for anything wrong."""
    path = Path(path)
    raw = read_toml(path)
    where = str(path)
    unknown = set(raw) - _PRODUCT_KEYS
    if unknown:
        raise RuleFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a product "
                            f"takes {', '.join(sorted(_PRODUCT_KEYS))}")
    pid = _need(raw, "id", where, str)
    period = _need(raw, "policy_period", where, dict)
    start = _need(period, "start", f"{where}.policy_period", dt.date)
    end = _need(period, "end", f"{where}.policy_period", dt.date)
    if end < start:
        raise RuleFileError(f"{where}.policy_period: end {end} is before start {start}")
    flat, cells = _premium(raw, where)
    elig = raw.get("eligibility", {})
    insutypes = tuple(str(x) for x in elig.get("insutypes", ["310", "390"]))
    bad = set(insutypes) - {"310", "390"}
    if bad:
        raise RuleFileError(f"{where}.eligibility.insutypes: unknown scheme(s) {sorted(bad)}; "
                            f"310 employees, 390 residents")
    pre = raw.get("preexisting", {})
    benefits_raw = _need(raw, "benefits", where, list)
    if not benefits_raw:
        raise RuleFileError(f"{where}.benefits: a product needs at least one benefit")
    benefits = tuple(_compile_benefit(b, f"{where}: benefits[{i}]")
                     for i, b in enumerate(benefits_raw))
    check_layers([b.layer for b in benefits], where)
    return Product(
        id=pid, name=raw.get("name", pid), path=path, start=start, end=end,
        premium_flat_fen=flat, premium_cells=cells, insutypes=insutypes,
        region=str(elig.get("region", "")), min_entry_age=elig.get("min_entry_age"),
        max_entry_age=elig.get("max_entry_age"), max_renewal_age=elig.get("max_renewal_age"),
        waiting_period_days=int(raw.get("waiting_period_days", 0)),
        preexisting_codes=tuple(pre.get("icd10", ())),
        preexisting_lookback_years=int(pre.get("lookback_years", 0)),
        benefits=benefits, raw=raw)


def product_path(name: str) -> Path:
    """A product file by path, or by id in ``actuarial/products/``."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        return p
    return actuarial_dir() / "products" / f"{name}.toml"
