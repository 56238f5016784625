"""Reserving and risk transfer: pure engines, data in and data out, money in fen.

- :mod:`puhui.reserving.triangles` paid / reported development triangles from payments
- :mod:`puhui.reserving.methods` IBNR by chainladder-python: Mack chain ladder,
  Bornhuetter-Ferguson, Cape Cod, the ODP bootstrap, with diagnostics
- :mod:`puhui.reserving.treaties` quota share, aggregate stop loss, per-person excess
  of loss: gross -> ceded -> net, and the expected cost of a layer from a compound
  distribution

docs/reserving.md. Reading the ledger is left to the edges (the ledger's business
dates come first); nothing here imports claims, pricing or the CLI.
"""
