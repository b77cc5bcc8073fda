-- Tier metrics of the pairs (temp table tier_pairs) for rolling_365 periods, from tier_contrib
-- (tier_contrib.sql): each pair takes each of its member's orders as of its day (ASOF join) and sums
-- those created in the 365 days to it (a window that moves, unlike tier_metrics.sql's running
-- totals per year). A member has a row once it has an earning order.
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
       coalesce(sum(amount) FILTER (WHERE created_day BETWEEN day - 364 AND day), 0) AS metric,
       CAST(0 AS DECIMAL(38, 3)) AS prev_metric
FROM as_of
WHERE earning AND member_id = pair_member
GROUP BY ALL;

