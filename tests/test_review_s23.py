"""Hostile review of session 23 (s23-rev1): LINES_NOT_GIVEN, the fen-as-floats guard,
ClaimsBatch(as_of=...), and a partial extract's take-back of what another product's
reversal undid. Truth: hand figures in each docstring (the tight terms: 300 yuan
deductible, 70 %, a 4,000 yuan limit, per product), a ledger holding one product alone,
and net paid per person read with SQL."""
import pandas as pd
import pytest

from puhui.claims.batch import run_batch
from puhui.claims.reverse import reverse_payout
from puhui.fund.files import read_raw
from puhui.fund.schema import POLICIES, SETTLEMENTS
from tests.ledgers import run_sql
from tests.test_decisions_per_product import _net_of, _products
from tests.test_money_safety import write_raw
from tests.test_reversal import _body, _reversal, city  # noqa: F401  (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _two(city, tmp_path, bodies, name):
    from tests.test_review_carried import _two_products
    return _two_products(city, tmp_path, bodies, name)


def _partial(city, tmp_path, name, bodies, first, last, policies_from):
    """An extract of ``first``..``last`` holding the city's settlements of those days and
    ``bodies``, with the two-product policies of ``policies_from``."""
    from tests.test_money_safety import _copy_fund
    from tests.test_reversal import _data

    st = read_raw(_data(city, tmp_path, name, bodies), SETTLEMENTS)
    day = pd.to_datetime(st["setl_time"]).dt.strftime("%Y-%m-%d")
    mine = st["setl_id"].isin({b["setl_id"] for b in bodies})
    keep = ((day >= first) & (day <= last) & st["refund_of"].isna()) | mine
    d = _copy_fund(city[0], tmp_path / (name + "-extract"), st[keep].reset_index(drop=True))
    write_raw(read_raw(policies_from, POLICIES), d, POLICIES)
    return d


def _eob_net(eobs, psn):
    return round(sum(e[e["psn_no"].astype(str) == psn]["payout_amt"].sum() for e in eobs) * 100)


# --- 4. a partial extract after another product's reversal -----------------------------

def _setup(city, tmp_path, url):
    """Both products pay T1 (1 March, 3,300: 2,100) and H1 (20 May, 2,000: 1,400);
    huhuibao reverses T1 at once (R1, 1 August)."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    data = _two(city, tmp_path, [t1, h], "a")
    run_batch(tight, f, data, url, "b1")
    first = run_batch(other, of, data, url, "o1").eob
    reverse_payout(tight, url, _reversal(t1, "R1", "2025-08-01"))
    return (tight, f), (other, of), psn, kind, data, t1, h, first


def test_quarantined_original_in_a_partial_extract_is_taken_back(city, tmp_path, new_ledger):
    """other-2025's extract of March to May holds H1 and T1 again, T1 broken (its
    identity off by one yuan, a quarantine rule). T1 was reversed under huhuibao: it was
    quarantined and so kept its 2,100 while H1 bore the deductible (3,290 paid where
    1,190 was due). The ledger's reversal decides it: it goes the reversed way (none of
    the row's amounts is used) and is taken back: 1,190, the EOB summing to it."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    bad = t1 | {"medfee_sumamt": t1["medfee_sumamt"] + 1}
    may = _partial(city, tmp_path, "may", [h, bad], "2025-03-01", "2025-05-31", data)
    res = run_batch(other, of, may, url, "o2", period=("2025-03-01", "2025-05-31"))
    t1_rows = res.eob[res.eob["setl_id"] == "T1"]
    assert set(t1_rows["status"]) == {"reversed"} and t1_rows["payout_amt"].sum() == -2100
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]


