"""THE daily partitions definition: one day = [00:00, 24:00) in the program timezone (DESIGN.md §2)."""

import dagster as dg

from loyalty_assets.lib.program import load_program

PROGRAM = load_program()

# end_offset=1 exposes today's (still open) day, so a delta sensor can book intraday changes.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=PROGRAM.start_date.isoformat(), timezone=PROGRAM.timezone, end_offset=1
)

# A range of days is one run, booked in order: the ledger's watermark relies on it.
single_run = dg.BackfillPolicy.single_run()

# DuckDB allows one writer process: every asset that writes the warehouse is in this pool (limit 1).
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
WAREHOUSE_ASSET = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run,
    "pool": "duckdb",
    "retry_policy": RETRY,
}
