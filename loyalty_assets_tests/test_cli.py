"""Contract: the `loyalty` command as users and CI call it (CONTRACT.md §1, §2, §4; issue 2 items 8
and 9, "Done means").

Run as real subprocesses in a tmp working directory with no DAGSTER_HOME: `generate` writes the
seed layout deterministically; `demo` exits 0 and leaves a warehouse whose tables are non-empty and
consistent; `sandbox --env-file` prints `ready`, writes the contract's variables and stops on
SIGTERM; `run --env-file` against it gives every member the balance the rules imply, as one run,
and an identical second run adds no ledger rows; a warehouse path in a directory that does not
exist yet works.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import write_seed
from magento_factory import memo, order

LOYALTY = str(Path(sys.executable).parent / "loyalty")
ENV_KEYS = {"MAGENTO_BASE_URL", "MAGENTO_ADMIN_USERNAME", "MAGENTO_ADMIN_PASSWORD", "MAGENTO_TENANT"}


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAGENTO_", "DAGSTER_", "LOYALTY_", "BIGCOMMERCE_", "SMILE_", "SALESFORCE_"))
    }
    env["LOYALTY_WAREHOUSE"] = str(tmp_path / "loyalty.duckdb")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


def loyalty(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run([LOYALTY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _q(warehouse: str, sql: str, params: list | None = None) -> list[tuple]:
    conn = duckdb.connect(warehouse, read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


def test_generate_writes_the_seed_layout_deterministically(tmp_path: Path, cwd: Path, cli_env) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        proc = loyalty(
            [
                "generate",
                "--out",
                str(out),
                "--customers",
                "15",
                "--days",
                "4",
                "--start",
                "2024-03-01",
                "--seed",
                "7",
            ],
            cwd,
            cli_env,
        )
        assert proc.returncode == 0, proc.stderr
    for entity in ("orders", "creditmemos", "customers"):
        files = sorted((outs[0] / "magento" / entity).glob("*.json"))
        assert files, f"no magento/{entity}/*.json"
        records = [r for f in files for r in json.loads(f.read_text())]
        assert records and all(isinstance(r, dict) for r in records)
        for f in files:
            assert f.read_bytes() == (outs[1] / f.relative_to(outs[0])).read_bytes(), (
                f"{f} differs for one seed"
            )
    orders = [r for f in (outs[0] / "magento" / "orders").glob("*.json") for r in json.loads(f.read_text())]
    days = {str(r.get("updated_at", ""))[:10] for r in orders if isinstance(r.get("updated_at"), str)}
    assert days and min(days) >= "2024-03-01"
    assert list(cwd.iterdir()) == [], "generate wrote into the working directory"


def test_demo_end_to_end_leaves_a_consistent_warehouse(cwd: Path, cli_env) -> None:
    started = time.monotonic()
    proc = loyalty(["demo", "--customers", "40", "--days", "10"], cwd, cli_env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - started < 120
    assert "all blocking checks passed" in proc.stdout
    wh = cli_env["LOYALTY_WAREHOUSE"]

    counts = {
        t: _q(wh, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("ledger_entries", "member_status", "vip_tier_changes", "order_facts", "quarantine")
    }
    assert all(counts[t] > 0 for t in ("ledger_entries", "member_status", "order_facts", "quarantine")), (
        counts
    )

    # Balances equal the sum of each member's entries; nothing is booked for an unknown member.
    mismatched = _q(
        wh,
        """
        SELECT s.member_id, s.points_spendable + s.points_pending, coalesce(sum(e.points), 0)
        FROM member_status s LEFT JOIN ledger_entries e USING (member_id)
        GROUP BY 1, 2 HAVING s.points_spendable + s.points_pending <> coalesce(sum(e.points), 0)""",
    )
    assert mismatched == []
    assert _q(
        wh, "SELECT count(*) FROM ledger_entries WHERE member_id NOT IN (SELECT member_id FROM member_status)"
    ) == [(0,)]
    assert (
        _q(wh, "SELECT count(*), count(DISTINCT entry_id) FROM ledger_entries")[0]
        == (counts["ledger_entries"],) * 2
    )
    # Every order entry belongs to a known order, and each order's entries add up to its value
    # (net eligible spend at 1 point per dollar, floored) unless it is canceled or refunded.
    assert _q(
        wh, "SELECT count(*) FROM ledger_entries WHERE order_key NOT IN (SELECT order_key FROM order_facts)"
    ) == [(0,)]
    wrong = _q(
        wh,
        """
        SELECT f.order_key, f.lifecycle, f.net_eligible_program_minor, sum(e.points)
        FROM order_facts f JOIN ledger_entries e USING (order_key)
        GROUP BY ALL
        HAVING sum(e.points) <> CASE WHEN f.lifecycle IN ('paid', 'fulfilled')
                                     THEN f.net_eligible_program_minor // 100 ELSE 0 END""",
    )
    assert wrong == []
    tiers = {t for (t,) in _q(wh, "SELECT DISTINCT vip_tier FROM member_status")}
    assert tiers <= {"Bronze", "Silver", "Gold"}
    if counts["vip_tier_changes"]:
        assert _q(
            wh,
            "SELECT count(*) FROM vip_tier_changes WHERE member_id NOT IN (SELECT member_id FROM member_status)",
        ) == [(0,)]
    reasons = {r for (r,) in _q(wh, "SELECT DISTINCT reason FROM quarantine")}
    assert all(r and r == r.lower() and " " not in r for r in reasons)
    assert _q(wh, "SELECT count(*) FROM quarantine WHERE detail = '' OR detail IS NULL") == [(0,)]
    _identity_rebuilt_both_ways(Path(wh), cwd)


