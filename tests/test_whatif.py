"""What-if re-pricing from a pricing run's fitted state, and the class-C budget impact."""

import numpy as np
import pytest

from puhui.errors import InputError
from puhui.fund.files import read_fund
from puhui.pricing.premium import load_assumptions, price
from puhui.pricing.whatif import PricingState, reprice
from puhui.products.model import load_product, product_path


@pytest.fixture(scope="module")
def priced():
    data = read_fund("data-samples/city")
    assumptions, _ = load_assumptions()
    return price(load_product(product_path("huhuibao-2025")), data, assumptions, seed=3)


@pytest.fixture(scope="module")
def unchanged(priced):
    """The hospital benefit re-priced with no change (read only: two tests use it)."""
    return reprice(priced.state, "hospital").set_index("benefit")


@pytest.fixture(scope="module")
def deductible_20000(priced):
    """The hospital deductible re-priced at 20,000 (read only: two tests use it)."""
    return reprice(priced.state, "hospital", deductible=20000).set_index("benefit")


def test_no_change_reprices_to_the_priced_figures(priced, unchanged):
    t = unchanged
    assert np.allclose(t["pure_before"], t["pure_after"])
    for b, v in priced.figures["pure_premium"].items():
        assert t.loc[b, "pure_before"] == pytest.approx(v, abs=0.006)


def test_terms_move_the_premium_the_right_way(priced, unchanged, deductible_20000):
    base = unchanged["pure_after"]
    higher_ded = deductible_20000["pure_after"]
    lower_ratio = reprice(priced.state, "hospital", ratio=0.5).set_index("benefit")["pure_after"]
    assert higher_ded["hospital"] < base["hospital"]
    assert lower_ratio["hospital"] < base["hospital"]
    # other benefits do not move
    assert higher_ded["special_drugs"] == pytest.approx(base["special_drugs"])
    # the ratio scales the benefit below the limit: 0.5 / 0.7 of it, nearly (the limit
    # and the pre-existing ratio, unchanged at 0.5, keep it from being exact)
    assert lower_ratio["hospital"] < base["hospital"] * 0.5 / 0.7 * 1.3


def test_dropping_every_drug_leaves_nothing(priced, tmp_path):
    codes = tuple(priced.state.drug_shares["special_drugs"]["code"])
    t = reprice(priced.state, "special_drugs", drop_drugs=codes).set_index("benefit")
    assert t.loc["special_drugs", "pure_after"] == pytest.approx(0.0, abs=1e-9)
    one_drug = reprice(priced.state, "special_drugs", drop_drugs=codes[:1])
    one = one_drug.set_index("benefit")
    assert 0 < one.loc["special_drugs", "pure_after"] < one.loc["special_drugs", "pure_before"]
    # the state survives a round trip through its file: the same what-if from the loaded
    # state is the one above, to the bit
    priced.state.save(tmp_path)
    again = reprice(PricingState.load(tmp_path), "special_drugs", drop_drugs=codes[:1])
    assert again.equals(one_drug)


def test_bad_what_if_is_an_input_error(priced, tmp_path):
    with pytest.raises(InputError, match="not in"):
        reprice(priced.state, "dental")
    with pytest.raises(InputError, match="no lines"):
        reprice(priced.state, "special_drugs", drop_drugs=("NOPE",))
    with pytest.raises(InputError, match="price"):
        PricingState.load(tmp_path)


def test_budget_impact_of_class_c(priced):
    bi = priced.figures["budget_impact_class_c"]
    t = priced.tables["budget_impact"]
    assert bi["pure_premium_per_insured"] == pytest.approx(t["cost"].sum() / bi["policies"], abs=0.01)
    # drugs with the same indications share the uptake: the two Alzheimer drugs (G30;F00)
    ad = t[t["code"].isin(["C2025-18", "C2025-19"])]
    assert ad["expected_users"].iloc[0] == pytest.approx(ad["expected_users"].iloc[1])
    # benefit per user never exceeds the special-drug limit or 70 % of the price
    assert (t["benefit_per_user"] <= np.minimum(0.7 * t["price"], 1_000_000) + 1e-6).all()
    # counts of diagnosed people under 10 are not shown
    shown = [v for v in t["diagnosed_people"] if isinstance(v, int)]
    assert all(v == 0 or v >= 10 for v in shown)


def test_credibility_needs_two_model_years_and_says_so_on_one(priced):
    """The sample's 2024 is look-back only, so the models and the credibility have 2025
    alone: Buhlmann-Straub has no between-year variance to work with, and the cells
    keep the model (adjustment 1, k null)."""
    f = priced.figures
    assert f["data"]["model_years"] == [2025]
    cred = f["credibility"]
    assert cred["k"] is None and cred["adjustment_to_pure_premium"] == 1.0
    assert f["pure_premium"]["total"] == pytest.approx(f["pure_premium_model"]["total"],
                                                       rel=1e-3)


