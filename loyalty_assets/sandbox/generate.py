"""Deterministic demo data for every platform of CONTRACT.md §2 (`loyalty generate`, §1 and §2).

Besides the Magento part described below, `generate()` writes (one JSON array per file, native shapes
copied from `shared/fixtures/real/` and the reference docs):

    bigcommerce/<store_hash>/{orders,refunds,customers}/*.json   two stores (USD; EUR/CAD multi-currency,
                                                                 tax-inclusive), v2 orders with products
                                                                 inline, v3 refunds and customers
    commercetools/<project_key>/{orders,payments,customers}/*.json   EUR, GBP and JPY stores
    sfcc/<organization_id>/orders/*.json                         SCAPI orders, USD net and EUR gross sites
    smile/{customers,points_transactions,reward_fulfillments,referrals}/*.json
    loyaltylion/{customers,transactions,referrals}/*.json
    salesforce/{Contact,Lead,Loyalty_Adjustment_Request__c}/*.json

Shoppers are shared: each has a home platform (Magento 40 %, BigCommerce 25 %, commercetools 25 %,
SFCC 10 %) and about a third also buy on one or two others with the same email typed differently.
Per platform: guests, registered customers and guests who register later (commercetools: a guest
order re-assigned to the new customer through `customerId` in a later order version); lifecycles as
versions; BigCommerce partial (status 14) and full (status 4) v3 refunds, with `requested_amount`
numbers or null; commercetools Refund transactions going through Initial/Pending/Success/Failure on
later payment versions; SFCC cancellations and failures; gift cards/gift certificates; and ~1 %
malformed records (non-numeric or negative money, guest without email, an unknown BigCommerce
status, a refund or refund payment whose order never exists). Smile.io/LoyaltyLion hold customers for
part of the shoppers (one duplicated Smile email), a few redemptions (one voided in LoyaltyLion) and
referrals (one self-referral); Salesforce holds Contacts and `New` adjustment requests (one without
a reason, one above 10000 points, one for a Contact that is no known member).

The Magento part (one Magento 2 instance):

`generate()` writes, under its output directory, native Magento 2 REST records exactly as
`GET /V1/orders`, `GET /V1/creditmemos` and `GET /V1/customers/search` return them (field names and
value types copied from `shared/fixtures/real/magento/`), one JSON array per file, plus `fx_rates.csv`:

    magento/orders/orders.json            every version of every order, sorted by updated_at
    magento/creditmemos/creditmemos.json  every version of every credit memo, sorted by updated_at
    magento/customers/customers.json      every version of every customer account
    fx_rates.csv                          date,currency,rate_to_program (EUR, GBP, CAD, JPY, not CHF)

The output depends only on the arguments: one `random.Random(seed)` drives every choice, and the wall
clock is read only when `start` is None (then the range is the `days` days ending yesterday, UTC).
Money is `Decimal` throughout, written as JSON numbers by simplejson (whole amounts as integers, like
Magento does: `165`, `1917.6`).

Scenarios (each one is guaranteed for any seed once `customers >= 20`; the rest is random):

* Shoppers: registered customers (some created before the range), guests (`customer_is_guest: 1`,
  `customer_group_id: 0`, no `customer_id` key, email in `customer_email` and
  `billing_address.email`), guests who register later (later orders carry the new customer id with the
  same email), a customer whose email changes (a second customer version with a later `updated_at`,
  later orders use the new email), emails typed with mixed case and stray whitespace, and two
  customer accounts on different websites sharing one email (a family address: must not be merged).
* Stores: store views 1 and 2 on the USD website; store view 3 on the same website sells in EUR
  (`base_currency_code: USD`, `base_to_order_rate` from that day's FX, every `base_*` amount = order
  amount / rate, rounded to 2 dp); a GBP website (store 4) and a JPY website (store 5, no minor
  units) whose base currency is not USD, so the FX table is needed; a CHF website (store 6) that the
  FX table leaves out on purpose (`no_fx_rate`).
* Items: simple, virtual, downloadable, configurable (parent + child with `parent_item_id`, child
  `price: 0`), bundle (parent + priced children) and `giftcard` lines (not eligible for points).
  `subtotal` is the sum of top-level `row_total`; cart-rule discounts are negative at the totals level
  and positive per item (items sum to the total minus `shipping_discount_amount`), some with a
  shipping discount; `grand_total = subtotal + shipping_amount + tax_amount + discount_amount`.
* Lifecycle as versions of one `entity_id` with increasing `updated_at`: new/pending -> processing ->
  complete; orders left pending or processing; pending_payment -> canceled; new -> canceled; holds
  before and after payment (holded, then back); payment_review; an in-place edit after invoicing
  (a line added, totals and `total_paid` raised); a custom unknown state at the end of one order.
* Credit memos (state 1 open, 2 refunded, 3 canceled): partial refunds (the order keeps its state and
  gains `total_refunded`, `subtotal_refunded`, ...), full refunds (a later order version in state
  `closed`), a refund in two steps that ends closed, memos opened then refunded (two versions), memos
  opened then canceled, late refunds arriving 8-20 days after shipping, a refunded giftcard line,
  adjustment refunds and fees.
* Malformed records (about 1 %): a non-numeric `subtotal` ("abc"), a negative `subtotal`, a guest order
  with no email anywhere, an order version in the custom state `closed_exchange_success`, and a credit
  memo whose `order_id` never exists.
"""

from __future__ import annotations

import functools
import random
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import simplejson

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
FX_CURRENCIES = ("EUR", "GBP", "CAD", "JPY")
PLATFORMS = ("magento", "bigcommerce", "commercetools", "sfcc")
_PLATFORM_WEIGHTS = {"magento": 40, "bigcommerce": 25, "commercetools": 25, "sfcc": 10}
MALFORMED_STATE = "closed_exchange_success"
_ONE = Decimal(1)
_CENT = Decimal("0.01")

# Dollars per unit on the first day; the rates then take a small random walk.
_USD_PER_UNIT = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.085"),
    "GBP": Decimal("1.27"),
    "CAD": Decimal("0.735"),
    "JPY": Decimal("0.0067"),
    "CHF": Decimal("1.13"),  # used for base_to_global_rate only; deliberately absent from fx_rates.csv
}
# Catalog prices are in USD; other store views price in their currency with these factors.
_PRICE_FACTOR = {
    "USD": _ONE,
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "JPY": Decimal("150"),
    "CHF": Decimal("0.88"),
    "CAD": Decimal("1.36"),
}
_MINOR_DIGITS = {"JPY": 0}


# --------------------------------------------------------------------------------------------------
# Static configuration: stores, catalog, people
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreView:
    store_id: int
    website_id: int
    name: str  # Magento's "Website\nStore\nStore view"
    base_currency: str
    order_currency: str
    tax_rate: Decimal
    shipping: Decimal  # flat rate in the order currency
    country: str
    weight: int  # share of shoppers whose home store this is

    @property
    def view_name(self) -> str:
        return self.name.split("\n")[-1]


STORES = (
    StoreView(
        1,
        1,
        "Main Website\nMain Website Store\nDefault Store View",
        "USD",
        "USD",
        Decimal("0.0825"),
        Decimal("5"),
        "US",
        46,
    ),
    StoreView(
        2,
        1,
        "Main Website\nMain Website Store\nOutlet Store View",
        "USD",
        "USD",
        Decimal("0.0725"),
        Decimal("7.5"),
        "US",
        20,
    ),
    StoreView(
        3,
        1,
        "Main Website\nMain Website Store\nEuro Store View",
        "USD",
        "EUR",
        Decimal("0.19"),
        Decimal("4.9"),
        "DE",
        16,
    ),
    StoreView(
        4, 2, "UK Website\nUK Store\nEnglish (UK)", "GBP", "GBP", Decimal("0.2"), Decimal("3.95"), "GB", 10
    ),
    StoreView(
        5, 3, "Japan Website\nJapan Store\nJapanese", "JPY", "JPY", Decimal("0.1"), Decimal("600"), "JP", 7
    ),
    StoreView(
        6,
        4,
        "Swiss Website\nSwiss Store\nDeutsch (CH)",
        "CHF",
        "CHF",
        Decimal("0.081"),
        Decimal("7.9"),
        "CH",
        1,
    ),
)
_STORE = {s.store_id: s for s in STORES}

_ADDRESSES = {
    "US": [
        ("Purchase", "New York", "NY", 43, "10577"),
        ("Austin", "Texas", "TX", 57, "78701"),
        ("Oakland", "California", "CA", 12, "94612"),
    ],
    "DE": [("Berlin", "Berlin", "BER", 82, "10115"), ("Hamburg", "Hamburg", "HH", 84, "20095")],
    "GB": [("London", "London", "LND", 0, "EC1A 1BB"), ("Leeds", "West Yorkshire", "WYK", 0, "LS1 4AP")],
    "JP": [("Tokyo", "Tokyo", "13", 0, "100-0001"), ("Osaka", "Osaka", "27", 0, "530-0001")],
    "CH": [("Zurich", "Zurich", "ZH", 0, "8001"), ("Basel", "Basel-Stadt", "BS", 0, "4051")],
}
_FIRST_NAMES = (
    "Jane",
    "John",
    "Maria",
    "Liam",
    "Aiko",
    "Noah",
    "Emma",
    "Lukas",
    "Olivia",
    "Mateo",
    "Sofia",
    "Hiro",
    "Chloe",
    "Elias",
    "Grace",
    "Oscar",
    "Mia",
    "Felix",
    "Ava",
    "Leon",
)
_LAST_NAMES = (
    "Doe",
    "Smith",
    "Garcia",
    "Muller",
    "Tanaka",
    "Brown",
    "Rossi",
    "Martin",
    "Silva",
    "Kowalski",
    "Dubois",
    "Sato",
    "Jones",
    "Weber",
    "Novak",
    "Murphy",
    "Costa",
    "Berg",
)
_DOMAINS = ("example.com", "example.org", "example.net")


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    product_type: str
    usd_price: Decimal
    product_id: int
    is_virtual: bool = False
    weight: Decimal = _ONE
    children: tuple[Product, ...] = ()


def _p(sku: str, name: str, ptype: str, price: str, pid: int, **kw) -> Product:
    return Product(sku, name, ptype, Decimal(price), pid, **kw)


# Names, SKUs and product ids follow the Luma sample catalog used in the Magento fixtures.
_CATALOG: dict[str, tuple[Product, ...]] = {
    "simple": (
        _p("WS12-M-Orange", "Radiant Tee-M-Orange", "simple", "22", 1553),
        _p("24-WB03", "Driven Backpack", "simple", "36", 12),
        _p("24-WB01", "Voyage Yoga Bag", "simple", "32", 8),
        _p("24-UG06", "Affirm Water Bottle", "simple", "7", 41),
        _p("24-MB04", "Strive Shoulder Pack", "simple", "32", 4),
        _p("24-WG085", "Sprite Yoga Strap 6 foot", "simple", "14", 33),
    ),
    "virtual": (
        _p(
            "WARRANTY-1Y",
            "Extended Warranty 1 Year",
            "virtual",
            "15",
            2001,
            is_virtual=True,
            weight=Decimal(0),
        ),
    ),
    "downloadable": (
        _p(
            "240-LV08",
            "Advanced Pilates & Yoga (Strength)",
            "downloadable",
            "18",
            49,
            is_virtual=True,
            weight=Decimal(0),
        ),
    ),
    "configurable": (
        _p(
            "MH01-S-Gray",
            "Chaz Kangeroo Hoodie",
            "configurable",
            "52",
            67,
            children=(_p("MH01-S-Gray", "Chaz Kangeroo Hoodie-S-Gray", "simple", "0", 56),),
        ),
        _p(
            "WJ12-M-Blue",
            "Olivia 1/4 Zip Light Jacket",
            "configurable",
            "77",
            1210,
            children=(_p("WJ12-M-Blue", "Olivia 1/4 Zip Light Jacket-M-Blue", "simple", "0", 1204),),
        ),
    ),
    "bundle": (
        _p(
            "24-WG080",
            "Sprite Yoga Companion Kit",
            "bundle",
            "0",
            51,
            children=(
                _p("24-WG082-blue", "Sprite Stasis Ball 65 cm", "simple", "27", 29),
                _p("24-WG084", "Sprite Foam Yoga Brick", "simple", "5", 21),
                _p("24-WG086", "Sprite Yoga Strap 8 foot", "simple", "17", 34),
                _p("24-WG088", "Sprite Foam Roller", "simple", "19", 22),
            ),
        ),
    ),
    "giftcard": (
        _p("GIFTCARD-25", "Gift Card 25", "giftcard", "25", 3001, is_virtual=True, weight=Decimal(0)),
        _p("GIFTCARD-50", "Gift Card 50", "giftcard", "50", 3002, is_virtual=True, weight=Decimal(0)),
    ),
}
_LINE_KIND_WEIGHTS = {
    "simple": 55,
    "configurable": 17,
    "bundle": 10,
    "virtual": 6,
    "downloadable": 5,
    "giftcard": 4,
}

# Scenario -> the steps that make its versions. "refund"/"memo_void" expand to memo events.
_SCENARIO_STEPS: dict[str, tuple[str, ...]] = {
    "pending": ("place_new",),
    "invoiced": ("place_new", "invoice"),
    "complete": ("place_new", "invoice", "ship"),
    "pending_payment_canceled": ("place_pending_payment", "cancel"),
    "new_canceled": ("place_new", "cancel"),
    "hold_before_payment": ("place_new", "hold", "unhold", "invoice", "ship"),
    "hold_after_payment": ("place_new", "invoice", "hold", "unhold", "ship"),
    "payment_review": ("place_review", "invoice", "ship"),
    "edited": ("place_new", "invoice", "edit", "ship"),
    "full_refund": ("place_new", "invoice", "ship", "refund"),
    "partial_refund": ("place_new", "invoice", "ship", "refund"),
    "two_step_refund": ("place_new", "invoice", "ship", "refund", "refund"),
    "memo_canceled": ("place_new", "invoice", "ship", "memo_void"),
    "unknown_state": ("place_new", "invoice", "ship", "custom_state"),
    # malformed orders have a single version
    "bad_amount": ("place_new",),
    "negative_subtotal": ("place_new",),
    "no_email": ("place_new",),
}
_SCENARIO_WEIGHTS = {
    "complete": 40,
    "invoiced": 10,
    "pending": 7,
    "pending_payment_canceled": 4,
    "new_canceled": 3,
    "hold_before_payment": 2,
    "hold_after_payment": 2,
    "payment_review": 2,
    "edited": 2,
    "full_refund": 4,
    "partial_refund": 5,
    "two_step_refund": 1,
    "memo_canceled": 1,
}
_MALFORMED_SCENARIOS = ("bad_amount", "negative_subtotal", "no_email")
_MULTI_LINE_SCENARIOS = {"partial_refund", "two_step_refund", "memo_canceled"}
_STEP_HOURS = {
    "invoice": (0.05, 30),
    "ship": (12, 96),
    "cancel": (1, 48),
    "hold": (1, 24),
    "unhold": (6, 48),
    "edit": (1, 24),
    "refund": (24, 144),
    "late_refund": (192, 480),
    "settle": (2, 48),
    "custom_state": (24, 120),
}

# (scenario, options) every data set contains, given to the earliest orders so the steps fit.
_REQUIRED_SCENARIOS: tuple[tuple[str, frozenset[str]], ...] = (
    ("full_refund", frozenset()),
    ("full_refund", frozenset({"open_first", "late"})),
    ("partial_refund", frozenset({"adjustments"})),
    ("partial_refund", frozenset({"open_first"})),
    ("partial_refund", frozenset({"late"})),
    ("partial_refund", frozenset({"giftcard"})),
    ("two_step_refund", frozenset()),
    ("memo_canceled", frozenset()),
    ("pending_payment_canceled", frozenset()),
    ("new_canceled", frozenset()),
    ("hold_before_payment", frozenset()),
    ("hold_after_payment", frozenset()),
    ("payment_review", frozenset()),
    ("edited", frozenset()),
    ("pending", frozenset()),
    ("invoiced", frozenset()),
    ("unknown_state", frozenset()),
)
# Line features every data set contains, given to the first well-formed orders.
_REQUIRED_FEATURES = (
    "configurable",
    "bundle",
    "giftcard",
    "virtual",
    "downloadable",
    "discount",
    "shipping_discount",
)


# --------------------------------------------------------------------------------------------------
# Money and time helpers
# --------------------------------------------------------------------------------------------------
def _digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency, 2)


def _round(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-_digits(currency)), rounding=ROUND_HALF_UP)


@functools.cache  # the output depends only on the value; caching keeps 500 shoppers well under 5 s
def _json_number(amount: Decimal) -> Decimal:
    """Magento prints stored decimals as PHP floats: 165, 1917.6 (never 165.0000)."""
    if amount == amount.to_integral_value():
        return amount.quantize(_ONE)
    return amount.normalize()


