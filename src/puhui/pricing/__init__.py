"""Pricing: experience, frequency-severity models, the premium (issue "Pricing").

So far: :mod:`puhui.pricing.experience`, the product's benefits applied to the fund
data as if the product had been in force.
"""
