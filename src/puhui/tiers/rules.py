"""Conditional values in rule files: ``when`` conditions, first match wins.

A value in a rule or product file is either a plain value or a list of options, the
last of which has no ``when`` (the default)::

    ratio = [
      { when = { retired = true }, value = 0.92 },
      { when = { hosp_lv = [1, 2], min_age = 60 }, value = 0.90 },
      { value = 0.85 },
    ]

A ``when`` table tests per-item attributes: ``min_age`` / ``max_age`` (inclusive),
``min_claim_free_years``, and any other key by equality (a list means "one of").
Evaluation is vectorised: ``choice.evaluate(attrs)`` gives one value per item.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from puhui.basis import Code, Flag, Whole, check_value
from puhui.basis import Condition as ConditionKind
from puhui.errors import RuleFileError
from puhui.fund.schema import MED_TYPES

#: Attributes a condition may test, and what they mean.
ATTRIBUTES = {
    "age": "age in whole years at the settlement's year (year - birth_year)",
    "gender": "national code, '1' male or '2' female",
    "insutype": "'310' employee or '390' resident",
    "retired": "retired employee (bool)",
    "low_income": "low-income family (bool)",
    "hosp_lv": "hospital level 1-3",
    "med_type": "national medical-type code",
    "preexisting": "pre-existing condition at entry (bool)",
    "claim_free_years": "consecutive claim-free policy years before this one",
}
_RANGE_KEYS = {"min_age": ("age", ">="), "max_age": ("age", "<="),
               "min_claim_free_years": ("claim_free_years", ">=")}
#: What a condition's value must be, by attribute (a list of them means "one of").
ATTRIBUTE_KINDS = {
    "age": Whole(0, 120, "years of age"),
    "gender": Code(("1", "2"), "a gender code ('1' male, '2' female)"),
    "insutype": Code(("310", "390"), "a scheme code ('310' employees, '390' residents)"),
    "retired": Flag(),
    "low_income": Flag(),
    "hosp_lv": Whole(1, 3, what_of="a hospital level"),
    "med_type": Code(MED_TYPES, "a national medical-type code"),
    "preexisting": Flag(),
    "claim_free_years": Whole(0, 50, "years"),
}
RANGE_KINDS = {"min_age": Whole(0, 120, "years of age"), "max_age": Whole(0, 120, "years of age"),
               "min_claim_free_years": Whole(0, 50, "years")}
#: A ``when`` table, as the strict check of rule and product files sees it.
WHEN = ConditionKind(ATTRIBUTE_KINDS, RANGE_KINDS, what="a 'when' condition")


@dataclass(frozen=True)
class Condition:
    """A conjunction of tests ``(attribute, op, value)``; op is ==, in, >= or <=."""

    tests: tuple[tuple[str, str, Any], ...]

    @property
    def attributes(self) -> set[str]:
        return {a for a, _, _ in self.tests}

    def holds(self, attrs: Mapping[str, Any]) -> bool:
        """The condition for one item (scalar attributes)."""
        for attr, op, value in self.tests:
            v = attrs[attr]
            if op == "==":
                ok = v == value
            elif op == "in":
                ok = v in value
            elif op == ">=":
                ok = v >= value
            else:
                ok = v <= value
            if not ok:
                return False
        return True

    def mask(self, attrs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        m = np.ones(n, dtype=bool)
        for attr, op, value in self.tests:
            col = np.asarray(attrs[attr])
            if col.dtype == object and op in ("==", "in"):
                # text codes: test each distinct value once, then spread by code
                import pandas as pd

                codes, uniques = pd.factorize(col)
                vals = list(value) if op == "in" else [value]
                hit = np.isin(np.asarray(uniques, dtype=object), vals)
                m &= (codes >= 0) & hit[np.maximum(codes, 0)]
                continue
            if op == "==":
                m &= col == value
            elif op == "in":
                m &= np.isin(col, list(value))
            elif op == ">=":
                m &= col >= value
            else:
                m &= col <= value
        return m


#: How a condition's value is read, so that ``med_type = 21`` and ``"21"`` mean the same.
_COERCE = {"hosp_lv": int, "med_type": str, "insutype": str, "gender": str,
           "age": int, "claim_free_years": int}


def parse_condition(raw: Mapping, where: str) -> Condition:
    if not isinstance(raw, Mapping):
        raise RuleFileError(f"{where}: 'when' must be a table such as {{ retired = true }}")
    check_value(WHEN, dict(raw), where)
    tests = []
    for key, value in raw.items():
        if key in _RANGE_KEYS:
            attr, op = _RANGE_KEYS[key]
        elif key in ATTRIBUTES:
            attr, op = key, ("in" if isinstance(value, list) else "==")
        else:
            raise RuleFileError(f"{where}: unknown condition '{key}'. Known: "
                                f"{', '.join(sorted(set(ATTRIBUTES) | set(_RANGE_KEYS)))}")
        coerce = _COERCE.get(attr, lambda v: v)
        try:
            value = tuple(coerce(v) for v in value) if op == "in" else coerce(value)
        except (TypeError, ValueError):
            raise RuleFileError(f"{where}: '{key}' has a value of the wrong type") from None
        tests.append((attr, op, value))
    return Condition(tuple(tests))


@dataclass(frozen=True)
class Choice:
    """A value chosen per item by conditions; the last option is the default."""

    options: tuple[tuple[Condition | None, int], ...]

    @property
    def attributes(self) -> set[str]:
        out: set[str] = set()
        for cond, _ in self.options:
            if cond is not None:
                out |= cond.attributes
        return out

    @property
    def constant(self) -> int | None:
        return self.options[0][1] if len(self.options) == 1 else None

    def value_for(self, attrs: Mapping[str, Any]) -> int:
        """The value for one item (scalar attributes)."""
        for cond, value in self.options:
            if cond is None or cond.holds(attrs):
                return value
        raise AssertionError("a Choice always ends with a default")

    def evaluate(self, attrs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        if len(self.options) == 1:
            return np.full(n, self.options[0][1], dtype="int64")
        conds = [c.mask(attrs, n) for c, _ in self.options[:-1]]
        vals = [v for _, v in self.options[:-1]]
        return np.select(conds, vals, default=self.options[-1][1]).astype("int64")


def parse_choice(raw, convert: Callable[[Any], int], where: str) -> Choice:
    """Parse a plain value or a list of ``{when, value}`` options."""
    def conv(v, w):
        try:
            return convert(v)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RuleFileError(f"{w}: {exc}") from None

    if not isinstance(raw, list):
        return Choice(((None, conv(raw, where)),))
    if not raw:
        raise RuleFileError(f"{where}: an empty list of options; give at least a default")
    options = []
    for i, opt in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(opt, Mapping) or "value" not in opt:
            raise RuleFileError(f"{w}: each option is {{ when = {{...}}, value = ... }}")
        extra = set(opt) - {"when", "value", "note"}
        if extra:
            key = sorted(extra)[0]
            near = difflib.get_close_matches(key, ["when", "value", "note"], n=1)
            raise RuleFileError(f"{w}: unknown key '{key}'"
                                + (f"; did you mean '{near[0]}'?" if near else "")
                                + " (an option takes note, value, when)")
        cond = parse_condition(opt["when"], w + ".when") if "when" in opt else None
        if cond is None and i != len(raw) - 1:
            raise RuleFileError(f"{w}: only the last option may omit 'when' (the default)")
        options.append((cond, conv(opt["value"], w + ".value")))
    if options[-1][0] is not None:
        raise RuleFileError(f"{where}: the last option must be a default without 'when'")
    return Choice(tuple(options))
