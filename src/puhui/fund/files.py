"""Reading and writing the fund-data Parquet files (fastparquet).

Files hold yuan with two decimals (as the national platform writes them); once read,
money columns are integer fen. :func:`read_raw` keeps a file as it is (for validation);
:func:`read_table` also converts to the engine types and assumes valid data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from puhui.errors import InputError
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS, Table
from puhui.money import fen_to_yuan, yuan_to_fen

#: zstd keeps the shipped sample small; fastparquet writes it through cramjam.
COMPRESSION = "ZSTD"


def table_path(directory: str | Path, table: Table) -> Path:
    return Path(directory) / table.file


def read_raw(directory: str | Path, table: Table, columns: list[str] | None = None
             ) -> pd.DataFrame | None:
    """Read one file as it is. ``None`` when an optional file is absent.

    Raises :class:`InputError` naming the file for a missing required file or one that
    is not readable Parquet (truncated, corrupt, another format).
    """
    from fastparquet import ParquetFile

    path = table_path(directory, table)
    if not path.exists():
        if table.optional:
            return None
        raise InputError(f"{path}: file missing. A fund-data folder needs "
                         f"{', '.join(t.file for t in (PERSONS, POLICIES, SETTLEMENTS))}"
                         f" (and optionally {SETTLEMENT_LINES.file}).")
    try:
        pf = ParquetFile(str(path))
        if columns is not None:
            columns = [c for c in columns if c in pf.columns]
        df = pf.to_pandas(columns=columns)
    except Exception as exc:  # fastparquet raises many types for broken files
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}). Re-export it, or check it was copied whole."
                         ) from None
    df = df.reset_index(drop=True)
    return df


def _as_text(s: pd.Series) -> pd.Series:
    """Text column as Python strings (nulls kept); cheap when it is text already."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        if pd.api.types.infer_dtype(s.cat.categories, skipna=True) == "string":
            return s.astype(object)
        s = s.astype(object)
    if pd.api.types.infer_dtype(s, skipna=True) == "string":
        return s
    return s.where(s.isna(), s.astype(str))


def _as_date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.normalize().astype("datetime64[ns]")


def to_engine_types(table: Table, raw: pd.DataFrame) -> pd.DataFrame:
    """Convert a valid raw table to engine types: money to int64 fen, dates to
    ``datetime64[ns]``, codes and ids to ``str``, booleans to ``bool``."""
    cols = {}
    for name in raw.columns:
        s = raw[name]
        try:
            col = table.column(name)
        except KeyError:
            cols[name] = s
            continue
        if col.kind == "money":
            cols[name] = yuan_to_fen(s.to_numpy(dtype="float64"))
        elif col.kind in ("string", "code"):
            cols[name] = _as_text(s)
        elif col.kind == "date":
            cols[name] = _as_date(s)
        elif col.kind == "bool":
            cols[name] = s.fillna(False).astype(bool)
        elif col.kind == "int":
            cols[name] = s.astype("int64")
        else:
            cols[name] = s
    for col in table.columns:
        if col.name not in cols and col.kind == "bool" and not col.required:
            cols[col.name] = False
    return pd.DataFrame(cols, index=raw.index)


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


def write_table(df: pd.DataFrame, directory: str | Path, table: Table,
                file_types: bool = True) -> Path:
    """Write a table with fastparquet. The same frame gives the same bytes."""
    from fastparquet import write

    path = table_path(directory, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = to_file_types(table, df) if file_types else df
    write(str(path), frame.reset_index(drop=True), compression=COMPRESSION,
          write_index=False, stats=False)
    return path


@dataclass
class FundData:
    """The fund-data folder in engine types (money in fen)."""

    persons: pd.DataFrame
    policies: pd.DataFrame
    settlements: pd.DataFrame
    lines: pd.DataFrame | None


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

