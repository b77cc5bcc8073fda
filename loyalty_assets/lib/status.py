"""member_status: the current-state table support agents and pushes read (CONTRACT.md §3)."""

from __future__ import annotations

import duckdb

from loyalty_assets.lib.ledger import compute_order_values, prepare_rules, watermark
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.tiers import tier_expires_on
from loyalty_assets.lib.warehouse import run_script


def refresh_member_status(conn: duckdb.DuckDBPyConnection, program: Program) -> int:
    _, as_of = watermark(conn, program)
    conn.execute("BEGIN")
    try:
        run_script(conn, "member_status", {"as_of": as_of})
        if as_of is not None:
            compute_order_values(conn, program, as_of, prepare_rules(conn, program))
        rows = conn.execute(
            "SELECT member_id, tier_rank FROM member_status_new WHERE tier_rank > 0"
        ).fetchall()
        expiries = {m: tier_expires_on(conn, program, m, as_of, r) for m, r in rows} if as_of else {}
        names = [lv.name for lv in program.tiers.levels]
        conn.execute("DELETE FROM member_status")
        conn.execute(
            """INSERT INTO member_status
               SELECT member_id, email, points_spendable, points_pending, points_earned_lifetime,
                      list_extract(?, tier_rank + 1), tier_metric, NULL, smile_id, loyaltylion_id, salesforce_id, ?, now()
               FROM member_status_new""",
            [names, as_of],
        )
        if expiries:
            conn.executemany(
                "UPDATE member_status SET tier_expires_on = ? WHERE member_id = ?",
                [(d, m) for m, d in expiries.items()],
            )
        n = conn.execute("SELECT count(*) FROM member_status").fetchone()[0]
        conn.execute("COMMIT")
        return n
    except Exception:
        conn.execute("ROLLBACK")
        raise
