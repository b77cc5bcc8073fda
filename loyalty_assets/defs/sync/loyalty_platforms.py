"""Pushing spendable points to Smile.io and LoyaltyLion through the outbox, exactly once.

Each attempt is recorded (outbox status `sending` + a `sync_log` row) before the call and its outcome
after; the DuckDB connection is never held during HTTP. A batch left `sending` by a crash or an
uncertain response is settled by looking its id up in the target (Smile `internal_note`,
LoyaltyLion adjustment reason) before anything is sent again. A 422 (balance would go negative)
leaves the batch `blocked` with the reason; a member without a customer in the target (its pulled
customers, linked by identity) stays `awaiting_customer` and is retried on every run. Nothing is
dropped.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from loyalty_assets.clients.http import ApiError
from loyalty_assets.clients.smile import (
    BalanceWouldBeNegativeError,
    PointsNotSendableError,
    UncertainOutcomeError,
)
from loyalty_assets.lib.outbox import Batch, Outcome

CHUNK = 100


@dataclass
class PushCounts:
    sent: int = 0
    blocked: int = 0
    awaiting_customer: int = 0
    failed: int = 0
    uncertain: int = 0
    calls: int = 0

    def add(self, status: str) -> None:
        name = "uncertain" if status == "sending" else status
        setattr(self, name, getattr(self, name) + 1)


class SmileTarget:
    name = "smile"

    def __init__(self, client):
        self.client = client

    def settle(self, customer_id: str, batch_id: str) -> str | None:
        txn = self.client.find_transaction_by_note(int(customer_id), batch_id)
        return str(txn["id"]) if txn else None

    def send(self, customer_id: str, batch: Batch) -> str:
        txn = self.client.create_points_transaction(
            int(customer_id),
            int(batch.points),
            description=f"Loyalty points update ({batch.entries} entries)",
            internal_note=batch.batch_id,
        )
        return str(txn.get("id"))


class LoyaltyLionTarget:
    name = "loyaltylion"

    def __init__(self, client):
        self.client = client

    def settle(self, customer_id: str, batch_id: str) -> str | None:
        adjustment = self.client.find_adjustment(customer_id, batch_id)
        return str(adjustment.get("id", batch_id)) if adjustment else None

    def send(self, customer_id: str, batch: Batch) -> str:
        if batch.points > 0:
            self.client.add_points(customer_id, int(batch.points), reason=batch.batch_id)
        else:
            self.client.remove_points(customer_id, int(-batch.points), reason=batch.batch_id)
        return batch.batch_id


def push_one(target, batch: Batch) -> Outcome:
    """One batch: settle an unknown earlier outcome, else send, to the member's customer in the
    target (from the pulled customers, linked to the member by identity)."""
    customer = batch.external_customer_id
    matched_by = "identity"
    try:
        if customer is None:
            return Outcome(
                batch.batch_id, "awaiting_customer", message=f"no {target.name} customer for this member yet"
            )
        if batch.status == "sending":
            try:
                ref = target.settle(customer, batch.batch_id)
            except ApiError as exc:
                # still unknown: sending now could apply it twice, so the next run looks it up again
                return Outcome(batch.batch_id, "sending", exc.status,
                               f"outcome still unknown, its lookup failed ({type(exc).__name__}: {exc}); "
                               "will check before resending", customer, None, matched_by)
            if ref is not None:
                return Outcome(
                    batch.batch_id, "sent", 200, "found after an uncertain outcome", customer, ref, matched_by
                )
        ref = target.send(customer, batch)
        return Outcome(batch.batch_id, "sent", 201, None, customer, ref, matched_by)
    except BalanceWouldBeNegativeError as exc:
        return Outcome(batch.batch_id, "blocked", exc.status, f"refused: {exc}", customer, None, matched_by)
    except PointsNotSendableError as exc:  # refused before sending (LoyaltyLion: above 1,000,000 points a call)
        return Outcome(batch.batch_id, "blocked", None, f"not sendable: {exc}", customer, None, matched_by)
    except UncertainOutcomeError as exc:
        return Outcome(
            batch.batch_id,
            "sending",
            exc.status,
            f"outcome unknown, will check before resending: {exc}",
            customer,
            None,
            matched_by,
        )
    except ApiError as exc:
        return Outcome(
            batch.batch_id, "failed", exc.status, f"{type(exc).__name__}: {exc}", batch.external_customer_id
        )


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