def _ts(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


@dataclass(frozen=True)
class Window:
    """The inclusive day range; every `updated_at` falls inside it."""

    start: date
    days: int

    @property
    def first(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day)

    @property
    def last(self) -> datetime:
        return self.first + timedelta(days=self.days) - timedelta(seconds=1)

    @property
    def seconds(self) -> int:
        return self.days * 86400

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def at(self, rng: random.Random, lo: float = 0.0, hi: float = 1.0) -> datetime:
        """A random second between fractions lo and hi of the window."""
        return self.first + timedelta(
            seconds=rng.randint(int(lo * (self.seconds - 1)), int(hi * (self.seconds - 1)))
        )


def _between(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    span = max(0, int((hi - lo).total_seconds()))
    return lo + timedelta(seconds=rng.randint(0, span))


# --------------------------------------------------------------------------------------------------
# Shoppers
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Shopper:
    """One person, with the identity timeline Magento will show for them."""

    index: int
    firstname: str
    lastname: str
    email: str  # as first typed / registered
    store: StoreView  # home store view; the website follows from it
    kind: str  # registered | guest | registers_later | changes_email
    messy_email: bool = False  # types the email with varying case and whitespace
    address: tuple = ()
    telephone: str = ""
    customer_id: int | None = None
    account_created_at: datetime | None = None
    profile_updated_at: datetime | None = None  # updated_at of the first customer version
    new_email: str | None = None
    email_changed_at: datetime | None = None
    order_times: list[datetime] = field(default_factory=list)  # Magento orders only
    platforms: tuple[str, ...] = ("magento",)  # home platform first
    platform_times: dict[str, list[datetime]] = field(default_factory=dict)  # every platform

    @property
    def has_account(self) -> bool:
        """A Magento account (`kind` describes the shopper's Magento identity)."""
        return self.kind != "guest" and bool(self.order_times)

    @property
    def first_order_at(self) -> datetime | None:
        times = [t for ts in self.platform_times.values() for t in ts]
        return min(times) if times else None

    def customer_id_at(self, moment: datetime) -> int | None:
        if self.customer_id is None or self.account_created_at is None:
            return None
        return self.customer_id if moment >= self.account_created_at else None

    def email_at(self, moment: datetime) -> str:
        if self.new_email and self.email_changed_at and moment >= self.email_changed_at:
            return self.new_email
        return self.email


# index -> (kind, home store id, messy email) for the first shoppers, so every scenario exists.
_FORCED_SHOPPERS = {
    0: ("guest", 1, False),
    1: ("registers_later", 1, False),
    2: ("changes_email", 2, False),
    3: ("registered", 1, True),
    4: ("guest", 3, True),
    5: ("registered", 3, False),
    6: ("registered", 4, False),
    7: ("registered", 5, False),
    8: ("guest", 6, False),
    9: ("registered", 4, False),  # shares shopper 5's email on another website
}
_SHARED_EMAIL_PAIR = (5, 9)
# Shoppers active on several platforms whatever the seed (3 types their email messily everywhere).
_FORCED_PLATFORMS = {
    3: ("magento", "bigcommerce", "commercetools"),
    4: ("magento", "commercetools"),
    6: ("magento", "sfcc"),
    10: ("bigcommerce", "commercetools", "sfcc"),
    11: ("commercetools", "bigcommerce"),
}


def _email_for(first: str, last: str, index: int, domain: str) -> str:
    return f"{first}.{last}{index}@{domain}".lower()


def _make_shopper(rng: random.Random, index: int) -> Shopper:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    forced = _FORCED_SHOPPERS.get(index)
    if forced:
        kind, store_id, messy = forced
        store = _STORE[store_id]
    else:
        kind = rng.choices(
            ("registered", "guest", "registers_later", "changes_email"), weights=(55, 30, 8, 4)
        )[0]
        store = rng.choices(STORES, weights=[s.weight for s in STORES])[0]
        messy = rng.random() < 0.1
    return Shopper(
        index=index,
        firstname=first,
        lastname=last,
        email=_email_for(first, last, index, rng.choice(_DOMAINS)),
        store=store,
        kind=kind,
        messy_email=messy,
        address=rng.choice(_ADDRESSES[store.country]),
        telephone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
    )


def _schedule_orders(rng: random.Random, shopper: Shopper, window: Window) -> None:
    """Every order of the shopper, each on one of the shopper's platforms (home platform first).

    Magento keeps the Magento identity scenarios: `registers_later`/`changes_email` shoppers and the
    forced first shoppers live on Magento with enough Magento orders for their steps."""
    forced = _FORCED_PLATFORMS.get(shopper.index)
    if forced:
        platforms = list(forced)
    else:
        if shopper.index in _FORCED_SHOPPERS or shopper.kind in ("registers_later", "changes_email"):
            home = "magento"
        else:
            home = rng.choices(PLATFORMS, weights=[_PLATFORM_WEIGHTS[p] for p in PLATFORMS])[0]
        platforms = [home]
        roll = rng.random()
        for _ in range(2 if roll < 0.07 else 1 if roll < 0.30 else 0):
            others = [p for p in PLATFORMS if p not in platforms]
            platforms.append(rng.choices(others, weights=[_PLATFORM_WEIGHTS[p] for p in others])[0])
    magento_min = 0
    if "magento" in platforms:
        magento_min = 3 if shopper.index in _FORCED_SHOPPERS and shopper.index != 8 else 1
        if shopper.kind in ("registers_later", "changes_email"):
            magento_min = max(2, magento_min)
    count = rng.choices((1, 2, 3, 4, 5, 6), weights=(35, 25, 18, 10, 7, 5))[0]
    if shopper.store.order_currency == "CHF" and "magento" in platforms:
        platforms, magento_min, count = ["magento"], 1, 1  # CHF (no FX rate) stays rare: one order
        if shopper.kind in ("registers_later", "changes_email"):
            shopper.kind = "registered"
    must = [p for p in platforms if p != "magento"] + ["magento"] * magento_min
    count = max(count, len(must))
    assignment = must + [
        platforms[0] if rng.random() < 0.6 else rng.choice(platforms) for _ in range(count - len(must))
    ]
    rng.shuffle(assignment)
    times = sorted(window.at(rng, 0.0, 0.97) for _ in range(count))
    shopper.platforms = tuple(platforms)
    shopper.platform_times = {p: [] for p in platforms}
    for moment, platform in zip(times, assignment, strict=True):
        shopper.platform_times[platform].append(moment)
    shopper.order_times = shopper.platform_times.get("magento", [])
    if not shopper.order_times and shopper.kind != "guest":
        shopper.kind = "registered"  # no Magento orders: the Magento kind does not matter


def _schedule_identity(rng: random.Random, shopper: Shopper, window: Window) -> None:
    """Account creation, the first customer version and any email change, around the orders."""
    first_order = shopper.order_times[0]
    if shopper.kind == "registers_later":
        split = rng.randint(1, len(shopper.order_times) - 1)
        shopper.account_created_at = _between(
            rng,
            shopper.order_times[split - 1] + timedelta(seconds=1),
            shopper.order_times[split] - timedelta(seconds=1),
        )
        shopper.profile_updated_at = shopper.account_created_at
        return
    if shopper.kind == "guest":
        return
    if rng.random() < 0.5:  # a long-standing account, touched again (login, profile) in the range
        shopper.account_created_at = window.first - timedelta(
            days=rng.randint(30, 700), seconds=rng.randint(0, 86399)
        )
        shopper.profile_updated_at = _between(rng, window.first, first_order)
    else:
        shopper.account_created_at = _between(
            rng, max(window.first, first_order - timedelta(days=5)), first_order
        )
        shopper.profile_updated_at = shopper.account_created_at
    if shopper.kind == "changes_email":
        split = rng.randint(1, len(shopper.order_times) - 1)
        shopper.email_changed_at = _between(
            rng,
            shopper.order_times[split - 1] + timedelta(seconds=1),
            shopper.order_times[split] - timedelta(seconds=1),
        )
        shopper.new_email = _email_for(shopper.firstname, shopper.lastname, shopper.index, "example.net")
        if shopper.new_email == shopper.email:
            shopper.new_email = _email_for(shopper.firstname, "new", shopper.index, "example.net")


def _make_shoppers(rng: random.Random, count: int, window: Window) -> list[Shopper]:
    shoppers = [_make_shopper(rng, i) for i in range(count)]
    for shopper in shoppers:
        _schedule_orders(rng, shopper, window)
        if shopper.order_times:
            _schedule_identity(rng, shopper, window)
    a, b = _SHARED_EMAIL_PAIR
    if count > b:
        shoppers[b].email = shoppers[a].email
    ordered = sorted((s for s in shoppers if s.has_account), key=lambda s: (s.account_created_at, s.index))
    for customer_id, shopper in enumerate(ordered, start=1):
        shopper.customer_id = customer_id
    return shoppers


def _typed_email(rng: random.Random, shopper: Shopper, email: str) -> str:
    """How the shopper typed the address at checkout this time."""
    if not shopper.messy_email:
        return email
    return rng.choice((email, email.upper(), f"  {email.title()}", f"{email} ", email.capitalize()))


# --------------------------------------------------------------------------------------------------
# Order lines and totals
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)  # identity: two equal-looking lines are still two lines
class Line:
    """One order item (a top-level line or a configurable/bundle child), amounts in order currency."""

    product: Product
    qty: int
    price: Decimal
    discount: Decimal = Decimal(0)  # positive, row level
    discount_percent: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    tax_percent: Decimal = Decimal(0)
    children: list[Line] = field(default_factory=list)
    item_id: int = 0

    @property
    def row_total(self) -> Decimal:
        return self.price * self.qty

    @property
    def is_giftcard(self) -> bool:
        return self.product.product_type == "giftcard"


def _local_price(usd: Decimal, currency: str, product_type: str) -> Decimal:
    if currency == "USD" or usd == 0:
        return usd
    local = usd * _PRICE_FACTOR[currency]
    if currency == "JPY":
        return local.quantize(Decimal("1E+1"), rounding=ROUND_HALF_UP).quantize(_ONE)
    if product_type == "giftcard":
        return local.quantize(_ONE, rounding=ROUND_HALF_UP)
    return max(local.quantize(_ONE, rounding=ROUND_HALF_UP) - _CENT, Decimal("0.99"))


def _make_line(rng: random.Random, kind: str, currency: str) -> Line:
    product = rng.choice(_CATALOG[kind])
    qty = 1 if product.is_virtual else rng.choices((1, 2, 3), weights=(75, 18, 7))[0]
    children = [
        Line(child, qty, _local_price(child.usd_price, currency, child.product_type))
        for child in product.children
    ]
    if kind == "bundle":  # dynamic price: the parent costs what its children cost
        price = sum((c.price for c in children), Decimal(0))
    else:
        price = _local_price(product.usd_price, currency, product.product_type)
    return Line(product, qty, price, children=children)


@dataclass
class Totals:
    subtotal: Decimal
    discount_amount: Decimal  # negative
    shipping_amount: Decimal
    shipping_discount_amount: Decimal
    tax_amount: Decimal
    grand_total: Decimal


def _apply_discount_and_tax(lines: list[Line], store: StoreView, percent: Decimal) -> None:
    cur = store.order_currency
    for line in lines:
        if line.is_giftcard:  # gift cards are neither discounted nor taxed
            continue
        line.discount_percent = percent
        line.discount = _round(line.row_total * percent / 100, cur)
        line.tax_percent = store.tax_rate * 100
        line.tax = _round((line.row_total - line.discount) * store.tax_rate, cur)


def _totals(lines: list[Line], shipping: Decimal, shipping_discount: Decimal) -> Totals:
    subtotal = sum((line.row_total for line in lines), Decimal(0))
    discount = -(sum((line.discount for line in lines), Decimal(0)) + shipping_discount)
    tax = sum((line.tax for line in lines), Decimal(0))
    return Totals(subtotal, discount, shipping, shipping_discount, tax, subtotal + shipping + tax + discount)


# --------------------------------------------------------------------------------------------------
# Orders and credit memos as plans, then as timelines of versions
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class CreditMemo:
    order: OrderPlan
    rows: list[tuple[Line, int]]  # top-level line, qty refunded
    refund_shipping: bool
    adjustment_positive: Decimal = Decimal(0)
    adjustment_negative: Decimal = Decimal(0)
    versions: list[tuple[datetime, int]] = field(default_factory=list)  # (updated_at, state)
    entity_id: int = 0
    increment_id: str = ""
    item_ids: list[int] = field(default_factory=list)

    @property
    def created_at(self) -> datetime:
        return self.versions[0][0]

    def refunded_at(self) -> datetime | None:
        return next((t for t, state in self.versions if state == 2), None)


@dataclass(eq=False)
class OrderPlan:
    shopper: Shopper
    store: StoreView
    created_at: datetime
    scenario: str
    options: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    lines: list[Line] = field(default_factory=list)
    edit_line: Line | None = None
    coupon: str | None = None
    shipping: Decimal = Decimal(0)
    shipping_discount: Decimal = Decimal(0)
    base_to_order_rate: Decimal = _ONE
    base_to_global_rate: Decimal = _ONE
    email: str = ""
    billing_email: str = ""
    customer_id: int | None = None
    payment_method: str = "checkmo"
    events: list[tuple[datetime, str, CreditMemo | None]] = field(default_factory=list)
    memos: list[CreditMemo] = field(default_factory=list)
    entity_id: int = 0
    increment_id: str = ""
    item_fields: dict[int, dict] = field(default_factory=dict)  # _item_static cache by item_id

    @property
    def currency(self) -> str:
        return self.store.order_currency

    @property
    def is_virtual(self) -> bool:
        return all(line.product.is_virtual for line in self.lines)

    def to_base(self, amount: Decimal) -> Decimal:
        if self.base_to_order_rate == 1:
            return amount
        return _to_base(amount, self.base_to_order_rate, self.store.base_currency)


@functools.cache
def _to_base(amount: Decimal, base_to_order_rate: Decimal, base_currency: str) -> Decimal:
    """Magento's base amount: order amount / base_to_order_rate, rounded to the base currency."""
    return _round(amount / base_to_order_rate, base_currency)


def _pick_scenario(rng: random.Random) -> str:
    return rng.choices(list(_SCENARIO_WEIGHTS), weights=list(_SCENARIO_WEIGHTS.values()))[0]


def _random_options(rng: random.Random, scenario: str) -> frozenset[str]:
    if scenario not in ("full_refund", "partial_refund", "two_step_refund"):
        return frozenset()
    options = set()
    if rng.random() < 0.3:
        options.add("open_first")
    if rng.random() < 0.2:
        options.add("late")
    if scenario == "partial_refund" and rng.random() < 0.2:
        options.add("adjustments")
    return frozenset(options)


def _order_store(rng: random.Random, shopper: Shopper) -> StoreView:
    """Mostly the home store view; sometimes another view of the same website."""
    siblings = [s for s in STORES if s.website_id == shopper.store.website_id and s != shopper.store]
    if siblings and rng.random() < 0.15:
        return rng.choice(siblings)
    return shopper.store


def _plan_orders(rng: random.Random, shoppers: list[Shopper]) -> list[OrderPlan]:
    plans = []
    for shopper in shoppers:
        for moment in shopper.order_times:
            scenario = _pick_scenario(rng)
            plans.append(
                OrderPlan(
                    shopper, _order_store(rng, shopper), moment, scenario, _random_options(rng, scenario)
                )
            )
    return plans


def _force_coverage(plans: list[OrderPlan]) -> None:
    """Give the required scenarios and line features to the earliest orders (room for their steps)."""
    by_time = sorted(plans, key=lambda p: (p.created_at, p.shopper.index))
    converted = next((p for p in by_time if p.store.order_currency != p.store.base_currency), None)
    if converted is not None:  # the first required refund then happens in EUR on a USD base
        by_time.remove(converted)
        by_time.insert(0, converted)
    for plan, (scenario, options) in zip(by_time, _REQUIRED_SCENARIOS, strict=False):
        plan.scenario, plan.options = scenario, options
    for plan, feature in zip(by_time[len(_REQUIRED_SCENARIOS) :], _REQUIRED_FEATURES, strict=False):
        plan.scenario, plan.options, plan.features = "complete", frozenset(), frozenset({feature})


def _malformed_plans(
    rng: random.Random, shoppers: list[Shopper], window: Window, per_kind: int
) -> list[OrderPlan]:
    guests = [s for s in shoppers if s.kind == "guest"] or shoppers
    plans = []
    for kind in _MALFORMED_SCENARIOS:
        for _ in range(per_kind):
            shopper = rng.choice(guests if kind == "no_email" else shoppers)
            plans.append(OrderPlan(shopper, shopper.store, window.at(rng, 0.0, 0.99), kind))
    return plans


def _build_lines(rng: random.Random, plan: OrderPlan) -> None:
    """Choose the lines, the discount, the shipping and the taxes of an order."""
    cur = plan.currency
    count = rng.choices((1, 2, 3, 4), weights=(45, 30, 17, 8))[0]
    if plan.scenario in _MULTI_LINE_SCENARIOS:
        count = max(2, count)
    kinds = [
        rng.choices(list(_LINE_KIND_WEIGHTS), weights=list(_LINE_KIND_WEIGHTS.values()))[0]
        for _ in range(count)
    ]
    if "giftcard" in plan.options:
        kinds[-1] = "giftcard"
        kinds[0] = "simple"
    for feature in plan.features & set(_CATALOG):
        kinds[0] = feature
    if "shipping_discount" in plan.features:
        kinds[0] = "simple"  # a shipping discount needs something to ship
    plan.lines = [_make_line(rng, kind, cur) for kind in kinds]
    if plan.scenario == "edited":
        plan.edit_line = _make_line(rng, "simple", cur)

    discounted = "discount" in plan.features or "shipping_discount" in plan.features or rng.random() < 0.3
    percent = Decimal(rng.choice((10, 15, 20))) if discounted else Decimal(0)
    if discounted:
        plan.coupon = f"SAVE{percent}"
    for line in [*plan.lines, *([plan.edit_line] if plan.edit_line else [])]:
        _apply_discount_and_tax([line], plan.store, percent)
    if not plan.is_virtual:
        plan.shipping = plan.store.shipping
        if discounted and ("shipping_discount" in plan.features or rng.random() < 0.35):
            plan.shipping_discount = rng.choice((plan.shipping, _round(plan.shipping / 2, cur)))
    plan.payment_method = rng.choice(("checkmo", "banktransfer", "braintree", "paypal_express"))


def _set_rates(plan: OrderPlan, usd_per_unit: dict[tuple[date, str], Decimal]) -> None:
    day = plan.created_at.date()
    base, order = plan.store.base_currency, plan.store.order_currency
    if base != order:
        plan.base_to_order_rate = (usd_per_unit[(day, base)] / usd_per_unit[(day, order)]).quantize(
            Decimal("0.0001"), rounding=ROUND_HALF_UP
        )
    plan.base_to_global_rate = usd_per_unit.get((day, base), _USD_PER_UNIT[base]).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


def _set_identity(rng: random.Random, plan: OrderPlan) -> None:
    shopper = plan.shopper
    plan.customer_id = shopper.customer_id_at(plan.created_at)
    if plan.customer_id is not None and plan.store.website_id != shopper.store.website_id:
        plan.customer_id = None  # accounts are per website
    email = shopper.email_at(plan.created_at)
    if plan.customer_id is not None:
        plan.email = email  # Magento copies the account email
    else:
        plan.email = _typed_email(rng, shopper, email)
    plan.billing_email = _typed_email(rng, shopper, email)


def _memo_rows(rng: random.Random, plan: OrderPlan) -> list[tuple[list[tuple[Line, int]], bool]]:
    """Which lines (and whether shipping) each credit memo of the scenario refunds."""
    everything = [(line, line.qty) for line in plan.lines]
    if plan.scenario == "full_refund":
        return [(everything, True)]
    if plan.scenario == "two_step_refund":
        return [(everything[:1], False), (everything[1:], True)]
    if "giftcard" in plan.options:
        return [([(plan.lines[-1], plan.lines[-1].qty)], False)]
    refundable = [line for line in plan.lines if not line.is_giftcard] or plan.lines
    line = rng.choice(refundable)
    return [([(line, rng.randint(1, line.qty))], False)]


def _step_delays(rng: random.Random, plan: OrderPlan) -> list[tuple[str, float]]:
    """(event, hours after the previous event) for the whole life of the order."""
    steps: list[tuple[str, float]] = []
    first_refund = True
    for step in _SCENARIO_STEPS[plan.scenario]:
        if step.startswith("place"):
            steps.append((step, 0.0))
            continue
        if step in ("refund", "memo_void"):
            slot = "late_refund" if "late" in plan.options and first_refund else "refund"
            first_refund = False
            hours = rng.uniform(*_STEP_HOURS[slot])
            if step == "memo_void":
                steps += [("memo_open", hours), ("memo_cancel", rng.uniform(*_STEP_HOURS["settle"]))]
            elif "open_first" in plan.options:
                steps += [("memo_open", hours), ("memo_refund", rng.uniform(*_STEP_HOURS["settle"]))]
            else:
                steps.append(("memo_refund", hours))
            continue
        steps.append((step, rng.uniform(*_STEP_HOURS[step])))
    return steps


def _fit(created: datetime, steps: list[tuple[str, float]], window: Window) -> tuple[datetime, list[int]]:
    """Offsets in whole seconds, strictly increasing, squeezed so the last one stays in the window."""
    offsets, total = [], 0.0
    for _, hours in steps:
        total += hours * 3600
        offsets.append(total)
    room = (window.last - created).total_seconds()
    if offsets[-1] > room:
        offsets = [o * room / offsets[-1] for o in offsets]
    seconds: list[int] = []
    for o in offsets:
        seconds.append(max(int(o), seconds[-1] + 1) if seconds else 0)
    overflow = (created + timedelta(seconds=seconds[-1]) - window.last).total_seconds()
    if overflow > 0:
        created -= timedelta(seconds=overflow)
    return created, seconds


_MEMO_STATES = {"memo_open": 1, "memo_refund": 2, "memo_cancel": 3}


def _build_timeline(rng: random.Random, plan: OrderPlan, window: Window) -> None:
    steps = _step_delays(rng, plan)
    plan.created_at, offsets = _fit(plan.created_at, steps, window)
    memo_specs = iter(_memo_rows(rng, plan)) if any(s.startswith("memo") for s, _ in steps) else iter(())
    memo: CreditMemo | None = None
    for (step, _), offset in zip(steps, offsets, strict=True):
        moment = plan.created_at + timedelta(seconds=offset)
        still_open = memo is not None and memo.versions[-1][1] == 1
        if step == "memo_open" or (step == "memo_refund" and not still_open):
            rows, shipping = next(memo_specs)
            memo = CreditMemo(plan, rows, shipping)
            if "adjustments" in plan.options:
                memo.adjustment_negative = _round(
                    Decimal(5) * _PRICE_FACTOR.get(plan.currency, _ONE), plan.currency
                )
                memo.adjustment_positive = _round(
                    Decimal(2) * _PRICE_FACTOR.get(plan.currency, _ONE), plan.currency
                )
            plan.memos.append(memo)
        if step in _MEMO_STATES:
            memo.versions.append((moment, _MEMO_STATES[step]))
        plan.events.append((moment, step, memo if step in _MEMO_STATES else None))


def _number(plans: list[OrderPlan]) -> None:
    """entity_id in creation order; increment_id per store view (store 1: 000000001, store 2: 200000001)."""
    per_store: dict[int, int] = {}
    item_id = 0
    for entity_id, plan in enumerate(sorted(plans, key=lambda p: (p.created_at, p.shopper.index)), 1):
        plan.entity_id = entity_id
        per_store[plan.store.store_id] = per_store.get(plan.store.store_id, 0) + 1
        plan.increment_id = _increment_id(plan.store.store_id, per_store[plan.store.store_id])
        for line in [*plan.lines, *([plan.edit_line] if plan.edit_line else [])]:
            for item in (line, *line.children):
                item_id += 1
                item.item_id = item_id


def _increment_id(store_id: int, sequence: int) -> str:
    return f"{sequence:09d}" if store_id == 1 else f"{store_id}{sequence:08d}"


def _number_memos(memos: list[CreditMemo]) -> None:
    per_store: dict[int, int] = {}
    item_id = 0
    for entity_id, memo in enumerate(sorted(memos, key=lambda m: (m.created_at, m.order.entity_id)), 1):
        memo.entity_id = entity_id
        store_id = memo.order.store.store_id
        per_store[store_id] = per_store.get(store_id, 0) + 1
        memo.increment_id = _increment_id(store_id, per_store[store_id])
        memo.item_ids = []
        for line, _ in memo.rows:
            for _item in (line, *line.children):
                item_id += 1
                memo.item_ids.append(item_id)


# --------------------------------------------------------------------------------------------------
# Rendering native records
# --------------------------------------------------------------------------------------------------
@dataclass
class OrderSnapshot:
    state: str = "new"
    status: str = "pending"
    invoiced: bool = False
    shipped: bool = False
    canceled: bool = False
    edited: bool = False
    held_from: tuple[str, str] | None = None
    refunded: list[CreditMemo] = field(default_factory=list)


def _apply(snapshot: OrderSnapshot, step: str, memo: CreditMemo | None, plan: OrderPlan) -> bool:
    """Move the snapshot through one event; True when the event makes a new order version."""
    simple_states = {
        "place_new": ("new", "pending"),
        "place_pending_payment": ("pending_payment", "pending_payment"),
        "place_review": ("payment_review", "payment_review"),
        "invoice": ("processing", "processing"),
        "ship": ("complete", "complete"),
        "cancel": ("canceled", "canceled"),
        "custom_state": (MALFORMED_STATE, MALFORMED_STATE),
    }
    if step in simple_states:
        snapshot.state, snapshot.status = simple_states[step]
        snapshot.invoiced |= step == "invoice"
        snapshot.shipped |= step == "ship"
        snapshot.canceled |= step == "cancel"
    elif step == "hold":
        snapshot.held_from = (snapshot.state, snapshot.status)
        snapshot.state, snapshot.status = "holded", "holded"
    elif step == "unhold":
        snapshot.state, snapshot.status = snapshot.held_from or ("new", "pending")
    elif step == "edit":
        snapshot.edited = True
    elif step == "memo_refund":
        snapshot.refunded.append(memo)
        if _fully_refunded(plan, snapshot.refunded):
            snapshot.state, snapshot.status = "closed", "closed"
    else:  # memo_open, memo_cancel: the order itself does not change
        return False
    return True


def _refunded_qty(memos: list[CreditMemo], line: Line) -> int:
    """Units of a line (or of a child's parent line) refunded by these memos."""
    return sum(q for memo in memos for row, q in memo.rows if row is line or line in row.children)


def _fully_refunded(plan: OrderPlan, memos: list[CreditMemo]) -> bool:
    return all(_refunded_qty(memos, line) >= line.qty for line in plan.lines)


def _money(record: dict, plan: OrderPlan, **amounts: Decimal) -> None:
    """Set each amount and its base_* twin (order amount / base_to_order_rate, rounded)."""
    for key, value in amounts.items():
        record[key] = _json_number(value)
        record[f"base_{key}"] = _json_number(plan.to_base(value))


def _share(amount: Decimal, qty: int, of: int, currency: str) -> Decimal:
    return amount if qty == of else _round(amount * qty / of, currency)


def _item_static(plan: OrderPlan, line: Line) -> dict:
    """The fields of an order item that no later version changes (computed once per item)."""
    cached = plan.item_fields.get(line.item_id)
    if cached is not None:
        return cached
    cur = plan.currency
    item: dict = {"applied_rule_ids": "2"} if line.discount else {}
    _money(
        item,
        plan,
        discount_amount=line.discount,
        discount_tax_compensation_amount=Decimal(0),
        original_price=line.price,
        price=line.price,
        price_incl_tax=line.price + _round(line.tax / line.qty, cur),
        row_total=line.row_total,
        row_total_incl_tax=line.row_total + line.tax,
        tax_amount=line.tax,
    )
    item.update(
        {
            "created_at": _ts(plan.created_at),
            "discount_percent": _json_number(line.discount_percent),
            "free_shipping": 0,
            "is_qty_decimal": 0,
            "is_virtual": int(line.product.is_virtual),
            "item_id": line.item_id,
            "name": line.product.name,
            "no_discount": int(line.is_giftcard),
            "order_id": plan.entity_id,
            "product_id": line.product.product_id,
            "product_type": line.product.product_type,
            "qty_ordered": line.qty,
            "quote_item_id": line.item_id + 7,
            "row_weight": _json_number(line.product.weight * line.qty),
            "sku": line.product.sku,
            "store_id": plan.store.store_id,
            "tax_percent": _json_number(line.tax_percent),
            "weight": _json_number(line.product.weight),
        }
    )
    plan.item_fields[line.item_id] = item
    return item


def _item_record(
    plan: OrderPlan, line: Line, snapshot: OrderSnapshot, updated_at: str, parent: dict | None = None
) -> dict:
    """One order item as this version shows it; `parent` is the parent item's record, if any."""
    cur = plan.currency
    qty_refunded = min(_refunded_qty(snapshot.refunded, line), line.qty)
    invoiced = snapshot.invoiced
    item = dict(_item_static(plan, line))
    _money(
        item,
        plan,
        amount_refunded=_share(line.row_total, qty_refunded, line.qty, cur),
        discount_invoiced=line.discount if invoiced else Decimal(0),
        discount_refunded=_share(line.discount, qty_refunded, line.qty, cur),
        row_invoiced=line.row_total if invoiced else Decimal(0),
        tax_invoiced=line.tax if invoiced else Decimal(0),
        tax_refunded=_share(line.tax, qty_refunded, line.qty, cur),
    )
    item.update(
        {
            "qty_canceled": line.qty if snapshot.canceled else 0,
            "qty_invoiced": line.qty if invoiced else 0,
            "qty_refunded": qty_refunded,
            "qty_shipped": line.qty if snapshot.shipped and not line.product.is_virtual else 0,
            "updated_at": updated_at,
        }
    )
    if parent is not None:
        item["parent_item_id"] = parent["item_id"]
        item["parent_item"] = parent
    return item


def _items(plan: OrderPlan, snapshot: OrderSnapshot, at: datetime) -> list[dict]:
    items, updated_at = [], _ts(at)
    for line in _active_lines(plan, snapshot):
        parent = _item_record(plan, line, snapshot, updated_at)
        items.append(parent)
        items += [_item_record(plan, child, snapshot, updated_at, parent) for child in line.children]
    return items


def _active_lines(plan: OrderPlan, snapshot: OrderSnapshot) -> list[Line]:
    return [*plan.lines, plan.edit_line] if snapshot.edited and plan.edit_line else list(plan.lines)


def _address(plan: OrderPlan, address_type: str, entity_id: int, email: str | None) -> dict:
    city, region, region_code, region_id, postcode = plan.shopper.address
    record = {"address_type": address_type, "city": city, "country_id": plan.shopper.store.country}
    if email is not None:
        record["email"] = email
    record.update(
        {
            "entity_id": entity_id,
            "firstname": plan.shopper.firstname,
            "lastname": plan.shopper.lastname,
            "parent_id": plan.entity_id,
            "postcode": postcode,
            "region": region,
            "region_code": region_code,
            "region_id": region_id,
            "street": [f"{10 + plan.shopper.index} Market Street"],
            "telephone": plan.shopper.telephone,
        }
    )
    return record


def _order_record(plan: OrderPlan, snapshot: OrderSnapshot, at: datetime) -> dict:
    lines = _active_lines(plan, snapshot)
    totals = _totals(lines, plan.shipping, plan.shipping_discount)
    paid = totals.grand_total if snapshot.invoiced else Decimal(0)
    record: dict = {}
    if plan.coupon:
        record["applied_rule_ids"] = "2"
    record.update({"base_currency_code": plan.store.base_currency})
    _money(
        record,
        plan,
        discount_amount=totals.discount_amount,
        grand_total=totals.grand_total,
        discount_tax_compensation_amount=Decimal(0),
        shipping_amount=totals.shipping_amount,
        shipping_discount_amount=totals.shipping_discount_amount,
        shipping_incl_tax=totals.shipping_amount,
        shipping_tax_amount=Decimal(0),
        subtotal=totals.subtotal,
        subtotal_incl_tax=totals.subtotal + totals.tax_amount,
        tax_amount=totals.tax_amount,
        total_due=totals.grand_total - paid,
    )
    if snapshot.invoiced:
        _money(
            record,
            plan,
            total_invoiced=totals.grand_total,
            total_paid=paid,
            subtotal_invoiced=totals.subtotal,
            tax_invoiced=totals.tax_amount,
            shipping_invoiced=totals.shipping_amount,
            discount_invoiced=totals.discount_amount,
        )
    if snapshot.canceled:
        _money(
            record,
            plan,
            total_canceled=totals.grand_total,
            subtotal_canceled=totals.subtotal,
            tax_canceled=totals.tax_amount,
            shipping_canceled=totals.shipping_amount,
            discount_canceled=totals.discount_amount,
        )
    if snapshot.refunded:
        _money(record, plan, **_refund_sums(snapshot.refunded))
    record.update(
        {
            "base_to_global_rate": _json_number(plan.base_to_global_rate),
            "base_to_order_rate": _json_number(plan.base_to_order_rate),
            "billing_address_id": 2 * plan.entity_id,
            "created_at": _ts(plan.created_at),
        }
    )
    if plan.email:
        record["customer_email"] = plan.email
    record.update(
        {"customer_firstname": plan.shopper.firstname, "customer_group_id": 1 if plan.customer_id else 0}
    )
    if plan.customer_id is not None:
        record["customer_id"] = plan.customer_id
    record.update(
        {
            "customer_is_guest": 0 if plan.customer_id else 1,
            "customer_lastname": plan.shopper.lastname,
            "customer_note_notify": 1,
            "email_sent": 1,
            "entity_id": plan.entity_id,
            "global_currency_code": "USD",
            "increment_id": plan.increment_id,
            "is_virtual": int(plan.is_virtual),
            "order_currency_code": plan.currency,
            "protect_code": f"{(plan.entity_id * 2654435761) % 16**6:06x}",
            "quote_id": plan.entity_id + 1000,
        }
    )
    if not plan.is_virtual:
        record["shipping_description"] = "Flat Rate - Fixed"
    record.update(
        {
            "state": snapshot.state,
            "status": snapshot.status,
            "store_currency_code": plan.store.base_currency,
            "store_id": plan.store.store_id,
            "store_name": plan.store.name,
            "store_to_base_rate": 0,
            "store_to_order_rate": 0,
            "total_item_count": sum(1 + len(line.children) for line in lines),
            "total_qty_ordered": sum(line.qty for line in lines),
            "updated_at": _ts(at),
            "weight": _json_number(sum((line.product.weight * line.qty for line in lines), Decimal(0))),
        }
    )
    if plan.coupon:
        record["coupon_code"] = plan.coupon
        record["discount_description"] = plan.coupon
    items = _items(plan, snapshot, at)
    record["items"] = items
    record["billing_address"] = _address(plan, "billing", 2 * plan.entity_id, plan.billing_email or None)
    record["payment"] = _payment(plan, totals, paid)
    record["status_histories"] = []
    record["extension_attributes"] = {"shipping_assignments": [_shipping_assignment(plan, totals, items)]}
    return record


def _refund_sums(memos: list[CreditMemo]) -> dict[str, Decimal]:
    sums = {
        "total_refunded": Decimal(0),
        "total_offline_refunded": Decimal(0),
        "subtotal_refunded": Decimal(0),
        "tax_refunded": Decimal(0),
        "shipping_refunded": Decimal(0),
        "discount_refunded": Decimal(0),
        "adjustment_positive": Decimal(0),
        "adjustment_negative": Decimal(0),
    }
    for memo in memos:
        t = _memo_totals(memo)
        sums["total_refunded"] += t["grand_total"]
        sums["total_offline_refunded"] += t["grand_total"]
        sums["subtotal_refunded"] += t["subtotal"]
        sums["tax_refunded"] += t["tax_amount"]
        sums["shipping_refunded"] += t["shipping_amount"]
        sums["discount_refunded"] += t["discount_amount"]  # negative, as Magento accumulates it
        sums["adjustment_positive"] += memo.adjustment_positive
        sums["adjustment_negative"] += memo.adjustment_negative
    return sums


def _payment(plan: OrderPlan, totals: Totals, paid: Decimal) -> dict:
    record: dict = {
        "account_status": None,
        "additional_information": [_PAYMENT_TITLES[plan.payment_method], ""],
    }
    _money(record, plan, amount_ordered=totals.grand_total)
    if paid:
        _money(record, plan, amount_paid=paid)
    _money(record, plan, shipping_amount=totals.shipping_amount)
    record.update(
        {
            "cc_last4": None,
            "entity_id": plan.entity_id,
            "method": plan.payment_method,
            "parent_id": plan.entity_id,
        }
    )
    return record


_PAYMENT_TITLES = {
    "checkmo": "Check / Money order",
    "banktransfer": "Bank Transfer Payment",
    "braintree": "Credit Card (Braintree)",
    "paypal_express": "PayPal Express Checkout",
}


def _shipping_assignment(plan: OrderPlan, totals: Totals, items: list[dict]) -> dict:
    total: dict = {}
    _money(
        total,
        plan,
        shipping_amount=totals.shipping_amount,
        shipping_discount_amount=totals.shipping_discount_amount,
        shipping_incl_tax=totals.shipping_amount,
        shipping_tax_amount=Decimal(0),
    )
    shipping: dict = {"total": total}
    if not plan.is_virtual:
        shipping = {
            "address": _address(plan, "shipping", 2 * plan.entity_id - 1, plan.billing_email or None),
            "method": "flatrate_flatrate",
            "total": total,
        }
    return {"shipping": shipping, "items": items}


def _memo_totals(memo: CreditMemo) -> dict[str, Decimal]:
    cur = memo.order.currency
    subtotal = sum((line.price * q for line, q in memo.rows), Decimal(0))
    discount = sum((_share(line.discount, q, line.qty, cur) for line, q in memo.rows), Decimal(0))
    tax = sum((_share(line.tax, q, line.qty, cur) for line, q in memo.rows), Decimal(0))
    shipping = memo.order.shipping if memo.refund_shipping else Decimal(0)
    if memo.refund_shipping:
        discount += memo.order.shipping_discount
    grand = subtotal + shipping + tax - discount + memo.adjustment_positive - memo.adjustment_negative
    return {
        "subtotal": subtotal,
        "discount_amount": -discount,
        "shipping_amount": shipping,
        "tax_amount": tax,
        "grand_total": grand,
    }


def _memo_item(memo: CreditMemo, line: Line, qty: int, entity_id: int, parent: Line | None) -> dict:
    plan, cur = memo.order, memo.order.currency
    of = (parent or line).qty
    item: dict = {}
    _money(
        item,
        plan,
        discount_amount=_share(line.discount, qty, of, cur),
        discount_tax_compensation_amount=Decimal(0),
        price=line.price,
        price_incl_tax=line.price + _round(line.tax / line.qty, cur),
        row_total=line.price * qty,
        row_total_incl_tax=line.price * qty + _share(line.tax, qty, of, cur),
        tax_amount=_share(line.tax, qty, of, cur),
    )
    item.update(
        {
            "entity_id": entity_id,
            "name": line.product.name,
            "parent_id": memo.entity_id,
            "product_id": line.product.product_id,
            "sku": line.product.sku,
            "order_item_id": line.item_id,
            "qty": qty,
        }
    )
    return item


def _memo_record(memo: CreditMemo, at: datetime, state: int) -> dict:
    plan = memo.order
    totals = _memo_totals(memo)
    record: dict = {"base_currency_code": plan.store.base_currency}
    _money(
        record,
        plan,
        adjustment=memo.adjustment_positive - memo.adjustment_negative,
        adjustment_negative=memo.adjustment_negative,
        adjustment_positive=memo.adjustment_positive,
        discount_amount=totals["discount_amount"],
        discount_tax_compensation_amount=Decimal(0),
        grand_total=totals["grand_total"],
        shipping_amount=totals["shipping_amount"],
        shipping_incl_tax=totals["shipping_amount"],
        shipping_tax_amount=Decimal(0),
        subtotal=totals["subtotal"],
        subtotal_incl_tax=totals["subtotal"] + totals["tax_amount"],
        tax_amount=totals["tax_amount"],
    )
    items, ids = [], iter(memo.item_ids)
    for line, qty in memo.rows:
        items.append(_memo_item(memo, line, qty, next(ids), None))
        items += [_memo_item(memo, child, qty, next(ids), line) for child in line.children]
    record.update(
        {
            "base_to_global_rate": _json_number(plan.base_to_global_rate),
            "base_to_order_rate": _json_number(plan.base_to_order_rate),
            "billing_address_id": 2 * plan.entity_id,
            "created_at": _ts(memo.created_at),
            "creditmemo_status": state,
            "email_sent": 1,
            "entity_id": memo.entity_id,
            "global_currency_code": "USD",
            "increment_id": memo.increment_id,
            "order_currency_code": plan.currency,
            "order_id": plan.entity_id,
            "shipping_address_id": 2 * plan.entity_id - 1,
            "state": state,
            "store_currency_code": plan.store.base_currency,
            "store_id": plan.store.store_id,
            "store_to_base_rate": 0,
            "store_to_order_rate": 0,
            "updated_at": _ts(at),
            "items": items,
            "comments": [],
        }
    )
    return record


def _render_order(plan: OrderPlan) -> tuple[list[dict], list[dict]]:
    """All versions of one order and of its credit memos."""
    orders, memos = [], []
    snapshot = OrderSnapshot()
    for moment, step, memo in plan.events:
        if memo is not None:
            memos.append(_memo_record(memo, moment, _MEMO_STATES[step]))
        if _apply(snapshot, step, memo, plan):
            orders.append(_order_record(plan, snapshot, moment))
    return orders, memos


def _corrupt(plan: OrderPlan, record: dict) -> dict:
    """Turn the single version of a malformed-order plan into the record it is meant to be."""
    if plan.scenario == "bad_amount":
        record["subtotal"] = "abc"
    elif plan.scenario == "negative_subtotal":
        record["subtotal"] = -abs(record["subtotal"]) or Decimal(-25)
        record["base_subtotal"] = -abs(record["base_subtotal"]) or Decimal(-25)
    elif plan.scenario == "no_email":
        record.pop("customer_email", None)
        record["billing_address"].pop("email", None)
        shipping = record["extension_attributes"]["shipping_assignments"][0]["shipping"]
        if "address" in shipping:
            shipping["address"].pop("email", None)
    return record


def _orphan_memo(template: CreditMemo, order_id: int, entity_id: int, at: datetime) -> dict:
    """A refunded credit memo whose order_id matches no order at all."""
    record = _memo_record(template, at, 2)
    record.update(
        {
            "entity_id": entity_id,
            "order_id": order_id,
            "created_at": _ts(at),
            "increment_id": f"9{entity_id:08d}",
            "billing_address_id": 2 * order_id,
            "shipping_address_id": 2 * order_id - 1,
        }
    )
    for offset, item in enumerate(record["items"], start=1):
        item.update(
            {
                "entity_id": entity_id * 100 + offset,
                "parent_id": entity_id,
                "order_item_id": order_id * 100 + offset,
            }
        )
    return record


# --------------------------------------------------------------------------------------------------
# FX, customers and files
# --------------------------------------------------------------------------------------------------
def _fx_walk(rng: random.Random, window: Window) -> dict[tuple[date, str], Decimal]:
    """Dollars per unit of each currency on each day (CHF included; it is left out of the file)."""
    rates: dict[tuple[date, str], Decimal] = {}
    current = dict(_USD_PER_UNIT)
    for day in window.dates():
        for currency in sorted(current):
            if currency != "USD":
                drift = Decimal(str(round(rng.uniform(-0.003, 0.003), 6)))
                current[currency] = (current[currency] * (1 + drift)).quantize(Decimal("0.00000001"))
            rates[(day, currency)] = current[currency]
    return rates


def _fx_rows(
    usd_per_unit: dict[tuple[date, str], Decimal], window: Window, program_currency: str
) -> list[str]:
    currencies = [c for c in ("USD", *FX_CURRENCIES) if c != program_currency]
    rows = ["date,currency,rate_to_program"]
    for day in window.dates():
        for currency in currencies:
            rate = usd_per_unit[(day, currency)] / usd_per_unit[(day, program_currency)]
            rows.append(f"{day.isoformat()},{currency},{rate.quantize(Decimal('0.000001'), ROUND_HALF_UP)}")
    return rows


def _customer_records(shoppers: list[Shopper]) -> list[dict]:
    records = []
    for shopper in shoppers:
        if shopper.customer_id is None:
            continue
        records.append(_customer_record(shopper, shopper.email, shopper.profile_updated_at))
        if shopper.new_email and shopper.email_changed_at:
            records.append(_customer_record(shopper, shopper.new_email, shopper.email_changed_at))
    return records


def _customer_record(shopper: Shopper, email: str, updated_at: datetime) -> dict:
    city, region, region_code, region_id, postcode = shopper.address
    cid = shopper.customer_id
    return {
        "id": cid,
        "group_id": 1,
        "default_billing": str(cid),
        "default_shipping": str(cid),
        "created_at": _ts(shopper.account_created_at),
        "updated_at": _ts(updated_at),
        "created_in": shopper.store.view_name,
        "email": email,
        "firstname": shopper.firstname,
        "lastname": shopper.lastname,
        "store_id": shopper.store.store_id,
        "website_id": shopper.store.website_id,
        "addresses": [
            {
                "id": cid,
                "customer_id": cid,
                "region": {"region_code": region_code, "region": region, "region_id": region_id},
                "region_id": region_id,
                "country_id": shopper.store.country,
                "street": [f"{10 + shopper.index} Market Street"],
                "telephone": shopper.telephone,
                "postcode": postcode,
                "city": city,
                "firstname": shopper.firstname,
                "lastname": shopper.lastname,
                "default_shipping": True,
                "default_billing": True,
            }
        ],
        "disable_auto_group_change": 0,
        "extension_attributes": {"is_subscribed": shopper.index % 3 == 0},
    }


def _by_update(records: list[dict], key: str) -> list[dict]:
    return sorted(records, key=lambda r: (r["updated_at"], r[key]))


def _write_json_array(path: Path, records: list[dict]) -> None:
    """One record per line inside the array: valid JSON, and readable in a diff."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(simplejson.dumps(r, use_decimal=True, ensure_ascii=False) for r in records)
    path.write_text(f"[\n{body}\n]\n" if records else "[]\n", encoding="utf-8")


def default_start(days: int, today: date | None = None) -> date:
    """The first day of the `days` days that end yesterday (UTC)."""
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=days)


# --------------------------------------------------------------------------------------------------
# Other platforms: shared helpers
# --------------------------------------------------------------------------------------------------
BC_STATUSES = {
    0: "Incomplete",
    1: "Pending",
    2: "Shipped",
    3: "Partially Shipped",
    4: "Refunded",
    5: "Cancelled",
    6: "Declined",
    7: "Awaiting Payment",
    8: "Awaiting Pickup",
    9: "Awaiting Shipment",
    10: "Completed",
    11: "Awaiting Fulfillment",
    12: "Manual Verification Required",
    13: "Disputed",
    14: "Partially Refunded",
}
BC_UNKNOWN_STATUS = (15, "Exchanged")  # a custom status id the status table does not know
_BC_PAYMENT_STATUS = {
    0: "",
    1: "pending",
    7: "pending",
    11: "captured",
    9: "captured",
    2: "captured",
    10: "captured",
    5: "void",
    6: "declined",
    14: "partially refunded",
    4: "refunded",
}


@dataclass(frozen=True)
class Item:
    """A catalog entry of the non-Magento stores (USD list price; `kind` physical/digital/giftcard)."""

    sku: str
    name: str
    usd_price: Decimal
    kind: str
    product_id: int
    bundle: bool = False


_ITEMS = (
    Item("TEE-ORG-M", "Radiant Tee", Decimal("22"), "physical", 111),
    Item("BAG-DRV", "Driven Backpack", Decimal("36"), "physical", 112),
    Item("BTL-AFF", "Affirm Water Bottle", Decimal("7"), "physical", 113),
    Item("HOOD-CHZ", "Chaz Kangeroo Hoodie", Decimal("52"), "physical", 114),
    Item("JKT-OLV", "Olivia Light Jacket", Decimal("77"), "physical", 115),
    Item("MAT-SPR", "Sprite Yoga Mat", Decimal("29"), "physical", 116),
    Item("KIT-YOGA", "Yoga Companion Kit", Decimal("68"), "physical", 117, bundle=True),
    Item("VID-PIL", "Advanced Pilates (video)", Decimal("18"), "digital", 118),
    Item("EBOOK-RUN", "Running Guide (ebook)", Decimal("12"), "digital", 119),
    Item("GC-25", "Gift Card 25", Decimal("25"), "giftcard", 120),
    Item("GC-50", "Gift Card 50", Decimal("50"), "giftcard", 121),
)
_ITEM_WEIGHTS = (14, 10, 10, 9, 7, 9, 6, 5, 4, 3, 2)


def _pick_items(rng: random.Random, count: int, force_kind: str | None = None) -> list[Item]:
    items = rng.choices(_ITEMS, weights=_ITEM_WEIGHTS, k=count)
    if force_kind == "giftcard":
        items[-1] = rng.choice([i for i in _ITEMS if i.kind == "giftcard"])
        if len(items) > 1 and items[0].kind == "giftcard":
            items[0] = _ITEMS[0]
    elif force_kind == "bundle":
        items[0] = next(i for i in _ITEMS if i.bundle)
    return items


def _price(item: Item, currency: str) -> Decimal:
    return _local_price(item.usd_price, currency, "giftcard" if item.kind == "giftcard" else "simple")


def _q(amount: Decimal, currency: str = "USD") -> Decimal:
    return _round(amount, currency)


def _fmt4(amount: Decimal) -> str:
    """BigCommerce money: a string with 4 decimals."""
    return f"{amount:.4f}"


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.replace(tzinfo=UTC))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_offset(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _iso_ms(moment: datetime, ms: int = 0) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timeline(
    rng: random.Random, created: datetime, steps: list[tuple[str, float]], window: Window
) -> tuple[datetime, list[tuple[str, datetime]]]:
    """`steps` (name, hours after the previous one; the first is creation) squeezed into the window."""
    created, offsets = _fit(created, steps, window)
    return created, [
        (name, created + timedelta(seconds=o)) for (name, _), o in zip(steps, offsets, strict=True)
    ]


def _hours(rng: random.Random, lo: float, hi: float) -> float:
    return rng.uniform(lo, hi)


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _identity_kind(rng: random.Random, count: int, later_kind: str) -> str:
    """A shopper's identity on a platform: registered, guest, or guest first then an account."""
    kind = _weighted(rng, {"registered": 55, "guest": 35, later_kind: 10})
    return kind


def _platform_email(rng: random.Random, shopper: Shopper, platform: str) -> str:
    """The email as typed at a checkout of `platform` (shopper 3 spells it differently everywhere)."""
    if shopper.index == 3:
        email = shopper.email
        return {"bigcommerce": email.upper(), "commercetools": f"  {email.title()}"}.get(
            platform, f"{email} "
        )
    return _typed_email(rng, shopper, shopper.email)


def _plan_list(shoppers: list[Shopper], platform: str) -> list[tuple[Shopper, datetime]]:
    return sorted(
        ((s, t) for s in shoppers for t in s.platform_times.get(platform, [])),
        key=lambda st: (st[1], st[0].index),
    )


def _force(plans: list, required: tuple[str, ...]) -> None:
    """Give the required scenarios to the earliest plans (room for their steps)."""
    for plan, scenario in zip(plans, required, strict=False):
        plan.scenario = scenario


def _by_time(records: list[dict], stamp, key: str) -> list[dict]:
    return sorted(records, key=lambda r: (stamp(r), str(r[key])))


# --------------------------------------------------------------------------------------------------
# BigCommerce: v2 orders with products inline, v3 refunds and customers, two stores
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BcStore:
    store_hash: str
    country: str
    currencies: dict[str, int]  # transactional currency -> weight
    tax_rate: dict[str, Decimal]
    shipping: dict[str, Decimal]  # ex tax (exclusive stores) or inc tax (inclusive stores)
    inclusive: bool
    multi_currency: bool
    channels: tuple[int, ...]


BC_STORES = (
    BcStore(
        "k3x9w2pq7d",
        "US",
        {"USD": 1},
        {"USD": Decimal("0.08")},
        {"USD": Decimal("7.95")},
        inclusive=False,
        multi_currency=False,
        channels=(1, 1, 1, 2),
    ),
    BcStore(
        "v8m4t6zr1c",
        "DE",
        {"EUR": 60, "CAD": 25, "USD": 15},
        {"EUR": Decimal("0.19"), "CAD": Decimal("0.13"), "USD": Decimal("0")},
        {"EUR": Decimal("5.9"), "CAD": Decimal("9.9"), "USD": Decimal("6.5")},
        inclusive=True,
        multi_currency=True,
        channels=(1,),
    ),
)
_BC_CURRENCY_IDS = {"USD": 1, "EUR": 2, "CAD": 3}
_BC_COUNTRIES = {"US": "United States", "DE": "Germany", "CA": "Canada"}

_BC_SCENARIOS = {
    "complete": 40,
    "shipped": 10,
    "awaiting_fulfillment": 8,
    "pending": 5,
    "canceled": 4,
    "declined": 2,
    "incomplete": 2,
    "full_refund": 6,
    "partial_refund": 9,
    "two_refunds": 2,
}
_BC_REQUIRED = (
    "full_refund",
    "full_refund",
    "partial_refund",
    "partial_refund",
    "two_refunds",
    "canceled",
    "declined",
    "pending",
    "incomplete",
    "awaiting_fulfillment",
)
_BC_STEPS = {
    "complete": ((11, 0), (2, (12, 96)), (10, (24, 120))),
    "shipped": ((11, 0), (2, (12, 96))),
    "awaiting_fulfillment": ((11, 0),),
    "pending": ((1, 0),),
    "canceled": ((7, 0), (5, (1, 48))),
    "declined": ((1, 0), (6, (0.1, 6))),
    "incomplete": ((0, 0), (11, (0.5, 30)), (2, (12, 96))),
    "full_refund": ((11, 0), (2, (12, 96)), ("refund", (24, 240))),
    "partial_refund": ((11, 0), (2, (12, 96)), ("refund", (24, 240))),
    "two_refunds": ((11, 0), (2, (12, 96)), ("refund", (24, 120)), ("refund", (24, 120))),
    # malformed orders: one version
    "bad_amount": ((11, 0),),
    "negative_amount": ((11, 0),),
    "no_email": ((11, 0),),
    "unknown_status": ((11, 0), (2, (12, 96)), ("custom", (24, 96))),
}
_BC_MALFORMED = ("bad_amount", "negative_amount", "no_email", "unknown_status")


@dataclass(eq=False)
class BcLine:
    item: Item
    qty: int
    price_ex: Decimal
    price_inc: Decimal
    discounts: list[tuple[str, Decimal]] = field(default_factory=list)  # (kind, amount ex tax)
    children: list[Item] = field(default_factory=list)
    product_id: int = 0  # the order product id (= refund item_id)
    child_ids: list[int] = field(default_factory=list)

    @property
    def bc_type(self) -> str:
        return "giftcertificate" if self.item.kind == "giftcard" else self.item.kind

    @property
    def discount(self) -> Decimal:
        return sum((a for _, a in self.discounts), Decimal(0))


@dataclass(eq=False)
class BcPlan:
    shopper: Shopper
    store: BcStore
    created_at: datetime
    scenario: str
    currency: str = "USD"
    channel_id: int = 1
    customer_id: int = 0
    email: str | None = ""
    lines: list[BcLine] = field(default_factory=list)
    shipping_inc: Decimal = Decimal(0)
    shipping_ex: Decimal = Decimal(0)
    coupon: str | None = None
    exchange_rate: Decimal = _ONE
    events: list[tuple[str | int, datetime]] = field(default_factory=list)
    refunds: list[tuple[datetime, list[tuple[BcLine, int]], bool]] = field(default_factory=list)
    order_id: int = 0
    address_id: int = 0
    feature: str | None = None  # "giftcard" or "bundle": a line every data set contains


def _bc_lines(rng: random.Random, plan: BcPlan, usd_per_unit) -> None:
    store, cur = plan.store, plan.currency
    rate = store.tax_rate[cur]
    count = rng.choices((1, 2, 3, 4), weights=(40, 32, 18, 10))[0]
    if plan.scenario in ("partial_refund", "two_refunds"):
        count = max(2, count)
    items = _pick_items(rng, count, plan.feature)
    discounted = rng.random() < 0.3
    pct = Decimal(rng.choice((10, 15, 20))) if discounted else Decimal(0)
    plan.coupon = f"SAVE{pct}" if discounted else None
    manual = rng.random() < 0.06
    for item in items:
        qty = 1 if item.kind != "physical" else rng.choices((1, 2, 3), weights=(75, 18, 7))[0]
        price = _price(item, cur)
        item_rate = Decimal(0) if item.kind == "giftcard" else rate
        if store.inclusive:
            inc, ex = price, _q(price / (1 + item_rate))
        else:
            ex, inc = price, price + _q(price * item_rate)
        line = BcLine(item, qty, ex, inc)
        if item.bundle:
            line.children = [_ITEMS[2], _ITEMS[5]]
        if item.kind != "giftcard":
            if discounted:
                line.discounts.append(("coupon", _q(ex * qty * pct / 100)))
            if manual and not any(d for d, _ in line.discounts if d == "manual"):
                line.discounts.append(
                    ("manual", min(_q(Decimal(5) * _PRICE_FACTOR.get(cur, _ONE)), ex * qty))
                )
                manual = False
        plan.lines.append(line)
    if any(line.item.kind == "physical" for line in plan.lines):
        ship = store.shipping[cur]
        if store.inclusive:
            plan.shipping_inc, plan.shipping_ex = ship, _q(ship / (1 + rate))
        else:
            plan.shipping_ex, plan.shipping_inc = ship, ship
    if store.multi_currency and cur != "USD":
        day = plan.created_at.date()
        plan.exchange_rate = (usd_per_unit[(day, "USD")] / usd_per_unit[(day, cur)]).quantize(
            Decimal("0.0000000001"), rounding=ROUND_HALF_UP
        )


def _bc_totals(plan: BcPlan) -> dict[str, Decimal]:
    rate = plan.store.tax_rate[plan.currency]
    sub_ex = sum((line.price_ex * line.qty for line in plan.lines), Decimal(0))
    sub_inc = sum((line.price_inc * line.qty for line in plan.lines), Decimal(0))
    coupon = sum((a for line in plan.lines for k, a in line.discounts if k == "coupon"), Decimal(0))
    manual = sum((a for line in plan.lines for k, a in line.discounts if k == "manual"), Decimal(0))
    line_tax = sum(
        (
            _q((line.price_ex * line.qty - line.discount) * (0 if line.item.kind == "giftcard" else rate))
            for line in plan.lines
        ),
        Decimal(0),
    )
    ship_tax = plan.shipping_inc - plan.shipping_ex if plan.store.inclusive else Decimal(0)
    total_ex = sub_ex - coupon - manual + plan.shipping_ex
    total_tax = line_tax + ship_tax
    return {
        "subtotal_ex_tax": sub_ex,
        "subtotal_inc_tax": sub_inc,
        "subtotal_tax": sub_inc - sub_ex,
        "coupon_discount": coupon,
        "discount_amount": manual,
        "total_ex_tax": total_ex,
        "total_tax": total_tax,
        "total_inc_tax": total_ex + total_tax,
    }


def _bc_product(plan: BcPlan, line: BcLine, refunded: int, item: Item | None = None, pid: int = 0) -> dict:
    child = item is not None
    it = item or line.item
    ex = Decimal(0) if child else line.price_ex
    inc = Decimal(0) if child else line.price_inc
    qty = line.qty
    return {
        "id": pid if child else line.product_id,
        "order_id": plan.order_id,
        "product_id": it.product_id,
        "order_address_id": plan.address_id,
        "name": it.name,
        "sku": it.sku,
        "type": "physical" if child else line.bc_type,
        "base_price": _fmt4(ex),
        "price_ex_tax": _fmt4(ex),
        "price_inc_tax": _fmt4(inc),
        "price_tax": _fmt4(inc - ex),
        "base_total": _fmt4(ex * qty),
        "total_ex_tax": _fmt4(ex * qty),
        "total_inc_tax": _fmt4(inc * qty),
        "total_tax": _fmt4((inc - ex) * qty),
        "quantity": qty,
        "is_refunded": refunded >= qty,
        "quantity_refunded": refunded,
        "refund_amount": _fmt4(_q(inc * refunded)),
        "quantity_shipped": 0,
        "parent_order_product_id": line.product_id if child else None,
        "is_bundled_product": child,
        "applied_discounts": []
        if child
        else [
            {
                "id": "manual-discount" if kind == "manual" else "coupon",
                "amount": _fmt4(value),
                "name": "Manual Discount" if kind == "manual" else plan.coupon,
                "code": None if kind == "manual" else plan.coupon,
                "target": "order",
            }
            for kind, value in line.discounts
        ],
        "gift_certificate_id": None,
    }


def _bc_order(plan: BcPlan, status_id: int, status: str, at: datetime, refunded: dict[int, int]) -> dict:
    t = _bc_totals(plan)
    shopper = plan.shopper
    cur = plan.currency
    city, region, _, _, postcode = shopper.address
    country = {"EUR": "DE", "CAD": "CA"}.get(cur, plan.store.country) if plan.store.multi_currency else "US"
    products = []
    for line in plan.lines:
        products.append(_bc_product(plan, line, refunded.get(line.product_id, 0)))
        for child, cid in zip(line.children, line.child_ids, strict=True):
            products.append(_bc_product(plan, line, 0, child, cid))
    record = {
        "id": plan.order_id,
        "customer_id": plan.customer_id,
        "date_created": _rfc2822(plan.created_at),
        "date_modified": _rfc2822(at),
        "date_shipped": "",
        "status_id": status_id,
        "status": status,
        "subtotal_ex_tax": _fmt4(t["subtotal_ex_tax"]),
        "subtotal_inc_tax": _fmt4(t["subtotal_inc_tax"]),
        "subtotal_tax": _fmt4(t["subtotal_tax"]),
        "base_shipping_cost": _fmt4(plan.shipping_ex),
        "shipping_cost_ex_tax": _fmt4(plan.shipping_ex),
        "shipping_cost_inc_tax": _fmt4(plan.shipping_inc),
        "shipping_cost_tax": _fmt4(plan.shipping_inc - plan.shipping_ex),
        "total_ex_tax": _fmt4(t["total_ex_tax"]),
        "total_inc_tax": _fmt4(t["total_inc_tax"]),
        "total_tax": _fmt4(t["total_tax"]),
        "is_tax_inclusive_pricing": plan.store.inclusive,
        "items_total": sum(line.qty for line in plan.lines),
        "items_shipped": sum(line.qty for line in plan.lines) if status_id in (2, 10) else 0,
        "payment_method": "Credit Card",
        "payment_status": _BC_PAYMENT_STATUS.get(status_id, ""),
        "refunded_amount": "0.0000",
        "order_is_digital": not any(line.item.kind == "physical" for line in plan.lines),
        "store_credit_amount": "0.0000",
        "gift_certificate_amount": "0.0000",
        "currency_id": _BC_CURRENCY_IDS[cur],
        "currency_code": cur,
        "currency_exchange_rate": "1.0000000000",
        "default_currency_id": _BC_CURRENCY_IDS[cur],
        "default_currency_code": cur,
        "discount_amount": _fmt4(t["discount_amount"]),
        "coupon_discount": _fmt4(t["coupon_discount"]),
        "billing_address": {
            "first_name": shopper.firstname,
            "last_name": shopper.lastname,
            "street_1": f"{10 + shopper.index} Market Street",
            "city": city,
            "state": region,
            "zip": postcode,
            "country": _BC_COUNTRIES[country],
            "country_iso2": country,
            "phone": shopper.telephone,
            "email": plan.email or "",
        },
        "order_source": "www" if plan.channel_id == 1 else "pos",
        "channel_id": plan.channel_id,
        "shipping_addresses": {
            "url": f"https://api.bigcommerce.com/stores/{plan.store.store_hash}/v2/orders/{plan.order_id}/shippingaddresses",
            "resource": f"/orders/{plan.order_id}/shippingaddresses",
        },
        "store_default_currency_code": "USD" if plan.store.multi_currency and cur != "USD" else "",
        "store_default_to_transactional_exchange_rate": f"{plan.exchange_rate:.10f}",
        "custom_status": status,
        "customer_locale": "de" if cur == "EUR" else "en",
        "products": products,
    }
    if status_id in (2, 10):
        record["date_shipped"] = record["date_modified"]
    return record


def _bc_refund(
    plan: BcPlan, rid: int, at: datetime, rows: list[tuple[BcLine, int]], shipping: bool, numbers: bool
) -> dict:
    rate = plan.store.tax_rate[plan.currency]
    items, total, tax = [], Decimal(0), Decimal(0)
    for line, qty in rows:
        unit_after = line.price_ex - line.discount / line.qty
        ex = _q(unit_after * qty)
        line_tax = Decimal(0) if line.item.kind == "giftcard" else _q(ex * rate)
        if plan.store.inclusive:  # the amount asked for is what the shopper paid, tax included
            requested = ex + line_tax
            total += requested
        else:
            requested = ex
            total += ex + line_tax
        tax += line_tax
        items.append(
            {
                "item_type": "PRODUCT",
                "item_id": line.product_id,
                "quantity": qty,
                "requested_amount": requested if numbers else None,
            }
        )
    if shipping and plan.shipping_inc:
        items.append(
            {"item_type": "SHIPPING", "item_id": plan.address_id, "requested_amount": plan.shipping_inc}
        )
        total += plan.shipping_inc
        tax += plan.shipping_inc - plan.shipping_ex
    return {
        "id": rid,
        "order_id": plan.order_id,
        "user_id": 0,
        "created": _iso_offset(at),
        "reason": "Customer requires a refund.",
        "total_amount": total,
        "total_tax": tax,
        "uses_merchant_override_values": False,
        "payments": [
            {
                "id": rid + 1000,
                "provider_id": "braintree",
                "amount": total,
                "offline": False,
                "is_declined": False,
                "declined_message": "",
            }
        ],
        "items": items,
    }


def _bc_customer(cid: int, shopper: Shopper, email: str, created: datetime, modified: datetime) -> dict:
    return {
        "id": cid,
        "email": email,
        "first_name": shopper.firstname,
        "last_name": shopper.lastname,
        "company": "",
        "phone": shopper.telephone,
        "customer_group_id": 0,
        "notes": "",
        "tax_exempt_category": "",
        "date_created": _iso(created),
        "date_modified": _iso(modified),
        "registration_ip_address": "",
        "accepts_product_review_abandoned_cart_emails": False,
        "channel_ids": [1],
        "origin_channel_id": 1,
    }


def _generate_bigcommerce(
    rng: random.Random, shoppers: list[Shopper], window: Window, usd_per_unit
) -> tuple[dict, int]:
    """Every BigCommerce record per store hash ({hash: {orders, refunds, customers}}) and how many
    records are malformed on purpose."""
    profiles: dict[int, dict] = {}
    plans: list[BcPlan] = []
    for shopper, moment in _plan_list(shoppers, "bigcommerce"):
        profile = profiles.get(shopper.index)
        if profile is None:
            store = BC_STORES[0] if rng.random() < 0.65 else BC_STORES[1]
            if shopper.index == 3:
                store = BC_STORES[0]
            count = len(shopper.platform_times["bigcommerce"])
            kind = _identity_kind(rng, count, "registers_later")
            if kind == "registers_later" and count < 2:
                kind = "registered"
            if shopper.index == 3:
                kind = "guest"  # the messy multi-platform shopper checks out as a guest here
            profile = profiles[shopper.index] = {
                "store": store,
                "kind": kind,
                "currency": _weighted(rng, store.currencies),
                "times": shopper.platform_times["bigcommerce"],
            }
        plans.append(
            BcPlan(
                shopper,
                profile["store"],
                moment,
                _weighted(rng, _BC_SCENARIOS),
                currency=profile["currency"],
                channel_id=rng.choice(profile["store"].channels),
            )
        )
    if not plans:
        return {}, 0
    present = {profile["currency"] for profile in profiles.values()}
    movable = [i for i in dict.fromkeys(p.shopper.index for p in plans) if i not in _FORCED_PLATFORMS]
    for currency, index in zip([c for c in ("EUR", "CAD") if c not in present], movable[::-1], strict=False):
        profiles[index].update(store=BC_STORES[1], currency=currency)  # every data set has both
        for plan in plans:
            if plan.shopper.index == index:
                plan.store, plan.currency, plan.channel_id = BC_STORES[1], currency, 1
    _force(plans, _BC_REQUIRED)
    per_kind = max(1, round(len(plans) * 0.003))
    pool = [
        p
        for p in plans
        if p.scenario in ("complete", "shipped", "awaiting_fulfillment")
        and p.shopper.index not in _FORCED_PLATFORMS
    ]
    malformed = 0
    for kind in _BC_MALFORMED:
        for _ in range(per_kind):
            if pool:
                plan = pool.pop(rng.randrange(len(pool)))
                plan.scenario = kind
                malformed += 1
    # identity: account creation per store, ids in creation order
    accounts: list[tuple[datetime, int, Shopper, BcStore]] = []
    for index, profile in profiles.items():
        shopper = next(p.shopper for p in plans if p.shopper.index == index)
        times = profile["times"]
        if profile["kind"] == "registered":
            created = (
                window.first - timedelta(days=rng.randint(20, 500), seconds=rng.randint(0, 86399))
                if rng.random() < 0.5
                else _between(rng, max(window.first, times[0] - timedelta(days=3)), times[0])
            )
        elif profile["kind"] == "registers_later":
            split = rng.randint(1, len(times) - 1)
            created = _between(
                rng, times[split - 1] + timedelta(seconds=1), times[split] - timedelta(seconds=1)
            )
        else:
            continue
        profile["registered_at"] = created
        accounts.append((created, index, shopper, profile["store"]))
    customers: dict[str, list[dict]] = {s.store_hash: [] for s in BC_STORES}
    next_cid = {s.store_hash: 1 for s in BC_STORES}
    for created, index, shopper, store in sorted(accounts, key=lambda a: (a[0], a[1])):
        cid = next_cid[store.store_hash]
        next_cid[store.store_hash] += 1
        profiles[index]["customer_id"] = cid
        first_seen = max(created, window.first)
        modified = (
            first_seen
            if created >= window.first
            else _between(rng, window.first, window.last - timedelta(days=1))
        )
        customers[store.store_hash].append(_bc_customer(cid, shopper, shopper.email, created, modified))
        if rng.random() < 0.15:  # the profile is edited again later (a new version, same email)
            later = min(window.last, _between(rng, modified + timedelta(seconds=1), window.last))
            customers[store.store_hash].append(_bc_customer(cid, shopper, shopper.email, created, later))
    # orders
    orders: dict[str, list[dict]] = {s.store_hash: [] for s in BC_STORES}
    refunds: dict[str, list[dict]] = {s.store_hash: [] for s in BC_STORES}
    next_oid = {s.store_hash: 100 for s in BC_STORES}
    next_pid = {s.store_hash: 1 for s in BC_STORES}
    refund_events: dict[str, list] = {s.store_hash: [] for s in BC_STORES}
    forced_features = iter(("giftcard", "bundle"))
    for plan in sorted(plans, key=lambda p: (p.created_at, p.shopper.index)):
        profile = profiles[plan.shopper.index]
        store = plan.store
        steps: list[tuple[str, float]] = []
        for status, span in _BC_STEPS[plan.scenario]:
            hours = 0.0 if span == 0 else _hours(rng, *span)
            steps.append((str(status), hours))
            if status == "refund":
                steps.append(("refund_status", rng.uniform(0.01, 0.2)))
        plan.created_at, events = _timeline(rng, plan.created_at, steps, window)
        registered_at = profile.get("registered_at")
        if registered_at is not None and plan.created_at >= registered_at:
            plan.customer_id = profile["customer_id"]
        plan.email = _platform_email(rng, plan.shopper, "bigcommerce")
        plan.order_id = next_oid[store.store_hash]
        next_oid[store.store_hash] += 1
        plan.address_id = plan.order_id + 50000
        feature = None
        if plan.scenario == "partial_refund":
            feature = next(forced_features, None)
        plan.feature = feature
        _bc_lines(rng, plan, usd_per_unit)
        for line in plan.lines:
            line.product_id = next_pid[store.store_hash]
            next_pid[store.store_hash] += 1
            for _ in line.children:
                line.child_ids.append(next_pid[store.store_hash])
                next_pid[store.store_hash] += 1
        # refunds: which lines
        if plan.scenario == "full_refund":
            specs = [([(line, line.qty) for line in plan.lines], True)]
        elif plan.scenario == "two_refunds":
            specs = [
                ([(plan.lines[0], plan.lines[0].qty)], False),
                ([(line, line.qty) for line in plan.lines[1:]], True),
            ]
        elif plan.scenario == "partial_refund":
            if feature == "giftcard":
                target = plan.lines[-1]
            else:
                target = rng.choice(
                    [line for line in plan.lines if line.item.kind != "giftcard"] or plan.lines
                )
            specs = [([(target, rng.randint(1, target.qty))], False)]
        else:
            specs = []
        spec_iter = iter(specs)
        refunded: dict[int, int] = {}
        versions = []
        for name, moment in events:
            if name == "refund":
                rows, shipping = next(spec_iter)
                refund_events[store.store_hash].append((moment, plan, rows, shipping, rng.random() < 0.5))
                for line, qty in rows:
                    refunded[line.product_id] = refunded.get(line.product_id, 0) + qty
                continue
            if name == "refund_status":
                full = all(refunded.get(line.product_id, 0) >= line.qty for line in plan.lines)
                status_id = 4 if full else 14
            elif name == "custom":
                status_id = BC_UNKNOWN_STATUS[0]
            else:
                status_id = int(name)
            status = BC_STATUSES.get(status_id, BC_UNKNOWN_STATUS[1])
            versions.append(_bc_order(plan, status_id, status, moment, dict(refunded)))
        if plan.scenario == "bad_amount":
            versions[0]["subtotal_ex_tax"] = "abc"
        elif plan.scenario == "negative_amount":
            versions[0]["subtotal_ex_tax"] = "-" + versions[0]["subtotal_ex_tax"]
        elif plan.scenario == "no_email":
            for v in versions:
                v["customer_id"] = 0
                v["billing_address"]["email"] = ""
        orders[store.store_hash] += versions
    for store_hash, events in refund_events.items():
        rid = 1
        for moment, plan, rows, shipping, numbers in sorted(events, key=lambda e: (e[0], e[1].order_id)):
            refunds[store_hash].append(_bc_refund(plan, rid, moment, rows, shipping, numbers))
            rid += 1
    # a refund for an order that never exists (numbers, so it needs no order line to be valued)
    store_hash = BC_STORES[0].store_hash
    template = next((p for p in plans if p.store.store_hash == store_hash and p.lines), plans[0])
    ghost = BcPlan(template.shopper, template.store, template.created_at, "ghost", currency=template.currency)
    ghost.lines, ghost.order_id = template.lines, next_oid[store_hash] + 100000
    ghost.address_id = ghost.order_id + 50000
    orphan_at = window.at(rng, 0.3, 0.95)
    orphan = _bc_refund(ghost, len(refunds[store_hash]) + 1, orphan_at, [(template.lines[0], 1)], False, True)
    refunds[store_hash].append(orphan)
    stamp = lambda r: parsedate_to_datetime(r["date_modified"])  # noqa: E731
    data = {
        s.store_hash: {
            "orders": _by_time(orders[s.store_hash], stamp, "id"),
            "refunds": sorted(refunds[s.store_hash], key=lambda r: (r["created"], r["id"])),
            "customers": sorted(customers[s.store_hash], key=lambda r: (r["date_modified"], r["id"])),
        }
        for s in BC_STORES
    }
    return data, malformed + 1


# --------------------------------------------------------------------------------------------------
# commercetools: orders, payments (refund transactions) and customers of one project
# --------------------------------------------------------------------------------------------------
CT_PROJECT_KEY = "loyalty-demo-eu"
_CT_STORES = {  # store key -> (currency, tax rate, shipping net, country, weight)
    "de-store": ("EUR", Decimal("0.19"), Decimal("4.9"), "DE", 55),
    "uk-store": ("GBP", Decimal("0.2"), Decimal("3.95"), "GB", 30),
    "jp-store": ("JPY", Decimal("0.1"), Decimal("600"), "JP", 15),
}
_CT_PRODUCT_TYPES = {"physical": "apparel", "digital": "ebook", "giftcard": "giftcard"}
_CT_PRODUCT_TYPE_IDS = {
    "physical": "5b7cbb1c-3b4e-4a38-9d3b-0c1f3e2a8a01",
    "digital": "5b7cbb1c-3b4e-4a38-9d3b-0c1f3e2a8a02",
    "giftcard": "5b7cbb1c-3b4e-4a38-9d3b-0c1f3e2a8a03",
}
_CT_SCENARIOS = {
    "complete": 40,
    "shipped": 10,
    "paid": 10,
    "pending": 6,
    "cancelled": 5,
    "full_refund": 6,
    "partial_refund": 9,
    "refund_failed": 3,
    "refund_pending": 2,
}
_CT_REQUIRED = (
    "full_refund",
    "partial_refund",
    "partial_refund",
    "refund_failed",
    "refund_pending",
    "refund_initial",
    "two_refunds",
    "cancelled",
    "pending",
    "paid",
)
# (orderState, paymentState, shipmentState) per version; "refund" steps touch only the payment.
_CT_STATES = {
    "open": ("Open", "Pending", None),
    "balance_due": ("Open", "BalanceDue", None),
    "paid": ("Confirmed", "Paid", "Ready"),
    "shipped": ("Confirmed", "Paid", "Shipped"),
    "complete": ("Complete", "Paid", "Delivered"),
    "cancelled": ("Cancelled", "Failed", None),
}
_CT_STEPS = {
    "complete": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72)), ("complete", (24, 120))),
    "shipped": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72))),
    "paid": (("open", 0), ("paid", (0.05, 24))),
    "pending": (("balance_due", 0),),
    "cancelled": (("open", 0), ("cancelled", (1, 48))),
    "full_refund": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72)), ("refund", (24, 200))),
    "partial_refund": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72)), ("refund", (24, 200))),
    "two_refunds": (
        ("open", 0),
        ("paid", (0.05, 24)),
        ("shipped", (12, 72)),
        ("refund", (24, 120)),
        ("refund", (24, 120)),
    ),
    "refund_failed": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72)), ("refund", (24, 200))),
    "refund_pending": (("open", 0), ("paid", (0.05, 24)), ("shipped", (12, 72)), ("refund", (24, 200))),
    "refund_initial": (("open", 0), ("paid", (0.05, 24)), ("refund", (24, 200))),
    "bad_amount": (("open", 0),),
    "negative_amount": (("open", 0),),
    "no_email": (("open", 0),),
}
_CT_MALFORMED = ("bad_amount", "negative_amount", "no_email")
# refund transaction states over successive payment versions
_CT_REFUND_STATES = {
    "full_refund": ("Initial", "Success"),
    "partial_refund": ("Pending", "Success"),
    "two_refunds": ("Success",),
    "refund_failed": ("Initial", "Pending", "Failure"),
    "refund_pending": ("Initial", "Pending"),
    "refund_initial": ("Initial",),
}


