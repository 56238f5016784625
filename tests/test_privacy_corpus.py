"""The privacy corpus: identifiers planted, one at a time, into a copy of a small valid
fund folder, and innocent look-alikes that must pass.

Each planting is written into one file of a fresh copy (as an extra column, or in place
of one value of an existing column such as psn_no), then ``puhui validate`` runs through
the console entry point. A planting is *refused* when the exit code is 2 and a privacy
line names the file and the column; whatever the outcome, the planted value must not
appear in stdout or stderr. The refusal rate over the corpus must be at least 95%; the
counts are printed (``pytest -s``) and written in docs/privacy.md.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastparquet import write

from puhui.cli import main
from puhui.fund.files import read_raw, write_fund
from puhui.fund.privacy import id_check_digit
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS
from puhui.synth.city import synth_city

TABLES = {t.file: t for t in (PERSONS, POLICIES, SETTLEMENTS, SETTLEMENT_LINES)}
P, POL, S, L = (t.file for t in (PERSONS, POLICIES, SETTLEMENTS, SETTLEMENT_LINES))


def _id(first17: str) -> str:
    return first17 + id_check_digit(first17)


ID_X = _id("11010519491231002")              # ends in X
ID_9 = _id("44030619851107123")              # ends in a digit
ID_5 = _id("32010219700315004")
ID_BAD = ID_9[:17] + ("0" if ID_9[17] != "0" else "1")   # a typo in the check digit
OLD_ID = "110105491231002"                   # 15 digits: region, 491231, 002
FW = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")   # full-width forms


@dataclass(frozen=True)
class Plant:
    label: str
    file: str
    column: str
    value: object
    #: "extra": a new column holding the value in one row; "replace": one value of an
    #: existing column replaced
    mode: str = "extra"
    #: text that must never be echoed (default: the value as text)
    secret: str | None = None

    def secrets(self) -> list[str]:
        v = self.value
        out = [self.secret] if self.secret else []
        if isinstance(v, bytes):
            return out
        if isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        out.append(str(v))
        return out


CORPUS = [
    # mobile numbers, in every written form
    Plant("mobile as text", S, "note", "13812345678"),
    Plant("mobile as int column", P, "contact_no", 13912345678),
    Plant("mobile as float column with blanks", P, "extra1", 13812345678.0),
    Plant("mobile as float in settlements", S, "extra2", 15012345678.0),
    Plant("mobile with hyphens", POL, "note", "138-1234-5678", secret="12345678"),
    Plant("mobile with spaces", S, "memo", "138 1234 5678", secret="1234 5678"),
    Plant("mobile with dots", L, "note", "138.1234.5678", secret="1234.5678"),
    Plant("mobile with slashes", P, "remark", "186/1234/5678", secret="1234/5678"),
    Plant("mobile +86 spaced", S, "bz", "+86 138 1234 5678", secret="1234 5678"),
    Plant("mobile 0086 prefix", POL, "bz", "0086-13812345678", secret="13812345678"),
    Plant("mobile +86 joined", L, "remark", "+8613712345678", secret="13712345678"),
    Plant("mobile full-width", P, "note", "１３８１２３４５６７８"),
    Plant("mobile with letter suffix", S, "note", "13812345678a", secret="13812345678"),
    Plant("mobile with extension", POL, "note", "13812345678转8001", secret="13812345678"),
    Plant("mobile as text of a float", S, "extra3", "13812345678.0", secret="13812345678"),
    Plant("mobile in scientific notation", L, "extra", "1.3812345678E+10"),
    Plant("mobile after 电话", P, "memo", "电话：17712345678", secret="17712345678"),
    Plant("mobile bracketed +86", S, "memo2", "(+86)139-1234-5678", secret="1234-5678"),
    Plant("mobile after tel", POL, "memo", "tel13812345678", secret="13812345678"),
    Plant("mobile full-width with hyphens", L, "memo", "１３８－１２３４－５６７８",
          secret="１２３４－５６７８"),
    Plant("mobile as psn_no", P, "psn_no", "13812345678", "replace"),
    Plant("mobile with suffix as psn_no", S, "psn_no", "13812345678A", "replace",
          secret="13812345678"),
    Plant("mobile as setl_id", S, "setl_id", "139 1234 5678", "replace", secret="1234 5678"),
    Plant("mobile as policy_no", POL, "policy_no", "18612345678", "replace"),
    Plant("mobile in fixmedins_code", S, "fixmedins_code", "13812345678", "replace"),
    Plant("mobile as float premium", POL, "premium", 13812345678.0, "replace"),
    # landlines
    Plant("landline with hyphen", S, "note", "021-64381234", secret="64381234"),
    Plant("landline bracketed", P, "note", "(0571) 8765 4321", secret="8765 4321"),
    Plant("landline spaced", L, "note", "010 6543 2109", secret="6543 2109"),
    # resident ID numbers
    Plant("ID as text", P, "note", ID_9),
    Plant("ID ending X", S, "note", ID_X),
    Plant("ID ending lower-case x", POL, "note", ID_X.lower()),
    Plant("ID with letter suffix", L, "note", ID_9 + "AB", secret=ID_9),
    Plant("ID split by spaces", S, "memo", f"{ID_X[:6]} {ID_X[6:14]} {ID_X[14:]}",
          secret=ID_X[6:14]),
    Plant("ID split by hyphens", P, "memo", f"{ID_5[:6]}-{ID_5[6:10]}-{ID_5[10:14]}-{ID_5[14:]}",
          secret=ID_5[:6] + "-" + ID_5[6:10]),
    Plant("ID in groups of four", POL, "memo", " ".join(ID_9[i:i + 4] for i in range(0, 18, 4)),
          secret=ID_9[4:8] + " " + ID_9[8:12]),
    Plant("ID full-width", L, "memo", ID_X.translate(FW)),
    Plant("ID as int column", P, "extra", int(ID_9)),
    Plant("ID as float column (digits lost)", S, "extra", float(ID_9), secret=ID_9[:14]),
    Plant("ID with a wrong check digit", S, "note2", ID_BAD),
    Plant("ID in free text", POL, "note2", f"身份证号{ID_5}，已核实", secret=ID_5),
    Plant("ID as psn_no in persons", P, "psn_no", ID_X, "replace"),
    Plant("ID with suffix as psn_no in settlements", S, "psn_no", ID_X + "A", "replace",
          secret=ID_X),
    Plant("ID with suffix as psn_no in policies", POL, "psn_no", ID_9 + "-01", "replace",
          secret=ID_9),
    Plant("ID as setl_id in lines", L, "setl_id", ID_5, "replace"),
    Plant("ID in refund_of", S, "refund_of", ID_9, "replace"),
    Plant("ID as product_id", POL, "product_id", ID_5, "replace"),
    Plant("old 15-digit ID", P, "note", OLD_ID),
    Plant("old 15-digit ID spaced", S, "note3", "110105 491231 002", secret="491231"),
    Plant("old 15-digit ID as int", L, "extra2", int(OLD_ID)),
    Plant("old 15-digit ID as psn_no", P, "psn_no", "320102700315004", "replace"),
    # bytes columns (no UTF8 annotation; legacy GBK text)
    Plant("GBK bytes name", P, "memo_b", "姓名：张三".encode("gb18030"), secret="张三"),
    Plant("UTF-8 bytes mobile", S, "memo_b", b"13812345678", secret="13812345678"),
    # column names that say personal data (values look harmless)
    *(Plant(f"column {c}", f, c, v, secret=v) for c, f, v in (
        ("hzxm", S, "赵甲"), ("patient", P, "钱乙"), ("lxr", POL, "孙丙"), ("xm", P, "李丁"),
        ("name", L, "周戊"), ("PatientName", S, "吴己"), ("lianxiren", P, "郑庚"),
        ("contact", POL, "冯辛"), ("姓名", S, "陈壬"), ("zjhm", P, "A1"), ("sfz", S, "B2"),
        ("sfzh", POL, "C3"), ("idcard", L, "D4"), ("cert_no", P, "E5"), ("shouji", S, "F6"),
        ("sj", P, "G7"), ("phone", POL, "H8"), ("mobile", L, "I9"), ("tel", S, "J0"),
        ("dianhua", P, "K1"), ("lxdh", POL, "L2"), ("dz", S, "M3"), ("dizhi", P, "N4"),
        ("address", POL, "O5"), ("home_addr", L, "P6"), ("zz", S, "Q7"), ("手机号", P, "R8"),
        ("家庭住址", S, "S9"))),
    # names in free text, next to a marker
    Plant("name after 姓名", S, "note", "姓名：张三", secret="张三"),
    Plant("name after 患者", P, "note", "患者: 王小明", secret="王小明"),
    Plant("name after 联系人", POL, "note", "联系人 欧阳娜娜", secret="欧阳娜娜"),
    Plant("surname + 先生", L, "note", "李先生来电"),
    Plant("name in English", S, "note4", "name: Zhang San", secret="Zhang San"),
    Plant("patient in capitals", P, "note2", "Patient: LI WEI", secret="LI WEI"),
    Plant("Mr. + surname", POL, "note3", "call Mr. Wang", secret="Wang"),
    Plant("name after 姓名 full-width colon", L, "note2", "姓名：刘德华", secret="刘德华"),
    # addresses
    Plant("address with 市/区", S, "addr_note", "上海市徐汇区漕溪北路100号", secret="漕溪北路"),
    Plant("street + number", P, "note3", "漕溪北路100号"),
    Plant("lane + number", POL, "note4", "南京东路88弄12号"),
    Plant("compound + building + room", S, "note5", "幸福小区5栋302室"),
    Plant("village + group", L, "note3", "张家村3组15号"),
    Plant("building + room", P, "note4", "住5栋302室", secret="5栋302室"),
    Plant("address full-width digits", S, "note6", "漕溪北路１００号"),
    Plant("English street address", POL, "note5", "100 Caoxi North Road"),
    Plant("English road + No.", S, "note7", "Caoxi Rd. No. 100"),
    Plant("English room", L, "note4", "Room 302, Building 5"),
    Plant("English pinyin street", P, "note5", "Nanjing Xi Lu 1266"),
    # more written forms
    Plant("mobile with underscores", S, "note8", "138_1234_5678", secret="1234_5678"),
    Plant("mobile with spaced hyphens", P, "note6", "138 - 1234 - 5678", secret="1234 - 5678"),
    Plant("mobile with no-break spaces", POL, "note6", "138\u00a01234\u00a05678",
          secret="1234\u00a05678"),
    Plant("mobile in a categorical column", S, "med_type", "13812345678", "replace"),
    Plant("mobile in dise_code", S, "dise_code", "15912345678", "replace"),
    Plant("mobile in hilist_code", L, "hilist_code", "C-13812345678", "replace",
          secret="13812345678"),
    Plant("ID after ID:", L, "note5", f"ID:{ID_9}", secret=ID_9),
    Plant("ID in gender", P, "gender", ID_5, "replace"),
    Plant("ID as float in an amount column", S, "medfee_sumamt", float(ID_X[:17] + "0"),
          "replace", secret=ID_X[:14]),
    Plant("name after 患者 without separator", S, "note9", "患者张三，男", secret="张三"),
    Plant("name, gender and age", P, "note7", "赵四，女，65岁", secret="赵四"),
    Plant("column identity_card", POL, "identity_card", "T1"),
    Plant("column shoujihaoma", L, "shoujihaoma", "T2"),
    Plant("column insured_name", S, "insured_name", "T3"),
    Plant("address with 区 only", L, "note6", "徐汇区漕溪北路100号", secret="漕溪北路"),
    Plant("address in Chinese numerals", POL, "note7", "人民路一百二十号"),
    Plant("English apartment", S, "note10", "Apt 5B, 100 Main St", secret="Main St"),
    Plant("e-mail address", P, "note8", "zhangsan1985@163.com", secret="zhangsan1985"),
    Plant("e-mail column", POL, "email", "U1"),
]

INNOCENT = [
    ("synth person id", P, "alias", "P00000001"),
    ("synth settlement id", S, "orig_setl", "S000000001"),
    ("synth ghost id", S, "ghost", "X000000001"),
    ("synth policy number", POL, "prev_policy", "HHB2400000001"),
    ("synth hospital code", S, "hosp2", "H3110014"),
    ("national hospital code (H + 11 digits)", S, "fixmedins_natl", "H13010500123"),
    ("ICD-10 code", S, "dise2", "C34.1"),
    ("ICD-10 code, long", S, "dise3", "C34.100"),
    ("hilist code", L, "hilist2", "A-0004"),
    ("national drug code", L, "drug_code", "XN02BEA078E001010100126"),
    ("service item code (15 digits)", L, "item_code", "001201000010000"),
    ("date", P, "note", "2024-01-01"),
    ("date and time", S, "note", "2024-01-01 12:30:00"),
    ("compact timestamp", S, "stamp", "20240101123000"),
    ("ms epoch as int", S, "epoch_ms", 1704067200000),
    ("amount as text", S, "amt_text", "36.32"),
    ("amount in a float column", S, "extra_amt", 123456.78),
    ("large whole amount", POL, "sum_insured", 4000000.0),
    ("18 digits without a birth date", P, "token18", "123456789012345678"),
    ("19-digit numeric token", P, "token19", "1234567890123456789"),
    ("20-digit token starting like a mobile", S, "token20", "13812345678901234567"),
    ("product id", POL, "prev_product", "huhuibao-2024"),
    ("free text, ICD", S, "note", "ICD C34.1 stage 2"),
    ("free text, English", L, "note", "lung cancer, second line"),
    ("free text, 患者自付", S, "note", "患者自付部分"),
    ("free text, 联系人电话 empty", P, "note", "联系人电话未填"),
    ("hospital name", S, "hosp_name", "上海市第六人民医院"),
    ("township hospital", S, "hosp_name", "乡镇卫生院"),
    ("disease name column", S, "dise_name", "肺癌"),
    ("certificate type column", P, "psn_cert_type", "01"),
    ("patient id column", P, "patient_id", "P00000001"),
    ("item code column xmbm", L, "xmbm", "001201000010000"),
    ("settlement time column jssj", S, "jssj", "2024-01-01"),
    ("list of small numbers", S, "note", "10 20 30 40 50 60"),
    ("saint", S, "note", "St. Mary Hospital"),
    ("dosage", L, "note", "take 2 tablets per day"),
    ("clinical note after 患者", S, "note", "患者高血压，规律服药"),
    ("outpatient building", S, "note", "门诊3号楼"),
    ("masked mobile", P, "note", "138****5678"),
    ("masked ID", P, "note", "110105********002X"),
    ("anonymised name", S, "note", "姓名：某某"),
    ("at sign in a code", L, "note", "A-0004@B"),
]


@pytest.fixture(scope="module")
def small_fund(tmp_path_factory):
    """A small valid fund folder (300 people, 1 year, seed 3) and its files as read."""
    d = tmp_path_factory.mktemp("small_fund")
    write_fund(synth_city(300, 1, seed=3), d)
    frames = {f: read_raw(d, t) for f, t in TABLES.items()}
    return d, frames


def _planted(small_fund, tmp: Path, file: str, column: str, value, mode: str) -> Path:
    src, frames = small_fund
    dst = tmp / "fund"
    shutil.copytree(src, dst)
    df = frames[file].copy()
    row = 3
    if mode == "replace":
        if isinstance(df[column].dtype, pd.CategoricalDtype) or isinstance(value, str):
            df[column] = df[column].astype(object)
        df.loc[row, column] = value
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        df[column] = np.arange(len(df), dtype="int64")     # small innocent numbers
        df.loc[row, column] = value
    elif isinstance(value, float):
        col = np.full(len(df), np.nan)
        col[row] = value
        df[column] = col
    else:
        col = np.full(len(df), None, dtype=object)
        col[row] = value
        df[column] = col
    write(str(dst / file), df, write_index=False)
    return dst


def _validate(directory: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", str(directory)])
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue() + err.getvalue()


def _refused(code: int, text: str, file: str, column: str) -> bool:
    return code == 2 and any(line.startswith(f"{file}: column {column}: privacy ")
                             for line in text.splitlines())


def test_corpus_is_varied():
    assert len(CORPUS) >= 60 and len(INNOCENT) >= 20
    assert len({p.label for p in CORPUS}) == len(CORPUS)
    assert {p.file for p in CORPUS} == set(TABLES)
    assert sum(p.mode == "replace" for p in CORPUS) >= 10


def test_privacy_corpus_refused_and_never_echoed(small_fund, tmp_path):
    missed, echoed = [], []
    for i, p in enumerate(CORPUS):
        d = _planted(small_fund, tmp_path / f"c{i}", p.file, p.column, p.value, p.mode)
        code, text = _validate(d)
        if not _refused(code, text, p.file, p.column):
            missed.append(f"{p.label} ({p.file}:{p.column}, exit {code})")
        echoed += [f"{p.label}: {s!r}" for s in p.secrets() if s and s in text]
        shutil.rmtree(d)
    refused = len(CORPUS) - len(missed)
    rate = refused / len(CORPUS)
    print(f"\nprivacy corpus: {refused} of {len(CORPUS)} plantings refused ({rate:.1%}), "
          f"{len(echoed)} echoed; missed: {missed or 'none'}")
    assert not echoed, echoed
    assert rate >= 0.95, missed


def test_innocent_look_alikes_pass(small_fund, tmp_path):
    flagged = []
    for i, (label, file, column, value) in enumerate(INNOCENT):
        d = _planted(small_fund, tmp_path / f"i{i}", file, column, value, "extra")
        code, text = _validate(d)
        if code != 0:
            flagged.append(f"{label} ({file}:{column}): {text.strip()[:300]}")
        shutil.rmtree(d)
    print(f"\ninnocent look-alikes: {len(INNOCENT) - len(flagged)} of {len(INNOCENT)} passed")
    assert not flagged, flagged


def test_clean_copy_passes(small_fund, tmp_path):
    """The folder the corpus plants into is valid as written (so an exit 2 is the
    planting's doing)."""
    code, text = _validate(small_fund[0])
    assert code == 0, text
