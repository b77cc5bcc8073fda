"""Model-based tests (issue 5 item 7): Hypothesis-generated sequences of Magento order events,
delivered the way real fetches deliver them (duplicates, out of order, late for a closed day), are
run through the rule pipeline day by day; after every sequence the warehouse must equal the
independent reference model in reference_model.py (RULES.md §2, §4–§7).

Bounded for CI: few examples, derandomized, no example database, so every run tries the same
sequences. For a deeper local search: LOYALTY_MODEL_EXAMPLES=300 pytest loyalty_assets_tests/test_model.py
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from decimal import Decimal

import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from magento_factory import memo, order
from pipeline import process, status_of
from reference_model import MemoVersion, Model, OrderVersion, Rules

from loyalty_assets.lib import warehouse
from loyalty_assets.lib.platforms.magento import parse_time
from loyalty_assets.lib.program import parse_program
from loyalty_assets.lib.raw import insert_versions

DAYS = 6
FIRST = dt.date(2024, 3, 1)
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=DAYS)  # exclusive: every record is modified inside the horizon
ORDER_KINDS = {"earn", "adjust", "clawback"}

EXAMPLES = int(os.environ.get("LOYALTY_MODEL_EXAMPLES", "0"))


def bounded(ci_examples: int):
    return settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def cents(n: int) -> Decimal:
    return (Decimal(n) / 100).quantize(Decimal("0.01"))


def day_of(t: dt.datetime) -> int:
    return (t - START).days


# -- generating sequences of events ------------------------------------------------------------

ACTIONS = ["pay", "fulfil", "hold", "reprocess", "edit", "partial_refund", "memo_change", "full_refund", "cancel"]


@st.composite
def stories(draw):
    """Orders of 1–3 shoppers over DAYS days, each as its records (order and credit-memo versions)
    with the day each copy of a record is landed (a record may be landed twice, or days late)."""
    shoppers = draw(st.integers(1, 3))
    n_orders = draw(st.integers(1, 4))
    records: list[OrderVersion | MemoVersion] = []
    memo_ids = iter(range(101, 10_000))
    for oid in range(1, n_orders + 1):
        email = f"s{draw(st.integers(0, shoppers - 1))}@example.com"
        t = START + dt.timedelta(days=draw(st.integers(0, DAYS - 1)), seconds=draw(st.integers(0, 86_399)))
        created = t
        state = draw(st.sampled_from(["new", "processing", "pending_payment", "complete"]))
        subtotal = draw(st.integers(0, 90_000))
        discount = draw(st.integers(0, subtotal // 2))

        def version(at, state, subtotal, discount, oid=oid, email=email, created=created):
            return OrderVersion(oid, email, created, at, state, cents(subtotal), cents(discount))

        records.append(version(t, state, subtotal, discount))
        memos: list[MemoVersion] = []
        for _ in range(draw(st.integers(0, 5))):
            action = draw(st.sampled_from(ACTIONS))
            t += dt.timedelta(seconds=draw(st.integers(60, 40 * 3600)))
            if t >= END:
                break
            if action in ("pay", "reprocess"):
                state = "processing"
            elif action == "fulfil":
                state = "complete"
            elif action == "hold":
                state = "holded"
            elif action == "cancel":
                state = "canceled"
            elif action == "edit":
                subtotal = draw(st.integers(0, 90_000))
                discount = draw(st.integers(0, subtotal // 2))
            elif action == "partial_refund":
                sub = draw(st.integers(0, subtotal))
                m = MemoVersion(next(memo_ids), oid, t, draw(st.sampled_from([2, 1, 3])), cents(sub),
                                cents(draw(st.integers(0, sub // 2))))
                memos.append(m)
                records.append(m)
                continue
            elif action == "memo_change":
                if not memos:
                    continue
                old = draw(st.sampled_from(memos))
                m = MemoVersion(old.memo_id, oid, t, draw(st.sampled_from([2, 1, 3])), old.subtotal, old.discount)
                memos.append(m)
                records.append(m)
                continue
            elif action == "full_refund":
                m = MemoVersion(next(memo_ids), oid, t, 2, cents(subtotal), cents(discount))
                memos.append(m)
                records.append(m)
                t += dt.timedelta(seconds=draw(st.integers(60, 6 * 3600)))
                if t >= END:
                    break
                state = "closed"
            records.append(version(t, state, subtotal, discount))
    deliveries = []
    for r in records:
        day = day_of(r.updated_at)
        delay = draw(st.sampled_from([0, 0, 0, 1, 2]))  # > 0: fetched after its day was closed
        deliveries.append((min(day + delay, DAYS - 1), r))
        if draw(st.sampled_from([False, False, False, True])):  # delivered twice
            deliveries.append((min(day + draw(st.integers(0, 2)), DAYS - 1), r))
    reverse = draw(st.booleans())  # batches landed newest first (out of order within a fetch)
    every_day = draw(st.booleans())  # run every day, or only on days something is fetched
    return {"shoppers": shoppers, "deliveries": deliveries, "reverse": reverse, "every_day": every_day}


# -- running a story through the pipeline and the model ----------------------------------------


def payload(r: OrderVersion | MemoVersion) -> dict:
    if isinstance(r, OrderVersion):
        return order(r.order_id, stamp(r.updated_at), state=r.state, subtotal=str(r.subtotal),
                     discount=str(r.discount), email=r.email, created_at=stamp(r.created_at))
    return memo(r.memo_id, r.order_id, stamp(r.updated_at), state=r.state, subtotal=str(r.subtotal),
                discount=str(r.discount))


def land_batch(conn, program, batch) -> None:
    """Land records in the order given (pipeline.land groups by entity; this keeps the order)."""
    for r in batch:
        source = "magento.orders" if isinstance(r, OrderVersion) else "magento.creditmemos"
        insert_versions(conn, source, "default", [payload(r)], lambda x: x["entity_id"],
                        lambda x: parse_time(x["updated_at"], "updated_at"), program.tz)


def describe(story, model: Model, got_entries) -> str:
    lines = ["deliveries (land day, record):"]
    lines += [f"  d{ld} {r}" for ld, r in sorted(story["deliveries"], key=lambda x: (x[0], x[1].updated_at))]
    lines.append("model entries:")
    lines += [f"  {e}" for e in model.entries]
    lines.append("warehouse entries:")
    lines += [f"  {e}" for e in got_entries]
    return "\n".join(lines)


def label(story) -> None:
    """What a sequence exercises (pytest --hypothesis-show-statistics)."""
    seen: dict[tuple, int] = {}
    for ld, r in story["deliveries"]:
        if ld > day_of(r.updated_at):
            event("late memo" if isinstance(r, MemoVersion) else "late order version")
        if r.key in seen:
            event("duplicate delivery")
        seen[r.key] = ld
    versions = [(ld, r) for ld, r in story["deliveries"] if isinstance(r, OrderVersion)]
    if any(a.order_id == b.order_id and a.updated_at < b.updated_at and la > lb
           for la, a in versions for lb, b in versions):
        event("out-of-order versions")
    states = {r.state for _, r in versions}
    for s in ("canceled", "closed", "holded", "complete"):
        if s in states:
            event(f"state {s}")
    if any(isinstance(r, MemoVersion) for _, r in story["deliveries"]):
        event("credit memo")


def run_story(story, rules: Rules, extra_days: int = 0) -> None:
    label(story)
    config = {"earning": {"points_per_unit": str(rules.points_per_unit), "trigger": rules.trigger,
                          "pending_days": rules.pending_days}}
    program = parse_program(yaml.safe_dump(config))
    model = Model(rules)
    with tempfile.TemporaryDirectory() as tmp:
        conn = warehouse.connect(os.path.join(tmp, "w.duckdb"))
        try:
            last = FIRST
            for d in range(DAYS):
                batch = [r for ld, r in story["deliveries"] if ld == d]
                if story["reverse"]:
                    batch.reverse()
                if not batch and not story["every_day"] and d != DAYS - 1:
                    continue
                day = FIRST + dt.timedelta(days=d)
                land_batch(conn, program, batch)
                model.land(batch)
                first = min((r.updated_at.date() for r in model.landed.values()), default=day)
                process(conn, program, day)
                model.run(day, first)
                last = day
            check(conn, program, model, story, last)
            if extra_days:  # nothing new: pending points become spendable as the days pass
                later = last + dt.timedelta(days=extra_days)
                process(conn, program, later)
                model.run(later, first)
                check(conn, program, model, story, later)
        finally:
            conn.close()


def check(conn, program, model: Model, story, last: dt.date) -> None:
    got = sorted(conn.execute(
        "SELECT order_key, kind, points, booked_on, available_on FROM ledger_entries").fetchall())
    want = sorted((f"magento:default:{e.order_id}", e.kind, e.points, e.booked_on, e.available_on)
                  for e in model.entries)
    why = describe(story, model, got)

    # nothing quarantined: every state and amount generated is valid
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0, why
    # entry ids unique, only order kinds
    n, distinct = conn.execute("SELECT count(*), count(DISTINCT entry_id) FROM ledger_journal").fetchone()
    assert n == distinct, why
    kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM ledger_journal").fetchall()}
    assert kinds <= ORDER_KINDS, (kinds, why)
    # lifecycle of every order (§2)
    lifecycles = dict(conn.execute("SELECT order_key, lifecycle FROM order_facts").fetchall())
    assert lifecycles == {f"magento:default:{k}": v for k, v in model.lifecycles().items()}, why
    # per order, the entries add up to its value (§5–§6)
    sums = dict(conn.execute(
        "SELECT order_key, sum(points)::BIGINT FROM ledger_entries GROUP BY order_key").fetchall())
    values = {f"magento:default:{k}": v for k, v in model.order_values().items()}
    assert {k: v for k, v in sums.items() if v} == {k: v for k, v in values.items() if v}, why
    # balances, spendable and pending, as of the last booked day (§6)
    emails = sorted({r.email for _, r in story["deliveries"] if isinstance(r, OrderVersion)})
    for email in emails:
        s = status_of(conn, email)
        assert s["as_of"] == last, why
        assert (s["points_spendable"], s["points_pending"]) == model.balances(email, last), (email, why)
    # the entries themselves: day booked, kind, available_on (§6)
    assert got == want, why
    # tiers, calendar year with next_period retention, all within 2024 (§7)
    for email in emails:
        s = status_of(conn, email)
        tier, metric = model.tier(email, last)
        assert (s["vip_tier"], Decimal(str(s["tier_metric"]))) == (tier, metric), (email, why)
    # re-running the last day books nothing (§6)
    before = conn.execute("SELECT count(*) FROM ledger_journal").fetchone()[0]
    assert process(conn, program, last).entries == 0, why
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchone()[0] == before, why


# -- the properties ------------------------------------------------------------------------------


def _at(day: int, hour: int) -> dt.datetime:
    return START + dt.timedelta(days=day, hours=hour)


# Always tried first: Silver reached on day 0, then the order is canceled (retention keeps Silver),
# a second order's credit memo is fetched two days late, and a version is delivered twice.
RETENTION_STORY = {
    "shoppers": 1,
    "deliveries": [
        (0, OrderVersion(1, "s0@example.com", _at(0, 10), _at(0, 10), "processing", Decimal("600.00"), Decimal("0.00"))),
        (2, OrderVersion(1, "s0@example.com", _at(0, 10), _at(2, 9), "canceled", Decimal("600.00"), Decimal("0.00"))),
        (2, OrderVersion(1, "s0@example.com", _at(0, 10), _at(2, 9), "canceled", Decimal("600.00"), Decimal("0.00"))),
        (1, OrderVersion(2, "s0@example.com", _at(1, 8), _at(1, 8), "complete", Decimal("120.50"), Decimal("10.00"))),
        (5, MemoVersion(101, 2, _at(3, 23), 2, Decimal("30.25"), Decimal("0.00"))),
    ],
    "reverse": True,
    "every_day": False,
}


@bounded(10)
@given(story=stories())
@example(story=RETENTION_STORY)
def test_warehouse_equals_model(story):
    run_story(story, Rules())


@bounded(6)
@given(story=stories(), pending_days=st.sampled_from([1, 3, 14]), rate=st.sampled_from(["1", "1.5"]),
       trigger=st.sampled_from(["paid", "fulfilled"]))
@example(story=RETENTION_STORY, pending_days=3, rate="1", trigger="paid")
def test_warehouse_equals_model_with_pending_days(story, pending_days, rate, trigger):
    rules = Rules(points_per_unit=Decimal(rate), trigger=trigger, pending_days=pending_days)
    run_story(story, rules, extra_days=pending_days)
