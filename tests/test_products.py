"""Product files: every shipped file loads; the validator names file and key; show/diff."""

import subprocess
import sys
import textwrap

import pytest

from puhui.basis import actuarial_dir
from puhui.benefits.quantities import LineMatcher
from puhui.errors import RuleFileError
from puhui.products.model import load_product
from puhui.products.show import diff_text

PRODUCTS = sorted((actuarial_dir() / "products").glob("*.toml"))

GOOD = """
id = "t"
[policy_period]
start = 2025-01-01
end = 2025-12-31
[premium]
flat = 100
[[benefits]]
id = "h"
pays_on = "in_list_self_pay"
deductible = 10000
ratio = 0.7
limit = 100000
"""


def write(tmp_path, text, name="t.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.mark.parametrize("path", PRODUCTS, ids=lambda p: p.stem)
def test_shipped_products_load(path):
    p = load_product(path)
    LineMatcher(p)
    assert p.benefits and p.id == path.stem


def test_huhuibao_lineage_states_only_changes():
    # 2025 extends 2024 ... 2021: its file is short, the terms come through lineage.
    p = load_product(actuarial_dir() / "products" / "huhuibao-2025.toml")
    assert [b.id for b in p.benefits] == ["hospital", "special_drugs", "proton", "cart",
                                          "overseas_drugs"]
    assert p.premium_flat_fen == 12900
    text = (actuarial_dir() / "products" / "huhuibao-2025.toml").read_text(encoding="utf-8")
    assert "special_drugs" not in text        # unchanged from 2022, inherited


@pytest.mark.parametrize("edit,message", [
    (("pays_on = \"in_list_self_pay\"", "pays_on = \"everything\""),
     "benefits[0] (id \"h\"): 'pays_on' = the text 'everything': should be one of "
     "in_list_self_pay, out_of_list_self_pay"),
    (("ratio = 0.7", "ratio = 1.7"), "benefits[0] (id \"h\"): 'ratio' = 1.7: a ratio is from 0 to 1"),
    (("deductible = 10000", "deductible = -5"), "an amount cannot be negative"),
    (("deductible = 10000", "deductible = 10000.001"), "is not a whole number of fen"),
    (("limit = 100000", "limit = 100000\ncolour = 1"), "benefits[0] (id \"h\"): unknown key 'colour'"),
    (("limit = 100000", "limit = 100000\nlimt = 1"),
     "benefits[0] (id \"h\"): unknown key 'limt'; did you mean 'limit'?"),
    (("[premium]\nflat = 100", ""), "missing 'premium'"),
    (("end = 2025-12-31", "end = 2024-12-31"), "policy_period: 'end' 2024-12-31 is before 'start'"),
    (("pays_on = \"in_list_self_pay\"", "pays_on = \"in_list_self_pay\"\nfilters = { colour = 1 }"),
     "benefits[0] (id \"h\").filters: unknown key 'colour' (a filter takes hosp_lv, med_type)"),
])
def test_validator_names_file_and_key(tmp_path, edit, message):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(RuleFileError) as err:
        load_product(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_shared_deductible_must_have_one_amount(tmp_path):
    text = GOOD.replace("deductible = 10000", 'deductible = { amount = 10000, shared = "x" }') + """
[[benefits]]
id = "o"
pays_on = "out_of_list_self_pay"
deductible = { amount = 8000, shared = "x" }
ratio = 0.5
"""
    with pytest.raises(RuleFileError, match="share the deductible 'deductible:x' but state "
                                            "different amounts"):
        load_product(write(tmp_path, text))


def test_unknown_list_is_named(tmp_path):
    text = GOOD.replace('pays_on = "in_list_self_pay"',
                        'pays_on = "lines"\nlines = { list = "nope" }')
    with pytest.raises(RuleFileError, match="pays on list 'nope'"):
        LineMatcher(load_product(write(tmp_path, text)))


def test_diff_lists_the_changed_terms():
    a = load_product(actuarial_dir() / "products" / "huhuibao-2024.toml")
    b = load_product(actuarial_dir() / "products" / "huhuibao-2025.toml")
    text = diff_text(a, b)
    assert ("benefit hospital / deductible: 15,000 a year (14,000 after 2 claim-free years; "
            "13,000 after 3 claim-free years)  ->  12,000 a year (11,000 after 2 claim-free "
            "years; 10,000 after 3 claim-free years)") in text
    assert "benefit hospital / ratio, pre-existing: 30 %  ->  50 %" in text
    assert "special_drugs" not in text
    assert "(no difference in terms)" in diff_text(a, a)


def test_cli_product_commands(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "puhui", "product", *a],
                                    capture_output=True, text=True)
    r = run("show", "huhuibao-2025")
    assert r.returncode == 0 and "benefit hospital / limit" in r.stdout
    r = run("show", "elderly-medical-60-80")         # its waiting period is read, not ignored
    assert r.returncode == 0
    assert [ln.split(None, 2)[2] for ln in r.stdout.splitlines()
            if ln.strip().startswith("waiting period")] == ["90 days for new policies"]
    r = run("diff", "huhuibao-2021", "huhuibao-2022")
    assert r.returncode == 0 and "benefit cart: added" in r.stdout
    bad = write(tmp_path, GOOD.replace("ratio = 0.7", "ratio = 2"))
    r = run("check", str(bad))
    assert r.returncode == 2 and "'ratio' = 2: a ratio is from 0 to 1" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("show", "no-such-product")
    assert r.returncode == 2 and "no such product file" in r.stderr


def test_a_claim_free_step_above_the_deductible_is_refused(tmp_path):
    """Session 23's study: a file extending huhuibao-2024 with a 300-yuan deductible kept
    the base's claim-free steps (14,000 after two years, 13,000 after three), which
    raised a claim-free renewal's deductible, and puhui priced and paid it in silence.
    A step above the deductible, or above a step of fewer years, is refused; emptied
    (claim_free = []) or lowering, it loads."""
    base = tmp_path / "base.toml"
    base.write_text(textwrap.dedent(GOOD.replace(
        "deductible = 10000",
        "deductible = { amount = 15000, claim_free = [{ years = 2, amount = 14000 }, "
        "{ years = 3, amount = 13000 }] }")), encoding="utf-8")
    load_product(base)
    low = 'extends = "base.toml"\nid = "low"\n[[benefits]]\nid = "h"\n'
    with pytest.raises(RuleFileError, match=r"14,000 yuan after 2 claim-free year\(s\) is "
                                            r"above the deductible \(300 yuan\)"):
        load_product(write(tmp_path, low + "deductible = { amount = 300 }\n", "low.toml"))
    ok = load_product(write(tmp_path, low + "deductible = { amount = 300, claim_free = [] }\n",
                            "ok.toml"))
    assert ok.benefits[0].layer.deductible is not None
    with pytest.raises(RuleFileError, match="above the step after 2 year"):
        load_product(write(tmp_path, GOOD.replace(
            "deductible = 10000",
            "deductible = { amount = 10000, claim_free = [{ years = 2, amount = 8000 }, "
            "{ years = 3, amount = 9000 }] }"), "up.toml"))
