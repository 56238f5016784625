"""The survival fits of ``puhui survival`` on a cut of the sample (its first 3,000
persons): deaths against the CL 2010-2013 tables, the Gompertz force by sex, lapse
rates and the persistency curve, the Cox model of the first hospital admission."""

import sys
import tempfile
from pathlib import Path

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(3000)
fit = puhui.Survival(max_people=3000, seed=0).fit(fund)
m = fit.figures_["mortality"]
print(f"{fund}: {fit.years_[0]}-{fit.years_[1]}, {m['person_years']:,} person-years, "
      f"{m['deaths']:,} deaths")
print("A/E against CL1 (men) and CL2 (women), by age band:")
print(fit.actual_to_expected_[["gender", "table", "band", "person_years", "deaths", "expected",
                               "a_to_e", "lower", "upper"]].round(3).to_string(index=False))
for r in fit.gompertz_.itertuples():
    print(f"Gompertz, {r.table}: mu(x) = exp({r.a:.3f} + {r.b:.4f} x)")
if fit.lapse_rates_ is not None:
    print("lapse rates:")
    print(fit.lapse_rates_.round(4).head(8).to_string(index=False))
if fit.admission_cox_ is not None:
    print("first hospital admission, Cox model:")
    print(fit.admission_cox_.round(3).to_string(index=False))
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "report.html"
print(f"report: {fit.report(out)}")
