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
from puhui.icd import matches_prefixes

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
    ``st``: effective settlements; ``drug_items``: list items with ``dise_codes``.
    A settlement with two flags gets the first in the order of the module docstring."""
    return first_flags([person_flags(st), line_flags(st, lines, drug_items)])


def first_flags(parts: list[pd.Series]) -> pd.Series:
    """Flags found by parts joined, each settlement keeping its first code (parts in the
    order of the module docstring's flags)."""
    flags = pd.concat([pd.Series(dtype=object), *parts])
    return flags[~flags.index.duplicated(keep="first")]


def person_flags(st: pd.DataFrame) -> pd.Series:
    """The flags that compare one person's settlements only (F_DUPLICATE_SETTLEMENT,
    F_SPLIT_ADMISSION): the same for ``st`` as a whole and for ``st`` cut by people,
    each part in the rows' order (a batch of 100 million settlements runs them on parts
    of its people, a few GB less at once)."""
    flags = pd.Series(dtype=object)
    # every key as integer codes (a few bytes a row, no string copies of millions of rows)
    psn = _codes(st["psn_no"])
    inst = _codes(st["fixmedins_code"]) if "fixmedins_code" in st else np.zeros(len(st), "int64")
    day = st["setl_time"].to_numpy().astype("datetime64[D]").astype("int64")
    # a duplicate shares person and day with another settlement: only those few rows
    # (one integer key hashed) are compared on every field
    dup = np.zeros(len(st), dtype=bool)
    if len(st):
        span = int(day.max() - day.min()) + 1
        person_day = (psn.astype("int64") + 1) * span + (day - day.min())
        cand = np.flatnonzero(pd.Series(person_day).duplicated(keep=False).to_numpy())
        del person_day
        key = pd.DataFrame({"p": psn[cand], "d": day[cand],
                            "m": _codes(st["med_type"])[cand], "i": inst[cand],
                            "t": st["medfee_sumamt"].to_numpy()[cand]})
        dup[cand] = key.duplicated(keep="first").to_numpy()
        del key
    flags = pd.concat([flags, pd.Series("F_DUPLICATE_SETTLEMENT", index=st.index[dup])])

    mt = st["med_type"]
    on = (mt if isinstance(mt.dtype, pd.CategoricalDtype) else mt.astype(str)).isin(
        INPATIENT_MED_TYPES).to_numpy()
    if on.any():
        s = pd.DataFrame({"p": psn[on], "i": inst[on], "d": day[on]}, index=st.index[on]
                         ).sort_values(["p", "i", "d"], kind="stable")
        same = (s["p"] == s["p"].shift()) & (s["i"] == s["i"].shift())
        gap = s["d"] - s["d"].shift()
        split = same & (gap <= SPLIT_GAP_DAYS)
        flags = pd.concat([flags, pd.Series("F_SPLIT_ADMISSION", index=s.index[split.to_numpy()])])
    return flags[~flags.index.duplicated(keep="first")]


def line_flags(st: pd.DataFrame, lines: pd.DataFrame | None,
               drug_items: pd.DataFrame | None) -> pd.Series:
    """The flags read from the lines (F_DUPLICATE_TRACE across every settlement and
    person, F_DRUG_NO_DIAGNOSIS): ``st`` needs to hold only the settlements with lines
    (the others meet no line)."""
    flags = pd.Series(dtype=object)
    if lines is not None and len(lines):
        # each line's settlement row: the lines' (few) settlement ids hashed once, the
        # settlements looked up in them (no hash table of millions of ids)
        ids = pd.Index(pd.unique(lines["setl_id"].to_numpy()))
        hit = positions_in(st["setl_id"], ids)
        row_of = np.full(len(ids), -1, dtype="int64")
        row_of[hit[hit >= 0]] = np.flatnonzero(hit >= 0)
        at = row_of[ids.get_indexer(lines["setl_id"].to_numpy())]
        ln = lines[at >= 0]
        at = at[at >= 0]
        if "trace_code" in ln and ln["trace_code"].notna().any():
            has = ln["trace_code"].notna().to_numpy()
            again = ln[has].duplicated("trace_code", keep="first").to_numpy()
            flags = pd.concat([flags, pd.Series("F_DUPLICATE_TRACE",
                                                index=st.index[at[has][again]])])
        if drug_items is not None and "dise_codes" in drug_items:
            ind = dict(zip(drug_items["hilist_code"].astype(str),
                           drug_items["dise_codes"].astype(str).str.split(";")))
            code = ln["hilist_code"].astype(str).to_numpy()
            listed = np.isin(code, list(ind))
            if listed.any():
                rows = at[listed]
                diag = st["dise_code"].iloc[rows].astype(str).to_numpy()
                ok = np.zeros(len(rows), dtype=bool)
                for c in np.unique(code[listed]):          # one vectorised test per drug
                    on = code[listed] == c
                    ok[on] = matches_prefixes(diag[on], ind[c])
                flags = pd.concat([flags, pd.Series("F_DRUG_NO_DIAGNOSIS",
                                                    index=st.index[rows[~ok]])])
    return flags[~flags.index.duplicated(keep="first")]


def positions_in(s: pd.Series, ids: pd.Index) -> np.ndarray:
    """Each of ``s``'s position in ``ids`` (-1 where absent); text held in Arrow is
    looked up there, with no Python string made a row.

    >>> positions_in(pd.Series(["b", "x"]).astype("string[pyarrow]"), pd.Index(["a", "b"])).tolist()
    [1, -1]
    """
    from puhui.fund.files import is_arrow_text

    if is_arrow_text(s.dtype) and ids.inferred_type in ("string", "empty"):
        import pyarrow as pa
        import pyarrow.compute as pc

        values = pa.array(s.array)
        at = pc.index_in(values, value_set=pa.array(ids.to_numpy(dtype=object),
                                                     type=values.type))
        return at.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    return ids.get_indexer(s.to_numpy())


def _codes(s: pd.Series) -> np.ndarray:
    """Equal values, equal codes (nulls one code of their own): a categorical's own
    codes, else ``pd.factorize``."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy().astype("int64")
    return pd.factorize(s, use_na_sentinel=True)[0]
