"""``puhui validate --engine duckdb``: the rules of :mod:`puhui.fund.validate` as SQL.

A second implementation of the same report (:class:`~puhui.fund.validate.Report` of
:class:`~puhui.fund.validate.Problem` s, the same files, columns, rule texts, counts,
rows, examples and order), computed by DuckDB over the Parquet files: each file is
scanned by ``read_parquet`` (its ``file_row_number`` is a problem's row), the rules are
predicates and joins, and only the rows that break a rule come back to Python. DuckDB
streams the files and spills to its ``temp_directory`` beyond ``memory_limit``, so no
table is held in pandas.

What is reused from the current engine rather than written again:

- the file-level checks start from the Parquet schema as :class:`puhui.fund.files.
  ColumnReader` reads it (its column names, the pandas index column left out, and
  each column's Arrow type decides the type rules: a money column of text is
  "money is a number of yuan", as the current engine decides from the pandas type
  the same Arrow type becomes); a missing or unreadable file is the same
  ``InputError`` message (:func:`puhui.fund.files.open_columns`);
- dates stored as text are parsed by :func:`puhui.fund.files.date_days` over the
  column's distinct values;
- the privacy guard (:mod:`puhui.fund.privacy`) runs over the distinct values of each
  text column (and of a numeric column, those of 10 digits or more), streamed out of
  DuckDB in batches; its patterns are not written again here;
- rule texts and fixes (:mod:`puhui.fund.validate`'s names), and the order of a file's
  column problems (``_sort_file_problems``).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError, JobFailed
from puhui.fund import privacy
from puhui.fund.files import _NS_DAYS, MAX_YUAN_READ, date_days, open_columns
from puhui.fund.schema import (
    CURRENT_YEAR,
    EPOCH_MONTH,
    FUND_PAYMENTS,
    PERSONS,
    POLICIES,
    SETTLEMENT_LINES,
    SETTLEMENT_MONEY,
    SETTLEMENT_PARTS,
    SETTLEMENTS,
    TABLES,
    Table,
)
from puhui.fund.validate import (
    EPOCH_FIX,
    EPOCH_RULE,
    MAX_EXAMPLES,
    PART_RULE,
    Problem,
    Report,
    _privacy_problems,
    _sort_file_problems,
    date_range_fix,
    date_range_rule,
    money_range_fix,
    money_range_rule,
)

#: Rows of distinct values handed to the privacy guard at a time.
PRIVACY_BATCH = 200_000
_EPOCH = dt.date(1970, 1, 1)
#: Yuan below which a column's fen are held exactly as doubles, a sum of a few of them
#: and a sum of a settlement's lines too (10^13 yuan is 10^15 fen; 2^53 is 9 x 10^15).
_EXACT_YUAN = 10**13
#: Yuan below which sums of yuan * 100 of whole fen are within 10^-4 of the fen's.
_QUICK_YUAN = 10**9


def duckdb_threads() -> int:
    """DuckDB's threads: the rule the execution seam sizes native pools by (the user's
    OMP/BLAS setting when they gave one, else the cores of the one process DuckDB runs
    in: :func:`puhui.execution.native_threads` of one worker)."""
    from puhui.execution import native_threads, users_threads

    return users_threads() or native_threads(1)


def _q(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _type_class(t) -> str:
    """What the current engine's pandas column of this Arrow type is, for its rules."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        v = t.value_type
        if pa.types.is_decimal(v):
            return "float"
        if pa.types.is_string(v) or pa.types.is_large_string(v):
            return "text"
        return "other"                      # a categorical of numbers: not numeric
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "time"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or \
            getattr(pa.types, "is_string_view", lambda _: False)(t):
        return "text"
    if pa.types.is_null(t):
        return "null"
    return "other"


@dataclass
class _Check:
    """One row rule: a predicate over a file's rows (true: the row breaks it)."""
    column: str
    rule: str
    fix: str
    pred: str
    seq: int = 0


