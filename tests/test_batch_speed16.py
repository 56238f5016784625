"""Session 16 (issue 19): the claims batch's cheaper block work writes the same things.

The EOB parts a block sends to the EOB file hold each settlement's ids once
(``LeanPart``); the accumulators are grouped by policy once for all benefits. Neither
may change a byte of eob.parquet, a row of the report or a row of the ledger."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from puhui.claims import batch, eob_file
from puhui.claims.batch import eob_categories, run_batch
from puhui.claims.eob_file import EobWriter, LeanPart, UniformPart
from puhui.products.model import load_product, product_path

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture
def city(city_1500_2025):
    return city_1500_2025


def test_lean_parts_prepare_exactly_as_their_frames(city, tmp_path, monkeypatch):
    """Every lean part of a batch (people without a policy, the insured's decisions,
    reversals among them) gives the Arrow table - schema and pandas metadata included -,
    the report's rows and the reasons its plain frame gives."""
    real = eob_file.prepare_part
    seen = []

    def checked(part, cats):
        got = real(part, cats)
        if isinstance(part, UniformPart):     # (session 18: its rows made when written)
            want = real(part.to_frame(), cats)
            assert got.table.arrow().equals(want.table)
            assert got.table.arrow().schema.equals(want.table.schema, check_metadata=True)
            pd.testing.assert_frame_equal(got.report_rows, want.report_rows)
            pd.testing.assert_series_equal(got.reasons, want.reasons)
            seen.append(part)
        elif isinstance(part, LeanPart):
            want = real(part.to_frame(), cats)
            assert got.table.equals(want.table)
            assert got.table.schema.equals(want.table.schema, check_metadata=True)
            pd.testing.assert_frame_equal(got.report_rows, want.report_rows)
            pd.testing.assert_series_equal(got.reasons, want.reasons)
            seen.append(part)
        return got

    monkeypatch.setattr(eob_file, "prepare_part", checked)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    w = EobWriter(tmp_path / "eob.parquet", PRODUCT)
    run_batch(PRODUCT, PRODUCT.path, city, url, "b1", block_persons=300, eob_sink=w)
    w.close()
    assert len(seen) >= 4
    assert any("uniform" in p.attrs for p in seen)
    assert any(p.attrs.get("status_counts", {}).get("reversed") for p in seen)
    assert any(p.attrs.get("status_counts", {}).get("paid") for p in seen)


def _no_policy_rows_before(st, product):
    """EOB rows of people without a policy as built before session 16 (a plain frame,
    a Python string per row): the reference."""
    k = len(product.benefits)
    n = len(st)
    cats = eob_categories(product)

    def cat(col, value_codes):
        return pd.Categorical.from_codes(value_codes, categories=cats[col])

    out = pd.DataFrame({
        "setl_id": np.repeat(st["setl_id"].to_numpy(), k),
        "psn_no": np.repeat(st["psn_no"].astype(str).to_numpy(), k),
        "policy_no": None,
        "benefit": cat("benefit", np.tile(np.arange(k), n)),
        "eligible_amt": 0.0, "deductible_amt": 0.0, "ratio": 0.0, "payout_amt": 0.0,
        "target_amt": 0.0,
        "status": cat("status", np.full(n * k, cats["status"].index("denied"))),
        "reason": cat("reason", np.full(n * k, cats["reason"].index("NO_POLICY"))),
        "entry": cat("entry", np.zeros(n * k, dtype="int64"))})
    out.attrs["uniform"] = ("denied", n)
    return out


def test_eob_file_and_summary_as_written_from_plain_frames(city, tmp_path, monkeypatch):
    """The EOB file a batch writes through lean parts is byte for byte the file the
    parts built as plain frames (the code before session 16: a Python string per row)
    make, and the summaries and the report's inputs are equal; so for a second batch on
    the same ledger (nothing paid twice, ALREADY_PAID rows), and with reversals."""
    outs = {}
    for way in ("lean", "frames"):
        if way == "frames":
            monkeypatch.setattr(batch, "_lean_ids", lambda *a: False)
            monkeypatch.setattr(batch, "_no_policy_rows", _no_policy_rows_before)
        url = f"sqlite:///{tmp_path / way / 'l.db'}"
        (tmp_path / way).mkdir()
        sums = []
        for b in ("b1", "b2"):
            path = tmp_path / way / f"{b}.parquet"
            w = EobWriter(path, PRODUCT)
            sink = w if way == "lean" else (lambda part, w=w: w(part))
            res = run_batch(PRODUCT, PRODUCT.path, city, url, b, block_persons=300,
                            eob_sink=sink, workers=1)
            w.close()
            rows, reasons = w.report_inputs()
            sums.append((res.summary, path.read_bytes(), rows.reset_index(drop=True),
                         reasons.sort_index()))
        outs[way] = sums
    for (s1, b1, r1, n1), (s2, b2, r2, n2) in zip(outs["lean"], outs["frames"]):
        assert s1 == s2
        assert b1 == b2
        pd.testing.assert_frame_equal(r1, r2)
        pd.testing.assert_series_equal(n1, n2)
    first, second = outs["lean"][0][0], outs["lean"][1][0]
    assert first["paid_this_batch_yuan"] > 0 and second["paid_this_batch_yuan"] == 0
    assert first["settlements_by_status"].get("reversed", 0) > 0
    assert first["settlements_by_status"].get("denied", 0) > 0


