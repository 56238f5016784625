"""Hostile review of session 20 (issue 21: the Python API, the reports, the package).

Each test is a way a careless or hostile user broke the surface: a traceback where a
message was due, a silent nonsense figure, English left on a Chinese page. The truth is
built by hand (a plain frame, the files' own values, the command line's ranges), never
drawn from the code under test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

import puhui
from puhui.errors import InputError

P = "huhuibao-2025"


@pytest.fixture(scope="module")
def small(small_city_dir):
    return puhui.read_fund(small_city_dir)


@pytest.fixture(scope="module")
def paid_base(small):
    """What the API pays on the small city as read (the reference the odd frames of the
    same values must reproduce)."""
    eob = puhui.adjudicate(small.settlements, small.policies, P, lines=small.lines)
    return eob.groupby("setl_id")["payout_amt"].sum()


def _same_payouts(eob, paid_base):
    got = eob.groupby("setl_id")["payout_amt"].sum()
    pd.testing.assert_series_equal(got.sort_index(), paid_base.sort_index())


# --- frames as pandas really gives them ---------------------------------------------

def test_dates_as_python_dates_are_read_not_a_traceback(small, paid_base):
    """A Parquet date column (date32: DuckDB, Spark) read with pandas is an object
    column of datetime.date; the contract accepts Parquet dates. It was an
    ArrowTypeError ("Expected bytes, got a 'datetime.date' object")."""
    st = small.settlements.assign(setl_time=small.settlements["setl_time"].dt.date)
    pol = small.policies.assign(start_date=small.policies["start_date"].dt.date,
                                end_date=small.policies["end_date"].dt.date)
    assert isinstance(st["setl_time"].iloc[0], dt.date)
    eob = puhui.adjudicate(st, pol, P, lines=small.lines)
    _same_payouts(eob, paid_base)


def test_decimal_amounts_are_accepted_as_docs_api_md_says(small, paid_base):
    """docs/api.md: "`Decimal` amounts are accepted". They were an ArrowTypeError."""
    st = small.settlements.copy()
    for c in ("medfee_sumamt", "psn_part_amt"):
        st[c] = [Decimal(f"{v:.2f}") for v in st[c]]
    eob = puhui.adjudicate(st, small.policies, P, lines=small.lines)
    _same_payouts(eob, paid_base)


def test_decimal_amounts_with_three_decimals_are_refused_by_the_fen_rule(small):
    st = small.settlements.copy()
    st["medfee_sumamt"] = [Decimal(f"{v:.2f}") + Decimal("0.001") for v in st["medfee_sumamt"]]
    with pytest.raises(InputError, match="two decimals"):
        puhui.adjudicate(st, small.policies, P)


def test_an_id_column_of_numbers_in_an_object_column_is_a_message(small):
    """psn_no as Python ints in an object column (a merge with an int key): the 'text'
    rule's message, not an ArrowTypeError."""
    st = small.settlements.copy()
    st["psn_no"] = pd.Series([int(s[1:]) for s in st["psn_no"]], dtype=object)
    with pytest.raises(InputError, match="psn_no"):
        puhui.adjudicate(st, small.policies, P)


def test_no_settlements_is_an_empty_eob_not_a_traceback(small):
    """An empty frame (a filter that kept nothing) was "ValueError: No objects to
    concatenate"; nothing to adjudicate is an EOB without rows, with its columns."""
    eob = puhui.adjudicate(small.settlements.iloc[:0], small.policies, P)
    assert len(eob) == 0
    assert eob.columns.tolist() == ["setl_id", "psn_no", "policy_no", "benefit",
                                    "eligible_amt", "deductible_amt", "ratio",
                                    "payout_amt", "status", "reason"]


@pytest.mark.parametrize("bad", ["records", "series"])
def test_settlements_that_are_not_a_frame_are_a_message(small, bad):
    """A list of records or a single row was an AttributeError / TypeError."""
    st = small.settlements
    value = st.to_dict("records") if bad == "records" else st.iloc[0]
    with pytest.raises(InputError, match="DataFrame"):
        puhui.adjudicate(value, small.policies, P)


def test_fund_people_takes_one_id_as_text(small):
    """fund.people("P...") was "TypeError: Index(...) must be called with a
    collection"; one id is the person."""
    pid = str(small.persons["psn_no"].iloc[0])
    one = small.people(pid)
    assert one.persons["psn_no"].astype(str).tolist() == [pid]


