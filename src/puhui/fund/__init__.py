"""Anonymised basic-medical-insurance fund data: schema, Parquet I/O, validation, privacy."""
