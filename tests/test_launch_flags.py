"""A launch year's pre-existing flag for the non-enrolled (issue 18, session 22):
the prevalent share pi of the diagnosed non-enrolled, and the fractional rows that
split them between the flags (puhui.pricing.launch_flags)."""

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.benefit_cost import BenefitCostModel
from puhui.pricing.launch_flags import (
    FlagSplit,
    extended_cells,
    launch_mode,
    launch_split,
    prevalent_share,
)


def _population(rng, n_enrolled, n_non, prevalence, incidence):
    """A launch year built by hand: the enrolled are all of flag 0 with the given
    incidence in the year; of the non-enrolled a share ``prevalence`` had the diagnosis
    before the year (prevalent, all diagnosed by its end) and the others the same
    incidence. Returns (enrolled, flag, diagnosed, prevalent)."""
    enrolled = np.r_[np.ones(n_enrolled, bool), np.zeros(n_non, bool)]
    prevalent = np.r_[np.zeros(n_enrolled, bool), rng.random(n_non) < prevalence]
    incident = ~prevalent & (rng.random(len(enrolled)) < incidence)
    return enrolled, np.zeros(len(enrolled), bool), prevalent | incident, prevalent


@pytest.mark.parametrize("prevalence, incidence", [(0.03, 0.012), (0.01, 0.02), (0.0, 0.015)])
def test_pi_recovers_the_prevalent_share_built_in(prevalence, incidence):
    """pi against the prevalent share of the diagnosed non-enrolled as built (known by
    construction: the people flagged prevalent), within four sampling sds (delta
    method on the two binomial shares)."""
    rng = np.random.default_rng(18)
    n_e, n_n = 100_000, 200_000
    enrolled, flag, diagnosed, prevalent = _population(rng, n_e, n_n, prevalence, incidence)
    f = prevalent_share(enrolled, flag, diagnosed)
    truth = prevalent[~enrolled].sum() / diagnosed[~enrolled].sum()
    inc, share = f["incidence"], f["diagnosed_share"]
    # d pi / d inc and d pi / d share of pi = (1 - inc / share) / (1 - inc)
    d_inc = (-1 / share * (1 - inc) + (1 - inc / share)) / (1 - inc) ** 2
    d_share = inc / share ** 2 / (1 - inc)
    sd = np.sqrt(d_inc ** 2 * inc * (1 - inc) / n_e + d_share ** 2 * share * (1 - share) / n_n)
    assert abs(f["pi"] - truth) < 4 * sd + 1e-6, (f["pi"], truth, sd)
    if prevalence == 0.0:
        assert f["pi"] < 4 * sd + 1e-6          # (clipped at 0 when the noise goes below)
    # the inputs are the counts of the arrays as built
    assert f["enrolled_flag0_person_years"] == n_e
    assert f["enrolled_flag0_diagnosed"] == int(diagnosed[:n_e].sum())
    assert f["nonenrolled_person_years"] == n_n
    assert f["nonenrolled_diagnosed"] == int(diagnosed[n_e:].sum())


def test_pi_is_clipped_and_undefined_without_its_inputs():
    # the enrolled's incidence above the non-enrolled's diagnosed share: 0, not negative
    assert prevalent_share([1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0])["pi"] is None
    assert prevalent_share([1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0])["pi"] == 0.0
    # no enrolled of flag 0: no incidence to measure
    assert prevalent_share([1, 0, 0], [1, 0, 0], [1, 1, 0])["pi"] is None
    # no one diagnosed among the enrolled: every diagnosis of the others is prevalent
    assert prevalent_share([1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0])["pi"] == 1.0


