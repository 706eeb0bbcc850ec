"""Runs of the code location's jobs in this process, on the local instance: what `photogen
demo` does for an order's proof and print runs and for a studio job's shot and export runs.
Progress goes to stderr."""

from __future__ import annotations

import click

from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.orders.states import OrderState


def progress(message: str) -> None:
    click.echo(f"[photogen] {message}", err=True)


def run_order_job(defs, instance, book, job_name: str, order_id: str):
    """Run one job for the order; the order it leaves behind, or why the run failed."""
    progress(f"{job_name}: running on the Dagster instance at {instance.root_directory}")
    result = execute_run(defs, instance, job_name, order_id)
    order = book.get(order_id)
    if not result.success and order.state != OrderState.REJECTED:  # a rejection is an outcome, not an error
        raise failed_run(job_name, result)
    progress(f"{job_name}: run {result.run_id} finished; order {order.state.value}")
    return order


def execute_run(defs, instance, job_name: str, partition_key: str):
    """One run of a Dagster job for one partition, in this process, on the local instance."""
    from sensors.dead_runs import worker_tags

    return defs.resolve_job_def(job_name).execute_in_process(
        partition_key=partition_key,
        instance=instance,
        raise_on_error=False,
        tags=worker_tags(),  # if this process is killed, the dead_run_workers sensor fails the run
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )


def failed_run(job_name: str, result) -> PhotoGenError:
    """The error a failed run ends the demo with: its steps' first causes."""
    errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    failures = [_root_cause(error) for error in errors if error]
    return PhotoGenError(f"{job_name} run {result.run_id} failed: {'; '.join(failures) or 'see the Dagster UI'}")


def _root_cause(error) -> str:
    """What went wrong first: a retried step's error reads "Exceeded max_retries"."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
