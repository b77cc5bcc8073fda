"""Salesforce B2C Commerce (SCAPI Orders admin API) client for incremental extraction
(commerce_apis.md §5, §8.1).

Why it looks the way it does:

* a window ``[start, end)`` on the order's ``lastModified`` is sent as ``lastModifiedDateFrom``
  (inclusive) / ``lastModifiedDateTo`` (exclusive), UTC ISO-8601 with milliseconds (SCAPI
  timestamps have millisecond resolution, so bounds are rounded *up* to the millisecond: ``>=
  ceil(t)`` is exactly ``>= t`` and ``< ceil(t)`` exactly ``< t`` for such values);
* ``sortBy=last_modified_date&sortOrder=asc`` (the API defaults to creation date, descending);
* offset paging with ``limit`` <= 200 that stops on a **short page**: the documented response is
  ``{"data": [...]}`` with no total count (a ``total``, when a server sends one, is only used to
  split early);
* **offset + limit may never exceed 10,000** (a 400 otherwise). When a window holds more, it is
  split in two halves by time and each half fetched the same way, recursively, down to one
  millisecond (beyond that the window cannot be read completely and an :class:`ApiError` says so);
* results are deduplicated on ``(orderNo, lastModified)`` and returned ascending by
  ``(lastModified, orderNo)``; money stays ``Decimal`` (``parse_float=Decimal``) and records keep
  their native JSON shape;
* retries (429/5xx/dropped connections, ``Retry-After``) and typed errors come from
  :mod:`loyalty_assets.clients.http`. A static bearer token cannot be refreshed, so a 401 is an
  :class:`AuthError` at once.

Refunds: SCAPI Orders has no refund list (commerce_apis.md §5); only the ``orders`` stream exists.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from loyalty_assets.clients.http import ApiError, HttpClient, RetryPolicy, response_date
from loyalty_assets.clients.magento import SearchResult

log = logging.getLogger(__name__)

#: stream -> (id field, modification-time field)
STREAMS: dict[str, tuple[str, str]] = {"orders": ("orderNo", "lastModified")}
MAX_PAGE_SIZE = 200
MAX_OFFSET_PLUS_LIMIT = 10_000
MIN_SPLIT = timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------------
# Parsing helpers


def parse_json(text: str | bytes) -> Any:
    """JSON with every non-integer number as ``Decimal`` (money is never a float)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_float=Decimal)


def sfcc_time(value: str) -> datetime:
    """A SCAPI timestamp (``2020-11-04T14:13:31.061Z``) as an aware UTC datetime (a value without a
    zone is taken as UTC, the API's zone)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_sfcc_time(moment: datetime) -> str:
    """An aware datetime as the UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ`` SCAPI uses (truncated to ms).

    Naive datetimes are refused: guessing their zone is how windows silently shift by hours."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ceil_ms(moment: datetime) -> datetime:
    """Round up to a whole millisecond (SCAPI timestamps have millisecond resolution)."""
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def _stream(stream: str) -> tuple[str, str]:
    if stream not in STREAMS:
        raise ValueError(f"unknown SFCC stream {stream!r} (known: {sorted(STREAMS)})")
    return STREAMS[stream]


def record_id(stream: str, record: Mapping[str, Any]) -> str:
    """The native id of a record of ``stream`` (an order's ``orderNo``)."""
    id_field, _ = _stream(stream)
    value = record.get(id_field)
    if value in (None, ""):
        raise ValueError(f"SFCC {stream} record has no {id_field!r}")
    return str(value)


def modified_at(stream: str, record: Mapping[str, Any]) -> datetime:
    """When a record of ``stream`` was last modified (``lastModified``), aware UTC."""
    _, field = _stream(stream)
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"SFCC {stream} record has no {field!r}")
    return sfcc_time(value)


def _order_key(stream: str, record: Mapping[str, Any]) -> tuple[datetime, str]:
    """Ascending output order; a record without a usable ``lastModified`` sorts first."""
    try:
        moment = modified_at(stream, record)
    except ValueError:
        moment = datetime.min.replace(tzinfo=UTC)
    return moment, str(record.get(STREAMS[stream][0]))