class _File:
    """One fund-data file as DuckDB scans it: its view, its columns' type classes, the
    SQL of each column's values (null, fen, day), and whether the engines can use it."""

    def __init__(self, con, table: Table, reader):
        self.table, self.con = table, con
        self.path = Path(reader.path)
        self.n = reader.n
        self.names = list(reader.names)
        schema = reader._pf.schema_arrow
        self.cls = {n: _type_class(schema.field(n).type) for n in self.names}
        self.view = f"t_{table.name}"
        self.usable = True
        self.mapped: dict[str, str] = {}            # text date columns: their day table
        con.execute(f"CREATE OR REPLACE VIEW raw_{table.name} AS SELECT * FROM read_parquet("
                    f"{_lit(str(self.path))}, file_row_number = true)")
        self._make_view()

    def _make_view(self) -> None:
        joins, cols = [], ["r.*"]
        for i, (name, tab) in enumerate(self.mapped.items()):
            joins.append(f"LEFT JOIN {tab} m{i} ON CAST(r.{_q(name)} AS VARCHAR) = m{i}.v")
            cols.append(f"m{i}.day AS {_q('__day_' + name)}, m{i}.bad AS {_q('__bad_' + name)}")
        self.con.execute(f"CREATE OR REPLACE VIEW {self.view} AS SELECT {', '.join(cols)} "
                         f"FROM raw_{self.table.name} r {' '.join(joins)}")

    # --- the SQL of a column's values ------------------------------------------------
    def null(self, name: str) -> str:
        c = _q(name)
        if self.cls[name] == "float":
            return f"({c} IS NULL OR isnan(CAST({c} AS DOUBLE)))"
        return f"({c} IS NULL)"

    def present(self, name: str) -> str:
        return f"(NOT {self.null(name)})"

    def num(self, name: str) -> str:
        return f"CAST({_q(name)} AS DOUBLE)"

    def fen(self, name: str) -> str:
        """A money column in fen as the engines hold it: ``rint(yuan * 100)``, held at
        +/- 10^17 fen (:data:`puhui.fund.files.MAX_YUAN_READ`)."""
        x = f"round_even({self.num(name)} * 100, 0)"
        if self.within(name, -_EXACT_YUAN, _EXACT_YUAN):
            # whole numbers of fen held exactly in a double, and sums of a few of them:
            # compared as doubles (no clamp nor cast for each of ten million rows)
            return f"({x})"
        edge = f"{MAX_YUAN_READ * 100:.1f}"
        return f"CAST(greatest(least({x}, {edge}), -{edge}) AS BIGINT)"

    def day(self, name: str) -> str:
        """Days since 1970-01-01 (the calendar day of a timestamp, any year)."""
        if name in self.mapped:
            return _q("__day_" + name)
        if self.cls[name] == "time":
            return f"(CAST({_q(name)} AS DATE) - DATE '1970-01-01')"
        return "CAST(NULL AS BIGINT)"

    def engine_day(self, name: str) -> str:
        """:meth:`day` where the engines' ``datetime64[ns]`` holds it, else NULL: a date
        outside is NaT in the current engine's rules across rows, so no rule sees it."""
        d = self.day(name)
        return f"(CASE WHEN {d} BETWEEN {_NS_DAYS[0]} AND {_NS_DAYS[1]} THEN {d} END)"

    def key(self) -> str:
        """The examples' text: the key column (joined with '#' to the second), as the
        current engine shows it; the row number where the file has no key column."""
        parts = []
        for k in self.table.key:
            if k in self.names:
                # a null shows as Python's str() of what pandas holds: NaN in a number
                none = "'nan'" if self.cls[k] in ("int", "float") else "'None'"
                parts.append(f"coalesce(CAST({_q(k)} AS VARCHAR), {none})")
        if not parts or self.table.key[0] not in self.names:
            return "CAST(file_row_number AS VARCHAR)"
        if len(self.table.key) > 1 and len(parts) == len(self.table.key):
            return " || '#' || ".join(parts)
        return parts[0]

    def stats(self) -> dict:
        """Per column: rows not null and, for numbers and dates, the least and greatest
        value (NaN and infinities apart): one scan, so checks that no row can break are
        passed without a scan of their own (as the current engine passes them from the
        least and greatest value)."""
        if hasattr(self, "_stats"):
            return self._stats
        exprs, keys = [], []
        for name in self.names:
            c, cls = _q(name), self.cls[name]
            exprs.append(f"count({c})")
            keys.append((name, "present"))
            if cls in ("int", "float"):
                # NaN sorts above every number in DuckDB, an infinity at the ends: a
                # least or greatest value that is not finite sends the column to its
                # checks row by row
                exprs += [f"min({self.num(name)})", f"max({self.num(name)})"]
                keys += [(name, "min"), (name, "max")]
            elif cls == "time":
                exprs += [f"CAST(min({c}) AS DATE) - DATE '1970-01-01'",
                          f"CAST(max({c}) AS DATE) - DATE '1970-01-01'"]
                keys += [(name, "min"), (name, "max")]
        got = self.con.sql(f"SELECT {', '.join(exprs)} FROM {self.view}").fetchall()[0] \
            if exprs else ()
        self._stats = {}
        for (name, what), v in zip(keys, got):
            self._stats.setdefault(name, {})[what] = v
        for name, st in self._stats.items():
            lo, hi = st.get("min"), st.get("max")
            finite = lo is None or (np.isfinite(lo) and np.isfinite(hi))
            st["inf"] = not finite
            if self.cls[name] == "float" and not finite:     # NaN counts as null
                st["present"] = self.count(self.present(name))
            if self.cls[name] in ("int", "float") and not finite:
                st["min"] = st["max"] = None
        return self._stats

    def within(self, name: str, lo, hi) -> bool:
        """Every present value of a number column finite and within ``lo``..``hi``."""
        st = self.stats()[name]
        if st["inf"]:
            return False
        if st["min"] is None:
            return True
        return (lo is None or st["min"] >= lo) and (hi is None or st["max"] <= hi)

    def count(self, where: str) -> int:
        return int(self.con.sql(f"SELECT count(*) FROM {self.view} WHERE {where}"
                                    ).fetchall()[0][0])

    def map_text_dates(self, name: str) -> None:
        """A date column that is not a Parquet date or timestamp: its distinct values
        read by :func:`puhui.fund.files.date_days` (the current engine's parser)."""
        vals = self.con.sql(f"SELECT DISTINCT CAST({_q(name)} AS VARCHAR) AS v FROM "
                                f"raw_{self.table.name} WHERE {_q(name)} IS NOT NULL"
                                ).df()["v"]
        days, bad = date_days(pd.Series(vals.to_numpy(dtype=object), dtype=object))
        days = np.where(bad, 0, days)
        m = pd.DataFrame({"v": vals.to_numpy(dtype=object), "day": days.astype("int64"),
                          "bad": bad})
        tab = f"map_{self.table.name}_{len(self.mapped)}"
        self.con.register("__m", m)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {tab} AS SELECT v, "
                         f"CASE WHEN bad THEN NULL ELSE day END AS day, bad FROM __m")
        self.con.unregister("__m")
        self.mapped[name] = tab
        self._make_view()


