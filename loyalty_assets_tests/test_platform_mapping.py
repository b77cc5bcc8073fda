"""BigCommerce, commercetools and SFCC payloads onto canonical order facts and refunds (RULES.md §2–§4),
starting from the vendors' real example payloads."""

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_assets.lib.money import FxTable
from loyalty_assets.lib.platforms import bigcommerce, commercetools, sfcc
from loyalty_assets.lib.program import parse_program
from loyalty_assets.lib.records import RecordError

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
PROGRAM = parse_program("{}")
EUR_FX = FxTable({"EUR": [(dt.date(2010, 1, 1), Decimal("1.10"))], "JPY": [(dt.date(2010, 1, 1), Decimal("0.0067"))]})


def real(path: str):
    return json.loads((REAL / path).read_text(), parse_float=Decimal)


# ---------------------------------------------------------------- BigCommerce


def bc_order(**changes) -> dict:
    order = copy.deepcopy(real("bigcommerce/orders_v2_list.json")[0])
    order.update(changes)
    return order


def test_bigcommerce_real_order():
    v = bigcommerce.map_order(bc_order(), "abc123", PROGRAM, FxTable({}))
    assert v.order_key == "bigcommerce:abc123:100" and v.store_key == "bigcommerce:abc123:1"
    assert v.signal == "paid" and v.customer_key == "bigcommerce:abc123:20" and v.email == "janedoe@example.com"
    assert (v.currency, v.subtotal_minor, v.eligible_minor, v.grand_total_minor) == ("USD", 33632, 33632, 36195)
    assert v.created_at == dt.datetime(2018, 1, 10, 21, 5, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "status_id, signal",
    [(0, "pending"), (1, "pending"), (7, "pending"), (12, "pending"), (3, "paid"), (8, "paid"), (9, "paid"),
     (11, "paid"), (13, "paid"), (14, "paid"), (2, "fulfilled"), (10, "fulfilled"), (5, "canceled"),
     (6, "canceled"), (4, "refunded")],
)
def test_bigcommerce_status_table(status_id, signal):
    assert bigcommerce.map_order(bc_order(status_id=status_id), "h", PROGRAM, FxTable({})).signal == signal


def test_bigcommerce_guest_discounts_excluded_lines_and_unknown_status():
    order = bc_order(customer_id=0, discount_amount="10.0000", coupon_discount="5.5000")
    order["products"] = [
        {"id": 1, "type": "physical", "quantity": 1, "total_ex_tax": "300.0000", "applied_discounts": []},
        {"id": 2, "type": "giftcertificate", "quantity": 1, "total_ex_tax": "25.0000",
         "applied_discounts": [{"amount": "5.0000"}]},
    ]
    v = bigcommerce.map_order(order, "h", PROGRAM, FxTable({}))
    assert v.customer_key is None and v.email == "janedoe@example.com"
    assert v.eligible_minor == 33632 - 1000 - 550 - 2000  # giftcertificate line after its discount
    with pytest.raises(RecordError) as err:
        bigcommerce.map_order(bc_order(status_id=99), "h", PROGRAM, FxTable({}))
    assert err.value.reason == "unknown_status"
    with pytest.raises(RecordError) as err:
        bigcommerce.map_order(bc_order(subtotal_ex_tax="12,00"), "h", PROGRAM, FxTable({}))
    assert err.value.reason == "bad_amount"


def test_bigcommerce_multicurrency_uses_store_default_rate():
    order = bc_order(default_currency_code="EUR", currency_code="EUR", store_default_currency_code="USD",
                     store_default_to_transactional_exchange_rate="0.9200000000")
    v = bigcommerce.map_order(order, "h", PROGRAM, FxTable({}))
    assert v.currency == "EUR" and v.fx_rate == Decimal(1) / Decimal("0.92")
    assert (v.calc_rate, v.calc_divisor) == (Decimal(1), Decimal("0.92"))  # amounts are divided by the rate


def test_bigcommerce_refund_from_real_payload():
    refund = real("bigcommerce/refund_v3_get.json")["data"]
    order = bc_order(id=180)
    order["products"] = [{"id": 87, "type": "physical", "quantity": 2, "total_ex_tax": "100.0000",
                          "applied_discounts": [{"amount": "10.0000"}]}]
    (r,) = bigcommerce.map_refund(refund, "h", PROGRAM, order)
    assert r.refund_key == "bigcommerce:h:refund:12" and r.order_key == "bigcommerce:h:180" and r.counts
    assert r.refunded_eligible_minor == 4500  # 1 x (100 - 10) / 2
    refund["items"][0]["requested_amount"] = Decimal("33.333")
    order["is_tax_inclusive_pricing"] = True
    order["subtotal_ex_tax"], order["subtotal_inc_tax"] = "100.0000", "120.0000"
    (r,) = bigcommerce.map_refund(refund, "h", PROGRAM, order)
    assert r.refunded_eligible_minor == 2778  # 33.333 x 100/120 = 27.7775 -> 27.78


