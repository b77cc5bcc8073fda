-- One row per surviving member as of the end of the last booked day ($as_of).
CREATE OR REPLACE TEMP TABLE member_status_new AS
WITH members AS (
    SELECT DISTINCT coalesce(r.survivor_id, k.member_id) AS member_id
    FROM member_keys k LEFT JOIN member_resolution r ON r.member_id = k.member_id
),
emails AS (
    -- the address the member used most recently (orders or account), not merely the newest key
    SELECT coalesce(r.survivor_id, k.member_id) AS member_id, arg_max(u.email, u.updated_at) AS email
    FROM (SELECT email, updated_at FROM order_versions WHERE email IS NOT NULL
          UNION ALL SELECT email, updated_at FROM customer_versions WHERE email IS NOT NULL) u
    JOIN member_keys k ON k.key = u.email
    LEFT JOIN member_resolution r ON r.member_id = k.member_id
    GROUP BY 1
),
balances AS (
    SELECT member_id,
           sum(points) FILTER (WHERE booked_on <= $as_of AND available_on <= $as_of) AS spendable,
           sum(points) FILTER (WHERE booked_on <= $as_of AND available_on > $as_of) AS pending,
           sum(points) FILTER (WHERE booked_on <= $as_of AND kind IN ('earn', 'adjust', 'clawback', 'referral')) AS earned
    FROM ledger_entries GROUP BY member_id
),
platform_ids AS (
    -- the oldest key wins: the identity guard keeps a contested email with the oldest customer
    SELECT coalesce(r.survivor_id, k.member_id) AS member_id,
           arg_min(split_part(k.key, ':', 3), k.first_seen_at) FILTER (WHERE k.key LIKE 'smile:%') AS smile_id,
           arg_min(split_part(k.key, ':', 3), k.first_seen_at) FILTER (WHERE k.key LIKE 'loyaltylion:%') AS loyaltylion_id,
           arg_min(split_part(k.key, ':', 3), k.first_seen_at) FILTER (WHERE k.key LIKE 'salesforce:%') AS salesforce_id
    FROM member_keys k LEFT JOIN member_resolution r ON r.member_id = k.member_id
    GROUP BY 1
),
tiers AS (
    SELECT coalesce(r.survivor_id, t.member_id) AS member_id,
           arg_max(t.tier_rank, t.day) AS tier_rank, arg_max(t.metric, t.day) AS metric
    FROM tier_days t LEFT JOIN member_resolution r ON r.member_id = t.member_id
    WHERE t.day <= $as_of GROUP BY 1
)
SELECT m.member_id, e.email,
       coalesce(b.spendable, 0)::BIGINT AS points_spendable,
       coalesce(b.pending, 0)::BIGINT AS points_pending,
       coalesce(b.earned, 0)::BIGINT AS points_earned_lifetime,
       coalesce(t.tier_rank, 0) AS tier_rank,
       coalesce(t.metric, 0) AS tier_metric,
       p.smile_id, p.loyaltylion_id, p.salesforce_id
FROM members m
LEFT JOIN emails e USING (member_id)
LEFT JOIN balances b USING (member_id)
LEFT JOIN tiers t USING (member_id)
LEFT JOIN platform_ids p USING (member_id);
