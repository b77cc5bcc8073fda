"""A faithful local LoyaltyLion Admin API emulator (``/v2``; reference: loyalty_apis.md §2, §5).

What it reproduces:

* ``Authorization: Bearer pat_…`` API keys with scopes (``read_customers``, ``write_customers``,
  ``read_orders``, ``write_orders``): 401 ``{"error": {"message": "Authentication is required"}}``,
  403 when the key lacks the scope;
* **20 requests/s per key** (sliding one-second window, real monotonic time) -> 429 with
  ``Retry-After: 1`` (not documented by LoyaltyLion; sent so clients can be tested honouring it);
* errors ``{"error": {"message", "details": {field: msg}}}``;
* ``GET /v2/customers``: ``email`` is a **case-insensitive substring ("contains") match**, so the
  client must filter for exact equality; ``since_id`` (ids above it, ascending), ``cursor`` (opaque
  base64 JSON ``{"lastId", "direction", "filters"}``: it carries the original filters, and every
  other filter on a follow-up request is ignored, only ``limit`` counts), ``limit`` 1..500
  (default 100), ``sort_direction``, ``created_at_min/_max``, ``updated_at_min/_max``. Newest first;
  ``{"customers": [...], "cursor": {"prev", "next"}}`` and the same cursors in a ``Link`` header;
* ``POST /v2/customers/{merchant_id}/points`` ``{points 1..1,000,000, reason}`` -> **201, empty
  body**; ``POST /v2/customers/{merchant_id}/remove_points`` ``{points >= 1, reason}`` -> **204,
  empty body**; unknown ``merchant_id`` -> 404; removing more than ``points_approved`` -> 422 unless
  ``allow_negative_balance=True`` (the real behaviour is undocumented). Each change is recorded as an
  ``adjustment`` transaction whose ``adjustment.note`` is the ``reason`` sent (assumed, unconfirmed);
* ``GET /v2/transactions`` (``customer_id`` = LoyaltyLion's numeric id, ``since_id``, ``cursor``,
  ``limit``, ``created_at_min/_max``) and ``GET /v2/customers/{merchant_id}/transactions``; each
  transaction's ``customer`` shows the customer's **current** state, as documented;
* ``POST /v2/activities`` -> 201 empty (an unknown customer is created, like a tracked shopper),
  ``PUT /v2/activities/{name}/{merchant_id}`` ``{state}`` -> 204, ``GET /v2/activities`` (seeded
  referral activities and posted ones); ``GET /v2/whoami`` (path assumed).

Data: ``loyaltylion/{customers,transactions,referrals}/*.json`` (native objects, one JSON array per
file; ``referrals`` are referral activities). A record is visible once its ``updated_at`` (customer
versions) or ``created_at`` is not after the emulator clock. A seeded customer's ``points_approved``
is authoritative; points added or removed through the API move it from there.

Control: ``GET /_sandbox/loyaltylion/customers`` (live balances), ``POST
/_sandbox/loyaltylion/customers`` (add customers), ``GET /_sandbox/loyaltylion/transactions``,
``GET /_sandbox/loyaltylion/rate``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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
from loyalty_assets.sandbox.smile import (
    SlidingWindowLimiter,
    as_int,
    bearer_token,
    load_json_arrays,
    mask_token,
    smile_time,
)

DEFAULT_API_KEY = "pat_sandbox_loyaltylion_key"
ALL_SCOPES: tuple[str, ...] = ("read_customers", "write_customers", "read_orders", "write_orders")
SEED_ENTITIES = ("customers", "transactions", "referrals")
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_POINTS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ACTIVITY_STATES = ("pending", "approved", "declined", "void")


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("lastId"), int):
        return None
    if payload.get("direction") not in ("next", "prev"):
        return None
    return payload


@dataclass
class _Version:
    updated: datetime
    seq: int
    record: dict[str, Any]


class LoyaltyLionEmulator(Emulator):
    """LoyaltyLion Admin API ``/v2`` over seeded native objects plus in-memory runtime state."""

    name = "loyaltylion"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        scopes: Iterable[str] = ALL_SCOPES,
        rate_per_second: int | None = 20,
        allow_negative_balance: bool = False,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if not api_key.startswith("pat_"):
            raise ValueError("LoyaltyLion API keys start with 'pat_'")
        self.api_key = api_key
        self._keys: dict[str, frozenset[str]] = {api_key: frozenset(scopes)}
        self.limiter = SlidingWindowLimiter(rate_per_second)
        self.allow_negative_balance = allow_negative_balance
        self._lock = threading.RLock()
        self._seq = 0
        self._customers: dict[int, list[_Version]] = {}
        self._by_merchant: dict[str, int] = {}
        self._approved_delta: Counter[int] = Counter()
        self._touched: dict[int, datetime] = {}
        self._transactions: dict[int, dict[str, Any]] = {}
        self._activities: dict[int, dict[str, Any]] = {}
        self._runtime_customers: list[dict[str, Any]] = []
        self._created_transactions: list[int] = []
        self._created_activities: list[int] = []
        self._next_id = 1
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- keys, ids, env

    def add_api_key(self, key: str, scopes: Iterable[str] = ALL_SCOPES) -> None:
        with self._lock:
            self._keys[key] = frozenset(scopes)

    def env(self) -> dict[str, str]:
        """CONTRACT.md §4 settings (the base URL is the host root; requests go to ``/v2/...``)."""
        return {"LOYALTYLION_API_URL": self.base_url, "LOYALTYLION_API_KEY": self.api_key}

    def _bump(self, record_id: Any) -> None:
        number = as_int(record_id)
        if number is not None and number >= self._next_id:
            self._next_id = number + 1

    def _new_id(self) -> int:
        with self._lock:
            new = self._next_id
            self._next_id += 1
            return new

    # ----- data

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/{customers,transactions,referrals}/*.json``."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"LoyaltyLion seed directory {seed_dir} does not exist")
        for path, records in load_json_arrays(seed_dir / "customers"):
            self._add_customers(records, runtime=False, source=str(path))
        for entity, store in (("transactions", self._transactions), ("referrals", self._activities)):
            for path, records in load_json_arrays(seed_dir / entity):
                with self._lock:
                    for index, record in enumerate(records):
                        rid = as_int(record.get("id")) if isinstance(record, dict) else None
                        if rid is None:
                            raise ValueError(f"{path}[{index}] is not a record with an integer 'id'")
                        store[rid] = dict(record, id=rid)
                        self._bump(rid)

    def _add_customers(self, records: Iterable[Any], *, runtime: bool, source: str) -> list[dict[str, Any]]:
        added = []
        now = smile_time(self.clock.now())
        with self._lock:
            for index, raw in enumerate(records):
                if not isinstance(raw, dict):
                    raise ValueError(f"{source}[{index}] is not a customer object")
                record = loads(dumps(raw))
                if runtime:
                    if record.get("id") is None:
                        record["id"] = self._new_id()
                    defaults = {
                        "points_approved": 0,
                        "points_pending": 0,
                        "points_spent": 0,
                        "rewards_claimed": 0,
                        "properties": {},
                        "metadata": {},
                        "birthday": None,
                        "blocked": False,
                        "guest": False,
                        "enrolled": True,
                        "enrolled_at": now,
                        "referral_id": None,
                        "referred_by": None,
                        "loyalty_tier_membership": None,
                        "insights_segment": None,
                        "referral_url": f"https://prz.io/{record['id']}",
                        "linked_merchant_ids": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for key, value in defaults.items():
                        record.setdefault(key, value)
                rid = as_int(record.get("id"))
                if rid is None or record.get("merchant_id") is None:
                    raise ValueError(f"{source}[{index}] needs an integer 'id' and a 'merchant_id'")
                record["id"], record["merchant_id"] = rid, str(record["merchant_id"])
                updated = _instant(record.get("updated_at")) or _instant(record.get("created_at")) or _EPOCH
                self._seq += 1
                versions = self._customers.setdefault(rid, [])
                versions.append(_Version(updated, self._seq, record))
                versions.sort(key=lambda v: (v.updated, v.seq))
                self._by_merchant[record["merchant_id"]] = rid
                self._bump(rid)
                if runtime:
                    self._runtime_customers.append(record)
                added.append(record)
        return added

    def add_customers(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create customers at runtime (``merchant_id`` and ``email`` required; the rest defaults:
        enrolled, 0 points, timestamps now). Returns the stored records."""
        return self._add_customers(list(records), runtime=True, source="add_customers")

    def _live(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        rid = record["id"]
        record["points_approved"] = int(record.get("points_approved") or 0) + self._approved_delta[rid]
        touched = self._touched.get(rid)
        if touched is not None and touched > (_instant(record.get("updated_at")) or _EPOCH):
            record["updated_at"] = smile_time(touched)
        return record

    def _customer_view(self, rid: int, now: datetime | None = None) -> dict[str, Any] | None:
        now = now or self.clock.now()
        with self._lock:
            visible = [v for v in self._customers.get(rid) or [] if v.updated <= now]
            return self._live(visible[-1].record) if visible else None

    def customer_by_merchant_id(self, merchant_id: str) -> dict[str, Any] | None:
        """The live customer (ignores the clock), or None."""
        with self._lock:
            rid = self._by_merchant.get(str(merchant_id))
            return self._live(self._customers[rid][-1].record) if rid is not None else None

    def customers(self) -> list[dict[str, Any]]:
        """Every customer's latest version with its live balance (ignores the clock), id desc."""
        with self._lock:
            return [self._live(self._customers[i][-1].record) for i in sorted(self._customers, reverse=True)]

    def transactions(self, merchant_id: str | None = None) -> list[dict[str, Any]]:
        """Every transaction (seeded and created; ignores the clock), id desc."""
        with self._lock:
            rows = [self._txn_view(t) for t in self._transactions.values()]
        if merchant_id is not None:
            rows = [t for t in rows if str((t.get("customer") or {}).get("merchant_id")) == str(merchant_id)]
        return sorted(rows, key=lambda t: -t["id"])

    def _txn_view(self, txn: dict[str, Any]) -> dict[str, Any]:
        """A transaction with its ``customer`` refreshed to the customer's current state."""
        txn = dict(txn)
        ref = txn.get("customer") or {}
        rid = as_int(ref.get("id"))
        if rid is None and ref.get("merchant_id") is not None:
            rid = self._by_merchant.get(str(ref["merchant_id"]))
        if rid is not None and rid in self._customers:
            live = self._live(self._customers[rid][-1].record)
            txn["customer"] = {
                k: live.get(k)
                for k in ("id", "merchant_id", "email", "points_pending", "points_approved", "points_spent")
            }
        return txn

    # ----- guard and errors

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response({"error": {"message": message}}, status, headers)

    def _error(self, status: int, message: str, details: dict[str, str] | None = None) -> Abort:
        body: dict[str, Any] = {"message": message}
        if details:
            body["details"] = details
        headers = {"Retry-After": "1"} if status == 429 else None
        return Abort(json_response({"error": body}, status, headers))

    def handle(self, request: Request) -> tuple[Response | None, str | None]:
        if not is_control_path(request.path):
            token = bearer_token(request)
            if token is not None and token in self._keys:
                self.limiter.arrive(token)
        return super().handle(request)

    def _authenticate(self, request: Request) -> frozenset[str]:
        """The key's scopes; 401 for a missing or unknown key, 429 over the per-key rate."""
        token = bearer_token(request)
        with self._lock:
            scopes = self._keys.get(token) if token is not None else None
        if token is None or scopes is None:
            raise self._error(401, "Authentication is required")
        allowed, _ = self.limiter.allow(token)
        if not allowed:
            raise self._error(429, f"Rate limit exceeded: {self.limiter.limit} requests per second")
        return scopes

    def _guard(self, request: Request, scope: str) -> None:
        scopes = self._authenticate(request)
        if scope not in scopes:
            raise self._error(403, f"This API key does not have the '{scope}' scope")

    def _body(self, request: Request) -> dict[str, Any]:
        if not request.body:
            return {}
        try:
            body = loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._error(400, "Invalid request", {"body": f"malformed JSON: {exc}"}) from exc
        if not isinstance(body, dict):
            raise self._error(400, "Invalid request", {"body": "must be a JSON object"})
        return body

    def _time_arg(self, request: Request, name: str) -> datetime | None:
        raw = request.arg(name)
        if raw in (None, ""):
            return None
        instant = _instant(raw)
        if instant is None:
            raise self._error(400, "Invalid request", {name: "must be an ISO-8601 date-time"})
        return instant

    # ----- listing with cursors

    def _page(
        self,
        request: Request,
        key: str,
        rows_for: Any,
        filter_names: tuple[str, ...],
    ) -> Response:
        """One page of ``rows_for(filters)`` in the documented cursor / since_id semantics."""
        raw_limit = request.arg("limit")
        limit = DEFAULT_LIMIT if raw_limit in (None, "") else as_int(raw_limit)
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise self._error(
                400, "Invalid request", {"limit": f"must be an integer between 1 and {MAX_LIMIT}"}
            )
        cursor_text = request.arg("cursor")
        if cursor_text:
            cursor = decode_cursor(cursor_text)
            if cursor is None:
                raise self._error(400, "Invalid request", {"cursor": "invalid cursor"})
            filters = cursor.get("filters") or {}
        else:
            cursor = None
            filters = {n: request.arg(n) for n in filter_names if request.arg(n) not in (None, "")}
        rows = rows_for(filters)
        since_id = as_int(filters.get("since_id")) if filters.get("since_id") is not None else None
        if since_id is not None and cursor is None:
            page = sorted((r for r in rows if r["id"] > since_id), key=lambda r: r["id"])[:limit]
            return json_response({key: page, "cursor": {"prev": None, "next": None}})
        descending = (filters.get("sort_direction") or "desc").lower() != "asc"
        rows = sorted(rows, key=lambda r: r["id"], reverse=descending)

        def after(r: dict[str, Any], anchor: int) -> bool:
            return r["id"] < anchor if descending else r["id"] > anchor

        if cursor is None:
            page = rows[:limit]
        elif cursor["direction"] == "next":
            page = [r for r in rows if after(r, cursor["lastId"])][:limit]
        else:
            anchor = cursor["lastId"]
            page = [r for r in rows if (r["id"] > anchor if descending else r["id"] < anchor)][-limit:]
        nxt = prev = None
        if page and any(after(r, page[-1]["id"]) for r in rows):
            nxt = encode_cursor({"lastId": page[-1]["id"], "direction": "next", "filters": filters})
        if page and any(after(page[0], r["id"]) for r in rows):
            prev = encode_cursor({"lastId": page[0]["id"], "direction": "prev", "filters": filters})
        links = []
        base = f"{self.base_url}{request.path}"
        for rel, value in (("next", nxt), ("prev", prev)):
            if value:
                links.append(f'<{base}?{urlencode({"cursor": value, "limit": limit})}>; rel="{rel}"')
        headers = {"Link": ", ".join(links)} if links else None
        return json_response({key: page, "cursor": {"prev": prev, "next": nxt}}, headers=headers)

    @staticmethod
    def _in_window(record: dict[str, Any], field: str, filters: dict[str, Any]) -> bool:
        value = _instant(record.get(field)) or _EPOCH
        low, high = _instant(filters.get(f"{field}_min")), _instant(filters.get(f"{field}_max"))
        return (low is None or value >= low) and (high is None or value <= high)

    # ----- routes

    def register_routes(self, router: Router) -> None:
        m = r"(?P<merchant_id>[^/]+)"
        router.add("GET", r"/v2/whoami", self._whoami, "whoami")
        router.add("GET", r"/v2/customers", self._customers_list, "customers list")
        router.add("POST", rf"/v2/customers/{m}/points", self._add_points, "customer add points")
        router.add("POST", rf"/v2/customers/{m}/remove_points", self._remove_points, "customer remove points")
        router.add(
            "GET", rf"/v2/customers/{m}/transactions", self._customer_transactions, "customer transactions"
        )
        router.add("GET", r"/v2/transactions", self._transactions_list, "transactions list")
        router.add("GET", r"/v2/activities", self._activities_list, "activities list")
        router.add("POST", r"/v2/activities", self._activity_create, "activities create")
        router.add("PUT", rf"/v2/activities/(?P<name>[^/]+)/{m}", self._activity_update, "activity update")

    def register_control_routes(self, router: Router) -> None:
        router.add("GET", r"/_sandbox/loyaltylion/customers", self._ctl_customers, "ll customers")
        router.add("POST", r"/_sandbox/loyaltylion/customers", self._ctl_add_customers, "ll add customers")
        router.add("GET", r"/_sandbox/loyaltylion/transactions", self._ctl_transactions, "ll transactions")
        router.add("GET", r"/_sandbox/loyaltylion/rate", self._ctl_rate, "ll rate")

    def not_found(self, request: Request) -> Response:
        return self.error_response(404, f"No route for {request.method} {request.path}")

    def _whoami(self, request: Request) -> Response:
        scopes = self._authenticate(request)
        return json_response(
            {
                "kind": "api_key",
                "account_id": 1,
                "program_id": 1,
                "scopes": sorted(scopes),
                "integration": None,
            }
        )

    # ----- customers

    def _visible_customers(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self._lock:
            ids = list(self._customers)
            return [c for c in (self._customer_view(i, now) for i in ids) if c is not None]

    def _customers_list(self, request: Request) -> Response:
        self._guard(request, "read_customers")
        if (request.arg("sort_field") or "id") != "id":
            raise self._error(
                400, "Invalid request", {"sort_field": "the sandbox supports sort_field=id only"}
            )

        def rows_for(filters: dict[str, Any]) -> list[dict[str, Any]]:
            rows = self._visible_customers()
            email = (filters.get("email") or "").strip().casefold()
            if email:  # documented: "customers whose email contains the specified string"
                rows = [r for r in rows if email in str(r.get("email") or "").casefold()]
            return [
                r
                for r in rows
                if self._in_window(r, "created_at", filters) and self._in_window(r, "updated_at", filters)
            ]

        names = ("email", "since_id", "sort_direction", "created_at_min", "created_at_max")
        names += ("updated_at_min", "updated_at_max")
        for name in ("created_at_min", "created_at_max", "updated_at_min", "updated_at_max"):
            self._time_arg(request, name)
        return self._page(request, "customers", rows_for, names)

    def _points_args(self, request: Request, *, upper: int | None) -> tuple[dict[str, Any], int, str | None]:
        merchant_id = request.path_params["merchant_id"]
        body = self._body(request)
        points = body.get("points")
        if (
            isinstance(points, bool)
            or not isinstance(points, int)
            or points < 1
            or (upper and points > upper)
        ):
            bound = f"between 1 and {upper:,}" if upper else "at least 1"
            raise self._error(400, "Invalid request", {"points": f"must be an integer {bound}"})
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise self._error(400, "Invalid request", {"reason": "must be a string or null"})
        with self._lock:
            rid = self._by_merchant.get(merchant_id)
            customer = self._customer_view(rid) if rid is not None else None
        if customer is None:
            raise self._error(404, f"Customer with merchant_id {merchant_id} not found")
        return customer, points, reason

    def _adjust(self, customer: dict[str, Any], change: int, reason: str | None) -> dict[str, Any]:
        now = self.clock.now()
        rid = customer["id"]
        with self._lock:
            self._approved_delta[rid] += change
            self._touched[rid] = now
            txn = {
                "id": self._new_id(),
                "customer": {"id": rid, "merchant_id": customer["merchant_id"]},
                "points_approved": change,
                "points_pending": 0,
                "created_at": smile_time(now),
                "resource": "adjustment",
                "adjustment": {"note": reason},
            }
            self._transactions[txn["id"]] = txn
            self._created_transactions.append(txn["id"])
        return txn

    def _add_points(self, request: Request) -> Response:
        self._guard(request, "write_customers")
        with self._lock:
            customer, points, reason = self._points_args(request, upper=MAX_POINTS)
            self._adjust(customer, points, reason)
        return Response(status=201, body=b"", headers={"Content-Type": "application/json; charset=utf-8"})

    def _remove_points(self, request: Request) -> Response:
        self._guard(request, "write_customers")
        with self._lock:
            customer, points, reason = self._points_args(request, upper=None)
            balance = int(customer.get("points_approved") or 0)
            if balance - points < 0 and not self.allow_negative_balance:
                raise self._error(
                    422,
                    f"Customer has insufficient points: {balance} approved, {points} to remove",
                    {"points": "exceeds the customer's approved points"},
                )
            self._adjust(customer, -points, reason)
        return Response(status=204)

    # ----- transactions

    def _visible_transactions(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self._lock:
            return [
                self._txn_view(t)
                for t in self._transactions.values()
                if (_instant(t.get("created_at")) or _EPOCH) <= now
            ]

    def _txn_rows(self, filters: dict[str, Any], merchant_id: str | None = None) -> list[dict[str, Any]]:
        rows = self._visible_transactions()
        if merchant_id is not None:
            rows = [r for r in rows if str((r.get("customer") or {}).get("merchant_id")) == merchant_id]
        customer_id = as_int(filters.get("customer_id")) if filters.get("customer_id") else None
        if customer_id is not None:
            rows = [r for r in rows if as_int((r.get("customer") or {}).get("id")) == customer_id]
        return [r for r in rows if self._in_window(r, "created_at", filters)]

    def _transactions_list(self, request: Request) -> Response:
        self._guard(request, "read_customers")
        names = ("customer_id", "since_id", "created_at_min", "created_at_max")
        return self._page(request, "transactions", self._txn_rows, names)

    def _customer_transactions(self, request: Request) -> Response:
        self._guard(request, "read_customers")
        merchant_id = request.path_params["merchant_id"]
        if merchant_id not in self._by_merchant:
            raise self._error(404, f"Customer with merchant_id {merchant_id} not found")
        names = ("since_id", "created_at_min", "created_at_max")
        return self._page(
            request, "transactions", lambda f: self._txn_rows(f, merchant_id=merchant_id), names
        )

    # ----- activities (referrals are activities)

    def _activities_list(self, request: Request) -> Response:
        self._guard(request, "read_customers")
        now = self.clock.now()

        def rows_for(filters: dict[str, Any]) -> list[dict[str, Any]]:
            with self._lock:
                rows = [dict(a) for a in self._activities.values()]
            rows = [r for r in rows if (_instant(r.get("created_at")) or _EPOCH) <= now]
            return [r for r in rows if self._in_window(r, "created_at", filters)]

        return self._page(request, "activities", rows_for, ("since_id", "created_at_min", "created_at_max"))

    def _activity_create(self, request: Request) -> Response:
        self._guard(request, "write_customers")
        body = self._body(request)
        missing = {k: "is required" for k in ("name", "customer_id", "customer_email") if not body.get(k)}
        if missing:
            raise self._error(400, "Invalid request", missing)
        merchant_customer = str(body["customer_id"])
        now = self.clock.now()
        with self._lock:
            if merchant_customer not in self._by_merchant:
                self._add_customers(
                    [
                        {
                            "merchant_id": merchant_customer,
                            "email": body["customer_email"],
                            "guest": bool(body.get("guest", True)),
                        }
                    ],
                    runtime=True,
                    source="activity",
                )
            rid = self._by_merchant[merchant_customer]
            activity = {
                "id": self._new_id(),
                "merchant_id": None if body.get("merchant_id") is None else str(body["merchant_id"]),
                "name": body["name"],
                "state": "pending",
                "rule": {"id": None, "name": None},
                "flow": None,
                "customer": {"id": rid, "merchant_id": merchant_customer, "email": body["customer_email"]},
                "properties": body.get("properties") or {},
                "referral_id": body.get("referral_id"),
                "created_at": smile_time(_instant(body.get("date")) or now),
            }
            self._activities[activity["id"]] = activity
            self._created_activities.append(activity["id"])
        return Response(status=201, body=b"", headers={"Content-Type": "application/json; charset=utf-8"})

    def _activity_update(self, request: Request) -> Response:
        self._guard(request, "write_customers")
        state = self._body(request).get("state")
        if state not in ("approved", "declined", "void"):
            raise self._error(400, "Invalid request", {"state": "must be approved, declined or void"})
        name, merchant_id = request.path_params["name"], request.path_params["merchant_id"]
        with self._lock:
            found = [
                a
                for a in self._activities.values()
                if a.get("name") == name and str(a.get("merchant_id")) == merchant_id
            ]
            if not found:
                raise self._error(404, f"Activity {name}/{merchant_id} not found")
            for activity in found:
                if state == "declined" and activity.get("state") == "approved":
                    state = "void"  # documented: declined on an approved activity voids it
                activity["state"] = state
        return Response(status=204)

    # ----- control surface and state

    def _ctl_customers(self, request: Request) -> Response:
        return json_response({"customers": self.customers()})

    def _ctl_add_customers(self, request: Request) -> Response:
        body = request.json()
        records = body.get("customers") if isinstance(body, dict) else body
        if not isinstance(records, list):
            return json_response({"message": 'body must be {"customers": [...]}'}, 400)
        try:
            added = self.add_customers(records)
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"customers": added}, 201)

    def _ctl_transactions(self, request: Request) -> Response:
        return json_response({"transactions": self.transactions(request.arg("merchant_id"))})

    def _ctl_rate(self, request: Request) -> Response:
        return json_response(self.limiter.to_dict(mask_token))

    def sandbox_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records": {
                    "customers": len(self._customers),
                    "customers_added_at_runtime": len(self._runtime_customers),
                    "transactions": len(self._transactions),
                    "transactions_created": len(self._created_transactions),
                    "activities": len(self._activities),
                },
                "rate_limit": self.limiter.to_dict(mask_token),
            }

    def export_state(self) -> dict[str, Any]:
        with self._lock:
            return loads(
                dumps(
                    {
                        "next_id": self._next_id,
                        "customers": list(self._runtime_customers),
                        "transactions": [self._transactions[i] for i in self._created_transactions],
                        "activities": [self._activities[i] for i in self._created_activities],
                        "activity_states": {str(i): a.get("state") for i, a in self._activities.items()},
                    }
                )
            )

    def import_state(self, state: dict[str, Any]) -> None:
        self._add_customers(state.get("customers") or [], runtime=True, source="state")
        with self._lock:
            for txn in state.get("transactions") or []:
                rid = int(txn["id"])
                if rid in self._transactions:
                    continue
                self._transactions[rid] = dict(txn)
                customer_id = int(txn["customer"]["id"])
                self._approved_delta[customer_id] += int(txn.get("points_approved") or 0)
                self._touched[customer_id] = max(
                    self._touched.get(customer_id, _EPOCH), _instant(txn.get("created_at")) or _EPOCH
                )
                self._created_transactions.append(rid)
                self._bump(rid)
            for activity in state.get("activities") or []:
                rid = int(activity["id"])
                if rid not in self._activities:
                    self._activities[rid] = dict(activity)
                    self._created_activities.append(rid)
                    self._bump(rid)
            for key, value in (state.get("activity_states") or {}).items():
                if int(key) in self._activities and value in _ACTIVITY_STATES:
                    self._activities[int(key)]["state"] = value
            self._next_id = max(self._next_id, int(state.get("next_id") or 1))


__all__ = [
    "ALL_SCOPES",
    "DEFAULT_API_KEY",
    "LoyaltyLionEmulator",
    "MAX_POINTS",
    "decode_cursor",
    "encode_cursor",
]
