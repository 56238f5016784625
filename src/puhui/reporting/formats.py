"""The reports' formats: one place for how a number, an amount, a ratio, a code or a
model term is shown, in English or Chinese (issue 21).

Counts carry thousands separators ("305,469"), yuan two fixed decimals ("1,234.50"),
ratios such as a loss ratio a percentage with one decimal ("96.6 %"), A/E and
relativities three decimals; a missing value (None, NaN, infinity) is shown as "-",
never as Python's ``None`` or ``nan``. Codes of the fund data become readable labels
(gender 1/2 as male/female or 男/女, insutype 310/390 as employee/resident or 职工/居民
with the code) and a statsmodels term such as ``C(gender)[T.2]`` becomes "gender:
female".
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

MISSING = "-"

#: a factor's name, per language
FACTORS = {
    "age_band": ("age band", "年龄段"), "age_group": ("age group", "年龄组"),
    "gender": ("sex", "性别"), "insutype": ("scheme", "参保类型"),
    "retired": ("retired", "退休"), "preexisting": ("pre-existing condition", "既往症"),
    "preexisting_seen": ("pre-existing condition seen", "既往症（数据所见）"),
    "prior_stay": ("inpatient stay the year before", "上年住院"),
    "male": ("male", "男性"), "age": ("age", "年龄"),
    "employee": ("employee scheme (310)", "职工医保 (310)"), "old": ("aged 61 or more", "61 岁及以上"),
}

#: a code's label, per factor and language
CODES = {
    "gender": {"1": ("male", "男"), "2": ("female", "女")},
    "insutype": {"310": ("employee (310)", "职工 (310)"), "390": ("resident (390)", "居民 (390)")},
    "retired": {"0": ("in service", "在职"), "1": ("retired", "退休")},
    "preexisting": {"0": ("no", "无"), "1": ("yes", "有")},
    "preexisting_seen": {"0": ("no", "无"), "1": ("yes", "有")},
    "prior_stay": {"0": ("no", "无"), "1": ("yes", "有")},
    "employee": {"0": ("no", "否"), "1": ("yes", "是")},
    "old": {"0": ("no", "否"), "1": ("yes", "是")},
}

_TERM = re.compile(r"^C\((\w+)(?:,[^)]*\))?\)\[T\.(.+)\]$")


def missing(v) -> bool:
    """None, NaN, NaT or an infinity: a value the page shows as "-".

    >>> [missing(v) for v in (None, float("nan"), 0, "", "x")]
    [True, True, False, False, False]
    """
    if v is None or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return not math.isfinite(v)
    return False


def count(v) -> str:
    """A whole number with thousands separators.

    >>> count(305469), count(278000.0), count(None)
    ('305,469', '278,000', '-')
    """
    return MISSING if missing(v) else f"{round(float(v)):,}"


def yuan(v, decimals: int = 2) -> str:
    """An amount in yuan: thousands separators, fixed decimals.

    >>> yuan(1234.5), yuan(278000), yuan(float("nan"))
    ('1,234.50', '278,000.00', '-')
    """
    return MISSING if missing(v) else f"{float(v):,.{decimals}f}"


def pct(v, decimals: int = 1) -> str:
    """A ratio as a percentage: a loss ratio 0.9658 is "96.6 %".

    >>> pct(0.9658), pct(0.05, 0), pct(None)
    ('96.6 %', '5 %', '-')
    """
    return MISSING if missing(v) else f"{float(v) * 100:,.{decimals}f} %"


def ratio(v, decimals: int = 3) -> str:
    """A/E, a relativity, a credibility Z: three decimals.

    >>> ratio(1.03891), ratio(None)
    ('1.039', '-')
    """
    return MISSING if missing(v) else f"{float(v):,.{decimals}f}"


def pvalue(v) -> str:
    """A p-value: three decimals, "<0.001" below.

    >>> pvalue(0.04213), pvalue(1e-9)
    ('0.042', '<0.001')
    """
    if missing(v):
        return MISSING
    return "<0.001" if float(v) < 0.001 else f"{float(v):.3f}"


def number(v) -> str:
    """A number of unknown kind, shown without a Python repr: whole numbers as counts,
    others with two decimals (three significant digits when small).

    >>> number(278000.0), number(2024.1297405), number(0.000123), number(0.85), number(0.0057)
    ('278,000', '2,024.13', '1.23e-04', '0.85', '0.006')
    """
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if missing(v):
        return MISSING
    if isinstance(v, (int, np.integer)):
        return count(v)
    x = float(v)
    if x == round(x) and abs(x) < 1e15:
        return count(x)
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return f"{x:.2e}" if abs(x) < 0.001 else f"{x:.3f}".rstrip("0").rstrip(".")


_LONG = re.compile(r"(?<![\w./-])(\d+\.\d{4,})(?![\w./])")


def tidy_numbers(text: str) -> str:
    """Numbers of 4 or more decimals in a sentence (a note of the engine) to 3; a DOI,
    a date or a version is left alone.

    >>> tidy_numbers("renewal (healthy 0.3873, sick 0.8944), doi 10.3389/fonc.2024.1297405")
    'renewal (healthy 0.387, sick 0.894), doi 10.3389/fonc.2024.1297405'
    """
    return _LONG.sub(lambda m: f"{float(m[1]):.3f}", str(text))


def factor_label(name: str, lang: str = "en") -> str:
    """A rating factor's readable name.

    >>> factor_label("insutype"), factor_label("insutype", "zh")
    ('scheme', '参保类型')
    """
    pair = FACTORS.get(str(name))
    return str(name).replace("_", " ") if pair is None else pair[lang == "zh"]


def code_label(factor: str, code, lang: str = "en") -> str:
    """A code's readable label: gender "2" is "female" (女), insutype "390" "resident (390)";
    an age band "41-60" is "41-60" (zh "41-60岁").

    >>> code_label("gender", 2, "zh"), code_label("insutype", "310"), code_label("age_band", "81+", "zh")
    ('女', 'employee (310)', '81+岁')
    """
    if missing(code):
        return MISSING
    c = str(int(code)) if isinstance(code, (float, np.floating)) and float(code).is_integer() else str(code)
    pair = CODES.get(str(factor), {}).get(c)
    if pair is not None:
        return pair[lang == "zh"]
    if str(factor).startswith("age") and lang == "zh" and re.fullmatch(r"\d+(-\d+|\+)", c):
        return c + "岁"
    return c


def term_label(term: str, lang: str = "en") -> str:
    """A statsmodels term as a reader says it: ``C(gender)[T.2]`` is "sex: female",
    ``Intercept`` the base level.

    >>> term_label("C(gender)[T.2]"), term_label("C(insutype)[T.390]", "zh")
    ('sex: female', '参保类型: 居民 (390)')
    >>> term_label("Intercept"), term_label("Intercept", "zh")
    ('base (intercept)', '基准（截距）')
    """
    t = str(term)
    if t == "Intercept":
        return "基准（截距）" if lang == "zh" else "base (intercept)"
    m = _TERM.match(t)
    if m is None:
        return factor_label(t, lang)
    return f"{factor_label(m[1], lang)}: {code_label(m[1], m[2], lang)}"


def local_name(name, lang: str = "en") -> str:
    """A product's name on a page of ``lang``: on a Chinese page without the English
    gloss in brackets its file gives after the Chinese name.

    >>> local_name("沪惠保 2025 (Huhuibao, standard version)", "zh")
    '沪惠保 2025'
    >>> local_name("沪惠保 2025 (Huhuibao, standard version)")
    '沪惠保 2025 (Huhuibao, standard version)'
    >>> local_name("银龄医疗保险 elderly medical cover (entry 60-80, renewable to 100)", "zh")
    '银龄医疗保险'
    """
    import re

    text = str(name)
    if lang == "zh" and re.search(r"[\u4e00-\u9fff]", text):
        text = re.sub(r"\s*\([\x20-\x7e]*\)\s*$", "", text)
        # an English gloss written after the Chinese name without brackets
        return re.sub(r"(?<=[\u4e00-\u9fff])\s+[A-Za-z][\x20-\x7e]*$", "", text)
    return text
