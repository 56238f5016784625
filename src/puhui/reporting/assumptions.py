"""An assumptions file (TOML, each value tagged in its comment) as the rows of a
readable table: key, value, source. The source is the value's comment (its
[sourced] or [assumption] tag and where the figure comes from) and the file and line
it is on; a citation of the project's former working notes (not in the repository), in
an older copy of the basis, is shown as the section of docs/domain.md that replaced it."""

from __future__ import annotations

import re
import tomllib

import pandas as pd

#: notes an older basis cites that the repository does not hold
NOT_SHIPPED = re.compile(r"\b(DOMAIN|CONTRACT)\.md( §\s?\d+)?|\.\./shared/[^\s;,)]*")
_IN_REPO = {"DOMAIN": "docs/domain.md", "CONTRACT": "docs/data-schema.md"}
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def _in_repo(m: re.Match, lang: str) -> str:
    if m[1]:
        return _IN_REPO[m[1]] + (m[2] or "")
    return ("docs/domain.md, Sources (public data, not shipped)" if lang == "en"
            else "docs/domain.md 来源（公开数据，未随仓库发布）")


def cite(text: str, lang: str = "en") -> str:
    """A source as a reader can follow it: a citation of the project's former working
    notes (in an older copy of the basis) becomes the file of the repository that
    replaced it (docs/domain.md, same section numbers; docs/data-schema.md).

    >>> cite("survey (DOMAIN.md §2, unverified)")
    'survey (docs/domain.md §2, unverified)'
    >>> cite("survey (docs/domain.md §2, unverified)")
    'survey (docs/domain.md §2, unverified)'
    """
    return NOT_SHIPPED.sub(lambda m: _in_repo(m, lang), str(text))


def _source(comment: str, file: str, line: int, lang: str) -> str:
    text = cite(comment.strip(), lang)
    where = f"{file}:{line}"
    return f"{text} ({where})" if text else where


def _value(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def assumptions_table(text: str, file: str, lang: str = "en") -> pd.DataFrame:
    """The rows (key, value, source) of the assumptions file ``text`` (its name in the
    repository: ``file``). A key's source is the comment on its line, or the whole
    block of comment lines just above it when it has none (a comment cut to its last
    lines read as a sentence begun elsewhere).

    >>> t = assumptions_table('[loads]\\n# the load\\nexpense_ratio = 0.12 # [assumption] a guess (DOMAIN.md §2)\\n'
    ...                       'profit = 0.03\\n', "a.toml")
    >>> t.to_dict("records")[0]
    {'key': 'loads.expense_ratio', 'value': '0.12', 'source': '[assumption] a guess (docs/domain.md §2) (a.toml:3)'}
    >>> t.loc[1, "source"]          # no comment on its line nor just above
    'a.toml:4'
    """
    data = tomllib.loads(text)
    rows, section, above = [], [], []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            section, above = line.strip("[]").strip().split("."), []
            continue
        if line.startswith("#"):
            above.append(line.lstrip("#").strip())
            continue
        m = _KEY.match(raw)
        if not m:
            continue
        key = m[1].strip('"')
        node = data
        for part in section:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        value = node.get(key) if isinstance(node, dict) else None
        comment = raw.split("#", 1)[1] if "#" in raw.split("=", 1)[1] else " ".join(above)
        rows.append({"key": ".".join([*section, key]), "value": _value(value),
                     "source": _source(comment, file, i, lang)})
        above = []
    return pd.DataFrame(rows, columns=["key", "value", "source"])
