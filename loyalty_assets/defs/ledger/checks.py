"""Ledger invariants: blocking, because a wrong number here reaches a customer's balance."""

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM
from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.ledger import order_value_mismatches

ENTRY_IDS_UNIQUE = "entry_ids_unique"
ORDER_ENTRIES_SUM_TO_VALUE = "order_entries_sum_to_value"


@dg.asset_check(
    pool="duckdb",
    asset="ledger_journal",
    name=ENTRY_IDS_UNIQUE,
    blocking=True,
    description="No entry id appears twice in the journal.",
)
def entry_ids_unique(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        dupes = conn.execute(
            "SELECT entry_id, count(*) FROM ledger_journal GROUP BY entry_id HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM ledger_journal").fetchone()[0]
    return dg.AssetCheckResult(passed=not dupes, metadata={"entries": total, "duplicates": str(dupes)})


@dg.asset_check(
    pool="duckdb",
    asset="ledger_journal",
    name=ORDER_ENTRIES_SUM_TO_VALUE,
    blocking=True,
    description="For every order, its earn/adjust/clawback entries add up to its value at the end of the last booked day.",
)
def order_entries_sum_to_value(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        bad = order_value_mismatches(conn, PROGRAM)
    return dg.AssetCheckResult(
        passed=not bad, metadata={"mismatched_orders": len(bad), "examples": str(bad[:5])}
    )