def test_a_tax_inclusive_bigcommerce_refund_on_an_exact_half_cent_rounds_up():
    """11.75 x 22.12 / 26.32 = 9.875 exactly: half-up gives 9.88 (the ratio taken first gave 9.87)."""
    refund = real("bigcommerce/refund_v3_get.json")["data"]
    refund["items"][0]["requested_amount"] = Decimal("11.75")
    order = bc_order(id=180, is_tax_inclusive_pricing=True, subtotal_ex_tax="22.1200", subtotal_inc_tax="26.3200")
    order["products"] = [{"id": 87, "type": "physical", "quantity": 1, "total_ex_tax": "22.1200"}]
    (r,) = bigcommerce.map_refund(refund, "h", PROGRAM, order)
    assert r.refunded_eligible_minor == 988


def test_a_bigcommerce_refund_priced_from_its_orders_lines_waits_for_the_order():
    """RULES.md §4: a refund whose order is not known yet waits ingest.refund_wait_days. One whose item
    has no requested_amount (the vendor's own example) is priced from the order's line: it waited for
    nothing and was quarantined at once, never counted when its order turned up."""
    import duckdb

    from loyalty_assets.lib import raw
    from loyalty_assets.lib.normalize import normalize
    from loyalty_assets.lib.platforms.common import iso_time
    from loyalty_assets.lib.warehouse import ensure_schema

    conn = duckdb.connect()
    ensure_schema(conn)
    refund = real("bigcommerce/refund_v3_get.json")["data"]
    assert refund["items"][0]["requested_amount"] is None
    order = bc_order(id=180)
    order["products"] = [{"id": 87, "type": "physical", "quantity": 2, "total_ex_tax": "100.0000",
                          "applied_discounts": [{"amount": "10.0000"}]}]

    def land(source, record, modified):
        raw.insert_versions(conn, source, "h", [record], lambda r: r["id"], lambda r: iso_time(modified, "modified"),
                            PROGRAM.tz)

    land("bigcommerce.refunds", refund, refund["created"])
    day = iso_time(refund["created"], "created").date()
    first = normalize(conn, PROGRAM, FxTable({}), day)
    assert (first.refunds, first.waiting, first.quarantined) == (0, 1, 0)
    land("bigcommerce.orders", order, (day + dt.timedelta(days=1)).isoformat() + "T09:00:00+00:00")
    second = normalize(conn, PROGRAM, FxTable({}), day + dt.timedelta(days=1))
    assert (second.orders, second.refunds, second.waiting) == (1, 1, 0)
    assert conn.execute("SELECT refund_key, refunded_eligible_minor, order_known FROM refund_versions").fetchall() == [
        ("bigcommerce:h:refund:12", 4500, True)]



def test_a_refund_is_priced_from_its_orders_latest_version_not_quarantined():
    """RULES.md §4 with §3: a malformed later version of the order is quarantined and the order keeps
    its previous state; a refund after it is priced from that state (24 x 100/120 = 20.00). It was
    priced from the quarantined payload's bad field and quarantined for good."""
    import duckdb

    from loyalty_assets.lib import raw
    from loyalty_assets.lib.normalize import normalize
    from loyalty_assets.lib.platforms.common import iso_time
    from loyalty_assets.lib.warehouse import ensure_schema

    conn = duckdb.connect()
    ensure_schema(conn)
    good = bc_order(id=180, is_tax_inclusive_pricing=True, subtotal_ex_tax="100.0000", subtotal_inc_tax="120.0000")
    good["products"] = [{"id": 87, "type": "physical", "quantity": 1, "total_ex_tax": "100.0000"}]
    bad = {**copy.deepcopy(good), "subtotal_ex_tax": "abc"}
    refund = real("bigcommerce/refund_v3_get.json")["data"]
    refund.update(order_id=180, created="2024-03-03T08:00:00+00:00")
    refund["items"] = [{"item_type": "PRODUCT", "item_id": 87, "quantity": 1, "requested_amount": "24.00"}]

    def land(source, record, modified):
        raw.insert_versions(conn, source, "h", [record], lambda r: r["id"], lambda r: iso_time(modified, "modified"),
                            PROGRAM.tz)

    land("bigcommerce.orders", good, "2024-03-01T09:00:00+00:00")
    land("bigcommerce.orders", bad, "2024-03-02T09:00:00+00:00")
    land("bigcommerce.refunds", refund, refund["created"])
    result = normalize(conn, PROGRAM, FxTable({}), dt.date(2024, 3, 3))
    assert (result.orders, result.refunds, result.quarantined) == (1, 1, 1)
    assert conn.execute("SELECT source, reason FROM quarantine").fetchall() == [("bigcommerce.orders", "bad_amount")]
    assert conn.execute("SELECT refund_key, refunded_eligible_minor FROM refund_versions").fetchall() == [
        ("bigcommerce:h:refund:12", 2000)]

