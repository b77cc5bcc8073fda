"""commercetools orders, payments (refund transactions) and customers onto canonical records.

Money is `centAmount` / 10**`fractionDigits` in `currencyCode`. There is no refunded order state:
refunds are `Refund` transactions in state `Success` on the order's payments, which change only the
payment's `lastModifiedAt` (RULES.md §2–§4).
"""

from __future__ import annotations

from decimal import Decimal

from loyalty_assets.lib.money import FxTable, to_minor
from loyalty_assets.lib.platforms.common import (
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

PLATFORM = "commercetools"


def money(value: object, field: str, currency: str | None = None) -> Decimal:
    """CentPrecisionMoney as a Decimal; a missing value is 0, a malformed one an error."""
    if value is None:
        return Decimal(0)
    if not isinstance(value, dict):
        raise RecordError("bad_amount", f"{field} is not a money object: {value!r}")
    cents, digits = value.get("centAmount"), value.get("fractionDigits", 2)
    if isinstance(cents, bool) or not isinstance(cents, int) or isinstance(digits, bool) or not isinstance(digits, int):
        raise RecordError("bad_amount", f"{field} has a non-integer centAmount/fractionDigits: {value!r}")
    if cents < 0:
        raise RecordError("negative_amount", f"{field} is negative: {cents}")
    if currency and str(value.get("currencyCode", currency)).upper() != currency:
        raise RecordError("bad_amount", f"{field} is in {value.get('currencyCode')}, the order in {currency}")
    return Decimal(cents).scaleb(-digits)


def signal(payload: dict) -> str:
    if payload.get("orderState") == "Cancelled":
        return "canceled"
    if payload.get("orderState") == "Complete" or payload.get("shipmentState") == "Delivered":
        return "fulfilled"
    if payload.get("paymentState") == "Paid":
        return "paid"
    return "pending"


def _shipping_net(payload: dict, currency: str) -> Decimal:
    """RULES.md §3: taxedShippingPrice.totalNet, else shippingInfo.taxedPrice.totalNet (each looked at
    for its net: a taxedShippingPrice without one no longer hides the other)."""
    for field, taxed in (("taxedShippingPrice", payload.get("taxedShippingPrice")),
                         ("shippingInfo.taxedPrice", (payload.get("shippingInfo") or {}).get("taxedPrice"))):
        if isinstance(taxed, dict) and taxed.get("totalNet") is not None:
            return money(taxed.get("totalNet"), f"{field}.totalNet", currency)
    return money((payload.get("shippingInfo") or {}).get("price"), "shippingInfo.price", currency)


def eligible_amount(payload: dict, program: Program, currency: str) -> Decimal:
    taxed = payload.get("taxedPrice")
    net = isinstance(taxed, dict) and taxed.get("totalNet") is not None
    if net:
        base = money(taxed.get("totalNet"), "taxedPrice.totalNet", currency) - _shipping_net(payload, currency)
    else:
        base = money(payload.get("totalPrice"), "totalPrice", currency) - money(
            (payload.get("shippingInfo") or {}).get("price"), "shippingInfo.price", currency
        )
    for line in payload.get("lineItems") or []:
        if isinstance(line, dict) and excluded(program, (line.get("productType") or {}).get("key")):
            # an excluded line in the terms of the total it leaves: its net from a net total, its
            # totalPrice from an untaxed order's totalPrice (a line's net would leave its tax in)
            line_taxed = line.get("taxedPrice") or {}
            line_total = (line_taxed.get("totalNet") if net else None) or line.get("totalPrice")
            base -= money(line_total, "lineItems.totalPrice", currency)
    return max(base, Decimal(0))


def map_order(payload: dict, tenant: str, program: Program, fx: FxTable) -> OrderVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "order is not a JSON object")
    oid = native_id(payload, "id")
    total = payload.get("totalPrice")
    currency = known_currency((total or {}).get("currencyCode") if isinstance(total, dict) else None,
                              "totalPrice.currencyCode")
    created_at = iso_time(payload.get("createdAt"), "createdAt")
    updated_at = iso_time(payload.get("lastModifiedAt"), "lastModifiedAt")
    email = normalize_email(payload.get("customerEmail"))
    customer_id = id_value(payload.get("customerId"), "customerId")
    customer_key = f"{PLATFORM}:{tenant}:{customer_id}" if customer_id else None
    if email is None and customer_key is None:
        raise RecordError("missing_email", "guest order without customerEmail")
    eligible = eligible_amount(payload, program, currency)
    taxed = payload.get("taxedPrice") if isinstance(payload.get("taxedPrice"), dict) else {}
    gross = money(taxed.get("totalGross"), "taxedPrice.totalGross", currency) if taxed else money(total, "totalPrice", currency)
    net = money(taxed.get("totalNet"), "taxedPrice.totalNet", currency) if taxed else gross
    shipping = money((payload.get("shippingInfo") or {}).get("price"), "shippingInfo.price", currency)
    discount = money((payload.get("discountOnTotalPrice") or {}).get("discountedAmount"), "discountOnTotalPrice", currency)
    lines = sum(
        (money(li.get("totalPrice"), "lineItems.totalPrice", currency) for li in payload.get("lineItems") or []
         if isinstance(li, dict)),
        Decimal(0),
    ) + sum(
        (money(li.get("totalPrice"), "customLineItems.totalPrice", currency) for li in payload.get("customLineItems") or []
         if isinstance(li, dict)),
        Decimal(0),
    )
    conv = conversion(program, fx, currency, created_at)
    store = (payload.get("store") or {}).get("key") if isinstance(payload.get("store"), dict) else None
    return OrderVersion(
        order_key=f"{PLATFORM}:{tenant}:{oid}",
        platform=PLATFORM,
        tenant=tenant,
        native_id=oid,
        order_number=str(payload.get("orderNumber") or oid),
        store_key=f"{PLATFORM}:{tenant}:{store or 'default'}",
        created_at=created_at,
        updated_at=updated_at,
        status="/".join(str(payload.get(k) or "-") for k in ("orderState", "paymentState", "shipmentState")),
        signal=signal(payload),
        email=email,
        customer_key=customer_key,
        currency=currency,
        subtotal_minor=to_minor(lines, currency),
        discount_minor=to_minor(discount, currency),
        tax_minor=to_minor(gross - net, currency),
        shipping_minor=to_minor(shipping, currency),
        grand_total_minor=to_minor(gross, currency),
        eligible_minor=to_minor(eligible, currency),
        calc_currency=currency,
        calc_eligible_minor=to_minor(eligible, currency),
        fx_rate=conv.fx_rate,
        calc_rate=conv.calc_rate,
        phone=(payload.get("billingAddress") or {}).get("phone"),
        phone_region=(payload.get("billingAddress") or {}).get("country"),
        # discount codes are references; their code is there only when the order was read expanded
        discount_codes=join_codes(((d.get("discountCode") or {}).get("obj") or {}).get("code")
                                  for d in payload.get("discountCodes") or [] if isinstance(d, dict)),
        payment_ids=",".join(payment_ids(payload)),
    )


