"""`loyalty bench`: the performance benchmark (CONTRACT.md §1, the performance issue).

Generates native order and refund payloads of the platforms asked for (bench_data.py: Magento 2 by
default; BigCommerce, commercetools and SFCC too, the orders by turns) at a given scale and lands them
into a fresh DuckDB warehouse with bulk SQL (setup, not timed). Then, in the same run:

* the baseline: ONE DuckDB query over the landed raw payloads computing every shopper's points in a
  single pass (latest version per order, eligible = subtotal - |discount| as DECIMAL, x points per
  unit, floored, grouped by lower(trim(email))) - the least work any implementation must do;
* the full recompute, stage by stage (raw -> facts (normalize), identity, facts refresh, ledger,
  tiers, member status, push preparation), each with its seconds, ratio to the baseline and peak RSS,
  `--full-runs` times (default 3), each in a fresh process on a copy of the landed warehouse, the
  median run reported; before each run the baseline once more in a fresh process, as the run starts,
  for a like-for-like ratio per pair beside the headline one;
* one incremental day of changed orders on a history of N/10 orders and on the history of N orders,
  the whole pipeline timed for that day on each, in a fresh process (a day's run is a Dagster process
  of its own: it starts with cold buffers), and apart from it the checkpoint that persists the day's
  writes (a Dagster process checkpoints when it closes the file). Each day runs `--day-runs` times
  (default 5) on copies of the same pre-day warehouse and the median run is reported, as the
  baseline's median of three: one run of the same day drifted by a third on this shared machine, and
  the ratio of medians of three by 1.21-1.70 between two runs of the bench.

Then the push side of the incremental day on the history of N orders and the backfill:

* push volume (counted, nothing sent): the Smile.io calls the pusher would make for that day's outbox
  batches (its dry run, with every member given a Smile customer) against the members whose ledger
  changed that day, and the Salesforce rows `plan_salesforce` would upsert per sObject with the calls
  the client's policy makes for them (sObject Collections, 200 a call, up to 2,000 rows; Bulk API 2.0
  above). The day before is taken as delivered (Smile batches sent, Salesforce sync_state written as
  a successful push writes it), so the day's figures are the day's own;
* the Smile.io rate: a bounded sample of that day's batches pushed through the real pusher code
  (outbox -> SmileTarget -> SmileClient) over HTTP to the SmileEmulator with its real 10 requests/s
  limit, with the requests per second sustained and the 429s the emulator answered;
* the backfill: the same history landed into a fresh warehouse, and the core assets (money, identity,
  ledger, tiers: normalize through member_status, no pushes) materialized through Dagster for all
  its days as ONE run (daily partitions, BackfillPolicy.single_run), timed against the full recompute,
  on a fresh instance of the project's own configuration (`--backfill-instance`: PostgreSQL or SQLite
  as `loyalty run` would choose, or in memory): its event log is most of a backfill's cost above the SQL.

Every DuckDB connection the bench opens gets `memory_limit` and `threads` set explicitly. The timed
stages run through lib/ directly (as loyalty_assets_tests/pipeline.py does), without Dagster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform as _platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb

from loyalty_assets.bench_data import (
    FIRST_DAY,
    PLATFORMS,
    baseline_sql,
    land_history,
    land_incremental_day,
    parse_platforms,
)
from loyalty_assets.lib.warehouse import registered

STAGES = ("normalize", "identity", "facts", "ledger", "tiers", "member_status", "push_prep")
STAGE_LABELS = {
    "normalize": "raw -> facts (normalize)",
    "identity": "identity",
    "facts": "facts refresh",
    "ledger": "ledger (book_through)",
    "tiers": "tiers",
    "member_status": "member status",
    "push_prep": "push preparation",
}
JSON_KEYS = (
    "baseline_seconds", "total_seconds", "ratio_total_to_baseline", "peak_rss_bytes", "stages",
    "incremental_seconds_small", "incremental_seconds_large", "incremental_ratio",
)  # fmt: skip
FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
INCREMENTAL_CHANGED = 10_000
DAY_WAL_LIMIT = "1GB"  # no automatic checkpoint inside an incremental day's stages (see run_bench)
DEFAULT_MEMORY_LIMIT = "3GB"  # the buffer pool plus Python stays under the 4 GiB target at 1M orders
DEFAULT_THREADS = 2
SMILE_SAMPLE = 2_000
DAY_RUNS = 5  # each incremental day is run this many times; the median run is reported
FULL_RUNS = 3  # the full recompute too
SMILE_CUSTOMER_ID_BASE = 5_000_000
# Bulk API 2.0, one job (simple-salesforce + SalesforceClient._bulk_upsert): create, upload, close,
# the job read after the wait, successful and failed results = 6, plus at least one status poll.
BULK_FIXED_CALLS_PER_JOB = 6
BULK_MAX_CALLS_PER_JOB = 10
BACKFILL_GROUPS = ("money", "identity", "ledger", "tiers")


# --------------------------------------------------------------------------------------------
# memory: peak RSS per stage from a sampling thread (/proc/self/statm), ru_maxrss as a fallback


class RssSampler:
    """Samples this process's resident set every `interval` seconds; `peak` since the last reset."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc = Path("/proc/self/statm").exists()
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def current(self) -> int:
        if self._proc:
            try:
                with open("/proc/self/statm") as fh:
                    return int(fh.read().split()[1]) * self._page
            except OSError:
                pass
        return max_rss_bytes()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self.current()
            if rss > self.peak:
                self.peak = rss

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def reset(self) -> None:
        self.peak = self.current()

    def read(self) -> int:
        rss = self.current()
        if rss > self.peak:
            self.peak = rss
        return self.peak if self._proc else max_rss_bytes()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


def max_rss_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


# --------------------------------------------------------------------------------------------
# per-SQL-script timing (lib/ is not edited: the modules' `run_script` names are wrapped here)


class ScriptTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._saved: list[tuple[object, Callable]] = []

    @contextmanager
    def installed(self):
        from loyalty_assets.lib import facts, ledger, status, tiers, warehouse

        original = warehouse.run_script

        def timed(conn, name, params=None, fill=None):
            t0 = time.perf_counter()
            try:
                return original(conn, name, params, fill)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        modules = [m for m in (ledger, facts, status, tiers) if getattr(m, "run_script", None) is original]
        for m in modules:
            m.run_script = timed
        try:
            yield self
        finally:
            for m in modules:
                m.run_script = original

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {k: (self.seconds[k], self.calls[k]) for k in self.seconds}

    @staticmethod
    def diff(after: dict, before: dict) -> dict[str, dict]:
        out = {}
        for name, (sec, calls) in after.items():
            s0, c0 = before.get(name, (0.0, 0))
            if calls - c0:
                out[name] = {"seconds": round(sec - s0, 4), "calls": calls - c0}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["seconds"]))


# --------------------------------------------------------------------------------------------
# warehouses (the data: bench_data.py)


