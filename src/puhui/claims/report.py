"""The batch report: one self-contained HTML page (plots embedded) a claims lead reads.

Totals by benefit and status, the payout distribution, the top reasons for denial or
no payment, flags and quarantine, and, for a proactive scan, its coverage: how many
due payouts it found without a claim.
"""

from __future__ import annotations

import pandas as pd

from puhui.benefits.reasons import REASONS
from puhui.claims.flags import FLAGS
from puhui.html_figures import new_figure, png_base64

BATCH_REASONS = {
    "ALREADY_PAID": "paid by an earlier batch; nothing more is due",
    "NO_CONSENT": "proactive scan: the policyholder has not authorised data use",
    "NOT_CLAIMED": "claimed batch with a claims file: a payout is due but no claim was filed",
    "REVERSAL": "the reversal of a settlement; carries the undoing entry",
    "REVERSED": "a settlement that was reversed",
    "DIRECT_ADJUSTED": "paid at settlement time (direct); the batch's data changes what is due "
                       "and the entry books the difference",
    "NOT_IN_DATA": "decided before but missing from data stated complete for its date "
                   "(--complete): what it was paid is taken back",
}



def _plots(eob: pd.DataFrame) -> dict[str, str]:
    import numpy as np

    out = {}
    paid = eob[eob["payout_amt"] != 0].groupby("benefit", observed=True)["payout_amt"].sum()
    if len(paid):
        fig, ax = new_figure(7, 2.6)
        ax.barh(paid.index, paid.to_numpy())
        ax.set_xlabel("paid in this batch (yuan)")
        out["by_benefit"] = png_base64(fig)
    due = eob.loc[eob["target_amt"] > 0, "target_amt"].to_numpy()
    if len(due):
        fig, ax = new_figure(7, 2.8)
        bins = np.logspace(np.log10(max(due.min(), 1)), np.log10(due.max() + 1), 30)
        ax.hist(due, bins=bins)
        ax.set_xscale("log")
        ax.set_xlabel("payout due (yuan)")
        ax.set_ylabel("decisions")
        out["distribution"] = png_base64(fig)
    return out


def coverage(eob: pd.DataFrame) -> dict[str, int]:
    """Decisions with a payout due, and what the proactive scan did with them."""
    due = eob[eob["target_amt"] > 0]
    return {"due": int(len(due)),
            "found": int((due["payout_amt"] > 0).sum()),
            "already": int((due["reason"] == "ALREADY_PAID").sum()),
            "no_consent": int((due["reason"] == "NO_CONSENT").sum())}


def not_paid_reasons(eob: pd.DataFrame) -> pd.Series:
    """Counts of reasons among decisions not paid (zero or denied)."""
    vc = eob.loc[eob["status"].isin(["zero", "denied"]), "reason"].value_counts()
    vc = vc[vc > 0]
    vc.index = vc.index.astype(str)
    return vc


def report_rows(eob: pd.DataFrame) -> pd.DataFrame:
    """The EOB rows the report draws from: due, paid or held (a small part of a batch)."""
    keep = (eob["target_amt"] > 0) | (eob["payout_amt"] != 0) | (eob["status"] == "quarantined")
    return eob.loc[keep, ["setl_id", "benefit", "payout_amt", "target_amt", "status", "reason"]]


def render(eob: pd.DataFrame, summary: dict, reasons_not_paid: pd.Series | None = None,
           lang: str = "en", synthetic: dict | None = None) -> str:
    """The page (template ``claims.html.j2``) in ``lang`` ("en" or "zh"). ``eob`` may be
    the whole EOB or its :func:`report_rows`; then give the counts of reasons not paid
    over the whole batch. ``synthetic``: the data folder's marker (a banner says so)."""
    from puhui import __version__
    from puhui.reporting import gettext_for, render as render_page, table_for

    _ = gettext_for(lang)
    table = table_for(lang)
    meanings = {k: v[2] for k, v in REASONS.items()} | BATCH_REASONS
    if reasons_not_paid is None:
        reasons_not_paid = not_paid_reasons(eob)
    top = reasons_not_paid.sort_values(ascending=False).head(10)
    reasons = pd.DataFrame([(k, _(meanings.get(k, "")), int(v)) for k, v in top.items()],
                           columns=["reason", "meaning", "decisions"])
    from puhui.claims.batch import QUARANTINE

    held = eob[eob["status"] == "quarantined"].drop_duplicates("setl_id")["reason"].value_counts()
    held = held[held > 0]        # (a categorical's value_counts lists every code, most at 0)
    rules = {code: _("quarantined: breaks the rule '%(rule)s'") % {"rule": rule}
             for rule, code in QUARANTINE.items()}
    flags = pd.DataFrame([(k, _(FLAGS.get(k) or rules.get(k, "quarantined by a validation rule")),
                           int(v)) for k, v in held.items()],
                         columns=["code", "meaning", "settlements"])
    cov = coverage(eob) if summary.get("mode") == "proactive" else None
    by_status = pd.DataFrame([(_(k), int(v)) for k, v in summary["settlements_by_status"].items()],
                             columns=["status", "settlements"])
    by_benefit = pd.DataFrame(summary["by_benefit_and_status"]).rename(columns={
        "rows": "decisions", "eligible_yuan": "eligible (yuan)", "target_yuan": "due (yuan)",
        "paid_yuan": "paid in this batch (yuan)"})
    money = ("eligible (yuan)", "due (yuan)", "paid in this batch (yuan)")
    if len(by_benefit):
        by_benefit["status"] = by_benefit["status"].map(_)
        by_benefit = by_benefit[["benefit", "status", "decisions", *money]]
    return render_page(
        "claims.html.j2", lang, s=summary, plots=_plots(eob), version=__version__,
        synthetic=synthetic, coverage=cov,
        by_status=table(by_status, totals=("settlements",)),
        by_benefit=table(by_benefit, kinds=dict.fromkeys(money, "yuan"),
                         totals=("decisions", *money)),
        reasons=table(reasons), flags=table(flags) if len(flags) else None)
