"""Fund-data files written by other Parquet writers read as puhui's own (issue 19, point
1): fastparquet and pyarrow (and DuckDB when installed) with timestamps in s, ms, us and
ns, Parquet DATE columns, dictionary-encoded and plain strings, nullable integers (pandas
Int64) and yuan as a double or a decimal. Each folder validates clean and a claims batch
on it pays what the batch pays on the original, to the fen. A file whose dates read as
January 1970 (fastparquet's datetime64[s] corruption) is refused by validation, naming the
file, the column and the count."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from puhui.claims.batch import run_batch
from puhui.fund.files import read_raw, write_fund
from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS, TABLES
from puhui.fund.validate import EPOCH_RULE, validate_dir
from puhui.products.model import load_product, product_path
from puhui.synth.city import synth_city

PRODUCT = load_product(product_path("huhuibao-2025"))
DATES = {"death_date", "start_date", "end_date", "setl_time"}
INTS = {"birth_year", "hosp_lv", "line_no"}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A small 2025 city as puhui writes it, its raw tables and its batch's payout."""
    d = tmp_path_factory.mktemp("interop_original")
    write_fund(synth_city(900, 1, seed=23, start_year=2025), d)
    raw = {t.name: read_raw(d, t) for t in TABLES}
    want = batch(d, tmp_path_factory.mktemp("interop_ledger"))
    assert want["paid_this_batch_yuan"] > 0       # payouts to compare, not zeros
    return d, raw, want


def batch(data, tmp) -> dict:
    res = run_batch(PRODUCT, PRODUCT.path, data, f"sqlite:///{tmp / 'l.db'}", "b")
    s = res.summary
    return {"paid_this_batch_yuan": s["paid_this_batch_yuan"],
            "settlements_by_status": s["settlements_by_status"]}


def money_columns(table) -> set[str]:
    return {c.name for c in table.columns if c.kind == "money"}


def text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if df[c].dtype == object
            or isinstance(df[c].dtype, pd.CategoricalDtype)]


def pandas_style(df: pd.DataFrame, unit: str, dictionary: bool, nullable: bool
                 ) -> pd.DataFrame:
    """The raw table with dates in ``unit``, text as categoricals or Python strings and
    whole numbers as pandas Int64 or int64."""
    out = df.copy()
    for c in out.columns:
        if c in DATES:
            out[c] = out[c].astype(f"datetime64[{unit}]")
        elif c in INTS and nullable:
            out[c] = out[c].astype("Int64")
    for c in text_columns(out):
        out[c] = out[c].astype("category") if dictionary else out[c].astype(object)
    return out


def write_fastparquet(raw: dict, out, unit: str, dictionary: bool, nullable: bool) -> None:
    import fastparquet

    out.mkdir()
    for t in TABLES:
        df = pandas_style(raw[t.name], unit, dictionary, nullable)
        text = {c: "utf8" for c in text_columns(df)}
        fastparquet.write(str(out / t.file), df, write_index=False, compression="ZSTD",
                          object_encoding=text or "infer")


def write_pyarrow(raw: dict, out, unit: str, dictionary: bool, decimal: bool) -> None:
    """``unit`` "date" writes every date as a Parquet DATE (the day; a time of day is
    dropped), "int96" as Spark's legacy INT96 timestamps."""
    out.mkdir()
    for t in TABLES:
        df = raw[t.name]
        money = money_columns(t)
        cols = {}
        for c in df.columns:
            a = pa.chunked_array([pa.array(df[c].astype(object) if isinstance(
                df[c].dtype, pd.CategoricalDtype) else df[c], from_pandas=True)])
            if c in DATES:
                a = a.cast(pa.date32(), safe=False) if unit == "date" else \
                    a.cast(pa.timestamp("ns" if unit == "int96" else unit), safe=False)
            elif c in money and decimal:
                a = pa.chunked_array([pa.array(
                    [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in df[c]],
                    pa.decimal128(18, 2))])
            elif pa.types.is_string(a.type) and dictionary:
                a = pc.dictionary_encode(a)
            cols[c] = a
        pq.write_table(pa.table(cols), out / t.file, use_dictionary=dictionary,
                       compression="zstd", use_deprecated_int96_timestamps=unit == "int96")


def check_same(data, want, tmp) -> None:
    rep = validate_dir(data)
    assert rep.ok, rep.messages()
    assert batch(data, tmp) == want


@pytest.mark.parametrize("unit, dictionary, nullable", [
    ("ns", True, True), ("us", False, False), ("ms", True, False), ("us", True, True)])
def test_fastparquet_files_pay_the_same(original, tmp_path, unit, dictionary, nullable):
    d, raw, want = original
    write_fastparquet(raw, tmp_path / "fp", unit, dictionary, nullable)
    check_same(tmp_path / "fp", want, tmp_path)


@pytest.mark.parametrize("unit, dictionary, decimal", [
    ("s", True, False), ("ms", False, True), ("us", True, True), ("ns", False, False),
    ("date", True, True), ("date", False, False), ("int96", False, True)])
def test_pyarrow_files_pay_the_same(original, tmp_path, unit, dictionary, decimal):
    d, raw, want = original
    write_pyarrow(raw, tmp_path / "pa", unit, dictionary, decimal)
    schema = pq.read_schema(tmp_path / "pa" / SETTLEMENTS.file)
    if decimal:
        assert pa.types.is_decimal(schema.field("medfee_sumamt").type)
    if unit == "date":
        assert schema.field("setl_time").type == pa.date32()
    if unit == "int96":
        ps = pq.ParquetFile(tmp_path / "pa" / SETTLEMENTS.file).schema
        assert ps.column(ps.names.index("setl_time")).physical_type == "INT96"
    check_same(tmp_path / "pa", want, tmp_path)


