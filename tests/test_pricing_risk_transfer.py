"""Risk transfer in the price (puhui.pricing.risk_transfer, puhui.pricing.person_payout,
puhui.reserving.treaty_basis; ``puhui price --treaties``).

Truth is built differently: a toy portfolio of five simulated years and a four-point
person distribution worked in plain loops; Poisson cases of a fixed payout summed by a
double loop; the gamma coupling against scipy.stats' own quantile function; the CLI on
the sample city checked against the identities a treaty set must keep (premiums, ceded
shares, the gross position equal to the pricing's own figures) and reproduced from its
manifest; bad treaty files exit 2 with a message naming file, treaty and key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma as gamma_dist, poisson

from conftest import puhui
from puhui.errors import RuleFileError
from puhui.pricing import person_payout as pp
from puhui.pricing import risk_transfer as rt
from puhui.reserving.treaty_basis import Treaty, TreatySet, load_treaties

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "actuarial" / "treaties" / "example-huhuibao-2025.toml"


def _sim(totals_fen, premium_fen, policies=10, expected=None):
    t = np.array(totals_fen, dtype=np.int64)
    mean = float(t.mean()) / 100 / policies if expected is None else expected
    return rt.SimYear(t, np.full(len(t), mean), 1.0, mean, premium_fen, policies)


# -- the toy portfolio: five simulated years, a quota share then a stop loss ----------

TOTALS = [60_000, 90_000, 100_000, 130_000, 200_000]        # fen, five simulated years
PREMIUM = 100_000                                            # fen, 10 policies x 100 fen


def test_quota_share_then_stop_loss_by_hand():
    """Quota share 30 % (commission 20 %), then a stop loss 80 % xs 90 % of the retained
    premium (loading 50 %), on five simulated years; every figure from a plain loop.

        year          1        2        3        4        5
        gross    60,000   90,000  100,000  130,000  200,000
        QS 30 %  18,000   27,000   30,000   39,000   60,000
        left     42,000   63,000   70,000   91,000  140,000
        subject premium 70,000: A = 63,000, W = 56,000
        SL        0        0        7,000   28,000   56,000
        net      42,000   63,000   63,000   63,000   84,000
    """
    qs = Treaty("qs", "quota_share", share_bp=3000, commission_bp=2000)
    sl = Treaty("sl", "stop_loss", attachment_bp=9000, width_bp=8000, loading_bp=5000)
    ts = TreatySet("toy", Path("toy.toml"), (qs, sl), 0.8)
    fig = rt.risk_transfer(ts, _sim(TOTALS, PREMIUM), {}, None, level=0.5)

    left, sl_ceded, net = [], [], []
    for x in TOTALS:
        q = math.floor(x * 0.3 + 0.5)
        left.append(x - q)
        c = min(max(left[-1] - 63_000, 0), 56_000)
        sl_ceded.append(c)
        net.append(left[-1] - c)
    assert net == [42_000, 63_000, 63_000, 63_000, 84_000]
    q_row, s_row = fig["treaties"]
    assert q_row["ceded_premium_total"] == 300.00            # 30 % of 1,000 yuan
    assert q_row["ceding_commission_total"] == 60.00         # 20 % of it
    assert q_row["reinsurance_premium_total"] == 240.00
    assert q_row["expected_ceded_total"] == pytest.approx(0.3 * sum(TOTALS) / 5 / 100)
    e_sl = sum(sl_ceded) / 5                                  # 18,200 fen
    assert s_row["expected_ceded_total"] == pytest.approx(e_sl / 100)
    assert s_row["reinsurance_premium_total"] == pytest.approx(1.5 * e_sl / 100)
    assert s_row["probability_of_a_recovery"] == 3 / 5
    se = math.sqrt(sum((c - e_sl) ** 2 for c in sl_ceded) / 4 / 5)
    assert s_row["monte_carlo_se_total"] == pytest.approx(se / 100, abs=0.006)
    n = fig["net"]
    net_premium = 100_000 - 24_000 - 1.5 * e_sl
    assert n["premium_total"] == pytest.approx(net_premium / 100, abs=0.006)
    mean_net = sum(net) / 5
    assert n["expected_claims_total"] == pytest.approx(mean_net / 100, abs=0.006)
    assert n["expected_loss_ratio"] == pytest.approx(mean_net / net_premium, abs=5e-5)
    # 50 % interval: linear quantiles at 0.25 and 0.75 of five sorted values are the
    # 2nd and the 4th exactly
    s = sorted(net)
    assert n["loss_ratio_interval"]["lower"] == pytest.approx(s[1] / net_premium, abs=5e-5)
    assert n["loss_ratio_interval"]["upper"] == pytest.approx(s[3] / net_premium, abs=5e-5)
    # VaR 80 %: the least value whose share at or below it is >= 0.8: the 4th of five
    assert n["claims_at_quantile_total"] == s[3] / 100
    assert n["capital_total"] == pytest.approx((s[3] - mean_net) / 100, abs=0.006)
    g = fig["gross"]
    assert g["capital_total"] == pytest.approx((sorted(TOTALS)[3] - sum(TOTALS) / 5) / 100)
    # each alone on the gross: the quota share as in order (it is first); the stop loss
    # on the gross premium 100,000: A = 90,000, W = 80,000
    assert q_row["alone"]["net_after"] == q_row["net_after"]
    alone = [min(max(x - 90_000, 0), 80_000) for x in TOTALS]       # 0 0 10k 40k 80k
    assert s_row["alone"]["expected_ceded_total"] == pytest.approx(sum(alone) / 5 / 100)
    kept = [x - c for x, c in zip(TOTALS, alone)]
    a = s_row["alone"]["net_after"]
    assert a["premium_total"] == pytest.approx((100_000 - 1.5 * sum(alone) / 5) / 100, abs=0.006)
    assert a["expected_claims_total"] == pytest.approx(sum(kept) / 5 / 100, abs=0.006)
    assert a["claims_at_quantile_total"] == sorted(kept)[3] / 100


def test_a_stop_loss_priced_by_rate_and_the_subject_premium():
    """A rate is a share of the subject premium, whatever the claims: 2 % of 1,000 yuan."""
    sl = Treaty("sl", "stop_loss", attachment_bp=10_000, width_bp=5000, rate_bp=200)
    fig = rt.risk_transfer(TreatySet("t", Path("t.toml"), (sl,), 0.9),
                           _sim(TOTALS, PREMIUM), {}, None, level=0.9)
    row = fig["treaties"][0]
    assert row["reinsurance_premium_total"] == 20.00
    # claims above 100,000 fen cede up to 50,000: 30,000 and 50,000
    assert row["expected_ceded_total"] == pytest.approx((30_000 + 50_000) / 5 / 100)


def test_a_set_that_cedes_the_whole_premium_has_no_loss_ratio():
    """A 100 % quota share without commission keeps no premium: the net position has
    no loss ratio (None, with a note; not NaN in pricing.json) and no claims."""
    from puhui.cli import _risk_transfer_line

    qs = Treaty("qs", "quota_share", share_bp=10_000)
    fig = rt.risk_transfer(TreatySet("t", Path("t.toml"), (qs,), 0.8),
                           _sim(TOTALS, PREMIUM), {}, None, level=0.5)
    n = fig["net"]
    assert n["premium_total"] == 0 and n["expected_claims_total"] == 0
    assert n["expected_loss_ratio"] is None and n["loss_ratio_interval"]["lower"] is None
    assert "no premium is kept" in n["note"]
    json.dumps(fig, allow_nan=False)
    assert "no net loss ratio" in _risk_transfer_line(fig)


# -- one person's payout ---------------------------------------------------------------

def test_a_person_layer_by_hand():
    """A person's payout 0, 100,000, 200,000 or 300,000 yuan with probabilities 0.5, 0.2,
    0.2, 0.1; a quota share of 50 % then an excess of loss 100,000 xs 60,000 on what it
    leaves (0, 50,000, 100,000, 150,000): ceded 0, 0, 40,000, 90,000."""
    p = np.array([0.5, 0.2, 0.2, 0.1])
    chain = [Treaty("q", "quota_share", share_bp=5000),
             Treaty("x", "excess_of_loss", retention_fen=6_000_000, limit_fen=10_000_000,
                    loading_bp=0)]
    got = rt.cell_layers(p, 100_000.0, chain)["x"]
    v = [0, 50_000, 100_000, 150_000]
    c = [min(max(x - 60_000, 0), 100_000) for x in v]
    ec = sum(pi * ci for pi, ci in zip(p, c))
    mv = sum(pi * x for pi, x in zip(p, v))
    var_b = sum(pi * (x - mv) ** 2 for pi, x in zip(p, v))
    nv = [x - ci for x, ci in zip(v, c)]
    mn = sum(pi * x for pi, x in zip(p, nv))
    var_a = sum(pi * (x - mn) ** 2 for pi, x in zip(p, nv))
    assert ec == pytest.approx(17_000.0)
    assert got.tolist() == pytest.approx([ec, var_b, var_a, mv])


def test_person_layers_weight_the_cells_by_policies():
    """Two cells, 3 and 1 expected policies: the figures are the 3:1 mix of each cell's."""
    class TwoCells:
        def cell_pmf(self, i):
            return (np.array([0.9, 0.1]) if i == 0 else np.array([0.5, 0.5])), 400_000.0

    x = Treaty("x", "excess_of_loss", retention_fen=10_000_000, limit_fen=50_000_000,
               loading_bp=0)
    got = rt.person_layers(TwoCells(), np.array([3.0, 1.0]), (x,))["x"]
    # each cell: ceded 300,000 with the probability of 400,000
    assert got["ceded"] == pytest.approx(0.75 * 0.1 * 300_000 + 0.25 * 0.5 * 300_000)
    assert got["mean_before"] == pytest.approx(0.75 * 40_000 + 0.25 * 200_000)