def test_person_absent_from_the_partial_extract_as_a_ledger_of_one_product(
        city, tmp_path, new_ledger):
    """other-2025's June extract holds none of the person's settlements: T1 is taken back
    (2,100) and H1, carried, keeps its 1,400 (the design: a carried settlement keeps what
    it was paid), exactly as a ledger of other-2025 alone whose August extract brings R1
    alone; a later extract holding H1 brings both to 1,190 (H1 then bears the deductible)."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    june = _partial(city, tmp_path, "june", [], "2025-06-01", "2025-06-30", data)
    res = run_batch(other, of, june, url, "o2", period=("2025-06-01", "2025-06-30"))
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    run_batch(other, of, data, alone, "o1")
    aug = _partial(city, tmp_path, "aug", [_reversal(t1, "R1", "2025-08-01")],
                   "2025-08-01", "2025-08-31", data)
    run_batch(other, of, aug, alone, "o2", period=("2025-08-01", "2025-08-31"))
    assert _net_of(url, psn, "other-2025") == _net_of(alone, psn, "other-2025") == 140000
    assert _eob_net([first, res.eob], psn) == 140000
    may = _partial(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31", data)
    eobs = [run_batch(other, of, may, u, "o3", period=("2025-05-01", "2025-05-31")).eob
            for u in (url, alone)]
    assert _net_of(url, psn, "other-2025") == _net_of(alone, psn, "other-2025") == 119000
    assert _eob_net([first, res.eob, eobs[0]], psn) == 119000


def test_the_products_own_reversal_is_not_taken_back_twice(city, tmp_path, new_ledger):
    """huhuibao's own reversal at once took its 2,100 back and re-decided H1 (1,190);
    huhuibao's May extract (H1 only) must book nothing more for T1: net 1,190."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    assert _net_of(url, psn, "huhuibao-2025") == 119000
    may = _partial(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31", data)
    res = run_batch(tight, f, may, url, "b2", period=("2025-05-01", "2025-05-31"))
    assert _net_of(url, psn, "huhuibao-2025") == 119000
    assert res.summary["reversed_elsewhere"]["settlements"] == 0
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE batch_id = 'b2' AND applies_to"
                        " = 'T1'")[0][0] == 0


