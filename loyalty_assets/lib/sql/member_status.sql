-- Rows of member_status as of the end of the last booked day (as_of): every surviving member when
-- full, else only those in temp table status_scope (what changed since the last refresh).
CREATE OR REPLACE TEMP TABLE scoped_keys AS
SELECT coalesce(r.survivor_id, k.member_id) AS member_id, k.key, k.first_seen_at
FROM member_keys k LEFT JOIN member_resolution r ON r.member_id = k.member_id
WHERE $full OR coalesce(r.survivor_id, k.member_id) IN (SELECT member_id FROM status_scope);

-- The keys of members whose address is found again from every version: a key moved to them since
-- the last refresh (member_emails has a row for every member with an address: status.py).
CREATE OR REPLACE TEMP TABLE email_rescan AS
SELECT key FROM scoped_keys WHERE NOT $full AND member_id IN (
    SELECT member_id FROM scoped_keys WHERE key IN (SELECT key FROM member_key_moves WHERE moved_at > $since));

CREATE OR REPLACE TEMP TABLE member_emails_new AS
-- the address the member used most recently (orders or account), not merely the newest key: the
-- last refresh's (a merged member's too) against the versions mapped since; all versions when full
SELECT k.member_id, arg_max(u.email, u.used_at) AS email, max(u.used_at) AS used_at
FROM (SELECT email, updated_at AS used_at FROM order_versions WHERE $full AND email IS NOT NULL
      UNION ALL SELECT email, updated_at FROM customer_versions WHERE $full AND email IS NOT NULL
      UNION ALL SELECT email, updated_at FROM order_versions
      WHERE NOT $full AND mapped_at > $since AND email IN (SELECT key FROM scoped_keys)
      UNION ALL SELECT email, updated_at FROM customer_versions
      WHERE NOT $full AND mapped_at > $since AND email IN (SELECT key FROM scoped_keys)
      UNION ALL SELECT email, updated_at FROM order_versions WHERE email IN (SELECT key FROM email_rescan)
      UNION ALL SELECT email, updated_at FROM customer_versions WHERE email IN (SELECT key FROM email_rescan)
      UNION ALL SELECT email, used_at FROM member_emails WHERE NOT $full AND email IN (SELECT key FROM scoped_keys)) u
JOIN scoped_keys k ON k.key = u.email
GROUP BY 1;

