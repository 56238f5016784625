"""puhui: actuarial pricing and claims for China's inclusive commercial health insurance.

The Python API (docs/api.md), amounts in yuan in and out:

- :func:`read_fund` a fund-data folder as DataFrames (a :class:`Fund`), validated
- :func:`list_products`, :func:`load_product` the products of the actuarial basis
- :func:`adjudicate` what a product pays on settlements (the explanation of benefit)
- :class:`ClaimsBatch` a claims batch of ``puhui claims run`` from DataFrames into a ledger
- :func:`what_if` re-pricing changed terms from a fitted :class:`Pricer` or a priced
  folder, as ``puhui what-if``
- :func:`pay_direct` one settlement paid at once against the ledger, as ``puhui claims
  direct``
- :class:`Survival` the survival fits of ``puhui survival`` (mortality, persistency,
  first admission) as an estimator
- :class:`Pricer` the pricing of ``puhui price`` as an estimator: ``fit(fund)``, fitted
  attributes ending in ``_``

They live in :mod:`puhui.api` and are imported when first used: ``import puhui`` loads
neither pandas nor statsmodels.

Subpackages (see docs/ARCHITECTURE.md):

- :mod:`puhui.fund`   the anonymised fund-data schema, Parquet I/O, validation, privacy guard
- :mod:`puhui.tiers`  the layer engine (deductible, ratio, limit with running accumulators)
  and the basic-insurance tier built on it
- :mod:`puhui.basis`  the actuarial basis files under ``actuarial/`` (rules, drug lists, tables)
- :mod:`puhui.synth`  the synthetic city generator
"""

__version__ = "0.1.0"

#: Names of the public API and the module that defines each (imported on first use).
_LAZY = {"read_fund": "puhui.api", "load_product": "puhui.api",
         "list_products": "puhui.api", "adjudicate": "puhui.api", "Pricer": "puhui.api",
         "ClaimsBatch": "puhui.api",
         "pay_direct": "puhui.api",
         "Survival": "puhui.api",
         "what_if": "puhui.api",
         "Fund": "puhui.fund.frames", "InputError": "puhui.errors"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    """The public names, imported from their module when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'puhui' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
