"""Refunds under outcome-based drug agreements booked in the ledger as recoveries
(`puhui claims recoveries`): what is due, once; later dates and reversed payouts book
the difference; bad input is exit 2."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from puhui.claims import ledger
from puhui.claims.batch import run_batch
from puhui.claims.recoveries import agreements_of_product, run_recoveries
from puhui.drug_lists import agreements_of, load_lists
from puhui.errors import InputError, RuleFileError
from puhui.products.model import load_product, product_path

SAMPLE = Path(__file__).resolve().parents[1] / "data-samples" / "city"


@pytest.fixture(scope="module")
def paid(tmp_path_factory):
    """Huhuibao 2025 with the special-drug list that carries agreements, paid on the
    sample's 2025 policies (one batch)."""
    d = tmp_path_factory.mktemp("recov")
    pf = d / "hhb-agreements.toml"
    pf.write_text(f'extends = "{product_path("huhuibao-2025").as_posix()}"\n'
                  'id = "huhuibao-2025"\n\n[[benefits]]\nid = "special_drugs"\n'
                  'lines = { list = "special-drugs-elderly", select = "drugs" }\n',
                  encoding="utf-8")
    product = load_product(pf)
    url = f"sqlite:///{d / 'ledger.db'}"
    run_batch(product, pf, SAMPLE, url, "b1", "claimed", workers=1)
    return product, pf, d / "ledger.db"


def _ledger(paid, tmp_path):
    dst = tmp_path / "ledger.db"
    con = sqlite3.connect(paid[2])
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copy(paid[2], dst)
    return f"sqlite:///{dst}"


def _recoveries(url):
    con = sqlite3.connect(ledger.sqlite_path(url))
    rows = con.execute("SELECT batch_id, agreement, psn_no, quarter, outcome, refund_fen "
                       "FROM recoveries ORDER BY entry_id").fetchall()
    con.close()
    return rows


def test_agreements_come_from_the_drug_list_file():
    lists = load_lists()
    a = agreements_of(lists["special-drugs-elderly"])
    assert sorted(a) == ["SD-01", "SD-03", "SD-11"]
    assert (a["SD-01"].endpoint, a["SD-01"].comparator_median_months,
            a["SD-01"].drug_median_months, a["SD-01"].partial_share_bp) == ("os", 10.7, 22.0, 5000)
    assert a["SD-03"].endpoint == "pfs" and a["SD-11"].partial_share_bp == 3000
    # the extension keeps the parent's items and only adds columns
    assert len(lists["special-drugs-elderly"].items) == len(lists["special-drugs-hhb-style"].items)
    assert agreements_of(lists["special-drugs-hhb-style"]) == {}


def test_a_bad_agreement_row_names_the_drug_and_column(tmp_path):
    from puhui.basis import actuarial_dir

    shutil.copytree(actuarial_dir() / "drugs", tmp_path / "drugs")
    f = tmp_path / "drugs" / "special-drug-agreements.csv"
    f.write_text(f.read_text(encoding="utf-8").replace("SD-03,pfs,,9.6", "SD-03,pfs,,"),
                 encoding="utf-8")
    with pytest.raises(RuleFileError, match="SD-03: agreement_drug_median_months is empty"):
        agreements_of(load_lists(tmp_path / "drugs")["special-drugs-elderly"])


