"""Drug and item lists of ``actuarial/drugs/``, versioned by effective dates.

``lists.toml`` indexes the lists (id, file, kind, validity, source). A list is a CSV
with at least ``hilist_code``; items may carry ``valid_from`` / ``valid_to`` of their own.
A list may ``extends`` another listed before it: its items are the parent's, and its
own file adds columns to them by ``hilist_code`` (for example the agreements of some
drugs).

Outcome-based agreements (:mod:`puhui.survival.agreements`) are columns of a list:
``agreement`` (``os``, ``pfs`` or ``effect``; empty for none),
``agreement_comparator_median_months`` (``os``), ``agreement_drug_median_months``,
``agreement_share`` (a ratio 0-1: ``os`` between the medians, ``effect`` before the
date), ``agreement_max_years`` (5 when empty); :func:`agreements_of` reads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from puhui.basis import Date, Table, Tables, Text, actuarial_dir, read_checked
from puhui.errors import RuleFileError


def _list_dates(meta: dict, c, table: str) -> None:
    if meta["valid_to"] < meta["valid_from"]:
        c.fail(table, f"'valid_to' {meta['valid_to']} is before 'valid_from' {meta['valid_from']}")


#: ``lists.toml``: the index of the lists, each ``[[lists]]`` entry with these keys.
LISTS_FILE = Table({"lists": Tables(Table({
    "id": Text(), "file": Text(), "kind": Text(), "name": Text(), "source": Text(),
    "status": Text(), "extends": Text(), "valid_from": Date(), "valid_to": Date(),
}, required=("id", "file", "kind", "valid_from", "valid_to", "source"), what="a list entry",
    rule=_list_dates), by_id=True, min_len=1)}, required=("lists",), what="the list index")


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
    index = read_checked(directory / "lists.toml", LISTS_FILE)
    out = {}
    for i, meta in enumerate(index.get("lists", [])):
        where = f"{directory / 'lists.toml'}: lists[{i}]"
        for key in ("id", "file", "kind", "valid_from", "valid_to", "source"):
            if key not in meta:
                raise RuleFileError(f"{where}: missing '{key}'")
        items = pd.read_csv(directory / meta["file"], dtype={"hilist_code": str})
        if "hilist_code" not in items or items["hilist_code"].duplicated().any():
            raise RuleFileError(f"{directory / meta['file']}: needs a unique hilist_code column")
        if "extends" in meta:
            parent = out.get(meta["extends"])
            if parent is None:
                raise RuleFileError(f"{where}: extends '{meta['extends']}', which is not "
                                    f"listed before it")
            unknown = sorted(set(items["hilist_code"]) - set(parent.items["hilist_code"]))
            if unknown:
                raise RuleFileError(f"{directory / meta['file']}: hilist_code "
                                    f"{', '.join(unknown[:5])} not in '{parent.id}'")
            both = (set(items.columns) & set(parent.items.columns)) - {"hilist_code"}
            if both:
                raise RuleFileError(f"{directory / meta['file']}: columns {sorted(both)} are "
                                    f"already in '{parent.id}'; an extension adds columns")
            items = parent.items.merge(items, on="hilist_code", how="left")
        out[meta["id"]] = DrugList(meta["id"], meta["kind"], meta.get("name", meta["id"]),
                                   meta["valid_from"], meta["valid_to"], meta["source"], items)
    return out


def line_benefit_lists(product, lists: dict[str, DrugList] | None = None) -> list[tuple]:
    """(benefit, its DrugList) for each of a product's benefits that pays on list lines
    (a list the basis lacks is left to :class:`puhui.benefits.quantities.LineMatcher`
    to report)."""
    lists = lists if lists is not None else load_lists()
    return [(b, lists[b.lines.list]) for b in product.benefits
            if b.lines and b.lines.list in lists]


AGREEMENT_COLUMNS = ("agreement", "agreement_comparator_median_months",
                     "agreement_drug_median_months", "agreement_share", "agreement_max_years")


def agreements_of(dl: DrugList, directory: str | Path | None = None) -> dict:
    """The outcome-based agreements of a list's drugs: {hilist_code:
    :class:`puhui.survival.agreements.Agreement`}; a bad row is a RuleFileError naming
    the list, the drug and the column."""
    from puhui.money import ratio_to_bp
    from puhui.survival.agreements import ENDPOINTS, Agreement

    it = dl.items
    if "agreement" not in it.columns:
        return {}
    where = f"drug list '{dl.id}' (actuarial/drugs/)"
    out = {}
    for _, row in it[it["agreement"].notna() & (it["agreement"].astype(str).str.strip() != "")
                     ].iterrows():
        code = str(row["hilist_code"])
        kind = str(row["agreement"]).strip()
        if kind not in ENDPOINTS:
            raise RuleFileError(f"{where}: drug {code}: agreement = {kind!r}; give one of "
                                f"{', '.join(ENDPOINTS)} or leave it empty")

        def num(col, default=None):
            v = row.get(col)
            if v is None or pd.isna(v):
                if default is None:
                    raise RuleFileError(f"{where}: drug {code}: {col} is empty; an "
                                        f"agreement '{kind}' needs it")
                return default
            try:
                return float(v)
            except (TypeError, ValueError):
                raise RuleFileError(f"{where}: drug {code}: {col} = {v!r} is not a "
                                    f"number") from None

        comparator = num("agreement_comparator_median_months") if kind == "os" else None
        share = num("agreement_share") if kind in ("os", "effect") else 0.0
        if not 0 <= share <= 1:
            raise RuleFileError(f"{where}: drug {code}: agreement_share = {share} is not a "
                                f"ratio from 0 to 1")
        try:
            out[code] = Agreement(code, comparator, num("agreement_drug_median_months"),
                                  ratio_to_bp(share), endpoint=kind,
                                  max_years=num("agreement_max_years", 5.0))
        except ValueError as e:
            raise RuleFileError(f"{where}: {e}") from None
    return out
