"""Adjudication of DataFrames in yuan, without a ledger: :func:`puhui.adjudicate`.

What a claims batch (:mod:`puhui.claims.batch`) does before its calculator, on frames a
user holds (read with pandas from the Parquet files, or from :func:`puhui.read_fund`):

1. the frames are checked as ``puhui validate`` checks the files (written to a
   temporary folder and validated there: the same rules and messages); money columns
   holding integers are refused as fen (:func:`puhui.fund.frames.check_yuan`);
2. the policies are the product's: ``product_id`` equal to its id, each within its
   policy period (a policy of the product outside it is refused: the data or the
   product file is wrong); none at all is refused too;
3. reversals and the originals they undo are dropped (:func:`~puhui.claims.batch.reversal_map`),
   settlements the fraud and quality flags hold are left out (the batch's flags);
4. the product's calculator (:func:`puhui.benefits.calculator.adjudicate`) on the rest,
   with the renewals among the frames' policies (waiting periods) and the policies'
   ``claim_free_years`` where the column is filled for every policy (else 0, as a batch
   on a new ledger derives them: no payment history is known).

The answer is the EOB of ``eob.parquet`` with its column names and meaning, amounts in
yuan; with no ledger there is nothing paid before, so ``payout_amt`` is the whole
payout. A batch's first run on a new ledger pays the same per settlement and benefit
(tested on the shipped sample).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS
from puhui.products.model import Product

#: The EOB's columns (``eob.parquet`` without the batch's ``target_amt`` and ``entry``).
EOB_COLUMNS = ("setl_id", "psn_no", "policy_no", "benefit", "eligible_amt",
               "deductible_amt", "ratio", "payout_amt", "status", "reason")


def adjudicate_frames(product: Product, settlements: pd.DataFrame, policies: pd.DataFrame,
                      lines: pd.DataFrame | None = None,
                      persons: pd.DataFrame | None = None,
                      whole_yuan: bool = False) -> pd.DataFrame:
    """The EOB (yuan) of ``settlements`` under ``product`` and the ``policies`` (yuan
    frames; see the module docstring). Without ``persons``, the rules that read them
    (a settlement after the person's death) are not checked; ``whole_yuan``: amounts
    all whole are yuan, not fen held as floats."""
    from puhui.fund.files import read_fund

    for table, df in ((SETTLEMENTS, settlements), (POLICIES, policies)):
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"{table.name}: give a pandas DataFrame, not "
                             f"{type(df).__name__}")
    frames = {SETTLEMENTS: settlements, POLICIES: policies, SETTLEMENT_LINES: lines,
              PERSONS: persons if persons is not None else stand_in_persons(
                  settlements, policies)}
    with tempfile.TemporaryDirectory(prefix="puhui-frames-") as tmp:
        _checked_folder(frames, Path(tmp), whole_yuan)
        data = read_fund(tmp)
    return decide(product, data)


def stand_in_persons(settlements: pd.DataFrame, policies: pd.DataFrame) -> pd.DataFrame:
    """A persons table of the frames' people for validation to run on, with values that
    break no rule (the calculator reads nothing of persons)."""
    ids = pd.unique(pd.concat([settlements.get("psn_no", pd.Series(dtype=object)),
                               policies.get("psn_no", pd.Series(dtype=object))])
                    .dropna().astype(str))
    n = len(ids)
    return pd.DataFrame({"psn_no": ids, "birth_year": np.full(n, 1960, "int64"),
                         "gender": "1", "insutype": "310", "retired": False,
                         "death_date": pd.Series([pd.NaT] * n, dtype="datetime64[ns]")})


def _checked_folder(frames: dict, folder: Path, whole_yuan: bool = False) -> None:
    """Write the frames as a fund-data folder and validate it; refuse what breaks a rule
    (the messages name the tables, not the temporary folder)."""
    from puhui.fund.frames import write_frame
    from puhui.fund.validate import validate_dir

    for table, df in frames.items():
        if df is not None:
            write_frame(df, folder, table, whole_yuan=whole_yuan)
    try:
        rep = validate_dir(folder)
    except InputError as exc:
        raise InputError(str(exc).replace(f"{folder}/", "").replace(str(folder), "the frames")
                         ) from None
    if not rep.ok:
        text = rep.messages().replace(f"{folder}/", "").replace(str(folder), "the frames")
        n = len(rep.problems)
        raise InputError(f"{text}\nthe frames: {n} rule{'s' if n != 1 else ''} broken; "
                         f"fix the data (`puhui validate` on the files lists the same)")


def decide(product: Product, data) -> pd.DataFrame:
    """The EOB (yuan) of valid fund data in engine types (fen): the batch's preparation,
    the calculator, every settlement listed."""
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.quantities import LineMatcher
    from puhui.claims.batch import drug_items, list_lines, reversal_map
    from puhui.claims.flags import flag_settlements

    st = data.settlements.reset_index(drop=True)
    pol = product_policies(product, data.policies)
    rev_of = reversal_map(st, np.ones(len(st), bool))
    is_rev = st["refund_of"].notna().to_numpy()
    eff = ~is_rev & ~st["setl_id"].isin(rev_of).to_numpy()
    held = flag_settlements(st[eff], data.lines, drug_items())
    eff[held.index.to_numpy(dtype="int64")] = False
    matcher = LineMatcher(product)
    dec = adjudicate(product, st[eff], pol, list_lines(data.lines, matcher), matcher=matcher)
    long = dec.long()
    parts = [pd.DataFrame({
        "setl_id": long["setl_id"].astype(str), "psn_no": long["psn_no"].astype(str),
        "policy_no": long["policy_no"], "benefit": long["benefit"],
        "eligible_amt": long["eligible_amt"] / 100, "deductible_amt": long["deductible_amt"] / 100,
        "ratio": long["ratio_bp"] / 10000, "payout_amt": long["payout_amt"] / 100,
        "status": long["status"], "reason": long["reason"]})]
    if len(held):
        parts.append(_listed(st.loc[held.index], product, "quarantined", held.to_numpy()))
    parts.append(_listed(st[is_rev], product, "reversed", "REVERSAL"))
    parts.append(_listed(st[st["setl_id"].isin(rev_of).to_numpy()], product, "reversed",
                         "REVERSED"))
    eob = pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)
    eob.attrs["unit"] = "yuan"
    return eob


def _listed(st: pd.DataFrame, product: Product, status: str, reasons) -> pd.DataFrame:
    """EOB rows of settlements nothing is computed for: one per settlement and benefit,
    no amount (the batch's rows for them, with nothing paid before)."""
    k = len(product.benefits)
    return pd.DataFrame({
        "setl_id": np.repeat(st["setl_id"].astype(str).to_numpy(dtype=object), k),
        "psn_no": np.repeat(st["psn_no"].astype(str).to_numpy(dtype=object), k),
        "policy_no": None, "benefit": np.tile([b.id for b in product.benefits], len(st)),
        "eligible_amt": 0.0, "deductible_amt": 0.0, "ratio": 0.0, "payout_amt": 0.0,
        "status": status,
        "reason": np.repeat(np.asarray(reasons, dtype=object), k) if np.ndim(reasons)
        else reasons}, columns=list(EOB_COLUMNS))


def product_policies(product: Product, policies: pd.DataFrame) -> pd.DataFrame:
    """The policies of ``product`` (engine types), with ``renewal`` (any policy of the
    frames ending the day before) and ``claim_free_years``. Refuses none, and any of
    the product's policies outside its policy period."""
    from puhui.benefits.claim_free import claim_free_years
    from puhui.claims.batch import refuse_near_product_ids, renews

    refuse_near_product_ids(product, policies, "policies")
    mine = (policies["product_id"].astype(str) == product.id).to_numpy()
    pol = policies[mine].reset_index(drop=True)
    if not len(pol):
        held = sorted(policies["product_id"].astype(str).unique())
        raise InputError(f"policies: no policy is for product {product.id} (policy period "
                         f"{product.start} to {product.end}); the policies are for: "
                         f"{', '.join(held[:10]) or 'none'}. Give the product these policies "
                         f"are for, or the policies of this product")
    start, end = pol["start_date"].dt.date, pol["end_date"].dt.date
    outside = ((start < product.start) | (end > product.end)).to_numpy()
    if outside.any():
        ex = ", ".join(pol["policy_no"].astype(str)[outside].head(3))
        raise InputError(f"policies: {int(outside.sum()):,} policies of {product.id} lie "
                         f"outside its policy period {product.start} to {product.end} "
                         f"(e.g. {ex}); a product's terms apply within its period only: "
                         f"check the policies' product_id and dates, or the product file")
    if "claim_free_years" not in pol.columns or pol["claim_free_years"].isna().any():
        # derived from the policies and the payments known: none (a batch on a new ledger)
        years = pd.Series(claim_free_years(policies, {}, known=set()),
                          index=policies["policy_no"].astype(str).to_numpy())
        years = years[~years.index.duplicated()]
        pol = pol.assign(claim_free_years=years.reindex(pol["policy_no"].astype(str))
                         .fillna(0).to_numpy())
    none = pd.DataFrame({"policy_no": pd.Series(dtype=object), "psn_no": pd.Series(dtype=object),
                         "start_date": pd.Series(dtype="datetime64[ns]"),
                         "end_date": pd.Series(dtype="datetime64[ns]")})
    return pol.assign(renewal=renews(pol, policies, none),
                      claim_free_years=pol["claim_free_years"].astype("int64"))


def settlement_record(row, lines: pd.DataFrame | None = None) -> dict:
    """A settlement of a frame (a row of ``settlements`` in yuan, as a Series or a dict)
    as the JSON object a direct payout takes (docs/claims.md "Direct payouts"): its
    filled fields, dates as ISO text, amounts as yuan, codes as text, with its
    ``lines`` (the rows of ``lines`` with its setl_id) where there are any."""
    from puhui.fund.frames import check_yuan

    row = pd.Series(row)
    check_yuan(row.to_frame().T.infer_objects(), SETTLEMENTS, "settlement")
    out = {}
    for k, v in row.items():
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            continue
        if isinstance(v, pd.Timestamp):
            v = v.isoformat(sep=" ")
        elif isinstance(v, (np.floating, float)):
            v = round(float(v), 2)
        elif isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[str(k)] = v
    if lines is not None and len(lines):
        mine = lines[lines["setl_id"].astype(str) == str(out.get("setl_id"))]
        out["lines"] = [{"hilist_code": str(r.hilist_code), "list_class": str(r.list_class),
                         "amount": round(float(r.amount), 2)}
                        for r in mine.itertuples(index=False)]
    return out
