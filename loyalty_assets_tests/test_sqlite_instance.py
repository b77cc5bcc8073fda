"""The local SQLite instance of dagster.yaml (`loyalty run`/`demo` without DAGSTER_PG_HOST, `dagster
dev` from the repo root): Dagster's own SQLite storage with a batch of asset events written at once
(loyalty_assets/instance.py). A range of days writes two events per asset and day; stock SQLite
storage opens an engine and commits for each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy
from conftest import (
    blocking_check_failures,
    build_test_resources,
    check_planned_range,
    location_definitions,
    materialize_range,
)
from magento_factory import order

from loyalty_assets.cli import write_local_instance
from loyalty_assets.instance import BatchedSqliteEventLogStorage

DAY = dt.date(2024, 3, 5)


@pytest.fixture
def sqlite_instance(tmp_path, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """The instance `loyalty run` builds from dagster.yaml (cli.prepare_instance), in tmp."""
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)  # the storage sets it; restored after
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


def _partitioned_keys() -> list[dg.AssetKey]:
    return [key for a in location_definitions().assets if a.partitions_def for key in a.keys]


def _range_run(instance, box, warehouse, first: dt.date, days: int) -> tuple[dg.ExecuteInProcessResult, int]:
    """A range run of the whole graph, and the database connections it opened."""
    opened = []

    def count(*_args) -> None:
        opened.append(1)

    sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", count)
    try:
        result = materialize_range(first, first + dt.timedelta(days=days - 1), build_test_resources(box, warehouse),
                                   instance=instance)  # fmt: skip
    finally:
        sqlalchemy.event.remove(sqlalchemy.pool.Pool, "connect", count)
    assert result.success and blocking_check_failures(result) == []
    return result, len(opened)


def test_a_range_runs_bookkeeping_follows_its_assets_not_its_days(sqlite_instance, sandbox, tmp_path) -> None:
    """Every day of every asset is stored, and ten more days cost the instance a handful of database
    connections (stock SQLite storage: two or three per asset event, about 1,400 more here)."""
    box = sandbox(orders=[order(1, "2024-03-05 09:00:00", subtotal="120.00", email="ann@example.com")])
    partitioned = _partitioned_keys()
    assert len(partitioned) > 5
    _, short = _range_run(sqlite_instance, box, tmp_path / "short.duckdb", DAY, 2)
    first = DAY + dt.timedelta(days=2)
    result, long = _range_run(sqlite_instance, box, tmp_path / "long.duckdb", first, 12)
    days = {(first + dt.timedelta(days=i)).isoformat() for i in range(12)}
    for key in partitioned:
        assert sqlite_instance.get_materialized_partitions(key) >= days, key.to_user_string()
        record = sqlite_instance.get_latest_materialization_event(key)
        assert record is not None and record.run_id == result.run_id
    more_events = len(partitioned) * 10 * 2  # planned + materialized, per asset and extra day
    assert long - short < more_events / 10, (short, long)


def test_a_created_range_runs_planned_days_are_stored_one_row_per_asset_and_day(sqlite_instance) -> None:
    assert isinstance(sqlite_instance.event_log_storage, BatchedSqliteEventLogStorage)
    check_planned_range(sqlite_instance, DAY - dt.timedelta(days=2), DAY + dt.timedelta(days=2))
