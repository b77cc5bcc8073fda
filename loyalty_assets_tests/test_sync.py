"""Sync to Smile.io, LoyaltyLion and Salesforce (RULES.md §9, DESIGN.md §4), through Dagster against the
sandbox emulators over HTTP: one points transaction per member per run, exactly once even when a
response is lost after the write was applied; a 422 leaves the batch blocked with its reason; a member
without a customer waits and is sent later; Salesforce gets Contacts and transactions by external id
and only what changed; the sync log never holds an email address or a token."""

import datetime as dt
from decimal import Decimal

import duckdb
import pytest
import requests
from conftest import materialize_range, unconfigured_resources
from magento_factory import memo, order

from loyalty_assets.defs.resources import (
    LoyaltyLionResource,
    MagentoResource,
    SalesforceResource,
    SmileResource,
    Warehouse,
)

D = dt.date


def resources_for(box, warehouse):
    env = box.env()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return {
        **unconfigured_resources(),
        "warehouse": Warehouse(database=str(warehouse)),
        "magento": MagentoResource(base_url=env["MAGENTO_BASE_URL"], username=env["MAGENTO_ADMIN_USERNAME"],
                                   password=env["MAGENTO_ADMIN_PASSWORD"]),
        # an unknown outcome is looked up by the next run at once here (the settle wait has a test of its own)
        "smile": SmileResource(api_url=env["SMILE_API_URL"], api_key=env["SMILE_API_KEY"], settle_seconds=0),
        "loyaltylion": LoyaltyLionResource(api_url=env["LOYALTYLION_API_URL"], api_key=env["LOYALTYLION_API_KEY"],
                                           settle_seconds=0),
        "salesforce": salesforce_resource(env),
    }


def salesforce_resource(env: dict) -> SalesforceResource:
    return SalesforceResource(instance_url=env["SALESFORCE_INSTANCE_URL"], session_id=env["SALESFORCE_SESSION_ID"],
                              ca_bundle=env["SALESFORCE_CA_BUNDLE"])


def query(warehouse, sql, params=None):
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


