"""commercetools HTTP API client for incremental extraction (commerce_apis.md §3, §8.1).

Why it looks the way it does:

* auth is OAuth2 client credentials: ``POST {auth_url}/oauth/token`` with HTTP Basic
  ``client_id:client_secret`` and ``grant_type=client_credentials`` (optional ``scope``); the bearer
  token is cached until shortly before ``expires_in`` runs out and fetched again on a 401;
* a window ``[start, end)`` on ``lastModifiedAt`` is sent as the predicate
  ``lastModifiedAt >= :start and lastModifiedAt < :end`` with ``var.start``/``var.end`` in UTC ISO
  with milliseconds (commercetools' resolution; bounds are rounded up to the millisecond, so
  ``>= ceil(t)`` is exactly ``>= t``), sorted ``lastModifiedAt asc`` then ``id asc``;
* **keyset paging, never a deep offset** (``offset`` stops at 10 000): every page has ``offset=0``
  and, after the first, a second AND-ed ``where``
  ``lastModifiedAt > :lastAt or (lastModifiedAt = :lastAt and id > :lastId)`` from the last record
  seen, so records sharing a timestamp are neither skipped nor repeated; paging stops when a page
  has fewer than ``limit`` results (§8.1.4). Pages after the first ask ``withTotal=false``;
* results are deduplicated on ``(id, version)``; money stays ``Decimal`` (``parse_float=Decimal``),
  records keep their native JSON shape (``centAmount`` + ``fractionDigits`` + ``currencyCode``);
* transient failures (429/5xx/connection errors) are retried by the shared :mod:`http` layer.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from loyalty_assets.clients.http import ApiError, AuthError, HttpClient, RetryPolicy, response_date
from loyalty_assets.clients.magento import SearchResult

log = logging.getLogger(__name__)

#: the streams this client reads (API paths below /{projectKey}/)
STREAMS: tuple[str, ...] = ("orders", "payments", "customers")
TOKEN_PATH = "oauth/token"
MAX_PAGE_SIZE = 500  # commercetools' maximum `limit`

WINDOW_PREDICATE = "lastModifiedAt >= :start and lastModifiedAt < :end"
KEYSET_PREDICATE = "lastModifiedAt > :lastAt or (lastModifiedAt = :lastAt and id > :lastId)"
SORT = ["lastModifiedAt asc", "id asc"]


# --------------------------------------------------------------------------------------------------
# Parsing helpers


def parse_json(text: str | bytes) -> Any:
    """JSON with every non-integer number as ``Decimal`` (money is never a float)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_float=Decimal)


