"""Raw versions → canonical order/refund/customer versions, or a quarantine row with the reason.

Every raw version ends up in exactly one place: processed or quarantined. Only versions not seen
before are mapped, so re-runs are cheap and never double-count.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pandas as pd

from loyalty_assets.lib.money import FxTable, currency_digits
from loyalty_assets.lib.platforms import magento
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import RecordError

ORDER_COLUMNS = [
    "order_key",
    "platform",
    "tenant",
    "source_id",
    "order_number",
    "store_key",
    "created_at",
    "updated_at",
    "payload_hash",
    "status",
    "signal",
    "email",
    "customer_key",
    "currency",
    "subtotal_minor",
    "discount_minor",
    "tax_minor",
    "shipping_minor",
    "grand_total_minor",
    "eligible_minor",
    "calc_currency",
    "calc_eligible_minor",
    "fx_rate",
    "calc_rate",
    "to_program_factor",
]


@dataclass(frozen=True)
class NormalizeResult:
    orders: int
    refunds: int
    customers: int
    quarantined: int


def _pending(conn: duckdb.DuckDBPyConnection, source: str, target: str, key_expr: str) -> list[tuple]:
    return conn.execute(
        f"""SELECT r.tenant, r.record_id, r.modified_at, r.payload_hash, r.payload, r.partition_day
            FROM raw_records r
            WHERE r.source = ?
              AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key_expr} AND t.payload_hash = r.payload_hash)
              AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.source = r.source AND q.reason <> 'unknown_order'
                              AND q.version_key = r.tenant || ':' || r.record_id || '@' || strftime(r.modified_at, '%Y-%m-%dT%H:%M:%S') || '#' || r.payload_hash)
            ORDER BY r.modified_at, r.record_id""",
        [source],
    ).fetchall()


def version_key(tenant: str, record_id: str, modified_at: dt.datetime, payload_hash: str) -> str:
    return f"{tenant}:{record_id}@{modified_at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S}#{payload_hash}"


def _quarantine_row(source, tenant, record_id, modified_at, payload_hash, payload, day, reason, detail):
    return {
        "source": source,
        "record_key": f"{source.split('.')[0]}:{tenant}:{record_id}",
        "partition_day": day,
        "reason": reason,
        "detail": detail,
        "payload": payload,
        "seen_at": dt.datetime.now(dt.UTC),
        "version_key": version_key(tenant, record_id, modified_at, payload_hash),
    }


def _loads(payload: str) -> object:
    return json.loads(payload, parse_float=Decimal)


def _append(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict],
    columns: list[str] | None = None,
    ignore_conflicts: bool = False,
) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=columns or list(rows[0].keys()))
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, Decimal)).any():
            frame[col] = frame[col].map(str)
    conn.register("_rows", frame)
    try:
        conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows{conflict}")
    finally:
        conn.unregister("_rows")


def _map_pending(conn, source: str, target: str, key_expr: str, mapper, quarantine: list[dict]) -> list[dict]:
    """Map every raw version not yet processed; a version that cannot be mapped is quarantined."""
    rows = []
    for tenant, rid, modified, phash, payload, day in _pending(conn, source, target, key_expr):
        try:
            row = mapper(tenant, _loads(payload), day)
        except RecordError as exc:
            reason, detail = exc.reason, exc.detail
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            reason, detail = "malformed_record", f"{type(exc).__name__}: {exc}"
        else:
            if "quarantine" in row:
                reason, detail = row.pop("quarantine")
                quarantine.append(
                    _quarantine_row(source, tenant, rid, modified, phash, payload, day, reason, detail)
                )
            row.update(
                payload_hash=phash, updated_at=modified
            )  # the raw version's key time: joins stay exact
            rows.append(row)
            continue
        quarantine.append(_quarantine_row(source, tenant, rid, modified, phash, payload, day, reason, detail))
    return rows


def normalize_magento(
    conn: duckdb.DuckDBPyConnection, program: Program, fx: FxTable, today: dt.date
) -> NormalizeResult:
    quarantine: list[dict] = []
    prog_digits = currency_digits(program.currency)

    def order_row(tenant: str, payload: object, day: dt.date) -> dict:
        version = magento.map_order(payload, tenant, program, fx)
        row = version.row()
        row["source_id"] = row.pop("native_id")
        factor = Decimal(1).scaleb(prog_digits - currency_digits(version.calc_currency))
        row["to_program_factor"] = factor * version.calc_rate
        return row

    orders = _map_pending(
        conn,
        "magento.orders",
        "order_versions",
        "order_key = 'magento:' || r.tenant || ':' || r.record_id AND t.updated_at = r.modified_at",
        order_row,
        quarantine,
    )
    _append(conn, "order_versions", orders, ORDER_COLUMNS)

    # Credit memos need their order's lines (to leave out excluded product types): memos whose
    # order was unknown are mapped again on every run until it turns up.
    conn.execute("DELETE FROM refund_versions WHERE platform = 'magento' AND NOT order_known")
    latest_orders = dict(
        conn.execute(
            """SELECT 'magento:' || tenant || ':' || record_id, arg_max(payload, modified_at)
               FROM raw_records WHERE source = 'magento.orders' GROUP BY 1"""
        ).fetchall()
    )

    def refund_row(tenant: str, memo: object, day: dt.date) -> dict:
        order_key = f"magento:{tenant}:{memo.get('order_id')}" if isinstance(memo, dict) else None
        order_payload = latest_orders.get(order_key)
        excluded = magento.excluded_item_ids(_loads(order_payload), program) if order_payload else None
        version = magento.map_creditmemo(memo, tenant, program, excluded)
        row = version.row()
        row.update(source_id=row.pop("native_id"), order_known=order_payload is not None)
        if order_payload is None and (today - day).days >= program.ingest.refund_wait_days:
            # quarantined and kept: if the order ever turns up, the refund still counts
            row["quarantine"] = (
                "unknown_order",
                f"credit memo {version.native_id} refers to order {version.order_key}, still unknown after "
                f"{program.ingest.refund_wait_days} days",
            )
        return row

    refunds = _map_pending(
        conn,
        "magento.creditmemos",
        "refund_versions",
        "refund_key = 'magento:' || r.tenant || ':creditmemo:' || r.record_id AND t.updated_at = r.modified_at",
        refund_row,
        quarantine,
    )
    _append(conn, "refund_versions", refunds)

    def customer_row(tenant: str, payload: object, day: dt.date) -> dict:
        c = magento.map_customer(payload, tenant)
        return {
            "customer_key": c.customer_key,
            "platform": c.platform,
            "source_id": c.native_id,
            "email": c.email,
            "created_at": c.created_at,
        }

    customers = _map_pending(
        conn,
        "magento.customers",
        "customer_versions",
        "customer_key = 'magento:' || r.tenant || ':' || r.record_id AND t.updated_at = r.modified_at",
        customer_row,
        quarantine,
    )
    _append(conn, "customer_versions", customers)
    _append(conn, "quarantine", quarantine, ignore_conflicts=True)
    return NormalizeResult(len(orders), len(refunds), len(customers), len(quarantine))
