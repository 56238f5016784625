"""Where a pricing manifest's inputs are, when it is written and when it is reproduced.

A manifest names each input (the data folder, the product file or files, the
assumptions file) three ways: ``options.<key>``, the absolute path as priced (every
manifest has it; older ones have only it); ``options.relative_to_manifest.<key>``, the
path from the manifest's folder, so a folder moved or copied together with the data
still finds it; and ``options.in_basis.<key>``, the path inside the actuarial basis for
a file of the basis, so another checkout or an installed wheel finds its own copy.
:func:`locate` tries them in that order and takes the first whose SHA-256 is the
manifest's (else the first that exists, whose difference is then reported);
``puhui reproduce --data DIR`` gives the data folder outright.
"""

from __future__ import annotations

import os
from pathlib import Path

from puhui.basis import actuarial_dir
from puhui.digests import sha256_file
from puhui.errors import InputError


def _relative(path: Path, start: Path) -> str | None:
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:                    # another drive (Windows): no relative path
        return None


def _in_basis(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(actuarial_dir().resolve()).as_posix()
    except (ValueError, OSError):
        return None


def path_options(out: Path, paths: dict[str, Path | list[Path]]) -> dict:
    """``options``' ``relative_to_manifest`` and ``in_basis`` for the inputs ``paths``
    (key: a path, or a list of paths for ``products``), the manifest written in ``out``."""
    rel, basis = {}, {}
    for key, p in paths.items():
        if isinstance(p, list):
            rel[key] = [_relative(Path(x), out) for x in p]
            basis[key] = [_in_basis(Path(x)) for x in p]
        else:
            rel[key] = _relative(Path(p), out)
            basis[key] = _in_basis(Path(p)) if key != "data" else None
    return {"relative_to_manifest": rel,
            "in_basis": {k: v for k, v in basis.items() if v is not None}}


def candidates(manifest_file: Path, opts: dict, key: str, index: int | None = None
               ) -> list[Path]:
    """The places an input may be now, in the order tried (without repeats)."""
    def pick(d):
        v = d.get(key) if isinstance(d, dict) else None
        if index is not None and isinstance(v, list):
            v = v[index] if index < len(v) else None
        return v if isinstance(v, str) else None

    found = [Path(x) for x in (pick(opts),) if x]
    rel = pick(opts.get("relative_to_manifest"))
    if rel:
        found.append(Path(os.path.normpath(manifest_file.parent / rel)))
    inb = pick(opts.get("in_basis"))
    if inb:
        found.append(actuarial_dir() / inb)
    out: list[Path] = []
    for p in found:
        if not any(_same(p, q) for q in out):
            out.append(p)
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def data_hashes(folder: Path) -> dict[str, str]:
    """The data folder's part of a manifest's ``inputs``: each Parquet file's SHA-256."""
    return {p.name: sha256_file(p) for p in sorted(Path(folder).glob("*.parquet"))}


def locate(places: list[Path], matches, what: str, manifest_file: Path, hint: str = ""
           ) -> Path:
    """The first of ``places`` for which ``matches(path)`` (its hashes are the
    manifest's), else the first that exists; none there is an :class:`InputError`."""
    there = [p for p in places if p.exists()]
    for p in there:
        if matches(p):
            return p
    if there:
        return there[0]
    raise InputError(f"{manifest_file}: the inputs it names are not there ({what}: looked "
                     f"in {', '.join(map(str, places)) or 'no place'}){hint}; restore them, "
                     f"or price again with `puhui price`")


def input_changes(recorded: dict, now: dict, where: dict[str, Path]) -> list[str]:
    """Which input files differ from the manifest's hashes, one line each, naming the
    file where it is now: ``where`` maps "data", "actuarial", "product_file" and
    "assumptions_file" to the folder or file read."""
    lines = []
    for section in ("data", "actuarial"):
        a, b = recorded.get(section), now.get(section)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                lines.append(f"{section}: not the manifest's")
            continue
        for name in sorted(set(a) | set(b)):
            f = where[section] / name
            if name not in b:
                lines.append(f"{f}: not there (the manifest has it)")
            elif name not in a:
                lines.append(f"{f}: not in the manifest (added since the pricing)")
            elif a[name] != b[name]:
                lines.append(f"{f}: changed since the pricing (SHA-256 {b[name][:12]}..., "
                             f"the manifest's {str(a[name])[:12]}...)")
    for key in ("product_file", "assumptions_file"):
        if recorded.get(key) != now.get(key):
            lines.append(f"{where[key]}: changed since the pricing (its SHA-256 is not the "
                         f"manifest's)")
    a, b = recorded.get("product_files"), now.get("product_files")
    if a != b:
        a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
        for pid in sorted(set(a) | set(b)):
            if a.get(pid) != b.get(pid):
                lines.append(f"product file of {pid}: "
                             + ("changed since the pricing" if pid in a and pid in b else
                                "not in the manifest" if pid not in a else "not there"))
    return lines


def refuse_changed(manifest_file: Path, lines: list[str]) -> None:
    """Exit 2 naming each changed input (nothing to re-run: the inputs are not the ones
    priced)."""
    if lines:
        raise InputError(f"{manifest_file}: inputs differ from the manifest's, so its "
                         f"pricing cannot be re-run as it was; restore these files (or "
                         f"give the data folder priced with --data DIR):\n  "
                         + "\n  ".join(lines))
