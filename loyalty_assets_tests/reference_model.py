"""An independent reference model of RULES.md §2 and §4–§7 for Magento orders in the program currency.

Pure Python and Decimal; it deliberately imports nothing from ``loyalty_assets`` so that the
Hypothesis suite (test_model.py) compares the warehouse with a second, much simpler reading of the
rules. Scope: USD orders with base currency USD (rate 1, no FX), no excluded product types, no
store multipliers, no min_eligible, one program version, guests identified by email only, one
calendar year for tiers.

Records are what Magento sends: order versions (state, subtotal, discount at a modification time)
and credit-memo versions (state 1 open / 2 refunded / 3 canceled). A *run* lands a batch of records
and books the open days up to a target day; the model books each of those days with what has been
landed so far, filtered to what was modified before the end of that day (RULES.md §6: late records
for a closed day land on the first open day).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

# RULES.md §2: Magento `state` → lifecycle signal; precedence canceled > refunded > fulfilled > paid > pending.
MAGENTO_SIGNAL = {
    "new": "pending",
    "pending_payment": "pending",
    "payment_review": "pending",
    "holded": "pending",
    "processing": "paid",
    "complete": "fulfilled",
    "canceled": "canceled",
    "closed": "refunded",
}
RANK = {"pending": 0, "paid": 1, "fulfilled": 2, "refunded": 3, "canceled": 4}
LIFECYCLE = {v: k for k, v in RANK.items()}
MEMO_REFUNDED = 2

DEFAULT_LEVELS = (("Bronze", Decimal(0)), ("Silver", Decimal(500)), ("Gold", Decimal(1500)))


def money(x: Decimal | str | int) -> Decimal:
    return Decimal(x).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class OrderVersion:
    order_id: int
    email: str
    created_at: dt.datetime
    updated_at: dt.datetime
    state: str
    subtotal: Decimal
    discount: Decimal  # positive amount; Magento sends it negative

    @property
    def key(self) -> tuple:
        return ("order", self.order_id, self.updated_at)


@dataclass(frozen=True)
class MemoVersion:
    memo_id: int
    order_id: int
    updated_at: dt.datetime
    state: int
    subtotal: Decimal
    discount: Decimal

    @property
    def key(self) -> tuple:
        return ("memo", self.memo_id, self.updated_at)


@dataclass(frozen=True)
class OrderState:
    lifecycle: str
    eligible: Decimal  # latest version, order currency = program currency
    refunded: Decimal  # refunded eligible, memos in state 2 (latest version of each memo)
    net: Decimal  # max(0, eligible - refunded)
    created_on: dt.date
    email: str


def order_state(versions: list[OrderVersion], memos: list[MemoVersion]) -> OrderState | None:
    """An order as the given records show it (§2 lifecycle = highest rank seen; §3–§4 money)."""
    if not versions:
        return None
    rank = max(RANK[MAGENTO_SIGNAL[v.state]] for v in versions)
    latest = max(versions, key=lambda v: v.updated_at)
    eligible = max(Decimal(0), money(latest.subtotal) - money(abs(latest.discount)))
    newest_memo: dict[int, MemoVersion] = {}
    for m in memos:
        if m.memo_id not in newest_memo or m.updated_at > newest_memo[m.memo_id].updated_at:
            newest_memo[m.memo_id] = m
    refunded = sum(
        (max(Decimal(0), money(m.subtotal) - money(abs(m.discount)))
         for m in newest_memo.values() if m.state == MEMO_REFUNDED),
        Decimal(0),
    )
    net = max(Decimal(0), eligible - refunded)
    return OrderState(LIFECYCLE[rank], eligible, refunded, net, latest.created_at.date(), latest.email)


@dataclass(frozen=True)
class Rules:
    points_per_unit: Decimal = Decimal(1)
    rounding: str = "floor"
    trigger: str = "paid"
    pending_days: int = 0
    levels: tuple = DEFAULT_LEVELS

    def earning(self, s: OrderState) -> bool:
        """Reached the trigger and neither canceled nor refunded (§5, §7)."""
        return RANK[self.trigger] <= RANK[s.lifecycle] <= RANK["fulfilled"]

    def value(self, s: OrderState | None) -> int:
        """§5: value(order) = round(net eligible × points_per_unit) once the order earns, else 0."""
        if s is None or not self.earning(s):
            return 0
        mode = ROUND_FLOOR if self.rounding == "floor" else ROUND_HALF_UP
        return int((s.net * self.points_per_unit).quantize(Decimal(1), rounding=mode))

    def level(self, metric: Decimal) -> int:
        return max(i for i, (_, threshold) in enumerate(self.levels) if threshold <= metric)


@dataclass(frozen=True)
class Entry:
    order_id: int
    email: str
    kind: str
    points: int
    booked_on: dt.date
    available_on: dt.date


@dataclass
class Model:
    """The ledger and tiers after a sequence of runs (each: land a batch, then book up to a day)."""

    rules: Rules = field(default_factory=Rules)
    landed: dict[tuple, OrderVersion | MemoVersion] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    booked: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    trigger_day: dict[int, dt.date] = field(default_factory=dict)
    closed_through: dt.date | None = None
    earned_by_day: dict[str, dict[dt.date, int]] = field(default_factory=lambda: defaultdict(dict))

    # -- runs ---------------------------------------------------------------------------------
    def land(self, records) -> None:
        for r in records:  # a version is its id and modified time: delivered twice, kept once
            self.landed.setdefault(r.key, r)

    def states(self, day: dt.date | None = None) -> dict[int, OrderState]:
        """Every known order as of the end of `day` (None: everything landed)."""
        end = None if day is None else dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        versions, memos = defaultdict(list), defaultdict(list)
        for r in self.landed.values():
            if end is not None and r.updated_at >= end:
                continue
            (versions if isinstance(r, OrderVersion) else memos)[r.order_id].append(r)
        out = {}
        for oid, vs in versions.items():
            s = order_state(vs, memos.get(oid, []))
            if s is not None:
                out[oid] = s
        return out

    def run(self, through: dt.date, first_day: dt.date) -> None:
        """Book every day after the last closed one up to `through` (all of them end: closed)."""
        start = first_day if self.closed_through is None else self.closed_through + dt.timedelta(days=1)
        day = start
        while day <= through:
            self.book_day(day)
            day += dt.timedelta(days=1)
        self.closed_through = max(self.closed_through or through, through)

    def book_day(self, day: dt.date) -> None:
        states = self.states(day)
        for oid in sorted(states):
            s = states[oid]
            delta = self.rules.value(s) - self.booked[oid]
            if delta == 0:
                continue
            if delta < 0:
                kind = "clawback"
            elif oid in self.trigger_day:
                kind = "adjust"
            else:
                kind = "earn"
                self.trigger_day[oid] = day
            trig = self.trigger_day.get(oid, day)
            available = max(day, trig + dt.timedelta(days=self.rules.pending_days))
            self.entries.append(Entry(oid, s.email, kind, delta, day, available))
            self.booked[oid] += delta
        # §7 tiers: earned(day) as evaluated on that day, with what was known when it was booked
        for email, metric in self.tier_metrics(states, day.year).items():
            self.earned_by_day[email][day] = self.rules.level(metric)

    # -- what the warehouse must show ---------------------------------------------------------
    def tier_metrics(self, states: dict[int, OrderState], year: int) -> dict[str, Decimal]:
        metrics: dict[str, Decimal] = defaultdict(Decimal)
        for s in states.values():
            metrics[s.email] += Decimal(0)
            if self.rules.earning(s) and s.created_on.year == year:
                metrics[s.email] += s.net
        return metrics

    def tier(self, email: str, day: dt.date) -> tuple[str, Decimal]:
        """tier(day) with calendar_year + next_period retention, within one year: the best level
        earned on any booked day of this year or the last, as evaluated that day; and the metric."""
        metric = self.tier_metrics(self.states(day), day.year).get(email, Decimal(0))
        history = [lvl for d, lvl in self.earned_by_day[email].items() if d.year >= day.year - 1 and d <= day]
        rank = max([self.rules.level(metric), *history])
        return self.rules.levels[rank][0], metric

    def balances(self, email: str, as_of: dt.date) -> tuple[int, int]:
        """§6: (spendable, pending) as of a day."""
        mine = [e for e in self.entries if e.email == email and e.booked_on <= as_of]
        spendable = sum(e.points for e in mine if e.available_on <= as_of)
        pending = sum(e.points for e in mine if e.available_on > as_of)
        return spendable, pending

    def order_values(self) -> dict[int, int]:
        return {oid: self.rules.value(s) for oid, s in self.states().items()}

    def lifecycles(self) -> dict[int, str]:
        return {oid: s.lifecycle for oid, s in self.states().items()}
