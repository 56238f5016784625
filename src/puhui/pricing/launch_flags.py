"""A launch year's rating flag for the non-enrolled: the diagnosed split by the share
that is prevalent (issue 18, session 22).

A price fitted on a single data year (the launch year, no look-back before it) knows the
pre-existing flag of the enrolled (their policy's) but not of the others: the
look-back that would flag them lies before the data, so every non-enrolled person is
flag 0 and the flag-0 cells are fitted on people of whom many carry a listed diagnosis
(standard 100k city: the flag-0 non-enrolled cost 112.34 a year, 49.99 without the
diagnosed). Flagging every non-enrolled person diagnosed by the end of the year
(``preexisting_next``) over-corrects: a diagnosis first made in the year (a new-onset
cancer) is what next year's flag-0 people will have too, so it belongs in flag 0.

So a non-enrolled person diagnosed by the end of the year is flag 1 with probability
pi, the share of those diagnoses that were there before the year (prevalent), and flag
0 with 1 - pi. With the enrolled of flag 0 (whose flag is known: no listed diagnosis
before the year) as the measure of new onsets::

    incidence = enrolled flag 0 diagnosed in the year / enrolled flag 0
    share     = non-enrolled diagnosed by the year's end / non-enrolled
    pi        = (1 - incidence / share) / (1 - incidence),   clipped to [0, 1]

If the non-enrolled without the diagnosis at the year's start have the enrolled flag 0's
incidence, share = prevalence + (1 - prevalence) incidence, so prevalence = (share -
incidence) / (1 - incidence) and the prevalent share of the diagnosed, prevalence /
share, is pi exactly (1 - incidence / share, its first order, is low by the factor
1 - incidence: 1.4 % on the standard 100k city).

The split is fractional rows (``[launch_year] prevalent = "flag_1"``): such a person-year
is counted with weight 1 - pi in its flag-0 cell and pi in the same cell with flag 1, its
exposure, claim counts and events alike, so every total is kept exactly; the Poisson and
gamma GLMs take the weighted cell sums (their sufficient statistics; statsmodels'
var_weights for the gamma cell means, as without the split) and the balance the same
weighted exposure. ``"left_out"`` gives the prevalent share weight 0 instead (flag 1 then
rests on the enrolled, whose flag is known: a non-enrolled person is seen with the
diagnosis only through a claim in the year, so the prevalent share's year is the year
its diagnosis was seen, costlier than a flag-1 person's year). ``"flag_0"``, the shipped
setting, splits nothing and reports pi: measured on the backtests neither split is
better on every city (docs/pricing.md, "Who enrols"). The people themselves, their
enrolment and next year's state are not split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.pricing.benefit_cost import LAUNCH_COHORT, cells_of

#: The flag the split moves.
FLAG = "preexisting"
#: Next year's state that prices a cell's morbidity at flag 1 under "cohort" (a listed
#: diagnosis by the look-back ending with the data, ``premium.next_year_state``).
MORBIDITY = "preexisting_seen"


def prevalent_share(enrolled, flag, diagnosed) -> dict:
    """pi and its inputs from one year's person-years: ``enrolled`` (bool), ``flag``
    (the rating flag: the enrolled's policy flag), ``diagnosed`` (a listed diagnosis
    by the year's end, ``preexisting_next``). ``pi`` is None when it cannot be
    estimated (no enrolled of flag 0, or no diagnosed non-enrolled person).

    >>> f = prevalent_share([1, 1, 1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0, 0],
    ...                     [1, 0, 0, 1, 1, 1, 0, 0, 0])
    >>> f["pi"], f["incidence"], f["diagnosed_share"]      # (1 - (1/3) / (2/5)) / (2/3)
    (0.25, 0.333333, 0.4)
    """
    enrolled = np.asarray(enrolled, dtype=bool)
    flag = np.asarray(flag, dtype=bool)
    diagnosed = np.asarray(diagnosed, dtype=bool)
    known0 = enrolled & ~flag
    non = ~enrolled
    n_e0, d_e0 = int(known0.sum()), int((known0 & diagnosed).sum())
    n_n, d_n = int(non.sum()), int((non & diagnosed).sum())
    incidence = d_e0 / n_e0 if n_e0 else None
    share = d_n / n_n if n_n else None
    pi = (None if incidence is None or not share or incidence >= 1.0
          else float(min(max((1.0 - incidence / share) / (1.0 - incidence), 0.0), 1.0)))
    return {"pi": None if pi is None else round(pi, 6),
            "pi_unrounded": pi,
            "incidence": None if incidence is None else round(incidence, 6),
            "diagnosed_share": None if share is None else round(share, 6),
            "enrolled_flag0_person_years": n_e0, "enrolled_flag0_diagnosed": d_e0,
            "nonenrolled_person_years": n_n, "nonenrolled_diagnosed": d_n}


@dataclass(frozen=True)
class FlagSplit:
    """The fractional rows of a launch-year fit: the frame's ``rows`` (diagnosed
    non-enrolled person-years, flag 0) each counted ``1 - pi`` at flag 0 and ``pi`` at
    flag 1. The extended rows are the frame's, then one copy of each split row."""

    rows: np.ndarray
    pi: float
    #: False: the prevalent share (pi) is left out of the fits instead of put at flag 1
    keep_prevalent: bool = True

    @property
    def prevalent_weight(self) -> float:
        """The copies' weight: pi, or 0 when the prevalent share is left out."""
        return self.pi if self.keep_prevalent else 0.0

    def row_weights(self, n: int) -> np.ndarray:
        """Each frame row's weight in the fits: 1, or 1 - pi for a split row whose
        prevalent share is left out."""
        w = np.ones(n)
        if not self.keep_prevalent:
            w[self.rows] = 1.0 - self.pi
        return w

    def extended(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(src, wt) of the ``n`` + len(rows) extended rows: each one's frame row and
        weight (1 for rows not split).

        >>> src, wt = FlagSplit(np.array([1]), 0.25).extended(3)
        >>> src.tolist(), wt.tolist()
        ([0, 1, 2, 1], [1.0, 0.75, 1.0, 0.25])
        """
        src = np.concatenate([np.arange(n), self.rows])
        wt = np.ones(len(src))
        wt[self.rows] = 1.0 - self.pi
        wt[n:] = self.prevalent_weight
        return src, wt

    def events(self, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Events on frame ``rows`` as extended rows: (extended row, weight, the
        event's position in ``rows``); an event of a split row appears twice, once at
        each flag, with weights 1 - pi and pi (those of weight 0 left out).

        >>> FlagSplit(np.array([1]), 0.25).events(np.array([1, 0]), 3)[0].tolist()
        [1, 0, 3]
        """
        rows = np.asarray(rows)
        copy_of = np.full(n, -1, dtype=np.int64)
        copy_of[self.rows] = n + np.arange(len(self.rows))
        _, wt = self.extended(n)
        dup = np.flatnonzero(copy_of[rows] >= 0)
        ext = np.concatenate([rows, copy_of[rows[dup]]])
        at = np.concatenate([np.arange(len(rows)), dup])
        w = np.concatenate([wt[rows], np.full(len(dup), self.prevalent_weight)])
        keep = w > 0
        return ext[keep], w[keep], at[keep]


#: What a launch-year fit does with the diagnosed non-enrolled's prevalent share
#: (pricing.toml ``[launch_year] prevalent``): "flag_0" leaves everyone non-enrolled at
#: flag 0 (the fit before session 22; pi still reported), "flag_1" puts the share at
#: flag 1, "left_out" leaves it out of the cost models and the balance (flag 1 then
#: rests on the enrolled, whose flag is known).
MODES = ("flag_0", "flag_1", "left_out", "cohort")
DEFAULT_MODE = "flag_0"
#: [assumption] tau, the prior sd of the launch cohort's log relativity against the
#: non-enrolled in the same cells ("cohort"; pricing.toml ``[launch_year]
#: cohort_log_sd``): a factor e (2.7) either way at one sd.
DEFAULT_COHORT_SD = 1.0


def launch_mode(table, where: str) -> str:
    """pricing.toml's ``[launch_year]``: ``prevalent`` one of :data:`MODES` (default
    :data:`DEFAULT_MODE`); anything else is exit 2 naming it."""
    from puhui.errors import InputError

    if not isinstance(table, dict):
        raise InputError(f"{where}: [launch_year] must be a table (prevalent = \"flag_0\"); "
                         f"got {table!r}")
    unknown = sorted(set(table) - {"prevalent", "cohort_log_sd"})
    if unknown:
        raise InputError(f"{where}: [launch_year] has no key {unknown[0]!r}; its keys are "
                         f"prevalent ({', '.join(MODES)}) and cohort_log_sd")
    tau = table.get("cohort_log_sd", DEFAULT_COHORT_SD)
    if (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau)
            or not 0.01 <= tau <= 10):
        raise InputError(f"{where}: [launch_year] cohort_log_sd = {tau!r}; give the prior "
                         f"sd of the launch cohort's log relativity, from 0.01 to 10 (1.0 "
                         f"is the shipped assumption)")
    mode = table.get("prevalent", DEFAULT_MODE)
    if mode not in MODES:
        raise InputError(f"{where}: [launch_year] prevalent = {mode!r}; give one of "
                         f"{', '.join(repr(m) for m in MODES)} (docs/pricing.md, \"Who enrols\")")
    return mode


