"""``puhui claims run``: a payout batch over fund data, recorded in the ledger.

The rule of every batch: for each settlement and benefit, the *target* payout is what
the product pays when all of the person's effective settlements of the policy year are
adjudicated in time order; the batch records ``target - already paid`` as a signed
entry. Everything follows from it:

- a new settlement is paid; one already paid gets no entry (replays pay nothing twice);
- a reversed settlement's target is 0, so its payout is reversed (the entry carries the
  reversal's ``setl_id``), and later settlements that used the same deductible or limit
  are re-adjudicated and get the signed difference;
- the work is done in blocks of people, each block one transaction: a batch killed at any
  point and re-run (same batch id) ends with the ledger of an uninterrupted run.

Bad rows of the settlements file are quarantined with a reason code (from the
validation rules) and the batch goes on; problems in other files stop it (exit 2)
before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from puhui.benefits.calculator import adjudicate, renewals
from puhui.benefits.kept import kept_by_policy
from puhui.benefits.quantities import LineMatcher
from puhui.claims import ledger
from puhui.claims.eob_file import LeanPart, UniformPart, as_frame
from puhui.claims.flags import (
    positions_in,
    first_flags,
    flag_settlements,
    line_flags,
    person_flags,
)
from puhui.digests import sha256_files
from puhui.errors import InputError, JobFailed
from puhui.execution import Execution, map_blocks
from puhui.fund.files import FundData, join_chunks
from puhui.fund.schema import SETTLEMENTS
from puhui.fund.validate import CHUNK_ROWS, default_workers, validate_dir
from puhui.fund.files import as_arrow_text, is_arrow_text
from puhui.process_memory import release_free_memory
from puhui.claims.partition import Partition as _Partition
from puhui.products.model import Product

BLOCK_PERSONS = 20_000
#: Settlement columns a batch reads once validation and the flags are done: the
#: calculator's (benefits.calculator, benefits.quantities) and the EOB's.
BATCH_COLUMNS = ("setl_id", "psn_no", "setl_time", "med_type", "hosp_lv", "insutype",
                 "psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay", "refund_of")
#: ... and those the fraud and quality flags read besides.
FLAG_COLUMNS = ("fixmedins_code", "medfee_sumamt", "dise_code")
#: Quarantine reason codes by validation rule (stable; see docs/claims.md).
QUARANTINE = {
    "medfee_sumamt = hifp_pay": "Q_IDENTITY",
    "amount >= 0": "Q_NEGATIVE_AMOUNT",
    "in-list self-pay": "Q_INLIST_NEGATIVE",
    "person in persons.parquet": "Q_UNKNOWN_PERSON",
    "unique": "Q_DUPLICATE_ID",
    "reverses an existing settlement": "Q_UNKNOWN_REVERSAL",
    "reversed at most once": "Q_REPEATED_REVERSAL",
    "a reversal": "Q_BAD_REVERSAL",
    "no settlement after the person's death": "Q_AFTER_DEATH",
    "lines sum to": "Q_LINES_MISMATCH",
    "amount within": "Q_OUT_OF_RANGE",
    "date within": "Q_DATE_OUT_OF_RANGE",
    "date plausible": "Q_DATE_OUT_OF_RANGE",        # January 1970: a wrong unit
    "part of the bill": "Q_PART_ABOVE_TOTAL",
}


def product_hash(product: Product) -> str:
    return hashlib.sha256(json.dumps(product.raw, sort_keys=True, default=str).encode()).hexdigest()


def _batch_columns(start: int, st: pd.DataFrame, who: np.ndarray | None,
                   has_lines: np.ndarray):
    """What the batch keeps of a chunk of settlements, once validation has checked it:
    the columns it reads, and each settlement's row in persons. The ids (setl_id,
    psn_no) are held in Arrow buffers, a few bytes a row, not as Python strings (about
    60 bytes each) or a chunk's own categories (a sink gets the ids that occur in its
    chunk: up to a million, 50 MB a chunk, and joining a hundred such chunks looked
    millions of ids up again): at 100 million settlements a batch was stopped at 20 GB
    while it still held its chunks."""
    kept = st[[c for c in st.columns if c in (*BATCH_COLUMNS, *FLAG_COLUMNS)]]
    return kept.assign(**{c: _arrow_ids(kept[c]) for c in ("setl_id", "psn_no")
                          if c in kept.columns}), who


#: validation may hand this sink setl_id as Arrow text (no Python string a row)
_batch_columns.arrow_text = True


def _arrow_ids(s: pd.Series) -> pd.Series:
    """An id column in Arrow buffers (``string[pyarrow]``); a categorical's values are
    decoded from its categories in Arrow, no Python string made a row. Columns that are
    not all text as they are."""
    import pyarrow as pa

    if isinstance(s.dtype, pd.CategoricalDtype) and \
            s.cat.categories.inferred_type in ("string", "empty"):
        arr = pa.array(s.array).dictionary_decode().cast(pa.large_string())
        return pd.Series(pd.arrays.ArrowStringArray(arr), index=s.index, copy=False)
    if isinstance(s.dtype, pd.ArrowDtype) and (pa.types.is_string(s.dtype.pyarrow_dtype) or
                                              pa.types.is_large_string(s.dtype.pyarrow_dtype)):
        arr = pa.array(s.array).cast(pa.large_string())      # as validation read it
        return pd.Series(pd.arrays.ArrowStringArray(arr), index=s.index, copy=False)
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return as_arrow_text(s)
    return s                      # numbers or mixed types: as validation read them


def _quarantine(data_dir: Path) -> tuple[dict[int, str], FundData, np.ndarray]:
    """Validate (settlements by chunks, in two processes on two cores); return settlement
    rows to quarantine (row -> reason), the data and each settlement's row in persons
    (-1 for none). Raise for anything that stops the batch."""
    rep = validate_dir(data_dir, keep=True, chunk_rows=CHUNK_ROWS,
                       settlements_sink=_batch_columns, workers=default_workers())
    stop = [p for p in rep.problems
            if p.kind == "privacy" or p.rows_file != SETTLEMENTS.file or p.rows is None]
    if stop:
        msgs = "\n".join(p.message() for p in stop)
        raise InputError(f"{data_dir}: the batch cannot run; nothing was written:\n{msgs}")
    out: dict[int, str] = {}
    for p in rep.problems:  # all remaining problems are settlement rows
        code = next((c for k, c in QUARANTINE.items() if k in p.rule), "Q_INVALID")
        for r in p.rows:
            out.setdefault(int(r), code)
    t = rep.typed
    if not rep.settlement_values or any(v[1] is None for v in rep.settlement_values):
        raise InputError(f"{data_dir}: the settlements or persons cannot be read into the "
                         f"batch; nothing was written:\n{rep.messages()}")
    chunks, who = rep.take_settlement_values()
    st = join_chunks(list(chunks))
    if len(st) and len(out) == len(st):
        # nothing left to adjudicate: a wrong file (a refund_of of "" on every row, a
        # column shifted), not a month whose claims all failed; a batch that "paid 0.00"
        # with exit 0 would read as done
        raise InputError(f"{data_dir}: every one of the {len(st):,} settlements breaks a rule "
                         f"of the data contract, so the batch would pay nothing; nothing was "
                         f"written. Fix the data (`puhui validate {data_dir}` lists the "
                         f"same):\n{rep.messages()}")
    return out, FundData(t["persons"], t["policies"], st, t["settlement_lines"]), \
        np.concatenate(who)


@dataclass(frozen=True)
class Scope:
    """The period a batch's data covers (ISO dates), and whether the user stated it."""

    dates: tuple[str, str]
    stated: bool


def batch_scope(setl_time: pd.Series, period: tuple[str, str] | None,
                data_dir: Path) -> Scope:
    """``period`` where the user states it (every settlement must fall inside), else the
    data's first to last settlement date."""
    days = setl_time.dropna()
    if period is None:
        if not len(days):
            raise InputError(f"{data_dir}/settlements.parquet: no dated settlement; "
                             f"nothing for a batch to adjudicate")
        return Scope((str(days.min().date()), str(days.max().date())), False)
    first, last = period
    outside = int(((days < pd.Timestamp(first)) | (days >= pd.Timestamp(last)
                                                   + pd.Timedelta(days=1))).sum())
    if outside:
        raise InputError(f"{data_dir}/settlements.parquet: {outside:,} settlements fall "
                         f"outside --period {first}:{last}; state the period the data "
                         f"covers, or leave --period out to take it from the data")
    return Scope((first, last), True)


def batch_as_of(as_of: str | None, setl_time: pd.Series, scope: Scope,
                data_dir: Path) -> str:
    """The business date a batch is effective for (ISO): ``as_of`` where given, else the
    last day of its scope (the data's last settlement date, or the end of the stated
    ``--period``: the day the extract is complete to). A batch cannot be effective
    before a settlement it pays: an as-of date before the data's last settlement date
    is refused."""
    import datetime as dt

    from puhui.fund.schema import FIRST_DATE, LAST_DATE

    if as_of is None:
        return scope.dates[1]
    try:
        day = dt.date.fromisoformat(str(as_of).strip())
    except ValueError:
        raise InputError(f"--as-of {as_of!r}: not a date; give YYYY-MM-DD") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise InputError(f"--as-of {as_of!r}: dates lie from {FIRST_DATE} to {LAST_DATE}")
    later = int((setl_time.dropna() >= pd.Timestamp(day) + pd.Timedelta(days=1)).sum())
    if later:
        raise InputError(f"{data_dir}/settlements.parquet: {later:,} settlements are dated "
                         f"after --as-of {day}; a batch is effective on or after the last "
                         f"settlement it pays (leave --as-of out to take that day)")
    return day.isoformat()


def _kept_as_of(con, batch_id: str, as_of: str, stated: bool) -> str:
    """The business date of a batch just started (inside its unit of work): a resumed
    batch keeps its first run's (a stated other ``--as-of`` is refused)."""
    kept = ledger.keep_business_date(con, batch_id, as_of)
    if stated and kept != as_of:
        raise InputError(f"batch {batch_id!r} ran before as of {kept}, not {as_of}; "
                         f"resume it with --as-of {kept} (or without --as-of), or give a "
                         f"new batch id")
    return kept


def check_batch_id(batch_id: str) -> None:
    """A batch id is 1 to 100 printable characters without spaces, and not the standing
    batch of direct payouts."""
    if not isinstance(batch_id, str) or not 0 < len(batch_id) <= 100 or \
            any(not ch.isprintable() or ch.isspace() for ch in batch_id):
        raise InputError("--batch: give 1 to 100 printable characters without spaces "
                         "(for example 2025-06-claimed)")
    from puhui.fund.privacy import check_token

    if check_token(batch_id, "batch"):
        raise InputError("--batch: the id looks like personal data (not shown); give a "
                         "batch name such as 2025-06-claimed")
    if ledger.is_direct_batch(batch_id):
        raise InputError(f"--batch {batch_id!r} is (or is named as) a ledger's standing "
                         f"batch of direct payouts; give another id")


def parse_period(text: str) -> tuple[str, str]:
    """``FROM:TO`` (ISO dates, inclusive) as two ISO dates, or InputError.

    >>> parse_period("2025-01-01:2025-03-31")
    ('2025-01-01', '2025-03-31')
    """
    import datetime as dt

    parts = str(text).split(":")
    try:
        first, last = (dt.date.fromisoformat(p.strip()) for p in parts)
    except ValueError:
        raise InputError(f"--period {text!r}: give FROM:TO as two dates, for example "
                         f"2025-01-01:2025-03-31") from None
    if last < first:
        raise InputError(f"--period {text!r}: the period ends before it starts")
    from puhui.fund.schema import FIRST_DATE, LAST_DATE

    if first < FIRST_DATE or last > LAST_DATE:
        raise InputError(f"--period {text!r}: dates lie from {FIRST_DATE} to {LAST_DATE}")
    return str(first), str(last)


def refuse_near_product_ids(product: Product, policies: pd.DataFrame, where: str) -> None:
    """Policies whose ``product_id`` is the product's id but for spaces or case
    ("huhuibao-2025 ", "HUHUIBAO-2025": a spreadsheet's export) would be taken for
    another product's and their holders denied, silently: refused, with the count
    (:func:`puhui.products.catalog.refuse_near_ids`, which pricing uses too)."""
    from puhui.products.catalog import refuse_near_ids

    refuse_near_ids(policies["product_id"], [product.id], where)