def test_recoveries_book_what_is_due_once(paid, tmp_path):
    product, pf, _ = paid
    url = _ledger(paid, tmp_path)
    r = run_recoveries(product, SAMPLE, url, "r1", "2025-12-31")
    due = r.lines[r.lines["refund_fen"] > 0]
    assert len(due) >= 1 and r.summary["booked_now_yuan"] == r.summary["due_yuan"] > 0
    # an overall-survival full refund is the whole cost the product paid for the drug:
    # here the settlements of the refunded patients carry no other listed drug, so the
    # cost is the ledger's net payout of the special-drug benefit on them
    con = sqlite3.connect(ledger.sqlite_path(url))
    for row in due[due["outcome"] == "REFUND_FULL"].itertuples():
        code = row.agreement.split(":")[1]
        lines = pd.read_parquet(SAMPLE / "settlement_lines.parquet")
        setl = pd.read_parquet(SAMPLE / "settlements.parquet", columns=["setl_id", "psn_no"])
        mine = setl.loc[setl["psn_no"] == row.psn_no, "setl_id"]
        with_drug = lines[lines["setl_id"].isin(mine) & (lines["hilist_code"] == code)]
        others = lines[lines["setl_id"].isin(with_drug["setl_id"])
                       & lines["hilist_code"].str.startswith(("SD-", "OS-", "C2025"))
                       & (lines["hilist_code"] != code)]
        assert others.empty
        marks = ",".join("?" * with_drug["setl_id"].nunique())
        paid_fen = con.execute(
            f"SELECT SUM(payout_fen) FROM payments WHERE benefit = 'special_drugs' AND "
            f"applies_to IN ({marks})", list(with_drug["setl_id"].unique())).fetchone()[0]
        assert row.refund_fen == row.cost_fen == paid_fen
    con.close()
    booked = _recoveries(url)
    assert sum(x[5] for x in booked) == int(due["refund_fen"].sum())
    # the same batch again, and a new batch at the same date: nothing more
    for b in ("r1", "r2"):
        again = run_recoveries(product, SAMPLE, url, b, "2025-12-31")
        assert again.summary["booked_now_yuan"] == 0
    assert _recoveries(url) == booked
    # every patient with a cost has a line with an outcome code
    assert r.lines["outcome"].isin(["REFUND_FULL", "REFUND_PARTIAL", "REFUND_AFTER_MEDIAN",
                                    "REFUND_BEFORE_EFFECT_DATE", "NO_REFUND", "PENDING"]).all()


def test_a_death_not_yet_known_is_pending_then_booked(paid, tmp_path):
    product, _, _ = paid
    url = _ledger(paid, tmp_path)
    full = run_recoveries(product, SAMPLE, url, "probe", "2025-12-31")
    first = full.lines[full.lines["refund_fen"] > 0].iloc[0]
    url = _ledger(paid, tmp_path)         # a fresh copy: nothing booked yet
    quarter_start = pd.Period(first["quarter"]).start_time
    early = run_recoveries(product, SAMPLE, url, "early", quarter_start - pd.Timedelta(days=1))
    row = early.lines[(early.lines["psn_no"] == first["psn_no"])
                      & (early.lines["agreement"] == first["agreement"])]
    assert (row["refund_fen"] == 0).all() and early.summary["booked_now_yuan"] <= \
        full.summary["due_yuan"] - first["refund_fen"] / 100
    late = run_recoveries(product, SAMPLE, url, "late", "2025-12-31")
    assert late.summary["due_yuan"] == full.summary["due_yuan"]
    assert sum(x[5] for x in _recoveries(url)) == round(full.summary["due_yuan"] * 100)


def test_a_reversed_payout_books_the_recovery_back(paid, tmp_path):
    product, _, _ = paid
    url = _ledger(paid, tmp_path)
    r = run_recoveries(product, SAMPLE, url, "r1", "2025-12-31")
    row = r.lines[r.lines["outcome"] == "REFUND_FULL"].iloc[0]
    code = row["agreement"].split(":")[1]
    lines = pd.read_parquet(SAMPLE / "settlement_lines.parquet")
    setl = pd.read_parquet(SAMPLE / "settlements.parquet", columns=["setl_id", "psn_no"])
    sids = lines.loc[lines["setl_id"].isin(setl.loc[setl["psn_no"] == row["psn_no"], "setl_id"])
                     & (lines["hilist_code"] == code), "setl_id"].unique()
    con = ledger.connect(url)
    with ledger.unit_of_work(con):
        ledger.ensure_open_batch(con, "reversals", "claimed", product.id)
        for sid in sids:
            net, pol = con.execute("SELECT SUM(payout_fen), MAX(policy_no) FROM payments WHERE "
                                   "applies_to = ? AND benefit = 'special_drugs'", (sid,)).fetchone()
            ledger.record_entries(con, [(f"R-{sid}", sid, "special_drugs", row["psn_no"], pol,
                                         -net, "reverse", "reversals", ledger.now())],
                                  "2025-12-31")
    con.close()
    back = run_recoveries(product, SAMPLE, url, "r2", "2025-12-31")
    assert back.summary["booked_now_yuan"] == -row["refund_fen"] / 100
    net = sum(x[5] for x in _recoveries(url) if x[2] == row["psn_no"] and x[1] == row["agreement"])
    assert net == 0


