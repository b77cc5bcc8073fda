-- What every known order is worth at the end of the day (RULES.md §5), next to what its entries
-- booked so far add up to, and its member then. Rate, multiplier, rounding, rule version, trigger,
-- minimum and pending days come from the order's earn entry (its version's, for the last three) once
-- it has one: an order is valued for ever with the rules in force when it first earned (RULES.md §1).
CREATE OR REPLACE TEMP TABLE order_values AS
WITH journal AS (   -- one scan of the journal: what was booked, and the earn entry (one per order)
    SELECT order_key, sum(points)::BIGINT AS booked_points,
           min(booked_on) FILTER (WHERE kind = 'earn') AS trigger_day,
           arg_min(rate, booked_on) FILTER (WHERE kind = 'earn') AS rate,
           arg_min(multiplier, booked_on) FILTER (WHERE kind = 'earn') AS multiplier,
           arg_min(rounding, booked_on) FILTER (WHERE kind = 'earn') AS rounding,
           arg_min(rule_version, booked_on) FILTER (WHERE kind = 'earn') AS rule_version,
           arg_min(booked_member_id, booked_on) FILTER (WHERE kind = 'earn') AS earn_member_id
    FROM ledger_journal
    WHERE order_key IN (SELECT order_key FROM order_state) AND kind IN ('earn', 'adjust', 'clawback')
    GROUP BY order_key
),
later AS (
    -- entries booked on a day after a point's: an open day booked again once a later open day has
    -- entries (just after midnight, within the safety lag). Such a point compares with what was
    -- booked up to its day (RULES.md §6), not with the later day's entries too. Usually none: the
    -- scan keeps only the journal's days from the earliest point's on
    SELECT s.order_key, s.point_at, sum(j.points)::BIGINT AS booked_after
    FROM (SELECT order_key, booked_on, points FROM ledger_journal
          WHERE booked_on > (SELECT min(booked_day) FROM order_state) AND kind IN ('earn', 'adjust', 'clawback')) j
    JOIN order_state s ON s.order_key = j.order_key AND j.booked_on > s.booked_day
    GROUP BY s.order_key, s.point_at
),
priced AS (
    SELECT s.*,
           coalesce(e.rate, $rate) AS use_rate,
           coalesce(e.multiplier, sm.multiplier, 1) AS use_multiplier,
           coalesce(e.rounding, $rounding) AS use_rounding,
           coalesce(e.rule_version, $rule_version) AS use_rule_version,
           e.trigger_day,
           coalesce(e.booked_points, 0) AS booked_points,
           coalesce(e.booked_points, 0) - coalesce(lt.booked_after, 0) AS booked_upto,
           -- the trigger, minimum and pending days of that version too (temp table rule_terms, ledger.prepare_rules)
           s.life_rank >= coalesce(t.trigger_rank, $trigger_rank) AND s.life_rank < 3 AS earning,
           coalesce(t.min_eligible_minor, $min_eligible_minor) AS use_min_eligible_minor,
           coalesce(t.pending_days, $pending_days) AS use_pending_days, m.member_id,
           -- the member the order's entries are booked for: the one its earn was (its survivor), so a
           -- clawback after the order moved to another shopper (a corrected e-mail, a key identity
           -- moved) takes the points from the member holding them (RULES.md §6, Members)
           coalesce(er.survivor_id, nullif(e.earn_member_id, 'UNRESOLVED'), m.member_id) AS book_member_id
    FROM order_state s
    LEFT JOIN order_members m USING (order_key, point_at)
    LEFT JOIN journal e USING (order_key)
    LEFT JOIN later lt USING (order_key, point_at)
    LEFT JOIN rule_terms t ON t.rule_version = e.rule_version
    LEFT JOIN store_multipliers sm ON sm.store_key = s.store_key
    LEFT JOIN member_resolution er ON er.member_id = e.earn_member_id
)
-- the columns the entries (book_order_entries.sql), tiers, member status and the checks read, not the
-- whole state (a copy of every column cost 0.3 s at 1M orders), and the member (order_members.sql)
SELECT order_key, point_at, booked_day, member_id, book_member_id, platform, order_number, created_at, lifecycle, fx_rate,
       refunded_eligible_minor, net_eligible_program_minor, net_program_minor_any, source_version, occurred_at,
       use_rate, use_multiplier, use_rounding, use_rule_version, use_pending_days, trigger_day, booked_points, booked_upto, earning,
       CASE WHEN NOT earning OR net_eligible_program_minor < use_min_eligible_minor THEN 0
            WHEN use_rounding = 'half_up'
                 THEN round(net_eligible_program_minor * $unit * use_rate * use_multiplier)::BIGINT
            ELSE floor(net_eligible_program_minor * $unit * use_rate * use_multiplier)::BIGINT
       END AS value
FROM priced;
