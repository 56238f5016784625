"""``puhui product show`` and ``puhui product diff``: a product as readable lines.

:func:`describe` turns a product into ordered (label, text) pairs; ``show`` prints them,
``diff`` compares two descriptions key by key, so a diff of two years reads as the list
of terms that changed.
"""

from __future__ import annotations

from puhui.products.model import LINE_SELECT, SETTLEMENT_QUANTITIES, Benefit, Product
from puhui.tiers.rules import Choice, Condition


def _yuan(fen: int) -> str:
    y = fen / 100
    return f"{y:,.0f}" if fen % 100 == 0 else f"{y:,.2f}"


def _condition(c: Condition | None) -> str:
    if c is None:
        return "all settlements"
    parts = []
    for attr, op, value in c.tests:
        if op == "in":
            parts.append(f"{attr} in {', '.join(map(str, value))}")
        else:
            parts.append(f"{attr} {op} {value}")
    return "; ".join(parts)


def _pays_on(b: Benefit) -> str:
    if b.lines:
        text = f"lines of list '{b.lines.list}': {LINE_SELECT[b.lines.select]}"
        if b.exclude_basic_paid:
            text += " (not lines basic insurance paid)"
        return text
    return f"{b.pays_on} ({SETTLEMENT_QUANTITIES[b.pays_on]})"


def _deductible(b: Benefit) -> str:
    la = b.layer
    if la.deductible is None:
        return "none"
    opts = la.deductible.options
    base = _yuan(opts[-1][1]) + " a year"
    steps = [f"{_yuan(v)} after {dict((a, x) for a, _, x in c.tests)['claim_free_years']} "
             f"claim-free years" for c, v in reversed(opts[:-1])]
    text = base + (f" ({'; '.join(steps)})" if steps else "")
    acc = la.deductible_accumulator.split(":", 1)[1]
    return text + (f", shared as '{acc}'" if acc != b.id else "")


def _ratio(ch: Choice) -> tuple[str, str]:
    opts = ch.options
    default = f"{opts[-1][1] / 100:g} %"
    pre = default
    for c, v in opts[:-1]:
        if c is not None and ("preexisting", "==", True) in c.tests:
            pre = f"{v / 100:g} %"
    return default, pre


def _limit(b: Benefit) -> str:
    la = b.layer
    if la.limit is None:
        return "none"
    acc = la.limit_accumulator.split(":", 1)[1]
    return _yuan(la.limit.options[-1][1]) + " a year" + \
        (f", shared as '{acc}'" if acc != b.id else "")


def describe(p: Product) -> list[tuple[str, str]]:
    out = [("product", f"{p.name} [{p.id}]"),
           ("policy period", f"{p.start} to {p.end}")]
    if p.premium_flat_fen is not None:
        out.append(("premium", f"{_yuan(p.premium_flat_fen)} yuan a policy (flat)"))
    else:
        for c in p.premium_cells:
            pre = "" if c.preexisting is None else (
                ", pre-existing" if c.preexisting else ", no pre-existing")
            out.append((f"premium ages {c.min_age}-{c.max_age}{pre}", f"{_yuan(c.amount_fen)} yuan"))
    ages = ""
    if p.min_entry_age is not None or p.max_entry_age is not None:
        ages = f"; entry ages {p.min_entry_age}-{p.max_entry_age}"
    if p.max_renewal_age is not None:
        ages += f", renewable to {p.max_renewal_age}"
    out.append(("eligibility", f"schemes {', '.join(p.insutypes)}"
                + (f", {p.region}" if p.region else "") + ages))
    out.append(("waiting period", f"{p.waiting_period_days} days for new policies"
                if p.waiting_period_days else "none"))
    out.append(("pre-existing conditions",
                f"ICD-10 {', '.join(p.preexisting_codes)}; look-back {p.preexisting_lookback_years} years"
                if p.preexisting_codes else "not defined"))
    for b in p.benefits:
        ratio, pre = _ratio(b.layer.ratio)
        k = f"benefit {b.id}"
        out += [(k, b.name), (f"{k} / pays on", _pays_on(b)),
                (f"{k} / applies to", _condition(b.filters)),
                (f"{k} / deductible", _deductible(b)), (f"{k} / ratio", ratio),
                (f"{k} / ratio, pre-existing", pre), (f"{k} / limit", _limit(b))]
    return out


def show_text(p: Product) -> str:
    rows = describe(p)
    width = max(len(k) for k, _ in rows)
    lines = [f"{p.path}"]
    for k, v in rows:
        if k.startswith("benefit ") and " / " not in k:
            lines.append("")
        lines.append(f"  {k:<{width}}  {v}")
    return "\n".join(lines)


def diff_text(a: Product, b: Product) -> str:
    da, db = dict(describe(a)), dict(describe(b))
    keys = [k for k, _ in describe(a)] + [k for k, _ in describe(b) if k not in da]
    lines = [f"--- {a.path} [{a.id}]", f"+++ {b.path} [{b.id}]"]
    changed = 0
    for k in keys:
        if k == "product":
            continue
        va, vb = da.get(k), db.get(k)
        if va == vb:
            continue
        changed += 1
        if va is None:
            lines.append(f"  {k}: added: {vb}")
        elif vb is None:
            lines.append(f"  {k}: removed (was {va})")
        else:
            lines.append(f"  {k}: {va}  ->  {vb}")
    if not changed:
        lines.append("  (no difference in terms)")
    return "\n".join(lines)
