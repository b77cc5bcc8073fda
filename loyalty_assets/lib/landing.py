"""Historical backfill from export files: the seed layout (CONTRACT.md §2) dropped under a landing
directory is loaded into raw_records without any API, as the same versions the APIs would give."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import simplejson

from loyalty_assets.lib.platforms.events import modified
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.raw import RECORD_KEYS, insert_versions, payload_text

DEFAULT_LANDING = "data/landing"

# (platform, stream) for each folder pattern; tenant folders sit between platform and stream
LAYOUT = {
    "magento": ("orders", "creditmemos", "customers"),
    "bigcommerce": ("orders", "refunds", "customers"),
    "commercetools": ("orders", "payments", "customers"),
    "sfcc": ("orders",),
}
# the loyalty platforms and Salesforce: no tenant folder (their records are tenant `default`, as the
# pulls store them); folder -> raw source (LoyaltyLion's referrals are its `$referral` activities)
RECORD_FOLDERS = {
    ("smile", "customers"): "smile.customers",
    ("smile", "points_transactions"): "smile.points_transactions",
    ("smile", "reward_fulfillments"): "smile.reward_fulfillments",
    ("smile", "referrals"): "smile.referrals",
    ("loyaltylion", "customers"): "loyaltylion.customers",
    ("loyaltylion", "transactions"): "loyaltylion.transactions",
    ("loyaltylion", "referrals"): "loyaltylion.activities",
    ("salesforce", "Contact"): "salesforce.contacts",
    ("salesforce", "Lead"): "salesforce.leads",
    ("salesforce", "Loyalty_Adjustment_Request__c"): "salesforce.adjustment_requests",
}


IDENTITY_ONLY = ("smile.customers", "loyaltylion.customers", "salesforce.contacts", "salesforce.leads")


def landing_dir() -> Path:
    return Path(os.environ.get("LOYALTY_LANDING_DIR") or DEFAULT_LANDING)


@dataclass(frozen=True)
class LandingFile:
    path: Path
    platform: str
    tenant: str
    stream: str
    source: str


def discover(root: Path) -> list[LandingFile]:
    """Every *.json file of the seed layout under root (other files are ignored)."""
    found = []
    magento_tenant = os.environ.get("MAGENTO_TENANT") or "default"
    for platform, streams in LAYOUT.items():
        base = root / platform
        if not base.is_dir():
            continue
        for stream in streams:
            source = f"{platform}.{stream}"
            if platform == "magento":
                found += [LandingFile(p, platform, magento_tenant, stream, source)
                          for p in sorted((base / stream).glob("*.json"))]
            else:
                for tenant_dir in sorted(d for d in base.iterdir() if d.is_dir()):
                    found += [LandingFile(p, platform, tenant_dir.name, stream, source)
                              for p in sorted((tenant_dir / stream).glob("*.json"))]
    for (platform, folder), source in RECORD_FOLDERS.items():
        found += [LandingFile(p, platform, "default", folder, source)
                  for p in sorted((root / platform / folder).glob("*.json"))]
    return found


def version_key(f: LandingFile) -> tuple[Callable[[dict], str], Callable[[dict], dt.datetime]]:
    """How a record of the file is named and dated: as the platform's client does for its pulls."""
    if f.source in RECORD_KEYS:
        id_field, fields = RECORD_KEYS[f.source]
        return (lambda r: str(r[id_field])), (lambda r: modified(r, *fields))
    api = importlib.import_module(f"loyalty_assets.clients.{f.platform}")
    return (lambda r: api.record_id(f.stream, r)), (lambda r: api.modified_at(f.stream, r))


def fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def read_records(f: LandingFile) -> list[dict]:
    """The file's records; Salesforce's `attributes` dropped, as the pulls drop them."""
    return [{k: v for k, v in r.items() if k != "attributes"} if isinstance(r, dict) else r for r in _read_array(f)]


def _read_array(f: LandingFile) -> list:
    data = json.loads(f.path.read_text(), parse_float=Decimal)
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # an API envelope saved as is
        data = data["data"]
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of records")
    return data


def days_covered(f: LandingFile, tz) -> tuple[dt.date, dt.date] | None:
    """First and last modification day of the records in a file (None if it has none readable, or if
    they are loyalty platforms' customers or Salesforce Contacts, which book nothing on their days:
    members who joined Smile.io years before their first order do not make the run cover those years)."""
    if f.source in IDENTITY_ONLY:
        return None
    _, modified_at = version_key(f)
    days = []
    for rec in read_records(f):
        try:
            days.append(modified_at(rec).astimezone(tz).date())
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    return (min(days), max(days)) if days else None


@dataclass(frozen=True)
class LandingResult:
    files: int
    records: int
    new_versions: int
    bad_files: int


def load_landing(conn: duckdb.DuckDBPyConnection, program: Program, root: Path | None = None) -> LandingResult:
    """Load files not loaded before (by content hash); a bad file or record is quarantined, never fatal."""
    root = root or landing_dir()
    files = records = new = bad = 0
    for f in discover(root):
        digest = hashlib.sha256(f.path.read_bytes()).hexdigest()
        if conn.execute("SELECT 1 FROM landing_files WHERE sha256 = ? AND path = ?", [digest, str(f.path)]).fetchone():
            continue
        record_id, modified_at = version_key(f)
        try:
            data = read_records(f)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep
            _quarantine(conn, f, str(f.path), digest, "malformed_record", f"landing file {f.path}: {exc}", None)
            conn.execute("INSERT INTO landing_files VALUES (?, ?, ?, 0, 0, now(), ?)", [str(f.path), digest, f.source, str(exc)])
            bad += 1
            continue
        good = []
        for n, rec in enumerate(data):
            try:
                record_id(rec)
                modified_at(rec)
                if f.source == "salesforce.adjustment_requests" and rec.get("Status__c", "New") != "New":
                    continue  # RULES.md §9: requests in status New, as the pull reads them; not one decided before
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                _quarantine(conn, f, f"{f.path}#{n}", digest, "malformed_record",
                            f"record {n} of {f.path.name} has no usable id or modification time: {exc}", rec)
                continue
            try:
                # what JSON (and DuckDB's JSON) cannot store: NaN/Infinity, a lone surrogate; one such
                # record is quarantined, and the file's others still load
                simplejson.dumps(rec, use_decimal=True, allow_nan=False, ensure_ascii=False).encode("utf-8")
            except (ValueError, RecursionError) as exc:
                _quarantine(conn, f, f"{f.path}#{n}", digest, "malformed_record",
                            f"record {n} of {f.path.name} cannot be stored as JSON: {type(exc).__name__}: {exc}", None)
                continue
            good.append(rec)
        offered, added = insert_versions(
            conn, f.source, f.tenant, good,
            record_id=record_id,
            modified_at=modified_at,
            tz=program.tz,
        )
        conn.execute("INSERT INTO landing_files VALUES (?, ?, ?, ?, ?, now(), NULL)",
                     [str(f.path), digest, f.source, len(data), added])
        files += 1
        records += len(data)
        new += added
    return LandingResult(files, records, new, bad)


def _quarantine(conn, f: LandingFile, key: str, digest: str, reason: str, detail: str, payload) -> None:
    conn.execute(
        "INSERT INTO quarantine VALUES (?, ?, NULL, ?, ?, ?, now(), ?) ON CONFLICT DO NOTHING",
        [f.source, key, reason, detail, payload_text(payload) if payload is not None else None, f"landing:{digest}:{key}"],
    )
