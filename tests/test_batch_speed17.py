"""A batch block's rows taken from Arrow text of many chunks (session 17): the same rows
and types as a plain take, checked against Python lists and pandas' own iloc."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from puhui.claims.batch import _Partition
from puhui.fund.files import take_text


def _chunked(values: list, cuts: list[int]) -> pd.Series:
    edges = [0, *cuts, len(values)]
    arr = pa.chunked_array([pa.array(values[a:b], pa.string())
                            for a, b in zip(edges[:-1], edges[1:])], type=pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr))


def test_take_text_gives_the_rows_asked_for_in_their_order_across_chunks():
    rng = np.random.default_rng(17)
    values = [None if rng.random() < 0.1 else f"S{i}\u4e00" * int(rng.integers(0, 3))
              for i in range(1_000)]
    s = _chunked(values, sorted(rng.choice(np.arange(1, 1_000), 30, replace=False)))
    assert s.array._pa_array.num_chunks == 31
    for rows in (rng.integers(0, 1_000, 400), np.arange(1_000)[::-1], np.array([], int),
                 np.array([999, 0, 999])):
        got = take_text(s, rows)
        assert got.dtype == object
        assert got.tolist() == [values[r] for r in rows]
    # text held as Python objects (not Arrow) is taken too
    assert take_text(pd.Series(values, dtype=object), [3, 1]).tolist() == [values[3], values[1]]


def test_a_block_is_the_frames_rows_with_ids_as_python_text():
    rng = np.random.default_rng(3)
    n = 600
    ids = [f"S{i:05d}" for i in range(n)]
    refund = [None if i % 7 else ids[i - 1] for i in range(n)]
    df = pd.DataFrame({
        "setl_id": _chunked(ids, [100, 101, 350]),
        "amt": rng.integers(0, 10**9, n),
        "setl_time": pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n),
                                                                     unit="D"),
        "med_type": pd.Categorical(rng.choice(["11", "21", "14"], n)),
        "refund_of": _chunked(refund, [5, 300]),
        "hosp_lv": rng.integers(1, 4, n)})
    block = rng.integers(-1, 4, n)
    part = _Partition(df, block, 4)
    for k in range(4):
        got = part[k]
        rows = np.flatnonzero(block == k)
        want = df.iloc[rows].copy()
        for c in ("setl_id", "refund_of"):
            want[c] = [v if isinstance(v, str) else None for v in want[c].astype(object)]
        pd.testing.assert_frame_equal(got, want)
        assert got["setl_id"].dtype == object and got["setl_id"].tolist() == [ids[r] for r in rows]
        assert got["refund_of"].tolist() == [refund[r] for r in rows]