def test_credibility_moves_the_model_premium_by_its_stated_adjustment():
    from puhui.synth.city import synth_city

    data = synth_city(3000, 3, seed=5)        # the first year look-back only; models on two
    assumptions, _ = load_assumptions()
    p = load_product(product_path("huhuibao-2025"))
    f = price(p, data, assumptions, seed=3)
    years = f.figures["data"]["years"]
    assert len(years) == 3 and f.figures["data"]["model_years"] == years[1:]
    cred = f.figures["credibility"]
    assert cred["by"] == ["age_band", "preexisting"]
    assert 0 < cred["k"] < float("inf")
    assert f.figures["pure_premium"]["total"] == pytest.approx(
        f.figures["pure_premium_model"]["total"] * cred["adjustment_to_pure_premium"], rel=1e-3)
    t = f.tables["credibility"]
    assert ((t["Z"] >= 0) & (t["Z"] < 1)).all()
    assert t["person_years"].sum() > 0


def test_claim_free_steps_are_priced(priced, deductible_20000):
    c = priced.figures["claim_free_steps"]["hospital"]
    at_11k = c["steps"][0]
    assert at_11k["deductible"] == 11000 and 0 < at_11k["share_of_policies"] < 1
    # the sample has two data years, so nobody reaches three claim-free years next year
    assert c["steps"][1]["share_of_policies"] == 0
    assert c["model_pure_premium_with_steps"] > c["model_pure_premium_first_year_deductible"]
    # a what-if deductible keeps the reductions: 20,000 -> steps at 19,000 and 18,000
    t = deductible_20000
    plain = dict(priced.state.step_shares)
    priced.state.step_shares.clear()
    try:
        t0 = reprice(priced.state, "hospital", deductible=20000).set_index("benefit")
    finally:
        priced.state.step_shares.update(plain)
    assert t.loc["hospital", "pure_after"] > t0.loc["hospital", "pure_after"]


def test_budget_impact_with_the_callers_cells_equals_matching_them():
    """``price`` passes each last-year row's cell (``cur_cell``); without it the cells are
    matched by their factors. Both give the same table. By hand: people a and c (cell
    x, 2 people, 3 expected policies: 1.5 each) have a settlement with E75.2 (drug
    C2025-01's indication) in 2025, b's is reversed; expected holders 3.0."""
    import pandas as pd

    from puhui.fund.files import FundData
    from puhui.pricing.whatif import class_c_budget_impact

    ids = pd.CategoricalDtype(["a", "b", "c", "d"])
    frame = pd.DataFrame({"psn_no": pd.Categorical(["a", "b", "a", "b", "c", "d"], dtype=ids),
                          "year": [2024, 2024, 2025, 2025, 2025, 2025],
                          "band": ["x", "y", "x", "y", "x", "y"],
                          "preexisting": [0, 0, 0, 1, 0, 0]})
    cells = pd.DataFrame({"band": ["x", "y"], "people": [2, 2]})
    st = pd.DataFrame({"setl_id": ["s1", "s2", "s3", "r2", "s0"],
                       "psn_no": pd.Categorical(["a", "b", "c", "b", "d"]),
                       "setl_time": pd.to_datetime(["2025-03-01", "2025-04-01", "2025-05-01",
                                                    "2025-04-02", "2024-05-01"]),
                       "dise_code": pd.Categorical(["E75.2", "E75.2", "E75.2", "E75.2", "E75.2"]),
                       "refund_of": [None, None, None, "s2", None]})
    data = FundData(persons=pd.DataFrame(), policies=pd.DataFrame(), settlements=st,
                    lines=pd.DataFrame())
    product = load_product(product_path("huhuibao-2025"))
    args = (product, data, frame, cells, np.array([3.0, 1.0]), ("band",), 1000, 0.2)
    matched = class_c_budget_impact(*args)
    given = class_c_budget_impact(*args, cur_cell=np.array([0, 1, 0, 1]))
    pd.testing.assert_frame_equal(matched["drugs"], given["drugs"])
    row = given["drugs"].set_index("code").loc["C2025-01"]
    assert row["expected_users"] == pytest.approx(3.0 * 0.2)      # one drug for E75.2
    with pytest.raises(ValueError, match="cur_cell"):
        class_c_budget_impact(*args, cur_cell=np.array([0, 1]))


def test_a_what_if_reprices_an_external_assumption_under_its_new_terms(priced):
    # CAR-T has no event in the sample: priced on its external assumption alone (Z = 0),
    # whose payout per case min(1.2m x 0.7, limit) falls with the limit
    assert priced.figures["external_assumptions"]["benefits"]["cart"]["Z"] == 0
    t = reprice(priced.state, "cart", limit=250_000).set_index("benefit")
    # every cell pays the limit at 250,000 (0.3 x 1.2m = 360,000 > 250,000 too); at
    # 500,000 the non-pre-existing cells pay 500,000 and the pre-existing 360,000
    assert 0.5 * t.loc["cart", "pure_before"] < t.loc["cart", "pure_after"] < t.loc["cart", "pure_before"]
    assert t.loc["hospital", "pure_after"] == pytest.approx(t.loc["hospital", "pure_before"])
