"""The points ledger and VIP tiers follow RULES.md §5–§8 exactly: what is booked, on which day, with
which kind; the watermark (closed days are never booked again, late data lands on the first open
day); pending points; earn-time rates; tiers with every metric, period and retention option; and
identity (guest → registered, the same-tenant guard)."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from magento_factory import memo, order
from pipeline import FAR_FUTURE, book, entries, indexes, land, map_and_resolve, process, status_of

from loyalty_assets.lib import facts, ledger, warehouse
from loyalty_assets.lib.program import parse_program

D = dt.date
K1, K2 = "magento:default:1", "magento:default:2"


@pytest.fixture
def conn(tmp_path):
    c = warehouse.connect(str(tmp_path / "w.duckdb"))
    yield c
    c.close()


def program(**overrides):
    import yaml

    return parse_program(yaml.safe_dump(overrides))


def test_earn_partial_refund_and_rerun_books_nothing(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", state="new"), order(1, "2024-03-02 10:00:00", subtotal="120.50")],
         memos=[memo(9, 1, "2024-03-04 12:00:00", subtotal="50.25")])
    process(conn, p, D(2024, 3, 5))
    assert entries(conn) == [(K1, "earn", 120, D(2024, 3, 2), D(2024, 3, 2)),
                             (K1, "clawback", -50, D(2024, 3, 4), D(2024, 3, 4))]  # floor(70.25) = 70
    again = process(conn, p, D(2024, 3, 5))
    assert again.entries == 0 and len(entries(conn)) == 2
    s = status_of(conn, "ann@example.com")
    assert (s["points_spendable"], s["points_pending"], s["as_of"]) == (70, 0, D(2024, 3, 5))


def test_an_amount_beyond_the_warehouse_range_is_quarantined_not_a_failed_run(conn):
    """CONTRACT.md §3: a bad amount is a quarantine row with a reason. One whose minor units exceed
    BIGINT aborted the whole normalize (a ConversionException), on every later run too."""
    p = program()
    huge = order(1, "2024-03-01 10:00:00")
    huge["subtotal"] = "99999999999999999.99"
    land(conn, p, orders=[huge, order(2, "2024-03-01 11:00:00", subtotal="40.00", email="bo@example.com")])
    process(conn, p, D(2024, 3, 2))
    assert conn.execute("SELECT record_key, reason FROM quarantine").fetchall() == [("magento:default:1", "bad_amount")]
    assert entries(conn) == [(K2, "earn", 40, D(2024, 3, 1), D(2024, 3, 1))]


def test_pending_days_stay_those_the_order_earned_under(conn):
    """RULES.md §1 and §6: every entry of an order is available on max(booked_on, trigger day +
    pending_days) with the rules it first earned under. pending_days went from 14 to 0 and a cancel
    inside the return window was spendable at once (-100 spendable), its entry naming the old rules."""
    p14 = program(earning={"pending_days": 14})
    land(conn, p14, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-01 11:00:00", subtotal="50.00")])
    process(conn, p14, D(2024, 3, 2))
    p0 = program(earning={"pending_days": 0})
    land(conn, p0, orders=[order(1, "2024-03-05 10:00:00", state="canceled", created_at="2024-03-01 10:00:00"),
                           order(3, "2024-03-05 11:00:00", subtotal="20.00")])
    process(conn, p0, D(2024, 3, 5))
    assert entries(conn) == [(K1, "earn", 100, D(2024, 3, 1), D(2024, 3, 15)), (K2, "earn", 50, D(2024, 3, 1), D(2024, 3, 15)),
                             (K1, "clawback", -100, D(2024, 3, 5), D(2024, 3, 15)),
                             ("magento:default:3", "earn", 20, D(2024, 3, 5), D(2024, 3, 5))]  # a new order: today's rules
    s = status_of(conn, "ann@example.com")
    assert (s["points_spendable"], s["points_pending"]) == (20, 50)

def test_cancel_and_full_refund_are_worth_zero_whatever_the_memos_say(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(1, "2024-03-03 10:00:00", state="canceled"),
                          order(2, "2024-03-01 11:00:00", subtotal="40.00"), order(2, "2024-03-04 09:00:00", state="closed",
                                                                                  subtotal="40.00")],
         memos=[memo(7, 2, "2024-03-04 09:00:00", subtotal="10.00")])
    process(conn, p, D(2024, 3, 5))
    assert entries(conn) == [(K1, "earn", 100, D(2024, 3, 1), D(2024, 3, 1)), (K2, "earn", 40, D(2024, 3, 1), D(2024, 3, 1)),
                             (K1, "clawback", -100, D(2024, 3, 3), D(2024, 3, 3)),
                             (K2, "clawback", -40, D(2024, 3, 4), D(2024, 3, 4))]
    facts = dict(conn.execute("SELECT order_key, lifecycle FROM order_facts").fetchall())
    assert facts == {K1: "canceled", K2: "refunded"}


def test_lifecycle_never_moves_back_and_unknown_status_keeps_previous(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", state="complete"),
                          order(1, "2024-03-02 10:00:00", state="processing"),
                          order(1, "2024-03-03 10:00:00", state="holded"),
                          order(1, "2024-03-04 10:00:00", state="closed_exchange_success")])
    process(conn, p, D(2024, 3, 5))
    assert conn.execute("SELECT lifecycle FROM order_facts").fetchone()[0] == "fulfilled"
    assert conn.execute("SELECT reason FROM quarantine").fetchall() == [("unknown_status",)]
    assert [e[1:3] for e in entries(conn)] == [("earn", 100)]


def test_late_credit_memo_is_booked_on_the_first_open_day(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p, D(2024, 3, 5))
    land(conn, p, memos=[memo(9, 1, "2024-03-02 08:00:00", subtotal="30.00")])  # fetched late, for a closed day
    assert process(conn, p, D(2024, 3, 4)).entries == 0  # re-running closed days books nothing
    process(conn, p, D(2024, 3, 6))
    assert entries(conn)[-1] == (K1, "clawback", -30, D(2024, 3, 6), D(2024, 3, 6))


def test_open_day_books_only_what_is_new(conn):
    p = program()
    noon = dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC)
    land(conn, p, orders=[order(1, "2024-03-05 09:00:00")])
    r = process(conn, p, D(2024, 3, 5), now=noon)
    assert r.closed_through is None and r.last_booked_day == D(2024, 3, 5)  # today is still open
    land(conn, p, orders=[order(1, "2024-03-05 11:00:00", subtotal="150.00")])
    process(conn, p, D(2024, 3, 5), now=noon)
    assert sorted(e[1:4] for e in entries(conn)) == [("adjust", 50, D(2024, 3, 5)), ("earn", 100, D(2024, 3, 5))]
    assert process(conn, p, D(2024, 3, 5), now=noon).entries == 0


def test_an_open_day_booked_again_after_the_next_one_counts_what_was_booked_up_to_it(conn):
    """RULES.md §6: a day that has not ended can be booked many times, each run adding only what is
    new. Just after midnight (within the safety lag) 5 March is still open when 6 March is booked;
    booking both again compares each day with what was booked up to it, not with 6 March's entry
    too (that booked -50 on the 5th, and 6 March's +50 again had the id already in the journal: the
    order stayed 50 short for good). A late version for the 5th is then booked as what is new."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-05 10:00:00"), order(1, "2024-03-06 00:00:10", subtotal="150.00")])
    just_after_midnight = dt.datetime(2024, 3, 6, 0, 0, 30, tzinfo=dt.UTC)
    assert process(conn, p, D(2024, 3, 6), now=just_after_midnight).closed_through is None
    booked = [("earn", 100, D(2024, 3, 5)), ("adjust", 50, D(2024, 3, 6))]
    assert [e[1:4] for e in entries(conn)] == booked
    r = process(conn, p, D(2024, 3, 6), now=dt.datetime(2024, 3, 6, 0, 5, tzinfo=dt.UTC))
    assert (r.entries, r.closed_through) == (0, D(2024, 3, 5))
    assert [e[1:4] for e in entries(conn)] == booked
    # a version modified on the 5th, fetched late: the 6th is open, so it is booked there, and once
    land(conn, p, orders=[order(1, "2024-03-05 23:00:00", subtotal="120.00", created_at="2024-03-05 10:00:00")])
    process(conn, p, D(2024, 3, 7))
    assert conn.execute("SELECT sum(points) FROM ledger_entries").fetchall() == [(150,)]
    assert ledger.order_value_mismatches(conn, p) == []
    assert process(conn, p, D(2024, 3, 7)).entries == 0


def test_two_open_days_booked_again_with_a_late_change_of_the_first(conn):
    """Both days open and booked, then a version modified on the first turns up: booking them again
    books on the first day what changed there and corrects the second by the difference, so every
    day's entries add up to the order's value at its end."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-05 10:00:00"), order(1, "2024-03-06 10:00:00", subtotal="150.00")])
    early = dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC)  # neither day has ended
    process(conn, p, D(2024, 3, 6), now=early)
    land(conn, p, orders=[order(1, "2024-03-05 11:00:00", subtotal="120.00")])
    process(conn, p, D(2024, 3, 6), now=early)
    by_day = conn.execute("SELECT booked_on, sum(points) FROM ledger_entries GROUP BY 1 ORDER BY 1").fetchall()
    assert by_day == [(D(2024, 3, 5), 120), (D(2024, 3, 6), 30)]  # 120 at the end of the 5th, 150 of the 6th
    assert process(conn, p, D(2024, 3, 6), now=early).entries == 0


def test_pending_days_voids_points_refunded_inside_the_window(conn):
    p = program(earning={"pending_days": 14})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-01 11:00:00", subtotal="50.00"),
                          order(2, "2024-03-10 10:00:00", state="canceled", subtotal="50.00")],
         memos=[memo(9, 1, "2024-03-20 10:00:00", subtotal="20.00")])
    process(conn, p, D(2024, 3, 5))
    s = status_of(conn, "ann@example.com")
    assert (s["points_spendable"], s["points_pending"]) == (0, 150)
    process(conn, p, D(2024, 3, 16))
    s = status_of(conn, "ann@example.com")
    assert (s["points_spendable"], s["points_pending"]) == (100, 0)  # order 2 was canceled inside the window
    assert (K2, "clawback", -50, D(2024, 3, 10), D(2024, 3, 15)) in entries(conn)
    process(conn, p, D(2024, 3, 21))
    assert entries(conn)[-1] == (K1, "clawback", -20, D(2024, 3, 20), D(2024, 3, 20))  # outside the window
    assert status_of(conn, "ann@example.com")["points_spendable"] == 80


def test_every_entry_of_an_order_is_spendable_from_its_earn_day_plus_the_window_in_one_run_or_day_by_day(tmp_path):
    """RULES.md §6: available_on = max(booked_on, trigger day + pending_days) for the adjust and the
    clawback too, whether the earn entry was booked in the same run or in an earlier one."""
    p = program(earning={"pending_days": 14})
    orders = [order(1, "2024-03-01 10:00:00"), order(1, "2024-03-03 10:00:00", subtotal="120.00"),
              order(1, "2024-03-08 10:00:00", state="canceled", subtotal="120.00")]
    expected = [(K1, "earn", 100, D(2024, 3, 1), D(2024, 3, 15)), (K1, "adjust", 20, D(2024, 3, 3), D(2024, 3, 15)),
                (K1, "clawback", -120, D(2024, 3, 8), D(2024, 3, 15))]
    for name, days in (("one_run", [D(2024, 3, 20)]), ("daily", [D(2024, 3, d) for d in range(1, 21)])):
        c = warehouse.connect(str(tmp_path / f"{name}.duckdb"))
        land(c, p, orders=orders)
        for day in days:
            process(c, p, day)
        assert entries(c) == expected, name
        c.close()


def test_trigger_fulfilled(conn):
    p = program(earning={"trigger": "fulfilled"})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(1, "2024-03-03 10:00:00", state="complete")])
    process(conn, p, D(2024, 3, 5))
    assert entries(conn) == [(K1, "earn", 100, D(2024, 3, 3), D(2024, 3, 3))]


def test_min_eligible_rate_multiplier_and_rounding(conn):
    p = program(earning={"points_per_unit": "1.5", "rounding": "half_up", "min_eligible": "25",
                         "store_multipliers": {"magento:default:2": "2"}})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="10.33", store_id=2),
                          order(2, "2024-03-01 10:00:00", subtotal="30.33", store_id=2),
                          order(3, "2024-03-01 10:00:00", subtotal="30.33", store_id=1)])
    process(conn, p, D(2024, 3, 2))
    got = {e[0]: e[2] for e in entries(conn)}
    assert got == {K2: 91, "magento:default:3": 45}  # 30.33*1.5*2 = 90.99 -> 91; 45.495 -> 45; order 1 < 25
    floor = program(earning={"points_per_unit": "1.5", "store_multipliers": {"magento:default:2": "2"}})
    assert floor.earning.rounding == "floor"


def test_min_eligible_finer_than_a_cent_is_compared_exactly(conn):
    """RULES.md §1 "strictly below": 10.00 is below a minimum of 10.001 and earns nothing; 10.01 is not."""
    p = program(earning={"min_eligible": "10.001"})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="10.00"),
                          order(2, "2024-03-01 10:00:00", subtotal="10.01")])
    process(conn, p, D(2024, 3, 2))
    assert {e[0]: e[2] for e in entries(conn)} == {K2: 10}


def test_earn_time_rate_is_kept_for_later_refunds(conn):
    p1 = program(earning={"points_per_unit": "1"})
    land(conn, p1, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p1, D(2024, 3, 2))
    p2 = program(earning={"points_per_unit": "3"})
    land(conn, p2, orders=[order(2, "2024-03-03 10:00:00")], memos=[memo(9, 1, "2024-03-03 10:00:00", subtotal="40.00")])
    process(conn, p2, D(2024, 3, 4))
    rows = conn.execute("SELECT order_key, kind, points, rate, rule_version FROM ledger_entries ORDER BY booked_on, order_key").fetchall()
    assert [(r[0], r[1], r[2], float(r[3])) for r in rows] == [(K1, "earn", 100, 1.0), (K1, "clawback", -40, 1.0), (K2, "earn", 300, 3.0)]
    assert rows[1][4] == p1.rule_version and rows[2][4] == p2.rule_version
    assert {r[0] for r in conn.execute("SELECT rule_version FROM program_versions").fetchall()} == {p1.rule_version, p2.rule_version}


def test_earn_time_minimum_and_trigger_are_kept_for_later_refunds(conn):
    """RULES.md §1: the order is valued for ever with the version it first earned under, so a minimum
    raised and a trigger moved to `fulfilled` later do not take back the points of a paid order:
    its 30.00 refund claws back 30, not all of it."""
    p1 = program()
    land(conn, p1, orders=[order(1, "2024-03-01 10:00:00")])  # 100.00, processing: paid
    process(conn, p1, D(2024, 3, 2))
    p2 = program(earning={"min_eligible": "80", "trigger": "fulfilled"})
    land(conn, p2, orders=[order(2, "2024-03-03 10:00:00", subtotal="90.00")],
         memos=[memo(9, 1, "2024-03-03 10:00:00", subtotal="30.00")])
    process(conn, p2, D(2024, 3, 4))
    assert [(e[0], e[1], e[2]) for e in entries(conn)] == [(K1, "earn", 100), (K1, "clawback", -30)]
    # order 2 is new: today's version holds it until it is fulfilled
    land(conn, p2, orders=[order(2, "2024-03-05 10:00:00", subtotal="90.00", state="complete")])
    process(conn, p2, D(2024, 3, 5))
    assert (K2, "earn", 90) in [(e[0], e[1], e[2]) for e in entries(conn)]


def test_entry_ids_are_deterministic_and_unique(conn, tmp_path):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")], memos=[memo(9, 1, "2024-03-02 10:00:00")])
    process(conn, p, D(2024, 3, 3))
    other = warehouse.connect(str(tmp_path / "other.duckdb"))
    land(other, p, orders=[order(1, "2024-03-01 10:00:00")], memos=[memo(9, 1, "2024-03-02 10:00:00")])
    process(other, p, D(2024, 3, 3))
    ids = [r[0] for r in conn.execute("SELECT entry_id FROM ledger_journal ORDER BY entry_id").fetchall()]
    assert ids == [r[0] for r in other.execute("SELECT entry_id FROM ledger_journal ORDER BY entry_id").fetchall()]
    assert len(set(ids)) == len(ids) == 2
    with pytest.raises(Exception, match="PRIMARY KEY|unique|Duplicate"):
        conn.execute("INSERT INTO ledger_journal SELECT * FROM ledger_journal LIMIT 1")


def test_tier_upgrade_retention_next_period_and_expiry(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-06-01 10:00:00", subtotal="600.00")],
         memos=[memo(9, 1, "2024-07-01 10:00:00", subtotal="500.00")])
    process(conn, p, D(2024, 7, 2))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], float(s["tier_metric"]), s["tier_expires_on"]) == ("Silver", 100.0, D(2025, 12, 31))
    process(conn, p, D(2025, 12, 31))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Silver"
    process(conn, p, D(2026, 1, 2))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Bronze"
    changes = conn.execute("SELECT changed_on, from_tier, to_tier, reason FROM vip_tier_changes ORDER BY changed_on").fetchall()
    assert changes == [(D(2024, 6, 1), "Bronze", "Silver", "upgrade"), (D(2026, 1, 1), "Silver", "Bronze", "retention_expired")]


def test_a_tier_counts_every_earlier_order_of_the_member_not_only_the_days_changes(conn):
    """A day's evaluation reads the member's other orders from order_facts (tiers.py: tier_facts),
    whatever their lifecycle: here a fulfilled and a paid order from earlier days lift the member
    with the day's new order."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", state="complete", subtotal="250.00"),
                          order(2, "2024-03-02 10:00:00", subtotal="200.00")])
    process(conn, p, D(2024, 3, 2))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Bronze"
    land(conn, p, orders=[order(3, "2024-03-05 10:00:00", subtotal="60.00")])
    process(conn, p, D(2024, 3, 5))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], float(s["tier_metric"])) == ("Silver", 510.0)
    assert conn.execute("SELECT changed_on, to_tier FROM vip_tier_changes").fetchall() == [(D(2024, 3, 5), "Silver")]

