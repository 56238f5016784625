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


class SortedHashes:
    """Sorted 64-bit hashes (spread evenly over their range) to look values up in
    many times: a table of where each run of equal top bits starts (about two entries a
    key) sends each value straight to its few candidates, so a look-up is a handful of
    array reads, with no sort and no binary search (for a million settlements' psn_no
    in 1.3 million persons' hashes, several times faster than :func:`search_sorted`).

    >>> ix = SortedHashes(np.array([3, 2**63, 2**63, 2**64 - 1], dtype="uint64"))
    >>> ix.find(np.array([2**63, 5, 3, 2**64 - 1], dtype="uint64")).tolist()
    [1, -1, 0, 3]
    """

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype="uint64")
        n = len(self.keys)
        bits = min(max(int(n).bit_length(), 1), 26)    # a key or two a bucket
        self._shift = np.uint64(64 - bits)
        top = self.keys >> self._shift
        #: where each bucket of equal top bits starts, and past the last one, its end
        self._start = np.searchsorted(top, np.arange(2**bits + 1, dtype="uint64")).astype(
            "int32" if n < 2**31 else "int64")

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each value, the position of the first key equal to it (-1 for none)."""
        values = np.asarray(values, dtype="uint64")
        n = len(self.keys)
        if not n or not len(values):
            return np.full(len(values), -1, dtype="int64")
        b = (values >> self._shift).astype(np.intp)
        lo = self._start[b].astype("int64")
        b += 1
        hi = self._start[b]
        del b
        key = self.keys[np.minimum(lo, n - 1)]
        eq = (lo < hi) & (key == values)
        out = np.where(eq, lo, -1)
        # the rest: a bucket of several keys, looked along (most buckets hold one or none)
        active = np.flatnonzero(~eq & (lo + 1 < hi) & (key < values))
        at = lo[active] + 1
        while len(active):
            key = self.keys[at]
            v = values[active]
            eq = key == v
            out[active[eq]] = at[eq]
            more = (key < v) & (at + 1 < hi[active])      # sorted: past it, no match
            active, at = active[more], at[more] + 1
        return out

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Whether each value is one of the keys."""
        return self.find(values) >= 0
