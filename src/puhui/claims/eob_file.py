"""``OUT/eob.parquet``: a batch's explanation of benefit, written part by part.

:class:`EobWriter` appends each part the batch emits as a row group (the EOB of a large
batch is tens of millions of rows and is never held whole) and keeps the little the
report needs: the rows that were due, paid or held, and the counts of reasons not paid.

When a batch runs its blocks in two processes, each writes its own file and
:func:`append_row_groups` moves the second file's row groups into the first: the encoded
column chunks are copied byte for byte and their offsets shifted, so nothing is decoded
or encoded twice.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pandas as pd

from puhui.products.model import Product

#: Columns that may hold nulls (policy_no of people without a policy). Naming the others
#: as never null spares fastparquet a count of nulls over every text column.
NULLABLE = ("policy_no",)


class EobWriter:
    """Append EOB parts to ``path`` (created afresh) with the EOB's fixed categories."""

    def __init__(self, path: str | Path, product: Product):
        from puhui.claims.batch import eob_categories

        self.path = Path(path)
        self.product = product
        self.cats = eob_categories(product)
        self.report_parts: list[pd.DataFrame] = []
        self.reason_parts: list[pd.Series] = []
        if self.path.exists():
            self.path.unlink()

    def __call__(self, part: pd.DataFrame) -> None:
        from fastparquet import write

        from puhui.claims.report import not_paid_reasons, report_rows

        frame = part.copy(deep=False)
        for col, categories in self.cats.items():     # the same categories in every row group
            dt = frame[col].dtype
            if not (isinstance(dt, pd.CategoricalDtype) and list(dt.categories) == categories):
                frame[col] = pd.Categorical(frame[col], categories=categories)
        text = {c: "utf8" for c in frame.columns if frame[c].dtype == object or c in self.cats}
        write(str(self.path), frame, compression="ZSTD", write_index=False, stats=False,
              append=self.path.exists(), object_encoding=text, has_nulls=list(NULLABLE))
        # the report needs only these rows and the reason counts, not the whole EOB
        self.report_parts.append(report_rows(frame))
        self.reason_parts.append(not_paid_reasons(frame))

    def fork(self, path: str | Path) -> EobWriter:
        """A writer of the same product to another file (for a second process)."""
        return EobWriter(path, self.product)

    def absorb(self, other_path: Path, report_parts, reason_parts) -> None:
        """Take another writer's file and report inputs into this one."""
        if Path(other_path).exists():
            if self.path.exists():
                append_row_groups(self.path, other_path)
                Path(other_path).unlink()
            else:
                shutil.move(str(other_path), self.path)
        self.report_parts += report_parts
        self.reason_parts += reason_parts

    def report_inputs(self) -> tuple[pd.DataFrame | None, pd.Series | None]:
        """(rows for the report, counts of reasons not paid over the whole batch)."""
        rows = pd.concat(self.report_parts, ignore_index=True) if self.report_parts else None
        reasons = (pd.concat(self.reason_parts).groupby(level=0).sum()
                   if self.reason_parts else None)
        return rows, reasons


def _footer(path: Path) -> tuple[object, int]:
    """(file metadata, byte position where the footer starts)."""
    from fastparquet import ParquetFile

    with open(path, "rb") as f:
        f.seek(-8, 2)
        size = struct.unpack("<I", f.read(4))[0]
        end = f.seek(0, 2) - 8 - size
    return ParquetFile(str(path)).fmd, end


def _shift(rg, by: int) -> None:
    """Move a row group's column-chunk offsets ``by`` bytes."""
    if getattr(rg, "file_offset", None) is not None:
        rg.file_offset += by
    for cc in rg.columns:
        cc.file_offset += by
        md = cc.meta_data
        md.data_page_offset += by
        for name in ("dictionary_page_offset", "index_page_offset"):
            if getattr(md, name, None) is not None:
                setattr(md, name, getattr(md, name) + by)


def append_row_groups(target: Path, source: Path) -> None:
    """Append the row groups of Parquet file ``source`` to ``target`` (same schema).

    The column chunks are copied as bytes (``source`` from after its leading magic to
    its footer) to where ``target``'s footer was, their offsets are shifted by the
    distance moved, and ``target`` gets one footer listing both files' row groups.

    >>> import tempfile, fastparquet
    >>> d = Path(tempfile.mkdtemp())
    >>> a, b = pd.DataFrame({"x": [1, 2], "s": ["p", "q"]}), pd.DataFrame({"x": [3], "s": ["r"]})
    >>> fastparquet.write(str(d / "a.parquet"), a); fastparquet.write(str(d / "b.parquet"), b)
    >>> append_row_groups(d / "a.parquet", d / "b.parquet")
    >>> fastparquet.ParquetFile(str(d / "a.parquet")).to_pandas().values.tolist()
    [[1, 'p'], [2, 'q'], [3, 'r']]
    """
    from fastparquet.writer import write_thrift

    fmd, end = _footer(target)
    src_fmd, src_end = _footer(source)
    if [s.name for s in fmd.schema] != [s.name for s in src_fmd.schema] or \
            [s.type for s in fmd.schema] != [s.type for s in src_fmd.schema]:
        raise ValueError(f"{source}: not the schema of {target}")
    by = end - 4                       # source's chunks start at byte 4 (after 'PAR1')
    with open(target, "rb+") as out, open(source, "rb") as src:
        out.seek(end)
        src.seek(4)
        remaining = src_end - 4
        while remaining > 0:
            chunk = src.read(min(remaining, 1 << 24))
            out.write(chunk)
            remaining -= len(chunk)
        for rg in src_fmd.row_groups:
            _shift(rg, by)
        fmd.row_groups = list(fmd.row_groups) + list(src_fmd.row_groups)
        fmd.num_rows = sum(rg.num_rows for rg in fmd.row_groups)
        size = write_thrift(out, fmd)
        out.write(struct.pack("<I", size))
        out.write(b"PAR1")
        out.truncate()
