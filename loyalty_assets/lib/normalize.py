"""Raw versions → canonical order/refund/customer versions, or a quarantine row with the reason.

Every raw version ends up processed, quarantined, or (a refund whose order is not known yet)
waiting; `raw_processed` says which. Only versions not seen before are mapped, so re-runs are cheap
and never double-count; waiting refunds are mapped again on every run until their order turns up.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pandas as pd

from loyalty_assets.lib.money import FxTable, currency_digits
from loyalty_assets.lib.platforms import bigcommerce, commercetools, events, loyalty, magento, sfcc
from loyalty_assets.lib.program import Program
from loyalty_assets.lib.records import RecordError
from loyalty_assets.lib.warehouse import registered, run_script
from loyalty_assets.lib.warehouse import sql as script_text  # `sql` names the local queries here

ORDER_MAPPERS = {
    "magento.orders": magento.map_order,
    "bigcommerce.orders": bigcommerce.map_order,
    "commercetools.orders": commercetools.map_order,
    "sfcc.orders": sfcc.map_order,
}
REFUND_SOURCES = ("magento.creditmemos", "bigcommerce.refunds", "commercetools.payments")
CUSTOMER_MAPPERS = {
    "magento.customers": magento.map_customer,
    "bigcommerce.customers": bigcommerce.map_customer,
    "commercetools.customers": commercetools.map_customer,
    "smile.customers": loyalty.map_smile_customer,
    "loyaltylion.customers": loyalty.map_loyaltylion_customer,
}
EVENT_SOURCES = ("smile.points_transactions", "loyaltylion.transactions", "salesforce.adjustment_requests",
                 "smile.referrals", "loyaltylion.activities")
CRM_PEOPLE = ("salesforce.contacts", "salesforce.leads")  # their ids are identity keys, with their e-mail
ALL_SOURCES = (*ORDER_MAPPERS, *REFUND_SOURCES, *CUSTOMER_MAPPERS, *EVENT_SOURCES, *CRM_PEOPLE)

ORDER_COLUMNS = [
    "order_key", "platform", "tenant", "source_id", "order_number", "store_key", "created_at", "updated_at",
    "payload_hash", "status", "signal", "email", "customer_key", "currency", "subtotal_minor", "discount_minor",
    "tax_minor", "shipping_minor", "grand_total_minor", "eligible_minor", "calc_currency", "calc_eligible_minor",
    "fx_rate", "calc_rate", "to_program_factor", "to_program_divisor", "phone", "phone_region", "discount_codes",
    "excluded_item_ids", "payment_ids",
]  # fmt: skip


@dataclass(frozen=True)
class NormalizeResult:
    orders: int
    refunds: int
    customers: int
    quarantined: int
    waiting: int
    events: int = 0


def version_key(tenant: str, record_id: str, modified_at: dt.datetime, payload_hash: str) -> str:
    u = modified_at.astimezone(dt.UTC)
    if u.year < 1000:  # strftime's unpadded year, as it always was
        return f"{tenant}:{record_id}@{u:%Y-%m-%dT%H:%M:%S}#{payload_hash}"
    # the same text as strftime at a third of its cost (once a version)
    return (f"{tenant}:{record_id}@{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f"#{payload_hash}")


# concat(), not ||: the same text of raw_records' NOT NULL columns, 0.06 s less at 1.7M versions
VERSION_KEY_SQL = "concat(r.tenant, ':', r.record_id, '@', strftime(r.modified_at, '%Y-%m-%dT%H:%M:%S'), '#', r.payload_hash)"


# Raw versions a run looks at: those stamped (fetched_at, the insertion time) since the last run
# began, less a day of margin, and those whose outcome is being retried; the whole table on the
# first run. A version can only have an outcome recorded after it was fetched, so the outcomes
# looked up are those since the earliest of these fetches: both sides of the anti-join on version
# keys cost what is new, not the history (nor the previous run, a full recompute as it may be).
SCOPE_MARGIN = dt.timedelta(days=1)


def _pending_sql(conn: duckdb.DuckDBPyConnection, columns: str, source: str,
                 since: dt.datetime | None) -> tuple[str, dict]:
    """SQL and parameters: the raw versions of `source` in the run's scope with no outcome yet."""
    outcomes_since = since
    if since is not None:
        first = conn.execute(
            "SELECT min(fetched_at) FROM raw_records WHERE source = ? AND fetched_at >= ?", [source, since]
        ).fetchall()[0][0]
        outcomes_since = max(since, first) if first is not None else since
    params = {"source": source, "since": since, "outcomes_since": outcomes_since}
    sql = f"""SELECT {columns} FROM raw_records r
              WHERE r.source = $source AND ($since IS NULL OR r.fetched_at >= $since) AND NOT EXISTS (
                  SELECT 1 FROM raw_processed p WHERE p.source = $source
                  AND ($since IS NULL OR p.processed_at >= $outcomes_since) AND p.version_key = {VERSION_KEY_SQL})"""
    if since is None and not conn.execute("SELECT 1 FROM raw_processed WHERE source = ? LIMIT 1", [source]).fetchall():
        # nothing mapped yet (a first run): no anti-join (0.5 s of version keys at 1M orders)
        sql = sql[:sql.index("AND NOT EXISTS")].rstrip()
        del params["outcomes_since"]
    if since is None or not conn.execute(
        "SELECT 1 FROM normalize_retry WHERE source = ? LIMIT 1", [source]
    ).fetchall():
        return sql, params  # nothing retried: the older versions are not even scanned
    return sql + f"""
              UNION ALL
              SELECT {columns} FROM raw_records r
              WHERE r.source = $source AND r.fetched_at < $since
                AND r.payload_hash IN (SELECT hash FROM normalize_retry t WHERE t.source = r.source)
                AND NOT EXISTS (SELECT 1 FROM raw_processed p WHERE p.source = $source
                                AND p.version_key = {VERSION_KEY_SQL})""", params


