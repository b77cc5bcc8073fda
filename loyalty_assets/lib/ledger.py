"""Booking the append-only points ledger day by day behind a watermark (RULES.md §5–§6).

A run for day D books every day after the watermark up to D, in order, whatever order partitions
are run in. Days that have ended (by the sources' clocks minus the safety lag) close; a closed day
is never booked again, and anything that turns up late for it is booked on the first open day.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import duckdb

from loyalty_assets.lib.money import currency_digits
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.warehouse import first_fill, run_script

TRIGGER_RANK = {"paid": 1, "fulfilled": 2}


class LedgerIntegrityError(RuntimeError):
    """An entry id already exists with different content: never overwrite, stop loudly."""


@dataclass(frozen=True)
class BookingResult:
    days_booked: list[dt.date]
    entries: int
    points: int
    closed_through: dt.date | None
    last_booked_day: dt.date | None


def day_end_utc(day: dt.date, program: Program) -> dt.datetime:
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=program.tz)
    return local.astimezone(dt.UTC)


def day_start_utc(day: dt.date, program: Program) -> dt.datetime:
    return day_end_utc(day - dt.timedelta(days=1), program)


def record_program_version(conn: duckdb.DuckDBPyConnection, program: Program) -> str:
    conn.execute(
        "INSERT INTO program_versions VALUES (?, ?, ?, now()) ON CONFLICT DO NOTHING",
        [program.rule_version, program.program_id, program.canonical_json()],
    )
    return program.rule_version


def watermark(conn: duckdb.DuckDBPyConnection, program: Program) -> tuple[dt.date | None, dt.date | None]:
    row = conn.execute(
        "SELECT closed_through, last_booked_day FROM ledger_watermark WHERE program_id = ?",
        [program.program_id],
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def first_data_day(conn: duckdb.DuckDBPyConnection, program: Program) -> dt.date | None:
    """The day of the first thing a booking books: an order or refund version, or a loyalty event or
    referral (a redemption observed before any order is booked on its own day, not the first order's)."""
    row = conn.execute(
        """SELECT least((SELECT min(updated_at) FROM order_versions), (SELECT min(updated_at) FROM refund_versions),
                        (SELECT min(updated_at) FROM loyalty_events), (SELECT min(updated_at) FROM referrals))"""
    ).fetchone()
    if not row or row[0] is None:
        return None
    return row[0].astimezone(program.tz).date()


def days_to_book(conn: duckdb.DuckDBPyConnection, program: Program, target: dt.date) -> list[dt.date]:
    closed, _ = watermark(conn, program)
    if closed is not None:
        start = closed + dt.timedelta(days=1)
    else:
        first = first_data_day(conn, program)
        start = min(first, target) if first else target
    start = max(start, program.start_date)
    return [start + dt.timedelta(days=i) for i in range((target - start).days + 1)]


def prepare_rules(conn: duckdb.DuckDBPyConnection, program: Program) -> dict:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE store_multipliers (store_key VARCHAR, multiplier DECIMAL(18, 6))"
    )
    if program.earning.store_multipliers:
        conn.executemany(
            "INSERT INTO store_multipliers VALUES (?, ?)", list(program.earning.store_multipliers.items())
        )
    # what each recorded rule version says of when an order earns and the least it earns on: an order
    # that has earned keeps its earn entry's version for ever (RULES.md §1), these with its rate
    terms = []
    for version, config in conn.execute(
            "SELECT rule_version, config FROM program_versions WHERE program_id = ?", [program.program_id]).fetchall():
        earning = json.loads(config).get("earning", {})
        terms.append((version, TRIGGER_RANK[earning.get("trigger", "paid")],
                      _least_minor(Decimal(str(earning.get("min_eligible", "0"))), program.currency),
                      int(earning.get("pending_days", 0))))
    conn.execute("CREATE OR REPLACE TEMP TABLE rule_terms (rule_version VARCHAR, trigger_rank INTEGER, "
                 "min_eligible_minor BIGINT, pending_days INTEGER)")
    if terms:
        conn.executemany("INSERT INTO rule_terms VALUES (?, ?, ?, ?)", terms)
    digits = currency_digits(program.currency)
    return {
        "rate": program.earning.points_per_unit,
        "rounding": program.earning.rounding,
        "rule_version": program.rule_version,
        "trigger_rank": TRIGGER_RANK[program.earning.trigger],
        "min_eligible_minor": _least_minor(program.earning.min_eligible, program.currency),
        "pending_days": program.earning.pending_days,
        "unit": Decimal(1).scaleb(-digits),
    }