def configure(conn: duckdb.DuckDBPyConnection, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    conn.execute(f"SET memory_limit = '{memory_limit}'")
    conn.execute(f"SET threads = {int(threads)}")
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def open_warehouse(path: Path, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    from loyalty_assets.lib import warehouse

    conn = duckdb.connect(str(path))
    configure(conn, memory_limit, threads)
    warehouse.ensure_schema(conn, str(path))
    return conn


# --------------------------------------------------------------------------------------------
# the baseline (its query: bench_data.baseline_sql)


BASELINE_RUNS = 3


def run_baseline(conn: duckdb.DuckDBPyConnection, points_per_unit, sql: str) -> tuple[float, int, int, list[float]]:
    """The baseline's median of BASELINE_RUNS runs (a single run drifted 3.7-6.5 s at 1M on this
    shared machine, the first one reading cold pages), its result, and every run's seconds."""
    runs = [_timed_baseline(conn, points_per_unit, sql) for _ in range(BASELINE_RUNS)]
    shoppers, points = conn.execute(
        "SELECT count(*), coalesce(sum(points), 0) FROM bench_baseline"
    ).fetchall()[0]
    return statistics.median(runs), int(shoppers), int(points), [round(r, 6) for r in runs]


def _timed_baseline(conn: duckdb.DuckDBPyConnection, points_per_unit, sql: str) -> float:
    """One run of the baseline query (bench_data.baseline_sql) into temp table bench_baseline: its seconds."""
    t0 = time.perf_counter()
    conn.execute(sql, {"rate": str(points_per_unit)})
    return time.perf_counter() - t0


def _cold_baseline_worker(path: str, memory_limit: str, threads: int, points_per_unit: str,
                          sql: str) -> tuple[float, int]:
    """The baseline query once in this fresh process, on a read-only connection: (seconds, shoppers)."""
    conn = configure(duckdb.connect(path, read_only=True), memory_limit, threads)
    try:
        seconds = _timed_baseline(conn, points_per_unit, sql)
        return seconds, conn.execute("SELECT count(*) FROM bench_baseline").fetchall()[0][0]
    finally:
        conn.close()


def run_cold_baseline(path: Path, points_per_unit, memory_limit: str, threads: int, shoppers: int,
                      sql: str) -> float:
    """The baseline as each full recompute run is measured: in a fresh process (DuckDB's buffers empty,
    the file in the OS cache), its seconds. run_baseline's runs, in the process that landed the data,
    find the payloads in DuckDB's buffers after the first, where the recompute's normalize reads them
    cold. run_bench takes one before each recompute run, so that each pair shares the machine's speed
    of that minute; the headline ratio keeps run_baseline's median."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds, n = pool.submit(_cold_baseline_worker, str(path), memory_limit, threads, str(points_per_unit),
                                 sql).result()
    if n != shoppers:
        raise RuntimeError(f"the baseline found {n} shoppers in a fresh process, {shoppers} before")
    return seconds


# --------------------------------------------------------------------------------------------
# the pipeline, stage by stage


def _stage_functions(conn, program, fx, through: dt.date) -> list[tuple[str, Callable[[], object]]]:
    from loyalty_assets.lib import facts, identity, ledger, normalize, outbox, status, tiers

    def push_prep():  # committed, so the next day's preparation covers only that day's entries
        return outbox.prepare_in_transaction(conn, "smile", through, ("smile",))

    return [
        ("normalize", lambda: normalize.normalize(conn, program, fx, through)),
        ("identity", lambda: identity.resolve_members(conn, program, through)),
        ("facts", lambda: facts.refresh_order_facts(conn, program)),
        ("ledger", lambda: ledger.book_through(conn, program, through, FAR_FUTURE)),
        ("tiers", lambda: tiers.evaluate_through(conn, program)),
        ("member_status", lambda: status.refresh_member_status(conn, program)),
        ("push_prep", push_prep),
    ]


def _describe(result: object) -> str:
    if result is None:
        return ""
    if isinstance(result, int):
        return str(result)
    if hasattr(result, "days_booked"):  # BookingResult
        return f"{len(result.days_booked)} days, {result.entries} entries"
    if hasattr(result, "days") and hasattr(result, "changes"):  # TierResult
        return f"{len(result.days)} days, {result.changes} changes"
    if hasattr(result, "__dataclass_fields__"):
        return ", ".join(f"{k}={getattr(result, k)}" for k in result.__dataclass_fields__)
    return str(result)


def run_pipeline(
    conn,
    program,
    fx,
    through: dt.date,
    sampler: RssSampler,
    timer: ScriptTimer,
    baseline_seconds: float | None,
    label: str,
    log: Callable[[str], None],
) -> list[dict]:
    stages = []
    for name, fn in _stage_functions(conn, program, fx, through):
        gc.collect()
        before = timer.snapshot()
        sampler.reset()
        log(f"[bench] {label}: {STAGE_LABELS[name]} ...")
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        peak = sampler.read()
        stage = {
            "name": name,
            "label": STAGE_LABELS[name],
            "seconds": round(seconds, 4),
            "peak_rss_bytes": int(peak),
            "result": _describe(result),
            "sql": ScriptTimer.diff(timer.snapshot(), before),
        }
        if baseline_seconds:
            stage["ratio_to_baseline"] = round(seconds / baseline_seconds, 2)
        log(f"[bench] {label}: {STAGE_LABELS[name]} {seconds:.2f}s ({stage['result']})")
        stages.append(stage)
    return stages


def _pipeline_worker(path: str, memory_limit: str, threads: int, day: dt.date, baseline_seconds: float | None,
                     label: str, wal_limit: str | None = DAY_WAL_LIMIT) -> dict:
    """The pipeline through `day` in this process (an incremental day, or the full recompute), then
    the checkpoint that persists it. wal_limit None keeps DuckDB's own checkpoints inside the stages
    (the full recompute writes GBs: they are part of its cost)."""
    from loyalty_assets.lib.money import FxTable
    from loyalty_assets.lib.program import load_program

    program, fx = load_program(), FxTable.load(None)
    sampler, timer = RssSampler().start(), ScriptTimer()
    try:
        with timer.installed():
            conn = open_warehouse(Path(path), memory_limit, threads)
            # no checkpoint inside the stages, on both histories alike (DuckDB's own, at 16 MB of WAL,
            # fell inside the 1M day's last stage and not in the 100k day's): the closing one is apart
            if wal_limit:
                conn.execute(f"SET checkpoint_threshold = '{wal_limit}'")
            stages = run_pipeline(conn, program, fx, day, sampler, timer, baseline_seconds, label, lambda _m: None)
            t0 = time.perf_counter()
            conn.execute("CHECKPOINT")  # as each Dagster process does when it closes the file
            checkpoint = time.perf_counter() - t0
            conn.close()
    finally:
        sampler.stop()
    return {"stages": stages, "checkpoint_seconds": round(checkpoint, 4)}


def run_repeated(path: Path, runs: int, memory_limit: str, threads: int, day: dt.date, baseline_seconds: float | None,
                 label: str, log: Callable[[str], None], wal_limit: str | None = DAY_WAL_LIMIT,
                 paired: Callable[[], float] | None = None) -> dict:
    """The pipeline through `day` `runs` times, each in a fresh process on a copy of the warehouse
    before it (the last one on `path` itself, which keeps the result): the run of median seconds, and
    every run's figures. A single run of the same work on the same file drifted by a third on this
    shared machine. Used for the full recompute; the incremental days use run_interleaved. `paired`:
    measured just before each run, while `path` is still as it was (its seconds: runs_paired_seconds)."""
    return run_interleaved([(path, label)], runs, memory_limit, threads, day, baseline_seconds, log, wal_limit,
                           paired)[0]


def run_interleaved(targets: list[tuple[Path, str]], runs: int, memory_limit: str, threads: int, day: dt.date,
                    baseline_seconds: float | None, log: Callable[[str], None],
                    wal_limit: str | None = DAY_WAL_LIMIT, paired: Callable[[], float] | None = None) -> list[dict]:
    """run_repeated for several warehouses at once, their runs taken in turns (first run of each, then
    the second, ...), so that the machine's drift over the minutes they take falls on all of them
    alike: the two days the incremental ratio compares ran one after the other before, and one side's
    five runs could land in a slower stretch. Returns each target's summary, in order."""
    results: list[list[dict]] = [[] for _ in targets]
    turn = 0
    for i in range(runs):
        for k, (path, label) in enumerate(targets):
            target = path if i == runs - 1 else path.with_name(f"{path.stem}.run{i}{path.suffix}")
            if target != path:
                shutil.copyfile(path, target)
                with open(target, "rb+") as f:  # on disk before the run: else its checkpoint's fsync writes the copy
                    os.fsync(f.fileno())
            try:
                paired_seconds = paired() if paired else None
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    r = pool.submit(_pipeline_worker, str(target), memory_limit, threads, day, baseline_seconds,
                                    label, wal_limit).result()
            finally:
                if target != path:
                    target.unlink(missing_ok=True)
                    target.with_name(target.name + ".wal").unlink(missing_ok=True)
            r["seconds"] = round(sum(s["seconds"] for s in r["stages"]), 4)
            r["seconds_with_checkpoint"] = round(r["seconds"] + r["checkpoint_seconds"], 4)
            r["turn"], turn = turn, turn + 1
            if paired:
                r["paired_seconds"] = round(paired_seconds, 6)
            stages = ", ".join(f"{st['name']} {st['seconds']:.3f}" for st in r["stages"])
            log(f"[bench] {label}, run {i + 1}/{runs}: {r['seconds']:.3f}s ({stages}), "
                f"checkpoint {r['checkpoint_seconds']:.3f}s")
            results[k].append(r)
    summaries = []
    for rs in results:
        median = sorted(rs, key=lambda r: r["seconds"])[(runs - 1) // 2]
        summaries.append({**{key: v for key, v in median.items() if key not in ("turn", "paired_seconds")}, "runs": runs,
                          "runs_seconds": [r["seconds"] for r in rs],
                          "runs_checkpoint_seconds": [r["checkpoint_seconds"] for r in rs],
                          "runs_peak_rss_bytes": [max(st["peak_rss_bytes"] for st in r["stages"]) for r in rs],
                          # the order the runs were taken in, over every target (0, 1, 2, ...)
                          "runs_turns": [r["turn"] for r in rs],
                          # what each run's stages did: the same work, as every run starts from the same warehouse
                          "runs_results": [[st["result"] for st in r["stages"]] for r in rs],
                          **({"runs_paired_seconds": [r["paired_seconds"] for r in rs]} if paired else {})})
    return summaries


def _shoppers_disagreeing(conn) -> int:
    """Shoppers whose baseline points differ from their member's lifetime earned points."""
    return int(conn.execute(
        """SELECT count(*) FROM bench_baseline b FULL OUTER JOIN member_status s ON s.email = b.email
           WHERE coalesce(b.points, 0) <> coalesce(s.points_earned_lifetime, 0)"""
    ).fetchone()[0])  # fmt: skip


def _earned_points(conn) -> int:
    return int(conn.execute(
        "SELECT coalesce(sum(points), 0) FROM ledger_entries WHERE kind IN ('earn', 'adjust', 'clawback')"
    ).fetchone()[0])  # fmt: skip


# --------------------------------------------------------------------------------------------
# the push side: what the pushers would send for a day, the Smile.io rate, the Dagster backfill


def _ledger_totals(conn) -> dict:
    """Entries, their points, and a digest of every entry (id, member, kind, points, days)."""
    n, points, digest = conn.execute(
        """SELECT count(*), coalesce(sum(points), 0),
                  coalesce(bit_xor(hash(entry_id, member_id, kind, points, booked_on, available_on)), 0)
           FROM ledger_entries"""
    ).fetchone()
    return {"entries": int(n), "points": int(points), "digest": f"{int(digest):016x}"}


def record_delivered(conn) -> dict:
    """Take everything planned so far as delivered, as successful pushes leave the warehouse: open
    Smile.io batches `sent`, and Salesforce `sync_state` rows for what `plan_salesforce` plans now
    (the rows push_salesforce writes after a successful upsert). Not timed; nothing reads these
    tables in the timed stages."""
    from loyalty_assets.defs.partitions import PROGRAM
    from loyalty_assets.defs.sync.salesforce import (
        TRANSACTION_OBJECTS,
        member_object,
        plan_salesforce,
        save_sync_state,
        transaction_hash,
    )
    from loyalty_assets.lib.outbox import OPEN_STATUSES

    sent = conn.execute(
        """UPDATE outbox SET status = 'sent', sent_at = now(), updated_at = now()
           WHERE target = 'smile' AND list_contains($open, status)""",
        {"open": list(OPEN_STATUSES)},
    ).fetchone()[0]
    plan = plan_salesforce(conn)
    now = dt.datetime.now(dt.UTC)
    rows = [
        ("salesforce", obj, i["member_id"], i["hash"], now, json.dumps(i["record"], sort_keys=True, default=str))
        for obj, key in (("Lead", "leads"), (member_object(), "contacts"))
        for i in plan[key]
    ]
    rows += [("salesforce", "Lead", m, "converted", now, None) for m in plan["conversions"]]
    txn_object = TRANSACTION_OBJECTS[PROGRAM.salesforce.transactions_as]
    rows += [("salesforce", txn_object, t["key"], transaction_hash(t), now, None) for t in plan["transactions"]]
    save_sync_state(conn, rows)
    return {"smile_batches": int(sent), "salesforce_rows": len(rows)}


def _salesforce_calls(rows: int, platform_event: bool = False) -> dict:
    """The calls SalesforceClient.upsert_records makes for `rows` records (no lock retries)."""
    from loyalty_assets.clients.salesforce import BULK_THRESHOLD, COLLECTION_LIMIT

    if platform_event:
        return {"rows": rows, "api": "platform_event", "calls": rows}
    if rows == 0:
        return {"rows": 0, "api": None, "calls": 0}
    if rows <= BULK_THRESHOLD:
        return {"rows": rows, "api": "collections", "calls": -(-rows // COLLECTION_LIMIT)}
    return {
        "rows": rows,
        "api": "bulk2",
        "jobs": 1,  # simple-salesforce splits a job only above ~99 MB of CSV
        "calls": BULK_FIXED_CALLS_PER_JOB + 1,
        "calls_note": "create, upload, close, >= 1 status poll (one per ~2 s until JobComplete), "
        "job read, successful and failed results; the figure counts one poll",
    }


def measure_push_volume(conn, program, day: dt.date) -> dict:
    """What the pushers would send for `day` (already booked, its batches prepared), counted from
    the outbox and the Salesforce plan, nothing sent. Every member is first linked to a (synthetic)
    Smile customer, so the Smile dry run counts calls rather than batches waiting for a customer."""
    from loyalty_assets.defs.sync.salesforce import TRANSACTION_TARGETS, member_object, plan_salesforce
    from loyalty_assets.lib import outbox

    t0 = time.perf_counter()
    members_changed = conn.execute(
        "SELECT count(DISTINCT member_id) FROM ledger_entries WHERE booked_on = ?", [day]
    ).fetchone()[0]
    conn.execute(
        """INSERT INTO target_links
           SELECT 'smile', member_id, CAST($base + row_number() OVER (ORDER BY member_id) AS VARCHAR),
                  'bench', now()
           FROM member_status ON CONFLICT DO NOTHING""",
        {"base": SMILE_CUSTOMER_ID_BASE},
    )
    work, _ = outbox.open_batches(conn, "smile")
    run_id = f"bench-dry-run-{day.isoformat()}"
    outbox.record_dry_run(conn, "smile", work, run_id)  # what the asset writes under LOYALTY_SYNC_DRY_RUN
    would_send = conn.execute(
        "SELECT count(*) FROM sync_log WHERE run_id = ? AND status = 'dry_run' AND message = 'would send'",
        [run_id],
    ).fetchone()[0]
    # push_one: no customer -> no call; `sending` (outcome unknown) -> a lookup first; then one POST
    smile_calls = sum(1 + (b.status == "sending") for b in work if b.external_customer_id)
    plan = plan_salesforce(conn)
    as_events = program.salesforce.transactions_as == "platform_event"
    salesforce = {
        "leads": {"object": "Lead", **_salesforce_calls(len(plan["leads"]))},
        "contacts": {"object": member_object(), **_salesforce_calls(len(plan["contacts"]))},
        "conversions": {"object": "Lead", **_salesforce_calls(len(plan["conversions"]))},
        "transactions": {
            "object": TRANSACTION_TARGETS[program.salesforce.transactions_as],
            **_salesforce_calls(len(plan["transactions"]), as_events),
        },
    }
    rule_met = all(
        op["api"] in (None, "platform_event")
        or (op["api"] == "collections" and op["calls"] == -(-op["rows"] // 200) and op["rows"] <= 2000)
        or (op["api"] == "bulk2" and op["rows"] > 2000 and op["calls"] <= BULK_MAX_CALLS_PER_JOB * op["jobs"])
        for op in salesforce.values()
    )
    return {
        "day": day.isoformat(),
        "members_changed": int(members_changed),
        "smile_batches": len(work),
        "smile_dry_run_would_send": int(would_send),
        "smile_calls": int(smile_calls),
        "smile_calls_per_member": round(smile_calls / members_changed, 3) if members_changed else None,
        "salesforce": salesforce,
        "salesforce_rows": sum(op["rows"] for op in salesforce.values()),
        "salesforce_calls": sum(op["calls"] for op in salesforce.values()),
        "targets": {
            "smile_calls_le_members_changed": smile_calls <= members_changed,
            "salesforce_collections_or_bulk_rule": rule_met,
        },
        "seconds": round(time.perf_counter() - t0, 3),
        "note": "members_changed = distinct members with ledger entries booked that day; the issue's "
        "figure is for 50,000 changed members (size the day with --incremental-changed)",
    }


def measure_smile_rate(conn, sample: int) -> dict:
    """Up to `sample` of the open Smile batches pushed through the pusher's own steps (mark_sending,
    push_one with SmileTarget over a SmileClient, record_outcomes, in chunks) over HTTP to a
    SmileEmulator on 127.0.0.1 with its real 10 requests/s limit (429 beyond)."""
    from loyalty_assets.clients.smile import SmileClient
    from loyalty_assets.defs.sync.loyalty_platforms import PushCounts, SmileTarget, chunks, push_one
    from loyalty_assets.lib import outbox
    from loyalty_assets.sandbox.smile import SmileEmulator

    work = [b for b in outbox.open_batches(conn, "smile")[0] if b.external_customer_id][: max(0, sample)]
    spendable = dict(
        conn.execute(
            "SELECT member_id, points_spendable FROM member_status WHERE list_contains($ids, member_id)",
            {"ids": [b.member_id for b in work]},
        ).fetchall()
    )
    emulator = SmileEmulator(None)  # rate_per_second=10: the real limiter, 429 beyond
    # the customer's balance before this batch: what earlier (delivered) batches left there
    emulator.add_customers(
        {
            "id": int(b.external_customer_id),
            "email": b.email or f"{b.member_id}@bench.invalid",
            "points_balance": max(0, int(spendable.get(b.member_id, 0)) - int(b.points)),
        }
        for b in work
    )
    counts = PushCounts()
    http_seconds = 0.0
    with emulator:
        env = emulator.env()
        with SmileClient(env["SMILE_API_URL"], env["SMILE_API_KEY"]) as client:
            target = SmileTarget(client)
            t0 = time.perf_counter()
            for chunk in chunks(work):
                correlation = outbox.mark_sending(conn, "smile", chunk, "bench-smile-rate")
                h0 = time.perf_counter()
                outcomes = [push_one(target, b) for b in chunk]
                http_seconds += time.perf_counter() - h0
                outbox.record_outcomes(conn, "smile", chunk, outcomes, correlation)
                for o in outcomes:
                    counts.add(o.status)
            seconds = time.perf_counter() - t0
            pacer_waits = client.pacer.waits
        summary = emulator.request_summary()
        refused = sum(emulator.limiter.refused.values())
        peak = max(emulator.limiter.peak_arrivals.values(), default=0)
    requests = int(summary["total"])
    return {
        "members": len(work),
        "requests": requests,
        "seconds": round(seconds, 3),
        "requests_per_second": round(requests / seconds, 3) if seconds else 0.0,
        "http_seconds": round(http_seconds, 3),
        "requests_per_second_http_only": round(requests / http_seconds, 3) if http_seconds else 0.0,
        "refused_429": int(refused),
        "by_status": summary["by_status"],
        "peak_requests_in_one_second": int(peak),
        "emulator_limit_per_second": emulator.limiter.limit,
        "pacer_waits": int(pacer_waits),
        "outcomes": {k: v for k, v in vars(counts).items() if v},
        "targets": {
            "sustained_ge_9_per_second": bool(seconds and requests / seconds >= 9),
            "no_429": refused == 0,
        },
    }


BACKFILL_INSTANCES = ("postgres", "sqlite", "ephemeral")


def default_backfill_instance() -> str:
    """The storage `loyalty run` would use: PostgreSQL when DAGSTER_PG_HOST is set, else local SQLite."""
    return "postgres" if os.environ.get("DAGSTER_PG_HOST") else "sqlite"


@contextmanager
def scratch_instance(kind: str):
    """A throwaway Dagster instance of the project's own configuration for `kind`: postgres (a scratch
    database on the DAGSTER_PG_* server, deploy/postgres/dagster.yaml), sqlite (dagster.yaml in a temp
    directory) or ephemeral (in memory). Yields (instance, description)."""
    import dagster as dg

    from loyalty_assets.cli import _instance_template, write_local_instance
    from loyalty_assets.instance import pg_connect, pg_server

    if kind == "ephemeral":
        yield dg.DagsterInstance.ephemeral(), "ephemeral (in memory)"
        return
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-dagster-") as home:
        if kind == "sqlite":
            write_local_instance(Path(home))
            instance = dg.DagsterInstance.from_config(home)
            try:
                yield instance, "SQLite (dagster.yaml, a temporary directory)"
            finally:
                instance.dispose()
            return
        server = pg_server()
        env = {"DAGSTER_PG_HOST": server["host"], "DAGSTER_PG_PORT": server["port"],
               "DAGSTER_PG_USER": server["user"], "DAGSTER_PG_PASSWORD": server["password"],
               "DAGSTER_PG_DB": f"loyalty_bench_{os.getpid()}_{int(time.time())}"}
        admin = pg_connect()
        saved = {key: os.environ.get(key) for key in env}
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{env["DAGSTER_PG_DB"]}"')
            os.environ.update({k: v or "unused" for k, v in env.items()})  # the yaml reads these
            shutil.copyfile(_instance_template("deploy/postgres/dagster.yaml"), Path(home, "dagster.yaml"))
            instance = dg.DagsterInstance.from_config(home)
            try:
                yield instance, (f"PostgreSQL {env['DAGSTER_PG_HOST']}:{env['DAGSTER_PG_PORT']}, a scratch "
                                 "database (deploy/postgres/dagster.yaml)")
            finally:
                instance.dispose()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{env["DAGSTER_PG_DB"]}" WITH (FORCE)')
            admin.close()


def run_backfill(path: Path, first: dt.date, last: dt.date, memory_limit: str, threads: int,
                 instance_kind: str = "ephemeral") -> dict:
    """The core assets (groups money, identity, ledger, tiers; no ingest, no pushes, no checks)
    materialized through Dagster for the days first..last as one run of the daily partitions, on a
    fresh instance of `instance_kind` (its event log is most of a backfill's cost above the SQL)."""
    import dagster as dg

    from loyalty_assets.definitions import defs
    from loyalty_assets.defs.resources import Warehouse, unconfigured_resources

    definitions = defs() if callable(defs) else defs
    resources = {
        **unconfigured_resources(),
        "warehouse": Warehouse(
            database=str(path), connection_config={"memory_limit": memory_limit, "threads": int(threads)}
        ),
    }
    with scratch_instance(instance_kind) as (instance, described):
        t0 = time.perf_counter()
        result = dg.materialize(
            definitions.assets,
            selection=dg.AssetSelection.groups(*BACKFILL_GROUPS).without_checks(),
            resources=resources,
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
            raise_on_error=False,
        )
        seconds = time.perf_counter() - t0
        runs = int(instance.get_runs_count())
        events = len(instance.get_records_for_run(result.run_id, limit=1_000_000).records)
    materialized = sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()})
    return {
        "seconds": seconds,
        "success": bool(result.success),
        "runs": runs,
        "instance": instance_kind,
        "instance_description": described,
        "events": events,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "assets": materialized,
    }


# --------------------------------------------------------------------------------------------
# the run


def run_bench(
    orders: int,
    members: int | None,
    days: int,
    platforms: list[str],
    json_path: Path | None,
    workdir: Path | None = None,
    *,
    seed: int = 7,
    memo_rate: float = 0.05,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = DEFAULT_THREADS,
    incremental_changed: int = INCREMENTAL_CHANGED,
    smile_sample: int = SMILE_SAMPLE,
    backfill: bool = True,
    backfill_instance: str | None = None,
    first_day: dt.date = FIRST_DAY,
    day_runs: int = DAY_RUNS,
    full_runs: int = FULL_RUNS,
    print_table: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the benchmark; returns the report (the JSON written to `json_path`, if given).

    `incremental_changed`: changed orders of the incremental day (its push volume is counted too);
    `smile_sample`: members pushed to the Smile.io emulator for the rate (0: skipped); `backfill`:
    also time the Dagster backfill of all the days as one run, on a fresh instance of
    `backfill_instance` (default: `default_backfill_instance()`)."""
    from loyalty_assets.lib.money import FxTable
    from loyalty_assets.lib.program import load_program

    if orders < 10:
        raise ValueError("--orders must be at least 10")
    if days < 1:
        raise ValueError("--days must be at least 1")
    if day_runs < 1 or full_runs < 1:
        raise ValueError("--day-runs and --full-runs must be at least 1")
    platforms = parse_platforms(",".join(platforms))
    query = baseline_sql(platforms)
    backfill_instance = backfill_instance or default_backfill_instance()
    if backfill_instance not in BACKFILL_INSTANCES:
        raise ValueError(f"--backfill-instance must be one of {', '.join(BACKFILL_INSTANCES)}")
    if backfill and backfill_instance == "postgres":  # before the long part: the backfill comes last
        from loyalty_assets.instance import pg_connect, pg_server

        try:
            pg_connect().close()
        except Exception as exc:
            server = pg_server()
            raise ValueError(f"the backfill needs the PostgreSQL server {server['host']}:{server['port']} "
                             f"(DAGSTER_PG_*), which refused: {exc}".strip()) from exc
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    members = members or max(1, orders // 5)
    program = load_program()
    fx = FxTable.load(None)
    last_day = first_day + dt.timedelta(days=days - 1)
    inc_day = last_day + dt.timedelta(days=1)
    small_orders = max(1, orders // 10)
    small_members = max(1, members // 10)
    changed = max(2, min(incremental_changed, small_orders))

    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-")) if own_dir else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    large_path, small_path = workdir / "bench_large.duckdb", workdir / "bench_small.duckdb"
    backfill_path = workdir / "bench_backfill.duckdb"
    for p in (large_path, small_path, backfill_path):
        for q in (p, p.with_name(p.name + ".wal")):
            q.unlink(missing_ok=True)

    def land_large(conn) -> dict:
        return land_history(conn, orders=orders, members=members, days=days, seed=seed, memo_rate=memo_rate,
                            tz=program.timezone, first_day=first_day, platforms=platforms)

    sampler = RssSampler().start()
    timer = ScriptTimer()
    started = time.perf_counter()
    try:
        with timer.installed():
            # ---- setup (not timed): the large history
            log(f"[bench] generating and landing {orders} orders, {members} members, {days} days ...")
            t0 = time.perf_counter()
            large = open_warehouse(large_path, memory_limit, threads)
            sizes = land_large(large)
            large.execute("CHECKPOINT")
            setup_seconds = time.perf_counter() - t0
            gc.collect()
            log(
                f"[bench] landed {sizes['order_versions']} order versions, {sizes['credit_memos']} credit memos "
                f"in {setup_seconds:.1f}s (setup, not timed)"
            )

            # ---- the baseline
            baseline_seconds, baseline_shoppers, baseline_points, baseline_runs = run_baseline(
                large, program.earning.points_per_unit, query
            )
            log(
                f"[bench] baseline: {baseline_seconds:.3f}s (median of {baseline_runs}), {baseline_shoppers} shoppers, {baseline_points} points"
            )

            # ---- the full recompute, stage by stage: `full_runs` times, each in a fresh process on a copy
            # of the landed warehouse (the last on the warehouse itself), the median run reported as the
            # baseline's median: single runs of the same recompute drifted 27-32 s at 1M
            baseline_rows = large.sql("SELECT * FROM bench_baseline").to_arrow_table()  # a temp table: kept aside
            large.execute("CHECKPOINT")
            large.close()
            gc.collect()
            full = run_repeated(large_path, full_runs, memory_limit, threads, last_day, baseline_seconds,
                                "full recompute", log, wal_limit=None,
                                paired=lambda: run_cold_baseline(large_path, program.earning.points_per_unit,
                                                                 memory_limit, threads, baseline_shoppers, query))
            cold_runs = full["runs_paired_seconds"]
            cold_ratios = [round(f / b, 3) for f, b in zip(full["runs_seconds"], cold_runs, strict=True)]
            log(f"[bench] the baseline in a fresh process before each run: {cold_runs} s, ratios {cold_ratios}")
            stages, total_seconds = full["stages"], full["seconds"]
            for st in stages:
                log(f"[bench] full (median run): {st['label']} {st['seconds']:.2f}s ({st['result']})")
            large = open_warehouse(large_path, memory_limit, threads)
            with registered(large, "_baseline_rows", baseline_rows):
                large.execute("CREATE TEMP TABLE bench_baseline AS SELECT * FROM _baseline_rows")
            pipeline_points = _earned_points(large)
            full_ledger = _ledger_totals(large)
            pipeline_members = large.execute("SELECT count(*) FROM member_status").fetchone()[0]
            disagreeing = _shoppers_disagreeing(large)
            peak_rss = max(full["runs_peak_rss_bytes"])

            # ---- incremental: the small history (booked fully, not timed), then the day on both
            log(f"[bench] building the small history ({small_orders} orders) for the incremental day ...")
            small = open_warehouse(small_path, memory_limit, threads)
            small_sizes = land_history(
                small,
                orders=small_orders,
                members=small_members,
                days=days,
                seed=seed + 1,
                memo_rate=memo_rate,
                tz=program.timezone,
                first_day=first_day,
                platforms=platforms,
            )
            run_pipeline(
                small, program, fx, last_day, sampler, timer, None, "small history (setup)", lambda _m: None
            )
            small.execute("CHECKPOINT")
            delivered = record_delivered(large)  # the day before pushed: the day's push volume is its own
            large.execute("CHECKPOINT")
            small.close()
            large.close()
            histories = (("small", small_path, small_orders, small_members), ("large", large_path, orders, members))
            day_sizes = {}
            for label, path, hist, mem in histories:
                conn = open_warehouse(path, memory_limit, threads)
                day_sizes[label] = land_incremental_day(
                    conn,
                    history_orders=hist,
                    members=mem,
                    day=inc_day,
                    changed=changed,
                    seed=seed + 100,
                    tz=program.timezone,
                    platforms=platforms,
                )
                conn.close()  # the pull; then the day's run, in processes of their own (as Dagster runs it)
            gc.collect()
            # the two days' runs in turns, so that the ratio compares runs of the same minutes
            day_results = run_interleaved(
                [(path, f"incremental day on {label} history") for label, path, _h, _m in histories],
                day_runs, memory_limit, threads, inc_day, baseline_seconds, log)
            inc = {label: {"history_orders": hist, "sizes": day_sizes[label], **day}
                   for (label, _p, hist, _m), day in zip(histories, day_results, strict=True)}
            large = open_warehouse(large_path, memory_limit, threads)

            # ---- push volume of the large history's incremental day (nothing sent), the Smile.io rate
            log(f"[bench] push volume of {inc_day} (dry run) ...")
            push_volume = measure_push_volume(large, program, inc_day)
            push_volume["delivered_before"] = delivered
            log(
                f"[bench] push volume: {push_volume['members_changed']} members changed, "
                f"{push_volume['smile_calls']} Smile calls, {push_volume['salesforce_calls']} Salesforce calls"
            )
            smile_rate = None
            if smile_sample > 0:
                log(
                    f"[bench] Smile.io rate: up to {smile_sample} members to the emulator (10 requests/s) ..."
                )
                smile_rate = measure_smile_rate(large, smile_sample)
                log(
                    f"[bench] Smile.io rate: {smile_rate['requests']} requests in {smile_rate['seconds']:.1f}s "
                    f"= {smile_rate['requests_per_second']:.2f}/s, {smile_rate['refused_429']} x 429"
                )
            large.close()

        # ---- the backfill through Dagster: the same history, a fresh warehouse, all days as one run
        backfill_report = None
        if backfill:
            log(
                f"[bench] backfill: landing the history again, then {days} days through Dagster as one run ..."
            )
            conn = open_warehouse(backfill_path, memory_limit, threads)
            land_large(conn)  # the same history as the full recompute, so the ledgers compare
            conn.execute("CHECKPOINT")
            conn.close()
            gc.collect()
            sampler.reset()
            run = run_backfill(backfill_path, first_day, last_day, memory_limit, threads, backfill_instance)
            conn = open_warehouse(backfill_path, memory_limit, threads)
            ledger_totals = _ledger_totals(conn)
            backfill_members = conn.execute("SELECT count(*) FROM member_status").fetchone()[0]
            conn.close()
            backfill_report = {
                "backfill_seconds": round(run["seconds"], 4),
                "backfill_days": days,
                "backfill_ratio_to_full": round(run["seconds"] / total_seconds, 3),
                "single_run": run["runs"] == 1,
                "instance": run["instance"],
                "instance_description": run["instance_description"],
                "events": run["events"],
                "runs": run["runs"],
                "success": run["success"],
                "first_day": run["first_day"],
                "last_day": run["last_day"],
                "peak_rss_bytes": int(sampler.read()),
                "asset_groups": list(BACKFILL_GROUPS),
                "assets": run["assets"],
                "ledger": ledger_totals,
                "members": int(backfill_members),
                "full_recompute_ledger": full_ledger,
                "ledger_matches_full_recompute": ledger_totals == full_ledger,
                "members_match_full_recompute": int(backfill_members) == int(pipeline_members),
                "target_le_2x_full": run["seconds"] <= 2 * total_seconds,
            }
            log(
                f"[bench] backfill: {run['seconds']:.2f}s for {days} days, {run['runs']} run(s), "
                f"{backfill_report['backfill_ratio_to_full']:.2f}x the full recompute"
            )
    finally:
        sampler.stop()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)

    inc_small, inc_large = inc["small"]["seconds"], inc["large"]["seconds"]
    report = {
        "baseline_seconds": round(baseline_seconds, 6),
        "total_seconds": round(total_seconds, 4),
        "ratio_total_to_baseline": round(total_seconds / baseline_seconds, 2),
        "peak_rss_bytes": int(peak_rss),
        "stages": stages,
        # the median run's stages are `stages`; every run's figures (each from the same landed warehouse)
        "full_recompute": {key: full[key] for key in (
            "runs", "runs_seconds", "runs_checkpoint_seconds", "runs_peak_rss_bytes", "runs_results", "checkpoint_seconds")},
        "incremental_seconds_small": inc_small,
        "incremental_seconds_large": inc_large,
        "incremental_ratio": round(inc_large / inc_small, 3),
        # the same with each day's closing checkpoint: it varies from run to run (README)
        "incremental_ratio_with_checkpoint": round(
            inc["large"]["seconds_with_checkpoint"] / inc["small"]["seconds_with_checkpoint"], 3),
        # extras
        "sizes": {
            **sizes,
            "platforms": list(platforms),
            "first_day": first_day.isoformat(),
            "last_day": last_day.isoformat(),
            "raw_generation": f"{', '.join(platforms)} (numpy + DuckDB json_object)",
        },
        # like-for-like: the baseline in fresh processes, as each full recompute run starts (run_cold_baseline)
        "ratio_total_to_cold_baseline": round(statistics.median(cold_ratios), 2),
        "baseline": {
            "runs_seconds": baseline_runs,
            # one in a fresh process before each full recompute run (run_cold_baseline), and each pair's ratio
            "cold_seconds": round(statistics.median(cold_runs), 6),
            "cold_runs_seconds": cold_runs,
            "cold_runs_ratios": cold_ratios,
            "shoppers": baseline_shoppers,
            "points": baseline_points,
            "query": " ".join(query.split()),
        },
        "pipeline": {
            "members": int(pipeline_members),
            "earned_points": pipeline_points,
            "points_minus_baseline": pipeline_points - baseline_points,
            "shoppers_disagreeing_with_baseline": disagreeing,
            "note": "the baseline ignores credit memos, so with memos the pipeline earns less",
        },
        "incremental": {
            "day": inc_day.isoformat(),
            "changed_orders": changed,
            "small": {**inc["small"], "history": small_sizes},
            "large": inc["large"],
            "ratio_small_to_baseline": round(inc_small / baseline_seconds, 2),
            "ratio_large_to_baseline": round(inc_large / baseline_seconds, 2),
        },
        "push_volume": push_volume,
        "smile_rate": smile_rate,
        "backfill": backfill_report,
        "setup_seconds": round(setup_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "process_peak_rss_bytes": max_rss_bytes(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": _platform.python_version(),
            "duckdb": duckdb.__version__,
            "platform": _platform.platform(),
            "memory_total_bytes": _memory_total(),
            "duckdb_memory_limit": memory_limit,
            "duckdb_threads": threads,
        },
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if print_table:
        print(format_table(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _memory_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _push_lines(report: dict) -> list[str]:
    lines = []
    pv = report.get("push_volume")
    if pv:
        t = pv["targets"]
        lines += [
            "",
            f"push volume of {pv['day']} (counted, nothing sent): {pv['members_changed']:,} members changed",
            f"  Smile.io: {pv['smile_batches']:,} batches, {pv['smile_calls']:,} calls "
            f"(<= members changed: {_yes(t['smile_calls_le_members_changed'])})",
        ]
        for name, op in pv["salesforce"].items():
            api = f" ({op['api']})" if op["api"] else ""
            lines.append(
                f"  Salesforce {name} ({op['object']}): {op['rows']:,} rows -> {op['calls']:,} calls{api}"
            )
        lines.append(
            f"  Salesforce: {pv['salesforce_rows']:,} rows, {pv['salesforce_calls']:,} calls "
            f"(<=200 a Collections call up to 2,000 rows, one Bulk job above: "
            f"{_yes(t['salesforce_collections_or_bulk_rule'])})"
        )
    sr = report.get("smile_rate")
    if sr:
        lines.append(
            f"Smile.io rate ({sr['members']:,} members to the emulator, limit {sr['emulator_limit_per_second']}/s): "
            f"{sr['requests']:,} requests in {sr['seconds']:.1f}s = {sr['requests_per_second']:.2f}/s "
            f"(>= 9/s: {_yes(sr['targets']['sustained_ge_9_per_second'])}), {sr['refused_429']} x 429"
        )
    bf = report.get("backfill")
    if bf:
        lines.append(
            f"backfill through Dagster ({bf['backfill_days']} days, {bf['runs']} run"
            f"{'' if bf['runs'] == 1 else 's'}, {bf['events']:,} events on {bf['instance_description']}): "
            f"{bf['backfill_seconds']:.2f}s = "
            f"{bf['backfill_ratio_to_full']:.2f}x the full recompute (<= 2x: {_yes(bf['target_le_2x_full'])}); "
            f"ledger {bf['ledger']['entries']:,} entries / {bf['ledger']['points']:,} points "
            f"(same as the full recompute: {_yes(bf['ledger_matches_full_recompute'])})"
        )
    return lines


def format_table(report: dict) -> str:
    s, m = report["sizes"], report["machine"]
    lines = [
        f"loyalty bench: {s['orders']:,} orders ({s['order_versions']:,} versions, {s['credit_memos']:,} credit memos), "
        f"{s['members']:,} members, {s['days']} days, platforms: {', '.join(s['platforms'])} "
        f"(orders by turns; Magento mapped in SQL, the others in Python)",
        f"machine: {m['cpu_count']} CPUs, Python {m['python']}, DuckDB {m['duckdb']}, "
        f"memory_limit {m['duckdb_memory_limit']}, threads {m['duckdb_threads']}",
        "",
        f"{'stage':<28}{'seconds':>10}{'x baseline':>12}{'peak RSS':>12}  detail",
        f"{'baseline (single query)':<28}{report['baseline_seconds']:>10.3f}{1:>12.2f}{'':>12}  "
        f"{report['baseline']['shoppers']:,} shoppers, {report['baseline']['points']:,} points "
        f"(median of {', '.join(f'{r:.3f}' for r in report['baseline']['runs_seconds'])})",
    ]
    for st in report["stages"]:
        lines.append(
            f"{st['label']:<28}{st['seconds']:>10.3f}{st['ratio_to_baseline']:>12.2f}"
            f"{_mib(st['peak_rss_bytes']):>12}  {st['result']}"
        )
    lines.append(
        f"{'TOTAL (full recompute)':<28}{report['total_seconds']:>10.3f}"
        f"{report['ratio_total_to_baseline']:>12.2f}{_mib(report['peak_rss_bytes']):>12}  "
        f"{report['pipeline']['earned_points']:,} points earned"
    )
    fr, b = report["full_recompute"], report["baseline"]
    lines.append(f"  (the median of {fr['runs']} runs, each in a fresh process on a copy of the landed warehouse: "
                 f"{', '.join(f'{x:.3f}' for x in fr['runs_seconds'])}; peak RSS the highest of them)")
    lines.append(f"  like-for-like: the baseline in a fresh process just before each run took "
                 f"{', '.join(f'{x:.3f}' for x in b['cold_runs_seconds'])}s, each run "
                 f"{', '.join(f'{x:.2f}' for x in b['cold_runs_ratios'])}x its own: median "
                 f"{report['ratio_total_to_cold_baseline']:.2f}x")
    inc = report["incremental"]
    lines += [
        "",
        f"incremental day {inc['day']} ({inc['changed_orders']:,} changed orders):",
        f"  on {inc['small']['history_orders']:,} orders: {report['incremental_seconds_small']:.3f}s "
        f"({inc['ratio_small_to_baseline']:.2f}x baseline)",
        f"  on {inc['large']['history_orders']:,} orders: {report['incremental_seconds_large']:.3f}s "
        f"({inc['ratio_large_to_baseline']:.2f}x baseline)",
        f"  ratio large/small: {report['incremental_ratio']:.2f} (median of {inc['large']['runs']} runs each: "
        f"{', '.join(f'{x:.3f}' for x in inc['small']['runs_seconds'])} / "
        f"{', '.join(f'{x:.3f}' for x in inc['large']['runs_seconds'])})",
        f"  with each day's closing checkpoint: {inc['small']['seconds_with_checkpoint']:.3f}s / "
        f"{inc['large']['seconds_with_checkpoint']:.3f}s, ratio {report['incremental_ratio_with_checkpoint']:.2f}",
    ]
    lines += _push_lines(report)
    top = sorted(
        (
            (name, q["seconds"], q["calls"], st["name"])
            for st in report["stages"]
            for name, q in st["sql"].items()
        ),
        key=lambda r: -r[1],
    )[:6]
    if top:
        lines += ["", "slowest SQL scripts in the full recompute (stage: script, calls, seconds):"]
        lines += [f"  {stage}: {name} x{calls} = {sec:.2f}s" for name, sec, calls, stage in top]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, required=True, help="orders in the history (N)")
    parser.add_argument("--members", type=int, default=None, help="members (default N/5)")
    parser.add_argument("--days", type=int, default=365, help="days of daily partitions (default 365)")
    parser.add_argument(
        "--platforms",
        default="magento",
        help=f"comma-separated platforms to generate orders on, by turns (default magento; any of {', '.join(PLATFORMS)})",
    )
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the benchmark warehouses here (default: a temp dir, removed afterwards)",
    )
    parser.add_argument(
        "--first-day",
        type=dt.date.fromisoformat,
        default=FIRST_DAY,
        help=f"the history's first day (default {FIRST_DAY}); the incremental day follows its last",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--memory-limit", default=DEFAULT_MEMORY_LIMIT, help=f"DuckDB memory_limit (default {DEFAULT_MEMORY_LIMIT})"
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="DuckDB threads (default 2)")
    parser.add_argument(
        "--incremental-changed",
        type=int,
        default=INCREMENTAL_CHANGED,
        help=f"changed orders of the incremental day, whose push volume is counted (default {INCREMENTAL_CHANGED:,})",
    )
    parser.add_argument(
        "--smile-sample",
        type=int,
        default=SMILE_SAMPLE,
        help=f"members pushed to the Smile.io emulator to measure the rate (default {SMILE_SAMPLE:,}; 0 skips)",
    )
    parser.add_argument(
        "--day-runs",
        type=int,
        default=DAY_RUNS,
        help=f"times each incremental day is run, each in a fresh process on a copy; the median is reported (default {DAY_RUNS})",
    )
    parser.add_argument(
        "--full-runs",
        type=int,
        default=FULL_RUNS,
        help=f"times the full recompute is run, each in a fresh process on a copy of the landed warehouse; the median is reported (default {FULL_RUNS})",
    )
    parser.add_argument(
        "--no-backfill",
        dest="backfill",
        action="store_false",
        help="skip the backfill of all the days through Dagster as one run",
    )
    parser.add_argument(
        "--backfill-instance",
        choices=BACKFILL_INSTANCES,
        default=None,
        help="the Dagster instance the backfill runs on, created fresh and removed afterwards: postgres "
        "(a scratch database on the DAGSTER_PG_* server, default 127.0.0.1:5432), sqlite or ephemeral "
        "(default: postgres when DAGSTER_PG_HOST is set, else sqlite, as `loyalty run` chooses)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        platforms = parse_platforms(getattr(args, "platforms", "magento"))
    except ValueError as exc:
        print(f"loyalty bench: {exc}", file=sys.stderr)
        return 2
    if (args.orders < 10 or getattr(args, "days", 365) < 1 or getattr(args, "day_runs", DAY_RUNS) < 1
            or getattr(args, "full_runs", FULL_RUNS) < 1):
        print("loyalty bench: --orders must be at least 10, --days, --day-runs and --full-runs at least 1",
              file=sys.stderr)
        return 2
    try:
        _run_from_args(args, platforms)
    except ValueError as exc:  # the arguments or the environment refused before any work
        print(f"loyalty bench: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_from_args(args: argparse.Namespace, platforms: list[str]) -> None:
    run_bench(
        args.orders,
        getattr(args, "members", None),
        getattr(args, "days", 365),
        platforms,
        getattr(args, "json_path", None) or getattr(args, "json", None),
        getattr(args, "workdir", None),
        seed=getattr(args, "seed", 7),
        memory_limit=getattr(args, "memory_limit", DEFAULT_MEMORY_LIMIT),
        threads=getattr(args, "threads", DEFAULT_THREADS),
        incremental_changed=getattr(args, "incremental_changed", INCREMENTAL_CHANGED),
        smile_sample=getattr(args, "smile_sample", SMILE_SAMPLE),
        backfill=getattr(args, "backfill", True),
        backfill_instance=getattr(args, "backfill_instance", None),
        first_day=getattr(args, "first_day", FIRST_DAY),
        day_runs=getattr(args, "day_runs", DAY_RUNS),
        full_runs=getattr(args, "full_runs", FULL_RUNS),
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="loyalty bench", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
