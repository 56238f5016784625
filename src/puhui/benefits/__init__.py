"""The benefit calculator: what a product pays per settlement and benefit (vectorised and
per-settlement faces), its quantities and its reason codes. Products: :mod:`puhui.products`."""