def _frame(rng, n=4000):
    """A hand-built person-year frame (numpy): age band, flag, enrolment, diagnosis,
    exposure, and events per row."""
    age = rng.choice(["0-40", "41-60", "61+"], n)
    enrolled = rng.random(n) < 0.4
    diagnosed = rng.random(n) < 0.08
    flag = (enrolled & diagnosed & (rng.random(n) < 0.7)).astype("int8")
    exposure = np.where(rng.random(n) < 0.05, rng.uniform(0.1, 1.0, n), 1.0)
    rate = 0.3 * np.exp(0.5 * (age == "41-60") + 0.9 * (age == "61+") + 1.2 * diagnosed)
    counts = rng.poisson(rate * exposure)
    frame = pd.DataFrame({"year": 2024, "age_band": age, "preexisting": flag,
                          "enrolled": enrolled, "preexisting_next": diagnosed,
                          "exposure": exposure})
    rows = np.repeat(np.arange(n), counts)
    mean = 1000 * np.exp(0.3 * (age[rows] == "61+") + 0.4 * diagnosed[rows])
    events = pd.DataFrame({"row": rows, "amount": rng.gamma(2.0, mean / 2.0),
                           "inpatient": True})
    return frame, events


def test_split_keeps_exposure_and_counts_and_moves_only_the_diagnosed_non_enrolled():
    rng = np.random.default_rng(5)
    frame, events = _frame(rng)
    split, fig = launch_split(frame, [2024], "flag_1")
    assert fig["split"] and 0 < split.pi < 1
    non_diag = (~frame["enrolled"] & frame["preexisting_next"]).to_numpy()
    assert split.rows.tolist() == np.flatnonzero(non_diag).tolist()
    assert fig["split_person_years"] == int(non_diag.sum())
    cells, code, _ = extended_cells(frame, ["age_band", "preexisting"], split)
    # exposure: by age band (the flags added together) and in all, as the frame's
    by_age = cells.groupby("age_band")["exposure"].sum()
    plain = frame.groupby("age_band")["exposure"].sum()
    assert np.allclose(by_age.sort_index().to_numpy(), plain.sort_index().to_numpy(),
                       rtol=0, atol=1e-9)
    assert cells["person_years"].sum() == pytest.approx(len(frame), abs=1e-9)
    # flag 1 gets pi of the split rows' exposure on top of the enrolled flag 1's
    on1 = cells["preexisting"] == 1
    enrolled1 = frame["exposure"][frame["preexisting"] == 1].sum()
    moved = frame["exposure"].to_numpy()[split.rows].sum()
    assert cells.loc[on1, "exposure"].sum() == pytest.approx(enrolled1 + split.pi * moved)
    # events: each split row's event twice, weights adding to one
    ext, w, at = split.events(events["row"].to_numpy(), len(frame))
    assert w.sum() == pytest.approx(len(events))
    assert np.allclose(np.bincount(at, weights=w, minlength=len(events)), 1.0)
    assert (code[ext[w == split.pi]] != code[events["row"].to_numpy()[at[w == split.pi]]]).all()