def _ct_money(amount: Decimal, currency: str) -> dict:
    digits = _digits(currency)
    return {
        "type": "centPrecision",
        "currencyCode": currency,
        "centAmount": int(_round(amount, currency).scaleb(digits)),
        "fractionDigits": digits,
    }


@dataclass(eq=False)
class CtPlan:
    shopper: Shopper
    store_key: str
    created_at: datetime
    scenario: str
    untaxed: bool = False
    feature: str | None = None
    order_id: str = ""
    payment_id: str = ""
    customer_id: str | None = None
    reassign_to: str | None = None  # a guest order later assigned to this customer id
    email: str = ""


def _ct_lines(rng: random.Random, plan: CtPlan) -> tuple[list[dict], Decimal, Decimal, Decimal]:
    """Line items; returns (lines, net of lines, gross of lines, shipping net)."""
    cur, rate, ship, country, _ = _CT_STORES[plan.store_key]
    count = rng.choices((1, 2, 3), weights=(45, 35, 20))[0]
    if plan.scenario in ("partial_refund", "two_refunds"):
        count = max(2, count)
    items = _pick_items(rng, count, plan.feature)
    pct = Decimal(rng.choice((10, 15, 20))) if rng.random() < 0.25 else Decimal(0)
    lines, net_total, gross_total = [], Decimal(0), Decimal(0)
    for item in items:
        qty = 1 if item.kind != "physical" else rng.choices((1, 2, 3), weights=(75, 18, 7))[0]
        unit = _price(item, cur)
        line_rate = Decimal(0) if item.kind == "giftcard" else rate
        unit_after = unit if item.kind == "giftcard" else unit - _round(unit * pct / 100, cur)
        net = unit_after * qty
        gross = net + _round(net * line_rate, cur)
        line = {
            "id": _uuid(rng),
            "productId": _uuid(rng),
            "productKey": item.sku.lower(),
            "name": {"en": item.name},
            "productType": {
                "typeId": "product-type",
                "id": _CT_PRODUCT_TYPE_IDS[item.kind],
                "key": _CT_PRODUCT_TYPES[item.kind],
            },
            "variant": {"id": 1, "sku": item.sku},
            "price": {"id": f"price-{item.product_id}", "value": _ct_money(unit, cur)},
            "quantity": qty,
            "discountedPricePerQuantity": []
            if unit_after == unit
            else [{"quantity": qty, "discountedPrice": {"value": _ct_money(unit_after, cur)}}],
            "taxRate": {
                "name": "standard" if line_rate else "exempt",
                "amount": line_rate,
                "includedInPrice": False,
                "country": country,
            },
            "totalPrice": _ct_money(net, cur),
            "priceMode": "Platform",
            "lineItemMode": "Standard",
            "state": [{"quantity": qty, "state": {"typeId": "state", "key": "Initial"}}],
        }
        if not plan.untaxed:
            line["taxedPrice"] = {
                "totalNet": _ct_money(net, cur),
                "totalGross": _ct_money(gross, cur),
                "totalTax": _ct_money(gross - net, cur),
            }
        lines.append(line)
        net_total += net
        gross_total += gross
    shipping = ship if any(i.kind == "physical" for i in items) else Decimal(0)
    return lines, net_total, gross_total, shipping


