-- order_facts: the latest known version of every order, with its member (CONTRACT.md §3).
-- Expects temp tables order_state and order_members as of now (all orders when full, else the
-- changed ones), and facts_keys (every key they belonged to a member by).
DELETE FROM order_facts WHERE $full OR order_key IN (SELECT order_key FROM order_state);
INSERT INTO order_facts BY NAME
SELECT s.order_key, s.platform, s.store_key, s.order_number, m.member_id, s.created_at, s.updated_at,
       s.lifecycle, s.currency, s.fx_rate, s.subtotal_minor, s.discount_minor, s.tax_minor,
       s.shipping_minor, s.grand_total_minor, s.eligible_minor, s.refunded_eligible_minor,
       s.net_eligible_program_minor, s.email, s.customer_key,
       s.discount_codes, s.net_program_minor_any, s.occurred_at, s.source_version,
       s.source_id, s.payload_hash, s.calc_currency, s.calc_eligible_minor, s.to_program_factor, s.to_program_divisor,
       list_filter(coalesce(k.keys, []), lambda x: x IS DISTINCT FROM coalesce(s.customer_key, s.email)) AS prior_keys,
       CAST($started AS TIMESTAMPTZ) AS refreshed_at
FROM order_state s LEFT JOIN order_members m USING (order_key) LEFT JOIN facts_keys k USING (order_key);
-- members merged away since: their orders belong to the survivor now
UPDATE order_facts f SET member_id = r.survivor_id
FROM member_resolution r WHERE r.member_id = f.member_id;
