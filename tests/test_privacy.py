"""The privacy guard: planted ID numbers, phone numbers, addresses and name columns are
refused with a message that names the column and never shows the value."""

import pandas as pd
from click.testing import CliRunner
from fastparquet import write

from puhui.cli import cli
from puhui.fund.files import read_raw
from puhui.fund.privacy import (
    check_token,
    check_value,
    column_rule,
    id_check_digit,
    identifying_fields,
    is_old_resident_id,
    is_resident_id,
    scan_frame,
    scan_values,
)
from puhui.fund.schema import PERSONS, SETTLEMENTS
from puhui.fund.validate import validate_dir

# A syntactically valid resident ID (GB 11643-1999 example number) and a mobile number.
ID_NO = "11010519491231002X"
PHONE = "13912345678"


def test_check_digit_worked_example():
    # 1*7 + 1*9 + 0*10 + 1*5 + 0*8 + 5*4 + 1*2 + 9*1 + 4*6 + 9*3 + 1*7 + 2*9 + 3*10
    # + 1*5 + 0*8 + 0*4 + 2*2 = 167; 167 mod 11 = 2 -> "10X98765432"[2] = "X"
    assert id_check_digit(ID_NO[:17]) == "X"
    assert is_resident_id(ID_NO)
    assert not is_resident_id(ID_NO[:17] + "1")       # wrong check digit
    assert not is_resident_id("110105194913310028")   # month 13


def test_scan_finds_ids_phones_addresses_in_any_column():
    df = pd.DataFrame({
        "note": [f"patient {ID_NO}", "call " + PHONE, "ok", None],
        "memo": ["上海市徐汇区漕溪北路100号", "x", "y", "z"],
        "num": [13812345678, 1, 2, 3],
    })
    found = {(f.column, f.what.split(" (")[0]) for f in scan_frame(df)}
    assert ("note", "resident ID numbers") in found
    assert ("note", "mobile phone numbers") in found
    assert ("memo", "street addresses") in found
    assert ("num", "mobile phone numbers") in found


def test_pseudonymous_ids_pass():
    df = pd.DataFrame({"setl_id": ["S000000001", "S000000002"], "psn_no": ["P00000001", "P1"],
                       "dise_code": ["C34", "I10"]})
    assert scan_frame(df) == []


def test_column_names_that_say_personal_data():
    df = pd.DataFrame({"psn_name": ["a"], "cert_no": ["b"], "mobile": ["c"], "home_addr": ["d"],
                       "dise_name": ["lung cancer"]})
    cols = {f.column for f in scan_frame(df)}
    assert cols == {"psn_name", "cert_no", "mobile", "home_addr"}


def test_validate_refuses_planted_ids_and_never_echoes_them(city_copy):
    p = read_raw(city_copy, PERSONS)
    p["psn_no"] = p["psn_no"].astype(str)
    p.loc[3, "psn_no"] = ID_NO                      # an ID number used as the person key
    write(str(city_copy / PERSONS.file), p, write_index=False)
    st = read_raw(city_copy, SETTLEMENTS)
    st["contact"] = None
    st.loc[5, "contact"] = PHONE
    write(str(city_copy / SETTLEMENTS.file), st, write_index=False)
    rep = validate_dir(city_copy)
    priv = [m.message() for m in rep.problems if m.kind == "privacy"]
    assert any("persons.parquet: column psn_no: privacy 'anonymised data: no resident ID "
               "numbers" in m for m in priv), priv
    assert any("settlements.parquet: column contact" in m for m in priv), priv
    res = CliRunner().invoke(cli, ["validate", str(city_copy)], standalone_mode=False)
    text = res.output + (str(res.exception) if res.exception else "")
    everything = text + "\n".join(m.message() for m in rep.problems)
    assert ID_NO not in everything and PHONE not in everything


# --- the widened guard: single values, records, numbers, names, addresses -------------

