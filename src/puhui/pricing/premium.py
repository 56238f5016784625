"""The premium: fund data and a product file in, the figures of ``pricing.json`` out.

The build-up (each step a function or model named for it; docs/pricing.md):

1. experience: the product's own calculator on every person-year (as if in force);
2. per pricing group (:func:`~puhui.pricing.benefit_cost.pricing_groups`): frequency
   and severity fitted on all person-years, then E[B] and E[B^2] of the annual benefit
   per rating cell with the severity trended to the policy year::

       trend factor = (1 + medical_inflation) ^ (policy mid-point - experience mid-point)

3. the enrolled mix: expected policies per cell next year (renewal and entry models of
   :mod:`puhui.pricing.enrolment`) among the people the product accepts;
4. model pure premium = sum_c w_c E[B_c] / sum_c w_c, by benefit and in total;
   then credibility (:mod:`puhui.pricing.credibility`): each cell's E[B_c] times a
   Bühlmann-Straub factor from its own actual-to-expected over the data years, so a
   thin cell stays at the model and a large one moves toward its experience;
5. gross premium = pure premium / target loss ratio, target = 1 - expenses - profit
   (by premium cell for a rated product);
6. expected loss ratio at the filed premium (the product file's) and its interval by
   simulation: parameter draws of every frequency and severity GLM (normal with their
   covariance) moving the pure premium through its elasticities, then the year's total
   claims over the policies as a gamma variable with the portfolio's mean and variance;
7. the death-spiral projection under the assumption file's scenarios.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from puhui.basis import actuarial_dir, read_toml
from puhui.errors import InputError
from puhui.fund.files import FundData
from puhui.pricing.benefit_cost import (
    RATING_FACTORS,
    BenefitCostModel,
    GroupTerms,
    age_group,
    cells_of,
    pricing_groups,
    step_moments,
)
from puhui.pricing.credibility import credibility_factors
from puhui.pricing.drug_agreements import expected_clawbacks, expected_refunds
from puhui.pricing.enrolment import (
    EnrolmentModel,
    assumed_renewal_mix,
    claim_free_shares,
    equilibrium_premium,
    healthy,
    load_enrolment_basis,
    next_claim_free_years,
    paid_under_own_terms,
    spiral,
    year2_sensitivity,
)
from puhui.pricing.balance import balance, balance_rule, enrolled_selection, with_level_error
from puhui.pricing.experience import experience_in_blocks, person_year_rows, years_with_history
from puhui.pricing.external import price_external
from puhui.pricing.frequency import age_band, rating_frame
from puhui.pricing.launch_flags import (
    DEFAULT_COHORT_SD,
    extended_cells,
    launch_mode,
    launch_split,
    mark_cohort,
    price_cohort,
    split_note,
)
from puhui.pricing.lifetime import (
    benefit_growth,
    experience_by_age,
    is_lifetime,
    lifetime_basis,
    lifetime_price,
)
from puhui.pricing.validation import cross_validate_frequency, gini_index
from puhui.process_memory import release_free_memory
from puhui.products.model import Product

CELL_FACTORS = RATING_FACTORS + ("age_group",)
#: The cells of next year's mix: the rating cells split by what the enrolment models
#: read (the product's pre-existing rule as the data shows it, for everyone).
MIX_FACTORS = CELL_FACTORS + ("preexisting_seen",)
DEFAULT_ASSUMPTIONS = "assumptions/pricing.toml"
#: The random stream of the balance's level-error draws (beside the price's own
#: ``default_rng(seed)``, whose draws it leaves as they were).
LEVEL_ERROR_STREAM = 18


def load_assumptions(path: str | Path | None = None) -> tuple[dict, Path]:
    p = Path(path) if path else actuarial_dir() / DEFAULT_ASSUMPTIONS
    if not p.is_file():
        raise InputError(f"{p}: assumptions file not found; give an existing file to "
                         f"--assumptions or leave it out for {DEFAULT_ASSUMPTIONS}")
    a = read_toml(p)
    for section, key in (("loads", "expense_ratio"), ("loads", "profit_margin"),
                         ("trend", "medical_inflation"), ("enrolment", "beta_healthy"),
                         ("enrolment", "beta_other"), ("interval", "simulations")):
        if key not in a.get(section, {}):
            raise InputError(f"{p}: [{section}] {key} is missing; see "
                             f"actuarial/{DEFAULT_ASSUMPTIONS} for every key")
    _numbers_rule(a, p)
    for key in ("beta_healthy", "beta_other"):
        v = a["enrolment"][key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -50 <= v <= 0:
            raise InputError(f"{p}: [enrolment] {key} = {v!r}; give a number from -50 to 0 "
                             f"(the change in log-odds of joining per unit of log premium: a "
                             f"dearer price cannot draw more people)")
    lifetime_basis(a, p)
    curve = a.get("agreements", {}).get("curve", "fitted")
    if curve not in ("fitted", "published"):
        raise InputError(f"{p}: [agreements] curve = {curve!r}; give \"fitted\" or "
                         f"\"published\"")
    balance_rule(a.get("balance", {}), str(p))
    launch_mode(a.get("launch_year", {}), str(p))
    return a, p


#: The plain numbers of an assumptions file: (section, key) -> (lowest, highest, what).
NUMBER_RULES = {("loads", "expense_ratio"): (0.0, 0.99, "a share of the premium"),
                ("loads", "profit_margin"): (-1.0, 0.99, "a share of the premium"),
                ("trend", "medical_inflation"): (-0.5, 1.0, "a yearly rate"),
                ("interval", "simulations"): (100, 10_000_000, "a whole number of draws")}


def _numbers_rule(a: dict, p: Path) -> None:
    """Refuse loads, trend and simulations that are not numbers within their range, and
    loads that leave no premium for claims (a target loss ratio of 0 or less made the
    gross premium negative)."""
    import math

    for (section, key), (lo, hi, what) in NUMBER_RULES.items():
        v = a[section][key]
        whole = isinstance(lo, int)
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)) \
                or not math.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"{p}: [{section}] {key} = {v!r}; give {what} from {lo:g} "
                             f"to {hi:g}")
    target = target_loss_ratio(a["loads"]["expense_ratio"], a["loads"]["profit_margin"])
    if target <= 0.05:
        raise InputError(f"{p}: [loads] expense_ratio + profit_margin = {1 - target:.4g} "
                         f"leaves a target loss ratio of {target:.4g}: the loads must leave "
                         f"more than 5 % of the premium for claims")


def target_loss_ratio(expense_ratio: float, profit_margin: float) -> float:
    """Target loss ratio = 1 - expense ratio - profit margin.

    >>> round(target_loss_ratio(0.12, 0.03), 4)
    0.85
    """
    return 1.0 - expense_ratio - profit_margin


def year_fraction(d: dt.date) -> float:
    """A date as a fractional calendar year: 2025-07-02 -> about 2025.5."""
    start = dt.date(d.year, 1, 1)
    days = (dt.date(d.year + 1, 1, 1) - start).days
    return d.year + (d - start).days / days


def trend_years(policy_start: dt.date, policy_end: dt.date, years: np.ndarray,
                exposure: np.ndarray) -> float:
    """Policy mid-point minus the exposure-weighted mid-point of the experience years.

    >>> round(trend_years(dt.date(2025, 1, 1), dt.date(2025, 12, 31),
    ...                   np.array([2023, 2024]), np.array([1.0, 1.0])), 3)
    1.5
    """
    mid_policy = (year_fraction(policy_start) + year_fraction(policy_end) + 1 / 365) / 2
    mid_exp = float(np.average(years + 0.5, weights=exposure))
    return mid_policy - mid_exp


def priced_period(product: Product, last_data_year: int) -> tuple[dt.date, dt.date, str | None]:
    """The policy period the price is for: the product's own when it starts after the
    data's last year; otherwise the year after the data (the enrolled mix is projected
    to it) under the product's terms, with a note saying so.

    >>> from puhui.products.model import load_product, product_path
    >>> p = load_product(product_path("huhuibao-2025"))
    >>> priced_period(p, 2024)[:2]
    (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31))
    >>> priced_period(p, 2025)[:2]
    (datetime.date(2026, 1, 1), datetime.date(2026, 12, 31))
    """
    if product.start.year > last_data_year + 1:
        return product.start, product.end, (
            f"{product.id}'s policy period starts {product.start.year - last_data_year} years "
            f"after the data's last year ({last_data_year}): the enrolled mix is projected one "
            f"year ahead ({last_data_year + 1}) and the trend to the period's mid-point; "
            f"enrolment change over the years between is not modelled")
    if product.start.year > last_data_year:
        return product.start, product.end, None
    shift = last_data_year + 1 - product.start.year
    start, end = years_later(product.start, shift), years_later(product.end, shift)
    return start, end, (f"{product.id}'s policy period {product.start} to {product.end} lies "
                        f"within the data (last year {last_data_year}): priced for the year "
                        f"after the data, {start} to {end}, under its terms (the enrolled "
                        f"mix is projected to that year, and the trend runs to its mid-point)")


def years_later(d: dt.date, n: int) -> dt.date:
    """``d`` moved ``n`` calendar years (29 February to the 28th in a common year)."""
    try:
        return d.replace(year=d.year + n)
    except ValueError:                       # 29 February into a common year
        return d.replace(year=d.year + n, day=28)


def trend_factor(inflation: float, years: float) -> float:
    """(1 + inflation) ^ years."""
    return (1.0 + inflation) ** years


def eligible_rows(product: Product, frame: pd.DataFrame) -> np.ndarray:
    """Person-years the product accepts: scheme, and age within entry or renewal ages."""
    ok = frame["insutype"].astype(str).isin(product.insutypes).to_numpy()
    age = frame["age"].to_numpy()
    if product.min_entry_age is not None:
        ok &= age >= product.min_entry_age
    top = product.max_renewal_age or product.max_entry_age
    if top is not None:
        ok &= age <= top
    return ok


@dataclass
class Pricing:
    """The result of :func:`price`: ``figures`` (pricing.json) and what the report shows."""

    figures: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    models: dict[str, BenefitCostModel] = field(default_factory=dict)
    enrolment: EnrolmentModel | None = None
    lr_draws: np.ndarray | None = None
    state: object | None = None          # a whatif.PricingState
    borrowed: object | None = None       # a BorrowedYear2 (a price from the launch year alone)


def _group_events(ev: pd.DataFrame, terms: GroupTerms) -> pd.DataFrame:
    """A pricing group's events as the models read them (its person-year ``row``,
    ``inpatient``, ``amount`` in yuan): one per settlement when the group's benefits
    share a deductible. Only those columns are copied (ten million events)."""
    on = ev["benefit"].isin(terms.benefits).to_numpy()
    shared = len(terms.benefits) > 1
    e = pd.DataFrame({c: ev[c].to_numpy()[on] for c in ("setl_id", "row", "inpatient",
                                                         "eligible") if shared or c != "setl_id"},
                     copy=False)
    if shared:
        e = e.groupby("setl_id", sort=False).agg(row=("row", "first"),
                                                  inpatient=("inpatient", "first"),
                                                  eligible=("eligible", "sum")).reset_index()
    return pd.DataFrame({"row": e["row"].to_numpy(), "inpatient": e["inpatient"].to_numpy(),
                         "amount": e["eligible"].to_numpy() / 100.0}, copy=False)


#: The person-year columns the price does not read (the models read the payouts;
#: eligible amounts and counts come from the events), nor the backtest's realised cost.
EXPERIENCE_DROP = ("eligible_", "claims_", "events_")


#: The settlement columns pricing reads after the experience (the drug shares and the
#: budget impact).
AFTER_EXPERIENCE = ("setl_id", "psn_no", "setl_time", "dise_code", "refund_of")


def price(product: Product, data: FundData, assumptions: dict, seed: int = 0,
          policies: int | None = None, progress=None, release_data: bool = False,
          steps: tuple | None = None) -> Pricing:
    """Price ``product`` on ``data`` (see the module docstring). ``release_data``: once
    the experience is made, ``data.settlements`` keeps only the columns pricing still
    reads (:data:`AFTER_EXPERIENCE`), so their memory is free for the models (``data`` is
    changed: for a caller that does not use it again, as ``puhui price``). ``steps``:
    the build-up's steps run (default :data:`BUILD_UP`; the backtest runs
    :data:`BACKTEST_STEPS`: a step left out sets only figures after it that the caller
    does not read)."""
    s = BuildUp(product, data, assumptions, seed, policies, progress, release_data)
    for step in (BUILD_UP if steps is None else steps):
        step(s)
    return Pricing(s.figures, s.tables, s.models, s.enrol_model, s.lr,
                   getattr(s, "state", None), getattr(s, "borrowed", None))


class BuildUp:
    """One pricing's state as the steps of :data:`BUILD_UP` fill it in, in order: each
    step is a function of this object whose docstring names what it reads and what it
    sets, so a reviewer can follow the price step by step (and run the steps one at a
    time: ``s = BuildUp(...); _step_experience(s); ...``)."""

    def __init__(self, product: Product, data: FundData, assumptions: dict, seed: int = 0,
                 policies: int | None = None, progress=None, release_data: bool = False):
        self.product, self.data, self.assumptions = product, data, assumptions
        self.seed, self.policies, self.release_data = seed, policies, release_data
        self.say = progress or (lambda step: None)
        self.loads, self.trend_a = assumptions["loads"], assumptions["trend"]
        self.target = target_loss_ratio(self.loads["expense_ratio"],
                                        self.loads["profit_margin"])
        self.sev_a = assumptions.get("severity", {})
        self.notes: list[str] = []


def _step_experience(s: BuildUp) -> None:
    """The product's calculator on every person-year as if in force
    (:mod:`puhui.pricing.experience`), the events, and what each past policy paid
    under its own terms; the rating frame; the years the cost models are fitted on
    (:func:`~puhui.pricing.experience.years_with_history`: a first data year with
    later years is look-back only); in a launch-year fit (no look-back before the
    year) the diagnosed non-enrolled's split between the pre-existing flags
    (:func:`~puhui.pricing.launch_flags.launch_split`).

    Reads assumptions, data, notes, product, release_data, say; sets ev, own_paid, notes,
    frame, fit_years, fit_rows, flag_split, flag_split_fig."""
    (data, notes, product, release_data, say) = (
        s.data, s.notes, s.product, s.release_data, s.say)
    say("experience: the product's calculator on every person-year")
    # the models read the payouts; eligible amounts and counts come from the events
    exp, ev = experience_in_blocks(product, data, drop=EXPERIENCE_DROP)
    # what each policy of the data years paid under its own product (claim-free years),
    # while the settlements still have every column
    own_paid, own_notes = paid_under_own_terms(product, data, exp)
    notes += own_notes
    if release_data:
        st = data.settlements
        data.settlements = st[[c for c in AFTER_EXPERIENCE if c in st.columns]]
        del st
        release_free_memory()
    if len(exp) == 0:
        raise InputError("the fund data has no person-years to price on")
    frame = rating_frame(exp, consume=True)
    del exp
    frame["age_group"] = age_group(frame["age"])
    ev["row"] = person_year_rows(frame, ev)          # each event's person-year
    year = frame["year"].to_numpy()
    present = sorted(int(y) for y in np.unique(year))
    missing = sorted(set(range(present[0], present[-1] + 1)) - set(present))
    if missing:
        raise InputError(f"the fund data's years {', '.join(map(str, present))} are not "
                         f"consecutive ({', '.join(map(str, missing))} missing): prior stays, "
                         f"the pre-existing look-back and renewal read the year before; give "
                         f"data with every year from {present[0]} to {present[-1]}")
    fit_years = years_with_history(year, product.preexisting_lookback_years)
    fit_rows = np.isin(year, fit_years)
    left = sorted(set(int(y) for y in np.unique(year)) - set(fit_years))
    if left:
        notes.append(
            f"the cost models are fitted on {', '.join(map(str, fit_years))}; "
            f"{', '.join(map(str, left))} {'is' if len(left) == 1 else 'are'} look-back only (no prior stay or "
            f"pre-existing history can be seen in a year without data before it, so its "
            f"sick would sit in the healthy cells)")
    # a launch-year fit: the diagnosed non-enrolled split by the prevalent share
    launch_a = s.assumptions.get("launch_year", {})
    s.flag_split, s.flag_split_fig = launch_split(
        frame, fit_years, launch_mode(launch_a, "the assumptions"),
        float(launch_a.get("cohort_log_sd", DEFAULT_COHORT_SD)))
    if s.flag_split_fig is not None:
        notes.append(split_note(s.flag_split_fig))
        mark_cohort(frame, s.flag_split_fig)       # "cohort": the enrolled's own level
    s.ev, s.own_paid, s.notes, s.frame = ev, own_paid, notes, frame
    s.fit_years, s.fit_rows = fit_years, (None if fit_rows.all() else fit_rows)


def _step_priced_period(s: BuildUp) -> None:
    """The priced period and the severity trend to its mid-point
    (:func:`priced_period`, :func:`trend_years`).

    Reads fit_rows, frame, notes, product, trend_a; sets last, p_start, p_end,
    t_years, sev_trend."""
    fit_rows, frame, notes, product, trend_a = (
        s.fit_rows, s.frame, s.notes, s.product, s.trend_a)
    last = int(frame["year"].max())
    p_start, p_end, period_note = priced_period(product, last)
    if period_note:
        notes.append(period_note)
    on = slice(None) if fit_rows is None else fit_rows     # the models' data years
    t_years = trend_years(p_start, p_end, frame["year"].to_numpy()[on],
                          frame["exposure"].to_numpy()[on])
    sev_trend = trend_factor(trend_a["medical_inflation"], t_years)
    (s.last, s.p_start, s.p_end, s.t_years, s.sev_trend) = (
        last, p_start, p_end, t_years, sev_trend)


def _step_enrolled_mix(s: BuildUp) -> None:
    """The people of the last data year in next year's state (:func:`next_year_state`)
    in the mix's cells, next year's expected policies per cell (:func:`_enrolled_mix`) and the claim-free years they
    renew with.

    Reads data, frame, last, notes, own_paid, policies, product, say; sets framed,
    cur, cells, cur_cell, people, enrolled, enrol_model, w, enrol_fig, notes,
    n_policies, next_cfy, last_rows, renewing."""
    (data, frame, last, notes, own_paid, policies, product, say) = (
        s.data, s.frame, s.last, s.notes, s.own_paid, s.policies, s.product, s.say)
    # pricing cells and the enrolled mix of the year after the data
    elig = eligible_rows(product, frame)
    if not elig.any():
        raise InputError(f"no person in the data is eligible for {product.id} "
                         f"(schemes {', '.join(product.insutypes)}, ages "
                         f"{product.min_entry_age}-{product.max_renewal_age or product.max_entry_age})")
    framed = frame if elig.all() else frame[elig]      # the eligible person-years
    # the people of the last year who may hold next year's policy, in next year's
    # state (a copy of the columns read, not of the table)
    last_rows, cur = next_year_state(product, frame, last)
    if not len(cur):
        raise InputError(f"no one of the data's last year ({last}) can hold a policy of "
                         f"{product.id} the year after: every eligible person died in {last} "
                         f"or is past the product's ages (schemes {', '.join(product.insutypes)}, "
                         f"ages {product.min_entry_age}-{product.max_renewal_age or product.max_entry_age}) "
                         f"next year; there is no one to price")
    by_cell = cur.groupby(list(MIX_FACTORS), observed=True)
    cells = by_cell.agg(people=("exposure", "size"), enrolled=("enrolled", "sum")).reset_index()
    cur_cell = by_cell.ngroup().to_numpy()         # each of cur's rows: its row in cells
    del by_cell
    people = cells["people"].to_numpy(dtype=float)
    enrolled = cells["enrolled"].to_numpy(dtype=float)
    say("enrolment: launch take-up, renewal and later entry")
    enrol_model, w, enrol_fig = _enrolled_mix(product, data, framed, cells, people, enrolled,
                                              cur=cur)
    notes += enrol_fig.get("notes", [])
    n_policies = int(policies) if policies else int(round(w.sum()))
    # claim-free years at renewal, for deductibles that step down after claim-free years
    next_cfy = next_claim_free_years(frame, data.policies, own_paid)
    del own_paid
    s.own_paid = None                  # read: free it
    # (none renew when the model has no renewal year: renewals() gives zeros)
    renewing = enrol_model.renewals(cells, enrolled) if enrol_model is not None else enrolled
    (s.framed, s.cur, s.cells, s.cur_cell, s.people, s.enrolled, s.enrol_model, s.w,
     s.enrol_fig, s.notes, s.n_policies, s.next_cfy, s.last_rows, s.renewing) = (
        framed, cur, cells, cur_cell, people, enrolled, enrol_model, w, enrol_fig,
        notes, n_policies, next_cfy, last_rows, renewing)


def _step_benefit_costs(s: BuildUp) -> None:
    """Per pricing group: frequency and severity models, E[B] and E[B^2] of the
    annual benefit per cell (trended; claim-free steps), the parameter draws;
    benefits with little or no data blended with their external assumptions
    (:func:`~puhui.pricing.external.price_external`); the model pure premium by
    benefit.

    Reads assumptions, cells, cur, ev, fit_rows, flag_split, frame, last_rows, next_cfy,
    notes, product, renewing, say, seed, sev_a, sev_trend, w; sets groups, rng, sims, pure,
    cell_cost, cell_var, draws_total, models, group_m1, group_draws, step_shares,
    cf_fig, elig_share, group_rows, frame_cells, ext, pure_model, balance_fig."""
    (assumptions, cells, cur, ev, fit_rows, frame, last_rows, next_cfy, notes, product,
     renewing, say, seed, sev_a, sev_trend, w) = (
        s.assumptions, s.cells, s.cur, s.ev, s.fit_rows, s.frame, s.last_rows, s.next_cfy,
        s.notes, s.product, s.renewing, s.say, s.seed, s.sev_a, s.sev_trend, s.w)
    # per pricing group: models and the annual benefit per cell
    elig_by_benefit = ev.groupby("benefit")["eligible"].sum().to_dict()
    groups = pricing_groups(product, {k: float(v) for k, v in elig_by_benefit.items()})
    rng = np.random.default_rng(seed)
    level_rng = np.random.default_rng([seed, LEVEL_ERROR_STREAM])
    sims = int(assumptions["interval"]["simulations"])
    pure = {}
    cell_cost = np.zeros(len(cells))
    cell_var = np.zeros(len(cells))
    draws_total = np.zeros(sims)
    models: dict[str, BenefitCostModel] = {}
    group_m1: dict[str, np.ndarray] = {}
    group_draws: dict[str, np.ndarray] = {}
    step_shares: dict[str, np.ndarray] = {}
    cf_fig: dict[str, dict] = {}
    elig_share: dict[str, float] = {}
    group_rows = []
    # the person-years' cells of the candidate factors, made once for every model
    frame_cells = cells_of(frame, BenefitCostModel().candidates(frame))
    split = s.flag_split           # a launch year's fractional rows (or None)
    fit_cells = (frame_cells if split is None else
                 extended_cells(frame, BenefitCostModel().candidates(frame), split))
    rule = balance_rule(assumptions.get("balance", {}), "the assumptions' [balance]")
    select = bool(assumptions.get("balance", {}).get("enrolled", False))
    balance_fig: dict[str, dict] = {}
    for terms in groups:
        say(f"benefit {terms.id}: frequency, severity, annual benefit per cell")
        e = _group_events(ev, terms)
        model = BenefitCostModel(threshold_quantile=sev_a.get("threshold_quantile", 0.95),
                                 min_exceedances=sev_a.get("min_exceedances", 50))
        model.fit(frame, e, cells=fit_cells, use=fit_rows)
        for k in model.kinds_:
            if getattr(k.severity, "no_spread_", False):
                amount = float(k.severity.cells_["mean"].iloc[0])
                notes.append(f"{terms.id} ({k.name}): every one of its {k.events:,} events "
                             f"has the same amount ({amount:,.2f} yuan): the severity "
                             f"model's dispersion is 0 and the price takes every event "
                             f"at that amount (a list price; if the amounts can vary, "
                             f"the interval understates its severity's uncertainty)")
            if not getattr(k.severity, "identified_", True):
                notes.append(f"{terms.id} ({k.name}): the severity factors "
                             f"{', '.join(k.factors)} are confounded on the cells with "
                             f"events, so some of their coefficients are not identified; "
                             f"the fitted cells' means are the data's, but the means of "
                             f"cells without events rest on an arbitrary split: fewer "
                             f"factors or more data")
        if model.kinds_:          # the model at its experience's level, as far as credible
            balance_fig[terms.id] = balance(model, terms, frame, terms.benefits, fit_cells,
                                            use=fit_rows, rule=rule)
            sel = (enrolled_selection(model, terms, frame, terms.benefits, fit_cells,
                                      use=fit_rows, rule=rule) if select else None)
            if sel is not None:
                balance_fig[terms.id]["enrolled"] = sel
            cohort = price_cohort(model, s.flag_split_fig)    # held at the launch cohort
            if cohort is not None:
                s.flag_split_fig.setdefault("cohort", {})[terms.id] = cohort
        models[terms.id] = model
        m1, m2 = model.moments(cells, terms, severity_factor=sev_trend)
        if terms.claim_free_steps:
            shares = claim_free_shares(cur, next_cfy[last_rows], cells, list(MIX_FACTORS),
                                       terms.claim_free_steps, renewing, w)
            step_shares[terms.id] = shares
            without = float(np.dot(w, m1) / w.sum())
            m1, m2 = step_moments(model, cells, terms, shares, base=(m1, m2),
                                  severity_factor=sev_trend)
            cf_fig[terms.id] = {
                "steps": [{"claim_free_years": y, "deductible": d,
                           "share_of_policies": _r(np.dot(w, shares[:, k]) / w.sum(), 4)}
                          for k, (y, d) in enumerate(terms.claim_free_steps)],
                "model_pure_premium_first_year_deductible": _r(without, 2),
                "model_pure_premium_with_steps": _r(np.dot(w, m1) / w.sum(), 2),
                "note": "claim-free years at renewal from the data's policies and what each "
                        "paid under its own product's terms (the priced product's where that "
                        "file is not in the basis); entrants at the first-year deductible"}
        cost = float(np.dot(w, m1) / w.sum())
        cell_cost += m1
        cell_var += m2 - m1 ** 2
        if not model.kinds_:
            notes.append(f"{terms.id}: no events in the data, so no experience to price on "
                         f"(pure premium 0); supply an external assumption before using this price")
        elif cost > 0:
            # parameter uncertainty, then the level error the balance leaves (its own draws)
            group_draws[terms.id] = cost * with_level_error(
                model.cost_draws(cells, terms, w, rng, sims, sev_trend),
                (balance_fig.get(terms.id) or {}).get("level_sd"), level_rng)
            draws_total += group_draws[terms.id]
        group_m1[terms.id] = m1
        total_elig = sum(elig_by_benefit.get(b, 0) for b in terms.benefits)
        for b in terms.benefits:
            elig_share[b] = (elig_by_benefit.get(b, 0) / total_elig) if total_elig else 1 / len(terms.benefits)
            pure[b] = cost * elig_share[b]
        for k in model.kinds_ or [None]:
            group_rows.append({
                "group": terms.id, "benefits": ", ".join(terms.benefits),
                "deductible": terms.deductible, "ratio": terms.ratio,
                "preexisting_ratio": terms.preexisting_ratio, "limit": terms.limit,
                "kind": k.name if k else "-", "events": k.events if k else 0,
                "factors": (", ".join(k.factors) or "(none)") if k else "-",
                "alpha": k.alpha if k else None, "tail": k.shape.tail_ if k else "-",
                "xi": k.shape.xi_ if k else None, "pure_premium": cost, "note": terms.note})
        if terms.note:
            notes.append(f"{terms.id}: {terms.note}")
    # benefits with little or no data: external assumptions blended by credibility
    ext = price_external(product, assumptions, groups, models, cells, w, sev_trend, step_shares,
                         group_m1, group_draws, pure, notes, sims)
    cell_cost, cell_var, draws_total = (cell_cost + ext.d_cost, cell_var + ext.d_var,
                                        draws_total + ext.d_draws)
    for b in product.benefits:
        pure.setdefault(b.id, 0.0)
    pure_model = dict(pure)

    (s.groups, s.rng, s.sims, s.pure, s.cell_cost, s.cell_var, s.draws_total, s.models,
     s.group_m1, s.group_draws, s.step_shares, s.cf_fig, s.elig_share, s.group_rows,
     s.frame_cells, s.ext, s.pure_model, s.balance_fig) = (
        groups, rng, sims, pure, cell_cost, cell_var, draws_total, models, group_m1,
        group_draws, step_shares, cf_fig, elig_share, group_rows, frame_cells, ext,
        pure_model, balance_fig)


def _step_credibility(s: BuildUp) -> None:
    """Actual against expected, and each cell's Buhlmann-Straub credibility factor
    applied to its cost, the draws and the pure premium.

    Both on the models' data years (:func:`~puhui.pricing.experience.years_with_history`).

    Reads assumptions, cell_cost, cell_var, cells, draws_total, elig_share, fit_years,
    frame, frame_cells, framed, group_m1, group_rows, groups, models, product, pure,
    say, w; sets tables, cell_factor, cred_fig, cred_adj, cell_cost, cell_var,
    draws_total."""
    (assumptions, cell_cost, cell_var, cells, draws_total, elig_share, fit_years, frame,
     frame_cells, framed, group_m1, group_rows, groups, models, product, pure, say,
     w) = (
        s.assumptions, s.cell_cost, s.cell_var, s.cells, s.draws_total, s.elig_share,
        s.fit_years, s.frame, s.frame_cells, s.framed, s.group_m1, s.group_rows,
        s.groups, s.models, s.product, s.pure, s.say, s.w)
    # actual versus expected, and credibility of each cell's own experience
    say("actual versus expected, credibility")
    tables = {"groups": pd.DataFrame(group_rows), "coefficients": _coefficients(models)}
    in_fit = np.isin(framed["year"].to_numpy(), fit_years)
    if not in_fit.all():
        framed = framed[in_fit]                      # the models' years (a copy)
    same_cells = framed is frame and BenefitCostModel().candidates(frame) == CELL_FACTORS
    tables.update(_actual_vs_expected(product, framed, groups, models,
                                      cells=frame_cells if same_cells else None))
    ae_rows = tables.pop("ae_rows")
    cred_a = assumptions.get("credibility", {})
    cell_factor = np.ones(len(cells))
    cred_fig = None
    cred_adj = 1.0
    if cred_a.get("by") and len(ae_rows):
        by = tuple(cred_a["by"])
        cred, cp = credibility_factors(framed, framed["year"], ae_rows["actual"],
                                       ae_rows["expected"], by)
        cell_factor = cells[list(by)].merge(cred[[*by, "factor"]], on=list(by), how="left")[
            "factor"].fillna(1.0).to_numpy()
        base = float(np.dot(w, cell_cost))
        adj = float(np.dot(w, cell_cost * cell_factor)) / base if base > 0 else 1.0
        cell_cost = cell_cost * cell_factor
        cell_var = cell_var * cell_factor ** 2
        draws_total = draws_total * adj
        cred_adj = adj
        for terms in groups:
            cost = float(np.dot(w, group_m1[terms.id] * cell_factor) / w.sum())
            for b in terms.benefits:
                pure[b] = cost * elig_share[b]
        tables["credibility"] = cred
        cred_fig = {"by": list(by), "within": _r(cp["within"], 6), "between": _r(cp["between"], 6),
                    "k": _r(cp["k"], 2), "collective_actual_to_expected": _r(cp["collective"], 4),
                    "adjustment_to_pure_premium": _r(adj, 4)}
    (s.tables, s.cell_factor, s.cred_fig, s.cred_adj, s.cell_cost, s.cell_var,
     s.draws_total) = (
        tables, cell_factor, cred_fig, cred_adj, cell_cost, cell_var, draws_total)


def _step_agreements(s: BuildUp) -> None:
    """Expected refunds of outcome-based drug agreements and clawbacks of price-
    volume caps, taken off the benefits they pay back.

    Reads assumptions, cell_cost, cell_factor, cred_adj, data, draws_total,
    elig_share, framed, group_draws, group_m1, groups, n_policies, notes, product,
    pure, say, sev_trend; sets shares, notes, agreements_fig, frac, cell_cost,
    draws_total."""
    (assumptions, cell_cost, cell_factor, cred_adj, data, draws_total, elig_share,
     framed, group_draws, group_m1, groups, n_policies, notes, product, pure, say,
     sev_trend) = (
        s.assumptions, s.cell_cost, s.cell_factor, s.cred_adj, s.data, s.draws_total,
        s.elig_share, s.framed, s.group_draws, s.group_m1, s.groups, s.n_policies,
        s.notes, s.product, s.pure, s.say, s.sev_trend)
    from puhui.pricing.whatif import (PricingState, class_c_budget_impact, drug_shares,
                                      no_lines_note)

    shares = drug_shares(product, data)
    notes += [n for n in (no_lines_note(product, data),) if n]
    agreements_fig = None
    frac, agreement_rows = expected_refunds(product, data, shares, assumptions)
    cap_frac, cap_rows = expected_clawbacks(product, data, shares, pure,
                                            float(framed["exposure"].sum()), n_policies,
                                            sev_trend)
    for b, f_cap in cap_frac.items():
        frac[b] = frac.get(b, 0.0) + f_cap
    if frac:
        say("drug agreements: expected refunds")
        before = dict(pure)
        for terms in groups:
            f_g = sum(frac.get(b, 0.0) * elig_share[b] for b in terms.benefits)
            if f_g == 0.0:
                continue
            cell_cost = cell_cost - f_g * group_m1[terms.id] * cell_factor
            if terms.id in group_draws:
                draws_total = draws_total - f_g * group_draws[terms.id] * cred_adj
            for b in terms.benefits:
                pure[b] = pure[b] * (1.0 - frac.get(b, 0.0))
        agreements_fig = {
            "benefits": {b: {"pure_premium_before": _r(before[b], 2),
                             "expected_refund": _r(before[b] - pure[b], 2),
                             "pure_premium_after": _r(pure[b], 2),
                             "refund_share": _r(f, 4)} for b, f in frac.items()},
            "drugs": agreement_rows,
            "price_volume_caps": cap_rows,
            "note": "refund share of a benefit = sum over agreement drugs of the drug's "
                    "share of the benefit's eligible line amounts x its expected refund "
                    "share, plus the expected clawback of price-volume caps over the pure "
                    "premium; the variance per cell is left as without refunds"}
    (s.shares, s.notes, s.agreements_fig, s.frac, s.cell_cost, s.draws_total) = (
        shares, notes, agreements_fig, frac, cell_cost, draws_total)


def _step_lifetime(s: BuildUp) -> None:
    """The total pure premium; for a cover renewable past its entry ages, the
    lifetime price (:func:`_lifetime`).

    Reads assumptions, cell_cost, cell_factor, cells, cur, cur_cell, data, frame,
    framed, groups, models, product, pure, say, sev_trend, tables, target, w; sets
    pure_total, lifetime_fig."""
    (assumptions, cell_cost, cell_factor, cells, cur, cur_cell, data, frame, framed,
     groups, models, product, pure, say, sev_trend, tables, target, w) = (
        s.assumptions, s.cell_cost, s.cell_factor, s.cells, s.cur, s.cur_cell, s.data,
        s.frame, s.framed, s.groups, s.models, s.product, s.pure, s.say, s.sev_trend,
        s.tables, s.target, s.w)
    pure_total = float(sum(pure.values()))
    lifetime_fig = None
    if is_lifetime(product):
        say("lifetime: claims by attained age, decrements, level and step premiums")
        lifetime_fig, lt_tables = _lifetime(product, data, assumptions, frame, framed, cur,
                                            cur_cell, cells, w, cell_cost, cell_factor,
                                            groups, models, sev_trend, target)
        tables.update(lt_tables)

    s.pure_total, s.lifetime_fig = pure_total, lifetime_fig


def _step_borrowed_enrolment(s: BuildUp) -> None:
    """For a price from the launch year alone (renewal borrowed): the pure premium and
    policies at other year-2 sizes (:func:`~puhui.pricing.enrolment.year2_sensitivity`,
    the sizes of ``[later_entry] year2_sensitivity`` in actuarial/assumptions/enrolment.toml
    and the one priced), into ``pricing.json``'s ``enrolment.assumed.year2_sensitivity``;
    and ``borrowed``, which gives the same figures at any size (the backtest asks at the
    size its year shows). Nothing for a price whose renewal is fitted, nor for one whose
    mix is not the borrowed one (a version priced among others: its mix is its share of
    the line's, and the sizes are the line's; a note says so).

    Reads cell_cost, enrol_fig, enrol_model, pure_total, w, notes; sets borrowed,
    enrol_fig, notes."""
    inputs = getattr(s.enrol_model, "assumed_inputs_", None)
    s.borrowed = None
    if inputs is None or not s.enrol_fig.get("assumed"):
        return
    own = assumed_renewal_mix(*inputs[:3], inputs[3]["healthy"], inputs[3]["sick"],
                              inputs[3]["year2_to_launch"])["w"]
    if not np.allclose(own, s.w, rtol=1e-9, atol=1e-6):
        s.notes.append("the year-2 size's sensitivity is left out: this version's mix is its "
                       "share of the line's among the versions, and the borrowed year-2 size "
                       "is the line's (every version together)")
        return
    s.borrowed = BorrowedYear2(*inputs, np.asarray(s.cell_cost, dtype=float), s.pure_total)
    s.enrol_fig["assumed"]["year2_sensitivity"] = [
        s.borrowed.at(v) for v in inputs[3]["year2_sensitivity"]]


@dataclass
class BorrowedYear2:
    """What a price from the launch year alone would have been at another borrowed
    year-2 size: :meth:`at` (:func:`~puhui.pricing.enrolment.year2_sensitivity`)."""

    people: np.ndarray
    enrolled: np.ndarray
    launch: np.ndarray
    basis: dict
    cell_cost: np.ndarray
    pure_total: float

    def at(self, year2: float) -> dict:
        return year2_sensitivity(self.people, self.enrolled, self.launch, self.basis,
                                 self.cell_cost, self.pure_total, year2)


def _step_loss_ratio(s: BuildUp) -> None:
    """Gross premium, the filed premium over the mix, the expected loss ratio and
    its interval by simulation.

    Reads assumptions, cell_var, cells, cur, cur_cell, draws_total, n_policies,
    notes, product, pure_total, rng, say, sims, target, w; sets var_policy, gross_flat, filed,
    basis, elr, lr, level, lo_q, hi_q."""
    (assumptions, cell_var, cells, cur, cur_cell, draws_total, n_policies, notes,
     product, pure_total, rng, say, sims, target, w) = (
        s.assumptions, s.cell_var, s.cells, s.cur, s.cur_cell, s.draws_total,
        s.n_policies, s.notes, s.product, s.pure_total, s.rng, s.say, s.sims, s.target,
        s.w)
    # premiums: gross by premium cell, the filed premium and the loss ratio
    say("premium, loss ratio and its interval")
    gross_flat = pure_total / target
    filed = _filed_premium(product, cells, w, cur, cur_cell)
    basis = filed if filed else gross_flat
    elr = pure_total / basis if basis else float("nan")
    var_policy = float(np.dot(w, cell_var) / w.sum())
    s.var_policy = var_policy               # the annual benefit's variance per policy
    # process: the year's total claims as a gamma with the portfolio's mean and variance
    mean_tot = draws_total * n_policies
    var_tot = max(var_policy * n_policies, 1e-9)
    shape = np.where(mean_tot > 0, mean_tot ** 2 / var_tot, 1.0)
    totals = np.where(mean_tot > 0, rng.gamma(shape, var_tot / np.maximum(mean_tot, 1e-12)), 0.0)
    lr = totals / (n_policies * basis) if basis else np.full(sims, np.nan)
    if not np.isfinite(draws_total).all():
        notes.append("the parameter uncertainty is unbounded (a model fitted on too few "
                     "events): the interval has no upper end; get more data or fewer factors")
    level = float(assumptions["interval"].get("level", 0.90))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2

    (s.gross_flat, s.filed, s.basis, s.elr, s.lr, s.level, s.lo_q, s.hi_q) = (
        gross_flat, filed, basis, elr, lr, level, lo_q, hi_q)
    s.year_totals = totals                  # the simulated years (risk transfer reads them)


def _step_figures(s: BuildUp) -> None:
    """The figures of ``pricing.json`` so far, and the as-if experience of the
    enrolled.

    Reads agreements_fig, balance_fig, cell_cost, cells, cf_fig, cred_fig, cur, cur_cell,
    draws_total, elr, enrol_fig, ext, filed, fit_years, frame, gross_flat, hi_q, level,
    flag_split_fig, lifetime_fig, lo_q, loads, lr, n_policies, notes, p_end, p_start, people,
    product, pure, pure_model, pure_total, seed, sev_trend, t_years, tables, target,
    trend_a, var_policy, w; sets figures."""
    (agreements_fig, cell_cost, cells, cf_fig, cred_fig, cur, cur_cell, draws_total, elr,
     enrol_fig, ext, filed, frame, gross_flat, hi_q, level, lifetime_fig, lo_q,
     loads, lr, n_policies, notes, p_end, p_start, people, product, pure,
     pure_model, pure_total, seed, sev_trend, t_years, tables, target, trend_a, w) = (
        s.agreements_fig, s.cell_cost, s.cells, s.cf_fig, s.cred_fig, s.cur, s.cur_cell,
        s.draws_total, s.elr, s.enrol_fig, s.ext, s.filed, s.frame, s.gross_flat,
        s.hi_q, s.level, s.lifetime_fig, s.lo_q, s.loads, s.lr, s.n_policies, s.notes,
        s.p_end, s.p_start, s.people, s.product, s.pure, s.pure_model, s.pure_total,
        s.seed, s.sev_trend, s.t_years, s.tables, s.target, s.trend_a, s.w)
    figures = {
        "product_id": product.id,
        "product_name": product.name,
        "seed": seed,
        "data": {"person_years": int(len(frame)), "years": sorted(int(y) for y in frame["year"].unique()),
                 "exposure": _r(frame["exposure"].sum(), 2),
                 "enrolled_person_years": int(frame["enrolled"].sum()),
                 "eligible_people_last_year": int(people.sum()),
                 "model_years": list(s.fit_years)},
        "policies": n_policies,
        "basis": {"expense_ratio": loads["expense_ratio"], "profit_margin": loads["profit_margin"],
                  "target_loss_ratio": _r(target, 4),
                  "medical_inflation": trend_a["medical_inflation"],
                  "priced_period": {"start": p_start.isoformat(), "end": p_end.isoformat()},
                  "trend_years": _r(t_years, 4), "severity_trend_factor": _r(sev_trend, 6)},
        "enrolment": {k: v for k, v in enrol_fig.items() if k != "notes"},
        "pure_premium": {**{b: _r(v, 2) for b, v in pure.items()}, "total": _r(pure_total, 2)},
        "pure_premium_model": {**{b: _r(v, 2) for b, v in pure_model.items()},
                               "total": _r(sum(pure_model.values()), 2)},
        "balance": s.balance_fig or None,
        "credibility": cred_fig,
        "claim_free_steps": cf_fig or None,
        "pure_premium_interval": {"level": level,
                                  "lower": _r(np.quantile(draws_total, lo_q), 2),
                                  "upper": _r(np.quantile(draws_total, hi_q), 2)},
        "gross_premium": _r(gross_flat, 2) if not product.rated else
        _gross_cells(product, cur, cells, w, cell_cost, target, cur_cell),
        "filed_premium": _r(filed, 2) if filed else None,
        "expected_loss_ratio": _r(elr, 4),
        "loss_ratio_basis": "filed premium" if filed else "gross premium",
        "loss_ratio_interval": {"level": level, "lower": _r(np.quantile(lr, lo_q), 4),
                                "upper": _r(np.quantile(lr, hi_q), 4)},
        "prob_loss_ratio_above_100": _r(float((lr > 1.0).mean()), 4),
        "process_sd_per_policy": _r(np.sqrt(s.var_policy), 2),
        "notes": notes,
    }
    if s.flag_split_fig is not None:
        figures["launch_year_flags"] = s.flag_split_fig
    if ext.figure is not None:
        figures["external_assumptions"] = ext.figure
    if agreements_fig is not None:
        figures["drug_agreements"] = agreements_fig
    if lifetime_fig is not None:
        figures["lifetime"] = lifetime_fig
    # the as-if experience of the people who enrolled (actual, not modelled)
    enr = frame["enrolled"].to_numpy(dtype=bool)
    if enr.any():
        paid = sum(frame[f"payout_{b.id}"].to_numpy()[enr].sum()
                   for b in product.benefits) / 100.0
        figures["experience"] = {
            "as_if_paid_per_enrolled_policy_year": _r(
                paid / pd.Series(frame["exposure"].to_numpy()[enr]).sum(), 2),
            "note": "the product's calculator on the enrolled people's settlements of the "
                    "data years, before trend (not the model)"}
    figures["actual_to_expected"] = _r(tables.pop("ae_total"), 4)
    s.figures = figures


def _step_validation(s: BuildUp) -> None:
    """Cross-validation of every frequency model with enough events (GLM against a
    gradient-boosted challenger), the Gini, the cells table.

    Reads assumptions, cell_cost, cells, figures, fit_rows, frame, models, say, seed,
    tables, w; sets nothing."""
    (assumptions, cell_cost, cells, figures, fit_rows, frame, models, say, seed, tables,
     w) = (
        s.assumptions, s.cell_cost, s.cells, s.figures, s.fit_rows, s.frame, s.models,
        s.say, s.seed, s.tables, s.w)
    val_a = assumptions.get("validation", {})
    checks, fig_checks = [], {}
    for gid, model in models.items():
        for k in model.kinds_:
            if k.events < int(val_a.get("min_events", 1000)):
                continue
            say(f"cross-validation of {gid} ({k.name}) frequency, GLM and GBM")
            cv = cross_validate_frequency(frame, model.counts(k.name), k.factors,
                                          folds=int(val_a.get("folds", 5)), seed=seed,
                                          max_rows=int(val_a.get("max_rows", 400_000)),
                                          use=fit_rows)
            checks.append((f"{gid} ({k.name})", cv))
            fig_checks[f"{gid}:{k.name}"] = {m: _r(v, 6) for m, v in cv["mean"].items()}
    tables["validation"] = checks
    figures["validation"] = fig_checks
    figures["gini"] = _r(tables["gini"], 4)
    tables.update({
              "cells": cells.assign(expected_policies=w, expected_cost=cell_cost)})


def _step_price_response(s: BuildUp) -> None:
    """The equilibrium premium, a rated product's cells answering their own
    premiums, and the spiral scenarios.

    Reads assumptions, basis, cell_cost, cells, cur, cur_cell, data, draws_total,
    enrol_fig, enrol_model, enrolled, figures, filed, hi_q, lo_q, people, product,
    pure_total, tables, target, trend_a; sets nothing."""
    (assumptions, basis, cell_cost, cells, cur, cur_cell, data, draws_total, enrol_fig,
     enrol_model, enrolled, figures, filed, hi_q, lo_q, people, product, pure_total,
     tables, target, trend_a) = (
        s.assumptions, s.basis, s.cell_cost, s.cells, s.cur, s.cur_cell, s.data,
        s.draws_total, s.enrol_fig, s.enrol_model, s.enrolled, s.figures, s.filed,
        s.hi_q, s.lo_q, s.people, s.product, s.pure_total, s.tables, s.target, s.trend_a)
    if enrol_model is not None and enrol_model.can_project and not enrol_fig.get("insured_only"):
        en = assumptions["enrolment"]
        p_ref = _reference_premium(data, product, basis)
        eq = _equilibrium(enrol_model, cells, people, enrolled, cell_cost, p_ref, target, en,
                          draws_total / pure_total if pure_total > 0 else None, (lo_q, hi_q))
        figures["equilibrium"] = eq
        if product.rated:
            figures["rated_cells"] = _rated_cells(product, enrol_model, cur, cur_cell, cells,
                                                  cell_cost, p_ref, target, en)
        runs = []
        spiral_args = (enrol_model, cells, people, enrolled, cell_cost, p_ref, target,
                       trend_a["medical_inflation"])
        years = int(en.get("years", 5))
        for name, mult in en.get("scenarios", {"central": 1.0}).items():
            s = spiral(*spiral_args, en["beta_healthy"] * mult, en["beta_other"] * mult,
                       years=years)
            runs.append(s.assign(scenario=name))
        if eq["premium"] is not None:
            s = spiral(*spiral_args, en["beta_healthy"], en["beta_other"], years=years,
                       start_price=eq["premium"])
            runs.append(s.assign(scenario="central from equilibrium"))
        if filed:
            s = spiral(*spiral_args, en["beta_healthy"], en["beta_other"], years=years,
                       fixed_price=filed)
            runs.append(s.assign(scenario="filed price held"))
        sp = pd.concat(runs, ignore_index=True)
        tables["spiral"] = sp
        figures["spiral"] = [{k: (_r(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                             for row in sp.to_dict("records")]


def _step_budget_impact(s: BuildUp) -> None:
    """The fitted state for ``what-if`` and the class-C list's budget impact.

    Reads assumptions, cell_factor, cells, cur_cell, data, elig_share, ext, figures,
    frac, frame, framed, groups, last_rows, models, n_policies, product, say,
    sev_trend, shares, step_shares, tables, target, w; sets state."""
    from puhui.pricing.whatif import PricingState, class_c_budget_impact

    (assumptions, cell_factor, cells, cur_cell, data, elig_share, ext, figures, frac,
     framed, groups, models, n_policies, product, say, sev_trend, shares,
     step_shares, tables, target, w) = (
        s.assumptions, s.cell_factor, s.cells, s.cur_cell, s.data, s.elig_share, s.ext,
        s.figures, s.frac, s.framed, s.groups, s.models, s.n_policies, s.product, s.say,
        s.sev_trend, s.shares, s.step_shares, s.tables, s.target, s.w)
    state = PricingState(product.id, groups, models, cells, w, sev_trend, target, n_policies,
                         elig_share, shares, cell_factor, step_shares, refund_shares=frac,
                         external=ext.state)
    bi = assumptions.get("budget_impact", {})
    if bi.get("class_c_list"):
        say("budget impact of the class-C list")
        # each of framed's last-year rows: its cell (-1: not in next year's mix)
        key = np.full(len(s.frame), -1, dtype=np.int64)
        key[s.last_rows] = cur_cell
        last = (framed["year"] == framed["year"].max()).to_numpy()
        key = key[framed.index.to_numpy()[last]] if framed is not s.frame else key[last]
        impact = class_c_budget_impact(product, data, framed, cells, w, MIX_FACTORS,
                                       n_policies, float(bi.get("class_c_uptake", 0.2)),
                                       list_id=bi["class_c_list"], cur_cell=key)
        if "drugs" in impact:
            tables["budget_impact"] = impact.pop("drugs")
            impact["pure_premium_per_insured"] = _r(impact["pure_premium_per_insured"], 2)
            impact["gross_premium_per_insured"] = _r(
                impact["pure_premium_per_insured"] / target, 2)
            impact["total"] = _r(impact["total"], 2)
        figures["budget_impact_class_c"] = impact
    s.state = state


def risk_transfer_step(treaties):
    """The step that follows :data:`BUILD_UP` when a treaty set is given
    (``puhui price --treaties``): ``pricing.json``'s ``risk_transfer``
    (:mod:`puhui.pricing.risk_transfer`). Without treaties nothing runs, so the figures
    are those of the build-up alone."""
    def _step_risk_transfer(s: BuildUp) -> None:
        """Reads basis, cell_factor, cells, draws_total, ext, figures, groups, level,
        models, n_policies, pure_total, say, sev_trend, var_policy, w, year_totals; sets
        figures["risk_transfer"]."""
        from puhui.pricing.person_payout import PersonPayout
        from puhui.pricing.risk_transfer import SimYear, person_layers, risk_transfer

        s.say(f"risk transfer: {treaties.path.name}")
        if not np.isfinite(s.year_totals).all() or s.n_policies <= 0 or s.basis <= 0:
            s.figures["risk_transfer"] = {
                "treaty_set": treaties.id, "file": treaties.path.name,
                "note": "not computed: the simulated years are unbounded or there is no "
                        "policy or premium (see the notes)"}
            return
        payout = PersonPayout(s.cells, s.groups, s.models, s.ext.state, s.sev_trend,
                              getattr(s, "cell_factor", None))
        layers = person_layers(payout, s.w, treaties.treaties)
        sim = SimYear(np.rint(s.year_totals * 100).astype(np.int64),
                      np.asarray(s.draws_total, dtype=float), s.var_policy, s.pure_total,
                      int(round(s.basis * 100)) * s.n_policies, s.n_policies)
        fig = risk_transfer(treaties, sim, layers,
                            lambda chain: person_layers(payout, s.w, chain), s.level)
        fig["premium_basis"] = s.figures["loss_ratio_basis"]
        fig["person_payout"] = person_note(layers, s.pure_total)
        s.figures["risk_transfer"] = fig
    return _step_risk_transfer


def person_note(layers: dict, pure_total: float) -> dict | None:
    """What the per-person distribution's mean is beside the pure premium, as the first
    excess of loss sees it (after any quota share before it; None when no treaty reads
    it)."""
    if not layers:
        return None
    first = next(iter(layers.values()))
    return {"mean_per_policy": _r(first["mean_before"], 2), "pure_premium": _r(pure_total, 2),
            "method": "per rating cell, the pricing groups' annual benefits convolved "
                      "(independent), external-assumption benefits as Poisson cases of a "
                      "fixed payout, the cell's credibility factor applied; drug refunds "
                      "and claim-free steps left out (docs/pricing.md, Risk transfer)"}


#: The build-up of :func:`price`, in order (docs/pricing.md, "The build-up").
BUILD_UP = (_step_experience, _step_priced_period, _step_enrolled_mix, _step_benefit_costs,
            _step_credibility, _step_agreements, _step_lifetime, _step_borrowed_enrolment,
            _step_loss_ratio,
            _step_figures, _step_validation, _step_price_response, _step_budget_impact)

#: The steps whose figures a backtest year reads (the pure premium and its interval,
#: the process variance, the policies, the gross and equilibrium premiums, the
#: enrolment, the notes): the cross-validation's GLM against its gradient-boosted
#: challenger and the class-C budget impact (with the what-if state) set none of them,
#: read nothing later steps read and draw from their own random generators, so the
#: backtest leaves them out (at ten million person-years the challenger alone was a
#: twentieth of ``puhui price``'s CPU in its backtest).
BACKTEST_STEPS = tuple(step for step in BUILD_UP
                       if step not in (_step_validation, _step_budget_impact))




def next_year_state(product: Product, frame: pd.DataFrame, last: int
                    ) -> tuple[np.ndarray, pd.DataFrame]:
    """The people of the data's last year who may hold a policy the year after, in that
    year's state, as the models read a year (its cost given the state at its start):
    one year older (age band and group), a prior stay if they had a stay in the last
    year, ``preexisting_seen`` by the look-back ending with the last year, and the
    rating ``preexisting`` the enrolled's policy flag (kept at renewal) or that rule.
    Those who died in the last year and those past the product's ages next year are
    left out. Returns (the frame's rows taken, the table of MIX_FACTORS, ``enrolled``
    (this year), ``age`` (next year's) and ``exposure``). A frame without the next-year
    columns (``stayed``, ``preexisting_next``) gives this year's state."""
    year = frame["year"].to_numpy()
    ahead = "stayed" in frame.columns and "preexisting_next" in frame.columns
    older = frame.assign(age=frame["age"] + 1) if ahead else frame
    rows = (year == last) & eligible_rows(product, older)
    if ahead:                                   # alive at the year's end
        rows &= (~frame["died"].to_numpy(dtype=bool) if "died" in frame.columns
                 else frame["exposure"].to_numpy() >= 1.0 - 1e-9)
    cur = frame.loc[rows, [*MIX_FACTORS, "enrolled", "age", "exposure"]]
    if ahead:
        seen = frame["preexisting_next"].to_numpy()[rows].astype(cur["preexisting_seen"].dtype)
        enrolled = cur["enrolled"].to_numpy(dtype=bool)
        pre = cur["preexisting"].to_numpy()
        cur = cur.assign(
            age=cur["age"] + 1,
            age_band=age_band(cur["age"].to_numpy() + 1),
            age_group=age_group(cur["age"].to_numpy() + 1),
            prior_stay=frame["stayed"].to_numpy()[rows].astype(cur["prior_stay"].dtype),
            preexisting_seen=seen,
            preexisting=np.where(enrolled, pre, seen).astype(pre.dtype))
    return rows, cur


def _enrolled_mix(product: Product, data: FundData, framed: pd.DataFrame, cells: pd.DataFrame,
                  people: np.ndarray, enrolled: np.ndarray, cur: pd.DataFrame | None = None):
    """Next year's expected policies per cell (:mod:`puhui.pricing.enrolment`): the
    enrolment model, the weights ``w`` and the figures of ``pricing.json``'s
    ``enrolment`` (with ``notes``). Insured-only data (every person of persons.parquet
    held a policy: an insurer's own book) has no one who chose not to join, so entry
    cannot be measured: the mix is the book as it is, last year's policies. Data that
    ends with the launch year borrow renewal by health (:func:`_launch_year_mix`, which
    reads ``cur``, the people of ``cells`` in next year's state, when given)."""
    fig: dict = {"notes": []}
    enr = framed["enrolled"].to_numpy(dtype=bool)
    insured_only = bool(len(data.policies)) and (
        data.persons["psn_no"].astype(str).isin(set(data.policies["psn_no"].astype(str))).all())
    if not enr.any():
        fig.update(mode="whole eligible population")
        fig["notes"].append("no one in the data held a policy: priced for the whole eligible "
                            "population (as a launch where everyone joins), not an enrolled mix")
        return None, people.copy(), fig
    model = EnrolmentModel(lookback_years=product.preexisting_lookback_years).fit(framed)
    fig.update(_enrolment_figures(model, product))
    held = sorted(set(data.policies["product_id"].astype(str)))
    if held and not any(_line(h) == _line(product.id) for h in held):
        fig["borrowed_from"] = held
        fig["notes"].append(
            f"the data's policies are of {', '.join(held)}, not of {product.id}'s line: its "
            f"enrolment, price response and reference premium are borrowed from those "
            f"policyholders, so the mix, the equilibrium and the spiral are extrapolations")
    if insured_only or enr.all():
        fig.update(mode="insured book as it is", insured_only=True)
        fig["notes"].append("insured-only data (every person in the data held a policy): no "
                            "one who chose not to join is seen, so entry cannot be measured; "
                            "priced for the insured book as it is (last year's policies)")
        return model, enrolled.copy(), fig
    if not model.can_project:
        fig.update(mode="whole eligible population")
        fig["notes"].append("enrolment could not be modelled (no rate to fit): priced for "
                            "the whole eligible population")
        return None, people.copy(), fig
    if model.entry_ is None and model.launch_year_ == model.last_year_:
        return model, _launch_year_mix(product, data, framed, cells, model, fig, cur), fig
    if model.entry_ is None:
        fig.update(mode="launch take-up")
        fig["notes"].append(f"a single data year ({model.launch_year_}): the mix is that "
                            f"year's take-up; renewal and later entry need a second year")
    else:
        fig.update(mode="renewal and later entry")
        if model.lookback_years_ < product.preexisting_lookback_years:
            fig["notes"].append(
                f"enrolment fitted on {', '.join(map(str, model.fit_years_))} with "
                f"{model.lookback_years_} year(s) of look-back before it, short of the "
                f"product's {product.preexisting_lookback_years}: pre-existing status of "
                f"the people without a policy is known only that far")
    return model, model.transition(cells, enrolled, people), fig


def _launch_year_mix(product: Product, data: FundData, framed: pd.DataFrame,
                     cells: pd.DataFrame, model: EnrolmentModel, fig: dict,
                     cur: pd.DataFrame) -> np.ndarray:
    """Next year's mix when the data ends with the launch year (no renewal to fit):
    the launch's enrollees x a borrowed renewal by health at renewal, plus later
    entrants up to a borrowed year-2 size (:func:`~puhui.pricing.enrolment.assumed_renewal_mix`,
    actuarial/assumptions/enrolment.toml); the model then carries these rates for the
    equilibrium and the spiral. Sets ``fig`` (mode, ``assumed``, a note). ``cur``: the
    last year's people in next year's state (:func:`next_year_state`, the rows of
    ``cells``), whose health at renewal is their cells' (a listed diagnosis in the
    look-back, or a stay in the launch year)."""
    basis = load_enrolment_basis()
    rows = cur
    sick = (cur["preexisting_seen"].to_numpy().astype(bool)
            | cur["prior_stay"].to_numpy().astype(bool))
    factors = list(MIX_FACTORS)
    split = (rows[factors].assign(_sick=sick, _n=1, _e=rows["enrolled"].to_numpy(dtype=int))
             .groupby([*factors, "_sick"], observed=True)[["_n", "_e"]].sum()
             .unstack("_sick", fill_value=0))
    split = cells[factors].merge(split.set_axis(
        [f"{a}{int(b)}" for a, b in split.columns], axis=1).reset_index(), on=factors,
        how="left")
    cols = ("_n0", "_n1", "_e0", "_e1")
    for c in cols:
        split[c] = split[c].fillna(0.0) if c in split.columns else 0.0
    inputs = (split[["_n0", "_n1"]].to_numpy(), split[["_e0", "_e1"]].to_numpy(),
              model.launch_.predict(cells))
    m = assumed_renewal_mix(*inputs, basis["healthy"], basis["sick"], basis["year2_to_launch"])
    summary = {"file": basis["file"],
               "renewal_healthy": basis["healthy"], "renewal_sick": basis["sick"],
               "year2_to_launch": basis["year2_to_launch"],
               "sources": {k: basis[f"{k}_source"] for k in ("healthy", "sick",
                                                            "year2_to_launch",
                                                            "year2_sensitivity")},
               "launch_policies": int(round(m["launch_policies"])),
               "renewals": int(round(m["renewals"])), "entrants": int(round(m["entrants"])),
               "entry_scale": _r(m["k"], 4),
               "entry_rate": _r(m["entrants"] / max(float((split["_n0"] + split["_n1"]
                                - split["_e0"] - split["_e1"]).sum()), 1.0), 4),
               "sick_share_launch": _r_opt(m["sick_share_launch"], 4),
               "sick_share_next": _r_opt(m["sick_share_next"], 4)}
    model.assume_renewal(cells, factors, m["renew"], m["entry"], summary)
    model.assumed_inputs_ = (*inputs, basis)       # for the year-2 size's sensitivity
    fig.update(mode="launch take-up with renewal assumed", assumed=summary)
    note = (f"the data ends with the product's launch year ({model.launch_year_}) and has no "
            f"renewal year: next year's mix is the launch's enrollees x a borrowed renewal "
            f"by health at renewal (healthy {basis['healthy']:.4f}, sick {basis['sick']:.4f}: "
            f"a survey, unverified) plus later entrants up to {basis['year2_to_launch']:.3f} "
            f"x the launch's policies (Huhuibao 2022 / 2021, published), from {basis['file']}; "
            f"the policies, premiums, loss ratios, equilibrium and spiral rest on these "
            f"assumptions [A]")
    if m["capped"]:
        note += ("; the entrants fall short of that size (later entry capped at the launch "
                 "take-up)")
    fig["notes"].append(note)
    return m["w"]


#: Fewer expected policies than this at a fixed point: no market, not an equilibrium.
MIN_EQUILIBRIUM_POLICIES = 1.0


def _equilibrium(model, cells: pd.DataFrame, people: np.ndarray, enrolled: np.ndarray,
                 cell_cost: np.ndarray, p_ref: float, target: float, en: dict,
                 draw_factors: np.ndarray | None, quantiles: tuple[float, float]) -> dict:
    """The equilibrium gross premium (:func:`~puhui.pricing.enrolment.equilibrium_premium`)
    under the central price response, twice: **first-year** (the mix next year, moved
    from this year's book by the price) and **long-run** (the stationary mix of renewal
    and entry at a price held for good, :meth:`EnrolmentModel.stationary`, which the
    spiral tends to); with their uncertainty: the same fixed points with the cost scaled
    to the interval's ends of the parameter draws, and under each scenario's response.
    A fixed point with fewer than :data:`MIN_EQUILIBRIUM_POLICIES` expected policies is
    no market: None."""
    probs = model.probabilities(cells)

    def solve(bh: float, bo: float, scale: float = 1.0, long_run: bool = False):
        beta = np.where(healthy(cells), bh, bo)

        def mix(p):
            shift = beta * np.log(p / p_ref)
            if long_run:
                return model.stationary(cells, people, shift, probs=probs)
            return model.transition(cells, enrolled, people, shift, probs=probs)

        def cost_of_mix(p):
            m = mix(p)
            return scale * float(np.dot(m, cell_cost) / m.sum()) if m.sum() > 0 else np.inf

        p = equilibrium_premium(cost_of_mix, p_ref, target)
        n = float(mix(p).sum()) if p is not None else 0.0
        return (p, n) if n >= MIN_EQUILIBRIUM_POLICIES else (None, 0.0)

    def figures(long_run: bool) -> dict:
        p, n = solve(bh, bo, long_run=long_run)
        out = {"premium": _r_opt(p), "policies": _r(n, 0)}
        if draw_factors is not None and len(draw_factors) and np.isfinite(draw_factors).all():
            ends = [solve(bh, bo, float(np.quantile(draw_factors, q)), long_run)[0]
                    for q in quantiles]
            out["interval"] = {"lower": _r_opt(ends[0]), "upper": _r_opt(ends[1])}
        out["by_scenario"] = {name: _r_opt(solve(bh * m, bo * m, long_run=long_run)[0])
                              for name, m in en.get("scenarios", {"central": 1.0}).items()}
        return out

    bh, bo = en["beta_healthy"], en["beta_other"]
    out = {**figures(False), "reference_premium": _r(p_ref, 2), "long_run": figures(True)}
    out["note"] = ("the gross premium that breaks even on the people it draws: P = cost of "
                   "the mix at P / target loss ratio, the mix moved by beta log(P / reference "
                   "premium); first-year: next year's mix from this year's book; long_run: "
                   "the stationary mix of renewal and entry at P held for good; none when no "
                   "price in 1/100..100x the reference does with at least one policy (the "
                   "spiral ends with nobody insured)")
    return out


def _rated_cells(product: Product, model, cur: pd.DataFrame, cur_cell: np.ndarray,
                 cells: pd.DataFrame, cell_cost: np.ndarray, p_ref: float, target: float,
                 en: dict) -> list[dict]:
    """Per premium cell of a rated product (age band x health status as the product file
    states them): the people it holds (the eligible of the last data year), and, with
    each cell's enrolment answering its own premium (the price response of the spiral),
    the policies and loss ratio at the filed premium and the cell's equilibrium premium.
    A premium cell holds pricing cells of different health and prior stays, so the
    anti-selection inside it is priced: the healthy leave a dear cell first."""
    pc = _premium_cell_of(product, cur["age"].to_numpy(), cur["preexisting"].to_numpy())
    beta_all = np.where(healthy(cells), en["beta_healthy"], en["beta_other"])
    out = []
    for i, c in enumerate(product.premium_cells):
        on = pc == i
        k, people = np.unique(cur_cell[on], return_counts=True)
        row = {"min_age": c.min_age, "max_age": c.max_age, "preexisting": c.preexisting,
               "filed_premium": c.amount_fen / 100.0, "people": int(on.sum())}
        if not len(k):
            out.append({**row, "policies_at_filed": 0, "loss_ratio_at_filed": None,
                        "equilibrium_premium": None, "policies_at_equilibrium": 0})
            continue
        enrolled = np.bincount(cur_cell[on], weights=cur["enrolled"].to_numpy(dtype=float)[on],
                               minlength=len(cells))[k]
        sub, cost, beta = cells.iloc[k].reset_index(drop=True), cell_cost[k], beta_all[k]
        filed = c.amount_fen / 100.0
        mix = model.transition(sub, enrolled, people.astype(float),
                               beta * np.log(filed / p_ref)) if filed > 0 else np.zeros(len(k))
        eq = _equilibrium(model, sub, people.astype(float), enrolled, cost, p_ref, target,
                          {**en, "scenarios": {}}, None, (0.05, 0.95))
        out.append({**row, "policies_at_filed": _r(mix.sum(), 1),
                    "loss_ratio_at_filed": _r(np.dot(mix, cost) / mix.sum() / filed, 4)
                    if mix.sum() > 0 and filed > 0 else None,
                    "equilibrium_premium": eq["premium"],
                    "policies_at_equilibrium": eq["policies"]})
    return out


def _line(product_id: str) -> str:
    """A product's line: its id without a trailing year (huhuibao-2025 -> huhuibao).

    >>> _line("huhuibao-2025"), _line("elderly-medical-60-80")
    ('huhuibao', 'elderly-medical-60-80')
    """
    import re

    return re.sub(r"-(19|20)\d\d$", "", product_id)


def _enrolment_figures(model, product: Product) -> dict:
    return {"fit_years": model.fit_years_, "lookback_years": model.lookback_years_,
            "product_lookback_years": product.preexisting_lookback_years,
            "launch_year": model.launch_year_, "launch_take_up": _r(model.launch_rate_, 4),
            "renewal_rate": _r(model.renewal_rate_, 4), "entry_rate": _r(model.entry_rate_, 4),
            "insured_only": False}


def _lifetime(product: Product, data: FundData, assumptions: dict, frame: pd.DataFrame,
              framed: pd.DataFrame, cur: pd.DataFrame, cur_cell: np.ndarray,
              cells: pd.DataFrame, w: np.ndarray, cell_cost: np.ndarray,
              cell_factor: np.ndarray, groups, models, sev_trend: float,
              target: float) -> tuple[dict, dict]:
    """The lifetime price (:mod:`puhui.pricing.lifetime`) from this run's models: the
    eligible people of the last year with their cell's cost and the enrolled mix, the
    as-if payouts by single age of the product's schemes (all ages: the younger ones
    are the age curve's prior), the data's policies (lapse by duration) and the
    benefit growth G(t) for the re-rating path (the mix's E[B], claim-free steps aside,
    with the severity grown t years of inflation, over today's)."""
    basis = lifetime_basis(assumptions)
    per_person = (w / cells["people"].to_numpy())[cur_cell]
    people = pd.DataFrame({"age": cur["age"].to_numpy(), "gender": cur["gender"].astype(str).to_numpy(),
                           "weight": per_person, "cost": cell_cost[cur_cell]})
    scheme = frame["insutype"].astype(str).isin(product.insutypes).to_numpy()
    paid = sum(frame[f"payout_{b.id}"].to_numpy()[scheme] for b in product.benefits) / 100.0
    experience = experience_by_age(frame["age"].to_numpy()[scheme], paid,
                                   frame["exposure"].to_numpy()[scheme], 0,
                                   int(product.max_renewal_age))
    inflation = float(assumptions["trend"]["medical_inflation"])

    def expected_at(t: int) -> float:
        factor = sev_trend * (1 + inflation) ** t
        return sum(float(np.dot(w * cell_factor, models[terms.id].moments(
            cells, terms, severity_factor=factor)[0])) for terms in groups)

    growth = benefit_growth(expected_at, int(product.max_renewal_age)
                            - int(product.min_entry_age or 0))
    years = sorted(int(y) for y in framed["year"].unique())
    return lifetime_price(product, people, experience, growth, basis, target,
                          persons=data.persons, years=years, policies=data.policies)


AE_FACTORS = ("age_band", "gender", "insutype", "retired", "preexisting", "prior_stay")


def _actual_vs_expected(product: Product, frame: pd.DataFrame, groups, models,
                        cells: tuple | None = None) -> dict:
    """Actual as-if payouts of the experience against the models' expected annual
    benefit (untrended) for the same person-years: overall, one-way by factor, and by
    decile of expected cost (calibration and lift). ``cells``: ``cells_of(frame,
    CELL_FACTORS)`` when the caller has it (the same combinations and codes as the
    groupby here; ten million rows are not grouped twice)."""
    if cells is None:
        cells = cells_of(frame, CELL_FACTORS)
    combos, code = cells[0][list(CELL_FACTORS)], cells[1]
    expected = np.zeros(len(combos))
    for terms in groups:
        expected += models[terms.id].moments(combos, terms)[0]
    exp_row = expected[code] * frame["exposure"].to_numpy()
    act_row = sum(frame[f"payout_{b.id}"].to_numpy() for b in product.benefits) / 100.0
    f = pd.DataFrame({"actual": act_row, "expected": exp_row}, copy=False)
    one_way = []
    for fac in AE_FACTORS:
        codes, levels = pd.factorize(frame[fac])         # levels shown as text, in text order
        t = f.groupby(codes).agg(actual=("actual", "sum"), expected=("expected", "sum"),
                                 people=("actual", "size"))
        t.index = np.asarray(levels.astype(str))[t.index.to_numpy()]
        t = t.sort_index()
        for level, row in t.iterrows():
            one_way.append({"factor": fac, "level": level, "people": int(row["people"]),
                            "actual": row["actual"], "expected": row["expected"]})
    # deciles of expected cost per person-year (ties broken by position: stable)
    order = np.argsort(exp_row / np.maximum(frame["exposure"].to_numpy(), 1e-9), kind="stable")
    dec = np.empty(len(order), dtype=int)
    dec[order] = np.arange(len(order)) * 10 // max(len(order), 1)
    d = f.groupby(dec).agg(actual=("actual", "sum"), expected=("expected", "sum"),
                           people=("actual", "size")).reset_index(names="decile")
    d["decile"] += 1
    return {"ae_one_way": pd.DataFrame(one_way), "ae_deciles": d, "ae_rows": f,
            "ae_total": float(f["actual"].sum() / f["expected"].sum()) if f["expected"].sum() else np.nan,
            "gini": gini_index(f["actual"].to_numpy(), exp_row / np.maximum(
                frame["exposure"].to_numpy(), 1e-9), frame["exposure"].to_numpy())}


def _coefficients(models: dict[str, BenefitCostModel]) -> pd.DataFrame:
    rows = []
    for gid, m in models.items():
        for k in m.kinds_:
            for part, res in (("frequency", k.frequency.result_), ("severity", k.severity.result_)):
                for name in res.params.index:
                    rows.append({"group": gid, "kind": k.name, "model": part, "term": name,
                                 "coef": float(res.params[name]), "se": float(res.bse[name]),
                                 "relativity": float(np.exp(res.params[name]))})
    return pd.DataFrame(rows)


def _r(x, digits: int):
    """Round for pricing.json (so a re-run compares equal across machines)."""
    x = float(x)
    return round(x, digits) if np.isfinite(x) else None


def _r_opt(x, digits: int = 2):
    """:func:`_r`, with None kept (a figure that does not exist)."""
    return None if x is None else _r(x, digits)


def _filed_premium(product: Product, cells: pd.DataFrame, w: np.ndarray, cur: pd.DataFrame,
                   cur_cell: np.ndarray) -> float | None:
    """The product file's premium per policy over the mix (None when it states none):
    the flat premium, or for a rated product its cells' premiums weighted by the
    expected policies of the people each cell holds (the eligible of the last data
    year, each carrying their pricing cell's expected policies per person), so the
    loss ratio is at the filed schedule, never the target by construction."""
    if product.premium_flat_fen is not None:
        return product.premium_flat_fen / 100.0
    if not product.premium_cells:
        return None
    per_person = (w / cells["people"].to_numpy())[cur_cell]
    pc = _premium_cell_of(product, cur["age"].to_numpy(), cur["preexisting"].to_numpy())
    amount = np.array([c.amount_fen / 100.0 for c in product.premium_cells])
    on = pc >= 0
    weight = per_person[on].sum()
    return float(np.dot(per_person[on], amount[pc[on]]) / weight) if weight > 0 else None


def _premium_cell_of(product: Product, age: np.ndarray, pre: np.ndarray) -> np.ndarray:
    out = np.full(len(age), -1)
    for i, c in enumerate(product.premium_cells):
        hit = (out < 0) & (age >= c.min_age) & (age <= c.max_age)
        if c.preexisting is not None:
            hit &= pre == int(c.preexisting)
        out[hit] = i
    return out


def _gross_cells(product: Product, cur: pd.DataFrame, cells: pd.DataFrame, w: np.ndarray,
                 cell_cost: np.ndarray, target: float, key: np.ndarray) -> list[dict]:
    """Gross premium by the product's premium cells: each eligible person of the last
    data year (``cur``; ``key``: each one's row in ``cells``) carries the expected
    policies per person of their pricing cell."""
    per_person = (w / cells["people"].to_numpy())[key]
    cost = cell_cost[key]
    pc = _premium_cell_of(product, cur["age"].to_numpy(), cur["preexisting"].to_numpy())
    out = []
    for i, c in enumerate(product.premium_cells):
        on = pc == i
        wt = per_person[on].sum()
        gross = float(np.dot(per_person[on], cost[on]) / wt / target) if wt > 0 else None
        out.append({"min_age": c.min_age, "max_age": c.max_age, "preexisting": c.preexisting,
                    "filed_premium": c.amount_fen / 100.0,
                    "gross_premium": _r(gross, 2) if gross is not None else None})
    return out


def _reference_premium(data: FundData, product: Product, fallback: float) -> float:
    """The premium the data's enrolment happened at: the mean premium of the last data
    year's policies (yuan), else ``fallback``."""
    pol = data.policies
    if len(pol) == 0:
        return fallback
    last = pol["start_date"].dt.year.max()
    v = float(pol.loc[pol["start_date"].dt.year == last, "premium"].mean()) / 100.0
    return v if v > 0 else fallback