def test_a_first_evaluation_over_many_days_dates_a_tier_from_an_order_that_booked_nothing(conn):
    """RULES.md §7: tiers are evaluated at the end of each booked day, counting orders whether or not
    they reach min_eligible. Booked and evaluated over ten days at once, an order below the minimum
    (no entry) lifts its member on its own day, not on the day of the journal's first entry."""
    p = program(earning={"min_eligible": "1000"})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="600.00"),
                          order(2, "2024-03-05 10:00:00", email="bo@example.com", subtotal="2000.00")])
    process(conn, p, D(2024, 3, 10))
    assert [(e[0], e[1], e[3]) for e in entries(conn)] == [("magento:default:2", "earn", D(2024, 3, 5))]
    changes = conn.execute("""SELECT s.email, c.changed_on, c.to_tier FROM vip_tier_changes c
                              JOIN member_status s USING (member_id) ORDER BY 1""").fetchall()
    assert changes == [("ann@example.com", D(2024, 3, 1), "Silver"), ("bo@example.com", D(2024, 3, 5), "Gold")]


def test_order_of_31_december_first_seen_in_january_counts_for_its_year(conn):
    p = program()
    land(conn, p, orders=[order(1, "2025-01-02 10:00:00", created_at="2024-12-31 20:00:00", subtotal="700.00")])
    process(conn, p, D(2025, 1, 3))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], float(s["tier_metric"]), s["tier_expires_on"]) == ("Silver", 0.0, D(2025, 12, 31))


def test_retention_none_downgrades(conn):
    p = program(tiers={"retention": "none"})
    land(conn, p, orders=[order(1, "2024-06-01 10:00:00", subtotal="1600.00")],
         memos=[memo(9, 1, "2024-06-10 10:00:00", subtotal="1200.00")])
    process(conn, p, D(2024, 6, 11))
    changes = conn.execute("SELECT changed_on, to_tier, reason FROM vip_tier_changes ORDER BY changed_on").fetchall()
    assert changes == [(D(2024, 6, 1), "Gold", "upgrade"), (D(2024, 6, 10), "Bronze", "downgrade")]
    assert status_of(conn, "ann@example.com")["tier_expires_on"] is None


def test_rolling_365_with_retention(conn):
    p = program(tiers={"period": "rolling_365"})
    land(conn, p, orders=[order(1, "2024-02-01 10:00:00", subtotal="600.00")])
    process(conn, p, D(2024, 2, 2))
    s = status_of(conn, "ann@example.com")
    # earned while the order is in the window D-364..D (through 2025-01-30), then held 365 more days
    assert (s["vip_tier"], s["tier_expires_on"]) == ("Silver", D(2026, 1, 30))
    process(conn, p, D(2026, 1, 30))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Silver"
    process(conn, p, D(2026, 2, 2))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Bronze"
    assert conn.execute("SELECT changed_on, reason FROM vip_tier_changes ORDER BY changed_on").fetchall() == [
        (D(2024, 2, 1), "upgrade"), (D(2026, 1, 31), "retention_expired")]


def test_points_metric_and_lifetime_period(conn):
    p = program(earning={"points_per_unit": "2"}, tiers={"metric": "points", "period": "lifetime"})
    land(conn, p, orders=[order(1, "2022-03-01 10:00:00", subtotal="300.00")])
    process(conn, parse_program("start_date: '2022-01-01'\nearning: {points_per_unit: '2'}\n"
                                "tiers: {metric: points, period: lifetime}"), D(2022, 3, 2))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], float(s["tier_metric"]), s["tier_expires_on"]) == ("Silver", 600.0, None)


def test_guest_who_registers_is_one_member_and_ids_are_stable(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="Kim@Example.com ")])
    process(conn, p, D(2024, 3, 1))
    first = conn.execute("SELECT DISTINCT member_id FROM member_keys").fetchall()
    land(conn, p, orders=[order(2, "2024-03-02 10:00:00", email="kim@example.com", customer_id=42)])
    process(conn, p, D(2024, 3, 2))
    assert conn.execute("SELECT DISTINCT member_id FROM member_keys").fetchall() == first
    s = status_of(conn, "kim@example.com")
    assert s["member_id"] == first[0][0] and s["points_spendable"] == 200


def test_two_customers_of_one_store_sharing_an_email_are_not_merged(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="family@example.com", customer_id=1),
                          order(2, "2024-03-02 10:00:00", email="family@example.com", customer_id=2),
                          order(3, "2024-03-03 10:00:00", email="family@example.com")])
    process(conn, p, D(2024, 3, 4))
    members = conn.execute("SELECT key, member_id FROM member_keys ORDER BY key").fetchall()
    m = dict(members)
    assert m["magento:default:1"] != m["magento:default:2"]
    assert m["family@example.com"] == m["magento:default:1"]  # the oldest member keeps the shared email
    conflict = conn.execute("SELECT key, reason FROM identity_conflicts").fetchall()
    assert conflict and conflict[0][0] == "family@example.com"
    by_order = dict(conn.execute("SELECT order_key, member_id FROM order_facts").fetchall())
    assert by_order["magento:default:3"] == m["magento:default:1"]
    # the younger member owns no address key, and shows the one its own orders use (it showed none)
    assert conn.execute("SELECT member_id, email FROM member_status ORDER BY member_id").fetchall() == sorted(
        [(m["magento:default:1"], "family@example.com"), (m["magento:default:2"], "family@example.com")])


@pytest.mark.parametrize("day_by_day", [False, True])
def test_a_shared_email_goes_to_the_oldest_member_not_the_first_to_use_it(conn, day_by_day):
    """RULES.md §8: a record known only by a contested email joins the oldest of the members. Customer 1
    (since 03-01, as one@) uses family@ only on 03-10, after customer 2 (since 03-05) did: customer 1's
    member is the older, so family@ and the guest's order 4 are its."""
    p = program()
    orders = [order(1, "2024-03-01 10:00:00", email="one@example.com", customer_id=1),
              order(2, "2024-03-05 10:00:00", email="family@example.com", customer_id=2, subtotal="40.00"),
              order(3, "2024-03-10 10:00:00", email="family@example.com", customer_id=1, subtotal="10.00"),
              order(4, "2024-03-11 10:00:00", email="family@example.com", subtotal="70.00")]
    for o in orders if day_by_day else [None]:
        land(conn, p, orders=[o] if o else orders)
        process(conn, p, D(2024, 3, 12) if o is None else D.fromisoformat(o["updated_at"][:10]))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["magento:default:1"] != m["magento:default:2"]
    assert m["family@example.com"] == m["magento:default:1"]
    assert dict(conn.execute("SELECT order_key, member_id FROM order_facts").fetchall())["magento:default:4"] == \
        m["magento:default:1"]
    assert [r[0] for r in conn.execute("SELECT key FROM identity_conflicts").fetchall()] == ["family@example.com"]


@pytest.mark.parametrize("day_by_day", [False, True])
def test_a_shared_phone_goes_to_the_oldest_member_not_the_first_to_use_it(conn, day_by_day):
    """RULES.md §8 with identity.match_phone: a phone two customers of one store share is contested like
    an e-mail. Customer 1 (since 03-01) uses it only on 03-03, after customer 2 (since 03-02) did: it
    and the guest who uses it on 03-04 are customer 1's member's. Before, the first record to use the
    phone decided."""
    p = program(identity={"match_phone": True})
    orders = [order(1, "2024-03-01 10:00:00", email="one@example.com", customer_id=1),
              order(2, "2024-03-02 10:00:00", email="two@example.com", customer_id=2, subtotal="40.00"),
              order(3, "2024-03-03 10:00:00", email="one@example.com", customer_id=1, subtotal="10.00"),
              order(4, "2024-03-04 10:00:00", email="guest@example.com", subtotal="70.00")]
    for o in orders[1:]:
        o["billing_address"] = {"email": o["customer_email"], "telephone": "+1 650 253 0000"}
    for o in orders if day_by_day else [None]:
        land(conn, p, orders=[o] if o else orders)
        process(conn, p, D(2024, 3, 5) if o is None else D.fromisoformat(o["updated_at"][:10]))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["magento:default:1"] != m["magento:default:2"]
    assert m["tel:+16502530000"] == m["guest@example.com"] == m["magento:default:1"]
    assert [r[0] for r in conn.execute("SELECT key FROM identity_conflicts").fetchall()] == ["tel:+16502530000"]


def test_a_late_older_record_of_a_second_customer_does_not_merge_the_two(conn, tmp_path):
    """RULES.md §8 guard, with customer 2's older order fetched after customer 1's member took the
    e-mail: two members still, customer 1's keeping its id and points, the e-mail with the oldest."""
    p = program()
    one = order(1, "2024-03-05 10:00:00", email="family@example.com", customer_id=1)
    two = order(2, "2024-03-03 10:00:00", email="family@example.com", customer_id=2, subtotal="40.00")
    land(conn, p, orders=[one])
    process(conn, p, D(2024, 3, 6))
    first = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())["magento:default:1"]
    land(conn, p, orders=[two])
    process(conn, p, D(2024, 3, 7))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["magento:default:1"] == first and m["magento:default:2"] != first
    assert m["family@example.com"] == m["magento:default:2"]  # customer 2's first order is the older
    assert conn.execute("SELECT reason FROM identity_conflicts").fetchall() == [
        ("same_tenant_customers_share_email: magento:default:1 vs magento:default:2",)]
    assert conn.execute("SELECT count(*) FROM member_merges").fetchall() == [(0,)]
    by_member = dict(conn.execute("SELECT member_id, points_spendable FROM member_status").fetchall())
    assert by_member == {first: 100, m["magento:default:2"]: 40}
    # the same records in one run give the same two members
    together = warehouse.connect(str(tmp_path / "together.duckdb"))
    land(together, p, orders=[one, two])
    process(together, p, D(2024, 3, 7))
    assert _partition(together) == _partition(conn)
    together.close()


def _partition(conn) -> set[frozenset]:
    rows = conn.execute("SELECT member_id, list(key ORDER BY key) FROM member_keys GROUP BY 1").fetchall()
    return {frozenset(keys) for _, keys in rows}


def test_a_late_older_record_makes_its_member_older_for_a_later_merge(conn, tmp_path):
    """RULES.md §8 "the older one survives (earliest first-seen time of any of its keys)": a@ is first
    seen 03-05, b@ 03-03; an order of a@ from 03-01 arrives late; when customer 5 then joins both, a@'s
    member survives, as it does when every record is known in one run."""
    p = program()
    early = [order(1, "2024-03-05 10:00:00", email="a@example.com"), order(2, "2024-03-03 10:00:00", email="b@example.com")]
    late = [order(3, "2024-03-01 10:00:00", email="a@example.com")]
    joining = [order(4, "2024-03-08 10:00:00", email="a@example.com", customer_id=5),
               order(5, "2024-03-08 11:00:00", email="b@example.com", customer_id=5)]

    land(conn, p, orders=early)
    process(conn, p, D(2024, 3, 6))
    first_a = conn.execute("SELECT member_id FROM member_keys WHERE key = 'a@example.com'").fetchall()[0][0]
    land(conn, p, orders=late)
    process(conn, p, D(2024, 3, 7))
    land(conn, p, orders=joining)
    process(conn, p, D(2024, 3, 8))
    one = warehouse.connect(str(tmp_path / "one.duckdb"))
    land(one, p, orders=early + late)
    process(one, p, D(2024, 3, 7))
    land(one, p, orders=joining)
    process(one, p, D(2024, 3, 8))
    merged = conn.execute("SELECT survivor_id FROM member_merges").fetchall()
    assert merged == [(first_a,)]
    assert one.execute("SELECT survivor_id FROM member_merges").fetchall() == merged
    assert conn.execute("SELECT first_seen_at FROM member_keys WHERE key = 'a@example.com'").fetchall() == one.execute(
        "SELECT first_seen_at FROM member_keys WHERE key = 'a@example.com'").fetchall()
    one.close()