# --- pay_direct ----------------------------------------------------------------------

def test_pay_direct_with_a_frame_of_two_rows_is_a_message(small, tmp_path):
    """A DataFrame given where one settlement is due was "ValueError: 2"."""
    url = f"sqlite:///{tmp_path}/l.db"
    puhui.ClaimsBatch(P, url, "b").run(small.head(50))
    with pytest.raises(InputError, match="one settlement"):
        puhui.pay_direct(P, url, small.settlements.head(2))


# --- the estimators check their settings as the command line does -------------------

@pytest.mark.parametrize("kw", [{"seed": "x"}, {"seed": -1}, {"seed": 1.5},
                                {"policies": -5}, {"policies": 0}, {"policies": True}])
def test_pricer_settings_out_of_the_commands_range_are_refused(small, kw):
    """`puhui price` takes --seed 0..2^32-1 and --policies >= 1; the Pricer took
    policies=-5 silently and seed="x" as a TypeError."""
    with pytest.raises(InputError, match=next(iter(kw))):
        puhui.Pricer(P, **kw).fit(small.head(50))


@pytest.mark.parametrize("n", [0, -1, 99, 2.5])
def test_survival_max_people_below_the_commands_range_is_refused(small, n):
    """`puhui survival --max-people` is >= 100; 0 was a lifelines ConvergenceError and
    -1 "ValueError: negative dimensions"."""
    with pytest.raises(InputError, match="max_people"):
        puhui.Survival(max_people=n).fit(small.head(50))


def test_a_pricer_refusal_does_not_name_a_temporary_folder(small):
    """A Fund that breaks a rule: the message told the user to run `puhui validate
    /tmp/puhui-pricer-.../fund`, a folder removed by then."""
    with pytest.raises(InputError) as e:
        puhui.Pricer(P).fit(small.head(0))
    assert "puhui-pricer-" not in str(e.value)
    assert "the Fund" in str(e.value)


# --- reports and workbooks -----------------------------------------------------------

def test_the_no_events_caveat_is_in_chinese_on_a_chinese_page():
    """A benefit with no events prices at 0 with a caveat (pricing.json's notes); on a
    --lang zh page it stayed English, the one caveat a reader must not miss."""
    from test_reports import english_runs

    from puhui.reporting import gettext_for
    from puhui.reporting.notes import translate_note

    en = ("special_drugs: no events in the data, so no experience to price on (pure "
          "premium 0); supply an external assumption before using this price")
    zh = translate_note(en, "zh", gettext_for("zh"))
    assert english_runs(f"<p>{zh}</p>") == [], zh
    assert "0" in zh


def test_the_batch_workbook_says_yes_or_no_not_python_true():
    """summary.xlsx showed the reconciliation as the text 'True' (str of a Python
    bool); the pricing workbook says yes / no."""
    from puhui.excel import batch_sheets

    summary = {"batch": "b", "mode": "claimed", "product": P, "scope": {},
               "settlements_in": 3, "paid_this_batch_yuan": 1.0, "ledger_entries_yuan": 1.0,
               "eob_matches_ledger": True, "reconciles": False}
    rows = batch_sheets(summary)[0][2]
    values = {r[0]: (r[1].value if hasattr(r[1], "value") else r[1]) for r in rows}
    assert values["the EOB matches the ledger"] == "yes"
    assert values["reconciles"] == "no"
    assert values["period"] != "None to None"


# --- left open -----------------------------------------------------------------------

def test_fen_as_floats_are_not_paid_as_yuan(small):
    """Fen held as floats (amounts x 100) passed every rule when no settlement lines tie
    them to a total, and the API paid 100 times the yuan figure. Refused since session 23
    (every amount whole and a median cost above 10,000 yuan); the same data in yuan, and
    a few whole-yuan settlements, pass."""
    money = ["medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
             "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay",
             "maf_pay", "psn_part_amt"]
    st = small.settlements.assign(**{c: small.settlements[c] * 100 for c in money})
    with pytest.raises(InputError, match="look like fen held as floats"):
        puhui.adjudicate(st, small.policies, P)
    assert not (small.settlements[money].to_numpy() % 1 == 0).all()     # yuan carry fen
    whole = small.settlements.head(30).assign(
        **{c: small.settlements[c].head(30).round(0) for c in money})
    with pytest.warns(UserWarning, match="LINES_NOT_GIVEN"):      # 30 rows: too few to judge
        assert len(puhui.adjudicate(whole, small.policies, P))


