"""Contract: the graph runs on a PostgreSQL-backed Dagster instance and the `duckdb` pool is
enforced there (DESIGN.md §3 "Instance", "Concurrency", "PostgreSQL in tests"; CONTRACT.md §4;
issue 2 item 9).

The server is the one named by DAGSTER_PG_* when set, else 127.0.0.1:5432 as `postgres` (trust
auth); each test works in a throwaway database it creates and drops. Without a reachable server the
tests skip saying why, unless LOYALTY_REQUIRE_POSTGRES=1 (CI), where they fail instead.

Pool enforcement is shown on the warehouse job's own executor (in-process, like `loyalty run`):
with the pool's single slot held by another run, the materialization waits on the pool and writes
nothing; once the slot is freed it completes, never holding more than one slot.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import duckdb
import pytest
import sqlalchemy
import yaml
from conftest import (
    blocking_check_failures,
    build_test_resources,
    check_planned_range,
    location_definitions,
    materialize_range,
)
from magento_factory import memo, order

from loyalty_assets.instance import BatchedPostgresEventLogStorage, pg_connect, pg_server

DAY = dt.date(2024, 3, 5)
ROOT = Path(__file__).resolve().parents[1]
POOL = "duckdb"


@pytest.fixture
def pg_url(pg_admin) -> Iterator[tuple[str, dict[str, str], str]]:
    """A fresh, empty database on the server: (SQLAlchemy URL, server settings, database name)."""
    server = pg_server()
    name = f"loyalty_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    auth = quote(server["user"]) + (f":{quote(server['password'])}" if server["password"] else "")
    url = f"postgresql+psycopg2://{auth}@{server['host']}:{server['port']}/{name}"
    try:
        yield url, server, name
    finally:
        with pg_admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_instance(pg_url, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """The instance `loyalty run` builds from deploy/postgres/dagster.yaml, on the throwaway database."""
    _, server, name = pg_url
    for key, value in (("HOST", server["host"]), ("PORT", server["port"]), ("USER", server["user"]),
                       ("PASSWORD", server["password"] or "unused-with-trust-auth"), ("DB", name)):
        monkeypatch.setenv(f"DAGSTER_PG_{key}", value)
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)  # restored (unset) after the test
    config = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    overrides = {"storage": config["storage"], "concurrency": config["concurrency"]}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


@pytest.fixture
def resources(sandbox, warehouse_path):
    box = sandbox(
        orders=[
            order(1, "2024-03-05 09:00:00", subtotal="120.00", email="ann@example.com"),
            order(2, "2024-03-05 10:00:00", subtotal="40.00", email="bob@example.com"),
        ],
        creditmemos=[memo(10, 1, "2024-03-05 15:00:00", subtotal="20.00")],
    )
    return build_test_resources(box, warehouse_path), warehouse_path


def _query(pg_url, sql: str, params: tuple = ()) -> list[tuple]:
    conn = pg_connect(pg_url[2], timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_instance_uses_postgres_with_pools_limited_to_one(pg_instance, pg_url) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert pg_instance.event_log_storage.supports_global_concurrency_limits
    assert pg_instance.event_log_storage.get_pool_config().default_pool_limit == 1
    assert ("runs",) in _query(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )


def test_partition_materializes_on_postgres_and_history_is_stored_there(
    pg_instance, pg_url, resources
) -> None:
    res, warehouse = resources
    result = materialize_range(DAY, DAY, res, instance=pg_instance)
    assert blocking_check_failures(result) == []
    assert result.success

    assert _query(pg_url, "SELECT status FROM runs WHERE run_id = %s", (result.run_id,)) == [("SUCCESS",)]
    materialized = {
        row[0]
        for row in _query(
            pg_url,
            "SELECT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (result.run_id,),
        )
    }
    every_asset = {key.to_string() for a in location_definitions().assets for key in a.keys}
    assert materialized == every_asset
    record = pg_instance.get_latest_materialization_event(dg.AssetKey("ledger_journal"))
    assert record is not None and record.run_id == result.run_id

    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        # 120 - 20 refunded on the same day = 100 points for Ann, 40 for Bob.
        assert conn.execute("SELECT sum(points) FROM ledger_entries").fetchone()[0] == 140
    finally:
        conn.close()


def test_duckdb_pool_blocks_the_run_until_its_only_slot_is_free(pg_instance, resources) -> None:
    res, warehouse = resources
    storage = pg_instance.event_log_storage

    # Another run (a stand-in for a concurrent `loyalty run`) holds the pool's only slot.
    blocker = "blocker-" + uuid.uuid4().hex[:8]
    storage.initialize_concurrency_limit_to_default(POOL)
    assert storage.get_concurrency_info(POOL).slot_count == 1
    assert storage.claim_concurrency_slot(POOL, blocker, "writes_the_warehouse").is_claimed

    outcome: dict[str, object] = {}
    max_claimed = 0

    def run() -> None:
        try:
            outcome["result"] = materialize_range(DAY, DAY, res, instance=pg_instance)
        except BaseException as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        waiting: set[str] = set()
        while time.monotonic() < deadline and not waiting and thread.is_alive():
            waiting = storage.get_concurrency_info(POOL).pending_run_ids - {blocker}
            time.sleep(0.2)
        assert waiting, f"the run never queued on the {POOL} pool: {outcome}"
        time.sleep(4)
        info = storage.get_concurrency_info(POOL)
        assert thread.is_alive(), f"the run finished while the pool was full: {outcome}"
        assert info.active_run_ids == {blocker}
        assert info.pending_run_ids - {blocker} == waiting
        (run_id,) = waiting
        assert not pg_instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records, "an asset materialized while its pool was full"
        assert not warehouse.exists() or _raw_rows(warehouse) == 0
    finally:
        storage.free_concurrency_slots_for_run(blocker)

    while thread.is_alive() and time.monotonic() < deadline + 120:
        max_claimed = max(max_claimed, storage.get_concurrency_info(POOL).active_slot_count)
        thread.join(0.2)
    assert not thread.is_alive(), "the run did not finish after the slot was freed"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert isinstance(result, dg.ExecuteInProcessResult)
    assert result.run_id == run_id
    assert blocking_check_failures(result) == []
    assert result.success
    assert max_claimed <= 1
    assert _raw_rows(warehouse) == 3
    # The run gave its slot back: the pool is free for the next writer.
    assert storage.get_concurrency_info(POOL).active_slot_count == 0


def _raw_rows(warehouse) -> int:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
    finally:
        conn.close()


def test_a_range_run_holds_its_connections_and_stores_every_day_of_every_asset(
    pg_instance, pg_url, resources
) -> None:
    """deploy/postgres/dagster.yaml's storage (loyalty_assets/instance.py): stock dagster-postgres
    opens a connection per statement, about five per event, and a range writes two events per asset
    and day; a held connection and batched writes keep a backfill's bookkeeping small."""
    res, _ = resources
    first, last = DAY - dt.timedelta(days=4), DAY + dt.timedelta(days=5)
    days = {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    opened = []

    def count(*_args) -> None:
        opened.append(1)

    sqlalchemy.event.listen(sqlalchemy.pool.Pool, "connect", count)
    try:
        result = materialize_range(first, last, res, instance=pg_instance)
    finally:
        sqlalchemy.event.remove(sqlalchemy.pool.Pool, "connect", count)
    assert result.success and blocking_check_failures(result) == []

    partitioned = [key for a in location_definitions().assets if a.partitions_def for key in a.keys]
    assert len(partitioned) > 5
    for key in partitioned:
        assert pg_instance.get_materialized_partitions(key) == days, key.to_user_string()
    planned = pg_instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=100_000
    ).records
    assert len(planned) >= len(partitioned) * len(days)
    # planned events are written in batches, yet stored as Dagster stores each: one row per asset and
    # day (the UI's in-progress and failed partitions read them), the asset's last run beside its key
    for key in partitioned:
        rows = _query(pg_url, """SELECT partition FROM event_logs WHERE run_id = %s AND asset_key = %s
                                 AND dagster_event_type = 'ASSET_MATERIALIZATION_PLANNED'""",
                      (result.run_id, key.to_string()))  # fmt: skip
        assert sorted(p for (p,) in rows) == sorted(days), key.to_user_string()
        assert _query(pg_url, "SELECT last_run_id FROM asset_keys WHERE asset_key = %s",
                      (key.to_string(),)) == [(result.run_id,)]  # fmt: skip
    # a batch's rows get their ids in the batch's order: each asset's entry points at its own last day
    for record in pg_instance.get_asset_records(partitioned):
        storage_id = record.asset_entry.last_materialization_record.storage_id
        assert _query(pg_url, "SELECT asset_key, partition FROM event_logs WHERE id = %s", (storage_id,)) == [
            (record.asset_entry.asset_key.to_string(), last.isoformat())]
    in_flight = pg_instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(
        partitioned[0])
    assert in_flight == {}
    events = len(planned) * 2
    # Stock dagster-postgres: about four connections per event (2,752 for these ~700). Held: one per
    # batch of events (an index check opens a second one), so a handful per asset, whatever the days.
    assert len(opened) * 10 < events


