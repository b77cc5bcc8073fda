"""Salesforce B2C Commerce (SCAPI Orders) onto canonical order records (RULES.md §2–§3).

SCAPI Orders has no refund resource: SFCC refunds are not supported (a cancel is). Amounts are JSON
numbers, read as Decimal from their text.
"""

from __future__ import annotations

from decimal import Decimal

from loyalty_assets.lib.money import FxTable, to_minor
from loyalty_assets.lib.platforms.common import (
    amount,
    conversion,
    id_value,
    iso_time,
    known_currency,
    native_id,
)
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import OrderVersion, RecordError, join_codes, normalize_email

PLATFORM = "sfcc"


def signal(payload: dict) -> str:
    if payload.get("status") in ("cancelled", "failed"):
        return "canceled"
    if payload.get("shippingStatus") == "shipped":
        return "fulfilled"
    if payload.get("paymentStatus") == "paid":
        return "paid"
    return "pending"


def map_order(payload: dict, tenant: str, program: Program, fx: FxTable) -> OrderVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "order is not a JSON object")
    order_no = native_id(payload, "orderNo")
    currency = known_currency(payload.get("currency"), "currency")
    created_at = iso_time(payload.get("creationDate"), "creationDate")
    updated_at = iso_time(payload.get("lastModified"), "lastModified")
    info = payload.get("customerInfo") if isinstance(payload.get("customerInfo"), dict) else {}
    email = normalize_email(info.get("email"))
    customer_no = id_value(info.get("customerNo"), "customerInfo.customerNo")
    customer_key = None if info.get("guest") or not customer_no else f"{PLATFORM}:{tenant}:{customer_no}"
    if email is None and customer_key is None:
        raise RecordError("missing_email", "order without customerInfo.email")
    product_total = amount(payload, "productTotal")
    if payload.get("taxation") == "gross":
        product_total -= amount(payload, "adjustedMerchandizeTotalTax")
    adjustments = sum(
        (amount(a, "price", allow_negative=True)
         for a in payload.get("orderPriceAdjustments") or [] if isinstance(a, dict)),
        Decimal(0),
    )
    eligible = max(product_total + adjustments, Decimal(0))
    conv = conversion(program, fx, currency, created_at)
    return OrderVersion(
        order_key=f"{PLATFORM}:{tenant}:{order_no}",
        platform=PLATFORM,
        tenant=tenant,
        native_id=order_no,
        order_number=order_no,
        store_key=f"{PLATFORM}:{tenant}:{payload.get('siteId') or 'default'}",
        created_at=created_at,
        updated_at=updated_at,
        status="/".join(str(payload.get(k) or "-") for k in ("status", "paymentStatus", "shippingStatus")),
        signal=signal(payload),
        email=email,
        customer_key=customer_key,
        currency=currency,
        # with gross taxation the product subtotal includes its tax: order_facts keeps it ex tax
        subtotal_minor=to_minor(amount(payload, "productSubTotal") - (
            amount(payload, "merchandizeTotalTax") if payload.get("taxation") == "gross" else Decimal(0)), currency),
        discount_minor=to_minor(-adjustments, currency),
        tax_minor=to_minor(amount(payload, "taxTotal"), currency),
        shipping_minor=to_minor(amount(payload, "shippingTotal"), currency),
        grand_total_minor=to_minor(amount(payload, "orderTotal"), currency),
        eligible_minor=to_minor(eligible, currency),
        calc_currency=currency,
        calc_eligible_minor=to_minor(eligible, currency),
        fx_rate=conv.fx_rate,
        calc_rate=conv.calc_rate,
        phone=(payload.get("billingAddress") or {}).get("phone"),
        phone_region=(payload.get("billingAddress") or {}).get("countryCode"),
        discount_codes=join_codes(c.get("code") for c in payload.get("couponItems") or [] if isinstance(c, dict)),
    )
