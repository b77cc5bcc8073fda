"""Balances equal the sum of their entries (blocking) and negative balances (a warning)."""

import dagster as dg

from loyalty_assets.defs.resources import Warehouse

BALANCES_EQUAL_ENTRY_SUMS = "balances_equal_entry_sums"
NO_NEGATIVE_SPENDABLE = "no_negative_spendable"


@dg.asset_check(
    pool="duckdb",
    asset="member_status",
    name=BALANCES_EQUAL_ENTRY_SUMS,
    blocking=True,
    description="Every member's spendable + pending balance equals the sum of its ledger entries.",
)
def balances_equal_entry_sums(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        bad = conn.execute(
            """SELECT s.member_id, s.points_spendable + s.points_pending AS shown, coalesce(e.total, 0) AS entries
               FROM member_status s
               LEFT JOIN (SELECT member_id, sum(points) AS total FROM ledger_entries
                          WHERE booked_on <= (SELECT max(as_of) FROM member_status) GROUP BY 1) e USING (member_id)
               WHERE s.points_spendable + s.points_pending <> coalesce(e.total, 0)
               UNION ALL
               SELECT e.member_id, NULL, sum(e.points) FROM ledger_entries e
               WHERE e.member_id NOT IN (SELECT member_id FROM member_status) GROUP BY 1
               LIMIT 5"""
        ).fetchall()
    return dg.AssetCheckResult(passed=not bad, metadata={"mismatches": str(bad)})


@dg.asset_check(
    pool="duckdb",
    asset="member_status",
    name=NO_NEGATIVE_SPENDABLE,
    blocking=False,
    description="Negative spendable balances (a clawback after a redemption) are reported, not blocked.",
)
def no_negative_spendable(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        n = conn.execute("SELECT count(*) FROM member_status WHERE points_spendable < 0").fetchone()[0]
    return dg.AssetCheckResult(
        passed=n == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"negative_members": n}
    )