def test_points_reach_smile_and_salesforce_exactly_once(sandbox, warehouse_path):
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="120.00", customer_id=5),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="80.00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)

    result = materialize_range("2024-03-01", "2024-03-06", resources)
    assert result.success
    txns = box.smile.transactions(ann["id"])
    assert [t["points_change"] for t in txns] == [120]
    assert query(warehouse_path, "SELECT target, status, points FROM outbox WHERE target = 'smile' ORDER BY points") == [
        ("smile", "awaiting_customer", 80), ("smile", "sent", 120)]
    batch = query(warehouse_path, "SELECT batch_id FROM outbox WHERE status = 'sent' AND target = 'smile'")[0][0]
    assert txns[0]["internal_note"] == batch

    contacts = {r["Loyalty_Member_Id__c"]: r for r in box.salesforce.records("Contact")}
    assert sorted(int(c["Loyalty_Points_Spendable__c"]) for c in contacts.values()) == [80, 120]
    assert len(box.salesforce.records("Loyalty_Transaction__c")) == 2
    # CONTRACT.md §5: lifetime spend in the program currency, the Smile.io referral link, the push's time
    ann_contact = next(c for c in contacts.values() if int(c["Loyalty_Points_Spendable__c"]) == 120)
    assert Decimal(str(ann_contact["Loyalty_Lifetime_Spend__c"])) == Decimal("120.00")
    assert ann_contact["Loyalty_Referral_Url__c"] == ann["referral_url"]
    bo_contact = next(c for c in contacts.values() if int(c["Loyalty_Points_Spendable__c"]) == 80)
    assert bo_contact["Loyalty_Referral_Url__c"] is None  # no Smile customer yet
    synced = {c["Loyalty_Member_Id__c"]: c["Loyalty_Synced_At__c"] for c in contacts.values()}
    assert all(synced.values())
    # every Salesforce call is logged with its own start and end
    assert query(warehouse_path, """SELECT count(*) FROM sync_log WHERE target = 'salesforce' AND http_status IS NOT NULL
                                    AND NOT (started_at <= finished_at)""") == [(0,)]
    logged = query(warehouse_path, "SELECT string_agg(coalesce(payload_summary, '') || coalesce(message, ''), ' ') FROM sync_log")[0][0]
    assert "@example.com" not in logged and box.smile.api_key not in logged
    # RULES.md §9, every call: the reconciliation's read of each platform's customers too
    assert query(warehouse_path, """SELECT target, operation, status, http_status, payload_summary FROM sync_log
                                    WHERE record_key = 'reconciliation' ORDER BY target""") == [
        ("loyaltylion", "GET /v2/customers", "ok", 200, "customers read for reconciliation: 0"),
        ("smile", "GET /v1/customers", "ok", 200, "customers read for reconciliation: 1")]

    # the same range again: nothing new is sent anywhere
    sf_upserts = len(query(warehouse_path, "SELECT 1 FROM sync_log WHERE target = 'salesforce' AND operation LIKE 'upsert%'"))
    assert materialize_range("2024-03-01", "2024-03-06", resources).success
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [120]
    assert len(query(warehouse_path, "SELECT 1 FROM sync_log WHERE target = 'salesforce' AND operation LIKE 'upsert%'"
                     )) == sf_upserts
    # unchanged rows are not sent again for their time of sync alone
    assert {c["Loyalty_Member_Id__c"]: c["Loyalty_Synced_At__c"] for c in box.salesforce.records("Contact")} == synced

    # a CRM user overwrites a field we own: the conflict is logged and our value wins on the next run
    contact = next(c for c in box.salesforce.records("Contact") if int(c["Loyalty_Points_Spendable__c"]) == 120)
    requests.patch(f"{box.env()['SALESFORCE_INSTANCE_URL']}/services/data/v62.0/sobjects/Contact/{contact['Id']}",
                   json={"Loyalty_Points_Spendable__c": 999}, verify=box.env()["SALESFORCE_CA_BUNDLE"], timeout=5,
                   headers={"Authorization": f"Bearer {box.env()['SALESFORCE_SESSION_ID']}"}).raise_for_status()
    assert materialize_range("2024-03-06", "2024-03-06", resources).success
    assert query(warehouse_path, "SELECT attribute, ours, theirs, owner, resolution FROM ownership_conflicts") == [
        ("Contact.Loyalty_Points_Spendable__c", "120", "999", "loyalty_assets", "ours pushed again")]
    assert int(box.salesforce.get_record("Contact", contact["Id"])["Loyalty_Points_Spendable__c"]) == 120

    # the second shopper joins Smile: the waiting batch goes out on the next run
    (bo,) = box.smile.add_customers([{"email": "bo@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    assert materialize_range("2024-03-06", "2024-03-06", resources).success
    assert [t["points_change"] for t in box.smile.transactions(bo["id"])] == [80]
    assert query(warehouse_path, "SELECT count(*) FROM outbox WHERE target = 'smile' AND status = 'sent'") == [(2,)]
    # the pusher never sent Smile.io more than 10 requests in any second
    assert 0 < max(box.smile.limiter.peak_arrivals.values()) <= 10


def test_lost_response_is_settled_without_sending_twice_and_422_blocks(sandbox, warehouse_path):
    import dagster as dg

    from loyalty_assets.defs.sync.assets import smile_points_push

    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00")],
                  creditmemos=[memo(9, 1, "2024-03-05 10:00:00", subtotal="90.00")],
                  now=dt.datetime(2024, 3, 3, 12, tzinfo=dt.UTC))
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    # the write is applied but its response never arrives
    box.smile.faults.set_script([{"drop": True, "method": "POST", "path": "/v1/points_transactions"}])
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [100]
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sending", 1)]
    # the lookup itself fails: still unknown, so nothing is sent (a POST now would credit it twice)
    box.smile.faults.set_script([{"status": 403, "method": "GET", "path": "/v1/points_transactions"}])
    smile_points_push(dg.build_asset_context(resources=resources, partition_key="2024-03-02"))
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [100]
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sending", 2)]
    assert "its lookup failed" in query(warehouse_path, "SELECT last_error FROM outbox WHERE target = 'smile'")[0][0]
    assert materialize_range("2024-03-02", "2024-03-02", resources).success
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [100]  # found, not resent
    assert query(warehouse_path, "SELECT status FROM outbox WHERE target = 'smile'") == [("sent",)]
    # RULES.md §9, every call in sync_log: the lost POST and both lookups, each under its attempt's
    # correlation id (the batch's row of that attempt has it too), the path without its query string
    batch = query(warehouse_path, "SELECT batch_id FROM outbox WHERE target = 'smile'")[0][0]
    rows = query(warehouse_path, """SELECT c.operation, c.status, c.http_status, r.status, r.http_status
                                    FROM sync_log c JOIN sync_log r ON r.correlation_id = c.correlation_id
                                         AND r.operation = 'points_transaction'
                                    WHERE c.target = 'smile' AND c.record_key = ? AND c.operation LIKE '% /%'
                                    ORDER BY c.started_at""", [batch])
    assert rows == [("POST /v1/points_transactions", "error", None, "sending", None),
                    ("GET /v1/points_transactions", "error", 403, "sending", 403),
                    ("GET /v1/points_transactions", "ok", 200, "sent", 200)]

    # the shopper spends 50 in Smile, then 90 of the order is refunded: -90 would go below zero
    env = box.env()
    requests.post(f"{env['SMILE_API_URL']}/points_transactions", timeout=5,
                  headers={"Authorization": f"Bearer {env['SMILE_API_KEY']}"},
                  json={"points_transaction": {"customer_id": ann["id"], "points_change": -50}}).raise_for_status()
    box.clock.set(dt.datetime(2024, 3, 7, 12, tzinfo=dt.UTC))
    assert materialize_range("2024-03-03", "2024-03-06", resources).success
    blocked = query(warehouse_path, "SELECT points, last_error FROM outbox WHERE target = 'smile' AND status = 'blocked'")
    assert len(blocked) == 1 and blocked[0][0] == -90 and "refused" in blocked[0][1]
    assert box.smile.balance(ann["id"]) == 50  # nothing half-applied


def test_a_target_answering_every_write_with_503_fails_the_push_at_once(sandbox, warehouse_path):
    """CONTRACT.md §1: a configured target that fails makes the run fail. A 503 to a write leaves its
    outcome unknown (looked up before any resend; one alone is settled by the next run), and with
    several unknown and none through the step fails at once: its retries (the step's retry policy)
    try again, and the run fails with the batches still unknown after three attempts. Before, an
    outage of every write passed two whole runs. Nothing is sent twice."""
    import dagster as dg

    from loyalty_assets.defs.sync.assets import smile_points_push

    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                          order(2, "2024-03-01 11:00:00", email="bo@example.com", subtotal="50.00")])
    ann, bo = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"},
                                       {"email": "bo@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    box.smile.faults.set_script([{"status": 503, "method": "POST", "path": "/v1/points_transactions"}] * 6)
    first = materialize_range("2024-03-01", "2024-03-02", resources)
    assert not first.success
    (failure,) = first.get_step_failure_events()
    assert failure.step_key == "smile_points_push"
    assert "2 writes of unknown outcome and none went through" in str(failure.step_failure_data.error)
    assert "2 batches still of unknown outcome after 3 attempts" in str(failure.step_failure_data.error)
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sending", 3)] * 2
    assert box.smile.transactions(ann["id"]) == box.smile.transactions(bo["id"]) == []
    smile_points_push(dg.build_asset_context(resources=resources, partition_key="2024-03-02"))  # the target is back
    assert [t["points_change"] for t in box.smile.transactions(ann["id"]) + box.smile.transactions(bo["id"])] == [100, 50]


def test_a_write_that_timed_out_is_left_to_settle_before_its_lookup_so_it_is_never_credited_twice(
        sandbox, warehouse_path):
    """RULES.md §9: after an uncertain outcome the batch is looked up before anything is sent again. Smile
    applies a POST the client gave up on (timeout 1 s) 6 s after it came: a lookup at once would find
    nothing and send it again. The batch waits settle_seconds; then it is found, not resent."""
    import time

    import dagster as dg

    from loyalty_assets.defs.sync.assets import smile_points_push

    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    env = box.env()
    resources = resources_for(box, warehouse_path)
    box.smile.faults.set_script([{"status": 503, "method": "POST", "path": "/v1/points_transactions"}])
    assert materialize_range("2024-03-01", "2024-03-02", resources).success  # a 503, not applied: unknown

    def push(settle: float):
        smile = SmileResource(api_url=env["SMILE_API_URL"], api_key=env["SMILE_API_KEY"], timeout_seconds=1.0,
                              settle_seconds=settle)
        return smile_points_push(dg.build_asset_context(resources={**resources, "smile": smile},
                                                        partition_key="2024-03-02"))

    box.smile.faults.set_script([{"delay": 6, "method": "POST", "path": "/v1/points_transactions"}])
    started = time.monotonic()
    push(0.0)  # looked up, not there, sent again: times out after 1 s, outcome unknown again
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sending", 2)]
    result = push(30.0)
    assert time.monotonic() - started < 6, "the second push must run while the first POST is still held"
    assert (result.metadata["in_flight"], result.metadata["attempted"]) == (1, 0)
    time.sleep(max(0.0, 7 - (time.monotonic() - started)))  # the held POST is applied now
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [100]
    push(0.0)  # settled: looked up, found, not sent again
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sent", 3)]
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [100]
    assert box.smile.balance(ann["id"]) == 100


def test_a_members_batches_go_in_order_so_a_debit_never_overtakes_its_credit(sandbox, warehouse_path):
    """Ann's +100 meets a 503 twice; meanwhile 90 is refunded. Sent before the +100 settled, the -90
    was refused (422, blocked for good) and Smile kept 100 for our 10. One batch a member a run, in order."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00")],
                  creditmemos=[memo(9, 1, "2024-03-05 10:00:00", subtotal="90.00")],
                  now=dt.datetime(2024, 3, 3, 12, tzinfo=dt.UTC))
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    box.smile.faults.set_script([{"status": 503, "method": "POST", "path": "/v1/points_transactions"}])
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    box.smile.faults.set_script([{"status": 503, "method": "POST", "path": "/v1/points_transactions"}])
    box.clock.set(dt.datetime(2024, 3, 7, 12, tzinfo=dt.UTC))
    assert materialize_range("2024-03-03", "2024-03-06", resources).success
    assert query(warehouse_path, "SELECT points, status FROM outbox WHERE target = 'smile' ORDER BY created_at") == [
        (100, "sending"), (-90, "pending")]
    box.smile.faults.clear()
    for _ in range(2):
        assert materialize_range("2024-03-06", "2024-03-06", resources).success
    assert query(warehouse_path, "SELECT points, status FROM outbox WHERE target = 'smile' ORDER BY created_at") == [
        (100, "sent"), (-90, "sent")]
    assert [t["points_change"] for t in sorted(box.smile.transactions(ann["id"]), key=lambda t: t["id"])] == [100, -90]
    assert box.smile.balance(ann["id"]) == 10


def test_runs_waiting_for_a_customer_are_no_attempts(sandbox, warehouse_path):
    """Bo waits two runs for a Smile customer; then his first write meets one 503: that is attempt 1,
    an unknown outcome the next run settles, not "unknown after 3 attempts"."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", email="bo@example.com", subtotal="50.00")])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    assert materialize_range("2024-03-03", "2024-03-03", resources).success
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("awaiting_customer", 0)]
    (bo,) = box.smile.add_customers([{"email": "bo@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    box.smile.faults.set_script([{"status": 503, "method": "POST", "path": "/v1/points_transactions"}])
    assert materialize_range("2024-03-04", "2024-03-04", resources).success
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sending", 1)]
    assert materialize_range("2024-03-04", "2024-03-04", resources).success
    assert [t["points_change"] for t in box.smile.transactions(bo["id"])] == [50]
    assert query(warehouse_path, "SELECT status, attempts FROM outbox WHERE target = 'smile'") == [("sent", 2)]


def test_a_waiting_batch_of_a_member_merged_away_goes_to_the_survivors_customer(sandbox, warehouse_path):
    """RULES.md §9 (awaiting_customer is retried, nothing is dropped) with §8 merges: bo's points wait
    for a Smile customer; bo's customer account then links to ann's e-mail, bo's member is absorbed
    by ann's, and the waiting batch goes to ann's Smile customer, once."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", customer_id=7, subtotal="50.00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    assert query(warehouse_path, "SELECT points, status FROM outbox WHERE target = 'smile' ORDER BY points") == [
        (50, "awaiting_customer"), (100, "sent")]

    box.magento.add_records("orders", [order(3, "2024-03-05 10:00:00", customer_id=7, subtotal="20.00")])
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    assert query(warehouse_path, "SELECT count(*) FROM member_merges") == [(1,)]
    assert sorted(t["points_change"] for t in box.smile.transactions(ann["id"])) == [20, 50, 100]
    assert query(warehouse_path, "SELECT points, status FROM outbox WHERE target = 'smile' ORDER BY points") == [
        (20, "sent"), (50, "sent"), (100, "sent")]
    assert materialize_range("2024-03-05", "2024-03-05", resources).success  # nothing twice
    assert len(box.smile.transactions(ann["id"])) == 3


def test_adjustment_requests_and_redemptions_reach_the_ledger_and_back(tmp_path, warehouse_path):
    import simplejson
    from conftest import write_seed

    from loyalty_assets.sandbox import Sandbox

    seed = write_seed(tmp_path / "seed", orders=[{**order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                                                  "coupon_code": "save3-abc"}])
    for sobject, records in {
        "Contact": [{"Id": "003000000000001AAA", "LastName": "Ann", "Email": "ANN@example.com",
                     "CreatedDate": "2024-02-01T00:00:00.000+0000"}],
        "Loyalty_Adjustment_Request__c": [
            {"Id": "a0A000000000001AAA", "Contact__c": "003000000000001AAA", "Points__c": 250,
             "Reason__c": "Goodwill: late delivery", "Status__c": "New", "CreatedDate": "2024-03-02T09:00:00.000+0000"},
            {"Id": "a0A000000000002AAA", "Contact__c": "003000000000001AAA", "Points__c": 25000,
             "Reason__c": "Typo", "Status__c": "New", "CreatedDate": "2024-03-02T10:00:00.000+0000"},
        ],
    }.items():
        (seed / "salesforce" / sobject).mkdir(parents=True)
        (seed / "salesforce" / sobject / "x.json").write_text(simplejson.dumps(records))
    (seed / "smile" / "customers").mkdir(parents=True)
    (seed / "smile" / "customers" / "x.json").write_text(simplejson.dumps(
        [{"id": 77, "email": "ann@example.com", "state": "member", "points_balance": 40,
          "created_at": "2024-01-01T00:00:00.000Z", "updated_at": "2024-01-01T00:00:00.000Z"}]))
    (seed / "smile" / "points_transactions").mkdir(parents=True)
    (seed / "smile" / "points_transactions" / "x.json").write_text(simplejson.dumps(
        [{"id": 9001, "customer_id": 77, "points_change": -30, "description": "Redeemed 30 points for $3 off",
          "internal_note": None, "created_at": "2024-03-03T08:00:00.000Z", "updated_at": "2024-03-03T08:00:00.000Z"}]))
    (seed / "smile" / "reward_fulfillments").mkdir(parents=True)
    (seed / "smile" / "reward_fulfillments" / "x.json").write_text(simplejson.dumps(
        [{"id": 555, "customer_id": 77, "points_transaction_id": 9001, "code": "SAVE3-ABC", "points_spent": 30,
          "created_at": "2024-03-03T08:00:00.000Z", "updated_at": "2024-03-03T08:00:00.000Z"}]))
    with Sandbox(seed, now=dt.datetime(2024, 3, 7, 12, tzinfo=dt.UTC)) as box:
        resources = resources_for(box, warehouse_path)
        assert materialize_range("2024-03-01", "2024-03-06", resources).success

        entries = query(warehouse_path, "SELECT kind, points, source, source_ref, order_key FROM ledger_entries "
                                        "ORDER BY booked_on, kind")
        # the redemption names the order its discount code was used on in its description; order_key
        # holds the order's own entries, which add up to what it is worth (RULES.md §6)
        assert entries == [("earn", 100, "magento", "000000001", "magento:default:1"),
                           ("manual", 250, "salesforce", "a0A000000000001AAA", None),
                           ("redeem", -30, "smile", "9001", None)]
        assert query(warehouse_path, "SELECT description FROM ledger_entries WHERE kind = 'redeem'")[0][0].endswith(
            "(code SAVE3-ABC used on magento:default:1)")
        # Smile gets the member's new spendable points, except the redemption it made itself
        assert [t["points_change"] for t in box.smile.transactions(77) if t.get("internal_note")] == [350]
        applied, rejected = (box.salesforce.get_record("Loyalty_Adjustment_Request__c", i)
                             for i in ("a0A000000000001AAA", "a0A000000000002AAA"))
        manual_id = query(warehouse_path, "SELECT entry_id FROM ledger_entries WHERE kind = 'manual'")[0][0]
        assert (applied["Status__c"], applied["Ledger_Entry_Id__c"]) == ("Applied", manual_id)
        assert rejected["Status__c"] == "Rejected" and "max_abs_points" in rejected["Result__c"]
        status = query(warehouse_path, "SELECT points_spendable, smile_customer_id, salesforce_id FROM member_status")
        assert status == [(320, "77", "003000000000001AAA")]
        # the CRM's own Contact carries the loyalty fields (written by its Id): no second Contact
        (contact,) = box.salesforce.records("Contact")
        assert (contact["Id"], contact["LastName"], int(contact["Loyalty_Points_Spendable__c"])) == (
            "003000000000001AAA", "Ann", 320)
        assert contact["Loyalty_Member_Id__c"] == query(warehouse_path, "SELECT member_id FROM member_status")[0][0]
        # Smile's balance (40 before + 350 pushed; its own redemption happened before) vs ours (320)
        recon = query(warehouse_path, "SELECT ours, theirs, unsent FROM reconciliation WHERE target = 'smile'")
        assert recon == [(320, 390, 0)]

        # a second run books nothing, sends nothing, and leaves the requests as they are
        assert materialize_range("2024-03-06", "2024-03-06", resources).success
        assert len(query(warehouse_path, "SELECT 1 FROM ledger_entries")) == 3
        assert [t["points_change"] for t in box.smile.transactions(77) if t.get("internal_note")] == [350]

        # the CRM fixes the rejected request and sets it back to New (through the REST API): it is
        # validated, booked and marked again
        box.clock.advance(3600)
        with resources["salesforce"].client() as client:
            client.update_record("Loyalty_Adjustment_Request__c", "a0A000000000002AAA",
                                 {"Points__c": 2500, "Status__c": "New"})
        box.clock.advance(3600)
        assert materialize_range("2024-03-07", "2024-03-07", resources).success
        manual = query(warehouse_path, "SELECT source_ref, points, booked_on FROM ledger_entries WHERE kind = 'manual' "
                                       "ORDER BY booked_on")
        assert manual == [("a0A000000000001AAA", 250, dt.date(2024, 3, 2)), ("a0A000000000002AAA", 2500, dt.date(2024, 3, 7))]
        fixed = box.salesforce.get_record("Loyalty_Adjustment_Request__c", "a0A000000000002AAA")
        entry = query(warehouse_path, "SELECT entry_id FROM ledger_entries WHERE source_ref = 'a0A000000000002AAA'")[0][0]
        assert (fixed["Status__c"], fixed["Ledger_Entry_Id__c"], fixed["Result__c"]) == (
            "Applied", entry, "Booked +2500 points on 2024-03-07")


def test_a_request_modified_after_the_last_booked_days_end_east_of_utc_is_left_for_its_day(tmp_path, monkeypatch):
    """RULES.md §9: a New request is booked, then marked Applied. In Asia/Tokyo, a valid request
    modified at 01:00 on 3 March (16:00 UTC on the 2nd) belongs to the 3rd: with the 2nd the last
    booked day it is not decided yet, so it stays New (it was marked Rejected for want of a member)."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.lib.program import parse_program
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program("timezone: Asia/Tokyo"))
    path = tmp_path / "w.duckdb"
    with wh.connect(str(path)) as conn:
        conn.execute("INSERT INTO ledger_watermark VALUES ('default', DATE '2024-03-02', DATE '2024-03-02', now())")
        for ref, at in (("a0A000000000001AAA", "2024-03-02 14:00:00+00"), ("a0A000000000002AAA", "2024-03-02 16:00:00+00")):
            conn.execute("""INSERT INTO loyalty_events (event_key, kind, source, source_ref, points, status, updated_at,
                                                        payload_hash) VALUES (?, 'manual', 'salesforce', ?, 100, 'valid', ?, 'h')""",
                         [f"salesforce:{ref}", ref, at])
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        emulator.add_records("Loyalty_Adjustment_Request__c", [
            {"Id": ref, "Points__c": 100, "Reason__c": "Goodwill", "Status__c": "New"}
            for ref in ("a0A000000000001AAA", "a0A000000000002AAA")])
        sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), salesforce_resource(emulator.env()),
                                Warehouse(database=str(path)))
        statuses = {r["Id"]: r["Status__c"] for r in emulator.records("Loyalty_Adjustment_Request__c")}
    # the first (23:00 on the 2nd in Tokyo) was decided on a booked day and no member took it
    assert statuses == {"a0A000000000001AAA": "Rejected", "a0A000000000002AAA": "New"}


