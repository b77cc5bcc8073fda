"""Contract: the Magento sandbox emulator behaves like Magento 2 REST (commerce_apis.md §1, §8.2;
DESIGN.md §5; CONTRACT.md §2, §4).

Over real HTTP on 127.0.0.1 it must serve the vendor's real payloads unchanged (Decimal-exact
numbers), parse searchCriteria in both spellings with OR-within / AND-across filter groups and every
condition type, sort (default DESC), page with ``total_count`` and repeat the last page past the
end, answer as of ``min(updated_at upper bound, clock)`` over record versions, send the replay clock
in ``Date``, enforce admin-token auth with 4-hour expiry, inject faults by script and by rate
without ever faulting the ``/_sandbox/`` control surface, and let ``Sandbox`` hand out the contract
environment variables and persist runtime state.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.sandbox import Sandbox
from loyalty_assets.sandbox.httpserver import EmulatorClock, FaultInjector
from loyalty_assets.sandbox.magento import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SIGN_IN_INCORRECT,
    MagentoEmulator,
)

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "magento"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
STATIC_TOKEN = "static-integration-token"


def _real(name: str) -> dict[str, Any]:
    path = REAL_FIXTURES / name
    if not path.is_file():
        pytest.fail(f"real Magento fixture {path} is missing: the shared/ folder must sit beside the repo")
    return simplejson.loads(path.read_text(), use_decimal=True)


def _write_seed(root: Path, entity: str, records: list[dict[str, Any]], name: str = "part-1.json") -> None:
    folder = root / "magento" / entity
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(simplejson.dumps(records, use_decimal=True))


def _order(entity_id: int, updated_at: str, **extra: Any) -> dict[str, Any]:
    record = {
        "entity_id": entity_id,
        "increment_id": f"{entity_id:09d}",
        "created_at": extra.pop("created_at", "2024-05-01 08:00:00"),
        "updated_at": updated_at,
        "state": "processing",
        "status": "processing",
        "customer_email": f"shopper{entity_id}@example.com",
        "customer_id": entity_id * 10,
        "grand_total": Decimal("10.50") + entity_id,
        "store_id": 1,
    }
    record.update(extra)
    return record


def _search_params(
    groups: list[list[tuple[str, str, str]]] = (),
    sorts: list[tuple[str, str | None]] = (),
    page_size: int | None = None,
    page: int | None = None,
    camel: bool = False,
) -> dict[str, str]:
    fg, ct, so = (
        ("filterGroups", "conditionType", "sortOrders")
        if camel
        else ("filter_groups", "condition_type", "sort_orders")
    )
    params: dict[str, str] = {}
    for g, group in enumerate(groups):
        for f, (field, value, condition) in enumerate(group):
            base = f"searchCriteria[{fg}][{g}][filters][{f}]"
            params[f"{base}[field]"] = field
            if value is not None:
                params[f"{base}[value]"] = value
            params[f"{base}[{ct}]"] = condition
    for s, (field, direction) in enumerate(sorts):
        params[f"searchCriteria[{so}][{s}][field]"] = field
        if direction is not None:
            params[f"searchCriteria[{so}][{s}][direction]"] = direction
    if page_size is not None:
        params["searchCriteria[pageSize]"] = str(page_size)
    if page is not None:
        params["searchCriteria[currentPage]"] = str(page)
    return params


@pytest.fixture
def magento():
    emulator = MagentoEmulator(None, access_token=STATIC_TOKEN, clock=EmulatorClock(NOW))
    guest = _order(5, "2024-05-01 11:30:00", customer_is_guest=1)
    del guest["customer_id"]  # guest orders carry no customer_id key at all
    emulator.add_records(
        "orders",
        [
            _order(1, "2024-05-01 09:00:00", customer_email="Ann@Example.com"),
            _order(2, "2024-05-01 10:00:00", status="complete", state="complete"),
            _order(3, "2024-05-01 10:00:00", grand_total=Decimal("99.99")),
            _order(4, "2024-05-01 11:00:00", created_at="2024-04-30 23:59:59"),
            guest,
        ],
    )
    with emulator:
        yield emulator


def _get(
    emulator: MagentoEmulator,
    path: str,
    params: dict[str, str] | None = None,
    token: str | None = STATIC_TOKEN,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(emulator.base_url + path, params=params, headers=headers, timeout=5)


def _ids(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item.get("entity_id", item.get("id")) for item in response.json()["items"]]


# --------------------------------------------------------------------------------------------------
# Real payloads


def test_real_fixtures_are_served_unchanged(tmp_path: Path) -> None:
    order = _real("order_get_by_id.json")
    memo = _real("invoice_with_discount.json")  # an invoice has the credit-memo totals shape
    memo["entity_id"], memo["order_id"] = 7, order["entity_id"]
    customer = _real("customer.json")
    _write_seed(tmp_path, "orders", [order])
    _write_seed(tmp_path, "creditmemos", [memo])
    _write_seed(tmp_path, "customers", [customer])

    with MagentoEmulator(tmp_path / "magento", access_token=STATIC_TOKEN) as emulator:
        for path, expected in (
            ("/rest/default/V1/orders", order),
            ("/rest/default/V1/creditmemos", memo),
            ("/rest/default/V1/customers/search", customer),
        ):
            response = _get(emulator, path, _search_params(page_size=10, page=1))
            assert response.status_code == 200
            body = simplejson.loads(response.text, use_decimal=True)
            assert body["total_count"] == 1
            assert body["items"] == [expected]
        single = _get(emulator, "/rest/V1/orders/3")
        assert simplejson.loads(single.text, use_decimal=True) == order

        memo_text = _get(emulator, "/rest/V1/creditmemos").text
        # Numbers go out exactly as the vendor wrote them (no float round trip, no "1917.60").
        assert '"discount_amount": -404.4' in memo_text
        assert '"grand_total": 1917.6' in memo_text
        items = simplejson.loads(memo_text, use_decimal=True)["items"][0]["items"]
        assert {i["discount_amount"] for i in items} >= {Decimal("144"), Decimal("4.4")}


def test_seed_file_that_is_not_an_array_fails_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "magento" / "orders"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text('{"entity_id": 1}')
    with pytest.raises(ValueError, match="bad.json"):
        MagentoEmulator(tmp_path / "magento")


# --------------------------------------------------------------------------------------------------
# searchCriteria


@pytest.mark.parametrize(
    ("field", "value", "condition", "expected"),
    [
        ("updated_at", "2024-05-01 10:00:00", "gt", [4, 5]),
        ("updated_at", "2024-05-01 10:00:00", "gteq", [2, 3, 4, 5]),
        ("updated_at", "2024-05-01 10:00:00", "lt", [1]),
        ("updated_at", "2024-05-01 10:00:00", "lteq", [1, 2, 3]),
        ("updated_at", "2024-05-01 11:00:00", "from", [4, 5]),
        ("updated_at", "2024-05-01 09:00:00", "to", [1]),
        ("updated_at", "2024-05-01 10:00:00", "eq", [2, 3]),
        ("created_at", "2024-05-01", "lt", [4]),  # a date-only value compares as midnight
        ("entity_id", "3", "eq", [3]),
        ("entity_id", "3", "neq", [1, 2, 4, 5]),
        ("entity_id", "2,4", "in", [2, 4]),
        ("entity_id", "2,4", "nin", [1, 3, 5]),
        ("grand_total", "12.5", "gt", [3, 4, 5]),  # numerically, not as text ("99.99" > "12.5")
        ("grand_total", "99.990", "eq", [3]),
        ("customer_email", "ann@example.com", "eq", [1]),  # MySQL's case-insensitive collation
        ("customer_email", "shopper%", "like", [2, 3, 4, 5]),
        ("customer_id", None, "null", [5]),  # guests carry no customer_id key at all
        ("customer_id", None, "notnull", [1, 2, 3, 4]),
        ("status", "complete", "neq", [1, 3, 4, 5]),
    ],
)
def test_each_condition_type(
    magento: MagentoEmulator, field: str, value: str | None, condition: str, expected: list[int]
) -> None:
    response = _get(
        magento, "/rest/V1/orders", _search_params([[(field, value, condition)]], [("entity_id", "ASC")])
    )
    assert _ids(response) == expected
    assert response.json()["total_count"] == len(expected)


def test_or_within_a_group_and_across_groups(magento: MagentoEmulator) -> None:
    either = [("entity_id", "1", "eq"), ("status", "complete", "eq")]
    assert _ids(_get(magento, "/rest/V1/orders", _search_params([either], [("entity_id", "ASC")]))) == [1, 2]
    both = [either, [("updated_at", "2024-05-01 09:30:00", "gteq")]]
    assert _ids(_get(magento, "/rest/V1/orders", _search_params(both, [("entity_id", "ASC")]))) == [2]


def test_camel_and_snake_case_spellings_are_equivalent(magento: MagentoEmulator) -> None:
    groups = [[("updated_at", "2024-05-01 10:00:00", "gteq")], [("updated_at", "2024-05-01 11:30:00", "lt")]]
    sorts = [("updated_at", "ASC"), ("entity_id", "ASC")]
    snake = _get(magento, "/rest/V1/orders", _search_params(groups, sorts, 2, 1))
    camel = _get(magento, "/rest/V1/orders", _search_params(groups, sorts, 2, 1, camel=True))
    assert _ids(snake) == _ids(camel) == [2, 3]
    assert (
        snake.json()["search_criteria"]
        == camel.json()["search_criteria"]
        == {
            "filter_groups": [
                {
                    "filters": [
                        {"field": "updated_at", "value": "2024-05-01 10:00:00", "condition_type": "gteq"}
                    ]
                },
                {
                    "filters": [
                        {"field": "updated_at", "value": "2024-05-01 11:30:00", "condition_type": "lt"}
                    ]
                },
            ],
            "sort_orders": [
                {"field": "updated_at", "direction": "ASC"},
                {"field": "entity_id", "direction": "ASC"},
            ],
            "page_size": 2,
            "current_page": 1,
        }
    )


def test_sorting_multiple_keys_and_default_desc(magento: MagentoEmulator) -> None:
    asc = _get(
        magento, "/rest/V1/orders", _search_params(sorts=[("updated_at", "ASC"), ("entity_id", "DESC")])
    )
    assert _ids(asc) == [1, 3, 2, 4, 5]
    no_direction = _get(magento, "/rest/V1/orders", _search_params(sorts=[("grand_total", None)]))
    assert _ids(no_direction) == [3, 5, 4, 2, 1]
    unsorted = _get(magento, "/rest/V1/orders")
    assert _ids(unsorted) == [1, 2, 3, 4, 5]
    bad = _get(magento, "/rest/V1/orders", _search_params(sorts=[("entity_id", "UP")]))
    assert bad.status_code == 400


def test_paging_total_count_and_last_page_repeat(magento: MagentoEmulator) -> None:
    sorts = [("entity_id", "ASC")]
    pages = [
        _get(magento, "/rest/V1/orders", _search_params(sorts=sorts, page_size=2, page=p)) for p in (1, 2, 3)
    ]
    assert [_ids(p) for p in pages] == [[1, 2], [3, 4], [5]]
    assert {p.json()["total_count"] for p in pages} == {5}
    # The real quirk (magento/magento2#3787): past the end, the last page comes back again.
    beyond = _get(magento, "/rest/V1/orders", _search_params(sorts=sorts, page_size=2, page=7))
    assert _ids(beyond) == [5]
    assert beyond.json()["search_criteria"]["current_page"] == 7
    assert beyond.json()["total_count"] == 5
    # No pageSize: every match in one response.
    assert _ids(_get(magento, "/rest/V1/orders", _search_params(sorts=sorts))) == [1, 2, 3, 4, 5]
    empty = _get(
        magento, "/rest/V1/orders", _search_params([[("entity_id", "99", "eq")]], page_size=2, page=3)
    )
    assert empty.json()["items"] == [] and empty.json()["total_count"] == 0


def test_store_codes_all_answer_with_every_store(magento: MagentoEmulator) -> None:
    paths = ["/rest/V1/orders", "/rest/default/V1/orders", "/rest/all/V1/orders", "/index.php/rest/V1/orders"]
    assert {tuple(_ids(_get(magento, p))) for p in paths} == {(1, 2, 3, 4, 5)}


def test_unknown_route_and_unknown_entity(magento: MagentoEmulator) -> None:
    missing = _get(magento, "/rest/V1/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Request does not match any route."}
    assert _get(magento, "/rest/V1/orders/404").status_code == 404
    assert _get(magento, "/rest/V1/orders", {"searchCriteria[pageSize]": "ten"}).status_code == 400


# --------------------------------------------------------------------------------------------------
# Versions, as-of and the clock


@pytest.fixture
def versioned(tmp_path: Path):
    _write_seed(
        tmp_path,
        "orders",
        [
            _order(1, "2024-05-01 10:00:00", status="pending", state="new"),
            _order(2, "2024-05-01 10:30:00"),
        ],
        "a.json",
    )
    _write_seed(
        tmp_path,
        "orders",
        [
            _order(1, "2024-05-01 11:00:00", status="processing"),
            _order(1, "2024-05-01 12:00:00", status="complete", state="complete"),
            _order(3, "2024-05-01 13:00:00"),  # in the future of the clock
        ],
        "b.json",
    )
    with MagentoEmulator(
        tmp_path / "magento",
        access_token=STATIC_TOKEN,
        clock=EmulatorClock(datetime(2024, 5, 1, 11, 30, tzinfo=UTC)),
    ) as emulator:
        yield emulator


def _window(
    emulator: MagentoEmulator, start: str, end: str, end_condition: str = "lt"
) -> list[tuple[int, str]]:
    response = _get(
        emulator,
        "/rest/V1/orders",
        _search_params(
            [[("updated_at", start, "gteq")], [("updated_at", end, end_condition)]],
            [("updated_at", "ASC"), ("entity_id", "ASC")],
        ),
    )
    assert response.status_code == 200, response.text
    return [(i["entity_id"], i["status"]) for i in response.json()["items"]]


def test_versions_are_answered_as_of_the_window_end(versioned: MagentoEmulator) -> None:
    # Each id's latest version at the upper bound, then the filters apply to that version.
    assert _window(versioned, "2024-05-01 09:00:00", "2024-05-01 10:15:00") == [(1, "pending")]
    assert _window(versioned, "2024-05-01 09:00:00", "2024-05-01 11:00:00") == [
        (1, "pending"),
        (2, "processing"),
    ]
    # lt is strict, lteq is not.
    assert _window(versioned, "2024-05-01 10:45:00", "2024-05-01 11:00:00") == []
    assert _window(versioned, "2024-05-01 10:45:00", "2024-05-01 11:00:00", "lteq") == [(1, "processing")]
    # A window asked before its end is answered as of the clock (11:30): 12:00 and 13:00 are unseen.
    assert _window(versioned, "2024-05-01 09:00:00", "2024-05-02 00:00:00") == [
        (2, "processing"),
        (1, "processing"),
    ]
    # Without an upper bound, the clock alone decides.
    assert _ids(_get(versioned, "/rest/V1/orders", _search_params(sorts=[("entity_id", "ASC")]))) == [1, 2]


def test_advancing_the_clock_reveals_new_versions(versioned: MagentoEmulator) -> None:
    reply = requests.post(versioned.base_url + "/_sandbox/clock", json={"advance_seconds": 5400}, timeout=5)
    assert reply.json()["now"] == "2024-05-01T13:00:00+00:00"
    assert _window(versioned, "2024-05-01 09:00:00", "2024-05-02 00:00:00") == [
        (2, "processing"),
        (1, "complete"),
        (3, "processing"),
    ]
    assert _get(versioned, "/rest/V1/orders/1").json()["status"] == "complete"
    # A late query for an old window still sees that window as it stood.
    assert _window(versioned, "2024-05-01 09:00:00", "2024-05-01 10:15:00") == [(1, "pending")]


def test_date_header_carries_the_emulator_clock(versioned: MagentoEmulator) -> None:
    response = _get(versioned, "/rest/V1/orders")
    assert response.headers["Date"] == "Wed, 01 May 2024 11:30:00 GMT"  # RFC 7231 IMF-fixdate
    requests.post(versioned.base_url + "/_sandbox/clock", json={"now": "2030-01-02T03:04:05Z"}, timeout=5)
    assert parsedate_to_datetime(_get(versioned, "/rest/V1/nothing").headers["Date"]) == datetime(
        2030, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    clock = requests.get(versioned.base_url + "/_sandbox/clock", timeout=5).json()
    assert clock["mode"] == "fixed" and clock["http_date"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    requests.post(versioned.base_url + "/_sandbox/clock", json={"real": True}, timeout=5)
    real = parsedate_to_datetime(_get(versioned, "/rest/V1/orders").headers["Date"])
    assert abs(real - datetime.now(UTC)) < timedelta(seconds=5)
    assert (
        requests.post(versioned.base_url + "/_sandbox/clock", json={"nonsense": 1}, timeout=5).status_code
        == 400
    )


def test_ticking_offset_clock() -> None:
    clock = EmulatorClock(datetime(2020, 1, 1, tzinfo=UTC), frozen=False)
    first = clock.now()
    time.sleep(0.01)
    assert clock.mode == "offset" and clock.now() > first
    assert clock.advance(60) - first >= timedelta(seconds=60)


# --------------------------------------------------------------------------------------------------
# Auth


def _token(emulator: MagentoEmulator, username: str = DEFAULT_USERNAME, password: str = DEFAULT_PASSWORD):
    return requests.post(
        emulator.base_url + "/rest/V1/integration/admin/token",
        json={"username": username, "password": password},
        timeout=5,
    )


def test_admin_token_login_and_failures(magento: MagentoEmulator) -> None:
    wrong = _token(magento, password="nope")
    assert wrong.status_code == 401 and wrong.json() == {"message": SIGN_IN_INCORRECT}
    missing = requests.post(magento.base_url + "/rest/V1/integration/admin/token", json={}, timeout=5)
    assert missing.status_code == 400
    ok = _token(magento)
    assert ok.status_code == 200
    token = ok.json()
    assert isinstance(token, str) and len(token) == 32
    assert _get(magento, "/rest/default/V1/orders", token=token).status_code == 200
    for bad in (None, "not-a-token"):
        denied = _get(magento, "/rest/V1/orders", token=bad)
        assert denied.status_code == 401
        assert denied.json() == {
            "message": "The consumer isn't authorized to access %resources.",
            "parameters": {"resources": "Magento_Sales::actions_view"},
        }
    basic = requests.get(
        magento.base_url + "/rest/V1/orders", headers={"Authorization": f"Basic {token}"}, timeout=5
    )
    assert basic.status_code == 401


def test_admin_token_expires_after_four_hours_of_emulator_clock(magento: MagentoEmulator) -> None:
    token = _token(magento).json()
    magento.clock.advance(4 * 3600 - 1)
    assert _get(magento, "/rest/V1/customers/search", token=token).status_code == 200
    magento.clock.advance(2)
    expired = _get(magento, "/rest/V1/customers/search", token=token)
    assert expired.status_code == 401
    assert expired.json()["parameters"] == {"resources": "Magento_Customer::customer"}
    # The static (integration) token never expires.
    assert _get(magento, "/rest/V1/customers/search", token=STATIC_TOKEN).status_code == 200


# --------------------------------------------------------------------------------------------------
# Faults and the control surface


def _post_faults(emulator: MagentoEmulator, body: dict[str, Any]) -> requests.Response:
    return requests.post(emulator.base_url + "/_sandbox/faults", json=body, timeout=5)


def test_scripted_faults_are_consumed_in_order(magento: MagentoEmulator) -> None:
    assert (
        _post_faults(
            magento,
            {
                "script": [
                    {"status": 429, "retry_after": 1},
                    {"status": 503},
                    {"delay": 0.2},
                ]
            },
        ).status_code
        == 200
    )
    # Control endpoints are never faulted and do not consume the script.
    state = requests.get(magento.base_url + "/_sandbox/state", timeout=5).json()
    assert len(state["faults"]["script"]) == 3

    first = _get(magento, "/rest/V1/orders")
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert first.headers["Date"] == "Wed, 01 May 2024 12:00:00 GMT"
    assert "message" in first.json()
    assert _get(magento, "/rest/V1/orders").status_code == 503
    started = time.monotonic()
    slow = _get(magento, "/rest/V1/orders")
    assert slow.status_code == 200 and time.monotonic() - started >= 0.2
    assert _get(magento, "/rest/V1/orders").status_code == 200

    state = requests.get(magento.base_url + "/_sandbox/state", timeout=5).json()
    assert state["faults"]["script"] == [] and state["faults"]["injected"] == {"script": 3}
    # The log counts API requests only, never the control surface.
    assert state["requests"]["by_status"] == {"200": 2, "429": 1, "503": 1}


def test_scripted_fault_with_path_waits_for_a_matching_request(magento: MagentoEmulator) -> None:
    _post_faults(magento, {"script": [{"status": 500, "path": "creditmemos"}]})
    assert _get(magento, "/rest/V1/orders").status_code == 200
    assert _get(magento, "/rest/V1/creditmemos").status_code == 500
    assert _get(magento, "/rest/V1/creditmemos").status_code == 200


def test_dropped_connection_fault(magento: MagentoEmulator) -> None:
    _post_faults(magento, {"script": [{"drop": True}]})
    with pytest.raises(requests.ConnectionError):
        _get(magento, "/rest/V1/orders")
    assert _get(magento, "/rest/V1/orders").status_code == 200


def test_bad_fault_specs_are_rejected(magento: MagentoEmulator) -> None:
    assert _post_faults(magento, {"script": [{"status": 200}]}).status_code == 400
    assert _post_faults(magento, {"script": [{"stauts": 503}]}).status_code == 400
    assert _post_faults(magento, {"rate": 2}).status_code == 400


def test_rate_faults_are_seeded_and_spare_the_control_surface(magento: MagentoEmulator) -> None:
    _post_faults(magento, {"rate": 1.0, "kinds": {"503": 1}})
    assert {_get(magento, "/rest/V1/orders").status_code for _ in range(5)} == {503}
    assert requests.get(magento.base_url + "/_sandbox/state", timeout=5).status_code == 200
    _post_faults(magento, {"rate": 1.0, "kinds": {"429": 1}, "retry_after": 2})
    limited = _get(magento, "/rest/V1/orders")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    _post_faults(magento, {"clear": True})
    assert _get(magento, "/rest/V1/orders").status_code == 200

    def sequence(seed: int) -> list[str]:
        injector = FaultInjector(0.5, seed=seed, slow_seconds=0.01)
        out = []
        for _ in range(40):
            fault = injector.pick("GET", "/rest/V1/orders")
            out.append("ok" if fault is None else str(fault.status or "slow"))
        return out

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    kinds = set(sequence(7))
    assert {"ok", "429", "500", "503", "slow"} <= kinds


def test_state_counts_and_runtime_records(magento: MagentoEmulator) -> None:
    _token(magento)
    added = requests.post(
        magento.base_url + "/_sandbox/magento/records",
        json={
            "entity": "customers",
            "records": [{"id": 9, "email": "new@example.com", "updated_at": "2024-05-01 11:59:59"}],
        },
        timeout=5,
    )
    assert added.json() == {"added": 1}
    state = requests.get(magento.base_url + "/_sandbox/state", timeout=5).json()
    assert state["emulator"] == "magento"
    assert state["tokens_issued"] == 1 and state["tokens_active"] == 1
    assert state["records"]["orders"]["ids"] == 5
    assert state["records"]["customers"] == {"ids": 1, "versions": 1, "visible_now": 1, "added_at_runtime": 1}
    assert state["requests"]["by_route"]["admin token"] == 1
    assert _ids(_get(magento, "/rest/V1/customers/search")) == [9]
    bad = requests.post(
        magento.base_url + "/_sandbox/magento/records", json={"entity": "invoices", "records": []}, timeout=5
    )
    assert bad.status_code == 400


# --------------------------------------------------------------------------------------------------
# Sandbox


def test_sandbox_env_and_env_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    _write_seed(seed, "orders", [_order(1, "2024-05-01 09:00:00")])
    (seed / "fx_rates.csv").write_text("date,currency,rate_to_program\n2024-05-01,EUR,1.08\n")
    with Sandbox(seed, now=NOW) as sandbox:
        env = sandbox.env()
        # the seed has only Magento data: no other source is offered; targets always run
        assert {k for k in env if not k.startswith(("SMILE_", "LOYALTYLION_", "SALESFORCE_"))} == {
            "MAGENTO_BASE_URL",
            "MAGENTO_ADMIN_USERNAME",
            "MAGENTO_ADMIN_PASSWORD",
            "MAGENTO_TENANT",
            "LOYALTY_FX_FILE",
        }
        assert (
            env["MAGENTO_BASE_URL"].startswith("http://127.0.0.1:")
            and env["MAGENTO_BASE_URL"].count("/") == 2
        )
        assert env["MAGENTO_TENANT"] == "default"
        assert env["LOYALTY_FX_FILE"] == str((seed / "fx_rates.csv").resolve())
        token = requests.post(
            env["MAGENTO_BASE_URL"] + "/rest/V1/integration/admin/token",
            json={"username": env["MAGENTO_ADMIN_USERNAME"], "password": env["MAGENTO_ADMIN_PASSWORD"]},
            timeout=5,
        ).json()
        assert _ids(_get(sandbox.magento, "/rest/V1/orders", token=token)) == [1]
        env_file = sandbox.write_env_file(tmp_path / "out" / "sandbox.env")
        lines = env_file.read_text().splitlines()
        assert sorted(lines) == sorted(f"{k}={v}" for k, v in env.items())
        base_url = env["MAGENTO_BASE_URL"]
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/_sandbox/state", timeout=2)


def test_sandbox_without_magento_seed_and_with_no_seed(tmp_path: Path) -> None:
    with Sandbox(tmp_path) as sandbox:
        # no source data: no source emulator; the push targets still run
        assert sandbox.magento is None
        assert not [k for k in sandbox.env() if k.startswith(("MAGENTO_", "BIGCOMMERCE_", "COMMERCETOOLS_", "SFCC_"))]
    with Sandbox(None) as sandbox:
        assert sandbox.magento is not None
        assert set(sandbox.env()) == {
            "MAGENTO_BASE_URL",
            "MAGENTO_ADMIN_USERNAME",
            "MAGENTO_ADMIN_PASSWORD",
            "MAGENTO_TENANT",
        }
    with pytest.raises(FileNotFoundError):
        Sandbox(tmp_path / "missing")


def test_sandbox_state_persists_tokens_and_runtime_records(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with Sandbox(None, state_dir=state_dir, now=NOW) as sandbox:
        token = _token(sandbox.magento).json()
        sandbox.magento.add_records(
            "orders", [_order(42, "2024-05-01 11:00:00", grand_total=Decimal("0.10"))]
        )
    saved = json.loads((state_dir / "sandbox_state.json").read_text())
    assert saved["version"] == 1 and token in saved["emulators"]["magento"]["tokens"]
    with Sandbox(None, state_dir=state_dir, now=NOW + timedelta(hours=1)) as sandbox:
        response = _get(sandbox.magento, "/rest/V1/orders", token=token)
        assert _ids(response) == [42]
        assert '"grand_total": 0.10' in response.text
        assert (
            requests.get(sandbox.magento.base_url + "/_sandbox/state", timeout=5).json()["tokens_issued"] == 1
        )


def test_sandbox_fault_rate_applies_to_its_emulators() -> None:
    with Sandbox(None, fault_rate=1.0, seed=3, now=NOW) as sandbox:
        _post_faults(sandbox.magento, {"slow_seconds": 0.01})
        statuses = [_token(sandbox.magento).status_code for _ in range(8)]
        assert set(statuses) <= {429, 500, 503, 200} and set(statuses) & {429, 500, 503}
        faults = requests.get(sandbox.magento.base_url + "/_sandbox/state", timeout=5).json()["faults"]
        assert faults["rate"] == 1.0 and sum(faults["injected"].values()) == 8


def test_serve_forever_stops_on_sigterm_and_saves_state(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from loyalty_assets.sandbox import Sandbox, serve_forever\n"
        "sandbox = Sandbox(None, state_dir=Path(sys.argv[1])).start()\n"
        "print(sandbox.env()['MAGENTO_BASE_URL'], flush=True)\n"
        "serve_forever(sandbox)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        assert requests.get(base_url + "/_sandbox/state", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "sandbox_state.json").is_file()
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/_sandbox/state", timeout=2)
