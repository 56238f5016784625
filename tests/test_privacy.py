"""The privacy guard: planted ID numbers, phone numbers, addresses and name columns are
refused with a message that names the column and never shows the value."""

import pandas as pd
from click.testing import CliRunner
from fastparquet import write

from puhui.cli import cli
from puhui.fund.files import read_raw
from puhui.fund.privacy import id_check_digit, is_resident_id, scan_frame
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