# --- ClaimsBatch speaks of its own parameters ----------------------------------------

@pytest.mark.parametrize("period", [("2025-12-31", "2025-01-01"), "2025-12-31:2025-01-01"])
def test_a_reversed_period_is_refused_either_way_it_is_given(small, tmp_path, period):
    """A pair (TO, FROM) bypassed --period's check and ended in a misleading message
    about every settlement lying outside the period; the string form was refused."""
    with pytest.raises(InputError, match="ends before it starts"):
        puhui.ClaimsBatch(P, f"sqlite:///{tmp_path}/l.db", "b", period=period).run(
            small.head(20))


@pytest.mark.parametrize("period", [("2025-01-01", "soon"), ("2025-01-01",), 2025])
def test_a_period_that_is_not_two_dates_is_a_message(small, tmp_path, period):
    with pytest.raises(InputError, match="period"):
        puhui.ClaimsBatch(P, f"sqlite:///{tmp_path}/l.db", "b", period=period).run(
            small.head(20))


def test_batch_messages_name_the_apis_parameters_not_the_commands_options(small, tmp_path):
    """The ledger's refusal of a batch whose data lacks settlements it paid told an API
    user to pass --period / --complete; the parameters are period= and complete=."""
    url = f"sqlite:///{tmp_path}/l.db"
    one = small.head(300)
    first = puhui.ClaimsBatch(P, url, "b1").run(one)
    assert first.paid_ > 0                      # something paid, to be missing later
    st = one.settlements.assign(setl_id="X" + one.settlements["setl_id"],
                                refund_of="X" + one.settlements["refund_of"])
    lines = one.lines.assign(setl_id="X" + one.lines["setl_id"])
    with pytest.raises(InputError) as e:
        puhui.ClaimsBatch(P, url, "b2").run(st, one.policies, lines, one.persons)
    text = str(e.value)
    assert "--" not in text and "complete=True" in text and "period=" in text
    with pytest.raises(InputError, match="^batch_id:"):
        puhui.ClaimsBatch(P, url, "two words").run(one)


# --- survival on a small fund ------------------------------------------------------

