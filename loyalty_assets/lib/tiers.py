"""VIP tiers day by day (RULES.md §7), evaluated for the days the ledger has booked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from loyalty_assets.lib.ledger import (
    STATE_COLUMNS,
    compute_point_values,
    first_data_day,
    known_columns,
    prepare_rules,
    scope_booking_points,
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
        "CREATE OR REPLACE TEMP TABLE tier_levels (rank INTEGER, name VARCHAR, threshold DECIMAL(18, 3))"
    )
    conn.executemany(
        "INSERT INTO tier_levels VALUES (?, ?, ?)",
        [(i, lv.name, lv.threshold) for i, lv in enumerate(program.tiers.levels)],
    )


def evaluate_through(conn: duckdb.DuckDBPyConnection, program: Program) -> TierResult:
    """Evaluate the booked days not evaluated yet (the last one again, as it may have been open).

    tier_days holds a row per member on each day its tier could change; a row holds until the next
    one, so a member is evaluated only on the days its tier can change (tier_pairs.sql): all of
    them on 1 January with calendar-year periods.
    """
    closed, last_booked = watermark(conn, program)
    if last_booked is None:
        return TierResult([], 0)
    # the last day evaluated: the previous run's last day (rows are written only for members whose
    # tier could change, so the last row can be days older)
    state = conn.execute("SELECT refreshed_at, through_day FROM refresh_state WHERE name = 'tiers'").fetchall()
    # the ledger's closed watermark when they were evaluated last (no row: a warehouse from before it)
    closed_then = conn.execute("SELECT through_day FROM refresh_state WHERE name = 'tiers_closed'").fetchall()
    last_row = conn.execute("SELECT max(day) FROM tier_days").fetchall()[0][0]
    done = max((d for d in (last_row, state[0][1] if state else None) if d is not None), default=None)
    if done is None or (closed_then and closed_then[0][0] is None):
        # the first booked day (ledger.days_to_book's), not the first entry's: an order can lift a tier
        # without booking anything (below min_eligible, a store multiplier of 0, a value flooring to 0);
        # also when no day had closed at the last evaluation: each day evaluated then was open
        journal_first = conn.execute("SELECT min(booked_on) FROM ledger_journal").fetchone()[0]
        first = min((d for d in (first_data_day(conn, program), journal_first) if d is not None), default=last_booked)
        first = min(max(first, program.start_date), last_booked)
    elif closed_then:
        # the days still open at the last evaluation are evaluated again, as the ledger booked them again
        # (what arrived later that day counts on it); a day closed then is never evaluated again: what
        # arrived late for it counts from the next day
        first = min(closed_then[0][0], done) + dt.timedelta(days=1)
    elif closed is not None and done <= closed:
        first = done + dt.timedelta(days=1)
    else:
        first = done  # it was still open: evaluate it again
    if first > last_booked:
        return TierResult([], 0)
    since = state[0][0] if state and done is not None else None
    rules = prepare_rules(conn, program)
    load_levels(conn, program)
    before = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    started = conn.execute("SELECT now()").fetchone()[0]
    conn.execute("BEGIN")
    try:
        days = _evaluate(conn, program, rules, first, last_booked, since)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    conn.execute(
        """INSERT INTO refresh_state VALUES ('tiers', $at, $last), ('tiers_closed', $at, $closed)
           ON CONFLICT (name) DO UPDATE SET refreshed_at = excluded.refreshed_at, through_day = excluded.through_day""",
        {"at": started, "last": last_booked, "closed": closed},
    )
    after = conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0]
    return TierResult(days, after - before)


def _year_totals(conn: duckdb.DuckDBPyConnection, period: str) -> dict[str, str]:
    """tier_metrics.sql's running totals, one per creation year of the orders in tier_contrib (one
    for all with lifetime periods), and which of them a pair reads for its year and the year before."""
    years = [0] if period == "lifetime" else [y for (y,) in conn.execute(
        "SELECT DISTINCT year(created_day) FROM tier_contrib WHERE member_id IS NOT NULL ORDER BY 1").fetchall()] or [0]
    totals = ", ".join(f"sum(amount) FILTER (WHERE y = {int(y)}) OVER w AS total_{i}" for i, y in enumerate(years))
    if period == "lifetime":
        return {"year_totals": totals, "metric": "total_0", "prev_metric": "0"}
    cur = " ".join(f"WHEN {int(y)} THEN total_{i}" for i, y in enumerate(years))
    prev = " ".join(f"WHEN {int(y) + 1} THEN total_{i}" for i, y in enumerate(years))
    return {"year_totals": totals, "metric": f"CASE year(day) {cur} END", "prev_metric": f"CASE year(day) {prev} END"}


def _evaluate(conn: duckdb.DuckDBPyConnection, program: Program, rules: dict, first: dt.date,
              last: dt.date, since: dt.datetime | None) -> list[dt.date]:
    """Evaluate every (member, day) whose tier can change in first..last in one set-based pass
    (a day loop cost a set of queries per day); returns the days on which members were evaluated."""
    kept = since is None and kept_points(conn, program, first, last)
    if not kept:
        scope_booking_points(conn, program, [first, last], since)
    # kept: the same points, scoped by the same query (scope_booking_points) when the booking began
    conn.execute("CREATE OR REPLACE TEMP TABLE tier_changed AS SELECT order_key, booked_day FROM "
                 + ("booking_points" if kept else "state_points"))
    rolling = program.tiers.period == "rolling_365"
    facts_at = conn.execute("SELECT refreshed_at FROM refresh_state WHERE name = 'order_facts'").fetchall()
    run_script(conn, "tier_pairs", {
        "tz": program.timezone, "first": first, "last": last, "rolling": rolling,
        "retention": program.tiers.retention, "facts_at": facts_at[0][0] if facts_at else None,
        "scoped": since is not None})
    new_years = [dt.date(y, 1, 1) for y in range(first.year, last.year + 1) if first <= dt.date(y, 1, 1) <= last]
    if program.tiers.period == "calendar_year" and new_years:  # a new calendar year: everybody
        conn.execute(
            """INSERT INTO tier_pairs
               SELECT DISTINCT coalesce(r.survivor_id, m.member_id), y.day
               FROM (SELECT member_id FROM order_facts UNION SELECT member_id FROM tier_days) m
               LEFT JOIN tier_res r USING (member_id), (SELECT unnest(CAST($days AS DATE[])) AS day) y
               WHERE m.member_id IS NOT NULL
               EXCEPT SELECT member_id, day FROM tier_pairs""",
            {"days": new_years},
        )
    if rolling and program.tiers.retention == "next_period":
        # a row written on day d is an event 365 and 366 days later (its level leaves the window)
        while conn.execute(
            """INSERT INTO tier_pairs
               SELECT member_id, day + k FROM tier_pairs, (VALUES (365), (366)) t(k) WHERE day + k <= $last
               EXCEPT SELECT member_id, day FROM tier_pairs""", {"last": last}
        ).fetchone()[0]:
            pass
    if kept:
        tier_values = "SELECT * FROM booking_points WHERE earning IS NOT NULL"   # valued: order_values' rows
    else:
        tier_values = _compute_values(conn, program, rules, first, since)
    conn.execute(f"CREATE OR REPLACE TEMP VIEW tier_values AS {tier_values}")
    params = {"tz": program.timezone, "metric": program.tiers.metric, "period": program.tiers.period,
              "retention": program.tiers.retention, "unit": rules["unit"],
              "thresholds": [level.threshold for level in program.tiers.levels]}
    run_script(conn, "tier_contrib", params)
    if rolling:
        run_script(conn, "tier_metrics_rolling", params)
    else:
        run_script(conn, "tier_metrics", params, _year_totals(conn, program.tiers.period))
    run_script(conn, "tier_eval", params)
    if kept:  # read once: the next evaluation starts from its own
        conn.execute("DELETE FROM booking_points")
        conn.execute("DELETE FROM booking_points_info")
    return [r[0] for r in conn.execute("SELECT DISTINCT day FROM tier_new ORDER BY day").fetchall()]


def kept_points(conn: duckdb.DuckDBPyConnection, program: Program, first: dt.date, last: dt.date) -> bool:
    """Whether booking_points (ledger.keep_points) holds what a first evaluation of first..last would
    scope and compute: the first booking of exactly those days (which scoped them as a first
    evaluation does: every version and refund), by the same rules, with nothing mapped, resolved or
    refreshed since it began."""
    info = conn.execute("SELECT first_day, last_day, booked_at, rule_version FROM booking_points_info").fetchall()
    if len(info) != 1 or info[0][:2] != (first, last) or info[0][3] != program.rule_version:
        return False
    return not conn.execute(
        """SELECT EXISTS (FROM order_versions WHERE mapped_at > $at) OR EXISTS (FROM refund_versions WHERE mapped_at > $at)
                  OR EXISTS (FROM refresh_state WHERE name IN ('identity', 'order_facts') AND refreshed_at > $at)""",
        {"at": info[0][2]}).fetchall()[0][0]


def _compute_values(conn: duckdb.DuckDBPyConnection, program: Program, rules: dict, first: dt.date,
                    since: dt.datetime | None) -> str:
    """The orders' states at the points tier_contrib.sql reads (the first day and tier_changed's), with
    their members; returns the query of tier_values."""
    spend = program.tiers.metric != "points"
    columns = ("created_at", "email", "customer_key", "net_program_minor_any") if spend else STATE_COLUMNS
    # A later evaluation reads order_facts once for the pairs' members (tier_facts): their orders are
    # the candidates, and their rows answer the points (every point's order with a row is among them: a
    # changed order's member makes a pair; a row without a member goes to the versions, which find none
    # either). A first evaluation (since is None) scoped every version and refund into tier_changed, the
    # earlier ones on the first day, so a candidate's first-day point is there already or finds no
    # version (1M points for nothing at 1M orders); its points read order_facts itself (the copy, of
    # every member's rows then, cost 0.24 s at 1M orders).
    facts = "order_facts"
    if since is not None:
        read = known_columns(conn, columns)[2]
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE tier_facts AS
                SELECT {', '.join('f.' + c for c in read)}, f.member_id FROM order_facts f LEFT JOIN tier_res r ON r.member_id = f.member_id
                WHERE coalesce(r.survivor_id, f.member_id) IN (SELECT member_id FROM tier_pairs)""")
        facts = "tier_facts"
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE state_points AS
           WITH candidates AS (
               {'SELECT order_key FROM tier_facts UNION' if since is not None else ''}
               SELECT order_key FROM tier_changed {'WHERE booked_day = $first' if since is None else ''}
           ),
           points AS (
               SELECT order_key, CAST($first AS DATE) AS booked_day FROM candidates
               UNION SELECT order_key, booked_day FROM tier_changed
           )
           SELECT order_key, booked_day, timezone($tz, CAST(booked_day + 1 AS TIMESTAMP)) AS point_at FROM points""",
        {"first": first, "tz": program.timezone},
    )
    if not spend:
        compute_point_values(conn, rules, facts=facts)
        return "SELECT order_key, booked_day, member_id, created_at, earning, value, net_program_minor_any FROM order_values"
    # spend: earning orders (order_values.sql's test) at their net spend, no earn-time rates needed
    compute_point_values(conn, rules, values=False, columns=columns, facts=facts)
    return (f"SELECT s.order_key, s.booked_day, m.member_id, s.created_at, s.life_rank >= {int(rules['trigger_rank'])}"
            " AND s.life_rank < 3 AS earning, NULL AS value, s.net_program_minor_any"
            " FROM order_state s JOIN order_members m USING (order_key, point_at)")
