"""Payer tiers: the layer engine and the basic-insurance tier built on it.

A *layer* pays a ratio of a base amount above a deductible, up to a limit, keeping
running accumulators per person and period. The basic tier (pooled fund,
supplementary fund, critical-illness insurance, medical assistance) and every
commercial benefit are layers; :mod:`puhui.tiers.waterfall` runs a list of them.
"""
