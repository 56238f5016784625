"""Session 17 (issue 19): ``puhui validate`` at ten million settlements, faster, same report.

Each fast path is checked against the plain computation it replaces: the persons' ids
encoded from their Arrow bytes against pandas/Arrow factorization, the ids' order by
64-bit words against Arrow's sort, the privacy pre-check's single translation against
the regular expression it replaced (and against the scan itself), the range checks from
the least and greatest value against the masks, the map's piece order against file
order, and the policies checked in a forked process against the same check here.
"""

import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import puhui.fund.validate as v
from puhui.fund import privacy
from puhui.fund.files import write_fund
from puhui.fund.schema import SETTLEMENTS
from puhui.fund.validate import PersonKeys, validate_dir
from puhui.synth.city import synth_city

ODD = ["P1", "P1\x00", "", "张三", "P10000000", "P1000000", "é", "a" * 16, "a" * 17,
       " P1", "P1 ", "P1\t"]


def _ids(rng, n, width, prefix="P"):
    return [prefix + "".join(rng.choice(list("0123456789AZ"), width - len(prefix)))
            for _ in range(n)]


# --- the ids' order -----------------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 5, 8, 9, 12, 16, 17])
def test_text_order_is_arrows_sort(width):
    rng = np.random.default_rng(width)
    ids = list(dict.fromkeys(_ids(rng, 3000, width, prefix="P" if width > 1 else "")))
    arr = pa.array(ids)
    assert v._text_order(arr).tolist() == pc.sort_indices(arr).to_numpy().tolist()
    # a slice (an offset into Arrow's buffers) and a dictionary column
    part = arr.slice(7, 500)
    assert v._text_order(part).tolist() == pc.sort_indices(part).to_numpy().tolist()
    d = arr.dictionary_encode()
    assert v._text_order(d).tolist() == pc.sort_indices(arr).to_numpy().tolist()


def test_text_order_of_odd_bytes_and_lengths_is_arrows_sort():
    rng = np.random.default_rng(1)
    same = ["\x00" * 3, "\x00\x00\x01", "\xff\x00\x00"[:1] + "ab", "é\x00", "zzz", "\x7fab"]
    for ids in (ODD, same, [x + "é" for x in _ids(rng, 500, 6)], ["only"]):
        ids = list(dict.fromkeys(ids))
        arr = pa.array(ids)
        assert v._text_order(arr).tolist() == pc.sort_indices(arr).to_numpy().tolist(), ids


# --- the persons' ids from Arrow ------------------------------------------------------------

@pytest.mark.parametrize("case", ["distinct", "repeats", "nulls", "odd"])
def test_person_keys_from_arrow_as_from_python_strings(case):
    rng = np.random.default_rng(7)
    ids = _ids(rng, 2000, 9)
    if case == "repeats":
        ids = ids + [ids[5], ids[17], ids[5]]
    elif case == "nulls":
        ids = [None if i % 97 == 0 else x for i, x in enumerate(ids)]
    elif case == "odd":
        ids = ODD + ["P1"]
    keys = pd.Series(ids, dtype=object)
    arr = pa.array(ids, type=pa.string())
    plain, fast = PersonKeys(keys), PersonKeys(keys, arr)
    assert fast.duplicated.tolist() == plain.duplicated.tolist()
    refs = pd.Series([x for x in ids[::3]] + ["nobody", None, "P1\x00\x00"], dtype=object)
    assert fast.rows(refs).tolist() == plain.rows(refs).tolist()
    row_of = {}
    for i, x in enumerate(ids):
        if x is not None:
            row_of.setdefault(x, i)
    assert fast.rows(refs).tolist() == [row_of.get(x, -1) for x in refs]
    kp, kf = plain.known(), fast.known()
    assert (kp is None) == (kf is None)
    if kp is not None:
        assert list(kf.categories) == list(kp.categories) == sorted(row_of)
        got = kf.lookup(pa.array([x for x in ids if x is not None][::5]))
        assert got is not None
        assert [kf.categories[c] for c in got[0]] == [x for x in ids if x is not None][::5]


