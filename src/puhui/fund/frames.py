"""The fund data as DataFrames in yuan: what the Python API (:mod:`puhui.api`) hands over.

A :class:`Fund` holds the four tables with the columns of the files
(``docs/data-schema.md``) and **amounts in yuan**: ``float64`` with two decimals, the
fen the engines computed divided by 100 (the unit of the files and of ``eob.parquet``).
The engines keep integer fen inside (:mod:`puhui.fund.files` converts at the edge); no
frame of the API holds fen. A frame whose money column holds integers is refused
(:func:`check_yuan`): integers are what the engines' fen look like, and a silent
factor of 100 is the error this module exists to prevent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS, TABLES, Table

#: The attribute of a :class:`Fund` that holds each table.
FIELDS = {PERSONS.name: "persons", POLICIES.name: "policies",
          SETTLEMENTS.name: "settlements", SETTLEMENT_LINES.name: "lines"}


@dataclass
class Fund:
    """The four fund-data tables, amounts in yuan (``float64``, two decimals).

    ``directory``: the folder it was read from, or a cut of it (:meth:`people`,
    :meth:`head`) was (``None`` for frames made by hand): its ``SYNTHETIC.json``, the
    mark of ``puhui synth``, goes with the fund (:meth:`write`, the reports' banner).
    """

    persons: pd.DataFrame
    policies: pd.DataFrame
    settlements: pd.DataFrame
    lines: pd.DataFrame | None = None
    directory: Path | None = None

    def __repr__(self) -> str:
        n = {f: (len(getattr(self, f)) if getattr(self, f) is not None else None)
             for f in FIELDS.values()}
        lines = "no lines" if n["lines"] is None else f"{n['lines']:,} lines"
        return (f"Fund({n['persons']:,} persons, {n['policies']:,} policies, "
                f"{n['settlements']:,} settlements, {lines}; amounts in yuan)")

    def table(self, table: Table) -> pd.DataFrame | None:
        return getattr(self, FIELDS[table.name])

    def people(self, psn_no) -> Fund:
        """The same fund restricted to the persons ``psn_no`` (their policies,
        settlements, the reversals among them and their lines); one id may be given
        as text."""
        if isinstance(psn_no, str):
            psn_no = [psn_no]
        keep = set(pd.Index(psn_no).astype(str))
        st = self.settlements[self.settlements["psn_no"].astype(str).isin(keep)]
        lines = self.lines
        if lines is not None:
            lines = lines[lines["setl_id"].astype(str).isin(set(st["setl_id"].astype(str)))]
        return Fund(*(df.reset_index(drop=True) if df is not None else None for df in (
            self.persons[self.persons["psn_no"].astype(str).isin(keep)],
            self.policies[self.policies["psn_no"].astype(str).isin(keep)], st, lines)),
            directory=self.directory)

    def head(self, n: int) -> Fund:
        """The first ``n`` persons (in ``persons`` order) and everything of theirs: a
        small cut for a quick look or a doctest."""
        return self.people(self.persons["psn_no"].iloc[:n])

    def write(self, directory: str | Path) -> Path:
        """The four tables as the Parquet files of a fund-data folder (yuan, as the
        files hold them); ``puhui validate`` and every command read the folder. A
        ``settlement_lines.parquet`` already there goes when the fund has no lines
        (its lines would be read as this fund's); the mark of synthetic data
        (``SYNTHETIC.json``) is copied from the folder the fund was read from."""
        import shutil

        from puhui.fund.files import table_path
        from puhui.reporting import SYNTHETIC_MARKER

        directory = Path(directory)
        for t in TABLES:
            df = self.table(t)
            if df is not None:     # (files are written as given: the guard against fen
                write_frame(df, directory, t, whole_yuan=True)   # as floats is where the API pays)
            elif table_path(directory, t).is_file():
                table_path(directory, t).unlink()
        mark = self.directory / SYNTHETIC_MARKER if self.directory else None
        if mark is not None and mark.is_file() and \
                mark.resolve() != (directory / SYNTHETIC_MARKER).resolve():
            shutil.copyfile(mark, directory / SYNTHETIC_MARKER)
        return directory


def check_yuan(df: pd.DataFrame, table: Table, label: str | None = None) -> None:
    """Refuse a frame whose money columns do not hold yuan as numbers with decimals:
    ``float`` (or ``Decimal`` objects) pass; an integer column is refused as fen (the
    engines' unit) and a column of text or booleans as not an amount.

    >>> check_yuan(pd.DataFrame({"premium": [129.0]}), POLICIES)
    >>> check_yuan(pd.DataFrame({"premium": [12900]}), POLICIES)
    Traceback (most recent call last):
    ...
    puhui.errors.InputError: policies: column premium holds integers (int64): the Python API takes amounts in yuan with two decimals as floats, as the files hold them; integers look like fen, the engines' unit. Give yuan (fen / 100), or cast whole yuan to float (df['premium'].astype(float))
    """
    label = label or table.name
    for c in table.columns:
        if c.kind != "money" or c.name not in df.columns:
            continue
        s = df[c.name]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_complex_dtype(s) or not (
                pd.api.types.is_numeric_dtype(s) or _decimals(s)):
            raise InputError(f"{label}: column {c.name} is not an amount ({s.dtype}): give "
                             f"yuan with two decimals as floats (or Decimal)")
        if pd.api.types.is_integer_dtype(s):
            raise InputError(
                f"{label}: column {c.name} holds integers ({s.dtype}): the Python API takes "
                f"amounts in yuan with two decimals as floats, as the files hold them; "
                f"integers look like fen, the engines' unit. Give yuan (fen / 100), or cast "
                f"whole yuan to float (df[{c.name!r}].astype(float))")


#: :func:`check_not_fen_as_floats`: at least this many settlements, every amount whole,
#: and a median total cost above this many yuan (fen x 1 of a 100-yuan visit reads 10,000)
#: or a largest one above that (fen x 1 of a 20,000-yuan stay)
FEN_AS_FLOATS_MIN_ROWS = 50
FEN_AS_FLOATS_MEDIAN_YUAN = 10_000.0
FEN_AS_FLOATS_MAX_YUAN = 2_000_000.0


def check_not_fen_as_floats(df: pd.DataFrame, label: str = "settlements") -> None:
    """Refuse settlements whose amounts look like fen held as floats (yuan x 100): at
    least :data:`FEN_AS_FLOATS_MIN_ROWS` rows, every amount of every money column a whole
    number, and a median ``medfee_sumamt`` above :data:`FEN_AS_FLOATS_MEDIAN_YUAN` yuan or
    a largest one above :data:`FEN_AS_FLOATS_MAX_YUAN` (review s23: fen of mostly small
    visits, median 90.50, passed and were paid 11.1 million yuan for 3,838.56 due).
    Real settlements in yuan carry fen (the fund's shares are ratios of the cost), and a
    median visit costs hundreds of yuan; without settlement lines to tie them to a total,
    amounts 100 times too large pass every other rule and would be paid 100 times over.
    Data truly in whole yuan (an extract rounded to the yuan) is passed by the caller's
    ``whole_yuan=True`` (the API's), which skips this check.

    >>> st = pd.DataFrame({"medfee_sumamt": [31250.0] * 60, "psn_part_amt": [9375.0] * 60})
    >>> check_not_fen_as_floats(st)
    Traceback (most recent call last):
    ...
    puhui.errors.InputError: settlements: all 60 settlements' amounts are whole numbers, their median total cost (medfee_sumamt) is 31,250.00 yuan and the largest 31,250.00: they look like fen held as floats. Give yuan (fen / 100); if they truly are whole yuan (an extract rounded to the yuan), pass whole_yuan=True
    >>> check_not_fen_as_floats(st / 100)           # 312.50 yuan: passes
    """
    money = [c.name for c in SETTLEMENTS.columns if c.kind == "money" and c.name in df.columns]
    if len(df) < FEN_AS_FLOATS_MIN_ROWS or "medfee_sumamt" not in money:
        return
    try:
        values = df[money].to_numpy(dtype="float64")
    except (TypeError, ValueError):
        return                                  # not numbers: check_yuan has said so
    cost = values[:, money.index("medfee_sumamt")]
    cost = cost[np.isfinite(cost)]
    if not len(cost):
        return                  # no cost to judge (validation refuses the nulls)
    median, largest = float(np.median(cost)), float(cost.max())
    finite = values[np.isfinite(values)]
    if (median > FEN_AS_FLOATS_MEDIAN_YUAN or largest > FEN_AS_FLOATS_MAX_YUAN) and \
            len(finite) and bool(np.all(np.abs(finite - np.round(finite)) < 1e-6)):
        raise InputError(                   # (1e-6: float noise of yuan x 100 is not fen)
            f"{label}: all {len(df):,} settlements' amounts are whole numbers, their "
            f"median total cost (medfee_sumamt) is {median:,.2f} yuan and the largest "
            f"{largest:,.2f}: they look like fen held as floats. Give yuan (fen / 100); if "
            f"they truly are whole yuan (an extract rounded to the yuan), pass "
            f"whole_yuan=True")


def write_frame(df, directory: Path, table: Table, label: str | None = None,
                whole_yuan: bool = False) -> None:
    """A user's frame (yuan) as ``table``'s file in ``directory``, for validation and
    the commands to read: refused unless a DataFrame with yuan in its money columns
    (:func:`check_yuan`); ``Decimal`` amounts as floats, Python dates (pandas reads a
    Parquet date column so) as timestamps; ``whole_yuan``: settlements whose amounts
    are all whole are yuan (:func:`check_not_fen_as_floats` skipped); a column Arrow cannot write as its type is
    a message naming it, not Arrow's error."""
    import pyarrow as pa

    from puhui.fund.files import write_table

    label = label or table.name
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{label}: give a pandas DataFrame, not {type(df).__name__}")
    check_yuan(df, table, label)
    if table is SETTLEMENTS and not whole_yuan:
        check_not_fen_as_floats(df, label)
    df = _plain_types(df.reset_index(drop=True), table)
    try:
        write_table(df, directory, table, file_types=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        col = str(exc).rsplit("column ", 1)[-1].split(" ")[0] if "column " in str(exc) else "?"
        raise InputError(f"{label}: column {col} holds values of mixed or unexpected "
                         f"types; give text for ids and codes, floats (yuan) for amounts, "
                         f"dates or timestamps for dates") from None


def _plain_types(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Object columns of ``Decimal`` amounts as floats, of Python dates or datetimes as
    ``datetime64[ns]``; other columns as they are."""
    import datetime as dt

    kinds = {c.name: c.kind for c in table.columns}
    out = {}
    for name in df.columns:
        s = df[name]
        if s.dtype != object:
            continue
        values = s.dropna()
        if kinds.get(name) == "money" and _decimals(s):
            out[name] = s.astype("float64")
        elif len(values) and all(isinstance(v, dt.date) for v in values.iloc[:1000]):
            out[name] = pd.to_datetime(s, errors="coerce").astype("datetime64[ns]")
    return df.assign(**out) if out else df


def _decimals(s: pd.Series) -> bool:
    """An object column of ``Decimal`` amounts (and nulls)."""
    from decimal import Decimal

    if s.dtype != object:
        return False
    values = s.dropna()
    return all(isinstance(v, Decimal) for v in values.iloc[:1000])


def read_fund_yuan(directory: str | Path) -> Fund:
    """Validate a fund-data folder as ``puhui validate`` does and read it into a
    :class:`Fund` in yuan. Data that breaks a rule raises :class:`InputError` with
    ``puhui validate``'s messages (every problem, then its last line)."""
    from puhui.fund.files import read_fund
    from puhui.fund.validate import CHUNK_ROWS, default_workers, refusal, validate_dir

    directory = Path(directory)
    rep = validate_dir(directory, chunk_rows=CHUNK_ROWS, workers=default_workers())
    if not rep.ok:
        raise InputError(f"{rep.messages()}\n{refusal(directory, rep)}")
    data = read_fund(directory)
    out = {}
    for t in TABLES:
        df = getattr(data, FIELDS[t.name])
        out[FIELDS[t.name]] = None if df is None else _as_yuan(t, df)
    return Fund(**out, directory=directory)


def _as_yuan(table: Table, df: pd.DataFrame) -> pd.DataFrame:
    """An engine-typed table (fen) in the files' types (yuan, codes as categoricals of
    the schema's codes); columns beyond the schema kept as they are."""
    from puhui.fund.files import to_file_types

    out = to_file_types(table, df)
    for c in table.columns:
        if c.kind == "money" and c.name in out.columns:
            out[c.name] = out[c.name].astype("float64")
    return out