def test_merge_keeps_the_older_member_and_history_follows(conn):
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="a@example.com"),
                          order(2, "2024-03-02 10:00:00", email="b@example.com", customer_id=9)])
    process(conn, p, D(2024, 3, 2))
    before = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert before["a@example.com"] != before["b@example.com"]
    # the registered customer now orders with the first email: the two members are one shopper
    land(conn, p, orders=[order(3, "2024-03-03 10:00:00", email="a@example.com", customer_id=9)])
    process(conn, p, D(2024, 3, 3))
    merge = conn.execute("SELECT survivor_id, absorbed_id FROM member_merges").fetchall()
    assert merge == [(before["a@example.com"], before["b@example.com"])]
    assert {r[0] for r in conn.execute("SELECT member_id FROM ledger_entries").fetchall()} == {before["a@example.com"]}
    assert conn.execute("SELECT count(*) FROM member_status").fetchone()[0] == 1
    assert status_of(conn, "a@example.com")["points_spendable"] == 300


@pytest.mark.parametrize("period, held_until, expired_on", [
    ("rolling_365", D(2026, 1, 30), D(2026, 1, 31)),
    ("calendar_year", D(2025, 12, 31), D(2026, 1, 1)),
])
def test_a_merged_in_members_tier_expires_as_it_would_have_unmerged(conn, period, held_until, expired_on):
    """RULES.md §7 with §8: b reached Silver, then merged into a (older); the tier is held through the
    following period and no longer: the absorbed member's last tier row ends at the merge, where its
    survivor's rows (over the orders of both) go on."""
    p = program(tiers={"period": period})
    land(conn, p, orders=[order(1, "2024-02-01 10:00:00", subtotal="600.00", email="b@example.com", customer_id=9),
                          order(2, "2024-01-15 10:00:00", subtotal="10.00", email="a@example.com")])
    process(conn, p, D(2024, 2, 2))
    land(conn, p, orders=[order(3, "2024-06-01 10:00:00", subtotal="10.00", email="a@example.com", customer_id=9)])
    process(conn, p, D(2024, 6, 2))
    assert conn.execute("SELECT count(*) FROM member_merges").fetchone()[0] == 1
    process(conn, p, D(2025, 3, 1))
    held = status_of(conn, "a@example.com")
    assert (held["vip_tier"], held["tier_expires_on"]) == ("Silver", held_until)
    process(conn, p, D(2026, 3, 1))
    after = status_of(conn, "a@example.com")
    assert (after["vip_tier"], after["tier_expires_on"]) == ("Bronze", None)
    assert conn.execute("SELECT changed_on, from_tier, to_tier, reason FROM vip_tier_changes ORDER BY changed_on"
                        ).fetchall() == [(D(2024, 2, 1), "Bronze", "Silver", "upgrade"),
                                         (expired_on, "Silver", "Bronze", "retention_expired")]


def test_after_a_merge_on_an_open_day_the_status_shows_the_survivors_tier(conn):
    """Ann is Gold (1600); Bo, Silver, is evaluated on the still open 10 March; a later order that day
    merges Bo into Ann. Both have a tier row of that day: the status shows the survivor's (Gold, 2210),
    not the absorbed member's, picked at random before."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="1600.00")])
    process(conn, p, D(2024, 3, 9))
    land(conn, p, orders=[order(2, "2024-03-10 09:00:00", subtotal="600.00", email="bo@example.com", customer_id=9)])
    process(conn, p, D(2024, 3, 10), now=dt.datetime(2024, 3, 10, 12, tzinfo=dt.UTC))
    land(conn, p, orders=[order(3, "2024-03-10 20:00:00", subtotal="10.00", customer_id=9)])
    process(conn, p, D(2024, 3, 10))
    assert conn.execute("SELECT count(*) FROM member_merges").fetchall() == [(1,)]
    assert conn.execute("SELECT email, vip_tier, tier_metric FROM member_status").fetchall() == [
        ("ann@example.com", "Gold", Decimal("2210.000"))]


def test_a_merge_writes_no_tier_change_when_the_survivor_keeps_its_tier(conn):
    """RULES.md §7 with §8: Ann is Gold from 1 March; Bo reaches Silver on 5 March, a row later than
    Ann's last; on 10 March Bo merges into Ann, who stays Gold. tier(D−1) is the survivor's own, so the
    merge day has no change row (the previous tier was read from Bo's later row: 'Silver → Gold')."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="1600.00"),
                          order(2, "2024-03-05 10:00:00", subtotal="600.00", email="bo@example.com", customer_id=9)])
    process(conn, p, D(2024, 3, 9))
    email_of = {m: k for k, m in conn.execute("SELECT key, member_id FROM member_keys WHERE key LIKE '%@%'").fetchall()}
    land(conn, p, orders=[order(3, "2024-03-10 10:00:00", subtotal="10.00", customer_id=9)])
    process(conn, p, D(2024, 3, 10))
    assert conn.execute("SELECT count(*) FROM member_merges").fetchall() == [(1,)]
    changes = [(email_of[m], *rest) for m, *rest in conn.execute(
        "SELECT member_id, changed_on, from_tier, to_tier, reason FROM vip_tier_changes ORDER BY changed_on").fetchall()]
    assert changes == [("ann@example.com", D(2024, 3, 1), "Bronze", "Gold", "upgrade"),
                       ("bo@example.com", D(2024, 3, 5), "Bronze", "Silver", "upgrade")]
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Gold"


def test_expiry_after_inactivity_books_the_spendable_balance_negative(conn):
    p = program(expiry={"inactivity_days": 30}, earning={"pending_days": 10})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                          order(2, "2024-03-05 10:00:00", subtotal="40.00", email="bo@example.com"),
                          order(3, "2024-04-01 10:00:00", subtotal="10.00", email="bo@example.com")])
    process(conn, p, D(2024, 5, 20))
    expired = conn.execute(
        "SELECT s.email, e.points, e.booked_on FROM ledger_entries e JOIN member_status s USING (member_id) "
        "WHERE e.kind = 'expire' ORDER BY 1").fetchall()
    # L = max(last activity, last available_on of a positive entry): ann 2024-03-11 (+30 = 04-10);
    # bo's second order on 04-01 is activity, available 04-11 -> expires 05-11
    assert expired == [("ann@example.com", -100, D(2024, 4, 10)), ("bo@example.com", -50, D(2024, 5, 11))]
    assert status_of(conn, "ann@example.com")["points_spendable"] == 0
    assert process(conn, p, D(2024, 5, 20)).entries == 0


def test_nothing_expires_on_a_day_still_open_whose_later_activity_keeps_the_balance(conn):
    """Expiry is due on 03-31 (30 days after 03-01), but the day is booked at noon, still open: an
    order at 14:00 is activity on the 31st, so nothing expires, as when the day is booked once ended."""
    p = program(expiry={"inactivity_days": 30})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p, D(2024, 3, 31), now=dt.datetime(2024, 3, 31, 12, tzinfo=dt.UTC))
    assert [e[1:3] for e in entries(conn)] == [("earn", 100)]
    land(conn, p, orders=[order(2, "2024-03-31 14:00:00", subtotal="50.00")])
    process(conn, p, D(2024, 3, 31), now=dt.datetime(2024, 3, 31, 23, tzinfo=dt.UTC))
    process(conn, p, D(2024, 4, 2))
    assert [e[1:4] for e in entries(conn)] == [("earn", 100, D(2024, 3, 1)), ("earn", 50, D(2024, 3, 31))]
    assert status_of(conn, "ann@example.com")["points_spendable"] == 150
    # once ended, a due day books its expiry: 30 days after 03-31
    process(conn, p, D(2024, 4, 30), now=dt.datetime(2024, 4, 30, 12, tzinfo=dt.UTC))
    assert "expire" not in [e[1] for e in entries(conn)]
    process(conn, p, D(2024, 5, 1), now=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))
    assert [e[1:4] for e in entries(conn) if e[1] == "expire"] == [("expire", -150, D(2024, 4, 30))]


def _land_smile(conn, p, source, records):
    from loyalty_assets.lib import raw
    from loyalty_assets.lib.platforms.common import iso_time

    raw.insert_versions(conn, source, "default", records, lambda r: r["id"],
                        lambda r: iso_time(r.get("updated_at") or r["created_at"], "updated_at"), p.tz)


def test_two_loyalty_accounts_of_one_address_are_one_shopper_and_a_family_address_still_is_not(conn):
    """RULES.md §8: the guard keeps apart two registered customers of one platform tenant, nothing else.
    Two Smile.io customers of one address (a duplicate account) join that address's member: before,
    the second was kept apart as a member of its own, with no order and no e-mail. On a family
    address each joins the oldest of its members, as any record known by that address alone."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-01 11:00:00", email="family@example.com", customer_id=1),
                          order(3, "2024-03-02 10:00:00", email="family@example.com", customer_id=2)])
    _land_smile(conn, p, "smile.customers", [
        {"id": i, "email": email, "state": "member", "created_at": f"2024-03-0{day}T12:00:00Z"}
        for i, email, day in ((11, "ann@example.com", 1), (12, " Ann@Example.com", 2),
                              (13, "family@example.com", 1), (14, "family@example.com", 2))])
    process(conn, p, D(2024, 3, 3))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["smile:default:11"] == m["smile:default:12"] == m["ann@example.com"]
    assert m["smile:default:13"] == m["smile:default:14"] == m["magento:default:1"] != m["magento:default:2"]
    assert conn.execute("SELECT count(*), count(email) FROM member_status").fetchall() == [(3, 3)]
    assert [r[0] for r in conn.execute("SELECT key FROM identity_conflicts").fetchall()] == ["family@example.com"]


def test_a_redemption_voided_the_day_it_was_made_books_both_entries_however_the_runs_fall(tmp_path):
    """RULES.md §6: a redemption books a negative redeem entry, and its cancel a positive one keyed by the
    same redemption, each on the day it is observed. Claimed at 10:00 and voided at 15:00 on 3 March,
    the ledger is the same whether one run after the day saw both versions or a run at noon saw the
    claim and a later one the void. Before, the single run booked nothing at all."""
    customer = {"id": 900, "merchant_id": "77", "email": "ann@example.com"}

    def claim(tid: int, at: str, state: str) -> dict:
        cost = 20
        return {"id": tid, "customer": customer, "points_approved": -cost if state == "approved" else cost,
                "points_pending": 0, "created_at": at, "resource": "claimed_reward",
                "claimed_reward": {"id": 302, "point_cost": cost, "state": state, "reward": {"title": "$2 off"}}}

    claimed, voided = claim(5002, "2024-03-03T10:00:00Z", "approved"), claim(5003, "2024-03-03T15:00:00Z", "void")
    ledgers = []
    for runs in ([[claimed, voided]], [[claimed], [voided]]):
        conn = warehouse.connect(str(tmp_path / f"{len(runs)}.duckdb"))
        p = program()
        _land_smile(conn, p, "loyaltylion.customers", [{**customer, "created_at": "2024-02-01T00:00:00Z"}])
        land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com")])
        for n, batch in enumerate(runs):
            _land_smile(conn, p, "loyaltylion.transactions", batch)
            now = dt.datetime(2024, 3, 3, 12, tzinfo=dt.UTC) if n < len(runs) - 1 else FAR_FUTURE
            process(conn, p, D(2024, 3, 3), now)
        process(conn, p, D(2024, 3, 4))
        ledgers.append(conn.execute("SELECT entry_id, kind, points, booked_on FROM ledger_entries WHERE kind = 'redeem' "
                                    "ORDER BY points").fetchall())
        assert status_of(conn, "ann@example.com")["points_spendable"] == 100
        conn.close()
    assert [(k, pts, day) for _, k, pts, day in ledgers[0]] == [("redeem", -20, D(2024, 3, 3)), ("redeem", 20, D(2024, 3, 3))]
    assert ledgers[0] == ledgers[1]


def _ann_redeems_60_on_2_march(conn, linked: bool = True):
    """Ann, a Smile.io customer with a 100-point order on 1 March, redeems 60 points on 2 March (its
    points transaction and reward fulfillment landed): the program and the fulfillment. `linked`: the
    fulfillment names its points transaction (as our generator writes it), else it has only the
    fields Smile documents, and was created two seconds after the spend."""
    p = program()
    _land_smile(conn, p, "smile.customers", [
        {"id": 1, "email": "ann@example.com", "state": "member", "created_at": "2024-02-01T00:00:00Z"}])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com")])
    fulfillment = {"id": 70, "customer_id": 1, "points_transaction_id": 50, "code": "6OFF-1", "fulfillment_status": "issued",
                   "created_at": "2024-03-02T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z"}
    if not linked:
        del fulfillment["points_transaction_id"]
        fulfillment.update(created_at="2024-03-02T10:00:02Z", updated_at="2024-03-02T10:00:02Z")
    _land_smile(conn, p, "smile.points_transactions", [
        {"id": 50, "customer_id": 1, "points_change": -60, "description": "Redeemed $6 off",
         "created_at": "2024-03-02T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z"}])
    _land_smile(conn, p, "smile.reward_fulfillments", [fulfillment])
    return p, fulfillment


@pytest.mark.parametrize("linked", [True, False], ids=["fulfillment_names_its_spend", "documented_fields_only"])
def test_a_smile_redemption_canceled_gives_the_points_back_once(conn, linked):
    """RULES.md §6: a redemption canceled in the platform books a positive `redeem` entry keyed by the
    same redemption. Smile has no cancel API: its reward fulfillment turns `cancelled` (and Smile's own
    positive points transaction for it is not booked again). Smile's documented fulfillment does not
    name its points transaction: it is the customer's spend made with it (before, nothing was booked)."""
    p, fulfillment = _ann_redeems_60_on_2_march(conn, linked)
    land(conn, p, orders=[{**order(2, "2024-03-02 12:00:00", email="ann@example.com"), "coupon_code": "6off-1"}])
    process(conn, p, D(2024, 3, 3))
    _land_smile(conn, p, "smile.reward_fulfillments", [
        {**fulfillment, "fulfillment_status": "cancelled", "updated_at": "2024-03-04T10:00:00Z"}])
    _land_smile(conn, p, "smile.points_transactions", [
        {"id": 51, "customer_id": 1, "points_change": 60, "description": "Points refunded",
         "created_at": "2024-03-04T10:00:00Z", "updated_at": "2024-03-04T10:00:00Z"}])
    process(conn, p, D(2024, 3, 5))
    rows = conn.execute("SELECT kind, points, booked_on, source_ref FROM ledger_entries WHERE kind = 'redeem' "
                        "ORDER BY booked_on").fetchall()
    assert rows == [("redeem", -60, D(2024, 3, 2), "50"), ("redeem", 60, D(2024, 3, 4), "50")]
    assert status_of(conn, "ann@example.com")["points_spendable"] == 200
    assert process(conn, p, D(2024, 3, 5)).entries == 0
    # the code its fulfillment issued names the order it was used on
    assert conn.execute("SELECT description FROM ledger_entries WHERE kind = 'redeem' ORDER BY booked_on LIMIT 1"
                        ).fetchone()[0].endswith("(code 6OFF-1 used on magento:default:2)")


