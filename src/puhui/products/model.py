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

from puhui.basis import (
    Condition as ConditionKind,
    Date,
    Either,
    Flag,
    ListOf,
    OneOrList,
    Ratio,
    Table,
    Tables,
    Text,
    Whole,
    Yuan,
    actuarial_dir,
    read_checked,
)
from puhui.errors import RuleFileError
from puhui.money import yuan_text_to_fen
from puhui.tiers.rules import ATTRIBUTE_KINDS, Condition, parse_condition
from puhui.tiers.waterfall import NAME, LayerSpec, check_layers, parse_layer

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
#: The longest waiting period a product file may state (two years).
MAX_WAITING_DAYS = 730


# --- the schema of a product file: every table's keys and what each must be ----------

def _benefit_rule(b: dict, c, table: str) -> None:
    if b["pays_on"] == "lines" and "lines" not in b:
        c.fail(table, "missing 'lines': pays_on = \"lines\" needs "
                      "lines = { list = \"...\", select = \"drugs\" }")
    if b["pays_on"] != "lines" and "lines" in b:
        c.fail(table, f"'lines' is only for pays_on = \"lines\" (this benefit pays on "
                      f"{b['pays_on']!r})")


def _premium_rule(p: dict, c, table: str) -> None:
    if ("flat" in p) == ("cells" in p):
        c.fail(table, "give either 'flat' (one premium) or 'cells' (premiums by age), "
                      "exactly one of them")


def _age_band_rule(cell: dict, c, table: str) -> None:
    if cell.get("min_age", 0) > cell.get("max_age", 200):
        c.fail(table, f"'min_age' {cell['min_age']} is above 'max_age' {cell['max_age']}")


def _eligibility_rule(e: dict, c, table: str) -> None:
    ages = [(k, e[k]) for k in ("min_entry_age", "max_entry_age", "max_renewal_age") if k in e]
    for (ka, a), (kb, b) in zip(ages, ages[1:]):
        if a > b:
            c.fail(table, f"'{ka}' {a} is above '{kb}' {b}")


#: The most co-insurers a product file may name (a co-insuring group of a Huiminbao
#: product has a handful to a few dozen members; each payment entry records a share per
#: insurer, so 10,000 would multiply the ledger's rows by 10,000: review s23).
MAX_CO_INSURERS = 100


def _co_insurers_rule(v: list, c, table: str) -> None:
    """A co-insuring group (共保体) as a whole: distinct ids, shares above 0 that add up
    to exactly 1 (10,000 basis points), exactly one lead insurer."""
    if not v:
        return
    if len(v) > MAX_CO_INSURERS:
        c.fail(table, f"{len(v):,} co-insurers; a co-insuring group names at most "
                      f"{MAX_CO_INSURERS} (every payment entry records one share per "
                      f"insurer): a larger list is a mistake in the file")
    ids = [e.get("id") for e in v]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        c.fail(table, f"insurer id {twice[0]!r} is given {ids.count(twice[0])} times; give "
                      f"each co-insurer once")
    folded = [str(i).casefold() for i in ids]
    alike = sorted(i for i, f in zip(ids, folded) if folded.count(f) > 1)
    if alike:
        c.fail(table, f"insurer ids {', '.join(repr(i) for i in alike)} differ only in "
                      f"upper and lower case; an insurer is one id (outputs and "
                      f"spreadsheets would mix them up): give each co-insurer one id")
    shares = [round(e["share"] * 10_000) for e in v]
    zero = [e["id"] for e, bp in zip(v, shares) if bp <= 0]
    if zero:
        c.fail(table, f"insurer {zero[0]!r} has share 0; a co-insurer takes a share above "
                      f"0 (remove an insurer that takes none)")
    if sum(shares) != 10_000:
        each = ", ".join(f"{e['id']} {bp / 100:g} %" for e, bp in zip(v, shares))
        c.fail(table, f"the shares add up to {sum(shares) / 100:g} %, not 100 % ({each}); "
                      f"the co-insurers' quota shares must add up to exactly 1")
    leads = [e["id"] for e in v if e.get("lead", False)]
    if len(leads) != 1:
        c.fail(table, f"{len(leads)} co-insurers are marked lead = true"
                      f"{' (' + ', '.join(leads) + ')' if leads else ''}; mark exactly one, "
                      f"the lead insurer (主承保) that pays and shares the data")


def _period_rule(p: dict, c, table: str) -> None:
    if p["end"] < p["start"]:
        c.fail(table, f"'end' {p['end']} is before 'start' {p['start']}")


