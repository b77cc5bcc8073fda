"""A local Salesforce REST / Bulk API 2.0 emulator over HTTPS (reference: salesforce.md §1-§4;
default objects and fields: CONTRACT.md §5).

``simple-salesforce`` hard-codes ``https://``, so this emulator serves TLS with a ``trustme`` CA whose
PEM is written to ``cert_dir`` (``SALESFORCE_CA_BUNDLE``); the CA is reused across restarts when its
key is still there, so an env file written earlier stays valid. What it reproduces:

* auth: a static session id (``SALESFORCE_SESSION_ID``) and the OAuth password flow
  (``POST /services/oauth2/token``); a bad token is ``401 [{"errorCode":"INVALID_SESSION_ID"}]``
  (a JSON *list*: simple-salesforce's refresh path parses ``[0]['errorCode']``);
* upsert by external id (201 created / 200 ``created:false`` on API >= 46, 204 below), relationship
  fields set through ``Contact__r: {"Loyalty_Member_Id__c": ...}`` (a polymorphic one, Task's ``Who``,
  with ``attributes.type``; in Bulk CSV ``Contact:Who.Loyalty_Member_Id__c``), field validation with the real
  error codes (``INVALID_FIELD``, ``REQUIRED_FIELD_MISSING``, ``STRING_TOO_LONG``, ...);
* sObject Collections upsert (at most 200 records, HTTP 200 with per-record results even when some
  fail, ``allOrNone`` rollback), a SOQL subset with ``nextRecordsUrl`` paging, describe, platform
  event publish (201 with ``OPERATION_ENQUEUED``), Bulk API 2.0 ingest jobs with CSV results;
* the daily API allowance: every authenticated call is counted (rolling 24 h on the emulator clock),
  every ``/services/data`` response carries ``Sforce-Limit-Info: api-usage=N/MAX``, and once it is
  spent calls get ``403 REQUEST_LIMIT_EXCEEDED``;
* ``UNABLE_TO_LOCK_ROW`` on demand (``lock_rows`` / ``POST /_sandbox/salesforce/locks``): the next
  matching record writes fail with it (per record in Collections and Bulk, 400 for a single upsert);
  an HTTP-level lock error can also be scripted with the generic fault script and a ``body``.

Field names are case-insensitive, as in Salesforce. External ids are matched case-sensitively (the
recommended Unique + case-sensitive external-id setting). Deleted records are removed outright.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import trustme

from loyalty_assets.sandbox.httpserver import (
    Abort,
    Emulator,
    EmulatorClock,
    FaultInjector,
    Request,
    Response,
    Router,
    dumps,
    json_response,
    loads,
    parse_instant,
)

DEFAULT_API_VERSION = "62.0"  # Winter '25; simple-salesforce 1.12 defaults to 59.0, also served
MIN_API_VERSION = 20.0
MODERN_UPSERT_VERSION = 46.0  # from v46 an upsert that updates answers 200 with a body, not 204
DEFAULT_SESSION_ID = "00Dsandbox!AQ0AQLoyaltySandboxStaticSessionId"
DEFAULT_CLIENT_ID = "3MVG9sandbox.loyalty.consumer.key"
DEFAULT_CLIENT_SECRET = "sandbox-consumer-secret"
DEFAULT_USERNAME = "integration@loyalty.sandbox"
DEFAULT_PASSWORD = "sandbox-password-123"
DEFAULT_DAILY_API_LIMIT = 15000  # Developer Edition (salesforce.md §6)
COLLECTION_LIMIT = 200
DEFAULT_QUERY_PAGE_SIZE = 2000
CA_CERT_FILE = "salesforce-ca.pem"
CA_KEY_FILE = "salesforce-ca.key"
ORG_ID = "00D5g000004SANDBX"
USER_ID = "0055g00000LOYALTY"

CSV_CONTENT_TYPE = "text/csv"
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
_PREFIX = r"/services/data/v(?P<version>\d+\.\d+)"
_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was using AllOrNone header"
)
LOCK_MESSAGE = "unable to obtain exclusive access to this record or 1 records"


# --------------------------------------------------------------------------------------------------
# Schema


@dataclass(frozen=True)
class FieldDef:
    """One field as ``describe`` reports it."""

    name: str
    type: str  # id string email phone url textarea double currency boolean date datetime picklist reference
    label: str = ""
    length: int = 0
    external_id: bool = False
    unique: bool = False
    required: bool = False  # must be given on create, can never be set to null
    createable: bool = True
    updateable: bool = True
    reference_to: str | None = None
    relationship_name: str | None = None
    # a polymorphic lookup (Task.WhoId: Contact or Lead): the objects it may name; reference_to is the first
    polymorphic: tuple[str, ...] = ()
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None

    @property
    def custom(self) -> bool:
        return self.name.endswith(("__c", "__pc"))

    def describe(self) -> dict[str, Any]:
        text = self.type in ("string", "email", "phone", "url", "textarea", "picklist")
        return {
            "name": self.name,
            "label": self.label or self.name.replace("__c", "").replace("_", " "),
            "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length if text else 0,
            "precision": 18 if self.type in ("double", "currency") else 0,
            "scale": 2 if self.type == "currency" else 0,
            "externalId": self.external_id,
            "idLookup": self.external_id or self.type == "id",
            "unique": self.unique,
            "caseSensitive": self.external_id,
            "nillable": not self.required and self.type not in ("id", "boolean"),
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": True,
            "sortable": self.type != "textarea",
            "custom": self.custom,
            "calculated": False,
            "autoNumber": self.name == "Name" and not self.createable and not self.updateable,
            "defaultedOnCreate": self.default is not None or self.type in ("id", "boolean"),
            "defaultValue": self.default,
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "value": v, "validFor": None}
                for v in self.picklist
            ],
            "restrictedPicklist": self.restricted,
            "referenceTo": list(self.polymorphic) or ([self.reference_to] if self.reference_to else []),
            "relationshipName": self.relationship_name,
            "polymorphicForeignKey": bool(self.polymorphic),
        }

    @property
    def targets(self) -> tuple[str, ...]:
        return self.polymorphic or ((self.reference_to,) if self.reference_to else ())


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "double": "xsd:double",
    "currency": "xsd:double",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


@dataclass(frozen=True)
class ObjectDef:
    name: str
    label: str
    key_prefix: str
    fields: dict[str, FieldDef]
    event: bool = False
    auto_name: str | None = None  # auto-number format of Name, e.g. "LT-{:07d}"
    record_types: tuple[dict[str, Any], ...] = ()  # describe's recordTypeInfos

    def field(self, name: str) -> FieldDef | None:
        return self._lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._relationships.get(name.lower())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", {n.lower(): f for n, f in self.fields.items()})
        object.__setattr__(
            self,
            "_relationships",
            {f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name},
        )

    @property
    def external_ids(self) -> list[str]:
        return [f.name for f in self.fields.values() if f.external_id]

    def describe(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + ("s" if not self.label.endswith("s") else ""),
            "custom": self.name.endswith(("__c", "__e")),
            "keyPrefix": self.key_prefix,
            "createable": True,
            "updateable": not self.event,
            "deletable": not self.event,
            "queryable": not self.event,
            "searchable": not self.event,
            "triggerable": True,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [],
            "recordTypeInfos": [dict(r) for r in self.record_types],
        }


def _f(name: str, type_: str, length: int = 0, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, length=length, **kw)


log = logging.getLogger(__name__)


def _standard_person_fields() -> list[FieldDef]:
    """Standard fields every org's Contact and Lead have, which a real export or query carries."""
    return [
        _f("Salutation", "string", 40), _f("Title", "string", 128), _f("MobilePhone", "phone", 40),
        _f("LeadSource", "string", 40), _f("Description", "textarea", 32000),
        _f("OwnerId", "reference", 18, reference_to="User", label="Owner ID"),
        *(_f(f"Mailing{part}", "string", size) for part, size in (("Street", 255), ("City", 40), ("State", 80),
                                                                   ("PostalCode", 20))),
    ]


def _system_fields() -> list[FieldDef]:
    ro = {"createable": False, "updateable": False}
    return [
        _f("Id", "id", 18, **ro),
        _f("IsDeleted", "boolean", **ro),
        _f("CreatedDate", "datetime", **ro),
        _f("CreatedById", "reference", 18, reference_to="User", **ro),
        _f("LastModifiedDate", "datetime", **ro),
        _f("LastModifiedById", "reference", 18, reference_to="User", **ro),
        _f("SystemModstamp", "datetime", **ro),
    ]


def _member_fields() -> list[FieldDef]:
    """CONTRACT.md §5: the loyalty snapshot on Contact, Lead and Account."""
    return [
        _f("Loyalty_Member_Id__c", "string", 64, external_id=True, unique=True, label="Loyalty Member Id"),
        _f("Loyalty_Points_Spendable__c", "double", label="Loyalty Points Spendable"),
        _f("Loyalty_Points_Pending__c", "double", label="Loyalty Points Pending"),
        _f("Loyalty_VIP_Tier__c", "string", 40, label="Loyalty VIP Tier"),
        _f("Loyalty_Lifetime_Spend__c", "currency", label="Loyalty Lifetime Spend"),
        _f("Loyalty_Referral_Url__c", "url", 255, label="Loyalty Referral URL"),
        _f("Loyalty_Synced_At__c", "datetime", label="Loyalty Synced At"),
    ]


def _person_fields() -> list[FieldDef]:
    """Person Accounts: the person's Contact fields as the Account shows them (custom ones as __pc);
    writes to them go to the person's Contact, which the emulator keeps beside the Account."""
    return [
        _f("IsPersonAccount", "boolean", **_RO),
        _f("PersonContactId", "reference", 18, reference_to="Contact", **_RO),
        _f("FirstName", "string", 40),
        _f("LastName", "string", 80),
        _f("PersonEmail", "email", 80, label="Email"),
        _f("PersonHasOptedOutOfEmail", "boolean", default=False, label="Email Opt Out"),
        *(FieldDef(**{**f.__dict__, "name": f.name[:-3] + "__pc"}) for f in _member_fields()),
    ]


