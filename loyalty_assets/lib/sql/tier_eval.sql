-- Tier evaluation of every pair of temp table tier_pairs at once (RULES.md §7). An order's state only
-- changes on the days it has a version or refund, so each candidate order is valued at the first day
-- and at each day of tier_changed; tier_metrics.sql or tier_metrics_rolling.sql has summed them per
-- pair (member, D) as of D (temp table tier_metrics).
-- tier_days rows hold until the next row, so the retention history and the previous tier are window
-- computations over the member's old rows and the new ones.
CREATE OR REPLACE TEMP TABLE tier_new AS
WITH old AS (
    -- merged_on: an absorbed member's rows end when it was merged (its survivor's rows, over the orders
    -- of both, go on from there); without it its last row held for ever
    -- a rank above the levels configured now (a level removed from the program) is the highest left
    SELECT coalesce(r.survivor_id, t.member_id) AS member_id, t.member_id AS row_member, t.day,
           least(t.earned_rank, len(CAST($thresholds AS DECIMAL(18, 3)[])) - 1) AS earned_rank,
           least(t.tier_rank, len(CAST($thresholds AS DECIMAL(18, 3)[])) - 1) AS tier_rank, mm.merged_on
    FROM tier_days t LEFT JOIN tier_res r ON r.member_id = t.member_id
    LEFT JOIN (SELECT absorbed_id, min(merged_on) AS merged_on FROM member_merges GROUP BY 1) mm ON mm.absorbed_id = t.member_id
    WHERE coalesce(r.survivor_id, t.member_id) IN (SELECT member_id FROM tier_pairs)
),
levels AS (
    -- a member is evaluated from its first pair with a metric (tier_metrics has a row only for a pair
    -- with an earning order: a join, not a window over the pairs, 0.1-0.4 s less at 1M orders), or
    -- once it has a tier history (kept even once its orders are gone)
    SELECT p.member_id, p.day, coalesce(m.metric, 0) AS metric, coalesce(m.prev_metric, 0) AS prev_metric,
           -- the highest level whose threshold it reaches ($thresholds ascend; a subquery on tier_levels
           -- per pair cost 0.2 s at 1M orders)
           nullif(len(list_filter(CAST($thresholds AS DECIMAL(18, 3)[]), lambda t: t <= coalesce(m.metric, 0))), 0) - 1 AS earned_rank,
           nullif(len(list_filter(CAST($thresholds AS DECIMAL(18, 3)[]), lambda t: t <= coalesce(m.prev_metric, 0))), 0) - 1 AS prev_rank
    FROM tier_pairs p LEFT JOIN tier_metrics m USING (member_id, day)
    LEFT JOIN (SELECT member_id, min(day) AS first_day FROM tier_metrics GROUP BY member_id) f USING (member_id)
    WHERE p.day >= f.first_day OR p.member_id IN (SELECT member_id FROM old)
),
spans AS (
    -- every row (old ones but those re-evaluated now, and the new ones) with the day the next row of its
    -- member starts, and the start of the window its tier is held over (RULES.md §7) as day numbers
    SELECT *, coalesce(lead(day) OVER (PARTITION BY row_member ORDER BY day), merged_on) AS next_day,
           day - DATE '1970-01-01' AS day_no, window_start - DATE '1970-01-01' AS start_no
    FROM (
        SELECT *, CASE $period WHEN 'calendar_year' THEN make_date(year(day) - 1, 1, 1)
                               WHEN 'rolling_365' THEN day - 365 ELSE DATE '0001-01-01' END AS window_start
        FROM (
            SELECT o.member_id, o.row_member, o.day, o.earned_rank, FALSE AS is_level, o.merged_on FROM old o
            WHERE NOT EXISTS (SELECT 1 FROM levels n WHERE n.member_id = o.row_member AND n.day = o.day)
            UNION ALL
            SELECT member_id, member_id, day, earned_rank, TRUE, NULL FROM levels
        )
    )
),
begun AS (
    -- the rows begun in [window start, D), whoever's they were: a frame over the member's rows (each
    -- pair joined to every earlier row of its member cost 0.5 s at 1M orders)
    SELECT member_id, day, window_start,
           max(earned_rank) OVER (PARTITION BY member_id ORDER BY day_no
                                  RANGE BETWEEN day_no - start_no PRECEDING AND 1 PRECEDING) AS best_rank
    FROM spans
    QUALIFY is_level
),
at_start AS (
    -- the rows begun before the window and still in force at its start (one for each member whose rows
    -- it holds: itself and those merged into it), for each window start its pairs have: few with
    -- calendar years
    SELECT w.member_id, w.window_start, max(s.earned_rank) AS best_rank
    FROM (SELECT DISTINCT member_id, window_start FROM begun) w
    JOIN spans s ON s.member_id = w.member_id AND s.day < w.window_start
    WHERE coalesce(s.next_day, DATE '9999-12-31') > w.window_start
    GROUP BY ALL
),
history AS (
    -- the rows in force during [window start, D)
    SELECT b.member_id, b.day, greatest(b.best_rank, a.best_rank) AS best_rank
    FROM begun b LEFT JOIN at_start a USING (member_id, window_start)
),
ranked AS (
    SELECT n.member_id, n.day, n.metric, n.prev_metric, n.earned_rank,
           CASE WHEN $retention = 'none' THEN n.earned_rank
                ELSE greatest(n.earned_rank, coalesce(h.best_rank, 0),
                              CASE WHEN $period = 'calendar_year' THEN n.prev_rank ELSE 0 END) END AS tier_rank
    FROM levels n LEFT JOIN history h USING (member_id, day)
),
per_day AS (
    -- the tier each day the member has a row of its own: the new rows, and its old ones of other days
    SELECT member_id, day, metric, prev_metric, earned_rank, tier_rank, TRUE AS is_new FROM ranked
    UNION ALL
    SELECT o.member_id, o.day, NULL, NULL, NULL, o.tier_rank, FALSE FROM old o
    WHERE o.row_member = o.member_id
      AND NOT EXISTS (SELECT 1 FROM ranked n WHERE n.member_id = o.member_id AND n.day = o.day)
),
own AS (
    -- the previous tier over the same rows, kept for the new ones (not a join of the two: 0.2 s)
    SELECT member_id, day, metric, prev_metric, earned_rank, tier_rank,
           coalesce(lag(tier_rank) OVER (PARTITION BY member_id ORDER BY day), 0) AS prev_tier
    FROM per_day
    QUALIFY is_new
),
absorbed AS (
    -- an absorbed member's rows, each in force until its next one or the merge
    SELECT member_id, day, tier_rank,
           coalesce(lead(day) OVER (PARTITION BY row_member ORDER BY day), merged_on) AS until
    FROM old WHERE row_member <> member_id
),
absorbed_prev AS (
    SELECT n.member_id, n.day, max(a.tier_rank) AS tier_rank
    FROM ranked n JOIN absorbed a ON a.member_id = n.member_id AND a.day < n.day
                                 AND coalesce(a.until, DATE '9999-12-31') >= n.day
    GROUP BY ALL
)
-- tier(D-1) of a member with merged-in rows: the highest of the rows in force on D-1, its own and its
-- absorbed members' (the latest of them by day made a merge day's 'Silver -> Gold' upgrade of a
-- member Gold all along, from a later Silver row of the one it absorbed)
SELECT o.member_id, o.day, o.metric, o.prev_metric, o.earned_rank, o.tier_rank,
       greatest(o.prev_tier, coalesce(a.tier_rank, 0)) AS prev_tier
FROM own o LEFT JOIN absorbed_prev a USING (member_id, day);

DELETE FROM tier_days t USING tier_new n WHERE t.member_id = n.member_id AND t.day = n.day;
INSERT INTO tier_days (member_id, day, metric, prev_metric, earned_rank, tier_rank)
SELECT member_id, day, metric, prev_metric, earned_rank, tier_rank FROM tier_new;

DELETE FROM vip_tier_changes c USING tier_new n WHERE c.member_id = n.member_id AND c.changed_on = n.day;
INSERT INTO vip_tier_changes
SELECT substr(sha256(concat_ws('|', e.member_id, CAST(e.day AS VARCHAR), t.name)), 1, 32),
       e.member_id, e.day, f.name, t.name,
       CASE WHEN e.tier_rank > e.prev_tier THEN 'upgrade'
            WHEN $retention = 'none' THEN 'downgrade' ELSE 'retention_expired' END,
       e.metric
FROM tier_new e
JOIN tier_levels t ON t.rank = e.tier_rank
JOIN tier_levels f ON f.rank = e.prev_tier
WHERE e.tier_rank <> e.prev_tier;