# How far apart a Smile reward fulfillment and the points transaction of its purchase may be created
# to be taken as one redemption, when the fulfillment does not name it (_SmileRedemptions)
REDEMPTION_WINDOW_SECONDS = 120

# Versions read, and mapped rows written, at a time: a first run over a million orders of a platform
# mapped in Python held every payload and every mapped row at once (6 GB at 1M orders on four platforms).
PENDING_CHUNK = 20_000
FLUSH_ROWS = 50_000


def _pending(conn: duckdb.DuckDBPyConnection, source: str, since: dt.datetime | None) -> Iterator[list[tuple]]:
    """The pending versions of `source` in (modified_at, record_id) order, PENDING_CHUNK at a time. They
    stream from a cursor of their own, so that the caller may write between chunks; the versions
    retried (temp table normalize_retry, which only this connection sees) come in one piece."""
    sql, params = _pending_sql(
        conn, "r.tenant, r.record_id, r.modified_at, r.payload_hash, r.payload, r.partition_day", source, since)
    query = f"SELECT * FROM ({sql}) r ORDER BY r.modified_at, r.record_id"
    if "normalize_retry" in sql:
        yield conn.execute(query, params).fetchall()
        return
    reader = conn.cursor()
    try:
        reader.execute(query, params)
        while rows := reader.fetchmany(PENDING_CHUNK):
            yield rows
    finally:
        reader.close()


def _loads(payload: str) -> object:
    return json.loads(payload, parse_float=Decimal)


def _append(conn: duckdb.DuckDBPyConnection, table: str, rows: list[dict], columns: list[str] | None = None,
            ignore_conflicts: bool = False) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=columns or list(rows[0].keys()))
    for col in frame.columns:
        sample = next((v for v in frame[col] if v is not None), None)  # a column holds one type
        if isinstance(sample, Decimal):
            frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    with registered(conn, "_rows", frame):
        conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows{conflict}")


class _Batch:
    """What one normalization pass writes: mapped rows, quarantine rows, raw_processed outcomes."""

    def __init__(self) -> None:
        self.orders: list[dict] = []
        self.refunds: list[dict] = []
        self.customers: list[dict] = []
        self.events: list[dict] = []
        self.quarantine: list[dict] = []
        self.outcomes: list[dict] = []
        self.written: dict[str, int] = {}
        self.quarantined_count = 0
        self.waiting_count = 0

    def write(self, conn: duckdb.DuckDBPyConnection, table: str, rows: list[dict], columns: list[str] | None = None,
              at_least: int = 0) -> None:
        """`rows` of `table` with the outcomes and quarantine rows of every version mapped so far, in one
        transaction (a run stopped between them left rows without outcomes, which the next run mapped
        again), then forgets them; nothing while fewer than `at_least` rows wait."""
        if (at_least and len(rows) < at_least) or not (rows or self.outcomes or self.quarantine):
            return
        conn.execute("BEGIN")
        try:
            _append(conn, table, rows, columns)
            _append(conn, "quarantine", self.quarantine, ignore_conflicts=True)
            _append(conn, "raw_processed", self.outcomes)  # versions without an outcome only (_pending_sql)
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        self.written[table] = self.written.get(table, 0) + len(rows)
        self.quarantined_count += len(self.quarantine)
        self.waiting_count += sum(1 for o in self.outcomes if o["outcome"] == "waiting")
        rows.clear()
        self.quarantine.clear()
        self.outcomes.clear()

    def outcome(self, source: str, vkey: str, outcome: str) -> None:
        self.outcomes.append({"source": source, "version_key": vkey, "outcome": outcome,
                              "processed_at": dt.datetime.now(dt.UTC)})

    def quarantined(self, source, tenant, rid, payload, day, vkey, reason, detail) -> None:
        platform = source.split(".")[0]
        self.quarantine.append({
            "source": source, "record_key": f"{platform}:{tenant}:{rid}", "partition_day": day,
            "reason": reason, "detail": detail, "payload": payload, "seen_at": dt.datetime.now(dt.UTC),
            "version_key": vkey,
        })