def test_lean_part_to_frame_repeats_ids_per_row():
    part = LeanPart(pd.DataFrame({"benefit": ["a", "b", "a", "b"]}),
                    {"setl_id": (np.array(["S1", "S2"], dtype=object), np.array([0, 0, 1, 1])),
                     "policy_no": (np.array([None], dtype=object), np.zeros(4, "int64"))},
                    ["setl_id", "policy_no", "benefit"])
    f = part.to_frame()
    assert f.columns.tolist() == ["setl_id", "policy_no", "benefit"]
    assert f["setl_id"].tolist() == ["S1", "S1", "S2", "S2"]
    assert f["policy_no"].tolist() == [None] * 4


def test_lean_ids_only_for_the_calculators_shape():
    """A block's EOB holds ids once per settlement only where its decisions repeat the
    same settlements benefit after benefit and the ids are text."""
    long = pd.DataFrame({"setl_id": ["S1", "S2"] * 2, "psn_no": ["P", "P"] * 2,
                         "policy_no": [None, "X"] * 2}, dtype=object)
    rev = pd.DataFrame({"setl_id": pd.Series([], dtype=object),
                        "psn_no": pd.Series([], dtype=object)})
    assert batch._lean_ids(long, rev, 2, 2)
    assert not batch._lean_ids(long.iloc[:3], rev, 2, 1)
    assert not batch._lean_ids(long.astype({"setl_id": "category"}), rev, 2, 2)
    assert not batch._lean_ids(long.iloc[:0], rev, 2, 0)


def _accumulators_per_benefit(product, dec, pol_no):
    """The accumulators as computed before session 16 (one groupby per benefit and
    accumulator, merged row by row): the reference."""
    rows = []
    has = pd.notna(pol_no)
    if not has.any():
        return rows
    for b in product.benefits:
        la = b.layer
        for acc, arr in ((la.deductible_accumulator, dec.deductible[b.id]),
                         (la.limit_accumulator, dec.payout[b.id])):
            if not acc:
                continue
            s = pd.Series(arr[has]).groupby(pol_no[has]).sum()
            rows += [(p, acc, int(v)) for p, v in s.items()]
    merged: dict = {}
    for p, acc, v in rows:
        merged[(p, acc)] = merged.get((p, acc), 0) + v
    return [(p, a, v) for (p, a), v in merged.items()]


def _benefit(bid, deductible, limit):
    return SimpleNamespace(id=bid, layer=SimpleNamespace(deductible_accumulator=deductible,
                                                         limit_accumulator=limit))


#: Huhuibao's benefits, and benefits sharing accumulators (and one without a deductible)
SHARED = SimpleNamespace(benefits=[_benefit("a", "deductible:all", "limit:ab"),
                                   _benefit("b", "deductible:all", "limit:ab"),
                                   _benefit("c", None, "limit:c"),
                                   _benefit("d", "deductible:d", "limit:ab")])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("product", [PRODUCT, SHARED], ids=["huhuibao", "shared"])
def test_accumulators_as_per_benefit_groupby(seed, product):
    rng = np.random.default_rng(seed)
    n = 500
    pol = np.array([None if x < 3 else f"HHB{x:05d}" for x in rng.integers(0, 60, n)],
                   dtype=object)
    dec = SimpleNamespace(
        deductible={b.id: rng.integers(0, 2_000_000, n) for b in product.benefits},
        payout={b.id: rng.integers(0, 90_000_000, n) for b in product.benefits})
    got = batch._accumulators(product, dec, pol)
    want = _accumulators_per_benefit(product, dec, pol)
    assert got == want
    assert len(got) == len({(p, a) for p, a, _ in got}) > 0
    assert all(type(v) is int for _, _, v in got)
    none = np.array([None] * n, dtype=object)
    assert batch._accumulators(product, dec, none) == []


def test_eob_categories_fixed_for_lean_parts():
    """A lean part of people without a policy is made with the EOB's own categories
    (prepare_part then converts nothing)."""
    st = pd.DataFrame({"setl_id": np.array(["S1", "S2"], dtype=object),
                       "psn_no": np.array(["P1", "P2"], dtype=object)})
    part = batch._no_policy_rows(st, PRODUCT)
    cats = eob_categories(PRODUCT)
    for col, values in cats.items():
        assert list(part.frame[col].cat.categories) == values
    f = part.to_frame()
    k = len(PRODUCT.benefits)
    assert f["setl_id"].tolist() == ["S1"] * k + ["S2"] * k
    assert f["psn_no"].tolist() == ["P1"] * k + ["P2"] * k
    assert f["reason"].astype(str).eq("NO_POLICY").all()
    assert part.attrs["uniform"] == ("denied", 2)
