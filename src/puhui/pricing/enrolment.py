"""Who enrols: launch take-up, renewal and later entry, the equilibrium premium, and the
death-spiral projection.

From the person-years of the experience table (who held a policy each year), logistic
GLMs on rating cells (binomial counts by cell are sufficient statistics, so the cell
fit is the person-level fit)::

    renewal:  P(enrolled in t | enrolled in t-1)        among people alive in both
    entry:    P(enrolled in t | not enrolled in t-1)    later entry
    launch:   P(enrolled in t0)                         take-up in the first year of
                                                         policies (everyone may join)

**The first data year is look-back only** for renewal and entry: in it nobody's
previous year is known (so everybody would count as an entrant, pooling the launch's
take-up with real later entry), no one has a prior stay and, for people without a
policy, no pre-existing history. Renewal and entry are fitted on the years after it,
and on the years with the product's full look-back where the data has any. Health
status in these fits is ``preexisting_seen``, the product's own definition (ICD-10
list, look-back) applied to everyone alike, never the enrolled's policy flag against
the others' history. Launch take-up is fitted on the first policy year and reported.
When the data ends with the launch year (no renewal year to fit), renewal by health
and the year-2 size are borrowed from ``actuarial/assumptions/enrolment.toml``
(:func:`assumed_renewal_mix`, :meth:`EnrolmentModel.assume_renewal`), later entry
shaped like the launch's take-up; the price says so and marks what rests on them.

The year after the data, cell c is expected to hold::

    E_c = enrolled_c renew_c + (people_c - enrolled_c) entry_c

and the price is for that mix, not for the population. A premium P moves each cell's
odds of joining or renewing by ``beta_c log(P / P_ref)``, with ``beta`` more negative
for healthy cells (no pre-existing condition, no stay last year) than for others (an
assumption, given in the assumptions file with scenarios). The **equilibrium premium**
is the fixed point P* = cost(mix(P*)) / target (:func:`equilibrium_premium`): the price
that breaks even on the people it attracts. The **death-spiral projection** runs the
mix forward: each year's price is set from the previous year's mix (as an actuary
prices on last year's experience), the mix responds to that price, and the loss ratio
shows the result. The population is held fixed (no ageing, deaths or migration in the
projection): the spiral shows the selection effect alone.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from puhui.pricing.experience import years_with_history

ENROLMENT_FACTORS = ("age_band", "gender", "insutype", "preexisting_seen", "prior_stay")
#: Launch take-up: the first data year has no history (no prior stays, no look-back).
LAUNCH_FACTORS = ("age_band", "gender", "insutype")


def with_previous_enrolment(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``prev_enrolled`` (1.0 or 0.0, or NaN in a person's first data year), the
    person found by ``person`` when the frame has it, else by ``psn_no``."""
    return frame.assign(prev_enrolled=previous_enrolment(frame))