class _Problems:
    """A file's problems, numbered in the order the current engine checks them."""

    def __init__(self, f: _File):
        self.f = f
        self.checks: list[_Check] = []
        self.problems: list[Problem] = []
        self.seq = 0

    def check(self, column: str, rule: str, pred: str, fix: str, passed: bool = False
              ) -> None:
        """A row rule; ``passed``: known from the statistics that no row breaks it."""
        self.seq += 1
        if passed:
            return
        self.checks.append(_Check(column, rule, fix, f"coalesce({pred}, false)", self.seq))

    def run(self) -> None:
        """The rows each check's predicate holds for, in file order: one scan."""
        if not self.checks:
            return
        f = self.f
        preds = ", ".join(f"{c.pred} AS p{i}" for i, c in enumerate(self.checks))
        any_ = " OR ".join(f"p{i}" for i in range(len(self.checks)))
        got = f.con.sql(
            f"SELECT * FROM (SELECT file_row_number AS __rn, {f.key()} AS __k, {preds} "
            f"FROM {f.view}) WHERE {any_} ORDER BY __rn")
        got = got.to_arrow_table() if hasattr(got, "to_arrow_table") else got.arrow()
        rn = got.column("__rn").to_numpy().astype("int64")
        keys = got.column("__k").to_numpy(zero_copy_only=False)
        for i, c in enumerate(self.checks):
            mask = got.column(f"p{i}").to_numpy(zero_copy_only=False).astype(bool)
            self.add(c.column, c.rule, c.fix, rn[mask], keys[mask], c.seq)
        self.checks = []

    def add(self, column, rule, fix, rows, examples, seq=0, rows_in=None) -> None:
        n = len(rows)
        if n:
            self.problems.append(Problem(
                self.f.table.file, column, rule, n, fix,
                [str(k) for k in list(examples)[:MAX_EXAMPLES]],
                rows=np.asarray(rows, dtype="int64"), rows_in=rows_in, seq=seq))


# --- the checks of each column -----------------------------------------------------------