def _each(conn, batch: _Batch, source: str, handle: Callable[[str, object, dt.date, str, dict], str],
          since: dt.datetime | None = None, flush: Callable[[], None] | None = None) -> None:
    """Map every pending raw version of `source`; any error quarantines that version alone. `flush`
    runs after each chunk of versions (a caller writing its rows as they grow)."""
    for chunk in _pending(conn, source, since):
        for tenant, rid, modified, phash, payload, day in chunk:
            vkey = version_key(tenant, rid, modified, phash)
            raw = {"payload_hash": phash, "updated_at": modified, "raw_version_key": vkey}
            try:
                outcome = handle(tenant, _loads(payload), day, rid, raw)
            except RecordError as exc:
                batch.quarantined(source, tenant, rid, payload, day, vkey, exc.reason, exc.detail)
                outcome = "quarantined"
            except (ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as exc:
                batch.quarantined(source, tenant, rid, payload, day, vkey, "malformed_record",
                                  f"{type(exc).__name__}: {exc}")
                outcome = "quarantined"
            batch.outcome(source, vkey, outcome)
        if flush is not None:
            flush()


class _Orders:
    """What pending refunds need of their orders, loaded per platform on first use.

    Magento memos and BigCommerce refunds carry their order id, so only those orders are read (a
    day's refunds cost what they name, not the whole history). A commercetools payment does not name
    its order, the order lists its payments: the ids its mapped versions keep (payment_ids) find the
    orders of the pending payments, whose payloads alone are read (before, every order's latest
    payload was parsed in Python on any day with a payment). A Magento memo needs only its order's
    excluded line ids, which the order's latest mapped version keeps: a narrow read of
    order_versions instead of the payloads (0.2 s a day at 1M orders)."""

    # refund source -> SQL text of the order id it names (as the mappers build the order key)
    ORDER_ID_SQL = {
        "magento.creditmemos": "trim(json_extract_string(r.payload, '$.order_id'))",
        "bigcommerce.refunds": "trim(json_extract_string(r.payload, '$.order_id'))",
    }

    def __init__(self, conn: duckdb.DuckDBPyConnection, since: dt.datetime | None):
        self.conn = conn
        self.since = since
        self._by_source: dict[tuple[str, str | None], dict[str, str]] = {}
        self._ct_payments: dict[str, str] | None = None
        self._magento_excluded: dict[str, set[str]] | None = None
        self._named: str | None = None  # the refund source temp table refund_named holds the orders of

    def _name_orders(self, refund_source: str) -> None:
        """Temp table refund_named: (order_key, id) of the orders the pending refunds name. The ids
        first: a semi-join on the pending query itself costs a scan of every payload."""
        self._named = refund_source
        sql, params = _pending_sql(self.conn, "r.tenant, r.payload", refund_source, self.since)
        platform = refund_source.split(".")[0]
        self.conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE refund_named AS
                SELECT DISTINCT '{platform}:' || tenant || ':' || id AS order_key, id
                FROM (SELECT r.tenant, {self.ORDER_ID_SQL[refund_source]} AS id FROM ({sql}) r)""", params)

    def latest(self, source: str, refund_source: str | None = None) -> dict[str, str]:
        """order key -> latest raw payload not quarantined; with `refund_source`, of the orders in refund_named."""
        if (source, refund_source) not in self._by_source:
            platform = source.split(".")[0]
            named = ""
            if refund_source is not None:
                if self._named != refund_source:
                    if refund_source == "commercetools.payments":
                        self._ct_payments = self._commercetools_payment_orders()
                    else:
                        self._name_orders(refund_source)
                named = "AND r.record_id IN (SELECT id FROM refund_named)"  # any tenant's: keyed by tenant below
            # the latest version not quarantined (a malformed later version priced the refunds from its
            # bad fields and quarantined them for good); the latest of all when every one was
            self._by_source[source, refund_source] = dict(self.conn.execute(
                f"""SELECT '{platform}:' || r.tenant || ':' || r.record_id,
                           arg_max(r.payload, (NOT coalesce(q.refused, FALSE), r.modified_at))
                    FROM raw_records r
                    LEFT JOIN (SELECT version_key, bool_and(outcome = 'quarantined') AS refused FROM raw_processed
                               WHERE source = '{source}' GROUP BY 1) q ON q.version_key = {VERSION_KEY_SQL}
                    WHERE r.source = '{source}' {named} GROUP BY 1""").fetchall())
        return self._by_source[source, refund_source]

    def get(self, source: str, order_key: str, refund_source: str | None = None) -> dict | None:
        payload = self.latest(source, refund_source).get(order_key)
        return _loads(payload) if payload else None

    def magento_excluded(self, order_key: str, program: Program) -> set[str] | None:
        """The Magento order's excluded line ids; None when the order is unknown. From its latest
        mapped version, else (versions mapped before the column existed, an order whose versions
        were all quarantined) from its latest raw payload."""
        if self._magento_excluded is None:
            self._name_orders("magento.creditmemos")
            self.conn.execute(
                """CREATE OR REPLACE TEMP TABLE refund_named_excluded AS
                   SELECT order_key, ids FROM (
                       SELECT order_key, arg_max_null(excluded_item_ids, updated_at) AS ids FROM order_versions
                       WHERE order_key IN (SELECT order_key FROM refund_named) GROUP BY 1)
                   WHERE ids IS NOT NULL""")
            found = {key: set(ids.split(",")) if ids else set() for key, ids in
                     self.conn.execute("SELECT order_key, ids FROM refund_named_excluded").fetchall()}
            self.conn.execute("DELETE FROM refund_named WHERE order_key IN (SELECT order_key FROM refund_named_excluded)")
            if self.conn.execute("SELECT count(*) FROM refund_named").fetchall()[0][0]:
                # refund_named holds the named orders without a recorded excluded_item_ids now
                for key, payload in self.latest("magento.orders", "magento.creditmemos").items():
                    found.setdefault(key, magento.excluded_item_ids(_loads(payload), program))
            self._magento_excluded = found
        return self._magento_excluded.get(order_key)

    def commercetools_order_of_payment(self, tenant: str, payment_id: str) -> str | None:
        if self._ct_payments is None:
            self._ct_payments = self._commercetools_payment_orders()
        return self._ct_payments.get(f"{tenant}:{payment_id}")

    def _commercetools_payment_orders(self) -> dict[str, str]:
        """'tenant:payment id' -> order key for the pending payments; refund_named names their orders.
        The order of a payment is the latest mapped version listing it. Versions mapped before
        payment_ids existed get it from their payloads first (_fill_payment_ids); while any is still
        without, the payments are looked up in every order's latest payload, as before."""
        self._named = "commercetools.payments"
        unknown = "SELECT 1 FROM order_versions WHERE platform = 'commercetools' AND payment_ids IS NULL LIMIT 1"
        if self.conn.execute(unknown).fetchall():
            _fill_payment_ids(self.conn)
        if self.conn.execute(unknown).fetchall():
            found = {f"{key.split(':')[1]}:{pid}": key for key, payload in self.latest("commercetools.orders").items()
                     for pid in commercetools.payment_ids(_loads(payload))}
            with registered(self.conn, "_ct_found", pd.DataFrame({"order_key": list(found.values())}, dtype=object)):
                self.conn.execute("""CREATE OR REPLACE TEMP TABLE refund_named AS
                                     SELECT DISTINCT order_key, regexp_extract(order_key, '^[^:]*:[^:]*:(.*)$', 1) AS id
                                     FROM _ct_found""")
            return found
        sql, params = _pending_sql(self.conn, "r.tenant, r.payload", "commercetools.payments", self.since)
        self.conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE ct_payment_orders AS
                WITH pending AS (SELECT DISTINCT tenant, json_extract_string(payload, '$.id') AS payment_id FROM ({sql}) r),
                listed AS (SELECT tenant, order_key, source_id, updated_at, unnest(string_split(payment_ids, ',')) AS payment_id
                           FROM order_versions WHERE platform = 'commercetools' AND payment_ids <> '')
                SELECT l.tenant, l.payment_id, arg_max(l.order_key, l.updated_at) AS order_key,
                       arg_max(l.source_id, l.updated_at) AS id
                FROM listed l JOIN pending p USING (tenant, payment_id) GROUP BY l.tenant, l.payment_id""", params)
        self.conn.execute("CREATE OR REPLACE TEMP TABLE refund_named AS SELECT DISTINCT order_key, id FROM ct_payment_orders")
        return {f"{t}:{pid}": key for t, pid, key in
                self.conn.execute("SELECT tenant, payment_id, order_key FROM ct_payment_orders").fetchall()}


def _fill_payment_ids(conn: duckdb.DuckDBPyConnection) -> None:
    """commercetools versions mapped before order_versions.payment_ids get it from their raw version's
    payload (the same function the mapper uses), once; a version whose raw row is not found keeps NULL."""
    rows = conn.execute(
        """SELECT v.rowid, r.payload FROM order_versions v JOIN raw_records r
               ON r.source = 'commercetools.orders' AND r.tenant = v.tenant AND r.record_id = v.source_id
              AND r.modified_at = v.updated_at AND r.payload_hash = v.payload_hash
           WHERE v.platform = 'commercetools' AND v.payment_ids IS NULL"""
    ).fetchall()
    if not rows:
        return
    frame = pd.DataFrame({"row_id": [row_id for row_id, _ in rows],
                          "ids": [",".join(commercetools.payment_ids(_loads(payload))) for _, payload in rows]})
    with registered(conn, "_ct_payment_ids", frame):
        conn.execute("UPDATE order_versions SET payment_ids = f.ids FROM _ct_payment_ids f WHERE order_versions.rowid = f.row_id")


class _OutboxIds:
    """Our batch ids, read on the first lookup: a run with no loyalty event to map does not read
    the outbox (a row per member and push, 200,000 at 1M orders)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection):
        self.conn = conn
        self.ids: set[str] | None = None

    def __contains__(self, batch_id: object) -> bool:
        if self.ids is None:
            self.ids = {r[0] for r in self.conn.execute("SELECT batch_id FROM outbox").fetchall()}
        return batch_id in self.ids


