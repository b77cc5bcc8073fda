"""Canonical records every platform maps onto (RULES.md §2–§4, §8)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

LIFECYCLE_RANK = {"pending": 0, "paid": 1, "fulfilled": 2, "refunded": 3, "canceled": 4}


class RecordError(ValueError):
    """A record that cannot be processed: `reason` is the quarantine code, `detail` the words."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def join_codes(codes) -> str | None:
    clean = sorted({str(c).strip().upper() for c in codes or [] if c and str(c).strip()})
    return ",".join(clean) or None


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email else None


@dataclass(frozen=True)
class OrderVersion:
    order_key: str
    platform: str
    tenant: str
    native_id: str
    order_number: str
    store_key: str
    created_at: dt.datetime
    updated_at: dt.datetime
    status: str  # native status text, for support
    signal: str  # lifecycle signal of this version alone (LIFECYCLE_RANK key)
    email: str | None
    customer_key: str | None  # platform:tenant:id for registered shoppers
    currency: str
    subtotal_minor: int
    discount_minor: int
    tax_minor: int
    shipping_minor: int
    grand_total_minor: int
    eligible_minor: int  # order currency
    calc_currency: str  # currency eligible/refund amounts for points are computed in
    calc_eligible_minor: int
    fx_rate: Decimal  # recorded rate, program currency per order currency unit
    calc_rate: Decimal  # applied to calc amounts (1 when they are already program currency)
    phone: str | None = None  # as typed; E.164 only in identity, when identity.match_phone is on
    phone_region: str | None = None  # ISO country of the address, to read national numbers
    discount_codes: str | None = None  # comma-separated, upper case: links a redemption to its order
    excluded_item_ids: str | None = None  # comma-separated line ids of excluded product types (Magento memos name lines)
    payment_ids: str | None = None  # comma-separated payment ids the order lists (commercetools refunds name payments)
    calc_divisor: Decimal | None = None  # calc amounts are then divided by this (platforms.common.Conversion)

    def row(self) -> dict:
        return dict(self.__dict__)  # flat fields: no deep copy (asdict was a third of normalize)


@dataclass(frozen=True)
class RefundVersion:
    refund_key: str
    order_key: str
    platform: str
    native_id: str
    updated_at: dt.datetime
    counts: bool  # refunds money now (e.g. memo state 2)
    currency: str
    refunded_eligible_minor: int  # order currency
    base_currency: str | None
    refunded_eligible_base_minor: int | None

    def row(self) -> dict:
        return dict(self.__dict__)  # flat fields: no deep copy (asdict was a third of normalize)


@dataclass(frozen=True)
class CustomerVersion:
    customer_key: str
    platform: str
    native_id: str
    email: str | None
    updated_at: dt.datetime
    created_at: dt.datetime | None


# an e-mail address inside free text (an error message, a profile's fields)
EMAIL_IN_TEXT = re.compile(r"[^\s@:;,'\"<>()\[\]]+@[^\s@:;,'\"<>()\[\]]+")
