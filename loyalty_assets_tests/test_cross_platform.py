"""A seed directory mixing every platform (CONTRACT.md §2) gives each member exactly the balance and
tier RULES.md implies, whichever platform the orders came from and in which currency (issue 3): the
same shopper on Magento, BigCommerce, commercetools and SFCC with differently typed emails is one
member; BigCommerce refunds and commercetools refund payments lower the right orders; EUR and JPY are
converted with the FX table of the creation day."""

import datetime as dt
from decimal import Decimal

import duckdb
import simplejson
from conftest import materialize_range, sandbox_resources
from magento_factory import order

from loyalty_assets.sandbox import Sandbox

NOW = dt.datetime(2024, 3, 8, 12, tzinfo=dt.UTC)


def cents(amount: int, currency: str, digits: int = 2) -> dict:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": amount, "fractionDigits": digits}


def write(seed, rel: str, records: list) -> None:
    path = seed / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(simplejson.dumps(records, use_decimal=True))


def bc_order(oid: int, modified: str, status_id: int, subtotal: str, email: str, customer_id: int = 0) -> dict:
    return {
        "id": oid, "customer_id": customer_id, "status_id": status_id, "status": str(status_id), "channel_id": 1,
        "date_created": "Fri, 01 Mar 2024 10:00:00 +0000", "date_modified": modified,
        "subtotal_ex_tax": subtotal, "subtotal_inc_tax": subtotal, "total_ex_tax": subtotal, "total_inc_tax": subtotal,
        "total_tax": "0.0000", "shipping_cost_ex_tax": "0.0000", "discount_amount": "0.0000", "coupon_discount": "0.0000",
        "default_currency_code": "USD", "currency_code": "USD", "is_tax_inclusive_pricing": False,
        "billing_address": {"email": email},
        "products": [{"id": oid * 10, "order_id": oid, "type": "physical", "quantity": 2, "total_ex_tax": subtotal,
                      "price_ex_tax": str(Decimal(subtotal) / 2), "applied_discounts": []}],
    }


def test_one_shopper_on_four_platforms_in_three_currencies(tmp_path, isolated_env, monkeypatch):
    seed = tmp_path / "seed"
    # Magento: 100.00 USD paid
    write(seed, "magento/orders/o.json", [order(1, "2024-03-01 10:00:00", subtotal="100.00", email="Kim@Example.com")])
    # BigCommerce: 80.00 USD shipped, then one of its two items refunded (computed from the order line)
    write(seed, "bigcommerce/store1/orders/o.json", [
        bc_order(7, "Fri, 01 Mar 2024 11:00:00 +0000", 11, "80.0000", " kim@example.com"),
        bc_order(7, "Sat, 02 Mar 2024 09:00:00 +0000", 2, "80.0000", " kim@example.com")])
    write(seed, "bigcommerce/store1/refunds/r.json", [
        {"id": 3, "order_id": 7, "created": "2024-03-03T08:00:00+00:00", "total_amount": 40,
         "items": [{"item_type": "PRODUCT", "item_id": 70, "quantity": 1, "requested_amount": None}]}])
    # commercetools: 50.00 EUR net (60.00 gross) paid, 12.00 gross refunded -> 10.00 EUR eligible back
    ct_order = {
        "id": "ct-1", "version": 1, "createdAt": "2024-03-01T12:00:00.000Z", "lastModifiedAt": "2024-03-01T12:00:00.000Z",
        "customerEmail": "KIM@example.com ", "orderState": "Confirmed", "paymentState": "Paid",
        "totalPrice": cents(6000, "EUR"), "taxedPrice": {"totalNet": cents(5000, "EUR"), "totalGross": cents(6000, "EUR")},
        "lineItems": [], "paymentInfo": {"payments": [{"typeId": "payment", "id": "pay-1"}]},
    }
    write(seed, "commercetools/proj/orders/o.json", [ct_order])
    write(seed, "commercetools/proj/payments/p.json", [
        {"id": "pay-1", "version": 2, "createdAt": "2024-03-01T12:00:00.000Z", "lastModifiedAt": "2024-03-04T10:00:00.000Z",
         "amountPlanned": cents(6000, "EUR"),
         "transactions": [{"id": "t1", "type": "Charge", "state": "Success", "amount": cents(6000, "EUR")},
                          {"id": "t2", "type": "Refund", "state": "Success", "amount": cents(1200, "EUR")}]}])
    # SFCC: 5,000 JPY paid on the organization's JPY site
    write(seed, "sfcc/org1/orders/o.json", [{
        "orderNo": "0001", "siteId": "JP", "currency": "JPY", "creationDate": "2024-03-02T00:00:00.000Z",
        "lastModified": "2024-03-02T01:00:00.000Z", "status": "new", "paymentStatus": "paid", "shippingStatus": "not_shipped",
        "customerInfo": {"email": "kim@EXAMPLE.com", "guest": True}, "productTotal": 5000, "productSubTotal": 5000,
        "taxation": "net", "orderTotal": 5000, "taxTotal": 0, "shippingTotal": 0}])
    (seed / "fx_rates.csv").write_text(
        "date,currency,rate_to_program\n2024-02-28,EUR,1.100000\n2024-03-02,EUR,2.000000\n2024-03-01,JPY,0.006700\n")

    with Sandbox(seed, now=NOW) as box:
        monkeypatch.setenv("LOYALTY_FX_FILE", str(seed / "fx_rates.csv"))
        result = materialize_range("2024-03-01", "2024-03-05", sandbox_resources(box, tmp_path / "w.duckdb", monkeypatch))
        assert result.success
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    members = conn.execute("SELECT member_id, email, points_spendable, vip_tier, tier_metric FROM member_status").fetchall()
    facts = dict(conn.execute("SELECT order_key, net_eligible_program_minor FROM order_facts").fetchall())
    conn.close()
    # one member; EUR at the rate of its creation day (1.10, not the later 2.00); JPY 5000 x 0.0067
    assert facts == {"magento:default:1": 10000, "bigcommerce:store1:7": 4000, "commercetools:proj:ct-1": 4400,
                     "sfcc:org1:0001": 3350}
    assert len(members) == 1
    (_, email, spendable, tier, metric) = members[0]
    assert email == "kim@example.com"
    assert spendable == 100 + 40 + 44 + 33  # floor per order: 33.50 -> 33
    assert (tier, float(metric)) == ("Bronze", 217.5)


