"""Contract: the asset graph turns Magento payloads served over HTTP into the warehouse tables of
CONTRACT.md §3 exactly as RULES.md §2-§8 say (issue 2, items 6, 7 and 9; DESIGN.md §2).

Materialized against a tmp DuckDB with the real MagentoResource pointed at the sandbox emulator:
a range of daily partitions is ONE run; an order earns when paid and a later partial credit memo
claws back on its own day; a paid-then-canceled order nets to zero; a guest who later registers
with the same email is one member; a EUR order of a USD-base store is valued from Magento's base_*
amounts; malformed orders land in quarantine with a reason code and never fail the run; every
blocking check passes; re-running a range books nothing new; and a credit memo that turns up late
for a closed day is booked on the first open day, never on the closed one.
"""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SANDBOX_NOW,
    blocking_check_failures,
    build_test_resources,
    graph_assets,
    isolate,
    location_definitions,
    materialize_range,
    unconfigured_resources,
    write_seed,
)
from magento_factory import memo, order

from loyalty_assets.defs.resources import Warehouse
from loyalty_assets.sandbox import Sandbox

D1, D2, D3, D4 = (dt.date(2024, 3, 4) + dt.timedelta(days=i) for i in range(4))
ANN, BOB, CARA, DAN = "ann@example.com", "bob@example.com", "cara@example.com", "dan@example.com"


def _key(entity_id: int) -> str:
    return f"magento:default:{entity_id}"


def seed() -> dict[str, list[dict]]:
    ann_order = {
        "subtotal": "620.00",
        "discount": "20.00",
        "shipping": "10.00",
        "tax": "8.00",
        "email": ANN,
        "customer_id": 501,
        "created_at": "2024-03-04 10:00:00",
    }
    bob_order = {"subtotal": "50.00", "email": BOB, "created_at": "2024-03-04 11:00:00"}
    orders = [
        # Ann (registered): placed pending on D1, paid on D2, partially refunded by memo 2001 on D3.
        order(1001, "2024-03-04 10:00:00", state="pending_payment", **ann_order),
        order(1001, "2024-03-05 09:00:00", state="processing", **ann_order),
        # Bob (guest): paid on D1, canceled on D2.
        order(1002, "2024-03-04 11:00:00", state="processing", **bob_order),
        order(1002, "2024-03-05 12:00:00", state="canceled", **bob_order),
        # Cara: a guest order on D1 (email typed with capitals and spaces) ...
        order(1003, "2024-03-04 15:00:00", subtotal="30.00", email="  Cara@Example.COM "),
        # ... registers as customer 503 on D3 and orders again as a registered shopper.
        order(1004, "2024-03-06 09:00:00", subtotal="45.50", discount="5.50", email=CARA, customer_id=503),
        # Dan: a EUR order in a store view whose base currency is USD (0.9 EUR per USD).
        order(
            1008,
            "2024-03-05 16:00:00",
            subtotal="90.00",
            shipping="9.00",
            tax="0",
            email=DAN,
            customer_id=508,
            currency="EUR",
            base_to_order_rate="0.9",
            store_id=2,
        ),
        # Malformed: a guest order without any email, and a custom state nobody mapped.
        order(1006, "2024-03-05 10:00:00", email=None),
        order(1007, "2024-03-05 11:00:00", state="fraud_review", email="eve@example.com"),
    ]
    creditmemos = [memo(2001, 1001, "2024-03-06 14:00:00", subtotal="150.00")]
    customers = [
        {
            "id": 501,
            "email": ANN,
            "firstname": "Ann",
            "lastname": "A",
            "created_at": "2024-03-04 08:00:00",
            "updated_at": "2024-03-04 08:00:00",
            "store_id": 1,
            "website_id": 1,
            "group_id": 1,
        },
        {
            "id": 503,
            "email": CARA,
            "firstname": "Cara",
            "lastname": "C",
            "created_at": "2024-03-06 08:00:00",
            "updated_at": "2024-03-06 08:00:00",
            "store_id": 1,
            "website_id": 1,
            "group_id": 1,
        },
    ]
    return {"orders": orders, "creditmemos": creditmemos, "customers": customers}


EXPECTED_ENTRIES = [
    # (booked_on, order, kind, points, available_on)
    (D1, 1002, "earn", 50, D1),
    (D1, 1003, "earn", 30, D1),
    (D2, 1001, "earn", 600, D2),
    (D2, 1002, "clawback", -50, D2),
    (D2, 1008, "earn", 100, D2),
    (D3, 1001, "clawback", -150, D3),
    (D3, 1004, "earn", 40, D3),
]


