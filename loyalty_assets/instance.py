"""The Dagster instance's PostgreSQL storage, tuned for runs that write thousands of events.

A backfill of D days writes two events per asset key and day (planned, then materialized). Stock
dagster-postgres opens a new connection for every statement (NullPool: about five per event) and
Dagster writes events one by one unless DAGSTER_EVENT_BATCH_SIZE is set, and even then stores the
run's planned events one by one; at 365 days that was minutes of bookkeeping for a few seconds of
SQL. This storage holds one connection per process, as dagster-webserver already does for itself,
turns batching on for the processes that use it, and writes a batch of planned events as
dagster-postgres writes a batch of materializations. Configured in deploy/postgres/dagster.yaml as
`storage: custom:` with the usual `postgres_db` block.
"""

from __future__ import annotations

import os

from dagster._core.events import DagsterEventType
from dagster._core.storage.config import pg_config
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Materializations of a partition range reach the event log in batches of up to this many.
EVENT_BATCH_SIZE = "1000"
# dagster-webserver's defaults for its own pool: the daemon's threads get overflow connections.
POOL_RECYCLE_SECONDS = 3600
POOL_MAX_OVERFLOW = 20


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """Planned events in one insert: what `store_event` does for each, done for the batch (the rows,
    their asset tags, and each asset's entry from its last event, as for materializations).
    dagster-postgres batches only materializations and observations and stores other batches one
    event at a time; the rest of a batch (asset checks' planned events) still goes that way."""

    def store_event_batch(self, events) -> None:
        planned, rest = [], []
        for e in events:
            is_planned = e.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            (planned if is_planned and e.dagster_event.asset_key else rest).append(e)
        if planned:
            self._store_planned(planned)
        if rest:
            super().store_event_batch(rest)

    def _store_planned(self, events) -> None:
        with self._connect() as conn:
            result = conn.execute(self.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id))
            event_ids = [int(row[0]) for row in result.fetchall()]
        last = {e.dagster_event.asset_key: (e, event_id) for e, event_id in zip(events, event_ids, strict=True)}
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in last.values():
                self._store_asset_event(conn, event, event_id)


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres with a held connection (pool of one, overflow for concurrent threads)."""

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
