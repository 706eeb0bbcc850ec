"""The `photogen` command line. Entry point with `definitions`; the core stays Dagster-free."""
