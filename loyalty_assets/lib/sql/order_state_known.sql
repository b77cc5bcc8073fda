-- The points of temp table state_points that an order's latest state answers (order_facts): the
-- order's row is fresh (no version or refund mapped since the refresh, $facts_at) and nothing
-- about the order happened at or after the instant, so every version and refund counts there as
-- it counts now. They go to temp table order_state_known; state_points keeps the others, for
-- order_state_asof.sql, which reads every version of their orders.
CREATE OR REPLACE TEMP TABLE order_state_known AS
SELECT p.order_key, p.point_at, p.booked_day, f.* EXCLUDE (order_key, refreshed_at),   -- temp view known_facts: the columns asked
       CASE f.lifecycle WHEN 'pending' THEN 0 WHEN 'paid' THEN 1 WHEN 'fulfilled' THEN 2
                        WHEN 'refunded' THEN 3 ELSE 4 END AS life_rank
FROM state_points p JOIN known_facts f USING (order_key)
WHERE f.occurred_at < p.point_at
  AND ($rows_since IS NULL OR f.refreshed_at >= $rows_since)   -- ledger.compute_point_values
  AND f.order_key NOT IN (SELECT order_key FROM order_versions WHERE mapped_at > $facts_at
                          UNION ALL SELECT order_key FROM refund_versions WHERE mapped_at > $facts_at);

CREATE OR REPLACE TEMP TABLE state_points AS
SELECT * FROM state_points p
WHERE NOT EXISTS (SELECT 1 FROM order_state_known k WHERE k.order_key = p.order_key AND k.point_at = p.point_at);