def launch_split(frame: pd.DataFrame, fit_years: list[int], mode: str = DEFAULT_MODE,
                 cohort_log_sd: float = DEFAULT_COHORT_SD
                 ) -> tuple[FlagSplit | None, dict | None]:
    """The split of a launch-year fit under ``mode`` (:data:`MODES`), and its figures
    for ``pricing.json``; (None, None) when the models' years have a look-back (a year
    after the data's first), when the frame has no next-year diagnosis column or no
    enrolled or no non-enrolled person in the fitted year (insured-only data: nothing
    to split); (None, figures) under "flag_0" or when pi is 0 or cannot be estimated."""
    if "preexisting_next" not in frame.columns or "enrolled" not in frame.columns:
        return None, None
    year = frame["year"].to_numpy()
    first = int(year.min())
    if list(fit_years) != [first]:
        return None, None
    enrolled = frame["enrolled"].to_numpy(dtype=bool)
    if enrolled.all() or not enrolled.any():
        return None, None
    diagnosed = frame["preexisting_next"].to_numpy(dtype=bool)
    flag = frame[FLAG].to_numpy(dtype=bool)
    fig = prevalent_share(enrolled, flag, diagnosed)
    pi = fig.pop("pi_unrounded")
    rows = np.flatnonzero(~enrolled & diagnosed & ~flag)
    fig = {"year": first, **fig, "split_person_years": int(len(rows)), "prevalent": mode,
           "note": NOTES[mode]}
    if mode == "cohort":                 # :func:`mark_cohort`, no rows split
        fig["cohort_log_sd"] = float(cohort_log_sd)
        fig["split"] = False
        return None, fig
    if mode == "flag_0" or pi is None or pi <= 0.0 or not len(rows):
        fig["split"] = False
        return None, fig
    fig["split"] = True
    return FlagSplit(rows, pi, keep_prevalent=(mode == "flag_1")), fig