def _rows(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


def _entries(warehouse: Path) -> list[tuple]:
    return _rows(
        warehouse,
        """SELECT booked_on, CAST(split_part(order_key, ':', 3) AS INTEGER), kind, points, available_on
           FROM ledger_entries ORDER BY booked_on, order_key, kind""",
    )


def _member_of(warehouse: Path, key: str) -> str:
    rows = _rows(
        warehouse,
        """SELECT coalesce(r.survivor_id, k.member_id) FROM member_keys k
           LEFT JOIN member_resolution r ON r.member_id = k.member_id WHERE k.key = ?""",
        [key],
    )
    assert len(rows) == 1, f"identity key {key} not in member_keys"
    return rows[0][0]


def _assert_clean(result: dg.ExecuteInProcessResult) -> None:
    assert blocking_check_failures(result) == []
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    blocking = {
        (e.asset_key.to_user_string(), e.check_name)
        for e in result.get_asset_check_evaluations()
        if e.severity == dg.AssetCheckSeverity.ERROR
    }
    assert blocking >= {
        ("ledger_journal", "entry_ids_unique"),
        ("ledger_journal", "order_entries_sum_to_value"),
        ("member_status", "balances_equal_entry_sums"),
    }, "every blocking check must have been evaluated in the run"


@pytest.fixture(scope="module")
def _instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="module")
def booked(tmp_path_factory, _instance) -> tuple[Path, dg.ExecuteInProcessResult, int]:
    """D1..D3 materialized once for the module: (the warehouse, the result, runs it took)."""
    root = tmp_path_factory.mktemp("booked")
    runs_before = _instance.get_runs_count()
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, root / "cwd")
        with Sandbox(write_seed(root / "seed", **seed()), now=SANDBOX_NOW) as box:
            resources = build_test_resources(box, root / "loyalty.duckdb")
            result = materialize_range(D1, D3, resources, instance=_instance)
    return root / "loyalty.duckdb", result, _instance.get_runs_count() - runs_before


@pytest.fixture
def seeded(booked, sandbox, warehouse_path):
    """A copy of the booked warehouse and a fresh sandbox on the same seed, for tests that go on."""
    _assert_clean(booked[1])
    for suffix in ("", ".wal"):
        if Path(f"{booked[0]}{suffix}").exists():
            shutil.copyfile(f"{booked[0]}{suffix}", f"{warehouse_path}{suffix}")
    box = sandbox(**seed())
    return box, warehouse_path, build_test_resources(box, warehouse_path)


