"""Risk transfer arithmetic: what a treaty takes from gross claims, one small function per
quantity with its formula (in the style of lifelib). Amounts are integer fen (``int64``)
and shares and loss ratios integer basis points (10,000 = 100 %), as everywhere inside
puhui; every function works on scalars and on arrays alike.

For each treaty, gross -> ceded -> net, with net = gross - ceded:

- quota share: the reinsurer (or a co-insurer) takes a fixed share of every amount;
- aggregate stop loss on a product year's loss ratio: the layer of the year's claims
  between ``attachment`` and ``attachment + width`` times the premium;
- per-person excess of loss: the layer of each person's annual claims above a
  retention, up to a limit.

The expected cost of a stop loss or an excess of loss comes from the distribution of
the amount it applies to, as pricing builds it (:mod:`puhui.pricing.aggregate`): an
array ``pmf`` of probabilities of the amounts ``k x span_fen``, k = 0, 1, ..., n - 1;
so do the quantile of the net position and the capital it needs.
"""

from __future__ import annotations

import numpy as np

from puhui.money import apply_ratio


def quota_share_ceded(gross_fen, share_bp) -> np.ndarray:
    """Ceded = round(gross x share), half away from zero (a reversal cedes exactly the
    negative of its original)."""
    return apply_ratio(gross_fen, share_bp)


def net_of(gross_fen, ceded_fen) -> np.ndarray:
    """Net = gross - ceded."""
    return np.asarray(gross_fen, dtype=np.int64) - np.asarray(ceded_fen, dtype=np.int64)


def layer(amount_fen, attachment_fen, width_fen) -> np.ndarray:
    """The layer ``width xs attachment`` of an amount: min(max(X - a, 0), w)."""
    x = np.asarray(amount_fen, dtype=np.int64)
    return np.minimum(np.maximum(x - np.asarray(attachment_fen, dtype=np.int64), 0),
                      np.asarray(width_fen, dtype=np.int64))


def stop_loss_bounds(premium_fen, attachment_bp, width_bp) -> tuple[np.ndarray, np.ndarray]:
    """The stop loss's attachment and width in fen from loss ratios on the premium P:
    A = round(P x a), W = round(P x (a + w)) - A (so A + W is the exit point exactly)."""
    a = apply_ratio(premium_fen, attachment_bp)
    top = apply_ratio(premium_fen, np.asarray(attachment_bp) + np.asarray(width_bp))
    return a, top - a


def stop_loss_ceded(claims_fen, premium_fen, attachment_bp, width_bp) -> np.ndarray:
    """Aggregate stop loss on the year's loss ratio: with S the year's claims and P its
    premium, ceded = min(max(S - A, 0), W), A = P x attachment, A + W = P x (attachment
    + width): the loss ratio above ``attachment`` up to ``attachment + width`` is the
    reinsurer's."""
    a, w = stop_loss_bounds(premium_fen, attachment_bp, width_bp)
    return layer(claims_fen, a, w)


def excess_of_loss_ceded(person_claims_fen, retention_fen, limit_fen) -> np.ndarray:
    """Per-person excess of loss: each person's annual claims X_p cede
    min(max(X_p - R, 0), L); the treaty's total is the sum over persons."""
    return layer(person_claims_fen, retention_fen, limit_fen)


def per_person_totals(person_ids, amounts_fen) -> tuple[np.ndarray, np.ndarray]:
    """The annual claims of each person, X_p = sum of the person's amounts (payments and
    reversals): (the distinct persons, sorted; their totals in fen)."""
    ids, inverse = np.unique(np.asarray(person_ids), return_inverse=True)
    totals = np.zeros(len(ids), dtype=np.int64)
    np.add.at(totals, inverse, np.asarray(amounts_fen, dtype=np.int64))
    return ids, totals


def expected_layer(pmf, span_fen, attachment_fen, width_fen) -> float:
    """E[min(max(X - a, 0), w)] for X with probabilities ``pmf[k]`` of the amount
    k x span (fen)::

        sum_k pmf_k min(max(k h - a, 0), w)

    Fen as a float: an expectation is not a payment."""
    g = np.asarray(pmf, dtype=np.float64)
    x = np.arange(len(g), dtype=np.float64) * span_fen
    return float(np.dot(g, np.minimum(np.maximum(x - attachment_fen, 0.0), width_fen)))


def expected_stop_loss(pmf, span_fen, premium_fen, attachment_bp, width_bp) -> float:
    """The expected cost of an aggregate stop loss: E[min(max(S - A, 0), W)] with S the
    year's claims on the grid (A, W from :func:`stop_loss_bounds`)."""
    a, w = stop_loss_bounds(premium_fen, attachment_bp, width_bp)
    return expected_layer(pmf, span_fen, int(a), int(w))


def expected_excess_of_loss(pmf, span_fen, retention_fen, limit_fen,
                            persons: float = 1.0) -> float:
    """The expected cost of a per-person excess of loss: persons x E[min(max(X - R, 0),
    L)], with ``pmf`` the distribution of one person's annual claims X (for a rating
    cell, its persons; sum over cells for a portfolio)."""
    return persons * expected_layer(pmf, span_fen, retention_fen, limit_fen)


def layer_variance(pmf, span_fen, attachment_fen, width_fen) -> float:
    """Var[Y] = E[Y^2] - E[Y]^2 for the layer Y = min(max(X - a, 0), w), fen^2."""
    g = np.asarray(pmf, dtype=np.float64)
    x = np.arange(len(g), dtype=np.float64) * span_fen
    y = np.minimum(np.maximum(x - attachment_fen, 0.0), width_fen)
    m = float(np.dot(g, y))
    return float(np.dot(g, y * y)) - m * m


def pmf_quantile(pmf, span_fen, q: float) -> int:
    """The q-quantile (value at risk) of X with probabilities ``pmf[k]`` of k x span:
    the least k h with sum_{i <= k} pmf_i >= q (fen)."""
    cdf = np.cumsum(np.asarray(pmf, dtype=np.float64))
    k = int(np.searchsorted(cdf, q, side="left"))
    return int(min(k, len(cdf) - 1) * span_fen)


def net_capital(pmf, span_fen, q: float, attachment_fen=0, width_fen=0) -> float:
    """The capital the net position needs at the quantile q: VaR_q(N) - E[N] for the net
    N = X - min(max(X - a, 0), w) of a layer ceded (no layer: a = w = 0, N = X). N is
    nondecreasing in X, so VaR_q(N) = N(VaR_q(X)). Fen as a float."""
    g = np.asarray(pmf, dtype=np.float64)
    x = np.arange(len(g), dtype=np.float64) * span_fen
    net = x - np.minimum(np.maximum(x - attachment_fen, 0.0), width_fen)
    var_x = pmf_quantile(g, span_fen, q)
    var_net = var_x - min(max(var_x - attachment_fen, 0), width_fen)
    return float(var_net - np.dot(g, net))