def test_a_cancelled_smile_fulfillment_matching_no_spend_is_quarantined(conn):
    """A cancelled reward fulfillment that names no points transaction and matches no spend of its
    customer when it was issued (a referral's reward, say) gives nothing back, and says why."""
    p, fulfillment = _ann_redeems_60_on_2_march(conn, linked=False)
    _land_smile(conn, p, "smile.reward_fulfillments", [
        {**fulfillment, "id": 71, "code": "REF-9", "created_at": "2024-03-01T08:00:00Z",
         "fulfillment_status": "cancelled", "updated_at": "2024-03-03T09:00:00Z"}])
    process(conn, p, D(2024, 3, 4))
    assert conn.execute("SELECT kind, points FROM ledger_entries WHERE kind = 'redeem'").fetchall() == [("redeem", -60)]
    assert conn.execute("SELECT source, reason FROM quarantine").fetchall() == [
        ("smile.reward_fulfillments", "unknown_redemption")]


def test_a_redemption_booked_again_on_its_open_day_after_its_cancel_was_booked_adds_nothing(conn):
    """RULES.md §6 for events: a redemption of 2 March canceled just after midnight on the 6th, with
    the 5th still open when the cancel was booked: booking the two days again compares the 5th with
    what was booked up to it (no second -60 there, which the 6th's +60, already journaled, did not
    make up for)."""
    p, fulfillment = _ann_redeems_60_on_2_march(conn)
    process(conn, p, D(2024, 3, 4))
    _land_smile(conn, p, "smile.reward_fulfillments", [
        {**fulfillment, "fulfillment_status": "cancelled", "updated_at": "2024-03-06T00:00:10Z"}])
    process(conn, p, D(2024, 3, 6), now=dt.datetime(2024, 3, 6, 0, 0, 30, tzinfo=dt.UTC))
    redeems = [("redeem", -60, D(2024, 3, 2)), ("redeem", 60, D(2024, 3, 6))]
    assert conn.execute("SELECT kind, points, booked_on FROM ledger_entries WHERE kind = 'redeem' "
                        "ORDER BY booked_on").fetchall() == redeems
    assert process(conn, p, D(2024, 3, 6), now=dt.datetime(2024, 3, 6, 0, 5, tzinfo=dt.UTC)).entries == 0
    assert status_of(conn, "ann@example.com")["points_spendable"] == 100


def test_a_request_marked_rejected_for_want_of_a_member_is_not_booked_once_the_member_turns_up(conn):
    """RULES.md §9: requests are booked, or marked Rejected in Salesforce. One marked Rejected (no member
    linked to its Contact) stays rejected when its Contact joins a member later: booking it then would
    put points behind a request the CRM shows Rejected. Set back to New in the CRM (a version fetched
    after the marking), it is validated and booked."""
    from loyalty_assets.lib import raw
    from loyalty_assets.lib.platforms.common import iso_time

    p = program()

    def land_sf(source, records):
        raw.insert_versions(conn, source, "default", records, lambda r: r["Id"],
                            lambda r: iso_time(r["LastModifiedDate"], "LastModifiedDate"), p.tz)

    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com")])
    request = {"Id": "a0A1", "Contact__c": "003C2", "Points__c": 40, "Reason__c": "Goodwill", "Status__c": "New",
               "LastModifiedDate": "2024-03-02T11:00:00.000+0000"}
    land_sf("salesforce.adjustment_requests", [request])
    process(conn, p, D(2024, 3, 3))
    assert conn.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'manual'").fetchall() == [(0,)]
    # the push marks it Rejected (defs/sync/salesforce.py writes this row), then the Contact is read
    conn.execute("INSERT INTO sync_state VALUES ('salesforce', 'Loyalty_Adjustment_Request__c', 'a0A1', 'Rejected', "
                 "now(), NULL)")
    land_sf("salesforce.contacts", [{"Id": "003C2", "Email": "ann@example.com", "LastName": "Ann",
                                     "LastModifiedDate": "2024-03-04T09:00:00.000+0000"}])
    process(conn, p, D(2024, 3, 5))
    assert conn.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'manual'").fetchall() == [(0,)]
    land_sf("salesforce.adjustment_requests", [{**request, "LastModifiedDate": "2024-03-06T09:00:00.000+0000"}])
    process(conn, p, D(2024, 3, 7))
    assert conn.execute("SELECT source_ref, points, booked_on FROM ledger_entries WHERE kind = 'manual'").fetchall() == [
        ("a0A1", 40, D(2024, 3, 6))]


def _land_referrals(conn, p, referrals):
    """Smile.io referrals made on 2024-03-01, [(referral id, sender id, sender e-mail, friend e-mail)],
    and their senders as Smile.io customers."""
    senders = sorted({(sender, email) for _, sender, email, _ in referrals})
    _land_smile(conn, p, "smile.customers", [
        {"id": sender, "email": email, "state": "member", "created_at": "2024-02-01T00:00:00Z"} for sender, email in senders])
    _land_smile(conn, p, "smile.referrals", [
        {"id": rid, "sender_customer": {"id": sender, "email": email}, "receiver_customer_email": friend,
         "created_at": "2024-03-01T08:00:00Z"} for rid, sender, email, friend in referrals])


def test_referral_rewarded_on_the_friends_first_earning_order_refused_for_self_and_taken_back(conn):
    p = program(referrals={"referrer_points": 500})
    _land_referrals(conn, p, [(10, 1, "ann@example.com", " Bo@Example.com"), (11, 2, "cat@example.com", "CAT@example.com")])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="30.00"),
                          order(3, "2024-03-02 11:00:00", email="cat@example.com", subtotal="20.00"),
                          order(2, "2024-03-05 10:00:00", email="bo@example.com", subtotal="30.00", state="canceled")])
    process(conn, p, D(2024, 3, 6))
    rows = conn.execute(
        """SELECT s.email, e.points, e.booked_on, e.source_ref FROM ledger_entries e JOIN member_status s USING (member_id)
           WHERE e.kind = 'referral' ORDER BY e.booked_on""").fetchall()
    assert rows == [("ann@example.com", 500, D(2024, 3, 2), "magento:default:2"),
                    ("ann@example.com", -500, D(2024, 3, 5), "magento:default:2")]
    outcomes = dict(conn.execute("SELECT referral_key, status || ': ' || coalesce(reason, '') FROM referral_outcomes").fetchall())
    assert outcomes["smile:default:referral:11"].startswith("refused: self-referral")
    assert outcomes["smile:default:referral:10"].startswith("taken_back")
    assert process(conn, p, D(2024, 3, 6)).entries == 0


@pytest.mark.parametrize("first, later", [(2, 3), (3, 2), (4, 5), (5, 4)])
def test_of_two_friend_orders_earning_on_one_day_the_first_placed_is_the_first_order(conn, first, later):
    """RULES.md §6: the referral follows the friend's first order. Two orders earning on one day: the
    one placed first (whatever the order of their entry ids), so canceling the later one takes nothing back."""
    p = program(referrals={"referrer_points": 500})
    _land_referrals(conn, p, [(10, 1, "ann@example.com", "bo@example.com")])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(first, "2024-03-02 09:00:00", email="bo@example.com", subtotal="30.00"),
                          order(later, "2024-03-02 15:00:00", email="bo@example.com", subtotal="40.00"),
                          order(later, "2024-03-04 10:00:00", email="bo@example.com", subtotal="40.00",
                                created_at="2024-03-02 15:00:00", state="canceled")])
    process(conn, p, D(2024, 3, 6))
    assert conn.execute("SELECT points, booked_on, source_ref FROM ledger_entries WHERE kind = 'referral'").fetchall() == [
        (500, D(2024, 3, 2), f"magento:default:{first}")]


def _referral_rows(conn) -> list[tuple]:
    return conn.execute(
        """SELECT s.email, e.points, e.booked_on, e.source_ref, e.description FROM ledger_entries e
           JOIN member_status s USING (member_id) WHERE e.kind = 'referral' ORDER BY e.booked_on, e.points DESC""").fetchall()


def _ann_refers_bo_rewarded_on_2_march(conn, p) -> None:
    _land_referrals(conn, p, [(10, 1, "ann@example.com", "bo@example.com")])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="30.00")])
    process(conn, p, D(2024, 3, 3))
    assert [r[:4] for r in _referral_rows(conn)] == [("ann@example.com", 500, D(2024, 3, 2), "magento:default:2")]


@pytest.mark.parametrize("points", [600, 0])
def test_a_referral_paid_keeps_its_reward_when_referrer_points_change(conn, points):
    """RULES.md §6: referrer_points when the friend's first order earns; a later configuration is not
    applied to rewards already paid (600 booked +100, 0 took the 500 back)."""
    _ann_refers_bo_rewarded_on_2_march(conn, program(referrals={"referrer_points": 500}))
    later = program(referrals={"referrer_points": points})
    land(conn, later, orders=[order(3, "2024-03-05 10:00:00", email="cy@example.com", subtotal="10.00")])
    process(conn, later, D(2024, 3, 6))
    assert [r[:4] for r in _referral_rows(conn)] == [("ann@example.com", 500, D(2024, 3, 2), "magento:default:2")]


def test_a_friend_rewarded_through_one_referral_is_not_rewarded_again_through_an_older_one(conn):
    """A second referral of Bo (by Cat, created before Ann's) turns up after Ann was paid: Bo's first
    order is rewarded once, through Ann, and its cancellation takes back exactly that reward."""
    p = program(referrals={"referrer_points": 500})
    _ann_refers_bo_rewarded_on_2_march(conn, p)
    _land_referrals(conn, p, [(9, 2, "cat@example.com", "bo@example.com")])
    _land_smile(conn, p, "smile.referrals", [
        {"id": 9, "sender_customer": {"id": 2, "email": "cat@example.com"}, "receiver_customer_email": "bo@example.com",
         "created_at": "2024-02-28T08:00:00Z", "updated_at": "2024-03-04T08:00:00Z"}])
    land(conn, p, orders=[order(4, "2024-03-01 11:00:00", email="cat@example.com")])
    process(conn, p, D(2024, 3, 5))
    assert [r[:2] for r in _referral_rows(conn)] == [("ann@example.com", 500)]
    land(conn, p, orders=[order(2, "2024-03-06 10:00:00", email="bo@example.com", subtotal="30.00", state="canceled",
                                created_at="2024-03-02 10:00:00")])
    process(conn, p, D(2024, 3, 8))
    assert [r[:4] for r in _referral_rows(conn)] == [("ann@example.com", 500, D(2024, 3, 2), "magento:default:2"),
                                                     ("ann@example.com", -500, D(2024, 3, 6), "magento:default:2")]


def test_a_rewarded_referral_voided_in_smile_gives_its_reward_back(conn):
    """The referral link is Smile.io's (RULES.md §9): voided after the reward, the reward is taken back,
    saying why, and the friend's later cancellation takes nothing more."""
    p = program(referrals={"referrer_points": 500})
    _ann_refers_bo_rewarded_on_2_march(conn, p)
    _land_smile(conn, p, "smile.referrals", [
        {"id": 10, "sender_customer": {"id": 1, "email": "ann@example.com"}, "receiver_customer_email": "bo@example.com",
         "created_at": "2024-03-01T08:00:00Z", "updated_at": "2024-03-04T08:00:00Z", "state": "void"}])
    land(conn, p, orders=[order(2, "2024-03-05 10:00:00", email="bo@example.com", subtotal="30.00", state="canceled",
                                created_at="2024-03-02 10:00:00")])
    process(conn, p, D(2024, 3, 6))
    rows = _referral_rows(conn)
    assert [r[:4] for r in rows] == [("ann@example.com", 500, D(2024, 3, 2), "magento:default:2"),
                                     ("ann@example.com", -500, D(2024, 3, 4), "magento:default:2")]
    assert rows[1][4] == "Referral taken back: the referral was void in smile"


def test_a_reward_stands_on_the_order_it_rewarded_when_a_merge_finds_an_older_first_order(conn):
    """Bo's order 2 earned Ann the reward; a merge then joins Bo to an older identity whose order 5 was
    canceled before the referral existed. Order 2 is still paid: nothing is taken back."""
    p = program(referrals={"referrer_points": 500})
    _land_referrals(conn, p, [(10, 1, "ann@example.com", "bo@example.com")])
    land(conn, p, orders=[order(1, "2024-02-01 10:00:00", email="ann@example.com"),
                          order(5, "2024-02-10 10:00:00", email="bo.old@example.com", customer_id=8, subtotal="40.00"),
                          order(5, "2024-02-15 10:00:00", email="bo.old@example.com", customer_id=8, subtotal="40.00",
                                state="canceled", created_at="2024-02-10 10:00:00"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="30.00")])
    process(conn, p, D(2024, 3, 3))
    land(conn, p, customers=[{"id": 8, "email": "bo@example.com", "created_at": "2024-02-01 00:00:00",
                              "updated_at": "2024-03-04 09:00:00"}],
         orders=[order(6, "2024-03-04 10:00:00", email="cy@example.com", subtotal="10.00")])
    process(conn, p, D(2024, 3, 5))
    assert conn.execute("SELECT count(*) FROM member_merges").fetchall() == [(1,)]
    assert conn.execute("SELECT points, booked_on, source_ref FROM ledger_entries WHERE kind = 'referral'").fetchall() == [
        (500, D(2024, 3, 2), "magento:default:2")]