_AGE = Whole(0, 120, "years of age")
DEDUCTIBLE = Either(Yuan(), Table({
    "amount": Yuan(), "shared": NAME,
    "claim_free": ListOf(Table({"years": Whole(1, 50, "claim-free years"), "amount": Yuan()},
                               required=("years", "amount"), what="a claim-free step"),
                         max_len=50),
}, required=("amount",), what="a deductible table"))
LIMIT = Either(Yuan(), Table({"amount": Yuan(), "shared": NAME}, required=("amount",),
                             what="a limit table"))
BENEFIT = Table({
    "id": NAME, "name": Text(), "status": Text(), "note": Text(), "source": Text(),
    "pays_on": Text((*SETTLEMENT_QUANTITIES, "lines")),
    "lines": Table({"list": Text(), "select": Text(tuple(LINE_SELECT))}, required=("list",),
                   what="a lines table"),
    "filters": ConditionKind({k: ATTRIBUTE_KINDS[k] for k in sorted(FILTER_KEYS)}, {},
                             what="a filter"),
    "deductible": DEDUCTIBLE,
    "ratio": Ratio(), "preexisting_ratio": Ratio(),
    "limit": LIMIT,
    "exclude_basic_paid": Flag(),
}, required=("id", "pays_on", "ratio"), what="a benefit", rule=_benefit_rule)
#: One insurer of a co-insuring group (共保体): its share of every payment is a ratio
#: exact to a basis point (``share = 0.40`` for 40 %); :func:`_co_insurers_rule` checks
#: the group as a whole.
CO_INSURER = Table({
    "id": NAME, "name": Text(), "share": Ratio(), "lead": Flag(), "note": Text(),
}, required=("id", "share"), what="a co-insurer")
#: A product file (``docs/product-files.md``): every key it may have, table by table.
PRODUCT_FILE = Table({
    "id": NAME, "name": Text(), "status": Text(),
    "sources": OneOrList(Text()), "notes": OneOrList(Text()),
    "policy_period": Table({"start": Date(), "end": Date()}, required=("start", "end"),
                           what="the policy period", rule=_period_rule),
    "premium": Either(Yuan(), Table({
        "flat": Yuan(),
        "cells": ListOf(Table({"min_age": _AGE, "max_age": _AGE, "preexisting": Flag(),
                               "amount": Yuan()}, required=("amount",),
                              what="a premium cell", rule=_age_band_rule), min_len=1),
    }, what="the premium table", rule=_premium_rule)),
    "eligibility": Table({
        "insutypes": ListOf(Text(("310", "390")), min_len=1), "region": Text(),
        "min_entry_age": _AGE, "max_entry_age": _AGE, "max_renewal_age": _AGE,
        # a version's holders: a true/false column of persons.parquet (docs/pricing.md,
        # "Versions priced jointly"); read by joint pricing only
        "persons_column": Text(pattern=r"[A-Za-z_][A-Za-z0-9_]{0,63}",
                               what="a column name of persons.parquet (letters, digits, _)"),
    }, what="the eligibility table", rule=_eligibility_rule),
    "waiting_period_days": Whole(0, MAX_WAITING_DAYS, "days"),
    "preexisting": Table({
        "icd10": ListOf(Text(pattern=r"[A-Z][0-9]{0,2}(\.[0-9A-Z]{1,4})?",
                             what="an ICD-10 code or prefix such as \"C\" or \"N18\""),
                        min_len=1),
        "lookback_years": Whole(0, 20, "years"),
    }, what="the pre-existing table"),
    "benefits": Tables(BENEFIT, by_id=True, min_len=1),
    "co_insurers": Tables(CO_INSURER, by_id=True),
}, required=("id", "policy_period", "premium", "benefits"), what="a product file",
    rule=lambda raw, c, table: _co_insurers_rule(raw.get("co_insurers", []), c,
                                                 "co_insurers"))


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
class CoInsurer:
    """One insurer of a product's co-insuring group: ``share_bp`` of every payment, in
    basis points of 10,000 (the group's add up to 10,000); ``lead``: the lead insurer."""

    id: str
    name: str
    share_bp: int
    lead: bool


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
    #: the co-insuring group (empty: one insurer pays the whole of every payment)
    co_insurers: tuple[CoInsurer, ...] = ()

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


