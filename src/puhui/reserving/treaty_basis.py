"""Treaty sets in the actuarial basis: ``actuarial/treaties/*.toml`` read, checked and
turned into engine figures (fen, basis points), for pricing's risk transfer
(:mod:`puhui.pricing.risk_transfer`) and the arithmetic of :mod:`puhui.reserving.treaties`.

A treaty set is a list of treaties applied in the order written, each to what the ones
before it left (gross -> net of the first -> net of the first two ...), with the quantile
at which the net position's capital is stated::

    id = "example-huhuibao-2025"
    capital_quantile = 0.995

    [[treaties]]
    id = "xl"
    kind = "excess_of_loss"        # per person: retention and limit in yuan
    retention = 300000
    limit = 700000
    loading = 0.30                 # premium = expected ceded x (1 + loading)

    [[treaties]]
    id = "qs"
    kind = "quota_share"           # share of premium and claims
    share = 0.30
    ceding_commission = 0.10       # of the ceded premium, paid back to the cedent

    [[treaties]]
    id = "sl"
    kind = "stop_loss"             # the year's loss ratio from attachment to + width
    attachment = 1.00
    width = 0.30
    loading = 0.25                 # or rate = 0.02: premium = rate x subject premium

A file may ``extends`` another (treaties merge by ``id``; ``remove = true`` drops one).
Every error is a :class:`~puhui.errors.RuleFileError` naming the file, the treaty and
the key (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from puhui.basis import (
    Flag,
    OneOrList,
    Ratio,
    Table,
    Tables,
    Text,
    Yuan,
    _number,
    actuarial_dir,
    read_checked,
)
from puhui.errors import RuleFileError
from puhui.money import ratio_to_bp, yuan_text_to_fen

KINDS = ("quota_share", "stop_loss", "excess_of_loss")
#: The keys each kind of treaty takes beside ``id``, ``kind``, ``name``, ``note``:
#: (required, optional).
KIND_KEYS = {
    "quota_share": (("share",), ("ceding_commission",)),
    "stop_loss": (("attachment", "width"), ("loading", "rate")),
    "excess_of_loss": (("retention", "limit", "loading"), ()),
}
#: A loss ratio written in a treaty file (attachment, width): 0 to 10 (1,000 %).
MAX_LOSS_RATIO = 10
#: A reinsurer's loading on expected ceded claims: 0 to 10 (+1,000 %).
MAX_LOADING = 10


class LossRatio(Ratio):
    """A loss ratio from 0 to ``hi`` (1.10 for 110 %), whole basis points."""

    def __init__(self, hi: float = MAX_LOSS_RATIO):
        self.hi = hi
        self.what = f"a loss ratio from 0 to {hi:g} (1.10 for 110 %)"

    def check(self, v, c, table, key, partial):
        _number(v, c, table, key, self.what)
        if not 0 <= v <= self.hi:
            c.bad(table, key, v, f"should be {self.what}")
        d = Decimal(repr(v)) * 10_000
        if d != d.to_integral_value():
            c.bad(table, key, v, "finer than a basis point (0.0001)")


class Loading(LossRatio):
    def __init__(self):
        self.hi = MAX_LOADING
        self.what = f"a loading from 0 to {MAX_LOADING} (0.25 for 25 % above expected claims)"


def _treaty_rule(t: dict, c, name: str) -> None:
    """The keys of the treaty's kind, and no other kind's; a positive share, width and
    limit (a treaty that can cede nothing is a typo)."""
    required, optional = KIND_KEYS[t["kind"]]
    for k in required:
        if k not in t:
            c.fail(name, f"missing '{k}': a {t['kind']} treaty needs "
                         f"{', '.join(repr(r) for r in required)}")
    for k in t:
        if k not in required + optional + ("id", "kind", "name", "note"):
            c.fail(name, f"'{k}' is not a key of a {t['kind']} treaty (it takes "
                         f"{', '.join(repr(r) for r in required + optional)})")
    if t["kind"] == "stop_loss" and ("loading" in t) == ("rate" in t):
        c.fail(name, "a stop_loss treaty gives its price as 'loading' (on expected ceded "
                     "claims) or 'rate' (a share of the subject premium): give one of them")
    for k in ("share", "width", "limit"):
        if k in t and t[k] == 0:
            c.bad(name, k, t[k], "is 0, so the treaty cedes nothing; remove the treaty or "
                                 "give a positive figure")


TREATY = Table({
    "id": Text(pattern=r"[a-z0-9][a-z0-9_-]{0,63}",
               what="an id of lower-case letters, digits, - and _"),
    "kind": Text(KINDS), "name": Text(), "note": Text(),
    "share": Ratio(), "ceding_commission": Ratio(),
    "attachment": LossRatio(), "width": LossRatio(), "rate": Ratio(),
    "retention": Yuan(), "limit": Yuan(), "loading": Loading(),
}, required=("id", "kind"), what="a treaty", rule=_treaty_rule)


def _file_rule(v: dict, c, name: str) -> None:
    """The capital quantile from 0.5 to below 1; each treaty id once (the figures and a
    per-person treaty's layer are keyed by it: two excesses of loss under one id were
    both costed with the second's layer, review s23)."""
    q = v["capital_quantile"]
    if not 0.5 <= q < 1:
        c.bad(name, "capital_quantile", q, "should be a probability from 0.5 to below 1 "
                                           "(0.995 for the 1-in-200-year loss)")
    ids = [t["id"] for t in v["treaties"]]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        c.fail("treaties", f"treaty id {twice[0]!r} is given {ids.count(twice[0])} times; "
                           f"give each treaty its own id (a file that extends another "
                           f"changes a treaty by giving its id once)")


TREATY_FILE = Table({
    "id": Text(), "name": Text(), "sources": OneOrList(Text()), "notes": OneOrList(Text()),
    "illustrative": Flag(), "capital_quantile": Ratio(),
    "treaties": Tables(TREATY, by_id=True, min_len=1),
}, required=("id", "capital_quantile", "treaties"), what="a treaty file", rule=_file_rule)


@dataclass(frozen=True)
class Treaty:
    """One treaty in engine figures: shares, loss ratios and loadings in basis points,
    amounts in fen (0 where the kind has no such term)."""

    id: str
    kind: str
    share_bp: int = 0
    commission_bp: int = 0
    attachment_bp: int = 0
    width_bp: int = 0
    loading_bp: int | None = None
    rate_bp: int | None = None
    retention_fen: int = 0
    limit_fen: int = 0


@dataclass(frozen=True)
class TreatySet:
    """A treaty file: its treaties in the order they apply, and the capital quantile."""

    id: str
    path: Path
    treaties: tuple[Treaty, ...]
    capital_quantile: float
    illustrative: bool = False


def _bp(v) -> int:
    """A ratio up to :data:`MAX_LOSS_RATIO` in whole basis points (checked before)."""
    return int(Decimal(repr(v)) * 10_000)


def _treaty(t: dict) -> Treaty:
    opt = {k: _bp(t[k]) for k in ("loading", "rate") if k in t}
    return Treaty(
        id=t["id"], kind=t["kind"], share_bp=ratio_to_bp(t.get("share", 0)),
        commission_bp=ratio_to_bp(t.get("ceding_commission", 0)),
        attachment_bp=_bp(t.get("attachment", 0)), width_bp=_bp(t.get("width", 0)),
        loading_bp=opt.get("loading"), rate_bp=opt.get("rate"),
        retention_fen=yuan_text_to_fen(t.get("retention", 0)),
        limit_fen=yuan_text_to_fen(t.get("limit", 0)))


def treaty_path(name: str | Path) -> Path:
    """A treaty file given as a path, else as a name in ``actuarial/treaties/`` (with or
    without ``.toml``); exit 2 naming both places when neither exists."""
    p = Path(name)
    if p.is_file():
        return p
    if p.parent == Path("."):
        shipped = actuarial_dir() / "treaties" / (p.name if p.suffix else f"{p.name}.toml")
        if shipped.is_file():
            return shipped
    raise RuleFileError(f"{name}: treaty file not found (neither a file nor a name in "
                        f"{actuarial_dir() / 'treaties'}); give the path of a treaty set "
                        f"such as actuarial/treaties/example-huhuibao-2025.toml")


def load_treaties(name: str | Path) -> TreatySet:
    """Read and check a treaty file (see the module docstring)."""
    path = treaty_path(name)
    raw = read_checked(path, TREATY_FILE)
    treaties = tuple(_treaty(t) for t in raw["treaties"])
    kinds = [t.kind for t in treaties]
    if "stop_loss" in kinds and "excess_of_loss" in kinds[kinds.index("stop_loss"):]:
        raise RuleFileError(
            f"{path}: treaties: a per-person excess_of_loss comes after a stop_loss; "
            f"the stop loss acts on the year's total, after which no person's claims are "
            f"defined: list the excess of loss before the stop loss (treaties apply in "
            f"the order written)")
    return TreatySet(raw["id"], path, treaties, float(raw["capital_quantile"]),
                     bool(raw.get("illustrative", False)))
