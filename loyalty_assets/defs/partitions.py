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