def test_bigcommerce_store_rate_divides_exactly_and_rounds_half_up(tmp_path, isolated_env, monkeypatch):
    """RULES.md §3 rule 3: program amount = amount ÷ store_default_to_transactional_exchange_rate, then
    rounded half-up: 45.03 EUR ÷ 1.2 = 37.525 USD -> 37.53 (a product with a rounded 1/1.2 gave 37.52)."""
    seed = tmp_path / "seed"
    orders = []
    for oid, subtotal in ((21, "45.0300"), (22, "45.0200"), (23, "90.0600")):
        o = bc_order(oid, "Fri, 01 Mar 2024 11:00:00 +0000", 11, subtotal, f"s{oid}@example.com")
        o.update(default_currency_code="EUR", currency_code="EUR", store_default_currency_code="USD",
                 store_default_to_transactional_exchange_rate="1.2000000000")
        orders.append(o)
    write(seed, "bigcommerce/store1/orders/o.json", orders)
    # half of order 23 refunded: (90.06 - 45.03) ÷ 1.2 = 37.525 -> 37.53 (net converted once, RULES.md §4)
    write(seed, "bigcommerce/store1/refunds/r.json", [
        {"id": 5, "order_id": 23, "created": "2024-03-02T08:00:00+00:00", "total_amount": 45.03,
         "items": [{"item_type": "PRODUCT", "item_id": 230, "quantity": 1, "requested_amount": None}]}])
    with Sandbox(seed, now=NOW) as box:
        result = materialize_range("2024-03-01", "2024-03-03", sandbox_resources(box, tmp_path / "w.duckdb", monkeypatch))
        assert result.success
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    facts = conn.execute("SELECT order_key, currency, eligible_minor, refunded_eligible_minor, net_eligible_program_minor, "
                         "fx_rate FROM order_facts ORDER BY order_key").fetchall()
    conn.close()
    rate = Decimal(1) / Decimal("1.2")
    assert [(k, c, e, r, n) for k, c, e, r, n, _ in facts] == [
        ("bigcommerce:store1:21", "EUR", 4503, 0, 3753), ("bigcommerce:store1:22", "EUR", 4502, 0, 3752),
        ("bigcommerce:store1:23", "EUR", 9006, 4503, 3753)]
    assert all(abs(f[5] - rate) < Decimal("1e-11") for f in facts)  # the recorded rate: USD per EUR


