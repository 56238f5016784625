"""IBNR from a :class:`~puhui.reserving.triangles.Triangle` by chainladder-python.

Estimators in the scikit-learn / statsmodels style: the settings in ``__init__``,
``fit(triangle, ...)`` returns the estimator, fitted attributes end in ``_``. Money in
fen (``int64``, rounded half away from zero from chainladder's floats); yuan only in
:meth:`summary`.

- :class:`MackChainLadder` chain ladder (volume-weighted factors) with Mack's (1993)
  standard error of each origin's reserve and of the total;
- :class:`BornhuetterFerguson` the prior ultimate = priced loss ratio x earned premium,
  developed by the chain ladder's percentage unreported;
- :class:`CapeCod` the loss ratio estimated from the data (Stanard-Bühlmann), the priced
  loss ratio kept beside it for comparison;
- :class:`OdpBootstrap` the over-dispersed Poisson bootstrap of England and Verrall
  (resampled Pearson residuals, gamma process error): a distribution of the reserve,
  the same bit for bit for the same seed.

chainladder is imported inside the functions that run it (docs/dependencies.md): ``import
puhui`` and every other command never load it.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.reserving.triangles import Triangle

#: the fewest origin periods a method fits on (two development factors)
MIN_ORIGINS = 3
#: the fewest development periods Mack's correlation tests are run on
MIN_TESTED = 4


def to_chainladder(tri: Triangle):
    """The triangle as a ``chainladder.Triangle`` of fen (float64): one row per known
    cell, origin = the origin period's first day, valuation = the last day of the
    development period."""
    import chainladder as cl

    if len(tri.origins) < MIN_ORIGINS:
        raise InputError(f"a triangle of {len(tri.origins)} origin period(s) as of "
                         f"{tri.as_of.date()}: reserving needs at least {MIN_ORIGINS}")
    i, j = np.nonzero(tri.known)
    periods = pd.period_range(tri.origins[0], periods=2 * len(tri.origins), freq=tri.grain)
    df = pd.DataFrame({"origin": tri.origins[i].start_time,
                       "valuation": periods[i + j].end_time.normalize(),
                       "fen": tri.values[i, j].astype(np.float64)})
    return cl.Triangle(df, origin="origin", development="valuation", columns=["fen"],
                       cumulative=True)


@contextmanager
def _quiet():
    """chainladder warns on every empty cell and division it masks (NaN by design)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _round_half_away(x) -> np.ndarray:
    """Floats rounded to whole numbers, half away from zero; NaN stays NaN."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def _fen(x) -> np.ndarray:
    """Floats of fen to int64 fen, half away from zero; NaN (chainladder's "no amount",
    an origin with nothing paid developed by the chain ladder) as 0."""
    return _round_half_away(np.nan_to_num(np.asarray(x, dtype=np.float64))).astype(np.int64)


def _by_origin(cl_triangle) -> np.ndarray:
    """The per-origin column of a one-column chainladder result, (n,)."""
    return np.asarray(cl_triangle.values)[0, 0, :, -1]


def _premium_weight(clt, earned_premium_fen, n: int):
    """Earned premium by origin as the exposure chainladder's BF and Cape Cod read. An
    origin may earn nothing only if nothing is paid for it either (a product year's
    origin periods after its cover, reserved after it ended): its expected claims are
    then 0 and so is its IBNR (chainladder's NaN ultimate, read as 0 fen)."""
    p = np.asarray(earned_premium_fen, dtype=np.int64)
    if p.shape != (n,) or (p < 0).any() or not (p > 0).any():
        raise InputError(f"earned premium: one amount >= 0 in fen per origin period "
                         f"({n}), not all 0, is needed, got shape {p.shape}")
    paid = np.nan_to_num(np.asarray(clt.latest_diagonal.values)[0, 0, :, -1])
    if ((p == 0) & (paid != 0)).any():
        raise InputError(f"earned premium: {int(((p == 0) & (paid != 0)).sum())} origin "
                         f"period(s) with claims paid earn no premium; give each origin "
                         f"the premium earned in it")
    w = clt.latest_diagonal.copy()
    w.values = p.astype(np.float64).reshape(1, 1, n, 1)
    return w


#: tail curves fitted to the age-to-age factors (chainladder's ``TailCurve``)
TAILS = ("exponential", "inverse_power")


def tail_factor(value) -> float:
    """A constant tail factor given from outside the triangle: a finite number >= 1,
    or InputError."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"tail factor {value!r}: not a number; give one >= 1 (1.05 for "
                         f"5 % more to come beyond the triangle's last age)") from None
    if not np.isfinite(f) or f < 1:
        raise InputError(f"tail factor {value!r}: give a finite number >= 1 (the "
                         f"cumulative development beyond the triangle's last age)")
    return f


def developed(clt, tail=None, sigma_interpolation: str = "log-linear"):
    """The triangle with its volume-weighted development factors (chainladder's
    ``Development``) and, with ``tail``, a tail factor beyond the last age: a curve
    name, the curve fitted to f_j - 1 against the age j ("exponential": log(f_j - 1) =
    a + b j, R ChainLadder's ``tail = TRUE``; "inverse_power": log(f_j - 1) = a + b log
    j) and extrapolated 100 periods, the tail factor being the product of (1 + its
    values); a number F >= 1, that tail factor given from outside (chainladder's
    ``TailConstant(tail=F)``, its default decay 0.5 spreading F over the periods after
    the last age; the product of the appended factors is F)."""
    import chainladder as cl

    constant = _is_constant(tail)
    if tail is not None and not constant and tail not in TAILS:
        raise InputError(f"tail {tail!r}: use None, a factor >= 1, "
                         f"{' or '.join(map(repr, TAILS))}")
    dev = cl.Development(sigma_interpolation=sigma_interpolation).fit_transform(clt)
    if constant:
        return cl.TailConstant(tail=tail_factor(tail)).fit_transform(dev)
    return dev if tail is None else cl.TailCurve(curve=tail).fit_transform(dev)


def _unestimated(triangle: Triangle, ldf: np.ndarray, ultimate: np.ndarray) -> np.ndarray:
    """The origins with something paid whose estimate is not one: no ultimate (NaN), or
    a development factor from their latest age on that the triangle cannot give (nothing
    paid at the start of the link), which chainladder takes as 1 (no development)."""
    n = len(triangle.origins)
    bad = ~np.isfinite(np.asarray(ldf[:n - 1], dtype=np.float64))
    age = np.maximum(triangle.known.sum(axis=1) - 1, 0)
    rests = np.array([bad[a:].any() for a in age], dtype=bool)
    return (~np.isfinite(ultimate) | rests) & (triangle.latest != 0)


class _Reserving:
    """What every method shares: the fit on a triangle and the per-origin figures."""

    tail = None

    def fit(self, triangle: Triangle, earned_premium_fen=None):
        clt = to_chainladder(triangle)
        with _quiet():
            self.model_ = self._fit(clt, earned_premium_fen, len(triangle.origins))
            self.diagnostics_ = development_diagnostics(clt)
        self.triangle_ = triangle
        self.latest_fen_ = triangle.latest
        raw = np.asarray(_by_origin(self.model_.ultimate_), dtype=np.float64)
        self.ultimate_fen_ = _fen(raw)
        self.ibnr_fen_ = self.ultimate_fen_ - self.latest_fen_
        self.ibnr_total_fen_ = int(self.ibnr_fen_.sum())
        ldf = np.asarray(self.model_.ldf_.values)[0, 0, 0]
        self.ldf_ = ldf
        self.tail_factor_ = float(np.prod(ldf[len(triangle.origins) - 1:]))
        self.unestimated_ = _unestimated(triangle, ldf, raw)
        with _quiet():          # chainladder computes Mack's errors lazily, here
            self._after_fit(clt)
        return self

    def _after_fit(self, clt):
        pass

    def summary(self) -> pd.DataFrame:
        """Latest, ultimate and IBNR by origin period, in yuan."""
        return pd.DataFrame({"latest": self.latest_fen_ / 100,
                             "ultimate": self.ultimate_fen_ / 100,
                             "ibnr": self.ibnr_fen_ / 100},
                            index=self.triangle_.origins.astype(str))


class MackChainLadder(_Reserving):
    """Chain ladder with Mack's standard error.

    ``sigma_interpolation``: how the last development period's sigma is estimated
    ("log-linear", R ChainLadder's default, or "mack", Mack's approximation
    sigma_{n-1}^2 = min(sigma_{n-2}^4 / sigma_{n-3}^2, sigma_{n-3}^2, sigma_{n-2}^2)).

    ``tail``: None (no development beyond the triangle's last age), a curve of
    :data:`TAILS` or a constant tail factor >= 1 (:func:`developed`); every method
    takes it.

    Fitted: ``ultimate_fen_``, ``ibnr_fen_`` (int64), ``std_err_fen_`` (each origin's
    reserve) and ``total_std_err_fen_`` (whole fen as floats: NaN where the triangle
    gives no estimate), ``ldf_`` (age-to-age factors, then the tail's),
    ``tail_factor_`` (1 without a tail), ``diagnostics_``, ``tail_sigma_failed_``
    (a tail, constant or a curve, whose extrapolated sigma is not usable: the s.e. are then NaN,
    :func:`_tail_sigma_fails`), ``sigma_fallback_`` (the log-linear sigma of the last
    link failed, :func:`_last_sigma_fails`: the s.e. use Mack's approximation).
    """

    def __init__(self, sigma_interpolation: str = "log-linear",
                 tail: str | float | None = None):
        self.sigma_interpolation = sigma_interpolation
        self.tail = tail

    def _fit(self, clt, premium, n):
        import chainladder as cl

        return cl.MackChainladder().fit(developed(clt, self.tail, self.sigma_interpolation))

    def _after_fit(self, clt):
        n = len(self.triangle_.origins)
        self.sigma_fallback_ = (self.sigma_interpolation == "log-linear"
                                and not _is_constant(self.tail)
                                and _last_sigma_fails(self.model_, n))
        if self.sigma_fallback_:
            import chainladder as cl

            self.model_ = cl.MackChainladder().fit(developed(clt, self.tail, "mack"))
        se = _round_half_away(_by_origin(self.model_.mack_std_err_))
        # an origin with no reserve has none to err on; NaN elsewhere says the triangle
        # gives no estimate (a factor resting on nothing paid), never a silent 0
        self.std_err_fen_ = np.where(np.isnan(se) & (self.ibnr_fen_ == 0), 0.0, se)
        total = np.asarray(self.model_.total_mack_std_err_.values).ravel()[0]
        self.total_std_err_fen_ = float(_round_half_away(total))
        # a curve's tail sigma is extrapolated as a constant's is (review s23 rev3: the
        # exponential tail gave 3e151 after the last link's fallback, an s.e. of 1.3e154
        # fen on an IBNR of 6,589 yuan, and inf on a triangle whose late links are flat)
        self.tail_sigma_failed_ = self.tail is not None and _tail_sigma_fails(
            self.model_, len(self.triangle_.origins))
        if self.tail_sigma_failed_:
            self.std_err_fen_ = np.full(len(se), np.nan)
            self.total_std_err_fen_ = float("nan")


def _is_constant(tail) -> bool:
    """Whether ``tail`` is a constant tail factor (a number), not a curve's name."""
    return isinstance(tail, (int, float, np.number)) and not isinstance(tail, bool)


#: :func:`_last_sigma_fails`: an extrapolated sigma this many times every estimated one's
SIGMA_EXTRAPOLATION_LIMIT = 10.0


def _last_sigma_fails(mack, n: int) -> bool:
    """Whether chainladder's log-linear sigma of the triangle's last link (one ratio, so
    extrapolated from the links before it) is infinite or above
    :data:`SIGMA_EXTRAPOLATION_LIMIT` times every other link's and the log-linear trend
    of those links' own (finite, positive) sigmas at the last link: links where nothing
    developed (sigma 0, as between batches that pay only at quarter ends) bend the
    regression, and on one such triangle it gave 2e22 and a Mack s.e. of 2.2e24 yuan on
    an IBNR of 5,972 (review s23). Mack's own approximation (1993),
    sigma_{n-1}^2 = min(sigma_{n-2}^4 / sigma_{n-3}^2, sigma_{n-3}^2, sigma_{n-2}^2), is
    used instead (:class:`MackChainLadder`'s ``sigma_fallback_``)."""
    sigma = np.asarray(mack.X_.sigma_.values, dtype=np.float64)[0, 0, 0]
    if n < 3 or len(sigma) < n - 1:
        return False
    last, own = sigma[n - 2], sigma[:n - 2]
    age = np.flatnonzero(np.isfinite(own) & (own > 0))
    own = own[age]
    if np.isinf(last):
        return True
    if not np.isfinite(last) or not own.size:
        return False
    # the trend of the estimated sigmas themselves, extrapolated to the last link: a
    # sigma legitimately rising link by link (review s23 rev3: 0.07, 1.09, then 17.95)
    # is not a failed fit, and Mack's approximation (the smallest of the last two)
    # would cut its s.e. 25-fold
    trend = (float(np.exp(np.polyval(np.polyfit(age, np.log(own), 1), n - 2)))
             if own.size >= 2 else 0.0)
    return bool(last > SIGMA_EXTRAPOLATION_LIMIT * max(own.max(), trend))


def _tail_sigma_fails(mack, n: int) -> bool:
    """Whether chainladder's sigma for a constant tail (extrapolated log-linearly from
    the triangle's sigma_j, ``TailBase._get_tail_stats``) is not finite or larger than
    every link's own: the fit it extrapolates has gone wrong (a link with sigma 0, where
    nothing developed, makes it infinite; a study triangle gave 1e150), and the s.e.
    built on it is not one."""
    sigma = np.asarray(mack.X_.sigma_.values, dtype=np.float64)[0, 0, 0]
    own = sigma[:n - 1][np.isfinite(sigma[:n - 1])]
    return not np.isfinite(sigma[-1]) or (own.size > 0 and sigma[-1] > own.max())


class BornhuetterFerguson(_Reserving):
    """Bornhuetter-Ferguson with the priced loss ratio as the prior::

        IBNR_i = prior_loss_ratio x P_i x (1 - 1 / CDF_i)

    where P_i is origin i's earned premium (``fit(triangle, earned_premium_fen)``) and
    CDF_i the chain ladder's cumulative factor to ultimate from its latest age."""

    def __init__(self, prior_loss_ratio: float, tail: str | float | None = None):
        self.prior_loss_ratio = prior_loss_ratio
        self.tail = tail

    def _fit(self, clt, premium, n):
        import chainladder as cl

        if premium is None:
            raise InputError("Bornhuetter-Ferguson needs the earned premium by origin")
        return cl.BornhuetterFerguson(apriori=self.prior_loss_ratio).fit(
            developed(clt, self.tail), sample_weight=_premium_weight(clt, premium, n))


class CapeCod(_Reserving):
    """Cape Cod (Stanard-Bühlmann): the loss ratio from the data,

        ELR = sum_i C_i / sum_i (P_i / CDF_i),   IBNR_i = ELR x P_i x (1 - 1 / CDF_i),

    (``decay`` < 1 weights nearby origins more, chainladder's generalised Cape Cod, and
    the loss ratio differs by origin). ``prior_loss_ratio`` (the priced one) is not used
    by the estimate: it is kept so the fitted ``loss_ratio_`` (by origin) can be set
    against it (``loss_ratio_gap_`` = fitted - prior)."""

    def __init__(self, prior_loss_ratio: float | None = None, decay: float = 1.0,
                 tail: str | float | None = None):
        self.prior_loss_ratio = prior_loss_ratio
        self.decay = decay
        self.tail = tail

    def _fit(self, clt, premium, n):
        import chainladder as cl

        if premium is None:
            raise InputError("Cape Cod needs the earned premium by origin")
        return cl.CapeCod(decay=self.decay).fit(
            developed(clt, self.tail), sample_weight=_premium_weight(clt, premium, n))

    def _after_fit(self, clt):
        self.loss_ratio_ = np.asarray(_by_origin(self.model_.apriori_), dtype=np.float64)
        self.loss_ratio_gap_ = (None if self.prior_loss_ratio is None
                                else self.loss_ratio_ - self.prior_loss_ratio)


class OdpBootstrap(_Reserving):
    """The over-dispersed Poisson bootstrap (England and Verrall 2002): ``n_sims``
    triangles from resampled Pearson residuals of the chain ladder, each developed by
    the chain ladder with gamma process error (scale = the ODP dispersion).

    Fitted: ``ultimate_fen_`` / ``ibnr_fen_`` the chain ladder's point estimate,
    ``ibnr_sims_fen_`` (n_sims, n) each simulation's IBNR by origin, ``scale_`` the
    dispersion, ``hat_adjusted_`` whether the residuals were hat-adjusted (chainladder
    gives up the adjustment where the hat matrix is singular); :meth:`quantile` of the
    total. The same ``seed`` gives the same
    simulations bit for bit. No tail: the simulations develop to the triangle's last
    age."""

    def __init__(self, n_sims: int = 1000, seed: int = 20240101, hat_adjust: bool = True):
        self.n_sims = n_sims
        self.seed = seed
        self.hat_adjust = hat_adjust

    def _fit(self, clt, premium, n):
        import chainladder as cl

        boot = cl.BootstrapODPSample(n_sims=self.n_sims, random_state=self.seed,
                                     hat_adj=self.hat_adjust)
        sims = cl.Chainladder().fit(boot.fit_transform(clt))
        self.ibnr_sims_fen_ = _fen(np.asarray(sims.ibnr_.values)[:, 0, :, -1])
        self.scale_ = float(np.asarray(boot.scale_).ravel()[0])
        # chainladder 0.10.1 falls back to unadjusted residuals where the hat matrix is
        # singular, with a warning only (and sets ``had_adj``, a typo): said here
        self.hat_adjusted_ = self.hat_adjust and getattr(boot, "hat_", None) is not None
        return cl.Chainladder().fit(clt)

    def quantile(self, q) -> np.ndarray:
        """Quantiles of the total IBNR over the simulations, fen (numpy's default
        linear interpolation, rounded)."""
        return _fen(np.quantile(self.ibnr_sims_fen_.sum(axis=1), q))


def development_diagnostics(clt) -> dict:
    """The checks chainladder offers on a triangle's development:

    - ``factors``: by development link, the volume-weighted age-to-age factor f_j, its
      standard error, CV = s.e. / f_j, Mack's sigma_j and the number of link ratios;
    - ``std_residuals``: the weighted standardised residuals (Barnett and Zehnwirth) of
      each link ratio, (n - 1, n - 1), NaN where none; ``share_large_residuals`` the
      share beyond 2 in absolute value;
    - ``calendar_effect``: Mack's (1994) test for calendar-period effects (z statistic,
      its critical range at 10 %, and whether the test rejects independence);
    - ``factor_correlation``: Mack's test of correlation between successive factors
      (T statistic, at 50 %, and whether it rejects).

    The two tests need ``MIN_TESTED`` development periods (their variances divide by
    (n - 2)(n - 3)); on a shorter triangle they are None.
    """
    import chainladder as cl

    dev = cl.Development().fit(clt)
    ldf = np.asarray(dev.ldf_.values)[0, 0, 0]
    se = np.asarray(dev.std_err_.values)[0, 0, 0]
    link = np.asarray(clt.link_ratio.values)[0, 0]
    factors = pd.DataFrame({"factor": ldf, "std_err": se, "cv": se / ldf,
                            "sigma": np.asarray(dev.sigma_.values)[0, 0, 0],
                            "n_ratios": np.isfinite(link).sum(axis=0)[:len(ldf)]},
                           index=pd.Index([str(x) for x in dev.ldf_.development],
                                          name="link"))
    res = np.asarray(dev.std_residuals_.values)[0, 0]
    finite = res[np.isfinite(res)]
    out = {"factors": factors, "std_residuals": res,
           "share_large_residuals": float((np.abs(finite) > 2).mean()) if finite.size else 0.0,
           "calendar_effect": None, "factor_correlation": None}
    if len(ldf) + 1 >= MIN_TESTED:
        out["calendar_effect"] = _calendar_effect(
            clt.valuation_correlation(p_critical=0.1, total=True))
        cor = clt.development_correlation(p_critical=0.5)
        # chainladder names Mack's weighted T statistic ``t_expectation``
        out["factor_correlation"] = {
            "t": _scalar(cor.t_expectation),
            "range": tuple(float(x) for x in cor.confidence_interval),
            "rejects": bool(_scalar(cor.reject))}
    return out


def _scalar(x) -> float:
    return float(np.asarray(getattr(x, "values", x)).ravel()[0])


def _calendar_effect(val) -> dict:
    """Mack's calendar-period test on the whole triangle: Z is accepted within
    E[Z] +- z_{1 - p/2} sd[Z]. Computed here from chainladder's Z, E[Z] and Var[Z]:
    chainladder 0.10.1's own ``z_critical`` for ``total=True`` compares Var[Z] with a
    range centred on Var[Z], so it can never reject."""
    from scipy.stats import norm

    z, e, v = _scalar(val.z), _scalar(val.z_expectation), _scalar(val.z_variance)
    half = float(norm.ppf(1 - val.p_critical / 2) * np.sqrt(v))
    return {"z": z, "expected": e, "range": (e - half, e + half),
            "rejects": not e - half <= z <= e + half}
