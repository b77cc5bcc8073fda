"""A faithful local BigCommerce REST Management API emulator (reference: commerce_apis.md §2, §8.2).

It serves seeded native records of several stores (one per store hash) through the real paths,
shapes, auth and paging rules, and reproduces the quirks our connector must survive:

* ``GET /stores/{hash}/v2/orders`` answers a **bare JSON array**, and **HTTP 204 with an empty body**
  when nothing matches or the page is past the end (aligent/bigcommerce-v3-api-php-client#177);
  ``min_date_modified``/``max_date_modified`` (and ``*_date_created``) accept RFC-2822 and ISO-8601
  and are inclusive at second resolution; ``sort`` defaults to ``id:asc``; ``limit`` defaults to 50
  and is capped at 250; orders carry ``products`` as a sub-resource link, never inline, so line
  items come from ``GET /v2/orders/{id}/products`` (paged, 204 when none);
* v3 refunds (``/v3/orders/payment_actions/refunds``: ``created:min``/``created:max``,
  ``order_id:in``, ``id:in``, id ascending, ``meta.pagination``) and v3 customers
  (``/v3/customers``: ``date_modified:min``/``:max``, ``email:in``, ``id:in``, ``sort``, offset
  ``page`` or keyset ``after``/``before`` cursors; ``page`` is ignored when a cursor is given;
  ``meta.pagination`` plus ``meta.cursor_pagination{start_cursor,end_cursor,links}``). A date-only
  ``date_modified:max`` gets the current time of day added, as BigCommerce does (docs PR#766);
* ``X-Auth-Token`` auth (401 ``{"status":401,"title":...}``); an unknown store hash is a 404;
* rate limiting per store: every API response carries ``X-Rate-Limit-Requests-Left``,
  ``-Requests-Quota``, ``-Time-Reset-Ms`` and ``-Time-Window-Ms``; once the quota of the current
  window is used up, 429 until the window rolls. The window rolls when *either* the emulator clock
  or real (monotonic) time has moved past it: advancing a frozen test clock rolls it at once, and a
  frozen clock can never deadlock a client that really sleeps. ``Time-Reset-Ms`` counts on real
  time when the clock is real, else on the emulator clock (so a client that waits exactly that long,
  on either timeline, finds the window rolled);
* versions: a record id may appear several times with different modification times (orders
  ``date_modified`` RFC-2822, refunds ``created``, customers ``date_modified`` ISO-8601). A list
  request is answered with each record as it stood at ``asof = min(upper bound of the modification
  filter (exclusive), clock)``, so a window ``[from, to)`` sees what the store showed at ``to`` and
  records "appear" as the replay clock advances. Single-record reads use the clock.

Money is served exactly as seeded (4-decimal strings on orders, JSON numbers on refunds).

Seed layout (CONTRACT.md §2), ``seed_dir`` being the ``bigcommerce/`` directory of a seed::

    <store_hash>/orders/*.json      v2 order objects, each may carry "products": [...] inline
    <store_hash>/refunds/*.json     v3 refund objects
    <store_hash>/customers/*.json   v3 customer objects
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from loyalty_assets.sandbox.httpserver import (
    Abort,
    Emulator,
    EmulatorClock,
    FaultInjector,
    Request,
    Response,
    Router,
    dumps,
    json_response,
    loads,
)

#: stream (also its seed sub-directory) -> the field its versions are keyed on
STREAMS: dict[str, str] = {"orders": "date_modified", "refunds": "created", "customers": "date_modified"}

DEFAULT_ACCESS_TOKEN = "sandbox-bc-token"
DEFAULT_RATE_LIMIT = (150, 30.0)  # Standard/Plus plans: 150 requests per 30 s window (§2.3)
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
STATUS_CODES_URL = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"

_STORE = r"/stores/(?P<store_hash>[A-Za-z0-9_-]+)"
_NEVER = datetime.min.replace(tzinfo=UTC)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ORDER_SORTS = {
    "id",
    "customer_id",
    "date_created",
    "date_modified",
    "status_id",
    "channel_id",
    "external_id",
}
_CUSTOMER_SORTS = {"date_created", "date_modified", "last_name"}
_DATE_FIELDS = {"date_created", "date_modified", "created", "date_shipped"}


def parse_bc_datetime(value: Any) -> datetime | None:
    """RFC-2822 (``Wed, 05 Dec 2018 20:16:55 +0000``) or ISO-8601 (``Z``, offsets, fractions, or a
    bare date) as an aware UTC datetime; None when ``value`` is not a timestamp in either form."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def rfc2822(moment: datetime) -> str:
    """A datetime in the v2 API's form, ``Wed, 05 Dec 2018 20:16:55 +0000`` (always UTC)."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _v2_error(status: int, message: str) -> Abort:
    return Abort(json_response([{"status": status, "message": message}], status))


def _v3_error(status: int, title: str, errors: dict[str, str] | None = None) -> Abort:
    body: dict[str, Any] = {"status": status, "title": title, "type": STATUS_CODES_URL}
    if errors:
        body["errors"] = errors
    return Abort(json_response(body, status))


def _sort_key(value: Any) -> tuple[int, Any]:
    """None first, then numbers numerically, then text case-insensitively (one total order)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    text = str(value)
    try:
        return (1, float(text))
    except ValueError:
        return (2, text.casefold())


