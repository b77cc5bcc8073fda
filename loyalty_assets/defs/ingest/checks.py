"""Raw completeness: what we stored for a day matches the count the API announced (where it gives one:
BigCommerce v2 and SFCC give none, commercetools caps it)."""

import dagster as dg

from loyalty_assets.defs.ingest.assets import RAW_ASSETS
from loyalty_assets.defs.resources import Warehouse

RAW_COUNT_MATCHES_API = "raw_count_matches_api_total"


def _completeness_check(asset_name: str):
    platform, stream = RAW_ASSETS[asset_name]
    source = f"{platform}.{stream}"

    @dg.asset_check(
        pool="duckdb",
        asset=asset_name,
        name=RAW_COUNT_MATCHES_API,
        blocking=False,
        description="Rows fetched in each day's latest window equal the API's total_count.",
    )
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            rows = conn.execute(
                """SELECT partition_day, arg_max(fetched, fetched_at), arg_max(total_count, fetched_at)
                   FROM fetch_log WHERE source = ? GROUP BY partition_day
                   HAVING arg_max(total_count, fetched_at) IS NOT NULL
                      AND arg_max(fetched, fetched_at) <> arg_max(total_count, fetched_at)""",
                [source],
            ).fetchall()
            days = conn.execute(
                "SELECT count(DISTINCT partition_day) FROM fetch_log WHERE source = ?", [source]
            ).fetchone()[0]
        return dg.AssetCheckResult(
            passed=not rows,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"days_fetched": days, "days_short": len(rows), "examples": str(rows[:5])},
        )

    return _check


raw_checks = [_completeness_check(name) for name in RAW_ASSETS]
