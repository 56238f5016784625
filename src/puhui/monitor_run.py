"""``puhui monitor``: where a running product year stands at an as-of date (issue 22
point 3; docs/reserving.md "puhui monitor").

From the ledger (through :mod:`puhui.reserve_run`, which reads it on either backend) and
the product's pricing.json:

- earned premium: each policy's premium spread evenly over the days of its cover, up to
  the as-of date (as ``puhui reserve`` earns it);
- paid: every payment entry effective (business date) on or before the as-of date,
  by the month of the settlement it is for (its origin) and by benefit;
- IBNR by origin month: the chain ladder (default), Bornhuetter-Ferguson or Cape Cod of
  :mod:`puhui.reserving.methods` with the priced loss ratio (``expected_loss_ratio``);
  each month's IBNR goes to the benefits in proportion to what that month has paid under
  each (the priced pure premiums' shares where it has paid nothing);
- expected: the priced pure premium by benefit per policy-year times the exposure of
  each month (each policy's cover days in the month over its cover's days);
- the 综合赔付率 (paid + IBNR) / earned premium, with an interval from Mack's standard
  error (lognormal, as Mack 1994 sets confidence limits);
- the premium-deficiency test for the rest of the policy year.

Money is integer fen in here and yuan (2 decimals) in monitor.json and the reports.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError
from puhui.reserve_run import cover_days, yuan_of

METHODS = ("chainladder", "bf", "capecod")
LEVEL = 0.90
Z90 = 1.6448536269514722            # the standard normal's 95th percentile
#: the limited-fluctuation standard for the number of claims (90 % probability of being
#: within 5 %: (1.645 / 0.05)^2), as puhui.pricing.balance has it
FULL_CREDIBILITY_CLAIMS = 1082.0
ALLOCATION = ("each month's IBNR goes to the benefits in proportion to what that month "
              "has paid under each (net of reversals, negatives as 0; the priced pure "
              "premiums' shares where the month has paid nothing), rounded to the fen by "
              "largest remainders so the benefits add up to the month's IBNR")
DEFICIENCY_RULE = (
    "unexpired premium (each policy's premium for its cover days after the as-of date) "
    "against the claims expected for those days: the priced pure premium per policy-day "
    "times the remaining exposure, times the credibility-weighted A/E to date, "
    "Z x A/E + (1 - Z) x 1, Z = min(1, sqrt(n / (1082 x (1 + CV^2)))), n the settlements "
    "paid to date and CV their payouts' coefficient of variation (limited fluctuation, "
    "full credibility for the pure premium); a deficiency where the expected claims "
    "exceed the unexpired premium. Claims only: expenses are not in the ledger "
    "(docs/reserving.md cites the rule)")


def read_pricing(path: str | Path, product_id: str) -> dict:
    """pricing.json's figures the monitor uses, checked: ``pure_premium`` by benefit
    (yuan per policy-year), ``expected_loss_ratio``, ``process_sd_per_policy`` (optional).
    InputError naming the file and the key for anything else."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--pricing {path}: no such file; give the pricing.json that "
                         f"'puhui price' wrote for the product") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--pricing {path}: not a JSON file ({type(e).__name__}); give "
                         f"the pricing.json that 'puhui price' wrote") from None
    if not isinstance(doc, dict):
        raise InputError(f"--pricing {path}: not a pricing.json (a JSON object is expected)")
    if doc.get("product_id") != product_id:
        raise InputError(f"--pricing {path}: prices {doc.get('product_id')!r}, not "
                         f"--product {product_id}; give the pricing of {product_id}")
    pure = doc.get("pure_premium")
    if not isinstance(pure, dict) or not [b for b in pure if b != "total"]:
        raise InputError(f"--pricing {path}: key pure_premium: a table of yuan per policy "
                         f"by benefit is expected")
    benefits = {b: _positive(v, path, f"pure_premium.{b}", zero=True)
                for b, v in pure.items() if b != "total"}
    if sum(benefits.values()) <= 0:
        raise InputError(f"--pricing {path}: key pure_premium: every benefit is 0")
    elr = _positive(doc.get("expected_loss_ratio"), path, "expected_loss_ratio")
    sd = doc.get("process_sd_per_policy")
    return {"file": str(path), "product_id": product_id, "pure_premium_fen": {
        b: v * 100 for b, v in benefits.items()}, "expected_loss_ratio": elr,
        "process_sd_per_policy_fen": None if sd is None else
        _positive(sd, path, "process_sd_per_policy", zero=True) * 100}


