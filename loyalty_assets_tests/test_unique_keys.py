"""Unique keys kept as indexes (warehouse.UNIQUE_KEYS): an empty table's first fill goes in without
its index, built after it; the index is always back afterwards, and a key given twice is refused
as the index would have refused it. (The journal's own cases: test_ledger_rules.py.)"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from magento_factory import order
from pipeline import indexes, land, process

from loyalty_assets.lib import outbox, warehouse
from loyalty_assets.lib.program import parse_program

D = dt.date


@pytest.fixture
def conn(tmp_path):
    c = warehouse.connect(str(tmp_path / "w.duckdb"))
    yield c
    c.close()


def test_every_unique_key_is_an_index_of_a_new_warehouse_and_refuses_a_key_twice(conn):
    assert set(warehouse.UNIQUE_KEYS) == {"ledger_journal", "member_keys", "outbox"}
    conn.execute("INSERT INTO member_keys VALUES ('M1', 'a@example.com', 'email', now())")
    for table in warehouse.UNIQUE_KEYS:
        assert indexes(conn, table) == [warehouse.index_name(table)]
        assert not conn.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? "
                                "AND constraint_type = 'PRIMARY KEY'", [table]).fetchall()[0][0]
    with pytest.raises(duckdb.ConstraintException, match="Duplicate"):
        conn.execute("INSERT INTO member_keys VALUES ('M2', 'a@example.com', 'email', now())")


def test_a_first_fill_goes_in_without_the_index_which_comes_back_whatever_happens(conn):
    with warehouse.first_fill(conn, "member_keys") as check:
        assert indexes(conn, "member_keys") == []
        conn.execute("BEGIN")
        conn.execute("INSERT INTO member_keys VALUES ('M1', 'a@example.com', 'email', now()), "
                     "('M2', 'a@example.com', 'email', now()), ('M2', 'b@example.com', 'email', now())")
        with pytest.raises(duckdb.ConstraintException, match=r"member_keys: key given twice: \['a@example.com'\]"):
            check()
        conn.execute("ROLLBACK")
    assert indexes(conn, "member_keys") == ["member_keys_key"]
    assert conn.execute("SELECT count(*) FROM member_keys").fetchall() == [(0,)]

    with pytest.raises(RuntimeError, match="failed"), warehouse.first_fill(conn, "member_keys"):
        raise RuntimeError("the fill failed")
    assert indexes(conn, "member_keys") == ["member_keys_key"]

    with warehouse.first_fill(conn, "member_keys") as check:
        conn.execute("INSERT INTO member_keys VALUES ('M1', 'a@example.com', 'email', now())")
        check()
    # a table with rows keeps its index through the next fill, which the index checks itself
    with warehouse.first_fill(conn, "member_keys") as check:
        assert indexes(conn, "member_keys") == ["member_keys_key"]
        with pytest.raises(duckdb.ConstraintException, match="Duplicate"):
            conn.execute("INSERT INTO member_keys VALUES ('M9', 'a@example.com', 'email', now())")
        check()


def test_identity_and_the_outbox_fill_their_tables_and_leave_the_indexes(conn):
    p = parse_program("{}")
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-01 11:00:00", email="bo@example.com")])
    process(conn, p, D(2024, 3, 2))
    assert conn.execute("SELECT count(*) FROM member_keys").fetchall()[0][0] >= 2
    assert outbox.prepare_in_transaction(conn, "smile", D(2024, 3, 2), ("smile",)) == 2
    for table in ("member_keys", "outbox"):
        assert indexes(conn, table) == [warehouse.index_name(table)]
    with pytest.raises(duckdb.ConstraintException, match="Duplicate"):
        conn.execute("INSERT INTO outbox SELECT * FROM outbox LIMIT 1")
    # the next runs find rows: nothing is dropped, and they add what is new
    land(conn, p, orders=[order(3, "2024-03-02 10:00:00", email="cy@example.com")])
    process(conn, p, D(2024, 3, 3))
    assert conn.execute("SELECT count(DISTINCT member_id) FROM member_keys").fetchall() == [(3,)]
    assert outbox.prepare_in_transaction(conn, "smile", D(2024, 3, 3), ("smile",)) == 1
    for table in ("member_keys", "outbox"):
        assert indexes(conn, table) == [warehouse.index_name(table)]
