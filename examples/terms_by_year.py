"""Each policy year's settlements under its own product's terms: huhuibao-2024 pays the
2024 policies, huhuibao-2025 the 2025 ones (``adjudicate`` applies only the policies of
the product it is given, so a 2024 settlement is never paid under 2025 terms). On the
sample's first 5,000 persons, so it runs in seconds; drop ``.head(5000)`` for all 20,000."""

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(5000)
for product in ("huhuibao-2024", "huhuibao-2025"):
    eob = puhui.adjudicate(fund.settlements, fund.policies, product, lines=fund.lines)
    p = puhui.load_product(product)
    policies = int((fund.policies["product_id"] == product).sum())
    paid = eob["payout_amt"].sum()
    print(f"{product} ({p.start} to {p.end}): {policies:,} policies, paid {paid:,.2f} yuan, "
          f"{paid / policies:,.2f} yuan per policy")