def test_a_self_referral_found_after_the_reward_is_taken_back_as_one(conn):
    """Ann referred ann.alt@, whose order 2 was rewarded; a later order links the two e-mails to one
    member: the reward is taken back as a self-referral, naming order 2."""
    p = program(referrals={"referrer_points": 500})
    _land_referrals(conn, p, [(10, 1, "ann@example.com", "ann.alt@example.com")])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com", customer_id=7),
                          order(2, "2024-03-02 10:00:00", email="ann.alt@example.com", subtotal="30.00")])
    process(conn, p, D(2024, 3, 3))
    land(conn, p, orders=[order(3, "2024-03-04 10:00:00", email="ann.alt@example.com", customer_id=7, subtotal="10.00")])
    process(conn, p, D(2024, 3, 5))
    rows = conn.execute("SELECT points, source_ref, description FROM ledger_entries WHERE kind = 'referral' "
                        "ORDER BY booked_on, points DESC").fetchall()
    assert rows == [
        (500, "magento:default:2", "Referral reward: a referred friend's first order (smile referral)"),
        (-500, "magento:default:2", "Referral taken back: self-referral: friend and referrer are the same member")]
    assert conn.execute("SELECT status FROM referral_outcomes").fetchall() == [("refused",)]


def test_a_redemption_before_the_first_order_is_booked_on_its_own_day(conn):
    """RULES.md §6: other sources are booked on the day they are observed; the first booking starts at
    the first thing to book, a redemption before any order included (it was folded into the first
    order's day)."""
    p = program()
    _land_smile(conn, p, "smile.customers", [
        {"id": 1, "email": "ann@example.com", "state": "member", "created_at": "2024-01-01T00:00:00Z"}])
    _land_smile(conn, p, "smile.points_transactions", [
        {"id": 50, "customer_id": 1, "points_change": -60, "description": "Redeemed $6 off",
         "created_at": "2024-02-10T10:00:00Z", "updated_at": "2024-02-10T10:00:00Z"}])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com")])
    process(conn, p, D(2024, 3, 5))
    assert conn.execute("SELECT kind, points, booked_on FROM ledger_entries ORDER BY booked_on").fetchall() == [
        ("redeem", -60, D(2024, 2, 10)), ("earn", 100, D(2024, 3, 1))]


def test_referral_taken_back_when_refunds_cover_the_friends_whole_order(conn):
    """RULES.md §6 "fully refunded": credit memos for all its eligible spend refund the friend's first
    order fully though its state stays complete (as an order of a platform with no refunded state);
    a partial refund keeps the reward."""
    p = program(referrals={"referrer_points": 500})
    _land_referrals(conn, p, [(10, 1, "ann@example.com", "bo@example.com"), (12, 1, "ann@example.com", "di@example.com")])
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-02 10:00:00", email="bo@example.com", subtotal="30.00", state="complete"),
                          order(4, "2024-03-02 10:00:00", email="di@example.com", subtotal="30.00", state="complete")],
         memos=[memo(8, 2, "2024-03-03 10:00:00", subtotal="10.00"), memo(9, 2, "2024-03-04 10:00:00", subtotal="20.00"),
                memo(7, 4, "2024-03-04 10:00:00", subtotal="29.99")])
    process(conn, p, D(2024, 3, 6))
    rows = conn.execute("SELECT points, booked_on, source_ref FROM ledger_entries WHERE kind = 'referral' "
                        "ORDER BY booked_on, source_ref, points").fetchall()
    assert rows == [(500, D(2024, 3, 2), "magento:default:2"), (500, D(2024, 3, 2), "magento:default:4"),
                    (-500, D(2024, 3, 4), "magento:default:2")]
    outcomes = dict(conn.execute("SELECT referral_key, status FROM referral_outcomes").fetchall())
    assert outcomes == {"smile:default:referral:10": "taken_back", "smile:default:referral:12": "rewarded"}
    assert process(conn, p, D(2024, 3, 6)).entries == 0


def test_phone_links_members_only_when_enabled_and_the_guard_still_holds(tmp_path):
    def run(match_phone: bool):
        c = warehouse.connect(str(tmp_path / f"w{match_phone}.duckdb"))
        p = program(identity={"match_phone": match_phone})
        a = order(1, "2024-03-01 10:00:00", email="ann@example.com")
        b = order(2, "2024-03-02 10:00:00", email="ann.work@example.com")
        c1 = order(3, "2024-03-02 11:00:00", email="x@example.com", customer_id=1)
        c2 = order(4, "2024-03-02 12:00:00", email="y@example.com", customer_id=2)
        a["billing_address"] = {"email": "ann@example.com", "telephone": "+1 (650) 253-0000"}
        b["billing_address"] = {"email": "ann.work@example.com", "telephone": "650 253 0000", "country_id": "US"}
        c1["billing_address"] = {"email": "x@example.com", "telephone": "+44 20 7946 0018"}
        c2["billing_address"] = {"email": "y@example.com", "telephone": "020 7946 0018", "country_id": "GB"}
        land(c, p, orders=[a, b, c1, c2])
        process(c, p, D(2024, 3, 3))
        members = dict(c.execute("SELECT key, member_id FROM member_keys").fetchall())
        conflicts = c.execute("SELECT key_type FROM identity_conflicts").fetchall()
        c.close()
        return members, conflicts

    members, _ = run(False)
    assert members["ann@example.com"] != members["ann.work@example.com"]
    assert not any(k.startswith("tel:") for k in members)
    members, conflicts = run(True)
    assert members["ann@example.com"] == members["ann.work@example.com"] == members["tel:+16502530000"]
    # two registered customers of one store sharing a phone are not merged through it
    assert members["magento:default:1"] != members["magento:default:2"] and ("phone",) in conflicts


@pytest.mark.parametrize("first, second, key", [
    ("+1 555 123 4567", ("(555) 123-4567", "US"), "tel:+15551234567"),   # a fictional 555 number
    ("+447700900123", ("07700 900123", "GB"), "tel:+447700900123"),      # a range kept for drama
])
def test_phone_keys_are_e164_whatever_range_the_number_is_in(tmp_path, first, second, key):
    """RULES.md §8: a phone is a key in E.164 with identity.match_phone on, numbers the phonenumbers
    library does not call valid (ranges not assigned) included; a local-only number is no key."""
    c = warehouse.connect(str(tmp_path / "w.duckdb"))
    p = program(identity={"match_phone": True})
    a, b, d = (order(1, "2024-03-01 10:00:00", email="a@example.com"), order(2, "2024-03-02 10:00:00", email="b@example.com"),
               order(3, "2024-03-02 11:00:00", email="d@example.com"))
    a["billing_address"] = {"email": "a@example.com", "telephone": first}
    b["billing_address"] = {"email": "b@example.com", "telephone": second[0], "country_id": second[1]}
    d["billing_address"] = {"email": "d@example.com", "telephone": "555-0100", "country_id": "US"}
    land(c, p, orders=[a, b, d])
    process(c, p, D(2024, 3, 3))
    members = dict(c.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert members["a@example.com"] == members["b@example.com"] == members[key]
    assert members["d@example.com"] != members[key] and sorted(k for k in members if k.startswith("tel:")) == [key]
    assert c.execute("SELECT count(*) FROM member_status").fetchall() == [(2,)]


def test_manual_must_link_and_cannot_link(conn):
    p = program(identity={"must_link": [["a@example.com", "b@example.com"]],
                          "cannot_link": [["magento:default:7", "c@example.com"]]})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="a@example.com"),
                          order(2, "2024-03-01 11:00:00", email="b@example.com"),
                          order(3, "2024-03-01 12:00:00", email="c@example.com"),
                          order(4, "2024-03-02 12:00:00", email="c@example.com", customer_id=7)])
    process(conn, p, D(2024, 3, 3))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["a@example.com"] == m["b@example.com"]
    assert m["magento:default:7"] != m["c@example.com"]
    assert conn.execute("SELECT reason FROM identity_conflicts").fetchall()[0][0].startswith("cannot_link")


def test_a_must_link_email_written_in_mixed_case_links_as_the_graph_writes_it(conn):
    """RULES.md §8: must_link overrides, and e-mail keys are trimmed and lower-cased: an operator's
    ' Ann@Example.com ' links ann's guest orders to customer 5 (it linked nothing, and added a key no
    record has); a key that is no identity key is refused when the program loads (RULES.md §1)."""
    import pytest

    from loyalty_assets.lib.program import ProgramConfigError

    p = program(identity={"must_link": [[" Ann@Example.com ", "magento:default:5"]]})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-03-01 11:00:00", email="bob@example.com", customer_id=5)])
    process(conn, p, D(2024, 3, 2))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    assert m["ann@example.com"] == m["magento:default:5"] and "Ann@Example.com" not in str(sorted(m))
    with pytest.raises(ProgramConfigError, match=r"identity\.must_link: .*'smile:123' is not an identity key"):
        program(identity={"must_link": [["smile:123", "fam@example.com"]]})


def test_missing_fx_rate_quarantines_then_counts_once_the_rate_is_added(conn):
    from decimal import Decimal

    from loyalty_assets.lib.money import FxTable

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", currency="GBP", base_currency="GBP", subtotal="100.00")])
    process(conn, p, D(2024, 3, 1), fx=FxTable({}))
    assert conn.execute("SELECT reason FROM quarantine").fetchall() == [("no_fx_rate",)]
    assert entries(conn) == []
    process(conn, p, D(2024, 3, 2), fx=FxTable({"GBP": [(D(2024, 2, 1), Decimal("1.25"))]}))
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    assert entries(conn) == [(K1, "earn", 125, D(2024, 3, 2), D(2024, 3, 2))]  # booked on the first open day


def test_an_earned_order_keeps_its_fx_rate_when_the_table_changes(conn):
    """RULES.md §1: the rate in force when an order first earns is recorded on its earn entry and the
    order is valued with it for ever after. The FX table's rate for its creation day changes (a rate
    added for that very day); its next version and refund are valued at the earn's rate, a new order at
    the new one."""
    from loyalty_assets.lib.money import FxTable

    p = program()
    first = FxTable({"GBP": [(D(2024, 2, 1), Decimal("1.25"))]})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", currency="GBP", base_currency="GBP", subtotal="100.00")])
    process(conn, p, D(2024, 3, 1), fx=first)
    later = FxTable({"GBP": [(D(2024, 2, 1), Decimal("1.25")), (D(2024, 3, 1), Decimal("1.40"))]})
    land(conn, p, orders=[order(2, "2024-03-01 11:00:00", currency="GBP", base_currency="GBP", subtotal="100.00"),
                          order(1, "2024-03-02 09:00:00", currency="GBP", base_currency="GBP", subtotal="100.00",
                                state="complete", created_at="2024-03-01 10:00:00")],
         memos=[memo(9, 1, "2024-03-02 10:00:00", subtotal="40.00", currency="GBP")])
    process(conn, p, D(2024, 3, 2), fx=later)
    rows = conn.execute("SELECT order_key, kind, points, fx_rate FROM ledger_entries ORDER BY booked_on, order_key"
                        ).fetchall()
    assert [(k, kind, pts, float(fx)) for k, kind, pts, fx in rows] == [
        (K1, "earn", 125, 1.25), (K1, "clawback", -50, 1.25), (K2, "earn", 140, 1.4)]
    facts = conn.execute("SELECT order_key, fx_rate, net_eligible_program_minor FROM order_facts ORDER BY 1").fetchall()
    assert [(k, float(fx), n) for k, fx, n in facts] == [(K1, 1.25, 7500), (K2, 1.4, 14000)]


def test_commercetools_versions_within_one_second_book_each_change(conn):
    """RULES.md §6: the source version hashes each version's modified time. commercetools times carry
    milliseconds; three versions in one second, each fetched by its own run of the open day, book three
    entries (to the second, the third adjust repeated the second's id and was taken as booked)."""
    from model_platforms import PLATFORMS
    from reference_model import OrderVersion

    from loyalty_assets.lib.platforms.common import iso_time
    from loyalty_assets.lib.raw import insert_versions

    ct, p = PLATFORMS["commercetools"], program()
    created = dt.datetime(2024, 3, 2, 9, tzinfo=dt.UTC)
    now = dt.datetime(2024, 3, 2, 12, tzinfo=dt.UTC)  # the day is open: each run books it again
    for ms, subtotal in ((100, "30.00"), (600, "40.00"), (900, "50.00")):
        version = OrderVersion(1, "ann@example.com", created, created, "processing", Decimal(subtotal), Decimal("0"))
        source, payload, rid, _ = ct.render(version, [version])
        payload["lastModifiedAt"] = f"2024-03-02T10:00:00.{ms:03d}Z"
        insert_versions(conn, source, ct.tenant, [payload], lambda _x, rid=rid: rid,
                        lambda x: iso_time(x["lastModifiedAt"], "lastModifiedAt"), p.tz)
        process(conn, p, D(2024, 3, 2), now=now)
    got = conn.execute("SELECT kind, points FROM ledger_journal ORDER BY journaled_at").fetchall()
    assert got == [("earn", 30), ("adjust", 10), ("adjust", 10)]


def test_a_closed_day_is_not_evaluated_again_for_tiers_with_late_data(conn):
    p = program()
    land(conn, p, orders=[order(2, "2024-03-01 09:00:00", subtotal="10.00")])
    process(conn, p, D(2024, 3, 1))
    # arrives the next day: placed on 03-01 (600.00), canceled on 03-02
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="600.00"),
                          order(1, "2024-03-02 10:00:00", subtotal="600.00", state="canceled")])
    process(conn, p, D(2024, 3, 2))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Bronze"
    assert conn.execute("SELECT count(*) FROM vip_tier_changes").fetchone()[0] == 0
    assert [e[0] for e in entries(conn)] == ["magento:default:2"]  # order 1 never earned either