def previous_enrolment(frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``frame``: 1.0 when the person was enrolled the year before, 0.0 when
    not, NaN in the person's first data year (see :func:`with_previous_enrolment`)."""
    from puhui.pricing.experience import person_year_rows

    who = [c for c in ("person", "psn_no") if c in frame.columns][:1]
    before = pd.DataFrame({who[0]: frame[who[0]].to_numpy(),
                           "year": frame["year"].to_numpy() - 1}, copy=False)
    rows = person_year_rows(frame, before)
    enrolled = frame["enrolled"].to_numpy(dtype=float)
    return np.where(rows >= 0, enrolled[np.maximum(rows, 0)], np.nan)


class LogisticCells:
    """A binomial GLM (logit link) fitted on cell counts: ``successes`` of ``trials``.

    Attributes: params_, bse_, result_, cells_ (with ``fitted`` probabilities).
    """

    def __init__(self, factors=ENROLMENT_FACTORS):
        self.factors = tuple(factors)

    def fit(self, frame: pd.DataFrame, outcome: str) -> "LogisticCells":
        f = frame[list(self.factors)].assign(_y=frame[outcome].astype(int).to_numpy())
        return self.fit_cells(f.groupby(list(self.factors), observed=True)
                              .agg(successes=("_y", "sum"), trials=("_y", "size"))
                              .reset_index())

    def fit_cells(self, cells: pd.DataFrame) -> "LogisticCells":
        """The same fit from the cells' ``successes`` and ``trials`` (the factors'
        combinations, in their sorted order as a groupby gives them)."""
        import statsmodels.formula.api as smf
        from statsmodels.genmod import families

        cells = cells.reset_index(drop=True)
        # only the levels the cells have (a product for ages 60-100 has no younger age
        # bands; an empty reference level would make the design singular)
        self.levels_ = {}
        for f in self.factors:
            if isinstance(cells[f].dtype, pd.CategoricalDtype):
                cells[f] = cells[f].cat.remove_unused_categories()
                self.levels_[f] = cells[f].cat.categories
            elif cells[f].dtype == object:     # codes as text: a small fund may lack one
                self.levels_[f] = pd.Index(sorted(cells[f].dropna().unique()))
        cells["share"] = cells["successes"] / cells["trials"]
        rhs = " + ".join(f"C({f})" for f in self.factors) or "1"
        # proportions weighted by their trials: the binomial likelihood of the counts
        model = smf.glm(f"share ~ {rhs}", data=cells, family=families.Binomial(),
                        var_weights=cells["trials"].to_numpy(dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # saturated: no residual dof
            self.result_ = model.fit(scale=1.0)
        self.params_, self.bse_ = self.result_.params, self.result_.bse
        self.cells_ = cells.assign(fitted=self.result_.fittedvalues.to_numpy())
        return self

    def predict(self, cells: pd.DataFrame) -> np.ndarray:
        """The fitted probability of each cell; a level the fit had no cell of (people
        aged 60 renew from 59, which a product for 60-100 does not take) is predicted
        as the reference level (the first the fit had)."""
        levels = getattr(self, "levels_", {})
        if levels:
            cells = cells.assign(**{f: pd.Categorical(np.asarray(cells[f]), categories=lv)
                                    .fillna(lv[0]) for f, lv in levels.items()})
        return np.asarray(self.result_.predict(cells))


class EnrolmentModel:
    """Launch take-up, renewal and later entry by cell (see the module docstring).

    Attributes (after ``fit``): renewal_, entry_ (:class:`LogisticCells`, or None when
    the data has no year after its first), launch_ (the first policy year's take-up,
    or None when the first data year has no policy), last_year_, fit_years_ (the years
    renewal and entry are fitted on), lookback_years_ (of history those years have,
    at most the product's), launch_year_, and the rates renewal_rate_, entry_rate_,
    launch_rate_.
    """

    def __init__(self, factors=ENROLMENT_FACTORS, lookback_years: int = 1):
        self.factors = tuple(factors)
        self.lookback_years = lookback_years

    def fit(self, frame: pd.DataFrame) -> "EnrolmentModel":
        years = np.sort(np.unique(frame["year"].to_numpy()))
        first = int(years[0])
        self.last_year_ = int(years[-1])
        year = frame["year"].to_numpy()
        enrolled = frame["enrolled"].to_numpy()
        policy_years = np.unique(year[enrolled.astype(bool)])
        self.launch_year_ = int(policy_years[0]) if len(policy_years) else None
        # renewal and entry: years after the first data year and after the launch (a
        # launch year's take-up is not later entry)
        self.fit_years_ = years_with_history(years, self.lookback_years,
                                             after=self.launch_year_ or first)
        self.lookback_years_ = (min(int(min(self.fit_years_)) - first, self.lookback_years)
                                if self.fit_years_ else 0)
        self.launch_ = None
        self.launch_rate_ = float("nan")
        if self.launch_year_ is not None and (
                self.launch_year_ == first or not enrolled[year == self.launch_year_ - 1].any()):
            on = year == self.launch_year_
            counts = _cell_counts(frame, on, LAUNCH_FACTORS, None)
            self.launch_ = _fit_or_none(counts, LAUNCH_FACTORS)
            self.launch_rate_ = _rate(counts)
        self.renewal_ = self.entry_ = None
        self.renewal_rate_ = self.entry_rate_ = float("nan")
        if not self.fit_years_:
            return self
        on = np.isin(year, self.fit_years_)
        renewing = previous_enrolment(frame) == 1
        by = _cell_counts(frame, on, self.factors, renewing)
        renew = by[by["_renewing"]].drop(columns="_renewing")
        entry = by[~by["_renewing"]].drop(columns="_renewing")
        self.renewal_ = _fit_or_none(renew, self.factors)
        self.entry_ = _fit_or_none(entry, self.factors)
        self.renewal_rate_, self.entry_rate_ = _rate(renew), _rate(entry)
        return self

    @property
    def can_project(self) -> bool:
        """A mix for next year can be made: renewal and entry, or the launch take-up."""
        return self.entry_ is not None or self.launch_ is not None

    def probabilities(self, cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(entry, renewal) probability per cell at the status quo: entry is the launch
        take-up with a single data year; renewal None when there is no renewal model."""
        if self.entry_ is None:           # a single data year: its take-up is the mix
            return self.launch_.predict(cells), None
        renew = self.renewal_.predict(cells) if self.renewal_ is not None else None
        return self.entry_.predict(cells), renew

    def transition(self, cells: pd.DataFrame, enrolled: np.ndarray, people: np.ndarray,
                   shift: np.ndarray | None = None, probs=None) -> np.ndarray:
        """Expected enrolled per cell next year, from this year's ``enrolled`` of
        ``people``; ``shift`` adds to each cell's log-odds (the price response);
        ``probs``: :meth:`probabilities` of ``cells`` when the caller has them (a
        projection asks for many shifts of the same cells)."""
        s = np.zeros(len(cells)) if shift is None else shift
        entry, renew = self.probabilities(cells) if probs is None else probs
        if renew is None:          # no renewal model: everyone joins at the entry rate
            return people * _shift(entry, s)
        return enrolled * _shift(renew, s) + (people - enrolled) * _shift(entry, s)

    def stationary(self, cells: pd.DataFrame, people: np.ndarray,
                   shift: np.ndarray | None = None, probs=None) -> np.ndarray:
        """Expected enrolled per cell in the long run at a price held for good: the
        stationary state of renewal and entry (a two-state chain per cell)::

            pi_c = entry_c / (1 - renew_c + entry_c),   E_c = people_c pi_c

        With no renewal model, the entry (or take-up) rate itself."""
        s = np.zeros(len(cells)) if shift is None else shift
        entry, renew = self.probabilities(cells) if probs is None else probs
        e = _shift(entry, s)
        if renew is None:
            return people * e
        r = _shift(renew, s)
        return people * e / (1.0 - r + e)

    def renewals(self, cells: pd.DataFrame, enrolled: np.ndarray) -> np.ndarray:
        """Expected renewing policies per cell next year (``enrolled`` x renew_c; all of
        them when the data has no renewal year)."""
        if self.renewal_ is None:
            return np.zeros(len(cells))
        return enrolled * self.renewal_.predict(cells)

    def assume_renewal(self, cells: pd.DataFrame, factors, renew: np.ndarray,
                       entry: np.ndarray, summary: dict) -> "EnrolmentModel":
        """Renewal and later entry borrowed per cell of ``cells`` (keyed by ``factors``),
        for data with a launch year and no renewal year (:func:`assumed_renewal_mix`):
        the mix, the equilibrium and the spiral then use them as they use fitted ones.
        ``assumed_`` holds the ``summary`` (None when the rates are fitted)."""
        self.renewal_ = CellRates(cells, factors, renew)
        self.entry_ = CellRates(cells, factors, entry)
        self.assumed_ = summary
        return self

    assumed_ = None


class CellRates:
    """Rates given per cell (not fitted), looked up by the cells' ``factors``; a cell it
    was not given is predicted at the mean rate."""

    def __init__(self, cells: pd.DataFrame, factors, rates: np.ndarray):
        self.factors = list(factors)
        rates = np.asarray(rates, dtype=float)
        self.rates = pd.Series(rates, index=pd.MultiIndex.from_frame(
            cells[self.factors].astype(object)))
        self.rates = self.rates[~self.rates.index.duplicated()]
        self.default = float(rates.mean()) if len(rates) else 0.0

    def predict(self, cells: pd.DataFrame) -> np.ndarray:
        key = pd.MultiIndex.from_frame(cells[self.factors].astype(object))
        return self.rates.reindex(key).fillna(self.default).to_numpy()


#: The borrowed enrolment basis, read when the data has no renewal year.
ENROLMENT_BASIS = "assumptions/enrolment.toml"


def load_enrolment_basis(path=None) -> dict:
    """The borrowed renewal by health and year-2 size (``actuarial/assumptions/
    enrolment.toml``): healthy, sick, year2_to_launch, their sources and the file."""
    from pathlib import Path

    from puhui.basis import actuarial_dir, read_toml
    from puhui.errors import RuleFileError

    p = Path(path) if path else actuarial_dir() / ENROLMENT_BASIS
    if not p.is_file():
        raise RuleFileError(f"{p}: the enrolment assumptions file is missing; it ships with "
                            f"the actuarial basis (actuarial/{ENROLMENT_BASIS})")
    a = read_toml(p)
    out = {"file": f"actuarial/{ENROLMENT_BASIS}" if not path else str(p)}
    for section in ("renewal", "later_entry"):
        if not isinstance(a.get(section), dict):
            raise RuleFileError(f"{p}: no [{section}] table (found {type(a.get(section)).__name__}"
                                f"); the shipped actuarial/{ENROLMENT_BASIS} shows its keys")
    for section, key, hi in (("renewal", "healthy", 1.0), ("renewal", "sick", 1.0),
                             ("later_entry", "year2_to_launch", 2.0)):
        v = a.get(section, {}).get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
            raise RuleFileError(f"{p}: [{section}] {key} = {v!r}; give a number from 0 to "
                                f"{hi:g} (with its source in {key}_source)")
        out[key] = float(v)
        out[f"{key}_source"] = str(a[section].get(f"{key}_source", ""))
    out["year2_sensitivity"] = _year2_grid(p, a["later_entry"].get("year2_sensitivity", []),
                                           out["year2_to_launch"])
    out["year2_sensitivity_source"] = str(a["later_entry"].get("year2_sensitivity_source", ""))
    return out


#: At most this many year-2 sizes in ``[later_entry] year2_sensitivity`` (each is a row
#: of pricing.json and of the report's sentence).
YEAR2_SIZES_MAX = 20


def _year2_grid(p, grid, priced: float) -> list[float]:
    """The year-2 sizes of the sensitivity: ``grid`` checked (a list of at most
    :data:`YEAR2_SIZES_MAX` numbers from 0 to 2; the message quotes the first bad entry,
    not the whole list), with the size ``priced`` added, sorted, duplicates once."""
    from puhui.errors import RuleFileError

    where = f"{p}: [later_entry] year2_sensitivity"
    if not isinstance(grid, list):
        raise RuleFileError(f"{where} is {type(grid).__name__} {str(grid)[:40]!r}; give a list "
                            f"of year-2 sizes, each a number from 0 to 2 (or leave it out)")
    bad = [(i, v) for i, v in enumerate(grid) if isinstance(v, bool)
           or not isinstance(v, (int, float)) or not 0 <= v <= 2.0]
    if bad:
        i, v = bad[0]
        raise RuleFileError(f"{where}: entry {i + 1} of {len(grid)} is {str(v)[:40]!r} "
                            f"({len(bad)} bad in all); give a list of year-2 sizes, each a "
                            f"number from 0 to 2 (or leave it out)")
    sizes = sorted({round(float(v), 4) for v in grid} | {priced})
    if len(sizes) > YEAR2_SIZES_MAX:
        raise RuleFileError(f"{where} has {len(sizes)} distinct sizes with the one priced; give "
                            f"at most {YEAR2_SIZES_MAX} (each is a row of pricing.json and of "
                            f"the report)")
    return sizes


def year2_sensitivity(people: np.ndarray, enrolled: np.ndarray, launch: np.ndarray,
                      basis: dict, cell_cost: np.ndarray, pure_total: float,
                      year2: float) -> dict:
    """Next year's policies and pure premium from a launch year alone had the borrowed
    year-2 size been ``year2`` (the renewal by health kept): the mix of
    :func:`assumed_renewal_mix` at ``year2``, each cell at its cost as priced::

        P(s) = P x [sum_c w_c(s) cost_c / sum_c w_c(s)] / [sum_c w_c(s0) cost_c / sum_c w_c(s0)]

    with ``s0`` the basis's year-2 size and ``P`` the priced pure premium, so ``P(s0) = P``
    exactly. The cells' costs are held at the priced mix's (its claim-free shares, its
    balance and credibility): only who is in the mix moves.

    Two cells (the example of :func:`assumed_renewal_mix`: at 0.8, w = 28 and 24) cost
    100 and 300: at s0 = 0.8 the mix costs (2,800 + 7,200) / 52 = 192.31. At 0.6 the
    year-2 size 39 leaves 3 entrants (k = 3/32: entry 0.0375 and 0.046875), w = 18.25 and
    20.75, cost (1,825 + 6,225) / 39 = 206.41: P(0.6) = P x 206.41 / 192.31.

    >>> b = {"healthy": 0.4, "sick": 0.9, "year2_to_launch": 0.8}
    >>> args = (np.array([[100, 0], [11, 30]]), np.array([[40, 0], [5, 20]]),
    ...         np.array([0.4, 0.5]), b, np.array([100.0, 300.0]), 192.31)
    >>> year2_sensitivity(*args, 0.8)
    {'year2_to_launch': 0.8, 'policies': 52.0, 'renewals': 36.0, 'entrants': 16.0, 'pure_premium': 192.31, 'fills_size': 'yes'}

    At 0.5 the renewals alone (36) exceed 0.5 x 65 = 32.5; at 1.5 (97.5 policies) the
    entrants at their cap (the launch take-up, 24 + 8 = 32) reach 68:

    >>> [(r["policies"], r["fills_size"]) for r in (year2_sensitivity(*args, s) for s in (0.5, 1.5))]
    [(36.0, 'renewals above'), (68.0, 'entry capped')]
    >>> year2_sensitivity(*args, 0.6)["pure_premium"]
    206.41
    """
    def mix(s: float) -> dict:
        return assumed_renewal_mix(people, enrolled, launch, basis["healthy"], basis["sick"], s)

    def cost(w: np.ndarray) -> float:
        return float(np.dot(w, cell_cost) / w.sum()) if w.sum() > 0 else float("nan")

    m, base = mix(year2), cost(mix(basis["year2_to_launch"])["w"])
    pure = pure_total * cost(m["w"]) / base if base > 0 else pure_total
    return {"year2_to_launch": round(float(year2), 4), "policies": round(float(m["w"].sum()), 1),
            "renewals": round(m["renewals"], 1), "entrants": round(m["entrants"], 1),
            "pure_premium": round(pure, 2), "fills_size": _fills(m, year2)}


def _fills(m: dict, year2: float) -> str:
    """Whether the mix ``m`` (:func:`assumed_renewal_mix`) holds ``year2`` x the launch's
    policies: "yes"; "renewals above" (the borrowed renewals alone exceed the size, so
    the mix is larger); "entry capped" (later entry at its cap, the launch take-up,
    falls short, so the mix is smaller)."""
    if m["capped"]:
        return "entry capped"
    if m["renewals"] > year2 * m["launch_policies"] + 1e-9:
        return "renewals above"
    return "yes"


def assumed_renewal_mix(people: np.ndarray, enrolled: np.ndarray, launch: np.ndarray,
                        renew_healthy: float, renew_sick: float,
                        year2_to_launch: float) -> dict:
    """Next year's expected policies per cell from a launch year alone, with borrowed
    renewal by health (``people`` and ``enrolled``: cells x [healthy, sick] at renewal;
    ``launch``: each cell's launch take-up)::

        renewals_c = enrolled_c,healthy r_healthy + enrolled_c,sick r_sick
        entrants   = max(0, year2_to_launch x sum enrolled - sum renewals)
        entry_c    = min(k launch_c, launch_c),  k = entrants / sum (people_c - enrolled_c) launch_c
        E_c        = renewals_c + (people_c - enrolled_c) entry_c

    Returns E (``w``), the cell's renewal (``renew``: renewals / enrolled, the people's
    health mix where none enrolled) and ``entry``, with ``k``, the totals and
    ``capped`` (k above 1: the entrants fall short of the year-2 size).

    Two cells, renewal 0.4 healthy and 0.9 sick, year 2 = 0.8 x launch. A: 100
    healthy, 40 enrolled, take-up 0.4. B: 11 healthy (5 enrolled) and 30 sick (20
    enrolled), take-up 0.5. Renewals 40 x 0.4 = 16 and 5 x 0.4 + 20 x 0.9 = 20; the
    year-2 size 0.8 x 65 = 52 leaves 16 entrants over 60 x 0.4 + 16 x 0.5 = 32, k =
    0.5: entry 0.2 and 0.25, E = 16 + 12 = 28 and 20 + 4 = 24. The sick were 20 of 65
    at launch, 18 + 10 x 0.25 = 20.5 of 52 next year.

    >>> m = assumed_renewal_mix(np.array([[100, 0], [11, 30]]), np.array([[40, 0], [5, 20]]),
    ...                         np.array([0.4, 0.5]), 0.4, 0.9, 0.8)
    >>> m["w"].round(6).tolist(), m["renew"].round(6).tolist(), m["entry"].round(6).tolist()
    ([28.0, 24.0], [0.4, 0.8], [0.2, 0.25])
    """
    people = np.asarray(people, dtype=float)
    enrolled = np.asarray(enrolled, dtype=float)
    launch = np.clip(np.asarray(launch, dtype=float), 0.0, 1.0)
    rates = np.array([renew_healthy, renew_sick])
    renewals = enrolled @ rates
    enr, ppl = enrolled.sum(axis=1), people.sum(axis=1)
    others = ppl - enr
    entrants = max(0.0, year2_to_launch * enr.sum() - renewals.sum())
    room = float(np.dot(others, launch))
    k = entrants / room if room > 0 else 0.0
    capped = k > 1.0
    entry = launch * min(k, 1.0)
    w = renewals + others * entry
    renew = np.divide(renewals, enr, out=np.zeros(len(enr)), where=enr > 0)
    mix = np.divide(people @ rates, ppl, out=np.full(len(ppl), renew_healthy), where=ppl > 0)
    renew = np.where(enr > 0, renew, mix)
    return {"w": w, "renew": renew, "entry": entry, "k": float(k), "capped": bool(capped),
            "launch_policies": float(enr.sum()), "renewals": float(renewals.sum()),
            "entrants": float((others * entry).sum()),
            "sick_share_launch": float(enrolled[:, 1].sum() / enr.sum()) if enr.sum() else None,
            "sick_share_next": float(enrolled[:, 1].sum() * renew_sick
                                     + (people[:, 1] - enrolled[:, 1]) @ entry) / w.sum()
            if w.sum() else None}


def _cell_counts(frame: pd.DataFrame, on: np.ndarray, factors, renewing) -> pd.DataFrame:
    """Enrolled (``successes``) of person-years (``trials``) by cell of ``factors``,
    over the rows ``on``; split by ``_renewing`` when it is given (one pass over the
    frame's columns: no copies of ten million rows)."""
    idx = np.flatnonzero(on)
    y = pd.Series(frame["enrolled"].to_numpy()[idx].astype(int), copy=False)
    keys = [pd.Series(frame[f].array.take(idx), name=f, copy=False)
            if isinstance(frame[f].dtype, pd.CategoricalDtype)
            else pd.Series(frame[f].to_numpy()[idx], name=f, copy=False) for f in factors]
    if renewing is not None:
        keys.append(pd.Series(np.asarray(renewing)[idx], name="_renewing"))
    return (y.groupby(keys, observed=True).agg(successes="sum", trials="size").reset_index())


def _rate(counts: pd.DataFrame) -> float:
    n = float(counts["trials"].sum())
    return float(counts["successes"].sum()) / n if n else float("nan")


class ConstantRate:
    """A rate the same in every cell: what the data give when all or none of the
    trials enrolled (a logit's odds would be infinite)."""

    def __init__(self, rate: float):
        self.rate = float(rate)

    def predict(self, cells: pd.DataFrame) -> np.ndarray:
        return np.full(len(cells), self.rate)


def _fit_or_none(counts: pd.DataFrame, factors):
    """The cells' logit; a :class:`ConstantRate` when all or none enrolled; None when
    there are no trials."""
    n, s = int(counts["trials"].sum()), int(counts["successes"].sum())
    if not n:
        return None
    return LogisticCells(factors).fit_cells(counts) if 0 < s < n else ConstantRate(s / n)


def equilibrium_premium(cost_of_mix, p_ref: float, target_lr: float,
                        lo: float | None = None, hi: float | None = None) -> float | None:
    """The premium that breaks even on the people it attracts: the lowest P with::

        P = cost_of_mix(P) / target_lr

    where ``cost_of_mix(P)`` is the expected benefit per policy of the mix the price P
    draws. Searched on a log grid from p_ref/100 to 100 p_ref (or ``lo``..``hi``) for
    the first change of sign of cost/target - P, then solved by Brent's method. None
    when there is no such price in the range (the spiral ends with nobody insured).

    Two cells, one healthy (cost 50, 100 people, take-up 1/(1+(P/100)^2)), one sick
    (cost 500, 10 people, always in), target 1. At P = 200 the healthy in are
    100 / 5 = 20, and the mix costs (20 x 50 + 10 x 500) / 30 = 200 = P; below it the
    mix costs more than the price (at P = 100: 7,500 / 60 = 125).

    >>> def mix_cost(p):
    ...     h = 100 / (1 + (p / 100) ** 2)
    ...     return (h * 50 + 10 * 500) / (h + 10)
    >>> round(equilibrium_premium(mix_cost, 100.0, 1.0), 4)
    200.0
    """
    from scipy.optimize import brentq

    lo = lo or p_ref / 100
    hi = hi or p_ref * 100
    grid = np.geomspace(lo, hi, 200)

    def gap(p):
        return cost_of_mix(p) / target_lr - p

    values = [gap(p) for p in grid]
    for a, b, ga, gb in zip(grid[:-1], grid[1:], values[:-1], values[1:]):
        if ga == 0:
            return float(a)
        if ga > 0 > gb:
            return float(brentq(gap, a, b, xtol=1e-6))
    return None


def paid_under_own_terms(product, data, exp: pd.DataFrame, last: int | None = None
                         ) -> tuple[np.ndarray, list[str]]:
    """Per person-year of the experience table ``exp`` (fen): what the person's policy
    of that year paid under its **own** product's terms, where the data's policy is of
    another product whose file is in ``actuarial/products/`` (the 2024 policies of a
    2025 pricing ran under 2024's 15,000 deductible, not 2025's 12,000); elsewhere the
    priced product's as-if payout. Each policy is paid at the deductible of its own
    claim-free years (:func:`policy_claim_free_years`), the years judged oldest first on
    what the earlier policies paid this way, as a ledger that ran each year's batch
    would (a 2024 policy at 14,000 after two claim-free years may pay where 15,000 would
    not, and then 2025 starts again at 0). This is what claim-free years are judged on:
    a policy that paid nothing under its own terms was claim-free, whatever next year's
    terms would have paid. ``last``: judge the years up to it only (later rows keep the
    priced product's as-if payout: a year's own claim-free years read only the years
    before it). Returns the payouts and notes (products not found).

    Within :func:`puhui.pricing.experience.experience_shared` (``puhui price`` with its
    backtest) the years are judged once on the shared data
    (:func:`_shared_own_paid`): the backtest's price, its realised cost and the price
    judged 2024 three times at ten million person-years."""
    got = _shared_own_paid(product, data, exp, last)
    if got is not None:
        return got
    paid, notes, _ = _judged(product, data, exp, last)
    return paid, notes


def _own_products(product, pol: pd.DataFrame) -> tuple[dict, list[str]]:
    """The products of ``pol``'s ids found in the basis by id (and ``product``), and
    the notes of those not found."""
    from puhui.basis import actuarial_dir
    from puhui.products.model import load_product

    notes, products = [], {product.id: product}
    # the distinct ids (a categorical's without a string a policy)
    for pid in sorted(set(str(v) for v in pol["product_id"].unique()) - {product.id}):
        path = actuarial_dir() / "products" / f"{pid}.toml"
        if not (_plain_id(pid) and path.is_file()):
            notes.append(f"policies of {pid}: no product file of that id in the actuarial "
                         f"basis, so their claim-free years are judged under "
                         f"{product.id}'s terms")
            continue
        products[pid] = load_product(path)
    return products, notes


def _as_if_paid(product, exp: pd.DataFrame) -> np.ndarray:
    return sum(exp[f"payout_{b.id}"].to_numpy() for b in product.benefits).astype("int64")


def _judged(product, data, exp: pd.DataFrame, last: int | None = None, resume=None
            ) -> tuple[np.ndarray, list[str], int]:
    """:func:`paid_under_own_terms`'s work: (payouts, notes, the year judged through).
    ``resume``: (payouts judged through a year, that year) from an earlier call on the
    same data and table: the years after it are judged on from there (each year reads
    only the payouts and the data; the state after a year is its payouts)."""
    paid = (resume[0].copy() if resume is not None else _as_if_paid(product, exp))
    after = resume[1] if resume is not None else None
    years = sorted(int(y) for y in exp["year"].unique())
    pol = data.policies
    pol = pol[pol["start_date"].dt.year.isin(set(years))]
    products, notes = _own_products(product, pol)
    through = (years[-1] if years else 0) if last is None else last
    if after is not None and after >= through:
        return paid, notes, through                  # judged already
    ids = pol["product_id"].astype(str)
    rows_of = _policy_rows(exp, pol)
    for y in (y for y in years if (last is None or y <= last)
              and (after is None or y > after)):
        of_year = (pol["start_date"].dt.year == y).to_numpy()
        if not of_year.any():
            continue
        cfy = None
        for pid in sorted(set(ids[of_year]) & set(products)):
            terms = products[pid]
            steps = first_claim_free_step(terms) is not None
            if pid == product.id and not steps:
                continue                                 # the as-if payout stands
            if cfy is None and steps:
                cfy = policy_claim_free_years(exp, data.policies, paid)
            mine = of_year & (ids == pid).to_numpy()
            rows = rows_of[mine]
            ok = rows >= 0
            if pid == product.id:                        # re-pay only the steps' rows
                at = rows[ok]
                at = at[cfy[at] >= first_claim_free_step(product)]
                if len(at):
                    got = repay_with_claim_free_years(product, data, exp, y, at, cfy[at])
                    paid[at] = sum(got.values())
                continue
            years_of = cfy[np.maximum(rows, 0)] if cfy is not None else np.zeros(len(rows))
            policies = pol[mine].assign(claim_free_years=np.where(ok, years_of, 0)
                                        .astype("int64"))
            per_policy = _paid_per_policy(terms, data, policies)
            paid[np.unique(rows[ok])] = 0              # a year split in two policies: summed
            np.add.at(paid, rows[ok], per_policy[ok].astype("int64"))
    return paid, notes, through


def _shared_own_paid(product, data, exp: pd.DataFrame, last: int | None):
    """:func:`paid_under_own_terms` from the judging kept by the open
    :func:`puhui.pricing.experience.experience_shared`, or None (then computed as
    usual). Shared:

    - on the shared data with a table of its experience (the same arrays: the backtest's
      realised cost, the price) whose as-if payouts are the experience's (equal arrays):
      the years up to ``last`` judged once and kept, a later call judging on from the
      last kept year (the price's 2025 after the realised cost's 2024);
    - on the data cut before a year (the backtest's price,
      :func:`puhui.pricing.experience.note_cut`) with the rows of the years before it:
      the shared data judged through the year before the cut, its rows of the earlier
      years. Exact when every policy of the cut ends before the cut (so a policy's
      settlements are the same in both) and the policies file's claim-free years are
      filled for all policies or none (so whether a product's are given does not
      depend on the later years' policies); otherwise not shared.

    The product counts by its terms, not its policy period (as the shared experience:
    the backtest's product moved to its year; a policy of the priced product's id is
    re-paid under notional policies of its calendar year, other products' under their
    own files). Every year is judged on exactly the payouts and data it is judged on
    alone, so the figures are the same (tests/test_price_speed18.py)."""
    from puhui.pricing import experience as ex

    sh = ex._SHARED
    if sh is None or sh.key[0] != ex.terms_key(product):
        return None                  # not the product the shared experience is of
    full = sh.data
    memo = sh.own_paid
    if ex._frames(data) == ex._frames(full):
        if not isinstance(exp["psn_no"].dtype, pd.CategoricalDtype):
            return None
        if memo is not None and not (
                len(exp) == len(memo["year"])
                and np.shares_memory(exp["year"].to_numpy(), memo["year"])
                and np.shares_memory(exp["psn_no"].cat.codes.to_numpy(), memo["who"])):
            return None                  # not the table the kept judging was made on
        as_if = _as_if_paid(product, exp)
        if memo is not None and not (memo["product"] == ex.terms_key(product)
                                     and np.array_equal(as_if, memo["as_if"])):
            return None
        table, cut = exp, None
        want = last
    else:
        cut = sh.cut_of(data)
        if (cut is None or sh.tables is None
                or memo is not None and memo["product"] != ex.terms_key(product)):
            return None
        if last is not None and last < cut - 1:
            return None
        pol = data.policies
        if len(pol) and not (pol["end_date"].max() < pd.Timestamp(cut, 1, 1)):
            return None
        given = full.policies.get("claim_free_years")
        if given is not None and 0 < int(given.notna().sum()) < len(given):
            return None
        table = sh.tables[0]
        rows = np.flatnonzero(table["year"].to_numpy() < cut)
        if len(rows) != len(exp):
            return None
        as_if = _as_if_paid(product, table)
        if not np.array_equal(as_if[rows], _as_if_paid(product, exp)):
            return None
        want = cut - 1
    if memo is not None and (want is None or memo["through"] <= want):
        paid, notes, through = _judged(product, full, table, want,
                                       resume=(memo["paid"], memo["through"]))
    elif memo is None:
        paid, notes, through = _judged(product, full, table, want)
    else:
        return None
    if sh.keep:
        sh.own_paid = {"product": ex.terms_key(product), "year": table["year"].to_numpy(),
                       "who": table["psn_no"].cat.codes.to_numpy(), "as_if": as_if,
                       "paid": paid.copy(), "through": through}
    else:
        sh.own_paid = None                      # the last user: nothing kept
    if cut is None:
        return paid, notes
    y = data.policies["start_date"].dt.year
    years = set(int(v) for v in np.unique(exp["year"].to_numpy()))
    _, cut_notes = _own_products(product, data.policies[y.isin(years).to_numpy()])
    return paid[rows], cut_notes


def _given_claim_free_years(pol: pd.DataFrame) -> np.ndarray:
    """Per policy: does the policies file give its claim-free years? Yes where the
    ``claim_free_years`` column is filled for every policy of its product (the test
    ``claims.batch.with_claim_free_years`` applies to a product's policies)."""
    if "claim_free_years" not in pol.columns or not len(pol):
        return np.zeros(len(pol), dtype=bool)
    filled = pol["claim_free_years"].notna()
    return filled.groupby(pol["product_id"].astype(str).to_numpy()).transform("all").to_numpy(
        dtype=bool)


def first_claim_free_step(product) -> int | None:
    """The fewest claim-free years any of ``product``'s deductibles steps down after
    (None: no steps); a policy with fewer pays as a first-year one."""
    from puhui.pricing.benefit_cost import claim_free_steps_of

    years = [y for b in product.benefits for y, _ in claim_free_steps_of(b.raw)]
    return min(years) if years else None


def _policy_rows(exp: pd.DataFrame, pol: pd.DataFrame) -> np.ndarray:
    """Each policy's row in ``exp`` (its person in its start year), -1 where none."""
    from puhui.pricing.experience import person_ids, person_rows, year_person_key

    index = person_ids(exp)
    row_key = pd.Series(np.arange(len(exp)), index=year_person_key(
        exp["year"].to_numpy(), person_rows(index, exp["psn_no"])))
    row_key = row_key[~row_key.index.duplicated()]
    key = year_person_key(pol["start_date"].dt.year.to_numpy(), person_rows(index, pol["psn_no"]))
    return row_key.reindex(key).fillna(-1).to_numpy().astype("int64")


def _paid_per_policy(terms, data, policies: pd.DataFrame) -> np.ndarray:
    """Net payout (fen) of each of ``policies`` under ``terms``: the calculator on
    their people's effective settlements."""
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.quantities import LineMatcher
    from puhui.pricing.experience import effective_mask, has_lines, may_pay

    st = data.settlements
    # only what the calculator can pay: the policyholders' settlements within the
    # policies' dates on which some benefit of ``terms`` may have an eligible amount
    # (:func:`~puhui.pricing.experience.may_pay`; the others pay nothing and move no
    # accumulator, as in the experience)
    t = st["setl_time"]
    on = (effective_mask(st) & _held_by(st["psn_no"], policies["psn_no"])
          & (t >= policies["start_date"].min()).to_numpy()
          & (t < policies["end_date"].max() + pd.Timedelta(days=1)).to_numpy())
    st = st[on]
    lines = data.lines
    if lines is not None:
        lines = lines[lines["setl_id"].isin(st["setl_id"])]
    st = st[may_pay(terms, st, has_lines(st, lines))]
    matcher = LineMatcher(terms)
    parts = max(1, -(-len(st) // PAY_PART_SETTLEMENTS))
    if parts == 1:
        agg = adjudicate(terms, st, policies.reset_index(drop=True), lines,
                         matcher=matcher).by_policy()
        total = agg[[c for c in agg.columns if c.startswith("payout_")]].sum(axis=1)
        return total.reindex(policies["policy_no"].to_numpy(), fill_value=0).to_numpy()
    # parts of the people, each person's policies and settlements in one part (a policy
    # pays its own person's settlements, so the parts' payouts are the whole's)
    pol_who, st_who = _person_codes(policies["psn_no"], st["psn_no"])
    top = int(max(pol_who.max(initial=0), st_who.max(initial=0))) + 1
    pol_part, st_part = pol_who * parts // top, st_who * parts // top
    totals = []
    for k in range(parts):
        mine = pol_part == k
        if not mine.any():
            continue
        st_k = st[st_part == k]
        lines_k = lines[lines["setl_id"].isin(st_k["setl_id"])] if lines is not None else None
        agg = adjudicate(terms, st_k, policies[mine].reset_index(drop=True), lines_k,
                         matcher=matcher).by_policy()
        totals.append(agg[[c for c in agg.columns if c.startswith("payout_")]].sum(axis=1))
    total = pd.concat(totals) if totals else pd.Series(dtype="int64")
    return total.reindex(policies["policy_no"].to_numpy(), fill_value=0).to_numpy()


#: Settlements per part of the people in :func:`_paid_per_policy`: the calculator's
#: working arrays are a part's (at ten million person-years the past policies' own
#: terms took some 2 GB more than the rest of the price at once).
PAY_PART_SETTLEMENTS = 2_000_000


def _person_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One integer per person for two columns of ids (codes of categoricals over the
    same ids, else a joint factorisation of the text; -1 for a missing id).

    >>> a, b = _person_codes(pd.Series(["x", "y"]), pd.Series(["y", "z", "x"]))
    >>> a.tolist(), b.tolist()
    ([0, 1], [1, 2, 0])
    """
    if (isinstance(a.dtype, pd.CategoricalDtype) and isinstance(b.dtype, pd.CategoricalDtype)
            and a.cat.categories.equals(b.cat.categories)):
        return (a.cat.codes.to_numpy().astype("int64"),
                b.cat.codes.to_numpy().astype("int64"))
    codes, _ = pd.factorize(np.concatenate([a.astype(str).to_numpy(dtype=object),
                                            b.astype(str).to_numpy(dtype=object)]))
    return codes[:len(a)].astype("int64"), codes[len(a):].astype("int64")


def repay_with_claim_free_years(product, data, frame: pd.DataFrame, year: int, rows,
                                years) -> dict:
    """The payouts (fen) per benefit of ``frame``'s ``rows`` (person-years of ``year``)
    under notional policies of ``product`` carrying their claim-free ``years``: the
    calculator on those people's settlements of the year, as the experience's notional
    policies (:func:`puhui.pricing.experience.notional_policies`: a new entrant keeps
    the waiting period even when a policies file gives it claim-free years) but with the
    years set, so a deductible that steps down after claim-free years is the policy's
    own."""
    from puhui.benefits.calculator import adjudicate
    from puhui.benefits.quantities import LineMatcher
    from puhui.pricing.experience import (
        effective_settlements,
        has_lines,
        may_pay,
        notional_policies,
    )

    rows = np.asarray(rows)
    st = effective_settlements(data.settlements)
    st = st[(st["setl_time"].dt.year == year).to_numpy()
            & _held_by(st["psn_no"], frame["psn_no"].iloc[rows])]
    lines = data.lines
    if lines is not None:
        lines = lines[lines["setl_id"].isin(st["setl_id"])]
    st = st[may_pay(product, st, has_lines(st, lines))]
    notional = notional_policies(frame, rows, product.id, claim_free_years=years)
    agg = adjudicate(product, st, notional, lines, matcher=LineMatcher(product)).by_policy()
    out = {}
    for b in product.benefits:
        col = f"payout_{b.id}"
        out[col] = (agg[col].reindex(rows, fill_value=0).to_numpy() if col in agg.columns
                    else np.zeros(len(rows), dtype="int64"))
    return out


def _held_by(psn_no: pd.Series, who: pd.Series) -> np.ndarray:
    """True for the rows of ``psn_no`` whose person is one of ``who``'s: compared as
    integer codes where both are categoricals over the same ids (the persons'; no
    string made per settlement), else as text.

    >>> ids = pd.CategoricalDtype(pd.Index(["a", "b", "c"]))
    >>> _held_by(pd.Series(["a", "c", "b"], dtype=ids), pd.Series(["c"], dtype=ids)).tolist()
    [False, True, False]
    >>> _held_by(pd.Series(["a", "c"]), pd.Series(["c"], dtype=ids)).tolist()
    [False, True]
    """
    if (isinstance(psn_no.dtype, pd.CategoricalDtype) and isinstance(who.dtype, pd.CategoricalDtype)
            and psn_no.cat.categories.equals(who.cat.categories)):
        mine = np.zeros(len(psn_no.cat.categories) + 1, dtype=bool)
        mine[who.cat.codes.to_numpy()] = True          # a missing id (-1) marks the last
        mine[-1] = False
        return mine[psn_no.cat.codes.to_numpy()]
    return psn_no.astype(str).isin(set(who.astype(str))).to_numpy()


def _plain_id(pid: str) -> bool:
    """A product id that names a file in actuarial/products/ and nothing else."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", pid)) and ".." not in pid


def next_claim_free_years(frame: pd.DataFrame, policies: pd.DataFrame,
                          paid: np.ndarray) -> np.ndarray:
    """Claim-free years each person-year's policyholder would have at renewal next
    year: (years before this year's policy, :func:`policy_claim_free_years`) + 1 when
    this year paid nothing, else 0; 0 for people not enrolled.

    ``paid``: what each row's policy paid (fen), under its own product's terms where
    known (:func:`paid_under_own_terms`); policies before the data years are unknown (a
    chain stops there).

    >>> fr = pd.DataFrame({"psn_no": ["a", "a", "b", "b"], "year": [2024, 2025] * 2,
    ...                    "enrolled": [True, True, True, True]})
    >>> pol = pd.DataFrame({"policy_no": ["a4", "a5", "b4", "b5"], "psn_no": ["a", "a", "b", "b"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2025-01-01"] * 2),
    ...     "end_date": pd.to_datetime(["2024-12-31", "2025-12-31"] * 2)})
    >>> next_claim_free_years(fr, pol, np.array([0, 0, 500, 0])).tolist()
    [1, 2, 0, 1]
    """
    before = policy_claim_free_years(frame, policies, paid)
    enrolled = frame["enrolled"].to_numpy(dtype=bool)
    return np.where(enrolled & (np.asarray(paid) <= 0), before + 1, 0).astype("int64")


def policy_claim_free_years(frame: pd.DataFrame, policies: pd.DataFrame,
                            paid: np.ndarray) -> np.ndarray:
    """Claim-free years of each person-year's own policy (the years in a row just
    before it that paid nothing, :func:`puhui.benefits.claim_free.claim_free_years`,
    the rule the claims batch applies), judged on ``paid`` (fen per row, under each
    policy's own terms); 0 for people not enrolled. The deductible a renewal year's
    policy actually had. Where a policies file's ``claim_free_years`` column is filled for
    every policy of a product, that product's policies take it as it is, as the claims
    batch paying that product does (:func:`_given_claim_free_years`).

    >>> fr = pd.DataFrame({"psn_no": ["a", "a", "b", "b"], "year": [2024, 2025] * 2,
    ...                    "enrolled": [True, True, True, True]})
    >>> pol = pd.DataFrame({"policy_no": ["a4", "a5", "b4", "b5"], "psn_no": ["a", "a", "b", "b"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2025-01-01"] * 2),
    ...     "end_date": pd.to_datetime(["2024-12-31", "2025-12-31"] * 2)})
    >>> policy_claim_free_years(fr, pol, np.array([0, 0, 500, 0])).tolist()
    [0, 1, 0, 0]
    """
    from puhui.benefits.claim_free import claim_free_years
    from puhui.pricing.experience import person_ids, person_rows, year_person_key

    years = set(int(y) for y in frame["year"].unique())
    pol = policies[policies["start_date"].dt.year.isin(years)].reset_index(drop=True)
    enrolled = np.flatnonzero(frame["enrolled"].to_numpy(dtype=bool))   # others: 0
    paid = np.asarray(paid)[enrolled]
    given = _given_claim_free_years(pol)
    # people as integers: positions in the frame's ids (its categories when categorical)
    index = person_ids(frame)
    key = year_person_key(frame["year"].to_numpy()[enrolled],
                          person_rows(index, frame["psn_no"].iloc[enrolled]))
    pkey = year_person_key(pol["start_date"].dt.year.to_numpy(),
                           person_rows(index, pol["psn_no"]))
    paid_row = pd.Series(paid, index=key)
    paid_row = paid_row[~paid_row.index.duplicated()]
    pol_paid = pd.Series(paid_row.reindex(pkey, fill_value=0).to_numpy(),
                         index=pol["policy_no"].astype(str).to_numpy())
    years_of = claim_free_years(pol, pol_paid)
    if given.any():  # the policies file's own count, as the claims batch takes it ("data")
        years_of = np.where(given, pd.to_numeric(pol["claim_free_years"], errors="coerce")
                            .fillna(0).to_numpy(), years_of).astype("int64")
    cfy = pd.Series(years_of, index=pkey)
    cfy = cfy[~cfy.index.duplicated()]
    out = np.zeros(len(frame), dtype="int64")
    out[enrolled] = cfy.reindex(key, fill_value=0).to_numpy()
    return out


def claim_free_shares(frame_last: pd.DataFrame, next_years: np.ndarray, cells: pd.DataFrame,
                      by: list[str], steps: tuple[tuple[int, float], ...],
                      renewals: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Share of each cell's expected policies next year at each claim-free step::

        a_kc = renewals_c x (share of cell c's enrolled with next years in step k) / expected_c

    step k holds years_k <= years < years_(k+1). Entrants are at the first-year
    deductible. Returns cells x steps."""
    out = np.zeros((len(cells), len(steps)))
    if not steps:
        return out
    enr = frame_last["enrolled"].to_numpy(dtype=bool)
    f = frame_last.loc[enr, by].copy()
    ny = np.asarray(next_years)[enr]
    bounds = [y for y, _ in steps] + [10**9]
    for k in range(len(steps)):
        f[f"s{k}"] = ((ny >= bounds[k]) & (ny < bounds[k + 1])).astype(float)
    f["n"] = 1.0
    g = f.groupby(by, observed=True)[[*(f"s{k}" for k in range(len(steps))), "n"]].sum()
    g = cells[by].merge(g.reset_index(), on=by, how="left")
    cols = [*(f"s{k}" for k in range(len(steps))), "n"]
    g[cols] = g[cols].fillna(0.0)
    n = g["n"].to_numpy()
    for k in range(len(steps)):
        share = np.divide(g[f"s{k}"].to_numpy(), n, out=np.zeros(len(n)), where=n > 0)
        out[:, k] = np.divide(renewals * share, expected, out=np.zeros(len(n)),
                              where=expected > 0)
    return np.clip(out, 0.0, 1.0)


def _shift(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return 1 / (1 + np.exp(-(np.log(p / (1 - p)) + s)))


def healthy(cells: pd.DataFrame) -> np.ndarray:
    """No pre-existing condition and no stay last year."""
    return ((cells["preexisting"].astype(int) == 0)
            & (cells["prior_stay"].astype(int) == 0)).to_numpy()


def spiral(model: EnrolmentModel, cells: pd.DataFrame, people: np.ndarray,
           enrolled: np.ndarray, cost: np.ndarray, p_ref: float, target_lr: float,
           trend: float, beta_healthy: float, beta_other: float, years: int = 5,
           fixed_price: float | None = None, start_price: float | None = None) -> pd.DataFrame:
    """Five-year projection (see the module docstring). ``cost``: expected benefit per
    policy per cell in the first projected year (trended to it); ``trend``: yearly
    claims inflation; ``p_ref``: the price the data's enrolment happened at. With
    ``fixed_price`` the price is held (no repricing) to show the loss ratio drift; with
    ``start_price`` the first year is sold at it (the equilibrium premium, say) instead
    of the break-even premium of the status-quo mix."""
    well = healthy(cells)
    beta = np.where(well, beta_healthy, beta_other)
    pre = cells["preexisting"].astype(int).to_numpy() == 1
    rows = []
    # year 1 is priced on the mix the status quo leads to
    probs = model.probabilities(cells)
    mix = model.transition(cells, enrolled, people, probs=probs)
    price = fixed_price or start_price or float(np.dot(mix, cost) / mix.sum() / target_lr)
    state = enrolled
    for t in range(1, years + 1):
        shift = beta * np.log(price / p_ref)
        state = model.transition(cells, state, people, shift, probs=probs)
        c_t = cost * (1 + trend) ** (t - 1)
        per_policy = float(np.dot(state, c_t) / state.sum())
        rows.append({"year": t, "premium": price, "enrolled": float(state.sum()),
                     "take_up": float(state.sum() / people.sum()),
                     "share_preexisting": float(state[pre].sum() / state.sum()),
                     "share_healthy": float(state[well].sum() / state.sum()),
                     "cost_per_policy": per_policy, "loss_ratio": per_policy / price})
        if fixed_price is None:
            price = per_policy * (1 + trend) / target_lr
    return pd.DataFrame(rows)