def _column_checks(out: _Problems, f: _File) -> None:
    """Types, nulls, codes and ranges of every column (``_check_column``'s rules), and
    whether the file is usable for the rules across rows."""
    table = f.table
    for col in table.columns:
        if col.name not in f.names and col.required:
            out.problems.append(Problem(table.file, col.name, "column present", 0,
                                        f"add the column '{col.name}' ({col.kind}: "
                                        f"{col.meaning})"))
            f.usable = False
    for name in f.names:
        _privacy_values(out, f, name)
        try:
            col = table.column(name)
        except KeyError:
            continue
        cls, c = f.cls[name], _q(name)
        present = f.present(name)
        nulls = 0
        if not col.nullable:
            nulls = f.n - f.stats()[name]["present"]
            out.check(name, "not null", f.null(name),
                      "fill the missing values or drop those rows; this column may not be empty",
                      passed=not nulls)
            if nulls:
                f.usable = False
        numeric = cls in ("int", "float", "bool")
        if col.kind == "money":
            if not numeric or cls == "bool":
                out.check(name, "money is a number of yuan", present,
                          "write amounts as numbers (yuan with two decimals), not text")
                f.usable = False
                continue
            x = f.num(name)
            out.check(name, "at most two decimals (whole fen)",
                      f"{present} AND NOT isinf({x}) AND "
                      f"abs({x} * 100 - round_even({x} * 100, 0)) > 1e-6",
                      "round amounts to the fen (0.01 yuan)")
            lo, hi = col.bounds()
            out_ = [f"NOT isfinite({x})"]
            if lo is not None:
                out_.append(f"{x} < {lo}")
            if hi is not None:
                out_.append(f"{x} > {hi}")
            out.check(name, money_range_rule(col), f"{present} AND ({' OR '.join(out_)})",
                      money_range_fix(col), passed=f.within(name, lo, hi))
        elif col.kind == "int":
            if not numeric or cls == "bool":
                out.check(name, "whole number", present, "write whole numbers")
                f.usable = False
                continue
            x = f.num(name)
            out.check(name, "whole number", f"{present} AND {x} <> floor({x})",
                      "write whole numbers")
            lo, hi = col.bounds()
            st = f.stats()[name]
            if lo is not None:
                out.check(name, f"value >= {lo}", f"{present} AND {x} < {lo}",
                          f"values must be at least {lo}",
                          passed=not st["inf"] and st["min"] is not None and st["min"] >= lo)
            if hi is not None:
                then = " (the current year)" if col.max_value == CURRENT_YEAR else ""
                out.check(name, f"value <= {hi}", f"{present} AND {x} > {hi}",
                          f"values must be at most {hi}{then}",
                          passed=not st["inf"] and st["min"] is not None and st["max"] <= hi)
        elif col.kind == "bool":
            if cls not in ("bool", "null") and f.count(present):
                out.check(name, "true/false", present, "write a boolean column (true/false)")
                f.usable = False
                continue
        elif col.kind == "date":
            if numeric:
                if f.count(present):
                    out.check(name, "date", present,
                              "write a Parquet date or timestamp at midnight")
                    f.usable = False
                    continue
                # a numeric column of nulls only: the current engine fails here (see
                # the report of session 18); read as no date at all
            elif cls not in ("time", "null"):
                f.map_text_dates(name)
                bad = f"coalesce({_q('__bad_' + name)}, false)"
                if f.count(bad):
                    out.check(name, "date", bad, "write a Parquet date or timestamp at midnight")
                    f.usable = False
                    continue
            lo, hi = col.bounds()
            d = f.day(name)
            st = f.stats()[name]
            first, last = (st.get("min"), st.get("max")) if cls == "time" else (None, None)
            known = first is not None
            out.check(name, date_range_rule(col),
                      f"{present} AND ({d} < {_day(lo)} OR {d} > {_day(hi)})",
                      date_range_fix(col),
                      passed=known and first >= _day(lo) and last <= _day(hi))
            out.check(name, EPOCH_RULE, f"{present} AND {d} BETWEEN {_day(EPOCH_MONTH[0])} "
                      f"AND {_day(EPOCH_MONTH[1])}", EPOCH_FIX,
                      passed=known and (last < _day(EPOCH_MONTH[0]) or
                                        first > _day(EPOCH_MONTH[1])))
        elif col.kind in ("string", "code"):
            if numeric:
                out.check(name, "text", present,
                          "write ids and codes as text (for example \"310\", not 310)")
                if f.count(present):
                    f.usable = False
                continue
            if col.kind == "code":
                codes = ", ".join(_lit(v) for v in col.codes)
                out.check(name, f"code in {{{', '.join(col.codes)}}}",
                          f"{present} AND CAST({c} AS VARCHAR) NOT IN ({codes})",
                          "use the national code; see docs/data-schema.md for the list")


def _privacy_values(out: _Problems, f: _File, name: str) -> None:
    """The privacy guard over a column's distinct values, streamed in batches."""
    import pyarrow as pa

    import pyarrow.compute as pc

    cls, c = f.cls[name], _q(name)
    if cls == "text":
        # the column's values batch by batch: a batch whose bytes the guard clears
        # (privacy.text_is_clean) holds no finding; the distinct values of one it does
        # not clear are scanned
        sql = f"SELECT CAST({c} AS VARCHAR) AS v FROM raw_{f.table.name} WHERE {c} IS NOT NULL"
    elif cls in ("int", "float"):
        x = f"CAST({c} AS DOUBLE)" if cls == "float" else c
        sql = (f"SELECT DISTINCT {x} AS v FROM raw_{f.table.name} WHERE {c} IS NOT NULL "
               f"AND NOT isnan(CAST({c} AS DOUBLE)) AND NOT (abs(CAST({c} AS DOUBLE)) < 1e10)")
    else:
        return                     # dates and booleans hold no personal data to scan
    found: dict[str, set] = {}
    rel = f.con.sql(sql)
    reader = rel.to_arrow_reader(PRIVACY_BATCH) if hasattr(rel, "to_arrow_reader") \
        else rel.record_batch(PRIVACY_BATCH)                # DuckDB before 1.4
    for batch in reader:
        arr = batch.column(0)
        if cls == "text":
            if pa.types.is_large_string(arr.type) or not pa.types.is_string(arr.type):
                arr = arr.cast(pa.string())
            if privacy.text_is_clean(name, arr):
                continue
            arr = pc.unique(arr)
            s = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
        else:
            s = pd.Series(arr.to_numpy(zero_copy_only=False))
            s = s.astype("float64" if cls == "float" else "int64")
        for hit in privacy.scan_values(name, s):
            found.setdefault(hit.what, set()).update(hit.values)
            found.setdefault("__column__" + hit.what, hit.column)
    order = [*privacy._RULE_ORDER, privacy.NOT_A_TOKEN]
    findings = [privacy.PrivacyFinding(found["__column__" + r], r, len(found[r]),
                                       frozenset(found[r])) for r in order if found.get(r)]
    _privacy_problems(_Sink(out), f.table, findings)


