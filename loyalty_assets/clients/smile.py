"""Smile.io REST client (``/v1``) for the points push and the pulls (loyalty_apis.md §1, §5;
RULES.md §9).

Why it looks the way it does:

* **pacing**: Smile allows 10 requests/s per token and answers 429 beyond, so every HTTP attempt
  (retries included) first takes a token from a :class:`Pacer` (a token bucket, 9.5/s and a burst
  of 1 by default: requests are evenly spaced, so no one-second window ever holds more than 10).
  Clients sharing one API key in one process should share one pacer (``pacer=``);
* **reads** retry 429/5xx/dropped connections with backoff honouring ``Retry-After`` (the shared
  :func:`~loyalty_assets.clients.http.send`); lists follow ``metadata.next_cursor`` to the end,
  resending the filters with the cursor;
* **writes are not blindly retried**: Smile has no idempotency key, so ``POST`` is sent once per
  attempt and only retried when it certainly did not apply (429, or a connection that was never
  established). A timeout, a 5xx or a connection dropped after sending raises
  :class:`UncertainOutcomeError`; the caller (the outbox) then looks its ``internal_note`` up with
  :meth:`SmileClient.find_transaction_by_note` before sending again;
* a 422 on a points transaction (the balance would go negative) raises
  :class:`BalanceWouldBeNegativeError` carrying Smile's message; error messages and ``request_id``
  come from Smile's ``{"error": {"message", "request_id"}}`` body;
* email lookups are post-filtered for exact, case-insensitive equality (emails are not unique in
  Smile, so a list comes back; :func:`choose_customer` picks the one to push to).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from loyalty_assets.clients.http import (
    ApiConnectionError,
    ApiError,
    ClientError,
    HttpClient,
    RateLimitedError,
    RetryPolicy,
    ServerError,
)
from loyalty_assets.clients.magento import parse_json

log = logging.getLogger(__name__)

SMILE_MAX_LIMIT = 250


# --------------------------------------------------------------------------------------------------
# Errors


class UncertainOutcomeError(ApiError):
    """A non-idempotent write was sent but its outcome is unknown (timeout, 5xx, connection lost
    after sending): it may or may not have been applied. Look it up before sending it again.
    ``status`` is the 5xx status, or None when no response arrived; ``context`` holds what was
    sent (e.g. ``customer_id``, ``internal_note``), never credentials."""

    def __init__(
        self, status: int | None, message: str, url: str, *, context: Mapping[str, Any] | None = None
    ):
        super().__init__(status, message, url)
        self.context = dict(context or {})
        self.request_id: str | None = None


class PointsNotSendableError(ValueError):
    """A points change the client refuses before sending anything (not a positive whole number, or
    above the platform's per-call limit): it would never pass as it is."""


class BalanceWouldBeNegativeError(ClientError):
    """422: the points change would make the customer's balance negative (or, for a purchase, the
    customer lacks the points). ``message`` is the platform's own text."""

    request_id: str | None = None
    details: Any = None


# --------------------------------------------------------------------------------------------------
# Pacing


class Pacer:
    """A token bucket (GCRA form): ``rate`` tokens per second, at most ``burst`` at once.

    :meth:`acquire` blocks (with the injected ``sleep``) until a token is free. Thread-safe: each
    caller reserves its slot under the lock and sleeps outside it. ``waits``/``waited`` count how
    often and how long it slept, so tests can check that pacing happened.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate, self.burst = float(rate), float(burst)
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._tat: float | None = None  # theoretical arrival time of the next request
        self.acquired = 0
        self.waits = 0
        self.waited = 0.0

    def acquire(self) -> float:
        """Take one token; returns the seconds slept for it."""
        interval = 1.0 / self.rate
        with self._lock:
            now = self.clock()
            tat = now if self._tat is None else max(self._tat, now)
            slot = max(now, tat - (self.burst - 1) * interval)
            self._tat = tat + interval
            wait = slot - now
            self.acquired += 1
            if wait > 0:
                self.waits += 1
                self.waited += wait
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request as sent (each retry is one): what `sync_log` records of it (RULES.md §9,
    every call). `path` has no query string (which could hold an e-mail) and no credentials."""

    method: str
    path: str
    status: int | None  # None: no response (timeout, connection lost)
    error: str | None
    started_at: datetime
    finished_at: datetime


class PacedSession(requests.Session):
    """A ``requests.Session`` whose every request first takes a token from ``pacer``; ``on_call``,
    when set, is given an :class:`HttpCall` for every request, answered or not."""

    def __init__(self, pacer: Pacer):
        super().__init__()
        self.pacer = pacer
        self.on_call: Callable[[HttpCall], None] | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.pacer.acquire()
        started = datetime.now(UTC)
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            self._record(method, url, None, type(exc).__name__, started)
            raise
        self._record(method, url, response.status_code, None, started)
        return response

    def _record(self, method: str, url: str, status: int | None, error: str | None, started: datetime) -> None:
        if self.on_call is not None:
            self.on_call(HttpCall(method.upper(), urlsplit(url).path, status, error, started, datetime.now(UTC)))


def never_sent(exc: BaseException | None) -> bool:
    """True when a ``requests`` failure certainly happened before the request reached the server
    (connection refused, connect timeout), so resending a write cannot duplicate it."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def format_time(value: datetime | str) -> str:
    """An aware datetime as ISO-8601 UTC with milliseconds and ``Z``; strings pass through."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def normalize_email(email: str | None) -> str:
    return (email or "").strip().casefold()


class PacedClient(HttpClient):
    """An :class:`HttpClient` paced by a :class:`Pacer`, with vendor error bodies decoded and a
    write path (:meth:`post_once`) that never repeats a request that may have been applied."""

    vendor = "api"

    def __init__(
        self,
        base_url: str,
        *,
        rate_per_second: float,
        pacer: Pacer | None = None,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.pacer = pacer or Pacer(rate_per_second, clock=clock, sleep=sleep)
        super().__init__(
            base_url,
            timeout=timeout,
            policy=RetryPolicy(max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max),
            sleep=sleep,
            rng=rng,
            session=PacedSession(self.pacer),
        )

    @staticmethod
    def decode_error(exc: ApiError) -> None:
        """Replace ``exc.message`` with the vendor's ``{"error": {"message", ...}}`` text."""
        try:
            body = parse_json(exc.body or "")
        except ValueError:
            return
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            exc.message = error["message"]
            exc.request_id = error.get("request_id")  # type: ignore[attr-defined]
            exc.details = error.get("details")  # type: ignore[attr-defined]
            status = exc.status if exc.status is not None else "-"
            exc.args = (f"HTTP {status} from {exc.url}: {exc.message}",)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, path, **kwargs)
        except ApiError as exc:
            self.decode_error(exc)
            raise

    def json_request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return parse_json(response.content)
        except ValueError as exc:
            raise ApiError(response.status_code, f"response is not JSON: {exc}", response.url) from exc

    def post_once(
        self,
        path: str,
        body: Any,
        *,
        context: Mapping[str, Any],
        negative_balance_statuses: frozenset[int] = frozenset({422}),
    ) -> requests.Response:
        """POST a write that must not be duplicated.

        Retried (with backoff honouring ``Retry-After``) only when it certainly did not apply: a
        429, or a connection that was never established. A timeout, a 5xx or a connection lost
        after sending raises :class:`UncertainOutcomeError`; a 422 raises
        :class:`BalanceWouldBeNegativeError`; other errors raise the usual typed
        :class:`~loyalty_assets.clients.http.ApiError`.
        """
        url = self.url(path)
        attempts = self.policy.max_attempts
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                return self.request("POST", path, json=body, retry=False)
            except RateLimitedError as exc:
                if last:
                    raise
                delay = self.policy.backoff(attempt, self.rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.policy.max_retry_after))
                log.warning(
                    "%s POST %s -> 429; retry %d/%d in %.2fs", self.vendor, path, attempt, attempts - 1, delay
                )
                self.sleep(delay)
            except ApiConnectionError as exc:
                if not never_sent(exc.__cause__):
                    raise UncertainOutcomeError(
                        None,
                        f"outcome unknown: {exc.message} (the write may have been applied)",
                        url,
                        context=context,
                    ) from exc
                if last:
                    raise
                delay = self.policy.backoff(attempt, self.rng)
                log.warning(
                    "%s POST %s not connected; retry %d/%d in %.2fs",
                    self.vendor,
                    path,
                    attempt,
                    attempts - 1,
                    delay,
                )
                self.sleep(delay)
            except ServerError as exc:
                raise UncertainOutcomeError(
                    exc.status,
                    f"outcome unknown: {exc.message} (the write may have been applied)",
                    url,
                    context=context,
                ) from exc
            except ClientError as exc:
                if exc.status in negative_balance_statuses:
                    negative = BalanceWouldBeNegativeError(exc.status, exc.message, url, body=exc.body)
                    self.decode_error(negative)
                    raise negative from exc
                raise
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------
# Smile.io


