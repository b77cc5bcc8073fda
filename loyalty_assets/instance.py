"""The Dagster instance's storage, tuned for runs that write thousands of events.

A backfill of D days writes two events per asset key and day (planned, then materialized). Stock
storages write them one at a time: dagster-postgres opens a new connection for every statement
(NullPool: about five per event), SQLite a new engine and a commit for each, and Dagster batches
nothing unless DAGSTER_EVENT_BATCH_SIZE is set; even then both store planned events one by one. At
365 days that was minutes of bookkeeping for a few seconds of SQL. These storages keep Dagster's own
tables and classes and change only how a batch is written: a batch of asset events (planned,
materialized, observed) goes in as one executemany or one transaction, with what `store_event` does for
each (the rows, their asset tags, each asset's entry from its last event); they turn batching on for
the processes that use them, and the PostgreSQL one holds a connection per process, as
dagster-webserver already does for itself. Configured as `storage: custom:` in dagster.yaml (SQLite)
and deploy/postgres/dagster.yaml, with the stock `base_dir` / `postgres_db` config.

They call the storages' own row and index helpers (`_event_to_row`, `_store_asset_event_tags`,
`_store_asset_event`), which are not public API: pyproject pins Dagster, and test_postgres_instance.py
and test_sqlite_instance.py check what Dagster reads back (every day of every asset, planned days as
attempts, each asset's last run) before a version bump lands.
"""

from __future__ import annotations

import os
from collections import defaultdict

from dagster._core.events import DagsterEventType
from dagster._core.storage.config import pg_config
from dagster._core.storage.event_log import SqlEventLogStorageTable, SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


def pg_server() -> dict[str, str]:
    """The PostgreSQL server of the Dagster instance (DAGSTER_PG_*), with 127.0.0.1:5432 as `postgres`
    by default; `admin_db` is the database connected to for creating and dropping others."""
    return {"host": os.environ.get("DAGSTER_PG_HOST") or "127.0.0.1",
            "port": os.environ.get("DAGSTER_PG_PORT") or "5432",
            "user": os.environ.get("DAGSTER_PG_USER") or "postgres",
            "password": os.environ.get("DAGSTER_PG_PASSWORD") or "",
            "admin_db": os.environ.get("DAGSTER_PG_DB") or "postgres"}


def pg_connect(dbname: str | None = None, timeout: int = 10):
    """An autocommit psycopg2 connection to `dbname` (default: the admin database) on pg_server()."""
    import psycopg2

    server = pg_server()
    conn = psycopg2.connect(host=server["host"], port=int(server["port"]), user=server["user"],
                            password=server["password"] or None, dbname=dbname or server["admin_db"],
                            connect_timeout=timeout)
    conn.autocommit = True
    return conn


def ensure_pg_database(name: str) -> bool:
    """Create database `name` on pg_server() unless it exists; True when it was created."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone():
                return False
            cur.execute(f'CREATE DATABASE "{name}"')
            return True
    finally:
        conn.close()


# Materializations of a partition range reach the event log in batches of up to this many.
EVENT_BATCH_SIZE = "1000"
# asset events whose batch is written at once (the others keep Dagster's own path, one at a time)
BATCHED_EVENTS = {DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_MATERIALIZATION,
                  DagsterEventType.ASSET_OBSERVATION}

# dagster-webserver's defaults for its own pool: the daemon's threads get overflow connections.
POOL_RECYCLE_SECONDS = 3600
POOL_MAX_OVERFLOW = 20


def _split(events, types) -> tuple[list, list]:
    batched, rest = [], []
    for e in events:
        (batched if e.dagster_event_type in types and e.dagster_event.asset_key else rest).append(e)
    return batched, rest


def _index_asset_events(storage, conn, events, event_ids) -> None:
    """The index side of `store_event` for a batch: asset tags, and each asset's entry (last run,
    last event) from its last event in the batch, as dagster-postgres does for materializations."""
    storage._store_asset_event_tags(conn, events, event_ids)
    last = {e.dagster_event.asset_key: (e, event_id) for e, event_id in zip(events, event_ids, strict=True)}
    for event, event_id in last.values():
        storage._store_asset_event(conn, event, event_id)


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """Each batch of asset events in one executemany and one index transaction. dagster-postgres
    batches only materializations and observations, each batch as one INSERT ... VALUES statement
    that SQLAlchemy compiles with every row's parameters (twice the time of its executemany, which
    SQLAlchemy sends as pages of multi-row inserts and returns the ids in the rows' order), and
    stores other batches one event at a time; the rest of a batch (asset checks' planned events)
    still goes that way."""

    def store_event_batch(self, events) -> None:
        batched, rest = _split(events, BATCHED_EVENTS)
        if batched:
            rows = [self._event_to_row(e) for e in batched]
            insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id,
                                                                 sort_by_parameter_order=True)
            with self._connect() as conn:
                event_ids = [int(row[0]) for row in conn.execute(insert, rows).fetchall()]
            with self.index_transaction() as conn:
                _index_asset_events(self, conn, batched, event_ids)
        if rest:
            super().store_event_batch(rest)


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """A batch of asset events in two transactions (the run's shard, then its mirror in the index
    shard) instead of two or three engines and commits per event."""

    def store_event_batch(self, events) -> None:
        batched, rest = _split(events, BATCHED_EVENTS)
        by_run = defaultdict(list)
        for e in batched:
            by_run[e.run_id].append(e)
        insert = SqlEventLogStorageTable.insert()
        for run_id, run_events in by_run.items():
            rows = [self._event_to_row(e) for e in run_events]
            with self.run_connection(run_id) as conn:
                conn.execute(insert, rows)
            with self.index_transaction() as conn:
                event_ids = [conn.execute(insert, row).inserted_primary_key[0] for row in rows]
                _index_asset_events(self, conn, run_events, event_ids)
        for event in rest:
            self.store_event(event)


class BatchedSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage with batched asset events (`base_dir` as `storage: sqlite:`)."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = BatchedSqliteEventLogStorage(_event_logs_directory(base_dir))
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres with a held connection (pool of one, overflow for concurrent threads) and
    batched planned events."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None,
                 token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._event_log_storage.dispose()
        self._event_log_storage = BatchedPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        # No statement timeout (0): a run worker's queries are bounded by the run, not the UI.
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(0, POOL_RECYCLE_SECONDS, POOL_MAX_OVERFLOW)
        # Read by Dagster at every event; an explicit setting (0 turns batching off) wins.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @classmethod
    def config_type(cls):
        return pg_config()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:
        return cls(
            pg_url_from_config(config_value),
            config_value.get("should_autocreate_tables", True),
            inst_data,
            get_token_provider_from_config(config_value),
        )
