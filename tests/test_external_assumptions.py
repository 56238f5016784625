"""Benefits with little or no data: external assumptions blended by credibility
(puhui.pricing.external), and the class-C budget impact paying each drug under the
benefit that would pay it (puhui.pricing.whatif)."""

import types

import numpy as np
import pandas as pd
import pytest

from puhui.basis import actuarial_dir
from puhui.errors import InputError
from puhui.pricing.benefit_cost import GroupTerms
from puhui.pricing.external import (
    ExternalAssumption,
    band_labels,
    blend,
    credibility_weight,
    expected_cost,
    external_moments,
    load_external,
    payout_per_case,
)
from puhui.pricing.whatif import class_c_budget_impact, paying_benefit
from puhui.products.model import load_product

BANDS = band_labels()


def _assumption(**kw):
    inc = {b: 0.0 for b in BANDS}
    inc["51-60"] = 4.0
    return ExternalAssumption("cart", kw.get("incidence", inc), kw.get("uptake", 0.25),
                              kw.get("cost", 1_000_000.0), {})


def test_an_external_benefit_priced_from_its_inputs_by_hand():
    # one band (51-60), two cells: not pre-existing and pre-existing
    cells = pd.DataFrame({"age_band": ["51-60", "51-60"], "preexisting": [0, 1]})
    terms = GroupTerms("cart", ("cart",), deductible=10_000.0, ratio=0.7,
                       preexisting_ratio=0.3, limit=500_000.0)
    m1, var = external_moments(_assumption(), cells, terms)
    # cases per person-year = 4 / 100,000 x uptake 0.25 = 1e-5
    # not pre-existing: (1,000,000 - 10,000) x 0.7 = 693,000 -> the limit 500,000;
    #   E[B] = 1e-5 x 500,000 = 5.00 yuan; Var = 1e-5 x 500,000^2 = 2,500,000
    # pre-existing: 990,000 x 0.3 = 297,000 (under the limit);
    #   E[B] = 1e-5 x 297,000 = 2.97 yuan; Var = 1e-5 x 297,000^2 = 882,090
    assert m1 == pytest.approx([5.0, 2.97])
    assert var == pytest.approx([2_500_000.0, 882_090.0])
    # a band with no incidence costs nothing
    m1_young, _ = external_moments(_assumption(), cells.assign(age_band="18-30"), terms)
    assert m1_young == pytest.approx([0.0, 0.0])


def test_the_formulas_one_by_one():
    assert payout_per_case(1_200_000, 0, 0.7, 500_000) == 500_000       # CAR-T at its limit
    assert payout_per_case(278_000, 0, 0.7, 300_000) == pytest.approx(194_600)
    assert payout_per_case(5_000, 10_000, 0.7, 500_000) == 0             # under the deductible
    assert expected_cost(2.0, 0.1, 500_000) == pytest.approx(1.0)         # 2e-5 x 0.1 x 500,000
    assert blend(0.5, 8.0, 5.0) == pytest.approx(6.5)


def test_credibility_no_events_is_external_only_and_many_is_data():
    assert credibility_weight(0, 1082) == 0.0
    assert credibility_weight(300, 1200) == pytest.approx(0.5)          # sqrt(300 / 1200)
    assert credibility_weight(5000, 1082) == 1.0
    data, ext = np.array([8.0, 0.0]), np.array([5.0, 2.97])
    assert blend(credibility_weight(0, 1082), data, ext) == pytest.approx(ext)
    assert blend(credibility_weight(5000, 1082), data, ext) == pytest.approx(data)


def test_the_shipped_assumptions_file_gives_every_figure_with_a_source():
    basis = load_external({})
    assert basis.n_full == 1082
    assert {"cart", "overseas_drugs", "proton"} <= set(basis.benefits)
    for a in basis.benefits.values():
        assert set(a.incidence) == set(BANDS)
        for fig in ("incidence_per_100000", "uptake", "cost_per_case"):
            assert "[" in a.sources[fig]                    # tagged [sourced]/[assumption]/...
    assert basis.benefits["cart"].cost_per_case == 1_200_000