def _least_minor(amount: Decimal, currency: str) -> int:
    """`min_eligible` in minor units, rounded up: an integer number of minor units is strictly below
    10.001 exactly when it is below 1001 (half-up gave 1000, and 10.00 earned)."""
    digits = currency_digits(currency)
    return int((amount * (Decimal(10) ** digits)).to_integral_value(rounding=ROUND_CEILING))


def compute_order_values(
    conn: duckdb.DuckDBPyConnection, program: Program, day: dt.date, rules: dict | None, scoped: bool = False,
    from_facts: bool = False, versions: str = "order_versions",
) -> None:
    """Fill temp tables order_state, order_members and (with `rules`) order_values as of the end of
    `day`.

    `scoped`: only the orders in temp table order_scope, so a day costs what changed that day.
    `from_facts`, `versions`: see compute_point_values (from_facts is off for order_facts itself
    and for the checks, which recompute from the versions)."""
    if not scoped and not from_facts:
        compute_point_values(conn, rules or {}, False, versions, values=rules is not None,
                             at=(day_end_utc(day, program), day))
        return
    source = "order_scope" if scoped else "(SELECT DISTINCT order_key FROM order_versions)"
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE state_points AS SELECT order_key, $asof AS point_at, $day AS booked_day FROM {source}",
        {"asof": day_end_utc(day, program), "day": day},
    )
    compute_point_values(conn, rules or {}, from_facts, versions, values=rules is not None)


# order_state's columns an order_facts row holds (order_state_known.sql adds life_rank)
STATE_COLUMNS = (
    "platform", "store_key", "order_number", "created_at", "updated_at", "email", "customer_key", "discount_codes",
    "currency", "fx_rate", "subtotal_minor", "discount_minor", "tax_minor", "shipping_minor", "grand_total_minor",
    "eligible_minor", "source_id", "payload_hash", "calc_currency", "calc_eligible_minor", "to_program_factor", "to_program_divisor",
    "refunded_eligible_minor", "net_eligible_program_minor", "net_program_minor_any", "source_version",
)
# those booking reads (order_values, book_order_entries.sql)
BOOKING_COLUMNS = (
    "platform", "store_key", "order_number", "email", "customer_key", "fx_rate", "refunded_eligible_minor",
    "net_eligible_program_minor", "source_version",
)


# The order of an order's versions, (updated_at, payload_hash), as one HUGEINT: arg_max compares it
# 1.5x faster than the pair (0.35 s of a 1M-order order_facts refresh). raw.py writes every hash as
# 16 lowercase hex digits, whose text order is their numeric order; a hash of another shape gives
# NULL, and the points are computed again by the pair itself (VERSION_ORDER_BY_PAIR).
VERSION_ORDER = """CREATE OR REPLACE TEMP MACRO version_order(ts, h) AS CASE
    WHEN h IS NULL OR h = '' THEN epoch_us(ts)::HUGEINT * 36893488147419103232
    WHEN regexp_full_match(h, '[0-9a-f]{16}') THEN epoch_us(ts)::HUGEINT * 36893488147419103232 + ('0x' || h)::UBIGINT + 1
    END"""
VERSION_ORDER_BY_PAIR = "CREATE OR REPLACE TEMP MACRO version_order(ts, h) AS (ts, coalesce(h, ''))"


# order_state_asof.sql's versions and refunds of each point: those of its order before it, or, for
# every order at one instant (compute_point_values' `at`), every one before it
POINT_PAIRS = {
    "versions_at_points": "state_points p JOIN asof_versions v ON v.order_key = p.order_key AND v.updated_at < p.point_at",
    "refunds_at_points": "state_points p JOIN refund_versions r ON r.order_key = p.order_key AND r.updated_at < p.point_at",
}
INSTANT = "(SELECT CAST($point_at AS TIMESTAMPTZ) AS point_at, CAST($booked_day AS DATE) AS booked_day) p"
INSTANT_PAIRS = {
    "versions_at_points": f"asof_versions v, {INSTANT} WHERE v.updated_at < p.point_at",
    "refunds_at_points": f"refund_versions r, {INSTANT} WHERE r.updated_at < p.point_at",
}