def _run(*args):
    """The command in this process (conftest.puhui): what it does and says."""
    from conftest import puhui

    return puhui(*args)


def test_recoveries_cli_and_bad_input(paid, tmp_path):
    _, pf, _ = paid
    url = _ledger(paid, tmp_path)
    r = _run("claims", "recoveries", "--product", str(pf), "--data", str(SAMPLE), "--ledger",
             url, "--as-of", "2025-12-31", "--batch", "c1", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    csv = pd.read_csv(tmp_path / "o" / "recoveries.csv")
    assert {"psn_no", "agreement", "outcome", "quarter", "refund_amt", "booked_now_amt"} <= set(csv)
    assert (tmp_path / "o" / "recoveries.json").is_file() and "booked now" in r.stdout
    before = _recoveries(url)
    for args, say in (
            (["--product", "huhuibao-2025", "--as-of", "2025-12-31"], "agreement"),
            (["--product", str(pf), "--as-of", "end of year"], "--as-of"),
            (["--product", str(pf), "--as-of", "2025-12-31", "--data", str(tmp_path)],
             "missing")):
        cmd = ["claims", "recoveries", "--data", str(SAMPLE), "--ledger", url,
               "--batch", "c2", "--out", str(tmp_path / "o2"), *args]
        r = _run(*cmd)
        assert r.returncode == 2 and say in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _recoveries(url) == before


def test_a_product_without_agreements_has_none():
    assert agreements_of_product(load_product(product_path("huhuibao-2025"))) == {}
    with pytest.raises(InputError, match="agreement"):
        run_recoveries(load_product(product_path("huhuibao-2025")), SAMPLE, "sqlite:///:memory:",
                       "x", "2025-12-31")


def test_a_price_volume_cap_claws_back_the_products_part_above_it(paid, tmp_path, monkeypatch):
    """The sample's 2025 spending on SD-05 is about 100,000 yuan; with the cap lowered to
    one patient (75,000.00) the product recovers paid x (spending - cap) / spending."""
    import puhui.drug_lists as dl
    from puhui.drug_caps import clawback_fen

    real = dl.load_lists

    def one_patient(directory=None):
        lists = real(directory)
        it = lists["special-drugs-elderly"].items
        it.loc[it["hilist_code"] == "SD-05", "cap_patients"] = 1
        return lists

    monkeypatch.setattr(dl, "load_lists", one_patient)
    product = paid[0]
    url = _ledger(paid, tmp_path)
    early = run_recoveries(product, SAMPLE, url, "mid", "2025-06-30")
    assert early.summary["caps"][0]["status"] != "due" and \
        not any(x[1].endswith(":cap") for x in _recoveries(url))
    r = run_recoveries(product, SAMPLE, url, "ye", "2025-12-31")
    cap = r.summary["caps"][0]
    assert cap["cap_yuan"] == 75_000.0 and cap["spending_yuan"] > 75_000.0
    want = clawback_fen(round(cap["paid_yuan"] * 100), round(cap["spending_yuan"] * 100),
                        7_500_000)
    assert want > 0 and round(cap["clawback_yuan"] * 100) == want
    rows = [x for x in _recoveries(url) if x[1].endswith(":cap")]
    assert rows == [("ye", "special-drugs-elderly:SD-05:cap", "", "2025Q4", "CAP_CLAWBACK", want)]
    run_recoveries(product, SAMPLE, url, "ye2", "2026-03-31")       # booked once
    assert [x for x in _recoveries(url) if x[1].endswith(":cap")] == rows