def test_on_grid_keeps_the_mean_and_the_mass():
    vals, probs = np.array([0.0, 150.0, 1_000.0, 30.0]), np.array([0.4, 0.3, 0.2, 0.1])
    g = pp.on_grid(vals, probs, 100.0, 16)
    assert g.sum() == pytest.approx(1.0)
    assert (np.arange(16) * 100.0) @ g == pytest.approx(vals @ probs)
    # 150 splits half and half between 100 and 200; 30 is 0.7 at 0 and 0.3 at 100
    assert g[0] == pytest.approx(0.4 + 0.1 * 0.7)
    assert g[1] == pytest.approx(0.3 * 0.5 + 0.1 * 0.3) and g[2] == pytest.approx(0.3 * 0.5)
    assert g[10] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        pp.on_grid(np.array([1_600.0]), np.array([1.0]), 100.0, 16)


def _external_city():
    """Two benefits priced on external assumptions alone (Z = 0): cells of two age
    bands, no data model."""
    from puhui.pricing.benefit_cost import BenefitCostModel, GroupTerms
    from puhui.pricing.external import ExternalAssumption

    cells = pd.DataFrame({"age_band": ["41-50", "61-70"], "preexisting": [0, 1]})
    bands = {b: 0.0 for b in ("0-17", "18-30", "31-40", "41-50", "51-60", "61-70",
                              "71-80", "81+")}
    a = ExternalAssumption("cart", {**bands, "41-50": 2_000.0, "61-70": 6_000.0}, 0.5,
                           1_200_000.0)
    b = ExternalAssumption("proton", {**bands, "41-50": 10_000.0, "61-70": 3_000.0}, 1.0,
                           278_000.0)
    groups = [GroupTerms("cart", ("cart",), 0.0, 0.7, 0.3, 500_000.0),
              GroupTerms("proton", ("proton",), 0.0, 0.7, 0.5, 300_000.0)]
    models = {g.id: BenefitCostModel() for g in groups}
    for m in models.values():
        m.kinds_ = []
    return cells, groups, models, {"cart": (0.0, a), "proton": (0.0, b)}


