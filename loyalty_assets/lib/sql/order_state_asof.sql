-- Orders as they stood at given instants (order_state_versions; ledger.py reads them with the ones
-- order_facts answers as temp view order_state): one row per (order_key, point_at) of temp table state_points,
-- from the versions in temp view asof_versions (order_versions, or what refresh_order_facts gives,
-- with its rowid as version_row); odd_hash: a point with a version whose hash the macro could not
-- order (ledger.py then computes the points again by the pair)
-- (point_at = exclusive end of a day, UTC): lifecycle (ranks only move up: the highest seen so far),
-- refunds counted once by their own id, net eligible spend in program minor units, and the source
-- version (the record versions that determined it). Many days of one order are computed at once.
-- Each point is paired with its order's versions and refunds before it by the join with state_points,
-- or, for every order at one instant, by a filter (ledger.py: POINT_PAIRS, INSTANT_PAIRS).

-- calc minor units in program minor units, rounded half-up (minor >= 0); a factor of 1 (an order in
-- the program currency) skips the 128-bit DECIMAL(38, 18) product, 0.16 s per million rows. With a
-- divisor (RULES.md §3 rule 3: amount ÷ rate) the quotient is taken exactly in integers, factor and
-- divisor as integers of 10^-18 (scaled in two parts, which cannot overflow a DECIMAL(38, 18)): a
-- product with a rounded 1/rate fell below a half (4503 ÷ 1.2 = 3752.5 gave 3752)
CREATE OR REPLACE TEMP MACRO e18(x) AS
    CAST(floor(x) AS HUGEINT) * 1000000000000000000 + CAST((x - floor(x)) * 1000000000000000000 AS HUGEINT);
CREATE OR REPLACE TEMP MACRO to_program(minor, factor, divisor) AS
    CASE WHEN divisor IS NOT NULL
         THEN ((2 * minor::HUGEINT * e18(factor) + e18(divisor)) // (2 * e18(divisor)))::BIGINT
         WHEN factor = 1 THEN minor ELSE round(minor * factor)::BIGINT END;

-- a modified time as the source version names it (RULES.md §6): to the second, and to the microsecond
-- when it has a fraction (commercetools times carry milliseconds: two versions in one second were one
-- source version, so a third entry of the same kind on the same day repeated the second's id); the
-- whole seconds of the other platforms keep the text, and so the ids, they always had
CREATE OR REPLACE TEMP MACRO version_time(ts) AS
    strftime(ts, '%Y-%m-%dT%H:%M:%S')
    || CASE WHEN epoch_us(ts) % 1000000 = 0 THEN '' ELSE '.' || lpad(CAST(epoch_us(ts) % 1000000 AS VARCHAR), 6, '0') END;

CREATE OR REPLACE TEMP TABLE order_state_versions AS
WITH ranked AS (
    -- narrow: the latest version of each point is picked by its key, then read whole (a window
    -- over the whole rows cost twice as much: 1.4 s vs 0.8 s for 1M orders)
    SELECT v.order_key, p.point_at, p.booked_day, v.version_row, v.updated_at, v.payload_hash,
           version_order(v.updated_at, v.payload_hash) AS version_order,
           CASE v.signal WHEN 'pending' THEN 0 WHEN 'paid' THEN 1 WHEN 'fulfilled' THEN 2
                         WHEN 'refunded' THEN 3 WHEN 'canceled' THEN 4 END AS signal_rank
    FROM {versions_at_points}
),
picked AS (
    SELECT order_key, point_at, any_value(booked_day) AS booked_day, max(signal_rank) AS life_rank,
           -- the latest by (updated_at, payload_hash), as one key: macro version_order (ledger.py); a
           -- point whose every key is NULL keeps a version, so that it is seen and computed again
           coalesce(arg_max(version_row, version_order), any_value(version_row)) AS version_row,
           bool_or(version_order IS NULL) AS odd_hash
    FROM ranked GROUP BY order_key, point_at
),
latest AS (
    -- by the row id alone, which names one version of the point's order (with the order key too, every
    -- version's key was hashed: 0.05-0.17 s more at 1M orders)
    SELECT v.*, p.point_at, p.booked_day, p.life_rank, p.odd_hash
    FROM picked p JOIN asof_versions v ON v.version_row = p.version_row
),
memo_latest AS (
    SELECT * FROM (
        SELECT r.*, p.point_at,
               row_number() OVER (PARTITION BY r.refund_key, p.point_at ORDER BY r.updated_at DESC, r.payload_hash DESC) AS rn
        FROM {refunds_at_points}
    ) WHERE rn = 1
),
refunds AS (
    SELECT m.order_key, m.point_at,
           sum(CASE WHEN NOT m.counts THEN 0
                    WHEN l.calc_currency = l.currency THEN m.refunded_eligible_minor
                    WHEN m.base_currency = l.calc_currency THEN m.refunded_eligible_base_minor
                    ELSE 0 END)::BIGINT AS refunded_calc_minor,
           sum(CASE WHEN m.counts THEN m.refunded_eligible_minor ELSE 0 END)::BIGINT AS refunded_minor,
           list(m.source_id || '@' || version_time(m.updated_at)) AS refs,
           max(m.updated_at) AS last_refund_at
    FROM memo_latest m JOIN latest l USING (order_key, point_at)
    GROUP BY m.order_key, m.point_at
)
SELECT l.order_key, l.point_at, l.booked_day, CAST(NULL AS VARCHAR) AS facts_member_id, l.platform, l.store_key, l.order_number, l.created_at, l.updated_at,
       l.email, l.customer_key, l.discount_codes, l.currency, l.fx_rate, l.subtotal_minor, l.discount_minor,
       l.tax_minor, l.shipping_minor, l.grand_total_minor, l.eligible_minor,
       l.source_id, l.payload_hash, l.calc_currency, l.calc_eligible_minor, l.to_program_factor, l.to_program_divisor,
       l.life_rank, l.odd_hash,
       CASE l.life_rank WHEN 0 THEN 'pending' WHEN 1 THEN 'paid' WHEN 2 THEN 'fulfilled'
                        WHEN 3 THEN 'refunded' ELSE 'canceled' END AS lifecycle,
       coalesce(r.refunded_minor, 0) AS refunded_eligible_minor,
       CASE WHEN l.life_rank >= 3 THEN 0
            ELSE to_program(greatest(l.calc_eligible_minor - coalesce(r.refunded_calc_minor, 0), 0),
                            l.to_program_factor, l.to_program_divisor) END AS net_eligible_program_minor,
       -- the tier metric ignores the lifecycle: callers filter on it
       to_program(greatest(l.calc_eligible_minor - coalesce(r.refunded_calc_minor, 0), 0),
                  l.to_program_factor, l.to_program_divisor) AS net_program_minor_any,
       greatest(l.updated_at, coalesce(r.last_refund_at, l.updated_at)) AS occurred_at,
       -- with no refund the sorted list is the version alone (most orders; the lists cost 0.3 s at 1M)
       CASE WHEN r.refs IS NULL THEN substr(sha256(l.source_id || '@' || version_time(l.updated_at)), 1, 16)
            ELSE substr(sha256(array_to_string(list_sort(
                list_concat([l.source_id || '@' || version_time(l.updated_at)], r.refs)), '|')), 1, 16)
            END AS source_version
FROM latest l LEFT JOIN refunds r USING (order_key, point_at);
