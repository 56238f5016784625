"""The aggregate distribution and the expected benefit against closed forms.

Closed forms used (exponential severity with mean theta):
- E[min(X, u)] = theta (1 - exp(-u / theta))
- compound Poisson(lam): given N = n >= 1, S ~ Gamma(n, theta), so
  E[(S - d)+] = sum_n P(N = n) E[(Gamma(n, theta) - d)+], with
  E[(G - d)+] = n theta (1 - F_{n+1}(d)) - d (1 - F_n(d))  (F_k the Gamma(k, theta) cdf).
"""

import numpy as np
import pytest
from scipy import stats

from puhui.pricing.aggregate import (
    annual_benefit_moments,
    annual_benefit_moments_of,
    compound_fft,
    discretise,
    expected_benefit,
    limited_expected_value,
    panjer_negbin,
    panjer_poisson,
)

THETA = 8000.0          # mean claim (yuan)
H = 100.0               # grid span (yuan)
N = 4000                # grid points: up to 400,000 yuan


def exp_lev(u):
    return THETA * (1 - np.exp(-np.asarray(u, dtype=float) / THETA))


def stop_loss_closed_form(lam, d):
    total = 0.0
    for n in range(1, 80):
        p = stats.poisson.pmf(n, lam)
        tail_n1 = stats.gamma.sf(d, n + 1, scale=THETA)
        tail_n = stats.gamma.sf(d, n, scale=THETA)
        total += p * (n * THETA * tail_n1 - d * tail_n)
    return total


def test_discretised_severity_keeps_the_mean():
    f = discretise(None, H, N, lev=exp_lev)
    assert f.sum() == pytest.approx(1.0, abs=1e-10)
    assert np.dot(np.arange(N) * H, f) == pytest.approx(THETA, rel=1e-4)


def test_limited_expected_value_against_closed_form():
    f = discretise(None, H, N, lev=exp_lev)
    for u in (1000.0, 5000.0, 20000.0):
        # local moment matching is exact for E[min(X, u)] at grid points
        assert limited_expected_value(f, H, u) == pytest.approx(float(exp_lev(u)), rel=1e-9)


@pytest.mark.parametrize("lam,d", [(0.3, 0.0), (0.3, 20000.0), (1.5, 12000.0)])
def test_compound_poisson_stop_loss_against_closed_form(lam, d):
    g = panjer_poisson(lam, discretise(None, H, N, lev=exp_lev))
    assert g.sum() == pytest.approx(1.0, abs=1e-9)
    assert g[0] == pytest.approx(np.exp(-lam), rel=1e-2)   # P(S = 0) ~ P(N = 0) (+ tiny claims)
    got = expected_benefit(g, H, d, 1.0)
    assert got == pytest.approx(stop_loss_closed_form(lam, d), rel=2e-3)


def test_ratio_and_limit():
    g = panjer_poisson(0.8, discretise(None, H, N, lev=exp_lev))
    full = expected_benefit(g, H, 12000.0, 1.0)
    assert expected_benefit(g, H, 12000.0, 0.7) == pytest.approx(0.7 * full, rel=1e-12)
    capped = expected_benefit(g, H, 12000.0, 0.7, limit=5000.0)
    assert capped < 0.7 * full
    # with a limit above every outcome nothing changes
    assert expected_benefit(g, H, 12000.0, 0.7, limit=1e9) == pytest.approx(0.7 * full)


def test_negative_binomial_mean_and_poisson_limit():
    f = discretise(None, H, N, lev=exp_lev)
    g = panjer_negbin(0.5, 2.0, f)
    assert np.dot(np.arange(N) * H, g) == pytest.approx(0.5 * THETA, rel=1e-3)
    # a very large size is the Poisson
    gp = panjer_poisson(0.5, f)
    gn = panjer_negbin(0.5, 1e7, f)
    assert np.abs(gp - gn).max() < 1e-6


@pytest.mark.parametrize("size", [None, 2.0])
def test_fft_equals_panjer(size):
    f = discretise(None, H, N, lev=exp_lev)
    fpad = np.concatenate([f, np.zeros(3 * N)])   # room so S does not wrap around
    g = compound_fft(fpad, 0.7, size)[:N]
    ref = panjer_poisson(0.7, f) if size is None else panjer_negbin(0.7, size, f)
    assert np.abs(g - ref).max() < 1e-10


@pytest.mark.parametrize("lam,d,r,lim", [(0.3, 20000.0, 1.0, np.inf), (1.5, 12000.0, 0.7, 50000.0),
                                         (0.05, 0.0, 0.7, 30000.0)])
def test_annual_benefit_moments_against_closed_form(lam, d, r, lim):
    """Exponential claims (Z standard exponential, scale THETA): the first moment against
    the stop-loss closed form; with a limit, E[min(r (S-d)+, L)] = r (E[(S-d)+] -
    E[(S-d-L/r)+]) by the layer identity."""
    def z_lev(z):
        return 1 - np.exp(-np.asarray(z, dtype=float))

    m1, m2 = annual_benefit_moments(z_lev, THETA, lam, d, r, lim, n=2 ** 14)
    want = r * stop_loss_closed_form(lam, d)
    if np.isfinite(lim):
        want -= r * stop_loss_closed_form(lam, d + lim / r)
    assert m1 == pytest.approx(want, rel=3e-3)
    assert m2 >= m1 ** 2


def test_annual_benefit_zero_cases():
    assert annual_benefit_moments(lambda z: z, 1.0, 0.0, 0, 0.7, 100.0) == (0.0, 0.0)


def test_two_components_are_one_compound_when_their_claims_match():
    """Compound Poisson(l1) + compound Poisson(l2) with the same exponential claims is
    compound Poisson(l1 + l2) (the sum of independent compound Poissons), so the
    two-component transform product must give the one-component figure."""
    def z_lev(z):
        return 1 - np.exp(-np.asarray(z, dtype=float))

    two = annual_benefit_moments_of([(z_lev, THETA, 0.2, None), (z_lev, THETA, 0.5, None)],
                                    12000.0, 0.7, 80000.0, n=2 ** 14)
    one = annual_benefit_moments(z_lev, THETA, 0.7, 12000.0, 0.7, 80000.0, n=2 ** 14)
    assert two == pytest.approx(one, rel=1e-9)
