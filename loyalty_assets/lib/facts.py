"""order_facts: every order as it stands now, with its member (CONTRACT.md §3).

After the first refresh only the orders with a version or refund mapped since the last one are
recomputed; orders of members merged away since move to the survivor."""

import datetime as dt

import duckdb

from loyalty_assets.lib.ledger import compute_order_values, prepare_rules
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.warehouse import run_script

LATEST = dt.date(9998, 12, 30)


def refresh_order_facts(conn: duckdb.DuckDBPyConnection, program: Program) -> int:
    row = conn.execute("SELECT refreshed_at FROM refresh_state WHERE name = 'order_facts'").fetchone()
    since = row[0] if row else None
    conn.execute("BEGIN")
    try:
        started = conn.execute("SELECT now()").fetchone()[0]
        if since is not None:
            conn.execute(
                """CREATE OR REPLACE TEMP TABLE order_scope AS
                   SELECT order_key FROM order_versions WHERE mapped_at > $since
                   UNION SELECT order_key FROM refund_versions WHERE mapped_at > $since""",
                {"since": since},
            )
        compute_order_values(conn, program, LATEST, prepare_rules(conn, program), scoped=since is not None)
        run_script(conn, "order_facts", {"full": since is None})
        conn.execute(
            """INSERT INTO refresh_state VALUES ('order_facts', ?, NULL) ON CONFLICT (name) DO UPDATE
               SET refreshed_at = excluded.refreshed_at""",
            [started],
        )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return conn.execute("SELECT count(*) FROM order_facts").fetchone()[0]
