"""``OUT/eob.parquet``: a batch's explanation of benefit, written part by part.

:class:`EobWriter` writes each part the batch emits as a row group (the EOB of a large
batch is tens of millions of rows and is never held whole) and keeps the little the
report needs: the rows that were due, paid or held, and the counts of reasons not paid.
The file is complete once :meth:`EobWriter.close` ran.

When a batch runs its blocks in two processes, the parts come back to the batch's
process and are written here in block order (one writer, one file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from puhui.fund.files import ParquetAppender
from puhui.products.model import Product


@dataclass
class PreparedPart:
    """An EOB part ready to be written: its rows as Arrow (fixed categories) and the
    little the report needs of it."""

    table: object                   # pyarrow.Table
    report_rows: pd.DataFrame
    reasons: pd.Series


def prepare_part(part: pd.DataFrame, categories: dict[str, list[str]]) -> PreparedPart:
    """What writing ``part`` needs, computed where the part was made (a block worker
    sends this back, not the frame): the EOB's fixed categories in every row group,
    the Arrow rows, the report's rows (due, paid or held) and the counts of reasons not
    paid."""
    from puhui.claims.report import not_paid_reasons, report_rows
    from puhui.fund.files import to_arrow

    frame = part.copy(deep=False)
    for col, cats in categories.items():     # the same categories in every row group
        dt = frame[col].dtype
        if not (isinstance(dt, pd.CategoricalDtype) and list(dt.categories) == cats):
            frame[col] = pd.Categorical(frame[col], categories=cats)
    return PreparedPart(to_arrow(frame), report_rows(frame), not_paid_reasons(frame))


class EobWriter:
    """Write EOB parts to ``path`` (created afresh) with the EOB's fixed categories."""

    def __init__(self, path: str | Path, product: Product):
        from puhui.claims.batch import eob_categories

        self.path = Path(path)
        self.product = product
        self.cats = eob_categories(product)
        self.report_parts: list[pd.DataFrame] = []
        self.reason_parts: list[pd.Series] = []
        if self.path.exists():
            self.path.unlink()
        self._out = ParquetAppender(self.path, lean=True)

    def __call__(self, part: pd.DataFrame) -> None:
        self.write_prepared(prepare_part(part, self.cats))

    def write_prepared(self, prepared: PreparedPart) -> None:
        """A part made ready by :func:`prepare_part` (possibly in another process)."""
        self._out.write_arrow(prepared.table)
        self.report_parts.append(prepared.report_rows)
        self.reason_parts.append(prepared.reasons)

    def close(self) -> None:
        """Complete the file (its footer). Nothing is written after."""
        self._out.close()

    def report_inputs(self) -> tuple[pd.DataFrame | None, pd.Series | None]:
        """(rows for the report, counts of reasons not paid over the whole batch)."""
        rows = pd.concat(self.report_parts, ignore_index=True) if self.report_parts else None
        reasons = (pd.concat(self.reason_parts).groupby(level=0).sum()
                   if self.reason_parts else None)
        return rows, reasons
