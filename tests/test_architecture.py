"""docs/ARCHITECTURE.md's dependency rules, kept true: the imports of every module under
src/puhui read with ``ast`` (at module level and inside functions alike), checked
against the layers, and no cycle among module-level imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: the engines at the core: pure data in, data out (docs/ARCHITECTURE.md)
CORE = ("puhui.money", "puhui.tiers", "puhui.products", "puhui.benefits", "puhui.fund")
#: may not be imported by ...
#: (``puhui.api``, the Python API, sits at the top beside ``cli``: it may import every
#: layer, and none of them imports it)
RULES = {
    CORE: ("puhui.pricing", "puhui.claims", "puhui.survival", "puhui.synth", "puhui.cli",
           "puhui.api", "puhui.reserving"),
    # reserving and risk transfer: a pure engine beside the core (payments and
    # distributions in, triangles, reserves and ceded amounts out); reading the ledger
    # and pricing's distributions is the callers' work
    ("puhui.reserving",): ("puhui.pricing", "puhui.claims", "puhui.survival",
                           "puhui.synth", "puhui.cli", "puhui.api", "puhui.service"),
    ("puhui.pricing", "puhui.survival"): ("puhui.claims", "puhui.synth", "puhui.cli",
                                          "puhui.api"),
    ("puhui.claims",): ("puhui.pricing", "puhui.synth", "puhui.cli", "puhui.api"),
    ("puhui.synth",): ("puhui.pricing", "puhui.claims", "puhui.cli", "puhui.api"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "puhui").rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_only: bool) -> set[str]:
    """The puhui modules ``name`` imports (a name imported from a package counts as
    that submodule when it is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "puhui" or mod.startswith("puhui."):
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    out.add(sub if sub in MODULES else mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "puhui"}
    out.discard(name)
    return out


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_modules_are_found():
    assert {"puhui.cli", "puhui.pricing.premium", "puhui.benefits.calculator",
            "puhui.claims.batch", "puhui.money"} <= set(MODULES)


@pytest.mark.parametrize("layer", list(RULES), ids=lambda t: "+".join(t))
def test_dependencies_point_one_way(layer):
    """A layer never imports the layers above it, not even inside a function."""
    banned = RULES[layer]
    wrong = sorted(f"{m} imports {t}" for m, p in MODULES.items() if _under(m, layer)
                   for t in _imports(m, p, top_only=False) if _under(t, banned))
    assert not wrong, wrong


def test_only_the_entry_point_imports_the_cli():
    wrong = sorted(m for m, p in MODULES.items() if m not in ("puhui.cli", "puhui.__main__")
                   and any(_under(t, ("puhui.cli",)) for t in _imports(m, p, top_only=False)))
    assert not wrong, wrong


def test_no_cycle_among_module_level_imports():
    graph = {m: {t for t in _imports(m, p, top_only=True) if t in MODULES}
             for m, p in MODULES.items()}
    # Tarjan's strongly connected components; a component of more than one module is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_a_planted_violation(tmp_path):
    """The rules can fail: a core module importing pricing inside a function is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from puhui.pricing.premium import price\n", encoding="utf-8")
    assert "puhui.pricing.premium" in _imports("puhui.benefits.x", f, top_only=False)
    assert "puhui.pricing.premium" not in _imports("puhui.benefits.x", f, top_only=True)
