"""The `loyalty` command (CONTRACT.md §1)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = Path("data/demo")


class UsageError(Exception):
    """A setting the command cannot start with: one line on stderr and exit 2, not a traceback."""


def load_env_file(path: str | None) -> dict[str, str]:
    """KEY=VALUE lines (as `loyalty sandbox --env-file` writes them) into os.environ; the file wins."""
    if not path:
        return {}
    if not Path(path).is_file():
        raise UsageError(f"--env-file {path}: no such file")
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    os.environ.update(values)
    return values


def _instance_template(name: str) -> Path:
    for base in (REPO_ROOT, Path.cwd()):
        path = base / name
        if path.exists():
            return path
    raise FileNotFoundError(f"{name} not found next to the project or in the current directory")


def write_local_instance(home: Path) -> None:
    """dagster.yaml (the local SQLite instance) in `home`, its storage under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    text = _instance_template("dagster.yaml").read_text().replace("data/dagster_home", str(home))
    (home / "dagster.yaml").write_text(text)


DEFAULT_PG_DB = "dagster"


def prepare_instance() -> str:
    """Choose the Dagster instance (CONTRACT.md §4): DAGSTER_HOME, else PostgreSQL, else local SQLite."""
    if os.environ.get("DAGSTER_HOME"):
        if not Path(os.environ["DAGSTER_HOME"]).is_dir():  # Dagster's own error was a traceback
            raise UsageError(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} is not a directory")
        return f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
    if os.environ.get("DAGSTER_PG_HOST"):
        for key, default in (("DAGSTER_PG_PORT", "5432"), ("DAGSTER_PG_USER", "postgres"),
                             ("DAGSTER_PG_PASSWORD", "postgres")):
            if not os.environ.get(key, "").strip():  # empty counts as unset (instance.pg_server agrees)
                os.environ[key] = default
        if not os.environ.get("DAGSTER_PG_DB"):
            # Dagster's own database, made on the server the first time (only DAGSTER_PG_HOST given)
            from loyalty_assets.instance import ensure_pg_database

            try:
                ensure_pg_database(DEFAULT_PG_DB)
            except Exception as exc:
                raise SystemExit(f"error: DAGSTER_PG_DB is not set and database {DEFAULT_PG_DB!r} could not be "
                                 f"created on {os.environ['DAGSTER_PG_HOST']}: {exc}".strip()) from exc
            os.environ["DAGSTER_PG_DB"] = DEFAULT_PG_DB
        home = Path("data/dagster_home_postgres").resolve()
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_instance_template("deploy/postgres/dagster.yaml"), home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        return f"PostgreSQL {os.environ['DAGSTER_PG_HOST']}:{os.environ['DAGSTER_PG_PORT']}/{os.environ['DAGSTER_PG_DB']}"
    home = Path("data/dagster_home").resolve()
    write_local_instance(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return f"SQLite {home}"


def _configured_report(resources: dict) -> list[str]:
    lines = []
    for name in ("magento", "bigcommerce", "commercetools", "sfcc", "smile", "loyaltylion", "salesforce"):
        kind = "target" if name in ("smile", "loyaltylion", "salesforce") else "source"
        resource = resources.get(name)
        if resource is None:
            state = "not supported by this version (skipped)"
        else:
            state = "configured" if resource.is_configured else "not configured (skipped)"
        lines.append(f"  {kind} {name}: {state}")
    return lines


def run_range(start: dt.date, end: dt.date) -> bool:
    """Materialize the whole graph for the inclusive range as one run; True when everything passed."""
    import dagster as dg

    instance_desc = prepare_instance()
    from loyalty_assets.defs.partitions import daily_partitions
    from loyalty_assets.defs.resources import build_resources

    resources = build_resources()
    print(f"instance: {instance_desc}")
    print("\n".join(_configured_report(resources)))
    keys = daily_partitions.get_partition_keys()
    if start.isoformat() not in keys or end.isoformat() not in keys:
        print(f"error: the range {start}..{end} is outside the partitions {keys[0]}..{keys[-1]}", file=sys.stderr)
        return False
    from loyalty_assets.definitions import defs as load_defs

    definitions = load_defs() if callable(load_defs) else load_defs
    job = definitions.resolve_job_def("loyalty_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": start.isoformat(),
                  "dagster/asset_partition_range_end": end.isoformat()},
            raise_on_error=False,
        )
    failed_checks = [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    warned = [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.WARN
    ]
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    if warned:
        print(f"  warnings: {', '.join(warned)}")
    if failed_checks:
        print(f"  blocking checks failed: {', '.join(failed_checks)}", file=sys.stderr)
    return result.success and not failed_checks


def cmd_run(args: argparse.Namespace) -> int:
    load_env_file(args.env_file)
    return 0 if run_range(args.start, args.end) else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from loyalty_assets.sandbox.generate import generate

    summary = generate(Path(args.out), customers=args.customers, days=args.days, start=args.start, seed=args.seed)
    print(f"wrote {args.out}: {summary}")
    return 0


EMPTY_BIGCOMMERCE_STORE = "sandbox1"


def cmd_sandbox(args: argparse.Namespace) -> int:
    import tempfile

    from loyalty_assets.sandbox import EMULATORS, Sandbox, serve_forever

    if args.data and not Path(args.data).is_dir():  # the emulators' loaders ended in a traceback
        raise UsageError(f"--data {args.data}: no such directory (a seed directory: loyalty generate --out DIR)")
    empty = None
    if not args.data:  # every emulator, empty (CONTRACT.md §1 names all seven), for records added at runtime
        empty = Path(tempfile.mkdtemp(prefix="loyalty-sandbox-empty-"))
        for name in EMULATORS:
            (empty / name).mkdir()
        (empty / "bigcommerce" / EMPTY_BIGCOMMERCE_STORE).mkdir()  # its one store (a store hash is a setting)
    try:
        sandbox = Sandbox(Path(args.data) if args.data else empty, Path(args.state) if args.state else None,
                          fault_rate=args.fault_rate, seed=args.seed).start()
        if args.env_file:
            sandbox.write_env_file(Path(args.env_file))
        for key, value in sandbox.env().items():
            if not any(word in key for word in ("PASSWORD", "TOKEN", "SECRET", "API_KEY", "SESSION")):
                print(f"{key}={value}")  # URLs and ids; the credentials only in --env-file
        print("ready", flush=True)
        serve_forever(sandbox)
    finally:
        if empty is not None:
            shutil.rmtree(empty, ignore_errors=True)
    return 0


def _summary(warehouse: str) -> list[str]:
    import duckdb

    conn = duckdb.connect(warehouse, read_only=True)
    try:
        q = lambda s: conn.execute(s).fetchone()  # noqa: E731
        members, spendable, pending = q("SELECT count(*), sum(points_spendable), sum(points_pending) FROM member_status")
        entries, points = q("SELECT count(*), coalesce(sum(points), 0) FROM ledger_entries")
        kinds = conn.execute("SELECT kind, count(*) FROM ledger_entries GROUP BY 1 ORDER BY 1").fetchall()
        tiers = conn.execute("SELECT vip_tier, count(*) FROM member_status GROUP BY 1 ORDER BY 2 DESC").fetchall()
        orders, = q("SELECT count(*) FROM order_facts")
        changes, = q("SELECT count(*) FROM vip_tier_changes")
        quarantine = conn.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1").fetchall()
        merges, = q("SELECT count(*) FROM member_merges")
        conflicts, = q("SELECT count(*) FROM identity_conflicts")
        as_of, = q("SELECT max(as_of) FROM member_status")
        pushes = conn.execute(
            "SELECT target || ' ' || status, count(*) FROM outbox GROUP BY 1 ORDER BY 1"
        ).fetchall()
        salesforce = conn.execute(
            "SELECT object, count(*) FROM sync_state WHERE target = 'salesforce' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        drift = conn.execute(
            "SELECT target, count(*), count(*) FILTER (WHERE drift <> 0), coalesce(sum(drift), 0) FROM reconciliation GROUP BY 1"
        ).fetchall()
    finally:
        conn.close()
    fmt = lambda rows: ", ".join(f"{k} {v}" for k, v in rows) or "none"  # noqa: E731
    return [
        f"  orders: {orders}   members: {members} ({merges} merges, {conflicts} identity conflicts)",
        f"  ledger: {entries} entries, {points} points ({fmt(kinds)})",
        f"  balances as of {as_of}: {spendable or 0} spendable, {pending or 0} pending",
        f"  tiers: {fmt(tiers)}; {changes} tier changes",
        f"  quarantine: {fmt(quarantine)}",
        f"  pushes: {fmt(pushes)}",
        f"  salesforce records in sync: {fmt(salesforce)}",
        "  reconciliation: " + (", ".join(f"{t} {n} members compared, {d} with drift ({p:+d} points)"
                                          for t, n, d, p in drift) or "not run"),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from loyalty_assets.lib.warehouse import warehouse_path
    from loyalty_assets.sandbox import Sandbox
    from loyalty_assets.sandbox.generate import generate

    started = time.monotonic()
    seed_dir = DEMO_DIR / "seed"
    if seed_dir.exists():
        shutil.rmtree(seed_dir)
    end = dt.date.today() - dt.timedelta(days=1)
    start = end - dt.timedelta(days=args.days - 1)
    summary = generate(seed_dir, customers=args.customers, days=args.days, start=start, seed=args.seed)
    print(f"generated {summary} into {seed_dir}")
    warehouse = Path(warehouse_path())
    marker = DEMO_DIR / "warehouse_is_demo"
    if marker.exists() and marker.read_text() == str(warehouse.resolve()):
        for path in (warehouse, Path(f"{warehouse}.wal")):
            path.unlink(missing_ok=True)  # a previous demo's warehouse: start clean, data were regenerated
    env_file = Path(args.env_file or DEMO_DIR / "sandbox.env")
    with Sandbox(seed_dir).start() as sandbox:
        sandbox.write_env_file(env_file)
        os.environ.update(sandbox.env())
        print(f"sandbox emulators running; settings in {env_file}")
        ok = run_range(max(start, _program_start()), end)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(warehouse.resolve()))
    print("summary:")
    print("\n".join(_summary(str(warehouse))))
    print(f"  checks: {'all blocking checks passed' if ok else 'FAILED'}   time: {time.monotonic() - started:.0f}s")
    print(
        "open the UI on this data:\n"
        f"  loyalty sandbox --data {seed_dir} --env-file {env_file} &\n"
        f"  set -a; . {env_file}; set +a; dagster dev   # from the repo root"
    )
    return 0 if ok else 1


def cmd_explain(args: argparse.Namespace) -> int:
    import duckdb

    from loyalty_assets.lib.support import MemberNotFound, explain
    from loyalty_assets.lib.warehouse import warehouse_path

    path = warehouse_path()
    if not Path(path).is_file():
        print(f"error: no warehouse at {path} (LOYALTY_WAREHOUSE): nothing has been run there yet", file=sys.stderr)
        return 1
    conn = duckdb.connect(path, read_only=True)
    try:
        print(explain(conn, args.email))
        return 0
    except MemberNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()


def cmd_forget(args: argparse.Namespace) -> int:
    from loyalty_assets.lib.program import load_program
    from loyalty_assets.lib.support import MemberNotFound, forget
    from loyalty_assets.lib.warehouse import connect

    conn = connect()
    try:
        erasure = forget(conn, args.email, load_program().program_id)
    except MemberNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"member {erasure.member_id} pseudonymized as {erasure.pseudonym}")
    print("rows rewritten: " + ", ".join(f"{t} {n}" for t, n in erasure.rows_rewritten.items()))
    print(f"deletion requests queued for the targets: {erasure.deletions_queued}")
    return 0


