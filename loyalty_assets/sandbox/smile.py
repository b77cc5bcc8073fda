"""A faithful local Smile.io REST emulator (``/v1``; reference: loyalty_apis.md §1, §5).

What it reproduces, because the points pusher and the pulls must survive exactly this:

* ``Authorization: Bearer <key>`` with per-key **scopes** (``<entity>:read`` / ``<entity>:write``,
  write includes read): 401 for a bad or missing key, **403** when the key lacks the scope;
* **10 requests/s per token** in a sliding one-second window of real monotonic time; beyond it
  **429** with ``Retry-After: 1`` (the real API documents no header; the emulator sends one so
  clients can be tested honouring it). Refused requests do not consume the allowance;
* error bodies ``{"error": {"message", "request_id"}}``; 400 for a POST without a JSON
  ``Content-Type``, 404 for unknown ids, **422 when a points transaction or a purchase would make
  the balance negative**;
* single resources wrapped in a singular key, lists in a plural key plus
  ``metadata.next_cursor``/``previous_cursor`` (opaque base64 ``id:<n>,direction:next|prev``),
  **newest first** (id descending), ``limit`` 1..250 (default 50). Filters are re-applied on every
  page, so clients resend them with the cursor; ``previous_cursor`` is ``null`` on the first page;
* ``GET /customers`` with ``email`` (exact, case-insensitive, **not unique**), ``state``,
  ``updated_at_min`` and ``include=vip_status`` (``vip_status`` is only present when asked for;
  ``vip_status.vip_tier``/``vip_status.next_vip_tier`` nest the tier objects);
* ``POST /points_transactions`` (wrapped body, 201), ``GET /points_transactions[/{id}]``;
  ``GET /points_products[/{id}]`` (classic ``page``/``page_size`` paging, no ``metadata``) and
  ``POST /points_products/{id}/purchase`` (unwrapped body ``{customer_id, points_to_spend?}``):
  deducts the points through a points transaction and issues a reward fulfillment;
  ``GET /reward_fulfillments``, ``GET /vip_tiers``, ``GET /points_settings``,
  ``GET /earning_rules``, ``POST /activities`` (stored; rewards are asynchronous in Smile and are
  not simulated) and ``GET /referrals``.

**Assumed (UNCONFIRMED) paths and scopes**: ``GET /v1/referrals[/{id}]`` (scope ``referral:read``),
cursor-paged like every other list, serving the documented Referral object (§1.9); scopes
``points_transaction:read``, ``points_product:read``, ``points_purchase:write``,
``reward_fulfillment:read``, ``vip_tier:read``, ``earning_rule:read``, ``points_settings:read``.

Data: seeded native objects from ``smile/{customers,points_transactions,reward_fulfillments,
referrals}/*.json`` (one JSON array per file; optional extra folders ``vip_tiers``,
``points_products``). A seeded record is visible once its ``updated_at`` (customers: each version)
or ``created_at`` is not after the emulator clock. A seeded customer's ``points_balance`` is
authoritative for the seed; transactions created through the API (and purchases) move it from there
and are kept in memory, exported by :meth:`SmileEmulator.export_state`.

Control (never faulted, never rate limited): ``GET /_sandbox/smile/points_transactions``
(every transaction, seeded and created, optional ``customer_id``), ``GET /_sandbox/smile/customers``
(every customer with its live balance), ``POST /_sandbox/smile/customers`` (add customers at
runtime), ``GET /_sandbox/smile/rate`` (per-token peak requests in any one second).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
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
    is_control_path,
    json_response,
    loads,
    parse_instant,
)

DEFAULT_API_KEY = "sandbox-smile-key"
ALL_SCOPES: tuple[str, ...] = (
    "customer:read",
    "points_transaction:write",
    "points_product:read",
    "points_purchase:write",
    "reward_fulfillment:read",
    "vip_tier:read",
    "activity:write",
    "referral:read",
    "earning_rule:read",
    "points_settings:read",
)
SEED_ENTITIES = ("customers", "points_transactions", "reward_fulfillments", "referrals")
MAX_LIMIT = 250
DEFAULT_LIMIT = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DEFAULT_VIP_TIERS: list[dict[str, Any]] = [
    {"id": 1001, "name": "Bronze", "image_url": None, "milestone": 0.0, "perks": [], "entry_rewards": []},
    {"id": 1002, "name": "Silver", "image_url": None, "milestone": 500.0, "perks": [], "entry_rewards": []},
    {"id": 1003, "name": "Gold", "image_url": None, "milestone": 1500.0, "perks": [], "entry_rewards": []},
]

DEFAULT_POINTS_PRODUCTS: list[dict[str, Any]] = [
    {
        "id": 2001,
        "exchange_type": "fixed",
        "exchange_description": "500 Points = $5 off",
        "points_price": 500,
        "variable_points_step": None,
        "variable_points_step_reward_value": None,
        "variable_points_min": None,
        "variable_points_max": None,
        "reward": {"id": 3001, "name": "$5 off coupon", "description": "$5 off your next order"},
    },
    {
        "id": 2002,
        "exchange_type": "variable",
        "exchange_description": "100 Points = $1 off",
        "points_price": None,
        "variable_points_step": 100,
        "variable_points_step_reward_value": 1.0,
        "variable_points_min": 100,
        "variable_points_max": 10000,
        "reward": {"id": 3002, "name": "Points discount", "description": "Money off your next order"},
    },
]

DEFAULT_EARNING_RULES: list[dict[str, Any]] = [
    {
        "id": 4001,
        "name": "Place an order",
        "image_url": None,
        "action_text": "Place an order",
        "action_url": None,
        "restricted_to_vip_tier_ids": [],
        "reward": {"type": "points"},
        "reward_value": {"type": "variable", "variable": {"value": 1, "per_amount": 1.0}},
        "earning_limit": None,
    }
]


def smile_time(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (``2024-12-07T20:15:27.893Z``), as Smile writes."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Pieces shared with the LoyaltyLion emulator


class SlidingWindowLimiter:
    """``limit`` accepted requests per ``window`` seconds per key, in real monotonic time.

    :meth:`allow` returns ``(True, 0)`` and records the request, or ``(False, wait)`` with the
    seconds until the oldest accepted request leaves the window (refusals are not recorded, so a
    client that backs off is served again one window later). ``arrive`` tracks every request,
    refused or not, so tests can read the peak per-second load a client really sent.
    """

    def __init__(
        self, limit: int | None, window: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window = window
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._accepted: dict[str, deque[float]] = {}
        self._arrivals: dict[str, deque[float]] = {}
        self.peak_accepted: Counter[str] = Counter()
        self.peak_arrivals: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self.window:
            times.popleft()

    def arrive(self, key: str) -> None:
        now = self._monotonic()
        with self._lock:
            times = self._arrivals.setdefault(key, deque())
            self._trim(times, now)
            times.append(now)
            self.peak_arrivals[key] = max(self.peak_arrivals[key], len(times))

    def allow(self, key: str) -> tuple[bool, float]:
        now = self._monotonic()
        with self._lock:
            times = self._accepted.setdefault(key, deque())
            self._trim(times, now)
            if self.limit is not None and self.limit > 0 and len(times) >= self.limit:
                self.refused[key] += 1
                return False, max(0.0, self.window - (now - times[0]))
            times.append(now)
            self.peak_accepted[key] = max(self.peak_accepted[key], len(times))
            return True, 0.0

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()
            self._arrivals.clear()
            self.peak_accepted.clear()
            self.peak_arrivals.clear()
            self.refused.clear()

    def to_dict(self, mask: Callable[[str], str] = lambda k: k) -> dict[str, Any]:
        with self._lock:
            return {
                "limit_per_window": self.limit,
                "window_seconds": self.window,
                "peak_accepted_per_window": {mask(k): v for k, v in self.peak_accepted.items()},
                "peak_arrivals_per_window": {mask(k): v for k, v in self.peak_arrivals.items()},
                "refused": {mask(k): v for k, v in self.refused.items()},
            }


def mask_token(token: str) -> str:
    """A token safe to show in state dumps: its first 4 characters and a length hint."""
    return f"{token[:4]}…({len(token)})" if token else ""


def bearer_token(request: Request) -> str | None:
    header = request.header("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def load_json_arrays(folder: Path) -> Iterable[tuple[Path, list[Any]]]:
    """Each ``*.json`` file of ``folder`` (sorted) as a JSON array; anything else fails loudly."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            data = loads(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected one JSON array of native records")
        yield path, data


