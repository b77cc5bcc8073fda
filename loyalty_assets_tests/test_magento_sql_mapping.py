"""The set-based Magento order mapping (lib/sql/magento_orders.sql) gives exactly the rows, quarantine
and outcomes of the Python mapper, on edge cases, a generated shop, the vendor's real order and the
benchmark's data, and leaves to Python every version it cannot map exactly."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import tempfile
from decimal import Decimal
from pathlib import Path

import duckdb
import simplejson
from magento_factory import order

from loyalty_assets import bench
from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.normalize import map_magento_memos_in_sql, map_magento_orders_in_sql, normalize
from loyalty_assets.lib.program import parse_program
from loyalty_assets.lib.warehouse import ensure_schema
from loyalty_assets.sandbox.generate import generate

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "magento"
PROGRAM = parse_program("{}")
FX = FxTable({"EUR": [(dt.date(2020, 1, 1), Decimal("1.1"))]})
TODAY = dt.date(2024, 12, 31)


def dumps(payload) -> str:
    return simplejson.dumps(payload, use_decimal=True)  # Decimals as bare JSON numbers, as Magento sends them


def land(conn, texts: list[str], source: str = "magento.orders") -> None:
    for i, text in enumerate(texts):
        modified = dt.datetime(2024, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
        conn.execute(
            "INSERT INTO raw_records VALUES (?, 'default', ?, ?, ?, ?, ?, now())",
            [source, str(i), modified, hashlib.sha256(text.encode()).hexdigest()[:16], text, modified.date()],
        )


def outcome(texts: list[str], program=PROGRAM) -> tuple[set[str], dict]:
    """(ids of the orders mapped in SQL, tables); the tables are the same with Python alone."""
    tables = []
    in_sql: set[str] = set()
    for sql in (True, False):
        conn = duckdb.connect()
        ensure_schema(conn)
        land(conn, texts)
        if sql:
            n, _ = map_magento_orders_in_sql(conn, program)
            in_sql = {r[0] for r in conn.execute("SELECT source_id FROM order_versions").fetchall()}
            assert n == conn.execute("SELECT count(*) FROM order_versions").fetchone()[0]
            # the mapping's statement runs without filter pushdown; the session gets it back
            assert conn.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0] == ""
        normalize(conn, program, FX, TODAY, sql_mapping=sql)
        tables.append(snapshot(conn, "orders", "order_versions"))
        conn.close()
    assert_same(*tables)
    return in_sql, tables[0]


def snapshot(conn, name: str, table: str) -> dict:
    """The mapped rows of `table` (as `name`), the quarantine and the outcomes."""
    return {
        name: conn.execute(f"SELECT * EXCLUDE (mapped_at) FROM {table} ORDER BY ALL").fetchall(),
        "quarantine": conn.execute(
            "SELECT source, record_key, reason, detail, version_key FROM quarantine ORDER BY ALL").fetchall(),
        "processed": conn.execute("SELECT source, version_key, outcome FROM raw_processed ORDER BY ALL").fetchall(),
    }


def assert_same(with_sql: dict, python_alone: dict) -> None:
    for name in with_sql:
        sql_only = sorted(set(with_sql[name]) - set(python_alone[name]))
        python_only = sorted(set(python_alone[name]) - set(with_sql[name]))
        assert (name, sql_only) == (name, python_only)


def changed(rec: dict, changes: dict) -> dict:
    """`rec` with `changes` applied; `...` removes the field."""
    for key, value in changes.items():
        if value is ...:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def variant(i: int, **changes) -> dict:
    return changed(order(i, "2024-03-01 10:00:00", subtotal="100.00", discount="10.00", customer_id=7), changes)


# mapped in SQL: every field in its plain shape, with the values that trip naive mappings
PLAIN = [
    variant(1),
    variant(2, customer_id=0),                      # 0: a guest
    variant(3, customer_id="0", customer_is_guest=False),  # the text "0" is an id
    variant(4, customer_id="", customer_is_guest=0),
    variant(5, customer_is_guest=True),
    variant(6, customer_id=..., customer_is_guest=...),
    variant(7, increment_id=0),
    variant(8, increment_id=""),
    variant(9, increment_id=123),
    variant(10, status=""),
    variant(11, status=...),
    variant(12, coupon_code="  save10 "),
    variant(13, coupon_code="   "),
    variant(14, store_id=0),
    variant(15, store_id=...),
    variant(16, store_id="3"),
    variant(17, customer_email="  Ann@Example.COM "),
    variant(18, customer_email="no-at-sign", billing_address={"email": " Bob@Example.com", "telephone": "+1 555",
                                                                "country_id": "US"}),
    variant(19, customer_email=..., billing_address=...),
    variant(20, subtotal="12.345", discount_amount="-0.005"),  # text is exact: half-up 1235, 1
    variant(21, subtotal="  99.995 ", tax_amount="0", grand_total="1e2"),       # '1e2' goes to Python
    variant(22, subtotal=Decimal("10.00"), discount_amount=Decimal("3.00"), shipping_discount_amount=Decimal("-1.00")),
    variant(23, subtotal=Decimal("5.00"), discount_amount=Decimal("-9.00")),   # eligible floors at 0
    variant(24, created_at="2024-02-29 23:59:59.000000", state="complete"),
    variant(25, entity_id="  25 ", state="holded"),
    variant(26, items=[{"item_id": 1, "product_type": "simple"}, "not an item"]),
    variant(27, subtotal=Decimal("123456789.12")),  # 9 integer digits on the cent grid
    variant(35, subtotal=Decimal("10.00000000000000000001")),  # reads as 10.0: the same cents
    variant(36, subtotal=" 999999999.9995", discount_amount="-0.0005"),  # the widest text taken
    variant(37, subtotal="10.0050", discount_amount="-0.0049"),  # eligible 10.0001: 1000, not 1001 from rounded parts
    variant(28, shipping_amount=None, tax_amount=None),
    variant(29, order_currency_code="usd"),
    variant(30, customer_is_guest="no"),  # any text is truthy
    variant(31, store_id="1.5"),
    variant(32, created_at="2024-03-01 10:00:00\u00a0Zo\u00eb"),  # text past the 19th character is ignored either way
    variant(33, created_at="\u20032024-03-01 10:00:00"),  # trim() strips some of what Python's strip() does, never more
    variant(34, coupon_code='sa"ve\\10'),  # escaped in the JSON text
    variant(18446744073709551616, customer_id=123456789012345678901234),  # beyond 64 bits: kept as digits
    variant(38, billing_address={"email": None, "telephone": "+1 555", "city": "Oslo"}),  # read as a structure
    variant(39, items=[{"item_id": 1, "product_type": 5}, {"item_id": 2}, 7, []]),
]
# left to Python (mapped there or quarantined with its reason)
OTHER = [
    variant(40, state="weird"), variant(41, state=None), variant(42, entity_id=None), variant(43, entity_id=True),
    variant(44, created_at="2024-02-30 10:00:00"), variant(45, created_at="2024-03-01 24:00:00"),
    variant(46, updated_at="2024-03-01T10:00:00Z"), variant(47, created_at=20240301),
    variant(48, order_currency_code="EUR"), variant(49, order_currency_code=" USD"), variant(50, order_currency_code="XXX"),
    variant(51, subtotal=Decimal("-1.00")), variant(52, subtotal=True), variant(53, subtotal="abc"),
    variant(54, tax_amount=Decimal("-0.01")), variant(55, customer_id=..., customer_email=..., billing_address={}),
    variant(56, billing_address="oops", customer_email=...), variant(57, billing_address=[]),
    variant(58, items=[{"item_id": 2, "product_type": "GiftCard", "row_total": Decimal("20.00")}]),
    variant(59, customer_id=True), variant(60, customer_id=Decimal("7.0")), variant(61, customer_is_guest=Decimal("1.0")),
    variant(62, store_id=Decimal("1.5")), variant(63, coupon_code=123), variant(64, customer_email="Zoë@example.com"),
    variant(65, subtotal=Decimal("1234567890123.456")), variant(66, entity_id="\t66"),
    variant(67, billing_address={"email": "x@example.com", "telephone": 5551234}), variant(68, items={"a": 1}),
    variant(69, subtotal=Decimal("0.0049999999999999999")), variant(70, status=5),  # 69 reads as 0.005
    variant(72, subtotal=Decimal("12.345")),  # a number off the cent grid
    variant(73, subtotal=Decimal("1000000000.00")), variant(74, tax_amount=Decimal("-1E-400")),  # 74 reads as -0.0
    variant(71, created_at="\t2024-03-01 10:00:00"),  # whitespace Python strips and trim() does not
    variant(75, subtotal="10.00005"), variant(76, subtotal="1234567890.5"),  # text wider than SQL takes
    # no address field or line the structured read can see: told apart from a value of another type by Python
    variant(77, billing_address=[{"email": "x@example.com"}], customer_email=...), variant(78, items=None),
    variant(79, billing_address={"city": "Oslo"}), variant(81, items="none", billing_address=5),
    # state, times and currency are read as text whatever their JSON type: no other type may pass as a string
    variant(82, state=2), variant(83, state={"code": "processing"}), variant(84, state=["processing"]),
    variant(85, order_currency_code=840), variant(86, order_currency_code=["USD"]), variant(87, updated_at=True),
    variant(88, created_at=["2024-03-01 10:00:00"]),
]


def test_edge_cases_give_the_same_rows_and_quarantine_as_python():
    texts = [dumps(p) for p in PLAIN + OTHER]
    texts += ['[1, 2]', '"an order"', '{"entity_id": 80, "state": "new"}']
    in_sql, tables = outcome(texts)
    assert in_sql == {str(p["entity_id"]).strip() for p in PLAIN} - {"21"}  # '1e2' as text goes to Python
    assert len(tables["processed"]) == len(texts)
    reasons = {r[2] for r in tables["quarantine"]}
    assert {"unknown_status", "malformed_record", "bad_amount", "negative_amount", "missing_email",
            "unknown_currency"} <= reasons


def test_an_object_after_whitespace_maps_in_sql_up_to_64_characters_and_in_python_beyond():
    first, second = copy.deepcopy(PLAIN[0]), copy.deepcopy(PLAIN[0])
    first["entity_id"], second["entity_id"] = 901, 902
    in_sql, tables = outcome(["    " + dumps(first), " " * 70 + dumps(second)])
    assert in_sql == {"901"}
    assert [r[2] for r in tables["processed"]] == ["processed", "processed"]
    assert sorted(r[1] for r in tables["orders"]) == ["magento", "magento"]   # both mapped, alike


def test_a_generated_shop_and_the_real_order_map_alike():
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), customers=60, days=20, start=dt.date(2024, 3, 1), seed=3)
        records = json.loads((Path(tmp) / "magento" / "orders" / "orders.json").read_text(), parse_float=Decimal)
    real = (FIXTURES / "order_get_by_id.json").read_text()
    texts = [dumps(r) for r in records] + [real]
    in_sql, tables = outcome(texts)
    # the USD store maps in SQL, the EUR/GBP/JPY/CHF stores (FX rates) in Python
    assert len(tables["orders"]) > 150 and len(in_sql) >= 30


def test_the_benchmark_history_maps_entirely_in_sql():
    conn = duckdb.connect()
    ensure_schema(conn)
    bench.land_history(conn, orders=300, members=60, days=30, seed=1, memo_rate=0.0, tz="UTC")
    texts = [r[0] for r in conn.execute("SELECT payload FROM raw_records WHERE source = 'magento.orders'").fetchall()]
    in_sql, tables = outcome(texts)
    assert len(tables["orders"]) == len(texts) and {r[3] for r in tables["orders"]} == in_sql


def test_excluded_product_types_of_the_program_are_honoured():
    program = parse_program("earning: {excluded_product_types: [virtual]}")
    rec = variant(90, items=[{"item_id": 1, "product_type": "Virtual", "row_total": Decimal("30.00"),
                              "discount_amount": Decimal("0")}])
    plain = variant(91, items=[{"item_id": 1, "product_type": "giftcard"}])  # not excluded by this program
    in_sql, tables = outcome([dumps(rec), dumps(copy.deepcopy(plain))], program)
    assert in_sql == {"91"}
    assert {r[0]: r[19] for r in tables["orders"]} == {"magento:default:90": 6000, "magento:default:91": 9000}


def test_a_currency_without_minor_units_takes_whole_numbers_only():
    program = parse_program("currency: JPY")
    yen = [variant(i, order_currency_code="JPY", base_currency_code="JPY", subtotal=amount, discount_amount=Decimal("0"))
           for i, amount in ((1, 1200), (2, Decimal("1200.0")), (3, Decimal("1200.5")), (4, "1200.5"))]
    in_sql, tables = outcome([dumps(r) for r in yen], program)
    assert in_sql == {"1", "2", "4"}  # a number off the yen grid goes to Python; text is exact
    assert {r[3]: r[19] for r in tables["orders"]} == {"1": 1200, "2": 1200, "3": 1201, "4": 1201}


def test_a_run_reads_what_arrived_since_the_last_one_and_still_retries_waiting_refunds():
    """The scope of a run (fetched since the last run began, less a day) leaves old versions out of
    the anti-join, but a refund waiting for its order is mapped once the order turns up, however
    long ago the refund was fetched; a no-FX-rate version likewise (tested in test_assets)."""
    from magento_factory import memo
    from pipeline import land

    conn = duckdb.connect()
    ensure_schema(conn)
    land(conn, PROGRAM, orders=[order(1, "2024-03-01 10:00:00")], memos=[memo(9, 2, "2024-03-02 10:00:00")])
    first = normalize(conn, PROGRAM, FX, TODAY)
    assert (first.orders, first.waiting) == (1, 1)
    # everything so far was fetched ten days before this run's scope
    conn.execute("UPDATE raw_records SET fetched_at = fetched_at - INTERVAL 10 DAY")
    conn.execute("UPDATE refresh_state SET refreshed_at = refreshed_at - INTERVAL 8 DAY WHERE name = 'normalize'")
    conn.execute("DELETE FROM raw_processed WHERE version_key LIKE 'default:1@%'")  # out of scope now: not seen
    land(conn, PROGRAM, orders=[order(2, "2024-03-05 10:00:00")])
    second = normalize(conn, PROGRAM, FX, TODAY)
    assert (second.orders, second.refunds, second.waiting) == (1, 1, 0)
    assert conn.execute("SELECT order_key, order_known FROM refund_versions").fetchall() == [("magento:default:2", True)]
    assert conn.execute("SELECT count(*) FROM order_versions WHERE order_key = 'magento:default:1'").fetchone()[0] == 1
    # with no run recorded, the whole table is read again (order 1's outcome was cleared above)
    conn.execute("DELETE FROM refresh_state WHERE name = 'normalize'")
    conn.execute("DELETE FROM order_versions WHERE order_key = 'magento:default:1'")
    assert normalize(conn, PROGRAM, FX, TODAY).orders == 1


def test_a_memo_leaves_out_its_orders_excluded_lines_whichever_way_the_order_was_read():
    """A memo's items name the order's lines by id only: its order's excluded line ids come from the
    order's latest mapped version (Python- or SQL-mapped), or from its raw payload when the version
    does not record them (a warehouse from before the column) or every version was quarantined."""
    from magento_factory import memo
    from pipeline import land

    def line(item_id, product_type, total):
        return {"item_id": item_id, "product_type": product_type, "row_total": Decimal(total),
                "base_row_total": Decimal(total), "discount_amount": Decimal("0"), "base_discount_amount": Decimal("0")}

    def refund_line(item_id, total):  # as Magento sends memo items: no product_type
        return {"order_item_id": item_id, "row_total": Decimal(total), "base_row_total": Decimal(total),
                "discount_amount": Decimal("0"), "base_discount_amount": Decimal("0")}

    gift = order(1, "2024-03-01 10:00:00", items=[line(11, "giftcard", "30.00"), line(12, "simple", "70.00")])
    plain = order(2, "2024-03-01 10:00:00")
    odd = order(3, "2024-03-01 10:00:00", items=[line(31, "giftcard", "30.00"), line(32, "simple", "70.00")])
    odd["state"] = "on_the_moon"  # its only version is quarantined: the order is still known
    memos = []
    for entity, order_id, item in ((9, 1, 11), (10, 2, 20), (13, 3, 31)):
        m = memo(entity, order_id, "2024-03-02 10:00:00", subtotal="30.00")
        m["items"] = [refund_line(item, "30.00")]
        memos.append(m)

    def refunds(conn):
        return conn.execute(
            "SELECT order_key, order_known, refunded_eligible_minor FROM refund_versions ORDER BY ALL").fetchall()

    expected = [("magento:default:1", True, 0), ("magento:default:2", True, 3000), ("magento:default:3", True, 0)]
    conn = duckdb.connect()
    ensure_schema(conn)
    land(conn, PROGRAM, orders=[gift, plain, odd], memos=memos)
    normalize(conn, PROGRAM, FX, TODAY)
    assert conn.execute("SELECT order_key, excluded_item_ids FROM order_versions ORDER BY 1").fetchall() == [
        ("magento:default:1", "11"), ("magento:default:2", "")]
    assert refunds(conn) == expected
    # a warehouse whose versions were mapped before excluded_item_ids: the memos are mapped again
    conn.execute("UPDATE order_versions SET excluded_item_ids = NULL")
    conn.execute("DELETE FROM refund_versions")
    conn.execute("DELETE FROM raw_processed WHERE source = 'magento.creditmemos'")
    conn.execute("DELETE FROM refresh_state WHERE name = 'normalize'")
    normalize(conn, PROGRAM, FX, TODAY)
    assert refunds(conn) == expected


def memo_variant(i: int, order_id=1, **changes) -> dict:
    from magento_factory import memo

    return changed(memo(i, order_id, "2024-03-02 10:00:00", subtotal="40.00", discount="4.00"), changes)


GIFT_LINE = {"item_id": 11, "product_type": "giftcard", "row_total": Decimal("30.00"), "discount_amount": Decimal("0")}
# mapped in SQL: memos of order 1 (no excluded line) with every field in its plain shape
PLAIN_MEMOS = [
    memo_variant(1), memo_variant(2, state=1), memo_variant(3, state="3"),
    memo_variant(4, subtotal="12.345", discount_amount=Decimal("-5.00")),  # text is exact: half-up 735
    memo_variant(5, updated_at=""), memo_variant(6, updated_at=...),  # created_at instead
    memo_variant(7, base_currency_code=...), memo_variant(8, base_currency_code=""), memo_variant(9, base_currency_code="usd"),
    memo_variant(10, order_currency_code="usd"), memo_variant(11, discount_amount=Decimal("-90.00")),  # floors at 0
    memo_variant(12, items=[{"order_item_id": 5, "product_type": "simple"}, "not an item"]),
    memo_variant(13, entity_id="  13 "), memo_variant(14, subtotal="  20.00 "),
    memo_variant(15, updated_at="2024-03-02 10:00:00.000000"), memo_variant(16, discount_amount=...),
    memo_variant(44, order_id=" 1"),  # order 1, as the memo's order_key says (its lookup trims the id too)
]
# left to Python (mapped there, waiting, or quarantined with its reason)
OTHER_MEMOS = [
    memo_variant(40, state=4), memo_variant(41, state=True), memo_variant(42, state=Decimal("2.0")),
    memo_variant(43, order_id=99),  # an unknown order: waiting
    memo_variant(45, order_id=2),  # order 2 has an excluded line
    memo_variant(46, order_currency_code="EUR"), memo_variant(47, base_currency_code="EUR"),
    memo_variant(48, subtotal=Decimal("-1.00")), memo_variant(49, items=[{"order_item_id": 5, "product_type": "GiftCard",
                                                                         "row_total": Decimal("10.00")}]),
    memo_variant(50, updated_at=0), memo_variant(51, entity_id="\t51"), memo_variant(52, updated_at="2024-02-30 10:00:00"),
    memo_variant(53, subtotal=Decimal("0.0049999999999999999")), memo_variant(54, subtotal="1e2"),
    memo_variant(55, base_subtotal=Decimal("-5.00")), memo_variant(56, entity_id=None), memo_variant(57, order_id=True),
    memo_variant(58, state=" 2"), memo_variant(59, updated_at=" "),
]


def test_credit_memos_of_known_orders_map_in_sql_as_in_python():
    """The set-based memo mapping (lib/sql/magento_creditmemos.sql) gives exactly the refund rows,
    quarantine and outcomes of magento.map_creditmemo, and leaves to Python every memo it cannot
    map exactly: other currencies, odd shapes, orders with excluded lines, unknown orders."""
    orders = [dumps(variant(1)), dumps(variant(2, items=[GIFT_LINE, {"item_id": 12, "product_type": "simple"}]))]
    memos = [dumps(m) for m in PLAIN_MEMOS + OTHER_MEMOS] + ["[1, 2]"]
    tables = []
    for sql in (True, False):
        conn = duckdb.connect()
        ensure_schema(conn)
        land(conn, orders)
        land(conn, memos, "magento.creditmemos")
        if sql:
            map_magento_orders_in_sql(conn, PROGRAM)  # order 2 (an excluded line) is mapped in Python below
            normalize(conn, PROGRAM, FX, TODAY, sql_mapping=False)
            conn.execute("DELETE FROM refund_versions; DELETE FROM raw_processed WHERE source = 'magento.creditmemos'")
            conn.execute("DELETE FROM quarantine WHERE source = 'magento.creditmemos'")
            assert map_magento_memos_in_sql(conn, PROGRAM) == len(PLAIN_MEMOS)
            in_sql = {r[0] for r in conn.execute("SELECT source_id FROM refund_versions").fetchall()}
        result = normalize(conn, PROGRAM, FX, TODAY, sql_mapping=sql)
        tables.append(snapshot(conn, "refunds", "refund_versions"))
        conn.close()
    assert_same(*tables)
    assert in_sql == {str(m["entity_id"]).strip() for m in PLAIN_MEMOS}
    assert result.waiting == 1  # order 99 is not known; " 1" is order 1, as the memo's order_key says
    minor = {r[3]: (r[6], r[8], r[10]) for r in tables[0]["refunds"]}  # counts, refunded minor, base minor
    assert minor["4"] == (True, 735, 3600) and minor["2"] == (False, 3600, 3600) and minor["7"] == (True, 3600, None)
    assert minor["11"] == (True, 0, 3600) and minor["45"] == (True, 3600, 3600)
    reasons = {r[2] for r in tables[0]["quarantine"]}
    assert {"unknown_status", "malformed_record", "negative_amount"} <= reasons


def test_the_benchmark_memos_map_entirely_in_sql():
    conn = duckdb.connect()
    ensure_schema(conn)
    bench.land_history(conn, orders=300, members=60, days=30, seed=1, memo_rate=0.2, tz="UTC")
    map_magento_orders_in_sql(conn, PROGRAM)
    assert map_magento_memos_in_sql(conn, PROGRAM) == 60
    result = normalize(conn, PROGRAM, FX, TODAY)  # nothing left for Python
    assert (result.orders, result.refunds, result.quarantined, result.waiting) == (0, 0, 0, 0)
    assert conn.execute("SELECT count(*), count(*) FILTER (WHERE order_known) FROM refund_versions").fetchone() == (60, 60)
