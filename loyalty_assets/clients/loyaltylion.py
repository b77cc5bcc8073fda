"""LoyaltyLion Admin API client (``/v2``) for the points push and the pulls (loyalty_apis.md §2, §5).

* ``Authorization: Bearer pat_…``; ``LOYALTYLION_API_URL`` is the host root, requests go to
  ``{url}/v2/...``;
* paced below the documented 20 requests/s per key by a token bucket (19/s, burst 1), every
  attempt included; reads retry 429/5xx/dropped connections honouring ``Retry-After``;
* ``GET /v2/customers?email=`` is a **substring** match, so :meth:`LoyaltyLionClient.customers_by_email`
  keeps only exact (trimmed, case-insensitive) matches;
* lists follow ``cursor.next``; a cursor carries the original filters, so follow-ups send only
  ``cursor`` and ``limit``;
* add/remove points have no idempotency key: they are sent like Smile writes
  (:meth:`~loyalty_assets.clients.smile.PacedClient.post_once`): retried only when certainly not
  applied, :class:`~loyalty_assets.clients.smile.UncertainOutcomeError` otherwise, after which the
  caller looks the ``reason`` up with :meth:`LoyaltyLionClient.find_adjustment` (the emulator echoes
  ``reason`` as ``adjustment.note``; that the real API does is unconfirmed). ``reason`` is shown to
  the shopper. A 422 raises :class:`~loyalty_assets.clients.smile.BalanceWouldBeNegativeError`;
  the 201/204 responses have empty bodies and are never parsed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from loyalty_assets.clients.http import ApiError
from loyalty_assets.clients.smile import (
    PacedClient,
    Pacer,
    PointsNotSendableError,
    format_time,
    normalize_email,
)

LOYALTYLION_MAX_LIMIT = 500
MAX_POINTS = 1_000_000


class LoyaltyLionClient(PacedClient):
    """LoyaltyLion ``/v2`` with a ``pat_`` API key (or an OAuth access token)."""

    user_agent = "loyalty-assets-loyaltylion/0.1"
    vendor = "loyaltylion"

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        rate_per_second: float = 19.0,
        pacer: Pacer | None = None,
        page_limit: int = LOYALTYLION_MAX_LIMIT,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if not api_key:
            raise ValueError("LoyaltyLionClient needs an API key")
        if not 1 <= page_limit <= LOYALTYLION_MAX_LIMIT:
            raise ValueError(f"page_limit must be within 1..{LOYALTYLION_MAX_LIMIT}, got {page_limit}")
        super().__init__(
            api_url,
            rate_per_second=rate_per_second,
            pacer=pacer,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        self._api_key = api_key
        self.page_limit = page_limit

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    # ----- paging

    def iter_list(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every record of a cursor-paged list (newest first), following ``cursor.next``."""
        query: dict[str, Any] = {k: v for k, v in (params or {}).items() if v is not None}
        query["limit"] = self.page_limit
        seen: set[str] = set()
        while True:
            body = self.json_request("GET", path, params=query)
            if not isinstance(body, dict) or not isinstance(body.get(key), list):
                raise ApiError(200, f"response has no {key!r} list", self.url(path))
            yield from body[key]
            nxt = (body.get("cursor") or {}).get("next")
            if not nxt or nxt in seen:
                return
            seen.add(nxt)
            query = {"cursor": nxt, "limit": self.page_limit}  # the cursor carries the filters

    # ----- customers

    def customers(
        self,
        *,
        updated_at_min: datetime | str | None = None,
        updated_at_max: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """All customers (guests and non-enrolled included; filter on ``enrolled``)."""
        params = {
            "updated_at_min": format_time(updated_at_min) if updated_at_min is not None else None,
            "updated_at_max": format_time(updated_at_max) if updated_at_max is not None else None,
        }
        return list(self.iter_list("v2/customers", "customers", params))

    def customers_by_email(self, email: str) -> list[dict[str, Any]]:
        """Customers whose email equals ``email`` (trimmed, case-insensitive): the API's
        substring matches are filtered down to exact ones."""
        wanted = normalize_email(email)
        if not wanted:
            return []
        return [
            c
            for c in self.iter_list("v2/customers", "customers", {"email": email.strip()})
            if normalize_email(c.get("email")) == wanted
        ]

    # ----- points

    @staticmethod
    def _points_body(points: int, reason: str | None, upper: int | None) -> dict[str, Any]:
        if (
            isinstance(points, bool)
            or not isinstance(points, int)
            or points < 1
            or (upper and points > upper)
        ):
            raise PointsNotSendableError(
                f"points must be a positive integer{f' up to {upper:,}' if upper else ''}, got {points!r}"
            )
        return {"points": points, "reason": reason}

    def add_points(self, merchant_id: str, points: int, reason: str | None = None) -> None:
        """``POST /v2/customers/{merchant_id}/points`` (201, empty body). ``reason`` is shown to
        the shopper. Raises :class:`UncertainOutcomeError` when the outcome is unknown."""
        body = self._points_body(points, reason, MAX_POINTS)
        self.post_once(
            f"v2/customers/{quote(str(merchant_id), safe='')}/points",
            body,
            context={"merchant_id": str(merchant_id), "points": points, "reason": reason},
        )

    def remove_points(self, merchant_id: str, points: int, reason: str | None = None) -> None:
        """``POST /v2/customers/{merchant_id}/remove_points`` (204, empty body); 422 ->
        :class:`BalanceWouldBeNegativeError`; unknown outcome -> :class:`UncertainOutcomeError`."""
        body = self._points_body(points, reason, None)
        self.post_once(
            f"v2/customers/{quote(str(merchant_id), safe='')}/remove_points",
            body,
            context={"merchant_id": str(merchant_id), "points": -points, "reason": reason},
        )

    # ----- transactions and activities

    def iter_transactions(
        self,
        merchant_id: str | None = None,
        *,
        customer_id: int | None = None,
        since_id: int | None = None,
        created_at_min: datetime | str | None = None,
        created_at_max: datetime | str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Transactions, newest first: of one customer by ``merchant_id`` (our id), or all
        (optionally of LoyaltyLion's numeric ``customer_id``). With ``since_id`` the API answers
        ascending pages of ids above it; this follows them to the end."""
        path = (
            f"v2/customers/{quote(str(merchant_id), safe='')}/transactions"
            if merchant_id
            else "v2/transactions"
        )
        params: dict[str, Any] = {
            "customer_id": customer_id if not merchant_id else None,
            "created_at_min": format_time(created_at_min) if created_at_min is not None else None,
            "created_at_max": format_time(created_at_max) if created_at_max is not None else None,
        }
        if since_id is None:
            yield from self.iter_list(path, "transactions", params)
            return
        last = since_id
        while True:
            query = {k: v for k, v in params.items() if v is not None}
            query.update(since_id=last, limit=self.page_limit)
            rows = self.json_request("GET", path, params=query).get("transactions") or []
            yield from rows
            if len(rows) < self.page_limit:
                return
            last = max(int(r["id"]) for r in rows)

    def transactions(self, merchant_id: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """All pages of :meth:`iter_transactions`."""
        return list(self.iter_transactions(merchant_id, **filters))

    def find_adjustment(self, merchant_id: str, reason: str) -> dict[str, Any] | None:
        """The customer's newest ``adjustment`` transaction whose note equals ``reason``."""
        for txn in self.iter_transactions(merchant_id):
            if txn.get("resource") == "adjustment" and (txn.get("adjustment") or {}).get("note") == reason:
                return txn
        return None

    def activities(
        self, *, created_at_min: datetime | str | None = None, created_at_max: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        """Activities (referral activities included), newest first."""
        params = {
            "created_at_min": format_time(created_at_min) if created_at_min is not None else None,
            "created_at_max": format_time(created_at_max) if created_at_max is not None else None,
        }
        return list(self.iter_list("v2/activities", "activities", params))


__all__ = ["LOYALTYLION_MAX_LIMIT", "LoyaltyLionClient", "MAX_POINTS"]