def test_two_external_benefits_convolved_against_a_double_loop():
    """Per cell: CAR-T cases Poisson(rate 1) paying min(1,200,000 x r, 500,000), proton
    cases Poisson(rate 2) paying 278,000 x r, each year's sum capped at its limit; the
    expected excess of loss 400,000 xs 300,000 by a double loop over the counts."""
    cells, groups, models, ext = _external_city()
    payout = pp.PersonPayout(cells, groups, models, ext, 1.0)
    xl = Treaty("x", "excess_of_loss", retention_fen=30_000_000, limit_fen=40_000_000,
                loading_bp=0)
    for i, (lam_c, lam_p, r_c, r_p) in enumerate(((0.01, 0.1, 0.7, 0.7),
                                                   (0.03, 0.03, 0.3, 0.5))):
        pc, pr = min(1_200_000 * r_c, 500_000), 278_000 * r_p
        want = mean = 0.0
        for j in range(12):
            for k in range(12):
                prob = poisson.pmf(j, lam_c) * poisson.pmf(k, lam_p)
                x = min(j * pc, 500_000) + min(k * pr, 300_000)
                want += prob * min(max(x - 300_000, 0), 400_000)
                mean += prob * x
        p, span = payout.cell_pmf(i)
        got = rt.cell_layers(p, span, [xl])["x"]
        assert got[0] == pytest.approx(want, rel=2e-3)       # grid of about 95 yuan
        assert got[3] == pytest.approx(mean, rel=1e-6)