def as_int(value: Any) -> int | None:
    """An integer id from JSON (int, integral Decimal or digit string); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number


# --------------------------------------------------------------------------------------------------
# Cursor paging


def encode_cursor(record_id: int, direction: str) -> str:
    return base64.b64encode(f"id:{record_id},direction:{direction}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str] | None:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    match = re.fullmatch(r"id:(-?\d+),direction:(next|prev)", text)
    return (int(match.group(1)), match.group(2)) if match else None


def cursor_page(
    rows: list[dict[str, Any]], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], dict]:
    """Rows sorted by id desc -> one page and its ``metadata`` (newest first)."""
    rows = sorted(rows, key=lambda r: r["id"], reverse=True)
    if cursor:
        decoded = decode_cursor(cursor)
        if decoded is None:
            raise ValueError("Invalid cursor")
        anchor, direction = decoded
        if direction == "next":
            page = [r for r in rows if r["id"] < anchor][:limit]
        else:
            page = [r for r in rows if r["id"] > anchor][-limit:]
    else:
        page = rows[:limit]
    has_next = bool(page) and any(r["id"] < page[-1]["id"] for r in rows)
    has_prev = bool(page) and any(r["id"] > page[0]["id"] for r in rows)
    metadata = {
        "next_cursor": encode_cursor(page[-1]["id"], "next") if has_next else None,
        "previous_cursor": encode_cursor(page[0]["id"], "prev") if has_prev else None,
    }
    return page, metadata


# --------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _CustomerVersion:
    updated: datetime
    seq: int
    record: dict[str, Any]


class SmileEmulator(Emulator):
    """Smile.io ``/v1`` over seeded native objects plus in-memory runtime state (see module doc).

    ``seed_dir`` is the ``smile/`` directory of a seed (None: start empty). ``api_key`` is the one
    merchant key accepted, with ``scopes``; more keys can be added with :meth:`add_api_key`.
    ``rate_per_second`` (None or 0: unlimited) is enforced per key. ``vip_tiers`` and
    ``points_products`` replace the defaults (a seed's ``vip_tiers/`` or ``points_products/``
    folder wins over both).
    """

    name = "smile"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        scopes: Iterable[str] = ALL_SCOPES,
        rate_per_second: int | None = 10,
        vip_tiers: list[dict[str, Any]] | None = None,
        points_products: list[dict[str, Any]] | None = None,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.api_key = api_key
        self._keys: dict[str, frozenset[str]] = {api_key: frozenset(scopes)}
        self.limiter = SlidingWindowLimiter(rate_per_second)
        self._lock = threading.RLock()
        self._seq = 0
        self._customers: dict[int, list[_CustomerVersion]] = {}
        self._balance_delta: Counter[int] = Counter()
        self._touched: dict[int, datetime] = {}
        self._transactions: dict[int, dict[str, Any]] = {}
        self._fulfillments: dict[int, dict[str, Any]] = {}
        self._referrals: dict[int, dict[str, Any]] = {}
        self._purchases: dict[int, dict[str, Any]] = {}
        self._activities: dict[int, dict[str, Any]] = {}
        self._runtime_customers: list[dict[str, Any]] = []
        self._created_transactions: list[int] = []
        self._next_id = 1
        self.vip_tiers = [dict(t) for t in (vip_tiers or DEFAULT_VIP_TIERS)]
        self.points_products = [dict(p) for p in (points_products or DEFAULT_POINTS_PRODUCTS)]
        self.earning_rules = [dict(r) for r in DEFAULT_EARNING_RULES]
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        for record in self.vip_tiers + self.points_products + self.earning_rules:
            self._bump(record.get("id"))
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- keys and ids

    def add_api_key(self, key: str, scopes: Iterable[str] = ALL_SCOPES) -> None:
        """Accept another key (another token, with its own rate allowance) with these scopes."""
        with self._lock:
            self._keys[key] = frozenset(scopes)

    def env(self) -> dict[str, str]:
        """CONTRACT.md §4 settings pointing a client at this emulator (the URL includes ``/v1``)."""
        return {"SMILE_API_URL": f"{self.base_url}/v1", "SMILE_API_KEY": self.api_key}

    def _bump(self, record_id: Any) -> None:
        number = as_int(record_id)
        if number is not None and number >= self._next_id:
            self._next_id = number + 1

    def _new_id(self) -> int:
        with self._lock:
            new = self._next_id
            self._next_id += 1
            return new

    # ----- seed and runtime data

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/{customers,points_transactions,reward_fulfillments,referrals}/*.json``
        (plus optional ``vip_tiers/``, ``points_products/``)."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"Smile.io seed directory {seed_dir} does not exist")
        for path, records in load_json_arrays(seed_dir / "customers"):
            self._add_customers(records, runtime=False, source=str(path))
        targets = {
            "points_transactions": self._transactions,
            "reward_fulfillments": self._fulfillments,
            "referrals": self._referrals,
        }
        for entity, store in targets.items():
            for path, records in load_json_arrays(seed_dir / entity):
                self._add_simple(store, records, source=str(path))
        for folder, attr in (("vip_tiers", "vip_tiers"), ("points_products", "points_products")):
            loaded = [r for _, records in load_json_arrays(seed_dir / folder) for r in records]
            if loaded:
                setattr(self, attr, loaded)
                for record in loaded:
                    self._bump(record.get("id"))

    def _add_simple(self, store: dict[int, dict[str, Any]], records: list[Any], *, source: str) -> None:
        with self._lock:
            for index, record in enumerate(records):
                rid = as_int(record.get("id")) if isinstance(record, dict) else None
                if rid is None:
                    raise ValueError(f"{source}[{index}] is not a record with an integer 'id'")
                record = dict(record, id=rid)
                store[rid] = record
                self._bump(rid)

    def _add_customers(self, records: Iterable[Any], *, runtime: bool, source: str) -> list[dict[str, Any]]:
        added = []
        now = self.clock.now()
        with self._lock:
            for index, raw in enumerate(records):
                if not isinstance(raw, dict):
                    raise ValueError(f"{source}[{index}] is not a customer object")
                record = loads(dumps(raw))
                if runtime:
                    if record.get("id") is None:
                        record["id"] = self._new_id()
                    record.setdefault("created_at", smile_time(now))
                    record.setdefault("updated_at", record["created_at"])
                    record.setdefault("first_name", None)
                    record.setdefault("last_name", None)
                    record.setdefault("state", "member")
                    record.setdefault("date_of_birth", None)
                    record.setdefault("points_balance", 0)
                    record.setdefault("referral_url", f"http://i.refs.cc/{secrets.token_urlsafe(5)}")
                    record.setdefault("vip_tier_id", None)
                rid = as_int(record.get("id"))
                if rid is None or not isinstance(record.get("email"), str):
                    raise ValueError(f"{source}[{index}] needs an integer 'id' and an 'email'")
                record["id"] = rid
                updated = _instant(record.get("updated_at")) or _instant(record.get("created_at")) or _EPOCH
                self._seq += 1
                versions = self._customers.setdefault(rid, [])
                versions.append(_CustomerVersion(updated, self._seq, record))
                versions.sort(key=lambda v: (v.updated, v.seq))
                self._bump(rid)
                if runtime:
                    self._runtime_customers.append(record)
                added.append(record)
        return added

    def add_customers(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create customers at runtime (a merchant key cannot create customers through the real API;
        this stands in for a shopper joining). Missing fields get defaults (``id`` the next free id,
        ``state`` member, ``points_balance`` 0, timestamps now). Returns the stored records."""
        return self._add_customers(list(records), runtime=True, source="add_customers")

    def _customer_view(self, rid: int, now: datetime | None = None) -> dict[str, Any] | None:
        """The customer as the API shows it now (latest visible version + live balance)."""
        now = now or self.clock.now()
        with self._lock:
            versions = self._customers.get(rid) or []
            visible = [v for v in versions if v.updated <= now]
            if not visible:
                return None
            record = dict(visible[-1].record)
            record["points_balance"] = int(record.get("points_balance") or 0) + self._balance_delta[rid]
            touched = self._touched.get(rid)
        record.pop("vip_status", None)
        if touched is not None and touched > visible[-1].updated:
            record["updated_at"] = smile_time(touched)
        return record

    def balance(self, customer_id: int) -> int | None:
        """The live ``points_balance`` of a customer (ignores the clock); None if unknown."""
        with self._lock:
            versions = self._customers.get(customer_id)
            if not versions:
                return None
            return int(versions[-1].record.get("points_balance") or 0) + self._balance_delta[customer_id]

    def customers(self) -> list[dict[str, Any]]:
        """Every customer's latest version with its live balance (ignores the clock), id desc."""
        with self._lock:
            ids = sorted(self._customers, reverse=True)
            out = []
            for rid in ids:
                record = dict(self._customers[rid][-1].record)
                record["points_balance"] = self.balance(rid)
                out.append(record)
            return out

    def transactions(self, customer_id: int | None = None) -> list[dict[str, Any]]:
        """Every points transaction (seeded and created; ignores the clock), id desc."""
        with self._lock:
            rows = [dict(t) for t in self._transactions.values()]
        if customer_id is not None:
            rows = [t for t in rows if as_int(t.get("customer_id")) == customer_id]
        return sorted(rows, key=lambda t: t["id"], reverse=True)

    def reward_fulfillments(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((dict(f) for f in self._fulfillments.values()), key=lambda f: -f["id"])

    def _apply_points(self, customer_id: int, change: int, description: Any, note: Any) -> dict[str, Any]:
        """Create a points transaction (caller holds the lock and validated the balance)."""
        now = self.clock.now()
        txn = {
            "id": self._new_id(),
            "customer_id": customer_id,
            "points_change": change,
            "description": description,
            "internal_note": note,
            "created_at": smile_time(now),
            "updated_at": smile_time(now),
        }
        self._transactions[txn["id"]] = txn
        self._balance_delta[customer_id] += change
        self._touched[customer_id] = now
        self._created_transactions.append(txn["id"])
        return txn

    # ----- request guard and errors

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response(
            {"error": {"message": message, "request_id": str(uuid.uuid4())}}, status, headers
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Abort:
        return Abort(self.error_response(status, message, headers))

    def handle(self, request: Request) -> tuple[Response | None, str | None]:
        if not is_control_path(request.path):
            token = bearer_token(request)
            if token is not None and token in self._keys:
                self.limiter.arrive(token)
        return super().handle(request)

    def _guard(self, request: Request, scope: str) -> None:
        """Auth (401), the per-token rate limit (429), the scope (403), POST Content-Type (400)."""
        token = bearer_token(request)
        with self._lock:
            scopes = self._keys.get(token) if token is not None else None
        if token is None or scopes is None:
            raise self._error(401, "Unauthorized: missing or invalid API key.")
        allowed, _wait = self.limiter.allow(token)
        if not allowed:
            raise self._error(
                429,
                f"Too many requests: the limit is {self.limiter.limit} requests per second.",
                {"Retry-After": "1"},
            )
        entity, _, access = scope.partition(":")
        if scope not in scopes and not (access == "read" and f"{entity}:write" in scopes):
            raise self._error(403, f"Forbidden: this API key lacks the '{scope}' scope.")
        if request.method == "POST":
            ctype = (request.header("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise self._error(400, "Bad request: the Content-Type header must be application/json.")

    def _body(self, request: Request) -> dict[str, Any]:
        if not request.body:
            raise self._error(400, "Bad request: the request body is empty.")
        try:
            body = loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._error(400, f"Bad request: malformed JSON body ({exc}).") from exc
        if not isinstance(body, dict):
            raise self._error(400, "Bad request: the body must be a JSON object.")
        return body

    def _limit(self, request: Request) -> int:
        raw = request.arg("limit")
        if raw in (None, ""):
            return DEFAULT_LIMIT
        value = as_int(raw)
        if value is None or not 1 <= value <= MAX_LIMIT:
            raise self._error(400, f"Bad request: limit must be an integer between 1 and {MAX_LIMIT}.")
        return value

    def _updated_min(self, request: Request) -> datetime | None:
        raw = request.arg("updated_at_min")
        if raw in (None, ""):
            return None
        instant = _instant(raw)
        if instant is None:
            raise self._error(400, "Bad request: updated_at_min must be an ISO-8601 date-time.")
        return instant

    def _int_arg(self, request: Request, name: str) -> int | None:
        raw = request.arg(name)
        if raw in (None, ""):
            return None
        value = as_int(raw)
        if value is None:
            raise self._error(400, f"Bad request: {name} must be an integer.")
        return value

    def _list(self, request: Request, key: str, rows: list[dict[str, Any]]) -> Response:
        """Apply ``updated_at_min``, then cursor-page (id desc) into ``{key: [...], metadata}``."""
        since = self._updated_min(request)
        if since is not None:
            rows = [r for r in rows if (_instant(r.get("updated_at")) or _EPOCH) >= since]
        try:
            page, metadata = cursor_page(rows, self._limit(request), request.arg("cursor"))
        except ValueError as exc:
            raise self._error(400, f"Bad request: {exc}.") from exc
        return json_response({key: page, "metadata": metadata})

    def _visible(self, store: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self._lock:
            rows = list(store.values())
        return [
            dict(r)
            for r in rows
            if (_instant(r.get("created_at")) or _instant(r.get("updated_at")) or _EPOCH) <= now
        ]

    # ----- routes

    def register_routes(self, router: Router) -> None:
        v1 = r"/v1"
        router.add("GET", v1 + r"/customers", self._customers_list, "customers list")
        router.add("GET", v1 + r"/customers/(?P<id>\d+)", self._customer_get, "customer get")
        router.add("POST", v1 + r"/points_transactions", self._txn_create, "points_transactions create")
        router.add("GET", v1 + r"/points_transactions", self._txn_list, "points_transactions list")
        router.add("GET", v1 + r"/points_transactions/(?P<id>\d+)", self._txn_get, "points_transaction get")
        router.add("GET", v1 + r"/points_products", self._products_list, "points_products list")
        router.add("GET", v1 + r"/points_products/(?P<id>\d+)", self._product_get, "points_product get")
        router.add(
            "POST", v1 + r"/points_products/(?P<id>\d+)/purchase", self._purchase, "points_product purchase"
        )
        router.add("GET", v1 + r"/reward_fulfillments", self._fulfillments_list, "reward_fulfillments list")
        router.add("GET", v1 + r"/vip_tiers", self._vip_tiers, "vip_tiers list")
        router.add("GET", v1 + r"/points_settings", self._points_settings, "points_settings")
        router.add("GET", v1 + r"/earning_rules", self._earning_rules, "earning_rules list")
        router.add("POST", v1 + r"/activities", self._activity_create, "activities create")
        router.add("GET", v1 + r"/referrals", self._referrals_list, "referrals list")
        router.add("GET", v1 + r"/referrals/(?P<id>\d+)", self._referral_get, "referral get")

    def register_control_routes(self, router: Router) -> None:
        router.add(
            "GET", r"/_sandbox/smile/points_transactions", self._ctl_transactions, "smile transactions"
        )
        router.add("GET", r"/_sandbox/smile/customers", self._ctl_customers, "smile customers")
        router.add("POST", r"/_sandbox/smile/customers", self._ctl_add_customers, "smile add customers")
        router.add(
            "GET", r"/_sandbox/smile/reward_fulfillments", self._ctl_fulfillments, "smile fulfillments"
        )
        router.add("GET", r"/_sandbox/smile/rate", self._ctl_rate, "smile rate")

    def not_found(self, request: Request) -> Response:
        return self.error_response(404, f"Not found: no route for {request.method} {request.path}.")

    # ----- customers

    def _with_includes(self, record: dict[str, Any], include: str | None) -> dict[str, Any]:
        parts = {p.strip() for p in (include or "").split(",") if p.strip()}
        if not parts & {"vip_status", "vip_status.vip_tier", "vip_status.next_vip_tier"}:
            return record
        with self._lock:
            versions = self._customers.get(record["id"]) or []
            seeded_status = versions[-1].record.get("vip_status") if versions else None
        tiers = sorted(self.vip_tiers, key=lambda t: float(t.get("milestone") or 0))
        tier_id = as_int(record.get("vip_tier_id"))
        status: dict[str, Any]
        if isinstance(seeded_status, dict):
            status = dict(seeded_status)
        else:
            index = next((i for i, t in enumerate(tiers) if as_int(t.get("id")) == tier_id), None)
            nxt = tiers[index + 1] if index is not None and index + 1 < len(tiers) else None
            if index is None and tier_id is None and tiers:
                nxt = tiers[0]
            status = {
                "vip_tier_id": tier_id,
                "vip_tier_expires_at": None,
                "progress_value": 0,
                "current_vip_period_end": None,
                "delta_to_retain_vip_tier": None,
                "next_vip_tier_id": as_int(nxt.get("id")) if nxt else None,
                "delta_to_next_vip_tier": float(nxt.get("milestone") or 0) if nxt else None,
            }
        by_id = {as_int(t.get("id")): t for t in tiers}
        if "vip_status.vip_tier" in parts:
            status["vip_tier"] = by_id.get(as_int(status.get("vip_tier_id")))
        if "vip_status.next_vip_tier" in parts:
            status["next_vip_tier"] = by_id.get(as_int(status.get("next_vip_tier_id")))
        return dict(record, vip_status=status)

    def _visible_customers(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self._lock:
            ids = list(self._customers)
        return [c for c in (self._customer_view(i, now) for i in ids) if c is not None]

    def _customers_list(self, request: Request) -> Response:
        self._guard(request, "customer:read")
        rows = self._visible_customers()
        email = request.arg("email")
        if email:
            wanted = email.strip().casefold()
            rows = [r for r in rows if str(r.get("email") or "").strip().casefold() == wanted]
        state = request.arg("state")
        if state:
            if state not in ("candidate", "member", "disabled"):
                raise self._error(400, "Bad request: state must be candidate, member or disabled.")
            rows = [r for r in rows if r.get("state") == state]
        response = self._list(request, "customers", rows)
        include = request.arg("include")
        if include:
            body = loads(response.body)
            body["customers"] = [self._with_includes(c, include) for c in body["customers"]]
            response = json_response(body)
        return response

    def _customer_get(self, request: Request) -> Response:
        self._guard(request, "customer:read")
        record = self._customer_view(int(request.path_params["id"]))
        if record is None:
            raise self._error(404, "Not found: no customer with this id.")
        return json_response({"customer": self._with_includes(record, request.arg("include"))})

    # ----- points transactions

    def _txn_create(self, request: Request) -> Response:
        self._guard(request, "points_transaction:write")
        body = self._body(request)
        payload = body.get("points_transaction")
        if not isinstance(payload, dict):
            raise self._error(400, 'Bad request: the body must be wrapped as {"points_transaction": {...}}.')
        customer_id = as_int(payload.get("customer_id"))
        change = payload.get("points_change")
        if customer_id is None:
            raise self._error(400, "Bad request: customer_id is required and must be an integer.")
        if isinstance(change, bool) or not isinstance(change, int):
            raise self._error(400, "Bad request: points_change is required and must be an integer.")
        for field in ("description", "internal_note"):
            if payload.get(field) is not None and not isinstance(payload.get(field), str):
                raise self._error(400, f"Bad request: {field} must be a string.")
        with self._lock:
            if self._customer_view(customer_id) is None:
                raise self._error(404, "Not found: no customer with this id.")
            balance = self.balance(customer_id) or 0
            if balance + change < 0:
                raise self._error(
                    422,
                    f"Points transaction would result in a negative points balance "
                    f"(balance {balance}, change {change}).",
                )
            txn = self._apply_points(
                customer_id, change, payload.get("description"), payload.get("internal_note")
            )
        return json_response({"points_transaction": txn}, 201)

    def _txn_list(self, request: Request) -> Response:
        self._guard(request, "points_transaction:read")
        rows = self._visible(self._transactions)
        customer_id = self._int_arg(request, "customer_id")
        if customer_id is not None:
            rows = [r for r in rows if as_int(r.get("customer_id")) == customer_id]
        return self._list(request, "points_transactions", rows)

    def _txn_get(self, request: Request) -> Response:
        self._guard(request, "points_transaction:read")
        rid = int(request.path_params["id"])
        found = [r for r in self._visible(self._transactions) if r["id"] == rid]
        if not found:
            raise self._error(404, "Not found: no points transaction with this id.")
        return json_response({"points_transaction": found[0]})

    # ----- points products and purchases

    def _products_list(self, request: Request) -> Response:
        self._guard(request, "points_product:read")
        page = as_int(request.arg("page") or "1")
        size = as_int(request.arg("page_size") or str(DEFAULT_LIMIT))
        if page is None or page < 1 or size is None or not 1 <= size <= MAX_LIMIT:
            raise self._error(400, f"Bad request: page >= 1 and page_size 1..{MAX_LIMIT}.")
        rows = sorted(self.points_products, key=lambda p: -int(p["id"]))
        exchange_type = request.arg("exchange_type")
        if exchange_type:
            rows = [p for p in rows if p.get("exchange_type") == exchange_type]
        return json_response({"points_products": rows[(page - 1) * size : page * size]})

    def _product(self, rid: int) -> dict[str, Any]:
        for product in self.points_products:
            if as_int(product.get("id")) == rid:
                return product
        raise self._error(404, "Not found: no points product with this id.")

    def _product_get(self, request: Request) -> Response:
        self._guard(request, "points_product:read")
        return json_response({"points_product": self._product(int(request.path_params["id"]))})

    def _purchase(self, request: Request) -> Response:
        self._guard(request, "points_purchase:write")
        product = self._product(int(request.path_params["id"]))
        body = self._body(request)  # unwrapped: {customer_id, points_to_spend?}
        customer_id = as_int(body.get("customer_id"))
        if customer_id is None:
            raise self._error(400, "Bad request: customer_id is required and must be an integer.")
        if product.get("exchange_type") == "variable":
            spend = body.get("points_to_spend")
            step = int(product.get("variable_points_step") or 1)
            low = int(product.get("variable_points_min") or step)
            high = int(product.get("variable_points_max") or 10**9)
            if isinstance(spend, bool) or not isinstance(spend, int):
                raise self._error(400, "Bad request: points_to_spend is required for a variable product.")
            if spend < low or spend > high or spend % step:
                raise self._error(
                    422, f"points_to_spend must be a multiple of {step} between {low} and {high}."
                )
        else:
            spend = int(product.get("points_price") or 0)
        with self._lock:
            customer = self._customer_view(customer_id)
            if customer is None:
                raise self._error(404, "Not found: no customer with this id.")
            if customer.get("state") == "disabled":
                raise self._error(422, "This customer is disabled and cannot redeem points.")
            balance = self.balance(customer_id) or 0
            if balance < spend:
                raise self._error(
                    422, f"Insufficient points: the customer has {balance} points and this costs {spend}."
                )
            reward = product.get("reward") or {}
            txn = self._apply_points(
                customer_id, -spend, f"Spent {spend} points on {reward.get('name')}", None
            )
            now = smile_time(self.clock.now())
            name = str(reward.get("name") or "reward")
            prefix = re.sub(r"[^a-z0-9]+", "", name.lower())[:8] or "reward"
            fulfillment = {
                "id": self._new_id(),
                "name": name,
                "code": f"{prefix}-{secrets.token_hex(6)}",
                "customer_id": customer_id,
                "fulfillment_status": "issued",
                "image_url": reward.get("image_url"),
                "action_text": "Use this discount code on your next order!",
                "action_url": None,
                "usage_instructions": "Apply this code at checkout.",
                "terms_and_conditions": None,
                "expires_at": None,
                "usage_status": "unused",
                "used_at": None,
                "created_at": now,
                "updated_at": now,
            }
            self._fulfillments[fulfillment["id"]] = fulfillment
            purchase = {
                "id": self._new_id(),
                "customer_id": customer_id,
                "points_product_id": int(product["id"]),
                "points_spent": spend,
                "points_transaction_id": txn["id"],
                "reward_fulfillment": fulfillment,
                "created_at": now,
                "updated_at": now,
            }
            self._purchases[purchase["id"]] = purchase
        return json_response({"points_purchase": purchase}, 201)

    def _fulfillments_list(self, request: Request) -> Response:
        self._guard(request, "reward_fulfillment:read")
        rows = self._visible(self._fulfillments)
        customer_id = self._int_arg(request, "customer_id")
        if customer_id is not None:
            rows = [r for r in rows if as_int(r.get("customer_id")) == customer_id]
        for field in ("fulfillment_status", "usage_status"):
            wanted = request.arg(field)
            if wanted:
                rows = [r for r in rows if r.get(field) == wanted]
        return self._list(request, "reward_fulfillments", rows)

    # ----- tiers, settings, rules, activities, referrals

    def _vip_tiers(self, request: Request) -> Response:
        self._guard(request, "vip_tier:read")
        include = {p.strip() for p in (request.arg("include") or "").split(",")}
        rows = []
        for tier in sorted(self.vip_tiers, key=lambda t: float(t.get("milestone") or 0)):
            row = dict(tier)
            for extra in ("perks", "entry_rewards"):
                if extra not in include:
                    row.pop(extra, None)
            rows.append(row)
        return json_response({"vip_tiers": rows, "metadata": {"next_cursor": None, "previous_cursor": None}})

    def _points_settings(self, request: Request) -> Response:
        self._guard(request, "points_settings:read")
        return json_response({"points_settings": {"points_label": {"one": "Point", "other": "Points"}}})

    def _earning_rules(self, request: Request) -> Response:
        self._guard(request, "earning_rule:read")
        return self._list(request, "earning_rules", [dict(r) for r in self.earning_rules])

    def _activity_create(self, request: Request) -> Response:
        self._guard(request, "activity:write")
        payload = self._body(request).get("activity")
        if not isinstance(payload, dict) or not payload.get("token"):
            raise self._error(400, 'Bad request: the body must be {"activity": {"token": ..., ...}}.')
        has_id, has_email = payload.get("customer_id") is not None, bool(payload.get("customer_email"))
        if has_id == has_email:
            raise self._error(400, "Bad request: give exactly one of customer_id or customer_email.")
        if has_id:
            customer_id = as_int(payload.get("customer_id"))
            if customer_id is None or self._customer_view(customer_id) is None:
                raise self._error(404, "Not found: no customer with this id.")
        else:
            wanted = str(payload["customer_email"]).strip().casefold()
            matches = [c for c in self._visible_customers() if str(c.get("email")).casefold() == wanted]
            if not matches:
                raise self._error(404, "Not found: no customer with this email.")
            customer_id = min(c["id"] for c in matches)
        now = smile_time(self.clock.now())
        activity = {
            "id": self._new_id(),
            "customer_id": customer_id,
            "token": payload["token"],
            "distinct_id": payload.get("distinct_id"),
            "created_on_origin_at": payload.get("created_on_origin_at"),
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            self._activities[activity["id"]] = activity
        return json_response({"activity": activity}, 201)

    def _referrals_list(self, request: Request) -> Response:
        self._guard(request, "referral:read")
        return self._list(request, "referrals", self._visible(self._referrals))

    def _referral_get(self, request: Request) -> Response:
        self._guard(request, "referral:read")
        rid = int(request.path_params["id"])
        found = [r for r in self._visible(self._referrals) if r["id"] == rid]
        if not found:
            raise self._error(404, "Not found: no referral with this id.")
        return json_response({"referral": found[0]})

    # ----- control surface

    def _ctl_transactions(self, request: Request) -> Response:
        customer_id = as_int(request.arg("customer_id")) if request.arg("customer_id") else None
        return json_response({"points_transactions": self.transactions(customer_id)})

    def _ctl_customers(self, request: Request) -> Response:
        return json_response({"customers": self.customers()})

    def _ctl_fulfillments(self, request: Request) -> Response:
        return json_response({"reward_fulfillments": self.reward_fulfillments()})

    def _ctl_add_customers(self, request: Request) -> Response:
        """Body: ``{"customers": [...]}`` (or a bare list) -> the created customers."""
        body = request.json()
        records = body.get("customers") if isinstance(body, dict) else body
        if not isinstance(records, list):
            return json_response({"message": 'body must be {"customers": [...]}'}, 400)
        try:
            added = self.add_customers(records)
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"customers": added}, 201)

    def _ctl_rate(self, request: Request) -> Response:
        return json_response(self.limiter.to_dict(mask_token))

    # ----- state

    def sandbox_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records": {
                    "customers": len(self._customers),
                    "customers_added_at_runtime": len(self._runtime_customers),
                    "points_transactions": len(self._transactions),
                    "points_transactions_created": len(self._created_transactions),
                    "reward_fulfillments": len(self._fulfillments),
                    "points_purchases": len(self._purchases),
                    "referrals": len(self._referrals),
                    "activities": len(self._activities),
                },
                "rate_limit": self.limiter.to_dict(mask_token),
            }

    def export_state(self) -> dict[str, Any]:
        """What clients did (runtime customers, created transactions, purchases, fulfillments,
        activities) and the id counter. Seeded records come from the seed again."""
        with self._lock:
            created = set(self._created_transactions)
            purchase_fulfillments = {p["reward_fulfillment"]["id"] for p in self._purchases.values()}
            return loads(
                dumps(
                    {
                        "next_id": self._next_id,
                        "customers": list(self._runtime_customers),
                        "points_transactions": [self._transactions[i] for i in sorted(created)],
                        "purchases": list(self._purchases.values()),
                        "reward_fulfillments": [
                            f for i, f in sorted(self._fulfillments.items()) if i in purchase_fulfillments
                        ],
                        "activities": list(self._activities.values()),
                    }
                )
            )

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced (on top of the seed)."""
        self._add_customers(state.get("customers") or [], runtime=True, source="state")
        with self._lock:
            for txn in state.get("points_transactions") or []:
                rid, customer_id = int(txn["id"]), int(txn["customer_id"])
                if rid in self._transactions:
                    continue
                self._transactions[rid] = dict(txn)
                self._balance_delta[customer_id] += int(txn["points_change"])
                self._touched[customer_id] = max(
                    self._touched.get(customer_id, _EPOCH), _instant(txn.get("created_at")) or _EPOCH
                )
                self._created_transactions.append(rid)
                self._bump(rid)
            for purchase in state.get("purchases") or []:
                self._purchases[int(purchase["id"])] = dict(purchase)
                self._bump(purchase["id"])
            for fulfillment in state.get("reward_fulfillments") or []:
                self._fulfillments[int(fulfillment["id"])] = dict(fulfillment)
                self._bump(fulfillment["id"])
            for activity in state.get("activities") or []:
                self._activities[int(activity["id"])] = dict(activity)
                self._bump(activity["id"])
            self._next_id = max(self._next_id, int(state.get("next_id") or 1))


__all__ = [
    "ALL_SCOPES",
    "DEFAULT_API_KEY",
    "DEFAULT_POINTS_PRODUCTS",
    "DEFAULT_VIP_TIERS",
    "SEED_ENTITIES",
    "SlidingWindowLimiter",
    "SmileEmulator",
    "cursor_page",
    "decode_cursor",
    "encode_cursor",
    "smile_time",
]