class _Sink:
    """Where :func:`puhui.fund.validate._privacy_problems` appends: a file's problems."""

    def __init__(self, out: _Problems):
        self.problems = out.problems


def _check_file(rep: Report, con, table: Table) -> _File | None:
    """A file's column problems, in the current engine's order; the file, or ``None``
    when absent (optional) or not readable."""
    try:
        reader = open_columns(rep.directory, table)
    except InputError as exc:
        rep.problems.append(Problem(table.file, "-", "readable file", 0, str(exc)))
        return None
    if reader is None:
        return None
    rep.rows[table.name] = reader.n
    try:
        f = _File(con, table, reader)
        out = _Problems(f)
        _privacy_problems(_Sink(out), table, privacy.scan_column_names(f.names))
        _column_checks(out, f)
        out.run()
        f.fractional = {q.column for q in out.problems
                        if q.rule == "at most two decimals (whole fen)"}
    except _duck_error() as exc:
        if _out_of_memory(exc):
            raise
        rep.problems.append(Problem(table.file, "-", "readable file", 0,
                                    f"{table_path(rep, table)}: not readable by DuckDB "
                                    f"({type(exc).__name__}: {str(exc)[:200]})"))
        return None
    first = len(rep.problems)
    rep.problems.extend(out.problems)
    _sort_file_problems(rep, first, table)
    return f


def table_path(rep: Report, table: Table) -> Path:
    return Path(rep.directory) / table.file


def _duck_error():
    import duckdb

    return duckdb.Error


def _out_of_memory(exc: Exception) -> bool:
    import duckdb

    return isinstance(exc, duckdb.OutOfMemoryException)


# --- the rules across rows and files -------------------------------------------------------

def _duplicates(out: _Problems, f: _File, cols: list[str]) -> None:
    """Rows repeating an earlier row's ``cols``: the keys that repeat found by a
    grouping, then their rows (few) read in file order."""
    group = ", ".join(_q(c) for c in cols)
    # grouped by a 64-bit hash of the key (8 bytes a row, not the text); the rows whose
    # hash repeats (the repeats, and rarely two keys' hashes) are then told apart by
    # the key itself
    got = f.con.sql(
        f"WITH d AS (SELECT hash({group}) AS h FROM {f.view} GROUP BY h HAVING count(*) > 1) "
        f"SELECT __rn, __k, row_number() OVER (PARTITION BY {group} ORDER BY __rn) AS __i "
        f"FROM (SELECT file_row_number AS __rn, {f.key()} AS __k, {group} FROM {f.view} "
        f"WHERE hash({group}) IN (SELECT h FROM d)) ORDER BY __rn").df()
    dup = got["__i"].to_numpy() > 1
    out.add("+".join(cols), "unique", f"each {'/'.join(cols)} must appear once; remove or "
            "renumber the repeats", got["__rn"].to_numpy()[dup], got["__k"].to_numpy()[dup])


def _first_persons(p: _File) -> str:
    """SQL of each person id's earliest row: psn_no and the engine's death day."""
    return (f"(SELECT psn_no, {p.engine_day('death_date')} AS death FROM {p.view} "
            f"WHERE file_row_number IN (SELECT min(file_row_number) FROM {p.view} "
            f"GROUP BY psn_no))")


def _rules_persons(rep: Report, p: _File) -> None:
    out = _Problems(p)
    _duplicates(out, p, ["psn_no"])
    out.check("retired", "residents are never retired",
              "CAST(insutype AS VARCHAR) = '390' AND retired",
              "set retired=false for residents (insutype 390)")
    year = f"year(DATE '1970-01-01' + CAST({p.engine_day('death_date')} AS INTEGER))"
    out.check("death_date", "death not before birth year",
              f"{year} < trunc({p.num('birth_year')})", "check death_date and birth_year")
    out.run()
    rep.problems.extend(out.problems)