# ---------------------------------------------------------------- commercetools


def ct_order(**changes) -> dict:
    order = copy.deepcopy(real("commercetools/orders_query.json")["results"][0])
    order.update(changes)
    return order


def cents(amount: int, currency: str = "EUR", digits: int = 2) -> dict:
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": amount, "fractionDigits": digits}


def test_commercetools_real_order_converted_with_fx():
    v = commercetools.map_order(ct_order(), "proj", PROGRAM, EUR_FX)
    assert v.order_key == "commercetools:proj:92f5a867-bf19-47ab-982c-6720a03a3921"
    assert v.customer_key == "commercetools:proj:7297c742-d8b0-484b-aadc-1d0ba6769dc9"
    assert (v.signal, v.currency, v.eligible_minor, v.calc_rate) == ("pending", "EUR", 1000, Decimal("1.10"))
    assert v.store_key == "commercetools:proj:default"
    with pytest.raises(RecordError) as err:
        commercetools.map_order(ct_order(), "proj", PROGRAM, FxTable({}))
    assert err.value.reason == "no_fx_rate"


@pytest.mark.parametrize(
    "states, signal",
    [({"orderState": "Cancelled", "paymentState": "Paid"}, "canceled"),
     ({"orderState": "Complete"}, "fulfilled"), ({"shipmentState": "Delivered", "paymentState": "Paid"}, "fulfilled"),
     ({"paymentState": "Paid"}, "paid"), ({"paymentState": "BalanceDue"}, "pending")],
)
def test_commercetools_lifecycle_precedence(states, signal):
    assert commercetools.map_order(ct_order(**states), "p", PROGRAM, EUR_FX).signal == signal


def test_commercetools_taxed_net_minus_shipping_and_payment_refunds():
    order = ct_order(
        taxedPrice={"totalNet": cents(12000), "totalGross": cents(14400)},
        taxedShippingPrice={"totalNet": cents(1000), "totalGross": cents(1200)},
        shippingInfo={"price": cents(1000)}, store={"typeId": "store", "key": "eu-shop"},
        paymentInfo={"payments": [{"typeId": "payment", "id": "pay-1"}]}, customerEmail="X@Y.com",
    )
    v = commercetools.map_order(order, "p", PROGRAM, EUR_FX)
    assert (v.eligible_minor, v.store_key, v.email) == (11000, "commercetools:p:eu-shop", "x@y.com")
    payment = copy.deepcopy(real("commercetools/payments_query.json")["results"][0])
    payment["transactions"] += [
        {"id": "t-ok", "type": "Refund", "state": "Success", "amount": cents(2400)},
        {"id": "t-pending", "type": "Refund", "state": "Pending", "amount": cents(1200)},
    ]
    rows = commercetools.map_payment(payment, "p", PROGRAM, order, order["id"])
    assert [(r.native_id, r.counts, r.refunded_eligible_minor) for r in rows] == [
        ("t-ok", True, 1833), ("t-pending", False, 917)]  # 2400 x 11000/14400 = 1833.33
    assert rows[0].order_key == f"commercetools:p:{order['id']}"


def test_a_commercetools_refund_on_an_exact_half_cent_rounds_up():
    """12.60 x 118.26 / 151.20 = 9.855 exactly: half-up gives 9.86 (the share taken first gave 9.85)."""
    order = ct_order(taxedPrice={"totalNet": cents(12600), "totalGross": cents(15120)},
                     taxedShippingPrice={"totalNet": cents(774), "totalGross": cents(929)},
                     shippingInfo={"price": cents(929)})
    assert commercetools.map_order(order, "p", PROGRAM, EUR_FX).eligible_minor == 11826
    payment = copy.deepcopy(real("commercetools/payments_query.json")["results"][0])
    payment["transactions"].append({"id": "t-half", "type": "Refund", "state": "Success", "amount": cents(1260)})
    (row,) = commercetools.map_payment(payment, "p", PROGRAM, order, order["id"])
    assert (row.native_id, row.refunded_eligible_minor) == ("t-half", 986)