def test_a_day_evaluated_while_open_is_evaluated_again_once_it_closes(conn):
    """RULES.md §7, "at the end of each booked day D": a run at noon evaluates the open day; the order
    canceled that evening is booked on that day when it closes (RULES.md §6), and its tier must be
    evaluated again too (it kept Silver, dated that day, with a metric of 0). An order of the evening
    lifts the tier on its own day, not the next."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-10 09:00:00", subtotal="600.00"),
                          order(2, "2024-03-10 09:30:00", email="bo@example.com", subtotal="20.00")])
    process(conn, p, D(2024, 3, 10), now=dt.datetime(2024, 3, 10, 12, tzinfo=dt.UTC))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Silver"
    land(conn, p, orders=[order(1, "2024-03-10 20:00:00", subtotal="600.00", created_at="2024-03-10 09:00:00",
                                state="canceled"),
                          order(3, "2024-03-10 20:30:00", email="bo@example.com", subtotal="600.00")])
    process(conn, p, D(2024, 3, 12))
    ann, bo = status_of(conn, "ann@example.com"), status_of(conn, "bo@example.com")
    assert (ann["vip_tier"], ann["tier_metric"], ann["tier_expires_on"]) == ("Bronze", 0, None)
    assert bo["vip_tier"] == "Silver"
    assert conn.execute("SELECT s.email, c.changed_on, c.to_tier FROM vip_tier_changes c JOIN member_status s "
                        "USING (member_id)").fetchall() == [("bo@example.com", D(2024, 3, 10), "Silver")]


def test_referral_coupon_code_on_an_order_names_the_friend_whatever_email_they_checked_out_with(conn):
    p = program(referrals={"referrer_points": 250})
    _land_smile(conn, p, "smile.customers", [
        {"id": 1, "email": "ann@example.com", "state": "member", "created_at": "2024-02-01T00:00:00Z"}])
    _land_smile(conn, p, "smile.referrals", [
        # the friend gave one address at the referral link and checked out with another
        {"id": 20, "sender_customer": {"id": 1, "email": "ann@example.com"}, "receiver_customer_email": "bo@example.com",
         "receiver_reward_fulfillment": {"id": 7, "code": "ref-bo-10"}, "created_at": "2024-03-01T08:00:00Z"},
        # a coupon code used by the referrer herself is a self-referral, whatever the email given
        {"id": 21, "sender_customer": {"id": 1, "email": "ann@example.com"}, "receiver_customer_email": "zed@example.com",
         "receiver_reward_fulfillment": {"id": 8, "code": "REF-ZED-10"}, "created_at": "2024-03-01T08:00:00Z"}])
    bo = order(2, "2024-03-02 10:00:00", email="bo.work@example.com", subtotal="30.00")
    bo["coupon_code"] = "REF-BO-10"
    ann = order(3, "2024-03-03 10:00:00", email="ann@example.com", subtotal="20.00")
    ann["coupon_code"] = "ref-zed-10"
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", email="ann@example.com"), bo, ann])
    process(conn, p, D(2024, 3, 6))
    rows = conn.execute(
        """SELECT s.email, e.points, e.booked_on, e.source_ref FROM ledger_entries e JOIN member_status s USING (member_id)
           WHERE e.kind = 'referral'""").fetchall()
    assert rows == [("ann@example.com", 250, D(2024, 3, 2), "magento:default:2")]
    outcomes = dict(conn.execute("SELECT referral_key, status FROM referral_outcomes").fetchall())
    assert outcomes == {"smile:default:referral:20": "rewarded", "smile:default:referral:21": "refused"}
    assert process(conn, p, D(2024, 3, 6)).entries == 0


def test_push_preparation_gives_every_spendable_entry_once_however_late(conn):
    """The outbox looks only at entries journaled since its last preparation or spendable since its
    day; still every entry reaches it exactly once: pending points when they become spendable, a
    late memo booked on the first open day, a preparation re-run for an earlier day."""
    from loyalty_assets.lib import outbox

    p = program(earning={"pending_days": 10})

    def prepare(day):
        conn.execute("BEGIN")
        outbox.prepare_batches(conn, "smile", day, ("smile",))
        conn.execute("COMMIT")
        given = conn.execute("SELECT entry_id FROM outbox_entries WHERE target = 'smile' ORDER BY 1").fetchall()
        due = conn.execute("SELECT entry_id FROM ledger_entries WHERE available_on <= ? ORDER BY 1", [day]).fetchall()
        assert given == due, day
        assert conn.execute("SELECT count(*) = count(DISTINCT entry_id) FROM outbox_entries").fetchall() == [(True,)]
        return len(given)

    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-05 10:00:00", email="bo@example.com")])
    process(conn, p, D(2024, 3, 8))
    assert prepare(D(2024, 3, 8)) == 0  # nothing spendable yet
    process(conn, p, D(2024, 3, 12))
    assert prepare(D(2024, 3, 12)) == 1  # order 1's points, spendable on 03-11
    assert prepare(D(2024, 3, 20)) == 2  # order 2's, spendable on 03-15 (a day the ledger has not booked yet)
    land(conn, p, memos=[memo(9, 1, "2024-03-02 08:00:00", subtotal="30.00")])  # late: booked on 03-13
    process(conn, p, D(2024, 3, 16))
    assert prepare(D(2024, 3, 20)) == 3  # the clawback, journaled after the last preparation
    assert prepare(D(2024, 3, 20)) == 3  # a re-run gives nothing twice
    conn.execute("BEGIN")
    outbox.prepare_batches(conn, "smile", D(2024, 3, 12), ("smile",))  # an earlier day again
    conn.execute("COMMIT")
    assert prepare(D(2024, 3, 20)) == 3


def test_a_push_batch_id_is_the_hash_of_its_target_member_and_sorted_entries(conn):
    """A batch's id (the idempotency key the target sees) hashes the target, the member and the
    batch's entry ids in sorted order, so the same entries always give the same id."""
    import hashlib

    from loyalty_assets.lib import outbox

    p = program()
    land(conn, p, orders=[order(i, f"2024-03-01 1{i}:00:00") for i in range(1, 7)])
    process(conn, p, D(2024, 3, 1))
    conn.execute("BEGIN")
    outbox.prepare_batches(conn, "smile", D(2024, 3, 1), ("smile",))
    conn.execute("COMMIT")
    batches = conn.execute(
        """SELECT o.batch_id, o.member_id, list(e.entry_id) FROM outbox o JOIN outbox_entries e USING (batch_id)
           GROUP BY ALL""").fetchall()
    assert [len(ids) for _, _, ids in batches] == [6]
    for batch_id, member, ids in batches:
        text = f"smile|{member}|{','.join(sorted(ids))}"
        assert batch_id == hashlib.sha256(text.encode()).hexdigest()[:24]

def test_a_booking_and_a_push_preparation_that_overlap_cannot_both_commit(conn):
    """The preparation looks only at entries journaled since the previous one began; a booking that
    began before it and committed after it would be missed for good, so one of the two must fail."""
    import duckdb

    from loyalty_assets.lib import ledger, outbox

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p, D(2024, 3, 2))
    land(conn, p, orders=[order(2, "2024-03-03 10:00:00", email="bo@example.com")])
    map_and_resolve(conn, p, D(2024, 3, 4))
    booker, preparer = conn.cursor(), conn.cursor()

    def given():
        return conn.execute("SELECT count(*) FROM outbox_entries").fetchall()[0][0]

    # a preparation holds the journal: the booking fails and books nothing
    preparer.execute("BEGIN")
    outbox.prepare_batches(preparer, "smile", D(2024, 3, 3), ("smile",))
    with pytest.raises(duckdb.TransactionException):
        ledger.book_through(booker, p, D(2024, 3, 4), FAR_FUTURE)
    preparer.execute("COMMIT")
    assert given() == 1
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchall() == [(1,)]
    # a booking committed after the preparation began: the preparation fails, the next one gives it
    preparer.execute("BEGIN")
    preparer.execute("SELECT count(*) FROM ledger_journal").fetchall()
    ledger.book_through(booker, p, D(2024, 3, 4), FAR_FUTURE)
    with pytest.raises(duckdb.TransactionException):
        outbox.prepare_batches(preparer, "smile", D(2024, 3, 4), ("smile",))
    preparer.execute("ROLLBACK")
    preparer.execute("BEGIN")
    outbox.prepare_batches(preparer, "smile", D(2024, 3, 4), ("smile",))
    preparer.execute("COMMIT")
    assert given() == 2


def test_late_order_for_a_closed_day_moves_the_tier_on_the_first_open_day(conn):
    """Tiers, like the ledger, never re-evaluate a closed day, even when nobody's tier changed on the
    days in between (tier_days then has no row for them)."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="10.00")])
    for day in range(1, 5):
        process(conn, p, D(2024, 3, day))
    land(conn, p, orders=[order(2, "2024-03-03 23:59:56", subtotal="655.36"),
                          order(3, "2024-03-03 22:00:00", subtotal="5.00", email="bo@example.com"),
                          order(3, "2024-03-05 00:01:56", subtotal="5.00", email="bo@example.com", state="canceled")])
    process(conn, p, D(2024, 3, 5))
    changes = conn.execute("SELECT changed_on, from_tier, to_tier FROM vip_tier_changes").fetchall()
    assert changes == [(D(2024, 3, 5), "Bronze", "Silver")]
    assert conn.execute("SELECT count(*) FROM tier_days WHERE day BETWEEN '2024-03-02' AND '2024-03-04'").fetchall() == [(0,)]


def test_an_entry_id_booked_again_with_other_content_is_refused(conn):
    """Entry ids make a re-run book nothing twice; the same id with other points means the rules
    changed under the same rule version, which must stop the run rather than be skipped."""
    from loyalty_assets.lib import ledger

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p, D(2024, 3, 2))
    conn.execute("CREATE OR REPLACE TEMP TABLE new_entries AS SELECT * FROM ledger_journal")
    assert ledger._insert_entries(conn) == 0  # the same entries again: nothing added
    conn.execute("UPDATE new_entries SET points = points + 1")
    with pytest.raises(ledger.LedgerIntegrityError, match="different content"):
        ledger._insert_entries(conn)
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchall() == [(1,)]
    # the same id on another day (ids are looked for among the same days' entries): the index refuses it
    conn.execute("UPDATE new_entries SET points = points - 1, booked_on = booked_on + 1")
    with pytest.raises(ledger.LedgerIntegrityError, match="another day"):
        ledger._insert_entries(conn)
    # a new id among known ones: only it is added
    conn.execute("UPDATE new_entries SET booked_on = booked_on - 1")
    conn.execute("INSERT INTO new_entries SELECT * REPLACE ('new-' || entry_id AS entry_id) FROM new_entries")
    assert ledger._insert_entries(conn) == 1
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchall() == [(2,)]
    # a new id given twice by one run: once when the rows agree, refused when they differ
    conn.execute("CREATE OR REPLACE TEMP TABLE new_entries AS SELECT * REPLACE ('twice' AS entry_id) FROM ledger_journal LIMIT 1")
    conn.execute("INSERT INTO new_entries SELECT * FROM new_entries")
    assert ledger._insert_entries(conn) == 1
    conn.execute("CREATE OR REPLACE TEMP TABLE new_entries AS SELECT * REPLACE ('twice2' AS entry_id) FROM ledger_journal LIMIT 1")
    conn.execute("INSERT INTO new_entries SELECT * REPLACE (points + 1 AS points) FROM new_entries")
    with pytest.raises(ledger.LedgerIntegrityError, match="given twice with different content"):
        ledger._insert_entries(conn)
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchall() == [(3,)]


def test_a_booking_reads_no_order_facts_row_older_than_the_orders_versions(conn):
    """Points after an order's last change take its state from order_facts, unless a version of it
    was mapped after the facts refresh (here the booking runs without one)."""
    from loyalty_assets.lib import ledger

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    process(conn, p, D(2024, 3, 1))
    land(conn, p, orders=[order(1, "2024-03-02 10:00:00", subtotal="150.00")])
    map_and_resolve(conn, p, D(2024, 3, 2))
    ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE)  # order_facts still holds the 1 March state
    assert [e[1:4] for e in entries(conn)] == [("earn", 100, D(2024, 3, 1)), ("adjust", 50, D(2024, 3, 2))]
    process(conn, p, D(2024, 3, 2))  # the facts refresh catches up; nothing is booked twice
    assert sum(e[2] for e in entries(conn)) == 150


@pytest.mark.parametrize("stamped", [True, False])
def test_a_booking_answers_an_order_from_its_row_only_when_written_after_its_versions(conn, stamped):
    """The day's booking takes an order's state from its order_facts row when the refresh that wrote
    it began after the order's versions were mapped (order_facts.refreshed_at); a row without that
    stamp (a warehouse from before it) is recomputed from the versions, with the same entries."""
    from loyalty_assets.lib import facts, ledger

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-01 11:00:00")])
    process(conn, p, D(2024, 3, 1))
    land(conn, p, orders=[order(1, "2024-03-02 10:00:00", subtotal="150.00")])
    map_and_resolve(conn, p, D(2024, 3, 2))
    facts.refresh_order_facts(conn, p)
    if not stamped:
        conn.execute("UPDATE order_facts SET refreshed_at = NULL")
    ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE)
    known = conn.execute("SELECT order_key, booked_day FROM order_state_known").fetchall()
    assert known == ([(K1, D(2024, 3, 2))] if stamped else [])
    assert [e[:4] for e in entries(conn)] == [
        (K1, "earn", 100, D(2024, 3, 1)), (K2, "earn", 100, D(2024, 3, 1)), (K1, "adjust", 50, D(2024, 3, 2))]


def test_our_own_smile_push_read_back_is_not_booked_again(conn):
    """Smile.io points transactions pulled back include the ones we pushed (internal_note = our
    batch id): only the shopper's own redemption becomes a loyalty event."""
    from loyalty_assets.lib import normalize, raw
    from loyalty_assets.lib.money import FxTable
    from loyalty_assets.lib.platforms.common import iso_time

    p = program()
    conn.execute("""INSERT INTO outbox (batch_id, target, member_id, operation, points, entries, status, attempts,
                                        created_at, updated_at) VALUES ('b-ours', 'smile', 'M1', 'points', -30, 1,
                                        'sent', 1, now(), now())""")
    txns = [{"id": 501, "customer_id": 7, "points_change": -30, "internal_note": "b-ours",
             "created_at": "2024-03-02T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z"},
            {"id": 502, "customer_id": 7, "points_change": -40, "description": "Redeemed: $4 off",
             "created_at": "2024-03-02T11:00:00Z", "updated_at": "2024-03-02T11:00:00Z"}]
    raw.insert_versions(conn, "smile.points_transactions", "default", txns, lambda t: t["id"],
                        lambda t: iso_time(t["updated_at"], "updated_at"), p.tz)
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 3, 2))
    assert conn.execute("SELECT event_key, points FROM loyalty_events").fetchall() == [
        ("smile:default:redemption:502", -40)]


