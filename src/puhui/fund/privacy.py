"""The privacy guard: refuse fund data that is not anonymised.

Anonymised data here means: no names, resident ID numbers (居民身份证号), phone numbers
or addresses, in any column. No seed document defines an anonymisation standard, so this
is the project's own (docs/privacy.md states the rules and their limits). The guard
reports the file, the column, what was found and how many distinct values, and never
echoes a value.

Checks
------
- column names that say name / ID number / phone / address, in English, Chinese and
  pinyin abbreviations (``xm``, ``hzxm``, ``lxr``, ``sfzh``, ``zjhm``, ``shouji``, ``dz``...);
- values, after normalisation (NFKC: full-width digits become ASCII; bytes decoded),
  holding a digit run, possibly split by spaces, hyphens, dots, slashes or brackets and
  possibly followed by letters, that is

  * an 18-character resident ID number (valid region and birth date; with or without a
    valid check digit, GB 11643-1999 / ISO 7064 MOD 11-2),
  * a 15-digit resident ID number of the old form (region, yymmdd birth date, 3 digits),
  * a mainland mobile number (11 digits, 1[3-9]..., optionally +86 / 0086),
  * a landline number with a separated area code (``021-64381234``, ``(0571) 8765 4321``);

- integer and float columns read as digit strings (a phone column with blanks is
  float64: 13812345678.0), and an 18-digit ID number stored as a float (digits lost);
- e-mail addresses;
- street addresses in Chinese (with or without 省/市/区/县: 路/街/弄 + 号, 小区/村 +
  栋/号/室, 5栋302室...) and in English (``100 Caoxi North Road``, ``Room 302``);
- Chinese names next to a name marker (``姓名：张三``, ``患者: 王小明``, ``李先生``) and
  English names after ``name:`` / ``patient:`` / ``Mr.``.

:func:`check_value` and :func:`identifying_fields` apply the same checks to single values
and to a JSON record (``claims direct``).
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
#: first two digits of a resident ID: provinces (GB/T 2260), 81-83 Hong Kong, Macao and
#: Taiwan residents' permits, 9x foreigners' permanent residence ID cards (2023 form)
_REGIONS = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83 91 92 93 94 95 96 97 98 99".split())


def id_check_digit(first17: str) -> str:
    """Check character of a resident ID number (GB 11643-1999, ISO 7064 MOD 11-2).

    ``check = "10X98765432"[sum(d_i * w_i) mod 11]`` with weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2.

    >>> id_check_digit("11010519491231002")
    'X'
    """
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def _valid_date(y: int, m: int, d: int) -> bool:
    try:
        day = _dt.date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y and day <= _dt.date.today()


def _id18_shape(digits17: str) -> bool:
    """Region and birth date of an 18-character ID number are valid."""
    return (digits17[:2] in _REGIONS and digits17[:6] != digits17[:2] + "0000"
            and _valid_date(int(digits17[6:10]), int(digits17[10:12]), int(digits17[12:14])))


def is_resident_id(text: str) -> bool:
    """True for an 18-character resident ID with a valid region, birth date and check digit."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    return _id18_shape(text[:17]) and id_check_digit(text[:17]) == text[17].upper()


def is_old_resident_id(text: str) -> bool:
    """True for a 15-digit resident ID of the old form (before 1999): region, yymmdd birth
    date (19yy), 3 digits.

    >>> is_old_resident_id("110105491231002"), is_old_resident_id("110105491331002")
    (True, False)
    """
    return (len(text) == 15 and text.isdigit() and text[:2] in _REGIONS
            and _valid_date(1900 + int(text[6:8]), int(text[8:10]), int(text[10:12])))


#: mainland mobile prefixes (the three digits that start a number)
_MOBILE = re.compile(r"1(?:3\d|4[5-9]|5[0-35-9]|6[2567]|7[0-8]|8\d|9[0-35-9])\d{8}")
_AREA_CODE = re.compile(r"0(?:10|2\d|[3-9]\d\d)")

#: what a finding says was found (the rule); the message adds "(N values)"
ID18 = "resident ID numbers (18 characters, valid check digit)"
ID18_BAD_CHECK = "resident ID numbers (18 characters, valid region and birth date)"
ID18_FLOAT = "resident ID numbers stored as numbers (digits lost)"
ID15 = "old 15-digit resident ID numbers"
MOBILE = "mobile phone numbers"
LANDLINE = "landline phone numbers"
ADDRESS = "street addresses"
NAME = "personal names (next to a name marker)"
EMAIL = "e-mail addresses"
_RULE_ORDER = (ID18, ID18_BAD_CHECK, ID18_FLOAT, ID15, MOBILE, LANDLINE, ADDRESS, NAME, EMAIL)


