"""Contract: ``MagentoClient`` extracts a ``[start, end)`` updated_at window completely and exactly
once, the way commerce_apis.md §1.2-1.4 and §8.1 require, against the Magento emulator over real
HTTP on 127.0.0.1.

It pages with ``total_count`` and never trusts an empty page (the last-page repeat, #3787), sorts
``updated_at, id`` ascending, dedupes on ``(id, updated_at)``, rescans when the count moves, keeps
money as ``Decimal``, retries 429/5xx/dropped connections with backoff that honours ``Retry-After``,
logs in again when the 4-hour admin token expires, raises typed errors for permanent failures, and
never writes credentials to the log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.clients import (
    ApiConnectionError,
    AuthError,
    ClientError,
    MagentoClient,
    RateLimitedError,
    ServerError,
    format_magento_time,
    magento_time,
    to_json,
)
from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.magento import DEFAULT_PASSWORD, DEFAULT_USERNAME, MagentoEmulator

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "magento"
NOW = datetime(2024, 5, 2, 0, 0, 0, tzinfo=UTC)
DAY_START = datetime(2024, 5, 1, tzinfo=UTC)
DAY_END = datetime(2024, 5, 2, tzinfo=UTC)


def _real(name: str) -> dict[str, Any]:
    path = REAL_FIXTURES / name
    if not path.is_file():
        pytest.fail(f"real Magento fixture {path} is missing: the shared/ folder must sit beside the repo")
    return simplejson.loads(path.read_text(), use_decimal=True)


def _order(entity_id: int, updated_at: str) -> dict[str, Any]:
    return {
        "entity_id": entity_id,
        "increment_id": f"{entity_id:09d}",
        "updated_at": updated_at,
        "created_at": updated_at,
        "status": "processing",
        "grand_total": Decimal("19.99"),
        "base_grand_total": Decimal("21.5"),
    }


@pytest.fixture
def magento():
    emulator = MagentoEmulator(None, clock=EmulatorClock(NOW))
    # 23 orders inside 2024-05-01, several sharing a second (ties broken by entity_id), plus two
    # outside the window on each side.
    inside = [_order(i, f"2024-05-01 {i // 3:02d}:{(i * 7) % 60:02d}:00") for i in range(1, 24)]
    inside += [_order(100, "2024-05-01 05:00:00"), _order(101, "2024-05-01 05:00:00")]
    outside = [_order(200, "2024-04-30 23:59:59"), _order(201, "2024-05-02 00:00:00")]
    emulator.add_records("orders", inside + outside)
    with emulator:
        yield emulator


class Sleeps(list):
    """Records requested sleeps instead of sleeping, so retry tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _client(emulator: MagentoEmulator, sleeps: Sleeps | None = None, **kwargs: Any) -> MagentoClient:
    kwargs.setdefault("username", DEFAULT_USERNAME)
    kwargs.setdefault("password", DEFAULT_PASSWORD)
    return MagentoClient(emulator.base_url, sleep=sleeps if sleeps is not None else Sleeps(), **kwargs)


def _state(emulator: MagentoEmulator) -> dict[str, Any]:
    return requests.get(emulator.base_url + "/_sandbox/state", timeout=5).json()


def _faults(emulator: MagentoEmulator, script: list[dict[str, Any]]) -> None:
    requests.post(
        emulator.base_url + "/_sandbox/faults", json={"script": script}, timeout=5
    ).raise_for_status()


def _no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_floats(v) for v in value)
    return True


# --------------------------------------------------------------------------------------------------
# Windows and paging


def test_window_is_paged_completely_in_ascending_order(magento: MagentoEmulator) -> None:
    result = _client(magento, page_size=5).search("orders", DAY_START, DAY_END)
    keys = [(r["updated_at"], r["entity_id"]) for r in result.items]
    assert len(result.items) == 25 == result.total_count
    assert keys == sorted(keys)  # updated_at ASC, then entity_id ASC
    assert {r["entity_id"] for r in result.items}.isdisjoint({200, 201})  # [start, end)
    assert result.pages == 5
    assert result.server_time == NOW
    assert _state(magento)["requests"]["by_route"]["orders search"] == 5


def test_stops_on_total_count_when_pages_divide_exactly(magento: MagentoEmulator) -> None:
    # 25 rows / page 5: page 6 would return page 5 again (the quirk); the client must not ask for it.
    result = _client(magento, page_size=5).search("orders", DAY_START, DAY_END)
    recent = _state(magento)["requests"]["recent"]
    assert result.pages == 5 and len({r["entity_id"] for r in result.items}) == 25
    assert sum(1 for r in recent if r["route"] == "orders search") == 5


