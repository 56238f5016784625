"""``puhui reserve``: the paid triangle of a product from the ledger, as known at an
as-of date by business date, and its IBNR by the engines of :mod:`puhui.reserving`.

The edge of reserving (docs/reserving.md): the ledger is read here (through the
functions of :mod:`puhui.claims.ledger`, either backend), the engines stay pure, and
money turns into yuan only in ``reserve.json`` and ``summary.md``.

- origin: the date of the settlement an entry applies to (``settlement_dates``), its
  month or quarter the triangle's row;
- development: the entry's business date (its batch's as-of date; a direct payout's or
  reversal's settlement date), not when it was recorded, so the same ledger gives the
  same triangle at an as-of date whatever was recorded since for later dates.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.errors import InputError

GRAIN = {"month": "M", "quarter": "Q"}
METHODS = ("chainladder", "bf", "capecod")
#: the ODP bootstrap's simulations allowed (``--bootstrap N``), and its default seed
BOOTSTRAP_SIMS = (10, 100_000)
BOOTSTRAP_SEED = 20240101
#: simulations x origins^2 at most: chainladder holds every simulated triangle at once,
#: about 400 bytes a cell at its peak (20,000 simulations of a 10 x 10 triangle: 1.2 GB
#: with chainladder's import), so this keeps a bootstrap near 2 GB
BOOTSTRAP_CELLS = 5_000_000
#: said where chainladder could not hat-adjust the bootstrap's residuals
NO_HAT = ("bootstrap: the residuals are not hat-adjusted (chainladder could not compute "
          "the hat matrix of this triangle and resamples the unadjusted Pearson residuals, "
          "which gives a somewhat narrower distribution)")
#: the quantiles of the bootstrapped total IBNR reported
BOOTSTRAP_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.995)
#: what the paid triangle's reserve.json says of the reported one (unchanged since
#: before the ledger held filing dates, so a paid reserve.json stays the same bytes)
NO_REPORTED = ("not built: the ledger does not hold the dates claims were filed (a claims "
               "file names the settlements claimed, not when); the paid triangle only")
#: ``--triangle``: paid (by the payments' business dates) or reported (by filing dates)
TRIANGLES = ("paid", "reported")
BASIS = {"paid": "paid: origin = settlement date, development = the payment's business date",
         "reported": "reported: origin = settlement date, development = the date the "
                     "claim was filed (ledger schema 8); each settlement's amount is its "
                     "net paid under the product by the entries effective on or before "
                     "the as-of date, all of it at its filing period; the IBNR is the "
                     "claims not yet filed (pure IBNR)"}


def parse_day(text: str, option: str = "--as-of") -> dt.date:
    """An ISO date from :data:`puhui.basis.FIRST_DATE` to ``LAST_DATE`` (the dates the
    ledger and the claims batches take), or InputError naming the option."""
    from puhui.basis import FIRST_DATE, LAST_DATE

    try:
        day = dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise InputError(f"{option} {text!r}: not a date; give YYYY-MM-DD") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise InputError(f"{option} {text!r}: dates lie from {FIRST_DATE} to {LAST_DATE}")
    return day


def read_ledger(url: str, product_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(entries, policies) of ``product_id`` from the ledger at ``url`` (which must
    exist): :func:`puhui.claims.ledger.reserve_entries` and ``product_premiums``."""
    from puhui.claims import ledger

    con = ledger.connect(url, must_exist=True)
    try:
        known = ledger.product_ids(con)
        if product_id not in known:
            raise InputError(f"--product {product_id}: the ledger {ledger.shown_url(url)} "
                             f"holds no policies of it (it holds "
                             f"{', '.join(known) if known else 'none'}); give one of those")
        return ledger.reserve_entries(con, product_id), ledger.product_premiums(con, product_id)
    finally:
        con.close()