def _compile_benefit(raw: dict, where: str) -> Benefit:
    """One benefit (already checked against :data:`BENEFIT`) as one layer."""
    bid = raw["id"]
    pays_on = raw["pays_on"]
    lines = None
    if pays_on == "lines":
        lines = LineSpec(raw["lines"]["list"], raw["lines"].get("select", "drugs"))
    filters = None
    if "filters" in raw:
        filters = parse_condition(raw["filters"], f"{where} ({bid}).filters")
    ratio = raw["ratio"]
    pre = raw.get("preexisting_ratio", ratio)
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
        steps = sorted(d.get("claim_free", []), key=lambda cf: -cf["years"])
        _claim_free_lowers(steps, d["amount"], f"{where} ({bid}).deductible")
        options = [{"when": {"min_claim_free_years": cf["years"]}, "value": cf["amount"]}
                   for cf in steps]
        layer["deductible"] = {
            "per": "year",
            "accumulator": "deductible:" + d.get("shared", bid),
            "amount": options + [{"value": d["amount"]}] if options else d["amount"],
        }
    if "limit" in raw:
        lim = raw["limit"]
        if not isinstance(lim, dict):
            lim = {"amount": lim}
        layer["limit"] = {"accumulator": "limit:" + lim.get("shared", bid),
                          "amount": lim["amount"]}
    quantity = layer["base"]
    spec = parse_layer(layer, where, {quantity})
    return Benefit(id=bid, name=raw.get("name", bid), pays_on=pays_on, lines=lines,
                   filters=filters, layer=spec,
                   exclude_basic_paid=bool(raw.get("exclude_basic_paid", True)), raw=raw)


def _claim_free_lowers(steps: list[dict], amount, where: str) -> None:
    """A claim-free step lowers the deductible: each step's amount at most the
    deductible's and at most every step of fewer years'. A step above it raised a
    claim-free renewal's deductible in silence (session 23's study: a product extending
    huhuibao-2024 with ``deductible = { amount = 300 }`` kept the base's 14,000 and
    13,000 after two and three claim-free years, and was priced and paid so)."""
    ceiling, fewer = amount, "the deductible"
    for cf in sorted(steps, key=lambda c: c["years"]):
        if cf["amount"] > ceiling:
            raise RuleFileError(
                f"{where}: claim_free: {cf['amount']:,} yuan after {cf['years']} claim-free "
                f"year(s) is above {fewer} ({ceiling:,} yuan); a claim-free step lowers the "
                f"deductible. A file that extends another keeps the base's claim_free steps "
                f"unless it states its own (claim_free = [] for none)")
        ceiling, fewer = cf["amount"], f"the step after {cf['years']} year(s)"


def _premium(prem) -> tuple[int | None, tuple[PremiumCell, ...]]:
    """The premium (already checked): a flat amount in fen, or cells by age."""
    if not isinstance(prem, dict):
        return yuan_text_to_fen(prem), ()
    if "flat" in prem:
        return yuan_text_to_fen(prem["flat"]), ()
    return None, tuple(PremiumCell(c.get("min_age", 0), c.get("max_age", 200),
                                   c.get("preexisting"), yuan_text_to_fen(c["amount"]))
                       for c in prem["cells"])


def load_product(path: str | Path) -> Product:
    """Read, check and compile a product file. Every table of the file (and of the files
    it extends) is checked against :data:`PRODUCT_FILE`: an unknown key or a value of the
    wrong kind raises :class:`RuleFileError` naming the file, the table and the key."""
    path = Path(path)
    raw = read_checked(path, PRODUCT_FILE)
    where = str(path)
    pid = raw["id"]
    start, end = raw["policy_period"]["start"], raw["policy_period"]["end"]
    flat, cells = _premium(raw["premium"])
    elig = raw.get("eligibility", {})
    insutypes = tuple(elig.get("insutypes", ["310", "390"]))
    pre = raw.get("preexisting", {})
    benefits = tuple(_compile_benefit(b, f"{where}: benefits[{i}]")
                     for i, b in enumerate(raw["benefits"]))
    check_layers([b.layer for b in benefits], where)
    return Product(
        id=pid, name=raw.get("name", pid), path=path, start=start, end=end,
        premium_flat_fen=flat, premium_cells=cells, insutypes=insutypes,
        region=str(elig.get("region", "")), min_entry_age=elig.get("min_entry_age"),
        max_entry_age=elig.get("max_entry_age"), max_renewal_age=elig.get("max_renewal_age"),
        waiting_period_days=raw.get("waiting_period_days", 0),
        preexisting_codes=tuple(pre.get("icd10", ())),
        preexisting_lookback_years=pre.get("lookback_years", 0),
        benefits=benefits, raw=raw,
        co_insurers=tuple(CoInsurer(str(e["id"]), str(e.get("name", e["id"])),
                                    round(e["share"] * 10_000), bool(e.get("lead", False)))
                          for e in raw.get("co_insurers", [])))


def is_rule_file(name: str) -> bool:
    """Whether ``name`` is a basic-insurance rule file (``[[layers]]``, no benefits) rather
    than a product file, so that ``puhui product check`` checks either kind."""
    from puhui.basis import read_toml

    path = product_path(name)
    try:
        raw = read_toml(path)
    except RuleFileError:
        return False             # the product loader reports what is wrong with it
    return "layers" in raw and "benefits" not in raw


def product_path(name: str) -> Path:
    """A product file by path, or by id in ``actuarial/products/``."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        return p
    return actuarial_dir() / "products" / f"{name}.toml"