@pytest.mark.parametrize("older_rows", [False, True])
def test_order_facts_refreshed_day_by_day_equal_a_recompute_from_every_version(tmp_path, older_rows):
    """A refresh starts from each order's row and the versions and refunds mapped since; it gives
    what recomputing from every version gives: later versions, a lifecycle that never moves back, a
    refund, a late version older than the row, a new order. Rows written before order_facts held the
    latest version's fields (`older_rows`) are recomputed from every version."""
    p = program()
    runs = [
        (D(2024, 3, 1), [order(1, "2024-03-01 10:00:00", state="new"), order(2, "2024-03-01 11:00:00"),
                         order(3, "2024-03-01 12:00:00", state="complete")], []),
        (D(2024, 3, 2), [order(1, "2024-03-02 10:00:00", subtotal="120.00"),
                         order(3, "2024-03-02 12:00:00", state="processing", subtotal="80.00")], []),
        (D(2024, 3, 3), [order(2, "2024-03-01 18:00:00", subtotal="90.00")],  # late, older than the row
         [memo(9, 2, "2024-03-03 09:00:00", subtotal="30.00")]),
        (D(2024, 3, 5), [order(1, "2024-03-04 10:00:00", state="complete", subtotal="120.00"),
                         order(4, "2024-03-05 10:00:00", email="bo@example.com")], []),
    ]
    daily = warehouse.connect(str(tmp_path / "daily.duckdb"))
    for day, orders, memos in runs:
        land(daily, p, orders=orders, memos=memos)
        process(daily, p, day)
        if older_rows:
            daily.execute("UPDATE order_facts SET payload_hash = NULL, source_id = NULL")
    once = warehouse.connect(str(tmp_path / "once.duckdb"))
    for _, orders, memos in runs:
        land(once, p, orders=orders, memos=memos)
    process(once, p, D(2024, 3, 5))

    def facts(conn):
        return conn.execute(
            "SELECT * EXCLUDE (payload_hash, source_id, refreshed_at) FROM order_facts ORDER BY order_key").fetchall()

    assert facts(daily) == facts(once)
    assert [r[0] for r in facts(once)] == [f"magento:default:{i}" for i in (1, 2, 3, 4)]
    lifecycle = dict(once.execute("SELECT order_key, lifecycle FROM order_facts").fetchall())
    assert lifecycle["magento:default:3"] == "fulfilled"


def test_an_order_moved_to_another_shopper_is_clawed_back_from_the_member_that_earned_it(conn):
    """RULES.md §6 (entries journaled with the member they were booked for): an order's entries after
    its earn go to the member that earned it, so a cancel after its e-mail was corrected to another
    shopper's takes the points back from the member holding them. Before, the clawback went to the
    new shopper (a balance of -100) while the first kept 100."""
    p = program(earning={"pending_days": 0})
    land(conn, p, orders=[order(1, "2024-06-01 10:00:00", email="ann@example.com"),
                          order(2, "2024-06-01 11:00:00", email="bob@example.com", subtotal="30.00")])
    process(conn, p, D(2024, 6, 1))
    land(conn, p, orders=[order(1, "2024-06-02 10:00:00", email="bob@example.com")])
    process(conn, p, D(2024, 6, 2))
    land(conn, p, orders=[order(1, "2024-06-03 10:00:00", email="bob@example.com", state="canceled")])
    process(conn, p, D(2024, 6, 3))
    assert (status_of(conn, "ann@example.com")["points_spendable"], status_of(conn, "bob@example.com")["points_spendable"]) \
        == (0, 30)
    rows = conn.execute(
        """SELECT k.key, e.kind, e.points FROM ledger_entries e JOIN member_keys k ON k.member_id = e.member_id
           WHERE e.order_key = 'magento:default:1' AND k.key LIKE '%@%' ORDER BY e.booked_on""").fetchall()
    assert rows == [("ann@example.com", "earn", 100), ("ann@example.com", "clawback", -100)]


@pytest.mark.parametrize("retention", ["next_period", "none"])
def test_a_level_removed_from_the_program_leaves_its_members_at_the_highest_level_left(conn, retention):
    """RULES.md §1: the program may change between runs. A member Gold under the old levels, whose
    program now stops at Silver, is Silver from then on, with or without retention: before, with
    next_period retention member_status failed on a NULL tier name and the run with it."""
    levels = [{"name": "Bronze", "threshold": "0"}, {"name": "Silver", "threshold": "500"}]
    land(conn, program(), orders=[order(1, "2024-03-01 10:00:00", subtotal="1600.00")])
    process(conn, program(tiers={"retention": retention}), D(2024, 3, 1))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Gold"
    fewer = program(tiers={"retention": retention, "levels": levels})
    land(conn, fewer, orders=[order(2, "2024-03-05 10:00:00", subtotal="100.00")])
    process(conn, fewer, D(2024, 3, 5))
    assert status_of(conn, "ann@example.com")["vip_tier"] == "Silver"
    assert conn.execute("SELECT count(*) FROM tier_days WHERE day >= DATE '2024-03-05' AND tier_rank > 1").fetchall() == [(0,)]
    assert conn.execute("SELECT changed_on, from_tier, to_tier FROM vip_tier_changes").fetchall() == [
        (D(2024, 3, 1), "Bronze", "Gold")]


def test_an_order_that_moved_with_a_contested_email_leaves_the_tier_it_was_counted_for(conn):
    """RULES.md §7 with §8: family@ moves to customer 1's member (the oldest) on 03-10; the guest's
    700 order of family@ follows it with its next version (03-15). Customer 2's member, which it made
    Silver, drops back to Bronze that day: before, it kept the 700 too (Silver, metric 740), so the
    order counted for two members."""
    p = program(tiers={"retention": "none"})
    for o in (order(1, "2024-03-01 10:00:00", email="one@example.com", customer_id=1, subtotal="10.00"),
              order(2, "2024-03-05 10:00:00", email="family@example.com", customer_id=2, subtotal="40.00"),
              order(4, "2024-03-06 10:00:00", email="family@example.com", subtotal="700.00"),
              order(3, "2024-03-10 10:00:00", email="family@example.com", customer_id=1, subtotal="10.00"),
              order(4, "2024-03-15 10:00:00", email="family@example.com", subtotal="700.00", state="complete",
                    created_at="2024-03-06 10:00:00")):
        land(conn, p, orders=[o])
        process(conn, p, D.fromisoformat(o["updated_at"][:10]))
    m = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    one, two = m["magento:default:1"], m["magento:default:2"]
    tiers = dict(conn.execute("SELECT member_id, (vip_tier, tier_metric) FROM member_status").fetchall())
    assert tiers == {one: ("Silver", Decimal("720")), two: ("Bronze", Decimal("40"))}
    assert conn.execute("SELECT changed_on, from_tier, to_tier, reason FROM vip_tier_changes WHERE member_id = ? "
                        "ORDER BY changed_on", [two]).fetchall() == [
        (D(2024, 3, 6), "Bronze", "Silver", "upgrade"), (D(2024, 3, 15), "Silver", "Bronze", "downgrade")]


def test_an_order_moved_to_another_shopper_moves_its_tier_contribution_that_day(conn):
    """An order whose e-mail is corrected to another shopper's leaves the first member's tier and
    joins the other's on the day it moves. The members it belonged to come from its order_facts row
    (prior_keys) and, for versions mapped after the last facts refresh, from those versions."""
    from loyalty_assets.lib import facts, identity, ledger, normalize, status, tiers
    from loyalty_assets.lib.money import FxTable

    def tiers_of(*names):
        return tuple(status_of(conn, f"{n}@example.com")["vip_tier"] for n in names)

    p = program(tiers={"retention": "none"})
    land(conn, p, orders=[order(1, "2024-06-01 10:00:00", subtotal="1600.00", email="ann@example.com")])
    process(conn, p, D(2024, 6, 1))
    assert tiers_of("ann") == ("Gold",)
    land(conn, p, orders=[order(1, "2024-06-02 10:00:00", subtotal="1600.00", email="bob@example.com")])
    process(conn, p, D(2024, 6, 2))
    assert tiers_of("ann", "bob") == ("Bronze", "Gold")
    assert conn.execute("SELECT email, prior_keys FROM order_facts").fetchall() == [("bob@example.com", ["ann@example.com"])]
    # to a third shopper, with tiers evaluated before order_facts is refreshed
    land(conn, p, orders=[order(1, "2024-06-03 10:00:00", subtotal="1600.00", email="cat@example.com")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 6, 3))
    identity.resolve_members(conn, p, D(2024, 6, 3))
    ledger.book_through(conn, p, D(2024, 6, 3), FAR_FUTURE)
    tiers.evaluate_through(conn, p)
    status.refresh_member_status(conn, p)
    assert tiers_of("ann", "bob", "cat") == ("Bronze", "Bronze", "Gold")
    process(conn, p, D(2024, 6, 4))  # the row keeps the keys of the versions before it
    assert conn.execute("SELECT prior_keys FROM order_facts").fetchall() == [(["ann@example.com", "bob@example.com"],)]
    changes = conn.execute("SELECT changed_on, from_tier, to_tier FROM vip_tier_changes ORDER BY changed_on, to_tier").fetchall()
    assert changes == [(D(2024, 6, 1), "Bronze", "Gold"), (D(2024, 6, 2), "Gold", "Bronze"), (D(2024, 6, 2), "Bronze", "Gold"),
                       (D(2024, 6, 3), "Gold", "Bronze"), (D(2024, 6, 3), "Bronze", "Gold")]
    # a row from before prior_keys: tiers read every version of its order, and the next refresh
    # gives the row its prior_keys from the versions
    conn.execute("UPDATE order_facts SET prior_keys = NULL")
    land(conn, p, orders=[order(1, "2024-06-05 10:00:00", subtotal="1600.00", email="dan@example.com")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 6, 5))
    identity.resolve_members(conn, p, D(2024, 6, 5))
    ledger.book_through(conn, p, D(2024, 6, 5), FAR_FUTURE)
    tiers.evaluate_through(conn, p)
    paired = conn.execute(
        """SELECT list(DISTINCT k.key ORDER BY k.key) FROM tier_pairs t JOIN member_keys k USING (member_id)
           WHERE t.day = DATE '2024-06-05'""").fetchall()[0][0]
    assert paired == ["ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com"]
    facts.refresh_order_facts(conn, p)
    assert conn.execute("SELECT prior_keys FROM order_facts").fetchall() == [
        (["ann@example.com", "bob@example.com", "cat@example.com"],)]
    # a full refresh (no refresh before it) finds the same keys from the versions alone
    land(conn, p, orders=[order(2, "2024-06-05 11:00:00", subtotal="10.00", email="eve@example.com")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 6, 5))
    conn.execute("DELETE FROM refresh_state WHERE name = 'order_facts'")
    facts.refresh_order_facts(conn, p)
    assert conn.execute("SELECT order_key, prior_keys FROM order_facts ORDER BY 1").fetchall() == [
        ("magento:default:1", ["ann@example.com", "bob@example.com", "cat@example.com"]), ("magento:default:2", [])]


def test_orders_book_to_the_member_their_keys_have_when_identity_ran_after_the_facts_refresh(conn):
    """order_facts rows give the ledger their member only while identity has not run since the
    refresh; after it, each order books to the member its keys map to now."""
    from loyalty_assets.lib import facts, ledger, normalize
    from loyalty_assets.lib.money import FxTable

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", state="new"),
                          order(2, "2024-03-01 11:00:00", state="new", customer_id=7, email="bob@example.com")])
    process(conn, p, D(2024, 3, 1))
    land(conn, p, orders=[order(1, "2024-03-02 10:00:00"),
                          order(2, "2024-03-02 11:00:00", customer_id=7, email="bob@example.com")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 3, 2))
    facts.refresh_order_facts(conn, p)
    # identity moving a key to another member after the refresh, as resolve_members records it
    conn.execute("UPDATE member_keys SET member_id = 'M-MOVED' WHERE key = 'ann@example.com'")
    conn.execute("UPDATE refresh_state SET refreshed_at = now() WHERE name = 'identity'")
    ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE)
    owner = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    booked = dict(conn.execute("SELECT order_key, booked_member_id FROM ledger_journal WHERE kind = 'earn'").fetchall())
    assert booked == {K1: "M-MOVED", K2: owner["magento:default:7"]}


def test_member_status_email_is_the_address_the_member_used_last(conn):
    """member_status.email is the address of the member's most recent order or account version,
    so a day with no new version of the member keeps it."""
    p = program()

    def email():
        return conn.execute(
            """SELECT s.email FROM member_status s JOIN member_keys k USING (member_id)
               WHERE k.key = 'magento:default:7'""").fetchall()

    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", customer_id=7)])
    process(conn, p, D(2024, 3, 1))
    assert email() == [("ann@example.com",)]
    land(conn, p, orders=[order(2, "2024-03-02 10:00:00", customer_id=7, email="ann.new@example.com")])
    process(conn, p, D(2024, 3, 2))
    assert email() == [("ann.new@example.com",)]
    land(conn, p, orders=[order(1, "2024-03-03 10:00:00", customer_id=7, state="complete")])  # the first address again
    process(conn, p, D(2024, 3, 3))
    assert email() == [("ann@example.com",)]
    land(conn, p, memos=[memo(9, 2, "2024-03-04 10:00:00")])  # the member changes, with no version
    process(conn, p, D(2024, 3, 4))
    assert email() == [("ann@example.com",)]
    land(conn, p, orders=[order(3, "2024-03-01 12:00:00", customer_id=7)])  # late, and older than the last use
    process(conn, p, D(2024, 3, 5))
    assert email() == [("ann@example.com",)]
    assert conn.execute("SELECT count(*) FROM ledger_journal WHERE booked_on = DATE '2024-03-04'").fetchall() == [(1,)]
    # a version mapped after identity's last run counts too
    from loyalty_assets.lib import normalize, status
    from loyalty_assets.lib.money import FxTable

    land(conn, p, orders=[order(4, "2024-03-06 10:00:00", customer_id=7, email="ann.new@example.com")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 3, 6))
    status.refresh_member_status(conn, p)
    assert email() == [("ann.new@example.com",)]


def test_a_key_moved_to_another_member_refreshes_both_members_addresses(conn):
    """When identity moves a key between members (recorded in member_key_moves), both members are
    refreshed and the receiving one finds the moved address's uses in every version."""
    from loyalty_assets.lib import status

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", customer_id=7),
                          order(2, "2024-03-02 10:00:00", customer_id=8, email="bob@example.com"),
                          order(3, "2024-03-03 10:00:00", customer_id=8, email="bob.new@example.com")])
    process(conn, p, D(2024, 3, 3))
    owner = dict(conn.execute("SELECT key, member_id FROM member_keys").fetchall())
    ann, bob = owner["magento:default:7"], owner["magento:default:8"]
    emails = dict(conn.execute("SELECT member_id, email FROM member_status").fetchall())
    assert emails == {ann: "ann@example.com", bob: "bob.new@example.com"}
    # identity moves bob@ to ann's member (as resolve_members records a key it reassigns)
    conn.execute("UPDATE member_keys SET member_id = ? WHERE key = 'bob@example.com'", [ann])
    conn.execute("INSERT INTO member_key_moves VALUES ('bob@example.com', ?, ?, now())", [bob, ann])
    status.refresh_member_status(conn, p)
    emails = dict(conn.execute("SELECT member_id, email FROM member_status").fetchall())
    assert emails == {ann: "bob@example.com", bob: "bob.new@example.com"}
    # a warehouse from before member_emails: one full refresh gives every member its row, so a member
    # refreshed with no new version of its own still has its address
    conn.execute("DELETE FROM member_emails")
    land(conn, p, memos=[memo(9, 1, "2024-03-04 10:00:00")])
    process(conn, p, D(2024, 3, 4))
    assert conn.execute("SELECT email FROM member_status WHERE member_id = ?", [ann]).fetchall() == [("bob@example.com",)]
    assert conn.execute("SELECT email FROM member_emails WHERE member_id = ?", [ann]).fetchall() == [
        ("bob@example.com",)]  # written again