def _id_key(record: dict[str, Any]) -> tuple[int, Any]:
    return _sort_key(record.get("id"))


@dataclass
class _Version:
    modified: datetime
    seq: int
    record: dict[str, Any]


@dataclass
class _Window:
    started_clock: datetime
    started_mono: float
    used: int = 0


@dataclass
class _Store:
    versions: dict[str, dict[str, list[_Version]]] = field(default_factory=lambda: {s: {} for s in STREAMS})
    runtime: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in STREAMS})


@dataclass(frozen=True)
class _Paging:
    page: int
    limit: int


class BigCommerceEmulator(Emulator):
    """BigCommerce v2 orders + order products, v3 refunds and v3 customers, for several stores.

    ``seed_dir`` is the ``bigcommerce/`` directory of a seed (see the module docstring); None means
    no records. ``store_hashes`` declares stores that have no seed data (records added at runtime
    also create their store). ``access_token`` is what ``X-Auth-Token`` must carry, for every store.
    ``rate_limit`` is ``(quota, window_seconds)`` per store, or None to disable rate limiting.
    """

    name = "bigcommerce"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
        store_hashes: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if rate_limit is not None and (int(rate_limit[0]) < 1 or float(rate_limit[1]) <= 0):
            raise ValueError(f"rate_limit must be (quota >= 1, window_seconds > 0), got {rate_limit!r}")
        self.access_token = access_token
        self.rate_limit = (int(rate_limit[0]), float(rate_limit[1])) if rate_limit is not None else None
        self._data_lock = threading.RLock()
        self._rate_lock = threading.Lock()
        self._stores: dict[str, _Store] = {}
        self._windows: dict[str, _Window] = {}
        self._rate_limited = 0
        self._seq = 0
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        for store_hash in store_hashes:
            self.add_store(store_hash)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- data

    @property
    def store_hashes(self) -> list[str]:
        with self._data_lock:
            return list(self._stores)

    def add_store(self, store_hash: str) -> None:
        """Declare a store (idempotent)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", store_hash or ""):
            raise ValueError(f"invalid store hash {store_hash!r}")
        with self._data_lock:
            self._stores.setdefault(store_hash, _Store())

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/<store_hash>/{orders,refunds,customers}/*.json``; a malformed file fails
        loudly. Every sub-directory of ``seed_dir`` is a store."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"BigCommerce seed directory {seed_dir} does not exist")
        for store_dir in sorted(p for p in seed_dir.iterdir() if p.is_dir()):
            self.add_store(store_dir.name)
            for stream in STREAMS:
                folder = store_dir / stream
                if not folder.is_dir():
                    continue
                for path in sorted(folder.glob("*.json")):
                    try:
                        data = loads(path.read_bytes())
                    except ValueError as exc:
                        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                    if not isinstance(data, list):
                        raise ValueError(f"{path}: expected a JSON array of native BigCommerce {stream}")
                    self._add(store_dir.name, stream, data, runtime=False, source=str(path))

    def add_records(self, store_hash: str, stream: str, records: Iterable[dict[str, Any]]) -> int:
        """Add records (new ids or new versions) to a store at runtime (creating the store if
        needed); kept in the persisted runtime state. Returns how many were added."""
        normalized = loads(dumps(list(records)))  # floats -> Decimal; no aliasing with the caller
        return self._add(store_hash, stream, normalized, runtime=True, source="add_records")

    def _add(self, store_hash: str, stream: str, records: list[Any], *, runtime: bool, source: str) -> int:
        if stream not in STREAMS:
            raise ValueError(f"unknown BigCommerce stream {stream!r} (known: {sorted(STREAMS)})")
        self.add_store(store_hash)
        with self._data_lock:
            store = self._stores[store_hash]
            for index, record in enumerate(records):
                if not isinstance(record, dict) or record.get("id") is None:
                    raise ValueError(f"{source}: {stream}[{index}] is not a record with an 'id'")
            for record in records:
                modified = self._modified(stream, record)
                self._seq += 1
                versions = store.versions[stream].setdefault(str(record["id"]), [])
                versions.append(_Version(modified, self._seq, record))
                versions.sort(key=lambda v: (v.modified, v.seq))
                if runtime:
                    store.runtime[stream].append(record)
        return len(records)

    @staticmethod
    def _modified(stream: str, record: dict[str, Any]) -> datetime:
        """The instant a version became current; a record without a usable timestamp is always
        visible (and matches no date filter)."""
        value = parse_bc_datetime(record.get(STREAMS[stream]))
        if value is None and stream == "orders":
            value = parse_bc_datetime(record.get("date_created"))
        if value is None and stream == "customers":
            value = parse_bc_datetime(record.get("date_created"))
        return value or _NEVER

    def records_as_of(
        self, store_hash: str, stream: str, asof: datetime, *, strict: bool = False
    ) -> list[dict[str, Any]]:
        """Each id's latest version modified at or before ``asof`` (before, when strict), by id."""
        with self._data_lock:
            store = self._stores.get(store_hash)
            if store is None:
                return []
            out = []
            for versions in store.versions[stream].values():
                visible = [v for v in versions if (v.modified < asof if strict else v.modified <= asof)]
                if visible:
                    out.append(visible[-1].record)
        out.sort(key=_id_key)
        return out

    def _asof(self, upper: datetime | None) -> tuple[datetime, bool]:
        """``min(upper (exclusive), clock (inclusive))``."""
        now = self.clock.now()
        if upper is not None and upper <= now:
            return upper, True
        return now, False

    def _get_store(self, store_hash: str) -> _Store:
        with self._data_lock:
            store = self._stores.get(store_hash)
        if store is None:
            raise _v3_error(404, f"Store {store_hash} not found")
        return store

    # ----- rate limiting

    def _window_elapsed(self, window: _Window, now_clock: datetime, now_mono: float) -> float:
        return max((now_clock - window.started_clock).total_seconds(), now_mono - window.started_mono)

    def _rate(self, store_hash: str, *, consume: bool) -> tuple[bool, dict[str, str]]:
        """Count one request against the store's window (when ``consume``); returns whether it is
        allowed and the ``X-Rate-Limit-*`` headers to send."""
        if self.rate_limit is None:
            return True, {}
        quota, seconds = self.rate_limit
        with self._rate_lock:
            now_clock, now_mono = self.clock.now(), time.monotonic()
            window = self._windows.get(store_hash)
            if window is None or self._window_elapsed(window, now_clock, now_mono) >= seconds:
                window = self._windows[store_hash] = _Window(now_clock, now_mono)
            allowed = window.used < quota
            if consume and allowed:
                window.used += 1
            if consume and not allowed:
                self._rate_limited += 1
            # Time-Reset-Ms is measured on the timeline clients wait on: real time when the clock is
            # real, else the emulator clock (a test's fake sleep advances it by exactly that much).
            if self.clock.mode == "real":
                elapsed = now_mono - window.started_mono
            else:
                elapsed = (now_clock - window.started_clock).total_seconds()
            left = quota - window.used
        reset_ms = max(0, math.ceil((seconds - elapsed) * 1000))
        return allowed, {
            "X-Rate-Limit-Requests-Left": str(left),
            "X-Rate-Limit-Requests-Quota": str(quota),
            "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
            "X-Rate-Limit-Time-Window-Ms": str(int(seconds * 1000)),
        }

    def reset_rate_limits(self) -> None:
        """Start a fresh window for every store."""
        with self._rate_lock:
            self._windows.clear()

    # ----- routes

    def register_routes(self, router: Router) -> None:
        router.add("GET", _STORE + r"/v2/orders", self._api(self._orders_list), "v2 orders list")
        router.add("GET", _STORE + r"/v2/orders/count", self._api(self._orders_count), "v2 orders count")
        router.add("GET", _STORE + r"/v2/orders/(?P<id>\d+)", self._api(self._order_get), "v2 order get")
        router.add(
            "GET", _STORE + r"/v2/orders/(?P<id>\d+)/products", self._api(self._order_products), "v2 products"
        )
        router.add(
            "GET", _STORE + r"/v3/orders/payment_actions/refunds", self._api(self._refunds), "v3 refunds list"
        )
        router.add("GET", _STORE + r"/v3/customers", self._api(self._customers), "v3 customers list")

    def register_control_routes(self, router: Router) -> None:
        router.add("POST", r"/_sandbox/bigcommerce/records", self._control_add_records, "sandbox add records")
        router.add(
            "POST", r"/_sandbox/bigcommerce/rate_limit/reset", self._control_rate_reset, "sandbox rate reset"
        )

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response({"status": status, "title": message, "type": STATUS_CODES_URL}, status, headers)

    def _api(self, handler: Callable[[Request, str], Response]) -> Callable[[Request], Response]:
        """Store lookup, ``X-Auth-Token`` check and the per-store rate limit around a handler."""

        def wrapped(request: Request) -> Response:
            store_hash = request.path_params["store_hash"]
            self._get_store(store_hash)
            token = request.header("x-auth-token") or ""
            if not token or not hmac.compare_digest(token, self.access_token):
                _, headers = self._rate(store_hash, consume=False)
                return json_response(
                    {
                        "status": 401,
                        "title": "No valid credentials were found in this request",
                        "type": STATUS_CODES_URL,
                    },
                    401,
                    headers,
                )
            allowed, headers = self._rate(store_hash, consume=True)
            if not allowed:
                return json_response(
                    {
                        "status": 429,
                        "title": "Too many requests: the rate limit of this store is exhausted",
                        "type": STATUS_CODES_URL,
                    },
                    429,
                    headers,
                )
            try:
                response = handler(request, store_hash)
            except Abort as abort:
                response = abort.response
            response.headers.update(headers)
            return response

        return wrapped

    # ----- query helpers

    @staticmethod
    def _int_arg(request: Request, name: str, default: int, error: Callable[[str], Abort]) -> int:
        raw = request.arg(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw.strip())
        except ValueError as exc:
            raise error(f"The field '{name}' is invalid: '{raw}' is not an integer.") from exc

    def _paging(self, request: Request, error: Callable[[str], Abort]) -> _Paging:
        page = self._int_arg(request, "page", 1, error)
        limit = self._int_arg(request, "limit", DEFAULT_LIMIT, error)
        if page < 1 or limit < 1:
            raise error("'page' and 'limit' must be positive integers.")
        return _Paging(page, min(limit, MAX_LIMIT))

    def _date_arg(
        self, request: Request, name: str, error: Callable[[str], Abort], *, date_only_now: bool = False
    ) -> datetime | None:
        raw = request.arg(name)
        if raw is None or raw == "":
            return None
        value = parse_bc_datetime(raw)
        if value is None:
            raise error(f"The field '{name}' is invalid: '{raw}' is not an RFC-2822 or ISO-8601 date.")
        if date_only_now and _ISO_DATE.match(raw.strip()):
            # docs PR#766: a max date without a time gets the current time of the request added.
            now = self.clock.now()
            value = value + timedelta(hours=now.hour, minutes=now.minute, seconds=now.second)
        return value

    @staticmethod
    def _list_arg(request: Request, name: str) -> list[str] | None:
        raw = request.arg(name)
        if raw is None:
            return None
        return [part.strip() for part in raw.split(",") if part.strip()]

    # ----- v2 orders

    def _served_order(self, store_hash: str, order: dict[str, Any]) -> dict[str, Any]:
        """The order as the list/get endpoints show it: ``products`` as a sub-resource link."""
        served = dict(order)
        order_id = served["id"]
        served["products"] = {
            "url": f"{self.base_url}/stores/{store_hash}/v2/orders/{order_id}/products",
            "resource": f"/orders/{order_id}/products",
        }
        return served

    def _filtered_orders(self, request: Request, store_hash: str) -> list[dict[str, Any]]:
        err = lambda m: _v2_error(400, m)  # noqa: E731
        min_modified = self._date_arg(request, "min_date_modified", err)
        max_modified = self._date_arg(request, "max_date_modified", err)
        min_created = self._date_arg(request, "min_date_created", err)
        max_created = self._date_arg(request, "max_date_created", err)
        min_id = self._int_arg(request, "min_id", -(10**18), err)
        max_id = self._int_arg(request, "max_id", 10**18, err)
        equals = {
            name: request.arg(name)
            for name in ("customer_id", "status_id", "channel_id", "cart_id", "external_order_id")
            if request.arg(name) not in (None, "")
        }
        email = (request.arg("email") or "").strip().casefold()
        asof, strict = self._asof(max_modified)
        out = []
        for order in self.records_as_of(store_hash, "orders", asof, strict=strict):
            modified = parse_bc_datetime(order.get("date_modified"))
            created = parse_bc_datetime(order.get("date_created"))
            if not _within(modified, min_modified, max_modified) or not _within(
                created, min_created, max_created
            ):
                continue
            order_id = _sort_key(order.get("id"))[1]
            if isinstance(order_id, int | float) and not (min_id <= order_id <= max_id):
                continue
            if any(str(order.get(k)) != v for k, v in equals.items()):
                continue
            if email:
                billing = order.get("billing_address") or {}
                if str(billing.get("email") or "").strip().casefold() != email:
                    continue
            out.append(order)
        return out

    def _orders_list(self, request: Request, store_hash: str) -> Response:
        paging = self._paging(request, lambda m: _v2_error(400, m))
        rows = self._filtered_orders(request, store_hash)
        sort = (request.arg("sort") or "id:asc").strip()
        field_name, _, direction = sort.partition(":")
        direction = (direction or "asc").lower()
        if field_name not in _ORDER_SORTS or direction not in ("asc", "desc"):
            raise _v2_error(400, f"The field 'sort' is invalid: '{sort}'.")
        rows.sort(key=_id_key)
        if field_name != "id" or direction == "desc":
            rows.sort(
                key=lambda r: _sort_key(_typed(field_name, r.get(field_name))), reverse=direction == "desc"
            )
        start = (paging.page - 1) * paging.limit
        page_rows = rows[start : start + paging.limit]
        if not page_rows:
            return Response(status=204)  # the real quirk: no body at all, not "[]"
        return json_response([self._served_order(store_hash, r) for r in page_rows])

    def _orders_count(self, request: Request, store_hash: str) -> Response:
        return json_response({"count": len(self._filtered_orders(request, store_hash))})

    def _current_order(self, request: Request, store_hash: str) -> dict[str, Any]:
        wanted = request.path_params["id"]
        with self._data_lock:
            versions = self._stores[store_hash].versions["orders"].get(wanted, [])
            now = self.clock.now()
            visible = [v for v in versions if v.modified <= now]
        if not visible:
            raise _v2_error(404, "The requested resource was not found.")
        return visible[-1].record

    def _order_get(self, request: Request, store_hash: str) -> Response:
        return json_response(self._served_order(store_hash, self._current_order(request, store_hash)))

    def _order_products(self, request: Request, store_hash: str) -> Response:
        paging = self._paging(request, lambda m: _v2_error(400, m))
        products = self._current_order(request, store_hash).get("products")
        rows = products if isinstance(products, list) else []
        start = (paging.page - 1) * paging.limit
        page_rows = rows[start : start + paging.limit]
        if not page_rows:
            return Response(status=204)
        return json_response(page_rows)

    # ----- v3 refunds

    def _refunds(self, request: Request, store_hash: str) -> Response:
        err = lambda m: _v3_error(422, "The filter parameters are invalid", {"query": m})  # noqa: E731
        paging = self._paging(request, err)
        created_min = self._date_arg(request, "created:min", err)
        created_max = self._date_arg(request, "created:max", err)
        order_ids = self._list_arg(request, "order_id:in")
        ids = self._list_arg(request, "id:in")
        asof, strict = self._asof(created_max)
        rows = [
            r
            for r in self.records_as_of(store_hash, "refunds", asof, strict=strict)
            if _within(parse_bc_datetime(r.get("created")), created_min, created_max)
            and (order_ids is None or str(r.get("order_id")) in order_ids)
            and (ids is None or str(r.get("id")) in ids)
        ]
        return json_response(_offset_envelope(rows, paging))

    # ----- v3 customers

    def _customers(self, request: Request, store_hash: str) -> Response:
        err = lambda m: _v3_error(422, "The filter parameters are invalid", {"query": m})  # noqa: E731
        paging = self._paging(request, err)
        modified_min = self._date_arg(request, "date_modified:min", err)
        modified_max = self._date_arg(request, "date_modified:max", err, date_only_now=True)
        created_min = self._date_arg(request, "date_created:min", err)
        created_max = self._date_arg(request, "date_created:max", err, date_only_now=True)
        emails = self._list_arg(request, "email:in")
        emails_cf = None if emails is None else {e.casefold() for e in emails}
        ids = self._list_arg(request, "id:in")
        sort = (request.arg("sort") or "").strip()
        if sort:
            field_name, _, direction = sort.partition(":")
            direction = (direction or "asc").lower()
            if field_name not in _CUSTOMER_SORTS or direction not in ("asc", "desc"):
                raise err(f"sort '{sort}' is not supported")
        else:
            field_name, direction = "id", "asc"
        asof, strict = self._asof(modified_max)
        rows = [
            r
            for r in self.records_as_of(store_hash, "customers", asof, strict=strict)
            if _within(parse_bc_datetime(r.get("date_modified")), modified_min, modified_max)
            and _within(parse_bc_datetime(r.get("date_created")), created_min, created_max)
            and (emails_cf is None or str(r.get("email") or "").strip().casefold() in emails_cf)
            and (ids is None or str(r.get("id")) in ids)
        ]
        sort_spec = f"{field_name}:{direction}"
        key = _cursor_key_fn(field_name)
        rows.sort(key=key, reverse=direction == "desc")
        after, before = request.arg("after"), request.arg("before")
        if after or before:
            position = _decode_cursor(after or before or "", sort_spec, err)
            if after:
                if direction == "asc":
                    start = next((i for i, r in enumerate(rows) if key(r) > position), len(rows))
                else:
                    start = next((i for i, r in enumerate(rows) if key(r) < position), len(rows))
                page_rows = rows[start : start + paging.limit]
            else:
                if direction == "asc":
                    stop = next((i for i, r in enumerate(rows) if key(r) >= position), len(rows))
                else:
                    stop = next((i for i, r in enumerate(rows) if key(r) <= position), len(rows))
                start = max(0, stop - paging.limit)
                page_rows = rows[start:stop]
            cursor_mode = True
        else:
            start = (paging.page - 1) * paging.limit
            page_rows = rows[start : start + paging.limit]
            cursor_mode = False
        end = start + len(page_rows)
        start_cursor = _encode_cursor(key(page_rows[0]), sort_spec) if page_rows else None
        end_cursor = _encode_cursor(key(page_rows[-1]), sort_spec) if page_rows else None
        limit = paging.limit
        cursor_links: dict[str, str] = {}
        if page_rows and end < len(rows):
            cursor_links["next"] = f"?after={end_cursor}&limit={limit}"
        if page_rows and start > 0:
            cursor_links["previous"] = f"?before={start_cursor}&limit={limit}"
        total_pages = math.ceil(len(rows) / limit)
        current_page = start // limit + 1 if cursor_mode else paging.page
        if cursor_mode:
            links = dict(cursor_links)
            links["current"] = f"?{'after' if after else 'before'}={after or before}&limit={limit}"
        else:
            links = _page_links(paging.page, limit, total_pages)
        meta = {
            "pagination": {
                "total": len(rows),
                "count": len(page_rows),
                "per_page": limit,
                "current_page": current_page,
                "total_pages": total_pages,
                "links": links,
            },
            "cursor_pagination": {
                "count": len(page_rows),
                "per_page": limit,
                "start_cursor": start_cursor,
                "end_cursor": end_cursor,
                "links": cursor_links,
            },
        }
        return json_response({"data": page_rows, "meta": meta})

    # ----- control surface

    def _control_add_records(self, request: Request) -> Response:
        """``{"store_hash": "abc", "stream": "orders", "records": [...]}`` (``entity`` is accepted
        for ``stream``) -> adds them (same as :meth:`add_records`)."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return json_response(
                {"message": 'body must be {"store_hash": ..., "stream": ..., "records": [...]}'}, 400
            )
        stream = str(body.get("stream") or body.get("entity"))
        try:
            added = self._add(
                str(body.get("store_hash")), stream, body["records"], runtime=True, source="control"
            )
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"added": added})

    def _control_rate_reset(self, request: Request) -> Response:
        self.reset_rate_limits()
        return json_response({"reset": True})

    # ----- configuration and state

    def env(self) -> dict[str, str]:
        """The CONTRACT.md §4 variables pointing the project at this (running) emulator."""
        return {
            "BIGCOMMERCE_API_URL": self.base_url,
            "BIGCOMMERCE_STORE_HASHES": ",".join(self.store_hashes),
            "BIGCOMMERCE_ACCESS_TOKEN": self.access_token,
        }

    def sandbox_state(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._data_lock:
            stores = {
                store_hash: {
                    stream: {
                        "ids": len(by_id),
                        "versions": sum(len(v) for v in by_id.values()),
                        "visible_now": sum(1 for v in by_id.values() if v[0].modified <= now),
                        "added_at_runtime": len(store.runtime[stream]),
                    }
                    for stream, by_id in store.versions.items()
                }
                for store_hash, store in self._stores.items()
            }
        with self._rate_lock:
            windows = {h: w.used for h, w in self._windows.items()}
        return {
            "stores": stores,
            "rate_limit": None
            if self.rate_limit is None
            else {"quota": self.rate_limit[0], "window_seconds": self.rate_limit[1]},
            "rate_limit_used": windows,
            "rate_limited_responses": self._rate_limited,
        }

    def export_state(self) -> dict[str, Any]:
        """The records added at runtime, per store and stream (seeded ones come from the seed)."""
        with self._data_lock:
            return {
                "stores": {
                    store_hash: {s: list(r) for s, r in store.runtime.items() if r}
                    for store_hash, store in self._stores.items()
                }
            }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced."""
        for store_hash, streams in (state.get("stores") or {}).items():
            self.add_store(store_hash)
            for stream, records in (streams or {}).items():
                self._add(store_hash, stream, records, runtime=True, source="state")