@dataclass(frozen=True)
class PrivacyFinding:
    column: str
    what: str
    count: int
    #: the distinct values found (never shown), so that findings in chunks of one
    #: column can be merged into a count of distinct values
    values: frozenset = field(default=frozenset(), compare=False, repr=False)


# ---------------------------------------------------------------------------------------
# column names

_NAME_WORDS = {"name", "names", "xm", "xingming", "mingzi", "fullname", "firstname",
               "lastname", "surname", "givenname", "familyname", "patient", "patientname",
               "hzxm", "brxm", "lxr", "lianxiren", "contact", "contactperson", "contactname",
               "emergencycontact", "psnname", "insuredname", "holdername", "insured",
               "policyholdername", "applicantname", "beneficiaryname", "realname",
               "nickname", "username",
               # 姓名 (xm) of the patient, insured, applicant, contact, person...
               "hzxm", "brxm", "tbrxm", "bbrxm", "bbxrxm", "cbrxm", "khxm", "sqrxm", "syrxm",
               "jhrxm", "lxrxm", "psnxm", "ryxm", "xmpy",
               # 名称 (mc) of the insured or applicant; the people a policy names
               "bbxrmc", "bbrmc", "tbrmc", "cbrmc", "policyholder", "customer",
               "customername", "beneficiary", "applicant"}
#: words that make ``..._name`` the name of a thing, not of a person
_THING_WORDS = {"dise", "disease", "diag", "diagnosis", "drug", "med", "medicine", "hilist",
                "list", "item", "product", "prod", "hosp", "hospital", "fixmedins", "medins",
                "org", "dept", "department", "bank", "insurer", "company", "corp", "city",
                "region", "admdvs", "area", "benefit", "plan", "file", "table", "column",
                "field", "brand", "generic", "chemical", "manufacturer", "spec", "icd",
                "oprn", "surgery", "operation", "ward", "insutype", "type", "class",
                "level", "code", "scheme", "tier", "category", "cat", "material", "service",
                "project", "batch", "policy", "channel", "agent", "agency", "branch"}
_ID_WORDS = {"sfz", "sfzh", "sfzhm", "sfzhao", "zjhm", "zjh", "idcard", "idcardno",
             "idno", "idnumber", "certno", "certnum", "shenfenzheng", "shenfenzhenghao",
             "nationalid", "passport", "passportno", "ssn", "cardid"}
_PHONE_WORDS = {"phone", "phones", "mobile", "tel", "telephone", "cellphone", "fax",
                "shouji", "shoujihao", "sjh", "sjhm", "dianhua", "lxdh", "lxfs", "phoneno",
                "cellno",
                "mobileno", "telno", "lianxidianhua", "lianxifangshi"}
_ADDRESS_WORDS = {"addr", "address", "addresses", "dz", "dizhi", "zz", "zhuzhi", "jtdz",
                  "jtzz", "hjdz", "xzz", "lxdz", "xzdz", "jzdz", "zzdz", "txdz",
                  "street", "residence", "domicile", "homeaddr", "huji"}