def _program_start() -> dt.date:
    from loyalty_assets.lib.program import load_program

    return load_program().start_date


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty", description="Loyalty points ledger and VIP tiers on Dagster + DuckDB.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate demo data, start the emulators, run the whole graph, print a summary")
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-file")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="write a seed directory of native-shaped payloads")
    p.add_argument("--out", required=True)
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--start", type=_date)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sandbox", help="serve the local emulators until SIGTERM/SIGINT")
    p.add_argument("--data")
    p.add_argument("--state")
    p.add_argument("--env-file")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("explain", help="where did my points go? a member's identities, balance, tier and every entry")
    p.add_argument("email")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("forget", help="right to erasure: pseudonymize a member's personal data in the warehouse")
    p.add_argument("email")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("bench", help="the performance benchmark: stages timed against a single-pass DuckDB baseline")
    from loyalty_assets import bench

    bench.add_arguments(p)
    p.set_defaults(func=bench.main)

    p = sub.add_parser("run", help="materialize the whole graph for an inclusive range of days")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--env-file")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "start", None) and getattr(args, "end", None) and args.end < args.start:
        print("error: --end is before --start", file=sys.stderr)
        return 2
    from loyalty_assets.lib.program import ProgramConfigError

    try:
        return args.func(args)
    except (ProgramConfigError, UsageError) as exc:  # RULES.md §1: a clear error naming the key, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
