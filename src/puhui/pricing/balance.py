"""Balance: each pricing group's model brought to the level of the experience it was
fitted on, as far as that experience is credible.

The frequency and severity GLMs reproduce the data's event counts and amounts, but the
quantity priced is the annual benefit after a deductible, a ratio and a limit, a convex
function of the year's total; its expectation depends on the whole compound
distribution (the count's dispersion, the severity's tail, and how they go together in
one person's year), and a mis-specified shape moves it. On a city whose people carry a
persistent frailty (puhui synth --generator second), the hospital benefit's model
expected 106.21 yuan per person-year against 80.45 as-if paid in the very years it was
fitted on (2025, 100,000 people): the price was a third too high before any question of
who enrols. So each group's expected annual benefit is set against the product's own
calculator on the same person-years (the as-if payouts) and scaled::

    A/E    = sum as-if paid / sum (E[B | cell] x exposure)   over the models' years
    Z      = n / (n + (1 + cv^2) / tau^2)                    Bühlmann
    factor = Z A/E + (1 - Z)

where n is the number of person-years the group paid (as if in force) and cv the
coefficient of variation of those payments, so (1 + cv^2) / n is the variance of a
compound Poisson total's A/E about its true level, and tau the spread of the model's own
level error (``[balance] model_bias_sd`` in pricing.toml): Z = tau^2 / (tau^2 + Var A/E),
Bühlmann's credibility of one risk's mean with the model as the collective (Bühlmann and
Gisler, "A Course in Credibility Theory", 2005, ch. 3). The balance corrects a
*systematic* error of the model (its level on the data it was fitted on); the
complement is the model itself, fitted on the same data, so it gets weight only while
the A/E's own noise is of the size of the error it measures. (Session 12 used the
limited-fluctuation rule Z = min(1, sqrt(n / (1,082 (1 + cv^2)))), Mahler and Dean,
"Credibility", Foundations of Casualty Actuarial Science, ch. 8, which asks for 3,929
paid person-years before a cv of 1.6 is fully believed: at 867 it corrected a measured
-19 % by -9 % where the A/E's own standard error was 6.5 %; a pricing.toml that gives
``full_credibility_events`` instead of ``model_bias_sd`` still gets that rule.) The factor
multiplies the model's E[B] (and E[B^2] by its square) wherever the model is used: the
cells' costs, the claim-free steps, the credibility by cell (which then moves relative
positions only), what-if, the lifetime projection. A thin group stays near its model.

What the balance leaves of the level error goes into the price's interval (session 19):
in the same normal model the posterior variance of the true level is (1 - Z) tau^2
(= Z (1 + cv^2) / n), so each group's parameter draws are multiplied by an independent
level error of mean 1 and sd ``level_sd`` = sqrt((1 - Z) tau^2) / factor
(:func:`level_sd`, :func:`with_level_error`; ``pricing.json`` ``balance.<group>.level_sd``).
A group with much data keeps little (Z near 1), a thin one nearly tau.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from puhui.pricing.external import credibility_weight

#: Events for full credibility of a group's level (90 % / +-5 %): the limited-fluctuation
#: rule's standard, used when pricing.toml gives ``full_credibility_events``.
FULL_CREDIBILITY_EVENTS = 1082.0


@dataclass(frozen=True)
class BalanceRule:
    """How credible a group's A/E is: ``kind`` "buhlmann" (``value`` = tau, the model's
    level error sd) or "limited_fluctuation" (``value`` = the events for full
    credibility)."""

    kind: str
    value: float

    def z(self, n: float, cv: float) -> float:
        """Z for ``n`` paid person-years whose payments have a coefficient of variation
        ``cv``.

        >>> round(BalanceRule("buhlmann", 0.15).z(867, 1.6221), 4)   # k = 161.4
        0.8431
        >>> round(BalanceRule("limited_fluctuation", 1082).z(867, 1.6221), 4)
        0.4698
        """
        if n <= 0:
            return 0.0
        if self.kind == "buhlmann":
            k = (1.0 + cv ** 2) / self.value ** 2
            return n / (n + k) if math.isfinite(k) else 0.0
        standard = self.value * (1.0 + cv ** 2)
        return credibility_weight(n, standard) if math.isfinite(standard) else 0.0

    def figures(self, cv: float) -> dict:
        """What pricing.json shows of the rule for a group with payments' ``cv``."""
        if self.kind == "buhlmann":
            return {"rule": "buhlmann", "model_bias_sd": self.value,
                    "half_credibility_claims": round((1.0 + cv ** 2) / self.value ** 2, 1)}
        return {"rule": "limited_fluctuation",
                "full_credibility_claims": round(self.value * (1.0 + cv ** 2), 1)}


