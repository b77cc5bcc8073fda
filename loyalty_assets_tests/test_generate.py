"""The demo data generator honours CONTRACT.md §1 (`loyalty generate`) and §2 (seed layout).

`loyalty_assets.sandbox.generate.generate` must write, deterministically for a seed, native Magento 2
REST records (orders, credit memos, customers; money as JSON numbers that parse as Decimal) and an
`fx_rates.csv`, covering every scenario RULES.md §2-§4 and §8 interpret: guests and registered
shoppers, guests who register, changed and messy emails, EUR orders on a USD base with consistent
`base_*` twins, non-USD bases that need FX, configurable/bundle/giftcard lines, lifecycles as versions,
partial/full/late/open/canceled credit memos, and a few malformed records.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from loyalty_assets.sandbox.generate import default_start, generate

START = date(2024, 3, 1)
DAYS = 60
FILES = (
    "magento/orders/orders.json",
    "magento/creditmemos/creditmemos.json",
    "magento/customers/customers.json",
    "fx_rates.csv",
)
SUMMARY_KEYS = {
    "start",
    "end",
    "shoppers",
    "customers",
    "customer_versions",
    "orders",
    "order_versions",
    "credit_memos",
    "credit_memo_versions",
    "malformed_records",
    "fx_rate_rows",
}
PLATFORM_SUMMARY_KEYS = {
    "multi_platform_shoppers",
    "bigcommerce_stores",
    "bigcommerce_orders",
    "bigcommerce_order_versions",
    "bigcommerce_refunds",
    "bigcommerce_customers",
    "bigcommerce_customer_versions",
    "bigcommerce_malformed_records",
    "commercetools_orders",
    "commercetools_order_versions",
    "commercetools_payments",
    "commercetools_payment_versions",
    "commercetools_refund_transactions",
    "commercetools_customers",
    "commercetools_malformed_records",
    "sfcc_orders",
    "sfcc_order_versions",
    "sfcc_malformed_records",
    "smile_customers",
    "smile_points_transactions",
    "smile_reward_fulfillments",
    "smile_referrals",
    "loyaltylion_customers",
    "loyaltylion_transactions",
    "loyaltylion_referrals",
    "salesforce_contacts",
    "salesforce_leads",
    "salesforce_adjustment_requests",
    "total_orders",
    "total_malformed_records",
}


def _load(root: Path, name: str) -> list[dict]:
    return json.loads((root / "magento" / name / f"{name}.json").read_text(), parse_float=Decimal)


def _dec(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def _norm(email: str) -> str:
    return email.strip().lower()


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("seed")
    summary = generate(out, customers=100, days=DAYS, start=START, seed=7)
    return out, summary


@pytest.fixture(scope="module")
def orders(seed_dir) -> list[dict]:
    return _load(seed_dir[0], "orders")


@pytest.fixture(scope="module")
def memos(seed_dir) -> list[dict]:
    return _load(seed_dir[0], "creditmemos")


@pytest.fixture(scope="module")
def customers(seed_dir) -> list[dict]:
    return _load(seed_dir[0], "customers")


@pytest.fixture(scope="module")
def versions(orders) -> dict[int, list[dict]]:
    by_id: dict[int, list[dict]] = defaultdict(list)
    for record in orders:
        by_id[record["entity_id"]].append(record)
    return by_id


def _malformed(order: dict) -> bool:
    subtotal = order["subtotal"]
    return (
        not isinstance(subtotal, int | Decimal)
        or subtotal < 0
        or "customer_email" not in order
        or order["state"] == "closed_exchange_success"
    )


def _last(versions: list[dict]) -> dict:
    return versions[-1]


# -- determinism and layout ------------------------------------------------------------------------
def test_same_seed_writes_byte_identical_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert generate(a, customers=40, days=20, start=START, seed=3) == generate(
        b, customers=40, days=20, start=START, seed=3
    )
    generate(c, customers=40, days=20, start=START, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) > len(FILES)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / FILES[0]).read_bytes() != (c / FILES[0]).read_bytes()



def test_generating_into_a_used_directory_leaves_only_this_seeds_data(tmp_path):
    """CONTRACT.md §1 (deterministic for a seed): a store left by an earlier run into the same
    directory was kept and served beside the new data; files of the user's own stay."""
    used, fresh = tmp_path / "used", tmp_path / "fresh"
    generate(used, customers=30, days=5, start=START, seed=9)
    stray = used / "bigcommerce" / "zzstale" / "orders" / "orders.json"
    stray.parent.mkdir(parents=True)
    stray.write_text("[]")
    (used / "notes.txt").write_text("mine")
    generate(used, customers=3, days=2, start=START, seed=4)
    generate(fresh, customers=3, days=2, start=START, seed=4)
    files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert sorted(p.relative_to(used) for p in used.rglob("*") if p.is_file()) == sorted([*files, Path("notes.txt")])
    for name in files:
        assert (used / name).read_bytes() == (fresh / name).read_bytes(), name

