"""Risk transfer in the price: a treaty set (:mod:`puhui.reserving.treaty_basis`) applied
in order to the priced product year, gross -> net of each treaty in turn, for
``pricing.json``'s ``risk_transfer`` (``puhui price --treaties FILE``; docs/pricing.md,
"Risk transfer").

The year is the pricing's own simulation (:func:`puhui.pricing.premium._step_loss_ratio`):
per draw i of the parameters, the year's claims T_i ~ gamma with mean n m_i and variance
n v (n policies, m_i the drawn pure premium, v the process variance per policy). Each
treaty acts on those simulated years, in fen, with :mod:`puhui.reserving.treaties`:

- quota share q: ceded_i = round(q T_i); m_i and v scale by (1 - q) and (1 - q)^2 (T
  stays gamma); ceded premium q P, less the commission;
- per-person excess of loss R xs... L: from one person's payout distribution per cell
  (:class:`~puhui.pricing.person_payout.PersonPayout`), c = E[min(max(X - R, 0), L)] and
  the variance the layer takes, dV = Var[X] - Var[X - layer] (mix-weighted within-cell
  figures, as the pricing's v); the net year is gamma with mean n m_i (1 - c / m) and
  variance n (v - dV), coupled to the gross by its quantile (u_i = F_gross(T_i),
  net_i = F_net^-1(u_i): the same years, a bad one stays bad); parameter draws move
  the layer in proportion to the whole (an approximation: a layer is more sensitive to
  severity than the ground-up cost);
- aggregate stop loss: ceded_i = min(max(T_i - a P, 0), w P) on the subject premium P,
  the expected cost and its Monte Carlo standard error from the simulated years.

Premiums: quota share q P less the commission on it; the others expected ceded x (1 +
loading) (a stop loss may give a rate of P instead). The subject premium of a treaty is
the premium left after the quota shares before it. The net premium is the gross less
every reinsurance premium; the net loss ratio is the net expected claims over it, its
interval the simulated net years over it; the capital is VaR_q of the simulated net
year less its mean (:func:`puhui.reserving.treaties.net_capital`'s definition). Each
treaty is also shown ``alone``: on its own on the gross years.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc, gammaincinv

from puhui.money import apply_ratio
from puhui.reserving.treaties import quota_share_ceded, stop_loss_ceded

BP = 10_000


@dataclass
class SimYear:
    """The simulated product years as the treaties so far leave them: totals in fen per
    draw, the drawn mean per policy (yuan), the process variance per policy (yuan^2),
    the expected claims per policy (yuan), the subject premium in fen, and whether the
    totals are still the gamma of the mean and variance (false after a stop loss)."""

    totals: np.ndarray
    mean_draws: np.ndarray
    var_policy: float
    expected: float
    premium_fen: int
    policies: int
    gamma: bool = True


def person_layers(payout, w: np.ndarray, treaties) -> dict[str, dict]:
    """For every per-person treaty (quota shares before an excess of loss scale the
    person's amount; an excess of loss's net goes to the next), the mix-weighted
    E[ceded], Var before and after, and E[X] before, per policy in yuan: {treaty id:
    {"ceded", "var_before", "var_after", "mean_before"}}. Per cell, from its pmf."""
    chain = []
    for t in treaties:
        if t.kind == "stop_loss":
            break
        chain.append(t)
    if not any(t.kind == "excess_of_loss" for t in chain):
        return {}
    acc = {t.id: np.zeros(4) for t in chain if t.kind == "excess_of_loss"}
    wn = np.asarray(w, dtype=float) / float(np.sum(w))
    for i in np.flatnonzero(wn > 0):
        p, span = payout.cell_pmf(int(i))
        for tid, m in cell_layers(p, span, chain).items():
            acc[tid] += wn[i] * m
    return {tid: dict(zip(("ceded", "var_before", "var_after", "mean_before"), map(float, a)))
            for tid, a in acc.items()}


def cell_layers(p: np.ndarray, span: float, chain) -> dict[str, np.ndarray]:
    """One cell's person amount x_k = k span through the per-person treaties in order:
    per excess of loss, [E[ceded], Var before, Var after, E before] (yuan)."""
    v = np.arange(len(p)) * span
    out = {}
    for t in chain:
        if t.kind == "quota_share":
            v = v * (1 - t.share_bp / BP)
            continue
        c = np.minimum(np.maximum(v - t.retention_fen / 100, 0.0), t.limit_fen / 100)
        m = float(p @ v)
        n = v - c
        out[t.id] = np.array([float(p @ c), float(p @ (v * v)) - m * m,
                              float(p @ (n * n)) - float(p @ n) ** 2, m])
        v = n
    return out


def apply_quota_share(s: SimYear, t) -> dict:
    """A quota share on the simulated years (module docstring); the treaty's figures in
    fen."""
    q = t.share_bp / BP
    ceded = quota_share_ceded(s.totals, t.share_bp)
    expected = s.expected * q * s.policies
    ceded_premium = int(apply_ratio(s.premium_fen, t.share_bp))
    commission = int(apply_ratio(ceded_premium, t.commission_bp))
    s.totals = s.totals - ceded
    s.mean_draws, s.var_policy = s.mean_draws * (1 - q), s.var_policy * (1 - q) ** 2
    s.expected *= 1 - q
    s.premium_fen -= ceded_premium
    return {"expected_ceded_fen": expected * 100, "ceded_premium_fen": ceded_premium,
            "ceding_commission_fen": commission,
            "reinsurance_premium_fen": ceded_premium - commission}


def gamma_coupled(totals_yuan, mean_from, var_from, mean_to, var_to) -> np.ndarray:
    """Each total moved to the same quantile of another gamma: u = F(x; k1, th1), x' =
    F^-1(u; k2, th2), with shape k = mean^2 / var and scale th = var / mean (a mean of 0
    gives 0)."""
    out = np.zeros_like(np.asarray(totals_yuan, dtype=float))
    on = (mean_from > 0) & (mean_to > 0)
    k1, th1 = mean_from[on] ** 2 / var_from, var_from / mean_from[on]
    k2, th2 = mean_to[on] ** 2 / var_to, var_to / mean_to[on]
    u = gammainc(k1, totals_yuan[on] / th1)
    out[on] = gammaincinv(k2, u) * th2
    return out


def apply_excess_of_loss(s: SimYear, t, layer: dict) -> dict:
    """A per-person excess of loss on the simulated years (module docstring). The layer
    takes the share r = E[ceded] / E[X] of the person distribution's mean (its own
    mean, 189.81 yuan on the sample, is not the pricing's expected claims, 199.55): the
    expected ceded is r x the pricing's expected claims, and the variance keeps the
    distribution's proportion Var after / Var before (review s23: subtracting the
    distribution's E[ceded] from the pricing's mean left 9.74 yuan a policy under a layer
    taking everything, and could go negative)."""
    n = s.policies
    mean_x = layer["mean_before"]
    share = min(max(layer["ceded"] / mean_x, 0.0), 1.0) if mean_x > 0 else 0.0
    c = share * s.expected
    shrink = 1 - share
    keep = layer["var_after"] / layer["var_before"] if layer["var_before"] > 0 else 1.0
    var_to = max(s.var_policy * keep, 1e-9)
    net = gamma_coupled(s.totals / 100, s.mean_draws * n, max(s.var_policy * n, 1e-9),
                        s.mean_draws * shrink * n, var_to * n)
    s.totals = np.rint(net * 100).astype(np.int64)
    s.mean_draws, s.var_policy = s.mean_draws * shrink, var_to
    s.expected -= c
    expected = c * n * 100
    return {"expected_ceded_fen": expected,
            "reinsurance_premium_fen": expected * (1 + t.loading_bp / BP),
            "person_mean_before": layer["mean_before"]}


def apply_stop_loss(s: SimYear, t) -> dict:
    """An aggregate stop loss on the simulated years (module docstring)."""
    ceded = stop_loss_ceded(s.totals, s.premium_fen, t.attachment_bp, t.width_bp)
    e = float(ceded.mean())
    se = float(ceded.std(ddof=1) / np.sqrt(len(ceded))) if len(ceded) > 1 else 0.0
    s.totals = s.totals - ceded
    s.expected -= e / 100 / s.policies
    s.gamma = False
    premium = (e * (1 + t.loading_bp / BP) if t.loading_bp is not None
               else float(apply_ratio(s.premium_fen, t.rate_bp)))
    return {"expected_ceded_fen": e, "monte_carlo_se_fen": se,
            "reinsurance_premium_fen": premium,
            "probability_of_a_recovery": float((ceded > 0).mean())}


def apply_treaty(s: SimYear, t, layers: dict) -> dict:
    """One treaty of the set on the simulated years; its figures in fen."""
    if t.kind == "quota_share":
        return apply_quota_share(s, t)
    if t.kind == "excess_of_loss":
        return apply_excess_of_loss(s, t, layers[t.id])
    return apply_stop_loss(s, t)


def _yuan(fen: float) -> float:
    return round(float(fen) / 100, 2)


def position(s: SimYear, premium_fen: float, level: float, quantile: float) -> dict:
    """The position the treaties so far leave: premium, expected claims, the expected
    loss ratio and its interval at ``level`` over the simulated years, and VaR at
    ``quantile`` of the year's claims less their mean (the capital)."""
    n = s.policies
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    var = float(np.quantile(s.totals, quantile, method="inverted_cdf"))
    out = {"premium_total": _yuan(premium_fen), "premium_per_policy": _yuan(premium_fen / n),
           "expected_claims_total": _yuan(s.expected * n * 100),
           "expected_claims_per_policy": round(s.expected, 2),
           "expected_loss_ratio": None,
           "loss_ratio_interval": {"level": level, "lower": None, "upper": None}}
    if premium_fen > 0:
        lr = s.totals / premium_fen
        out["expected_loss_ratio"] = round(s.expected * n * 100 / premium_fen, 4)
        out["loss_ratio_interval"].update(lower=round(float(np.quantile(lr, lo)), 4),
                                          upper=round(float(np.quantile(lr, hi)), 4))
    else:
        out["note"] = ("the reinsurance premiums take the whole premium: no premium is "
                       "kept, so no loss ratio")
    return {**out,
            "claims_at_quantile_total": _yuan(var),
            "capital_total": _yuan(var - float(s.totals.mean())),
            "capital_per_policy": _yuan((var - float(s.totals.mean())) / n)}


