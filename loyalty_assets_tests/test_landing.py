"""Backfill from export files (issue 3 item 8): the CONTRACT.md §2 layout dropped under the landing
directory is loaded without any API; the landing sensor notices new files and requests ONE run for the
range of days they cover; the result equals what the APIs give for the same data; a broken file is
quarantined, not fatal; files already loaded are not loaded twice."""

import datetime as dt
import json
import os
import shutil

import dagster as dg
import duckdb
from conftest import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    location_definitions,
    materialize_range,
    sandbox_resources,
)

from loyalty_assets.sandbox import Sandbox
from loyalty_assets.sandbox.generate import generate

NOW = dt.datetime(2024, 3, 8, 12, tzinfo=dt.UTC)


def rows(path, sql: str) -> list[tuple]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def balances(path) -> list[tuple]:
    return rows(path, "SELECT member_id, points_spendable, points_pending, vip_tier FROM member_status ORDER BY 1")


def entries(path) -> list[tuple]:
    return rows(path, "SELECT kind, sum(points) FROM ledger_entries GROUP BY kind ORDER BY kind")


def test_landing_files_give_the_same_ledger_as_the_apis(tmp_path, isolated_env, monkeypatch):
    seed = tmp_path / "seed"
    generate(seed, customers=12, days=4, start=dt.date(2024, 3, 1), seed=5)
    with Sandbox(seed, now=NOW) as box:
        resources = sandbox_resources(box, tmp_path / "api.duckdb", monkeypatch)
        assert materialize_range("2024-03-01", "2024-03-05", resources).success
    for name in [k for k in dict(os.environ) if k.split("_")[0] in
                 ("MAGENTO", "BIGCOMMERCE", "COMMERCETOOLS", "SFCC", "SMILE", "LOYALTYLION", "SALESFORCE")]:
        monkeypatch.delenv(name)

    landing = tmp_path / "landing"
    shutil.copytree(seed, landing)
    (landing / "magento" / "orders" / "broken.json").write_text("{not json")
    monkeypatch.setenv("LOYALTY_LANDING_DIR", str(landing))
    monkeypatch.setenv("LOYALTY_FX_FILE", str(landing / "fx_rates.csv"))

    defs = location_definitions()
    sensor = defs.resolve_sensor_def("landing_files_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        result = sensor.evaluate_tick(context)
        assert len(result.run_requests) == 1  # the whole history is one run, not one per day
        request = result.run_requests[0]
        # the first and last modification day in the files (a payment of the generated data is modified on 03-05)
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-03-01", "2024-03-05")
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor))
        assert not again.run_requests

    from loyalty_assets.defs.resources import Warehouse, build_resources

    resources = {**build_resources(), "warehouse": Warehouse(database=str(tmp_path / "landing.duckdb"))}
    assert materialize_range(request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG], resources).success
    assert balances(tmp_path / "landing.duckdb") == balances(tmp_path / "api.duckdb")
    # the loyalty platforms' and Salesforce's files too (CONTRACT.md §2): redemptions, referrals and
    # adjustment requests give the same entries as their pulls (and the same balances above)
    assert entries(tmp_path / "landing.duckdb") == entries(tmp_path / "api.duckdb")
    assert {"redeem", "manual"} <= {kind for kind, _ in entries(tmp_path / "api.duckdb")}
    conn = duckdb.connect(str(tmp_path / "landing.duckdb"), read_only=True)
    reasons = [r[0] for r in conn.execute("SELECT detail FROM quarantine WHERE source = 'magento.orders'").fetchall()]
    loaded = conn.execute("SELECT count(*) FROM landing_files").fetchone()[0]
    conn.close()
    assert any("broken.json" in r for r in reasons)
    # a second run loads nothing again
    assert materialize_range("2024-03-05", "2024-03-05", resources).success
    conn = duckdb.connect(str(tmp_path / "landing.duckdb"), read_only=True)
    assert conn.execute("SELECT count(*) FROM landing_files").fetchone()[0] == loaded
    conn.close()
    assert json.loads(result.cursor)  # the cursor names the files seen


def test_landed_adjustment_requests_are_read_in_status_new_only(tmp_path):
    """RULES.md §9: requests in status New are read, validated and booked. An export also holds
    requests decided before (Applied, Rejected): those are not landed, so never booked again."""
    from loyalty_assets.lib import warehouse
    from loyalty_assets.lib.landing import load_landing
    from loyalty_assets.lib.program import parse_program

    folder = tmp_path / "landing" / "salesforce" / "Loyalty_Adjustment_Request__c"
    folder.mkdir(parents=True)
    folder.joinpath("export.json").write_text(json.dumps([
        {"Id": f"a0A00000000000{n}AAA", "Contact__c": "003000000000001AAA", "Points__c": 100, "Reason__c": "Goodwill",
         "Status__c": status, "LastModifiedDate": "2024-03-02T09:00:00.000+0000"}
        for n, status in enumerate(("New", "Applied", "Rejected", "Processing"))]))
    with warehouse.connect(str(tmp_path / "w.duckdb")) as conn:
        load_landing(conn, parse_program("{}"), tmp_path / "landing")
        assert conn.execute("SELECT record_id FROM raw_records WHERE source = 'salesforce.adjustment_requests'"
                            ).fetchall() == [("a0A000000000000AAA",)]


def test_a_record_json_cannot_store_or_a_file_nested_too_deep_is_quarantined_not_fatal(tmp_path):
    """Bad input gets a quarantine row with a reason, never a crash of the whole load: a record with
    NaN (which Python's json reads) or a lone surrogate (which DuckDB's JSON refuses) stopped every
    load of the landing directory, the good files after it with it; so did a file nested too deep."""
    from loyalty_assets.lib import warehouse
    from loyalty_assets.lib.landing import load_landing
    from loyalty_assets.lib.program import parse_program

    folder = tmp_path / "landing" / "magento" / "orders"
    folder.mkdir(parents=True)
    good = '{"entity_id": 3, "updated_at": "2024-02-01 10:00:00", "subtotal": 10}'
    folder.joinpath("a.json").write_text(
        '[{"entity_id": 1, "updated_at": "2024-02-01 10:00:00", "subtotal": NaN}, '
        '{"entity_id": 2, "updated_at": "2024-02-01 10:00:00", "customer_email": "\\ud800@x.com"}, ' + good + "]")
    folder.joinpath("b.json").write_text("[" + "[" * 5000 + "]" * 5000 + "]")
    folder.joinpath("c.json").write_text('[{"entity_id": 4, "updated_at": "2024-02-01 11:00:00", "subtotal": 20}]')
    with warehouse.connect(str(tmp_path / "w.duckdb")) as conn:
        result = load_landing(conn, parse_program("{}"), tmp_path / "landing")
        assert (result.new_versions, result.bad_files) == (2, 1)
        assert conn.execute("SELECT record_id FROM raw_records ORDER BY 1").fetchall() == [("3",), ("4",)]
        quarantined = conn.execute("SELECT record_key, reason, detail FROM quarantine ORDER BY 1").fetchall()
        assert [(k.rsplit("/", 1)[-1], r) for k, r, _ in quarantined] == [
            ("a.json#0", "malformed_record"), ("a.json#1", "malformed_record"), ("b.json", "malformed_record")]
        assert all("cannot be stored as JSON" in d for _, _, d in quarantined[:2]) and "landing file" in quarantined[2][2]
