"""Contract: ``SalesforceClient`` pushes to and reads from Salesforce the way DESIGN.md §4 and
salesforce.md §6 require, through ``simple-salesforce`` against the emulator over real HTTPS on
127.0.0.1, trusting only the emulator's generated CA (CONTRACT.md §4 variables, no ``verify=False``).

It connects by session id or by the OAuth password flow (and renews an expired session through it);
upserts by external id with sObject Collections in ⌈n/200⌉ calls up to 2,000 rows and one Bulk API 2.0
job (at most 10 calls) above; returns every record's outcome, partial failures included; reads
``Sforce-Limit-Info`` into ``limits()``; raises ``RequestLimitExceeded`` on 403 without ever retrying
it; retries ``UNABLE_TO_LOCK_ROW`` (per record and per call), 429 (after its ``Retry-After``), 5xx and
lost responses with backoff; and
queries across ``nextRecordsUrl`` pages, publishes platform events and updates records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loyalty_assets.clients import (
    ApiUsage,
    RequestLimitExceeded,
    SalesforceAuthError,
    SalesforceClient,
    connect_salesforce,
    connect_salesforce_from_env,
    salesforce_settings,
)
from loyalty_assets.clients.http import ApiConnectionError, RetryPolicy
from loyalty_assets.clients.salesforce import CallRecord
from loyalty_assets.sandbox.salesforce import SalesforceEmulator

MEMBER_ID = "Loyalty_Member_Id__c"
FAST = RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_max=0.01)


@pytest.fixture
def emu(tmp_path: Path):
    with SalesforceEmulator(None, cert_dir=tmp_path / "certs", query_page_size=50) as emulator:
        yield emulator


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _client(emu: SalesforceEmulator, sleeps: Sleeps, **kwargs: Any) -> SalesforceClient:
    env = emu.env()
    return connect_salesforce(
        instance_url=env["SALESFORCE_INSTANCE_URL"],
        session_id=env["SALESFORCE_SESSION_ID"],
        ca_bundle=env["SALESFORCE_CA_BUNDLE"],
        policy=FAST,
        sleep=sleeps,
        bulk_poll_seconds=0,
        **kwargs,
    )


def _contacts(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{MEMBER_ID: f"M{i:05d}", "LastName": f"L{i}", **extra} for i in range(start, start + n)]


def _route_count(emu: SalesforceEmulator, route: str) -> int:
    return emu.request_summary()["by_route"].get(route, 0)


def test_session_id_upsert_created_then_updated_and_limits(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    with _client(emu, sleeps) as client:
        assert client.limits() is None
        first = client.upsert_records("Contact", MEMBER_ID, _contacts(3, Loyalty_Points_Spendable__c=10))
        assert [(r.key, r.success, r.created) for r in first] == [
            ("M00000", True, True),
            ("M00001", True, True),
            ("M00002", True, True),
        ]
        second = client.upsert_records("Contact", MEMBER_ID, _contacts(3, Loyalty_Points_Spendable__c=11))
        assert [r.created for r in second] == [False, False, False]
        assert [r.id for r in second] == [r.id for r in first]
        assert client.limits() == ApiUsage(used=2, max=15000) == ApiUsage(**emu.api_usage)
        single = client.upsert_record("Contact", MEMBER_ID, "odd/key 1", {"LastName": "Odd"})
        assert single.success and single.created
        assert emu.get_record("Contact", "odd/key 1", MEMBER_ID)["LastName"] == "Odd"


def test_oauth_password_flow_and_session_renewal(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    env = emu.env()
    client = connect_salesforce(
        login_url=env["SALESFORCE_LOGIN_URL"],
        client_id=env["SALESFORCE_CLIENT_ID"],
        client_secret=env["SALESFORCE_CLIENT_SECRET"],
        username=env["SALESFORCE_USERNAME"],
        password=env["SALESFORCE_PASSWORD"],
        ca_bundle=env["SALESFORCE_CA_BUNDLE"],
        policy=FAST,
        sleep=sleeps,
    )
    assert client.upsert_records("Contact", MEMBER_ID, _contacts(1))[0].created
    emu.expire_sessions()
    assert client.query_all("SELECT Id FROM Contact")  # 401 -> logged in again -> retried
    assert _route_count(emu, "oauth token") == 2
    with pytest.raises(SalesforceAuthError):
        connect_salesforce(
            login_url=env["SALESFORCE_LOGIN_URL"],
            client_id=env["SALESFORCE_CLIENT_ID"],
            client_secret=env["SALESFORCE_CLIENT_SECRET"],
            username=env["SALESFORCE_USERNAME"],
            password="wrong",
            ca_bundle=env["SALESFORCE_CA_BUNDLE"],
            policy=FAST,
            sleep=sleeps,
        )
    session_only = _client(emu, sleeps)
    emu.expire_sessions(include_static=True)
    with pytest.raises(SalesforceAuthError) as err:
        session_only.query_all("SELECT Id FROM Contact")
    assert err.value.error_code == "INVALID_SESSION_ID"


def test_settings_from_the_contract_environment(emu: SalesforceEmulator) -> None:
    assert salesforce_settings({}) is None
    assert salesforce_settings({"SALESFORCE_INSTANCE_URL": emu.base_url}) is None
    client = connect_salesforce_from_env(emu.env(), policy=FAST)
    assert client is not None and client.instance_url == emu.base_url
    assert client.query_all("SELECT Id FROM Lead") == []
    assert connect_salesforce_from_env({}) is None


def test_untrusted_certificate_is_refused_not_retried(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    client = connect_salesforce(emu.base_url, emu.session_id, policy=FAST, sleep=sleeps)  # no CA bundle
    with pytest.raises(ApiConnectionError, match="TLS"):
        client.query_all("SELECT Id FROM Contact")
    assert sleeps == []


def test_collections_partial_failure_and_call_count(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    records = _contacts(450)
    records[5] = {**records[5], "Bogus__c": 1}
    records[300] = {**records[300], "Loyalty_Points_Spendable__c": "lots"}
    calls: list[CallRecord] = []
    with _client(emu, sleeps, on_call=calls.append) as client:
        results = client.upsert_records("Contact", MEMBER_ID, records)
    assert _route_count(emu, "collections upsert") == 3  # ceil(450 / 200)
    assert len(results) == 450 and [r.key for r in results] == [r[MEMBER_ID] for r in records]
    failed = {r.key: r.error_codes for r in results if not r.success}
    assert failed == {"M00005": ("INVALID_FIELD",), "M00300": ("INVALID_TYPE_ON_FIELD_IN_RECORD",)}
    assert sleeps == []  # record errors that are not lock errors are not retried
    assert [c.operation for c in calls] == ["collections_upsert"] * 3
    assert all(c.status == 200 and c.path.endswith(f"/composite/sobjects/Contact/{MEMBER_ID}") for c in calls)

    with _client(emu, sleeps) as client:
        client.upsert_records("Contact", MEMBER_ID, _contacts(2000, start=1000))
    assert _route_count(emu, "collections upsert") == 3 + 10
    assert _route_count(emu, "bulk2 create job") == 0


def test_bulk2_above_2000_rows_in_at_most_ten_calls(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    rows = _contacts(2500)
    rows[42] = {**rows[42], "Loyalty_Points_Spendable__c": "lots"}
    txns = [
        {
            "Transaction_Id__c": f"e{i}",
            "Contact__r": {MEMBER_ID: f"M{i:05d}"},
            "Points__c": i,
            "Description__c": None,
        }
        for i in range(2100)
    ]
    with _client(emu, sleeps) as client:
        before = emu.request_summary()["total"]
        results = client.upsert_records("Contact", MEMBER_ID, rows)
        assert emu.request_summary()["total"] - before <= 10
        assert _route_count(emu, "bulk2 create job") == 1 and _route_count(emu, "collections upsert") == 0
        assert len(results) == 2500 and sum(r.success for r in results) == 2499
        bad = results[42]
        assert bad.key == "M00042" and bad.error_codes == ("INVALID_TYPE_ON_FIELD_IN_RECORD",)
        assert all(r.created for r in results if r.success)
        assert client.limits() is not None and client.limits().used == emu.api_usage["used"]

        again = client.upsert_records("Loyalty_Transaction__c", "Transaction_Id__c", txns)
        failed = [r for r in again if not r.success]  # M00042 was refused above, so its entry is too
        assert [(r.key, r.error_codes) for r in failed] == [("e42", ("INVALID_FIELD",))]
        assert "Foreign key external ID: M00042 not found" in failed[0].errors[0].message
        stored = emu.get_record("Loyalty_Transaction__c", "e7", "Transaction_Id__c")
        assert stored["Contact__c"] == emu.get_record("Contact", "M00007", MEMBER_ID)["Id"]
        assert stored["Description__c"] is None

        rerun = client.upsert_records("Contact", MEMBER_ID, _contacts(2500))
        assert sum(r.created is False for r in rerun) == 2499 and rerun[42].created is True


def test_tasks_name_their_polymorphic_who_by_type_in_collections_and_bulk(emu: SalesforceEmulator,
                                                                         sleeps: Sleeps) -> None:
    """Task.WhoId is polymorphic (Contact or Lead): set by external id, the parent's type is named in
    ``attributes`` (Collections) or the CSV header ``Contact:Who.Field`` (Bulk API 2.0)."""

    def task(i: int, who: str, member: str) -> dict[str, Any]:
        return {"Transaction_Id__c": f"t{i}", "Who": {"attributes": {"type": who}, MEMBER_ID: member},
                "Subject": f"Loyalty points: earn +{i}", "Status": "Completed", "Points__c": i}

    with _client(emu, sleeps, bulk_threshold=2) as client:
        client.upsert_records("Contact", MEMBER_ID, _contacts(2))
        client.upsert_records("Lead", MEMBER_ID, [{MEMBER_ID: "L1", "LastName": "Lee", "Company": "x"}])
        small = client.upsert_records("Task", "Transaction_Id__c", [task(1, "Contact", "M00001"), task(2, "Lead", "L1")])
        assert [r.success for r in small] == [True, True] and _route_count(emu, "bulk2 create job") == 0
        assert emu.get_record("Task", "t1", "Transaction_Id__c")["WhoId"] == emu.get_record("Contact", "M00001", MEMBER_ID)["Id"]
        assert emu.get_record("Task", "t2", "Transaction_Id__c")["WhoId"] == emu.get_record("Lead", "L1", MEMBER_ID)["Id"]
        assert emu.get_record("Task", "t1", "Transaction_Id__c")["IsClosed"] is True
        # without the type a polymorphic lookup cannot be resolved
        untyped = client.upsert_records("Task", "Transaction_Id__c", [{"Transaction_Id__c": "t9", "Who": {MEMBER_ID: "M00001"}}])
        assert untyped[0].error_codes == ("INVALID_FIELD",)

        bulk = client.upsert_records("Task", "Transaction_Id__c", [task(3, "Contact", "M00000"), task(4, "Lead", "L1"),
                                                                   task(1, "Contact", "M00000"), task(5, "Lead", "M00000")])
        assert _route_count(emu, "bulk2 create job") == 1
        assert [r.success for r in bulk] == [True, True, True, False]  # M00000 is no Lead
        assert [r.created for r in bulk[:3]] == [True, True, False]
        assert emu.get_record("Task", "t1", "Transaction_Id__c")["WhoId"] == emu.get_record("Contact", "M00000", MEMBER_ID)["Id"]
        assert emu.get_record("Task", "t4", "Transaction_Id__c")["WhoId"] == emu.get_record("Lead", "L1", MEMBER_ID)["Id"]


def test_request_limit_exceeded_is_never_retried(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    with _client(emu, sleeps) as client:
        client.upsert_records("Contact", MEMBER_ID, _contacts(1))
        emu.set_api_usage(15000)
        before = emu.request_summary()["total"]
        with pytest.raises(RequestLimitExceeded) as err:
            client.upsert_records("Contact", MEMBER_ID, _contacts(1))
        assert emu.request_summary()["total"] - before == 1 and sleeps == []
        assert err.value.status == 403 and err.value.error_code == "REQUEST_LIMIT_EXCEEDED"
        assert client.limits() == ApiUsage(15000, 15000) and err.value.usage == ApiUsage(15000, 15000)
        assert not client.limits().allows(1)


def test_unable_to_lock_row_is_retried(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    with _client(emu, sleeps) as client:
        emu.lock_rows(2, sobject="Contact", key="M00001")  # per record, twice in a row
        results = client.upsert_records("Contact", MEMBER_ID, _contacts(3))
        assert all(r.success for r in results) and len(sleeps) == 2
        assert _route_count(emu, "collections upsert") == 3  # the whole chunk once, then the locked one

        lock = [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}]
        emu.faults.set_script([{"status": 400, "body": lock, "path": "/sobjects/Contact/"}])
        assert client.upsert_record("Contact", MEMBER_ID, "M00009", {"LastName": "Locked"}).success
        assert len(sleeps) == 3

        emu.lock_rows(10, sobject="Contact", key="M00002")  # more than the policy's attempts
        stuck = client.upsert_records("Contact", MEMBER_ID, _contacts(3))
        assert [r.success for r in stuck] == [True, True, False] and stuck[2].retryable


def test_server_errors_and_lost_responses_are_retried(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    with _client(emu, sleeps) as client:
        emu.faults.set_script(
            [
                {"status": 503, "path": "/composite/"},
                {"drop": True, "path": "/composite/"},  # applied, then the connection is cut
            ]
        )
        results = client.upsert_records("Contact", MEMBER_ID, _contacts(2))
        assert all(r.success for r in results) and len(sleeps) == 2
        assert [r.created for r in results] == [False, False]  # the lost attempt had created them
        assert len(emu.records("Contact")) == 2

        emu.faults.set_script([{"status": 500, "path": "/query"}] * 4)
        with pytest.raises(Exception) as err:
            client.query_all("SELECT Id FROM Contact")
        assert getattr(err.value, "status", None) == 500


def test_a_throttle_429_is_retried_after_its_retry_after(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    """A 429 is transient like a 5xx: retried, never sooner than the server's Retry-After (it failed
    the run at once before); one that outlasts the attempts is raised with its status."""
    with _client(emu, sleeps) as client:
        emu.faults.set_script([{"status": 429, "retry_after": 2, "method": "PATCH", "path": "composite/sobjects/Contact"}] * 2)
        results = client.upsert_records("Contact", MEMBER_ID, _contacts(2))
        assert all(r.success for r in results) and len(emu.records("Contact")) == 2
        assert sleeps == [2, 2]  # the backoff alone would sleep at most 0.01 s

        emu.faults.set_script([{"status": 429, "retry_after": 1, "path": "/query"}] * 4)
        with pytest.raises(Exception) as err:
            client.query_all("SELECT Id FROM Contact")
        assert getattr(err.value, "status", None) == 429 and sleeps[2:] == [1, 1, 1]

def test_query_events_update_and_describe(emu: SalesforceEmulator, sleeps: Sleeps) -> None:
    with _client(emu, sleeps) as client:
        client.upsert_records("Contact", MEMBER_ID, _contacts(120))
        rows = client.query_all(
            f"SELECT Id, {MEMBER_ID} FROM Contact WHERE LastName LIKE 'L%' ORDER BY {MEMBER_ID}"
        )
        assert len(rows) == 120 and rows[-1][MEMBER_ID] == "M00119"
        assert _route_count(emu, "query more") == 2  # 50 per page in this emulator

        (request_id,) = emu.add_records(
            "Loyalty_Adjustment_Request__c",
            [{"Contact__r": {MEMBER_ID: "M00001"}, "Points__c": 30, "Reason__c": "x"}],
        )
        client.update_record(
            "Loyalty_Adjustment_Request__c",
            request_id,
            {"Status__c": "Applied", "Ledger_Entry_Id__c": "le-1"},
        )
        assert emu.get_record("Loyalty_Adjustment_Request__c", request_id)["Status__c"] == "Applied"

        event_id = client.publish_event("Loyalty_Event__e", {"Event_Id__c": "ev-9", "Points__c": 3})
        assert event_id and emu.events[0]["Event_Id__c"] == "ev-9"
        fields = {f["name"] for f in client.describe("Loyalty_Transaction__c")["fields"]}
        assert {"Transaction_Id__c", "Contact__c", "Points__c", "Occurred_At__c"} <= fields
