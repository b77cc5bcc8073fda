"""The benchmark's data (`loyalty bench`): native order and refund payloads of each platform at a
given scale, drawn with numpy and landed by DuckDB's `json_object` in bulk (setup, not timed), and the
single-pass baseline query over the landed payloads.

The orders of a history go to the platforms in turn by order id, so a shopper buys on several of them
under one e-mail address (identity matches them). Each platform's payloads have the shape its list
endpoint returns and its mapper reads (`lib/platforms/`): Magento 2 orders and credit memos, BigCommerce
v2 orders and v3 refunds, commercetools orders and payments with Refund transactions, SFCC (SCAPI)
orders, which have no refund resource: an SFCC order drawn for a refund gets none. Only the plain
Magento shapes are mapped set-based in SQL; the other platforms go through their Python mappers, as in
production (about 50 µs a version).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa

from loyalty_assets.lib.warehouse import registered

PLATFORMS = ("magento", "bigcommerce", "commercetools", "sfcc")
TENANTS = {"magento": "default", "bigcommerce": "bench1", "commercetools": "bench-project", "sfcc": "f_ecom_bench_prd"}
# a record's native id from the bench's integer order id, as SQL (commercetools ids are UUIDs, SFCC
# order numbers zero-padded text)
RECORD_ID_SQL = {
    "magento": "CAST({id} AS VARCHAR)",
    "bigcommerce": "CAST({id} AS VARCHAR)",
    "commercetools": "printf('00000000-0000-4000-8000-%012d', {id})",
    "sfcc": "printf('%08d', {id})",
}
CT_PAYMENT_ID_SQL = "printf('00000000-0000-4000-9000-%012d', {id})"
MEMO_ID_BASE = 50_000_000
INCREMENTAL_ORDER_ID_BASE = 90_000_000
INCREMENTAL_MEMO_ID_BASE = 95_000_000
# The history's first day. A year from 1 July makes the incremental day an ordinary one; a year from
# 1 January makes it 1 January, when calendar-year tiers re-evaluate every member (RULES.md §7): a
# time-driven change whose cost follows the members, not the delta (`--first-day 2025-01-01`).
FIRST_DAY = dt.date(2025, 7, 1)

ISO = "%Y-%m-%dT%H:%M:%S.000Z"  # commercetools, SFCC
RFC2822 = "%a, %d %b %Y %H:%M:%S +0000"  # BigCommerce v2 orders


def parse_platforms(text: str | None) -> list[str]:
    """`--platforms magento,sfcc` as a list in the given order; ValueError names any other platform."""
    chosen = [p.strip().lower() for p in str(text or "magento").split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PLATFORMS]
    if unknown or not chosen:
        raise ValueError(f"platforms not supported by the benchmark: {', '.join(unknown) or '(none)'} "
                         f"(supported: {', '.join(PLATFORMS)})")
    return list(dict.fromkeys(chosen))


def _epoch(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def _registered(member: np.ndarray) -> np.ndarray:
    """About 60% of members have an account (the same one on every order of a platform)."""
    return (member * 7919 + 13) % 10 < 6


def platform_of(ids: np.ndarray, platforms: list[str]) -> np.ndarray:
    """Each order id's platform, by turns (an index into `platforms`)."""
    return (np.asarray(ids, dtype=np.int64) - 1) % len(platforms)


def _order_frame(ids, member, created, updated, state, subtotal, discount, shipping, tax, shout) -> pa.Table:
    return pa.table({
        "entity_id": pa.array(ids, pa.int64()),
        "member": pa.array(member, pa.int64()),
        "registered": pa.array(_registered(member)),
        "created_s": pa.array(created, pa.int64()),
        "updated_s": pa.array(updated, pa.int64()),
        "state": pa.array(state),
        "subtotal_c": pa.array(subtotal, pa.int64()),
        "discount_c": pa.array(discount, pa.int64()),
        "shipping_c": pa.array(shipping, pa.int64()),
        "tax_c": pa.array(tax, pa.int64()),
        "shout": pa.array(shout),
    })  # fmt: skip


# ---- where every payload goes

_INSERT = """
INSERT INTO raw_records BY NAME
SELECT '{source}' AS source, '{tenant}' AS tenant, record_id, updated_ts AS modified_at,
       substr(md5(payload), 1, 16) AS payload_hash, CAST(payload AS JSON) AS payload,
       CAST(timezone($tz, updated_ts) AS DATE) AS partition_day, now() AS fetched_at
FROM p
ON CONFLICT DO NOTHING
"""


