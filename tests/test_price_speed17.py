"""Session 17's pricing speed-ups pinned against the paths they replace (small city).

- ``puhui price`` makes the product's experience on the whole data once: the backtest's
  price of the last data year reads its rows of the years before, the backtest's
  realised cost and the price the tables themselves
  (:func:`puhui.pricing.experience.experience_shared`); pricing.json is the same bytes
  as with the experience made three times.
- what a past policy paid under its own product's terms is the calculator on the
  settlements it can pay (its people's, within its dates, where a benefit may have an
  eligible amount), the same as on all its people's settlements.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

from puhui.products.model import load_product, product_path


@pytest.fixture(scope="module")
def loaded(small_city_dir):
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions

    p = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    return p, a, load_for_pricing(small_city_dir, p, a)


def test_price_with_its_backtest_makes_the_experience_once_and_gives_the_same_bytes(
        priced_small_city, tmp_path, monkeypatch):
    """The fixture priced with the shared experience (the command as users run it);
    here the same pricing with the experience made for each caller, as before: the same
    pricing.json, byte for byte; one experience made instead of three."""
    import puhui.pricing.experience as ex
    from puhui.pricing.run import run_price

    data, out, _ = priced_small_city
    made = []
    inner = ex._experience_in_blocks

    def counting(product, d, *args):
        made.append(tuple(ex.settlement_years(d)))
        return inner(product, d, *args)

    class NotShared:
        def stop_keeping(self):
            pass

    monkeypatch.setattr(ex, "_experience_in_blocks", counting)
    monkeypatch.setattr(ex, "experience_shared",
                        lambda *a, **k: contextlib.nullcontext(NotShared()))
    run_price(product_path("huhuibao-2025"), data, tmp_path / "twice", seed=5)
    assert (tmp_path / "twice" / "pricing.json").read_bytes() == \
        (out / "pricing.json").read_bytes()
    # without sharing: the backtest's price of 2025 from 2024, its realised cost of
    # 2025 on the whole data, the price on the whole data
    assert made == [(2024,), (2024, 2025), (2024, 2025)]

    monkeypatch.undo()
    made.clear()
    monkeypatch.setattr(ex, "_experience_in_blocks", counting)
    run_price(product_path("huhuibao-2025"), data, tmp_path / "once", seed=5)
    assert made == [(2024, 2025)]      # shared: one experience on the whole data
    assert (tmp_path / "once" / "pricing.json").read_bytes() == \
        (out / "pricing.json").read_bytes()


def test_shared_experience_gives_the_first_caller_its_own_payouts(loaded):
    """The first caller may re-pay rows in place (the realised cost does): the tables
    the second caller gets are the ones computed, untouched; a third call computes."""
    from puhui.pricing import experience as ex

    p, _, data = loaded
    fresh_py, fresh_ev = ex.experience_in_blocks(p, data, drop=("eligible_",))
    with ex.experience_shared(p, data, drop=("eligible_",)) as shared:
        first_py, first_ev = ex.experience_in_blocks(p, data, drop=("eligible_",))
        col = f"payout_{p.benefits[0].id}"
        first_py[col].to_numpy()[:] = -1                       # written in place
        other = ex.experience_in_blocks(p, data, drop=("claims_",))   # not the shared one
        assert shared.tables is not None
        shared.stop_keeping()
        second_py, second_ev = ex.experience_in_blocks(p, data, drop=("eligible_",))
        assert shared.tables is None                           # handed over: freed here
        third_py, _ = ex.experience_in_blocks(p, data, drop=("eligible_",))
    for got in (second_py, third_py):
        pd.testing.assert_frame_equal(got, fresh_py)
    pd.testing.assert_frame_equal(second_ev, fresh_ev)
    pd.testing.assert_frame_equal(first_ev, fresh_ev)
    assert (first_py[col] == -1).all() and (fresh_py[col] > 0).any()
    assert not any(c.startswith("claims_") for c in other[0].columns)
    assert third_py is not second_py


def test_data_through_the_last_year_is_the_data_itself(loaded):
    """Nothing after the last data year: the realised cost reads the data's own tables
    (no copy; the key the shared experience is found by); an earlier year still cuts."""
    from puhui.pricing.backtest import data_before, data_through

    _, _, data = loaded
    t = data_through(data, 2025)
    assert t.settlements is data.settlements and t.policies is data.policies
    assert t.lines is data.lines and t.settlement_years == data.settlement_years
    b = data_before(data, 2025)
    assert len(b.settlements) < len(data.settlements) and b.settlement_years == (2024,)
    assert (b.settlements["setl_time"].dt.year < 2025).all()
    assert isinstance(b.settlements.index, pd.RangeIndex)


def _paid_per_policy_before(terms, data, policies):
    """Session 16's ``_paid_per_policy``: the calculator on every effective settlement
    of the policies' people."""
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.quantities import LineMatcher
    from puhui.pricing.experience import effective_mask

    st = data.settlements
    st = st[effective_mask(st) & st["psn_no"].isin(policies["psn_no"].astype(str).unique()
                                                   ).to_numpy()]
    lines = data.lines
    if lines is not None:
        lines = lines[lines["setl_id"].isin(st["setl_id"])]
    agg = adjudicate(terms, st, policies.reset_index(drop=True), lines,
                     matcher=LineMatcher(terms)).by_policy()
    total = agg[[c for c in agg.columns if c.startswith("payout_")]].sum(axis=1)
    return total.reindex(policies["policy_no"].to_numpy(), fill_value=0).to_numpy()


