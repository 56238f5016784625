"""The expected annual cost of a benefit per rating cell, from frequency and severity.

For each *pricing group* of a product (one benefit, or benefits that share an annual
deductible or limit and so must be priced on their joint annual sum):

    N_kc ~ NB(mean lambda_kc, size 1 / alpha_k)  events of kind k a year (Poisson GLM
                                                 on cells, NB2 dispersion by moments)
    X_k  = mu_kc Z_k                             eligible amount of one event (gamma GLM
                                                 for mu_kc; Z_k spliced empirical + GPD)
    S    = sum_k (X_k1 + ... + X_kN_kc)           the annual sum, kinds independent
    B   = min(r_c (S - d)+, L)                   the annual benefit (r_c the pre-existing
                                                 ratio in pre-existing cells)

and E[B], E[B^2] per cell come from the discretised compound distribution
(:func:`puhui.pricing.aggregate.annual_benefit_moments`). Money here is in yuan, as
floats: pricing estimates, it does not pay.

Rating factors are chosen by the data: a factor enters only when each of its levels has
at least ``min_level_events`` events (30 by default: a level with fewer has too little
credibility to carry its own relativity) (for age, the coarse ``age_group`` is tried when the
bands are too thin), so sparse benefits (proton, CAR-T) get an intercept-only model
rather than a fit that runs to minus infinity on an empty level.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.pricing.aggregate import annual_benefit_moments_of
from puhui.pricing.experience import person_year_rows
from puhui.pricing.frequency import PoissonFrequency, banded
from puhui.pricing.loglinear import at_level, design_matrix
from puhui.pricing.severity import GammaSeverity
from puhui.pricing.tail import SplicedSeverity
from puhui.products.model import Product

#: Rating factors in order of preference (all categorical).
RATING_FACTORS = ("age_band", "gender", "insutype", "retired", "preexisting", "prior_stay")
#: A launch-year fit's factor that is not a rating factor (``[launch_year] prevalent =
#: "cohort"``, :mod:`puhui.pricing.launch_flags`): 1 for the launch year's enrolled, 0
#: for the others. It is fitted, then held at 1 and folded into the intercept
#: (:meth:`BenefitCostModel.at_level`), so the price reads the launch cohort's level.
LAUNCH_COHORT = "launch_cohort"
#: Coarse age groups (lower bounds) used when age bands are too thin; each is a union
#: of whole age bands (puhui.pricing.frequency.AGE_BANDS), so the two nest.
AGE_GROUPS = (0, 41, 61, 81)


def age_group(age) -> pd.Categorical:
    """0-40, 41-60, 61-80, 81+.

    >>> list(age_group([3, 41, 80, 99]))
    ['0-40', '41-60', '61-80', '81+']
    """
    return banded(age, AGE_GROUPS)


@dataclass(frozen=True)
class GroupTerms:
    """The annual terms a pricing group's joint sum is priced with (yuan)."""

    id: str
    benefits: tuple[str, ...]
    deductible: float
    ratio: float
    preexisting_ratio: float
    limit: float
    note: str = ""
    #: lower deductibles after claim-free years: ((years, deductible), ...), ascending years
    claim_free_steps: tuple[tuple[int, float], ...] = ()


def _amount(raw, key) -> tuple[float, str | None]:
    v = raw.get(key)
    if v is None:
        return (0.0 if key == "deductible" else np.inf), None
    if isinstance(v, dict):
        return float(v["amount"]), v.get("shared")
    return float(v), None


def claim_free_steps_of(raw) -> tuple[tuple[int, float], ...]:
    v = raw.get("deductible")
    if not isinstance(v, dict):
        return ()
    return tuple(sorted((int(s["years"]), float(s["amount"])) for s in v.get("claim_free", [])))


