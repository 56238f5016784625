"""``puhui price`` and ``puhui reproduce``: the pricing run with its files.

``OUT/pricing.json`` (the figures), ``OUT/report.html`` (the report) and
``OUT/manifest.json``: the hash of every input (each fund-data file, every file of the
actuarial basis, the assumptions file), the package version, the seed and the options.
:func:`reproduce` checks the inputs against the manifest, re-runs the pricing and
compares every figure.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from puhui import __version__
from puhui.basis import actuarial_dir
from puhui.errors import InputError
from puhui.pricing.manifest_inputs import (
    candidates,
    path_options,
    data_hashes,
    input_changes,
    locate,
    refuse_changed,
)

MANIFEST_VERSION = 1

#: The farthest the product's policy year may lie from the data's years: trend is
#: extrapolated over the gap, and beyond this the price says more about the trend
#: assumption than about the data (the shipped comparisons span at most 3 years).
MAX_TREND_YEARS = 10


def check_period(product, data) -> None:
    """Refuse a product whose policy year lies more than :data:`MAX_TREND_YEARS` from
    the data's years (a mistyped product period, or the wrong data), naming both. A
    product that matches no policy of the data is priced (pricing reads every insured
    person, enrolled or not: a new product, or next year's, is the normal case), unless
    its period's shape does not fit the data's policies
    (:func:`puhui.pricing.period.check_period_shape`: a period that is not one year, or
    a year starting on a day no policy starts on)."""
    from puhui.pricing.period import check_period_shape
    from puhui.products.catalog import product_ids, refuse_near_ids

    # policies naming a product of the basis with other spaces or case would be priced
    # as another product's holders (enrolment, claim-free years): refused
    refuse_near_ids(data.policies["product_id"], [*product_ids(), product.id],
                    "policies.parquet")
    check_period_shape(product, data.policies)
    years = sorted(data.settlement_years or ())
    if not years:
        raise InputError("the fund data has no effective settlement, so no data year to "
                         "price on")
    mid = (product.start.year + product.end.year) / 2
    gap = max(years[0] - mid, mid - years[-1], 0)
    if gap <= MAX_TREND_YEARS:
        return
    pol = data.policies
    by_product = pol["start_date"].dt.year.groupby(pol["product_id"].astype(str), observed=True)
    held = ", ".join(f"{pid} ({int(y.min())}-{int(y.max())})" for pid, y in by_product)
    raise InputError(
        f"{product.id}: its policy year {product.start} to {product.end} is {gap:g} years "
        f"from the data's years {years[0]}-{years[-1]} (policies in the data: {held or 'none'}); "
        f"pricing trends at most {MAX_TREND_YEARS} years: check the product's start and "
        f"end, or give data of nearer years")


def sha256(path: Path) -> str:
    from puhui.digests import sha256_file

    return sha256_file(path)


def input_hashes(data_dir: Path, product_file: Path, assumptions_file: Path) -> dict:
    """Hashes of every input: the data folder's Parquet files, the product file, the
    assumptions file and every file of the actuarial basis (lists, tables, rules the
    product may reach through ``extends``)."""
    basis = actuarial_dir()
    return {
        "data": data_hashes(Path(data_dir)),
        "product_file": sha256(product_file),
        "assumptions_file": sha256(assumptions_file),
        "actuarial": {str(p.relative_to(basis)): sha256(p)
                      for p in sorted(basis.rglob("*")) if p.is_file()},
    }


def _versions() -> dict:
    import numpy
    import pandas
    import scipy
    import statsmodels

    return {"puhui": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pandas": pandas.__version__, "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__}


#: ``puhui price``'s backtest: the last data year (the default), every data year that
#: has earlier years, or none.
BACKTEST_SCOPES = ("last", "all", "none")


def backtest_section(product, data, assumptions: dict, seed: int, scope: str = "last",
                     progress=None) -> dict | None:
    """``pricing.json``'s ``backtest``: :func:`puhui.pricing.backtest.backtest` of the
    last data year priced from the years before it (``scope`` "last"), or of every data
    year that has earlier years ("all"), exactly as ``puhui backtest`` computes it, with
    ``scope`` and a plain ``reading`` per year; with a single data year, no year and the
    ``reason``; None for "none". ``data`` is read, not changed."""
    from puhui.pricing.backtest import backtest, data_years

    if scope not in BACKTEST_SCOPES:
        raise InputError(f"backtest scope {scope!r}: one of {', '.join(BACKTEST_SCOPES)}")
    if scope == "none":
        return None
    years = data_years(data)
    if len(years) < 2:
        return {"scope": scope, "data_years": years, "years": [],
                "reason": (f"the fund data has {len(years)} year of settlements "
                           f"({', '.join(map(str, years)) or 'none'}); a backtest prices a "
                           f"year from the years before it and sets that price against what "
                           f"the year's enrollees cost, so it needs at least two data years")}
    say = progress or (lambda step: None)
    result = backtest([product], data, assumptions, seed,
                      progress=lambda step: say(f"backtest {step}"),
                      last_only=scope == "last")
    return {"scope": scope, **result, "reading": [backtest_reading(y) for y in result["years"]]}


def backtest_reading(y: dict) -> str:
    """What a reader should take from one backtest year, in a plain sentence or three.

    >>> backtest_reading({"year": 2025, "data_years": [2024],
    ...     "priced_pure_premium": {"total": 80.0}, "realised_cost": {"total": 100.0},
    ...     "ae": {"total": 1.25}, "policies_predicted": 1000, "policies_actual": 950,
    ...     "interval": {"level": 0.9, "lower": 60.0, "upper": 110.0, "covers": True}})
    ... # doctest: +NORMALIZE_WHITESPACE
    "The price built the same way from 2024 alone was 20.0 % below what 2025's enrollees
    cost (80.00 against 100.00 yuan per policy, A/E 1.250). It expected 1,000 policies;
    950 were sold (5.0 % fewer). The 90 % prediction interval, 60.00 to 110.00 yuan,
    covers the realised cost: the difference is within what the price's parameter
    uncertainty and one year's chance allow."
    """
    year, before = y["year"], ", ".join(map(str, y["data_years"]))
    priced, real = y["priced_pure_premium"]["total"], y["realised_cost"]["total"]
    if real is None or not y["policies_actual"]:
        return (f"No policy was held in {year}, so there is nothing to set the price built "
                f"from {before} against.")
    if priced:
        gap = priced / real - 1 if real else None
        how = ("equal to" if gap is not None and abs(gap) < 0.0005 else
               f"{abs(gap):.1%} {'below' if gap < 0 else 'above'}" if gap is not None else
               "above (they cost nothing)")
        how = how.replace("%", " %")
        text = (f"The price built the same way from {before} alone was {how} what {year}'s "
                f"enrollees cost ({priced:,.2f} against {real:,.2f} yuan per policy, A/E "
                f"{y['ae']['total']:.3f}).")
    else:
        text = (f"The price built the same way from {before} alone was zero; {year}'s "
                f"enrollees cost {real:,.2f} yuan per policy.")
    pred, act = y["policies_predicted"], y["policies_actual"]
    if pred:
        d = act / pred - 1
        more = ("as many" if abs(d) < 0.0005 else
                f"{abs(d):.1%} {'more' if d > 0 else 'fewer'}".replace("%", " %"))
        text += f" It expected {pred:,} policies; {act:,} were sold ({more})."
    z = y.get("at_realised_year2")
    text += at_realised_reading(year, z, (z or {}).get("policies_year", act))
    iv = y["interval"]
    if iv["covers"] is None:
        text += " No prediction interval could be set (nothing to predict)."
    else:
        text += (f" The {iv['level']:.0%} prediction interval, {iv['lower']:,.2f} to "
                 f"{iv['upper']:,.2f} yuan, ").replace("%", " %")
        text += ("covers the realised cost: the difference is within what the price's "
                 "parameter uncertainty and one year's chance allow." if iv["covers"] else
                 "does not cover the realised cost: the difference is more than the price's "
                 "stated uncertainty and one year's chance explain, so read the price with "
                 "that miss in mind.")
    return text


def at_realised_reading(year: int, z: dict | None, actual: int) -> str:
    """The sentence of :func:`backtest_reading` on a launch-year row re-priced at the
    year-2 size its year shows (``at_realised_year2``); "" without one. Where the mix
    holds that size, the A/E left is the rest of the price's, the borrowed renewal by
    health included (the renewals expected and the year's, side by side); where it
    cannot (the borrowed renewals alone exceed it, or later entry is capped), it says
    so rather than blame the size alone.

    >>> z = {"year2_to_launch": 0.7, "policies": 975.0, "renewals": 666.8,
    ...      "pure_premium": 153.85, "ae": 1.148, "fills_size": "yes", "renewals_actual": 827}
    >>> at_realised_reading(2025, z, 975)  # doctest: +NORMALIZE_WHITESPACE
    " At the year-2 size 2025 shows (0.700 x the launch's policies) the same price is
    153.85 yuan (A/E 1.148): the borrowed size made the policies' error; this A/E is the
    rest of the price's, the borrowed renewal by health included (667 renewals expected,
    827 in 2025)."
    >>> at_realised_reading(2025, {**z, "year2_to_launch": 0.36, "policies": 666.8,
    ...     "fills_size": "renewals above", "renewals_actual": 300}, 500)
    ... # doctest: +NORMALIZE_WHITESPACE
    " At the year-2 size 2025 shows (0.360 x the launch's policies) the same price expects
    667 policies, not 500: the borrowed renewals alone exceed that size (300 renewals in
    2025); its pure premium there is 153.85 yuan (A/E 1.148)."
    """
    if not z or z.get("ae") is None:
        return ""
    head = f" At the year-2 size {year} shows ({z['year2_to_launch']:.3f} x the launch's policies)"
    tail = f"{z['pure_premium']:,.2f} yuan (A/E {z['ae']:.3f})"
    fills, ra = z.get("fills_size", "yes"), z.get("renewals_actual")
    if fills == "yes":
        seen = (f" ({z['renewals']:,.0f} renewals expected, {ra:,} in {year})"
                if ra is not None else "")
        return (f"{head} the same price is {tail}: the borrowed size made the policies' "
                f"error; this A/E is the rest of the price's, the borrowed renewal by health "
                f"included{seen}.")
    why = ("later entry at its cap (each cell's launch take-up) falls short of that size"
           if fills == "entry capped" else
           "the borrowed renewals alone exceed that size" + (
               f" ({ra:,} renewals in {year})" if ra is not None else ""))
    return (f"{head} the same price expects {z['policies']:,.0f} policies, not {actual:,}: "
            f"{why}; its pure premium there is {tail}.")


def eligibility_not_read(product) -> str | None:
    """The note for a version with an eligibility column priced (or backtested) alone."""
    column = product.raw.get("eligibility", {}).get("persons_column")
    if not column:
        return None
    return (f"{product.id} names an eligibility column ({column!r}) for pricing beside other "
            f"versions; priced alone it is not read: the price is for everyone of its schemes "
            f"and ages. Give the versions together (--product A --product B) to price it for "
            f"those with true there")


def run_price(product_file: str | Path, data_dir: str | Path, out: str | Path, seed: int = 0,
              assumptions_file: str | Path | None = None, policies: int | None = None,
              progress=None, backtest: str = "last", lang: str = "en",
              treaties: str | Path | None = None) -> dict:
    """Price and write the three files; returns the figures. ``backtest``: "last" (the
    last data year priced from the years before it), "all" or "none"
    (:func:`backtest_section`; run first, on the data before pricing releases it);
    ``lang``: the report's language ("en" or "zh"); ``treaties``: a treaty file
    (:mod:`puhui.reserving.treaty_basis`), read before the data, for pricing.json's
    ``risk_transfer`` (none: no such section)."""
    from puhui.products.model import load_product
    from puhui.reserving.treaty_basis import load_treaties

    product_file, data_dir, out = Path(product_file), Path(data_dir), Path(out)
    product = load_product(product_file)
    ts = load_treaties(treaties) if treaties is not None else None
    result, assumptions, a_path = price_folder(product, data_dir, seed, assumptions_file,
                                               policies, progress, backtest, treaties=ts)
    manifest = price_manifest(product_file, data_dir, a_path, seed, policies, backtest, out)
    if ts is not None:
        add_treaties(manifest, ts.path, out)
    write_pricing(out, result, manifest, assumptions, a_path, progress, lang=lang)
    return result.figures


def price_folder(product, data_dir: str | Path, seed: int = 0,
                 assumptions_file: str | Path | None = None, policies: int | None = None,
                 progress=None, backtest: str = "last", treaties=None):
    """The pricing of ``puhui price`` without its files: the fund data read and
    validated, the build-up (:data:`puhui.pricing.premium.BUILD_UP`, then the risk
    transfer of ``treaties``, a :class:`~puhui.reserving.treaty_basis.TreatySet`, when
    given) and the backtest.
    Returns (the :class:`~puhui.pricing.premium.Pricing`, the assumptions, their
    file); :func:`run_price` and :class:`puhui.pricing.estimator.Pricer` both run it."""
    from puhui.pricing.experience import experience_shared
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import (
        BUILD_UP,
        EXPERIENCE_DROP,
        load_assumptions,
        price,
        risk_transfer_step,
    )

    if backtest not in BACKTEST_SCOPES:
        raise InputError(f"backtest {backtest!r}: one of {', '.join(BACKTEST_SCOPES)}")
    assumptions, a_path = load_assumptions(assumptions_file)
    say = progress or (lambda step: None)
    say("reading and validating the fund data")
    data = load_for_pricing(Path(data_dir), product, assumptions)
    check_period(product, data)
    # the backtest's realised cost of the last data year is the price's own experience
    # (the product's calculator on the whole data): made once, used by both
    with experience_shared(product, data, drop=EXPERIENCE_DROP) as shared:
        bt = backtest_section(product, data, assumptions, seed, backtest, progress)
        shared.stop_keeping()
        steps = None if treaties is None else BUILD_UP + (risk_transfer_step(treaties),)
        result = price(product, data, assumptions, seed=seed, policies=policies,
                       progress=progress, release_data=True, steps=steps)
    del data
    if bt is not None:
        result.figures["backtest"] = bt
    note = eligibility_not_read(product)
    if note:
        result.figures["notes"].append(note)
    return result, assumptions, a_path


def price_manifest(product_file: Path, data_dir: Path, a_path: Path, seed: int,
                   policies: int | None, backtest: str, out: Path | None = None) -> dict:
    """``manifest.json`` of a pricing (its ``outputs`` added when it is written); with
    ``out`` (where it is written), the inputs' paths relative to it too, so a moved
    folder reproduces."""
    product_file, data_dir = Path(product_file), Path(data_dir)
    return {
        "manifest_version": MANIFEST_VERSION,
        "command": "price",
        "package_version": __version__,
        "versions": _versions(),
        "seed": seed,
        "options": {"product": str(product_file.resolve()), "data": str(data_dir.resolve()),
                    "assumptions": str(a_path.resolve()), "policies": policies,
                    "backtest": backtest,
                    **(path_options(out, {"data": data_dir, "product": product_file,
                                          "assumptions": a_path}) if out is not None else {})},
        "inputs": input_hashes(data_dir, product_file, a_path),
    }


def add_treaties(manifest: dict, path: Path, out: Path) -> None:
    """A treaty file in the manifest: its path (absolute, relative to it, in the basis)
    and hash, so ``puhui reproduce`` re-runs with it (a pricing without one has none of
    these keys)."""
    opts = manifest["options"]
    opts["treaties"] = str(Path(path).resolve())
    extra = path_options(out, {"treaties": Path(path)})
    opts["relative_to_manifest"]["treaties"] = extra["relative_to_manifest"]["treaties"]
    if "treaties" in extra["in_basis"]:
        opts["in_basis"]["treaties"] = extra["in_basis"]["treaties"]
    manifest["inputs"]["treaties_file"] = sha256(Path(path))


def pricing_json(figures: dict) -> str:
    """The text of ``pricing.json`` (without its final newline)."""
    return json.dumps(figures, indent=2, ensure_ascii=False, sort_keys=False)


def pricing_report(result, manifest: dict, assumptions: dict, a_path: Path,
                   lang: str = "en", synthetic: dict | None = None) -> str:
    """``report.html`` of a pricing in ``lang``; a banner when the data folder of the
    manifest carries the marker of ``puhui synth`` (or ``synthetic``, the marker of
    data priced from memory: :class:`puhui.Pricer`)."""
    from puhui.pricing.report import render
    from puhui.reporting import synthetic_marker

    data = manifest.get("options", {}).get("data")
    return render(result.figures, result.tables, manifest, a_path.read_text(encoding="utf-8"),
                  result.lr_draws, int(assumptions.get("report", {}).get("min_cell_people", 10)),
                  lang=lang, synthetic=synthetic or synthetic_marker(data))


def write_pricing(out: Path, result, manifest: dict, assumptions: dict, a_path: Path,
                  progress=None, lang: str = "en") -> None:
    """``OUT/pricing.json``, ``premium.xlsx`` (for finance teams), ``manifest.json``
    (with the hash of pricing.json), the fitted models and ``report.html`` (in
    ``lang``)."""
    from puhui.excel import write_pricing_workbook

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = pricing_json(result.figures)
    (out / "pricing.json").write_text(text + "\n", encoding="utf-8")
    write_pricing_workbook(result.figures, out / "premium.xlsx")
    manifest["outputs"] = {"pricing.json": hashlib.sha256(text.encode()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if result.state is not None:
        result.state.save(out)
    (progress or (lambda step: None))("writing the report")
    (out / "report.html").write_text(pricing_report(result, manifest, assumptions, a_path, lang),
                                     encoding="utf-8")


def _differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}{k}: only in {'the original' if k in a else 'the re-run'}")
            else:
                out += _differences(a[k], b[k], f"{path}{k}.")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}{i}.")]
    return [] if a == b else [f"{path.rstrip('.')}: {a!r} then {b!r}"]


def reproduce(manifest_file: str | Path, progress=None, data: str | Path | None = None
              ) -> tuple[bool, list[str]]:
    """Re-run the pricing a manifest describes; (identical, differences). Each input is
    looked for where the manifest says (:mod:`puhui.pricing.manifest_inputs`: its
    absolute path, then relative to the manifest, then in the basis); ``data`` gives the
    data folder instead. Inputs whose hashes differ from the manifest's: exit 2 naming
    each file."""
    from puhui.pricing.versions import is_versions_manifest, reproduce_versions

    if is_versions_manifest(manifest_file):          # versions priced jointly
        return reproduce_versions(manifest_file, progress, data)
    manifest_file = Path(manifest_file)
    manifest, opts, original, backtest = _read_manifest(manifest_file)
    data_dir, product_file, a_file = _locate_inputs(manifest_file, manifest, data)
    now = input_hashes(data_dir, product_file, a_file)
    refuse_changed(manifest_file, input_changes(manifest["inputs"], now, {
        "data": data_dir, "actuarial": actuarial_dir(), "product_file": product_file,
        "assumptions_file": a_file}))
    treaties = _locate_treaties(manifest_file, manifest)
    # the figures only, as run_price computes them before writing its files (the files
    # are written after pricing.json's text, so they cannot change what is compared; the
    # report's plots and the workbook were most of a small pricing's re-run)
    from puhui.products.model import load_product
    from puhui.reserving.treaty_basis import load_treaties

    ts = load_treaties(treaties) if treaties is not None else None
    result, _, _ = price_folder(load_product(product_file), data_dir, manifest["seed"], a_file,
                                opts["policies"], progress, backtest, treaties=ts)
    figures = json.loads(json.dumps(result.figures, ensure_ascii=False))
    diffs = _differences(original, figures)
    return not diffs, diffs


def _read_manifest(manifest_file: Path) -> tuple[dict, dict, dict, str]:
    """(manifest, its options, the pricing.json beside it, the backtest scope), checked."""
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        opts = manifest["options"]
        original = json.loads((manifest_file.parent / "pricing.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(opts, dict):
            raise ValueError("not a JSON object with 'options'")
        for k in ("data", "product", "assumptions"):
            if not isinstance(opts.get(k), str):
                raise KeyError(f"options.{k}")
        if not isinstance(manifest.get("inputs"), dict):
            raise KeyError("inputs")
        if not isinstance(manifest["seed"], int) or not (
                opts["policies"] is None or isinstance(opts["policies"], int)):
            raise ValueError("seed or options.policies is not a whole number")
        # a manifest from before the backtest section: that pricing had none
        backtest = opts.get("backtest", "none")
        if backtest not in BACKTEST_SCOPES:
            raise ValueError(f"options.backtest {backtest!r} is not one of "
                             f"{', '.join(BACKTEST_SCOPES)}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{manifest_file}: not a pricing manifest with its pricing.json "
                         f"beside it ({type(e).__name__}: {e})") from None
    return manifest, opts, original, backtest


def _locate_inputs(manifest_file: Path, manifest: dict, data) -> tuple[Path, Path, Path]:
    """The data folder, product file and assumptions file to re-run with."""
    opts, inputs = manifest["options"], manifest["inputs"]
    hint = " (a data folder that moved: give it with --data DIR)"
    places = [Path(data)] if data is not None else candidates(manifest_file, opts, "data")
    data_dir = locate(places, lambda d: d.is_dir() and data_hashes(d) == inputs.get("data"),
                      "data", manifest_file, hint)
    product = locate(candidates(manifest_file, opts, "product"),
                     lambda f: f.is_file() and sha256(f) == inputs.get("product_file"),
                     "product", manifest_file)
    a_file = locate(candidates(manifest_file, opts, "assumptions"),
                    lambda f: f.is_file() and sha256(f) == inputs.get("assumptions_file"),
                    "assumptions", manifest_file)
    return data_dir, product, a_file


def _locate_treaties(manifest_file: Path, manifest: dict) -> Path | None:
    """The treaty file a pricing used (None: it used none), found by its hash."""
    if "treaties" not in manifest["options"]:
        return None
    want = manifest["inputs"].get("treaties_file")
    path = locate(candidates(manifest_file, manifest["options"], "treaties"),
                  lambda f: f.is_file() and sha256(f) == want, "treaties", manifest_file)
    # ``locate`` falls back on a file that is there: one changed since the pricing is
    # refused as a changed product file is (review s23: it was re-run with the new terms)
    if not path.is_file() or sha256(path) != want:
        refuse_changed(manifest_file, [f"{path}: the treaty file changed since the pricing "
                                       f"(its SHA-256 is not the manifest's)"])
    return path