def _insert(source: str) -> str:
    return _INSERT.format(source=source, tenant=TENANTS[source.split(".")[0]])


# ---- Magento 2: orders (state, status and amounts as the REST API gives them) and credit memos

MAGENTO_ORDER_SQL = """
WITH o AS (
    SELECT entity_id, state, registered,
           strftime(to_timestamp(created_s), '%Y-%m-%d %H:%M:%S') AS created_txt,
           to_timestamp(updated_s) AS updated_ts,
           strftime(to_timestamp(updated_s), '%Y-%m-%d %H:%M:%S') AS updated_txt,
           CASE WHEN shout THEN ' ' || upper(printf('member%07d@example.com', member))
                ELSE printf('member%07d@example.com', member) END AS email,
           CASE WHEN registered THEN 1000000 + member END AS customer_id,
           CAST(subtotal_c AS DECIMAL(18, 0)) * 0.01 AS sub,
           CAST(discount_c AS DECIMAL(18, 0)) * 0.01 AS disc,
           CAST(shipping_c AS DECIMAL(18, 0)) * 0.01 AS ship,
           CAST(tax_c AS DECIMAL(18, 0)) * 0.01 AS tax
    FROM {frame}
),
p AS (
    SELECT o.*, CAST(entity_id AS VARCHAR) AS record_id, CAST(json_merge_patch(json_object(
        'entity_id', entity_id, 'increment_id', lpad(CAST(entity_id AS VARCHAR), 9, '0'),
        'state', state, 'status', state, 'created_at', created_txt, 'updated_at', updated_txt,
        'order_currency_code', 'USD', 'base_currency_code', 'USD', 'base_to_order_rate', 1, 'store_id', 1,
        'subtotal', CAST(sub AS DECIMAL(18, 2)), 'base_subtotal', CAST(sub AS DECIMAL(18, 2)),
        'discount_amount', CAST(-disc AS DECIMAL(18, 2)), 'base_discount_amount', CAST(-disc AS DECIMAL(18, 2)),
        'shipping_amount', CAST(ship AS DECIMAL(18, 2)), 'base_shipping_amount', CAST(ship AS DECIMAL(18, 2)),
        'tax_amount', CAST(tax AS DECIMAL(18, 2)), 'base_tax_amount', CAST(tax AS DECIMAL(18, 2)),
        'grand_total', CAST(sub - disc + ship + tax AS DECIMAL(18, 2)),
        'base_grand_total', CAST(sub - disc + ship + tax AS DECIMAL(18, 2)),
        'customer_is_guest', CASE WHEN registered THEN 0 ELSE 1 END,
        'customer_group_id', CASE WHEN registered THEN 1 ELSE 0 END,
        'items', [json_object('item_id', entity_id * 10, 'sku', 'SKU-' || (entity_id % 997), 'product_type', 'simple',
                              'qty_ordered', 1, 'row_total', CAST(sub AS DECIMAL(18, 2)),
                              'base_row_total', CAST(sub AS DECIMAL(18, 2)),
                              'discount_amount', CAST(disc AS DECIMAL(18, 2)),
                              'base_discount_amount', CAST(disc AS DECIMAL(18, 2)))],
        'billing_address', json_object('email', email),
        'customer_email', email),
        CASE WHEN registered THEN json_object('customer_id', customer_id) ELSE '{{}}'::JSON END) AS VARCHAR) AS payload
    FROM o
)
""" + _insert("magento.orders")

MAGENTO_MEMO_SQL = """
WITH m AS (
    SELECT memo_id, order_id, to_timestamp(updated_s) AS updated_ts,
           strftime(to_timestamp(updated_s), '%Y-%m-%d %H:%M:%S') AS updated_txt,
           CAST(refund_c AS DECIMAL(18, 0)) * 0.01 AS sub
    FROM {frame}
),
p AS (
    SELECT m.*, CAST(memo_id AS VARCHAR) AS record_id, CAST(json_object(
        'entity_id', memo_id, 'order_id', order_id, 'increment_id', 'CM' || lpad(CAST(memo_id AS VARCHAR), 7, '0'),
        'state', 2, 'created_at', updated_txt, 'updated_at', updated_txt,
        'order_currency_code', 'USD', 'base_currency_code', 'USD', 'base_to_order_rate', 1,
        'subtotal', CAST(sub AS DECIMAL(18, 2)), 'base_subtotal', CAST(sub AS DECIMAL(18, 2)),
        'discount_amount', CAST(0 AS DECIMAL(18, 2)), 'base_discount_amount', CAST(0 AS DECIMAL(18, 2)),
        'shipping_amount', CAST(0 AS DECIMAL(18, 2)), 'adjustment_positive', CAST(0 AS DECIMAL(18, 2)),
        'adjustment_negative', CAST(0 AS DECIMAL(18, 2)), 'grand_total', CAST(sub AS DECIMAL(18, 2)),
        'items', []) AS VARCHAR) AS payload
    FROM m
)
""" + _insert("magento.creditmemos")


