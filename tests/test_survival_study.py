"""Persistency, time to first admission and `puhui survival`.

Reference values: hand-worked spells; simulated data with known lapse probabilities
and known admission hazards (exponential, proportional by age group), which the
Wilson intervals and the Cox fit (lifelines) must recover; lifelines' Kaplan-Meier as
the observed side of the calibration."""

import json

import numpy as np
import pandas as pd
import pytest

from puhui.survival import admission as adm
from puhui.survival import persistency as pst


def test_spells_count_years_enrolled_and_censor_at_death_or_the_data_end():
    # a: 2021-2023 then lapses (not in 2024); b: 2021-2024, still enrolled at the end;
    # c: 2022, dies in 2022; d: 2021 only, lapses
    rows = [("a", y) for y in (2021, 2022, 2023)] + [("b", y) for y in (2021, 2022, 2023, 2024)] \
        + [("c", 2022), ("d", 2021)]
    pol = pd.DataFrame({"psn_no": [r[0] for r in rows], "preexisting": False,
                        "start_date": pd.to_datetime([f"{r[1]}-01-01" for r in rows])})
    per = pd.DataFrame({"psn_no": list("abcd"), "birth_year": 1950, "gender": "1",
                        "insutype": "390",
                        "death_date": pd.to_datetime([None, None, "2022-06-01", None])})
    sp = pst.spells(pst.policy_years(pol, per)).set_index("psn_no")
    assert sp.loc["a", "years"] == 3 and sp.loc["a", "lapsed"]
    assert sp.loc["b", "years"] == 4 and not sp.loc["b", "lapsed"]
    assert sp.loc["c", "years"] == 1 and not sp.loc["c", "lapsed"]
    assert sp.loc["d", "years"] == 1 and sp.loc["d", "lapsed"]
    km = pst.persistency_curve(sp.reset_index())
    # lapses at 1 year (d: 1 of 4 at risk) and 3 years (a: 1 of 2 at risk, c censored at 1)
    assert km.survival_function_at_times([1, 3]).round(4).tolist() == [0.75, 0.375]


def test_lapse_rates_recover_known_probabilities():
    rng = np.random.default_rng(4)
    n = 40_000
    pre = rng.random(n) < 0.3
    lapse = rng.random(n) < np.where(pre, 0.1, 0.4)
    ids = [f"P{i}" for i in range(n)]
    pol = pd.DataFrame({"psn_no": ids + [i for i, lp in zip(ids, lapse) if not lp],
                        "preexisting": list(pre) + [p for p, lp in zip(pre, lapse) if not lp],
                        "start_date": pd.to_datetime(["2024-01-01"] * n
                                                     + ["2025-01-01"] * int((~lapse).sum()))})
    per = pd.DataFrame({"psn_no": ids, "birth_year": 1960, "gender": "2", "insutype": "310",
                        "death_date": pd.NaT})
    r = pst.lapse_rates(pst.policy_years(pol, per), "preexisting").set_index("level")
    for level, p in (("0", 0.4), ("1", 0.1)):
        assert r.loc[level, "lower"] < p < r.loc[level, "upper"]
    cox = pst.fit_lapse_cox(pst.spells(pst.policy_years(pol, per)))
    assert cox.hazard_ratios_["preexisting"] < 0.4


