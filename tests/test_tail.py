"""The spliced severity shape: empirical body plus a generalised Pareto tail.

Reference values: the GPD limited mean against numerical integration of its survival
function (scipy.integrate.quad, an independent computation); the fitted shape against
the xi of simulated GPD exceedances; the empirical body against numpy means.
"""

import numpy as np
import pytest
from scipy import integrate, stats

from puhui.pricing.tail import SplicedSeverity, gpd_limited_mean, gpd_survival


@pytest.mark.parametrize("xi", [0.0, 0.3, -0.2])
def test_gpd_limited_mean_is_the_integral_of_the_survival(xi):
    for t in (0.5, 3.0, 40.0):
        want, _ = integrate.quad(lambda y: gpd_survival(y, xi, 2.0), 0, t)
        assert float(gpd_limited_mean(t, xi, 2.0)) == pytest.approx(want, rel=1e-7)


def test_empirical_when_too_few_exceedances():
    z = np.array([0.5, 1.0, 1.5])
    s = SplicedSeverity(min_exceedances=50).fit(z)
    assert s.tail_ == "empirical" and s.mean_ == pytest.approx(1.0)
    assert float(s.limited_mean(1.0)) == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert float(s.survival(0.7)) == pytest.approx(2 / 3)


def test_gpd_tail_recovers_a_known_shape_and_keeps_the_body():
    rng = np.random.default_rng(3)
    body = rng.uniform(0.1, 1.0, 95_000)
    tail = 1.0 + stats.genpareto.rvs(0.4, scale=0.8, size=5_000, random_state=rng)
    z = np.concatenate([body, tail])
    s = SplicedSeverity(threshold_quantile=0.95).fit(z)
    assert s.tail_ == "gpd"
    assert s.xi_ == pytest.approx(0.4, abs=0.05)
    # below the threshold the limited mean is the empirical one
    x = 0.6
    assert float(s.limited_mean(x)) == pytest.approx(np.minimum(z, x).mean(), rel=1e-9)
    # the mean: body mean share + tail (u + sigma / (1 - xi)) share, near the sample's
    assert s.mean_ == pytest.approx(z.mean(), rel=0.03)
    # limited mean is increasing and tends to the mean
    xs = np.array([0.2, 1.0, 5.0, 50.0, 1e9])
    lm = s.limited_mean(xs)
    assert np.all(np.diff(lm) > 0) and lm[-1] == pytest.approx(s.mean_, rel=1e-6)


def test_pickled_shape_carries_the_body_once_and_prices_the_same():
    """The running sums are left out of the pickle and rebuilt on load: the limited
    means and survival after a round trip are equal bit for bit."""
    import pickle

    rng = np.random.default_rng(5)
    s = SplicedSeverity().fit(rng.lognormal(0.0, 1.2, 20_000))
    raw = pickle.dumps(s)
    assert len(raw) < 1.2 * s._body.nbytes          # one copy of the body, not two
    back = pickle.loads(raw)
    xs = np.array([0.1, 0.9, 3.0, 40.0, np.inf])
    assert np.array_equal(back.limited_mean(xs), s.limited_mean(xs))
    assert np.array_equal(back.survival(xs[:-1]), s.survival(xs[:-1]))
    assert back.summary() == s.summary()
