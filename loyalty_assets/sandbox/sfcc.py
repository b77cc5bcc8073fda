"""A faithful local Salesforce B2C Commerce (SCAPI Orders admin API) emulator (reference:
commerce_apis.md §0, §5, §8; spec: SalesforceCommerceCloud/commerce-sdk
``apis/orders-oas-1.5.2/orders-oas-v1-public.yaml``, operation ``getOrders``/``getOrder``).

What it serves, per organization found in the seed (``<seed_dir>/<organization_id>/orders/*.json``,
each file one JSON array of native SCAPI order objects, as ``GET .../orders`` returns them in
``data``):

* ``GET /checkout/orders/v1/organizations/{organizationId}/orders`` with ``siteId`` (a filter here;
  the spec marks it required, see ``require_site_id``), ``lastModifiedDateFrom`` (>=) /
  ``lastModifiedDateTo`` (<), ``creationDateFrom`` (>=) / ``creationDateTo`` (<) (ISO-8601
  date-time, ``Z`` or offset, or a bare ``YYYY-MM-DD`` taken as midnight UTC: the spec's parameter
  descriptions say "date-only" while the format is date-time), ``status``, ``exportStatus``,
  ``paymentStatus``, ``shippingStatus``, ``confirmationStatus`` (comma-separated lists),
  ``sortBy`` (``creation_date`` default | ``last_modified_date``), ``sortOrder`` (``desc`` default
  | ``asc``), ``limit`` (1-200, default 100) and ``offset`` (>= 0) with **offset + limit <= 10000**;
  anything else out of range is a 400. Ties on the sort key are broken by ``orderNo`` in the same
  direction, so offset paging is stable.
* The envelope is the spec's ``OrdersResponse``: ``{"data": [...]}`` and nothing else (the schema
  has ``additionalProperties: false`` and **no total count**; the real example payload agrees).
  ``envelope_totals=True`` adds ``limit``, ``offset`` and ``total`` for callers that want them; a
  client must not depend on them.
* ``GET .../orders/{orderNo}``: the order as it stands at the emulator clock (404 in the spec's
  ``OrderNotFound`` shape otherwise).
* Auth: ``Authorization: Bearer <access_token>`` (the Account Manager client-credentials token a
  real integration would obtain); anything else is 401. Errors are RFC 7807 problem details
  ``{"type", "title", "detail"}`` as the spec's ``ErrorResponse`` requires. An organization that is
  not in the seed is a 404.
* Versions: the same ``orderNo`` may appear several times with different ``lastModified``. A list
  query answers with each order as it stood at ``asof = min(lastModifiedDateTo, clock)`` (strictly
  before ``lastModifiedDateTo``, which is exclusive), then applies the filters to that version;
  records "appear" as the replay clock advances. Money and every other value go out exactly as
  seeded (Decimal-exact JSON).
* Runtime additions: :meth:`SfccEmulator.add_records` or ``POST /_sandbox/sfcc/records``
  ``{"organization_id": ..., "records": [...]}``; persisted by ``export_state``/``import_state``.

SCAPI has no refund list for orders (commerce_apis.md §5, RULES.md §2): none is emulated.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
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

API_PREFIX = "/checkout/orders/v1"
DEFAULT_ACCESS_TOKEN = "sandbox-sfcc-token"
#: Used when the seed holds no organization, so ``env()`` can still point a client somewhere.
DEFAULT_ORGANIZATION_ID = "f_ecom_sbox_001"
MAX_LIMIT = 200
DEFAULT_LIMIT = 100
MAX_OFFSET_PLUS_LIMIT = 10_000
ERROR_TYPE_BASE = "https://api.commercecloud.salesforce.com/documentation/error/v1/errors/"

SORT_FIELDS = {"creation_date": "creationDate", "last_modified_date": "lastModified"}
SORT_ORDERS = ("asc", "desc")
#: query parameter -> order field, for the comma-separated status filters
STATUS_FILTERS = {
    "status": "status",
    "exportStatus": "exportStatus",
    "paymentStatus": "paymentStatus",
    "shippingStatus": "shippingStatus",
    "confirmationStatus": "confirmationStatus",
}

_ORG = r"(?P<org>[^/]+)"
_MIN = datetime.min.replace(tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------------------------------
# Helpers


def problem(status: int, slug: str, title: str, detail: str) -> Response:
    """An RFC 7807 problem-detail response in the SCAPI ``ErrorResponse`` shape."""
    return json_response({"type": ERROR_TYPE_BASE + slug, "title": title, "detail": detail}, status)


def _bad_request(detail: str) -> Abort:
    return Abort(problem(400, "bad-request", "Bad Request", detail))


def sfcc_timestamp(value: Any) -> datetime | None:
    """A SCAPI timestamp (``2020-11-04T14:13:31.061Z``) as aware UTC; None if absent/unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _date_param(request: Request, name: str) -> datetime | None:
    raw = request.arg(name)
    if raw is None or raw == "":
        return None
    parsed = sfcc_timestamp(raw)
    if parsed is None:
        raise _bad_request(
            f"The query parameter '{name}' with value '{raw}' is not a valid date-time "
            "(expected ISO-8601, e.g. 2015-05-19T15:30:18.000Z)."
        )
    return parsed


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise _bad_request(
            f"The query parameter '{name}' with value '{raw}' could not be converted to an integer."
        ) from exc