def test_loyalty_run_stores_its_run_in_postgres_through_the_deploy_config(pg_url, tmp_path) -> None:
    """`loyalty run` with DAGSTER_PG_HOST set: prepare_instance copies deploy/postgres/dagster.yaml,
    whose custom storage class a fresh process must import; the run and its events land in PostgreSQL."""
    _, server, name = pg_url
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAGENTO_", "DAGSTER_", "LOYALTY_", "BIGCOMMERCE_", "SMILE_", "SALESFORCE_"))}
    env.update({"DAGSTER_PG_HOST": server["host"], "DAGSTER_PG_PORT": server["port"],
                "DAGSTER_PG_USER": server["user"], "DAGSTER_PG_PASSWORD": server["password"] or "unused",
                "DAGSTER_PG_DB": name, "LOYALTY_WAREHOUSE": str(tmp_path / "loyalty.duckdb")})  # fmt: skip
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    loyalty = Path(sys.executable).with_name("loyalty")
    proc = subprocess.run([str(loyalty), "run", "--start", "2024-03-04", "--end", "2024-03-06"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"instance: PostgreSQL {server['host']}:{server['port']}/{name}" in proc.stdout
    config = yaml.safe_load((cwd / "data" / "dagster_home_postgres" / "dagster.yaml").read_text())
    assert config["storage"]["custom"]["class"] == "PooledPostgresStorage"
    assert _query(pg_url, "SELECT status FROM runs") == [("SUCCESS",)]
    days = _query(
        pg_url,
        """SELECT DISTINCT partition FROM event_logs
           WHERE asset_key = '["ledger_journal"]' AND dagster_event_type = 'ASSET_MATERIALIZATION'""",
    )
    assert sorted(d for (d,) in days) == ["2024-03-04", "2024-03-05", "2024-03-06"]


def test_a_range_runs_planned_days_are_stored_one_row_per_asset_and_day(pg_instance) -> None:
    assert isinstance(pg_instance.event_log_storage, BatchedPostgresEventLogStorage)
    check_planned_range(pg_instance, DAY - dt.timedelta(days=2), DAY + dt.timedelta(days=2))


def test_only_dagster_pg_host_set_makes_dagsters_own_database_once(pg_admin, tmp_path, monkeypatch) -> None:
    """CONTRACT.md §4: with DAGSTER_PG_HOST alone, the others default and the database is created on the
    server the first time (it was named but never made, so such a run failed to connect)."""
    from loyalty_assets import cli

    server, name = pg_server(), f"loyalty_test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(cli, "DEFAULT_PG_DB", name)
    for key in ("DAGSTER_HOME", "DAGSTER_PG_DB"):  # set, then removed: restored (unset) after the test,
        monkeypatch.setenv(key, "")                # whatever prepare_instance writes (a delenv of an
        monkeypatch.delenv(key)                    # absent variable records nothing to restore)
    monkeypatch.setenv("DAGSTER_PG_HOST", server["host"])  # the port, user and password as given, else defaults
    monkeypatch.chdir(tmp_path)
    try:
        assert cli.prepare_instance() == f"PostgreSQL {server['host']}:{server['port']}/{name}"
        with pg_admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
            assert cur.fetchone() == (1,)
        with dg.DagsterInstance.get() as instance:  # the deploy config on it
            assert isinstance(instance.event_log_storage, BatchedPostgresEventLogStorage)
            assert instance.get_runs() == []
        monkeypatch.delenv("DAGSTER_PG_DB")
        monkeypatch.delenv("DAGSTER_HOME")
        assert cli.prepare_instance().endswith(f"/{name}")  # the second time: found, not made again
    finally:
        with pg_admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_empty_postgres_settings_count_as_unset(pg_url, tmp_path, monkeypatch) -> None:
    """CONTRACT.md §4: DAGSTER_PG_PORT, _USER and _PASSWORD default to 5432, postgres and postgres; an
    empty value is unset too, as instance.pg_server reads it (it was left in place for Dagster, whose
    IntSource failed on it with a traceback)."""
    from loyalty_assets.cli import prepare_instance

    _, server, name = pg_url
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", "")  # restored (unset) after the test, whatever prepare_instance sets
    monkeypatch.delenv("DAGSTER_HOME")
    for key, value in (("HOST", server["host"]), ("PORT", ""), ("USER", " "), ("PASSWORD", ""), ("DB", name)):
        monkeypatch.setenv(f"DAGSTER_PG_{key}", value)
    described = prepare_instance()
    assert (os.environ["DAGSTER_PG_PORT"], os.environ["DAGSTER_PG_USER"], os.environ["DAGSTER_PG_PASSWORD"]) == (
        "5432", "postgres", "postgres")
    assert described == f"PostgreSQL {server['host']}:5432/{name}"
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []  # the storage Dagster builds from those values connects
