-- The orders' contributions to tier metrics (RULES.md §7) at each day their state is known: the
-- first day of the run and the days in tier_changed. Temp view tier_values (tiers.py) gives each
-- order's state there with its member: booking_points where the first booking left them, else what
-- compute_point_values has filled (order_state, order_members and, for the points metric,
-- order_values: spend needs no rates).
CREATE OR REPLACE TEMP TABLE tier_contrib AS
SELECT order_key, booked_day AS state_day, member_id, earning,
       CAST(timezone($tz, created_at) AS DATE) AS created_day,
       CASE WHEN $metric = 'points' THEN CAST(value AS DECIMAL(18, 3))
            ELSE CAST(net_program_minor_any * $unit AS DECIMAL(18, 3)) END AS amount
FROM tier_values;
