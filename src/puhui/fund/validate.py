"""``puhui validate``: every rule of the fund-data contract, checked and explained.

Each broken rule becomes one :class:`Problem`: the file, the column, the rule, how many
rows break it, a few example ids (pseudonymous keys only, never a value from a
privacy finding) and what to do. The checks follow :mod:`puhui.fund.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.fund import privacy
from puhui.fund.files import EngineFrame, open_columns
from puhui.fund.schema import (
    FUND_PAYMENTS,
    PERSONS,
    POLICIES,
    SETTLEMENT_LINES,
    SETTLEMENT_MONEY,
    SETTLEMENTS,
    TABLES,
    Column,
    Table,
)

MAX_EXAMPLES = 3


@dataclass
class Problem:
    file: str
    column: str
    rule: str
    count: int
    fix: str
    examples: list[str] = field(default_factory=list)
    kind: str = "error"  # "error" or "privacy"
    #: positions of the breaking rows (row rules only; None for file rules), so a claims
    #: batch can quarantine exactly them; they are rows of ``rows_in`` (default: ``file``)
    rows: np.ndarray | None = None
    rows_in: str | None = None

    @property
    def rows_file(self) -> str:
        return self.rows_in or self.file

    def message(self) -> str:
        head = "privacy" if self.kind == "privacy" else "rule"
        rows = f"{self.count} row{'s' if self.count != 1 else ''}" if self.count else "the column"
        ex = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return (f"{self.file}: column {self.column}: {head} '{self.rule}' broken by "
                f"{rows}{ex}. Fix: {self.fix}")


@dataclass
class Report:
    directory: Path
    problems: list[Problem] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    #: the tables in engine types, when asked for (``validate_dir(..., keep=True)``), so
    #: a caller that goes on to use the data does not read it twice
    typed: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    #: with ``keep``: for each settlement, the row of its person in persons.parquet (-1
    #: for none), found by the check that the person exists and kept for callers
    settlement_person_rows: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, table: Table, column: str, rule: str, mask, keys: pd.Series | None,
            fix: str, positions: np.ndarray | None = None) -> None:
        """Record a problem for the rows where ``mask`` is true (nothing if none).
        ``positions`` maps the mask to file rows when it covers a subset of them."""
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        if n == 0:
            return
        ex = [] if keys is None else [str(k) for k in keys[mask].head(MAX_EXAMPLES)]
        rows = np.flatnonzero(mask) if positions is None else np.asarray(positions)[mask]
        self.problems.append(Problem(table.file, column, rule, n, fix, ex, rows=rows))


def _text(s: pd.Series) -> pd.Series:
    return s if pd.api.types.infer_dtype(s, skipna=True) == "string" else s.astype(str)


def _key(table: Table, df: pd.DataFrame) -> pd.Series:
    k = table.key[0]
    s = _text(df[k]) if k in df.columns else pd.Series(df.index.astype(str))
    if len(table.key) > 1 and all(c in df.columns for c in table.key):
        s = s + "#" + _text(df[table.key[1]])
    return s.reset_index(drop=True)


# --- per-column type checks -------------------------------------------------------------

def _check_column(rep: Report, table: Table, col: Column, s: pd.Series, keys) -> bool:
    """Type, null, code and range checks for one column. True when the column is usable."""
    nulls = s.isna().to_numpy()
    usable = True
    if nulls.any() and not col.nullable:
        rep.add(table, col.name, "not null", nulls, keys,
                "fill the missing values or drop those rows; this column may not be empty")
        usable = False  # cross-file rules need the column whole
    present = ~nulls
    kind = col.kind
    if kind == "money":
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            rep.add(table, col.name, "money is a number of yuan", present, keys,
                    "write amounts as numbers (yuan with two decimals), not text")
            return False
        x = s.to_numpy(dtype="float64")
        cents = x * 100
        bad = present & (np.abs(cents - np.rint(cents)) > 1e-6)
        rep.add(table, col.name, "at most two decimals (whole fen)", bad, keys,
                "round amounts to the fen (0.01 yuan)")
        if col.min_value is not None:
            rep.add(table, col.name, f"money >= {col.min_value}", present & (x < col.min_value),
                    keys, "amounts here cannot be negative")
    elif kind == "int":
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            rep.add(table, col.name, "whole number", present, keys, "write whole numbers")
            return False
        x = s.to_numpy(dtype="float64")
        rep.add(table, col.name, "whole number", present & (x != np.floor(x)), keys,
                "write whole numbers")
        lo, hi = col.min_value, col.max_value
        if lo is not None:
            rep.add(table, col.name, f"value >= {lo}", present & (x < lo), keys,
                    f"values must be at least {lo}")
        if hi is not None:
            rep.add(table, col.name, f"value <= {hi}", present & (x > hi), keys,
                    f"values must be at most {hi}")
    elif kind == "bool":
        if not pd.api.types.is_bool_dtype(s):
            vals = s.dropna()
            if not vals.map(lambda v: isinstance(v, (bool, np.bool_))).all():
                rep.add(table, col.name, "true/false", present, keys,
                        "write a boolean column (true/false)")
                return False
    elif kind == "date":
        if not pd.api.types.is_datetime64_any_dtype(s):
            try:
                pd.to_datetime(s)
            except (TypeError, ValueError):
                rep.add(table, col.name, "date", present, keys,
                        "write a Parquet date or timestamp at midnight")
                return False
    elif kind in ("string", "code"):
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            rep.add(table, col.name, "text", present, keys,
                    "write ids and codes as text (for example \"310\", not 310)")
            return False
        if kind == "code":
            txt = s.astype(object).where(s.isna(), s.astype(str))
            bad = present & ~txt.isin(col.codes).to_numpy()
            rep.add(table, col.name, f"code in {{{', '.join(col.codes)}}}", bad, keys,
                    "use the national code; see docs/data-schema.md for the list")
    return usable


def _privacy_problems(rep: Report, table: Table, findings) -> None:
    for f in findings:
        rep.problems.append(Problem(
            table.file, f.column, f"anonymised data: no {f.what}", f.count,
            "remove the column or replace it with pseudonymous codes; "
            "values are not shown", kind="privacy"))


def _read_checked(rep: Report, directory: Path, table: Table) -> pd.DataFrame | None:
    """One file read, scanned for personal data, type-checked and converted to engine
    types one column at a time (so only one raw column is held at once); ``None`` when
    the file is absent or a column is not usable. Problems are reported in the order of
    the schema's columns."""
    opened = open_columns(directory, table)
    if opened is None:
        return None
    names, n, get = opened
    rep.rows[table.name] = n
    _privacy_problems(rep, table, privacy.scan_column_names(names))
    key_cols = [k for k in table.key if k in names]
    # the key columns are read once: kept here for the problems' examples, then checked
    # and converted in their turn below (a second read would hold their text twice)
    raw_keys = {k: get(k) for k in key_cols}
    keys = _key(table, pd.DataFrame(raw_keys, index=pd.RangeIndex(n)))
    first = len(rep.problems)
    usable = True
    for col in table.columns:
        if col.name not in names and col.required:
            rep.problems.append(Problem(table.file, col.name, "column present", 0,
                                        f"add the column '{col.name}' ({col.kind}: "
                                        f"{col.meaning})"))
            usable = False
    out = EngineFrame(table, names, n)
    for name in names:
        s = raw_keys.pop(name) if name in raw_keys else get(name)
        _privacy_problems(rep, table, privacy.scan_values(str(name), s))
        try:
            col = table.column(name)
        except KeyError:
            col = None
        if col is not None:
            usable &= _check_column(rep, table, col, s, keys)
        if usable:
            out.add(name, s)
        del s
    order = {c.name: i for i, c in enumerate(table.columns)}
    mine = rep.problems[first:]
    mine.sort(key=lambda p: (p.kind == "privacy", order.get(p.column, len(order))))
    rep.problems[first:] = mine
    return out.frame() if usable else None


