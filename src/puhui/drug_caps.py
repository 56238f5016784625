"""Price-volume agreements (seed 000; docs/domain.md §4): a drug's annual spending
under the product is capped at

    cap = patients x expected annual use x price

(``cap_patients``, ``cap_annual_use`` in years of treatment per patient, and the list's
``price_yuan``: columns of a drug list). Spending is the drug's eligible line amount
claimed under the product in the policy year. Above the cap the manufacturer refunds
the excess; the product recovers its part of it, in proportion to what it paid of the
spending::

    clawback = paid x (spending - cap) / spending      (spending > cap; else 0)

rounded down to the fen, due at the policy year's end (claims:
:func:`clawback_fen`; pricing: :func:`expected_excess`, the mean excess of a gamma
with the annual spending's mean and variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puhui.errors import RuleFileError

CAP_COLUMNS = ("cap_patients", "cap_annual_use")


@dataclass(frozen=True)
class Cap:
    drug: str
    patients: float
    annual_use: float
    price_fen: int

    @property
    def cap_fen(self) -> int:
        """patients x annual use x price, in whole fen (rounded down).

        >>> Cap("X", 2, 0.5, 15_000_000).cap_fen
        15000000
        """
        return int(np.floor(self.patients * self.annual_use * self.price_fen))


def caps_of(dl) -> dict[str, Cap]:
    """The price-volume caps of a drug list's items ({hilist_code: Cap}); a bad row is
    a RuleFileError naming the list, drug and column."""
    it = dl.items
    if not set(CAP_COLUMNS) <= set(it.columns):
        return {}
    out = {}
    where = f"drug list '{dl.id}' (actuarial/drugs/)"
    for _, row in it[it["cap_patients"].notna() | it["cap_annual_use"].notna()].iterrows():
        code = str(row["hilist_code"])
        try:
            n, use = float(row["cap_patients"]), float(row["cap_annual_use"])
            price = float(row["price_yuan"])
        except (TypeError, ValueError, KeyError):
            raise RuleFileError(f"{where}: drug {code}: a cap needs numbers in cap_patients, "
                                f"cap_annual_use and price_yuan") from None
        if not (n > 0 and use > 0 and price > 0):
            raise RuleFileError(f"{where}: drug {code}: cap_patients, cap_annual_use and "
                                f"price_yuan must be above 0 (got {n}, {use}, {price})")
        out[code] = Cap(code, n, use, int(round(price * 100)))
    return out


def clawback_fen(paid_fen: int, spending_fen: int, cap_fen: int) -> int:
    """The product's part of the refund above the cap, in whole fen (rounded down).

    Spending 200,000.00 against a cap of 150,000.00, the product having paid 140,000.00:
    140,000.00 x 50,000 / 200,000 = 35,000.00.

    >>> clawback_fen(14_000_000, 20_000_000, 15_000_000)
    3500000
    >>> clawback_fen(14_000_000, 15_000_000, 15_000_000)
    0
    """
    if spending_fen <= cap_fen or spending_fen <= 0:
        return 0
    return int(paid_fen) * (int(spending_fen) - int(cap_fen)) // int(spending_fen)


def expected_excess(mean: float, var: float, cap: float) -> float:
    """E[(S - cap)+] for S gamma with this mean and variance:
    m (1 - G(cap; alpha + 1, theta)) - cap (1 - G(cap; alpha, theta)),
    alpha = m^2 / v, theta = v / m (G the gamma distribution function).

    >>> round(expected_excess(100.0, 100.0 ** 2, 0.0), 6)       # no cap: the mean
    100.0
    """
    from scipy.stats import gamma

    if mean <= 0:
        return 0.0
    if var <= 0:
        return max(mean - cap, 0.0)
    a, th = mean ** 2 / var, var / mean
    return float(mean * gamma.sf(cap, a + 1, scale=th) - cap * gamma.sf(cap, a, scale=th))
