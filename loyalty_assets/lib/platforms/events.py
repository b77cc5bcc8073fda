"""Loyalty-platform and CRM records that move points without an order (RULES.md §6, §9):
redemptions in Smile.io / LoyaltyLion and adjustment requests in Salesforce."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from loyalty_assets.lib.platforms.common import iso_time, native_id
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import RecordError, normalize_email


@dataclass(frozen=True)
class LoyaltyEvent:
    event_key: str
    kind: str
    source: str
    source_ref: str
    member_key: str | None
    member_id_hint: str | None
    points: int
    status: str
    reason: str | None
    description: str | None
    reward_code: str | None = None

    def row(self) -> dict:
        return dict(self.__dict__)  # flat fields: no deep copy (asdict was a third of normalize)


def smile_redemption(txn: dict, tenant: str, ours: Container[str], links=None) -> LoyaltyEvent | None:
    """A Smile points transaction that spent points (not one of our own pushes). `links`
    (normalize._SmileRedemptions): its reward fulfillment's discount code, by transaction id."""
    if not isinstance(txn, dict):
        raise RecordError("malformed_record", "points transaction is not a JSON object")
    tid = native_id(txn, "id")
    if txn.get("internal_note") in ours:
        return None  # our own push, read back
    change = txn.get("points_change")
    if isinstance(change, bool) or not isinstance(change, int):
        raise RecordError("bad_amount", f"points_change is not an integer: {change!r}")
    if change >= 0:
        return None  # Smile's own earning rules are not ours to book
    return LoyaltyEvent(
        event_key=f"smile:{tenant}:redemption:{tid}", kind="redeem", source="smile", source_ref=tid,
        member_key=f"smile:{tenant}:{native_id(txn, 'customer_id')}", member_id_hint=None, points=change,
        status="valid", reason=None, description=str(txn.get("description") or "Redeemed in Smile.io")[:200],
        reward_code=links.codes.get(tid) if links is not None else None,
    )


def smile_canceled_redemption(fulfillment: dict, tenant: str, links=None) -> LoyaltyEvent | None:
    """A Smile reward fulfillment `cancelled` (a redemption canceled in Smile Admin, which has no API
    for it): the redemption of its points transaction is worth 0 from then on, so a positive `redeem`
    entry keyed by that redemption gives the points back (RULES.md §6). Smile's own positive points
    transaction for it is not booked (smile_redemption books no positive change)."""
    if not isinstance(fulfillment, dict):
        raise RecordError("malformed_record", "reward fulfillment is not a JSON object")
    if str(fulfillment.get("fulfillment_status") or "").lower() not in ("cancelled", "canceled"):
        return None
    tid = fulfillment.get("points_transaction_id")
    if tid in (None, "") or isinstance(tid, bool):
        # Smile's documented object does not name it: the spend its purchase made at the same moment
        tid = links.of.get(native_id(fulfillment, "id")) if links is not None else None
    if tid in (None, "") or isinstance(tid, bool):
        raise RecordError("unknown_redemption",
                          f"cancelled reward fulfillment {fulfillment.get('id')} matches no points spent by its customer "
                          "when it was issued: nothing to give back")
    return LoyaltyEvent(
        event_key=f"smile:{tenant}:redemption:{tid}", kind="redeem", source="smile", source_ref=str(tid),
        member_key=f"smile:{tenant}:{native_id(fulfillment, 'customer_id')}", member_id_hint=None, points=0,
        status="canceled", reason=None, description="Redemption canceled in Smile.io",
        reward_code=fulfillment.get("code") if isinstance(fulfillment.get("code"), str) else None,
    )


def loyaltylion_redemption(txn: dict, tenant: str, ours: Container[str]) -> LoyaltyEvent | None:
    """A LoyaltyLion claimed reward; voided, it is worth 0 (a positive redeem entry gives the points back)."""
    if not isinstance(txn, dict):
        raise RecordError("malformed_record", "transaction is not a JSON object")
    tid = native_id(txn, "id")
    if txn.get("resource") != "claimed_reward":
        return None
    claimed = txn.get("claimed_reward") if isinstance(txn.get("claimed_reward"), dict) else {}
    if (txn.get("reason") or claimed.get("note")) in ours:
        return None
    cost = claimed.get("point_cost", -(txn.get("points_approved") or 0))
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise RecordError("bad_amount", f"claimed reward point_cost is not a positive integer: {cost!r}")
    customer = txn.get("customer") if isinstance(txn.get("customer"), dict) else {}
    canceled = claimed.get("state") in ("void", "voided", "canceled", "cancelled", "refunded")
    return LoyaltyEvent(
        event_key=f"loyaltylion:{tenant}:claimed_reward:{claimed.get('id') or tid}", kind="redeem",
        source="loyaltylion", source_ref=str(claimed.get("id") or tid),
        member_key=f"loyaltylion:{tenant}:{native_id(customer, 'merchant_id')}", member_id_hint=None,
        points=0 if canceled else -cost, status="canceled" if canceled else "valid", reason=None,
        description=f"Redeemed in LoyaltyLion: {(claimed.get('reward') or {}).get('title') or 'reward'}"[:200],
        reward_code=(claimed.get("redeemable") or {}).get("code"),
    )