def mark_cohort(frame: pd.DataFrame, fig: dict | None) -> bool:
    """Under ``[launch_year] prevalent = "cohort"`` (``fig``: :func:`launch_split`'s),
    give ``frame`` the :data:`~puhui.pricing.benefit_cost.LAUNCH_COHORT` column (1 for
    the enrolled of the launch year, 0 for the others), which the cost models then
    choose like a rating factor (each level with 30 events) and the price holds at 1
    (:func:`price_cohort`). True when marked.

    Why: in a launch year the enrolled's pre-existing flag is their policy's and the
    others' is unknown (all 0). With a level of their own the non-enrolled, the
    diagnosed among them included, no longer set the flag-0 cells' level; the flag's
    effect is the enrolled's (flag 1 occurs among them only), and next year's book,
    mostly the launch cohort renewing, is priced at the cohort's level in its cells
    (its selection inside them included), while age, sex and scheme rest on everyone.

    >>> f = pd.DataFrame({"enrolled": [True, False]})
    >>> mark_cohort(f, {"prevalent": "cohort"}), f[LAUNCH_COHORT].tolist()
    (True, [1, 0])
    >>> mark_cohort(pd.DataFrame({"enrolled": [True]}), {"prevalent": "flag_0"})
    False
    """
    if fig is None or fig.get("prevalent") != "cohort":
        return False
    frame[LAUNCH_COHORT] = frame["enrolled"].to_numpy(dtype=bool).astype("int8")
    return True