def compute_point_values(conn: duckdb.DuckDBPyConnection, rules: dict, from_facts: bool = True,
                         versions: str = "order_versions", values: bool = True,
                         columns: tuple[str, ...] = STATE_COLUMNS, rows_since: dt.datetime | None = None,
                         facts: str = "order_facts", at: tuple[dt.datetime, dt.date] | None = None) -> None:
    """order_state, order_members and order_values for every (order_key, point_at) of temp table
    state_points, or with `at` (point_at, booked_day) for every order of `versions` at that instant,
    without from_facts: each version is then compared with the instant alone (a join with a point per
    order cost 0.3-0.5 s more of a full order_facts refresh at 1M orders).
    `from_facts`: points after an order's last change take its state from order_facts
    (one row) rather than from all its versions (most points of a day's run and of a full booking).
    `versions`: the table of versions the others are computed from (refresh_order_facts gives one).
    `values`: also order_values (what each order is worth: the journal's earn-time rates).
    `columns`: the state columns the caller reads; the others stay NULL where order_facts answers
    (a wide row read for every member's order cost most of a tier evaluation).
    `rows_since`: every point's order changed by a version or refund mapped at or after it (a
    booking's points), so only rows written since can answer (order_facts.refreshed_at: a row is
    later than the versions it stands on); older rows and rows without the stamp go to the versions.
    The scan then reads the table's last row groups: at 1M orders 0.05 s of a day's booking.
    `facts`: order_facts, or a temp table of its rows holding every point's order that has a row,
    with the columns known_columns names and member_id (tiers.py reads the members' orders once for both).

    Where order_facts answers, the member is the row's too (facts_member_id) when identity has not
    run since the refresh: its keys then map to the member the row holds, or to its survivor, and
    looking them up in member_keys cost each stage a read of every key."""
    if at is not None and from_facts:
        raise ValueError("compute_point_values: `at` takes every order's state from its versions, not from_facts")
    conn.execute(f"CREATE OR REPLACE TEMP VIEW asof_versions AS SELECT rowid AS version_row, * FROM {versions}")
    facts_at, members, read = known_columns(conn, columns) if from_facts else (None, False, [])
    if facts_at is not None:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW known_facts AS SELECT {', '.join(read)}, "
                     + ("member_id" if members else "CAST(NULL AS VARCHAR)") + f" AS facts_member_id FROM {facts}")
        run_script(conn, "order_state_known", {"facts_at": facts_at, "rows_since": rows_since})
    pairs, params = (POINT_PAIRS, None) if at is None else (INSTANT_PAIRS, {"point_at": at[0], "booked_day": at[1]})
    conn.execute(VERSION_ORDER)
    run_script(conn, "order_state_asof", params, pairs)
    if conn.execute("SELECT 1 FROM order_state_versions WHERE odd_hash LIMIT 1").fetchall():
        conn.execute(VERSION_ORDER_BY_PAIR)
        run_script(conn, "order_state_asof", params, pairs)
    conn.execute("CREATE OR REPLACE TEMP VIEW order_state AS SELECT * EXCLUDE (odd_hash) FROM order_state_versions" + (
        "" if facts_at is None else " UNION ALL BY NAME SELECT * FROM order_state_known"))
    run_script(conn, "order_members")
    if values:
        run_script(conn, "order_values", rules)


def known_columns(conn: duckdb.DuckDBPyConnection, columns: tuple[str, ...]) -> tuple[dt.datetime | None, bool, list[str]]:
    """(the last order_facts refresh (None: none yet), whether its rows' members answer (identity
    has not run since), the order_facts columns compute_point_values reads for `columns`, besides
    member_id)."""
    facts_at, identity_at = conn.execute(
        """SELECT max(refreshed_at) FILTER (WHERE name = 'order_facts'),
                  max(refreshed_at) FILTER (WHERE name = 'identity') FROM refresh_state""").fetchall()[0]
    members = facts_at is not None and identity_at is not None and identity_at < facts_at
    if members:
        columns = tuple(c for c in columns if c not in ("email", "customer_key"))
    read = ["order_key", "occurred_at", "lifecycle", *(c for c in columns if c in STATE_COLUMNS), "refreshed_at"]
    return facts_at, members, read


