"""Contract: ``SfccClient`` extracts a ``[start, end)`` lastModified window of SCAPI orders completely
and exactly once, the way commerce_apis.md §5 and §8.1 require, against the SFCC emulator over real
HTTP on 127.0.0.1.

It sorts ``last_modified_date`` ascending, pages with ``offset``/``limit`` and stops on a short page
(the documented envelope has no total), never sends ``offset + limit`` above the 10,000 cap but
splits an oversized window in halves by time instead, dedupes on ``(orderNo, lastModified)``, keeps
money as ``Decimal``, retries 429/5xx with backoff that honours ``Retry-After``, raises typed errors
for permanent failures, reads the server clock from ``Date``, and never logs its token.
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
    ApiError,
    AuthError,
    ClientError,
    RateLimitedError,
    ServerError,
    SfccClient,
    format_sfcc_time,
    sfcc_time,
)
from loyalty_assets.clients.sfcc import modified_at, record_id
from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.sfcc import SfccEmulator

REAL_FIXTURE = (
    Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "sfcc" / "orders_get.json"
)
ORG = "f_ecom_zzxy_prd"
TOKEN = "client-test-token"
NOW = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)
DAY_START = datetime(2024, 5, 1, tzinfo=UTC)
DAY_END = datetime(2024, 5, 2, tzinfo=UTC)


def _order(no: str, modified: str, **extra: Any) -> dict[str, Any]:
    record = {
        "orderNo": no,
        "creationDate": modified,
        "lastModified": modified,
        "siteId": extra.pop("siteId", "RefArch"),
        "currency": "EUR",
        "status": "new",
        "paymentStatus": "paid",
        "productTotal": Decimal("19.99"),
        "orderTotal": Decimal("23.7"),
    }
    record.update(extra)
    return record


def _ts(seconds: int, ms: int = 0) -> str:
    return format_sfcc_time(DAY_START + timedelta(seconds=seconds, milliseconds=ms))


class Sleeps(list):
    """Records requested sleeps instead of sleeping, so retry tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _client(emulator: SfccEmulator, sleeps: Sleeps | None = None, **kwargs: Any) -> SfccClient:
    return SfccClient(
        emulator.base_url, ORG, TOKEN, sleep=sleeps if sleeps is not None else Sleeps(), **kwargs
    )


def _state(emulator: SfccEmulator) -> dict[str, Any]:
    return requests.get(emulator.base_url + "/_sandbox/state", timeout=5).json()


def _faults(emulator: SfccEmulator, script: list[dict[str, Any]]) -> None:
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


