"""What a product's benefits pay on, per settlement (int64 fen).

Settlement quantities (from the settlement's fields)::

    in_list_self_pay     = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay   (目录内自付)
    out_of_list_self_pay = fulamt_ownpay_amt + overlmt_selfpay                  (目录外自费)
    self_pay             = psn_part_amt

Line quantities (``lines:<list>:<select>``): the sum of the settlement's lines whose
``hilist_code`` is an item of the named list chosen by ``select`` and in force on the
settlement date. With ``exclude_basic_paid`` (the default), lines that basic insurance
paid (class A or B) are left out and counted apart, so the reason can say so.

One :class:`LineMatcher` per product serves both the vectorised and the per-settlement
faces of the calculator.

Both faces refuse (:class:`~puhui.errors.InputError`) a settlement whose amounts lie
outside the accepted range of the fund data (within +/-
:data:`~puhui.fund.schema.MAX_SETTLEMENT_YUAN` yuan): validation refuses or quarantines
such rows first, and this keeps the faces equal even when a caller skips it (the
vectorised int64 engine could not pay them correctly; the per-settlement face could).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.drug_lists import DrugList, load_lists
from puhui.errors import InputError, RuleFileError
from puhui.fund.schema import MAX_SETTLEMENT_FEN, MAX_SETTLEMENT_YUAN
from puhui.products.model import LineSpec, Product

BASIC_PAID_CLASSES = ("A", "B")


#: The settlement amounts (fen) the quantities are made of.
QUANTITY_INPUTS = ("psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay")


def _out_of_range(column: str, n: int, examples: list[str]) -> InputError:
    return InputError(
        f"settlements: column {column}: {n} settlement(s) outside the accepted range of "
        f"-{MAX_SETTLEMENT_YUAN:,} to {MAX_SETTLEMENT_YUAN:,} yuan (e.g. "
        f"{', '.join(examples)}); they cannot be adjudicated. Run 'puhui validate', which "
        f"lists them, and correct them (docs/data-schema.md, Bounds)")


def settlement_quantities(st: pd.DataFrame) -> dict[str, np.ndarray]:
    amounts = {c: st[c].to_numpy(dtype="int64") for c in QUANTITY_INPUTS}
    for c, v in amounts.items():
        if len(v) and (int(v.max()) > MAX_SETTLEMENT_FEN or int(v.min()) < -MAX_SETTLEMENT_FEN):
            bad = np.flatnonzero(np.abs(v.astype("float64")) > MAX_SETTLEMENT_FEN)
            ids = st["setl_id"].to_numpy(dtype=object)[bad[:3]] if "setl_id" in st else bad[:3]
            raise _out_of_range(c, len(bad), [str(i) for i in ids])
    psn = amounts["psn_part_amt"]
    out_list = amounts["fulamt_ownpay_amt"] + amounts["overlmt_selfpay"]
    return {"in_list_self_pay": psn - out_list, "out_of_list_self_pay": out_list,
            "self_pay": psn}


def settlement_quantities_one(s: dict) -> dict[str, int]:
    for c in QUANTITY_INPUTS:
        if not -MAX_SETTLEMENT_FEN <= int(s[c]) <= MAX_SETTLEMENT_FEN:
            raise _out_of_range(c, 1, [str(s.get("setl_id", "?"))])
    out_list = int(s["fulamt_ownpay_amt"]) + int(s["overlmt_selfpay"])
    psn = int(s["psn_part_amt"])
    return {"in_list_self_pay": psn - out_list, "out_of_list_self_pay": out_list,
            "self_pay": psn}


def _select(items: pd.DataFrame, select: str) -> pd.DataFrame:
    """The list items a line benefit counts (see ``LINE_SELECT``)."""
    no = pd.Series(False, index=items.index)
    cart = items["is_cart"].astype(bool) if "is_cart" in items else no
    overseas = items["overseas"].astype(bool) if "overseas" in items else no
    mask = {"drugs": ~(cart | overseas), "cart": cart, "overseas": overseas, "all": ~no}[select]
    return items[mask]


@dataclass
class _ListItems:
    spec: LineSpec
    codes: dict[str, tuple[np.datetime64, np.datetime64]]   # code -> in force from, to


class LineMatcher:
    """The items each line benefit of a product counts, with their validity."""

    def __init__(self, product: Product, lists: dict[str, DrugList] | None = None):
        lists = lists if lists is not None else load_lists()
        self.specs: dict[str, _ListItems] = {}
        self.exclude_basic_paid = {b.quantity: b.exclude_basic_paid
                                   for b in product.benefits if b.lines}
        for b in product.benefits:
            if not b.lines or b.quantity in self.specs:
                continue
            if b.lines.list not in lists:
                raise RuleFileError(f"{product.path}: benefit '{b.id}' pays on list "
                                    f"'{b.lines.list}', which actuarial/drugs/lists.toml "
                                    f"does not have ({', '.join(sorted(lists))})")
            dl = lists[b.lines.list]
            items = _select(dl.items, b.lines.select)
            lo = np.datetime64(dl.valid_from, "D")
            hi = np.datetime64(dl.valid_to, "D")
            codes = {}
            for _, it in items.iterrows():
                f = max(lo, np.datetime64(it["valid_from"], "D")) if "valid_from" in it else lo
                t = min(hi, np.datetime64(it["valid_to"], "D")) if "valid_to" in it else hi
                codes[str(it["hilist_code"])] = (f, t)
            self.specs[b.quantity] = _ListItems(b.lines, codes)

    @property
    def quantities(self) -> list[str]:
        return list(self.specs)

    @property
    def codes(self) -> set[str]:
        """Every item code one of the product's line benefits counts: the only lines a
        line benefit reads (and the ones the ledger keeps with a settlement)."""
        out: set[str] = set()
        for li in self.specs.values():
            out |= set(li.codes)
        return out

    def line_quantities(self, st: pd.DataFrame, lines: pd.DataFrame | None
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per settlement of ``st``: (eligible amount, amount excluded as basic-paid) by
        line quantity."""
        n = len(st)
        elig = {q: np.zeros(n, "int64") for q in self.specs}
        excl = {q: np.zeros(n, "int64") for q in self.specs}
        if lines is None or not len(lines) or not self.specs:
            return elig, excl
        # Hash the lines' settlement ids (few) and probe with the settlements (many).
        line_ids = lines["setl_id"].to_numpy(dtype=object)
        uniq = pd.Index(pd.unique(line_ids))
        hit = uniq.get_indexer(st["setl_id"].to_numpy(dtype=object))
        rows = np.flatnonzero(hit >= 0)
        if not len(rows):
            return elig, excl
        row_of = np.full(len(uniq), -1, dtype="int64")
        row_of[hit[rows]] = rows
        pos_all = row_of[uniq.get_indexer(line_ids)]
        keep = pos_all >= 0
        ln = lines[keep]
        pos = pos_all[keep]
        day = st["setl_time"].to_numpy().astype("datetime64[D]")[pos]
        code = ln["hilist_code"].astype(str).to_numpy()
        amount = ln["amount"].to_numpy(dtype="int64")
        basic = np.isin(ln["list_class"].astype(str).to_numpy(), BASIC_PAID_CLASSES)
        for q, li in self.specs.items():
            table = pd.DataFrame(li.codes, index=["from", "to"]).T if li.codes else \
                pd.DataFrame(columns=["from", "to"])
            idx = pd.Index(table.index).get_indexer(code)
            on = idx >= 0
            if on.any():
                f = table["from"].to_numpy().astype("datetime64[D]")[np.maximum(idx, 0)]
                t = table["to"].to_numpy().astype("datetime64[D]")[np.maximum(idx, 0)]
                on &= (day >= f) & (day <= t)
            ex = on & basic if self.exclude_basic_paid[q] else np.zeros_like(on)
            np.add.at(elig[q], pos[on & ~ex], amount[on & ~ex])
            np.add.at(excl[q], pos[ex], amount[ex])
        return elig, excl

    def line_quantities_one(self, setl_time, lines: list[dict]
                            ) -> tuple[dict[str, int], dict[str, int]]:
        """The same for one settlement (``lines`` as dicts)."""
        day = np.datetime64(pd.Timestamp(setl_time).date(), "D")
        elig = dict.fromkeys(self.specs, 0)
        excl = dict.fromkeys(self.specs, 0)
        for ln in lines:
            code = str(ln["hilist_code"])
            for q, li in self.specs.items():
                rng = li.codes.get(code)
                if rng is None or not (rng[0] <= day <= rng[1]):
                    continue
                if self.exclude_basic_paid[q] and str(ln["list_class"]) in BASIC_PAID_CLASSES:
                    excl[q] += int(ln["amount"])
                else:
                    elig[q] += int(ln["amount"])
        return elig, excl
