"""Delta sensors, one per commerce platform: poll for records modified since the cursor and request a
run for every day they touch.

The cursor (JSON, per tenant and stream: the last modification time and the ids seen at that time)
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
from loyalty_assets.defs.partitions import PROGRAM

LOOKAHEAD = 200


def _fresh(api, stream: str, items: list[dict], state: dict) -> list[tuple[dt.datetime, str]]:
    last = dt.datetime.fromisoformat(state["modified"]) if state.get("modified") else None
    seen = set(state.get("ids", []))
    out = []
    for rec in items:
        t, rid = api.modified_at(stream, rec), api.record_id(stream, rec)
        if last is not None and (t < last or (t == last and rid in seen)):
            continue
        out.append((t, rid))
    return out


def evaluate_delta(platform: str, source, cursor_text: str | None) -> dg.SensorResult | dg.SkipReason:
    if not source.is_configured:
        return dg.SkipReason(f"{platform} is not configured")
    api = importlib.import_module(f"loyalty_assets.clients.{platform}")
    cursor = json.loads(cursor_text) if cursor_text else {}
    start = dt.datetime.combine(PROGRAM.start_date, dt.time(), tzinfo=PROGRAM.tz).astimezone(dt.UTC)
    changes: dict[str, list[str]] = {}
    for tenant, client in source.clients():
        with client:
            for stream in STREAMS[platform]:
                key = f"{tenant}/{stream}"
                state = cursor.get(key, {})
                since = dt.datetime.fromisoformat(state["modified"]) if state.get("modified") else start
                fresh = _fresh(api, stream, client.lookahead(stream, since, LOOKAHEAD).items, state)
                if not fresh:
                    continue
                newest = max(t for t, _ in fresh)
                ids = {rid for t, rid in fresh if t == newest}
                if state.get("modified") and dt.datetime.fromisoformat(state["modified"]) == newest:
                    ids |= set(state.get("ids", []))
                cursor[key] = {"modified": newest.isoformat(), "ids": sorted(ids)}
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
