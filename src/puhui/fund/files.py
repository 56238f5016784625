"""Reading and writing the fund-data Parquet files (pyarrow).

Every Parquet read and write of puhui goes through here (:func:`read_parquet`,
:func:`parquet_columns`, :class:`ColumnReader`, :class:`ParquetAppender`): files written
by pyarrow, fastparquet, DuckDB or Spark are read alike (timestamps in s, ms, us or ns,
Parquet DATE, dictionary or plain strings, nullable integers, yuan as a double or a
decimal), and the writer gives the same bytes for the same frame.

Files hold yuan with two decimals (as the national platform writes them); once read,
money columns are integer fen. :func:`read_raw` keeps a file as it is;
:func:`open_columns` reads it one column at a time (validation checks and converts each
with :class:`EngineFrame`); :func:`read_table` converts to the engine types and assumes
valid data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS, Table
from puhui.money import fen_to_yuan, yuan_to_fen
from puhui.process_memory import release_free_memory

#: zstd keeps the files small (the shipped sample was written with it by fastparquet).
COMPRESSION = "zstd"
#: Money read from a file is held within +/- this many yuan (10^15; 10^17 fen fits
#: int64). Anything near it is far outside the accepted range and refused by validation
#: (:data:`puhui.fund.schema.MAX_SETTLEMENT_YUAN`); the clip keeps the conversion defined.
MAX_YUAN_READ = 1e15


def table_path(directory: str | Path, table: Table) -> Path:
    return Path(directory) / table.file


def read_raw(directory: str | Path, table: Table, columns: list[str] | None = None
             ) -> pd.DataFrame | None:
    """Read one file as it is. ``None`` when an optional file is absent.

    Raises :class:`InputError` naming the file for a missing required file or one that
    is not readable Parquet (truncated, corrupt, another format).
    """
    path = table_path(directory, table)
    if not path.exists():
        if table.optional:
            return None
        raise InputError(f"{path}: file missing. A fund-data folder needs "
                         f"{', '.join(t.file for t in (PERSONS, POLICIES, SETTLEMENTS))}"
                         f" (and optionally {SETTLEMENT_LINES.file}).")
    reader = ColumnReader(path, _repeated(table))
    names = reader.names if columns is None else [c for c in columns if c in reader.names]
    return reader.frame(names)


def _repeated(table: Table) -> set[str]:
    """A table's text columns whose values repeat (codes, and ``Column.repeated``)."""
    return {c.name for c in table.columns if c.kind == "code" or c.repeated}


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Any Parquet file (a claims file, a payment file) as a frame, columns converted as
    :class:`ColumnReader` does. Raises :class:`InputError` naming the file when it is not
    readable Parquet."""
    reader = ColumnReader(Path(path))
    names = reader.names if columns is None else [c for c in columns if c in reader.names]
    return reader.frame(names)


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file (its index columns left out)."""
    return ColumnReader(Path(path)).names


def _numeric_nulls(s: pd.Series) -> bool:
    """A numeric (not categorical) column holding nulls only.

    >>> _numeric_nulls(pd.Series([np.nan, np.nan])), _numeric_nulls(pd.Series([1.0, None]))
    (True, False)
    """
    return pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype) \
        and not pd.api.types.is_bool_dtype(s) and bool(s.isna().all())


def _as_text(s: pd.Series) -> pd.Series:
    """Text column as Python strings (nulls kept); cheap when it is text already."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        if pd.api.types.infer_dtype(s.cat.categories, skipna=True) == "string":
            return s.astype(object)
        s = s.astype(object)
    if pd.api.types.infer_dtype(s, skipna=True) == "string":
        return s
    return s.where(s.isna(), s.astype(str))


def _as_codes(s: pd.Series) -> pd.Series:
    """A low-cardinality text column as a categorical of strings (one byte a row rather
    than a Python string): nulls kept, the categories those that occur, sorted."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        if pd.api.types.infer_dtype(s.cat.categories, skipna=True) == "string":
            cats = s.cat.categories
            codes = s.cat.codes.to_numpy()
            used = np.bincount(codes[codes >= 0], minlength=len(cats)) > 0
            if used.all() and cats.is_monotonic_increasing:
                return s                  # as read (:func:`_arrow_codes`): nothing to do
            s = s.cat.remove_unused_categories()
            return s.cat.reorder_categories(sorted(s.cat.categories))
        s = s.astype(object)
    return pd.Series(pd.Categorical(_as_text(s)), index=s.index, name=s.name)