# ---- the other platforms: what every order SQL starts from

_ORDER_BASE = """
WITH o AS (
    SELECT entity_id, state, registered, member, to_timestamp(created_s) AS created_ts,
           to_timestamp(updated_s) AS updated_ts,
           CASE WHEN shout THEN ' ' || upper(printf('member%07d@example.com', member))
                ELSE printf('member%07d@example.com', member) END AS email,
           subtotal_c, discount_c, shipping_c, tax_c,
           subtotal_c - discount_c + shipping_c AS net_c, subtotal_c - discount_c + shipping_c + tax_c AS gross_c,
           CAST(subtotal_c AS DECIMAL(18, 0)) * 0.01 AS sub, CAST(discount_c AS DECIMAL(18, 0)) * 0.01 AS disc,
           CAST(shipping_c AS DECIMAL(18, 0)) * 0.01 AS ship, CAST(tax_c AS DECIMAL(18, 0)) * 0.01 AS tax
    FROM {frame}
),"""

def _ct_money(cents: str) -> str:
    return f"json_object('type', 'centPrecision', 'currencyCode', 'USD', 'centAmount', {cents}, 'fractionDigits', 2)"


def _bc_text(amount: str) -> str:
    """BigCommerce v2 money: a string with 4 decimals."""
    return f"CAST(CAST({amount} AS DECIMAL(18, 4)) AS VARCHAR)"


BIGCOMMERCE_ORDER_SQL = _ORDER_BASE + f"""
p AS (
    SELECT CAST(entity_id AS VARCHAR) AS record_id, updated_ts, CAST(json_object(
        'id', entity_id, 'customer_id', CASE WHEN registered THEN 1000000 + member ELSE 0 END,
        'date_created', strftime(created_ts, '{RFC2822}'), 'date_modified', strftime(updated_ts, '{RFC2822}'),
        'status_id', CASE state WHEN 'new' THEN 1 WHEN 'processing' THEN 11 ELSE 10 END,
        'status', CASE state WHEN 'new' THEN 'Pending' WHEN 'processing' THEN 'Awaiting Fulfillment' ELSE 'Completed' END,
        'subtotal_ex_tax', {_bc_text('sub')}, 'subtotal_inc_tax', {_bc_text('sub + tax')}, 'subtotal_tax', {_bc_text('tax')},
        'base_shipping_cost', {_bc_text('ship')}, 'shipping_cost_ex_tax', {_bc_text('ship')},
        'shipping_cost_inc_tax', {_bc_text('ship')}, 'shipping_cost_tax', {_bc_text('0')},
        'total_ex_tax', {_bc_text('sub - disc + ship')}, 'total_inc_tax', {_bc_text('sub - disc + ship + tax')},
        'total_tax', {_bc_text('tax')}, 'discount_amount', {_bc_text('disc')}, 'coupon_discount', {_bc_text('0')},
        'items_total', 1, 'items_shipped', CASE WHEN state = 'complete' THEN 1 ELSE 0 END,
        'payment_method', 'Credit Card', 'payment_status', CASE WHEN state = 'new' THEN '' ELSE 'captured' END,
        'currency_code', 'USD', 'default_currency_code', 'USD', 'store_default_currency_code', 'USD',
        'currency_exchange_rate', '1.0000000000', 'store_default_to_transactional_exchange_rate', '1.0000000000',
        'is_tax_inclusive_pricing', false, 'channel_id', 1, 'order_source', 'www',
        'billing_address', json_object('first_name', 'Bench', 'last_name', 'Shopper', 'email', email, 'country_iso2', 'US'),
        'products', json_object('url', 'https://api.bigcommerce.com/stores/bench1/v2/orders/' || entity_id || '/products',
                                'resource', '/orders/' || entity_id || '/products')) AS VARCHAR) AS payload
    FROM o
)""" + _insert("bigcommerce.orders")

