"""What the analysts read: the generation ledger (one row per order), its costs and the rejection metrics."""
