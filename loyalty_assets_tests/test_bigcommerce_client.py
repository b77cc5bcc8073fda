"""Contract: ``BigCommerceClient`` extracts a ``[start, end)`` window of orders, refunds and
customers of one store completely and exactly once, the way commerce_apis.md §2 and §8.1 require,
against the BigCommerce emulator over real HTTP on 127.0.0.1.

Orders page until **204** or a short page, sorted ``date_modified:asc``, survive rows moving during
the scan, and come back with their line items inline (``"products": [...]``, CONTRACT.md §2);
refunds page by ``meta.pagination``, customers by the ``after`` cursor; windows are half-open
exactly although BigCommerce bounds are inclusive; records are deduplicated on ``(id, modified)``;
money stays exactly as sent (``Decimal``/strings); the client paces itself from the
``X-Rate-Limit-*`` headers, sleeps ``Time-Reset-Ms`` on 429, retries 5xx, and raises typed errors.
No test sleeps for real: the injected ``sleep`` records the wait and moves the emulator clock.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.clients import AuthError, BigCommerceClient, ServerError
from loyalty_assets.clients.bigcommerce import format_iso, modified_at, parse_timestamp, record_id
from loyalty_assets.sandbox.bigcommerce import DEFAULT_ACCESS_TOKEN, BigCommerceEmulator, rfc2822
from loyalty_assets.sandbox.httpserver import EmulatorClock

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "bigcommerce"
STORE = "abc123"
DAY_START = datetime(2024, 5, 1, tzinfo=UTC)
DAY_END = datetime(2024, 5, 2, tzinfo=UTC)
NOW = datetime(2024, 5, 2, 6, 0, 0, tzinfo=UTC)


def _real(name: str) -> Any:
    path = REAL_FIXTURES / name
    if not path.is_file():
        pytest.fail(
            f"real BigCommerce fixture {path} is missing: the shared/ folder must sit beside the repo"
        )
    return simplejson.loads(path.read_text(), use_decimal=True)


def _order(order_id: int, modified: datetime, **extra: Any) -> dict[str, Any]:
    record = {
        "id": order_id,
        "customer_id": 0,
        "date_created": rfc2822(modified),
        "date_modified": rfc2822(modified),
        "status_id": 11,
        "total_inc_tax": "12.3450",
        "billing_address": {"email": f"guest{order_id}@example.com"},
        "products": [{"id": order_id * 10, "order_id": order_id, "price_inc_tax": "12.3450"}],
    }
    record.update(extra)
    return record


class Sleeps(list):
    """Records requested sleeps instead of sleeping, and moves the emulator clock by as much, so a
    rate-limit window the client waits for really rolls over."""

    def __init__(self, clock: EmulatorClock | None = None):
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(NOW)


@pytest.fixture
def bc(clock: EmulatorClock):
    emulator = BigCommerceEmulator(None, clock=clock, rate_limit=None)
    # 23 orders inside 2024-05-01 (several sharing a second), plus orders just outside each edge.
    inside = [_order(i, DAY_START + timedelta(hours=i // 3, minutes=(i * 7) % 60)) for i in range(1, 24)]
    inside += [_order(100, DAY_START + timedelta(hours=5)), _order(101, DAY_START + timedelta(hours=5))]
    outside = [
        _order(200, DAY_START - timedelta(seconds=1)),
        _order(201, DAY_END),
        _order(202, DAY_END + timedelta(hours=1)),
    ]
    emulator.add_records(STORE, "orders", inside + outside)
    with emulator:
        yield emulator


def _client(emulator: BigCommerceEmulator, sleeps: Sleeps | None = None, **kwargs: Any) -> BigCommerceClient:
    kwargs.setdefault("page_size", 5)
    return BigCommerceClient(
        emulator.base_url,
        STORE,
        DEFAULT_ACCESS_TOKEN,
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,
    )


def _ids(items: list[dict[str, Any]]) -> list[Any]:
    return [r["id"] for r in items]


def test_orders_window_is_complete_exact_and_enriched_with_products(bc: BigCommerceEmulator) -> None:
    client = _client(bc)
    result = client.fetch("orders", DAY_START, DAY_END)
    expected = sorted(
        list(range(1, 24)) + [100, 101],
        key=lambda i: (
            DAY_START + timedelta(hours=5)
            if i >= 100
            else DAY_START + timedelta(hours=i // 3, minutes=(i * 7) % 60),
            i,
        ),
    )
    assert _ids(result.items) == expected
    assert result.pages >= 5  # 25 orders, 5 per page
    assert result.total_count is None  # v2 announces no total
    assert result.server_time == NOW
    first = result.items[0]
    assert first["products"] == [
        {"id": first["id"] * 10, "order_id": first["id"], "price_inc_tax": "12.3450"}
    ]
    assert first["total_inc_tax"] == "12.3450"  # money untouched: mapping converts it, not the client
    times = [modified_at("orders", r) for r in result.items]
    assert times == sorted(times) and all(DAY_START <= t < DAY_END for t in times)


def test_orders_stop_on_204_or_a_short_page(clock: EmulatorClock) -> None:
    with BigCommerceEmulator(None, clock=clock, rate_limit=None, store_hashes=[STORE]) as bc:
        client = _client(bc, include_products=False)
        empty = client.fetch("orders", DAY_START, DAY_END)
        assert empty.items == [] and empty.pages == 1
        assert bc.request_summary()["by_status"] == {"204": 1}
        # Ten orders within one second, five per page: the pages of that second are walked until
        # the page past the end answers 204 with no body.
        same_second = DAY_START + timedelta(hours=3)
        bc.add_records(STORE, "orders", [_order(i, same_second) for i in range(1, 11)])
        result = client.fetch("orders", DAY_START, DAY_END)
        assert _ids(result.items) == list(range(1, 11))
        assert bc.request_summary()["by_status"]["204"] == 2
        assert all(isinstance(r["products"], dict) for r in result.items)  # links, not fetched
        # Spread over the day, the scan ends on a short page instead.
        later = DAY_START + timedelta(hours=12)
        bc.add_records(STORE, "orders", [_order(20 + i, later + timedelta(minutes=i)) for i in range(4)])
        before = bc.request_summary()["total"]
        spread = client.fetch("orders", later, DAY_END)
        assert _ids(spread.items) == [20, 21, 22, 23]
        assert bc.request_summary()["total"] - before == 1 and spread.pages == 1


def test_adjacent_windows_partition_records_half_open(bc: BigCommerceEmulator) -> None:
    client = _client(bc, include_products=False)
    cut = DAY_START + timedelta(hours=5)  # orders 15, 16, 17, 100, 101 are modified exactly here or after
    left = client.fetch("orders", DAY_START, cut)
    right = client.fetch("orders", cut, DAY_END)
    assert not set(_ids(left.items)) & set(_ids(right.items))
    assert sorted(_ids(left.items) + _ids(right.items)) == sorted(list(range(1, 24)) + [100, 101])
    assert {100, 101} <= set(_ids(right.items))
    # Sub-second bounds: BigCommerce filters are whole seconds and inclusive, the client is exact.
    fraction = client.fetch("orders", cut + timedelta(microseconds=1), DAY_END)
    assert not {100, 101} & set(_ids(fraction.items))


def test_orders_moving_during_the_scan_are_not_lost(clock: EmulatorClock) -> None:
    clock.set(DAY_START + timedelta(hours=12))  # an open window: the store is still changing
    with BigCommerceEmulator(None, clock=clock, rate_limit=None) as bc:
        bc.add_records(STORE, "orders", [_order(i, DAY_START + timedelta(hours=i)) for i in range(1, 11)])
        client = _client(bc, page_size=3, include_products=False)
        moved = []

        def edit_after_first_page(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if not moved and "/v2/orders" in response.url:
                # Order 1 is edited now: it leaves page 1 and every later row shifts back by one.
                moved.append(bc.add_records(STORE, "orders", [_order(1, clock.now(), status_id=5)]))

        client.session.hooks["response"].append(edit_after_first_page)
        result = client.fetch("orders", DAY_START, DAY_END)
        assert sorted(set(_ids(result.items))) == list(range(1, 11))
        versions = [r["status_id"] for r in result.items if r["id"] == 1]
        assert versions == [11, 5]  # both versions, deduplicated on (id, modified)


def test_versions_are_deduplicated_and_as_of_the_window_end(clock: EmulatorClock) -> None:
    with BigCommerceEmulator(None, clock=clock, rate_limit=None) as bc:
        bc.add_records(
            STORE,
            "orders",
            [
                _order(7, DAY_START + timedelta(hours=1), status_id=11),
                _order(7, DAY_START + timedelta(hours=2), status_id=10),
                _order(7, DAY_END + timedelta(hours=1), status_id=4),  # after the window
            ],
        )
        result = _client(bc).fetch("orders", DAY_START, DAY_END)
        assert [(r["id"], r["status_id"]) for r in result.items] == [(7, 10)]


def test_paces_itself_from_the_rate_limit_headers(clock: EmulatorClock) -> None:
    with BigCommerceEmulator(None, clock=clock, rate_limit=(4, 30.0)) as bc:
        bc.add_records(STORE, "orders", [_order(i, DAY_START + timedelta(hours=i)) for i in range(1, 13)])
        sleeps = Sleeps(clock)
        client = _client(bc, sleeps, page_size=5, rate_limit_reserve=1)
        result = client.fetch("orders", DAY_START, DAY_END)  # 3 list pages + 12 product calls
        assert _ids(result.items) == list(range(1, 13))
        assert "429" not in bc.request_summary()["by_status"]  # never ran into the limit
        assert client.paced_sleeps == len(sleeps)
        # Waited Time-Reset-Ms (less the real time since that response) whenever one request was
        # left; the frozen clock then lacks those few real milliseconds, and the next response's
        # Time-Reset-Ms asks for exactly them.
        windows = [s for s in sleeps if s > 1]
        assert len(windows) >= 3 and all(29.0 < s <= 30.0 for s in windows), sleeps
        assert all(s < 0.5 for s in sleeps if s <= 1), sleeps


def test_429_sleeps_time_reset_ms_then_retries(clock: EmulatorClock) -> None:
    with BigCommerceEmulator(None, clock=clock, rate_limit=(3, 30.0)) as bc:
        bc.add_records(STORE, "orders", [_order(1, DAY_START + timedelta(hours=1))])
        for _ in range(3):  # another app of the same store uses the whole quota
            requests.get(
                f"{bc.base_url}/stores/{STORE}/v2/orders",
                headers={"X-Auth-Token": DEFAULT_ACCESS_TOKEN},
                timeout=5,
            )
        sleeps = Sleeps(clock)
        result = _client(bc, sleeps, backoff_base=0.01).fetch("orders", DAY_START, DAY_END)
        assert _ids(result.items) == [1]
        assert bc.request_summary()["by_status"]["429"] == 1
        assert len(sleeps) == 1 and 29.0 < sleeps[0] <= 30.0


def test_retries_503_and_injected_429(bc: BigCommerceEmulator) -> None:
    script = [{"status": 503}, {"status": 429, "retry_after": 2}, {"status": 500, "path": "/products"}]
    requests.post(bc.base_url + "/_sandbox/faults", json={"script": script}, timeout=5)
    sleeps = Sleeps()
    result = _client(bc, sleeps, backoff_base=0.01).fetch("orders", DAY_START, DAY_END)
    assert len(result.items) == 25
    assert len(sleeps) == 3 and sleeps[1] >= 2  # Retry-After honoured
    requests.post(bc.base_url + "/_sandbox/faults", json={"script": [{"status": 503}] * 3}, timeout=5)
    with pytest.raises(ServerError) as info:
        _client(bc, max_attempts=3).fetch("orders", DAY_START, DAY_END)
    assert info.value.status == 503


def test_wrong_token_raises_auth_error_without_retrying(bc: BigCommerceEmulator) -> None:
    sleeps = Sleeps()
    client = BigCommerceClient(bc.base_url, STORE, "wrong", sleep=sleeps)
    with pytest.raises(AuthError) as info:
        client.fetch("orders", DAY_START, DAY_END)
    assert info.value.status == 401 and not sleeps
    assert "wrong" not in repr(client)


def test_refunds_pages_by_meta_pagination_with_decimal_money(clock: EmulatorClock) -> None:
    real = _real("refund_v3_get.json")["data"]
    with BigCommerceEmulator(None, clock=clock, rate_limit=None) as bc:
        refunds = []
        for i in range(7):
            refund = copy.deepcopy(real)
            refund.update(
                id=100 + i,
                created=(DAY_START + timedelta(hours=2 * i)).isoformat(),
                total_amount=Decimal("19.99"),
            )
            refunds.append(refund)
        refunds.append(
            dict(copy.deepcopy(real), id=99, created=(DAY_START - timedelta(seconds=1)).isoformat())
        )
        refunds.append(dict(copy.deepcopy(real), id=200, created=DAY_END.isoformat()))
        bc.add_records(STORE, "refunds", refunds)
        result = _client(bc, page_size=3).fetch("refunds", DAY_START, DAY_END)
        assert _ids(result.items) == list(range(100, 107))
        assert result.pages == 3 and result.total_count == 7
        assert result.items[0]["total_amount"] == Decimal("19.99")
        assert isinstance(result.items[0]["total_amount"], Decimal)
        assert result.items[0]["payments"] == real["payments"]
        half = _client(bc, page_size=3).fetch(
            "refunds", DAY_START + timedelta(hours=2), DAY_START + timedelta(hours=6)
        )
        assert _ids(half.items) == [101, 102] and half.total_count == 2
        # A sub-second start: the server's whole-second bound returns refund 101, the client drops it
        # and leaves it out of the total too.
        exact = _client(bc).fetch("refunds", DAY_START + timedelta(hours=2, microseconds=1), DAY_END)
        assert _ids(exact.items) == [102, 103, 104, 105, 106] and exact.total_count == 5


def test_customers_page_with_the_after_cursor(clock: EmulatorClock) -> None:
    with BigCommerceEmulator(None, clock=clock, rate_limit=None) as bc:
        customers = [
            {
                "id": 50 + i,
                "email": f"c{i}@example.com",
                "date_created": "2024-04-01T00:00:00Z",
                "date_modified": (DAY_START + timedelta(hours=20 - 2 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "store_credit_amounts": [{"amount": Decimal("43.15")}],
            }
            for i in range(8)
        ]
        customers.append(dict(customers[0], id=90, date_modified="2024-05-02T00:00:00Z"))
        bc.add_records(STORE, "customers", customers)
        seen_after: list[str] = []

        def spy(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if "after=" in response.url:
                seen_after.append(response.url)

        client = _client(bc, page_size=3)
        client.session.hooks["response"].append(spy)
        result = client.fetch("customers", DAY_START, DAY_END)
        assert _ids(result.items) == [57, 56, 55, 54, 53, 52, 51, 50]  # date_modified ascending
        assert result.pages == 3 and len(seen_after) == 2
        assert result.items[0]["store_credit_amounts"][0]["amount"] == Decimal("43.15")


def test_lookahead_and_server_time(bc: BigCommerceEmulator) -> None:
    client = _client(bc)
    ahead = client.lookahead("orders", DAY_START + timedelta(hours=7), 3)
    assert len(ahead.items) == 3 and ahead.pages == 1
    assert all(modified_at("orders", r) >= DAY_START + timedelta(hours=7) for r in ahead.items)
    assert _ids(ahead.items) == [21, 22, 23]
    assert client.lookahead("refunds", DAY_START, 10).items == []
    assert client.server_time() == NOW


def test_record_id_and_modified_at_on_real_payloads() -> None:
    order = _real("orders_v2_list.json")[0]
    refund = _real("refund_v3_get.json")["data"]
    customer = {"id": 20, "date_modified": "2020-08-28T06:03:38Z", "date_created": "2020-08-01T00:00:00Z"}
    assert record_id("orders", order) == "100"
    assert modified_at("orders", order) == datetime(2018, 12, 5, 20, 16, 55, tzinfo=UTC)
    assert record_id("refunds", refund) == "12"
    assert modified_at("refunds", refund) == datetime(2022, 6, 16, 16, 44, 15, tzinfo=UTC)
    assert modified_at("customers", customer) == datetime(2020, 8, 28, 6, 3, 38, tzinfo=UTC)
    assert parse_timestamp("Thu, 20 Apr 2017 11:32:00 -0400") == datetime(2017, 4, 20, 15, 32, tzinfo=UTC)
    assert format_iso(datetime(2024, 5, 1, 10, 0, 0, 500, tzinfo=UTC)) == "2024-05-01T10:00:00+00:00"
    with pytest.raises(ValueError):
        modified_at("orders", {"id": 1, "date_modified": "soon"})
    with pytest.raises(ValueError):
        record_id("payments", order)


def test_argument_validation(bc: BigCommerceEmulator) -> None:
    client = _client(bc)
    with pytest.raises(ValueError):
        client.fetch("orders", DAY_END, DAY_START)
    with pytest.raises(ValueError):
        client.fetch("orders", datetime(2024, 5, 1), DAY_END)
    with pytest.raises(ValueError):
        BigCommerceClient(bc.base_url, STORE, DEFAULT_ACCESS_TOKEN, page_size=251)


def test_a_store_token_is_found_by_its_hash_as_written_or_in_upper_case(monkeypatch) -> None:
    """CONTRACT.md §4: BIGCOMMERCE_ACCESS_TOKEN for every store unless BIGCOMMERCE_ACCESS_TOKEN_<HASH> is set."""
    from loyalty_assets.defs.resources import BigCommerceResource

    monkeypatch.setenv("BIGCOMMERCE_ACCESS_TOKEN_abc123", "t-abc")
    monkeypatch.setenv("BIGCOMMERCE_ACCESS_TOKEN_DEF456", "t-def")
    resource = BigCommerceResource(api_url="http://127.0.0.1:1", store_hashes="abc123, def456,ghi789", access_token="t-all")
    assert [resource.token_for(h) for h in resource.hashes] == ["t-abc", "t-def", "t-all"]
    assert BigCommerceResource(api_url="http://127.0.0.1:1", store_hashes="abc123,ghi789").is_configured is False
