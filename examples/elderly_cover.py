"""The elderly cover (elderly-medical-60-80: entry at 60-80, renewable to 100) priced
over its lifetime on a cut of the sample (its first 1,000 persons), as ``puhui price``
prices it: level premiums by entry age (death only, and with lapse), the step-rated
schedule, the loss ratio of the filed schedule, claims by attained age."""

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(1000)
pricer = puhui.Pricer("elderly-medical-60-80", seed=1).fit(fund)
print(f"{pricer.product_.id} ({pricer.product_.name}) on {fund}")
print("\nlevel premium by entry age, yuan a year (today's money):")
print(pricer.lifetime_[["level_pure_premium", "level_gross_premium",
                        "level_gross_premium_with_lapse", "pv_claims", "premium_annuity",
                        "peak_reserve", "loss_ratio_at_filed_schedule"]].to_string())
print("\nstep-rated schedule (premium by attained-age band), yuan a year:")
print(pricer.step_rated_.to_string(index=False))
lr = pricer.pricing_["lifetime"]["loss_ratio_at_filed_schedule"]
if lr:
    print(f"\nfiled schedule: lifetime loss ratio {lr['entrants_mix']:.1%} over the entrants' "
          f"mix, first year {lr['first_year_eligible_mix']:.1%}")
print("\nexpected claims per person-year by attained age, yuan:")
print(pricer.claims_by_age_.loc[[60, 70, 80, 90, 100]].to_string())