def test_salesforce_collections_up_to_2000_rows_bulk_above_and_nothing_when_unchanged(tmp_path):
    """⌈n/200⌉ sObject Collections calls per object for n ≤ 2,000 changed rows, one Bulk 2.0 job above,
    and a second push with nothing changed sends nothing."""
    import types

    from loyalty_assets.defs.sync.salesforce import push_salesforce
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"

    def members(n: int, points: int) -> None:
        conn = wh.connect(str(path))
        conn.execute("DELETE FROM member_status")
        conn.execute(
            """INSERT INTO member_status SELECT 'M' || lpad(CAST(i AS VARCHAR), 5, '0'), 'm' || i || '@example.com',
                      ?, 0, ?, 'Bronze', 0, NULL, NULL, NULL, NULL, DATE '2024-03-01', now()
               FROM range(?) t(i)""", [points, points, n])
        conn.execute(
            """INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on, order_key,
                      source, source_version, rule_version, journaled_at)
               SELECT 'E' || lpad(CAST(i AS VARCHAR), 5, '0'), 'M' || lpad(CAST(i AS VARCHAR), 5, '0'), 'earn', ?,
                      DATE '2024-03-01', DATE '2024-03-01', 'o' || i, 'magento', 'v', 'r', now()
               FROM range(?) t(i) ON CONFLICT DO NOTHING""", [points, n])
        conn.close()

    def calls(operation_like: str, sobject: str) -> int:
        conn = wh.connect(str(path))
        try:
            return conn.execute("SELECT count(*) FROM sync_log WHERE operation LIKE ? AND record_key LIKE ?",
                                [operation_like, f"%/{sobject}%"]).fetchone()[0]
        finally:
            conn.close()

    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        env = emulator.env()
        resource = salesforce_resource(env)
        ctx = types.SimpleNamespace(run_id="test")
        members(450, 10)
        summary = push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["transactions"], summary["failed_records"]) == (450, 450, 0)
        assert calls("%collections%", "Contact") == 3
        assert calls("%collections%", "Loyalty_Transaction__c") == 3
        assert len(emulator.records("Contact")) == 450

        before = calls("%", "")
        assert push_salesforce(ctx, resource, Warehouse(database=str(path)))["calls"] == 0
        assert calls("%", "") == before

        members(2500, 20)  # 2,500 changed Contacts (and 2,050 new transactions): Bulk API 2.0
        summary = push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert summary["failed_records"] == 0 and summary["contacts"] == 2500
        assert calls("%collections%", "Contact") == 3  # no new Collections calls for Contact
        assert 0 < calls("%", "jobs/ingest") <= 10 * 2
        assert {int(c["Loyalty_Points_Spendable__c"]) for c in emulator.records("Contact")} == {20}


