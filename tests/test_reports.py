"""Issue 21, point 2: the reports a regulator reads. Each report (pricing on a small
city, a claims batch, survival) rendered by its command in English and Chinese and read
back: no raw Python value on the page, ``<html lang="zh-CN">`` and Chinese headings for
zh, the banner of synthetic data, the summary box and the assumptions table of the
pricing report; the language changes the page, never the figures (pricing.json and
eob.parquet are byte for byte the same). Where headless Chromium is on PATH a test
draws each page and checks that no table overflows it (skipped otherwise)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import puhui

from puhui.reporting import formats as fm
from puhui.reporting.tables import table

LANGS = ("en", "zh")
CJK = re.compile(r"[\u4e00-\u9fff]")
#: what Python prints and a reader should never see: None, nan, a statsmodels term, a
#: float with 4 or more decimals (not part of a longer token such as a DOI or a date)
RAW = re.compile(r"\bNone\b|\bnan\b|\bNaN\b|\[T\.|\bC\(|(?<![\w./-])\d+\.\d{4,}(?![\w./])")


#: a run of four or more English words (what a sentence left in English looks like; a
#: name such as "Bühlmann-Straub" or "CAR-T", a unit or one word beside Chinese is not)
WORD = r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’\-]*"
ENGLISH_RUN = re.compile(rf"{WORD}(?:[\s,;:()/\"“”]+{WORD}){{3,}}")


def english_runs(html: str) -> list[str]:
    """The runs of 4+ English words a reader of a Chinese page sees: outside <code>,
    <pre>, <title>, scripts, the style and the images, and outside an element marked
    ``lang="en"`` (a quoted source or assumption's comment, kept as the file says it)."""
    import html as h

    text = visible(html)
    text = re.sub(r"<(code|pre|script|title)\b[^>]*>.*?</\1>", " ", text, flags=re.S)
    text = re.sub(r'<(?!html\b)(\w+)\b[^>]*\blang="en"[^>]*>.*?</\1>', " ", text, flags=re.S)
    text = re.sub(r"</(p|li|td|th|h\d|div|caption)>|<br\s*/?>", " | ", text)   # a cell ends a run
    text = h.unescape(re.sub(r"<[^>]+>", " ", text))
    return [" ".join(m.group(0).split()) for m in ENGLISH_RUN.finditer(text)]


def visible(html: str) -> str:
    """The page without its style and embedded images (base64 is not text a reader sees)."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', html)


def raw_values(html: str) -> list[str]:
    text = visible(html)
    return [text[max(m.start() - 40, 0):m.end() + 20] for m in RAW.finditer(text)]


def headings(html: str, level: str = "12") -> list[str]:
    return [re.sub(r"<[^>]+>", "", h) for h in
            re.findall(rf"<h[{level}][^>]*>(.*?)</h[{level}]>", html, re.S)]


@pytest.fixture(scope="module")
def synth_city(tmp_path_factory):
    """A small city made by ``puhui synth`` (so it carries the synthetic marker)."""
    d = tmp_path_factory.mktemp("synth") / "city"
    r = puhui("synth", "--persons", "600", "--years", "2", "--seed", "11", "--out", d)
    assert r.returncode == 0, r.stderr
    return d


def _in_both_languages(tmp_path_factory, name: str, *argv) -> dict:
    """``puhui ARGV --out DIR --lang L`` for each language: {lang: DIR}."""
    out = {}
    for lang in LANGS:
        o = tmp_path_factory.mktemp(f"{name}-{lang}")
        r = puhui(*argv, "--out", o, "--lang", lang)
        assert r.returncode == 0, r.stderr
        out[lang] = o
    return out


@pytest.fixture(scope="module")
def priced(synth_city, tmp_path_factory):
    return _in_both_languages(tmp_path_factory, "price", "price", "--product", "huhuibao-2024",
                              "--data", synth_city, "--seed", "3", "--no-backtest")


@pytest.fixture(scope="module")
def batches(synth_city, tmp_path_factory):
    """A claims batch in each language, each on its own new ledger (DIR/o the output)."""
    out = {}
    for lang in LANGS:
        o = tmp_path_factory.mktemp(f"claims-{lang}")
        r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", synth_city,
                  "--ledger", f"sqlite:///{o / 'l.db'}", "--batch", "b1", "--out", o / "o",
                  "--lang", lang)
        assert r.returncode == 0, r.stderr
        out[lang] = o / "o"
    return out


@pytest.fixture(scope="module")
def survivals(synth_city, tmp_path_factory):
    return _in_both_languages(tmp_path_factory, "survival", "survival", synth_city)


@pytest.fixture(scope="module")
def backtested(synth_city, tmp_path_factory):
    """``puhui backtest`` in both languages (the second year priced from the first)."""
    return _in_both_languages(tmp_path_factory, "backtest", "backtest", "--product",
                              "huhuibao-2024", "--data", synth_city, "--seed", "3")


def test_synth_marks_its_folder_and_leaves_the_manifest_alone(synth_city, priced):
    marker = json.loads((synth_city / "SYNTHETIC.json").read_text(encoding="utf-8"))
    assert marker["synthetic"] is True and marker["seed"] == 11 and marker["persons"] == 600
    m = json.loads((priced["en"] / "manifest.json").read_text())
    assert "SYNTHETIC.json" not in m["inputs"]["data"]          # only the Parquet files


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("report", ["pricing", "claims", "survival", "backtest"])
def test_each_report_has_no_raw_python_value(report, lang, priced, batches, survivals,
                                             backtested):
    folder = {"pricing": priced, "claims": batches, "survival": survivals,
              "backtest": backtested}[report][lang]
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert raw_values(html) == []
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in html
    assert 'id="synthetic"' in html                 # the city came from puhui synth
    hs = headings(html)
    assert len(hs) >= (2 if report == "backtest" else 4)
    if lang == "zh":
        assert all(CJK.search(h) for h in hs), [h for h in hs if not CJK.search(h)]
    else:
        assert not any(CJK.search(h) for h in hs if "惠" not in h)   # (a product's name)
    # every table scrolls inside the page rather than overflow it
    assert html.count("<table") == html.count('<div class="scroll"><table') + html.count(
        '<div class="summary" id="summary"><h2>') + html.count('<div class="summary"><table>')


def test_what_counts_as_an_english_sentence():
    page = ('<p>定价 <b>the mix is</b> fine here</p><p>Bühlmann-Straub 可信度 CAR-T 责任</p>'
            '<code>puhui reproduce manifest dot json</code><span lang="en">a quoted source '
            'left as written</span>')
    assert english_runs(page) == ["the mix is fine here"]


@pytest.mark.parametrize("report", ["pricing", "claims", "survival", "backtest"])
def test_a_chinese_page_has_no_english_sentence(report, priced, batches, survivals,
                                                backtested):
    pages = {"pricing": priced, "claims": batches, "survival": survivals,
             "backtest": backtested}[report]
    html = (pages["zh"] / "report.html").read_text(encoding="utf-8")
    assert english_runs(html) == []
    # the English page of the same report has them (the check reads what it should)
    en = pages["en"]
    assert len(english_runs((en / "report.html").read_text(encoding="utf-8"))) > 3


def test_a_backtest_reading_in_chinese_keeps_its_figures():
    """The engine's own sentence (puhui.pricing.run.backtest_reading) through the
    catalogue's patterns: no English left, every figure of it still there."""
    from puhui.pricing.run import backtest_reading
    from puhui.reporting import gettext_for
    from puhui.reporting.notes import translate_note

    for covers, priced_pp, sold in ((True, 80.0, 950), (False, 130.0, 1100), (None, 0.0, 1000)):
        y = {"year": 2025, "data_years": [2023, 2024], "priced_pure_premium": {"total": priced_pp},
             "realised_cost": {"total": 100.0}, "ae": {"total": 1.25},
             "policies_predicted": 1000, "policies_actual": sold,
             "interval": {"level": 0.9, "lower": 60.0, "upper": 110.0, "covers": covers}}
        en = backtest_reading(y)
        zh = translate_note(en, "zh", gettext_for("zh"))
        assert english_runs(f"<p>{zh}</p>") == [], (en, zh)
        figures = re.findall(r"\d[\d,.]*\d|\d", en)
        assert all(f in zh for f in figures), (figures, zh)


def test_the_backtest_workbook_says_the_figures_of_backtest_json(backtested):
    """backtest.xlsx read back with the zip/XML reader of tests/test_excel.py (not with
    openpyxl, which wrote it): every year's figures in numeric cells, equal to the JSON's."""
    from test_excel import read_xlsx

    r = json.loads((backtested["zh"] / "backtest.json").read_text(encoding="utf-8"))
    wb = read_xlsx(backtested["zh"] / "backtest.xlsx")
    assert list(wb) == ["years", "by benefit", "notes"]
    head, *rows = wb["years"]
    assert len(rows) == len(r["years"]) >= 1
    for row, y in zip(rows, r["years"]):
        got = dict(zip(head, row))
        assert got["year"] == y["year"] and got["priced from"] == ", ".join(map(str, y["data_years"]))
        assert got["priced pure premium, yuan"] == y["priced_pure_premium"]["total"]
        assert got["realised cost per policy, yuan"] == y["realised_cost"]["total"]
        assert got["A/E"] == y["ae"]["total"]
        assert got["policies predicted"] == y["policies_predicted"]
        assert got["policies sold"] == y["policies_actual"]
        assert got["interval lower, yuan"] == y["interval"]["lower"]
        assert got["interval upper, yuan"] == y["interval"]["upper"]
    by = {(int(a), b): (p, q) for a, b, p, q, *_ in wb["by benefit"][1:]}
    for y in r["years"]:
        for b, v in y["priced_pure_premium"].items():
            assert by[(y["year"], b)] == (v, y["realised_cost"].get(b))
    assert [n[0] for n in wb["notes"][1:]][:len(r["notes"])] == r["notes"]


def test_the_language_changes_the_page_not_the_figures(priced, batches, backtested):
    assert (priced["en"] / "pricing.json").read_bytes() == \
        (priced["zh"] / "pricing.json").read_bytes()
    assert (backtested["en"] / "backtest.json").read_bytes() == \
        (backtested["zh"] / "backtest.json").read_bytes()
    en = pd.read_parquet(batches["en"] / "eob.parquet")
    zh = pd.read_parquet(batches["zh"] / "eob.parquet")
    pd.testing.assert_frame_equal(en, zh)


@pytest.mark.parametrize("lang", LANGS)
def test_the_pricing_summary_box_says_the_figures_of_pricing_json(priced, lang):
    f = json.loads((priced[lang] / "pricing.json").read_text())
    html = (priced[lang] / "report.html").read_text(encoding="utf-8")
    box = html[html.index('<div class="summary" id="summary">'):]
    box = box[:box.index("</div>")]
    assert html.index('id="summary"') < html.index("<h2>", html.index("</div>",
                                                                       html.index('id="summary"')))
    gross = f["gross_premium"]
    assert f"{gross:,.2f}" in box
    # a loss ratio as a percentage with one decimal, formatted here by hand
    lr = f["expected_loss_ratio"]
    assert f"{lr * 100:,.1f} %" in box
    iv = f["loss_ratio_interval"]
    assert f"{iv['lower'] * 100:,.1f} %" in box and f"{iv['upper'] * 100:,.1f} %" in box
    assert f"{f['policies']:,}" in box and str(f["data"]["years"][0]) in box
    assert ("模拟数据" if lang == "zh" else "Synthetic data") in html


def test_the_assumptions_are_a_table_citing_files_of_the_repository(priced):
    html = (priced["en"] / "report.html").read_text(encoding="utf-8")
    section = html.split("<h2>Assumptions (with sources)</h2>")[1]
    assert "<pre>" not in section
    rows = re.findall(r"<tr><td>([\w.\-]+)</td><td[^>]*>(.*?)</td><td>(.*?)</td></tr>", section)
    text = Path(__file__).resolve().parents[1] / "actuarial" / "assumptions" / "pricing.toml"
    lines = text.read_text(encoding="utf-8").splitlines()
    # each row's (file:line) is a file of the repository whose line holds that key
    keys = 0
    for key, _value, source in rows:
        m = re.search(r"(actuarial/assumptions/pricing\.toml):(\d+)\)?$", source)
        assert m, source
        assert (Path(__file__).resolve().parents[1] / m[1]).is_file()
        assert lines[int(m[2]) - 1].lstrip().startswith(key.rsplit(".", 1)[1])
        keys += 1
    # as many rows as the file has keys at the start of a line (counted by a plain loop)
    assert keys == sum(1 for ln in lines if re.match(r"^[A-Za-z_]\w*\s*=", ln))
    assert "loads.expense_ratio" in {k for k, _, _ in rows}
    for page in ((priced[lang] / "report.html").read_text(encoding="utf-8") for lang in LANGS):
        assert "DOMAIN.md" not in page and "CONTRACT.md" not in page and "../shared" not in page


def test_the_coefficients_read_as_labels_with_relativities(priced):
    html = (priced["zh"] / "report.html").read_text(encoding="utf-8")
    section = html.split("<h3>模型系数（相对系数、标准误）</h3>")[1].split("</table>")[0]
    head = re.findall(r"<th>(.*?)</th>", section)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in
            re.findall(r"<tr>(.*?)</tr>", section)[1:]]
    i_term, i_rel, i_coef = head.index("变量"), head.index("相对系数 exp(系数)"), head.index("系数")
    assert any(r[i_term] == "性别: 女" for r in rows)
    for r in rows:          # the relativity shown is exp of the coefficient shown
        coef, rel = float(r[i_coef].replace(",", "")), float(r[i_rel].replace(",", ""))
        assert abs(rel - 2.718281828 ** coef) <= 0.0006 * 2.718281828 ** coef + 0.0006


