"""Studio jobs become runs: a paid job's shots each a run of its own partition (job x shot),
a job whose shots have all settled its export run; a job whose run failed for good is
failed, and every job that will not deliver gets its credits back, once."""

from __future__ import annotations

import dagster as dg

from assets.jobs import job_export_job, shot_job
from assets.partitions import jobs_partitions
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.states import JobState, Shot, ShotState
from photogen_pipelines.workflows.jobs import refund_job
from resources import OrdersDatabase
from sensors.failures import will_be_retried

MAX_JOBS_PER_TICK = 25
# below customers' orders (proofs 20, prints 10): a studio job's shots do not make a waiting
# customer wait longer
SHOT_RUN_PRIORITY = 5
JOB_SENSOR_INTERVAL_SECONDS = 1  # as the order sensors: on every pass of the daemon


def shot_run_request(job_id: str, shot: Shot, kind: str) -> dg.RunRequest:
    """The run of one pending shot: one run_key per shot and attempt so far, so a sensor tick
    repeated asks once, and a shot an operator retried (pending again, its tries counted)
    gets a run of its own."""
    return dg.RunRequest(
        partition_key=dg.MultiPartitionKey({"job": job_id, "shot": shot.name}),
        run_key=f"shot:{job_id}:{shot.name}:{shot.tries}",
        tags={"dagster/priority": str(SHOT_RUN_PRIORITY), "photogen/job": job_id, "photogen/kind": kind},
    )


@dg.sensor(
    job_name=shot_job.name,
    minimum_interval_seconds=JOB_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Paid studio jobs become shot runs: the job joins the `jobs` partitions and each shot gets its run; "
        "a shot an operator retried gets a run of its own."
    ),
)
def paid_jobs(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SensorResult:
    # a job is paid until its first shot run starts, and a shot pending until its run settles
    # it: a tick seeing them again asks for the same run keys, which Dagster never launches twice
    database = orders.database()
    ready = lifecycle.jobs_in(database, [JobState.PAID], MAX_JOBS_PER_TICK)
    ready += [job for job in lifecycle.jobs_in(database, [JobState.GENERATING], MAX_JOBS_PER_TICK * 4) if not job.all_settled]
    known = set(context.instance.get_dynamic_partitions(jobs_partitions.name)) if ready else set()
    new = [job.id for job in ready if job.id not in known]
    pending = [(job, shot) for job in ready for shot in job.shots if shot.state == ShotState.PENDING]
    return dg.SensorResult(
        run_requests=[shot_run_request(job.id, shot, job.kind) for job, shot in pending],
        dynamic_partitions_requests=[jobs_partitions.build_add_request(new)] if new else [],
    )


@dg.sensor(
    job_name=job_export_job.name,
    minimum_interval_seconds=JOB_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A studio job whose shots have all settled gets its export run (again after a shot's retry).",
)
def settled_jobs(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SensorResult:
    generating = lifecycle.jobs_in(orders.database(), [JobState.GENERATING], MAX_JOBS_PER_TICK * 4)
    requests = []
    for job in generating:
        if not job.all_settled:
            continue
        # the last shot's settling names this export: a shot retried later asks for a new one
        last = max(shot.updated_at for shot in job.shots if shot.state != ShotState.PENDING)
        requests.append(
            dg.RunRequest(
                partition_key=job.id,
                run_key=f"export:{job.id}:{last.isoformat()}",
                tags={"dagster/priority": str(SHOT_RUN_PRIORITY), "photogen/job": job.id, "photogen/kind": job.kind},
            )
        )
    return dg.SensorResult(run_requests=requests)


def _job_of(run: dg.DagsterRun) -> str | None:
    return run.tags.get("photogen/job") or (run.tags.get("dagster/partition/job") or run.tags.get("dagster/partition"))


@dg.run_failure_sensor(
    monitored_jobs=[shot_job, job_export_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "A shot run that failed for good rejects its shot (the others go on); an export run that failed for good "
        "fails the job, and its credits come back."
    ),
)
def job_run_failures(context: dg.RunFailureSensorContext, orders: OrdersDatabase) -> None:
    run = context.instance.get_run_by_id(context.dagster_run.run_id)  # as it is now
    job_id = _job_of(context.dagster_run)
    if run is None or run.status != dg.DagsterRunStatus.FAILURE or not job_id:
        return
    if will_be_retried(run, context.instance):
        context.log.info(f"run {run.run_id} of job {job_id} failed; Dagster will retry it")
        return
    database = orders.database()
    job = lifecycle.get(database, job_id, any_caller=True)
    if job.state not in (JobState.PAID, JobState.GENERATING):
        context.log.info(f"run {run.run_id} failed; job {job_id} is {job.state.value} and stays so")
        return
    shot = run.tags.get("dagster/partition/shot")
    # the reason is shown to the shop: what failed and where an operator looks; the cause, for
    # the operator, goes to the sensor's log
    why = f"its run {run.run_id} failed; an operator can retry it alone"
    context.log.warning(f"run {run.run_id} of job {job_id} failed: {_root_message(context)}")
    if run.job_name == shot_job.name and shot and job.shot(shot).state == ShotState.PENDING:
        # one shot's failure is that shot's: the others go on, and the export follows without it
        lifecycle.settle_shot(database, job_id, shot, False, job.shot(shot).tries + 1, None, why)  # the failed run counts
        context.log.warning(f"shot {shot} of job {job_id} rejected: {why}")
        return
    if run.job_name == job_export_job.name:
        lifecycle.fail(database, job_id, f"the export's {why}")
        refund_job(database, job_id)
        context.log.warning(f"job {job_id} failed with run {run.run_id}; its credits, if any, were given back")


def _root_message(context: dg.RunFailureSensorContext) -> str:
    """The first step failure's own error, in one line, without internals."""
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            return error.message.strip().splitlines()[0][:200]
    return "see the run in the UI"


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Studio jobs that were rejected, failed or cancelled get their credits back, once.",
)
def job_credit_settlements(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SkipReason:
    database = orders.database()
    owed = lifecycle.owing_credits(database, MAX_JOBS_PER_TICK * 4)
    for job_id in owed:
        refund_job(database, job_id)
    return dg.SkipReason(f"{len(owed)} job(s) refunded")