def test_survival_on_a_small_valid_city_does_not_stop_at_a_diagnostic(tmp_path):
    """`puhui synth --persons 600 --years 2 --seed 3` is valid data; `puhui survival`
    on it (and Survival().fit) stopped with lifelines' ConvergenceError: one window of
    the first-admission proportional-hazards check had its few events separated by a
    covariate. A window without an estimate is left out, as one with too few events."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    write_fund(synth_city(600, 2, seed=3), tmp_path)
    fit = puhui.Survival().fit(tmp_path)
    deaths = int(pd.read_parquet(tmp_path / "persons.parquet")["death_date"].notna().sum())
    assert int(fit.actual_to_expected_["deaths"].sum()) <= deaths
    assert fit.years_ == (2024, 2025)


# --- a Fund written, a cut of synthetic data ------------------------------------------

def test_fund_write_leaves_no_stale_lines_of_an_earlier_fund(small, tmp_path):
    """A Fund without lines written into a folder that held another fund's lines left
    those lines there: read back, this fund had the other's lines (refused here, but
    lines matching its settlement ids would have been paid as its own)."""
    small.write(tmp_path)
    no_lines = puhui.Fund(small.persons, small.policies, small.settlements, None)
    no_lines.write(tmp_path)
    assert not (tmp_path / "settlement_lines.parquet").exists()
    assert puhui.read_fund(tmp_path).lines is None


@pytest.fixture(scope="module")
def marked(small_city_dir, tmp_path_factory):
    """A copy of the small city with the mark `puhui synth` leaves (SYNTHETIC.json)."""
    import json
    import shutil

    d = tmp_path_factory.mktemp("marked") / "city"
    shutil.copytree(small_city_dir, d)
    (d / "SYNTHETIC.json").write_text(json.dumps({"generator": "puhui synth", "seed": 11}),
                                      encoding="utf-8")
    return puhui.read_fund(d)


def test_a_cut_of_synthetic_data_keeps_its_mark(marked, tmp_path):
    """fund.head(n) of a synthetic city (every example of docs/api.md) lost the
    folder, so its reports had no banner of synthetic data; written, the cut kept no
    SYNTHETIC.json either."""
    cut = marked.head(30)
    cut.write(tmp_path)
    assert (tmp_path / "SYNTHETIC.json").read_bytes() == \
        (marked.directory / "SYNTHETIC.json").read_bytes()
    batch = puhui.ClaimsBatch(P, f"sqlite:///{tmp_path}/l.db", "b").run(cut)
    html = batch.report(tmp_path / "b.html", lang="zh").read_text(encoding="utf-8")
    assert "模拟数据" in html
    plain = puhui.Fund(cut.persons, cut.policies, cut.settlements, cut.lines)
    html = batch.run(plain).report(tmp_path / "p.html", lang="zh").read_text(encoding="utf-8")
    assert "模拟数据" not in html            # frames made by hand: no mark, no banner


@pytest.fixture(scope="module")
def pricer(marked):
    return puhui.Pricer(P, seed=1).fit(marked.head(300))


def test_a_pricer_writes_its_report_in_chinese_with_the_banner(pricer, tmp_path):
    """Pricer.report took no lang (ClaimsBatch.report and Survival.report do;
    `puhui price --lang zh`), and a Fund priced from memory lost the banner."""
    html = pricer.report(tmp_path / "r.html", lang="zh").read_text(encoding="utf-8")
    assert '<html lang="zh' in html and "模拟数据" in html
    pricer.write(tmp_path / "out", lang="zh")
    assert "模拟数据" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_what_if_takes_numpy_numbers_and_names_its_own_parameter(pricer):
    """deductible=np.int64(20000) (a value read from a frame) was refused as not a
    number while np.float64 passed; a drop of drugs on a benefit without lines spoke
    of --drop-drug."""
    import numpy as np

    a = pricer.what_if("hospital", deductible=np.int64(20000))
    b = pricer.what_if("hospital", deductible=20000.0)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(InputError) as e:
        pricer.what_if("hospital", drop_drugs=["SD-01"])
    assert "--drop-drug" not in str(e.value) and "drop_drugs" in str(e.value)


# --- a broken basis --------------------------------------------------------------------

@pytest.mark.parametrize("line, expect", [
    ("expense_ratio = 1.5", "expense_ratio"),
    ("expense_ratio = 0.97", "target loss ratio"),
    ('expense_ratio = "12%"', "expense_ratio"),
    ("simulations = 0", "simulations"),
    ("medical_inflation = 5", "medical_inflation"),
])
def test_an_assumptions_file_with_impossible_loads_is_refused(tmp_path, line, expect):
    """PUHUI_ACTUARIAL or --assumptions at a file with expense_ratio = 1.5 priced with
    exit 0: target loss ratio -0.53, gross premium -148.71 yuan."""
    import re

    from puhui.basis import actuarial_dir
    from puhui.pricing.premium import load_assumptions

    key = line.split(" ")[0]
    text = (actuarial_dir() / "assumptions" / "pricing.toml").read_text(encoding="utf-8")
    text, n = re.subn(rf"(?m)^{key} = .*$", line, text)
    assert n == 1
    (tmp_path / "a.toml").write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=expect):
        load_assumptions(tmp_path / "a.toml")


# --- the elderly cover's Chinese page --------------------------------------------------

@pytest.fixture(scope="module")
def elderly_zh(small_city_dir, tmp_path_factory):
    """The elderly cover priced on the small city, its report in Chinese."""
    p = puhui.Pricer("elderly-medical-60-80", seed=1).fit(small_city_dir)
    out = tmp_path_factory.mktemp("elderly")
    return p, p.report(out / "r.html", lang="zh").read_text(encoding="utf-8")


def _english_outside_names(html: str, product) -> list[str]:
    from test_reports import english_runs

    return [r for r in english_runs(html) if r not in product.name]


def test_the_elderly_covers_notes_are_in_chinese(elderly_zh):
    """The notes of a cover priced on another line's policies and of benefits priced
    jointly stayed English on a --lang zh page."""
    p, html = elderly_zh
    notes = [n for n in p.pricing_["notes"]
             if n.startswith(("the data's policies are of", "hospital_in_list+"))]
    assert notes, p.pricing_["notes"]                 # the notes this test is about
    left = _english_outside_names(html, p.product_)
    assert not [r for r in left if "priced jointly" in r or "policies are of" in r], left


def test_the_elderly_covers_chinese_page_has_no_english_sentences(elderly_zh):
    p, html = elderly_zh
    assert _english_outside_names(html, p.product_) == []


def test_the_elderly_covers_chinese_tables_have_chinese_headers_and_title(elderly_zh):
    """Headers of the lifetime and drug-agreement tables ("entry 60", "PV of claims",
    "comparator median months") and the product's English gloss were English on a
    --lang zh page (session 20)."""
    import html as h
    import re

    p, html = elderly_zh
    heads = {h.unescape(x) for x in re.findall(r"<th>([^<]*)</th>", html)}
    symbols = {"xi", "alpha", "exp", "A", "E"}
    english = [x for x in heads if set(re.findall(r"[A-Za-z]{2,}", x)) - symbols]
    assert not english, english
    title = re.search(r"<h1>([^<]*)</h1>", html)[1]
    assert "elderly medical cover" not in title and "银龄医疗保险" in title


def test_a_privacy_rule_by_column_name_reads_as_english(small):
    """"privacy 'anonymised data: no a person's name'" / "no an address"."""
    st = small.settlements.assign(addr="x", contact_name="y")
    with pytest.raises(InputError) as e:
        puhui.adjudicate(st, small.policies, P)
    text = str(e.value)
    assert "no address (by its column name)" in text
    assert "no a " not in text and "no an " not in text


# --- a product id in disguise -----------------------------------------------------------

@pytest.mark.parametrize("disguise", ["huhuibao-2025 ", "HUHUIBAO-2025", " Huhuibao-2025"])
def test_policies_naming_the_product_with_other_spaces_or_case_are_refused(small, disguise):
    """40 policies with product_id 'huhuibao-2025 ' (a spreadsheet's export) were taken
    for another product's: their holders denied NO_POLICY and the total paid fell from
    49,934.34 to 40,539.73 yuan on a 600-person city, silently."""
    pol = small.policies.copy()
    mine = pol.index[pol["product_id"] == P][:5]
    assert len(mine) == 5
    pol.loc[mine, "product_id"] = disguise
    with pytest.raises(InputError, match=r"5 policies name huhuibao-2025 with other spaces"):
        puhui.adjudicate(small.settlements, pol, P)


def test_the_command_refuses_them_too(small_city_dir, tmp_path):
    import shutil

    from tests.conftest import puhui as run_puhui

    d = tmp_path / "city"
    shutil.copytree(small_city_dir, d)
    pol = pd.read_parquet(d / "policies.parquet")
    mine = pol.index[pol["product_id"] == P][:3]
    pol.loc[mine, "product_id"] = P.upper()
    pol.to_parquet(d / "policies.parquet", index=False)
    r = run_puhui("claims", "run", "--product", P, "--data", d, "--ledger",
                  f"sqlite:///{tmp_path}/l.db", "--batch", "b", "--out", tmp_path / "o")
    assert r.returncode == 2 and "3 policies name huhuibao-2025" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --- a price on a tiny cut ---------------------------------------------------------------

def test_a_renewal_model_predicts_a_code_its_fit_never_saw():
    """Pricer on the sample's first 10 persons stopped with a PatsyError ("value '310'
    does not match any of the expected levels"): the renewal model was fitted on
    residents only and asked for an employee's cell. A code the fit had no cell of is
    predicted as the reference level, as an unseen age band already was."""
    from puhui.pricing.enrolment import LogisticCells

    cells = pd.DataFrame({"insutype": ["390", "390"], "gender": ["1", "2"],
                          "successes": [3, 6], "trials": [10, 10]})
    m = LogisticCells(("insutype", "gender")).fit_cells(cells)
    got = m.predict(pd.DataFrame({"insutype": ["310", "390"], "gender": ["2", "2"]}))
    assert got == pytest.approx([0.6, 0.6])           # 6 of 10: the saturated fit


def test_forgetting_the_lines_is_not_reported_as_not_covered(small):
    """Adjudicating without lines paid the line benefits nothing with reason NOT_COVERED,
    as if the product did not cover the drugs (on the sample's first 6,000 persons
    special_drugs fell from 21,898.49 yuan to 0). They now read LINES_NOT_GIVEN (session
    23): the settlements the lines pay, and only where the benefit applies."""
    eob = puhui.adjudicate(small.settlements, small.policies, P)
    with_lines = puhui.adjudicate(small.settlements, small.policies, P, lines=small.lines)
    paid = with_lines[(with_lines["benefit"] == "special_drugs")
                      & (with_lines["payout_amt"] > 0)]["setl_id"]
    assert len(paid)                                   # the cut has special-drug payouts
    lost = eob[(eob["benefit"] == "special_drugs") & eob["setl_id"].isin(paid)]
    assert not (lost["reason"] == "NOT_COVERED").any()
    assert (lost["reason"] == "LINES_NOT_GIVEN").all() and (lost["payout_amt"] == 0).all()
    # benefits that do not read lines keep their reasons, and with lines nothing says so
    assert (eob[eob["benefit"] == "hospital"]["reason"].to_numpy()
            == with_lines[with_lines["benefit"] == "hospital"]["reason"].to_numpy()).all()
    assert not (with_lines["reason"] == "LINES_NOT_GIVEN").any()


# --- a batch on data without settlement lines (session 20, after review 20) -------------

def test_a_batch_without_lines_says_so_and_a_later_batch_with_them_pays_what_is_due(
        small_city_dir, tmp_path):
    """`claims run` on a folder without settlement_lines.parquet paid the line benefits
    nothing (reason NOT_COVERED) and said nothing. The lines file is optional in the
    contract, so the batch still runs, but summary.json and stderr warn; a later batch on
    the data with its lines pays what was due, so the ledger's total is the total of one
    batch with lines (read with SQL, each entry summed)."""
    import json
    import shutil
    import sqlite3

    from conftest import puhui as cli

    no_lines = tmp_path / "no_lines"
    shutil.copytree(small_city_dir, no_lines)
    (no_lines / "settlement_lines.parquet").unlink()
    two, one = tmp_path / "two.db", tmp_path / "one.db"
    r = cli("claims", "run", "--product", P, "--data", no_lines, "--ledger",
            f"sqlite:///{two}", "--batch", "b1", "--out", tmp_path / "o1")
    assert r.returncode == 0, r.stderr
    assert "warning: the data holds no settlement lines" in r.stderr
    warned = json.loads((tmp_path / "o1" / "summary.json").read_text())["warnings"]
    assert len(warned) == 1 and "special_drugs" in warned[0]
    r = cli("claims", "run", "--product", P, "--data", small_city_dir, "--ledger",
            f"sqlite:///{two}", "--batch", "b2", "--out", tmp_path / "o2")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["warnings"] == []
    r = cli("claims", "run", "--product", P, "--data", small_city_dir, "--ledger",
            f"sqlite:///{one}", "--batch", "b1", "--out", tmp_path / "o3")
    assert r.returncode == 0, r.stderr

    def net(db):
        con = sqlite3.connect(db)
        try:
            return dict(con.execute("SELECT benefit, SUM(payout_fen) FROM payments "
                                    "GROUP BY benefit").fetchall())
        finally:
            con.close()

    assert net(two) == net(one) and net(one).get("special_drugs", 0) > 0


def test_adjudicate_without_lines_warns(small):
    with pytest.warns(UserWarning, match="no settlement lines"):
        puhui.adjudicate(small.settlements.head(50), small.policies, P)


def test_price_refuses_policies_naming_a_product_with_other_case(small_city_dir, tmp_path):
    """Review 20 left it: `puhui price` took policies of 'HUHUIBAO-2025' for another
    product's holders (claims run and adjudicate already refused them)."""
    import shutil

    from conftest import puhui as cli

    d = tmp_path / "city"
    shutil.copytree(small_city_dir, d)
    pol = pd.read_parquet(d / "policies.parquet")
    rows = pol.index[pol["product_id"] == "huhuibao-2025"][:40]
    pol["product_id"] = pol["product_id"].astype(str)
    pol.loc[rows, "product_id"] = "HUHUIBAO-2025"
    pol.to_parquet(d / "policies.parquet", index=False)
    r = cli("price", "--product", P, "--data", d, "--out", tmp_path / "o", "--no-backtest")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "40 policies name huhuibao-2025 with other spaces or case" in r.stderr