class KeyIndex:
    """A key column hashed once, together with every column that refers to it.

    ``pd.factorize`` over the keys and the referring values in one pass gives: which key
    rows repeat an earlier key (:attr:`duplicated`) and, for each referring value, the
    row of its key (:meth:`positions`, -1 where there is none). Settlement ids are
    millions of strings, so one hash pass instead of one per rule matters.
    """

    def __init__(self, keys: pd.Series, *refs: pd.Series):
        # a categorical referring column (settlements' psn_no) takes part by its
        # categories; its rows' codes are mapped through them afterwards
        cat = [isinstance(r.dtype, pd.CategoricalDtype) for r in refs]
        parts = [np.asarray(keys.to_numpy(dtype=object))] + \
            [np.asarray((r.cat.categories if c else r).to_numpy(dtype=object))
             for r, c in zip(refs, cat)]
        codes, uniques = pd.factorize(np.concatenate(parts) if len(parts) > 1 else parts[0])
        n = len(keys)
        kc = codes[:n]
        first = np.full(len(uniques), -1, dtype="int64")
        ok = np.flatnonzero(kc >= 0)[::-1]          # reversed: the earliest row wins
        first[kc[ok]] = ok
        self.first = first
        self.duplicated = np.zeros(n, dtype=bool)
        self.duplicated[kc >= 0] = first[kc[kc >= 0]] != np.flatnonzero(kc >= 0)
        bounds = np.cumsum([n] + [len(p) for p in parts[1:]])
        self._refs = []
        for i, r in enumerate(refs):
            c = codes[bounds[i]:bounds[i + 1]]
            if cat[i]:           # category codes -> row codes (-1, a null, stays -1)
                rc = r.cat.codes.to_numpy()
                c = np.where(rc >= 0, c[np.maximum(rc, 0)] if len(c) else -1, -1)
            self._refs.append(c)

    def positions(self, i: int) -> np.ndarray:
        """Row of the key for each value of the ``i``-th referring column, -1 if none."""
        c = self._refs[i]
        return np.where(c >= 0, self.first[np.maximum(c, 0)], -1)


