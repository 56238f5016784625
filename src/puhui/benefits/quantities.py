"""Quantities of a settlement that commercial benefits pay on (int64 fen).

``in_list_self_pay``    psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay (目录内自付)
``out_of_list_self_pay`` fulamt_ownpay_amt + overlmt_selfpay (目录外自费)
``special_drug``        lines whose code is on the special-drug list (not CAR-T)
``cart``                lines of CAR-T products on the special-drug list
``class_c``             lines of class C (the commercial innovative drug list)
``proton``              lines of proton / heavy-ion treatment
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUANTITIES = ("in_list_self_pay", "out_of_list_self_pay", "special_drug", "cart",
              "class_c", "proton")


def settlement_quantities(st: pd.DataFrame, lines: pd.DataFrame | None,
                          special: pd.DataFrame, treatments: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per settlement (in ``st``'s order), the amounts each kind of benefit pays on."""
    q = {
        "in_list_self_pay": (st["psn_part_amt"] - st["fulamt_ownpay_amt"]
                             - st["overlmt_selfpay"]).to_numpy(dtype="int64"),
        "out_of_list_self_pay": (st["fulamt_ownpay_amt"] + st["overlmt_selfpay"]
                                 ).to_numpy(dtype="int64"),
    }
    n = len(st)
    for k in ("special_drug", "cart", "class_c", "proton"):
        q[k] = np.zeros(n, "int64")
    if lines is None or not len(lines):
        return q
    cart_codes = set(special.loc[special["is_cart"].astype(bool), "hilist_code"])
    drug_codes = set(special["hilist_code"]) - cart_codes
    kinds = {
        "special_drug": lines["hilist_code"].isin(drug_codes),
        "cart": lines["hilist_code"].isin(cart_codes),
        "class_c": lines["list_class"] == "C",
        "proton": lines["hilist_code"].isin(set(treatments["hilist_code"])),
    }
    pos = pd.Series(np.arange(n), index=st["setl_id"].to_numpy())
    for k, mask in kinds.items():
        sums = lines.loc[mask.to_numpy()].groupby("setl_id")["amount"].sum()
        idx = pos.reindex(sums.index).dropna().astype("int64")
        q[k][idx.to_numpy()] = sums.loc[idx.index].to_numpy()
    return q