class _SmileRedemptions:
    """Smile reward fulfillments and the redemption (points transaction) each came from, read when the
    first redemption or fulfillment is mapped. Smile's documented fulfillment object does not name its
    points transaction: a fulfillment without `points_transaction_id` is the spend of its customer
    made within REDEMPTION_WINDOW_SECONDS of it (the purchase creates both at once), the nearest one.
    `codes`: the discount code of each redemption; `of`: the redemption of each fulfillment."""

    def __init__(self, conn: duckdb.DuckDBPyConnection):
        self.conn = conn
        self._of: dict[str, str] | None = None
        self._codes: dict[str, str] | None = None

    def _load(self) -> None:
        if self._of is not None:
            return
        rows = self.conn.execute(
            f"""WITH f AS (
                    SELECT record_id AS fid, tenant, arg_max(payload, modified_at) AS p FROM raw_records
                    WHERE source = 'smile.reward_fulfillments' GROUP BY record_id, tenant),
                t AS (
                    SELECT record_id AS tid, tenant, arg_max(payload, modified_at) AS p FROM raw_records
                    WHERE source = 'smile.points_transactions' GROUP BY record_id, tenant),
                ff AS (
                    SELECT fid, tenant, json_extract_string(p, '$.customer_id') AS customer,
                           TRY_CAST(json_extract_string(p, '$.created_at') AS TIMESTAMPTZ) AS at,
                           json_extract_string(p, '$.points_transaction_id') AS linked,
                           json_extract_string(p, '$.code') AS code FROM f),
                tt AS (
                    SELECT tid, tenant, json_extract_string(p, '$.customer_id') AS customer,
                           TRY_CAST(json_extract_string(p, '$.created_at') AS TIMESTAMPTZ) AS at FROM t
                    WHERE TRY_CAST(json_extract_string(p, '$.points_change') AS BIGINT) < 0)
                SELECT ff.fid, coalesce(ff.linked, arg_min(tt.tid, (abs(epoch(tt.at) - epoch(ff.at)), tt.tid))), ff.code
                FROM ff LEFT JOIN tt ON ff.linked IS NULL AND tt.tenant = ff.tenant AND tt.customer = ff.customer
                    AND abs(epoch(tt.at) - epoch(ff.at)) <= {REDEMPTION_WINDOW_SECONDS}
                GROUP BY ff.fid, ff.linked, ff.code""").fetchall()
        self._of = {str(f): str(t) for f, t, _ in rows if t is not None}
        self._codes = {str(t): c for _, t, c in rows if t is not None and c is not None}

    @property
    def codes(self) -> Mapping[str, str]:
        self._load()
        return self._codes

    @property
    def of(self) -> Mapping[str, str]:
        self._load()
        return self._of


