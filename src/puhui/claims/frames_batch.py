"""A claims batch from DataFrames in yuan into a ledger: :class:`puhui.ClaimsBatch`.

The frames are written as a fund-data folder in a temporary directory and the batch of
``puhui claims run`` runs on it: :func:`puhui.claims.batch.run_batch`, the command's
own function (not a copy), with the command's EOB writer. So everything the command
guarantees holds here too: a settlement already paid gets no new entry, the same batch
id re-run on the same frames resumes and pays nothing twice, the same batch id with
other frames is refused, bad settlement rows are quarantined with their reason code
while bad policies or persons stop the batch before anything is written.

The frames written are the same bytes for the same frames (``write_table``), so the
batch's data hash (file names and bytes) identifies the frames, not the temporary
folder. It is not the hash of the files the frames were read from: a batch id the
command ran on a folder cannot be resumed from frames (the ledger refuses it as "other
inputs"), and the reverse.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from puhui.errors import InputError
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENTS
from puhui.products.model import Product


@dataclass
class FramesBatchResult:
    """What a batch from frames gives: the EOB (``eob.parquet`` read with pandas, yuan),
    the summary (``summary.json``'s dict) and the report's inputs (rows, reasons)."""

    eob: pd.DataFrame
    summary: dict
    report_rows: pd.DataFrame | None
    reasons: pd.Series | None


def _write_frames(frames: dict, folder: Path, whole_yuan: bool = False) -> None:
    """The frames as a fund-data folder: money columns checked to hold yuan (integers
    are refused as fen); the rules of the data contract are the batch's to apply."""
    from puhui.claims.frames import stand_in_persons
    from puhui.fund.frames import write_frame

    for table in (SETTLEMENTS, POLICIES):
        if not isinstance(frames[table], pd.DataFrame):
            raise InputError(f"{table.name}: give a pandas DataFrame, not "
                             f"{type(frames[table]).__name__}")
    if frames[PERSONS] is None:
        frames = {**frames, PERSONS: stand_in_persons(frames[SETTLEMENTS], frames[POLICIES])}
    for table, df in frames.items():
        if df is not None:
            write_frame(df, folder, table, whole_yuan=whole_yuan)


#: The command's words in the batch's messages and the API's for the same thing.
API_WORDS = (("`puhui validate the frames`", "`puhui validate` on the files"),
             ("leave --period out", "leave period out"),
             ("--period FROM:TO", "period=(FROM, TO)"), ("--period", "period"),
             ("--complete", "complete=True"), ("--batch:", "batch_id:"),
             ("--mode claimed", "mode='claimed'"), ("the claims file", "claims"),
             ("resume it with --as-of ", "resume it with as_of="), ("--as-of", "as_of"))


def _named(text: str, folder: Path) -> str:
    """A message of the batch with the temporary folder named as the frames and the
    command's options as :class:`puhui.ClaimsBatch`'s parameters."""
    text = text.replace(f"{folder}/", "").replace(str(folder), "the frames")
    for cli, api in API_WORDS:
        text = text.replace(cli, api)
    return text


def _period(period) -> tuple[str, str] | None:
    """``period`` as the batch takes it: "FROM:TO" or a pair of dates, checked as
    ``--period`` is (two dates, in order, within the bounds)."""
    from puhui.claims.batch import parse_period

    if period is None:
        return None
    if not isinstance(period, str):
        try:
            first, last = (str(pd.Timestamp(d).date()) for d in period)
        except (TypeError, ValueError):
            raise InputError(f"period {period!r}: give two dates, (FROM, TO) or "
                             f"'FROM:TO', for example ('2025-01-01', '2025-03-31')") from None
        period = f"{first}:{last}"
    try:
        return parse_period(period)
    except InputError as exc:
        raise InputError(_named(str(exc), Path("/nonexistent"))) from None


def batch_frames(product: Product, frames: dict, url: str, batch_id: str,
                 options: dict) -> FramesBatchResult:
    """Run ``puhui claims run``'s batch on ``frames`` ({table: DataFrame or None}, yuan)
    into the ledger at ``url``. ``options``: ``mode``, ``claims``, ``period``
    ("FROM:TO" or a pair of ISO dates), ``complete``, ``as_of`` as the command takes them; one
    worker (the ledger is the same with two: docs/claims.md)."""
    from puhui.claims.batch import run_batch
    from puhui.claims.eob_file import EobWriter

    period = _period(options.get("period"))
    with tempfile.TemporaryDirectory(prefix="puhui-batch-") as tmp:
        folder, eob_path = Path(tmp) / "fund", Path(tmp) / "eob.parquet"
        folder.mkdir()
        _write_frames(frames, folder, bool(options.get("whole_yuan", False)))
        writer = EobWriter(eob_path, product)
        try:
            res = run_batch(product, product.path, folder, url, batch_id,
                            options.get("mode", "claimed"), eob_sink=writer,
                            claims=options.get("claims"), workers=1, period=period,
                            complete=bool(options.get("complete", False)),
                            as_of=options.get("as_of"))
        except InputError as exc:
            raise InputError(_named(str(exc), folder)) from None
        finally:
            writer.close()
        rows, reasons = writer.report_inputs()
        eob = pd.read_parquet(eob_path)
    return FramesBatchResult(eob, res.summary, res.eob if rows is None else rows, reasons)
