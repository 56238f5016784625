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

import numpy as np
import pandas as pd

from puhui.fund.files import ParquetAppender
from puhui.products.model import Product


@dataclass
class LeanPart:
    """An EOB part whose text id columns are held once per settlement, not once per
    row: ``ids[col] = (values, take)`` gives column ``col`` as ``values[take]`` (the
    EOB repeats each settlement's ids for each of its benefits). ``frame`` holds the
    other columns, in order, and the part's ``attrs``; ``columns`` is the EOB's order.

    :func:`prepare_part` writes it to Arrow without a Python string per row (the ids
    are made into Arrow text once per settlement and repeated by Arrow's ``take``);
    :meth:`to_frame` is the same part as the plain frame it stands for."""

    frame: pd.DataFrame
    ids: dict
    columns: list

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def attrs(self) -> dict:
        return self.frame.attrs

    def to_frame(self) -> pd.DataFrame:
        out = pd.DataFrame({c: np.asarray(self.ids[c][0], dtype=object)[self.ids[c][1]]
                            if c in self.ids else self.frame[c] for c in self.columns},
                           index=self.frame.index)
        out.attrs = dict(self.frame.attrs)
        return out


@dataclass
class UniformPart:
    """EOB rows of settlements nothing is computed for (people without a policy): each
    settlement's rows for every benefit in turn, one status and reason, every amount 0,
    no policy, no entry - most rows of a batch (83 % of the settlements at ten million).
    Held as each settlement's ids once, Arrow text, and nothing per row: the rows are
    made where the part is written (:meth:`arrow`, by Arrow's ``take`` from a
    one-settlement template made the way a :class:`LeanPart` of them is written), so
    a block neither builds a frame of settlements x benefits rows nor sends its rows of
    zeros to the writing process (2 GB through a pipe at ten million settlements).
    :meth:`to_lean` is the same rows as the :class:`LeanPart` built before session 18."""

    setl_id: object            # pyarrow string array, one per settlement
    psn_no: object
    categories: dict           # the EOB's fixed categories (batch.eob_categories)
    status: str
    reason: str
    columns: list              # the EOB's columns, in order

    @property
    def n(self) -> int:
        return len(self.setl_id)

    @property
    def k(self) -> int:
        return len(self.categories["benefit"])

    def __len__(self) -> int:
        return self.n * self.k

    @property
    def attrs(self) -> dict:
        return {"uniform": (self.status, self.n)}   # one status for n settlements (the tally)

    def to_lean(self) -> LeanPart:
        """The rows as a :class:`LeanPart` with the EOB's categoricals."""
        k, n, cats = self.k, self.n, self.categories

        def cat(col, value_codes):
            return pd.Categorical.from_codes(value_codes, categories=cats[col])

        each = np.repeat(np.arange(n), k)
        ids = {"setl_id": (self.setl_id.to_numpy(zero_copy_only=False), each),
               "psn_no": (self.psn_no.to_numpy(zero_copy_only=False), each),
               "policy_no": (np.array([None], dtype=object), np.zeros(n * k, dtype="int64"))}
        index = pd.RangeIndex(n * k)
        cols = {"benefit": cat("benefit", np.tile(np.arange(k), n)),
                **{c: np.zeros(n * k) for c in ("eligible_amt", "deductible_amt", "ratio",
                                                "payout_amt", "target_amt")},
                "status": cat("status", np.full(n * k, cats["status"].index(self.status))),
                "reason": cat("reason", np.full(n * k, cats["reason"].index(self.reason))),
                "entry": cat("entry", np.zeros(n * k, dtype="int64"))}
        frame = pd.concat([pd.Series(v, index=index, name=c, copy=False)
                           for c, v in cols.items()], axis=1, copy=False)
        frame.attrs.update(self.attrs)
        return LeanPart(frame, ids, list(self.columns))

    def to_frame(self) -> pd.DataFrame:
        return self.to_lean().to_frame()

    @property
    def frame(self) -> pd.DataFrame:
        """The columns other than the ids, as a :class:`LeanPart`'s (made on demand)."""
        return self.to_lean().frame

    def first(self) -> "UniformPart":
        """The part of its first settlement (the rows every other settlement repeats)."""
        return UniformPart(self.setl_id.slice(0, 1), self.psn_no.slice(0, 1),
                           self.categories, self.status, self.reason, self.columns)

    def _template(self) -> PreparedPart:
        """One settlement's rows prepared as a :class:`LeanPart`'s are (with ids that
        are replaced), kept for the process's later parts of the same shape."""
        key = (self.status, self.reason, tuple(self.columns),
               tuple((c, tuple(v)) for c, v in self.categories.items()))
        got = _TEMPLATES.get(key)
        if got is None:
            import pyarrow as pa

            one = UniformPart(pa.array(["S"]), pa.array(["P"]), self.categories,
                              self.status, self.reason, self.columns)
            got = _TEMPLATES[key] = prepare_part(one.to_lean(), self.categories)
        return got

    def arrow(self):
        """The rows as the Arrow table :func:`prepare_part` makes of :meth:`to_lean`."""
        import pyarrow as pa

        t = self._template().table
        n, k = self.n, self.k
        per = pa.array(np.tile(np.arange(k, dtype="int64"), n))
        each = pa.array(np.repeat(np.arange(n, dtype="int64"), k))
        arrays = []
        for c in self.columns:
            if c in ("setl_id", "psn_no"):
                arrays.append(getattr(self, c).take(each))
            elif c == "policy_no":
                arrays.append(pa.nulls(n * k, pa.string()))
            else:
                col = t.column(c)
                arrays.append((col.chunk(0) if col.num_chunks == 1 else
                               col.combine_chunks()).take(per))
        # the schema's pandas metadata holds the part's attrs (its n): as _lean_arrow's
        one = self.first().to_lean()
        one.frame.attrs = dict(self.attrs)
        return pa.Table.from_arrays(arrays, schema=_lean_schema(one, one.frame))


