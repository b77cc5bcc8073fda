"""A faithful local Magento 2 / Adobe Commerce REST emulator (reference: commerce_apis.md §1, §8.2).

It serves seeded native records through the real paths, envelope, auth and searchCriteria rules, and
reproduces the quirks our connector must survive:

* filter groups: OR within a group, AND across groups; every documented condition type;
* default sort direction DESC when a sort order has no direction (performing-searches.md);
* no ``pageSize`` -> all rows; **a ``currentPage`` past the end returns the last page again**
  (magento/magento2#3787, #8099, #26986), so clients must stop on ``total_count``;
* admin tokens that expire after 4 hours of the *emulator* clock; 401 bodies in Magento's shape;
* versions: a record id may appear several times with different ``updated_at``. A search answers
  with each record as it stood at ``asof = min(upper bound of the updated_at filter, clock)``, so a
  window ``[from, to)`` sees exactly what a real store would have shown at ``to``, and records
  "appear" as the replay clock advances (this is how sensors are exercised).

Store codes: ``/rest/<store_code>/V1/...`` and ``/rest/V1/...`` are both served; any store code
(``default``, ``all`` or another) answers with the records of all stores, because a Magento order
search is not scoped by the store code unless a ``store_id`` filter is given. Fields absent from a
record are NULL (Magento omits null keys). String comparisons are case-insensitive, like MySQL's
default collation. Without sort orders, rows come in id order.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

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
    parse_instant,
)

#: entity (also its seed sub-directory) -> id field
ENTITIES: dict[str, str] = {"orders": "entity_id", "creditmemos": "entity_id", "customers": "id"}

#: ACL resource named in the 401 body of each entity's endpoints (as Magento reports it).
_RESOURCES = {
    "orders": "Magento_Sales::actions_view",
    "creditmemos": "Magento_Sales::sales_creditmemo",
    "customers": "Magento_Customer::customer",
}

DEFAULT_TOKEN_TTL = timedelta(hours=4)  # admin tokens (gs-authentication-token.md)
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "sandbox-admin-123"

SIGN_IN_INCORRECT = (
    "The account sign-in was incorrect or your account is disabled temporarily. "
    "Please wait and try again later."
)
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."
NO_ROUTE = "Request does not match any route."
NO_SUCH_ENTITY = "The entity that was requested doesn't exist. Verify the entity and try again."

_CONDITIONS = {
    "eq",
    "neq",
    "gt",
    "gteq",
    "lt",
    "lteq",
    "moreq",
    "from",
    "to",
    "in",
    "nin",
    "like",
    "nlike",
    "null",
    "notnull",
    "finset",
    "nfinset",
}
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_PREFIX = r"(?:/index\.php)?/rest/(?:(?P<store>[A-Za-z0-9_]+)/)?V1"


def magento_timestamp(value: Any) -> datetime | None:
    """A Magento ``YYYY-MM-DD HH:MM:SS`` (UTC) string as an aware datetime; None if it is not one."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value.strip()):
        return None
    try:
        return datetime.fromisoformat(value.strip()).replace(tzinfo=UTC)
    except ValueError:
        return None


def _bad_request(message: str, parameters: Any = None) -> Abort:
    body: dict[str, Any] = {"message": message}
    if parameters is not None:
        body["parameters"] = parameters
    return Abort(json_response(body, 400))


# --------------------------------------------------------------------------------------------------
# searchCriteria


@dataclass(frozen=True)
class Filter:
    field: str
    value: str | None
    condition: str

    def echo(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "condition_type": self.condition}


@dataclass(frozen=True)
class SearchCriteria:
    groups: list[list[Filter]]
    sort_orders: list[tuple[str, str]]
    page_size: int | None
    current_page: int | None
    sort_given: bool

    def echo(self) -> dict[str, Any]:
        """The ``search_criteria`` member of the response envelope (as requested, not clamped)."""
        out: dict[str, Any] = {"filter_groups": [{"filters": [f.echo() for f in g]} for g in self.groups]}
        if self.sort_given:
            out["sort_orders"] = [{"field": f, "direction": d} for f, d in self.sort_orders]
        if self.page_size is not None:
            out["page_size"] = self.page_size
        if self.current_page is not None:
            out["current_page"] = self.current_page
        return out


