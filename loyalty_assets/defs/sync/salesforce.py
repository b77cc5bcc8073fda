"""Pushing members, ledger entries and tier changes to Salesforce (RULES.md §9, CONTRACT.md §5).

Members are Leads until their first `earn` entry, then Contacts (the Lead is marked converted through
its Status field: the REST API has no lead conversion call); one whose Lead a CRM user converted is a
Contact from then on. Everything is upserted by external id,
which makes a resend harmless; only rows whose pushed values changed since the last successful push
are sent. Names, e-mail and consent belong to Salesforce: they are written only when a record is
created (Salesforce requires LastName), never overwritten. The daily API allowance is read from
`Sforce-Limit-Info` and the push stops below a safety margin, leaving the rest for the next run.
"""

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable
from decimal import Decimal

import pyarrow as pa

from loyalty_assets.defs.partitions import PROGRAM
from loyalty_assets.lib.identity import LEAD_PREFIX
from loyalty_assets.lib.ledger import REQUESTS_FETCHED_SQL, day_end_utc
from loyalty_assets.lib.money import currency_digits
from loyalty_assets.lib.outbox import write_sync_log
from loyalty_assets.lib.warehouse import registered

SAFETY_MAX_FRACTION = 0.8
MEMBER_FIELDS = (
    "Loyalty_Points_Spendable__c",
    "Loyalty_Points_Pending__c",
    "Loyalty_VIP_Tier__c",
    "Loyalty_Lifetime_Spend__c",
    "Loyalty_Referral_Url__c",
)
# when the push wrote the row: sent with every member upsert, left out of the change hash (a row
# whose other values did not change is not sent again for it)
SYNCED_AT_FIELD = "Loyalty_Synced_At__c"


def _hash(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:24]


MEMBERS_SQL = f"""
WITH earned AS (SELECT DISTINCT member_id FROM ledger_entries WHERE kind = 'earn'),
spend AS (
    SELECT member_id, sum(net_eligible_program_minor) AS spend_minor FROM order_facts
    WHERE lifecycle IN ('paid', 'fulfilled') GROUP BY member_id
),
-- the referral link the loyalty platform gives the member (RULES.md §9: pulled, owned by it), from
-- the latest pulled version of its Smile.io or LoyaltyLion customer; of several, the oldest key's
platform_customers AS (
    SELECT CASE source WHEN 'smile.customers' THEN 'smile:' || tenant || ':' || record_id
                       ELSE 'loyaltylion:' || tenant || ':' || json_extract_string(payload, '$.merchant_id') END AS key,
           json_extract_string(payload, '$.referral_url') AS referral_url
    FROM (SELECT source, tenant, record_id, arg_max(payload, (modified_at, payload_hash)) AS payload
          FROM raw_records WHERE source IN ('smile.customers', 'loyaltylion.customers')
          GROUP BY source, tenant, record_id)
),
referral AS (
    SELECT k.member_id, arg_min(c.referral_url, k.first_seen_at) AS referral_url
    FROM member_keys k JOIN platform_customers c ON c.key = k.key
    WHERE c.referral_url IS NOT NULL AND c.referral_url <> ''
    GROUP BY k.member_id
),
-- the member's Contact or open Lead already in the CRM (pulled, linked by identity): written by its
-- Id, never duplicated; a Contact's Account, when it is a person account
crm_latest AS (
    SELECT record_id AS salesforce_id, arg_max(payload, (modified_at, payload_hash)) AS payload
    FROM raw_records WHERE source IN ('salesforce.contacts', 'salesforce.leads') GROUP BY record_id
),
crm AS (
    SELECT salesforce_id, starts_with(salesforce_id, '{LEAD_PREFIX}') AS crm_is_lead,
           json_extract_string(payload, '$.Loyalty_Member_Id__c') AS crm_member_id,
           json_extract_string(payload, '$.AccountId') AS crm_account_id,
           coalesce(TRY_CAST(json_extract_string(payload, '$.IsPersonAccount') AS BOOLEAN), FALSE) AS crm_is_person,
           coalesce(TRY_CAST(json_extract_string(payload, '$.IsConverted') AS BOOLEAN), FALSE) AS crm_converted
    FROM crm_latest
),
-- the members whose Lead (ours: it carries our external id) a CRM user has converted: they are
-- Contacts now, and a converted Lead is read-only
converted AS (
    SELECT crm_member_id AS member_id FROM crm WHERE crm_is_lead AND crm_converted AND crm_member_id IS NOT NULL
)
SELECT s.member_id, s.email, s.points_spendable, s.points_pending, s.vip_tier,
       coalesce(sp.spend_minor, 0) AS spend_minor, r.referral_url, e.member_id IS NOT NULL AS has_earn,
       st.values_hash AS pushed_hash, st.object AS pushed_object, s.salesforce_id,
       CASE WHEN starts_with(s.salesforce_id, '{LEAD_PREFIX}') THEN 'Lead' ELSE 'Contact' END AS crm_object,
       c.crm_account_id, coalesce(c.crm_is_person, FALSE) AS crm_is_person, coalesce(c.crm_converted, FALSE) AS crm_converted,
       coalesce(s.member_id IN (SELECT member_id FROM converted), FALSE) AS lead_converted,
       -- written as a Lead and not marked converted yet (a failed marking is tried again)
       EXISTS (SELECT 1 FROM sync_state l WHERE l.target = 'salesforce' AND l.object = 'Lead'
               AND l.record_key = s.member_id AND l.values_hash <> 'converted') AS lead_open
FROM member_status s
LEFT JOIN earned e USING (member_id)
LEFT JOIN spend sp USING (member_id)
LEFT JOIN referral r USING (member_id)
LEFT JOIN crm c USING (salesforce_id)
-- the object last written with the member's values (marking its Lead converted is not one: read as
-- one, it made every later run send the Contact and the conversion again)
LEFT JOIN sync_state st ON st.target = 'salesforce' AND st.record_key = s.member_id
     AND st.object IN ('Contact', 'Lead', 'Account') AND st.values_hash <> 'converted'
     AND st.pushed_at = (SELECT max(pushed_at) FROM sync_state x WHERE x.target = 'salesforce'
                         AND x.record_key = s.member_id AND x.object IN ('Contact', 'Lead', 'Account')
                         AND x.values_hash <> 'converted')
"""

