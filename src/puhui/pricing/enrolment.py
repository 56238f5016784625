"""Who enrols: take-up and renewal, and the death-spiral projection.

From the person-years of the experience table (who held a policy each year), two
logistic GLMs on rating cells (binomial counts by cell are sufficient statistics, so the
cell fit is the person-level fit):

    renewal:  P(enrolled in t | enrolled in t-1)         among people alive in both
    entry:    P(enrolled in t | not enrolled in t-1)     (the first data year counts as
                                                           entry for everyone)

The year after the data, cell c is expected to hold::

    E_c = enrolled_c renew_c + (people_c - enrolled_c) entry_c

and the price is for that mix, not for the population. The **death-spiral projection**
runs this forward with a price response: a premium P moves each cell's odds of joining
or renewing by ``beta_c log(P / P_ref)``, with ``beta`` more negative for healthy cells
(no pre-existing condition, no stay last year) than for others (an assumption, given in
the assumptions file with scenarios). Each year's price is set from the previous year's
mix (as an actuary prices on last year's experience), the mix responds to that price,
and the loss ratio shows the result. The population is held fixed (no ageing, deaths
or migration in the projection): the spiral shows the selection effect alone.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

ENROLMENT_FACTORS = ("age_band", "gender", "insutype", "preexisting", "prior_stay")


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
        import statsmodels.api as sm
        import statsmodels.formula.api as smf

        cells = cells.reset_index(drop=True)
        # only the levels the cells have (a product for ages 60-100 has no younger age
        # bands; an empty reference level would make the design singular)
        self.levels_ = {}
        for f in self.factors:
            if isinstance(cells[f].dtype, pd.CategoricalDtype):
                cells[f] = cells[f].cat.remove_unused_categories()
                self.levels_[f] = cells[f].cat.categories
        cells["share"] = cells["successes"] / cells["trials"]
        rhs = " + ".join(f"C({f})" for f in self.factors) or "1"
        # proportions weighted by their trials: the binomial likelihood of the counts
        model = smf.glm(f"share ~ {rhs}", data=cells, family=sm.families.Binomial(),
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
    """Renewal and entry probabilities by cell (see the module docstring).

    Attributes (after ``fit``): renewal_, entry_ (:class:`LogisticCells`; ``renewal_``
    is None with a single data year), last_year_, and the summary rates.
    """

    def __init__(self, factors=ENROLMENT_FACTORS):
        self.factors = tuple(factors)

    def fit(self, frame: pd.DataFrame) -> "EnrolmentModel":
        # renewals (enrolled the year before) and entries (not, or first data year),
        # counted by cell in one pass over the frame (no copies of ten million rows)
        self.last_year_ = int(frame["year"].max())
        renewing = previous_enrolment(frame) == 1
        y = pd.Series(frame["enrolled"].to_numpy().astype(int), copy=False)
        keys = [pd.Series(frame[f].array, name=f, copy=False) for f in self.factors]
        by = (y.groupby([*keys, pd.Series(renewing, name="_renewing")], observed=True)
              .agg(successes="sum", trials="size").reset_index())
        renew = by[by["_renewing"]].drop(columns="_renewing")
        entry = by[~by["_renewing"]].drop(columns="_renewing")
        n_renew, s_renew = int(renew["trials"].sum()), int(renew["successes"].sum())
        self.renewal_ = (LogisticCells(self.factors).fit_cells(renew)
                         if n_renew and 0 < s_renew < n_renew else None)
        self.entry_ = LogisticCells(self.factors).fit_cells(entry)
        self.renewal_rate_ = s_renew / n_renew if n_renew else float("nan")
        self.entry_rate_ = float(entry["successes"].sum()) / float(entry["trials"].sum())
        return self

    def transition(self, cells: pd.DataFrame, enrolled: np.ndarray, people: np.ndarray,
                   shift: np.ndarray | None = None) -> np.ndarray:
        """Expected enrolled per cell next year, from this year's ``enrolled`` of
        ``people``; ``shift`` adds to each cell's log-odds (the price response)."""
        s = np.zeros(len(cells)) if shift is None else shift
        entry = _shift(self.entry_.predict(cells), s)
        if self.renewal_ is None:
            return people * entry
        renew = _shift(self.renewal_.predict(cells), s)
        return enrolled * renew + (people - enrolled) * entry


    def renewals(self, cells: pd.DataFrame, enrolled: np.ndarray) -> np.ndarray:
        """Expected renewing policies per cell next year (``enrolled`` x renew_c; all of
        them when the data has no renewal year)."""
        if self.renewal_ is None:
            return np.zeros(len(cells))
        return enrolled * self.renewal_.predict(cells)


def next_claim_free_years(frame: pd.DataFrame, policies: pd.DataFrame,
                          paid: np.ndarray) -> np.ndarray:
    """Claim-free years each person-year's policyholder would have at renewal next
    year: (years before this year's policy, :func:`puhui.benefits.claim_free.claim_free_years`)
    + 1 when this year paid nothing, else 0; 0 for people not enrolled.

    ``paid``: the product's as-if payout per row of ``frame`` (fen): the priced product's
    calculator stands in for what the policies of the data years actually paid, and
    policies before the data years are unknown (a chain stops there).

    >>> fr = pd.DataFrame({"psn_no": ["a", "a", "b", "b"], "year": [2024, 2025] * 2,
    ...                    "enrolled": [True, True, True, True]})
    >>> pol = pd.DataFrame({"policy_no": ["a4", "a5", "b4", "b5"], "psn_no": ["a", "a", "b", "b"],
    ...     "start_date": pd.to_datetime(["2024-01-01", "2025-01-01"] * 2),
    ...     "end_date": pd.to_datetime(["2024-12-31", "2025-12-31"] * 2)})
    >>> next_claim_free_years(fr, pol, np.array([0, 0, 500, 0])).tolist()
    [1, 2, 0, 1]
    """
    from puhui.benefits.claim_free import claim_free_years
    from puhui.pricing.experience import person_ids, person_rows, year_person_key

    years = set(int(y) for y in frame["year"].unique())
    pol = policies[policies["start_date"].dt.year.isin(years)].reset_index(drop=True)
    enrolled = np.flatnonzero(frame["enrolled"].to_numpy(dtype=bool))   # others: 0
    paid = np.asarray(paid)[enrolled]
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
    cfy = pd.Series(claim_free_years(pol, pol_paid), index=pkey)
    cfy = cfy[~cfy.index.duplicated()]
    before = cfy.reindex(key, fill_value=0).to_numpy()
    out = np.zeros(len(frame), dtype="int64")
    out[enrolled] = np.where(paid <= 0, before + 1, 0)
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
           fixed_price: float | None = None) -> pd.DataFrame:
    """Five-year projection (see the module docstring). ``cost``: expected benefit per
    policy per cell in the first projected year (trended to it); ``trend``: yearly
    claims inflation; ``p_ref``: the price the data's enrolment happened at. With
    ``fixed_price`` the price is held (no repricing) to show the loss ratio drift."""
    well = healthy(cells)
    beta = np.where(well, beta_healthy, beta_other)
    pre = cells["preexisting"].astype(int).to_numpy() == 1
    rows = []
    # year 1 is priced on the mix the status quo leads to
    mix = model.transition(cells, enrolled, people)
    price = fixed_price or float(np.dot(mix, cost) / mix.sum() / target_lr)
    state = enrolled
    for t in range(1, years + 1):
        shift = beta * np.log(price / p_ref)
        state = model.transition(cells, state, people, shift)
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
