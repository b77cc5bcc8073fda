"""Raw commerce payloads by modification day, append-only by version (DESIGN.md §2).

Each day is fetched as its own window so that every version a record had at the end of each day is
kept: an API only ever answers with a record's state as of the window's end. Refunds are their own
streams (Magento credit memos, BigCommerce v3 refunds, commercetools payments), never inferred.
"""

import datetime as dt
import importlib

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.lib.landing import landing_dir, load_landing
from loyalty_assets.lib.ledger import day_end_utc, day_start_utc
from loyalty_assets.lib.raw import insert_versions

# platform -> streams, in the order they are fetched
STREAMS = {
    "magento": ("orders", "creditmemos", "customers"),
    "bigcommerce": ("orders", "refunds", "customers"),
    "commercetools": ("orders", "payments", "customers"),
    "sfcc": ("orders",),
}
DESCRIPTIONS = {
    "orders": "Every version of every {p} order, native JSON, by the day it was modified.",
    "creditmemos": "Every version of every {p} credit memo (refund), native JSON, by modification day.",
    "refunds": "Every {p} v3 refund, native JSON, by the day it was created.",
    "payments": "Every version of every {p} payment (refund transactions live here), native JSON, by modification day.",
    "customers": "Every version of every {p} customer account, native JSON, by modification day.",
}


def asset_name(platform: str, stream: str) -> str:
    return f"raw_{platform}_{stream}"


RAW_ASSETS = {asset_name(p, s): (p, s) for p, streams in STREAMS.items() for s in streams}


def days_of(context: dg.AssetExecutionContext) -> list[dt.date]:
    window = context.partition_time_window
    start = window.start.date()
    return [start + dt.timedelta(days=i) for i in range((window.end.date() - start).days)]


def fetch_stream(context: dg.AssetExecutionContext, platform: str, stream: str) -> dg.MaterializeResult:
    source = getattr(context.resources, platform)
    warehouse = context.resources.warehouse
    if not source.is_configured:
        context.log.info(f"{platform} is not configured: skipped")
        return dg.MaterializeResult(metadata={"configured": False, "new_versions": 0})
    api = importlib.import_module(f"loyalty_assets.clients.{platform}")
    lag = dt.timedelta(seconds=PROGRAM.ingest.safety_lag_seconds)
    name = f"{platform}.{stream}"
    fetched = new = 0
    totals_ok = True
    for tenant, client in source.clients():
        with client:
            now = client.server_time()  # then carried forward by every response's Date header
            pending: list[tuple] = []
            for day in days_of(context):
                start, end = day_start_utc(day, PROGRAM), min(day_end_utc(day, PROGRAM), now - lag)
                if start >= end:
                    context.log.info(f"{name} {tenant} {day}: window not open yet at server time {now:%Y-%m-%d %H:%M:%S}")
                    continue
                result = client.fetch(stream, start, end)
                now = max(now, result.server_time)
                pending.append((day, start, end, result))
                if len(pending) >= FLUSH_DAYS:
                    fetched, new, totals_ok = _store(warehouse, api, name, stream, tenant, pending, fetched, new, totals_ok)
                    pending = []
            fetched, new, totals_ok = _store(warehouse, api, name, stream, tenant, pending, fetched, new, totals_ok)
    return dg.MaterializeResult(
        metadata={
            "configured": True,
            "fetched": fetched,
            "new_versions": new,
            "counts_match_api": totals_ok,
            "dagster/partition_row_count": new,
        }
    )


FLUSH_DAYS = 31  # days fetched before one write: short connections, bounded memory


def _store(warehouse, api, name, stream, tenant, pending, fetched, new, totals_ok):
    """Write fetched days in one short connection (never held over HTTP)."""
    if not pending:
        return fetched, new, totals_ok
    with warehouse.connect() as conn:
        for day, start, end, result in pending:
            offered, added = insert_versions(
                conn, name, tenant, result.items,
                record_id=lambda r: api.record_id(stream, r),
                modified_at=lambda r: api.modified_at(stream, r),
                tz=PROGRAM.tz,
            )
            conn.execute(
                "INSERT INTO fetch_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [name, tenant, day, start, end, result.total_count, offered, added, result.server_time],
            ).fetchall()  # consumed: the next day's insert registers a frame on this connection
            totals_ok &= result.total_count is None or offered == result.total_count
            fetched += offered
            new += added
    return fetched, new, totals_ok


def _raw_asset(platform: str, stream: str):
    @dg.asset(
        name=asset_name(platform, stream),
        group_name="ingest",
        required_resource_keys={"warehouse", platform},
        kinds={"duckdb", platform},
        description=DESCRIPTIONS[stream].format(p=platform),
        **WAREHOUSE_ASSET,
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return fetch_stream(context, platform, stream)

    return _asset


raw_assets = [_raw_asset(p, s) for p, s in RAW_ASSETS.values()]


@dg.asset(
    group_name="ingest",
    required_resource_keys={"warehouse"},
    kinds={"duckdb"},
    **WAREHOUSE_ASSET,
)
def raw_landing_files(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Export files dropped under the landing directory (CONTRACT.md §2 layout), loaded into the raw
    versions as if the APIs had returned them: a historical backfill without any API."""
    root = landing_dir()
    if not root.is_dir():
        context.log.info(f"no landing directory at {root}: skipped")
        return dg.MaterializeResult(metadata={"files": 0, "new_versions": 0})
    with context.resources.warehouse.connect() as conn:
        result = load_landing(conn, PROGRAM, root)
    return dg.MaterializeResult(
        metadata={
            "files": result.files,
            "records": result.records,
            "new_versions": result.new_versions,
            "bad_files": result.bad_files,
            "dagster/partition_row_count": result.new_versions,
        }
    )