def test_the_first_booking_builds_the_journal_index_after_its_entries_and_it_always_comes_back(conn, monkeypatch):
    """An empty journal's first booking goes in without the unique index, built once after the
    commit; whatever happens to the booking, the index is there afterwards, and a later booking
    goes through it."""
    from loyalty_assets.lib import facts, ledger

    p = program()
    assert indexes(conn, "ledger_journal") == [warehouse.index_name("ledger_journal")]
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(2, "2024-03-02 10:00:00")])
    map_and_resolve(conn, p, D(2024, 3, 2))
    facts.refresh_order_facts(conn, p)
    seen, original = [], ledger.run_script

    def watching(c, script, params=None, fill=None):
        if script == "book_order_entries":
            seen.append(indexes(c, "ledger_journal"))
        return original(c, script, params, fill)

    def failing(c, script, params=None, fill=None):
        if script != "book_order_entries":
            return original(c, script, params, fill)
        seen.append(indexes(c, "ledger_journal"))
        raise RuntimeError("the booking failed")

    monkeypatch.setattr(ledger, "run_script", failing)
    with pytest.raises(RuntimeError, match="the booking failed"):
        ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE)
    assert seen == [[]] and indexes(conn, "ledger_journal") == [warehouse.index_name("ledger_journal")]
    assert conn.execute("SELECT count(*) FROM ledger_journal").fetchall() == [(0,)]

    seen.clear()
    monkeypatch.setattr(ledger, "run_script", watching)
    assert ledger.book_through(conn, p, D(2024, 3, 1), FAR_FUTURE).entries == 1
    assert seen == [[]] and indexes(conn, "ledger_journal") == [warehouse.index_name("ledger_journal")]
    with pytest.raises(Exception, match="Duplicate|unique"):
        conn.execute("INSERT INTO ledger_journal SELECT * FROM ledger_journal")

    # a process killed between the commit and the index: the next booking makes it first
    conn.execute("DROP INDEX " + warehouse.index_name("ledger_journal"))
    seen.clear()
    assert ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE).entries == 1
    assert seen == [[warehouse.index_name("ledger_journal")]] and indexes(conn, "ledger_journal") == [warehouse.index_name("ledger_journal")]
    assert conn.execute("SELECT count(DISTINCT entry_id), count(*) FROM ledger_journal").fetchall() == [(2, 2)]


def test_a_journal_made_with_its_primary_key_keeps_it_and_gets_no_second_index(tmp_path):
    """Warehouses created before the index have entry_id as the PRIMARY KEY: it stays the only
    constraint, and no booking drops anything."""
    path = str(tmp_path / "old.duckdb")
    with warehouse.connect(path) as c:  # the journal as it was made before, then the schema again
        c.execute("DROP TABLE ledger_journal")
        columns = warehouse.sql("schema").split("CREATE TABLE IF NOT EXISTS ledger_journal (")[1].split(");")[0]
        c.execute("CREATE TABLE ledger_journal (" + re.sub(r"entry_id\s+VARCHAR[^,]*,", "entry_id VARCHAR PRIMARY KEY,",
                                                          columns) + ")")
        c.execute("DROP TABLE schema_info")
        assert c.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'ledger_journal' "
                         "AND constraint_type = 'PRIMARY KEY'").fetchall() == [("PRIMARY KEY",)]
    conn = warehouse.connect(path)
    assert indexes(conn, "ledger_journal") == [] and not warehouse.unique_index(conn, "ledger_journal")
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    assert process(conn, p, D(2024, 3, 2)).entries == 1
    assert indexes(conn, "ledger_journal") == []
    with pytest.raises(Exception, match="PRIMARY KEY|Duplicate"):
        conn.execute("INSERT INTO ledger_journal SELECT * FROM ledger_journal")
    conn.close()


def test_versions_of_one_instant_are_ordered_by_payload_hash_whatever_its_shape(conn):
    """An order's state at an instant is its latest version by (updated_at, payload_hash). Hashes are
    compared as one number when they have raw.py's shape (16 lowercase hex digits); a hash of any
    other shape sorts by its text, as the pair does."""
    from loyalty_assets.lib import ledger

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="100.00"),
                          order(1, "2024-03-01 10:00:00", subtotal="200.00")])
    process(conn, p, D(2024, 3, 2))
    hashes = dict(conn.execute("SELECT payload_hash, subtotal_minor FROM order_versions").fetchall())
    assert len(hashes) == 2 and all(re.fullmatch("[0-9a-f]{16}", h) for h in hashes)
    winner = hashes[max(hashes)]
    assert conn.execute("SELECT payload_hash FROM order_facts").fetchone()[0] == max(hashes)
    assert entries(conn) == [(K1, "earn", winner // 100, D(2024, 3, 1), D(2024, 3, 1))]

    def latest_subtotal(first: str, second: str) -> int:
        conn.execute("UPDATE order_versions SET payload_hash = CASE subtotal_minor WHEN 10000 THEN ? ELSE ? END",
                     [first, second])
        ledger.compute_order_values(conn, p, D(2024, 3, 1), None)
        return conn.execute("SELECT subtotal_minor FROM order_state").fetchone()[0]

    assert latest_subtotal("ffffffffffffffff", "0000000000000000") == 10000  # the largest 64-bit number
    assert latest_subtotal("0123456789abcdef", "0123456789abcdf0") == 20000
    assert latest_subtotal("ffffffffffffffff", "g") == 20000       # 'g' sorts after every hex digit
    assert latest_subtotal("ffffffffffffffff", "FFFFFFFFFFFFFFFF") == 10000  # upper case sorts first
    assert latest_subtotal("B-first", "a-second") == 20000
    assert latest_subtotal("", "0000000000000000") == 20000


def _tier_rows(conn) -> tuple[list, list]:
    return (conn.execute("SELECT * FROM tier_days ORDER BY member_id, day").fetchall(),
            conn.execute("SELECT * FROM vip_tier_changes ORDER BY change_id").fetchall())


def _kept(conn) -> int:
    return conn.execute("SELECT count(*) FROM booking_points").fetchall()[0][0]


@pytest.mark.parametrize("tier_rules", [
    {}, {"metric": "points", "period": "lifetime"}, {"period": "rolling_365"}, {"retention": "none"}])
def test_the_first_tier_evaluation_reads_what_the_first_booking_valued_and_gets_what_it_would_compute(
        tmp_path, tier_rules):
    """ledger.keep_points hands the first booking's valued points to the first tier evaluation of the
    same days: the same tier rows as computing them again from the versions, with several versions,
    refunds and members, across a new year; read once, then emptied."""
    from loyalty_assets import bench
    from loyalty_assets.lib import tiers

    p = program(tiers=tier_rules, earning={"points_per_unit": "2"})
    rows = {}
    for kept in (True, False):
        c = warehouse.connect(str(tmp_path / f"{kept}.duckdb"))
        bench.land_history(c, orders=3000, members=300, days=120, seed=5, memo_rate=0.1, tz=p.timezone,
                           first_day=D(2024, 11, 1))
        book(c, p, D(2025, 2, 28))
        assert _kept(c) > 2500
        if not kept:  # the hand-off refused: tiers compute the points again
            c.execute("DELETE FROM booking_points_info")
        tiers.evaluate_through(c, p)
        assert (_kept(c) == 0) == kept
        assert c.execute("SELECT count(*) FROM booking_points_info").fetchall()[0][0] == 0
        rows[kept] = _tier_rows(c)
        c.close()
    assert rows[True] == rows[False]
    assert len(rows[True][0]) > 300 and len(rows[True][1]) > 20


def test_tiers_compute_the_points_again_when_a_version_was_mapped_after_the_first_booking(conn):
    from loyalty_assets.lib import normalize, tiers
    from loyalty_assets.lib.money import FxTable

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="300.00")])
    book(conn, p, D(2024, 3, 1))
    assert _kept(conn) == 1
    # the same day's next version, mapped after the booking: the day's points are as many, the state is not
    land(conn, p, orders=[order(1, "2024-03-01 12:00:00", subtotal="600.00")])
    normalize.normalize(conn, p, FxTable.load(None), D(2024, 3, 1))
    tiers.evaluate_through(conn, p)
    assert _kept(conn) == 1   # not read
    assert conn.execute("SELECT to_tier, metric FROM vip_tier_changes").fetchall() == [("Silver", 600)]


@pytest.mark.parametrize("change", ["identity", "program"])
def test_tiers_compute_the_points_again_when_identity_or_the_rules_changed_since_the_first_booking(conn, change):
    from loyalty_assets.lib import identity, tiers

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="600.00")])
    book(conn, p, D(2024, 3, 1))
    if change == "identity":
        identity.resolve_members(conn, p, D(2024, 3, 1))
    else:  # another rule version (the same tiers)
        p = program(earning={"points_per_unit": "3"})
    tiers.evaluate_through(conn, p)
    assert _kept(conn) == 1
    assert conn.execute("SELECT to_tier FROM vip_tier_changes").fetchall() == [("Silver",)]


def test_a_later_booking_empties_the_points_an_earlier_one_left(conn):

    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00")])
    book(conn, p, D(2024, 3, 1))
    assert _kept(conn) == 1
    land(conn, p, orders=[order(2, "2024-03-02 10:00:00")])
    book(conn, p, D(2024, 3, 2))
    assert _kept(conn) == 0
    assert conn.execute("SELECT count(*) FROM booking_points_info").fetchall()[0][0] == 0


def test_a_refund_dated_before_its_orders_first_version_is_scoped_by_tiers_whichever_way_they_read_the_points(tmp_path):
    """No version answers the refund's day, so the booking values no point there, yet the first tier
    evaluation scopes the day (the member's pair): booking_points keeps the point without a value."""
    from loyalty_assets.lib import tiers

    p = program()
    rows = {}
    for kept in (True, False):
        c = warehouse.connect(str(tmp_path / f"{kept}.duckdb"))
        land(c, p, orders=[order(1, "2024-03-05 10:00:00", created_at="2024-03-01 10:00:00", subtotal="600.00"),
                           order(2, "2024-03-01 10:00:00", subtotal="50.00")],
             memos=[memo(9, 1, "2024-03-02 12:00:00", subtotal="100.00")])
        book(c, p, D(2024, 3, 6))
        assert c.execute("SELECT order_key, booked_day FROM booking_points WHERE earning IS NULL").fetchall() == [
            (K1, D(2024, 3, 2))]
        if not kept:
            c.execute("DELETE FROM booking_points_info")
        tiers.evaluate_through(c, p)
        assert (_kept(c) == 0) == kept
        rows[kept] = _tier_rows(c)
        c.close()
    assert rows[True] == rows[False]
    assert [r[1] for r in rows[True][0]] == [D(2024, 3, 1), D(2024, 3, 2), D(2024, 3, 5)]


def test_a_member_gets_tier_rows_from_its_first_earning_order_on(conn):
    """tier_eval.sql evaluates a member from its first pair with a metric: the pending days before
    it leave no row (and no change), the member stays at the first level until then."""
    p = program()
    land(conn, p, orders=[order(2, "2024-03-01 10:00:00", email="bob@example.com", subtotal="50.00"),
                          order(1, "2024-03-02 10:00:00", state="new", subtotal="600.00"),
                          order(1, "2024-03-03 10:00:00", subtotal="600.00")])
    process(conn, p, D(2024, 3, 4))   # one evaluation from 1 March: a pair on each day an order changed
    ann = status_of(conn, "ann@example.com")["member_id"]
    assert conn.execute("SELECT day, tier_rank FROM tier_days WHERE member_id = ?", [ann]).fetchall() == [
        (D(2024, 3, 3), 1)]
    assert conn.execute("SELECT changed_on, to_tier FROM vip_tier_changes").fetchall() == [(D(2024, 3, 3), "Silver")]


def test_the_value_check_takes_each_order_as_it_stood_at_the_end_of_the_last_booked_day(conn):
    """Versions and refunds already mapped for a later day are not part of the booked value yet: the
    check of the journal against every order's value must neither count them nor miss a real gap."""
    p = program()
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00"), order(1, "2024-03-04 10:00:00", state="canceled"),
                          order(2, "2024-03-01 11:00:00", subtotal="40.00")],
         memos=[memo(9, 2, "2024-03-04 12:00:00", subtotal="10.00")])
    map_and_resolve(conn, p, D(2024, 3, 5))  # the later day's version and memo are mapped too
    facts.refresh_order_facts(conn, p)
    ledger.book_through(conn, p, D(2024, 3, 2), FAR_FUTURE)
    assert entries(conn) == [(K1, "earn", 100, D(2024, 3, 1), D(2024, 3, 1)), (K2, "earn", 40, D(2024, 3, 1), D(2024, 3, 1))]
    assert ledger.order_value_mismatches(conn, p) == []
    conn.execute("DELETE FROM ledger_journal WHERE order_key = ?", [K2])
    assert ledger.order_value_mismatches(conn, p) == [{"order_key": K2, "value": 40, "booked": 0}]


def test_tier_metric_keeps_three_decimal_places_of_a_three_digit_currency(conn):
    """RULES.md §3 (ISO digits: KWD 3) and §7: 99.999 KWD of spend is below a threshold of 100; a
    metric kept with two places read 100.00 and gave the tier."""
    p = program(currency="KWD", tiers={"levels": [{"name": "Bronze", "threshold": "0"},
                                                  {"name": "Silver", "threshold": "100"}]})
    land(conn, p, orders=[order(1, "2024-03-01 10:00:00", subtotal="99.999", currency="KWD")])
    process(conn, p, D(2024, 3, 1))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], s["tier_metric"], s["points_spendable"]) == ("Bronze", Decimal("99.999"), 99)
    land(conn, p, orders=[order(2, "2024-03-02 10:00:00", subtotal="0.001", currency="KWD")])
    process(conn, p, D(2024, 3, 2))
    s = status_of(conn, "ann@example.com")
    assert (s["vip_tier"], s["tier_metric"]) == ("Silver", Decimal("100.000"))
