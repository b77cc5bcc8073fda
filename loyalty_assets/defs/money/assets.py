"""Normalized money: canonical order/refund versions, quarantine, and order_facts (RULES.md §2–§4)."""

import datetime as dt

import dagster as dg

from loyalty_assets.defs.ingest.assets import RAW_ASSETS
from loyalty_assets.defs.ingest.pulls import PULL_ASSETS
from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.facts import refresh_order_facts
from loyalty_assets.lib.landing import landing_dir
from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.normalize import normalize


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "order_versions",
            group_name="money",
            kinds={"duckdb"},
            deps=[*RAW_ASSETS, *PULL_ASSETS, "raw_landing_files"],
            description="One row per order version with lifecycle signal and money in integer minor units "
            "(plus refund_versions and customer_versions): what each raw version means.",
        ),
        dg.AssetSpec(
            "quarantine",
            group_name="money",
            kinds={"duckdb"},
            deps=[*RAW_ASSETS, *PULL_ASSETS, "raw_landing_files"],
            description="Every record that could not be processed, with a reason code and words for the operator.",
        ),
    ],
    **WAREHOUSE_ASSET,
)
def normalized_orders(context: dg.AssetExecutionContext, warehouse: Warehouse):
    fx = FxTable.load(PROGRAM.fx_path()).merged(FxTable.load(landing_dir() / "fx_rates.csv"))
    today = context.partition_time_window.end.date() - dt.timedelta(days=1)
    with warehouse.connect() as conn:
        result = normalize(conn, PROGRAM, fx, today)
        quarantined_total = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    context.log.info(f"normalized {result}")
    yield dg.MaterializeResult(
        asset_key="order_versions",
        metadata={
            "orders": result.orders,
            "refunds": result.refunds,
            "customers": result.customers,
            "dagster/partition_row_count": result.orders,
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantine", metadata={"new_rows": result.quarantined, "total_rows": quarantined_total}
    )


@dg.asset(
    group_name="money",
    **WAREHOUSE_ASSET,
    kinds={"duckdb"},
    deps=["order_versions", "member_keys"],
)
def order_facts(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per order: its latest known version, lifecycle, money in minor units, refunds and
    net eligible spend in the program currency, and the member it belongs to."""
    with warehouse.connect() as conn:
        refresh_order_facts(conn, PROGRAM)
        n, lifecycles = conn.execute(
            "SELECT count(*), string_agg(DISTINCT lifecycle, ',') FROM order_facts"
        ).fetchone()
    return dg.MaterializeResult(metadata={"orders": n, "lifecycles": lifecycles or ""})