def pricing_groups(product: Product, weights: dict[str, float] | None = None) -> list[GroupTerms]:
    """Benefits joined by a shared deductible or limit form one group.

    A single benefit's terms are its own, with its claim-free deductible steps (priced
    by :func:`step_moments` with the enrolled mix's claim-free years). A group of several
    benefits is priced on their joint sum with the shared deductible, the
    eligible-weighted ratio (``weights``: eligible amounts by benefit) and the shared
    limit, or the sum of the members' limits when they are separate; this is an
    approximation and the group's ``note`` says so.
    """
    bens = product.benefits
    parent = {b.id: b.id for b in bens}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    owner: dict[str, str] = {}
    for b in bens:
        for key in ("deductible", "limit"):
            _, shared = _amount(b.raw, key)
            if shared:
                name = f"{key}:{shared}"
                if name in owner:
                    parent[find(b.id)] = find(owner[name])
                else:
                    owner[name] = b.id
    groups: dict[str, list] = {}
    for b in bens:
        groups.setdefault(find(b.id), []).append(b)
    out = []
    for members in groups.values():
        ids = tuple(b.id for b in members)
        ded = max(_amount(b.raw, "deductible")[0] for b in members)
        if len(members) == 1:
            b = members[0]
            r = float(b.raw["ratio"])
            out.append(GroupTerms(b.id, ids, ded, r, float(b.raw.get("preexisting_ratio", r)),
                                  _amount(b.raw, "limit")[0],
                                  claim_free_steps=claim_free_steps_of(b.raw)))
            continue
        w = np.array([max((weights or {}).get(b.id, 0.0), 0.0) for b in members])
        w = w / w.sum() if w.sum() > 0 else np.full(len(members), 1 / len(members))
        r = float(sum(wi * float(b.raw["ratio"]) for wi, b in zip(w, members)))
        pre = float(sum(wi * float(b.raw.get("preexisting_ratio", b.raw["ratio"]))
                        for wi, b in zip(w, members)))
        limits = {}
        for b in members:
            amt, shared = _amount(b.raw, "limit")
            limits[shared or b.id] = amt
        first = max(members, key=lambda b: _amount(b.raw, "deductible")[0])
        out.append(GroupTerms("+".join(ids), ids, ded, r, pre, float(sum(limits.values())),
                              note="priced jointly (shared deductible or limit): eligible-"
                                   "weighted ratio, limits added where separate",
                              claim_free_steps=claim_free_steps_of(first.raw)))
    return out


def choose_factors(frame: pd.DataFrame, count: str, candidates=RATING_FACTORS,
                   min_level_events: int = 30) -> tuple[str, ...]:
    """The candidate factors each of whose levels has ``min_level_events`` events;
    ``age_group`` stands in for ``age_band`` when the bands are too thin; a launch
    year's :data:`LAUNCH_COHORT` too when ``frame`` has it."""
    chosen = []
    extra = (LAUNCH_COHORT,) if LAUNCH_COHORT in frame.columns else ()
    for f in (*candidates, *(e for e in extra if e not in candidates)):
        options = [f, "age_group"] if f == "age_band" else [f]
        for opt in options:
            by = frame.groupby(opt, observed=True)[count].sum()
            if len(by) > 1 and by.min() >= min_level_events:
                chosen.append(opt)
                break
    return tuple(chosen)


def pearson_dispersion(counts: np.ndarray, exposure: np.ndarray, rate: np.ndarray,
                       n_params: int) -> float:
    """The quasi-Poisson dispersion of the counts on person-years (at least 1)::

        phi = sum (n_i - mu_i)^2 / mu_i / (rows - parameters),   mu_i = exposure_i rate_i

    The Poisson GLM's covariance assumes phi = 1; over-dispersed counts (a person with
    one stay is likely to have another) make its standard errors too small by sqrt(phi).
    """
    n = np.asarray(counts, dtype=float)
    mu = np.asarray(exposure, dtype=float) * rate
    on = mu > 0
    dof = max(int(on.sum()) - n_params, 1)
    return max(1.0, float((((n - mu) ** 2)[on] / mu[on]).sum()) / dof)


def negbin_alpha(counts: np.ndarray, exposure: np.ndarray, rate: np.ndarray) -> float:
    """Moment estimate of the NB2 dispersion given fitted rates per unit exposure::

        mu_i = exposure_i rate_i,   alpha = sum[(n_i - mu_i)^2 - n_i] / sum mu_i^2

    (0 when the counts are not over-dispersed: a Poisson count).
    """
    n = np.asarray(counts, dtype=float)
    mu = np.asarray(exposure, dtype=float) * rate
    denom = float(np.dot(mu, mu))
    if denom <= 0:
        return 0.0
    return max(0.0, float(((n - mu) ** 2 - n).sum()) / denom)