def usable_entries(entries: pd.DataFrame, as_of: dt.date, product_id: str
                   ) -> tuple[pd.DataFrame, dict]:
    """The entries a triangle at ``as_of`` takes, and what was left out or moved, counted
    (never silently): entries effective after ``as_of`` (not yet known), entries without
    a settlement date (forgotten by a ledger before schema 6: left out), entries
    effective before their settlement's date (a reversal dated before a later settlement
    it adjusted: counted from the settlement's date)."""
    day = as_of.isoformat()
    dated = entries["setl_date"].notna()
    setl = entries["setl_date"].astype(str)
    early = dated & (entries["business_date"].astype(str) < setl)
    # an entry dated before its settlement is known from the settlement's date
    effective = entries["business_date"].astype(str).where(~early, setl) <= day
    no_origin = entries[~dated & effective]
    use = entries[dated & effective].copy()
    if not len(use):
        _nothing_usable(entries, len(no_origin), day, product_id)
    early = early[dated & effective]
    use.loc[early, "business_date"] = use.loc[early, "setl_date"]
    counts = {"used": int(len(use)), "after_as_of": int((~effective).sum()),
              "without_settlement_date": {"entries": int(len(no_origin)),
                                          "yuan": int(no_origin["payout_fen"].sum()) / 100},
              "dated_before_settlement": int(early.sum())}
    return use, counts


def _nothing_usable(entries: pd.DataFrame, undated: int, day: str, product_id: str):
    """InputError: no entry of ``product_id`` a triangle at ``day`` can take, and why."""
    if undated:
        raise InputError(f"--as-of {day}: the {undated:,} payment entries of {product_id} "
                         f"effective on or before it have no settlement date (a ledger "
                         f"upgraded from before schema 6 had forgotten those settlements), "
                         f"so they have no origin period and no triangle can be made; "
                         f"reserve from the batches run since the upgrade")
    first = entries["business_date"].min() if len(entries) else None
    raise InputError(f"--as-of {day}: the ledger holds no payment of {product_id} "
                     f"effective on or before it"
                     + (f" (the first is effective {first}); give a later date"
                        if first else "; run a claims batch first"))


def cover_days(policies: pd.DataFrame):
    """(start, end exclusive, days) of each policy's cover (start to end inclusive),
    numpy days; a cover of no day counts one (no division by zero)."""
    start = pd.to_datetime(policies["start_date"]).to_numpy("datetime64[D]")
    end = pd.to_datetime(policies["end_date"]).to_numpy("datetime64[D]") + 1
    return start, end, np.maximum((end - start).astype(np.int64), 1)


def earned_premium_fen(policies: pd.DataFrame, origins: pd.PeriodIndex, as_of: dt.date
                       ) -> np.ndarray:
    """Premium earned in each origin period up to ``as_of``, fen: each policy's premium
    spread evenly over the days of its cover (start to end, inclusive). The running
    total is rounded, and each period is its difference, so the periods add up to the
    premium earned to date to the fen (rounded one by one, a year of twelve months came
    to 11,999.99 yuan of 12,000.00 written: review s22)."""
    start, end, days = cover_days(policies)
    per_day = policies["premium_fen"].to_numpy(np.float64) / days
    stop = np.datetime64(as_of, "D") + 1
    out = np.zeros(len(origins))
    for k, p in enumerate(origins):
        lo = np.datetime64(p.start_time.date(), "D")
        hi = min(np.datetime64(p.end_time.date(), "D") + 1, stop)
        overlap = (np.minimum(end, hi) - np.maximum(start, lo)).astype(np.int64)
        out[k] = (per_day * np.clip(overlap, 0, None)).sum()
    running = np.floor(np.cumsum(out) + 0.5).astype(np.int64)
    return np.diff(running, prepend=0)


def fit_methods(tri, premium_fen: np.ndarray, methods: tuple[str, ...],
                loss_ratio: float | None, tail: str | float | None = None) -> dict:
    """Each method's fitted estimator (or why it was not run), by name; ``tail`` (None,
    "exponential", "inverse_power", or a constant tail factor >= 1) the development
    beyond the triangle's last age for every method
    (:func:`puhui.reserving.methods.developed`)."""
    from puhui.reserving.methods import BornhuetterFerguson, CapeCod, MackChainLadder

    out: dict = {}
    for name in methods:
        if name == "chainladder":
            out[name] = MackChainLadder(tail=tail).fit(tri)
        elif name == "bf" and loss_ratio is None:
            out[name] = "not run: Bornhuetter-Ferguson needs the priced loss ratio " \
                        "(--loss-ratio, pricing.json's expected_loss_ratio)"
        elif name == "bf":
            out[name] = BornhuetterFerguson(loss_ratio, tail=tail).fit(tri, premium_fen)
        elif name == "capecod":
            out[name] = CapeCod(prior_loss_ratio=loss_ratio, tail=tail).fit(tri, premium_fen)
    return out


