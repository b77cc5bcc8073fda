-- The member each order (at each instant of order_state) belongs to: its customer id first, else
-- its email; where order_facts answered with the row's member (facts_member_id), that member or its
-- survivor.
CREATE OR REPLACE TEMP TABLE order_members AS
SELECT s.order_key, s.point_at,
       coalesce(rc.survivor_id, kc.member_id, re.survivor_id, ke.member_id) AS member_id
FROM (SELECT order_key, point_at, customer_key, email FROM order_state WHERE facts_member_id IS NULL) s
LEFT JOIN member_keys kc ON kc.key = s.customer_key
LEFT JOIN member_resolution rc ON rc.member_id = kc.member_id
LEFT JOIN member_keys ke ON ke.key = s.email
LEFT JOIN member_resolution re ON re.member_id = ke.member_id
UNION ALL
SELECT s.order_key, s.point_at, coalesce(r.survivor_id, s.facts_member_id)
FROM order_state s LEFT JOIN member_resolution r ON r.member_id = s.facts_member_id
WHERE s.facts_member_id IS NOT NULL;
