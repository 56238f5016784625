"""How close the city is to the published Huhuibao shape, and a summary of fund data.

Targets (data-samples/README.md states the tolerances): claimants' age mix 0-30 /
31-60 / 61+ of 6.3 / 31.7 / 62.0 % (docs/domain.md, three years to 2023); about 3 % of
insured people claiming in a year (2021: 216,800 claims for 7.39 million insured); about
100 yuan paid per insured person per year under 2021-style terms (2021: 750 million
yuan for 7.39 million insured). The published 3 % counts claims (216,800 to 2022-07-20),
not people, so both are measured: claims are settlements with a payout. The terms are
those of ``actuarial/products/huhuibao-2021.toml``, applied to every policy of the data
by the benefit calculator that claims and pricing use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.benefits.calculator import adjudicate
from puhui.fund.files import FundData
from puhui.products.model import load_product, product_path

#: The product whose terms the calibration applies ("2021-style terms").
CALIBRATION_PRODUCT = "huhuibao-2021"


@dataclass(frozen=True)
class Target:
    name: str
    published: float
    tolerance: float
    unit: str


TARGETS = (
    Target("claimants aged 0-30", 6.3, 3.0, "%"),
    Target("claimants aged 31-60", 31.7, 6.0, "%"),
    Target("claimants aged 61+", 62.0, 8.0, "%"),
    Target("insured people claiming a year", 3.0, 1.5, "%"),
    Target("paid per insured person a year", 100.0, 25.0, "yuan"),
)


def payouts_2021_style(data: FundData) -> pd.DataFrame:
    """Payout per policy (person-year) with the Huhuibao 2021 product applied to every
    policy of the data, as if it had been in force. Reversed settlements and their
    reversals are left out (net effect nil)."""
    product = load_product(product_path(CALIBRATION_PRODUCT))
    st = data.settlements
    reversed_ids = set(st["refund_of"].dropna())
    st = st[st["refund_of"].isna() & ~st["setl_id"].isin(reversed_ids)]
    dec = adjudicate(product, st, data.policies, data.lines)
    pay = dec.total_payout()
    pol_no = dec.settlements["policy_no"]
    has = pol_no.notna().to_numpy()
    per_policy = pd.DataFrame({"paid": pay[has], "claims": pay[has] > 0}).groupby(
        pol_no[has].to_numpy()).sum()
    out = data.policies[["policy_no", "psn_no"]].copy()
    out["year"] = data.policies["start_date"].dt.year
    per_policy = per_policy.reindex(out["policy_no"]).fillna(0).astype("int64")
    out["paid"] = per_policy["paid"].to_numpy()
    out["claims"] = per_policy["claims"].to_numpy()
    return out


def calibration_measures(data: FundData) -> dict[str, float]:
    pay = payouts_2021_style(data)
    birth = data.persons.set_index("psn_no")["birth_year"]
    pay["age"] = pay["year"] - birth.reindex(pay["psn_no"]).to_numpy()
    claim = pay[pay["paid"] > 0]
    n_claim = max(len(claim), 1)
    return {
        "claimants aged 0-30": 100 * (claim["age"] <= 30).sum() / n_claim,
        "claimants aged 31-60": 100 * claim["age"].between(31, 60).sum() / n_claim,
        "claimants aged 61+": 100 * (claim["age"] >= 61).sum() / n_claim,
        "claims per 100 insured a year": 100 * pay["claims"].sum() / max(len(pay), 1),
        "insured people claiming a year": 100 * len(claim) / max(len(pay), 1),
        "paid per insured person a year": pay["paid"].sum() / 100 / max(len(pay), 1),
    }


def calibration_table(data: FundData) -> str:
    m = calibration_measures(data)
    lines = ["Calibration against the published Huhuibao shape (2021-style terms):",
             f"  {'measure':<34}{'city':>9}{'published':>11}{'tolerance':>11}  within",
             "  " + "-" * 72]
    info = m["claims per 100 insured a year"]
    for t in TARGETS:
        v = m[t.name]
        ok = abs(v - t.published) <= t.tolerance
        lines.append(f"  {t.name:<34}{v:>9.1f}{t.published:>11.1f}{'±' + format(t.tolerance, 'g'):>11}"
                     f"  {'yes' if ok else 'NO'}   ({t.unit})")
    lines.append(f"  (for information: {info:.1f} settlements with a payout per 100 insured a year;"
                 f" published 2.9 claims, which may bundle several settlements)")
    return "\n".join(lines)


def describe_fund(data: FundData) -> str:
    """A short table of the fund data: people, schemes, ages, policies, settlements."""
    p, st, pol = data.persons, data.settlements, data.policies
    years = sorted(st["setl_time"].dt.year.unique())
    ref_year = years[0] if years else 2024
    age = ref_year - p["birth_year"]
    orig = st[st["refund_of"].isna()]
    by_type = orig.groupby(orig["med_type"].astype(str))["medfee_sumamt"].agg(["size", "sum"])
    rows = [
        f"Fund data: {len(p):,} people, {len(pol):,} policies, {len(st):,} settlements"
        f" ({(st['refund_of'].notna()).sum():,} reversals), years {', '.join(map(str, years))}",
        f"  people: {np.mean(p['insutype'] == '310'):.1%} employees, "
        f"{p['retired'].mean():.1%} retired, mean age {age.mean():.1f}, 60+ {np.mean(age >= 60):.1%},"
        f" deaths {p['death_date'].notna().sum():,}",
    ]
    if len(pol):
        enrolled = pol.groupby(pol["start_date"].dt.year).agg(
            n=("policy_no", "size"), pre=("preexisting", "mean"), consent=("consent", "mean"))
        for y, r in enrolled.iterrows():
            rows.append(f"  policies {y}: {int(r['n']):,} ({r['n'] / len(p):.1%} of people), "
                        f"pre-existing {r['pre']:.1%}, consent {r['consent']:.1%}")
    rows.append(f"  {'med_type':<10}{'settlements':>13}{'total yuan':>18}{'mean yuan':>12}")
    for mt, r in by_type.iterrows():
        rows.append(f"  {mt:<10}{int(r['size']):>13,}{r['sum'] / 100:>18,.0f}"
                    f"{r['sum'] / 100 / r['size']:>12,.0f}")
    return "\n".join(rows)