def _retry_scope(conn: duckdb.DuckDBPyConnection) -> None:
    """normalize_retry := the versions tried again this run (waiting refunds, missing FX rates), by
    payload hash, before their outcomes are cleared."""
    conn.execute(
        """CREATE OR REPLACE TEMP TABLE normalize_retry AS
           SELECT DISTINCT p.source, regexp_extract(p.version_key, '#([^#]*)$', 1) AS hash FROM raw_processed p
           WHERE p.outcome = 'waiting' OR (p.outcome = 'quarantined' AND EXISTS (
               SELECT 1 FROM quarantine q WHERE q.source = p.source AND q.version_key = p.version_key
               AND q.reason = 'no_fx_rate'))"""
    )


def _mapping_params(program: Program) -> dict:
    """What the set-based Magento mappings check against: the program currency, its minor units, the
    text of a JSON number they take (magento_macros.sql, mg_amount), the product types that earn nothing."""
    digits = currency_digits(program.currency)
    return {"currency": program.currency, "scale": 10 ** digits,
            # at most 4 decimals: what magento_macros.sql's DECIMAL(18, 4) holds exactly
            "number": rf"-?\d{{1,9}}(\.\d{{1,{min(digits, 4)}}})?" if digits else r"-?\d{1,9}(\.0)?",
            "excluded": sorted({t.lower() for t in program.earning.excluded_product_types})}