def adjustment_request(req: dict, tenant: str, program: Program) -> LoyaltyEvent:
    """A Salesforce adjustment request, validated (RULES.md §9): reason present, |points| within the
    limit; an invalid one is worth 0 and carries the reason it is rejected for."""
    if not isinstance(req, dict):
        raise RecordError("malformed_record", "adjustment request is not a JSON object")
    rid = native_id(req, "Id")
    contact = req.get("Contact__c")
    relation = req.get("Contact__r") if isinstance(req.get("Contact__r"), dict) else {}
    points = req.get("Points__c")
    problems = []
    if isinstance(points, bool) or points is None or int(points) != points:
        problems.append(f"Points__c is not a whole number: {points!r}")
        points = 0
    points = int(points)
    if not str(req.get("Reason__c") or "").strip():
        problems.append("Reason__c is empty")
    if abs(points) > program.adjustments.max_abs_points:
        problems.append(f"|Points__c| {abs(points)} is above adjustments.max_abs_points {program.adjustments.max_abs_points}")
    if points == 0 and not problems:
        problems.append("Points__c is 0")
    if not contact and not relation.get("Loyalty_Member_Id__c"):
        problems.append("no Contact__c")
    return LoyaltyEvent(
        event_key=f"salesforce:{tenant}:adjustment:{rid}", kind="manual", source="salesforce", source_ref=rid,
        member_key=f"salesforce:{tenant}:{contact}" if contact else None,
        member_id_hint=relation.get("Loyalty_Member_Id__c"),
        points=0 if problems else points, status="rejected" if problems else "valid",
        reason="; ".join(problems) or None, description=str(req.get("Reason__c") or "")[:200] or None,
    )


def salesforce_person_email(person: dict) -> tuple[str, str | None]:
    return native_id(person, "Id"), normalize_email(person.get("Email"))


def modified(record: dict, *fields: str):
    for f in fields:
        if isinstance(record, dict) and record.get(f):
            return iso_time(str(record[f]).replace("+0000", "+00:00"), f)
    raise RecordError("malformed_record", f"no {' / '.join(fields)}")


@dataclass(frozen=True)
class Referral:
    referral_key: str
    source: str
    referrer_key: str | None
    referrer_email: str | None
    friend_email: str
    state: str | None
    created_at: object
    friend_code: str | None = None  # the referral coupon the friend got: an order using it is theirs

    def row(self) -> dict:
        return dict(self.__dict__)  # flat fields: no deep copy (asdict was a third of normalize)


def smile_referral(ref: dict, tenant: str) -> Referral | None:
    if not isinstance(ref, dict):
        raise RecordError("malformed_record", "referral is not a JSON object")
    rid = native_id(ref, "id")
    sender = ref.get("sender_customer") if isinstance(ref.get("sender_customer"), dict) else {}
    receiver = ref.get("receiver_customer") if isinstance(ref.get("receiver_customer"), dict) else {}
    reward = ref.get("receiver_reward_fulfillment") if isinstance(ref.get("receiver_reward_fulfillment"), dict) else {}
    friend = normalize_email(ref.get("receiver_customer_email")) or normalize_email(receiver.get("email"))
    if friend is None:
        return None  # an invitation nobody has accepted yet
    return Referral(
        referral_key=f"smile:{tenant}:referral:{rid}", source="smile",
        referrer_key=f"smile:{tenant}:{sender['id']}" if sender.get("id") is not None else None,
        referrer_email=normalize_email(sender.get("email")), friend_email=friend, state=ref.get("state"),
        created_at=modified(ref, "created_at", "updated_at"), friend_code=_code(reward.get("code")),
    )


def _code(value: object) -> str | None:
    text = str(value).strip().upper() if value is not None else ""
    return text or None


def loyaltylion_referral(activity: dict, tenant: str) -> Referral | None:
    if not isinstance(activity, dict) or activity.get("name") != "$referral":
        return None
    aid = native_id(activity, "id")
    customer = activity.get("customer") if isinstance(activity.get("customer"), dict) else {}
    friend = normalize_email((activity.get("properties") or {}).get("referred_email"))
    if friend is None:
        raise RecordError("missing_email", f"referral activity {aid} has no properties.referred_email")
    return Referral(
        referral_key=f"loyaltylion:{tenant}:referral:{aid}", source="loyaltylion",
        referrer_key=f"loyaltylion:{tenant}:{customer['merchant_id']}" if customer.get("merchant_id") else None,
        referrer_email=normalize_email(customer.get("email")), friend_email=friend, state=activity.get("state"),
        created_at=modified(activity, "created_at", "updated_at"),
        friend_code=_code((activity.get("properties") or {}).get("referral_code")),
    )
