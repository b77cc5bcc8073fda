"""Shared fixtures for the Dagster-level tests: a tmp DuckDB warehouse, the Magento sandbox loaded
from handmade payloads and frozen at a fixed instant, the resources pointed at both, and
`materialize_range`, which runs the whole asset graph (assets and checks) for an inclusive range of
daily partitions as ONE run, the way `loyalty run` and a single-run backfill do.

Everything talks real HTTP to the emulator on 127.0.0.1; nothing is written into the working
directory (fixtures that run product code chdir into tmp_path first).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import simplejson

from loyalty_assets.defs.resources import MagentoResource, Warehouse
from loyalty_assets.sandbox import Sandbox

# The default program (USD, UTC, start 2024-01-01); all seed data lives in 2024.
SANDBOX_NOW = dt.datetime(2024, 3, 7, 12, 0, 0, tzinfo=dt.UTC)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Settings of every source and target (CONTRACT.md §4) and of the program/instance: tests start
# from none of them, so only what a test configures is configured.
PLATFORM_ENV_PREFIXES = (
    "MAGENTO_",
    "BIGCOMMERCE_",
    "COMMERCETOOLS_",
    "SFCC_",
    "SMILE_",
    "LOYALTYLION_",
    "SALESFORCE_",
    "LOYALTY_",
    "DAGSTER_PG_",
)


def isolate(monkeypatch: pytest.MonkeyPatch, cwd: Path) -> None:
    """Run product code from ``cwd`` with no source, target, program or instance settings."""
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    for name in list(os.environ):
        if name == "DAGSTER_HOME" or name.startswith(PLATFORM_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOYALTY_WAREHOUSE", str(cwd.parent / "env-warehouse.duckdb"))


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tmp cwd and no environment that would point product code at real state."""
    isolate(monkeypatch, tmp_path / "cwd")
    return tmp_path / "cwd"


@pytest.fixture
def warehouse_path(tmp_path: Path, isolated_env: Path) -> Path:
    return tmp_path / "loyalty.duckdb"


def write_seed(
    seed_dir: Path,
    orders: Sequence[dict] = (),
    creditmemos: Sequence[dict] = (),
    customers: Sequence[dict] = (),
) -> Path:
    """A seed directory in the CONTRACT.md §2 layout: magento/{orders,creditmemos,customers}/x.json."""
    for entity, records in (("orders", orders), ("creditmemos", creditmemos), ("customers", customers)):
        folder = seed_dir / "magento" / entity
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x.json").write_text(simplejson.dumps(list(records), use_decimal=True))
    return seed_dir


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Factory: ``sandbox(orders=[...], creditmemos=[...], customers=[...], now=...)`` writes a seed
    directory and starts a Sandbox on it with its replay clock frozen at ``now``."""
    started: list[Sandbox] = []

    def start(
        orders: Sequence[dict] = (),
        creditmemos: Sequence[dict] = (),
        customers: Sequence[dict] = (),
        now: dt.datetime = SANDBOX_NOW,
    ) -> Sandbox:
        seed = write_seed(tmp_path / f"seed{len(started)}", orders, creditmemos, customers)
        box = Sandbox(seed, now=now).start()
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()


def magento_resource(box: Sandbox) -> MagentoResource:
    env = box.env()
    return MagentoResource(
        base_url=env["MAGENTO_BASE_URL"],
        username=env["MAGENTO_ADMIN_USERNAME"],
        password=env["MAGENTO_ADMIN_PASSWORD"],
        tenant="default",
    )


def unconfigured_resources() -> dict[str, Any]:
    """Every resource key of the location, none configured (each system then skips itself)."""
    from loyalty_assets.defs.resources import unconfigured_resources as location_unconfigured

    return location_unconfigured()


def build_test_resources(box: Sandbox, warehouse: Path) -> dict[str, Any]:
    """The resources dict of the code location with only Magento configured (pointed at the
    sandbox) and the warehouse in tmp; every other source and target is "not configured"."""
    return {
        **unconfigured_resources(),
        "warehouse": Warehouse(database=str(warehouse)),
        "magento": magento_resource(box),
    }


@cache
def location_definitions() -> dg.Definitions:
    """The code location exactly as `dagster dev` loads it (loyalty_assets.definitions)."""
    from loyalty_assets.definitions import defs

    return defs() if callable(defs) else defs


def graph_assets() -> list[dg.AssetsDefinition]:
    """Every asset and asset check of the location (checks are AssetsDefinitions too)."""
    definitions = location_definitions()
    return [*definitions.assets, *definitions.asset_checks]


def materialize_range(
    start: dt.date | str,
    end: dt.date | str,
    resources: dict[str, Any],
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """The whole graph for the inclusive range ``start..end`` of daily partitions, as one run.
    Failures are returned, not raised, so tests can show which check failed and why."""
    return dg.materialize(
        graph_assets(),
        resources=resources,
        instance=instance,
        tags={RANGE_START_TAG: str(start), RANGE_END_TAG: str(end)},
        raise_on_error=raise_on_error,
    )


@pytest.fixture
def pg_admin() -> Iterator[Any]:
    """An autocommit connection to the admin database of the PostgreSQL server (DAGSTER_PG_*, else
    127.0.0.1:5432 as `postgres`). Without a reachable server the test is skipped saying why, except
    under LOYALTY_REQUIRE_POSTGRES=1 (CI), where it fails instead."""
    psycopg2 = pytest.importorskip("psycopg2")
    from loyalty_assets.instance import pg_connect, pg_server

    try:
        conn = pg_connect(timeout=5)
    except psycopg2.OperationalError as exc:
        server = pg_server()
        reason = f"no PostgreSQL server at {server['host']}:{server['port']} as {server['user']}: {exc}".strip()
        if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"LOYALTY_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    try:
        yield conn
    finally:
        conn.close()


def check_planned_range(instance: dg.DagsterInstance, first: dt.date, last: dt.date) -> None:
    """What Dagster reads for runs that have not (or never) materialized their assets, on `instance`:
    a range run of loyalty_job that is created and not executed leaves every day of every
    partitioned asset as an attempt without a materialization, and each asset records it as its last run."""
    job = location_definitions().resolve_job_def("loyalty_job")
    run = instance.create_run_for_job(job, tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()})
    days = sorted((first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1))
    partitioned = [key for a in location_definitions().assets if a.partitions_def for key in a.keys]
    assert len(partitioned) > 5
    for key in partitioned:
        attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
        assert sorted(attempts) == days, key.to_user_string()
        assert {run_id for run_id, _ in attempts.values()} == {run.run_id}
        (record,) = instance.get_asset_records([key])
        assert record.asset_entry.last_run_id == run.run_id, key.to_user_string()


def blocking_check_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name} {e.metadata}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]


def sandbox_resources(box: Sandbox, warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every resource of the location configured from the sandbox's env file, as `loyalty run` does."""
    from loyalty_assets.defs.resources import build_resources

    for key, value in box.env().items():
        monkeypatch.setenv(key, value)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return {**build_resources(), "warehouse": Warehouse(database=str(warehouse))}
