"""``puhui.ClaimsBatch``: a claims batch from DataFrames into a ledger (issue 21, point 1).

The truth is the command: ``puhui claims run`` on the same data folder into a ledger of
its own; the two ledgers are compared with SQL of the test's own (tests/ledgers.py),
not through puhui's ledger module. A second run of the same batch id, and a replay
under a new id, pay nothing new."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import puhui
from puhui.errors import InputError
from tests.conftest import puhui as run_puhui
from tests.ledgers import run_sql

PER_PERSON = ("SELECT psn_no, SUM(payout_fen) FROM payments GROUP BY psn_no "
              "HAVING SUM(payout_fen) != 0 ORDER BY psn_no")


def _fen(x) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=float) * 100).astype("int64")


@pytest.fixture(scope="module")
def command_batch(small_city_dir, tmp_path_factory):
    """``puhui claims run`` of huhuibao-2025 on the small city (600 people, two years)."""
    out = tmp_path_factory.mktemp("cmd-batch")
    url = f"sqlite:///{out / 'cmd.db'}"
    r = run_puhui("claims", "run", "--product", "huhuibao-2025", "--data", small_city_dir,
                  "--ledger", url, "--batch", "b1", "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    return url, pd.read_parquet(out / "eob.parquet")


@pytest.fixture(scope="module")
def fund(small_city_dir):
    return puhui.read_fund(small_city_dir)


def test_the_ledger_holds_what_the_command_records(command_batch, fund, tmp_path):
    cmd_url, cmd_eob = command_batch
    url = f"sqlite:///{tmp_path / 'api.db'}"
    batch = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="b1")
    assert batch.run(fund.settlements, fund.policies, lines=fund.lines,
                     persons=fund.persons) is batch
    api_total = run_sql(url, "SELECT SUM(payout_fen), COUNT(*) FROM payments")[0]
    cmd_total = run_sql(cmd_url, "SELECT SUM(payout_fen), COUNT(*) FROM payments")[0]
    assert api_total == cmd_total and api_total[0] > 0
    assert run_sql(url, PER_PERSON) == run_sql(cmd_url, PER_PERSON)
    assert _fen(batch.paid_) == api_total[0]                     # yuan out
    assert batch.summary_["eob_matches_ledger"] and batch.summary_["reconciles"]
    # the EOB is the command's file, row for row (yuan)
    eob = batch.eob_
    assert eob.columns.tolist() == cmd_eob.columns.tolist()
    assert len(eob) == len(cmd_eob)
    for c in ("eligible_amt", "deductible_amt", "payout_amt", "target_amt"):
        assert np.array_equal(_fen(eob[c]), _fen(cmd_eob[c])), c
    assert (eob["status"].astype(str) == cmd_eob["status"].astype(str)).all()
    assert np.isclose(eob["payout_amt"].sum(), api_total[0] / 100)
    by = batch.by_benefit_
    assert np.isclose(by["paid_yuan"].sum(), batch.paid_)


def test_the_same_batch_twice_pays_nothing_new(fund, new_ledger):
    """On SQLite and on PostgreSQL (a server of the test session: puhui.tempdb)."""
    url = new_ledger("twice")
    fund = fund.head(300)
    first = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="m1").run(fund)
    before = run_sql(url, "SELECT SUM(payout_fen), COUNT(*) FROM payments")[0]
    assert first.paid_ > 0
    again = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="m1").run(fund)
    assert run_sql(url, "SELECT SUM(payout_fen), COUNT(*) FROM payments")[0] == before
    assert run_sql(url, "SELECT COUNT(*) FROM batches")[0][0] == 1        # resumed
    assert again.paid_ == again.summary_["ledger_entries_yuan"] == first.paid_   # resumed
    # a replay under a new id: every payout is there already
    replay = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="m2").run(fund)
    assert replay.paid_ == 0.0
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE batch_id = 'm2'")[0][0] == 0
    assert (replay.eob_["payout_amt"] == 0).all()
    assert "ALREADY_PAID" in set(replay.eob_["reason"].astype(str))


def test_the_same_batch_id_with_other_frames_is_refused(fund, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="x").run(fund.head(300))
    with pytest.raises(InputError, match="already ran with other inputs") as err:
        puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="x").run(fund)
    assert "puhui-batch-" not in str(err.value)


def test_fen_are_refused_and_bad_rows_quarantined(fund, tmp_path):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    st = fund.settlements
    fen = st.assign(medfee_sumamt=_fen(st["medfee_sumamt"]))
    with pytest.raises(InputError, match="integers look like fen"):
        puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="f").run(
            fen, fund.policies, fund.lines, fund.persons)
    # a settlement whose identity is broken is quarantined, as the command does
    bad = st.copy()
    bad.loc[bad.index[0], "medfee_sumamt"] += 1.0
    b = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="q").run(
        bad, fund.policies, fund.lines, fund.persons)
    held = b.eob_[b.eob_["setl_id"] == bad.loc[bad.index[0], "setl_id"]]
    assert set(held["status"].astype(str)) == {"quarantined"}
    assert set(held["reason"].astype(str)) == {"Q_IDENTITY"}


def test_the_report_and_the_unrun_batch(fund, tmp_path):
    b = puhui.ClaimsBatch("huhuibao-2025", ledger=f"sqlite:///{tmp_path / 'r.db'}",
                          batch_id="r")
    with pytest.raises(InputError, match="not run yet"):
        b.report(tmp_path / "r.html")
    b.run(fund.head(200))
    html = b.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "huhuibao-2025" in html and "<html" in html


def test_as_of_is_the_business_date_of_every_entry(fund, small_city_dir, tmp_path):
    """``ClaimsBatch(as_of=...)`` is ``claims run --as-of`` (session 23; it had no way to
    say it): a ``datetime.date`` or ISO text, every payment's business date and the
    batch's as-of read with SQL of the test's own equal the command's; a time of day,
    a non-date and a date before a settlement it pays are refused."""
    import datetime as dt

    url = f"sqlite:///{tmp_path / 'api.db'}"
    batch = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="b1",
                              as_of=dt.date(2026, 3, 31)).run(fund)
    assert batch.summary_["as_of"] == "2026-03-31" and batch.paid_ > 0
    cmd = f"sqlite:///{tmp_path / 'cmd.db'}"
    r = run_puhui("claims", "run", "--product", "huhuibao-2025", "--data", small_city_dir,
                  "--ledger", cmd, "--batch", "b1", "--out", tmp_path / "out", "--workers",
                  "1", "--as-of", "2026-03-31")
    assert r.returncode == 0, r.stderr
    dates = "SELECT business_date, COUNT(*), SUM(payout_fen) FROM payments GROUP BY 1"
    assert run_sql(url, dates) == run_sql(cmd, dates)
    assert [d for d, *_ in run_sql(url, dates)] == ["2026-03-31"]
    assert run_sql(url, "SELECT as_of FROM batches WHERE batch_id = 'b1'") == [("2026-03-31",)]
    last = pd.Timestamp(fund.settlements["setl_time"].max()).date()
    for bad, why in ((pd.Timestamp("2026-03-31 10:00"), "a business date is a day"),
                     (20260331, "give a date"),
                     (last - dt.timedelta(days=1), "dated after as_of")):
        with pytest.raises(InputError, match=why):
            puhui.ClaimsBatch("huhuibao-2025", ledger=f"sqlite:///{tmp_path / 'x.db'}",
                              batch_id="b", as_of=bad).run(fund)