# --------------------------------------------------------------------------------------------------
# helpers


def _within(value: datetime | None, low: datetime | None, high: datetime | None) -> bool:
    """Inclusive range test; a record without the timestamp matches only when unfiltered."""
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _typed(field_name: str, value: Any) -> Any:
    if field_name in _DATE_FIELDS:
        return parse_bc_datetime(value)
    return value


def _page_links(page: int, limit: int, total_pages: int) -> dict[str, str]:
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={min(page - 1, max(total_pages, 1))}&limit={limit}"
    if page < total_pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    return links


def _offset_envelope(rows: list[dict[str, Any]], paging: _Paging) -> dict[str, Any]:
    start = (paging.page - 1) * paging.limit
    page_rows = rows[start : start + paging.limit]
    total_pages = math.ceil(len(rows) / paging.limit)
    return {
        "data": page_rows,
        "meta": {
            "pagination": {
                "total": len(rows),
                "count": len(page_rows),
                "per_page": paging.limit,
                "current_page": paging.page,
                "total_pages": total_pages,
                "links": _page_links(paging.page, paging.limit, total_pages),
            }
        },
    }


def _cursor_key_fn(field_name: str) -> Callable[[dict[str, Any]], tuple[str, Any]]:
    """A record's position in a sort order, as a JSON-able, totally ordered ``(text, id)``."""

    def key(record: dict[str, Any]) -> tuple[str, Any]:
        if field_name == "id":
            primary = ""
        elif field_name in _DATE_FIELDS:
            moment = parse_bc_datetime(record.get(field_name))
            primary = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else ""
        else:
            primary = str(record.get(field_name) or "").casefold()
        rid = record.get("id")
        return (primary, rid if isinstance(rid, int) else str(rid))

    return key


def _encode_cursor(position: tuple[str, Any], sort_spec: str) -> str:
    raw = json.dumps({"s": sort_spec, "k": list(position)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort_spec: str, error: Callable[[str], Abort]) -> tuple[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        primary, rid = data["k"]
        spec = data["s"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise error(f"cursor '{cursor}' is invalid") from exc
    if spec != sort_spec:
        raise error(f"cursor '{cursor}' belongs to sort '{spec}', not '{sort_spec}'")
    return (str(primary), rid)


__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_RATE_LIMIT",
    "MAX_LIMIT",
    "STREAMS",
    "BigCommerceEmulator",
    "parse_bc_datetime",
    "rfc2822",
]
