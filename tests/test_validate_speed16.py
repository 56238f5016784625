"""Session 16 (issue 19): the fast paths of ``puhui validate`` against plain computations.

Settlements' psn_no are looked up once in the persons' ids (:class:`KnownText`, through
:class:`SortedHashes`), setl_id are hashed from Arrow's bytes (:func:`fingerprint`), held
as Arrow strings in a chunk, and money is converted to fen from the whole-fen check's
rounding. Each is checked here against a dict, pandas or NumPy doing the same thing the
obvious way, on ids chosen to break it: NUL inside, non-ASCII, empty, near-identical,
null, unknown, and hashes forced to collide.
"""

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import puhui.fund.validate as v
from puhui.fund.files import EngineFrame, to_file_types, write_fund
from puhui.fund.schema import PERSONS, SETTLEMENTS
from puhui.fund.validate import KnownText, PersonKeys, fingerprint, validate_dir
from puhui.sorted_search import SortedHashes
from puhui.synth.city import synth_city

ODD = ["P1", "P1\x00", "P1\x00\x00", "", "张三", "P10000000", "P1000000", "P10000000\x00",
       "é", "\U0001F600x", "a" * 17, "a" * 16, "a" * 15, "a" * 8, "a" * 7, " P1", "P1 "]


def test_fingerprint_of_python_and_arrow_text_agree_and_tell_near_ids_apart():
    """One hash whatever holds the text (Python strings, an Arrow array in pieces or
    sliced, large strings, a dictionary), so ids read from different files meet; and
    ids that differ by a NUL, a byte or a length hash apart."""
    want = fingerprint(np.array(ODD, dtype=object))
    arr = pa.array(ODD)
    assert (fingerprint(arr) == want).all()
    assert (fingerprint(pa.chunked_array([ODD[:5], ODD[5:]])) == want).all()
    assert (fingerprint(pa.array(["x"] + ODD).slice(1)) == want).all()
    assert (fingerprint(arr.cast(pa.large_string())) == want).all()
    assert (fingerprint(arr.dictionary_encode()) == want).all()
    assert (fingerprint(pd.Series(ODD)) == want).all()
    # one value at a time (the one-length path) as in a column of many lengths
    assert [int(fingerprint(np.array([x, x], dtype=object))[0]) for x in ODD] == \
        [int(h) for h in want]
    assert len(set(want.tolist())) == len(ODD)
    near = [f"S{i:09d}" for i in range(50_000)] + [f"S{i:09d}\x00" for i in range(50_000)]
    assert len(np.unique(fingerprint(np.array(near, dtype=object)))) == len(near)


def test_sorted_hashes_find_as_a_binary_search():
    rng = np.random.default_rng(16)
    keys = np.sort(rng.integers(0, 2**64 - 1, 20_000, dtype="uint64", endpoint=True))
    keys[10:14] = keys[10]                          # a repeated key: its first position
    keys = np.sort(np.concatenate([np.array([0, 2**64 - 1], dtype="uint64"), keys]))
    ix = SortedHashes(keys)
    q = np.concatenate([keys[rng.integers(0, len(keys), 5000)],
                        rng.integers(0, 2**64 - 1, 5000, dtype="uint64", endpoint=True),
                        keys[:20] + np.uint64(1), keys[-3:]])
    i = np.searchsorted(keys, q)
    plain = np.where(keys[np.minimum(i, len(keys) - 1)] == q, i, -1)
    assert ix.find(q).tolist() == plain.tolist()
    assert SortedHashes(np.zeros(0, "uint64")).find(q[:3]).tolist() == [-1, -1, -1]
    assert ix.find(np.zeros(0, "uint64")).tolist() == []


def test_known_text_lookup_against_a_dict():
    ids = pd.Series(ODD + ["P1", "é"], dtype=object)         # two persons repeated
    keys = PersonKeys(ids)
    known = keys.known()
    assert known is not None
    first = {}
    for row, x in enumerate(ids):
        first.setdefault(x, row)
    assert list(known.categories) == sorted(first)            # code point = byte order
    refs = ["P1\x00", None, "", "张三", "a" * 16, "P1", None, "P1 ", "\U0001F600x"]
    got = known.lookup(pa.chunked_array([refs[:4], refs[4:]]))
    assert got is not None
    codes, rows = got
    assert rows.tolist() == [first.get(x, -1) if x is not None else -1 for x in refs]
    cats = list(known.categories)
    assert [cats[c] if c >= 0 else None for c in codes] == refs
    # the same column as a categorical from its codes: values as the references
    cat = known.categorical(codes)
    assert cat.categories is known.categories and cat.tolist() == [
        x if x is not None else np.nan for x in refs]
    # one reference that is no person's (a byte more, a byte less): the usual way
    for unknown in ["P1\x00\x00\x00", "P", "a" * 9, "张"]:
        assert known.lookup(pa.array(["P1", unknown])) is None
    assert known.lookup(pa.array([1, 2])) is None                   # not text