def test_dry_run_writes_what_would_be_sent_and_sends_nothing(sandbox, warehouse_path, monkeypatch):
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="120.00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    monkeypatch.setenv("LOYALTY_SYNC_DRY_RUN", "1")
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    assert box.smile.transactions(ann["id"]) == [] and box.salesforce.records("Contact") == []
    # what each push would send, and the only calls made: the reconciliation's reads
    assert query(warehouse_path, "SELECT target, operation, status, count(*) FROM sync_log GROUP BY ALL ORDER BY 1, 2") == [
        ("loyaltylion", "GET /v2/customers", "ok", 1), ("loyaltylion", "points_transaction", "dry_run", 1),
        ("smile", "GET /v1/customers", "ok", 1), ("smile", "points_transaction", "dry_run", 1)]
    monkeypatch.delenv("LOYALTY_SYNC_DRY_RUN")
    assert materialize_range("2024-03-02", "2024-03-02", resources).success
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [120]


def test_transactions_as_platform_events_by_configuration(tmp_path, monkeypatch):
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.lib.program import parse_program
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program("salesforce: {transactions_as: platform_event}"))
    path = tmp_path / "w.duckdb"
    conn = wh.connect(str(path))
    conn.execute("INSERT INTO member_status VALUES ('M1', 'a@example.com', 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, NULL, "
                 "DATE '2024-03-01', now()), ('M2', 'b@example.com', 500, 0, 500, 'Bronze', 0, NULL, NULL, NULL, NULL, "
                 "DATE '2024-03-01', now())")
    conn.execute("""INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on, order_key,
                    source, source_version, rule_version, journaled_at)
                    VALUES ('E1', 'M1', 'earn', 10, DATE '2024-03-01', DATE '2024-03-01', 'o1', 'magento', 'v', 'r', now()),
                           ('R2', 'M2', 'referral', 500, DATE '2024-03-01', DATE '2024-03-01', NULL, 'program', 'v', 'r', now())""")
    conn.close()
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        env = emulator.env()
        resource = salesforce_resource(env)
        summary = sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), resource, Warehouse(database=str(path)))
        assert summary["failed_records"] == 0
        # an event names the member, Contact or Lead: M2, a referrer with no order of its own, gets its bonus too
        assert sorted((e["Event_Id__c"], e["Member_Id__c"], e["Event_Type__c"]) for e in emulator.events) == [
            ("E1", "M1", "earn"), ("R2", "M2", "referral")]
        assert emulator.records("Loyalty_Transaction__c") == []
        # delivered once: a second push publishes nothing
        sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), resource, Warehouse(database=str(path)))
        assert len(emulator.events) == 2


def test_transactions_as_task_activities_by_configuration(sandbox, warehouse_path, monkeypatch):
    """RULES.md §9 "Task activities ... by configuration": each entry and tier change is a completed Task
    on the member's Contact, upserted by Transaction_Id__c, sent once."""
    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib.program import parse_program

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program("salesforce: {transactions_as: task}"))
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="620.00", customer_id=5),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="80.00")],
                  creditmemos=[memo(1, 1, "2024-03-03 09:00:00", subtotal="20.00")])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-04", resources).success

    contacts = {c["Id"]: c["Loyalty_Member_Id__c"] for c in box.salesforce.records("Contact")}
    tasks = sorted(box.salesforce.records("Task"), key=lambda t: (t["ActivityDate"], t["Subject"]))
    assert box.salesforce.records("Loyalty_Transaction__c") == []
    assert [(t["ActivityDate"], t["Subject"], t["Type__c"], t["Points__c"], t["Tier__c"]) for t in tasks] == [
        ("2024-03-01", "Loyalty points: earn +620", "earn", 620, None),
        ("2024-03-01", "Loyalty tier: Bronze -> Silver", "tier_change", None, "Silver"),
        ("2024-03-02", "Loyalty points: earn +80", "earn", 80, None),
        ("2024-03-03", "Loyalty points: clawback -20", "clawback", -20, None),
    ]
    assert all(t["Status"] == "Completed" and t["IsClosed"] and t["WhoId"] in contacts for t in tasks)
    ann = {t["WhoId"] for t in tasks if t["Points__c"] != 80}
    assert len(ann) == 1 and len({t["WhoId"] for t in tasks}) == 2
    entries = dict(query(warehouse_path, "SELECT entry_id, member_id FROM ledger_entries"))
    assert {t["Transaction_Id__c"]: contacts[t["WhoId"]] for t in tasks if t["Type__c"] != "tier_change"} == entries

    # sent once: the next run upserts no Task
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    assert len(box.salesforce.records("Task")) == 4
    assert query(warehouse_path, """SELECT count(*), count(DISTINCT run_id) FROM sync_log
                                    WHERE operation = 'upsert Task' AND status = 'sent'""") == [(4, 1)]


def test_task_days_are_program_days_and_a_lead_gets_its_tier_change(tmp_path, monkeypatch):
    """Tasks in a program west of UTC: ActivityDate is the day booked (or the tier changed) in
    the program timezone, Occurred_At__c that day's start there when the entry has no time of its own;
    a member with no earn yet (a Lead) gets its tier change and its entries (a referrer's bonus) on the Lead."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.lib.program import parse_program
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program(
        "timezone: America/New_York\nsalesforce: {transactions_as: task}"))
    path = tmp_path / "w.duckdb"
    conn = wh.connect(str(path))
    for member, email in (("M1", "a@example.com"), ("M2", "b@example.com")):
        conn.execute("INSERT INTO member_status VALUES (?, ?, 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, NULL, "
                     "DATE '2024-03-02', now())", [member, email])
    conn.execute("""INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on, order_key,
                    source, source_version, rule_version, journaled_at)
                    VALUES ('E1', 'M1', 'earn', 10, DATE '2024-03-02', DATE '2024-03-02', 'o1', 'magento', 'v', 'r', now()),
                           ('R2', 'M2', 'referral', 500, DATE '2024-03-02', DATE '2024-03-02', NULL, 'program', 'v', 'r', now())""")
    conn.execute("""INSERT INTO vip_tier_changes VALUES ('C1', 'M1', DATE '2024-03-02', 'Bronze', 'Silver', 'upgrade', 600),
                    ('C2', 'M2', DATE '2024-03-02', 'Bronze', 'Silver', 'upgrade', 550)""")
    conn.close()
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        summary = sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), salesforce_resource(emulator.env()),
                                          Warehouse(database=str(path)))
        assert summary["failed_records"] == 0
        tasks = {t["Transaction_Id__c"]: t for t in emulator.records("Task")}
        assert {k: (t["ActivityDate"], t["Occurred_At__c"]) for k, t in tasks.items()} == {
            k: ("2024-03-02", "2024-03-02T05:00:00.000+0000") for k in ("E1", "C1", "C2", "R2")}
        lead = emulator.get_record("Lead", "M2", "Loyalty_Member_Id__c")
        contact = emulator.get_record("Contact", "M1", "Loyalty_Member_Id__c")
        assert (tasks["C2"]["WhoId"], tasks["R2"]["WhoId"], tasks["C1"]["WhoId"], tasks["E1"]["WhoId"]) == (
            lead["Id"], lead["Id"], contact["Id"], contact["Id"])
        assert tasks["R2"]["Subject"] == "Loyalty points: referral +500"


def test_after_a_merge_the_absorbed_members_transactions_move_to_the_survivors_contact(tmp_path):
    """RULES.md §8-§9: ledger_entries shows each entry under the surviving member after a merge, and
    the Loyalty_Transaction__c records pushed before it hang on the absorbed member's Contact: they are
    upserted again by their ids onto the survivor's Contact (where its points are), once; rows sent
    before the member was recorded ('sent') count as sent for the member they were booked for."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    with wh.connect(str(path)) as conn:
        for member, email, entry in (("M1", "a@example.com", "E1"), ("M2", "b@example.com", "E2")):
            conn.execute("INSERT INTO member_status VALUES (?, ?, 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, NULL, "
                         "DATE '2024-03-01', now())", [member, email])
            conn.execute("""INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on,
                            order_key, source, source_version, rule_version, journaled_at)
                            VALUES (?, ?, 'earn', 10, DATE '2024-03-01', DATE '2024-03-01', ?, 'magento', 'v', 'r', now())""",
                         [entry, member, f"o{entry}"])
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        resource, ctx = salesforce_resource(emulator.env()), types.SimpleNamespace(run_id="t")
        sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        contacts = {c["Loyalty_Member_Id__c"]: c["Id"] for c in emulator.records("Contact")}
        assert {t["Transaction_Id__c"]: t["Contact__c"] for t in emulator.records("Loyalty_Transaction__c")} == {
            "E1": contacts["M1"], "E2": contacts["M2"]}
        with wh.connect(str(path)) as conn:
            conn.execute("INSERT INTO member_merges VALUES ('M1', 'M2', 'shared_key', 'b@example.com', DATE '2024-03-02')")
            conn.execute("DELETE FROM member_status WHERE member_id = 'M2'")
            conn.execute("UPDATE member_status SET points_spendable = 20 WHERE member_id = 'M1'")
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["transactions"], summary["failed_records"]) == (1, 0)
        assert {t["Transaction_Id__c"]: t["Contact__c"] for t in emulator.records("Loyalty_Transaction__c")} == {
            "E1": contacts["M1"], "E2": contacts["M1"]}
        assert sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))["transactions"] == 0
        # a row written before the member was kept ('sent'): sent for the member it was booked for
        with wh.connect(str(path)) as conn:
            conn.execute("UPDATE sync_state SET values_hash = 'sent' WHERE object = 'Loyalty_Transaction__c'")
        assert sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))["transactions"] == 1


