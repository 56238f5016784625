"""Excel workbooks for finance teams (openpyxl): the premium tables of a pricing
(``OUT/premium.xlsx`` beside ``pricing.json``), a claims batch's summary
(``OUT/summary.xlsx`` beside ``summary.json``) and a backtest (``OUT/backtest.xlsx``
beside ``backtest.json``).

The workbooks are views of the JSON files the commands already write, built from them
alone: every figure is the JSON's, in a cell of its own with a number format (yuan with
thousands separators and two decimals, ratios as percentages), so a spreadsheet sums
and charts them without parsing text. Money is in yuan, as in the JSON files; the
column headers say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

YUAN = "#,##0.00"
COUNT = "#,##0"
PERCENT = "0.00%"
PERCENT0 = "0%"
RATIO = "0.000"

#: One sheet: (title, header, rows, number format by column index); a value in a row
#: may be a :class:`Fmt` to give that cell its own format.
Sheet = tuple[str, list[str], list[list], dict[int, str]]


@dataclass(frozen=True)
class Fmt:
    """A value with its own number format (a summary sheet mixes yuan and ratios)."""

    value: object
    format: str


def write_workbook(path: str | Path, sheets: list[Sheet]) -> Path:
    """Write ``sheets`` to an .xlsx file: a bold, frozen header row, number formats by
    column, columns as wide as their text (up to 60 characters)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for title, header, rows, formats in sheets:
        ws = wb.create_sheet(title[:31])
        ws.append(header)
        for c in ws[1]:
            c.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for i, row in enumerate(rows, 2):
            ws.append([v.value if isinstance(v, Fmt) else v for v in row])
            for j, v in enumerate(row):
                fmt = v.format if isinstance(v, Fmt) else formats.get(j)
                if fmt and v is not None:
                    ws.cell(row=i, column=j + 1).number_format = fmt
        for j, column in enumerate(ws.columns):
            width = max(len(str(c.value)) if c.value is not None else 0 for c in column)
            ws.column_dimensions[column[0].column_letter].width = min(max(width + 2, 10), 60)
    path = Path(path)
    wb.save(path)
    return path


def _summary_rows(f: dict) -> list[list]:
    """[label, value] rows of a pricing's headline figures."""
    lr, pp = f["loss_ratio_interval"], f["pure_premium_interval"]
    period = f["basis"]["priced_period"]
    gross = f["gross_premium"]
    level = f"{lr['level']:.0%}"
    rows = [
        ["product", f["product_id"], None], ["name", f.get("product_name", ""), None],
        ["priced period", f"{period['start']} to {period['end']}", None],
        ["policies (expected)", f["policies"], COUNT],
        ["pure premium, yuan per policy", f["pure_premium"]["total"], YUAN],
        [f"pure premium {level} interval, lower", pp["lower"], YUAN],
        [f"pure premium {level} interval, upper", pp["upper"], YUAN],
        ["gross premium, yuan per policy",
         gross if not isinstance(gross, list) else "by age band: sheet 'premium table'",
         YUAN if not isinstance(gross, list) else None],
        ["filed premium, yuan per policy", f.get("filed_premium"), YUAN],
        [f"expected loss ratio (at the {f['loss_ratio_basis']})", f["expected_loss_ratio"],
         PERCENT],
        [f"loss ratio {level} interval, lower", lr["lower"], PERCENT],
        [f"loss ratio {level} interval, upper", lr["upper"], PERCENT],
        ["probability the loss ratio is above 100 %", f["prob_loss_ratio_above_100"],
         PERCENT],
        ["target loss ratio", f["basis"]["target_loss_ratio"], PERCENT],
        ["expense ratio", f["basis"]["expense_ratio"], PERCENT],
        ["profit margin", f["basis"]["profit_margin"], PERCENT],
    ]
    eq = f.get("equilibrium") or {}
    if eq.get("premium") is not None:
        rows.append(["equilibrium gross premium, first year, yuan", eq["premium"], YUAN])
    rows += [[f"note {i}", n, None] for i, n in enumerate(f.get("notes", []), 1)]
    return _formatted(rows)


def _formatted(rows: list[list]) -> list[list]:
    """[label, value, format] rows as [label, value] with the format on the value."""
    return [[a, Fmt(v, fmt) if fmt and v is not None else v] for a, v, fmt in rows]


