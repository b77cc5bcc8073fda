"""Magento 2 / Adobe Commerce REST client for incremental extraction (commerce_apis.md §1, §8.1).

Why it looks the way it does:

* a window ``[start, end)`` on ``updated_at`` is sent as two AND-ed filter groups (``gteq`` start,
  ``lt`` end), values in UTC ``YYYY-MM-DD HH:MM:SS`` (Magento stores and compares UTC; #24985);
* sorted ``updated_at ASC`` then id ASC, because ties on second-resolution timestamps otherwise
  shuffle rows across pages (#25001);
* paging stops on ``current_page * page_size >= total_count``, never on an empty page, because a
  page past the end returns the last page again (#3787, #8099, #26986);
* if ``total_count`` moved during a scan (rows changed mid-scan), the window is scanned again and
  the union kept; results are deduplicated on ``(id, updated_at)``;
* money stays ``Decimal`` (``parse_float=Decimal``) and records keep their native JSON shape;
* admin tokens last 4 hours: on a 401 the client logs in again once and retries.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import simplejson

from loyalty_assets.clients.http import ApiError, AuthError, HttpClient, RetryPolicy, response_date

log = logging.getLogger(__name__)

#: entity -> (search path below /rest/<store>/, id field)
ENTITIES: dict[str, tuple[str, str]] = {
    "orders": ("V1/orders", "entity_id"),
    "creditmemos": ("V1/creditmemos", "entity_id"),
    "customers": ("V1/customers/search", "id"),
}
TOKEN_PATH = "rest/V1/integration/admin/token"
MAGENTO_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


# --------------------------------------------------------------------------------------------------
# Parsing helpers


def magento_time(value: str) -> datetime:
    """A Magento timestamp (``YYYY-MM-DD HH:MM:SS``, always UTC; #24985) as an aware UTC datetime."""
    text = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_magento_time(moment: datetime) -> str:
    """An aware datetime as the UTC ``YYYY-MM-DD HH:MM:SS`` string Magento filters expect.

    Naive datetimes are refused: guessing their zone is how windows silently shift by hours.
    """
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC).strftime(MAGENTO_TIME_FORMAT)


def _ceil_second(moment: datetime) -> datetime:
    """Round up to a whole second: for second-resolution ``updated_at`` values, ``>= ceil(t)`` is
    exactly ``>= t`` and ``< ceil(t)`` is exactly ``< t``, so a window bound never leaks or loses."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def parse_json(text: str | bytes) -> Any:
    """JSON with every non-integer number as ``Decimal`` (money is never a float)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return simplejson.loads(text, use_decimal=True)


