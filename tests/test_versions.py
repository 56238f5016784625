"""Versions of one product priced jointly (puhui.pricing.versions, `puhui price` with
repeated --product): the choice model and the joint fixed point by hand, a priced run
on the sample with some policies relabelled as other versions, and bad inputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puhui.pricing.versions import (
    VersionChoice,
    joint_equilibrium,
    status_quo_odds,
    version_costs,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data-samples" / "city"
PUHUI = [sys.executable, "-m", "puhui"]
STANDARD, COMMUNITY, NEWCITIZEN = ("huhuibao-2025", "huhuibao-2025-community",
                                   "huhuibao-2025-newcitizen")


def run(*args):
    """In this process (what the command does, writes and says); a child process only
    where the process itself is the point (a crash, below)."""
    from conftest import puhui

    return puhui(*args)


def run_in_a_child_process(*args):
    return subprocess.run([*PUHUI, *args], capture_output=True, text=True)


# --- by hand: two versions, two cells ------------------------------------------------------

def test_choice_shares_by_hand():
    # cell A: 300 healthy people, beta -1, odds 1 and 1; cell B: 100 others, beta 0
    # (they do not answer the price), odds 1 and 2; both versions referenced at 100.
    ch = VersionChoice(np.array([300.0, 100.0]), np.array([[1.0, 1.0], [1.0, 2.0]]),
                       np.array([-1.0, 0.0]), np.array([100.0, 100.0]))
    # at P = (100, 200): cell A's terms 1 x (100/100)^-1 = 1 and 1 x (200/100)^-1 = 0.5,
    # shares 1/2.5 = 0.4 and 0.5/2.5 = 0.2 (0.4 choose none); cell B: 1/4 and 2/4
    np.testing.assert_allclose(ch.shares([100, 200]), [[0.4, 0.25], [0.2, 0.5]], rtol=1e-12)
    np.testing.assert_allclose(ch.mix([100, 200]), [[120, 25], [60, 50]], rtol=1e-12)
    # the dearer version 2 loses the price-sensitive healthy to version 1 and to none
    at_equal = ch.shares([100, 100])
    np.testing.assert_allclose(at_equal[:, 0], [1 / 3, 1 / 3], rtol=1e-12)


def test_joint_fixed_point_by_hand():
    # Costs chosen by hand so that (100, 200) breaks even for both at target 1:
    # version 1: (120 x 50 + 25 x c) / 145 = 100  ->  c = (14,500 - 6,000) / 25 = 340
    # version 2: (60 x 100 + 50 x c) / 110 = 200  ->  c = (22,000 - 6,000) / 50 = 320
    ch = VersionChoice(np.array([300.0, 100.0]), np.array([[1.0, 1.0], [1.0, 2.0]]),
                       np.array([-1.0, 0.0]), np.array([100.0, 100.0]))
    cost = np.array([[50.0, 340.0], [100.0, 320.0]])
    np.testing.assert_allclose(version_costs(ch.mix([100, 200]), cost), [100, 200])
    eq = joint_equilibrium(ch, cost, target=1.0)
    assert eq.converged
    np.testing.assert_allclose(eq.prices, [100.0, 200.0], rtol=1e-7)
    np.testing.assert_allclose(eq.mix, [[120, 25], [60, 50]], rtol=1e-6)
    # at target 0.8 every premium is the cost over 0.8: no longer (100, 200)
    eq8 = joint_equilibrium(ch, cost, target=0.8)
    assert eq8.converged
    m = ch.mix(eq8.prices)
    np.testing.assert_allclose(eq8.prices, version_costs(m, cost) / 0.8, rtol=1e-7)
    assert (eq8.prices > [100, 200]).all()


def test_one_version_is_the_single_products_fixed_point():
    # one version, the docstring case of enrolment.equilibrium_premium as a logit: 100
    # healthy (cost 50, beta -2, odds 1 at 100) and 10 others (cost 500, beta 0, odds
    # huge: always in). Healthy in at P: 100 / (1 + (P/100)^2); P = 200 breaks even.
    ch = VersionChoice(np.array([100.0, 10.0]), np.array([[1.0, 1e12]]),
                       np.array([-2.0, 0.0]), np.array([100.0]))
    eq = joint_equilibrium(ch, np.array([[50.0, 500.0]]), 1.0)
    assert eq.converged and eq.prices[0] == pytest.approx(200.0, rel=1e-6)


def test_status_quo_odds_by_hand():
    # two cells, both versions open to both (one eligibility group); take-up 1/2 and 1/5
    q = np.array([0.5, 0.2])
    counts = np.array([[6.0, 1.0], [2.0, 3.0]])
    elig = np.ones((2, 2), dtype=bool)
    odds, notes = status_quo_odds(q, counts, elig, np.array([0, 0]), prior=5.0)
    # group split 7/12 and 5/12; cell 1: (6 + 5 x 7/12) / 13, (2 + 5 x 5/12) / 13;
    # cell 2: (1 + 35/12) / 9, (3 + 25/12) / 9; odds = q / (1 - q) x split
    s1 = np.array([6 + 35 / 12, 2 + 25 / 12]) / 13
    s2 = np.array([1 + 35 / 12, 3 + 25 / 12]) / 9
    np.testing.assert_allclose(odds[:, 0], 1.0 * s1, rtol=1e-12)
    np.testing.assert_allclose(odds[:, 1], 0.25 * s2, rtol=1e-12)
    assert notes == []
    # at the reference premiums the cells' take-up is the line's
    ch = VersionChoice(np.array([10.0, 10.0]), odds, np.array([-1.0, -1.0]),
                       np.array([129.0, 99.0]))
    np.testing.assert_allclose(ch.shares([129.0, 99.0]).sum(axis=0), q, rtol=1e-12)
    # without the prior the split is each cell's own
    odds0, _ = status_quo_odds(q, counts, elig, np.array([0, 0]), prior=0.0)
    np.testing.assert_allclose(odds0[:, 0], [0.75, 0.25], rtol=1e-12)
    np.testing.assert_allclose(odds0[:, 1], 0.25 * np.array([0.25, 0.75]), rtol=1e-12)


def test_a_version_nobody_holds_and_one_closed_to_a_cell():
    q = np.array([0.5, 0.5])
    counts = np.array([[4.0, 4.0], [0.0, 0.0]])        # version 2: no policy anywhere
    elig = np.array([[True, True], [True, False]])     # version 2 closed to cell 2
    odds, notes = status_quo_odds(q, counts, elig, np.array([0, 1]), prior=5.0)
    # version 2 takes version 1's odds where open, none where closed
    np.testing.assert_allclose(odds[:, 0], [1.0, 1.0])
    np.testing.assert_allclose(odds[:, 1], [1.0, 0.0])
    assert len(notes) == 1 and "no policy" in notes[0]


# --- a priced run: the sample with some 2025 policies relabelled as the other versions ----

def versions_city(dst: Path, persons: int = 3000, seed: int = 5) -> Path:
    """The sample's first ``persons`` people with their policies, settlements and lines,
    two eligibility columns (``community_mutual_aid`` for about 30 %, ``new_citizen``
    for about 25 % of the employee scheme's people), and about half of the 2025
    policies of each column's holders relabelled as that version at its filed premium
    (community first; a person is never relabelled twice)."""
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    read = lambda name: pd.read_parquet(SAMPLE / name, engine="fastparquet")  # noqa: E731
    pe = read("persons.parquet").sort_values("psn_no").head(persons).reset_index(drop=True)
    keep = set(pe["psn_no"])
    pe["community_mutual_aid"] = rng.random(len(pe)) < 0.30
    pe["new_citizen"] = (pe["insutype"].astype(str) == "310").to_numpy() & (
        rng.random(len(pe)) < 0.25)
    po = read("policies.parquet")
    po = po[po["psn_no"].isin(keep)].reset_index(drop=True)
    st = read("settlements.parquet")
    st = st[st["psn_no"].isin(keep)].reset_index(drop=True)
    li = read("settlement_lines.parquet")
    li = li[li["setl_id"].isin(set(st["setl_id"]))].reset_index(drop=True)
    is25 = (po["product_id"] == STANDARD).to_numpy()
    moved = np.zeros(len(po), dtype=bool)
    for col, pid, premium in (("community_mutual_aid", COMMUNITY, 99.0),
                              ("new_citizen", NEWCITIZEN, 109.0)):
        holders = set(pe.loc[pe[col], "psn_no"])
        pick = is25 & ~moved & po["psn_no"].isin(holders).to_numpy() & (rng.random(len(po)) < 0.5)
        po.loc[pick, "product_id"] = pid
        po.loc[pick, "premium"] = premium
        moved |= pick
    for name, df in (("persons", pe), ("policies", po), ("settlements", st),
                     ("settlement_lines", li)):
        df.to_parquet(dst / f"{name}.parquet", engine="fastparquet", index=False)
    return dst


def test_a_dearer_version_keeps_the_less_price_sensitive():
    # one cell of healthy people (beta -2) and one of others (beta -0.5), both open to
    # both versions at the same odds: as version 1's price rises with version 2's held,
    # the share of the healthy among version 1's policies falls (anti-selection)
    ch = VersionChoice(np.array([100.0, 100.0]), np.ones((2, 2)), np.array([-2.0, -0.5]),
                       np.array([100.0, 100.0]))
    healthy_share = []
    for p1 in (80.0, 100.0, 150.0, 250.0):
        m = ch.mix([p1, 100.0])
        healthy_share.append(m[0, 0] / m[0].sum())
    assert all(a > b for a, b in zip(healthy_share, healthy_share[1:]))


def fast_assumptions(dst: Path) -> Path:
    """The shipped assumptions with fewer interval draws and no cross-validation (the
    GBM challenger is the slow part and is not what these tests check)."""
    from puhui.basis import actuarial_dir

    text = (actuarial_dir() / "assumptions" / "pricing.toml").read_text(encoding="utf-8")
    text = text.replace("\nsimulations = 20000", "\nsimulations = 2000")
    text = text.replace("\nmin_events = 1000\n", "\nmin_events = 1000000000\n")
    assert "simulations = 2000" in text and "min_events = 1000000000" in text
    p = dst / "fast.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    d = tmp_path_factory.mktemp("versions")
    return versions_city(d / "city", persons=800), fast_assumptions(d)


@pytest.fixture(scope="module")
def priced(city, tmp_path_factory):
    data, assumptions = city
    out = tmp_path_factory.mktemp("priced-versions")
    r = run("price", "--product", STANDARD, "--product", COMMUNITY, "--product", NEWCITIZEN,
            "--data", str(data), "--out", str(out), "--assumptions", str(assumptions),
            "--seed", "3", "--lang", "zh")
    assert r.returncode == 0, r.stderr
    return data, out, r


def test_versions_priced_jointly_write_every_versions_contract_files(priced):
    data, out, r = priced
    j = json.loads((out / "versions.json").read_text(encoding="utf-8"))
    assert j["products"] == [STANDARD, COMMUNITY, NEWCITIZEN]
    assert j["equilibrium"]["converged"]
    persons = pd.read_parquet(data / "persons.parquet", engine="fastparquet")
    for v in j["versions"]:
        f = json.loads((out / v["product_id"] / "pricing.json").read_text(encoding="utf-8"))
        for k in ("product_id", "gross_premium", "pure_premium", "expected_loss_ratio",
                  "loss_ratio_interval"):
            assert k in f, (v["product_id"], k)
        assert f["product_id"] == v["product_id"] and f["loss_ratio_interval"]["level"] == 0.9
        assert (out / v["product_id"] / "report.html").is_file()
        # pricing.json is the build-up on this version's mix at the filed premiums
        assert f["pure_premium"]["total"] == pytest.approx(v["at_filed"]["pure_premium"], abs=0.02)
        assert f["policies"] == round(v["at_filed"]["policies"])
        assert f["expected_loss_ratio"] == pytest.approx(v["at_filed"]["loss_ratio"], abs=2e-4)
        # the cells add up to the version
        assert sum(c["at_filed"]["policies"] for c in v["cells"]) == pytest.approx(
            v["at_filed"]["policies"], abs=0.05 * len(v["cells"]) + 0.1)
        # the equilibrium breaks even: loss ratio = target
        e = v["at_equilibrium"]
        assert e["premium"] is not None and e["loss_ratio"] == pytest.approx(0.85, abs=2e-4)
        assert sum(c["at_equilibrium"]["policies"] for c in v["cells"]) == pytest.approx(
            e["policies"], abs=0.05 * len(v["cells"]) + 0.1)
    by = {v["product_id"]: v for v in j["versions"]}
    # eligibility: only the column's holders; the new-citizen version only employees
    assert 0 < by[COMMUNITY]["eligibility"]["eligible_people"] <= int(
        persons["community_mutual_aid"].sum())
    assert 0 < by[NEWCITIZEN]["eligibility"]["eligible_people"] <= int(persons["new_citizen"].sum())
    assert by[STANDARD]["eligibility"]["eligible_people"] == j["people"]
    assert by[NEWCITIZEN]["eligibility"]["insutypes"] == ["310"]
    assert all(c["eligible_people"] > 0 for v in j["versions"] for c in v["cells"])
    # the policies the data hold of each version
    pol = pd.read_parquet(data / "policies.parquet", engine="fastparquet")
    assert by[COMMUNITY]["policies_in_data"] == int((pol["product_id"] == COMMUNITY).sum())
    assert by[COMMUNITY]["reference_premium"] == 99.0
    html = (out / "report.html").read_text(encoding="utf-8")       # (priced with --lang zh)
    assert "联合定价" in html and f"{COMMUNITY}/report.html" in html
    assert "joint equilibrium" in r.stdout and "versions.json" in r.stdout


def test_versions_reproduce(priced, tmp_path):
    import shutil

    _, out, _ = priced
    r = run("reproduce", str(out / "manifest.json"))
    assert r.returncode == 0, r.stderr
    # a changed input is found before any re-run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    m["inputs"]["product_files"][COMMUNITY] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    r = run("reproduce", str(copy / "manifest.json"))
    assert r.returncode == 2 and COMMUNITY in r.stderr and "inputs differ" in r.stderr


# --- bad inputs: exit 2 with a message, never a traceback ---------------------------------

def _bad(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_a_person_with_two_versions_in_a_year_is_refused(city, tmp_path):
    import shutil

    data, assumptions = city
    d = tmp_path / "city"
    shutil.copytree(data, d)
    po = pd.read_parquet(d / "policies.parquet", engine="fastparquet")
    one = po[po["product_id"] == STANDARD].head(2).copy()
    one["product_id"] = COMMUNITY
    one["policy_no"] = one["policy_no"] + "-C"
    pd.concat([po, one], ignore_index=True).to_parquet(d / "policies.parquet",
                                                       engine="fastparquet", index=False)
    r = run("price", "--product", STANDARD, "--product", COMMUNITY, "--data", str(d),
            "--out", str(tmp_path / "o"), "--assumptions", str(assumptions))
    _bad(r, "policies.parquet", "2 person-year(s)", "at most one version",
         str(one["psn_no"].iloc[0]))


def test_a_missing_eligibility_column_is_refused(city, tmp_path):
    import shutil

    data, assumptions = city
    d = tmp_path / "city"
    shutil.copytree(data, d)
    pe = pd.read_parquet(d / "persons.parquet", engine="fastparquet")
    pe.drop(columns=["community_mutual_aid"]).to_parquet(d / "persons.parquet",
                                                         engine="fastparquet", index=False)
    r = run("price", "--product", STANDARD, "--product", COMMUNITY, "--data", str(d),
            "--out", str(tmp_path / "o"), "--assumptions", str(assumptions))
    _bad(r, "persons.parquet", "'community_mutual_aid'", COMMUNITY, "add the column")
    # a column that is not true/false
    pe.assign(community_mutual_aid=np.where(pe["community_mutual_aid"], "yes", "no")).to_parquet(
        d / "persons.parquet", engine="fastparquet", index=False)
    r = run("price", "--product", STANDARD, "--product", COMMUNITY, "--data", str(d),
            "--out", str(tmp_path / "o"), "--assumptions", str(assumptions))
    _bad(r, "'community_mutual_aid'", "true/false")


def test_versions_of_different_years_and_other_misuse_are_refused(city, tmp_path):
    data, assumptions = city
    common = ("--data", str(data), "--out", str(tmp_path / "o"), "--assumptions",
              str(assumptions))
    r = run("price", "--product", "huhuibao-2024", "--product", COMMUNITY, *common)
    _bad(r, COMMUNITY, "policy period", "2024-01-01", "same [policy_period]")
    r = run("price", "--product", STANDARD, "--product", STANDARD, *common)
    _bad(r, "given twice")
    r = run("price", "--product", STANDARD, "--product", COMMUNITY, "--policies", "100",
            *common)
    _bad(r, "--policies")


def test_an_eligibility_column_of_0_1_with_nulls_reads_nulls_as_false(tmp_path):
    """docs/pricing.md: nulls count as false; 0/1 with nulls is read as floats or
    nullable integers, and words true/false are accepted too."""
    from puhui.pricing.versions import eligibility_columns
    from puhui.products.model import load_product, product_path

    p = load_product(product_path(COMMUNITY))
    col = p.raw["eligibility"]["persons_column"]
    pe = pd.DataFrame({"psn_no": ["a", "b", "c", "d"],
                       col: pd.array([1, None, 0, 1], dtype="Int64")})
    engine = "fastparquet"      # the one Parquet engine installed until issue 19
    pe.to_parquet(tmp_path / "persons.parquet", engine=engine, index=False)
    got = eligibility_columns([p], tmp_path)[p.id]
    assert got.to_dict() == {"a": True, "b": False, "c": False, "d": True}
    pe[col] = ["true", None, "FALSE", "True"]
    pe.to_parquet(tmp_path / "persons.parquet", engine=engine, index=False)
    assert eligibility_columns([p], tmp_path)[p.id].tolist() == [True, False, False, True]
    from puhui.pricing.versions import _true_false

    assert _true_false(pd.Series(["true", "false", None], dtype="category"), "c").tolist() == [
        True, False, False]
    assert _true_false(pd.Series(["1", "0", None]), "c").tolist() == [True, False, False]


def test_a_version_priced_alone_says_its_eligibility_column_is_not_read(priced, city, tmp_path):
    data, assumptions = city
    r = run("price", "--product", COMMUNITY, "--data", str(data), "--out", str(tmp_path / "o"),
            "--assumptions", str(assumptions), "--no-backtest")
    assert r.returncode == 0, r.stderr
    f = json.loads((tmp_path / "o" / "pricing.json").read_text(encoding="utf-8"))
    (note,) = [n for n in f["notes"] if "priced alone it is not read" in n]
    assert "'community_mutual_aid'" in note and "--product A --product B" in note
    _, out, _ = priced                        # priced jointly: the column is read, no note
    g = json.loads((out / COMMUNITY / "pricing.json").read_text(encoding="utf-8"))
    assert not [n for n in g["notes"] if "priced alone" in n]


def test_a_versions_realised_cost_is_its_own_buyers(city):
    """The hostile review (session 13): a version's backtest counted every policyholder
    of the year (the standard version's buyers too) as its book. With policies of its
    id in the year, the realised cost is over those alone."""
    from puhui.pricing.backtest import realised_cost
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions
    from puhui.products.model import load_product, product_path

    data, _ = city
    p = load_product(product_path(COMMUNITY))
    real = realised_cost(p, load_for_pricing(data, p, load_assumptions(None)[0]), 2025)
    pol = pd.read_parquet(data / "policies.parquet", engine="fastparquet")
    assert real["policies"] == int((pol["product_id"] == COMMUNITY).sum()) > 0
    assert not real["notes"]
    std = load_product(product_path(STANDARD))
    assert realised_cost(std, load_for_pricing(data, std, load_assumptions(None)[0]),
                         2025)["policies"] == int(((pol["product_id"] == STANDARD)
                                                   & (pol["start_date"].dt.year == 2025)).sum())


def test_a_categorical_boolean_eligibility_column_is_not_a_crash(tmp_path):
    """The hostile review (session 13): persons.parquet written by fastparquet with the
    eligibility column a pandas Categorical of booleans crashed fastparquet's reader
    (SIGSEGV, no message); read with pyarrow it is a clear answer, never a crash."""
    d = tmp_path / "c"
    assert run("synth", "--persons", "1000", "--years", "2", "--seed", "1", "--start-year",
               "2024", "--out", str(d)).returncode == 0
    p = pd.read_parquet(d / "persons.parquet")
    p["community_mutual_aid"] = pd.Categorical(p.index % 2 == 0)
    p.to_parquet(d / "persons.parquet", engine="fastparquet", index=False)
    # in a child process: the crash was a SIGSEGV
    r = run_in_a_child_process("price", "--product", STANDARD, "--product", COMMUNITY,
                               "--data", str(d), "--out", str(tmp_path / "o"), "--no-backtest")
    assert r.returncode in (0, 2), (r.returncode, r.stderr[-500:])
    assert "Traceback" not in r.stderr
    if r.returncode == 2:
        assert "persons.parquet" in r.stderr


def test_the_joint_report_in_either_language(priced):
    """``--lang zh`` (the fixture's) gives Chinese pages, the joint one and each
    version's; the English joint page from the same versions.json; the JSON is the
    language's neither (written before any page)."""
    from test_reports import CJK, english_runs, headings, raw_values

    from puhui.pricing.versions import render_joint

    _, out, _ = priced
    j = json.loads((out / "versions.json").read_text(encoding="utf-8"))
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    zh = (out / "report.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in zh and raw_values(zh) == []
    assert english_runs(zh) == [] and all(CJK.search(h) for h in headings(zh))
    one = (out / STANDARD / "report.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in one and "定价报告" in one
    en = render_joint(j, m, 10, "en")
    assert '<html lang="en">' in en and "Versions priced jointly" in en and raw_values(en) == []
    # every version's figures on both pages (formatted here by hand)
    for v in j["versions"]:
        for page in (zh, en):
            assert f"{v['filed_premium']:,.2f}" in page
            assert f"{v['at_filed']['loss_ratio'] * 100:.1f} %" in page
