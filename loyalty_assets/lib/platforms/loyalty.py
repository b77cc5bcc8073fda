"""Smile.io and LoyaltyLion customers onto canonical customer records: their ids become identity keys
(RULES.md §8) and tell the pushes which customer a member is in each platform."""

from __future__ import annotations

from loyalty_assets.lib.platforms.common import iso_time, native_id
from loyalty_assets.lib.records import CustomerVersion, RecordError, normalize_email


def map_smile_customer(payload: dict, tenant: str) -> CustomerVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "customer is not a JSON object")
    cid = native_id(payload, "id")
    if payload.get("state") == "disabled":
        # a disabled Smile customer can no longer receive points: not an identity of the member
        raise RecordError("disabled_customer", f"Smile customer {cid} is disabled")
    return CustomerVersion(
        customer_key=f"smile:{tenant}:{cid}", platform="smile", native_id=cid,
        email=normalize_email(payload.get("email")),
        updated_at=iso_time(payload.get("updated_at") or payload.get("created_at"), "updated_at"),
        created_at=iso_time(payload["created_at"], "created_at") if payload.get("created_at") else None,
    )


def map_loyaltylion_customer(payload: dict, tenant: str) -> CustomerVersion:
    if not isinstance(payload, dict):
        raise RecordError("malformed_record", "customer is not a JSON object")
    merchant_id = native_id(payload, "merchant_id")
    return CustomerVersion(
        customer_key=f"loyaltylion:{tenant}:{merchant_id}", platform="loyaltylion", native_id=merchant_id,
        email=normalize_email(payload.get("email")),
        updated_at=iso_time(payload.get("updated_at") or payload.get("created_at"), "updated_at"),
        created_at=iso_time(payload["created_at"], "created_at") if payload.get("created_at") else None,
    )
