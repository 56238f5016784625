"""The products of the actuarial basis: the one place a product name becomes a file.

:func:`resolve_product` turns what a user typed (an id of ``actuarial/products/`` or a
path to a product file) into an existing file, or raises :class:`InputError` with the
nearest ids ("did you mean 'huhuibao-2025'?"); every command that takes a product goes
through it. :func:`list_products` reads every product file of the basis for
``puhui product list``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from puhui.basis import actuarial_dir
from puhui.errors import InputError, RuleFileError
from puhui.products.model import load_product, product_path


def products_dir() -> Path:
    """``actuarial/products/`` of the basis in use (``PUHUI_ACTUARIAL`` or the shipped one)."""
    return actuarial_dir() / "products"


def product_ids(directory: Path | None = None) -> list[str]:
    """The ids of the product files in ``directory`` (the basis's products by default):
    each file's name without ``.toml``, sorted."""
    d = products_dir() if directory is None else Path(directory)
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def refuse_near_ids(values, known: list[str], where: str) -> None:
    """Ids in ``values`` (a data file's product_id column) that are one of ``known`` but
    for spaces or case ("huhuibao-2025 ", "HUHUIBAO-2025": a spreadsheet's export) would
    be taken for another product's, silently: refused (:class:`InputError`) with the
    count and the id as it should be written.

    >>> import pandas as pd
    >>> refuse_near_ids(pd.Series(["huhuibao-2025", "x"]), ["huhuibao-2025"], "policies")
    >>> refuse_near_ids(pd.Series(["HUHUIBAO-2025 "] * 3), ["huhuibao-2025"], "policies")
    Traceback (most recent call last):
    ...
    puhui.errors.InputError: policies: column product_id: 3 policies name huhuibao-2025 with other spaces or case (e.g. 'HUHUIBAO-2025 '); write the id exactly as the product file's: huhuibao-2025
    """
    import pandas as pd

    col = pd.Series(values)
    exact = set(known)
    by_folded = {k.strip().lower(): k for k in known}
    for v in pd.unique(col.dropna()):                       # distinct ids: few
        k = by_folded.get(str(v).strip().lower())
        if k is not None and str(v) not in exact:
            n = int((col == v).sum())
            raise InputError(f"{where}: column product_id: {n:,} policies name {k} with "
                             f"other spaces or case (e.g. {str(v)!r}); write the id exactly "
                             f"as the product file's: {k}")


def suggestion(name: str, known: list[str]) -> str:
    """ "; did you mean 'x'?" for the nearest of ``known``, or "" when none is near.

    >>> suggestion("huhuibao-2052", ["huhuibao-2024", "huhuibao-2025", "elderly-medical-60-80"])
    "; did you mean 'huhuibao-2025'?"
    >>> suggestion("huhuibao2025", ["huhuibao-2025", "huhuibao-2025-community"])
    "; did you mean 'huhuibao-2025'?"
    >>> suggestion("motor-2025", ["huhuibao-2025"])
    ''
    """
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean '{near[0]}'?" if near else ""


def resolve_product(name: str | Path) -> Path:
    """The product file a user named: a path (ending ``.toml``, or an existing file) as
    given, else the id's file in the basis's ``products/``. A file that does not exist
    raises :class:`InputError` naming the nearest id or file name and how to list them."""
    path = product_path(str(name))
    if path.is_file():
        return path
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a product file (.toml) or an id "
                         f"(`puhui product list` lists them)")
    given = Path(str(name))
    if given.suffix == ".toml" or len(given.parts) > 1:      # a path that is not there
        near = difflib.get_close_matches(path.stem, product_ids(path.parent), n=1,
                                         cutoff=0.75)
        hint = f"; did you mean '{path.parent / (near[0] + '.toml')}'?" if near else ""
        if not near and len(given.parts) == 1:               # "huhuibao-2025.toml": an id?
            hint = suggestion(given.stem, product_ids())
            hint = hint.replace("?", " (an id of the basis, without .toml)?") if hint else ""
        raise InputError(f"{path}: no such product file{hint}")
    known = product_ids()
    hint = suggestion(str(name), known)
    raise InputError(f"{name}: no such product file in {products_dir()}{hint} "
                     f"(`puhui product list` lists the {len(known)} products; or give a "
                     f"product file's path)")


@dataclass(frozen=True)
class ProductEntry:
    """One product of the basis, as ``puhui product list`` shows it. ``error`` is the
    message of a file that cannot be read (then only ``id`` and ``path`` are known)."""

    id: str
    path: Path
    name: str = ""
    start: str = ""
    end: str = ""
    premium_yuan: tuple[float, float] | None = None     # (lowest, highest); equal if flat
    status: str = ""
    extends: str = ""
    error: str = ""
    by_age: bool = False

    @property
    def premium(self) -> str:
        """The premium in yuan as text: one amount, or "by age LOW-HIGH"."""
        if self.premium_yuan is None:
            return ""
        low, high = (_yuan(round(v * 100)) for v in self.premium_yuan)
        return f"by age {low}-{high}" if self.by_age else low

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "start": self.start, "end": self.end,
                "premium_yuan": None if self.premium_yuan is None else {
                    "lowest": self.premium_yuan[0], "highest": self.premium_yuan[1]},
                "premium_by_age": self.by_age, "status": self.status,
                "extends": self.extends or None, "file": str(self.path),
                **({"error": self.error} if self.error else {})}


def _premium_range(p) -> tuple[float, float]:
    if p.premium_flat_fen is not None:
        return p.premium_flat_fen / 100, p.premium_flat_fen / 100
    amounts = sorted(c.amount_fen for c in p.premium_cells)
    return amounts[0] / 100, amounts[-1] / 100


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.0f}" if fen % 100 == 0 else f"{fen / 100:,.2f}"


def product_entry(path: Path) -> ProductEntry:
    """Read one product file for the list (its errors become the entry's ``error``)."""
    from puhui.basis import read_chain

    try:
        p = load_product(path)
    except RuleFileError as exc:
        return ProductEntry(id=path.stem, path=path, error=str(exc))
    chain = read_chain(path)
    parent = chain[1][0].stem if len(chain) > 1 else ""
    return ProductEntry(id=p.id, path=path, name=p.name, start=p.start.isoformat(),
                        end=p.end.isoformat(), premium_yuan=_premium_range(p),
                        by_age=p.premium_flat_fen is None,
                        status=str(p.raw.get("status", "")), extends=parent)


def list_products(directory: Path | None = None) -> list[ProductEntry]:
    """Every product file of ``directory`` (the basis's ``products/`` by default), by id."""
    d = products_dir() if directory is None else Path(directory)
    return [product_entry(p) for p in sorted(d.glob("*.toml"), key=lambda p: p.stem)]


def list_text(entries: list[ProductEntry]) -> str:
    """``puhui product list``: one product a line (id, policy period, premium, what the
    file says of its terms), its name on the next."""
    rows = [f"{'id':<26}{'policy period':<25}{'premium yuan':>17}  status"]
    for e in entries:
        if e.error:
            rows.append(f"{e.id:<26}cannot be read: {e.error}")
            continue
        rows.append(f"{e.id:<26}{e.start + ' to ' + e.end:<25}{e.premium:>17}  "
                    f"{e.status or '-'}")
        rows.append(f"{'':<26}{e.name}" + (f" (extends {e.extends})" if e.extends else ""))
    return "\n".join(rows)