#: (what, exact words, parts that say it anywhere in the joined name, Chinese parts)
_COLUMN_RULES = (
    ("an ID number", _ID_WORDS, ("sfz", "zjhm", "idcard", "certno", "shenfenzheng",
                                 "identitycard", "identityno", "identitynum"),
     ("身份证", "证件号", "护照")),
    ("a phone number", _PHONE_WORDS, ("phone", "mobile", "shouji", "dianhua", "sjhm", "lxdh"),
     ("手机", "电话", "联系方式")),
    ("an address", _ADDRESS_WORDS, ("address", "addr", "dizhi", "zhuzhi"),
     ("地址", "住址", "户籍", "居住地")),
    ("an e-mail address", {"email", "mail", "youxiang", "dzyx"}, ("email",), ("邮箱", "邮件")),
)
_TOKEN_SPLIT = re.compile(r"[^0-9a-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def column_rule(col) -> str | None:
    """What a column's name says it holds (``"a person's name"``...), or None.

    >>> column_rule("hzxm"), column_rule("dise_name"), column_rule("PatientName")
    ("a person's name", None, "a person's name")
    """
    raw = unicodedata.normalize("NFKC", str(col)).strip()
    low = raw.lower()
    tokens = [t for t in _TOKEN_SPLIT.split(_CAMEL.sub("_", raw).lower()) if t]
    joined = "".join(tokens)
    words = set(tokens) | {joined}
    for what, exact, parts, chinese in _COLUMN_RULES:
        if words & exact or any(p in joined for p in parts) or any(c in low for c in chinese):
            return what
    if joined in ("sj", "sjh", "sjhm"):
        return "a phone number"
    if ("姓名" in low or "名字" in low or "联系人" in low or "被保险人" in low or "投保人" in low
            or "受益人" in low or low in ("患者", "病人")
            or low.endswith(("患者", "病人"))):
        return "a person's name"
    if words & _NAME_WORDS - {"name", "names", "patient", "insured", "contact"}:
        return "a person's name"
    if joined.endswith("lxr") or "lianxiren" in joined or "xingming" in joined:
        return "a person's name"
    if tokens in (["patient"], ["insured"]) or "contact" in tokens:
        return "a person's name"
    if {"name", "names"} & set(tokens) and not set(tokens) & _THING_WORDS:
        return "a person's name"
    return None


def shown_name(col) -> str:
    """A column or field name as it may be shown: itself, unless its text looks like
    personal data or holds a digit run (then masked; the name is never echoed).

    >>> shown_name("psn_no"), shown_name("手机13812345678")
    ('psn_no', 'a column whose name is not shown')
    """
    text = str(col)
    if check_value(text) is not None or re.search(r"[0-9]{6}", text) or \
            _CJK.search(text) and column_rule(text) is not None:
        return "a column whose name is not shown"
    return text


def scan_column_names(columns) -> list[PrivacyFinding]:
    """Columns whose name says they hold personal data, or whose name itself is
    personal data (an ID number or a phone number as a header)."""
    found = []
    for col in columns:
        what = column_rule(col)
        if what is not None:
            # ("no a person's name" read badly: the rule is "no person's name")
            what = what.removeprefix("an ").removeprefix("a ")
            found.append(PrivacyFinding(shown_name(col), f"{what} (by its column name)", 0))
        elif (rule := check_value(str(col))) is not None:
            found.append(PrivacyFinding(shown_name(col), f"{rule} (in its column name)", 0))
    return found


#: columns that hold pseudonymous ids: text other than ASCII there is a name or a word,
#: never a pseudonym
ID_COLUMNS = ("psn_no", "setl_id", "policy_no", "refund_of")
#: A character no pseudonymous token holds: whitespace or an ASCII control character
#: (:data:`_NOT_TOKEN_EXCEPT_NUL` for values joined by NUL, whose NULs are counted apart).
_NOT_TOKEN_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")
_NOT_TOKEN_EXCEPT_NUL = re.compile(r"[\s\x01-\x1f\x7f]")
#: What :func:`scan_texts` needs in a text before it looks for an e-mail, and for an
#: English name or address (ids and codes have neither); :func:`text_is_clean` clears
#: a column by the same marks.
_EMAIL_MARK = "@"
_WORD_MARKS = (" ", ":", "=")


def is_token(text: str) -> bool:
    r"""Whether ``text`` can be a pseudonymous token: ASCII, with no whitespace and no
    control character (a NUL ends a string for some readers, so "P1\x00" would pass for
    "P1").

    >>> is_token("P-0001_a"), is_token("P1\x00"), is_token("张三"), is_token("P 1")
    (True, False, False, False)
    """
    return text.isascii() and _NOT_TOKEN_CHAR.search(text) is None
NOT_A_TOKEN = "ids that are not pseudonymous tokens (text other than ASCII letters and digits, such as a name)"


# ---------------------------------------------------------------------------------------
# values

#: a digit run, possibly split by one or two separators, possibly ending in X (an ID's
#: check character); the groups are joined and tested on group boundaries only, so a
#: long numeric token holds no ID or phone number by accident
_SEP = r"[ \t\-./(),_\u2010-\u2015]"
_REGION = r"(?:1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5]|71|8[1-3]|9[1-9])"
_MMDD = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
#: a digit run in one piece is a candidate only when shaped like an ID (region, date) or
#: a mobile number, decided in C: a column of numeric tokens costs no Python per value
_CANDIDATE = re.compile(
    rf"(?<![0-9])(?:[0-9]++(?:{_SEP}{{1,3}}[0-9]++)+(?:{_SEP}?[Xx])?"
    rf"|(?:{_REGION}[0-9]{{4}}(?:19|20)[0-9]{{2}}{_MMDD}[0-9]{{3}}(?:[0-9]|{_SEP}?[Xx])"
    rf"|{_REGION}[0-9]{{6}}{_MMDD}[0-9]{{3}}"
    rf"|(?:0086|86)?1[3-9][0-9]{{9}})(?![0-9]))")
_GROUP = re.compile(r"[0-9]+|[Xx]")
#: a mobile number in scientific notation (a spreadsheet's 1.3812345678E+10)
_SCI_MOBILE = re.compile(r"1\.[3-9][0-9]{9}[eE]\+?10(?![0-9])")   # literal start: fast
#: a phone word right before digits ("tel13812345678"): the digits are still a phone number
_PHONE_PREFIX = re.compile(r"(?:tel|phone|mobile|cell|call|sj|dh)\W*$", re.IGNORECASE)

_CJK = re.compile(r"[\u4e00-\u9fff]")
_C = r"[\u4e00-\u9fff]"
_N = r"[0-9]"
_ADDRESS_ZH = re.compile("|".join((
    # 省/市/区/县 ... 路/街/弄/号/村/室/巷
    rf"{_C}{{1,8}}(?:省|市|区|县)[\u4e00-\u9fff0-9]{{1,20}}(?:路|街|弄|号|村|室|巷)",
    # 漕溪北路100号, 南京东路88弄, 幸福里3号, 人民路一百二十号
    rf"{_C}{{1,12}}(?:路|街|大道|弄|巷|胡同|里)\s*(?:{_N}{{1,5}}|[一二三四五六七八九十百零〇]{{1,6}})"
    r"\s*(?:号|弄|巷)",
    # 幸福小区5栋, 张家村3组15号, 阳光花园2号楼
    rf"{_C}{{1,12}}(?:小区|花园|公寓|新村|家园|苑|村|镇|乡|屯|大厦|社区)\s*{_N}{{1,4}}\s*"
    r"(?:号楼|号|栋|幢|座|单元|室|组|弄|排)",
    # 5栋302室, 3号楼2单元501室
    rf"{_N}{{1,4}}\s*(?:号楼|栋|幢|座)\s*(?:{_N}{{1,2}}\s*单元\s*)?{_N}{{2,5}}\s*(?:室|房|号)",
    # 100号302室, 88弄12号
    rf"{_N}{{1,4}}\s*(?:号|弄)\s*{_N}{{1,5}}\s*(?:室|房|号)",
)))
_STREET = (r"(?:road|rd|street|str|st|lane|ln|avenue|ave|boulevard|blvd|drive|highway|hwy|"
           r"alley|lu|jie|dajie|hutong|nong|xiang)")
_ADDRESS_EN = re.compile("|".join((
    # 100 Caoxi North Road, 5A Nanjing Rd.
    rf"\b[0-9]{{1,5}}[a-z]?,?\s+(?:[a-z]+\.?\s+){{1,4}}{_STREET}\b",
    # Caoxi Road 100, Caoxi Rd. No. 100
    rf"\b[a-z]+\.?\s+{_STREET}\b\.?\s*,?\s*(?:no\.?\s*|#\s*)?[0-9]{{1,5}}\b",
    # Room 302, Flat 5B, Apt. 12
    r"\b(?:room|rm|flat|apt|apartment|suite)\.?\s*#?[0-9]{1,5}[a-z]?\b",
)), re.IGNORECASE)

# the most common Chinese surnames (about 90% of people) and compound surnames
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞"
    "左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕"
    "屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧"
    "闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝")
