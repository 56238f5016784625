"""``puhui validate``: every rule of the fund-data contract, checked and explained.

Each broken rule becomes one :class:`Problem`: the file, the column, the rule, how many
rows break it, a few example ids (pseudonymous keys only, never a value from a
privacy finding) and what to do. The checks follow :mod:`puhui.fund.schema`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund import privacy
from puhui.fund.files import ColumnReader, EngineFrame, date_days, open_columns
from puhui.fund.schema import (
    CURRENT_YEAR,
    EPOCH_MONTH,
    FUND_PAYMENTS,
    MAX_SETTLEMENT_FEN,
    MAX_SETTLEMENT_YUAN,
    PERSONS,
    POLICIES,
    SETTLEMENT_LINES,
    SETTLEMENT_MONEY,
    SETTLEMENT_PARTS,
    SETTLEMENTS,
    TABLES,
    Column,
    Table,
)
from puhui.sorted_search import SortedHashes, equal_range, search_sorted

MAX_EXAMPLES = 3
#: The rule that no part of a settlement's bill exceeds its total.
PART_RULE = "part of the bill <= medfee_sumamt (except on reversals)"
#: Rows per chunk of settlements.parquet when the caller does not hold it whole.
CHUNK_ROWS = 1_000_000


def default_workers() -> int:
    """Processes for chunked checks: the execution in force (:mod:`puhui.execution`;
    two on a machine with two cores or more)."""
    from puhui.execution import current

    return current().n_workers


@dataclass
class Problem:
    file: str
    column: str
    rule: str
    count: int
    fix: str
    examples: list[str] = field(default_factory=list)
    kind: str = "error"  # "error" or "privacy"
    #: positions of the breaking rows (row rules only; None for file rules), so a claims
    #: batch can quarantine exactly them; they are rows of ``rows_in`` (default: ``file``)
    rows: np.ndarray | None = None
    rows_in: str | None = None
    #: a privacy finding's distinct values (never shown), to merge chunks' findings
    hits: frozenset | None = field(default=None, repr=False)
    #: order of the check that found it, within one chunk's checks (chunks' problems
    #: merged are put in this order, so a chunked report reads like a whole one)
    seq: int = field(default=0, repr=False)

    @property
    def rows_file(self) -> str:
        return self.rows_in or self.file

    def message(self) -> str:
        head = "privacy" if self.kind == "privacy" else "rule"
        rows = f"{self.count} row{'s' if self.count != 1 else ''}" if self.count else "the column"
        ex = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return (f"{self.file}: column {self.column}: {head} '{self.rule}' broken by "
                f"{rows}{ex}. Fix: {self.fix}")


@dataclass
class Report:
    directory: Path
    problems: list[Problem] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    #: persons, policies and lines in engine types, when asked for (``validate_dir(...,
    #: keep=True)``), so a caller that goes on to use the data does not read it twice;
    #: the settlements reach a caller chunk by chunk through ``settlements_sink``
    typed: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    #: for each line of settlement_lines.parquet, the row of its settlement (-1 for none),
    #: found by the check that it exists
    line_settlement_rows: np.ndarray | None = None
    #: rows of the settlements that a reversal in the file undoes
    reversed_settlement_rows: np.ndarray | None = None
    #: what ``validate_dir``'s settlements_sink returned for each chunk, in order
    settlement_values: list = field(default_factory=list)
    _checks: int = field(default=0, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def messages(self) -> str:
        """Every problem's message, one a line."""
        return "\n".join(p.message() for p in self.problems)

    def take_settlement_values(self) -> list[tuple]:
        """The sink's values by position: ``[(first of each chunk's), (second...), ...]``
        (the sink returns tuples), released from the report."""
        values, self.settlement_values = self.settlement_values, []
        return list(zip(*values)) if values else []

    def merge(self, problems: list[Problem], offset: int = 0) -> None:
        """Add the problems of one chunk of a file (rows from ``offset``): a rule broken
        in several chunks is one problem (counts added, rows joined, the first
        examples; a privacy finding counts distinct values over the chunks)."""
        at = {(p.file, p.column, p.rule, p.kind, p.rows_in): p for p in self.problems}
        for p in problems:
            if p.rows is not None and offset:
                p.rows = p.rows + offset
            old = at.get((p.file, p.column, p.rule, p.kind, p.rows_in))
            if old is None:
                self.problems.append(p)
                at[(p.file, p.column, p.rule, p.kind, p.rows_in)] = p
                continue
            if old.hits is not None and p.hits is not None:
                old.hits = old.hits | p.hits
                old.count = len(old.hits)
            else:
                old.count += p.count
            old.examples = (old.examples + p.examples)[:MAX_EXAMPLES]
            old.seq = min(old.seq, p.seq)
            if old.rows is not None and p.rows is not None:
                old.rows = np.concatenate([old.rows, p.rows])

    def passed(self) -> None:
        """A check that no row breaks, known without a mask (what :meth:`add` does for
        a mask with no row set: the checks stay numbered as they were)."""
        self._checks += 1

    def add(self, table: Table, column: str, rule: str, mask, keys: pd.Series | None,
            fix: str, positions: np.ndarray | None = None) -> None:
        """Record a problem for the rows where ``mask`` is true (nothing if none).
        ``positions`` maps the mask to file rows when it covers a subset of them."""
        self._checks += 1
        mask = np.asarray(mask, dtype=bool)
        n = int(np.count_nonzero(mask))
        if n == 0:
            return
        ex = [] if keys is None else [str(k) for k in keys[mask].head(MAX_EXAMPLES)]
        rows = np.flatnonzero(mask) if positions is None else np.asarray(positions)[mask]
        self.problems.append(Problem(table.file, column, rule, n, fix, ex, rows=rows,
                                     seq=self._checks))


def _text(s: pd.Series) -> pd.Series:
    return s if pd.api.types.infer_dtype(s, skipna=True) == "string" else s.astype(str)


def _key_series(table: Table, df: pd.DataFrame) -> pd.Series:
    k = table.key[0]
    s = _text(df[k]) if k in df.columns else pd.Series(df.index.astype(str))
    if len(table.key) > 1 and all(c in df.columns for c in table.key):
        s = s + "#" + _text(df[table.key[1]])
    return s.reset_index(drop=True)


class _Keys:
    """A table's keys for the problems' examples (the key column, joined with "#" to the
    second where the key has two), made only for the few rows an example needs: joining
    millions of keys that no problem shows costs seconds."""

    def __init__(self, table: Table, df: pd.DataFrame):
        self.table, self.df = table, df

    def __getitem__(self, mask) -> pd.Series:
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))[:MAX_EXAMPLES]
        return _key_series(self.table, self.df.iloc[rows])


def _key(table: Table, df: pd.DataFrame) -> _Keys:
    return _Keys(table, df)


# --- per-column type checks -------------------------------------------------------------

def _check_column(rep: Report, table: Table, col: Column, s: pd.Series, keys,
                  nulls: np.ndarray | None = None, cents: dict | None = None) -> bool:
    """Type, null, code and range checks for one column (``nulls``: its null mask, if
    known). True when the column is usable. ``cents``: a money column's amounts in fen
    as rounded here (float) are put in it under the column's name, so the conversion
    to fen need not compute them again."""
    nulls = s.isna().to_numpy() if nulls is None else nulls
    usable = True
    if not col.nullable:
        rep.add(table, col.name, "not null", nulls, keys,
                "fill the missing values or drop those rows; this column may not be empty")
        usable = not nulls.any()  # cross-file rules need the column whole
    present = ~nulls
    kind = col.kind
    if kind == "money":
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            rep.add(table, col.name, "money is a number of yuan", present, keys,
                    "write amounts as numbers (yuan with two decimals), not text")
            return False
        x = s.to_numpy(dtype="float64")
        off = x * 100
        rounded = np.rint(off)
        with np.errstate(invalid="ignore"):            # inf: refused by the range below
            np.subtract(off, rounded, out=off)
            bad = np.abs(off, out=off) > 1e-6             # NaN (a null): False
        del off
        if nulls.any():
            bad &= present
        if cents is not None:
            cents[col.name] = rounded
        del rounded
        rep.add(table, col.name, "at most two decimals (whole fen)", bad, keys,
                "round amounts to the fen (0.01 yuan)")
        del bad
        lo, hi = col.bounds()
        if (lo is not None or hi is not None) and _all_within(x, lo, hi):
            rep.passed()                  # every value finite and in range: no row
        elif lo is not None or hi is not None:
            out = ~np.isfinite(x)
            if lo is not None:
                out |= x < lo
            if hi is not None:
                out |= x > hi
            rep.add(table, col.name, money_range_rule(col), present & out, keys,
                    money_range_fix(col))
    elif kind == "int":
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            rep.add(table, col.name, "whole number", present, keys, "write whole numbers")
            return False
        x = s.to_numpy(dtype="float64")
        rep.add(table, col.name, "whole number", present & (x != np.floor(x)), keys,
                "write whole numbers")
        lo, hi = col.bounds()
        if lo is not None:
            rep.add(table, col.name, f"value >= {lo}", present & (x < lo), keys,
                    f"values must be at least {lo}")
        if hi is not None:
            then = " (the current year)" if col.max_value == CURRENT_YEAR else ""
            rep.add(table, col.name, f"value <= {hi}", present & (x > hi), keys,
                    f"values must be at most {hi}{then}")
    elif kind == "bool":
        if not pd.api.types.is_bool_dtype(s):
            vals = s.dropna()
            if not vals.map(lambda v: isinstance(v, (bool, np.bool_))).all():
                rep.add(table, col.name, "true/false", present, keys,
                        "write a boolean column (true/false)")
                return False
    elif kind == "date":
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            if not present.any():
                # nulls only, stored as numbers (pandas writes np.nan so): no wrong value,
                # read as nulls (found by the DuckDB engine, session 18: a TypeError here)
                return usable
            bad, days = present, None
        else:
            days, bad = date_days(s)
        if bad.any():
            rep.add(table, col.name, "date", bad, keys,
                    "write a Parquet date or timestamp at midnight")
            return False
        lo, hi = col.bounds()
        if lo is not None and hi is not None:
            # the first and last day decide when no value is null (most files)
            first, last = (int(days.min()), int(days.max())) if len(days) and \
                not nulls.any() else (None, None)
            if first is not None and _day_number(lo) <= first and last <= _day_number(hi):
                rep.passed()
            else:
                out = present & ((days < _day_number(lo)) | (days > _day_number(hi)))
                rep.add(table, col.name, date_range_rule(col), out, keys,
                        date_range_fix(col))
            if first is not None and (last < _day_number(EPOCH_MONTH[0]) or
                                      first > _day_number(EPOCH_MONTH[1])):
                rep.passed()
            else:
                epoch = present & (days >= _day_number(EPOCH_MONTH[0])) & \
                    (days <= _day_number(EPOCH_MONTH[1]))
                rep.add(table, col.name, EPOCH_RULE, epoch, keys, EPOCH_FIX)
    elif kind in ("string", "code"):
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            rep.add(table, col.name, "text", present, keys,
                    "write ids and codes as text (for example \"310\", not 310)")
            # a column of nulls only, stored as numbers (a writer's type for "no
            # value"), holds no wrong value: usable, read as nulls (EngineFrame.add)
            return usable and not present.any()
        if kind == "code":
            bad = present & ~_text_in(s, col.codes)
            rep.add(table, col.name, f"code in {{{', '.join(col.codes)}}}", bad, keys,
                    "use the national code; see docs/data-schema.md for the list")
    return usable