def test_known_text_stands_down_when_hashes_collide(monkeypatch):
    monkeypatch.setattr(v, "fingerprint", lambda values, step=0: np.zeros(len(values), "uint64"))
    keys = PersonKeys(pd.Series(["p1", "p2"]))
    assert keys.known() is None
    assert KnownText.make(pa.array(["a", "b"]), np.arange(2)) is None
    assert keys.rows(pd.Series(["p2", "p9"])).tolist() == [1, -1]


def test_money_fen_from_the_checks_rounding_as_converted_afresh():
    x = np.array([1.1, 0.29, -12000.05, 1e16, -np.inf, np.inf, 1e15, -1e15, 0.005, 2.675,
                  123456789.99, -0.0])
    a = EngineFrame(SETTLEMENTS, ["medfee_sumamt"], len(x))
    a.add("medfee_sumamt", pd.Series(x))
    b = EngineFrame(SETTLEMENTS, ["medfee_sumamt"], len(x))
    b.add("medfee_sumamt", pd.Series(x), np.rint(x * 100))
    assert a.block.tolist() == b.block.tolist()


def _rewrite(d, table, df, row_group=700):
    t = pa.Table.from_pandas(to_file_types(table, df), preserve_index=False)
    pq.write_table(t, d / table.file, row_group_size=row_group)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A city whose persons and settlements hold odd ids (NUL inside, non-ASCII, empty,
    near-identical), settlements naming no person or a near miss of one, a repeated and
    a near-repeated setl_id, a reversal naming a near miss; settlements in row groups
    of 700 (chunks)."""
    base = tmp_path_factory.mktemp("planted")
    data = synth_city(400, 1, seed=16)
    clean = base / "clean"
    write_fund(data, clean)
    ps = data.persons.reset_index(drop=True).copy()
    st = data.settlements.reset_index(drop=True).copy()
    for df in (ps, st):
        df["psn_no"] = df["psn_no"].astype(object)
    st["setl_id"] = st["setl_id"].astype(object)
    st["refund_of"] = st["refund_of"].astype(object)
    odd = dict(zip(ps["psn_no"][1:6], ["张三", ps["psn_no"][7] + "\x00", "", "a" * 16,
                                       ps["psn_no"][8][:-1]]))
    ps["psn_no"] = ps["psn_no"].replace(odd)
    st["psn_no"] = st["psn_no"].replace(odd)
    known_ok = base / "odd_known"
    shutil.copytree(clean, known_ok)
    _rewrite(known_ok, PERSONS, ps)
    _rewrite(known_ok, SETTLEMENTS, st)
    bad = base / "odd_unknown"
    shutil.copytree(known_ok, bad)
    n = len(st)
    r = np.random.default_rng(3).choice(n, 12, replace=False)
    st.loc[r[0], "psn_no"] = st.loc[r[0], "psn_no"] + "\x00"
    st.loc[r[1], "psn_no"] = "PX"
    st.loc[r[2], "psn_no"] = "a" * 16 + "\x00"           # (a null: not usable at all)
    st.loc[r[3], "setl_id"] = st.loc[r[4], "setl_id"]
    st.loc[r[5], "setl_id"] = st.loc[r[6], "setl_id"] + "\x00"
    st.loc[r[7], "refund_of"] = st.loc[r[8], "setl_id"] + "\x00"   # a near miss
    _rewrite(bad, SETTLEMENTS, st)
    return {"clean": clean, "known": known_ok, "unknown": bad}


def _plain_person_rows(d):
    """Settlements naming no person, by a pandas lookup of the raw files."""
    ps = pq.read_table(d / PERSONS.file, columns=["psn_no"]).column(0).to_pylist()
    st = pq.read_table(d / SETTLEMENTS.file, columns=["psn_no"]).column(0).to_pylist()
    have = set(x for x in ps if x is not None)
    return [i for i, x in enumerate(st) if x is not None and x not in have]


def _plain_repeats(d):
    ids = pq.read_table(d / SETTLEMENTS.file, columns=["setl_id"]).column(0).to_pylist()
    seen, out = set(), []
    for i, x in enumerate(ids):
        if x in seen:
            out.append(i)
        seen.add(x)
    return out


def _rows(rep, column, rule):
    ps = [p for p in rep.problems if p.file == SETTLEMENTS.file and p.column == column
          and p.rule == rule]
    return sorted(ps[0].rows.tolist()) if ps else []


@pytest.mark.parametrize("which", ["clean", "known", "unknown"])
def test_planted_ids_give_the_plain_answers_chunked_or_whole(planted, which):
    d = planted[which]
    whole = validate_dir(d)
    for kw in (dict(chunk_rows=1000, workers=2), dict(chunk_rows=700, workers=1),
               dict(chunk_rows=1000, workers=1, codes=False)):
        rep = validate_dir(d, **kw)
        assert rep.messages() == whole.messages()
        assert [None if p.rows is None else sorted(p.rows.tolist()) for p in rep.problems] \
            == [None if p.rows is None else sorted(p.rows.tolist()) for p in whole.problems]
    assert _rows(whole, "psn_no", "person in persons.parquet") == _plain_person_rows(d)
    assert _rows(whole, "setl_id", "unique") == _plain_repeats(d)
    if which == "unknown":
        assert _plain_person_rows(d) and _plain_repeats(d)
        assert any(p.rule == "reverses an existing settlement" for p in whole.problems)
    if which == "clean":
        assert whole.ok


@pytest.mark.parametrize("which", ["known", "unknown"])
def test_the_report_with_colliding_hashes_is_the_report(planted, which, monkeypatch):
    """Hashes cut to 6 bits (most ids share one with others): every look-up falls to
    the text where hashes match, and the report is the same, rows and all."""
    d = planted[which]
    want = validate_dir(d, chunk_rows=1000, workers=1)
    real = v.fingerprint
    monkeypatch.setattr(v, "fingerprint",
                        lambda values, step=1_000_000: real(values, step) & np.uint64(63))
    got = validate_dir(d, chunk_rows=1000, workers=1)
    assert got.messages() == want.messages()
    assert [None if p.rows is None else sorted(p.rows.tolist()) for p in got.problems] == \
        [None if p.rows is None else sorted(p.rows.tolist()) for p in want.problems]
    assert (got.line_settlement_rows == want.line_settlement_rows).all()
    assert got.reversed_settlement_rows.tolist() == want.reversed_settlement_rows.tolist()


def test_a_sink_gets_the_chunk_as_before(planted):
    """The fast look-up's categorical (over every person) and the Arrow-held setl_id
    do not reach a sink: it sees psn_no over the values that occur, sorted, and setl_id
    as Python strings; its ``who`` is each settlement's row in persons."""
    d = planted["known"]
    ps = pq.read_table(d / PERSONS.file, columns=["psn_no"]).column(0).to_pylist()
    row_of = {}
    for i, x in enumerate(ps):
        row_of.setdefault(x, i)
    seen = []

    def sink(start, st, who, has_lines):
        cats = st["psn_no"].cat.categories
        values = st["psn_no"].astype(object)
        assert list(cats) == sorted({x for x in values if isinstance(x, str)})
        assert st["setl_id"].dtype == object and isinstance(st["setl_id"].iloc[0], str)
        assert who.tolist() == [row_of.get(x, -1) for x in st["psn_no"].astype(object)]
        seen.append(len(st))
        return (len(st),)

    rep = validate_dir(d, chunk_rows=1000, workers=1, settlements_sink=sink)
    assert sum(seen) == rep.rows["settlements"] and len(seen) > 1


def test_a_reference_whose_hash_matches_a_persons_is_compared_as_text(monkeypatch):
    """"PX" made to hash as person "P1" does (and "P1\\x00" as "P1 "): the look-up
    finds the candidate by its hash and refuses it by its text."""
    real = v.fingerprint
    alias = {"PX": "P1", "P1\x00": "P1 "}

    def forged(values, step=1_000_000):
        vals = values.to_pylist() if isinstance(values, (pa.Array, pa.ChunkedArray)) \
            else list(values)
        return real(np.array([alias.get(x, x) for x in vals], dtype=object), step)

    monkeypatch.setattr(v, "fingerprint", forged)
    keys = PersonKeys(pd.Series(["P1", "P2", "P1 "]))
    known = keys.known()
    assert known is not None
    assert known.lookup(pa.array(["P2", "PX"])) is None
    assert known.lookup(pa.array(["P1\x00"])) is None
    codes, rows = known.lookup(pa.array(["P1 ", "P1", None]))
    assert rows.tolist() == [2, 0, -1]
