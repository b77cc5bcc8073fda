"""Pulls from the loyalty platforms: raw input like orders, upstream of identity and the ledger
(DESIGN.md §4). Their list endpoints filter by update time only, so each run reads the customers as
they are now and keeps every version not seen before."""

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.lib.platforms.common import iso_time
from loyalty_assets.lib.raw import insert_versions

# asset name -> (resource key, stream)
PULL_ASSETS = {
    "raw_smile_customers": ("smile", "customers"),
    "raw_loyaltylion_customers": ("loyaltylion", "customers"),
}


def pull_customers(context: dg.AssetExecutionContext, key: str) -> dg.MaterializeResult:
    resource = getattr(context.resources, key)
    if not resource.is_configured:
        context.log.info(f"{key} is not configured: skipped")
        return dg.MaterializeResult(metadata={"configured": False})
    with resource.client() as client:
        items = client.customers()  # full list: a customer created with an old date is still found
    with context.resources.warehouse.connect() as conn:
        offered, added = insert_versions(
            conn, f"{key}.customers", "default", items,
            record_id=lambda r: r["id"],
            modified_at=lambda r: iso_time(r.get("updated_at") or r.get("created_at"), "updated_at"),
            tz=PROGRAM.tz,
        )
    return dg.MaterializeResult(metadata={"configured": True, "customers": offered, "new_versions": added})


def _pull_asset(name: str, key: str):
    @dg.asset(
        name=name,
        group_name="ingest",
        required_resource_keys={"warehouse", key},
        kinds={"duckdb", key},
        description=f"Every version of every {key} customer (its id becomes an identity key of the member).",
        **WAREHOUSE_ASSET,
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return pull_customers(context, key)

    return _asset


pull_assets = [_pull_asset(name, key) for name, (key, _) in PULL_ASSETS.items()]
