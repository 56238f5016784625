"""Strict product and rule files (issue 17, point 5): every table of a product file or a
basic-insurance rule file has a known set of keys and a kind of value for each. An
unknown key, a misspelt key or a value of the wrong kind makes `puhui product check FILE`
exit 2 with a message naming the file, the table and the key (with a "did you mean"),
never a traceback; every shipped file passes."""

import subprocess
import sys
import textwrap

import pytest

from puhui.basis import actuarial_dir
from puhui.cli import main
from puhui.drug_lists import load_lists
from puhui.products.model import load_product
from puhui.tiers.basic import load_scheme

PRODUCT = textwrap.dedent("""\
    id = "t"
    name = "a test product"
    waiting_period_days = 30

    [policy_period]
    start = 2025-01-01
    end = 2025-12-31

    [premium]
    flat = 100

    [eligibility]
    insutypes = ["310", "390"]
    region = "Shanghai"
    min_entry_age = 60
    max_entry_age = 80
    max_renewal_age = 100

    [preexisting]
    icd10 = ["C", "N18"]
    lookback_years = 3

    [[benefits]]
    id = "hospital"
    pays_on = "in_list_self_pay"
    filters = { med_type = ["21", "14"], hosp_lv = [2, 3] }
    deductible = { amount = 10000, shared = "h", claim_free = [{ years = 2, amount = 9000 }] }
    ratio = 0.7
    preexisting_ratio = 0.3
    limit = { amount = 100000, shared = "h" }

    [[benefits]]
    id = "drugs"
    pays_on = "lines"
    lines = { list = "special-drugs-hhb-style", select = "drugs" }
    ratio = 0.7
    limit = 100000
    """)
H = 'benefits[0] (id "hospital")'
D = 'benefits[1] (id "drugs")'

