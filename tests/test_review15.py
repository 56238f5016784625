"""Review of session 15's code columns read by Arrow (``_arrow_codes``, ``_text_in``,
settlements' psn_no read as codes by pricing and ``puhui mortality``).

The promise: every report, batch and pricing.json the same as before for any input.
Compared against commit 916c0a5 on hostile inputs (nulls, all nulls, empty strings,
whitespace, full-width digits, values outside the code list, numbers in a code column,
pandas categoricals written by pyarrow and fastparquet with unsorted and unused
categories, large_string and string_view, many row groups with small chunks and one or
two workers, zero rows, psn_no not in persons, duplicated persons, personal data in
code columns, invalid UTF-8): the same, except where a text value holds a NUL character.

pandas builds categoricals and factorizes an object array that is all strings with a
hash table of C strings, which ends a string at its first NUL: "P1\\x00" and "P1" are one
value to it (``pd.Categorical(["P1\\x00", "P1"])`` has the one category "P1\\x00").
Arrow's dictionary encoding keeps them apart. Validation now reads psn_no both ways:
as Arrow codes (``codes=True``: ``puhui validate``, claims, pricing, mortality) and as
Python strings looked up through ``pd.factorize`` (``codes=False``: ``puhui survival``).
So for the same folder ``puhui validate`` says one count for 'person in persons.parquet'
and ``puhui survival`` another, while its message says "`puhui validate` lists the
same". Before the change both said the same (wrong) count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from puhui.fund.files import _arrow_codes, _as_codes
from puhui.fund.validate import PersonKeys, _text_in, validate_dir

PERSON_RULE = "person in persons.parquet"


def _with_nul_psn(city, every: int = 7) -> int:
    """Every ``every``-th settlement's psn_no followed by a NUL (a person that is not in
    persons.parquet); returns how many rows were changed."""
    path = city / "settlements.parquet"
    t = pq.read_table(path)
    psn = t.column("psn_no").to_pylist()
    changed = 0
    for i in range(0, len(psn), every):
        psn[i] = psn[i] + "\x00"
        changed += 1
    t = t.set_column(t.schema.get_field_index("psn_no"), "psn_no", pa.array(psn, pa.string()))
    pq.write_table(t, path)
    return changed


def _count(rep, rule: str) -> int:
    return sum(p.count for p in rep.problems if p.rule == rule)


def test_nul_in_psn_no_same_report_with_and_without_codes(city_copy):
    # validate_dir(codes=True) is `puhui validate`, claims, pricing and mortality;
    # codes=False is `puhui survival`, which says "`puhui validate` lists the same"
    bad = _with_nul_psn(city_copy)
    as_codes = validate_dir(city_copy)
    as_text = validate_dir(city_copy, codes=False)
    assert _count(as_codes, PERSON_RULE) == bad
    assert as_text.messages() == as_codes.messages()
    assert _count(as_text, PERSON_RULE) == bad


def test_person_keys_text_and_categorical_agree_on_nul():
    # the lookup of settlements' psn_no: as text (pd.factorize) and as codes
    keys = PersonKeys(pd.Series(["P1", "P2"], dtype=object))
    refs = ["P1\x00", "P1", "P2"]
    assert keys.rows(_arrow_codes(pa.chunked_array([refs]))).tolist() == [-1, 0, 1]
    assert keys.rows(pd.Series(refs, dtype=object)).tolist() == [-1, 0, 1]


# --- what held: guards for the equivalences checked by hand ---------------------------

HOSTILE = [["21", None, "11", "21"], [None, None], [], ["", " ", "11 ", " 11", "\t"],
           ["１１", "11", "99"], ["é", "é", "\uffff", "\U0001F600", "Z", "z", "ａ"],
           ["b", "a"] * 3]


@pytest.mark.parametrize("values", HOSTILE)
@pytest.mark.parametrize("chunks", [1, 3])
def test_arrow_codes_as_pandas_made_them(values, chunks):
    """Arrow's codes are what pd.Categorical over the Python strings gave (no NUL)."""
    cut = np.array_split(np.arange(len(values)), chunks) if values else [[]]
    arr = pa.chunked_array([pa.array([values[i] for i in c], pa.string()) for c in cut],
                           pa.string())
    got = _arrow_codes(arr)
    want = _as_codes(pd.Series(values, dtype=object))
    assert got.cat.categories.tolist() == want.cat.categories.tolist()
    assert got.cat.codes.tolist() == want.cat.codes.tolist()
    assert got.cat.codes.dtype == want.cat.codes.dtype
    assert got.cat.categories.dtype == want.cat.categories.dtype
    again = _as_codes(got)                          # sorted and all used: as it is
    assert again.cat.codes.tolist() == want.cat.codes.tolist()


