"""``puhui synth``: the synthetic city, end to end.

people -> years (cancer onset, deaths) -> per block of people: bills -> reversals ->
basic-tier settlement -> line items -> enrolment -> ids.

Everything after the population works one block of :data:`BLOCK_PERSONS` people at a
time (settlement is per person, so blocks change nothing but memory); each block keeps
only compact arrays, and the final tables are assembled column by column. Each step and
each block draws from its own random stream (``SeedSequence.spawn``), so the same
arguments give the same bytes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from puhui.drug_lists import load_lists
from puhui.fund.files import FundData
from puhui.fund.schema import SETTLEMENT_MONEY
from puhui.synth.enrolment import make_policies
from puhui.synth.params import load_params
from puhui.synth.population import make_people, simulate_years
from puhui.synth.utilisation import bill_dates, diagnosis_categories, make_bills
from puhui.tiers.basic import load_schemes, processing_order, settle

#: People per block; part of the generator's definition (the draws depend on it).
BLOCK_PERSONS = 200_000
KINDS = ("bill", "reversal", "corrected")
INSTITUTIONS = [f"H31{a}{b:04d}" for a in (1, 2, 3) for b in range(1, 60)]


def synth_city(persons: int, years: int, seed: int, start_year: int | None = None,
               dirty: bool = False, params: dict | None = None,
               progress: Callable[[str], None] | None = None) -> FundData:
    """Generate the city. Money in fen (engine types); write with ``write_fund``."""
    say = progress or (lambda msg: None)
    P = params or load_params()
    start_year = int(start_year or P["start_year"])
    ss_people, ss_years, ss_blocks, ss_enrol, ss_ids, ss_dirty = \
        np.random.SeedSequence(seed).spawn(6)
    lists = load_lists()
    schemes = load_schemes()

    say("people")
    people = make_people(persons, start_year, P, np.random.default_rng(ss_people))
    py = simulate_years(people, start_year, years, P, np.random.default_rng(ss_years))
    starts = list(range(0, persons, BLOCK_PERSONS))
    block_seeds = ss_blocks.spawn(len(starts))
    heavy = np.zeros(len(py), bool)
    blocks = []
    py_person = py["person"].to_numpy()
    for b, lo in enumerate(starts):
        say(f"block {b + 1}/{len(starts)}: bills, reversals, settlement")
        rows = np.flatnonzero((py_person >= lo) & (py_person < lo + BLOCK_PERSONS))
        py_b = py.iloc[rows].reset_index(drop=True)
        rng = np.random.default_rng(block_seeds[b])
        bills, special = make_bills(py_b, people, P, lists, rng)
        _add_attributes(bills, people)
        bills = _add_reversals(bills, py_b, P, rng)
        for col, values in _settle_all(bills, schemes).items():
            bills[col] = values
        bills = _apply_reversal_amounts(bills)
        heavy[rows] = _heavy_person_years(bills, special, len(py_b))
        blocks.append(_compact_block(bills, special, lists, rng))
        del bills, special
    say("enrolment")
    pol = make_policies(people, py, heavy, P, np.random.default_rng(ss_enrol))
    say("ids")
    data = _assemble(people, blocks, pol, diagnosis_categories(P["diagnoses"]))
    if dirty:
        _make_dirty(data, P["dirty"]["share"], np.random.default_rng(ss_dirty))
    return data


def _add_attributes(bills: pd.DataFrame, people: pd.DataFrame) -> None:
    """The settlement date and the person's attributes that the basic tier reads."""
    bills["setl_time"] = pd.to_datetime(bill_dates(bills)).astype("datetime64[ns]")
    who = bills["person"].to_numpy()
    for col in ("gender", "insutype"):
        c = people[col].array
        bills[col] = pd.Categorical.from_codes(c.codes[who], categories=c.categories)
    for col in ("retired", "low_income"):
        bills[col] = people[col].to_numpy()[who]
    bills["age"] = (bills["year"].to_numpy() - people["birth_year"].to_numpy()[who]).astype("int16")
    bills["kind"] = "bill"


