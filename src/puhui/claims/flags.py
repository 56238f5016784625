"""Fraud and quality flags: settlements held for review instead of paid.

Each flag has a stable code. A flagged settlement is held: the batch leaves it out, as
it does a quarantined one, and leaves any earlier payment of it as it is, until the
data is corrected or the flag cleared. Outside-policy and waiting-period claims are
denied by the calculator's reasons, and settlements breaking the identity are
quarantined; the report lists them with the flags.

``F_DUPLICATE_SETTLEMENT``  the same settlement seen twice: same person, day, medical
                            type, institution and total, another setl_id (the later held)
``F_DUPLICATE_TRACE``       a drug traceability code (lines column ``trace_code``) billed
                            in two settlements (the later held)
``F_SPLIT_ADMISSION``       a stay at the same institution within 3 days of an earlier
                            stay of the same person (an admission split into two)
``F_DRUG_NO_DIAGNOSIS``     a special-drug line whose drug's indications (ICD-10 prefixes
                            in the list) do not match the settlement's main diagnosis
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.fund.schema import INPATIENT_MED_TYPES

SPLIT_GAP_DAYS = 3
FLAGS = {
    "F_DUPLICATE_SETTLEMENT": "the same settlement seen twice",
    "F_DUPLICATE_TRACE": "a drug traceability code billed twice",
    "F_SPLIT_ADMISSION": "a stay within 3 days of an earlier one at the same institution",
    "F_DRUG_NO_DIAGNOSIS": "a special drug without a matching diagnosis",
}


def flag_settlements(st: pd.DataFrame, lines: pd.DataFrame | None,
                     drug_items: pd.DataFrame | None) -> pd.Series:
    """Flag code per settlement (index of ``st``), for the flagged ones only.
    ``st``: effective settlements; ``drug_items``: list items with ``dise_codes``."""
    flags = pd.Series(dtype=object)
    inst = st["fixmedins_code"].astype(str) if "fixmedins_code" in st else pd.Series("", index=st.index)
    day = st["setl_time"].dt.normalize()
    key = pd.DataFrame({"p": st["psn_no"].astype(str), "d": day, "m": st["med_type"].astype(str),
                        "i": inst, "t": st["medfee_sumamt"]}, index=st.index)
    dup = key.duplicated(keep="first")
    flags = pd.concat([flags, pd.Series("F_DUPLICATE_SETTLEMENT", index=st.index[dup])])

    stays = st[st["med_type"].astype(str).isin(INPATIENT_MED_TYPES)]
    if len(stays):
        s = pd.DataFrame({"p": stays["psn_no"].astype(str), "i": inst.loc[stays.index],
                          "d": day.loc[stays.index]}).sort_values(["p", "i", "d"], kind="stable")
        same = (s["p"] == s["p"].shift()) & (s["i"] == s["i"].shift())
        gap = (s["d"] - s["d"].shift()).dt.days
        split = same & (gap <= SPLIT_GAP_DAYS)
        flags = pd.concat([flags, pd.Series("F_SPLIT_ADMISSION", index=s.index[split.to_numpy()])])

    if lines is not None and len(lines):
        pos = pd.Series(st.index, index=st["setl_id"].astype(str))
        ln = lines[lines["setl_id"].astype(str).isin(pos.index)]
        if "trace_code" in ln and ln["trace_code"].notna().any():
            t = ln[ln["trace_code"].notna()]
            again = t.duplicated("trace_code", keep="first")
            ids = pos.reindex(t.loc[again, "setl_id"].astype(str)).to_numpy()
            flags = pd.concat([flags, pd.Series("F_DUPLICATE_TRACE", index=ids)])
        if drug_items is not None and "dise_codes" in drug_items:
            ind = dict(zip(drug_items["hilist_code"].astype(str),
                           drug_items["dise_codes"].astype(str).str.split(";")))
            d = ln[ln["hilist_code"].astype(str).isin(ind)]
            if len(d):
                dx = st.set_index(st["setl_id"].astype(str))["dise_code"].astype(str)
                diag = dx.reindex(d["setl_id"].astype(str)).to_numpy()
                ok = np.array([any(str(g).startswith(p) for p in ind[c])
                               for g, c in zip(diag, d["hilist_code"].astype(str))], dtype=bool)
                ids = pos.reindex(d.loc[~ok, "setl_id"].astype(str)).to_numpy()
                flags = pd.concat([flags, pd.Series("F_DRUG_NO_DIAGNOSIS", index=ids)])
    return flags[~flags.index.duplicated(keep="first")]
