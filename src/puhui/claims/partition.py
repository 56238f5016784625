"""A batch's rows by the block of their person: taken from the table in memory
(:class:`Partition`), or written once in block order to an Arrow file
(:class:`Spilled`) so that no process holds the table while the blocks run.

Both give block ``k`` as the same frame: the rows of the table whose person is in
block ``k``, in table order, with the table's row positions as the index, ids as
Python strings (nulls ``None``) and the other columns in their engine types.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.fund.files import is_arrow_text, take_arrow, take_text


class Partition:
    """Rows of a frame by the block of their person; a block's rows are taken only when
    asked for, so the blocks never hold a second copy of the data."""

    def __init__(self, df: pd.DataFrame, block: pd.Series | np.ndarray, n: int,
                 rows: np.ndarray | None = None):
        """``block``: the block of each row of ``df`` (-1 or NaN for none); ``rows``:
        positions of the rows of ``df`` to partition (default all)."""
        rows = np.arange(len(df)) if rows is None else np.asarray(rows, dtype="int64")
        b = np.asarray(block)[rows]
        b = np.where(np.isnan(b), -1, b).astype("int64") if b.dtype.kind == "f" else b
        self.df = df
        # (each working array freed as soon as it is used, the order held as int32:
        # at 100 million rows every int64 array here is 0.8 GB)
        o = np.argsort(b, kind="stable")
        b = b[o]
        order = rows[o]
        del o
        self.order = order.astype(np.int32) if len(df) < 2**31 else order
        del order
        self.bounds = np.searchsorted(b, np.arange(n + 1))

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def rows(self, k: int) -> np.ndarray:
        """The table positions of block ``k``'s rows, in table order."""
        return self.order[self.bounds[k]:self.bounds[k + 1]]

    def __getitem__(self, k: int) -> pd.DataFrame:
        idx = self.rows(k)
        names = list(self.df.columns)
        arrow = [c for c in names if is_arrow_text(self.df[c].dtype)]
        if arrow:
            # a block's ids as Python strings (nulls None), as the code expects, taken
            # chunk by chunk (take_text); the other columns one at a time (an iloc over
            # a list of columns copies every row of them first)
            df = pd.DataFrame({c: take_text(self.df[c], idx) if c in arrow
                               else self.df[c].array.take(idx) for c in names},
                              index=self.df.index[idx], copy=False)
        else:
            df = self.df.iloc[idx]
        return _psn_as_text(df)


def _psn_as_text(df: pd.DataFrame) -> pd.DataFrame:
    """A block's psn_no as text, taken from the categories (the code downstream
    compares and writes text; a categorical's astype(str) is slow)."""
    if "psn_no" in df.columns and isinstance(df["psn_no"].dtype, pd.CategoricalDtype):
        c = df["psn_no"].array
        ids = c.categories.to_numpy(dtype=object)[np.maximum(c.codes, 0)]
        df = df.assign(psn_no=np.where(c.codes >= 0, ids, None))
    return df


class Spilled:
    """A :class:`Partition`'s blocks written once, in block order, one Arrow record
    batch a block, to a file that is opened and unlinked at once: a block is read (by
    position, so processes sharing the open file do not disturb each other) from the
    system's page cache, which may drop the pages and read them again; the file
    vanishes when the last process holding it open ends (a kill included), and a forked
    worker inherits it. Categoricals travel as their codes (their categories stay
    here); text as Arrow strings.

    :func:`spill` makes one, or gives ``None`` where a column cannot travel this way
    (the partition then stays in memory)."""

    def __init__(self, reader, kinds: dict[str, object], index_name):
        self.reader = reader
        self.kinds = kinds          # column -> "arrow" | "objects" | CategoricalDtype | "plain"
        self.index_name = index_name

    def __len__(self) -> int:
        return self.reader.num_record_batches

    def __getitem__(self, k: int) -> pd.DataFrame:
        batch = self.reader.get_batch(k)
        cols = {}
        for c, kind in self.kinds.items():
            a = batch.column(c)
            if isinstance(kind, pd.CategoricalDtype):
                cols[c] = pd.Categorical.from_codes(a.to_numpy(), dtype=kind)
            else:           # text: str objects, nulls None; numbers and times as numpy
                cols[c] = a.to_numpy(zero_copy_only=False)
        index = pd.Index(batch.column("__row").to_numpy(), name=self.index_name)
        return _psn_as_text(pd.DataFrame(cols, index=index, copy=False))