def _old_text_in(s: pd.Series, allowed) -> np.ndarray:
    """The code rule before 87e3aab's parent: every value as text, looked up."""
    txt = s.astype(object).where(s.isna(), s.astype(str))
    return s.notna().to_numpy() & txt.isin(allowed).to_numpy()


@pytest.mark.parametrize("s", [
    pd.Series(pd.Categorical([11, 21, None, 1])),
    pd.Series(pd.Categorical([11.0, 21.5, None])),
    pd.Series(pd.Categorical([True, False, None])),
    pd.Series(pd.Categorical([b"11", b"21", None])),
    pd.Series(pd.Categorical(["11", 11, None], categories=["11", 11])),
    pd.Series(pd.Categorical(["11", None], categories=["99", "11", "21"])),
    pd.Series(pd.Categorical([None, None])),
    pd.Series(pd.Categorical([])),
    pd.Series(pd.Categorical(["nan", "None", None])),
    pd.Series(["11", None, 11, 1.0, b"11", True], dtype=object),
], ids=lambda s: str(s.dtype) + str(len(s)))
def test_text_in_as_before(s):
    allowed = ("11", "21", "1", "True", "1.0", "b'11'", "nan", "None")
    assert _text_in(s, allowed).tolist() == _old_text_in(s, allowed).tolist()


# --- found on the way, the same before the change ---------------------------------------

def test_unreadable_text_is_not_echoed(city_copy):
    """A text column with a value that is not UTF-8 is refused as unreadable, and the
    message quotes pyarrow's error, which holds the value: an ID number with one stray
    byte is printed in full ("Wrapping 110101199003074514\\ufffd failed"). docs/privacy.md:
    personal data is refused without echoing it. The same at 916c0a5."""
    path = city_copy / "settlements.parquet"
    t = pq.read_table(path).replace_schema_metadata(None)
    i = t.schema.get_field_index("dise_code")
    vals = [v.encode() for v in t.column("dise_code").cast(pa.string()).to_pylist()]
    vals[3] = b"110101199003074514\xff"
    t = t.set_column(i, "dise_code", pa.array(vals, pa.binary()).view(pa.string()))
    pq.write_table(t, path)
    rep = validate_dir(city_copy)
    assert not rep.ok
    assert "110101199003074514" not in rep.messages()


# --- the fixes ---------------------------------------------------------------------------

@pytest.mark.parametrize("ctrl", ["\x00", "\x07", "\x7f"])
def test_a_control_character_in_an_id_is_refused_without_echo(city_copy, ctrl):
    """A NUL (or another control character) in psn_no is not a pseudonymous token: the
    folder is refused (privacy), whichever way the ids are read, and a direct payout
    refuses it too."""
    from puhui.claims.direct import _text

    _with_nul_psn(city_copy)
    path = city_copy / "settlements.parquet"
    t = pq.read_table(path)
    psn = [p.replace("\x00", ctrl) for p in t.column("psn_no").to_pylist()]
    t = t.set_column(t.schema.get_field_index("psn_no"), "psn_no", pa.array(psn))
    pq.write_table(t, path)
    for codes in (True, False):
        rep = validate_dir(city_copy, codes=codes)
        assert any(p.kind == "privacy" and "pseudonymous" in p.message()
                   for p in rep.problems), rep.messages()
    with pytest.raises(Exception, match="pseudonymous token"):
        _text({"psn_no": "P1" + ctrl}, "psn_no")
