"""Survival: mortality of the fund data against the CL tables (:mod:`.mortality`) and
lifelines models on the age time scale (:mod:`.lifetime`)."""