def _refuse_no_policy(product: Product, policies: pd.DataFrame, data_dir: Path) -> None:
    """A product none of the data's policies are for would deny every settlement: that
    is a wrong product or wrong data, said as such (exit 2); so would policies naming it
    with other spaces or case, for their holders."""
    refuse_near_product_ids(product, policies, f"{data_dir}/policies.parquet")
    if (policies["product_id"].astype(str) == product.id).any():
        return
    have = policies.groupby(policies["product_id"].astype(str))["start_date"].agg(["min", "max"])
    listed = "; ".join(f"{pid} ({r['min'].year}-{r['max'].year})" for pid, r in
                       have.head(10).iterrows()) or "none"
    raise InputError(f"{data_dir}/policies.parquet: no policy is for product {product.id} "
                     f"(policy period {product.start} to {product.end}); the data's policies "
                     f"are for: {listed}. Give the product these policies are for, or the "
                     f"data of this product's year")


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _text_hash(values) -> np.ndarray:
    """64-bit hashes of text values (a categorical: its categories hashed once)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        c = values.array
        cats = pd.util.hash_array(c.categories.astype(str).to_numpy(dtype=object))
        return cats[np.maximum(c.codes, 0)]
    arr = np.asarray(values, dtype=object)
    if len(arr) and not all(type(v) is str for v in arr[:1000]):
        arr = pd.Series(arr).astype(str).to_numpy(dtype=object)
    return pd.util.hash_array(arr)


def _pair_hash(ids, psns) -> np.ndarray:
    """One 64-bit hash per (settlement id, person): a settlement is "in the data" for a
    person only when the data holds it under that person (an id the data gives to
    somebody else is not this person's settlement)."""
    return _text_hash(ids) ^ (_text_hash(psns) * _MIX)


def _id_keys(ids: pd.Series, psns: pd.Series) -> np.ndarray:
    """Every (settlement id, person) of the data as a sorted 64-bit hash (membership
    tests without holding millions of strings; a collision, about one in 10^19 per pair,
    would only leave a payment where it is)."""
    step = 1_000_000          # hash_array copies every string it is given: a million at a time

    def part(x, i):
        return x.iloc[i:i + step] if isinstance(x, pd.Series) else x[i:i + step].astype(object)

    parts = [_pair_hash(part(ids, i), part(psns, i)) for i in range(0, len(ids), step)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, "uint64")


class _LazyKeys:
    """The data's keys (:func:`_id_keys`), made when first asked for: a batch into a
    ledger that holds nothing of this data's people never needs them (seconds at ten
    million settlements). ``rebind`` points at the columns where they are held now."""

    def __init__(self, ids, psns):
        self.ids, self.psns, self.keys = ids, psns, None

    def rebind(self, ids, psns) -> None:
        if self.keys is None:
            self.ids, self.psns = ids, psns

    def get(self) -> np.ndarray:
        if self.keys is None:
            self.keys = _id_keys(self.ids, self.psns)
            self.ids = self.psns = None
        return self.keys


def _in_keys(keys: "_LazyKeys | np.ndarray | None", ids, psns) -> np.ndarray:
    """Whether each (id, person) is one of ``keys`` (:func:`_id_keys`)."""
    n = len(ids)
    if keys is None or not n:
        return np.zeros(n, bool)
    keys = keys.get() if isinstance(keys, _LazyKeys) else keys
    if not len(keys):
        return np.zeros(n, bool)
    h = _pair_hash(pd.Series(ids).astype(str), pd.Series(psns).astype(str))
    pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
    return keys[pos] == h


def reversal_map(st: pd.DataFrame, usable: np.ndarray) -> dict:
    """Original ``setl_id`` -> the ``setl_id`` of the reversal that undoes it, for the
    reversals among the ``usable`` rows (not quarantined). A batch adjudicates neither a
    reversal nor the original it undoes (the pair's net effect is nil); the Python API's
    :func:`puhui.claims.frames.adjudicate_frames` drops the same pairs.

    >>> st = pd.DataFrame({"setl_id": ["a", "b", "r"], "refund_of": [None, None, "a"]})
    >>> reversal_map(st, np.array([True, True, True]))
    {'a': 'r'}
    """
    revs = st[st["refund_of"].notna().to_numpy() & usable]
    return dict(zip(revs["refund_of"], revs["setl_id"]))


def lines_missing_warning(product: Product, has_lines: bool, api: bool = False) -> str | None:
    """What a batch (or ``puhui.adjudicate``) says when the data holds no settlement
    lines and the product has benefits that read them: those benefits are decided
    without lines and pay nothing now (their reason reads LINES_NOT_GIVEN), which must not
    pass unseen. The lines file is optional in the data contract, so this is a warning
    (in summary.json's ``warnings``, on stderr), not a refusal. None otherwise.
    ``api``: worded for ``puhui.adjudicate`` (its remedy: ``lines=``)."""
    wanted = [b.id for b in product.benefits if b.lines]
    if has_lines or not wanted:
        return None
    what, where, remedy = (("no", "here", "pass lines= to pay them") if api else
                           ("the data holds no", "in this batch",
                            "a later batch whose data holds the lines pays what is due "
                            "(the settlements the ledger stored with lines are decided "
                            "with those, as before)"))
    return (f"{what} settlement lines (settlement_lines.parquet), and "
            f"{product.id}'s benefit(s) {', '.join(wanted)} are paid from them: they were "
            f"decided without lines and paid nothing {where} (reason LINES_NOT_GIVEN); {remedy}")


def drug_items() -> pd.DataFrame:
    """The items of the drug lists that name their indications (``dise_codes``): what
    the flag F_DRUG_NO_DIAGNOSIS reads (:func:`puhui.claims.flags.flag_settlements`)."""
    from puhui.drug_lists import load_lists

    return pd.concat([dl.items for dl in load_lists().values() if "dise_codes" in dl.items],
                     ignore_index=True)


def list_lines(lines: pd.DataFrame | None, matcher: LineMatcher) -> pd.DataFrame | None:
    """The lines on one of the product's lists: the only ones a line benefit counts (and
    the ones the ledger keeps with a settlement)."""
    if lines is None or not len(lines):
        return lines
    return lines[lines["hilist_code"].astype(str).isin(matcher.codes).to_numpy()
                 ].reset_index(drop=True)


def _missing_from_data(con, product: Product, scope: Scope, keys: _LazyKeys,
                       complete: bool, data_dir: Path,
                       reversed_here: set = frozenset()) -> pd.DataFrame:
    """Settlements the ledger decided under the product, dated inside the batch's scope,
    that the data does not hold. Without ``complete`` there must be none (exit 2, nothing
    written); with it they are returned, to be taken back."""
    cands = ledger.decided_in_period(con, product.id, *scope.dates)
    missing = cands[~_in_keys(keys, cands["setl_id"], cands["psn_no"])
                    & ~cands["setl_id"].isin(reversed_here).to_numpy()].reset_index(drop=True)
    if not len(missing) or complete:
        return missing
    paid = ledger.paid_for_settlements(con, missing["setl_id"].tolist(), product.id)
    raise InputError(
        f"{data_dir}: {len(missing):,} settlements decided before under {product.id}, dated "
        f"{missing['setl_date'].min()} to {missing['setl_date'].max()} ({int(paid['paid'].sum()) / 100:,.2f} "
        f"yuan paid on them), are not in the data, which covers {scope.dates[0]} to "
        f"{scope.dates[1]}. Nothing was written. If the data is a partial extract, state the "
        f"period it covers with --period FROM:TO (a settlement outside the batch's period is "
        f"never taken back); if the data is complete for that period, run again with "
        f"--complete to take back what they were paid")


def renews(pol: pd.DataFrame, data_policies: pd.DataFrame, ledger_policies: pd.DataFrame
            ) -> np.ndarray:
    """For each of ``pol``: whether it continues a policy of any product ending the day
    before it starts, among the data's policies and the ledger's (a yearly extract holds
    only this year's policies; last year's are in the ledger)."""
    cols = ["policy_no", "psn_no", "start_date", "end_date"]
    every = pd.concat([pol[cols].assign(mine=True), data_policies[cols].assign(mine=False),
                       ledger_policies[cols].assign(mine=False)], ignore_index=True)
    every = every.astype({"policy_no": str, "psn_no": str}).drop_duplicates(
        "policy_no", keep="first").reset_index(drop=True)
    ren = renewals(every)
    return ren[every["mine"].to_numpy()][:len(pol)]


def _reversals_of_ledger_originals(con, st: pd.DataFrame, quarantined: dict[int, str],
                                   done: dict[str, str]) -> list[int]:
    """Rows quarantined as reversing no settlement of the data whose original the ledger
    kept: the same person, not reversed already, dated no later, amounts negated (the
    fields the ledger keeps). Such a reversal can be applied. One this very reversal
    applied before (the batch run again) is applied again: it changes nothing, and the
    EOB says what it took back, as the first run's did. ``done``: the ledger's
    reversals, original -> reversal."""
    rows = [r for r, code in quarantined.items() if code == "Q_UNKNOWN_REVERSAL"]
    if not rows:
        return []
    used = {rid: orig for orig, rid in done.items()}     # reversal id -> its original
    out = []
    for r in rows:
        rev = st.iloc[r]
        rid, orig_id = str(rev["setl_id"]), str(rev["refund_of"])
        if rid in used:
            # applied before: the same reversal of the same person met again is applied
            # again (moves nothing); a used reversal id naming another original, or
            # another person, is not a reversal the ledger knows (stays quarantined)
            if used[rid] == orig_id and \
                    ledger.reversal_person(con, rid) == str(rev["psn_no"]):
                out.append(r)
            continue
        held = ledger.stored_settlement(con, orig_id)
        if held is None or orig_id in done:
            continue
        orig = held[0]
        ok = (orig["psn_no"] == str(rev["psn_no"])
              and str(rev["setl_time"].date()) >= orig["setl_time"]
              and all(int(rev[c]) == -int(orig[c]) for c in ledger.STORED[6:]))
        if ok:
            out.append(r)
    return out


def _hold_reused_reversal_ids(st: pd.DataFrame, rows: np.ndarray, quarantined: dict[int, str],
                              q_mask: np.ndarray, done: dict[str, str]) -> None:
    """Quarantine (Q_BAD_REVERSAL) the reversals among ``rows`` whose setl_id the ledger
    applied as the reversal of another settlement: the ledger keeps one reversal per id,
    so applying it would take the new original's payout back with no record that it was
    reversed (a later batch meeting that settlement would pay it again). Review 15b.
    ``done``: the ledger's reversals, original -> reversal."""
    used = {rid: orig for orig, rid in done.items()}
    if not used or not len(rows):
        return
    ids = st["setl_id"].iloc[rows].to_numpy(dtype=object)
    origs = st["refund_of"].iloc[rows].to_numpy(dtype=object)
    for r, rid, orig in zip(rows, ids, origs):
        if str(rid) in used and used[str(rid)] != str(orig):
            quarantined[int(r)] = "Q_BAD_REVERSAL"
            q_mask[int(r)] = True


def _refuse_dropped_co_insurers(con, product: Product) -> None:
    """A product whose payments the ledger split between co-insurers (schema 7) run with
    a product file naming none or another group: refused before anything is written."""
    try:
        ledger.check_co_insurers(con, product)
    except InputError:
        con.close()
        raise


def _refuse_unknown_history(con, product: Product, keys: _LazyKeys, data_dir: Path) -> None:
    """A ledger written before schema 2 did not keep the inputs of what it decided: a
    batch whose data lacks some of those settlements cannot run their deductibles and
    limits, so it is refused until one batch on data holding them has stored them."""
    old = ledger.unstored_decided(con, product.id)
    lacking = old[~_in_keys(keys, old["setl_id"], old["psn_no"])]
    if len(lacking):
        raise InputError(
            f"{data_dir}: the ledger holds {len(lacking):,} settlements decided under "
            f"{product.id} by an earlier puhui (ledger schema 1) whose amounts it did not "
            f"keep, and this data does not hold them. Nothing was written. Run one batch "
            f"on data that holds the product's whole policy year first (it keeps them); "
            f"extracts work after that")


def _unquarantine_reversed(st: pd.DataFrame, cand: np.ndarray, quarantined: dict,
                           q_mask: np.ndarray) -> None:
    """Release from quarantine (in place) the rows ``cand`` (bool) of originals a reversal
    the ledger applied undid: the reversal decided them, none of the row's amounts is
    used, so they go the reversed way (what the product still pays on them is taken
    back). An id on more than one row stays quarantined (a duplicate)."""
    rows = np.flatnonzero(cand)
    if not len(rows):
        return
    ids = st["setl_id"].iloc[rows].astype(str)
    n = st.loc[_text_isin(st["setl_id"], set(ids)), "setl_id"].astype(str).value_counts()
    for r, i in zip(rows, ids):
        if n[i] == 1:
            del quarantined[int(r)]
            q_mask[r] = False


def _take_back_paid_on_reversed(con, ctx: _BlockContext, ids: list[str]) -> None:
    """Take back, in one unit of work and under the reversal's id, what this product
    still pays on the originals ``ids`` that a reversal applied under another product
    undid (it took back that product's payouts only), and mark its decisions REVERSED.
    Nothing to take back (a killed run's entries are in): nothing written."""
    with ledger.unit_of_work(con):
        paid = ledger.paid_for_reversed_elsewhere(con, ids, ctx.product.id)
        paid = paid[pd.to_numeric(paid["paid"]) != 0]
        if not len(paid):
            return
        stamp = ledger.now()
        ledger.record_entries(con, [
            (r, a, b, psn, pol, -int(p), "reverse", ctx.batch_id, stamp)
            for a, b, p, psn, pol, r in paid[["applies_to", "benefit", "paid", "psn_no",
                                              "policy_no", "reversal"]].itertuples(index=False)],
            ctx.as_of, ctx.product)
        ledger.record_decisions(con, [
            (a, b.id, psn, None, 0, 0, 0, 0, "REVERSED", ctx.batch_id)
            for a, psn in sorted(set(zip(paid["applies_to"], paid["psn_no"])))
            for b in ctx.product.benefits], ctx.product.id)
        ledger.audit(con, "claims run: reversed under another product, taken back",
                     ctx.batch_id, settlements=int(paid["applies_to"].nunique()),
                     fen=-int(pd.to_numeric(paid["paid"]).sum()))


def _take_back_reversed(con, ctx: _BlockContext, r_eob: pd.DataFrame) -> pd.DataFrame:
    """The EOB rows of the originals a reversal the ledger applied undid, whose reversal
    this data does not hold, with what this product still paid for them taken back
    under the reversal's id (:func:`_take_back_paid_on_reversed`): a reversal applied
    under another product took back that product's payouts only (review s22: they
    stayed paid here while the later settlements were adjudicated without them). A
    killed run's entries are found again."""
    ids = sorted(set(r_eob["setl_id"].astype(str)))
    _take_back_paid_on_reversed(con, ctx, ids)
    mine = ledger.batch_entries_for(con, ctx.batch_id, ids)
    amt = mine.groupby(["applies_to", "benefit"])["payout_fen"].sum().reindex(
        pd.MultiIndex.from_arrays([r_eob["setl_id"].astype(str), r_eob["benefit"]]),
        fill_value=0).to_numpy(dtype="int64")
    out = r_eob.assign(payout_amt=amt / 100, entry=np.where(amt != 0, "reverse", ""))
    out.attrs = dict(r_eob.attrs)
    return out


def _reversed_not_in_data(st: pd.DataFrame, known: dict[str, str],
                          q_mask: np.ndarray) -> list[str]:
    """The originals the ledger's reversals undid that the data does not hold, nor their
    reversal in a row that can be applied (a partial extract of a later period; a
    quarantined reversal is applied by no path: review s23, it left 3,290 paid where
    1,190 was due): sorted. ``known``: original -> reversal; ``q_mask``: the rows
    quarantined."""
    if not known:
        return []
    ids = set(known) | set(known.values())
    rows = _text_isin(st["setl_id"], ids)
    here = set(st.loc[rows, "setl_id"].astype(str))
    usable = set(st.loc[rows & ~q_mask, "setl_id"].astype(str))
    return sorted(o for o, r in known.items() if o not in here and r not in usable)


def _take_back_reversed_elsewhere(con, ctx: _BlockContext, known: dict[str, str],
                                  ids: list[str]) -> pd.DataFrame:
    """What this product still pays on originals another product's reversal undid and
    this data does not hold (neither the original nor its reversal: a partial extract),
    taken back under the reversal's id; the EOB rows of those this batch took back
    (status reversed, reason REVERSED; a killed run's found again). Review s22 left it:
    such a batch kept the payout while the later settlements were adjudicated without
    the original (3,290 paid where 1,190 was due)."""
    benefits = [b.id for b in ctx.product.benefits]
    if ids:
        _take_back_paid_on_reversed(con, ctx, ids)
    mine = ledger.batch_entries_for(con, ctx.batch_id, ids) if ids else None
    if mine is None or not len(mine):
        return _empty_eob()
    took = sorted(set(mine["applies_to"].astype(str)))
    amt = mine.groupby(["applies_to", "benefit"])["payout_fen"].sum().reindex(
        pd.MultiIndex.from_arrays([np.repeat(took, len(benefits)),
                                   np.tile(benefits, len(took))]), fill_value=0).to_numpy(
        dtype="int64")
    psn = [ledger.reversal_person(con, known[t]) for t in took]
    out = pd.DataFrame({
        "setl_id": np.repeat(took, len(benefits)),
        "psn_no": np.repeat(psn, len(benefits)), "policy_no": None,
        "benefit": np.tile(benefits, len(took)), "eligible_amt": 0.0, "deductible_amt": 0.0,
        "ratio": 0.0, "payout_amt": amt / 100, "target_amt": 0.0, "status": "reversed",
        "reason": "REVERSED", "entry": np.where(amt != 0, "reverse", "")})
    out.attrs["status_counts"] = {"reversed": len(took)}
    return out


def _take_back(con, ctx: _BlockContext, missing: pd.DataFrame) -> pd.DataFrame:
    """Take back what the settlements the data (stated complete) does not hold were
    paid, in one unit of work, and their EOB rows (with those a killed run of this batch
    took back already)."""
    benefits = [b.id for b in ctx.product.benefits]
    if len(missing):
        ids = missing["setl_id"].astype(str).tolist()
        with ledger.unit_of_work(con):
            paid = ledger.paid_for_settlements(con, ids, ctx.product.id)
            paid = paid[paid["paid"] != 0]
            stamp = ledger.now()
            ledger.record_entries(con, [
                (a, a, b, psn, pol, -int(p), "adjust", ctx.batch_id, stamp)
                for a, b, p, psn, pol in paid[["applies_to", "benefit", "paid", "psn_no",
                                               "policy_no"]].itertuples(index=False)],
                ctx.as_of, ctx.product)
            ledger.record_decisions(con, [
                (a, b, psn, None, 0, 0, 0, 0, "NOT_IN_DATA", ctx.batch_id)
                for a, psn in zip(ids, missing["psn_no"].astype(str)) for b in benefits],
                ctx.product.id)
            ledger.forget_settlements(con, ids, ctx.product.id)
            ledger.audit(con, "claims run: not in data, taken back", ctx.batch_id,
                         settlements=len(ids), fen=-int(paid["paid"].sum()))
    done = ledger.decided_not_in_data(con, ctx.batch_id)
    if not done:
        out = _empty_eob()
        out.attrs["status_counts"] = {}
        return out
    ids = [d[0] for d in done]
    mine = ledger.batch_entries_for(con, ctx.batch_id, ids)
    amt = mine.groupby(["applies_to", "benefit"])["payout_fen"].sum().reindex(
        pd.MultiIndex.from_arrays([np.repeat(ids, len(benefits)),
                                   np.tile(benefits, len(ids))]), fill_value=0).to_numpy(
        dtype="int64")
    out = pd.DataFrame({
        "setl_id": np.repeat(ids, len(benefits)),
        "psn_no": np.repeat([d[1] for d in done], len(benefits)), "policy_no": None,
        "benefit": np.tile(benefits, len(ids)), "eligible_amt": 0.0, "deductible_amt": 0.0,
        "ratio": 0.0, "payout_amt": amt / 100, "target_amt": 0.0, "status": "reversed",
        "reason": "NOT_IN_DATA", "entry": np.where(amt != 0, "adjust", "")})
    out.attrs["status_counts"] = {"reversed": len(ids)}
    return out


@dataclass
class BatchResult:
    eob: pd.DataFrame
    summary: dict


def run_batch(product: Product, product_file: Path, data_dir: str | Path, url: str,
              batch_id: str, mode: str = "claimed", block_persons: int = BLOCK_PERSONS,
              progress: Callable[[int, int], None] | None = None,
              eob_sink: Callable[[pd.DataFrame], None] | None = None,
              claims: set[str] | None = None, workers: int = 1,
              period: tuple[str, str] | None = None, complete: bool = False,
              as_of: str | None = None, filings: pd.DataFrame | None = None
              ) -> BatchResult:
    """Run a batch. With ``eob_sink`` each block's EOB rows go to it as they are made
    (the CLI appends them to eob.parquet) and the result's ``eob`` is empty; without,
    the EOB is returned whole (tests, small data).

    ``claims`` (mode claimed only): the settlement ids for which a claim was filed (see
    :func:`read_claims`). A settlement with a payout due and no claim is listed as
    denied, NOT_CLAIMED: nothing is paid and nothing an earlier batch paid is taken
    back; a later batch with its claim pays it. The deductible and limits still run over
    every settlement of the person in time order (the expenses happened), so a claim
    filed later is paid what it would have been paid at once. Without ``claims`` every
    settlement counts as claimed. ``filings`` (with ``claims``; :func:`read_claims_file`):
    each claim's filing date, recorded in the ledger for the settlements in the data
    (schema 8, :func:`puhui.claims.ledger.record_filings`: the first filing kept).

    ``workers=2`` runs the blocks in two processes forked once the data is ready
    (:func:`puhui.execution.map_blocks`), each planning and writing a block with its
    own ledger connection; the EOB parts come back here and are emitted in block order.
    Every block is one unit of work, so the ledger and the EOB, row for row, are as
    with one process.

    The batch's **scope** is the period its data covers: ``period`` (first, last ISO
    dates) where the user states it, else the data's first to last settlement date. A
    settlement the ledger decided before and the data does not hold is *carried*: it
    keeps what it was paid and counts in the deductible and limits at what it keeps,
    before the data's settlements (:func:`_kept_uses`), so a limit is never passed. One
    dated inside the scope is
    missing from data that should hold it: the batch refuses (nothing written) unless
    ``complete`` says the data is complete for its period, and then takes back what it
    was paid (entries in the EOB, reason NOT_IN_DATA).

    Every entry the batch writes is effective for its business date ``as_of`` (ISO;
    :func:`batch_as_of`: by default the scope's last day), kept apart from when it was
    recorded (ledger schema 6).

    Concurrency: each block's "paid so far" and stored settlements are read, and its
    targets computed, then checked unchanged inside the transaction that writes
    (:func:`puhui.claims.ledger.block_stamp`); if another process wrote for those
    people meanwhile the block is computed again under the write lock. Any number of
    batches and direct payouts may run at once on one ledger."""
    check_batch_id(batch_id)
    if mode not in ("claimed", "proactive"):
        raise InputError(f"mode {mode!r}: claimed or proactive")
    if claims is not None and mode != "claimed":
        raise InputError("a claims file goes with --mode claimed; a proactive scan needs none")
    data_dir = Path(data_dir)
    quarantined, data, who = _quarantine(data_dir)
    no_lines = lines_missing_warning(product, data.lines is not None)
    files = [p for p in data_dir.glob("*.parquet")]
    dhash, phash = sha256_files(files), product_hash(product)
    _refuse_no_policy(product, data.policies, data_dir)
    if claims and not _text_isin(data.settlements["setl_id"], claims).any():
        raise InputError(f"the claims file names {len(claims):,} settlements and none of them "
                         f"is in {data_dir}/settlements.parquet; nothing was written. Give the "
                         f"claims file of this data")
    scope = batch_scope(data.settlements["setl_time"], period, data_dir)
    stated_as_of = as_of is not None
    as_of = batch_as_of(as_of, data.settlements["setl_time"], scope, data_dir)
    if filings is not None:
        filings = checked_filings(filings, data.settlements, as_of)
    data_keys = _LazyKeys(data.settlements["setl_id"], data.settlements["psn_no"])

    # Only the columns the flags, the calculator and the EOB read are held from here on
    # (the rows keep their positions: quarantine and flags name rows)
    st = data.settlements
    if not st.index.equals(pd.RangeIndex(len(st))):
        st = st.reset_index(drop=True)
    extra = [c for c in st.columns if c not in (*BATCH_COLUMNS, *FLAG_COLUMNS)]
    if extra:            # (drop copies the whole frame, even to drop nothing: GBs at 100M)
        st = st.drop(columns=extra)
    data.settlements = st
    # validation's and the join's freed memory back to the system before the batch's
    # own working arrays: glibc keeps it in its heap otherwise (0.5 GB at 10 million
    # settlements, several GB at 100 million, where the batch's peak comes later)
    release_free_memory()
    q_mask = np.zeros(len(st), bool)
    q_mask[list(quarantined)] = True
    # a reversal of a quarantined settlement cannot be applied either
    q_ids = set(st.loc[q_mask, "setl_id"])
    bad_rev = st["refund_of"].isin(q_ids).to_numpy() & ~q_mask
    for r in np.flatnonzero(bad_rev):
        quarantined[int(r)] = "Q_BAD_REVERSAL"
    q_mask |= bad_rev
    # a reversal of an original only the ledger holds (last month's settlement reversed
    # in this month's extract) is applied, not quarantined
    con = ledger.connect(url)
    _refuse_dropped_co_insurers(con, product)
    known = ledger.known_reversals(con)          # original -> the reversal applied
    from_ledger = _reversals_of_ledger_originals(con, st, quarantined, known)
    for r in from_ledger:
        del quarantined[r]
    q_mask[from_ledger] = False
    is_rev_all = st["refund_of"].notna().to_numpy()
    _hold_reused_reversal_ids(st, np.flatnonzero(is_rev_all & ~q_mask), quarantined, q_mask,
                              known)
    rev_of = reversal_map(st, ~q_mask)               # the reversals that can be applied
    ledger_originals = set(st.loc[from_ledger, "refund_of"].astype(str))
    # originals an earlier batch reversed, whose reversal this data does not hold (an
    # extract of a period before it): they stay reversed and keep what they were paid
    reversed_before: dict[int, str] = {}
    if known:
        old_rev = _text_isin(st["setl_id"], set(known) - set(rev_of))
        # a quarantined row of such an original too: the ledger's reversal decided it, no
        # amount of the row is used (review s23: quarantined, it kept what another
        # product's reversal undid - 3,290 paid where 1,190 was due)
        _unquarantine_reversed(st, old_rev & q_mask, quarantined, q_mask)
        old_rev &= ~q_mask
        reversed_before = {int(r): "REVERSED" for r in np.flatnonzero(old_rev)}
        q_mask |= old_rev
    # originals reversed in the ledger that this data does not hold (nor their reversal)
    reversed_away = _reversed_not_in_data(st, known, q_mask)
    eff = ~q_mask & ~is_rev_all & ~st["setl_id"].isin(rev_of).to_numpy()
    # fraud and quality flags: held for review, left out like quarantined rows (the
    # flags read a few columns of the effective rows; the table itself is not copied)
    held = _flags(st, eff, who, data.lines, drug_items())
    # the ledger's holds (session 21): one in force holds its settlement again whatever
    # the flags say now; one a reviewer released is not held again by the same flags
    in_force, released = ledger.holds(con)
    held = with_ledger_holds(st, eff, held, in_force, released)
    new_holds = list(zip(st.loc[held.index, "setl_id"].astype(str),
                         st.loc[held.index, "psn_no"].astype(str), held.astype(str)))
    for r, code in held.items():
        quarantined[int(r)] = code
    eff[held.index.to_numpy(dtype="int64")] = False
    effective_rows = np.flatnonzero(eff)
    # settlements held or quarantined now keep whatever an earlier batch paid them
    frozen = set(st.loc[list(quarantined) + list(reversed_before), "setl_id"].astype(str))
    q_eob = _quarantine_rows(st, quarantined, product)
    r_eob = _quarantine_rows(st, reversed_before, product, status="reversed")
    # each psn_no becomes a code into the persons' ids (validation found every person's
    # row): millions of strings fewer to hold, and fewer pages for a second worker to
    # copy as it reads them (an unknown person's rows are quarantined, above)
    st["psn_no"] = pd.Categorical.from_codes(who, categories=pd.Index(
        data.persons["psn_no"].astype(str)))
    data_keys.rebind(st["setl_id"], st["psn_no"])
    data.settlements = st
    release_free_memory()         # the flags' working arrays, before the partitions'
    pol = data.policies[data.policies["product_id"] == product.id].reset_index(drop=True)

    _refuse_unknown_history(con, product, data_keys, data_dir)
    taking_back = _missing_from_data(con, product, scope, data_keys, complete, data_dir,
                                     ledger_originals)
    pol, cfy_source = with_claim_free_years(con, data.policies, pol, exclude_batch=batch_id)
    pol = pol.assign(renewal=renews(pol, data.policies, ledger.policy_periods(con)))
    with ledger.unit_of_work(con):
        resumed = ledger.start_batch(con, batch_id, mode, product.id, phash, dhash)
        as_of = _kept_as_of(con, batch_id, as_of, stated_as_of)
        filed = None
        if filings is not None:
            _refuse_filed_after(filings, as_of, filings.attrs.get("path", "claims file"))
            filed = ledger.record_filings(con, product.id, batch_id, filings)
        ledger.upsert_policies(con, pol)
        # a co-insured product's group registered (the first time: its earlier entries
        # split), so a product year is split whole even by a batch that pays nothing new
        ledger.register_co_insurers(con, product)
        ledger.record_holds(con, new_holds, batch_id)
        ledger.audit(con, f"claims run --mode {mode}", batch_id, phash, dhash,
                     product_file=str(product_file), data=str(data_dir),
                     resumed=resumed, settlements=len(st),
                     quarantined=len(quarantined), scope=list(scope.dates),
                     scope_stated=scope.stated, complete=complete, as_of=as_of,
                     not_in_data=len(taking_back), held=len(new_holds))

    matcher = LineMatcher(product)
    consent = dict(zip(pol["psn_no"].astype(str), pol["consent"].astype(bool)))
    # blocks: the people with settlements to adjudicate, in psn_no order, block_persons
    # at a time (the ledger is read by psn_no range); each row's block found once through
    # its person's row in persons (from validation), not by hashing its psn_no again
    rev_rows = np.flatnonzero(is_rev_all & ~q_mask)
    people, person_block = _people_blocks(data.persons["psn_no"],
                                          who[np.concatenate([effective_rows, rev_rows])],
                                          block_persons)
    blocks = [people[i:i + block_persons] for i in range(0, len(people), block_persons)]
    row_block = np.where(who >= 0, person_block.astype(np.int32)[np.maximum(who, 0)],
                         np.int32(-1))
    eff_parts = _Partition(st, row_block, len(blocks), rows=effective_rows)
    rev_parts = _Partition(st, row_block, len(blocks), rows=rev_rows)
    block_of = pd.Series(np.arange(len(people)) // block_persons, index=people)
    pol_parts = _Partition(pol, block_of.reindex(pol["psn_no"].astype(str).to_numpy()),
                           len(blocks))
    # the blocks' rows written once to a file in block order and read back block by
    # block: the table is not held while the blocks run (some 15 GB at 100 million
    # settlements, which a second worker's process could not also fit beside)
    n_settlements = len(st)
    claim_ids = None if claims is None else st["setl_id"]
    eff_parts, rev_parts, spilled = _spill_parts(eff_parts, rev_parts)
    if spilled:
        st = data.settlements = None
    # the row-length working arrays are done with: freed before the blocks (and before
    # a second worker is forked), hundreds of MB at 10 million settlements
    del who, row_block, effective_rows, eff, q_mask, is_rev_all, bad_rev, rev_rows, person_block
    release_free_memory()
    eob_parts = []
    tally = _Tally()

    def emit(part: pd.DataFrame) -> None:
        if not len(part):
            return
        tally.add(part)
        if eob_sink is not None:
            eob_sink(part)
        else:
            eob_parts.append(part)

    ctx = _BlockContext(product=product, matcher=matcher, batch_id=batch_id, mode=mode,
                        rev_of=rev_of, lines=list_lines(data.lines, matcher),
                        consent=consent, frozen=frozen, claims=claims,
                        taking_back=set(taking_back["setl_id"]), data_keys=data_keys,
                        as_of=as_of)
    data.lines = None

    source = {"blocks": blocks, "eff": eff_parts, "rev": rev_parts, "pol": pol_parts}
    # with an EOB file the blocks send back their parts ready to write (Arrow rows, the
    # report's rows, a tally): the batch's process only writes them
    ready = hasattr(eob_sink, "write_prepared")
    where = _batch_execution(workers, ctx)
    # a Dask worker lives longer than the batch and may run blocks on several threads:
    # it opens the ledger for each block (by its absolute path: its working folder is
    # not this one) and closes it; a forked worker keeps one connection for the batch
    shared = {"url": ledger.absolute_url(url), "ctx": ctx,
              "keep_connection": where.scheduler is None,
              "eob_categories": eob_categories(product) if ready else None}
    _CONNECTIONS[(os.getpid(), shared["url"])] = con     # this process's blocks use its own
    try:
        # blocks in forked processes or on Dask (the execution seam; each worker opens
        # the ledger itself), their EOB parts written here in block order
        # the blocks in units of work (:func:`_units`: one block a unit by default)
        source["units"] = _units(len(blocks), where.n_workers)
        done = map_blocks(_unit_in_worker, len(source["units"]), shared, source=source,
                          cut=_cut_unit, execution=where)
        k = 0
        for _ in source["units"]:
            for block in _next_block(done):
                if isinstance(block, _ReadyBlock):
                    tally.merge(block.tally)
                    for prepared in block.parts:
                        eob_sink.write_prepared(prepared)
                else:
                    for part in block:
                        emit(part)
                k += 1
                if progress:
                    progress(k, len(blocks))
    finally:
        _CONNECTIONS.pop((os.getpid(), shared["url"]), None)
    if quarantined:
        emit(q_eob)
    if reversed_before:
        emit(_take_back_reversed(con, ctx, r_eob))
    away_eob = _take_back_reversed_elsewhere(con, ctx, known, reversed_away)
    emit(away_eob)
    n_away = int(away_eob["setl_id"].nunique()) if len(away_eob) else 0
    # (not again as not in the data: review s23, a complete extract's EOB listed T1's
    # take-back twice, -910 yuan net where the ledger held 1,190)
    if len(away_eob) and len(taking_back):
        taking_back = taking_back[~taking_back["setl_id"].astype(str).isin(
            set(away_eob["setl_id"].astype(str)))].reset_index(drop=True)
    taken = _take_back(con, ctx, taking_back)
    emit(taken)
    eob = pd.concat(eob_parts, ignore_index=True) if eob_parts else _empty_eob()
    # every input settlement, reversed originals included, appears; then the batch's
    # own entries per settlement and benefit, as the ledger holds them
    with ledger.unit_of_work(con):
        entries = ledger.finish_batch(con, batch_id)
        booked = ledger.batch_total(con, batch_id)
        ledger.audit(con, "claims run finished", batch_id, phash, dhash, entries=entries)
    by_insurer = ledger.batch_insurer_totals(con, batch_id) if product.co_insurers else None
    con.close()
    summary = tally.summary(batch_id, mode, product, n_settlements)
    n_taken = int(taken["setl_id"].nunique()) if len(taken) else 0
    summary["scope"] = {"first": scope.dates[0], "last": scope.dates[1],
                        "stated": scope.stated, "complete": complete}
    summary["as_of"] = as_of
    summary["not_in_data"] = {"settlements": n_taken,
                              "taken_back_yuan": round(float(taken["payout_amt"].sum()), 2)
                              if len(taken) else 0.0}
    summary["carried_from_ledger"] = tally.carried
    # the EOB also lists the originals of the data's reversals that only the ledger held
    summary["reversed_from_ledger"] = len(ledger_originals)
    # and those another product's reversal undid, not in the data, taken back here
    summary["reversed_elsewhere"] = {
        "settlements": n_away,
        "taken_back_yuan": round(float(away_eob["payout_amt"].sum()), 2) if n_away else 0.0}
    summary["reconciles"] = summary["settlements_in_eob"] == \
        n_settlements + n_taken + len(ledger_originals) + n_away
    summary["ledger_entries_yuan"] = booked / 100
    summary["eob_matches_ledger"] = booked == tally.paid
    cfy = pol["claim_free_years"].value_counts().sort_index()
    summary["claim_free_years"] = {"source": cfy_source,
                                   "policies_by_years": {str(k): int(v) for k, v in cfy.items()}}
    summary["warnings"] = [no_lines] if no_lines else []
    if by_insurer is not None:
        summary["insurers"] = insurer_summary(product, by_insurer)
        summary["insurers_match_ledger"] = sum(f for _, _, f in by_insurer) == booked
    if claims is not None:
        known = pd.Series(_text_isin(claim_ids, claims))
        summary["claims_file"] = {"claims": len(claims), "matched": int(known.sum()),
                                  "unknown_settlements": len(claims) - int(known.sum())}
    if filed is not None:
        summary["claims_file"]["filing_dates"] = filed
        if filed["kept_earlier_date"]:
            summary["warnings"].append(
                f"{filed['kept_earlier_date']:,} claim(s) in the claims file have a filing "
                f"date other than the one the ledger recorded first; the first is kept "
                f"(the claim was known from then)")
    return BatchResult(eob=eob, summary=summary)


def insurer_summary(product: Product, by_insurer: list[tuple[str, int, int]]) -> list[dict]:
    """summary.json's ``insurers``: each co-insurer of the product (lead first), its quota
    and what the batch's entries gave it (:func:`ledger.batch_insurer_totals`)."""
    got = {i: (n, fen) for i, n, fen in by_insurer}
    return [{"id": q.id, "name": q.name, "share": q.share_bp / 10_000, "lead": q.lead,
             "entries": got.get(q.id, (0, 0))[0],
             "paid_this_batch_yuan": got.get(q.id, (0, 0))[1] / 100}
            for q in sorted(product.co_insurers, key=lambda q: (not q.lead, q.id))]


def with_claim_free_years(con, all_policies: pd.DataFrame, pol: pd.DataFrame,
                          exclude_batch: str | None = None) -> tuple[pd.DataFrame, str]:
    """``pol`` with its ``claim_free_years``: the policies file's own column when it has
    one ("data"), else derived from every policy of the data and what the ledger paid
    ("ledger"; :mod:`puhui.benefits.claim_free`)."""
    from puhui.benefits.claim_free import claim_free_years

    if "claim_free_years" in pol.columns and pol["claim_free_years"].notna().all():
        return pol, "data"
    paid, known = ledger.claim_free_history(con, exclude_batch)
    years = pd.Series(claim_free_years(all_policies, paid, known),
                      index=all_policies["policy_no"].astype(str).to_numpy())
    years = years[~years.index.duplicated()]
    return pol.assign(claim_free_years=years.reindex(pol["policy_no"].astype(str)).fillna(0)
                      .astype("int64").to_numpy()), "ledger"


def read_claims(path: str | Path) -> set[str]:
    """The settlement ids of a claims file (:func:`read_claims_file`)."""
    return read_claims_file(path)[0]


def read_claims_file(path: str | Path) -> tuple[set[str], pd.DataFrame | None]:
    """The settlement ids of a claims file (Parquet or CSV with a ``setl_id`` column)
    and, where it has a ``filed_date`` column, each claim's filing date (a frame of
    ``setl_id`` and ``filed_date`` as ISO text, one row per claim; else None; other
    columns are ignored). Exit 2 (InputError) when it cannot be read, has no ``setl_id``
    column, has empty ids, or filing dates that are empty, not dates, or two dates for
    one claim (:func:`_filing_dates`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: claims file not found")
    try:
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p, dtype={"setl_id": str})
        else:
            from puhui.fund.files import read_parquet

            df = read_parquet(p)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputError(f"{p}: cannot read the claims file ({type(e).__name__}: {e}). "
                         f"Give a Parquet or CSV file with a setl_id column.") from None
    if "setl_id" not in df.columns:
        raise InputError(f"{p}: column setl_id missing (columns: {', '.join(map(str, df.columns))}). "
                         f"A claims file lists one settlement id per claim.")
    from puhui.fund.privacy import refuse_identifying

    refuse_identifying(df, str(p))
    ids = df["setl_id"]
    empty = int(ids.isna().sum() + (ids.astype(str).str.strip() == "").sum())
    if empty:
        raise InputError(f"{p}: column setl_id: {empty} rows without a settlement id; "
                         f"fix or remove them")
    filed = _filing_dates(df, p) if "filed_date" in df.columns else None
    return set(ids.astype(str)), filed


def _filing_dates(df: pd.DataFrame, p: Path) -> pd.DataFrame:
    """A claims file's ``setl_id`` and ``filed_date`` (ISO text), one row per claim; exit
    2 for empty dates, values that are not dates (YYYY-MM-DD, or a date-time: its day)
    and a claim named twice with two dates."""
    raw = df["filed_date"]
    empty = int(raw.isna().sum() + (raw.astype(str).str.strip() == "").sum())
    if empty:
        raise InputError(f"{p}: column filed_date: {empty:,} row(s) without a date; every "
                         f"claim needs the date it was filed (YYYY-MM-DD)")
    day = pd.to_datetime(raw, errors="coerce", format="ISO8601") \
        if not pd.api.types.is_datetime64_any_dtype(raw) else raw
    bad = int(day.isna().sum())
    if bad or not pd.api.types.is_datetime64_any_dtype(day):
        bad = bad or len(day)
        raise InputError(f"{p}: column filed_date: {bad:,} value(s) are not dates; give "
                         f"each claim's filing date as YYYY-MM-DD")
    out = pd.DataFrame({"setl_id": df["setl_id"].astype(str).to_numpy(),
                        "filed_date": day.dt.strftime("%Y-%m-%d").to_numpy()})
    out = out.drop_duplicates()
    twice = int(out["setl_id"].duplicated().sum())
    if twice:
        raise InputError(f"{p}: column filed_date: {twice:,} claim(s) named more than once "
                         f"with different filing dates; give each claim once, with the "
                         f"date it was first filed")
    out.attrs["path"] = str(p)
    return out.reset_index(drop=True)


def checked_filings(filings: pd.DataFrame, st: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """The filings of the settlements in the data (``st``: setl_id, setl_time), checked:
    none before its settlement's date, none after the batch's as-of date (a claim filed
    later is not known to a batch effective then); exit 2 with the counts otherwise.
    Claims naming settlements not in the data are left out (summary.json counts them)."""
    where = filings.attrs.get("path", "the claims file")
    setl = pd.Series(pd.to_datetime(st["setl_time"], errors="coerce").dt.strftime("%Y-%m-%d")
                     .fillna("").to_numpy(),
                     index=st["setl_id"].astype(str).to_numpy())
    setl = setl[~setl.index.duplicated()]
    mine = filings[filings["setl_id"].isin(setl.index)].reset_index(drop=True)
    before = int((mine["filed_date"].to_numpy() < setl.reindex(mine["setl_id"]).to_numpy()).sum())
    if before:
        raise InputError(f"{where}: column filed_date: {before:,} claim(s) filed before "
                         f"their settlement's date (settlements.parquet setl_time); a claim "
                         f"follows its settlement: fix the dates")
    _refuse_filed_after(mine, as_of, where)
    return mine


def _refuse_filed_after(filings: pd.DataFrame, as_of: str, where: str) -> None:
    """Exit 2 where a claim was filed after the batch's as-of date."""
    after = int((filings["filed_date"] > as_of).sum())
    if after:
        raise InputError(f"{where}: column filed_date: {after:,} claim(s) filed after the "
                         f"batch's as-of date {as_of}: a batch effective then cannot know "
                         f"them; give --as-of the date the claims file runs to, or leave "
                         f"them for a later batch")


def _empty_eob() -> pd.DataFrame:
    return pd.DataFrame(columns=["setl_id", "psn_no", "policy_no", "benefit", "eligible_amt",
                                 "deductible_amt", "ratio", "payout_amt", "target_amt",
                                 "status", "reason", "entry"])


def _accumulators(product: Product, dec, pol_no: np.ndarray) -> list[tuple[str, str, int]]:
    """Each policy's use of each accumulator: (policy, accumulator, fen), accumulator by
    accumulator in the order the benefits first name them, policies sorted; the
    benefits sharing an accumulator add up. The policies are grouped once for all."""
    has = pd.notna(pol_no)
    if not has.any():
        return []
    cols, names = {}, []
    for b in product.benefits:
        la = b.layer
        for acc, arr in ((la.deductible_accumulator, dec.deductible[b.id]),
                         (la.limit_accumulator, dec.payout[b.id])):
            if acc:
                cols[len(names)] = arr[has]
                names.append(acc)
    if not names:
        return []
    sums = pd.DataFrame(cols).groupby(pol_no[has]).sum()
    pols = sums.index.tolist()
    used: dict[str, list[int]] = {}
    for i, acc in enumerate(names):
        v = [int(x) for x in sums[i].tolist()]
        used[acc] = v if acc not in used else [a + b for a, b in zip(used[acc], v)]
    return [row for acc, v in used.items() for row in zip(pols, [acc] * len(pols), v)]


#: Each process's ledger connection, by (process id, URL): a forked worker opens its
#: own on its first block and keeps it for the next ones.
_CONNECTIONS: dict = {}


def _connection(url: str):
    key = (os.getpid(), url)
    con = _CONNECTIONS.get(key)
    if con is None:
        con = _CONNECTIONS[key] = ledger.connect(url)
    return con


def _batch_execution(workers: int, ctx: _BlockContext) -> Execution:
    """Where the blocks run: on the Dask cluster of ``--dask`` (its workers open the
    ledger by its URL: a SQLite file is shared only by workers on this machine), else
    ``workers`` forked processes. Dask workers get the data's keys made once here, not
    the ids to make them from."""
    from puhui.execution import current

    ex = current()
    if ex.scheduler is None:
        return Execution(workers=workers)
    if ctx.data_keys is not None:
        ctx.data_keys.get()
    return ex


def _next_block(done) -> list:
    """The next block's EOB parts; a block that failed for a reason not the data's
    fails the batch with what to do (every finished block is in the ledger)."""
    try:
        return next(done)
    except (InputError, JobFailed, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - a worker's unexpected failure, said as such
        raise JobFailed(f"a block of the batch failed ({type(e).__name__}: {e}); every "
                        f"finished block is in the ledger: run the batch again with the "
                        f"same id to finish it") from e


def _cut_block(source: dict, k: int) -> tuple:
    """Block ``k``: its people, effective settlements, reversals and policies (taken
    in the worker that runs it, from the partitions it inherited)."""
    return source["blocks"][k], source["eff"][k], source["rev"][k], source["pol"][k]


@dataclass
class _ReadyBlock:
    """A block's EOB parts ready to write, and their tally."""

    tally: _Tally
    parts: list


def _unit_in_worker(shared: dict, pieces: list) -> list:
    """Consecutive blocks of people, planned and written as one unit of work
    (:func:`_run_blocks`) with this process's ledger connection; each block's EOB parts
    go back to the batch, made ready to write when the batch writes a file. (A forked
    worker whose batch process is gone ends at once: :func:`puhui.execution.map_blocks`.)"""
    from puhui.claims.eob_file import prepare_part

    cats = shared["eob_categories"]
    lean = cats is not None           # parts for an EOB file: ids held once per settlement
    if shared["keep_connection"]:
        done = _run_blocks(_connection(shared["url"]), shared["ctx"], pieces, lean=lean)
    else:
        con = ledger.connect(shared["url"], must_exist=True)
        try:
            done = _run_blocks(con, shared["ctx"], pieces, lean=lean)
        finally:
            con.close()
    if cats is None:
        return done
    out = []
    for parts in done:
        tally = _Tally()
        for p in parts:
            if len(p):
                tally.add(p.frame if isinstance(p, LeanPart) else p)   # (a UniformPart as it is)
        out.append(_ReadyBlock(tally, [prepare_part(p, cats) for p in parts if len(p)]))
    return out


def _cut_unit(source: dict, u: int) -> list:
    """Unit ``u``: its blocks' pieces (:func:`_cut_block`)."""
    first, end = source["units"][u]
    return [_cut_block(source, k) for k in range(first, end)]


#: Blocks of people written in one unit of work (transaction), at most. The ledger's
#: indexes by settlement id (settlements, decisions) take every block's rows all over
#: their B-trees, and a block's transaction writes each page it touched again; the
#: other process's commit empties a connection's page cache besides. Several blocks a
#: transaction write those pages less often, but a unit's blocks, plans and EOB parts
#: are held together, in the worker and (two units ahead) in the batch's process:
#: measured at ten million settlements (session 18), four blocks a unit took the ledger's
#: writes from about 18 % to 14 % of the batch's samples and the tree's peak from 2.35
#: to 2.93 GiB (issue 19's limit is 2.5 GB), so one block a unit stays the default. The
#: EOB is written block by block either way (the same row groups).
BLOCKS_PER_UNIT = 1


def _units(n_blocks: int, workers: int) -> list[tuple[int, int]]:
    """The blocks ``0..n_blocks-1`` as consecutive units (first, end) of at most
    :data:`BLOCKS_PER_UNIT` blocks, and of fewer where the units would otherwise be too
    few to share among the workers (at least four units a worker).

    >>> _units(3, 2)
    [(0, 1), (1, 2), (2, 3)]
    """
    size = max(1, min(BLOCKS_PER_UNIT, n_blocks // (4 * max(workers, 1))))
    return [(i, min(i + size, n_blocks)) for i in range(0, n_blocks, size)]


def _people_blocks(psn_no: pd.Series, person_rows: np.ndarray,
                   block_persons: int) -> tuple[np.ndarray, np.ndarray]:
    """The people of ``person_rows`` (rows of persons, repeats allowed) sorted by
    psn_no, and for every person row the block of its person (-1 for people not in
    ``person_rows``).

    >>> people, block = _people_blocks(pd.Series(["c", "a", "d", "b"]), np.array([0, 2, 1, 0]), 2)
    >>> people.tolist(), block.tolist()
    (['a', 'c', 'd'], [0, 0, 1, -1])
    """
    ids = psn_no.to_numpy(dtype=object)
    seen = np.zeros(len(ids), dtype=bool)
    seen[person_rows[person_rows >= 0]] = True
    used = np.flatnonzero(seen)
    mine = pd.Index(ids[used].astype(str))
    # persons files are often sorted already: one pass to check spares the sort
    order = used if mine.is_monotonic_increasing else used[np.argsort(mine.to_numpy(
        dtype=str), kind="stable")]
    block = np.full(len(ids), -1, dtype="int64")
    block[order] = np.arange(len(order)) // block_persons
    return ids[order].astype(str), block


#: Effective settlements per part of the people in the batch's person flags: each
#: part's row-length working arrays (codes, days, a hash table of person-days) are
#: those of a few million rows, not of the whole batch (8 GB at 100 million).
FLAG_PART_ROWS = 4_000_000


def _flags(st: pd.DataFrame, eff: np.ndarray, who: np.ndarray, lines, items) -> pd.Series:
    """The fraud and quality flags of the effective rows (:func:`flag_settlements`):
    the flags within a person by parts of the people, those of the lines on the
    settlements that have lines; the same codes for the same rows."""
    rows = np.flatnonzero(eff)
    parts = -(-len(rows) // FLAG_PART_ROWS)
    if parts <= 1 or who[rows].min() < 0:
        return flag_settlements(_flag_columns(st, rows, who), lines, items)
    part_of = who[rows] % parts
    found = [person_flags(_flag_columns(st, rows[part_of == k], who)) for k in range(parts)]
    del part_of
    if lines is not None and len(lines):
        ids = pd.Index(pd.unique(lines["setl_id"].to_numpy()))
        lined = rows[positions_in(st["setl_id"], ids)[rows] >= 0]
        found.append(line_flags(_flag_columns(st, lined, who), lines, items))
    return first_flags(found)


def with_ledger_holds(st: pd.DataFrame, eff: np.ndarray, flagged: pd.Series,
                      active: dict[str, tuple[str, str]], released: set[str]) -> pd.Series:
    """The settlements a batch holds (row -> code): the flags' (``flagged``) less those
    whose hold a reviewer released, and the effective rows the ledger holds in force
    (``active``: setl_id -> (psn_no, code); the same person) with the ledger's code."""
    if released and len(flagged):
        gone = _text_isin(st.loc[flagged.index, "setl_id"], released)
        flagged = flagged[~gone]
    if not active:
        return flagged
    rows = np.flatnonzero(eff & _text_isin(st["setl_id"], set(active)))
    rows = rows[~np.isin(rows, flagged.index.to_numpy(dtype="int64"))]
    if not len(rows):
        return flagged
    ids = st.loc[rows, "setl_id"].astype(str).to_numpy()
    psns = st.loc[rows, "psn_no"].astype(str).to_numpy()
    mine = np.array([active[i][0] == p for i, p in zip(ids, psns)], bool)
    more = pd.Series([active[i][1] for i in ids[mine]], index=rows[mine], dtype=object)
    return pd.concat([flagged, more]).sort_index()


def _flag_columns(st: pd.DataFrame, rows: np.ndarray, who: np.ndarray) -> pd.DataFrame:
    """The columns the flags read of ``rows`` (effective rows, ascending), with psn_no
    as each row's person (the flags compare people, never their ids' text: a code a row
    instead of an id copied and hashed again; 100 million settlements' ids took GBs
    here)."""
    cols = [c for c in ("setl_id", "psn_no", "setl_time", "med_type", "fixmedins_code",
                        "medfee_sumamt", "dise_code") if c in st.columns]
    person = who[rows]
    if "psn_no" in cols and len(rows) and person.min() >= 0:
        # (an unknown person is quarantined, never effective)
        psn = pd.Categorical.from_codes(person, categories=pd.RangeIndex(int(who.max()) + 1))
    else:
        psn = st["psn_no"].array.take(rows) if "psn_no" in cols else None
    # one column at a time, only these: taking the rows of the whole frame first would
    # copy every column of every effective row (1.1 GiB more at 10 million settlements)
    return pd.DataFrame({c: psn if c == "psn_no" else st[c].array.take(rows) for c in cols},
                        index=pd.Index(rows), copy=False)


def _text_isin(s: pd.Series, values: set) -> np.ndarray:
    """Whether each of ``s``'s values, as text, is one of ``values`` (strings); ids held
    in Arrow are compared there (no Python string a row).

    >>> _text_isin(pd.Series(["a", "b"]), {"b"}).tolist()
    [False, True]
    """
    if is_arrow_text(s.dtype):
        return s.isin(values).to_numpy(dtype=bool)
    return s.astype(str).isin(values).to_numpy(dtype=bool)


def _spill_parts(eff: _Partition, rev: _Partition) -> tuple:
    """The effective settlements' and the reversals' partitions spilled to a file
    (:func:`puhui.claims.partition.spill`) and the table they were cut from released;
    as they were, with a note on stderr, where they cannot be (a column that cannot
    travel as Arrow, or no room on the disk: the batch then holds the table)."""
    import sys

    from puhui.claims.partition import spill

    try:
        eff_s = spill(eff)
        rev_s = spill(rev) if eff_s is not None else None
    except OSError as e:
        print(f"note: the batch's blocks could not be written to the temporary folder "
              f"({e.strerror or e}); they are held in memory instead (set TMPDIR to a "
              f"folder with room for about 85 bytes a settlement)",
              file=sys.stderr)
        return eff, rev, False
    if eff_s is None or rev_s is None:
        return eff, rev, False
    eff.df = rev.df = None
    return eff_s, rev_s, True


@dataclass
class _BlockContext:
    """What every block of a batch shares."""

    product: Product
    matcher: LineMatcher
    batch_id: str
    mode: str
    rev_of: dict                   # reversed original -> its reversal's setl_id
    lines: pd.DataFrame | None     # the data's lines on one of the product's lists
    consent: dict
    frozen: set                    # held or quarantined: keep what they were paid
    claims: set | None
    taking_back: set               # not in data stated complete: taken back at the end
    data_keys: _LazyKeys | None = None   # every (setl_id, person) of the data, hashed
    as_of: str = ""                # the business date every entry is effective for


@dataclass
class _BlockPlan:
    """What a block will write, computed from one reading of the ledger."""

    long: pd.DataFrame             # decisions of the block's data settlements
    uninsured: pd.DataFrame        # EOB rows of people with no policy (and nothing paid)
    entries: list
    decisions: list
    accumulators: list
    store: list                    # settlements to keep in the ledger, and their lines
    store_lines: list
    forget: list
    replaced: list                 # stored settlements stored again (their lines go)
    direct_adjusted: set           # (setl_id, benefit) whose direct payout is adjusted
    carried: int


def _run_blocks(con, ctx: _BlockContext, pieces: list, lean: bool = False) -> list[list]:
    """Consecutive blocks of people (block, effective, reversals, policies), one unit of
    work; each block's EOB parts. Each block's plan is computed from the ledger as it
    stands, then written in a transaction that first checks nobody wrote for its people
    meanwhile (:func:`ledger.block_stamp`); if somebody did, it is computed again under
    the write lock, so "paid so far" is always read where the write happens. (Blocks
    are disjoint ranges of people: one block's writes change nothing another block
    reads.) A kill at any point leaves every earlier unit written and nothing of this
    one."""
    plans = []
    for block, effective, reversals, pol in pieces:
        lo, hi = str(block[0]), str(block[-1])      # blocks are sorted ranges of people
        stamp = ledger.block_stamp(con, lo, hi)
        plans.append((lo, hi, stamp, _plan_block(con, ctx, lo, hi, effective, reversals, pol)))
    with ledger.unit_of_work(con):
        for j, ((block, effective, reversals, pol), (lo, hi, stamp, plan)) in \
                enumerate(zip(pieces, plans)):
            if ledger.block_stamp(con, lo, hi) != stamp:
                plan = _plan_block(con, ctx, lo, hi, effective, reversals, pol)
                plans[j] = (lo, hi, stamp, plan)
            _write_plan(con, ctx, plan, reversals)
    out = []
    for (block, effective, reversals, pol), (lo, hi, _, plan) in zip(pieces, plans):
        # this batch's entries, as recorded (also those of an earlier, interrupted run)
        mine = ledger.batch_entries_between(con, ctx.batch_id, lo, hi)
        eob = _eob_rows(plan.long, mine, reversals, [b.id for b in ctx.product.benefits],
                        plan.direct_adjusted)
        eob.attrs["carried"] = plan.carried
        parts = [eob, plan.uninsured]
        # ``lean``: parts may hold their ids once per settlement (:class:`LeanPart`), for
        # :func:`prepare_part`; else plain frames
        out.append(parts if lean else [as_frame(p) for p in parts])
    return out


def _write_plan(con, ctx: _BlockContext, plan: _BlockPlan, reversals: pd.DataFrame) -> None:
    """A block's plan into the ledger (inside the caller's unit of work)."""
    ledger.record_entries(con, plan.entries, ctx.as_of, ctx.product)
    ledger.record_decisions(con, plan.decisions, ctx.product.id)
    ledger.replace_accumulators(con, plan.accumulators)
    ledger.forget_settlements(con, plan.forget, ctx.product.id)
    ledger.store_settlements(con, plan.store, plan.store_lines, ctx.batch_id,
                             replaced=plan.replaced)
    if len(reversals):
        ledger.record_reversals(con, list(zip(
            reversals["setl_id"].astype(str), reversals["refund_of"].astype(str),
            reversals["psn_no"].astype(str))), ctx.batch_id)


def _plan_block(con, ctx: _BlockContext, lo: str, hi: str, effective: pd.DataFrame,
                rev_b: pd.DataFrame, pol_b: pd.DataFrame) -> _BlockPlan:
    product = ctx.product
    paid = ledger.paid_between(con, lo, hi, product.id)
    # reversals another batch applied since this one started: those originals stay
    # reversed (their payout is taken back already), whatever this data says
    late = set(ledger.reversals_between(con, lo, hi)) - set(ctx.rev_of) - ctx.frozen
    gone_since = effective["setl_id"].astype(str).isin(late).to_numpy() if late else \
        np.zeros(len(effective), bool)
    late_rows = effective[gone_since]
    effective = effective[~gone_since]
    # people with a policy, or with payments to keep right (a policy since removed)
    people = set(pol_b["psn_no"].astype(str)) | set(paid["paid_psn"].astype(str))
    insured = effective["psn_no"].astype(str).isin(people).to_numpy()
    st_b = effective[insured]
    stored, carried, stored_lines = _carried(con, ctx, lo, hi, pol_b)
    kept, priors = _kept_uses(con, ctx, carried, pol_b)
    lines_b, given = _block_lines(ctx, st_b, stored, stored_lines)
    dec = adjudicate(product, st_b, pol_b, lines_b, matcher=ctx.matcher, priors=priors,
                     lines_given=given)
    long = dec.long()
    _mark_not_payable(long, ctx, paid)
    entries, direct_adjusted = _entries(long, paid, rev_b, ctx, set(late_rows["setl_id"]))
    acc = _with_kept(_accumulators(product, dec, dec.settlements["policy_no"].to_numpy()), kept)
    # the ledger keeps the decisions with something to say (not "no policy", "outside
    # the policy" or "not covered", which the EOB lists)
    keep = long[~long["reason"].isin(["NO_POLICY", "OUTSIDE_POLICY", "NOT_COVERED",
                                      "LINES_NOT_GIVEN"])]
    dec_rows = list(zip(keep["setl_id"], keep["benefit"], keep["psn_no"].astype(str),
                        keep["policy_no"], keep["eligible_amt"].astype(int).tolist(),
                        keep["deductible_amt"].astype(int).tolist(),
                        keep["ratio_bp"].astype(int).tolist(),
                        keep["payout_amt"].astype(int).tolist(), keep["reason"],
                        [ctx.batch_id] * len(keep)))
    # a reversed original's decision says so (a direct payout sent again is refused)
    dec_rows += [(o, b.id, p, None, 0, 0, 0, 0, "REVERSED", ctx.batch_id)
                 for o, p in zip(rev_b["refund_of"].astype(str), rev_b["psn_no"].astype(str))
                 for b in product.benefits]
    elig = np.zeros(len(st_b), bool)      # something a benefit pays a share of
    for b in product.benefits:
        elig |= (dec.eligible[b.id][:len(st_b)] > 0) & (dec.ratio_bp[b.id][:len(st_b)] > 0)
    store, store_lines, forget = _to_store(st_b, elig, stored, rev_b, lines_b)
    held_before = set(stored["setl_id"].astype(str)) if len(stored) else set()
    replaced = [r[0] for r in store if r[0] in held_before]
    store_lines += _lines_kept_too(ctx.lines, st_b.loc[elig, "setl_id"], held_before,
                                   {r[0] for r in store}, stored_lines)
    uninsured = _no_policy_rows(effective[["setl_id", "psn_no"]][~insured], product)
    if len(late_rows):
        uninsured = pd.concat([as_frame(uninsured), _reversed_rows(late_rows, product)],
                              ignore_index=True)
        uninsured.attrs = {"status_counts": {"denied": int((~insured).sum()),
                                             "reversed": len(late_rows)}}
    return _BlockPlan(long=long, uninsured=uninsured,
                      entries=entries, decisions=dec_rows, accumulators=acc, store=store,
                      store_lines=store_lines, forget=forget, replaced=replaced,
                      direct_adjusted=direct_adjusted, carried=len(carried))


def _lines_kept_too(lines: pd.DataFrame | None, eligible: pd.Series, held: set,
                    restored: set, stored_lines: pd.DataFrame | None) -> list[tuple]:
    """The data's lines (on this product's lists) of the eligible settlements the ledger
    holds unchanged (not stored again) that it does not hold yet: another product
    stored them with the lines on its own lists, and a later batch without lines decides
    them with the stored lines (:func:`_block_lines`), which must hold this product's
    too (review s23 rev3: other-2025's 1,400 yuan of special drugs on a line of its list
    only were taken back). Counted as multisets: a line the ledger holds is not added
    again."""
    if lines is None or not len(lines):
        return []
    keep = set(eligible.astype(str)) & (held - restored)
    if not keep:
        return []
    key = ["setl_id", "hilist_code", "list_class", "amount"]
    new = lines.loc[lines["setl_id"].astype(str).isin(keep), key]
    new = new.assign(setl_id=new["setl_id"].astype(str), hilist_code=new["hilist_code"].astype(str),
                     list_class=new["list_class"].astype(str),
                     amount=new["amount"].to_numpy(dtype="int64"))
    have = (stored_lines[key].astype({"setl_id": str, "hilist_code": str, "list_class": str})
            if stored_lines is not None and len(stored_lines) else
            pd.DataFrame({c: pd.Series(dtype=object if c != "amount" else "int64") for c in key}))
    new = new.assign(n=new.groupby(key).cumcount())        # the n-th copy of a line
    have = have.assign(n=have.groupby(key).cumcount())
    extra = new.merge(have, on=[*key, "n"], how="left", indicator=True)
    extra = extra[extra["_merge"] == "left_only"]
    return list(zip(extra["setl_id"], extra["hilist_code"], extra["list_class"],
                    extra["amount"].astype("int64").tolist()))


def _block_lines(ctx: _BlockContext, st_b: pd.DataFrame, stored: pd.DataFrame,
                 stored_lines: pd.DataFrame | None) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """The lines a block decides with, and per settlement whether they were given. With
    the data's lines: those, for every settlement. Data without lines
    (settlement_lines.parquet is optional): the lines the ledger stored with the
    settlements it stored (on the product's lists), so what an earlier batch decided
    from lines is decided again the same, not taken back (review s23: 113,881.94 yuan
    of special drugs taken back, the limits' use zeroed, the lines forgotten); the
    others' line benefits read LINES_NOT_GIVEN."""
    if ctx.lines is not None:
        return ctx.lines, None
    if stored_lines is None or not len(stored):
        return None, None
    given = st_b["setl_id"].astype(str).isin(set(stored["setl_id"].astype(str))).to_numpy()
    if not given.any():
        return None, None
    mine = stored_lines[stored_lines["setl_id"].astype(str).isin(
        set(st_b.loc[given, "setl_id"].astype(str)))]
    lines = mine.assign(line_no=np.arange(1, len(mine) + 1, dtype="int64"),
                        preselfpay_amt=np.zeros(len(mine), "int64"))
    return lines.reset_index(drop=True), given


def _carried(con, ctx: _BlockContext, lo: str, hi: str, pol_b: pd.DataFrame):
    """The settlements the ledger stored for these people within their policies' dates
    (all of them), those of them carried: the data does not hold them, or holds them
    held or quarantined (they keep what they were paid: :func:`_kept_uses`), and the
    stored settlements' lines."""
    if not len(pol_b):
        empty = pd.DataFrame(columns=list(ledger.STORED))
        return empty, empty, None
    first = str(pol_b["start_date"].min().date())
    last = str(pol_b["end_date"].max().date())
    stored, stored_lines = ledger.stored_settlements(con, lo, hi, first, last)
    # not in the data (for this person), or held in it (a held settlement keeps its
    # payout, so its deductible and limit use stay counted)
    # reversed in this data, or before (review s22: a reversal under another product
    # leaves the original's inputs to this one, which takes its payout back)
    gone = stored["setl_id"].isin(ctx.rev_of).to_numpy() | \
        stored["setl_id"].isin(ledger.reversals_between(con, lo, hi)).to_numpy()
    away = (~_in_keys(ctx.data_keys, stored["setl_id"], stored["psn_no"])
            | stored["setl_id"].isin(ctx.frozen).to_numpy()) & \
        ~stored["setl_id"].isin(ctx.taking_back).to_numpy() & ~gone
    return stored, stored[away].reset_index(drop=True), stored_lines


def _kept_uses(con, ctx: _BlockContext, carried: pd.DataFrame, pol_b: pd.DataFrame):
    """The carried settlements (the data does not hold them, or it holds them but they
    are held or quarantined) keep what they were paid, so they count in the
    accumulators at what they keep, before the data's settlements
    (:mod:`puhui.benefits.kept`): the policy's deductible and limits as the money
    actually went, never as a fresh adjudication would have them, so a settlement dated
    before them that arrives later gets only what is left and the person is never paid
    past a limit; a batch whose data holds them all re-decides the year in time order.
    Returns ({policy: {accumulator: fen}} of the kept ones under the block's policies,
    the calculator's ``priors`` or None)."""
    if not len(carried):
        return {}, None
    ids = sorted(set(carried["setl_id"].astype(str)))
    mine = set(pol_b["policy_no"].astype(str))
    kept = {p: uses for p, uses in kept_by_policy(ctx.product, ledger.kept_of(con, ids)).items()
            if p in mine}
    priors = pd.DataFrame([(p, a, fen) for p, uses in kept.items() for a, fen in uses.items()],
                          columns=["policy_no", "accumulator", "used"])
    return kept, priors if len(priors) else None


def _with_kept(rows: list[tuple[str, str, int]], kept: dict[str, dict[str, int]]
               ) -> list[tuple[str, str, int]]:
    """The policies' accumulators (policy, accumulator, fen) with the kept uses of their
    held and quarantined settlements added (a policy with only those gets rows too)."""
    if not kept:
        return rows
    out = {(p, a): v for p, a, v in rows}
    for pol, uses in kept.items():
        for acc, fen in uses.items():
            out[(pol, acc)] = out.get((pol, acc), 0) + fen
    return [(p, a, v) for (p, a), v in out.items()]


def _mark_not_payable(long: pd.DataFrame, ctx: _BlockContext, paid: pd.DataFrame) -> None:
    """Proactive scans pay only with consent; a claimed batch with a claims file pays
    only what was claimed (in place). A settlement the ledger paid (``paid``: net paid
    per settlement and benefit) was claimed when it was paid: a later claims file that
    does not name it (it lists the claims filed since) leaves it claimed, so it is
    taken to what is due like any other (kept at its old payout while the limit ran
    over its due instead, a person was paid past the annual limit: 4,200 of 4,000)."""
    if ctx.mode == "proactive":
        has = long["psn_no"].astype(str).map(ctx.consent)
        no_consent = ~has.where(has.notna(), False).astype(bool).to_numpy()
        denied = no_consent & (long["status"] != "denied").to_numpy()
        long.loc[denied, ["status", "reason"]] = ["denied", "NO_CONSENT"]
    elif ctx.claims is not None:
        was_paid = set(paid.loc[pd.to_numeric(paid["paid"]) != 0, "applies_to"].astype(str)) \
            if len(paid) else set()
        ids = long["setl_id"].astype(str)
        unclaimed = ((long["payout_amt"] > 0).to_numpy() & ~ids.isin(ctx.claims).to_numpy()
                     & ~ids.isin(was_paid).to_numpy())
        long.loc[unclaimed, ["status", "reason"]] = ["denied", "NOT_CLAIMED"]


def _entries(long: pd.DataFrame, paid: pd.DataFrame, rev_b: pd.DataFrame,
             ctx: _BlockContext, keep_as_paid: set = frozenset()) -> tuple[list, set]:
    """Target minus paid per settlement and benefit, as ledger entries; and the
    (settlement, benefit) pairs whose direct payout an entry adjusts. Only settlements
    the data holds get an entry: what the ledger paid for any other is left as it is
    (carried, or taken back at the end when the data is stated complete)."""
    benefits = [b.id for b in ctx.product.benefits]
    # target per (settlement, benefit): the calculator's payout; 0 for reversed originals.
    # Only rows with something due, or paid before, can need an entry: the rows of the
    # decisions are chosen first, then made into text (a block's decisions are millions)
    due = long["payout_amt"].astype("int64")
    was_paid = pd.MultiIndex.from_frame(paid[["applies_to", "benefit"]]) if len(paid) else None
    cand = (due != 0).to_numpy()
    if was_paid is not None:
        cand |= pd.MultiIndex.from_arrays([long["setl_id"].astype(str),
                                           long["benefit"]]).isin(was_paid)
    rows = long[cand]
    target = pd.DataFrame({"applies_to": rows["setl_id"].astype(str), "benefit": rows["benefit"],
                           "psn_no": rows["psn_no"].astype(str), "policy_no": rows["policy_no"],
                           "target": due[cand],
                           "leave": rows["reason"].isin(["NO_CONSENT", "NOT_CLAIMED"]).to_numpy()})
    if len(rev_b):
        gone = pd.DataFrame({
            "applies_to": np.repeat(rev_b["refund_of"].astype(str).to_numpy(), len(benefits)),
            "benefit": np.tile(benefits, len(rev_b)),
            "psn_no": np.repeat(rev_b["psn_no"].astype(str).to_numpy(), len(benefits)),
            "policy_no": None, "target": 0, "leave": False})
        # a reversed original's rows have nothing due: only those paid before
        keep = pd.MultiIndex.from_frame(gone[["applies_to", "benefit"]]).isin(was_paid) \
            if was_paid is not None else np.zeros(len(gone), bool)
        target = pd.concat([target, gone[keep]], ignore_index=True)
    m = target.merge(paid, on=["applies_to", "benefit"], how="outer")
    m["paid"] = pd.to_numeric(m["paid"]).fillna(0).astype("int64")
    m["target"] = pd.to_numeric(m["target"]).fillna(0).astype("int64")
    # a row the data holds under this person gets its entry; only rows paid before can
    # be of a settlement the data does not hold (for this person)
    outside = np.zeros(len(m), bool)
    was = (m["paid"] != 0).to_numpy()
    if was.any():
        mw = m[was]
        outside[was] = ~_in_keys(ctx.data_keys, mw["applies_to"], mw["psn_no"].where(
            mw["psn_no"].notna(), mw["paid_psn"])) & ~mw["applies_to"].isin(ctx.rev_of).to_numpy()
    m["leave"] = m["leave"].where(m["leave"].notna(), False).astype(bool) | outside | \
        m["applies_to"].isin(ctx.frozen).to_numpy() | \
        m["applies_to"].isin(ctx.taking_back).to_numpy() | \
        m["applies_to"].isin(keep_as_paid).to_numpy()
    m["psn_no"] = m["psn_no"].where(m["psn_no"].notna(), m["paid_psn"])
    m["policy_no"] = m["policy_no"].where(m["policy_no"].notna(), m["paid_policy"])
    m["diff"] = m["target"] - m["paid"]
    todo = m[(m["diff"] != 0) & ~m["leave"]]
    reversed_ = todo["applies_to"].isin(ctx.rev_of).to_numpy()
    kind = np.where(reversed_, "reverse", np.where(todo["paid"].to_numpy() == 0, "pay", "adjust"))
    setl = np.where(reversed_, todo["applies_to"].map(ctx.rev_of), todo["applies_to"])
    stamp = ledger.now()
    entries = list(zip(setl, todo["applies_to"], todo["benefit"], todo["psn_no"],
                       todo["policy_no"].where(todo["policy_no"].notna(), None),
                       todo["diff"].astype(int).tolist(), kind, [ctx.batch_id] * len(todo),
                       [stamp] * len(todo)))
    by_direct = pd.to_numeric(todo["by_direct"]).fillna(0).to_numpy() > 0
    adj = todo[by_direct & (kind == "adjust")]
    return entries, set(zip(adj["applies_to"], adj["benefit"]))


def _to_store(st_b: pd.DataFrame, eligible: np.ndarray, stored: pd.DataFrame,
              rev_b: pd.DataFrame, lines: pd.DataFrame | None) -> tuple[list, list, list]:
    """The block's settlements to keep in the ledger (those with something eligible
    that the ledger does not hold as they are now, with their list lines) and those to
    forget (reversed, or nothing eligible any more)."""
    cols = list(ledger.STORED)
    mine = st_b.loc[eligible, cols]
    rows = pd.DataFrame({
        "setl_id": mine["setl_id"].astype(str).to_numpy(),
        "psn_no": mine["psn_no"].astype(str).to_numpy(),
        "setl_time": np.datetime_as_string(mine["setl_time"].to_numpy().astype(
            "datetime64[D]")).astype(object),
        "med_type": mine["med_type"].astype(str).to_numpy(),
        "hosp_lv": mine["hosp_lv"].to_numpy(dtype="int64"),
        "insutype": mine["insutype"].astype(str).to_numpy(),
        **{c: mine[c].to_numpy(dtype="int64") for c in cols[6:]}})
    if len(stored):
        old = stored[cols].assign(setl_time=stored["setl_time"].dt.strftime("%Y-%m-%d"),
                                  med_type=stored["med_type"].astype(str),
                                  insutype=stored["insutype"].astype(str))
        same = rows.merge(old, how="left", indicator=True)["_merge"].eq("both").to_numpy()
        rows = rows[~same]
    forget: list = []
    if len(stored):     # of the settlements the ledger holds: reversed, or nothing eligible
        held = set(stored["setl_id"].astype(str))
        gone = set(rev_b["refund_of"].astype(str)) if len(rev_b) else set()
        lapsed = st_b.loc[~eligible, "setl_id"].astype(str)
        gone |= set(lapsed[lapsed.isin(held)])
        forget = sorted(gone & held)
    store_lines: list = []
    if lines is not None and len(lines) and len(rows):
        ln = lines[lines["setl_id"].astype(str).isin(set(rows["setl_id"]))]
        store_lines = list(zip(ln["setl_id"].astype(str), ln["hilist_code"].astype(str),
                               ln["list_class"].astype(str),
                               ln["amount"].to_numpy(dtype="int64").tolist()))
    return list(rows.itertuples(index=False, name=None)), store_lines, forget


def _settlement_rows(st: pd.DataFrame, reasons, product, status: str) -> pd.DataFrame:
    """EOB rows of settlements nothing is computed for (held, quarantined, reversed
    earlier): one per settlement and benefit, settlement by settlement, no amount and
    no entry. ``reasons``: one code, or one per row of ``st``."""
    k = len(product.benefits)
    return pd.DataFrame({
        "setl_id": np.repeat(st["setl_id"].to_numpy(dtype=object), k),
        "psn_no": np.repeat(st["psn_no"].to_numpy(dtype=object), k), "policy_no": None,
        "benefit": np.tile([b.id for b in product.benefits], len(st)),
        "eligible_amt": 0.0, "deductible_amt": 0.0, "ratio": 0.0, "payout_amt": 0.0,
        "target_amt": 0.0, "status": status,
        "reason": np.repeat(np.asarray(reasons, dtype=object), k) if np.ndim(reasons)
        else reasons, "entry": ""})


def _reversed_rows(st: pd.DataFrame, product) -> pd.DataFrame:
    """EOB rows of originals that an earlier or concurrent batch reversed: status
    reversed, reason REVERSED, no entry."""
    return _settlement_rows(st, "REVERSED", product, "reversed")


def _no_policy_rows(st: pd.DataFrame, product) -> UniformPart:
    """EOB rows of people with no policy of the product: denied, nothing computed. Each
    settlement's ids held once, as Arrow text; the rows themselves are made where the
    part is written (:class:`UniformPart`; most rows of a batch are these)."""
    return UniformPart(_arrow_text(st["setl_id"]), _arrow_text(st["psn_no"]),
                       eob_categories(product), "denied", "NO_POLICY", list(EOB_COLUMNS))


def _arrow_text(values):
    """Ids (str, or None) as an Arrow string array; other values as their text, as
    ``astype(str)`` gives it."""
    import pyarrow as pa

    arr = np.asarray(values, dtype=object)
    try:
        return pa.array(arr, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(pd.Series(arr).astype(str).to_numpy(dtype=object), type=pa.string())


def _columns(cols: dict, rows: int) -> pd.DataFrame:
    """A frame of ``cols`` (arrays of ``rows``) holding the arrays themselves: a lean
    part's columns are not copied into blocks by type (millions of rows a block)."""
    index = pd.RangeIndex(rows)
    return pd.concat([pd.Series(v, index=index, name=c, copy=False) for c, v in cols.items()],
                     axis=1, copy=False)


EOB_COLUMNS = ("setl_id", "psn_no", "policy_no", "benefit", "eligible_amt", "deductible_amt",
               "ratio", "payout_amt", "target_amt", "status", "reason", "entry")
#: The EOB's text id columns (held once per settlement in a :class:`LeanPart`).
ID_COLUMNS = ("setl_id", "psn_no", "policy_no")


def _lean_ids(long: pd.DataFrame, rev_b: pd.DataFrame, k: int, n: int) -> bool:
    """Whether a block's EOB can hold its ids once per settlement: ``long`` is the
    calculator's decisions, benefit after benefit over the same ``n`` settlements
    (:meth:`Decisions.long`), and every id column is plain text (object)."""
    if not k or not n or len(long) != n * k:
        return False
    return all(long[c].dtype == object for c in ID_COLUMNS) and \
        all(rev_b[c].dtype == object for c in ("setl_id", "psn_no") if c in rev_b)


def _lean_eob_rows(long, rev_b, benefits, n, entry, target, status, reason, kinds, mine,
                   counts) -> LeanPart:
    """:func:`_eob_rows`'s part with each settlement's ids held once (``long`` repeats
    its ``n`` settlements for each benefit; a reversal's rows, and its original's, repeat
    theirs)."""
    k = len(benefits)
    r = len(rev_b)
    own = np.tile(np.arange(n), k)
    cols = {"benefit": long["benefit"].to_numpy(), "eligible_amt": long["eligible_amt"] / 100,
            "deductible_amt": long["deductible_amt"] / 100, "ratio": long["ratio_bp"] / 10000,
            "payout_amt": entry / 100, "target_amt": target / 100, "status": status,
            "reason": reason, "entry": kinds}
    cols = {c: np.asarray(v) for c, v in cols.items()}
    setl = long["setl_id"].to_numpy()[:n]
    psn = long["psn_no"].to_numpy()[:n]
    pol = long["policy_no"].to_numpy()[:n]
    if not r:
        frame = _columns(cols, n * k)
        frame.attrs["status_counts"] = counts
        return LeanPart(frame, {"setl_id": (setl, own), "psn_no": (psn, own),
                                "policy_no": (pol, own)}, list(EOB_COLUMNS))
    # as :func:`_eob_rows`: the reversals' rows carry the undoing entries, then the
    # reversed originals' rows, each reversal's (original's) benefits in turn
    rev_entries = mine[mine["kind"] == "reverse"].groupby(["applies_to", "benefit"])["payout_fen"].sum()
    origs = rev_b["refund_of"].astype(str).to_numpy()
    orig = np.repeat(origs, k)
    ben = np.tile(np.asarray(benefits, dtype=object), r)
    amt = rev_entries.reindex(pd.MultiIndex.from_arrays([orig, ben]), fill_value=0).to_numpy(
        dtype="int64")
    each = np.repeat(np.arange(r), k)
    zero = np.zeros(r * k)

    def rows(amount, why):
        return {"benefit": ben, "eligible_amt": zero, "deductible_amt": zero, "ratio": zero,
                "payout_amt": amount / 100, "target_amt": zero,
                "status": np.full(r * k, "reversed", dtype=object),
                "reason": np.full(r * k, why, dtype=object),
                "entry": np.where(amount != 0, "reverse", "").astype(object)}

    parts = (cols, rows(amt, "REVERSAL"), rows(np.zeros(r * k, "int64"), "REVERSED"))
    frame = _columns({c: np.concatenate([p[c] for p in parts]) for c in cols},
                     n * k + 2 * r * k)
    counts["reversed"] = counts.get("reversed", 0) + 2 * r
    frame.attrs["status_counts"] = counts
    ids = {"setl_id": (np.concatenate([setl, rev_b["setl_id"].to_numpy(), origs]),
                       np.concatenate([own, n + each, n + r + each])),
           "psn_no": (np.concatenate([psn, rev_b["psn_no"].to_numpy()]),
                      np.concatenate([own, n + each, n + each])),
           "policy_no": (np.concatenate([pol, np.array([None], dtype=object)]),
                         np.concatenate([own, np.full(2 * r * k, n)]))}
    return LeanPart(frame, ids, list(EOB_COLUMNS))


def _eob_rows(long: pd.DataFrame, mine: pd.DataFrame, rev_b: pd.DataFrame,
              benefits: list[str], direct_adjusted: set = frozenset()
              ) -> pd.DataFrame | LeanPart:
    own_rows = mine[mine["setl_id"] == mine["applies_to"]].groupby(["setl_id", "benefit"])
    own = own_rows["payout_fen"].sum()
    own_kind = own_rows["kind"].last()
    # this batch's entries, looked up only for the settlements that have one (``long``
    # holds the same settlements once per benefit, so one benefit's ids are enough)
    k = len(benefits)
    n = len(long) // k if k else 0
    entry = np.zeros(len(long), dtype="int64")
    kinds = np.full(len(long), "", dtype=object)
    if len(own) and n:
        hit = np.tile(long["setl_id"].iloc[:n].isin(
            own.index.get_level_values(0)).to_numpy(), k)
        key = pd.MultiIndex.from_arrays([long["setl_id"].to_numpy()[hit],
                                         long["benefit"].to_numpy()[hit]])
        entry[hit] = own.reindex(key, fill_value=0).to_numpy(dtype="int64")
        kinds[hit] = own_kind.reindex(key, fill_value="").to_numpy(dtype=object)
    status = long["status"].to_numpy(dtype=object).copy()
    reason = long["reason"].to_numpy(dtype=object).copy()
    target = long["payout_amt"].to_numpy()
    already = (entry == 0) & (target > 0) & (status != "denied")
    status[(entry != 0) & (status != "denied")] = "paid"
    status[already] = "zero"
    reason[already] = "ALREADY_PAID"
    if direct_adjusted:
        pairs = pd.MultiIndex.from_arrays([long["setl_id"].astype(str), long["benefit"]])
        reason[pairs.isin(list(direct_adjusted)) & (entry != 0)] = "DIRECT_ADJUSTED"
    # settlements by their most telling status, for the summary: ``long`` holds the
    # same settlements once per benefit, benefit after benefit
    rank = pd.Series(status).map({s: i for i, s in enumerate(_Tally.STATUS_ORDER)}).to_numpy()
    worst = rank.reshape(k, -1).min(axis=0) if len(rank) else rank
    counts = {_Tally.STATUS_ORDER[i]: int(c) for i, c in zip(*np.unique(worst, return_counts=True))}
    if _lean_ids(long, rev_b, k, n):
        return _lean_eob_rows(long, rev_b, benefits, n, entry, target, status, reason, kinds,
                              mine, counts)
    eob = pd.DataFrame({
        "setl_id": long["setl_id"], "psn_no": long["psn_no"], "policy_no": long["policy_no"],
        "benefit": long["benefit"], "eligible_amt": long["eligible_amt"] / 100,
        "deductible_amt": long["deductible_amt"] / 100, "ratio": long["ratio_bp"] / 10000,
        "payout_amt": entry / 100, "target_amt": target / 100, "status": status,
        "reason": reason, "entry": kinds,
    })
    if not len(rev_b):
        eob.attrs["status_counts"] = counts
        return eob
    # a reversal's rows carry the negative entries undoing its original's payouts; the
    # reversed original appears as reversed with no amount
    k = len(benefits)
    rev_entries = mine[mine["kind"] == "reverse"].groupby(["applies_to", "benefit"])["payout_fen"].sum()
    orig = np.repeat(rev_b["refund_of"].astype(str).to_numpy(), k)
    ben = np.tile(np.asarray(benefits, dtype=object), len(rev_b))
    # int64 even when this batch has no entries (an empty frame's sums are object)
    amt = rev_entries.reindex(pd.MultiIndex.from_arrays([orig, ben]), fill_value=0).to_numpy(
        dtype="int64")
    psn = np.repeat(rev_b["psn_no"].to_numpy(), k)

    def rows(setl, amount, why):
        return pd.DataFrame({
            "setl_id": setl, "psn_no": psn, "policy_no": None, "benefit": ben,
            "eligible_amt": 0.0, "deductible_amt": 0.0, "ratio": 0.0,
            "payout_amt": amount / 100, "target_amt": 0.0, "status": "reversed",
            "reason": why, "entry": np.where(amount != 0, "reverse", "")})

    out = pd.concat([eob, rows(np.repeat(rev_b["setl_id"].to_numpy(), k), amt, "REVERSAL"),
                     rows(orig, np.zeros(len(orig), "int64"), "REVERSED")], ignore_index=True)
    # each reversal and each reversed original: one settlement, reversed
    counts["reversed"] = counts.get("reversed", 0) + 2 * len(rev_b)
    out.attrs["status_counts"] = counts
    return out


def _quarantine_rows(st: pd.DataFrame, quarantined: dict[int, str], product,
                     status: str = "quarantined") -> pd.DataFrame:
    if not quarantined:
        return _empty_eob()
    rows = sorted(quarantined)
    out = _settlement_rows(st.loc[rows], [quarantined[r] for r in rows], product, status)
    out.attrs["uniform"] = (status, len(quarantined))   # (the tally)
    return out


STATUSES = ("paid", "zero", "denied", "quarantined", "reversed")
ENTRY_KINDS = ("", "pay", "adjust", "reverse")


def eob_categories(product: Product) -> dict[str, list[str]]:
    """Fixed categories of the EOB's code columns: the same dictionary in every row group
    and in every batch's file (fastparquet, still a reader of these files, decodes
    appended row groups correctly only when their categories are the same)."""
    from puhui.benefits.reasons import REASONS
    from puhui.claims.flags import FLAGS
    from puhui.claims.report import BATCH_REASONS

    reasons = [*REASONS, *BATCH_REASONS, *sorted(set(QUARANTINE.values())), "Q_INVALID",
               *FLAGS]
    return {"benefit": [b.id for b in product.benefits], "status": list(STATUSES),
            "reason": list(dict.fromkeys(reasons)), "entry": list(ENTRY_KINDS)}


class _Tally:
    """Counts and totals built block by block (the EOB need not be in memory)."""

    STATUS_ORDER = ("quarantined", "reversed", "paid", "denied", "zero")

    def __init__(self):
        self.by: pd.DataFrame | None = None
        self.status: dict[str, int] = {}
        self.paid = 0                                  # fen
        self.carried = 0       # settlements the data lacks, adjudicated from the ledger

    def add(self, eob: pd.DataFrame) -> None:
        # A part of people without a policy or of quarantined settlements (``uniform``:
        # one status, every amount 0, each settlement's benefits in turn) counts as its first settlement's rows
        # weighted by the number of settlements: no pass over its millions of rows.
        src, weight = eob, 1
        if isinstance(eob, UniformPart):
            src, weight = eob.first().to_lean().frame, eob.n
        elif "uniform" in eob.attrs and eob.attrs["uniform"][1] > 0:
            weight = eob.attrs["uniform"][1]
            src = eob.iloc[:len(eob) // weight]
        # in fen, so that parts add up exactly in any order
        fen = {c: (src[f"{c}_amt"].to_numpy() * 100).round().astype("int64") * weight
               for c in ("eligible", "payout", "target")}
        g = pd.DataFrame({"benefit": src["benefit"], "status": src["status"],
                          "rows": np.full(len(src), weight, dtype="int64"), **fen}).groupby(
            ["benefit", "status"], observed=True)[["rows", "eligible", "payout", "target"]].sum()
        self.by = g if self.by is None else self.by.add(g, fill_value=0)
        # each settlement is in exactly one emitted part (blocks partition people;
        # quarantined rows come once at the end), so per-part counts add up; every part
        # says how many settlements it holds by status (its maker knows its shape)
        if "uniform" in eob.attrs:
            counts = dict([eob.attrs["uniform"]])
        elif "status_counts" in eob.attrs:
            counts = eob.attrs["status_counts"]
        else:
            raise ValueError("an EOB part without its settlements' status counts")
        for key, n in counts.items():
            self.status[key] = self.status.get(key, 0) + n
        self.paid += int(fen["payout"].sum())
        self.carried += int(eob.attrs.get("carried", 0))

    def merge(self, other: _Tally) -> None:
        """Add another tally (of other blocks) to this one."""
        if other.by is not None:
            self.by = other.by if self.by is None else self.by.add(other.by, fill_value=0)
        for k, v in other.status.items():
            self.status[k] = self.status.get(k, 0) + v
        self.paid += other.paid
        self.carried += other.carried

    def summary(self, batch_id: str, mode: str, product: Product, n_input: int) -> dict:
        by = self.by if self.by is not None else pd.DataFrame()
        n = sum(self.status.values())
        return {
            "batch": batch_id, "mode": mode, "product": product.id,
            "settlements_in": int(n_input),
            "settlements_in_eob": int(n),
            "settlements_by_status": dict(sorted(self.status.items(), key=lambda kv: -kv[1])),
            "reconciles": int(n) == int(n_input),
            "paid_this_batch_yuan": self.paid / 100,
            "by_benefit_and_status": [
                {"benefit": b, "status": st, "rows": int(r["rows"]),
                 "eligible_yuan": int(r["eligible"]) / 100,
                 "paid_yuan": int(r["payout"]) / 100,
                 "target_yuan": int(r["target"]) / 100}
                for (b, st), r in by.iterrows()],
        }
