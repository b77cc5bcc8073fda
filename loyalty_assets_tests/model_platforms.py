"""The model's abstract records (reference_model.OrderVersion / MemoVersion) as each platform sends
them, for the Hypothesis suite (test_model.py).

An order version carries a Magento-vocabulary state; each platform renders it as its own fields with
the same RULES.md §2 signal (e.g. `processing` → BigCommerce status 11, commercetools
`paymentState: Paid`, SFCC `paymentStatus: paid`). Refunds follow what each platform can express:
Magento credit memos change state (open / refunded / canceled); BigCommerce v3 refunds are immutable
and always count; commercetools refunds are `Refund` transactions whose state changes inside one
Payment object (so a payment version is a snapshot of every refund of the order at that time);
SFCC has no refunds (CONTRACT: not supported) and no fully refunded state.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal

from magento_factory import memo, order
from reference_model import MemoVersion, OrderVersion

from loyalty_assets.lib.platforms.bigcommerce import rfc2822_time
from loyalty_assets.lib.platforms.common import iso_time
from loyalty_assets.lib.platforms.magento import parse_time
from loyalty_assets.lib.raw import insert_versions

Record = OrderVersion | MemoVersion


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _cents(x: Decimal) -> int:
    return int(x * 100)


@dataclass(frozen=True)
class Platform:
    """What a platform can say about an order's refunds, and how it says it."""

    name: str
    tenant: str
    memo_states: tuple[int, ...]  # credit-memo states the platform can express (empty: no refunds)
    memo_changes: bool  # a refund can change state after it was created
    full_refund_state: bool  # the order itself can become `closed` (fully refunded)
    min_subtotal: int = 0  # cents

    def order_key(self, order_id: int) -> str:
        return f"{self.name}:{self.tenant}:{self.native_id(order_id)}"

    def native_id(self, order_id: int) -> str:
        return str(order_id)

    def land(self, conn, program, r: Record, story_records: list[Record]) -> list[Record]:
        """Land one record as the platform's payload; returns what the model learns from it."""
        source, payload, rid, modified = self.render(r, story_records)
        insert_versions(conn, source, self.tenant, [payload], lambda _x: rid, lambda _x: modified, program.tz)
        return self.learned(r, story_records)

    def learned(self, r: Record, story_records: list[Record]) -> list[Record]:
        return [r]

    def render(self, r: Record, story_records: list[Record]) -> tuple[str, dict, str, dt.datetime]:
        raise NotImplementedError


class Magento(Platform):
    def render(self, r, story_records):
        stamp = r.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(r, OrderVersion):
            payload = order(r.order_id, stamp, state=r.state, subtotal=str(r.subtotal), discount=str(r.discount),
                            email=r.email, created_at=r.created_at.strftime("%Y-%m-%d %H:%M:%S"))
            source = "magento.orders"
        else:
            payload = memo(r.memo_id, r.order_id, stamp, state=r.state, subtotal=str(r.subtotal),
                           discount=str(r.discount))
            source = "magento.creditmemos"
        return source, payload, str(payload["entity_id"]), parse_time(payload["updated_at"], "updated_at")


BIGCOMMERCE_STATUS = {"new": 1, "pending_payment": 7, "holded": 0, "processing": 11, "complete": 10,
                      "canceled": 5, "closed": 4}


class BigCommerce(Platform):
    def render(self, r, story_records):
        if isinstance(r, MemoVersion):  # v3 refund: immutable, counted, an amount on the order's line
            payload = {"id": r.memo_id, "order_id": r.order_id, "created": r.updated_at.isoformat(),
                       "total_amount": r.subtotal - r.discount,
                       "items": [{"item_type": "PRODUCT", "item_id": r.order_id * 10, "quantity": 1,
                                  "requested_amount": r.subtotal - r.discount}]}
            return "bigcommerce.refunds", payload, str(r.memo_id), iso_time(payload["created"], "created")
        status = BIGCOMMERCE_STATUS[r.state]
        sub, disc = f"{r.subtotal:.4f}", f"{r.discount:.4f}"
        modified = r.updated_at.strftime("%a, %d %b %Y %H:%M:%S +0000")
        payload = {
            "id": r.order_id, "customer_id": 0, "status_id": status, "status": str(status), "channel_id": 1,
            "date_created": r.created_at.strftime("%a, %d %b %Y %H:%M:%S +0000"), "date_modified": modified,
            "subtotal_ex_tax": sub, "subtotal_inc_tax": sub, "total_ex_tax": sub, "total_inc_tax": sub,
            "total_tax": "0.0000", "shipping_cost_ex_tax": "0.0000", "discount_amount": disc,
            "coupon_discount": "0.0000", "default_currency_code": "USD", "currency_code": "USD",
            "is_tax_inclusive_pricing": False, "billing_address": {"email": r.email},
            "products": [{"id": r.order_id * 10, "order_id": r.order_id, "type": "physical", "quantity": 1,
                          "total_ex_tax": sub, "price_ex_tax": sub, "applied_discounts": []}],
        }
        return "bigcommerce.orders", payload, str(r.order_id), rfc2822_time(modified, "date_modified")


