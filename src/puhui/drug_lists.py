"""Drug and item lists of ``actuarial/drugs/``, versioned by effective dates.

``lists.toml`` indexes the lists (id, file, kind, validity, source). A list is a CSV
with at least ``hilist_code``; items may carry ``valid_from`` / ``valid_to`` of their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from puhui.basis import actuarial_dir, read_toml
from puhui.errors import RuleFileError


@dataclass(frozen=True)
class DrugList:
    id: str
    kind: str
    name: str
    valid_from: dt.date
    valid_to: dt.date
    source: str
    items: pd.DataFrame

    def in_force(self, on: dt.date | str | pd.Timestamp) -> pd.DataFrame:
        """Items in force on a date (list and item validity both)."""
        day = pd.Timestamp(on)
        if not (pd.Timestamp(self.valid_from) <= day <= pd.Timestamp(self.valid_to)):
            return self.items.iloc[0:0]
        it = self.items
        ok = pd.Series(True, index=it.index)
        if "valid_from" in it:
            ok &= pd.to_datetime(it["valid_from"]) <= day
        if "valid_to" in it:
            ok &= pd.to_datetime(it["valid_to"]) >= day
        return it[ok]


def load_lists(directory: str | Path | None = None) -> dict[str, DrugList]:
    directory = Path(directory) if directory else actuarial_dir() / "drugs"
    index = read_toml(directory / "lists.toml")
    out = {}
    for i, meta in enumerate(index.get("lists", [])):
        where = f"{directory / 'lists.toml'}: lists[{i}]"
        for key in ("id", "file", "kind", "valid_from", "valid_to", "source"):
            if key not in meta:
                raise RuleFileError(f"{where}: missing '{key}'")
        items = pd.read_csv(directory / meta["file"], dtype={"hilist_code": str})
        if "hilist_code" not in items or items["hilist_code"].duplicated().any():
            raise RuleFileError(f"{directory / meta['file']}: needs a unique hilist_code column")
        out[meta["id"]] = DrugList(meta["id"], meta["kind"], meta.get("name", meta["id"]),
                                   meta["valid_from"], meta["valid_to"], meta["source"], items)
    return out
