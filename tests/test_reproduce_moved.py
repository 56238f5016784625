"""`puhui reproduce` when the data folder moved (issue 21): the manifest keeps each input's
path relative to the manifest as well as the absolute one; a folder moved together with
its data reproduces, `--data DIR` gives a data folder that moved alone, a data file whose
hash differs is exit 2 naming it, and a manifest without the relative paths (as written
before session 19) still reproduces. Each success is a real re-run of the pricing (the
small city, no backtest: about 8 s of CPU each)."""

import contextlib
import json
import shutil

import pandas as pd
import pytest

from conftest import puhui

pytestmark = pytest.mark.slow


def run(*args, cwd=None):
    """The command in this process (conftest.puhui: what it does, writes and says, not
    the process itself), from ``cwd`` when given (the pricing's relative paths)."""
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        return puhui(*args)


@pytest.fixture(scope="module")
def priced(small_city_dir, tmp_path_factory):
    """A project folder with its data and a pricing of it: root/city, root/out."""
    root = tmp_path_factory.mktemp("moved") / "project"
    shutil.copytree(small_city_dir, root / "city")
    r = run("price", "--product", "huhuibao-2025", "--data", "city", "--out", "out",
            "--no-backtest", "--seed", "2", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_manifest_names_inputs_absolute_and_relative(priced):
    opts = json.loads((priced / "out" / "manifest.json").read_text())["options"]
    assert opts["data"] == str((priced / "city").resolve())          # as before
    assert opts["relative_to_manifest"]["data"] == "../city"
    assert opts["in_basis"] == {"product": "products/huhuibao-2025.toml",
                                "assumptions": "assumptions/pricing.toml"}


def test_project_moved_as_a_whole_reproduces(priced, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(priced, moved)
    m = moved / "out" / "manifest.json"
    doc = json.loads(m.read_text())
    doc["options"]["data"] = str(tmp_path / "deleted-original")      # the old place is gone
    m.write_text(json.dumps(doc))
    r = run("reproduce", m)
    assert r.returncode == 0, r.stderr
    assert "reproduced" in r.stdout


def test_data_moved_alone_needs_data_and_a_changed_file_is_named(priced, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(priced / "out", out)
    m = out / "manifest.json"
    doc = json.loads(m.read_text())
    doc["options"]["data"] = str(tmp_path / "gone")
    m.write_text(json.dumps(doc))
    r = run("reproduce", m)                      # neither place has the data
    assert r.returncode == 2 and "--data DIR" in r.stderr and "Traceback" not in r.stderr
    changed = tmp_path / "changed"
    shutil.copytree(priced / "city", changed)
    pol = pd.read_parquet(changed / "policies.parquet")
    pol.loc[0, "premium"] = pol.loc[0, "premium"] + 1
    pol.to_parquet(changed / "policies.parquet", index=False)
    r = run("reproduce", m, "--data", changed)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    named = [x.strip() for x in r.stderr.splitlines() if "changed since the pricing" in x]
    assert len(named) == 1 and named[0].startswith(f"{changed / 'policies.parquet'}:")
    r = run("reproduce", m, "--data", tmp_path / "nowhere")
    assert r.returncode == 2 and "not there" in r.stderr
    shutil.copytree(priced / "city", tmp_path / "moved-city")
    r = run("reproduce", m, "--data", tmp_path / "moved-city")
    assert r.returncode == 0, r.stderr


def test_manifest_without_relative_paths_still_reproduces(priced, tmp_path):
    """The manifest as written before session 19 (no relative_to_manifest, no in_basis):
    its absolute paths are read as before."""
    out = tmp_path / "old"
    shutil.copytree(priced / "out", out)
    m = out / "manifest.json"
    doc = json.loads(m.read_text())
    for k in ("relative_to_manifest", "in_basis"):
        doc["options"].pop(k)
    m.write_text(json.dumps(doc))
    r = run("reproduce", m)
    assert r.returncode == 0, r.stderr