COMMERCETOOLS_STATES = {  # Magento state → (orderState, paymentState, shipmentState)
    "new": ("Open", "Pending", None), "pending_payment": ("Open", "BalanceDue", None),
    "holded": ("Open", "Pending", None), "processing": ("Confirmed", "Paid", None),
    "complete": ("Complete", "Paid", "Shipped"), "canceled": ("Cancelled", "Pending", None),
}
TRANSACTION_STATE = {1: "Pending", 2: "Success", 3: "Failure"}


class Commercetools(Platform):
    def native_id(self, order_id):
        return f"ct-{order_id}"

    @staticmethod
    def snapshot(r: MemoVersion, story_records: list[Record]) -> list[MemoVersion]:
        """Every refund of the order as the Payment shows it at r's time, stamped with that time."""
        latest: dict[int, MemoVersion] = {}
        for m in story_records:
            if isinstance(m, MemoVersion) and m.order_id == r.order_id and m.updated_at <= r.updated_at:
                if m.memo_id not in latest or m.updated_at > latest[m.memo_id].updated_at:
                    latest[m.memo_id] = m
        return [replace(m, updated_at=r.updated_at) for _, m in sorted(latest.items())]

    def learned(self, r, story_records):
        return [r] if isinstance(r, OrderVersion) else self.snapshot(r, story_records)

    def render(self, r, story_records):
        def money(x: Decimal) -> dict:
            return {"type": "centPrecision", "currencyCode": "USD", "centAmount": _cents(x), "fractionDigits": 2}

        if isinstance(r, MemoVersion):
            refunds = self.snapshot(r, story_records)
            version = 1 + len({m.updated_at for m in story_records
                               if isinstance(m, MemoVersion) and m.order_id == r.order_id and m.updated_at <= r.updated_at})
            payload = {
                "id": f"pay-{r.order_id}", "version": version, "createdAt": _iso(r.updated_at),
                "lastModifiedAt": _iso(r.updated_at), "amountPlanned": money(Decimal(0)),
                "transactions": [{"id": f"t{m.memo_id}", "type": "Refund", "state": TRANSACTION_STATE[m.state],
                                  "amount": money(m.subtotal - m.discount)} for m in refunds],
            }
            return "commercetools.payments", payload, payload["id"], iso_time(payload["lastModifiedAt"], "lastModifiedAt")
        order_state, payment_state, shipment_state = COMMERCETOOLS_STATES[r.state]
        eligible = r.subtotal - r.discount
        payload = {
            "id": self.native_id(r.order_id), "version": int(r.updated_at.timestamp()),
            "createdAt": _iso(r.created_at), "lastModifiedAt": _iso(r.updated_at), "customerEmail": r.email,
            "orderState": order_state, "paymentState": payment_state,
            "totalPrice": money(eligible),
            "taxedPrice": {"totalNet": money(eligible), "totalGross": money(eligible)},
            "discountOnTotalPrice": {"discountedAmount": money(r.discount)},
            "lineItems": [], "paymentInfo": {"payments": [{"typeId": "payment", "id": f"pay-{r.order_id}"}]},
        }
        if shipment_state:
            payload["shipmentState"] = shipment_state
        return "commercetools.orders", payload, payload["id"], iso_time(payload["lastModifiedAt"], "lastModifiedAt")


SFCC_STATES = {  # Magento state → (status, paymentStatus, shippingStatus)
    "new": ("new", "not_paid", "not_shipped"), "pending_payment": ("created", "not_paid", "not_shipped"),
    "holded": ("open", "not_paid", "not_shipped"), "processing": ("open", "paid", "not_shipped"),
    "complete": ("completed", "paid", "shipped"), "canceled": ("cancelled", "not_paid", "not_shipped"),
}


class Sfcc(Platform):
    def native_id(self, order_id):
        return f"{order_id:08d}"

    def render(self, r, story_records):
        status, payment, shipping = SFCC_STATES[r.state]
        payload = {
            "orderNo": self.native_id(r.order_id), "siteId": "US", "currency": "USD",
            "creationDate": _iso(r.created_at), "lastModified": _iso(r.updated_at),
            "status": status, "paymentStatus": payment, "shippingStatus": shipping,
            "customerInfo": {"email": r.email, "guest": True}, "taxation": "net",
            "productTotal": r.subtotal, "productSubTotal": r.subtotal,
            "orderPriceAdjustments": [{"price": -r.discount}] if r.discount else [],
            "orderTotal": r.subtotal - r.discount, "taxTotal": Decimal(0), "shippingTotal": Decimal(0),
        }
        return "sfcc.orders", payload, payload["orderNo"], iso_time(payload["lastModified"], "lastModified")


PLATFORMS = {
    "magento": Magento("magento", "default", memo_states=(2, 1, 3), memo_changes=True, full_refund_state=True),
    "bigcommerce": BigCommerce("bigcommerce", "store1", memo_states=(2,), memo_changes=False,
                               full_refund_state=True),
    # eligible > 0, so a Refund transaction's share (eligible / totalGross) is 1 whatever the version
    "commercetools": Commercetools("commercetools", "proj", memo_states=(2, 1, 3), memo_changes=True,
                                   full_refund_state=False, min_subtotal=1),
    "sfcc": Sfcc("sfcc", "org1", memo_states=(), memo_changes=False, full_refund_state=False),
}