COMMERCETOOLS_ORDER_SQL = _ORDER_BASE + f"""
p AS (
    SELECT {RECORD_ID_SQL['commercetools'].format(id='entity_id')} AS record_id, updated_ts, CAST(json_merge_patch(json_object(
        'id', {RECORD_ID_SQL['commercetools'].format(id='entity_id')},
        'version', CASE state WHEN 'new' THEN 1 WHEN 'processing' THEN 2 ELSE 3 END,
        'orderNumber', printf('CT%09d', entity_id),
        'createdAt', strftime(created_ts, '{ISO}'), 'lastModifiedAt', strftime(updated_ts, '{ISO}'),
        'customerEmail', email, 'country', 'US', 'store', json_object('typeId', 'store', 'key', 'bench-store'),
        'totalPrice', {_ct_money('gross_c')},
        'taxedPrice', json_object('totalNet', {_ct_money('net_c')}, 'totalGross', {_ct_money('gross_c')},
                                  'totalTax', {_ct_money('tax_c')}),
        'shippingInfo', json_object('shippingMethodName', 'Standard', 'price', {_ct_money('shipping_c')}),
        'discountOnTotalPrice', json_object('discountedAmount', {_ct_money('discount_c')}),
        'lineItems', [json_object('id', printf('00000000-0000-4000-c000-%012d', entity_id), 'productId', 'bench-product',
                                  'name', json_object('en', 'Bench item'), 'quantity', 1,
                                  'variant', json_object('id', 1, 'sku', 'SKU-' || (entity_id % 997)),
                                  'price', json_object('value', {_ct_money('subtotal_c')}),
                                  'totalPrice', {_ct_money('subtotal_c')})],
        'orderState', CASE state WHEN 'new' THEN 'Open' WHEN 'processing' THEN 'Confirmed' ELSE 'Complete' END,
        'paymentState', CASE WHEN state = 'new' THEN 'Pending' ELSE 'Paid' END,
        'shipmentState', CASE WHEN state = 'complete' THEN 'Delivered' ELSE 'Pending' END,
        'paymentInfo', json_object('payments', [json_object('typeId', 'payment',
                                                            'id', {CT_PAYMENT_ID_SQL.format(id='entity_id')})])),
        CASE WHEN registered THEN json_object('customerId', printf('00000000-0000-4000-d000-%012d', member))
             ELSE '{{{{}}}}'::JSON END) AS VARCHAR) AS payload
    FROM o
)""" + _insert("commercetools.orders")

SFCC_ORDER_SQL = _ORDER_BASE + f"""
p AS (
    SELECT {RECORD_ID_SQL['sfcc'].format(id='entity_id')} AS record_id, updated_ts, CAST(json_object(
        'orderNo', {RECORD_ID_SQL['sfcc'].format(id='entity_id')}, 'siteId', 'RefArch', 'currency', 'USD',
        'creationDate', strftime(created_ts, '{ISO}'), 'lastModified', strftime(updated_ts, '{ISO}'),
        'customerInfo', CASE WHEN registered
            THEN json_object('customerId', 'bench' || member, 'customerNo', printf('%08d', member), 'email', email)
            ELSE json_object('email', email) END,
        'status', CASE state WHEN 'new' THEN 'new' WHEN 'processing' THEN 'open' ELSE 'completed' END,
        'paymentStatus', CASE WHEN state = 'new' THEN 'not_paid' ELSE 'paid' END,
        'shippingStatus', CASE WHEN state = 'complete' THEN 'shipped' ELSE 'not_shipped' END,
        'confirmationStatus', 'confirmed', 'exportStatus', 'not_exported', 'taxation', 'net',
        'productSubTotal', CAST(sub AS DECIMAL(18, 2)), 'productTotal', CAST(sub AS DECIMAL(18, 2)),
        'merchandizeTotalTax', CAST(tax AS DECIMAL(18, 2)), 'adjustedMerchandizeTotalTax', CAST(tax AS DECIMAL(18, 2)),
        'shippingTotal', CAST(ship AS DECIMAL(18, 2)), 'shippingTotalTax', CAST(0 AS DECIMAL(18, 2)),
        'taxTotal', CAST(tax AS DECIMAL(18, 2)), 'orderTotal', CAST(sub - disc + ship + tax AS DECIMAL(18, 2)),
        'orderPriceAdjustments', CASE WHEN discount_c > 0
            THEN [json_object('priceAdjustmentId', 'bench-adj-' || entity_id, 'promotionId', 'bench-order-discount',
                              'itemText', 'Order discount', 'price', CAST(-disc AS DECIMAL(18, 2)))]
            ELSE CAST([] AS JSON[]) END,
        'productItems', [json_object('itemId', 'bench-item-' || entity_id, 'productId', 'SKU-' || (entity_id % 997),
                                     'quantity', 1, 'price', CAST(sub AS DECIMAL(18, 2)), 'tax', CAST(tax AS DECIMAL(18, 2)))],
        'billingAddress', json_object('firstName', 'Bench', 'lastName', 'Shopper', 'countryCode', 'US')) AS VARCHAR) AS payload
    FROM o
)""" + _insert("sfcc.orders")

