"""The fund data as pricing reads it: validated chunk by chunk, holding only the
settlements pricing can use.

Ten million person-years are some 77 million settlements: held whole, tens of GB.
Pricing reads settlements.parquet in chunks of row groups
(:data:`puhui.fund.validate.CHUNK_ROWS`), validation checks each chunk and the rules
across rows on compact hashes (:func:`puhui.fund.validate.validate_dir`), and of each
chunk it keeps a settlement
only when something in the pricing can depend on it:

- some benefit of the product may have an eligible amount on it
  (:func:`puhui.pricing.experience.may_pay`), or it has lines (the drug shares);
- it is an inpatient stay (hospital-use history, ``stays_prior``);
- its main diagnosis starts with one of the product's pre-existing ICD-10 prefixes or
  an indication of the class-C list the budget impact prices;

and never a reversal or a settlement a reversal undoes (their net effect is nil). What
is left out is mostly general outpatient visits: about four settlements in five. A
kept settlement's ``setl_id`` becomes its row in the file (an integer; its lines refer
to it the same way), its ``psn_no`` a categorical over persons.parquet's ids, and
``settlement_years`` records the years of all effective settlements. Pricing the kept
data gives the figures of pricing the whole (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund.files import FundData, join_chunks
from puhui.fund.schema import INPATIENT_MED_TYPES
from puhui.icd import matches_prefixes
from puhui.process_memory import release_free_memory
from puhui.products.model import Product

#: The settlement columns pricing reads (the benefit calculator's and the experience's).
KEPT = ("setl_id", "psn_no", "setl_time", "med_type", "hosp_lv", "insutype", "dise_code",
        "psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay")


def diagnosis_prefixes(product: Product, assumptions: dict) -> tuple[str, ...]:
    """ICD-10 prefixes whose settlements pricing reads whatever their amounts: the
    product's pre-existing list and the indications of the budget impact's class-C
    list."""
    codes = set(product.preexisting_codes)
    list_id = assumptions.get("budget_impact", {}).get("class_c_list")
    if list_id:
        from puhui.drug_lists import load_lists

        lists = load_lists()
        if list_id in lists:
            for text in lists[list_id].items["dise_codes"].dropna().astype(str):
                codes |= {c.strip() for c in text.split(";") if c.strip()}
    return tuple(sorted(codes))


def kept_rows(product: Product, st: pd.DataFrame, has_lines: np.ndarray,
              prefixes: tuple[str, ...], is_rev: np.ndarray) -> np.ndarray:
    """The settlements of a chunk pricing keeps (see the module docstring), before the
    reversed ones are known; ``is_rev``: the reversals."""
    from puhui.pricing.experience import may_pay

    keep = has_lines | may_pay(product, st, has_lines)
    keep |= st["med_type"].isin(INPATIENT_MED_TYPES).to_numpy()
    if prefixes:
        keep |= matches_prefixes(st["dise_code"], prefixes)
    return keep & ~is_rev


def load_for_pricing(data_dir: str | Path, product: Product, assumptions: dict,
                     chunk_rows: int | None = None, workers: int | None = None
                     ) -> FundData:
    """The validated fund data with the settlements pricing keeps; chunks checked by
    ``workers`` processes (default: two on a machine with two cores or more). Raises
    :class:`InputError` listing every broken rule (as ``puhui validate`` does).
    ``chunk_rows`` default: :data:`puhui.fund.validate.CHUNK_ROWS`."""
    from puhui.fund.validate import CHUNK_ROWS, default_workers

    chunk_rows = chunk_rows or CHUNK_ROWS
    workers = workers or default_workers()
    from puhui.fund.validate import validate_dir

    prefixes = diagnosis_prefixes(product, assumptions)

    def sink(start: int, st: pd.DataFrame, who: np.ndarray | None, has_lines: np.ndarray):
        """A chunk's kept settlements and every row's year (0 for reversals)."""
        is_rev = st["refund_of"].notna().to_numpy()
        years = np.where(is_rev, 0, st["setl_time"].dt.year.to_numpy()).astype("int16")
        rows = np.flatnonzero(kept_rows(product, st, has_lines, prefixes, is_rev))
        k = st[[c for c in KEPT if c in st.columns]].iloc[rows].reset_index(drop=True)
        if "dise_code" in k.columns and not isinstance(k["dise_code"].dtype,
                                                       pd.CategoricalDtype):
            # a few thousand codes repeated over millions of rows: one string each
            k["dise_code"] = pd.Categorical(k["dise_code"])
        k["setl_id"] = start + rows
        k["psn_no"] = who[rows] if who is not None else -1
        return k, years

    # psn_no read as codes (Arrow's hash, no Python string a row): the sink keeps each
    # row's person as its row in persons, never the text
    rep = validate_dir(data_dir, keep=True, chunk_rows=chunk_rows, settlements_sink=sink,
                       workers=workers)
    if not rep.ok:
        raise InputError(f"{data_dir}: the data breaks the contract; fix it before pricing "
                         f"(`puhui validate {data_dir}` lists the same):\n{rep.messages()}")
    persons, policies, lines = (rep.typed[t] for t in ("persons", "policies",
                                                       "settlement_lines"))
    parts, years = rep.take_settlement_values()
    year = np.concatenate(years)
    reversed_rows = rep.reversed_settlement_rows
    year[reversed_rows] = 0
    parts = list(parts)            # the only reference: join_chunks frees each as it goes
    if len(reversed_rows):         # the reversed settlements out, a chunk at a time
        for i, k in enumerate(parts):
            gone = np.isin(k["setl_id"].to_numpy(), reversed_rows)
            if gone.any():
                parts[i] = k[~gone].reset_index(drop=True)
    st = join_chunks(parts)
    for c in st.columns:      # the categories that occur in the kept rows
        if isinstance(st[c].dtype, pd.CategoricalDtype):
            st[c] = st[c].cat.remove_unused_categories()
    st["psn_no"] = pd.Categorical.from_codes(st["psn_no"].to_numpy(),
                                             categories=persons["psn_no"].to_numpy())
    policies = _compact_policies(policies, st["psn_no"].cat.categories)
    if lines is not None:
        lines = lines.assign(setl_id=rep.line_settlement_rows)
        lines = lines[lines["setl_id"].isin(st["setl_id"])].reset_index(drop=True)
    data = FundData(persons, policies, st, lines,
                    settlement_years=tuple(int(y) for y in np.unique(year) if y > 0))
    del rep, st, persons, policies, lines
    release_free_memory()        # the validation's hashes and the chunks, given back
    return data


def _compact_policies(policies: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    """``psn_no`` as a categorical over the persons' ``ids`` and ``product_id`` as a
    categorical: millions of policies hold a handful of products and one string per
    person, not one string per row."""
    from puhui.pricing.experience import person_rows

    who = person_rows(ids, policies["psn_no"])
    return policies.assign(
        psn_no=pd.Categorical.from_codes(who, categories=ids),
        product_id=pd.Categorical(policies["product_id"]))