def cells_of(frame: pd.DataFrame, factors) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct combinations of ``factors`` in ``frame`` with their ``exposure`` and
    ``person_years``, and each row's combination (its position in that table)."""
    if not factors:
        return (pd.DataFrame({"exposure": [float(frame["exposure"].sum())],
                              "person_years": [len(frame)]}),
                np.zeros(len(frame), dtype="int64"))
    g = frame.groupby(list(factors), observed=True, sort=True)
    cell = g.ngroup().to_numpy()
    cells = g.size().reset_index(name="person_years")
    cells["exposure"] = np.bincount(cell, weights=frame["exposure"].to_numpy(dtype=float),
                                    minlength=len(cells))
    return cells, cell


def merged_cells(cells: pd.DataFrame, factors, count: str) -> pd.DataFrame:
    """Cells of :func:`cells_of` merged to the combinations of fewer ``factors``:
    exposure, ``count`` and person-years added (the Poisson GLM's sufficient statistics,
    as :func:`puhui.pricing.frequency.rating_cells` gives them from the rows)."""
    if not factors:
        out = pd.DataFrame({"exposure": [cells["exposure"].sum()],
                            "count": [cells[count].sum()],
                            "person_years": [cells["person_years"].sum()]})
    else:
        out = (cells.groupby(list(factors), observed=True)
               .agg(exposure=("exposure", "sum"), count=(count, "sum"),
                    person_years=("person_years", "sum")).reset_index())
    return out[out["exposure"] > 0]


def mean_draws(result, cells: pd.DataFrame, w: np.ndarray, rng, n: int,
               cov_scale: float = 1.0) -> np.ndarray:
    """Ratio of the mix-weighted mean under n coefficient draws (normal, the fit's
    covariance times ``cov_scale``) to the fitted one."""
    X = design_matrix(result.params, cells)
    b = result.params.to_numpy()
    cov = np.asarray(result.cov_params()) * cov_scale
    if not np.isfinite(cov).all():
        return np.ones(n)     # a degenerate fit (thin data): no draws rather than nonsense
    # eigh tolerates the near-singular covariance of a thin fit (cholesky refuses it)
    draws = rng.multivariate_normal(b, cov, size=n, method="eigh")
    base = float(np.dot(w, np.exp(X @ b)))
    return (np.exp(draws @ X.T) @ w) / base


def parameter_draws(model: "BenefitCostModel", cells: pd.DataFrame, terms: GroupTerms,
                    w: np.ndarray, rng, sims: int, sev_trend: float = 1.0) -> np.ndarray:
    """Draws of cost_draw / cost from the GLMs' parameter uncertainty, to first order in
    logs::

        log(cost_draw / cost) = sum_k e_fk dlog lambda_k + e_sk dlog mu_k

    where e_fk, e_sk are the cost's elasticities to kind k's frequency and severity
    (finite differences of the compound calculation, one kind at a time: a deductible
    makes the cost far more sensitive to stays than to outpatient visits) and
    dlog lambda_k, dlog mu_k the log-change of kind k's mix-weighted frequency and
    severity under normal draws of its coefficients (the frequency covariance scaled by
    the quasi-Poisson dispersion)."""
    eps = 1.05

    def cost_with(factors):
        return float(np.dot(w, model.moments(cells, terms, 1.0, sev_trend, factors)[0]) / w.sum())

    cost = cost_with(None)
    if cost <= 0:
        return np.ones(sims)
    total = np.zeros(sims)
    rated = model.rate_cells(cells)
    for k, (lam, _mu) in zip(model.kinds_, model.rates(cells)):
        e_f = np.log(cost_with({k.name: (eps, 1.0)}) / cost) / np.log(eps)
        e_s = np.log(cost_with({k.name: (1.0, eps)}) / cost) / np.log(eps)
        d_f = np.log(mean_draws(k.frequency.result_, rated, w, rng, sims, k.dispersion))
        d_s = np.log(mean_draws(k.severity.result_, rated, w * lam, rng, sims))
        total += e_f * d_f + e_s * d_s
    return np.exp(total)


@dataclass
class ClaimKind:
    """Frequency and severity of one kind of claim (inpatient stays, or outpatient
    settlements and drug purchases) of a pricing group."""

    name: str
    factors: tuple[str, ...]
    frequency: PoissonFrequency
    alpha: float
    severity: GammaSeverity
    shape: SplicedSeverity
    events: int
    dispersion: float = 1.0      # quasi-Poisson phi of the counts (scales the covariance)