def price_cohort(model, fig: dict | None) -> dict | None:
    """A cost model fitted with :data:`~puhui.pricing.benefit_cost.LAUNCH_COHORT` (the
    enrolled against the non-enrolled in the same cells, coefficient b with standard
    error se), held at the cohort and folded into its intercepts after the balance, b
    taken at its credibility (a normal prior of sd tau on b, ``fig["cohort_log_sd"]``:
    the posterior mean)::

        Z = tau^2 / (tau^2 + se^2),    priced cohort relativity = exp(Z b)

    b is identified by the flag-0 people alone (flag 1 occurs among the enrolled
    only), so Z applies to the flag-0 cells and the flag-1 cells keep the enrolled's
    whole level (the flag's coefficient gets (1 - Z) b): a thin or separated fit (no
    events among the enrolled of flag 0: b towards minus infinity, se huge) leaves the
    non-enrolled's level at flag 0, as "flag_0" would, and the enrolled's at flag 1. Next year's
    cells are then read with a listed diagnosis seen by the data's end costing as
    pre-existing 1 (``morbidity_``, :meth:`~puhui.pricing.benefit_cost.BenefitCostModel.
    rate_cells`): a renewer diagnosed in the launch year keeps the policy's flag 0, and
    no one like them is in a launch year's flag-0 cells. Returns the figures of
    ``pricing.json``'s ``launch_year_flags.cohort`` per kind (b, se, Z, the priced
    relativity, per part; None when the kind did not choose the factor: fewer than 30
    events at a level)."""
    if fig is None or fig.get("prevalent") != "cohort":
        return None
    tau = float(fig.get("cohort_log_sd", DEFAULT_COHORT_SD))
    out = {}

    def weight(kind, part, fit):
        name = f"C({LAUNCH_COHORT})[T.1]"
        b, se = float(fit.params.get(name, 0.0)), float(fit.bse.get(name, 0.0))
        z = tau ** 2 / (tau ** 2 + se ** 2) if np.isfinite(se) else 0.0
        out[kind] = out.get(kind) or {}
        out[kind][part] = {
            "coefficient": round(b, 4), "se": round(se, 4), "Z": round(z, 4),
            "priced_relativity": round(float(np.exp(z * b)), 4)}
        return z

    for k in model.kinds_:
        out[k.name] = None
    # flag 1 occurs among the enrolled alone: its cells keep the cohort's whole level
    model.at_level(LAUNCH_COHORT, 1, weight, carry=(f"C({FLAG})[T.1]",))
    model.morbidity_ = MORBIDITY
    # where the cohort's level is not credible (Z < 1) the flag-0 level is partly the
    # non-enrolled's, the diagnosed among them included: the diagnosis seen counts as
    # flag 1 only as far as Z (not twice)
    model.morbidity_weights_ = {
        k: (v["frequency"]["Z"], v["severity"]["Z"]) for k, v in out.items() if v}
    return out