def scope_booking_points(
    conn: duckdb.DuckDBPyConnection, program: Program, days: list[dt.date], late_since: dt.datetime | None,
    late: bool = True,
) -> int:
    """state_points := (order, day) for every day of `days` on which the order can change value: a
    version or refund modified that day; on the first day also any mapped after `late_since` (the
    last booking; None: everything), which is how late arrivals for closed days reach the first
    open day."""
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE state_points AS
           WITH points AS (
               SELECT order_key, CAST(timezone($tz, updated_at) AS DATE) AS booked_day, mapped_at FROM order_versions
               WHERE updated_at >= $start AND updated_at < $end
               UNION ALL SELECT order_key, CAST(timezone($tz, updated_at) AS DATE), mapped_at FROM refund_versions
               WHERE updated_at >= $start AND updated_at < $end
               UNION ALL SELECT order_key, CAST($first AS DATE), mapped_at FROM order_versions
               WHERE $late AND updated_at < $first_end AND ($since IS NULL OR mapped_at > $since)
               UNION ALL SELECT order_key, CAST($first AS DATE), mapped_at FROM refund_versions
               WHERE $late AND updated_at < $first_end AND ($since IS NULL OR mapped_at > $since)
           )
           SELECT order_key, booked_day, timezone($tz, CAST(booked_day + 1 AS TIMESTAMP)) AS point_at,
                  min(mapped_at) AS mapped_at   -- when the earliest of its changes was mapped
           FROM points GROUP BY order_key, booked_day""",
        {"tz": program.timezone, "start": day_start_utc(days[0], program), "end": day_end_utc(days[-1], program),
         "first": days[0], "first_end": day_end_utc(days[0], program), "since": late_since, "late": late},
    )
    return conn.execute("SELECT count(*) FROM state_points").fetchone()[0]


# the state columns booking_points holds besides those a booking reads
KEPT_COLUMNS = ("created_at", "net_program_minor_any")


def keep_points(conn: duckdb.DuckDBPyConnection, program: Program, days: list[dt.date], points: int | None) -> None:
    """Inside a booking: booking_points := a first booking's points (`points`: how many it scoped;
    None for a later booking, which empties what an earlier one left) with their values, for the
    first tier evaluation of the same days (tiers.kept_points), which would compute it all again."""
    if conn.execute("SELECT EXISTS (FROM booking_points_info) OR EXISTS (FROM booking_points)").fetchall()[0][0]:
        conn.execute("DELETE FROM booking_points")
        conn.execute("DELETE FROM booking_points_info")
    if points is None:
        return
    conn.execute(
        """INSERT INTO booking_points
           SELECT order_key, booked_day, member_id, created_at, earning, value, net_program_minor_any FROM order_values""")
    if conn.execute("SELECT count(*) FROM order_values").fetchall()[0][0] < points:
        # points no version answers (a refund dated before its order's first version): no value, but
        # tiers scope them all the same (tier_pairs.sql)
        conn.execute(
            """INSERT INTO booking_points (order_key, booked_day)
               SELECT order_key, booked_day FROM state_points p WHERE NOT EXISTS (
                   SELECT 1 FROM order_values v WHERE v.order_key = p.order_key AND v.point_at = p.point_at)""")
    conn.execute("INSERT INTO booking_points_info VALUES ($first, $last, now(), $rule_version)",
                 {"first": days[0], "last": days[-1], "rule_version": program.rule_version})


def hold_journal(conn: duckdb.DuckDBPyConnection) -> None:
    """Bookings and outbox preparations update one row in their transaction, so DuckDB refuses one
    of two that overlap ("Conflict on update"): no booking commits entries stamped before a
    preparation that could not see them, which lets it look only at entries journaled since the
    previous one began."""
    conn.execute("UPDATE refresh_state SET refreshed_at = now() WHERE name = 'journal_writer'")


def _keep_ids_once(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """An id given twice by the run stays once in `table` when its rows agree (as ON CONFLICT kept
    one); when they differ, the run stops."""
    if conn.execute(f"SELECT count(*) > count(DISTINCT entry_id) FROM {table}").fetchall()[0][0]:
        differ = conn.execute(
            f"""SELECT entry_id FROM {table} GROUP BY entry_id
                HAVING count(DISTINCT (points, kind, booked_on, order_key, event_key)) > 1 ORDER BY 1 LIMIT 5"""
        ).fetchall()
        if differ:
            raise LedgerIntegrityError(f"entry ids given twice with different content: {[d[0] for d in differ]}")
        conn.execute(f"DELETE FROM {table} WHERE rowid NOT IN (SELECT min(rowid) FROM {table} GROUP BY entry_id)")


def _insert_entries(conn: duckdb.DuckDBPyConnection) -> int:
    """Journal temp table new_entries, inside the caller's transaction. An id already booked is not
    booked again; the same id with other content is an error, which rolls the run back.

    Ids already booked are looked for among the journal's entries of the same days only (an id
    hashes its booked_on, and the scan applies that filter before reading an id), and the rest go in
    with a plain INSERT: ON CONFLICT DO NOTHING looked each id up in the unique index twice (2.4 s
    against 1.3 s for 1M entries). An id booked on another day still fails on the index."""
    lo, hi = conn.execute("SELECT min(booked_on), max(booked_on) FROM new_entries").fetchall()[0]
    if lo is None:
        return 0
    _keep_ids_once(conn, "new_entries")
    again = conn.execute(
        """CREATE OR REPLACE TEMP TABLE entries_again AS
           SELECT n.entry_id,
                  j.points <> n.points OR j.kind <> n.kind OR j.booked_on <> n.booked_on
                  OR (n.event_key IS NULL AND coalesce(j.order_key, '') <> coalesce(n.order_key, ''))
                  OR coalesce(j.event_key, '') <> coalesce(n.event_key, '') AS differs
           FROM new_entries n JOIN ledger_journal j USING (entry_id)
           WHERE j.booked_on BETWEEN $lo AND $hi""",
        {"lo": lo, "hi": hi},
    ).fetchall()[0][0]
    if again:
        clash = conn.execute(
            "SELECT entry_id FROM entries_again WHERE differs ORDER BY entry_id LIMIT 5").fetchall()
        if clash:
            raise LedgerIntegrityError(f"entry ids already booked with different content: {[c[0] for c in clash]}")
    try:
        return conn.execute(
            "INSERT INTO ledger_journal BY NAME SELECT * FROM new_entries"
            + (" WHERE entry_id NOT IN (SELECT entry_id FROM entries_again)" if again else "")
        ).fetchall()[0][0]
    except duckdb.ConstraintException as exc:
        raise LedgerIntegrityError(f"an entry id already booked on another day: {exc}") from exc


def last_booking_at(conn: duckdb.DuckDBPyConnection, program: Program) -> dt.datetime | None:
    row = conn.execute(
        "SELECT updated_at FROM ledger_watermark WHERE program_id = ?", [program.program_id]
    ).fetchone()
    return row[0] if row else None


def event_days(
    conn: duckdb.DuckDBPyConnection, program: Program, first: dt.date, last: dt.date
) -> set[dt.date]:
    """Days in [first, last] on which some loyalty event or referral was modified (program timezone);
    the orders' days are state_points' (scope_booking_points)."""
    rows = conn.execute(
        """SELECT DISTINCT CAST(timezone($tz, updated_at) AS DATE) FROM (
               SELECT updated_at FROM loyalty_events UNION ALL SELECT updated_at FROM referrals)
           WHERE updated_at >= $start AND updated_at < $end""",
        {"tz": program.timezone, "start": day_start_utc(first, program), "end": day_end_utc(last, program)},
    ).fetchall()
    return {r[0] for r in rows}


def book_through(
    conn: duckdb.DuckDBPyConnection, program: Program, target: dt.date, now: dt.datetime
) -> BookingResult:
    """Book every open day up to `target`; `now` is the earliest source clock (UTC).

    Only days on which something was modified can book anything (values as of a day's end change
    only with a version of that day), plus the first open day, which picks up late arrivals for
    closed days; the other days are closed without work.
    """
    record_program_version(conn, program)
    rules = prepare_rules(conn, program)
    lag = dt.timedelta(seconds=program.ingest.safety_lag_seconds)
    closed, last_booked = watermark(conn, program)
    days = days_to_book(conn, program, target)
    if not days:
        return BookingResult([], 0, 0, closed, last_booked)
    # The first booking of an empty journal (a full recompute: a million entries) goes in without
    # the unique index, built once after it (warehouse.first_fill); _insert_entries keeps the run's
    # own ids unique.
    with first_fill(conn, "ledger_journal"):
        return _book_days(conn, program, rules, days, now, lag, closed, last_booked)


# Salesforce adjustment requests marked Rejected (RULES.md §9) since their latest version was fetched:
# the decision stands, so one rejected for want of a member is not booked once the member turns up
# (the CRM would show Rejected beside booked points). A request set back to New in the CRM is a
# version fetched after the marking: it is validated and booked again (book_event_entries.sql).
# when each request's latest version was fetched: a marking pushed at or after it is current
REQUESTS_FETCHED_SQL = """(SELECT record_id, max(fetched_at) AS fetched_at FROM raw_records
      WHERE source = 'salesforce.adjustment_requests' GROUP BY record_id)"""
REJECTED_REQUESTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE requests_rejected AS
SELECT st.record_key AS source_ref FROM sync_state st
JOIN {REQUESTS_FETCHED_SQL} r ON r.record_id = st.record_key
WHERE st.target = 'salesforce' AND st.object = 'Loyalty_Adjustment_Request__c' AND st.values_hash = 'Rejected'
  AND st.pushed_at >= r.fetched_at"""


