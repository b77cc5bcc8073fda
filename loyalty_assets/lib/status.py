"""member_status: the current-state table support agents and pushes read (CONTRACT.md §3).

Refreshed for the members something happened to since the last refresh (entries journaled or
becoming spendable, tier rows, new keys, merges, keys moved between members); all of them on the
first refresh and when the year turns (calendar-year tier expiry dates move then)."""

from __future__ import annotations

import datetime as dt

import duckdb

from loyalty_assets.lib.identity import LEAD_PREFIX
from loyalty_assets.lib.ledger import compute_order_values, prepare_rules, watermark
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.tiers import load_levels
from loyalty_assets.lib.warehouse import run_script

SCOPE_SQL = """
CREATE OR REPLACE TEMP TABLE status_scope AS
WITH ids AS (
    SELECT booked_member_id AS member_id FROM ledger_journal WHERE journaled_at > $since
    UNION ALL SELECT booked_member_id FROM ledger_journal WHERE available_on > $prev AND available_on <= $as_of
    UNION ALL SELECT member_id FROM tier_days WHERE day >= $prev
    UNION ALL SELECT survivor_id FROM member_merges WHERE merged_on >= $prev - 1
    UNION ALL SELECT unnest([from_member_id, member_id]) FROM member_key_moves WHERE moved_at > $since
    UNION ALL SELECT k.member_id FROM member_keys k WHERE k.key IN (
        SELECT email FROM order_versions WHERE mapped_at > $since
        UNION ALL SELECT customer_key FROM order_versions WHERE mapped_at > $since
        UNION ALL SELECT email FROM customer_versions WHERE mapped_at > $since
        UNION ALL SELECT customer_key FROM customer_versions WHERE mapped_at > $since)
)
SELECT DISTINCT coalesce(r.survivor_id, i.member_id) AS member_id
FROM ids i LEFT JOIN member_resolution r ON r.member_id = i.member_id
WHERE i.member_id IS NOT NULL
"""

ROLLING_EXPIRY_SQL = """
WITH held AS (
    SELECT n.member_id, l.threshold FROM member_status_new n JOIN tier_levels l ON l.rank = n.tier_rank
    WHERE n.tier_rank > 0 AND n.earned_rank >= n.tier_rank
),
contributions AS (
    SELECT m.member_id, CAST(timezone($tz, v.created_at) AS DATE) AS created_day,
           CASE WHEN $metric = 'points' THEN CAST(v.value AS DECIMAL(18, 3))
                ELSE CAST(v.net_program_minor_any * $unit AS DECIMAL(18, 3)) END AS amount
    FROM order_values v JOIN order_members m USING (order_key)
    WHERE v.earning AND m.member_id IN (SELECT member_id FROM held)
),
running AS (
    SELECT member_id, created_day,
           sum(amount) OVER (PARTITION BY member_id ORDER BY created_day DESC ROWS UNBOUNDED PRECEDING) AS total
    FROM contributions
)
UPDATE member_status_new n SET tier_expires_on = x.expires
FROM (
    -- still earned: held 365 days after the day enough of its orders have left the window
    SELECT h.member_id, CAST(coalesce(max(r.created_day) FILTER (WHERE r.total >= h.threshold) + 729,
                                      CAST($as_of AS DATE) + 365) AS DATE) AS expires
    FROM held h LEFT JOIN running r USING (member_id) GROUP BY h.member_id
) x
WHERE n.member_id = x.member_id
"""


# A member with no address key (the guard gave the family address it shares to the oldest of its
# members, RULES.md §8) shows the address its own records, found by its customer keys, used last.
# Run only when there is one: it reads every version.
EMAIL_FALLBACK_SQL = """
UPDATE member_status_new n SET email = f.email FROM (
    SELECT k.member_id, arg_max(v.email, v.updated_at) AS email FROM (
        SELECT customer_key, email, updated_at FROM order_versions WHERE email IS NOT NULL AND customer_key IS NOT NULL
        UNION ALL SELECT customer_key, email, updated_at FROM customer_versions WHERE email IS NOT NULL) v
    JOIN scoped_keys k ON k.key = v.customer_key
    WHERE k.member_id IN (SELECT member_id FROM member_status_new WHERE email IS NULL)
    GROUP BY 1) f
WHERE n.member_id = f.member_id
"""