def test_factorize_arrow_against_pandas():
    rng = np.random.default_rng(3)
    ids = [None if x.endswith("Z") else x for x in _ids(rng, 3000, 4)]     # repeats, nulls
    keys = pd.Series(ids, dtype=object)
    codes, uniques, arrow, h, order = v._factorize_arrow(keys, pa.array(ids, pa.string()))
    want_codes, want_uniques = pd.factorize(keys)
    assert codes.tolist() == want_codes.tolist()
    assert list(uniques) == list(want_uniques) == arrow.to_pylist()
    assert h is None and order is None
    assert v._factorize_arrow(keys, pa.array(range(len(ids)))) is None        # not text
    assert v._factorize_arrow(keys, pa.array(ids[:-1], pa.string())) is None   # not its


# --- the privacy pre-check ------------------------------------------------------------------

_OLD_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _old_text_is_clean(name, arr):
    """text_is_clean as it was before session 17 (a regular expression for control
    characters in an id column)."""
    for c in (arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]):
        if not pa.types.is_string(c.type):
            return False
        if not len(c) or c.null_count == len(c):
            continue
        vals = [x for x in c.to_pylist() if x is not None]
        b = "".join(vals).encode()
        if not b.isascii() or any(x in b for x in privacy._RULE_BYTES) or \
                b"0" * 11 in b.translate(privacy._RUN_TABLE):
            return False
        if name in privacy.ID_COLUMNS and _OLD_CONTROL.search(b):
            return False
    return True


def test_text_is_clean_as_before_on_random_bytes():
    rng = np.random.default_rng(17)
    alphabet = list("0123456789SPX-./()_,ab") + ["\t", "\x00", "\x1f", "\x7f", "\n", " ",
                                                  "@", ":", "é"]
    weights = np.array([8] * 10 + [4] * 12 + [0.3] * 9)
    weights /= weights.sum()
    differ = 0
    for trial in range(3000):
        n = int(rng.integers(1, 6))
        vals = ["".join(rng.choice(alphabet, int(rng.integers(0, 14)), p=weights))
                for _ in range(n)]
        if rng.random() < 0.2:
            vals[0] = None
        arr = pa.array(vals, pa.string())
        for name in ("setl_id", "dise_code"):
            got, want = privacy.text_is_clean(name, arr), _old_text_is_clean(name, arr)
            assert got == want, (name, vals)
            differ += got
    assert 0 < differ < 6000                       # both answers met


def test_a_code_column_cleared_by_its_categories_still_reports_what_it_holds(tmp_path):
    """A categorical is judged by its distinct values: a phone number in one row of a
    code column is still found (the categories hold it), with the same report chunked
    in two processes as whole in one."""
    data = synth_city(300, 1, seed=5)
    st = data.settlements.reset_index(drop=True).copy()
    st["fixmedins_code"] = st["fixmedins_code"].astype(object)
    st.loc[3, "fixmedins_code"] = "13912345678"
    data.settlements = st
    write_fund(data, tmp_path)
    whole = validate_dir(tmp_path)
    split = validate_dir(tmp_path, chunk_rows=500, workers=2)
    found = [p for p in whole.problems if p.kind == "privacy" and p.column == "fixmedins_code"]
    assert found and found[0].count == 1
    assert split.messages() == whole.messages()
    s = pd.Series(pd.Categorical(["H1", "H2", "H1"]))
    assert v._text_is_clean("fixmedins_code", s, pa.array(["H1", "H2", "H1"]), None)
    s = pd.Series(pd.Categorical(["H1", "13912345678", "H1"]))
    assert not v._text_is_clean("fixmedins_code", s, pa.array(["H1", "x", "H1"]), None)


# --- ranges from the least and greatest value -------------------------------------------------

def test_all_within_against_the_masks():
    rng = np.random.default_rng(2)
    for trial in range(2000):
        x = rng.normal(0, 10, int(rng.integers(0, 6))).round(2)
        if len(x) and rng.random() < 0.3:
            x[rng.integers(len(x))] = rng.choice([np.nan, np.inf, -np.inf, 1e12, -1e12])
        lo = None if rng.random() < 0.2 else float(rng.integers(-20, 0))
        hi = None if rng.random() < 0.2 else float(rng.integers(0, 20))
        out = ~np.isfinite(x)
        if lo is not None:
            out |= x < lo
        if hi is not None:
            out |= x > hi
        assert v._all_within(x, lo, hi) == (not out.any()), (x, lo, hi)