def _all_within(x: np.ndarray, lo, hi) -> bool:
    """Whether every value of ``x`` is finite and within ``lo``..``hi`` (``None``: no
    bound), from its least and greatest value (two passes, no mask; NaN or an infinity
    makes them not finite).

    >>> _all_within(np.array([0.0, 5.0]), 0, 5), _all_within(np.array([1.0, np.nan]), 0, 5)
    (True, False)
    >>> _all_within(np.array([-np.inf]), None, 5), _all_within(np.array([]), 0, 1)
    (False, True)
    """
    if not len(x):
        return True
    with np.errstate(invalid="ignore"):
        mn, mx = x.min(), x.max()
    return bool(np.isfinite(mn) and np.isfinite(mx) and (lo is None or mn >= lo) and
                (hi is None or mx <= hi))


def _text_in(s: pd.Series, allowed) -> np.ndarray:
    """Whether each value of ``s``, as text, is one of ``allowed`` (nulls: False). A
    categorical is looked up by its categories.

    >>> _text_in(pd.Series(["11", None, 21]), ("11", "21")).tolist()
    [True, False, True]
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        ok = pd.Index(s.cat.categories.astype(str)).isin(allowed)
        c = s.cat.codes.to_numpy()
        return (c >= 0) & (ok[np.maximum(c, 0)] if len(ok) else False)
    txt = s.astype(object).where(s.isna(), s.astype(str))
    return s.notna().to_numpy() & txt.isin(allowed).to_numpy()


#: A date inside the bounds that no fund data holds: January 1970, where a timestamp
#: written in the wrong unit lands (:data:`puhui.fund.schema.EPOCH_MONTH`).
EPOCH_RULE = "date plausible (not in January 1970, the Unix epoch)"
EPOCH_FIX = ("these dates read as January 1970: the file's timestamps were written in the "
             "wrong unit (fastparquet writes a pandas datetime64[s] column as milliseconds "
             "holding the seconds divided by 1000, so every date reads as 1970-01-01); write "
             "the dates again with pyarrow, or cast them to datetime64[ns] before writing")


def _day_number(d: dt.date) -> int:
    """Days since 1970-01-01."""
    return (d - dt.date(1970, 1, 1)).days


def money_range_rule(col: Column) -> str:
    """The rule name of a money column's range (for example ``amount within
    -100,000,000..100,000,000 yuan``): a claims batch quarantines by it."""
    lo, hi = col.bounds()
    if lo is None or hi is None:
        return f"amount >= {lo:,} yuan" if hi is None else f"amount <= {hi:,} yuan"
    return f"amount within {lo:,}..{hi:,} yuan"


def money_range_fix(col: Column) -> str:
    lo, hi = col.bounds()
    if col.name == "premium":
        return f"a premium is 0 to {hi:,} yuan; check the unit (yuan, not fen) and the value"
    return (f"an amount of more than {hi:,} yuan in one settlement is not plausible "
            f"(negative amounts only on reversals, down to {lo:,}); check the unit (yuan, "
            f"not fen) and the value, or correct the settlement at its source")


def date_range_rule(col: Column) -> str:
    """The rule name of a date column's range (``date within 1950-01-01..2100-12-31``)."""
    lo, hi = col.bounds()
    return f"date within {lo}..{hi}"


def date_range_fix(col: Column) -> str:
    lo, hi = col.bounds()
    if col.name == "end_date":
        return (f"give the policy's real last day of cover (a Huiminbao policy runs one "
                f"policy year); an open end date such as 9999-12-31 is not accepted, and "
                f"dates must lie from {lo} to {hi}")
    return f"dates must lie from {lo} to {hi}; check the value and its unit"


def _privacy_problems(rep: Report, table: Table, findings) -> None:
    for f in findings:
        rep.problems.append(Problem(
            table.file, f.column, f"anonymised data: no {f.what}", f.count,
            "remove the column or replace it with pseudonymous codes; "
            "values are not shown", kind="privacy", hits=f.values or None))


def _check_chunk(rep: Report, table: Table, reader: ColumnReader, start: int, n: int,
                 groups: slice | None, codes: bool = True,
                 known: dict[str, KnownText] | None = None, found: dict | None = None,
                 arrows: dict | None = None, arrow_text: frozenset = frozenset(),
                 block: np.ndarray | None = None
                 ) -> tuple[pd.DataFrame | None, pd.Series]:
    """Rows ``start`` .. ``start + n`` of a file (its row groups ``groups``): scanned for
    personal data, type-checked and converted to engine types one column at a time (so
    only one raw column is held at once). Returns the chunk in engine types (``None``
    when a column is not usable) and its keys (for the problems' examples); problems are
    merged into ``rep`` with file rows. ``codes``: repeated text as categoricals (see
    :class:`EngineFrame`).

    ``known``: columns whose values are looked up in a :class:`KnownText` (settlements'
    psn_no in the persons' ids): read as a categorical over its categories, and each
    row's position among them (-1: none) put in ``found`` under the column's name; a
    chunk with a value the set lacks is read the usual way (nothing in ``found``).
    ``arrows``: its keys name columns whose Arrow arrays are put in it, as read.
    ``arrow_text``: text columns held as Arrow strings (``string[pyarrow]``) rather
    than made a Python string a value, when they have no null (a caller that reads few
    of their values: settlements' setl_id, of which only some rows' text is needed).
    ``block``: memory for the money columns (see :class:`EngineFrame`)."""
    part = Report(rep.directory)
    names = reader.names
    known = known or {}
    if start == 0:
        _privacy_problems(part, table, privacy.scan_column_names(names))

    def read(name):
        k = known.get(name)
        if k is None:
            return reader.get_with_arrow(name, groups,
                                         _arrow_backed if name in arrow_text else None)

        def convert(arrow):
            got = k.lookup(arrow)
            if got is None:
                return None
            codes_, rows = got
            if found is not None:
                found[name] = rows
            return pd.Series(k.categorical(codes_), copy=False)
        return reader.get_with_arrow(name, groups, convert)

    # the key columns are read once: kept here for the problems' examples, then checked
    # and converted in their turn below (a second read would hold their text twice)
    raw_keys = {k: read(k) for k in table.key if k in names}
    keys = _key(table, pd.DataFrame({k: v[0] for k, v in raw_keys.items()},
                                    index=pd.RangeIndex(n)))
    usable = True
    for col in table.columns:
        if col.name not in names and col.required:
            if start == 0:
                part.problems.append(Problem(table.file, col.name, "column present", 0,
                                             f"add the column '{col.name}' ({col.kind}: "
                                             f"{col.meaning})"))
            usable = False
    out = EngineFrame(table, names, n, codes=codes,
                      shared={name: k.categories for name, k in known.items()}, block=block)
    for name in names:
        s, arrow = raw_keys.pop(name) if name in raw_keys else read(name)
        nulls = _null_mask(s, arrow)
        # text whose bytes hold nothing any rule looks for is not scanned value by value
        if not _text_is_clean(str(name), s, arrow, known.get(name)):
            shared = known.get(name)
            scanned = s.cat.remove_unused_categories() if shared is not None and \
                isinstance(s.dtype, pd.CategoricalDtype) and \
                s.cat.categories is shared.categories else s  # the values that occur
            if isinstance(scanned.dtype, pd.ArrowDtype):
                scanned = scanned.astype(object)               # scanned as it always was
            scanned, scan_nulls = _privacy_subset(scanned, nulls)
            _privacy_problems(part, table, privacy.scan_values(str(name), scanned, scan_nulls))
            del scanned
        if arrows is not None and name in arrows:
            arrows[name] = arrow
        del arrow
        try:
            col = table.column(name)
        except KeyError:
            col = None
        cents: dict = {}
        if col is not None:
            usable &= _check_column(part, table, col, s, keys, nulls, cents)
        if usable:
            out.add(name, s, cents.get(name))
        del cents
        del s
    rep.merge(part.problems, start)
    return (out.frame() if usable else None), keys


def _text_is_clean(name: str, s: pd.Series, arrow, shared: KnownText | None) -> bool:
    """:func:`privacy.text_is_clean` of a column read as ``s`` from ``arrow``, judged
    from its distinct values where they are at hand: a column looked up in ``shared``
    by the set's own (cleared once for all chunks), a categorical by its categories. A
    set of values that holds every value of the column and is clear clears the column:
    the check clears no value that breaks a rule (so the scan would find nothing)."""
    import pyarrow as pa

    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        if shared is not None and cats is shared.categories:
            return shared.clean(name)
        if 0 < len(cats) < len(s) and pd.api.types.infer_dtype(cats, skipna=True) == "string":
            try:
                values = pa.array(cats.to_numpy(dtype=object), type=pa.string())
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
                values = None                   # text Arrow cannot hold: the column's
            if values is not None:
                return privacy.text_is_clean(name, values)
    return privacy.text_is_clean(name, arrow)