def test_an_unlimited_benefit_has_no_person_distribution():
    import dataclasses

    from puhui.errors import InputError

    cells, groups, models, ext = _external_city()
    groups[1] = dataclasses.replace(groups[1], limit=float("inf"))
    with pytest.raises(InputError, match="needs every benefit's annual limit"):
        pp.PersonPayout(cells, groups, models, ext, 1.0)


def test_a_fitted_group_payout_has_the_pricing_s_mean():
    """model_payout's values over the compound pmf give the mean the pricing's
    annual_benefit_moments_of gives (one lognormal kind, deductible, ratio, limit)."""
    from scipy.stats import lognorm

    from puhui.pricing.aggregate import annual_benefit_moments_of
    from puhui.pricing.benefit_cost import GroupTerms

    z = lognorm(1.2)
    from puhui.pricing.tail import SplicedSeverity
    shape = SplicedSeverity(0.95, 50).fit(z.rvs(size=4000, random_state=1))
    comps = ((shape.limited_mean, 9_000.0, 0.4, None),)
    terms = GroupTerms("h", ("h",), 10_000.0, 0.7, 0.5, 200_000.0)

    class Model:
        grid = 2 ** 12
        level_ = 1.1

    vals, g = pp.model_payout(Model(), terms, comps, False)
    m1, _ = annual_benefit_moments_of(comps, 10_000.0, 0.7, 200_000.0, n=2 ** 12)
    assert vals @ g == pytest.approx(1.1 * m1, rel=1e-12)
    assert vals.max() <= 1.1 * 200_000.0


def test_the_gamma_coupling_lands_on_the_same_quantile():
    """Each total moved to the same quantile of the target gamma (scipy.stats' cdf and
    ppf, written independently of scipy.special's incomplete gamma)."""
    x = np.array([500.0, 1_000.0, 1_800.0])
    m1, v1, m2, v2 = np.full(3, 1_000.0), 250_000.0, np.full(3, 800.0), 90_000.0
    got = rt.gamma_coupled(x, m1, v1, m2, v2)
    u = gamma_dist.cdf(x, m1[0] ** 2 / v1, scale=v1 / m1[0])
    want = gamma_dist.ppf(u, m2[0] ** 2 / v2, scale=v2 / m2[0])
    assert got == pytest.approx(want, rel=1e-9)


def test_an_excess_of_loss_on_simulated_years_keeps_its_mean_and_variance():
    """Gross years drawn as gamma (numpy's generator); the excess of loss takes 2 % of
    the person distribution's mean (c = 2 of 100) and 40 % of its variance (30,000 ->
    18,000): the coupled net years have mean n m (1 - 0.02) and variance n v x 0.6
    (the layer's shares applied to the pricing's own mean and variance, session 23)
    within Monte Carlo error."""
    rng = np.random.default_rng(5)
    n, m, v, sims = 1_000, 100.0, 40_000.0, 40_000
    tot = rng.gamma((m * n) ** 2 / (v * n), (v * n) / (m * n), size=sims)
    s = rt.SimYear(np.rint(tot * 100).astype(np.int64), np.full(sims, m), v, m,
                   130 * 100 * n, n)
    x = Treaty("x", "excess_of_loss", retention_fen=1, limit_fen=1, loading_bp=2500)
    got = rt.apply_excess_of_loss(s, x, {"ceded": 2.0, "var_before": 30_000.0,
                                         "var_after": 18_000.0, "mean_before": 100.0})
    net = s.totals / 100
    assert got["expected_ceded_fen"] == 2.0 * n * 100
    assert got["reinsurance_premium_fen"] == pytest.approx(1.25 * 2.0 * n * 100)
    se_mean = math.sqrt(v * n / sims)
    assert abs(net.mean() - n * 98.0) < 4 * se_mean
    assert net.var() == pytest.approx(n * v * 18_000.0 / 30_000.0, rel=0.05)
    # the same years: a worse gross year is a worse net year
    assert (np.diff(net[np.argsort(tot)]) >= -1e-2).all()


