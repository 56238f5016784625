"""The model's level error in the price's interval (issue 18, session 19): Bühlmann's
posterior variance of the level the balance leaves, (1 - Z) tau^2, recomputed by hand
from the paid person-years, and the prediction interval of a toy two-group price built
from its draws against the interval computed by hand from the variances."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma, norm

from puhui.pricing.backtest import prediction_interval
from puhui.pricing.balance import BalanceRule, balance, level_sd, with_level_error


class Flat:
    """A model expecting 100 yuan a person-year in every cell."""

    level_ = 1.0

    def moments(self, combos, terms):
        return np.full(len(combos), 100.0), np.full(len(combos), 1e4)


def test_the_level_error_left_by_the_balance_by_hand():
    """sqrt((1 - Z) tau^2) / factor with Z from a plain loop over the paid years: the
    posterior sd of the level (normal prior sd tau, the A/E observed with variance
    (1 + cv^2) / n), also written Z (1 + cv^2) / n; none for the limited-fluctuation
    rule (no prior)."""
    paid = [0, 0, 30000, 0, 12000, 0, 0, 250000, 0, 9000] * 30     # fen
    frame = pd.DataFrame({"exposure": [1.0] * len(paid), "payout_h": paid})
    cells = (pd.DataFrame({"c": [0]}), np.zeros(len(paid), dtype="int64"))
    fig = balance(Flat(), None, frame, ["h"], cells, rule=BalanceRule("buhlmann", 0.15))
    yuan = [p / 100 for p in paid if p > 0]
    n, mean = len(yuan), sum(yuan) / len(yuan)
    cv = math.sqrt(sum((y - mean) ** 2 for y in yuan) / n) / mean
    var_ae = (1 + cv * cv) / n
    z = 0.0225 / (0.0225 + var_ae)
    factor = z * sum(yuan) / (100.0 * len(paid)) + 1 - z
    assert fig["level_sd"] == pytest.approx(math.sqrt(z * var_ae) / factor, rel=1e-5)
    assert fig["level_sd"] == pytest.approx(math.sqrt((1 - z) * 0.0225) / factor, rel=1e-5)
    lf = balance(Flat(), None, frame, ["h"], cells,
                 rule=BalanceRule("limited_fluctuation", 1082))
    assert lf["level_sd"] is None


def test_level_error_draws_have_the_variance_of_a_product():
    """Var[X Y] = Var X (1 + sd^2) + E[X]^2 sd^2 for X the parameter draws and Y the level
    error (mean 1, sd ``sd``), independent; and the parameter draws are left as drawn."""
    rng = np.random.default_rng(3)
    x = rng.gamma(400.0, 1.0 / 400.0, 400_000)          # mean 1, sd 0.05
    before = x.copy()
    y = with_level_error(x, 0.08, np.random.default_rng(4))
    assert np.array_equal(x, before)
    assert y.mean() == pytest.approx(1.0, abs=1e-3)
    assert y.std() == pytest.approx(math.sqrt(0.05 ** 2 * (1 + 0.08 ** 2) + 0.08 ** 2), rel=0.01)
    assert with_level_error(x, None, rng) is x


def test_prediction_interval_of_a_toy_price_with_level_error_by_hand():
    """Two groups priced 100 and 50 yuan with parameter sds of 3 and 2 yuan and level
    errors of 4 % and 10 %, over 10,000 policies with a process sd of 300 yuan a policy:
    the price's draws (group cost x parameter draw x level error, summed) give the
    parameter interval the backtest reads; its prediction interval is a gamma of mean
    150 and variance

        3^2 (1 + .04^2) + 100^2 .04^2 + 2^2 (1 + .1^2) + 50^2 .1^2 + 300^2 / 10,000

    by hand (the draws' quantiles are read as a normal's, so to 1 %)."""
    rng, lrng = np.random.default_rng(1), np.random.default_rng(2)
    sims = 400_000
    draws = (100.0 * with_level_error(1 + 0.03 * rng.standard_normal(sims), 0.04, lrng)
             + 50.0 * with_level_error(1 + 0.04 * rng.standard_normal(sims), 0.10, lrng))
    param = {"level": 0.9, "lower": float(np.quantile(draws, 0.05)),
             "upper": float(np.quantile(draws, 0.95))}
    iv = prediction_interval(150.0, param, 300.0, 10_000)
    var = (9 * (1 + 0.04 ** 2) + 100 ** 2 * 0.04 ** 2 + 4 * (1 + 0.1 ** 2) + 50 ** 2 * 0.1 ** 2
           + 300 ** 2 / 10_000)
    shape, scale = 150.0 ** 2 / var, var / 150.0
    assert iv["lower"] == pytest.approx(gamma.ppf(0.05, shape, scale=scale), rel=0.01)
    assert iv["upper"] == pytest.approx(gamma.ppf(0.95, shape, scale=scale), rel=0.01)
    # without the level error the same price's interval is much narrower
    narrow = 9 + 4 + 300 ** 2 / 10_000
    assert iv["upper"] - iv["lower"] > 2 * norm.ppf(0.95) * math.sqrt(narrow) * 1.5