def ct_time(value: str) -> datetime:
    """A commercetools timestamp (ISO-8601 UTC with ms, ``2017-01-04T19:54:49.797Z``) as an aware
    UTC datetime."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_ct_time(moment: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC). Sub-millisecond parts are rounded
    **up**, so ``>= result`` / ``< result`` select exactly ``>= moment`` / ``< moment`` among the
    millisecond-resolution timestamps commercetools stores. Naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    moment = moment.astimezone(UTC)
    if moment.microsecond % 1000:
        moment = moment + timedelta(microseconds=1000 - moment.microsecond % 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def record_id(stream: str, record: Mapping[str, Any]) -> str:
    """The native id of a record of any stream (commercetools ids are UUID strings)."""
    _check_stream(stream)
    return str(record["id"])


def modified_at(stream: str, record: Mapping[str, Any]) -> datetime:
    """When the record was last modified (``lastModifiedAt``, else ``createdAt``), aware UTC."""
    _check_stream(stream)
    value = record.get("lastModifiedAt") or record.get("createdAt")
    if not isinstance(value, str):
        raise ValueError(f"commercetools {stream} record {record.get('id')!r} has no lastModifiedAt")
    return ct_time(value)


def money(amount: Mapping[str, Any]) -> Decimal:
    """A commercetools Money value (``centAmount / 10**fractionDigits``) as an exact ``Decimal``."""
    cents = amount["centAmount"]
    digits = amount.get("fractionDigits", 2)
    if not isinstance(cents, int) or isinstance(cents, bool) or not isinstance(digits, int):
        raise ValueError(f"not a commercetools money value: {dict(amount)!r}")
    return Decimal(cents).scaleb(-digits)


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown commercetools stream {stream!r} (known: {list(STREAMS)})")


# --------------------------------------------------------------------------------------------------
# The client


class CommercetoolsClient(HttpClient):
    """Reads orders, payments and customers of one commercetools project.

    ``api_url``/``auth_url`` are the region roots (``https://api.{region}.commercetools.com``,
    ``https://auth.{region}.commercetools.com``); requests go to ``{api_url}/{project_key}/...`` and
    ``{auth_url}/oauth/token``. ``scope`` is sent with the token request when given (e.g.
    ``"view_orders:my-project view_payments:my-project view_customers:my-project"``).
    """

    def __init__(
        self,
        api_url: str,
        auth_url: str,
        project_key: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        token_margin: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if not (project_key and client_id and client_secret):
            raise ValueError("CommercetoolsClient needs project_key, client_id and client_secret")
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
        self.auth_url = auth_url.rstrip("/")
        self.project_key = project_key.strip("/")
        self.page_size = page_size
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._token_margin = token_margin
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self.tokens_fetched = 0

    # ----- auth

    def login(self) -> None:
        """Fetch a fresh access token (client credentials grant)."""
        data = {"grant_type": "client_credentials"}
        if self._scope:
            data["scope"] = self._scope
        response = self.request(
            "POST",
            f"{self.auth_url}/{TOKEN_PATH}",
            authenticated=False,
            auth=(self._client_id, self._client_secret),
            data=data,
        )
        try:
            body = parse_json(response.content)
        except ValueError as exc:
            raise ApiError(response.status_code, f"token response is not JSON: {exc}", response.url) from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError(
                response.status_code, "token endpoint did not return an access_token", response.url
            )
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float | Decimal) else 3600.0
        # Renew a little early (but never sooner than half the lifetime) so a request never carries
        # a token that expires in flight.
        margin = min(self._token_margin, lifetime / 2)
        self._token = token
        self._token_expires = self._monotonic() + lifetime - margin
        self.tokens_fetched += 1
        log.info("commercetools access token obtained from %s", self.auth_url)

    def _ensure_token(self) -> str:
        with self._token_lock:
            if self._token is None or self._monotonic() >= self._token_expires:
                self.login()
            assert self._token is not None
            return self._token

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._ensure_token()}"}

    def _get(self, path: str, params: list[tuple[str, str]]) -> requests.Response:
        """GET with one token renewal on 401 (expired or revoked token)."""
        self._ensure_token()  # outside the try: a failed login must not be retried as an expiry
        try:
            return self.request("GET", path, params=params)
        except AuthError as exc:
            if exc.status != 401:
                raise
            log.info("commercetools answered 401 on %s; fetching a new token", exc.url)
            with self._token_lock:
                self._token = None
            return self.request("GET", path, params=params)

    # ----- reads

    def _path(self, stream: str) -> str:
        _check_stream(stream)
        return f"{self.project_key}/{stream}"

    def _page(self, stream: str, params: list[tuple[str, str]]) -> tuple[dict[str, Any], datetime]:
        response = self._get(self._path(stream), params)
        try:
            body = parse_json(response.content)
        except ValueError as exc:
            raise ApiError(response.status_code, f"response is not JSON: {exc}", response.url) from exc
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ApiError(response.status_code, "response is not a PagedQueryResponse", response.url)
        return body, response_date(response) or datetime.now(UTC)

    def fetch(self, stream: str, start: datetime, end: datetime) -> SearchResult:
        """All records of ``stream`` with ``start <= lastModifiedAt < end``, as the project stood at
        ``end``: ascending by ``(lastModifiedAt, id)``, deduplicated on ``(id, version)``.

        ``total_count`` is the server's ``total`` of the first page (capped by commercetools at
        10 000), or the number of records fetched when the cap was hit.
        """
        _check_stream(stream)
        lo, hi = format_ct_time(start), format_ct_time(end)
        if start >= end:
            raise ValueError(f"empty or inverted window [{start}, {end})")
        window = [("where", WINDOW_PREDICATE), ("var.start", lo), ("var.end", hi)]
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, Any]] = set()
        pages, total, last = 0, None, None
        server_time = datetime.now(UTC)
        while True:
            params = list(window)
            if last is not None:
                params += [("where", KEYSET_PREDICATE), ("var.lastAt", last[0]), ("var.lastId", last[1])]
            params += [("sort", s) for s in SORT]
            params += [
                ("limit", str(self.page_size)),
                ("offset", "0"),
                ("withTotal", "true" if last is None else "false"),
            ]
            body, server_time = self._page(stream, params)
            pages += 1
            results = body["results"]
            if total is None and isinstance(body.get("total"), int):
                total = body["total"]
            for record in results:
                key = (record_id(stream, record), record.get("version"))
                if key not in seen:
                    seen.add(key)
                    items.append(record)
            if len(results) < self.page_size:
                break
            tail = results[-1]
            cursor = (str(tail.get("lastModifiedAt") or ""), record_id(stream, tail))
            if not cursor[0] or cursor == last:
                # A record without lastModifiedAt (or a server ignoring the keyset) cannot advance.
                raise ApiError(
                    None, f"keyset paging of {stream} cannot advance past {cursor!r}", self._path(stream)
                )
            last = cursor
        if total is None or total >= 10_000:
            total = len(items)
        return SearchResult(items=items, total_count=total, server_time=server_time, pages=pages)

    def lookahead(self, stream: str, since: datetime, limit: int) -> SearchResult:
        """Up to ``limit`` (at most 500) records with ``lastModifiedAt >= since``, ascending, in one
        request; ``total_count`` is the server's ``total`` (capped at 10 000), so a sensor sees
        whether new data exists and roughly how much without a full scan."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        limit = min(limit, MAX_PAGE_SIZE)
        params = [
            ("where", "lastModifiedAt >= :since"),
            ("var.since", format_ct_time(since)),
            *[("sort", s) for s in SORT],
            ("limit", str(limit)),
            ("offset", "0"),
            ("withTotal", "true"),
        ]
        body, server_time = self._page(stream, params)
        results = body["results"][:limit]
        total = body.get("total")
        return SearchResult(
            items=results,
            total_count=total if isinstance(total, int) else len(results),
            server_time=server_time,
            pages=1,
        )

    def server_time(self) -> datetime:
        """The platform's current time (``Date`` of a minimal authenticated query), so windows are
        bounded by the server's clock rather than ours."""
        response = self._get(self._path("orders"), [("limit", "1"), ("withTotal", "false")])
        return response_date(response) or datetime.now(UTC)

    def __repr__(self) -> str:  # never show credentials
        return f"CommercetoolsClient(api_url={self.base_url!r}, project_key={self.project_key!r})"


__all__ = [
    "CommercetoolsClient",
    "KEYSET_PREDICATE",
    "MAX_PAGE_SIZE",
    "STREAMS",
    "SearchResult",
    "WINDOW_PREDICATE",
    "ct_time",
    "format_ct_time",
    "modified_at",
    "money",
    "parse_json",
    "record_id",
]