def test_range_books_exact_ledger_balances_facts_and_quarantine(booked) -> None:
    warehouse, result, _ = booked
    _assert_clean(result)

    assert _entries(warehouse) == EXPECTED_ENTRIES

    # Entry ids are unique, and each entry carries its rule version, rate and basis.
    ids = _rows(warehouse, "SELECT count(*), count(DISTINCT entry_id) FROM ledger_entries")[0]
    assert ids[0] == ids[1] == len(EXPECTED_ENTRIES)
    earn_1001 = _rows(
        warehouse,
        """SELECT basis_minor, rate, multiplier, rule_version, source, source_ref FROM ledger_entries
           WHERE order_key = ? AND kind = 'earn'""",
        [_key(1001)],
    )
    ((basis, rate, multiplier, rule_version, source, source_ref),) = earn_1001
    assert (basis, rate, multiplier, source, source_ref) == (
        60000,
        Decimal(1),
        Decimal(1),
        "magento",
        "000001001",
    )
    assert _rows(warehouse, "SELECT rule_version FROM program_versions") == [(rule_version,)]

    # One member per shopper: Cara's guest order and her registered account are one member.
    cara = _member_of(warehouse, CARA)
    assert _member_of(warehouse, "magento:default:503") == cara
    ann = _member_of(warehouse, ANN)
    assert _member_of(warehouse, "magento:default:501") == ann
    members = {
        email: (spendable, pending, tier, as_of)
        for email, spendable, pending, tier, as_of in _rows(
            warehouse,
            "SELECT email, points_spendable, points_pending, vip_tier, as_of FROM member_status",
        )
    }
    assert members == {
        ANN: (450, 0, "Silver", D3),  # 600 earned, 150 clawed back; Silver reached on D2 is retained
        BOB: (0, 0, "Bronze", D3),
        CARA: (70, 0, "Bronze", D3),
        DAN: (100, 0, "Bronze", D3),
    }
    assert _rows(
        warehouse,
        "SELECT member_id, points FROM ledger_entries WHERE order_key IN (?, ?) ORDER BY 2",
        [_key(1003), _key(1004)],
    ) == [(cara, 30), (cara, 40)]

    # Tier history: Ann went Bronze -> Silver on the day her order was paid; the refund does not
    # take it away (retention: next_period), and it is held through the end of next year.
    assert _rows(
        warehouse, "SELECT member_id, changed_on, from_tier, to_tier, reason, metric FROM vip_tier_changes"
    ) == [(ann, D2, "Bronze", "Silver", "upgrade", Decimal("600.00"))]
    assert _rows(
        warehouse, "SELECT tier_metric, tier_expires_on FROM member_status WHERE member_id = ?", [ann]
    ) == [(Decimal("450.00"), dt.date(2025, 12, 31))]

    facts = {
        row[0]: row[1:]
        for row in _rows(
            warehouse,
            """SELECT order_key, lifecycle, currency, store_key, order_number, subtotal_minor, discount_minor,
                      tax_minor, shipping_minor, grand_total_minor, eligible_minor,
                      refunded_eligible_minor, net_eligible_program_minor, member_id
               FROM order_facts""",
        )
    }
    assert facts == {
        _key(1001): (
            "paid",
            "USD",
            "magento:default:1",
            "000001001",
            62000,
            2000,
            800,
            1000,
            61800,
            60000,
            15000,
            45000,
            ann,
        ),
        _key(1002): (
            "canceled",
            "USD",
            "magento:default:1",
            "000001002",
            5000,
            0,
            800,
            1000,
            6800,
            5000,
            0,
            0,
            _member_of(warehouse, BOB),
        ),
        _key(1003): (
            "paid",
            "USD",
            "magento:default:1",
            "000001003",
            3000,
            0,
            800,
            1000,
            4800,
            3000,
            0,
            3000,
            cara,
        ),
        _key(1004): (
            "paid",
            "USD",
            "magento:default:1",
            "000001004",
            4550,
            550,
            800,
            1000,
            5800,
            4000,
            0,
            4000,
            cara,
        ),
        _key(1008): (
            "paid",
            "EUR",
            "magento:default:2",
            "000001008",
            9000,
            0,
            0,
            900,
            9900,
            9000,
            0,
            10000,
            _member_of(warehouse, DAN),
        ),
    }
    (fx,) = _rows(warehouse, "SELECT fx_rate FROM order_facts WHERE order_key = ?", [_key(1008)])[0]
    assert abs(fx - Decimal(1) / Decimal("0.9")) < Decimal("1e-9")
    assert _rows(
        warehouse, "SELECT created_at, updated_at FROM order_facts WHERE order_key = ?", [_key(1001)]
    ) == [(dt.datetime(2024, 3, 4, 10, tzinfo=dt.UTC), dt.datetime(2024, 3, 5, 9, tzinfo=dt.UTC))]

    # Malformed records are quarantined with a code and words; they never fail the run.
    quarantined = _rows(
        warehouse,
        "SELECT source, record_key, reason, partition_day, length(detail) > 0, payload IS NOT NULL FROM quarantine ORDER BY 2",
    )
    assert quarantined == [
        ("magento.orders", _key(1006), "missing_email", D2, True, True),
        ("magento.orders", _key(1007), "unknown_status", D2, True, True),
    ]


def test_one_run_covers_the_whole_range(booked, _instance) -> None:
    _, result, runs = booked
    _assert_clean(result)
    assert runs == 1
    run = _instance.get_run_by_id(result.run_id)
    assert run.tags[RANGE_START_TAG] == D1.isoformat() and run.tags[RANGE_END_TAG] == D3.isoformat()

    # Every partitioned asset of the location was materialized for every day of the range, in that run.
    definitions = location_definitions()
    keys = {key for a in definitions.assets for key in a.keys}
    by_asset: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        by_asset.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
    assert set(by_asset) == {k.to_user_string() for k in keys}
    assert all(parts == {D1.isoformat(), D2.isoformat(), D3.isoformat()} for parts in by_asset.values()), (
        by_asset
    )


def test_rematerializing_the_same_range_books_nothing_new(seeded, _instance) -> None:
    _, warehouse, resources = seeded
    before = _rows(warehouse, "SELECT * FROM ledger_journal ORDER BY entry_id")
    raw_before = _rows(warehouse, "SELECT count(*) FROM raw_records")
    _assert_clean(materialize_range(D1, D3, resources, instance=_instance))
    assert _rows(warehouse, "SELECT * FROM ledger_journal ORDER BY entry_id") == before
    assert _rows(warehouse, "SELECT count(*) FROM raw_records") == raw_before
    assert _entries(warehouse) == EXPECTED_ENTRIES


