"""Money as integer fen, and payout ratios as integer basis points.

Inside every engine an amount is an ``int64`` number of fen (1 yuan = 100 fen) and a
ratio is an ``int64`` number of basis points (1 = 0.01 %, so 70 % = 7000). Yuan with
two decimals appear only at the edges (files, reports). This keeps payouts free of
float drift: the same bill always gives the same fen.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

FEN_PER_YUAN = 100
BP_PER_UNIT = 10_000
#: An amount larger than any real limit, used for "no limit" (10^15 fen).
NO_LIMIT = np.int64(10**15)


def yuan_to_fen(yuan) -> np.ndarray:
    """Convert yuan (float, two decimals) to integer fen: ``fen = round(yuan * 100)``.

    Exact for every amount below about 9 * 10^13 yuan, since ``yuan * 100`` is within
    half a fen of an integer there.

    >>> yuan_to_fen([1.1, 0.29, -12000.05]).tolist()
    [110, 29, -1200005]
    """
    arr = np.asarray(yuan, dtype="float64")
    return np.rint(arr * FEN_PER_YUAN).astype("int64")


def fen_to_yuan(fen) -> np.ndarray:
    """Convert integer fen to float yuan for output: ``yuan = fen / 100``.

    >>> fen_to_yuan([110, 29]).tolist()
    [1.1, 0.29]
    """
    return np.asarray(fen, dtype="int64") / FEN_PER_YUAN


def yuan_text_to_fen(value) -> int:
    """Exact conversion of a yuan amount written in a rule file (``1500`` or ``"1500.50"``).

    Refuses fractions of a fen, so a typo such as ``1500.505`` is caught, not rounded.

    >>> yuan_text_to_fen(1500), yuan_text_to_fen("0.01")
    (150000, 1)
    """
    d = Decimal(str(value)) * FEN_PER_YUAN
    if d != d.to_integral_value():
        raise ValueError(f"{value!r} yuan is not a whole number of fen")
    return int(d)


def ratio_to_bp(value) -> int:
    """Exact conversion of a ratio written as a fraction (``0.85``) to basis points.

    >>> ratio_to_bp(0.85), ratio_to_bp("0.925")
    (8500, 9250)
    """
    d = Decimal(str(value)) * BP_PER_UNIT
    if d != d.to_integral_value():
        raise ValueError(f"ratio {value!r} is finer than a basis point (0.0001)")
    bp = int(d)
    if not 0 <= bp <= BP_PER_UNIT:
        raise ValueError(f"ratio {value!r} is outside 0..1")
    return bp


def apply_ratio(amount_fen, ratio_bp) -> np.ndarray:
    """``amount * ratio`` in fen, rounded half away from zero.

    ``round(a * r / 10000)`` computed in integers: for a >= 0 it is
    ``(a * r + 5000) // 10000``; a negative amount is the mirror image, so a reversal
    gives exactly the negative of the original payout.

    >>> apply_ratio([1005, 1015, -1005], 5000).tolist()
    [503, 508, -503]
    """
    a = np.asarray(amount_fen, dtype="int64")
    r = np.asarray(ratio_bp, dtype="int64")
    mag = (np.abs(a) * r + BP_PER_UNIT // 2) // BP_PER_UNIT
    return np.where(a < 0, -mag, mag).astype("int64")

