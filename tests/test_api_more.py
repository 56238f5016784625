"""The rest of the Python API of issue 21 point 1: ``pay_direct`` (as ``puhui claims
direct``), ``what_if`` (as ``puhui what-if``) and the elderly cover's lifetime price
(``Pricer.lifetime_``). The commands are the truth where they exist; the amounts are
checked by hand (the payout from its own terms) and by the actuarial identity of a
level premium (PV of claims over the premium annuity)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import puhui
from puhui.claims.frames import settlement_record
from puhui.errors import InputError
from tests.conftest import puhui as run_puhui
from tests.ledgers import run_sql


@pytest.fixture(scope="module")
def fund(small_city_dir):
    return puhui.read_fund(small_city_dir)


def _largest_2025_bill(fund):
    """A 2025 settlement of a huhuibao-2025 policyholder: the largest in-list self-pay."""
    st = fund.settlements
    mine = fund.policies.loc[fund.policies["product_id"] == "huhuibao-2025", "psn_no"]
    s25 = st[(st["setl_time"].dt.year == 2025) & st["psn_no"].isin(mine) & st["refund_of"].isna()]
    inlist = s25["psn_part_amt"] - s25["fulamt_ownpay_amt"] - s25["overlmt_selfpay"]
    return s25.loc[inlist.idxmax()]


def test_pay_direct_answers_as_claims_direct(fund, tmp_path):
    bill = _largest_2025_bill(fund)
    one = fund.people([bill["psn_no"]])
    st, lines = one.settlements, one.lines
    url_a = f"sqlite:///{tmp_path / 'a.db'}"
    puhui.ClaimsBatch("huhuibao-2025", url_a, "before").run(
        st[st["setl_id"] != bill["setl_id"]], one.policies,
        lines[lines["setl_id"] != bill["setl_id"]], one.persons)
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")          # the same ledger twice
    url_b = f"sqlite:///{tmp_path / 'b.db'}"
    eob = puhui.pay_direct("huhuibao-2025", url_a, bill, lines=fund.lines)
    (tmp_path / "s.json").write_text(json.dumps(settlement_record(bill, fund.lines)))
    r = run_puhui("claims", "direct", "--product", "huhuibao-2025", "--ledger", url_b,
                  "--settlement", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == eob
    assert eob["total_payout"] > 0
    for b in eob["benefits"]:                    # each benefit's payout by hand
        due = max(b["eligible_amt"] - b["deductible_amt"], 0) * b["ratio"]
        assert b["payout_amt"] == pytest.approx(due, abs=0.01) or b["reason"] != "PAID"
    total = "SELECT SUM(payout_fen) FROM payments WHERE applies_to = ?"
    assert run_sql(url_a, total, (bill["setl_id"],)) == run_sql(url_b, total, (bill["setl_id"],))
    assert run_sql(url_a, total, (bill["setl_id"],))[0][0] == round(eob["total_payout"] * 100)
    again = puhui.pay_direct("huhuibao-2025", url_a, bill.to_dict() | {
        "setl_time": str(bill["setl_time"])}, lines=fund.lines)       # a dict, as JSON
    assert again["already_decided"] and again["total_payout"] == eob["total_payout"]
    with pytest.raises(InputError, match="integers look like fen"):
        puhui.pay_direct("huhuibao-2025", url_a, bill.astype(object).replace(
            {bill["medfee_sumamt"]: int(round(bill["medfee_sumamt"] * 100))}).infer_objects())


def _command_table(text: str) -> dict:
    """The rows ``puhui what-if`` prints: benefit -> its four numbers."""
    rows = {}
    for line in text.splitlines()[2:]:
        name, *nums = line.split()
        rows[name] = [float(x.replace(",", "")) for x in nums]
    return rows


def test_what_if_gives_the_numbers_of_puhui_what_if(priced_small_city):
    _, out, _ = priced_small_city
    r = run_puhui("what-if", out, "--benefit", "hospital", "--deductible", "20000",
                  "--ratio", "0.6")
    assert r.returncode == 0, r.stderr
    t = puhui.what_if(out, "hospital", deductible=20000, ratio=0.6)
    cmd = _command_table(r.stdout)
    assert list(cmd) == t.index.tolist()
    for b, nums in cmd.items():
        assert np.allclose(t.loc[b].round(2).to_numpy(), nums), b
    assert t.loc["hospital", "pure_after"] < t.loc["hospital", "pure_before"]
    others = t.drop(index=["hospital", "total"])
    assert np.allclose(others["pure_after"], others["pure_before"])
    assert np.isclose(t.loc["total", "pure_after"], t["pure_after"].drop("total").sum())
    target = json.loads((out / "pricing.json").read_text())["basis"]["target_loss_ratio"]
    assert np.allclose(t["gross_after"], t["pure_after"] / target)
    # the priced terms given again: nothing moves
    ratio = puhui.load_product("huhuibao-2025").benefits[0].raw["ratio"]
    same = puhui.what_if(out, "hospital", ratio=float(ratio))
    assert np.allclose(same["pure_after"], same["pure_before"])


def test_bad_what_ifs_are_refused(priced_small_city):
    _, out, _ = priced_small_city
    with pytest.raises(InputError, match="give a change"):
        puhui.what_if(out, "hospital")
    with pytest.raises(InputError, match="no change deductable"):
        puhui.what_if(out, "hospital", deductable=1)
    with pytest.raises(InputError, match=re.escape("limit=nan")):
        puhui.what_if(out, "hospital", limit=float("nan"))
    with pytest.raises(InputError, match="not in huhuibao-2025"):
        puhui.what_if(out, "dental", ratio=0.5)
    with pytest.raises(InputError, match="give a fitted Pricer or a pricing's folder"):
        puhui.what_if(42, "hospital", ratio=0.5)


def test_the_elderly_covers_lifetime_price(fund):
    """The level premium of each entry age is the PV of its claims over its premium
    annuity (the equivalence principle), and gross is pure over the target."""
    pricer = puhui.Pricer("elderly-medical-60-80", seed=1).fit(fund)
    life = pricer.lifetime_
    assert life.index.tolist() == [e["entry_age"] for e in pricer.pricing_["lifetime"]["entry_ages"]]
    assert life.index.min() >= 60 and life.index.max() <= 80
    level = life["pv_claims"] / life["premium_annuity"]
    assert np.allclose(life["level_pure_premium"], level, rtol=1e-3)
    target = pricer.pricing_["basis"]["target_loss_ratio"]
    assert np.allclose(life["level_gross_premium"], life["level_pure_premium"] / target,
                       atol=0.01)
    assert (life["level_pure_premium_with_lapse"] > 0).all()
    steps = pricer.step_rated_
    assert steps["min_age"].iloc[0] == 60 and (steps["gross_premium"] > 0).all()
    assert set(pricer.claims_by_age_.columns) == {"men", "women"}
    assert pricer.claims_by_age_.index.min() == 60
