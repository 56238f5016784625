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
    # every key as integer codes (a few bytes a row, no string copies of millions of rows)
    psn = _codes(st["psn_no"])
    inst = _codes(st["fixmedins_code"]) if "fixmedins_code" in st else np.zeros(len(st), "int64")
    day = st["setl_time"].to_numpy().astype("datetime64[D]").astype("int64")
    key = pd.DataFrame({"p": psn, "d": day, "m": _codes(st["med_type"]), "i": inst,
                        "t": st["medfee_sumamt"].to_numpy()})
    dup = key.duplicated(keep="first").to_numpy()
    del key
    flags = pd.concat([flags, pd.Series("F_DUPLICATE_SETTLEMENT", index=st.index[dup])])

    on = st["med_type"].astype(str).isin(INPATIENT_MED_TYPES).to_numpy()
    if on.any():
        s = pd.DataFrame({"p": psn[on], "i": inst[on], "d": day[on]}, index=st.index[on]
                         ).sort_values(["p", "i", "d"], kind="stable")
        same = (s["p"] == s["p"].shift()) & (s["i"] == s["i"].shift())
        gap = s["d"] - s["d"].shift()
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
                row = pd.Series(np.arange(len(st)), index=pos.index)   # position, not label
                diag = st["dise_code"].iloc[row.reindex(d["setl_id"].astype(str)).to_numpy()
                                            ].astype(str).to_numpy()
                ok = np.array([any(str(g).startswith(p) for p in ind[c])
                               for g, c in zip(diag, d["hilist_code"].astype(str))], dtype=bool)
                ids = pos.reindex(d.loc[~ok, "setl_id"].astype(str)).to_numpy()
                flags = pd.concat([flags, pd.Series("F_DRUG_NO_DIAGNOSIS", index=ids)])
    return flags[~flags.index.duplicated(keep="first")]


def _codes(s: pd.Series) -> np.ndarray:
    """Equal values, equal codes (nulls one code of their own)."""
    return pd.factorize(s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s,
                        use_na_sentinel=True)[0]
