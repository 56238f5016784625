"""Binary search of many values in a large sorted array.

``np.searchsorted`` looks each value up independently; when the values come in random
order, each search walks a different path through millions of keys and most of its
steps miss the CPU cache. Sorting the values first makes consecutive searches share
their path: at five million keys and 700,000 values the search is about six times
faster, sort included (benchmarked in session 8: 0.53 s -> 0.09 s); values already
nearly in order are searched as they are. The result is the same array
``np.searchsorted`` gives.
"""

from __future__ import annotations

import numpy as np

#: Below this many values the sort costs more than it saves.
SORT_FROM = 4096


def _mostly_ascending(values: np.ndarray) -> bool:
    """Values that are already nearly in order gain nothing from the sort (at 13.5
    million events in person-year order: 1.57 s searched as they are, 1.79 s sorted
    first)."""
    return int(np.count_nonzero(values[1:] < values[:-1])) < len(values) // 16


def search_sorted(keys: np.ndarray, values: np.ndarray, side: str = "left") -> np.ndarray:
    """``np.searchsorted(keys, values, side)``, the values looked up in sorted order.

    >>> search_sorted(np.array([1, 3, 5, 7]), np.array([6, 0, 3, 9])).tolist()
    [3, 0, 1, 4]
    >>> search_sorted(np.array([1, 3, 3, 7]), np.array([3, 3]), side="right").tolist()
    [3, 3]
    """
    return _searched(keys, values, (side,))[0]


def equal_range(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both ends of each value's run of equal keys (``np.searchsorted`` left and
    right), the values sorted once for the two searches.

    >>> [a.tolist() for a in equal_range(np.array([1, 3, 3, 7]), np.array([3, 4]))]
    [[1, 3], [3, 3]]
    """
    lo, hi = _searched(keys, values, ("left", "right"))
    return lo, hi


def _searched(keys: np.ndarray, values: np.ndarray, sides) -> list[np.ndarray]:
    values = np.asarray(values)
    if len(values) < SORT_FROM or _mostly_ascending(values):
        return [np.searchsorted(keys, values, side=s) for s in sides]
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    out = []
    for s in sides:
        at = np.empty(len(values), dtype=np.intp)
        at[order] = np.searchsorted(keys, ordered, side=s)
        out.append(at)
    return out
