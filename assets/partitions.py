import dagster as dg

# One partition key per paid order: `paid_orders` (sensors/orders.py) adds it with the order's
# proof run. The proof assets are partitioned by it.
orders_partitions = dg.DynamicPartitionsDefinition(name="orders")

# One partition key per order approved for print: `approved_orders` adds it with the print
# run (and the proof run itself when it auto-approves, assets/proofs.py). The print assets are
# partitioned by it, so an order that is cancelled, rejected or still waiting for the
# customer's choice is no missing `printing` partition in the UI.
approved_orders_partitions = dg.DynamicPartitionsDefinition(name="approved_orders")

# One partition key per studio job (jobs/): `paid_jobs` (sensors/jobs.py) adds it with the
# job's shot runs. The job's export is partitioned by it.
jobs_partitions = dg.DynamicPartitionsDefinition(name="jobs")


def _shot_names() -> list[str]:
    """Every shot a job may have: the kinds' poses and their named shots (catalog/kinds.yaml)."""
    from photogen_pipelines.catalog.kinds import load_kinds

    catalog = load_kinds()
    named = {name for kind in catalog.kinds if isinstance(kind.shots, list) for name in kind.shots}
    return sorted(set(catalog.poses) | named)


# A job's shot is its own partition, job x shot: the UI shows each shot's lineage and
# metadata, and an operator re-runs one failed shot alone. A job uses the shots of its kind
# (a pose pack eight poses, a fashion shoot nine, a living portrait its clip): the other
# cells of its row stay empty, as the shot names are the catalog's, not the job's.
job_shot_partitions = dg.MultiPartitionsDefinition({"job": jobs_partitions, "shot": dg.StaticPartitionsDefinition(_shot_names())})