def _number(x) -> float | None:
    """A float for JSON: None where not finite (JSON has no NaN)."""
    x = float(x)
    return x if np.isfinite(x) else None


def warnings_of(use: pd.DataFrame, fitted: dict) -> list[str]:
    """What makes the estimate weak, said in reserve.json and summary.md: payments on one
    business date only (one batch: no development to learn from), development factors
    the triangle cannot give (a link with nothing paid at its start)."""
    out = []
    days = use["business_date"].nunique()
    if days == 1:
        out.append(f"every payment used has one business date ({use['business_date'].iloc[0]}"
                   f"): the triangle shows no development, and an IBNR of 0 says nothing; "
                   f"run claims batches through the year, each with its --as-of date")
    mack = fitted.get("chainladder")
    if mack is not None and not isinstance(mack, str):
        f = np.asarray(mack.ldf_[:mack.triangle_.values.shape[1] - 1], dtype=float)
        bad = int((~np.isfinite(f)).sum())
        if bad:
            out.append(f"{bad} of {len(f)} development factors cannot be estimated (nothing "
                       f"paid at the start of the link): the origins resting on them get no "
                       f"IBNR from the chain ladder")
    if mack is not None and not isinstance(mack, str) and \
            getattr(mack, "sigma_fallback_", False):
        out.append("chainladder: the log-linear sigma of the last development link is "
                   "not usable on this triangle (links where nothing developed bend the "
                   "fit: far above every other link's); Mack's standard error uses "
                   "Mack's own approximation for it (sigma_interpolation 'mack')")
    if mack is not None and not isinstance(mack, str) and mack.tail_sigma_failed_:
        kind = "constant tail" if isinstance(mack.tail, (int, float)) else \
            f"tail curve {mack.tail!r}"
        out.append(f"chainladder: Mack's standard error with the {kind} is not "
                   "given (null): chainladder extrapolates the tail's sigma from the "
                   "triangle's own, and on this triangle that gives a sigma not finite or "
                   "above every link's (links where nothing developed); the IBNR stands")
    for name, est in fitted.items():
        if isinstance(est, str) or not est.unestimated_.any():
            continue
        which = est.triangle_.origins.astype(str)[est.unestimated_]
        out.append(f"{name}: {len(which)} origin(s) with payments have no estimate "
                   f"({', '.join(which)}): a development factor they rest on cannot be "
                   f"estimated and is taken as no development, so their IBNR (and the "
                   f"total's share of it) is not known (\"estimated\": false in "
                   f"reserve.json)")
    return out


def stale_warnings(use: pd.DataFrame, as_of: dt.date, grain: str = "M") -> list[str]:
    """A warning where the latest payment used is effective in an earlier period than
    ``as_of``'s: no batch has run since, so the periods after it show nothing paid (and
    the chain ladder no IBNR for them) because nothing is known, not because nothing
    was paid."""
    last = dt.date.fromisoformat(str(use["business_date"].max())[:10])
    if pd.Period(last, grain) >= pd.Period(as_of, grain):
        return []
    return [f"the latest payment used is effective {last}, {(as_of - last).days} days "
            f"before --as-of {as_of}: nothing after it is known (no claims batch effective "
            f"since), so what was paid after it shows as 0 and gets no IBNR from the chain "
            f"ladder; run a claims batch with --as-of {as_of} first"]


def yuan_of(fen) -> float | None:
    """Fen (a number) as yuan for JSON, two decimals; None where there is none or it is
    not finite (JSON has no NaN)."""
    if fen is None or not np.isfinite(float(fen)):
        return None
    return round(float(fen) / 100, 2)


