"""From claim models to the benefit: the annual benefit of a product applies its
deductible, ratio and limit to a person's *annual sum* of claims, so its expected value
comes from the aggregate distribution, not from single claims.

One function per quantity (formulas in each docstring):

- :func:`discretise` a severity distribution on a grid of span ``h`` (mean-preserving
  "method of local moment matching", order 1);
- :func:`panjer_poisson` / :func:`panjer_negbin` the aggregate pmf of S = X_1 + ... + X_N;
- :func:`expected_benefit` E[min(r (S - d)+, L)] from a pmf;
- :func:`limited_expected_value` E[min(X, u)] of a pmf.
"""

from __future__ import annotations

import numpy as np


def discretise(cdf, h: float, n: int, lev=None) -> np.ndarray:
    """Probabilities f_k of the claim amount on the grid k h, k = 0..n-1.

    Mean-preserving (local moment matching of order 1, Klugman, Panjer and Willmot,
    "Loss Models", section 9.6.5) when the limited expected value ``lev(u) = E[min(X,u)]``
    is given::

        f_0 = 1 - lev(h) / h
        f_k = (2 lev(k h) - lev((k-1) h) - lev((k+1) h)) / h

    otherwise by rounding: f_k = F((k + 1/2) h) - F((k - 1/2) h). The last point takes
    the remaining tail mass.
    """
    k = np.arange(n, dtype=float)
    if lev is not None:
        L = lev(k * h)
        Lp = lev((k + 1) * h)
        Lm = lev(np.maximum(k - 1, 0) * h)
        f = (2 * L - Lm - Lp) / h
        f[0] = 1 - lev(h) / h
    else:
        upper = cdf((k + 0.5) * h)
        lower = np.concatenate([[0.0], upper[:-1]])
        f = upper - lower
    f = np.clip(f, 0, None)
    f[-1] += max(0.0, 1.0 - f.sum())
    return f


def panjer_poisson(lam: float, f: np.ndarray, n: int | None = None) -> np.ndarray:
    """Aggregate pmf g_s of compound Poisson(lam) with severity pmf f (Panjer, a = 0,
    b = lam)::

        g_0 = exp(lam (f_0 - 1)),   g_s = lam / s * sum_{j=1..s} j f_j g_{s-j}
    """
    return _panjer(0.0, lam, np.exp(lam * (f[0] - 1)), f, n)


def panjer_negbin(mean: float, size: float, f: np.ndarray, n: int | None = None) -> np.ndarray:
    """Aggregate pmf for a negative binomial count with the given mean and size r
    (variance mean + mean^2 / r): a = beta / (1 + beta), b = (r - 1) a, beta = mean / r::

        g_0 = (1 + beta (1 - f_0))^-r,  g_s = 1 / (1 - a f_0) sum_j (a + b j / s) f_j g_{s-j}
    """
    beta = mean / size
    a = beta / (1 + beta)
    return _panjer(a, (size - 1) * a, (1 + beta * (1 - f[0])) ** (-size), f, n)


def _panjer(a: float, b: float, g0: float, f: np.ndarray, n: int | None) -> np.ndarray:
    n = n or len(f)
    fx = np.zeros(n)
    m = min(n, len(f))
    fx[:m] = f[:m]
    g = np.zeros(n)
    g[0] = g0
    j = np.arange(1, n)
    denom = 1 - a * fx[0]
    for s in range(1, n):
        js = j[:s]
        g[s] = np.dot(a + b * js / s, fx[1:s + 1] * g[s - 1::-1][:s]) / denom
    return g


def expected_benefit(g: np.ndarray, h: float, deductible: float, ratio: float,
                     limit: float = np.inf) -> float:
    """E[min(ratio (S - d)+, limit)] for S with pmf g on the grid k h::

        sum_k g_k min(ratio max(k h - d, 0), limit)
    """
    s = np.arange(len(g)) * h
    return float(np.dot(g, np.minimum(ratio * np.maximum(s - deductible, 0.0), limit)))


def limited_expected_value(g: np.ndarray, h: float, u: float) -> float:
    """E[min(S, u)] = sum_k g_k min(k h, u)."""
    s = np.arange(len(g)) * h
    return float(np.dot(g, np.minimum(s, u)))
