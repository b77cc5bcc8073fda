"""Pieces every platform mapping shares: amounts, timestamps and the conversion rules of RULES.md §3."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from decimal import Decimal

from loyalty_assets.lib.money import FxTable, MoneyError, currency_digits, to_decimal
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import RecordError


def amount(payload: dict, field: str, *, allow_negative: bool = False, default: object = None) -> Decimal:
    value = payload.get(field, default) if isinstance(payload, dict) else None
    try:
        d = to_decimal(value, field)
    except MoneyError as exc:
        raise RecordError(exc.reason, exc.detail) from exc
    if d < 0 and not allow_negative:
        raise RecordError("negative_amount", f"{field} is negative: {d}")
    return d


def id_value(value: object, field: str) -> object:
    """An id is text or a whole JSON number: str() of an object, a list, a boolean or 12.0 would make
    a key no other record shares (a customer id) or one that is not the order's (an order id)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise RecordError("malformed_record", f"{field} is not text or a whole number: {value!r}")
    return value


def native_id(payload: dict, field: str) -> str:
    value = id_value(payload.get(field) if isinstance(payload, dict) else None, field)
    if value is None or str(value).strip() == "":
        raise RecordError("malformed_record", f"{field} is missing")
    return str(value).strip()


def known_currency(code: object, field: str) -> str:
    text = str(code or "").upper()
    try:
        currency_digits(text)
    except MoneyError as exc:
        raise RecordError("unknown_currency", f"{field}: {exc.detail}") from exc
    return text


def iso_time(value: object, field: str) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise RecordError("malformed_record", f"{field} is missing or not text: {value!r}")
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise RecordError("malformed_record", f"{field} is not an ISO-8601 time: {value!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


@dataclass(frozen=True)
class Conversion:
    """How an order's amounts reach the program currency (RULES.md §3, rules 1, 3 and 4)."""

    fx_rate: Decimal  # recorded: program currency per order currency unit
    calc_rate: Decimal  # applied to order-currency amounts
    # then divided by this (BigCommerce's store rate: amount ÷ rate, exactly, not × a rounded 1/rate)
    calc_divisor: Decimal | None = None


def conversion(
    program: Program,
    fx: FxTable,
    currency: str,
    created_at: dt.datetime,
    *,
    store_default_currency: str | None = None,
    store_default_rate: Decimal | None = None,
) -> Conversion:
    if currency == program.currency:
        return Conversion(Decimal(1), Decimal(1))
    if store_default_currency == program.currency and store_default_rate and store_default_rate > 0:
        # BigCommerce multi-currency: program amount = amount / store_default_to_transactional_exchange_rate
        return Conversion(Decimal(1) / store_default_rate, Decimal(1), store_default_rate)
    day = created_at.astimezone(program.tz).date()
    rate = fx.rate(currency, day)
    if rate is None:
        raise RecordError("no_fx_rate", f"no {currency}->{program.currency} rate on or before {day}")
    return Conversion(rate, rate)


def excluded(program: Program, product_type: object) -> bool:
    return str(product_type or "").lower() in _lowered(tuple(program.earning.excluded_product_types))


@functools.lru_cache(maxsize=8)
def _lowered(types: tuple[str, ...]) -> frozenset[str]:
    """The set once per program, not once per order line."""
    return frozenset(t.lower() for t in types)
