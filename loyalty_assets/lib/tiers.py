"""VIP tiers day by day (RULES.md §7), evaluated for the days the ledger has booked."""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass

import duckdb

from loyalty_assets.lib.ledger import (
    compute_order_values,
    data_days,
    prepare_rules,
    scope_changed_orders,
    watermark,
)
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.warehouse import run_script


@dataclass(frozen=True)
class TierResult:
    days: list[dt.date]
    changes: int


def load_levels(conn: duckdb.DuckDBPyConnection, program: Program) -> None:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE tier_levels (rank INTEGER, name VARCHAR, threshold DECIMAL(18, 2))"
    )
    conn.executemany(
        "INSERT INTO tier_levels VALUES (?, ?, ?)",
        [(i, lv.name, lv.threshold) for i, lv in enumerate(program.tiers.levels)],
    )


def _event_days(
    conn: duckdb.DuckDBPyConnection, program: Program, first: dt.date, last: dt.date
) -> set[dt.date]:
    """Days on which a tier can change: new data, a new calendar year, an order leaving the rolling window."""
    events = data_days(conn, program, first, last) | {first, last}
    if program.tiers.period == "calendar_year":
        events |= {dt.date(y, 1, 1) for y in range(first.year + 1, last.year + 1)}
    if program.tiers.period == "rolling_365":
        created = conn.execute(
            "SELECT DISTINCT CAST(timezone(?, created_at) AS DATE) FROM order_versions", [program.timezone]
        ).fetchall()
        events |= {c + dt.timedelta(days=365) for (c,) in created}
        if program.tiers.retention == "next_period":
            # an earned level leaves the retention window D-365..D the day after it has been in it 366 days
            rows = conn.execute("SELECT DISTINCT day FROM tier_days").fetchall()
            events |= {r + dt.timedelta(days=k) for (r,) in rows for k in (365, 366)}
    return {d for d in events if first <= d <= last}


def _scope_members(conn: duckdb.DuckDBPyConnection, program: Program, day: dt.date, first: bool,
                   since: dt.datetime | None) -> None:
    """tier_scope := members whose tier can change on `day`, and order_scope := all their orders.

    A member is in scope when one of its orders changed that day (on the first day of a run also
    what was mapped since the last evaluation, and members merged since), or when time moves its
    metric: an order leaving the rolling window, an earned level leaving the retention window.
    """
    scope_changed_orders(conn, program, day, since, late=first)
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE tier_scope AS
           WITH changed_keys AS (
               SELECT v.customer_key, v.email FROM order_versions v
               WHERE v.order_key IN (SELECT order_key FROM order_scope)
           ),
           via_keys AS (
               SELECT k.member_id FROM member_keys k
               WHERE k.key IN (SELECT customer_key FROM changed_keys) OR k.key IN (SELECT email FROM changed_keys)
           ),
           aging AS (   -- orders created 365 days ago leave the rolling window today
               SELECT f.member_id FROM order_facts f
               WHERE $rolling AND CAST(timezone($tz, f.created_at) AS DATE) = CAST($day AS DATE) - 365
           ),
           retained AS (  -- earned levels leave the retention window D-365..D
               SELECT member_id FROM tier_days
               WHERE $rolling AND $retention = 'next_period'
                 AND day IN (CAST($day AS DATE) - 365, CAST($day AS DATE) - 366)
           ),
           merged AS (
               SELECT survivor_id AS member_id FROM member_merges WHERE $first AND merged_on >= $merged_since
               UNION ALL
               SELECT absorbed_id FROM member_merges WHERE $first AND merged_on >= $merged_since
           ),
           raw_ids AS (
               SELECT member_id FROM via_keys UNION ALL SELECT member_id FROM order_facts
                   WHERE order_key IN (SELECT order_key FROM order_scope)
               UNION ALL SELECT member_id FROM aging UNION ALL SELECT member_id FROM retained
               UNION ALL SELECT member_id FROM merged
           )
           SELECT DISTINCT coalesce(r.survivor_id, i.member_id) AS member_id
           FROM raw_ids i LEFT JOIN member_resolution r ON r.member_id = i.member_id
           WHERE i.member_id IS NOT NULL""",
        {
            "rolling": program.tiers.period == "rolling_365",
            "retention": program.tiers.retention,
            "tz": program.timezone,
            "day": day,
            "first": first,
            "merged_since": day - dt.timedelta(days=1),
        },
    )
    conn.execute(
        """INSERT INTO order_scope
           SELECT f.order_key FROM order_facts f LEFT JOIN member_resolution r ON r.member_id = f.member_id
           WHERE coalesce(r.survivor_id, f.member_id) IN (SELECT member_id FROM tier_scope)
             AND f.order_key NOT IN (SELECT order_key FROM order_scope)"""
    )


def evaluate_through(conn: duckdb.DuckDBPyConnection, program: Program) -> TierResult:
    """Evaluate the booked days not evaluated yet (the last one again, as it may have been open).

    tier_days holds a row per member on each day its tier could change; a row holds until the next
    one, so days without any event are not evaluated, and an event day evaluates only the members
    it concerns (all of them on 1 January with calendar-year periods).
    """
    closed, last_booked = watermark(conn, program)
    if last_booked is None:
        return TierResult([], 0)
    done = conn.execute("SELECT max(day) FROM tier_days").fetchone()[0]
    if done is None:
        first = conn.execute("SELECT min(booked_on) FROM ledger_journal").fetchone()[0] or last_booked
    elif closed is not None and done <= closed:
        # a closed day is never evaluated again: what arrived late for it counts from the next day
        first = done + dt.timedelta(days=1)
    else:
        first = done  # it was still open: evaluate it again
    if first > last_booked:
        return TierResult([], 0)
    row = conn.execute("SELECT refreshed_at FROM refresh_state WHERE name = 'tiers'").fetchone()
    since = row[0] if row and done is not None else None
    rules = prepare_rules(conn, program)
    load_levels(conn, program)
    params = {
        "tz": program.timezone,
        "metric": program.tiers.metric,
        "period": program.tiers.period,
        "retention": program.tiers.retention,
        "unit": rules["unit"],
    }
    before = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    queue = sorted(_event_days(conn, program, first, last_booked))
    evaluated: list[dt.date] = []
    rolling_retention = program.tiers.period == "rolling_365" and program.tiers.retention == "next_period"
    started = conn.execute("SELECT now()").fetchone()[0]
    while queue:
        day = heapq.heappop(queue)
        if evaluated and day <= evaluated[-1]:
            continue
        full = program.tiers.period == "calendar_year" and day.month == 1 and day.day == 1
        conn.execute("BEGIN")
        try:
            _scope_members(conn, program, day, not evaluated, since)
            compute_order_values(conn, program, day, rules, scoped=not full)
            run_script(conn, "tier_day", {**params, "day": day, "full": full})
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        evaluated.append(day)
        if rolling_retention:
            for k in (365, 366):
                later = day + dt.timedelta(days=k)
                if later <= last_booked:
                    heapq.heappush(queue, later)
    conn.execute(
        """INSERT INTO refresh_state VALUES ('tiers', ?, ?) ON CONFLICT (name) DO UPDATE
           SET refreshed_at = excluded.refreshed_at, through_day = excluded.through_day""",
        [started, last_booked],
    )
    after = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    return TierResult(evaluated, after - before)
