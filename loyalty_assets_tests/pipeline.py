"""Runs the rule pipeline (lib/ only, no Dagster, no HTTP) over a bare DuckDB for rule tests."""

from __future__ import annotations

import datetime as dt

import duckdb

from loyalty_assets.lib import facts, identity, ledger, normalize, raw, status, tiers
from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.platforms.magento import parse_time
from loyalty_assets.lib.program import Program

FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def land(conn: duckdb.DuckDBPyConnection, program: Program, orders=(), memos=(), customers=()) -> None:
    """Store Magento payloads as raw versions, as the ingest assets do."""
    for source, records, id_field in (
        ("magento.orders", orders, "entity_id"),
        ("magento.creditmemos", memos, "entity_id"),
        ("magento.customers", customers, "id"),
    ):
        raw.insert_versions(
            conn, source, "default", list(records), lambda r, f=id_field: r[f],
            lambda r: parse_time(r.get("updated_at") or r.get("created_at"), "updated_at"), program.tz,
        )


def map_and_resolve(conn: duckdb.DuckDBPyConnection, program: Program, through: dt.date) -> None:
    """The first two steps of `process` only: new raw versions mapped, identities resolved."""
    normalize.normalize(conn, program, FxTable.load(None), through)
    identity.resolve_members(conn, program, through)


def book(conn: duckdb.DuckDBPyConnection, program: Program, through: dt.date,
         now: dt.datetime = FAR_FUTURE, fx: FxTable | None = None) -> ledger.BookingResult:
    """The steps of `process` up to the ledger: normalize, resolve identities, refresh order_facts, book."""
    normalize.normalize(conn, program, fx or FxTable.load(None), through)
    identity.resolve_members(conn, program, through)
    facts.refresh_order_facts(conn, program)
    return ledger.book_through(conn, program, through, now)


def process(conn: duckdb.DuckDBPyConnection, program: Program, through: dt.date,
            now: dt.datetime = FAR_FUTURE, fx: FxTable | None = None) -> ledger.BookingResult:
    """Normalize, resolve identities, book the ledger up to `through`, evaluate tiers, refresh status."""
    result = book(conn, program, through, now, fx)
    tiers.evaluate_through(conn, program)
    status.refresh_member_status(conn, program)
    return result


def entries(conn: duckdb.DuckDBPyConnection) -> list[tuple]:
    return conn.execute(
        "SELECT order_key, kind, points, booked_on, available_on FROM ledger_entries ORDER BY booked_on, order_key, kind"
    ).fetchall()


def status_of(conn: duckdb.DuckDBPyConnection, email: str) -> dict:
    rows = conn.execute("SELECT * FROM member_status WHERE email = ?", [email]).fetchall()  # all: no open result
    assert rows, f"no member_status row for {email}"
    row = rows[0]
    cols = [d[0] for d in conn.description]
    return dict(zip(cols, row, strict=True))


def indexes(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The names of `table`'s indexes (the unique keys of warehouse.UNIQUE_KEYS are indexes)."""
    return [r[0] for r in conn.execute(
        "SELECT index_name FROM duckdb_indexes() WHERE table_name = ? ORDER BY 1", [table]).fetchall()]