def treaty_terms(t) -> dict:
    """A treaty's terms as its file states them (yuan, ratios)."""
    terms = {"quota_share": {"share": t.share_bp / BP, "ceding_commission": t.commission_bp / BP},
             "stop_loss": {"attachment": t.attachment_bp / BP, "width": t.width_bp / BP},
             "excess_of_loss": {"retention": t.retention_fen / 100,
                                "limit": t.limit_fen / 100}}[t.kind]
    if t.loading_bp is not None:
        terms["loading"] = t.loading_bp / BP
    if t.rate_bp is not None:
        terms["rate"] = t.rate_bp / BP
    return terms


def treaty_figures(t, got: dict, n: int) -> dict:
    """One treaty's line of ``risk_transfer.treaties``: its terms and what it takes,
    per policy and in total (yuan)."""
    row = {"id": t.id, "kind": t.kind, **treaty_terms(t)}
    for key in ("expected_ceded", "reinsurance_premium", "ceded_premium",
                "ceding_commission", "monte_carlo_se"):
        if f"{key}_fen" in got:
            row[f"{key}_total"] = _yuan(got[f"{key}_fen"])
            row[f"{key}_per_policy"] = _yuan(got[f"{key}_fen"] / n)
    if "probability_of_a_recovery" in got:
        row["probability_of_a_recovery"] = round(got["probability_of_a_recovery"], 4)
    if "person_mean_before" in got:
        row["person_payout_mean"] = round(got["person_mean_before"], 2)
    return row