def _list_param(request: Request, name: str) -> set[str] | None:
    values = [v for raw in request.query.get(name, []) for v in raw.split(",") if v.strip()]
    return {v.strip() for v in values} or None


# --------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Version:
    modified: datetime
    seq: int
    record: dict[str, Any]


@dataclass(frozen=True)
class OrderQuery:
    """A parsed ``getOrders`` query."""

    site_id: str | None = None
    modified_from: datetime | None = None
    modified_to: datetime | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    statuses: tuple[tuple[str, frozenset[str]], ...] = ()
    sort_by: str = "creation_date"
    sort_order: str = "desc"
    limit: int = DEFAULT_LIMIT
    offset: int = 0


class SfccEmulator(Emulator):
    """SCAPI Orders admin API over seeded native orders of one or more organizations.

    ``seed_dir`` is the ``sfcc/`` directory of a seed (CONTRACT.md §2): one sub-directory per
    organization id, each with ``orders/*.json``. None or an empty directory means no records (then
    the organization :data:`DEFAULT_ORGANIZATION_ID` exists, empty). ``max_offset_plus_limit`` and
    ``max_limit`` are the API's caps (lower them in tests); ``envelope_totals`` adds
    ``limit``/``offset``/``total`` to list responses (the real schema has only ``data``);
    ``require_site_id`` makes ``siteId`` mandatory on reads, as the spec declares it.
    """

    name = "sfcc"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_limit: int = MAX_LIMIT,
        max_offset_plus_limit: int = MAX_OFFSET_PLUS_LIMIT,
        envelope_totals: bool = False,
        require_site_id: bool = False,
    ):
        if max_limit < 1 or max_offset_plus_limit < 1:
            raise ValueError("max_limit and max_offset_plus_limit must be >= 1")
        self.access_token = access_token
        self.max_limit = max_limit
        self.max_offset_plus_limit = max_offset_plus_limit
        self.envelope_totals = envelope_totals
        self.require_site_id = require_site_id
        self._data_lock = threading.RLock()
        # organization id -> orderNo -> versions (ascending by lastModified, then load order)
        self._orders: dict[str, dict[str, list[_Version]]] = {}
        self._runtime: dict[str, list[dict[str, Any]]] = {}
        self._seq = 0
        super().__init__(clock=clock, faults=faults, host=host, port=port)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- data

    @property
    def organization_ids(self) -> list[str]:
        """The organizations served, sorted (the default one when the seed held none)."""
        with self._data_lock:
            return sorted(self._orders) or [DEFAULT_ORGANIZATION_ID]

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/<organization_id>/orders/*.json``; a malformed file fails loudly."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"SFCC seed directory {seed_dir} does not exist")
        for org_dir in sorted(p for p in seed_dir.iterdir() if p.is_dir()):
            folder = org_dir / "orders"
            with self._data_lock:
                self._orders.setdefault(org_dir.name, {})
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    data = loads(path.read_bytes())
                except ValueError as exc:
                    raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                if not isinstance(data, list):
                    raise ValueError(f"{path}: expected a JSON array of SCAPI order objects")
                self._add(org_dir.name, data, runtime=False, source=str(path))

    def add_records(self, organization_id: str, records: Iterable[dict[str, Any]]) -> int:
        """Add orders (new ``orderNo`` or new versions) at runtime; kept in the exported state.
        Returns how many were added."""
        # Round-trip through JSON so callers' floats become Decimal and later mutation cannot leak in.
        normalized = loads(dumps(list(records)))
        return self._add(organization_id, normalized, runtime=True, source="add_records")

    def _add(self, org: str, records: list[Any], *, runtime: bool, source: str) -> int:
        if not isinstance(org, str) or not org or "/" in org:
            raise ValueError(f"{source}: bad organization id {org!r}")
        with self._data_lock:
            by_no = self._orders.setdefault(org, {})
            for index, record in enumerate(records):
                if not isinstance(record, dict) or record.get("orderNo") in (None, ""):
                    raise ValueError(f"{source}: orders[{index}] is not an order with 'orderNo'")
                modified = (
                    sfcc_timestamp(record.get("lastModified"))
                    or sfcc_timestamp(record.get("creationDate"))
                    or _MIN  # no timestamps at all: always visible
                )
                self._seq += 1
                versions = by_no.setdefault(str(record["orderNo"]), [])
                versions.append(_Version(modified, self._seq, record))
                versions.sort(key=lambda v: (v.modified, v.seq))
                if runtime:
                    self._runtime.setdefault(org, []).append(record)
        return len(records)

    def orders_as_of(self, org: str, asof: datetime, *, strict: bool = False) -> list[_Version]:
        """Each order's latest version with ``lastModified <= asof`` (``<`` when strict)."""
        with self._data_lock:
            out = []
            for versions in self._orders.get(org, {}).values():
                visible = [v for v in versions if (v.modified < asof if strict else v.modified <= asof)]
                if visible:
                    out.append(visible[-1])
        return out

    def query(self, org: str, q: OrderQuery) -> dict[str, Any]:
        """The ``getOrders`` envelope for ``q``, answered as of ``min(lastModifiedDateTo, clock)``."""
        asof, strict = self.clock.now(), False
        if q.modified_to is not None and q.modified_to <= asof:
            asof, strict = q.modified_to, True
        rows: list[tuple[datetime, _Version]] = []
        for version in self.orders_as_of(org, asof, strict=strict):
            record = version.record
            if q.site_id is not None and record.get("siteId") != q.site_id:
                continue
            if q.modified_from is not None and version.modified < q.modified_from:
                continue
            if q.modified_to is not None and version.modified >= q.modified_to:
                continue
            created = sfcc_timestamp(record.get("creationDate"))
            if q.created_from is not None and (created is None or created < q.created_from):
                continue
            if q.created_to is not None and (created is None or created >= q.created_to):
                continue
            if any(record.get(field) not in wanted for field, wanted in q.statuses):
                continue
            key = version.modified if q.sort_by == "last_modified_date" else (created or _MIN)
            rows.append((key, version))
        rows.sort(key=lambda kv: (kv[0], str(kv[1].record["orderNo"])), reverse=q.sort_order == "desc")
        page = [v.record for _, v in rows[q.offset : q.offset + q.limit]]
        if self.envelope_totals:
            return {"limit": q.limit, "offset": q.offset, "total": len(rows), "data": page}
        return {"data": page}

    def get_order(self, org: str, order_no: str) -> dict[str, Any] | None:
        """The order as it stands at the clock, or None."""
        now = self.clock.now()
        with self._data_lock:
            versions = self._orders.get(org, {}).get(order_no, [])
            visible = [v for v in versions if v.modified <= now]
        return visible[-1].record if visible else None

    # ----- request parsing

    def parse_query(self, request: Request) -> OrderQuery:
        """Validate the ``getOrders`` query string like the real API (400 on bad values)."""
        site_id = request.arg("siteId") or None
        if site_id is None and self.require_site_id:
            raise _bad_request("The query parameter 'siteId' is required.")
        sort_by = request.arg("sortBy") or "creation_date"
        if sort_by not in SORT_FIELDS:
            raise _bad_request(
                f"The query parameter 'sortBy' with value '{sort_by}' is not one of {sorted(SORT_FIELDS)}."
            )
        sort_order = (request.arg("sortOrder") or "desc").lower()
        if sort_order not in SORT_ORDERS:
            raise _bad_request(
                f"The query parameter 'sortOrder' with value '{sort_order}' is not one of ['asc', 'desc']."
            )
        limit = _int_param(request, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= self.max_limit:
            raise _bad_request(
                f"The query parameter 'limit' with value '{limit}' must be between 1 and {self.max_limit}."
            )
        offset = _int_param(request, "offset", 0)
        if offset < 0:
            raise _bad_request(f"The query parameter 'offset' with value '{offset}' must be >= 0.")
        if offset + limit > self.max_offset_plus_limit:
            raise _bad_request(
                f"The sum of the offset ({offset}) and limit ({limit}) parameters cannot be greater "
                f"than {self.max_offset_plus_limit}."
            )
        statuses = tuple(
            (field, frozenset(wanted))
            for param, field in STATUS_FILTERS.items()
            if (wanted := _list_param(request, param)) is not None
        )
        return OrderQuery(
            site_id=site_id,
            modified_from=_date_param(request, "lastModifiedDateFrom"),
            modified_to=_date_param(request, "lastModifiedDateTo"),
            created_from=_date_param(request, "creationDateFrom"),
            created_to=_date_param(request, "creationDateTo"),
            statuses=statuses,
            sort_by=sort_by,
            sort_order=sort_order,
            limit=limit,
            offset=offset,
        )

    # ----- auth

    def _require_auth(self, request: Request) -> None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.access_token):
            raise Abort(
                problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "Your access token is invalid or expired and can't be used to identify a user.",
                )
            )

    def _require_org(self, org: str) -> None:
        with self._data_lock:
            known = org in self._orders or (not self._orders and org == DEFAULT_ORGANIZATION_ID)
        if not known:
            raise Abort(problem(404, "not-found", "Not Found", f"No organization with ID '{org}' was found."))

    # ----- routes

    def register_routes(self, router: Router) -> None:
        base = API_PREFIX + r"/organizations/" + _ORG + r"/orders"
        router.add("GET", base, self._list_handler, "orders list")
        router.add("GET", base + r"/(?P<order_no>[^/]+)", self._get_handler, "order get")

    def register_control_routes(self, router: Router) -> None:
        router.add("POST", r"/_sandbox/sfcc/records", self._control_add_records, "sandbox add records")

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        slug = {
            400: "bad-request",
            401: "unauthorized",
            404: "not-found",
            405: "method-not-allowed",
            429: "too-many-requests",
            503: "service-unavailable",
        }.get(status, "internal-server-error" if status >= 500 else "error")
        title = slug.replace("-", " ").title()
        return json_response(
            {"type": ERROR_TYPE_BASE + slug, "title": title, "detail": message}, status, headers
        )

    def _list_handler(self, request: Request) -> Response:
        self._require_auth(request)
        org = request.path_params["org"]
        self._require_org(org)
        return json_response(self.query(org, self.parse_query(request)))

    def _get_handler(self, request: Request) -> Response:
        self._require_auth(request)
        org, order_no = request.path_params["org"], request.path_params["order_no"]
        self._require_org(org)
        site_id = request.arg("siteId") or None
        if site_id is None and self.require_site_id:
            raise _bad_request("The query parameter 'siteId' is required.")
        record = self.get_order(org, order_no)
        if record is None or (site_id is not None and record.get("siteId") != site_id):
            return problem(
                404, "order-not-found", "Order Not Found", f"No order with number '{order_no}' was found."
            )
        return json_response(record)

    def _control_add_records(self, request: Request) -> Response:
        """``{"organization_id": "...", "records": [...]}`` -> adds them (as :meth:`add_records`)."""
        body = request.json()
        org = (body.get("organization_id") or body.get("organizationId")) if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("records"), list) or not org:
            return json_response(
                {"message": 'body must be {"organization_id": "...", "records": [...]}'}, 400
            )
        try:
            added = self._add(str(org), body["records"], runtime=True, source="control")
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"added": added})

    # ----- state and settings

    def env(self) -> dict[str, str]:
        """The CONTRACT.md §4 settings pointing a client at this emulator (first organization)."""
        return {
            "SFCC_API_URL": self.base_url,
            "SFCC_ORGANIZATION_ID": self.organization_ids[0],
            "SFCC_ACCESS_TOKEN": self.access_token,
        }

    def sandbox_state(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._data_lock:
            organizations = {
                org: {
                    "orders": len(by_no),
                    "versions": sum(len(v) for v in by_no.values()),
                    "visible_now": sum(1 for v in by_no.values() if v[0].modified <= now),
                    "added_at_runtime": len(self._runtime.get(org, [])),
                }
                for org, by_no in sorted(self._orders.items())
            }
        return {
            "organizations": organizations,
            "max_limit": self.max_limit,
            "max_offset_plus_limit": self.max_offset_plus_limit,
        }

    def export_state(self) -> dict[str, Any]:
        """Records added at runtime, by organization (seeded records come from the seed)."""
        with self._data_lock:
            return {"records": {org: list(r) for org, r in self._runtime.items() if r}}

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` produced."""
        for org, records in (state.get("records") or {}).items():
            self._add(org, records, runtime=True, source="state")


__all__ = [
    "API_PREFIX",
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_ORGANIZATION_ID",
    "MAX_LIMIT",
    "MAX_OFFSET_PLUS_LIMIT",
    "OrderQuery",
    "SfccEmulator",
    "problem",
    "sfcc_timestamp",
]