def _ct_order(
    plan: CtPlan, base: dict, version: int, at: datetime, ms: int, state: str, customer_id: str | None
) -> dict:
    order_state, payment_state, shipment_state = _CT_STATES[state]
    record = dict(base)
    record.update(
        {
            "version": version,
            "lastModifiedAt": _iso_ms(at, ms),
            "orderState": order_state,
            "paymentState": payment_state,
        }
    )
    if shipment_state:
        record["shipmentState"] = shipment_state
    if customer_id:
        record["customerId"] = customer_id
    return record


def _ct_payment(
    plan: CtPlan,
    gross: Decimal,
    cur: str,
    version: int,
    at: datetime,
    created: datetime,
    transactions: list[dict],
) -> dict:
    record = {
        "id": plan.payment_id,
        "version": version,
        "key": f"pay-{plan.payment_id[:8]}",
        "interfaceId": f"psp-{plan.payment_id[-12:]}",
        "amountPlanned": _ct_money(gross, cur),
        "paymentMethodInfo": {
            "paymentInterface": "STRIPE",
            "method": "CREDIT_CARD",
            "name": {"en": "Credit Card"},
        },
        "paymentStatus": {},
        "transactions": [dict(t) for t in transactions],
        "interfaceInteractions": [],
        "createdAt": _iso_ms(created),
        "lastModifiedAt": _iso_ms(at),
    }
    if plan.customer_id:
        record["customer"] = {"typeId": "customer", "id": plan.customer_id}
    return record