def _book_days(conn: duckdb.DuckDBPyConnection, program: Program, rules: dict, days: list[dt.date], now: dt.datetime,
               lag: dt.timedelta, closed: dt.date | None, last_booked: dt.date | None) -> BookingResult:
    late_since = last_booking_at(conn, program)
    has_events = conn.execute("SELECT EXISTS (SELECT 1 FROM loyalty_events)").fetchone()[0]
    if has_events:
        conn.execute(REJECTED_REQUESTS_SQL)
    has_referrals = conn.execute("SELECT EXISTS (SELECT 1 FROM referrals)").fetchone()[0]
    entries = points = 0
    common = {"program_id": program.program_id, "rule_version": program.rule_version}
    booked = []
    # One transaction for the run: its days and the watermark land together or not at all (a
    # commit per day was most of a year's booking time; entry ids make a re-run book nothing twice).
    conn.execute("BEGIN")
    try:
        hold_journal(conn)
        # every order entry of every day in one set-based pass (RULES.md §6: each day books the
        # value at its end minus what was booked before); then, day by day, what depends on them
        scoped = scope_booking_points(conn, program, days, late_since)
        # the days something was modified on (the others only close, or expire balances): the orders'
        # from their points, which hold every version's and refund's day (a second pass over the
        # versions' times cost 0.1 s at 1M orders)
        rows_since, order_days = conn.execute(
            "SELECT min(mapped_at), list(DISTINCT booked_day) FROM state_points").fetchall()[0]
        active = set(order_days or []) | event_days(conn, program, days[0], days[-1]) | {days[0], days[-1]}
        first_booking = late_since is None
        compute_point_values(conn, rules, columns=BOOKING_COLUMNS + (KEPT_COLUMNS if first_booking else ()),
                             rows_since=rows_since)
        keep_points(conn, program, days, scoped if first_booking else None)
        order_params = common
        if conn.execute("SELECT EXISTS (FROM ledger_journal)").fetchall()[0][0]:
            entries, points = _book_script(conn, "book_order_entries", order_params)
        else:
            entries, points = _journal_first_entries(conn, order_params)
        for day in days:
            steps = []
            if day in active:
                asof = day_end_utc(day, program)
                if has_events:  # the events that are not orders (redemptions, manual adjustments)
                    steps.append(("book_event_entries", {**common, "day": day, "asof": asof}))
                if has_referrals:
                    steps.append(("book_referral_entries", {
                        **common, "day": day, "asof": asof, "points": program.referrals.referrer_points}))
                booked.append(day)
            ended = day_end_utc(day, program) <= now - lag
            # a quiet day can still be the day a balance expires; only once it has ended: activity later
            # that day (an order, a redemption) means nothing expires on it (RULES.md §6)
            if program.expiry.inactivity_days and ended:
                steps.append(("book_expiry_entries", {
                    **common, "day": day, "days": program.expiry.inactivity_days}))
            for script, params in steps:
                n, p = _book_script(conn, script, params)
                entries, points = entries + n, points + p
            if ended:
                closed = day
            last_booked = max(last_booked or day, day)
        _save_watermark(conn, program, closed, last_booked)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return BookingResult(booked, entries, int(points), closed, last_booked)