def map_magento_orders_in_sql(conn: duckdb.DuckDBPyConnection, program: Program,
                              since: dt.datetime | None = None) -> tuple[int, bool]:
    """Map the plain-shaped Magento orders set-based (magento_orders.sql); returns how many, and
    whether that was every pending version (then the Python pass has nothing to look for: finding
    that out cost 1.8 s at 1M).

    Python costs ~50 µs a version; the rest, and whatever would be quarantined, stays pending for
    magento.map_order."""
    conn.execute("BEGIN")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS normalize_retry (source VARCHAR, hash VARCHAR)")
        # found first, so that the checks of magento_orders.sql cost what is new
        pending_sql, params = _pending_sql(
            conn, f"r.tenant, r.modified_at, r.payload_hash, r.payload, {VERSION_KEY_SQL} AS version_key",
            "magento.orders", since)
        if since is None:
            # the first run maps every version: read in place (copying 1.7M payloads first cost 6 s)
            inlined = pending_sql.replace("$outcomes_since", "NULL").replace("$since", "NULL")
            conn.execute("CREATE OR REPLACE TEMP VIEW magento_pending AS "
                         + inlined.replace("$source", "'magento.orders'"))
        else:
            conn.execute("CREATE OR REPLACE TEMP TABLE magento_pending AS " + pending_sql, params)
        run_script(conn, "magento_macros")
        pending = conn.execute("SELECT count(*) FROM magento_pending").fetchall()[0][0]
        n = _insert_without_filter_pushdown(conn, script_text("magento_orders"), _mapping_params(program))
        # the outcomes: every pending version when all were plain (by far the usual case), else those
        # whose row this transaction wrote (order_versions' mapped_at is the transaction's start; a
        # payload hash names its order's version)
        conn.execute(
            "INSERT INTO raw_processed SELECT 'magento.orders', p.version_key, 'processed', now() FROM magento_pending p"
            + ("" if n == pending else """ WHERE EXISTS (
                SELECT 1 FROM order_versions v WHERE v.mapped_at = now() AND v.platform = 'magento'
                AND v.tenant = p.tenant AND v.updated_at = p.modified_at AND v.payload_hash = p.payload_hash)"""))
        conn.execute(f"DROP {'VIEW' if since is None else 'TABLE'} magento_pending")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return n, pending == n


def _insert_without_filter_pushdown(conn: duckdb.DuckDBPyConnection, statement: str, params: dict) -> int:
    """Run an INSERT whose WHERE tests a column the query computes last (magento_orders.sql); returns
    the rows inserted. The session's optimizer settings are restored whatever happens."""
    saved = conn.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    disabled = ",".join(filter(None, [saved, "filter_pushdown"]))
    conn.execute(f"SET disabled_optimizers = '{disabled}'")
    try:
        return conn.execute(statement, params).fetchall()[0][0]
    finally:
        conn.execute(f"SET disabled_optimizers = '{saved}'")


def map_magento_memos_in_sql(conn: duckdb.DuckDBPyConnection, program: Program,
                             since: dt.datetime | None = None) -> int:
    """Map the plain-shaped credit memos of known orders set-based (magento_creditmemos.sql); returns
    how many. Python costs ~25 µs a memo (1.2 s of a recompute at 1M orders); the rest, a memo
    waiting for its order and whatever would be quarantined, stays pending for magento.map_creditmemo."""
    conn.execute("BEGIN")
    try:
        sql, params = _pending_sql(
            conn, f"r.tenant, r.modified_at, r.payload_hash, r.payload, {VERSION_KEY_SQL} AS version_key",
            "magento.creditmemos", since)
        conn.execute("CREATE OR REPLACE TEMP TABLE memo_pending AS " + sql, params)
        # each named order's excluded line ids from its latest mapped version, as _Orders reads them
        conn.execute(
            """CREATE OR REPLACE TEMP TABLE memo_orders AS
               SELECT order_key, arg_max_null(excluded_item_ids, updated_at) AS ids FROM order_versions
               WHERE order_key IN (SELECT 'magento:' || tenant || ':' || trim(json_extract_string(payload, '$.order_id'))
                                   FROM memo_pending)
               GROUP BY 1""")
        run_script(conn, "magento_macros")
        run_script(conn, "magento_creditmemos", _mapping_params(program))
        n = conn.execute("SELECT count(*) FROM memo_sql_rows WHERE sql_ok").fetchall()[0][0]
        conn.execute("DROP TABLE memo_sql_rows; DROP TABLE memo_orders; DROP TABLE memo_pending")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return n


def _to_program_factor(program_digits: int, calc_currency: str, rate: Decimal) -> Decimal:
    """Calc-currency minor units -> program minor units: the rate, scaled by the currencies' digits."""
    return Decimal(1).scaleb(program_digits - currency_digits(calc_currency)) * rate