#: the person-account record type (its id is what a person Account is created with)
PERSON_ACCOUNT_RECORD_TYPE_ID = "0125g000000PAcCAAW"
_ACCOUNT_RECORD_TYPES = (
    {"name": "Business Account", "developerName": "Business_Account", "recordTypeId": "0125g000000BAcCAAW",
     "active": True, "available": True, "defaultRecordTypeMapping": True, "master": False},
    {"name": "Person Account", "developerName": "PersonAccount", "recordTypeId": PERSON_ACCOUNT_RECORD_TYPE_ID,
     "active": True, "available": True, "defaultRecordTypeMapping": False, "master": False},
    {"name": "Master", "developerName": "Master", "recordTypeId": "012000000000000AAA",
     "active": True, "available": True, "defaultRecordTypeMapping": False, "master": True},
)
# person Account field -> its person Contact's field
_PERSON_CONTACT_FIELDS = {"FirstName": "FirstName", "LastName": "LastName", "PersonEmail": "Email",
                          "PersonHasOptedOutOfEmail": "HasOptedOutOfEmail",
                          **{f.name[:-3] + "__pc": f.name for f in _member_fields()}}


def _blank(obj: ObjectDef) -> dict[str, Any]:
    """A new record of `obj` before its values: each field's default (booleans False, others null)."""
    return {"attributes_type": obj.name, **{
        fd.name: fd.default if fd.default is not None else (False if fd.type == "boolean" else None)
        for fd in obj.fields.values()}}


def _person_name(record: dict[str, Any]) -> str:
    return " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)


def _object(name: str, label: str, prefix: str, fields: list[FieldDef], **kw: Any) -> ObjectDef:
    return ObjectDef(name, label, prefix, {f.name: f for f in fields}, **kw)


_RO = {"createable": False, "updateable": False}
_TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
_LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)

#: The objects the emulator describes (CONTRACT.md §5 defaults).
OBJECTS: dict[str, ObjectDef] = {
    o.name: o
    for o in (
        _object(
            "Account",
            "Account",
            "001",
            [
                *_system_fields(),
                # required of a business account; a person account's is its person's name
                _f("Name", "string", 255, label="Account Name"),
                _f("Phone", "phone", 40),
                _f("RecordTypeId", "reference", 18, reference_to="RecordType", label="Account Record Type"),
                *_member_fields(),
                *_person_fields(),
            ],
            record_types=_ACCOUNT_RECORD_TYPES,
        ),
        _object(
            "Contact",
            "Contact",
            "003",
            [
                *_system_fields(),
                _f("AccountId", "reference", 18, reference_to="Account", relationship_name="Account"),
                _f("FirstName", "string", 40),
                _f("LastName", "string", 80, required=True),
                _f("Name", "string", 121, **_RO),
                _f("Email", "email", 80),
                _f("Phone", "phone", 40),
                _f("MailingCountry", "string", 80),
                *_standard_person_fields(),
                _f("Department", "string", 80),
                _f("Birthdate", "date"),
                _f("HasOptedOutOfEmail", "boolean", default=False, label="Email Opt Out"),
                _f("HasOptedOutOfFax", "boolean", default=False, label="Fax Opt Out"),
                _f("DoNotCall", "boolean", default=False, label="Do Not Call"),
                _f("IsPersonAccount", "boolean", **_RO),
                *_member_fields(),
            ],
        ),
        _object(
            "Lead",
            "Lead",
            "00Q",
            [
                *_system_fields(),
                _f("FirstName", "string", 40),
                _f("LastName", "string", 80, required=True),
                _f("Name", "string", 121, **_RO),
                _f("Company", "string", 255, required=True),
                _f("Email", "email", 80),
                _f("Phone", "phone", 40),
                _f("Status", "picklist", 255, picklist=_LEAD_STATUSES, default=_LEAD_STATUSES[0]),
                *_standard_person_fields(),
                _f("Street", "textarea", 255), _f("City", "string", 40), _f("State", "string", 80),
                _f("PostalCode", "string", 20), _f("Country", "string", 80),
                _f("Industry", "string", 40), _f("Rating", "string", 40), _f("Website", "url", 255),
                _f("IsConverted", "boolean", default=False, **_RO),
                _f("ConvertedContactId", "reference", 18, reference_to="Contact", **_RO),
                _f("HasOptedOutOfEmail", "boolean", default=False, label="Email Opt Out"),
                _f("DoNotCall", "boolean", default=False, label="Do Not Call"),
                *_member_fields(),
            ],
        ),
        _object(
            "Loyalty_Transaction__c",
            "Loyalty Transaction",
            "a0T",
            [
                *_system_fields(),
                _f("Name", "string", 80, label="Loyalty Transaction Number", **_RO),
                _f("Transaction_Id__c", "string", 80, external_id=True, unique=True, label="Transaction Id"),
                _f("Contact__c", "reference", 18, reference_to="Contact", relationship_name="Contact__r"),
                _f("Type__c", "string", 40, label="Type"),
                _f("Points__c", "double", label="Points"),
                _f("Tier__c", "string", 40, label="Tier"),
                _f("Order_Key__c", "string", 255, label="Order Key"),
                _f("Occurred_At__c", "datetime", label="Occurred At"),
                _f("Description__c", "string", 255, label="Description"),
            ],
            auto_name="LT-{:07d}",
        ),
        # RULES.md §9: ledger entries and tier changes as Task activities, by configuration; the
        # activity custom field Transaction_Id__c is the external id, the member the polymorphic WhoId
        _object(
            "Task",
            "Task",
            "00T",
            [
                *_system_fields(),
                _f("WhoId", "reference", 18, reference_to="Contact", polymorphic=("Contact", "Lead"),
                   relationship_name="Who", label="Name ID"),
                _f("Subject", "string", 255),
                _f("ActivityDate", "date", label="Due Date Only"),
                _f("Status", "picklist", 40, picklist=_TASK_STATUSES, default="Not Started", required=True),
                _f("Priority", "picklist", 40, picklist=("High", "Normal", "Low"), default="Normal", required=True),
                _f("Description", "textarea", 32000, label="Comments"),
                _f("TaskSubtype", "picklist", 40, picklist=("Task", "Email", "Call"), default="Task",
                   updateable=False),
                _f("IsClosed", "boolean", **_RO),
                _f("Transaction_Id__c", "string", 80, external_id=True, unique=True, label="Transaction Id"),
                _f("Type__c", "string", 40, label="Loyalty Type"),
                _f("Points__c", "double", label="Points"),
                _f("Tier__c", "string", 40, label="Tier"),
                _f("Order_Key__c", "string", 255, label="Order Key"),
                _f("Occurred_At__c", "datetime", label="Occurred At"),
            ],
        ),
        _object(
            "Loyalty_Adjustment_Request__c",
            "Loyalty Adjustment Request",
            "a0A",
            [
                *_system_fields(),
                _f("Name", "string", 80, label="Adjustment Request Number", **_RO),
                _f("Contact__c", "reference", 18, reference_to="Contact", relationship_name="Contact__r"),
                _f("Points__c", "double", label="Points"),
                _f("Reason__c", "string", 255, label="Reason"),
                _f(
                    "Status__c",
                    "picklist",
                    40,
                    picklist=("New", "Applied", "Rejected"),
                    restricted=True,
                    default="New",
                    label="Status",
                ),
                _f("Result__c", "string", 255, label="Result"),
                _f("Ledger_Entry_Id__c", "string", 80, label="Ledger Entry Id"),
            ],
            auto_name="AR-{:07d}",
        ),
        _object(
            "Loyalty_Event__e",
            "Loyalty Event",
            "e00",
            [
                _f("ReplayId", "string", 255, **_RO),
                _f("EventUuid", "string", 36, **_RO),
                _f("CreatedDate", "datetime", **_RO),
                _f("CreatedById", "reference", 18, reference_to="User", **_RO),
                _f("Event_Id__c", "string", 80, label="Event Id"),
                _f("Member_Id__c", "string", 64, label="Member Id"),
                _f("Event_Type__c", "string", 40, label="Event Type"),
                _f("Points__c", "double", label="Points"),
                _f("Tier__c", "string", 40, label="Tier"),
                _f("Occurred_At__c", "datetime", label="Occurred At"),
            ],
            event=True,
        ),
    )
}
_OBJECTS_LOWER = {name.lower(): o for name, o in OBJECTS.items()}
#: Seeds load parents first so relationship fields in child seeds resolve.
_LOAD_ORDER = ["Account", "Contact", "Lead", "Loyalty_Transaction__c", "Task", "Loyalty_Adjustment_Request__c"]


# --------------------------------------------------------------------------------------------------
# Errors and value coercion


class SfError(Exception):
    """A Salesforce error: REST body ``{"errorCode",...}`` or per-record ``{"statusCode",...}``."""

    def __init__(self, code: str, message: str, fields: Iterable[str] = (), status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.fields, self.status = code, message, list(fields), status

    def rest(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.code, "fields": self.fields}

    def record(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}

    def csv(self) -> str:
        return f"{self.code}:{self.message}:{','.join(self.fields)}"


def sf_error_response(code: str, message: str, status: int, fields: Iterable[str] = ()) -> Response:
    return json_response([SfError(code, message, fields).rest()], status)


def _abort(code: str, message: str, status: int = 400) -> Abort:
    return Abort(sf_error_response(code, message, status))


def sf_datetime(value: datetime) -> str:
    """Salesforce's own datetime form: ``2024-05-01T12:00:00.000+0000``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _parse_sf_datetime(text: str) -> datetime:
    text = text.strip()
    m = re.fullmatch(r"(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-]\d{2})(\d{2})", text)
    if m:  # +0000 (no colon) is Salesforce's own form; fromisoformat wants +00:00
        text = f"{m.group(1)}{m.group(2)}:{m.group(3)}"
    return parse_instant(text)


_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18(id15: str) -> str:
    """The case-safe 18-character form of a 15-character Salesforce id (the documented checksum)."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        suffix += _ID_CHARS[bits]
    return id15 + suffix


def _coerce(obj: ObjectDef, fd: FieldDef, value: Any) -> Any:
    """Validate one value for a field the way Salesforce does; returns the stored value."""
    label = fd.name
    if value is None or (isinstance(value, str) and value == "" and fd.type not in ("string", "textarea")):
        if fd.required:
            raise SfError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{fd.name}]", [fd.name])
        return False if fd.type == "boolean" else None
    if isinstance(value, dict | list):
        raise SfError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {fd.type} from {'START_OBJECT' if isinstance(value, dict) else 'START_ARRAY'} value for field {label}",
            [fd.name],
        )
    if fd.type in ("double", "currency"):
        if isinstance(value, bool):
            raise SfError(
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of double from VALUE_TRUE value {value}",
                [label],
            )
        try:
            number = value if isinstance(value, int | Decimal) else Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise SfError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{label}: value not of required type: {value}", [label]
            ) from exc
        return number
    if fd.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise SfError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{label}: value not of required type: {value}", [label]
        )
    if fd.type == "datetime":
        try:
            return sf_datetime(_parse_sf_datetime(str(value)))
        except ValueError as exc:
            raise SfError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{label}: value not of required type: {value}", [label]
            ) from exc
    if fd.type == "date":
        try:
            return date.fromisoformat(str(value).strip()[:10]).isoformat()
        except ValueError as exc:
            raise SfError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{label}: value not of required type: {value}", [label]
            ) from exc
    text = value if isinstance(value, str) else str(value)
    if fd.length and len(text) > fd.length:
        raise SfError(
            "STRING_TOO_LONG",
            f"{obj.label} {fd.label or label}: data value too large: {text[:40]} (max length={fd.length})",
            [label],
        )
    if fd.type == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise SfError("INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {text}", [label])
    if fd.type == "picklist" and fd.restricted and text not in fd.picklist:
        raise SfError(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{fd.label or label}: bad value for restricted picklist field: {text}",
            [label],
        )
    return text