# (edit: (old, new) on PRODUCT, table named in the message, key named, more text expected)
BAD_PRODUCTS = [
    # unknown and misspelt keys, at every level
    (("[policy_period]", "colour = 1\n\n[policy_period]"), "top level", "colour", ""),
    (("waiting_period_days = 30", "waiting_period_day = 30"), "top level",
     "waiting_period_day", "did you mean 'waiting_period_days'?"),
    (("max_renewal_age = 100\n", "max_renewal_age = 100\n\nwaiting_period_days = 90\n"),
     "eligibility", "waiting_period_days",
     "belongs at the top level"),     # the shipped elderly file's mistake, by TOML's rules
    (("start = 2025-01-01", "stat = 2025-01-01"), "policy_period", "stat",
     "did you mean 'start'?"),
    (("flat = 100", "flatt = 100"), "premium", "flatt", "did you mean 'flat'?"),
    (("flat = 100", "cells = [{ min_age = 60, max_age = 64, amont = 600 }]"),
     "premium.cells[0]", "amont", "did you mean 'amount'?"),
    (("max_entry_age = 80", "max_entry_ag = 80"), "eligibility", "max_entry_ag",
     "did you mean 'max_entry_age'?"),
    (("lookback_years = 3", "lookback_year = 3"), "preexisting", "lookback_year",
     "did you mean 'lookback_years'?"),
    (("preexisting_ratio = 0.3", "preexisting_ratio = 0.3\ncolour = 1"), H, "colour", ""),
    (("deductible = {", "deductable = {"), H, "deductable", "did you mean 'deductible'?"),
    (("deductible = { amount = 10000", "deductible = { amout = 10000"), H + ".deductible",
     "amout", "did you mean 'amount'?"),
    (("claim_free = [{ years = 2", "claim_free = [{ year = 2"),
     H + ".deductible.claim_free[0]", "year", "did you mean 'years'?"),
    (('limit = { amount = 100000, shared = "h" }', 'limit = { amount = 100000, shard = "h" }'),
     H + ".limit", "shard", "did you mean 'shared'?"),
    (('lines = { list = "special', 'lines = { lst = "special'), D + ".lines", "lst",
     "did you mean 'list'?"),
    (("hosp_lv = [2, 3] }", "hosp_level = [2, 3] }"), H + ".filters", "hosp_level",
     "did you mean 'hosp_lv'?"),
    (("limit = 100000\n", "limit = 100000\npreexisting_ratoi = 0.3\n"), D,
     "preexisting_ratoi", "did you mean 'preexisting_ratio'?"),
    # wrong kinds of value
    (("claim_free = [{ years = 2, amount = 9000 }]", "claim_free = [1, 2]"), H + ".deductible",
     "claim_free[0]", "should be a claim-free step"),
    (("lookback_years = 3", 'lookback_years = "three"'), "preexisting", "lookback_years",
     "should be a whole number of years"),
    (("limit = 100000\n", "limit = 1e30\n"), D, "limit", "above 100,000,000 yuan"),
    (("amount = 10000, shared", "amount = 1e30, shared"), H + ".deductible", "amount",
     "above 100,000,000 yuan"),
    (("limit = { amount = 100000,", "limit = { amount = 100000001,"), H + ".limit", "amount",
     "above 100,000,000 yuan"),
    (("ratio = 0.7\npreexisting", "ratio = nan\npreexisting"), H, "ratio", "not a finite number"),
    (("limit = 100000\n", "limit = inf\n"), D, "limit", "not a finite number"),
    (("limit = 100000\n", "limit = -inf\n"), D, "limit", "not a finite number"),
    (("amount = 10000, shared", "amount = -1, shared"), H + ".deductible", "amount",
     "cannot be negative"),
    (("waiting_period_days = 30", "waiting_period_days = -1"), "top level",
     "waiting_period_days", "plausible range"),
    (("waiting_period_days = 30", "waiting_period_days = 90.5"), "top level",
     "waiting_period_days", "whole number of days"),
    (("waiting_period_days = 30", "waiting_period_days = true"), "top level",
     "waiting_period_days", "whole number of days"),
    (("waiting_period_days = 30", 'waiting_period_days = "90"'), "top level",
     "waiting_period_days", "whole number of days"),
    (("waiting_period_days = 30", "waiting_period_days = 100000"), "top level",
     "waiting_period_days", "plausible range"),
    (("ratio = 0.7\npreexisting", 'ratio = "0.7"\npreexisting'), H, "ratio", "a number"),
    (("ratio = 0.7\npreexisting", "ratio = true\npreexisting"), H, "ratio", "a number"),
    (("ratio = 0.7\npreexisting", "ratio = [0.7]\npreexisting"), H, "ratio", "a number"),
    (("limit = 100000\n", "limit = [100000]\n"), D, "limit", "not a list"),
    (("preexisting_ratio = 0.3", "preexisting_ratio = 1.5"), H, "preexisting_ratio",
     "from 0 to 1"),
    (("preexisting_ratio = 0.3", "preexisting_ratio = 0.12345"), H, "preexisting_ratio",
     "finer than a basis point"),
    (("flat = 100", 'flat = "100"'), "premium", "flat", "a number"),
    (('insutypes = ["310", "390"]', 'insutypes = "310"'), "eligibility", "insutypes",
     "should be a list"),
    (('insutypes = ["310", "390"]', 'insutypes = ["301"]'), "eligibility", "insutypes[0]",
     "should be one of 310, 390"),
    (('icd10 = ["C", "N18"]', "icd10 = [18]"), "preexisting", "icd10[0]", "ICD-10"),
    (('icd10 = ["C", "N18"]', 'icd10 = ["n18"]'), "preexisting", "icd10[0]", "ICD-10"),
    (("min_entry_age = 60", "min_entry_age = 60.0"), "eligibility", "min_entry_age",
     "whole number"),
    (("max_renewal_age = 100", "max_renewal_age = 300"), "eligibility", "max_renewal_age",
     "plausible range"),
    (("min_entry_age = 60", "min_entry_age = 90"), "eligibility", "min_entry_age",
     "is above 'max_entry_age' 80"),
    (("{ years = 2, amount = 9000 }", "{ years = 0, amount = 9000 }"),
     H + ".deductible.claim_free[0]", "years", "plausible range"),
    (("{ years = 2, amount = 9000 }", "{ years = true, amount = 9000 }"),
     H + ".deductible.claim_free[0]", "years", "whole number"),
    (('med_type = ["21", "14"]', 'med_type = ["99"]'), H + ".filters", "med_type[0]",
     "medical-type code"),
    (("hosp_lv = [2, 3]", "hosp_lv = [4]"), H + ".filters", "hosp_lv[0]", "hospital level"),
    (("hosp_lv = [2, 3]", 'hosp_lv = "2"'), H + ".filters", "hosp_lv", "hospital level"),
    (("limit = 100000\n", "limit = 100000\nexclude_basic_paid = 1\n"), D,
     "exclude_basic_paid", "true or false"),
    (("start = 2025-01-01", 'start = "2025-01-01"'), "policy_period", "start", "TOML date"),
    (("start = 2025-01-01", "start = 2025-01-01T00:00:00"), "policy_period", "start",
     "no time"),
    (('id = "t"', "id = 5"), "top level", "id", "in quotes"),
    (('id = "hospital"', 'id = "hos.pital"'), 'benefits[0] (id "hos.pital")', "id", "no dots"),
    (('pays_on = "in_list_self_pay"', 'pays_on = "in_list_selfpay"'), H, "pays_on",
     "did you mean 'in_list_self_pay'?"),
    (('select = "drugs"', 'select = "drug"'), D + ".lines", "select", "did you mean 'drugs'?"),
    (("amount = 10000, shared", "amount = 10000.001, shared"), H + ".deductible", "amount",
     "not a whole number of fen"),
    # rules over several keys of one table
    (("flat = 100", "flat = 100\ncells = [{ amount = 600 }]"), "premium", "flat",
     "exactly one of them"),
    (("flat = 100", "cells = [{ min_age = 70, max_age = 64, amount = 600 }]"),
     "premium.cells[0]", "min_age", "is above 'max_age' 64"),
    (('pays_on = "lines"', 'pays_on = "self_pay"'), D, "lines", "only for pays_on"),
    (("ratio = 0.7\npreexisting_ratio = 0.3\n", "preexisting_ratio = 0.3\n"), H, "ratio",
     "missing 'ratio'"),
    (("end = 2025-12-31", "end = 2024-12-31"), "policy_period", "end", "is before 'start'"),
]


