"""Every validation rule, each triggered by a crafted bad file, with its message."""

import numpy as np
import pandas as pd
import pytest
from fastparquet import write

from puhui.errors import InputError
from puhui.fund.files import read_raw
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS
from puhui.fund.validate import validate_dir


def load(d, table):
    return read_raw(d, table)


def save(df, d, table):
    write(str(d / table.file), df.reset_index(drop=True), write_index=False)


def messages(d):
    return [p.message() for p in validate_dir(d).problems]


def only(d):
    msgs = messages(d)
    assert len(msgs) == 1, msgs
    return msgs[0]


def test_shipped_generator_output_is_valid(small_city_dir):
    rep = validate_dir(small_city_dir)
    assert rep.ok, [p.message() for p in rep.problems]
    assert set(rep.rows) == {"persons", "policies", "settlements", "settlement_lines"}


def first_plain(st):
    """Index of the first settlement that is neither a reversal nor reversed."""
    reversed_ids = set(st["refund_of"].dropna())
    ok = st["refund_of"].isna() & ~st["setl_id"].isin(reversed_ids)
    return st.index[ok][0]


def test_identity_broken(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    st.loc[i, "medfee_sumamt"] += 0.01
    save(st, city_copy, SETTLEMENTS)
    msgs = messages(city_copy)
    sid = st.loc[i, "setl_id"]
    assert (f"settlements.parquet: column medfee_sumamt: rule 'medfee_sumamt = hifp_pay + "
            f"hifob_pay + hifmi_pay + maf_pay + psn_part_amt' broken by 1 row (e.g. {sid}). "
            f"Fix: the fund payments and the person's share must add up to the total, to the fen"
            ) in msgs
    # the lines no longer add up either: reported against the lines file
    assert any(m.startswith("settlement_lines.parquet: column amount") for m in msgs) or \
        sid not in set(load(city_copy, SETTLEMENT_LINES)["setl_id"])


def test_missing_column(city_copy):
    p = load(city_copy, PERSONS).drop(columns=["gender"])
    save(p, city_copy, PERSONS)
    assert only(city_copy) == (
        "persons.parquet: column gender: rule 'column present' broken by the column. "
        "Fix: add the column 'gender' (code: national code: 1 male, 2 female)")


def test_unknown_code(city_copy):
    p = load(city_copy, PERSONS)
    p["gender"] = p["gender"].astype(str)
    p.loc[[0, 1], "gender"] = "M"
    save(p, city_copy, PERSONS)
    assert only(city_copy) == (
        "persons.parquet: column gender: rule 'code in {1, 2}' broken by 2 rows "
        "(e.g. P00000001, P00000002). Fix: use the national code; see docs/data-schema.md "
        "for the list")


def test_null_not_allowed(city_copy):
    p = load(city_copy, POLICIES)
    p["premium"] = p["premium"].astype("float64")
    p.loc[0, "premium"] = np.nan
    save(p, city_copy, POLICIES)
    m = only(city_copy)
    assert m.startswith("policies.parquet: column premium: rule 'not null' broken by 1 row")


def test_more_than_two_decimals(city_copy):
    p = load(city_copy, POLICIES)
    p.loc[0, "premium"] = 129.005
    save(p, city_copy, POLICIES)
    assert "rule 'at most two decimals (whole fen)' broken by 1 row" in only(city_copy)


def test_text_where_money_expected(city_copy):
    p = load(city_copy, POLICIES)
    p["premium"] = p["premium"].astype(str)
    save(p, city_copy, POLICIES)
    assert "rule 'money is a number of yuan'" in only(city_copy)


def test_dates_in_order(city_copy):
    p = load(city_copy, POLICIES)
    p.loc[0, "end_date"] = p.loc[0, "start_date"] - pd.Timedelta(days=1)
    save(p, city_copy, POLICIES)
    assert "rule 'start_date <= end_date' broken by 1 row" in only(city_copy)


def test_overlapping_policies(city_copy):
    p = load(city_copy, POLICIES)
    dup = p.iloc[[0]].copy()
    dup["policy_no"] = "HHB99-OVERLAP"
    save(pd.concat([p, dup]), city_copy, POLICIES)
    assert "rule 'no overlapping policies of one person and product' broken by 1 row" \
        in only(city_copy)


def test_duplicate_ids(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    save(pd.concat([st, st.loc[[i]]]), city_copy, SETTLEMENTS)
    msgs = messages(city_copy)
    assert any(m.startswith("settlements.parquet: column setl_id: rule 'unique' broken by 1 row")
               for m in msgs)


def test_unknown_person(city_copy):
    st = load(city_copy, SETTLEMENTS)
    st["psn_no"] = st["psn_no"].astype(str)
    i = first_plain(st)
    st.loc[i, "psn_no"] = "P99999999"
    save(st, city_copy, SETTLEMENTS)
    assert any("column psn_no: rule 'person in persons.parquet' broken by 1 row" in m
               for m in messages(city_copy))


def test_negative_amount_outside_reversal(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    st.loc[i, "overlmt_selfpay"] = -1.0
    st.loc[i, "psn_part_amt"] -= 1.0 + st.loc[i, "overlmt_selfpay"] * 0  # keep in-list >= 0
    st.loc[i, "medfee_sumamt"] -= 1.0
    save(st, city_copy, SETTLEMENTS)
    msgs = messages(city_copy)
    assert any("column overlmt_selfpay: rule 'amount >= 0 (except on reversals)' broken by 1 row"
               in m for m in msgs), msgs


def test_reversal_of_unknown_settlement(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    rev = st.loc[[i]].copy()
    rev["setl_id"] = "R000000001"
    rev["refund_of"] = "S999999999"
    for c in ("medfee_sumamt", "hifp_pay", "psn_part_amt"):
        rev[c] = -rev[c]
    save(pd.concat([st, rev]), city_copy, SETTLEMENTS)
    assert any("column refund_of: rule 'reverses an existing settlement' broken by 1 row "
               "(e.g. R000000001)" in m for m in messages(city_copy))


def test_reversal_must_negate_the_original(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    rev = st.loc[[i]].copy()
    rev["setl_id"] = "R000000002"
    rev["refund_of"] = st.loc[i, "setl_id"]
    save(pd.concat([st, rev]), city_copy, SETTLEMENTS)   # amounts not negated
    assert any("rule 'a reversal carries the negated amounts' broken by 1 row" in m
               for m in messages(city_copy))


def test_settlement_after_death(city_copy):
    p = load(city_copy, PERSONS)
    st = load(city_copy, SETTLEMENTS)
    who = st.loc[first_plain(st), "psn_no"]
    p.loc[p["psn_no"] == who, "death_date"] = pd.Timestamp("2023-06-30")
    save(p, city_copy, PERSONS)
    assert any("rule 'no settlement after the person's death'" in m for m in messages(city_copy))


def test_residents_are_never_retired(city_copy):
    p = load(city_copy, PERSONS)
    i = p.index[p["insutype"].astype(str) == "390"][0]
    p.loc[i, "retired"] = True
    save(p, city_copy, PERSONS)
    assert "rule 'residents are never retired' broken by 1 row" in only(city_copy)


def test_lines_must_add_up(city_copy):
    ln = load(city_copy, SETTLEMENT_LINES)
    ln.loc[0, "amount"] += 1
    save(ln, city_copy, SETTLEMENT_LINES)
    assert f"rule 'lines sum to the settlement's medfee_sumamt' broken by 1 row (e.g. " \
           f"{ln.loc[0, 'setl_id']})" in only(city_copy)


def test_truncated_parquet(city_copy):
    path = city_copy / SETTLEMENTS.file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    m = messages(city_copy)
    assert any(x.startswith("settlements.parquet: column -: rule 'readable file'") and
               "not a readable Parquet file" in x for x in m)


def test_missing_file(city_copy):
    (city_copy / POLICIES.file).unlink()
    assert any("policies.parquet: file missing" in m for m in messages(city_copy))


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        validate_dir(tmp_path / "nope")


def _reversal_pair(st):
    """An existing reversal row index and the index of the settlement it reverses."""
    r = st.index[st["refund_of"].notna()][0]
    o = st.index[st["setl_id"] == st.loc[r, "refund_of"]][0]
    return r, o


def test_death_before_birth_year(city_copy):
    p = load(city_copy, PERSONS)
    p.loc[0, "death_date"] = pd.Timestamp(f"{int(p.loc[0, 'birth_year']) - 1}-06-30")
    save(p, city_copy, PERSONS)
    assert any("rule 'death not before birth year' broken by 1 row (e.g. P00000001)" in m
               for m in messages(city_copy))


def test_reversal_of_another_person(city_copy):
    st = load(city_copy, SETTLEMENTS)
    st["psn_no"] = st["psn_no"].astype(str)
    r, o = _reversal_pair(st)
    other = st.loc[st["psn_no"] != st.loc[o, "psn_no"], "psn_no"].iloc[0]
    st.loc[r, "psn_no"] = other
    save(st, city_copy, SETTLEMENTS)
    assert any(f"rule 'a reversal belongs to the same person' broken by 1 row (e.g. "
               f"{st.loc[r, 'setl_id']})" in m for m in messages(city_copy))


def test_reversal_dated_before_the_original(city_copy):
    st = load(city_copy, SETTLEMENTS)
    r, o = _reversal_pair(st)
    st.loc[r, "setl_time"] = st.loc[o, "setl_time"] - pd.Timedelta(days=1)
    save(st, city_copy, SETTLEMENTS)
    assert any("rule 'a reversal is not before the original' broken by 1 row" in m
               for m in messages(city_copy))


def test_settlement_reversed_twice(city_copy):
    st = load(city_copy, SETTLEMENTS)
    r, _ = _reversal_pair(st)
    again = st.loc[[r]].copy()
    again["setl_id"] = "R000000009"
    save(pd.concat([st, again]), city_copy, SETTLEMENTS)
    assert any("rule 'a settlement is reversed at most once' broken by 1 row (e.g. R000000009)"
               in m for m in messages(city_copy))


def test_lines_preselfpay_must_add_up(city_copy):
    ln = load(city_copy, SETTLEMENT_LINES)
    i = ln.index[ln["list_class"].astype(str) == "B"][0]
    ln.loc[i, "preselfpay_amt"] += 1
    save(ln, city_copy, SETTLEMENT_LINES)
    assert "rule 'lines sum to the settlement's preselfpay_amt' broken by 1 row" in only(city_copy)


def test_line_of_unknown_settlement(city_copy):
    ln = load(city_copy, SETTLEMENT_LINES)
    extra = ln.iloc[[0]].copy()
    extra["setl_id"] = "S999999999"
    save(pd.concat([ln, extra]), city_copy, SETTLEMENT_LINES)
    assert ("settlement_lines.parquet: column setl_id: rule 'settlement in settlements.parquet'"
            " broken by 1 row (e.g. S999999999#1)") in only(city_copy)


def test_duplicate_line(city_copy):
    ln = load(city_copy, SETTLEMENT_LINES)
    save(pd.concat([ln, ln.iloc[[0]]]), city_copy, SETTLEMENT_LINES)
    msgs = messages(city_copy)
    assert any("column setl_id+line_no: rule 'unique' broken by 1 row" in m for m in msgs)


def test_policy_of_unknown_person(city_copy):
    p = load(city_copy, POLICIES)
    p["psn_no"] = p["psn_no"].astype(str)
    p.loc[0, "psn_no"] = "P99999999"
    save(p, city_copy, POLICIES)
    assert ("policies.parquet: column psn_no: rule 'person in persons.parquet' broken by "
            f"1 row (e.g. {p.loc[0, 'policy_no']})") in only(city_copy)


def test_value_out_of_range(city_copy):
    st = load(city_copy, SETTLEMENTS)
    st.loc[first_plain(st), "hosp_lv"] = 4
    save(st, city_copy, SETTLEMENTS)
    assert "column hosp_lv: rule 'value <= 3' broken by 1 row" in only(city_copy)


def test_code_written_as_number(city_copy):
    p = load(city_copy, PERSONS)
    p["insutype"] = p["insutype"].astype(str).astype(int)
    save(p, city_copy, PERSONS)
    assert only(city_copy).startswith("persons.parquet: column insutype: rule 'text' broken by")


def test_bool_written_as_text(city_copy):
    p = load(city_copy, POLICIES)
    p["consent"] = p["consent"].map({True: "yes", False: "no"})
    save(p, city_copy, POLICIES)
    assert "column consent: rule 'true/false'" in only(city_copy)


def test_whole_number_expected(city_copy):
    p = load(city_copy, PERSONS)
    p["birth_year"] = p["birth_year"].astype(float)
    p.loc[0, "birth_year"] += 0.5
    save(p, city_copy, PERSONS)
    assert "column birth_year: rule 'whole number' broken by 1 row" in only(city_copy)


def test_in_list_self_pay_negative(city_copy):
    st = load(city_copy, SETTLEMENTS)
    i = first_plain(st)
    # more out-of-list than the person's whole share: in-list self-pay < 0
    st.loc[i, "fulamt_ownpay_amt"] = st.loc[i, "psn_part_amt"] + 1
    save(st, city_copy, SETTLEMENTS)
    assert any("rule 'in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0'"
               in m for m in messages(city_copy))


def _problem_set(rep):
    return sorted((p.file, p.column, p.rule, p.kind, p.count, tuple(p.examples),
                   tuple(sorted(p.rows.tolist())) if p.rows is not None else None)
                  for p in rep.problems)


def test_chunked_validation_gives_the_same_report(tmp_path):
    """settlements.parquet read in chunks of row groups (as pricing reads a large file)
    gives the report of the whole file: each rule's count, rows and first examples, with
    breaks in several chunks, a reversal and the original it names in different chunks,
    and a privacy finding repeated across chunks counted once (distinct values)."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    d = tmp_path / "dirty"
    write_fund(synth_city(1500, 2, seed=4, dirty=True), d)
    st = load(d, SETTLEMENTS)
    n = len(st)
    rev = np.flatnonzero(st["refund_of"].notna().to_numpy())
    assert len(rev) >= 3
    st.loc[rev[0], "hifp_pay"] = st.loc[rev[0], "hifp_pay"] + 1.0     # not negated (and identity)
    st.loc[rev[1], "setl_time"] = pd.Timestamp("2000-01-01")           # before its original
    st["fixmedins_code"] = st["fixmedins_code"].astype(str)
    st.loc[[5, n - 5], "fixmedins_code"] = "call 13912345678"          # one phone, two chunks
    write(str(d / SETTLEMENTS.file), st, write_index=False, row_group_offsets=1000)
    whole = validate_dir(d)
    assert {p.rule for p in whole.problems} >= {
        "unique", "person in persons.parquet", "a reversal carries the negated amounts",
        "a reversal is not before the original", "reverses an existing settlement",
        "anonymised data: no mobile phone numbers"}
    for rows, workers in ((1000, 1), (2500, 2), (7000, 1)):
        chunked = validate_dir(d, chunk_rows=rows, workers=workers)
        assert _problem_set(chunked) == _problem_set(whole), rows
        assert [p.message() for p in chunked.problems] == [p.message() for p in whole.problems]
    phone = [p for p in whole.problems if "phone" in p.rule]
    assert len(phone) == 1 and phone[0].count == 1


def test_ids_with_equal_hashes_are_told_apart_by_their_text(monkeypatch):
    """Settlement ids and persons' ids are looked up by 64-bit hashes, and ids whose
    hashes are equal are compared as text: with every hash forced equal, repeats and
    look-ups come out as with distinct hashes."""
    import puhui.fund.validate as v

    ids = np.array(["a", "b", "a", "c"], dtype=object)
    keys = v.HashedKeys(np.zeros(4, "uint64"), np.arange(4), lambda rows: ids[rows])
    assert keys.duplicated.tolist() == [False, False, True, False]
    pos = keys.positions(np.zeros(3, "uint64"), np.array(["c", "a", "z"], dtype=object),
                         lambda rows: ids[rows])
    assert pos.tolist() == [3, 0, -1]
    monkeypatch.setattr(v, "fingerprint", lambda values, step=0: np.zeros(len(values), "uint64"))
    people = v.PersonKeys(pd.Series(["p1", "p2", "p1"]))
    assert people.duplicated.tolist() == [False, False, True]
    assert people.rows(pd.Series(["p2", "p9", "p1"])).tolist() == [1, -1, 0]
    assert people.rows(pd.Series(pd.Categorical(["p1", "p9"]))).tolist() == [0, -1]


@pytest.mark.parametrize("value, rule", [(-1, "value >= 0"), (10**15, "value <= 50"),
                                         (2.7, "whole number"), ("3", "whole number"),
                                         (True, "whole number")])
def test_a_claim_free_years_column_is_validated(tmp_path, value, rule):
    """policies.parquet may carry the insurer's own claim_free_years (the batch and
    pricing take it as it is): a negative, huge, fractional, text or boolean value is
    refused by validate and by a batch (exit 2, the rule named), where it once lowered
    the deductible silently (the hostile review, session 13); nulls are allowed."""
    import pandas as pd
    from conftest import puhui          # the commands in this process: what they say

    d = tmp_path / "c"
    r = puhui("synth", "--persons", "300", "--years", "1", "--seed", "3", "--start-year",
              "2025", "--out", d)
    assert r.returncode == 0, r.stderr
    pol = pd.read_parquet(d / "policies.parquet")
    pol.assign(claim_free_years=value).to_parquet(d / "policies.parquet", index=False)
    for args in (["validate", str(d)],
                 ["claims", "run", "--product", "huhuibao-2025", "--data", str(d), "--ledger",
                  f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b", "--out", str(tmp_path / "o")]):
        r = puhui(*args)
        out = r.stdout + r.stderr
        assert r.returncode == 2 and "claim_free_years" in out and rule in out, out[-400:]
        assert "Traceback" not in out
    nulls = pol.assign(claim_free_years=pd.array([None, 1] * (len(pol) // 2) + [None] * (len(pol) % 2),
                                                 dtype="Int64"))
    nulls.to_parquet(d / "policies.parquet", index=False)
    r = puhui("validate", d)
    assert r.returncode == 0, r.stdout + r.stderr