CREATE OR REPLACE TEMP TABLE member_status_new AS
WITH members AS (
    SELECT DISTINCT member_id FROM scoped_keys
),
emails AS (
    SELECT member_id, email FROM member_emails_new
),
balances AS (
    SELECT member_id,
           sum(points) FILTER (WHERE booked_on <= $as_of AND available_on <= $as_of) AS spendable,
           sum(points) FILTER (WHERE booked_on <= $as_of AND available_on > $as_of) AS pending,
           sum(points) FILTER (WHERE booked_on <= $as_of AND kind IN ('earn', 'adjust', 'clawback', 'referral')) AS earned
    FROM ledger_entries
    WHERE $full OR member_id IN (SELECT member_id FROM members)
    GROUP BY member_id
),
crm_refs AS (
    -- the member each CRM record our pushes made names (Loyalty_Member_Id__c)
    SELECT customer_key AS key, arg_max(member_ref, updated_at) AS member_ref FROM customer_versions
    WHERE platform = 'salesforce' AND customer_key IN (SELECT key FROM scoped_keys WHERE key LIKE 'salesforce:%')
    GROUP BY 1
),
platform_ids AS (
    -- the oldest key wins: the identity guard keeps a contested email with the oldest customer; in
    -- Salesforce a Contact before a Lead (by the Lead ids' prefix, identity.LEAD_PREFIX), then the
    -- record that names the member itself (not the Contact of one merged into it, which our pushes no
    -- longer update)
    SELECT s.member_id,
           arg_min(split_part(s.key, ':', 3), s.first_seen_at) FILTER (WHERE s.key LIKE 'smile:%') AS smile_id,
           arg_min(split_part(s.key, ':', 3), s.first_seen_at) FILTER (WHERE s.key LIKE 'loyaltylion:%') AS loyaltylion_id,
           arg_min(split_part(s.key, ':', 3), (starts_with(split_part(s.key, ':', 3), $lead_prefix),
                                               c.member_ref IS DISTINCT FROM s.member_id, s.first_seen_at))
               FILTER (WHERE s.key LIKE 'salesforce:%') AS salesforce_id
    FROM scoped_keys s LEFT JOIN crm_refs c USING (key)
    GROUP BY 1
),
sf_links AS (
    -- the Contact or Lead our push made for the member (its upsert's answer), until a pull brings it
    SELECT member_id, external_id FROM target_links
    WHERE target = 'salesforce' AND ($full OR member_id IN (SELECT member_id FROM members))
),
tier_rows AS (
    -- an absorbed member's last row holds until it was merged (as in tier_eval.sql)
    -- a rank above the levels configured now (a level removed from the program) is the highest left
    SELECT coalesce(r.survivor_id, t.member_id) AS member_id, t.day, least(t.earned_rank, $max_rank) AS earned_rank,
           least(t.tier_rank, $max_rank) AS tier_rank, t.metric,
           r.survivor_id IS NULL AS own,
           coalesce(lead(t.day) OVER (PARTITION BY t.member_id ORDER BY t.day), mm.merged_on) AS next_day
    FROM tier_days t LEFT JOIN member_resolution r ON r.member_id = t.member_id
    LEFT JOIN (SELECT absorbed_id, min(merged_on) AS merged_on FROM member_merges GROUP BY 1) mm ON mm.absorbed_id = t.member_id
    WHERE t.day <= $as_of
      AND ($full OR coalesce(r.survivor_id, t.member_id) IN (SELECT member_id FROM members))
),
tiers AS (
    -- the latest row; on a day the survivor has a row of its own, that one (an absorbed member's row of
    -- the same day, evaluated before the merge, was picked at random)
    SELECT member_id, arg_max(tier_rank, (day, own)) AS tier_rank, arg_max(metric, (day, own)) AS metric,
           arg_max(earned_rank, (day, own)) AS earned_rank
    FROM tier_rows GROUP BY 1
),
tier_held AS (
    -- the last day the current tier was earned (a row holds until the day before the next one)
    SELECT t.member_id,
           max(coalesce(r.next_day - 1, CAST($as_of AS DATE))) FILTER (WHERE r.earned_rank >= t.tier_rank) AS last_earned,
           count(*) FILTER (WHERE r.earned_rank >= t.tier_rank AND year(r.day) = year(CAST($as_of AS DATE))) AS earned_this_year
    FROM tiers t JOIN tier_rows r USING (member_id)
    WHERE t.tier_rank > 0
    GROUP BY 1
)
SELECT m.member_id, e.email,
       coalesce(b.spendable, 0)::BIGINT AS points_spendable,
       coalesce(b.pending, 0)::BIGINT AS points_pending,
       coalesce(b.earned, 0)::BIGINT AS points_earned_lifetime,
       coalesce(t.tier_rank, 0) AS tier_rank,
       coalesce(t.earned_rank, 0) AS earned_rank,
       coalesce(t.metric, 0) AS tier_metric,
       -- RULES.md §7: the last day the tier is held if nothing more is earned (rolling windows still
       -- earned are refined from the orders afterwards)
       CASE WHEN coalesce(t.tier_rank, 0) = 0 OR $retention = 'none' OR $period = 'lifetime' THEN NULL
            WHEN $period = 'calendar_year'
                 THEN make_date(year(CAST($as_of AS DATE)) + CASE WHEN h.earned_this_year > 0 THEN 1 ELSE 0 END, 12, 31)
            ELSE CAST(coalesce(h.last_earned, CAST($as_of AS DATE)) + 365 AS DATE) END AS tier_expires_on,
       p.smile_id, p.loyaltylion_id,
       -- a pulled Contact, else the Contact a push made, else a pulled Lead, else the Lead a push made
       CASE WHEN p.salesforce_id IS NULL THEN l.external_id
            WHEN starts_with(p.salesforce_id, $lead_prefix) AND NOT starts_with(l.external_id, $lead_prefix)
                THEN l.external_id
            ELSE p.salesforce_id END AS salesforce_id
FROM members m
LEFT JOIN emails e USING (member_id)
LEFT JOIN balances b USING (member_id)
LEFT JOIN tiers t USING (member_id)
LEFT JOIN tier_held h USING (member_id)
LEFT JOIN platform_ids p USING (member_id)
LEFT JOIN sf_links l USING (member_id);