def test_layout_and_summary(seed_dir, orders, memos, customers):
    root, summary = seed_dir
    for name in FILES:
        assert (root / name).is_file(), name
    assert set(summary) == SUMMARY_KEYS | PLATFORM_SUMMARY_KEYS
    assert (summary["start"], summary["end"]) == ("2024-03-01", "2024-04-29")
    assert summary["shoppers"] == 100
    assert summary["order_versions"] == len(orders)
    assert summary["orders"] == len({o["entity_id"] for o in orders})
    assert summary["credit_memo_versions"] == len(memos)
    assert summary["credit_memos"] == len({m["entity_id"] for m in memos})
    assert summary["customer_versions"] == len(customers)
    assert summary["customers"] == len({c["id"] for c in customers})
    assert 0 < summary["malformed_records"] <= 0.03 * summary["order_versions"]


def test_fx_table_has_a_daily_rate_per_currency_except_chf(seed_dir):
    rows = list(csv.DictReader((seed_dir[0] / "fx_rates.csv").open()))
    assert {r["currency"] for r in rows} == {"EUR", "GBP", "CAD", "JPY"}
    assert len(rows) == 4 * DAYS
    assert {r["date"] for r in rows} == {(START + timedelta(days=i)).isoformat() for i in range(DAYS)}
    for row in rows:
        rate = Decimal(row["rate_to_program"])
        assert rate > 0 and -rate.as_tuple().exponent == 6
    eur = [Decimal(r["rate_to_program"]) for r in rows if r["currency"] == "EUR"]
    assert all(Decimal("1.0") < r < Decimal("1.2") for r in eur)


def test_fx_table_follows_the_program_currency(tmp_path):
    generate(tmp_path, customers=5, days=3, start=START, program_currency="EUR")
    rows = list(csv.DictReader((tmp_path / "fx_rates.csv").open()))
    assert {r["currency"] for r in rows} == {"USD", "GBP", "CAD", "JPY"}


def test_default_range_is_the_days_ending_yesterday(tmp_path):
    assert default_start(60, today=date(2024, 5, 1)) == date(2024, 3, 2)
    summary = generate(tmp_path, customers=5, days=3)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert summary["end"] == yesterday.isoformat()
    assert summary["start"] == (yesterday - timedelta(days=2)).isoformat()


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_every_record_parses_with_decimal_money_and_no_floats(orders, memos, customers):
    for record in [*orders, *memos, *customers]:
        for value in _walk(record):
            assert not isinstance(value, float)
            if isinstance(value, Decimal):
                assert -value.as_tuple().exponent <= 4
    for order in orders:
        assert isinstance(order["entity_id"], int) and isinstance(order["increment_id"], str)
        assert order["increment_id"].isdigit() and len(order["increment_id"]) == 9


def test_timestamps_inside_range_and_versions_move_forward(orders, memos, customers, versions):
    first, last = datetime(2024, 3, 1), datetime(2024, 4, 29, 23, 59, 59)
    for record in [*orders, *memos, *customers]:
        assert first <= _parse(record["updated_at"]) <= last
    assert sum(1 for v in versions.values() if len(v) >= 3) > len(versions) / 3
    for entity_versions in versions.values():
        stamps = [_parse(v["updated_at"]) for v in entity_versions]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        created = {v["created_at"] for v in entity_versions}
        assert len(created) == 1
        assert _parse(created.pop()) <= stamps[0]


# -- identity --------------------------------------------------------------------------------------
def test_guest_orders_have_no_customer_id_and_carry_the_email(orders):
    guests = [o for o in orders if o["customer_is_guest"] == 1]
    assert guests
    for order in guests:
        assert "customer_id" not in order
        assert order["customer_group_id"] == 0
        if not _malformed(order):
            assert order["customer_email"] and order["billing_address"]["email"]
    for order in orders:
        if order["customer_is_guest"] == 0:
            assert isinstance(order["customer_id"], int)


def test_a_guest_registers_later_with_the_same_email(orders, customers):
    accounts = {_norm(c["email"]): c for c in customers}
    found = False
    for order in orders:
        if order["customer_is_guest"] != 1 or "customer_email" not in order:
            continue
        email = _norm(order["customer_email"])
        account = accounts.get(email)
        if account and _parse(account["created_at"]) > _parse(order["created_at"]):
            later = [
                o
                for o in orders
                if o.get("customer_id") == account["id"] and _norm(o["customer_email"]) == email
            ]
            found |= any(_parse(o["created_at"]) > _parse(account["created_at"]) for o in later)
    assert found


