"""A DataFrame as a report table: every column in its format (puhui.reporting.formats),
codes and model terms as labels, headers from the message catalogue, an optional
totals row, inside a container that scrolls sideways rather than overflow the page."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from puhui.reporting import formats as fm

#: columns shown as percentages (the value is a ratio: 0.966 is "96.6 %")
PCT = ("loss_ratio", "share", "lapse_rate", "take_up", "renewal_rate", "entry_rate",
       "still_enrolled", "not_admitted", "probability", "observed", "predicted")
#: columns shown with three decimals (A/E, relativities, coefficients, credibility)
RATIO = {"ae", "a_to_e", "a/e", "actual_to_expected", "z", "relativity", "factor", "coef",
         "se", "hazard_ratio", "lower_95", "upper_95", "lower", "upper", "cv", "ratio",
         "a", "b", "se_a", "se_b", "estimate", "gini_glm", "gini_gbm", "gini", "k",
         "deviance_constant", "deviance_glm", "deviance_gbm", "exp(coef)"}
PVALUE = {"p", "p_value", "pvalue"}
CODE_COLUMNS = set(fm.CODES) | {"age_band", "age_group"}
NUM_TD = '<td class="n">'
#: a table of this many columns or more is set smaller (class "wide") to fit the page
WIDE_COLUMNS = 9


def column_kind(name: str, s: pd.Series) -> str:
    """The format of a column, from its name and type (docstring of :func:`table`).

    >>> column_kind("loss_ratio", pd.Series([0.9])), column_kind("people", pd.Series([3]))
    ('pct', 'count')
    >>> column_kind("expected", pd.Series([12.5])), column_kind("term", pd.Series(["x"]))
    ('number', 'term')
    >>> column_kind("year", pd.Series([2025]))
    'text'
    """
    low = str(name).lower()
    if low == "term":
        return "term"
    if low == "year" or low.endswith("_year"):
        return "text"                   # a year is a name, not a count: 2025, not 2,025
    if low in CODE_COLUMNS:
        return "code"
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_integer_dtype(s):
        return "count"
    if not pd.api.types.is_numeric_dtype(s):
        return "text"
    if low in PVALUE:
        return "p"
    if low in RATIO or low.endswith("_ae") or low.startswith("ae_"):
        return "ratio"
    if any(k in low for k in PCT) or low.endswith("_rate"):
        return "pct"
    return "number"


def cell(v, kind: str, column: str, lang: str, gettext) -> str:
    """One value as text in its column's format."""
    if kind == "text":
        # a word the catalogue knows (a benefit's id, "inpatient", "none") in the page's
        # language; any other text as it is
        return fm.MISSING if fm.missing(v) else gettext(str(v))
    if kind == "code":
        return fm.code_label(column, v, lang)
    if kind == "term":
        return fm.term_label(v, lang)
    if kind == "bool" or isinstance(v, (bool, np.bool_)):
        return fm.MISSING if fm.missing(v) else gettext("yes" if v else "no")
    if isinstance(v, str):
        return v
    if kind in ("count", "yuan", "pct", "pct2", "ratio", "p"):
        return {"count": fm.count, "yuan": fm.yuan, "pct": fm.pct, "ratio": fm.ratio,
                "pct2": lambda x: fm.pct(x, 2), "p": fm.pvalue}[kind](v)
    return fm.number(v)


def table(df: pd.DataFrame | None, lang: str = "en", gettext=None, kinds: dict | None = None,
          totals: tuple = (), empty: str = "(not enough data)", quoted: tuple = ()) -> Markup:
    """``df`` as HTML. Formats per column: ``kinds`` (column to "count", "yuan", "pct",
    "pct2" (two decimals), "ratio", "p", "number", "code", "term", "text") over the inferred
    (:func:`column_kind`); ``totals``: columns summed in a last row; ``quoted``: columns
    whose text is quoted from a file in English (an assumption's comment, a source), marked
    ``lang="en"`` on a page of another language.

    >>> t = pd.DataFrame({"gender": ["1", "2"], "people": [1200, 30], "loss_ratio": [0.9658, None]})
    >>> html = table(t, "zh", totals=("people",))
    >>> "男" in html and "1,230" in html and "96.6 %" in html and "nan" not in html
    True
    """
    gettext = gettext or (lambda s: s)
    if lang != "en":
        # a header or a text the catalogue has no exact entry for goes through its
        # patterns (an engine's sentence, "entry 60", "+4.9% (+3.7% with lapse)")
        from puhui.reporting.notes import translate_note

        exact = gettext
        gettext = lambda s: translate_note(s, lang, exact)     # noqa: E731
    if df is None or not isinstance(df, pd.DataFrame) or df.empty:
        return Markup("<p>") + escape(gettext(empty)) + Markup("</p>")
    kinds = {c: (kinds or {}).get(c) or column_kind(c, df[c]) for c in df.columns}
    right = {c: kinds[c] not in ("text", "code", "term") for c in df.columns}
    head = "".join(f"<th>{escape(header(c, gettext))}</th>" for c in df.columns)
    df = _labelled(df, lang)
    rows = []
    quote = set(quoted) if lang != "en" else set()
    for rec in df.itertuples(index=False, name=None):
        rows.append("<tr>" + "".join(
            (NUM_TD if right[c] else "<td>") + (
                f'<span class="src" lang="en">{escape(v)}</span></td>' if c in quote else
                f"{escape(cell(v, kinds[c], c, lang, gettext))}</td>")
            for c, v in zip(df.columns, rec)) + "</tr>")
    if totals:
        tot = []
        for i, c in enumerate(df.columns):
            if c in totals:
                tot.append(f'<td class="n">{escape(cell(df[c].sum(), kinds[c], c, lang, gettext))}</td>')
            else:
                tot.append(f"<td>{escape(gettext('total')) if i == 0 else ''}</td>")
        rows.append('<tr class="total">' + "".join(tot) + "</tr>")
    wide = " wide" if len(df.columns) >= WIDE_COLUMNS else ""
    return Markup(f'<div class="scroll"><table class="dataframe t{wide}"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(rows)}</tbody></table></div>')


def header(column, gettext) -> str:
    """A column's header: the catalogue's, else its name with spaces for underscores.

    >>> header("person_years", lambda s: s)
    'person years'
    """
    text = gettext(str(column))
    return text.replace("_", " ") if text == str(column) else text


def _labelled(df: pd.DataFrame, lang: str) -> pd.DataFrame:
    """A long table's ``factor`` and ``level`` (and a model's ``covariate``) as labels:
    factor "gender", level "2" is "sex", "female"."""
    out = df
    if "factor" in df.columns and not pd.api.types.is_numeric_dtype(df["factor"]):
        out = out.copy()
        if "level" in df.columns:
            out["level"] = [fm.code_label(f, v, lang) for f, v in zip(df["factor"], df["level"])]
        out["factor"] = [fm.factor_label(f, lang) for f in df["factor"]]
    if "factors" in df.columns and not pd.api.types.is_numeric_dtype(df["factors"]):
        out = out.copy() if out is df else out
        out["factors"] = [v if not isinstance(v, str) else ", ".join(
            fm.factor_label(f.strip(), lang) for f in v.split(",")) for v in df["factors"]]
    if "covariate" in df.columns and not pd.api.types.is_numeric_dtype(df["covariate"]):
        out = out.copy() if out is df else out
        out["covariate"] = [fm.factor_label(c, lang) for c in df["covariate"]]
    return out
