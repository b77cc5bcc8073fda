"""Delta sensors, one per commerce platform: poll for records modified since the cursor and request a
run for every day they touch.

The cursor (JSON, per tenant and stream: the last modification time and the versions seen within the
look-back window)
advances only through the SensorResult; run keys come from the data, so a repeated tick requests
nothing twice. Sensors never open DuckDB.
"""

import datetime as dt
import hashlib
import importlib
import json

import dagster as dg

from loyalty_assets.defs.ingest.assets import STREAMS
from loyalty_assets.defs.jobs import loyalty_job
from loyalty_assets.defs.partitions import PROGRAM, daily_partitions
from loyalty_assets.lib.landing import days_covered, discover, fingerprint, landing_dir

LOOKAHEAD = 200
MAX_LOOKAHEAD = 12_800  # a burst in one second bigger than this still stalls the sensor (not the schedule)


def _fresh(api, stream: str, items: list[dict], state: dict) -> list[tuple[dt.datetime, str]]:
    """Records not seen by an earlier tick (the query looks back over the lag window)."""
    seen = set(state.get("seen", []))
    out = []
    for rec in items:
        t, rid = api.modified_at(stream, rec), api.record_id(stream, rec)
        if f"{rid}@{t.isoformat()}" not in seen:
            out.append((t, rid))
    return out


def _look(api, client, stream: str, since: dt.datetime, state: dict) -> list[tuple[dt.datetime, str]]:
    """The records after the cursor. A full batch of versions seen already (a burst of more than
    LOOKAHEAD changes within the look-back window) is looked past: from its newest time on, and
    with a bigger batch when they all share that second; asking again from `since` saw the same
    batch on every tick, and nothing after it."""
    limit = LOOKAHEAD
    items = client.lookahead(stream, since, limit).items
    fresh = _fresh(api, stream, items, state)
    while not fresh and len(items) >= limit and limit <= MAX_LOOKAHEAD:
        newest = max(api.modified_at(stream, rec) for rec in items)
        if newest > since:
            since = newest
        else:
            limit *= 2
        items = client.lookahead(stream, since, limit).items
        fresh = _fresh(api, stream, items, state)
    return fresh


def evaluate_delta(platform: str, source, cursor_text: str | None) -> dg.SensorResult | dg.SkipReason:
    if not source.is_configured:
        return dg.SkipReason(f"{platform} is not configured")
    api = importlib.import_module(f"loyalty_assets.clients.{platform}")
    cursor = json.loads(cursor_text) if cursor_text else {}
    start = dt.datetime.combine(PROGRAM.start_date, dt.time(), tzinfo=PROGRAM.tz).astimezone(dt.UTC)
    changes: dict[str, list[str]] = {}
    lag = dt.timedelta(seconds=PROGRAM.ingest.safety_lag_seconds)
    # a change dated after the last partition (a source's clock ahead of ours, just after midnight)
    # is left behind the cursor for a later tick: requested now, every tick failed on its unknown
    # partition and the cursor never moved
    last_day = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    for tenant, client in source.clients():
        with client:
            for stream in STREAMS[platform]:
                key = f"{tenant}/{stream}"
                state = cursor.get(key, {})
                # Look back over the safety lag: a slow save can commit a record stamped a little
                # before one already seen. What was seen in that window is in the cursor.
                since = dt.datetime.fromisoformat(state["modified"]) - lag if state.get("modified") else start
                fresh = [(t, rid) for t, rid in _look(api, client, stream, since, state)
                         if t.astimezone(PROGRAM.tz).date() <= last_day]
                if not fresh:
                    continue
                newest = max([t for t, _ in fresh] + ([dt.datetime.fromisoformat(state["modified"])]
                                                      if state.get("modified") else []))
                seen = {s for s in state.get("seen", []) if dt.datetime.fromisoformat(s.split("@", 1)[1]) >= newest - lag}
                seen |= {f"{rid}@{t.isoformat()}" for t, rid in fresh if t >= newest - lag}
                cursor[key] = {"modified": newest.isoformat(), "seen": sorted(seen)}
                for t, rid in fresh:
                    day = t.astimezone(PROGRAM.tz).date()
                    if day >= PROGRAM.start_date:
                        changes.setdefault(day.isoformat(), []).append(f"{key}:{rid}@{t.isoformat()}")
    requests = [
        dg.RunRequest(
            run_key=f"{platform}:{day}:{hashlib.sha256('|'.join(sorted(keys)).encode()).hexdigest()[:16]}",
            partition_key=day,
            tags={"loyalty/trigger": f"{platform}_delta_sensor"},
        )
        for day, keys in sorted(changes.items())
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))


def _delta_sensor(platform: str):
    @dg.sensor(
        name=f"{platform}_delta_sensor",
        job=loyalty_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={platform},
        description=f"Requests a run for every day with new {platform} records (orders, refunds, customers).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        return evaluate_delta(platform, getattr(context.resources, platform), context.cursor)

    return _sensor


delta_sensors = [_delta_sensor(p) for p in STREAMS]


@dg.sensor(
    job=loyalty_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches the landing directory for new export files and requests ONE run for the range of "
    "days they cover (a year of history is one run, not 365).",
)
def landing_files_sensor(context: dg.SensorEvaluationContext):
    root = landing_dir()
    if not root.is_dir():
        return dg.SkipReason(f"no landing directory at {root}")
    seen = json.loads(context.cursor) if context.cursor else {}
    current = {str(f.path): (f, fingerprint(f.path)) for f in discover(root)}
    new = {path: pair for path, pair in current.items() if seen.get(path) != pair[1]}
    if not new:
        return dg.SkipReason("no new or changed files")
    first = last = None
    for f, _ in new.values():
        try:
            span = days_covered(f, PROGRAM.tz)
        except (ValueError, UnicodeDecodeError):
            span = None  # a broken file is quarantined by the run; it still needs one
        if span is None:
            continue
        first = span[0] if first is None else min(first, span[0])
        last = span[1] if last is None else max(last, span[1])
    today = dt.datetime.now(PROGRAM.tz).date()
    first = max(first or today, PROGRAM.start_date)
    last = min(max(last or today, first), today)
    digest = hashlib.sha256("|".join(f"{p}={fp}" for p, (_, fp) in sorted(new.items())).encode()).hexdigest()[
        :16
    ]
    request = dg.RunRequest(
        run_key=f"landing:{digest}",
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            "loyalty/trigger": "landing_files_sensor",
        },
    )
    cursor = {path: fp for path, (_, fp) in current.items()}
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(cursor, sort_keys=True))
