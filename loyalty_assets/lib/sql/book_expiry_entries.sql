-- Expiry (RULES.md §6): with inactivity N days, L = the later of the member's last activity day (an
-- earn, adjust, referral or redeem entry) and the last available_on of a positive entry; on day L + N
-- the spendable balance of that day is booked negative (nothing when it is not positive).
CREATE OR REPLACE TEMP TABLE new_entries AS
WITH m AS (
    SELECT member_id,
           max(booked_on) FILTER (WHERE kind IN ('earn', 'adjust', 'referral', 'redeem')) AS last_activity,
           max(available_on) FILTER (WHERE points > 0) AS last_available,
           coalesce(sum(points) FILTER (WHERE available_on <= CAST($day AS DATE)), 0) AS spendable
    FROM ledger_entries
    WHERE booked_on <= CAST($day AS DATE)
    GROUP BY member_id
),
due AS (
    SELECT member_id, greatest(coalesce(last_activity, last_available), coalesce(last_available, last_activity)) AS l,
           spendable
    FROM m
)
SELECT substr(sha256(concat_ws('|', $program_id, 'expire:' || member_id, CAST($day AS VARCHAR), 'expire',
                               CAST(l AS VARCHAR))), 1, 32) AS entry_id,
       member_id AS booked_member_id,
       'expire' AS kind,
       -spendable AS points,
       CAST($day AS DATE) AS booked_on,
       CAST($day AS DATE) AS available_on,
       NULL AS order_key,
       'program' AS source,
       'inactive since ' || CAST(l AS VARCHAR) AS source_ref,
       substr(sha256('expire:' || member_id || '@' || CAST(l AS VARCHAR)), 1, 16) AS source_version,
       NULL::BIGINT AS basis_minor, NULL::DECIMAL(18, 6) AS rate, NULL::DECIMAL(18, 6) AS multiplier,
       NULL::DECIMAL(24, 12) AS fx_rate, NULL AS rounding,
       $rule_version AS rule_version,
       NULL::TIMESTAMPTZ AS occurred_at,
       'Expired: no activity for ' || $days || ' days after ' || CAST(l AS VARCHAR) AS description,
       now() AS journaled_at,
       'expire:' || member_id || ':' || CAST($day AS VARCHAR) AS event_key
FROM due
WHERE l + CAST($days AS INTEGER) = CAST($day AS DATE) AND spendable > 0;
