"""Sync health: nothing waits in the outbox too long, and loyalty-platform balances agree with ours."""

import dagster as dg

from loyalty_assets.defs.resources import Warehouse

OUTBOX_AGE = "outbox_age"
RECONCILIATION_DRIFT = "reconciliation_drift"
MAX_OUTBOX_AGE_HOURS = 24


@dg.asset_check(pool="duckdb", asset="smile_points_push", name=OUTBOX_AGE, blocking=False,
                description=f"No outbox batch is pending, in flight or failed for more than {MAX_OUTBOX_AGE_HOURS} h "
                "(blocked and awaiting-customer batches are reported, they wait for someone else).")
def outbox_age(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        old = conn.execute(
            """SELECT target, status, count(*) FROM outbox
               WHERE status IN ('pending', 'sending', 'failed') AND created_at < now() - to_hours(?)
               GROUP BY ALL""",
            [MAX_OUTBOX_AGE_HOURS],
        ).fetchall()
        waiting = dict(conn.execute(
            "SELECT target || ' ' || status, count(*) FROM outbox WHERE status IN ('blocked', 'awaiting_customer') GROUP BY 1"
        ).fetchall())
    return dg.AssetCheckResult(passed=not old, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"too_old": str(old), **waiting})


@dg.asset_check(pool="duckdb", asset="reconciliation", name=RECONCILIATION_DRIFT, blocking=False,
                description="Members whose Smile.io / LoyaltyLion balance differs from ours by more than "
                "the points not delivered yet.")
def reconciliation_drift(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        rows = conn.execute(
            "SELECT target, count(*) FILTER (WHERE drift <> 0), sum(abs(drift)) FROM reconciliation GROUP BY 1"
        ).fetchall()
    return dg.AssetCheckResult(
        passed=all(n == 0 for _, n, _ in rows), severity=dg.AssetCheckSeverity.WARN,
        metadata={f"{t}_members_with_drift": n for t, n, _ in rows} | {f"{t}_drift_points": int(p or 0) for t, _, p in rows},
    )
