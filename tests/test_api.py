"""The public Python API (issue 21, point 1; docs/api.md): ``import puhui`` is light,
``read_fund`` gives yuan and refuses what ``puhui validate`` refuses, ``adjudicate``
pays what a claims batch pays (the batch is the independent path) and refuses fen,
``Pricer`` gives ``puhui price``'s figures. The API's docstring examples are doctests
(pytest's --doctest-modules over src/puhui: ``pytest src/puhui/api.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import puhui
from puhui.errors import InputError
from tests.conftest import puhui as run_puhui

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data-samples" / "city"


def _fen(x) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=float) * 100).astype("int64")


@pytest.fixture(scope="module")
def small(small_city_dir):
    return puhui.read_fund(small_city_dir)


def test_import_puhui_loads_neither_pandas_nor_statsmodels():
    code = ("import sys, puhui; heavy = [m for m in ('pandas', 'statsmodels', 'numpy', "
            "'pyarrow', 'scipy') if m in sys.modules]; print(heavy); "
            "print(sorted(puhui.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert "Pricer" in out[1] and "adjudicate" in out[1]


def test_every_name_of_all_resolves():
    for name in puhui.__all__:
        assert getattr(puhui, name) is not None, name
    with pytest.raises(AttributeError):
        puhui.no_such_name  # noqa: B018


def test_read_fund_holds_yuan_as_the_files_do(small_city_dir, small):
    """Amounts equal the files' own values read by pyarrow directly (not puhui's reader)."""
    raw = pq.read_table(small_city_dir / "settlements.parquet").to_pandas()
    assert small.settlements["medfee_sumamt"].dtype == "float64"
    assert np.array_equal(_fen(small.settlements["medfee_sumamt"]), _fen(raw["medfee_sumamt"]))
    assert small.settlements["setl_id"].tolist() == raw["setl_id"].astype(str).tolist()
    pol = pq.read_table(small_city_dir / "policies.parquet").to_pandas()
    assert np.array_equal(_fen(small.policies["premium"]), _fen(pol["premium"]))
    assert (small.policies["premium"] > 100).all()      # yuan (129), not fen (12,900)


def test_read_fund_refuses_with_the_message_of_puhui_validate(city_copy):
    path = city_copy / "settlements.parquet"
    st = pq.read_table(path).to_pandas()
    st.loc[st.index[:2], "medfee_sumamt"] += 1.0          # the identity broken twice
    st.to_parquet(path, index=False)
    with pytest.raises(InputError) as err:
        puhui.read_fund(city_copy)
    r = run_puhui("validate", city_copy)
    assert r.returncode == 2
    assert "medfee_sumamt = hifp_pay" in str(err.value)
    assert r.stderr.strip() == str(err.value).replace(
        "\n" + str(city_copy) + ":", "\nerror: " + str(city_copy) + ":").strip()


def test_list_and_load_products():
    table = puhui.list_products()
    files = sorted(p.stem for p in (ROOT / "actuarial" / "products").glob("*.toml"))
    assert table["id"].tolist() == files
    row = table.set_index("id").loc["huhuibao-2024"]
    assert row["period"] == "2024-01-01 to 2024-12-31"
    p = puhui.load_product("huhuibao-2024")
    assert puhui.load_product(p) is p
    assert puhui.load_product(ROOT / "actuarial/products/huhuibao-2024.toml").id == p.id
    with pytest.raises(InputError, match="no such product.*did you mean 'huhuibao-2025'"):
        puhui.load_product("huhuibao-2052")


@pytest.fixture(scope="module")
def sample_batch(tmp_path_factory):
    """``puhui claims run`` of huhuibao-2025 on the shipped sample, on a new ledger."""
    out = tmp_path_factory.mktemp("api-batch")
    r = run_puhui("claims", "run", "--product", "huhuibao-2025", "--data", SAMPLE,
                  "--ledger", f"sqlite:///{out / 'l.db'}", "--batch", "api", "--out", out)
    assert r.returncode == 0, r.stderr
    return pd.read_parquet(out / "eob.parquet")


def test_adjudicate_pays_what_the_batch_pays_on_the_sample(sample_batch):
    fund = puhui.read_fund(SAMPLE)
    eob = puhui.adjudicate(fund.settlements, fund.policies, "huhuibao-2025", lines=fund.lines,
                           persons=fund.persons)
    assert eob.columns.tolist() == ["setl_id", "psn_no", "policy_no", "benefit", "eligible_amt",
                                    "deductible_amt", "ratio", "payout_amt", "status", "reason"]
    per_person = eob.groupby("psn_no")["payout_amt"].sum()
    batch = sample_batch.groupby("psn_no")["payout_amt"].sum()
    both = pd.concat([per_person, batch], axis=1, keys=["api", "batch"]).fillna(0)
    assert (both["batch"] > 0).sum() > 50                  # something is paid
    assert np.array_equal(_fen(both["api"]), _fen(both["batch"]))
    # and row by row: each settlement and benefit, amounts, status and reason
    m = eob.merge(sample_batch, on=["setl_id", "benefit"], suffixes=("", "_b"),
                  validate="one_to_one")
    assert len(m) == len(eob) == len(sample_batch)
    for c in ("eligible_amt", "deductible_amt", "payout_amt"):
        assert np.array_equal(_fen(m[c]), _fen(m[c + "_b"])), c
    assert (m["status"] == m["status_b"].astype(str)).all()
    assert (m["reason"] == m["reason_b"].astype(str)).all()


def test_adjudicate_refuses_fen(small):
    st = small.settlements
    money = ["medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "psn_part_amt"]
    fen = st.assign(**{c: _fen(st[c]) for c in money})
    with pytest.raises(InputError, match="integers look like fen"):
        puhui.adjudicate(fen, small.policies, "huhuibao-2025")
    with pytest.raises(InputError, match="premium holds integers"):
        puhui.adjudicate(st, small.policies.assign(premium=_fen(small.policies["premium"])),
                         "huhuibao-2025")


def test_adjudicate_refuses_wrong_types_with_validation_messages(small):
    bad = small.settlements.assign(hosp_lv=small.settlements["hosp_lv"].astype(str) + "x")
    with pytest.raises(InputError) as err:
        puhui.adjudicate(bad, small.policies, "huhuibao-2025")
    text = str(err.value)
    assert "settlements.parquet: column hosp_lv" in text and "puhui-frames" not in text
    text_amt = small.settlements.assign(psn_part_amt=small.settlements["psn_part_amt"].astype(str))
    with pytest.raises(InputError, match="psn_part_amt is not an amount"):
        puhui.adjudicate(text_amt, small.policies, "huhuibao-2025")


def test_2024_policies_are_not_paid_under_2025_terms(small):
    """Only the product's own policies are applied: a settlement of 2024 gets nothing
    under huhuibao-2025. The internal calculator given every policy pays some of them
    (what the API exists to prevent), so this can fail."""
    from puhui.benefits.calculator import adjudicate as calculator
    from puhui.fund.files import read_fund as read_engine

    eob = puhui.adjudicate(small.settlements, small.policies, "huhuibao-2025", lines=small.lines)
    when = small.settlements.set_index("setl_id")["setl_time"]
    paid = eob[eob["payout_amt"] != 0]
    assert len(paid) and (when.reindex(paid["setl_id"]).dt.year == 2025).all()
    pol25 = set(small.policies.loc[small.policies["product_id"] == "huhuibao-2025", "policy_no"])
    assert set(paid["policy_no"]) <= pol25
    data = read_engine(small.directory)
    st = data.settlements[data.settlements["refund_of"].isna()]
    naive = calculator(puhui.load_product("huhuibao-2025"), st, data.policies, data.lines)
    naive_paid = naive.total_payout() > 0
    assert (naive.settlements["setl_time"].dt.year[naive_paid] == 2024).any()


def test_a_reversed_pair_is_as_if_neither_were_there(small):
    """A reversal added for a paid settlement: the API drops the pair, so every other
    settlement is paid what it is paid when both rows are removed by hand."""
    st, pol = small.settlements, small.policies
    eob = puhui.adjudicate(st, pol, "huhuibao-2025", lines=small.lines)
    target = eob.loc[eob["payout_amt"] > 0, "setl_id"].iloc[0]
    orig = st[st["setl_id"] == target]
    money = [c for c in st.columns if st[c].dtype == "float64"]
    rev = orig.assign(setl_id="REV-" + target, refund_of=target,
                      **{c: -orig[c] for c in money})
    with_rev = puhui.adjudicate(pd.concat([st, rev], ignore_index=True), pol, "huhuibao-2025",
                                lines=small.lines)
    lines = small.lines[small.lines["setl_id"] != target]
    without = puhui.adjudicate(st[st["setl_id"] != target], pol, "huhuibao-2025", lines=lines)
    gone = with_rev[with_rev["setl_id"].isin([target, "REV-" + target])]
    assert set(gone["status"]) == {"reversed"} and (gone["payout_amt"] == 0).all()
    assert set(gone["reason"]) == {"REVERSAL", "REVERSED"}
    rest = with_rev[~with_rev["setl_id"].isin([target, "REV-" + target])]
    a = rest.set_index(["setl_id", "benefit"])["payout_amt"].sort_index()
    b = without.set_index(["setl_id", "benefit"])["payout_amt"].sort_index()
    assert a.index.equals(b.index) and np.array_equal(_fen(a), _fen(b))


def test_a_policy_of_the_product_outside_its_period_is_refused(small):
    pol = small.policies.copy()
    i = pol.index[pol["product_id"] == "huhuibao-2025"][0]
    pol.loc[i, "product_id"] = "huhuibao-2024"            # a 2025 policy under 2024 terms
    with pytest.raises(InputError, match="outside its policy period 2024-01-01 to 2024-12-31"):
        puhui.adjudicate(small.settlements, pol, "huhuibao-2024")
    with pytest.raises(InputError, match="no policy is for product beijing-phjkb-2024"):
        puhui.adjudicate(small.settlements, small.policies, "beijing-phjkb-2024")


def test_pricer_gives_the_figures_of_puhui_price(priced_small_city, tmp_path):
    """`puhui price --seed 5` (with its default backtest) against the estimator on the
    same data read as a Fund (written again to a temporary folder and priced there)."""
    data, out, _ = priced_small_city
    pricer = puhui.Pricer("huhuibao-2025", seed=5, backtest=True)
    assert pricer.fit(puhui.read_fund(data)) is pricer
    text = (out / "pricing.json").read_text(encoding="utf-8")
    assert pricer.to_json() + "\n" == text
    f = json.loads(text)
    assert pricer.pure_premium_.to_dict() == f["pure_premium"]
    assert pricer.gross_premium_ == f["gross_premium"]
    assert pricer.expected_loss_ratio_ == f["expected_loss_ratio"]
    assert pricer.loss_ratio_interval_.to_dict() == f["loss_ratio_interval"]
    table = pricer.premium_table_
    assert table.loc["total", "gross_premium"] == f["gross_premium"]
    target = f["basis"]["target_loss_ratio"]
    assert table.loc["hospital", "gross_premium"] == round(f["pure_premium"]["hospital"] / target, 2)
    html = pricer.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "huhuibao-2025" in html and f"{f['pure_premium']['total']:,.2f}" in html
    pricer.write(tmp_path / "w")
    assert (tmp_path / "w" / "pricing.json").read_text(encoding="utf-8") == text
    # a what-if from the fitted pricer is the one from the command's folder
    a = pricer.what_if("hospital", deductible=20000, drop_drugs=())
    b = puhui.what_if(out, "hospital", deductible=20000)
    assert a.equals(b)
    assert pricer.lifetime_ is None and pricer.step_rated_ is None     # an annual cover


def test_an_unfitted_pricer_says_so():
    with pytest.raises(InputError, match="not fitted"):
        puhui.Pricer("huhuibao-2025").to_json()
    with pytest.raises(InputError, match="give a Fund"):
        puhui.Pricer("huhuibao-2025").fit(42)
