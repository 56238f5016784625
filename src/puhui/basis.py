"""The actuarial basis: versioned, human-readable files under ``actuarial/``.

``actuarial/basic/``     basic-insurance rules, one TOML file per scheme and year
``actuarial/drugs/``     drug and item lists (CSV) with their metadata (TOML)
``actuarial/tables/``    mortality and other tables (CSV) with their citation
``actuarial/assumptions/`` the synthetic city's parameters and other assumptions
``actuarial/treaties/``  reinsurance treaty sets (:mod:`puhui.reserving.treaty_basis`)

The folder is found from ``PUHUI_ACTUARIAL`` (a user's own basis), else inside the package
(``puhui/actuarial``, shipped in the wheel; in a checkout a symbolic link to ``actuarial/``). A file may say ``extends = "other-file.toml"``
(a path relative to itself): it starts from that file and changes what it states, so
two years of one scheme or product differ only where the file says so. Tables merge
key by key; lists of tables that carry an ``id`` (layers, benefits) merge by id (an
entry with a known id changes that entry, a new id is appended, ``remove = true``
drops it); any other value is replaced.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from puhui.errors import RuleFileError


def actuarial_dir() -> Path:
    """The actuarial basis: ``PUHUI_ACTUARIAL`` if set (a user's own basis), else the one
    shipped inside the package (``puhui/actuarial``: in a checkout, a symbolic link to the
    checkout's ``actuarial/``; in a wheel, a copy), else an ``actuarial/`` folder above
    the source (a checkout whose symbolic link did not survive, as on Windows without
    symlinks)."""
    env = os.environ.get("PUHUI_ACTUARIAL")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    shipped = here.parent / "actuarial"
    if (shipped / "basic").is_dir():
        return shipped.resolve()
    for parent in here.parents:
        cand = parent / "actuarial"
        if cand.is_dir() and (cand / "basic").is_dir():
            return cand
    raise RuleFileError("cannot find the actuarial/ folder: set PUHUI_ACTUARIAL to its path "
                        "(it ships inside the puhui package; reinstall puhui if it is missing)")


MAX_DEPTH = 16      # tables and arrays within each other: a basis file needs five


def _depth(value: Any) -> int:
    """How deep tables and arrays nest (iteratively: a hostile file cannot recurse us)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        kids = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        todo.extend((k, d + 1) for k in kids if isinstance(k, (dict, list)))
    return deepest


def _read_one(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except RecursionError:
        raise RuleFileError(f"{path}: tables or arrays nested too deeply (at most "
                            f"{MAX_DEPTH})") from None
    except FileNotFoundError:
        raise RuleFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise RuleFileError(f"{path}: is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise RuleFileError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{path}: not valid TOML ({exc})") from None
    if _depth(data) > MAX_DEPTH:
        raise RuleFileError(f"{path}: tables or arrays nested too deeply (at most {MAX_DEPTH})")
    return data


def read_chain(path: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """A basis file and the files it ``extends``, each as read (without its
    ``extends`` key): the file itself first (named as given), its root last."""
    shown = Path(path)
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[Path] = []
    while True:
        real = shown.resolve()
        if real in seen:
            raise RuleFileError(f"{chain[-1][0]}: 'extends' loops back to {shown.name}")
        seen.append(real)
        data = _read_one(shown)
        parent = data.pop("extends", None)
        chain.append((shown, data))
        if parent is None:
            return chain
        if not isinstance(parent, str) or not parent.strip():
            raise RuleFileError(f"{shown}: top level: 'extends' should be the name of another "
                                f"file (text such as \"huhuibao-2024.toml\"), not "
                                f"{describe_value(parent)}")
        shown = Path(os.path.normpath(shown.parent / parent))


def merge_chain(chain: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """Merge a chain from :func:`read_chain`: the root first, each file over it."""
    out = chain[-1][1]
    for path, data in reversed(chain[:-1]):
        base = dict(out)
        base.pop("id", None)
        try:
            out = merge_basis(base, data)
        except RuleFileError as exc:
            raise RuleFileError(f"{path}: {exc}") from None
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML basis file, following ``extends`` (see the module docstring)."""
    return merge_chain(read_chain(path))


def _is_id_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and isinstance(v.get("id"), str) for v in value)


def merge_basis(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Merge a child file over its parent (see the module docstring).

    >>> merge_basis({"a": 1, "layers": [{"id": "x", "r": 1}, {"id": "y", "r": 2}]},
    ...             {"layers": [{"id": "y", "r": 3}, {"id": "x", "remove": True}]})
    {'a': 1, 'layers': [{'id': 'y', 'r': 3}]}
    """
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = merge_basis(old, value)
        elif _is_id_list(old) and _is_id_list(value):
            merged = {e["id"]: dict(e) for e in old}
            for e in value:
                if e.get("remove"):
                    if e["id"] not in merged:     # a misspelt id would remove nothing
                        raise RuleFileError(
                            f"{key}: remove = true for id {e['id']!r}, which the file it "
                            f"extends does not have (ids there: "
                            f"{', '.join(map(str, merged)) or 'none'})")
                    merged.pop(e["id"])
                elif e["id"] in merged:
                    merged[e["id"]] = merge_basis(merged[e["id"]], e)
                else:
                    merged[e["id"]] = dict(e)
            out[key] = list(merged.values())
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------
# Strict schemas of basis files
#
# Every table of a product or rule file has a known set of keys, each with a kind of
# value. A schema is declared once, as data (a :class:`Table` of :class:`Kind` objects),
# and :func:`read_checked` checks each file of an ``extends`` chain against it (so an
# unknown key is reported in the file that has it) and then the merged result (so a
# required key missing from the whole lineage is reported too). A wrong key or value is
# a :class:`RuleFileError` naming the file, the table and the key, never a traceback.
# ---------------------------------------------------------------------------------------

#: The largest plausible amount in yuan in a basis file (a limit, a deductible, a
#: premium): larger ones are typos, and sums of them could overflow int64 fen.
MAX_YUAN = 100_000_000


def describe_value(v: Any) -> str:
    """A value and its TOML type, short, for messages."""
    if isinstance(v, bool):
        return f"{str(v).lower()} (true/false)"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dt.datetime):
        return f"the date-time {v.isoformat()}"
    if isinstance(v, dt.date):
        return f"the date {v.isoformat()}"
    if isinstance(v, str):
        text = v if len(v) <= 40 else v[:37] + "..."
        return f"the text {text!r}"
    return repr(v)


def _yuan_text(x: float) -> str:
    return f"{x:,.0f}"


class _Check:
    """The context of one check: the file, and whether it is one file of a lineage
    (``partial``: required keys are checked on the merged result only)."""

    def __init__(self, file: str, partial: bool = False, extends: bool = False,
                 root: "Table | None" = None):
        self.file, self.partial, self.extends, self.root = file, partial, extends, root

    def fail(self, table: str, text: str) -> None:
        raise RuleFileError(f"{self.file}: {table}: {text}" if self.file else f"{table}: {text}")

    def bad(self, table: str, key: str, v: Any, text: str) -> None:
        self.fail(table, f"'{key}' = {describe_value(v)}: {text}")


def _sub(table: str, key: str) -> str:
    return key if table == "top level" else f"{table}.{key}"


class Kind:
    """What a key's value must be; ``what`` says it in words for messages."""

    what = "a value"

    def check(self, v: Any, c: _Check, table: str, key: str, partial: bool) -> None:
        raise NotImplementedError


class Text(Kind):
    def __init__(self, choices: tuple[str, ...] | None = None, pattern: str | None = None,
                 what: str = "text"):
        self.choices, self.pattern = choices, re.compile(pattern) if pattern else None
        self.what = f"one of {', '.join(choices)}" if choices else what

    def check(self, v, c, table, key, partial):
        if not isinstance(v, str):
            c.bad(table, key, v, f"should be {self.what} (in quotes)")
        if self.choices is not None and v not in self.choices:
            near = difflib.get_close_matches(v, self.choices, n=1, cutoff=0.6)
            c.bad(table, key, v, f"should be {self.what}"
                  + (f"; did you mean '{near[0]}'?" if near else ""))
        if self.pattern is not None and not self.pattern.fullmatch(v):
            c.bad(table, key, v, f"should be {self.what}")
        if not v.strip() and self.choices is None:
            c.bad(table, key, v, "is empty")


class Code(Kind):
    """A code from a fixed list, written as text or as a whole number (``"21"`` or 21)."""

    def __init__(self, codes: tuple[str, ...], what: str):
        self.codes, self.what = codes, what

    def check(self, v, c, table, key, partial):
        if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v) not in self.codes:
            c.bad(table, key, v, f"should be {self.what}: one of {', '.join(self.codes)}")


#: Earliest and latest date accepted anywhere (fund data, product and rule files): a
#: policy year 9999 or 1900 is a typing error, not a product.
FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2100, 12, 31)


class Date(Kind):
    what = f"a TOML date from {FIRST_DATE} to {LAST_DATE} such as 2025-01-01"

    def check(self, v, c, table, key, partial):
        if not isinstance(v, dt.date) or isinstance(v, dt.datetime):
            c.bad(table, key, v, f"should be {self.what} (no quotes, no time)")
        elif not FIRST_DATE <= v <= LAST_DATE:
            c.bad(table, key, v, f"should be {self.what}")


class Flag(Kind):
    what = "true or false"

    def check(self, v, c, table, key, partial):
        if not isinstance(v, bool):
            c.bad(table, key, v, f"should be {self.what}")


class Whole(Kind):
    """A whole number within a plausible range (days, years, ages, levels)."""

    def __init__(self, lo: int, hi: int, unit: str = "", what_of: str = "a whole number"):
        self.lo, self.hi, self.unit = lo, hi, unit
        self.what = f"{what_of} of {unit} from {lo} to {hi}" if unit else \
            f"{what_of} from {lo} to {hi}"

    def check(self, v, c, table, key, partial):
        if isinstance(v, bool) or not isinstance(v, int):
            c.bad(table, key, v, f"should be {self.what}")
        if not self.lo <= v <= self.hi:
            c.bad(table, key, v, f"is outside the plausible range: {self.what}")


def _number(v, c, table, key, what) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        c.bad(table, key, v, f"should be {what} (a number, no quotes)")
    if isinstance(v, float) and not math.isfinite(v):
        c.bad(table, key, v, f"is not a finite number; give {what}")
    return v


class Yuan(Kind):
    """An amount in yuan: finite, not negative, whole fen, at most ``hi`` yuan."""

    def __init__(self, hi: int = MAX_YUAN):
        self.hi = hi
        self.what = f"an amount in yuan from 0 to {_yuan_text(hi)}"

    def check(self, v, c, table, key, partial):
        _number(v, c, table, key, self.what)
        if v < 0:
            c.bad(table, key, v, "an amount cannot be negative")
        if v > self.hi:
            c.bad(table, key, v, f"is above {_yuan_text(self.hi)} yuan, the largest plausible "
                                 f"amount (a typo? sums of such amounts could overflow in fen)")
        d = Decimal(repr(v)) * 100
        if d != d.to_integral_value():
            c.bad(table, key, v, f"{v!r} yuan is not a whole number of fen")


class Ratio(Kind):
    what = "a ratio from 0 to 1 (0.7 for 70 %)"

    def check(self, v, c, table, key, partial):
        _number(v, c, table, key, self.what)
        if not 0 <= v <= 1:
            c.bad(table, key, v, "a ratio is from 0 to 1 (0.7 for 70 %)")
        d = Decimal(repr(v)) * 10_000
        if d != d.to_integral_value():
            c.bad(table, key, v, "finer than a basis point (0.0001)")


class ListOf(Kind):
    def __init__(self, item: Kind, min_len: int = 0, max_len: int = 10_000):
        self.item, self.min_len, self.max_len = item, min_len, max_len
        self.what = f"a list of {item.what}"

    def check(self, v, c, table, key, partial):
        if not isinstance(v, list):
            c.bad(table, key, v, f"should be {self.what}, in [ ]")
        if not self.min_len <= len(v) <= self.max_len:
            c.bad(table, key, v, f"should have {self.min_len} to {self.max_len} entries, "
                                 f"not {len(v)}")
        for i, x in enumerate(v):
            self.item.check(x, c, table, f"{key}[{i}]", False)


class Either(Kind):
    """A plain value, or a table that says more (``limit = 1000`` or
    ``limit = { amount = 1000, shared = "h" }``)."""

    def __init__(self, plain: Kind, table: "Table"):
        self.plain, self.table = plain, table
        self.what = f"{plain.what}, or {table.what}"

    def check(self, v, c, table, key, partial):
        if isinstance(v, dict):
            self.table.check(v, c, table, key, partial)
        elif isinstance(v, list):
            c.bad(table, key, v, f"should be {self.what}, not a list")
        else:
            self.plain.check(v, c, table, key, partial)


class Table(Kind):
    """A table with known keys. ``required`` keys must be there (in the merged file);
    ``rule`` checks the table as a whole (for example that a minimum is below a maximum).
    """

    def __init__(self, fields: dict[str, Kind], required: tuple[str, ...] = (),
                 what: str = "a table", rule=None, open_keys: Kind | None = None):
        self.fields, self.required, self.what, self.rule = fields, required, what, rule
        self.open_keys = open_keys            # any key allowed, with this kind of value

    def check(self, v, c, table, key, partial):
        name = _sub(table, key) if key else table
        if not isinstance(v, dict):
            c.bad(table, key, v, f"should be {self.what} ({{ ... }} or a [section])")
        self.check_keys(v, c, name, partial)

    def check_keys(self, v: dict, c: _Check, name: str, partial: bool,
                   extra: dict[str, Kind] | None = None) -> None:
        fields = {**self.fields, **(extra or {})}
        for k, x in v.items():
            kind = fields.get(k, self.open_keys)
            if kind is None:
                c.fail(name, unknown_key_text(k, fields, self.what, c, name))
            kind.check(x, c, name, k, partial)
        if not partial:
            for k in self.required:
                if k not in v:
                    c.fail(name, f"missing '{k}' ({self.what} needs "
                                 f"{', '.join(repr(r) for r in self.required)})")
            if self.rule is not None:
                self.rule(v, c, name)


def unknown_key_text(key: str, known, what: str, c: _Check, table: str) -> str:
    near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    text = f"unknown key '{key}'"
    if near:
        text += f"; did you mean '{near[0]}'?"
    elif c.root is not None and table.isidentifier() \
            and key in c.root.fields and key not in known:
        text += (f"; '{key}' belongs at the top level: in TOML a key written after a "
                 f"[{table}] header belongs to that table, so move it above the first [table]")
    return text + f" ({what} takes {', '.join(sorted(known))})"


class Tables(Kind):
    """A list of tables (``[[benefits]]``). With ``by_id`` its entries carry an ``id`` and
    merge by it along a lineage; ``remove = true`` is then allowed in a file that extends
    another."""

    def __init__(self, table: Table, by_id: bool = False, min_len: int = 0):
        self.table, self.by_id, self.min_len = table, by_id, min_len
        self.what = f"a list of tables ([[...]]): {table.what}"

    def check(self, v, c, table, key, partial):
        if not isinstance(v, list):
            c.bad(table, key, v, f"should be {self.what}")
        if not partial and len(v) < self.min_len:
            c.fail(_sub(table, key), f"give at least {self.min_len} entry")
        for i, e in enumerate(v):
            name = f"{_sub(table, key)}[{i}]"
            if self.by_id and isinstance(e, dict) and isinstance(e.get("id"), str):
                name += f' (id "{e["id"]}")'
            if not isinstance(e, dict):
                c.fail(name, f"should be {self.table.what} ({{ ... }} or a [[{key}]] section), "
                             f"not {describe_value(e)}")
            extra = {"remove": Flag()} if self.by_id and partial and c.extends else None
            if self.by_id and e.get("remove") is True and extra:
                self.table.check_keys(e, c, name, True, extra)
            else:
                self.table.check_keys(e, c, name, partial and self.by_id, extra)


class Options(Kind):
    """A conditional value: a plain value of ``kind``, or a list of
    ``{ when = {...}, value = ... }`` options (see :mod:`puhui.tiers.rules`)."""

    def __init__(self, kind: Kind, condition: Kind):
        self.kind, self.condition = kind, condition
        self.what = f"{kind.what}, or a list of {{ when = {{...}}, value = ... }} options"
        self.option = Table({"when": condition, "value": kind, "note": Text()},
                            required=("value",), what="an option")

    def check(self, v, c, table, key, partial):
        if not isinstance(v, list):
            if isinstance(v, dict):
                c.bad(table, key, v, f"should be {self.what}")
            self.kind.check(v, c, table, key, partial)
            return
        if not v:
            c.bad(table, key, v, "an empty list of options; give at least a default")
        for i, opt in enumerate(v):
            if not isinstance(opt, dict):
                c.fail(_sub(table, f"{key}[{i}]"), f"each option is {{ when = {{...}}, value "
                                                  f"= ... }}, not {describe_value(opt)}")
            self.option.check_keys(opt, c, _sub(table, f"{key}[{i}]"), False)


class Condition(Kind):
    """A ``when`` table: each key an attribute tested by equality (a list: one of) or a
    range key (``min_age``) with a single value."""

    def __init__(self, attributes: dict[str, Kind], ranges: dict[str, Kind],
                 what: str = "a condition"):
        self.attributes, self.ranges, self.what = attributes, ranges, what

    def check(self, v, c, table, key, partial):
        if not isinstance(v, dict):
            c.bad(table, key, v, f"should be {self.what}, a table such as {{ retired = true }}")
        self.check_table(v, c, _sub(table, key))

    def check_table(self, v: dict, c: _Check, name: str) -> None:
        known = {**self.attributes, **self.ranges}
        for k, x in v.items():
            if k not in known:
                c.fail(name, unknown_key_text(k, known, self.what, c, name))
            if k in self.attributes and isinstance(x, list):
                if not x:
                    c.bad(name, k, x, "an empty list matches nothing")
                for i, e in enumerate(x):
                    self.attributes[k].check(e, c, name, f"{k}[{i}]", False)
            else:
                known[k].check(x, c, name, k, False)


def check_value(kind: Kind, value: Any, where: str, key: str | None = None) -> None:
    """Check one value (a table when ``key`` is None) with messages starting ``where``."""
    c = _Check("")
    if key is None and isinstance(kind, Table):
        if not isinstance(value, dict):
            c.fail(where, f"should be {kind.what}, not {describe_value(value)}")
        kind.check_keys(value, c, where, False)
    elif key is None and isinstance(kind, Condition):
        if not isinstance(value, dict):
            c.fail(where, f"should be {kind.what}, a table such as {{ retired = true }}, not "
                          f"{describe_value(value)}")
        kind.check_table(value, c, where)
    else:
        kind.check(value, c, where, key, False)


def read_checked(path: str | Path, schema: Table) -> dict[str, Any]:
    """Read a basis file with its ``extends`` lineage and check it against ``schema``:
    each file on its own (unknown keys and wrong values are reported in the file that has
    them), then the merged result (required keys, rules over several keys). Returns the
    merged file, as :func:`read_toml` would."""
    chain = read_chain(path)
    if len(chain) == 1:
        schema.check_keys(chain[0][1], _Check(str(chain[0][0]), root=schema), "top level",
                          False)
        return chain[0][1]
    for i, (p, data) in enumerate(chain):
        schema.check_keys(data, _Check(str(p), partial=True, extends=i < len(chain) - 1,
                                       root=schema), "top level", True)
    merged = merge_chain(chain)
    label = f"{chain[0][0]} (with {', '.join(p.name for p, _ in chain[1:])}, which it extends)"
    schema.check_keys(merged, _Check(label, root=schema), "top level", False)
    return merged


class OneOrList(Kind):
    """One value of ``kind`` or a non-empty list of them (``base = "in_scope"`` or
    ``base = ["in_scope", "-x.paid"]``)."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self.what = f"{kind.what}, or a list of them"

    def check(self, v, c, table, key, partial):
        if isinstance(v, list):
            ListOf(self.kind, min_len=1).check(v, c, table, key, partial)
        else:
            self.kind.check(v, c, table, key, partial)
