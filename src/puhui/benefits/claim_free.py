"""Claim-free years: how many policy years in a row, just before a policy, paid nothing.

Products from Huhuibao 2023 on lower the hospital deductible after claim-free years
(2025: 12,000, then 11,000 after 2 and 10,000 after 3). The fund data's policies file
does not carry the count, so it is derived from the policy history and what was paid::

    claim_free_years(p) = 0                              if p renews no policy
                        = 0                              if the policy q it renews had a
                                                         payout, or q's outcome is unknown
                        = claim_free_years(q) + 1        otherwise

where p *renews* q when q is the same person's policy ending the day before p starts
(any product: a Huhuibao 2025 policy renews a Huhuibao 2024 one), and q *had a payout*
when its net payout is above zero. Claims take the payouts from the ledger (a policy
the ledger has never adjudicated is unknown, so a chain stops there: run the earlier
years' batches first); pricing takes them from the as-if experience.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def claim_free_years(policies: pd.DataFrame, paid_fen: Mapping[str, int] | pd.Series,
                     known: set[str] | None = None) -> np.ndarray:
    """Claim-free years of each policy (in the frame's order); see the module docstring.

    ``paid_fen``: net payout per policy number (absent = 0); ``known``: the policy
    numbers whose outcome is known (default: all).

    Three yearly renewals of one person, nothing paid in 2023 or 2024; a second person
    paid in 2024; a third with a gap in cover:

    >>> pol = pd.DataFrame({
    ...     "policy_no": ["a23", "a24", "a25", "b24", "b25", "c23", "c25"],
    ...     "psn_no": ["a", "a", "a", "b", "b", "c", "c"],
    ...     "start_date": pd.to_datetime(["2023-01-01", "2024-01-01", "2025-01-01",
    ...                                   "2024-01-01", "2025-01-01", "2023-01-01", "2025-01-01"]),
    ...     "end_date": pd.to_datetime(["2023-12-31", "2024-12-31", "2025-12-31",
    ...                                 "2024-12-31", "2025-12-31", "2023-12-31", "2025-12-31"])})
    >>> claim_free_years(pol, {"b24": 350000}).tolist()
    [0, 1, 2, 0, 0, 0, 0]
    >>> claim_free_years(pol, {}, known={"a24", "a25"}).tolist()   # a23 unknown: the chain stops
    [0, 0, 1, 0, 0, 0, 0]
    """
    n = len(policies)
    if n == 0:
        return np.zeros(0, dtype="int64")
    from puhui.benefits.calculator import renewed_policy

    pol_no = policies["policy_no"].astype(str).to_numpy()
    paid = pd.Series(paid_fen, dtype="int64") if len(paid_fen) else pd.Series(dtype="int64")
    had_payout = paid.reindex(pol_no, fill_value=0).to_numpy() > 0
    is_known = np.ones(n, dtype=bool) if known is None else pd.Index(pol_no).isin(list(known))
    free = ~had_payout & is_known
    prev = renewed_policy(policies)
    has_prev = prev >= 0
    prev = np.maximum(prev, 0)
    link = has_prev & free[prev]
    years = np.zeros(n, dtype="int64")
    # a chain of k renewals settles after k passes; stop when nothing changes
    for _ in range(n):
        nxt = np.where(link, years[prev] + 1, 0)
        if np.array_equal(nxt, years):
            break
        years = nxt
    return years
