-- Lifetime and calendar-year metrics of the pairs (temp table tier_pairs): a pair (member, D) counts
-- each order as of its last state <= D, so an order's contribution changes only on its state days.
-- Those changes (the new value to its member, minus the previous one from the previous member) are
-- summed in a running total per member and creation year, which each pair reads by an ASOF join:
-- the cost follows the states, not pairs x orders. A member has a row once it has an earning order.
CREATE OR REPLACE TEMP TABLE tier_metrics AS
WITH states AS (
    SELECT order_key, state_day, member_id, created_day,
           CASE WHEN earning AND member_id IS NOT NULL THEN amount ELSE 0 END AS amount,
           CASE WHEN earning AND member_id IS NOT NULL THEN 1 ELSE 0 END AS earning_orders
    FROM tier_contrib
),
changes AS (
    SELECT member_id, created_day, state_day, amount, earning_orders FROM states
    UNION ALL
    SELECT prev_member, prev_created, state_day, -prev_amount, -prev_orders FROM (
        SELECT state_day,
               lag(member_id) OVER w AS prev_member, lag(created_day) OVER w AS prev_created,
               lag(amount) OVER w AS prev_amount, lag(earning_orders) OVER w AS prev_orders
        FROM states WINDOW w AS (PARTITION BY order_key ORDER BY state_day))
    WHERE prev_orders <> 0
),
per_year AS (
    SELECT member_id, CASE WHEN $period = 'lifetime' THEN 0 ELSE year(created_day) END AS y, state_day,
           sum(amount) AS amount
    FROM changes WHERE member_id IS NOT NULL GROUP BY 1, 2, 3
),
totals AS (
    SELECT member_id, y, state_day, sum(amount) OVER (PARTITION BY member_id, y ORDER BY state_day) AS total
    FROM per_year
),
orders AS (
    SELECT member_id, state_day,
           sum(sum(earning_orders)) OVER (PARTITION BY member_id ORDER BY state_day) AS earning_orders
    FROM changes WHERE member_id IS NOT NULL GROUP BY member_id, state_day
)
SELECT p.member_id, p.day, coalesce(t.total, 0) AS metric,
       CASE WHEN $period = 'calendar_year' THEN coalesce(t1.total, 0) ELSE 0 END AS prev_metric
FROM tier_pairs p
ASOF JOIN orders o ON o.member_id = p.member_id AND p.day >= o.state_day
ASOF LEFT JOIN totals t ON t.member_id = p.member_id AND t.y = CASE WHEN $period = 'lifetime' THEN 0 ELSE year(p.day) END
                        AND p.day >= t.state_day
ASOF LEFT JOIN totals t1 ON t1.member_id = p.member_id AND t1.y = year(p.day) - 1 AND p.day >= t1.state_day
WHERE o.earning_orders > 0;
