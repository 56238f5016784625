"""The examples gallery (examples/*.py) runs: each script exits 0 and prints a number.
Each runs as its own ``__main__`` in this process (runpy, from its own folder, its
argument in ``sys.argv``): what it does and prints, without a new interpreter and the
pricing stack's imports for each (about 2.5 s of CPU a script). What a fresh process
imports is tests/test_api.py's; the command line's process is tests/test_cli.py's."""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_the_example_runs_and_prints_numbers(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "report.html")])
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:                      # an exception fails the test with its traceback
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:   # sys.exit(...) in a script: its code, as a process's
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    assert code == 0, err.getvalue()[-2000:]
    assert "Traceback" not in err.getvalue()
    assert re.search(r"\d[\d,]*\.\d\d", out.getvalue()), out.getvalue()[-2000:]   # an amount in yuan
