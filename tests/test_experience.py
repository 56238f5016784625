"""The experience table: the product applied as if in force, with exposure."""

import pandas as pd

from puhui.benefits.calculator import adjudicate
from puhui.fund.files import read_fund
from puhui.pricing.experience import (
    effective_settlements,
    experience,
    preexisting_from_history,
)
from puhui.products.model import load_product, product_path

PRODUCT = load_product(product_path("huhuibao-2025"))


def test_enrolled_rows_pay_what_the_calculator_pays_on_the_real_policies(small_city_dir):
    d = read_fund(small_city_dir)
    e = experience(PRODUCT, d)
    # the real 2025 policies of the data (product huhuibao-2025), adjudicated directly
    pol = d.policies[d.policies["product_id"] == "huhuibao-2025"]
    st = effective_settlements(d.settlements)
    st = st[st["setl_time"].dt.year == 2025]
    direct = adjudicate(PRODUCT, st, pol, d.lines)
    mine = e[(e["year"] == 2025) & e["enrolled"]]
    for b in direct.benefits:
        assert mine[f"payout_{b}"].sum() == direct.payout[b].sum(), b
    # one row per person alive at each year's start; exposure within (0, 1]
    assert not e.duplicated(["psn_no", "year"]).any()
    assert ((e["exposure"] > 0) & (e["exposure"] <= 1)).all()
    deaths = d.persons["death_date"].notna().sum()
    assert (e["exposure"] < 1).sum() == deaths


def test_preexisting_from_history():
    st = pd.DataFrame({"psn_no": ["a", "b", "c"], "dise_code": ["C34", "I10", "N18.5"],
                       "setl_time": pd.to_datetime(["2024-03-01", "2024-03-01", "2021-05-01"])})
    # look-back 3 years before 2025: 2022-01-01 to 2024-12-31 -> a (C34); c is too early
    assert preexisting_from_history(st, 2025, ("C", "N18"), 3) == {"a"}
    assert preexisting_from_history(st, 2025, ("C", "N18"), 4) == {"a", "c"}
    assert preexisting_from_history(st, 2025, (), 3) == set()


def test_hospital_use_history_and_unenrolled_people(small_city_dir):
    d = read_fund(small_city_dir)
    e = experience(PRODUCT, d)
    st = effective_settlements(d.settlements)
    stays24 = st[(st["med_type"].astype(str) == "21") & (st["setl_time"].dt.year == 2024)]
    want = stays24.groupby(stays24["psn_no"].astype(str)).size()
    got = e[e["year"] == 2025].set_index("psn_no")["stays_prior"]
    alive = want.index[want.index.isin(got.index)]          # those who died in 2024 have no 2025 row
    assert len(alive) > 0
    assert (got.loc[alive].to_numpy() == want.loc[alive].to_numpy()).all()
    assert got.drop(alive).eq(0).all()
    assert (~e["enrolled"]).any() and (e.loc[~e["enrolled"], "payout_hospital"] >= 0).all()


def test_skipping_settlements_no_benefit_can_pay_changes_nothing(small_city_dir, monkeypatch):
    """The experience with the calculator on every settlement equals the one that skips
    those `may_pay` rules out (and most are skipped)."""
    import numpy as np

    import puhui.pricing.experience as ex

    d = read_fund(small_city_dir)
    fast, fast_ev = experience(PRODUCT, d, events=True)
    st = effective_settlements(d.settlements)
    assert ex.may_pay(PRODUCT, st, ex.has_lines(st, d.lines)).mean() < 0.5
    monkeypatch.setattr(ex, "may_pay", lambda product, st, lines: np.ones(len(st), dtype=bool))
    full, full_ev = experience(PRODUCT, d, events=True)
    pd.testing.assert_frame_equal(fast, full)
    key = ["setl_id", "benefit"]
    pd.testing.assert_frame_equal(fast_ev.sort_values(key).reset_index(drop=True),
                                  full_ev.sort_values(key).reset_index(drop=True))