def method_result(est) -> dict:
    """One fitted method at the edge: IBNR by origin and in total (yuan), Mack's
    standard errors where the method has them, the factors and the diagnostics."""
    origins = est.triangle_.origins.astype(str)
    se = getattr(est, "std_err_fen_", None)
    rows = [{"origin": o, "latest_yuan": yuan_of(est.latest_fen_[i]),
             "ultimate_yuan": yuan_of(est.ultimate_fen_[i]), "ibnr_yuan": yuan_of(est.ibnr_fen_[i]),
             "estimated": not bool(est.unestimated_[i]),
             **({"std_err_yuan": yuan_of(se[i])} if se is not None else {})}
            for i, o in enumerate(origins)]
    out = {"ibnr_total_yuan": yuan_of(est.ibnr_total_fen_), "by_origin": rows,
           "development_factors": [_number(x) for x in
                                   est.ldf_[:est.triangle_.values.shape[1] - 1]],
           "tail_factor": _number(est.tail_factor_),
           "diagnostics": diagnostics(est.diagnostics_)}
    if se is not None:
        out["std_err_total_yuan"] = yuan_of(est.total_std_err_fen_)
    if getattr(est, "loss_ratio_", None) is not None:
        out["loss_ratio"] = float(est.loss_ratio_[0])
        gap = getattr(est, "loss_ratio_gap_", None)
        out["loss_ratio_gap"] = None if gap is None else float(gap[0])
    return out


def diagnostics(d: dict) -> dict:
    """chainladder's diagnostics (:func:`puhui.reserving.methods.development_diagnostics`)
    as JSON: the factors' table by link, the share of large residuals, the two tests."""
    f = d["factors"].replace([np.inf, -np.inf], np.nan)
    factors = [{"link": str(link), **{k: (None if pd.isna(v) else float(v))
                                      for k, v in row.items()}}
               for link, row in f.iterrows()]
    tests = {k: (None if d[k] is None else
                 {a: (list(b) if isinstance(b, tuple) else b) for a, b in d[k].items()})
             for k in ("calendar_effect", "factor_correlation")}
    return {"factors": factors, "share_large_residuals": d["share_large_residuals"], **tests}


def checked_bootstrap(n_sims, seed, method: str, tail) -> tuple[int, int] | None:
    """(simulations, seed) of ``--bootstrap N [--seed S]``, or None without it;
    InputError for N outside :data:`BOOTSTRAP_SIMS`, a seed outside 0..2^32 - 1 (numpy's
    seeds) or without ``--bootstrap``, a method without a bootstrap, or a tail (the
    simulations develop to the triangle's last age only)."""
    if n_sims is None:
        if seed is not None:
            raise InputError(f"--seed {seed} without --bootstrap N: the seed is the "
                             f"bootstrap's; give --bootstrap too")
        return None
    lo, hi = BOOTSTRAP_SIMS
    if not lo <= n_sims <= hi:
        raise InputError(f"--bootstrap {n_sims}: give from {lo:,} to {hi:,} simulations "
                         f"(1,000 to 10,000 is usual)")
    seed = BOOTSTRAP_SEED if seed is None else seed
    if not 0 <= seed < 2 ** 32:
        raise InputError(f"--seed {seed}: give a whole number from 0 to {2 ** 32 - 1}")
    if method not in ("chainladder", "all"):
        raise InputError(f"--bootstrap with --method {method}: the over-dispersed "
                         f"Poisson bootstrap is the chain ladder's; give --method "
                         f"chainladder or all")
    if tail is not None:
        raise InputError("--bootstrap with --tail or --tail-factor: the bootstrap's "
                         "simulations develop to the triangle's last age only; give one")
    return n_sims, seed