def _rules_policies(rep: Report, pol: _File, p: _File | None) -> None:
    out = _Problems(pol)
    _duplicates(out, pol, ["policy_no"])
    out.check("end_date", "start_date <= end_date",
              f"{pol.engine_day('start_date')} > {pol.engine_day('end_date')}",
              "the cover period must end on or after its start")
    if p is not None:
        out.check("psn_no", "person in persons.parquet",
                  f"psn_no NOT IN (SELECT psn_no FROM {p.view} WHERE psn_no IS NOT NULL)",
                  "every insured person needs a row in persons.parquet")
    out.run()
    got = pol.con.sql(
        f"SELECT file_row_number AS __rn, {pol.key()} AS __k, s, "
        f"lag(psn_no) OVER w = psn_no AND lag(CAST(product_id AS VARCHAR)) OVER w = "
        f"CAST(product_id AS VARCHAR) AND s <= lag(e) OVER w AS bad "
        f"FROM (SELECT *, {pol.engine_day('start_date')} AS s, "
        f"{pol.engine_day('end_date')} AS e FROM {pol.view}) "
        f"WINDOW w AS (ORDER BY psn_no, CAST(product_id AS VARCHAR), s NULLS LAST, "
        f"file_row_number) QUALIFY coalesce(bad, false) "
        f"ORDER BY psn_no, CAST(product_id AS VARCHAR), s NULLS LAST, file_row_number"
    ).df()
    out.add("start_date", "no overlapping policies of one person and product",
            "a person holds one policy of a product at a time; fix the dates or merge them",
            got["__rn"].to_numpy(), got["__k"].to_numpy())
    rep.problems.extend(out.problems)


def _rules_settlements(rep: Report, s: _File, p: _File | None) -> None:
    """The rules of each settlement on its own, in the current engine's order."""
    out = _Problems(s)
    _duplicates(out, s, ["setl_id"])
    dup = out.problems
    out.problems = []
    rev = "(refund_of IS NOT NULL)"
    if p is not None:
        # the view joined to each settlement's person (its earliest row), for two rules
        s.con.execute(
            f"CREATE OR REPLACE VIEW t_settlements_p AS SELECT s.*, fp.psn_no IS NOT NULL "
            f"AS __has_p, fp.death AS __death FROM {s.view} s LEFT JOIN {_first_persons(p)} "
            f"fp ON s.psn_no = fp.psn_no")
        view = s.view
        s.view = "t_settlements_p"
        out.check("psn_no", "person in persons.parquet", "NOT __has_p",
                  "every patient needs a row in persons.parquet")
        out.check("setl_time", "no settlement after the person's death",
                  f"__has_p AND __death IS NOT NULL AND {s.engine_day('setl_time')} > __death",
                  "check setl_time against persons.death_date")
    # Where every amount is a whole number of fen (no "at most two decimals" problem)
    # and far inside what a double holds exactly, the sums and differences of the fen
    # are those of yuan * 100 to within 10^-4: a rule on whole fen is decided by the
    # doubles with half a fen's margin, without rounding each amount in each rule
    # (ten million settlements: several seconds). Otherwise each amount is rounded.
    quick = not (s.fractional & set(SETTLEMENT_MONEY)) and \
        all(s.within(c, -_QUICK_YUAN, _QUICK_YUAN) for c in SETTLEMENT_MONEY)
    fen = {c: f"({s.num(c)} * 100)" if quick else s.fen(c) for c in SETTLEMENT_MONEY}
    half = " 0.5" if quick else " 0"

    def sign(expr: str, op: str) -> str:
        """``expr op 0`` of a sum of fen (``<``, ``>`` or ``<>``)."""
        if op == "<>":
            return f"abs({expr}) >{half}"
        return f"{expr} {op}{' -' if op == '<' and quick else ''}{half}"
    out.check("medfee_sumamt",
              "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt",
              sign(f"{fen['medfee_sumamt']} - "
                   f"({' + '.join(fen[c] for c in (*FUND_PAYMENTS, 'psn_part_amt'))})", "<>"),
              "the fund payments and the person's share must add up to the total, to the fen")
    for c in SETTLEMENT_MONEY:
        st = s.stats()[c]
        # rint(y) < 0 exactly when y < -0.5: no rounding needed, whatever the amounts
        out.check(c, "amount >= 0 (except on reversals)",
                  f"NOT {rev} AND {s.num(c)} * 100 < -0.5",
                  "negative amounts belong only on reversal rows (refund_of set)",
                  passed=not st["inf"] and (st["min"] is None or st["min"] >= 0))
    out.check("psn_part_amt",
              "in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0",
              f"NOT {rev} AND " + sign(f"{fen['psn_part_amt']} - {fen['fulamt_ownpay_amt']} - "
                                       f"{fen['overlmt_selfpay']}", "<"),
              "the person's share must include the out-of-list amounts")
    for c in SETTLEMENT_PARTS:
        out.check(c, PART_RULE, f"NOT {rev} AND " +
                  sign(f"{fen[c]} - {fen['medfee_sumamt']}", ">"),
                  f"{c} is a part of the bill and cannot exceed its total medfee_sumamt; "
                  f"check both amounts")
    out.run()
    if p is not None:
        s.view = view
    rep.problems.extend(dup + out.problems)
    _rules_reversals(rep, s)