def _dupes(rep: Report, table: Table, df: pd.DataFrame, cols: list[str],
           dup: np.ndarray | None = None) -> None:
    if dup is None:
        dup = df.duplicated(cols, keep="first").to_numpy()
    rep.add(table, "+".join(cols), "unique", dup, _key(table, df),
            f"each {'/'.join(cols)} must appear once; remove or renumber the repeats")


# --- cross-row and cross-file rules --------------------------------------------------------

def _rules_persons(rep: Report, p: pd.DataFrame, psn: KeyIndex) -> None:
    t, k = PERSONS, _key(PERSONS, p)
    _dupes(rep, t, p, ["psn_no"], psn.duplicated)
    rep.add(t, "retired", "residents are never retired",
            (p["insutype"] == "390") & p["retired"], k,
            "set retired=false for residents (insutype 390)")
    dd = p["death_date"]
    rep.add(t, "death_date", "death not before birth year",
            dd.notna() & (dd.dt.year < p["birth_year"]), k, "check death_date and birth_year")


def _rules_policies(rep: Report, pol: pd.DataFrame, who: np.ndarray | None) -> None:
    t, k = POLICIES, _key(POLICIES, pol)
    _dupes(rep, t, pol, ["policy_no"])
    rep.add(t, "end_date", "start_date <= end_date", pol["start_date"] > pol["end_date"], k,
            "the cover period must end on or after its start")
    if who is not None:
        rep.add(t, "psn_no", "person in persons.parquet", who < 0, k,
                "every insured person needs a row in persons.parquet")
    s = pol.sort_values(["psn_no", "product_id", "start_date"], kind="stable")
    same = (s["psn_no"].to_numpy()[1:] == s["psn_no"].to_numpy()[:-1]) & \
           (s["product_id"].to_numpy()[1:] == s["product_id"].to_numpy()[:-1])
    overlap = same & (s["start_date"].to_numpy()[1:] <= s["end_date"].to_numpy()[:-1])
    mask = np.zeros(len(s), bool)
    mask[1:] = overlap
    rep.add(t, "start_date", "no overlapping policies of one person and product",
            mask, s["policy_no"].reset_index(drop=True),
            "a person holds one policy of a product at a time; fix the dates or merge them",
            s.index.to_numpy())


