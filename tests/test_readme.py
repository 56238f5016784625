"""The README's next steps after `make demo` work as written (issue 21): each line of its
marked block runs, in order, in a fresh folder holding only a copy of the shipped sample,
with the `puhui` console script of the venv the tests run in (what `source
.venv/bin/activate` puts on PATH). About 30 s of CPU (one pricing without backtest, a
what-if, a claims batch on the sample)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- next-steps:"


def next_steps() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARK in text, "the README lost its marked next-steps block"
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARK):], re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_block_starts_by_activating_the_venv_make_demo_makes():
    lines = next_steps()
    assert lines[0].split("#")[0].split() == ["source", ".venv/bin/activate"]
    mk = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^VENV\s*:=\s*\.venv$", mk, re.M)
    assert re.search(r"^demo: \$\(VENV\)/\.installed", mk, re.M)
    assert all(x.startswith("puhui ") for x in lines[1:])


@pytest.mark.slow
def test_readme_next_steps_run_in_a_fresh_folder(tmp_path):
    script = Path(sys.executable).parent / "puhui"
    assert script.is_file(), "the venv has no puhui console script"
    shutil.copytree(ROOT / "data-samples" / "city", tmp_path / "data-samples" / "city")
    env = {k: v for k, v in os.environ.items() if k != "PUHUI_ACTUARIAL"}
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    for line in next_steps()[1:]:
        argv = shlex.split(line, comments=True)
        r = subprocess.run([str(script), *argv[1:]], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
        assert r.returncode == 0, f"{line}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr
    for f in ("priced/pricing.json", "priced/report.html", "priced/manifest.json",
              "priced/premium.xlsx", "claims/eob.parquet", "claims/report.html",
              "claims/summary.xlsx"):
        assert (tmp_path / f).is_file(), f