def risk_transfer(ts, s: SimYear, layers: dict, layers_for, level: float) -> dict:
    """``pricing.json``'s ``risk_transfer``: the gross position, each treaty in order
    with the position it leaves, and the net; beside each, the treaty ``alone`` on the
    gross (module docstring). ``layers``: :func:`person_layers` of the set;
    ``layers_for(treaties)`` the same of another list (a treaty alone)."""
    gross = dataclasses.replace(s, totals=s.totals.copy(), mean_draws=s.mean_draws.copy())
    spent = 0.0
    out = {"treaty_set": ts.id, "file": ts.path.name, "illustrative": ts.illustrative,
           "capital_quantile": ts.capital_quantile, "policies": s.policies,
           "gross": position(s, s.premium_fen, level, ts.capital_quantile), "treaties": []}
    for t in ts.treaties:
        got = apply_treaty(s, t, layers)
        spent += got["reinsurance_premium_fen"]
        row = treaty_figures(t, got, s.policies)
        row["net_after"] = position(s, gross.premium_fen - spent, level, ts.capital_quantile)
        row["alone"] = alone(gross, t, layers_for, level, ts.capital_quantile)
        out["treaties"].append(row)
    out["net"] = out["treaties"][-1]["net_after"]
    return out


def alone(gross: SimYear, t, layers_for, level: float, quantile: float) -> dict:
    """Treaty ``t`` on its own on the gross years (a copy): what it cedes and costs, and
    the position it leaves."""
    s = dataclasses.replace(gross, totals=gross.totals.copy(),
                            mean_draws=gross.mean_draws.copy())
    got = apply_treaty(s, t, layers_for((t,)) if t.kind == "excess_of_loss" else {})
    row = {k: v for k, v in treaty_figures(t, got, s.policies).items()
           if k.endswith(("_total", "_per_policy"))}
    row["net_after"] = position(s, gross.premium_fen - got["reinsurance_premium_fen"],
                                level, quantile)
    return row
