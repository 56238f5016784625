"""A batch block's rows taken from Arrow text of many chunks (session 17): the same rows
and types as a plain take, checked against Python lists and pandas' own iloc."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from puhui.claims.batch import _Partition
from puhui.fund.files import take_text


def _chunked(values: list, cuts: list[int]) -> pd.Series:
    edges = [0, *cuts, len(values)]
    arr = pa.chunked_array([pa.array(values[a:b], pa.string())
                            for a, b in zip(edges[:-1], edges[1:])], type=pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr))


def test_take_text_gives_the_rows_asked_for_in_their_order_across_chunks():
    rng = np.random.default_rng(17)
    values = [None if rng.random() < 0.1 else f"S{i}\u4e00" * int(rng.integers(0, 3))
              for i in range(1_000)]
    s = _chunked(values, sorted(rng.choice(np.arange(1, 1_000), 30, replace=False)))
    assert s.array._pa_array.num_chunks == 31
    for rows in (rng.integers(0, 1_000, 400), np.arange(1_000)[::-1], np.array([], int),
                 np.array([999, 0, 999])):
        got = take_text(s, rows)
        assert got.dtype == object
        assert got.tolist() == [values[r] for r in rows]
    # text held as Python objects (not Arrow) is taken too
    assert take_text(pd.Series(values, dtype=object), [3, 1]).tolist() == [values[3], values[1]]


def test_a_block_is_the_frames_rows_with_ids_as_python_text():
    rng = np.random.default_rng(3)
    n = 600
    ids = [f"S{i:05d}" for i in range(n)]
    refund = [None if i % 7 else ids[i - 1] for i in range(n)]
    df = pd.DataFrame({
        "setl_id": _chunked(ids, [100, 101, 350]),
        "amt": rng.integers(0, 10**9, n),
        "setl_time": pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n),
                                                                     unit="D"),
        "med_type": pd.Categorical(rng.choice(["11", "21", "14"], n)),
        "refund_of": _chunked(refund, [5, 300]),
        "hosp_lv": rng.integers(1, 4, n)})
    block = rng.integers(-1, 4, n)
    part = _Partition(df, block, 4)
    for k in range(4):
        got = part[k]
        rows = np.flatnonzero(block == k)
        want = df.iloc[rows].copy()
        for c in ("setl_id", "refund_of"):
            want[c] = [v if isinstance(v, str) else None for v in want[c].astype(object)]
        pd.testing.assert_frame_equal(got, want)
        assert got["setl_id"].dtype == object and got["setl_id"].tolist() == [ids[r] for r in rows]
        assert got["refund_of"].tolist() == [refund[r] for r in rows]


# --- the blocks spilled to a file (claims.partition.Spilled) --------------------------

from puhui.claims import batch as batch_mod  # noqa: E402
from puhui.claims import partition  # noqa: E402
from puhui.claims.batch import run_batch  # noqa: E402
from puhui.claims.eob_file import EobWriter  # noqa: E402
from puhui.products.model import load_product, product_path  # noqa: E402
import pytest  # noqa: E402

PRODUCT = load_product(product_path("huhuibao-2025"))


def _every_kind(n: int, rng) -> pd.DataFrame:
    ids = [f"S{i:05d}" for i in range(n)]
    people = pd.Index([f"P{i:03d}" for i in range(50)])
    codes = rng.integers(-1, 50, n)
    df = pd.DataFrame({
        "setl_id": _chunked(ids, [7, 100, 101]),
        "psn_no": pd.Categorical.from_codes(codes, categories=people),
        "amt": rng.integers(-10**12, 10**12, n),
        "small": rng.integers(0, 100, n).astype(np.int32),
        "setl_time": pd.to_datetime("2025-01-01") + pd.to_timedelta(
            rng.integers(0, 10**7, n), unit="s"),
        "med_type": pd.Categorical(rng.choice(["11", "21", "14"], n), categories=["21", "11", "14", "99"]),
        "share": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "flag": rng.random(n) < 0.5,
        "refund_of": _chunked([None if i % 5 else ids[i - 1] for i in range(n)], [3]),
        "dise_code": pd.Series([None if i % 3 else f"C{i}" for i in range(n)], dtype=object)})
    return df


def test_spilled_blocks_are_the_partitions_blocks(tmp_path):
    rng = np.random.default_rng(11)
    df = _every_kind(400, rng)
    block = rng.integers(-1, 6, 400).astype(float)
    block[::17] = np.nan
    rows = np.sort(rng.choice(400, 300, replace=False))
    for kw in ({}, {"rows": rows}):
        part = partition.Partition(df, block, 7, **kw)       # block 6 is empty
        sp = partition.spill(part, tmp_path)
        assert sp is not None and len(sp) == 7
        for k in range(7):
            pd.testing.assert_frame_equal(sp[k], part[k])
        assert list(tmp_path.iterdir()) == []                 # the file is gone at once


def test_a_column_that_cannot_travel_keeps_the_partition_in_memory(tmp_path):
    df = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64"), "y": [1, 2, 3]})
    assert partition.spill(partition.Partition(df, np.array([0, 1, 0]), 2), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def city(city_1500_2025):
    return city_1500_2025


def _run(city, tmp_path, name):
    w = EobWriter(tmp_path / f"{name}.parquet", PRODUCT)
    res = run_batch(PRODUCT, PRODUCT.path, city, f"sqlite:///{tmp_path / name}.db", "b1",
                    block_persons=300, eob_sink=w)
    w.close()
    return res.summary, (tmp_path / f"{name}.parquet").read_bytes()


def test_a_batch_from_spilled_blocks_writes_what_one_from_memory_writes(city, tmp_path,
                                                                          monkeypatch):
    made = []
    real = partition.spill

    def counted(part, directory=None):
        sp = real(part, directory)
        made.append(sp)
        return sp

    monkeypatch.setattr(partition, "spill", counted)
    spilled = _run(city, tmp_path, "spilled")
    assert len(made) == 2 and all(isinstance(s, partition.Spilled) for s in made)
    monkeypatch.setattr(batch_mod, "_spill_parts", lambda e, r: (e, r, False))
    held = _run(city, tmp_path, "held")
    assert spilled[0]["paid_this_batch_yuan"] > 0 and spilled[0]["reconciles"]
    assert spilled == held


def test_no_room_for_the_blocks_file_runs_them_from_memory_and_says_so(city, tmp_path,
                                                                         monkeypatch, capsys):
    def full(part, directory=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(partition, "spill", full)
    summary, eob = _run(city, tmp_path, "full")
    assert "held in memory instead" in capsys.readouterr().err
    monkeypatch.undo()
    assert (summary, eob) == _run(city, tmp_path, "room")


def test_an_object_column_of_more_than_text_keeps_the_partition_in_memory(tmp_path):
    # text and None travel; a NaN (pandas' other null) or a number does not, and the
    # spill gives up in whichever block it is met, leaving no file behind
    for bad in (np.nan, 7):
        df = pd.DataFrame({"x": pd.Series(["a", None, "b", bad], dtype=object), "y": [1, 2, 3, 4]})
        part = partition.Partition(df, np.array([0, 0, 1, 1]), 2)
        assert partition.spill(part, tmp_path) is None
        assert list(tmp_path.iterdir()) == []
    ok = pd.DataFrame({"x": pd.Series(["a", None, "b", "c"], dtype=object)})
    part = partition.Partition(ok, np.array([0, 0, 1, 1]), 2)
    sp = partition.spill(part, tmp_path)
    pd.testing.assert_frame_equal(sp[1], part[1])
    pd.testing.assert_frame_equal(sp[0], part[0])


def test_decisions_long_is_each_benefits_rows_one_after_another(city):
    """Decisions.long stacks its columns at once; the same frame as one frame per benefit
    concatenated (the way it was built before)."""
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.reasons import CODES, status_of
    from puhui.fund.files import read_fund

    data = read_fund(city)
    st = data.settlements[data.settlements["refund_of"].isna()].head(3000)
    pol = data.policies[data.policies["product_id"] == PRODUCT.id]
    dec = adjudicate(PRODUCT, st.reset_index(drop=True), pol, data.lines)
    s = dec.settlements
    want = pd.concat([pd.DataFrame({
        "setl_id": s["setl_id"].to_numpy(), "psn_no": s["psn_no"].to_numpy(),
        "policy_no": s["policy_no"].to_numpy(), "benefit": np.full(len(s), b, dtype=object),
        "eligible_amt": dec.eligible[b], "deductible_amt": dec.deductible[b],
        "ratio_bp": dec.ratio_bp[b], "payout_amt": dec.payout[b],
        "status": status_of(dec.reason[b]), "reason": CODES[dec.reason[b] - 1]})
        for b in dec.benefits], ignore_index=True)
    got = dec.long()
    assert (got["payout_amt"] > 0).any()
    pd.testing.assert_frame_equal(got, want)


def test_a_text_column_of_nulls_stored_as_numbers_is_read_as_nulls(city, tmp_path):
    """refund_of written as an all-null double column (a writer's type for "no value";
    review 17): validation checks every rule over it (it skipped the chunk's row rules and
    said "valid") and the batch pays as with a text column of nulls (it stopped with an
    empty reason)."""
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from puhui.fund.validate import validate_dir

    runs = {}
    for kind in ("text", "double"):
        d = tmp_path / kind
        shutil.copytree(city, d)
        t = pq.read_table(d / "settlements.parquet")
        keep = pc.is_null(t["refund_of"])
        t = t.filter(keep)                           # no reversals: the originals stand
        i = t.schema.get_field_index("refund_of")
        t = t.set_column(i, "refund_of", pa.nulls(len(t), pa.string() if kind == "text"
                                                   else pa.float64()))
        pq.write_table(t, d / "settlements.parquet")
        assert validate_dir(d).problems == []
        runs[kind] = _run(d, tmp_path, kind)
    assert runs["text"] == runs["double"] and runs["text"][0]["paid_this_batch_yuan"] > 0
    # a negative amount on a row that is then no reversal is found (it was not)
    d = tmp_path / "double"
    t = pq.read_table(d / "settlements.parquet")
    amt = t["medfee_sumamt"].to_numpy().copy()
    amt[0] = -amt[0] - 1
    t = t.set_column(t.schema.get_field_index("medfee_sumamt"), "medfee_sumamt", pa.array(amt))
    pq.write_table(t, d / "settlements.parquet")
    assert any("amount >= 0" in p.rule for p in validate_dir(d).problems)