def test_an_untaxed_commercetools_orders_excluded_line_leaves_at_its_total_price():
    """Without the order's taxedPrice, eligible spend is totalPrice - shipping (gross), so an excluded
    line leaves at its totalPrice, not its net: 21.00 - 11.00 = 10.00 (its net left its tax in: 11.00)."""
    order = ct_order()
    assert "taxedPrice" not in order
    gift = copy.deepcopy(order["lineItems"][0])
    gift.update(id="gift-line", productType={"typeId": "product-type", "id": "gc", "key": "giftcard"},
                totalPrice=cents(1100), taxedPrice={"totalNet": cents(1000), "totalGross": cents(1100)})
    order["lineItems"].append(gift)
    order["totalPrice"] = cents(2100)
    assert commercetools.map_order(order, "p", PROGRAM, EUR_FX).eligible_minor == 1000


def test_commercetools_net_shipping_falls_back_to_the_shipping_infos_net():
    """RULES.md §3: net shipping is taxedShippingPrice.totalNet, else shippingInfo.taxedPrice.totalNet;
    a taxedShippingPrice without a net (gross only) does not hide the second."""
    order = ct_order(
        taxedPrice={"totalNet": cents(12000), "totalGross": cents(14400)},
        taxedShippingPrice={"totalGross": cents(1200)},
        shippingInfo={"price": cents(1200), "taxedPrice": {"totalNet": cents(1000), "totalGross": cents(1200)}},
    )
    assert commercetools.map_order(order, "p", PROGRAM, EUR_FX).eligible_minor == 11000


def test_commercetools_jpy_has_no_minor_digits():
    order = ct_order(totalPrice=cents(5000, "JPY", 0))
    order["lineItems"] = []
    v = commercetools.map_order(order, "p", PROGRAM, EUR_FX)
    assert (v.currency, v.eligible_minor, v.calc_rate) == ("JPY", 5000, Decimal("0.0067"))


# ---------------------------------------------------------------- SFCC


def sfcc_order(**changes) -> dict:
    order = copy.deepcopy(real("sfcc/orders_get.json")["data"][0])
    order.update(changes)
    return order


def test_sfcc_real_order():
    v = sfcc.map_order(sfcc_order(), "f_ecom_zzzz_001", PROGRAM, FxTable({}))
    assert v.order_key == "sfcc:f_ecom_zzzz_001:00000410" and v.store_key == "sfcc:f_ecom_zzzz_001:ShoppingSite"
    assert (v.signal, v.customer_key, v.email, v.eligible_minor, v.grand_total_minor) == (
        "pending", None, "no-reply@salesforce.com", 9900, 11024)


def test_sfcc_gross_taxation_adjustments_and_states():
    order = sfcc_order(taxation="gross", productTotal=Decimal("103.95"), adjustedMerchandizeTotalTax=Decimal("4.95"),
                       orderPriceAdjustments=[{"price": Decimal("-10.00")}], paymentStatus="paid",
                       customerInfo={"email": "a@b.co", "guest": False, "customerNo": "0001"})
    v = sfcc.map_order(order, "org", PROGRAM, FxTable({}))
    assert (v.eligible_minor, v.signal, v.customer_key) == (8900, "paid", "sfcc:org:0001")
    assert sfcc.map_order(sfcc_order(shippingStatus="shipped"), "o", PROGRAM, FxTable({})).signal == "fulfilled"
    assert sfcc.map_order(sfcc_order(status="failed"), "o", PROGRAM, FxTable({})).signal == "canceled"


@pytest.mark.parametrize("platform, payload", [
    ("bigcommerce", lambda: bc_order(id={"id": 100})),
    ("bigcommerce", lambda: bc_order(customer_id=["20"])),
    ("commercetools", lambda: ct_order(id=["a"])),
    ("commercetools", lambda: ct_order(customerId={"id": "c1"})),
    ("sfcc", lambda: sfcc_order(orderNo={"no": 1})),
    ("sfcc", lambda: sfcc_order(customerInfo={"email": "a@b.co", "customerNo": {"no": "0001"}})),
])
def test_an_id_that_is_no_text_or_whole_number_quarantines_the_version(platform, payload):
    """str() of an object is no order's or customer's key: the version is malformed, not mapped."""
    module = {"bigcommerce": bigcommerce, "commercetools": commercetools, "sfcc": sfcc}[platform]
    with pytest.raises(RecordError) as err:
        module.map_order(payload(), "t", PROGRAM, EUR_FX)
    assert err.value.reason == "malformed_record" and "not text or a whole number" in err.value.detail