#: :meth:`UniformPart._template`'s prepared one-settlement parts, by shape
_TEMPLATES: dict = {}


def as_frame(part) -> pd.DataFrame:
    """A part as a plain frame (a :class:`LeanPart` or :class:`UniformPart` made whole)."""
    return part.to_frame() if isinstance(part, (LeanPart, UniformPart)) else part


@dataclass
class PreparedPart:
    """An EOB part ready to be written: its rows as Arrow (fixed categories) and the
    little the report needs of it."""

    table: object                   # pyarrow.Table, or a UniformPart made into one when written
    report_rows: pd.DataFrame
    reasons: pd.Series


def prepare_part(part: pd.DataFrame, categories: dict[str, list[str]]) -> PreparedPart:
    """What writing ``part`` needs, computed where the part was made (a block worker
    sends this back, not the frame): the EOB's fixed categories in every row group,
    the Arrow rows, the report's rows (due, paid or held) and the counts of reasons not
    paid."""
    from puhui.claims.report import not_paid_reasons, report_rows
    from puhui.fund.files import to_arrow

    if isinstance(part, UniformPart):
        # every settlement's rows are the first's with its own ids: the report's rows
        # and the reasons are the first settlement's (none due: no report row; its
        # reasons n times); the Arrow rows are made where they are written
        one = part._template()
        if part.categories == categories and not len(one.report_rows):
            return PreparedPart(part, one.report_rows, one.reasons * part.n)
        part = part.to_lean()
    lean = isinstance(part, LeanPart)
    frame = (part.frame if lean else part).copy(deep=False)
    for col, cats in categories.items():     # the same categories in every row group
        dt = frame[col].dtype
        if not (isinstance(dt, pd.CategoricalDtype) and list(dt.categories) == cats):
            frame[col] = pd.Categorical(frame[col], categories=cats)
    if not lean:
        return PreparedPart(to_arrow(frame), report_rows(frame), not_paid_reasons(frame))
    # the report's rows name their settlements: found by row position, then named
    at = frame.copy(deep=False)
    at["setl_id"] = np.arange(len(frame))
    rows = report_rows(at)
    values, take = part.ids["setl_id"]
    rows = rows.assign(setl_id=np.asarray(values, dtype=object)[np.asarray(take)[
        rows["setl_id"].to_numpy(dtype="int64")]])
    return PreparedPart(_lean_arrow(part, frame), rows, not_paid_reasons(frame))


def _lean_schema(part: LeanPart, frame: pd.DataFrame):
    """The schema (pandas metadata included) :func:`puhui.fund.files.to_arrow` gives
    ``part.to_frame()`` with ``frame``'s columns and attrs, from its empty shape."""
    from puhui.fund.files import to_arrow

    shape = pd.DataFrame({c: np.empty(0, dtype=object) if c in part.ids else frame[c].iloc[:0]
                          for c in part.columns})
    shape.attrs = frame.attrs
    return to_arrow(shape).schema


def _lean_arrow(part: LeanPart, frame: pd.DataFrame):
    """The Arrow table :func:`puhui.fund.files.to_arrow` makes of ``part.to_frame()``
    (with ``frame``'s categoricals), schema and pandas metadata included: the schema
    from the frame's empty shape, the id columns as Arrow text taken per row."""
    import pyarrow as pa

    schema = _lean_schema(part, frame)
    body = pa.Table.from_pandas(frame, preserve_index=False,      # (the index is not kept)
                                schema=pa.schema([schema.field(c) for c in frame.columns]))
    arrays = []
    for c in part.columns:
        if c in part.ids:
            values, take = part.ids[c]
            text = pa.array(values, type=pa.string(), from_pandas=True)
            if text.null_count == len(text):           # no policy: every row null
                arrays.append(pa.nulls(len(take), pa.string()))
            else:
                arrays.append(text.take(pa.array(np.asarray(take, dtype="int64"))))
        else:
            col = body.column(c)
            arrays.append(col.chunk(0) if col.num_chunks == 1 else col.combine_chunks())
    return pa.Table.from_arrays(arrays, schema=schema)


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
        table = prepared.table
        self._out.write_arrow(table.arrow() if isinstance(table, UniformPart) else table)
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
