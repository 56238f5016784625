"""Validation: survival models on the Canadian joint-and-last-survivor annuitant couples
(Frees, Carriere and Valdez 1995; ../shared/external/survival/canlifins.csv): each
spouse observed from an entry age (left truncation) to death or the end of the study.

Per sex:
- Kaplan-Meier with late entry (lifelines): the chance of reaching 80 and 90 for
  someone alive at 70;
- Gompertz mu(x) = exp(a + b x) two ways: puhui's Poisson GLM on deaths and years lived
  by single age (statsmodels, force constant within each year of age), and lifelines'
  maximum likelihood in continuous time (a ParametricUnivariateFitter with the
  Gompertz cumulative hazard, entries as left truncation) - an independent
  implementation of the same law;
- the deaths against the CL 2010-2013 tables (CL1 men, CL2 women: Chinese insured lives,
  not Canadian annuitants), expected = sum over single ages of exposure x mu_CL,
  mu_CL = -ln(1 - q).

Reading the file: a death is DeathTime years after entry; a life alive at the end is
censored AnnuityExpiredM years after entry (the couple's contract; the file's ExitAge
equals the entry age for such lives). Skipped when the data is absent. The figures go into docs/validation.md.

    python benchmarks/bench_survival_external.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench_synth import machine

DATA = Path(__file__).resolve().parents[2] / "shared" / "external" / "survival" / "canlifins.csv"


def lifelines_gompertz(entry, exit, died):
    """Gompertz by lifelines' generic parametric fitter (autograd likelihood)."""
    import autograd.numpy as anp
    from lifelines.fitters import ParametricUnivariateFitter

    class GompertzFitter(ParametricUnivariateFitter):
        _fitted_parameter_names = ["a_", "b_"]
        _bounds = [(None, None), (1e-6, None)]

        def _cumulative_hazard(self, params, times):
            a, b = params
            return anp.exp(a) / b * (anp.exp(b * times) - 1)

    f = GompertzFitter().fit(exit, event_observed=died, entry=entry,
                             initial_point=np.array([-10.0, 0.1]))
    se = f.summary["se(coef)"]
    return f.params_["a_"], f.params_["b_"], se["a_"], se["b_"]


def main() -> None:
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return
    import pandas as pd

    from puhui.mortality import cl_table
    from puhui.survival.lifetime import kaplan_meier
    from puhui.survival.mortality import gompertz_glm, single_age_exposure

    print(machine())
    d = pd.read_csv(DATA)
    print(f"{DATA.name}: {len(d):,} couples")
    for sex, s, table in (("men", "M", "CL1"), ("women", "F", "CL2")):
        # a death is DeathTime years after entry; a life still alive is censored when
        # the couple's contract leaves observation, AnnuityExpiredM years after entry
        # (the file's ExitAge is the entry age for them, and AnnuityExpiredF is empty)
        entry = d[f"EntryAge{s}"].to_numpy()
        died = d[f"IsDead{s}"].to_numpy() == 1
        exit = entry + np.where(died, d[f"DeathTime{s}"].to_numpy(),
                                d["AnnuityExpiredM"].to_numpy())
        ok = np.isfinite(entry) & np.isfinite(exit) & (exit > entry)
        entry, exit, died = entry[ok], exit[ok], died[ok]
        lt = pd.DataFrame({"entry": entry, "exit": exit, "died": died})
        km = kaplan_meier(lt, sex, from_age=60)     # few lives at risk below 60
        s70, s80, s90 = km.survival_function_at_times([70, 80, 90]).to_numpy()
        cells = single_age_exposure(entry, exit, died)
        cells = cells[(cells["age"] >= 60) & (cells["age"] <= 100)]
        g = gompertz_glm(cells)
        # the same window for lifelines: observed from 60, censored at 101
        w = exit > 60
        e2, x2 = np.maximum(entry[w], 60), np.minimum(exit[w], 101)
        la, lb, lsa, lsb = lifelines_gompertz(e2, x2, died[w] & (exit[w] <= 101))
        q = cl_table()[table]
        ages = cells["age"].to_numpy(dtype=int)
        mu_cl = -np.log(1 - q.reindex(np.minimum(ages, q.index.max())).to_numpy())
        expected = float((cells["exposure"].to_numpy() * mu_cl).sum())
        print(f"{sex}: {len(entry):,} lives, {int(died.sum()):,} deaths, "
              f"{cells['exposure'].sum():,.0f} years at ages 60-100; entry ages "
              f"{np.median(entry):.1f} median")
        print(f"  Kaplan-Meier (late entry): P(reach 80 | alive at 70) = {s80 / s70:.4f}, "
              f"P(reach 90 | 70) = {s90 / s70:.4f}")
        print(f"  Gompertz, puhui Poisson GLM by single age: a = {g['a']:.3f} (se {g['se_a']:.3f}),"
              f" b = {g['b']:.4f} (se {g['se_b']:.4f})")
        print(f"  Gompertz, lifelines continuous-time MLE:   a = {la:.3f} (se {lsa:.3f}),"
              f" b = {lb:.4f} (se {lsb:.4f})")
        print(f"  deaths against {table}: A/E = {g['deaths']} / {expected:.1f} = "
              f"{g['deaths'] / expected:.3f}")


if __name__ == "__main__":
    main()
