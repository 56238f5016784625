"""``puhui claims recoveries``: refunds due to the product under outcome-based drug
agreements, booked in the ledger as recoveries.

For each drug of a product's line benefits whose list carries an agreement
(:func:`puhui.drug_lists.agreements_of`):

1. the drug cost the product paid, per settlement: the ledger's net payout of the
   benefit for that settlement (after reversals and adjustments) times the drug's share
   of the benefit's eligible lines on it, rounded down to the fen (a recovery never
   counts more than was paid)::

       cost_fen = paid_fen x drug_lines_fen // eligible_lines_fen

2. the refunds due per patient and quarter as known on the as-of date
   (:func:`puhui.survival.agreements.refund_lines`: death dates from the persons file);
3. target minus booked: each (agreement, patient, quarter) is booked so that its
   recoveries add up to what is due now; a re-run with the same data books nothing,
   a later date or a reversed payout books the difference (both signs).

Price-volume caps (:mod:`puhui.drug_caps`) on the same lists: once the as-of date is
past the product's policy year, the drug's spending in the year (its eligible line
amount on the settlements the product paid) against its cap gives the clawback
(:func:`puhui.drug_caps.clawback_fen` of what the product paid for it), booked the same
way as one line (agreement ``list:drug:cap``, no patient, the year's last quarter,
outcome ``CAP_CLAWBACK``).

Every patient with a cost ends in ``recoveries.csv`` with an outcome code; the summary
reconciles by agreement and quarter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.claims import ledger
from puhui.errors import InputError
from puhui.products.model import Product


@dataclass
class RecoveryRun:
    lines: pd.DataFrame          # every patient and quarter: outcome, due, booked before, now
    summary: dict


def agreements_of_product(product: Product) -> dict[str, tuple[str, object]]:
    """{agreement id: (benefit id, Agreement)} for the agreements on the lists the
    product's line benefits pay on; the id is ``list:drug``."""
    from puhui.drug_lists import agreements_of, line_benefit_lists

    return {f"{dl.id}:{code}": (b.id, a) for b, dl in line_benefit_lists(product)
            for code, a in agreements_of(dl).items()}


def caps_of_product(product: Product) -> dict[str, tuple[str, object]]:
    """{cap id: (benefit id, Cap)} for the price-volume caps on the product's line
    benefits' lists; the id is ``list:drug:cap``."""
    from puhui.drug_caps import caps_of
    from puhui.drug_lists import line_benefit_lists

    return {f"{dl.id}:{code}:cap": (b.id, c) for b, dl in line_benefit_lists(product)
            for code, c in caps_of(dl).items()}