def _arrow_backed(arrow) -> pd.Series | None:
    """Arrow text with no null as a ``string[pyarrow]`` column (no copy, no Python
    string); ``None`` for anything else (read the usual way)."""
    import pyarrow as pa

    if arrow.null_count or pa.types.is_dictionary(arrow.type):
        return None
    arr = _one_text_array(arrow)
    if arr is None:
        return None
    return pd.Series(pd.arrays.ArrowExtensionArray(arr), copy=False)


def _privacy_subset(s: pd.Series, nulls: np.ndarray) -> tuple[pd.Series, np.ndarray | None]:
    """What :func:`privacy.scan_values` needs to see of a column: of a numeric column
    only the values of 10 digits or more (the only ones it reads: a phone or ID number
    stored as a number), not a copy of millions of amounts; other columns whole."""
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) or \
            isinstance(s.dtype, pd.CategoricalDtype):
        return s, nulls
    x = s.to_numpy(dtype="float64", na_value=np.nan)
    if _all_within(x, -1e10 + 1, 1e10 - 1):       # |x| < 1e10 everywhere: none of them
        return s.iloc[:0], None
    with np.errstate(invalid="ignore"):
        big = ~nulls & ~(np.abs(x) < 1e10)
    return s[big], None


def _null_mask(s: pd.Series, arrow) -> np.ndarray:
    """``s.isna()`` of a column read from ``arrow``: no null in a column of no float
    (where pandas reads NaN as missing too) when Arrow counts none, without a pass over
    millions of Python strings."""
    import pyarrow as pa

    t = arrow.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if arrow.null_count == 0 and len(s) == len(arrow) and not (
            pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)):
        return np.zeros(len(s), dtype=bool)
    return s.isna().to_numpy()


def _sort_file_problems(rep: Report, first: int, table: Table) -> None:
    """One file's column problems in the order of the schema's columns, privacy last
    (the report puts every privacy problem first at the end)."""
    order = {c.name: i for i, c in enumerate(table.columns)}
    mine = rep.problems[first:]
    mine.sort(key=lambda p: (p.kind == "privacy", order.get(p.column, len(order)), p.seq))
    rep.problems[first:] = mine


def _read_whole(rep: Report, directory: Path, table: Table, arrows: dict | None = None
                ) -> pd.DataFrame | None:
    """A file read, checked and converted whole (``None`` when absent or not usable).
    ``arrows``: its keys name columns whose Arrow arrays are put in it, as read."""
    reader = open_columns(directory, table)
    if reader is None:
        return None
    rep.rows[table.name] = reader.n
    first = len(rep.problems)
    typed, _ = _check_chunk(rep, table, reader, 0, reader.n, None, arrows=arrows)
    _sort_file_problems(rep, first, table)
    return typed