ORDER_SQL = {"magento": MAGENTO_ORDER_SQL, "bigcommerce": BIGCOMMERCE_ORDER_SQL,
             "commercetools": COMMERCETOOLS_ORDER_SQL, "sfcc": SFCC_ORDER_SQL}

# refunds: frame (memo_id, order_id, updated_s, refund_c), refund_c in the order's minor units
BIGCOMMERCE_REFUND_SQL = """
WITH m AS (SELECT memo_id, order_id, to_timestamp(updated_s) AS updated_ts, CAST(refund_c AS DECIMAL(18, 0)) * 0.01 AS amt
           FROM {frame}),
p AS (
    SELECT CAST(memo_id AS VARCHAR) AS record_id, updated_ts, CAST(json_object(
        'id', memo_id, 'order_id', order_id, 'user_id', 0, 'created', strftime(updated_ts, '%Y-%m-%dT%H:%M:%S+00:00'),
        'reason', 'Bench refund', 'total_amount', CAST(amt AS DECIMAL(18, 2)), 'total_tax', CAST(0 AS DECIMAL(18, 2)),
        'uses_merchant_override_values', false,
        'items', [json_object('item_type', 'PRODUCT', 'item_id', order_id * 10, 'quantity', 1,
                              'requested_amount', CAST(amt AS DECIMAL(18, 2)))],
        'payments', [json_object('id', memo_id, 'provider_id', 'storecredit', 'amount', CAST(amt AS DECIMAL(18, 2)),
                                 'offline', false, 'is_declined', false)]) AS VARCHAR) AS payload
    FROM m
)""" + _insert("bigcommerce.refunds")

# A payment keeps every transaction: a refund is appended to the payment's latest version (or to its
# charge, for the first), and the payment's lastModifiedAt moves (RULES.md §2).
COMMERCETOOLS_PAYMENT_SQL = f"""
WITH m AS (SELECT memo_id, order_id, to_timestamp(updated_s) AS updated_ts, refund_c,
                  {CT_PAYMENT_ID_SQL.format(id='order_id')} AS record_id,
                  {RECORD_ID_SQL['commercetools'].format(id='order_id')} AS order_record_id
           FROM {{frame}}),
orders AS (
    SELECT record_id AS order_record_id, arg_max(payload, modified_at) AS payload FROM raw_records
    WHERE source = 'commercetools.orders' AND record_id IN (SELECT order_record_id FROM m) GROUP BY record_id
),
before AS (
    SELECT record_id, arg_max(payload, modified_at) AS payload FROM raw_records
    WHERE source = 'commercetools.payments' AND record_id IN (SELECT record_id FROM m) GROUP BY record_id
),
p AS (
    SELECT m.record_id, m.updated_ts, CAST(json_object(
        'id', m.record_id, 'version', 2, 'createdAt', json_extract_string(o.payload, '$.createdAt'),
        'lastModifiedAt', strftime(m.updated_ts, '{ISO}'),
        'amountPlanned', json_extract(o.payload, '$.totalPrice'),
        'paymentMethodInfo', json_object('paymentInterface', 'bench-psp', 'method', 'CREDIT_CARD'),
        'transactions', list_append(
            coalesce(CAST(json_extract(b.payload, '$.transactions') AS JSON[]),
                     [json_object('id', printf('00000000-0000-4000-a000-%012d', m.order_id), 'type', 'Charge',
                                  'state', 'Success', 'amount', json_extract(o.payload, '$.totalPrice'),
                                  'timestamp', json_extract_string(o.payload, '$.createdAt'))]),
            json_object('id', printf('00000000-0000-4000-b000-%012d', m.memo_id), 'type', 'Refund', 'state', 'Success',
                        'amount', {_ct_money('m.refund_c')}, 'timestamp', strftime(m.updated_ts, '{ISO}')))) AS VARCHAR) AS payload
    FROM m JOIN orders o USING (order_record_id) LEFT JOIN before b USING (record_id)
)""" + _insert("commercetools.payments")