def test_split_fit_is_the_weighted_glm_on_duplicated_person_years():
    """The cost model's split fit (cell sums) against statsmodels' GLMs on the person-years
    and events themselves, each split one duplicated at flag 1 with freq_weights pi and
    1 - pi: the same coefficients (the Poisson and gamma fits' sufficient statistics)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(7)
    frame, events = _frame(rng)
    split, _ = launch_split(frame, [2024], "flag_1")
    factors = ("age_band", "preexisting")
    model = BenefitCostModel(factors=factors)
    model.fit(frame, events, cells=extended_cells(frame, factors, split))
    kind = model.kinds_[0]
    # the duplicated person-years with their weights, built apart
    n = np.bincount(events["row"], minlength=len(frame))
    copy = frame.iloc[split.rows].assign(preexisting=1)
    rows = pd.concat([frame, copy], ignore_index=True).assign(n=np.r_[n, n[split.rows]])
    w = np.ones(len(rows))
    w[split.rows] = 1 - split.pi
    w[len(frame):] = split.pi
    freq = smf.glm("n ~ C(age_band) + C(preexisting)", data=rows, family=sm.families.Poisson(),
                   offset=np.log(rows["exposure"]), freq_weights=w).fit()
    assert np.allclose(kind.frequency.params_.to_numpy(), freq.params.to_numpy(), atol=1e-7)
    ev = events.merge(frame[list(factors)], left_on="row", right_index=True)
    dup = ev[ev["row"].isin(split.rows)].assign(preexisting=1)
    evw = np.where(ev["row"].isin(split.rows), 1 - split.pi, 1.0)
    both = pd.concat([ev, dup], ignore_index=True)
    sev = smf.glm("amount ~ C(age_band) + C(preexisting)", data=both,
                  family=sm.families.Gamma(sm.families.links.Log()),
                  freq_weights=np.r_[evw, np.full(len(dup), split.pi)]).fit()
    assert np.allclose(kind.severity.params_.to_numpy(), sev.params.to_numpy(), atol=1e-6)


def test_left_out_drops_the_prevalent_share_only():
    rng = np.random.default_rng(9)
    frame, _ = _frame(rng)
    split, fig = launch_split(frame, [2024], "left_out")
    assert fig["prevalent"] == "left_out" and not split.keep_prevalent
    cells, _, _ = extended_cells(frame, ["age_band", "preexisting"], split)
    moved = frame["exposure"].to_numpy()[split.rows].sum()
    assert cells["exposure"].sum() == pytest.approx(frame["exposure"].sum() - split.pi * moved)
    enrolled1 = frame["exposure"][frame["preexisting"] == 1].sum()
    assert cells.loc[cells["preexisting"] == 1, "exposure"].sum() == pytest.approx(enrolled1)


def test_no_split_with_a_look_back_or_without_the_non_enrolled():
    rng = np.random.default_rng(3)
    frame, _ = _frame(rng)
    two = pd.concat([frame, frame.assign(year=2025)], ignore_index=True)
    assert launch_split(two, [2025], "flag_1") == (None, None)       # a renewal-year fit
    assert launch_split(frame.assign(enrolled=True), [2024], "flag_1") == (None, None)
    split, fig = launch_split(frame, [2024], "flag_0")              # reported, not split
    assert split is None and fig["split"] is False and fig["pi"] is not None


def test_launch_mode_refuses_what_it_does_not_know():
    from puhui.errors import InputError

    assert launch_mode({}, "x") == "flag_0"
    assert launch_mode({"prevalent": "left_out"}, "x") == "left_out"
    with pytest.raises(InputError, match="prevalent = 'half'"):
        launch_mode({"prevalent": "half"}, "pricing.toml")
    with pytest.raises(InputError, match="no key 'pi'"):
        launch_mode({"pi": 0.5}, "pricing.toml")
    assert launch_mode({"prevalent": "cohort", "cohort_log_sd": 0.5}, "x") == "cohort"
    for bad in (0, -1.0, True, "1", float("nan"), 11):
        with pytest.raises(InputError, match="cohort_log_sd"):
            launch_mode({"prevalent": "cohort", "cohort_log_sd": bad}, "pricing.toml")


def test_counts_equal_plain_pandas_on_the_parquet_files(small_city_dir):
    """pricing.json's launch-year inputs on the small city's first year alone, against
    counts made with pandas from persons, policies and settlements.parquet."""
    from puhui.pricing.backtest import data_before
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import BuildUp, _step_experience, load_assumptions
    from puhui.products.model import load_product, product_path

    product = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    data = load_for_pricing(small_city_dir, product, a)
    pol = pd.read_parquet(small_city_dir / "policies.parquet")
    year = int(pol["start_date"].dt.year.min())
    s = BuildUp(product, data_before(data, year + 1), a, 0)
    _step_experience(s)
    fig = s.flag_split_fig
    assert fig is not None and fig["year"] == year
    # plain pandas: people alive on 1 January, their policy of the year, a listed
    # diagnosis on a settlement of the year that stands (not a reversal, not reversed)
    persons = pd.read_parquet(small_city_dir / "persons.parquet")
    alive = persons[persons["death_date"].isna()
                    | (persons["death_date"] >= pd.Timestamp(f"{year}-01-01"))]
    pol_y = pol[pol["start_date"].dt.year == year]
    flag = pol_y.groupby("psn_no")["preexisting"].max()
    st = pd.read_parquet(small_city_dir / "settlements.parquet")
    st = st[st["setl_time"].dt.year == year]
    if "refund_of" in st.columns:
        st = st[st["refund_of"].isna() & ~st["setl_id"].isin(set(st["refund_of"].dropna()))]
    codes = tuple(product.preexisting_codes)
    sick = set(st.loc[st["dise_code"].fillna("").str.startswith(codes), "psn_no"])
    ids = alive["psn_no"]
    enrolled = ids.isin(flag.index)
    flag0 = enrolled & ~ids.isin(set(flag.index[flag.astype(bool)]))
    diagnosed = ids.isin(sick)
    assert fig["enrolled_flag0_person_years"] == int(flag0.sum())
    assert fig["enrolled_flag0_diagnosed"] == int((flag0 & diagnosed).sum())
    assert fig["nonenrolled_person_years"] == int((~enrolled).sum())
    assert fig["nonenrolled_diagnosed"] == int((~enrolled & diagnosed).sum())
    assert fig["nonenrolled_diagnosed"] > 0 and fig["enrolled_flag0_person_years"] > 0
    # "cohort": the factor is 1 exactly for the people with a policy of the year
    c = BuildUp(product, data_before(data, year + 1),
                {**a, "launch_year": {"prevalent": "cohort"}}, 0)
    _step_experience(c)
    assert int(c.frame["launch_cohort"].sum()) == int(enrolled.sum())
    assert int((c.frame["launch_cohort"] == 0).sum()) == int((~enrolled).sum())


def test_every_note_has_its_chinese():
    """Each of the notes (pi not estimable, reported only, split at flag 1, left out)
    through the report's zh patterns: Chinese, no English sentence left."""
    from test_reports import english_runs

    from puhui.pricing.launch_flags import split_note
    from puhui.reporting.notes import translate_note

    frame = pd.DataFrame({"year": 2024, "enrolled": [1, 1, 1, 0, 0, 0],
                          "preexisting": np.array([0, 0, 1, 0, 0, 0], dtype="int8"),
                          "preexisting_next": [1, 0, 1, 1, 0, 1]})
    figs = [launch_split(frame, [2024], m)[1] for m in ("flag_0", "flag_1", "left_out",
                                                        "cohort")]
    figs.append({**figs[1], "pi": None})
    figs.append({**figs[3], "pi": None})
    assert figs[0]["pi"] == 0.5          # (1 - 0.5 / (2 / 3)) / (1 - 0.5)
    for fig in figs:
        zh = translate_note(split_note(fig), "zh", lambda s: s)
        assert "年之前没有可回溯的数据" in zh, zh
        assert english_runs(f"<html><body><p>{zh}</p></body></html>") == [], zh


