"""One person's annual payout across a product's benefits, as a distribution, for a
per-person excess of loss (:mod:`puhui.pricing.risk_transfer`).

Per rating cell c, the payout X_c = sum over pricing groups of the group's annual
benefit B_gc, the groups independent (as the pricing's variance adds them):

- a group with fitted models: B = level x min(r (S - d)+, L) with S the compound sum
  :func:`~puhui.pricing.aggregate.annual_sum_pmf_of` builds for the moments (first-year
  deductible: claim-free steps are left out);
- a group priced on an external assumption blended with credibility Z
  (:mod:`puhui.pricing.external`): the mixture Z x the data's distribution + (1 - Z) x
  Poisson cases each paying P_c, with P_c = Var/E and rate E^2/Var of the external
  moments (exact: cases are Poisson with a fixed payout), the year's total capped at the
  benefit's limit;
- X_c's pmf: each B_gc put on one grid of span H yuan (each value split between its two
  grid points so the mean is kept) and convolved by FFT (the grid holds the sum of the
  limits, so nothing wraps), then scaled by the cell's credibility factor (the pricing
  scales the cell's cost and variance the same way).

Left out: drug-agreement refunds and clawbacks, claim-free deductible steps, a group
whose benefits share a deductible priced jointly is one B (as the pricing does).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import poisson

from puhui.pricing.aggregate import annual_sum_pmf_of

#: Points of the person's payout grid.
GRID = 2 ** 15


def on_grid(values, probs, span: float, n: int) -> np.ndarray:
    """Probabilities of ``values`` (yuan) put on the grid k x span, k < n: each value's
    mass split between its two neighbouring points in proportion to its distance, so
    the mean is kept exactly::

        p_i += prob (1 - f),  p_{i+1} += prob f,  i = floor(v / span), f = v / span - i
    """
    pos = np.asarray(values, dtype=float) / span
    i = np.floor(pos).astype(np.int64)
    f = pos - i
    probs = np.asarray(probs, dtype=float)
    if len(i) and i.max() + 1 >= n:
        raise ValueError(f"a payout of {float(np.max(values)):,.2f} yuan is beyond the grid")
    return (np.bincount(i, probs * (1 - f), minlength=n)
            + np.bincount(i + 1, probs * f, minlength=n))[:n]


def model_payout(model, terms, comps, preexisting: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """A fitted group's annual benefit in one cell: (values in yuan, probabilities), the
    values level x min(r (k h - d)+, L) on the compound sum's grid; None if it pays
    nothing."""
    r = terms.preexisting_ratio if preexisting else terms.ratio
    pmf = annual_sum_pmf_of(comps, terms.deductible, r, terms.limit, n=model.grid)
    if pmf is None:
        return None
    g, h = pmf
    x = np.arange(len(g)) * h
    level = getattr(model, "level_", 1.0)
    return level * np.minimum(r * np.maximum(x - terms.deductible, 0.0), terms.limit), g


def external_payout(mean: float, var: float, limit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Poisson cases with a fixed payout P matched to a mean and variance (P = var /
    mean, rate = mean^2 / var), the year's sum capped at ``limit``: (values, probs)."""
    if mean <= 0 or var <= 0:
        return None
    p, lam = var / mean, mean * mean / var
    k = np.arange(int(lam + 12 * np.sqrt(lam) + 12))
    return np.minimum(k * p, limit), poisson.pmf(k, lam)


def mixed(z: float, data, ext):
    """The mixture z x data + (1 - z) x ext of two (values, probs) pairs (None: pays 0)."""
    parts = [(v, p * wt) for (v, p), wt in ((data, z), (ext, 1.0 - z))
             if v is not None and wt > 0]
    if not parts:
        return None
    return np.concatenate([v for v, _ in parts]), np.concatenate([p for _, p in parts])


class PersonPayout:
    """The per-cell distribution of one person's annual payout (module docstring), for
    the pricing's cells, groups, models and external blends."""

    def __init__(self, cells, groups, models, external, sev_trend: float,
                 cell_factor=None):
        from puhui.pricing.external import external_moments

        self.cells, self.groups, self.models = cells, groups, models
        self.sev_trend = sev_trend
        self.factor = (np.ones(len(cells)) if cell_factor is None
                       else np.asarray(cell_factor, dtype=float))
        self.pre = cells["preexisting"].astype(int).to_numpy() == 1
        self.rates = {g.id: models[g.id].rates(cells) for g in groups if models[g.id].kinds_}
        self.ext = {gid: (z, *external_moments(a, cells, next(g for g in groups
                                                               if g.id == gid)))
                    for gid, (z, a) in (external or {}).items()}
        top = sum(g.limit * max(getattr(models[g.id], "level_", 1.0), 1.0) for g in groups)
        if not np.isfinite(top):
            from puhui.errors import InputError

            raise InputError("a per-person excess of loss needs every benefit's annual limit "
                             "(a person's payout is bounded by their sum); give each benefit "
                             "of the product a limit, or leave the excess of loss out")
        self.span = top / (GRID - 2 * len(groups) - 2)

    def group_key(self, terms, i: int) -> tuple:
        """What group ``terms``' benefit in cell ``i`` depends on (cells alike in it share
        one distribution: on the sample 145 distinct of 660)."""
        comps = (self.models[terms.id].cell_components(self.rates[terms.id], i,
                                                      severity_factor=self.sev_trend)
                 if terms.id in self.rates else None)
        ext = ((float(self.ext[terms.id][1][i]), float(self.ext[terms.id][2][i]))
               if terms.id in self.ext else None)
        return terms.id, comps, bool(self.pre[i]), ext

    def group_payout(self, terms, key: tuple):
        """Group ``terms``' annual benefit for ``key`` (:meth:`group_key`): (values,
        probs) or None."""
        _, comps, pre, ext = key
        model = self.models[terms.id]
        data = model_payout(model, terms, comps, pre) if comps is not None else None
        if ext is None:
            return data
        return mixed(self.ext[terms.id][0], data if data is not None else (None, None),
                     external_payout(*ext, terms.limit) or (None, None))

    def group_transform(self, terms, i: int):
        """The rfft of group ``terms``' benefit in cell ``i`` on the grid (None: pays
        nothing), each distinct one computed once."""
        key = self.group_key(terms, i)
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            pair = self.group_payout(terms, key)
            memo[key] = (None if pair is None
                         else np.fft.rfft(on_grid(*pair, self.span, GRID)))
        return memo[key]

    def cell_pmf(self, i: int) -> tuple[np.ndarray, float]:
        """Cell ``i``'s payout pmf and its span in yuan (the credibility factor
        applied to the span)."""
        transform = np.ones(GRID // 2 + 1, dtype=complex)
        for terms in self.groups:
            t = self.group_transform(terms, i)
            if t is not None:
                transform = transform * t
        p = np.clip(np.fft.irfft(transform, n=GRID), 0.0, None)
        return p / p.sum(), self.span * float(self.factor[i])
