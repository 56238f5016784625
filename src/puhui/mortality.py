"""Mortality tables of ``actuarial/tables/``: one-year death probabilities q(x)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from puhui.basis import actuarial_dir

#: CL table column by sex (national gender code): CL1 male, CL2 female (non-annuity protection).
CL_BY_GENDER = {"1": "CL1", "2": "CL2"}


@lru_cache(maxsize=4)
def cl_table() -> pd.DataFrame:
    """China Life Insurance Mortality Table 2010-2013 (CL1-CL6), indexed by age 0-105.

    >>> cl_table().loc[60, ["CL1", "CL2"]].tolist()
    [0.009161, 0.004414]
    """
    df = pd.read_csv(actuarial_dir() / "tables" / "china-cl-2010-2013-qx.csv")
    return df.set_index("age")


def qx(gender: np.ndarray, age: np.ndarray, multiplier: float = 1.0) -> np.ndarray:
    """q(x) from CL1 (male) / CL2 (female); ages above 105 use q(105).

    >>> qx(np.array(["1", "2"]), np.array([0, 60])).tolist()
    [0.000867, 0.004414]
    """
    t = cl_table()
    a = np.clip(np.asarray(age, dtype="int64"), 0, t.index.max())
    male = t["CL1"].to_numpy()[a]
    female = t["CL2"].to_numpy()[a]
    q = np.where(np.asarray(gender) == "1", male, female) * multiplier
    return np.minimum(q, 1.0)