def test_a_leads_tier_change_waits_for_its_contact_as_a_custom_object(tmp_path):
    """Loyalty_Transaction__c records hang on the member's Contact: a member still a Lead (its tier
    lifted by orders below min_eligible, say) gets its tier change with its first earn, not a failure
    on every run before."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    with wh.connect(str(path)) as conn:
        conn.execute("INSERT INTO vip_tier_changes VALUES ('C1', 'M1', DATE '2024-03-01', 'Bronze', 'Silver', 'upgrade', 600)")
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        resource, ctx = salesforce_resource(emulator.env()), types.SimpleNamespace(run_id="t")
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["leads"], summary["transactions"], summary["failed_records"]) == (1, 0, 0)
        assert emulator.records("Loyalty_Transaction__c") == []

        _first_earn(path)
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["transactions"], summary["failed_records"]) == (1, 2, 0)
        (contact,) = emulator.records("Contact")
        assert sorted((t["Transaction_Id__c"], t["Contact__c"]) for t in emulator.records("Loyalty_Transaction__c")) == [
            ("C1", contact["Id"]), ("E1", contact["Id"])]


def test_a_crm_contact_is_written_by_its_id_and_one_deleted_since_is_created_again(tmp_path):
    """A member whose Contact the CRM already has (pulled, linked by identity) is written on that
    Contact by its Id, which sets our external id on it; one deleted in the CRM since is created anew."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    conn = wh.connect(str(path))
    for member, email, contact in (("M1", "a@example.com", "003000000000001AAA"),
                                   ("M2", "b@example.com", "003000000000002AAA")):
        conn.execute("INSERT INTO member_status VALUES (?, ?, 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, ?, "
                     "DATE '2024-03-01', now())", [member, email, contact])
        conn.execute("""INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on,
                        order_key, source, source_version, rule_version, journaled_at)
                        VALUES (?, ?, 'earn', 10, DATE '2024-03-01', DATE '2024-03-01', ?, 'magento', 'v', 'r', now())""",
                     ["E" + member, member, "o" + member])
    conn.close()
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        emulator.add_records("Contact", [{"Id": "003000000000001AAA", "LastName": "Aho", "Email": "A@example.com"}])
        summary = sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), salesforce_resource(emulator.env()),
                                          Warehouse(database=str(path)))
        assert summary["failed_records"] == 0
        contacts = {c["Loyalty_Member_Id__c"]: c for c in emulator.records("Contact")}
        assert sorted(contacts) == ["M1", "M2"]
        assert (contacts["M1"]["Id"], contacts["M1"]["LastName"], contacts["M1"]["Loyalty_Points_Spendable__c"]) == (
            "003000000000001AAA", "Aho", 10)  # the CRM's name kept
        assert contacts["M2"]["Id"] != "003000000000002AAA" and contacts["M2"]["LastName"] == "b"
        assert [t["Contact__c"] for t in sorted(emulator.records("Loyalty_Transaction__c"),
                                                key=lambda t: t["Transaction_Id__c"])] == [
            contacts["M1"]["Id"], contacts["M2"]["Id"]]


def _member_without_earn(path) -> None:
    """Member M1 with no entry yet (a Lead)."""
    from loyalty_assets.lib import warehouse as wh

    with wh.connect(str(path)) as conn:
        conn.execute("INSERT INTO member_status VALUES ('M1', 'a@example.com', 0, 0, 0, 'Bronze', 0, NULL, NULL, NULL, "
                     "NULL, DATE '2024-03-01', now())")


def _first_earn(path) -> None:
    """M1's first earn entry, and the 10 points it makes spendable."""
    from loyalty_assets.lib import warehouse as wh

    with wh.connect(str(path)) as conn:
        conn.execute("""INSERT INTO ledger_journal (entry_id, booked_member_id, kind, points, booked_on, available_on,
                        order_key, source, source_version, rule_version, journaled_at)
                        VALUES ('E1', 'M1', 'earn', 10, DATE '2024-03-02', DATE '2024-03-02', 'o1', 'magento', 'v', 'r', now())""")
        conn.execute("UPDATE member_status SET points_spendable = 10")


def test_member_is_a_lead_until_its_first_earn_then_the_lead_is_marked_converted(tmp_path, monkeypatch):
    """RULES.md §9: a Lead until the first `earn` entry, then the Contact is upserted and the Lead marked
    converted through the configured status field; lifetime spend in the program currency's digits."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.lib.program import parse_program
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program(
        "salesforce: {lead_status_field: Status, lead_converted_status: 'Working - Contacted'}"))
    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        env = emulator.env()
        resource = salesforce_resource(env)
        ctx = types.SimpleNamespace(run_id="t")
        assert sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))["leads"] == 1
        (lead,) = emulator.records("Lead")
        assert (lead["Loyalty_Member_Id__c"], lead["Status"]) == ("M1", "Open - Not Contacted")
        assert emulator.records("Contact") == []

        _first_earn(path)
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["conversions"], summary["failed_records"]) == (1, 1, 0)
        assert [(c["Loyalty_Member_Id__c"], int(c["Loyalty_Points_Spendable__c"])) for c in emulator.records("Contact")] == [
            ("M1", 10)]
        assert emulator.records("Lead")[0]["Status"] == "Working - Contacted"
        # nothing changed since: nothing is sent (the Lead's marking is not the member's last write)
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["conversions"], summary["calls"]) == (0, 0, 0)
        conn = wh.connect(str(path))
        assert conn.execute("SELECT operation FROM sync_log WHERE record_key = 'M1' ORDER BY operation").fetchall() == [
            ("convert Lead",), ("upsert Contact",), ("upsert Lead",)]
        conn.close()

    monkeypatch.setattr(sf_push, "PROGRAM", parse_program("currency: JPY"))
    assert sf_push._member_values({"points_spendable": 1, "points_pending": 0, "vip_tier": "Bronze", "spend_minor": 1234,
                                   "referral_url": None})["Loyalty_Lifetime_Spend__c"] == "1234"
    monkeypatch.setattr(sf_push, "PROGRAM", parse_program("currency: KWD"))
    assert sf_push._member_values({"points_spendable": 1, "points_pending": 0, "vip_tier": "Bronze", "spend_minor": 1234,
                                   "referral_url": None})["Loyalty_Lifetime_Spend__c"] == "1.234"


def test_a_lead_is_not_marked_converted_while_its_contact_is_refused(tmp_path):
    """RULES.md §9: the Contact is upserted, then the Lead marked converted. When Salesforce refuses
    the Contact (a tier name longer than the field's 40 characters: STRING_TOO_LONG), the Lead stays
    open and its marking waits with the Contact; once the Contact goes through, both are done."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        resource, ctx = salesforce_resource(emulator.env()), types.SimpleNamespace(run_id="t")
        sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        _first_earn(path)
        with wh.connect(str(path)) as conn:
            conn.execute("UPDATE member_status SET vip_tier = 'A tier whose name is longer than forty characters'")
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        # the Contact refused, and the earn entry's transaction, which hangs on it: both tried again later
        assert (summary["contacts"], summary["failed_records"]) == (1, 2)
        assert emulator.records("Contact") == []
        (lead,) = emulator.records("Lead")
        assert lead["Status"] == "Open - Not Contacted"  # not converted: the member has no Contact yet
        with wh.connect(str(path)) as conn:
            assert conn.execute("SELECT operation, status FROM sync_log WHERE record_key = 'M1' "
                                "ORDER BY started_at, operation").fetchall() == [
                ("upsert Lead", "sent"), ("upsert Contact", "failed")]
            conn.execute("UPDATE member_status SET vip_tier = 'Gold'")
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["conversions"], summary["transactions"], summary["failed_records"]) == (
            1, 1, 1, 0)
        assert [c["Loyalty_Member_Id__c"] for c in emulator.records("Contact")] == ["M1"]
        assert emulator.records("Lead")[0]["Status"] == "Closed - Converted"