def _add_reversals(bills: pd.DataFrame, py: pd.DataFrame, P: dict, rng) -> pd.DataFrame:
    """Reverse the last stay of some person-years and re-settle a corrected bill.

    The reversed stay is the person-year's last settlement, so no later settlement used
    its deductible; the reversal and the corrected bill come 1-14 days later.
    """
    R = P["reversals"]
    order = processing_order(bills["person"].to_numpy() * 10000 + bills["year"].to_numpy(),
                             bills["setl_time"].to_numpy())
    b = bills.iloc[order]
    last = ~b.duplicated(["person", "year"], keep="last").to_numpy()
    cand = b.index.to_numpy()[last & (b["med_type"].to_numpy() == "21")]
    cand = np.sort(cand)
    pick = cand[rng.random(len(cand)) < R["share"]]
    delay = rng.integers(1, 15, size=len(pick))
    day = bills.loc[pick, "day"].to_numpy() + delay
    ok = day <= py["end_day"].to_numpy()[bills.loc[pick, "py_row"].to_numpy()]
    pick, day = pick[ok], day[ok]
    rev = bills.loc[pick].copy()
    rev["kind"] = "reversal"
    rev["orig"] = pick
    rev["day"] = day
    rev["has_lines"] = False
    cor = bills.loc[pick].copy()
    cor["kind"] = "corrected"
    cor["orig"] = pick
    cor["day"] = day
    for c in ("amt_a", "amt_b"):
        cor[c] = np.floor(cor[c].to_numpy() * R["correction"]).astype("int64")
    out = pd.concat([bills.assign(orig=-1), rev, cor], ignore_index=True)
    out["setl_time"] = pd.to_datetime(bill_dates(out)).astype("datetime64[ns]")
    return out


def _settle_all(bills: pd.DataFrame, schemes) -> dict[str, np.ndarray]:
    """Settle every bill. Originals and their corrections are settled in two passes so
    that each sees the accumulators a clerk would have seen. Reversal rows get their
    amounts afterwards (the negated original)."""
    kind = bills["kind"].to_numpy()
    first = kind == "bill"
    out = {c: np.zeros(len(bills), "int64") for c in SETTLEMENT_MONEY}
    res = settle(bills if first.all() else bills[first], schemes)
    for c in SETTLEMENT_MONEY:
        out[c][first] = res[c].to_numpy()
    del res
    cor = kind == "corrected"
    if cor.any():
        reversed_ = bills.loc[cor, "orig"].to_numpy()
        key = bills["person"].to_numpy() * 10000 + bills["year"].to_numpy()
        affected = np.isin(key, key[cor])
        second = affected & ((first & ~np.isin(np.arange(len(bills)), reversed_)) | cor)
        res = settle(bills[second], schemes)
        take = cor[second]
        for c in SETTLEMENT_MONEY:
            out[c][cor] = res[c].to_numpy()[take]
    return out


def _apply_reversal_amounts(bills: pd.DataFrame) -> pd.DataFrame:
    rev = bills["kind"].to_numpy() == "reversal"
    if rev.any():
        orig = bills.loc[rev, "orig"].to_numpy()
        for c in SETTLEMENT_MONEY:
            vals = bills[c].to_numpy().copy()
            vals[rev] = -bills[c].to_numpy()[orig]
            bills[c] = vals
        for c in ("amt_a", "amt_b", "amt_c", "amt_self", "amt_overlimit"):
            vals = bills[c].to_numpy().copy()
            vals[rev] = -vals[orig]
            bills[c] = vals
    return bills


def _heavy_person_years(bills: pd.DataFrame, special: pd.DataFrame, n_py: int) -> np.ndarray:
    """Person-years with large hospital self-pay or special-drug spending."""
    heavy = np.zeros(n_py, bool)
    inlist = (bills["psn_part_amt"] - bills["fulamt_ownpay_amt"] - bills["overlmt_selfpay"])
    tot = inlist.groupby(bills["py_row"]).sum()
    heavy[tot.index[tot.to_numpy() > 20_000_00]] = True
    heavy[bills.loc[special["bill"].to_numpy(), "py_row"].to_numpy()] = True
    return heavy


def _compact_block(bills: pd.DataFrame, special: pd.DataFrame, lists, rng) -> dict:
    """What a block keeps: settlement fields as small arrays, and its line items."""
    lv = bills["hosp_lv"].to_numpy().astype("int16")
    inst = rng.integers(0, 59, size=len(bills))
    return {
        "person": bills["person"].to_numpy(),
        "setl_time": bills["setl_time"].to_numpy(),
        "kind": pd.Categorical(bills["kind"], categories=KINDS).codes.astype("int8"),
        "orig": bills["orig"].to_numpy().astype("int64"),
        "med_type": bills["med_type"].array.codes.copy(),
        "hosp_lv": lv,
        "insutype": bills["insutype"].array.codes.copy(),
        "dise_code": bills["dise_code"].array.codes.copy(),
        "fixmedins_code": ((lv - 1) * 59 + inst).astype("int16"),
        **{c: bills[c].to_numpy() for c in SETTLEMENT_MONEY},
        "lines": _lines(bills, special, lists, rng),
        "categories": {c: list(bills[c].array.categories)
                       for c in ("med_type", "insutype", "dise_code")},
    }


