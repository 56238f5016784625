"""Validation: survival models on the Canadian joint-and-last-survivor annuitant couples
(Frees, Carriere and Valdez 1995; survival/canlifins.csv under PUHUI_EXTERNAL_DATA, docs/domain.md Sources): each
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
equals the entry age for such lives). Skipped when the data is absent.

The same checks on scikit-survival's ``flchain`` (7,874 residents of Olmsted County,
Minnesota, aged 50-101 at a serum sample in 1995-2003, followed to death or 2009):
entry at the age of the sample (whole years, the middle of the year taken), exit
``futime`` days later. Also a Cox model on the age scale with entry of sex, the
serum free light chain's top two deciles (``flc.grp`` 9-10) and MGUS: lifelines
against statsmodels' PHReg (an independent implementation), and the sex hazard ratio
by age window (the proportional-hazards check). Read from scikit-survival when it is
installed, else from ``--flchain PATH`` (the ``flchain.arff`` in its wheel); skipped
when neither. The figures go into docs/validation.md.

    python benchmarks/bench_survival_external.py [--flchain PATH]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from bench_synth import machine

#: the public data of docs/domain.md (Sources), never in the repository: the folder
#: PUHUI_EXTERNAL_DATA names (default: the developers' folder beside the project, below)
EXTERNAL = Path(os.environ.get("PUHUI_EXTERNAL_DATA")
                or Path(__file__).resolve().parents[2] / "shared" / "external")
DATA = EXTERNAL / "survival" / "canlifins.csv"


def lifelines_gompertz(entry, exit, died):
    """Gompertz by lifelines' generic parametric fitter (puhui.survival.mortality.gompertz_mle)."""
    from puhui.survival.mortality import gompertz_mle

    g = gompertz_mle(entry, exit, died)
    return g["a"], g["b"], g["se_a"], g["se_b"]


def read_flchain(path: str | None):
    """flchain as a DataFrame, from scikit-survival or an ARFF file; None when absent."""
    import pandas as pd

    try:
        from sksurv.datasets import load_flchain

        x, y = load_flchain()
        d = pd.DataFrame(x).assign(futime=y["futime"], death=y["death"])
        return d.rename(columns={"flc.grp": "flc_grp", "sample.yr": "sample_yr"})
    except ImportError:
        pass
    if not path or not Path(path).exists():
        return None
    from scipy.io import arff

    raw, _ = arff.loadarff(path)
    d = pd.DataFrame(raw)
    for c in d.columns:
        if d[c].dtype == object:
            d[c] = d[c].str.decode("utf-8")
    d["death"] = d["death"] == "dead"
    return d.rename(columns={"flc.grp": "flc_grp", "sample.yr": "sample_yr"})


def checks(label: str, entry, exit, died, table: str, from_age: float = 60) -> None:
    """Kaplan-Meier, Gompertz two ways and A/E against a CL table, ages from_age-100."""
    import pandas as pd

    from puhui.mortality import cl_table
    from puhui.survival.lifetime import kaplan_meier
    from puhui.survival.mortality import gompertz_glm, single_age_exposure

    lt = pd.DataFrame({"entry": entry, "exit": exit, "died": died})
    km = kaplan_meier(lt, label, from_age=from_age)
    s70, s80, s90 = km.survival_function_at_times([70, 80, 90]).to_numpy()
    cells = single_age_exposure(entry, exit, died)
    cells = cells[(cells["age"] >= from_age) & (cells["age"] <= 100)]
    g = gompertz_glm(cells)
    w = exit > from_age
    e2, x2 = np.maximum(entry[w], from_age), np.minimum(exit[w], 101)
    la, lb, lsa, lsb = lifelines_gompertz(e2, x2, died[w] & (exit[w] <= 101))
    q = cl_table()[table]
    ages = cells["age"].to_numpy(dtype=int)
    mu_cl = -np.log(1 - q.reindex(np.minimum(ages, q.index.max())).to_numpy())
    expected = float((cells["exposure"].to_numpy() * mu_cl).sum())
    print(f"{label}: {len(entry):,} lives, {int(died.sum()):,} deaths, "
          f"{cells['exposure'].sum():,.0f} years at ages {from_age:.0f}-100; entry ages "
          f"{np.median(entry):.1f} median")
    print(f"  Kaplan-Meier (late entry): P(reach 80 | alive at 70) = {s80 / s70:.4f}, "
          f"P(reach 90 | 70) = {s90 / s70:.4f}")
    print(f"  Gompertz, puhui Poisson GLM by single age: a = {g['a']:.3f} (se {g['se_a']:.3f}),"
          f" b = {g['b']:.4f} (se {g['se_b']:.4f})")
    print(f"  Gompertz, lifelines continuous-time MLE:   a = {la:.3f} (se {lsa:.3f}),"
          f" b = {lb:.4f} (se {lsb:.4f})")
    print(f"  deaths against {table}: A/E = {g['deaths']} / {expected:.1f} = "
          f"{g['deaths'] / expected:.3f}")


def canadian() -> None:
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return
    import pandas as pd

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
        checks(sex, entry[ok], exit[ok], died[ok], table)


def flchain(path: str | None) -> None:
    import pandas as pd
    from statsmodels.duration.hazard_regression import PHReg

    from puhui.survival.lifetime import fit_cox, hazard_ratios_by_age

    d = read_flchain(path)
    if d is None:
        print("skipped flchain: scikit-survival is not installed and no --flchain file")
        return
    entry = d["age"].to_numpy(dtype=float) + 0.5
    exit = entry + d["futime"].to_numpy(dtype=float) / 365.25
    died = d["death"].to_numpy(dtype=bool)
    print(f"\nflchain: {len(d):,} people, {int(died.sum()):,} deaths")
    for sex, s, table in (("men", "M", "CL1"), ("women", "F", "CL2")):
        on = (d["sex"] == s).to_numpy() & (exit > entry)
        checks(f"flchain {sex}", entry[on], exit[on], died[on], table, from_age=60)
    lt = pd.DataFrame({"entry": entry, "exit": exit, "died": died,
                       "male": (d["sex"] == "M").to_numpy(int),
                       "flc_high": d["flc_grp"].astype(int).isin([9, 10]).to_numpy(int),
                       "mgus": (d["mgus"].astype(str).isin(["yes", "1", "1.0"])).to_numpy(int)})
    lt = lt[lt["exit"] > lt["entry"]]
    cov = ["male", "flc_high", "mgus"]
    cox = fit_cox(lt, cov)
    ref = PHReg(lt["exit"].to_numpy(), lt[cov].to_numpy(float), status=lt["died"].to_numpy(int),
                entry=lt["entry"].to_numpy(), ties="efron").fit()
    print("  Cox on the age scale with entry (lifelines | statsmodels PHReg):")
    for i, c in enumerate(cov):
        print(f"    {c:9s} HR {np.exp(cox.params_[c]):.3f} (coef {cox.params_[c]:.4f}, se "
              f"{cox.standard_errors_[c]:.4f}) | coef {ref.params[i]:.4f}, se {ref.bse[i]:.4f}")
    hr = hazard_ratios_by_age(lt, "male", [(50, 70), (70, 85), (85, 110)])
    print("  men / women by age window (PH check): " + ", ".join(
        f"{r.from_age}-{r.to_age}: {r.hazard_ratio:.2f} ({r.lower_95:.2f}-{r.upper_95:.2f})"
        for r in hr.itertuples()))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flchain", default=None, help="flchain.arff when scikit-survival is absent")
    args = ap.parse_args()
    print(machine())
    canadian()
    flchain(args.flchain)


if __name__ == "__main__":
    main()