def test_a_lead_deleted_in_the_crm_is_skipped_once_not_marked_on_every_run(tmp_path):
    """The member's Lead was deleted in the CRM before its first earn: the Contact is upserted, and the
    marking (an upsert by our external id, which would create a Lead without its required fields) is
    logged `skipped` with the reason, not `failed` again on every run."""
    import types

    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        env = emulator.env()
        resource, ctx = salesforce_resource(env), types.SimpleNamespace(run_id="t")
        assert sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))["leads"] == 1
        (lead,) = emulator.records("Lead")
        deleted = requests.delete(f"{env['SALESFORCE_INSTANCE_URL']}/services/data/v62.0/sobjects/Lead/{lead['Id']}",
                                  headers={"Authorization": f"Bearer {env['SALESFORCE_SESSION_ID']}"},
                                  verify=env["SALESFORCE_CA_BUNDLE"], timeout=10)
        assert deleted.status_code == 204 and emulator.records("Lead") == []

        _first_earn(path)
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["conversions"], summary["failed_records"]) == (1, 1, 0)
        assert [c["Loyalty_Member_Id__c"] for c in emulator.records("Contact")] == ["M1"]
        assert emulator.records("Lead") == []  # not created again by the marking
        # settled: the next run has nothing to send
        summary = sf_push.push_salesforce(ctx, resource, Warehouse(database=str(path)))
        assert (summary["contacts"], summary["conversions"], summary["calls"], summary["failed_records"]) == (0, 0, 0, 0)
    conn = wh.connect(str(path))
    assert conn.execute("""SELECT operation, status, message FROM sync_log WHERE record_key = 'M1'
                           ORDER BY operation""").fetchall() == [
        ("convert Lead", "skipped", "the Lead is no longer in the CRM (deleted there): nothing to mark converted"),
        ("upsert Contact", "sent", None), ("upsert Lead", "sent", None)]
    conn.close()


def test_crm_leads_are_identity_keys_and_an_open_one_is_written_on_not_duplicated(sandbox, warehouse_path):
    """RULES.md §8: a Salesforce Lead id is an identity key. A member the CRM has as an open Lead is
    written on it by its Id (our external id set on it), a converted one (read-only) is left alone;
    duplicate Leads of one e-mail join one member, and its Contact is preferred once it has one."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", email="bo@example.com", subtotal="80.00", state="new"),
                          order(1, "2024-03-03 09:00:00", email="bo@example.com", subtotal="80.00",
                                created_at="2024-03-01 10:00:00"),
                          order(2, "2024-03-01 11:00:00", email="cy@example.com", subtotal="50.00", state="new")])
    bo_lead, bo_duplicate, cy_converted = box.salesforce.add_records("Lead", [
        {"LastName": "Bo", "Company": "Bo Ltd", "Email": "BO@example.com", "LastModifiedDate": "2024-01-01T00:00:00.000+0000"},
        {"LastName": "Bo", "Company": "Bo Ltd", "Email": "bo@example.com", "LastModifiedDate": "2024-02-01T00:00:00.000+0000"},
        {"LastName": "Cy", "Company": "Cy", "Email": "cy@example.com", "IsConverted": True, "Status": "Closed - Converted",
         "LastModifiedDate": "2024-01-01T00:00:00.000+0000"}])
    box.salesforce.add_records("Lead", [{"LastName": "Nobody", "Company": "Trade show"}])  # no e-mail: not read
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    members = dict(query(warehouse_path, "SELECT email, member_id FROM member_status"))
    assert sorted(members) == ["bo@example.com", "cy@example.com"]
    keys = query(warehouse_path, "SELECT key, key_type FROM member_keys WHERE member_id = ? AND key LIKE 'salesforce:%' "
                                 "ORDER BY key", [members["bo@example.com"]])
    assert keys == sorted([(f"salesforce:default:{bo_lead}", "salesforce_id"),
                           (f"salesforce:default:{bo_duplicate}", "salesforce_id")])
    assert query(warehouse_path, "SELECT count(*) FROM identity_conflicts") == [(0,)]
    assert query(warehouse_path, "SELECT count(*) FROM raw_records WHERE source = 'salesforce.leads'") == [(3,)]
    leads = {lead["Id"]: lead for lead in box.salesforce.records("Lead") if lead["Email"]}
    assert len(leads) == 4  # the CRM's three and cy's: its Lead was converted
    assert (leads[bo_lead]["Loyalty_Member_Id__c"], leads[bo_lead]["LastName"], leads[bo_lead]["Company"]) == (
        members["bo@example.com"], "Bo", "Bo Ltd")  # the CRM's names kept
    assert leads[bo_duplicate]["Loyalty_Member_Id__c"] is None and leads[cy_converted]["Loyalty_Member_Id__c"] is None
    (cy_lead,) = [lead for lead in leads.values() if lead["Loyalty_Member_Id__c"] == members["cy@example.com"]]
    assert cy_lead["Id"] not in (bo_lead, bo_duplicate, cy_converted)
    assert query(warehouse_path, "SELECT email, salesforce_id FROM member_status ORDER BY email") == [
        ("bo@example.com", bo_lead), ("cy@example.com", cy_converted)]

    # bo's order is paid: a Contact is created and its Lead marked converted; read back, the Contact is
    # the member's record, written on from then on (no second Contact)
    assert materialize_range("2024-03-03", "2024-03-04", resources).success
    (contact,) = box.salesforce.records("Contact")
    assert (contact["Loyalty_Member_Id__c"], int(contact["Loyalty_Points_Spendable__c"])) == (members["bo@example.com"], 80)
    assert box.salesforce.get_record("Lead", bo_lead)["Status"] == "Closed - Converted"
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    assert query(warehouse_path, "SELECT salesforce_id FROM member_status WHERE email = 'bo@example.com'") == [
        (contact["Id"],)]
    assert len(box.salesforce.records("Contact")) == 1 and len(box.salesforce.records("Lead")) == 5
    assert query(warehouse_path, "SELECT count(DISTINCT member_id) FROM member_keys") == [(2,)]

    # a sales rep converts cy's Lead (ours) before cy earns, and cy's values change (a Smile.io customer
    # with a referral link): cy is written on the Contact the conversion made, not on the read-only Lead
    box.clock.advance(3600)  # the conversion is the Lead's latest version
    converted_contact = box.salesforce.convert_lead(cy_lead["Id"])
    (cy_smile,) = box.smile.add_customers([{"email": "cy@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    assert materialize_range("2024-03-06", "2024-03-06", resources).success
    cy = box.salesforce.get_record("Contact", converted_contact)
    assert (cy["Loyalty_Member_Id__c"], cy["Loyalty_Referral_Url__c"]) == (members["cy@example.com"], cy_smile["referral_url"])
    assert len(box.salesforce.records("Contact")) == 2 and len(box.salesforce.records("Lead")) == 5
    assert box.salesforce.get_record("Lead", cy_lead["Id"])["Loyalty_Referral_Url__c"] is None
    assert query(warehouse_path, "SELECT salesforce_id FROM member_status WHERE email = 'cy@example.com'") == [
        (converted_contact,)]


def test_person_accounts_by_configuration(sandbox, warehouse_path, monkeypatch):
    """CONTRACT.md §5 "Person Account when enabled": a member past its first earn is a Person Account
    (upserted on Account by Loyalty_Member_Id__pc, created with the PersonAccount record type); its
    person Contact carries the loyalty fields and the transactions; a Lead is marked converted."""
    import types

    import pytest

    from loyalty_assets.defs.ingest import pulls
    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.lib.program import parse_program

    for module in (sf_push, pulls):  # the push and the pull of Contacts (IsPersonAccount)
        monkeypatch.setattr(module, "PROGRAM", parse_program("salesforce: {person_accounts: true}"))
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="120.00", customer_id=5),
                          order(2, "2024-03-03 10:00:00", email="bo@example.com", subtotal="80.00", state="new"),
                          order(2, "2024-03-04 09:00:00", email="bo@example.com", subtotal="80.00",
                                created_at="2024-03-03 10:00:00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    # ann is a person account in the CRM already: it is written by its Id, not duplicated
    from loyalty_assets.sandbox.salesforce import PERSON_ACCOUNT_RECORD_TYPE_ID
    (crm_ann,) = box.salesforce.add_records("Account", [{"RecordTypeId": PERSON_ACCOUNT_RECORD_TYPE_ID, "FirstName": "Ann",
                                                         "LastName": "Lee", "PersonEmail": "ann@example.com"}])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-03", resources).success
    (account,) = box.salesforce.records("Account")
    (lead,) = box.salesforce.records("Lead")  # bo: no earn yet (the order is pending)
    assert (account["Id"], account["IsPersonAccount"], account["Name"], account["PersonEmail"]) == (
        crm_ann, True, "Ann Lee", "ann@example.com")
    assert (int(account["Loyalty_Points_Spendable__pc"]), account["Loyalty_Referral_Url__pc"]) == (120, ann["referral_url"])
    (person,) = box.salesforce.records("Contact")
    assert (person["Id"], person["Loyalty_Member_Id__c"], int(person["Loyalty_Points_Spendable__c"])) == (
        account["PersonContactId"], account["Loyalty_Member_Id__pc"], 120)
    assert [t["Contact__c"] for t in box.salesforce.records("Loyalty_Transaction__c")] == [person["Id"]]
    assert query(warehouse_path, "SELECT object, count(*) FROM sync_state WHERE object IN ('Account', 'Contact', 'Lead') "
                                 "GROUP BY 1 ORDER BY 1") == [("Account", 1), ("Lead", 1)]

    # bo's order is paid: the Lead becomes a Person Account and is marked converted
    assert materialize_range("2024-03-04", "2024-03-04", resources).success
    assert len(box.salesforce.records("Account")) == 2
    assert box.salesforce.get_record("Lead", lead["Loyalty_Member_Id__c"], "Loyalty_Member_Id__c")["Status"] == (
        "Closed - Converted")
    assert len([c for c in box.salesforce.records("Contact") if c["IsPersonAccount"]]) == 2

    # a record type the org does not have: a clear error before anything is sent
    monkeypatch.setattr(sf_push, "PROGRAM", parse_program(
        "salesforce: {person_accounts: true, person_account_record_type: Shopper}"))
    warehouse = Warehouse(database=str(warehouse_path))
    with warehouse.connect() as conn:
        conn.execute("DELETE FROM sync_state WHERE object = 'Account'")
    upserts = box.salesforce.request_summary()["by_route"].get("collections upsert", 0)
    with pytest.raises(ValueError, match="person_account_record_type: Account has no active record type 'Shopper'"):
        sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), resources["salesforce"], warehouse)
    assert box.salesforce.request_summary()["by_route"].get("collections upsert", 0) == upserts


def test_a_target_that_fails_fails_the_run_and_its_batches_go_out_on_the_next(sandbox, warehouse_path):
    """CONTRACT.md §1: a configured target that fails fails the run (`loyalty run` exits non-zero);
    the failed batch is recorded with its reason and sent by the next run, once."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="120.00")])
    (ann,) = box.smile.add_customers([{"email": "ann@example.com", "created_at": "2024-01-01T00:00:00Z"}])
    resources = resources_for(box, warehouse_path)
    # Smile.io refuses the points transaction with 403 (the key lost its write scope): a certain failure,
    # on the step's first attempt and on both of its retries (RETRY: a passing refusal is retried by Dagster)
    box.smile.faults.set_script([{"status": 403, "method": "POST", "path": "/v1/points_transactions"}] * 3)

    result = materialize_range("2024-03-01", "2024-03-02", resources)
    assert not result.success
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failed] == ["smile_points_push"]
    assert "1 of 1 batches failed" in str(failed[0].event_specific_data.error)
    assert query(warehouse_path, "SELECT status FROM outbox WHERE target = 'smile'") == [("failed",)]
    assert box.smile.transactions(ann["id"]) == []
    # the other targets were still pushed
    assert len(box.salesforce.records("Contact")) == 1

    assert materialize_range("2024-03-02", "2024-03-02", resources).success
    assert [t["points_change"] for t in box.smile.transactions(ann["id"])] == [120]
    assert query(warehouse_path, "SELECT status FROM outbox WHERE target = 'smile'") == [("sent",)]


