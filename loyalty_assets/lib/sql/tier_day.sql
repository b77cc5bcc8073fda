-- Tier evaluation at the end of one day (RULES.md §7), from order_state/order_values/order_members
-- as of that day. Writes the day's rows of tier_days; retention reads earlier rows. Unless $full, only
-- the members in temp table tier_scope are evaluated (order_values must hold all of their orders);
-- the others keep their last row, which holds until the next one.
CREATE OR REPLACE TEMP TABLE tier_eval AS
WITH contributing AS (
    SELECT m.member_id,
           CAST(timezone($tz, v.created_at) AS DATE) AS created_day,
           CASE WHEN $metric = 'points' THEN CAST(v.value AS DECIMAL(18, 2))
                ELSE CAST(v.net_program_minor_any * $unit AS DECIMAL(18, 2)) END AS amount
    FROM order_values v JOIN order_members m USING (order_key)
    WHERE v.earning AND m.member_id IS NOT NULL AND ($full OR m.member_id IN (SELECT member_id FROM tier_scope))
),
metrics AS (
    SELECT member_id,
           coalesce(sum(amount) FILTER (WHERE
               CASE $period WHEN 'lifetime' THEN TRUE
                            WHEN 'calendar_year' THEN year(created_day) = year(CAST($day AS DATE))
                            ELSE created_day BETWEEN CAST($day AS DATE) - 364 AND CAST($day AS DATE) END), 0) AS metric,
           coalesce(sum(amount) FILTER (WHERE $period = 'calendar_year'
                                        AND year(created_day) = year(CAST($day AS DATE)) - 1), 0) AS prev_metric
    FROM contributing GROUP BY member_id
),
scoped_days AS (
    SELECT coalesce(r.survivor_id, t.member_id) AS member_id, t.member_id AS row_member, t.day, t.earned_rank, t.tier_rank
    FROM tier_days t LEFT JOIN member_resolution r ON r.member_id = t.member_id
    WHERE $full OR coalesce(r.survivor_id, t.member_id) IN (SELECT member_id FROM tier_scope)
),
members AS (
    -- every member with a tier history keeps being evaluated, even once its orders are gone
    SELECT member_id FROM metrics
    UNION
    SELECT DISTINCT member_id FROM scoped_days
),
ranked AS (
    SELECT mb.member_id, coalesce(mt.metric, 0) AS metric, coalesce(mt.prev_metric, 0) AS prev_metric,
           (SELECT max(rank) FROM tier_levels l WHERE l.threshold <= coalesce(mt.metric, 0)) AS earned_rank,
           (SELECT max(rank) FROM tier_levels l WHERE l.threshold <= coalesce(mt.prev_metric, 0)) AS prev_rank
    FROM members mb LEFT JOIN metrics mt USING (member_id)
),
history AS (
    -- a row holds from its day until the next row: take every row in force during [window start, D)
    SELECT member_id, max(earned_rank) AS best_rank FROM (
        SELECT member_id, earned_rank,
               lead(day) OVER (PARTITION BY row_member ORDER BY day) AS next_day
        FROM scoped_days WHERE day < CAST($day AS DATE)
    )
    WHERE coalesce(next_day, CAST($day AS DATE)) >
          CASE $period WHEN 'calendar_year' THEN make_date(year(CAST($day AS DATE)) - 1, 1, 1)
                       WHEN 'rolling_365' THEN CAST($day AS DATE) - 365
                       ELSE DATE '0001-01-01' END
    GROUP BY 1
),
previous AS (
    SELECT member_id, arg_max(tier_rank, day) AS prev_tier
    FROM scoped_days WHERE day < CAST($day AS DATE)
    GROUP BY 1
)
SELECT k.member_id, CAST($day AS DATE) AS day, k.metric, k.prev_metric, k.earned_rank,
       CASE WHEN $retention = 'none' THEN k.earned_rank
            ELSE greatest(k.earned_rank, coalesce(h.best_rank, 0),
                          CASE WHEN $period = 'calendar_year' THEN k.prev_rank ELSE 0 END) END AS tier_rank,
       coalesce(p.prev_tier, 0) AS prev_tier
FROM ranked k LEFT JOIN history h USING (member_id) LEFT JOIN previous p USING (member_id);

DELETE FROM tier_days WHERE day = CAST($day AS DATE) AND ($full OR member_id IN (SELECT member_id FROM tier_eval));
INSERT INTO tier_days (member_id, day, metric, prev_metric, earned_rank, tier_rank)
SELECT member_id, day, metric, prev_metric, earned_rank, tier_rank FROM tier_eval;

DELETE FROM vip_tier_changes WHERE changed_on = CAST($day AS DATE) AND ($full OR member_id IN (SELECT member_id FROM tier_eval));
INSERT INTO vip_tier_changes
SELECT substr(sha256(concat_ws('|', e.member_id, CAST(e.day AS VARCHAR), t.name)), 1, 32),
       e.member_id, e.day, f.name, t.name,
       CASE WHEN e.tier_rank > e.prev_tier THEN 'upgrade'
            WHEN $retention = 'none' THEN 'downgrade' ELSE 'retention_expired' END,
       e.metric
FROM tier_eval e
JOIN tier_levels t ON t.rank = e.tier_rank
JOIN tier_levels f ON f.rank = e.prev_tier
WHERE e.tier_rank <> e.prev_tier;
