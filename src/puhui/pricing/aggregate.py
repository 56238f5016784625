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
        La = lev(np.arange(n + 1, dtype=float) * h)     # lev at 0, h, ..., n h
        L, Lp = La[:-1], La[1:]
        Lm = np.concatenate([La[:1], La[:-2]])
        f = (2 * L - Lm - Lp) / h
        f[0] = 1 - La[1] / h
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


def compound_fft(f: np.ndarray, mean: float, size: float | None = None) -> np.ndarray:
    """Aggregate pmf of S = X_1 + ... + X_N by the fast Fourier transform, for a
    severity pmf ``f`` on a grid (padded with zeros far enough that S rarely wraps
    around) and a Poisson count (``size`` None) or a negative binomial count with the
    given mean and size r (variance mean + mean^2 / r)::

        phi = fft(f);  Poisson: g = ifft(exp(mean (phi - 1)))
                       NB:      g = ifft((1 - (mean / r) (phi - 1))^(-r))

    Agrees with the Panjer recursion (tested); O(n log n) rather than O(n^2).
    """
    g = np.fft.irfft(compound_sum_fft(f, mean, size), n=len(f))
    return np.clip(g, 0.0, None)


def benefit_moments(g: np.ndarray, h: float, deductible: float, ratio: float,
                    limit: float = np.inf) -> tuple[float, float]:
    """First and second moments of B = min(ratio (S - d)+, limit) for S with pmf g on
    the grid k h: (sum g_k b_k, sum g_k b_k^2)."""
    s = np.arange(len(g)) * h
    b = np.minimum(ratio * np.maximum(s - deductible, 0.0), limit)
    return float(np.dot(g, b)), float(np.dot(g, b * b))


def benefit_cap(deductible: float, ratio: float, limit: float, scale: float) -> float:
    """The annual sum at which the benefit reaches its limit, c = d + L / r. Capping each
    claim at c leaves min(r (S - d)+, L) unchanged (one claim of c or more already pays
    L), which keeps the grid finite. With no limit, c = d + 200 mean claims (an
    approximation: a product file always states a limit)."""
    if np.isfinite(limit) and ratio > 0:
        return deductible + limit / ratio
    return deductible + 200.0 * scale


def compound_sum_fft(f: np.ndarray, mean: float, size: float | None = None) -> np.ndarray:
    """The transform (rfft) of a compound sum's pmf: P_N(fft(f)), for combining
    independent compound sums by multiplying transforms (see :func:`compound_fft`)."""
    phi = np.fft.rfft(f)
    if size is None or not np.isfinite(size):
        return np.exp(mean * (phi - 1))
    return (1 - (mean / size) * (phi - 1)) ** (-size)


def annual_benefit_moments(limited_mean, scale: float, mean_count: float,
                           deductible: float, ratio: float, limit: float = np.inf,
                           size: float | None = None, n: int = 2 ** 15,
                           reach: float = 4.0) -> tuple[float, float]:
    """E[B] and E[B^2] of the annual benefit B = min(ratio (S - d)+, limit) where S is a
    compound sum of a Poisson or negative binomial count (``mean_count``, ``size``) of
    claims X = scale Z, with ``limited_mean(z) = E[min(Z, z)]`` (for instance
    :meth:`puhui.pricing.tail.SplicedSeverity.limited_mean`). One component of
    :func:`annual_benefit_moments_of`."""
    return annual_benefit_moments_of([(limited_mean, scale, mean_count, size)],
                                     deductible, ratio, limit, n, reach)


def annual_benefit_moments_of(components, deductible: float, ratio: float,
                              limit: float = np.inf, n: int = 2 ** 15,
                              reach: float = 4.0) -> tuple[float, float]:
    """E[B] and E[B^2] of B = min(ratio (S - d)+, limit) where S is the sum of
    independent compound sums, one per component ``(limited_mean, scale, mean_count,
    size)`` (for instance inpatient stays and outpatient settlements, whose amounts
    differ by an order of magnitude)::

        fft(g) = prod_k P_k(fft(f_k))

    Claims are capped at c (:func:`benefit_cap`), discretised mean-preservingly on
    n points spanning ``reach`` c, and compounded by FFT (:func:`annual_sum_pmf_of`).
    """
    pmf = annual_sum_pmf_of(components, deductible, ratio, limit, n, reach)
    if pmf is None:
        return 0.0, 0.0
    g, h = pmf
    return benefit_moments(g, h, deductible, ratio, limit)


def annual_sum_pmf_of(components, deductible: float, ratio: float, limit: float = np.inf,
                      n: int = 2 ** 15, reach: float = 4.0) -> tuple[np.ndarray, float] | None:
    """The pmf g of the annual sum S of :func:`annual_benefit_moments_of` on the grid
    k h (claims capped at c, so S's mass at or above the point where the benefit pays its
    limit is exact for the benefit, not for S): (g, h); None when the benefit pays
    nothing (no claims, a ratio or limit of 0). The benefit is min(ratio (k h - d)+,
    limit) at each point."""
    comps = [c for c in components if c[2] > 0 and c[1] > 0]
    if not comps or ratio <= 0 or limit <= 0:
        return None
    c = benefit_cap(deductible, ratio, limit, max(x[1] for x in comps))
    h = reach * c / n
    top = int(np.ceil(c / h)) + 1
    transform = None
    for limited_mean, scale, mean_count, size in comps:
        def lev(x, lm=limited_mean, sc=scale):
            return sc * lm(np.minimum(x, c) / sc)

        f = discretise(None, h, n, lev=lev)
        # the cap's mass sits at c; nothing lies beyond it
        f[top:] = 0.0
        f[top - 1] += max(0.0, 1.0 - f.sum())
        t = compound_sum_fft(f, mean_count, size)
        transform = t if transform is None else transform * t
    return np.clip(np.fft.irfft(transform, n=n), 0.0, None), h