def bootstrap_result(tri, n_sims: int, seed: int) -> dict:
    """The ODP bootstrap of the chain ladder on ``tri``
    (:class:`puhui.reserving.methods.OdpBootstrap`, ``n_sims`` simulations, ``seed``):
    the total IBNR's mean, standard deviation (n - 1 divisor) and quantiles (numpy's
    linear interpolation) over the simulations, yuan."""
    from puhui.reserving.methods import OdpBootstrap

    n = len(tri.origins)
    if n_sims * n * n > BOOTSTRAP_CELLS:
        raise InputError(f"--bootstrap {n_sims}: a triangle of {n} origin periods takes "
                         f"at most {BOOTSTRAP_CELLS // (n * n):,} simulations here (every "
                         f"simulated triangle is held at once: about 2 GB); give fewer, or "
                         f"--by quarter")
    boot = OdpBootstrap(n_sims=n_sims, seed=seed).fit(tri)
    totals = boot.ibnr_sims_fen_.sum(axis=1)
    q = boot.quantile(BOOTSTRAP_QUANTILES)
    return {"simulations": n_sims, "seed": seed, "mean_yuan": yuan_of(totals.mean()),
            "std_dev_yuan": yuan_of(totals.std(ddof=1)),
            "quantiles_yuan": {f"{100 * p:g}%": yuan_of(v)
                               for p, v in zip(BOOTSTRAP_QUANTILES, q)},
            "scale": _number(boot.scale_), "hat_adjusted": bool(boot.hat_adjusted_)}


def _checked_options(tail, tail_factor, loss_ratio, triangle: str):
    """The tail (a curve's name, a checked constant factor, or None) of the command's
    options, or InputError for options that do not go together or are out of range."""
    from puhui.reserving.methods import tail_factor as checked_factor

    if triangle not in TRIANGLES:
        raise InputError(f"--triangle {triangle!r}: give {' or '.join(TRIANGLES)}")
    if tail_factor is not None:
        if tail is not None:
            raise InputError(f"--tail-factor {tail_factor} with --tail {tail}: give one "
                             f"(a curve fitted to the triangle, or a factor from outside)")
        tail_factor = checked_factor(tail_factor)
    if loss_ratio is not None and not 0 < loss_ratio < 10:
        raise InputError(f"--loss-ratio {loss_ratio}: give the priced loss ratio as a "
                         f"fraction (0.85 for 85 %)")
    return tail if tail_factor is None else tail_factor


def reserve(url: str, product_id: str, as_of: str, *, by: str = "month",
            method: str = "chainladder", loss_ratio: float | None = None,
            tail: str | None = None, tail_factor: float | None = None,
            bootstrap: int | None = None, seed: int | None = None,
            triangle: str = "paid") -> dict:
    """What ``puhui reserve`` writes to reserve.json (yuan; see the module); the
    settings after ``as_of`` are the command's options (``tail`` None: no development
    beyond the triangle's last age; ``tail_factor`` a constant tail factor >= 1 given
    from outside the triangle, not together with ``tail``; ``bootstrap`` the ODP
    bootstrap's simulations, with ``seed``: :func:`checked_bootstrap`; ``triangle``
    "paid" or "reported": :func:`reported_frame`)."""
    from puhui.claims.ledger import shown_url
    from puhui.reserving.triangles import build_triangle

    day = parse_day(as_of)
    developing = _checked_options(tail, tail_factor, loss_ratio, triangle)
    boot = checked_bootstrap(bootstrap, seed, method, developing)
    entries, policies = read_ledger(url, product_id)
    use, counts = usable_entries(entries, day, product_id)
    if triangle == "reported":
        frame, filings = reported_frame(use, read_filings(url, product_id), day, product_id)
        tri = build_triangle(frame, origin="setl_date", development="filed_date",
                             amount="payout_fen", as_of=pd.Timestamp(day), grain=GRAIN[by])
    else:
        tri = build_triangle(use, origin="setl_date", development="business_date",
                             amount="payout_fen", as_of=pd.Timestamp(day), grain=GRAIN[by])
    premium = earned_premium_fen(policies, tri.origins, day)
    fitted = fit_methods(tri, premium, METHODS if method == "all" else (method,), loss_ratio,
                         developing)
    cells = np.where(tri.known, tri.values / 100, np.nan)
    methods = {k: (v if isinstance(v, str) else method_result(v)) for k, v in fitted.items()}
    if boot is not None:
        methods["chainladder"]["bootstrap"] = bootstrap_result(tri, *boot)
        boot = methods["chainladder"]["bootstrap"]
    res = {
        "product_id": product_id, "as_of": day.isoformat(), "by": by,
        "ledger": shown_url(url), "basis": BASIS[triangle], "method": method,
        "prior_loss_ratio": loss_ratio,
        "tail": "constant" if tail_factor is not None else (tail or "none"),
        "reported_triangle": NO_REPORTED, "entries": counts,
        "triangle": {"origins": [str(o) for o in tri.origins],
                     f"cumulative_{triangle}_yuan": [
                         [None if np.isnan(v) else round(float(v), 2) for v in row]
                         for row in cells]},
        "earned_premium_yuan": [p / 100 for p in premium.tolist()],
        f"{triangle}_to_date_yuan": int(tri.latest.sum()) / 100,
        "methods": methods,
        "warnings": warnings_of(use, fitted) + stale_warnings(use, day, GRAIN[by])
        + ([] if boot is None or boot["hat_adjusted"] else [NO_HAT]),
    }
    if triangle == "reported":
        del res["reported_triangle"]
        res = {**res, "filings": filings, "warnings": res["warnings"] + filing_warnings(filings)}
    return res


