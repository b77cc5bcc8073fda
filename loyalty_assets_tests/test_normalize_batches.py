"""Normalize reads the pending versions a chunk at a time and writes the rows it maps as they grow,
each write with the outcomes of every version mapped so far (one transaction): the result does not
depend on the chunk sizes, and a run stopped half-way leaves no row without its outcome, so the next
run maps each version once."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from loyalty_assets import bench_data
from loyalty_assets.lib import normalize, warehouse
from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.platforms import sfcc
from loyalty_assets.lib.program import load_program

PLATFORMS = ["magento", "bigcommerce", "commercetools", "sfcc"]
THROUGH = dt.date(2025, 7, 20)


@pytest.fixture(autouse=True)
def _default_program(monkeypatch):
    monkeypatch.delenv("LOYALTY_PROGRAM_FILE", raising=False)
    monkeypatch.delenv("LOYALTY_FX_FILE", raising=False)


def landed() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    warehouse.ensure_schema(conn)
    bench_data.land_history(conn, orders=300, members=50, days=20, seed=11, memo_rate=0.2, tz="UTC",
                            platforms=PLATFORMS)
    return conn


def digest(conn: duckdb.DuckDBPyConnection) -> dict:
    out = {}
    for table, cols in (("order_versions", "order_key, updated_at, payload_hash, eligible_minor, signal, payment_ids"),
                        ("refund_versions", "refund_key, updated_at, refunded_eligible_minor, order_known"),
                        ("raw_processed", "source, version_key, outcome")):
        out[table] = conn.execute(f"SELECT count(*), bit_xor(hash({cols})) FROM {table}").fetchall()[0]
    return out


def test_the_chunk_sizes_change_nothing(monkeypatch):
    program, fx = load_program(), FxTable.load(None)
    whole = landed()
    expected = normalize.normalize(whole, program, fx, THROUGH)
    monkeypatch.setattr(normalize, "PENDING_CHUNK", 7)
    monkeypatch.setattr(normalize, "FLUSH_ROWS", 11)
    writes = []
    original = normalize._Batch.write

    def counted(self, conn, table, rows, columns=None, at_least=0):
        if rows and (not at_least or len(rows) >= at_least):
            writes.append((table, len(rows)))
        return original(self, conn, table, rows, columns, at_least)

    monkeypatch.setattr(normalize._Batch, "write", counted)
    chunked = landed()
    result = normalize.normalize(chunked, program, fx, THROUGH)
    assert result == expected
    assert expected.orders > 300 and expected.refunds > 0 and expected.quarantined == 0
    assert digest(chunked) == digest(whole)
    order_writes = [n for t, n in writes if t == "order_versions"]
    assert len(order_writes) > 10 and max(order_writes) < 11 + 7  # written as they grew, a chunk past the mark
    assert sum(order_writes) == expected.orders - chunked.execute(
        "SELECT count(*) FROM order_versions WHERE platform = 'magento'").fetchall()[0][0]  # Magento: in SQL


def test_a_run_stopped_half_way_leaves_every_row_with_its_outcome(monkeypatch):
    program, fx = load_program(), FxTable.load(None)
    monkeypatch.setattr(normalize, "PENDING_CHUNK", 10)
    monkeypatch.setattr(normalize, "FLUSH_ROWS", 10)
    conn = landed()
    mapped = []
    real = sfcc.map_order

    def dies_at_the_40th(payload, tenant, program, fx):
        if len(mapped) == 40:
            raise RuntimeError("the process is killed")  # not a record's fault: the run stops
        mapped.append(1)
        return real(payload, tenant, program, fx)

    monkeypatch.setitem(normalize.ORDER_MAPPERS, "sfcc.orders", dies_at_the_40th)
    with pytest.raises(RuntimeError):
        normalize.normalize(conn, program, fx, THROUGH)
    written = conn.execute("SELECT count(*) FROM order_versions WHERE platform = 'sfcc'").fetchall()[0][0]
    assert 0 < written <= 40
    without_outcome = conn.execute(
        """SELECT count(*) FROM order_versions v WHERE v.platform = 'sfcc' AND NOT EXISTS (
               SELECT 1 FROM raw_processed p WHERE p.source = 'sfcc.orders' AND p.outcome = 'processed'
               AND p.version_key LIKE '%#' || v.payload_hash)"""
    ).fetchall()[0][0]
    assert without_outcome == 0
    monkeypatch.setitem(normalize.ORDER_MAPPERS, "sfcc.orders", real)
    normalize.normalize(conn, program, fx, THROUGH)  # the next run maps the rest, each version once
    whole = landed()
    normalize.normalize(whole, program, fx, THROUGH)
    assert digest(conn)["order_versions"] == digest(whole)["order_versions"]
    assert conn.execute(
        "SELECT count(*) FROM (SELECT order_key, updated_at, payload_hash FROM order_versions GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()[0][0] == 0