SETTLEMENT = dict(setl_id="D1", psn_no="P1", setl_time="2025-03-01", med_type="21", hosp_lv=3,
                  insutype="310", dise_code="C34.1", medfee_sumamt=900.0, fulamt_ownpay_amt=0,
                  overlmt_selfpay=0, psn_part_amt=300.0,
                  lines=[{"hilist_code": "A-0004", "list_class": "A", "amount": 120.5}])


def test_a_direct_settlement_is_clean_and_ids_in_it_are_named():
    assert identifying_fields(SETTLEMENT) == []
    bad = dict(SETTLEMENT, psn_no=ID_NO + "A", setl_id=13812345678,
               lines=[{"hilist_code": "A-0004", "memo": "姓名：张三"}], phone="x")
    found = identifying_fields(bad)
    assert [f for f, _ in found] == ["setl_id", "psn_no", "lines[0].memo", "phone"]
    assert found[1][1].startswith("resident ID numbers")
    assert found[3][1] == "a phone number (by its field name)"
    assert all(ID_NO not in r and "张三" not in r for _, r in found)


def test_check_token_on_psn_no_and_setl_id():
    assert check_token("P00000001", "psn_no") is None
    assert check_token("S000000001", "setl_id") is None
    assert check_token("110105 19491231 002X", "psn_no").startswith("resident ID numbers")
    assert check_token(13812345678.0, "setl_id") == "mobile phone numbers"
    assert check_token(float(ID_NO[:17] + "1"), "psn_no") is not None   # digits lost
    assert check_value(True) is None and check_value(None) is None


def test_numbers_stored_as_numbers():
    phones = pd.Series([13812345678.0, float("nan"), 36.5])     # a phone column with blanks
    assert [f.what for f in scan_values("c", phones)] == ["mobile phone numbers"]
    assert scan_values("c", pd.Series([12345.67, 4.0e6, float("nan")])) == []
    typo = pd.Series([int(ID_NO[:17] + "1"), 3])      # an ID with a wrong check digit
    assert [f.what for f in scan_values("c", typo)] == [
        "resident ID numbers (18 characters, valid region and birth date)"]
    assert [f.what for f in scan_values("c", pd.Series([110105491231002, 5]))] == [
        "old 15-digit resident ID numbers"]
    assert scan_values("c", pd.Series([1704067200000, 20240101123000])) == []


def test_old_ids_and_separated_landlines():
    assert is_old_resident_id("110105491231002")
    assert not is_old_resident_id("001201000010000")     # a service item code
    assert check_value("021-64381234") == "landline phone numbers"
    assert check_value("(0571) 8765 4321") == "landline phone numbers"
    assert check_value("02164381234") is None             # no separated area code: unsure
    assert check_value("H13010500123") is None            # a hospital code, not a phone


def test_full_width_and_suffixes():
    assert check_value("１３８１２３４５６７８") == "mobile phone numbers"
    assert check_value("13812345678转8001") == "mobile phone numbers"
    assert check_value(ID_NO.lower() + "abc").startswith("resident ID numbers")
    assert check_value("13812345678901234567") is None   # a long token holds no phone


def test_column_names_pinyin_and_english():
    for c in ("hzxm", "patient", "lxr", "zjhm", "sfz", "shouji", "sj", "dz", "dizhi", "zz",
              "PatientName", "contact", "idcard", "identity_card", "lianxidianhua", "家庭住址",
              "psn_xm", "tbrxm", "nickname", "email"):
        assert column_rule(c) is not None, c
    for c in ("psn_no", "setl_id", "dise_name", "hosp_name", "xmbm", "jssj", "psn_cert_type",
              "patient_id", "fixmedins_code", "hilist_code", "refund_of", "consent",
              "zlxm", "age_cell"):
        assert column_rule(c) is None, c


