"""``puhui monitor``'s outputs: monitor.json (yuan, 2 decimals), monitor.md (a short
text) and monitor.html (template ``monitor.html.j2``, in the style of the other
reports, English or Chinese)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from puhui.reserve_run import _finite


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _y(v) -> str:
    return "n/a" if v is None else f"{v:,.2f}"


def markdown(res: dict) -> str:
    """A short text of monitor.json (English)."""
    lr, d, y = res["comprehensive_loss_ratio"], res["premium_deficiency"], res["year"]
    iv = lr["interval"]
    lines = [f"# {res['product_id']} as of {res['as_of']}", "",
             f"Policy year {y['start']} to {y['end']}, {y['policies']:,} policies, "
             f"{_pct(y['elapsed_share'])} of it elapsed. Ledger {res['ledger']}; pricing "
             f"{res['pricing']['file']}.", "",
             f"Earned premium {_y(res['earned_premium_yuan'])} yuan; paid "
             f"{_y(res['paid_yuan'])}; IBNR ({res['method']}) {_y(res['ibnr_yuan'])} (Mack "
             f"s.e. {_y(res['ibnr_std_err_yuan'])}).", "",
             f"Comprehensive loss ratio (paid + IBNR) / earned: {_pct(lr['value'])}, "
             + (f"{_pct(iv['level'])} interval {_pct(iv['lower'])} to {_pct(iv['upper'])} "
                f"({iv['basis']})" if iv["lower"] is not None else f"no interval "
                f"({iv['basis']})") + f"; priced {_pct(lr['priced'])}.", "",
             f"Actual against expected to date: A/E "
             f"{_n(res['year_to_date']['actual_to_expected'])}.", "",
             "| month | earned | paid | IBNR | actual | expected | A/E | band | signal |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for m in res["by_month"]:
        b = m["band"]
        lines.append(f"| {m['month']} | {_y(m['earned_yuan'])} | {_y(m['paid_yuan'])} | "
                     f"{_y(m['ibnr_yuan'])} | {_y(m['actual_yuan'])} | "
                     f"{_y(m['expected_yuan'])} | {_n(m['actual_to_expected'])} | "
                     f"{_band(b)} | {m['signal'] or ''} |")
    lines += ["", "| benefit | paid | IBNR | actual | expected | A/E |", "|---|---:|---:|---:|---:|---:|"]
    for r in res["by_benefit"]:
        lines.append(f"| {r['benefit']} | {_y(r['paid_yuan'])} | {_y(r['ibnr_yuan'])} | "
                     f"{_y(r['actual_yuan'])} | {_y(r['expected_yuan'])} | "
                     f"{_n(r['actual_to_expected'])} |")
    lines += ["", f"IBNR by benefit: {res['allocation']}.", "",
              f"Premium deficiency for the rest of the year: unexpired premium "
              f"{_y(d['unexpired_premium_yuan'])} yuan, expected claims "
              f"{_y(d['expected_claims_yuan'])} (priced {_y(d['expected_claims_priced_yuan'])}"
              f" x {d['adjustment_factor']:.4f}); deficiency {_y(d['deficiency_yuan'])}; "
              f"the year's projected loss ratio {_pct(d['projected_loss_ratio'])}. Rule: "
              f"{d['rule']}."]
    lines += [f"\nWarning: {w}." for w in res["warnings"]]
    return "\n".join(lines) + "\n"


def _band(b) -> str:
    return "" if b is None else f"{b['lower']:.2f} to {b['upper']:.2f}"


def _n(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def ae_figure(res: dict) -> str | None:
    """A/E by month (bars: red above its band), the band as whiskers around 1: base64 PNG
    (no words on it, so one figure serves both languages)."""
    from puhui.html_figures import new_figure, png_base64

    rows = [m for m in res["by_month"] if m["actual_to_expected"] is not None]
    if not rows:
        return None
    fig, ax = new_figure(7, 2.6)
    x = list(range(len(rows)))
    ax.bar(x, [m["actual_to_expected"] for m in rows],
           color=["#b2182b" if m["signal"] == "above" else "#4d7ea8" for m in rows])
    banded = [(k, m["band"]) for k, m in zip(x, rows) if m["band"]]
    if banded:
        ax.errorbar([k for k, _ in banded], [1.0] * len(banded), fmt="none", ecolor="black",
                    capsize=5, linewidth=1, yerr=[[1 - b["lower"] for _, b in banded],
                                                  [b["upper"] - 1 for _, b in banded]])
    ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
    ax.set_xticks(x, [m["month"] for m in rows], rotation=45, fontsize=8)
    ax.set_ylabel("A/E")
    return png_base64(fig)


def html(res: dict, lang: str = "en") -> str:
    """monitor.html: the page of ``monitor.html.j2``."""
    from puhui import __version__
    from puhui.reporting import render, table_for

    tb = table_for(lang)
    money = {c: "yuan" for c in ("earned", "paid", "IBNR", "actual", "expected")}
    months = pd.DataFrame([{
        "month": m["month"], "exposure (policy-years)": m["exposure_policy_years"],
        "earned": m["earned_yuan"], "paid": m["paid_yuan"], "IBNR": m["ibnr_yuan"],
        "actual": m["actual_yuan"], "expected": m["expected_yuan"],
        "A/E": m["actual_to_expected"],
        "band lower": None if m["band"] is None else m["band"]["lower"],
        "band upper": None if m["band"] is None else m["band"]["upper"],
        "signal": m["signal"] or ""} for m in res["by_month"]])
    benefits = pd.DataFrame([{
        "benefit": r["benefit"], "paid": r["paid_yuan"], "IBNR": r["ibnr_yuan"],
        "actual": r["actual_yuan"], "expected": r["expected_yuan"],
        "A/E": r["actual_to_expected"]} for r in res["by_benefit"]])
    grid = pd.DataFrame(res["by_month_benefit"]).pivot(
        index="month", columns="benefit", values="actual_to_expected")
    grid = grid[[b for b in (r["benefit"] for r in res["by_benefit"])]].reset_index()
    ratio = {"A/E": "ratio", "band lower": "ratio", "band upper": "ratio",
             "exposure (policy-years)": "number", "signal": "text"}
    return render("monitor.html.j2", lang, r=res, version=__version__, synthetic=None,
                  figure=ae_figure(res),
                  months=tb(months, kinds={**money, **ratio},
                            totals=("earned", "paid", "IBNR", "actual", "expected")),
                  benefits=tb(benefits, kinds={**money, **ratio},
                              totals=("paid", "IBNR", "actual", "expected")),
                  grid=tb(grid, kinds={c: "ratio" for c in grid.columns if c != "month"}))


def write_outputs(res: dict, out: str | Path, lang: str = "en") -> list[Path]:
    """monitor.json, monitor.md and monitor.html into ``out``."""
    out = Path(out)
    j, m, h = out / "monitor.json", out / "monitor.md", out / "monitor.html"
    j.write_text(json.dumps(_finite(res), indent=2, ensure_ascii=False, allow_nan=False),
                 encoding="utf-8")
    m.write_text(markdown(res), encoding="utf-8")
    h.write_text(html(res, lang), encoding="utf-8")
    return [j, m, h]
