"""Session 18: the claims batch's small fixes found by review 17."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import puhui


@pytest.mark.parametrize("text", ["", "nan"])
def test_a_batch_where_every_settlement_breaks_a_rule_is_refused(city_copy, tmp_path, text):
    """refund_of "" (or pandas' "nan") on every row: each row "reverses" an unknown
    settlement, so every one is quarantined. The batch used to pay 0.00, write its
    outputs and exit 0 (review 17); a file that leaves nothing to adjudicate is a wrong
    file: exit 2, nothing written, the rules named."""
    f = city_copy / "settlements.parquet"
    t = pq.read_table(f)
    i = t.schema.get_field_index("refund_of")
    t = t.set_column(i, "refund_of", pa.array([text] * len(t), pa.string()))
    pq.write_table(t, f)
    ledger = tmp_path / "L.db"
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city_copy,
              "--ledger", f"sqlite:///{ledger}", "--out", tmp_path / "o", "--batch", "b1")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"every one of the {len(t):,} settlements breaks a rule" in r.stderr
    assert "reverses an existing settlement" in r.stderr
    assert "Traceback" not in r.stderr
    assert not ledger.exists()
    assert not (tmp_path / "o" / "summary.json").exists()


def test_a_batch_with_some_rows_quarantined_still_runs(city_copy, tmp_path):
    """The refusal is for a file with nothing left: one bad row is quarantined and the
    rest paid, as before."""
    f = city_copy / "settlements.parquet"
    t = pq.read_table(f)
    i = t.schema.get_field_index("refund_of")
    vals = t.column(i).to_pylist()
    first = next(k for k, v in enumerate(vals) if v is None)
    vals[first] = ""
    t = t.set_column(i, "refund_of", pa.array(vals, pa.string()))
    pq.write_table(t, f)
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", city_copy,
              "--ledger", f"sqlite:///{tmp_path / 'L.db'}", "--out", tmp_path / "o",
              "--batch", "b1")
    assert r.returncode == 0, r.stderr
    assert "quarantined 1" in r.stdout


def test_a_death_date_column_of_float_nulls_only_validates_and_runs(city_copy, tmp_path):
    """Found by the DuckDB engine (session 18): persons.parquet's death_date written as
    doubles, all NaN (pandas' np.nan), made validate fail with an internal error. No
    value is present: valid, and a batch pays as with real nulls."""
    import numpy as np
    import pandas as pd

    ref = tmp_path / "ref"
    import shutil

    shutil.copytree(city_copy, ref)
    f = city_copy / "persons.parquet"
    p = pd.read_parquet(f)
    p["death_date"] = np.full(len(p), np.nan)
    p.to_parquet(f, index=False)
    r = puhui("validate", city_copy)
    assert r.returncode == 0, r.stdout + r.stderr
    outs = {}
    for name, d in (("nan", city_copy), ("ref", ref)):
        r = puhui("claims", "run", "--product", "huhuibao-2024", "--data", d, "--ledger",
                  f"sqlite:///{tmp_path / (name + '.db')}", "--out", tmp_path / name / "o",
                  "--batch", "b1")
        assert r.returncode == 0, r.stderr
        outs[name] = r.stdout.splitlines()[0]
    assert outs["nan"] == outs["ref"]
