"""Contract: orchestration of the daily partitions (DESIGN.md §3, issue 2 item 7).

`magento_delta_sensor`, evaluated against the sandbox over HTTP, requests one run per day that has
new Magento orders, credit memos or customers, with run keys derived from the data (a repeated tick
requests nothing new, and the same data always gives the same keys), returns its JSON cursor only
through its SensorResult, sees a record the moment the source's clock reaches it, and skips with a
reason when Magento is not configured. `daily_loyalty_schedule` requests yesterday's partition in
the program timezone.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from conftest import SANDBOX_NOW, location_definitions, magento_resource
from magento_factory import memo, order

from loyalty_assets.defs.resources import MagentoResource

# Looked up by name, as the UI and the daemon find them.
_REPO = location_definitions().get_repository_def()
magento_delta_sensor = _REPO.get_sensor_def("magento_delta_sensor")
daily_loyalty_schedule = _REPO.get_schedule_def("daily_loyalty_schedule")
daily_partitions = _REPO.get_job("loyalty_job").partitions_def

SEED = {
    "orders": [
        order(1, "2024-03-04 10:00:00"),
        # Two versions: a list endpoint only shows the current one, so the sensor sees 03-05 for it.
        order(4, "2024-03-04 12:00:00", email="dan@example.com"),
        order(4, "2024-03-05 09:00:00", state="complete", email="dan@example.com"),
        order(2, "2024-03-05 23:59:59", email="bob@example.com"),
    ],
    "creditmemos": [memo(10, 1, "2024-03-06 14:00:00")],
    "customers": [
        {
            "id": 7,
            "email": "cara@example.com",
            "created_at": "2024-03-06 08:00:00",
            "updated_at": "2024-03-06 08:00:00",
        },
    ],
}


def tick(magento: MagentoResource, cursor: str | None = None):
    """One evaluation the way the sensor daemon does it (SensorDefinition.evaluate_tick)."""
    context = dg.build_sensor_context(cursor=cursor, resources={"magento": magento}, repository_def=_REPO)
    return magento_delta_sensor.evaluate_tick(context)


def requested(result) -> list[tuple[str, str]]:
    return [(r.partition_key, r.run_key) for r in result.run_requests or []]


@pytest.fixture
def magento(sandbox, isolated_env):
    box = sandbox(**SEED)
    return box, magento_resource(box)


def test_first_tick_requests_each_day_with_data_once_with_data_derived_run_keys(magento) -> None:
    _, resource = magento
    first = tick(resource)
    days = [day for day, _ in requested(first)]
    assert days == ["2024-03-04", "2024-03-05", "2024-03-06"]
    run_keys = [key for _, key in requested(first)]
    assert len(set(run_keys)) == 3 and all(key.startswith(f"magento:{d}:") for d, key in requested(first))
    assert all(r.job_name in (None, "loyalty_job") for r in first.run_requests)
    assert all(r.partition_key in daily_partitions.get_partition_keys() for r in first.run_requests)

    # The cursor comes back through the SensorResult, as JSON.
    assert first.cursor is not None and isinstance(json.loads(first.cursor), dict)

    # Same data, same keys: a tick evaluated again from scratch cannot request a day twice.
    assert requested(tick(resource)) == requested(first)


def test_tick_with_the_returned_cursor_requests_nothing(magento) -> None:
    _, resource = magento
    first = tick(resource)
    second = tick(resource, first.cursor)
    assert requested(second) == []
    assert second.cursor is not None and json.loads(second.cursor) == json.loads(first.cursor)


def test_record_added_at_runtime_is_requested_when_the_clock_reaches_it(magento) -> None:
    box, resource = magento
    cursor = tick(resource).cursor

    # Modified tomorrow (by the source's clock): invisible until the clock gets there.
    box.magento.add_records("orders", [order(3, "2024-03-08 09:30:00", email="dan@example.com")])
    quiet = tick(resource, cursor)
    assert requested(quiet) == []
    cursor = quiet.cursor

    box.clock.advance(24 * 3600)
    later = tick(resource, cursor)
    assert [day for day, _ in requested(later)] == ["2024-03-08"]
    assert requested(tick(resource, later.cursor)) == []

    # A new version of an old order is requested on the day it was modified, with a new run key.
    box.magento.add_records(
        "orders", [order(2, "2024-03-08 10:00:00", state="canceled", email="bob@example.com")]
    )
    again = tick(resource, later.cursor)
    assert [day for day, _ in requested(again)] == ["2024-03-08"]
    assert requested(again)[0][1] != requested(later)[0][1]


def test_record_in_the_same_second_as_the_cursor_is_not_missed(magento) -> None:
    box, resource = magento
    cursor = tick(resource).cursor
    # Another customer saved in the very second the cursor stopped at (the credit memo's stream is
    # separate; customers stopped at 2024-03-06 08:00:00).
    box.magento.add_records(
        "customers",
        [
            {
                "id": 8,
                "email": "eve@example.com",
                "created_at": "2024-03-06 08:00:00",
                "updated_at": "2024-03-06 08:00:00",
            }
        ],
    )
    result = tick(resource, cursor)
    assert [day for day, _ in requested(result)] == ["2024-03-06"]
    assert requested(tick(resource, result.cursor)) == []


def test_not_configured_magento_is_a_skip_with_a_reason(isolated_env) -> None:
    result = tick(MagentoResource())
    assert requested(result) == []
    assert "not configured" in (result.skip_message or "")

    half = MagentoResource(base_url="http://127.0.0.1:9")  # a URL but no credentials
    result = tick(half)
    assert requested(result) == [] and "not configured" in (result.skip_message or "")


def test_sensor_sees_nothing_before_the_source_clock(sandbox, isolated_env) -> None:
    box = sandbox(**SEED, now=dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.UTC))
    result = tick(magento_resource(box))
    assert requested(result) == []


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        (dt.datetime(2024, 3, 8, 0, 15, tzinfo=dt.UTC), "2024-03-07"),
        # 19:15 in New York on 7 March is 00:15 on 8 March in the program timezone (UTC).
        (dt.datetime(2024, 3, 7, 19, 15, tzinfo=ZoneInfo("America/New_York")), "2024-03-07"),
        (dt.datetime(2025, 1, 1, 0, 15, tzinfo=dt.UTC), "2024-12-31"),
        (dt.datetime(2024, 3, 1, 0, 15, tzinfo=dt.UTC), "2024-02-29"),
    ],
)
def test_schedule_requests_yesterdays_partition_in_the_program_timezone(scheduled, expected) -> None:
    context = dg.build_schedule_context(scheduled_execution_time=scheduled)
    request = daily_loyalty_schedule(context)
    requests = request if isinstance(request, list) else [request]
    assert [r.partition_key for r in requests] == [expected]
    assert expected in daily_partitions.get_partition_keys()
    # Two evaluations of the same tick are the same run.
    again = daily_loyalty_schedule(dg.build_schedule_context(scheduled_execution_time=scheduled))
    assert (again if isinstance(again, list) else [again])[0].run_key == requests[0].run_key


def test_schedule_runs_shortly_after_midnight_in_the_program_timezone_for_the_whole_graph() -> None:
    assert daily_loyalty_schedule.cron_schedule == "15 0 * * *"
    assert daily_loyalty_schedule.execution_timezone == "UTC"
    assert daily_loyalty_schedule.job_name == "loyalty_job"
    assert magento_delta_sensor.job_name == "loyalty_job"
    assert SANDBOX_NOW.tzinfo is dt.UTC


def test_record_committed_late_just_behind_the_cursor_is_still_requested(magento) -> None:
    """DESIGN.md §2: the delta query overlaps the cursor. A slower Magento transaction can commit
    a record whose updated_at is a little older than one already seen; within the safety lag
    (ingest.safety_lag_seconds) it must still be requested, or it is lost once its day is closed."""
    box, resource = magento
    box.magento.add_records("orders", [order(5, "2024-03-07 11:59:50", email="fay@example.com")])
    first = tick(resource)
    assert "2024-03-07" in [day for day, _ in requested(first)]

    box.magento.add_records("orders", [order(6, "2024-03-07 11:59:30", email="gus@example.com")])
    late = tick(resource, first.cursor)
    assert [day for day, _ in requested(late)] == ["2024-03-07"]
    assert requested(tick(resource, late.cursor)) == []


def test_a_burst_bigger_than_the_lookahead_does_not_stall_the_sensor(magento) -> None:
    """DESIGN.md §3: the sensor requests runs for the days with new deltas. 250 orders saved in one
    second (a mass update) fill the look-ahead batch with versions already seen: the next ticks
    looked at the same 200 for ever and never saw the orders after them."""
    box, resource = magento
    cursor = tick(resource).cursor
    box.magento.add_records("orders", [order(100 + i, "2024-03-06 10:00:00") for i in range(250)])
    burst = tick(resource, cursor)
    assert [day for day, _ in requested(burst)] == ["2024-03-06"]
    box.magento.add_records("orders", [order(900, "2024-03-06 15:00:00"), order(901, "2024-03-07 08:00:00")])
    cursor, days = burst.cursor, []
    for _ in range(4):  # a batch a tick: the rest of the burst, then what came after it
        result = tick(resource, cursor)
        cursor, days = result.cursor, days + [day for day, _ in requested(result)]
    assert "2024-03-07" in days
    state = json.loads(cursor)["default/orders"]
    assert state["modified"].startswith("2024-03-07T08:00:00")
    assert requested(tick(resource, cursor)) == []


def test_a_change_dated_after_the_last_partition_waits_behind_the_cursor(magento) -> None:
    """A source whose clock is ahead of ours reports a change dated after the last partition: the tick
    requests nothing for it and the cursor stays before it, so other days' changes still come (before,
    every tick failed on the unknown partition and the cursor never moved)."""
    box, resource = magento
    cursor = tick(resource).cursor
    last = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    ahead = dt.datetime.combine(last + dt.timedelta(days=2), dt.time(9), tzinfo=dt.UTC)
    box.magento.add_records("orders", [order(5, ahead.strftime("%Y-%m-%d %H:%M:%S"), email="eve@example.com")])
    box.clock.advance((ahead - SANDBOX_NOW).total_seconds() + 3600)
    early = tick(resource, cursor)
    assert requested(early) == []
    box.magento.add_records("orders", [order(6, f"{last} 08:00:00", email="fay@example.com")])
    later = tick(resource, early.cursor)
    assert [day for day, _ in requested(later)] == [last.isoformat()]


def test_the_schedule_skips_its_tick_on_the_programs_first_day() -> None:
    """Yesterday is before start_date on the first day's tick: a skip with the reason, not an error on
    a partition that does not exist."""
    from loyalty_assets.defs.partitions import PROGRAM

    first = dt.datetime.combine(PROGRAM.start_date, dt.time(0, 15), tzinfo=PROGRAM.tz)
    result = daily_loyalty_schedule(dg.build_schedule_context(scheduled_execution_time=first))
    assert isinstance(result, dg.SkipReason) and "before the program's start_date" in result.skip_message
    second = daily_loyalty_schedule(dg.build_schedule_context(scheduled_execution_time=first + dt.timedelta(days=1)))
    assert second.partition_key == PROGRAM.start_date.isoformat()


def test_materializing_in_the_ui_runs_in_process_like_loyalty_run() -> None:
    """CONTRACT.md §1: materializing in the UI works as `loyalty run` does: the location's implicit
    asset job (the UI's Materialize, backfills) uses the in-process executor of loyalty_job, not a
    process per step (4 min for an empty day against 10 s)."""
    implicit = _REPO.get_implicit_global_asset_job_def()
    assert implicit.executor_def.name == "in_process" == _REPO.get_job("loyalty_job").executor_def.name


def test_a_malformed_settle_time_leaves_the_location_loading(monkeypatch) -> None:
    from loyalty_assets.defs.resources import _settle_seconds

    monkeypatch.setenv("LOYALTY_SYNC_SETTLE_SECONDS", "2.5")
    assert _settle_seconds() == 120
    assert location_definitions().get_repository_def().get_job("loyalty_job") is not None
    monkeypatch.setenv("LOYALTY_SYNC_SETTLE_SECONDS", "30")
    assert _settle_seconds() == 30