# the {into} of book_order_entries.sql (and nothing to the other booking scripts, which always fill it)
NEW_ENTRIES = "CREATE OR REPLACE TEMP TABLE new_entries AS"


def _book_script(conn: duckdb.DuckDBPyConnection, script: str, params: dict) -> tuple[int, int]:
    """Run a script that fills new_entries, journal them: (entries, points) added."""
    run_script(conn, script, params, {"into": NEW_ENTRIES})
    n = _insert_entries(conn)
    return n, (conn.execute("SELECT coalesce(sum(points), 0) FROM new_entries").fetchone()[0] if n else 0)


def _journal_first_entries(conn: duckdb.DuckDBPyConnection, params: dict) -> tuple[int, int]:
    """An empty journal's order entries (a full recompute's million) go straight in, not through
    new_entries and a copy (0.1-0.2 s less at 1M orders): no id was booked before, and the run's own
    are kept once as _insert_entries keeps them."""
    run_script(conn, "book_order_entries", params, {"into": "INSERT INTO ledger_journal BY NAME"})
    _keep_ids_once(conn, "ledger_journal")
    n, points = conn.execute("SELECT count(*), coalesce(sum(points), 0) FROM ledger_journal").fetchall()[0]
    return n, points


def _save_watermark(conn, program: Program, closed: dt.date | None, last_booked: dt.date | None) -> None:
    conn.execute(
        """INSERT INTO ledger_watermark VALUES (?, ?, ?, now())
           ON CONFLICT (program_id) DO UPDATE SET closed_through = excluded.closed_through,
               last_booked_day = excluded.last_booked_day, updated_at = excluded.updated_at""",
        [program.program_id, closed, last_booked],
    )


