"""``puhui.Survival`` (issue 21, point 1): the survival fits of ``puhui survival`` as an
estimator. The command is the truth: on the same data and seed, the estimator's JSON is
survival.json's text and its tables are survival.json's records; the A/E deaths are
counted again here from the persons' death dates by a plain loop."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import puhui
from puhui.errors import InputError
from tests.conftest import puhui as run_puhui


@pytest.fixture(scope="module")
def command_survival(small_city_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("survival")
    r = run_puhui("survival", small_city_dir, "--out", out, "--max-people", "400",
                  "--seed", "3")
    assert r.returncode == 0, r.stderr
    return out


def test_survival_gives_the_figures_of_puhui_survival(small_city_dir, command_survival,
                                                       tmp_path):
    fund = puhui.read_fund(small_city_dir)
    fit = puhui.Survival(max_people=400, seed=3)
    assert fit.fit(fund) is fit
    text = (command_survival / "survival.json").read_text(encoding="utf-8")
    assert fit.to_json() + "\n" == text
    f = json.loads(text)
    assert fit.years_ == tuple(f["years"])
    ae = pd.DataFrame(f["mortality"]["actual_to_expected"])
    assert fit.actual_to_expected_["deaths"].tolist() == ae["deaths"].tolist()
    assert fit.actual_to_expected_["expected"].round(6).tolist() == ae["expected"].tolist()
    assert fit.gompertz_["b"].round(6).tolist() == [r["b"] for r in f["mortality"]["gompertz_glm"]]
    # the deaths within the data years, counted by a plain loop over the persons
    first, last = f["years"]
    deaths = sum(1 for d in fund.persons["death_date"] if pd.notna(d) and first <= d.year <= last)
    assert deaths == f["mortality"]["deaths"] == fit.figures_["mortality"]["deaths"] > 0
    # (the A/E leaves out ages outside its bands and bands under 10 person-years)
    assert 0 < int(fit.actual_to_expected_["deaths"].sum()) <= deaths
    html = fit.report(tmp_path / "s.html").read_text(encoding="utf-8")
    assert "<html" in html and f"{f['mortality']['deaths']:,}" in html


def test_a_folder_is_fitted_where_it_is(small_city_dir, command_survival):
    fit = puhui.Survival(max_people=400, seed=3).fit(small_city_dir)
    text = (command_survival / "survival.json").read_text(encoding="utf-8")
    assert fit.to_json() + "\n" == text


def test_an_unfitted_survival_says_so():
    with pytest.raises(InputError, match="not fitted"):
        puhui.Survival().to_json()
    with pytest.raises(InputError, match="Survival.fit: give a Fund"):
        puhui.Survival().fit(3)