def test_a_push_the_api_limit_stops_fails_after_logging_its_calls_and_the_next_run_sends(tmp_path):
    """CONTRACT.md §1 (a configured target that fails fails the run) and RULES.md §9 (every call in
    sync_log): Salesforce refusing every call with REQUEST_LIMIT_EXCEEDED stops the push, which logs
    the refused call and fails its step saying why; once the allowance is back, the next run sends."""
    import dagster as dg
    import pytest

    from loyalty_assets.defs.sync.assets import salesforce_push
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        resources = {"warehouse": Warehouse(database=str(path)), "salesforce": salesforce_resource(emulator.env())}
        emulator.set_api_usage(emulator.daily_api_limit)  # the day's allowance spent
        with pytest.raises(dg.Failure, match="stopped: REQUEST_LIMIT_EXCEEDED"):
            salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
        assert emulator.records("Lead") == []
        logged = query(path, "SELECT operation, status, http_status FROM sync_log")
        assert logged and {(s, h) for _, s, h in logged} == {("error", 403)}
        assert query(path, "SELECT count(*) FROM sync_state") == [(0,)]

        emulator.set_api_usage(0)
        salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
        assert [lead["Loyalty_Member_Id__c"] for lead in emulator.records("Lead")] == ["M1"]


def test_a_whole_call_that_fails_still_leaves_the_calls_before_it_in_the_sync_log(tmp_path):
    """RULES.md §9: every call is logged, also when a whole call fails and the push stops there: the
    Contact sent before it is in sync_log and sync_state (not sent again), the refused call too, and
    each record it carried as failed with the reason."""
    import types

    import pytest

    from loyalty_assets.clients.salesforce import SalesforceApiError
    from loyalty_assets.defs.sync import salesforce as sf_push
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    _member_without_earn(path)
    _first_earn(path)  # M1: a Contact, with a transaction to send after it
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        emulator.faults.set_script([{"status": 400, "method": "PATCH", "path": "Loyalty_Transaction__c",
                                     "body": [{"errorCode": "INVALID_FIELD", "message": "No such column"}]}])
        with pytest.raises(SalesforceApiError):
            sf_push.push_salesforce(types.SimpleNamespace(run_id="t"), salesforce_resource(emulator.env()),
                                    Warehouse(database=str(path)))
        assert [c["Loyalty_Member_Id__c"] for c in emulator.records("Contact")] == ["M1"]
    # the refused call's records are logged failed, with the reason (the log said nothing of them)
    logged = query(path, "SELECT operation, record_key, status, message FROM sync_log WHERE status IN ('sent', 'failed') "
                   "ORDER BY started_at, operation")
    assert [r[:3] for r in logged] == [("upsert Contact", "M1", "sent"), ("upsert Loyalty_Transaction__c", "E1", "failed")]
    assert "INVALID_FIELD" in logged[1][3] and "No such column" in logged[1][3]
    assert query(path, "SELECT object, record_key FROM sync_state") == [("Contact", "M1")]
    assert query(path, "SELECT operation, status, http_status FROM sync_log WHERE record_key LIKE '%Loyalty_Transaction__c%'"
                 ) == [("PATCH collections_upsert", "error", 400)]


def test_salesforce_refusing_a_record_fails_the_push_after_logging_it(tmp_path):
    """CONTRACT.md §1: a target that fails fails the run. A Contact Salesforce refuses (a tier name
    longer than the field's 40 characters: STRING_TOO_LONG) is logged with the reason, the others
    are sent and kept in sync_state, and the step fails; the refused one is tried again next time."""
    import dagster as dg
    import pytest

    from loyalty_assets.defs.sync.assets import salesforce_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    conn = wh.connect(str(path))
    conn.execute("""INSERT INTO member_status VALUES
                    ('M1', 'a@example.com', 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, NULL, DATE '2024-03-01', now()),
                    ('M2', 'b@example.com', 20, 0, 20, ?, 0, NULL, NULL, NULL, NULL, DATE '2024-03-01', now())""",
                 ["A tier whose name is longer than forty characters"])
    conn.close()
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        env = emulator.env()
        resources = {"warehouse": Warehouse(database=str(path)),
                     "salesforce": salesforce_resource(env)}
        with pytest.raises(dg.Failure, match="1 records failed"):
            salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
        assert [lead["Loyalty_Member_Id__c"] for lead in emulator.records("Lead")] == ["M1"]
        conn = wh.connect(str(path))
        logged = conn.execute("SELECT record_key, status, message FROM sync_log WHERE operation = 'upsert Lead' "
                              "ORDER BY record_key").fetchall()
        synced = conn.execute("SELECT record_key FROM sync_state WHERE target = 'salesforce'").fetchall()
        conn.close()
        assert [(k, s) for k, s, _ in logged] == [("M1", "sent"), ("M2", "failed")] and "STRING_TOO_LONG" in logged[1][2]
        assert synced == [("M1",)]  # M2 is not in sync: the next push sends it again

        # each delivery of M2 counts its attempt: refused again (2), then the tier fixed in the program (3)
        with pytest.raises(dg.Failure, match="1 records failed"):
            salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
        conn = wh.connect(str(path))
        conn.execute("UPDATE member_status SET vip_tier = 'Gold', points_spendable = 25 WHERE member_id = 'M2'")
        conn.close()
        salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
        conn = wh.connect(str(path))
        conn.execute("UPDATE member_status SET points_spendable = 30 WHERE member_id = 'M2'")
        conn.close()
        salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
    conn = wh.connect(str(path))
    attempts = conn.execute("SELECT record_key, attempt, status FROM sync_log WHERE operation = 'upsert Lead' "
                            "ORDER BY record_key, started_at").fetchall()
    conn.close()
    assert attempts == [("M1", 1, "sent"), ("M2", 1, "failed"), ("M2", 2, "failed"), ("M2", 3, "sent"), ("M2", 1, "sent")]