def test_a_customer_changes_email_and_later_orders_use_the_new_one(orders, customers):
    by_id = defaultdict(list)
    for record in customers:
        by_id[record["id"]].append(record)
    changed = [v for v in by_id.values() if len({r["email"] for r in v}) == 2]
    assert changed
    old, new = changed[0]
    assert _parse(old["updated_at"]) < _parse(new["updated_at"])
    emails = {
        (o["customer_email"], _parse(o["created_at"]) >= _parse(new["updated_at"]))
        for o in orders
        if o.get("customer_id") == old["id"]
    }
    assert (old["email"], False) in emails and (new["email"], True) in emails


def test_emails_vary_in_case_and_whitespace_for_one_person(orders):
    spellings = defaultdict(set)
    for order in orders:
        for email in (order.get("customer_email"), order["billing_address"].get("email")):
            if email:
                spellings[_norm(email)].add(email)
    assert any(len(s) >= 2 and any(e != e.strip() for e in s) for s in spellings.values())


def test_two_accounts_on_different_websites_share_one_email(customers):
    ids_by_email = defaultdict(set)
    for record in customers:
        ids_by_email[_norm(record["email"])].add((record["id"], record["website_id"]))
    assert any(len({w for _, w in ids}) == 2 for ids in ids_by_email.values())


def test_customer_records_have_the_native_fields(customers):
    for record in customers:
        for key in (
            "id",
            "email",
            "firstname",
            "lastname",
            "created_at",
            "updated_at",
            "website_id",
            "store_id",
            "group_id",
        ):
            assert key in record, key


# -- currencies ------------------------------------------------------------------------------------
def _money_pairs(record: dict):
    for key, value in record.items():
        if (
            key.startswith("base_")
            and key[5:] in record
            and isinstance(value, int | Decimal)
            and key not in ("base_to_order_rate", "base_to_global_rate")
        ):
            yield key[5:], _dec(record[key[5:]]), _dec(value)


