"""Excel workbooks for finance teams (issue 21, point 3): `puhui price` writes
OUT/premium.xlsx and `puhui claims run` OUT/summary.xlsx. The truth is the JSON file
each command writes beside it, and the workbook is read back here with zipfile and
ElementTree (not with openpyxl, which wrote it): every figure in a numeric cell of its
own, equal to the JSON's."""

import json
import subprocess
import sys
import zipfile
import xml.etree.ElementTree as ET

import pytest

from puhui.excel import write_batch_workbook, write_pricing_workbook

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
      "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}
REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def read_xlsx(path) -> dict[str, list[list]]:
    """Each sheet's rows of values (numbers as float, text as str, empty as None)."""
    z = zipfile.ZipFile(path)
    shared = []
    if "xl/sharedStrings.xml" in z.namelist():
        for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", NS):
            shared.append("".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t")))
    rels = {r.get("Id"): r.get("Target") for r in
            ET.fromstring(z.read("xl/_rels/workbook.xml.rels")).iter(f"{REL}Relationship")}
    out = {}
    for sheet in ET.fromstring(z.read("xl/workbook.xml")).iter(f"{{{NS['m']}}}sheet"):
        target = rels[sheet.get(f"{{{NS['r']}}}id")].lstrip("/").removeprefix("xl/")
        rows = []
        for row in ET.fromstring(z.read(f"xl/{target}")).iter(f"{{{NS['m']}}}row"):
            cells = {}
            for c in row.findall("m:c", NS):
                col = "".join(ch for ch in c.get("r") if ch.isalpha())
                j = sum((ord(ch) - 64) * 26 ** k for k, ch in enumerate(reversed(col))) - 1
                v, kind = c.find("m:v", NS), c.get("t")
                if kind == "s":
                    cells[j] = shared[int(v.text)]
                elif kind == "inlineStr":
                    cells[j] = "".join(t.text or "" for t in c.iter(f"{{{NS['m']}}}t"))
                elif kind == "str":
                    cells[j] = v.text
                elif kind == "b":
                    cells[j] = v.text == "1"
                else:
                    cells[j] = None if v is None else float(v.text)
            rows.append([cells.get(j) for j in range(max(cells, default=-1) + 1)])
        out[sheet.get("name")] = rows
    return out


def _by_label(rows) -> dict:
    return {r[0]: r[1] if len(r) > 1 else None for r in rows[1:]}


def test_premium_workbook_of_a_real_pricing(priced_small_city):
    _, out, _ = priced_small_city
    f = json.loads((out / "pricing.json").read_text(encoding="utf-8"))
    wb = read_xlsx(out / "premium.xlsx")
    assert list(wb)[:3] == ["summary", "pure premium by benefit", "premium table"]
    s = _by_label(wb["summary"])
    assert s["product"] == f["product_id"]
    assert s["pure premium, yuan per policy"] == f["pure_premium"]["total"]
    assert s["gross premium, yuan per policy"] == f["gross_premium"]
    assert s["filed premium, yuan per policy"] == f["filed_premium"]
    assert s["expected loss ratio (at the filed premium)"] == f["expected_loss_ratio"]
    assert s["loss ratio 90% interval, lower"] == f["loss_ratio_interval"]["lower"]
    assert s["loss ratio 90% interval, upper"] == f["loss_ratio_interval"]["upper"]
    assert [s[f"note {i}"] for i in range(1, len(f["notes"]) + 1)] == f["notes"]
    benefits = wb["pure premium by benefit"]
    assert {r[0]: r[2] for r in benefits[1:]} == f["pure_premium"]
    assert {r[0]: r[1] for r in benefits[1:]} == f["pure_premium_model"]
    assert wb["premium table"][1] == [None, None, "all", f["filed_premium"], f["gross_premium"]]


def test_premium_table_by_cell_and_lifetime_sheets(tmp_path):
    """A rated product's premium cells and a lifetime section, from figures written by
    hand (the shape pricing.json has: docs/pricing.md)."""
    f = {"product_id": "x", "product_name": "X", "policies": 1200,
         "basis": {"priced_period": {"start": "2026-01-01", "end": "2026-12-31"},
                   "target_loss_ratio": 0.85, "expense_ratio": 0.1, "profit_margin": 0.05},
         "pure_premium": {"a": 500.25, "total": 500.25}, "pure_premium_model": {"a": 510.0,
                                                                              "total": 510.0},
         "pure_premium_interval": {"level": 0.9, "lower": 400.0, "upper": 600.0},
         "gross_premium": [
             {"min_age": 60, "max_age": 69, "preexisting": None, "filed_premium": 600.0,
              "gross_premium": 588.53},
             {"min_age": 70, "max_age": 80, "preexisting": True, "filed_premium": 1100.0,
              "gross_premium": None}],
         "filed_premium": 850.0, "expected_loss_ratio": 0.7, "loss_ratio_basis": "filed premium",
         "loss_ratio_interval": {"level": 0.9, "lower": 0.5, "upper": 0.95},
         "prob_loss_ratio_above_100": 0.02, "notes": [],
         "lifetime": {"step_rated": [{"min_age": 60, "max_age": 69, "pure_premium": 300.0,
                                      "gross_premium": 352.94}],
                      "entry_ages": [{"entry_age": 60, "level_gross_premium": 858.55,
                                      "reserve_by_year": [1.0, 2.0]}]}}
    wb = read_xlsx(write_pricing_workbook(f, tmp_path / "p.xlsx"))
    assert wb["premium table"][1:] == [[60.0, 69.0, "all", 600.0, 588.53],
                                       [70.0, 80.0, "yes", 1100.0]]
    assert _by_label(wb["summary"])["gross premium, yuan per policy"].startswith("by age band")
    assert wb["step-rated (lifetime)"][1] == [60.0, 69.0, 300.0, 352.94]
    assert wb["level premium by entry age"] == [["entry age", "level gross premium"],
                                                [60.0, 858.55]]


def test_batch_summary_workbook(small_city_dir, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "puhui", "claims", "run", "--product",
                        "huhuibao-2025", "--data", str(small_city_dir), "--ledger",
                        f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b", "--out", str(out),
                        "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    wb = read_xlsx(out / "summary.xlsx")
    s = _by_label(wb["batch"])
    assert s["paid in this batch, yuan"] == summary["paid_this_batch_yuan"]
    assert s["settlements in the data"] == summary["settlements_in"]
    assert {r[0]: r[1] for r in wb["settlements by status"][1:]} == \
        summary["settlements_by_status"]
    detail = [[x["benefit"], x["status"], x["rows"], x["eligible_yuan"], x["paid_yuan"],
               x["target_yuan"]] for x in summary["by_benefit_and_status"]]
    assert wb["by benefit and status"][1:] == detail
    # the paid column sums to the batch's payout (a spreadsheet's SUM gives the same)
    paid = sum(x[4] for x in wb["by benefit and status"][1:])
    assert paid == pytest.approx(summary["paid_this_batch_yuan"], abs=0.005)


def test_formats_are_yuan_and_percent(tmp_path):
    from openpyxl import load_workbook

    p = write_batch_workbook({"batch": "b", "mode": "claimed", "product": "x",
                              "settlements_in": 3, "paid_this_batch_yuan": 1234.5,
                              "settlements_by_status": {"paid": 3},
                              "by_benefit_and_status": []}, tmp_path / "b.xlsx")
    ws = load_workbook(p)["batch"]
    cell = {r[0].value: r[1] for r in ws.iter_rows(min_row=2)}
    assert cell["paid in this batch, yuan"].number_format == "#,##0.00"
    assert cell["settlements in the data"].number_format == "#,##0"
