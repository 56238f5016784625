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

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batch {{ s.batch }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
.ok { color: #060; } .bad { color: #a00; } img { max-width: 100%; }
</style></head><body>
<h1>Claims batch {{ s.batch }}</h1>
<p>Product <b>{{ s.product }}</b>, mode <b>{{ s.mode }}</b>. {{ s.settlements_in }} settlements in;
every one in the explanation of benefit:
<b class="{{ 'ok' if s.reconciles else 'bad' }}">{{ 'yes' if s.reconciles else 'NO' }}</b>.
Paid in this batch: <b>{{ '{:,.2f}'.format(s.paid_this_batch_yuan) }} yuan</b>.</p>
<h2>Settlements by status</h2>
<table><tr><th>status</th><th>settlements</th></tr>
{% for k, v in s.settlements_by_status.items() %}<tr><td>{{ k }}</td><td class="n">{{ '{:,}'.format(v) }}</td></tr>{% endfor %}
</table>
<h2>Totals by benefit and status</h2>
<table><tr><th>benefit</th><th>status</th><th>decisions</th><th>eligible (yuan)</th><th>due (yuan)</th><th>paid in this batch (yuan)</th></tr>
{% for r in s.by_benefit_and_status %}<tr><td>{{ r.benefit }}</td><td>{{ r.status }}</td><td class="n">{{ '{:,}'.format(r.rows) }}</td>
<td class="n">{{ '{:,.2f}'.format(r.eligible_yuan) }}</td><td class="n">{{ '{:,.2f}'.format(r.target_yuan) }}</td><td class="n">{{ '{:,.2f}'.format(r.paid_yuan) }}</td></tr>{% endfor %}
</table>
{% if plots.by_benefit %}<h2>Paid by benefit</h2><img alt="paid by benefit" src="data:image/png;base64,{{ plots.by_benefit }}">{% endif %}
{% if plots.distribution %}<h2>Payout distribution</h2><p>Payouts due per settlement and benefit (yuan, log scale).</p>
<img alt="payout distribution" src="data:image/png;base64,{{ plots.distribution }}">{% endif %}
<h2>Top reasons for no payment</h2>
<table><tr><th>reason</th><th>meaning</th><th>decisions</th></tr>
{% for code, n, meaning in reasons %}<tr><td>{{ code }}</td><td>{{ meaning }}</td><td class="n">{{ '{:,}'.format(n) }}</td></tr>{% endfor %}
</table>
<h2>Flags and quarantine</h2>
{% if flags %}<table><tr><th>code</th><th>meaning</th><th>settlements</th></tr>
{% for code, n, meaning in flags %}<tr><td>{{ code }}</td><td>{{ meaning }}</td><td class="n">{{ '{:,}'.format(n) }}</td></tr>{% endfor %}
</table>{% else %}<p>No settlement held or quarantined.</p>{% endif %}
{% if coverage %}<h2>Proactive coverage</h2>
<table><tr><th>due payouts (settlement and benefit)</th><td class="n">{{ '{:,}'.format(coverage.due) }}</td></tr>
<tr><th>found and paid by this scan, without a claim</th><td class="n">{{ '{:,}'.format(coverage.found) }}</td></tr>
<tr><th>already paid on a claim</th><td class="n">{{ '{:,}'.format(coverage.already) }}</td></tr>
<tr><th>not paid: no consent to data use</th><td class="n">{{ '{:,}'.format(coverage.no_consent) }}</td></tr></table>{% endif %}
</body></html>
"""


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


def render(eob: pd.DataFrame, summary: dict, reasons_not_paid: pd.Series | None = None) -> str:
    """The page. ``eob`` may be the whole EOB or its :func:`report_rows`; then give the
    counts of reasons not paid over the whole batch."""
    from jinja2 import Environment

    meanings = {k: v[2] for k, v in REASONS.items()} | BATCH_REASONS
    if reasons_not_paid is None:
        reasons_not_paid = not_paid_reasons(eob)
    top = reasons_not_paid.sort_values(ascending=False).head(10)
    reasons = [(k, int(v), meanings.get(k, "")) for k, v in top.items()]
    from puhui.claims.batch import QUARANTINE

    held = eob[eob["status"] == "quarantined"].drop_duplicates("setl_id")["reason"].value_counts()
    held = held[held > 0]        # (a categorical's value_counts lists every code, most at 0)
    rules = {code: f"quarantined: breaks the rule '{rule}'" for rule, code in QUARANTINE.items()}
    flags = [(k, int(v), FLAGS.get(k) or rules.get(k, "quarantined by a validation rule"))
             for k, v in held.items()]
    cov = coverage(eob) if summary.get("mode") == "proactive" else None
    return Environment(autoescape=True).from_string(TEMPLATE).render(
        s=summary, plots=_plots(eob), reasons=reasons, flags=flags, coverage=cov)
