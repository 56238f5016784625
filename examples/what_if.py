"""What-if re-pricing: huhuibao-2025 priced on a cut of the sample (its first 1,000
persons), then changes of terms re-priced from the fitted models without refitting, as
``puhui what-if`` does: from the fitted Pricer, and from the folder a pricing wrote."""

import tempfile

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(1000)
pricer = puhui.Pricer("huhuibao-2025", seed=1).fit(fund)
print(f"{pricer.product_.id} on {fund}: gross premium {pricer.gross_premium_:,.2f} yuan")

for benefit, change in [("hospital", {"deductible": 20000}),
                        ("special_drugs", {"preexisting_ratio": 0.2})]:
    t = pricer.what_if(benefit, **change)
    terms = ", ".join(f"{k} {v:g}" for k, v in change.items())
    print(f"\n{benefit} with {terms} (yuan per policy):")
    print(t.round(2).to_string())

folder = pricer.write(tempfile.mkdtemp())           # what `puhui price --out` writes
t = puhui.what_if(folder, "hospital", deductible=20000)
print(f"\nfrom the folder {folder}: total gross {t.loc['total', 'gross_before']:,.2f} -> "
      f"{t.loc['total', 'gross_after']:,.2f} yuan")
