-- The entries orders book (RULES.md §6), for one or many days at once: order_values holds each
-- order's value at the end of every day it is booked on (point_at = that day's end, booked_day = the day)
-- and what the journal holds for the order up to that day (booked_upto); each day books its value minus
-- what was booked up to it: the journal's, and this run's entries of the days before (its previous
-- point's value less the journal's up to that point). Without entries on later days (the usual case)
-- that is the previous day's value, or the journal's total for the first one.
-- {into}: into temp table new_entries (ledger.py journals them), or straight into an empty journal.
{into}
WITH seq AS (   -- one window on narrow rows, the rest of the row read once for the entries (they sorted
                -- every column three times: 2.9 of 4.5 s at 1M orders)
    -- the first rise of the run is the earn of an order without one (its day is the trigger day), a
    -- later rise an adjust. An order without an earn entry has booked nothing (its first positive
    -- entry is the earn, and no value is negative), so its first rise is its first point with a
    -- value: a frame over the same ordered window, not a second window over the deltas (0.1-0.3 s at
    -- 1M orders)
    SELECT rowid AS value_row, point_at, booked_day, trigger_day,
           (value - booked_upto) - lag(value - booked_upto, 1, 0) OVER w AS delta,
           booked_upto + lag(value - booked_upto, 1, 0) OVER w AS booked_before,
           min(point_at) FILTER (WHERE value > 0) OVER whole AS first_rise_at,
           min(booked_day) FILTER (WHERE value > 0) OVER whole AS first_rise_day
    FROM order_values
    WINDOW w AS (PARTITION BY order_key ORDER BY point_at),
           whole AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
triggered AS (
    -- the trigger day is the earn entry's day, booked before this run or in it
    SELECT value_row, delta, booked_before,
           CASE WHEN delta < 0 THEN 'clawback'
                WHEN trigger_day IS NOT NULL OR coalesce(point_at > first_rise_at, FALSE) THEN 'adjust'
                ELSE 'earn' END AS kind,
           coalesce(trigger_day, first_rise_day, booked_day) AS trig
    FROM seq WHERE delta <> 0
),
entry_rows AS (SELECT v.*, t.delta, t.booked_before, t.kind, t.trig FROM triggered t JOIN order_values v ON v.rowid = t.value_row)
SELECT substr(sha256(concat_ws('|', $program_id, k.order_key, CAST(k.booked_day AS VARCHAR), k.kind, k.source_version)), 1, 32) AS entry_id,
       coalesce(k.book_member_id, 'UNRESOLVED') AS booked_member_id,
       k.kind,
       k.delta AS points,
       k.booked_day AS booked_on,
       greatest(k.booked_day, CAST(k.trig + to_days(k.use_pending_days) AS DATE)) AS available_on,
       k.order_key,
       k.platform AS source,
       k.order_number AS source_ref,
       k.source_version,
       k.net_eligible_program_minor AS basis_minor,
       k.use_rate AS rate,
       k.use_multiplier AS multiplier,
       k.fx_rate,
       k.use_rounding AS rounding,
       k.use_rule_version AS rule_version,
       k.occurred_at,
       concat(
           CASE k.kind WHEN 'earn' THEN 'Earned on order ' WHEN 'adjust' THEN 'Adjusted for order '
                       ELSE 'Clawed back from order ' END,
           k.order_number, ' (', k.lifecycle,
           CASE WHEN k.refunded_eligible_minor > 0 THEN ', refunds counted' ELSE '' END,
           '): worth ', k.value, ' pts, ', k.booked_before, ' booked before') AS description,
       now() AS journaled_at,
       NULL AS event_key
FROM entry_rows k;
