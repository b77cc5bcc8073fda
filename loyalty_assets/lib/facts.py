"""order_facts: every order as it stands now, with its member (CONTRACT.md §3).

After the first refresh only the orders with a version or refund mapped since the last one are
recomputed, from their row and what was mapped since, so a day never reads the history of its
orders; orders of members merged away since move to the survivor."""

import datetime as dt

import duckdb

from loyalty_assets.lib.ledger import compute_order_values
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
            _fill_prior_keys(conn)
        versions = "order_versions" if since is None else _versions_since(conn, since)
        # no rules: a row holds no points, and order_values cost about 1 s of a full refresh at 1M orders
        compute_order_values(conn, program, LATEST, None, scoped=since is not None, versions=versions)
        # a row's prior_keys carries its earlier versions' keys into the next refresh (ROW_AS_VERSION)
        conn.execute(KEYS_SQL.format(versions=versions) if since is not None else FULL_KEYS_SQL)
        run_script(conn, "order_facts", {"full": since is None, "started": started})
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


# an order's row as a version: its latest version's fields, with its lifecycle as the signal (the
# highest rank seen), which order_state_asof.sql combines with later versions as with any other.
# The rows are found by their keys alone first (temp table scope_rows), then read whole by rowid: a
# semi-join on the key read all 22 columns of every row (1M rows for a day's 5,000 at 1M orders).
ROW_AS_VERSION = """
    SELECT order_key, platform, source_id, order_number, store_key, created_at, updated_at, payload_hash,
           lifecycle AS signal, email, customer_key, currency, subtotal_minor, discount_minor, tax_minor,
           shipping_minor, grand_total_minor, eligible_minor, calc_currency, calc_eligible_minor, fx_rate,
           to_program_factor, to_program_divisor, discount_codes, prior_keys
    FROM order_facts WHERE rowid IN (SELECT row_id FROM scope_rows WHERE NOT legacy)"""

# every key (customer id, else e-mail: what order_members.sql finds the member by) each order of
# order_state belonged to a member by, from {versions} and the keys its row kept (prior_keys)
KEYS_SQL = """
    CREATE OR REPLACE TEMP TABLE facts_keys AS
    SELECT order_key, list(DISTINCT k ORDER BY k) AS keys
    FROM (SELECT order_key, unnest(list_concat([coalesce(customer_key, email)], prior_keys)) AS k FROM {versions}
          WHERE order_key IN (SELECT order_key FROM order_state))
    WHERE k IS NOT NULL GROUP BY order_key"""

# on a full refresh, only the keys order_facts.sql keeps: those of an order's versions other than its
# latest's (every key, when the latest has none), by a join with the state just computed; orders
# without one get no row (0.25-0.30 against 0.36-0.41 s at 1M orders for a list of every key per
# order with more than one, grouped by hash)
FULL_KEYS_SQL = """
    CREATE OR REPLACE TEMP TABLE facts_keys AS
    SELECT v.order_key, list(DISTINCT v.k ORDER BY v.k) AS keys
    FROM (SELECT order_key, coalesce(customer_key, email) AS k FROM order_versions) v
    JOIN order_state s USING (order_key)
    WHERE v.k IS NOT NULL AND v.k IS DISTINCT FROM coalesce(s.customer_key, s.email)
    GROUP BY v.order_key"""


def _fill_prior_keys(conn: duckdb.DuckDBPyConnection) -> None:
    """Rows from a warehouse older than prior_keys get it from their versions, once (a NULL is found
    from the column's statistics, without a scan, when there is none)."""
    if not conn.execute("SELECT 1 FROM order_facts WHERE prior_keys IS NULL LIMIT 1").fetchall():
        return
    conn.execute(
        """UPDATE order_facts f SET prior_keys = k.prior_keys FROM (
               SELECT o.order_key, list(DISTINCT coalesce(o.customer_key, o.email) ORDER BY coalesce(o.customer_key, o.email))
                   FILTER (WHERE coalesce(o.customer_key, o.email) IS DISTINCT FROM coalesce(r.customer_key, r.email))
                   AS prior_keys
               FROM order_versions o JOIN order_facts r USING (order_key)
               WHERE r.prior_keys IS NULL
               GROUP BY o.order_key) k
           WHERE f.order_key = k.order_key AND f.prior_keys IS NULL"""
    )
    conn.execute("UPDATE order_facts SET prior_keys = [] WHERE prior_keys IS NULL")


def _versions_since(conn: duckdb.DuckDBPyConnection, since: dt.datetime) -> str:
    """Temp table facts_versions: the versions the orders in order_scope stand on, which are their
    rows (the state from every version mapped up to the last refresh) and the versions mapped since;
    every version of an order whose row predates the fields a row needs (an older warehouse)."""
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE scope_rows AS
           SELECT rowid AS row_id, payload_hash IS NULL AS legacy FROM order_facts
           WHERE order_key IN (SELECT order_key FROM order_scope)"""
    )
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE facts_versions AS {ROW_AS_VERSION}
            UNION ALL BY NAME
            SELECT * FROM order_versions WHERE mapped_at > $since AND order_key IN (SELECT order_key FROM order_scope)""",
        {"since": since},
    )
    legacy = conn.execute("SELECT count(*) FROM scope_rows WHERE legacy").fetchall()[0][0]
    if legacy:
        conn.execute(
            """INSERT INTO facts_versions BY NAME SELECT * FROM order_versions
               WHERE mapped_at <= $since AND order_key IN (
                   SELECT order_key FROM order_facts WHERE rowid IN (SELECT row_id FROM scope_rows WHERE legacy))""",
            {"since": since},
        )
    return "facts_versions"
