"""Magento delta sensor: polls for records modified since its cursor and requests the days they touch.

The cursor (JSON, per stream: last updated_at and the ids seen at that second) advances only through
the SensorResult; run keys come from the data, so a repeated tick requests nothing twice. Sensors
never open DuckDB.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from loyalty_assets.clients.magento import format_magento_time, magento_time
from loyalty_assets.defs.jobs import loyalty_job
from loyalty_assets.defs.partitions import PROGRAM
from loyalty_assets.defs.resources import MagentoResource

STREAM_IDS = {"orders": "entity_id", "creditmemos": "entity_id", "customers": "id"}
LOOKAHEAD = 200


def _new_records(items: list[dict], id_field: str, state: dict) -> list[tuple[dt.datetime, str]]:
    last = state.get("updated_at")
    seen = set(state.get("ids", []))
    out = []
    for rec in items:
        t = magento_time(rec.get("updated_at") or rec.get("created_at"))
        rid = str(rec[id_field])
        stamp = format_magento_time(t)
        if last and (stamp < last or (stamp == last and rid in seen)):
            continue
        out.append((t, rid))
    return out


@dg.sensor(job=loyalty_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def magento_delta_sensor(context: dg.SensorEvaluationContext, magento: MagentoResource):
    """Request a run for every day with new Magento orders, credit memos or customers."""
    if not magento.is_configured:
        return dg.SkipReason("Magento is not configured (MAGENTO_BASE_URL and credentials)")
    cursor = json.loads(context.cursor) if context.cursor else {}
    start = dt.datetime.combine(PROGRAM.start_date, dt.time(), tzinfo=PROGRAM.tz).astimezone(dt.UTC)
    changes: dict[str, list[str]] = {}
    with magento.client() as client:
        for entity, id_field in STREAM_IDS.items():
            state = cursor.get(entity, {})
            since = magento_time(state["updated_at"]) if state.get("updated_at") else start
            result = client.lookahead(entity, since, LOOKAHEAD)
            fresh = _new_records(result.items, id_field, state)
            if not fresh:
                continue
            newest = max(t for t, _ in fresh)
            stamp = format_magento_time(newest)
            ids_at_newest = {rid for t, rid in fresh if format_magento_time(t) == stamp}
            if state.get("updated_at") == stamp:
                ids_at_newest |= set(state.get("ids", []))
            cursor[entity] = {"updated_at": stamp, "ids": sorted(ids_at_newest)}
            for t, rid in fresh:
                day = t.astimezone(PROGRAM.tz).date()
                if day >= PROGRAM.start_date:
                    changes.setdefault(day.isoformat(), []).append(f"{entity}:{rid}@{format_magento_time(t)}")
    requests = [
        dg.RunRequest(
            run_key=f"magento:{day}:{hashlib.sha256('|'.join(sorted(keys)).encode()).hexdigest()[:16]}",
            partition_key=day,
            tags={"loyalty/trigger": "magento_delta_sensor"},
        )
        for day, keys in sorted(changes.items())
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
