"""`puhui product list` and the one product resolver ("did you mean") every command uses
(issue 21). Truth: the product files read with tomllib here, and hand-written files."""

import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from puhui.basis import actuarial_dir
from puhui.errors import InputError
from puhui.products.catalog import resolve_product


def puhui(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "puhui", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


def _own(path):
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def test_list_json_has_every_shipped_product_with_its_own_terms():
    files = sorted((actuarial_dir() / "products").glob("*.toml"))
    r = puhui("product", "list", "--json")
    assert r.returncode == 0, r.stderr
    got = {e["id"]: e for e in json.loads(r.stdout)}
    assert sorted(got) == sorted(f.stem for f in files)
    for f in files:
        raw, e = _own(f), got[f.stem]
        assert e["name"] == raw["name"] and e["file"] == str(f)
        assert e["extends"] == (raw["extends"].removesuffix(".toml") if "extends" in raw
                                else None)
        if "policy_period" in raw:           # stated in the file itself, not inherited
            assert e["start"] == raw["policy_period"]["start"].isoformat()
            assert e["end"] == raw["policy_period"]["end"].isoformat()
        if "flat" in raw.get("premium", {}):
            assert e["premium_yuan"] == {"lowest": raw["premium"]["flat"],
                                         "highest": raw["premium"]["flat"]}
        if "status" in raw:
            assert e["status"] == raw["status"]


def test_list_text_one_product_a_line_and_a_broken_file_is_exit_2(tmp_path):
    basis = tmp_path / "basis"
    shutil.copytree(actuarial_dir(), basis)
    for f in (basis / "products").glob("*.toml"):
        if f.stem not in ("huhuibao-2024", "huhuibao-2025", "huhuibao-2023",
                          "huhuibao-2022", "huhuibao-2021"):
            f.unlink()
    (basis / "products" / "my-city-2026.toml").write_text(
        'extends = "huhuibao-2025.toml"\nid = "my-city-2026"\nname = "My city 2026"\n'
        'status = "illustrative [assumption]"\n[policy_period]\nstart = 2026-04-01\n'
        'end = 2027-03-31\n[premium]\nflat = 88.5\n', encoding="utf-8")
    env = {**os.environ, "PUHUI_ACTUARIAL": str(basis)}
    r = puhui("product", "list", env=env)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line[:1].strip()]
    assert rows[0][0] == "id"
    assert [x[0] for x in rows[1:]] == ["huhuibao-2021", "huhuibao-2022", "huhuibao-2023",
                                        "huhuibao-2024", "huhuibao-2025", "my-city-2026"]
    mine = rows[-1]
    assert mine[1:6] == ["2026-04-01", "to", "2027-03-31", "88.50", "illustrative"]
    assert "My city 2026 (extends huhuibao-2025)" in r.stdout
    (basis / "products" / "broken.toml").write_text('id = "broken"\n[premium]\nflat = "x"\n',
                                                   encoding="utf-8")
    r = puhui("product", "list", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "my-city-2026" in r.stdout and "broken" in r.stderr
    assert any(line.startswith("broken") and "cannot be read" in line
               for line in r.stdout.splitlines())


@pytest.mark.parametrize("args", [
    ("product", "show", "huhuibao2025"),
    ("product", "diff", "huhuibao-2024", "huhuibao-2052"),
    ("product", "check", "huhuibao_2025"),
    ("price", "--product", "huhuibao-2052", "--data", "nowhere", "--out", "OUT"),
    ("backtest", "--product", "huhuibao-2052", "--data", "nowhere", "--out", "OUT"),
    ("claims", "run", "--product", "huhuibao-2052", "--data", "nowhere", "--batch", "b",
     "--out", "OUT"),
    ("serve", "--product", "Huhuibao-2025", "--ledger", "sqlite:///ledger.db"),
])
def test_every_command_suggests_the_product_meant(args, tmp_path):
    r = puhui(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "did you mean 'huhuibao-2025'?" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "OUT").exists()


def test_resolver_paths_and_far_names(tmp_path):
    shipped = actuarial_dir() / "products" / "huhuibao-2025.toml"
    assert resolve_product("huhuibao-2025") == shipped
    assert resolve_product(str(shipped)) == shipped
    with pytest.raises(InputError, match=r"did you mean '.*/huhuibao-2025\.toml'\?"):
        resolve_product(str(shipped.parent / "huhuibao_2025.toml"))
    with pytest.raises(InputError, match=r"did you mean 'huhuibao-2025' \(an id"):
        resolve_product("huhuibao-2025.toml")          # in the current folder: not there
    with pytest.raises(InputError) as e:
        resolve_product("motor-insurance")
    assert "did you mean" not in str(e.value) and "puhui product list" in str(e.value)
    with pytest.raises(InputError, match="is a folder"):
        resolve_product(str(tmp_path))
