"""``puhui backtest``: each data year priced from the years before it, set against what
that year's enrollees cost.

For every data year t that has earlier years (docs/pricing.md, "Backtest"):

1. the data before t: settlements dated before t (with their lines), policies that
   start before t, every person (death dates after t only shorten no exposure before t);
2. the product of year t: the given product file whose policy period starts in t, else
   the first one given with its period moved to t (same terms; the backtest says so);
3. the price of year t from that data alone (:func:`puhui.pricing.premium.price`, the
   same build-up as ``puhui price``: its mix is projected to t, its trend runs to t);
4. the realised cost: the product's calculator on the data up to t (so renewals,
   waiting periods and claim-free years see the years before), summed over the people
   of year t who held a policy and whom the product accepts::

       realised cost per policy (benefit b) = sum of as-if payouts_b / policies in t
       A/E                                   = realised / priced pure premium

   and the coverage of a prediction interval for the realised cost per policy: the
   priced pure premium's interval read as a normal's (the GLMs' parameter uncertainty
   and, since session 19, the model's level error the balance leaves, Bühlmann's
   posterior (1 - Z) tau^2 per pricing group: :func:`puhui.pricing.balance.level_sd`)
   and the process variance of the year's claims over the *actual* policies
   (``process_sd_per_policy``^2 / policies), as a gamma with that mean and variance.

A year priced from the product's launch year alone (the data before it has no
renewal year) is flagged ``launch_year_projection`` with a ``launch_year_note``: its
enrolment borrows renewal by health and the year-2 size from
``actuarial/assumptions/enrolment.toml`` (docs/pricing.md, "Who enrols"), so its
policies and A/E test those assumptions; the report says so at the top and on the row.

The data's reversals are left out before the split (a settlement reversed in year t
is missing from the data before t too): a small look-ahead, stated in the output.
This check does not share the model's structure: the realised cost is the calculator
on settlements the price never saw.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from puhui.errors import InputError
from puhui.fund.files import FundData
from puhui.products.model import Product

NOTE_REVERSALS = ("reversed settlements are left out of every year before the split, so a "
                  "settlement reversed in year t is also missing from the data before t (a "
                  "small look-ahead; reversals are few)")


def data_before(data: FundData, year: int) -> FundData:
    """The fund data as it stood before ``year``: settlements dated before it with
    their lines, policies starting before it, every person (noted as a cut of ``data``:
    :func:`puhui.pricing.experience.note_cut`). Where nothing is dated
    from ``year`` on (the data through its last year), the data's own tables, not
    copies (read them, do not change them)."""
    from puhui.pricing.experience import note_cut

    st = data.settlements
    keep = (st["setl_time"].dt.year < year).to_numpy()
    pol = data.policies
    pol_keep = (pol["start_date"].dt.year < year).to_numpy()
    years = tuple(y for y in (data.settlement_years or ()) if y < year)
    lines = data.lines
    if (keep.all() and pol_keep.all()
            and all(_plain_index(t) for t in (st, pol, lines) if t is not None)):
        return FundData(data.persons, pol, st, lines, settlement_years=years)
    st = st[keep].reset_index(drop=True)
    if lines is not None:
        lines = lines[lines["setl_id"].isin(st["setl_id"])].reset_index(drop=True)
    pol = pol[pol_keep].reset_index(drop=True)
    cut = FundData(data.persons, pol, st, lines, settlement_years=years)
    note_cut(data, cut, year)       # its experience: the whole data's, of earlier years
    return cut


def _plain_index(t: pd.DataFrame) -> bool:
    """Rows numbered 0, 1, ... (what ``reset_index(drop=True)`` would give)."""
    i = t.index
    return isinstance(i, pd.RangeIndex) and i.start == 0 and i.step == 1


def data_through(data: FundData, year: int) -> FundData:
    """The fund data up to and including ``year`` (the realised cost's input)."""
    return data_before(data, year + 1)


def product_for_year(products: list[Product], year: int) -> tuple[Product, bool]:
    """The product whose policy period starts in ``year``, else the first one with its
    period moved to ``year`` (same terms); (product, moved)."""
    from puhui.pricing.premium import years_later

    p = product_for_year_index(products, year)
    if p.start.year == year:
        return p, False
    shift = year - p.start.year
    return dataclasses.replace(p, start=years_later(p.start, shift),
                               end=years_later(p.end, shift)), True


def product_for_year_index(products: list[Product], year: int) -> Product:
    """The product :func:`product_for_year` starts from for ``year`` (as given)."""
    return next((p for p in products if p.start.year == year), products[0])


def realised_cost(product: Product, data: FundData, year: int) -> dict:
    """What ``year``'s enrollees cost under ``product``: the as-if payouts (yuan) of the
    people enrolled that year whom the product accepts, per policy and per
    policy-year of exposure, by benefit and in total, and the number of policies.
    A renewal's deductible is the one its claim-free years give
    (:func:`claim_free_deductibles`), as the price charges and a batch pays."""
    from puhui.pricing.experience import experience_in_blocks
    from puhui.pricing.premium import EXPERIENCE_DROP, eligible_rows

    through = data_through(data, year)
    frame, _ = experience_in_blocks(product, through, drop=EXPERIENCE_DROP)
    on = ((frame["year"].to_numpy() == year) & frame["enrolled"].to_numpy(dtype=bool)
          & eligible_rows(product, frame))
    line = on                                    # every product's policyholders
    on, notes = own_book(product, through, frame, year, on)
    steps = claim_free_deductibles(product, through, frame, year, on, notes)
    n = int(on.sum())
    # the line's policies and renewals (every version's: what a launch-year price's
    # year-2 size and borrowed renewals are of)
    line_policies, renewals = int(line.sum()), renewed(frame, year, line)
    exposure = float(frame["exposure"].to_numpy()[on].sum())
    paid_fen = {b.id: int(frame[f"payout_{b.id}"].to_numpy()[on].sum()) for b in product.benefits}
    paid = {b: v / 100.0 for b, v in paid_fen.items()}
    total = sum(paid_fen.values()) / 100.0
    return {"policies": n, "line_policies": line_policies, "line_renewals": renewals,
            "exposure": exposure, "paid": paid,
            "paid_total": total,
            "per_policy": {**{b: v / n if n else None for b, v in paid.items()},
                           "total": total / n if n else None},
            "per_policy_year": total / exposure if exposure else None,
            "claim_free_policies": steps, "notes": notes}


def renewed(frame: pd.DataFrame, year: int, on) -> int:
    """How many of the rows ``on`` (``year``'s policyholders) held a policy (of any
    product in the data) the year before: the year's renewals; the rest joined."""
    import numpy as np

    yr, person = frame["year"].to_numpy(), frame["person"].to_numpy()
    before = person[(yr == year - 1) & frame["enrolled"].to_numpy(dtype=bool)]
    return int(np.isin(person[np.asarray(on, dtype=bool)], before).sum())


def own_book(product: Product, data: FundData, frame: pd.DataFrame, year: int, on
             ) -> tuple:
    """``on`` (year t's policyholders the product accepts) narrowed to those holding a
    policy of ``product``'s id that year when the data holds any (a version priced
    beside others: its own buyers, not the other versions'); else all of them, with a
    note naming the products they hold (a product period moved to t, or a new product:
    the year's policyholders stand for its book)."""
    import numpy as np

    from puhui.pricing.experience import person_ids, person_rows, year_person_key

    pol = data.policies
    pol = pol[(pol["start_date"].dt.year == year).to_numpy()]
    ids = pol["product_id"].astype(str)
    mine = pol[(ids == product.id).to_numpy()]
    if len(mine):
        index = person_ids(frame)
        keys = year_person_key(np.full(len(mine), year), person_rows(index, mine["psn_no"]))
        holds = np.isin(year_person_key(frame["year"].to_numpy(),
                                        person_rows(index, frame["psn_no"])), keys)
        return on & holds, []
    held = sorted(set(ids))
    if not held:
        return on, []
    return on, [f"no policy of {product.id} starts in {year}: its realised cost is that of "
                f"the year's policyholders ({', '.join(held[:5])}"
                f"{', ...' if len(held) > 5 else ''}) whom it accepts"]


def claim_free_deductibles(product: Product, data: FundData, frame: pd.DataFrame,
                           year: int, on, notes: list | None = None) -> dict:
    """Re-pay, in place in ``frame``'s ``payout_<b>`` columns, the rows ``on`` (``year``'s
    enrollees) whose policy has claim-free years, with those years on the policy so a
    deductible that steps down after claim-free years (Huhuibao 2025: 12,000, 11,000
    after 2, 10,000 after 3) is the policy's own. The years are judged as the price
    judges them (:func:`puhui.pricing.enrolment.policy_claim_free_years`: the earlier
    years' payouts under each policy's own product where its file is in the basis).
    Returns the number of ``year``'s policies at each count of claim-free years; the
    notes of products without a file go to ``notes``."""
    import numpy as np

    from puhui.pricing.enrolment import (
        first_claim_free_step,
        paid_under_own_terms,
        policy_claim_free_years,
        repay_with_claim_free_years,
    )

    if first_claim_free_step(product) is None:
        return {}
    own_paid, own_notes = paid_under_own_terms(product, data, frame, last=year - 1)
    if notes is not None:
        notes += own_notes
    cfy = policy_claim_free_years(frame, data.policies, own_paid)
    del own_paid
    counts = pd.Series(cfy[on]).value_counts().sort_index()
    rows = np.flatnonzero(on & (cfy >= first_claim_free_step(product)))
    if len(rows):
        paid = repay_with_claim_free_years(product, data, frame, year, rows, cfy[rows])
        for col, v in paid.items():
            frame[col].to_numpy()[rows] = v
    return {str(int(k)): int(v) for k, v in counts.items()}


def prediction_interval(mean: float, parameter: dict, process_sd: float | None,
                        policies: int) -> dict:
    """An interval for a year's realised cost per policy over ``policies`` policies::

        var = (parameter interval's width / (2 z))^2 + process_sd^2 / policies

    where the price's interval ``parameter`` holds, per pricing group g of price P_g,
    its parameter variance and its level error: Var_g (1 + s_g^2) + P_g^2 s_g^2 with
    s_g = sqrt((1 - Z_g) tau^2) / factor_g (:func:`puhui.pricing.balance.level_sd`);

    as a gamma with mean ``mean`` and that variance, at the parameter interval's level
    (``covers`` None until set by the caller; None bounds when there is nothing to
    predict: no policies, no variance).

    Parameter sd 20 / (2 x 1.645) = 6.08, process 300^2 / 900 = 100: var 136.96, sd
    11.70; a normal would give 80.8 to 119.2, the gamma leans right:

    >>> iv = prediction_interval(100.0, {"level": 0.9, "lower": 90.0, "upper": 110.0}, 300.0, 900)
    >>> round(iv["lower"], 1), round(iv["upper"], 1)
    (81.6, 120.0)
    """
    from scipy.stats import gamma, norm

    level = float(parameter.get("level", 0.9))
    out = {"level": level, "lower": None, "upper": None, "covers": None}
    lo, hi = parameter.get("lower"), parameter.get("upper")
    if not policies or mean is None or mean <= 0 or lo is None or hi is None:
        return out
    z = norm.ppf(0.5 + level / 2)
    var = ((hi - lo) / (2 * z)) ** 2 + (process_sd or 0.0) ** 2 / policies
    if var <= 0:
        return out
    shape, scale = mean ** 2 / var, var / mean
    out["lower"] = round(float(gamma.ppf((1 - level) / 2, shape, scale=scale)), 2)
    out["upper"] = round(float(gamma.ppf(0.5 + level / 2, shape, scale=scale)), 2)
    return out


def backtest_year(products: list[Product], data: FundData, year: int, assumptions: dict,
                  seed: int = 0, progress=None) -> dict:
    """One year of the backtest (see the module docstring) as ``backtest.json`` holds it."""
    from puhui.pricing.premium import BACKTEST_STEPS, _r_opt as _r, price

    product, moved = product_for_year(products, year)
    say = progress or (lambda step: None)
    say(f"{year}: pricing from the years before")
    before = data_before(data, year)
    pricing = price(product, before, assumptions, seed=seed, steps=BACKTEST_STEPS)
    priced = pricing.figures
    say(f"{year}: the realised cost of its enrollees")
    real = realised_cost(product, data, year)
    pure = priced["pure_premium"]
    r = real["per_policy"]
    launch_only = str((priced.get("enrolment") or {}).get("mode", "")).startswith(
        "launch take-up")
    interval = prediction_interval(pure["total"], priced["pure_premium_interval"],
                                   priced.get("process_sd_per_policy"), real["policies"])
    if r["total"] is not None and interval["lower"] is not None:
        interval["covers"] = interval["lower"] <= r["total"] <= interval["upper"]
    out = {
        "year": year, "product_id": product.id,
        "terms": (f"{product.id}'s terms with the policy period moved to {year}" if moved
                  else f"{product.id} ({product.start} to {product.end})"),
        "data_years": priced["data"]["years"],
        "priced_pure_premium": pure,
        "realised_cost": {k: _r(v) for k, v in r.items()},
        "realised_cost_per_policy_year": _r(real["per_policy_year"]),
        "realised_paid_total": _r(real["paid_total"]),
        "realised_claim_free_years": real["claim_free_policies"],
        "ae": {k: _ratio(r.get(k), pure.get(k)) for k in pure},
        "policies_predicted": priced["policies"], "policies_actual": real["policies"],
        "policies_ae": _ratio(real["policies"], priced["policies"]),
        "interval": interval,
        "parameter_interval": priced["pure_premium_interval"],
        "gross_premium": priced["gross_premium"],
        "equilibrium_premium": (priced.get("equilibrium") or {}).get("premium"),
        "enrolment": priced.get("enrolment"),
        "launch_year_projection": launch_only,
        "notes": priced["notes"] + [n for n in real["notes"] if n not in priced["notes"]],
    }
    if launch_only:
        out["launch_year_note"] = launch_year_note(priced.get("enrolment") or {})
        at = at_realised_year2(pricing.borrowed, priced.get("enrolment") or {},
                               real["line_policies"], r["total"], real["line_renewals"])
        if at is not None:
            out["at_realised_year2"] = at
    return out


def at_realised_year2(borrowed, enrolment: dict, policies: int, realised: float | None,
                      renewals: int | None = None) -> dict | None:
    """A row priced from the launch year alone, re-priced at the year-2 size its year
    shows (policies over the launch's policies) with the renewal by health kept
    (:func:`puhui.pricing.enrolment.year2_sensitivity`): it parts the error of the
    borrowed size (the policies, and the premium through who is in the mix) from the
    rest of the price's, which still holds the borrowed renewal by health (``renewals``:
    the year's actual renewals, set beside the expected ones as ``renewals_actual``).
    ``policies`` and ``renewals`` are the line's (every product's policyholders of the
    year, as the launch's policies are: a version backtested beside others is priced
    on the line's enrolment), kept as ``policies_year``. Its policies are the year's
    only where the mix can hold that size (``fills_size`` "yes"; not when the borrowed
    renewals alone exceed it or later entry is capped). None without a borrowed size,
    a launch policy or a policy in the year."""
    a = enrolment.get("assumed") or {}
    launch = a.get("launch_policies")
    if borrowed is None or not launch or not policies:
        return None
    size = policies / launch
    row = borrowed.at(size)
    row["ae"] = _ratio(realised, row["pure_premium"])
    row["policies_ae"] = _ratio(policies, row["policies"])
    row["policies_year"] = int(policies)
    if renewals is not None:
        row["renewals_actual"] = int(renewals)
        row["entrants_actual"] = int(policies - renewals)
    return row


def launch_year_note(enrolment: dict) -> str:
    """What a row priced from the product's launch year alone rests on."""
    a = enrolment.get("assumed")
    if not a:
        return (f"priced from the product's launch year ({enrolment.get('launch_year')}) "
                f"alone: no renewal could be fitted and the mix is the launch's take-up")
    return (f"priced from the product's launch year ({enrolment.get('launch_year')}) alone: "
            f"no renewal could be fitted, so the enrolment borrows renewal by health (healthy "
            f"{a['renewal_healthy']}, sick {a['renewal_sick']}) and a year-2 size of "
            f"{a['year2_to_launch']} x the launch's policies from {a['file']}; the policies "
            f"predicted and the priced premium rest on these assumptions [A]")


def data_years(data: FundData) -> list[int]:
    """The data's settlement years, in order (the years a backtest can split on)."""
    return sorted(data.settlement_years or sorted(
        int(y) for y in data.settlements["setl_time"].dt.year.unique()))


def backtest(products: list[Product], data: FundData, assumptions: dict, seed: int = 0,
             progress=None, last_only: bool = False) -> dict:
    """Every data year that has earlier years, in order (``backtest.json``); with
    ``last_only`` the last data year alone (``puhui price``'s backtest section)."""
    years = data_years(data)
    if len(years) < 2:
        raise InputError(f"the fund data has {len(years)} year(s) of settlements "
                         f"({', '.join(map(str, years)) or 'none'}); a backtest prices a year "
                         f"from the years before it, so it needs at least two")
    from puhui.pricing.period import check_period_shape

    for p in products:
        check_period_shape(p, data.policies)
    tested = years[-1:] if last_only else years[1:]
    rows = [backtest_year(products, data, y, assumptions, seed, progress) for y in tested]
    from puhui.pricing.run import eligibility_not_read

    notes = [NOTE_REVERSALS]
    notes += [n for n in (eligibility_not_read(p) for p in products) if n]
    chosen = {id(product_for_year_index(products, y)) for y in tested}
    for p in products:
        if id(p) not in chosen:
            notes.append(f"{p.id} (policy year {p.start.year}) is used for no backtest year "
                         f"({', '.join(map(str, tested))}): another product given covers "
                         f"each of them")
    return {"products": [p.id for p in products], "seed": seed, "data_years": years,
            "years": rows, "summary": _summary(rows), "notes": notes}


def _summary(rows: list[dict]) -> dict:
    ae = [r["ae"]["total"] for r in rows if r["ae"]["total"] is not None]
    pol = [r["policies_ae"] for r in rows if r["policies_ae"] is not None]
    return {"years": len(rows),
            "ae_total": ae,
            "within_10_percent": sum(abs(a - 1) <= 0.10 for a in ae),
            "policies_within_15_percent": sum(abs(a - 1) <= 0.15 for a in pol),
            "interval_covers": sum(r["interval"]["covers"] is True for r in rows),
            "interval_judged": sum(r["interval"]["covers"] is not None for r in rows),
            "launch_year_projections": [r["year"] for r in rows
                                        if r.get("launch_year_projection")]}


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(float(a) / float(b), 4)


def run_backtest(product_files: list[str | Path], data_dir: str | Path, out: str | Path,
                 seed: int = 0, assumptions_file: str | Path | None = None,
                 progress=None, lang: str = "en") -> dict:
    """``puhui backtest``: read and validate, backtest, write ``backtest.json`` and
    ``report.html`` (in ``lang``, "en" or "zh"; the JSON is the same in either);
    returns the figures."""
    from puhui.pricing.fund_data import load_for_pricing
    from puhui.pricing.premium import load_assumptions
    from puhui.products.model import load_product

    products = [load_product(Path(p)) for p in product_files]
    if not products:
        raise InputError("give at least one --product")
    assumptions, a_path = load_assumptions(assumptions_file)
    say = progress or (lambda step: None)
    say("reading and validating the fund data")
    data = load_for_pricing(Path(data_dir), products[0], assumptions)
    result = backtest(products, data, assumptions, seed, progress)
    from puhui.pricing.run import input_hashes

    result["inputs"] = {"data": str(Path(data_dir).resolve()),
                        "products": [str(Path(p).resolve()) for p in product_files],
                        "assumptions": str(a_path.resolve()),
                        "hashes": input_hashes(Path(data_dir), Path(product_files[0]), a_path)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    from puhui.excel import write_backtest_workbook
    from puhui.reporting import synthetic_marker

    write_backtest_workbook(result, out / "backtest.xlsx")
    (out / "report.html").write_text(render(result, lang, synthetic=synthetic_marker(data_dir)),
                                     encoding="utf-8")
    return result




def render(result: dict, lang: str = "en", synthetic: dict | None = None) -> str:
    """The backtest as a self-contained HTML page (template ``backtest.html.j2``);
    ``synthetic``: the data folder's marker from ``puhui synth`` (a banner says so)."""
    from puhui import __version__
    from puhui.reporting import gettext_for, render as render_page, table_for

    tb = table_for(lang)
    _ = gettext_for(lang)

    summary = pd.DataFrame([{
        "year": y["year"], "priced pure premium": y["priced_pure_premium"]["total"],
        "realised cost per policy": y["realised_cost"]["total"], "A/E": y["ae"]["total"],
        "policies predicted": y["policies_predicted"], "policies actual": y["policies_actual"],
        "policies A/E": y["policies_ae"], "interval covers": y["interval"]["covers"],
        "launch-year projection [A]": _("yes") if y.get("launch_year_projection") else ""}
        for y in result["years"]])
    per_benefit = []
    for y in result["years"]:
        t = pd.DataFrame([{"benefit": b, "priced": y["priced_pure_premium"].get(b),
                           "realised": y["realised_cost"].get(b), "A/E": y["ae"].get(b)}
                          for b in y["priced_pure_premium"]])
        per_benefit.append(tb(t, kinds={"priced": "yuan", "realised": "yuan"}))
    money = {"priced pure premium": "yuan", "realised cost per policy": "yuan"}
    return render_page("backtest.html.j2", lang, r=result, table=tb(summary, kinds=money),
                       benefit_tables=per_benefit, version=__version__, synthetic=synthetic)