#: the largest figure pricing.json may give (yuan per policy-year, or a ratio): beyond it
#: the fen the monitor computes from it would overflow, and no real pricing comes near
PRICING_MAX = 1e12


def _positive(v, path, key: str, zero: bool = False) -> float:
    """A finite number above 0 (or at least 0) and at most :data:`PRICING_MAX`, else
    InputError naming the key."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and (v >= 0 if zero else v > 0) and v <= PRICING_MAX
    if not ok:
        raise InputError(f"--pricing {path}: key {key}: {v!r} is not a number "
                         f"{'of 0 or more' if zero else 'above 0'} and at most "
                         f"{PRICING_MAX:.0e}")
    return float(v)


def exposure_years(policies: pd.DataFrame, lo: dt.date, hi: dt.date) -> float:
    """Policy-years of cover from ``lo`` to ``hi`` inclusive: each policy's days in the
    window over its cover's days (a whole year's cover is 1)."""
    start, end, days = cover_days(policies)
    a, b = np.datetime64(lo, "D"), np.datetime64(hi, "D") + 1
    overlap = np.clip((np.minimum(end, b) - np.maximum(start, a)).astype(np.int64), 0, None)
    return float((overlap / days).sum())


def unexpired_premium_fen(policies: pd.DataFrame, as_of: dt.date) -> int:
    """Premium of the cover days after ``as_of`` (each policy's premium over its days)."""
    start, end, days = cover_days(policies)
    a = np.datetime64(as_of, "D") + 1
    left = np.clip((end - np.maximum(start, a)).astype(np.int64), 0, None)
    return int(np.floor((policies["premium_fen"].to_numpy(np.float64) * left / days).sum()
                        + 0.5))


def year_months(policies: pd.DataFrame, use: pd.DataFrame, day: dt.date) -> pd.PeriodIndex:
    """The months reported: from the cover's first month (or an earlier settlement's) to
    the as-of date's month, not past the cover's last month (nor a later settlement's)."""
    first = pd.Timestamp(pd.to_datetime(policies["start_date"]).min())
    last = pd.Timestamp(pd.to_datetime(policies["end_date"]).max())
    dates = pd.to_datetime(use["setl_date"])
    lo = min(first, dates.min()) if len(dates) else first
    hi = min(pd.Timestamp(day), max(last, dates.max()) if len(dates) else last)
    return pd.period_range(lo.to_period("M"), hi.to_period("M"), freq="M")


def allocate(total_fen: int, weights: list[float]) -> list[int]:
    """``total_fen`` split in proportion to ``weights`` (>= 0, not all 0), whole fen by
    largest remainders: the parts add up to the total exactly."""
    w = np.asarray(weights, dtype=float)
    raw = total_fen * w / w.sum()
    base = np.floor(raw).astype(np.int64)
    rest = int(total_fen - base.sum())
    for k in np.argsort(-(raw - base), kind="stable")[:rest]:
        base[k] += 1
    return base.tolist()


def lognormal_interval(paid_fen: int, ibnr_fen: int, se_fen: float | None,
                       premium_fen: int) -> dict:
    """The loss ratio's interval at :data:`LEVEL`: the IBNR lognormal with its mean and
    Mack's standard error (Mack 1994, CAS Forum, "Measuring the variability of chain
    ladder reserve estimates": confidence limits where the reserve is skewed), the paid amount known; normal (bounded below by 0)
    where the IBNR is not above 0."""
    if se_fen is None or not math.isfinite(se_fen) or premium_fen <= 0:
        return {"level": LEVEL, "lower": None, "upper": None,
                "basis": "not estimated: no Mack standard error"}
    if ibnr_fen > 0 and se_fen > 0:
        s2 = math.log1p((se_fen / ibnr_fen) ** 2)
        mu = math.log(ibnr_fen) - s2 / 2
        lo, hi = math.exp(mu - Z90 * math.sqrt(s2)), math.exp(mu + Z90 * math.sqrt(s2))
        basis = "IBNR lognormal with Mack's standard error (Mack 1994)"
    else:       # bounded below by 0 unless reversals made the IBNR itself negative
        floor = 0.0 if ibnr_fen >= 0 else -math.inf
        lo, hi = max(floor, ibnr_fen - Z90 * se_fen), ibnr_fen + Z90 * se_fen
        basis = "IBNR normal with Mack's standard error, bounded below by 0" + (
            "" if ibnr_fen >= 0 else " where not negative (here it is: reversals)")
    return {"level": LEVEL, "lower": round((paid_fen + lo) / premium_fen, 4),
            "upper": round((paid_fen + hi) / premium_fen, 4), "basis": basis}


def _ratio(a: float, e: float) -> float | None:
    return round(a / e, 4) if e > 0 else None


def band(expected_fen: float, exposure: float, sd_fen: float | None) -> dict | None:
    """The A/E's band at :data:`LEVEL` from the priced process variance alone: a
    compound Poisson year's variance is additive over exposure, so a month's sd is
    ``process_sd_per_policy x sqrt(policy-years)``; None without the sd."""
    if sd_fen is None or expected_fen <= 0:
        return None
    half = Z90 * sd_fen * math.sqrt(exposure) / expected_fen
    return {"lower": round(max(0.0, 1 - half), 4), "upper": round(1 + half, 4)}


def _signal(ae: float | None, b: dict | None) -> str | None:
    if ae is None or b is None:
        return None
    return "above" if ae > b["upper"] else "below" if ae < b["lower"] else "within"


def paid_by_month_benefit(use: pd.DataFrame) -> dict[tuple[str, str], int]:
    """{(settlement month, benefit): net fen paid}."""
    month = pd.to_datetime(use["setl_date"]).dt.to_period("M").astype(str)
    g = use.assign(month=month).groupby(["month", "benefit"])["payout_fen"].sum()
    return {k: int(v) for k, v in g.items()}


def month_rows(months, ctx: dict) -> list[dict]:
    """By month and benefit: paid, IBNR (allocated), actual, expected, A/E (fen)."""
    pure, paid, ibnr = ctx["pure_fen"], ctx["paid"], ctx["ibnr_by_month"]
    rows = []
    for k, m in enumerate(months):
        key = str(m)
        bens = ctx["benefits"]
        p = [paid.get((key, b), 0) for b in bens]
        w = [max(x, 0) for x in p]
        if sum(w) <= 0:
            w = [pure.get(b, 0.0) for b in bens]
        alloc = allocate(ibnr.get(key, 0), w)
        expo = ctx["exposure"][k]
        for b, pb, ib in zip(bens, p, alloc):
            e = round(pure.get(b, 0.0) * expo)
            rows.append({"month": key, "benefit": b, "exposure": expo,
                         "earned_fen": int(ctx["earned"][k]), "paid_fen": pb, "ibnr_fen": ib,
                         "actual_fen": pb + ib, "expected_fen": e})
    return rows


def _edge(r: dict) -> dict:
    """A row of fen at the edge: yuan, A/E."""
    return {**{k: v for k, v in r.items() if not k.endswith("_fen")},
            **{k[:-4] + "_yuan": yuan_of(v) for k, v in r.items() if k.endswith("_fen")},
            "actual_to_expected": _ratio(r["actual_fen"], r["expected_fen"])}


def _cell(r: dict) -> dict:
    """A month x benefit row at the edge (the month's earned premium and exposure are
    in ``by_month``)."""
    out = _edge({k: v for k, v in r.items() if k not in ("earned_fen", "exposure")})
    return out


def summarise(rows: list[dict], key: str, sd_fen: float | None) -> list[dict]:
    """``rows`` summed by ``key`` ("month" or "benefit"), at the edge; by month with the
    process band and the signal."""
    df = pd.DataFrame(rows)
    cols = ["paid_fen", "ibnr_fen", "actual_fen", "expected_fen"]
    if key == "month":
        g = df.groupby("month", sort=False).agg(
            exposure=("exposure", "first"), earned_fen=("earned_fen", "first"),
            **{c: (c, "sum") for c in cols})
    else:
        g = df.groupby("benefit", sort=False)[cols].sum()
    out = []
    for k, r in g.iterrows():
        row = _edge({key: k, **{c: int(r[c]) for c in g.columns if c.endswith("_fen")}})
        if key == "month":
            row = {"month": k, "exposure_policy_years": round(float(r["exposure"]), 4), **{
                c: v for c, v in row.items() if c != "month"}}
            row["band"] = band(r["expected_fen"], float(r["exposure"]), sd_fen)
            row["signal"] = _signal(row["actual_to_expected"], row["band"])
        out.append(row)
    return out


def credibility(use: pd.DataFrame) -> dict:
    """Limited-fluctuation credibility of the A/E to date for the pure premium: n the
    settlements with a net payout above 0, CV their payouts' coefficient of variation,
    full credibility at 1082 x (1 + CV^2) (Longley-Cook 1962; Mahler and Dean,
    "Credibility", Foundations of Casualty Actuarial Science, ch. 8)."""
    per = use.groupby("applies_to")["payout_fen"].sum()
    per = per[per > 0].to_numpy(np.float64)
    n = int(len(per))
    cv = float(per.std(ddof=1) / per.mean()) if n > 1 else 0.0
    full = FULL_CREDIBILITY_CLAIMS * (1 + cv * cv)
    return {"claims": n, "severity_cv": round(cv, 4), "full_credibility_claims":
            round(full, 1), "Z": round(min(1.0, math.sqrt(n / full)), 4) if n else 0.0}


def deficiency(policies: pd.DataFrame, day: dt.date, pricing: dict, ae: float | None,
               cred: dict) -> dict:
    """The premium-deficiency test for the rest of the policy year (fen inside; see
    :data:`DEFICIENCY_RULE`)."""
    end = pd.to_datetime(policies["end_date"]).max().date()
    upr = unexpired_premium_fen(policies, day)
    rest = exposure_years(policies, day + dt.timedelta(days=1), end) if day < end else 0.0
    priced = sum(pricing["pure_premium_fen"].values()) * rest
    z = cred["Z"]
    factor = 1.0 if ae is None else z * ae + (1 - z)
    adjusted = round(priced * factor)
    return {"unexpired_premium_fen": upr, "remaining_exposure_policy_years": round(rest, 4),
            "expected_claims_priced_fen": round(priced), "credibility": cred,
            "adjustment_factor": round(factor, 4), "expected_claims_fen": adjusted,
            "deficiency_fen": max(0, adjusted - upr), "rule": DEFICIENCY_RULE}


def _three_months(use: pd.DataFrame, day: dt.date) -> None:
    """InputError unless the triangle has three settlement months (the methods' least)."""
    first = pd.to_datetime(use["setl_date"]).min().to_period("M")
    n = (pd.Period(day, "M") - first).n + 1
    if n < 3:
        raise InputError(f"--as-of {day}: the first settlement paid is of {first}, so the "
                         f"paid triangle has {n} month(s) and its IBNR needs at least 3; "
                         f"give an as-of date in {first + 2} or later")


def _fits(use, policies, day, pricing) -> tuple[dict, object]:
    """Every method fitted on the paid triangle by month (the priced loss ratio as BF's
    prior and Cape Cod's comparison), and the triangle."""
    from puhui.reserve_run import earned_premium_fen, fit_methods
    from puhui.reserving.triangles import build_triangle

    tri = build_triangle(use, origin="setl_date", development="business_date",
                         amount="payout_fen", as_of=pd.Timestamp(day), grain="M")
    premium = earned_premium_fen(policies, tri.origins, day)
    with warnings.catch_warnings():        # chainladder's overflow on a factor it cannot
        warnings.simplefilter("ignore", RuntimeWarning)     # give: said in "warnings"
        return fit_methods(tri, premium, METHODS, pricing["expected_loss_ratio"]), tri


def _context(use, policies, day, pricing, est) -> tuple[pd.PeriodIndex, dict]:
    from puhui.reserve_run import earned_premium_fen

    months = year_months(policies, use, day)
    origins = [str(o) for o in est.triangle_.origins]
    ibnr = {o: int(est.ibnr_fen_[i]) for i, o in enumerate(origins)}
    pure = pricing["pure_premium_fen"]
    unpriced = sorted(set(use["benefit"]) - set(pure))
    return months, {
        "pure_fen": pure, "paid": paid_by_month_benefit(use), "ibnr_by_month": ibnr,
        "benefits": list(pure) + unpriced, "unpriced": unpriced,
        "earned": earned_premium_fen(policies, months, day),
        "exposure": [exposure_years(policies, m.start_time.date(),
                                    min(m.end_time.date(), day)) for m in months]}


def monitor(url: str, product_id: str, as_of: str, pricing_path: str | Path,
            method: str = "chainladder") -> dict:
    """What ``puhui monitor`` writes to monitor.json (yuan; see the module)."""
    from puhui.claims.ledger import shown_url
    from puhui.reserve_run import (parse_day, read_ledger, stale_warnings, usable_entries,
                                   warnings_of)

    day = parse_day(as_of)
    pricing = read_pricing(pricing_path, product_id)
    entries, policies = read_ledger(url, product_id)
    first = pd.to_datetime(policies["start_date"]).min().date()
    if day < first:
        raise InputError(f"--as-of {day}: before the policy year of {product_id} (its "
                         f"cover starts {first}); give a date in or after the year")
    use, counts = usable_entries(entries, day, product_id)
    _three_months(use, day)
    fitted, tri = _fits(use, policies, day, pricing)
    est, mack = fitted[method], fitted["chainladder"]
    months, ctx = _context(use, policies, day, pricing, est)
    rows = month_rows(months, ctx)
    sd = pricing["process_sd_per_policy_fen"]
    paid, ibnr = int(use["payout_fen"].sum()), int(est.ibnr_total_fen_)
    earned = int(np.sum(ctx["earned"]))
    actual, expected = paid + ibnr, sum(r["expected_fen"] for r in rows)
    ae = actual / expected if expected > 0 else None
    se = float(mack.total_std_err_fen_)
    return {
        "product_id": product_id, "as_of": day.isoformat(), "ledger": shown_url(url),
        "pricing": {"file": pricing["file"], "expected_loss_ratio":
                    pricing["expected_loss_ratio"], "pure_premium_yuan": {
                        b: yuan_of(v) for b, v in pricing["pure_premium_fen"].items()},
                    "process_sd_per_policy_yuan": yuan_of(sd)},
        "year": _year(policies, day), "method": method, "entries": counts,
        "earned_premium_yuan": yuan_of(earned), "paid_yuan": yuan_of(paid),
        "ibnr_yuan": yuan_of(ibnr), "ibnr_std_err_yuan": yuan_of(se),
        "ibnr_by_method_yuan": {k: yuan_of(v.ibnr_total_fen_) for k, v in fitted.items()
                                if not isinstance(v, str)},
        "comprehensive_loss_ratio": {
            "value": _ratio(actual, earned), "priced": pricing["expected_loss_ratio"],
            "interval": lognormal_interval(paid, ibnr, se, earned)},
        "year_to_date": {"actual_yuan": yuan_of(actual), "expected_yuan": yuan_of(expected),
                         "actual_to_expected": None if ae is None else round(ae, 4),
                         "band": band(expected, sum(ctx["exposure"]), sd)},
        "by_month": summarise(rows, "month", sd),
        "by_benefit": summarise(rows, "benefit", None),
        "by_month_benefit": [_cell(r) for r in rows],
        "allocation": ALLOCATION,
        "premium_deficiency": _deficiency_edge(
            deficiency(policies, day, pricing, ae, credibility(use)), actual,
            int(policies["premium_fen"].sum())),
        "warnings": warnings_of(use, fitted) + stale_warnings(use, day) + [
            f"benefit {b} is paid in the ledger but not priced in --pricing: its expected "
            f"cost is 0 and its A/E not given" for b in ctx["unpriced"]] + (
            [] if math.isfinite(se) else [
                "Mack's standard error cannot be estimated on this triangle (a development "
                "link with nothing paid at its start or nothing to learn its variation "
                "from: too few claims batches through the year): the loss ratio is given "
                "without an interval; run a claims batch each month"]),
    }


def _year(policies: pd.DataFrame, day: dt.date) -> dict:
    start = pd.to_datetime(policies["start_date"]).min().date()
    end = pd.to_datetime(policies["end_date"]).max().date()
    return {"start": start.isoformat(), "end": end.isoformat(), "policies": int(len(policies)),
            "written_premium_yuan": yuan_of(int(policies["premium_fen"].sum())),
            "elapsed_share": round(min(1.0, ((day - start).days + 1) /
                                       ((end - start).days + 1)), 4)}


def _deficiency_edge(d: dict, actual_fen: int, written_fen: int) -> dict:
    """The test at the edge (yuan), with the year's projected loss ratio: (actual to
    date + expected claims for the rest) / written premium."""
    out = {k[:-4] + "_yuan" if k.endswith("_fen") else k: (yuan_of(v) if k.endswith("_fen")
                                                           else v) for k, v in d.items()}
    out["projected_loss_ratio"] = _ratio(actual_fen + d["expected_claims_fen"], written_fen)
    out["deficient"] = d["deficiency_fen"] > 0
    return out
