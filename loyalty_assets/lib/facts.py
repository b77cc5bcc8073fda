"""order_facts: every order as it stands now, with its member (CONTRACT.md §3)."""

import datetime as dt

import duckdb

from loyalty_assets.lib.ledger import compute_order_values, prepare_rules
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.warehouse import run_script

LATEST = dt.date(9998, 12, 30)


def refresh_order_facts(conn: duckdb.DuckDBPyConnection, program: Program) -> int:
    conn.execute("BEGIN")
    try:
        compute_order_values(conn, program, LATEST, prepare_rules(conn, program))
        run_script(conn, "order_facts")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return conn.execute("SELECT count(*) FROM order_facts").fetchone()[0]
