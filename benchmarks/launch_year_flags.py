"""Issue 18, session 21 (a measurement, no model): does a launch-year fit put the sick
non-enrolled in the pre-existing = 0 cells? Prints the 2024 as-if payout per exposure year
by enrolled x rating flag x the diagnosis rule with the look-back ending with 2024
(``preexisting_next``).

    python benchmarks/launch_year_flags.py DATA_DIR    # a city whose 2024 is the launch
"""
import sys
from pathlib import Path

import pandas as pd

from puhui.pricing.backtest import data_before
from puhui.pricing.fund_data import load_for_pricing
from puhui.pricing.premium import BuildUp, _step_experience, load_assumptions
from puhui.products.model import load_product, product_path

product = load_product(product_path("huhuibao-2025"))
assumptions, _ = load_assumptions(None)
data = data_before(load_for_pricing(Path(sys.argv[1]), product, assumptions), 2025)
s = BuildUp(product, data, assumptions)
_step_experience(s)
f = s.frame
paid = sum(f[f"payout_{b.id}"].to_numpy() for b in product.benefits) / 100.0
t = pd.DataFrame({"enrolled": f["enrolled"].astype(int), "flag": f["preexisting"].astype(int),
                  "seen_end": f["preexisting_next"].astype(int), "stayed": f["stayed"].astype(int),
                  "exp": f["exposure"], "paid": paid})
g = t.groupby(["enrolled", "flag", "seen_end"]).agg(n=("exp", "size"), exp=("exp", "sum"),
                                                   paid=("paid", "sum"))
g["per_year"] = g["paid"] / g["exp"]
print(g.round(2).to_string())
for e in (0, 1):
    x = t[(t.flag == 0) & (t.enrolled == e)]
    print(f"enrolled={e} flag=0: per year {x.paid.sum()/x.exp.sum():.2f}; of which seen_end=0 "
          f"{x[x.seen_end==0].paid.sum()/x[x.seen_end==0].exp.sum():.2f}")
