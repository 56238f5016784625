"""The reports' common parts (issue 21): one jinja2 environment over the template files
of ``puhui/templates`` (one base template and one style for every report), the formats
(:mod:`puhui.reporting.formats`), the tables (:mod:`puhui.reporting.tables`) and one
message catalogue (``templates/messages.toml``) for the Chinese pages.

A report is rendered with :func:`render` in ``lang`` "en" (the default) or "zh"; the
catalogue holds the Chinese of each English text (a text missing from it is shown in
English). Every ``{{ value }}`` passes :func:`finalize`: None, NaN and floats never
reach a page as Python prints them.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources

from markupsafe import Markup

from puhui.reporting import formats as fm

LANGS = ("en", "zh")
#: the marker ``puhui synth`` writes beside the data files: a folder holding it is synthetic
SYNTHETIC_MARKER = "SYNTHETIC.json"


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    """The message catalogue: language to {English text: translation}."""
    text = resources.files("puhui").joinpath("templates/messages.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def gettext_for(lang: str):
    """The translation function of ``lang`` (the English text where none is given)."""
    if lang not in LANGS:
        from puhui.errors import InputError

        raise InputError(f"language {lang!r}: one of {', '.join(LANGS)}")
    table = catalogue().get(lang, {})       # [en]: display names of column keys

    def gettext(s: str) -> str:
        return table.get(s, s)

    return gettext


def finalize(v):
    """What ``{{ v }}`` prints: strings and markup as they are, whole numbers as
    written (a year; a count in a template takes ``|count``), other numbers in
    :func:`puhui.reporting.formats.number`, None and NaN as "-"."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)                    # a year, an id: as written (counts: |count)
    if v is None or isinstance(v, (int, float)) or hasattr(v, "dtype"):
        return fm.number(v)
    return v


@functools.cache
def environment(lang: str = "en"):
    """The jinja2 environment of ``lang``: the template files, autoescape, the i18n
    extension bound to the catalogue, the formats as filters."""
    from jinja2 import Environment, PackageLoader

    from puhui.reporting.assumptions import cite
    from puhui.reporting.notes import translate_note

    gettext = gettext_for(lang)
    env = Environment(loader=PackageLoader("puhui", "templates"), autoescape=True,
                      extensions=["jinja2.ext.i18n"], finalize=finalize,
                      trim_blocks=False, lstrip_blocks=False)
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, lambda s, p, n: gettext(s if n == 1 else p),
                                  newstyle=True)
    env.globals.update(lang=lang, html_lang="zh-CN" if lang == "zh" else "en")
    env.filters.update(
        count=fm.count, yuan=fm.yuan, pct=fm.pct, pct0=lambda v: fm.pct(v, 0), ratio=fm.ratio,
        number=fm.number, term=lambda t: fm.term_label(t, lang),
        factor=lambda f: fm.factor_label(f, lang),
        code=lambda c, factor: fm.code_label(factor, c, lang),
        cite=lambda t: fm.tidy_numbers(cite(t, lang)),
        local_name=lambda t: fm.local_name(t, lang),
        sentence=lambda t: str(t)[:1].upper() + str(t)[1:],     # a note that starts a sentence
        note=lambda t: fm.tidy_numbers(cite(translate_note(t, lang, gettext), lang)),
        yesno=lambda v: fm.MISSING if v is None else gettext("yes" if v else "no"))
    return env


def render(template: str, lang: str = "en", **context) -> str:
    """The page of ``template`` (a file of puhui/templates) in ``lang``."""
    return environment(lang).get_template(template).render(**context)


def table_for(lang: str):
    """:func:`puhui.reporting.tables.table` bound to ``lang`` and its catalogue."""
    from puhui.reporting.tables import table

    gettext = gettext_for(lang)
    return functools.partial(table, lang=lang, gettext=gettext)


def synthetic_marker(data_dir) -> dict | None:
    """What ``puhui synth`` recorded of a data folder (its ``SYNTHETIC.json``), or None
    when the folder holds no marker (data of a fund, or written otherwise) or none is
    given."""
    import json
    from pathlib import Path

    if data_dir is None:
        return None
    p = Path(data_dir) / SYNTHETIC_MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"generator": "unknown"}


__all__ = ["LANGS", "SYNTHETIC_MARKER", "Markup", "catalogue", "environment", "finalize",
           "gettext_for", "render", "synthetic_marker", "table_for"]