def _rules_reversals(rep: Report, s: _File) -> None:
    out = _Problems(s)
    money = ", ".join(f"{s.fen(c)} AS {_q('m_' + c)}" for c in SETTLEMENT_MONEY)
    cols = (f"file_row_number AS rn, CAST(setl_id AS VARCHAR) AS id, psn_no, "
            f"{s.engine_day('setl_time')} AS t, refund_of IS NOT NULL AS is_rev, {money}")
    other_money = ", ".join(f"o.{_q('m_' + c)} AS {_q('o_' + c)}" for c in SETTLEMENT_MONEY)
    got = s.con.sql(
        f"WITH rev AS (SELECT {cols}, CAST(refund_of AS VARCHAR) AS ref FROM {s.view} "
        f"WHERE refund_of IS NOT NULL), "
        f"orig AS (SELECT {cols} FROM {s.view} WHERE CAST(setl_id AS VARCHAR) IN "
        f"(SELECT ref FROM rev) QUALIFY row_number() OVER (PARTITION BY "
        f"CAST(setl_id AS VARCHAR) ORDER BY file_row_number) = 1) "
        f"SELECT rev.*, o.rn AS o_rn, o.psn_no AS o_psn_no, o.t AS o_t, o.is_rev AS o_is_rev, "
        f"{other_money} "
        f"FROM rev LEFT JOIN orig o ON rev.ref = o.id ORDER BY rev.rn").df()
    if not len(got):
        return
    rn, ids = got["rn"].to_numpy().astype("int64"), got["id"].to_numpy(dtype=object)
    known = got["o_rn"].notna().to_numpy() & ~got["o_is_rev"].fillna(True).to_numpy(dtype=bool)
    out.add("refund_of", "reverses an existing settlement",
            "refund_of must name the setl_id of a settlement in this file "
            "(not another reversal)", rn[~known], ids[~known])
    twice = got["ref"].duplicated().to_numpy()
    out.add("refund_of", "a settlement is reversed at most once",
            "remove the repeated reversal", rn[twice], ids[twice])
    k = got[known]
    krn, kid = rn[known], ids[known]
    other = (k["psn_no"].astype(str) != k["o_psn_no"].astype(str)).to_numpy()
    out.add("psn_no", "a reversal belongs to the same person",
            "the reversal's psn_no must match the original's", krn[other], kid[other])
    neg = np.zeros(len(k), dtype=bool)
    for c in SETTLEMENT_MONEY:
        neg |= (k["m_" + c].astype(object) != -k["o_" + c].astype(object)).to_numpy()
    out.add("refund_of", "a reversal carries the negated amounts",
            "write the original's amounts with the opposite sign", krn[neg], kid[neg])
    before = (k["t"] < k["o_t"]).fillna(False).to_numpy(dtype=bool)
    out.add("setl_time", "a reversal is not before the original",
            "date the reversal on or after the original settlement", krn[before], kid[before])
    rep.problems.extend(out.problems)


