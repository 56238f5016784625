"""ICD-10 prefix matching over many settlements.

Pre-existing conditions (product files) and drug indications (drug lists) are lists of
ICD-10 prefixes; a main diagnosis matches when it starts with one of them. Settlements
are millions of rows but few distinct diagnoses, so each distinct code is tested once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def matches_prefixes(codes, prefixes) -> np.ndarray:
    """True where a diagnosis starts with one of ``prefixes`` (nulls never match).

    >>> matches_prefixes(pd.Series(["C34.1", "I10", None, "N18.5"]), ("C", "N18")).tolist()
    [True, False, False, True]
    """
    prefixes = tuple(p for p in prefixes if p)
    s = pd.Series(codes)
    if not prefixes or len(s) == 0:
        return np.zeros(len(s), dtype=bool)
    if isinstance(s.dtype, pd.CategoricalDtype):     # each category tested once
        idx, uniques = s.cat.codes.to_numpy(), s.cat.categories
    else:
        idx, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
    on = np.array([str(u).startswith(prefixes) for u in uniques], dtype=bool)
    return (idx >= 0) & on[np.maximum(idx, 0)]
