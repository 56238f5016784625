"""Every source the repository cites is in the repository or public (issue 21, point 4):
no file a user gets (README, docs, the package, the actuarial basis, the examples and
benchmarks) cites the project's private working notes, which the repository does not
hold; the domain facts are cited as sections of docs/domain.md, which exist, and the
seed documents named are among its sources. The work log (dev/) is history and is left
as it was written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"DOMAIN\.md|CONTRACT\.md|\.\./shared/|/work/shared|shared/(seeds|external)")
TEXT = {".md", ".py", ".toml", ".csv", ".txt", ".html", ".j2", ".jinja", ".json", ".css", ".cfg"}
#: the one file that names the old notes: it turns an older basis's citations of them
#: into the sections of docs/domain.md that replaced them
TRANSLATOR = ROOT / "src" / "puhui" / "reporting" / "assumptions.py"


def shipped_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml",
             *(ROOT / "data-samples").glob("*.md"), *(ROOT / "docs").glob("*.md")]
    for top in ("src", "actuarial", "examples", "benchmarks"):
        files += [p for p in (ROOT / top).rglob("*")
                  if p.is_file() and not p.is_symlink() and p.suffix in TEXT
                  and "__pycache__" not in p.parts]
    return sorted(set(files) - {TRANSLATOR})


def test_no_file_cites_notes_outside_the_repository():
    files = shipped_files()
    assert len(files) > 100 and ROOT / "docs" / "guide.md" in files
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:120]}"
            for p in files
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "cite docs/domain.md (or another file of the repository) instead:\n" + "\n".join(hits)


def test_the_cited_sections_and_seeds_of_domain_md_exist():
    domain = (ROOT / "docs" / "domain.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## §(\d+)\.", domain, re.M))
    sources = domain[domain.index("\n## Sources"):]
    seeds = set(re.findall(r"^\| seed (\d{3}) \|", sources, re.M))
    cited_sections, cited_seeds = set(), set()
    for p in shipped_files():
        text = p.read_text(encoding="utf-8", errors="replace")
        cited_sections |= set(re.findall(r"docs/domain\.md §\s?(\d+)", text))
        cited_seeds |= set(re.findall(r"(?<![-\w])seeds? (0\d\d)\b", text))
    assert cited_sections and cited_sections <= sections, cited_sections - sections
    assert cited_seeds and cited_seeds <= seeds, cited_seeds - seeds