@pytest.mark.parametrize("part", [2_000_000, 40])
@pytest.mark.parametrize("pid, year", [("huhuibao-2024", 2024), ("huhuibao-2025", 2025)])
def test_paid_per_policy_on_the_settlements_it_can_pay_is_unchanged(loaded, pid, year, part,
                                                                     monkeypatch):
    """Whole, and in parts of the people of about 40 settlements each."""
    from puhui.pricing import enrolment
    from puhui.pricing.enrolment import _paid_per_policy

    monkeypatch.setattr(enrolment, "PAY_PART_SETTLEMENTS", part)
    _, _, data = loaded
    terms = load_product(product_path(pid))
    pol = data.policies
    pol = pol[(pol["start_date"].dt.year == year).to_numpy()].assign(claim_free_years=0)
    assert len(pol)
    new = _paid_per_policy(terms, data, pol)
    old = _paid_per_policy_before(terms, data, pol)
    assert (old > 0).sum() >= 3                       # the comparison bites
    assert np.array_equal(new, old)


def test_held_by_codes_as_text(loaded):
    """The persons compared as categorical codes give what the text comparison gave."""
    from puhui.pricing.enrolment import _held_by

    _, _, data = loaded
    st, pol = data.settlements, data.policies
    who = pol["psn_no"].iloc[::3]
    got = _held_by(st["psn_no"], who)
    want = st["psn_no"].astype(str).isin(set(who.astype(str))).to_numpy()
    assert got.any() and not got.all() and np.array_equal(got, want)


def test_a_product_with_its_period_moved_shares_the_experience(loaded):
    """The backtest's product of a later year is the product with its period moved:
    the same experience (notional policies are calendar years), so it is shared; a
    product with other terms is not."""
    import dataclasses

    from puhui.pricing import experience as ex
    from puhui.pricing.backtest import product_for_year

    p, _, data = loaded
    moved, was_moved = product_for_year([p], 2026)
    assert was_moved and moved.start.year == 2026
    other = load_product(product_path("huhuibao-2024"))
    with ex.experience_shared(p, data) as shared:
        ex.experience_in_blocks(other, data)
        assert shared.tables is None                      # other terms: not kept
        py_moved, _ = ex.experience_in_blocks(moved, data)
        assert shared.tables is not None
        shared.stop_keeping()
        py, _ = ex.experience_in_blocks(p, data)
        assert shared.tables is None
    pd.testing.assert_frame_equal(py, py_moved)
    pd.testing.assert_frame_equal(py, ex.experience_in_blocks(
        dataclasses.replace(p, start=moved.start, end=moved.end), data)[0])


def test_the_experience_of_the_data_before_a_year_is_the_whole_datas_earlier_rows(loaded):
    """The backtest's price of the last year reads the data before it: inside the
    shared experience its tables are the whole data's rows of the earlier years, equal
    to those made on the cut data (every column, every dtype); payouts its own."""
    from puhui.pricing import experience as ex
    from puhui.pricing.backtest import data_before
    from puhui.pricing.premium import EXPERIENCE_DROP

    p, _, data = loaded
    made_alone = ex.experience_in_blocks(p, data_before(data, 2025), drop=EXPERIENCE_DROP)
    with ex.experience_shared(p, data, drop=EXPERIENCE_DROP) as shared:
        cut = data_before(data, 2025)
        assert cut.settlements is not data.settlements
        py, ev = ex.experience_in_blocks(p, cut, drop=EXPERIENCE_DROP)
        assert shared.tables is not None                     # the whole data's, kept
        assert (shared.tables[0]["year"] == 2025).any()
        col = f"payout_{p.benefits[0].id}"
        py[col].to_numpy()[:] = -1
        shared.stop_keeping()
        whole_py, _ = ex.experience_in_blocks(p, data, drop=EXPERIENCE_DROP)
    pd.testing.assert_frame_equal(py.drop(columns=col), made_alone[0].drop(columns=col))
    pd.testing.assert_frame_equal(ev, made_alone[1])
    assert (made_alone[1]["year"] == 2024).all() and len(ev) > 10
    assert (whole_py[col] >= 0).all()                         # the shared tables untouched
    assert len(whole_py) > len(py)