def _rules_lines(rep: Report, ln: _File, s: _File | None) -> None:
    out = _Problems(ln)
    _duplicates(out, ln, ["setl_id", "line_no"])
    if s is None:
        rep.problems.extend(out.problems)
        return
    # the earliest settlement row of each id that a line names (not of every id)
    first = (f"(SELECT CAST(setl_id AS VARCHAR) AS id, min(file_row_number) AS srn FROM "
             f"{s.view} WHERE CAST(setl_id AS VARCHAR) IN (SELECT CAST(setl_id AS VARCHAR) "
             f"FROM {ln.view}) GROUP BY 1)")
    ln.con.execute(
        f"CREATE OR REPLACE VIEW t_lines_s AS SELECT l.*, f.srn AS __srn FROM {ln.view} l "
        f"LEFT JOIN {first} f ON CAST(l.setl_id AS VARCHAR) = f.id")
    view, ln.view = ln.view, "t_lines_s"
    out.check("setl_id", "settlement in settlements.parquet", "__srn IS NULL",
              "each line must belong to a settlement")
    out.run()
    ln.view = view
    got = ln.con.sql(
        f"WITH sums AS (SELECT __srn, sum({ln.fen('amount')}) AS amount, "
        f"sum({ln.fen('preselfpay_amt')}) AS pre FROM t_lines_s WHERE __srn IS NOT NULL "
        f"GROUP BY __srn) "
        f"SELECT sums.__srn AS rn, CAST(st.setl_id AS VARCHAR) AS id, "
        f"sums.amount <> {s.fen('medfee_sumamt')} AS bad_amount, "
        f"sums.pre <> {s.fen('preselfpay_amt')} AS bad_pre "
        f"FROM sums JOIN {s.view} st ON st.file_row_number = sums.__srn "
        f"WHERE sums.amount <> {s.fen('medfee_sumamt')} OR "
        f"sums.pre <> {s.fen('preselfpay_amt')} ORDER BY rn").df()
    rn, ids = got["rn"].to_numpy().astype("int64"), got["id"].to_numpy(dtype=object)
    a, b = got["bad_amount"].to_numpy(dtype=bool), got["bad_pre"].to_numpy(dtype=bool)
    out.add("amount", "lines sum to the settlement's medfee_sumamt",
            "the lines of a settlement must add up to its total", rn[a], ids[a],
            rows_in=SETTLEMENTS.file)
    out.add("preselfpay_amt", "lines sum to the settlement's preselfpay_amt",
            "class-B up-front shares must add up to the settlement's", rn[b], ids[b],
            rows_in=SETTLEMENTS.file)
    rep.problems.extend(out.problems)


# --- the whole folder ----------------------------------------------------------------------

def connect(memory_limit: str | None = None, threads: int | None = None,
            temp_directory: str | Path | None = None):
    """A DuckDB connection for the fund data: ``threads`` (default
    :func:`duckdb_threads`), ``memory_limit`` (DuckDB's text: "4GB"; default DuckDB's,
    80% of the memory), spilling to ``temp_directory``, dates read in UTC."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads or duckdb_threads())}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_lit(memory_limit)}")
    if temp_directory:
        con.execute(f"SET temp_directory = {_lit(str(temp_directory))}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    return con


def validate_duck(directory: str | Path, memory_limit: str | None = None,
                  threads: int | None = None) -> Report:
    """The report :func:`puhui.fund.validate.validate_dir` gives for ``directory``,
    computed by DuckDB over the files (see the module's text). ``memory_limit``:
    DuckDB's limit ("4GB"); beyond it, it spills to a temporary folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder. Give the folder that holds "
                         f"persons.parquet, policies.parquet and settlements.parquet.")
    rep = Report(directory)
    temp = tempfile.mkdtemp(prefix="puhui-duck-")
    con = connect(memory_limit, threads, temp)
    try:
        return _validate(rep, con)
    except _duck_error() as exc:
        if _out_of_memory(exc):
            raise JobFailed(f"{directory}: DuckDB ran out of memory within its limit "
                            f"({memory_limit or 'its default, 80% of the memory'}) and "
                            f"could not spill further to {temp}: give it more "
                            f"(--memory-limit), more free disk, or run --engine python "
                            f"({str(exc).splitlines()[0][:200]})") from None
        raise JobFailed(f"{directory}: the DuckDB engine failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:300]}); run --engine python, and "
                        f"report it with the command line") from None
    finally:
        con.close()
        shutil.rmtree(temp, ignore_errors=True)


def _validate(rep: Report, con) -> Report:
    files: dict[str, _File | None] = {}
    for t in (PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS):
        files[t.name] = _check_file(rep, con, t)
    p = files[PERSONS.name]
    if p is not None and p.n == 0:
        rep.problems.append(Problem(PERSONS.file, "-", "has rows", 0,
                                    f"{rep.directory / PERSONS.file} holds no person: the data "
                                    f"needs one row per person of its settlements and policies"))
        p = None
    usable = {k: f if f is not None and f.usable else None for k, f in files.items()}
    if p is None:
        usable[PERSONS.name] = None
    p = usable[PERSONS.name]
    s = usable[SETTLEMENTS.name]
    if s is not None:
        _rules_settlements(rep, s, p)
    if p is not None:
        _rules_persons(rep, p)
    if usable[POLICIES.name] is not None:
        _rules_policies(rep, usable[POLICIES.name], p)
    if usable[SETTLEMENT_LINES.name] is not None:
        _rules_lines(rep, usable[SETTLEMENT_LINES.name], s)
    order = {t.file: i for i, t in enumerate(TABLES)}
    rep.problems.sort(key=lambda q: (q.kind != "privacy", order.get(q.file, len(order))))
    if any(q.kind == "privacy" for q in rep.problems):
        for q in rep.problems:
            q.examples = []
    rows = {}
    for t in (PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS):
        if t.name in rep.rows:
            rows[t.name] = rep.rows[t.name]
    rep.rows = rows
    return rep
