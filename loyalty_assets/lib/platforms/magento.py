"""Magento 2 order, credit memo and customer payloads onto canonical records (RULES.md §2–§4).

Magento's totals-level `discount_amount` is negative and includes any shipping discount; item-level
discounts are positive. `base_*` amounts are already converted and rounded by Magento.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty_assets.lib.money import FxTable, MoneyError, currency_digits, to_decimal, to_minor
from loyalty_assets.lib.platforms.common import id_value
from loyalty_assets.lib.platforms.common import native_id as read_id  # native_id names the local
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import (
    CustomerVersion,
    OrderVersion,
    RecordError,
    RefundVersion,
    join_codes,
    normalize_email,
)

PLATFORM = "magento"
STATE_SIGNAL = {
    "new": "pending",
    "pending_payment": "pending",
    "payment_review": "pending",
    "holded": "pending",  # keeps a known lifecycle because lifecycles only move up
    "processing": "paid",
    "complete": "fulfilled",
    "canceled": "canceled",
    "closed": "refunded",
}
MEMO_REFUNDED = 2


def parse_time(value: object, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise RecordError("malformed_record", f"{field} is missing or not text: {value!r}")
    text = value.strip()[:19]
    try:
        if len(text) == 19 and text[4] == "-" and text[7] == "-" and text[10] == " " and text[13] == ":":
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)  # the same format, 10x faster
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise RecordError("malformed_record", f"{field} is not 'YYYY-MM-DD HH:MM:SS': {value!r}") from exc


def _text(value: object) -> str | None:
    """A phone typed as a JSON number stays its digits (a mixed column turned it into '5551234.0')."""
    return None if value is None else str(value)


def _amount(payload: dict, field: str, *, allow_negative: bool = False) -> Decimal:
    try:
        value = to_decimal(payload.get(field), field)
    except MoneyError as exc:
        raise RecordError(exc.reason, exc.detail) from exc
    if value < 0 and not allow_negative:
        raise RecordError("negative_amount", f"{field} is negative: {value}")
    return value


def _excluded_lines(items: list, program: Program, prefix: str) -> Decimal:
    """Row total after item discount of top-level lines whose product type earns nothing."""
    excluded = {t.lower() for t in program.earning.excluded_product_types}
    total = Decimal(0)
    for item in items or []:
        if not isinstance(item, dict) or item.get("parent_item_id") or item.get("parent_item"):
            continue
        if str(item.get("product_type") or "").lower() in excluded:
            total += _amount(item, f"{prefix}row_total") - abs(
                _amount(item, f"{prefix}discount_amount", allow_negative=True)
            )
    return total


def _eligible(payload: dict, program: Program, prefix: str) -> Decimal:
    subtotal = _amount(payload, f"{prefix}subtotal")
    discount = abs(_amount(payload, f"{prefix}discount_amount", allow_negative=True))
    shipping_discount = abs(_amount(payload, f"{prefix}shipping_discount_amount", allow_negative=True))
    eligible = (
        subtotal - (discount - shipping_discount) - _excluded_lines(payload.get("items"), program, prefix)
    )
    return max(eligible, Decimal(0))


def map_order(payload: dict, tenant: str, program: Program, fx: FxTable) -> OrderVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "order is not a JSON object")
    native_id = read_id(payload, "entity_id")
    state = payload.get("state")
    if state not in STATE_SIGNAL:
        raise RecordError(
            "unknown_status", f"unknown Magento order state {state!r} (status {payload.get('status')!r})"
        )
    created_at = parse_time(payload.get("created_at"), "created_at")
    updated_at = parse_time(payload.get("updated_at"), "updated_at")
    currency = str(payload.get("order_currency_code") or "").upper()
    try:
        currency_digits(currency)
    except MoneyError as exc:
        raise RecordError("unknown_currency", f"order_currency_code: {exc.detail}") from exc

    email = normalize_email(payload.get("customer_email")) or normalize_email(
        (payload.get("billing_address") or {}).get("email")
    )
    customer_id = id_value(payload.get("customer_id"), "customer_id")
    is_guest = bool(payload.get("customer_is_guest")) or customer_id in (None, "", 0)
    customer_key = None if is_guest else f"{PLATFORM}:{tenant}:{customer_id}"
    if email is None and customer_key is None:
        raise RecordError("missing_email", "guest order without customer_email or billing_address.email")

    subtotal = _amount(payload, "subtotal")
    discount = _amount(payload, "discount_amount", allow_negative=True)
    tax = _amount(payload, "tax_amount")
    shipping = _amount(payload, "shipping_amount")
    grand_total = _amount(payload, "grand_total")
    eligible = _eligible(payload, program, "")

    base_currency = str(payload.get("base_currency_code") or "").upper()
    if currency == program.currency:
        calc_currency, calc_eligible = currency, to_minor(eligible, currency)
        fx_rate = calc_rate = Decimal(1)
    elif base_currency == program.currency:
        rate = _amount(payload, "base_to_order_rate")
        if rate == 0:
            raise RecordError("bad_amount", "base_to_order_rate is 0")
        calc_currency, calc_eligible = (
            base_currency,
            to_minor(_eligible(payload, program, "base_"), base_currency),
        )
        fx_rate, calc_rate = Decimal(1) / rate, Decimal(1)
    else:
        day = created_at.astimezone(program.tz).date()
        rate = fx.rate(currency, day)
        if rate is None:
            raise RecordError("no_fx_rate", f"no {currency}->{program.currency} rate on or before {day}")
        calc_currency, calc_eligible = currency, to_minor(eligible, currency)
        fx_rate = calc_rate = rate

    store = payload.get("store_id")
    return OrderVersion(
        order_key=f"{PLATFORM}:{tenant}:{native_id}",
        platform=PLATFORM,
        tenant=tenant,
        native_id=native_id,
        order_number=str(payload.get("increment_id") or native_id),
        store_key=f"{PLATFORM}:{tenant}:{store if store is not None else 'default'}",
        created_at=created_at,
        updated_at=updated_at,
        status=str(payload.get("status") or state),
        signal=STATE_SIGNAL[state],
        email=email,
        customer_key=customer_key,
        currency=currency,
        subtotal_minor=to_minor(subtotal, currency),
        discount_minor=to_minor(abs(discount), currency),
        tax_minor=to_minor(tax, currency),
        shipping_minor=to_minor(shipping, currency),
        grand_total_minor=to_minor(grand_total, currency),
        eligible_minor=to_minor(eligible, currency),
        calc_currency=calc_currency,
        calc_eligible_minor=calc_eligible,
        fx_rate=fx_rate,
        calc_rate=calc_rate,
        phone=_text((payload.get("billing_address") or {}).get("telephone")),
        phone_region=_text((payload.get("billing_address") or {}).get("country_id")),
        discount_codes=join_codes([payload.get("coupon_code")]),
        excluded_item_ids=",".join(sorted(excluded_item_ids(payload, program))),
    )


def _memo_refunded(
    memo: dict, order_items_excluded: set[str] | None, program: Program, prefix: str
) -> Decimal:
    subtotal = _amount(memo, f"{prefix}subtotal")
    discount = abs(_amount(memo, f"{prefix}discount_amount", allow_negative=True))
    excluded_types = {t.lower() for t in program.earning.excluded_product_types}
    excluded = Decimal(0)
    for item in memo.get("items") or []:
        if not isinstance(item, dict):
            continue
        # Memo items rarely carry product_type: match them to the order's excluded lines by id.
        is_excluded = str(item.get("product_type") or "").lower() in excluded_types or (
            order_items_excluded is not None and str(item.get("order_item_id")) in order_items_excluded
        )
        if is_excluded:
            excluded += _amount(item, f"{prefix}row_total") - abs(
                _amount(item, f"{prefix}discount_amount", allow_negative=True)
            )
    return max(subtotal - discount - excluded, Decimal(0))


def excluded_item_ids(order_payload: dict, program: Program) -> set[str]:
    excluded = {t.lower() for t in program.earning.excluded_product_types}
    return {
        str(item.get("item_id"))
        for item in order_payload.get("items") or []
        if isinstance(item, dict) and str(item.get("product_type") or "").lower() in excluded
    }


def map_creditmemo(
    memo: dict, tenant: str, program: Program, order_excluded_items: set[str] | None
) -> RefundVersion:
    if not isinstance(memo, dict):
        raise RecordError("malformed_record", "credit memo is not a JSON object")
    native_id = read_id(memo, "entity_id")
    order_id = read_id(memo, "order_id")
    updated_at = parse_time(memo.get("updated_at") or memo.get("created_at"), "updated_at")
    currency = str(memo.get("order_currency_code") or "").upper()
    base_currency = str(memo.get("base_currency_code") or "").upper() or None
    try:
        currency_digits(currency)
        if base_currency:
            currency_digits(base_currency)
    except MoneyError as exc:
        raise RecordError("unknown_currency", exc.detail) from exc
    try:
        state = int(memo.get("state"))
    except (TypeError, ValueError) as exc:
        raise RecordError("unknown_status", f"credit memo state {memo.get('state')!r}") from exc
    if state not in (1, 2, 3):
        raise RecordError("unknown_status", f"credit memo state {state}")
    refunded = _memo_refunded(memo, order_excluded_items, program, "")
    refunded_base = _memo_refunded(memo, order_excluded_items, program, "base_") if base_currency else None
    return RefundVersion(
        refund_key=f"{PLATFORM}:{tenant}:creditmemo:{native_id}",
        order_key=f"{PLATFORM}:{tenant}:{order_id}",
        platform=PLATFORM,
        native_id=native_id,
        updated_at=updated_at,
        counts=state == MEMO_REFUNDED,
        currency=currency,
        refunded_eligible_minor=to_minor(refunded, currency),
        base_currency=base_currency,
        refunded_eligible_base_minor=to_minor(refunded_base, base_currency) if base_currency else None,
    )


def map_customer(payload: dict, tenant: str) -> CustomerVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "customer is not a JSON object")
    native_id = read_id(payload, "id")
    created = payload.get("created_at")
    return CustomerVersion(
        customer_key=f"{PLATFORM}:{tenant}:{native_id}",
        platform=PLATFORM,
        native_id=native_id,
        email=normalize_email(payload.get("email")),
        updated_at=parse_time(payload.get("updated_at") or created, "updated_at"),
        created_at=parse_time(created, "created_at") if created else None,
    )
