"""A real local Dagster instance for a test, and a failed run's context for the run-failure sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def local_instance(directory: Path) -> dg.DagsterInstance:
    """A SQLite instance in `directory` (created), telemetry off; use it as a context manager."""
    directory.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(str(directory), overrides={"telemetry": {"enabled": False}})


def job_placement(resources, **options):
    """Where a test places a studio job: the code location's own resources (the orders
    database migrated), the embedded engine unless `options` name another."""
    from photogen_pipelines.workflows.jobs import Placement

    database = resources["orders"].database()
    database.migrate()
    catalog = resources["catalog"]
    parts = (resources["storage"].store(), resources["faces"].analyzer(), catalog.kinds(), catalog.styles(), catalog.products())
    return Placement(database, *parts, **{"engine": "embedded", **options})


def run_failure_context(instance: dg.DagsterInstance, run_id: str, resources: dict) -> dg.RunFailureSensorContext:
    """What the daemon hands `order_run_failures` for the failed run `run_id`."""
    failure = next(iter(instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE))).dagster_event
    return dg.build_run_status_sensor_context(
        sensor_name="order_run_failures",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        dagster_event=failure,
        resources=resources,
    ).for_run_failure()


# what deploy/dagster.yaml reads from the environment (a compose deploy's values)
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "postgres",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "photogen",
    "DAGSTER_PG_PASSWORD": "s3cret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "photogen-dagster",
    "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
    "AWS_ENDPOINT_URL_S3": "http://minio:9000",
}