_COMPOUND = "欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|长孙|令狐|宇文|司徒|夏侯|端木|轩辕"
_SURNAME = rf"(?:{_COMPOUND}|[{_SURNAMES}])"
_NOT_A_NAME = r"(?!不详|未知|匿名|保密|本人|无|空|某)"
#: clinical and billing words after 患者/病人 that start with a surname's character
_CLINICAL = ("高血压|高血糖|高血脂|高热|高烧|高龄|黄疸|白内障|白血病|石|费用|付费|自付|"
             "方便|和|于|向|从|为|以|因|由|应|常|明显|时|曾|经|史|安|全|能|可|要|都")
_NAME_ZH = re.compile("|".join((
    # strong markers: 姓名：张三, 联系人 李四, 姓名王五
    rf"(?:姓名|名字|联系人|户名)(?:[:：=]\s*|\s+){_NOT_A_NAME}{_C}{{2,4}}",
    rf"(?:姓名|名字|联系人|户名){_SURNAME}{_C}{{1,2}}",
    # weak markers need a separator and a surname: 患者：王小明
    rf"(?:患者|病人|参保人|投保人|被保险人|被保人|家属|申请人|受益人|监护人)(?:[:：=]\s*|\s+)"
    rf"{_SURNAME}{_C}{{1,2}}(?!{_C})",
    # 患者张三，... (no separator: the name must end at punctuation, a space or the end,
    # and not be a clinical word that starts with a surname's character)
    rf"(?:患者|病人|参保人|投保人|被保险人|被保人|联系人)(?!{_CLINICAL}){_SURNAME}{_C}{{1,2}}"
    r"(?=[，,。；;、:：（(\s]|$|\x00)",
    # 张三，男，65岁
    rf"{_SURNAME}{_C}{{1,2}}[，,、\s]*[男女][，,、\s]*[0-9]{{1,3}}\s*岁",
    # 张先生, 王女士, 李小姐
    rf"{_SURNAME}{_C}{{0,2}}(?:先生|女士|小姐)",
)))
_NAME_EN = re.compile(
    r"(?i:\b(?:name|patient|contact|insured|policyholder|holder)\s*[:：=]\s*)"
    r"[A-Z][A-Za-z'\-]+(?:\s+[A-Z][A-Za-z'\-]+){0,2}"
    r"|\b(?:Mr|Mrs|Ms|Miss|Madam)\.?\s+[A-Z][A-Za-z'\-]+")

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")

