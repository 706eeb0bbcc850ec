"""Studio jobs: a kind of the catalog (catalog/kinds.yaml) made for one caller as shots, each
shot its own partition. Planned here (plan.py), delivered as a ZIP (export.py)."""
