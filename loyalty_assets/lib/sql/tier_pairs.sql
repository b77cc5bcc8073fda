-- The (member, day) pairs whose tier can change in the days of the run (RULES.md §7): a day
-- one of the member's orders changed (temp table tier_changed: (order_key, booked_day), late arrivals
-- on the first day), an order leaving the rolling window, an earned level leaving the retention
-- window, a merge since the last evaluation (first day), and every member on 1 January with
-- calendar-year periods (tiers.py adds those: only a run that holds a 1 January scans every member).
-- Members are resolved to their survivors.
CREATE OR REPLACE TEMP TABLE tier_res AS SELECT member_id, survivor_id FROM member_resolution;

CREATE OR REPLACE TEMP TABLE tier_pairs AS
WITH changed AS (   -- one read of order_facts: the order's member and those its earlier versions had
    SELECT c.order_key, c.booked_day, f.member_id, f.prior_keys, f.customer_key, f.email
    FROM tier_changed c JOIN order_facts f USING (order_key)
),
order_keys AS (
    SELECT DISTINCT order_key, key FROM (
        SELECT order_key, unnest(prior_keys) AS key FROM changed
        UNION ALL   -- versions mapped since the facts refresh are not in its row yet
        SELECT order_key, unnest([customer_key, email]) FROM order_versions
        WHERE ($facts_at IS NULL OR mapped_at > $facts_at) AND order_key IN (SELECT order_key FROM tier_changed)
        UNION ALL   -- a row not given its prior_keys yet (a warehouse from before them)
        SELECT order_key, unnest([customer_key, email]) FROM order_versions
        WHERE order_key IN (SELECT order_key FROM changed WHERE prior_keys IS NULL))
    WHERE key IS NOT NULL
),
moved AS (   -- changed orders with a key identity has moved to another member at some time (rare)
    SELECT DISTINCT order_key FROM (
        SELECT order_key, key FROM order_keys UNION ALL SELECT order_key, unnest([customer_key, email]) FROM changed)
    WHERE key IN (SELECT key FROM member_key_moves)
),
raw AS (
    SELECT k.member_id, c.booked_day AS day
    FROM tier_changed c JOIN order_keys o USING (order_key) JOIN member_keys k ON k.key = o.key
    UNION ALL
    SELECT member_id, booked_day FROM changed
    UNION ALL   -- the members its entries were booked for: an order that followed a moved key to another
                -- member leaves the tier of the one it counted for (its keys all name the new one now). A
                -- first evaluation has every member's orders in tier_changed already
    SELECT j.booked_member_id, c.booked_day FROM tier_changed c JOIN ledger_journal j USING (order_key)
    WHERE $scoped AND c.order_key IN (SELECT order_key FROM moved)
    UNION ALL   -- orders created 365 days before leave the rolling window
    SELECT member_id, CAST(timezone($tz, created_at) AS DATE) + 365 FROM order_facts
    WHERE $rolling AND CAST(timezone($tz, created_at) AS DATE) + 365 BETWEEN CAST($first AS DATE) AND CAST($last AS DATE)
    UNION ALL   -- earned levels leave the retention window D-365..D
    SELECT t.member_id, t.day + k.k FROM tier_days t, (VALUES (365), (366)) k(k)
    WHERE $rolling AND $retention = 'next_period' AND t.day + k.k BETWEEN CAST($first AS DATE) AND CAST($last AS DATE)
    UNION ALL
    SELECT survivor_id, CAST($first AS DATE) FROM member_merges WHERE merged_on >= CAST($first AS DATE) - 1
    UNION ALL
    SELECT absorbed_id, CAST($first AS DATE) FROM member_merges WHERE merged_on >= CAST($first AS DATE) - 1
)
SELECT DISTINCT coalesce(r.survivor_id, raw.member_id) AS member_id, raw.day
FROM raw LEFT JOIN tier_res r ON r.member_id = raw.member_id
WHERE raw.member_id IS NOT NULL;
