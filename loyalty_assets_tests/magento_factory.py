"""Small builders of native Magento 2 payloads for rule tests (shapes as /V1/orders returns them)."""

from __future__ import annotations

from decimal import Decimal


def order(
    entity_id: int,
    updated_at: str,
    *,
    state: str = "processing",
    subtotal: str = "100.00",
    discount: str = "0",
    shipping: str = "10.00",
    tax: str = "8.00",
    email: str | None = "ann@example.com",
    customer_id: int | None = None,
    created_at: str | None = None,
    currency: str = "USD",
    base_currency: str = "USD",
    base_to_order_rate: str = "1",
    store_id: int = 1,
    items: list | None = None,
) -> dict:
    sub, disc, ship, tx = (Decimal(x) for x in (subtotal, discount, shipping, tax))
    rate = Decimal(base_to_order_rate)

    def base(x: Decimal) -> Decimal:
        return (x / rate).quantize(Decimal("0.01"))

    rec = {
        "entity_id": entity_id,
        "increment_id": f"{entity_id:09d}",
        "state": state,
        "status": state,
        "created_at": created_at or updated_at,
        "updated_at": updated_at,
        "order_currency_code": currency,
        "base_currency_code": base_currency,
        "base_to_order_rate": rate,
        "store_id": store_id,
        "subtotal": sub,
        "base_subtotal": base(sub),
        "discount_amount": -abs(disc),
        "base_discount_amount": -abs(base(disc)),
        "shipping_amount": ship,
        "base_shipping_amount": base(ship),
        "tax_amount": tx,
        "base_tax_amount": base(tx),
        "grand_total": sub - abs(disc) + ship + tx,
        "base_grand_total": base(sub - abs(disc) + ship + tx),
        "customer_is_guest": 0 if customer_id else 1,
        "customer_group_id": 1 if customer_id else 0,
        "items": items or [{"item_id": entity_id * 10, "sku": "SKU", "product_type": "simple", "row_total": sub,
                            "base_row_total": base(sub), "discount_amount": abs(disc), "base_discount_amount": base(abs(disc))}],
        "billing_address": {"email": email} if email else {},
    }
    if email:
        rec["customer_email"] = email
    if customer_id:
        rec["customer_id"] = customer_id
    return rec


def memo(entity_id: int, order_id: int, updated_at: str, *, state: int = 2, subtotal: str = "50.00",
         discount: str = "0", currency: str = "USD", base_to_order_rate: str = "1") -> dict:
    sub, disc, rate = Decimal(subtotal), Decimal(discount), Decimal(base_to_order_rate)
    return {
        "entity_id": entity_id,
        "order_id": order_id,
        "increment_id": f"CM{entity_id:07d}",
        "state": state,
        "created_at": updated_at,
        "updated_at": updated_at,
        "order_currency_code": currency,
        "base_currency_code": "USD",
        "base_to_order_rate": rate,
        "subtotal": sub,
        "base_subtotal": (sub / rate).quantize(Decimal("0.01")),
        "discount_amount": -abs(disc),
        "base_discount_amount": -abs((disc / rate).quantize(Decimal("0.01"))),
        "shipping_amount": Decimal("0"),
        "adjustment_positive": Decimal("0"),
        "adjustment_negative": Decimal("0"),
        "grand_total": sub - abs(disc),
        "items": [],
    }
