"""VIP tiers and the member status table (RULES.md §6–§7)."""

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.status import refresh_member_status
from loyalty_assets.lib.tiers import evaluate_through


@dg.asset(
    group_name="tiers",
    **WAREHOUSE_ASSET,
    kinds={"duckdb"},
    deps=["ledger_journal", "order_facts"],
)
def vip_tier_changes(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Every change of a member's VIP tier, with the day, the reason and the metric that caused it."""
    with warehouse.connect() as conn:
        result = evaluate_through(conn, PROGRAM)
        total = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    return dg.MaterializeResult(
        metadata={"days_evaluated": len(result.days), "new_changes": result.changes, "total_changes": total}
    )


@dg.asset(
    group_name="tiers",
    **WAREHOUSE_ASSET,
    kinds={"duckdb"},
    deps=["vip_tier_changes", "ledger_entries"],
)
def member_status(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per member: spendable and pending points, lifetime points, VIP tier and when it expires,
    as of the end of the last booked day."""
    with warehouse.connect() as conn:
        n = refresh_member_status(conn, PROGRAM)
        tiers = dict(conn.execute("SELECT vip_tier, count(*) FROM member_status GROUP BY 1").fetchall())
    return dg.MaterializeResult(metadata={"members": n, **{f"tier_{k}": v for k, v in tiers.items()}})
