"""Magento payloads onto canonical order facts (RULES.md §2–§4): lifecycle signals, eligible spend with
discounts, shipping discounts and excluded product types, base-currency and FX conversion, credit memos,
and a quarantine reason for every kind of bad record."""

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from magento_factory import memo, order

from loyalty_assets.lib.money import FxTable, to_minor
from loyalty_assets.lib.platforms.magento import excluded_item_ids, map_creditmemo, map_order
from loyalty_assets.lib.program import parse_program
from loyalty_assets.lib.records import RecordError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "magento"
PROGRAM = parse_program("{}")
NO_FX = FxTable({})


def real_order() -> dict:
    return json.loads((FIXTURES / "order_get_by_id.json").read_text(), parse_float=Decimal)


def test_real_order_fixture_maps_without_double_counting_children():
    v = map_order(real_order(), "default", PROGRAM, NO_FX)
    assert v.order_key == "magento:default:3" and v.order_number == "000000003"
    assert v.signal == "pending" and v.status == "pending"
    assert v.customer_key == "magento:default:3" and v.email == "jdoe@example.com"
    assert v.store_key == "magento:default:1" and v.currency == "USD"
    # subtotal 160 is the sum of top-level rows (22 + 18 + 68 + 52); bundle/configurable children are not added
    assert (v.subtotal_minor, v.shipping_minor, v.grand_total_minor, v.eligible_minor) == (16000, 500, 16500, 16000)


@pytest.mark.parametrize(
    "state, signal",
    [("new", "pending"), ("pending_payment", "pending"), ("payment_review", "pending"), ("holded", "pending"),
     ("processing", "paid"), ("complete", "fulfilled"), ("canceled", "canceled"), ("closed", "refunded")],
)
def test_state_signals(state, signal):
    assert map_order(order(1, "2024-01-02 00:00:00", state=state), "default", PROGRAM, NO_FX).signal == signal


def test_eligible_spend_deducts_discount_but_not_shipping_discount_and_excludes_giftcards():
    rec = order(1, "2024-01-02 00:00:00", subtotal="150.00", discount="30.00", items=[
        {"item_id": 1, "product_type": "simple", "row_total": Decimal("100.00"), "discount_amount": Decimal("20.00"),
         "base_row_total": Decimal("100.00"), "base_discount_amount": Decimal("20.00")},
        {"item_id": 2, "product_type": "giftcard", "row_total": Decimal("50.00"), "discount_amount": Decimal("5.00"),
         "base_row_total": Decimal("50.00"), "base_discount_amount": Decimal("5.00")},
    ])
    rec["shipping_discount_amount"] = Decimal("5.00")
    rec["base_shipping_discount_amount"] = Decimal("5.00")
    v = map_order(rec, "default", PROGRAM, NO_FX)
    # 150 - (30 - 5) - (50 - 5) = 80
    assert v.eligible_minor == 8000 and v.calc_eligible_minor == 8000
    assert excluded_item_ids(rec, PROGRAM) == {"2"}


def test_eligible_spend_floors_at_zero():
    rec = order(1, "2024-01-02 00:00:00", subtotal="10.00", discount="25.00")
    assert map_order(rec, "default", PROGRAM, NO_FX).eligible_minor == 0


def test_eur_store_with_usd_base_uses_base_amounts():
    rec = order(1, "2024-01-02 00:00:00", subtotal="92.00", currency="EUR", base_currency="USD", base_to_order_rate="0.92")
    v = map_order(rec, "default", PROGRAM, NO_FX)
    assert v.currency == "EUR" and v.eligible_minor == 9200
    assert v.calc_currency == "USD" and v.calc_eligible_minor == 10000 and v.calc_rate == 1
    assert v.fx_rate == Decimal(1) / Decimal("0.92")