def parse_bracket_query(query: str) -> dict[str, Any]:
    """``a[b][0][c]=v`` query strings (PHP style) to nested dicts."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"([^\[\]]*)\]", "[" + rest) if rest else [])
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return root


def _pick(node: dict[str, Any], *names: str) -> Any:
    """The first of several accepted spellings (``filterGroups``/``filter_groups``, ...)."""
    for name in names:
        if name in node:
            return node[name]
    return None


def _indexed(node: Any, what: str) -> list[Any]:
    """``{"0": x, "1": y}`` to ``[x, y]`` in index order."""
    if node is None:
        return []
    if not isinstance(node, dict) or not all(k.isdigit() for k in node):
        raise _bad_request(f"searchCriteria {what} must be indexed like {what}[0][...]")
    return [node[k] for k in sorted(node, key=int)]


def _int_param(raw: Any, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError as exc:
        raise _bad_request(
            f'The "{raw}" value\'s type is invalid. The "int" type was expected. Verify and try again.',
            {"field": name},
        ) from exc


def parse_search_criteria(query: str) -> SearchCriteria:
    """Parse ``searchCriteria[...]`` accepting both the camelCase (OpenAPI) and snake_case (REST
    docs) spellings, since both are seen in practice."""
    sc = parse_bracket_query(query).get("searchCriteria") or {}
    if not isinstance(sc, dict):
        sc = {}
    groups: list[list[Filter]] = []
    for group in _indexed(_pick(sc, "filterGroups", "filter_groups"), "filter_groups"):
        if not isinstance(group, dict):
            raise _bad_request("searchCriteria filter group is malformed")
        filters = []
        for raw in _indexed(group.get("filters"), "filters"):
            if not isinstance(raw, dict) or not raw.get("field"):
                raise _bad_request('"%fieldName" is required. Enter and try again.', {"fieldName": "field"})
            condition = (_pick(raw, "conditionType", "condition_type") or "eq").strip().lower()
            if condition not in _CONDITIONS:
                raise _bad_request(f'Invalid condition type "{condition}".')
            filters.append(Filter(raw["field"], raw.get("value"), condition))
        if filters:
            groups.append(filters)
    sort_orders: list[tuple[str, str]] = []
    raw_sorts = _indexed(_pick(sc, "sortOrders", "sort_orders"), "sort_orders")
    for raw in raw_sorts:
        if not isinstance(raw, dict) or not raw.get("field"):
            raise _bad_request("searchCriteria sort order needs a field")
        # performing-searches.md: "By default, search results are returned in descending order".
        direction = (raw.get("direction") or "DESC").strip().upper()
        if direction not in ("ASC", "DESC"):
            raise _bad_request(f'Sort order "{direction}" is not supported.')
        sort_orders.append((raw["field"], direction))
    page_size = _int_param(_pick(sc, "pageSize", "page_size"), "pageSize")
    current_page = _int_param(_pick(sc, "currentPage", "current_page"), "currentPage")
    return SearchCriteria(groups, sort_orders, page_size, current_page, bool(raw_sorts))


def _sql_like(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _comparable(record_value: Any, filter_value: Any) -> tuple[Any, Any] | None:
    """Coerce both sides the way MySQL would compare the column: timestamps as instants, numeric
    columns numerically, text case-insensitively. None when they cannot be compared."""
    if record_value is None or filter_value is None:
        return None
    ts_record = magento_timestamp(record_value)
    if ts_record is not None:
        ts_filter = magento_timestamp(str(filter_value))
        if ts_filter is None:
            raise _bad_request(f'"{filter_value}" is not a valid date-time value (use YYYY-MM-DD HH:MM:SS).')
        return ts_record, ts_filter
    if isinstance(record_value, int | float | Decimal) and not isinstance(record_value, bool):
        number = _as_number(filter_value)
        return (_as_number(record_value), number) if number is not None else None
    if isinstance(record_value, dict | list):
        return None
    return str(record_value).casefold(), str(filter_value).casefold()


def _equals(record_value: Any, candidate: Any) -> bool:
    pair = _comparable(record_value, candidate)
    return pair is not None and pair[0] == pair[1]


def filter_matches(record: dict[str, Any], flt: Filter) -> bool:
    """One condition against one record (SQL NULL semantics: NULL matches only ``null``)."""
    value = record.get(flt.field)
    cond = flt.condition
    if cond == "null":
        return value is None
    if cond == "notnull":
        return value is not None
    if value is None:
        return False
    if cond in ("in", "nin"):
        candidates = [c.strip() for c in (flt.value or "").split(",")]
        hit = any(_equals(value, c) for c in candidates)
        return hit if cond == "in" else not hit
    if cond in ("like", "nlike"):
        hit = _sql_like(flt.value or "").fullmatch(str(value)) is not None
        return hit if cond == "like" else not hit
    if cond in ("finset", "nfinset"):
        members = [m.strip().casefold() for m in str(value).split(",")]
        hit = (flt.value or "").strip().casefold() in members
        return hit if cond == "finset" else not hit
    pair = _comparable(value, flt.value)
    if pair is None:
        return False
    left, right = pair
    if cond == "eq":
        return left == right
    if cond == "neq":
        return left != right
    if cond == "gt":
        return left > right
    if cond in ("gteq", "moreq", "from"):
        return left >= right
    if cond == "lt":
        return left < right
    if cond in ("lteq", "to"):
        return left <= right
    raise AssertionError(cond)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Total order over mixed JSON values; NULLs first in ascending order, as in MySQL."""
    if value is None:
        return (0, 0)
    ts = magento_timestamp(value)
    if ts is not None:
        return (1, ts)
    number = _as_number(value) if not isinstance(value, str) else None
    if number is not None:
        return (2, number)
    if isinstance(value, str):
        return (3, value.casefold())
    return (4, dumps(value))


