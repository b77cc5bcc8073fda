"""The one job that materializes the whole graph for a day or a range, and its daily schedule."""

import datetime as dt

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM

# In-process: one DuckDB writer, no process start-up per step on a 2-core machine; the duckdb
# pool still gates steps across runs.
loyalty_job = dg.define_asset_job(
    "loyalty_job",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Fetch, normalize, resolve identities, book the ledger, evaluate tiers, refresh member status.",
)


@dg.schedule(
    job=loyalty_job,
    cron_schedule="15 0 * * *",
    execution_timezone=PROGRAM.timezone,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_loyalty_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Shortly after midnight in the program timezone: close yesterday's partition (none before the
    program's first day: on that day's tick there is nothing to close)."""
    yesterday = context.scheduled_execution_time.astimezone(PROGRAM.tz).date() - dt.timedelta(days=1)
    if yesterday < PROGRAM.start_date:
        return dg.SkipReason(f"{yesterday} is before the program's start_date {PROGRAM.start_date}")
    return dg.RunRequest(run_key=f"daily:{yesterday.isoformat()}", partition_key=yesterday.isoformat())
