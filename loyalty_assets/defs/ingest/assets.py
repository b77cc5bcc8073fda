"""Raw Magento payloads by modification day, append-only by version (DESIGN.md §2).

Each day is fetched as its own window so that every version a record had at the end of each day
is kept: the API only ever answers with a record's state as of the window's end.
"""

import datetime as dt

import dagster as dg

from loyalty_assets.clients.magento import magento_time
from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.resources import MagentoResource, Warehouse
from loyalty_assets.lib.ledger import day_end_utc, day_start_utc
from loyalty_assets.lib.raw import insert_versions

STREAMS = {
    # asset name: (Magento entity, raw source name, id field)
    "raw_magento_orders": ("orders", "magento.orders", "entity_id"),
    "raw_magento_creditmemos": ("creditmemos", "magento.creditmemos", "entity_id"),
    "raw_magento_customers": ("customers", "magento.customers", "id"),
}


def days_of(context: dg.AssetExecutionContext) -> list[dt.date]:
    window = context.partition_time_window
    start = window.start.date()
    return [start + dt.timedelta(days=i) for i in range((window.end.date() - start).days)]


def fetch_stream(
    context: dg.AssetExecutionContext, magento: MagentoResource, warehouse: Warehouse, asset_name: str
) -> dg.MaterializeResult:
    entity, source, id_field = STREAMS[asset_name]
    if not magento.is_configured:
        context.log.info("Magento is not configured (MAGENTO_BASE_URL and credentials): skipped")
        return dg.MaterializeResult(metadata={"configured": False, "new_versions": 0})
    lag = dt.timedelta(seconds=PROGRAM.ingest.safety_lag_seconds)
    fetched = new = 0
    totals_ok = True
    with magento.client() as client:
        for day in days_of(context):
            now = client.server_time()
            start, end = day_start_utc(day, PROGRAM), min(day_end_utc(day, PROGRAM), now - lag)
            if start >= end:
                context.log.info(
                    f"{source} {day}: window not open yet at server time {now:%Y-%m-%d %H:%M:%S}"
                )
                continue
            result = client.search(entity, start, end)
            # The connection is opened only after the API call: never hold the writer lock over HTTP.
            with warehouse.connect() as conn:
                offered, added = insert_versions(
                    conn,
                    source,
                    magento.tenant,
                    result.items,
                    record_id=lambda r: r[id_field],
                    modified_at=lambda r: magento_time(r.get("updated_at") or r.get("created_at")),
                    tz=PROGRAM.tz,
                )
                conn.execute(
                    "INSERT INTO fetch_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                    [
                        source,
                        magento.tenant,
                        day,
                        start,
                        end,
                        result.total_count,
                        offered,
                        added,
                        result.server_time,
                    ],
                )
            totals_ok &= offered == result.total_count
            fetched += offered
            new += added
            context.log.debug(f"{source} {day}: {offered} records ({added} new versions)")
    return dg.MaterializeResult(
        metadata={
            "configured": True,
            "fetched": fetched,
            "new_versions": new,
            "counts_match_api": totals_ok,
            "dagster/partition_row_count": new,
        }
    )


def _raw_asset(name: str, description: str):
    @dg.asset(
        name=name,
        group_name="ingest",
        **WAREHOUSE_ASSET,
        kinds={"duckdb", "magento"},
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext, magento: MagentoResource, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        return fetch_stream(context, magento, warehouse, name)

    return _asset


raw_magento_orders = _raw_asset(
    "raw_magento_orders", "Every version of every Magento order, native JSON, by the day it was modified."
)
raw_magento_creditmemos = _raw_asset(
    "raw_magento_creditmemos",
    "Every version of every Magento credit memo (refund), native JSON, by modification day.",
)
raw_magento_customers = _raw_asset(
    "raw_magento_customers",
    "Every version of every Magento customer account, native JSON, by modification day.",
)