def test_salesforce_sync_log_ties_records_to_their_calls_and_masks_the_addresses_refused(tmp_path):
    """RULES.md §9 and CONTRACT.md §3: a record's row shares the correlation id of the call that
    carried it and its HTTP status; a call's row says what it carried; an address Salesforce quotes
    in its refusal is masked in sync_log (it was copied verbatim)."""
    import dagster as dg
    import pytest

    from loyalty_assets.defs.sync.assets import salesforce_push
    from loyalty_assets.lib import warehouse as wh
    from loyalty_assets.sandbox.salesforce import SalesforceEmulator

    path = tmp_path / "w.duckdb"
    conn = wh.connect(str(path))
    conn.execute("""INSERT INTO member_status VALUES
                    ('M1', 'a@example.com', 10, 0, 10, 'Bronze', 0, NULL, NULL, NULL, NULL, DATE '2024-03-01', now()),
                    ('M2', 'jo.private@intranet', 20, 0, 20, 'Bronze', 0, NULL, NULL, NULL, NULL, DATE '2024-03-01', now())""")
    conn.close()
    with SalesforceEmulator(None, cert_dir=tmp_path) as emulator:
        resources = {"warehouse": Warehouse(database=str(path)), "salesforce": salesforce_resource(emulator.env())}
        with pytest.raises(dg.Failure, match="1 records failed"):
            salesforce_push(dg.build_asset_context(resources=resources, partition_key="2024-03-01"))
    records = query(path, "SELECT record_key, status, http_status, message, correlation_id FROM sync_log "
                          "WHERE operation = 'upsert Lead' ORDER BY record_key")
    assert [r[:3] for r in records] == [("M1", "sent", 200), ("M2", "failed", 200)]
    assert "INVALID_EMAIL_ADDRESS" in records[1][3] and "j***@i***" in records[1][3]
    assert query(path, "SELECT count(*) FROM sync_log WHERE concat(message, payload_summary, record_key) ILIKE '%private%' "
                       "OR concat(message, payload_summary) ILIKE '%intranet%'") == [(0,)]
    call = query(path, "SELECT operation, status, http_status, payload_summary FROM sync_log WHERE correlation_id = ? "
                       "AND operation LIKE 'PATCH %'", [records[0][4]])
    assert call == [("PATCH collections_upsert", "ok", 200, "upsert Lead: 2 record(s)")]
    assert records[0][4] == records[1][4]


def test_a_crm_edit_of_our_fields_on_a_lead_is_a_conflict_and_our_value_wins(sandbox, warehouse_path):
    """RULES.md §9: a pulled value that disagrees with one this project owns is logged with both
    values and the owner's wins, on a Lead as on a Contact (a Lead's fields were never read: a CRM
    edit there stayed for good)."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", state="new", email="cy@example.com", subtotal="100.00")])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    (lead,) = box.salesforce.records("Lead")
    assert (lead["Loyalty_VIP_Tier__c"], int(lead["Loyalty_Points_Spendable__c"])) == ("Bronze", 0)
    env = box.env()
    requests.patch(f"{env['SALESFORCE_INSTANCE_URL']}/services/data/v62.0/sobjects/Lead/{lead['Id']}",
                   json={"Loyalty_VIP_Tier__c": "Gold", "Loyalty_Points_Spendable__c": 999}, verify=env["SALESFORCE_CA_BUNDLE"],
                   timeout=5, headers={"Authorization": f"Bearer {env['SALESFORCE_SESSION_ID']}"}).raise_for_status()
    assert materialize_range("2024-03-03", "2024-03-03", resources).success
    assert query(warehouse_path, "SELECT attribute, ours, theirs, owner, resolution FROM ownership_conflicts ORDER BY 1") == [
        ("Lead.Loyalty_Points_Spendable__c", "0", "999", "loyalty_assets", "ours pushed again"),
        ("Lead.Loyalty_VIP_Tier__c", "Bronze", "Gold", "loyalty_assets", "ours pushed again")]
    restored = box.salesforce.get_record("Lead", lead["Id"])
    assert (restored["Loyalty_VIP_Tier__c"], int(restored["Loyalty_Points_Spendable__c"])) == ("Bronze", 0)


def test_a_contact_pushed_before_its_member_merged_stays_with_the_survivor(sandbox, warehouse_path):
    """RULES.md §8 with §9: Bo has a Contact of ours when a later order shows Bo and Ann are one
    shopper. Pulled back, Bo's Contact names Bo (Loyalty_Member_Id__c), so it joins the survivor;
    it was a second Contact of one tenant, which the family-address guard split off into a new,
    invented member (pushed as a Lead), and a request made on it went to that member."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", customer_id=7, subtotal="50.00")],
                  now=dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC))
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-03", resources).success
    contacts = {c["Loyalty_Member_Id__c"]: c["Id"] for c in box.salesforce.records("Contact")}
    assert len(contacts) == 2
    box.magento.add_records("orders", [order(3, "2024-03-04 10:00:00", customer_id=7, subtotal="20.00")])
    box.clock.set(dt.datetime(2024, 3, 6, 12, tzinfo=dt.UTC))
    assert materialize_range("2024-03-04", "2024-03-04", resources).success
    ((survivor, absorbed),) = query(warehouse_path, "SELECT survivor_id, absorbed_id FROM member_merges")
    # a CRM user, on the absorbed member's Contact (still there), asks for 30 goodwill points
    box.salesforce.add_records("Loyalty_Adjustment_Request__c", [{
        "Contact__c": contacts[absorbed], "Points__c": 30, "Reason__c": "Goodwill", "Status__c": "New",
        "CreatedDate": "2024-03-05T09:00:00.000+0000", "LastModifiedDate": "2024-03-05T09:00:00.000+0000"}])
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    assert query(warehouse_path, "SELECT member_id, points_spendable, salesforce_id FROM member_status") == [
        (survivor, 200, contacts[survivor])]
    assert box.salesforce.records("Lead") == []
    assert query(warehouse_path, "SELECT member_id, points FROM ledger_entries WHERE kind = 'manual'") == [(survivor, 30)]
    assert [r["Status__c"] for r in box.salesforce.records("Loyalty_Adjustment_Request__c")] == ["Applied"]
    assert {k: m for k, m in query(warehouse_path, "SELECT key, member_id FROM member_keys WHERE key LIKE 'salesforce:%'")
            } == {f"salesforce:default:{contacts[survivor]}": survivor, f"salesforce:default:{contacts[absorbed]}": survivor}


def crm_user_sets_email(box, contact_id: str, email: str) -> None:
    """A CRM user edits a Contact's e-mail in Salesforce an hour later (REST PATCH on the emulator)."""
    env = box.env()
    box.clock.advance(3600)
    requests.patch(f"{env['SALESFORCE_INSTANCE_URL']}/services/data/v62.0/sobjects/Contact/{contact_id}",
                   json={"Email": email}, verify=env["SALESFORCE_CA_BUNDLE"], timeout=5,
                   headers={"Authorization": f"Bearer {env['SALESFORCE_SESSION_ID']}"}).raise_for_status()


@pytest.mark.parametrize("read_back", [True, False], ids=["edited_after_the_first_pull", "edited_before_it"])
def test_a_crm_edit_of_a_contacts_email_keeps_the_contact_and_its_address_with_its_member(sandbox, warehouse_path,
                                                                                         read_back):
    """RULES.md §8: a Contact of ours (Loyalty_Member_Id__c) stays with its member, and the new
    address a CRM user gives it is the member's key too: no member of its own (nor a Lead for one).
    Edited before the first pull, neither its id nor its address is a key yet: the member it names
    is found by that id alone."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00")])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    if read_back:
        assert materialize_range("2024-03-02", "2024-03-02", resources).success
    assert query(warehouse_path, "SELECT count(*) FROM member_keys WHERE key LIKE 'salesforce:%'") == [(int(read_back),)]
    ((member_id,),) = query(warehouse_path, "SELECT member_id FROM member_status")
    (contact,) = box.salesforce.records("Contact")
    crm_user_sets_email(box, contact["Id"], "ann.new@example.com")
    assert materialize_range("2024-03-03", "2024-03-03", resources).success
    assert query(warehouse_path, "SELECT member_id FROM member_status") == [(member_id,)]
    assert query(warehouse_path, "SELECT member_id FROM member_keys WHERE key IN ('ann.new@example.com', ?)",
                 [f"salesforce:default:{contact['Id']}"]) == [(member_id,), (member_id,)]
    assert box.salesforce.records("Lead") == []
    assert [c["Loyalty_Member_Id__c"] for c in box.salesforce.records("Contact")] == [member_id]


def test_member_status_names_the_salesforce_record_a_push_made_before_it_is_pulled(sandbox, warehouse_path):
    """CONTRACT.md §3: member_status.salesforce_id is the member's Salesforce record from the run that
    made it (the upsert's answer, kept in target_links), not only once a later pull finds it: a Contact
    for a member who earned, a Lead for one who has not, and the Contact once a Lead's member earns."""
    box = sandbox(orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com", subtotal="100.00"),
                          order(2, "2024-03-01 11:00:00", email="bo@example.com", subtotal="80.00", state="new"),
                          order(2, "2024-03-03 09:00:00", email="bo@example.com", subtotal="80.00",
                                created_at="2024-03-01 11:00:00")])
    resources = resources_for(box, warehouse_path)
    assert materialize_range("2024-03-01", "2024-03-02", resources).success
    assert query(warehouse_path, "SELECT count(*) FROM member_keys WHERE key LIKE 'salesforce:%'") == [(0,)]
    (contact,), (lead,) = box.salesforce.records("Contact"), box.salesforce.records("Lead")
    by_member = dict(query(warehouse_path, "SELECT member_id, salesforce_id FROM member_status"))
    assert by_member == {contact["Loyalty_Member_Id__c"]: contact["Id"], lead["Loyalty_Member_Id__c"]: lead["Id"]}
    assert materialize_range("2024-03-03", "2024-03-03", resources).success   # bo's order is paid: a Contact now
    bo = lead["Loyalty_Member_Id__c"]
    bo_contact = box.salesforce.get_record("Contact", bo, "Loyalty_Member_Id__c")
    assert query(warehouse_path, "SELECT salesforce_id FROM member_status WHERE member_id = ?", [bo]) == [(bo_contact["Id"],)]
    assert query(warehouse_path, "SELECT target, external_id FROM target_links WHERE member_id = ?", [bo]) == [
        ("salesforce", bo_contact["Id"])]