def test_duckdb_files_pay_the_same(original, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    d, raw, want = original
    out = tmp_path / "duck"
    out.mkdir()
    con = duckdb.connect()
    for t in TABLES:
        # DuckDB's own types: DATE for dates, DECIMAL(18,2) for yuan
        money = money_columns(t)
        cols = ", ".join(
            f"CAST({c} AS DATE) AS {c}" if c in DATES else
            f"CAST({c} AS DECIMAL(18,2)) AS {c}" if c in money else c
            for c in raw[t.name].columns)
        con.execute(f"COPY (SELECT {cols} FROM read_parquet('{d / t.file}')) "
                    f"TO '{out / t.file}' (FORMAT PARQUET)")
    check_same(out, want, tmp_path)


def test_cli_validate_and_claims_run_on_other_writers_files(original, tmp_path):
    d, raw, want = original
    write_fastparquet(raw, tmp_path / "fp", "us", True, True)
    write_pyarrow(raw, tmp_path / "pa", "date", True, True)
    from conftest import puhui          # in this process: what the commands say

    for data in (tmp_path / "fp", tmp_path / "pa"):
        r = puhui("validate", data)
        assert r.returncode == 0, r.stderr
        r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", data, "--ledger",
                  f"sqlite:///{data / 'l.db'}", "--batch", "b", "--out", data / "o")
        assert r.returncode == 0, r.stderr
        assert f"paid {want['paid_this_batch_yuan']:,.2f} yuan" in r.stdout, r.stdout


def test_fastparquet_seconds_corruption_is_refused(original, tmp_path):
    """pandas 2 gives ``datetime64[s]`` for a frame built from ``pd.Timestamp`` values;
    fastparquet writes it as milliseconds holding the seconds divided by 1000: every
    2025 date reads as 1970-01-01. Validation names each file, column and count; the
    batch does not run on such policies (exit 2, no traceback)."""
    import fastparquet

    d, raw, want = original
    out = tmp_path / "corrupt"
    out.mkdir()
    for t in TABLES:
        df = raw[t.name].copy()
        if t in (POLICIES, SETTLEMENTS):
            for c in df.columns:
                if c in DATES:
                    df[c] = df[c].astype("datetime64[s]")
        fastparquet.write(str(out / t.file), df, write_index=False,
                          object_encoding={c: "utf8" for c in text_columns(df)} or "infer")
    back = read_raw(out, SETTLEMENTS)["setl_time"]
    assert (back.dt.year == 1970).all()                  # the corruption, as it reads
    rep = validate_dir(out)
    got = {(p.file, p.column, p.count) for p in rep.problems if p.rule == EPOCH_RULE}
    assert got == {(POLICIES.file, "start_date", len(raw["policies"])),
                   (POLICIES.file, "end_date", len(raw["policies"])),
                   (SETTLEMENTS.file, "setl_time", len(raw["settlements"]))}
    from conftest import puhui          # in this process: what the commands say

    r = puhui("validate", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (f"settlements.parquet: column setl_time: rule '{EPOCH_RULE}' broken by "
            f"{len(raw['settlements'])} rows") in r.stderr
    assert "datetime64[s]" in r.stderr
    r = puhui("claims", "run", "--product", "huhuibao-2025", "--data", out, "--ledger",
              f"sqlite:///{tmp_path / 'l.db'}", "--batch", "b", "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "start_date" in r.stderr and EPOCH_RULE in r.stderr


def test_a_settlement_dated_january_1970_is_quarantined_not_paid(original, tmp_path):
    d, raw, want = original
    out = tmp_path / "one"
    write_pyarrow(raw, out, "ns", True, False)
    st = pq.read_table(out / SETTLEMENTS.file)
    t = st.column("setl_time").to_numpy().copy()
    t[0] = np.datetime64("1970-01-01T00:29:10", "ns")
    st = st.set_column(st.schema.get_field_index("setl_time"), "setl_time",
                       pa.array(t, pa.timestamp("ns")))
    pq.write_table(st, out / SETTLEMENTS.file)
    rep = validate_dir(out)
    assert [(p.file, p.column, p.rule, p.count) for p in rep.problems] == \
        [(SETTLEMENTS.file, "setl_time", EPOCH_RULE, 1)]
    res = run_batch(PRODUCT, PRODUCT.path, out, f"sqlite:///{tmp_path / 'l.db'}", "b")
    assert res.summary["settlements_by_status"].get("quarantined") == 1


def test_a_truncated_file_of_another_writer_is_an_input_error(original, tmp_path):
    from puhui.errors import InputError

    d, raw, want = original
    out = tmp_path / "cut"
    write_pyarrow(raw, out, "us", True, False)
    p = out / PERSONS.file
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    m = validate_dir(out).messages()
    assert "persons.parquet: column -: rule 'readable file'" in m
    assert "not a readable Parquet file" in m
    with pytest.raises(InputError, match="persons.parquet: not a readable Parquet file"):
        read_raw(out, PERSONS)
    lines = out / SETTLEMENT_LINES.file
    lines.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    r = subprocess.run([sys.executable, "-m", "puhui", "validate", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a readable Parquet file" in r.stderr
