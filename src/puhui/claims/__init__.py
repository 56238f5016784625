"""Claims: the payout ledger, payout batches (claimed and proactive) and direct payouts."""
