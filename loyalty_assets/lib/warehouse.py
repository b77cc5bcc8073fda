"""Opening the DuckDB warehouse and running the SQL files of lib/sql/ by name."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_WAREHOUSE = "data/loyalty.duckdb"


def warehouse_path() -> str:
    return os.environ.get("LOYALTY_WAREHOUSE") or DEFAULT_WAREHOUSE


@cache
def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def ensure_schema(conn: duckdb.DuckDBPyConnection, path: str | None = None) -> None:
    """Create what is missing. The DDL runs only when schema.sql differs from what this file last
    ran (one small query otherwise: the DDL costs more than a day's inserts)."""
    conn.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar for statements over 2 s, even to a pipe: it filled the steps' logs
    conn.execute("SET enable_progress_bar = false")
    digest = hashlib.sha256(sql("schema").encode()).hexdigest()[:16]
    try:
        rows = conn.execute("SELECT digest FROM schema_info").fetchall()
    except duckdb.CatalogException:
        rows = []
    if rows and rows[0][0] == digest:
        return
    conn.execute(sql("schema")).fetchall()
    for table in UNIQUE_KEYS:
        unique_index(conn, table)
    conn.execute("CREATE OR REPLACE TABLE schema_info AS SELECT ? AS digest, now() AS applied_at", [digest]).fetchall()


# Unique keys kept as indexes rather than PRIMARY KEYs (RULES.md §6 for the journal): an index can be
# dropped while an empty table takes its first bulk insert and built once after it. ART takes keys
# one at a time and merges them into the table's index at the commit: 1M journal entries cost 2.8 s
# through it against 1.3 s + 0.5 s to build it after. Warehouses created before keep their PRIMARY KEYs.
UNIQUE_KEYS = {"ledger_journal": "entry_id", "member_keys": "key", "outbox": "batch_id"}


def index_name(table: str) -> str:
    return f"{table}_{UNIQUE_KEYS[table]}"


def unique_index(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Make sure `table`'s key is unique; True when that is by its index (which first_fill may drop),
    False by the PRIMARY KEY of a warehouse created before the index."""
    primary, indexed = conn.execute(
        """SELECT (SELECT count(*) FROM duckdb_constraints() WHERE table_name = $table AND constraint_type = 'PRIMARY KEY'),
                  (SELECT count(*) FROM duckdb_indexes() WHERE table_name = $table AND index_name = $index)""",
        {"table": table, "index": index_name(table)},
    ).fetchall()[0]
    if primary:
        return False
    if not indexed:  # looked up first: DDL, even a CREATE that does nothing, writes to the catalog
        conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index_name(table)} ON {table} ({UNIQUE_KEYS[table]})")
    return True


@contextmanager
def first_fill(conn: duckdb.DuckDBPyConnection, table: str) -> Iterator[Callable[[], None]]:
    """Around the transaction that may be the first to fill `table` (outside it: dropping the index
    inside the transaction made DuckDB write the new rows to the WAL, 2.45 s for 1M entries): an
    empty table takes it without its unique index, built once afterwards whatever happened (and by
    the next call if the process died in between). Yields a check the transaction runs before its
    COMMIT, which refuses a key given twice as the index would have."""
    key = UNIQUE_KEYS[table]
    bulk = unique_index(conn, table) and not conn.execute(f"SELECT EXISTS (FROM {table})").fetchall()[0][0]

    def check() -> None:
        if bulk and (twice := conn.execute(
                f"SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1 ORDER BY 1 LIMIT 5").fetchall()):
            raise duckdb.ConstraintException(f"{table}: {key} given twice: {[t[0] for t in twice]}")

    if bulk:
        conn.execute(f"DROP INDEX {index_name(table)}")
    try:
        yield check
    finally:
        if bulk:
            unique_index(conn, table)


def connect(path: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A short-lived connection with the schema in place (read-only ones skip DDL)."""
    path = path or warehouse_path()
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(path, read_only=read_only)
    if read_only:
        conn.execute("SET TimeZone = 'UTC'")
    else:
        ensure_schema(conn, path)
    return conn


def run_script(conn: duckdb.DuckDBPyConnection, name: str, params: dict | None = None,
               fill: dict[str, str] | None = None) -> None:
    """Run a multi-statement SQL file; each statement gets the named parameters it uses. `fill`:
    SQL text for the file's {name} placeholders, where a statement's shape depends on the data."""
    import re

    params = params or {}
    text = sql(name)
    for key, value in (fill or {}).items():
        text = text.replace("{" + key + "}", value)
    for statement in (s.strip() for s in re.split(r";\s*\n", text)):
        if not statement or all(
            line.strip().startswith("--") or not line.strip() for line in statement.splitlines()
        ):
            continue
        used = {k: v for k, v in params.items() if re.search(rf"\${k}\b", statement)}
        conn.execute(statement, used or None)


@contextmanager
def registered(conn: duckdb.DuckDBPyConnection, name: str, frame: object) -> Iterator[None]:
    """`frame` (Arrow or pandas) readable as table `name` inside the block: rows go in set-based,
    one statement for all of them (executemany costs milliseconds a row in DuckDB)."""
    conn.register(name, frame)
    try:
        yield
    finally:
        conn.unregister(name)