# -- treaty files ------------------------------------------------------------------------

def test_the_example_treaty_set_reads():
    ts = load_treaties(EXAMPLE)
    assert [t.kind for t in ts.treaties] == ["excess_of_loss", "quota_share", "stop_loss"]
    xl, qs, sl = ts.treaties
    assert (xl.retention_fen, xl.limit_fen, xl.loading_bp) == (30_000_000, 280_000_000, 3000)
    assert (qs.share_bp, qs.commission_bp) == (2000, 1500)
    assert (sl.attachment_bp, sl.width_bp, sl.loading_bp, sl.rate_bp) == (10_000, 5000, 5000, None)
    assert ts.capital_quantile == 0.995 and ts.illustrative
    assert load_treaties("example-huhuibao-2025").path.resolve() == EXAMPLE.resolve()


GOOD = '''id = "t"
capital_quantile = 0.995
[[treaties]]
id = "qs"
kind = "quota_share"
share = 0.2
[[treaties]]
id = "sl"
kind = "stop_loss"
attachment = 1.1
width = 0.3
loading = 0.2
'''


@pytest.mark.parametrize("change, words", [
    (("share = 0.2", "share = 1.5"), "'share' = 1.5: a ratio is from 0 to 1"),
    (("share = 0.2", "sahre = 0.2"), "unknown key 'sahre'; did you mean 'share'?"),
    (("loading = 0.2", "loading = 0.2\nrate = 0.01"), "give one of them"),
    (("loading = 0.2", ""), "give one of them"),
    (("width = 0.3", "width = -0.3"), "should be a loss ratio from 0 to 10"),
    (("kind = \"stop_loss\"", "kind = \"stop-loss\""), "did you mean 'stop_loss'?"),
    (("share = 0.2", "share = 0.2\nretention = 1000"), "'retention' is not a key of a quota_share"),
    (("capital_quantile = 0.995", "capital_quantile = 1.0"), "probability from 0.5 to below 1"),
    (("capital_quantile = 0.995\n", ""), "missing 'capital_quantile'"),
    (("share = 0.2", "share = 0"), "cedes nothing"),
    (("share = 0.2", "share = 0.12345"), "finer than a basis point"),
])
def test_a_bad_treaty_file_names_file_treaty_and_key(tmp_path, change, words):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(RuleFileError) as e:
        load_treaties(f)
    assert words in str(e.value) and str(f) in str(e.value)


def test_negative_retention_and_excess_of_loss_after_a_stop_loss(tmp_path):
    xl = '\n[[treaties]]\nid = "xl"\nkind = "excess_of_loss"\nretention = {r}\nlimit = 10\nloading = 0.1\n'
    f = tmp_path / "neg.toml"
    f.write_text(GOOD + xl.format(r=-5), encoding="utf-8")
    with pytest.raises(RuleFileError, match="an amount cannot be negative"):
        load_treaties(f)
    f.write_text(GOOD + xl.format(r=5), encoding="utf-8")
    with pytest.raises(RuleFileError, match="comes after a stop_loss"):
        load_treaties(f)


def test_a_treaty_file_extends_another(tmp_path):
    (tmp_path / "base.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "next.toml").write_text(
        'extends = "base.toml"\nid = "next"\n[[treaties]]\nid = "qs"\nshare = 0.25\n'
        '[[treaties]]\nid = "sl"\nremove = true\n', encoding="utf-8")
    ts = load_treaties(tmp_path / "next.toml")
    assert [(t.id, t.share_bp) for t in ts.treaties] == [("qs", 2500)]
    (tmp_path / "bad.toml").write_text(
        'extends = "base.toml"\n[[treaties]]\nid = "qs"\nshare = 2\n', encoding="utf-8")
    with pytest.raises(RuleFileError, match="bad.toml.*'share' = 2"):
        load_treaties(tmp_path / "bad.toml")


# -- the command on the sample city --------------------------------------------------------

SAMPLE = ROOT / "data-samples" / "city"
PRODUCT = ROOT / "actuarial" / "products" / "huhuibao-2025.toml"


