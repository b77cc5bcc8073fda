-- The entries a day books for orders: value now minus what is booked so far (RULES.md §6).
CREATE OR REPLACE TEMP TABLE new_entries AS
WITH deltas AS (
    SELECT v.*, v.value - v.booked_points AS delta, v.trigger_day IS NOT NULL AS has_earn
    FROM order_values v
    WHERE v.value <> v.booked_points
),
kinded AS (
    SELECT *, CASE WHEN delta < 0 THEN 'clawback' WHEN has_earn THEN 'adjust' ELSE 'earn' END AS kind,
           coalesce(trigger_day, $day) AS trig
    FROM deltas
)
SELECT substr(sha256(concat_ws('|', $program_id, k.order_key, CAST($day AS VARCHAR), k.kind, k.source_version)), 1, 32) AS entry_id,
       coalesce(m.member_id, 'UNRESOLVED') AS booked_member_id,
       k.kind,
       k.delta AS points,
       CAST($day AS DATE) AS booked_on,
       greatest(CAST($day AS DATE), CAST(k.trig + to_days($pending_days) AS DATE)) AS available_on,
       k.order_key,
       k.platform AS source,
       k.order_number AS source_ref,
       k.source_version,
       k.net_eligible_program_minor AS basis_minor,
       k.use_rate AS rate,
       k.use_multiplier AS multiplier,
       k.fx_rate,
       k.use_rounding AS rounding,
       k.use_rule_version AS rule_version,
       k.occurred_at,
       concat(
           CASE k.kind WHEN 'earn' THEN 'Earned on order ' WHEN 'adjust' THEN 'Adjusted for order '
                       ELSE 'Clawed back from order ' END,
           k.order_number, ' (', k.lifecycle,
           CASE WHEN k.refunded_eligible_minor > 0 THEN ', refunds counted' ELSE '' END,
           '): worth ', k.value, ' pts, ', k.booked_points, ' booked before') AS description,
       now() AS journaled_at,
       NULL AS event_key
FROM kinded k
LEFT JOIN order_members m USING (order_key);