def _ct_customer(
    cid: str,
    number: int,
    shopper: Shopper,
    email: str,
    store_key: str,
    created: datetime,
    modified: datetime,
    version: int,
) -> dict:
    return {
        "id": cid,
        "version": version,
        "customerNumber": f"CT{number:06d}",
        "email": email,
        "firstName": shopper.firstname,
        "lastName": shopper.lastname,
        "isEmailVerified": True,
        "addresses": [],
        "stores": [{"typeId": "store", "key": store_key}],
        "authenticationMode": "Password",
        "createdAt": _iso_ms(created),
        "lastModifiedAt": _iso_ms(modified),
    }


def _generate_commercetools(rng: random.Random, shoppers: list[Shopper], window: Window) -> tuple[dict, int]:
    """{orders, payments, customers} of the project and how many records are malformed on purpose."""
    profiles: dict[int, dict] = {}
    plans: list[CtPlan] = []
    for shopper, moment in _plan_list(shoppers, "commercetools"):
        profile = profiles.get(shopper.index)
        if profile is None:
            kind = _identity_kind(rng, 1, "reassigned")
            if shopper.index == 3:
                kind = "registered"
            store_key = _weighted(rng, {k: v[4] for k, v in _CT_STORES.items()})
            profile = profiles[shopper.index] = {"kind": kind, "store": store_key}
        plans.append(
            CtPlan(
                shopper, profile["store"], moment, _weighted(rng, _CT_SCENARIOS), untaxed=rng.random() < 0.05
            )
        )
    if not plans:
        return {"orders": [], "payments": [], "customers": []}, 0
    _force(plans, _CT_REQUIRED)
    for plan in plans[:2]:
        plan.feature = "giftcard"  # a refunded gift card (excluded product type) in the first two
    if len(plans) > 10:
        plans[10].untaxed = True
    # every data set has a guest order re-assigned to a customer, JPY orders and refunds in JPY
    reassigned = [p for p in profiles.values() if p["kind"] == "reassigned"]
    if not reassigned:
        first = profiles[plans[0].shopper.index]
        first["kind"] = "reassigned"
    jpy = next((p for p in plans[:10] if p.store_key == "jp-store"), None)
    if jpy is None:
        target = plans[min(2, len(plans) - 1)].shopper
        profiles[target.index]["store"] = "jp-store"
        for plan in plans:
            if plan.shopper is target:
                plan.store_key = "jp-store"
    per_kind = max(1, round(len(plans) * 0.003))
    pool = [
        p
        for p in plans[len(_CT_REQUIRED) :]
        if p.scenario in ("complete", "shipped", "paid") and p.shopper.index not in _FORCED_PLATFORMS
    ]
    malformed = 0
    for kind in _CT_MALFORMED:
        for _ in range(per_kind):
            if pool:
                plan = pool.pop(rng.randrange(len(pool)))
                plan.scenario = kind
                malformed += 1
    # registered customers exist from the start (some from before the range)
    customers: list[dict] = []
    number = 0
    for index in sorted(profiles):
        profile = profiles[index]
        if profile["kind"] != "registered":
            continue
        shopper = next(p.shopper for p in plans if p.shopper.index == index)
        first = min(p.created_at for p in plans if p.shopper is shopper)
        created = (
            window.first - timedelta(days=rng.randint(20, 500), seconds=rng.randint(0, 86399))
            if rng.random() < 0.5
            else _between(rng, max(window.first, first - timedelta(days=3)), first)
        )
        number += 1
        profile["customer_id"] = _uuid(rng)
        profile["registered_at"] = created
        email = shopper.email.upper() if shopper.messy_email else shopper.email
        modified = max(created, window.first)
        customers.append(
            _ct_customer(
                profile["customer_id"], number, shopper, email, profile["store"], created, modified, 1
            )
        )
    orders, payments = [], []
    for plan in sorted(plans, key=lambda p: (p.created_at, p.shopper.index)):
        profile = profiles[plan.shopper.index]
        cur, rate, _, country, _ = _CT_STORES[plan.store_key]
        steps = [(name, 0.0 if span == 0 else _hours(rng, *span)) for name, span in _CT_STEPS[plan.scenario]]
        refund_states = list(_CT_REFUND_STATES.get(plan.scenario, ()))
        expanded: list[tuple[str, float]] = []
        for name, hours in steps:
            if name == "refund" and plan.scenario != "two_refunds":
                expanded.append(("refund:0:" + refund_states[0], hours))
                for state in refund_states[1:]:
                    expanded.append(("refund:0:" + state, rng.uniform(0.5, 48)))
            elif name == "refund":
                n = sum(1 for e, _ in expanded if e.startswith("refund"))
                expanded.append((f"refund:{n}:Success", hours))
            else:
                expanded.append((name, hours))
        reassign = (
            profile["kind"] == "reassigned"
            and "customer_id" not in profile
            and plan.scenario not in _CT_MALFORMED
        )
        if reassign:
            expanded.append(("assign", rng.uniform(2, 96)))
        plan.created_at, events = _timeline(rng, plan.created_at, expanded, window)
        if profile.get("registered_at") and plan.created_at >= profile["registered_at"]:
            plan.customer_id = profile["customer_id"]
        plan.email = _platform_email(rng, plan.shopper, "commercetools")
        plan.order_id, plan.payment_id = _uuid(rng), _uuid(rng)
        lines, net, gross, ship_net = _ct_lines(rng, plan)
        ship_gross = ship_net + _round(ship_net * rate, cur)
        total_net, total_gross = net + ship_net, gross + ship_gross
        base: dict = {
            "type": "Order",
            "id": plan.order_id,
            "orderNumber": f"CT-{len(orders) + 100001}",
            "createdAt": _iso_ms(plan.created_at),
            "customerEmail": plan.email,
            "anonymousId": None if plan.customer_id else f"anon-{plan.order_id[:8]}",
            "country": country,
            "locale": {"DE": "de-DE", "GB": "en-GB", "JP": "ja-JP"}[country],
            "store": {"typeId": "store", "key": plan.store_key},
            "totalPrice": _ct_money(total_net, cur),
            "taxMode": "Disabled" if plan.untaxed else "Platform",
            "taxRoundingMode": "HalfEven",
            "inventoryMode": "None",
            "origin": "Customer",
            "shippingMode": "Single",
            "lineItems": lines,
            "customLineItems": [],
            "discountCodes": [],
            "paymentInfo": {"payments": [{"typeId": "payment", "id": plan.payment_id}]},
            "returnInfo": [],
            "syncInfo": [],
            "refusedGifts": [],
            "shipping": [],
        }
        if base["anonymousId"] is None:
            del base["anonymousId"]
        if not plan.untaxed:
            base["taxedPrice"] = {
                "totalNet": _ct_money(total_net, cur),
                "totalGross": _ct_money(total_gross, cur),
                "taxPortions": [
                    {"rate": rate, "amount": _ct_money(total_gross - total_net, cur), "name": "standard"}
                ],
                "totalTax": _ct_money(total_gross - total_net, cur),
            }
        if ship_net:
            base["shippingInfo"] = {
                "shippingMethodName": "Standard",
                "price": _ct_money(ship_net, cur),
                "shippingRate": {"price": _ct_money(ship_net, cur)},
                "shippingMethodState": "MatchesCart",
            }
            if not plan.untaxed:
                taxed_ship = {"totalNet": _ct_money(ship_net, cur), "totalGross": _ct_money(ship_gross, cur)}
                base["shippingInfo"]["taxedPrice"] = taxed_ship
                base["shippingInfo"]["taxRate"] = {
                    "name": "standard",
                    "amount": rate,
                    "includedInPrice": False,
                    "country": country,
                }
                if rng.random() < 0.7:  # newer API versions also set it at the top level
                    base["taxedShippingPrice"] = taxed_ship
        if plan.scenario == "no_email":
            del base["customerEmail"]
            plan.customer_id = None
        if plan.scenario == "bad_amount":
            base["totalPrice"] = dict(base["totalPrice"], centAmount="12O0")
            if "taxedPrice" in base:
                base["taxedPrice"] = dict(
                    base["taxedPrice"], totalNet=dict(base["taxedPrice"]["totalNet"], centAmount="12O0")
                )
        if plan.scenario == "negative_amount":
            base["totalPrice"] = dict(base["totalPrice"], centAmount=-base["totalPrice"]["centAmount"])
            if "taxedPrice" in base:
                tn = base["taxedPrice"]["totalNet"]
                base["taxedPrice"] = dict(base["taxedPrice"], totalNet=dict(tn, centAmount=-tn["centAmount"]))
        payer_gross = total_net if plan.untaxed else total_gross
        version, state = 0, "open"
        transactions: list[dict] = []
        pay_version = 0
        customer_id = plan.customer_id
        refund_txns: dict[int, dict] = {}
        refund_amounts = _ct_refund_amounts(rng, plan, lines, payer_gross, cur)
        for name, moment in events:
            if name.startswith("refund"):
                _, n, txn_state = name.split(":")
                txn = refund_txns.get(int(n))
                if txn is None:
                    txn = refund_txns[int(n)] = {
                        "id": _uuid(rng),
                        "timestamp": _iso_ms(moment),
                        "type": "Refund",
                        "amount": _ct_money(refund_amounts[int(n)], cur),
                        "interactionId": f"re_{rng.getrandbits(40):010x}",
                        "state": txn_state,
                    }
                    transactions.append(txn)
                txn["state"] = txn_state
                pay_version += 1
                payments.append(
                    _ct_payment(plan, payer_gross, cur, pay_version, moment, plan.created_at, transactions)
                )
                continue
            if name == "assign":
                number += 1
                profile["customer_id"] = _uuid(rng)
                profile["registered_at"] = max(
                    plan.created_at, moment - timedelta(seconds=rng.randint(5, 600))
                )
                customer_id = profile["customer_id"]
                email = plan.shopper.email
                customers.append(
                    _ct_customer(
                        customer_id,
                        number,
                        plan.shopper,
                        email,
                        plan.store_key,
                        profile["registered_at"],
                        profile["registered_at"],
                        1,
                    )
                )
            else:
                state = name
                if name in ("open", "balance_due"):
                    charge = {
                        "id": _uuid(rng),
                        "timestamp": _iso_ms(moment),
                        "type": "Charge",
                        "amount": _ct_money(payer_gross, cur),
                        "interactionId": f"ch_{rng.getrandbits(40):010x}",
                        "state": "Pending" if name == "open" else "Initial",
                    }
                    transactions.append(charge)
                    pay_version += 1
                    payments.append(
                        _ct_payment(
                            plan, payer_gross, cur, pay_version, moment, plan.created_at, transactions
                        )
                    )
                elif name in ("paid", "cancelled"):
                    transactions[0]["state"] = "Success" if name == "paid" else "Failure"
                    pay_version += 1
                    payments.append(
                        _ct_payment(
                            plan, payer_gross, cur, pay_version, moment, plan.created_at, transactions
                        )
                    )
            version += 1
            orders.append(_ct_order(plan, base, version, moment, rng.randint(0, 999), state, customer_id))
    # a payment with a successful refund whose order never exists (referenced by no order)
    ghost = CtPlan(plans[0].shopper, "de-store", window.at(rng, 0.2, 0.8), "ghost", payment_id=_uuid(rng))
    ghost_at = ghost.created_at
    txns = [
        {
            "id": _uuid(rng),
            "timestamp": _iso_ms(ghost_at),
            "type": "Charge",
            "amount": _ct_money(Decimal("40"), "EUR"),
            "state": "Success",
        },
        {
            "id": _uuid(rng),
            "timestamp": _iso_ms(ghost_at + timedelta(hours=30)),
            "type": "Refund",
            "amount": _ct_money(Decimal("15"), "EUR"),
            "state": "Success",
        },
    ]
    payments.append(
        _ct_payment(ghost, Decimal("40"), "EUR", 2, ghost_at + timedelta(hours=30), ghost_at, txns)
    )
    return {
        "orders": sorted(orders, key=lambda r: (r["lastModifiedAt"], r["id"])),
        "payments": sorted(payments, key=lambda r: (r["lastModifiedAt"], r["id"])),
        "customers": sorted(customers, key=lambda r: (r["lastModifiedAt"], r["id"])),
    }, malformed + 1


