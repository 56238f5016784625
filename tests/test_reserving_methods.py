"""IBNR methods (puhui.reserving.methods) against published figures and hand work.

Sources of the reference values:

- RAA: the Reinsurance Association of America's general liability triangle (Historical
  Loss Development Study, 1991), analysed by Mack, "Measuring the variability of chain
  ladder reserve estimates" (CAS Forum, 1994). The figures are R ChainLadder's
  ``MackChainLadder(RAA)`` output (Gesmann et al., the package's README and vignette):
  IBNR 52,135.23 and Mack s.e. 26,880.74 in total, and per origin the table below.
- GenIns: Taylor and Ashe (1983), analysed by Mack, "Distribution-free calculation of
  the standard error of chain ladder reserve estimates" (ASTIN Bulletin 23(2), 1993):
  reserve 18,680,856 with standard error 2,447,095 (13 %), sigma_9 by Mack's
  approximation (R: ``MackChainLadder(GenIns, est.sigma = "Mack")``).

The triangles are written out here and go through ``build_triangle`` as payments (one
row per incremental amount, negatives included), not read from chainladder's samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from puhui.errors import InputError
from puhui.reserving.methods import (BornhuetterFerguson, CapeCod, MackChainLadder,
                                     OdpBootstrap)
from puhui.reserving.triangles import build_triangle

pytest.importorskip("chainladder")

RAA = [[5012, 8269, 10907, 11805, 13539, 16181, 18009, 18608, 18662, 18834],
       [106, 4285, 5396, 10666, 13782, 15599, 15496, 16169, 16704],
       [3410, 8992, 13873, 16141, 18735, 22214, 22863, 23466],
       [5655, 11555, 15766, 21266, 23425, 26083, 27067],
       [1092, 9565, 15836, 22169, 25955, 26180],
       [1513, 6445, 11702, 12935, 15852],
       [557, 4020, 10946, 12314],
       [1351, 6947, 13112],
       [3133, 5395],
       [2063]]

GENINS = [[357848, 1124788, 1735330, 2218270, 2745596, 3319994, 3466336, 3606286, 3833515,
           3901463],
          [352118, 1236139, 2170033, 3353322, 3799067, 4120063, 4647867, 4914039, 5339085],
          [290507, 1292306, 2218525, 3235179, 3985995, 4132918, 4628910, 4909315],
          [310608, 1418858, 2195047, 3757447, 4029929, 4381982, 4588268],
          [443160, 1136350, 2128333, 2897821, 3402672, 3873311],
          [396132, 1333217, 2180715, 2985752, 3691712],
          [440832, 1288463, 2419861, 3483130],
          [359480, 1421128, 2864498],
          [376686, 1363294],
          [344014]]


def _triangle(cumulative, first_year: int = 1981):
    """The cumulative rows as yearly payments (the increments), then ``build_triangle``."""
    rows = []
    for i, row in enumerate(cumulative):
        for j, inc in enumerate(np.diff(row, prepend=0)):
            rows.append((f"{first_year + i}-07-01", f"{first_year + i + j}-09-30", inc))
    frame = pd.DataFrame(rows, columns=["settlement_date", "business_date", "amount_fen"])
    frame["amount_fen"] = frame.amount_fen.astype(np.int64)
    return build_triangle(frame, origin="settlement_date", development="business_date",
                          as_of=f"{first_year + len(cumulative) - 1}-12-31", grain="Y")


def test_raa_mack_matches_the_published_figures():
    """R ChainLadder, MackChainLadder(RAA): Ultimate, IBNR and Mack.S.E by origin
    (rounded to units as printed) and the totals."""
    m = MackChainLadder().fit(_triangle(RAA))
    assert m.ultimate_fen_.tolist() == [18834, 16858, 24083, 28703, 28927, 19501, 17749,
                                        24019, 16045, 18402]
    assert m.ibnr_fen_.tolist() == [0, 154, 617, 1636, 2747, 3649, 5435, 10907, 10650,
                                    16339]
    assert m.std_err_fen_.tolist() == [0, 143, 592, 713, 1452, 1995, 2204, 5354, 6332,
                                       24566]
    # totals 52,135.23 and 26,880.74: the sum of origins rounded one by one is within
    # half a unit each of the first
    assert abs(m.ibnr_total_fen_ - 52135.23) <= 10 * 0.5
    assert m.total_std_err_fen_ == 26881
    assert m.ldf_[0] == pytest.approx(2.999359, abs=1e-6)   # R: MackChainLadder(RAA)$f[1]


def test_raa_mack_with_macks_sigma_approximation():
    """R, MackChainLadder(RAA, est.sigma = "Mack"): the first origins' s.e. change
    (206 and 623 instead of 143 and 592), the total to 26,909."""
    m = MackChainLadder(sigma_interpolation="mack").fit(_triangle(RAA))
    assert m.std_err_fen_[1:4].tolist() == [206, 623, 747]
    assert m.total_std_err_fen_ == 26909


def test_genins_matches_mack_1993():
    m = MackChainLadder(sigma_interpolation="mack").fit(_triangle(GENINS, 1991))
    assert m.ibnr_total_fen_ == pytest.approx(18_680_856, abs=5)
    assert m.total_std_err_fen_ == pytest.approx(2_447_095, abs=1)


def test_raa_diagnostics():
    """Mack (1994) on RAA: no calendar-year effect (Z = 14 against E[Z] = 12.875) and no
    correlation between successive factors (T = 0.070 within +-0.127 at 50 %)."""
    d = MackChainLadder().fit(_triangle(RAA)).diagnostics_
    f = d["factors"]
    assert f.factor.iloc[0] == pytest.approx(2.999359, abs=1e-6)
    assert f.cv.iloc[0] == pytest.approx(f.std_err.iloc[0] / f.factor.iloc[0])
    assert f.n_ratios.tolist() == list(range(9, 0, -1))
    assert d["calendar_effect"]["z"] == 14 and d["calendar_effect"]["expected"] == 12.875
    assert not d["calendar_effect"]["rejects"]
    assert d["factor_correlation"]["t"] == pytest.approx(0.0696, abs=5e-4)
    assert d["factor_correlation"]["range"][1] == pytest.approx(0.1275, abs=5e-4)
    assert not d["factor_correlation"]["rejects"]
    assert d["std_residuals"].shape == (9, 9)


SMALL = [[10000, 15000, 16500],
         [12000, 17000],
         [13000]]


def test_bornhuetter_ferguson_by_hand():
    """Volume-weighted factors: f1 = (15000 + 17000) / (10000 + 12000) = 16 / 11,
    f2 = 16500 / 15000 = 1.1; to ultimate CDF = 1, 1.1, 16/11 x 1.1 = 1.6.
    Premium 24,000 each, prior loss ratio 0.70: prior ultimate 16,800.
    IBNR = 16,800 x (1 - 1 / CDF): 0; 16,800 / 11 = 1,527.27 -> 1,527;
    16,800 x 0.375 = 6,300."""
    bf = BornhuetterFerguson(prior_loss_ratio=0.70).fit(_triangle(SMALL, 2022),
                                                        np.full(3, 24000))
    assert bf.ibnr_fen_.tolist() == [0, 1527, 6300]
    assert bf.ultimate_fen_.tolist() == [16500, 18527, 19300]


def test_cape_cod_by_hand():
    """Same triangle. Used-up premium sum P / CDF = 24,000 (1 + 10/11 + 0.625)
    = 24,000 x 27.875 / 11; latest sum 46,500. ELR = 46,500 x 11 / (24,000 x 27.875)
    = 511,500 / 669,000 = 0.764574. IBNR = ELR x 24,000 x (1 - 1 / CDF):
    0; 0.764574 x 24,000 / 11 = 1,668.16 -> 1,668; 0.764574 x 9,000 = 6,881.17 -> 6,881."""
    cc = CapeCod(prior_loss_ratio=0.70).fit(_triangle(SMALL, 2022), np.full(3, 24000))
    assert cc.loss_ratio_.tolist() == pytest.approx([511_500 / 669_000] * 3, rel=1e-12)
    assert cc.ibnr_fen_.tolist() == [0, 1668, 6881]
    assert cc.loss_ratio_gap_.tolist() == pytest.approx([511_500 / 669_000 - 0.70] * 3,
                                                        rel=1e-12)


def test_premium_is_required_and_checked():
    tri = _triangle(SMALL, 2022)
    with pytest.raises(InputError, match="earned premium"):
        BornhuetterFerguson(0.7).fit(tri)
    with pytest.raises(InputError, match="one amount >= 0"):
        CapeCod().fit(tri, np.array([1, 2]))
    with pytest.raises(InputError, match="with claims paid earn no premium"):
        CapeCod().fit(tri, np.array([24000, 0, 24000]))
    with pytest.raises(InputError, match="not all 0"):
        BornhuetterFerguson(0.7).fit(tri, np.zeros(3, dtype=np.int64))


def test_an_origin_with_no_premium_and_nothing_paid_has_no_ibnr():
    """A product year reserved a year after it ended: the 3 x 3 triangle above one year
    on (nothing more paid) with a fourth origin, 2025, empty and earning nothing.

        2022: 10,000 15,000 16,500 16,500      f1 = 45,000 / 35,000 = 9/7
        2023: 12,000 17,000 17,000             f2 = 33,500 / 32,000 = 1.046875
        2024: 13,000 13,000                    f3 = 1
        2025: 0

    CDF to ultimate 1, 1, 1.046875, 1.3460; premium 24,000, 24,000, 24,000, 0.
    BF at 70 %: 2024 16,800 x (1 - 1/1.046875) = 752.24 -> 752; 2025 0 x ... = 0.
    Cape Cod: ELR = 46,500 / (48,000 + 24,000 / 1.046875) = 0.655619; 2024 0.655619 x
    24,000 x 0.044776 = 704.55 -> 705; 2025 0."""
    tri = _triangle([[10000, 15000, 16500, 16500], [12000, 17000, 17000], [13000, 13000],
                     [0]], 2022)
    bf = BornhuetterFerguson(0.70).fit(tri, np.array([24000, 24000, 24000, 0]))
    assert bf.ibnr_fen_.tolist() == [0, 0, 752, 0]
    cc = CapeCod().fit(tri, np.array([24000, 24000, 24000, 0]))
    assert cc.ibnr_fen_.tolist() == [0, 0, 705, 0]
    assert cc.loss_ratio_[0] == pytest.approx(46500 / (48000 + 24000 / 1.046875), rel=1e-12)


def test_too_short_a_triangle_is_refused():
    with pytest.raises(InputError, match="at least 3"):
        MackChainLadder().fit(_triangle([[5, 8], [3]], 2022))


def test_bootstrap_is_reproducible_bit_for_bit():
    tri = _triangle(RAA)
    a = OdpBootstrap(n_sims=300, seed=11).fit(tri)
    b = OdpBootstrap(n_sims=300, seed=11).fit(tri)
    c = OdpBootstrap(n_sims=300, seed=12).fit(tri)
    assert a.ibnr_sims_fen_.shape == (300, 10)
    assert np.array_equal(a.ibnr_sims_fen_, b.ibnr_sims_fen_)
    assert not np.array_equal(a.ibnr_sims_fen_, c.ibnr_sims_fen_)
    assert a.ibnr_fen_.tolist() == MackChainLadder().fit(tri).ibnr_fen_.tolist()


def _odp_prediction_error(cumulative) -> tuple[float, float]:
    """The over-dispersed Poisson model's reserve and its analytic prediction error
    (Renshaw and Verrall 1998; England and Verrall 1999, eq. 3.4), by a quasi-Poisson
    GLM of the incremental amounts on origin and development factors (statsmodels,
    dispersion by Pearson's chi-square):

        MSEP(R) = phi sum_future mu + mu' X Cov(beta) X' mu
    """
    import statsmodels.api as sm

    n = len(cumulative)
    rows = [(i, j, inc) for i, row in enumerate(cumulative)
            for j, inc in enumerate(np.diff(row, prepend=0))]
    future = [(i, j) for i in range(n) for j in range(n - i, n)]

    def design(cells):
        x = np.zeros((len(cells), 2 * n - 1))
        x[:, 0] = 1
        for r, (i, j) in enumerate(cells):
            if i:
                x[r, i] = 1
            if j:
                x[r, n - 1 + j] = 1
        return x

    fit = sm.GLM(np.array([r[2] for r in rows], float), design([r[:2] for r in rows]),
                 family=sm.families.Poisson()).fit(scale="X2")
    xf = design(future)
    mu = np.exp(xf @ fit.params)
    g = xf.T @ mu
    return mu.sum(), np.sqrt(fit.scale * mu.sum() + g @ fit.cov_params() @ g)


def test_bootstrap_spread_matches_the_analytic_odp_error():
    """GenIns: the bootstrap's mean is the chain ladder reserve (the ODP GLM's fitted
    reserve is the chain ladder's) and its standard deviation the analytic prediction
    error of the same model (about 2.95 million, 16 %; England and Verrall 1999), within
    the noise of 2,000 simulations and the bootstrap's approximation."""
    reserve, error = _odp_prediction_error(GENINS)
    assert reserve == pytest.approx(18_680_856, rel=1e-6)
    boot = OdpBootstrap(n_sims=2000, seed=5).fit(_triangle(GENINS, 1991))
    totals = boot.ibnr_sims_fen_.sum(axis=1)
    assert totals.mean() == pytest.approx(reserve, rel=0.02)
    assert totals.std() == pytest.approx(error, rel=0.08)
    q = boot.quantile([0.5, 0.995])
    assert q[0] < q[1] and q.dtype == np.int64


def test_a_tail_factor_from_the_fitted_curve():
    """The exponential tail (R ChainLadder's ``tail = TRUE``): log(f_j - 1) = a + b j
    fitted by least squares to RAA's nine factors (numpy's polyfit here), the tail
    factor prod_{j=10..109} (1 + e^(a + b j)); every origin's ultimate grows by it."""
    plain = MackChainLadder().fit(_triangle(RAA))
    tailed = MackChainLadder(tail="exponential").fit(_triangle(RAA))
    b, a = np.polyfit(np.arange(1, 10), np.log(plain.ldf_[:9] - 1), 1)
    expected = np.prod(1 + np.exp(a + b * np.arange(10, 110)))
    assert plain.tail_factor_ == 1.0
    assert tailed.tail_factor_ == pytest.approx(expected, rel=1e-9)
    assert np.abs(tailed.ultimate_fen_ - plain.ultimate_fen_ * expected).max() <= 1
    assert tailed.total_std_err_fen_ > plain.total_std_err_fen_
    bf = BornhuetterFerguson(0.7, tail="inverse_power").fit(_triangle(RAA),
                                                              np.full(10, 40_000))
    assert bf.tail_factor_ > 1 and bf.ibnr_fen_[0] > 0    # the oldest origin develops too
    with pytest.raises(InputError, match="tail 'linear'"):
        MackChainLadder(tail="linear").fit(_triangle(RAA))


def test_a_constant_tail_factor_given_from_outside():
    """A tail factor F given from outside the triangle (chainladder's ``TailConstant``):
    the appended factors multiply to F, so every origin's chain-ladder ultimate is the
    no-tail ultimate x F (by hand, to the fen's rounding); BF's IBNR of the oldest
    origin (CDF 1 without a tail) is prior x P x (1 - 1 / F); the tail carries a sigma
    of its own (chainladder extrapolates it), so Mack's s.e. grows; bad factors are
    refused."""
    plain = MackChainLadder().fit(_triangle(RAA))
    tailed = MackChainLadder(tail=1.05).fit(_triangle(RAA))
    assert tailed.tail_factor_ == pytest.approx(1.05, rel=1e-12)
    assert np.abs(tailed.ultimate_fen_ - plain.ultimate_fen_ * 1.05).max() <= 1.1
    assert tailed.total_std_err_fen_ > plain.total_std_err_fen_
    assert tailed.std_err_fen_[0] > 0 == plain.std_err_fen_[0]
    premium = np.full(10, 4_000_000)
    bf = BornhuetterFerguson(0.7, tail=1.05).fit(_triangle(RAA), premium)
    assert abs(bf.ibnr_fen_[0] - 0.7 * 4_000_000 * (1 - 1 / 1.05)) <= 0.5
    one = MackChainLadder(tail=1).fit(_triangle(RAA))
    assert (one.ultimate_fen_ == plain.ultimate_fen_).all()
    assert not tailed.tail_sigma_failed_
    # links where nothing developed (sigma 0): chainladder's extrapolated tail sigma is
    # infinite, and the s.e. is not given rather than shown as inf
    flat = [[100, 150, 170, 175, 175, 175], [110, 160, 180, 186, 186], [90, 140, 160, 165],
            [120, 170, 190], [100, 150], [105]]
    bare = MackChainLadder(tail=1.01).fit(_triangle(flat))
    assert bare.tail_sigma_failed_ and np.isnan(bare.total_std_err_fen_)
    assert np.isnan(bare.std_err_fen_).all()
    assert np.abs(bare.ultimate_fen_ - MackChainLadder().fit(_triangle(flat)).ultimate_fen_
                  * 1.01).max() <= 1.1
    for bad in (0.9, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="tail factor"):
            MackChainLadder(tail=bad).fit(_triangle(RAA))


def test_an_origin_with_nothing_paid():
    """A month with no payments (a row of zeros) develops to nothing by the chain ladder;
    when it is the only origin behind the last factor, Mack's s.e. cannot be estimated
    for the younger origins and is NaN, not 0. BF still gives its prior's share."""
    rows = [[0, 0, 0, 0, 0], [100, 150, 160, 165], [120, 170, 180], [130, 180], [140]]
    tri = _triangle(rows, 2020)
    m = MackChainLadder().fit(tri)
    assert m.ibnr_fen_[0] == 0 and (m.ibnr_fen_[2:] > 0).all()
    assert np.isnan(m.std_err_fen_[2:]).all() and np.isnan(m.total_std_err_fen_)
    bf = BornhuetterFerguson(0.7).fit(tri, np.full(5, 300))
    assert (bf.ibnr_fen_[2:] > 0).all()