def test_other_currency_uses_fx_table_of_creation_day_or_quarantines():
    rec = order(1, "2024-01-05 10:00:00", subtotal="100.00", currency="GBP", base_currency="GBP")
    fx = FxTable({"GBP": [(dt.date(2024, 1, 3), Decimal("1.27")),
                          (dt.date(2024, 1, 9), Decimal("1.30"))]})
    v = map_order(rec, "default", PROGRAM, fx)
    assert v.calc_currency == "GBP" and v.calc_rate == Decimal("1.27") and v.fx_rate == Decimal("1.27")
    with pytest.raises(RecordError) as err:
        map_order(rec, "default", PROGRAM, NO_FX)
    assert err.value.reason == "no_fx_rate"


def test_minor_units_round_half_up_per_currency():
    assert to_minor(Decimal("1.005"), "USD") == 101
    assert to_minor(Decimal("1234.5"), "JPY") == 1235
    assert to_minor(Decimal("1.0005"), "KWD") == 1001


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda r: r.update(subtotal="abc"), "bad_amount"),
        (lambda r: r.update(subtotal=1.5), "bad_amount"),
        (lambda r: r.update(subtotal=Decimal("-5")), "negative_amount"),
        (lambda r: r.update(subtotal=Decimal("1e30")), "bad_amount"),  # beyond Decimal's precision: not malformed_record
        (lambda r: r.update(subtotal="99999999999999999.99"), "bad_amount"),  # beyond the warehouse's BIGINT
        (lambda r: r.update(state="closed_exchange_success"), "unknown_status"),
        (lambda r: (r.pop("customer_email"), r.update(billing_address={})), "missing_email"),
        (lambda r: r.update(order_currency_code="XXX"), "unknown_currency"),
        (lambda r: r.update(updated_at="yesterday"), "malformed_record"),
        (lambda r: r.pop("entity_id"), "malformed_record"),
        # an id that is no text or whole number: its str() would be a key of no real order or customer
        (lambda r: r.update(entity_id={"id": 1}), "malformed_record"),
        (lambda r: r.update(entity_id=Decimal("1.0")), "malformed_record"),
        (lambda r: r.update(customer_id=[7]), "malformed_record"),
        (lambda r: r.update(customer_id=True), "malformed_record"),
    ],
)
def test_bad_records_name_their_reason(mutate, reason):
    rec = copy.deepcopy(order(1, "2024-01-02 00:00:00"))
    mutate(rec)
    with pytest.raises(RecordError) as err:
        map_order(rec, "default", PROGRAM, NO_FX)
    assert err.value.reason == reason and err.value.detail


def test_guest_order_has_no_customer_key_and_uses_billing_email():
    rec = order(7, "2024-01-02 00:00:00", email=None)
    rec["billing_address"] = {"email": "  Guest@Example.COM "}
    v = map_order(rec, "default", PROGRAM, NO_FX)
    assert v.customer_key is None and v.email == "guest@example.com"


def test_credit_memo_refunded_eligible_and_states():
    m = memo(5, 1, "2024-01-03 00:00:00", subtotal="60.00", discount="10.00")
    v = map_creditmemo(m, "default", PROGRAM, set())
    assert v.refund_key == "magento:default:creditmemo:5" and v.order_key == "magento:default:1"
    assert v.counts and v.refunded_eligible_minor == 5000 and v.refunded_eligible_base_minor == 5000
    assert not map_creditmemo({**m, "state": 1}, "default", PROGRAM, set()).counts
    assert not map_creditmemo({**m, "state": 3}, "default", PROGRAM, set()).counts


def test_credit_memo_leaves_out_excluded_lines_matched_by_order_item():
    m = memo(5, 1, "2024-01-03 00:00:00", subtotal="80.00")
    m["items"] = [{"order_item_id": 2, "row_total": Decimal("50.00"), "discount_amount": Decimal("0"),
                   "base_row_total": Decimal("50.00"), "base_discount_amount": Decimal("0")}]
    assert map_creditmemo(m, "default", PROGRAM, {"2"}).refunded_eligible_minor == 3000
    assert map_creditmemo(m, "default", PROGRAM, set()).refunded_eligible_minor == 8000