#: bytes.translate table: digits and separators -> "0", everything else -> "."
_RUN_TABLE = bytes(48 if (48 <= i <= 57 or chr(i) in " \t-./(),_") else 46 for i in range(256))


def _has_digit_run(text: str, length: int) -> bool:
    """True when an ASCII ``text`` has ``length`` digits or separators in a row (two
    passes in C over its bytes: several times faster than a regular expression over
    millions of ids). A digit run split by separators that makes an ID or phone number
    is at least 11 characters long.

    >>> _has_digit_run("S000000001 13912345678", 11), _has_digit_run("S000000001", 11)
    (True, False)
    """
    return b"0" * length in text.encode("ascii").translate(_RUN_TABLE)


def _classify(digits: str, multi: bool, area: str, letter_before: bool) -> str | None:
    """The rule a joined digit window breaks. ``multi``: it was written in several groups;
    ``area``: its first group (a landline's area code when separated); ``letter_before``:
    a letter touches its first digit (a code such as H13010500123, not a phone number)."""
    n = len(digits)
    if n == 18:
        if digits[17] in "Xx":
            return ID18 if is_resident_id(digits.upper()) else (
                ID18_BAD_CHECK if digits[:17].isdigit() and _id18_shape(digits[:17]) else None)
        if is_resident_id(digits):
            return ID18
        return ID18_BAD_CHECK if _id18_shape(digits[:17]) else None
    if not digits.isdigit():
        return None
    if n == 15 and is_old_resident_id(digits):
        return ID15
    if not letter_before:
        if n == 11 and _MOBILE.fullmatch(digits):
            return MOBILE
        if (n == 13 and digits.startswith("86") and _MOBILE.fullmatch(digits[2:])) or \
                (n == 15 and digits.startswith("0086") and _MOBILE.fullmatch(digits[4:])):
            return MOBILE
    if multi and _AREA_CODE.fullmatch(area) and 7 <= n - len(area) <= 8 \
            and digits[len(area)] in "23456789":
        return LANDLINE
    return None


def _digit_rules(cand: str, letter_before: bool) -> str | None:
    """The first rule a candidate digit run breaks, trying every window of up to six
    consecutive groups (so 'tel 021-6438-1234 ext 12' or '110105 19491231 002X' are seen)."""
    groups = _GROUP.findall(cand)
    for i in range(len(groups)):
        if groups[i] in "Xx":
            continue
        acc = ""
        for j in range(i, min(i + 6, len(groups))):
            g = groups[j]
            if g in "Xx" and len(acc) != 17:
                break
            if j > i and len(g) < 2 and g not in "Xx":
                break   # single digits between separators: a list of numbers, not a number
            acc += g
            if len(acc) >= 10:
                rule = _classify(acc, j > i, groups[i], letter_before and i == 0)
                if rule:
                    return rule
            if len(acc) > 18:
                break
    return None