#: Days since 1970-01-01 standing for a null date in :func:`date_days`.
NO_DAY = np.iinfo("int64").min
#: The days ``datetime64[ns]`` can hold (1677-09-22 .. 2262-04-11): the engines' dates.
_NS_DAYS = (int(pd.Timestamp.min.ceil("D").value // 86_400_000_000_000),
            int(pd.Timestamp.max.floor("D").value // 86_400_000_000_000))


def _unreadable(path, column: str | None, exc: Exception) -> str:
    """Why a file or a column cannot be read, and what to do. A timestamp outside what
    the reader holds (before 1677 or after 2262, such as an open end 9999-12-31 stored
    in seconds, milliseconds or microseconds) is a date out of range, not a broken file."""
    where = f"{path}: column {column}" if column else f"{path}"
    if type(exc).__name__ in ("OutOfBoundsDatetime", "OverflowError") or \
            "Out of bounds" in str(exc):
        return (f"{where}: a date the reader cannot hold (before 1677 or after 2262, such "
                f"as 9999-12-31 for an open end). Dates must lie from 1950-01-01 to "
                f"2100-12-31: give the real dates (a policy's real last day of cover)")
    if column:
        # the reader's own words may quote the value it failed on (text that is not
        # UTF-8: "Wrapping 110101199003074514\ufffd failed"), and a value is never echoed
        # (docs/privacy.md): its kind of error only
        return (f"{where} is not readable ({type(exc).__name__}; text that is not UTF-8, "
                f"or a broken column). Re-export the file with text as UTF-8, or check "
                f"it was copied whole.")
    return (f"{where}: not a readable Parquet file ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Re-export the file, or check it was copied whole.")


def date_days(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A date column as whole days since 1970-01-01 (``int64``, :data:`NO_DAY` for a
    null), whatever unit the file stores (a Parquet timestamp in ns, us or ms, a
    date, ISO text), and the mask of the non-null values that are not dates.

    Any year is read, 9999 or 3000 too (``datetime64[ns]`` cannot hold them: converting
    such a column raises), so validation can report a date out of range as a problem.

    >>> s = pd.Series(np.array(["2024-03-01T10:00", "9999-12-31", "NaT"], "datetime64[us]"))
    >>> days, bad = date_days(s)
    >>> days[:2].tolist(), bool(days[2] == NO_DAY), bad.tolist()
    ([19783, 2932896], True, [False, False, False])
    >>> date_days(pd.Series(["2024-03-01", "3000-01-01", "soon", None]))[1].tolist()
    [False, False, True, False]
    """
    nulls = s.isna().to_numpy()
    bad = np.zeros(len(s), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)        # the wall-clock day where it was written
        # to days by flooring (a unit change in NumPy floors): any year, no overflow
        days = s.to_numpy().astype("datetime64[D]").astype("int64")
    else:
        days = np.full(len(s), NO_DAY, dtype="int64")
        values = s.to_numpy(dtype=object)
        with warnings.catch_warnings():    # "could not infer format": parsed one by one
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(s, errors="coerce")  # NaT where pandas cannot hold it
        ok = parsed.notna().to_numpy()
        days[ok] = parsed[ok].to_numpy().astype("datetime64[D]").astype("int64")
        for i in np.flatnonzero(~ok & ~nulls):          # out of the ns range, or no date
            try:
                v = values[i]
                v = v.strip().replace(" ", "T", 1) if isinstance(v, str) else v
                days[i] = np.datetime64(v).astype("datetime64[D]").astype("int64")
            except (TypeError, ValueError, OverflowError):
                bad[i] = True
    days[nulls | bad] = NO_DAY
    return days, bad


def _as_date(s: pd.Series) -> pd.Series:
    """Dates as ``datetime64[ns]`` at midnight. A date ``datetime64[ns]`` cannot hold
    (before 1677 or after 2262, such as 9999-12-31) becomes NaT rather than raising:
    validation reports it (:data:`puhui.fund.schema.LAST_DATE`), and the row is refused
    or quarantined."""
    if s.dtype == "datetime64[ns]":                    # the usual case: no copy to days
        return s.dt.normalize()
    days, _ = date_days(s)
    out = np.where((days >= _NS_DAYS[0]) & (days <= _NS_DAYS[1]), days, NO_DAY)
    return pd.Series(out.astype("datetime64[D]").astype("datetime64[ns]"), index=s.index,
                     name=s.name)


def to_engine_types(table: Table, raw: pd.DataFrame) -> pd.DataFrame:
    """Convert a valid raw table to engine types: money to int64 fen, dates to
    ``datetime64[ns]``, ids and text to ``str``, national codes (kind ``code``) and
    repeated text to categoricals of ``str``, booleans to ``bool``."""
    b = EngineFrame(table, list(raw.columns), len(raw), raw.index)
    for name in raw.columns:
        b.add(name, raw[name])
    return b.frame()


class EngineFrame:
    """An engine-typed table built one column at a time (so a file can be read, checked
    and converted column by column, holding one raw column at a time).

    The money columns are written into one preallocated block that the frame adopts
    without a copy (millions of settlements: a consolidation copy would double them).
    Each other column goes in at its position in the file, so the file's order is kept
    (the money columns after it are still at the end) with no reordering copy. With
    ``codes=False`` repeated text (``Column.repeated``, such as psn_no) stays text:
    cheaper to make when the caller replaces it anyway.
    """

    def __init__(self, table: Table, names: list[str], n: int, index=None, codes: bool = True,
                 shared: dict[str, pd.Index] | None = None, block: np.ndarray | None = None):
        self.codes = codes
        #: categories made once for a column of every chunk (settlements' psn_no over the
        #: persons' ids, sorted): a categorical over exactly them is taken as it is
        self.shared = shared or {}
        self.table, self.names = table, list(names)
        self.money = [c.name for c in table.columns if c.kind == "money" and c.name in names]
        shape = (len(self.money), n)
        #: ``block``: the caller's memory for the money columns, when it has one of the
        #: right shape that nothing else holds (a chunk after chunk: pages already
        #: mapped, not 72 MB of fresh pages faulted in for each million rows)
        self.block = block if block is not None and block.shape == shape and \
            block.dtype == np.int64 else np.empty(shape, dtype="int64")
        self.index = index if index is not None else pd.RangeIndex(n)
        self.others: dict[str, pd.Series] = {}

    def add(self, name: str, s: pd.Series, cents: np.ndarray | None = None) -> None:
        """Add a column. ``cents``: for a money column, ``np.rint(yuan * 100)`` when the
        caller computed it already (validation does), taken as the fen (it is changed)."""
        if name in self.money:
            if cents is not None:
                edge = MAX_YUAN_READ * 100
                if len(cents) and not (-edge <= cents.min() and cents.max() <= edge):
                    np.clip(cents, -edge, edge, out=cents)       # as the yuan are below
                self.block[self.money.index(name)] = cents   # = rint(...).astype(int64)
                return
            x = s.to_numpy(dtype="float64")
            if len(x) and not (-MAX_YUAN_READ <= x.min() and x.max() <= MAX_YUAN_READ):
                # beyond int64 fen (or infinite): validation refuses these rows; they are
                # held at the edge rather than cast to an undefined integer
                x = np.clip(x, -MAX_YUAN_READ, MAX_YUAN_READ)
            self.block[self.money.index(name)] = yuan_to_fen(x)
            return
        try:
            col = self.table.column(name)
        except KeyError:
            col = None
        if col is not None and col.kind in ("string", "code") and _numeric_nulls(s):
            # text stored as numbers with no value at all (validation let it pass): nulls
            s = pd.Series(np.full(len(s), None, dtype=object), index=s.index)
        if col is None:
            values = s
        elif name in self.shared and isinstance(s.dtype, pd.CategoricalDtype) and \
                s.cat.categories is self.shared[name]:
            values = s
        elif col.kind == "code" or (col.repeated and self.codes):
            values = _as_codes(s)
        elif col.kind == "string":
            values = _as_text(s)
        elif col.kind == "date":
            values = _as_date(s)
        elif col.kind == "bool":
            values = s.fillna(False).astype(bool)
        elif col.kind == "int" and col.nullable:          # nulls kept: pandas Int64
            x = pd.to_numeric(s, errors="coerce")
            values = x.astype("Int64") if bool((x.dropna() % 1 == 0).all()) else x
        elif col.kind == "int":
            # a value that is not whole (validation reports it) stays as it is: truncated,
            # line_no 2.5 became another line's 2 and a second, false "unique" problem
            # (found by tests/test_duck_validate.py's random corruptions, session 19)
            whole = not pd.api.types.is_float_dtype(s) or bool((s % 1 == 0).all())
            values = s.astype("int64") if whole else s
        else:
            values = s
        self.others[name] = values

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.block.T, columns=self.money, index=self.index, copy=False)
        for pos, name in enumerate(self.names):
            if name in self.others:
                v = self.others.pop(name)
                if isinstance(v, pd.Series):
                    v = v.set_axis(self.index) if len(v) == len(self.index) else v
                df.insert(min(pos, len(df.columns)), name, v)
        for col in self.table.columns:
            if col.name not in df.columns and col.kind == "bool" and not col.required:
                df[col.name] = False
        return df


def _arrow_to_pandas(arr, repeated: bool = False, as_codes: bool = False) -> pd.Series:
    """One Arrow column as the pandas column the engines expect, whoever wrote the file:
    a decimal as float64 yuan, a Parquet DATE or a timestamp of any unit as
    ``datetime64`` of that unit (:func:`date_days` reads any unit, any year), a
    dictionary column as a categorical, text as Python strings (``as_codes``: as a
    categorical of the values that occur, sorted), an integer column with nulls as
    float64 (as pandas gives without nulls: int64)."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_decimal(t):
        arr = arr.cast(pa.float64())
    elif pa.types.is_dictionary(t) and pa.types.is_decimal(t.value_type):
        arr = arr.cast(pa.float64())
    elif pa.types.is_large_string(t) or getattr(pa.types, "is_string_view",
                                                lambda _: False)(t):
        arr = arr.cast(pa.string())
    if as_codes and pa.types.is_string(arr.type):
        return _arrow_codes(arr)
    # pyarrow's deduplication of text builds a hash table that costs several times the
    # strings for a column of distinct ids (500 MB for 1.5 million setl_id): only for
    # text known to repeat (psn_no in settlements, codes), where it saves the objects
    return arr.to_pandas(date_as_object=False, deduplicate_objects=repeated)


def _arrow_codes(arr) -> pd.Series:
    """A text column as a categorical whose categories are the values that occur,
    sorted (what :func:`_as_codes` gives), made by Arrow's hash and sort: no Python
    string is made for a row, only one for each distinct value (at 10 million
    settlements psn_no takes about 2 s this way against 6 s through pandas).

    >>> import pyarrow as pa
    >>> s = _arrow_codes(pa.chunked_array([["b", None, "a"], ["b"]]))
    >>> s.cat.categories.tolist(), s.cat.codes.tolist()
    (['a', 'b'], [1, -1, 0, 1])
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    d = arr.dictionary_encode()
    if isinstance(d, pa.ChunkedArray):
        d = d.unify_dictionaries().combine_chunks() if d.num_chunks else \
            pa.array([], pa.string()).dictionary_encode()
    values = d.dictionary
    order = pc.sort_indices(values).to_numpy()
    rank = np.empty(len(order), dtype="int32")
    rank[order] = np.arange(len(order), dtype="int32")
    idx = pc.fill_null(d.indices, -1).to_numpy(zero_copy_only=False)
    codes = np.where(idx >= 0, rank[np.maximum(idx, 0)] if len(rank) else -1, -1)
    categories = pd.Index(values.to_numpy(zero_copy_only=False)[order], dtype=object)
    return pd.Series(pd.Categorical.from_codes(codes.astype("int32"), categories=categories,
                                               validate=False))


def _pandas_metadata(schema) -> dict:
    import json

    try:
        raw = (schema.metadata or {}).get(b"pandas")
        return json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}


class ColumnReader:
    """A Parquet file read one column at a time, whole or by chunks of row groups (so
    validation holds one raw column of one chunk at a time), with pyarrow.

    A column the writer marked as a pandas categorical (fastparquet and pyarrow both
    record it in the file's pandas metadata) is read as a categorical, as it was
    written; other text is read as Python strings."""

    def __init__(self, path: Path, repeated: set[str] | frozenset = frozenset(),
                 codes: set[str] | frozenset = frozenset()):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        #: text columns whose values repeat (read with shared string objects)
        self.repeated = set(repeated)
        #: text columns read as categoricals of their values, sorted (:func:`_arrow_codes`)
        self.codes = set(codes)
        try:
            # Spark's legacy INT96 timestamps in us: 9999-12-31 reads, as in other units
            opts = {"coerce_int96_timestamp_unit": "us"}
            self._pf = pq.ParquetFile(str(path), **opts)
            md = self._pf.metadata
            self.n = int(md.num_rows)
            self._sizes = [int(md.row_group(i).num_rows) for i in range(md.num_row_groups)]
            schema = self._pf.schema_arrow
            meta = _pandas_metadata(schema)
            index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
            self.names = [n for n in schema.names if n not in index]
            categorical = {c.get("field_name", c.get("name")) for c in
                           meta.get("columns", []) if c.get("pandas_type") == "categorical"}
            # read as written: a categorical (a pyarrow-written file says so in its Arrow
            # schema; a fastparquet-written one only in the pandas metadata)
            dictionary = sorted(c for c in categorical if c in self.names and (
                pa.types.is_string(t := schema.field(c).type) or pa.types.is_large_string(t)))
            if dictionary:
                self._pf = pq.ParquetFile(str(path), read_dictionary=dictionary, **opts)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for broken files
            raise InputError(_unreadable(path, None, exc)) from None

    def __reduce__(self):
        """Pickled as its absolute path (a Dask worker opens the file again, from its
        own working folder; the open file is not sent)."""
        return (type(self), (Path(self.path).resolve(), frozenset(self.repeated),
                             frozenset(self.codes)))

    def _read(self, names: list[str], groups: slice | None):
        if groups is None:
            return self._pf.read(columns=names, use_pandas_metadata=False)
        return self._pf.read_row_groups(list(range(len(self._sizes)))[groups], columns=names,
                                        use_pandas_metadata=False)

    def get(self, name: str, groups: slice | None = None) -> pd.Series:
        """One column, of the row groups ``groups`` (default: all), index from 0."""
        return self.get_with_arrow(name, groups)[0]

    def get_with_arrow(self, name: str, groups: slice | None = None, convert=None):
        """:meth:`get`, and the Arrow column it was made from. ``convert(arrow)``, when
        given, makes the pandas column instead (``None`` from it: the usual way)."""
        try:
            col = self._read([name], groups).column(0)
            s = convert(col) if convert is not None else None
            if s is None:
                s = _arrow_to_pandas(col, name in self.repeated, name in self.codes)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken column is a broken file
            raise InputError(_unreadable(self.path, name, exc)) from None
        s.name = name
        ix = s.index
        if isinstance(ix, pd.RangeIndex) and ix.start == 0 and ix.step == 1:
            return s, col                         # as Arrow makes it: no copy
        return s.reset_index(drop=True), col

    def frame(self, names: list[str]) -> pd.DataFrame:
        """The columns ``names`` of the whole file as a frame (index from 0), read one
        column at a time (the Arrow buffers of one column are held at once, not the
        table's next to its pandas copy)."""
        cols = {name: self.get(name) for name in names}
        return pd.DataFrame(cols, index=pd.RangeIndex(self.n)) if cols else \
            pd.DataFrame(index=pd.RangeIndex(self.n))

    def take(self, name: str, rows) -> np.ndarray:
        """Values of one column at the given rows, reading only their row groups."""
        rows = np.asarray(rows, dtype="int64")
        bounds = np.cumsum([0] + self._sizes)
        group = np.searchsorted(bounds, rows, side="right") - 1
        out = np.empty(len(rows), dtype=object)
        for g in np.unique(group):
            on = group == g
            values = self.get(name, slice(int(g), int(g) + 1)).to_numpy(dtype=object)
            out[on] = values[rows[on] - bounds[g]]
        return out

    def chunks(self, rows: int | None = None) -> list[tuple[int, int, slice | None]]:
        """(first row, rows, row groups) of consecutive chunks of whole row groups of at
        most ``rows`` rows each (a larger row group is a chunk of its own); one chunk
        for the whole file when ``rows`` is None or covers it."""
        if rows is None or rows >= self.n or len(self._sizes) <= 1:
            return [(0, self.n, None)]
        out, start, first, size = [], 0, 0, 0
        for g, m in enumerate(self._sizes):
            if size and size + m > rows:
                out.append((start, size, slice(first, g)))
                start, first, size = start + size, g, 0
            size += m
        out.append((start, size, slice(first, len(self._sizes))))
        return out


def _union_sorted(indexes: list[pd.Index]) -> pd.Index:
    """The sorted union of some indexes (a merge when they are sorted already)."""
    out = indexes[0] if indexes[0].is_monotonic_increasing else indexes[0].sort_values()
    for ix in indexes[1:]:
        out = out.union(ix)
    return out


def join_chunks(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames with the same columns (chunks of one table in engine types) joined into one,
    each chunk released as soon as it is copied, so the join holds the result and one
    chunk rather than two copies of the table. Categoricals take the union of the
    chunks' categories, sorted (as a whole-file read makes them); int64 columns share
    one block that the frame adopts without a copy.

    >>> a = pd.DataFrame({"k": pd.Categorical(["b"]), "x": [1]})
    >>> b = pd.DataFrame({"k": pd.Categorical(["a", "b"]), "x": [2, 3]})
    >>> j = join_chunks([a, b])
    >>> j["k"].tolist(), list(j["k"].cat.categories), j["x"].tolist()
    (['b', 'a', 'b'], ['a', 'b'], [1, 2, 3])
    """
    if not chunks:
        raise ValueError("no chunks to join")
    import pyarrow as pa

    first = chunks[0]
    names = list(first.columns)
    n = sum(len(c) for c in chunks)
    ints = [c for c in names if first[c].dtype == np.int64]
    block = np.empty((len(ints), n), dtype="int64")
    cats = {c: _union_sorted([ch[c].cat.categories for ch in chunks])
            for c in names if isinstance(first[c].dtype, pd.CategoricalDtype)}
    # chunks over one shared, sorted set of categories (settlements' psn_no over the
    # persons' ids): their codes are taken as they are, no lookup of millions of ids
    same = {c for c in cats if cats[c] is first[c].cat.categories
            and all(ch[c].cat.categories is cats[c] for ch in chunks)}
    # text in Arrow buffers stays there; where only some chunks hold it so, as objects
    arrow = {c: [] for c in names if all(is_arrow_text(ch[c].dtype) for ch in chunks)}
    other = {c: np.empty(n, dtype=np.int64 if c in cats else
                         object if is_arrow_text(first[c].dtype) else first[c].dtype)
             for c in names if c not in ints and c not in arrow}
    at = 0
    while chunks:
        ch = chunks.pop(0)
        seg = slice(at, at + len(ch))
        for i, c in enumerate(ints):
            block[i, seg] = ch[c].to_numpy()
        for c, pieces in arrow.items():          # Arrow buffers: kept, not copied
            pieces.append(pa.chunked_array(pa.array(ch[c].array)))
        for c, out in other.items():
            if c in same:
                out[seg] = ch[c].cat.codes.to_numpy()
            elif c in cats:
                recode = cats[c].get_indexer(ch[c].cat.categories)
                codes = ch[c].cat.codes.to_numpy()
                out[seg] = np.where(codes >= 0, recode[np.maximum(codes, 0)]
                                    if len(recode) else -1, -1)
            elif is_arrow_text(ch[c].dtype):
                out[seg] = object_text(ch[c])
            else:
                out[seg] = ch[c].to_numpy()
        at += len(ch)
        del ch
        if len(chunks) % 8 == 1:
            # the joined chunks' pages back to the system as the join goes: glibc keeps
            # freed arrays of a few MB in its heap, so a join of a hundred chunks would
            # otherwise hold the chunks and the table at once (9 GB more at 100 million
            # settlements)
            release_free_memory(collect=False)
    df = pd.DataFrame(block.T, columns=ints, copy=False)
    for pos, c in enumerate(names):
        if c in other:
            v = other.pop(c)
            if c in cats:
                v = pd.Categorical.from_codes(v, categories=cats[c])
            df.insert(pos, c, v)     # names before pos are all in place: the file's order
        elif c in arrow:
            parts = arrow.pop(c)
            joined = pa.chunked_array([a for p in parts for a in p.chunks],
                                      type=parts[0].type) if parts else pa.array([], pa.string())
            df.insert(pos, c, pd.Series(pd.arrays.ArrowStringArray(joined), copy=False))
    return df


def is_arrow_text(dtype) -> bool:
    """A pandas text dtype held in Arrow buffers (``string[pyarrow]``): a few bytes a
    value, where a Python string is some sixty."""
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def object_text(s: pd.Series) -> np.ndarray:
    """Text held in Arrow (:func:`as_arrow_text`) back as an object array of ``str``,
    nulls as ``None`` (as the engines' object columns hold them).

    >>> object_text(as_arrow_text(pd.Series(["S1", None]))).tolist()
    ['S1', None]
    """
    return s.astype(object).where(s.notna(), None).to_numpy(dtype=object)


def take_text(s: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (positions) of a text column, as an object array of ``str`` (nulls
    ``None``), taken from its Arrow chunks by :func:`take_arrow`.

    >>> import pyarrow as pa
    >>> two = pa.chunked_array([pa.array(["a", "b"]), pa.array(["c", None])])
    >>> s = pd.Series(pd.arrays.ArrowStringArray(two))
    >>> take_text(s, np.array([3, 0, 2])).tolist()
    [None, 'a', 'c']
    """
    out = take_arrow(s, rows).to_numpy(zero_copy_only=False)
    return out if out.dtype == object else out.astype(object)


def take_arrow(s: pd.Series, rows: np.ndarray):
    """Rows ``rows`` (positions) of a text column as one Arrow array, taken chunk by
    chunk: pyarrow's take on a column of many chunks joins the whole column first,
    which at a batch's few hundred blocks cost more than the blocks' own work. Text
    held as Python objects is made Arrow first."""
    import pyarrow as pa

    data = s.array._pa_array if is_arrow_text(s.dtype) else pa.chunked_array(
        [pa.array(s.to_numpy(dtype=object), pa.string())])
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows) or not data.num_chunks:
        return pa.array([], type=data.type)
    starts = np.cumsum([0] + [len(c) for c in data.chunks])
    chunk = np.searchsorted(starts, rows, side="right") - 1
    by = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[by], np.arange(data.num_chunks + 1))
    pieces = [data.chunk(k).take(pa.array(rows[by[bounds[k]:bounds[k + 1]]] - starts[k]))
              for k in range(data.num_chunks) if bounds[k + 1] > bounds[k]]
    out = pa.concat_arrays(pieces)
    if np.any(by[1:] < by[:-1]):          # rows not in chunk order: put them back in theirs
        back = np.empty_like(by)
        back[by] = np.arange(len(by))
        out = out.take(pa.array(back))
    return out


def as_arrow_text(s: pd.Series) -> pd.Series:
    """A text column (object of ``str`` and nulls) held in Arrow buffers instead of as
    Python strings (``string[pyarrow]``; nulls become ``pd.NA``): ten million settlement
    ids are about 0.16 GB instead of 0.67 GB.

    >>> as_arrow_text(pd.Series(["S1", None])).tolist()
    ['S1', <NA>]
    """
    if is_arrow_text(s.dtype):
        return s
    return s.astype(pd.StringDtype("pyarrow"))


def open_columns(directory: str | Path, table: Table, codes: bool = True
                 ) -> ColumnReader | None:
    """A file to read one column at a time (:class:`ColumnReader`), or ``None`` when an
    optional file is absent. Raises :class:`InputError` like :func:`read_raw` for a
    missing or unreadable file (also, later, when a column cannot be read). Code
    columns, and with ``codes`` the other text columns whose values repeat, are read as
    categoricals (as :class:`EngineFrame` holds them)."""
    path = table_path(directory, table)
    if not path.exists():
        return read_raw(directory, table)          # None, or the missing-file error
    repeated = _repeated(table)
    as_codes = repeated if codes else {c.name for c in table.columns if c.kind == "code"}
    return ColumnReader(path, repeated, as_codes)


def read_table(directory: str | Path, table: Table, columns: list[str] | None = None
               ) -> pd.DataFrame | None:
    raw = read_raw(directory, table, columns)
    return None if raw is None else to_engine_types(table, raw)


def to_file_types(table: Table, df: pd.DataFrame) -> pd.DataFrame:
    """Engine types to file types: fen to yuan, low-cardinality codes to categoricals."""
    out = {}
    for name in df.columns:
        s = df[name]
        try:
            col = table.column(name)
        except KeyError:
            out[name] = s
            continue
        if col.kind == "money":
            out[name] = fen_to_yuan(s.to_numpy())
        elif col.kind == "code":
            cats = list(col.codes or ())
            out[name] = pd.Categorical(s, categories=cats)
        elif col.kind == "date":
            out[name] = pd.to_datetime(s).astype("datetime64[ns]")
        else:
            out[name] = s.to_numpy()
    return pd.DataFrame(out)


#: Rows per Parquet row group when writing. A larger table is converted and written one
#: row group at a time, so writing costs memory for one group, not for the table.
ROW_GROUP = 1_000_000


def to_arrow(frame: pd.DataFrame):
    """A frame as the Arrow table :class:`ParquetAppender` writes (schema
    :func:`_arrow_schema`, no index, the frame's pandas metadata)."""
    import pyarrow as pa

    frame = frame.reset_index(drop=True)
    return pa.Table.from_pandas(frame, schema=_arrow_schema(frame), preserve_index=False)


def _arrow_schema(frame: pd.DataFrame):
    """The Arrow schema a frame is written with, fixed for every row group: text is
    UTF-8 strings (an all-null first group would otherwise be a null column), a
    categorical is a dictionary of strings with int32 indices (whatever its size), dates
    are timestamps in ns as the engines hold them."""
    import pyarrow as pa

    fields = []
    for name in frame.columns:
        s = frame[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            values = pa.string() if s.cat.categories.dtype == object else \
                pa.from_numpy_dtype(s.cat.categories.dtype)
            t = pa.dictionary(pa.int32(), values)
        elif s.dtype == object:
            t = pa.string()
        else:
            t = pa.Array.from_pandas(s.iloc[:0]).type
        fields.append(pa.field(str(name), t))
    return pa.schema(fields)


class ParquetAppender:
    """A Parquet file written row group by row group with pyarrow (zstd, one fixed
    schema, taken from the first frame). The file is complete once :meth:`close` ran;
    the same frames give the same bytes.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "t.parquet"
    >>> w = ParquetAppender(p)
    >>> w.write(pd.DataFrame({"x": [1, 2], "s": [None, None]}))
    >>> w.write(pd.DataFrame({"x": [3], "s": ["r"]})); w.close()
    >>> read_parquet(p).values.tolist()
    [[1, None], [2, None], [3, 'r']]
    """

    def __init__(self, path: str | Path, final: str | Path | None = None, lean: bool = False):
        self.path = Path(path)
        #: no column statistics, and dictionary encoding only for categoricals: for a
        #: file of distinct ids written once and read whole (the EOB), 20 % faster
        self.lean = lean
        #: where the file goes once complete (``path`` is then a name to write it under)
        self.final = None if final is None else Path(final)
        self._writer = None
        self._schema = None

    def write(self, frame: pd.DataFrame) -> None:
        self.write_arrow(to_arrow(frame))

    def _open(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        opts = {}
        if self.lean:
            opts = {"write_statistics": False, "use_dictionary": [
                f.name for f in self._schema if pa.types.is_dictionary(f.type)]}
        self._writer = pq.ParquetWriter(str(self.path), self._schema, compression=COMPRESSION,
                                        **opts)

    def write_arrow(self, tab) -> None:
        """Arrow rows (:func:`to_arrow`, or a file of the same schema: :meth:`absorb`)
        as one row group; the first table fixes the file's schema and pandas metadata,
        later ones are cast to it."""
        if self._writer is None:
            self._schema = tab.schema            # with the first frame's pandas metadata
            self._open()
        elif not tab.schema.equals(self._schema, check_metadata=True):
            tab = tab.cast(self._schema.remove_metadata()).replace_schema_metadata(
                self._schema.metadata)
        self._writer.write_table(tab, row_group_size=max(tab.num_rows, 1))

    def absorb(self, path: str | Path) -> None:
        """Append the row groups of another file of the same columns (written by this
        class: the same schema). Its groups are decoded and encoded again, one at a time."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        if self._writer is None:
            self._schema = pf.schema_arrow
            self._open()
        for g in range(pf.metadata.num_row_groups):
            self.write_arrow(pf.read_row_group(g))

    @property
    def open(self) -> bool:
        """Whether rows were written and the file is not complete yet."""
        return self._writer is not None

    def close(self) -> None:
        """Complete the file (and move it to ``final``)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self.final is not None:
                self.path.replace(self.final)


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Any frame (a payment file) as one Parquet file, written as :class:`ParquetAppender`
    writes (the file appears complete or not at all)."""
    path = Path(path)
    w = ParquetAppender(path.with_name(path.name + ".writing"), final=path)
    w.write(df)
    w.close()
    return path


#: Files being appended to (:class:`appending`), by path.
_APPENDING: dict[Path, ParquetAppender] | None = None


class appending:  # noqa: N801 - used as a function: ``with appending():``
    """Within ``with appending():``, :func:`write_table` keeps each file's writer open:
    a write with ``append=True`` adds row groups to it, and every file is completed on
    leaving. Outside it, an append reads the existing file's row groups and writes the
    file again (fine for a few appends; :mod:`puhui.synth.second` writes in the block)."""

    def __enter__(self):
        global _APPENDING
        self._outer, _APPENDING = _APPENDING, {}
        return self

    def __exit__(self, *exc):
        global _APPENDING
        mine, _APPENDING = _APPENDING, self._outer
        for w in mine.values():
            w.close()
        return False


def write_table(df: pd.DataFrame, directory: str | Path, table: Table,
                file_types: bool = True, append: bool = False) -> Path:
    """Write a table with pyarrow. The same frame gives the same bytes.

    Tables longer than :data:`ROW_GROUP` rows are written one row group at a time. With
    ``append`` the rows go after those of the existing file (whose columns must be the
    same), as row groups of their own; see :class:`appending`.
    """
    path = table_path(directory, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(df)
    starts = range(0, n, ROW_GROUP) if n > ROW_GROUP else [0]
    key = path.resolve()
    w = _APPENDING.get(key) if append and _APPENDING is not None else None
    if w is None:
        w = ParquetAppender(path.with_name(path.name + ".writing"), final=path)
        if append and path.exists():
            w.absorb(path)
        if _APPENDING is not None:
            old = _APPENDING.pop(key, None)
            if old is not None:
                old.close()
            _APPENDING[key] = w
    for start in starts:
        part = df.iloc[start:start + ROW_GROUP] if n > ROW_GROUP else df
        w.write(to_file_types(table, part) if file_types else part)
    if _APPENDING is None:
        w.close()
    return path


@dataclass
class FundData:
    """The fund-data folder in engine types (money in fen)."""

    persons: pd.DataFrame
    policies: pd.DataFrame
    settlements: pd.DataFrame
    lines: pd.DataFrame | None
    #: the calendar years of the settlements, when ``settlements`` holds only some of
    #: them (pricing keeps only those it can use)
    settlement_years: tuple[int, ...] | None = None


def read_fund(directory: str | Path) -> FundData:
    """Read all four files in engine types. Validate first (:mod:`puhui.fund.validate`)."""
    return FundData(
        persons=read_table(directory, PERSONS),
        policies=read_table(directory, POLICIES),
        settlements=read_table(directory, SETTLEMENTS),
        lines=read_table(directory, SETTLEMENT_LINES),
    )


def write_fund(data: FundData, directory: str | Path) -> list[Path]:
    paths = [write_table(data.persons, directory, PERSONS),
             write_table(data.policies, directory, POLICIES),
             write_table(data.settlements, directory, SETTLEMENTS)]
    if data.lines is not None:
        paths.append(write_table(data.lines, directory, SETTLEMENT_LINES))
    return paths

