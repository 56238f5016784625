"""Benchmark: Poisson frequency GLM on the French motor MTPL data (freMTPL2), set up as
the glum tutorial and scikit-learn's "Tweedie regression on insurance claims" example
set it up, so the mean Poisson deviance can be held against the published figure.

Set-up (ours, stated because it moves the figure): ClaimNb clipped at 4, Exposure at 1;
VehAge and DrivAge in 10 quantile bins, VehBrand, VehPower, VehGas, Region and Area as
categories, BonusMalus as a number, log(Density) as a number; a random 90 / 10 split with
seed 0 (the glum tutorial's proportion; its exact rows are not published with the
figure); an unpenalised Poisson GLM with log exposure as offset, fitted with statsmodels
(the package's GLM engine) and, as an independent check, with scikit-learn's
PoissonRegressor (alpha 0) on the same design; the mean Poisson deviance of the
frequency, weighted by exposure.

Published (docs/domain.md, Sources): about 0.457 train, 0.458 test (glum tutorial).
Skipped when the data is absent.

    python benchmarks/bench_mtpl.py
"""

from __future__ import annotations

import sys
import time
import os
from pathlib import Path

import numpy as np

from bench_synth import machine

#: the public data of docs/domain.md (Sources), never in the repository: the folder
#: PUHUI_EXTERNAL_DATA names (default: the developers' folder beside the project, below)
EXTERNAL = Path(os.environ.get("PUHUI_EXTERNAL_DATA")
                or Path(__file__).resolve().parents[2] / "shared" / "external")
DATA = EXTERNAL / "motor_mtpl" / "freMTPL2freq_677991.parquet"


def main() -> None:
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return
    import pandas as pd
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from sklearn.linear_model import PoissonRegressor
    from sklearn.metrics import mean_poisson_deviance
    from sklearn.model_selection import train_test_split

    print(machine())
    t0 = time.perf_counter()
    df = pd.read_parquet(DATA, engine="pyarrow")
    df["ClaimNb"] = df["ClaimNb"].clip(upper=4)
    df["Exposure"] = df["Exposure"].clip(upper=1)
    for col in ("VehAge", "DrivAge"):
        df[col + "_bin"] = pd.qcut(df[col].astype(float), 10, duplicates="drop").astype(str)
    for col in ("VehBrand", "VehPower", "VehGas", "Region", "Area"):
        df[col] = df[col].astype(str)
    df["BonusMalus"] = df["BonusMalus"].astype(float)
    df["logDensity"] = np.log(df["Density"].astype(float))
    train, test = train_test_split(df, test_size=0.1, random_state=0)
    formula = ("ClaimNb ~ C(VehAge_bin) + C(DrivAge_bin) + C(VehBrand) + C(VehPower) + "
               "C(VehGas) + C(Region) + C(Area) + BonusMalus + logDensity")
    res = smf.glm(formula, data=train, family=sm.families.Poisson(),
                  offset=np.log(train["Exposure"].to_numpy())).fit()
    out = {}
    for name, part in (("train", train), ("test", test)):
        freq = res.predict(part, offset=np.zeros(len(part))).to_numpy()
        out[name] = mean_poisson_deviance(part["ClaimNb"] / part["Exposure"], freq,
                                          sample_weight=part["Exposure"])
    t_sm = time.perf_counter() - t0
    # independent fit: scikit-learn on the same design (statsmodels' own design matrix)
    X = res.model.exog[:, 1:]
    y = (train["ClaimNb"] / train["Exposure"]).to_numpy()
    sk = PoissonRegressor(alpha=0.0, solver="newton-cholesky", max_iter=100, tol=1e-10).fit(
        X, y, sample_weight=train["Exposure"].to_numpy())
    dev_sk = mean_poisson_deviance(y, sk.predict(X), sample_weight=train["Exposure"])
    coef_diff = float(np.max(np.abs(sk.coef_ - res.params.to_numpy()[1:])))
    print(f"{len(train):,} train / {len(test):,} test policies; {len(res.params)} coefficients")
    print(f"mean Poisson deviance (statsmodels): train {out['train']:.4f}, test {out['test']:.4f} "
          f"(published glum tutorial: 0.457 / 0.458; difference "
          f"{out['train'] - 0.457:+.4f} / {out['test'] - 0.458:+.4f})")
    print(f"scikit-learn PoissonRegressor on the same design: train deviance {dev_sk:.4f}; "
          f"largest coefficient difference {coef_diff:.2e}")
    print(f"fit and scoring: {t_sm:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