# where each `transactions_as` delivers entries and tier changes, and the sync_state object they are
# recorded under (platform events under the custom object's name, as they always were)
TRANSACTION_TARGETS = {"custom_object": "Loyalty_Transaction__c", "platform_event": "Loyalty_Event__e", "task": "Task"}
TRANSACTION_OBJECTS = {**TRANSACTION_TARGETS, "platform_event": "Loyalty_Transaction__c"}

# New entries and tier changes, and, as records upserted on the member's Contact or Lead, those sent
# for a member merged away since (their sync_state hash is the member they were sent for; 'sent', from
# before, stands for the member they were booked for): upserted again by their ids, they move to the
# survivor's Contact, where its points are. Platform events are not sent again (subscribers deduplicate
# on Event_Id__c).
TRANSACTIONS_SQL = """
WITH earned AS (SELECT DISTINCT member_id FROM ledger_entries WHERE kind = 'earn'),
sent AS (SELECT record_key, values_hash FROM sync_state WHERE target = 'salesforce' AND object = $object)
SELECT e.entry_id AS key, e.member_id, e.kind AS type, e.points, NULL AS tier, e.order_key,
       coalesce(e.occurred_at, timezone($tz, CAST(e.booked_on AS TIMESTAMP))) AS occurred_at, e.description,
       e.member_id IN (SELECT member_id FROM earned) AS is_contact, e.booked_on AS day
FROM ledger_entries e LEFT JOIN sent st ON st.record_key = e.entry_id
WHERE st.record_key IS NULL
   OR ($moved AND CASE WHEN st.values_hash = 'sent' THEN e.booked_member_id ELSE st.values_hash END <> e.member_id)
UNION ALL
SELECT c.change_id, coalesce(r.survivor_id, c.member_id), 'tier_change', NULL, c.to_tier, NULL,
       timezone($tz, CAST(c.changed_on AS TIMESTAMP)), c.from_tier || ' -> ' || c.to_tier || ' (' || c.reason || ')',
       coalesce(r.survivor_id, c.member_id) IN (SELECT member_id FROM earned), c.changed_on
FROM vip_tier_changes c LEFT JOIN member_resolution r ON r.member_id = c.member_id
LEFT JOIN sent st ON st.record_key = c.change_id
WHERE st.record_key IS NULL
   OR ($moved AND CASE WHEN st.values_hash = 'sent' THEN c.member_id ELSE st.values_hash END
                  <> coalesce(r.survivor_id, c.member_id))
"""


