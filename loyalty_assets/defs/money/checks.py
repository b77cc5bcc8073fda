"""Money sanity and quarantine rate: warnings, because a wrong total here is visible before it reaches a customer."""

import dagster as dg

from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.normalize import VERSION_KEY_SQL

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


RAW_VERSIONS_ACCOUNTED_FOR = "raw_versions_accounted_for"


@dg.asset_check(
    pool="duckdb",
    asset="order_versions",
    name=RAW_VERSIONS_ACCOUNTED_FOR,
    blocking=False,
    description="Every raw version stored before the last normalization has an outcome (processed, "
    "quarantined, or a refund waiting for its order): nothing landed or fetched is silently lost.",
)
def raw_versions_accounted_for(warehouse: Warehouse) -> dg.AssetCheckResult:
    # versions fetched after the last normalization began are the next one's (a sensor may be pulling)
    with warehouse.connect() as conn:
        rows = conn.execute(
            f"""SELECT r.source, count(*) AS raw, count(p.outcome) FILTER (WHERE p.outcome = 'processed'),
                       count(p.outcome) FILTER (WHERE p.outcome = 'quarantined'),
                       count(p.outcome) FILTER (WHERE p.outcome = 'waiting'),
                       count(*) FILTER (WHERE p.outcome IS NULL),
                       list(r.source || ' ' || r.record_id ORDER BY r.fetched_at) FILTER (WHERE p.outcome IS NULL)[1:5]
                FROM raw_records r
                LEFT JOIN (SELECT source, version_key, any_value(outcome) AS outcome FROM raw_processed GROUP BY ALL) p
                       ON p.source = r.source AND p.version_key = {VERSION_KEY_SQL}
                WHERE r.fetched_at < (SELECT refreshed_at FROM refresh_state WHERE name = 'normalize')
                GROUP BY r.source ORDER BY r.source"""
        ).fetchall()
    missing = sum(r[5] for r in rows)
    metadata: dict = {"raw_versions": sum(r[1] for r in rows), "without_outcome": missing,
                      "processed": sum(r[2] for r in rows), "quarantined": sum(r[3] for r in rows),
                      "waiting": sum(r[4] for r in rows)}
    metadata.update({f"missing_{r[0]}": r[5] for r in rows if r[5]})
    if missing:
        metadata["examples"] = str([e for r in rows for e in (r[6] or [])][:5])
    return dg.AssetCheckResult(passed=missing == 0, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