@pytest.mark.parametrize("plant", ["none", "nan", "inf", "high", "low", "decimals", "epoch",
                                   "future"])
def test_checks_of_a_chunk_as_plain_masks(tmp_path, plant):
    """Money and date columns with each kind of bad value: the problems' counts are
    the plain masks' counts, and the report chunked in two processes is the whole's."""
    write_fund(synth_city(250, 1, seed=9), tmp_path)
    st = pq.read_table(tmp_path / SETTLEMENTS.file).to_pandas()         # yuan, as filed
    rows = [4, 40, 400]
    if plant == "nan":
        st.loc[rows, "maf_pay"] = np.nan
    elif plant == "inf":
        st.loc[rows, "maf_pay"] = np.inf
    elif plant == "high":
        st.loc[rows, "medfee_sumamt"] = 2e8
    elif plant == "low":
        st.loc[rows, "hifp_pay"] = -2e8
    elif plant == "decimals":
        st.loc[rows, "hifp_pay"] = st.loc[rows, "hifp_pay"] + 0.001
    elif plant == "epoch":
        st.loc[rows, "setl_time"] = pd.Timestamp("1970-01-01")
    elif plant == "future":
        st.loc[rows, "setl_time"] = pd.Timestamp("2200-01-01")
    pq.write_table(pa.Table.from_pandas(st, preserve_index=False),
                   tmp_path / SETTLEMENTS.file, row_group_size=300)
    whole = validate_dir(tmp_path)
    split = validate_dir(tmp_path, chunk_rows=300, workers=2)
    assert split.messages() == whole.messages()
    assert [None if p.rows is None else sorted(p.rows.tolist()) for p in split.problems] == \
        [None if p.rows is None else sorted(p.rows.tolist()) for p in whole.problems]
    mine = {(p.column, p.rule): p for p in whole.problems if p.file == SETTLEMENTS.file}
    if plant == "none":
        assert whole.ok
    elif plant in ("nan",):
        assert mine[("maf_pay", "not null")].count == 3
    elif plant == "inf":
        assert any(c == "maf_pay" and "amount within" in r and p.count == 3
                   for (c, r), p in mine.items())
    elif plant == "high":
        assert any(c == "medfee_sumamt" and "amount within" in r and p.count == 3
                   for (c, r), p in mine.items())
    elif plant == "low":
        assert any(c == "hifp_pay" and "amount within" in r and p.count == 3
                   for (c, r), p in mine.items())
    elif plant == "decimals":
        assert mine[("hifp_pay", "at most two decimals (whole fen)")].count == 3
    elif plant == "epoch":
        assert mine[("setl_time", v.EPOCH_RULE)].count == 3
    elif plant == "future":
        assert any(c == "setl_time" and r.startswith("date within") and p.count == 3
                   for (c, r), p in mine.items())


# --- the map's order and the policies beside it ---------------------------------------------

def test_results_in_file_order_whatever_the_pieces_order():
    rng = np.random.default_rng(4)
    for n in range(0, 12):
        sizes = rng.integers(1, 5, n).tolist()
        order = v._piece_order(sizes, 2)
        if n <= 2:
            assert order is None
            continue
        assert sorted(order) == list(range(n)) and sizes[order[0]] == min(sizes)
        results = [f"chunk {i}" for i in order]
        assert list(v._in_file_order(iter(results), order)) == [f"chunk {i}" for i in range(n)]
    assert list(v._in_file_order(iter("abc"), None)) == list("abc")


@pytest.fixture(scope="module", params=["rules", "privacy"])
def dirty_city(tmp_path_factory, request):
    """A dirty city (``synth --dirty``) whose policies break every policy rule too (a
    repeated policy_no, an end before its start, an unknown person, an overlap) and,
    in one of the two, hold a phone number (a privacy finding: no example anywhere)."""
    d = tmp_path_factory.mktemp("dirty17")
    write_fund(synth_city(500, 1, seed=12, dirty=True), d)
    pol = pq.read_table(d / "policies.parquet").to_pandas()
    pol.loc[1, "policy_no"] = pol.loc[0, "policy_no"]
    pol.loc[2, "end_date"] = pol.loc[2, "start_date"] - pd.Timedelta(days=1)
    pol.loc[3, "psn_no"] = "NOBODY"
    extra = pol.iloc[[4]].copy()
    extra["policy_no"] = "OVERLAP-1"
    pol = pd.concat([pol, extra], ignore_index=True)
    if request.param == "privacy":
        pol["note"] = ""
        pol.loc[6, "note"] = "call 13912345678"
    pq.write_table(pa.Table.from_pandas(pol, preserve_index=False), d / "policies.parquet")
    return d