def task_record(t: dict) -> dict:
    """A ledger entry or tier change as a completed Task on the member's activity timeline (WhoId: its
    Contact, or its Lead before the first earn), upserted by Transaction_Id__c like the custom object."""
    if t["type"] == "tier_change":
        subject = f"Loyalty tier: {t['description'].split(' (')[0]}"
    else:
        subject = f"Loyalty points: {t['type']} {t['points']:+d}"
    return {
        "Transaction_Id__c": t["key"],
        "Who": {"attributes": {"type": "Contact" if t["is_contact"] else "Lead"}, "Loyalty_Member_Id__c": t["member_id"]},
        "Subject": subject[:255],
        "Status": "Completed",
        "ActivityDate": t["day"],  # the day it was booked (or the tier changed), in the program timezone
        "Description": t["description"],
        "Type__c": t["type"],
        "Points__c": t["points"],
        "Tier__c": t["tier"],
        "Order_Key__c": t["order_key"],
        "Occurred_At__c": t["occurred_at"].isoformat(),
    }


REQUESTS_SQL = f"""
WITH latest AS (
    SELECT * FROM (
        SELECT e.*, row_number() OVER (PARTITION BY event_key ORDER BY updated_at DESC, payload_hash DESC) AS rn
        FROM loyalty_events e WHERE kind = 'manual' AND source = 'salesforce'
    ) WHERE rn = 1
),
entries AS (
    SELECT event_key, arg_max(entry_id, journaled_at) AS entry_id, sum(points) AS points, max(booked_on) AS booked_on
    FROM ledger_journal WHERE event_key IS NOT NULL GROUP BY event_key
)
SELECT l.source_ref, l.status, l.reason, e.entry_id, e.points, e.booked_on,
       l.updated_at < $booked_until AS decided
FROM latest l LEFT JOIN entries e USING (event_key)
-- not marked since its latest version was fetched: a request set back to New in the CRM (a rejected
-- one fixed, say) is a version fetched after our marking, and is marked again
LEFT JOIN {REQUESTS_FETCHED_SQL} r ON r.record_id = l.source_ref
WHERE NOT EXISTS (SELECT 1 FROM sync_state st WHERE st.target = 'salesforce'
                  AND st.object = 'Loyalty_Adjustment_Request__c' AND st.record_key = l.source_ref
                  AND (r.fetched_at IS NULL OR st.pushed_at >= r.fetched_at))
"""


def request_results(conn, booked_until) -> list[tuple[str, dict]]:
    """Adjustment requests to mark Applied (booked) or Rejected (invalid, or no such member)."""
    out = []
    for ref, status, reason, entry_id, points, booked_on, decided in conn.execute(
        REQUESTS_SQL, {"booked_until": booked_until}
    ).fetchall():
        if status == "valid" and entry_id:
            out.append((ref, {"Status__c": "Applied", "Ledger_Entry_Id__c": entry_id,
                              "Result__c": f"Booked {points:+d} points on {booked_on}"}))
        elif status == "rejected":
            out.append((ref, {"Status__c": "Rejected", "Result__c": (reason or "invalid")[:255]}))
        elif decided:
            out.append((ref, {"Status__c": "Rejected", "Result__c": "No loyalty member is linked to this Contact"}))
    return out


# CRM field -> the attribute of RULES.md §9 it carries
OWNED_FIELDS = {"Loyalty_Points_Spendable__c": "points", "Loyalty_Points_Pending__c": "points",
                "Loyalty_VIP_Tier__c": "tier"}


