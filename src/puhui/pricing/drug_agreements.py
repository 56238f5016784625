"""The expected refunds of outcome-based drug agreements in the price.

For a line benefit whose list carries agreements (:func:`puhui.drug_lists.agreements_of`),
each agreement drug d takes off the benefit's pure premium::

    refund_b = pure_b x sum_d share_d x E[refund share_d]

share_d is the drug's share of the benefit's eligible line amounts in the data
(:func:`puhui.pricing.whatif.drug_shares`), E[refund share_d] the agreement's expected
refund as a share of the drug cost (:func:`puhui.survival.agreements.expected_refund_share`)
from a survival curve S:

- ``"fitted"`` (overall survival only): Kaplan-Meier (lifelines) of the fund data's
  patients on the drug, months from their first settlement with it to death, censored
  at the data's end, when it has at least ``min_deaths`` deaths and follows patients
  past the drug's median; otherwise
- ``"published"``: an exponential curve with the agreement's median (the drug's median
  overall or progression-free survival, or ``agreement_curve_median_months``: the
  median time on the drug for the clinical-effect scheme).

The benefit's cost per rating cell, its parameter draws and so the gross premiums and
the loss-ratio interval move with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.survival.agreements import (
    MONTH_DAYS,
    expected_refund_share,
    exponential_survival,
)


def drug_lines(data, drug: str) -> pd.DataFrame:
    """The settlement lines of ``drug`` with their settlement's ``psn_no`` (as text) and
    ``setl_time``: setl_id, amount (when the lines have it), psn_no, setl_time
    (reversed settlements are not in pricing's data)."""
    lines = data.lines
    if lines is None or not len(lines):
        return pd.DataFrame(columns=["setl_id", "amount", "psn_no", "setl_time"])
    keep = [c for c in ("setl_id", "amount") if c in lines.columns]
    ln = lines.loc[lines["hilist_code"].astype(str) == drug, keep]
    st = data.settlements
    on = st.loc[st["setl_id"].isin(ln["setl_id"]), ["setl_id", "psn_no", "setl_time"]]
    m = ln.merge(on, on="setl_id")
    return m.assign(psn_no=m["psn_no"].astype(str), setl_time=pd.to_datetime(m["setl_time"]))


def treated_patients(data, drug: str) -> pd.DataFrame:
    """Per patient with a settlement line of ``drug``: months from the first such
    settlement to death (``died``) or to the data's last settlement date."""
    m = drug_lines(data, drug)
    if not len(m):
        return pd.DataFrame(columns=["psn_no", "months", "died"])
    end = pd.Timestamp(data.settlements["setl_time"].max())
    first = m.groupby("psn_no")["setl_time"].min()
    persons = data.persons.set_index(data.persons["psn_no"].astype(str))["death_date"]
    death = pd.to_datetime(persons.reindex(first.index))
    died = death.notna() & (death <= end)
    stop = death.where(died, end)
    months = (stop - first).dt.days.to_numpy(dtype=float) / MONTH_DAYS
    return pd.DataFrame({"psn_no": first.index, "months": np.maximum(months, 0.0),
                         "died": died.to_numpy()})


def survival_curve(a, treated: pd.DataFrame, method: str, min_deaths: int,
                   curve_median: float | None = None):
    """(S, what it is, median used or None) for agreement ``a`` (module docstring)."""
    deaths = int(treated["died"].sum()) if len(treated) else 0
    follow = float(treated["months"].max()) if len(treated) else 0.0
    if (method == "fitted" and a.endpoint == "os" and deaths >= min_deaths
            and follow >= a.drug_median_months):
        from lifelines import KaplanMeierFitter

        km = KaplanMeierFitter().fit(treated["months"], event_observed=treated["died"])

        def s(t):
            return np.asarray(km.survival_function_at_times(np.atleast_1d(t)).to_numpy(),
                              dtype=float).reshape(np.shape(t))
        return s, f"Kaplan-Meier of {len(treated)} treated patients ({deaths} deaths)", None
    median = a.drug_median_months if curve_median is None else curve_median
    why = "published median"
    if method == "fitted":
        # (no count under the fit's threshold is named: reports show no small groups)
        why += (f" (the data's treated patients have fewer than {min_deaths} deaths or "
                f"are not followed to the drug's median)" if a.endpoint == "os"
                else " (the data has no progression or time-on-drug outcome to fit)")
    return exponential_survival(median), f"exponential, {why}", median


def expected_refunds(product, data, shares: dict[str, pd.DataFrame], assumptions: dict
                     ) -> tuple[dict[str, float], list[dict]]:
    """Per line benefit, the share of its cost refunded, sum_d share_d E_d; and a row
    per agreement drug for pricing.json and the report."""
    from puhui.drug_lists import agreements_of, line_benefit_lists

    cfg = assumptions.get("agreements", {})
    method = cfg.get("curve", "fitted")
    min_deaths = int(cfg.get("min_deaths", 20))
    frac: dict[str, float] = {}
    rows: list[dict] = []
    for b, dl in line_benefit_lists(product):
        ags = agreements_of(dl)
        if not ags:
            continue
        items = dl.items.set_index(dl.items["hilist_code"].astype(str))
        share = shares.get(b.id)
        amount_share = (dict(zip(share["code"], share["amount_share"]))
                        if share is not None else {})
        total = 0.0
        for code, a in sorted(ags.items()):
            cm = items.get("agreement_curve_median_months", pd.Series(dtype=float)).get(code)
            cm = float(cm) if cm is not None and pd.notna(cm) else None
            treated = treated_patients(data, code)
            s, source, median = survival_curve(a, treated, method, min_deaths, cm)
            e = float(expected_refund_share(a, s))
            w = float(amount_share.get(code, 0.0))
            total += w * e
            rows.append({"benefit": b.id, "drug": code, "endpoint": a.endpoint,
                         "comparator_median_months": a.comparator_median_months,
                         "drug_median_months": a.drug_median_months,
                         "share_bp": a.partial_share_bp, "curve": source,
                         "curve_median_months": median, "treated_patients": int(len(treated)),
                         "expected_refund_share": round(e, 4),
                         "share_of_benefit_amounts": round(w, 4)})
        frac[b.id] = total
    return frac, rows


def drug_patient_years(data, drug: str) -> np.ndarray:
    """The drug's spending per patient and data year (yuan), from the settlement
    lines."""
    m = drug_lines(data, drug)
    if not len(m):
        return np.zeros(0)
    return (m.groupby(["psn_no", m["setl_time"].dt.year])["amount"].sum()
            .to_numpy(dtype=float) / 100.0)


def expected_clawbacks(product, data, shares: dict[str, pd.DataFrame], pure: dict[str, float],
                       exposure: float, policies: int, severity_factor: float
                       ) -> tuple[dict[str, float], list[dict]]:
    """Per line benefit, the share of its pure premium a price-volume cap claws back;
    and a row per capped drug. The year's spending on drug d under the product is
    compound Poisson: patients ~ Poisson(n lambda) with lambda the data's patient-years
    per person-year of exposure, each spending X (the data's per patient-year spending,
    trended); its mean n lambda E[X] and variance n lambda E[X^2] give a gamma, whose
    mean excess over the cap (:func:`puhui.drug_caps.expected_excess`) times the
    product's part of the spending (its expected payout for d over the expected
    spending) is the clawback; per policy, over n."""
    from puhui.drug_caps import caps_of, expected_excess
    from puhui.drug_lists import line_benefit_lists

    frac: dict[str, float] = {}
    rows: list[dict] = []
    for b, dl in line_benefit_lists(product):
        caps = caps_of(dl)
        if not caps or pure.get(b.id, 0.0) <= 0:
            continue
        share = shares.get(b.id)
        amount_share = (dict(zip(share["code"], share["amount_share"]))
                        if share is not None else {})
        back = 0.0
        for code, cap in sorted(caps.items()):
            x = drug_patient_years(data, code) * severity_factor
            lam = len(x) / exposure if exposure > 0 else 0.0
            mean = policies * lam * float(x.mean()) if len(x) else 0.0
            var = policies * lam * float((x ** 2).mean()) if len(x) else 0.0
            excess = expected_excess(mean, var, cap.cap_fen / 100.0)
            payout = pure[b.id] * float(amount_share.get(code, 0.0)) * policies
            part = min(1.0, payout / mean) if mean > 0 else 0.0
            per_policy = excess * part / policies if policies else 0.0
            back += per_policy
            rows.append({"benefit": b.id, "drug": code, "cap_yuan": cap.cap_fen / 100.0,
                         "expected_patients": round(policies * lam, 4),
                         "expected_spending_yuan": round(mean, 2),
                         "sd_spending_yuan": round(float(np.sqrt(var)), 2),
                         "expected_excess_yuan": round(excess, 2),
                         "product_part_of_spending": round(part, 4),
                         "clawback_per_policy": round(per_policy, 4)})
        frac[b.id] = back / pure[b.id]
    return frac, rows