def _rules_settlements(rep: Report, st: pd.DataFrame, persons: pd.DataFrame | None,
                       who: np.ndarray | None, ids: KeyIndex) -> None:
    """``who``: row in persons of each settlement's person; ``ids``: setl_id hashed with
    the reversals' refund_of as its first referring column."""
    t, k = SETTLEMENTS, _key(SETTLEMENTS, st)
    _dupes(rep, t, st, ["setl_id"], ids.duplicated)
    if who is not None:
        rep.add(t, "psn_no", "person in persons.parquet", who < 0, k,
                "every patient needs a row in persons.parquet")
        death = persons["death_date"].to_numpy()[np.maximum(who, 0)]
        after = (who >= 0) & ~pd.isna(death) & (st["setl_time"].to_numpy() > death)
        rep.add(t, "setl_time", "no settlement after the person's death", after, k,
                "check setl_time against persons.death_date")
    money = {c: st[c].to_numpy() for c in SETTLEMENT_MONEY}
    funds = sum(money[c] for c in FUND_PAYMENTS)
    rep.add(t, "medfee_sumamt",
            "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt",
            money["medfee_sumamt"] != funds + money["psn_part_amt"], k,
            "the fund payments and the person's share must add up to the total, to the fen")
    is_rev = st["refund_of"].notna().to_numpy()
    for c in SETTLEMENT_MONEY:
        rep.add(t, c, "amount >= 0 (except on reversals)", ~is_rev & (money[c] < 0), k,
                "negative amounts belong only on reversal rows (refund_of set)")
    inlist = money["psn_part_amt"] - money["fulamt_ownpay_amt"] - money["overlmt_selfpay"]
    rep.add(t, "psn_part_amt",
            "in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0",
            ~is_rev & (inlist < 0), k,
            "the person's share must include the out-of-list amounts")
    if not is_rev.any():
        return
    rev = st[is_rev]
    rev_rows = np.flatnonzero(is_rev)
    rk = _key(t, rev)
    pos = ids.positions(0)
    known = pos >= 0
    known[known] = ~is_rev[pos[known]]
    rep.add(t, "refund_of", "reverses an existing settlement", ~known, rk,
            "refund_of must name the setl_id of a settlement in this file "
            "(not another reversal)", rev_rows)
    rep.add(t, "refund_of", "a settlement is reversed at most once",
            rev["refund_of"].duplicated(keep="first").to_numpy(), rk,
            "remove the repeated reversal", rev_rows)
    if not known.any():
        return
    ok = rev[known]
    ok_rows = rev_rows[known]
    o = st.iloc[pos[known]]
    ok_k = _key(t, ok)
    rep.add(t, "psn_no", "a reversal belongs to the same person",
            ok["psn_no"].to_numpy() != o["psn_no"].to_numpy(), ok_k,
            "the reversal's psn_no must match the original's", ok_rows)
    neg = np.zeros(len(ok), bool)
    for c in SETTLEMENT_MONEY:
        neg |= ok[c].to_numpy() != -o[c].to_numpy()
    rep.add(t, "refund_of", "a reversal carries the negated amounts", neg, ok_k,
            "write the original's amounts with the opposite sign", ok_rows)
    rep.add(t, "setl_time", "a reversal is not before the original",
            ok["setl_time"].to_numpy() < o["setl_time"].to_numpy(), ok_k,
            "date the reversal on or after the original settlement", ok_rows)