def read_filings(url: str, product_id: str) -> pd.DataFrame:
    """The claims' filing dates the ledger recorded under ``product_id`` (schema 8)."""
    from puhui.claims import ledger

    con = ledger.connect(url, must_exist=True)
    try:
        return ledger.claim_filings(con, product_id)
    finally:
        con.close()


def reported_frame(use: pd.DataFrame, filings: pd.DataFrame, as_of: dt.date,
                   product_id: str) -> tuple[pd.DataFrame, dict]:
    """One row per settlement for the reported triangle: its date (the origin), its
    claim's filing date (the development) and its net paid under the product by the
    entries used at ``as_of`` (fen); and what was left out, counted: settlements paid
    with no filing date on record (a proactive batch, a direct payout, a claims file
    without ``filed_date``, a batch before schema 8) and those filed after ``as_of``.
    InputError where no settlement used has a filing date."""
    per = use.groupby(use["applies_to"].astype(str), sort=True).agg(
        setl_date=("setl_date", "first"), payout_fen=("payout_fen", "sum"))
    day = filings.set_index(filings["setl_id"].astype(str))["filed_date"]
    per["filed_date"] = day.reindex(per.index).to_numpy()
    none = per["filed_date"].isna()
    late = ~none & (per["filed_date"].astype(str) > as_of.isoformat())
    if not (~none & ~late).any():
        raise InputError(f"--triangle reported: none of the {len(per):,} settlements of "
                         f"{product_id} paid by {as_of} has a filing date on record (the "
                         f"ledger keeps them from claimed batches whose claims file has a "
                         f"filed_date column, ledger schema 8); use --triangle paid, or "
                         f"run the batches with such claims files")
    counts = {"settlements": int((~none & ~late).sum()),
              "without_filing_date": {"settlements": int(none.sum()),
                                      "yuan": int(per.loc[none, "payout_fen"].sum()) / 100},
              "filed_after_as_of": {"settlements": int(late.sum()),
                                    "yuan": int(per.loc[late, "payout_fen"].sum()) / 100}}
    keep = per[~none & ~late].reset_index(drop=True)
    keep["payout_fen"] = keep["payout_fen"].astype(np.int64)
    return keep, counts


def filing_warnings(filings: dict) -> list[str]:
    """What the reported triangle leaves out, said where it is not nothing."""
    out = []
    for key, what in (("without_filing_date", "have no filing date on record"),
                      ("filed_after_as_of", "were filed after the as-of date")):
        f = filings[key]
        if f["settlements"]:
            out.append(f"{f['settlements']:,} settlement(s) paid {f['yuan']:,.2f} yuan "
                       f"{what} and are not in the reported triangle")
    return out