#: The shipped rule when pricing.toml's [balance] says nothing.
DEFAULT_RULE = BalanceRule("buhlmann", 0.15)


def balance_factor(actual: float, expected: float, z: float) -> float:
    """factor = Z A/E + (1 - Z); 1 when nothing was expected.

    >>> balance_factor(80.0, 100.0, 1.0)      # credible: the experience's level
    0.8
    >>> round(balance_factor(80.0, 100.0, 0.5), 3)
    0.9
    >>> balance_factor(5.0, 0.0, 1.0)
    1.0
    """
    if not expected > 0:
        return 1.0
    return z * (actual / expected) + (1.0 - z)


def level_sd(rule: BalanceRule, z: float, factor: float) -> float | None:
    """The model's level error left after the balance, as a share of the balanced cost:
    the sd of Bühlmann's posterior of the true level (normal prior of mean 1 and sd tau
    on the model's level, the A/E of the fitted years observed with variance
    (1 + cv^2) / n; Z = tau^2 / (tau^2 + (1 + cv^2) / n))::

        Var[level | the years fitted] = (1 - Z) tau^2      (= Z (1 + cv^2) / n)
        level_sd                      = sqrt((1 - Z) tau^2) / factor

    (divided by the factor, the posterior mean, because the price already carries it).
    None under the limited-fluctuation rule, which states no prior.

    >>> round(level_sd(BalanceRule("buhlmann", 0.15), 0.8431, 0.9), 5)   # sqrt(.1569 x .0225) / .9
    0.06602
    >>> round(level_sd(BalanceRule("buhlmann", 0.15), 0.0, 1.0), 3)      # no data: the prior
    0.15
    >>> level_sd(BalanceRule("limited_fluctuation", 1082), 0.5, 1.0) is None
    True
    """
    if rule.kind != "buhlmann" or not factor > 0:
        return None
    return math.sqrt(max(1.0 - z, 0.0) * rule.value ** 2) / factor


def with_level_error(draws: np.ndarray, sd: float | None, rng) -> np.ndarray:
    """``draws`` (a group's cost under parameter uncertainty, as a ratio to its price)
    times an independent level error of mean 1 and sd ``sd`` (:func:`level_sd`), normal
    as the posterior it reads, floored at 0. So Var = Var_p (1 + sd^2) + E_p^2 sd^2 for
    draws of mean E_p and variance Var_p. ``rng``: its own generator, so the parameter
    draws and everything drawn after them stay as they were without the term."""
    if not sd:
        return draws
    return draws * np.maximum(1.0 + sd * rng.standard_normal(len(draws)), 0.0)


def balance(model, terms, frame: pd.DataFrame, benefit_ids, cells: tuple,
            use: np.ndarray | None = None, rule: BalanceRule = DEFAULT_RULE) -> dict:
    """Set ``model.level_`` to the balance factor of group ``terms`` and return its
    figures. ``frame``: the rating frame (``exposure``, ``payout_<b>`` in fen);
    ``benefit_ids``: the group's benefits; ``cells``: ``cells_of(frame, ...)`` with the
    factors the model reads, or a launch year's fractional rows the model was fitted
    with, :func:`~puhui.pricing.launch_flags.extended_cells` (combos, code, split), so a
    split person-year is expected at its weight-mixed cells; ``use``: the rows the
    model was fitted on (default all)."""
    model.level_ = 1.0
    on = np.ones(len(frame), dtype=bool) if use is None else np.asarray(use, dtype=bool)
    fig = _level(model, terms, frame, benefit_ids, cells, on, rule)
    model.level_ = fig["factor"]
    return {**fig, "factor": round(fig["factor"], 6)}