def payment_ids(order: dict) -> list[str]:
    info = order.get("paymentInfo") if isinstance(order, dict) else None
    payments = (info or {}).get("payments") if isinstance(info, dict) else None
    return [str(p["id"]) for p in payments or [] if isinstance(p, dict) and p.get("id")]


def map_payment(payment: dict, tenant: str, program: Program, order: dict | None, order_id: str | None) -> list[RefundVersion]:
    """Every Refund transaction of a payment; only `Success` ones refund money.

    Refunded eligible = amount x eligible spend / taxedPrice.totalGross (or totalPrice when untaxed).
    """
    if not isinstance(payment, dict):
        raise RecordError("malformed_record", "payment is not a JSON object")
    pid = native_id(payment, "id")
    updated_at = iso_time(payment.get("lastModifiedAt"), "lastModifiedAt")
    refunds = [t for t in payment.get("transactions") or [] if isinstance(t, dict) and t.get("type") == "Refund"]
    if not refunds:
        return []
    order = order if isinstance(order, dict) else None
    currency = known_currency(
        ((order or {}).get("totalPrice") or {}).get("currencyCode") or (payment.get("amountPlanned") or {}).get("currencyCode"),
        "currencyCode",
    )
    # amount × eligible / gross, multiplied first and divided last: a quotient taken first (28 digits)
    # put an exact half cent just below it (12.60 × 118.26 / 151.20 = 9.855 gave 985, not 986)
    eligible, denominator = Decimal(0), Decimal(1)
    if order is not None:
        taxed = order.get("taxedPrice") if isinstance(order.get("taxedPrice"), dict) else None
        gross = (money(taxed.get("totalGross"), "taxedPrice.totalGross", currency) if taxed
                 else money(order.get("totalPrice"), "totalPrice", currency))
        if gross > 0:
            eligible, denominator = eligible_amount(order, program, currency), gross
    rows = []
    for txn in refunds:
        tid = native_id(txn, "id")
        value = money(txn.get("amount"), "transactions.amount", currency)
        rows.append(
            RefundVersion(
                refund_key=f"{PLATFORM}:{tenant}:refund:{tid}",
                order_key=f"{PLATFORM}:{tenant}:{order_id or 'unknown-payment-' + pid}",
                platform=PLATFORM,
                native_id=tid,
                updated_at=updated_at,
                counts=txn.get("state") == "Success",
                currency=currency,
                refunded_eligible_minor=to_minor(value * eligible / denominator, currency),
                base_currency=None,
                refunded_eligible_base_minor=None,
            )
        )
    return rows


def map_customer(payload: dict, tenant: str) -> CustomerVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "customer is not a JSON object")
    cid = native_id(payload, "id")
    created = payload.get("createdAt")
    return CustomerVersion(
        customer_key=f"{PLATFORM}:{tenant}:{cid}",
        platform=PLATFORM,
        native_id=cid,
        email=normalize_email(payload.get("email")),
        updated_at=iso_time(payload.get("lastModifiedAt") or created, "lastModifiedAt"),
        created_at=iso_time(created, "createdAt") if created else None,
    )