class _Joined:
    """Values joined into one text, so each pattern runs once over it (in C)."""

    def __init__(self, vals: list[str]):
        self.vals = vals
        self.text = "\x00".join(vals)
        self._ends = None

    def values_hit(self, pattern: re.Pattern, check=None) -> set[str]:
        """The distinct values in which ``pattern`` matches (and ``check`` holds)."""
        found = set()
        for m in pattern.finditer(self.text):
            if check is None or check(m):
                found.add(self.vals[self._index(m.start())])
        return found

    def _index(self, pos: int) -> int:
        if self._ends is None:   # built only when something matched
            lengths = np.fromiter((len(v) + 1 for v in self.vals), dtype="int64",
                                  count=len(self.vals))
            self._ends = np.cumsum(lengths)
        return int(np.searchsorted(self._ends, pos, side="right"))


def _normalise(v: str) -> str:
    """NFKC (full-width digits and letters become ASCII, the ideographic space a space)."""
    return v if v.isascii() else unicodedata.normalize("NFKC", v)


def _decode(v) -> str:
    """A value as text: bytes decoded as UTF-8, else GB18030 (legacy Chinese exports),
    never dropped."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b.decode("gb18030", errors="replace")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def scan_texts(vals: list[str]) -> dict[str, set[str]]:
    """The distinct values of ``vals`` that break each rule (``{rule: {values}}``); the
    values are returned as given (before normalisation), for counting, never shown."""
    raw = vals if isinstance(vals, list) else list(vals)
    if not raw:
        return {}
    j = _Joined(raw)
    ascii_only = j.text.isascii()
    if not ascii_only:
        j = _Joined([_normalise(v) for v in raw])
    text = j.text
    found: dict[str, set[str]] = {}

    def add(rule: str, idx: int) -> None:
        found.setdefault(rule, set()).add(raw[idx])

    # digit runs (IDs, phones): an ASCII text without 11 digits-or-separators in a row
    # has none; settlement ids and codes are dismissed here by two passes in C
    if not ascii_only or _has_digit_run(text, 11):
        for m in _CANDIDATE.finditer(text):
            cand = m.group()
            if len(cand) < 11:
                continue
            s = m.start()
            letter = s > 0 and text[s - 1].isascii() and text[s - 1].isalpha() \
                and not _PHONE_PREFIX.search(text[max(0, s - 8):s])
            rule = _digit_rules(cand, letter)
            if rule:
                add(rule, j._index(s))
        for m in _SCI_MOBILE.finditer(text):   # "1.3812345678" is a run of 12
            if m.start() == 0 or text[m.start() - 1] not in "0123456789.":
                add(MOBILE, j._index(m.start()))
    has_cjk = not text.isascii() and _CJK.search(text) is not None
    if has_cjk:
        for rule, pat in ((ADDRESS, _ADDRESS_ZH), (NAME, _NAME_ZH)):
            for m in pat.finditer(text):
                add(rule, j._index(m.start()))
    if _EMAIL_MARK in text:
        for m in _EMAIL.finditer(text):
            add(EMAIL, j._index(m.start()))
    # English addresses and names need a space, ':' or '=' (ids and codes have none)
    if any(m in text for m in _WORD_MARKS):
        for rule, pat in ((ADDRESS, _ADDRESS_EN), (NAME, _NAME_EN)):
            for m in pat.finditer(text):
                add(rule, j._index(m.start()))
    return found


def _text_values(s: pd.Series, nulls: np.ndarray | None = None) -> list[str]:
    """The column's values as text: a categorical's categories, else every non-null value
    (no de-duplication: a hash of millions of ids costs more than scanning them).
    ``nulls``: the column's null mask, when the caller has it."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        vals = s.cat.categories
    elif nulls is not None:
        vals = pd.Index(s.to_numpy()[~nulls])
    else:
        vals = s.dropna()
    if pd.api.types.infer_dtype(vals, skipna=True) == "string":
        return list(vals.to_numpy(dtype=object))
    return [_decode(v) for v in vals]


