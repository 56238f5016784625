"""The privacy guard: refuse fund data that is not anonymised.

Anonymised data here means: no names, resident ID numbers (居民身份证号), phone numbers
or addresses, in any column. No seed document defines an anonymisation standard, so this
is the project's own (docs/privacy.md). The guard reports the file, the column, what
was found and how many values, and never echoes a value.

Checks
------
- column names that say name / ID number / phone / address (English and Chinese);
- values holding an 18-character resident ID number whose check digit (GB 11643-1999,
  ISO 7064 MOD 11-2) and birth date are valid;
- values holding a mainland mobile number (11 digits, 1[3-9]...), alone or inside text;
- values that look like a Chinese street address (…省/市/区/县 … 路/街/弄/号/村).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

_NAME_COLUMNS = {"name", "xm", "姓名", "psn_name", "patient_name", "full_name",
                 "insured_name", "holder_name", "insured", "policyholder_name"}
_COLUMN_HINTS = (
    ("an ID number", re.compile(r"cert_?no|id_?card|idno|sfzh|身份证|证件号")),
    ("a phone number", re.compile(r"phone|mobile|(^|_)tel($|_)|手机|电话")),
    ("an address", re.compile(r"addr|address|地址|住址")),
)
# A run of 11+ digits (optionally ending X) is the cheap first test for IDs and phones.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{11}(?:[0-9]{6}[0-9Xx])?(?![0-9A-Za-z])")
_ID = re.compile(r"(?<![0-9])([0-9]{17}[0-9Xx])(?![0-9])")
_PHONE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?![0-9])")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_ADDRESS = re.compile(r"[\u4e00-\u9fff]{1,8}(?:省|市|区|县)[\u4e00-\u9fff0-9]{1,20}"
                      r"(?:路|街|弄|号|村|室|巷)")


def id_check_digit(first17: str) -> str:
    """Check character of a resident ID number (GB 11643-1999, ISO 7064 MOD 11-2).

    ``check = "10X98765432"[sum(d_i * w_i) mod 11]`` with weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2.

    >>> id_check_digit("11010519491231002")
    'X'
    """
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def is_resident_id(text: str) -> bool:
    """True for an 18-character resident ID with a valid check digit and birth date."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    y, m, d = int(text[6:10]), int(text[10:12]), int(text[12:14])
    if not (1900 <= y <= 2100 and 1 <= m <= 12 and 1 <= d <= 31):
        return False
    return id_check_digit(text[:17]) == text[17].upper()


@dataclass(frozen=True)
class PrivacyFinding:
    column: str
    what: str
    count: int
    #: the distinct values found (never shown), so that findings in chunks of one
    #: column can be merged into a count of distinct values
    values: frozenset = field(default=frozenset(), compare=False, repr=False)


def _text_values(s: pd.Series, nulls: np.ndarray | None = None):
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
        return vals.to_numpy(dtype=object)
    return [v if isinstance(v, str) else str(v) for v in vals]


def scan_column_names(columns) -> list[PrivacyFinding]:
    found = []
    for col in columns:
        low = str(col).lower()
        if low in _NAME_COLUMNS:
            found.append(PrivacyFinding(str(col), "a person's name (by its column name)", 0))
            continue
        for what, pat in _COLUMN_HINTS:
            if pat.search(low):
                found.append(PrivacyFinding(str(col), f"{what} (by its column name)", 0))
                break
    return found


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


#: bytes.translate table: digits -> "0", everything else -> "."
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))


def _has_digit_run(text: str, length: int) -> bool:
    """True when an ASCII ``text`` has ``length`` digits in a row (two passes in C over
    its bytes: several times faster than a regular expression over millions of ids).

    >>> _has_digit_run("S000000001 13912345678", 11), _has_digit_run("S000000001", 11)
    (True, False)
    """
    return b"0" * length in text.encode("ascii").translate(_DIGITS_TO_ZERO)


def scan_values(name: str, s: pd.Series, nulls: np.ndarray | None = None
                ) -> list[PrivacyFinding]:
    """Scan one column. Integer columns are scanned as digits. Counts distinct values.

    The values are joined (NUL-separated, which no pattern matches) and each pattern
    runs once over the whole text; a match is mapped back to its value by position.
    """
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_float_dtype(s) \
            or pd.api.types.is_datetime64_any_dtype(s):
        return []
    if pd.api.types.is_integer_dtype(s):
        v = pd.unique(s.dropna())
        vals = [str(int(x)) for x in v if x >= 10**10]
    else:
        vals = _text_values(s, nulls)
    if not len(vals):
        return []
    # an ID number or a phone number needs a run of 11 digits or more and an address
    # Chinese characters: an ASCII text without such a run (settlement ids, codes) is
    # clean, found by two passes in C over the joined text
    j = _Joined(list(vals))
    ascii_only = j.text.isascii()
    if ascii_only and not _has_digit_run(j.text, 11):
        return []
    digits = _DIGIT_RUN.search(j.text) is not None
    ids: set[str] = set()
    phones: set[str] = set()
    if digits:
        ids = j.values_hit(_ID, lambda m: is_resident_id(m.group(1)))
        phones = j.values_hit(_PHONE) - ids
    has_cjk = not j.text.isascii() and _CJK.search(j.text)   # isascii is one C pass
    addrs = j.values_hit(_ADDRESS) if has_cjk else set()
    out = []
    if ids:
        out.append(PrivacyFinding(name, "resident ID numbers (18 characters, valid check "
                                         "digit)", len(ids), frozenset(ids)))
    if phones:
        out.append(PrivacyFinding(name, "mobile phone numbers", len(phones), frozenset(phones)))
    if addrs:
        out.append(PrivacyFinding(name, "street addresses", len(addrs), frozenset(addrs)))
    return out


def scan_frame(df: pd.DataFrame) -> list[PrivacyFinding]:
    found = scan_column_names(df.columns)
    for col in df.columns:
        found += scan_values(str(col), df[col])
    return found
