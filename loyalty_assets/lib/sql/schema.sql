-- Warehouse schema (CONTRACT.md §3). Idempotent: every statement may run on every connection open.
CREATE TABLE IF NOT EXISTS raw_records (
    source        VARCHAR NOT NULL,      -- e.g. magento.orders
    tenant        VARCHAR NOT NULL,
    record_id     VARCHAR NOT NULL,
    modified_at   TIMESTAMPTZ NOT NULL,
    payload_hash  VARCHAR NOT NULL,
    payload       JSON NOT NULL,
    partition_day DATE NOT NULL,         -- modification day, program timezone
    fetched_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, tenant, record_id, modified_at, payload_hash)
);

CREATE TABLE IF NOT EXISTS landing_files (
    path       VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    source     VARCHAR NOT NULL,
    records    BIGINT NOT NULL,
    new_versions BIGINT NOT NULL,
    loaded_at  TIMESTAMPTZ NOT NULL,
    error      VARCHAR,
    PRIMARY KEY (path, sha256)
);

CREATE TABLE IF NOT EXISTS fetch_log (
    source        VARCHAR NOT NULL,
    tenant        VARCHAR NOT NULL,
    partition_day DATE NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    window_end    TIMESTAMPTZ NOT NULL,
    total_count   BIGINT,
    fetched       BIGINT NOT NULL,
    new_versions  BIGINT NOT NULL,
    server_time   TIMESTAMPTZ,
    fetched_at    TIMESTAMPTZ NOT NULL
);