def test_price_refuses_a_bad_treaty_file_with_exit_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("share = 0.2", "share = 1.5"), encoding="utf-8")
    r = puhui("price", "--product", PRODUCT, "--data", SAMPLE, "--out", tmp_path / "o",
              "--treaties", f, "--no-backtest")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "bad.toml" in r.stderr and "'share' = 1.5" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    r = puhui("price", "--product", PRODUCT, "--data", SAMPLE, "--out", tmp_path / "o",
              "--treaties", tmp_path / "none.toml", "--no-backtest")
    assert r.returncode == 2 and "treaty file not found" in r.stderr


@pytest.fixture(scope="module")
def priced_with_treaties(tmp_path_factory):
    out = tmp_path_factory.mktemp("rt") / "out"
    r = puhui("price", "--product", PRODUCT, "--data", SAMPLE, "--out", out,
              "--treaties", EXAMPLE, "--no-backtest", "--lang", "zh")
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def test_price_with_treaties_keeps_the_identities(priced_with_treaties):
    out, stdout = priced_with_treaties
    f = json.loads((out / "pricing.json").read_text(encoding="utf-8"))
    R = f["risk_transfer"]
    n = f["policies"]
    g = R["gross"]
    # the gross position is the pricing's own: premium, expected loss ratio, interval
    assert g["premium_total"] == pytest.approx(f["filed_premium"] * n)
    assert g["expected_loss_ratio"] == pytest.approx(f["expected_loss_ratio"], abs=1e-4)
    assert g["loss_ratio_interval"]["lower"] == pytest.approx(
        f["loss_ratio_interval"]["lower"], abs=2e-4)
    assert g["loss_ratio_interval"]["upper"] == pytest.approx(
        f["loss_ratio_interval"]["upper"], abs=2e-4)
    assert g["expected_claims_per_policy"] == f["pure_premium"]["total"]
    xl, qs, sl = R["treaties"]
    # the premiums: the XL's expected ceded x 1.3; 20 % of the gross premium less 15 %
    # of it; the stop loss's expected ceded x 1.5
    assert xl["reinsurance_premium_total"] == pytest.approx(1.3 * xl["expected_ceded_total"],
                                                            abs=0.02)
    assert qs["ceded_premium_total"] == pytest.approx(0.2 * g["premium_total"], abs=0.01)
    assert qs["ceding_commission_total"] == pytest.approx(0.15 * qs["ceded_premium_total"],
                                                          abs=0.01)
    assert sl["reinsurance_premium_total"] == pytest.approx(1.5 * sl["expected_ceded_total"],
                                                            abs=0.02)
    # the quota share takes 20 % of what the XL left
    assert qs["expected_ceded_total"] == pytest.approx(
        0.2 * xl["net_after"]["expected_claims_total"], abs=0.02)
    # each stage: premium and claims are the last stage's less this treaty's
    before = g
    for t in R["treaties"]:
        a = t["net_after"]
        assert a["premium_total"] == pytest.approx(
            before["premium_total"] - t["reinsurance_premium_total"], abs=0.02)
        assert a["expected_claims_total"] == pytest.approx(
            before["expected_claims_total"] - t["expected_ceded_total"], abs=0.02)
        assert a["expected_loss_ratio"] == pytest.approx(
            a["expected_claims_total"] / a["premium_total"], abs=1e-4)
        assert a["capital_total"] <= before["capital_total"]     # each treaty cuts the tail
        before = a
    assert R["net"] == R["treaties"][-1]["net_after"]
    # alone on the gross: the first treaty as in order; the quota share 20 % of the
    # gross claims; the stop loss on the gross premium recovers more than after the rest
    assert xl["alone"]["net_after"] == xl["net_after"]
    assert qs["alone"]["expected_ceded_total"] == pytest.approx(
        0.2 * g["expected_claims_total"], abs=0.02)
    assert sl["alone"]["expected_ceded_total"] > sl["expected_ceded_total"]
    # the stop loss's layer: at most its width of the retained premium
    assert sl["expected_ceded_total"] <= 0.5 * (g["premium_total"] - qs["ceded_premium_total"])
    # a per-person excess of loss above 300,000 yuan is a small part of the whole
    assert 0 < xl["expected_ceded_per_policy"] < 0.05 * f["pure_premium"]["total"]
    assert "risk transfer (example-huhuibao-2025.toml): net premium" in stdout
    from test_reports import english_runs

    html = (out / "report.html").read_text(encoding="utf-8")        # in Chinese
    assert "风险转移" in html and "per-person-xl" in html and "毛额（分保前）" in html
    assert english_runs(html) == []
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["options"]["treaties"].endswith("example-huhuibao-2025.toml")
    assert m["options"]["in_basis"]["treaties"] == "treaties/example-huhuibao-2025.toml"
    assert len(m["inputs"]["treaties_file"]) == 64


