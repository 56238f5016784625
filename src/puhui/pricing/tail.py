"""The shape of a claim amount: an empirical body spliced to a generalised Pareto tail.

The severity GLM (:mod:`puhui.pricing.severity`) gives each rating cell its mean amount
mu_c. The *shape* is shared: the standardised amounts z = y / mu_c of all events. Their
distribution is the empirical one up to a threshold u (a high quantile) and a
generalised Pareto distribution (GPD) fitted by maximum likelihood to the exceedances
above it::

    P(Z > z) = p_u (1 + xi (z - u) / sigma)^(-1/xi),   z > u,   p_u = share above u

Why a GPD tail rather than capping with an excess-loss load: Huiminbao benefits apply
an annual deductible and a limit to the *annual sum*, so what is priced is the layer
between them, and that depends on the whole upper tail, not only on its mean above a
cap; the Pickands-Balkema-de Haan theorem makes the GPD the natural model of
exceedances over a high threshold, and it extrapolates beyond the largest amount seen,
which the empirical distribution cannot. With too few exceedances to fit (fewer than
``min_exceedances``) the empirical distribution is used throughout, and that is said in
the fitted state (``tail_`` is ``"empirical"``).

A cell's amount is X = mu_c Z, so E[min(X, x)] = mu_c E[min(Z, x / mu_c)].
"""

from __future__ import annotations

import numpy as np


def gpd_limited_mean(t, xi: float, sigma: float):
    """E[min(Y, t)] for Y ~ GPD(xi, sigma), xi < 1::

        xi != 0:  sigma / (1 - xi) (1 - (1 + xi t / sigma)^(1 - 1/xi))
        xi == 0:  sigma (1 - exp(-t / sigma))

    >>> round(float(gpd_limited_mean(1e12, 0.5, 1.0)), 3)   # the mean sigma / (1 - xi)
    2.0
    """
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    if abs(xi) < 1e-9:
        return sigma * (1 - np.exp(-t / sigma))
    with np.errstate(over="ignore", invalid="ignore"):
        base = np.maximum(1 + xi * t / sigma, 0.0)
        return sigma / (1 - xi) * (1 - base ** (1 - 1 / xi))


def gpd_survival(t, xi: float, sigma: float):
    """P(Y > t) = (1 + xi t / sigma)^(-1/xi) (exp(-t / sigma) when xi = 0)."""
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    if abs(xi) < 1e-9:
        return np.exp(-t / sigma)
    base = np.maximum(1 + xi * t / sigma, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(base > 0, base ** (-1 / xi), 0.0)


class SplicedSeverity:
    """Standardised claim amounts: empirical up to the ``threshold_quantile`` and a GPD
    above it.

    Attributes (after ``fit``)
    --------------------------
    u_ : threshold (standardised); p_u_ : share of amounts above it
    xi_, sigma_ : GPD shape and scale (``None`` when the tail is empirical)
    tail_ : ``"gpd"`` or ``"empirical"``; n_ : amounts fitted; n_exceed_ : above u
    mean_ : E[Z] of the spliced distribution (1 for the empirical one, when z = y / mu
            from a gamma GLM with an intercept)
    """

    def __init__(self, threshold_quantile: float = 0.95, min_exceedances: int = 50):
        self.threshold_quantile = threshold_quantile
        self.min_exceedances = min_exceedances

    def fit(self, z) -> "SplicedSeverity":
        z = np.sort(np.asarray(z, dtype=float))
        if len(z) == 0 or (z <= 0).any():
            raise ValueError("standardised amounts must be positive and not empty")
        self.n_ = len(z)
        u = float(np.quantile(z, self.threshold_quantile))
        exceed = z[z > u] - u
        self.n_exceed_ = int(len(exceed))
        if self.n_exceed_ >= self.min_exceedances:
            from scipy.stats import genpareto

            xi, _, sigma = genpareto.fit(exceed, floc=0.0)
            if xi >= 0.95:   # an infinite-mean tail would give no finite price
                xi = 0.95
                sigma = float(np.mean(exceed) * (1 - xi))
            self.u_, self.xi_, self.sigma_ = u, float(xi), float(sigma)
            self.p_u_ = self.n_exceed_ / self.n_
            self.tail_ = "gpd"
            self._body = z[z <= u]
        else:
            self.u_, self.xi_, self.sigma_ = float(z[-1]), None, None
            self.p_u_ = 0.0
            self.tail_ = "empirical"
            self._body = z
        self._body_cum = np.concatenate([[0.0], np.cumsum(self._body)])
        self.mean_ = float(self.limited_mean(np.inf))
        return self

    def __getstate__(self) -> dict:
        # the running sums are the body's cumsum: recomputed on load, bit for bit, so
        # models.pkl carries every body amount once (at ten million person-years the
        # body is 11.5 million amounts, 92 MB)
        state = dict(self.__dict__)
        state.pop("_body_cum", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_body" in state:
            self._body_cum = np.concatenate([[0.0], np.cumsum(self._body)])

    def limited_mean(self, x):
        """E[min(Z, x)]: the empirical body's part plus the GPD's part above u::

            (1/n) sum_{z_i <= u} min(z_i, x)  +  p_u (min(x, u) + [x > u] E[min(Y, x - u)])
        """
        x = np.asarray(x, dtype=float)
        body, cum = self._body, self._body_cum
        xb = np.minimum(x, body[-1]) if len(body) else x
        k = np.searchsorted(body, xb, side="right")
        body_part = (cum[k] + xb * (len(body) - k)) / self.n_
        if self.tail_ == "empirical":
            return body_part
        tail = self.p_u_ * (np.minimum(x, self.u_)
                            + gpd_limited_mean(x - self.u_, self.xi_, self.sigma_))
        # body amounts above x are counted at x; amounts in the tail count at >= u
        return body_part + tail

    def survival(self, x):
        """P(Z > x)."""
        x = np.asarray(x, dtype=float)
        k = np.searchsorted(self._body, x, side="right")
        body = (len(self._body) - k) / self.n_
        if self.tail_ == "empirical":
            return body
        return body + self.p_u_ * np.where(x < self.u_, 1.0,
                                           gpd_survival(x - self.u_, self.xi_, self.sigma_))

    def summary(self) -> dict:
        return {"tail": self.tail_, "threshold_quantile": self.threshold_quantile,
                "threshold": self.u_, "share_above": self.p_u_,
                "exceedances": self.n_exceed_, "xi": self.xi_, "sigma": self.sigma_,
                "amounts": self.n_, "mean": self.mean_}
