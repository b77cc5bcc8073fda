-- Entries for points events that are not orders (redemptions, manual adjustments), booked like
-- orders: what the event is worth at the end of the day minus what was booked for it so far.
CREATE OR REPLACE TEMP TABLE new_entries AS
WITH latest AS (
    SELECT * FROM (
        SELECT e.*, row_number() OVER (PARTITION BY event_key ORDER BY updated_at DESC, payload_hash DESC) AS rn
        FROM loyalty_events e WHERE e.updated_at < $asof
    ) WHERE rn = 1
),
booked AS (   -- up to the day: an open day booked again after a later one compares with what it had
    SELECT event_key, sum(points)::BIGINT AS booked_points FROM ledger_journal
    WHERE event_key IS NOT NULL AND booked_on <= CAST($day AS DATE) GROUP BY event_key
),
used_on AS (            -- the order whose discount code is the redemption's reward code: named in the
                        -- description, not in order_key, which holds an order's own entries (they add up
                        -- to its value, RULES.md §6; a referral names its order in source_ref likewise)
    SELECT l.event_key, min(c.order_key) AS order_key
    FROM latest l JOIN (
        SELECT DISTINCT order_key, unnest(string_split(discount_codes, ',')) AS code
        FROM order_versions WHERE discount_codes IS NOT NULL AND updated_at < $asof
    ) c ON c.code = upper(trim(l.reward_code))
    GROUP BY l.event_key
),
members AS (
    SELECT l.event_key,
           coalesce(rh.survivor_id, kh.member_id, rk.survivor_id, k.member_id) AS member_id
    FROM latest l
    LEFT JOIN (SELECT DISTINCT member_id FROM member_keys) kh ON kh.member_id = l.member_id_hint
    LEFT JOIN member_resolution rh ON rh.member_id = kh.member_id
    LEFT JOIN member_keys k ON k.key = l.member_key
    LEFT JOIN member_resolution rk ON rk.member_id = k.member_id
)
SELECT substr(sha256(concat_ws('|', $program_id, l.event_key, CAST($day AS VARCHAR), l.kind,
                               strftime(l.updated_at, '%Y-%m-%dT%H:%M:%S'))), 1, 32) AS entry_id,
       m.member_id AS booked_member_id,
       l.kind,
       l.points - coalesce(b.booked_points, 0) AS points,
       CAST($day AS DATE) AS booked_on,
       CAST($day AS DATE) AS available_on,
       NULL AS order_key,
       l.source,
       l.source_ref,
       substr(sha256(l.event_key || '@' || strftime(l.updated_at, '%Y-%m-%dT%H:%M:%S')), 1, 16) AS source_version,
       NULL::BIGINT AS basis_minor,
       NULL::DECIMAL(18, 6) AS rate,
       NULL::DECIMAL(18, 6) AS multiplier,
       NULL::DECIMAL(24, 12) AS fx_rate,
       NULL AS rounding,
       $rule_version AS rule_version,
       l.updated_at AS occurred_at,
       CASE WHEN l.status = 'canceled' THEN 'Canceled: ' ELSE '' END || coalesce(l.description, l.kind)
           || CASE WHEN u.order_key IS NOT NULL THEN ' (code ' || l.reward_code || ' used on ' || u.order_key || ')'
                   ELSE '' END AS description,
       now() AS journaled_at,
       l.event_key
FROM latest l JOIN members m USING (event_key)
LEFT JOIN used_on u USING (event_key)
LEFT JOIN booked b USING (event_key)
WHERE m.member_id IS NOT NULL AND l.points <> coalesce(b.booked_points, 0)
  -- a request Salesforce shows Rejected stays so (temp table requests_rejected, ledger.py)
  AND NOT (l.kind = 'manual' AND l.source = 'salesforce' AND l.source_ref IN (SELECT source_ref FROM requests_rejected));