def _report(rep):
    return (rep.messages(), dict(rep.rows),
            [(p.file, p.column, p.rule, p.count, p.examples, p.kind,
              None if p.rows is None else p.rows.tolist()) for p in rep.problems])


def test_policies_beside_the_pass_give_the_same_report(dirty_city):
    one = validate_dir(dirty_city, chunk_rows=400, workers=1)
    two = validate_dir(dirty_city, chunk_rows=400, workers=2)
    kept = validate_dir(dirty_city, chunk_rows=400, workers=2, keep=True)
    assert sum(p.file == "policies.parquet" for p in one.problems) >= 4
    assert _report(two) == _report(one) == _report(kept)
    assert list(two.rows) == ["persons", "policies", "settlement_lines", "settlements"]


_PARENT: list = []
_REAL_CHECK = v._check_policies


def _dies_in_the_fork(directory, persons="file"):
    if os.getpid() not in _PARENT:
        os._exit(9)                                      # killed, out of memory...
    _PARENT.append("checked here")
    return _REAL_CHECK(directory, persons)


def test_a_policies_process_that_dies_is_done_here(dirty_city, monkeypatch):
    want = _report(validate_dir(dirty_city, chunk_rows=400, workers=1))
    _PARENT[:] = [os.getpid()]
    monkeypatch.setattr(v, "_check_policies", _dies_in_the_fork)
    assert _report(validate_dir(dirty_city, chunk_rows=400, workers=2)) == want
    assert _PARENT[1:] == ["checked here"]             # once, here, after the fork died


@pytest.mark.parametrize("persons", ["empty", "unusable", "missing"])
def test_policies_beside_the_pass_when_the_persons_are_not_usable(tmp_path, persons):
    """The forked check reads the persons' ids itself; where the persons are not usable
    here, the rule that needs them is left out, as when checked here."""
    write_fund(synth_city(200, 1, seed=4), tmp_path)
    pol = pq.read_table(tmp_path / "policies.parquet").to_pandas()
    pol.loc[3, "psn_no"] = "NOBODY"
    pq.write_table(pa.Table.from_pandas(pol, preserve_index=False),
                   tmp_path / "policies.parquet")
    ps = pq.read_table(tmp_path / "persons.parquet")
    if persons == "empty":
        pq.write_table(ps.slice(0, 0), tmp_path / "persons.parquet")
    elif persons == "unusable":
        p = ps.to_pandas()
        p.loc[5, "birth_year"] = None                    # a null where none may be
        pq.write_table(pa.Table.from_pandas(p, preserve_index=False),
                       tmp_path / "persons.parquet")
    else:
        (tmp_path / "persons.parquet").unlink()
    one = validate_dir(tmp_path, chunk_rows=300, workers=1)
    two = validate_dir(tmp_path, chunk_rows=300, workers=2)
    assert _report(two) == _report(one)
    assert not any(p.file == "policies.parquet" and p.rule == "person in persons.parquet"
                   for p in two.problems)


def test_no_policies_file_as_before(tmp_path):
    write_fund(synth_city(200, 1, seed=3), tmp_path)
    (tmp_path / "policies.parquet").unlink()
    one = validate_dir(tmp_path, chunk_rows=300, workers=1)
    two = validate_dir(tmp_path, chunk_rows=300, workers=2)
    assert _report(two) == _report(one)
    assert "policies" not in two.rows


def test_a_failure_during_the_pass_is_raised_and_the_policies_process_let_go(
        dirty_city, monkeypatch):
    """An error after the policies' process was forked reaches the caller as it would
    without it (the process is not waited for)."""
    def broken(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(v, "_settlements", broken)
    with pytest.raises(RuntimeError, match="planted"):
        validate_dir(dirty_city, chunk_rows=400, workers=2)
