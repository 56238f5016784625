"""The basic-insurance tier: from a bill to the national settlement fields.

Deductibles and caps run per person and calendar year (an assumption: Shanghai's
medical-insurance year is not confirmed in the sources; see actuarial/basic/README.md).

A bill is split by list class (class A, class B, class C and other items on no list,
amounts above a price cap). The scheme's rule file (``actuarial/basic/``) gives the
class-B up-front share and the layers of the payer waterfall; :func:`settle` runs them
with :mod:`puhui.tiers.waterfall` and returns, to the fen::

    preselfpay_amt    = round(class_b * share)
    fulamt_ownpay_amt = class_c + self_pay
    overlmt_selfpay   = over_limit
    inscp_scp_amt     = class_a + class_b - preselfpay_amt
    hifp_pay, hifob_pay, hifmi_pay, maf_pay = sums of the layers paying into each
    act_pay_dedc      = deductible applied by the layers that report it
    psn_part_amt      = medfee_sumamt - (hifp_pay + hifob_pay + hifmi_pay + maf_pay)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.basis import Date, OneOrList, Options, Ratio, Table, Tables, Text, \
    actuarial_dir, read_checked
from puhui.errors import RuleFileError
from puhui.fund.schema import FUND_PAYMENTS
from puhui.money import apply_ratio, ratio_to_bp
from puhui.tiers.rules import WHEN, Choice, parse_choice
from puhui.tiers.waterfall import LAYER, LayerSpec, check_layers, parse_layer, run_waterfall

#: The bill's amounts by list class, int64 fen (the input of :func:`settle`).
BILL_AMOUNTS = ("amt_a", "amt_b", "amt_c", "amt_self", "amt_overlimit")
#: Attributes of a bill row that rules may test.
BILL_ATTRIBUTES = ("age", "gender", "insutype", "retired", "low_income", "hosp_lv", "med_type")
#: Quantities a basic-tier layer's base may use.
QUANTITIES = {"total", "in_scope", "class_a", "class_b", "preselfpay", "out_of_list"}




def _valid_dates(raw: dict, c, table: str) -> None:
    if raw["valid_to"] < raw["valid_from"]:
        c.fail(table, f"'valid_to' {raw['valid_to']} is before 'valid_from' {raw['valid_from']}")


#: A basic-tier layer: a layer that pays into one of the settlement's fund fields.
SCHEME_LAYER = Table({**LAYER.fields, "pays_into": Text(tuple(FUND_PAYMENTS))},
                     required=(*LAYER.required, "pays_into"), what="a basic-tier layer")
#: A basic-insurance rule file (``actuarial/basic/``): its keys and what each must be.
SCHEME_FILE = Table({
    "id": Text(), "name": Text(), "status": Text(), "region": Text(),
    "sources": OneOrList(Text()), "notes": OneOrList(Text()),
    "insutype": Text(("310", "390")),
    "valid_from": Date(), "valid_to": Date(),
    "class_b": Table({"preselfpay_share": Options(Ratio(), WHEN)},
                     what="the class-B table"),
    "layers": Tables(SCHEME_LAYER, by_id=True, min_len=1),
}, required=("id", "insutype", "valid_from", "valid_to", "class_b", "layers"),
    what="a basic-insurance rule file", rule=_valid_dates)


@dataclass(frozen=True)
class BasicScheme:
    id: str
    name: str
    insutype: str
    valid_from: dt.date
    valid_to: dt.date
    preselfpay_share: Choice
    layers: tuple[LayerSpec, ...]
    path: Path

    def covers(self, year: int) -> bool:
        return self.valid_from.year <= year <= self.valid_to.year


def load_scheme(path: str | Path) -> BasicScheme:
    path = Path(path)
    raw = read_checked(path, SCHEME_FILE)     # every key known, every value of its kind
    where = str(path)
    share = parse_choice(raw["class_b"].get("preselfpay_share", 0), ratio_to_bp,
                         f"{where}: class_b.preselfpay_share")
    layers = [parse_layer(la, f"{where}: layers[{i}]", QUANTITIES)
              for i, la in enumerate(raw["layers"])]
    for la in layers:
        if la.pays_into not in FUND_PAYMENTS:
            raise RuleFileError(f"{where}: layer '{la.id}' pays_into must be one of "
                                f"{', '.join(FUND_PAYMENTS)}")
    check_layers(layers, where)
    return BasicScheme(id=raw["id"], name=raw.get("name", raw["id"]),
                       insutype=str(raw["insutype"]), valid_from=raw["valid_from"],
                       valid_to=raw["valid_to"],
                       preselfpay_share=share, layers=tuple(layers), path=path)


def load_schemes(directory: str | Path | None = None) -> list[BasicScheme]:
    directory = Path(directory) if directory else actuarial_dir() / "basic"
    return [load_scheme(p) for p in sorted(directory.glob("*.toml"))]


def scheme_for(schemes: list[BasicScheme], insutype: str, year: int) -> BasicScheme:
    for s in schemes:
        if s.insutype == insutype and s.covers(year):
            return s
    raise RuleFileError(f"no basic-insurance rule file for insutype {insutype} in {year}: "
                        f"add one to actuarial/basic/")


def processing_order(person: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Indices that put rows in processing order: by person, then time, then input order."""
    return np.lexsort((np.arange(len(person)), when, person))