# --------------------------------------------------------------------------------------------------
# SOQL (a subset: SELECT fields|COUNT() FROM obj [WHERE ...] [ORDER BY ...] [LIMIT n] [OFFSET n])

_SOQL_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "like",
    "order",
    "by",
    "asc",
    "desc",
    "limit",
    "offset",
    "nulls",
    "first",
    "last",
    "null",
    "true",
    "false",
}


def _malformed(message: str) -> SfError:
    return SfError("MALFORMED_QUERY", message)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(soql: str) -> list[_Tok]:
    tokens, pos = [], 0
    soql = soql.rstrip()
    while pos < len(soql):
        m = _SOQL_TOKEN.match(soql, pos)
        if not m or m.end() == pos:
            raise _malformed(f"unexpected token: '{soql[pos:].strip()[:30]}'")
        kind = m.lastgroup or ""
        tokens.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return tokens


@dataclass
class SoqlQuery:
    sobject: ObjectDef
    fields: list[str]  # canonical names, relationship paths as "Rel.Field"
    count: bool
    where: Callable[[dict[str, Any]], bool] | None
    order: list[tuple[str, bool, bool]]  # (field path, descending, nulls_last)
    limit: int | None
    offset: int


class _SoqlParser:
    def __init__(self, emulator: SalesforceEmulator, soql: str):
        self.emu = emulator
        self.toks = _tokenize(soql)
        self.i = 0
        self.obj: ObjectDef | None = None

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def is_kw(self, word: str, offset: int = 0) -> bool:
        t = self.peek(offset)
        return t is not None and t.kind == "ident" and t.text.lower() == word

    def take(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise _malformed("unexpected end of query")
        self.i += 1
        return t

    def expect_kw(self, word: str) -> None:
        t = self.take()
        if t.kind != "ident" or t.text.lower() != word:
            raise _malformed(f"unexpected token: '{t.text}', expected {word.upper()}")

    def expect_punct(self, ch: str) -> None:
        t = self.take()
        if t.text != ch:
            raise _malformed(f"unexpected token: '{t.text}', expected '{ch}'")

    def parse(self) -> SoqlQuery:
        self.expect_kw("select")
        raw_fields: list[str] = []
        count = False
        while True:
            t = self.take()
            if t.kind != "ident" or t.text.lower() in _KEYWORDS:
                raise _malformed(f"unexpected token: '{t.text}'")
            if t.text.lower() == "count" and self.peek() is not None and self.peek().text == "(":
                self.expect_punct("(")
                self.expect_punct(")")
                count = True
            else:
                raw_fields.append(t.text)
            if self.peek() is not None and self.peek().text == ",":
                self.take()
                continue
            break
        self.expect_kw("from")
        name = self.take().text
        obj = _OBJECTS_LOWER.get(name.lower())
        if obj is None or obj.event:
            raise SfError(
                "INVALID_TYPE",
                f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name.",
            )
        self.obj = obj
        fields = [self.field_path(f) for f in raw_fields]
        if count and fields:
            raise _malformed("COUNT() cannot be combined with other fields")
        where = None
        if self.is_kw("where"):
            self.take()
            where = self.expr()
        order: list[tuple[str, bool, bool]] = []
        if self.is_kw("order"):
            self.take()
            self.expect_kw("by")
            while True:
                path = self.field_path(self.take().text)
                desc = False
                if self.is_kw("asc") or self.is_kw("desc"):
                    desc = self.take().text.lower() == "desc"
                nulls_last = desc
                if self.is_kw("nulls"):
                    self.take()
                    nulls_last = self.take().text.lower() == "last"
                order.append((path, desc, nulls_last))
                if self.peek() is not None and self.peek().text == ",":
                    self.take()
                    continue
                break
        limit, offset = None, 0
        if self.is_kw("limit"):
            self.take()
            limit = self.integer()
        if self.is_kw("offset"):
            self.take()
            offset = self.integer()
        if self.peek() is not None:
            raise _malformed(f"unexpected token: '{self.peek().text}'")
        return SoqlQuery(obj, fields, count, where, order, limit, offset)

    def integer(self) -> int:
        t = self.take()
        if t.kind != "number" or not t.text.isdigit():
            raise _malformed(f"unexpected token: '{t.text}', expected a non-negative integer")
        return int(t.text)

    def field_path(self, name: str) -> str:
        assert self.obj is not None
        return self.emu.field_path(self.obj, name)

    # expr := term (OR term)* ; term := factor (AND factor)* ; factor := NOT factor | (expr) | cond
    def expr(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self.term()]
        while self.is_kw("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda r, ps=parts: any(p(r) for p in ps))

    def term(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self.factor()]
        while self.is_kw("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r, ps=parts: all(p(r) for p in ps))

    def factor(self) -> Callable[[dict[str, Any]], bool]:
        if self.is_kw("not"):
            self.take()
            inner = self.factor()
            return lambda r: not inner(r)
        if self.peek() is not None and self.peek().text == "(":
            self.take()
            inner = self.expr()
            self.expect_punct(")")
            return inner
        return self.condition()

    def literal(self) -> Any:
        t = self.take()
        if t.kind == "string":
            return re.sub(r"\\(.)", r"\1", t.text[1:-1])
        if t.kind == "number":
            return Decimal(t.text)
        if t.kind in ("date", "datetime"):
            return t.text
        if t.kind == "ident" and t.text.lower() in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[t.text.lower()]
        raise _malformed(f"unexpected token: '{t.text}'")

    def condition(self) -> Callable[[dict[str, Any]], bool]:
        assert self.obj is not None
        name = self.take()
        if name.kind != "ident":
            raise _malformed(f"unexpected token: '{name.text}'")
        path = self.field_path(name.text)
        fd = self.emu.field_def(self.obj, path)
        negate = False
        if self.is_kw("not") and self.is_kw("in", 1):
            self.take()
            negate = True
        if self.is_kw("in"):
            self.take()
            self.expect_punct("(")
            values = [self.literal()]
            while self.peek() is not None and self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect_punct(")")
            emu = self.emu

            def in_list(r: dict[str, Any]) -> bool:
                v = emu.path_value(r, path)
                hit = v is not None and any(_soql_equal(fd, v, c) for c in values)
                return hit != negate

            return in_list
        if self.is_kw("like"):
            self.take()
            pattern = self.literal()
            regex = re.compile(
                "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern)),
                re.IGNORECASE | re.DOTALL,
            )
            return lambda r: (v := self.emu.path_value(r, path)) is not None and bool(regex.fullmatch(str(v)))
        op = self.take()
        if op.kind != "op":
            raise _malformed(f"unexpected token: '{op.text}'")
        value = self.literal()
        return _comparison(self.emu, path, fd, op.text, value)


def _soql_key(fd: FieldDef | None, value: Any) -> Any:
    if value is None:
        return None
    kind = fd.type if fd else "string"
    if kind in ("double", "currency"):
        return Decimal(str(value))
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "datetime":
        return _parse_sf_datetime(str(value))
    if kind == "date":
        return str(value)[:10]
    return str(value).casefold()  # SOQL string comparison is case-insensitive


def _soql_equal(fd: FieldDef | None, left: Any, right: Any) -> bool:
    try:
        return _soql_key(fd, left) == _soql_key(fd, right)
    except (ValueError, InvalidOperation):
        return False


def _comparison(emu: SalesforceEmulator, path: str, fd: FieldDef | None, op: str, value: Any):
    if value is None:
        if op not in ("=", "!=", "<>"):
            raise _malformed("null can only be compared with = or !=")
        want_null = op == "="
        return lambda r: (emu.path_value(r, path) is None) == want_null
    try:
        right = _soql_key(fd, value)
    except (ValueError, InvalidOperation) as exc:
        raise SfError(
            "INVALID_QUERY_FILTER_OPERATOR",
            f"value of filter criterion for field '{path}' must be of type {fd.type if fd else 'string'}",
        ) from exc

    def compare(r: dict[str, Any]) -> bool:
        v = emu.path_value(r, path)
        if v is None:
            return op in ("!=", "<>")
        left = _soql_key(fd, v)
        if op == "=":
            return left == right
        if op in ("!=", "<>"):
            return left != right
        try:
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        except TypeError:
            return False

    return compare


# --------------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Lock:
    remaining: int
    sobject: str | None = None
    key: str | None = None


@dataclass
class _Job:
    id: str
    sobject: str
    operation: str
    external_id: str | None
    version: str
    created: str
    line_ending: str = "LF"
    delimiter: str = "COMMA"
    state: str = "Open"
    data: bytes | None = None
    polls_left: int = 0
    processed: int = 0
    failed: int = 0
    error_message: str | None = None
    successful_csv: str = ""
    failed_csv: str = ""
    unprocessed_csv: str = ""
    modstamp: str = ""

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": USER_ID,
            "createdDate": self.created,
            "systemModstamp": self.modstamp or self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "jobType": "V2Ingest",
            "contentUrl": f"services/data/v{self.version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": self.failed,
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}


class SalesforceEmulator(Emulator):
    """Salesforce REST + Bulk API 2.0 over HTTPS for the CONTRACT.md §5 objects.

    ``seed_dir`` is the ``salesforce/`` directory of a seed: ``<SObject>/*.json`` files, each a JSON
    array of records (field names as in describe; ``Id`` optional; relationship fields such as
    ``Contact__r: {"Loyalty_Member_Id__c": ...}`` allowed). ``cert_dir`` receives the CA PEM
    (:attr:`ca_path`) clients must trust. ``bulk_polls_in_progress``: how many job-info GETs after
    ``UploadComplete`` still answer ``InProgress`` before ``JobComplete``.
    """

    name = "salesforce"

    def __init__(
        self,
        seed_dir: Path | None = None,
        *,
        cert_dir: Path,
        session_id: str = DEFAULT_SESSION_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        api_version: str = DEFAULT_API_VERSION,
        daily_api_limit: int = DEFAULT_DAILY_API_LIMIT,
        query_page_size: int = DEFAULT_QUERY_PAGE_SIZE,
        bulk_polls_in_progress: int = 1,
        clock: EmulatorClock | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.session_id = session_id
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.api_version = api_version
        self.daily_api_limit = daily_api_limit
        self.query_page_size = query_page_size
        self.bulk_polls_in_progress = bulk_polls_in_progress
        self.cert_dir = Path(cert_dir)
        self.ca_path, ssl_context = self._make_tls(self.cert_dir)
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in OBJECTS if not OBJECTS[n].event}
        self._index: dict[str, dict[str, dict[str, str]]] = {
            n: {f: {} for f in o.external_ids} for n, o in OBJECTS.items() if not o.event
        }
        self._events: list[dict[str, Any]] = []
        self._seq = 0
        self._auto: dict[str, int] = {}
        self._tokens: set[str] = set()
        self._static_revoked = False
        self._usage: deque[tuple[datetime, int]] = deque()
        self._locks: list[_Lock] = []
        self._cursors: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._jobs: dict[str, _Job] = {}
        super().__init__(clock=clock, faults=faults, host=host, port=port, ssl_context=ssl_context)
        if seed_dir is not None:
            self.load_seed(Path(seed_dir))

    # ----- TLS

    @staticmethod
    def _make_tls(cert_dir: Path) -> tuple[Path, ssl.SSLContext]:
        """A trustme CA (reused when ``cert_dir`` holds one) and a server cert for 127.0.0.1/localhost."""
        cert_dir.mkdir(parents=True, exist_ok=True)
        ca_path, key_path = cert_dir / CA_CERT_FILE, cert_dir / CA_KEY_FILE
        ca = None
        if ca_path.is_file() and key_path.is_file():
            try:
                ca = trustme.CA.from_pem(ca_path.read_bytes(), key_path.read_bytes())
            except (ValueError, TypeError):
                ca = None
        if ca is None:
            ca = trustme.CA(organization_name="loyalty sandbox")
            ca.cert_pem.write_to_path(str(ca_path))
            key_path.touch(mode=0o600)
            ca.private_key_pem.write_to_path(str(key_path))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ca_path, ctx

    # ----- configuration handed to the project

    def env(self) -> dict[str, str]:
        """CONTRACT.md §4 variables pointing at this emulator (both auth modes are served)."""
        return {
            "SALESFORCE_INSTANCE_URL": self.base_url,
            "SALESFORCE_SESSION_ID": self.session_id,
            "SALESFORCE_CA_BUNDLE": str(self.ca_path),
            "SALESFORCE_LOGIN_URL": self.base_url,
            "SALESFORCE_CLIENT_ID": self.client_id,
            "SALESFORCE_CLIENT_SECRET": self.client_secret,
            "SALESFORCE_USERNAME": self.username,
            "SALESFORCE_PASSWORD": self.password,
        }

    # ----- schema helpers used by the SOQL parser

    def field_path(self, obj: ObjectDef, name: str) -> str:
        """Canonical ``Field`` or ``Rel.Field`` for a SOQL name; INVALID_FIELD when unknown."""
        if "." in name:
            rel_name, _, target_field = name.partition(".")
            rel = obj.relationship(rel_name)
            target = OBJECTS.get(rel.reference_to or "") if rel else None
            tfd = target.field(target_field) if target else None
            if rel is None or tfd is None or "." in target_field:
                raise self._no_column(obj, name)
            return f"{rel.relationship_name}.{tfd.name}"
        fd = obj.field(name)
        if fd is None:
            raise self._no_column(obj, name)
        return fd.name

    @staticmethod
    def _no_column(obj: ObjectDef, name: str) -> SfError:
        return SfError(
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom field, "
            "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
            "describe call for the appropriate names.",
        )

    def field_def(self, obj: ObjectDef, path: str) -> FieldDef | None:
        if "." in path:
            rel_name, _, fname = path.partition(".")
            rel = obj.relationship(rel_name)
            return OBJECTS[rel.reference_to].field(fname) if rel and rel.reference_to else None
        return obj.field(path)

    def path_value(self, record: dict[str, Any], path: str) -> Any:
        if "." not in path:
            return record.get(path)
        rel_name, _, fname = path.partition(".")
        obj = OBJECTS[record["attributes_type"]]
        rel = obj.relationship(rel_name)
        parent_id = record.get(rel.name) if rel else None
        if not parent_id or not rel or not rel.reference_to:
            return None
        parent = next((p for t in rel.targets if (p := self._records.get(t, {}).get(parent_id))), None)
        return parent.get(fname) if parent else None

    # ----- data

    def load_seed(self, seed_dir: Path) -> None:
        """Load ``<seed_dir>/<SObject>/*.json``; a malformed file or an invalid record fails loudly."""
        if not seed_dir.is_dir():
            raise FileNotFoundError(f"Salesforce seed directory {seed_dir} does not exist")
        folders = {p.name: p for p in seed_dir.iterdir() if p.is_dir()}
        unknown = [n for n in folders if n not in OBJECTS or OBJECTS[n].event]
        if unknown:
            raise ValueError(f"{seed_dir}: unknown or non-storable sObject folders {sorted(unknown)}")
        for name in sorted(folders, key=lambda n: (_LOAD_ORDER.index(n), n)):
            for path in sorted(folders[name].glob("*.json")):
                try:
                    data = loads(path.read_bytes())
                except ValueError as exc:
                    raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                if not isinstance(data, list):
                    raise ValueError(f"{path}: expected a JSON array of {name} records")
                self._insert_many(name, data, source=str(path))

    def add_records(self, sobject: str, records: Iterable[dict[str, Any]]) -> list[str]:
        """Create records at runtime (e.g. an adjustment request typed by a CRM user); returns ids."""
        return self._insert_many(sobject, loads(dumps(list(records))), source="add_records")

    def _insert_many(self, sobject: str, records: list[Any], *, source: str) -> list[str]:
        obj = self._object(sobject, storable=True)
        ids = []
        skipped: set[str] = set()
        with self._lock:
            for index, record in enumerate(records):
                if not isinstance(record, dict):
                    raise ValueError(f"{source}: {sobject}[{index}] is not a JSON object")
                # Read-only fields a seed may carry (e.g. an exported record) are dropped, not refused; so
                # are a seed's standard fields this emulator does not describe (a real org has hundreds,
                # and a related record's nested object): only an unknown custom field is refused.
                body = {
                    k: v
                    for k, v in record.items()
                    if k != "attributes" and (obj.field(k) is None or obj.field(k).createable)
                }
                if source != "add_records":
                    skipped |= {k for k in body if obj.field(k) is None and obj.relationship(k) is None
                                and not k.endswith(("__c", "__r"))}
                    body = {k: v for k, v in body.items() if k not in skipped}
                try:
                    record_id, _ = self._write(
                        obj,
                        None,
                        body,
                        txn=None,
                        forced_id=record.get("Id"),
                        forced_name=record.get("Name") if obj.auto_name else None,
                        check_lock=False,
                    )
                except SfError as exc:
                    raise ValueError(f"{source}: {sobject}[{index}]: {exc}") from exc
                # An exported record keeps its own dates and a Lead its conversion (read-only through the API).
                stored = self._records[obj.name].get(record_id)
                created = record.get("CreatedDate") or record.get("LastModifiedDate")
                if stored is not None and created:
                    stored["CreatedDate"] = created
                    stored["LastModifiedDate"] = stored["SystemModstamp"] = record.get("LastModifiedDate") or created
                if stored is not None and obj.name == "Lead" and record.get("IsConverted") is True:
                    stored["IsConverted"] = True
                ids.append(record_id)
        if skipped:
            log.warning("%s: %s fields this emulator does not describe were left out: %s", source, sobject,
                        ", ".join(sorted(skipped)))
        return ids

    def convert_lead(self, lead_id: str) -> str:
        """What a CRM user's Convert button does (the REST API has none): a Contact from the Lead's
        name and contact details (custom fields are not mapped), the Lead read-only from then on.
        Returns the Contact's id."""
        with self._lock:
            lead = self._find(OBJECTS["Lead"], "Id", lead_id)
            if lead is None or lead.get("IsConverted"):
                raise ValueError(f"no unconverted Lead {lead_id}")
            contact_id, _ = self._write(OBJECTS["Contact"], None, {
                k: lead.get(k) for k in ("FirstName", "LastName", "Email", "Phone", "HasOptedOutOfEmail", "DoNotCall")
            }, txn=None, check_lock=False)
            now = sf_datetime(self.clock.now())
            lead.update(IsConverted=True, ConvertedContactId=contact_id, Status="Closed - Converted",
                        LastModifiedDate=now, SystemModstamp=now)
            return contact_id

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every stored record of ``sobject`` (copies), in creation order."""
        obj = self._object(sobject, storable=True)
        with self._lock:
            return [self._public(obj, r) for r in self._records[obj.name].values()]

    def get_record(self, sobject: str, key: str, field_name: str = "Id") -> dict[str, Any] | None:
        obj = self._object(sobject, storable=True)
        with self._lock:
            record = self._find(obj, field_name, key)
            return self._public(obj, record) if record else None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Published platform events (copies), in publish order."""
        with self._lock:
            return [dict(e) for e in self._events]

    def _object(self, sobject: str, *, storable: bool = False) -> ObjectDef:
        obj = _OBJECTS_LOWER.get(sobject.lower())
        if obj is None or (storable and obj.event):
            raise ValueError(f"unknown or non-storable sObject {sobject!r} (known: {sorted(OBJECTS)})")
        return obj

    @staticmethod
    def _public(obj: ObjectDef, record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "attributes_type"}

    def _next_id(self, obj: ObjectDef) -> str:
        self._seq += 1
        return id18(f"{obj.key_prefix}5g{self._seq:010d}")

    def _find(self, obj: ObjectDef, field_name: str, value: str) -> dict[str, Any] | None:
        if field_name == "Id":
            return self._records[obj.name].get(value) or (
                self._records[obj.name].get(id18(value)) if len(value) == 15 else None
            )
        record_id = self._index[obj.name][field_name].get(value)
        return self._records[obj.name].get(record_id) if record_id else None

    def _take_lock(self, sobject: str, key: str | None) -> None:
        for lock in self._locks:
            if lock.remaining > 0 and lock.sobject in (None, sobject) and lock.key in (None, key):
                lock.remaining -= 1
                if lock.remaining == 0:
                    self._locks.remove(lock)
                raise SfError("UNABLE_TO_LOCK_ROW", LOCK_MESSAGE)

    def lock_rows(self, count: int = 1, *, sobject: str | None = None, key: str | None = None) -> None:
        """Make the next ``count`` record writes (optionally of one sObject / one key) fail with
        ``UNABLE_TO_LOCK_ROW``, the retryable row-lock contention error."""
        with self._lock:
            self._locks.append(_Lock(int(count), self._object(sobject).name if sobject else None, key))

    def _resolve_body(self, obj: ObjectDef, body: dict[str, Any]) -> dict[str, Any]:
        """Field names canonicalized, relationship-by-external-id resolved to ids, values coerced."""
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            fd = obj.field(key)
            if fd is None:
                rel = obj.relationship(key)
                if rel is None or not isinstance(value, dict) or not rel.reference_to:
                    raise SfError(
                        "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", []
                    )
                out[rel.name] = self._resolve_reference(obj, rel, value)
                continue
            if fd.type == "reference" and value not in (None, ""):
                targets = [OBJECTS[t] for t in fd.targets if t in OBJECTS and t in self._records]
                if not targets:
                    out[fd.name] = str(value)  # e.g. User ids: not modelled, accepted as given
                    continue
                found = next((r for t in targets if (r := self._find(t, "Id", str(value)))), None)
                if found is None:
                    raise SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fd.name])
                out[fd.name] = found["Id"]
                continue
            out[fd.name] = _coerce(obj, fd, value)
        return out

    def _resolve_reference(self, obj: ObjectDef, rel: FieldDef, value: dict[str, Any]) -> str:
        target = OBJECTS[rel.reference_to or ""]
        if rel.polymorphic:  # the parent's type must be named: {"attributes": {"type": "Contact"}, ...}
            named = (value.get("attributes") or {}).get("type") if isinstance(value.get("attributes"), dict) else None
            match = next((t for t in rel.polymorphic if named and t.lower() == str(named).lower()), None)
            if match is None:
                raise SfError(
                    "INVALID_FIELD",
                    f"The polymorphic foreign key {rel.relationship_name} needs attributes.type, one of "
                    f"{', '.join(rel.polymorphic)}",
                    [rel.name],
                )
            target = OBJECTS[match]
        keys = [k for k in value if k != "attributes"]
        if len(keys) != 1:
            raise SfError(
                "INVALID_FIELD",
                f"{rel.relationship_name} must name exactly one external id field",
                [rel.name],
            )
        tfd = target.field(keys[0])
        if tfd is None or not (tfd.external_id or tfd.name == "Id"):
            raise SfError(
                "INVALID_FIELD",
                f"The {keys[0]} field on {target.name} is not an external id field or Id",
                [rel.name],
            )
        lookup = str(value[keys[0]])
        parent = self._find(target, tfd.name, lookup)
        if parent is None:
            raise SfError(
                "INVALID_FIELD",
                f"Foreign key external ID: {lookup} not found for field {tfd.name} in entity {target.name}",
                [rel.name],
            )
        return parent["Id"]

    def _write(
        self,
        obj: ObjectDef,
        existing: dict[str, Any] | None,
        body: dict[str, Any],
        *,
        txn: list[tuple[str, str, dict[str, Any] | None]] | None,
        forced_id: str | None = None,
        forced_name: str | None = None,
        check_lock: bool = True,
        lock_key: str | None = None,
    ) -> tuple[str, bool]:
        """Create (``existing`` None) or update one record; returns (id, created). Raises SfError."""
        if check_lock:
            self._take_lock(obj.name, lock_key)
        values = self._resolve_body(obj, body)
        creating = existing is None
        bad = [n for n in values if not (obj.fields[n].createable if creating else obj.fields[n].updateable)]
        if bad:
            raise SfError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(bad)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                bad,
            )
        now = sf_datetime(self.clock.now())
        if creating:
            record: dict[str, Any] = {**_blank(obj), **values}
            missing = [
                fd.name for fd in obj.fields.values() if fd.required and record.get(fd.name) in (None, "")
            ]
            if missing:
                raise SfError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                )
            record.update(Id=forced_id or self._next_id(obj), CreatedDate=now, CreatedById=USER_ID)
            if obj.auto_name:
                self._auto[obj.name] = self._auto.get(obj.name, 0) + 1
                record["Name"] = forced_name or obj.auto_name.format(self._auto[obj.name])
        else:
            if obj.name == "Lead" and existing.get("IsConverted"):
                raise SfError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            record = dict(existing)
            record.update(values)
        if obj.name in ("Contact", "Lead"):
            record["Name"] = _person_name(record)
        if obj.name == "Task":
            record["IsClosed"] = record.get("Status") == "Completed"
        record.update(LastModifiedDate=now, LastModifiedById=USER_ID, SystemModstamp=now, IsDeleted=False)
        person_contact = self._person_contact(record, values, creating) if obj.name == "Account" else None
        self._check_unique(obj, record)
        if person_contact is not None:
            self._store(OBJECTS["Contact"], person_contact, txn)
            record["PersonContactId"] = person_contact["Id"]
        self._store(obj, record, txn)
        return record["Id"], creating

    def _person_contact(self, account: dict[str, Any], values: dict[str, Any], creating: bool) -> dict[str, Any] | None:
        """A person Account (created with the person-account record type) shows and writes its person's
        Contact: its name is the person's, and the Contact is created or updated beside it. A business
        Account needs a Name and takes no person fields. Returns the person Contact to store, if any."""
        person = account.get("IsPersonAccount") or account.get("RecordTypeId") == PERSON_ACCOUNT_RECORD_TYPE_ID
        if not person:
            given = [n for n in values if n in _PERSON_CONTACT_FIELDS]
            if given:
                raise SfError("INVALID_FIELD", f"Cannot set person account fields on a business account: "
                              f"{', '.join(given)}", given)
            if creating and not account.get("Name"):
                raise SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"])
            return None
        if "Name" in values:
            raise SfError("INVALID_FIELD_FOR_INSERT_UPDATE", "Name is set from FirstName and LastName on a person "
                          "account", ["Name"])
        if not account.get("LastName"):
            raise SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"])
        account["IsPersonAccount"] = True
        account["Name"] = _person_name(account)
        contact_obj = OBJECTS["Contact"]
        existing = self._records["Contact"].get(account.get("PersonContactId") or "")
        contact = dict(existing) if existing else {
            **_blank(contact_obj), "Id": self._next_id(contact_obj), "CreatedDate": account["LastModifiedDate"],
            "CreatedById": USER_ID}
        for account_field, contact_field in _PERSON_CONTACT_FIELDS.items():
            contact[contact_field] = account.get(account_field)
        contact.update(AccountId=account["Id"], IsPersonAccount=True, Name=account["Name"],
                       LastModifiedDate=account["LastModifiedDate"], LastModifiedById=USER_ID,
                       SystemModstamp=account["LastModifiedDate"], IsDeleted=False)
        self._check_unique(contact_obj, contact)
        return contact

    def _check_unique(self, obj: ObjectDef, record: dict[str, Any]) -> None:
        """DUPLICATE_VALUE when another record of `obj` holds one of this record's external ids."""
        for ext in obj.external_ids:
            value = record.get(ext)
            if value is None:
                continue
            holder = self._index[obj.name][ext].get(value)
            if holder is not None and holder != record["Id"]:
                raise SfError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {ext} duplicates value on record with id: {holder}",
                    [ext],
                )

    def _store(self, obj: ObjectDef, record: dict[str, Any], txn: list | None) -> None:
        old = self._records[obj.name].get(record["Id"])
        if txn is not None:
            txn.append((obj.name, record["Id"], old))
        self._put(obj, record["Id"], record)

    def _put(self, obj: ObjectDef, record_id: str, record: dict[str, Any] | None) -> None:
        old = self._records[obj.name].get(record_id)
        for ext, index in self._index[obj.name].items():
            if old is not None and old.get(ext) is not None:
                index.pop(old[ext], None)
            if record is not None and record.get(ext) is not None:
                index[record[ext]] = record_id
        if record is None:
            self._records[obj.name].pop(record_id, None)
        else:
            self._records[obj.name][record_id] = record

    def _rollback(self, txn: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        for sobject, record_id, old in reversed(txn):
            self._put(OBJECTS[sobject], record_id, old)

    def _upsert(
        self, obj: ObjectDef, ext_field: str, value: str, body: dict[str, Any], txn: list | None
    ) -> tuple[str, bool]:
        body_value = next((v for k, v in body.items() if k.lower() == ext_field.lower()), None)
        if body_value is not None and str(body_value) != value:
            raise SfError(
                "INVALID_FIELD", f"{ext_field}: the value in the body does not match the URL", [ext_field]
            )
        body = {k: v for k, v in body.items() if k.lower() != ext_field.lower()}
        existing = self._find(obj, ext_field, value)
        if existing is None and ext_field == "Id":
            raise SfError(
                "NOT_FOUND", "Provided external ID field does not exist or is not accessible: Id", status=404
            )
        if existing is None:
            body[ext_field] = value
        return self._write(obj, existing, body, txn=txn, lock_key=value)

    def _ext_field(self, obj: ObjectDef, name: str) -> str:
        fd = obj.field(name)
        if fd is None or not (fd.external_id or fd.name == "Id"):
            raise _abort(
                "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}", 404
            )
        return fd.name

    # ----- API usage and auth

    def _api_used(self) -> int:
        cutoff = self.clock.now() - timedelta(hours=24)
        while self._usage and self._usage[0][0] <= cutoff:
            self._usage.popleft()
        return sum(n for _, n in self._usage)

    @property
    def api_usage(self) -> dict[str, int]:
        """``{"used": N, "max": LIMIT}`` over the rolling 24 hours of the emulator clock."""
        with self._lock:
            return {"used": self._api_used(), "max": self.daily_api_limit}

    def set_api_usage(self, used: int, limit: int | None = None) -> None:
        """Pretend ``used`` calls were made in the window (e.g. just under the limit)."""
        with self._lock:
            self._usage.clear()
            if used:
                self._usage.append((self.clock.now(), int(used)))
            if limit is not None:
                self.daily_api_limit = int(limit)

    def expire_sessions(self, *, include_static: bool = False) -> None:
        """Invalidate every OAuth-issued token (and the static session id when asked)."""
        with self._lock:
            self._tokens.clear()
            self._static_revoked = self._static_revoked or include_static

    def _authenticate(self, request: Request) -> None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() in ("bearer", "oauth") else ""
        token = token or (request.header("x-sfdc-session") or "").strip()
        with self._lock:
            ok = (token == self.session_id and not self._static_revoked) or token in self._tokens
        if not ok:
            raise _abort("INVALID_SESSION_ID", "Session expired or invalid", 401)

    def _charge(self) -> None:
        with self._lock:
            if self._api_used() >= self.daily_api_limit:
                raise _abort(
                    "REQUEST_LIMIT_EXCEEDED",
                    f"TotalRequests Limit exceeded. (limit {self.daily_api_limit} per 24 hours)",
                    403,
                )
            self._usage.append((self.clock.now(), 1))

    def _api(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            version = float(request.path_params["version"])
            if not MIN_API_VERSION <= version <= float(self.api_version):
                raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
            self._authenticate(request)
            self._charge()
            try:
                return handler(request)
            except SfError as exc:
                return json_response([exc.rest()], exc.status)

        return wrapped

    def handle(self, request: Request) -> tuple[Response | None, str | None]:
        response, fault = super().handle(request)
        if response is not None and request.path.startswith("/services/data"):
            usage = self.api_usage
            response.headers["Sforce-Limit-Info"] = f"api-usage={usage['used']}/{usage['max']}"
        return response, fault

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        code = {
            400: "BAD_REQUEST",
            401: "INVALID_SESSION_ID",
            403: "FORBIDDEN",
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            429: "TOO_MANY_REQUESTS",
            500: "UNKNOWN_EXCEPTION",
        }.get(status, "SERVER_UNAVAILABLE" if status >= 500 else "BAD_REQUEST")
        return json_response([{"message": message, "errorCode": code}], status, headers)

    def not_found(self, request: Request) -> Response:
        return sf_error_response("NOT_FOUND", "The requested resource does not exist", 404)

    def method_not_allowed(self, request: Request) -> Response:
        return sf_error_response(
            "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed for {request.path}", 405
        )

    # ----- routes

    def register_routes(self, router: Router) -> None:
        P, api = _PREFIX, self._api
        router.add("POST", r"/services/oauth2/token", self._oauth_token, "oauth token")
        router.add("GET", r"/services/data/?", self._versions, "versions")
        router.add("GET", P + r"/?", api(self._resources), "resources")
        router.add("GET", P + r"/limits/?", api(self._limits), "limits")
        router.add("GET", P + r"/sobjects/?", api(self._global_describe), "global describe")
        router.add("GET", P + r"/sobjects/(?P<sobject>\w+)/describe/?", api(self._describe), "describe")
        router.add("GET", P + r"/sobjects/(?P<sobject>\w+)/?", api(self._sobject_info), "sobject info")
        router.add("POST", P + r"/sobjects/(?P<sobject>\w+)/?", api(self._create), "create")
        rid = P + r"/sobjects/(?P<sobject>\w+)/(?P<id>[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?)/?"
        router.add("GET", rid, api(self._get_by_id), "get by id")
        router.add("PATCH", rid, api(self._update_by_id), "update by id")
        router.add("DELETE", rid, api(self._delete_by_id), "delete by id")
        ext = P + r"/sobjects/(?P<sobject>\w+)/(?P<field>\w+)/(?P<value>[^/]+)/?"
        router.add("GET", ext, api(self._get_by_ext), "get by external id")
        router.add("PATCH", ext, api(self._upsert_one), "upsert")
        router.add("DELETE", ext, api(self._delete_by_ext), "delete by external id")
        router.add(
            "PATCH",
            P + r"/composite/sobjects/(?P<sobject>\w+)/(?P<field>\w+)/?",
            api(self._collection_upsert),
            "collections upsert",
        )
        router.add("POST", P + r"/composite/sobjects/?", api(self._collection_create), "collections create")
        router.add("GET", P + r"/query(?:All)?/?", api(self._query), "query")
        router.add(
            "GET",
            P + r"/query(?:All)?/(?P<cursor>[A-Za-z0-9]+)-(?P<offset>\d+)/?",
            api(self._query_more),
            "query more",
        )
        jobs = P + r"/jobs/ingest"
        router.add("POST", jobs + r"/?", api(self._job_create), "bulk2 create job")
        router.add("GET", jobs + r"/?", api(self._job_list), "bulk2 list jobs")
        router.add("GET", jobs + r"/(?P<job>\w+)/?", api(self._job_get), "bulk2 job info")
        router.add("PATCH", jobs + r"/(?P<job>\w+)/?", api(self._job_patch), "bulk2 job state")
        router.add("DELETE", jobs + r"/(?P<job>\w+)/?", api(self._job_delete), "bulk2 delete job")
        router.add("PUT", jobs + r"/(?P<job>\w+)/batches/?", api(self._job_upload), "bulk2 upload")
        router.add(
            "GET",
            jobs + r"/(?P<job>\w+)/(?P<kind>(?i:successfulResults|failedResults|unprocessedRecords))/?",
            api(self._job_results),
            "bulk2 results",
        )

    def register_control_routes(self, router: Router) -> None:
        router.add(
            "GET",
            r"/_sandbox/salesforce/records/(?P<sobject>\w+)",
            self._control_records,
            "sandbox sf records",
        )
        router.add("POST", r"/_sandbox/salesforce/records", self._control_add, "sandbox sf add records")
        router.add("GET", r"/_sandbox/salesforce/events", self._control_events, "sandbox sf events")
        router.add("GET", r"/_sandbox/salesforce/jobs", self._control_jobs, "sandbox sf jobs")
        router.add("GET", r"/_sandbox/salesforce/usage", self._control_usage_get, "sandbox sf usage")
        router.add("POST", r"/_sandbox/salesforce/usage", self._control_usage_post, "sandbox sf usage")
        router.add("POST", r"/_sandbox/salesforce/locks", self._control_locks, "sandbox sf locks")
        router.add("POST", r"/_sandbox/salesforce/sessions/expire", self._control_expire, "sandbox sf expire")

    # ----- auth endpoints

    def _oauth_token(self, request: Request) -> Response:
        form = {
            k: v[0]
            for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        form.update({k: v[0] for k, v in request.query.items() if k not in form})
        grant = form.get("grant_type")
        if grant not in ("password", "client_credentials"):
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        if form.get("client_id") != self.client_id:
            return json_response(
                {"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400
            )
        if form.get("client_secret") != self.client_secret:
            return json_response(
                {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
            )
        if grant == "password" and (
            form.get("username") != self.username
            or not str(form.get("password", "")).startswith(self.password)
        ):
            return json_response(
                {"error": "invalid_grant", "error_description": "authentication failure"}, 400
            )
        token = f"{ORG_ID}!AQ0AQ{secrets.token_urlsafe(40)}"
        with self._lock:
            self._tokens.add(token)
        return json_response(
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(self.clock.now().timestamp() * 1000)),
                "signature": secrets.token_urlsafe(32),
            }
        )

    def _versions(self, request: Request) -> Response:
        top = int(float(self.api_version))
        return json_response(
            [
                {"label": f"API v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                for v in range(46, top + 1)
            ]
        )

    def _resources(self, request: Request) -> Response:
        v = request.path_params["version"]
        names = ["sobjects", "query", "queryAll", "limits", "composite", "jobs"]
        return json_response({n: f"/services/data/v{v}/{n}" for n in names})

    def _limits(self, request: Request) -> Response:
        usage = self.api_usage
        return json_response(
            {
                "DailyApiRequests": {"Max": usage["max"], "Remaining": max(0, usage["max"] - usage["used"])},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - len(self._jobs)},
            }
        )

    # ----- sObject endpoints

    def _req_object(self, request: Request, *, storable: bool = True) -> ObjectDef:
        name = request.path_params["sobject"]
        obj = _OBJECTS_LOWER.get(name.lower())
        if obj is None:
            raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
        if storable and obj.event:
            raise _abort(
                "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are POST", 405
            )
        return obj

    def _global_describe(self, request: Request) -> Response:
        v = request.path_params["version"]
        sobjects = []
        for o in OBJECTS.values():
            d = o.describe(v)
            d.pop("fields")
            sobjects.append(d)
        return json_response({"encoding": "UTF-8", "maxBatchSize": COLLECTION_LIMIT, "sobjects": sobjects})

    def _describe(self, request: Request) -> Response:
        obj = self._req_object(request, storable=False)
        return json_response(obj.describe(request.path_params["version"]))

    def _sobject_info(self, request: Request) -> Response:
        obj = self._req_object(request, storable=False)
        d = obj.describe(request.path_params["version"])
        d.pop("fields")
        return json_response({"objectDescribe": d, "recentItems": []})

    def _render(
        self, obj: ObjectDef, record: dict[str, Any], version: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}",
            }
        }
        for name in fields if fields is not None else list(obj.fields):
            if "." not in name:
                out[name] = record.get(name)
                continue
            rel_name, _, fname = name.partition(".")
            rel = obj.relationship(rel_name)
            assert rel is not None and rel.reference_to
            parent = self._records[rel.reference_to].get(record.get(rel.name) or "")
            if parent is None:
                out[rel_name] = None
                continue
            nested = out.get(rel_name) or {
                "attributes": {
                    "type": rel.reference_to,
                    "url": f"/services/data/v{version}/sobjects/{rel.reference_to}/{parent['Id']}",
                }
            }
            nested[fname] = parent.get(fname)
            out[rel_name] = nested
        return out

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except Abort as exc:
            raise _abort("JSON_PARSER_ERROR", "The request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise _abort("JSON_PARSER_ERROR", "Cannot deserialize instance of SObject from START_ARRAY value")
        return body

    def _create(self, request: Request) -> Response:
        obj = self._req_object(request, storable=False)
        body = self._body(request)
        with self._lock:
            if obj.event:
                event = self._publish(obj, body)
                return json_response(
                    {
                        "id": event["Id"],
                        "success": True,
                        "errors": [
                            {"statusCode": "OPERATION_ENQUEUED", "message": event["EventUuid"], "fields": []}
                        ],
                    },
                    201,
                )
            record_id, _ = self._write(obj, None, body, txn=None)
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    def _publish(self, obj: ObjectDef, body: dict[str, Any]) -> dict[str, Any]:
        values = self._resolve_body(obj, body)
        bad = [n for n in values if not obj.fields[n].createable]
        if bad:
            raise SfError(
                "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {', '.join(bad)}.", bad
            )
        self._seq += 1
        event = {
            "Id": id18(f"{obj.key_prefix}5g{self._seq:010d}"),
            "ReplayId": str(len(self._events) + 1),
            "EventUuid": str(uuid.uuid4()),
            "CreatedDate": sf_datetime(self.clock.now()),
            "CreatedById": USER_ID,
            "sobject": obj.name,
        }
        event.update(values)
        self._events.append(event)
        return event

    def _get_by_id(self, request: Request) -> Response:
        obj = self._req_object(request)
        with self._lock:
            record = self._find(obj, "Id", request.path_params["id"])
            if record is None:
                raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
            return json_response(
                self._render(obj, record, request.path_params["version"], self._fields_arg(obj, request))
            )

    def _fields_arg(self, obj: ObjectDef, request: Request) -> list[str] | None:
        raw = request.arg("fields")
        if not raw:
            return None
        try:
            return [self.field_path(obj, f.strip()) for f in raw.split(",") if f.strip()]
        except SfError as exc:
            raise Abort(json_response([exc.rest()], 400)) from exc

    def _update_by_id(self, request: Request) -> Response:
        obj = self._req_object(request)
        body = self._body(request)
        with self._lock:
            record = self._find(obj, "Id", request.path_params["id"])
            if record is None:
                raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
            self._write(obj, record, body, txn=None, lock_key=record["Id"])
        return Response(204)

    def _delete_by_id(self, request: Request) -> Response:
        obj = self._req_object(request)
        with self._lock:
            record = self._find(obj, "Id", request.path_params["id"])
            if record is None:
                raise _abort("ENTITY_IS_DELETED", "entity is deleted", 404)
            self._put(obj, record["Id"], None)
        return Response(204)

    def _get_by_ext(self, request: Request) -> Response:
        obj = self._req_object(request)
        field_name = self._ext_field(obj, request.path_params["field"])
        with self._lock:
            record = self._find(obj, field_name, unquote(request.path_params["value"]))
            if record is None:
                raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
            return json_response(
                self._render(obj, record, request.path_params["version"], self._fields_arg(obj, request))
            )

    def _delete_by_ext(self, request: Request) -> Response:
        obj = self._req_object(request)
        field_name = self._ext_field(obj, request.path_params["field"])
        with self._lock:
            record = self._find(obj, field_name, unquote(request.path_params["value"]))
            if record is None:
                raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
            self._put(obj, record["Id"], None)
        return Response(204)

    def _upsert_one(self, request: Request) -> Response:
        obj = self._req_object(request)
        field_name = self._ext_field(obj, request.path_params["field"])
        # Split on "/" first, then decode: external ids may contain an encoded "/" (salesforce.md §4).
        value = unquote(request.path_params["value"])
        body = self._body(request)
        with self._lock:
            record_id, created = self._upsert(obj, field_name, value, body, txn=None)
        if created:
            return json_response({"id": record_id, "success": True, "errors": [], "created": True}, 201)
        if float(request.path_params["version"]) < MODERN_UPSERT_VERSION:
            return Response(204)
        return json_response({"id": record_id, "success": True, "errors": [], "created": False}, 200)

    # ----- sObject Collections

    def _collection_records(self, request: Request) -> tuple[bool, list[Any]]:
        body = self._body(request)
        records = body.get("records")
        if not isinstance(records, list):
            raise _abort("INVALID_FIELD", "records is required and must be a list")
        if len(records) > COLLECTION_LIMIT:
            raise _abort(
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
            )
        return bool(body.get("allOrNone", False)), records

    def _run_collection(
        self, all_or_none: bool, items: list[Callable[[list], dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Run each record's write inside one undo log; with allOrNone a failure rolls back all."""
        txn: list[tuple[str, str, dict[str, Any] | None]] = []
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                results.append(item(txn))
            except SfError as exc:
                results.append({"id": None, "success": False, "errors": [exc.record()]})
        if all_or_none and not all(r["success"] for r in results):
            self._rollback(txn)
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": _ROLLED_BACK,
                "fields": [],
            }
            results = [
                r if not r["success"] else {**r, "id": None, "success": False, "errors": [rolled]}
                for r in results
            ]
        return results

    def _collection_upsert(self, request: Request) -> Response:
        obj = self._req_object(request)
        field_name = self._ext_field(obj, request.path_params["field"])
        all_or_none, records = self._collection_records(request)
        seen: dict[str, int] = {}
        for rec in records:
            if isinstance(rec, dict):
                key = next((v for k, v in rec.items() if k.lower() == field_name.lower()), None)
                if key is not None:
                    seen[str(key)] = seen.get(str(key), 0) + 1

        def item_for(rec: Any) -> Callable[[list], dict[str, Any]]:
            def run(txn: list) -> dict[str, Any]:
                if not isinstance(rec, dict):
                    raise SfError("JSON_PARSER_ERROR", "each record must be a JSON object")
                rtype = (rec.get("attributes") or {}).get("type")
                if not rtype:
                    raise SfError("INVALID_TYPE", "Must send a concrete entity type.")
                if str(rtype).lower() != obj.name.lower():
                    raise SfError(
                        "INVALID_TYPE", f"Record type {rtype} does not match the type {obj.name} of the URI"
                    )
                key = next((v for k, v in rec.items() if k.lower() == field_name.lower()), None)
                if key in (None, ""):
                    raise SfError("MISSING_ARGUMENT", f"{field_name} not specified", [field_name])
                if seen.get(str(key), 0) > 1:
                    raise SfError(
                        "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {key}", [field_name]
                    )
                record_id, created = self._upsert(obj, field_name, str(key), rec, txn)
                return {"id": record_id, "success": True, "errors": [], "created": created}

            return run

        with self._lock:
            results = self._run_collection(all_or_none, [item_for(r) for r in records])
        for r in results:
            r.setdefault("created", False)
        return json_response(results)

    def _collection_create(self, request: Request) -> Response:
        all_or_none, records = self._collection_records(request)

        def item_for(rec: Any) -> Callable[[list], dict[str, Any]]:
            def run(txn: list) -> dict[str, Any]:
                if not isinstance(rec, dict):
                    raise SfError("JSON_PARSER_ERROR", "each record must be a JSON object")
                obj = _OBJECTS_LOWER.get(str((rec.get("attributes") or {}).get("type", "")).lower())
                if obj is None:
                    raise SfError("INVALID_TYPE", "Must send a concrete entity type.")
                if rec.get("Id"):
                    raise SfError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                if obj.event:
                    event = self._publish(obj, rec)
                    return {
                        "id": event["Id"],
                        "success": True,
                        "errors": [
                            {"statusCode": "OPERATION_ENQUEUED", "message": event["EventUuid"], "fields": []}
                        ],
                    }
                record_id, _ = self._write(obj, None, rec, txn=txn)
                return {"id": record_id, "success": True, "errors": []}

            return run

        with self._lock:
            return json_response(self._run_collection(all_or_none, [item_for(r) for r in records]))

    # ----- query

    def query(self, soql: str, version: str | None = None) -> dict[str, Any]:
        """Run a SOQL query (first page), as ``GET /query`` would. Raises :class:`SfError`."""
        version = version or self.api_version
        parsed = _SoqlParser(self, soql).parse()
        obj = parsed.sobject
        with self._lock:
            rows = [r for r in self._records[obj.name].values() if parsed.where is None or parsed.where(r)]
            for path, desc, nulls_last in reversed(parsed.order):
                fd = self.field_def(obj, path)
                present = [r for r in rows if self.path_value(r, path) is not None]
                absent = [r for r in rows if self.path_value(r, path) is None]
                present.sort(key=lambda r, p=path, f=fd: _soql_key(f, self.path_value(r, p)), reverse=desc)
                rows = present + absent if nulls_last else absent + present
            rows = rows[parsed.offset :]
            if parsed.limit is not None:
                rows = rows[: parsed.limit]
            if parsed.count:
                return {"totalSize": len(rows), "done": True, "records": []}
            rendered = [self._render(obj, r, version, parsed.fields) for r in rows]
        return self._page(rendered, version, secrets.token_hex(8), 0)

    def _page(self, rows: list[dict[str, Any]], version: str, cursor: str, offset: int) -> dict[str, Any]:
        page = rows[offset : offset + self.query_page_size]
        out: dict[str, Any] = {
            "totalSize": len(rows),
            "done": offset + len(page) >= len(rows),
            "records": page,
        }
        if not out["done"]:
            next_offset = offset + len(page)
            with self._lock:
                self._cursors[cursor] = (version, rows)
                while len(self._cursors) > 100:
                    self._cursors.pop(next(iter(self._cursors)))
            # A path, not a URL: simple-salesforce prefixes https://{instance} (salesforce.md §1.1).
            out["nextRecordsUrl"] = f"/services/data/v{version}/query/01g{cursor}-{next_offset}"
        return out

    def _query(self, request: Request) -> Response:
        soql = request.arg("q")
        if not soql:
            raise _abort("MALFORMED_QUERY", "A query string must be provided with the q parameter")
        return json_response(self.query(soql, request.path_params["version"]))

    def _query_more(self, request: Request) -> Response:
        cursor = request.path_params["cursor"].removeprefix("01g")
        with self._lock:
            found = self._cursors.get(cursor)
        if found is None:
            raise _abort("INVALID_QUERY_LOCATOR", "invalid query locator")
        return json_response(
            self._page(found[1], request.path_params["version"], cursor, int(request.path_params["offset"]))
        )

    # ----- Bulk API 2.0 ingest

    def _job(self, request: Request) -> _Job:
        job = self._jobs.get(request.path_params["job"])
        if job is None:
            raise _abort("NOT_FOUND", "The requested resource does not exist", 404)
        return job

    def _job_create(self, request: Request) -> Response:
        body = self._body(request)
        operation = body.get("operation")
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            raise _abort("INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        obj = _OBJECTS_LOWER.get(str(body.get("object", "")).lower())
        if obj is None or obj.event:
            raise _abort("INVALIDJOB", f"InvalidJob : Unable to find object: {body.get('object')}")
        if body.get("contentType", "CSV") != "CSV":
            raise _abort("INVALIDJOB", "InvalidJob : contentType must be CSV")
        ext = None
        if operation == "upsert":
            fd = obj.field(str(body.get("externalIdFieldName") or ""))
            if fd is None or not (fd.external_id or fd.name == "Id"):
                raise _abort(
                    "INVALIDJOB",
                    f"InvalidJob : Field name provided, {body.get('externalIdFieldName')} is not an External ID "
                    f"or indexed field for {obj.name}",
                )
            ext = fd.name
        delimiter = body.get("columnDelimiter", "COMMA")
        if delimiter not in _DELIMITERS or body.get("lineEnding", "LF") not in ("LF", "CRLF"):
            raise _abort("INVALIDJOB", "InvalidJob : bad columnDelimiter or lineEnding")
        with self._lock:
            self._seq += 1
            job = _Job(
                id=id18(f"7505g{self._seq:010d}"),
                sobject=obj.name,
                operation=operation,
                external_id=ext,
                version=request.path_params["version"],
                created=sf_datetime(self.clock.now()),
                line_ending=body.get("lineEnding", "LF"),
                delimiter=delimiter,
            )
            self._jobs[job.id] = job
        return json_response(job.info())

    def _job_list(self, request: Request) -> Response:
        with self._lock:
            records = [j.info() for j in self._jobs.values()]
        return json_response({"done": True, "records": records, "nextRecordsUrl": None})

    def _job_get(self, request: Request) -> Response:
        with self._lock:
            job = self._job(request)
            if job.state in ("UploadComplete", "InProgress"):
                if job.polls_left > 0:
                    job.polls_left -= 1
                    job.state = "InProgress"
                else:
                    job.state = "Failed" if job.error_message else "JobComplete"
            return json_response(job.info())

    def _job_upload(self, request: Request) -> Response:
        with self._lock:
            job = self._job(request)
            if job.state != "Open":
                raise _abort(
                    "INVALIDJOBSTATE", f"Job {job.id} is not in the Open state; data cannot be uploaded"
                )
            if job.data is not None:
                raise _abort(
                    "BULK_API_ERROR", "Found multiple contents for job: only one upload per job is allowed"
                )
            job.data = request.body
        return Response(201)

    def _job_patch(self, request: Request) -> Response:
        state = self._body(request).get("state")
        with self._lock:
            job = self._job(request)
            if state == "Aborted":
                if job.state in ("JobComplete", "Failed"):
                    raise _abort("INVALIDJOBSTATE", f"Job {job.id} is already {job.state}")
                job.state = "Aborted"
            elif state == "UploadComplete":
                if job.state != "Open":
                    raise _abort("INVALIDJOBSTATE", f"Job {job.id} is not Open")
                if not job.data:
                    raise _abort("INVALIDJOBSTATE", f"Job {job.id} has no data uploaded")
                self._process_job(job)
                job.state = "UploadComplete"
                job.polls_left = self.bulk_polls_in_progress
            else:
                raise _abort("INVALIDJOBSTATE", f"Invalid state: {state}")
            job.modstamp = sf_datetime(self.clock.now())
            return json_response(job.info())

    def _job_delete(self, request: Request) -> Response:
        with self._lock:
            job = self._job(request)
            if job.state not in ("JobComplete", "Failed", "Aborted", "UploadComplete"):
                raise _abort("INVALIDJOBSTATE", f"Job {job.id} must be closed before it can be deleted")
            self._jobs.pop(job.id)
        return Response(204)

    def _job_results(self, request: Request) -> Response:
        with self._lock:
            job = self._job(request)
            kind = request.path_params["kind"].lower()
            text = {
                "successfulresults": job.successful_csv,
                "failedresults": job.failed_csv,
                "unprocessedrecords": job.unprocessed_csv,
            }[kind]
        return Response(200, text.encode("utf-8"), {"Content-Type": CSV_CONTENT_TYPE + "; charset=UTF-8"})

    def _process_job(self, job: _Job) -> None:
        """Apply every row (each its own transaction, like the real job) and build the result CSVs."""
        obj = OBJECTS[job.sobject]
        text = (job.data or b"").decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=_DELIMITERS[job.delimiter]))
        if not rows:
            job.error_message = "InvalidBatch : Empty CSV"
            return
        header, data = rows[0], [r for r in rows[1:] if r]
        # (field or relationship name, target field, the parent's type for a polymorphic lookup)
        columns: list[tuple[str, str | None, str | None]] = []
        for col in header:
            if "." in col:
                # ObjectType:RelationshipName.IndexedFieldName names a polymorphic lookup's parent type
                rel_path, _, target = col.partition(".")
                parent_type, _, rel_name = rel_path.rpartition(":")
                rel = obj.relationship(rel_name)
                if rel is None or (parent_type and parent_type not in rel.polymorphic):
                    job.error_message = f"InvalidBatch : Field name not found : {col}"
                    return
                columns.append((rel.relationship_name or rel_name, target, parent_type or None))
            elif obj.field(col) is None:
                job.error_message = f"InvalidBatch : Field name not found : {col}"
                return
            else:
                columns.append((obj.field(col).name, None, None))  # type: ignore[union-attr]
        ok_out, bad_out = io.StringIO(), io.StringIO()
        ok_w = csv.writer(ok_out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        bad_w = csv.writer(bad_out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        ok_w.writerow(["sf__Id", "sf__Created", *header])
        bad_w.writerow(["sf__Id", "sf__Error", *header])
        for row in data:
            body: dict[str, Any] = {}
            for (name, target, parent_type), value in zip(columns, row, strict=False):
                if value == "":
                    continue  # Bulk 2.0: an empty value leaves the field unchanged; #N/A sets null
                value_or_null = None if value == "#N/A" else value
                if target is not None:
                    body[name] = {target: value_or_null}
                    if parent_type:
                        body[name]["attributes"] = {"type": parent_type}
                else:
                    body[name] = value_or_null
            try:
                record_id, created = self._bulk_row(job, obj, body)
            except SfError as exc:
                job.failed += 1
                bad_w.writerow(["", exc.csv(), *row])
            else:
                ok_w.writerow([record_id, "true" if created else "false", *row])
            job.processed += 1
        job.successful_csv, job.failed_csv = ok_out.getvalue(), bad_out.getvalue()
        job.unprocessed_csv = ",".join(f'"{h}"' for h in header) + "\n"

    def _bulk_row(self, job: _Job, obj: ObjectDef, body: dict[str, Any]) -> tuple[str, bool]:
        if job.operation == "upsert":
            assert job.external_id is not None
            key = body.get(job.external_id)
            if key in (None, ""):
                raise SfError("MISSING_ARGUMENT", f"{job.external_id} not specified", [job.external_id])
            return self._upsert(obj, job.external_id, str(key), body, txn=None)
        if job.operation == "insert":
            return self._write(obj, None, body, txn=None)
        record = self._find(obj, "Id", str(body.get("Id") or ""))
        if record is None:
            raise SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
        if job.operation == "update":
            return self._write(
                obj, record, {k: v for k, v in body.items() if k != "Id"}, txn=None, lock_key=record["Id"]
            )[0], False
        self._take_lock(obj.name, record["Id"])
        self._put(obj, record["Id"], None)
        return record["Id"], False

    # ----- control surface

    def _control_records(self, request: Request) -> Response:
        try:
            return json_response({"records": self.records(request.path_params["sobject"])})
        except ValueError as exc:
            return json_response({"message": str(exc)}, 404)

    def _control_add(self, request: Request) -> Response:
        """``{"sobject": "Loyalty_Adjustment_Request__c", "records": [...]}`` -> ``{"ids": [...]}``."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return json_response({"message": 'body must be {"sobject": ..., "records": [...]}'}, 400)
        try:
            ids = self.add_records(str(body.get("sobject")), body["records"])
        except ValueError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"ids": ids})

    def _control_events(self, request: Request) -> Response:
        return json_response({"events": self.events})

    def _control_jobs(self, request: Request) -> Response:
        with self._lock:
            return json_response({"jobs": [j.info() for j in self._jobs.values()]})

    def _control_usage_get(self, request: Request) -> Response:
        return json_response(self.api_usage)

    def _control_usage_post(self, request: Request) -> Response:
        """``{"used": N[, "max": LIMIT]}``."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("used", 0), int):
            return json_response({"message": 'body must be {"used": N, "max": M}'}, 400)
        self.set_api_usage(int(body.get("used", 0)), body.get("max"))
        return json_response(self.api_usage)

    def _control_locks(self, request: Request) -> Response:
        """``{"count": N[, "sobject": ...][, "key": external id or Id]}``."""
        body = request.json()
        if not isinstance(body, dict):
            return json_response({"message": "body must be a JSON object"}, 400)
        try:
            self.lock_rows(int(body.get("count", 1)), sobject=body.get("sobject"), key=body.get("key"))
        except (ValueError, TypeError) as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"locks": len(self._locks)})

    def _control_expire(self, request: Request) -> Response:
        body = loads(request.body) if request.body else {}
        self.expire_sessions(include_static=bool(isinstance(body, dict) and body.get("include_static")))
        return json_response({"expired": True})

    # ----- state

    def sandbox_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records": {name: len(recs) for name, recs in self._records.items()},
                "events_published": len(self._events),
                "bulk_jobs": len(self._jobs),
                "api_usage": self.api_usage,
                "tokens_issued": len(self._tokens),
                "pending_locks": sum(lock.remaining for lock in self._locks),
            }

    def export_state(self) -> dict[str, Any]:
        """Every record (seeded ones included: upserts change them), events, API usage and tokens."""
        with self._lock:
            return {
                "records": {
                    n: [self._public(OBJECTS[n], r) for r in recs.values()]
                    for n, recs in self._records.items()
                },
                "events": [dict(e) for e in self._events],
                "seq": self._seq,
                "auto": dict(self._auto),
                "tokens": sorted(self._tokens),
                "usage": [[at.isoformat(), n] for at, n in self._usage],
            }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`export_state` output; its records replace the seeded ones."""
        with self._lock:
            if "records" in state:
                for name in self._records:
                    self._records[name] = {}
                    for index in self._index[name].values():
                        index.clear()
                for name, recs in state["records"].items():
                    obj = self._object(name, storable=True)
                    for rec in recs:
                        rec = dict(rec)
                        rec["attributes_type"] = obj.name
                        self._put(obj, rec["Id"], rec)
            self._events = [dict(e) for e in state.get("events", [])]
            self._seq = max(self._seq, int(state.get("seq", 0)))
            self._auto.update({k: int(v) for k, v in (state.get("auto") or {}).items()})
            self._tokens.update(state.get("tokens") or [])
            self._usage = deque((parse_instant(at), int(n)) for at, n in state.get("usage") or [])


__all__ = [
    "CA_CERT_FILE",
    "COLLECTION_LIMIT",
    "DEFAULT_API_VERSION",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_DAILY_API_LIMIT",
    "DEFAULT_PASSWORD",
    "DEFAULT_SESSION_ID",
    "DEFAULT_USERNAME",
    "FieldDef",
    "OBJECTS",
    "ObjectDef",
    "SalesforceEmulator",
    "SfError",
    "id18",
    "sf_datetime",
]