def test_no_marker_no_banner(small_city_dir, tmp_path):
    """A folder not made by ``puhui synth`` (no marker) gets no banner."""
    r = puhui("survival", small_city_dir, "--out", tmp_path / "s", "--max-people", "100")
    assert r.returncode == 0, r.stderr
    assert 'id="synthetic"' not in (tmp_path / "s" / "report.html").read_text(encoding="utf-8")


def test_formats_by_hand():
    assert [fm.count(305469), fm.yuan(278000), fm.pct(0.9658), fm.ratio(0.99284)] == \
        ["305,469", "278,000.00", "96.6 %", "0.993"]
    assert [fm.count(None), fm.yuan(float("nan")), fm.pct(float("inf"))] == ["-", "-", "-"]
    assert fm.term_label("C(retired)[T.1]", "zh") == "退休: 退休"
    assert fm.term_label("C(insutype)[T.390]") == "scheme: resident (390)"
    assert fm.term_label("C(age_band)[T.61-70]", "zh") == "年龄段: 61-70岁"


def test_a_table_totals_its_amounts_and_shows_no_nan():
    t = pd.DataFrame({"benefit": ["a", "b", "c"], "people": [1200, 34, 5],
                      "paid (yuan)": [1000.5, 2000.25, float("nan")],
                      "loss_ratio": [0.5, None, 1.25]})
    html = table(t, kinds={"paid (yuan)": "yuan"}, totals=("people", "paid (yuan)"))
    total = re.search(r'<tr class="total">(.*?)</tr>', html)[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", total)
    assert cells == ["total", "1,239", "3,000.75", ""]       # 1200 + 34 + 5; NaN skipped
    assert "nan" not in html and "None" not in html and "125.0 %" in html
    assert html.startswith('<div class="scroll">')


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


#: added to a copy of a page: the body records how many tables reach past the page's
#: right edge (the 1,050 px column) once laid out, and how many sit in a container they
#: are wider than (a reader would have to scroll it sideways: a screenshot or a print
#: shows it cut)
PROBE = """<script>
window.addEventListener('load', function () {
  var edge = document.body.getBoundingClientRect().right + 1, n = 0, s = 0;
  document.querySelectorAll('table').forEach(function (t) {
    var box = t.parentElement.classList.contains('scroll') ? t.parentElement : t;
    if (box.getBoundingClientRect().right > edge) { n += 1; }
    if (box !== t && box.scrollWidth > box.clientWidth + 1) { s += 1; }
  });
  document.body.setAttribute('data-overflowing', String(n));
  document.body.setAttribute('data-scrolling', String(s));
});
</script>"""


@pytest.mark.skipif(_browser() is None, reason="headless Chromium is not on PATH")
@pytest.mark.parametrize("lang", LANGS)
def test_no_table_overflows_the_page_in_a_browser(lang, priced, batches, survivals, backtested,
                                                 tmp_path):
    """Headless Chromium (as root it needs --no-sandbox) lays out each page in a window
    of 1,100 px (the 1,050 px column and its margins): no table's box reaches past the
    body's right edge, and a screenshot is written."""
    browser = _browser()
    for name, folder in (("pricing", priced), ("claims", batches), ("survival", survivals),
                         ("backtest", backtested)):
        page = tmp_path / f"{name}-{lang}.html"
        html = (folder[lang] / "report.html").read_text(encoding="utf-8")
        page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        shot = tmp_path / f"{name}-{lang}.png"
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--window-size=1100,1400"]
        subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], check=True,
                       capture_output=True, timeout=120)
        assert shot.stat().st_size > 1000
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True,
                             capture_output=True, text=True, timeout=120).stdout
        assert 'data-overflowing="0"' in dom, (name, lang)
        assert 'data-scrolling="0"' in dom, (name, lang)