def _factorize_text(values: np.ndarray, arrow: bool = False) -> tuple:
    r"""``pd.factorize`` of ids (codes, -1 for null; the distinct values in order of first
    appearance), by Arrow's hash when they are text: pandas' hash table of strings ends a
    string at its first NUL, so "P1\x00" and "P1" were one id to it (review 15).

    >>> c, u = _factorize_text(np.array(["P1\x00", None, "P1", "P1\x00"], dtype=object))
    >>> c.tolist(), len(u)
    ([0, -1, 1, 0], 2)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return (*pd.factorize(values), None) if arrow else pd.factorize(values)  # not text
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
        # text Arrow cannot hold (a lone surrogate)
        return (*pd.factorize(values), None) if arrow else pd.factorize(values)
    d = arr.dictionary_encode()
    codes = pc.fill_null(d.indices, -1).to_numpy(zero_copy_only=False).astype("int64")
    uniques = d.dictionary.to_numpy(zero_copy_only=False)
    return (codes, uniques, d.dictionary) if arrow else (codes, uniques)


def _factorize_arrow(keys: pd.Series, arrow) -> tuple | None:
    """:func:`_factorize_text` ``(keys, arrow=True)`` from the Arrow text column ``keys``
    were read from, and the distinct values' :func:`fingerprint` with the order that
    sorts it when they come of it (else ``None, None``); ``None`` when the column is not
    plain text of the same length. Where no key is null and no two keys' hashes are
    equal, the keys are distinct (the codes count 0, 1, 2..., the values are ``keys``'
    own Python strings) and no hash table of them is made; else Arrow's dictionary.

    >>> import pyarrow as pa
    >>> c, u, d, h, o = _factorize_arrow(pd.Series(["b", None, "a", "b"]),
    ...                                  pa.array(["b", None, "a", "b"]))
    >>> c.tolist(), u.tolist(), d.to_pylist(), h
    ([0, -1, 1, 0], ['b', 'a'], ['b', 'a'], None)
    >>> c, u, d, h, o = _factorize_arrow(pd.Series(["b", "a"]), pa.array(["b", "a"]))
    >>> c.tolist(), u.tolist(), bool((h[o] == np.sort(fingerprint(np.array(["b", "a"])))).all())
    ([0, 1], ['b', 'a'], True)
    """
    import pyarrow.compute as pc

    arr = _one_text_array(arrow)
    if arr is None or len(arr) != len(keys) or \
            pd.api.types.infer_dtype(keys, skipna=True) != "string":
        return None
    if not arr.null_count:
        h = fingerprint(arr)
        order = np.argsort(h)
        hs = h[order]
        if not (hs[1:] == hs[:-1]).any():                  # distinct hashes: distinct keys
            return np.arange(len(arr), dtype="int64"), keys.to_numpy(dtype=object), arr, \
                h, order
    d = arr.dictionary_encode()
    codes = pc.fill_null(d.indices, -1).to_numpy(zero_copy_only=False).astype("int64")
    return codes, d.dictionary.to_numpy(zero_copy_only=False), d.dictionary, None, None


def _text_order(values) -> np.ndarray:
    """``pc.sort_indices(values)`` of distinct Arrow texts with no null: where every
    value has one length of at most 16 bytes, by the values' bytes as two big-endian
    64-bit words (the bytes' order, as Arrow's; a few times faster), else by Arrow.

    >>> import pyarrow as pa
    >>> _text_order(pa.array(["P10", "P02", "P01"])).tolist()
    [2, 1, 0]
    """
    import pyarrow.compute as pc

    arr = _one_text_array(values)
    n = len(values)
    if arr is not None and n and not arr.null_count:
        off = np.frombuffer(arr.buffers()[1], dtype="int32", count=n + 1,
                            offset=arr.offset * 4)
        width = int(off[1] - off[0])
        if 0 < width <= 16 and int(off[-1] - off[0]) == n * width and \
                bool((np.diff(off) == width).all()):
            data = np.frombuffer(arr.buffers()[2], dtype="uint8")[off[0]:off[-1]]
            data = data.reshape(n, width)
            # a byte every value shares ("P" of P00000001) orders nothing: left out
            varies = np.flatnonzero((data != data[0]).any(axis=0))
            width = len(varies)
            if width == 0:
                return np.arange(n)
            block = np.zeros((n, 16), dtype="uint8")
            block[:, :width] = data[:, varies]
            words = block.view(">u8").astype("uint64")
            if width <= 8:
                return np.argsort(words[:, 0])              # distinct: any sort is the sort
            return np.lexsort((words[:, 1], words[:, 0]))
    return pc.sort_indices(values).to_numpy()


def _duplicated_text(values) -> np.ndarray:
    r"""``pd.Series(values).duplicated()`` compared exactly: pandas' hash table of
    strings ends a string at its first NUL, so "S1\x00" would repeat "S1" (met where two
    ids' hashes are equal and their text decides).

    >>> _duplicated_text(np.array(["S1", "S1\x00", "S1", None, None], dtype=object)).tolist()
    [False, False, True, False, True]
    """
    codes, _ = _factorize_text(np.asarray(values, dtype=object))
    codes = np.asarray(codes)
    out = np.ones(len(codes), dtype=bool)
    if len(codes):
        _, first = np.unique(codes, return_index=True)       # nulls (-1): one value
        out[first] = False
    return out


class KnownText:
    """A set of distinct texts known before the rows that name them (the persons' ids),
    to look up column after column of references (settlements' psn_no, chunk by chunk)
    without hashing and sorting the references' values anew for each: each reference's
    64-bit :func:`fingerprint` (over Arrow's bytes, no Python string made) is found
    among the sorted hashes of the set (:class:`~puhui.sorted_search.SortedHashes`),
    and the text where the hash matches is compared by Arrow (exact, byte for byte:
    "P1\\x00" is not "P1").

    :attr:`categories`: the texts sorted (as :func:`puhui.fund.files._arrow_codes`
    sorts), and :attr:`dtype` a categorical over them, made once. ``None`` from
    :meth:`make` when two texts share a hash (the caller looks up the usual way).
    """

    def __init__(self, values, rows: np.ndarray, h: np.ndarray, text: np.ndarray):
        """Everything in the order of the sorted hashes ``h``: ``values`` the texts
        (Arrow), ``rows`` what each stands for, ``text`` their Python strings."""
        self.values, self.rows = values, rows
        self._h = SortedHashes(h)
        by_text = _text_order(values)
        self.rank = np.empty(len(values), dtype="int32")
        self.rank[by_text] = np.arange(len(values), dtype="int32")
        # the caller's Python strings (no second copy of the ids)
        categories = pd.Index(np.asarray(text, dtype=object)[by_text], dtype=object)
        del by_text
        # distinct and not null (an Arrow dictionary's values): no hash table of them
        # to check it (a million strings' table would stay cached with the index)
        fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
        self.dtype = fast(categories, False) if fast is not None else \
            pd.CategoricalDtype(categories)
        self.categories = self.dtype.categories
        self._clean: dict[str, bool] = {}

    def clean(self, name: str) -> bool:
        """:func:`privacy.text_is_clean` of the set's texts as column ``name`` (once a
        name): true clears any column whose values are all in the set."""
        if name not in self._clean:
            self._clean[name] = privacy.text_is_clean(name, self.values)
        return self._clean[name]

    @classmethod
    def make(cls, values, rows: np.ndarray, h: np.ndarray | None = None,
             text: np.ndarray | None = None, presorted: bool = False) -> KnownText | None:
        """``values``: distinct Arrow strings; ``rows``: what each stands for; ``h``:
        their :func:`fingerprint` and ``text`` their Python strings, if known;
        ``presorted``: all of them are in the order of the sorted hashes already."""
        import pyarrow as pa

        if values is None or not len(values):
            return None
        h = fingerprint(values) if h is None else h
        text = values.to_numpy(zero_copy_only=False) if text is None else text
        if not presorted:
            order = np.argsort(h)
            h, rows, text = h[order], rows[order], np.asarray(text, dtype=object)[order]
            values = values.take(pa.array(order))
        if (h[1:] == h[:-1]).any():
            return None
        return cls(values, rows, h, text)

    def categorical(self, codes: np.ndarray) -> pd.Categorical:
        """A categorical of :attr:`dtype` from codes into :attr:`categories` (-1 for
        null), made without checking the categories again: ``Categorical.from_codes``
        builds a hash table of a million categories in every process to check they are
        distinct, though they are the dtype's own (pandas' own internals, as its
        ``take`` makes one; ``from_codes`` where they are not there)."""
        try:
            from pandas._libs.arrays import NDArrayBacked
            from pandas.core.dtypes.cast import coerce_indexer_dtype

            cat = pd.Categorical.__new__(pd.Categorical)
            NDArrayBacked.__init__(cat, coerce_indexer_dtype(codes, self.categories),
                                   self.dtype)
            return cat
        except (ImportError, AttributeError, TypeError):
            return pd.Categorical.from_codes(codes, dtype=self.dtype, validate=False)

    def lookup(self, arrow) -> tuple[np.ndarray, np.ndarray] | None:
        """For each value of an Arrow text column, its code in :attr:`categories` and
        the row given for it (-1 for a null); ``None`` when a value is not in the set
        or the column is not plain text."""
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = _one_text_array(arrow)
        if arr is None:
            return None
        n = len(arr)
        h = fingerprint(arr)
        i = self._h.find(h)
        if not arr.null_count:                      # most columns: no mask to apply
            if n:
                if int(i.min()) < 0:
                    return None                     # a value not in the set: the usual way
                same = pc.equal(arr, self.values.take(pa.array(i)))
                if same.null_count or not pc.all(same).as_py():
                    return None                     # only a hash matched: the usual way
            return self.rank[i], self.rows[i].astype("int64", copy=False)
        cand = np.maximum(i, 0)
        present = arr.is_valid().to_numpy(zero_copy_only=False)
        hit = present & (i >= 0)
        if hit.any():
            same = pc.equal(arr, self.values.take(pa.array(cand)))
            hit &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        if (present & ~hit).any():
            return None                             # a value not in the set: the usual way
        codes = np.full(n, -1, dtype="int32")
        rows = np.full(n, -1, dtype="int64")
        codes[hit] = self.rank[cand[hit]]
        rows[hit] = self.rows[cand[hit]]
        return codes, rows


class PersonKeys:
    """persons.parquet's psn_no: which rows repeat an earlier one, and for references to
    it (policies' and settlements' psn_no) the row of the person each names (the
    earliest row with that key, -1 for none). References are looked up by their 64-bit
    hash in the sorted hashes of the keys, then compared as text (exact; several times
    faster than a hash table of millions of Python strings)."""

    def __init__(self, keys: pd.Series, arrow=None):
        """``arrow``: the same keys as Arrow read them from the file, if at hand (hashed
        and encoded as they are: no Arrow copy made again of a million Python strings)."""
        got = _factorize_arrow(keys, arrow) if arrow is not None else None
        codes, uniques, self._arrow, h, order = got if got is not None else \
            (*_factorize_text(keys.to_numpy(dtype=object), arrow=True), None, None)
        first = np.full(len(uniques), -1, dtype="int64")
        rows = np.flatnonzero(codes >= 0)
        first[codes[rows[::-1]]] = rows[::-1]            # reversed: the earliest row wins
        #: the ids as a :class:`KnownText` (:meth:`known`), made once when asked
        self._known: KnownText | None | bool = False
        self.duplicated = np.zeros(len(keys), dtype=bool)
        self.duplicated[rows] = first[codes[rows]] != rows
        text = np.asarray(uniques, dtype=object)
        if h is None:
            h = fingerprint(self._arrow if self._arrow is not None else text)
            order = np.argsort(h)
        self._h, self._text, self._first = h[order], text[order], first[order]
        if self._arrow is not None:                     # in the same order, for known()
            import pyarrow as pa
            self._arrow = self._arrow.take(pa.array(order))
        # two keys with one hash (a chance of about 1e-6 in five million): a hash table
        self._index = pd.Index(text[order]) if (self._h[1:] == self._h[:-1]).any() else None

    def known(self) -> KnownText | None:
        """The persons' distinct ids as a :class:`KnownText` whose rows are the persons'
        rows (the earliest with each id); ``None`` when the ids are not all text, or
        two share a hash."""
        if self._known is False:
            self._known = None if self._index is not None else \
                KnownText.make(self._arrow, self._first, self._h, self._text, presorted=True)
        return self._known

    def forget_known(self) -> None:
        """Release what :meth:`known` made (after the pass over the settlements); it
        is not made again."""
        self._known, self._arrow = None, None

    def _rows_of(self, values: np.ndarray) -> np.ndarray:
        if not len(self._h):
            return np.full(len(values), -1, dtype="int64")
        if self._index is not None:
            c = self._index.get_indexer(values)
            return np.where(c >= 0, self._first[np.maximum(c, 0)], -1)
        i = np.minimum(search_sorted(self._h, fingerprint(values)), len(self._h) - 1)
        return np.where(self._text[i] == values, self._first[i], -1)

    def rows(self, refs: pd.Series) -> np.ndarray:
        """Row in persons of each value of ``refs`` (-1 for none or null). A categorical
        is looked up by its categories, other text once per distinct value."""
        if isinstance(refs.dtype, pd.CategoricalDtype):
            cat_rows = self._rows_of(refs.cat.categories.to_numpy(dtype=object))
            rc = refs.cat.codes.to_numpy()
            if not len(cat_rows):
                return np.full(len(refs), -1, dtype="int64")
            return np.where(rc >= 0, cat_rows[np.maximum(rc, 0)], -1)
        # each distinct value looked up once (a person has many settlements)
        codes, uniques = _factorize_text(refs.to_numpy(dtype=object))
        found = self._rows_of(np.asarray(uniques, dtype=object))
        return np.where(codes >= 0, found[np.maximum(codes, 0)] if len(found) else -1, -1)


def _one_text_array(values):
    """An Arrow column of text as one Arrow ``string`` array (large strings, string
    views and a dictionary of strings cast); ``None`` for anything else."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        # one chunk (a chunk of row groups read): itself, not a copy of its bytes
        values = values.chunk(0) if values.num_chunks == 1 else \
            values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if not isinstance(values, pa.Array):
        return None
    t = values.type
    if pa.types.is_dictionary(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            return None
        values = values.cast(pa.string())
    elif pa.types.is_large_string(t) or getattr(pa.types, "is_string_view",
                                                 lambda _: False)(t):
        values = values.cast(pa.string())
    return values if pa.types.is_string(values.type) else None


def _as_arrow_bytes(values):
    """Any values as one Arrow ``string``/``binary`` array of their UTF-8 text: Arrow
    text as it is; Python text as Arrow makes it; anything else as ``str`` of it (as
    pandas' hash of mixed objects took it), a lone surrogate passed through."""
    import pyarrow as pa

    arr = _one_text_array(values)
    if arr is not None:
        return arr
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pandas()
    v = np.asarray(values, dtype=object)
    try:
        return pa.array(v, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError, TypeError):
        pass
    return pa.array([None if x is None or (isinstance(x, float) and x != x) else
                     x if isinstance(x, bytes) else
                     str(x).encode("utf-8", "surrogatepass") for x in v], type=pa.binary())


_U64 = np.uint64


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place: every bit of the result depends on every bit
    of ``x``."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


#: Keys of the hash of settlement and person ids (:func:`fingerprint`).
_WORD_KEY, _LEN_KEY = 0x9E3779B97F4A7C15, _U64(0x70756875693A6964)  # "puhui:id"


def _word_key(k: int) -> np.uint64:
    """The key of a value's ``k``-th 8-byte word."""
    return _U64(((k + 1) * _WORD_KEY) & 0xFFFFFFFFFFFFFFFF)


def _hash_bytes(arr) -> np.ndarray:
    """The 64-bit hash of each value of one Arrow string/binary array, from its offsets
    and bytes (nulls hash as empty text): each value's bytes in little-endian 8-byte
    words (the last padded with zeros), word ``k`` keyed by ``k``, mixed and summed, the
    sum mixed with the length. Values of one length (most ids) are one reshaped block."""
    n = len(arr)
    out = np.zeros(n, dtype="uint64")
    if n == 0:
        return out
    if arr.null_count:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pc.fill_null(arr, pa.scalar(b"" if pa.types.is_binary(arr.type) else "",
                                          arr.type))
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype="int32", count=n + 1, offset=arr.offset * 4
                        ).astype("int64")
    data = np.frombuffer(bufs[2], dtype="uint8") if bufs[2] is not None and off[-1] > off[0] \
        else np.zeros(8, dtype="uint8")
    lens = np.diff(off)
    longest = int(lens.max())
    if longest and int(lens.min()) == longest:              # one length: a 2-d block
        w = (longest + 7) // 8
        block = np.zeros((n, w * 8), dtype="uint8")
        block[:, :longest] = data[off[0]:off[0] + n * longest].reshape(n, longest)
        words = block.view("<u8")
        for k in range(w):
            t = words[:, k] ^ _word_key(k)
            out += _mix(t)
    elif longest:
        rows = np.flatnonzero(lens > 0)
        last = len(data) - 1
        for k in range(0, (longest + 7) // 8):
            rows = rows[lens[rows] > 8 * k]
            base = off[rows] + 8 * k
            end = off[rows + 1]
            word = np.zeros(len(rows), dtype="uint64")
            for j in range(8):
                at = base + j
                byte = np.where(at < end, data[np.minimum(at, last)], 0).astype("uint64")
                word |= byte << _U64(8 * j)
            out[rows] += _mix(word ^ _word_key(k))
    out ^= (lens.astype("uint64") + _U64(1)) * _LEN_KEY
    return _mix(out)


def fingerprint(values, step: int = 1_000_000) -> np.ndarray:
    """A 64-bit hash of each text value (``uint64``), of its UTF-8 bytes: Python text
    and an Arrow column of the same text hash alike, so ids read as Arrow are hashed
    without a Python string each. ``step`` values at a time (a bounded transient).
    Equal hashes do not mean equal ids: every user compares the text where they match."""
    import pyarrow as pa

    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object)
    n = len(values)
    out = np.empty(n, dtype="uint64")
    for i in range(0, n, step):
        part = values[i:i + step] if not isinstance(values, (pa.Array, pa.ChunkedArray)) \
            else values.slice(i, step)
        out[i:i + step] = _hash_bytes(_as_arrow_bytes(part))
    return out


def sorted_run(h: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hashes sorted, and the row of each (``start`` + position): one sorted run of
    :class:`HashedKeys`, made where the chunk is read."""
    order = np.argsort(h)
    return h[order], (order + start).astype("int64")


class HashedKeys:
    """Settlement ids held as 64-bit hashes (:func:`fingerprint`) in sorted order, so
    that a file of a hundred million settlements can be checked chunk by chunk with 16
    bytes a settlement (hash and row) instead of the ids. Exact: ids with equal hashes
    are compared as text, through ``text_at(rows)`` (the ids of those rows).

    Built from sorted runs (:func:`sorted_hashes` of each chunk, joined): a stable sort
    of runs is a merge, several times faster than sorting the hashes afresh.

    :attr:`duplicated`: rows whose id repeats an earlier row's. :meth:`positions`: the
    row of each looked-up id (the earliest row with it), -1 where there is none.
    """

    def __init__(self, runs: np.ndarray | list, rows: np.ndarray | list, text_at):
        # runs and rows may come as one-element lists, which are emptied: the caller
        # then holds no reference, and each array is freed as soon as it is sorted
        # (a hundred million hashes are 800 MB)
        runs = runs.pop() if isinstance(runs, list) else runs
        n = len(runs)
        order = np.argsort(runs, kind="stable")
        self._s1 = runs[order]
        del runs
        rows = rows.pop() if isinstance(rows, list) else rows
        self._order = rows[order]
        del order, rows
        same = self._s1[1:] == self._s1[:-1]
        self.duplicated = np.zeros(n, dtype=bool)
        if same.any():                    # repeats (and, very rarely, two ids' hashes)
            run = np.zeros(n, dtype=bool)
            run[1:] |= same
            run[:-1] |= same
            dup_rows = np.sort(self._order[run])
            self.duplicated[dup_rows] = _duplicated_text(text_at(dup_rows))

    def positions(self, q1: np.ndarray, q_text: np.ndarray, text_at) -> np.ndarray:
        """Rows of the ids ``q_text`` (hashes ``q1``); ``text_at(rows)`` gives the ids of
        rows whose hash matches one of ``q1``."""
        out = np.full(len(q1), -1, dtype="int64")
        n = len(self._s1)
        if n == 0 or len(q1) == 0:
            return out
        q_text = np.asarray(q_text, dtype=object)
        lo, hi = equal_range(self._s1, q1)
        one = np.flatnonzero(hi - lo == 1)
        cand = self._order[lo[one]]
        same = np.asarray(text_at(cand), dtype=object) == q_text[one]
        out[one[same]] = cand[same]
        for j in np.flatnonzero(hi - lo > 1):            # a repeated id: the earliest row
            rows = np.sort(self._order[lo[j]:hi[j]])
            match = rows[np.asarray(text_at(rows), dtype=object) == q_text[j]]
            if len(match):
                out[j] = match[0]
        return out


def _dupes(rep: Report, table: Table, cols: list[str], dup: np.ndarray, keys) -> None:
    """Rows repeating an earlier row's ``cols`` (``dup``); ``keys`` give the examples."""
    rep.add(table, "+".join(cols), "unique", dup, keys,
            f"each {'/'.join(cols)} must appear once; remove or renumber the repeats")


class _KeysFromFile:
    """Example keys read from the file for the rows asked for (the ids are not held)."""

    def __init__(self, reader: ColumnReader, column: str):
        self.reader, self.column = reader, column

    def __getitem__(self, mask) -> pd.Series:
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))[:MAX_EXAMPLES]
        return pd.Series(self.reader.take(self.column, rows)).astype(str)


# --- cross-row and cross-file rules --------------------------------------------------------

def _rules_persons(rep: Report, p: pd.DataFrame, psn: PersonKeys) -> None:
    t, k = PERSONS, _key(PERSONS, p)
    _dupes(rep, t, ["psn_no"], psn.duplicated, k)
    rep.add(t, "retired", "residents are never retired",
            (p["insutype"] == "390") & p["retired"], k,
            "set retired=false for residents (insutype 390)")
    dd = p["death_date"]
    rep.add(t, "death_date", "death not before birth year",
            dd.notna() & (dd.dt.year < p["birth_year"]), k, "check death_date and birth_year")


def _rules_policies(rep: Report, pol: pd.DataFrame, who: np.ndarray | None) -> None:
    t, k = POLICIES, _key(POLICIES, pol)
    _dupes(rep, t, ["policy_no"], pol.duplicated(["policy_no"]).to_numpy(), k)
    rep.add(t, "end_date", "start_date <= end_date", pol["start_date"] > pol["end_date"], k,
            "the cover period must end on or after its start")
    if who is not None:
        rep.add(t, "psn_no", _PERSON_RULE, who < 0, k,
                "every insured person needs a row in persons.parquet")
    s = pol.sort_values(["psn_no", "product_id", "start_date"], kind="stable")
    same = (s["psn_no"].to_numpy()[1:] == s["psn_no"].to_numpy()[:-1]) & \
           (s["product_id"].to_numpy()[1:] == s["product_id"].to_numpy()[:-1])
    overlap = same & (s["start_date"].to_numpy()[1:] <= s["end_date"].to_numpy()[:-1])
    mask = np.zeros(len(s), bool)
    mask[1:] = overlap
    rep.add(t, "start_date", "no overlapping policies of one person and product",
            mask, s["policy_no"].reset_index(drop=True),
            "a person holds one policy of a product at a time; fix the dates or merge them",
            s.index.to_numpy())


def _row_rules_settlements(rep: Report, st: pd.DataFrame, keys: pd.Series,
                           persons: pd.DataFrame | None, who: np.ndarray | None,
                           is_rev: np.ndarray) -> None:
    """The rules about each settlement on its own (one chunk of the file); ``is_rev``:
    the reversals."""
    t = SETTLEMENTS
    if who is not None:
        rep.add(t, "psn_no", "person in persons.parquet", who < 0, keys,
                "every patient needs a row in persons.parquet")
        death = persons["death_date"].to_numpy()[np.maximum(who, 0)]
        after = (who >= 0) & ~pd.isna(death) & (st["setl_time"].to_numpy() > death)
        rep.add(t, "setl_time", "no settlement after the person's death", after, keys,
                "check setl_time against persons.death_date")
    money = {c: st[c].to_numpy() for c in SETTLEMENT_MONEY}
    funds = sum(money[c] for c in FUND_PAYMENTS)
    rep.add(t, "medfee_sumamt",
            "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt",
            money["medfee_sumamt"] != funds + money["psn_part_amt"], keys,
            "the fund payments and the person's share must add up to the total, to the fen")
    for c in SETTLEMENT_MONEY:
        rep.add(t, c, "amount >= 0 (except on reversals)", ~is_rev & (money[c] < 0), keys,
                "negative amounts belong only on reversal rows (refund_of set)")
    inlist = money["psn_part_amt"] - money["fulamt_ownpay_amt"] - money["overlmt_selfpay"]
    rep.add(t, "psn_part_amt",
            "in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0",
            ~is_rev & (inlist < 0), keys,
            "the person's share must include the out-of-list amounts")
    total = money["medfee_sumamt"]
    for c in SETTLEMENT_PARTS:
        rep.add(t, c, PART_RULE, ~is_rev & (money[c] > total), keys,
                f"{c} is a part of the bill and cannot exceed its total medfee_sumamt; "
                f"check both amounts")


def _rows_of(st: pd.DataFrame, mask: np.ndarray, start: int, is_rev: np.ndarray) -> dict:
    """What the cross-row rules need of some settlements of a chunk."""
    rows = np.flatnonzero(mask)
    return {"pos": rows + start,
            "setl_id": st["setl_id"].iloc[rows].to_numpy(dtype=object),
            "psn_no": st["psn_no"].iloc[rows].to_numpy(dtype=object),
            "setl_time": st["setl_time"].to_numpy()[rows],
            "is_rev": is_rev[rows],
            **{c: st[c].to_numpy()[rows] for c in SETTLEMENT_MONEY}}


def _joined(parts: list[dict]) -> dict:
    if not parts:
        return {"pos": np.zeros(0, dtype="int64"), "setl_id": np.zeros(0, dtype=object)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _text_at(rows_of: dict):
    """``text_at`` for :class:`HashedKeys` from rows kept in the pass (sorted by row)."""
    pos, ids = rows_of["pos"], rows_of["setl_id"]

    def text_at(rows):
        if not len(pos):
            return np.full(len(rows), None, dtype=object)
        i = np.minimum(np.searchsorted(pos, rows), len(pos) - 1)
        return np.where(pos[i] == rows, ids[i], None)
    return text_at


def _reversal_targets(reader: ColumnReader, chunks) -> np.ndarray:
    """Hashes of every refund_of in the file (read before the settlements, so the pass
    over them keeps what the rules need of exactly the rows reversals may name)."""
    if "refund_of" not in reader.names:
        return np.zeros(0, dtype="uint64")
    def present(arrow):
        """Text's values that are not null (few: the reversals), without a Python
        object made for each null row; ``None`` for anything else (the usual way)."""
        arr = _one_text_array(arrow)
        return None if arr is None else \
            pd.Series(arr.drop_null().to_numpy(zero_copy_only=False), dtype=object)

    parts = []
    for _, _, groups in chunks:
        r = reader.get_with_arrow("refund_of", groups, present)[0].dropna()
        if len(r):
            parts.append(fingerprint(r.astype(str).to_numpy(dtype=object)))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype="uint64")


@dataclass
class _Chunk:
    """One chunk of settlements.parquet checked: its problems (file rows) and what the
    rules across rows need of it (``None`` when a column broke a type rule)."""

    start: int
    problems: list[Problem]
    rules: list[Problem] | None = None
    h1: np.ndarray | None = None          # the chunk's id hashes, sorted
    h1_rows: np.ndarray | None = None     # and their rows
    revs: dict | None = None
    originals: dict | None = None
    lined: dict | None = None
    value: object = None


@dataclass
class _PassContext:
    """What checking a chunk needs (shared by every chunk: forked workers inherit it, a
    Dask worker receives it once)."""

    reader: ColumnReader
    chunks: list
    persons: pd.DataFrame | None
    psn: PersonKeys | None
    targets: SortedHashes                  # hashes of the refund_of values
    line_h1: SortedHashes | None           # hashes of the lines' setl_id
    sink: object
    codes: bool
    known: KnownText | None = None      # the persons' ids, for settlements' psn_no
    #: Arrow's threads in each process checking chunks (None: as they are)
    arrow_threads: int | None = None
    #: the chunk of each piece of the map (None: piece i is chunk i)
    order: list[int] | None = None


@contextlib.contextmanager
def _arrow_threads(n: int | None):
    """Arrow's pool of CPU threads (Parquet decoding) at most ``n`` inside the block.
    Processes that each check a chunk keep the cores busy already; a second decoding
    thread in each only costs (a million settlements' columns read one by one: 0.25 ->
    0.19 s of CPU, measured in session 17)."""
    import pyarrow as pa

    old = pa.cpu_count()
    if n is None or old <= n:
        yield
        return
    pa.set_cpu_count(n)
    try:
        yield
    finally:
        pa.set_cpu_count(old)


def _check_settlement_chunk(c: _PassContext, i: int) -> _Chunk:
    with _arrow_threads(c.arrow_threads):
        return _check_settlement_chunk_in(c, c.order[i] if c.order is not None else i)


def _piece_order(sizes: list[int], workers: int) -> list[int] | None:
    """The chunks in the order of the map's pieces: the smallest first, then the rest in
    file order (``None``: file order). A local map's first piece goes to a forked
    worker, and this process waits for its result before it checks its own first
    piece (:func:`puhui.execution._in_order`): waiting for the smallest chunk (the
    file's last, part of a chunk) rather than a whole one saves one chunk's time.

    >>> _piece_order([10, 10, 10, 3], 2), _piece_order([10, 10, 10, 3], 1)
    ([3, 0, 1, 2], None)
    """
    if workers <= 1 or len(sizes) <= 2:
        return None
    small = int(np.argmin(sizes))
    return [small] + [i for i in range(len(sizes)) if i != small]


def _in_file_order(results, order: list[int] | None):
    """The map's results (pieces in ``order``) in the chunks' order: a result that
    comes before its turn is held until then (only the smallest chunk's)."""
    if order is None:
        yield from results
        return
    held: dict[int, object] = {}
    turn = 0
    for chunk, result in zip(order, results):
        held[chunk] = result
        while turn in held:
            yield held.pop(turn)
            turn += 1


def _check_settlement_chunk_in(c: _PassContext, i: int) -> _Chunk:
    start, m, groups = c.chunks[i]
    part = Report(Path("."))
    # psn_no looked up in the persons' ids as read (no per-chunk hash and sort of its
    # values), setl_id hashed from its Arrow bytes (no Python string to hash)
    known = {"psn_no": c.known} if c.known is not None else None
    found, arrows = {}, {"setl_id": None}
    # no sink: nothing keeps the chunk, so its money block serves the next chunk too
    block = _money_block(m) if c.sink is None else None
    st, keys = _check_chunk(part, SETTLEMENTS, c.reader, start, m, groups, codes=c.codes,
                            known=known, found=found, arrows=arrows,
                            arrow_text=frozenset({"setl_id"}), block=block)
    del block
    out = _Chunk(start, part.problems)
    if st is None:
        return out
    w = found.pop("psn_no", None)
    if w is None and c.psn is not None:
        w = c.psn.rows(st["psn_no"])
    rev = st["refund_of"].notna().to_numpy()
    rules, local = Report(Path(".")), Report(Path("."))
    _row_rules_settlements(local, st, keys, c.persons, w, rev)
    rules.merge(local.problems, start)
    out.rules = rules.problems
    setl_arrow = arrows.pop("setl_id")
    h = fingerprint(setl_arrow if setl_arrow is not None else st["setl_id"])
    del setl_arrow
    out.h1, out.h1_rows = sorted_run(h, start)
    if rev.any():
        out.revs = _rows_of(st, rev, start, rev)
        out.revs["refund_of"] = st["refund_of"].to_numpy(dtype=object)[rev]
    if len(c.targets.keys):
        out.originals = _rows_of(st, c.targets.contains(h), start, rev)
    has_lines = c.line_h1.contains(h) if c.line_h1 is not None else np.zeros(m, bool)
    if c.line_h1 is not None:
        on = np.flatnonzero(has_lines)
        out.lined = {"pos": on + start,
                     "setl_id": st["setl_id"].iloc[on].to_numpy(dtype=object),
                     **{k: st[k].to_numpy()[on] for k in ("medfee_sumamt", "preselfpay_amt")}}
    if c.sink is not None:
        if c.known is not None and isinstance(st["psn_no"].dtype, pd.CategoricalDtype) \
                and st["psn_no"].cat.categories is c.known.categories:
            # a sink gets what it always got: the categories that occur
            st["psn_no"] = st["psn_no"].cat.remove_unused_categories()
        if isinstance(st["setl_id"].dtype, pd.ArrowDtype) and \
                not getattr(c.sink, "arrow_text", False):
            st["setl_id"] = st["setl_id"].astype(object)      # Python strings, as ever
        out.value = c.sink(start, st, w, has_lines)
    return out


#: The money block of the last chunk checked without a sink (:func:`_money_block`).
_BLOCK: list = []


def _money_block(n: int) -> np.ndarray:
    """Memory for the money columns of a chunk of ``n`` settlements whose frame no one
    keeps: the last chunk's when of the same size (its pages mapped already; freed by
    :func:`_drop_money_block` after the pass)."""
    rows = sum(1 for c in SETTLEMENTS.columns if c.kind == "money")
    if _BLOCK and _BLOCK[0].shape == (rows, n):
        return _BLOCK[0]
    _BLOCK.clear()
    _BLOCK.append(np.empty((rows, n), dtype="int64"))
    return _BLOCK[0]


def _drop_money_block() -> None:
    _BLOCK.clear()


@dataclass
class _SettlementPass:
    """The settlements file checked chunk by chunk, with what the cross-row rules need."""

    keys: HashedKeys | None = None
    line_rows: dict | None = None       # settlements that have lines: pos, id and amounts
    reversed_rows: np.ndarray | None = None     # rows that a reversal names
    values: list = field(default_factory=list)  # the sink's, in chunk order


def _after_chunk() -> None:
    """After each chunk in a forked worker: the chunk's freed working memory handed back
    to the system (glibc would keep each worker at its largest chunk's high-water mark
    for the rest of the pass), without a gc pass over the parent's inherited objects."""
    from puhui.process_memory import release_free_memory

    release_free_memory(collect=False)


def _local_threads(workers: int, n: int) -> int | None:
    """Arrow threads for each process of a local pass of ``n`` chunks in ``workers``
    processes (the cores each has, :func:`puhui.execution.native_threads`); ``None``
    (as they are) in one process or on Dask, whose workers' cores are their own."""
    from puhui.execution import current, native_threads

    if current().scheduler is not None or workers <= 1 or n <= 1:
        return None
    return native_threads(workers)


def _settlements(rep: Report, directory: Path, persons: pd.DataFrame | None,
                 psn: PersonKeys | None, lines: pd.DataFrame | None,
                 chunk_rows: int | None, sink, workers: int, codes: bool,
                 line_h: np.ndarray | None = None) -> _SettlementPass:
    from puhui.execution import map_blocks

    t = SETTLEMENTS
    reader = open_columns(directory, t, codes=codes)
    rep.rows[t.name] = reader.n
    n = reader.n
    chunks = reader.chunks(chunk_rows)
    first = len(rep.problems)
    context = _PassContext(
        reader, chunks, persons, psn, SortedHashes(_reversal_targets(reader, chunks)),
        SortedHashes(np.unique(fingerprint(lines["setl_id"]) if line_h is None else line_h))
        if lines is not None else None,
        sink, codes, psn.known() if psn is not None and codes else None,
        _local_threads(workers, len(chunks)), _piece_order([m for _, m, _ in chunks], workers))
    if context.known is not None:
        context.known.clean("psn_no")           # once, before the workers are forked
    h1 = np.empty(n, dtype="uint64")
    h1_rows = np.empty(n, dtype="int32" if n < 2**31 else "int64")
    rules = Report(rep.directory)
    revs, originals, lined = [], [], []
    out = _SettlementPass()
    usable = True
    for c in _in_file_order(map_blocks(_check_settlement_chunk, len(chunks), context,
                                       workers=workers, after=_after_chunk), context.order):
        rep.merge(c.problems)
        if c.rules is None or not usable:
            usable = False
            continue
        seg = slice(c.start, c.start + len(c.h1))
        h1[seg], h1_rows[seg] = c.h1, c.h1_rows
        rules.merge(c.rules)
        for into, part in ((revs, c.revs), (originals, c.originals), (lined, c.lined)):
            if part is not None:
                into.append(part)
        out.values.append(c.value)
    del context
    _drop_money_block()
    if psn is not None:
        psn.forget_known()
    _sort_file_problems(rep, first, t)
    if not usable:
        out.values = []
        return out

    h1, h1_rows = [h1], [h1_rows]          # handed over: HashedKeys frees each when sorted
    # as Python strings (NumPy's own text type would drop a trailing NUL: "S1\x00" is
    # not "S1", which a look-up meets where two ids' hashes are equal)
    keys = HashedKeys(h1, h1_rows, lambda rows: pd.Series(
        reader.take("setl_id", rows), dtype=object).astype(str).to_numpy(dtype=object))
    _dupes(rep, t, ["setl_id"], keys.duplicated, _KeysFromFile(reader, "setl_id"))
    rep.merge(sorted(rules.problems, key=lambda p: p.seq))
    out.reversed_rows = _rules_reversals(rep, _joined(revs), _joined(originals), keys)
    out.keys, out.line_rows = keys, _joined(lined)
    return out


def _rules_reversals(rep: Report, rev: dict, orig: dict, ids: HashedKeys) -> np.ndarray:
    """``rev``: the reversal rows; ``orig``: every row whose id a reversal may name, in
    file order. Returns the rows of the settlements reversed."""
    t = SETTLEMENTS
    if not len(rev["pos"]):
        return np.zeros(0, dtype="int64")
    rk = pd.Series(rev["setl_id"])
    pos = ids.positions(fingerprint(rev["refund_of"]), rev["refund_of"], _text_at(orig))
    known = pos >= 0
    o_all = np.searchsorted(orig["pos"], pos[known])      # every original was kept
    known[known] = ~orig["is_rev"][o_all]
    rep.add(t, "refund_of", "reverses an existing settlement", ~known, rk,
            "refund_of must name the setl_id of a settlement in this file "
            "(not another reversal)", rev["pos"])
    rep.add(t, "refund_of", "a settlement is reversed at most once",
            pd.Series(rev["refund_of"]).duplicated().to_numpy(), rk,
            "remove the repeated reversal", rev["pos"])
    if not known.any():
        return np.zeros(0, dtype="int64")
    o = np.searchsorted(orig["pos"], pos[known])
    ok_k = rk[known].reset_index(drop=True)
    ok_rows = rev["pos"][known]
    rep.add(t, "psn_no", "a reversal belongs to the same person",
            rev["psn_no"][known] != orig["psn_no"][o], ok_k,
            "the reversal's psn_no must match the original's", ok_rows)
    neg = np.zeros(int(known.sum()), bool)
    for c in SETTLEMENT_MONEY:
        neg |= rev[c][known] != -orig[c][o]
    rep.add(t, "refund_of", "a reversal carries the negated amounts", neg, ok_k,
            "write the original's amounts with the opposite sign", ok_rows)
    rep.add(t, "setl_time", "a reversal is not before the original",
            rev["setl_time"][known] < orig["setl_time"][o], ok_k,
            "date the reversal on or after the original settlement", ok_rows)
    return np.unique(pos[known])


def _rules_lines(rep: Report, ln: pd.DataFrame, sp: _SettlementPass | None,
                 h: np.ndarray | None = None) -> np.ndarray | None:
    """Returns each line's settlement row (-1 for none), when the settlements are
    usable. ``h``: the :func:`fingerprint` of the lines' setl_id, if known."""
    t, k = SETTLEMENT_LINES, _key(SETTLEMENT_LINES, ln)
    _dupes(rep, t, ["setl_id", "line_no"], ln.duplicated(["setl_id", "line_no"]).to_numpy(), k)
    if sp is None or sp.keys is None:
        return None
    pos = sp.keys.positions(fingerprint(ln["setl_id"]) if h is None else h,
                            ln["setl_id"].to_numpy(dtype=object),
                            _text_at(sp.line_rows))
    rep.add(t, "setl_id", "settlement in settlements.parquet", pos < 0, k,
            "each line must belong to a settlement")
    have = pos >= 0
    sums = pd.DataFrame({"pos": pos[have], "amount": ln["amount"].to_numpy()[have],
                         "pre": ln["preselfpay_amt"].to_numpy()[have]}).groupby("pos").sum()
    spos = sums.index.to_numpy()
    s = sp.line_rows
    i = np.searchsorted(s["pos"], spos)                 # every settlement with lines was kept
    ids = pd.Series(s["setl_id"][i])
    # these rules are about a settlement and its lines together: their rows are the
    # settlements' (a claims batch quarantines the settlement)
    n0 = len(rep.problems)
    rep.add(t, "amount", "lines sum to the settlement's medfee_sumamt",
            sums["amount"].to_numpy() != s["medfee_sumamt"][i], ids,
            "the lines of a settlement must add up to its total", spos)
    rep.add(t, "preselfpay_amt", "lines sum to the settlement's preselfpay_amt",
            sums["pre"].to_numpy() != s["preselfpay_amt"][i], ids,
            "class-B up-front shares must add up to the settlement's", spos)
    for p in rep.problems[n0:]:
        p.rows_in = SETTLEMENTS.file
    return pos


#: A policies check's rule that needs the persons (:func:`_check_policies`).
_PERSON_RULE = "person in persons.parquet"


def _check_policies(directory: Path, persons: PersonKeys | None | str = "file"
                    ) -> tuple[int | None, list[Problem], bool]:
    """policies.parquet read, checked and its rules applied, as :func:`validate_dir`
    does in turn: its row count (``None`` when absent or not readable), its problems,
    and whether the persons' ids were at hand for the rule that needs them.
    ``persons``: the persons' ids, or ``"file"``: read here from persons.parquet's
    psn_no (a forked process that started before the persons were read; the rule's
    answer is the same, and is dropped by the caller where the persons are not usable)."""
    rep = Report(directory)
    if isinstance(persons, str):
        try:
            reader = open_columns(directory, PERSONS)
            s, arrow = reader.get_with_arrow("psn_no") if reader is not None and \
                "psn_no" in reader.names else (None, None)
        except InputError:
            s = None
        persons = PersonKeys(s, arrow) if s is not None else None
    try:
        pol = _read_whole(rep, directory, POLICIES)
    except InputError as exc:
        rep.problems.append(Problem(POLICIES.file, "-", "readable file", 0, str(exc)))
        pol = None
    if pol is not None:
        _rules_policies(rep, pol, persons.rows(pol["psn_no"]) if persons is not None else None)
    return rep.rows.get(POLICIES.name), rep.problems, persons is not None


def _policies_aside(directory: Path, workers: int):
    """policies.parquet checked in a forked process while this one reads the persons,
    the lines and the settlements (about a second of a core at ten million
    settlements, which the settlements' pass would otherwise wait for); forked before
    this process holds any data (a fork later, with millions of Python objects here,
    cost as much in copied pages as it saved). A function that gives
    :func:`_check_policies`'s answer; ``None`` where the policies are checked here: one
    process, or Dask (whose workers' cores are their own)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from puhui.execution import _watch_parent, current

    if workers <= 1 or current().scheduler is not None or not directory.is_dir():
        return None
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    future = pool.submit(_check_policies, directory)

    def abandon() -> None:
        """The caller failed: the process is not waited for (it ends when its check
        does)."""
        pool.shutdown(wait=False, cancel_futures=True)

    def result(psn: PersonKeys | None):
        from concurrent.futures.process import BrokenProcessPool

        try:
            n, problems, had_persons = future.result()
        except BrokenProcessPool:
            return _check_policies(directory, psn)[:2]      # the process died: here
        finally:
            pool.shutdown(wait=True)
        if psn is not None and not had_persons:
            return _check_policies(directory, psn)[:2]      # (not met: the same file)
        if psn is None:                 # the persons are not usable: no rule needs them
            problems = [p for p in problems
                        if not (p.file == POLICIES.file and p.rule == _PERSON_RULE)]
        return n, problems
    result.abandon = abandon
    return result


def refusal(directory: str | Path, rep: Report) -> str:
    """The last line of ``puhui validate`` on data that breaks rules (each problem's
    message comes before it): the same words from the command and the Python API."""
    n = len(rep.problems)
    return (f"{directory}: {n} rule{'s' if n != 1 else ''} broken; fix the data and run "
            f"'puhui validate' again")


def validate_dir(directory: str | Path, keep: bool = False, chunk_rows: int | None = None,
                 settlements_sink=None, workers: int = 1, codes: bool = True) -> Report:
    """Check a fund-data folder against every rule of the contract.

    ``keep``: the report also holds persons, policies and lines in engine types
    (``report.typed``). The settlements reach a caller through ``settlements_sink``:
    each chunk goes to ``settlements_sink(first_row, chunk, person_rows, has_lines)`` as
    it is checked, in the process that checked it, and what it returns is kept in
    ``report.settlement_values`` in chunk order (none when a chunk breaks a type rule).
    ``has_lines`` marks the chunk's settlements that may have lines (all that have, and
    with a chance of 2**-64 each, one that has not).
    ``chunk_rows``: read settlements.parquet in chunks of whole row groups of about this
    many rows (default: the whole file), holding one chunk at a time; ``workers``: the
    chunks are checked by this many forked processes. The report is the same either way.
    ``codes=False``: repeated text such as settlements' psn_no stays Python strings (for
    a caller that joins the chunks and reads the text; codes, made by Arrow, are cheaper
    to make and to hold).
    """
    directory = Path(directory)
    rep = Report(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder. Give the folder that holds "
                         f"persons.parquet, policies.parquet and settlements.parquet.")
    # policies.parquet on its own, beside what follows, where no one keeps its frame
    later = _policies_aside(directory, workers) if not keep else None
    try:
        return _validate_dir(rep, directory, keep, chunk_rows, settlements_sink, workers,
                             codes, later)
    except BaseException:
        if later is not None:
            later.abandon()
        raise


def _validate_dir(rep: Report, directory: Path, keep: bool, chunk_rows: int | None,
                  settlements_sink, workers: int, codes: bool, later) -> Report:
    """:func:`validate_dir`'s work; ``later``: the policies' check in a forked process
    (:func:`_policies_aside`), or ``None`` to check them here."""

    def read(table, how):
        try:
            return how()
        except InputError as exc:
            rep.problems.append(Problem(table.file, "-", "readable file", 0, str(exc)))
            return None

    person_arrows = {"psn_no": None}
    persons = read(PERSONS, lambda: _read_whole(rep, directory, PERSONS, person_arrows))
    if persons is not None and not len(persons):
        rep.problems.append(Problem(PERSONS.file, "-", "has rows", 0,
                                    f"{directory / PERSONS.file} holds no person: the data "
                                    f"needs one row per person of its settlements and policies"))
        persons = None
    psn = PersonKeys(persons["psn_no"], person_arrows.pop("psn_no")) \
        if persons is not None else None
    person_arrows.clear()
    pol = None
    if later is None:
        pol = read(POLICIES, lambda: _read_whole(rep, directory, POLICIES))
    else:
        rep.rows[POLICIES.name] = 0                       # its place among the files
    # lines before settlements: the pass over the settlements then keeps the amounts of
    # exactly the settlements that have lines
    line_arrows = {"setl_id": None}
    ln = read(SETTLEMENT_LINES, lambda: _read_whole(rep, directory, SETTLEMENT_LINES,
                                                    line_arrows))
    # the lines' setl_id hashed once, from Arrow's bytes where they are text
    line_h = None if ln is None else fingerprint(
        line_arrows["setl_id"] if _one_text_array(line_arrows["setl_id"]) is not None
        else ln["setl_id"])
    line_arrows.clear()
    sp = read(SETTLEMENTS, lambda: _settlements(rep, directory, persons, psn, ln, chunk_rows,
                                                settlements_sink, workers, codes, line_h))
    if persons is not None:
        _rules_persons(rep, persons, psn)
    if later is not None:
        n, problems = later(psn)
        if n is None:
            del rep.rows[POLICIES.name]
        else:
            rep.rows[POLICIES.name] = n
        # the same problems in the same order as read and checked here (the report
        # groups problems by file, keeping their order within a file)
        rep.problems.extend(problems)
    elif pol is not None:
        _rules_policies(rep, pol, psn.rows(pol["psn_no"]) if psn is not None else None)
    line_rows = _rules_lines(rep, ln, sp, line_h) if ln is not None else None
    # problems by file in the contract's order; privacy first: it is the most important
    # thing to fix. When any column holds personal data, no example id is shown
    # anywhere: the ids themselves may be it.
    files = {t.file: i for i, t in enumerate(TABLES)}
    rep.problems.sort(key=lambda p: (p.kind != "privacy", files.get(p.file, len(files))))
    if any(p.kind == "privacy" for p in rep.problems):
        for p in rep.problems:
            p.examples = []
    if keep:
        rep.typed = {PERSONS.name: persons, POLICIES.name: pol, SETTLEMENT_LINES.name: ln}
    rep.line_settlement_rows = line_rows
    rep.reversed_settlement_rows = sp.reversed_rows if sp is not None else None
    rep.settlement_values = sp.values if sp is not None else []
    return rep


# --- one settlement on its own (claims direct) -------------------------------------------

def _fen_of(value) -> tuple[int | None, str | None]:
    """An amount in yuan (number or numeric text) as exact fen, or a reason it is not."""
    if isinstance(value, bool) or value is None:
        return None, f"is not an amount in yuan: {value!r}"
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None, f"is not an amount in yuan: {str(value)[:40]!r}"
    if not d.is_finite():
        return None, f"is not a finite amount: {value!r}"
    cents = d * 100
    fen = int(cents.to_integral_value())
    if abs(cents - fen) > Decimal("1e-6"):         # the tolerance of the file check
        return None, "has more than two decimals (round it to the fen)"
    return fen, None


def _yuan_text(fen: int) -> str:
    return f"{fen / 100:,.2f}" if abs(fen) < 10**17 else f"{Decimal(fen) / 100:.3E}"


def check_settlement_record(record: dict) -> list[str]:
    """The problems of one settlement given as a record (``claims direct``): the bounds
    and identities that ``puhui validate`` applies to settlements.parquet, from the same
    definitions (:mod:`puhui.fund.schema`). An empty list when it may be adjudicated.

    Amounts are **yuan** as the caller sends them (numbers, or numeric text), not fen:
    each must be finite, in whole fen, and from 0 to
    :data:`~puhui.fund.schema.MAX_SETTLEMENT_YUAN` (a direct payout is never a reversal,
    so nothing is negative). Checked, when the fields are present:

    - ``medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt`` to the
      fen, when all four fund payments are given;
    - ``psn_part_amt >= fulamt_ownpay_amt + overlmt_selfpay`` (in-list self-pay >= 0);
    - no part of the bill exceeds ``medfee_sumamt`` (the person's share included);
    - ``setl_time`` a date (ISO text or a date) from
      :data:`~puhui.fund.schema.FIRST_DATE` to :data:`~puhui.fund.schema.LAST_DATE`;
    - ``med_type``, ``insutype`` national codes and ``hosp_lv`` 1-3, as in the file;
    - ``lines``: each ``amount`` as the settlement amounts; together at most the total.

    Missing required fields are the caller's to report; a missing field is skipped here.

    >>> ok = dict(setl_time="2025-03-01", med_type="21", hosp_lv=3, insutype="310",
    ...           medfee_sumamt=900, fulamt_ownpay_amt=100, overlmt_selfpay=0,
    ...           psn_part_amt=300)
    >>> check_settlement_record(ok)
    []
    >>> for p in check_settlement_record(ok | {"medfee_sumamt": 2e13, "setl_time": "9999-12-31"}):
    ...     print(p)
    setl_time: rule 'date within 1950-01-01..2100-12-31' broken (9999-12-31). Fix: dates must lie from 1950-01-01 to 2100-12-31; check the value and its unit
    medfee_sumamt: rule 'amount within 0..100,000,000 yuan' broken (20,000,000,000,000.00 yuan). Fix: a direct settlement's amounts are 0 to 100,000,000 yuan (reversals go to POST /v1/reversal); check the unit (yuan, not fen) and the value
    >>> check_settlement_record(ok | {"medfee_sumamt": 200})
    ["psn_part_amt: rule 'part of the bill <= medfee_sumamt' broken (300.00 > 200.00 yuan). Fix: psn_part_amt is a part of the bill and cannot exceed its total medfee_sumamt; check both amounts"]
    """
    t = SETTLEMENTS
    out: list[str] = []
    if "setl_time" in record:
        v = record["setl_time"]
        col = t.column("setl_time")
        lo, hi = col.bounds()
        try:
            day = v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v).strip()[:10])
            day = day.date() if isinstance(day, dt.datetime) else day
        except (TypeError, ValueError):
            out.append(f"setl_time: rule 'date' broken (not a date; the value is not shown). "
                       f"Fix: write the settlement date as YYYY-MM-DD")
        else:
            if not lo <= day <= hi:
                out.append(f"setl_time: rule '{date_range_rule(col)}' broken ({day}). "
                           f"Fix: {date_range_fix(col)}")
    for name in ("med_type", "insutype"):
        col = t.column(name)
        if name in record and str(record[name]) not in col.codes:
            out.append(f"{name}: rule 'code in {{{', '.join(col.codes)}}}' broken "
                       f"(the value is not shown). Fix: use the national code; see "
                       f"docs/data-schema.md for the list")
    if "hosp_lv" in record:
        lo, hi = t.column("hosp_lv").bounds()
        v = record["hosp_lv"]
        try:
            level = None if isinstance(v, bool) else float(v)
        except (TypeError, ValueError):
            level = None
        if level is None or not level.is_integer() or not lo <= level <= hi:
            out.append(f"hosp_lv: rule 'whole number {lo}..{hi}' broken "
                       f"(the value is not shown). Fix: give the hospital level 1, 2 or 3")
    hi_fen = MAX_SETTLEMENT_FEN
    rule = f"amount within 0..{MAX_SETTLEMENT_YUAN:,} yuan"
    fix = (f"a direct settlement's amounts are 0 to {MAX_SETTLEMENT_YUAN:,} yuan "
           f"(reversals go to POST /v1/reversal); check the unit (yuan, not fen) and the value")
    fen: dict[str, int] = {}
    for name in SETTLEMENT_MONEY:
        if name not in record:
            continue
        f, why = _fen_of(record[name])
        if why is not None:
            out.append(f"{name}: {why}")
        elif not 0 <= f <= hi_fen:
            out.append(f"{name}: rule '{rule}' broken ({_yuan_text(f)} yuan). Fix: {fix}")
        else:
            fen[name] = f
    line_sum, lines_ok = 0, True
    for i, ln in enumerate(record.get("lines") or []):
        if not isinstance(ln, dict) or "amount" not in ln:
            continue                     # the caller reports a line without an amount
        f, why = _fen_of(ln["amount"])
        if why is not None:
            out.append(f"lines[{i}].amount: {why}")
            lines_ok = False
        elif not 0 <= f <= hi_fen:
            out.append(f"lines[{i}].amount: rule '{rule}' broken ({_yuan_text(f)} yuan). "
                       f"Fix: {fix}")
            lines_ok = False
        else:
            line_sum += f
    total = fen.get("medfee_sumamt")
    if total is None:
        return out
    if all(c in fen for c in (*FUND_PAYMENTS, "psn_part_amt")):
        parts = sum(fen[c] for c in FUND_PAYMENTS) + fen["psn_part_amt"]
        if parts != total:
            out.append(f"medfee_sumamt: rule 'medfee_sumamt = hifp_pay + hifob_pay + "
                       f"hifmi_pay + maf_pay + psn_part_amt' broken ({_yuan_text(total)} != "
                       f"{_yuan_text(parts)} yuan). Fix: the fund payments and the person's "
                       f"share must add up to the total, to the fen")
    if all(c in fen for c in ("psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay")):
        out_list = fen["fulamt_ownpay_amt"] + fen["overlmt_selfpay"]
        if fen["psn_part_amt"] < out_list:
            out.append(f"psn_part_amt: rule 'in-list self-pay = psn_part_amt - "
                       f"fulamt_ownpay_amt - overlmt_selfpay >= 0' broken "
                       f"({_yuan_text(fen['psn_part_amt'])} < {_yuan_text(out_list)} yuan). "
                       f"Fix: the person's share must include the out-of-list amounts")
    for c in SETTLEMENT_PARTS:
        if c in fen and fen[c] > total:
            out.append(f"{c}: rule 'part of the bill <= medfee_sumamt' broken "
                       f"({_yuan_text(fen[c])} > {_yuan_text(total)} yuan). Fix: {c} is a "
                       f"part of the bill and cannot exceed its total medfee_sumamt; check "
                       f"both amounts")
    if lines_ok and line_sum > total:
        out.append(f"lines: rule 'lines sum to at most medfee_sumamt' broken "
                   f"({_yuan_text(line_sum)} > {_yuan_text(total)} yuan). Fix: the lines "
                   f"are parts of the bill; check their amounts and the total")
    return out
