"""Money sanity and quarantine rate: warnings, because a wrong total here is visible before it reaches a customer."""

import dagster as dg

from loyalty_assets.defs.resources import Warehouse

MONEY_TOTALS_ADD_UP = "money_totals_add_up"
QUARANTINE_RATE = "quarantine_rate"
QUARANTINE_RATE_LIMIT = 0.05


@dg.asset_check(
    pool="duckdb",
    asset="order_facts",
    name=MONEY_TOTALS_ADD_UP,
    blocking=False,
    description="subtotal - discount + tax + shipping = grand total (within 1% or 1.00) for every order.",
)
def money_totals_add_up(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        bad = conn.execute(
            """SELECT order_key, subtotal_minor - discount_minor + tax_minor + shipping_minor AS computed, grand_total_minor
               FROM order_facts
               WHERE abs(subtotal_minor - discount_minor + tax_minor + shipping_minor - grand_total_minor)
                     > greatest(100, grand_total_minor // 100)"""
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM order_facts").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"orders": total, "mismatched": len(bad), "examples": str(bad[:5])},
    )


@dg.asset_check(
    pool="duckdb",
    asset="quarantine",
    name=QUARANTINE_RATE,
    blocking=False,
    description=f"Quarantined raw versions stay under {QUARANTINE_RATE_LIMIT:.0%} of all raw versions.",
)
def quarantine_rate(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        raw = conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
        by_reason = dict(conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall())
    rate = sum(by_reason.values()) / raw if raw else 0.0
    return dg.AssetCheckResult(
        passed=rate <= QUARANTINE_RATE_LIMIT,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "raw_versions": raw,
            "quarantined": sum(by_reason.values()),
            "rate": rate,
            **{f"reason_{k}": v for k, v in by_reason.items()},
        },
    )
