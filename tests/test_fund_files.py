"""Fund-data I/O: round trip in fen, and multi-row-group files."""

import pandas as pd

import puhui.fund.files as files
from puhui.fund.files import read_fund, read_table, write_fund, write_table
from puhui.fund.schema import SETTLEMENTS
from puhui.synth.city import synth_city


def test_round_trip_keeps_every_fen(tmp_path):
    data = synth_city(500, 1, seed=4)
    write_fund(data, tmp_path)
    back = read_fund(tmp_path)
    for name in ("persons", "policies", "settlements", "lines"):
        a, b = getattr(data, name), getattr(back, name)
        assert list(a.columns) == list(b.columns), name
        for col in a.columns:
            x, y = a[col], b[col]
            if isinstance(x.dtype, pd.CategoricalDtype):
                x = x.astype(str)
            if isinstance(y.dtype, pd.CategoricalDtype):
                y = y.astype(str)
            pd.testing.assert_series_equal(x.reset_index(drop=True), y.reset_index(drop=True),
                                           check_dtype=False, check_names=False,
                                           obj=f"{name}.{col}")


def test_multi_row_group_file_reads_back_exactly(tmp_path, monkeypatch):
    # fastparquet decoded categoricals wrongly when row groups carried different
    # categories (seen 2026-11: 'b' read back as 'c'); every group is checked here.
    data = synth_city(300, 1, seed=6)
    st = data.settlements
    monkeypatch.setattr(files, "ROW_GROUP", 1000)
    write_table(st, tmp_path, SETTLEMENTS)
    back = read_table(tmp_path, SETTLEMENTS)
    assert len(back) == len(st)
    for col in ("setl_id", "psn_no", "med_type", "dise_code", "fixmedins_code"):
        assert (back[col].astype(str).to_numpy() == st[col].astype(str).to_numpy()).all(), col
    assert (back["medfee_sumamt"].to_numpy() == st["medfee_sumamt"].to_numpy()).all()


def test_dates_beyond_what_datetime64_ns_holds_read_without_a_crash(tmp_path):
    """A file may store 9999-12-31 or year 3000 (timestamps in us or ms hold them;
    datetime64[ns] cannot): reading gives NaT for those, never OutOfBoundsDatetime
    (validation reports them as out of range). In-range dates in any unit read exactly,
    at midnight."""
    import numpy as np
    from fastparquet import write

    from puhui.fund.schema import POLICIES

    data = synth_city(50, 1, seed=3)
    pol = data.policies.head(4).copy()
    for c in ("start_date", "end_date"):
        pol[c] = pol[c].astype("datetime64[us]")
    pol.loc[0, "end_date"] = np.datetime64("9999-12-31", "us")
    pol.loc[1, "start_date"] = np.datetime64("3000-01-01", "us")
    pol.loc[2, "start_date"] = np.datetime64("1960-05-04T13:30", "us")
    raw = files.to_file_types(POLICIES, data.policies.head(4))
    for c in ("start_date", "end_date"):
        raw[c] = pol[c].to_numpy()
    write(str(tmp_path / POLICIES.file), raw, write_index=False)
    back = read_table(tmp_path, POLICIES)
    assert back["end_date"].dtype == "datetime64[ns]"
    assert pd.isna(back.loc[0, "end_date"]) and pd.isna(back.loc[1, "start_date"])
    assert back.loc[2, "start_date"] == pd.Timestamp("1960-05-04")
    assert back.loc[3, "end_date"] == data.policies["end_date"].iloc[3]
