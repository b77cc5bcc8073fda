-- Entries for points events that are not orders (redemptions, manual adjustments), booked like
-- orders: what the event is worth at the end of the day minus what was booked for it so far. A
-- redemption books each of its versions that changed its worth as an entry of its own (RULES.md §6:
-- its cancel is a positive entry keyed by it), so a redemption canceled on the day it was made gives
-- the same two entries whether one run saw both versions or two runs saw one each; what is left to
-- book goes on its latest version not booked yet (a version fetched late changes nothing).
CREATE OR REPLACE TEMP TABLE new_entries AS
WITH versions AS (
    SELECT e.*, e.points - lag(e.points, 1, 0) OVER (PARTITION BY e.event_key ORDER BY e.updated_at, e.payload_hash) AS step,
           row_number() OVER (PARTITION BY e.event_key ORDER BY e.updated_at DESC, e.payload_hash DESC) AS rn,
           substr(sha256(e.event_key || '@' || strftime(e.updated_at, '%Y-%m-%dT%H:%M:%S')), 1, 16) AS source_version
    FROM loyalty_events e WHERE e.updated_at < $asof
),
latest AS (SELECT * FROM versions WHERE rn = 1),
booked AS (   -- up to the day: an open day booked again after a later one compares with what it had
    SELECT event_key, sum(points)::BIGINT AS booked_points, list(DISTINCT source_version) AS versions
    FROM ledger_journal WHERE event_key IS NOT NULL AND booked_on <= CAST($day AS DATE) GROUP BY event_key
),
unbooked AS (   -- a redemption's versions that changed its worth (and its latest) with no entry yet
    SELECT v.* FROM versions v LEFT JOIN booked b USING (event_key)
    WHERE v.kind = 'redeem' AND (v.step <> 0 OR v.rn = 1) AND NOT list_contains(coalesce(b.versions, []), v.source_version)
),
to_book AS (   -- those, else the latest version (any other event's)
    SELECT * FROM unbooked
    UNION ALL BY NAME
    SELECT * FROM latest WHERE event_key NOT IN (SELECT event_key FROM unbooked)
),
split AS (   -- each its own step, the latest of them what is left (its worth now less the rest)
    SELECT t.*, CASE WHEN row_number() OVER w = 1
                     THEN (l.points - coalesce(b.booked_points, 0)) - (sum(t.step) OVER whole - t.step)
                     ELSE t.step END AS delta
    FROM to_book t JOIN latest l USING (event_key) LEFT JOIN booked b USING (event_key)
    WINDOW w AS (PARTITION BY t.event_key ORDER BY t.updated_at DESC, t.payload_hash DESC),
           whole AS (PARTITION BY t.event_key)
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
       l.delta AS points,
       CAST($day AS DATE) AS booked_on,
       CAST($day AS DATE) AS available_on,
       NULL AS order_key,
       l.source,
       l.source_ref,
       l.source_version,
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
FROM split l JOIN members m USING (event_key)
LEFT JOIN used_on u USING (event_key)
WHERE m.member_id IS NOT NULL AND l.delta <> 0
  -- a request Salesforce shows Rejected stays so (temp table requests_rejected, ledger.py)
  AND NOT (l.kind = 'manual' AND l.source = 'salesforce' AND l.source_ref IN (SELECT source_ref FROM requests_rejected));