def _identity_rebuilt_both_ways(wh: Path, tmp: Path) -> None:
    """Every platform's keys (Smile, LoyaltyLion, Salesforce, four shops): identity rebuilt from all
    records gives the same members, merges and conflicts with new members' components in SQL as
    with the union-find alone, and the SQL takes keys of every kind."""
    from loyalty_assets.lib import identity, warehouse
    from loyalty_assets.lib.program import load_program

    states = []
    for in_sql in (True, False):
        copy = tmp / f"identity_{in_sql}.duckdb"
        shutil.copyfile(wh, copy)
        conn = warehouse.connect(str(copy))
        conn.execute("DELETE FROM member_keys; DELETE FROM member_merges; DELETE FROM identity_conflicts")
        identity.resolve_members(conn, load_program(), dt.date(2026, 1, 1), scoped=False, components_in_sql=in_sql)
        if in_sql:
            kinds = {k for (k,) in conn.execute("SELECT DISTINCT key_type FROM id_fast_keys").fetchall()}
            platforms = {p for (p,) in conn.execute(
                "SELECT DISTINCT split_part(key, ':', 1) FROM id_fast_keys WHERE key_type <> 'email'").fetchall()}
        states.append([conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                       for t in ("member_keys", "member_merges", "identity_conflicts")])
        conn.close()
    assert states[0] == states[1]
    assert {"email", "customer_id", "smile_customer_id", "loyaltylion_customer_id", "salesforce_id"} <= kinds
    assert {"magento", "bigcommerce", "commercetools", "sfcc"} <= platforms