def pricing_sheets(f: dict) -> list[Sheet]:
    """The sheets of ``premium.xlsx`` from a pricing.json's figures: summary, pure
    premium by benefit (the models' and after credibility), the premium table (by the
    product's premium cells, or one row for a flat premium) and, for a cover priced over
    its lifetime, the level and step-rated premiums."""
    sheets: list[Sheet] = [("summary", ["figure", "value"], _summary_rows(f), {})]
    model = f.get("pure_premium_model", {})
    sheets.append(("pure premium by benefit",
                   ["benefit", "pure premium (models), yuan", "pure premium, yuan"],
                   [[b, model.get(b), v] for b, v in f["pure_premium"].items()],
                   {1: YUAN, 2: YUAN}))
    gross = f["gross_premium"]
    if isinstance(gross, list):
        table = [[g["min_age"], g["max_age"], _pre(g.get("preexisting")), g["filed_premium"],
                  g["gross_premium"]] for g in gross]
    else:
        table = [[None, None, "all", f.get("filed_premium"), gross]]
    sheets.append(("premium table", ["min age", "max age", "pre-existing",
                                     "filed premium, yuan", "gross premium, yuan"],
                   table, {3: YUAN, 4: YUAN}))
    sens = year2_sheet(f)
    if sens is not None:
        sheets.append(sens)
    life = f.get("lifetime")
    if life:
        steps = [[s["min_age"], s["max_age"], s["pure_premium"], s["gross_premium"]]
                 for s in life.get("step_rated", [])]
        sheets.append(("step-rated (lifetime)", ["min age", "max age", "pure premium, yuan",
                                                 "gross premium, yuan"], steps,
                       {2: YUAN, 3: YUAN}))
        entries = life.get("entry_ages") or []
        keys = [k for k in (entries[0] if entries else {})
                if all(isinstance(e.get(k), (int, float, type(None))) for e in entries)]
        sheets.append(("level premium by entry age", [k.replace("_", " ") for k in keys],
                       [[e.get(k) for k in keys] for e in entries],
                       {j: _entry_format(k) for j, k in enumerate(keys) if _entry_format(k)}))
    return sheets


def year2_sheet(f: dict) -> Sheet | None:
    """A launch-year price's year-2 sensitivity (``enrolment.assumed.year2_sensitivity``:
    its policies and pure premium had the borrowed year-2 size been another), the size
    priced marked, and the range's source in the last row; None for other prices."""
    a = (f.get("enrolment") or {}).get("assumed") or {}
    rows = a.get("year2_sensitivity")
    if not rows:
        return None
    priced = a.get("year2_to_launch")
    table = [[r["year2_to_launch"], "yes" if r["year2_to_launch"] == priced else None,
              r["policies"], r["renewals"], r["entrants"], r["pure_premium"],
              r.get("fills_size")] for r in rows]
    source = (a.get("sources") or {}).get("year2_sensitivity")
    if source:
        table.append([f"source: {source}"])
    return ("year-2 sensitivity", ["year-2 size (x launch policies)", "priced",
                                   "policies", "renewals", "entrants",
                                   "pure premium, yuan", "mix holds the size"],
            table, {0: RATIO, 2: COUNT, 3: COUNT, 4: COUNT, 5: YUAN})


def _entry_format(key: str) -> str | None:
    """The number format of a lifetime entry-age figure, by its name."""
    if "share" in key or "loss_ratio" in key:
        return PERCENT
    if ("premium" in key and "annuity" not in key) or key in ("pv_claims", "peak_reserve"):
        return YUAN
    return None


def _pre(v) -> str:
    return "all" if v is None else "yes" if v else "no"


def write_pricing_workbook(figures: dict, path: str | Path) -> Path:
    """``premium.xlsx`` of a pricing (see :func:`pricing_sheets`)."""
    return write_workbook(path, pricing_sheets(figures))


