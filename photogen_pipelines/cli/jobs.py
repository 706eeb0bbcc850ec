"""`photogen jobs`: what an operator does with the studio's jobs.

`show JOB` prints the job and each shot's state, tries, scores and reason; `retry JOB SHOT`
sends one settled shot back to pending, and the running service (`photogen serve`'s
sensors) runs that shot alone and assembles the job's export again. In the Dagster UI the
same retry is a run of the shot's partition (job|shot) tagged photogen/rerun=true.
"""

from __future__ import annotations

import click

from photogen_pipelines.cli.common import clear_errors, emit, home_option, home_settings
from photogen_pipelines.cli.credits import OneLineCommand, json_option


@click.group()
def jobs() -> None:
    """Studio jobs: show one, retry one of its shots."""


def _database(home: str | None):
    from photogen_pipelines.db.database import open_database

    database = open_database(home_settings(home, make_home=True).resolved_database_url)
    database.migrate()
    return database


def _shown(job) -> str:
    lines = [f"job {job.id}: {job.kind}, {job.state.value}" + (f" ({job.reason})" if job.reason else "")]
    for shot in job.shots:
        scores = ", ".join(f"{gate} {value:.3f}" for gate, value in (shot.scores or {}).items() if value is not None)
        why = f": {shot.reason}" if shot.reason else ""
        lines.append(f"  {shot.position:>2} {shot.name:<14} {shot.state.value:<8} tries {shot.tries}  {scores}{why}")
    return "\n".join(lines)


@jobs.command("show", cls=OneLineCommand)
@click.argument("job_id")
@home_option
@json_option
@clear_errors
def show(job_id, home, as_json) -> None:
    """Job JOB_ID with each shot's state, tries, scores and reason."""
    from photogen_pipelines.jobs import lifecycle

    job = lifecycle.get(_database(home), job_id, any_caller=True)
    emit(as_json, job.model_dump(mode="json", exclude={"inputs"}), _shown(job))


@jobs.command("retry", cls=OneLineCommand)
@click.argument("job_id")
@click.argument("shot")
@home_option
@json_option
@clear_errors
def retry(job_id, shot, home, as_json) -> None:
    """Make SHOT of JOB_ID again, alone (the other shots stay as they are); the job's ZIP is
    assembled again once it settles."""
    from photogen_pipelines.jobs import lifecycle

    job = lifecycle.retry_shot(_database(home), job_id, shot)
    emit(
        as_json,
        job.model_dump(mode="json", exclude={"inputs"}),
        f"shot {shot} of job {job_id} is pending again; the service runs it alone",
    )