def _column(bills: pd.DataFrame, name: str) -> np.ndarray:
    s = bills[name]
    if name == "hosp_lv":
        return s.to_numpy(dtype="int64")
    if name in ("med_type", "insutype", "gender"):
        return np.asarray(s.astype(str)) if not isinstance(s.dtype, pd.CategoricalDtype) \
            else np.asarray(s.astype(object))
    return s.to_numpy()


#: Rows per block in :func:`settle`; blocks are cut between persons, so the result does
#: not depend on it, only the working memory does.
BLOCK_ROWS = 1_000_000


def person_blocks(person_sorted: np.ndarray, block_rows: int = BLOCK_ROWS) -> list[slice]:
    """Slices of rows (sorted by person) of about ``block_rows``, never splitting a person.

    >>> person_blocks(np.array([1, 1, 2, 2, 2, 3]), block_rows=2)
    [slice(0, 2, None), slice(2, 5, None), slice(5, 6, None)]
    """
    n = len(person_sorted)
    if n == 0:
        return []
    starts = np.flatnonzero(np.r_[True, person_sorted[1:] != person_sorted[:-1]])
    out, lo = [], 0
    while lo < n:
        target = lo + block_rows
        if target >= n:
            hi = n
        else:
            k = np.searchsorted(starts, target, side="left")
            hi = int(starts[k]) if k < len(starts) else n
            if hi <= lo:
                hi = int(starts[k + 1]) if k + 1 < len(starts) else n
        out.append(slice(lo, hi))
        lo = hi
    return out


def settle(bills: pd.DataFrame, schemes: list[BasicScheme]) -> pd.DataFrame:
    """Settle bills with the basic tier. Returns the settlement money fields (fen).

    ``bills`` has ``person`` (int code), ``setl_time`` (datetime64), the amounts of
    :data:`BILL_AMOUNTS` (int64 fen, >= 0) and the attributes of
    :data:`BILL_ATTRIBUTES`. Rows of one person are processed in time order (ties in
    input order); the result has the input's index and order. Only the columns named
    here are read, so a wide frame costs no copy.
    """
    n = len(bills)
    person = bills["person"].to_numpy()
    when = bills["setl_time"].to_numpy()
    order = processing_order(person, when)
    inv = np.empty(n, dtype="int64")
    inv[order] = np.arange(n)
    amt = {k: bills[k].to_numpy(dtype="int64") for k in BILL_AMOUNTS}
    attrs = {k: _column(bills, k) for k in BILL_ATTRIBUTES if k in bills.columns}
    out = {k: np.zeros(n, "int64") for k in ("preselfpay_amt", "act_pay_dedc", *FUND_PAYMENTS)}
    years = pd.DatetimeIndex(when).year.to_numpy()
    ins = attrs["insutype"]
    for insutype, year in sorted(set(zip(ins.tolist(), years.tolist()))):
        scheme = scheme_for(schemes, insutype, int(year))
        rows_all = order[(ins[order] == insutype) & (years[order] == year)]  # processing order
        for block in person_blocks(person[rows_all]):
            rows = rows_all[block]
            _settle_one_scheme(scheme, person[rows], {k: v[rows] for k, v in amt.items()},
                               {k: v[rows] for k, v in attrs.items()}, out, rows)
    total = sum(amt[k] for k in BILL_AMOUNTS)
    pre = out["preselfpay_amt"]
    res = pd.DataFrame({
        "medfee_sumamt": total,
        "fulamt_ownpay_amt": amt["amt_c"] + amt["amt_self"],
        "overlmt_selfpay": amt["amt_overlimit"],
        "preselfpay_amt": pre,
        "inscp_scp_amt": amt["amt_a"] + amt["amt_b"] - pre,
        "act_pay_dedc": out["act_pay_dedc"],
        **{k: out[k] for k in FUND_PAYMENTS},
    }, index=bills.index)
    res["psn_part_amt"] = total - sum(out[k] for k in FUND_PAYMENTS)
    return res


def _settle_one_scheme(scheme: BasicScheme, person: np.ndarray, amt: dict, attrs: dict,
                       out: dict, rows: np.ndarray) -> None:
    """Settle one scheme's rows (given in processing order) into ``out`` at ``rows``."""
    n = len(person)
    share = scheme.preselfpay_share.evaluate(attrs, n)
    pre = apply_ratio(amt["amt_b"], share)
    q = {
        "total": sum(amt[k] for k in BILL_AMOUNTS),
        "class_a": amt["amt_a"], "class_b": amt["amt_b"], "preselfpay": pre,
        "in_scope": amt["amt_a"] + amt["amt_b"] - pre,
        "out_of_list": amt["amt_c"] + amt["amt_self"] + amt["amt_overlimit"],
    }
    # Accumulator period: the person's calendar year (all rows here share one year).
    period = person.astype("int64")
    res = run_waterfall(list(scheme.layers), q, attrs, period, keep={"paid", "deductible"})
    out["preselfpay_amt"][rows] = pre
    for la in scheme.layers:
        out[la.pays_into][rows] += res[la.id].paid
        if la.reports_deductible:
            out["act_pay_dedc"][rows] += res[la.id].deductible