def summary_markdown(res: dict) -> str:
    """A short text summary of reserve.json (markdown)."""
    lines = [f"# IBNR of {res['product_id']} as of {res['as_of']}", "",
             _triangle_line(res), ""]
    e = res["entries"]
    lines.append(f"Entries: {e['used']:,} used, {e['after_as_of']:,} effective after the "
                 f"as-of date, {e['without_settlement_date']['entries']:,} without a "
                 f"settlement date ({e['without_settlement_date']['yuan']:,.2f} yuan, left "
                 f"out), {e['dated_before_settlement']:,} counted from their settlement's "
                 f"date.")
    lines += [f"\nWarning: {w}." for w in res["warnings"]]
    for name, m in res["methods"].items():
        lines += ["", f"## {name}", ""]
        if isinstance(m, str):
            lines.append(m)
            continue
        se = "std_err_total_yuan" in m
        lines.append(f"IBNR {m['ibnr_total_yuan']:,.2f} yuan"
                     + (f" (Mack s.e. {m['std_err_total_yuan']:,.2f})" if se and
                        m["std_err_total_yuan"] is not None else "") + "."
                     + (f" Tail beyond the last age: {res['tail']}, factor "
                        f"{_shown_factor(m['tail_factor'])}." if res["tail"] != "none" else ""))
        if "bootstrap" in m:
            lines += ["", bootstrap_markdown(m["bootstrap"])]
        lines += ["", "| origin | paid | ultimate | IBNR |" + (" s.e. |" if se else ""),
                  "|---|---:|---:|---:|" + ("---:|" if se else "")]
        for r in m["by_origin"]:
            lines.append(f"| {r['origin']} | {r['latest_yuan']:,.2f} | "
                         f"{r['ultimate_yuan']:,.2f} | {r['ibnr_yuan']:,.2f} |"
                         + (f" {_shown(r['std_err_yuan'])} |" if se else ""))
    return "\n".join(lines) + "\n"


def _triangle_line(res: dict) -> str:
    """summary.md's sentence on the triangle."""
    o = res["triangle"]["origins"]
    where = (f"by {res['by']} ({len(o)} origin periods, {o[0]} to {o[-1]}) from the ledger "
             f"{res['ledger']}")
    if "filings" not in res:
        return (f"Paid triangle {where}, by business date; paid to date "
                f"{res['paid_to_date_yuan']:,.2f} yuan. Reported triangle: "
                f"{res['reported_triangle']}.")
    f = res["filings"]
    return (f"Reported triangle {where}, by the date each claim was filed ({f['settlements']:,} "
            f"settlements; each at its net paid as of the as-of date); reported to date "
            f"{res['reported_to_date_yuan']:,.2f} yuan. The IBNR is the claims not yet "
            f"filed. Left out: {f['without_filing_date']['settlements']:,} settlements "
            f"without a filing date ({f['without_filing_date']['yuan']:,.2f} yuan), "
            f"{f['filed_after_as_of']['settlements']:,} filed after the as-of date "
            f"({f['filed_after_as_of']['yuan']:,.2f} yuan).")


def bootstrap_markdown(b: dict) -> str:
    """The bootstrap's line of summary.md."""
    q = ", ".join(f"{k} {_shown(v)}" for k, v in b["quantiles_yuan"].items())
    return (f"Over-dispersed Poisson bootstrap ({b['simulations']:,} simulations, seed "
            f"{b['seed']}): total IBNR mean {_shown(b['mean_yuan'])} yuan, s.d. "
            f"{_shown(b['std_dev_yuan'])}; quantiles {q}.")


def _finite(obj):
    """``obj`` with every float that is not finite as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


def _shown_factor(v) -> str:
    return "n/a" if v is None else f"{v:.6f}"


def _shown(v) -> str:
    return "n/a" if v is None else f"{v:,.2f}"


def write_outputs(res: dict, out: str | Path) -> tuple[Path, Path]:
    """reserve.json and summary.md into ``out``."""
    out = Path(out)
    j, m = out / "reserve.json", out / "summary.md"
    j.write_text(json.dumps(_finite(res), indent=2, ensure_ascii=False, allow_nan=False),
                 encoding="utf-8")
    m.write_text(summary_markdown(res), encoding="utf-8")
    return j, m
