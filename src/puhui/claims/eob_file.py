"""``OUT/eob.parquet``: a batch's explanation of benefit, written part by part.

:class:`EobWriter` writes each part the batch emits as a row group (the EOB of a large
batch is tens of millions of rows and is never held whole) and keeps the little the
report needs: the rows that were due, paid or held, and the counts of reasons not paid.
The file is complete once :meth:`EobWriter.close` ran.

When a batch runs its blocks in two processes, each writes its own file and the first
takes the second's row groups (:meth:`EobWriter.absorb`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from puhui.fund.files import ParquetAppender
from puhui.products.model import Product


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
        from puhui.claims.report import not_paid_reasons, report_rows

        frame = part.copy(deep=False)
        for col, categories in self.cats.items():     # the same categories in every row group
            dt = frame[col].dtype
            if not (isinstance(dt, pd.CategoricalDtype) and list(dt.categories) == categories):
                frame[col] = pd.Categorical(frame[col], categories=categories)
        self._out.write(frame)
        # the report needs only these rows and the reason counts, not the whole EOB
        self.report_parts.append(report_rows(frame))
        self.reason_parts.append(not_paid_reasons(frame))

    def close(self) -> None:
        """Complete the file (its footer). Nothing is written after."""
        self._out.close()

    def fork(self, path: str | Path) -> EobWriter:
        """A writer of the same product to another file (for a second process)."""
        return EobWriter(path, self.product)

    def absorb(self, other_path: Path, report_parts, reason_parts) -> None:
        """Take another writer's (closed) file and report inputs into this one."""
        if Path(other_path).exists():
            if self._out.open:
                self._out.absorb(other_path)
                Path(other_path).unlink()
            else:
                shutil.move(str(other_path), self.path)   # complete already
        self.report_parts += report_parts
        self.reason_parts += reason_parts

    def report_inputs(self) -> tuple[pd.DataFrame | None, pd.Series | None]:
        """(rows for the report, counts of reasons not paid over the whole batch)."""
        rows = pd.concat(self.report_parts, ignore_index=True) if self.report_parts else None
        reasons = (pd.concat(self.reason_parts).groupby(level=0).sum()
                   if self.reason_parts else None)
        return rows, reasons
