"""The backtest's realised cost against yearly claims batches when the policies file
carries its own claim-free years (the hostile review of session 13, its second round:
reproductions kept as tests). Four data years (2022-2025, seed 13, 3,000 people)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puhui.basis import actuarial_dir
from tests import procs


def run(*args, env=None):
    """The command in this process (conftest.puhui); in a process of its own where ``env``
    sets PUHUI_ACTUARIAL (another actuarial/ folder: a new process reads only that),
    forked from a server that imported the claims stack and read no basis
    (tests/procs.py), in that environment."""
    if env is None:
        from conftest import puhui

        return puhui(*args)
    p = procs.puhui(*args, env=env)
    out, err = p.communicate(timeout=600)
    return subprocess.CompletedProcess(["puhui", *args], p.returncode, out, err)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The four-year city, made once (each test changes a copy)."""
    d = tmp_path_factory.mktemp("cfy-city") / "c"
    r = run("synth", "--persons", "3000", "--years", "4", "--seed", "13", "--start-year",
            "2022", "--out", str(d))
    assert r.returncode == 0, r.stderr
    return d


def _city(base: Path, tmp: Path) -> Path:
    d = tmp / "c"
    shutil.copytree(base, d)
    return d


def _ledger_vs_backtest(d: Path, tmp: Path, env=None):
    """Yearly batches 2022-2025 into one ledger; the backtest's realised cost of 2025
    against the 2025 batch (with ``env``: in child processes, so its PUHUI_ACTUARIAL
    counts)."""
    ledger = f"sqlite:///{tmp / 'l.db'}"
    for y in (2022, 2023, 2024, 2025):
        r = run("claims", "run", "--product", f"huhuibao-{y}", "--data", str(d), "--ledger",
                ledger, "--batch", f"b{y}", "--out", str(tmp / f"o{y}"), env=env)
        assert r.returncode == 0, r.stderr
    s = json.loads((tmp / "o2025" / "summary.json").read_text())
    if env is None:
        from puhui.pricing.backtest import realised_cost
        from puhui.pricing.fund_data import load_for_pricing
        from puhui.pricing.premium import load_assumptions
        from puhui.products.model import load_product

        p = load_product(actuarial_dir() / "products" / "huhuibao-2025.toml")
        r = realised_cost(p, load_for_pricing(d, p, load_assumptions(None)[0]), 2025)
        return {"paid": r["paid_total"], "cfy": r["claim_free_policies"]}, s
    code = ("import json,sys\nfrom puhui.basis import actuarial_dir\n"
            "from puhui.products.model import load_product\n"
            "from puhui.pricing.backtest import realised_cost\n"
            "from puhui.pricing.fund_data import load_for_pricing\n"
            "from puhui.pricing.premium import load_assumptions\n"
            "p = load_product(actuarial_dir() / 'products' / 'huhuibao-2025.toml')\n"
            "r = realised_cost(p, load_for_pricing(sys.argv[1], p, load_assumptions(None)[0]), 2025)\n"
            "print(json.dumps({'paid': r['paid_total'], 'cfy': r['claim_free_policies']}))")
    p = procs.python_c(code, d, env=env)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1]), s


@pytest.mark.parametrize("kind", ["last_year_only", "one_null_in_2022"])
def test_claim_free_years_column_complete_for_the_batch_is_taken_by_the_backtest(city, tmp_path,
                                                                                kind):
    """The batch takes the column when its OWN product's policies have it complete; the
    backtest took it only when every policy of every data year and product had it.
    Filled only for 2025's policies (an insurer that started recording the count), or
    one 2022 policy null: the batch pays 2025 at the file's 0 claim-free years
    (328,760.84); the backtest paid at the derived chain (335,631.35, +6,870.51)."""
    d = _city(city, tmp_path)
    pol = pd.read_parquet(d / "policies.parquet")
    y = pol["start_date"].dt.year
    if kind == "last_year_only":
        pol["claim_free_years"] = np.where(y == 2025, 0, np.nan)
    else:
        pol["claim_free_years"] = 0.0
        pol.loc[pol.index[(y == 2022).to_numpy()][0], "claim_free_years"] = np.nan
    pol.to_parquet(d / "policies.parquet", index=False)
    real, s = _ledger_vs_backtest(d, tmp_path)
    assert s["claim_free_years"]["source"] == "data"
    assert real["paid"] == pytest.approx(s["ledger_entries_yuan"], abs=0.005)


def test_given_claim_free_years_of_a_new_entrant_keep_the_waiting_period(city, tmp_path):
    """A complete claim_free_years column (3 for every policy) and huhuibao-2025 with a
    180-day waiting period (a copy of actuarial/): every re-paid row was made a renewal,
    so 3 new 2025 entrants' waiting-period claims were paid by the backtest (342,736.07)
    and not by the batch (275,159.64): +67,576.43."""
    act = tmp_path / "act"
    shutil.copytree(actuarial_dir(), act)
    p = act / "products" / "huhuibao-2025.toml"
    text = p.read_text(encoding="utf-8")
    i = text.index("\n[")
    p.write_text(text[:i] + "\nwaiting_period_days = 180\n" + text[i:], encoding="utf-8")
    env = {**os.environ, "PUHUI_ACTUARIAL": str(act)}
    d = _city(city, tmp_path)
    pol = pd.read_parquet(d / "policies.parquet")
    pol["claim_free_years"] = 3
    pol.to_parquet(d / "policies.parquet", index=False)
    real, s = _ledger_vs_backtest(d, tmp_path, env)
    assert real["paid"] == pytest.approx(s["ledger_entries_yuan"], abs=0.005)
