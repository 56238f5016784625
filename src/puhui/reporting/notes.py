"""The engines' notes and sentences (pricing.json's notes, a backtest's reading, a
pricing group's note) in a report's language. The figures keep them in English (a
note is part of pricing.json, which the language never changes); a Chinese page
shows each through the catalogue: the whole text as a key of ``[zh]``, else each
sentence through the patterns of ``[zh_patterns]`` (a regular expression of the
English with named groups, and its Chinese with ``\\g<name>``; a group named ``t_...``
is itself looked up, so a benefit's id is shown as its Chinese name). A sentence no
entry matches stays in English."""

from __future__ import annotations

import functools
import re

#: where a note's text is cut into sentences: after ". " or "; " before a capital or
#: a lower-case word starting a clause of its own
_SENTENCE = re.compile(r"(?<=\.)\s+(?=[A-Z])")


@functools.cache
def _patterns(lang: str) -> tuple:
    from puhui.reporting import catalogue

    return tuple((re.compile(k), v) for k, v in catalogue().get(f"{lang}_patterns", {}).items())


def _one(text: str, lang: str, gettext) -> str | None:
    """``text`` translated whole, or None when no entry matches it."""
    exact = gettext(text)
    if exact != text:
        return exact
    for rx, repl in _patterns(lang):
        m = rx.fullmatch(text)
        if m:
            groups = {k: (gettext(v) if k.startswith("t_") and v is not None else v or "")
                      for k, v in m.groupdict().items()}
            return re.sub(r"\\g<(\w+)>", lambda g: groups[g[1]], repl)
    return None


def translate_note(text, lang: str, gettext) -> str:
    """A note or reading in ``lang``: whole, else sentence by sentence.

    >>> g = {"a cat.": "一只猫。"}.get
    >>> translate_note("a cat.", "zh", lambda s: g(s, s))
    '一只猫。'
    >>> translate_note("No match here.", "zh", lambda s: s)
    'No match here.'
    """
    text = str(text)
    if lang == "en" or not text:
        return text
    whole = _one(text, lang, gettext)
    if whole is not None:
        return whole
    parts = _SENTENCE.split(text)
    if len(parts) == 1:
        return text
    out = [(_one(p, lang, gettext), p) for p in parts]
    return "".join(t if t is not None else f" {p} " for t, p in out).strip()
