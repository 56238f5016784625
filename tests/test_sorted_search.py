"""search_sorted gives np.searchsorted's answer (the reference) on arrays large enough
to take the sorted path, with repeated keys and values, on both sides."""

import numpy as np
import pytest

from puhui.sorted_search import SORT_FROM, equal_range, search_sorted


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_equals_numpy_searchsorted(side, dtype):
    rng = np.random.default_rng(8)
    keys = np.sort(rng.integers(0, 50_000, 30_000)).astype(dtype)       # repeats
    values = rng.integers(-10, 60_000, 3 * SORT_FROM).astype("int64")
    values = np.abs(values).astype(dtype)
    got = search_sorted(keys, values, side=side)
    assert np.array_equal(got, np.searchsorted(keys, values, side=side))
    assert np.array_equal(search_sorted(keys, values[:10], side=side),
                          np.searchsorted(keys, values[:10], side=side))


def test_values_nearly_in_order_give_the_same_answer():
    rng = np.random.default_rng(9)
    keys = np.sort(rng.integers(0, 10**6, 50_000))
    values = np.sort(rng.integers(0, 10**6, 5 * SORT_FROM))
    values[::500] = rng.integers(0, 10**6, len(values[::500]))     # a few out of order
    assert np.array_equal(search_sorted(keys, values), np.searchsorted(keys, values))


def test_equal_range_is_both_searches():
    rng = np.random.default_rng(10)
    keys = np.sort(rng.integers(0, 5_000, 20_000))
    values = rng.integers(0, 5_000, 2 * SORT_FROM)
    lo, hi = equal_range(keys, values)
    assert np.array_equal(lo, np.searchsorted(keys, values, side="left"))
    assert np.array_equal(hi, np.searchsorted(keys, values, side="right"))