# --------------------------------------------------------------------------------------------------
# The client


class _WindowTooLarge(Exception):
    """The window holds more rows than offset paging can reach (offset + limit > the cap)."""


class SfccClient(HttpClient):
    """Reads orders of one SCAPI organization (``/checkout/orders/v1/organizations/<id>/orders``).

    ``api_url`` is the host root (``https://<shortCode>.api.commercecloud.salesforce.com``, or the
    emulator's base URL); ``access_token`` an Account Manager bearer token with scope
    ``sfcc.orders``. ``site_ids``: when given, every read is made once per site with ``siteId`` (the
    spec declares the parameter required; the emulator does not by default) and the results are
    merged. ``max_offset_plus_limit`` is the API's paging cap (10,000; lower only in tests).
    """

    def __init__(
        self,
        api_url: str,
        organization_id: str,
        access_token: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        site_ids: Sequence[str] | None = None,
        max_offset_plus_limit: int = MAX_OFFSET_PLUS_LIMIT,
    ):
        if not organization_id:
            raise ValueError("SfccClient needs an organization_id")
        if not access_token:
            raise ValueError("SfccClient needs an access_token")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if max_offset_plus_limit < 1:
            raise ValueError(f"max_offset_plus_limit must be >= 1, got {max_offset_plus_limit}")
        super().__init__(
            api_url,
            timeout=timeout,
            policy=RetryPolicy(max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max),
            sleep=sleep,
            rng=rng,
            session=session,
        )
        self.organization_id = organization_id
        self._access_token = access_token
        self.page_size = page_size
        self.site_ids = list(site_ids) if site_ids else []
        self.max_offset_plus_limit = max_offset_plus_limit

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._access_token}"}

    @property
    def orders_path(self) -> str:
        return f"checkout/orders/v1/organizations/{quote(self.organization_id, safe='')}/orders"

    # ----- one page

    def _page(self, params: Mapping[str, str]) -> tuple[dict[str, Any], datetime]:
        response = self.request("GET", self.orders_path, params=params)
        try:
            body = parse_json(response.content)
        except ValueError as exc:
            raise ApiError(response.status_code, f"response is not JSON: {exc}", response.url) from exc
        if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
            raise ApiError(response.status_code, "response is not a SCAPI orders envelope", response.url)
        body.setdefault("data", [])
        return body, response_date(response) or datetime.now(UTC)

    def _sites(self) -> list[str | None]:
        return list(self.site_ids) or [None]

    @staticmethod
    def _base_params(site: str | None) -> dict[str, str]:
        params = {"sortBy": "last_modified_date", "sortOrder": "asc"}
        if site is not None:
            params["siteId"] = site
        return params

    # ----- reads

    def fetch(self, stream: str, start: datetime, end: datetime) -> SearchResult:
        """All records of ``stream`` with ``start <= lastModified < end``: ascending by
        ``(lastModified, orderNo)``, deduplicated on ``(orderNo, lastModified)``. ``total_count``
        is the number of records returned; ``pages`` counts HTTP requests made."""
        _stream(stream)
        for moment in (start, end):
            if moment.tzinfo is None:
                raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
        if start >= end:
            raise ValueError(f"empty or inverted window [{start}, {end})")
        lo, hi = _ceil_ms(start), _ceil_ms(end)
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        state = {"pages": 0, "server_time": None}
        for site in self._sites():
            if lo < hi:
                self._fetch_window(stream, site, lo, hi, seen, state)
        server_time = state["server_time"] or self.server_time()
        items = sorted(seen.values(), key=lambda r: _order_key(stream, r))
        return SearchResult(
            items=items, total_count=len(items), server_time=server_time, pages=state["pages"]
        )

    def _fetch_window(
        self,
        stream: str,
        site: str | None,
        lo: datetime,
        hi: datetime,
        seen: dict[tuple[str, str], dict[str, Any]],
        state: dict[str, Any],
    ) -> None:
        try:
            self._scan(stream, site, lo, hi, seen, state)
        except _WindowTooLarge:
            if hi - lo <= MIN_SPLIT:
                raise ApiError(
                    None,
                    f"more than {self.max_offset_plus_limit} SFCC {stream} share the millisecond window "
                    f"[{format_sfcc_time(lo)}, {format_sfcc_time(hi)}); offset paging cannot read them all",
                    self.url(self.orders_path),
                ) from None
            half = (hi - lo) / 2
            mid = _ceil_ms(lo + half)
            if mid >= hi:
                mid = hi - MIN_SPLIT
            log.info(
                "SFCC %s window [%s, %s) exceeds offset+limit %d; splitting at %s",
                stream,
                format_sfcc_time(lo),
                format_sfcc_time(hi),
                self.max_offset_plus_limit,
                format_sfcc_time(mid),
            )
            self._fetch_window(stream, site, lo, mid, seen, state)
            self._fetch_window(stream, site, mid, hi, seen, state)

    def _scan(
        self,
        stream: str,
        site: str | None,
        lo: datetime,
        hi: datetime,
        seen: dict[tuple[str, str], dict[str, Any]],
        state: dict[str, Any],
    ) -> None:
        """Offset-page one window; raise :class:`_WindowTooLarge` when the cap would be passed."""
        params = self._base_params(site)
        params["lastModifiedDateFrom"] = format_sfcc_time(lo)
        params["lastModifiedDateTo"] = format_sfcc_time(hi)
        offset = 0
        while True:
            limit = min(self.page_size, self.max_offset_plus_limit - offset)
            if limit < 1:
                raise _WindowTooLarge()
            body, server_time = self._page({**params, "limit": str(limit), "offset": str(offset)})
            state["pages"] += 1
            state["server_time"] = server_time
            total = body.get("total")
            if offset == 0 and isinstance(total, int) and total > self.max_offset_plus_limit:
                raise _WindowTooLarge()  # the server told us up front: do not page 10,000 rows first
            data = body["data"]
            for record in data:
                if not isinstance(record, dict):
                    raise ApiError(200, "an orders entry is not an object", self.url(self.orders_path))
                seen[(record_id(stream, record), str(record.get(STREAMS[stream][1])))] = record
            if len(data) < limit:
                return
            offset += len(data)
            if offset >= self.max_offset_plus_limit:
                raise _WindowTooLarge()

    def lookahead(self, stream: str, since: datetime, limit: int) -> SearchResult:
        """Up to ``limit`` (at most 200) records with ``lastModified >= since``, ascending, in one
        request per site; lets a sensor see whether new data exists without a full scan.
        ``total_count`` is the server's ``total`` when it sends one, else the number returned."""
        _stream(stream)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        limit = min(limit, MAX_PAGE_SIZE)
        items: list[dict[str, Any]] = []
        total_count, pages, server_time = 0, 0, None
        for site in self._sites():
            params = self._base_params(site)
            params.update(
                {
                    "lastModifiedDateFrom": format_sfcc_time(_ceil_ms(since)),
                    "limit": str(limit),
                    "offset": "0",
                }
            )
            body, server_time = self._page(params)
            pages += 1
            items.extend(body["data"])
            total = body.get("total")
            total_count += total if isinstance(total, int) else len(body["data"])
        items.sort(key=lambda r: _order_key(stream, r))
        assert server_time is not None
        return SearchResult(
            items=items[:limit], total_count=total_count, server_time=server_time, pages=pages
        )

    def server_time(self) -> datetime:
        """The API's current time (``Date`` of a minimal authenticated list request), so windows
        are bounded by the server's clock rather than ours."""
        params = {"limit": "1", "offset": "0"}
        if self.site_ids:
            params["siteId"] = self.site_ids[0]
        response = self.request("GET", self.orders_path, params=params)
        return response_date(response) or datetime.now(UTC)

    def __repr__(self) -> str:  # never show the token
        return f"SfccClient(base_url={self.base_url!r}, organization_id={self.organization_id!r})"


__all__ = [
    "MAX_OFFSET_PLUS_LIMIT",
    "MAX_PAGE_SIZE",
    "STREAMS",
    "SfccClient",
    "format_sfcc_time",
    "modified_at",
    "parse_json",
    "record_id",
    "sfcc_time",
]