def to_json(record: Any) -> str:
    """A record back to compact JSON text, Decimal numbers written exactly as they were read."""
    return simplejson.dumps(record, use_decimal=True, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class SearchResult:
    """Records of one search. ``server_time`` is the ``Date`` of the last response (the store's
    clock, UTC aware); ``total_count`` is the last page's; ``pages`` counts HTTP pages fetched."""

    items: list[dict[str, Any]]
    total_count: int
    server_time: datetime
    pages: int


def _criteria(
    filter_groups: list[list[tuple[str, str, str]]],
    sort_orders: list[tuple[str, str]],
    page_size: int,
    current_page: int,
) -> dict[str, str]:
    params: dict[str, str] = {}
    for g, group in enumerate(filter_groups):
        for f, (field, value, condition) in enumerate(group):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params[f"{prefix}[field]"] = field
            params[f"{prefix}[value]"] = value
            params[f"{prefix}[condition_type]"] = condition
    for s, (field, direction) in enumerate(sort_orders):
        params[f"searchCriteria[sortOrders][{s}][field]"] = field
        params[f"searchCriteria[sortOrders][{s}][direction]"] = direction
    params["searchCriteria[pageSize]"] = str(page_size)
    params["searchCriteria[currentPage]"] = str(current_page)
    return params


class MagentoClient(HttpClient):
    """Reads orders, credit memos and customers from one Magento 2 instance.

    Auth: a static bearer ``access_token`` (integration token with bearer use enabled), or
    ``username``/``password`` for admin tokens fetched on first use and again after a 401.
    ``store_code`` goes into ``/rest/<store_code>/V1/...``; an empty one uses ``/rest/V1/...``.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        store_code: str = "all",
        page_size: int = 100,
        timeout: float = 30,
        max_attempts: int = 6,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_rescans: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ):
        if not access_token and not (username and password):
            raise ValueError("MagentoClient needs access_token, or username and password")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        super().__init__(
            base_url,
            timeout=timeout,
            policy=RetryPolicy(max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max),
            sleep=sleep,
            rng=rng,
            session=session,
        )
        self._access_token = access_token
        self._username = username
        self._password = password
        self._admin_token: str | None = None
        self.store_code = (store_code or "").strip("/")
        self.page_size = page_size
        self.max_rescans = max_rescans

    # ----- auth

    @property
    def _uses_admin_login(self) -> bool:
        return not self._access_token

    def login(self) -> None:
        """Fetch a fresh admin token (``POST /rest/V1/integration/admin/token``)."""
        response = self.request(
            "POST",
            TOKEN_PATH,
            authenticated=False,
            json={"username": self._username, "password": self._password},
        )
        token = parse_json(response.content)
        if not isinstance(token, str) or not token:
            raise ApiError(
                response.status_code, "admin token endpoint did not return a token string", response.url
            )
        self._admin_token = token
        log.info("Magento admin token obtained from %s", self.base_url)

    def auth_headers(self) -> Mapping[str, str]:
        if self._access_token:
            return {"Authorization": f"Bearer {self._access_token}"}
        if self._admin_token is None:
            self.login()
        return {"Authorization": f"Bearer {self._admin_token}"}

    def _get(self, path: str, params: Mapping[str, str]) -> requests.Response:
        """GET with one re-login on 401 (admin tokens expire after 4 hours)."""
        if self._uses_admin_login and self._admin_token is None:
            self.login()  # outside the try: a failed login must not be retried as an expiry
        try:
            return self.request("GET", path, params=params)
        except AuthError as exc:
            if exc.status != 401 or not self._uses_admin_login:
                raise
            log.info("Magento answered 401 on %s; logging in again", exc.url)
            self._admin_token = None
            self.login()
            return self.request("GET", path, params=params)

    # ----- reads

    def _path(self, entity: str) -> tuple[str, str]:
        if entity not in ENTITIES:
            raise ValueError(f"unknown Magento entity {entity!r} (known: {sorted(ENTITIES)})")
        suffix, id_field = ENTITIES[entity]
        prefix = f"rest/{self.store_code}/" if self.store_code else "rest/"
        return prefix + suffix, id_field

    def _page(self, path: str, params: Mapping[str, str]) -> tuple[dict[str, Any], datetime]:
        response = self._get(path, params)
        try:
            body = parse_json(response.content)
        except ValueError as exc:
            raise ApiError(response.status_code, f"response is not JSON: {exc}", response.url) from exc
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("items", []), list)
            or not isinstance(body.get("total_count"), int)
        ):
            raise ApiError(response.status_code, "response is not a Magento search envelope", response.url)
        body.setdefault("items", [])  # Magento omits an empty "items"
        return body, response_date(response) or datetime.now(UTC)

    def search(self, entity: str, start: datetime, end: datetime) -> SearchResult:
        """All records of ``entity`` with ``start <= updated_at < end`` (ascending, deduplicated)."""
        path, id_field = self._path(entity)
        groups = [
            [("updated_at", format_magento_time(_ceil_second(start)), "gteq")],
            [("updated_at", format_magento_time(_ceil_second(end)), "lt")],
        ]
        if start >= end:
            raise ValueError(f"empty or inverted window [{start}, {end})")
        sorts = [("updated_at", "ASC"), (id_field, "ASC")]
        items: list[dict[str, Any]] = []
        seen: set[tuple[str, Any]] = set()
        pages = 0
        for scan in range(self.max_rescans + 1):
            page, first_total, previous_keys = 1, None, None
            while True:
                body, server_time = self._page(path, _criteria(groups, sorts, self.page_size, page))
                pages += 1
                total = body["total_count"]
                first_total = total if first_total is None else first_total
                keys = [(str(r.get(id_field)), r.get("updated_at")) for r in body["items"]]
                if keys and keys == previous_keys:
                    # The last-page repeat (#3787): total_count said there was more, but it was not.
                    log.warning("Magento %s page %d repeated the previous page; stopping", entity, page)
                    break
                for key, record in zip(keys, body["items"], strict=True):
                    if key not in seen:
                        seen.add(key)
                        items.append(record)
                if page * self.page_size >= total or not keys:
                    break
                previous_keys = keys
                page += 1
            if total == first_total:
                break
            if scan < self.max_rescans:
                log.warning(
                    "Magento %s total_count moved %s -> %s during the scan; scanning again",
                    entity,
                    first_total,
                    total,
                )
        return SearchResult(items=items, total_count=total, server_time=server_time, pages=pages)

    def fetch(self, stream: str, start: datetime, end: datetime) -> SearchResult:
        """The generic ingest name for :meth:`search` (streams: orders, creditmemos, customers)."""
        return self.search(stream, start, end)

    def lookahead(self, entity: str, since: datetime, limit: int) -> SearchResult:
        """Up to ``limit`` records with ``updated_at >= since``, ascending, in one request; lets a
        sensor see whether new data exists (and how much: ``total_count``) without a full scan."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        path, id_field = self._path(entity)
        groups = [[("updated_at", format_magento_time(_ceil_second(since)), "gteq")]]
        body, server_time = self._page(
            path, _criteria(groups, [("updated_at", "ASC"), (id_field, "ASC")], limit, 1)
        )
        return SearchResult(
            items=body["items"][:limit], total_count=body["total_count"], server_time=server_time, pages=1
        )

    def server_time(self) -> datetime:
        """The store's current time (``Date`` of a minimal authenticated search), so windows are
        bounded by the server's clock rather than ours."""
        path, _ = self._path("orders")
        params = {
            "searchCriteria[pageSize]": "1",
            "searchCriteria[currentPage]": "1",
            "fields": "total_count",
        }
        response = self._get(path, params)
        return response_date(response) or datetime.now(UTC)


__all__ = [
    "ENTITIES",
    "MagentoClient",
    "SearchResult",
    "format_magento_time",
    "magento_time",
    "parse_json",
    "to_json",
]


# The generic ingest code sees every platform through these three names.
ID_FIELDS = {"orders": "entity_id", "creditmemos": "entity_id", "customers": "id"}


def record_id(stream: str, record: dict[str, Any]) -> str:
    return str(record[ID_FIELDS[stream]])


def modified_at(stream: str, record: dict[str, Any]) -> datetime:
    return magento_time(record.get("updated_at") or record.get("created_at"))

