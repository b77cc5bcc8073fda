"""Contract: the SFCC sandbox emulator behaves like the Salesforce B2C Commerce SCAPI Orders admin API
(commerce_apis.md §0, §5, §8; CONTRACT.md §2 seed layout ``sfcc/<organization_id>/orders/*.json``
and §4 ``SFCC_API_URL``/``SFCC_ORGANIZATION_ID``/``SFCC_ACCESS_TOKEN``).

Over real HTTP on 127.0.0.1 it must serve the vendor's real ``getOrders`` example unchanged
(Decimal-exact numbers) in the spec's ``{"data": [...]}`` envelope, serve several organizations
(unknown ones are 404), filter by ``siteId``, ``lastModifiedDateFrom`` (>=) / ``lastModifiedDateTo``
(<), ``creationDateFrom``/``To`` and the status lists, sort by creation or last-modified date in
either direction (default creation date, descending), enforce ``limit`` 1-200 and
``offset + limit <= 10000`` with 400s, answer as of ``min(lastModifiedDateTo, clock)`` over order
versions, send the replay clock in ``Date``, require a bearer token (401 in the RFC 7807
``{"type","title","detail"}`` shape), and accept, export and import records added at runtime.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson

from loyalty_assets.sandbox.httpserver import EmulatorClock
from loyalty_assets.sandbox.sfcc import DEFAULT_ORGANIZATION_ID, SfccEmulator

REAL_FIXTURE = (
    Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "sfcc" / "orders_get.json"
)
ORG = "f_ecom_zzxy_prd"
ORG2 = "f_ecom_abcd_stg"
TOKEN = "test-sfcc-token"
NOW = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)
ERRORS = "https://api.commercecloud.salesforce.com/documentation/error/v1/errors/"


def _real() -> dict[str, Any]:
    if not REAL_FIXTURE.is_file():
        pytest.fail(
            f"real SFCC fixture {REAL_FIXTURE} is missing: the shared/ folder must sit beside the repo"
        )
    return simplejson.loads(REAL_FIXTURE.read_text(), use_decimal=True)


def _order(no: str, modified: str, created: str = "2024-05-01T08:00:00.000Z", **extra: Any) -> dict[str, Any]:
    record = {
        "orderNo": no,
        "creationDate": created,
        "lastModified": modified,
        "siteId": "RefArch",
        "currency": "USD",
        "status": "new",
        "paymentStatus": "paid",
        "shippingStatus": "not_shipped",
        "exportStatus": "not_exported",
        "customerInfo": {"email": f"shopper{no}@example.com", "guest": False, "customerNo": f"C{no}"},
        "productTotal": Decimal("49.99"),
        "orderTotal": Decimal("55.24"),
        "taxation": "net",
    }
    record.update(extra)
    return record


def _write_seed(root: Path, org: str, records: list[dict[str, Any]], name: str = "part-1.json") -> Path:
    folder = root / "sfcc" / org / "orders"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(simplejson.dumps(records, use_decimal=True))
    return root / "sfcc"


def _path(org: str = ORG, order_no: str | None = None) -> str:
    path = f"/checkout/orders/v1/organizations/{org}/orders"
    return path + f"/{order_no}" if order_no else path


def _get(
    emulator: SfccEmulator,
    path: str,
    params: dict[str, str] | None = None,
    token: str | None = TOKEN,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(emulator.base_url + path, params=params, headers=headers, timeout=5)


def _nos(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [o["orderNo"] for o in response.json()["data"]]


@pytest.fixture
def sfcc():
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW))
    emulator.add_records(
        ORG,
        [
            _order("A1", "2024-05-01T09:00:00.000Z", created="2024-04-30T23:59:59.999Z"),
            _order("A2", "2024-05-01T10:00:00.000Z", created="2024-05-01T07:00:00.000Z", status="completed"),
            _order("A3", "2024-05-01T10:00:00.000Z", created="2024-05-01T09:00:00.000Z", siteId="UK"),
            _order("A4", "2024-05-01T11:00:00.500Z", created="2024-05-01T10:30:00.000Z", status="cancelled"),
            _order(
                "A5", "2024-05-01T12:00:00.000Z", created="2024-05-01T11:00:00.000Z", paymentStatus="not_paid"
            ),
        ],
    )
    emulator.add_records(ORG2, [_order("B1", "2024-05-01T09:30:00.000Z")])
    with emulator:
        yield emulator


# --------------------------------------------------------------------------------------------------
# Real payload and seed layout


def test_real_fixture_is_served_unchanged(tmp_path: Path) -> None:
    real = _real()
    order = real["data"][0]
    seed = _write_seed(tmp_path, ORG, [order])
    with SfccEmulator(seed, access_token=TOKEN) as emulator:
        listed = _get(emulator, _path(), {"siteId": "ShoppingSite"})
        assert listed.status_code == 200
        assert listed.headers["Content-Type"].startswith("application/json")
        body = simplejson.loads(listed.text, use_decimal=True)
        assert body == real  # the spec's envelope: {"data": [...]} and nothing else
        single = _get(emulator, _path(order_no="00000410"))
        assert simplejson.loads(single.text, use_decimal=True) == order
        text = listed.text
    # Numbers go out exactly as the vendor wrote them (no float round trip, no "99.0").
    assert '"orderTotal": 110.24' in text and '"productTotal": 99,' in text
    assert body["data"][0]["adjustedShippingTotalTax"] == Decimal("0.3")
    assert body["data"][0]["customerInfo"]["guest"] is True


def test_several_organizations_and_unknown_one(tmp_path: Path) -> None:
    _write_seed(tmp_path, ORG, [_order("A1", "2024-05-01T09:00:00.000Z")])
    seed = _write_seed(tmp_path, ORG2, [_order("B1", "2024-05-01T09:00:00.000Z")])
    (seed / "f_ecom_empt_001").mkdir()  # an organization without orders yet
    with SfccEmulator(seed, access_token=TOKEN) as emulator:
        assert emulator.organization_ids == [ORG2, "f_ecom_empt_001", ORG]
        assert _nos(_get(emulator, _path(ORG))) == ["A1"]
        assert _nos(_get(emulator, _path(ORG2))) == ["B1"]
        assert _nos(_get(emulator, _path("f_ecom_empt_001"))) == []
        missing = _get(emulator, _path("f_ecom_nope_prd"))
        assert missing.status_code == 404
        assert missing.json()["type"] == ERRORS + "not-found"
        assert set(missing.json()) >= {"type", "title", "detail"}
        assert emulator.env() == {
            "SFCC_API_URL": emulator.base_url,
            "SFCC_ORGANIZATION_ID": ORG2,
            "SFCC_ACCESS_TOKEN": TOKEN,
        }


def test_empty_emulator_serves_the_default_organization() -> None:
    with SfccEmulator(None) as emulator:
        env = emulator.env()
        assert env["SFCC_ORGANIZATION_ID"] == DEFAULT_ORGANIZATION_ID
        assert env["SFCC_ACCESS_TOKEN"] == "sandbox-sfcc-token"
        response = _get(emulator, _path(DEFAULT_ORGANIZATION_ID), token="sandbox-sfcc-token")
        assert response.json() == {"data": []}


def test_seed_file_that_is_not_an_array_fails_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "sfcc" / ORG / "orders"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text('{"orderNo": "1"}')
    with pytest.raises(ValueError, match="bad.json"):
        SfccEmulator(tmp_path / "sfcc")
    (folder / "bad.json").write_text('[{"lastModified": "2024-05-01T00:00:00Z"}]')
    with pytest.raises(ValueError, match="orderNo"):
        SfccEmulator(tmp_path / "sfcc")


# --------------------------------------------------------------------------------------------------
# Filters and sorting


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"lastModifiedDateFrom": "2024-05-01T10:00:00.000Z"}, ["A2", "A3", "A4", "A5"]),  # inclusive
        ({"lastModifiedDateTo": "2024-05-01T10:00:00.000Z"}, ["A1"]),  # exclusive
        (
            {
                "lastModifiedDateFrom": "2024-05-01T10:00:00Z",
                "lastModifiedDateTo": "2024-05-01T11:00:00.500Z",
            },
            ["A2", "A3"],
        ),
        ({"lastModifiedDateFrom": "2024-05-01T13:00:00+02:00"}, ["A4", "A5"]),  # = 11:00:00 UTC
        ({"creationDateFrom": "2024-05-01"}, ["A2", "A3", "A4", "A5"]),  # date-only = midnight UTC
        ({"creationDateTo": "2024-05-01T09:00:00.000Z"}, ["A1", "A2"]),
        ({"siteId": "UK"}, ["A3"]),
        ({"siteId": "RefArch", "status": "new"}, ["A1", "A5"]),
        ({"status": "completed,cancelled"}, ["A2", "A4"]),
        ({"paymentStatus": "not_paid"}, ["A5"]),
        ({"exportStatus": "exported"}, []),
    ],
)
def test_filters(sfcc: SfccEmulator, params: dict[str, str], expected: list[str]) -> None:
    query = {"sortBy": "last_modified_date", "sortOrder": "asc", **params}
    assert _nos(_get(sfcc, _path(), query)) == expected


def test_sorting(sfcc: SfccEmulator) -> None:
    # Default: creation date, descending (the API's documented default).
    assert _nos(_get(sfcc, _path())) == ["A5", "A4", "A3", "A2", "A1"]
    assert _nos(_get(sfcc, _path(), {"sortOrder": "asc"})) == ["A1", "A2", "A3", "A4", "A5"]
    # Ties on lastModified (A2, A3) are broken by orderNo in the same direction: stable paging.
    asc = _get(sfcc, _path(), {"sortBy": "last_modified_date", "sortOrder": "asc"})
    assert _nos(asc) == ["A1", "A2", "A3", "A4", "A5"]
    desc = _get(sfcc, _path(), {"sortBy": "last_modified_date", "sortOrder": "desc"})
    assert _nos(desc) == ["A5", "A4", "A3", "A2", "A1"]
    for bad in ({"sortBy": "order_no"}, {"sortOrder": "up"}):
        response = _get(sfcc, _path(), bad)
        assert response.status_code == 400
        assert response.json()["type"] == ERRORS + "bad-request"


# --------------------------------------------------------------------------------------------------
# Paging and its caps


def test_offset_limit_paging(sfcc: SfccEmulator) -> None:
    query = {"sortBy": "last_modified_date", "sortOrder": "asc", "limit": "2"}
    pages = [_nos(_get(sfcc, _path(), {**query, "offset": str(o)})) for o in (0, 2, 4, 6)]
    assert pages == [["A1", "A2"], ["A3", "A4"], ["A5"], []]  # past the end: empty, never repeated


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "201"},
        {"limit": "0"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "9900", "limit": "101"},  # offset + limit > 10000
        {"offset": "10000"},  # default limit 100
        {"lastModifiedDateFrom": "yesterday"},
        {"creationDateTo": "2024-13-01"},
    ],
)
def test_out_of_range_paging_and_bad_values_are_400(sfcc: SfccEmulator, params: dict[str, str]) -> None:
    response = _get(sfcc, _path(), params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == ERRORS + "bad-request" and body["title"] == "Bad Request" and body["detail"]


def test_largest_allowed_window_of_offsets(sfcc: SfccEmulator) -> None:
    assert _get(sfcc, _path(), {"offset": "9800", "limit": "200"}).json() == {"data": []}
    assert len(_nos(_get(sfcc, _path(), {"limit": "200"}))) == 5
    assert len(_nos(_get(sfcc, _path()))) == 5  # default limit 100


def test_caps_are_configurable_and_totals_optional() -> None:
    emulator = SfccEmulator(
        None, access_token=TOKEN, clock=EmulatorClock(NOW), max_offset_plus_limit=4, envelope_totals=True
    )
    emulator.add_records(ORG, [_order(f"N{i}", f"2024-05-01T0{i}:00:00.000Z") for i in range(1, 7)])
    with emulator:
        first = _get(emulator, _path(), {"sortBy": "last_modified_date", "sortOrder": "asc", "limit": "3"})
        assert first.json()["total"] == 6 and first.json()["limit"] == 3 and first.json()["offset"] == 0
        assert _nos(first) == ["N1", "N2", "N3"]
        assert _get(emulator, _path(), {"offset": "1", "limit": "3"}).status_code == 200
        assert _get(emulator, _path(), {"offset": "2", "limit": "3"}).status_code == 400


# --------------------------------------------------------------------------------------------------
# Versions, as-of and the clock


@pytest.fixture
def versioned(tmp_path: Path):
    _write_seed(
        tmp_path,
        ORG,
        [
            _order("V1", "2024-05-01T10:00:00.000Z", paymentStatus="not_paid"),
            _order("V2", "2024-05-01T10:30:00.000Z"),
        ],
        "a.json",
    )
    seed = _write_seed(
        tmp_path,
        ORG,
        [
            _order("V1", "2024-05-01T11:00:00.000Z", paymentStatus="paid"),
            _order("V1", "2024-05-01T12:00:00.000Z", shippingStatus="shipped"),
            _order("V3", "2024-05-01T13:00:00.000Z"),  # in the future of the clock
        ],
        "b.json",
    )
    clock = EmulatorClock(datetime(2024, 5, 1, 11, 30, tzinfo=UTC))
    with SfccEmulator(seed, access_token=TOKEN, clock=clock) as emulator:
        yield emulator


def _window(emulator: SfccEmulator, start: str, end: str | None = None) -> list[tuple[str, str]]:
    params = {"sortBy": "last_modified_date", "sortOrder": "asc", "lastModifiedDateFrom": start}
    if end is not None:
        params["lastModifiedDateTo"] = end
    response = _get(emulator, _path(), params)
    assert response.status_code == 200, response.text
    return [(o["orderNo"], o["lastModified"]) for o in response.json()["data"]]


def test_versions_are_answered_as_of_the_window_end(versioned: SfccEmulator) -> None:
    assert _window(versioned, "2024-05-01T09:00:00Z", "2024-05-01T10:15:00Z") == [
        ("V1", "2024-05-01T10:00:00.000Z")
    ]
    # The end is exclusive, also for choosing the version: at 11:00 the 11:00 version is not yet seen.
    assert _window(versioned, "2024-05-01T09:00:00Z", "2024-05-01T11:00:00Z") == [
        ("V1", "2024-05-01T10:00:00.000Z"),
        ("V2", "2024-05-01T10:30:00.000Z"),
    ]
    # A window whose end is after the clock (11:30) is answered as of the clock.
    assert _window(versioned, "2024-05-01T09:00:00Z", "2024-05-02T00:00:00Z") == [
        ("V2", "2024-05-01T10:30:00.000Z"),
        ("V1", "2024-05-01T11:00:00.000Z"),
    ]
    # Filters apply to the version as of the end: V1's 10:00 version is superseded, so it is gone.
    assert _window(versioned, "2024-05-01T09:00:00Z", "2024-05-01T10:20:00Z") == [
        ("V1", "2024-05-01T10:00:00.000Z")
    ]
    assert _window(versioned, "2024-05-01T10:20:00Z") == [
        ("V2", "2024-05-01T10:30:00.000Z"),
        ("V1", "2024-05-01T11:00:00.000Z"),
    ]
    assert _get(versioned, _path(order_no="V1")).json()["paymentStatus"] == "paid"
    assert _get(versioned, _path(order_no="V3")).status_code == 404


def test_advancing_the_clock_reveals_new_versions(versioned: SfccEmulator) -> None:
    reply = requests.post(versioned.base_url + "/_sandbox/clock", json={"advance_seconds": 5400}, timeout=5)
    assert reply.json()["now"] == "2024-05-01T13:00:00+00:00"
    assert _window(versioned, "2024-05-01T09:00:00Z") == [
        ("V2", "2024-05-01T10:30:00.000Z"),
        ("V1", "2024-05-01T12:00:00.000Z"),
        ("V3", "2024-05-01T13:00:00.000Z"),
    ]
    assert _get(versioned, _path(order_no="V1")).json()["shippingStatus"] == "shipped"
    # A late query for an old window still sees that window as it stood.
    assert _window(versioned, "2024-05-01T09:00:00Z", "2024-05-01T10:15:00Z") == [
        ("V1", "2024-05-01T10:00:00.000Z")
    ]


def test_date_header_carries_the_emulator_clock(versioned: SfccEmulator) -> None:
    response = _get(versioned, _path())
    assert response.headers["Date"] == "Wed, 01 May 2024 11:30:00 GMT"
    versioned.clock.advance(90)
    assert parsedate_to_datetime(_get(versioned, _path("f_ecom_nope_prd")).headers["Date"]) == datetime(
        2024, 5, 1, 11, 31, 30, tzinfo=UTC
    )


# --------------------------------------------------------------------------------------------------
# Single order, auth, site requirement


def test_get_single_order(sfcc: SfccEmulator) -> None:
    assert _get(sfcc, _path(order_no="A3")).json()["siteId"] == "UK"
    assert _get(sfcc, _path(order_no="A3"), {"siteId": "UK"}).status_code == 200
    for response in (
        _get(sfcc, _path(order_no="A3"), {"siteId": "RefArch"}),
        _get(sfcc, _path(order_no="123")),
        _get(sfcc, _path(ORG2, "A3")),
    ):
        assert response.status_code == 404
    assert _get(sfcc, _path(order_no="123")).json() == {
        "type": ERRORS + "order-not-found",
        "title": "Order Not Found",
        "detail": "No order with number '123' was found.",
    }


def test_bearer_token_is_required(sfcc: SfccEmulator) -> None:
    for token in (None, "wrong-token"):
        for path in (_path(), _path(order_no="A1")):
            denied = _get(sfcc, path, token=token)
            assert denied.status_code == 401
            body = denied.json()
            assert body["type"] == ERRORS + "unauthorized" and body["title"] == "Unauthorized"
            assert body["detail"]
    basic = requests.get(sfcc.base_url + _path(), headers={"Authorization": f"Basic {TOKEN}"}, timeout=5)
    assert basic.status_code == 401
    # Unknown routes answer in the same problem shape.
    assert _get(sfcc, "/checkout/orders/v1/nothing").json()["type"] == ERRORS + "not-found"


def test_site_id_can_be_required_as_in_the_spec() -> None:
    emulator = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW), require_site_id=True)
    emulator.add_records(ORG, [_order("S1", "2024-05-01T09:00:00.000Z")])
    with emulator:
        assert _get(emulator, _path()).status_code == 400
        assert _get(emulator, _path(order_no="S1")).status_code == 400
        assert _nos(_get(emulator, _path(), {"siteId": "RefArch"})) == ["S1"]


# --------------------------------------------------------------------------------------------------
# Runtime records, state and faults


def test_records_added_at_runtime_and_state_round_trip(sfcc: SfccEmulator) -> None:
    reply = requests.post(
        sfcc.base_url + "/_sandbox/sfcc/records",
        json={"organization_id": ORG, "records": [_order("A9", "2024-05-01T20:00:00.000Z", orderTotal=12.5)]},
        timeout=5,
    )
    assert reply.json() == {"added": 1}
    assert _get(sfcc, _path(order_no="A9")).text.count('"orderTotal": 12.5') == 1
    bad = requests.post(sfcc.base_url + "/_sandbox/sfcc/records", json={"records": []}, timeout=5)
    assert bad.status_code == 400
    state = requests.get(sfcc.base_url + "/_sandbox/state", timeout=5).json()
    assert state["emulator"] == "sfcc"
    assert state["organizations"][ORG]["orders"] == 6

    exported = sfcc.export_state()
    assert sorted(exported["records"]) == sorted([ORG, ORG2])
    restored = SfccEmulator(None, access_token=TOKEN, clock=EmulatorClock(NOW))
    restored.import_state(simplejson.loads(simplejson.dumps(exported, use_decimal=True), use_decimal=True))
    with restored:
        query = {"sortBy": "last_modified_date", "sortOrder": "asc"}
        assert _nos(_get(restored, _path(), query)) == ["A1", "A2", "A3", "A4", "A5", "A9"]
        assert _get(restored, _path(order_no="A9")).json()["orderTotal"] == 12.5


def test_injected_faults_use_the_problem_shape(sfcc: SfccEmulator) -> None:
    requests.post(
        sfcc.base_url + "/_sandbox/faults", json={"script": [{"status": 503, "retry_after": 1}]}, timeout=5
    ).raise_for_status()
    response = _get(sfcc, _path())
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert set(response.json()) == {"type", "title", "detail"}
    assert _get(sfcc, _path()).status_code == 200