def _keep_earned_rates(conn: duckdb.DuckDBPyConnection, program: Program, started: dt.datetime) -> int:
    """RULES.md §1: an order that has earned is valued for ever after at the rate recorded on its earn
    entry. A version mapped now at another FX table rate (the table changed since, e.g. a rate added
    for its creation day) takes the earn's rate instead. Only FX table conversions (§3 rule 4: no base
    amounts, no store rate) can change so. Returns the versions changed."""
    scope = """FROM order_versions WHERE mapped_at >= $started AND currency <> $currency
               AND calc_currency = currency AND to_program_divisor IS NULL"""
    params = {"started": started, "currency": program.currency}
    if not conn.execute(f"SELECT count(*) {scope}", params).fetchall()[0][0]:
        return 0
    rows = conn.execute(
        f"""WITH mapped AS (SELECT order_key, updated_at, payload_hash, calc_currency, fx_rate {scope}),
               earned AS (SELECT order_key, arg_min(fx_rate, booked_on) AS fx_rate FROM ledger_journal
                          WHERE kind = 'earn' AND fx_rate IS NOT NULL
                            AND order_key IN (SELECT order_key FROM mapped) GROUP BY order_key)
            SELECT m.order_key, m.updated_at, m.payload_hash, m.calc_currency, e.fx_rate
            FROM mapped m JOIN earned e USING (order_key) WHERE m.fx_rate <> e.fx_rate""", params).fetchall()
    if not rows:
        return 0
    digits = currency_digits(program.currency)
    conn.executemany(
        """UPDATE order_versions SET fx_rate = $rate, calc_rate = $rate, to_program_factor = $factor
           WHERE order_key = $order_key AND updated_at = $updated_at AND payload_hash = $payload_hash""",
        [{"rate": rate, "factor": _to_program_factor(digits, calc, rate), "order_key": key,
          "updated_at": at, "payload_hash": h} for key, at, h, calc, rate in rows])
    return len(rows)