def _ct_refund_amounts(
    rng: random.Random, plan: CtPlan, lines: list[dict], gross: Decimal, cur: str
) -> list[Decimal]:
    """Gross amounts of the refund transactions of the scenario (full: the whole charge)."""
    if not lines:
        return [gross]

    def line_gross(line: dict) -> Decimal:
        money = (line.get("taxedPrice") or {}).get("totalGross") or line["totalPrice"]
        return Decimal(money["centAmount"]).scaleb(-money["fractionDigits"])

    if plan.scenario == "full_refund":
        return [gross]
    if plan.scenario == "two_refunds":
        first = line_gross(lines[0])
        return [first, gross - first]
    if plan.feature == "giftcard":
        return [line_gross(lines[-1])]
    return [line_gross(rng.choice(lines))]


# --------------------------------------------------------------------------------------------------
# SFCC (B2C Commerce SCAPI orders) of one organization, two sites
# --------------------------------------------------------------------------------------------------
SFCC_ORGANIZATION_ID = "f_ecom_zzte_prd"
_SFCC_SITES = {  # siteId -> (currency, taxation, tax rate, shipping, weight)
    "RefArch": ("USD", "net", Decimal("0.0725"), Decimal("5.99"), 65),
    "RefArchGlobal": ("EUR", "gross", Decimal("0.19"), Decimal("4.9"), 35),
}
_SFCC_SCENARIOS = {"complete": 55, "paid": 12, "pending": 8, "cancelled": 6, "paid_cancelled": 3, "failed": 4}
_SFCC_REQUIRED = ("cancelled", "paid_cancelled", "failed", "pending", "paid")
# (status, paymentStatus, shippingStatus) per version
_SFCC_STATES = {
    "created": ("created", "not_paid", "not_shipped"),
    "new": ("new", "not_paid", "not_shipped"),
    "paid": ("new", "paid", "not_shipped"),
    "shipped": ("completed", "paid", "shipped"),
    "cancelled": ("cancelled", "not_paid", "not_shipped"),
    "paid_cancelled": ("cancelled", "paid", "not_shipped"),
    "failed": ("failed", "not_paid", "not_shipped"),
}
_SFCC_STEPS = {
    "complete": (("created", 0), ("paid", (0.01, 12)), ("shipped", (12, 120))),
    "paid": (("new", 0), ("paid", (0.01, 12))),
    "pending": (("created", 0), ("new", (0.01, 2))),
    "cancelled": (("new", 0), ("cancelled", (1, 48))),
    "paid_cancelled": (("new", 0), ("paid", (0.01, 12)), ("paid_cancelled", (2, 72))),
    "failed": (("created", 0), ("failed", (0.01, 1))),
    "bad_amount": (("new", 0),),
    "negative_amount": (("new", 0),),
    "no_email": (("new", 0),),
}
_SFCC_MALFORMED = ("bad_amount", "negative_amount", "no_email")


