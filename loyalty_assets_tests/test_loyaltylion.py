"""Contract: ``LoyaltyLionEmulator`` serves the LoyaltyLion Admin API ``/v2`` as loyalty_apis.md §2
and §5 describe, from the CONTRACT.md §2 seed layout ``loyaltylion/{customers,transactions,
referrals}/*.json``, and ``LoyaltyLionClient`` uses it correctly, over real HTTP on 127.0.0.1.

Checked here: ``Bearer pat_…`` auth with scopes (401/403) and ``{"error": {"message", "details"}}``
bodies; ``GET /v2/customers?email=`` is a **substring** match and the client keeps exact matches
only; cursor paging newest first with ``cursor.prev/next`` and a ``Link`` header, the cursor
carrying the original filters; ``since_id`` ascending; add points -> 201 with an empty body, remove
points -> 204 with an empty body, bounds -> 400, unknown customer -> 404, removal beyond the balance
-> 422; ``adjustment`` transactions whose ``customer`` is the current state; activities; 20
requests/s per key -> 429; client pacing with no 429 over 40 calls; a lost response on add points ->
``UncertainOutcomeError`` and the adjustment found by its reason; state export/import.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from loyalty_assets.clients import BalanceWouldBeNegativeError, LoyaltyLionClient, UncertainOutcomeError
from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.loyaltylion import DEFAULT_API_KEY, LoyaltyLionEmulator, decode_cursor

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _customer(cid: int, merchant_id: str, email: str, approved: int = 0) -> dict:
    return {
        "id": cid,
        "merchant_id": merchant_id,
        "email": email,
        "points_approved": approved,
        "points_pending": 0,
        "points_spent": 0,
        "rewards_claimed": 0,
        "properties": {},
        "metadata": {},
        "birthday": None,
        "blocked": False,
        "guest": False,
        "enrolled": True,
        "enrolled_at": "2025-01-01T00:00:00.000Z",
        "referral_id": None,
        "referred_by": None,
        "loyalty_tier_membership": None,
        "insights_segment": None,
        "referral_url": f"https://prz.io/{cid}",
        "linked_merchant_ids": [],
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-02T00:00:00.000Z",
    }


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    root = tmp_path / "loyaltylion"
    files = {
        "customers/a.json": [
            _customer(1001, "5000001", "alice@example.com", 500),
            _customer(1002, "5000002", "malice@example.com", 20),  # contains "alice@example.com"
            _customer(1003, "5000003", "ALICE@example.com", 0),
            _customer(1004, "5000004", "bob@example.com", 0),
        ],
        "transactions/a.json": [
            {
                "id": 9001,
                "customer": {"id": 1001, "merchant_id": "5000001"},
                "points_approved": 500,
                "points_pending": 0,
                "created_at": "2025-01-02T00:00:00.000Z",
                "resource": "activity",
                "activity": {"id": 1, "rule": {"id": 1, "name": "$purchase", "title": "Make a purchase"}},
            }
        ],
        "referrals/a.json": [
            {
                "id": 8001,
                "merchant_id": None,
                "state": "approved",
                "rule": {"id": 2, "name": "$referral"},
                "customer": {"id": 1001, "merchant_id": "5000001"},
                "created_at": "2025-01-03T00:00:00.000Z",
            }
        ],
    }
    for name, records in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records))
    return root


@pytest.fixture
def lion(seed: Path):
    with LoyaltyLionEmulator(seed, clock=EmulatorClock(NOW)) as emulator:
        yield emulator


@pytest.fixture
def http():
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
        yield session


def _url(emu: LoyaltyLionEmulator, path: str) -> str:
    return f"{emu.env()['LOYALTYLION_API_URL']}/v2/{path}"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _client(emu: LoyaltyLionEmulator, **kwargs) -> LoyaltyLionClient:
    env = emu.env()
    kwargs.setdefault("sleep", Sleeps())
    return LoyaltyLionClient(env["LOYALTYLION_API_URL"], env["LOYALTYLION_API_KEY"], **kwargs)


def test_env_and_auth(lion, http):
    assert lion.env() == {"LOYALTYLION_API_URL": lion.base_url, "LOYALTYLION_API_KEY": DEFAULT_API_KEY}
    assert DEFAULT_API_KEY.startswith("pat_")
    anonymous = requests.get(_url(lion, "customers"))
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": {"message": "Authentication is required"}}
    lion.add_api_key("pat_read", ["read_customers"])
    read_only = {"Authorization": "Bearer pat_read"}
    assert requests.get(_url(lion, "customers"), headers=read_only).status_code == 200
    denied = requests.post(_url(lion, "customers/5000001/points"), json={"points": 1}, headers=read_only)
    assert denied.status_code == 403
    assert http.get(_url(lion, "whoami")).json()["kind"] == "api_key"


def test_email_is_a_substring_match_and_the_client_filters_exact(lion, http):
    raw = http.get(_url(lion, "customers"), params={"email": "alice@example.com"}).json()
    assert sorted(c["merchant_id"] for c in raw["customers"]) == ["5000001", "5000002", "5000003"]
    exact = _client(lion, page_limit=1).customers_by_email(" Alice@Example.com")
    assert sorted(c["merchant_id"] for c in exact) == ["5000001", "5000003"]


def test_cursor_paging_newest_first_with_link_header_and_carried_filters(lion, http):
    first = http.get(_url(lion, "customers"), params={"email": "example.com", "limit": 2})
    body = first.json()
    assert [c["id"] for c in body["customers"]] == [1004, 1003]
    assert body["cursor"]["prev"] is None and decode_cursor(body["cursor"]["next"])["lastId"] == 1003
    assert 'rel="next"' in first.headers["Link"]
    # the cursor carries the original filters: a different email on the follow-up is ignored
    second = http.get(
        _url(lion, "customers"), params={"cursor": body["cursor"]["next"], "limit": 2, "email": "bob"}
    ).json()
    assert [c["id"] for c in second["customers"]] == [1002, 1001]
    assert second["cursor"]["next"] is None
    back = http.get(_url(lion, "customers"), params={"cursor": second["cursor"]["prev"], "limit": 2}).json()
    assert [c["id"] for c in back["customers"]] == [1004, 1003]
    ascending = http.get(_url(lion, "customers"), params={"since_id": 1001, "limit": 2}).json()
    assert [c["id"] for c in ascending["customers"]] == [1002, 1003]
    assert http.get(_url(lion, "customers"), params={"limit": 501}).status_code == 400


def test_points_endpoints_status_codes_bodies_and_transactions(lion, http):
    added = http.post(_url(lion, "customers/5000004/points"), json={"points": 150, "reason": "Order #1"})
    assert added.status_code == 201 and added.content == b""
    removed = http.post(_url(lion, "customers/5000004/remove_points"), json={"points": 50, "reason": "Fix"})
    assert removed.status_code == 204 and removed.content == b""
    assert lion.customer_by_merchant_id("5000004")["points_approved"] == 100
    too_many = http.post(_url(lion, "customers/5000004/remove_points"), json={"points": 101})
    assert too_many.status_code == 422 and too_many.json()["error"]["details"]
    for bad in ({"points": 0}, {"points": 1_000_001}, {"points": "5"}, {}):
        response = http.post(_url(lion, "customers/5000004/points"), json=bad)
        assert response.status_code == 400 and "points" in response.json()["error"]["details"]
    assert http.post(_url(lion, "customers/nope/points"), json={"points": 1}).status_code == 404
    txns = http.get(_url(lion, "customers/5000004/transactions")).json()["transactions"]
    assert [t["points_approved"] for t in txns] == [-50, 150]
    assert txns[1]["resource"] == "adjustment" and txns[1]["adjustment"] == {"note": "Order #1"}
    assert txns[1]["customer"]["points_approved"] == 100  # current state, not the state at the time
    seeded = http.get(_url(lion, "transactions"), params={"customer_id": 1001}).json()["transactions"]
    assert [t["id"] for t in seeded] == [9001] and seeded[0]["customer"]["email"] == "alice@example.com"


def test_activities_and_referrals(lion, http):
    created = http.post(
        _url(lion, "activities"),
        json={
            "name": "review",
            "customer_id": "7000001",
            "customer_email": "new@example.com",
            "merchant_id": "a1",
        },
    )
    assert created.status_code == 201 and created.content == b""
    assert lion.customer_by_merchant_id("7000001")["guest"] is True
    assert http.put(_url(lion, "activities/review/a1"), json={"state": "approved"}).status_code == 204
    assert http.put(_url(lion, "activities/review/zzz"), json={"state": "void"}).status_code == 404
    activities = _client(lion).activities()
    assert [a["id"] for a in activities][-1] == 8001 and activities[0]["state"] == "approved"


def test_429_beyond_twenty_requests_per_second(lion, http):
    statuses = [http.get(_url(lion, "whoami")).status_code for _ in range(25)]
    assert statuses[:20] == [200] * 20 and 429 in statuses
    limited = http.get(_url(lion, "whoami"))
    if limited.status_code == 429:
        assert limited.headers["Retry-After"] == "1" and "error" in limited.json()


def test_client_paces_forty_calls_without_429_and_handles_lost_responses(lion):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    client = _client(lion, sleep=sleep)
    for index in range(40):
        if index % 2:
            client.transactions("5000004")
        else:
            client.add_points("5000004", 1, f"r{index}")
    assert "429" not in lion.request_summary()["by_status"]
    assert sum(lion.limiter.refused.values()) == 0 and max(lion.limiter.peak_arrivals.values()) <= 20
    assert client.pacer.waits >= 35 and len(slept) >= 35  # pacing happened
    assert lion.customer_by_merchant_id("5000004")["points_approved"] == 20

    lion.faults.set_script([{"drop": True, "method": "POST", "path": "/points$"}])
    with pytest.raises(UncertainOutcomeError) as caught:
        client.add_points("5000004", 7, "outbox:9")
    assert caught.value.context["reason"] == "outbox:9"
    found = client.find_adjustment("5000004", "outbox:9")
    assert found is not None and found["points_approved"] == 7
    with pytest.raises(BalanceWouldBeNegativeError):
        client.remove_points("5000004", 1000, "too much")
    with pytest.raises(ValueError):
        client.add_points("5000004", 0, "zero")
    every = client.transactions(since_id=0)
    assert [t["id"] for t in every] == sorted(t["id"] for t in every) and len(every) == 22


def test_state_round_trip(seed: Path, lion, http):
    assert http.post(_url(lion, "customers/5000004/points"), json={"points": 33, "reason": "x"}).ok
    added = requests.post(
        f"{lion.base_url}/_sandbox/loyaltylion/customers",
        json={"customers": [{"merchant_id": "m-9", "email": "m9@example.com"}]},
    )
    assert added.status_code == 201
    state = json.loads(json.dumps(lion.export_state(), default=str))
    with LoyaltyLionEmulator(seed, clock=EmulatorClock(NOW)) as restarted:
        restarted.import_state(state)
        assert restarted.customer_by_merchant_id("5000004")["points_approved"] == 33
        assert restarted.customer_by_merchant_id("m-9")["email"] == "m9@example.com"
        assert [t["adjustment"]["note"] for t in restarted.transactions("5000004")] == ["x"]


def test_a_batch_above_loyaltylions_per_call_limit_is_blocked_with_the_reason_not_a_crash(lion):
    """RULES.md §9 (nothing is dropped, a refusal leaves the batch blocked with the reason): a member's
    net above LoyaltyLion's 1,000,000 points a call cannot be sent; the push records why and goes on
    with the next batch (it raised, and every run stopped there)."""
    from loyalty_assets.defs.sync.loyalty_platforms import LoyaltyLionTarget, push_one
    from loyalty_assets.lib.outbox import Batch

    target = LoyaltyLionTarget(_client(lion))
    big, small = (Batch(f"b{n}", f"M{n}", points, 1, "pending", 0, None, "5000004") for n, points in ((1, 1_000_001), (2, 5)))
    before = lion.customer_by_merchant_id("5000004")["points_approved"]
    outcomes = [push_one(target, b) for b in (big, small)]
    assert [(o.status, o.http_status) for o in outcomes] == [("blocked", None), ("sent", 201)]
    assert "1,000,000" in outcomes[0].message
    assert lion.customer_by_merchant_id("5000004")["points_approved"] == before + 5