def test_an_assumptions_file_without_a_source_or_a_band_is_refused(tmp_path):
    inc = ", ".join(f'"{b}" = 1.0' for b in BANDS)
    good = (f'[credibility]\nn_full = 1082\n[cart]\nincidence_per_100000 = {{ {inc} }}\n'
            f'incidence_per_100000_source = "x"\nuptake = 0.1\nuptake_source = "y"\n'
            f'cost_per_case = 1000\n')
    p = tmp_path / "b.toml"
    p.write_text(good)                                        # no cost_per_case_source
    with pytest.raises(InputError, match="cost_per_case_source"):
        load_external({"external": {"benefits": str(p)}})
    p.write_text(good.replace(', "81+" = 1.0', "") + 'cost_per_case_source = "z"\n')
    with pytest.raises(InputError, match="every age band"):
        load_external({"external": {"benefits": str(p)}})
    with pytest.raises(InputError, match="not there"):
        load_external({"external": {"benefits": str(tmp_path / "none.toml")}})


def test_class_c_car_t_is_paid_under_the_car_t_benefit_at_its_limit():
    product = load_product(actuarial_dir() / "products" / "huhuibao-2025.toml")
    assert paying_benefit(product, True).id == "cart"
    assert paying_benefit(product, False).id == "special_drugs"
    # three people of the last year in one cell of 3 people and 1.5 expected policies:
    # 0.5 expected policies each. P1 (not pre-existing) has a large B-cell lymphoma
    # (C83.3), P2 (pre-existing) C85.9, P3 (not pre-existing) myeloma (C90.0).
    frame = pd.DataFrame({"psn_no": pd.Categorical(["P1", "P2", "P3"]),
                          "year": 2025, "preexisting": [0, 1, 0]})
    st = pd.DataFrame({"setl_id": ["S1", "S2", "S3"], "psn_no": ["P1", "P2", "P3"],
                       "setl_time": pd.to_datetime(["2025-03-01"] * 3),
                       "dise_code": ["C83.3", "C85.9", "C90.0"]})
    impact = class_c_budget_impact(product, types.SimpleNamespace(settlements=st), frame,
                                   pd.DataFrame({"people": [3]}), np.array([1.5]), [], 10,
                                   uptake=0.2, min_people=1, cur_cell=np.array([0, 0, 0]))
    t = impact["drugs"].set_index("code")
    # C2025-10 axicabtagene (CAR-T, 1,200,000; indications C83.3, C85): P1 and P2, alone
    # with these indications. Users = (0.5 + 0.5) x 0.2 = 0.2. Under the CAR-T benefit
    # (70 % / 30 %, limit 500,000): P1 min(840,000, 500,000) = 500,000, P2 0.3 x 1.2m =
    # 360,000; mean 430,000 (the special-drug benefit, limit 1,000,000, would pay P1
    # 840,000). Cost 0.2 x 430,000 = 86,000.
    row = t.loc["C2025-10"]
    assert row["paid_under"] == "cart"
    assert row["benefit_per_user"] == pytest.approx(430_000)
    assert row["cost"] == pytest.approx(86_000)
    # C2025-13 equecabtagene (CAR-T, 1,166,000, C90): P3; four drugs share C90, so users
    # = 0.5 x 0.2 / 4 = 0.025; min(816,200, 500,000) = 500,000; cost 12,500
    assert t.loc["C2025-13", "paid_under"] == "cart"
    assert t.loc["C2025-13", "cost"] == pytest.approx(12_500)
    # C2025-05 elranatamab (not a CAR-T, 350,000, C90): special drugs, 0.7 x 350,000 =
    # 245,000 under its 1,000,000 limit; cost 0.025 x 245,000 = 6,125
    assert t.loc["C2025-05", "paid_under"] == "special_drugs"
    assert t.loc["C2025-05", "cost"] == pytest.approx(6_125)
    assert impact["pure_premium_per_insured"] == pytest.approx(t["cost"].sum() / 10)
    assert impact["benefits"] == ["cart", "special_drugs"]
