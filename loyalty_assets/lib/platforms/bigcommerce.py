"""BigCommerce v2 orders, v3 refunds and v3 customers onto canonical records (RULES.md §2–§4).

Order money is 4-decimal strings in the transactional currency (`default_currency_code`); refund
money is JSON numbers. Guests have `customer_id: 0` and only a billing email.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from email.utils import parsedate_to_datetime
from fractions import Fraction

from loyalty_assets.lib.money import FxTable, to_minor
from loyalty_assets.lib.platforms.common import (
    amount,
    conversion,
    excluded,
    id_value,
    iso_time,
    known_currency,
    native_id,
)
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import (
    CustomerVersion,
    OrderVersion,
    RecordError,
    RefundVersion,
    join_codes,
    normalize_email,
)

PLATFORM = "bigcommerce"
STATUS_SIGNAL = {
    0: "pending", 1: "pending", 7: "pending", 12: "pending",
    3: "paid", 8: "paid", 9: "paid", 11: "paid", 13: "paid", 14: "paid",
    2: "fulfilled", 10: "fulfilled",
    5: "canceled", 6: "canceled",
    4: "refunded",
}


def rfc2822_time(value: object, field: str):
    if not isinstance(value, str) or not value.strip():
        raise RecordError("malformed_record", f"{field} is missing or not text: {value!r}")
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return iso_time(value, field)


def _products(payload: dict) -> list[dict]:
    products = payload.get("products")
    return [p for p in products if isinstance(p, dict)] if isinstance(products, list) else []


def _decimal(value: Fraction) -> Decimal:
    """An exact fraction as a Decimal of 60 digits: exact when it ends, as a half cent does."""
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(value.numerator) / Decimal(value.denominator)


def _line_after_discount(product: dict) -> Decimal:
    discounts = sum((amount(d, "amount") for d in product.get("applied_discounts") or [] if isinstance(d, dict)),
                    Decimal(0))
    return amount(product, "total_ex_tax") - discounts


def map_order(payload: dict, tenant: str, program: Program, fx: FxTable) -> OrderVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "order is not a JSON object")
    oid = native_id(payload, "id")
    try:
        status_id = int(payload.get("status_id"))
    except (TypeError, ValueError) as exc:
        raise RecordError("unknown_status", f"status_id {payload.get('status_id')!r}") from exc
    if status_id not in STATUS_SIGNAL:
        raise RecordError("unknown_status", f"unknown BigCommerce status_id {status_id} ({payload.get('status')!r})")
    created_at = rfc2822_time(payload.get("date_created"), "date_created")
    updated_at = rfc2822_time(payload.get("date_modified"), "date_modified")
    currency = known_currency(payload.get("default_currency_code") or payload.get("currency_code"),
                              "default_currency_code")
    email = normalize_email((payload.get("billing_address") or {}).get("email"))
    customer_id = id_value(payload.get("customer_id"), "customer_id")
    customer_key = None if customer_id in (None, 0, "0", "") else f"{PLATFORM}:{tenant}:{customer_id}"
    if email is None and customer_key is None:
        raise RecordError("missing_email", "guest order without billing_address.email")

    subtotal = amount(payload, "subtotal_ex_tax")
    discount = amount(payload, "discount_amount") + amount(payload, "coupon_discount")
    eligible = subtotal - discount
    for product in _products(payload):
        if not product.get("parent_order_product_id") and excluded(program, product.get("type")):
            eligible -= _line_after_discount(product)
    eligible = max(eligible, Decimal(0))
    store_rate = payload.get("store_default_to_transactional_exchange_rate")
    conv = conversion(
        program, fx, currency, created_at,
        store_default_currency=str(payload.get("store_default_currency_code") or "").upper() or None,
        store_default_rate=amount(payload, "store_default_to_transactional_exchange_rate") if store_rate else None,
    )
    return OrderVersion(
        order_key=f"{PLATFORM}:{tenant}:{oid}",
        platform=PLATFORM,
        tenant=tenant,
        native_id=oid,
        order_number=oid,
        store_key=f"{PLATFORM}:{tenant}:{payload.get('channel_id') or 1}",
        created_at=created_at,
        updated_at=updated_at,
        status=str(payload.get("status") or status_id),
        signal=STATUS_SIGNAL[status_id],
        email=email,
        customer_key=customer_key,
        currency=currency,
        subtotal_minor=to_minor(subtotal, currency),
        discount_minor=to_minor(discount, currency),
        tax_minor=to_minor(amount(payload, "total_tax"), currency),
        shipping_minor=to_minor(amount(payload, "shipping_cost_ex_tax"), currency),
        grand_total_minor=to_minor(amount(payload, "total_inc_tax"), currency),
        eligible_minor=to_minor(eligible, currency),
        calc_currency=currency,
        calc_eligible_minor=to_minor(eligible, currency),
        fx_rate=conv.fx_rate,
        calc_rate=conv.calc_rate,
        calc_divisor=conv.calc_divisor,
        phone=(payload.get("billing_address") or {}).get("phone"),
        phone_region=(payload.get("billing_address") or {}).get("country_iso2"),
        # coupons are a sub-resource; an export may carry them inline
        discount_codes=join_codes(c.get("code") for c in payload.get("coupons") or [] if isinstance(c, dict)),
    )


def refund_order_id(refund: dict) -> str:
    return native_id(refund, "order_id")


def map_refund(refund: dict, tenant: str, program: Program, order: dict | None) -> list[RefundVersion]:
    """One refund: the sum of its PRODUCT items, tax-exclusive, excluded product types left out."""
    if not isinstance(refund, dict):
        raise RecordError("malformed_record", "refund is not a JSON object")
    rid = native_id(refund, "id")
    order_id = refund_order_id(refund)
    created = iso_time(refund.get("created"), "created")
    order = order if isinstance(order, dict) else {}
    currency = known_currency(order.get("default_currency_code") or order.get("currency_code") or "USD",
                              "default_currency_code")
    products = {str(p.get("id")): p for p in _products(order)}
    inclusive = bool(order.get("is_tax_inclusive_pricing"))
    # exact fractions, rounded once: a quotient taken first (28 digits) put an exact half cent just
    # below it (11.75 × 22.12 / 26.32 = 9.875 gave 987, not 988)
    ratio = Fraction(1)
    if inclusive and amount(order, "subtotal_inc_tax") > 0:
        ratio = Fraction(amount(order, "subtotal_ex_tax")) / Fraction(amount(order, "subtotal_inc_tax"))
    total = Fraction(0)
    for item in refund.get("items") or []:
        if not isinstance(item, dict) or item.get("item_type") != "PRODUCT":
            continue
        product = products.get(str(item.get("item_id")))
        if product is not None and excluded(program, product.get("type")):
            continue
        if item.get("requested_amount") is not None:
            total += Fraction(amount(item, "requested_amount")) * ratio
        else:
            if product is None:
                raise RecordError("unknown_order", f"refund {rid} item {item.get('item_id')} has no amount and no order line")
            qty = amount(item, "quantity")
            ordered = amount(product, "quantity") or Decimal(1)
            total += Fraction(qty) * Fraction(_line_after_discount(product)) / Fraction(ordered)
    return [
        RefundVersion(
            refund_key=f"{PLATFORM}:{tenant}:refund:{rid}",
            order_key=f"{PLATFORM}:{tenant}:{order_id}",
            platform=PLATFORM,
            native_id=rid,
            updated_at=created,
            counts=True,
            currency=currency,
            refunded_eligible_minor=to_minor(_decimal(max(total, Fraction(0))), currency),  # half-up once
            base_currency=None,
            refunded_eligible_base_minor=None,
        )
    ]


def map_customer(payload: dict, tenant: str) -> CustomerVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "customer is not a JSON object")
    cid = native_id(payload, "id")
    created = payload.get("date_created")
    return CustomerVersion(
        customer_key=f"{PLATFORM}:{tenant}:{cid}",
        platform=PLATFORM,
        native_id=cid,
        email=normalize_email(payload.get("email")),
        updated_at=iso_time(payload.get("date_modified") or created, "date_modified"),
        created_at=iso_time(created, "date_created") if created else None,
    )
