"""Deterministic demo data for one Magento 2 instance (`loyalty generate`, CONTRACT.md §1 and §2).

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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import simplejson

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
FX_CURRENCIES = ("EUR", "GBP", "CAD", "JPY")
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
    order_times: list[datetime] = field(default_factory=list)

    @property
    def has_account(self) -> bool:
        return self.kind != "guest"

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
    count = rng.choices((1, 2, 3, 4, 5, 6), weights=(35, 25, 18, 10, 7, 5))[0]
    if shopper.kind in ("registers_later", "changes_email"):
        count = max(2, count)
    shopper.order_times = sorted(window.at(rng, 0.0, 0.97) for _ in range(count))


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
    """Write the Magento part of a seed directory under `out` and return what it contains.

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

    _write_json_array(out / "magento" / "orders" / "orders.json", _by_update(order_records, "entity_id"))
    _write_json_array(
        out / "magento" / "creditmemos" / "creditmemos.json", _by_update(memo_records, "entity_id")
    )
    _write_json_array(out / "magento" / "customers" / "customers.json", _by_update(customer_records, "id"))
    (out / "fx_rates.csv").write_text("\n".join(fx_rows) + "\n", encoding="utf-8")

    unknown_state_versions = sum(1 for r in order_records if r["state"] == MALFORMED_STATE)
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
        "malformed_records": len(malformed) + unknown_state_versions + len(orphans),
        "fx_rate_rows": len(fx_rows) - 1,
    }


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