@pytest.fixture
def sfcc():
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW))
    # 25 orders inside 2024-05-01 (several sharing a millisecond, ties broken by orderNo), plus
    # one just outside on each side.
    inside = [_order(f"O{i:03d}", _ts(i * 3000 // 2)) for i in range(1, 24)]
    inside += [_order("T100", _ts(3600, 250)), _order("T101", _ts(3600, 250))]
    outside = [_order("X-before", "2024-04-30T23:59:59.999Z"), _order("X-after", "2024-05-02T00:00:00.000Z")]
    emulator.add_records(ORG, inside + outside)
    with emulator:
        yield emulator


# --------------------------------------------------------------------------------------------------
# Windows and paging


def test_fetches_a_window_in_ascending_pages(sfcc: SfccEmulator) -> None:
    result = _client(sfcc, page_size=10).fetch("orders", DAY_START, DAY_END)
    keys = [(modified_at("orders", r), record_id("orders", r)) for r in result.items]
    assert len(keys) == 25 == result.total_count == len(set(keys))
    assert keys == sorted(keys)
    assert {"X-before", "X-after"}.isdisjoint(k for _, k in keys)  # [start, end)
    assert result.pages == 3  # 10 + 10 + 5: the short page ends the scan
    assert result.server_time == NOW
    assert _state(sfcc)["requests"]["by_route"] == {"orders list": 3}


def test_an_exactly_full_last_page_costs_one_empty_request(sfcc: SfccEmulator) -> None:
    result = _client(sfcc, page_size=5).fetch("orders", DAY_START, DAY_END)
    assert len(result.items) == 25 and result.pages == 6


def test_window_bounds_are_utc_and_millisecond_exact(sfcc: SfccEmulator) -> None:
    client = _client(sfcc)
    t100 = DAY_START + timedelta(seconds=3600, milliseconds=250)
    two_hours_east = timezone(timedelta(hours=2))
    exact = client.fetch("orders", t100.astimezone(two_hours_east), t100 + timedelta(microseconds=1))
    assert [r["orderNo"] for r in exact.items] == ["T100", "T101"]
    # The end is exclusive; a start a fraction past a millisecond excludes that millisecond.
    before = client.fetch("orders", DAY_START, t100)
    assert {"T100", "T101"}.isdisjoint(r["orderNo"] for r in before.items)
    after = client.fetch("orders", t100 + timedelta(microseconds=1), DAY_END)
    assert "T100" not in [r["orderNo"] for r in after.items]
    with pytest.raises(ValueError, match="naive"):
        client.fetch("orders", datetime(2024, 5, 1), DAY_END)
    with pytest.raises(ValueError):
        client.fetch("orders", DAY_END, DAY_START)
    with pytest.raises(ValueError):
        client.fetch("refunds", DAY_START, DAY_END)  # SCAPI has no refund list


def test_window_beyond_the_offset_cap_is_split_in_halves() -> None:
    # A cap of 20 stands in for 10,000: 75 orders in one day must come out whole, and the client
    # must never send offset + limit above the cap (the API would answer 400).
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW), max_offset_plus_limit=20)
    emulator.add_records(ORG, [_order(f"S{i:03d}", _ts(i * 1000, i % 7)) for i in range(75)])
    emulator.add_records(ORG, [_order("S000", _ts(80_000))])  # a second version of S000
    with emulator:
        client = _client(emulator, page_size=7, max_offset_plus_limit=20)
        result = client.fetch("orders", DAY_START, DAY_END)
        state = _state(emulator)
    numbers = [r["orderNo"] for r in result.items]
    assert len(numbers) == 76 and len(set(numbers)) == 75  # S000 in both its versions, once each
    keys = [(modified_at("orders", r), record_id("orders", r)) for r in result.items]
    assert keys == sorted(keys)
    assert set(state["requests"]["by_status"]) == {"200"}  # never a 400
    assert result.pages == state["requests"]["total"] > 10


def test_split_happens_up_front_when_the_server_sends_a_total() -> None:
    pages: dict[bool, int] = {}
    for totals in (False, True):
        emulator = SfccEmulator(
            None,
            access_token=TOKEN,
            clock=EmulatorClock(NOW),
            max_offset_plus_limit=20,
            envelope_totals=totals,
        )
        emulator.add_records(ORG, [_order(f"S{i:03d}", _ts(i * 1000)) for i in range(45)])
        with emulator:
            client = _client(emulator, page_size=10, max_offset_plus_limit=20)
            result = client.fetch("orders", DAY_START, DAY_END)
            state = _state(emulator)
        assert len({r["orderNo"] for r in result.items}) == 45 == len(result.items)
        assert set(state["requests"]["by_status"]) == {"200"}
        pages[totals] = result.pages
    # With a total the client does not page an oversized window up to the cap before splitting.
    assert pages[True] < pages[False]


def test_more_rows_in_one_millisecond_than_the_cap_is_an_error() -> None:
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW), max_offset_plus_limit=5)
    emulator.add_records(ORG, [_order(f"M{i}", _ts(60)) for i in range(8)])
    with emulator:
        with pytest.raises(ApiError, match="millisecond"):
            _client(emulator, page_size=5, max_offset_plus_limit=5).fetch("orders", DAY_START, DAY_END)


def test_several_sites_are_read_and_merged() -> None:
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW), require_site_id=True)
    emulator.add_records(
        ORG,
        [
            _order("U1", _ts(10), siteId="UK"),
            _order("R1", _ts(20), siteId="RefArch"),
            _order("U2", _ts(30), siteId="UK"),
            _order("J1", _ts(40), siteId="JP"),
        ],
    )
    with emulator:
        client = _client(emulator, site_ids=["RefArch", "UK"])
        assert [r["orderNo"] for r in client.fetch("orders", DAY_START, DAY_END).items] == ["U1", "R1", "U2"]
        ahead = client.lookahead("orders", DAY_START, 2)
        assert [r["orderNo"] for r in ahead.items] == ["U1", "R1"] and ahead.pages == 2
        assert client.server_time() == NOW
        with pytest.raises(ClientError):  # siteId is required by this (spec-strict) emulator
            _client(emulator).fetch("orders", DAY_START, DAY_END)


def test_lookahead_and_server_time(sfcc: SfccEmulator) -> None:
    client = _client(sfcc)
    since = DAY_START + timedelta(hours=8)
    ahead = client.lookahead("orders", since, limit=3)
    assert [r["lastModified"] for r in ahead.items] == sorted(r["lastModified"] for r in ahead.items)
    assert len(ahead.items) == 3 and ahead.pages == 1
    assert all(modified_at("orders", r) >= since for r in ahead.items)
    assert ahead.total_count == 3  # the documented envelope carries no total
    assert client.server_time() == NOW
    sfcc.clock.advance(90)
    assert client.server_time() == NOW + timedelta(seconds=90)
    with pytest.raises(ValueError):
        client.lookahead("orders", since, 0)


