"""The append-only points ledger (RULES.md §5–§6)."""

import datetime as dt

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.ledger import book_through, source_now


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "ledger_journal",
            group_name="ledger",
            kinds={"duckdb"},
            deps=["order_facts", "member_keys"],
            description="Append-only journal of points entries, booked day by day behind a watermark; "
            "each entry keeps the member it was booked for.",
        ),
        dg.AssetSpec(
            "ledger_entries",
            group_name="ledger",
            kinds={"duckdb"},
            deps=["ledger_journal", "member_merges"],
            description="The ledger analysts query: every entry under its surviving member after merges.",
        ),
        dg.AssetSpec(
            "program_versions",
            group_name="ledger",
            kinds={"duckdb"},
            description="Every program configuration that has booked entries, by rule version.",
        ),
    ],
    **WAREHOUSE_ASSET,
)
def points_ledger(context: dg.AssetExecutionContext, warehouse: Warehouse):
    target = context.partition_time_window.end.date() - dt.timedelta(days=1)
    with warehouse.connect() as conn:
        now = source_now(conn, dt.datetime.now(dt.UTC))
        result = book_through(conn, PROGRAM, target, now)
        total = conn.execute("SELECT count(*) FROM ledger_journal").fetchone()[0]
    if not result.days_booked:
        context.log.info(f"nothing to book up to {target}: closed through {result.closed_through}")
    yield dg.MaterializeResult(
        asset_key="ledger_journal",
        metadata={
            "days_booked": len(result.days_booked),
            "new_entries": result.entries,
            "new_points": result.points,
            "closed_through": str(result.closed_through),
            "last_booked_day": str(result.last_booked_day),
            "total_entries": total,
            "dagster/partition_row_count": result.entries,
        },
    )
    yield dg.MaterializeResult(asset_key="ledger_entries", metadata={"entries": total})
    yield dg.MaterializeResult(asset_key="program_versions", metadata={"rule_version": PROGRAM.rule_version})
