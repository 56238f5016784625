"""The actuarial basis: versioned, human-readable files under ``actuarial/``.

``actuarial/basic/``     basic-insurance rules, one TOML file per scheme and year
``actuarial/drugs/``     drug and item lists (CSV) with their metadata (TOML)
``actuarial/tables/``    mortality and other tables (CSV) with their citation
``actuarial/assumptions/`` the synthetic city's parameters and other assumptions

The folder is found from ``PUHUI_ACTUARIAL`` or next to the source tree (the package
is installed editable from the checkout). A file may say ``extends = "other-file.toml"``
(a path relative to itself): it starts from that file and changes what it states, so
two years of one scheme or product differ only where the file says so. Tables merge
key by key; lists of tables that carry an ``id`` (layers, benefits) merge by id (an
entry with a known id changes that entry, a new id is appended, ``remove = true``
drops it); any other value is replaced.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from puhui.errors import RuleFileError


def actuarial_dir() -> Path:
    env = os.environ.get("PUHUI_ACTUARIAL")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "actuarial"
        if cand.is_dir() and (cand / "basic").is_dir():
            return cand
    raise RuleFileError("cannot find the actuarial/ folder: set PUHUI_ACTUARIAL to its path "
                        "(it ships with the puhui source tree)")


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a TOML basis file, following ``extends`` (shallow: top-level keys replace)."""
    path = Path(path).resolve()
    if path in _seen:
        raise RuleFileError(f"{path}: 'extends' loops back to itself")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RuleFileError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{path}: not valid TOML ({exc})") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = read_toml(path.parent / parent, _seen + (path,))
    base.pop("id", None)
    return merge_basis(base, data)


def _is_id_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and "id" in v for v in value)


def merge_basis(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Merge a child file over its parent (see the module docstring).

    >>> merge_basis({"a": 1, "layers": [{"id": "x", "r": 1}, {"id": "y", "r": 2}]},
    ...             {"layers": [{"id": "y", "r": 3}, {"id": "x", "remove": True}]})
    {'a': 1, 'layers': [{'id': 'y', 'r': 3}]}
    """
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = merge_basis(old, value)
        elif _is_id_list(old) and _is_id_list(value):
            merged = {e["id"]: dict(e) for e in old}
            for e in value:
                if e.get("remove"):
                    merged.pop(e["id"], None)
                elif e["id"] in merged:
                    merged[e["id"]] = merge_basis(merged[e["id"]], e)
                else:
                    merged[e["id"]] = dict(e)
            out[key] = list(merged.values())
        else:
            out[key] = value
    return out
