"""Contract: the commercetools sandbox emulator behaves like the commercetools auth + HTTP API
(commerce_apis.md §3, §8.2; CONTRACT.md §2, §4).

Over real HTTP on 127.0.0.1 it must serve the vendor's real payloads unchanged (centPrecision money
exact), issue OAuth2 client-credentials tokens (HTTP Basic, 48-hour ``expires_in``, 401
``invalid_client``/``invalid_token``), parse Query Predicates (every comparison operator, ``and``/
``or``/``not``, parentheses, nested fields, ``in``, ``:var`` placeholders; 400 ``InvalidInput`` for
a predicate it cannot parse), sort by repeated ``sort``, cap ``limit`` at 500 and ``offset`` at
10 000 with 400 beyond, honour ``withTotal``, answer as of ``min(lastModifiedAt bound, clock)`` over
record versions, carry the replay clock in ``Date``, scope by project key (404 for unknown ones) and
by ``store.key``, accept records at runtime and persist them through ``export_state``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.sandbox.commercetools import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    INVALID_CLIENT,
    CommercetoolsEmulator,
)
from loyalty_assets.sandbox.httpserver import EmulatorClock

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "commercetools"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PROJECT = "shop-eu"


def _real(name: str) -> dict[str, Any]:
    path = REAL_FIXTURES / name
    if not path.is_file():
        pytest.fail(
            f"real commercetools fixture {path} is missing: the shared/ folder must sit beside the repo"
        )
    return simplejson.loads(path.read_text(), use_decimal=True)


def _write_seed(root: Path, project: str, entity: str, records: list[Any], name: str = "part-1.json") -> None:
    folder = root / "commercetools" / project / entity
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(simplejson.dumps(records, use_decimal=True))


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _order(n: int, modified: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    record = {
        "type": "Order",
        "id": _uuid(n),
        "version": version,
        "createdAt": "2024-05-01T08:00:00.000Z",
        "lastModifiedAt": modified,
        "orderNumber": f"ORD-{n}",
        "customerEmail": f"shopper{n}@example.com",
        "orderState": "Open",
        "paymentState": "Pending",
        "totalPrice": {
            "type": "centPrecision",
            "currencyCode": "EUR",
            "centAmount": 1000 * n,
            "fractionDigits": 2,
        },
    }
    record.update(extra)
    return record


def _token(emulator: CommercetoolsEmulator, **data: str) -> str:
    response = requests.post(
        emulator.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials", **data},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _get(
    emulator: CommercetoolsEmulator,
    path: str,
    params: list[tuple[str, str]] | None = None,
    token: str | None = None,
) -> requests.Response:
    token = token or _token(emulator)
    return requests.get(
        emulator.base_url + path, params=params or [], headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def _ids(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(r["id"].rsplit("-", 1)[1]) for r in response.json()["results"]]


@pytest.fixture
def ct(tmp_path: Path):
    # Ten orders: 1-4 share 10:00:00.000, the rest one minute apart; two stores; one in another project.
    orders = [
        _order(n, "2024-05-01T10:00:00.000Z", store={"typeId": "store", "key": "eu"}) for n in (1, 2, 3, 4)
    ]
    orders += [
        _order(n, f"2024-05-01T10:{n:02d}:00.000Z", store={"typeId": "store", "key": "uk"})
        for n in range(5, 11)
    ]
    orders[6]["customerId"] = "c-7"
    _write_seed(tmp_path, PROJECT, "orders", orders)
    _write_seed(tmp_path, "shop-jp", "orders", [_order(99, "2024-05-01T09:00:00.000Z")])
    with CommercetoolsEmulator(tmp_path / "commercetools", clock=EmulatorClock(NOW)) as emulator:
        yield emulator


# --------------------------------------------------------------------------------------------------
# Real payloads, env


def test_real_fixtures_are_served_unchanged(tmp_path: Path) -> None:
    orders, payments = _real("orders_query.json"), _real("payments_query.json")
    _write_seed(tmp_path, "real-project", "orders", orders["results"])
    _write_seed(tmp_path, "real-project", "payments", payments["results"])

    with CommercetoolsEmulator(tmp_path / "commercetools") as emulator:
        for entity, page in (("orders", orders), ("payments", payments)):
            response = _get(emulator, f"/real-project/{entity}")
            assert response.status_code == 200
            body = simplejson.loads(response.text, use_decimal=True)
            # The PagedQueryResponse envelope, key for key, as the vendor's example shows it.
            assert list(body) == ["limit", "offset", "count", "total", "results"]
            assert body == page
        text = _get(emulator, "/real-project/orders").text
        assert '"centAmount": 1000' in text and '"fractionDigits": 2' in text
        # Decimal-exact non-money numbers (tax rate 0.1 must not become 0.1000000000000000055...).
        order = simplejson.loads(text, use_decimal=True)["results"][0]
        assert order["lineItems"][0]["taxRate"]["amount"] == Decimal("0.1")
        one = _get(emulator, f"/real-project/payments/{payments['results'][0]['id']}")
        assert simplejson.loads(one.text, use_decimal=True) == payments["results"][0]
        assert _get(emulator, "/real-project/payments/nope").status_code == 404
        assert _get(emulator, "/real-project/customers").json()["results"] == []


def test_env_names_and_projects(ct: CommercetoolsEmulator) -> None:
    env = ct.env()
    assert env == {
        "COMMERCETOOLS_API_URL": ct.base_url,
        "COMMERCETOOLS_AUTH_URL": ct.base_url,
        "COMMERCETOOLS_PROJECT_KEY": "shop-eu",  # the first project key (sorted seed directories)
        "COMMERCETOOLS_CLIENT_ID": DEFAULT_CLIENT_ID,
        "COMMERCETOOLS_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }
    assert ct.project_keys == ["shop-eu", "shop-jp"]
    assert _ids(_get(ct, "/shop-jp/orders")) == [99]
    missing = _get(ct, "/nope/orders")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "ResourceNotFound"
    assert CommercetoolsEmulator(None).project_keys == ["sandbox-project"]


def test_seed_file_that_is_not_an_array_fails_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "commercetools" / "p" / "orders"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text(json.dumps({"results": []}))
    with pytest.raises(ValueError, match="JSON array"):
        CommercetoolsEmulator(tmp_path / "commercetools")


# --------------------------------------------------------------------------------------------------
# OAuth


def test_client_credentials_token_flow(ct: CommercetoolsEmulator) -> None:
    response = requests.post(
        ct.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 172800
    assert body["scope"] == "manage_project:shop-eu manage_project:shop-jp"

    scoped = requests.post(
        ct.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials", "scope": "view_orders:shop-eu"},
        timeout=5,
    ).json()
    assert scoped["scope"] == "view_orders:shop-eu"
    assert _get(ct, "/shop-eu/orders", token=scoped["access_token"]).status_code == 200
    denied = _get(ct, "/shop-eu/payments", token=scoped["access_token"])
    assert denied.status_code == 403 and denied.json()["errors"][0]["code"] == "insufficient_scope"

    wrong = requests.post(
        ct.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, "wrong"),
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    assert wrong.status_code == 401
    assert wrong.json()["statusCode"] == 401
    assert wrong.json()["message"] == INVALID_CLIENT
    assert wrong.json()["errors"][0]["code"] == "invalid_client"
    assert wrong.json()["error"] == "invalid_client"
    no_basic = requests.post(
        ct.base_url + "/oauth/token", data={"grant_type": "client_credentials"}, timeout=5
    )
    assert no_basic.status_code == 401
    bad_grant = requests.post(
        ct.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "password"},
        timeout=5,
    )
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "unsupported_grant_type"
    bad_scope = requests.post(
        ct.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials", "scope": "view_orders:other-project"},
        timeout=5,
    )
    assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"


def test_bearer_token_required_and_expires_after_48_hours(ct: CommercetoolsEmulator) -> None:
    token = _token(ct)
    missing = requests.get(ct.base_url + "/shop-eu/orders", timeout=5)
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["code"] == "invalid_token"
    assert _get(ct, "/shop-eu/orders", token="forged").status_code == 401
    assert _get(ct, "/shop-eu/orders", token=token).status_code == 200
    ct.clock.advance(172800 - 1)
    assert _get(ct, "/shop-eu/orders", token=token).status_code == 200
    ct.clock.advance(1)
    expired = _get(ct, "/shop-eu/orders", token=token)
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
    fresh = _token(ct)
    assert (
        requests.post(ct.base_url + "/_sandbox/commercetools/revoke-tokens", timeout=5).json()["revoked"] == 2
    )
    assert _get(ct, "/shop-eu/orders", token=fresh).status_code == 401


# --------------------------------------------------------------------------------------------------
# Query predicates


def _where(ct: CommercetoolsEmulator, *predicates: str, **variables: str | list[str]) -> list[int]:
    params: list[tuple[str, str]] = [("where", p) for p in predicates]
    for name, value in variables.items():
        for item in value if isinstance(value, list) else [value]:
            params.append((f"var.{name}", item))
    params += [("sort", "id asc"), ("limit", "500")]
    return _ids(_get(ct, "/shop-eu/orders", params))


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ('lastModifiedAt = "2024-05-01T10:00:00.000Z"', [1, 2, 3, 4]),
        ('lastModifiedAt != "2024-05-01T10:00:00.000Z"', [5, 6, 7, 8, 9, 10]),
        ('lastModifiedAt <> "2024-05-01T10:00:00.000Z"', [5, 6, 7, 8, 9, 10]),
        ('lastModifiedAt > "2024-05-01T10:08:00.000Z"', [9, 10]),
        ('lastModifiedAt >= "2024-05-01T10:08:00.000Z"', [8, 9, 10]),
        ('lastModifiedAt < "2024-05-01T10:06:00.000Z"', [1, 2, 3, 4, 5]),
        ('lastModifiedAt <= "2024-05-01T10:06:00.000Z"', [1, 2, 3, 4, 5, 6]),
        # Instants, not strings: the same moment in another spelling.
        ('lastModifiedAt >= "2024-05-01T12:08:00+02:00"', [8, 9, 10]),
        (f'id > "{_uuid(7)}"', [8, 9, 10]),
        (f'id in ("{_uuid(2)}", "{_uuid(9)}")', [2, 9]),
        (f'id not in ("{_uuid(2)}", "{_uuid(9)}")', [1, 3, 4, 5, 6, 7, 8, 10]),
        ('orderNumber = "ORD-3" or orderNumber = "ORD-6"', [3, 6]),
        (
            '(orderNumber = "ORD-3" or orderNumber = "ORD-6") and lastModifiedAt > "2024-05-01T10:00:00.000Z"',
            [6],
        ),
        (
            'orderNumber = "ORD-3" or (orderNumber = "ORD-6" and lastModifiedAt > "2024-05-01T11:00:00.000Z")',
            [3],
        ),
        ('not(lastModifiedAt = "2024-05-01T10:00:00.000Z")', [5, 6, 7, 8, 9, 10]),
        ('store(key = "eu")', [1, 2, 3, 4]),
        ("totalPrice(centAmount >= 9000)", [9, 10]),
        ("customerId is defined", [7]),
        ("customerId is not defined", [1, 2, 3, 4, 5, 6, 8, 9, 10]),
        ('customerEmail = "shopper5@example.com"', [5]),
    ],
)
def test_each_predicate_operator(ct: CommercetoolsEmulator, predicate: str, expected: list[int]) -> None:
    assert _where(ct, predicate) == expected


def test_placeholders_and_and_of_several_where_params(ct: CommercetoolsEmulator) -> None:
    assert _where(
        ct,
        "lastModifiedAt >= :from and lastModifiedAt < :to",
        **{"from": "2024-05-01T10:05:00.000Z", "to": "2024-05-01T10:08:00.000Z"},
    ) == [5, 6, 7]
    # Several where parameters are AND-ed; a repeated var is a list for `in`.
    assert _where(
        ct,
        "lastModifiedAt >= :from",
        "id in :ids",
        **{"from": "2024-05-01T10:05:00.000Z"},
        ids=[
            _uuid(1),
            _uuid(6),
            _uuid(9),
        ],
    ) == [6, 9]
    # The keyset continuation a delta client sends.
    assert _where(
        ct,
        "lastModifiedAt >= :from and lastModifiedAt < :to",
        "lastModifiedAt > :lastAt or (lastModifiedAt = :lastAt and id > :lastId)",
        **{
            "from": "2024-05-01T00:00:00.000Z",
            "to": "2024-05-02T00:00:00.000Z",
            "lastAt": "2024-05-01T10:00:00.000Z",
            "lastId": _uuid(2),
        },
    ) == [3, 4, 5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize(
    "predicate",
    [
        "lastModifiedAt >",
        'lastModifiedAt => "2024-05-01T10:00:00.000Z"',
        'lastModifiedAt > "2024-05-01T10:00:00.000Z" and',
        '(orderNumber = "ORD-1"',
        "orderNumber = ORD-1",
        'orderNumber == "ORD-1"',
        'lastModifiedAt > "yesterday"',
        "lastModifiedAt > :missing",
        "",
    ],
)
def test_malformed_predicate_is_a_400(ct: CommercetoolsEmulator, predicate: str) -> None:
    response = _get(ct, "/shop-eu/orders", [("where", predicate)])
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["errors"][0]["code"] == "InvalidInput"
    assert body["message"].startswith("Malformed parameter: where")


# --------------------------------------------------------------------------------------------------
# Sorting, paging, withTotal


def test_repeated_sort(ct: CommercetoolsEmulator) -> None:
    params = [("sort", "lastModifiedAt desc"), ("sort", "id asc"), ("limit", "5")]
    assert _ids(_get(ct, "/shop-eu/orders", params)) == [10, 9, 8, 7, 6]
    params = [("sort", "lastModifiedAt asc"), ("sort", "id desc"), ("limit", "5")]
    assert _ids(_get(ct, "/shop-eu/orders", params)) == [4, 3, 2, 1, 5]
    params = [("sort", "totalPrice.centAmount desc"), ("limit", "2")]
    assert _ids(_get(ct, "/shop-eu/orders", params)) == [10, 9]
    bad = _get(ct, "/shop-eu/orders", [("sort", "lastModifiedAt")])
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "InvalidInput"


def test_limit_offset_caps_and_with_total(ct: CommercetoolsEmulator) -> None:
    default = _get(ct, "/shop-eu/orders").json()
    assert (default["limit"], default["offset"], default["count"], default["total"]) == (20, 0, 10, 10)
    page = _get(ct, "/shop-eu/orders", [("sort", "id asc"), ("limit", "3"), ("offset", "3")]).json()
    assert [r["orderNumber"] for r in page["results"]] == ["ORD-4", "ORD-5", "ORD-6"]
    assert (page["limit"], page["offset"], page["count"], page["total"]) == (3, 3, 3, 10)
    assert _get(ct, "/shop-eu/orders", [("limit", "500")]).status_code == 200
    assert _get(ct, "/shop-eu/orders", [("offset", "10000")]).json()["results"] == []
    for params in ([("limit", "501")], [("limit", "-1")], [("offset", "10001")], [("limit", "x")]):
        response = _get(ct, "/shop-eu/orders", params)
        assert response.status_code == 400, params
        assert response.json()["errors"][0]["code"] == "InvalidInput"
    counting = _get(ct, "/shop-eu/orders", [("limit", "0")]).json()  # a count without results
    assert (counting["count"], counting["total"], counting["results"]) == (0, 10, [])
    without = _get(ct, "/shop-eu/orders", [("withTotal", "false")]).json()
    assert "total" not in without and without["count"] == 10
    assert _get(ct, "/shop-eu/orders", [("withTotal", "maybe")]).status_code == 400


def test_total_is_capped_at_the_maximum_offset_when_filtering() -> None:
    emulator = CommercetoolsEmulator(None, clock=EmulatorClock(NOW))
    emulator.add_records(
        "big",
        "customers",
        [{"id": _uuid(n), "version": 1, "lastModifiedAt": "2024-05-01T00:00:00.000Z"} for n in range(10_050)],
    )
    with emulator:
        assert _get(emulator, "/big/customers", [("limit", "1")]).json()["total"] == 10_050
        filtered = _get(emulator, "/big/customers", [("where", 'id > ""'), ("limit", "1")]).json()
        assert filtered["total"] == 10_000


def test_in_store_endpoint_scopes_by_store_key(ct: CommercetoolsEmulator) -> None:
    params = [("sort", "id asc")]
    assert _ids(_get(ct, "/shop-eu/in-store/key=eu/orders", params)) == [1, 2, 3, 4]
    assert _ids(_get(ct, "/shop-eu/in-store/key=uk/orders", params)) == [5, 6, 7, 8, 9, 10]


# --------------------------------------------------------------------------------------------------
# Versions, clock


@pytest.fixture
def versioned(tmp_path: Path):
    _write_seed(
        tmp_path,
        PROJECT,
        "orders",
        [_order(1, "2024-05-01T10:00:00.000Z", 1), _order(2, "2024-05-01T10:30:00.000Z", 1)],
        "a.json",
    )
    _write_seed(
        tmp_path,
        PROJECT,
        "orders",
        [
            _order(1, "2024-05-01T11:00:00.000Z", 2, paymentState="Paid"),
            _order(1, "2024-05-01T12:00:00.000Z", 3, paymentState="Paid", orderState="Complete"),
            _order(3, "2024-05-01T13:00:00.000Z", 1),  # in the future of the clock
        ],
        "b.json",
    )
    with CommercetoolsEmulator(
        tmp_path / "commercetools", clock=EmulatorClock(datetime(2024, 5, 1, 11, 30, tzinfo=UTC))
    ) as emulator:
        yield emulator


def _window(emulator: CommercetoolsEmulator, start: str, end: str, op: str = "<") -> list[tuple[int, int]]:
    params = [
        ("where", f"lastModifiedAt >= :start and lastModifiedAt {op} :end"),
        ("var.start", start),
        ("var.end", end),
        ("sort", "lastModifiedAt asc"),
        ("sort", "id asc"),
    ]
    response = _get(emulator, "/shop-eu/orders", params)
    assert response.status_code == 200, response.text
    return [(int(r["id"][-2:]), r["version"]) for r in response.json()["results"]]


def test_versions_are_answered_as_of_the_window_end(versioned: CommercetoolsEmulator) -> None:
    assert _window(versioned, "2024-05-01T09:00:00.000Z", "2024-05-01T10:15:00.000Z") == [(1, 1)]
    assert _window(versioned, "2024-05-01T09:00:00.000Z", "2024-05-01T11:00:00.000Z") == [(1, 1), (2, 1)]
    # < is strict, <= is not.
    assert _window(versioned, "2024-05-01T10:45:00.000Z", "2024-05-01T11:00:00.000Z") == []
    assert _window(versioned, "2024-05-01T10:45:00.000Z", "2024-05-01T11:00:00.000Z", "<=") == [(1, 2)]
    # A window asked before its end is answered as of the clock (11:30): 12:00 and 13:00 are unseen.
    assert _window(versioned, "2024-05-01T09:00:00.000Z", "2024-05-02T00:00:00.000Z") == [(2, 1), (1, 2)]
    # Without a bound, the clock alone decides; get-by-id too.
    assert _ids(_get(versioned, "/shop-eu/orders", [("sort", "id asc")])) == [1, 2]
    assert _get(versioned, f"/shop-eu/orders/{_uuid(1)}").json()["version"] == 2
    assert _get(versioned, f"/shop-eu/orders/{_uuid(3)}").status_code == 404


def test_advancing_the_clock_reveals_new_versions(versioned: CommercetoolsEmulator) -> None:
    reply = requests.post(versioned.base_url + "/_sandbox/clock", json={"advance_seconds": 5400}, timeout=5)
    assert reply.json()["now"] == "2024-05-01T13:00:00+00:00"
    assert _window(versioned, "2024-05-01T09:00:00.000Z", "2024-05-02T00:00:00.000Z") == [
        (2, 1),
        (1, 3),
        (3, 1),
    ]
    # A late query for an old window still sees that window as it stood.
    assert _window(versioned, "2024-05-01T09:00:00.000Z", "2024-05-01T10:15:00.000Z") == [(1, 1)]


def test_date_header_carries_the_emulator_clock(versioned: CommercetoolsEmulator) -> None:
    response = _get(versioned, "/shop-eu/orders")
    assert response.headers["Date"] == "Wed, 01 May 2024 11:30:00 GMT"
    versioned.clock.advance(3600)
    token = requests.post(
        versioned.base_url + "/oauth/token",
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    assert parsedate_to_datetime(token.headers["Date"]) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert _get(versioned, "/nothing/here/at/all").status_code == 404


# --------------------------------------------------------------------------------------------------
# Runtime records, faults, state


def test_records_added_at_runtime_and_persisted_state(ct: CommercetoolsEmulator) -> None:
    ct.add_records(
        PROJECT, "payments", [{"id": "pay-1", "version": 1, "lastModifiedAt": "2024-05-01T11:00:00.000Z"}]
    )
    reply = requests.post(
        ct.base_url + "/_sandbox/commercetools/records",
        json={
            "project_key": "shop-new",
            "entity": "customers",
            "records": [
                {
                    "id": "cust-1",
                    "version": 1,
                    "email": "a@example.com",
                    "lastModifiedAt": "2024-05-01T11:00:00.000Z",
                }
            ],
        },
        timeout=5,
    )
    assert reply.status_code == 200 and reply.json()["added"] == 1
    bad = requests.post(
        ct.base_url + "/_sandbox/commercetools/records", json={"entity": "carts", "records": []}, timeout=5
    )
    assert bad.status_code == 400
    assert [r["id"] for r in _get(ct, "/shop-eu/payments").json()["results"]] == ["pay-1"]
    assert [r["email"] for r in _get(ct, "/shop-new/customers").json()["results"]] == ["a@example.com"]
    state = requests.get(ct.base_url + "/_sandbox/state", timeout=5).json()
    assert state["projects"]["shop-eu"]["orders"]["ids"] == 10
    assert state["projects"]["shop-new"]["customers"]["added_at_runtime"] == 1
    assert state["tokens_issued"] >= 2

    exported = json.loads(json.dumps(ct.export_state()))
    restored = CommercetoolsEmulator(None, clock=EmulatorClock(NOW))
    restored.import_state(exported)
    with restored:
        token = next(iter(exported["tokens"]))
        assert [r["id"] for r in _get(restored, "/shop-new/customers", token=token).json()["results"]] == [
            "cust-1"
        ]
        assert _get(restored, "/shop-eu/payments", token=token).json()["count"] == 1


def test_injected_faults_use_the_commercetools_error_envelope(ct: CommercetoolsEmulator) -> None:
    token = _token(ct)
    requests.post(ct.base_url + "/_sandbox/faults", json={"script": [{"status": 503}]}, timeout=5)
    response = _get(ct, "/shop-eu/orders", token=token)
    assert response.status_code == 503
    body = response.json()
    assert body["statusCode"] == 503 and body["errors"][0]["code"] and body["message"]
    assert _get(ct, "/shop-eu/orders", token=token).status_code == 200


def test_token_lifetime_is_measured_on_the_emulator_clock(ct: CommercetoolsEmulator) -> None:
    token = _token(ct)
    ct.clock.set(NOW + timedelta(days=3))
    assert _get(ct, "/shop-eu/orders", token=token).status_code == 401
