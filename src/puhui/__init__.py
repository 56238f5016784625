"""puhui: actuarial pricing and claims for China's inclusive commercial health insurance.

Subpackages (see docs/ARCHITECTURE.md):

- :mod:`puhui.fund`   the anonymised fund-data schema, Parquet I/O, validation, privacy guard
- :mod:`puhui.tiers`  the layer engine (deductible, ratio, limit with running accumulators)
  and the basic-insurance tier built on it
- :mod:`puhui.basis`  the actuarial basis files under ``actuarial/`` (rules, drug lists, tables)
- :mod:`puhui.synth`  the synthetic city generator
"""

__version__ = "0.1.0"
