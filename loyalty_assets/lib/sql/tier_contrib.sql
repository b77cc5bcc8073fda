-- The orders' contributions to tier metrics (RULES.md §7) at each day their state is known: the
-- first day of the run and the days in tier_changed (compute_point_values has filled order_state,
-- order_members and, for the points metric, order_values for them: spend needs no rates).
CREATE OR REPLACE TEMP TABLE tier_contrib AS
SELECT v.order_key, v.booked_day AS state_day, m.member_id, v.earning,
       CAST(timezone($tz, v.created_at) AS DATE) AS created_day,
       CASE WHEN $metric = 'points' THEN CAST(v.value AS DECIMAL(18, 2))
            ELSE CAST(v.net_program_minor_any * $unit AS DECIMAL(18, 2)) END AS amount
FROM tier_values v JOIN order_members m USING (order_key, point_at);
