"""Contract: the Salesforce sandbox emulator behaves like Salesforce REST and Bulk API 2.0 for the
CONTRACT.md §5 objects, as salesforce.md §1-§4 records them, when driven by ``simple-salesforce``
itself over real HTTPS on 127.0.0.1 with the emulator's generated ``trustme`` CA (never
``verify=False``).

It must: authenticate by session id and by the OAuth password flow (401 ``INVALID_SESSION_ID`` as a
JSON list otherwise); upsert by external id (201 created, 200 ``created:false``, 204 before v46),
resolving ``Contact__r`` relationship fields and refusing unknown fields with ``INVALID_FIELD``;
answer sObject Collections with HTTP 200 and per-record results (``allOrNone`` rolls back, more than
200 records is a 400); page SOQL with a ``nextRecordsUrl`` path; describe the objects with their
``externalId`` flags; run Bulk 2.0 ingest jobs in at most 10 calls; publish platform events; send
``Sforce-Limit-Info`` on every response and refuse with 403 ``REQUEST_LIMIT_EXCEEDED`` once the
allowance is spent; produce ``UNABLE_TO_LOCK_ROW`` on demand; apply a write whose response is dropped;
and keep state across restarts through ``export_state``/``import_state`` and the same CA.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejson
from simple_salesforce import Salesforce, format_external_id
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from loyalty_assets.sandbox.salesforce import CA_CERT_FILE, OBJECTS, SalesforceEmulator

MEMBER_ID = "Loyalty_Member_Id__c"


def _session(ca: Path | str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # the environment's REQUESTS_CA_BUNDLE must not replace our CA
    s.verify = str(ca)
    return s


def _sf(emu: SalesforceEmulator, token: str | None = None, version: str = "62.0") -> Salesforce:
    return Salesforce(
        instance_url=emu.base_url,
        session_id=token or emu.session_id,
        session=_session(emu.ca_path),
        version=version,
    )


def _seed(root: Path) -> Path:
    folder = root / "salesforce"
    for sobject, records in {
        "Contact": [
            {"LastName": "Ada", "Email": "ada@example.com", MEMBER_ID: "M1", "HasOptedOutOfEmail": True},
            {"LastName": "Bob", "Email": "bob@example.com", MEMBER_ID: "M2"},
            {"LastName": "Cy", MEMBER_ID: "M3", "Loyalty_Points_Spendable__c": 40},
        ],
        "Loyalty_Adjustment_Request__c": [
            {"Contact__r": {MEMBER_ID: "M1"}, "Points__c": 50, "Reason__c": "goodwill"},
        ],
    }.items():
        (folder / sobject).mkdir(parents=True)
        (folder / sobject / "part-1.json").write_text(simplejson.dumps(records))
    return folder


@pytest.fixture
def emu(tmp_path: Path):
    with SalesforceEmulator(_seed(tmp_path), cert_dir=tmp_path / "certs", query_page_size=2) as emulator:
        yield emulator


@pytest.fixture
def sf(emu: SalesforceEmulator) -> Salesforce:
    return _sf(emu)


def test_https_only_with_the_generated_ca_and_env(emu: SalesforceEmulator, tmp_path: Path) -> None:
    assert emu.base_url.startswith("https://127.0.0.1:")
    assert emu.ca_path == tmp_path / "certs" / CA_CERT_FILE
    untrusting = requests.Session()
    untrusting.trust_env = False
    untrusting.verify = True  # the system CAs do not know our CA
    with pytest.raises(requests.exceptions.SSLError):
        untrusting.get(emu.base_url + "/services/data/", timeout=5)
    versions = _session(emu.ca_path).get(emu.base_url + "/services/data/", timeout=5).json()
    assert {"label": "API v62.0", "url": "/services/data/v62.0", "version": "62.0"} in versions
    assert emu.env() == {
        "SALESFORCE_INSTANCE_URL": emu.base_url,
        "SALESFORCE_SESSION_ID": emu.session_id,
        "SALESFORCE_CA_BUNDLE": str(emu.ca_path),
        "SALESFORCE_LOGIN_URL": emu.base_url,
        "SALESFORCE_CLIENT_ID": emu.client_id,
        "SALESFORCE_CLIENT_SECRET": emu.client_secret,
        "SALESFORCE_USERNAME": emu.username,
        "SALESFORCE_PASSWORD": emu.password,
    }


def test_session_id_auth_and_invalid_session(emu: SalesforceEmulator, sf: Salesforce) -> None:
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 3
    with pytest.raises(SalesforceExpiredSession) as err:
        _sf(emu, token="00Dnope!bad").query("SELECT Id FROM Contact")
    assert err.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]


def test_oauth_password_flow(emu: SalesforceEmulator) -> None:
    s = _session(emu.ca_path)
    form = {
        "grant_type": "password",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "username": emu.username,
        "password": emu.password,
    }
    token = s.post(emu.base_url + "/services/oauth2/token", data=form, timeout=5).json()
    assert token["instance_url"] == emu.base_url and token["token_type"] == "Bearer"
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=s)
    assert sf.Contact.upsert("Loyalty_Member_Id__c/M9", {"LastName": "Oauth"}) == 201

    bad = s.post(emu.base_url + "/services/oauth2/token", data={**form, "password": "nope"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    emu.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")


def test_upsert_by_external_id_created_then_updated(emu: SalesforceEmulator, sf: Salesforce) -> None:
    contact = sf.Contact  # keep one SFType: api_usage lives on it (salesforce.md §1.5)
    key = format_external_id(MEMBER_ID, "A/B 7")  # "/" must survive as one path segment
    created = contact.upsert(key, {"LastName": "Slash", "Loyalty_Points_Spendable__c": 10}, raw_response=True)
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": True}
    updated = contact.upsert(key, {"Loyalty_Points_Spendable__c": 12.5}, raw_response=True)
    assert updated.status_code == 200
    assert updated.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": False}
    assert contact.api_usage["api-usage"].used == emu.api_usage["used"]
    assert _sf(emu, version="45.0").Contact.upsert(key, {"FirstName": "Old"}) == 204
    stored = emu.get_record("Contact", "A/B 7", MEMBER_ID)
    assert stored["Loyalty_Points_Spendable__c"] == pytest.approx(12.5) and stored["Name"] == "Old Slash"

    txn = sf.Loyalty_Transaction__c.upsert(
        "Transaction_Id__c/e-1", {"Contact__r": {MEMBER_ID: "M2"}, "Points__c": 25, "Type__c": "earn"}
    )
    assert txn == 201
    assert (
        emu.get_record("Loyalty_Transaction__c", "e-1", "Transaction_Id__c")["Contact__c"]
        == (emu.get_record("Contact", "M2", MEMBER_ID)["Id"])
    )

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.upsert(f"{MEMBER_ID}/M1", {"Bogus__c": 1})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.upsert(f"{MEMBER_ID}/NEW", {"Email": "x@example.com"})
    assert err.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Loyalty_Transaction__c.upsert("Transaction_Id__c/e-2", {"Contact__r": {MEMBER_ID: "nobody"}})
    assert "Foreign key external ID: nobody not found" in err.value.content[0]["message"]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.upsert("Email/a@b.c", {"LastName": "X"})


def test_get_update_delete_by_id(emu: SalesforceEmulator, sf: Salesforce) -> None:
    record_id = emu.get_record("Contact", "M1", MEMBER_ID)["Id"]
    assert len(record_id) == 18 and record_id.startswith("003")
    assert sf.Contact.get(record_id)["HasOptedOutOfEmail"] is True
    assert sf.Contact.update(record_id, {"Loyalty_VIP_Tier__c": "Gold"}) == 204
    assert sf.Contact.get_by_custom_id(MEMBER_ID, "M1")["Loyalty_VIP_Tier__c"] == "Gold"
    assert sf.Contact.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(record_id)


def _collection(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"attributes": {"type": "Contact"}, MEMBER_ID: f"C{i}", "LastName": f"L{i}", **extra}
        for i in range(start, start + n)
    ]


def test_collections_partial_failure_is_http_200(emu: SalesforceEmulator, sf: Salesforce) -> None:
    records = _collection(3) + [{"attributes": {"type": "Contact"}, MEMBER_ID: "C9", "Bogus__c": 1}]
    response = sf.restful(
        f"composite/sobjects/Contact/{MEMBER_ID}",
        method="PATCH",
        json={"allOrNone": False, "records": records},
    )
    assert [r["success"] for r in response] == [True, True, True, False]
    assert [r["created"] for r in response[:3]] == [True, True, True]
    assert response[3]["errors"][0]["statusCode"] == "INVALID_FIELD" and response[3]["id"] is None
    again = sf.restful(
        f"composite/sobjects/Contact/{MEMBER_ID}",
        method="PATCH",
        json={"allOrNone": False, "records": records[:3]},
    )
    assert [r["created"] for r in again] == [False, False, False]

    # allOrNone: nothing is committed and the valid records say why.
    rolled = sf.restful(
        f"composite/sobjects/Contact/{MEMBER_ID}",
        method="PATCH",
        json={"allOrNone": True, "records": _collection(2, start=50) + records[3:]},
    )
    assert [r["success"] for r in rolled] == [False, False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert emu.get_record("Contact", "C50", MEMBER_ID) is None


def test_collections_are_capped_at_200_records(sf: Salesforce) -> None:
    path = f"composite/sobjects/Contact/{MEMBER_ID}"
    assert (
        len(sf.restful(path, method="PATCH", json={"allOrNone": False, "records": _collection(200)})) == 200
    )
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful(path, method="PATCH", json={"allOrNone": False, "records": _collection(201)})
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_query_subset_and_next_records_url(emu: SalesforceEmulator, sf: Salesforce) -> None:
    first = sf.query("SELECT Id, LastName FROM Contact ORDER BY LastName DESC")
    assert first["totalSize"] == 3 and not first["done"] and len(first["records"]) == 2
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/")  # a path, not a URL
    assert [
        r["LastName"] for r in sf.query_all("SELECT LastName FROM Contact ORDER BY LastName")["records"]
    ] == [
        "Ada",
        "Bob",
        "Cy",
    ]
    rows = sf.query_all(
        f"SELECT {MEMBER_ID}, Email FROM Contact WHERE {MEMBER_ID} IN ('M1', 'M3') "
        "AND (Email = null OR HasOptedOutOfEmail = true) ORDER BY Loyalty_Member_Id__c LIMIT 5"
    )["records"]
    assert [r[MEMBER_ID] for r in rows] == ["M1", "M3"]
    assert rows[0]["attributes"]["type"] == "Contact"
    assert sf.query("SELECT COUNT() FROM Contact WHERE Loyalty_Points_Spendable__c >= 40")["totalSize"] == 1
    requests_ = sf.query_all(
        "SELECT Id, Points__c, Status__c, Contact__r.Loyalty_Member_Id__c FROM Loyalty_Adjustment_Request__c "
        "WHERE Status__c = 'New'"
    )["records"]
    assert requests_[0]["Contact__r"][MEMBER_ID] == "M1" and requests_[0]["Status__c"] == "New"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Nope__c FROM Contact")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT FROM WHERE")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_describe_lists_contract_fields_and_external_ids(sf: Salesforce) -> None:
    expected_ext = {
        "Contact": {MEMBER_ID},
        "Lead": {MEMBER_ID},
        "Account": {MEMBER_ID, "Loyalty_Member_Id__pc"},  # the second: a person account's Contact's
        "Loyalty_Transaction__c": {"Transaction_Id__c"},
        "Task": {"Transaction_Id__c"},
        "Loyalty_Adjustment_Request__c": set(),
        "Loyalty_Event__e": set(),
    }
    assert set(OBJECTS) == set(expected_ext)
    for sobject, ext in expected_ext.items():
        described = getattr(sf, sobject).describe()
        fields = {f["name"]: f for f in described["fields"]}
        assert {n for n, f in fields.items() if f["externalId"]} == ext, sobject
    contact = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    for name in (
        "Loyalty_Points_Spendable__c",
        "Loyalty_Points_Pending__c",
        "Loyalty_VIP_Tier__c",
        "Loyalty_Lifetime_Spend__c",
        "Loyalty_Referral_Url__c",
        "Loyalty_Synced_At__c",
        "HasOptedOutOfEmail",
    ):
        assert name in contact
    txn = {f["name"]: f for f in sf.Loyalty_Transaction__c.describe()["fields"]}
    assert txn["Contact__c"]["relationshipName"] == "Contact__r" and txn["Contact__c"]["referenceTo"] == [
        "Contact"
    ]
    who = {f["name"]: f for f in sf.Task.describe()["fields"]}["WhoId"]
    assert (who["relationshipName"], who["referenceTo"], who["polymorphicForeignKey"]) == ("Who", ["Contact", "Lead"], True)
    status = {f["name"]: f for f in sf.Loyalty_Adjustment_Request__c.describe()["fields"]}["Status__c"]
    assert [p["value"] for p in status["picklistValues"]] == ["New", "Applied", "Rejected"]


def test_bulk2_upsert_job_in_at_most_ten_calls(emu: SalesforceEmulator, sf: Salesforce) -> None:
    rows = [
        {MEMBER_ID: f"B{i}", "LastName": "Bulk", "Loyalty_Points_Spendable__c": str(i)} for i in range(2500)
    ]
    rows[7]["Loyalty_Points_Spendable__c"] = "not-a-number"
    before = emu.request_summary()["total"]
    bulk = sf.bulk2.Contact
    (job,) = bulk.upsert(records=rows, external_id_field=MEMBER_ID, wait=0)
    failed = list(csv.DictReader(bulk.get_failed_records(job["job_id"]).splitlines()))
    ok = bulk.get_successful_records(job["job_id"])
    assert emu.request_summary()["total"] - before <= 10
    assert job["numberRecordsProcessed"] == 2500 and job["numberRecordsFailed"] == 1
    assert failed[0][MEMBER_ID] == "B7" and failed[0]["sf__Error"].startswith(
        "INVALID_TYPE_ON_FIELD_IN_RECORD:"
    )
    assert ok.splitlines()[0].startswith('"sf__Id","sf__Created",') and len(ok.splitlines()) == 2500
    assert emu.get_record("Contact", "B2499", MEMBER_ID)["LastName"] == "Bulk"
    info = sf.restful(f"jobs/ingest/{job['job_id']}")
    assert info["state"] == "JobComplete" and info["externalIdFieldName"] == MEMBER_ID

    with pytest.raises(SalesforceOperationError):  # an unknown column fails the whole job
        bulk.upsert(records=[{MEMBER_ID: "X", "Bogus__c": "1"}], external_id_field=MEMBER_ID, wait=0)


def test_person_account_writes_its_person_contact(emu: SalesforceEmulator, sf: Salesforce) -> None:
    """A Person Account (the PersonAccount record type) is upserted on Account by the person Contact's
    external id as __pc; its person Contact carries the fields, so Contact__r lookups reach it. A
    business Account needs a Name and takes no person fields."""
    (rt,) = [r["recordTypeId"] for r in sf.Account.describe()["recordTypeInfos"] if r["developerName"] == "PersonAccount"]
    created = sf.Account.upsert("Loyalty_Member_Id__pc/P1", {"RecordTypeId": rt, "LastName": "Lovelace",
                                                           "PersonEmail": "ada@example.com",
                                                           "Loyalty_Points_Spendable__pc": 70}, raw_response=True)
    assert created.status_code == 201
    account = emu.get_record("Account", "P1", "Loyalty_Member_Id__pc")
    contact = emu.get_record("Contact", "P1", MEMBER_ID)
    assert (account["IsPersonAccount"], account["Name"], account["PersonContactId"]) == (True, "Lovelace", contact["Id"])
    assert (contact["AccountId"], contact["IsPersonAccount"], contact["Email"], contact["Loyalty_Points_Spendable__c"]) == (
        account["Id"], True, "ada@example.com", 70)
    sf.Account.upsert("Loyalty_Member_Id__pc/P1", {"Loyalty_Points_Spendable__pc": 90})
    assert emu.get_record("Contact", "P1", MEMBER_ID)["Loyalty_Points_Spendable__c"] == 90
    assert len([c for c in emu.records("Contact") if c["Loyalty_Member_Id__c"] == "P1"]) == 1
    sf.Loyalty_Transaction__c.upsert("Transaction_Id__c/T1", {"Contact__r": {MEMBER_ID: "P1"}, "Points__c": 5})
    assert emu.get_record("Loyalty_Transaction__c", "T1", "Transaction_Id__c")["Contact__c"] == contact["Id"]

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Account.upsert("Loyalty_Member_Id__c/B1", {"LastName": "Nobody"})
    assert refused.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Account.upsert("Loyalty_Member_Id__c/B1", {"Phone": "1"})
    assert refused.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Account.upsert("Loyalty_Member_Id__pc/P2", {"RecordTypeId": rt, "PersonEmail": "x@example.com"})
    assert refused.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_platform_event_publish(emu: SalesforceEmulator, sf: Salesforce) -> None:
    result = sf.Loyalty_Event__e.create({"Event_Id__c": "ev-1", "Member_Id__c": "M1", "Points__c": 5})
    assert result["success"] is True and result["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    assert [e["Event_Id__c"] for e in emu.events] == ["ev-1"]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("query", params={"q": "SELECT Event_Id__c FROM Loyalty_Event__e"})


def test_limit_header_and_request_limit_exceeded(emu: SalesforceEmulator, sf: Salesforce) -> None:
    emu.set_api_usage(14998)
    response = sf.restful("limits/")
    assert response["DailyApiRequests"] == {"Max": 15000, "Remaining": 1}
    raw = _session(emu.ca_path).get(
        emu.base_url + "/services/data/v62.0/query/",
        params={"q": "SELECT Id FROM Contact"},
        headers={"Authorization": f"Bearer {emu.session_id}"},
        timeout=5,
    )
    assert raw.headers["Sforce-Limit-Info"] == "api-usage=15000/15000"
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT Id FROM Contact")
    assert err.value.status == 403 and err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert emu.api_usage == {"used": 15000, "max": 15000}


def test_unable_to_lock_row_on_demand(emu: SalesforceEmulator, sf: Salesforce) -> None:
    emu.lock_rows(1, sobject="Contact", key="C1")
    response = sf.restful(
        f"composite/sobjects/Contact/{MEMBER_ID}",
        method="PATCH",
        json={"allOrNone": False, "records": _collection(3)},
    )
    assert [r["success"] for r in response] == [True, False, True]
    assert response[1]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    control = _session(emu.ca_path).post(
        emu.base_url + "/_sandbox/salesforce/locks", json={"count": 1}, timeout=5
    )
    assert control.status_code == 200
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.upsert(f"{MEMBER_ID}/C1", {"LastName": "Again"})
    assert err.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.Contact.upsert(f"{MEMBER_ID}/C1", {"LastName": "Again"}) == 201


def test_dropped_response_still_applies_the_write(emu: SalesforceEmulator, sf: Salesforce) -> None:
    emu.faults.set_script([{"drop": True, "path": "/sobjects/Contact/", "method": "PATCH"}])
    with pytest.raises(requests.ConnectionError):
        sf.Contact.upsert(f"{MEMBER_ID}/D1", {"LastName": "Dropped"})
    assert emu.get_record("Contact", "D1", MEMBER_ID)["LastName"] == "Dropped"
    assert sf.Contact.upsert(f"{MEMBER_ID}/D1", {"LastName": "Dropped"}) == 200  # idempotent re-send


def test_control_surface_and_state_round_trip(
    emu: SalesforceEmulator, sf: Salesforce, tmp_path: Path
) -> None:
    s = _session(emu.ca_path)
    added = s.post(
        emu.base_url + "/_sandbox/salesforce/records",
        json={
            "sobject": "Loyalty_Adjustment_Request__c",
            "records": [{"Contact__r": {MEMBER_ID: "M2"}, "Points__c": -20, "Reason__c": "damaged"}],
        },
        timeout=5,
    ).json()
    assert len(added["ids"]) == 1
    listed = s.get(
        emu.base_url + "/_sandbox/salesforce/records/Loyalty_Adjustment_Request__c", timeout=5
    ).json()
    assert [r["Status__c"] for r in listed["records"]] == ["New", "New"]
    assert s.get(emu.base_url + "/_sandbox/salesforce/usage", timeout=5).json()["max"] == 15000
    sf.Contact.upsert(f"{MEMBER_ID}/S1", {"LastName": "Saved"})
    state = simplejson.loads(simplejson.dumps(emu.export_state()))

    with SalesforceEmulator(None, cert_dir=tmp_path / "certs") as restarted:
        restarted.import_state(state)
        assert restarted.ca_path.read_bytes() == emu.ca_path.read_bytes()  # same CA: env files stay valid
        again = _sf(restarted)
        assert again.Contact.get_by_custom_id(MEMBER_ID, "S1")["LastName"] == "Saved"
        assert again.query("SELECT COUNT() FROM Loyalty_Adjustment_Request__c")["totalSize"] == 2
        assert restarted.api_usage["used"] == emu.api_usage["used"] + 2  # the persisted usage, plus two calls


def test_a_converted_lead_is_read_only(emu: SalesforceEmulator, sf: Salesforce) -> None:
    """A seed (an exported org) may hold converted Leads; like Salesforce, the emulator refuses to
    write one (the REST API cannot convert, so only seeds have them)."""
    converted, open_lead = emu.add_records("Lead", [
        {"LastName": "Cy", "Company": "Cy", "Email": "cy@example.com", "IsConverted": True},
        {"LastName": "Di", "Company": "Di", "Email": "di@example.com"}])
    rows = sf.query(f"SELECT Id, IsConverted FROM Lead WHERE Id IN ('{converted}', '{open_lead}')")["records"]
    assert sorted((r["Id"], r["IsConverted"]) for r in rows) == sorted([(converted, True), (open_lead, False)])
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Lead.update(converted, {MEMBER_ID: "M1"})
    assert refused.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert sf.Lead.update(open_lead, {MEMBER_ID: "M2"}) == 204
    assert emu.get_record("Lead", converted)[MEMBER_ID] is None
    # a CRM user converts the open one: a Contact of its name and e-mail (custom fields not mapped)
    contact_id = emu.convert_lead(open_lead)
    lead = sf.query(f"SELECT IsConverted, ConvertedContactId, Status FROM Lead WHERE Id = '{open_lead}'")["records"][0]
    assert (lead["IsConverted"], lead["ConvertedContactId"], lead["Status"]) == (True, contact_id, "Closed - Converted")
    contact = emu.get_record("Contact", contact_id)
    assert (contact["LastName"], contact["Email"], contact[MEMBER_ID]) == ("Di", "di@example.com", None)
    with pytest.raises(SalesforceMalformedRequest):
        sf.Lead.update(open_lead, {MEMBER_ID: "M2"})


def test_a_seed_exported_from_a_real_org_loads_and_an_unknown_custom_field_does_not(tmp_path: Path) -> None:
    """CONTRACT.md §2: seeds are records as the org returns them. Their standard fields load (the
    common ones are described and queryable, the rest, like a related record's object, are left out
    with a warning); an unknown custom field is a mapping mistake and fails loudly."""
    folder = tmp_path / "salesforce"
    (folder / "Contact").mkdir(parents=True)
    exported = {"attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/003000000000001AAA"},
                "Id": "003000000000001AAA", "LastName": "Ada", "FirstName": "Ada", "Email": "ada@example.com",
                "OwnerId": "005000000000001AAA", "Title": "CTO", "MailingCity": "Boston", "MailingPostalCode": "02110",
                "MobilePhone": "+1 617 555 0100", "LeadSource": "Web", "Birthdate": "1990-12-10",
                "Owner": {"attributes": {"type": "User"}, "Name": "Sales Rep"}, "AssistantName": "Bo",
                "LastModifiedDate": "2024-01-02T03:04:05.000+0000", "CreatedDate": "2024-01-01T00:00:00.000+0000"}
    (folder / "Contact" / "part-1.json").write_text(simplejson.dumps([exported]))
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: warnings.append(r.getMessage())
    logging.getLogger("loyalty_assets.sandbox.salesforce").addHandler(handler)
    try:
        emulator = SalesforceEmulator(folder, cert_dir=tmp_path / "certs")
    finally:
        logging.getLogger("loyalty_assets.sandbox.salesforce").removeHandler(handler)
    with emulator:
        row = _sf(emulator).query("SELECT Id, Email, MailingCity, Title, OwnerId, Birthdate FROM Contact")["records"][0]
        assert (row["Id"], row["Email"], row["MailingCity"], row["Title"], row["OwnerId"], row["Birthdate"]) == (
            "003000000000001AAA", "ada@example.com", "Boston", "CTO", "005000000000001AAA", "1990-12-10")
    assert any("AssistantName, Owner" in w for w in warnings), warnings
    (folder / "Contact" / "part-1.json").write_text(simplejson.dumps([{**exported, "Shoe_Size__c": 9}]))
    with pytest.raises(ValueError, match="Shoe_Size__c"):
        SalesforceEmulator(folder, cert_dir=tmp_path / "certs").load_seed(folder)