REFUND_SQL = {"magento": MAGENTO_MEMO_SQL, "bigcommerce": BIGCOMMERCE_REFUND_SQL,
              "commercetools": COMMERCETOOLS_PAYMENT_SQL}

# an existing order moving to complete (fulfilled) at updated_ts, merged into its latest payload:
# frame (order_id, updated_s)
_COMPLETE_PATCH = {
    "magento": "json_object('state', 'complete', 'status', 'complete', 'updated_at', strftime(updated_ts, '%Y-%m-%d %H:%M:%S'))",
    "bigcommerce": f"json_object('status_id', 10, 'status', 'Completed', 'date_modified', strftime(updated_ts, '{RFC2822}'))",
    "commercetools": f"json_object('orderState', 'Complete', 'paymentState', 'Paid', 'shipmentState', 'Delivered', "
                     f"'lastModifiedAt', strftime(updated_ts, '{ISO}'))",
    "sfcc": f"json_object('status', 'completed', 'paymentStatus', 'paid', 'shippingStatus', 'shipped', "
            f"'lastModified', strftime(updated_ts, '{ISO}'))",
}
COMPLETE_SQL = {name: f"""
WITH d AS (SELECT {RECORD_ID_SQL[name].format(id='order_id')} AS record_id, to_timestamp(updated_s) AS updated_ts
           FROM {{frame}}),
latest AS (
    SELECT record_id, arg_max(payload, modified_at) AS payload FROM raw_records
    WHERE source = '{name}.orders' AND record_id IN (SELECT record_id FROM d) GROUP BY record_id
),
p AS (
    SELECT d.record_id, d.updated_ts, CAST(json_merge_patch(l.payload, {patch}) AS VARCHAR) AS payload
    FROM d JOIN latest l USING (record_id)
)""" + _insert(f"{name}.orders") for name, patch in _COMPLETE_PATCH.items()}


def _land(conn: duckdb.DuckDBPyConnection, sql: str, frame: pa.Table, tz: str) -> int:
    if frame.num_rows == 0:
        return 0
    with registered(conn, "_bench_frame", frame):
        return int(conn.execute(sql.format(frame="_bench_frame"), {"tz": tz}).fetchone()[0])


def _land_by_platform(conn, sqls: dict, frame: pa.Table, platform: np.ndarray, platforms: list[str], tz: str) -> int:
    """Each platform's rows of `frame` through its SQL; platforms without one (SFCC refunds) get none."""
    landed = 0
    for i, name in enumerate(platforms):
        if name in sqls:
            landed += _land(conn, sqls[name], frame.filter(pa.array(platform == i)), tz)
    return landed