def test_lying_total_count_cannot_loop_or_duplicate(magento: MagentoEmulator, monkeypatch) -> None:
    real_search = magento.search

    def inflated(entity, criteria):
        body = real_search(entity, criteria)
        body["total_count"] += 50  # as on /V1/search (#17295): total_count is not always right
        return body

    monkeypatch.setattr(magento, "search", inflated)
    result = _client(magento, page_size=10).search("orders", DAY_START, DAY_END)
    assert len(result.items) == 25
    assert len({(r["entity_id"], r["updated_at"]) for r in result.items}) == 25
    assert result.pages == 4  # pages 1-3, then page 4 repeated page 3 and stopped the scan


def test_total_count_moving_mid_scan_triggers_a_rescan(magento: MagentoEmulator, monkeypatch) -> None:
    real_search = magento.search
    calls = {"n": 0}

    def growing(entity, criteria):
        calls["n"] += 1
        if calls["n"] == 2:  # a new order and a new version of order 1 land while we page
            magento.add_records(
                "orders", [_order(300, "2024-05-01 00:00:01"), _order(1, "2024-05-01 23:00:00")]
            )
        return real_search(entity, criteria)

    monkeypatch.setattr(magento, "search", growing)
    result = _client(magento, page_size=10).search("orders", DAY_START, DAY_END)
    keys = [(r["entity_id"], r["updated_at"]) for r in result.items]
    assert len(keys) == len(set(keys))  # deduplicated on (id, updated_at)
    assert (300, "2024-05-01 00:00:01") in keys and (1, "2024-05-01 23:00:00") in keys
    assert result.total_count == 26
    assert result.pages > 3


def test_window_bounds_are_utc_and_second_exact(magento: MagentoEmulator) -> None:
    client = _client(magento)
    start = datetime(2024, 5, 1, 7, 0, 0, tzinfo=timezone(timedelta(hours=2)))  # = 05:00:00 UTC
    end = datetime(2024, 5, 1, 5, 0, 0, 500000, tzinfo=UTC)  # a fraction past 05:00:00
    ids = [r["entity_id"] for r in client.search("orders", start, end).items]
    assert ids == [100, 101]
    # The end is exclusive; a start a fraction past a second excludes that second.
    before = client.search(
        "orders", datetime(2024, 5, 1, 4, 50, tzinfo=UTC), datetime(2024, 5, 1, 5, tzinfo=UTC)
    )
    assert 100 not in [r["entity_id"] for r in before.items]
    after = client.search(
        "orders", datetime(2024, 5, 1, 5, 0, 0, 1, tzinfo=UTC), datetime(2024, 5, 1, 6, tzinfo=UTC)
    )
    assert 100 not in [r["entity_id"] for r in after.items]
    with pytest.raises(ValueError, match="naive"):
        client.search("orders", datetime(2024, 5, 1), DAY_END)
    with pytest.raises(ValueError):
        client.search("orders", DAY_END, DAY_START)
    with pytest.raises(ValueError):
        client.search("invoices", DAY_START, DAY_END)


def test_lookahead_and_server_time(magento: MagentoEmulator) -> None:
    client = _client(magento)
    ahead = client.lookahead("orders", datetime(2024, 5, 1, 6, 0, tzinfo=UTC), limit=3)
    assert ahead.total_count == 6 + 1  # 18..23 and 201 (the clock is 2024-05-02 00:00:00)
    assert [r["updated_at"] for r in ahead.items] == sorted(r["updated_at"] for r in ahead.items)
    assert len(ahead.items) == 3 and ahead.pages == 1
    assert client.server_time() == NOW
    magento.clock.advance(90)
    assert client.server_time() == NOW + timedelta(seconds=90)