class BenefitCostModel:
    """Frequency x severity for one pricing group, and its annual benefit per cell.

    The group's claims are split by kind, inpatient and outpatient, each with its own
    frequency, severity and tail: a stay's self-pay is about fifteen times a monthly
    outpatient settlement's, and people with many settlements have small ones, so one
    severity for both would put far too much of the annual sum above a deductible. The
    annual sum is the sum of the kinds' independent compound sums.

    Parameters
    ----------
    factors : rating factors, or None to choose them from the data (:func:`choose_factors`)
    threshold_quantile, min_exceedances : the severity tail (:class:`SplicedSeverity`)
    min_level_events : thinnest level a chosen factor may have
    grid : points of the discretised annual sum

    Attributes (after ``fit``)
    --------------------------
    kinds_ : one :class:`ClaimKind` per kind of claim with events (empty: no events);
    events_, exposure_ : totals seen
    """

    def __init__(self, factors=None, threshold_quantile: float = 0.95,
                 min_exceedances: int = 50, min_level_events: int = 30, grid: int = 2 ** 15):
        self.factors = factors
        self.threshold_quantile = threshold_quantile
        self.min_level_events = min_level_events
        self.min_exceedances = min_exceedances
        self.grid = grid

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame, amount: str = "amount",
            kind: str = "inpatient", cells: tuple | None = None,
            use: np.ndarray | None = None) -> "BenefitCostModel":
        """``frame``: one row per person-year (``psn_no`` or ``person``, ``year``, the
        factors, ``exposure``); ``events``: one row per event (its person-year as
        ``row``, the position in ``frame``, or as ``psn_no``/``person`` and ``year``;
        its amount in yuan, > 0; and a ``kind`` column whose values split the claims).
        Every fit is on sums over the frame's cells of the candidate factors (exact for
        the Poisson and gamma GLMs); an event's factors are its person-year's. ``cells``:
        ``cells_of(frame, self.candidates(frame))`` when the caller has it (several
        models on one frame). ``use``: the rows of ``frame`` fitted on (True), the others
        left out with their events as if absent (default: every row); the fit is the one
        on ``frame[use]``, without copying the frame. A launch year's fractional rows
        come as ``cells`` = :func:`~puhui.pricing.launch_flags.extended_cells` (combos,
        code, split): :meth:`_fit_split`."""
        rows = (events["row"].to_numpy() if "row" in events.columns
                else person_year_rows(frame, events))
        if (rows < 0).any():
            raise ValueError(f"{int((rows < 0).sum())} events have no person-year in the frame")
        exposure = frame["exposure"].to_numpy(dtype=float)
        if use is not None:
            use = np.asarray(use, dtype=bool)
            keep = use[rows]
            events, rows = events[keep], rows[keep]
            exposure = np.where(use, exposure, 0.0)
        self.events_ = int(len(events))
        self.exposure_ = float(exposure.sum())
        self.kinds_: list[ClaimKind] = []
        self._moments_memo: dict = {}      # :meth:`moments`' compound sums of these kinds
        # events per row of frame, by kind, held sparse (rows with events, their counts):
        # a model is saved with the pricing state, and most person-years have none
        self.counts_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.rows_ = len(frame)
        self.level_ = 1.0             # :mod:`puhui.pricing.balance` sets it
        # each event's person-year; the person-years' combinations of the candidate
        # factors (sums over them are the sufficient statistics of every fit below)
        if cells is not None and len(cells) == 3:
            by_kind = [(value, rows[at], events[amount].to_numpy(dtype=float)[at])
                       for value, at in sorted(events.groupby(kind, sort=True).indices.items())]
            return self._fit_split(frame, by_kind, cells, use)
        cells, cell = cells if cells is not None else cells_of(frame, self.candidates(frame))
        if use is not None:          # the cells' sufficient statistics of the used rows
            cells = cells.assign(
                exposure=np.bincount(cell, weights=exposure, minlength=len(cells)),
                person_years=np.bincount(cell, weights=use, minlength=len(cells)).astype("int64"))
        on = slice(None) if use is None else use
        for value, at in sorted(events.groupby(kind, sort=True).indices.items()):
            ev_rows = rows[at]
            n = np.bincount(ev_rows, minlength=len(frame))
            c = cells.assign(_count=np.bincount(cell, weights=n, minlength=len(cells)))
            factors = (tuple(self.factors) if self.factors is not None
                       else choose_factors(c, "_count", min_level_events=self.min_level_events))
            freq = PoissonFrequency(factors).fit_cells(merged_cells(c, factors, "_count"))
            rate = freq.predict(cells)[cell]
            alpha = negbin_alpha(n[on], exposure[on], rate[on])
            phi = pearson_dispersion(n[on], exposure[on], rate[on], len(freq.params_))
            # severity from each event's cell (no table of events and factors)
            ev_cell = cell[ev_rows]
            amounts = events[amount].to_numpy(dtype=float)[at]
            sev = GammaSeverity(factors).fit_cells(cells, ev_cell, amounts)
            z = amounts / sev.predict(cells)[ev_cell]
            shape = SplicedSeverity(self.threshold_quantile, self.min_exceedances).fit(z)
            name = {True: "inpatient", False: "outpatient"}.get(value, str(value))
            nz = np.flatnonzero(n)
            self.counts_[name] = (nz, n[nz])
            self.kinds_.append(ClaimKind(name, factors, freq, alpha, sev, shape, len(at), phi))
        return self

    def _fit_split(self, frame, by_kind, cells, use):
        """:meth:`fit` on a launch year's fractional rows (``cells``: combos, code over
        the extended rows, and the :class:`~puhui.pricing.launch_flags.FlagSplit`):
        each extended row's exposure and counts times its weight summed by cell (the
        Poisson fit's sufficient statistics), each event at its extended rows' cells
        with their weights (the gamma fit's weighted cell means, var_weights their
        weight sums); the dispersions and the tail on the person-years and events as
        they are, at each one's weight-mixed fitted mean. ``by_kind``: (kind, the
        events' frame rows, their amounts) per kind of claim."""
        n_rows = len(frame)
        cells, cell, split = cells
        src, wt = split.extended(n_rows)
        used = np.ones(n_rows, dtype=bool) if use is None else use
        exposure = np.where(used, frame["exposure"].to_numpy(dtype=float), 0.0)
        wt = wt * used[src]
        row_w = np.bincount(src, weights=wt, minlength=n_rows)    # 1, or 1 - pi left out
        cells = cells.assign(exposure=np.bincount(cell, weights=exposure[src] * wt,
                                                  minlength=len(cells)),
                             person_years=np.bincount(cell, weights=wt, minlength=len(cells)))
        for value, rows, amounts in by_kind:
            n = np.bincount(rows, minlength=n_rows)
            c = cells.assign(_count=np.bincount(cell, weights=n[src] * wt, minlength=len(cells)))
            factors = (tuple(self.factors) if self.factors is not None
                       else choose_factors(c, "_count", min_level_events=self.min_level_events))
            freq = PoissonFrequency(factors).fit_cells(merged_cells(c, factors, "_count"))
            # each person-year's rate: its extended rows' rates mixed by their weights
            on = used & (row_w > 0)
            rate = np.bincount(src, weights=freq.predict(cells)[cell] * wt,
                               minlength=n_rows) / np.where(row_w > 0, row_w, 1.0)
            alpha = negbin_alpha(n[on], exposure[on], rate[on])
            phi = pearson_dispersion(n[on], exposure[on], rate[on], len(freq.params_))
            ev_ext, ev_w, ev_at = split.events(rows, n_rows)
            sev = GammaSeverity(factors).fit_cells(cells, cell[ev_ext], amounts[ev_at],
                                                   weights=ev_w)
            # each event's fitted mean: its extended rows' mixed by their weights
            mu = np.bincount(ev_at, weights=sev.predict(cells)[cell[ev_ext]] * ev_w,
                             minlength=len(rows))
            w_ev = np.bincount(ev_at, weights=ev_w, minlength=len(rows))
            seen = w_ev > 0
            shape = SplicedSeverity(self.threshold_quantile, self.min_exceedances).fit(
                amounts[seen] / (mu[seen] / w_ev[seen]))
            name = {True: "inpatient", False: "outpatient"}.get(value, str(value))
            nz = np.flatnonzero(n)
            self.counts_[name] = (nz, n[nz])
            self.kinds_.append(ClaimKind(name, factors, freq, alpha, sev, shape, len(rows), phi))
        return self

    def __getstate__(self) -> dict:
        # the per-person-year counts are the fitted frame's (for cross-validation in the
        # same run), not part of the model: a saved model leaves them out (at ten
        # million person-years they were most of models.pkl's 600 MB)
        state = self.__dict__.copy()
        state.pop("counts_", None)
        state.pop("_moments_memo", None)     # a cache of this process (:meth:`moments`)
        return state

    def at_level(self, factor: str, level, weight=None, carry: tuple[str, ...] = ()) -> bool:
        """Hold ``factor`` at ``level`` in every kind's frequency and severity and take it
        out of their factors (:func:`~puhui.pricing.loglinear.at_level`): the model then
        prices any cell as one of that level. ``weight(name, part, fit)``, if given, is
        the share of the level's coefficient kept (part "frequency" or "severity"; 1 if
        not given), ``carry`` the coefficients that keep all of it. True when some kind
        had the factor."""
        moved = False
        for i, k in enumerate(self.kinds_):
            if factor not in k.factors:
                continue
            moved = True
            factors = tuple(f for f in k.factors if f != factor)
            for name, part in (("frequency", k.frequency), ("severity", k.severity)):
                z = 1.0 if weight is None else weight(k.name, name, part.result_)
                part.result_ = at_level(part.result_, factor, level, z, carry)
                part.params_, part.bse_ = part.result_.params, part.result_.bse
                part.factors = factors
            self.kinds_[i] = dataclasses.replace(k, factors=factors)
        self.__dict__.pop("_moments_memo", None)
        return moved

    def counts(self, kind: str) -> np.ndarray:
        """Events of ``kind`` per row of the frame the model was fitted on (in the
        process that fitted it: a saved model does not keep them)."""
        if not hasattr(self, "counts_"):
            raise ValueError("this model was loaded from a file: its per-row counts are "
                             "not saved; refit it on the frame to cross-validate")
        rows, n = self.counts_[kind]
        out = np.zeros(self.rows_, dtype=n.dtype)
        out[rows] = n
        return out

    def candidates(self, frame: pd.DataFrame) -> tuple[str, ...]:
        """The factors the fit may use: the given ones, or the rating factors (and the
        coarse age group) that ``frame`` has."""
        if self.factors is not None:
            return tuple(self.factors)
        return tuple(f for f in (*RATING_FACTORS, "age_group", LAUNCH_COHORT)
                     if f in frame.columns)

    def rate_cells(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The cells the frequency and severity read: ``cells``, or, for a model whose
        ``morbidity_`` names a column that ``cells`` has (a launch-year fit,
        :func:`~puhui.pricing.launch_flags.price_cohort`), the cells with
        ``preexisting`` set to 1 where that column is 1: a listed diagnosis seen by the
        data costs as the flag does, while the benefit ratio (:meth:`moments`) stays the
        policy's flag."""
        seen = getattr(self, "morbidity_", None)
        if seen is None or seen not in cells.columns:
            return cells
        pre = cells["preexisting"]
        sick = pre.astype(int).to_numpy() | cells[seen].astype(int).to_numpy()
        return cells.assign(preexisting=sick.astype(pre.dtype))

    def rates(self, cells: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per kind: expected events per year and mean amount per event, per cell; with
        ``morbidity_`` (:meth:`rate_cells`) each kind's frequency and severity at the
        diagnosis-seen cells' flag weighted by ``morbidity_weights_`` {kind: (frequency,
        severity)} (1 if not given) against those at the cells' own flag."""
        rated = self.rate_cells(cells)
        out = []
        for k in self.kinds_:
            lam, mu = k.frequency.predict(cells), k.severity.predict(cells)
            if rated is not cells:
                zf, zs = getattr(self, "morbidity_weights_", {}).get(k.name, (1.0, 1.0))
                lam = zf * k.frequency.predict(rated) + (1.0 - zf) * lam
                mu = zs * k.severity.predict(rated) + (1.0 - zs) * mu
            out.append((lam, mu))
        return out

    def moments(self, cells: pd.DataFrame, terms: GroupTerms, frequency_factor: float = 1.0,
                severity_factor: float = 1.0, kind_factors: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """E[B] and E[B^2] per cell (yuan, one full policy year), with the frequency and
        severity optionally scaled (trend, what-if, sensitivities), for all kinds or,
        through ``kind_factors`` ({kind: (frequency factor, severity factor)}), one;
        times the balance factor ``level_`` (:mod:`puhui.pricing.balance`)."""
        kind_factors = kind_factors or {}
        m1, m2 = np.zeros(len(cells)), np.zeros(len(cells))
        if not self.kinds_:
            return m1, m2
        rates = self.rates(cells)
        pre = cells["preexisting"].astype(int).to_numpy() == 1
        # many cells (and the re-runs of the elasticities, the steps and the backtest)
        # ask for the same compound sum: each distinct one is computed once per model,
        # and the same inputs give the same floats (session 21: 2,381 calls, 553 distinct
        # on the 600-person city)
        memo = self.__dict__.setdefault("_moments_memo", {})
        for i in range(len(cells)):
            comps = self.cell_components(rates, i, frequency_factor, severity_factor,
                                         kind_factors)
            r = terms.preexisting_ratio if pre[i] else terms.ratio
            key = (comps, terms.deductible, r, terms.limit, self.grid)
            if key not in memo:
                memo[key] = annual_benefit_moments_of(comps, terms.deductible, r, terms.limit,
                                                      n=self.grid)
            m1[i], m2[i] = memo[key]
        level = getattr(self, "level_", 1.0)       # (models saved before balance: 1)
        return m1 * level, m2 * level ** 2

    def cell_components(self, rates, i: int, frequency_factor: float = 1.0,
                        severity_factor: float = 1.0, kind_factors: dict | None = None
                        ) -> tuple:
        """Cell ``i``'s compound sums, one per kind: (limited mean of the shape, mean
        amount, mean count, NB size or None), from ``rates`` = :meth:`rates` (the
        components of :func:`~puhui.pricing.aggregate.annual_benefit_moments_of`)."""
        kind_factors = kind_factors or {}
        return tuple((k.shape.limited_mean,
                      mu[i] * severity_factor * kind_factors.get(k.name, (1.0, 1.0))[1],
                      lam[i] * frequency_factor * kind_factors.get(k.name, (1.0, 1.0))[0],
                      1.0 / k.alpha if k.alpha > 0 else None)
                     for k, (lam, mu) in zip(self.kinds_, rates))

    def cost_draws(self, cells: pd.DataFrame, terms: GroupTerms, w: np.ndarray, rng, sims: int,
                   severity_factor: float = 1.0) -> np.ndarray:
        """Draws of (mix-weighted cost under parameter uncertainty) / (fitted cost)
        (:func:`parameter_draws`)."""
        if not self.kinds_:
            return np.ones(sims)
        return parameter_draws(self, cells, terms, w, rng, sims, severity_factor)


def step_moments(model: "BenefitCostModel", cells: pd.DataFrame, terms: GroupTerms,
                 shares: np.ndarray | None, base: tuple[np.ndarray, np.ndarray] | None = None,
                 **kw) -> tuple[np.ndarray, np.ndarray]:
    """E[B], E[B^2] per cell when a share of each cell's policies has a lower
    deductible after claim-free years: with a_kc the share of cell c's policies at
    step k (deductible d_k) and d_0 the first-year deductible,

        E[B_c]   = (1 - sum_k a_kc) E[B_c | d_0]   + sum_k a_kc E[B_c | d_k]
        E[B_c^2] = (1 - sum_k a_kc) E[B_c^2 | d_0] + sum_k a_kc E[B_c^2 | d_k]

    (a mixture over policies). ``shares``: cells x steps, or None for no steps;
    ``base``: the moments at d_0 when already computed.
    """
    import dataclasses

    m1, m2 = base if base is not None else model.moments(cells, terms, **kw)
    if shares is None or not terms.claim_free_steps or not np.any(shares > 0):
        return m1, m2
    rest = 1.0 - shares.sum(axis=1)
    o1, o2 = m1 * rest, m2 * rest
    for k, (_, ded) in enumerate(terms.claim_free_steps):
        a = shares[:, k]
        on = a > 0
        if not on.any():
            continue
        s1, s2 = model.moments(cells[on].reset_index(drop=True),
                               dataclasses.replace(terms, deductible=ded), **kw)
        o1[on] += a[on] * s1
        o2[on] += a[on] * s2
    return o1, o2
