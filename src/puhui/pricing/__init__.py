"""Pricing: experience, frequency-severity models, the premium (issue "Pricing").

So far (docs/pricing.md): :mod:`~puhui.pricing.experience` (the product applied as if in
force), :mod:`~puhui.pricing.frequency` and :mod:`~puhui.pricing.severity` (GLMs on rating
cells), :mod:`~puhui.pricing.aggregate` (Panjer, the expected benefit). ``puhui price`` is
not built yet.
"""