def _kind(s: pd.Series):
    """How column ``s`` travels: Arrow text, text held as Python objects, a
    categorical's codes, or its numpy values; ``None`` when it cannot (other extension
    types)."""
    if is_arrow_text(s.dtype):
        return "arrow"
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.dtype
    if s.dtype.kind in "biufM" and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
        return "plain"
    if s.dtype == object:
        return "objects"        # str and None only, else the spill gives up (_block_batch)
    return None


def _text_array(values: np.ndarray):
    """An object column's values as Arrow text, or ``None`` where they are not all
    ``str`` and ``None``: Arrow's own reading of their types (``bytes`` read as
    ``binary``, NaN as ``double``), not a cast to text, which would take ``bytes`` as
    text and give back ``str`` for them."""
    import pyarrow as pa

    try:
        arr = pa.array(values)
    except (ValueError, TypeError):   # Arrow's invalid and type errors among them
        return None
    if pa.types.is_null(arr.type):    # a block of nulls only
        return arr.cast(pa.string())
    return arr if pa.types.is_string(arr.type) else None


def _block_batch(part: Partition, kinds: dict, k: int):
    """Block ``k`` of ``part`` as an Arrow record batch of the columns' travel forms, or
    ``None`` where an object column holds more than text and nulls."""
    import pyarrow as pa

    idx = part.rows(k)
    arrays, names = [], []
    for c, kind in kinds.items():
        if kind == "arrow":
            arrays.append(take_arrow(part.df[c], idx))
        elif kind == "objects":
            text = _text_array(part.df[c].to_numpy()[idx])
            if text is None:
                return None
            arrays.append(text)
        elif isinstance(kind, pd.CategoricalDtype):
            arrays.append(pa.array(part.df[c].cat.codes.to_numpy()[idx]))
        else:
            arrays.append(pa.array(part.df[c].to_numpy()[idx]))
        names.append(c)
    arrays.append(pa.array(np.asarray(part.df.index[idx], dtype=np.int64)))
    names.append("__row")
    return pa.RecordBatch.from_arrays(arrays, names=names)


def spill(part: Partition, directory: str | Path | None = None) -> Spilled | None:
    """``part``'s blocks in an Arrow file read back by position (:class:`Spilled`) in
    ``directory`` (default the system's temporary folder, ``TMPDIR``), or ``None`` where
    a column cannot travel as Arrow (an object column holding more than text and nulls)
    or the index is not integer; ``OSError`` (a full disk) propagates. The file is
    removed in every case (an open one stays readable until closed)."""
    import pyarrow as pa

    kinds = {c: _kind(part.df[c]) for c in part.df.columns}
    if any(v is None for v in kinds.values()) or part.df.index.dtype.kind not in "iu":
        return None
    fd, name = tempfile.mkstemp(prefix="puhui-blocks-", suffix=".arrow", dir=directory)
    path = Path(name)
    # the file's name goes at once where the system lets it be reopened through its
    # descriptor (Linux's /proc): a batch killed while it writes the blocks (seconds at
    # ten million settlements) leaves nothing behind; elsewhere it goes once written
    through = f"/proc/self/fd/{fd}"
    if os.path.exists(through):
        path.unlink()
        name = through
    try:
        first = _block_batch(part, kinds, 0) if len(part) else None
        if len(part) and first is None:
            return None                   # an object column holding more than text
        schema = first.schema if first is not None else pa.schema([("__row", pa.int64())])
        with pa.OSFile(name, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for k in range(len(part)):
                batch = first if k == 0 else _block_batch(part, kinds, k)
                if batch is None:
                    return None
                try:
                    writer.write_batch(batch)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    return None
                first = batch = None
        reader = pa.ipc.open_file(pa.OSFile(name, "r"))
    finally:
        path.unlink(missing_ok=True)       # the open file (if opened) stays readable
        os.close(fd)
    return Spilled(reader, kinds, part.df.index.name)