def drug_costs(product: Product, paid: pd.DataFrame, settlements: pd.DataFrame,
               lines: pd.DataFrame, benefit: str, drug: str) -> pd.DataFrame:
    """What the product paid for ``drug`` under ``benefit``, per settlement: psn_no,
    date, cost_fen (module docstring, step 1) and drug_fen (the drug's eligible line
    amount there: the spending a price-volume cap counts). ``paid``: net paid per settlement
    (applies_to, benefit, paid, paid_psn) from the ledger; ``settlements``: setl_id,
    setl_time (the settlements paid); ``lines``: the data's settlement lines."""
    from puhui.benefits.quantities import LineMatcher

    p = paid[(paid["benefit"] == benefit) & (paid["paid"] != 0)]
    ln = lines[lines["setl_id"].isin(p["applies_to"])]
    with_drug = ln.loc[ln["hilist_code"].astype(str) == drug, "setl_id"].unique()
    p = p[p["applies_to"].isin(with_drug)]
    if not len(p):
        return pd.DataFrame({"psn_no": pd.Series(dtype=str), "date": pd.Series(dtype="datetime64[ns]"),
                             "cost_fen": pd.Series(dtype="int64"),
                             "drug_fen": pd.Series(dtype="int64")})
    known = p["applies_to"].isin(settlements["setl_id"])
    if not known.all():
        raise InputError(f"the ledger paid {int((~known).sum()):,} settlement(s) for {drug} "
                         f"that the data folder does not have (e.g. "
                         f"{p.loc[~known, 'applies_to'].iloc[0]}); give the data the "
                         f"batches ran on")
    st = settlements.set_index("setl_id").loc[p["applies_to"]].reset_index()
    spec = next(b for b in product.benefits if b.id == benefit)
    matcher = LineMatcher(product)
    ln = ln[ln["setl_id"].isin(p["applies_to"])]
    elig = matcher.line_quantities(st, ln)[0][spec.quantity]
    # the drug's own eligible amount: the same matcher on its lines alone
    drug_elig = matcher.line_quantities(st, ln[ln["hilist_code"].astype(str) == drug])[0][
        spec.quantity]
    paid_fen = p.set_index("applies_to").loc[st["setl_id"], "paid"].to_numpy(dtype="int64")
    cost = np.where(elig > 0, paid_fen * drug_elig // np.maximum(elig, 1), 0)
    return pd.DataFrame({"psn_no": p.set_index("applies_to").loc[st["setl_id"], "paid_psn"]
                         .astype(str).to_numpy(),
                         "date": pd.to_datetime(st["setl_time"]).to_numpy(),
                         "cost_fen": cost.astype("int64"),
                         "drug_fen": np.asarray(drug_elig, dtype="int64")})


def _read(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Persons (psn_no, death_date), settlements (setl_id, setl_time) and lines."""
    from puhui.fund.files import read_table
    from puhui.fund.schema import PERSONS, SETTLEMENT_LINES, SETTLEMENTS

    got = []
    for table, cols in ((PERSONS, ["psn_no", "death_date"]),
                        (SETTLEMENTS, ["setl_id", "setl_time"]),
                        (SETTLEMENT_LINES, None)):
        try:
            df = read_table(data_dir, table, cols)
        except Exception as e:      # a corrupt or foreign file: say which, exit 2
            raise InputError(f"{Path(data_dir) / table.file}: cannot be read for the "
                             f"recoveries ({type(e).__name__}: {e}); check the file with "
                             f"`puhui validate {data_dir}`") from None
        if df is None and table is not SETTLEMENT_LINES:
            raise InputError(f"{Path(data_dir) / table.file}: missing; recoveries need "
                             f"the persons (death dates) and the settlements (dates)")
        got.append(df)
    from puhui.fund.privacy import refuse_identifying

    for table, df in zip((PERSONS, SETTLEMENTS, SETTLEMENT_LINES), got):
        if df is not None:          # nothing identifying reaches the ledger or the output
            refuse_identifying(df, str(Path(data_dir) / table.file))
    persons, st, lines = got
    if lines is None:
        lines = pd.DataFrame(columns=["setl_id", "line_no", "hilist_code", "list_class",
                                      "amount", "preselfpay_amt"])
    return persons, st, lines


def run_recoveries(product: Product, data_dir: str | Path, url: str, batch_id: str,
                   as_of) -> RecoveryRun:
    """Compute the refunds due on ``as_of`` and book target minus booked in the ledger
    (one unit of work); see the module docstring."""
    from puhui.claims.batch import product_hash
    from puhui.digests import sha256_files

    from puhui.claims.batch import check_batch_id

    check_batch_id(batch_id)
    as_of = pd.Timestamp(as_of)
    if as_of.date() < product.start:
        raise InputError(f"--as-of {as_of.date()}: before the product's policy year "
                         f"({product.start} to {product.end}); nothing can be due yet")
    agreements = agreements_of_product(product)
    caps = caps_of_product(product)
    if not agreements and not caps:
        raise InputError(f"{product.id}: none of its line benefits' drug lists carries an "
                         f"agreement or a price-volume cap (columns 'agreement...', "
                         f"'cap_...' in actuarial/drugs/); nothing to recover")
    data_dir = Path(data_dir)
    persons, st, lines = _read(data_dir)
    deaths = persons.set_index(persons["psn_no"].astype(str))["death_date"].dropna()
    con = ledger.connect(url, must_exist=True)
    if not ledger.has_policies(con, product.id):
        con.close()
        raise InputError(f"ledger {ledger.shown_url(url)}: no policy of product {product.id}; nothing it paid "
                         f"can be recovered. Check the product, or run its batches first")
    benefits = sorted({b for b, _ in agreements.values()} | {b for b, _ in caps.values()})

    def due_now():
        paid = ledger.paid_for_benefits(con, product.id, benefits)
        return _due(product, agreements, caps, paid, (st, lines, deaths), as_of)

    try:
        # computed from the ledger as it stands, then checked unchanged inside the
        # transaction that books (a batch paying meanwhile makes it computed again there)
        stamp = ledger.last_entry(con)
        due, cap_rows = due_now()
        files = sorted(data_dir.glob("*.parquet"))
        dhash, phash = sha256_files(files), product_hash(product)
        with ledger.unit_of_work(con):
            if ledger.last_entry(con) != stamp:
                due, cap_rows = due_now()
            ledger.start_batch(con, batch_id, f"recoveries {as_of.date()}", product.id,
                               phash, dhash)
            ledger.keep_business_date(con, batch_id, str(as_of.date()))
            booked = ledger.booked_recoveries(con, [*agreements, *caps])
            key = ["agreement", "psn_no", "quarter"]
            m = due.merge(booked, on=key, how="outer")
            for col in ("refund_fen", "booked_fen"):
                m[col] = pd.to_numeric(m[col]).fillna(0).astype("int64")
            m["outcome"] = m["outcome"].fillna("NO_REFUND")
            m["delta_fen"] = m["refund_fen"] - m["booked_fen"]
            # booked before but no longer due (a payout reversed): the row has no cost now
            new = m[m["delta_fen"] != 0]
            ledger.record_recoveries(con, [
                (batch_id, r.agreement, r.psn_no, r.quarter, r.outcome, int(r.delta_fen),
                 ledger.now()) for r in new.itertuples(index=False)])
            ledger.finish_batch(con, batch_id)
            ledger.audit(con, "claims recoveries", batch_id, phash, dhash,
                         as_of=str(as_of.date()), booked=int(new["delta_fen"].sum()),
                         lines=int(len(new)))
    finally:
        con.close()
    m = m.sort_values(["agreement", "psn_no", "quarter"], kind="stable").reset_index(drop=True)
    summary = _summary(m, agreements, as_of, batch_id)
    summary["caps"] = [r.attrs["cap"] for r in cap_rows]
    return RecoveryRun(m, summary)


def _due(product: Product, agreements: dict, caps: dict, paid: pd.DataFrame, data: tuple,
         as_of: pd.Timestamp) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The refunds due per agreement (and cap), patient and quarter from what the ledger
    paid; and the cap rows with their attributes."""
    from puhui.survival.agreements import refund_lines

    st, lines, deaths = data
    rows = []
    for aid, (benefit, a) in agreements.items():
        costs = drug_costs(product, paid, st, lines, benefit, a.drug)
        r = refund_lines(a, costs, deaths, as_of)
        if len(r):
            rows.append(r.assign(agreement=aid, drug=a.drug, endpoint=a.endpoint))
    cap_rows = _cap_clawbacks(product, caps, paid, st, lines, as_of)
    rows += [r for r in cap_rows if len(r)]
    due = (pd.concat(rows, ignore_index=True) if rows else
           pd.DataFrame({c: pd.Series(dtype="int64" if c == "refund_fen" else object)
                         for c in ("agreement", "psn_no", "quarter", "outcome", "start",
                                   "cost_fen", "refund_fen", "drug", "endpoint")}))
    return due, cap_rows


def _cap_clawbacks(product: Product, caps: dict, paid: pd.DataFrame, st: pd.DataFrame,
                   lines: pd.DataFrame, as_of: pd.Timestamp) -> list[pd.DataFrame]:
    """One booking line per cap once the policy year has ended (module docstring);
    each frame's ``attrs["cap"]`` describes it for the summary."""
    from puhui.drug_caps import clawback_fen

    start, end = pd.Timestamp(product.start), pd.Timestamp(product.end)
    out = []
    for cid, (benefit, cap) in caps.items():
        c = drug_costs(product, paid, st, lines, benefit, cap.drug)
        c = c[(c["date"] >= start) & (c["date"] <= end)]
        spending, paid_fen = int(c["drug_fen"].sum()), int(c["cost_fen"].sum())
        ended = as_of >= end
        back = clawback_fen(paid_fen, spending, cap.cap_fen) if ended else 0
        quarter = str(end.to_period("Q"))
        df = (pd.DataFrame({"agreement": [cid], "psn_no": [""], "quarter": [quarter],
                            "outcome": ["CAP_CLAWBACK"], "start": [start],
                            "cost_fen": [paid_fen], "refund_fen": [back], "drug": [cap.drug],
                            "endpoint": ["cap"]}) if back > 0 else pd.DataFrame())
        df.attrs["cap"] = {"cap": cid, "benefit": benefit, "policy_year": [str(start.date()),
                                                                        str(end.date())],
                           "cap_yuan": cap.cap_fen / 100, "spending_yuan": spending / 100,
                           "paid_yuan": paid_fen / 100, "clawback_yuan": back / 100,
                           "status": "due" if ended else "the policy year has not ended"}
        out.append(df)
    return out


def _summary(m: pd.DataFrame, agreements: dict, as_of, batch_id: str) -> dict:
    by = []
    for aid, (benefit, a) in agreements.items():
        g = m[m["agreement"] == aid]
        due = g[g["refund_fen"] > 0]
        by.append({
            "agreement": aid, "benefit": benefit, "endpoint": a.endpoint,
            "patients": int(g["psn_no"].nunique()),
            "patients_by_outcome": {k: int(v) for k, v in
                                    g.groupby("outcome")["psn_no"].nunique().items()},
            "due_yuan": round(int(due["refund_fen"].sum()) / 100, 2),
            "booked_before_yuan": round(int(g["booked_fen"].sum()) / 100, 2),
            "booked_now_yuan": round(int(g["delta_fen"].sum()) / 100, 2),
            "by_quarter": [{"quarter": q, "patients": int(len(x)),
                            "due_yuan": round(int(x["refund_fen"].sum()) / 100, 2)}
                           for q, x in due.groupby("quarter", sort=True)]})
    return {"batch": batch_id, "as_of": str(pd.Timestamp(as_of).date()),
            "due_yuan": round(int(m["refund_fen"].sum()) / 100, 2),
            "booked_now_yuan": round(int(m["delta_fen"].sum()) / 100, 2),
            "agreements": by,
            "note": "due = booked before + booked now, per agreement, patient and quarter"}