def test_eur_orders_on_a_usd_base_have_consistent_base_amounts(orders, memos):
    eur_orders = [o for o in orders if o["order_currency_code"] == "EUR" and not _malformed(o)]
    eur_memos = [m for m in memos if m["order_currency_code"] == "EUR"]
    assert eur_orders and eur_memos
    for record in [*eur_orders, *eur_memos]:
        assert record["base_currency_code"] == "USD" and record["store_id"] == 3
        rate = _dec(record["base_to_order_rate"])
        assert Decimal("0.8") < rate < Decimal("1")
        records = [record, *record.get("items", [])]
        for part in records:
            for key, amount, base in _money_pairs(part):
                expected = (amount / rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                assert base == expected, (record["entity_id"], key)


def test_non_usd_bases_need_the_fx_table(orders):
    bases = {(o["order_currency_code"], o["base_currency_code"]) for o in orders}
    assert {("USD", "USD"), ("EUR", "USD"), ("GBP", "GBP"), ("JPY", "JPY"), ("CHF", "CHF")} <= bases
    assert {o["store_id"] for o in orders if o["order_currency_code"] == "USD"} == {1, 2}
    for order in orders:
        if order["order_currency_code"] == order["base_currency_code"]:
            assert order["base_to_order_rate"] == 1
            assert order["base_grand_total"] == order["grand_total"]
        if order["order_currency_code"] == "JPY" and not _malformed(order):
            assert all(isinstance(order[k], int) for k in ("subtotal", "tax_amount", "grand_total"))


# -- items and totals ------------------------------------------------------------------------------
def _items_by_type(orders):
    by_type = defaultdict(list)
    for order in orders:
        for item in order["items"]:
            by_type[item["product_type"]].append((order, item))
    return by_type


def test_configurable_bundle_virtual_and_giftcard_lines(orders):
    by_type = _items_by_type(orders)
    assert {"simple", "virtual", "configurable", "bundle", "giftcard"} <= set(by_type)
    for order, parent in by_type["configurable"]:
        children = [i for i in order["items"] if i.get("parent_item_id") == parent["item_id"]]
        assert len(children) == 1 and children[0]["price"] == 0 and children[0]["sku"] == parent["sku"]
        assert children[0]["parent_item"]["item_id"] == parent["item_id"]
    for order, parent in by_type["bundle"]:
        children = [i for i in order["items"] if i.get("parent_item_id") == parent["item_id"]]
        assert len(children) >= 2 and all(c["price"] > 0 for c in children)
        assert sum(_dec(c["row_total"]) for c in children) == _dec(parent["row_total"])
    assert all(i["is_virtual"] == 1 and i["tax_amount"] == 0 for _, i in by_type["giftcard"])


def test_totals_add_up_exactly_for_well_formed_orders(orders):
    checked = discounted = shipping_discounted = 0
    for order in orders:
        if _malformed(order):
            continue
        top = [i for i in order["items"] if "parent_item_id" not in i]
        subtotal, shipping, tax, discount = (
            _dec(order[k]) for k in ("subtotal", "shipping_amount", "tax_amount", "discount_amount")
        )
        assert _dec(order["grand_total"]) == subtotal + shipping + tax + discount
        assert subtotal == sum(_dec(i["row_total"]) for i in top)
        assert tax == sum(_dec(i["tax_amount"]) for i in top)
        assert discount <= 0
        item_discounts = sum(_dec(i["discount_amount"]) for i in order["items"])
        assert item_discounts == -discount - _dec(order["shipping_discount_amount"])
        assert all(_dec(i["discount_amount"]) >= 0 for i in order["items"])
        checked += 1
        discounted += discount < 0
        shipping_discounted += order["shipping_discount_amount"] > 0
    assert checked and discounted and shipping_discounted


# -- lifecycle and refunds -------------------------------------------------------------------------
def _chains(versions) -> set[tuple[str, ...]]:
    return {tuple(v["state"] for v in vs) for vs in versions.values()}


def test_lifecycles_appear_as_versions(versions):
    chains = _chains(versions)
    assert ("new", "processing", "complete") in chains
    assert ("new",) in chains and ("new", "processing") in chains
    assert ("pending_payment", "canceled") in chains and ("new", "canceled") in chains
    assert ("new", "holded", "new", "processing", "complete") in chains
    assert ("new", "processing", "holded", "processing", "complete") in chains
    assert ("payment_review", "processing", "complete") in chains
    assert any(c[-1] == "closed" for c in chains)
    statuses = {(v["state"], v["status"]) for vs in versions.values() for v in vs}
    assert ("new", "pending") in statuses and ("closed", "closed") in statuses


def test_an_order_is_edited_in_place(versions):
    edited = [
        vs
        for vs in versions.values()
        if len({len(v["items"]) for v in vs}) > 1 and not any(_malformed(v) for v in vs)
    ]
    assert edited
    before, after = edited[0][1], edited[0][2]
    assert after["grand_total"] > before["grand_total"]
    assert after["total_paid"] == after["grand_total"]


def test_credit_memo_states_versions_and_late_refunds(memos, versions):
    memo_versions = defaultdict(list)
    for memo in memos:
        memo_versions[memo["entity_id"]].append(memo)
    chains = {tuple(m["state"] for m in ms) for ms in memo_versions.values()}
    assert {(2,), (1, 2), (1, 3)} <= chains
    late = [
        ms[0]
        for ms in memo_versions.values()
        if ms[0]["order_id"] in versions
        and _parse(ms[0]["created_at"]) - _parse(versions[ms[0]["order_id"]][0]["created_at"])
        > timedelta(days=8)
    ]
    assert late
    for memo in memos:
        grand = sum(
            _dec(memo[k])
            for k in ("subtotal", "shipping_amount", "tax_amount", "discount_amount", "adjustment_positive")
        ) - _dec(memo["adjustment_negative"])
        assert _dec(memo["grand_total"]) == grand
        assert memo["discount_amount"] <= 0 and memo["items"]
        for key in ("order_currency_code", "base_currency_code", "base_to_order_rate", "store_id"):
            assert key in memo
    assert any(m["adjustment_negative"] > 0 and m["adjustment_positive"] > 0 for m in memos)


def test_full_refund_closes_the_order_and_partial_refund_keeps_its_state(memos, versions):
    refunded = defaultdict(Decimal)
    for memo in memos:
        if memo["state"] == 2:
            refunded[memo["order_id"]] += _dec(memo["grand_total"])
    closed = [vs for vs in versions.values() if vs[-1]["state"] == "closed"]
    partial = [
        vs
        for vs in versions.values()
        if vs[-1]["state"] in ("processing", "complete") and vs[-1].get("total_refunded", 0) > 0
    ]
    assert closed and partial
    for vs in closed:
        assert _dec(vs[-1]["total_refunded"]) == refunded[vs[-1]["entity_id"]]
        assert vs[-1]["total_refunded"] >= vs[-1]["grand_total"]
    for vs in partial:
        assert (
            0 < _dec(vs[-1]["total_refunded"]) == refunded[vs[-1]["entity_id"]] < _dec(vs[-1]["grand_total"])
        )
        assert _dec(vs[-1]["subtotal_refunded"]) > 0


def test_a_giftcard_line_is_refunded(memos, versions):
    giftcard_items = {
        i["item_id"] for vs in versions.values() for i in vs[0]["items"] if i["product_type"] == "giftcard"
    }
    assert any(
        item["order_item_id"] in giftcard_items
        for memo in memos
        for item in memo["items"]
        if memo["state"] == 2
    )


# -- malformed records -----------------------------------------------------------------------------
def test_malformed_records_are_present(orders, memos, versions):
    assert any(o["subtotal"] == "abc" for o in orders)
    assert any(isinstance(o["subtotal"], int | Decimal) and o["subtotal"] < 0 for o in orders)
    assert any(
        o["state"] == "closed_exchange_success" and o["status"] == "closed_exchange_success" for o in orders
    )
    no_email = [o for o in orders if "customer_email" not in o]
    assert no_email and all(
        o["customer_is_guest"] == 1 and "email" not in o["billing_address"] for o in no_email
    )
    assert any(m["order_id"] not in versions for m in memos)
    for memo in memos:
        if memo["order_id"] in versions:
            assert _parse(memo["created_at"]) >= _parse(versions[memo["order_id"]][0]["created_at"])


# -- other platforms (CONTRACT.md §2) ----------------------------------------------------------------
BC_STATUS_IDS = set(range(15))


def _array(path: Path) -> list[dict]:
    return json.loads(path.read_text(), parse_float=Decimal)


def _only(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


@pytest.fixture(scope="module")
def bc(seed_dir) -> dict[str, dict[str, list[dict]]]:
    root = seed_dir[0] / "bigcommerce"
    return {
        d.name: {s: _array(_only(d, f"{s}/*.json")) for s in ("orders", "refunds", "customers")}
        for d in sorted(root.iterdir())
    }


@pytest.fixture(scope="module")
def ct(seed_dir) -> dict[str, list[dict]]:
    (project,) = sorted((seed_dir[0] / "commercetools").iterdir())
    return {e: _array(_only(project, f"{e}/*.json")) for e in ("orders", "payments", "customers")}


@pytest.fixture(scope="module")
def sfcc_orders(seed_dir) -> list[dict]:
    (org,) = sorted((seed_dir[0] / "sfcc").iterdir())
    assert org.name.startswith("f_ecom_")
    return _array(_only(org, "orders/*.json"))


def _bc_time(value: str) -> datetime:
    return parsedate_to_datetime(value).replace(tzinfo=None)


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def _in_range(moment: datetime) -> bool:
    return datetime(2024, 3, 1) <= moment < datetime(2024, 4, 30)


def _versions(records: list[dict], key: str) -> dict:
    by_id: dict = defaultdict(list)
    for record in records:
        by_id[record[key]].append(record)
    return by_id


def test_every_platform_has_its_seed_layout(seed_dir, bc, ct, sfcc_orders):
    root, summary = seed_dir
    assert len(bc) == 2 == summary["bigcommerce_stores"]
    for name in (
        "smile/customers",
        "smile/points_transactions",
        "smile/reward_fulfillments",
        "smile/referrals",
        "loyaltylion/customers",
        "loyaltylion/transactions",
        "loyaltylion/referrals",
        "salesforce/Contact",
        "salesforce/Lead",
        "salesforce/Loyalty_Adjustment_Request__c",
    ):
        assert isinstance(_array(_only(root, f"{name}/*.json")), list), name
    assert summary["bigcommerce_order_versions"] == sum(len(s["orders"]) for s in bc.values())
    assert summary["bigcommerce_refunds"] == sum(len(s["refunds"]) for s in bc.values())
    assert summary["commercetools_order_versions"] == len(ct["orders"])
    assert summary["commercetools_orders"] == len({o["id"] for o in ct["orders"]})
    assert summary["commercetools_payment_versions"] == len(ct["payments"])
    assert summary["sfcc_order_versions"] == len(sfcc_orders)
    assert (
        summary["total_orders"]
        == summary["orders"]
        + summary["bigcommerce_orders"]
        + summary["commercetools_orders"]
        + summary["sfcc_orders"]
    )
    shares = {
        p: summary[f"{p}_orders"] / summary["total_orders"] for p in ("bigcommerce", "commercetools", "sfcc")
    }
    shares["magento"] = summary["orders"] / summary["total_orders"]
    assert 0.3 < shares.pop("magento") < 0.6 and all(0.04 < v < 0.4 for v in shares.values()), shares
    versions = sum(summary[k] for k in summary if k.endswith("order_versions"))
    assert 0 < summary["total_malformed_records"] <= 0.03 * versions


def test_bigcommerce_orders_have_native_shapes(bc):
    currencies, multi = set(), False
    for store in bc.values():
        for order in store["orders"]:
            for key in (
                "subtotal_ex_tax",
                "subtotal_inc_tax",
                "total_ex_tax",
                "total_inc_tax",
                "total_tax",
                "shipping_cost_ex_tax",
                "discount_amount",
                "coupon_discount",
            ):
                assert isinstance(order[key], str), key
                assert order[key] == "abc" or len(order[key].split(".")[-1]) == 4, key
            assert isinstance(order["is_tax_inclusive_pricing"], bool)
            assert isinstance(order["customer_id"], int) and isinstance(order["channel_id"], int)
            assert _bc_time(order["date_created"]) <= _bc_time(order["date_modified"])
            assert order["date_modified"].endswith("+0000")
            currencies.add(order["default_currency_code"])
            if order["default_currency_code"] != "USD":
                assert order["store_default_currency_code"] == "USD"
                assert Decimal(order["store_default_to_transactional_exchange_rate"]) != 1
                multi = True
            for product in order["products"]:
                assert product["order_id"] == order["id"]
                assert product["type"] in ("physical", "digital", "giftcertificate")
                assert isinstance(product["price_ex_tax"], str) and isinstance(product["quantity"], int)
                assert isinstance(product["applied_discounts"], list)
            if order["status_id"] in BC_STATUS_IDS and order["subtotal_ex_tax"][0].isdigit():
                top = [p for p in order["products"] if p["parent_order_product_id"] is None]
                assert Decimal(order["subtotal_ex_tax"]) == sum(Decimal(p["total_ex_tax"]) for p in top)
                assert Decimal(order["total_inc_tax"]) == Decimal(order["total_ex_tax"]) + Decimal(
                    order["total_tax"]
                )
        for customer in store["customers"]:
            assert {"id", "email", "first_name", "last_name", "date_created", "date_modified"} <= set(
                customer
            )
            assert _in_range(_iso(customer["date_modified"]))
    assert {"USD", "EUR", "CAD"} <= currencies and multi
    types = {p["type"] for s in bc.values() for o in s["orders"] for p in o["products"]}
    assert types == {"physical", "digital", "giftcertificate"}
    assert any(p["parent_order_product_id"] for s in bc.values() for o in s["orders"] for p in o["products"])
    assert any(o["is_tax_inclusive_pricing"] for s in bc.values() for o in s["orders"])


def test_bigcommerce_versions_and_refunds(bc):
    chains, guests = set(), 0
    for store in bc.values():
        versions = _versions(store["orders"], "id")
        products = {p["id"]: o["id"] for o in store["orders"] for p in o["products"]}
        for vs in versions.values():
            stamps = [_bc_time(v["date_modified"]) for v in vs]
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
            assert all(_in_range(t) for t in stamps)
            chains.add(tuple(v["status_id"] for v in vs))
            guests += vs[0]["customer_id"] == 0
        orphans = 0
        for refund in store["refunds"]:
            assert isinstance(refund["total_amount"], int | Decimal) and _in_range(_iso(refund["created"]))
            if refund["order_id"] not in versions:
                orphans += 1
                continue
            vs = versions[refund["order_id"]]
            assert _iso(refund["created"]) >= _bc_time(vs[0]["date_created"])
            later = [v["status_id"] for v in vs if _bc_time(v["date_modified"]) > _iso(refund["created"])]
            assert later and later[0] in (4, 14)
            for item in refund["items"]:
                assert item["item_type"] in ("PRODUCT", "SHIPPING")
                if item["item_type"] == "PRODUCT":
                    assert products[item["item_id"]] == refund["order_id"]
                    assert item["requested_amount"] is None or isinstance(
                        item["requested_amount"], int | Decimal
                    )
        assert orphans <= 1
    assert (
        sum(r["order_id"] not in _versions(s["orders"], "id") for s in bc.values() for r in s["refunds"]) == 1
    )
    assert {(11, 2, 10), (11, 2, 4), (11, 2, 14), (11, 2, 14, 4), (7, 5)} <= chains
    assert guests
    requested = {r["items"][0]["requested_amount"] is None for s in bc.values() for r in s["refunds"]}
    assert requested == {True, False}


def _cents(money: dict) -> int:
    assert money["type"] == "centPrecision" and isinstance(money["centAmount"], int)
    return money["centAmount"]


def _ct_malformed(order: dict) -> bool:
    cents = order["totalPrice"]["centAmount"]
    return not isinstance(cents, int) or cents < 0 or "customerEmail" not in order


def test_commercetools_orders_have_native_shapes_and_versions(ct):
    versions = _versions(ct["orders"], "id")
    currencies, states, untaxed = set(), set(), 0
    for vs in versions.values():
        assert [v["version"] for v in vs] == list(range(1, len(vs) + 1))
        stamps = [_iso(v["lastModifiedAt"]) for v in vs]
        assert stamps == sorted(stamps) and all(_in_range(t) for t in stamps)
        assert _iso(vs[0]["createdAt"]) <= stamps[0]
        assert all(v["lastModifiedAt"].endswith("Z") and len(v["lastModifiedAt"]) == 24 for v in vs)
        states.add(tuple((v["orderState"], v["paymentState"], v.get("shipmentState")) for v in vs))
        order = vs[-1]
        if _ct_malformed(order):
            continue
        cur = order["totalPrice"]["currencyCode"]
        currencies.add((cur, order["totalPrice"]["fractionDigits"]))
        lines = sum(_cents(li["totalPrice"]) for li in order["lineItems"])
        shipping = _cents(order["shippingInfo"]["price"]) if "shippingInfo" in order else 0
        assert _cents(order["totalPrice"]) == lines + shipping
        if "taxedPrice" in order:
            assert _cents(order["taxedPrice"]["totalNet"]) == _cents(order["totalPrice"])
            assert _cents(order["taxedPrice"]["totalGross"]) >= _cents(order["taxedPrice"]["totalNet"])
        else:
            untaxed += 1
        assert order["store"]["key"] and order["paymentInfo"]["payments"][0]["typeId"] == "payment"
        assert all(li["productType"]["key"] for li in order["lineItems"])
    assert {("EUR", 2), ("GBP", 2), ("JPY", 0)} <= currencies and untaxed
    assert (
        ("Open", "Pending", None),
        ("Confirmed", "Paid", "Ready"),
        ("Confirmed", "Paid", "Shipped"),
        ("Complete", "Paid", "Delivered"),
    ) in states
    assert any(s[-1][0] == "Cancelled" for s in states)
    keys = {li["productType"]["key"] for o in ct["orders"] for li in o["lineItems"]}
    assert "giftcard" in keys


def test_a_commercetools_guest_order_is_reassigned_to_a_customer(ct):
    customers = {c["id"]: c for c in ct["customers"]}
    reassigned = [
        vs
        for vs in _versions(ct["orders"], "id").values()
        if "customerId" not in vs[0] and "customerId" in vs[-1]
    ]
    assert reassigned
    for vs in reassigned:
        customer = customers[vs[-1]["customerId"]]
        assert _norm(customer["email"]) == _norm(vs[-1]["customerEmail"])
        assert _iso(customer["createdAt"]) <= _iso(vs[-1]["lastModifiedAt"])
        assert vs[-1]["version"] > vs[-2]["version"]


def test_commercetools_refund_transactions_in_several_states(ct):
    referenced = {p["id"] for o in ct["orders"] for p in o["paymentInfo"]["payments"]}
    payments = _versions(ct["payments"], "id")
    states = set()
    for pid, vs in payments.items():
        assert [v["version"] for v in vs] == list(range(1, len(vs) + 1)) or pid not in referenced
        stamps = [_iso(v["lastModifiedAt"]) for v in vs]
        assert stamps == sorted(stamps) and all(_in_range(t) for t in stamps)
        assert len({v["createdAt"] for v in vs}) == 1
        for txn in vs[-1]["transactions"]:
            _cents(txn["amount"])
            if txn["type"] == "Refund":
                states.add(txn["state"])
    assert {"Initial", "Pending", "Success", "Failure"} <= states
    assert len(set(payments) - referenced) == 1  # a refund for an order that never exists
    changed = [
        vs for vs in payments.values() if len({tuple(t["state"] for t in v["transactions"]) for v in vs}) > 2
    ]
    assert changed


def test_sfcc_orders_have_native_shapes_and_versions(sfcc_orders):
    versions = _versions(sfcc_orders, "orderNo")
    final = set()
    for vs in versions.values():
        stamps = [_iso(v["lastModified"]) for v in vs]
        assert stamps == sorted(stamps) and all(_in_range(t) for t in stamps)
        assert _iso(vs[0]["creationDate"]) <= stamps[0]
        final.add(vs[-1]["status"])
        order = vs[-1]
        assert order["taxation"] in ("net", "gross") and order["siteId"]
        assert isinstance(order["customerInfo"]["guest"], bool)
        if (
            isinstance(order["productTotal"], str)
            or order["productTotal"] < 0
            or "email" not in order["customerInfo"]
        ):
            continue
        for key in ("productTotal", "productSubTotal", "orderTotal", "taxTotal", "shippingTotal"):
            assert isinstance(order[key], int | Decimal), key
        adjust = sum(_dec(a["price"]) for a in order.get("orderPriceAdjustments", []))
        assert adjust <= 0
        if order["taxation"] == "net":
            assert _dec(order["orderTotal"]) == _dec(order["productTotal"]) + adjust + _dec(
                order["shippingTotal"]
            ) + _dec(order["taxTotal"])
    assert {"completed", "cancelled", "failed", "new"} <= final
    assert {o["currency"] for o in sfcc_orders} == {"USD", "EUR"}
    assert any(o.get("orderPriceAdjustments") for o in sfcc_orders)


def _platform_emails(root: Path, bc, ct, sfcc_orders) -> dict[str, set[str]]:
    emails = defaultdict(set)
    for order in _load(root, "orders"):
        if order.get("customer_email"):
            emails["magento"].add(order["customer_email"])
    for store in bc.values():
        emails["bigcommerce"] |= {o["billing_address"]["email"] for o in store["orders"]}
    emails["commercetools"] = {o["customerEmail"] for o in ct["orders"] if "customerEmail" in o}
    emails["sfcc"] = {o["customerInfo"]["email"] for o in sfcc_orders if "email" in o["customerInfo"]}
    return emails


def test_the_same_person_shops_on_several_platforms(seed_dir, bc, ct, sfcc_orders):
    emails = _platform_emails(seed_dir[0], bc, ct, sfcc_orders)
    platforms_of = defaultdict(set)
    spellings = defaultdict(set)
    for platform, values in emails.items():
        for email in values:
            if email:
                platforms_of[_norm(email)].add(platform)
                spellings[_norm(email)].add(email)
    shared = [e for e, p in platforms_of.items() if len(p) >= 2]
    assert len(shared) >= 10 and any(len(platforms_of[e]) >= 3 for e in shared)
    assert seed_dir[1]["multi_platform_shoppers"] >= 10
    # the same person types the address differently from one platform to the next
    assert any(
        {"magento", "bigcommerce", "commercetools"} <= platforms_of[e] and len(spellings[e]) >= 2
        for e in shared
    )


def test_loyalty_platforms_and_salesforce(seed_dir, bc, ct, sfcc_orders):
    root = seed_dir[0]
    shopper_emails = {_norm(e) for v in _platform_emails(root, bc, ct, sfcc_orders).values() for e in v if e}
    smile = {
        e: _array(_only(root, f"smile/{e}/*.json"))
        for e in ("customers", "points_transactions", "reward_fulfillments", "referrals")
    }
    emails = [_norm(c["email"]) for c in smile["customers"]]
    assert len(emails) != len(set(emails))  # Smile emails are not unique
    assert sum(e in shopper_emails for e in emails) > len(emails) / 2
    smile_ids = {c["id"] for c in smile["customers"]}
    assert smile["points_transactions"] and all(
        t["points_change"] < 0 and t["customer_id"] in smile_ids for t in smile["points_transactions"]
    )
    assert all(f["customer_id"] in smile_ids for f in smile["reward_fulfillments"])
    refs = smile["referrals"]
    assert any(_norm(r["receiver_customer_email"]) == _norm(r["sender_customer"]["email"]) for r in refs)
    assert any(_norm(r["receiver_customer_email"]) != _norm(r["sender_customer"]["email"]) for r in refs)
    lion = {
        e: _array(_only(root, f"loyaltylion/{e}/*.json")) for e in ("customers", "transactions", "referrals")
    }
    assert lion["customers"] and all(isinstance(c["merchant_id"], str) for c in lion["customers"])
    assert any(t["points_approved"] < 0 for t in lion["transactions"]) and lion["referrals"]
    contacts = _array(_only(root, "salesforce/Contact/*.json"))
    assert all(
        len(c["Id"]) == 18 and c["Id"].startswith("003") and "HasOptedOutOfEmail" in c for c in contacts
    )
    # Leads the CRM had: open ones of shoppers without a Contact, converted ones of some with one
    leads = _array(_only(root, "salesforce/Lead/*.json"))
    contact_emails = {_norm(c["Email"]) for c in contacts}
    assert all(len(lead["Id"]) == 18 and lead["Id"].startswith("00Q") and _norm(lead["Email"]) in shopper_emails
               and (_norm(lead["Email"]) in contact_emails) == lead["IsConverted"] for lead in leads)
    assert {lead["IsConverted"] for lead in leads} == {True, False}
    requests = _array(_only(root, "salesforce/Loyalty_Adjustment_Request__c/*.json"))
    contact_ids = {c["Id"] for c in contacts}
    assert all(r["Status__c"] == "New" and r["Contact__c"] in contact_ids for r in requests)
    assert any("Reason__c" not in r for r in requests)
    assert any(abs(r["Points__c"]) > 10000 for r in requests)
    assert any(r["Points__c"] < 0 for r in requests)


def test_every_platform_has_its_malformed_records(bc, ct, sfcc_orders):
    bc_orders = [o for s in bc.values() for o in s["orders"]]
    assert any(o["subtotal_ex_tax"] == "abc" for o in bc_orders)
    assert any(o["subtotal_ex_tax"].startswith("-") for o in bc_orders)
    assert any(o["customer_id"] == 0 and not o["billing_address"]["email"] for o in bc_orders)
    assert any(o["status_id"] not in BC_STATUS_IDS for o in bc_orders)
    assert any(not isinstance(o["totalPrice"]["centAmount"], int) for o in ct["orders"])
    assert any(
        isinstance(o["totalPrice"]["centAmount"], int) and o["totalPrice"]["centAmount"] < 0
        for o in ct["orders"]
    )
    assert any("customerEmail" not in o and "customerId" not in o for o in ct["orders"])
    assert any(isinstance(o["productTotal"], str) for o in sfcc_orders)
    assert any(not isinstance(o["productTotal"], str) and o["productTotal"] < 0 for o in sfcc_orders)
    assert any("email" not in o["customerInfo"] for o in sfcc_orders)


def test_chf_orders_are_rare(orders):
    per_order = {o["entity_id"]: o["order_currency_code"] for o in orders}
    assert 0 < sum(c == "CHF" for c in per_order.values()) <= 0.04 * len(per_order)
