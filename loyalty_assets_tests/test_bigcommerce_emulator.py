"""Contract: the BigCommerce sandbox emulator behaves like the BigCommerce REST Management API
(commerce_apis.md §2, §8.2; CONTRACT.md §2, §4).

Over real HTTP on 127.0.0.1 it must serve the vendor's real payloads (orders, order products,
refunds) unchanged and Decimal-exact from the CONTRACT §2 seed layout, for several store hashes;
answer v2 order lists as bare arrays with **204 and an empty body** when nothing matches or past
the end; accept RFC-2822 and ISO-8601 date filters; sort (default id, ``date_modified:asc|desc``);
cap ``limit`` at 250; link ``products`` instead of inlining them; page v3 refunds with
``meta.pagination`` and v3 customers with the ``after`` cursor; answer as of ``min(upper bound,
clock)`` over record versions and send the clock in ``Date``; enforce ``X-Auth-Token`` (401) and
known store hashes (404); send the ``X-Rate-Limit-*`` headers and 429 once a store's window quota is
used; inject faults by script; and expose ``env()``, runtime records and persisted state.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.sandbox.bigcommerce import DEFAULT_ACCESS_TOKEN, BigCommerceEmulator, rfc2822
from loyalty_assets.sandbox.httpserver import EmulatorClock, FaultInjector

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "bigcommerce"
NOW = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
STORE = "abc123"
OTHER = "zz9plural"
AUTH = {"X-Auth-Token": DEFAULT_ACCESS_TOKEN}


def _real(name: str) -> Any:
    path = REAL_FIXTURES / name
    if not path.is_file():
        pytest.fail(
            f"real BigCommerce fixture {path} is missing: the shared/ folder must sit beside the repo"
        )
    return simplejson.loads(path.read_text(), use_decimal=True)


def _write(
    root: Path, store: str, stream: str, records: list[dict[str, Any]], name: str = "part-1.json"
) -> None:
    folder = root / "bigcommerce" / store / stream
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(simplejson.dumps(records, use_decimal=True))


def _order(order_id: int, modified: datetime, **extra: Any) -> dict[str, Any]:
    record = {
        "id": order_id,
        "customer_id": 0,
        "date_created": rfc2822(modified),
        "date_modified": rfc2822(modified),
        "status_id": 11,
        "total_inc_tax": "10.0000",
        "billing_address": {"email": f"guest{order_id}@example.com"},
    }
    record.update(extra)
    return record


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    """The real fixtures in the CONTRACT §2 layout: order 100 as published, order 149 (the real
    order reshaped to carry the real products inline), the real refund, one customer; and a
    second store with one order."""
    orders = _real("orders_v2_list.json")
    products = _real("order_products_v2_list.json")
    refund = _real("refund_v3_get.json")["data"]
    order_149 = copy.deepcopy(orders[0])
    order_149.update(id=149, date_modified="Thu, 06 Dec 2018 08:00:00 +0000", products=products)
    _write(tmp_path, STORE, "orders", orders + [order_149])
    _write(tmp_path, STORE, "refunds", [refund])
    _write(
        tmp_path,
        STORE,
        "customers",
        [
            {
                "id": 20,
                "email": "janedoe@example.com",
                "date_created": "2018-01-10T21:05:30Z",
                "date_modified": "2018-12-05T20:16:55Z",
                "first_name": "Jane",
                "last_name": "Doe",
            }
        ],
    )
    _write(tmp_path, OTHER, "orders", [_order(7, datetime(2024, 5, 1, 9, tzinfo=UTC))])
    return tmp_path / "bigcommerce"


@pytest.fixture
def bc(seed: Path):
    with BigCommerceEmulator(seed, clock=EmulatorClock(NOW)) as emulator:
        yield emulator


def _get(
    emulator: BigCommerceEmulator,
    path: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.get(
        emulator.base_url + path, params=params, headers=AUTH if headers is None else headers, timeout=5
    )


def _orders(emulator: BigCommerceEmulator, store: str = STORE, **params: Any) -> requests.Response:
    return _get(emulator, f"/stores/{store}/v2/orders", params)


def _json(response: requests.Response) -> Any:
    return simplejson.loads(response.text, use_decimal=True)


def test_serves_the_real_orders_unchanged_with_products_linked(bc: BigCommerceEmulator) -> None:
    real = _real("orders_v2_list.json")[0]
    response = _orders(bc)
    assert response.status_code == 200
    body = _json(response)
    assert isinstance(body, list) and [o["id"] for o in body] == [100, 149]
    served = body[0]
    for key, value in real.items():
        if key != "products":
            assert served[key] == value, key
    assert served["total_inc_tax"] == "361.9500"  # 4-decimal money strings stay strings
    assert served["date_modified"] == "Wed, 05 Dec 2018 20:16:55 +0000"
    assert served["products"] == {
        "url": f"{bc.base_url}/stores/{STORE}/v2/orders/100/products",
        "resource": "/orders/100/products",
    }
    assert body[1]["products"]["resource"] == "/orders/149/products"  # never inline
    single = _json(_get(bc, f"/stores/{STORE}/v2/orders/149"))
    assert single["id"] == 149 and isinstance(single["products"], dict)
    missing = _get(bc, f"/stores/{STORE}/v2/orders/999")
    assert missing.status_code == 404 and _json(missing)[0]["status"] == 404


def test_order_products_are_the_real_line_items_and_204_when_none(bc: BigCommerceEmulator) -> None:
    response = _get(bc, f"/stores/{STORE}/v2/orders/149/products")
    assert response.status_code == 200
    assert _json(response) == _real("order_products_v2_list.json")
    assert _json(response)[0]["applied_discounts"][0]["amount"] == "1.5900"
    paged = _get(bc, f"/stores/{STORE}/v2/orders/149/products", {"limit": 1, "page": 2})
    assert [p["id"] for p in _json(paged)] == [66]
    past = _get(bc, f"/stores/{STORE}/v2/orders/149/products", {"limit": 1, "page": 3})
    assert past.status_code == 204 and past.content == b""
    none = _get(bc, f"/stores/{STORE}/v2/orders/100/products")  # the real order links, no items
    assert none.status_code == 204 and none.content == b""


def test_204_with_empty_body_when_nothing_matches_or_past_the_end(bc: BigCommerceEmulator) -> None:
    nothing = _orders(bc, min_date_modified="2030-01-01T00:00:00+00:00")
    assert nothing.status_code == 204
    assert nothing.content == b""
    assert "Content-Type" not in nothing.headers
    past = _orders(bc, page=2, limit=2)
    assert past.status_code == 204 and past.content == b""
    last = _orders(bc, page=2, limit=1)
    assert last.status_code == 200 and [o["id"] for o in _json(last)] == [149]


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("Wed, 05 Dec 2018 20:16:55 +0000", "Wed, 05 Dec 2018 20:16:55 +0000"),
        ("2018-12-05T20:16:55+00:00", "2018-12-05T20:16:55.000+00:00"),
        ("2018-12-05T15:16:55-05:00", "Wed, 05 Dec 2018 15:16:55 -0500"),
        ("2018-12-05T20:16:55Z", "2018-12-05T20:16:55Z"),
    ],
)
def test_date_filters_accept_rfc2822_and_iso8601_inclusive(
    bc: BigCommerceEmulator, low: str, high: str
) -> None:
    # The bounds are inclusive at second resolution (both equal to order 100's date_modified). The
    # upper bound is also the as-of instant, exclusively: versions modified exactly at it are not
    # yet visible, so this query uses a bound one second later.
    response = _orders(bc, min_date_modified=low)
    assert [o["id"] for o in _json(response)] == [100, 149]
    upper = _orders(bc, max_date_modified="Wed, 05 Dec 2018 20:16:56 +0000", min_date_modified=low)
    assert [o["id"] for o in _json(upper)] == [100]
    created = _orders(bc, min_date_created="2018-01-10T21:05:30+00:00", max_date_created=high)
    assert [o["id"] for o in _json(created)] == [100, 149]
    bad = _orders(bc, min_date_modified="yesterday-ish")
    assert bad.status_code == 400 and _json(bad)[0]["status"] == 400


def test_sort_default_id_and_by_date_modified(tmp_path: Path) -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    orders = [
        _order(1, base.replace(hour=9)),
        _order(2, base.replace(hour=7)),
        _order(3, base.replace(hour=8)),
        _order(4, base.replace(hour=7)),
    ]
    _write(tmp_path, STORE, "orders", orders)
    with BigCommerceEmulator(tmp_path / "bigcommerce", clock=EmulatorClock(NOW)) as bc:
        assert [o["id"] for o in _json(_orders(bc))] == [1, 2, 3, 4]
        asc = _orders(bc, sort="date_modified:asc")
        assert [o["id"] for o in _json(asc)] == [2, 4, 3, 1]  # ties by id
        desc = _orders(bc, sort="date_modified:desc")
        assert [o["id"] for o in _json(desc)] == [1, 3, 2, 4]
        assert [o["id"] for o in _json(_orders(bc, sort="id:desc"))] == [4, 3, 2, 1]
        assert _orders(bc, sort="total:asc").status_code == 400


def test_limit_defaults_to_50_and_is_capped_at_250(bc: BigCommerceEmulator) -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    bc.add_records(STORE, "orders", [_order(1000 + i, base) for i in range(300)])
    assert len(_json(_orders(bc))) == 50
    assert len(_json(_orders(bc, limit=1000))) == 250
    second = _json(_orders(bc, limit=1000, page=2))
    assert len(second) == 302 - 250
    assert _orders(bc, limit=0).status_code == 400
    assert _orders(bc, limit="many").status_code == 400


def test_versions_are_served_as_of_the_upper_bound_or_the_clock(tmp_path: Path) -> None:
    t1 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    t2 = datetime(2024, 5, 1, 14, tzinfo=UTC)
    _write(
        tmp_path,
        STORE,
        "orders",
        [_order(5, t1, status_id=11), _order(5, t2, status_id=4), _order(6, t2, status_id=11)],
    )
    clock = EmulatorClock(datetime(2024, 5, 1, 12, tzinfo=UTC))
    with BigCommerceEmulator(tmp_path / "bigcommerce", clock=clock) as bc:
        response = _orders(bc)
        assert parsedate_to_datetime(response.headers["Date"]) == datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert [(o["id"], o["status_id"]) for o in _json(response)] == [(5, 11)]  # t2 not yet
        clock.advance(3 * 3600)
        now = _json(_orders(bc))
        assert [(o["id"], o["status_id"]) for o in now] == [(5, 4), (6, 11)]
        window = _orders(
            bc, min_date_modified="2024-05-01T00:00:00Z", max_date_modified="2024-05-01T14:00:00Z"
        )
        assert [(o["id"], o["status_id"]) for o in _json(window)] == [(5, 11)]  # as of 14:00, exclusive
        later = _orders(
            bc, min_date_modified="2024-05-01T13:00:00Z", max_date_modified="2024-05-02T00:00:00Z"
        )
        assert [(o["id"], o["status_id"]) for o in _json(later)] == [(5, 4), (6, 11)]
        assert parsedate_to_datetime(_orders(bc).headers["Date"]) == datetime(2024, 5, 1, 15, tzinfo=UTC)


def test_refunds_v3_envelope_with_created_filter_and_pagination(bc: BigCommerceEmulator) -> None:
    real = _real("refund_v3_get.json")["data"]
    path = f"/stores/{STORE}/v3/orders/payment_actions/refunds"
    body = _json(_get(bc, path))
    assert body["data"] == [real]
    assert body["data"][0]["total_amount"] == 50 and body["data"][0]["created"] == "2022-06-16T16:44:15+00:00"
    assert body["meta"]["pagination"]["total"] == 1
    more = [
        {
            "id": 20 + i,
            "order_id": 100 + i % 2,
            "created": f"2024-05-01T0{i}:00:00+00:00",
            "total_amount": Decimal("1.25"),
            "items": [],
        }
        for i in range(5)
    ]
    bc.add_records(STORE, "refunds", more)
    params = {
        "created:min": "2024-05-01T00:00:00+00:00",
        "created:max": "2024-05-02T00:00:00+00:00",
        "limit": 2,
    }
    first = _json(_get(bc, path, params))
    assert [r["id"] for r in first["data"]] == [20, 21]
    assert first["data"][0]["total_amount"] == Decimal("1.25")
    pagination = first["meta"]["pagination"]
    assert {k: pagination[k] for k in ("total", "count", "per_page", "current_page", "total_pages")} == {
        "total": 5,
        "count": 2,
        "per_page": 2,
        "current_page": 1,
        "total_pages": 3,
    }
    assert pagination["links"]["next"] == "?page=2&limit=2"
    third = _json(_get(bc, path, dict(params, page=3)))
    assert [r["id"] for r in third["data"]] == [24] and "next" not in third["meta"]["pagination"]["links"]
    past = _get(bc, path, dict(params, page=9))
    assert past.status_code == 200 and _json(past)["data"] == []
    by_order = _json(_get(bc, path, {"order_id:in": "101"}))
    assert [r["id"] for r in by_order["data"]] == [21, 23]
    assert _get(bc, path, {"created:min": "not-a-date"}).status_code == 422


def test_customers_cursor_paging_with_after(bc: BigCommerceEmulator) -> None:
    customers = [
        {
            "id": 40 + i,
            "email": f"c{i}@example.com",
            "date_created": "2024-05-01T00:00:00Z",
            "date_modified": f"2024-05-01T0{9 - i}:00:00Z",
        }
        for i in range(5)
    ]
    bc.add_records(STORE, "customers", customers)
    path = f"/stores/{STORE}/v3/customers"
    base = {
        "date_modified:min": "2024-05-01T00:00:00Z",
        "date_modified:max": "2024-05-02T00:00:00Z",
        "sort": "date_modified:asc",
        "limit": 2,
    }
    seen: list[int] = []
    body = _json(_get(bc, path, base))
    while True:
        seen += [c["id"] for c in body["data"]]
        cursor = body["meta"]["cursor_pagination"]
        if "next" not in cursor["links"]:
            break
        assert cursor["end_cursor"] in cursor["links"]["next"]
        body = _json(_get(bc, path, dict(base, after=cursor["end_cursor"], page=7)))  # page is ignored
        links = body["meta"]["pagination"]["links"]
        assert links["current"].startswith("?after=")
        if "next" in links:  # in cursor mode, pagination.links.next carries the cursor too
            assert links["next"] == body["meta"]["cursor_pagination"]["links"]["next"]
    assert seen == [44, 43, 42, 41, 40]
    previous = body["meta"]["cursor_pagination"]["links"]["previous"]
    before = previous.split("before=")[1].split("&")[0]
    back = _json(_get(bc, path, dict(base, before=before)))
    assert [c["id"] for c in back["data"]] == [42, 41]
    by_email = _json(_get(bc, path, {"email:in": "C3@example.com,janedoe@example.com"}))
    assert [c["id"] for c in by_email["data"]] == [20, 43]
    assert _get(bc, path, dict(base, after="garbage!")).status_code == 422


def test_auth_token_and_unknown_store(bc: BigCommerceEmulator) -> None:
    wrong = _get(bc, f"/stores/{STORE}/v2/orders", headers={"X-Auth-Token": "nope"})
    assert wrong.status_code == 401
    body = _json(wrong)
    assert body["status"] == 401 and body["title"]
    assert _get(bc, f"/stores/{STORE}/v3/customers", headers={}).status_code == 401
    unknown = _get(bc, "/stores/nosuchstore/v2/orders")
    assert unknown.status_code == 404


def test_several_stores_and_env(bc: BigCommerceEmulator) -> None:
    assert [o["id"] for o in _json(_orders(bc, store=OTHER))] == [7]
    env = bc.env()
    assert env == {
        "BIGCOMMERCE_API_URL": bc.base_url,
        "BIGCOMMERCE_STORE_HASHES": f"{STORE},{OTHER}",
        "BIGCOMMERCE_ACCESS_TOKEN": DEFAULT_ACCESS_TOKEN,
    }


def test_rate_limit_headers_and_429_per_store_window(seed: Path) -> None:
    clock = EmulatorClock(NOW)
    with BigCommerceEmulator(seed, clock=clock, rate_limit=(3, 30.0)) as bc:
        lefts = []
        for _ in range(3):
            response = _orders(bc)
            assert response.status_code == 200
            assert response.headers["X-Rate-Limit-Requests-Quota"] == "3"
            assert response.headers["X-Rate-Limit-Time-Window-Ms"] == "30000"
            assert 0 < int(response.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 30000
            lefts.append(int(response.headers["X-Rate-Limit-Requests-Left"]))
        assert lefts == [2, 1, 0]
        limited = _orders(bc)
        assert limited.status_code == 429
        assert limited.headers["X-Rate-Limit-Requests-Left"] == "0"
        assert _json(limited)["status"] == 429
        assert _orders(bc, store=OTHER).status_code == 200  # quotas are per store
        empty = _orders(bc, store=OTHER, page=5)
        assert empty.status_code == 204 and empty.headers["X-Rate-Limit-Requests-Left"] == "1"
        clock.advance(30)  # the emulator clock rolls the window
        again = _orders(bc)
        assert again.status_code == 200 and again.headers["X-Rate-Limit-Requests-Left"] == "2"
        state = requests.get(bc.base_url + "/_sandbox/state", timeout=5).json()  # never limited
        assert state["rate_limited_responses"] == 1


def test_faults_by_script_spare_the_control_surface(bc: BigCommerceEmulator) -> None:
    script = {"script": [{"status": 503, "path": "/v2/orders"}, {"status": 429, "retry_after": 2}]}
    assert requests.post(bc.base_url + "/_sandbox/faults", json=script, timeout=5).status_code == 200
    first = _orders(bc)
    assert first.status_code == 503 and _json(first)["status"] == 503
    second = _get(bc, f"/stores/{STORE}/v3/customers")
    assert second.status_code == 429 and second.headers["Retry-After"] == "2"
    assert _orders(bc).status_code == 200


def test_runtime_records_control_endpoint_and_state_round_trip(bc: BigCommerceEmulator) -> None:
    order = _order(500, datetime(2024, 5, 1, 8, tzinfo=UTC), products=[{"id": 1, "price_inc_tax": "2.5000"}])
    response = requests.post(
        bc.base_url + "/_sandbox/bigcommerce/records",
        json={"store_hash": "newstore", "stream": "orders", "records": [order]},
        timeout=5,
    )
    assert response.json() == {"added": 1}
    assert [o["id"] for o in _json(_orders(bc, store="newstore"))] == [500]
    bad = requests.post(
        bc.base_url + "/_sandbox/bigcommerce/records",
        json={"store_hash": STORE, "stream": "nope", "records": []},
        timeout=5,
    )
    assert bad.status_code == 400
    state = simplejson.loads(simplejson.dumps(bc.export_state(), use_decimal=True), use_decimal=True)
    with BigCommerceEmulator(None, clock=EmulatorClock(NOW)) as restored:
        restored.import_state(state)
        products = _json(_get(restored, "/stores/newstore/v2/orders/500/products"))
        assert products == [{"id": 1, "price_inc_tax": "2.5000"}]
        assert "newstore" in restored.env()["BIGCOMMERCE_STORE_HASHES"]


def test_faults_constructor_argument_is_used(seed: Path) -> None:
    faults = FaultInjector()
    faults.set_script([{"status": 500}])
    with BigCommerceEmulator(seed, clock=EmulatorClock(NOW), faults=faults) as bc:
        assert _orders(bc).status_code == 500
        assert _orders(bc).status_code == 200
