"""Append-only raw storage: a version is (source, tenant, id, modified time, payload hash)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable

import duckdb
import pandas as pd
import simplejson

from loyalty_assets.lib.support import scrub_profile
from loyalty_assets.lib.warehouse import registered

# the records of the loyalty platforms and Salesforce (one tenant, `default`): where each source's
# version key is, for the pulls (defs/ingest/pulls.py) and the landing files (landing.py) alike
RECORD_KEYS = {
    "smile.customers": ("id", ("updated_at", "created_at")),
    "smile.points_transactions": ("id", ("updated_at", "created_at")),
    "smile.reward_fulfillments": ("id", ("updated_at", "created_at")),
    "smile.referrals": ("id", ("updated_at", "created_at")),
    "loyaltylion.customers": ("id", ("updated_at", "created_at")),
    "loyaltylion.transactions": ("id", ("updated_at", "created_at")),
    "loyaltylion.activities": ("id", ("updated_at", "created_at")),
    "salesforce.contacts": ("Id", ("LastModifiedDate", "CreatedDate")),
    "salesforce.leads": ("Id", ("LastModifiedDate", "CreatedDate")),
    "salesforce.adjustment_requests": ("Id", ("LastModifiedDate", "CreatedDate")),
}


# the people of the loyalty platforms and the CRM: mirrors of a member, kept by them, not new activity
PROFILE_SOURCES = {"smile.customers": "smile", "loyaltylion.customers": "loyaltylion",
                   "salesforce.contacts": "salesforce", "salesforce.leads": "salesforce"}


def forgotten_profiles(conn: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    """Record id -> pseudonym, for the profiles of `source` that belong to a forgotten member
    (CONTRACT.md §1 forget): they are stored pseudonymized, or the next pull after `loyalty forget`
    brought the e-mail and names back (the targets keep them until the deletion requests are carried
    out). Orders are new activity and are not touched: a shopper who comes back is a new member."""
    platform = PROFILE_SOURCES.get(source)
    if platform is None or not conn.execute("SELECT EXISTS (FROM erasures)").fetchall()[0][0]:
        return {}
    return dict(conn.execute(
        """SELECT split_part(k.key, ':', 3), e.pseudonym FROM member_keys k
           LEFT JOIN member_resolution r ON r.member_id = k.member_id
           JOIN erasures e ON e.member_id = coalesce(r.survivor_id, k.member_id)
           WHERE starts_with(k.key, $prefix)""", {"prefix": f"{platform}:"}).fetchall())


def payload_text(record: object) -> str:
    """Native JSON back out, Decimal numbers unchanged (never through float)."""
    return simplejson.dumps(record, use_decimal=True, sort_keys=True, separators=(",", ":"))


def insert_versions(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    tenant: str,
    records: Iterable[dict],
    record_id: Callable[[dict], str],
    modified_at: Callable[[dict], dt.datetime],
    tz,
    fetched_at: dt.datetime | None = None,
) -> tuple[int, int]:
    """Insert versions not seen before; returns (records offered, new versions)."""
    fetched_at = fetched_at or dt.datetime.now(dt.UTC)
    forgotten = forgotten_profiles(conn, source)
    rows = []
    for rec in records:
        alias = forgotten.get(str(record_id(rec))) if forgotten else None
        if alias is not None:
            rec = scrub_profile(rec, alias)
        text = payload_text(rec)
        mod = modified_at(rec)
        rows.append(
            {
                "source": source,
                "tenant": tenant,
                "record_id": str(record_id(rec)),
                "modified_at": mod,
                "payload_hash": hashlib.sha256(text.encode()).hexdigest()[:16],
                "payload": text,
                "partition_day": mod.astimezone(tz).date(),
                "fetched_at": fetched_at,
            }
        )
    if not rows:
        return 0, 0
    frame = pd.DataFrame(rows).drop_duplicates(subset=["record_id", "modified_at", "payload_hash"])
    with registered(conn, "_raw", frame):
        new = conn.execute(
            """INSERT INTO raw_records BY NAME
               SELECT source, tenant, record_id, modified_at, payload_hash, CAST(payload AS JSON) AS payload,
                      partition_day, fetched_at FROM _raw
               ON CONFLICT DO NOTHING"""
        ).fetchone()[0]
    return len(rows), int(new)
