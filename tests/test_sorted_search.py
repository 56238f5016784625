"""search_sorted gives np.searchsorted's answer (the reference) on arrays large enough
to take the sorted path, with repeated keys and values, on both sides."""

import numpy as np
import pytest

from puhui.sorted_search import SORT_FROM, search_sorted


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