def detect_conflicts(conn, program) -> int:
    """A Contact's or a Lead's field edited in the CRM after our last push disagrees with what we
    pushed: logged with both values; when we own the attribute our value is pushed again (the owner
    wins). A Lead's were never read: an edit there stayed for good, unlogged."""
    rows = []
    for source, objects, label in (("salesforce.contacts", ["Contact", "Account"], "Contact"),
                                   ("salesforce.leads", ["Lead"], "Lead")):
        rows += [(label, objects, *r) for r in conn.execute(
            """WITH latest AS (
                   -- the version read last; a CRM edit after our push is read after it
                   SELECT record_id, arg_max(payload, fetched_at) AS payload, max(fetched_at) AS fetched_at
                   FROM raw_records WHERE source = $source GROUP BY record_id)
               SELECT st.record_key, st.pushed_values, l.payload
               FROM sync_state st
               JOIN latest l ON json_extract_string(l.payload, '$.Loyalty_Member_Id__c') = st.record_key
               WHERE st.target = 'salesforce' AND list_contains($objects, st.object) AND st.pushed_values IS NOT NULL
                 AND l.fetched_at > st.pushed_at""", {"source": source, "objects": objects}).fetchall()]
    found = 0
    now = dt.datetime.now(dt.UTC)
    for label, objects, member_id, pushed_text, payload_text in rows:
        pushed, theirs = json.loads(pushed_text), json.loads(payload_text)
        for field, attribute in OWNED_FIELDS.items():
            if field not in theirs or field not in pushed or _same(pushed[field], theirs[field]):
                continue
            owner = program.sync.owners[attribute]
            ours_win = owner == "loyalty_assets"
            conn.execute(
                "INSERT INTO ownership_conflicts VALUES ('salesforce', ?, ?, ?, ?, ?, ?, ?)",
                [member_id, f"{label}.{field}", str(pushed[field]), str(theirs[field]), owner,
                 "ours pushed again" if ours_win else "theirs kept", now],
            )
            found += 1
            if ours_win:
                conn.execute("DELETE FROM sync_state WHERE target = 'salesforce' AND list_contains(?, object) "
                             "AND record_key = ?", [objects, member_id])
    return found


def _same(a, b) -> bool:
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except ArithmeticError:
        return str(a) == str(b)


def _member_values(row: dict) -> dict:
    return {
        "Loyalty_Points_Spendable__c": int(row["points_spendable"]),
        "Loyalty_Points_Pending__c": int(row["points_pending"]),
        "Loyalty_VIP_Tier__c": row["vip_tier"],
        # currency field: a decimal string in the program currency's ISO digits, never through float
        "Loyalty_Lifetime_Spend__c": str(Decimal(int(row["spend_minor"])).scaleb(-currency_digits(PROGRAM.currency))),
        "Loyalty_Referral_Url__c": row["referral_url"],
    }