@pytest.mark.parametrize("mode", ["flag_1", "cohort"])
def test_a_renewal_fit_is_the_same_under_every_mode_and_a_launch_fit_is_not(
        small_city_dir, small_city_figures, mode):
    """The small city's two years (the first look-back only): the price with the split
    asked for equals the shipped one (test_execution's reference figures, seed 3), figure
    for figure; its first year alone, the split moves the cost models and says so."""
    from puhui.pricing.backtest import data_before
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions, price
    from puhui.products.model import load_product, product_path

    product = load_product(product_path("huhuibao-2025"))
    a = load_assumptions()[0]
    split_a = {**a, "launch_year": {"prevalent": mode}}
    data = load_for_pricing(small_city_dir, product, a)
    assert price(product, data, split_a, seed=3).figures == small_city_figures
    assert "launch_year_flags" not in small_city_figures
    first = int(pd.read_parquet(small_city_dir / "policies.parquet")["start_date"].dt.year.min())
    shipped = price(product, data_before(data, first + 1), a, seed=3).figures
    split = price(product, data_before(data, first + 1), split_a, seed=3).figures
    assert shipped["launch_year_flags"]["split"] is False
    assert split["launch_year_flags"]["split"] is (mode == "flag_1")
    if mode == "cohort":        # the cohort's figures per group and kind, each part's Z
        parts = [p for kinds in split["launch_year_flags"]["cohort"].values()
                 for k in kinds.values() if k for p in k.values()]
        assert parts and all(0 <= p["Z"] <= 1 for p in parts)
    same = ("pi", "incidence", "diagnosed_share", "enrolled_flag0_person_years",
            "nonenrolled_diagnosed", "split_person_years")
    assert [split["launch_year_flags"][k] for k in same] == \
        [shipped["launch_year_flags"][k] for k in same]
    assert split["pure_premium"] != shipped["pure_premium"]
