-- Magento 2 credit memos mapped in SQL, the same rows platforms/magento.py gives (map_creditmemo),
-- for the plain-shaped memos of orders known with no excluded line: program-currency amounts, state
-- 1-3, 'YYYY-MM-DD HH:MM:SS' time, no line of an excluded product type. Anything else (a memo
-- waiting for its order, every record that would be quarantined) stays pending for Python.
-- Reads temp tables memo_pending (the memo versions of the run without an outcome yet) and
-- memo_orders (each named order's excluded line ids, '' for none); the mg_* macros: magento_macros.sql.
CREATE OR REPLACE TEMP TABLE memo_sql_rows AS
WITH pending AS (
    SELECT tenant, modified_at, payload_hash, version_key,
           json_transform(payload, '{"entity_id": "JSON", "order_id": "JSON", "state": "JSON", "created_at": "JSON",
               "updated_at": "JSON", "order_currency_code": "JSON", "base_currency_code": "JSON", "subtotal": "JSON",
               "discount_amount": "JSON", "base_subtotal": "JSON", "base_discount_amount": "JSON", "items": "JSON"}') AS j
    FROM memo_pending
    WHERE mg_plain_object(payload)
),
typed AS (
    SELECT tenant, modified_at, payload_hash, version_key,
           mg_type(j.entity_id) AS id_type, mg_json_text(j.entity_id) AS id_s,
           mg_type(j.order_id) AS order_type, mg_json_text(j.order_id) AS order_s,
           mg_type(j.state) AS state_type, mg_json_text(j.state) AS state_s,
           mg_type(j.created_at) AS created_type, mg_json_text(j.created_at) AS created_s,
           mg_type(j.updated_at) AS updated_type, mg_json_text(j.updated_at) AS updated_s,
           mg_type(j.order_currency_code) AS currency_type, mg_json_text(j.order_currency_code) AS currency_s,
           mg_type(j.base_currency_code) AS base_type, mg_json_text(j.base_currency_code) AS base_s,
           mg_type(j.subtotal) AS subtotal_type, mg_json_text(j.subtotal) AS subtotal_s,
           mg_type(j.discount_amount) AS discount_type, mg_json_text(j.discount_amount) AS discount_s,
           mg_type(j.base_subtotal) AS base_subtotal_type, mg_json_text(j.base_subtotal) AS base_subtotal_s,
           mg_type(j.base_discount_amount) AS base_discount_type, mg_json_text(j.base_discount_amount) AS base_discount_s,
           mg_type(j.items) AS items_type, j.items
    FROM pending
),
fields AS (
    SELECT tenant, modified_at, payload_hash, version_key, id_type, order_type, state_type, state_s,
           trim(mg_scalar_text(id_type, id_s)) AS native_id,
           trim(order_s) AS order_id,   -- trimmed, as the mapper and normalize.py's lookup read it
           -- updated_at, else (missing, null or '') created_at; Python takes any falsy value for missing
           CASE WHEN updated_type = 'VARCHAR' AND updated_s <> '' THEN mg_time(updated_type, updated_s)
                WHEN updated_type = 'NULL' OR updated_s = '' THEN mg_time(created_type, created_s) END AS memo_time,
           currency_type, upper(mg_text(currency_type, currency_s)) AS currency,
           base_type, CASE WHEN base_type = 'VARCHAR' AND base_s <> '' THEN upper(base_s) END AS base_currency,
           mg_amount(subtotal_type, subtotal_s, $number) AS subtotal, mg_amount(discount_type, discount_s, $number) AS discount,
           mg_amount(base_subtotal_type, base_subtotal_s, $number) AS base_subtotal,
           mg_amount(base_discount_type, base_discount_s, $number) AS base_discount,
           items_type,
           CASE WHEN items_type = 'ARRAY'
                THEN list_transform(json_extract_string(items, '$[*].product_type'), lambda t: lower(t)) END AS product_types
    FROM typed
)
SELECT version_key,
       'magento:' || tenant || ':creditmemo:' || native_id AS refund_key,
       'magento:' || tenant || ':' || order_id AS order_key,
       'magento' AS platform, native_id AS source_id, modified_at AS updated_at, payload_hash,
       state_s = '2' AS counts,
       currency,
       CAST(round(greatest(subtotal - abs(discount), 0) * $scale) AS BIGINT) AS refunded_eligible_minor,
       base_currency,
       CASE WHEN base_currency IS NOT NULL
            THEN CAST(round(greatest(base_subtotal - abs(base_discount), 0) * $scale) AS BIGINT) END
           AS refunded_eligible_base_minor,
       TRUE AS order_known,
       version_key AS raw_version_key,
       id_type IN ('UBIGINT', 'BIGINT', 'VARCHAR') AND native_id <> '' AND mg_ascii(native_id)
       AND order_type IN ('UBIGINT', 'BIGINT', 'VARCHAR') AND order_id <> '' AND mg_ascii(order_id)
       AND state_type IN ('UBIGINT', 'BIGINT', 'VARCHAR') AND state_s IN ('1', '2', '3')
       AND memo_time IS NOT NULL
       AND currency_type = 'VARCHAR' AND currency = $currency
       AND base_type IN ('NULL', 'VARCHAR') AND coalesce(base_currency, $currency) = $currency
       AND subtotal >= 0 AND discount IS NOT NULL
       AND (base_currency IS NULL OR (base_subtotal >= 0 AND base_discount IS NOT NULL))
       AND (items_type = 'NULL' OR (items_type = 'ARRAY' AND NOT list_has_any(product_types, CAST($excluded AS VARCHAR[]))))
       AND 'magento:' || tenant || ':' || order_id IN (SELECT order_key FROM memo_orders WHERE ids = '') AS sql_ok
FROM fields;

INSERT INTO refund_versions BY NAME
SELECT * EXCLUDE (version_key, sql_ok) FROM memo_sql_rows WHERE sql_ok;

INSERT INTO raw_processed
SELECT 'magento.creditmemos', version_key, 'processed', now() FROM memo_sql_rows WHERE sql_ok;