def _updated_at_bound(groups: list[list[Filter]]) -> tuple[datetime, bool] | None:
    """The upper bound an AND-ed ``updated_at`` filter group puts on the query: (instant, strict).

    Only a group made solely of ``updated_at`` upper bounds constrains every row (groups are ANDed,
    filters inside a group ORed); the tightest such group wins.
    """
    best: tuple[datetime, bool] | None = None
    for group in groups:
        if not all(f.field == "updated_at" and f.condition in ("lt", "lteq", "to") for f in group):
            continue
        group_bound: tuple[datetime, bool] | None = None
        for flt in group:
            instant = magento_timestamp(flt.value or "")
            if instant is None:
                raise _bad_request(f'"{flt.value}" is not a valid date-time value (use YYYY-MM-DD HH:MM:SS).')
            candidate = (instant, flt.condition == "lt")
            # OR inside the group: the loosest bound of the group applies.
            if group_bound is None or (candidate[0], not candidate[1]) > (group_bound[0], not group_bound[1]):
                group_bound = candidate
        assert group_bound is not None
        if best is None or (group_bound[0], not group_bound[1]) < (best[0], not best[1]):
            best = group_bound
    return best


# --------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Version:
    updated: datetime
    seq: int
    record: dict[str, Any]


class MagentoEmulator(Emulator):
    """Magento 2 REST (orders, credit memos, customers) over seeded native records.

    ``seed_dir`` is the ``magento/`` directory of a seed (``orders/``, ``creditmemos/`` and
    ``customers/`` each holding ``*.json`` files with one JSON array of native records); None or a
    missing sub-directory means no records. ``access_token`` is an additional static bearer token
    that never expires (what ``MAGENTO_ACCESS_TOKEN`` carries). ``max_page_size`` enables Magento's
    optional web API input limit (disabled by default, like Magento).
    """

    name = "magento"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        access_token: str | None = None,
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
        max_page_size: int | None = None,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.username, self.password = username, password
        self.access_token = access_token
        self.token_ttl = token_ttl
        self.max_page_size = max_page_size
        self._data_lock = threading.RLock()
        self._versions: dict[str, dict[str, list[_Version]]] = {e: {} for e in ENTITIES}
        self._runtime: dict[str, list[dict[str, Any]]] = {e: [] for e in ENTITIES}
        self._tokens: dict[str, datetime] = {}
        self._tokens_issued = 0
        self._seq = 0
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- data

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/{orders,creditmemos,customers}/*.json``; a malformed file fails loudly."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"Magento seed directory {seed_dir} does not exist")
        for entity in ENTITIES:
            folder = seed_dir / entity
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    data = loads(path.read_bytes())
                except ValueError as exc:
                    raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                if not isinstance(data, list):
                    raise ValueError(f"{path}: expected a JSON array of native Magento {entity} records")
                self._add(entity, data, runtime=False, source=str(path))

    def add_records(self, entity: str, records: Iterable[dict[str, Any]]) -> int:
        """Add records (new ids or new versions) at runtime, e.g. to simulate new data in a test.
        They are kept in the persisted runtime state. Returns how many were added."""
        # Round-trip through JSON so callers' floats become Decimal and later mutation cannot leak in.
        normalized = loads(dumps(list(records)))
        return self._add(entity, normalized, runtime=True, source="add_records")

    def _add(self, entity: str, records: list[Any], *, runtime: bool, source: str) -> int:
        if entity not in ENTITIES:
            raise ValueError(f"unknown Magento entity {entity!r} (known: {sorted(ENTITIES)})")
        id_field = ENTITIES[entity]
        with self._data_lock:
            for index, record in enumerate(records):
                if not isinstance(record, dict) or record.get(id_field) is None:
                    raise ValueError(f"{source}: {entity}[{index}] is not a record with {id_field!r}")
                updated = magento_timestamp(record.get("updated_at")) or magento_timestamp(
                    record.get("created_at")
                )
                # A record without timestamps is treated as always visible.
                updated = updated or datetime.min.replace(tzinfo=UTC)
                self._seq += 1
                versions = self._versions[entity].setdefault(str(record[id_field]), [])
                versions.append(_Version(updated, self._seq, record))
                versions.sort(key=lambda v: (v.updated, v.seq))
                if runtime:
                    self._runtime[entity].append(record)
        return len(records)

    def records_as_of(self, entity: str, asof: datetime, *, strict: bool = False) -> list[dict[str, Any]]:
        """Each id's latest version with ``updated_at <= asof`` (``<`` when strict), in id order."""
        with self._data_lock:
            out: list[dict[str, Any]] = []
            for versions in self._versions[entity].values():
                visible = [v for v in versions if (v.updated < asof if strict else v.updated <= asof)]
                if visible:
                    out.append(visible[-1].record)
        id_field = ENTITIES[entity]
        out.sort(key=lambda r: _sort_key(r.get(id_field)))
        return out

    def search(self, entity: str, criteria: SearchCriteria) -> dict[str, Any]:
        """The search envelope for ``criteria``, answered as of ``min(updated_at bound, clock)``."""
        asof, strict = self.clock.now(), False
        bound = _updated_at_bound(criteria.groups)
        if bound is not None and (bound[0] < asof or (bound[0] == asof and bound[1])):
            asof, strict = bound
        rows = [
            r
            for r in self.records_as_of(entity, asof, strict=strict)
            if all(any(filter_matches(r, f) for f in group) for group in criteria.groups)
        ]
        for field, direction in reversed(criteria.sort_orders):  # stable sort: last key first
            rows.sort(key=lambda r, f=field: _sort_key(r.get(f)), reverse=direction == "DESC")
        total = len(rows)
        page_size = criteria.page_size
        if page_size is not None and self.max_page_size is not None and page_size > self.max_page_size:
            raise _bad_request("Maximum SearchCriteria pageSize is %max", {"max": self.max_page_size})
        if page_size and page_size > 0:
            last_page = max(1, math.ceil(total / page_size))
            # The real quirk (magento/magento2#3787): an out-of-range page is the last page again.
            page = min(max(criteria.current_page or 1, 1), last_page)
            rows = rows[(page - 1) * page_size : page * page_size]
        return {"items": rows, "search_criteria": criteria.echo(), "total_count": total}

    # ----- auth

    def issue_token(self) -> str:
        """A new admin token (32 hex characters, like Magento's), valid for ``token_ttl``."""
        token = secrets.token_hex(16)
        with self._data_lock:
            self._tokens[token] = self.clock.now()
            self._tokens_issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        if self.access_token and hmac.compare_digest(token, self.access_token):
            return True
        with self._data_lock:
            issued = self._tokens.get(token)
        return issued is not None and self.clock.now() - issued < self.token_ttl

    def _require_auth(self, request: Request, entity: str) -> None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not self.token_valid(token.strip()):
            raise Abort(
                json_response(
                    {"message": NOT_AUTHORIZED, "parameters": {"resources": _RESOURCES[entity]}}, 401
                )
            )

    # ----- routes

    def register_routes(self, router: Router) -> None:
        router.add("POST", _PREFIX + r"/integration/admin/token", self._admin_token, "admin token")
        router.add("GET", _PREFIX + r"/orders", self._search_handler("orders"), "orders search")
        router.add("GET", _PREFIX + r"/orders/(?P<id>\d+)", self._get_handler("orders"), "order get")
        router.add(
            "GET", _PREFIX + r"/creditmemos", self._search_handler("creditmemos"), "creditmemos search"
        )
        router.add(
            "GET", _PREFIX + r"/creditmemo/(?P<id>\d+)", self._get_handler("creditmemos"), "creditmemo get"
        )
        router.add(
            "GET", _PREFIX + r"/customers/search", self._search_handler("customers"), "customers search"
        )
        router.add("GET", _PREFIX + r"/customers/(?P<id>\d+)", self._get_handler("customers"), "customer get")

    def register_control_routes(self, router: Router) -> None:
        router.add("POST", r"/_sandbox/magento/records", self._control_add_records, "sandbox add records")

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response({"message": message}, status, headers)

    def not_found(self, request: Request) -> Response:
        return json_response({"message": NO_ROUTE}, 404)

    def method_not_allowed(self, request: Request) -> Response:
        return json_response({"message": NO_ROUTE}, 404)  # Magento does not distinguish the two

    def _admin_token(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise _bad_request("Decoding error: the body must be a JSON object.")
        missing = [k for k in ("username", "password") if not body.get(k)]
        if missing:
            return json_response(
                {
                    "message": "One or more input exceptions have occurred.",
                    "errors": [
                        {
                            "message": '"%fieldName" is required. Enter and try again.',
                            "parameters": {"fieldName": k},
                        }
                        for k in missing
                    ],
                },
                400,
            )
        ok_user = hmac.compare_digest(str(body["username"]), self.username)
        ok_pass = hmac.compare_digest(str(body["password"]), self.password)
        if not (ok_user and ok_pass):
            return json_response({"message": SIGN_IN_INCORRECT}, 401)
        return json_response(self.issue_token())

    def _search_handler(self, entity: str):
        def handler(request: Request) -> Response:
            self._require_auth(request, entity)
            return json_response(self.search(entity, parse_search_criteria(request.query_string)))

        return handler

    def _get_handler(self, entity: str):
        def handler(request: Request) -> Response:
            self._require_auth(request, entity)
            wanted = request.path_params["id"]
            with self._data_lock:
                versions = self._versions[entity].get(wanted, [])
                now = self.clock.now()
                visible = [v for v in versions if v.updated <= now]
            if not visible:
                if entity == "customers":
                    return json_response(
                        {
                            "message": "No such entity with %fieldName = %fieldValue",
                            "parameters": {"fieldName": "customerId", "fieldValue": int(wanted)},
                        },
                        404,
                    )
                return json_response({"message": NO_SUCH_ENTITY}, 404)
            return json_response(visible[-1].record)

        return handler

    def _control_add_records(self, request: Request) -> Response:
        """``{"entity": "orders", "records": [...]}`` -> adds them (same as :meth:`add_records`)."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return json_response({"message": 'body must be {"entity": ..., "records": [...]}'}, 400)
        try:
            added = self._add(str(body.get("entity")), body["records"], runtime=True, source="control")
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"added": added})

    # ----- state

    def sandbox_state(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._data_lock:
            records = {
                entity: {
                    "ids": len(by_id),
                    "versions": sum(len(v) for v in by_id.values()),
                    "visible_now": sum(1 for v in by_id.values() if v[0].updated <= now),
                    "added_at_runtime": len(self._runtime[entity]),
                }
                for entity, by_id in self._versions.items()
            }
            active = sum(1 for issued in self._tokens.values() if now - issued < self.token_ttl)
            return {
                "records": records,
                "tokens_issued": self._tokens_issued,
                "tokens_active": active,
                "token_ttl_seconds": self.token_ttl.total_seconds(),
            }

    def export_state(self) -> dict[str, Any]:
        """Runtime state worth persisting across restarts (``--state``): issued tokens and the
        records added at runtime. Seeded records are not included: they come from the seed."""
        with self._data_lock:
            return {
                "tokens": {t: issued.isoformat() for t, issued in self._tokens.items()},
                "tokens_issued": self._tokens_issued,
                "records": {e: list(r) for e, r in self._runtime.items() if r},
            }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced."""
        with self._data_lock:
            for token, issued in (state.get("tokens") or {}).items():
                self._tokens[token] = parse_instant(issued)
            self._tokens_issued = max(
                self._tokens_issued, int(state.get("tokens_issued") or 0), len(self._tokens)
            )
        for entity, records in (state.get("records") or {}).items():
            self._add(entity, records, runtime=True, source="state")


__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_TOKEN_TTL",
    "DEFAULT_USERNAME",
    "ENTITIES",
    "Filter",
    "MagentoEmulator",
    "SearchCriteria",
    "filter_matches",
    "magento_timestamp",
    "parse_search_criteria",
]
