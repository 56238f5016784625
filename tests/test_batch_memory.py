"""The batch holds its settlements' ids in Arrow buffers (issue 19, point 4: a batch of
100 million settlements was stopped at 20.5 GB during its validation pass, the ids as
Python strings and each chunk's own categories of a million person ids the largest part).
Checked against plain pandas: the same values, a few bytes a row."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from puhui.claims.batch import _arrow_ids, _batch_columns, _Partition, _text_isin
from puhui.fund.files import is_arrow_text, join_chunks


def _chunk(ids, people, seed=0):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pd.DataFrame({
        "setl_id": pd.Series(ids, dtype=object),
        "psn_no": pd.Categorical(people),
        "setl_time": pd.Timestamp("2025-03-01"),
        "psn_part_amt": rng.integers(0, 10**6, n),
        "refund_of": pd.Series([None] * n, dtype=object),
        "not_kept": 1})


def test_a_chunks_ids_are_held_in_arrow_with_the_same_values():
    ids = [f"S{i:09d}" for i in range(1000)]
    people = [f"P{i % 37:08d}" for i in range(1000)]
    kept, who = _batch_columns(0, _chunk(ids, people), np.arange(1000), np.zeros(1000, bool))
    assert "not_kept" not in kept.columns
    assert is_arrow_text(kept["setl_id"].dtype) and is_arrow_text(kept["psn_no"].dtype)
    assert kept["setl_id"].tolist() == ids and kept["psn_no"].tolist() == people
    # ten-character ids: their bytes and a 64-bit offset, not a Python string (~60 bytes)
    # ten-character ids: their bytes and a 64-bit offset, not a Python string (~60 bytes)
    assert kept["setl_id"].array.nbytes / len(kept) <= 10 + 8
    assert kept["psn_no"].array.nbytes / len(kept) <= 9 + 8 + 1    # (+ a validity bit)


def test_ids_that_are_not_text_stay_as_validation_read_them():
    s = pd.Series([1, "a", None], dtype=object)
    assert _arrow_ids(s) is s
    num = pd.Series([1, 2])
    assert _arrow_ids(num) is num


def test_joined_chunks_keep_arrow_ids_and_a_mixed_column_falls_back_to_objects():
    a = _batch_columns(0, _chunk(["S1", "S2"], ["P1", "P2"]), None, None)[0]
    b = _batch_columns(2, _chunk(["S3", ""], ["P2", "P3"]), None, None)[0]
    j = join_chunks([a.copy(), b.copy()])
    assert is_arrow_text(j["setl_id"].dtype)
    assert j["setl_id"].tolist() == ["S1", "S2", "S3", ""]
    assert j["psn_no"].tolist() == ["P1", "P2", "P2", "P3"]
    assert j["psn_part_amt"].tolist() == pd.concat([a, b])["psn_part_amt"].tolist()
    c = b.assign(setl_id=pd.Series([7, "S4"], dtype=object))     # not text: objects
    m = join_chunks([a.copy(), c])
    assert m["setl_id"].dtype == object and m["setl_id"].tolist() == ["S1", "S2", 7, "S4"]
    with_null = a.assign(setl_id=pd.Series(["S1", None]).astype("string[pyarrow]"))
    m = join_chunks([with_null, c])
    assert m["setl_id"].tolist() == ["S1", None, 7, "S4"]      # a null is None, not <NA>


def test_a_blocks_ids_come_out_as_python_strings_and_nulls_as_none():
    df = pd.DataFrame({"setl_id": pd.Series(["S1", "S2", "S3"]).astype("string[pyarrow]"),
                       "refund_of": pd.Series([None, "S1", None]).astype("string[pyarrow]"),
                       "x": [1, 2, 3]})
    part = _Partition(df, np.array([1, 0, 1]), 2)
    b1 = part[1]
    assert b1["setl_id"].dtype == object and b1["setl_id"].tolist() == ["S1", "S3"]
    assert b1["refund_of"].tolist() == [None, None]
    assert all(type(v) is str for v in part[0]["refund_of"])


def test_text_isin_matches_plain_python_for_arrow_and_objects():
    values = ["a", "b", "", "a\u4e00", "c"]
    wanted = {"a", "", "a\u4e00"}
    plain = [v in wanted for v in values]
    assert _text_isin(pd.Series(values, dtype=object), wanted).tolist() == plain
    assert _text_isin(pd.Series(values).astype("string[pyarrow]"), wanted).tolist() == plain


def test_flags_find_a_lines_settlement_in_arrow_ids_as_pandas_does():
    from puhui.claims.flags import positions_in

    rng = np.random.default_rng(3)
    pool = ["", "S1", "s1", "S\u4e001", "S10", "S01", "a b", "S1 "]
    values = [pool[i] for i in rng.integers(0, len(pool), 500)]
    ids = pd.Index(pool[1:5])
    want = ids.get_indexer(np.asarray(values, dtype=object))
    got = positions_in(pd.Series(values).astype("string[pyarrow]"), ids)
    assert got.tolist() == want.tolist()
    assert positions_in(pd.Series(values, dtype=object), ids).tolist() == want.tolist()


def test_chunks_over_one_shared_set_of_categories_join_to_the_same_values():
    people = pd.Index(["P1", "P2", "P3", "P4"])          # sorted, as validation makes them
    def chunk(codes):
        return pd.DataFrame({"psn_no": pd.Categorical.from_codes(codes, categories=people),
                             "x": np.arange(len(codes))})
    parts = [chunk([0, 3, -1]), chunk([2, 2]), chunk([1])]
    want = sum((p["psn_no"].tolist() for p in parts), [])
    j = join_chunks([p.copy() for p in parts])
    assert j["psn_no"].tolist() == want
    assert j["psn_no"].cat.categories is people           # not rebuilt
    own = pd.DataFrame({"psn_no": pd.Categorical(["P9", "P1"]), "x": [0, 1]})  # a dirty chunk
    m = join_chunks([parts[0].copy(), own])
    assert m["psn_no"].tolist() == parts[0]["psn_no"].tolist() + ["P9", "P1"]


def test_the_batch_gets_its_ids_from_validation_as_the_file_holds_them(small_city_dir):
    import pyarrow.parquet as pq

    from puhui.claims.batch import _quarantine

    _, data, who = _quarantine(small_city_dir)
    st = data.settlements
    raw = pq.read_table(small_city_dir / "settlements.parquet",
                        columns=["setl_id", "psn_no"]).to_pandas()
    assert is_arrow_text(st["setl_id"].dtype) and is_arrow_text(st["psn_no"].dtype)
    assert st["setl_id"].tolist() == raw["setl_id"].astype(str).tolist()
    assert st["psn_no"].tolist() == raw["psn_no"].astype(str).tolist()
    persons = pq.read_table(small_city_dir / "persons.parquet", columns=["psn_no"]).to_pandas()
    assert (persons["psn_no"].to_numpy()[who] == raw["psn_no"].to_numpy()).all()


def test_the_flags_see_people_as_codes_and_flag_what_they_flag_on_the_ids():
    from puhui.claims.batch import _flag_columns
    from puhui.claims.flags import flag_settlements

    day = pd.Timestamp("2025-03-01")
    st = pd.DataFrame({
        "setl_id": pd.Series([f"S{i}" for i in range(8)]).astype("string[pyarrow]"),
        "psn_no": pd.Series(["P2", "P2", "P1", "P1", "P3", "P2", "P1", "P9"]
                            ).astype("string[pyarrow]"),
        "setl_time": [day, day, day, day + pd.Timedelta(days=2), day, day, day, day],
        "med_type": pd.Categorical(["21", "21", "21", "21", "11", "11", "21", "21"]),
        "fixmedins_code": pd.Categorical(["H1"] * 8),
        "medfee_sumamt": [100, 100, 500, 700, 50, 100, 500, 100],
        "dise_code": pd.Categorical(["I10"] * 8)})
    who = np.array([1, 1, 0, 0, 2, 1, 0, -1])          # P9 is no person: not effective
    eff = np.array([True, True, True, True, True, True, False, False])
    want = flag_settlements(st.loc[eff], None, None)
    got = flag_settlements(_flag_columns(st, np.flatnonzero(eff), who), None, None)
    assert got.sort_index().to_dict() == want.sort_index().to_dict()
    assert set(got) == {"F_DUPLICATE_SETTLEMENT", "F_SPLIT_ADMISSION"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_flags_by_parts_of_people_are_the_flags_of_the_whole(seed, monkeypatch):
    """Random settlements dense in duplicates, split stays, trace codes billed twice
    across people and drugs without their diagnosis: the batch's flags cut into parts of
    people (FLAG_PART_ROWS small) give every row the code of one call on all rows."""
    import puhui.claims.batch as batch
    from puhui.claims.flags import flag_settlements

    rng = np.random.default_rng(seed)
    n, people = 600, 40
    who = rng.integers(0, people, n)
    who[rng.random(n) < 0.02] = -1                          # unknown people: quarantined
    st = pd.DataFrame({
        "setl_id": pd.Series([f"S{i}" for i in range(n)]).astype("string[pyarrow]"),
        "psn_no": pd.Series([f"P{w}" for w in who]).astype("string[pyarrow]"),
        "setl_time": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 20, n), "D"),
        "med_type": pd.Categorical(rng.choice(["11", "21"], n)),
        "fixmedins_code": pd.Categorical(rng.choice(["H1", "H2"], n)),
        "medfee_sumamt": rng.choice([100, 200], n),
        "dise_code": pd.Categorical(rng.choice(["C34", "J18"], n))})
    eff = (who >= 0) & (rng.random(n) < 0.9)
    with_lines = rng.choice(n, 150, replace=False)
    lines = pd.DataFrame({"setl_id": [f"S{i}" for i in with_lines],
                          "hilist_code": rng.choice(["D1", "D2"], 150),
                          "trace_code": rng.choice([f"T{i}" for i in range(60)] + [None], 150)})
    items = pd.DataFrame({"hilist_code": ["D1"], "dise_codes": ["C34;C33"]})
    whole = flag_settlements(st.loc[eff].assign(psn_no=st.loc[eff, "psn_no"].astype(object)),
                             lines, items)
    assert {"F_DUPLICATE_SETTLEMENT", "F_SPLIT_ADMISSION", "F_DUPLICATE_TRACE",
            "F_DRUG_NO_DIAGNOSIS"} <= set(whole)
    monkeypatch.setattr(batch, "FLAG_PART_ROWS", 70)             # eight parts of people
    by_parts = batch._flags(st, eff, who, lines, items)
    assert by_parts.sort_index().to_dict() == whole.sort_index().to_dict()