def test_a_reversal_applied_in_the_other_products_batch(city, tmp_path, new_ledger):
    """R1 reaches huhuibao in a batch (its data holds T1, H1, R1), not at once;
    other-2025's May extract (H1 only) then takes T1's 2,100 back: 1,190."""
    (tight, f), (other, of) = _products(tmp_path)
    full, psn, kind, *_ = city
    t1, h = _body("T1", psn, "2025-03-01", 3300, kind), _body("H1", psn, "2025-05-20", 2000, kind)
    rev = _reversal(t1, "R1", "2025-08-01")
    data, later = _two(city, tmp_path, [t1, h], "a"), _two(city, tmp_path, [t1, h, rev], "b")
    url = new_ledger("l")
    run_batch(tight, f, data, url, "b1")
    eobs = [run_batch(other, of, data, url, "o1").eob]
    run_batch(tight, f, later, url, "b2")
    assert _net_of(url, psn, "huhuibao-2025") == 119000
    may = _partial(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31", data)
    eobs.append(run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31")).eob)
    assert _net_of(url, psn, "other-2025") == _eob_net(eobs, psn) == 119000


def test_two_reversals_of_one_person_at_once(city, tmp_path, new_ledger):
    """huhuibao reverses T1 and H1 at once; other-2025's June extract brings T3 (10 June,
    1,000): T1's 2,100 and H1's 1,400 are taken back and T3 bears the deductible:
    (1,000 - 300) x 70 % = 490 in all."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    reverse_payout(tight, url, _reversal(h, "R2", "2025-08-02"))
    t3 = _body("T3", psn, "2025-06-10", 1000, kind)
    june = _partial(city, tmp_path, "june", [t3], "2025-06-01", "2025-06-30", data)
    res = run_batch(other, of, june, url, "o2", period=("2025-06-01", "2025-06-30"))
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 49000
    assert res.summary["reversed_elsewhere"] == {"settlements": 2, "taken_back_yuan": -3500.0}
    again = run_batch(other, of, june, url, "o3", period=("2025-06-01", "2025-06-30"))
    assert _net_of(url, psn, "other-2025") == 49000
    assert again.summary["reversed_elsewhere"]["settlements"] == 0


def test_a_complete_extract_after_another_products_reversal_reconciles(city, tmp_path,
                                                                       new_ledger):
    """other-2025's extract of March to May, stated complete, holds H1 alone: T1 is taken
    back once (not as reversed elsewhere and again as not in the data), 1,190 in all,
    and the summary reconciles with the EOB and the ledger."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    part = _partial(city, tmp_path, "mm", [h], "2025-03-01", "2025-05-31", data)
    res = run_batch(other, of, part, url, "o2", period=("2025-03-01", "2025-05-31"),
                    complete=True)
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"], res.summary
    assert run_sql(url, "SELECT COUNT(*) FROM payments WHERE batch_id = 'o2' AND applies_to"
                        " = 'T1'")[0][0] == 1


def test_two_workers_take_back_as_one(city, tmp_path, new_ledger):
    """The May extract (H1 only) with two workers: 1,190, T1 taken back once."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    may = _partial(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31", data)
    res = run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31"),
                    workers=2, block_persons=50)
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]


@pytest.mark.parametrize("where", ["_take_back_paid_on_reversed", "_take_back"])
def test_a_run_killed_around_the_take_back_resumes(city, tmp_path, new_ledger, monkeypatch,
                                                   where):
    """The May batch dies just before the take-back (or just after it, before the
    not-in-data step); the same batch run again takes T1 back once and its EOB says so:
    1,190 in all, the EOB rows of every run of o2 that finished summing to it."""
    import puhui.claims.batch as batch

    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    may = _partial(city, tmp_path, "may", [h], "2025-05-01", "2025-05-31", data)

    def killed(*a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(batch, where, killed)
        with pytest.raises(KeyboardInterrupt):
            run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31"))
    res = run_batch(other, of, may, url, "o2", period=("2025-05-01", "2025-05-31"))
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reversed_elsewhere"] == {"settlements": 1, "taken_back_yuan": -2100.0}
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]


# --- 1. LINES_NOT_GIVEN ----------------------------------------------------------------

def _no_lines(src, tmp_path):
    import shutil

    d = tmp_path / "no_lines"
    shutil.copytree(src, d)
    (d / "settlement_lines.parquet").unlink()
    return d


def test_a_batch_without_lines_after_one_with_them_takes_nothing_back(small_city_dir,
                                                                     tmp_path):
    """b1 on the city with its lines pays special drugs; b2, the same data with the lines
    file missing, must leave every line benefit's net payment as it is (read with SQL).
    Review s23 found it took back every line payout (113,881.94 yuan), zeroed the limits'
    use and forgot the stored lines; since session 23 a batch without lines decides the
    settlements the ledger stored with their stored lines."""
    from puhui.products.model import load_product, product_path

    p = load_product(product_path("huhuibao-2025"))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    q = "SELECT benefit, SUM(payout_fen) FROM payments GROUP BY benefit ORDER BY benefit"
    state = ["SELECT policy_no, accumulator, used_fen FROM accumulators ORDER BY 1, 2",
             "SELECT setl_id, hilist_code, list_class, amount_fen FROM settlement_lines "
             "ORDER BY 1, 2, 3, 4",
             "SELECT setl_id FROM settlements ORDER BY 1",
             "SELECT setl_id, benefit, payout_fen, reason FROM decisions ORDER BY 1, 2"]
    run_batch(p, p.path, small_city_dir, url, "b1")
    before = run_sql(url, q)
    kept = [run_sql(url, x) for x in state]
    assert dict(before)["special_drugs"] > 0 and all(kept)
    b2 = run_batch(p, p.path, _no_lines(small_city_dir, tmp_path), url, "b2")
    assert run_sql(url, q) == before
    assert [run_sql(url, x) for x in state] == kept      # accumulators, lines, decisions
    assert (b2.eob["payout_amt"] == 0).all()
    assert not ((b2.eob["reason"] == "LINES_NOT_GIVEN") & (b2.eob["status"] == "paid")).any()
    # and the data with its lines again: nothing new; the stored settlements' line
    # benefits were decided in b2 with their stored lines as b3 decides them with the
    # data's: the same targets, the others LINES_NOT_GIVEN where b3 says NOT_COVERED
    b3 = run_batch(p, p.path, small_city_dir, url, "b3")
    assert run_sql(url, q) == before and (b3.eob["payout_amt"] == 0).all()
    cols = ["setl_id", "benefit", "target_amt", "status", "reason"]
    two, three = (b.eob[b.eob["benefit"] == "special_drugs"][cols].astype(str)
                  .sort_values("setl_id").reset_index(drop=True) for b in (b2, b3))
    assert (three["target_amt"].astype(float) > 0).any()
    assert two["target_amt"].tolist() == three["target_amt"].tolist()
    differ = two["reason"] != three["reason"]
    assert set(zip(two["reason"][differ], three["reason"][differ])) <= {
        ("LINES_NOT_GIVEN", "NOT_COVERED")}


# --- 2. fen held as floats ---------------------------------------------------------------

MONEY = ["medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
         "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay",
         "psn_part_amt"]


@pytest.fixture(scope="module")
def small(small_city_dir):
    import puhui
    return puhui.read_fund(small_city_dir)


@pytest.mark.parametrize("dtype", ["Float64", "double[pyarrow]", "float32", "decimal",
                                   "one NaN"])
def test_fen_as_floats_in_every_dtype_are_refused(small, dtype):
    """The guard sees through pandas' nullable floats (a pd.NA among them), pyarrow
    doubles, float32, Decimal and a NaN: each the city's amounts x 100, refused with a
    message, never paid and never a traceback."""
    from decimal import Decimal

    import numpy as np

    import puhui
    from puhui.errors import InputError

    st = small.settlements.assign(**{c: small.settlements[c] * 100 for c in MONEY})
    if dtype == "decimal":
        st = st.assign(**{c: [Decimal(f"{v:.0f}") for v in st[c]] for c in MONEY})
    elif dtype == "one NaN":
        st = st.assign(maf_pay=st["maf_pay"].where(st.index != 0, np.nan))
    else:
        st = st.astype({c: dtype for c in MONEY})
    with pytest.raises(InputError, match="look like fen held as floats"):
        puhui.adjudicate(st, small.policies, "huhuibao-2025", lines=small.lines)


def _whole_yuan_inpatient(small):
    """The city's settlements above 10,500 yuan (an inpatient extract, as an insurer whose
    benefit starts above 10,000 yuan asks for), every amount rounded to whole yuan the
    way a disclosure-controlled extract rounds them (the identity kept through
    psn_part_amt). Real yuan: nothing in them is fen."""
    st = small.settlements[small.settlements["medfee_sumamt"] > 10500].copy()
    for c in MONEY:
        st[c] = st[c].round(0)
    st["psn_part_amt"] = st["medfee_sumamt"] - st[["hifp_pay", "hifob_pay", "hifmi_pay",
                                                   "maf_pay"]].sum(axis=1)
    st["fulamt_ownpay_amt"] = np.minimum(st["fulamt_ownpay_amt"], st["psn_part_amt"])
    st["overlmt_selfpay"] = np.minimum(st["overlmt_selfpay"],
                                       st["psn_part_amt"] - st["fulamt_ownpay_amt"])
    return st.reset_index(drop=True)


import numpy as np  # noqa: E402  (used by the helper above)


def test_whole_yuan_inpatient_data_is_not_refused_as_fen(small, tmp_path):
    import puhui

    st = _whole_yuan_inpatient(small)
    assert len(st) >= 50 and st["medfee_sumamt"].median() > 10_000
    assert (st[MONEY].to_numpy() % 1 == 0).all()
    fund = puhui.Fund(small.persons, small.policies, st, None)     # an inpatient extract
    d = fund.write(tmp_path / "inpatient")          # the files `claims run` takes
    from tests.conftest import puhui as cli
    r = cli("claims", "run", "--product", "huhuibao-2025", "--data", d, "--ledger",
            f"sqlite:///{tmp_path / 'cli.db'}", "--batch", "b1", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    # refused by the API's guard unless said to be whole yuan (session 23), then it is
    # what the command pays
    from puhui.errors import InputError
    with pytest.raises(InputError, match="pass whole_yuan=True"):
        puhui.adjudicate(st, small.policies, "huhuibao-2025")
    with pytest.warns(UserWarning, match="LINES_NOT_GIVEN"):
        eob = puhui.adjudicate(st, small.policies, "huhuibao-2025", whole_yuan=True)
    cmd = pd.read_parquet(tmp_path / "o" / "eob.parquet")
    assert len(eob) and round(eob["payout_amt"].sum(), 2) == round(cmd["payout_amt"].sum(), 2)
    with pytest.warns(UserWarning, match="LINES_NOT_GIVEN"):
        b = puhui.ClaimsBatch("huhuibao-2025", f"sqlite:///{tmp_path / 'api.db'}", "b1",
                              whole_yuan=True).run(st, small.policies)
    assert round(b.paid_, 2) == round(cmd["payout_amt"].sum(), 2)


# --- 3. ClaimsBatch(as_of=...) -----------------------------------------------------------

@pytest.mark.parametrize("as_of", ["np", "np-ns", "ts-tz"])
def test_as_of_as_numpy_or_a_zoned_timestamp_is_the_business_date(small, tmp_path, as_of):
    """numpy's datetime64 of a day (what ``df['d'].to_numpy()[0]`` gives) was refused as
    'not datetime64'; a zoned midnight is that day. The ledger's every entry carries
    2025-12-31 (SQL)."""
    import puhui

    value = {"np": np.datetime64("2025-12-31"), "np-ns": np.datetime64("2025-12-31", "ns"),
             "ts-tz": pd.Timestamp("2025-12-31", tz="Asia/Shanghai")}[as_of]
    url = f"sqlite:///{tmp_path / 'l.db'}"
    b = puhui.ClaimsBatch("huhuibao-2025", url, "b1", as_of=value).run(small.head(300))
    assert b.paid_ > 0
    assert run_sql(url, "SELECT DISTINCT business_date FROM payments") == [("2025-12-31",)]


@pytest.mark.parametrize("as_of, says", [
    (pd.NaT, "NaT is not a date"), (np.datetime64("NaT"), "NaT is not a date"),
    ("2025-12-31 00:00:00", "as_of '2025-12-31 00:00:00': not a date"),
    ("1900-01-01", "as_of '1900-01-01': dates lie from"),
    ("2025-01-31", "after as_of 2025-01-31"), (20251231, "not int")])
def test_a_bad_as_of_speaks_of_the_parameter_not_the_option(small, tmp_path, as_of, says):
    """Each is a message naming ``as_of`` (it said ``--as-of``, the command's option, to an
    API user; NaT read 'a business date is a day'), never a traceback, nothing written."""
    import puhui
    from puhui.errors import InputError

    url = f"sqlite:///{tmp_path / 'l.db'}"
    with pytest.raises(InputError, match=says) as e:
        puhui.ClaimsBatch("huhuibao-2025", url, "b1", as_of=as_of).run(small.head(300))
    assert "--as-of" not in str(e.value)


def test_a_resumed_batch_with_another_as_of_names_the_parameter(small, tmp_path):
    import puhui
    from puhui.errors import InputError

    url = f"sqlite:///{tmp_path / 'l.db'}"
    cut = small.head(300)
    puhui.ClaimsBatch("huhuibao-2025", url, "b1", as_of="2025-12-31").run(cut)
    with pytest.raises(InputError, match=r"resume it with as_of=2025-12-31 \(or without as_of\)"):
        puhui.ClaimsBatch("huhuibao-2025", url, "b1", as_of="2026-01-31").run(cut)


def _many_small_visits(small, copies=8):
    """The city's settlements and, ``copies`` times over, its visits under 100 yuan under
    new ids (as a city's pharmacy and clinic settlements outnumber its hospital stays):
    the median visit falls under 100 yuan."""
    st = small.settlements
    cheap = st[(st["medfee_sumamt"] < 100) & st["refund_of"].isna()]
    more = [cheap.assign(setl_id=cheap["setl_id"] + f"-{k}") for k in range(copies)]
    return pd.concat([st, *more], ignore_index=True)


def test_fen_as_floats_with_mostly_small_visits_are_refused(small):
    import puhui
    from puhui.errors import InputError

    st = _many_small_visits(small)
    assert st["medfee_sumamt"].median() < 100
    with pytest.warns(UserWarning, match="LINES_NOT_GIVEN"):        # no lines tie them
        yuan = puhui.adjudicate(st, small.policies, "huhuibao-2025")
    assert yuan["payout_amt"].sum() > 0
    fen = st.assign(**{c: st[c] * 100 for c in MONEY})
    with pytest.raises(InputError, match="look like fen held as floats"):
        puhui.adjudicate(fen, small.policies, "huhuibao-2025")


def test_a_batch_without_lines_reads_lines_not_given_in_its_files_and_both_reports(
        small_city_dir, tmp_path):
    """`claims run --lang zh` on the city without settlement_lines.parquet: eob.parquet
    carries LINES_NOT_GIVEN (special drugs, zero, nothing paid) and no special-drug row
    says NOT_COVERED where the data with lines has something of its kind; summary.json
    counts it among the zero decisions; the Chinese report gives its meaning in Chinese
    and the English one in English; the ledger keeps no decision for it (SQL)."""
    import json

    from tests.conftest import puhui as cli

    d = _no_lines(small_city_dir, tmp_path)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    pages = {}
    for lang in ("zh", "en"):
        out = tmp_path / lang
        r = cli("claims", "run", "--product", "huhuibao-2025", "--data", d, "--ledger",
                url if lang == "zh" else f"sqlite:///{tmp_path / 'en.db'}", "--batch", "b1",
                "--out", out, "--lang", lang)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        pages[lang] = next(out.glob("*.html")).read_text(encoding="utf-8")
    eob = pd.read_parquet(tmp_path / "zh" / "eob.parquet")
    lng = eob[eob["reason"] == "LINES_NOT_GIVEN"]
    assert len(lng) and set(lng["status"]) == {"zero"} and (lng["payout_amt"] == 0).all()
    summary = json.loads((tmp_path / "zh" / "summary.json").read_text())
    zero = sum(x["rows"] for x in summary["by_benefit_and_status"]
               if x["benefit"] == "special_drugs" and x["status"] == "zero")
    assert zero >= (lng["benefit"] == "special_drugs").sum()
    assert "本责任按结算明细赔付" in pages["zh"] and "LINES_NOT_GIVEN" in pages["zh"]
    assert "none were given" in pages["en"]
    assert run_sql(url, "SELECT COUNT(*) FROM decisions WHERE reason = 'LINES_NOT_GIVEN'") \
        == [(0,)]


def test_a_quarantined_reversal_in_a_partial_extract(city, tmp_path, new_ledger):
    """other-2025's extract of May to August holds H1 and R1 (applied at once under
    huhuibao already) with R1 broken (identity off by one yuan): T1 is not in the data;
    the ledger's reversal still decides T1, so other-2025 takes its 2,100 back: 1,190."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    rev = _reversal(t1, "R1", "2025-08-01")
    bad = rev | {"medfee_sumamt": rev["medfee_sumamt"] - 1}
    part = _partial(city, tmp_path, "ma", [h, bad], "2025-05-01", "2025-08-31", data)
    res = run_batch(other, of, part, url, "o2", period=("2025-05-01", "2025-08-31"))
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"]


@pytest.mark.parametrize("odd", ["complex", "all NaN cost"])
def test_odd_money_columns_are_a_message_without_noise(small, odd, recwarn):
    """A complex column passed the 'is it numbers' test and ended in pyarrow's
    ArrowNotImplementedError (a traceback); a cost column of NaN only made the guard's
    median print numpy's 'All-NaN slice encountered'. Both are a message, no warning."""
    import puhui
    from puhui.errors import InputError

    st = small.settlements
    st = (st.assign(maf_pay=st["maf_pay"].astype(complex)) if odd == "complex"
          else st.assign(medfee_sumamt=np.nan))
    with pytest.raises(InputError, match="not an amount|not null"):
        puhui.adjudicate(st, small.policies, "huhuibao-2025", lines=small.lines)
    assert not [w for w in recwarn if issubclass(w.category, (RuntimeWarning,))
                or "Complex" in w.category.__name__]


def test_a_duplicated_original_in_a_partial_extract(city, tmp_path, new_ledger):
    """As the quarantined original above, but T1 sent twice (two rows of one id: both
    quarantined as duplicates, as they stay): the ledger's reversal still decides T1,
    so other-2025 takes its 2,100 back: 1,190, the EOB summing to it and reconciling."""
    url = new_ledger("l")
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    part = _partial(city, tmp_path, "dup", [h, t1, t1], "2025-03-01", "2025-05-31", data)
    assert (read_raw(part, SETTLEMENTS)["setl_id"] == "T1").sum() == 2
    res = run_batch(other, of, part, url, "o2", period=("2025-03-01", "2025-05-31"))
    assert _net_of(url, psn, "other-2025") == _eob_net([first, res.eob], psn) == 119000
    assert res.summary["reconciles"] and res.summary["eob_matches_ledger"], res.summary


def test_the_command_on_a_complete_extract_writes_the_take_back_once(city, tmp_path):
    """`puhui claims run --complete --workers 2` on other-2025's March-May extract (H1
    only) after huhuibao's reversal of T1 at once: eob.parquet's rows for the person sum
    to -2,310 (T1 -2,100 once, H1 -210), as the ledger's entries of the batch (SQL), and
    summary.json reconciles."""
    import json

    from tests.conftest import puhui as cli

    url = f"sqlite:///{tmp_path / 'l.db'}"
    (tight, f), (other, of), psn, kind, data, t1, h, first = _setup(city, tmp_path, url)
    part = _partial(city, tmp_path, "mm", [h], "2025-03-01", "2025-05-31", data)
    r = cli("claims", "run", "--product", of, "--data", part, "--ledger", url, "--batch",
            "o2", "--out", tmp_path / "o2", "--period", "2025-03-01:2025-05-31", "--complete",
            "--workers", "2")
    assert r.returncode == 0, r.stderr
    eob = pd.read_parquet(tmp_path / "o2" / "eob.parquet")
    mine = eob[eob["psn_no"].astype(str) == psn]
    assert round(mine["payout_amt"].sum() * 100) == -231000
    assert run_sql(url, "SELECT SUM(payout_fen) FROM payments WHERE batch_id = 'o2' AND"
                        " psn_no = ?", (psn,)) == [(-231000,)]
    s = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert s["reconciles"] and s["eob_matches_ledger"]
    assert s["reversed_elsewhere"] == {"settlements": 1, "taken_back_yuan": -2100.0}
