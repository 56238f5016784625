"""A built wheel works on its own (issue 21): it carries the actuarial basis as package
data, finds it without PUHUI_ACTUARIAL (which still overrides it), and its commands run
from a folder that is not the checkout.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps
--no-build-isolation``, with the venv's setuptools: the ``test`` extra installs it) and
installed with ``pip install --no-deps --target``; the venv's dependencies come from its
site-packages, puhui from the target only (PYTHONPATH puts it first and the test checks
which copy was imported). The truth: the checkout's actuarial/ files, hashed here.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_BASIS = ROOT / "actuarial"


def _backend_ok() -> bool:
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


pytestmark = pytest.mark.skipif(
    not _backend_ok(), reason="setuptools>=77 (the build backend) is not in this venv: "
                              "pip install -e '.[test]' installs it")


def _sources(dst: Path) -> Path:
    """The files a build reads, copied (the symbolic link src/puhui/actuarial kept as a
    link), so the build writes nothing into the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", dst / "src", symlinks=True, ignore=ignore)
    shutil.copytree(CHECKOUT_BASIS, dst / "actuarial", ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, dst / f)
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(target folder, wheel file): the wheel built and installed once for the module."""
    base = tmp_path_factory.mktemp("wheel")
    src = _sources(base / "src-copy")
    dist, target = base / "dist", base / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "--no-index", "-q", "-w", str(dist), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = dist.glob("puhui-*.whl")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                        "-q", "--target", str(target), str(wheel)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return target, wheel


def _env(target: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PUHUI_ACTUARIAL", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(target), **extra}


def _run(target, cwd, *args, **env):
    return subprocess.run([sys.executable, "-m", "puhui", *args], capture_output=True,
                          text=True, cwd=cwd, env=_env(target, **env))


def _checkout_files() -> dict[str, str]:
    return {str(p.relative_to(CHECKOUT_BASIS)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(CHECKOUT_BASIS.rglob("*")) if p.is_file()}


def test_wheel_carries_every_basis_file(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        got = {n.removeprefix("puhui/actuarial/"): hashlib.sha256(z.read(n)).hexdigest()
               for n in z.namelist() if n.startswith("puhui/actuarial/")}
    assert got == _checkout_files()


def test_sdist_carries_the_basis_as_plain_files(tmp_path):
    """The source archive holds the basis's files themselves (the link followed), so a
    wheel built from it, on any platform, carries them too."""
    src = _sources(tmp_path / "src-copy")
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_sdist(sys.argv[1]))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=src,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    name = r.stdout.split()[-1]
    prefix = name.removesuffix(".tar.gz") + "/src/puhui/actuarial/"
    with tarfile.open(tmp_path / "dist" / name) as tar:
        got = {m.name.removeprefix(prefix): hashlib.sha256(tar.extractfile(m).read()).hexdigest()
               for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()}
    assert got == _checkout_files()


def test_installed_wheel_reads_its_own_basis_from_anywhere(installed, tmp_path):
    target, _ = installed
    code = ("import puhui, puhui.basis; print(puhui.__file__); "
            "print(puhui.basis.actuarial_dir())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=_env(target))
    module, basis = r.stdout.split()
    assert Path(module).is_relative_to(target) and Path(basis) == target / "puhui" / "actuarial"
    assert not (target / "puhui" / "actuarial").is_symlink()
    r = _run(target, tmp_path, "product", "list", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert {e["id"] for e in listed} == {p.stem for p in (CHECKOUT_BASIS / "products").glob("*.toml")}
    assert all(Path(e["file"]).is_relative_to(target) for e in listed)
    r = _run(target, tmp_path, "product", "list")
    assert r.returncode == 0 and "huhuibao-2025 " in r.stdout
    script = target / "bin" / "puhui"                   # the console script, as a user types
    r = subprocess.run([str(script), "product", "show", "huhuibao-2025"], capture_output=True,
                       text=True, cwd=tmp_path, env=_env(target))
    assert r.returncode == 0, r.stderr
    assert "2025-01-01" in r.stdout and "hospital" in r.stdout
    r = subprocess.run([str(script), "product", "show", "huhuibao-2052"], capture_output=True,
                       text=True, cwd=tmp_path, env=_env(target))
    assert r.returncode == 2 and "did you mean 'huhuibao-2025'?" in r.stderr


def test_user_basis_overrides_the_shipped_one(installed, tmp_path):
    target, _ = installed
    own = tmp_path / "my-basis"
    shutil.copytree(target / "puhui" / "actuarial", own)
    text = (own / "products" / "huhuibao-2025.toml").read_text(encoding="utf-8")
    (own / "products" / "my-city-2026.toml").write_text(
        text.replace('id = "huhuibao-2025"', 'id = "my-city-2026"'), encoding="utf-8")
    r = _run(target, tmp_path, "product", "list", "--json", PUHUI_ACTUARIAL=str(own))
    assert r.returncode == 0, r.stderr
    files = {e["id"]: e["file"] for e in json.loads(r.stdout)}
    assert "my-city-2026" in files
    assert all(Path(f).is_relative_to(own) for f in files.values())


@pytest.mark.slow
def test_price_from_the_wheel_on_a_small_city(installed, small_city_dir, tmp_path):
    """`puhui price --no-backtest` of the session's small city from the installed wheel
    (about 11 s of CPU; the shipped sample's own pricing is the README's, run by
    tests/test_docs_examples.py): the manifest's basis hashes are the checkout's files,
    read from the wheel's copy."""
    target, _ = installed
    data = tmp_path / "city"
    shutil.copytree(small_city_dir, data)
    r = _run(target, tmp_path, "price", "--product", "huhuibao-2025", "--data", str(data),
             "--out", "out", "--no-backtest")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert Path(m["options"]["product"]).is_relative_to(target)
    assert Path(m["options"]["assumptions"]).is_relative_to(target)
    assert m["inputs"]["actuarial"] == _checkout_files()
    figures = json.loads((tmp_path / "out" / "pricing.json").read_text(encoding="utf-8"))
    assert figures["product_id"] == "huhuibao-2025" and figures["pure_premium"]["total"] > 0
