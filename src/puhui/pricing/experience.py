"""Experience: a product's benefits applied to the fund data as if it had been in force.

For every person and calendar year of the data, the product's own benefit calculator
(:mod:`puhui.benefits.calculator`, the code claims pays with) is run over the year's
effective settlements under a notional policy covering the year, for everyone, enrolled
or not, so that models can be fitted on the whole population and weighted to the people
who actually enrol. One row per person-year, in year then person order::

    psn_no        = the person's id, a categorical over persons.parquet's ids
    person        = the person's row in persons.parquet (the key every join uses:
                    integers, not ten million strings)
    exposure      = days alive in the year / days in the year      (part years for deaths)
    died          = the person dies in the year (on 31 December too: out of next year)
    enrolled      = the person held a policy (of any product in the data) that year
    preexisting   = the enrolled policy's flag; for others, a main diagnosis starting with
                    one of the product's pre-existing ICD-10 prefixes in the look-back
                    years before the year (only as far back as the data reaches)
    preexisting_seen = that diagnosis rule for everyone, enrolled or not (the product's
                    own definition as the data shows it: what the enrolment models
                    read, so the enrolled and the others are judged alike)
    stays_prior   = inpatient stays in the previous calendar year (hospital-use history)
    stayed        = an inpatient stay in the year itself (next year's prior stay)
    preexisting_next = the diagnosis rule with the look-back ending with the year (next
                    year's ``preexisting_seen``: the state a mix for next year is priced
                    at)
    eligible_<b>, payout_<b>, claims_<b>, events_<b>  per benefit b (fen; claims =
                  settlements paid, events = settlements with an eligible amount)

Reversed settlements and their reversals are left out (net effect nil). Settlements on
which no benefit of the product can have an eligible amount (:func:`may_pay`: a general
outpatient visit for a product that covers stays and listed drugs) skip the calculator;
they would add nothing to any accumulator, count or amount, and they are most of the
data.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from puhui.benefits.calculator import adjudicate
from puhui.benefits.quantities import LineMatcher, settlement_quantities
from puhui.fund.files import FundData
from puhui.fund.schema import INPATIENT_MED_TYPES
from puhui.icd import matches_prefixes
from puhui.process_memory import release_free_memory
from puhui.products.model import Product
from puhui.sorted_search import search_sorted
from puhui.survival.mortality import alive_on, year_at_risk


def effective_settlements(st: pd.DataFrame) -> pd.DataFrame:
    """Settlements that stand: not reversals, not reversed (all of them when there is
    no refund_of column: :mod:`puhui.pricing.fund_data` has left those out already)."""
    if "refund_of" not in st.columns:
        return st
    return st[effective_mask(st)]


def effective_mask(st: pd.DataFrame) -> np.ndarray:
    """True for the settlements :func:`effective_settlements` keeps (no copy of the
    table: a caller combines it with its own conditions and takes only its columns)."""
    if "refund_of" not in st.columns:
        return np.ones(len(st), dtype=bool)
    reversed_ids = set(st["refund_of"].dropna())
    return (st["refund_of"].isna() & ~st["setl_id"].isin(reversed_ids)).to_numpy()


def person_years(persons: pd.DataFrame, years: list[int]) -> pd.DataFrame:
    """One row per person alive at the start of each year, with the exposure and
    whether they die in the year (``died``: a death on 31 December lives the whole
    year and still leaves next year's book); ``person``
    is the person's row in ``persons`` and ``psn_no`` a categorical over their ids (rows
    in year, then person order).

    Person a dies on 2024-07-01: 183 of the leap year's 366 days.

    >>> p = pd.DataFrame({"psn_no": ["a", "b"], "birth_year": [1950, 1990],
    ...                   "death_date": pd.to_datetime(["2024-07-01", None])})
    >>> person_years(p, [2024, 2025])[["psn_no", "year", "exposure", "died"]].round(4).values.tolist()
    [['a', 2024, 0.5, True], ['b', 2024, 1.0, False], ['b', 2025, 1.0, False]]
    """
    rows = []
    ids = pd.CategoricalDtype(pd.Index(persons["psn_no"].astype(str)))
    for y in years:
        alive, died, share = year_at_risk(persons["death_date"], y)
        rows.append(pd.DataFrame({
            "psn_no": pd.Categorical.from_codes(np.flatnonzero(alive), dtype=ids),
            "person": np.flatnonzero(alive), "year": y, "exposure": share, "died": died}))
    return pd.concat(rows, ignore_index=True)


def alive_at_start(persons: pd.DataFrame, year: int) -> np.ndarray:
    """True for the persons alive on 1 January of ``year`` (no death date, or one on or
    after that day): the people with a row in the person-year table that year."""
    return alive_on(persons["death_date"], f"{year}-01-01")


def preexisting_from_history(st: pd.DataFrame, year: int, codes: tuple[str, ...],
                             lookback_years: int) -> set[str]:
    """People with a main diagnosis on the product's pre-existing list in the look-back
    years before ``year`` (within the data)."""
    if not codes or lookback_years <= 0:
        return set()
    lo = pd.Timestamp(f"{year - lookback_years}-01-01")
    hi = pd.Timestamp(f"{year}-01-01")
    s = st[(st["setl_time"] >= lo) & (st["setl_time"] < hi)]
    hit = matches_prefixes(s["dise_code"], codes)
    return set(s.loc[hit, "psn_no"].astype(str))


def years_with_history(years, lookback_years: int, after: int | None = None) -> list[int]:
    """The data years a model that reads history (``prior_stay``, ``preexisting``) is
    fitted on: those after the first data year (and after ``after``, a launch year),
    preferring those with the full ``lookback_years`` of data before them when there are
    any. The first data year serves as look-back only: no one in it has a prior stay
    or a pre-existing diagnosis on record, so its sick sit in the healthy cells, and a
    model fitted on it spreads their cost over the healthy (and then adds the sick
    cells' cost on top when it prices people whose history it can see). A single data
    year is all there is: it is returned as it is.

    >>> years_with_history([2023, 2024, 2025], 3)
    [2024, 2025]
    >>> years_with_history([2021, 2022, 2023, 2024, 2025], 3)
    [2024, 2025]
    >>> years_with_history([2025], 3)
    [2025]
    """
    years = np.sort(np.unique(np.asarray(years, dtype=int)))
    first = int(years[0])
    later = years[years > max(first, after if after is not None else first)]
    full = later[later - first >= max(lookback_years, 1)]
    chosen = full if len(full) else later
    if after is None and not len(chosen):
        chosen = years
    return [int(y) for y in chosen]


def has_lines(st: pd.DataFrame, lines: pd.DataFrame | None) -> np.ndarray:
    """True for the settlements that have lines."""
    if lines is None or not len(lines):
        return np.zeros(len(st), dtype=bool)
    return st["setl_id"].isin(lines["setl_id"]).to_numpy()


def text_array(s: pd.Series) -> np.ndarray:
    """A column as an object array of ``str`` (nulls as "nan", as ``astype(str)``
    writes them); a categorical's rows refer to its categories' strings, none made."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.asarray(s.cat.categories.astype(str), dtype=object)
        codes = s.cat.codes.to_numpy()
        return np.where(codes >= 0, cats[np.maximum(codes, 0)] if len(cats) else "nan", "nan")
    return np.asarray(s.astype(str).to_numpy(), dtype=object)


def may_pay(product: Product, st: pd.DataFrame, with_lines: np.ndarray) -> np.ndarray:
    """True for settlements on which some benefit of ``product`` can have an eligible
    amount: its filter (med_type, hospital level) holds and its base is positive (a
    settlement quantity above 0, or for a line benefit, the settlement has lines:
    ``with_lines``). A filter on anything else (age, pre-existing, claim-free years) is
    not tested here, so the answer errs on the side of keeping a settlement.

    >>> from puhui.products.model import load_product, product_path
    >>> p = load_product(product_path("huhuibao-2025"))
    >>> st = pd.DataFrame({"setl_id": ["s1", "s2", "s3"], "med_type": ["11", "21", "11"],
    ...                    "hosp_lv": [3, 3, 1], "psn_part_amt": [5000, 90000, 0],
    ...                    "fulamt_ownpay_amt": [0, 10000, 0], "overlmt_selfpay": [0, 0, 0]})
    >>> may_pay(p, st, np.array([False, False, True])).tolist()   # s1: an outpatient visit
    [False, True, True]
    """
    n = len(st)
    keep = np.zeros(n, dtype=bool)
    q = settlement_quantities(st)
    attrs = {"med_type": text_array(st["med_type"]),
             "hosp_lv": st["hosp_lv"].to_numpy(dtype="int64")}
    for b in product.benefits:
        cond = b.layer.applies
        applies = (cond.mask(attrs, n) if cond is not None and cond.attributes <= attrs.keys()
                   else np.ones(n, dtype=bool))
        base = with_lines if b.lines else q[b.pays_on] > 0
        keep |= applies & base
    return keep


def settlement_years(data: FundData) -> list[int]:
    """The calendar years of the data's effective settlements."""
    if data.settlement_years is not None:
        return list(data.settlement_years)
    st = effective_settlements(data.settlements)
    return sorted(int(y) for y in st["setl_time"].dt.year.unique())


def _new_entrants(py: pd.DataFrame, year_of: np.ndarray, who: np.ndarray,
                  py_key: np.ndarray) -> np.ndarray:
    """Person-years whose notional policy is a new policy (the waiting period applies):
    enrolled that year and not the year before, the year before being in the data. In
    the data's first year the history is unknown and the notional policy counts as a
    renewal, as does every year of the people never enrolled: the waiting period takes
    off only the claims of entrants the data shows (prudent where entrants are unknown)."""
    enrolled = py["enrolled"].to_numpy(dtype=bool)
    before = np.isin(year_person_key(year_of - 1, who), py_key[enrolled])
    return enrolled & (year_of > year_of.min()) & ~before


def notional_policies(py: pd.DataFrame, rows: np.ndarray, product_id: str,
                      py_key: np.ndarray | None = None,
                      claim_free_years: np.ndarray | None = None) -> pd.DataFrame:
    """The notional policies of the person-year table ``py``'s ``rows``: the product over
    the calendar year, the row's ``preexisting`` flag, a renewal unless a new entrant
    (:func:`_new_entrants`), ``policy_no`` the row; with ``claim_free_years`` when given
    (a renewal's deductible steps). ``py_key``: the table's year-person keys, when the
    caller has them."""
    year_of = py["year"].to_numpy()
    who = py["person"].to_numpy()
    if py_key is None:
        py_key = year_person_key(year_of, who)
    years = pd.Series(year_of[rows]).astype(str)
    out = pd.DataFrame({
        "policy_no": rows, "psn_no": person_ids(py).to_numpy()[who[rows]],
        "product_id": product_id,
        "start_date": pd.to_datetime(years + "-01-01"),
        "end_date": pd.to_datetime(years + "-12-31"),
        "preexisting": py["preexisting"].to_numpy()[rows], "premium": 0, "consent": True,
        "renewal": ~_new_entrants(py, year_of, who, py_key)[rows]})
    if claim_free_years is not None:
        out["claim_free_years"] = np.asarray(claim_free_years, dtype="int64")
    return out


def experience(product: Product, data: FundData, events: bool = False,
               years: list[int] | None = None):
    """The experience table (see the module docstring). With ``events=True`` also the
    event table: one row per settlement and benefit with an eligible amount (setl_id,
    psn_no, person, year, benefit, eligible fen, inpatient), for severity models. ``years``:
    the data's years (default :func:`settlement_years`)."""
    st = effective_settlements(data.settlements)
    years = settlement_years(data) if years is None else years
    persons = data.persons
    py = person_years(persons, years)
    who = py["person"].to_numpy()
    py_key = year_person_key(py["year"].to_numpy(), who)      # ascending: year, person
    py["age"] = py["year"].to_numpy() - persons["birth_year"].to_numpy()[who]
    for col in ("gender", "insutype", "retired"):
        py[col] = persons[col].to_numpy()[who]
    # enrolment and the policy's pre-existing flag, by person and year
    index = py["psn_no"].cat.categories                      # the persons' ids
    pol = data.policies
    pol_pre = (pd.Series(pol["preexisting"].to_numpy())
               .groupby(year_person_key(pol["start_date"].dt.year.to_numpy(),
                                        person_rows(index, pol["psn_no"]))).max())
    py["enrolled"] = np.isin(py_key, pol_pre.index.to_numpy())
    history = {y: preexisting_from_history(st, y, product.preexisting_codes,
                                           product.preexisting_lookback_years)
               for y in sorted(set(years) | {y + 1 for y in years})}   # (years may have gaps)
    derived = np.zeros(len(py), dtype=bool)
    derived_next = np.zeros(len(py), dtype=bool)
    year_of = py["year"].to_numpy()
    for y in years:
        if history[y]:
            derived |= (year_of == y) & py["psn_no"].isin(history[y]).to_numpy()
        if history[y + 1]:
            derived_next |= (year_of == y) & py["psn_no"].isin(history[y + 1]).to_numpy()
    py["preexisting"] = np.where(py["enrolled"],
                                 pol_pre.reindex(py_key, fill_value=False).to_numpy(dtype=bool),
                                 derived)
    py["preexisting_seen"] = derived
    py["preexisting_next"] = derived_next
    stays = st[st["med_type"].astype(str).isin(INPATIENT_MED_TYPES)]
    per_year = pd.Series(year_person_key(stays["setl_time"].dt.year.to_numpy(),
                                         person_rows(index, stays["psn_no"]))).value_counts()
    py["stays_prior"] = per_year.reindex(year_person_key(year_of - 1, who),
                                         fill_value=0).to_numpy()
    py["stayed"] = per_year.reindex(py_key, fill_value=0).to_numpy() > 0
    # notional policies: the product's terms over every person-year of the people with a
    # settlement it may pay (each of their years, so renewals stay renewals); policy_no
    # is the person-year's row
    st = st[may_pay(product, st, has_lines(st, data.lines))]
    st_who = person_rows(index, st["psn_no"])
    covered = np.flatnonzero(np.isin(who, np.unique(st_who)))
    notional = notional_policies(py, covered, product.id, py_key=py_key)
    dec = adjudicate(product, st, notional, data.lines, matcher=LineMatcher(product))
    agg = dec.by_policy()
    at = agg.index.to_numpy(dtype="int64")
    for c in agg.columns:
        col = np.zeros(len(py), dtype="int64")
        col[at] = agg[c].to_numpy()
        py[c] = col
    if not events:
        return py
    has = dec.settlements["policy_no"].notna().to_numpy()
    inpatient = st["med_type"].astype(str).isin(INPATIENT_MED_TYPES).to_numpy()
    parts = []
    for b in dec.benefits:
        e = dec.eligible[b]
        on = has & (e > 0)
        parts.append(pd.DataFrame({
            "setl_id": dec.settlements["setl_id"].to_numpy()[on],
            "psn_no": pd.Categorical.from_codes(st_who[on], dtype=py["psn_no"].dtype),
            "person": st_who[on],
            "year": dec.settlements["setl_time"].dt.year.to_numpy()[on],
            "benefit": b, "eligible": e[on], "inpatient": inpatient[on]}))
    return py, pd.concat(parts, ignore_index=True)


def year_person_key(year, person) -> np.ndarray:
    """One int64 per (year, person row): ``year << 32 | person``; ascending in year, then
    person, like the person-year table's rows."""
    return (np.asarray(year, dtype="int64") << 32) | np.asarray(person, dtype="int64")


def person_ids(frame: pd.DataFrame) -> pd.Index:
    """The persons' ids of a person-year table: its ``psn_no`` categories (persons.parquet's
    ids, in its order) or, for a table of plain ids, its distinct ids; positions in this
    index are the integer people :func:`person_rows` gives."""
    ids = frame["psn_no"]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids.cat.categories
    return pd.Index(pd.unique(ids.astype(str)))


def person_rows(index: pd.Index, psn_no: pd.Series) -> np.ndarray:
    """Each ``psn_no``'s position in ``index`` (persons' ids as text; -1 if absent). A
    categorical is looked up once per category; one whose categories are ``index``
    itself (the persons' ids, as pricing's tables have them) gives its codes.

    >>> ids = pd.Index(["a", "b", "c"])
    >>> person_rows(ids, pd.Series(pd.Categorical.from_codes([2, 0, -1], categories=ids))).tolist()
    [2, 0, -1]
    >>> person_rows(ids, pd.Series(["c", "x"])).tolist()
    [2, -1]
    """
    if isinstance(psn_no.dtype, pd.CategoricalDtype):
        codes = psn_no.cat.codes.to_numpy()
        cats = psn_no.cat.categories
        if cats is index or (len(cats) == len(index) and cats.dtype == object
                             and index.dtype == object and cats.equals(index)):
            return codes.astype("int64")      # (ids are unique: their own positions)
        at = index.get_indexer(psn_no.cat.categories.astype(str))
        return np.where(codes >= 0, at[np.maximum(codes, 0)] if len(at) else -1, -1)
    return index.get_indexer(psn_no.astype(str))


def positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each of ``values``' position in ``keys`` (unique; -1 where absent): a binary
    search when ``keys`` are ascending integers (no hash table of ten million entries), else a
    pandas Index lookup.

    >>> positions(np.array([3, 5, 9]), np.array([9, 4, 3])).tolist()
    [2, -1, 0]
    """
    keys, values = np.asarray(keys), np.asarray(values)
    if keys.dtype.kind in "iu" and len(keys) and bool(np.all(keys[1:] > keys[:-1])):
        at = np.minimum(search_sorted(keys, values), len(keys) - 1)
        return np.where(keys[at] == values, at, -1)
    return pd.Index(keys).get_indexer(values)


def person_year_rows(frame: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """The row of ``frame`` (a person-year table) holding each row's person and year of
    ``other`` (-1 where none), by the integer ``person`` column when both have it (a
    binary search when ``frame`` is in year, person order), else by ``psn_no``."""
    if "person" in frame.columns and "person" in other.columns:
        return positions(year_person_key(frame["year"].to_numpy(), frame["person"].to_numpy()),
                         year_person_key(other["year"].to_numpy(), other["person"].to_numpy()))
    key = pd.MultiIndex.from_arrays([frame["psn_no"].astype(str), frame["year"]])
    return key.get_indexer(pd.MultiIndex.from_arrays([other["psn_no"].astype(str),
                                                      other["year"]]))


#: People per block of :func:`experience_in_blocks`.
BLOCK_PERSONS = 62_500

def _cut_block(c: dict, b: int) -> tuple[int, FundData]:
    """Block ``b``'s people with their policies, settlements and lines (its first
    person's row in persons.parquet, and the data)."""
    lo, hi = b * c["size"], (b + 1) * c["size"]
    data = c["data"]
    ln = data.lines
    persons = data.persons.iloc[lo:hi]
    rows = c["st_order"][c["st_bounds"][b]:c["st_bounds"][b + 1]]
    st = data.settlements.iloc[rows]
    # psn_no as a categorical over the block's people (not all of them), in the
    # settlements and the policies alike: a lookup of a block's ids meets 62,500
    # categories, not every person's (over everyone's ids it was an eighth of price())
    ids = persons["psn_no"].to_numpy()
    st = st.assign(psn_no=pd.Categorical.from_codes(c["st_who"][rows] - lo, categories=ids))
    mine = (c["pol_who"] >= lo) & (c["pol_who"] < hi)
    pol = data.policies[mine]
    pol = pol.assign(psn_no=pd.Categorical.from_codes(c["pol_who"][mine] - lo, categories=ids))
    part = FundData(
        persons, pol, st,
        ln[(c["ln_who"] >= lo) & (c["ln_who"] < hi)] if ln is not None and len(ln) else ln)
    return lo, part


def _block_experience(shared: dict, piece: tuple[int, FundData]):
    """One block's person-years and events as arrays (people numbered over everyone)."""
    lo, part = piece
    py, ev = experience(shared["product"], part, events=True, years=shared["years"])
    py["person"] += lo
    ev["person"] += lo
    return _arrays(_narrow(_without(py, shared["drop"]))), _arrays(_narrow(ev))


def _arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A block's table sent back as one array per column, so the parent can free each
    column of every block as soon as it is joined; without psn_no, made again from
    ``person`` over everyone's ids (a block's ids would be strings unpickled in the
    parent)."""
    return {c: frame[c].to_numpy() for c in frame.columns if c != "psn_no"}


def experience_in_blocks(product: Product, data: FundData, block_persons: int | None = None,
                         workers: int | None = None, drop: tuple[str, ...] = ()):
    """:func:`experience` with its events, one block of ``block_persons`` people
    (default :data:`BLOCK_PERSONS`; in persons.parquet's order) at a time, in
    ``workers`` processes (default: the :mod:`puhui.execution` in force: two forked
    processes on two cores or more, or a Dask cluster), so the
    calculator's working arrays are a block's: the same tables in the same order (every
    quantity is per person; tested against one block), with the integer columns of
    :data:`NARROW_COLUMNS` held narrow. ``drop``: prefixes of person-year columns the
    caller does not need (ten million rows of each are not sent back)."""
    block_persons = block_persons or BLOCK_PERSONS
    key = _memo_key(product, data, block_persons, workers, drop)
    shared = _SHARED
    if shared is not None and shared.key == key:
        if shared.tables is None:
            tables = _experience_in_blocks(product, data, block_persons, workers, drop)
            if not shared.keep:
                return tables
            shared.tables = tables
        if shared.keep:
            # the caller gets payout columns of its own (the realised cost re-pays rows
            # in place); the tables stay for the later callers
            return tuple(_own_tables(t) for t in shared.tables)
        tables, shared.tables = shared.tables, None        # the last user: its alone
        return tables
    cut = shared.cut_year(product, data, block_persons, workers, drop) if shared else None
    if cut is not None:
        # the data before ``cut`` (the backtest's price of the last year): the shared
        # experience's rows of the years before it
        if shared.tables is None:
            full = shared.data
            shared.tables = _experience_in_blocks(product, full, block_persons, workers,
                                                  drop)
        py, ev = shared.tables
        return (_rows_of(py, np.flatnonzero(py["year"].to_numpy() < cut)),
                _rows_of(ev, np.flatnonzero(ev["year"].to_numpy() < cut)))
    return _experience_in_blocks(product, data, block_persons, workers, drop)


class SharedExperience:
    """What :func:`experience_shared` holds: the ``key`` of the experience it shares
    and its ``data``, whether calls still ``keep`` the tables, the ``tables`` once
    made, and the ``cuts`` of the data (:func:`note_cut`: the data before a year, by
    its tables' identity)."""

    def __init__(self, key: tuple, data: FundData):
        self.key, self.data, self.keep, self.tables, self.cuts = key, data, True, None, {}
        # the past policies' payouts judged under their own terms on ``data``
        # (:func:`puhui.pricing.enrolment.paid_under_own_terms`), while calls keep them
        self.own_paid: dict | None = None

    def cut_of(self, data: FundData) -> int | None:
        """The year ``data`` is the shared data cut before (:func:`note_cut`), while
        calls keep the tables; else None."""
        if not self.keep:
            return None
        held = self.cuts.get(_frames(data))
        return None if held is None else held[0]

    def stop_keeping(self) -> None:
        """The next call of the shared experience is its last user: it gets the tables
        themselves (computed then if none were kept), and they are no longer held here."""
        self.keep = False
        self.cuts = {}

    def cut_year(self, product, data: FundData, block_persons, workers, drop) -> int | None:
        """The year ``data`` is the shared data cut before (:func:`note_cut`), when the
        rest of the call is the shared one's; else None."""
        if not self.keep:
            return None
        held = self.cuts.get(_frames(data))
        if held is None:
            return None
        year, _ = held
        key = _memo_key(product, self.data, block_persons, workers, drop)
        return year if key == self.key else None


def note_cut(data: FundData, cut: FundData, year: int) -> None:
    """``cut`` is ``data`` before ``year`` (:func:`puhui.pricing.backtest.data_before`:
    settlements and policies dated before it, every person, the years before it). While
    :func:`experience_shared` is open on ``data`` and still keeps, the experience of
    ``cut`` is the shared experience's rows of the years before ``year``: every column
    of a person-year reads its own year and the years before it (prior stays, the
    pre-existing look-back, renewal), and a notional policy pays the settlements of its
    calendar year (tested against the experience made on the cut data)."""
    shared = _SHARED
    if (shared is not None and shared.keep and _frames(data) == _frames(shared.data)
            and cut.persons is data.persons and year > min(settlement_years(data), default=year)):
        shared.cuts[_frames(cut)] = (year, cut)      # (the tables held: their ids stay)


def _frames(data: FundData) -> tuple:
    return (id(data.persons), id(data.policies), id(data.settlements), id(data.lines),
            tuple(settlement_years(data)))


def _rows_of(t: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``t``'s ``rows`` as a table of its own (copies; categoricals kept as such,
    columns not consolidated, as :func:`_with_ids` makes them)."""
    out = {}
    for c in t.columns:
        s = t[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical.from_codes(s.cat.codes.to_numpy()[rows], dtype=s.dtype)
        else:
            out[c] = s.to_numpy()[rows]
    return pd.DataFrame(out, copy=False)


#: The :class:`SharedExperience` of the :func:`experience_shared` open, if any.
_SHARED: SharedExperience | None = None


@contextlib.contextmanager
def experience_shared(product: Product, data: FundData, drop: tuple[str, ...] = ()):
    """Within: :func:`experience_in_blocks` of ``product`` on ``data`` (the same
    product, or it with its policy period moved; the same persons, policies,
    settlements and lines objects, unchanged, the same years; default block size and
    workers) with ``drop`` is made once and kept for every such call until
    ``stop_keeping()``: each caller until then gets tables whose ``payout_`` columns
    are its own copies (the others are the same arrays: read them, do not write them);
    the first call after it gets the tables themselves, and the memory is then its
    alone. A call on ``data`` cut before a year (:func:`note_cut`) gets the rows of the
    years before it (copies), the tables made first if they are not yet. Other calls
    are computed as usual. Yields the :class:`SharedExperience`.

    ``puhui price`` opens it around its backtest and its pricing: the backtest's price of
    the last data year reads the data before it, its realised cost the product's
    calculator on the whole data, and the price its own experience on the whole data:
    one experience made for the three (pricing.json byte for byte the same;
    tests/test_price_speed17.py)."""
    global _SHARED
    before = _SHARED
    _SHARED = SharedExperience(_memo_key(product, data, BLOCK_PERSONS, None, drop), data)
    try:
        yield _SHARED
    finally:
        _SHARED = before


def _memo_key(product, data: FundData, block_persons: int, workers, drop) -> tuple:
    """What an experience is made of, by identity. The product counts by its fields
    but its policy period: a product with its period moved to another year (the
    backtest's, :func:`puhui.pricing.backtest.product_for_year`) holds the same terms,
    and the experience puts every person-year under notional policies of its calendar
    year, whatever the product's own period."""
    return (terms_key(product), id(data.persons), id(data.policies), id(data.settlements),
            id(data.lines), tuple(settlement_years(data)), block_persons, workers,
            tuple(drop))


def terms_key(product) -> tuple:
    """A product by the identity of its fields but its policy period (see
    :func:`_memo_key`)."""
    import dataclasses

    return tuple(id(getattr(product, f.name)) for f in dataclasses.fields(product)
                 if f.name not in ("start", "end"))


def _own_tables(t: pd.DataFrame) -> pd.DataFrame:
    """A table over ``t``'s arrays but for copies of its ``payout_`` columns."""
    return pd.DataFrame({c: (t[c].to_numpy().copy() if c.startswith("payout_") else t[c])
                         for c in t.columns}, copy=False)


def _experience_in_blocks(product: Product, data: FundData, block_persons: int, workers,
                          drop: tuple[str, ...]):
    from puhui.execution import map_blocks
    from puhui.fund.validate import PersonKeys

    years = settlement_years(data)
    persons = data.persons
    n = len(persons)
    if n <= block_persons:
        py, ev = experience(product, data, events=True, years=years)
        return _narrow(_without(py, drop)), _narrow(ev)
    st, ln = data.settlements, data.lines
    ps = st["psn_no"]
    if (isinstance(ps.dtype, pd.CategoricalDtype) and len(ps.cat.categories) == n
            and bool((ps.cat.categories.to_numpy() == persons["psn_no"].to_numpy()).all())):
        st_who = ps.cat.codes.to_numpy().astype("int64")     # codes are persons' rows
        pol_who = person_rows(ps.cat.categories, data.policies["psn_no"])
    else:
        keys = PersonKeys(persons["psn_no"])
        st_who = keys.rows(ps)
        pol_who = keys.rows(data.policies["psn_no"])
    st_order = np.argsort(st_who, kind="stable")     # file order within each person
    n_blocks = -(-n // block_persons)
    setl_ids = st["setl_id"].to_numpy()
    ln_who = None
    if ln is not None and len(ln):
        r = positions(setl_ids, ln["setl_id"].to_numpy())
        ln_who = np.where(r >= 0, st_who[np.maximum(r, 0)], -1)
    source = {"data": data, "size": block_persons, "pol_who": pol_who,
              "st_order": st_order, "st_who": st_who,
              "st_bounds": np.searchsorted(st_who[st_order],
                                           np.arange(n_blocks + 1) * block_persons),
              "ln_who": ln_who}
    shared = {"product": product, "years": years, "drop": tuple(drop)}
    # each block's person-years go straight to their place in the table (year, then
    # person: a block's rows of a year follow the earlier blocks' rows of that year), so
    # the parent holds the table and one block, not every block and then the table
    per_year = [int(alive_at_start(persons, y).sum()) for y in years]
    cursor = np.cumsum([0, *per_year])[:-1].astype("int64")
    end = cursor + np.asarray(per_year, dtype="int64")
    total = int(sum(per_year))
    cols: dict[str, np.ndarray] = {}
    evs = []
    for py_b, ev_b in map_blocks(_block_experience, n_blocks, shared, source=source,
                                 cut=_cut_block, workers=workers, after=_trim):
        year_b = py_b["year"]
        at = [np.flatnonzero(year_b == y) for y in years]
        for name in list(py_b):
            v = py_b.pop(name)
            if name not in cols:
                cols[name] = np.empty(total, dtype=v.dtype)
            for i, rows in enumerate(at):
                cols[name][cursor[i]:cursor[i] + len(rows)] = v[rows]
        cursor += [len(rows) for rows in at]
        evs.append(ev_b)
    del source
    if not np.array_equal(cursor, end):
        raise RuntimeError("experience blocks: person-years do not match the persons alive "
                           "at the start of each year")
    ids = pd.CategoricalDtype(pd.Index(persons["psn_no"].astype(str)))
    py = _with_ids(cols, ids, before="person")
    rank = {b.id: i for i, b in enumerate(product.benefits)}
    order = np.lexsort((positions(setl_ids, _column(evs, "setl_id")),
                        pd.Series(_column(evs, "benefit")).map(rank).to_numpy()))
    ev = _joined(evs, order, ids, before="person")
    release_free_memory()
    return py, ev


def _without(py: pd.DataFrame, prefixes: tuple[str, ...]) -> pd.DataFrame:
    return py[[c for c in py.columns if not c.startswith(prefixes)]] if prefixes else py


#: Integer columns of the person-year and event tables that
#: :func:`experience_in_blocks` returns narrower than int64 (people are rows of
#: persons.parquet, < 2^31; years and ages < 2^15): ten million person-years and
#: fourteen million events are 0.25 GB smaller while the blocks are joined.
NARROW_COLUMNS = {"person": "int32", "year": "int16", "age": "int16", "stays_prior": "int32"}


def _narrow(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` with the columns of :data:`NARROW_COLUMNS` cast down (same values)."""
    cast = {c: dt for c, dt in NARROW_COLUMNS.items()
            if c in t.columns and t[c].dtype.kind == "i" and t[c].dtype.itemsize > np.dtype(dt).itemsize}
    return t.astype(cast) if cast else t


def _trim() -> None:
    """After each block in a forked worker: the block's freed working memory handed back
    to the system (a worker takes some forty blocks, and glibc would keep each one's
    high-water mark; about 0.15 GiB a worker at 10M person-years), without a gc pass
    over the parent's inherited objects."""
    release_free_memory(collect=False)


def _column(blocks: list[dict], name: str) -> np.ndarray:
    return np.concatenate([b[name] for b in blocks])


def _with_ids(cols: dict[str, np.ndarray], ids, before: str) -> pd.DataFrame:
    """A table of ``cols`` adopting the arrays (not consolidated), with ``psn_no`` made
    from ``person`` as a categorical over everyone's ids (``ids``) and placed before
    column ``before`` (where :func:`experience` has it)."""
    out = {}
    for name, v in cols.items():
        if name == before:
            out["psn_no"] = pd.Categorical.from_codes(cols["person"], dtype=ids)
        out[name] = v
    return pd.DataFrame(out, copy=False)


def _joined(blocks: list[dict], order: np.ndarray, ids, before: str) -> pd.DataFrame:
    """The blocks' tables (:func:`_arrays`) as one, rows in ``order``, one column at a
    time, each block's column freed once joined (a concat and a reordering would each
    copy the whole table, and the blocks would stay until the end); ``psn_no`` made from
    ``person`` as a categorical over everyone's ids (``ids``) and placed before column
    ``before`` (where :func:`experience` has it). Empties ``blocks``' dicts."""
    cols = {name: np.concatenate([b.pop(name) for b in blocks])[order]
            for name in list(blocks[0])}
    return _with_ids(cols, ids, before)
