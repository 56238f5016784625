"""``puhui synth``: the synthetic city, end to end.

people -> years (cancer onset, deaths) -> bills -> reversals -> basic-tier settlement
-> line items -> enrolment -> ids. Each step draws from its own random stream (one
``SeedSequence`` spawned per step), so the same arguments give the same bytes and a
change to one step leaves the others' draws as they were.
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
from puhui.synth.utilisation import _bill_dates, make_bills
from puhui.tiers.basic import load_schemes, processing_order, settle

N_STREAMS = 8


def synth_city(persons: int, years: int, seed: int, start_year: int | None = None,
               dirty: bool = False, params: dict | None = None,
               progress: Callable[[str], None] | None = None) -> FundData:
    """Generate the city. Money in fen (engine types); write with ``write_fund``."""
    say = progress or (lambda msg: None)
    P = params or load_params()
    start_year = int(start_year or P["start_year"])
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(N_STREAMS)]
    lists = load_lists()
    schemes = load_schemes()

    say("people")
    people = make_people(persons, start_year, P, streams[0])
    py = simulate_years(people, start_year, years, P, streams[1])
    say("bills")
    bills, special = make_bills(py, people, P, lists, streams[2])
    bills["setl_time"] = pd.to_datetime(_bill_dates(bills))
    for col in ("gender", "insutype", "retired", "low_income"):
        bills[col] = people[col].to_numpy()[bills["person"].to_numpy()]
    bills["age"] = bills["year"] - people["birth_year"].to_numpy()[bills["person"].to_numpy()]
    bills["kind"] = "bill"

    say("reversals")
    bills = _add_reversals(bills, py, P, streams[3])
    say("settlement")
    fields = _settle_all(bills, schemes)
    bills = pd.concat([bills, fields], axis=1)
    bills = _apply_reversal_amounts(bills)

    heavy = _heavy_person_years(bills, special, len(py))
    say("enrolment")
    pol = make_policies(people, py, heavy, P, streams[4])
    say("ids")
    data = _assemble(people, bills, special, pol, lists, streams[5])
    if dirty:
        _make_dirty(data, P["dirty"]["share"], streams[6])
    return data


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
    out["setl_time"] = pd.to_datetime(_bill_dates(out))
    return out


def _settle_all(bills: pd.DataFrame, schemes) -> pd.DataFrame:
    """Settle every bill. Originals and their corrections are settled in two passes so
    that each sees the accumulators a clerk would have seen."""
    kind = bills["kind"].to_numpy()
    first = kind == "bill"
    out = pd.DataFrame(0, index=bills.index, columns=list(SETTLEMENT_MONEY), dtype="int64")
    out.loc[first] = settle(bills[first], schemes).to_numpy()
    cor = kind == "corrected"
    if cor.any():
        reversed_ = set(bills.loc[cor, "orig"])
        key = bills["person"].to_numpy() * 10000 + bills["year"].to_numpy()
        affected = np.isin(key, key[cor])
        second = affected & (first & ~np.isin(bills.index, list(reversed_)) | cor)
        res = settle(bills[second], schemes)
        out.loc[cor] = res.loc[bills.index[cor]].to_numpy()
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


def _assemble(people, bills, special, pol, lists, rng) -> FundData:
    psn_no = np.array([f"P{i + 1:08d}" for i in range(len(people))], dtype=object)
    persons = pd.DataFrame({
        "psn_no": psn_no,
        "birth_year": people["birth_year"].to_numpy(),
        "gender": people["gender"].to_numpy(),
        "insutype": people["insutype"].to_numpy(),
        "retired": people["retired"].to_numpy(),
        "death_date": people["death_date"],
        "low_income": people["low_income"].to_numpy(),
    })
    # settlement ids in time order (reversals and corrections after their day's bills)
    kind_rank = bills["kind"].map({"bill": 0, "reversal": 1, "corrected": 2}).to_numpy()
    order = np.lexsort((np.arange(len(bills)), kind_rank, bills["person"].to_numpy(),
                        bills["setl_time"].to_numpy()))
    setl_id = np.empty(len(bills), dtype=object)
    setl_id[order] = [f"S{i + 1:09d}" for i in range(len(bills))]
    refund_of = np.full(len(bills), None, dtype=object)
    rev = bills["kind"].to_numpy() == "reversal"
    refund_of[rev] = setl_id[bills.loc[rev, "orig"].to_numpy()]
    lv = bills["hosp_lv"].to_numpy()
    inst = rng.integers(1, 60, size=len(bills))
    st = pd.DataFrame({
        "setl_id": setl_id,
        "psn_no": pd.Categorical.from_codes(bills["person"].to_numpy(), categories=psn_no),
        "setl_time": bills["setl_time"].to_numpy(),
        "med_type": bills["med_type"].to_numpy(),
        "hosp_lv": lv.astype("int64"),
        "insutype": bills["insutype"].to_numpy(),
        "dise_code": pd.Categorical(bills["dise_code"].astype(str)),
        **{c: bills[c].to_numpy() for c in SETTLEMENT_MONEY},
        "refund_of": refund_of,
        "fixmedins_code": pd.Categorical([f"H31{a}{b:04d}" for a, b in zip(lv, inst)]),
    })
    st = st.iloc[order].reset_index(drop=True)
    lines = _lines(bills, special, setl_id, lists, rng)
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


def _lines(bills, special, setl_id, lists, rng) -> pd.DataFrame:
    """Line items of stays and drug purchases: one generic line per class present, plus
    each special drug or treatment line. Lines add up to the settlement's total."""
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
    self_special = pd.Series(0, index=bills.index).add(sp_self, fill_value=0).to_numpy()
    ab = lists["class-ab-sample"].items
    codes = {k: ab.loc[ab["list_class"] == k, "hilist_code"].to_numpy() for k in ("A", "B", "self")}
    n = len(has)
    generic = []
    for order, (cls, amount, pre) in enumerate((
            ("A", bills["amt_a"].to_numpy()[has] + bills["amt_overlimit"].to_numpy()[has], 0),
            ("B", bills["amt_b"].to_numpy()[has], bills["preselfpay_amt"].to_numpy()[has]),
            ("self", bills["amt_self"].to_numpy()[has] - self_special[has], 0))):
        generic.append(pd.DataFrame({
            "bill": has, "rank": order, "hilist_code": rng.choice(codes[cls], size=n),
            "list_class": cls, "amount": amount, "preselfpay_amt": pre}))
    spl = pd.DataFrame({"bill": sp["bill"].to_numpy(), "rank": 3,
                        "hilist_code": sp["hilist_code"].to_numpy(),
                        "list_class": sp["list_class"].to_numpy(),
                        "amount": sp["amount"].to_numpy(), "preselfpay_amt": 0})
    ln = pd.concat(generic + [spl], ignore_index=True)
    ln = ln.astype({"amount": "int64", "preselfpay_amt": "int64"})
    ln = ln[ln["amount"] != 0]
    ln["setl_id"] = setl_id[ln["bill"].to_numpy()]
    ln = ln.sort_values(["setl_id", "rank"], kind="stable").reset_index(drop=True)
    ln["line_no"] = ln.groupby("setl_id", sort=False).cumcount() + 1
    return ln[["setl_id", "line_no", "hilist_code", "list_class", "amount", "preselfpay_amt"]]


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
