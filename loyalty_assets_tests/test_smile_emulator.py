"""Contract: ``SmileEmulator`` serves Smile.io ``/v1`` the way loyalty_apis.md §1 and §5 describe,
over real HTTP on 127.0.0.1, from the CONTRACT.md §2 seed layout ``smile/{customers,
points_transactions,reward_fulfillments,referrals}/*.json``.

Checked here: wrapped single resources and ``{plural: [...], metadata: {next_cursor,
previous_cursor}}`` lists, newest first, ``limit`` <= 250; Bearer keys with scopes (401 / 403, write
includes read); the ``{"error": {"message", "request_id"}}`` body; 400 for a POST without JSON
``Content-Type``; ``email`` filter that is not unique; ``include=vip_status``; ``updated_at_min``;
**422 when a points transaction would make the balance negative**; purchases that deduct points
and issue a reward fulfillment; 10 requests/s per token -> 429 with ``Retry-After``; replay-clock
visibility of seeded records; ``/_sandbox/smile/...`` inspection; ``export_state``/``import_state``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.smile import SmileEmulator, decode_cursor

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = "sandbox-smile-key"


def _customer(cid: int, email: str, balance: int = 0, **extra: Any) -> dict[str, Any]:
    record = {
        "id": cid,
        "first_name": "Jane",
        "last_name": "Doe",
        "email": email,
        "state": "member",
        "date_of_birth": "1004-05-27",
        "points_balance": balance,
        "referral_url": f"http://i.refs.cc/{cid}",
        "vip_tier_id": 1002,
        "created_at": "2025-01-01T10:00:00.000Z",
        "updated_at": "2025-01-02T10:00:00.000Z",
    }
    record.update(extra)
    return record


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    root = tmp_path / "smile"
    files = {
        "customers/a.json": [
            _customer(101, "jane@doe.com", 300),
            _customer(102, "Jane@Doe.com", 0),  # the same email again: Smile emails are not unique
            _customer(103, "bob@example.com", 50, updated_at="2025-02-20T00:00:00.000Z"),
            # appears only once the replay clock passes its creation
            _customer(
                104,
                "late@example.com",
                0,
                created_at="2025-06-01T00:00:00.000Z",
                updated_at="2025-06-01T00:00:00.000Z",
            ),
        ],
        "points_transactions/a.json": [
            {
                "id": 501,
                "customer_id": 101,
                "points_change": 300,
                "description": "Welcome",
                "internal_note": None,
                "created_at": "2025-01-02T10:00:00.000Z",
                "updated_at": "2025-01-02T10:00:00.000Z",
            }
        ],
        "reward_fulfillments/a.json": [
            {
                "id": 601,
                "name": "$5 off",
                "code": "5off-e26d02e39149",
                "customer_id": 103,
                "fulfillment_status": "issued",
                "usage_status": "used",
                "created_at": "2025-01-05T00:00:00.000Z",
                "updated_at": "2025-01-06T00:00:00.000Z",
            }
        ],
        "referrals/a.json": [
            {
                "id": 701,
                "receiver_customer_email": "friend@example.com",
                "sender_customer": {"id": 101},
                "created_at": "2025-01-07T00:00:00.000Z",
                "updated_at": "2025-01-07T00:00:00.000Z",
            }
        ],
    }
    for name, records in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records))
    return root


@pytest.fixture
def smile(seed: Path):
    with SmileEmulator(seed, clock=EmulatorClock(NOW)) as emulator:
        yield emulator


@pytest.fixture
def http():
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        yield session


def _url(emu: SmileEmulator, path: str) -> str:
    return f"{emu.env()['SMILE_API_URL']}/{path}"


def _post_txn(http: requests.Session, emu: SmileEmulator, cid: int, change: int, note: str = "n"):
    body = {"points_transaction": {"customer_id": cid, "points_change": change, "internal_note": note}}
    return http.post(_url(emu, "points_transactions"), json=body)


def test_env_names_the_contract_variables(smile: SmileEmulator):
    env = smile.env()
    assert env == {"SMILE_API_URL": f"{smile.base_url}/v1", "SMILE_API_KEY": KEY}


def test_customer_shapes_and_vip_status_only_when_included(smile, http):
    body = http.get(_url(smile, "customers/101")).json()
    customer = body["customer"]
    assert customer["id"] == 101 and customer["points_balance"] == 300
    assert customer["date_of_birth"] == "1004-05-27"
    assert "vip_status" not in customer
    with_status = http.get(_url(smile, "customers/101"), params={"include": "vip_status"}).json()["customer"]
    assert with_status["vip_status"]["vip_tier_id"] == 1002
    assert with_status["vip_status"]["next_vip_tier_id"] == 1003
    listed = http.get(_url(smile, "customers"), params={"include": "vip_status"}).json()
    assert all("vip_status" in c for c in listed["customers"])
    missing = http.get(_url(smile, "customers/999"))
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "request_id"}


def test_email_filter_is_exact_case_insensitive_and_not_unique(smile, http):
    body = http.get(_url(smile, "customers"), params={"email": "JANE@doe.com"}).json()
    assert [c["id"] for c in body["customers"]] == [102, 101]
    assert body["metadata"] == {"next_cursor": None, "previous_cursor": None}


def test_cursor_paging_newest_first_and_back(smile, http):
    smile.add_customers([{"email": f"p{i}@example.com"} for i in range(5)])
    ids_all = [c["id"] for c in http.get(_url(smile, "customers")).json()["customers"]]
    assert ids_all == sorted(ids_all, reverse=True) and len(ids_all) == 8  # 104 is not visible yet
    seen, cursor, pages = [], None, []
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = http.get(_url(smile, "customers"), params=params).json()
        pages.append(body)
        seen += [c["id"] for c in body["customers"]]
        cursor = body["metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids_all and len(pages) == 3
    assert pages[0]["metadata"]["previous_cursor"] is None
    assert decode_cursor(pages[0]["metadata"]["next_cursor"]) == (ids_all[2], "next")
    back = http.get(
        _url(smile, "customers"), params={"limit": 3, "cursor": pages[1]["metadata"]["previous_cursor"]}
    )
    assert [c["id"] for c in back.json()["customers"]] == ids_all[:3]
    assert http.get(_url(smile, "customers"), params={"limit": 251}).status_code == 400
    assert http.get(_url(smile, "customers"), params={"cursor": "garbage!"}).status_code == 400


def test_updated_at_min_and_replay_clock_visibility(smile, http):
    body = http.get(_url(smile, "customers"), params={"updated_at_min": "2025-02-01T00:00:00Z"}).json()
    assert [c["id"] for c in body["customers"]] == [103]
    assert http.get(_url(smile, "customers/104")).status_code == 404
    smile.clock.set(datetime(2025, 7, 1, tzinfo=UTC))
    assert http.get(_url(smile, "customers/104")).status_code == 200


def test_auth_scopes_and_content_type(smile, http):
    anonymous = requests.get(_url(smile, "customers"))
    assert anonymous.status_code == 401 and "request_id" in anonymous.json()["error"]
    assert requests.get(_url(smile, "customers"), headers={"Authorization": "Bearer nope"}).status_code == 401
    smile.add_api_key("read-only", ["customer:read"])
    smile.add_api_key("writer", ["points_transaction:write"])
    ro = {"Authorization": "Bearer read-only"}
    assert requests.get(_url(smile, "customers"), headers=ro).status_code == 200
    denied = requests.post(
        _url(smile, "points_transactions"),
        json={"points_transaction": {"customer_id": 101, "points_change": 1}},
        headers=ro,
    )
    assert denied.status_code == 403 and "points_transaction:write" in denied.json()["error"]["message"]
    # write includes read
    rw = {"Authorization": "Bearer writer"}
    assert requests.get(_url(smile, "points_transactions"), headers=rw).status_code == 200
    assert requests.get(_url(smile, "customers"), headers=rw).status_code == 403
    no_ctype = http.post(_url(smile, "points_transactions"), data=b'{"points_transaction": {}}')
    assert no_ctype.status_code == 400


def test_points_transaction_created_wrapped_and_422_on_negative_balance(smile, http):
    created = _post_txn(http, smile, 103, 25, note="batch-1")
    assert created.status_code == 201
    txn = created.json()["points_transaction"]
    assert set(txn) == {
        "id",
        "customer_id",
        "points_change",
        "description",
        "internal_note",
        "created_at",
        "updated_at",
    }
    assert txn["internal_note"] == "batch-1" and txn["created_at"].endswith("Z")
    assert smile.balance(103) == 75
    refused = _post_txn(http, smile, 103, -76, note="batch-2")
    assert refused.status_code == 422
    assert "negative" in refused.json()["error"]["message"]
    assert smile.balance(103) == 75
    assert _post_txn(http, smile, 103, -75).status_code == 201 and smile.balance(103) == 0
    assert _post_txn(http, smile, 999, 5).status_code == 404
    unwrapped = http.post(_url(smile, "points_transactions"), json={"customer_id": 103, "points_change": 1})
    assert unwrapped.status_code == 400
    listed = http.get(_url(smile, "points_transactions"), params={"customer_id": 103}).json()
    assert [t["points_change"] for t in listed["points_transactions"]] == [-75, 25]
    customer = http.get(_url(smile, "customers/103")).json()["customer"]
    assert customer["points_balance"] == 0 and customer["updated_at"] == smile_now(smile)


def smile_now(emu: SmileEmulator) -> str:
    now = emu.clock.now()
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def test_purchase_deducts_points_and_issues_a_fulfillment(smile, http):
    products = http.get(_url(smile, "points_products")).json()
    assert "metadata" not in products and {p["exchange_type"] for p in products["points_products"]} == {
        "fixed",
        "variable",
    }
    fixed = next(p for p in products["points_products"] if p["exchange_type"] == "fixed")
    assert fixed["points_price"] == 500 and _post_txn(http, smile, 101, 300).status_code == 201
    bought = http.post(_url(smile, f"points_products/{fixed['id']}/purchase"), json={"customer_id": 101})
    assert bought.status_code == 201
    purchase = bought.json()["points_purchase"]
    assert purchase["points_spent"] == fixed["points_price"] and purchase["reward_fulfillment"]["code"]
    assert smile.balance(101) == 600 - fixed["points_price"]
    poor = http.post(_url(smile, f"points_products/{fixed['id']}/purchase"), json={"customer_id": 102})
    assert poor.status_code == 422
    fulfillments = http.get(_url(smile, "reward_fulfillments"), params={"customer_id": 101}).json()
    assert [f["id"] for f in fulfillments["reward_fulfillments"]] == [purchase["reward_fulfillment"]["id"]]
    spent = http.get(_url(smile, "points_transactions"), params={"customer_id": 101}).json()
    assert spent["points_transactions"][0]["points_change"] == -fixed["points_price"]


def test_tiers_activities_referrals_and_seeded_lists(smile, http):
    tiers = http.get(_url(smile, "vip_tiers")).json()["vip_tiers"]
    assert [t["name"] for t in tiers] == ["Bronze", "Silver", "Gold"]
    activity = http.post(
        _url(smile, "activities"),
        json={"activity": {"token": "activity_x", "customer_id": 101, "distinct_id": "o-1"}},
    )
    assert activity.status_code == 201 and activity.json()["activity"]["distinct_id"] == "o-1"
    both = http.post(
        _url(smile, "activities"),
        json={"activity": {"token": "t", "customer_id": 101, "customer_email": "jane@doe.com"}},
    )
    assert both.status_code == 400
    referrals = http.get(_url(smile, "referrals")).json()
    assert [r["id"] for r in referrals["referrals"]] == [701] and "metadata" in referrals
    used = http.get(_url(smile, "reward_fulfillments"), params={"usage_status": "used"}).json()
    assert [f["code"] for f in used["reward_fulfillments"]] == ["5off-e26d02e39149"]


def test_429_beyond_ten_requests_per_second_per_token(smile, http):
    statuses = []
    for _ in range(15):
        response = http.get(_url(smile, "vip_tiers"))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert "request_id" in response.json()["error"]
    assert statuses[:10] == [200] * 10
    assert 429 in statuses
    # another token has its own allowance
    smile.add_api_key("second-key")
    assert requests.get(_url(smile, "vip_tiers"), headers={"Authorization": "Bearer second-key"}).ok
    rate = requests.get(f"{smile.base_url}/_sandbox/smile/rate").json()
    assert max(rate["peak_accepted_per_window"].values()) == 10
    assert KEY not in json.dumps(rate)  # tokens are masked


def test_control_surface_and_state_round_trip(seed: Path, smile, http):
    added = requests.post(
        f"{smile.base_url}/_sandbox/smile/customers", json={"customers": [{"email": "new@example.com"}]}
    )
    assert added.status_code == 201
    new_id = added.json()["customers"][0]["id"]
    assert _post_txn(http, smile, new_id, 40, note="outbox-7").status_code == 201
    every = requests.get(f"{smile.base_url}/_sandbox/smile/points_transactions").json()["points_transactions"]
    assert {t["internal_note"] for t in every} >= {"outbox-7", None}
    state = json.loads(json.dumps(smile.export_state(), default=str))
    with SmileEmulator(seed, clock=EmulatorClock(NOW)) as restarted:
        restarted.import_state(state)
        assert restarted.balance(new_id) == 40
        assert [t["internal_note"] for t in restarted.transactions(new_id)] == ["outbox-7"]
        fresh = restarted.add_customers([{"email": "next@example.com"}])[0]
        assert fresh["id"] > max(t["id"] for t in every)
    summary = requests.get(f"{smile.base_url}/_sandbox/state").json()
    assert summary["records"]["points_transactions_created"] == 1
