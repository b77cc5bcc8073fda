"""BigCommerce REST Management API client for incremental extraction (commerce_apis.md §2, §8.1).

Why it looks the way it does:

* one client per store hash (``{api_url}/stores/{hash}/v2|v3/...``), ``X-Auth-Token`` auth;
* **orders** (v2, a bare JSON array): ``min_date_modified``/``max_date_modified`` in ISO-8601,
  ``sort=date_modified:asc``. BigCommerce filters are inclusive at second resolution, so the
  request asks for ``[floor(start), ceil(end)]`` and the client keeps exactly ``start <= modified <
  end``. Paging stops on **HTTP 204 with an empty body** or a short page. To survive orders being
  modified mid-scan (they leave the window and shift every later row back a page), the scan is
  keyset-like: after a full page it restarts at page 1 from the last row's ``date_modified``
  (inclusive; the overlap is deduplicated), and only walks ``page`` forward while a whole page
  shares one second. Each order is enriched with ``"products": [...]`` from
  ``GET /v2/orders/{id}/products`` (paged, 204 = none), the inline form CONTRACT.md §2 stores;
* **refunds** (v3): ``created:min``/``created:max`` (RFC 3339), id ascending, paged by
  ``meta.pagination`` (``current_page >= total_pages`` ends it);
* **customers** (v3): ``date_modified:min``/``:max`` (always full timestamps: a date-only max gets
  the current time added), ``sort=date_modified:asc``, keyset paging with the ``after`` cursor from
  ``meta.cursor_pagination`` (or the ``after`` in ``meta.pagination.links.next``);
* records are deduplicated on ``(id, modification time)``; money stays exactly as sent (JSON parsed
  with ``Decimal``; order money remains 4-decimal strings: mapping converts it, not this module);
* rate limits (§2.3): every response's ``X-Rate-Limit-Requests-Left``/``-Time-Reset-Ms`` are
  recorded; when few requests are left the client sleeps until the window resets before the next
  call, and a 429 is retried after ``Time-Reset-Ms`` (through the shared retry loop of
  :mod:`loyalty_assets.clients.http`, which also retries 5xx and dropped connections).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from loyalty_assets.clients.http import ApiError, HttpClient, RetryPolicy, response_date
from loyalty_assets.clients.magento import SearchResult, parse_json

log = logging.getLogger(__name__)

STREAMS = ("orders", "refunds", "customers")
#: stream -> the field that says when a record (version) was last modified
MODIFIED_FIELDS: dict[str, str] = {
    "orders": "date_modified",
    "refunds": "created",
    "customers": "date_modified",
}
MAX_PAGE_SIZE = 250


# --------------------------------------------------------------------------------------------------
# Parsing helpers (also used by the generic ingest code)


def parse_timestamp(value: str) -> datetime:
    """A BigCommerce timestamp, RFC-2822 (v2: ``Wed, 05 Dec 2018 20:16:55 +0000``) or ISO-8601
    (v3: ``2022-06-16T16:44:15+00:00``, ``...Z``), as an aware UTC datetime. Raises ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a BigCommerce timestamp: {value!r}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not a BigCommerce timestamp: {value!r}") from exc
        if parsed is None:
            raise ValueError(f"not a BigCommerce timestamp: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def record_id(stream: str, record: Mapping[str, Any]) -> str:
    """The native id of a record of ``stream`` as text (orders: the order number)."""
    _check_stream(stream)
    value = record.get("id")
    if value is None or isinstance(value, bool):
        raise ValueError(f"BigCommerce {stream} record has no id")
    return str(value)


def modified_at(stream: str, record: Mapping[str, Any]) -> datetime:
    """When the record (version) was last modified, aware UTC: orders ``date_modified`` (RFC-2822),
    refunds ``created`` (ISO; refunds are immutable), customers ``date_modified`` (ISO). Falls
    back to the creation date when the modification date is absent. Raises ValueError."""
    _check_stream(stream)
    value = record.get(MODIFIED_FIELDS[stream])
    if value in (None, "") and stream != "refunds":
        value = record.get("date_created")
    return parse_timestamp(value)


def format_iso(moment: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS+00:00`` (naive ones are refused)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _check_stream(stream: str) -> None:
    if stream not in MODIFIED_FIELDS:
        raise ValueError(f"unknown BigCommerce stream {stream!r} (known: {list(STREAMS)})")


def _floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _ceil_second(moment: datetime) -> datetime:
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _header_int(response: requests.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw.strip()))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# The client


class BigCommerceClient(HttpClient):
    """Reads orders (v2), refunds (v3) and customers (v3) of one BigCommerce store.

    ``api_url`` is the root without API paths (``https://api.bigcommerce.com``, or the emulator's
    base URL). ``rate_limit_reserve``: when a response says at most this many requests are left in
    the window, the next call first sleeps ``X-Rate-Limit-Time-Reset-Ms``. ``include_products``:
    enrich orders from ``/v2/orders/{id}/products`` in :meth:`fetch`.
    """

    def __init__(
        self,
        api_url: str,
        store_hash: str,
        access_token: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rate_limit_reserve: int = 1,
        include_products: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ):
        if not store_hash or not access_token:
            raise ValueError("BigCommerceClient needs a store_hash and an access_token")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        super().__init__(
            api_url,
            timeout=timeout,
            policy=RetryPolicy(max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max),
            sleep=sleep,
            rng=rng,
            session=session,
        )
        self.store_hash = store_hash
        self._access_token = access_token
        self.page_size = page_size
        self.rate_limit_reserve = max(0, rate_limit_reserve)
        self.include_products = include_products
        self._rate_lock = threading.Lock()
        self._requests_left: int | None = None
        self._reset_seconds: float = 0.0
        self._rate_seen_at: float = 0.0
        self.paced_sleeps = 0  # how often the client waited for a window before a call
        # A session hook (not a per-request one, which would replace the session's own hooks)
        # sees every attempt, including those the shared retry loop repeats.
        self.session.hooks["response"].append(self._observe)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, store_hash={self.store_hash!r})"

    # ----- transport: auth and pacing

    def auth_headers(self) -> Mapping[str, str]:
        return {"X-Auth-Token": self._access_token}

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook (runs for every attempt, retried ones included): remember the rate-limit
        headers, and give a 429 that carries ``Time-Reset-Ms`` but no ``Retry-After`` the
        equivalent ``Retry-After``, so the shared retry loop waits exactly until the reset."""
        left = _header_int(response, "X-Rate-Limit-Requests-Left")
        reset_ms = _header_int(response, "X-Rate-Limit-Time-Reset-Ms")
        if left is not None:
            with self._rate_lock:
                self._requests_left = left
                self._reset_seconds = max(0, reset_ms or 0) / 1000
                self._rate_seen_at = time.monotonic()
        if response.status_code == 429 and reset_ms is not None and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = f"{max(0, reset_ms) / 1000:.3f}"

    def _pace(self) -> None:
        """Before a call: if the last response said the window is (nearly) used up, wait for it."""
        with self._rate_lock:
            left, reset = self._requests_left, self._reset_seconds
            waited = time.monotonic() - self._rate_seen_at
            if left is None or left > self.rate_limit_reserve:
                return
            self._requests_left = None  # the next response tells us the new window
        delay = max(0.0, reset - waited)
        if delay > 0:
            self.paced_sleeps += 1
            log.info(
                "BigCommerce store %s: %d request(s) left in the window; waiting %.2fs",
                self.store_hash,
                left,
                delay,
            )
            self.sleep(delay)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self._pace()
        return super().request(method, path, **kwargs)

    def _path(self, version: str, suffix: str) -> str:
        return f"stores/{self.store_hash}/{version}/{suffix}"

    def _get(self, path: str, params: Mapping[str, Any]) -> tuple[Any, datetime]:
        """GET and parse (``None`` for a 204 or an empty body), with the server's ``Date``."""
        response = self.request("GET", path, params=params)
        server_time = response_date(response) or datetime.now(UTC)
        if response.status_code == 204 or not response.content.strip():
            return None, server_time
        try:
            return parse_json(response.content), server_time
        except ValueError as exc:
            raise ApiError(response.status_code, f"response is not JSON: {exc}", response.url) from exc

    # ----- orders (v2)

    def _orders_page(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], datetime]:
        body, server_time = self._get(self._path("v2", "orders"), params)
        if body is None:
            return [], server_time
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise ApiError(200, "v2 orders response is not a JSON array of orders", self.url("orders"))
        return body, server_time

    def order_products(self, order_id: Any) -> list[dict[str, Any]]:
        """All line items of an order (``GET /v2/orders/{id}/products``, paged; 204 = none)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body, _ = self._get(
                self._path("v2", f"orders/{order_id}/products"), {"page": page, "limit": self.page_size}
            )
            if body is None:
                break
            if not isinstance(body, list):
                raise ApiError(200, "v2 order products response is not a JSON array", self.url("products"))
            out.extend(body)
            if len(body) < self.page_size:
                break
            page += 1
        return out

    def _fetch_orders(self, start: datetime, end: datetime) -> SearchResult:
        cursor = _floor_second(start)
        upper = format_iso(_ceil_second(end))
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, datetime]] = set()
        pages, page = 0, 1
        server_time = datetime.now(UTC)
        while True:
            params = {
                "min_date_modified": format_iso(cursor),
                "max_date_modified": upper,
                "sort": "date_modified:asc",
                "limit": self.page_size,
                "page": page,
            }
            rows, server_time = self._orders_page(params)
            pages += 1
            for row in rows:
                key = (record_id("orders", row), modified_at("orders", row))
                if key in seen or not start <= key[1] < end:
                    continue
                seen.add(key)
                items.append(row)
            if len(rows) < self.page_size:
                break  # 204 (no rows) or a short page: the end
            last = _floor_second(modified_at("orders", rows[-1]))
            if last > cursor:
                cursor, page = last, 1  # keyset: restart from the last second seen
            else:
                page += 1  # a whole page within one second: walk the pages of that second
        if self.include_products:
            for order in items:
                if not isinstance(order.get("products"), list):
                    order["products"] = self.order_products(order["id"])
        # v2 announces no total (only /v2/orders/count, which would cost a call and race the scan).
        return SearchResult(items=items, total_count=None, server_time=server_time, pages=pages)  # type: ignore[arg-type]

    # ----- refunds (v3)

    def _v3_page(self, suffix: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict, datetime]:
        body, server_time = self._get(self._path("v3", suffix), params)
        if body is None:
            return [], {}, server_time
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ApiError(200, f"v3 {suffix} response is not a {{data, meta}} envelope", self.url(suffix))
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        return body["data"], meta, server_time

    def _fetch_refunds(self, start: datetime, end: datetime) -> SearchResult:
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, datetime]] = set()
        page, pages, total, dropped = 1, 0, 0, 0
        while True:
            params = {
                "created:min": format_iso(_floor_second(start)),
                "created:max": format_iso(_ceil_second(end)),
                "page": page,
                "limit": self.page_size,
            }
            rows, meta, server_time = self._v3_page("orders/payment_actions/refunds", params)
            pages += 1
            pagination = meta.get("pagination") or {}
            total = int(pagination.get("total") or total)
            dropped += self._collect("refunds", rows, start, end, seen, items)
            total_pages = pagination.get("total_pages")
            if not rows or len(rows) < self.page_size:
                break
            if isinstance(total_pages, int) and page >= total_pages:
                break
            page += 1
        return SearchResult(items=items, total_count=total - dropped, server_time=server_time, pages=pages)

    # ----- customers (v3)

    @staticmethod
    def _next_cursor(meta: Mapping[str, Any]) -> str | None:
        cursor_pagination = meta.get("cursor_pagination") or {}
        links = cursor_pagination.get("links") or {}
        if links.get("next") and cursor_pagination.get("end_cursor"):
            return str(cursor_pagination["end_cursor"])
        next_link = ((meta.get("pagination") or {}).get("links") or {}).get("next")
        if next_link:
            after = parse_qs(urlsplit(next_link).query).get("after")
            if after:
                return after[0]
        return None

    def _fetch_customers(self, start: datetime, end: datetime) -> SearchResult:
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, datetime]] = set()
        base = {
            "date_modified:min": format_iso(_floor_second(start)),
            "date_modified:max": format_iso(_ceil_second(end)),
            "sort": "date_modified:asc",
            "limit": self.page_size,
        }
        after: str | None = None
        pages, total, dropped = 0, 0, 0
        while True:
            params = dict(base, after=after) if after else base
            rows, meta, server_time = self._v3_page("customers", params)
            pages += 1
            total = int((meta.get("pagination") or {}).get("total") or total)
            dropped += self._collect("customers", rows, start, end, seen, items)
            after = self._next_cursor(meta) if rows else None
            if not after:
                break
        return SearchResult(items=items, total_count=total - dropped, server_time=server_time, pages=pages)

    @staticmethod
    def _collect(
        stream: str,
        rows: list[dict[str, Any]],
        start: datetime,
        end: datetime,
        seen: set[tuple[str, datetime]],
        items: list[dict[str, Any]],
    ) -> int:
        """Keep the new rows inside ``[start, end)``; returns how many the server counted that lie
        outside it (its bounds are inclusive whole seconds), so totals can be compared exactly."""
        outside = 0
        for row in rows:
            key = (record_id(stream, row), modified_at(stream, row))
            if not start <= key[1] < end:
                outside += 1
            elif key not in seen:
                seen.add(key)
                items.append(row)
        return outside

    # ----- public reads

    def fetch(self, stream: str, start: datetime, end: datetime) -> SearchResult:
        """Every record of ``stream`` (``orders``, ``refunds``, ``customers``) modified within
        ``[start, end)`` exactly, ascending by modification time, deduplicated on ``(id,
        modified)``; orders carry their line items inline as ``"products": [...]``.

        ``total_count`` is None for orders (v2 announces no total); for refunds and customers it is
        the server's total less the rows it counted outside the half-open window, so it equals
        ``len(items)`` unless rows changed during the scan."""
        _check_stream(stream)
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if start >= end:
            raise ValueError(f"empty or inverted window [{start}, {end})")
        if stream == "orders":
            result = self._fetch_orders(start, end)
        elif stream == "refunds":
            result = self._fetch_refunds(start, end)
        else:
            result = self._fetch_customers(start, end)
        items = sorted(result.items, key=lambda r: (modified_at(stream, r), _id_order(r)))
        return SearchResult(
            items=items, total_count=result.total_count, server_time=result.server_time, pages=result.pages
        )

    def lookahead(self, stream: str, since: datetime, limit: int) -> SearchResult:
        """Up to ``limit`` records modified at or after ``since``, ascending, in one request (orders
        without their products), so a sensor can see whether new data exists. ``total_count`` is
        the server's total for v3 streams and the number of rows returned for orders."""
        _check_stream(stream)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        limit = min(limit, MAX_PAGE_SIZE)
        low = format_iso(_floor_second(since))
        if stream == "orders":
            rows, server_time = self._orders_page(
                {"min_date_modified": low, "sort": "date_modified:asc", "limit": limit, "page": 1}
            )
            total = len(rows)
        elif stream == "refunds":
            rows, meta, server_time = self._v3_page(
                "orders/payment_actions/refunds", {"created:min": low, "limit": limit, "page": 1}
            )
            total = int((meta.get("pagination") or {}).get("total") or len(rows))
        else:
            rows, meta, server_time = self._v3_page(
                "customers", {"date_modified:min": low, "sort": "date_modified:asc", "limit": limit}
            )
            total = int((meta.get("pagination") or {}).get("total") or len(rows))
        items = [r for r in rows if modified_at(stream, r) >= since]
        items.sort(key=lambda r: (modified_at(stream, r), _id_order(r)))
        return SearchResult(items=items[:limit], total_count=total, server_time=server_time, pages=1)

    def server_time(self) -> datetime:
        """The store's current time (``Date`` of a minimal authenticated request), so windows are
        bounded by the server's clock rather than ours."""
        response = self.request("GET", self._path("v2", "orders"), params={"limit": 1, "page": 1})
        return response_date(response) or datetime.now(UTC)


def _id_order(record: Mapping[str, Any]) -> tuple[int, Any]:
    value = record.get("id")
    return (0, value) if isinstance(value, int) else (1, str(value))


__all__ = [
    "MAX_PAGE_SIZE",
    "MODIFIED_FIELDS",
    "STREAMS",
    "BigCommerceClient",
    "format_iso",
    "modified_at",
    "parse_timestamp",
    "record_id",
]