def _sfcc_body(rng: random.Random, site: str, order_no: str, discounted: bool) -> dict:
    """The money part of an SCAPI order (JSON numbers; `taxation` net or gross)."""
    cur, taxation, rate, ship, _ = _SFCC_SITES[site]
    count = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
    items = [i for i in _pick_items(rng, count) if i.kind != "giftcard"] or [_ITEMS[0]]
    product_items, total, line_tax = [], Decimal(0), Decimal(0)
    for position, item in enumerate(items, start=1):
        qty = 1 if item.kind != "physical" else rng.choices((1, 2), weights=(80, 20))[0]
        unit = _price(item, cur)
        price = unit * qty
        if taxation == "net":
            tax = _q(price * rate, cur)
            net, gross = price, price + tax
        else:
            gross = price
            net = _q(price / (1 + rate), cur)
            tax = gross - net
        product_items.append(
            {
                "itemId": f"{rng.getrandbits(96):024x}",
                "productId": item.sku,
                "productName": item.name,
                "itemText": item.name,
                "position": position,
                "quantity": qty,
                "basePrice": _json_number(unit),
                "netPrice": _json_number(net),
                "grossPrice": _json_number(gross),
                "price": _json_number(price),
                "priceAfterItemDiscount": _json_number(price),
                "priceAfterOrderDiscount": _json_number(price),
                "tax": _json_number(tax),
                "adjustedTax": _json_number(tax),
                "taxBasis": _json_number(price),
                "taxRate": rate,
                "gift": False,
                "bonusProductLineItem": False,
                "shipmentId": "me",
            }
        )
        total += price
        line_tax += tax
    adjustment = _q(total * Decimal(rng.choice((10, 15))) / 100, cur) if discounted else Decimal(0)
    after = total - adjustment
    if taxation == "net":
        adj_tax = _q(after * rate, cur)
        ship_tax = _q(ship * rate, cur)
        order_total = after + ship + adj_tax + ship_tax
    else:
        adj_tax = after - _q(after / (1 + rate), cur)
        ship_tax = ship - _q(ship / (1 + rate), cur)
        order_total = after + ship
    body = {
        "currency": cur,
        "taxation": taxation,
        "productItems": product_items,
        "productSubTotal": _json_number(total),
        "productTotal": _json_number(total),
        "merchandizeTotalTax": _json_number(line_tax),
        "adjustedMerchandizeTotalTax": _json_number(adj_tax),
        "shippingTotal": _json_number(ship),
        "shippingTotalTax": _json_number(ship_tax),
        "adjustedShippingTotalTax": _json_number(ship_tax),
        "taxTotal": _json_number(adj_tax + ship_tax),
        "orderTotal": _json_number(order_total),
    }
    if adjustment:
        body["orderPriceAdjustments"] = [
            {
                "priceAdjustmentId": f"{rng.getrandbits(96):024x}",
                "promotionId": "SpringSale",
                "itemText": "Spring sale",
                "price": _json_number(-adjustment),
                "basePrice": _json_number(-adjustment),
                "manual": False,
            }
        ]
    return body


def _generate_sfcc(rng: random.Random, shoppers: list[Shopper], window: Window) -> tuple[list[dict], int]:
    profiles: dict[int, dict] = {}
    plans = []
    for shopper, moment in _plan_list(shoppers, "sfcc"):
        if shopper.index not in profiles:
            kind = _weighted(rng, {"registered": 60, "guest": 40})
            profiles[shopper.index] = {
                "kind": kind,
                "site": _weighted(rng, {k: v[4] for k, v in _SFCC_SITES.items()}),
                "customer_id": "".join(
                    rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                    for _ in range(26)
                ),
            }
        plans.append([shopper, moment, _weighted(rng, _SFCC_SCENARIOS)])
    if not plans:
        return [], 0
    sites = {profile["site"] for profile in profiles.values()}
    for site, shopper in zip(sorted(set(_SFCC_SITES) - sites), (plans[0][0], plans[-1][0]), strict=False):
        profiles[shopper.index]["site"] = site  # both sites (USD net, EUR gross) in every data set
    for plan, scenario in zip(plans, _SFCC_REQUIRED, strict=False):
        plan[2] = scenario
    per_kind = max(1, round(len(plans) * 0.005))
    pool = [
        p
        for p in plans[len(_SFCC_REQUIRED) :]
        if p[2] in ("complete", "paid") and p[0].index not in _FORCED_PLATFORMS
    ]
    malformed = 0
    for kind in _SFCC_MALFORMED:
        for _ in range(per_kind):
            if pool:
                plan = pool.pop(rng.randrange(len(pool)))
                plan[2] = kind
                malformed += 1
    numbers = {}
    for index in sorted(profiles):
        if profiles[index]["kind"] == "registered":
            numbers[index] = f"{len(numbers) + 1000001:08d}"
    orders = []
    for sequence, (shopper, moment, scenario) in enumerate(
        sorted(plans, key=lambda p: (p[1], p[0].index)), start=1
    ):
        profile = profiles[shopper.index]
        steps = [(name, 0.0 if span == 0 else _hours(rng, *span)) for name, span in _SFCC_STEPS[scenario]]
        created, events = _timeline(rng, moment, steps, window)
        order_no = f"{sequence + 410:08d}"
        info = {
            "customerId": profile["customer_id"],
            "customerName": f"{shopper.firstname} {shopper.lastname}",
            "email": _platform_email(rng, shopper, "sfcc"),
            "guest": profile["kind"] == "guest",
        }
        if profile["kind"] == "registered":
            info["customerNo"] = numbers[shopper.index]
        if scenario == "no_email":
            info = {"customerId": info["customerId"], "customerName": info["customerName"], "guest": True}
        base = {
            "orderNo": order_no,
            "invoiceNo": f"{sequence:08d}",
            "siteId": profile["site"],
            "channelType": "storefront",
            "createdBy": "storefront",
            "creationDate": _iso_ms(created),
            "customerInfo": info,
            "customerLocale": "en_US" if profile["site"] == "RefArch" else "de_DE",
            "confirmationStatus": "confirmed",
        }
        base.update(_sfcc_body(rng, profile["site"], order_no, rng.random() < 0.25))
        if scenario == "bad_amount":
            base["productTotal"] = "n/a"
        elif scenario == "negative_amount":
            base["productTotal"] = -base["productTotal"]
        for name, at in events:
            status, payment, shipping = _SFCC_STATES[name]
            record = dict(base)
            record.update(
                {
                    "lastModified": _iso_ms(at, rng.randint(0, 999)),
                    "status": status,
                    "paymentStatus": payment,
                    "shippingStatus": shipping,
                    "exportStatus": "exported" if status == "completed" else "not_exported",
                    "paymentInstruments": [
                        {
                            "paymentInstrumentId": f"{rng.getrandbits(96):024x}",
                            "paymentMethodId": "CREDIT_CARD",
                            "paymentTransaction": {"amount": base["orderTotal"], "transactionId": order_no},
                        }
                    ],
                    "shipments": [
                        {
                            "shipmentId": "me",
                            "shipmentNo": order_no,
                            "shippingMethod": {"id": "001"},
                            "shippingStatus": shipping,
                            "shippingTotal": base["shippingTotal"],
                        }
                    ],
                }
            )
            orders.append(record)
    orders.sort(key=lambda r: (r["lastModified"], r["orderNo"]))
    return orders, malformed


# --------------------------------------------------------------------------------------------------
# Smile.io and LoyaltyLion (customers, redemptions, referrals) and Salesforce (Contacts, requests)
# --------------------------------------------------------------------------------------------------
def _loyalty_email(rng: random.Random, shopper: Shopper) -> str:
    email = shopper.email
    return rng.choice((email, email.upper(), email.title())) if shopper.messy_email else email


def _before(rng: random.Random, window: Window, moment: datetime | None) -> datetime:
    """A moment inside the window not after `moment` (the start of the window when none)."""
    if moment is None or moment <= window.first:
        return window.first
    return _between(rng, max(window.first, moment - timedelta(days=20)), moment)


def _referral_pairs(
    rng: random.Random, members: list[Shopper], shoppers: list[Shopper], window: Window, count: int
):
    """(referrer, friend, created) with the friend's first order after the referral."""
    friends = [
        s
        for s in shoppers
        if s.first_order_at is not None and s.first_order_at > window.first + timedelta(days=3)
    ]
    pairs, used = [], set()
    for referrer in members:
        if len(pairs) >= count or not friends:
            break
        friend = rng.choice(friends)
        if friend is referrer or friend.index in used:
            continue
        used.add(friend.index)
        created = _between(
            rng,
            max(window.first, friend.first_order_at - timedelta(days=3)),
            friend.first_order_at - timedelta(seconds=60),
        )
        pairs.append((referrer, friend, created))
    return pairs


