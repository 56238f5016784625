"""What huhuibao-2025 pays on the sample's settlements: the explanation of benefit in
yuan, summed by benefit and by status. On the sample's first 5,000 persons, so it runs in
seconds; drop ``.head(5000)`` for all 20,000."""

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(5000)
eob = puhui.adjudicate(fund.settlements, fund.policies, "huhuibao-2025", lines=fund.lines,
                       persons=fund.persons)

by_benefit = eob.groupby("benefit")[["eligible_amt", "payout_amt"]].sum().round(2)
print("huhuibao-2025 on the sample, yuan:")
print(by_benefit.to_string())
paid = eob[eob["payout_amt"] > 0]
print(f"\npaid {eob['payout_amt'].sum():,.2f} yuan on {paid['setl_id'].nunique():,} "
      f"settlements of {paid['psn_no'].nunique():,} people")
print("rows (settlement x benefit) by status:")
print(eob["status"].value_counts().to_string())