def test_a_commercetools_payment_reads_only_the_order_that_lists_it():
    """A day's Refund payment finds its order among the payment ids the mapped versions keep and reads
    that order's payload alone, not every commercetools order's (a history's worth of Python parsing
    on any day with a payment); a warehouse whose versions predate those ids finds it all the same."""
    import pyarrow as pa

    from loyalty_assets import bench_data
    from loyalty_assets.lib import normalize, warehouse
    from loyalty_assets.lib.money import FxTable
    from loyalty_assets.lib.program import load_program

    program = load_program()
    conn = duckdb.connect()
    warehouse.ensure_schema(conn)
    platforms = ["magento", "commercetools"]
    bench_data.land_history(conn, orders=200, members=40, days=10, seed=5, memo_rate=0.0, tz="UTC",
                            platforms=platforms)
    normalize.normalize(conn, program, FxTable.load(None), dt.date(2025, 7, 10))
    ct_orders = conn.execute(
        "SELECT count(DISTINCT order_key) FROM order_versions WHERE platform = 'commercetools'").fetchall()[0][0]
    assert ct_orders == 100
    listed = conn.execute(
        "SELECT DISTINCT payment_ids FROM order_versions WHERE platform = 'commercetools' AND order_key LIKE '%000000000042'"
    ).fetchall()
    assert listed == [("00000000-0000-4000-9000-000000000042",)]  # as the payload lists it
    assert conn.execute("SELECT count(*) FROM order_versions WHERE platform = 'magento' AND payment_ids IS NOT NULL"
                        ).fetchall()[0][0] == 0
    conn.execute("UPDATE refresh_state SET refreshed_at = TIMESTAMPTZ '2025-07-11 00:00:00+00' WHERE name = 'normalize'")
    refund = pa.table({"memo_id": [77], "order_id": [42], "refund_c": [500],
                       "updated_s": [int(dt.datetime(2025, 7, 12, tzinfo=dt.UTC).timestamp())]})
    with warehouse.registered(conn, "_refund", refund):  # a day's Refund on order 42's payment, as the bench lands it
        conn.execute(bench_data.COMMERCETOOLS_PAYMENT_SQL.format(frame="_refund"), {"tz": "UTC"}).fetchall()
    key = "commercetools:bench-project:00000000-0000-4000-8000-000000000042"
    since = dt.datetime(2025, 7, 10, tzinfo=dt.UTC)
    payment = "00000000-0000-4000-9000-000000000042"
    for case in ("kept", "filled", "unfillable"):
        if case == "filled":  # versions mapped before payment_ids existed: filled from their payloads, once
            conn.execute("UPDATE order_versions SET payment_ids = NULL WHERE platform = 'commercetools'")
        if case == "unfillable":  # a version whose raw row is not found: every order's payload is read, as before
            conn.execute("""UPDATE order_versions SET payment_ids = NULL, payload_hash = 'gone'
                            WHERE order_key = 'commercetools:bench-project:00000000-0000-4000-8000-000000000044'""")
        orders = normalize._Orders(conn, since)
        assert orders.commercetools_order_of_payment("bench-project", payment) == key
        assert orders.commercetools_order_of_payment("other-project", payment) is None
        read = orders.latest("commercetools.orders", "commercetools.payments")
        if case == "unfillable":
            assert len(read) == ct_orders
        else:
            assert list(read) == [key]
        assert orders.get("commercetools.orders", key, "commercetools.payments")["id"] == key.split(":")[2]
        if case == "filled":
            assert conn.execute("SELECT DISTINCT payment_ids FROM order_versions WHERE order_key = ?", [key]
                                ).fetchall() == [(payment,)]
            assert conn.execute("SELECT count(*) FROM order_versions WHERE platform = 'commercetools' AND "
                                "payment_ids IS NULL").fetchall()[0][0] == 0
    # the lookup reads the ids the versions keep, not the payloads: with none listed, the payment waits
    conn.execute("UPDATE order_versions SET payment_ids = '' WHERE platform = 'commercetools'")
    assert normalize.normalize(conn, program, FxTable.load(None), dt.date(2025, 7, 12)).waiting == 1