def check(capsys, *paths) -> tuple[int, str]:
    """`puhui product check PATHS` in this process: (exit code, stdout + stderr). An
    exception other than the CLI's exit fails the test (it would be a traceback)."""
    with pytest.raises(SystemExit) as ex:
        main(["product", "check", *map(str, paths)])
    out = capsys.readouterr()
    return ex.value.code, out.out + out.err


def edited(text: str, old: str, new: str) -> str:
    assert old in text, f"the test's edit does not apply: {old!r}"
    return text.replace(old, new, 1)


@pytest.mark.parametrize("edit,table,key,more", BAD_PRODUCTS,
                         ids=[f"{i:02d}-{c[2]}" for i, c in enumerate(BAD_PRODUCTS)])
def test_bad_product_file_is_exit_2_naming_file_table_and_key(tmp_path, capsys, edit, table,
                                                              key, more):
    path = tmp_path / "t.toml"
    path.write_text(edited(PRODUCT, *edit), encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 2, out
    assert f"{path}: {table}:" in out or f"{path} (with" in out and f"{table}:" in out, out
    assert f"'{key}'" in out, out
    assert more in out, out
    assert "Traceback" not in out


def test_the_good_product_of_these_tests_passes(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(PRODUCT, encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 0 and "ok (t, 2 benefits)" in out
    p = load_product(path)
    assert p.waiting_period_days == 30 and p.preexisting_lookback_years == 3


def test_unknown_key_in_a_child_file_is_reported_in_the_child(tmp_path, capsys):
    (tmp_path / "parent.toml").write_text(PRODUCT, encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\nid = "c"\n\n[[benefits]]\nid = "hospital"\n'
                     "limt = 5000\n", encoding="utf-8")
    code, out = check(capsys, child)
    assert code == 2
    assert f"{child}: {H}: unknown key 'limt'; did you mean 'limit'?" in out


def test_unknown_key_in_a_parent_file_is_reported_in_the_parent(tmp_path, capsys):
    parent = tmp_path / "parent.toml"
    parent.write_text(edited(PRODUCT, "lookback_years = 3", "lookback_yrs = 3"),
                      encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\nid = "c"\n', encoding="utf-8")
    code, out = check(capsys, child)
    assert code == 2 and f"{parent}: preexisting: unknown key 'lookback_yrs'" in out


def test_a_child_states_only_changes_and_may_remove_a_benefit(tmp_path, capsys):
    (tmp_path / "parent.toml").write_text(PRODUCT, encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\nid = "c"\n\n[[benefits]]\nid = "drugs"\n'
                     'remove = true\n\n[[benefits]]\nid = "hospital"\nlimit = 5000\n',
                     encoding="utf-8")
    code, out = check(capsys, child)
    assert code == 0, out
    p = load_product(child)
    assert [b.id for b in p.benefits] == ["hospital"]
    assert p.benefit("hospital").layer.limit.constant == 500000


def test_what_the_merged_lineage_lacks_is_reported_with_the_files(tmp_path, capsys):
    (tmp_path / "parent.toml").write_text(edited(PRODUCT, "ratio = 0.7\npreexisting", "preexisting"),
                                          encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\nid = "c"\n', encoding="utf-8")
    code, out = check(capsys, child)
    assert code == 2
    assert f"{child} (with parent.toml, which it extends): {H}: missing 'ratio'" in out


def test_remove_is_only_for_a_file_that_extends_another(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(edited(PRODUCT, 'id = "drugs"\n', 'id = "drugs"\nremove = true\n'),
                    encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 2 and f"{path}: {D}: unknown key 'remove'" in out


@pytest.mark.parametrize("extends,text", [("5", "'extends' should be the name of another file"),
                                          ('"nowhere.toml"', "file not found"),
                                          ('"t.toml"', "'extends' loops back")])
def test_bad_extends_is_exit_2(tmp_path, capsys, extends, text):
    path = tmp_path / "t.toml"
    path.write_text(f"extends = {extends}\n" + PRODUCT, encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 2 and text in out and "Traceback" not in out


def test_not_utf8_and_not_toml_are_exit_2(tmp_path, capsys):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_bytes(PRODUCT.replace("a test product", "产品").encode("gb18030"))
    b.write_text("id = \n", encoding="utf-8")
    for path, text in ((a, "not UTF-8"), (b, "not valid TOML")):
        code, out = check(capsys, path)
        assert code == 2 and text in out and str(path) in out


# -- basic-insurance rule files ---------------------------------------------------------

RULES = (actuarial_dir() / "basic" / "shanghai-employee-2024.toml").read_text(encoding="utf-8")
L0 = 'layers[0] (id "pooled_outpatient")'
L1 = 'layers[1] (id "pooled_inpatient")'
BAD_RULES = [
    (('insutype = "310"', 'insutyp = "310"'), "top level", "insutyp",
     "did you mean 'insutype'?"),
    (("preselfpay_share = [", "preselfpay_shar = ["), "class_b", "preselfpay_shar",
     "did you mean 'preselfpay_share'?"),
    (("reports_deductible = true\nbase", "reports_deductibel = true\nbase"), L0,
     "reports_deductibel", "did you mean 'reports_deductible'?"),
    (('deductible = { per = "year", accumulator = "outpatient',
      'deductible = { per = "year", acumulator = "outpatient'), L0 + ".deductible",
     "acumulator", "did you mean 'accumulator'?"),
    (("{ when = { retired = true }, value = 0.92 },",
      "{ when = { retired = true }, vlaue = 0.92 },"), L1 + ".ratio[0]", "vlaue",
     "did you mean 'value'?"),
    (("{ when = { retired = true }, value = 0.92 },",
      "{ when = { retird = true }, value = 0.92 },"), L1 + ".ratio[0].when", "retird",
     "did you mean 'retired'?"),
    (('limit = { accumulator = "assistance", amount = 100000 }',
      'limit = { accumulator = "assistance", amount = 1e30 }'),
     'layers[3] (id "medical_assistance").limit', "amount", "above 100,000,000 yuan"),
    (('deductible = { per = "year", accumulator = "inpatient',
      'deductible = { per = "month", accumulator = "inpatient'), L1 + ".deductible", "per",
     "one of year, stay"),
    (('pays_into = "hifob_pay"', 'pays_into = "hifob"'), 'layers[2] (id "supplementary")',
     "pays_into", "did you mean 'hifob_pay'?"),
    (("{ when = { retired = true, hosp_lv = 1 }, value = 0.90 },",
      '{ when = { retired = true, hosp_lv = "one" }, value = 0.90 },'), L0 + ".ratio[0].when",
     "hosp_lv", "hospital level"),
    (("valid_from = 2024-01-01", 'valid_from = "2024-01-01"'), "top level", "valid_from",
     "TOML date"),
    (("reports_deductible = true\nbase", 'reports_deductible = "yes"\nbase'), L0,
     "reports_deductible", "true or false"),
    (("{ when = { retired = true }, value = 0.92 },",
      "{ when = { retired = true }, value = 1.2 },"), L1 + ".ratio[0]", "value", "from 0 to 1"),
    (("{ when = { retired = true }, value = 1200 },",
      "{ when = { retired = true }, value = -1200 },"), L1 + ".deductible.amount[0]", "value",
     "cannot be negative"),
    (("ratio = 0.80", "ratio = nan"), 'layers[2] (id "supplementary")', "ratio",
     "not a finite number"),
    (('applies = { low_income = true }', 'applies = { low_income = 1 }'),
     'layers[3] (id "medical_assistance").applies', "low_income", "true or false"),
    (("valid_to = 2024-12-31", "valid_to = 2023-12-31"), "top level", "valid_to",
     "is before 'valid_from'"),
]


@pytest.mark.parametrize("edit,table,key,more", BAD_RULES,
                         ids=[f"{i:02d}-{c[2]}" for i, c in enumerate(BAD_RULES)])
def test_bad_rule_file_is_exit_2_naming_file_table_and_key(tmp_path, capsys, edit, table,
                                                           key, more):
    path = tmp_path / "r.toml"
    path.write_text(edited(RULES, *edit), encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 2, out
    assert f"{path}: {table}:" in out, out
    assert f"'{key}'" in out and more in out, out
    assert "Traceback" not in out


def test_unknown_key_in_a_child_rule_file_is_reported_in_the_child(tmp_path, capsys):
    (tmp_path / "base.toml").write_text(RULES, encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\nid = "c"\nvalid_form = 2025-01-01\n',
                     encoding="utf-8")
    code, out = check(capsys, child)
    assert code == 2 and f"{child}: top level: unknown key 'valid_form'; did you mean " \
                         f"'valid_from'?" in out


# -- every shipped file passes -----------------------------------------------------------

SHIPPED = sorted((actuarial_dir() / "products").glob("*.toml")) + \
    sorted((actuarial_dir() / "basic").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_product_and_rule_file_passes(capsys, path):
    code, out = check(capsys, path)
    assert code == 0 and ": ok (" in out, out
    if path.parent.name == "basic":
        assert load_scheme(path).id == path.stem
    else:
        assert load_product(path).id == path.stem


def test_the_drug_list_index_passes_and_is_strict(tmp_path):
    from puhui.errors import RuleFileError

    assert "special-drugs-hhb-style" in load_lists()
    src = actuarial_dir() / "drugs"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    text = (src / "lists.toml").read_text(encoding="utf-8")
    (tmp_path / "lists.toml").write_text(edited(text, 'kind = "class_c"', 'knd = "class_c"'),
                                         encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"lists\[0\] \(id \"class-c-2025\"\): unknown key "
                                            r"'knd'; did you mean 'kind'\?"):
        load_lists(tmp_path)


def test_elderly_waiting_period_is_read_from_the_shipped_file():
    p = load_product(actuarial_dir() / "products" / "elderly-medical-60-80.toml")
    assert p.waiting_period_days == 90
    assert "waiting_period_days" not in p.raw.get("eligibility", {})


def test_a_real_process_prints_no_traceback(tmp_path):
    # the in-process tests above catch exceptions; this one runs the installed entry point
    path = tmp_path / "t.toml"
    path.write_text(edited(PRODUCT, "claim_free = [{ years = 2, amount = 9000 }]",
                           "claim_free = [1, 2]"), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "puhui", "product", "check", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert f"{path}: {H}.deductible: 'claim_free[0]' = 1: should be a claim-free step" in r.stderr


def test_the_example_in_docs_product_files_is_a_valid_product(tmp_path, capsys):
    import re

    doc = (actuarial_dir().parent / "docs" / "product-files.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    parent = actuarial_dir() / "products" / "huhuibao-2024.toml"
    path = tmp_path / "huhuibao-2025.toml"
    path.write_text(edited(example, 'extends = "huhuibao-2024.toml"', f'extends = "{parent}"'),
                    encoding="utf-8")
    code, out = check(capsys, path)
    assert code == 0, out
    assert load_product(path).raw["waiting_period_days"] == 0