def choose_customer(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The customer to push to among same-email records: never a ``disabled`` one; a ``member``
    before a ``candidate``; then the lowest id (the oldest record)."""
    usable = [c for c in candidates if c.get("state") != "disabled"]
    if not usable:
        return None
    return min(usable, key=lambda c: (c.get("state") != "member", int(c["id"])))


class SmileClient(PacedClient):
    """Smile.io ``/v1`` with a merchant API key (``SMILE_API_URL`` includes ``/v1``)."""

    user_agent = "loyalty-assets-smile/0.1"
    vendor = "smile"

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        rate_per_second: float = 9.5,
        pacer: Pacer | None = None,
        page_limit: int = SMILE_MAX_LIMIT,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if not api_key:
            raise ValueError("SmileClient needs an API key")
        if not 1 <= page_limit <= SMILE_MAX_LIMIT:
            raise ValueError(f"page_limit must be within 1..{SMILE_MAX_LIMIT}, got {page_limit}")
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
        """Every record of a cursor-paged list, newest first, following ``metadata.next_cursor``
        (filters are resent with each cursor)."""
        base = {k: v for k, v in (params or {}).items() if v is not None}
        base["limit"] = self.page_limit
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(base, cursor=cursor) if cursor else base
            body = self.json_request("GET", path, params=query)
            if not isinstance(body, dict) or not isinstance(body.get(key), list):
                raise ApiError(200, f"response has no {key!r} list", self.url(path))
            yield from body[key]
            cursor = (body.get("metadata") or {}).get("next_cursor")
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    # ----- customers

    def customers(
        self, *, updated_at_min: datetime | str | None = None, include_vip_status: bool = False
    ) -> list[dict[str, Any]]:
        """All customers (newest first), optionally only those updated since ``updated_at_min``."""
        params = {
            "updated_at_min": format_time(updated_at_min) if updated_at_min is not None else None,
            "include": "vip_status" if include_vip_status else None,
        }
        return list(self.iter_list("customers", "customers", params))

    def customers_by_email(self, email: str, *, include_vip_status: bool = False) -> list[dict[str, Any]]:
        """Every customer whose email equals ``email`` (trimmed, case-insensitive), all pages.
        Emails are not unique in Smile: see :func:`choose_customer`."""
        wanted = normalize_email(email)
        if not wanted:
            return []
        params = {"email": email.strip(), "include": "vip_status" if include_vip_status else None}
        return [
            c
            for c in self.iter_list("customers", "customers", params)
            if normalize_email(c.get("email")) == wanted
        ]

    def customer(self, customer_id: int, *, include_vip_status: bool = False) -> dict[str, Any] | None:
        """One customer, or None when Smile answers 404."""
        params = {"include": "vip_status"} if include_vip_status else None
        try:
            body = self.json_request("GET", f"customers/{int(customer_id)}", params=params)
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise
        return body.get("customer")

    # ----- points transactions

    def create_points_transaction(
        self,
        customer_id: int,
        points_change: int,
        *,
        description: str | None = None,
        internal_note: str | None = None,
    ) -> dict[str, Any]:
        """``POST /points_transactions`` (wrapped body) -> the created transaction.

        Raises :class:`BalanceWouldBeNegativeError` on 422 and :class:`UncertainOutcomeError` when
        it may or may not have been applied (then call :meth:`find_transaction_by_note`)."""
        if isinstance(points_change, bool) or not isinstance(points_change, int):
            raise TypeError(f"points_change must be an int, got {points_change!r}")
        payload: dict[str, Any] = {"customer_id": int(customer_id), "points_change": points_change}
        if description is not None:
            payload["description"] = description
        if internal_note is not None:
            payload["internal_note"] = internal_note
        context = {
            "customer_id": int(customer_id),
            "points_change": points_change,
            "internal_note": internal_note,
        }
        response = self.post_once("points_transactions", {"points_transaction": payload}, context=context)
        try:
            return parse_json(response.content)["points_transaction"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UncertainOutcomeError(
                response.status_code,
                f"unreadable {response.status_code} response: {exc}",
                response.url,
                context=context,
            ) from exc

    def iter_points_transactions(
        self, customer_id: int | None = None, updated_at_min: datetime | str | None = None
    ) -> Iterator[dict[str, Any]]:
        params = {
            "customer_id": int(customer_id) if customer_id is not None else None,
            "updated_at_min": format_time(updated_at_min) if updated_at_min is not None else None,
        }
        return self.iter_list("points_transactions", "points_transactions", params)

    def points_transactions(
        self, customer_id: int | None = None, updated_at_min: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        """All points transactions (newest first), filtered by customer and/or update time."""
        return list(self.iter_points_transactions(customer_id, updated_at_min))

    def find_transaction_by_note(self, customer_id: int, internal_note: str) -> dict[str, Any] | None:
        """The customer's (newest) points transaction whose ``internal_note`` equals
        ``internal_note``, or None: how the outbox settles an uncertain outcome."""
        for txn in self.iter_points_transactions(customer_id):
            if txn.get("internal_note") == internal_note:
                return txn
        return None

    # ----- redemptions, tiers, referrals, activities

    def reward_fulfillments(
        self, updated_at_min: datetime | str | None = None, *, customer_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Issued rewards (coupon codes of redemptions), newest first."""
        params = {
            "updated_at_min": format_time(updated_at_min) if updated_at_min is not None else None,
            "customer_id": int(customer_id) if customer_id is not None else None,
        }
        return list(self.iter_list("reward_fulfillments", "reward_fulfillments", params))

    def vip_tiers(self) -> list[dict[str, Any]]:
        body = self.json_request("GET", "vip_tiers")
        return list(body.get("vip_tiers") or [])

    def referrals(self, updated_at_min: datetime | str | None = None) -> list[dict[str, Any]]:
        """Referral objects via ``GET /referrals`` (path assumed: not confirmed by Smile's docs)."""
        params = {"updated_at_min": format_time(updated_at_min) if updated_at_min is not None else None}
        return list(self.iter_list("referrals", "referrals", params))

    def points_products(self) -> list[dict[str, Any]]:
        """Every points product (classic ``page``/``page_size`` paging)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.json_request(
                "GET", "points_products", params={"page": page, "page_size": SMILE_MAX_LIMIT}
            )
            rows = list(body.get("points_products") or [])
            out.extend(rows)
            if len(rows) < SMILE_MAX_LIMIT:
                return out
            page += 1

    def purchase_points_product(
        self, product_id: int, customer_id: int, points_to_spend: int | None = None
    ) -> dict[str, Any]:
        """Redeem points (unwrapped body) -> the ``points_purchase`` with its reward fulfillment.
        Not idempotent: same error contract as :meth:`create_points_transaction`."""
        body: dict[str, Any] = {"customer_id": int(customer_id)}
        if points_to_spend is not None:
            body["points_to_spend"] = int(points_to_spend)
        context = {"customer_id": int(customer_id), "points_product_id": int(product_id)}
        response = self.post_once(f"points_products/{int(product_id)}/purchase", body, context=context)
        return parse_json(response.content)["points_purchase"]

    def create_activity(
        self,
        token: str,
        *,
        customer_id: int | None = None,
        customer_email: str | None = None,
        distinct_id: str | None = None,
        created_on_origin_at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """``POST /activities`` (exactly one of ``customer_id``/``customer_email``)."""
        if (customer_id is None) == (customer_email is None):
            raise ValueError("give exactly one of customer_id or customer_email")
        activity: dict[str, Any] = {"token": token}
        if customer_id is not None:
            activity["customer_id"] = int(customer_id)
        else:
            activity["customer_email"] = customer_email
        if distinct_id is not None:
            activity["distinct_id"] = distinct_id
        if created_on_origin_at is not None:
            activity["created_on_origin_at"] = format_time(created_on_origin_at)
        context = {"token": token, "distinct_id": distinct_id}
        response = self.post_once("activities", {"activity": activity}, context=context)
        return parse_json(response.content)["activity"]


__all__ = [
    "BalanceWouldBeNegativeError",
    "HttpCall",
    "PacedClient",
    "PacedSession",
    "Pacer",
    "SmileClient",
    "UncertainOutcomeError",
    "choose_customer",
    "format_time",
    "never_sent",
    "normalize_email",
]
