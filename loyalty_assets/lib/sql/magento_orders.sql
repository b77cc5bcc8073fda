-- Magento 2 orders mapped in SQL (RULES.md §2–§4), the same rows platforms/magento.py gives, for the
-- versions whose every field has the plain shape: program-currency orders, exact amounts, known
-- state, 'YYYY-MM-DD HH:MM:SS' times, ASCII text, no line of an excluded product type. Anything else
-- (and every record that would be quarantined) is left pending for the Python mapper, which says why.
-- Reads temp table magento_pending (normalize.py: the versions of the run without an outcome yet)
-- and writes the plain ones straight into order_versions: normalize.py runs it without filter
-- pushdown, which would evaluate sql_ok's checks below the projections and the mapping twice (10 s
-- at 1.7M versions), and records their outcomes itself. Written to a temp table and copied, as
-- before, the same rows cost 0.3-0.5 s more.
-- The mg_* macros, and why amounts are exact: magento_macros.sql.
INSERT INTO order_versions BY NAME
SELECT * EXCLUDE (sql_ok) FROM (
WITH pending AS (
    SELECT tenant, modified_at, payload_hash, payload,
           json_transform(payload, '{"entity_id": "JSON", "increment_id": "JSON", "state": "VARCHAR", "status": "JSON",
               "created_at": "VARCHAR", "updated_at": "VARCHAR", "order_currency_code": "VARCHAR", "customer_email": "JSON",
               "customer_id": "JSON", "customer_is_guest": "JSON", "store_id": "JSON", "coupon_code": "JSON",
               "subtotal": "JSON", "discount_amount": "JSON", "shipping_discount_amount": "JSON", "tax_amount": "JSON",
               "shipping_amount": "JSON", "grand_total": "JSON",
               "billing_address": {"email": "JSON", "telephone": "JSON", "country_id": "JSON"},
               "items": [{"product_type": "VARCHAR"}]}') AS j
    FROM magento_pending
    WHERE mg_plain_object(payload)
),
typed AS (
    SELECT tenant, modified_at, payload_hash,
           mg_type(j.entity_id) AS id_type, mg_json_text(j.entity_id) AS id_s,
           mg_type(j.increment_id) AS increment_type, mg_json_text(j.increment_id) AS increment_s,
           -- state, the times and the currency as text, whatever their JSON type: only a string can pass
           -- their checks below (a state name, 'YYYY-MM-DD HH:MM:SS', the program currency), so their
           -- types need not be read (0.07 s a field at 1.7M versions)
           j.state AS state_s, j.created_at AS created_s, j.updated_at AS updated_s, j.order_currency_code AS currency_s,
           mg_type(j.status) AS status_type, mg_json_text(j.status) AS status_s,
           mg_type(j.customer_email) AS email_type, mg_json_text(j.customer_email) AS email_s,
           mg_type(j.customer_id) AS customer_type, mg_json_text(j.customer_id) AS customer_s,
           mg_type(j.customer_is_guest) AS guest_type, mg_json_text(j.customer_is_guest) AS guest_text,
           mg_type(j.store_id) AS store_type, mg_json_text(j.store_id) AS store_s,
           mg_type(j.coupon_code) AS coupon_type, mg_json_text(j.coupon_code) AS coupon_s,
           mg_type(j.subtotal) AS subtotal_type, mg_json_text(j.subtotal) AS subtotal_s,
           mg_type(j.discount_amount) AS discount_type, mg_json_text(j.discount_amount) AS discount_s,
           mg_type(j.shipping_discount_amount) AS shipping_discount_type, mg_json_text(j.shipping_discount_amount) AS shipping_discount_s,
           mg_type(j.tax_amount) AS tax_type, mg_json_text(j.tax_amount) AS tax_s,
           mg_type(j.shipping_amount) AS shipping_type, mg_json_text(j.shipping_amount) AS shipping_s,
           mg_type(j.grand_total) AS grand_total_type, mg_json_text(j.grand_total) AS grand_total_s,
           -- the address and the lines are read as structures by the one parse above (as JSON text, each
           -- was written out and parsed again: 0.5-0.7 s at 1.7M versions). Such a read cannot tell a
           -- value of another type from an absent one (an address that is no object reads as one with no
           -- fields, lines that are no array as NULL): then the payload naming the field goes to Python.
           CASE WHEN coalesce(j.billing_address.email, j.billing_address.telephone, j.billing_address.country_id) IS NOT NULL
                THEN 'OBJECT' WHEN contains(CAST(payload AS VARCHAR), '"billing_address"') THEN 'UNKNOWN' ELSE 'NULL' END AS billing_type,
           [mg_type(j.billing_address.email), mg_type(j.billing_address.telephone), mg_type(j.billing_address.country_id)] AS billing_types,
           [mg_json_text(j.billing_address.email), mg_json_text(j.billing_address.telephone),
            mg_json_text(j.billing_address.country_id)] AS billing_texts,
           CASE WHEN j.items IS NOT NULL THEN 'ARRAY' WHEN contains(CAST(payload AS VARCHAR), '"items"') THEN 'UNKNOWN'
                ELSE 'NULL' END AS items_type, j.items
    FROM pending
),
fields AS (
    SELECT tenant, modified_at, payload_hash, id_type, trim(mg_scalar_text(id_type, id_s)) AS native_id,
           increment_type, mg_scalar_text(increment_type, increment_s) AS increment_id,
           state_s AS state,
           status_type, mg_text(status_type, status_s) AS status,
           mg_time('VARCHAR', created_s) AS created_at, mg_time('VARCHAR', updated_s) AS payload_updated_at,
           upper(currency_s) AS currency,
           email_type, mg_text(email_type, email_s) AS customer_email_text,
           customer_type, mg_scalar_text(customer_type, customer_s) AS customer_id,
           guest_type, guest_text,
           store_type, mg_scalar_text(store_type, store_s) AS store_id,
           coupon_type, mg_text(coupon_type, coupon_s) AS coupon_code,
           mg_amount(subtotal_type, subtotal_s, $number) AS subtotal, mg_amount(discount_type, discount_s, $number) AS discount,
           mg_amount(shipping_discount_type, shipping_discount_s, $number) AS shipping_discount, mg_amount(tax_type, tax_s, $number) AS tax,
           mg_amount(shipping_type, shipping_s, $number) AS shipping, mg_amount(grand_total_type, grand_total_s, $number) AS grand_total,
           billing_type, billing_types, billing_texts,
           items_type,
           CASE WHEN items_type = 'ARRAY'
                THEN list_transform(items, lambda i: lower(i.product_type)) END AS product_types
    FROM typed
),
shaped AS (
    SELECT f.*,
           coalesce(billing_types[1], 'NULL') AS billing_email_type, billing_texts[1] AS billing_email_s,
           coalesce(billing_types[2], 'NULL') AS phone_type, mg_text(billing_types[2], billing_texts[2]) AS phone,
           coalesce(billing_types[3], 'NULL') AS region_type, mg_text(billing_types[3], billing_texts[3]) AS phone_region,
           CASE guest_type WHEN 'NULL' THEN FALSE WHEN 'BOOLEAN' THEN guest_text = 'true'
                           WHEN 'VARCHAR' THEN guest_text <> '' WHEN 'UBIGINT' THEN guest_text <> '0'
                           WHEN 'BIGINT' THEN guest_text <> '0' END
           OR customer_type = 'NULL' OR customer_id = '' OR (customer_type IN ('UBIGINT', 'BIGINT') AND customer_id = '0') AS is_guest
    FROM fields f
),
mapped AS (
    SELECT *,
           coalesce(mg_email(customer_email_text), mg_email(mg_text(billing_email_type, billing_email_s))) AS email,
           CAST(greatest(subtotal - (abs(discount) - abs(shipping_discount)), 0) AS DECIMAL(18, 4)) AS eligible
    FROM shaped
)
SELECT 'magento:' || tenant || ':' || native_id AS order_key, 'magento' AS platform, tenant, native_id AS source_id,
       CASE WHEN increment_type = 'NULL' OR increment_id = '' OR (increment_type <> 'VARCHAR' AND increment_id = '0')
            THEN native_id ELSE increment_id END AS order_number,
       'magento:' || tenant || ':' || coalesce(store_id, 'default') AS store_key,
       created_at, modified_at AS updated_at, payload_hash,
       CASE WHEN coalesce(status, '') = '' THEN state ELSE status END AS status,
       CASE state WHEN 'processing' THEN 'paid' WHEN 'complete' THEN 'fulfilled' WHEN 'canceled' THEN 'canceled'
                  WHEN 'closed' THEN 'refunded' ELSE 'pending' END AS signal,
       email,
       CASE WHEN is_guest THEN NULL ELSE 'magento:' || tenant || ':' || customer_id END AS customer_key,
       currency,
       CAST(round(subtotal * $scale) AS BIGINT) AS subtotal_minor,
       CAST(round(abs(discount) * $scale) AS BIGINT) AS discount_minor,
       CAST(round(tax * $scale) AS BIGINT) AS tax_minor,
       CAST(round(shipping * $scale) AS BIGINT) AS shipping_minor,
       CAST(round(grand_total * $scale) AS BIGINT) AS grand_total_minor,
       CAST(round(eligible * $scale) AS BIGINT) AS eligible_minor,
       currency AS calc_currency,
       CAST(round(eligible * $scale) AS BIGINT) AS calc_eligible_minor,
       1 AS fx_rate, 1 AS calc_rate, 1 AS to_program_factor,
       phone, phone_region,
       CASE WHEN trim(coupon_code) <> '' THEN upper(trim(coupon_code)) END AS discount_codes,
       '' AS excluded_item_ids,   -- sql_ok: no line of an excluded product type
       id_type IN ('UBIGINT', 'BIGINT', 'VARCHAR') AND native_id <> '' AND mg_ascii(native_id)
       AND increment_type IN ('NULL', 'UBIGINT', 'BIGINT', 'VARCHAR')
       AND state IN ('new', 'pending_payment', 'payment_review', 'holded', 'processing', 'complete', 'canceled', 'closed')
       AND status_type IN ('NULL', 'VARCHAR')
       AND created_at IS NOT NULL AND payload_updated_at IS NOT NULL
       AND currency = $currency
       AND email_type IN ('NULL', 'VARCHAR') AND (email_type = 'NULL' OR mg_ascii(customer_email_text))
       AND customer_type IN ('NULL', 'UBIGINT', 'BIGINT', 'VARCHAR') AND guest_type IN ('NULL', 'BOOLEAN', 'VARCHAR', 'UBIGINT', 'BIGINT')
       AND store_type IN ('NULL', 'UBIGINT', 'BIGINT', 'VARCHAR')
       AND coupon_type IN ('NULL', 'VARCHAR') AND (coupon_type = 'NULL' OR mg_ascii(coupon_code))
       AND subtotal >= 0 AND tax >= 0 AND shipping >= 0 AND grand_total >= 0
       AND discount IS NOT NULL AND shipping_discount IS NOT NULL
       AND billing_type IN ('NULL', 'OBJECT')
       AND billing_email_type IN ('NULL', 'VARCHAR') AND (billing_email_type = 'NULL' OR mg_ascii(billing_email_s))
       AND phone_type IN ('NULL', 'VARCHAR') AND region_type IN ('NULL', 'VARCHAR')
       AND (email IS NOT NULL OR NOT is_guest)
       AND (items_type = 'NULL' OR (items_type = 'ARRAY' AND NOT list_has_any(product_types, CAST($excluded AS VARCHAR[])))) AS sql_ok
FROM mapped
) WHERE sql_ok