def _start_sandbox(
    data: Path | None, env_file: Path, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [LOYALTY, "sandbox", *(["--data", str(data)] if data else []), "--env-file", str(env_file)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # a thread, so a blocking readline never stalls the test
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out, deadline = [], time.monotonic() + 30
    while "ready" not in out and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        out.append(line.strip())
    if "ready" not in out:
        proc.kill()
        pytest.fail("`loyalty sandbox` did not print ready within 30 s:\n" + "\n".join(out))
    return proc, "\n".join(out)


def _env_file(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )


def test_sandbox_env_file_then_run_twice_books_the_rules_balances_once(
    tmp_path: Path, cwd: Path, cli_env
) -> None:
    data = write_seed(
        tmp_path / "seed",
        orders=[
            order(
                1,
                "2024-03-04 10:00:00",
                subtotal="80.00",
                discount="5.00",
                email="ann@example.com",
                customer_id=11,
            ),
            order(2, "2024-03-04 12:00:00", subtotal="25.99", email="bob@example.com"),
            order(2, "2024-03-05 08:00:00", state="canceled", subtotal="25.99", email="bob@example.com"),
            order(3, "2024-03-05 09:00:00", subtotal="40.00", email="Ann@Example.com"),
        ],
        creditmemos=[memo(9, 1, "2024-03-06 10:00:00", subtotal="30.00")],
        customers=[
            {
                "id": 11,
                "email": "ann@example.com",
                "created_at": "2024-03-01 08:00:00",
                "updated_at": "2024-03-01 08:00:00",
            }
        ],
    )
    env_file = tmp_path / "sandbox.env"
    sandbox, printed = _start_sandbox(data, env_file, cwd, cli_env)
    try:
        values = _env_file(env_file)
        assert ENV_KEYS <= set(values), values
        assert values["MAGENTO_BASE_URL"].startswith("http://127.0.0.1:")
        # secrets go to the file, not the terminal: passwords, tokens, API keys, session ids
        assert "MAGENTO_ADMIN_PASSWORD" not in printed and "SMILE_API_KEY" not in printed
        assert "LOYALTYLION_API_KEY" not in printed and "SALESFORCE_SESSION_ID" not in printed
        assert values["SMILE_API_KEY"] not in printed and "MAGENTO_BASE_URL=" in printed

        wh = cli_env["LOYALTY_WAREHOUSE"]
        first = loyalty(
            ["run", "--start", "2024-03-04", "--end", "2024-03-06", "--env-file", str(env_file)], cwd, cli_env
        )
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "source magento: configured" in first.stdout
        assert [line for line in first.stdout.splitlines() if line.startswith("run ")].__len__() == 1
        journal = _q(wh, "SELECT * FROM ledger_journal ORDER BY entry_id")

        # Ann: 75 earned on 03-04, 40 on 03-05, 30 clawed back on 03-06; Bob: 25 earned then canceled.
        assert sorted(_q(wh, "SELECT email, points_spendable, points_pending FROM member_status")) == [
            ("ann@example.com", 85, 0),
            ("bob@example.com", 0, 0),
        ]
        assert _q(
            wh, "SELECT booked_on::VARCHAR, kind, points FROM ledger_entries ORDER BY booked_on, order_key"
        ) == [
            ("2024-03-04", "earn", 75),
            ("2024-03-04", "earn", 25),
            ("2024-03-05", "clawback", -25),
            ("2024-03-05", "earn", 40),
            ("2024-03-06", "clawback", -30),
        ]

        second = loyalty(
            ["run", "--start", "2024-03-04", "--end", "2024-03-06", "--env-file", str(env_file)], cwd, cli_env
        )
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert _q(wh, "SELECT * FROM ledger_journal ORDER BY entry_id") == journal
    finally:
        sandbox.send_signal(signal.SIGTERM)
        try:
            code = sandbox.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            pytest.fail("`loyalty sandbox` did not exit on SIGTERM")
    assert code == 0


def test_run_without_configured_sources_reports_them_skipped_and_succeeds(cwd: Path, cli_env) -> None:
    proc = loyalty(["run", "--start", "2024-03-04", "--end", "2024-03-04"], cwd, cli_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "source magento: not configured (skipped)" in proc.stdout


def test_a_bad_program_file_or_a_missing_fx_file_is_a_clear_error(tmp_path: Path, cwd: Path, cli_env) -> None:
    """RULES.md §1: an unknown key is a clear error naming the key (one line, no traceback); a
    LOYALTY_FX_FILE that does not exist fails the run saying so, rather than quarantining every
    foreign-currency order as no_fx_rate in silence."""
    bad = tmp_path / "program.yaml"
    bad.write_text("earning:\n  points_per_unt: 2\n")
    proc = loyalty(["run", "--start", "2024-03-04", "--end", "2024-03-04"], cwd, {**cli_env, "LOYALTY_PROGRAM_FILE": str(bad)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {bad}: invalid program configuration: earning.points_per_unt: unknown key"
    missing = tmp_path / "no_rates.csv"
    proc = loyalty(["run", "--start", "2024-03-04", "--end", "2024-03-04"], cwd, {**cli_env, "LOYALTY_FX_FILE": str(missing)})
    assert proc.returncode != 0 and f"LOYALTY_FX_FILE: no such file: {missing}" in proc.stdout + proc.stderr



def test_run_with_a_missing_env_file_or_dagster_home_is_a_clear_error(tmp_path: Path, cwd: Path, cli_env) -> None:
    """CONTRACT.md §1/§4: a setting `loyalty run` cannot start with is one line on stderr and exit 2
    (both ended in a traceback)."""
    missing = tmp_path / "nope.env"
    proc = loyalty(["run", "--start", "2024-03-04", "--end", "2024-03-04", "--env-file", str(missing)], cwd, cli_env)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"error: --env-file {missing}: no such file")
    home = tmp_path / "no_home"
    proc = loyalty(["run", "--start", "2024-03-04", "--end", "2024-03-04"], cwd, {**cli_env, "DAGSTER_HOME": str(home)})
    assert (proc.returncode, proc.stderr.strip()) == (2, f"error: DAGSTER_HOME={home} is not a directory")
    # so is a sandbox seed directory that does not exist
    seed = tmp_path / "no_seed"
    proc = loyalty(["sandbox", "--data", str(seed)], cwd, cli_env)
    assert (proc.returncode, proc.stderr.strip()) == (
        2, f"error: --data {seed}: no such directory (a seed directory: loyalty generate --out DIR)")

def test_run_rejects_a_range_outside_the_partitions(cwd: Path, cli_env) -> None:
    proc = loyalty(["run", "--start", "2023-12-30", "--end", "2024-01-02"], cwd, cli_env)
    assert proc.returncode != 0
    assert "outside the partitions" in proc.stderr


def test_warehouse_in_a_directory_that_does_not_exist_yet_is_created(
    tmp_path: Path, cwd: Path, cli_env
) -> None:
    """LOYALTY_WAREHOUSE names a file; like the default data/loyalty.duckdb it must work on a fresh
    machine where its directory does not exist yet (the resource opens it for every asset)."""
    target = tmp_path / "not" / "yet" / "loyalty.duckdb"
    code = (
        "import sys\n"
        "from loyalty_assets.defs.resources import Warehouse\n"
        "with Warehouse(database=sys.argv[1]).connect() as conn:\n"
        "    print(conn.execute('SELECT count(*) FROM ledger_journal').fetchone()[0])\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(target)],
            cwd=cwd,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"Warehouse.connect() on {target} did not return within 20 s (retrying a missing directory)"
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "0"
    assert target.exists()


def test_sandbox_without_data_serves_every_emulator_empty_and_a_run_on_it_succeeds(
    tmp_path: Path, cwd: Path, cli_env
) -> None:
    """CONTRACT.md §1: `loyalty sandbox` serves the seven APIs; without --data each starts empty (it
    served an empty Magento alone, so the env file named no target), and `loyalty run` on it reports
    every source and target configured and succeeds with nothing to book."""
    env_file = tmp_path / "sandbox.env"
    proc, _out = _start_sandbox(None, env_file, cwd, cli_env)
    try:
        settings = _env_file(env_file)
        for key in ("MAGENTO_BASE_URL", "BIGCOMMERCE_API_URL", "COMMERCETOOLS_API_URL", "SFCC_API_URL",
                    "SMILE_API_URL", "LOYALTYLION_API_URL", "SALESFORCE_INSTANCE_URL"):
            assert settings.get(key, "").startswith("http"), key
        run = subprocess.run([LOYALTY, "run", "--start", "2024-03-01", "--end", "2024-03-01", "--env-file", str(env_file)],
                             cwd=cwd, env=cli_env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "skipped" not in run.stdout.split("instance:")[1].split("summary")[0], run.stdout[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # stopped by SIGTERM, it removes its throwaway CA (a temp folder per start was left behind)
    ca = Path(settings["SALESFORCE_CA_BUNDLE"])
    assert ca.is_absolute() and not ca.exists() and not ca.parent.exists()
