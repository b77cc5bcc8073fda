"""VIP tiers day by day (RULES.md §7), evaluated for the days the ledger has booked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from loyalty_assets.lib.ledger import compute_order_values, prepare_rules, watermark
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


def evaluate_through(conn: duckdb.DuckDBPyConnection, program: Program) -> TierResult:
    """Evaluate every booked day not evaluated yet (the last booked day again, as it may be open)."""
    _, last_booked = watermark(conn, program)
    if last_booked is None:
        return TierResult([], 0)
    done = conn.execute("SELECT max(day) FROM tier_days").fetchone()[0]
    start_row = conn.execute("SELECT min(booked_on) FROM ledger_journal").fetchone()[0]
    if done is not None:
        start = done  # re-evaluate the last day: it may have been open
    else:
        start = start_row or last_booked
    days = [start + dt.timedelta(days=i) for i in range((last_booked - start).days + 1)]
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
    for day in days:
        conn.execute("BEGIN")
        try:
            compute_order_values(conn, program, day, rules)
            run_script(conn, "tier_day", {**params, "day": day})
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
    after = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    return TierResult(days, after - before)


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
