"""Risk transfer arithmetic (puhui.reserving.treaties): a toy portfolio worked by hand
for each treaty, and the expected cost of a stop loss and an excess of loss from the
pricing's compound distribution (puhui.pricing.aggregate) against a Monte Carlo of the
same compound sums drawn with another generator (numpy's Mersenne Twister)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from puhui.pricing.aggregate import compound_fft, discretise
from puhui.reserving import treaties as t


def test_quota_share_by_hand():
    """30 % quota share (3,000 bp) on five payments in fen, the fourth reversing the third:

        gross    0   120,000   35,005   1,000,001   -35,005   total 1,120,001
        ceded    0    36,000   10,502     300,000   -10,502   total   336,000
        net      0    84,000   24,503     700,001   -24,503   total   784,001

    35,005 x 0.3 = 10,501.5 -> 10,502 (half away from zero), its reversal -10,502;
    1,000,001 x 0.3 = 300,000.3 -> 300,000."""
    gross = np.array([0, 120_000, 35_005, 1_000_001, -35_005])
    ceded = t.quota_share_ceded(gross, 3000)
    assert ceded.tolist() == [0, 36_000, 10_502, 300_000, -10_502]
    net = t.net_of(gross, ceded)
    assert net.tolist() == [0, 84_000, 24_503, 700_001, -24_503]
    assert (gross.sum(), ceded.sum(), net.sum()) == (1_120_001, 336_000, 784_001)


def test_stop_loss_by_hand():
    """Premium 10,000,000 fen; the reinsurer pays the loss ratio from 80 % to 120 %
    (attachment 8,000 bp, width 4,000 bp): A = 8,000,000, W = 4,000,000.

        claims S       7,500,000   9,100,000   13,000,000
        ceded                  0   1,100,000    4,000,000   (capped at W)
        net            7,500,000   8,000,000    9,000,000

    Rounding: premium 333,333 -> A = round(266,666.4) = 266,666, exit round(399,999.6)
    = 400,000, W = 133,334; claims 500,000 cede 133,334."""
    s = np.array([7_500_000, 9_100_000, 13_000_000])
    ceded = t.stop_loss_ceded(s, 10_000_000, 8000, 4000)
    assert ceded.tolist() == [0, 1_100_000, 4_000_000]
    assert t.net_of(s, ceded).tolist() == [7_500_000, 8_000_000, 9_000_000]
    a, w = t.stop_loss_bounds(333_333, 8000, 4000)
    assert (int(a), int(w)) == (266_666, 133_334)
    assert int(t.stop_loss_ceded(500_000, 333_333, 8000, 4000)) == 133_334


def test_excess_of_loss_by_hand():
    """Retention 5,000,000 fen (50,000 yuan) a person a year, limit 20,000,000.

        person   payments (fen)                          annual X   ceded        net
        a        3,000,000 + 2,500,000                   5,500,000     500,000   5,000,000
        b        30,000,000                             30,000,000  20,000,000  10,000,000
        c        4,000,000                               4,000,000           0   4,000,000
        d        8,000,000 - 8,000,000 + 6,000,000       6,000,000   1,000,000   5,000,000
        total                                           45,500,000  21,500,000  24,000,000
    """
    persons = np.array(["d", "a", "b", "d", "c", "a", "d"])
    paid = np.array([8_000_000, 3_000_000, 30_000_000, -8_000_000, 4_000_000, 2_500_000,
                     6_000_000])
    ids, x = t.per_person_totals(persons, paid)
    assert ids.tolist() == ["a", "b", "c", "d"]
    assert x.tolist() == [5_500_000, 30_000_000, 4_000_000, 6_000_000]
    ceded = t.excess_of_loss_ceded(x, 5_000_000, 20_000_000)
    assert ceded.tolist() == [500_000, 20_000_000, 0, 1_000_000]
    assert (x.sum(), ceded.sum(), t.net_of(x, ceded).sum()) == (45_500_000, 21_500_000,
                                                                24_000_000)


def test_expected_costs_by_hand():
    """Amounts 0, 1, 2, 3 million fen with probabilities 0.5, 0.2, 0.2, 0.1 (span
    1,000,000 fen).

    Stop loss, premium 2,000,000, 60 % to 110 %: A = 1,200,000, W = 1,000,000; the layer
    is 0, 0, 800,000, 1,000,000, so E = 0.2 x 800,000 + 0.1 x 1,000,000 = 260,000.
    Excess of loss, retention 500,000, limit 2,000,000: the layer is 0, 0.5, 1.5, 2.0
    million, E = 0.1 + 0.3 + 0.2 = 0.6 million a person, 6,000,000 for 10 persons;
    E[Y^2] = 0.2 x 0.25 + 0.2 x 2.25 + 0.1 x 4 = 0.9 (million^2), Var = 0.9 - 0.36 =
    0.54 million^2."""
    pmf = np.array([0.5, 0.2, 0.2, 0.1])
    assert t.expected_stop_loss(pmf, 1_000_000, 2_000_000, 6000, 5000) == pytest.approx(260_000)
    assert t.expected_excess_of_loss(pmf, 1_000_000, 500_000, 2_000_000,
                                     persons=10) == pytest.approx(6_000_000)
    assert t.layer_variance(pmf, 1_000_000, 500_000, 2_000_000) == pytest.approx(0.54e12)


def test_quantile_and_capital_by_hand():
    """The same four amounts (0, 1, 2, 3 million; cumulative 0.5, 0.7, 0.9, 1.0).
    VaR_0.6 = 1 million, VaR_0.75 = 2 million, VaR_0.95 = 3 million.
    Gross: E[X] = 0.2 + 0.4 + 0.3 = 0.9 million, capital at 95 % = 3 - 0.9 = 2.1 million.
    Net of the stop loss 1,000,000 xs 1,200,000: net amounts 0, 1.0, 1.2, 2.0 million,
    E[N] = 0.2 + 0.24 + 0.2 = 0.64 million, VaR_0.95(N) = 2.0 million, capital 1.36
    million."""
    pmf = np.array([0.5, 0.2, 0.2, 0.1])
    assert [t.pmf_quantile(pmf, 1_000_000, q) for q in (0.6, 0.75, 0.95)] == [
        1_000_000, 2_000_000, 3_000_000]
    assert t.net_capital(pmf, 1_000_000, 0.95) == pytest.approx(2_100_000)
    assert t.net_capital(pmf, 1_000_000, 0.95, 1_200_000, 1_000_000) == pytest.approx(
        1_360_000)


def _lognormal_lev(mu: float, s: float):
    """E[min(X, u)] of a lognormal: e^(mu + s^2/2) Phi((ln u - mu - s^2)/s)
    + u (1 - Phi((ln u - mu)/s))."""
    def lev(u):
        u = np.asarray(u, dtype=float)
        out = np.zeros_like(u)
        pos = u > 0
        lu = np.log(u[pos])
        out[pos] = (np.exp(mu + s * s / 2) * norm.cdf((lu - mu - s * s) / s)
                    + u[pos] * norm.sf((lu - mu) / s))
        return out
    return lev


def _compound_pmf(lam, mu, s, span, n):
    f = discretise(None, span, n, lev=_lognormal_lev(mu, s))
    return compound_fft(f, lam)


def _monte_carlo_sums(lam, mu, s, years, seed):
    rng = np.random.Generator(np.random.MT19937(seed))
    counts = rng.poisson(lam, years)
    amounts = rng.lognormal(mu, s, counts.sum())
    return np.bincount(np.repeat(np.arange(years), counts), weights=amounts,
                       minlength=years)


def _assert_within_noise(expected, draws):
    se = draws.std() / np.sqrt(len(draws))
    assert abs(expected - draws.mean()) < 4 * se + 1e-3 * expected, (expected, draws.mean(), se)


def test_expected_stop_loss_against_monte_carlo():
    """A product year of Poisson(50) claims of lognormal amounts (mean 2,000,000 fen,
    s = 1), premium 125,000,000 fen; stop loss from a loss ratio of 100 % to 130 %.
    The pricing's FFT compound pmf on a 10,000-fen grid against 200,000 simulated years."""
    lam, s, premium = 50.0, 1.0, 125_000_000
    mu = np.log(2_000_000) - s * s / 2
    pmf = _compound_pmf(lam, mu, s, 10_000, 2 ** 16)
    expected = t.expected_stop_loss(pmf, 10_000, premium, 10_000, 3000)
    a, w = t.stop_loss_bounds(premium, 10_000, 3000)
    years = _monte_carlo_sums(lam, mu, s, 200_000, seed=8)
    draws = np.minimum(np.maximum(years - a, 0), w)
    assert expected > 0.01 * w
    _assert_within_noise(expected, draws)


def test_expected_excess_of_loss_against_monte_carlo():
    """One person's year: Poisson(0.3) claims of lognormal amounts (mean 1,500,000 fen,
    s = 1.4); 60,000,000 in excess of 5,000,000 fen, for 1,000 persons."""
    lam, s = 0.3, 1.4
    mu = np.log(1_500_000) - s * s / 2
    pmf = _compound_pmf(lam, mu, s, 5_000, 2 ** 16)
    expected = t.expected_excess_of_loss(pmf, 5_000, 5_000_000, 60_000_000, persons=1000)
    years = _monte_carlo_sums(lam, mu, s, 400_000, seed=9)
    draws = 1000 * np.minimum(np.maximum(years - 5_000_000, 0), 60_000_000)
    _assert_within_noise(expected, draws)