def test_names_and_addresses_in_free_text():
    for v in ("姓名：张三", "患者: 王小明", "患者张三，男", "李先生", "name: Zhang San",
              "Mr. Wang", "赵四，女，65岁"):
        assert check_value(v) == "personal names (next to a name marker)", v
    for v in ("漕溪北路100号", "幸福小区5栋302室", "张家村3组15号", "100 Caoxi North Road",
              "Room 302", "Caoxi Rd. No. 100"):
        assert check_value(v) == "street addresses", v
    for v in ("患者自付部分", "患者高血压，规律服药", "乡镇卫生院", "St. Mary Hospital",
              "take 2 tablets per day", "姓名：某某", "138****5678"):
        assert check_value(v) is None, v


def test_bytes_are_decoded_not_dropped():
    gbk = pd.Series(["姓名：张三".encode("gb18030"), None, b"abc"], dtype=object)
    assert [f.what for f in scan_values("memo", gbk)] == ["personal names (next to a name "
                                                          "marker)"]


def test_refuse_identifying_names_source_and_column_not_value():
    from puhui.errors import InputError
    from puhui.fund.privacy import refuse_identifying

    refuse_identifying(pd.DataFrame({"setl_id": ["S000000001"]}), "claims.csv")
    try:
        refuse_identifying(pd.DataFrame({"setl_id": ["S1", PHONE], "tel": ["a", "b"]}),
                           "claims.csv")
    except InputError as exc:
        msg = str(exc)
    else:
        raise AssertionError("not refused")
    assert "claims.csv: column setl_id: privacy 'anonymised data: no mobile phone numbers' " \
           "broken by 1 values" in msg and "claims.csv: column tel" in msg
    assert PHONE not in msg


def test_claims_run_refuses_an_id_with_a_suffix_as_psn_no(city_copy, tmp_path, capsys):
    """The review's case: an ID number with a suffix used as psn_no reached eob.parquet and
    the ledger. Now the batch stops before anything is written, and says nothing of it."""
    import pytest

    from puhui.cli import main
    from puhui.fund.schema import POLICIES

    psn = ID_NO + "A"
    for table in (PERSONS, POLICIES, SETTLEMENTS):
        df = read_raw(city_copy, table)
        first = df["psn_no"].astype(str).iloc[0]
        df["psn_no"] = df["psn_no"].astype(str).where(df["psn_no"].astype(str) != first, psn)
        write(str(city_copy / table.file), df, write_index=False)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with pytest.raises(SystemExit) as exc:
        main(["claims", "run", "--product", "huhuibao-2025", "--data", str(city_copy),
              "--ledger", url, "--batch", "b1", "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert exc.value.code == 2
    assert "persons.parquet: column psn_no: privacy" in out.err
    assert ID_NO not in out.out + out.err and ID_NO[:14] not in out.out + out.err
    assert not (tmp_path / "out" / "eob.parquet").exists()
    db = tmp_path / "ledger.db"
    assert not db.exists() or ID_NO.encode() not in db.read_bytes()


# --- the fast path: a column whose bytes clear every rule is not scanned value by value

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = st.sampled_from(["S", "P", "0", "1", "13812345678", "110101199003074514",
                           "021-6438-1234", "-", ".", " ", "@", ":", "=", "\x00", "\t",
                           "\x7f", "张", "１", "a@b.cn", "Rd", "No.", "x", "5"])
_VALUES = st.lists(st.one_of(st.none(), st.lists(_PIECES, max_size=6).map("".join)),
                   max_size=12)


@settings(max_examples=400, deadline=None)
@given(values=_VALUES, name=st.sampled_from(["setl_id", "psn_no", "dise_code", "note"]),
       cut=st.integers(0, 12))
def test_a_column_the_fast_check_clears_has_no_finding(values, name, cut):
    """text_is_clean(column) implies scan_values finds nothing in it (the check is a
    shortcut, never a weaker guard), over values built of the pieces the rules look for,
    in one or two Arrow chunks."""
    import pyarrow as pa

    from puhui.fund.privacy import scan_values, text_is_clean

    k = min(cut, len(values))
    arr = pa.chunked_array([pa.array(values[:k], pa.string()),
                            pa.array(values[k:], pa.string())])
    if text_is_clean(name, arr):
        assert scan_values(name, pd.Series(values, dtype=object)) == []
