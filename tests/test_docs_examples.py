"""Every example of the docs runs, or says why not (issue 21, point 4).

Each fenced block of README.md and docs/*.md (the work log in dev/ aside) names its
language, and each ``sh`` or ``python`` block carries a marker, the HTML comment on the
line above it:

- ``<!-- example: run -->``: the block runs, as written, in one fresh folder holding a
  copy of the shipped sample (``data-samples/city``) and a ``.venv`` that is the venv the
  tests run in (what ``make demo`` makes), the README's block first, then the docs in
  alphabetical order; a ``puhui`` command run already in the folder (the same words,
  comments aside) is not run twice: its output is shown again. ``text`` blocks marked ``<!-- example: output -->`` are what
  the run block above them prints: each of their lines is in its output.
- ``<!-- example: synopsis: REASON -->``: a list of commands with placeholders (DIR,
  URL, [options]); not run (the reason says why), but each ``puhui`` command and option
  named exists in the command-line parser and each product id exists.
- ``<!-- example: signature -->``: a Python call showing a function's parameters: they
  are the function's own, defaults included.
- ``<!-- example: run by tests/FILE.py::TEST -->``: a test that reads this document runs
  the block (the test exists and names the document).
- ``<!-- example: not run: REASON -->``: the reason (a server, a cluster, hours of CPU)
  is stated.

About 20 s of CPU beyond the README's steps (one pricing without backtest, one claims
batch, both run once for every doc; the Python API's example fits one pricing)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: in the order their examples run; the sample's README last (it rewrites the sample)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data-samples" / "README.md"]
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!-- example: (run by|run|output|synopsis|signature|not run)"
                    r"(?:[:\s]\s*(.*?))?\s*-->$")
NEEDS_MARKER = {"sh", "python"}
KNOWN_LANGS = NEEDS_MARKER | {"text", "toml", "json"}


@dataclass
class Block:
    doc: Path
    line: int          # of the opening fence, 1-based
    lang: str
    kind: str | None   # the marker's kind, None without one
    note: str
    text: str

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        mark = MARKER.match(lines[i - 1].strip()) if i else None
        out.append(Block(doc, i + 1, m[1], mark[1] if mark else None,
                         (mark[2] or "") if mark else "", "\n".join(lines[i + 1:end])))
        i = end + 1
    return out


ALL = [b for d in DOCS for b in blocks(d)]


def commands(text: str) -> list[str]:
    """The logical lines of a shell block (continuations joined), comments and blank
    lines left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [" ".join(shlex.split(ln, comments=True)) for ln in joined.splitlines()
            if shlex.split(ln, comments=True)]


def test_every_block_names_its_language_and_every_example_its_fate():
    bad = [f"{b.where()}: fenced block without a language" for b in ALL if not b.lang]
    bad += [f"{b.where()}: language {b.lang!r} (use one of {sorted(KNOWN_LANGS)})"
            for b in ALL if b.lang and b.lang not in KNOWN_LANGS]
    bad += [f"{b.where()}: {b.lang} block without an <!-- example: ... --> marker"
            for b in ALL if b.lang in NEEDS_MARKER and b.kind is None]
    bad += [f"{b.where()}: '{b.kind}' needs a reason" for b in ALL
            if b.kind in ("not run", "synopsis") and len(b.note) < 15]
    bad += [f"{b.where()}: 'output' marks a text block after a run block" for b in ALL
            if b.kind == "output" and b.lang != "text"]
    bad += [f"{b.where()}: 'signature' marks a python block" for b in ALL
            if b.kind == "signature" and b.lang != "python"]
    assert not bad, "\n".join(bad)
    assert sum(b.kind == "run" for b in ALL) >= 8


def test_a_block_run_by_another_test_is_read_by_it():
    for b in (b for b in ALL if b.kind == "run by"):
        file, _, name = b.note.partition("::")
        path = ROOT / file
        assert path.is_file() and name, b.where()
        src = path.read_text(encoding="utf-8")
        assert f"def {name}(" in src, f"{b.where()}: no test {name} in {file}"
        assert b.doc.name in src, f"{b.where()}: {file} does not read {b.doc.name}"


# ---------------------------------------------------------------- synopses and signatures

def _command(words: list[str]):
    """The click command a ``puhui ...`` line names and the words after its name."""
    from puhui.cli import cli

    cmd, rest = cli, words[1:]
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        assert rest[0] in cmd.commands, f"no command {' '.join(words[:2])}... {rest[0]!r}"
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    assert not hasattr(cmd, "commands"), f"{' '.join(words)}: names a group, not a command"
    return cmd, rest


def check_command_line(line: str) -> None:
    from puhui.products.catalog import list_products

    words = [w for w in re.split(r"\s+", line.replace("[", " ").replace("]", " ")) if w]
    if words[0] != "puhui":
        return
    cmd, rest = _command(words)
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    for k, w in enumerate(rest):
        opt = w.split("=")[0]
        if opt.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", opt):
            assert opt in options, f"{line}: {cmd.name} has no option {opt}"
        if k and rest[k - 1] == "--product" and not w.isupper() and "/" not in w:
            assert w in {e.id for e in list_products()}, f"{line}: no product {w}"


def test_synopses_name_commands_and_options_that_exist():
    checked = 0
    for b in ALL:
        if b.lang == "sh" and b.kind in ("synopsis", "run", "not run"):
            for line in commands(b.text):
                try:
                    check_command_line(line)
                except AssertionError as e:
                    raise AssertionError(f"{b.where()}: {e}") from None
                checked += line.startswith("puhui ")
    assert checked >= 40


