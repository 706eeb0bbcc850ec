"""The analysts' tables are rebuilt every night for the UTC day that just ended."""

import datetime as dt

import dagster as dg

from assets.analytics import analytics_job


@dg.schedule(
    job=analytics_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuilds yesterday's generation ledger, rejection metrics and job ledger once the UTC day is over.",
)
def nightly_analytics(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time - dt.timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"analytics:{day}", partition_key=day)