def _assemble(people, blocks: list[dict], pol, dise_categories) -> FundData:
    """Join the blocks into the four tables, one column at a time."""
    psn_no = np.array([f"P{i + 1:08d}" for i in range(len(people))], dtype=object)
    persons = pd.DataFrame({
        "psn_no": psn_no,
        "birth_year": people["birth_year"].to_numpy(),
        "gender": people["gender"].astype(str).to_numpy(),
        "insutype": people["insutype"].astype(str).to_numpy(),
        "retired": people["retired"].to_numpy(),
        "death_date": people["death_date"],
        "low_income": people["low_income"].to_numpy(),
    })
    sizes = [len(b["person"]) for b in blocks]
    offsets = np.cumsum([0] + sizes)
    n = int(offsets[-1])

    def take(field: str) -> np.ndarray:
        """Concatenate one field over the blocks and release the blocks' copies."""
        parts = [b.pop(field) for b in blocks]
        return np.concatenate(parts) if parts else np.zeros(0)

    orig = take("orig")
    for k in range(len(blocks)):                       # block-local -> global row numbers
        seg = slice(offsets[k], offsets[k + 1])
        orig[seg] = np.where(orig[seg] >= 0, orig[seg] + offsets[k], -1)
    person, setl_time, kind = take("person"), take("setl_time"), take("kind")
    # settlement ids in time order (reversals and corrections after their day's bills)
    order = np.lexsort((np.arange(n), kind, person, setl_time))
    ids_sorted = np.fromiter((f"S{i + 1:09d}" for i in range(n)), dtype=object, count=n)
    setl_id = np.empty(n, dtype=object)
    setl_id[order] = ids_sorted
    refund_of = np.full(n, None, dtype=object)
    rev = kind == KINDS.index("reversal")
    refund_of[rev] = setl_id[orig[rev]]
    cats = blocks[0]["categories"] if blocks else {"med_type": [], "insutype": [],
                                                   "dise_code": dise_categories}

    def cat(field):
        return pd.Categorical.from_codes(take(field)[order], categories=cats[field])

    # The money columns go into one preallocated block that the frame adopts as it is
    # (a frame built from separate int64 columns would copy them all into one block).
    money = np.empty((len(SETTLEMENT_MONEY), n), dtype="int64")
    for i, c in enumerate(SETTLEMENT_MONEY):
        money[i] = take(c)[order]
    st = pd.DataFrame(money.T, columns=list(SETTLEMENT_MONEY), copy=False)
    del money
    front = {
        "setl_id": ids_sorted,
        "psn_no": pd.Categorical.from_codes(person[order], categories=psn_no),
        "setl_time": setl_time[order],
        "med_type": cat("med_type"),
        "hosp_lv": take("hosp_lv")[order].astype("int64"),
        "insutype": cat("insutype"),
        "dise_code": cat("dise_code"),
    }
    del person, setl_time
    for pos, (name, values) in enumerate(front.items()):
        st.insert(pos, name, values)
    del front
    st["refund_of"] = refund_of[order]
    st["fixmedins_code"] = pd.Categorical.from_codes(take("fixmedins_code")[order],
                                                     categories=INSTITUTIONS)
    lines = pd.concat([b["lines"].assign(bill=b["lines"]["bill"] + offsets[k])
                       for k, b in enumerate(blocks)], ignore_index=True)
    lines["setl_id"] = setl_id[lines["bill"].to_numpy()]
    lines = lines.sort_values(["setl_id", "rank"], kind="stable").reset_index(drop=True)
    lines["line_no"] = lines.groupby("setl_id", sort=False).cumcount() + 1
    lines = lines[["setl_id", "line_no", "hilist_code", "list_class", "amount", "preselfpay_amt"]]
    pol = pol.sort_values(["year", "person"], kind="stable").reset_index(drop=True)
    policies = pd.DataFrame({
        "policy_no": [f"HHB{y % 100:02d}{i + 1:08d}" for i, y in enumerate(pol["year"])],
        "psn_no": psn_no[pol["person"].to_numpy()],
        "product_id": pol["product_id"].to_numpy(),
        "start_date": pol["start_date"].to_numpy(),
        "end_date": pol["end_date"].to_numpy(),
        "premium": pol["premium"].to_numpy(),
        "preexisting": pol["preexisting"].to_numpy(),
        "consent": pol["consent"].to_numpy(),
    })
    return FundData(persons=persons, policies=policies, settlements=st, lines=lines)