def test_real_fixture_through_the_client(tmp_path: Path) -> None:
    real = simplejson.loads(REAL_FIXTURE.read_text(), use_decimal=True)
    folder = tmp_path / "sfcc" / ORG / "orders"
    folder.mkdir(parents=True)
    (folder / "seed.json").write_text(simplejson.dumps(real["data"], use_decimal=True))
    with SfccEmulator(tmp_path / "sfcc", access_token=TOKEN) as emulator:
        items = (
            _client(emulator)
            .fetch("orders", datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
            .items
        )
    assert items == real["data"]
    assert _no_floats(items)
    assert items[0]["orderTotal"] == Decimal("110.24") and items[0]["productTotal"] == 99
    assert items[0]["shipments"][0]["adjustedShippingTotalTax"] == Decimal("0.3")
    assert record_id("orders", items[0]) == "00000410"
    assert modified_at("orders", items[0]) == datetime(2020, 11, 4, 14, 13, 31, 61000, tzinfo=UTC)


def test_timestamp_helpers() -> None:
    assert sfcc_time("2020-11-04T14:13:31.061Z") == datetime(2020, 11, 4, 14, 13, 31, 61000, tzinfo=UTC)
    assert sfcc_time("2020-11-04T16:13:31+02:00") == datetime(2020, 11, 4, 14, 13, 31, tzinfo=UTC)
    assert (
        format_sfcc_time(datetime(2024, 5, 1, 12, 30, 15, 999999, tzinfo=UTC)) == "2024-05-01T12:30:15.999Z"
    )
    with pytest.raises(ValueError):
        format_sfcc_time(datetime(2024, 5, 1))
    with pytest.raises(ValueError):
        record_id("orders", {"lastModified": "2024-05-01T00:00:00Z"})
    with pytest.raises(ValueError):
        modified_at("orders", {"orderNo": "1"})


# --------------------------------------------------------------------------------------------------
# Retries, auth and errors


def test_retries_503_and_429_with_a_fake_sleep(sfcc: SfccEmulator) -> None:
    sleeps = Sleeps()
    client = _client(sfcc, sleeps, page_size=10, backoff_base=0.001, backoff_max=0.01)
    _faults(sfcc, [{"status": 503}, {"status": 429, "retry_after": 2}, {"status": 503}])
    result = client.fetch("orders", DAY_START, DAY_END)
    assert len(result.items) == 25
    assert len(sleeps) == 3
    assert sleeps[1] >= 2  # Retry-After wins over the (tiny) jittered backoff
    assert sleeps[0] <= 0.01 and sleeps[2] <= 0.01


def test_gives_up_with_typed_errors(sfcc: SfccEmulator) -> None:
    sleeps = Sleeps()
    client = _client(sfcc, sleeps, max_attempts=3, backoff_base=0.001)
    _faults(sfcc, [{"status": 503}] * 3)
    with pytest.raises(ServerError) as server_error:
        client.fetch("orders", DAY_START, DAY_END)
    assert server_error.value.status == 503 and len(sleeps) == 2
    assert "lastModifiedDateFrom" not in server_error.value.url  # no query string in errors or logs

    _faults(sfcc, [{"status": 429, "retry_after": 7}] * 3)
    with pytest.raises(RateLimitedError) as limited:
        client.fetch("orders", DAY_START, DAY_END)
    assert limited.value.retry_after == 7


def test_permanent_4xx_is_a_client_error_without_retry(sfcc: SfccEmulator) -> None:
    sleeps = Sleeps()
    _faults(sfcc, [{"status": 400, "body": {"type": "x", "title": "Bad Request", "detail": "nope"}}])
    with pytest.raises(ClientError) as error:
        _client(sfcc, sleeps).fetch("orders", DAY_START, DAY_END)
    assert error.value.status == 400 and sleeps == []


def test_wrong_token_is_an_auth_error_at_once(sfcc: SfccEmulator) -> None:
    sleeps = Sleeps()
    client = SfccClient(sfcc.base_url, ORG, "stale-token", sleep=sleeps)
    with pytest.raises(AuthError) as error:
        client.fetch("orders", DAY_START, DAY_END)
    assert error.value.status == 401 and sleeps == []
    assert _state(sfcc)["requests"]["total"] == 1
    with pytest.raises(ClientError) as missing:
        SfccClient(sfcc.base_url, "f_ecom_nope_prd", TOKEN).fetch("orders", DAY_START, DAY_END)
    assert missing.value.status == 404
    for bad in ({"organization_id": ""}, {"access_token": ""}, {"page_size": 201}):
        args = {"api_url": sfcc.base_url, "organization_id": ORG, "access_token": TOKEN, **bad}
        with pytest.raises(ValueError):
            SfccClient(**args)


def test_token_never_reaches_the_log(sfcc: SfccEmulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(sfcc, backoff_base=0.001)
    _faults(sfcc, [{"status": 503}])
    client.fetch("orders", DAY_START, DAY_END)
    assert TOKEN not in caplog.text and TOKEN not in repr(client)