def test_real_fixtures_through_the_client(tmp_path: Path) -> None:
    order, invoice, customer = (
        _real(n) for n in ("order_get_by_id.json", "invoice_with_discount.json", "customer.json")
    )
    invoice["entity_id"], invoice["order_id"] = 11, order["entity_id"]
    for entity, record in (("orders", order), ("creditmemos", invoice), ("customers", customer)):
        folder = tmp_path / "magento" / entity
        folder.mkdir(parents=True)
        (folder / "seed.json").write_text(simplejson.dumps([record], use_decimal=True))
    with MagentoEmulator(tmp_path / "magento") as emulator:
        client = _client(emulator, store_code="default")
        since, until = datetime(2017, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
        orders = client.search("orders", since, until).items
        memos = client.search("creditmemos", since, until).items
        customers = client.search("customers", since, until).items
    assert orders == [order] and memos == [invoice] and customers == [customer]
    for items in (orders, memos, customers):
        assert _no_floats(items)
    assert memos[0]["discount_amount"] == Decimal("-404.4")
    assert memos[0]["grand_total"] == Decimal("1917.6")
    assert '"discount_amount":-404.4' in to_json(memos[0])
    assert magento_time(orders[0]["updated_at"]) == datetime(2017, 8, 21, 22, 22, 20, tzinfo=UTC)
    assert customers[0]["id"] == 2


def test_timestamp_helpers() -> None:
    assert magento_time("2024-05-01 10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert format_magento_time(datetime(2024, 5, 1, 12, 30, 15, 999, tzinfo=UTC)) == "2024-05-01 12:30:15"
    with pytest.raises(ValueError):
        format_magento_time(datetime(2024, 5, 1))


# --------------------------------------------------------------------------------------------------
# Retries, auth and errors


def test_retries_scripted_429_and_503_honouring_retry_after(magento: MagentoEmulator) -> None:
    sleeps = Sleeps()
    client = _client(magento, sleeps, page_size=10, backoff_base=0.001, backoff_max=0.01)
    client.login()
    _faults(magento, [{"status": 429, "retry_after": 1, "path": "/orders"}, {"status": 503}, {"status": 502}])
    result = client.search("orders", DAY_START, DAY_END)
    assert len(result.items) == 25
    assert len(sleeps) == 3
    assert sleeps[0] >= 1  # Retry-After wins over the (tiny) jittered backoff
    assert all(s <= 0.01 for s in sleeps[1:])


def test_retries_a_dropped_connection(magento: MagentoEmulator) -> None:
    sleeps = Sleeps()
    client = _client(magento, sleeps, page_size=50, backoff_base=0.001)
    _faults(magento, [{"drop": True, "path": "/orders"}])
    assert len(client.search("orders", DAY_START, DAY_END).items) == 25
    assert len(sleeps) == 1


def test_gives_up_with_typed_errors_after_max_attempts(magento: MagentoEmulator) -> None:
    sleeps = Sleeps()
    client = _client(magento, sleeps, max_attempts=3, backoff_base=0.001)
    client.login()
    _faults(magento, [{"status": 503}] * 3)
    with pytest.raises(ServerError) as server_error:
        client.search("orders", DAY_START, DAY_END)
    assert server_error.value.status == 503 and len(sleeps) == 2
    assert "searchCriteria" not in server_error.value.url  # no query string in errors or logs

    _faults(magento, [{"status": 429, "retry_after": 7}] * 3)
    with pytest.raises(RateLimitedError) as limited:
        client.search("orders", DAY_START, DAY_END)
    assert limited.value.retry_after == 7


def test_permanent_4xx_is_a_client_error_without_retry(magento: MagentoEmulator) -> None:
    sleeps = Sleeps()
    client = _client(magento, sleeps)
    client.login()
    _faults(
        magento,
        [
            {
                "status": 400,
                "body": {"message": '"%fieldName" is invalid.', "parameters": {"fieldName": "pageSize"}},
            }
        ],
    )
    with pytest.raises(ClientError) as error:
        client.search("orders", DAY_START, DAY_END)
    assert error.value.status == 400 and error.value.message == '"pageSize" is invalid.'
    assert sleeps == []
    assert not isinstance(error.value, ServerError | AuthError)


def test_new_admin_token_after_expiry(magento: MagentoEmulator) -> None:
    client = _client(magento, page_size=50)
    assert len(client.search("orders", DAY_START, DAY_END).items) == 25
    magento.clock.advance(4 * 3600 + 1)
    assert len(client.search("orders", DAY_START, DAY_END).items) == 25
    state = _state(magento)
    assert state["tokens_issued"] == 2
    assert state["requests"]["by_status"]["401"] == 1


def test_wrong_password_is_an_auth_error(magento: MagentoEmulator) -> None:
    client = _client(magento, password="wrong")
    with pytest.raises(AuthError) as error:
        client.search("orders", DAY_START, DAY_END)
    assert error.value.status == 401 and "sign-in was incorrect" in error.value.message
    assert _state(magento)["requests"]["total"] == 1


def test_static_access_token(magento: MagentoEmulator) -> None:
    magento.access_token = "integration-token"
    good = MagentoClient(magento.base_url, access_token="integration-token", store_code="")
    assert len(good.search("orders", DAY_START, DAY_END).items) == 25
    bad = MagentoClient(magento.base_url, access_token="stale-token")
    with pytest.raises(AuthError):  # a static token cannot be refreshed: fail, do not loop
        bad.search("orders", DAY_START, DAY_END)
    assert _state(magento)["tokens_issued"] == 0
    with pytest.raises(ValueError):
        MagentoClient(magento.base_url)


def test_connection_refused_is_a_typed_error() -> None:
    emulator = MagentoEmulator(None).start()
    base_url = emulator.base_url
    emulator.stop()
    sleeps = Sleeps()
    client = MagentoClient(base_url, access_token="t", max_attempts=2, sleep=sleeps, timeout=2)
    with pytest.raises(ApiConnectionError) as error:
        client.server_time()
    assert error.value.status is None and len(sleeps) == 1


def test_credentials_never_reach_the_log(magento: MagentoEmulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(magento, backoff_base=0.001)
    _faults(magento, [{"status": 503}])
    client.search("orders", DAY_START, DAY_END)
    token = client._admin_token
    assert token and token not in caplog.text and DEFAULT_PASSWORD not in caplog.text
    assert token not in repr(client) and DEFAULT_PASSWORD not in repr(client)