def _admissions(n=30_000, seed=2):
    """Exponential time to first admission, rate 0.1 a year at ages 0-60, x2.5 at
    61-80, x4 at 81+, men x1.2; followed two years (2024-2025)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 95, n)
    male = rng.random(n) < 0.5
    rate = 0.1 * np.where(age >= 81, 4.0, np.where(age >= 61, 2.5, 1.0)) * np.where(male, 1.2, 1.0)
    t = rng.exponential(1 / rate)
    ids = [f"P{i:05d}" for i in range(n)]
    per = pd.DataFrame({"psn_no": ids, "birth_year": 2024 - age,
                        "gender": np.where(male, "1", "2"), "insutype": "390",
                        "low_income": False, "death_date": pd.NaT})
    on = t < 2.0
    st = pd.DataFrame({"setl_id": [f"S{i}" for i in range(int(on.sum()))],
                       "psn_no": np.asarray(ids)[on], "med_type": "21",
                       "setl_time": pd.Timestamp("2024-01-01")
                       + pd.to_timedelta(np.floor(t[on] * 365.25), "D"),
                       "refund_of": None})
    return per, st


def test_cox_of_first_admission_recovers_known_hazard_ratios_and_is_calibrated():
    per, st = _admissions()
    fa = adm.first_admissions(per, st, [2024, 2025])
    cox = adm.fit_admission_cox(fa)
    hr, se = cox.hazard_ratios_, cox.standard_errors_
    # age_61_70 and age_71_80 both carry x2.5; 81+ x4; men x1.2
    for c, want in (("age_61_70", 2.5), ("age_71_80", 2.5), ("age_81", 4.0), ("male", 1.2)):
        assert abs(np.log(hr[c]) - np.log(want)) < 3 * se[c], c
    ph = adm.hazard_ratio_by_window(fa, "age_81", [(0, 1), (1, 2)])
    assert (ph["lower_95"] < 4.0).all() and (ph["upper_95"] > 4.0).all()
    cal = adm.calibration(cox, fa)
    assert np.abs(cal["predicted"] - cal["observed"]).max() < 0.02


def test_puhui_survival_writes_its_report_and_refuses_bad_data(small_city_dir, city_copy, tmp_path):
    from conftest import puhui          # in this process: what the command writes and says

    r = puhui("survival", small_city_dir, "--out", tmp_path / "s")
    assert r.returncode == 0, r.stderr
    f = json.loads((tmp_path / "s" / "survival.json").read_text(encoding="utf-8"))
    assert {"mortality", "persistency", "first_admission"} <= set(f)
    assert "cumulative_hazard_from_60" in f["mortality"]
    assert "calibration" in f["first_admission"] and "calibration" in f["persistency"]
    html = (tmp_path / "s" / "report.html").read_text(encoding="utf-8")
    for part in ("Mortality against CL", "Persistency", "first hospital admission",
                 "proportional hazards", "calibration"):
        assert part in html
    (city_copy / "persons.parquet").write_bytes(b"not parquet")
    r = puhui("survival", city_copy, "--out", tmp_path / "bad")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_nelson_aalen_with_late_entry_by_hand():
    """Lives (entry, exit, died): (60, 61, yes), (60, 63, no), (61.5, 62, yes),
    (60, 65, no). At 61 three are at risk (one dies): 1/3; at 62 three again (the
    late entrant has come in): + 1/3."""
    from puhui.survival.lifetime import nelson_aalen

    lt = pd.DataFrame({"entry": [60, 60, 61.5, 60], "exit": [61, 63, 62, 65],
                       "died": [True, False, True, False]})
    h = nelson_aalen(lt).cumulative_hazard_at_times([61, 62, 64]).to_numpy()
    assert h == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_the_window_check_counts_time_from_the_window_start_as_an_entry_would():
    # the same fit with lifelines' entry time (everyone entering at the window's start)
    from lifelines import CoxPHFitter

    per, st = _admissions(n=4000, seed=8)
    fa = adm.first_admissions(per, st, [2024, 2025])
    got = adm.hazard_ratio_by_window(fa, "age_81", [(0.5, 1.5)])
    w = fa[fa["time"] > 0.5]
    d = pd.concat([pd.DataFrame({"entry": 0.5, "exit": np.minimum(w["time"], 1.5),
                                 "event": w["admitted"] & (w["time"] <= 1.5)}),
                   w[["age_61_70", "age_71_80", "age_81", "male"]]], axis=1)
    ref = CoxPHFitter().fit(d, duration_col="exit", event_col="event", entry_col="entry")
    assert got["hazard_ratio"].iloc[0] == pytest.approx(ref.hazard_ratios_["age_81"], rel=1e-6)