def _generate_smile(rng: random.Random, shoppers: list[Shopper], window: Window) -> dict[str, list[dict]]:
    members = [
        s for s in shoppers if s.first_order_at is not None and (s.index in (3, 10) or rng.random() < 0.4)
    ]
    customers, by_shopper = [], {}
    next_id = 304169000
    for shopper in members:
        next_id += 1
        created = (
            window.first - timedelta(days=rng.randint(1, 400))
            if rng.random() < 0.4
            else _before(rng, window, shopper.first_order_at)
        )
        updated = max(created, window.first) + timedelta(seconds=rng.randint(0, 3600))
        record = {
            "id": next_id,
            "first_name": shopper.firstname,
            "last_name": shopper.lastname,
            "email": _loyalty_email(rng, shopper),
            "state": "member" if rng.random() < 0.9 else "candidate",
            "date_of_birth": None,
            "points_balance": 0,
            "referral_url": f"http://i.refs.cc/{rng.getrandbits(30):08x}",
            "vip_tier_id": None,
            "created_at": _iso_ms(created),
            "updated_at": _iso_ms(min(updated, window.last)),
        }
        customers.append(record)
        by_shopper[shopper.index] = record
    if customers:  # Smile emails are not unique: a second customer with the same address
        twin = dict(customers[0], id=next_id + 1, state="candidate", referral_url="http://i.refs.cc/twin0001")
        twin["email"] = f" {customers[0]['email'].upper()}"
        twin["created_at"] = twin["updated_at"] = _iso_ms(
            min(window.last, window.first + timedelta(hours=27))
        )
        customers.append(twin)
    transactions, fulfillments = [], []
    redeemers = [s for s in members if len([t for ts in s.platform_times.values() for t in ts]) >= 2][
        : max(2, len(members) // 25)
    ]
    tid, fid = 825673000, 5551000
    for shopper in redeemers:
        record = by_shopper[shopper.index]
        times = sorted(t for ts in shopper.platform_times.values() for t in ts)
        at = min(window.last, _between(rng, times[-1] + timedelta(hours=1), times[-1] + timedelta(days=10)))
        points = rng.choice((100, 200, 500))
        tid += 1
        fid += 1
        transactions.append(
            {
                "id": tid,
                "customer_id": record["id"],
                "points_change": -points,
                "description": f"Redeemed {points} points for ${points // 100} off",
                "internal_note": None,
                "created_at": _iso_ms(at),
                "updated_at": _iso_ms(at),
            }
        )
        fulfillments.append(
            {
                "id": fid,
                "name": f"${points // 100} off coupon",
                "code": f"{points // 100}off-{rng.getrandbits(48):012x}",
                "customer_id": record["id"],
                "fulfillment_status": "issued",
                "image_url": "https://platform-images.smile.io/rewards/coupon.svg",
                "action_text": "Use this discount code on your next order!",
                "action_url": None,
                "usage_instructions": "Use this discount code on your next order!",
                "terms_and_conditions": None,
                "expires_at": None,
                "usage_status": "unused",
                "used_at": None,
                "points_transaction_id": tid,
                "points_spent": points,
                "created_at": _iso_ms(at),
                "updated_at": _iso_ms(at),
            }
        )
    referrals = []
    for n, (referrer, friend, created) in enumerate(
        _referral_pairs(rng, members, shoppers, window, 3), start=1
    ):
        sender = by_shopper[referrer.index]
        receiver = by_shopper.get(friend.index)
        referrals.append(
            {
                "id": 7710 + n,
                "sender_customer": {k: sender[k] for k in ("id", "first_name", "last_name", "email")},
                "sender_reward_fulfillment": None,
                "receiver_customer": None
                if receiver is None
                else {k: receiver[k] for k in ("id", "first_name", "last_name", "email")},
                "receiver_customer_email": _loyalty_email(rng, friend),
                "receiver_reward_fulfillment": None,
                "created_at": _iso_ms(created),
                "updated_at": _iso_ms(created),
            }
        )
    if members:  # a self-referral: the friend's email is the referrer's own (refused)
        self_ref = next(
            (m for m in members if m.first_order_at > window.first + timedelta(hours=2)), members[0]
        )
        sender = by_shopper[self_ref.index]
        created = _before(rng, window, self_ref.first_order_at)
        referrals.append(
            {
                "id": 7799,
                "sender_customer": {k: sender[k] for k in ("id", "first_name", "last_name", "email")},
                "sender_reward_fulfillment": None,
                "receiver_customer": None,
                "receiver_customer_email": f" {self_ref.email.upper()}",
                "receiver_reward_fulfillment": None,
                "created_at": _iso_ms(created),
                "updated_at": _iso_ms(created),
            }
        )
    return {
        "customers": sorted(customers, key=lambda r: (r["updated_at"], r["id"])),
        "points_transactions": transactions,
        "reward_fulfillments": fulfillments,
        "referrals": sorted(referrals, key=lambda r: (r["created_at"], r["id"])),
    }


def _generate_loyaltylion(
    rng: random.Random, shoppers: list[Shopper], window: Window
) -> dict[str, list[dict]]:
    members = [
        s for s in shoppers if s.first_order_at is not None and (s.index in (3, 11) or rng.random() < 0.3)
    ]
    customers, by_shopper = [], {}
    for n, shopper in enumerate(members, start=1):
        created = (
            window.first - timedelta(days=rng.randint(1, 300))
            if rng.random() < 0.4
            else _before(rng, window, shopper.first_order_at)
        )
        record = {
            "id": 1000 + n,
            "merchant_id": str(5000000 + shopper.index),
            "email": _loyalty_email(rng, shopper),
            "points_approved": 0,
            "points_pending": 0,
            "points_spent": 0,
            "rewards_claimed": 0,
            "properties": {
                "name": f"{shopper.firstname} {shopper.lastname}",
                "first_name": shopper.firstname,
                "last_name": shopper.lastname,
            },
            "metadata": {},
            "birthday": None,
            "blocked": False,
            "guest": False,
            "enrolled": True,
            "enrolled_at": _iso_ms(created),
            "referral_id": f"r{rng.getrandbits(32):08x}",
            "referred_by": None,
            "loyalty_tier_membership": None,
            "insights_segment": None,
            "referral_url": f"https://prz.io/{rng.getrandbits(24):06x}",
            "linked_merchant_ids": [],
            "created_at": _iso_ms(created),
            "updated_at": _iso_ms(
                min(window.last, max(created, window.first) + timedelta(seconds=rng.randint(0, 3600)))
            ),
        }
        customers.append(record)
        by_shopper[shopper.index] = record
    transactions = []
    redeemers = [s for s in members if sum(len(t) for t in s.platform_times.values()) >= 2][
        : max(2, len(members) // 25)
    ]
    tid = 90000
    for n, shopper in enumerate(redeemers):
        record = by_shopper[shopper.index]
        times = sorted(t for ts in shopper.platform_times.values() for t in ts)
        at = _between(
            rng,
            times[-1] + timedelta(hours=1),
            min(window.last - timedelta(days=2), times[-1] + timedelta(days=10)),
        )
        at = min(max(at, times[-1]), window.last)
        cost = rng.choice((100, 250, 500))
        claimed = {
            "id": 44000 + n,
            "claimed_at": _iso_ms(at),
            "point_cost": cost,
            "redeemable": {
                "code": f"LL-{rng.getrandbits(32):08X}",
                "discount_amount": f"{cost / 100:.2f}",
                "usage_count": 0,
                "usage_limit": 1,
            },
            "reward": {"id": 300 + cost, "title": f"${cost // 100} voucher", "kind": "cart_discount"},
            "state": "approved",
        }
        customer = {
            k: record[k]
            for k in ("id", "merchant_id", "email", "points_pending", "points_approved", "points_spent")
        }
        tid += 1
        transactions.append(
            {
                "id": tid,
                "customer": customer,
                "points_approved": -cost,
                "points_pending": 0,
                "created_at": _iso_ms(at),
                "resource": "claimed_reward",
                "claimed_reward": claimed,
            }
        )
        if n == 0:  # the first redemption is refunded in LoyaltyLion a day later (points come back)
            tid += 1
            voided = dict(claimed, state="void")
            back = min(window.last, at + timedelta(days=1))
            transactions.append(
                {
                    "id": tid,
                    "customer": customer,
                    "points_approved": cost,
                    "points_pending": 0,
                    "created_at": _iso_ms(back),
                    "resource": "claimed_reward",
                    "claimed_reward": voided,
                }
            )
    referrals = []
    for n, (referrer, friend, created) in enumerate(
        _referral_pairs(rng, members, shoppers, window, 2), start=1
    ):
        sender = by_shopper[referrer.index]
        referrals.append(
            {
                "id": 66000 + n,
                "merchant_id": f"referral-{n}",
                "name": "$referral",
                "state": "approved",
                "rule": {"id": 12, "name": "$referral"},
                "flow": None,
                "customer": {
                    "id": sender["id"],
                    "merchant_id": sender["merchant_id"],
                    "email": sender["email"],
                },
                "properties": {"referred_email": _loyalty_email(rng, friend)},
                "referral_id": sender["referral_id"],
                "created_at": _iso_ms(created),
            }
        )
    return {
        "customers": sorted(customers, key=lambda r: (r["updated_at"], r["id"])),
        "transactions": sorted(transactions, key=lambda r: (r["created_at"], r["id"])),
        "referrals": sorted(referrals, key=lambda r: (r["created_at"], r["id"])),
    }


_SF_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id (15 characters plus the case-safe checksum)."""
    id15 = f"{prefix}Dn{number:010d}"
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _SF_ID_CHARS[bits]
    return id15 + suffix


def _sf_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _generate_salesforce(
    rng: random.Random, shoppers: list[Shopper], window: Window
) -> dict[str, list[dict]]:
    known = [
        s for s in shoppers if s.first_order_at is not None and (s.index in (3, 4) or rng.random() < 0.25)
    ]
    contacts = []
    for n, shopper in enumerate(known, start=1):
        contacts.append(
            {
                "Id": _sf_id("003", n),
                "FirstName": shopper.firstname,
                "LastName": shopper.lastname,
                "Email": shopper.email.title() if shopper.messy_email else shopper.email,
                "Phone": shopper.telephone,
                "MailingCountry": shopper.store.country,
                "HasOptedOutOfEmail": rng.random() < 0.15,
                "DoNotCall": False,
                "CreatedDate": _sf_time(window.first - timedelta(days=rng.randint(1, 300))),
            }
        )
    stranger = {  # a Contact with no order anywhere: requests for it name no known member
        "Id": _sf_id("003", len(contacts) + 1),
        "FirstName": "Walk",
        "LastName": "In",
        "Email": "walk.in.customer@example.org",
        "HasOptedOutOfEmail": False,
        "DoNotCall": False,
        "CreatedDate": _sf_time(window.first - timedelta(days=30)),
    }
    contacts.append(stranger)
    requests = []
    plan = [
        (250, "Goodwill: late delivery"),
        (-100, "Correction: duplicate bonus"),
        (500, "Service recovery"),
        (50, None),  # no reason: rejected
        (25000, "Migration from the old program"),  # above adjustments.max_abs_points: rejected
    ]
    for n, (points, reason) in enumerate(plan, start=1):
        if not known:
            break
        contact = contacts[(n * 7) % len(known)]
        requests.append(_sf_request(rng, n, contact, points, reason, window))
    requests.append(_sf_request(rng, len(requests) + 1, stranger, 300, "Unknown member", window))
    return {"Contact": contacts, "Lead": _sf_leads(shoppers, known, window),
            "Loyalty_Adjustment_Request__c": requests}


def _sf_leads(shoppers: list[Shopper], known: list[Shopper], window: Window) -> list[dict]:
    """Leads the CRM holds already (no random draw, so the rest of the data stays as it was): open
    ones of shoppers it has no Contact for (the push writes on them), and converted ones of a few
    it has (read-only: left alone)."""
    contacted = {s.index for s in known}
    chosen = [(s, False) for s in shoppers if s.first_order_at is not None and s.index not in contacted
              and s.index % 23 == 5]
    chosen += [(s, True) for s in known if s.index % 9 == 2]
    leads = []
    for n, (shopper, converted) in enumerate(sorted(chosen, key=lambda c: c[0].index), start=1):
        created = window.first - timedelta(days=20 + shopper.index % 200)
        leads.append({
            "Id": _sf_id("00Q", n),
            "FirstName": shopper.firstname,
            "LastName": shopper.lastname,
            "Company": f"{shopper.lastname} household",
            "Email": shopper.email,
            "Status": "Closed - Converted" if converted else "Open - Not Contacted",
            "IsConverted": converted,
            "CreatedDate": _sf_time(created),
        })
    return leads


def _sf_request(
    rng: random.Random, n: int, contact: dict, points: int, reason: str | None, window: Window
) -> dict:
    record = {
        "Id": _sf_id("a0A", n),
        "Contact__c": contact["Id"],
        "Points__c": points,
        "Status__c": "New",
        "CreatedDate": _sf_time(window.at(rng, 0.1, 0.9)),
    }
    if reason is not None:
        record["Reason__c"] = reason
    return record


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def generate(
    out: Path,
    customers: int = 500,
    days: int = 60,
    start: date | None = None,
    seed: int = 0,
    program_currency: str = "USD",
) -> dict:
    """Write a seed directory for every platform under `out` and return what it contains.

    The keys below describe the Magento part (unchanged); per-platform counts are added as
    `<platform>_<thing>` (`bigcommerce_orders`, `commercetools_refund_transactions`, `sfcc_order_versions`,
    `smile_customers`, `salesforce_adjustment_requests`, ...), plus `multi_platform_shoppers`,
    `total_orders` and `total_malformed_records`.

    The summary has `start`/`end` (ISO dates), `shoppers` (people), `customers` (registered accounts),
    `customer_versions`, `orders` (distinct entity ids), `order_versions`, `credit_memos`,
    `credit_memo_versions`, `malformed_records` and `fx_rate_rows`.
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if program_currency not in ("USD", *FX_CURRENCIES):
        raise ValueError(
            f"program_currency {program_currency!r} is not one of USD, {', '.join(FX_CURRENCIES)}"
        )
    out = Path(out)
    window = Window(start or default_start(days), days)
    rng = random.Random(seed)
    usd_per_unit = _fx_walk(rng, window)
    shoppers = _make_shoppers(rng, customers, window)

    plans = _plan_orders(rng, shoppers)
    _force_coverage(plans)
    malformed = _malformed_plans(rng, shoppers, window, per_kind=max(1, round(len(plans) * 0.002)))
    plans += malformed
    for plan in plans:
        _set_identity(rng, plan)
        _build_lines(rng, plan)
        _build_timeline(rng, plan, window)
        _set_rates(plan, usd_per_unit)
    _number(plans)
    memos = [memo for plan in plans for memo in plan.memos]
    _number_memos(memos)

    order_records, memo_records = [], []
    for plan in sorted(plans, key=lambda p: p.entity_id):
        versions, memo_versions = _render_order(plan)
        if plan.scenario in _MALFORMED_SCENARIOS:
            versions = [_corrupt(plan, versions[0])]
        order_records += versions
        memo_records += memo_versions

    orphans = _orphan_memos(rng, plans, memos, window, count=max(1, len(malformed) // 3))
    memo_records += orphans
    customer_records = _customer_records(shoppers)
    fx_rows = _fx_rows(usd_per_unit, window, program_currency)

    bigcommerce, bc_malformed = _generate_bigcommerce(rng, shoppers, window, usd_per_unit)
    commercetools, ct_malformed = _generate_commercetools(rng, shoppers, window)
    sfcc_orders, sfcc_malformed = _generate_sfcc(rng, shoppers, window)
    smile = _generate_smile(rng, shoppers, window)
    loyaltylion = _generate_loyaltylion(rng, shoppers, window)
    salesforce = _generate_salesforce(rng, shoppers, window)

    # the platforms' folders are replaced, not merged into: a store or file left from an earlier run
    # (another seed, another size) would be served beside this one (CONTRACT.md §1: deterministic)
    for name in ("magento", "bigcommerce", "commercetools", "sfcc", "smile", "loyaltylion", "salesforce"):
        shutil.rmtree(out / name, ignore_errors=True)
    _write_json_array(out / "magento" / "orders" / "orders.json", _by_update(order_records, "entity_id"))
    _write_json_array(
        out / "magento" / "creditmemos" / "creditmemos.json", _by_update(memo_records, "entity_id")
    )
    _write_json_array(out / "magento" / "customers" / "customers.json", _by_update(customer_records, "id"))
    for store_hash, streams in bigcommerce.items():
        for stream, records in streams.items():
            _write_json_array(out / "bigcommerce" / store_hash / stream / f"{stream}.json", records)
    for entity, records in commercetools.items():
        _write_json_array(out / "commercetools" / CT_PROJECT_KEY / entity / f"{entity}.json", records)
    _write_json_array(out / "sfcc" / SFCC_ORGANIZATION_ID / "orders" / "orders.json", sfcc_orders)
    for name, data in (("smile", smile), ("loyaltylion", loyaltylion), ("salesforce", salesforce)):
        for entity, records in data.items():
            _write_json_array(out / name / entity / f"{entity}.json", records)
    (out / "fx_rates.csv").write_text("\n".join(fx_rows) + "\n", encoding="utf-8")

    unknown_state_versions = sum(1 for r in order_records if r["state"] == MALFORMED_STATE)
    magento_malformed = len(malformed) + unknown_state_versions + len(orphans)
    bc_orders = [o for streams in bigcommerce.values() for o in streams["orders"]]
    bc_refunds = [r for streams in bigcommerce.values() for r in streams["refunds"]]
    bc_customers = [c for streams in bigcommerce.values() for c in streams["customers"]]
    on_platforms = [sum(1 for times in s.platform_times.values() if times) for s in shoppers]
    return {
        "start": window.start.isoformat(),
        "end": (window.start + timedelta(days=days - 1)).isoformat(),
        "shoppers": len(shoppers),
        "customers": sum(1 for s in shoppers if s.customer_id is not None),
        "customer_versions": len(customer_records),
        "orders": len(plans),
        "order_versions": len(order_records),
        "credit_memos": len(memos) + len(orphans),
        "credit_memo_versions": len(memo_records),
        "malformed_records": magento_malformed,
        "fx_rate_rows": len(fx_rows) - 1,
        "multi_platform_shoppers": sum(1 for n in on_platforms if n >= 2),
        "bigcommerce_stores": len(bigcommerce),
        "bigcommerce_orders": _count_ids(bigcommerce, "orders"),
        "bigcommerce_order_versions": len(bc_orders),
        "bigcommerce_refunds": len(bc_refunds),
        "bigcommerce_customers": _count_ids(bigcommerce, "customers"),
        "bigcommerce_customer_versions": len(bc_customers),
        "bigcommerce_malformed_records": bc_malformed,
        "commercetools_orders": len({o["id"] for o in commercetools["orders"]}),
        "commercetools_order_versions": len(commercetools["orders"]),
        "commercetools_payments": len({p["id"] for p in commercetools["payments"]}),
        "commercetools_payment_versions": len(commercetools["payments"]),
        "commercetools_refund_transactions": len(
            {t["id"] for p in commercetools["payments"] for t in p["transactions"] if t["type"] == "Refund"}
        ),
        "commercetools_customers": len(commercetools["customers"]),
        "commercetools_malformed_records": ct_malformed,
        "sfcc_orders": len({o["orderNo"] for o in sfcc_orders}),
        "sfcc_order_versions": len(sfcc_orders),
        "sfcc_malformed_records": sfcc_malformed,
        "smile_customers": len(smile["customers"]),
        "smile_points_transactions": len(smile["points_transactions"]),
        "smile_reward_fulfillments": len(smile["reward_fulfillments"]),
        "smile_referrals": len(smile["referrals"]),
        "loyaltylion_customers": len(loyaltylion["customers"]),
        "loyaltylion_transactions": len(loyaltylion["transactions"]),
        "loyaltylion_referrals": len(loyaltylion["referrals"]),
        "salesforce_contacts": len(salesforce["Contact"]),
        "salesforce_leads": len(salesforce["Lead"]),
        "salesforce_adjustment_requests": len(salesforce["Loyalty_Adjustment_Request__c"]),
        "total_orders": len(plans)
        + _count_ids(bigcommerce, "orders")
        + len({o["id"] for o in commercetools["orders"]})
        + len({o["orderNo"] for o in sfcc_orders}),
        "total_malformed_records": magento_malformed + bc_malformed + ct_malformed + sfcc_malformed,
    }


def _count_ids(bigcommerce: dict, stream: str) -> int:
    """Distinct BigCommerce ids of a stream over every store (ids are per store)."""
    return sum(len({r["id"] for r in streams[stream]}) for streams in bigcommerce.values())


def _orphan_memos(
    rng: random.Random, plans: list[OrderPlan], memos: list[CreditMemo], window: Window, count: int
) -> list[dict]:
    """Refunded memos for order ids that never exist (the pipeline's `unknown_order`)."""
    templates = [m for m in memos if m.refunded_at()]
    if not templates:
        return []
    missing_order = max(p.entity_id for p in plans) + 100000
    return [
        _orphan_memo(rng.choice(templates), missing_order + i, len(memos) + 1 + i, window.at(rng))
        for i in range(count)
    ]