def _number_texts(s: pd.Series) -> list[str]:
    """The whole numbers of 10 digits or more of a numeric column, as digit strings
    (amounts, counts and years are smaller; a phone or ID number stored as a number is
    not). Floats count when they are whole: a phone column with blanks reads as float64."""
    a = s.to_numpy(dtype=getattr(s.dtype, "numpy_dtype", None))
    if a.dtype.kind == "f":
        a = np.abs(a)
        a = a[a >= 1e10]                      # NaN compares false
        a = a[np.isfinite(a) & (a == np.floor(a))]
        return [str(int(x)) for x in np.unique(a)]
    a = a[(a >= 10**10) | (a <= -10**10)] if a.dtype.kind == "i" else a[a >= 10**10]
    return [str(abs(int(x))) for x in np.unique(a)]


#: Bytes any rule of :func:`scan_texts` needs in ASCII text besides digit runs (its
#: own marks, as bytes).
_RULE_BYTES = tuple(m.encode() for m in (_EMAIL_MARK, *_WORD_MARKS))
#: In ASCII, whitespace other than the space (a rule byte) is a control character, and
#: none belongs in an id. For an id column, :data:`_RUN_TABLE` with every control
#: character made "\x01" (the tab, a separator there, too): one translation finds both
#: digit runs and control characters (where there is none the two tables translate
#: alike), without a regular expression over the bytes (28 ms a million ids, session 17).
_ID_RUN_TABLE = bytes(1 if (i < 32 or i == 127) else _RUN_TABLE[i] for i in range(256))


def text_is_clean(name: str, arr) -> bool:
    """True when no value of an Arrow text column can break a rule of :func:`scan_values`
    (so the column need not be scanned value by value), judged from the bytes of all its
    values at once: ASCII (no CJK name or address, no full-width digits), no run of 11
    digits or separators (no ID or phone number), no '@', space, ':' or '=' (no e-mail,
    English name or address), and for an id column no control character. The bytes are
    the values one after another: every value's text is inside them, so a column they
    clear holds no value that breaks a rule; one they do not clear (a run across two ids,
    say) is scanned as before. False for anything but text.

    >>> import pyarrow as pa
    >>> text_is_clean("setl_id", pa.array(["S000000001", None, "S000000002"]))
    True
    >>> text_is_clean("note", pa.array(["call 13812345678"])), text_is_clean("note", pa.array(["a@b.cn"]))
    (False, False)
    """
    import pyarrow as pa

    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    for c in chunks:
        if not pa.types.is_string(c.type):
            return False
        if not len(c) or c.null_count == len(c):
            continue
        offsets = np.frombuffer(c.buffers()[1], dtype="int32")[c.offset:c.offset + len(c) + 1]
        data = c.buffers()[2]
        if data is None:
            continue
        b = memoryview(data)[int(offsets[0]):int(offsets[-1])].tobytes()
        if not b.isascii() or any(x in b for x in _RULE_BYTES):
            return False
        if name in ID_COLUMNS:
            runs = b.translate(_ID_RUN_TABLE)
            if b"\x01" in runs:                                   # a control character
                return False
        else:
            runs = b.translate(_RUN_TABLE)
        if b"0" * 11 in runs:
            return False
    return True


def scan_values(name: str, s: pd.Series, nulls: np.ndarray | None = None
                ) -> list[PrivacyFinding]:
    """Scan one column. Numeric columns are scanned as digits. Counts distinct values.

    The values are joined (NUL-separated, which no pattern matches) and each pattern
    runs once over the whole text; a match is mapped back to its value by position.
    """
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_datetime64_any_dtype(s) \
            or pd.api.types.is_timedelta64_dtype(s):
        return []
    floats = False
    if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
        floats = pd.api.types.is_float_dtype(s)
        vals = _number_texts(s.dropna() if nulls is None else s[~nulls])
    else:
        vals = _text_values(s, nulls)
    if not len(vals):
        return []
    found = scan_texts(vals)
    if floats:   # an 18-digit ID number as a float keeps its region and birth date only
        lost = {v for v in vals if len(v) == 18 and _id18_shape(v[:17])} \
            - found.get(ID18, set()) - found.get(ID18_BAD_CHECK, set())
        if lost:
            found[ID18_FLOAT] = lost
    out = [PrivacyFinding(shown_name(name), rule, len(found[rule]), frozenset(found[rule]))
           for rule in _RULE_ORDER if found.get(rule)]
    if name in ID_COLUMNS:
        # non-ASCII, whitespace or a control character (a NUL ends a string for some
        # readers, so "P1\x00" would pass for "P1"): two passes in C, Python only when
        # one hits
        joined = "\x00".join(vals)
        odd = {v for v in vals if not is_token(v)} \
            if not joined.isascii() or _NOT_TOKEN_EXCEPT_NUL.search(joined) or \
            joined.count("\x00") != len(vals) - 1 else set()
        if odd:
            out.append(PrivacyFinding(name, NOT_A_TOKEN, len(odd), frozenset(odd)))
    return out


