-- The points of temp table state_points that an order's latest state answers (order_facts): the
-- order's row is fresh (no version or refund mapped since the refresh, $facts_at) and nothing
-- about the order happened at or after the instant, so every version and refund counts there as
-- it counts now. They go to temp table order_state_known; state_points keeps the others, for
-- order_state_asof.sql, which reads every version of their orders.
CREATE OR REPLACE TEMP TABLE order_state_known AS
SELECT p.order_key, p.point_at, p.booked_day, f.platform, f.store_key, f.order_number, f.created_at, f.updated_at,
       f.email, f.customer_key, f.discount_codes, f.currency, f.fx_rate, f.subtotal_minor, f.discount_minor,
       f.tax_minor, f.shipping_minor, f.grand_total_minor, f.eligible_minor,
       f.source_id, f.payload_hash, f.calc_currency, f.calc_eligible_minor, f.to_program_factor,
       CASE f.lifecycle WHEN 'pending' THEN 0 WHEN 'paid' THEN 1 WHEN 'fulfilled' THEN 2
                        WHEN 'refunded' THEN 3 ELSE 4 END AS life_rank,
       f.lifecycle, f.refunded_eligible_minor, f.net_eligible_program_minor, f.net_program_minor_any,
       f.occurred_at, f.source_version
FROM state_points p JOIN order_facts f USING (order_key)
WHERE f.occurred_at < p.point_at
  AND f.order_key NOT IN (SELECT order_key FROM order_versions WHERE mapped_at > $facts_at
                          UNION ALL SELECT order_key FROM refund_versions WHERE mapped_at > $facts_at);

CREATE OR REPLACE TEMP TABLE state_points AS
SELECT * FROM state_points p
WHERE NOT EXISTS (SELECT 1 FROM order_state_known k WHERE k.order_key = p.order_key AND k.point_at = p.point_at);
