"""VIP tiers day by day (RULES.md §7), evaluated for the days the ledger has booked."""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass

import duckdb

from loyalty_assets.lib.ledger import compute_order_values, data_days, prepare_rules, watermark
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


def evaluate_through(conn: duckdb.DuckDBPyConnection, program: Program) -> TierResult:
    """Evaluate the booked days not evaluated yet (the last one again, as it may have been open).

    tier_days holds a row per member on each day a tier could change; a row holds until the next
    one, so days without any event are not evaluated.
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
    while queue:
        day = heapq.heappop(queue)
        if evaluated and day <= evaluated[-1]:
            continue
        conn.execute("BEGIN")
        try:
            compute_order_values(conn, program, day, rules)
            run_script(conn, "tier_day", {**params, "day": day})
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
    after = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    return TierResult(evaluated, after - before)


def tier_expires_on(
    conn: duckdb.DuckDBPyConnection, program: Program, member_id: str, day: dt.date, tier_rank: int
) -> dt.date | None:
    """The last day the current tier is held if nothing more is earned (None: first level / no expiry)."""
    if tier_rank == 0 or program.tiers.retention == "none" or program.tiers.period == "lifetime":
        return None
    if program.tiers.period == "calendar_year":
        earned_this_year = conn.execute(
            """SELECT count(*) FROM tier_days WHERE member_id = ? AND year(day) = ? AND earned_rank >= ?""",
            [member_id, day.year, tier_rank],
        ).fetchone()[0]
        return dt.date(day.year + (1 if earned_this_year else 0), 12, 31)
    # rolling_365: held 365 days after the last day it is earned; while still earned, that day is
    # when enough of the qualifying orders have aged out of the window.
    row = conn.execute(
        "SELECT earned_rank FROM tier_days WHERE member_id = ? AND day = ?", [member_id, day]
    ).fetchone()
    if row and row[0] >= tier_rank:
        threshold = program.tiers.levels[tier_rank].threshold
        contributions = conn.execute(
            """SELECT CAST(timezone(?, v.created_at) AS DATE) AS d,
                      CASE WHEN ? = 'points' THEN CAST(v.value AS DECIMAL(18, 2))
                           ELSE CAST(v.net_program_minor_any * ? AS DECIMAL(18, 2)) END AS amount
               FROM order_values v JOIN order_members m USING (order_key)
               WHERE v.earning AND m.member_id = ? ORDER BY d DESC""",
            [program.timezone, program.tiers.metric, prepare_rules(conn, program)["unit"], member_id],
        ).fetchall()
        running = 0
        for created, amount in contributions:
            running += amount
            if running >= threshold:
                return created + dt.timedelta(days=364 + 365)
        return day + dt.timedelta(days=365)
    last = conn.execute(
        "SELECT max(day) FROM tier_days WHERE member_id = ? AND earned_rank >= ? AND day <= ?",
        [member_id, tier_rank, day],
    ).fetchone()[0]
    return (last or day) + dt.timedelta(days=365)