def scan_frame(df: pd.DataFrame) -> list[PrivacyFinding]:
    found = scan_column_names(df.columns)
    for col in df.columns:
        found += scan_values(str(col), df[col])
    return found


# ---------------------------------------------------------------------------------------
# single values and records (claims direct)

def _as_scan_text(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return str(abs(int(value)))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return str(int(abs(v))) if np.isfinite(v) and v.is_integer() else None
    return _decode(value)


def check_value(value, field: str | None = None) -> str | None:
    """The rule a single value breaks (for example ``"mobile phone numbers"``), or None.

    ``field``: the value's field name, checked too (``"phone"`` is refused whatever it
    holds). Numbers are read as digits; bytes are decoded. The value is never put in the
    answer, so the caller can report the field and the rule without echoing it.

    >>> check_value("P00000001", "psn_no") is None, check_value("138 1234 5678", "psn_no")
    (True, 'mobile phone numbers')
    """
    if field is not None:
        what = column_rule(field)
        if what is not None:
            return f"{what} (by its field name)"
    text = _as_scan_text(value)
    if text is None or not text:
        return None
    found = scan_texts([text])
    if isinstance(value, (float, np.floating)) and not found and len(text) == 18 \
            and _id18_shape(text[:17]):
        return ID18_FLOAT
    return next((rule for rule in _RULE_ORDER if found.get(rule)), None)


#: ``check_token(psn_no, "psn_no")``: the same check, named for pseudonymous tokens
check_token = check_value


#: Field names :func:`identifying_fields` found clean (neither personal data themselves
#: nor saying they hold it): the verdict on a name never changes, and the service checks
#: the same fourteen names on every request (about 0.13 ms of CPU a request). Only clean
#: names are kept, so no personal data stays in memory; bounded, as a client chooses them.
_CLEAN_NAMES: set[str] = set()
_MAX_CLEAN_NAMES = 4096


def identifying_fields(record, prefix: str = "") -> list[tuple[str, str]]:
    """``(field, rule)`` for each field of a record (a JSON settlement: dicts and lists,
    nested) whose name or value looks identifying; nested fields are named like
    ``lines[0].hilist_code``. Empty when the record is clean. Values are never returned.

    >>> identifying_fields({"psn_no": "P1", "lines": [{"note": "姓名：张三"}]})
    [('lines[0].note', 'personal names (next to a name marker)')]
    """
    out: list[tuple[str, str]] = []
    if isinstance(record, dict):
        items = ((f"{prefix}.{k}" if prefix else str(k), k, v) for k, v in record.items())
    elif isinstance(record, (list, tuple)):
        items = ((f"{prefix}[{i}]", None, v) for i, v in enumerate(record))
    else:
        rule = check_value(record)
        return [(prefix, rule)] if rule else []
    for path, key, v in items:
        if key is not None and not (type(key) is str and key in _CLEAN_NAMES):
            if shown_name(key) != str(key):
                path = f"{prefix}.(a field whose name is not shown)" if prefix else \
                    "(a field whose name is not shown)"
                out.append((path, "personal data in a field name"))
                continue
            if column_rule(key) is not None:
                out.append((path, f"{column_rule(key)} (by its field name)"))
                continue
            if type(key) is str and len(_CLEAN_NAMES) < _MAX_CLEAN_NAMES:
                _CLEAN_NAMES.add(key)
        if isinstance(v, (dict, list, tuple)):
            out += identifying_fields(v, path)
        else:
            rule = check_value(v)
            if rule:
                out.append((path, rule))
    return out


def refuse_identifying(df: pd.DataFrame, source: str) -> None:
    """Raise :class:`~puhui.errors.InputError` when a table a command reads (a claims
    file, a list of settlements) holds personal data: one line per column and rule, with
    the count of distinct values and never a value. ``source``: the file, for the message.
    """
    found = scan_frame(df)
    if found:
        from puhui.errors import InputError

        lines = [f"{source}: column {f.column}: privacy 'anonymised data: no {f.what}' broken"
                 f" by {f.count or 'the column'}{' values' if f.count else ''}. Fix: remove "
                 f"the column or replace it with pseudonymous codes; values are not shown"
                 for f in found]
        raise InputError("\n".join(lines))