def _level(model, terms, frame: pd.DataFrame, benefit_ids, cells: tuple, on: np.ndarray,
           rule: BalanceRule) -> dict:
    """The figures of the model (at its current level) against the as-if payouts of the
    rows ``on``: actual, expected, A/E, paid person-years, cv, Z, factor."""
    combos, code, split = cells if len(cells) == 3 else (*cells, None)
    m1 = model.moments(combos, terms)[0]
    exposure = frame["exposure"].to_numpy(dtype=float)
    if split is None:
        expected = float(np.dot(m1[code[on]], exposure[on]))
    else:
        src, wt = split.extended(len(frame))
        keep = on[src]
        expected = float(np.dot(m1[code[keep]], (exposure[src] * wt)[keep]))
    paid = sum(frame[f"payout_{b}"].to_numpy()[on] for b in benefit_ids) / 100.0
    if split is not None and not split.keep_prevalent:     # (the share left out)
        paid = paid * split.row_weights(len(frame))[on]
    paid = paid[paid > 0]
    actual = float(paid.sum())
    cv = float(paid.std() / paid.mean()) if len(paid) > 1 else 0.0
    z = rule.z(len(paid), cv) if expected > 0 else 0.0
    factor = balance_factor(actual, expected, z)
    sd = level_sd(rule, z, factor) if expected > 0 else None
    return {"actual": round(actual, 2), "expected": round(expected, 2),
            "actual_to_expected": round(actual / expected, 4) if expected > 0 else None,
            "claims": int(len(paid)), "cv": round(cv, 4), **rule.figures(cv),
            "Z": round(z, 4), "factor": factor,
            "level_sd": None if sd is None else round(sd, 6)}


def enrolled_selection(model, terms, frame: pd.DataFrame, benefit_ids, cells: tuple,
                       use: np.ndarray | None = None,
                       rule: BalanceRule = DEFAULT_RULE) -> dict | None:
    """Multiply ``model.level_`` (already balanced to the population) by the enrolled's
    factor and return its figures: the insured book against the balanced model in
    the cells it sits in, over the models' years::

        A/E_enrolled = sum as-if paid of the enrolled / sum (E[B | cell] x exposure)
        factor       = Z A/E_enrolled + (1 - Z),  Z by ``rule`` on their paid years

    The cells see age, sex, scheme, pre-existing status and last year's stay; who
    chooses to buy sees more (a course of treatment under way, a diagnosis the look-back
    misses), so the enrolled of a cell cost more than its people (issue 18: "selection
    inside the rating cells is invisible"). Next year's book is mostly this year's
    enrolled renewing, so their level is carried to it. None (no change) when no one
    or everyone of the models' years was enrolled (insured-only data: the balance
    already is the book's)."""
    if "enrolled" not in frame.columns:
        return None
    on = frame["enrolled"].to_numpy(dtype=bool)
    years = np.ones(len(frame), dtype=bool) if use is None else np.asarray(use, dtype=bool)
    on &= years
    if not on.any() or on.sum() == years.sum():
        return None
    fig = _level(model, terms, frame, benefit_ids, cells, on, rule)
    model.level_ = model.level_ * fig["factor"]
    return {**fig, "factor": round(fig["factor"], 6)}


def balance_rule(table: dict, where: str) -> BalanceRule:
    """The rule pricing.toml's ``[balance]`` gives: ``model_bias_sd = tau`` (Bühlmann,
    0.001 <= tau <= 10) or ``full_credibility_events = N`` (limited fluctuation,
    1 <= N <= 1e9), not
    both; neither: :data:`DEFAULT_RULE`. ``enrolled`` (true/false, default false): the
    enrolled's own level too (:func:`enrolled_selection`). A bad value or an unknown key
    is exit 2 naming it."""
    from puhui.errors import InputError

    if not isinstance(table, dict):
        raise InputError(f"{where}: [balance] must be a table (model_bias_sd = tau); "
                         f"got {table!r}")
    unknown = sorted(set(table) - {"model_bias_sd", "full_credibility_events", "enrolled"})
    if unknown:
        raise InputError(f"{where}: [balance] has no key {unknown[0]!r}; its keys are "
                         f"model_bias_sd, full_credibility_events (one of them) and enrolled")
    if not isinstance(table.get("enrolled", False), bool):
        raise InputError(f"{where}: [balance] enrolled = {table['enrolled']!r}; give true "
                         f"(carry the enrolled's own level to the book) or false")
    given = [k for k in ("model_bias_sd", "full_credibility_events") if k in table]
    if len(given) > 1:
        raise InputError(f"{where}: [balance] gives both model_bias_sd and "
                         f"full_credibility_events; give one (model_bias_sd: Bühlmann, the "
                         f"shipped rule; full_credibility_events: limited fluctuation)")
    if not given:
        return DEFAULT_RULE
    key = given[0]
    v = table[key]
    low, top = (0.001, 10.0) if key == "model_bias_sd" else (1.0, 1e9)
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not low <= v <= top):
        what = ("the spread of the model's level error, from 0.001 to 10 (0.15 is the "
                "shipped assumption)" if key == "model_bias_sd"
                else "a number of events from 1 to 1e9 (1082 is the 90 % / +-5 % standard)")
        raise InputError(f"{where}: [balance] {key} = {v!r}; give {what}")
    return BalanceRule("buhlmann" if key == "model_bias_sd" else "limited_fluctuation",
                       float(v))