def _rules_lines(rep: Report, ln: pd.DataFrame, st: pd.DataFrame | None,
                 pos: np.ndarray | None) -> None:
    """``pos``: row in settlements of each line's setl_id (-1 if none)."""
    t, k = SETTLEMENT_LINES, _key(SETTLEMENT_LINES, ln)
    _dupes(rep, t, ln, ["setl_id", "line_no"])
    if st is None or pos is None:
        return
    rep.add(t, "setl_id", "settlement in settlements.parquet", pos < 0, k,
            "each line must belong to a settlement")
    have = pos >= 0
    sums = pd.DataFrame({"pos": pos[have], "amount": ln["amount"].to_numpy()[have],
                         "pre": ln["preselfpay_amt"].to_numpy()[have]}).groupby("pos").sum()
    spos = sums.index.to_numpy()
    ids = st["setl_id"].iloc[spos].reset_index(drop=True)
    # these rules are about a settlement and its lines together: their rows are the
    # settlements' (a claims batch quarantines the settlement)
    n0 = len(rep.problems)
    rep.add(t, "amount", "lines sum to the settlement's medfee_sumamt",
            sums["amount"].to_numpy() != st["medfee_sumamt"].to_numpy()[spos], ids,
            "the lines of a settlement must add up to its total", spos)
    rep.add(t, "preselfpay_amt", "lines sum to the settlement's preselfpay_amt",
            sums["pre"].to_numpy() != st["preselfpay_amt"].to_numpy()[spos], ids,
            "class-B up-front shares must add up to the settlement's", spos)
    for p in rep.problems[n0:]:
        p.rows_in = SETTLEMENTS.file


def validate_dir(directory: str | Path, keep: bool = False) -> Report:
    """Check a fund-data folder against every rule of the contract. With ``keep`` the
    report also holds the tables in engine types (``report.typed``)."""
    directory = Path(directory)
    rep = Report(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder. Give the folder that holds "
                         f"persons.parquet, policies.parquet and settlements.parquet.")
    typed: dict[str, pd.DataFrame | None] = {}
    for table in TABLES:
        try:
            typed[table.name] = _read_checked(rep, directory, table)
        except InputError as exc:
            rep.problems.append(Problem(table.file, "-", "readable file", 0, str(exc)))
            typed[table.name] = None
    persons, pol, st, ln = (typed[t.name] for t in TABLES)
    who_pol = who_st = None
    if persons is not None:
        refs = [x["psn_no"] for x in (pol, st) if x is not None]
        psn = KeyIndex(persons["psn_no"], *refs)
        _rules_persons(rep, persons, psn)
        i = 0
        if pol is not None:
            who_pol, i = psn.positions(0), 1
        if st is not None:
            who_st = psn.positions(i)
    if pol is not None:
        _rules_policies(rep, pol, who_pol)
    line_pos = None
    if st is not None:
        refs = [st.loc[st["refund_of"].notna(), "refund_of"]]
        if ln is not None:
            refs.append(ln["setl_id"])
        ids = KeyIndex(st["setl_id"], *refs)
        _rules_settlements(rep, st, persons, who_st, ids)
        if ln is not None:
            line_pos = ids.positions(1)
    if ln is not None:
        _rules_lines(rep, ln, st, line_pos)
    # Privacy first: it is the most important thing to fix. When any column holds
    # personal data, no example id is shown anywhere: the ids themselves may be it.
    if any(p.kind == "privacy" for p in rep.problems):
        for p in rep.problems:
            p.examples = []
    rep.problems.sort(key=lambda p: p.kind != "privacy")
    if keep:
        rep.typed = typed
        rep.settlement_person_rows = who_st
    return rep