def split_note(fig: dict) -> str:
    """The price's note of a launch-year fit's flags (``fig``: :func:`launch_split`'s;
    its zh in templates/messages.toml ``[zh_patterns]``)."""
    head = (f"{fig['year']} has no look-back before it, so the non-enrolled's pre-existing "
            f"status is unknown; ")
    n = f"{fig['split_person_years']:,}"
    if fig["prevalent"] == "cohort":
        return head + (f"the cost models give the non-enrolled a level of their own and "
                       f"price the cells at the launch cohort's, by credibility ([launch_year] "
                       f"prevalent = \"cohort\"), so the {n} non-enrolled person-years with a "
                       f"listed diagnosis by the year's end do not set the pre-existing 0 "
                       f"cells' level, the flag's effect is the enrolled's, and a listed "
                       f"diagnosis by the year's end costs as pre-existing 1 next year (the "
                       f"benefit ratio stays the policy's)")
    if fig["pi"] is None:
        return head + (f"the prevalent share of the diagnosed non-enrolled cannot be "
                       f"estimated ({fig['enrolled_flag0_person_years']:,} enrolled of "
                       f"pre-existing 0, {fig['nonenrolled_diagnosed']:,} non-enrolled "
                       f"diagnosed): they stay at pre-existing 0 in the cost models")
    est = (f"pi = {fig['pi']:.3f} = (1 - incidence / diagnosed share) / (1 - incidence), "
           f"the incidence {100 * fig['incidence']:.2f} % of the enrolled of pre-existing 0, "
           f"the diagnosed share {100 * fig['diagnosed_share']:.2f} % of the non-enrolled")
    if fig["prevalent"] == "flag_0" or not fig["split"]:
        return head + (f"the {n} non-enrolled person-years with a listed diagnosis by the "
                       f"year's end stay at pre-existing 0 in the cost models ([launch_year] "
                       f"prevalent = \"{fig['prevalent']}\"); the share of them diagnosed "
                       f"before the year is {est}")
    what = ("count a share pi at pre-existing 1" if fig["prevalent"] == "flag_1"
            else "leave a share pi out")
    return head + (f"of the {n} non-enrolled person-years with a listed diagnosis by the "
                   f"year's end, the cost models {what} and count 1 - pi at pre-existing "
                   f"0 ([launch_year] prevalent = \"{fig['prevalent']}\"): {est}")


NOTES = {
    "flag_0": "a launch year (no look-back before it): every non-enrolled person is at "
              "pre-existing 0 in the cost models ([launch_year] prevalent = \"flag_0\"); pi "
              "= (1 - incidence / diagnosed_share) / (1 - incidence) is the share of the diagnosed non-enrolled "
              "whose diagnosis was there before the year, the incidence that of the "
              "enrolled of flag 0",
    "flag_1": "a launch year (no look-back before it): each non-enrolled person diagnosed "
              "by the year's end counts pi at pre-existing 1 and 1 - pi at 0 in the cost "
              "models and the balance; pi = (1 - incidence / diagnosed_share) / (1 - "
              "incidence), the incidence that of the enrolled of flag 0",
    "left_out": "a launch year (no look-back before it): each non-enrolled person "
                "diagnosed by the year's end counts 1 - pi at pre-existing 0 in the cost "
                "models and the balance, and the prevalent share pi is left out (its "
                "year's cost is that of the year its diagnosis was seen); pi = (1 - "
                "incidence / diagnosed_share) / (1 - incidence), the incidence that of "
                "the enrolled of flag 0",
    "cohort": "a launch year (no look-back before it): the cost models fit a factor "
              "launch_cohort (1 enrolled, 0 not) beside the rating factors and price every "
              "cell at 1, its coefficient at its credibility Z = tau^2 / (tau^2 + se^2), so "
              "the non-enrolled (whose pre-existing flag is unknown, all 0) do not set the "
              "flag-0 cells' level and the flag's effect is the enrolled's; next year's "
              "cells cost as pre-existing 1 where a listed diagnosis is seen by the year's "
              "end (the benefit ratio the policy's flag); pi as for the other settings, "
              "reported only"}


def extended_cells(frame: pd.DataFrame, factors, split: FlagSplit
                   ) -> tuple[pd.DataFrame, np.ndarray, FlagSplit]:
    """:func:`~puhui.pricing.benefit_cost.cells_of` over the extended rows (the
    frame's rows, then the split rows' copies at flag 1), each cell's exposure and
    person-years weighted (so their sums are the frame's, less any share left out),
    and the split: the ``cells`` that :meth:`BenefitCostModel.fit
    <puhui.pricing.benefit_cost.BenefitCostModel.fit>` and
    :func:`~puhui.pricing.balance.balance` take for fractional rows."""
    factors = list(factors)
    if FLAG not in factors:
        raise ValueError(f"the split moves {FLAG!r}, which is not among the factors")
    src, wt = split.extended(len(frame))
    part = frame[factors]
    copies = part.iloc[split.rows].assign(**{FLAG: np.ones(len(split.rows),
                                                            dtype=part[FLAG].dtype)})
    ext = pd.concat([part, copies], ignore_index=True)
    ext["exposure"] = frame["exposure"].to_numpy(dtype=float)[src] * wt
    combos, code = cells_of(ext, factors)
    combos["person_years"] = np.bincount(code, weights=wt, minlength=len(combos))
    return combos, code, split