def _raw_outcome_check(warehouse: Path, instance) -> dg.AssetCheckEvaluation:
    """The check alone, through Dagster, on the warehouse as it stands."""
    result = dg.materialize(
        graph_assets(), resources={**unconfigured_resources(), "warehouse": Warehouse(database=str(warehouse))},
        instance=instance, selection=dg.AssetSelection.checks(dg.AssetCheckKey(
            dg.AssetKey("order_versions"), "raw_versions_accounted_for")))
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_raw_version_left_without_an_outcome_is_flagged(seeded, _instance) -> None:
    """Nothing landed or fetched is silently lost: every raw version is processed, quarantined or
    waiting, and the check says which source holds one that is none of these."""
    box, warehouse, resources = seeded
    result = materialize_range(D3, D3, resources, instance=_instance)
    _assert_clean(result)
    passed = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_versions_accounted_for"]
    assert [e.passed for e in passed] == [True]
    raw = _rows(warehouse, "SELECT count(*) FROM raw_records")[0][0]
    assert passed[0].metadata["raw_versions"].value == raw > 0
    assert passed[0].metadata["without_outcome"].value == 0

    # an outcome lost (a crash between writes, a hand edit): the version is neither processed nor quarantined
    conn = duckdb.connect(str(warehouse))
    try:
        conn.execute("""DELETE FROM raw_processed WHERE rowid = (SELECT min(rowid) FROM raw_processed
                        WHERE source = 'magento.creditmemos')""")
    finally:
        conn.close()
    failed = _raw_outcome_check(warehouse, _instance)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert failed.metadata["without_outcome"].value == 1
    assert failed.metadata["missing_magento.creditmemos"].value == 1
    assert "magento.creditmemos" in failed.metadata["examples"].value

    # a version fetched after the last normalization began is the next one's, not lost
    conn = duckdb.connect(str(warehouse))
    try:
        conn.execute("UPDATE refresh_state SET refreshed_at = TIMESTAMPTZ '2000-01-01' WHERE name = 'normalize'")
    finally:
        conn.close()
    assert _raw_outcome_check(warehouse, _instance).passed


def _add_late_memo(box) -> None:
    """Dan's order (placed D2) gets a credit memo whose updated_at is on D2, a closed day, but the
    emulator only learns about it now; then time moves on by a day, so D4 has ended too."""
    box.magento.add_records(
        "creditmemos",
        [memo(2002, 1008, "2024-03-05 18:00:00", subtotal="45.00", currency="EUR", base_to_order_rate="0.9")],
    )
    box.clock.advance(24 * 3600)


def _assert_late_clawback_on(warehouse: Path, day: dt.date) -> None:
    late = [e for e in _entries(warehouse) if e not in EXPECTED_ENTRIES]
    assert late == [(day, 1008, "clawback", -50, day)]  # 45.00 EUR = 50.00 USD base, of 100 points
    assert _rows(warehouse, "SELECT count(*) FROM ledger_entries WHERE booked_on <= ?", [D3]) == [
        (len(EXPECTED_ENTRIES),)
    ]
    dan = _member_of(warehouse, DAN)
    assert _rows(
        warehouse, "SELECT points_spendable, as_of FROM member_status WHERE member_id = ?", [dan]
    ) == [(50, day)]
    assert _rows(
        warehouse,
        "SELECT refunded_eligible_minor, net_eligible_program_minor FROM order_facts WHERE order_key = ?",
        [_key(1008)],
    ) == [(4500, 5000)]


def test_late_credit_memo_is_booked_on_the_first_open_day_not_the_closed_one(seeded, _instance) -> None:
    box, warehouse, resources = seeded
    _add_late_memo(box)

    # One run re-fetches the memo's closed day and runs the next day: the clawback lands on D4.
    _assert_clean(materialize_range(D2, D4, resources, instance=_instance))
    _assert_late_clawback_on(warehouse, D4)
    assert _rows(warehouse, "SELECT count(*) FROM raw_records WHERE source = 'magento.creditmemos'") == [(2,)]


def test_refetching_a_closed_day_with_late_data_books_nothing_and_passes_checks(seeded, _instance) -> None:
    """What the delta sensor does for a late record: it requests the record's own (closed) day."""
    box, warehouse, resources = seeded
    _add_late_memo(box)

    # Re-fetching D2 stores the memo but must neither rebook the closed day nor fail the run: the
    # late memo is not booked yet, by design, until the first open day runs.
    _assert_clean(materialize_range(D2, D2, resources, instance=_instance))
    assert _rows(warehouse, "SELECT count(*) FROM raw_records WHERE source = 'magento.creditmemos'") == [(2,)]
    assert _entries(warehouse) == EXPECTED_ENTRIES

    # The next day's run then books the clawback on D4, the first open day.
    _assert_clean(materialize_range(D4, D4, resources, instance=_instance))
    _assert_late_clawback_on(warehouse, D4)