def normalize(conn: duckdb.DuckDBPyConnection, program: Program, fx: FxTable, today: dt.date,
              sql_mapping: bool = True) -> NormalizeResult:
    """Map every raw version not processed yet, for every platform.

    `sql_mapping=False` maps every Magento order and memo in Python (the tests compare both ways)."""
    batch = _Batch()
    prog_digits = currency_digits(program.currency)
    started = conn.execute("SELECT now()").fetchone()[0]
    row = conn.execute("SELECT refreshed_at FROM refresh_state WHERE name = 'normalize'").fetchone()
    since = row[0] - SCOPE_MARGIN if row else None
    _retry_scope(conn)
    # A missing FX rate may have been added since: those versions are tried again.
    conn.execute(
        """DELETE FROM raw_processed p WHERE outcome = 'quarantined' AND EXISTS (
               SELECT 1 FROM quarantine q WHERE q.source = p.source AND q.version_key = p.version_key
               AND q.reason IN ('no_fx_rate'))"""
    )

    mapped_in_sql, all_in_sql = map_magento_orders_in_sql(conn, program, since) if sql_mapping else (0, False)

    for source, mapper in ORDER_MAPPERS.items():
        if source == "magento.orders" and all_in_sql:
            continue

        def order_row(tenant, payload, day, rid, raw, mapper=mapper) -> str:
            version = mapper(payload, tenant, program, fx)
            row = version.row()
            row["source_id"] = row.pop("native_id")
            row["to_program_factor"] = _to_program_factor(prog_digits, version.calc_currency, version.calc_rate)
            row["to_program_divisor"] = row.pop("calc_divisor")
            row.update(payload_hash=raw["payload_hash"], updated_at=raw["updated_at"])  # exact raw key time
            batch.orders.append(row)
            return "processed"

        _each(conn, batch, source, order_row, since,
              flush=lambda: batch.write(conn, "order_versions", batch.orders, ORDER_COLUMNS, at_least=FLUSH_ROWS))
    batch.write(conn, "order_versions", batch.orders, ORDER_COLUMNS)
    _keep_earned_rates(conn, program, started)

    # Refunds need their order (its lines, currency and totals). Those waiting for an unknown order
    # are mapped again now, since the order may have arrived.
    conn.execute("DELETE FROM refund_versions WHERE NOT order_known")
    conn.execute("DELETE FROM raw_processed WHERE outcome = 'waiting'")
    memos_in_sql = map_magento_memos_in_sql(conn, program, since) if sql_mapping else 0
    orders = _Orders(conn, since)

    def refund_rows(source: str, tenant: str, payload, day, rid, raw) -> str:
        if source == "magento.creditmemos":
            # the order id as the mapper reads it (trimmed): ' 1' is order 1, as the memo's order_key says
            order_key = (f"magento:{tenant}:{str(payload.get('order_id')).strip()}"
                         if isinstance(payload, dict) and payload.get("order_id") is not None else None)
            excluded_ids = orders.magento_excluded(order_key, program) if order_key else None
            known = excluded_ids is not None
            rows = [magento.map_creditmemo(payload, tenant, program, excluded_ids)]
        elif source == "bigcommerce.refunds":
            order_key = f"bigcommerce:{tenant}:{bigcommerce.refund_order_id(payload)}"
            order = orders.get("bigcommerce.orders", order_key, source)
            known = order is not None
            try:
                rows = bigcommerce.map_refund(payload, tenant, program, order)
            except RecordError as exc:
                if known or exc.reason != "unknown_order":
                    raise
                rows = None  # an item without requested_amount is priced from the order's lines: it waits
        else:
            order_key = orders.commercetools_order_of_payment(tenant, str(payload.get("id")))
            order = orders.get("commercetools.orders", order_key, source) if order_key else None
            rows = commercetools.map_payment(payload, tenant, program, order, order_key.split(":", 2)[2] if order_key else None)
            known = order is not None
        for version in rows or []:
            row = version.row()
            row.update(source_id=row.pop("native_id"), order_known=known, **raw)
            batch.refunds.append(row)
        if known or rows == []:
            return "processed"
        if (today - day).days >= program.ingest.refund_wait_days:
            # quarantined and kept: if the order ever turns up, the refund still counts
            batch.quarantined(source, tenant, rid, json.dumps(payload, default=str), day, raw["raw_version_key"],
                              "unknown_order", f"refund {rid} refers to order {order_key or '(no order lists this payment)'},"
                              f" still unknown after {program.ingest.refund_wait_days} days")
        return "waiting"

    for source in REFUND_SOURCES:
        _each(conn, batch, source, lambda *a, s=source: refund_rows(s, *a), since)
    batch.write(conn, "refund_versions", batch.refunds)

    for source, mapper in CUSTOMER_MAPPERS.items():
        def customer_row(tenant, payload, day, rid, raw, mapper=mapper) -> str:
            c = mapper(payload, tenant)
            batch.customers.append({"customer_key": c.customer_key, "platform": c.platform, "source_id": c.native_id,
                                    "email": c.email, "created_at": c.created_at, "updated_at": raw["updated_at"],
                                    "payload_hash": raw["payload_hash"], "member_ref": None})
            return "processed"

        _each(conn, batch, source, customer_row, since)
    def person_row(tenant, payload, day, rid, raw) -> str:
        record_id, email = events.salesforce_person_email(payload)
        ref = payload.get("Loyalty_Member_Id__c")
        batch.customers.append({"customer_key": f"salesforce:{tenant}:{record_id}", "platform": "salesforce",
                                "source_id": record_id, "email": email, "created_at": None,
                                "updated_at": raw["updated_at"], "payload_hash": raw["payload_hash"],
                                "member_ref": ref.strip() if isinstance(ref, str) and ref.strip() else None})
        return "processed"

    for source in CRM_PEOPLE:
        _each(conn, batch, source, person_row, since)
    batch.write(conn, "customer_versions", batch.customers)

    # Points events that are not orders; our own pushes, read back from the platforms, are skipped.
    ours = _OutboxIds(conn)
    smile = _SmileRedemptions(conn)
    event_mappers = {
        "smile.points_transactions": lambda p, t: events.smile_redemption(p, t, ours, smile),
        "smile.reward_fulfillments": lambda p, t: events.smile_canceled_redemption(p, t, smile),
        "loyaltylion.transactions": lambda p, t: events.loyaltylion_redemption(p, t, ours),
        "salesforce.adjustment_requests": lambda p, t: events.adjustment_request(p, t, program),
    }
    for source, mapper in event_mappers.items():
        def event_row(tenant, payload, day, rid, raw, mapper=mapper) -> str:
            event = mapper(payload, tenant)
            if event is not None:
                batch.events.append({**event.row(), "updated_at": raw["updated_at"], "payload_hash": raw["payload_hash"]})
            return "processed"

        _each(conn, batch, source, event_row, since)
    batch.write(conn, "loyalty_events", batch.events)

    referrals: list[dict] = []
    for source, mapper in (("smile.referrals", events.smile_referral), ("loyaltylion.activities", events.loyaltylion_referral)):
        def referral_row(tenant, payload, day, rid, raw, mapper=mapper) -> str:
            ref = mapper(payload, tenant)
            if ref is not None:
                referrals.append({**ref.row(), "updated_at": raw["updated_at"], "payload_hash": raw["payload_hash"]})
            return "processed"

        _each(conn, batch, source, referral_row, since)
    batch.write(conn, "referrals", referrals)
    # versions once quarantined for a missing FX rate and now processed leave the quarantine
    conn.execute(
        """DELETE FROM quarantine q WHERE q.reason = 'no_fx_rate' AND EXISTS (
               SELECT 1 FROM raw_processed p WHERE p.source = q.source AND p.version_key = q.version_key
               AND p.outcome = 'processed')"""
    )
    conn.execute(
        """INSERT INTO refresh_state VALUES ('normalize', ?, NULL) ON CONFLICT (name) DO UPDATE
           SET refreshed_at = excluded.refreshed_at""",
        [started],
    )
    written = batch.written
    return NormalizeResult(written.get("order_versions", 0) + mapped_in_sql,
                           written.get("refund_versions", 0) + memos_in_sql, written.get("customer_versions", 0),
                           batch.quarantined_count, batch.waiting_count, written.get("loyalty_events", 0))
