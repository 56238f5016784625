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

from puhui.basis import actuarial_dir, read_toml
from puhui.errors import RuleFileError
from puhui.fund.schema import FUND_PAYMENTS
from puhui.money import apply_ratio, ratio_to_bp
from puhui.tiers.rules import Choice, parse_choice
from puhui.tiers.waterfall import LayerSpec, check_layers, parse_layer, run_waterfall

#: The bill's amounts by list class, int64 fen (the input of :func:`settle`).
BILL_AMOUNTS = ("amt_a", "amt_b", "amt_c", "amt_self", "amt_overlimit")
#: Attributes of a bill row that rules may test.
BILL_ATTRIBUTES = ("age", "gender", "insutype", "retired", "low_income", "hosp_lv", "med_type")
#: Quantities a basic-tier layer's base may use.
QUANTITIES = {"total", "in_scope", "class_a", "class_b", "preselfpay", "out_of_list"}


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
    raw = read_toml(path)
    where = str(path)
    for key in ("id", "insutype", "valid_from", "valid_to", "class_b", "layers"):
        if key not in raw:
            raise RuleFileError(f"{where}: missing '{key}'")
    if not isinstance(raw["valid_from"], dt.date) or not isinstance(raw["valid_to"], dt.date):
        raise RuleFileError(f"{where}: valid_from and valid_to are TOML dates (2025-01-01)")
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


def settle(bills: pd.DataFrame, schemes: list[BasicScheme]) -> pd.DataFrame:
    """Settle bills with the basic tier. Returns the settlement money fields (fen).

    ``bills`` has ``person`` (int code), ``setl_time`` (datetime64), the amounts of
    :data:`BILL_AMOUNTS` (int64 fen, >= 0) and the attributes of
    :data:`BILL_ATTRIBUTES`. Rows of one person are processed in time order (ties in
    input order); the result has the input's index and order.
    """
    n = len(bills)
    order = processing_order(bills["person"].to_numpy(), bills["setl_time"].to_numpy())
    b = bills.iloc[order]
    amt = {k: b[k].to_numpy(dtype="int64") for k in BILL_AMOUNTS}
    out = {k: np.zeros(n, "int64") for k in
           ("preselfpay_amt", "act_pay_dedc", *FUND_PAYMENTS)}
    years = b["setl_time"].dt.year.to_numpy()
    ins = b["insutype"].astype(str).to_numpy()
    for (insutype, year) in sorted(set(zip(ins, years))):
        scheme = scheme_for(schemes, insutype, int(year))
        sel = np.flatnonzero((ins == insutype) & (years == year))
        _settle_one_scheme(scheme, b.iloc[sel], {k: v[sel] for k, v in amt.items()},
                           out, sel)
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
    })
    res["psn_part_amt"] = total - sum(out[k] for k in FUND_PAYMENTS)
    inv = np.empty(n, dtype="int64")
    inv[order] = np.arange(n)
    res = res.iloc[inv].reset_index(drop=True)
    res.index = bills.index
    return res


def _settle_one_scheme(scheme: BasicScheme, b: pd.DataFrame, amt: dict, out: dict,
                       sel: np.ndarray) -> None:
    n = len(b)
    attrs = {k: b[k].to_numpy() for k in BILL_ATTRIBUTES if k in b.columns}
    attrs["hosp_lv"] = attrs["hosp_lv"].astype("int64")
    attrs["med_type"] = attrs["med_type"].astype(str)
    share = scheme.preselfpay_share.evaluate(attrs, n)
    pre = apply_ratio(amt["amt_b"], share)
    q = {
        "total": sum(amt[k] for k in BILL_AMOUNTS),
        "class_a": amt["amt_a"], "class_b": amt["amt_b"], "preselfpay": pre,
        "in_scope": amt["amt_a"] + amt["amt_b"] - pre,
        "out_of_list": amt["amt_c"] + amt["amt_self"] + amt["amt_overlimit"],
    }
    # Accumulator period: the person's calendar year (all rows here share one year).
    period = b["person"].to_numpy().astype("int64")
    res = run_waterfall(list(scheme.layers), q, attrs, period)
    out["preselfpay_amt"][sel] = pre
    for la in scheme.layers:
        out[la.pays_into][sel] += res[la.id].paid
        if la.reports_deductible:
            out["act_pay_dedc"][sel] += res[la.id].deductible
