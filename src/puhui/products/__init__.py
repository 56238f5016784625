"""The product-definition language: product files of ``actuarial/products/``, their
validator, and ``puhui product show / diff``."""
