"""The layer engine: hand-worked cases, and the vectorised engine against the
per-settlement reference (puhui.tiers.reference) on random sequences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puhui.errors import RuleFileError
from puhui.tiers.layers import grouped_cumsum, run_layer
from puhui.tiers.reference import settle_one
from puhui.tiers.waterfall import check_layers, parse_layer, run_waterfall


def test_grouped_cumsum_interleaved_groups():
    v = np.array([5, 1, 2, 7, 3])
    g = np.array([2, 1, 2, 1, 2])
    assert grouped_cumsum(v, g).tolist() == [5, 1, 7, 8, 10]


def test_deductible_crossing_within_one_item_and_limit_cut():
    # D = 1,000.00; ratio 50 %; L = 600.00. Bills 400 / 1,000 / 800 yuan (in fen).
    # bill 1: deductible 400, after 0, paid 0
    # bill 2: deductible 600 (reaches 1,000), after 400, uncapped 200, paid 200
    # bill 3: deductible 0, after 800, uncapped 400, limit left 400 -> paid 400
    out = run_layer(np.array([40000, 100000, 80000]), 5000, ded_amount=100000,
                    ded_group=np.zeros(3, int), limit_amount=60000, limit_group=np.zeros(3, int))
    assert out.deductible.tolist() == [40000, 60000, 0]
    assert out.paid.tolist() == [0, 20000, 40000]
    assert out.overflow.tolist() == [0, 0, 0]


def test_overflow_when_limit_reached_mid_item():
    # ratio 80 %, L = 1,000.00, one bill of 2,000.00: uncapped 1,600.00, paid 1,000.00,
    # covered = ceil(1,000.00 / 0.8) = 1,250.00, overflow 750.00
    out = run_layer(np.array([200000]), 8000, limit_amount=100000, limit_group=np.zeros(1, int))
    assert (out.paid[0], out.covered[0], out.overflow[0]) == (100000, 125000, 75000)


def test_prior_accumulators_carry_in():
    # 1,500 deductible of which 1,200 used before; limit 10,000 of which 9,900 paid before
    out = run_layer(np.array([100000]), 10000, ded_amount=150000, ded_group=np.zeros(1, int),
                    ded_prior=np.array([120000]), limit_amount=1000000,
                    limit_group=np.zeros(1, int), limit_prior=np.array([990000]))
    assert out.deductible[0] == 30000          # 1,500 - 1,200
    assert out.paid[0] == 10000                # 700 due, only 100 of limit left


def test_per_stay_deductible():
    out = run_layer(np.array([20000, 50000]), 10000, ded_amount=np.array([30000, 30000]))
    assert out.deductible.tolist() == [20000, 30000]
    assert out.paid.tolist() == [0, 20000]


LAYERS_RAW = [
    # two benefits sharing one deductible and one limit, a third on the overflow
    {"id": "inlist", "base": "a", "ratio": [{"when": {"preexisting": True}, "value": 0.5},
                                            {"value": 0.7}],
     "deductible": {"amount": 200, "accumulator": "shared_ded"},
     "limit": {"amount": 1000, "accumulator": "shared_lim"}},
    {"id": "outlist", "base": "b", "ratio": 0.6, "applies": {"hosp_lv": [2, 3]},
     "deductible": {"amount": 200, "accumulator": "shared_ded"},
     "limit": {"amount": 1000, "accumulator": "shared_lim"}},
    {"id": "top", "base": ["inlist.overflow", "outlist.overflow"], "ratio": 0.9,
     "limit": {"amount": 300}},
    {"id": "stay", "base": ["a", "-inlist.paid"], "ratio": 0.25,
     "deductible": {"per": "stay", "amount": [{"when": {"hosp_lv": 1}, "value": 5},
                                              {"value": 30}]}},
]


def _layers():
    layers = [parse_layer(r, f"test[{i}]", {"a", "b"}) for i, r in enumerate(LAYERS_RAW)]
    check_layers(layers, "test")
    return layers


rows_strategy = st.lists(
    st.tuples(st.integers(0, 3),                 # person
              st.integers(0, 400_00),            # a (fen)
              st.integers(0, 300_00),            # b (fen)
              st.integers(1, 3),                 # hosp_lv
              st.booleans()),                    # preexisting
    min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_vectorised_equals_reference(rows):
    layers = _layers()
    # processing order: by person, then input order
    rows = sorted(enumerate(rows), key=lambda t: (t[1][0], t[0]))
    person = np.array([r[1][0] for r in rows])
    q = {"a": np.array([r[1][1] for r in rows]), "b": np.array([r[1][2] for r in rows])}
    # preexisting is per person-period (constant), as rule files require
    pre_by_person = {}
    for r in rows:
        pre_by_person.setdefault(r[1][0], r[1][4])
    attrs = {"hosp_lv": np.array([r[1][3] for r in rows]),
             "preexisting": np.array([pre_by_person[p] for p in person])}
    vec = run_waterfall(layers, q, attrs, person)
    states: dict[int, dict] = {}
    for i, p in enumerate(person):
        ref = settle_one(layers, {"a": int(q["a"][i]), "b": int(q["b"][i])},
                         {"hosp_lv": int(attrs["hosp_lv"][i]),
                          "preexisting": bool(attrs["preexisting"][i])},
                         states.setdefault(int(p), {}))
        for la in layers:
            for fld in ("deductible", "paid", "covered", "overflow"):
                assert getattr(vec[la.id], fld)[i] == ref[la.id][fld], (la.id, fld, i)
    # invariants: paid within [0, uncapped]; cumulative paid within the limit
    for la in layers:
        r = vec[la.id]
        assert (r.paid >= 0).all() and (r.paid <= r.uncapped).all()
    shared = vec["inlist"].paid + vec["outlist"].paid
    for p in set(person.tolist()):
        assert shared[person == p].sum() <= 1000_00
        ded = vec["inlist"].deductible + vec["outlist"].deductible
        assert ded[person == p].sum() <= 200_00


def test_layer_rules_are_checked():
    with pytest.raises(RuleFileError, match="not computed before it"):
        check_layers([parse_layer({"id": "x", "base": "y.paid", "ratio": 1}, "t", set()),
                      parse_layer({"id": "y", "base": "a", "ratio": 1}, "t", {"a"})], "t")
    with pytest.raises(RuleFileError, match="cannot depend on hosp_lv"):
        parse_layer({"id": "x", "base": "a", "ratio": 1,
                     "deductible": {"amount": [{"when": {"hosp_lv": 1}, "value": 1},
                                               {"value": 2}]}}, "t", {"a"})
    with pytest.raises(RuleFileError, match="unknown quantity 'zz'"):
        parse_layer({"id": "x", "base": "zz", "ratio": 1}, "t", {"a"})
    with pytest.raises(RuleFileError, match="finer than a basis point"):
        parse_layer({"id": "x", "base": "a", "ratio": 0.12345}, "t", {"a"})
    with pytest.raises(RuleFileError, match="only the last option may omit 'when'"):
        parse_layer({"id": "x", "base": "a", "ratio": [{"value": 1}, {"value": 0.5}]}, "t", {"a"})