def order_value_mismatches(conn: duckdb.DuckDBPyConnection, program: Program, limit: int = 20) -> list[dict]:
    """Orders whose entries do not add up to their value at the end of the last booked day.

    Versions mapped after the last booking (late data for a closed day) are not booked yet by
    design: they go on the first open day, so their orders are left out until then.
    """
    _, last = watermark(conn, program)
    if last is None:
        return []
    rules = prepare_rules(conn, program)
    compute_order_values(conn, program, last, rules)
    rows = conn.execute(
        """WITH booked_at AS (SELECT updated_at FROM ledger_watermark WHERE program_id = $program_id),
           late AS (
               SELECT v.order_key FROM order_versions v JOIN raw_processed p
                 ON p.version_key = v.tenant || ':' || v.source_id || '@' || strftime(v.updated_at, '%Y-%m-%dT%H:%M:%S')
                                    || '#' || v.payload_hash
               WHERE p.processed_at > (SELECT updated_at FROM booked_at)
               UNION
               SELECT r.order_key FROM refund_versions r JOIN raw_processed p ON p.version_key = r.raw_version_key
               WHERE p.processed_at > (SELECT updated_at FROM booked_at))
           SELECT order_key, value, booked_points FROM order_values
           WHERE value <> booked_points AND order_key NOT IN (SELECT order_key FROM late)
           LIMIT $limit""",
        {"program_id": program.program_id, "limit": limit},
    ).fetchall()
    return [{"order_key": k, "value": v, "booked": b} for k, v, b in rows]


def describe(result: BookingResult) -> str:
    return json.dumps(
        {
            "days_booked": len(result.days_booked),
            "entries": result.entries,
            "points": result.points,
            "closed_through": str(result.closed_through),
        }
    )


def source_now(conn: duckdb.DuckDBPyConnection, wall_now: dt.datetime) -> dt.datetime:
    """The earliest current time among the sources' clocks (their HTTP Date headers).

    Each source's last reported server time is carried forward by the wall time elapsed since;
    without any source (file backfills, tests on a bare warehouse) the wall clock is used.
    """
    rows = conn.execute(
        """SELECT arg_max(server_time, fetched_at), max(fetched_at) FROM fetch_log
           WHERE server_time IS NOT NULL GROUP BY source"""
    ).fetchall()
    if not rows:
        return wall_now
    return min(server + max(wall_now - fetched, dt.timedelta(0)) for server, fetched in rows)
