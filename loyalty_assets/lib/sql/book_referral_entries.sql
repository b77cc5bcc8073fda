-- Referrals (RULES.md §6): `referrals.referrer_points` to the referrer when the referred friend's first
-- order earns; refused (and recorded) when friend and referrer are one member; taken back by a negative
-- entry if that order is later fully refunded or canceled.
CREATE OR REPLACE TEMP TABLE referral_values AS
WITH booked AS (   -- what each referral booked up to the day, and the reward it was first paid: that
                   -- order and those points stand (a later referrer_points, or a first order found
                   -- later through a merge, changes nothing already paid)
    SELECT event_key AS referral_key, sum(points)::BIGINT AS booked_points,
           arg_min(source_ref, (booked_on, journaled_at)) FILTER (WHERE points > 0) AS rewarded_order,
           arg_min(points, (booked_on, journaled_at)) FILTER (WHERE points > 0) AS rewarded_points
    FROM ledger_journal WHERE kind = 'referral' AND booked_on <= CAST($day AS DATE) GROUP BY event_key
),
latest AS (        -- each referral's latest version; a void one only while it still holds points
    SELECT * FROM (
        SELECT r.*, coalesce(r.state, '') IN ('declined', 'void', 'voided', 'canceled', 'cancelled') AS is_void,
               coalesce(b.booked_points, 0) AS booked_points, b.rewarded_order, b.rewarded_points,
               row_number() OVER (PARTITION BY r.referral_key ORDER BY r.updated_at DESC, r.payload_hash DESC) AS rn
        FROM referrals r LEFT JOIN booked b USING (referral_key) WHERE r.updated_at < $asof
    ) WHERE rn = 1 AND (NOT is_void OR booked_points <> 0)
),
evaluated AS (     -- a friend is rewarded once: through the referral already rewarded, else the earliest:
                   -- another that holds points (a double reward booked before) gives them back
    SELECT * FROM (
        SELECT l.*, row_number() OVER (PARTITION BY friend_email
                                       ORDER BY is_void, rewarded_order IS NULL, created_at, referral_key) = 1 AS first_for_friend
        FROM latest l
    ) WHERE (first_for_friend AND NOT is_void) OR booked_points <> 0
),
coded AS (             -- the order that used the friend's referral coupon names the friend, whatever its email
    SELECT f.referral_key, arg_min(c.order_key, c.created_at) AS order_key
    FROM evaluated f JOIN (
        SELECT DISTINCT order_key, created_at, unnest(string_split(discount_codes, ',')) AS code
        FROM order_versions WHERE discount_codes IS NOT NULL AND updated_at < $asof
    ) c ON c.code = f.friend_code
    GROUP BY 1
),
resolved AS (
    SELECT f.referral_key, f.source, f.state, f.is_void, f.first_for_friend, f.rewarded_order, f.rewarded_points,
           coalesce(rc.survivor_id, oc.member_id, rf.survivor_id, kf.member_id) AS friend_member,
           coalesce(rr.survivor_id, kr.member_id, rre.survivor_id, kre.member_id) AS referrer_member
    FROM evaluated f
    LEFT JOIN coded cd ON cd.referral_key = f.referral_key
    LEFT JOIN order_facts oc ON oc.order_key = cd.order_key
    LEFT JOIN member_resolution rc ON rc.member_id = oc.member_id
    LEFT JOIN member_keys kf ON kf.key = f.friend_email
    LEFT JOIN member_resolution rf ON rf.member_id = kf.member_id
    LEFT JOIN member_keys kr ON kr.key = f.referrer_key
    LEFT JOIN member_resolution rr ON rr.member_id = kr.member_id
    LEFT JOIN member_keys kre ON kre.key = f.referrer_email
    LEFT JOIN member_resolution rre ON rre.member_id = kre.member_id
),
first_orders AS (       -- the friend's first order that earned: of those earning on one day, the one
                        -- placed first (not the one whose entry id sorts first)
    SELECT e.member_id, arg_min(e.order_key, (e.booked_on, f.created_at, e.order_key)) AS order_key
    FROM ledger_entries e LEFT JOIN order_facts f USING (order_key)
    WHERE e.kind = 'earn' AND e.booked_on <= CAST($day AS DATE)
      AND e.member_id IN (SELECT friend_member FROM resolved WHERE rewarded_order IS NULL) GROUP BY e.member_id
),
chosen AS (             -- the order each referral stands on: the one it rewarded, else the friend's first
    SELECT r.*, coalesce(r.rewarded_order, o.order_key) AS friend_order
    FROM resolved r LEFT JOIN first_orders o ON o.member_id = r.friend_member
),
friend_refunds AS (     -- what their refunds took back by the end of the day (each refund's latest version)
    SELECT order_key, sum(refunded_eligible_minor) FILTER (WHERE counts) AS refunded_minor
    FROM (SELECT *, row_number() OVER (PARTITION BY refund_key ORDER BY updated_at DESC, payload_hash DESC) AS rn
          FROM refund_versions WHERE updated_at < $asof AND order_key IN (SELECT friend_order FROM chosen))
    WHERE rn = 1 GROUP BY order_key
),
friend_orders AS (      -- their lifecycle at the end of the day (ranks only move up: the highest so far),
                        -- refunds covering all the eligible spend refund it fully too (an order whose
                        -- platform keeps it complete, or that has no refunded state: commercetools)
    SELECT order_key,
           CASE WHEN life_rank = 4 THEN 'canceled'
                WHEN life_rank = 3 OR (eligible_minor > 0 AND refunded_minor >= eligible_minor) THEN 'refunded'
                ELSE 'earning' END AS lifecycle
    FROM (
        SELECT v.order_key,
               max(CASE v.signal WHEN 'pending' THEN 0 WHEN 'paid' THEN 1 WHEN 'fulfilled' THEN 2
                                 WHEN 'refunded' THEN 3 WHEN 'canceled' THEN 4 END) AS life_rank,
               arg_max(v.eligible_minor, (v.updated_at, v.payload_hash)) AS eligible_minor,
               any_value(fr.refunded_minor) AS refunded_minor
        FROM order_versions v LEFT JOIN friend_refunds fr USING (order_key)
        WHERE v.updated_at < $asof AND v.order_key IN (SELECT friend_order FROM chosen)
        GROUP BY v.order_key
    )
),
decided AS (
    SELECT r.referral_key, r.source, r.friend_member, r.referrer_member, r.friend_order, s.lifecycle, r.rewarded_points,
           CASE WHEN r.friend_member = r.referrer_member THEN 'refused'
                WHEN r.is_void OR NOT r.first_for_friend THEN 'taken_back'
                WHEN r.friend_order IS NULL THEN NULL
                WHEN s.lifecycle IN ('canceled', 'refunded') THEN 'taken_back'
                ELSE 'rewarded' END AS status,
           CASE WHEN r.friend_member = r.referrer_member THEN 'self-referral: friend and referrer are the same member'
                WHEN r.is_void THEN 'the referral was ' || r.state || ' in ' || r.source
                WHEN NOT r.first_for_friend THEN 'the friend was rewarded through another referral'
                WHEN s.lifecycle IN ('canceled', 'refunded') THEN 'the friend''s first order was ' || s.lifecycle
                END AS reason
    FROM chosen r LEFT JOIN friend_orders s ON s.order_key = r.friend_order
    WHERE r.friend_member IS NOT NULL AND r.referrer_member IS NOT NULL
)
SELECT *, CASE WHEN status = 'rewarded' THEN coalesce(rewarded_points, CAST($points AS BIGINT)) ELSE 0 END AS value
FROM decided;

CREATE OR REPLACE TEMP TABLE new_entries AS
WITH booked AS (   -- up to the day, as book_event_entries.sql
    SELECT event_key, sum(points)::BIGINT AS booked_points FROM ledger_journal
    WHERE kind = 'referral' AND booked_on <= CAST($day AS DATE) GROUP BY event_key
)
SELECT substr(sha256(concat_ws('|', $program_id, v.referral_key, CAST($day AS VARCHAR), 'referral',
                               coalesce(v.friend_order, '') || ':' || v.value)), 1, 32) AS entry_id,
       v.referrer_member AS booked_member_id,
       'referral' AS kind,
       v.value - coalesce(b.booked_points, 0) AS points,
       CAST($day AS DATE) AS booked_on,
       CAST($day AS DATE) AS available_on,
       NULL AS order_key,
       'program' AS source,
       v.friend_order AS source_ref,
       substr(sha256(v.referral_key || ':' || coalesce(v.friend_order, '') || ':' || v.value), 1, 16) AS source_version,
       NULL::BIGINT AS basis_minor, NULL::DECIMAL(18, 6) AS rate, NULL::DECIMAL(18, 6) AS multiplier,
       NULL::DECIMAL(24, 12) AS fx_rate, NULL AS rounding,
       $rule_version AS rule_version,
       NULL::TIMESTAMPTZ AS occurred_at,
       CASE WHEN v.value > 0 THEN 'Referral reward: a referred friend''s first order (' || v.source || ' referral)'
            ELSE 'Referral taken back: ' || coalesce(v.reason, 'no earning first order') END AS description,
       now() AS journaled_at,
       v.referral_key AS event_key
FROM referral_values v LEFT JOIN booked b ON b.event_key = v.referral_key
WHERE v.value <> coalesce(b.booked_points, 0);

INSERT INTO referral_outcomes
SELECT referral_key, status, reason, friend_order, CAST($day AS DATE)
FROM referral_values WHERE status IS NOT NULL
ON CONFLICT (referral_key) DO UPDATE SET status = excluded.status, reason = excluded.reason,
    friend_order = excluded.friend_order, decided_on = excluded.decided_on;