def batch_sheets(summary: dict) -> list[Sheet]:
    """The sheets of a claims batch's ``summary.xlsx`` from its summary.json: the
    batch's figures, settlements by status, and rows and amounts by benefit and
    status."""
    scope = summary.get("scope") or {}
    head = [["batch", summary["batch"], None], ["mode", summary["mode"], None],
            ["product", summary["product"], None],
            ["period", f"{scope['first']} to {scope['last']}" if scope.get("first")
             else "", None],
            ["settlements in the data", summary["settlements_in"], COUNT],
            ["paid in this batch, yuan", summary["paid_this_batch_yuan"], YUAN],
            ["ledger entries, yuan", summary.get("ledger_entries_yuan"), YUAN],
            ["the EOB matches the ledger", _covers(summary.get("eob_matches_ledger")), None],
            ["reconciles", _covers(summary.get("reconciles")), None]]
    by_status = [[s, n] for s, n in summary.get("settlements_by_status", {}).items()]
    detail = [[r["benefit"], r["status"], r["rows"], r["eligible_yuan"], r["paid_yuan"],
               r["target_yuan"]] for r in summary.get("by_benefit_and_status", [])]
    sheets = [("batch", ["figure", "value"], _formatted(head), {}),
              ("settlements by status", ["status", "settlements"], by_status, {1: COUNT}),
              ("by benefit and status", ["benefit", "status", "rows", "eligible, yuan",
                                         "paid, yuan", "target, yuan"], detail,
               {2: COUNT, 3: YUAN, 4: YUAN, 5: YUAN})]
    if summary.get("insurers"):          # a co-insured product (docs/claims.md)
        sheets.append(("co-insurers", ["insurer", "name", "quota share", "lead", "entries",
                                       "paid in this batch, yuan"],
                       [[x["id"], x["name"], x["share"], "yes" if x["lead"] else "no",
                         x["entries"], x["paid_this_batch_yuan"]] for x in summary["insurers"]],
                       {2: PERCENT, 4: COUNT, 5: YUAN}))
    return sheets


def write_batch_workbook(summary: dict, path: str | Path) -> Path:
    """``summary.xlsx`` of a claims batch (see :func:`batch_sheets`)."""
    return write_workbook(path, batch_sheets(summary))


def backtest_sheets(result: dict) -> list[Sheet]:
    """The sheets of ``backtest.xlsx`` from a backtest.json: one row per year backtested
    (the price built from the years before it against what the year's enrollees cost,
    the policies predicted and sold, the prediction interval), and per year and benefit
    the priced pure premium, the realised cost per policy and their A/E. A year with no
    realised figure (fewer policies than the report shows) has an empty cell; so do the
    columns of a launch-year row's price at the year-2 size its year shows
    (``at_realised_year2``) on every other row."""
    years = []
    for y in result.get("years", []):
        iv = y["interval"]
        z = y.get("at_realised_year2") or {}
        years.append([y["year"], y.get("product_id"), ", ".join(map(str, y["data_years"])),
                      y["priced_pure_premium"]["total"], y["realised_cost"]["total"],
                      y["ae"]["total"], y["policies_predicted"], y["policies_actual"],
                      y["policies_ae"], iv.get("level"), iv["lower"], iv["upper"],
                      _covers(iv["covers"]), y.get("gross_premium"),
                      y.get("equilibrium_premium"),
                      "yes" if y.get("launch_year_projection") else "no",
                      z.get("year2_to_launch"), z.get("policies"), z.get("fills_size"),
                      z.get("pure_premium"), z.get("ae"), z.get("renewals"),
                      z.get("renewals_actual")])
    header = ["year", "product", "priced from", "priced pure premium, yuan",
              "realised cost per policy, yuan", "A/E", "policies predicted",
              "policies sold", "policies A/E", "interval level", "interval lower, yuan",
              "interval upper, yuan", "interval covers the realised cost",
              "gross premium, yuan", "equilibrium gross premium, yuan",
              "launch-year projection [A]",
              # a launch-year row re-priced at the year-2 size its year shows
              "year-2 size the year shows [A]", "policies expected at that size",
              "the mix holds that size", "pure premium at that size, yuan",
              "A/E at that size", "renewals expected at that size", "renewals sold"]
    formats = {3: YUAN, 4: YUAN, 5: RATIO, 6: COUNT, 7: COUNT, 8: RATIO, 9: PERCENT0,
               10: YUAN, 11: YUAN, 13: YUAN, 14: YUAN, 16: RATIO, 17: COUNT, 19: YUAN,
               20: RATIO, 21: COUNT, 22: COUNT}
    benefits = [[y["year"], b, v, y["realised_cost"].get(b), y["ae"].get(b)]
                for y in result.get("years", []) for b, v in y["priced_pure_premium"].items()]
    notes = [[n] for n in result.get("notes", [])] + [
        [f"{y['year']}: {n}"] for y in result.get("years", []) for n in y.get("notes", [])]
    return [("years", header, years, formats),
            ("by benefit", ["year", "benefit", "priced pure premium, yuan",
                            "realised cost per policy, yuan", "A/E"], benefits,
             {2: YUAN, 3: YUAN, 4: RATIO}),
            ("notes", ["note"], notes, {})]


def _covers(v) -> str:
    return "n/a" if v is None else "yes" if v else "no"


def write_backtest_workbook(result: dict, path: str | Path) -> Path:
    """``backtest.xlsx`` of ``puhui backtest`` (see :func:`backtest_sheets`)."""
    return write_workbook(path, backtest_sheets(result))
