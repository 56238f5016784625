"""The examples gallery (examples/*.py) runs: each script exits 0 and prints a number."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_the_example_runs_and_prints_numbers(script, tmp_path):
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "report.html")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert re.search(r"\d[\d,]*\.\d\d", r.stdout), r.stdout[-2000:]   # an amount in yuan
