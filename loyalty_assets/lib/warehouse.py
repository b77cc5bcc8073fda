"""Opening the DuckDB warehouse and running the SQL files of lib/sql/ by name."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
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
    digest = hashlib.sha256(sql("schema").encode()).hexdigest()[:16]
    try:
        rows = conn.execute("SELECT digest FROM schema_info").fetchall()
    except duckdb.CatalogException:
        rows = []
    if rows and rows[0][0] == digest:
        return
    conn.execute(sql("schema")).fetchall()
    journal_index(conn)
    conn.execute("CREATE OR REPLACE TABLE schema_info AS SELECT ? AS digest, now() AS applied_at", [digest]).fetchall()


JOURNAL_INDEX = "ledger_journal_entry_id"


def journal_index(conn: duckdb.DuckDBPyConnection) -> bool:
    """Make sure the journal's entry ids are unique (RULES.md §6); True when that is by the index
    JOURNAL_INDEX, which a first booking may drop and build again (False: by the PRIMARY KEY of a
    warehouse created before the index)."""
    if conn.execute(
        """SELECT count(*) FROM duckdb_constraints()
           WHERE table_name = 'ledger_journal' AND constraint_type = 'PRIMARY KEY'"""
    ).fetchall()[0][0]:
        return False
    conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {JOURNAL_INDEX} ON ledger_journal (entry_id)")
    return True


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


def run_script(conn: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> None:
    """Run a multi-statement SQL file; each statement gets the named parameters it uses."""
    import re

    params = params or {}
    for statement in (s.strip() for s in re.split(r";\s*\n", sql(name))):
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