def _last_refresh(conn: duckdb.DuckDBPyConnection) -> tuple[dt.datetime | None, dt.date | None]:
    row = conn.execute("SELECT refreshed_at, through_day FROM refresh_state WHERE name = 'member_status'").fetchone()
    return (row[0], row[1]) if row else (None, None)


def refresh_member_status(conn: duckdb.DuckDBPyConnection, program: Program) -> int:
    _, as_of = watermark(conn, program)
    since, prev = _last_refresh(conn)
    full = since is None or prev is None or as_of is None or prev.year != as_of.year or prev > as_of
    # a warehouse from before member_emails: one full refresh gives every member its row
    full = full or conn.execute(
        """SELECT NOT EXISTS (SELECT 1 FROM member_emails)
                  AND EXISTS (SELECT 1 FROM member_status WHERE email IS NOT NULL)""").fetchall()[0][0]
    conn.execute("BEGIN")
    try:
        started = conn.execute("SELECT now()").fetchone()[0]
        if full:
            conn.execute("CREATE OR REPLACE TEMP TABLE status_scope (member_id VARCHAR)")
        else:
            conn.execute(SCOPE_SQL, {"since": since, "prev": prev, "as_of": as_of})
        run_script(conn, "member_status", {
            "as_of": as_of, "full": full, "retention": program.tiers.retention, "period": program.tiers.period,
            "since": since, "lead_prefix": LEAD_PREFIX, "max_rank": len(program.tiers.levels) - 1,
        })
        if conn.execute("SELECT EXISTS (FROM member_status_new WHERE email IS NULL)").fetchall()[0][0]:
            conn.execute(EMAIL_FALLBACK_SQL)
        if as_of is not None and program.tiers.period == "rolling_365" and program.tiers.retention != "none":
            rules = prepare_rules(conn, program)
            load_levels(conn, program)
            conn.execute(
                """CREATE OR REPLACE TEMP TABLE order_scope AS
                   SELECT f.order_key FROM order_facts f LEFT JOIN member_resolution r ON r.member_id = f.member_id
                   WHERE coalesce(r.survivor_id, f.member_id) IN (
                       SELECT member_id FROM member_status_new WHERE tier_rank > 0 AND earned_rank >= tier_rank)"""
            )
            compute_order_values(conn, program, as_of, rules, scoped=True, from_facts=True)
            conn.execute(ROLLING_EXPIRY_SQL, {"tz": program.timezone, "metric": program.tiers.metric,
                                              "unit": rules["unit"], "as_of": as_of})
        names = [lv.name for lv in program.tiers.levels]
        if full:
            conn.execute("DELETE FROM member_status")
            conn.execute("DELETE FROM member_emails")
        else:
            # rows of members absorbed by a merge go, the survivors' rows are rewritten
            for table in ("member_status", "member_emails"):
                conn.execute(
                    f"""DELETE FROM {table} WHERE member_id IN (SELECT member_id FROM member_status_new)
                        OR member_id IN (SELECT absorbed_id FROM member_merges)"""
                )
        conn.execute("INSERT INTO member_emails SELECT member_id, email, used_at FROM member_emails_new")
        conn.execute(
            """INSERT INTO member_status
               SELECT member_id, email, points_spendable, points_pending, points_earned_lifetime,
                      list_extract(?, tier_rank + 1), tier_metric, tier_expires_on, smile_id, loyaltylion_id,
                      salesforce_id, ?, now()
               FROM member_status_new ORDER BY member_id""",
            [names, as_of],
        )
        if not full and prev != as_of:
            conn.execute("UPDATE member_status SET as_of = ? WHERE as_of IS DISTINCT FROM ?", [as_of, as_of])
        conn.execute(
            """INSERT INTO refresh_state VALUES ('member_status', ?, ?) ON CONFLICT (name) DO UPDATE
               SET refreshed_at = excluded.refreshed_at, through_day = excluded.through_day""",
            [started, as_of],
        )
        n = conn.execute("SELECT count(*) FROM member_status").fetchone()[0]
        conn.execute("COMMIT")
        return n
    except Exception:
        conn.execute("ROLLBACK")
        raise
