-- Tier metrics of the pairs (temp table tier_pairs) for rolling_365 periods, from tier_contrib
-- (tier_metrics.sql): each pair takes each of its member's orders as of its day (ASOF join) and sums
-- those created in the 365 days to it. A member has a row once it has an earning order.
CREATE OR REPLACE TEMP TABLE tier_metrics AS
WITH member_orders AS (
    SELECT DISTINCT member_id, order_key FROM tier_contrib WHERE member_id IS NOT NULL
),
probe AS (
    SELECT p.member_id AS pair_member, p.day, o.order_key
    FROM tier_pairs p JOIN member_orders o USING (member_id)
),
as_of AS (
    SELECT q.pair_member, q.day, c.member_id, c.earning, c.created_day, c.amount
    FROM probe q ASOF JOIN tier_contrib c ON c.order_key = q.order_key AND q.day >= c.state_day
)
SELECT pair_member AS member_id, day,
       coalesce(sum(amount) FILTER (WHERE
           CASE $period WHEN 'lifetime' THEN TRUE
                        WHEN 'calendar_year' THEN year(created_day) = year(day)
                        ELSE created_day BETWEEN day - 364 AND day END), 0) AS metric,
       coalesce(sum(amount) FILTER (WHERE $period = 'calendar_year' AND year(created_day) = year(day) - 1), 0) AS prev_metric
FROM as_of
WHERE earning AND member_id = pair_member
GROUP BY ALL;

