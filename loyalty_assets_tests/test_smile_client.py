"""Contract: ``SmileClient`` pushes points to Smile.io and reads it back the way RULES.md §9 and
loyalty_apis.md §1.6, §1.11-1.14 and §5 require, against ``SmileEmulator`` over real HTTP on
127.0.0.1.

It paces itself below Smile's 10 requests/s per token (token bucket, every attempt included) so a
burst of calls sees no 429; retries reads on 429/5xx honouring ``Retry-After``; never blindly
resends a points transaction: a lost response, a timeout or a 5xx after sending raises
``UncertainOutcomeError`` (the transaction is then found by ``find_transaction_by_note``), only a
429 or a connection never established is retried; a 422 raises ``BalanceWouldBeNegativeError``
with Smile's message; email lookups read every page and keep exact matches only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from loyalty_assets.clients import (
    ApiConnectionError,
    BalanceWouldBeNegativeError,
    Pacer,
    SmileClient,
    UncertainOutcomeError,
    choose_customer,
)
from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.smile import SmileEmulator

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Sleeps(list):
    """Records requested sleeps instead of sleeping (for retry tests)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class RealSleeps(list):
    """Records and really sleeps (for the pacing test against the real rate limit)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def smile():
    emulator = SmileEmulator(None, clock=EmulatorClock(NOW))
    emulator.add_customers(
        [
            {"id": 11, "email": "ann@example.com", "points_balance": 100, "state": "candidate"},
            {"id": 12, "email": "Ann@Example.com ", "points_balance": 0},
            {"id": 13, "email": "bob@example.com", "points_balance": 10},
        ]
        + [{"email": "ann@example.com", "state": "disabled"} for _ in range(3)]
    )
    with emulator:
        yield emulator


def _client(emu: SmileEmulator, **kwargs) -> SmileClient:
    env = emu.env()
    kwargs.setdefault("sleep", Sleeps())
    return SmileClient(env["SMILE_API_URL"], env["SMILE_API_KEY"], **kwargs)


def test_customers_by_email_reads_every_page_and_keeps_exact_matches(smile):
    client = _client(smile, page_limit=2)
    found = client.customers_by_email("  ANN@example.com")
    assert sorted(c["id"] for c in found) == sorted([11, 12] + [c["id"] for c in smile.customers()[:3]])
    assert choose_customer(found)["id"] == 12  # a member beats a candidate; disabled ones never chosen
    assert client.customers_by_email("nobody@example.com") == []
    assert client.customer(13)["points_balance"] == 10
    assert "vip_status" in client.customer(13, include_vip_status=True)
    assert client.customer(999) is None
    assert client.pacer.acquired >= 5  # three pages for the email, then three single gets
    assert "sandbox-smile-key" not in repr(client)


def test_create_points_transaction_and_422_when_balance_would_go_negative(smile):
    client = _client(smile)
    txn = client.create_points_transaction(13, 5, description="Thanks", internal_note="outbox:1")
    assert txn["points_change"] == 5 and txn["internal_note"] == "outbox:1"
    with pytest.raises(BalanceWouldBeNegativeError) as caught:
        client.create_points_transaction(13, -16, internal_note="outbox:2")
    assert caught.value.status == 422 and "negative" in caught.value.message
    assert caught.value.request_id
    assert smile.balance(13) == 15
    assert client.find_transaction_by_note(13, "outbox:2") is None
    assert [t["id"] for t in client.points_transactions(customer_id=13)] == [txn["id"]]
    assert client.points_transactions(updated_at_min=datetime(2030, 1, 1, tzinfo=UTC)) == []


def test_lost_response_raises_uncertain_and_the_transaction_is_found_by_note(smile):
    client = _client(smile)
    smile.faults.set_script([{"drop": True, "method": "POST", "path": "/v1/points_transactions$"}])
    with pytest.raises(UncertainOutcomeError) as caught:
        client.create_points_transaction(11, 7, internal_note="batch-42")
    assert caught.value.status is None
    assert caught.value.context == {"customer_id": 11, "points_change": 7, "internal_note": "batch-42"}
    # the write was applied exactly once and was not retried
    assert [t["internal_note"] for t in smile.transactions(11)] == ["batch-42"]
    found = client.find_transaction_by_note(11, "batch-42")
    assert found is not None and found["points_change"] == 7
    assert smile.balance(11) == 107


def test_5xx_and_timeout_on_post_are_uncertain_not_retried(smile):
    client = _client(smile, timeout=0.3)
    smile.faults.set_script([{"status": 503, "retry_after": 0, "method": "POST"}])
    with pytest.raises(UncertainOutcomeError) as caught:
        client.create_points_transaction(13, 1, internal_note="n-503")
    assert caught.value.status == 503
    assert smile.transactions(13) == []  # the injected 503 never reached the handler, and no resend
    smile.faults.set_script([{"delay": 0.8, "method": "POST"}])
    with pytest.raises(UncertainOutcomeError):
        client.create_points_transaction(13, 2, internal_note="n-slow")
    deadline = time.monotonic() + 3
    while not smile.transactions(13) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t["internal_note"] for t in smile.transactions(13)] == ["n-slow"]  # applied after the timeout
    assert client.find_transaction_by_note(13, "n-slow")["points_change"] == 2


def test_429_on_post_is_retried_honouring_retry_after(smile):
    sleeps = Sleeps()
    client = _client(smile, sleep=sleeps)
    smile.faults.set_script([{"status": 429, "retry_after": 2, "method": "POST"}])
    txn = client.create_points_transaction(13, 3, internal_note="after-429")
    assert txn["internal_note"] == "after-429"
    assert any(s >= 2 for s in sleeps)
    assert [t["internal_note"] for t in smile.transactions(13)] == ["after-429"]


def test_reads_retry_5xx_and_429(smile):
    sleeps = Sleeps()
    client = _client(smile, sleep=sleeps)
    smile.faults.set_script([{"status": 500}, {"status": 429, "retry_after": 1}, {"drop": True}])
    assert [t["name"] for t in client.vip_tiers()] == ["Bronze", "Silver", "Gold"]
    assert any(s >= 1 for s in sleeps)


def test_connection_never_established_is_not_uncertain():
    emulator = SmileEmulator(None).start()
    url = emulator.env()["SMILE_API_URL"]
    emulator.stop()  # nothing listens on that port any more
    sleeps = Sleeps()
    client = SmileClient(url, "sandbox-smile-key", max_attempts=3, sleep=sleeps)
    with pytest.raises(ApiConnectionError) as caught:
        client.create_points_transaction(1, 1, internal_note="x")
    assert not isinstance(caught.value, UncertainOutcomeError)
    assert len([s for s in sleeps if s > 0.2]) <= 3  # retried with backoff, no uncertainty raised


def test_pacing_keeps_forty_calls_under_the_rate_limit(smile):
    sleeps = RealSleeps()
    client = _client(smile, sleep=sleeps)
    started = time.monotonic()
    for index in range(40):
        if index % 2:
            client.customer(13)
        else:
            client.create_points_transaction(13, 1, internal_note=f"p{index}")
    elapsed = time.monotonic() - started
    statuses = smile.request_summary()["by_status"]
    assert "429" not in statuses and statuses == {"200": 20, "201": 20}
    assert sum(smile.limiter.refused.values()) == 0
    assert max(smile.limiter.peak_arrivals.values()) <= 10
    # pacing happened: the bucket made the client wait, and 40 calls cannot fit in under ~4 s
    assert client.pacer.waits >= 35 and len(sleeps) >= 35
    assert elapsed >= 39 / 9.5 - 0.05
    # (rate achieved, informational only: 40 / elapsed is about 9.5 requests/s)


def test_pacer_token_bucket_with_fake_clock():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(9.5, clock=lambda: now[0], sleep=sleep)
    times = []
    for _ in range(20):
        pacer.acquire()
        times.append(now[0])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(abs(g - 1 / 9.5) < 1e-9 for g in gaps)
    # no sliding one-second window ever holds more than 10 requests
    assert all(sum(1 for t in times if start <= t < start + 1.0) <= 10 for start in times)
    bursty = Pacer(10, burst=3, clock=lambda: now[0], sleep=sleep)
    before = len(slept)
    for _ in range(3):
        bursty.acquire()
    assert len(slept) == before  # the burst is free
    bursty.acquire()
    assert len(slept) == before + 1


def test_redemptions_tiers_and_purchase(smile):
    client = _client(smile)
    product = next(p for p in client.points_products() if p["exchange_type"] == "variable")
    purchase = client.purchase_points_product(product["id"], 11, points_to_spend=100)
    assert purchase["points_spent"] == 100 and smile.balance(11) == 0
    codes = [f["code"] for f in client.reward_fulfillments()]
    assert codes == [purchase["reward_fulfillment"]["code"]]
    with pytest.raises(BalanceWouldBeNegativeError):
        client.purchase_points_product(product["id"], 11, points_to_spend=100)
    assert client.referrals() == []
    activity = client.create_activity("activity_review", customer_email="bob@example.com", distinct_id="r-1")
    assert activity["customer_id"] == 13