def test_a_pricing_with_treaties_reproduces(priced_with_treaties):
    out, _ = priced_with_treaties
    r = puhui("reproduce", out / "manifest.json")
    assert r.returncode == 0, r.stdout + r.stderr


def _spliced_draws(shape, m: int, rng) -> np.ndarray:
    """Standardised amounts drawn from a fitted SplicedSeverity: a body amount picked
    at random, or with probability p_u the threshold plus a generalised Pareto draw."""
    from scipy.stats import genpareto

    z = shape._body[rng.integers(0, len(shape._body), m)]
    if shape.tail_ == "gpd":
        tail = rng.random(m) < shape.p_u_
        z[tail] = shape.u_ + genpareto.rvs(shape.xi_, scale=shape.sigma_,
                                           size=int(tail.sum()), random_state=rng)
    return z


def _people(st, g, i: int, rng, n: int) -> np.ndarray:
    """n people of cell i, their annual benefit from group g simulated claim by claim:
    NB (or Poisson) counts per kind, amounts mean x severity trend x a spliced draw,
    the benefit level x min(r (S - d)+, L); an external blend takes, with probability
    1 - Z, Poisson cases of payout_per_case instead (the year's sum capped at the limit)."""
    from puhui.pricing.external import payout_per_case

    model, pre = st.models[g.id], int(st.cells["preexisting"].iloc[i]) == 1
    ratio = g.preexisting_ratio if pre else g.ratio
    s = np.zeros(n)
    for k, (lam, mu) in zip(model.kinds_, model.rates(st.cells)):
        if k.alpha > 0:
            counts = rng.negative_binomial(1 / k.alpha, 1 / (1 + k.alpha * lam[i]), n)
        else:
            counts = rng.poisson(lam[i], n)
        amounts = mu[i] * st.severity_trend * _spliced_draws(k.shape, int(counts.sum()), rng)
        s += np.bincount(np.repeat(np.arange(n), counts), weights=amounts, minlength=n)
    b = (model.level_ * np.minimum(ratio * np.maximum(s - g.deductible, 0), g.limit)
         if model.kinds_ else np.zeros(n))
    if g.id not in st.external:
        return b
    z, a = st.external[g.id]
    rate = a.incidence[str(st.cells["age_band"].iloc[i])] / 100_000 * a.uptake
    case = float(payout_per_case(a.cost_per_case, g.deductible, ratio, g.limit))
    ext = np.minimum(rng.poisson(rate, n) * case, g.limit)
    return np.where(rng.random(n) < z, b, ext)


def test_a_cell_s_person_payout_against_people_simulated_claim_by_claim(priced_with_treaties):
    """The sample's costliest hospital cell: 400,000 people simulated claim by claim
    from the fitted models (counts, spliced amounts, each benefit's terms, the external
    blends), summed over benefits, against the FFT pmf of person_payout: the mean, the
    excess over 20,000 and 50,000 yuan (limit 1,000,000) and P(X > R), within 4 s.e."""
    from puhui.pricing.whatif import PricingState

    out, _ = priced_with_treaties
    st = PricingState.load(out)
    hospital = st.models["hospital"]
    cost = sum(lam * mu for lam, mu in hospital.rates(st.cells))
    i = int(np.argmax(cost))
    rng, n = np.random.default_rng(7), 400_000
    x = st.cell_factors[i] * sum(_people(st, g, i, rng, n) for g in st.groups)
    payout = pp.PersonPayout(st.cells, st.groups, st.models, st.external,
                             st.severity_trend, st.cell_factors)
    p, span = payout.cell_pmf(i)
    v = np.arange(len(p)) * span
    assert abs(p @ v - x.mean()) < 4 * x.std() / math.sqrt(n)
    for r in (20_000, 50_000):
        c = np.minimum(np.maximum(x - r, 0), 1_000_000)
        want = np.minimum(np.maximum(v - r, 0), 1_000_000)
        assert abs(p @ want - c.mean()) < 4 * c.std() / math.sqrt(n), r
        q = (x > r).mean()
        assert abs(p[v > r].sum() - q) < 4 * math.sqrt(q * (1 - q) / n) + 1e-4, r
    assert (x > 20_000).mean() > 0.005        # the layer is reached often enough to test