def _lines(bills, special, lists, rng) -> pd.DataFrame:
    """Line items of stays and drug purchases (``bill`` = row in ``bills``): one generic
    line per class present, plus each special drug or treatment line. Lines add up to
    the settlement's total."""
    has = np.flatnonzero(bills["has_lines"].to_numpy() & (bills["kind"].to_numpy() != "reversal"))
    # special lines of corrected bills are those of their original
    sp = special.copy()
    cor = np.flatnonzero(bills["kind"].to_numpy() == "corrected")
    if len(cor):
        orig_to_cor = pd.Series(cor, index=bills["orig"].to_numpy()[cor])
        dup = sp[sp["bill"].isin(orig_to_cor.index)].copy()
        dup["bill"] = orig_to_cor.loc[dup["bill"]].to_numpy()
        sp = pd.concat([sp, dup], ignore_index=True)
    sp_self = sp[sp["list_class"] == "self"].groupby("bill")["amount"].sum()
    self_special = np.zeros(len(bills), "int64")
    self_special[sp_self.index.to_numpy()] = sp_self.to_numpy()
    ab = lists["class-ab-sample"].items
    codes = {k: ab.loc[ab["list_class"] == k, "hilist_code"].to_numpy() for k in ("A", "B", "self")}
    n = len(has)
    generic = []
    for rank, (cls, amount, pre) in enumerate((
            ("A", bills["amt_a"].to_numpy()[has] + bills["amt_overlimit"].to_numpy()[has], 0),
            ("B", bills["amt_b"].to_numpy()[has], bills["preselfpay_amt"].to_numpy()[has]),
            ("self", bills["amt_self"].to_numpy()[has] - self_special[has], 0))):
        generic.append(pd.DataFrame({
            "bill": has, "rank": rank, "hilist_code": rng.choice(codes[cls], size=n),
            "list_class": cls, "amount": amount, "preselfpay_amt": pre}))
    spl = pd.DataFrame({"bill": sp["bill"].to_numpy(), "rank": 3,
                        "hilist_code": sp["hilist_code"].to_numpy(),
                        "list_class": sp["list_class"].to_numpy(),
                        "amount": sp["amount"].to_numpy(), "preselfpay_amt": 0})
    ln = pd.concat(generic + [spl], ignore_index=True)
    ln = ln.astype({"bill": "int64", "amount": "int64", "preselfpay_amt": "int64"})
    return ln[ln["amount"] != 0]


def _make_dirty(data: FundData, share: float, rng) -> None:
    """Break a few rows in each of the ways validation must catch (--dirty)."""
    st = data.settlements
    k = max(1, int(round(share * len(st))))
    fresh = st[st["refund_of"].isna()].index.to_numpy()
    pick = rng.choice(fresh, size=min(3 * k, len(fresh)), replace=False)
    a, b, c = pick[:k], pick[k:2 * k], pick[2 * k:]
    st.loc[a, "medfee_sumamt"] += 1                                   # identity broken
    st.loc[b, "fulamt_ownpay_amt"] = -st.loc[b, "fulamt_ownpay_amt"] - 1  # negative amount
    extra = st.loc[c].copy()                                          # duplicate ids
    ghost = st.loc[c].copy()
    ghost["setl_id"] = [f"X{i:09d}" for i in range(len(ghost))]
    ghost["psn_no"] = "P99999999"                                     # unknown person
    orphan = st.loc[a[:1]].copy()
    orphan["setl_id"] = "X999999999"
    orphan["refund_of"] = "S999999999"                                # reverses nothing
    for col in SETTLEMENT_MONEY:
        orphan[col] = -orphan[col]
    frames = [st.astype({"psn_no": object}), extra.astype({"psn_no": object}),
              ghost.astype({"psn_no": object}), orphan.astype({"psn_no": object})]
    data.settlements = pd.concat(frames, ignore_index=True)
