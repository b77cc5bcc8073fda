"""Contract: the shape of the code location `loyalty_assets` (DESIGN.md §3, STYLE.md, issue 2
items 1, 7 and 9).

A snapshot of what `dagster dev` shows and what materialization history is keyed by: asset keys and
their groups, the checks on each asset and which of them block, the jobs, schedules and sensors.
Renaming any of them orphans history, so a rename must fail here. Also: every step that opens the
DuckDB warehouse is in the `duckdb` pool, every partitioned asset runs a range as one run, and the
location loads under the name `loyalty_assets` from both workspace.yaml and pyproject's [tool.dg].
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import location_definitions

REPO = Path(__file__).resolve().parents[1]

EXPECTED_GROUPS = {
    "identity_conflicts": "identity",
    "ledger_entries": "ledger",
    "ledger_journal": "ledger",
    "loyaltylion_points_push": "sync",
    "member_keys": "identity",
    "member_merges": "identity",
    "member_status": "tiers",
    "order_facts": "money",
    "order_versions": "money",
    "program_versions": "ledger",
    "quarantine": "money",
    "raw_bigcommerce_customers": "ingest",
    "raw_bigcommerce_orders": "ingest",
    "raw_bigcommerce_refunds": "ingest",
    "raw_commercetools_customers": "ingest",
    "raw_commercetools_orders": "ingest",
    "raw_commercetools_payments": "ingest",
    "raw_landing_files": "ingest",
    "raw_magento_creditmemos": "ingest",
    "raw_magento_customers": "ingest",
    "raw_magento_orders": "ingest",
    "raw_loyaltylion_activities": "ingest",
    "raw_loyaltylion_customers": "ingest",
    "raw_loyaltylion_transactions": "ingest",
    "raw_salesforce_adjustment_requests": "ingest",
    "raw_salesforce_contacts": "ingest",
    "raw_salesforce_leads": "ingest",
    "raw_sfcc_orders": "ingest",
    "raw_smile_customers": "ingest",
    "raw_smile_points_transactions": "ingest",
    "raw_smile_referrals": "ingest",
    "raw_smile_reward_fulfillments": "ingest",
    "reconciliation": "sync",
    "salesforce_push": "sync",
    "smile_points_push": "sync",
    "vip_tier_changes": "tiers",
}

# asset -> {check name: blocking}
EXPECTED_CHECKS = {
    "ledger_journal": {"entry_ids_unique": True, "order_entries_sum_to_value": True},
    "member_status": {"balances_equal_entry_sums": True, "no_negative_spendable": False},
    "order_facts": {"money_totals_add_up": False},
    "order_versions": {"raw_versions_accounted_for": False},
    "quarantine": {"quarantine_rate": False},
    "reconciliation": {"reconciliation_drift": False},
    "smile_points_push": {"outbox_age": False},
    "raw_bigcommerce_customers": {"raw_count_matches_api_total": False},
    "raw_bigcommerce_orders": {"raw_count_matches_api_total": False},
    "raw_bigcommerce_refunds": {"raw_count_matches_api_total": False},
    "raw_commercetools_customers": {"raw_count_matches_api_total": False},
    "raw_commercetools_orders": {"raw_count_matches_api_total": False},
    "raw_commercetools_payments": {"raw_count_matches_api_total": False},
    "raw_magento_creditmemos": {"raw_count_matches_api_total": False},
    "raw_magento_customers": {"raw_count_matches_api_total": False},
    "raw_magento_orders": {"raw_count_matches_api_total": False},
    "raw_sfcc_orders": {"raw_count_matches_api_total": False},
}


@pytest.fixture(scope="module")
def repo() -> dg.RepositoryDefinition:
    return location_definitions().get_repository_def()


def test_asset_keys_and_groups(repo) -> None:
    graph = repo.asset_graph
    actual = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert dict(sorted(actual.items())) == EXPECTED_GROUPS


def test_checks_per_asset_and_which_block(repo) -> None:
    graph = repo.asset_graph
    actual: dict[str, dict[str, bool]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        actual.setdefault(check_key.asset_key.to_user_string(), {})[check_key.name] = spec.blocking
    assert actual == EXPECTED_CHECKS


def test_jobs_schedules_and_sensors(repo) -> None:
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == ["loyalty_job"]
    assert sorted(s.name for s in repo.schedule_defs) == ["daily_loyalty_schedule"]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "bigcommerce_delta_sensor",
        "commercetools_delta_sensor",
        "landing_files_sensor",
        "magento_delta_sensor",
        "sfcc_delta_sensor",
    ]
    job = repo.get_job("loyalty_job")
    # The whole graph, in one process (DESIGN.md §3: speed on 2 cores, one DuckDB writer).
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(EXPECTED_GROUPS)
    assert job.executor_def.name == "in_process"
    assert job.partitions_def is not None


def _asset_steps() -> list[dg.AssetsDefinition]:
    return list(location_definitions().assets)


def test_every_asset_that_writes_the_warehouse_is_in_the_duckdb_pool() -> None:
    writers = [a for a in _asset_steps() if "warehouse" in a.required_resource_keys]
    assert {k.to_user_string() for a in writers for k in a.keys} == set(EXPECTED_GROUPS)
    assert {a.node_def.name: a.node_def.pool for a in writers} == {a.node_def.name: "duckdb" for a in writers}


def test_every_check_that_opens_the_warehouse_read_write_is_in_the_duckdb_pool() -> None:
    """Checks open the warehouse through Warehouse.connect(), which opens the file read-write and
    runs the schema DDL: a second writer process. Outside the pool such a check collides with an
    asset step of a concurrent run (DuckDB allows one writer process) and fails the run."""
    checks = [c for c in location_definitions().asset_checks if "warehouse" in c.required_resource_keys]
    assert checks
    assert {c.node_def.name: c.node_def.pool for c in checks} == {c.node_def.name: "duckdb" for c in checks}


def test_every_partitioned_asset_runs_a_range_as_one_run() -> None:
    for asset in _asset_steps():
        assert asset.partitions_def is not None, asset.node_def.name
        assert asset.backfill_policy == dg.BackfillPolicy.single_run(), asset.node_def.name


def test_one_daily_partitions_definition_in_the_program_timezone() -> None:
    from loyalty_assets.defs.partitions import daily_partitions

    partitions = {a.partitions_def for a in _asset_steps()}
    assert partitions == {daily_partitions}
    assert daily_partitions.timezone == "UTC"
    assert daily_partitions.get_first_partition_key() == "2024-01-01"


def test_location_name_is_the_same_in_workspace_yaml_and_pyproject() -> None:
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    locations = [
        (entry["python_module"]["module_name"], entry["python_module"]["location_name"])
        for entry in workspace["load_from"]
    ]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert locations == [("loyalty_assets.definitions", "loyalty_assets")]
    assert project["code_location_name"] == "loyalty_assets"
    assert project["code_location_target_module"] == "loyalty_assets.definitions"


def test_dagster_definitions_validate_loads_the_workspace(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAGENTO_", "DAGSTER_PG_"))}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Validation successful for code location loyalty_assets" in output
    # Unconfigured sources are skipped, never a load error; nothing written into the cwd.
    assert not list(tmp_path.glob(".tmp_dagster_home_*"))


def test_warehouse_sessions_draw_no_progress_bar(tmp_path: Path) -> None:
    """DuckDB draws a progress bar for a statement over 2 s into a piped stdout (a run worker's, whose
    output the step's log captures); every session that writes the warehouse, the resource's and the
    library's, turns it off. Checked in a fresh process: under pytest's capture DuckDB draws none."""
    import subprocess
    import sys

    code = (
        "import sys; from loyalty_assets.defs.resources import Warehouse; from loyalty_assets.lib import warehouse\n"
        "q = \"SELECT current_setting('enable_progress_bar')\"\n"
        "with Warehouse(database=sys.argv[1]).connect() as c: print(c.execute(q).fetchall())\n"
        "c = warehouse.connect(sys.argv[1]); print(c.execute(q).fetchall()); c.close()\n"
        "import duckdb; print(duckdb.connect().execute(q).fetchall())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.duckdb")], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == ["[(False,)]", "[(False,)]", "[(True,)]"]  # the last: DuckDB's own default, kept elsewhere


def test_endpoints_and_credentials_are_read_through_envvar(monkeypatch) -> None:
    """CONTRACT.md §4: endpoints and credentials reach the resources as dagster.EnvVar (resolved when a
    run starts, never baked into the definitions or shown in the UI's config); the Salesforce instance,
    login URL and CA bundle were read from os.environ."""
    import dagster as dg

    from loyalty_assets.defs.resources import build_resources

    names = {"magento": {"base_url": "MAGENTO_BASE_URL", "access_token": "MAGENTO_ACCESS_TOKEN"},
             "bigcommerce": {"api_url": "BIGCOMMERCE_API_URL", "access_token": "BIGCOMMERCE_ACCESS_TOKEN"},
             "commercetools": {"api_url": "COMMERCETOOLS_API_URL", "auth_url": "COMMERCETOOLS_AUTH_URL",
                               "client_id": "COMMERCETOOLS_CLIENT_ID", "client_secret": "COMMERCETOOLS_CLIENT_SECRET"},
             "sfcc": {"api_url": "SFCC_API_URL", "access_token": "SFCC_ACCESS_TOKEN"},
             "smile": {"api_url": "SMILE_API_URL", "api_key": "SMILE_API_KEY"},
             "loyaltylion": {"api_url": "LOYALTYLION_API_URL", "api_key": "LOYALTYLION_API_KEY"},
             "salesforce": {"instance_url": "SALESFORCE_INSTANCE_URL", "login_url": "SALESFORCE_LOGIN_URL",
                            "ca_bundle": "SALESFORCE_CA_BUNDLE", "session_id": "SALESFORCE_SESSION_ID",
                            "client_id": "SALESFORCE_CLIENT_ID", "client_secret": "SALESFORCE_CLIENT_SECRET",
                            "username": "SALESFORCE_USERNAME", "password": "SALESFORCE_PASSWORD"}}
    for fields in names.values():
        for variable in fields.values():
            monkeypatch.setenv(variable, f"value-of-{variable.lower()}")
    resources = build_resources()
    for key, fields in names.items():
        for field, variable in fields.items():
            value = getattr(resources[key], field)
            assert isinstance(value, dg.EnvVar) and value == variable, (key, field, value)