-- `USING COMPRESSION uncompressed`: the keys a day looks rows up by (orders, members, entries) are
-- read whole by every lookup (a join reads every row's key), and decoding them compressed cost more
-- than reading their bytes: at 1M orders 0.1 s of a 1.7 s day. The file grows 18% (1.42 → 1.68 GB).
CREATE TABLE IF NOT EXISTS order_versions (
    order_key        VARCHAR NOT NULL USING COMPRESSION uncompressed,
    platform         VARCHAR NOT NULL,
    tenant           VARCHAR NOT NULL,
    source_id        VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- native record id
    order_number     VARCHAR USING COMPRESSION uncompressed,
    store_key        VARCHAR NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    payload_hash     VARCHAR USING COMPRESSION uncompressed NOT NULL,
    status           VARCHAR,
    signal           VARCHAR NOT NULL,
    email            VARCHAR USING COMPRESSION uncompressed,
    customer_key     VARCHAR USING COMPRESSION uncompressed,
    currency         VARCHAR NOT NULL,
    subtotal_minor   BIGINT NOT NULL,
    discount_minor   BIGINT NOT NULL,
    tax_minor        BIGINT NOT NULL,
    shipping_minor   BIGINT NOT NULL,
    grand_total_minor BIGINT NOT NULL,
    eligible_minor   BIGINT NOT NULL,
    calc_currency    VARCHAR NOT NULL,
    calc_eligible_minor BIGINT NOT NULL,
    fx_rate          DECIMAL(24, 12) NOT NULL,
    calc_rate        DECIMAL(24, 12) NOT NULL,
    to_program_factor DECIMAL(38, 18) NOT NULL, -- calc minor units -> program minor units
    to_program_divisor DECIMAL(38, 18),          -- then divided by this, when set (RULES.md §3 rule 3)
    phone            VARCHAR,
    phone_region     VARCHAR,
    discount_codes   VARCHAR,
    mapped_at        TIMESTAMPTZ DEFAULT current_timestamp,  -- when normalized: finds late arrivals
    excluded_item_ids VARCHAR,  -- Magento: the excluded lines' ids, comma-separated (NULL: not recorded)
    payment_ids      VARCHAR   -- commercetools: the payments the order lists, comma-separated (NULL: not recorded)
    -- one row per (order_key, updated_at, payload_hash): normalize maps a raw version once (raw_processed).
    -- No PRIMARY KEY: at a million versions its index cost more than the rest of normalize's writes.
);
ALTER TABLE order_versions ADD COLUMN IF NOT EXISTS to_program_divisor DECIMAL(38, 18);
ALTER TABLE order_versions ADD COLUMN IF NOT EXISTS mapped_at TIMESTAMPTZ DEFAULT current_timestamp;
ALTER TABLE order_versions ADD COLUMN IF NOT EXISTS excluded_item_ids VARCHAR;
ALTER TABLE order_versions ADD COLUMN IF NOT EXISTS payment_ids VARCHAR;

CREATE TABLE IF NOT EXISTS refund_versions (
    refund_key      VARCHAR NOT NULL,
    order_key       VARCHAR NOT NULL,
    platform        VARCHAR NOT NULL,
    source_id       VARCHAR NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    payload_hash    VARCHAR NOT NULL,
    counts          BOOLEAN NOT NULL,
    currency        VARCHAR NOT NULL,
    refunded_eligible_minor BIGINT NOT NULL,
    base_currency   VARCHAR,
    refunded_eligible_base_minor BIGINT,
    order_known     BOOLEAN NOT NULL,
    raw_version_key VARCHAR NOT NULL,     -- the raw version it came from (a payment holds several refunds)
    mapped_at       TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (refund_key, updated_at, payload_hash)
);
ALTER TABLE refund_versions ADD COLUMN IF NOT EXISTS mapped_at TIMESTAMPTZ DEFAULT current_timestamp;

CREATE TABLE IF NOT EXISTS customer_versions (
    customer_key VARCHAR NOT NULL,
    platform     VARCHAR NOT NULL,
    source_id    VARCHAR NOT NULL,
    email        VARCHAR,
    created_at   TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL,
    payload_hash VARCHAR NOT NULL,
    mapped_at    TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (customer_key, updated_at, payload_hash)
);
ALTER TABLE customer_versions ADD COLUMN IF NOT EXISTS mapped_at TIMESTAMPTZ DEFAULT current_timestamp;
-- a CRM person's Loyalty_Member_Id__c: the member our push made it for (identity links it there)
ALTER TABLE customer_versions ADD COLUMN IF NOT EXISTS member_ref VARCHAR;

-- Which raw versions have been mapped, and how: every raw version is processed, quarantined, or
-- (a refund whose order is unknown yet) waiting, and waiting ones are mapped again on every run.
CREATE TABLE IF NOT EXISTS raw_processed (
    source       VARCHAR NOT NULL,
    version_key  VARCHAR USING COMPRESSION uncompressed NOT NULL,
    outcome      VARCHAR NOT NULL CHECK (outcome IN ('processed', 'quarantined', 'waiting')),
    processed_at TIMESTAMPTZ NOT NULL
    -- one row per (source, version_key): outcomes are written for versions without one (no index, as above)
);

-- Points events that are not orders (RULES.md §6): redemptions pulled from Smile.io/LoyaltyLion,
-- adjustment requests from Salesforce. Versioned like orders: booked as of a day's end.
CREATE TABLE IF NOT EXISTS loyalty_events (
    event_key       VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL CHECK (kind IN ('redeem', 'manual')),
    source          VARCHAR NOT NULL,       -- smile / loyaltylion / salesforce
    source_ref      VARCHAR NOT NULL,       -- the platform's own id
    member_key      VARCHAR,                -- identity key of the member (e.g. smile:default:42)
    member_id_hint  VARCHAR,                -- a member id given by the source (Salesforce external id)
    reward_code     VARCHAR,                -- a redemption's discount code: finds the order it was used on
    points          BIGINT NOT NULL,        -- what the event is worth now (0 once canceled / rejected)
    status          VARCHAR NOT NULL,       -- valid / canceled / rejected
    reason          VARCHAR,
    description     VARCHAR,
    updated_at      TIMESTAMPTZ NOT NULL,
    payload_hash    VARCHAR NOT NULL,
    PRIMARY KEY (event_key, updated_at, payload_hash)
);

-- Referrals pulled from Smile.io / LoyaltyLion, and what became of each (RULES.md §6).
CREATE TABLE IF NOT EXISTS referrals (
    referral_key  VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    referrer_key  VARCHAR,                 -- identity key of the referrer (smile:default:42, ...)
    referrer_email VARCHAR,
    friend_email  VARCHAR NOT NULL,
    friend_code   VARCHAR,                 -- the friend's referral coupon code: an order using it is the friend's
    state         VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    payload_hash  VARCHAR NOT NULL,
    PRIMARY KEY (referral_key, updated_at, payload_hash)
);
ALTER TABLE referrals ADD COLUMN IF NOT EXISTS friend_code VARCHAR;

CREATE TABLE IF NOT EXISTS referral_outcomes (
    referral_key  VARCHAR PRIMARY KEY,
    status        VARCHAR NOT NULL,        -- rewarded / refused / taken_back
    reason        VARCHAR,
    friend_order  VARCHAR,
    decided_on    DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS quarantine (
    source        VARCHAR NOT NULL,
    record_key    VARCHAR NOT NULL,
    partition_day DATE,
    reason        VARCHAR NOT NULL,
    detail        VARCHAR NOT NULL,
    payload       JSON,
    seen_at       TIMESTAMPTZ NOT NULL,
    version_key   VARCHAR NOT NULL,      -- the raw version (or refund) it concerns: one row per problem
    PRIMARY KEY (source, version_key, reason)
);

CREATE TABLE IF NOT EXISTS member_keys (
    member_id     VARCHAR NOT NULL USING COMPRESSION uncompressed,
    key           VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- unique: index member_keys_key (warehouse.UNIQUE_KEYS)
    key_type      VARCHAR NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS member_merges (
    survivor_id VARCHAR NOT NULL,
    absorbed_id VARCHAR PRIMARY KEY,
    rule        VARCHAR NOT NULL,
    evidence    VARCHAR NOT NULL,
    merged_on   DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS identity_conflicts (
    conflict_id  VARCHAR PRIMARY KEY,
    key          VARCHAR NOT NULL,
    key_type     VARCHAR NOT NULL,
    member_ids   VARCHAR NOT NULL,
    reason       VARCHAR NOT NULL,
    detected_on  DATE NOT NULL
);

CREATE TABLE IF NOT EXISTS program_versions (
    rule_version  VARCHAR PRIMARY KEY,
    program_id    VARCHAR NOT NULL,
    config        JSON NOT NULL,
    first_used_at TIMESTAMPTZ NOT NULL
);

-- entry_id is unique (RULES.md §6) by index ledger_journal_entry_id, which warehouse.py creates
-- (warehouse.UNIQUE_KEYS; a warehouse created before 2026-12-06 has it as the PRIMARY KEY instead):
-- an index can be dropped for the first booking of an empty journal and built once after it.
CREATE TABLE IF NOT EXISTS ledger_journal (
    entry_id        VARCHAR USING COMPRESSION uncompressed NOT NULL,
    booked_member_id VARCHAR NOT NULL USING COMPRESSION uncompressed,
    kind            VARCHAR NOT NULL CHECK (kind IN ('earn','adjust','clawback','redeem','referral','manual','expire')),
    points          BIGINT NOT NULL,
    booked_on       DATE NOT NULL,
    available_on    DATE NOT NULL,
    order_key       VARCHAR USING COMPRESSION uncompressed,
    source          VARCHAR NOT NULL,
    source_ref      VARCHAR USING COMPRESSION uncompressed,
    source_version  VARCHAR USING COMPRESSION uncompressed NOT NULL,
    basis_minor     BIGINT,
    rate            DECIMAL(18, 6),
    multiplier      DECIMAL(18, 6),
    fx_rate         DECIMAL(24, 12),
    rounding        VARCHAR,
    rule_version    VARCHAR NOT NULL,
    occurred_at     TIMESTAMPTZ,
    description     VARCHAR USING COMPRESSION uncompressed,
    journaled_at    TIMESTAMPTZ NOT NULL,
    event_key       VARCHAR                 -- for entries not from orders: the event they book
);

-- Phones parsed to their E.164 identity keys (identity.phone_key; NULL: not a valid number), each
-- (phone, region) once, when identity.match_phone is on: a run parses the phones it has not seen.
CREATE TABLE IF NOT EXISTS phone_keys (
    phone  VARCHAR NOT NULL,
    region VARCHAR,
    key    VARCHAR
);

-- When each derived table was last refreshed: the next refresh starts from what was mapped since.
CREATE TABLE IF NOT EXISTS refresh_state (
    name         VARCHAR PRIMARY KEY,     -- order_facts / tiers / member_status
    refreshed_at TIMESTAMPTZ NOT NULL,
    through_day  DATE
);
-- Bookings and outbox preparations update this row in their transactions, so DuckDB refuses the
-- second of two that overlap (ledger.hold_journal).
INSERT INTO refresh_state VALUES ('journal_writer', TIMESTAMPTZ '1970-01-01 00:00:00+00', NULL) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS ledger_watermark (
    program_id      VARCHAR PRIMARY KEY,
    closed_through  DATE,                 -- last day that has ended and been booked
    last_booked_day DATE,                 -- last day booked at all (may still be open)
    updated_at      TIMESTAMPTZ NOT NULL
);

-- A first booking's points (every order at the end of each day it changed) with what it valued
-- them at and their members (no value: a point no version answers), handed to the first tier
-- evaluation of the same days, which would scope and compute the same again (ledger.keep_points,
-- tiers.kept_points): 1.1 s of a 1M-order recompute. Emptied once read, and by any later booking.
CREATE TABLE IF NOT EXISTS booking_points (
    order_key             VARCHAR NOT NULL USING COMPRESSION uncompressed,
    booked_day            DATE NOT NULL,
    member_id             VARCHAR USING COMPRESSION uncompressed,
    created_at            TIMESTAMPTZ,
    earning               BOOLEAN,
    value                 BIGINT,
    net_program_minor_any BIGINT
);
CREATE TABLE IF NOT EXISTS booking_points_info (
    first_day    DATE NOT NULL,
    last_day     DATE NOT NULL,
    booked_at    TIMESTAMPTZ NOT NULL,   -- the booking's transaction began
    rule_version VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS tier_days (
    member_id    VARCHAR NOT NULL USING COMPRESSION uncompressed,
    day          DATE NOT NULL,
    metric       DECIMAL(18, 3) NOT NULL,  -- current period, as known at the end of day (3 places: KWD, BHD)
    prev_metric  DECIMAL(18, 3) NOT NULL,  -- previous calendar year, as known at the end of day
    earned_rank  INTEGER NOT NULL,
    tier_rank    INTEGER NOT NULL
    -- one row per (member_id, day): tier_eval.sql replaces the rows it evaluates (no index, as above)
);

CREATE TABLE IF NOT EXISTS vip_tier_changes (
    change_id  VARCHAR USING COMPRESSION uncompressed PRIMARY KEY,
    member_id  VARCHAR USING COMPRESSION uncompressed NOT NULL,
    changed_on DATE NOT NULL,
    from_tier  VARCHAR NOT NULL,
    to_tier    VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL,
    metric     DECIMAL(18, 3) NOT NULL
);

CREATE TABLE IF NOT EXISTS member_status (
    -- one row per member: status.py deletes the rows it rewrites first (no index: at 200k members
    -- deleting a day's 20k rows cost 0.3 s in its index at commit, the rest of the refresh 0.1 s)
    member_id               VARCHAR USING COMPRESSION uncompressed NOT NULL,
    email                   VARCHAR USING COMPRESSION uncompressed,
    points_spendable        BIGINT NOT NULL,
    points_pending          BIGINT NOT NULL,
    points_earned_lifetime  BIGINT NOT NULL,
    vip_tier                VARCHAR NOT NULL,
    tier_metric             DECIMAL(18, 3) NOT NULL,
    tier_expires_on         DATE,
    smile_customer_id       VARCHAR,
    loyaltylion_customer_id VARCHAR,
    salesforce_id           VARCHAR,
    as_of                   DATE,
    updated_at              TIMESTAMPTZ NOT NULL
);

-- The address each member used last and when (member_status.email), so a refresh reads only the
-- versions mapped since the last one (status.py); and the keys identity moved to another member,
-- whose members' addresses are found again from every version.
CREATE TABLE IF NOT EXISTS member_emails (
    member_id VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- one row per member with an address: status.py rewrites them (no index)
    email     VARCHAR USING COMPRESSION uncompressed NOT NULL,
    used_at   TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS member_key_moves (
    key            VARCHAR NOT NULL,
    from_member_id VARCHAR NOT NULL,
    member_id      VARCHAR NOT NULL,   -- the member the key moved to
    moved_at       TIMESTAMPTZ NOT NULL
);

-- Outbox (DESIGN.md §4): every intended write to a target, recorded before it is sent.
CREATE TABLE IF NOT EXISTS outbox (
    batch_id             VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- unique: index outbox_batch_id (warehouse.UNIQUE_KEYS)
    target               VARCHAR NOT NULL,
    member_id            VARCHAR USING COMPRESSION uncompressed NOT NULL,
    operation            VARCHAR NOT NULL,
    points               BIGINT NOT NULL,
    entries              INTEGER NOT NULL,
    status               VARCHAR NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'noop', 'blocked',
                                                            'awaiting_customer', 'failed')),
    attempts             INTEGER NOT NULL,
    external_customer_id VARCHAR,
    external_ref         VARCHAR,
    last_error           VARCHAR,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    sent_at              TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS outbox_entries (
    target   VARCHAR NOT NULL,
    entry_id VARCHAR NOT NULL USING COMPRESSION uncompressed,
    batch_id VARCHAR USING COMPRESSION uncompressed NOT NULL
    -- one row per (target, entry_id): prepare_batches gives an entry only if it has none (no index, as above)
);

-- A member's record in a target (Smile.io / LoyaltyLion customer, Salesforce Contact or Lead).
CREATE TABLE IF NOT EXISTS target_links (
    target      VARCHAR NOT NULL,
    member_id   VARCHAR NOT NULL,
    external_id VARCHAR NOT NULL,
    matched_by  VARCHAR NOT NULL,
    linked_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, member_id)
);

-- What was last pushed successfully per record, so only changed rows are sent again.
CREATE TABLE IF NOT EXISTS sync_state (
    target      VARCHAR NOT NULL,
    object      VARCHAR NOT NULL,
    record_key  VARCHAR NOT NULL,
    values_hash VARCHAR NOT NULL,
    pushed_at   TIMESTAMPTZ NOT NULL,
    pushed_values VARCHAR,               -- JSON of what was sent (to notice a CRM-side edit)
    PRIMARY KEY (target, object, record_key)
);

-- A pulled value that disagrees with ours for an attribute one side owns (RULES.md §9).
CREATE TABLE IF NOT EXISTS ownership_conflicts (
    target      VARCHAR NOT NULL,
    record_key  VARCHAR NOT NULL,
    attribute   VARCHAR NOT NULL,
    ours        VARCHAR,
    theirs      VARCHAR,
    owner       VARCHAR NOT NULL,
    resolution  VARCHAR NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL
);

-- Each member's spendable balance next to the loyalty platform's, after the run's pushes.
CREATE TABLE IF NOT EXISTS reconciliation (
    target        VARCHAR NOT NULL,
    member_id     VARCHAR NOT NULL,
    external_id   VARCHAR NOT NULL,
    ours          BIGINT NOT NULL,      -- member_status.points_spendable
    theirs        BIGINT NOT NULL,      -- the platform's balance
    unsent        BIGINT NOT NULL,      -- spendable points not delivered yet (outbox not sent, blocked, ...)
    drift         BIGINT NOT NULL,      -- theirs - (ours - unsent): what nothing here explains
    explanation   VARCHAR,
    checked_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, member_id)
);

-- Right to erasure: who was pseudonymized when, and the deletions the targets still owe.
CREATE TABLE IF NOT EXISTS erasures (
    member_id    VARCHAR PRIMARY KEY,
    pseudonym    VARCHAR NOT NULL,
    erased_at    TIMESTAMPTZ NOT NULL,
    rows_rewritten JSON NOT NULL
);

CREATE TABLE IF NOT EXISTS deletion_requests (
    target       VARCHAR NOT NULL,
    external_id  VARCHAR NOT NULL,
    member_id    VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,      -- queued / done
    requested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, external_id)
);

CREATE TABLE IF NOT EXISTS sync_log (
    correlation_id  VARCHAR NOT NULL,
    run_id          VARCHAR,
    target          VARCHAR NOT NULL,
    operation       VARCHAR NOT NULL,
    record_key      VARCHAR,
    attempt         INTEGER NOT NULL,
    status          VARCHAR NOT NULL,
    http_status     INTEGER,
    message         VARCHAR,
    payload_summary VARCHAR,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);

-- Members resolved through merge chains: absorbed ids point at their final survivor.
CREATE OR REPLACE VIEW member_resolution AS
WITH RECURSIVE chain(member_id, survivor_id, depth) AS (
    SELECT absorbed_id, survivor_id, 1 FROM member_merges
    UNION ALL
    SELECT c.member_id, m.survivor_id, c.depth + 1
    FROM chain c JOIN member_merges m ON m.absorbed_id = c.survivor_id
    WHERE c.depth < 100
)
SELECT member_id, arg_max(survivor_id, depth) AS survivor_id FROM chain GROUP BY member_id;

CREATE OR REPLACE VIEW ledger_entries AS
SELECT j.entry_id,
       coalesce(r.survivor_id, j.booked_member_id) AS member_id,
       j.kind, j.points, j.booked_on, j.available_on, j.order_key, j.source, j.source_ref,
       j.basis_minor, j.rate, j.multiplier, j.rule_version, j.occurred_at, j.description,
       j.booked_member_id, j.fx_rate
FROM ledger_journal j
LEFT JOIN member_resolution r ON r.member_id = j.booked_member_id;

-- Latest known version per order with its lifecycle and refunds (CONTRACT.md §3).
CREATE TABLE IF NOT EXISTS order_facts (
    order_key                  VARCHAR NOT NULL USING COMPRESSION uncompressed,   -- one row per order (order_facts.sql replaces them; no index, as above)
    platform                   VARCHAR NOT NULL,
    store_key                  VARCHAR NOT NULL,
    order_number               VARCHAR USING COMPRESSION uncompressed,
    member_id                  VARCHAR USING COMPRESSION uncompressed,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL,
    lifecycle                  VARCHAR NOT NULL,
    currency                   VARCHAR NOT NULL,
    fx_rate                    DECIMAL(24, 12) NOT NULL,
    subtotal_minor             BIGINT NOT NULL,
    discount_minor             BIGINT NOT NULL,
    tax_minor                  BIGINT NOT NULL,
    shipping_minor             BIGINT NOT NULL,
    grand_total_minor          BIGINT NOT NULL,
    eligible_minor             BIGINT NOT NULL,
    refunded_eligible_minor    BIGINT NOT NULL,
    net_eligible_program_minor BIGINT NOT NULL,
    email                      VARCHAR USING COMPRESSION uncompressed,
    customer_key               VARCHAR USING COMPRESSION uncompressed
);
-- the rest of the order's latest state (order_state_asof.sql): an instant after the order's last
-- change reads its state here instead of from every version (ledger.compute_point_values)
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS discount_codes VARCHAR;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS net_program_minor_any BIGINT;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS occurred_at TIMESTAMPTZ;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS source_version VARCHAR USING COMPRESSION uncompressed;
-- and the latest version's own fields, so a refresh starts from the row and the versions mapped since
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS source_id VARCHAR USING COMPRESSION uncompressed;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS payload_hash VARCHAR USING COMPRESSION uncompressed;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS calc_currency VARCHAR;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS calc_eligible_minor BIGINT;
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS to_program_factor DECIMAL(38, 18);
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS to_program_divisor DECIMAL(38, 18);
-- the keys (customer id, else e-mail) the order's earlier versions belonged to a member by, other
-- than its current one ([] for most orders; NULL: not computed yet): the members whose tiers its
-- changes move (tier_pairs.sql), without reading its versions
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS prior_keys VARCHAR[];
-- when the refresh that wrote the row began (NULL: a row from before the column): a row is later
-- than every version it stands on, so a booking reads only the rows written after its versions were
-- mapped, which are the table's last row groups (ledger.compute_point_values)
ALTER TABLE order_facts ADD COLUMN IF NOT EXISTS refreshed_at TIMESTAMPTZ;
-- tier metrics with 3 decimal places (ISO 4217: KWD, BHD), in warehouses created with 2
ALTER TABLE tier_days ALTER COLUMN metric TYPE DECIMAL(18, 3);
ALTER TABLE tier_days ALTER COLUMN prev_metric TYPE DECIMAL(18, 3);
ALTER TABLE vip_tier_changes ALTER COLUMN metric TYPE DECIMAL(18, 3);
ALTER TABLE member_status ALTER COLUMN tier_metric TYPE DECIMAL(18, 3);