def plan_salesforce(conn, synced_at: dt.datetime | None = None) -> dict:
    """What must be sent: changed members (Lead or Contact), lead conversions, new transactions.
    `synced_at`: the push's time, written to every member row sent (not part of its change hash)."""
    synced = (synced_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
    cur = conn.execute(MEMBERS_SQL)
    cols = [d[0] for d in cur.description]
    leads, contacts, conversions = [], [], []
    for values in (dict(zip(cols, r, strict=True)) for r in cur.fetchall()):
        obj = member_object() if values["has_earn"] or values["lead_converted"] else "Lead"
        if obj != "Lead" and values["lead_open"] and not values["lead_converted"]:
            conversions.append(values["member_id"])
        fields = _member_values(values)
        digest = _hash({"object": obj, **fields})
        if digest == values["pushed_hash"]:
            continue
        record = {"Loyalty_Member_Id__c": values["member_id"], **fields, SYNCED_AT_FIELD: synced}
        # never pushed as this object: the record the CRM already has for the member (its pulled
        # Contact, that Contact's person Account, or its open Lead: a converted one is read-only) is
        # written by its Id; else it will be created
        crm_id = None
        if values["pushed_object"] != obj and values["salesforce_id"]:
            if obj == values["crm_object"] and not values["crm_converted"]:
                crm_id = values["salesforce_id"]
            elif obj == "Account" and values["crm_is_person"]:
                crm_id = values["crm_account_id"]
        new = values["pushed_object"] != obj and not crm_id
        item = {"record": record, "hash": digest, "email": values["email"], "member_id": values["member_id"],
                "new": new, "crm_id": crm_id}
        (contacts if obj != "Lead" else leads).append(item)
    cur = conn.execute(TRANSACTIONS_SQL, {"object": TRANSACTION_OBJECTS[PROGRAM.salesforce.transactions_as],
                                          "tz": PROGRAM.timezone,
                                          "moved": PROGRAM.salesforce.transactions_as != "platform_event"})
    cols = [d[0] for d in cur.description]
    transactions = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    if PROGRAM.salesforce.transactions_as == "custom_object":
        # the record hangs on the member's Contact: a Lead's entries and tier changes wait for its first
        # earn (sent now, each failed on every run for want of the Contact). A Task goes on the Lead and
        # a platform event names the member: those are sent from the start (a referrer with no order)
        transactions = [t for t in transactions if t["is_contact"]]
    return {"leads": leads, "contacts": contacts, "conversions": conversions, "transactions": transactions}


def save_sync_state(conn, rows: list[tuple]) -> None:
    """Upsert (target, object, record_key, values_hash, pushed_at, pushed_values) rows in one
    statement (executemany costs milliseconds a row); of rows naming the same record the last wins."""
    latest = {r[:3]: r for r in rows}
    if not latest:
        return
    columns = list(zip(*latest.values(), strict=True))
    names = ["target", "object", "record_key", "values_hash", "pushed_at", "pushed_values"]
    types = [pa.string()] * 4 + [pa.timestamp("us", tz="UTC"), pa.string()]
    frame = pa.table([pa.array(c, t) for c, t in zip(columns, types, strict=True)], names=names)
    with registered(conn, "_sync_state_rows", frame):
        conn.execute(
            """INSERT INTO sync_state SELECT * FROM _sync_state_rows
               ON CONFLICT (target, object, record_key) DO UPDATE SET values_hash = excluded.values_hash,
                   pushed_at = excluded.pushed_at, pushed_values = excluded.pushed_values"""
        )


def member_object() -> str:
    """Where a member past its first earn lives in the CRM."""
    return "Account" if PROGRAM.salesforce.person_accounts else "Contact"


def _on_object(record: dict, obj: str) -> dict:
    """A person Account shows its person Contact's custom fields as __pc (Loyalty_Member_Id__pc ...)."""
    if obj != "Account":
        return record
    return {k[:-3] + "__pc" if k.startswith("Loyalty_") and k.endswith("__c") else k: v for k, v in record.items()}


def person_account_record_type(client) -> str:
    """The id of the Account record type named by `salesforce.person_account_record_type`."""
    wanted = PROGRAM.salesforce.person_account_record_type
    for info in client.describe("Account").get("recordTypeInfos") or []:
        if wanted in (info.get("developerName"), info.get("name")) and info.get("active", True):
            return str(info["recordTypeId"])
    raise ValueError(f"salesforce.person_account_record_type: Account has no active record type {wanted!r} "
                     "(are Person Accounts enabled in this org?)")


def _creation_fields(item: dict, obj: str, record_type_id: str | None = None) -> dict:
    email = item["email"] or ""
    last_name = (email.split("@")[0] or item["member_id"])[:80]
    if obj == "Account":
        return {"LastName": last_name, "PersonEmail": email or None, "RecordTypeId": record_type_id}
    fields = {"LastName": last_name, "Email": email or None}
    if obj == "Lead":
        fields["Company"] = "Loyalty member"
    return fields


# a record written by its Id that the CRM no longer has
GONE = ("NOT_FOUND", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")


def upsert_members(client, obj: str, items: list[dict], record_type: str | None = None) -> list:
    """Upsert by our external id; a record the CRM already has for the member (`crm_id`: its pulled
    Contact) is written by its Id, which also sets our external id on it, rather than duplicated.
    Names and e-mail (CRM-owned) only for records this creates. A record thought to exist that does
    not (deleted in the CRM) is created on a second pass. `record_type`: a person Account's.
    Returns one result per item, in order, keyed by member id."""
    ext = _on_object({"Loyalty_Member_Id__c": None}, obj).popitem()[0]

    def body(item: dict, create: bool) -> dict:
        return _on_object({**item["record"], **(_creation_fields(item, obj, record_type) if create else {})}, obj)

    results: dict[str, object] = {}
    known = [i for i in items if i.get("crm_id")]
    if known:
        by_id = client.upsert_records(obj, "Id", [{"Id": i["crm_id"], **body(i, False)} for i in known])
        for item, result in zip(known, by_id, strict=True):
            results[item["member_id"]] = dataclasses.replace(result, key=item["member_id"])
    gone = {i["member_id"] for i in known if any(c in GONE for c in results[i["member_id"]].error_codes)}
    rest = [i for i in items if not i.get("crm_id") or i["member_id"] in gone]
    if rest:
        for result in client.upsert_records(obj, ext, [body(i, i["new"] or i["member_id"] in gone) for i in rest]):
            results[result.key] = result
    missing = [i for i in rest if "REQUIRED_FIELD_MISSING" in results[i["member_id"]].error_codes]
    if missing:
        for result in client.upsert_records(obj, ext, [body(i, True) for i in missing]):
            results[result.key] = result
    return [results[i["member_id"]] for i in items]


def lead_gone(result) -> str | None:
    """A Lead to mark converted that the CRM no longer has (deleted there): the upsert by our external
    id would create one, which lacks the fields a Lead requires. Nothing is left to mark; retried, it
    failed on every run."""
    if "REQUIRED_FIELD_MISSING" in result.error_codes:
        return "the Lead is no longer in the CRM (deleted there): nothing to mark converted"
    return None


def _save_push_log(run_id: str, warehouse, calls: list, log_rows: list, state_rows: list,
                   call_steps: dict[int, tuple[str, str]], links: list[tuple[str, str, str]] = ()) -> None:
    """sync_log: the records' outcomes and one row per HTTP call (under the correlation id and summary
    of the step whose records it carried, `call_steps`); sync_state: what went through; `links`: the
    Contact or Lead each member upserted has (save_links)."""
    for n, c in enumerate(calls):
        correlation, step = call_steps.get(n, (str(uuid.uuid4()), None))
        took = f"{c.elapsed_ms:.0f} ms"
        ok = c.status is not None and c.status < 400
        log_rows.append(
            (
                correlation,
                run_id,
                "salesforce",
                f"{c.method} {c.operation}",
                c.path,
                c.attempt,
                "ok" if ok else "error",
                c.status,
                took if ok else f"HTTP {c.status} ({took})" if c.status else "no response",
                step,
                c.finished_at - dt.timedelta(milliseconds=c.elapsed_ms),
                c.finished_at,
            )
        )
    with warehouse.connect() as conn:
        write_sync_log(conn, log_rows)
        save_sync_state(conn, state_rows)
        save_links(conn, links)


def save_links(conn, links: list[tuple[str, str, str]]) -> None:
    """(member, object, Id) of the Contacts and Leads upserted: target_links, and member_status's
    salesforce_id where it had none (CONTRACT.md §3), so the record a run made is named at once, not
    when a pull of its modification day brings it back as an identity key. A Lead's link gives way
    to its member's Contact, never the reverse."""
    if not links:
        return
    frame = pa.table({"member_id": [m for m, _, _ in links], "object": [o for _, o, _ in links],
                      "external_id": [i for _, _, i in links]})
    with registered(conn, "_links", frame):
        conn.execute(
            """INSERT INTO target_links
               SELECT 'salesforce', member_id, arg_max(external_id, object = 'Contact'), 'upsert ' || max(object), now()
               FROM _links GROUP BY member_id
               ON CONFLICT (target, member_id) DO UPDATE SET external_id = excluded.external_id,
                   matched_by = excluded.matched_by, linked_at = excluded.linked_at
               WHERE excluded.matched_by = 'upsert Contact' OR target_links.matched_by <> 'upsert Contact'""")
        conn.execute(
            f"""UPDATE member_status s SET salesforce_id = l.external_id FROM target_links l
               WHERE l.target = 'salesforce' AND l.member_id = s.member_id AND l.member_id IN (SELECT member_id FROM _links)
                 AND (s.salesforce_id IS NULL
                      OR (starts_with(s.salesforce_id, '{LEAD_PREFIX}') AND NOT starts_with(l.external_id, '{LEAD_PREFIX}')))""")


def _step(record: Callable, obj: str, operation: str, keys: list[tuple[str, str | None]], send: Callable[[], list],
          settled: Callable[[object], str | None] = lambda _r: None) -> list:
    """Send one step and record each record's outcome. A whole call that failed (a Bulk job that
    Failed, a 5xx after every retry) is each of its records' failure, recorded with the reason before
    it stops the push: the log said nothing of it. The API limit stops the push unrecorded (_send_plan)."""
    from loyalty_assets.clients.http import ApiError
    from loyalty_assets.clients.salesforce import RecordError, RecordResult, RequestLimitExceeded

    try:
        results = send()
    except RequestLimitExceeded:
        raise
    except ApiError as exc:
        error = RecordError(getattr(exc, "error_code", None) or type(exc).__name__, str(exc), ())
        record(obj, operation, keys, [RecordResult(key=k, success=False, errors=(error,)) for k, _ in keys])
        raise
    record(obj, operation, keys, results, settled)
    return results


def _send_plan(client, plan: dict, record: Callable) -> str | None:
    """Members, conversions, transactions and request outcomes, in that order; `record` keeps each
    record's outcome. Returns why the push stopped early (the API limit), else None."""
    from loyalty_assets.clients.salesforce import RequestLimitExceeded

    # a configuration error before anything is sent
    record_type = person_account_record_type(client) if plan["contacts"] and member_object() == "Account" else None
    refused: set[str] = set()  # members whose Contact (or person Account) the CRM refused in this push
    try:
        for obj in ("Lead", member_object()):
            items = plan["leads" if obj == "Lead" else "contacts"]
            if not items:
                continue
            usage = client.limits()
            if usage is not None and not usage.allows(len(items) // 200 + 2, max_fraction=SAFETY_MAX_FRACTION):
                return f"API usage {usage.used}/{usage.max}: stopped below the safety margin"
            results = _step(record, obj, "upsert", [(i["member_id"], i["hash"]) for i in items],
                            lambda obj=obj, items=items: upsert_members(client, obj, items, record_type))
            if obj != "Lead":
                refused = {i["member_id"] for i, r in zip(items, results, strict=True) if not r.success}
        # a Lead is marked converted once its member's Contact is there (RULES.md §9): with the Contact
        # refused, the conversion waits with it for the next run (the Lead stays open, as it was)
        conversions = [m for m in plan["conversions"] if m not in refused]
        if conversions:
            records = [
                {"Loyalty_Member_Id__c": m, PROGRAM.salesforce.lead_status_field: PROGRAM.salesforce.lead_converted_status}
                for m in conversions
            ]
            _step(record, "Lead", "convert", [(m, "converted") for m in conversions],
                  lambda: client.upsert_records("Lead", "Loyalty_Member_Id__c", records), lead_gone)
        if plan["transactions"]:
            _send_transactions(client, plan["transactions"], record)
        for ref, fields in plan["requests"]:
            outcome = _one_call(ref, lambda ref=ref, fields=fields: client.update_record(
                "Loyalty_Adjustment_Request__c", ref, fields))
            record("Loyalty_Adjustment_Request__c", "update", [(ref, fields["Status__c"])], [outcome])
    except RequestLimitExceeded as exc:
        return f"REQUEST_LIMIT_EXCEEDED: {exc}"  # never retried blindly: the next run continues
    return None


def _one_call(key: str, call: Callable[[], object]):
    """A single-record call's outcome as a RecordResult (its refusal kept as the record's error)."""
    from loyalty_assets.clients.salesforce import RecordError, RecordResult, SalesforceApiError

    try:
        call()
        return RecordResult(key=key, success=True)
    except SalesforceApiError as exc:
        return RecordResult(key=key, success=False, errors=(RecordError(exc.error_code or "ERROR", str(exc), ()),))


def transaction_hash(t: dict) -> str:
    """What sync_state keeps of a sent entry or tier change: the member it was sent for (a merge since
    sends it again, TRANSACTIONS_SQL); a platform event, never sent again, just 'sent'."""
    return "sent" if PROGRAM.salesforce.transactions_as == "platform_event" else t["member_id"]


def _send_transactions(client, txns: list[dict], record: Callable) -> None:
    """Entries and tier changes where `salesforce.transactions_as` says."""
    if PROGRAM.salesforce.transactions_as == "platform_event":
        # events cannot be upserted: at least once, subscribers dedupe on Event_Id__c
        outcomes = [_one_call(t["key"], lambda t=t: client.publish_event(TRANSACTION_TARGETS["platform_event"], {
            "Event_Id__c": t["key"], "Member_Id__c": t["member_id"], "Event_Type__c": t["type"],
            "Points__c": t["points"], "Tier__c": t["tier"], "Occurred_At__c": t["occurred_at"].isoformat()}))
            for t in txns]
        record("Loyalty_Transaction__c", "publish", [(t["key"], transaction_hash(t)) for t in txns], outcomes)
    elif PROGRAM.salesforce.transactions_as == "task":
        _step(record, "Task", "upsert", [(t["key"], transaction_hash(t)) for t in txns],
              lambda: client.upsert_records("Task", "Transaction_Id__c", [task_record(t) for t in txns]))
    else:
        records = [
            {
                "Transaction_Id__c": t["key"],
                "Contact__r": {"Loyalty_Member_Id__c": t["member_id"]},
                "Type__c": t["type"],
                "Points__c": t["points"],
                "Tier__c": t["tier"],
                "Order_Key__c": t["order_key"],
                "Occurred_At__c": t["occurred_at"].isoformat(),
                "Description__c": (t["description"] or "")[:255],
            }
            for t in txns
        ]
        _step(record, "Loyalty_Transaction__c", "upsert", [(t["key"], transaction_hash(t)) for t in txns],
              lambda: client.upsert_records("Loyalty_Transaction__c", "Transaction_Id__c", records))


def push_salesforce(context, resource, warehouse) -> dict:
    calls = []
    now = dt.datetime.now(dt.UTC)
    with warehouse.connect() as conn:
        conflicts = detect_conflicts(conn, PROGRAM)
        plan = plan_salesforce(conn, now)
        last = conn.execute("SELECT max(last_booked_day) FROM ledger_watermark").fetchone()[0]
        # the end of the last booked day in the program's timezone, as the ledger books events (a UTC
        # midnight east of UTC rejected a valid request modified after the day's end, booked next day)
        booked_until = day_end_utc(last, PROGRAM) if last else None
        plan["requests"] = request_results(conn, booked_until) if booked_until else []
    log_rows, state_rows, links = [], [], []
    pushed_values = {(obj, i["member_id"]): json.dumps(i["record"], sort_keys=True, default=str)
                     for obj, key in (("Lead", "leads"), (member_object(), "contacts")) for i in plan[key]}
    call_steps: dict[int, tuple[str, str]] = {}  # a call's index in `calls` -> its step's correlation id, summary
    def record(obj: str, operation: str, items_keys: list[tuple[str, str | None]], results: list,
               settled: Callable[[object], str | None] = lambda _r: None) -> None:
        """`settled`: for a failure that leaves nothing to do, why (logged `skipped`, not tried again).
        The calls made since the last step carried this one's records: they share its correlation id,
        and each record its last answered status and the step's start."""
        step_calls = [n for n in range(len(calls)) if n not in call_steps]
        correlation, summary = str(uuid.uuid4()), f"{operation} {obj}: {len(items_keys)} record(s)"
        call_steps.update({n: (correlation, summary) for n in step_calls})
        answered = [calls[n].status for n in step_calls if calls[n].status is not None]
        started = (calls[step_calls[0]].finished_at - dt.timedelta(milliseconds=calls[step_calls[0]].elapsed_ms)
                   if step_calls else dt.datetime.now(dt.UTC))
        for (key, hash_), result in zip(items_keys, results, strict=True):
            reason = None if result.success else settled(result)
            status = "sent" if result.success else "skipped" if reason else "failed"
            message = (
                None if result.success else reason or "; ".join(f"{e.status_code}: {e.message}" for e in result.errors)
            )
            log_rows.append(
                (
                    correlation,
                    context.run_id,
                    "salesforce",
                    f"{operation} {obj}",
                    key,
                    None,  # counted by write_sync_log: the failures since the record last went through
                    status,
                    answered[-1] if answered else None,
                    message,
                    f"{obj} {key}",
                    started,
                    dt.datetime.now(dt.UTC),
                )
            )
            if result.success or reason:
                state_rows.append(("salesforce", obj, key, hash_ or "", dt.datetime.now(dt.UTC),
                                   pushed_values.get((obj, key))))
            if result.success and operation == "upsert" and obj in ("Contact", "Lead") and result.id:
                links.append((key, obj, result.id))

    try:
        with resource.client(on_call=calls.append) as client:
            stopped = _send_plan(client, plan, record)
    finally:
        # every call and record outcome so far, also when a whole call failed and the push stops there
        _save_push_log(context.run_id, warehouse, calls, log_rows, state_rows, call_steps, links)
    failed = sum(1 for r in log_rows if r[6] == "failed")
    return {
        "ownership_conflicts": conflicts,
        "leads": len(plan["leads"]),
        "contacts": len(plan["contacts"]),
        "conversions": len(plan["conversions"]),
        "transactions": len(plan["transactions"]),
        "calls": len(calls),
        "failed_records": failed,
        "stopped": stopped or "",
    }
