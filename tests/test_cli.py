"""The command line: exit codes, messages and no tracebacks for bad input."""

import os
import subprocess
import sys


def puhui(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "puhui", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_lists_commands():
    r = puhui("--help")
    assert r.returncode == 0
    for cmd in ("synth", "validate", "summary", "demo", "schema"):
        assert cmd in r.stdout


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from puhui.cli import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'fastparquet') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().endswith("[]"), r.stdout


def test_validate_valid_city(small_city_dir):
    r = puhui("validate", str(small_city_dir))
    assert r.returncode == 0 and "valid" in r.stdout


def test_validate_missing_folder_exit_2(tmp_path):
    r = puhui("validate", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "not a folder" in r.stderr and "Traceback" not in r.stderr


def test_validate_dirty_city_exit_2_with_rules(tmp_path):
    out = tmp_path / "dirty"
    r = puhui("synth", "--persons", "500", "--years", "1", "--seed", "3", "--dirty",
              "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = puhui("validate", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for rule in ("medfee_sumamt = hifp_pay", "amount >= 0 (except on reversals)",
                 "rule 'unique'", "person in persons.parquet",
                 "reverses an existing settlement"):
        assert rule in r.stderr, rule


def test_bad_option_exit_2():
    r = puhui("synth", "--persons", "-5", "--years", "1", "--seed", "1", "--out", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_truncated_file_exit_2(small_city_dir, tmp_path):
    import shutil
    d = tmp_path / "c"
    shutil.copytree(small_city_dir, d)
    p = d / "settlements.parquet"
    p.write_bytes(p.read_bytes()[:1000])
    r = puhui("validate", str(d))
    assert r.returncode == 2 and "not a readable Parquet file" in r.stderr
    assert "Traceback" not in r.stderr


def test_schema_markdown_is_the_committed_doc():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = puhui("schema")
    with open(os.path.join(root, "docs", "data-schema.md"), encoding="utf-8") as fh:
        assert fh.read().strip() == r.stdout.strip(), "regenerate: puhui schema > docs/data-schema.md"


def test_direct_payout_path_imports_no_heavy_library():
    code = ("import sys, puhui.claims.direct, puhui.cli\n"
            "print(sorted(m for m in ('fastparquet', 'pyarrow.parquet', 'statsmodels', 'sklearn', 'scipy', "
            "'matplotlib') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_mortality_prints_and_writes_the_a_to_e(tmp_path):
    import json

    out = tmp_path / "mortality.json"
    r = puhui("mortality", "data-samples/city", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Gompertz CL1" in r.stdout and "85-90" in r.stdout
    t = json.loads(out.read_text())
    assert t["years"] == [2024, 2025]
    assert all(row["person_years"] >= 10 for row in t["actual_to_expected"])
    assert sum(row["deaths"] for row in t["actual_to_expected"]) > 0


def test_mortality_of_bad_data_exit_2(tmp_path):
    r = puhui("mortality", str(tmp_path / "missing"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
