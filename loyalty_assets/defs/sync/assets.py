"""Sync assets: the ledger reaches Smile.io, LoyaltyLion (and Salesforce) exactly once (RULES.md §9)."""

import uuid

import dagster as dg

from loyalty_assets.defs.partitions import PROGRAM, WAREHOUSE_ASSET
from loyalty_assets.defs.sync.loyalty_platforms import (
    LoyaltyLionTarget,
    PushCounts,
    SmileTarget,
    chunks,
    push_one,
)
from loyalty_assets.defs.sync.reconciliation import store_reconciliation
from loyalty_assets.defs.sync.salesforce import plan_salesforce, push_salesforce
from loyalty_assets.lib.ledger import watermark
from loyalty_assets.lib.outbox import (
    dry_run,
    mark_sending,
    open_batches,
    prepare_in_transaction,
    queue_key,
    record_calls,
    record_dry_run,
    record_outcomes,
    with_call_status,
)
from loyalty_assets.lib.outbox import summary as batch_summary  # salesforce_push has a `summary` of its own

UNKNOWN_LIMIT = 3
# writes of unknown outcome, with none through, that fail a push at once: the target is down
DOWN_MIN_UNKNOWN = 2


def push_points(context: dg.AssetExecutionContext, resource, target_cls) -> dg.MaterializeResult:
    name = target_cls.name
    warehouse = context.resources.warehouse
    if not resource.is_configured:
        context.log.info(f"{name} is not configured: skipped")
        return dg.MaterializeResult(metadata={"configured": False})
    with warehouse.connect() as conn:
        _, as_of = watermark(conn, PROGRAM)
        if as_of is None:
            return dg.MaterializeResult(metadata={"configured": True, "batches": 0})
        prepared = prepare_in_transaction(conn, name, as_of, exclude_sources=(name,))
        work, in_flight = open_batches(conn, name, resource.settle_seconds)
    if dry_run():
        with warehouse.connect() as conn:
            record_dry_run(conn, name, work, context.run_id)
        context.log.info(f"{name}: dry run, {len(work)} batches written to sync_log, nothing sent")
        return dg.MaterializeResult(metadata={"configured": True, "dry_run": True, "would_send": len(work)})
    counts = PushCounts()
    stuck = 0  # batches whose outcome is still unknown after UNKNOWN_LIMIT attempts
    calls: list[tuple[str, object]] = []  # (batch id, HttpCall): every request, retries included
    with resource.client() as client:
        target = target_cls(client)
        current = [""]
        client.session.on_call = lambda call: calls.append((current[0], call))
        # a customer's batches one after the other: its first of each, then the next of those whose
        # batch went through (a debit sent while the credit before it was unknown was refused: 422)
        queues: dict[str, list] = {}
        for b in work:
            queues.setdefault(queue_key(b), []).append(b)
        round_ = [q.pop(0) for q in queues.values()]
        attempted = 0
        while round_:
            through = []
            for chunk in chunks(round_):
                with warehouse.connect() as conn:
                    correlation = mark_sending(conn, name, chunk, context.run_id)
                outcomes = []
                for b in chunk:  # HTTP, no DuckDB connection held
                    current[0] = b.batch_id
                    outcomes.append(with_call_status(push_one(target, b), [c for k, c in calls if k == b.batch_id]))
                with warehouse.connect() as conn:
                    record_outcomes(conn, name, chunk, outcomes, correlation)
                    record_calls(conn, name, context.run_id, correlation, calls,
                                 {b.batch_id: batch_summary(b) for b in chunk})
                calls.clear()
                attempted += len(chunk)
                for b, o in zip(chunk, outcomes, strict=True):
                    counts.add(o.status)
                    stuck += o.status == "sending" and b.attempts + 1 >= UNKNOWN_LIMIT
                    if o.status == "sent":
                        through.append(queue_key(b))
            round_ = [queues[k].pop(0) for k in through if queues[k]]
    context.log.info(f"{name}: {prepared} new batches; {counts}"
                     + (f"; {in_flight} members wait for a write of unknown outcome to settle" if in_flight else ""))
    metadata = {"configured": True, "new_batches": prepared, "attempted": attempted, "in_flight": in_flight,
                **vars(counts)}
    down = counts.uncertain >= DOWN_MIN_UNKNOWN and counts.sent == 0
    if counts.failed or stuck or down:
        # CONTRACT.md §1: a configured target that fails fails the run (and `loyalty run` exits non-zero);
        # every outcome is recorded first and the failed batches are sent again by the next run. So is a
        # target that answers writes with 5xx or timeouts: a single unknown outcome, or one among writes
        # that went through, is settled by the next run's lookup; several writes unknown and none
        # through, or a batch still unknown after UNKNOWN_LIMIT attempts, mean it is failing (an outage
        # of every write passed two runs)
        problems = [f"{counts.failed} of {len(work)} batches failed (outbox status 'failed', reasons in sync_log)"
                    ] if counts.failed else []
        problems += [f"{counts.uncertain} writes of unknown outcome and none went through (outbox status "
                     "'sending', looked up before any resend)"] if down else []
        problems += [f"{stuck} batches still of unknown outcome after {UNKNOWN_LIMIT} attempts (outbox status "
                     "'sending', looked up before any resend)"] if stuck else []
        raise dg.Failure(f"{name}: {'; '.join(problems)}; the next run retries them", metadata={**metadata, "stuck": stuck})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="sync",
    kinds={"duckdb", "smile"},
    deps=["member_status", "ledger_entries"],
    required_resource_keys={"warehouse", "smile"},
    **WAREHOUSE_ASSET,
)
def smile_points_push(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Spendable points sent to Smile.io as one points transaction per member per run (outbox, exactly once)."""
    return push_points(context, context.resources.smile, SmileTarget)


@dg.asset(
    group_name="sync",
    kinds={"duckdb", "loyaltylion"},
    deps=["member_status", "ledger_entries"],
    required_resource_keys={"warehouse", "loyaltylion"},
    **WAREHOUSE_ASSET,
)
def loyaltylion_points_push(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Spendable points sent to LoyaltyLion (add/remove points by merchant id), through the outbox."""
    return push_points(context, context.resources.loyaltylion, LoyaltyLionTarget)


@dg.asset(
    group_name="sync",
    kinds={"duckdb", "salesforce"},
    deps=["member_status", "ledger_entries", "vip_tier_changes"],
    required_resource_keys={"warehouse", "salesforce"},
    **WAREHOUSE_ASSET,
)
def salesforce_push(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Members (Lead, then Contact), ledger entries and tier changes upserted to Salesforce by external id;
    only rows whose values changed since the last successful push."""
    resource = context.resources.salesforce
    if not resource.is_configured:
        context.log.info("salesforce is not configured: skipped")
        return dg.MaterializeResult(metadata={"configured": False})
    if dry_run():
        with context.resources.warehouse.connect() as conn:
            plan = plan_salesforce(conn)
        counts = {k: len(v) for k, v in plan.items()}
        context.log.info(f"salesforce: dry run, would send {counts}")
        return dg.MaterializeResult(metadata={"configured": True, "dry_run": True, **counts})
    summary = push_salesforce(context, resource, context.resources.warehouse)
    context.log.info(f"salesforce: {summary}")
    if summary["failed_records"] or summary["stopped"]:
        # as push_points: recorded, retried by the next run (only successes are in sync_state), and a
        # failure; so is a push the API limit (or the safety margin below it) stopped part way
        problems = [f"{summary['failed_records']} records failed (reasons in sync_log)"] if summary["failed_records"] else []
        problems += [f"stopped: {summary['stopped']}"] if summary["stopped"] else []
        raise dg.Failure(f"salesforce: {'; '.join(problems)}; the next run sends the rest",
                         metadata={"configured": True, **summary})
    return dg.MaterializeResult(metadata={"configured": True, **summary})


@dg.asset(
    group_name="sync", kinds={"duckdb"}, deps=["smile_points_push", "loyaltylion_points_push"],
    required_resource_keys={"warehouse", "smile", "loyaltylion"}, **WAREHOUSE_ASSET,
)
def reconciliation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Each member's spendable balance next to Smile.io's and LoyaltyLion's after this run's pushes:
    the drift nothing here explains (points not delivered yet are an explanation)."""
    metadata = {}
    for target in ("smile", "loyaltylion"):
        resource = getattr(context.resources, target)
        if not resource.is_configured:
            continue
        calls: list[tuple[str, object]] = []
        with resource.client() as client:
            client.session.on_call = lambda call, calls=calls: calls.append(("reconciliation", call))
            customers = client.customers()  # read after the pushes, never with a connection open
        with context.resources.warehouse.connect() as conn:
            compared, drifting = store_reconciliation(conn, target, customers)
        with context.resources.warehouse.connect() as conn:
            # RULES.md §9: every call in sync_log, this read's pages too, under one correlation id
            record_calls(conn, target, context.run_id, {"reconciliation": str(uuid.uuid4())}, calls,
                         {"reconciliation": f"customers read for reconciliation: {len(customers)}"})
        metadata[f"{target}_members_compared"] = compared
        metadata[f"{target}_members_with_drift"] = drifting
    return dg.MaterializeResult(metadata=metadata or {"configured": False})
