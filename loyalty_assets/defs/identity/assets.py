"""Members: one shopper across platforms and stores (RULES.md §8)."""

import datetime as dt

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.lib.identity import resolve_members


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "member_keys",
            group_name="identity",
            kinds={"duckdb"},
            deps=["order_versions"],
            description="Every identity key (email, platform customer id) and the member it belongs to.",
        ),
        dg.AssetSpec(
            "member_merges",
            group_name="identity",
            kinds={"duckdb"},
            deps=["order_versions"],
            description="Members absorbed into an older one, with the rule and evidence that linked them.",
        ),
        dg.AssetSpec(
            "identity_conflicts",
            group_name="identity",
            kinds={"duckdb"},
            deps=["order_versions"],
            description="Links the guard refused (two registered customers of one store sharing an email).",
        ),
    ],
    **WAREHOUSE_ASSET,
)
def member_identity(context: dg.AssetExecutionContext, warehouse: Warehouse):
    day = context.partition_time_window.end.date() - dt.timedelta(days=1)
    with warehouse.connect() as conn:
        summary = resolve_members(conn, PROGRAM, day)
    context.log.info(f"identity: {summary}")
    yield dg.MaterializeResult(
        asset_key="member_keys",
        metadata={
            "members": summary.members,
            "new_keys": summary.new_keys,
            "new_members": summary.new_members,
        },
    )
    yield dg.MaterializeResult(asset_key="member_merges", metadata={"new_merges": summary.merges})
    yield dg.MaterializeResult(asset_key="identity_conflicts", metadata={"conflicts_seen": summary.conflicts})