def land_history(
    conn: duckdb.DuckDBPyConnection,
    *,
    orders: int,
    members: int,
    days: int,
    seed: int,
    memo_rate: float,
    tz: str,
    first_day: dt.date = FIRST_DAY,
    platforms: list[str] | tuple[str, ...] = ("magento",),
) -> dict:
    """N orders over `days` days from `first_day`: 50% one version (processing), 30% new -> processing,
    20% new -> processing -> complete; `memo_rate` of orders get a refund (Magento: a credit memo, state
    2, refunded; BigCommerce: a refund; commercetools: a Refund transaction on the order's payment)."""
    platforms = list(platforms)
    rng = np.random.default_rng(seed)
    n = int(orders)
    start = _epoch(first_day)
    last_second = start + days * 86400 - 1
    ids = np.arange(1, n + 1, dtype=np.int64)
    member = rng.integers(0, members, n)
    created = start + rng.integers(0, days, n) * 86400 + rng.integers(0, 86400 - 7200, n)
    subtotal = rng.integers(1000, 30000, n)
    discounted = rng.random(n) < 0.3
    discount = np.where(discounted, (subtotal * rng.integers(5, 21, n)) // 100, 0)
    shipping = rng.choice(np.array([0, 499, 999]), n)
    tax = (subtotal - discount) * 8 // 100
    versions = rng.choice(np.array([1, 2, 3]), n, p=[0.5, 0.3, 0.2])
    t_paid = np.where(versions > 1, created + rng.integers(60, 3600, n), created)
    t_done = np.minimum(t_paid + rng.integers(3600, 3 * 86400, n), last_second)

    total = int(versions.sum())
    order_idx = np.repeat(np.arange(n), versions)
    first_pos = np.repeat(np.cumsum(versions) - versions, versions)
    pos = np.arange(total) - first_pos  # 0.. within each order
    step = pos + (np.repeat(versions, versions) == 1)
    # step: 0 = new, 1 = processing, 2 = complete (a single-version order starts at processing)
    state = np.array(["new", "processing", "complete"])[step]
    updated = np.select([step == 0, step == 1], [created[order_idx], t_paid[order_idx]], t_done[order_idx])
    shout = rng.random(total) < 0.1
    frame = _order_frame(
        ids[order_idx],
        member[order_idx],
        created[order_idx],
        updated,
        state,
        subtotal[order_idx],
        discount[order_idx],
        shipping[order_idx],
        tax[order_idx],
        shout,
    )
    landed = _land_by_platform(conn, ORDER_SQL, frame, platform_of(ids[order_idx], platforms), platforms, tz)

    n_memo = int(round(n * memo_rate))
    memo_landed = 0
    if n_memo:
        which = rng.choice(n, n_memo, replace=False)
        last_t = np.where(versions == 3, t_done, t_paid)[which]
        memo_t = np.minimum(last_t + rng.integers(3600, 5 * 86400, n_memo), last_second)
        refund = ((subtotal - discount)[which] * rng.integers(20, 101, n_memo)) // 100
        memos = pa.table({
            "memo_id": pa.array(MEMO_ID_BASE + np.arange(1, n_memo + 1), pa.int64()),
            "order_id": pa.array(ids[which], pa.int64()),
            "updated_s": pa.array(memo_t, pa.int64()),
            "refund_c": pa.array(refund, pa.int64()),
        })  # fmt: skip
        memo_landed = _land_by_platform(conn, REFUND_SQL, memos, platform_of(ids[which], platforms), platforms, tz)
    # the history was pulled day by day as it happened: a later day's run reads what it fetched
    conn.execute("UPDATE raw_records SET fetched_at = modified_at")
    return {
        "orders": n,
        "members": int(members),
        "days": int(days),
        "order_versions": landed,
        "credit_memos": memo_landed,
    }


def land_incremental_day(
    conn: duckdb.DuckDBPyConnection,
    *,
    history_orders: int,
    members: int,
    day: dt.date,
    changed: int,
    seed: int,
    tz: str,
    platforms: list[str] | tuple[str, ...] = ("magento",),
) -> dict:
    """One day of `changed` orders on top of a history: 50% new orders, 40% existing orders moving
    to `complete`, 10% refunds on existing orders (none on SFCC's)."""
    platforms = list(platforms)
    rng = np.random.default_rng(seed)
    start = _epoch(day)
    n_new = changed // 2
    n_done = (changed * 4) // 10
    n_memo = changed - n_new - n_done
    ids = INCREMENTAL_ORDER_ID_BASE + np.arange(1, n_new + 1, dtype=np.int64)
    member = np.where(
        rng.random(n_new) < 0.8,
        rng.integers(0, members, n_new),
        members + rng.integers(0, max(1, members // 10), n_new),
    )
    created = start + rng.integers(0, 86400 - 3600, n_new)
    subtotal = rng.integers(1000, 30000, n_new)
    discount = np.where(rng.random(n_new) < 0.3, (subtotal * rng.integers(5, 21, n_new)) // 100, 0)
    shipping = rng.choice(np.array([0, 499, 999]), n_new)
    tax = (subtotal - discount) * 8 // 100
    frame = _order_frame(
        ids,
        member,
        created,
        created,
        np.full(n_new, "processing"),
        subtotal,
        discount,
        shipping,
        tax,
        rng.random(n_new) < 0.1,
    )
    landed = _land_by_platform(conn, ORDER_SQL, frame, platform_of(ids, platforms), platforms, tz)

    existing = rng.choice(np.arange(1, history_orders + 1), n_done + n_memo, replace=False)
    done = pa.table({
        "order_id": pa.array(existing[:n_done], pa.int64()),
        "updated_s": pa.array(start + rng.integers(0, 86400, n_done), pa.int64()),
    })  # fmt: skip
    landed += _land_by_platform(conn, COMPLETE_SQL, done, platform_of(existing[:n_done], platforms), platforms, tz)
    refund_ids = existing[n_done:]
    memos = pa.table({
        "memo_id": pa.array(INCREMENTAL_MEMO_ID_BASE + np.arange(1, n_memo + 1), pa.int64()),
        "order_id": pa.array(refund_ids, pa.int64()),
        "updated_s": pa.array(start + rng.integers(0, 86400, n_memo), pa.int64()),
        "refund_c": pa.array(rng.integers(100, 2000, n_memo), pa.int64()),
    })  # fmt: skip
    memo_landed = _land_by_platform(conn, REFUND_SQL, memos, platform_of(refund_ids, platforms), platforms, tz)
    return {
        "day": day.isoformat(),
        "changed_orders": int(changed),
        "new_orders": int(n_new),
        "status_changes": int(n_done),
        "credit_memos": int(memo_landed),
        "order_versions": landed,
    }


# ---- the baseline: one query over the landed payloads, every shopper's points in a single pass

# per platform: the payload's e-mail, whether its state earns (paid or fulfilled), its eligible amount
_BASELINE_PARTS = {
    "magento": ("coalesce(p ->> 'customer_email', p -> 'billing_address' ->> 'email')",
                "p ->> 'state' IN ('processing', 'complete')",
                "CAST(p ->> 'subtotal' AS DECIMAL(18, 2)) - abs(CAST(p ->> 'discount_amount' AS DECIMAL(18, 2)))"),
    "bigcommerce": ("p -> 'billing_address' ->> 'email'",
                    "CAST(p ->> 'status_id' AS INTEGER) IN (2, 3, 8, 9, 10, 11, 13, 14)",
                    "CAST(p ->> 'subtotal_ex_tax' AS DECIMAL(18, 4)) - CAST(p ->> 'discount_amount' AS DECIMAL(18, 4))"
                    " - CAST(p ->> 'coupon_discount' AS DECIMAL(18, 4))"),
    "commercetools": ("p ->> 'customerEmail'",
                      "p ->> 'orderState' <> 'Cancelled' AND (p ->> 'paymentState' = 'Paid' OR p ->> 'orderState' = 'Complete'"
                      " OR p ->> 'shipmentState' = 'Delivered')",
                      "CAST(CAST(p -> 'taxedPrice' -> 'totalNet' ->> 'centAmount' AS BIGINT)"
                      " - CAST(p -> 'shippingInfo' -> 'price' ->> 'centAmount' AS BIGINT) AS DECIMAL(18, 0)) * 0.01"),
    "sfcc": ("p -> 'customerInfo' ->> 'email'",
             "p ->> 'status' NOT IN ('cancelled', 'failed') AND (p ->> 'paymentStatus' = 'paid' OR p ->> 'shippingStatus' = 'shipped')",
             "CAST(p ->> 'productTotal' AS DECIMAL(18, 2))"
             " + coalesce(CAST(p -> 'orderPriceAdjustments' -> 0 ->> 'price' AS DECIMAL(18, 2)), 0)"),
}

_MG_EMAIL, _MG_EARNS, _MG_ELIGIBLE = _BASELINE_PARTS["magento"]
# Magento alone (the figures of every round): the query as it always was
MAGENTO_BASELINE_SQL = f"""
CREATE OR REPLACE TEMP TABLE bench_baseline AS
WITH latest AS (
    SELECT arg_max(payload, modified_at) AS p
    FROM raw_records WHERE source = 'magento.orders'
    GROUP BY tenant, record_id
)
SELECT lower(trim({_MG_EMAIL})) AS email,
       sum(floor(({_MG_ELIGIBLE}) * CAST($rate AS DECIMAL(18, 6))))::BIGINT AS points
FROM latest
WHERE {_MG_EARNS}
GROUP BY 1
"""


def baseline_sql(platforms: list[str] | tuple[str, ...]) -> str:
    """The baseline query for the platforms landed, one pass over the latest version of each order:
    its eligible amount x rate floored, summed by normalized e-mail (bench_baseline: email, points).
    Each platform's expressions are a branch of one CASE on the source (a UNION ALL of one branch per
    platform read the latest versions once per platform)."""
    if list(platforms) == ["magento"]:
        return MAGENTO_BASELINE_SQL

    def by_source(i: int) -> str:
        return "CASE source " + " ".join(
            f"WHEN '{p}.orders' THEN {_BASELINE_PARTS[p][i]}" for p in platforms) + " END"

    sources = ", ".join(f"'{p}.orders'" for p in platforms)
    return f"""
CREATE OR REPLACE TEMP TABLE bench_baseline AS
WITH latest AS (
    SELECT source, arg_max(payload, modified_at) AS p
    FROM raw_records WHERE source IN ({sources})
    GROUP BY source, tenant, record_id
)
SELECT lower(trim({by_source(0)})) AS email,
       sum(floor(({by_source(2)}) * CAST($rate AS DECIMAL(18, 6))))::BIGINT AS points
FROM latest
WHERE {by_source(1)}
GROUP BY 1
"""