def _signature_of(call: ast.Call, names: dict):
    import puhui

    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        if f.value.id == "puhui":
            obj = getattr(puhui, f.attr)
            return obj, inspect.signature(obj)
        if f.value.id in names:
            meth = getattr(names[f.value.id], f.attr)
            return meth, inspect.signature(meth)
    return None, None


def test_python_signatures_are_the_functions_own():
    seen = 0
    for b in (b for b in ALL if b.kind == "signature"):
        names = {}
        for stmt in ast.parse(b.text).body:
            call = stmt.value if isinstance(stmt, (ast.Assign, ast.Expr)) else None
            if not isinstance(call, ast.Call):
                continue
            obj, sig = _signature_of(call, names)
            assert sig is not None, f"{b.where()}: {ast.unparse(call)} is no puhui function"
            params = [p for p in sig.parameters.values() if p.name != "self"]
            shown = [ast.unparse(a) for a in call.args] + [k.arg for k in call.keywords]
            assert shown == [p.name for p in params], f"{b.where()}: {shown} != {sig}"
            for k in call.keywords:
                assert ast.literal_eval(k.value) == sig.parameters[k.arg].default, \
                    f"{b.where()}: default of {k.arg}"
            if isinstance(stmt, ast.Assign) and inspect.isclass(obj):
                names[stmt.targets[0].id] = obj
            seen += 1
    assert seen >= 3


# ---------------------------------------------------------------- the runs

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A fresh folder as a user has it after ``make demo``: the shipped sample and a
    ``.venv`` (the venv the tests run in, whose ``bin/activate`` puts ``puhui`` on PATH)."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or not (venv / "bin" / "puhui").is_file():
        pytest.skip("the tests do not run in a venv with the puhui console script")
    d = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "data-samples" / "city", d / "data-samples" / "city")
    (d / ".venv").symlink_to(venv, target_is_directory=True)
    return d


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PUHUI_ACTUARIAL", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "error::FutureWarning"
    return env


def _script(block: Block, done: dict) -> str:
    """The block as a bash script: each ``puhui`` command's output kept under
    ``.example-output/``, and a command run already in the folder replaced by its output."""
    script = ["mkdir -p .example-output"]
    for line in re.sub(r"\\\n\s*", " ", block.text).splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "puhui":
            script.append(line)
            continue
        key = shlex.join(words)
        if key not in done:
            done[key] = f".example-output/{len(done)}"
            script.append(f"{key} | tee {done[key]}")
        else:
            script.append(f"cat {done[key]}")
    return "\n".join(script)


def _run(block: Block, cwd: Path, done: dict) -> str:
    if block.lang == "python":
        r = subprocess.run([str(Path(sys.prefix) / "bin" / "python"), "-"], input=block.text,
                           capture_output=True, text=True, cwd=cwd, env=_env())
    else:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", _script(block, done)],
                           capture_output=True, text=True, cwd=cwd, env=_env())
    assert r.returncode == 0, f"{block.where()}\n{block.text}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{block.where()}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.slow
def test_every_run_example_runs_as_written(folder):
    done: dict[str, str] = {}
    ran = 0
    for doc in DOCS:
        last = None
        for b in blocks(doc):
            if b.kind == "run":
                last = _run(b, folder, done)
                ran += 1
            elif b.kind == "output":
                assert last is not None, f"{b.where()}: output of no run block"
                for line in filter(str.strip, b.text.splitlines()):
                    assert line.strip() in last, f"{b.where()}: not printed: {line}\n{last[-2000:]}"
    assert ran >= 8
    for f in ("priced/pricing.json", "priced/report.html", "priced/manifest.json",
              "priced/premium.xlsx", "claims/eob.parquet", "claims/report.html",
              "claims/summary.xlsx", "payments.csv"):
        assert (folder / f).is_file(), f
    _the_sample_was_made_again(folder / "data-samples" / "city")


def _the_sample_was_made_again(made: Path) -> None:
    """data-samples/README.md's command (run last) makes the shipped sample's values."""
    import pandas as pd

    assert (made / "SYNTHETIC.json").stat().st_mtime > (made / ".." / ".." / "priced").stat().st_mtime
    for name in ("persons", "policies", "settlements", "settlement_lines"):
        a, b = (pd.read_parquet(d / f"{name}.parquet")
                for d in (made, ROOT / "data-samples" / "city"))
        a = a.astype({c: object for c in a.columns if isinstance(a[c].dtype, pd.CategoricalDtype)})
        b = b.astype({c: object for c in b.columns if isinstance(b[c].dtype, pd.CategoricalDtype)})
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)


# ---------------------------------------------------------------- the README's next steps

def readme_next_steps() -> list[str]:
    b = next(b for b in blocks(ROOT / "README.md") if b.kind == "run")
    return [ln for ln in b.text.splitlines() if ln.strip()]


def test_the_readme_block_starts_by_activating_the_venv_make_demo_makes():
    lines = readme_next_steps()
    assert lines[0].split("#")[0].split() == ["source", ".venv/bin/activate"]
    mk = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^VENV\s*:=\s*\.venv$", mk, re.M)
    assert re.search(r"^demo: \$\(VENV\)/\.installed", mk, re.M)
    assert all(x.startswith("puhui ") for x in lines[1:])


def test_the_readme_points_users_at_the_guide_first():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_link = re.search(r"\]\(([^)#]+)", text)[1]
    assert first_link == "docs/guide.md"
    assert "worklog" not in text.split("## Layout")[0]


def test_every_relative_link_of_the_docs_resolves():
    bad = []
    for doc in [*DOCS, ROOT / "examples" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (doc.parent / path).exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not bad, "\n".join(bad)
