"""Fault and crash tolerance of the sync (issue 4, "Done means"): with 20% injected faults on every
emulator (429, 5xx, slow responses and responses lost after the write was applied), a generated
multi-platform range ends with the same Smile.io and LoyaltyLion balances, the same Salesforce field
values (but Loyalty_Synced_At__c) and the same outbox states as a fault-free run: nothing sent twice,
nothing missing. A pusher killed at random points and run again converges to the same state too."""

import datetime as dt
import multiprocessing
import random

import duckdb
import pytest
from conftest import materialize_range, sandbox_resources

from loyalty_assets.sandbox import Sandbox
from loyalty_assets.sandbox.generate import generate

NOW = dt.datetime(2024, 3, 8, 12, tzinfo=dt.UTC)
START, END = "2024-03-01", "2024-03-04"
FAULTS = {"429": 1.0, "500": 1.0, "503": 1.0, "slow": 0.5, "drop": 2.0}


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed")
    generate(out, customers=16, days=4, start=dt.date(2024, 3, 1), seed=7)
    return out


def final_state(box: Sandbox, warehouse) -> dict:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        outbox = sorted(conn.execute("SELECT target, member_id, points, status FROM outbox").fetchall())
        entries_sent = conn.execute(
            """SELECT oe.target, oe.entry_id, count(*) FROM outbox_entries oe GROUP BY ALL HAVING count(*) > 1"""
        ).fetchall()
    finally:
        conn.close()
    contacts = sorted(
        (c["Loyalty_Member_Id__c"], {k: v for k, v in c.items() if k.startswith("Loyalty_") and k != "Loyalty_Synced_At__c"})
        for c in box.salesforce.records("Contact") if c.get("Loyalty_Member_Id__c")
    )
    return {
        "smile": {c["id"]: box.smile.balance(c["id"]) for c in box.smile.customers()},
        "smile_ours": sorted((t["customer_id"], t["points_change"]) for t in box.smile.transactions() if t.get("internal_note")),
        "loyaltylion": sorted((c["merchant_id"], c["points_approved"]) for c in box.loyaltylion.customers()),
        "contacts": contacts,
        "transactions": sorted(t["Transaction_Id__c"] for t in box.salesforce.records("Loyalty_Transaction__c")),
        "outbox": outbox,
        "entries_in_two_batches": entries_sent,
    }


def open_batches(warehouse) -> int:
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        return conn.execute("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending', 'failed')").fetchone()[0]
    finally:
        conn.close()


def test_twenty_percent_faults_end_in_the_fault_free_state(seed, tmp_path, isolated_env, monkeypatch):
    monkeypatch.setenv("LOYALTY_SYNC_SETTLE_SECONDS", "0")  # the emulator's slow answers take 0.05 s
    with Sandbox(seed, now=NOW) as clean:
        assert materialize_range(START, END, sandbox_resources(clean, tmp_path / "clean.duckdb", monkeypatch)).success
        expected = final_state(clean, tmp_path / "clean.duckdb")
    assert expected["smile_ours"] and expected["contacts"]

    with Sandbox(seed, now=NOW, seed=3) as box:
        for emulator in box.emulators.values():
            emulator.faults.configure_rate(0.2, kinds=FAULTS, slow_seconds=0.05, retry_after=0.05, seed=11)
        resources = sandbox_resources(box, tmp_path / "faulty.duckdb", monkeypatch)
        for _ in range(6):  # a run may end with uncertain batches: the next one settles them
            materialize_range(START, END, resources)
            if open_batches(tmp_path / "faulty.duckdb") == 0:
                break
        injected = {name: sum(e.faults.injected.values()) for name, e in box.emulators.items()}
        drops = sum(e.faults.injected["rate:drop"] for e in box.emulators.values())
        for emulator in box.emulators.values():
            emulator.faults.clear()
        materialize_range(END, END, resources)
        got = final_state(box, tmp_path / "faulty.duckdb")
    assert all(n > 0 for n in injected.values()), injected  # every emulator misbehaved
    assert drops > 0
    assert got == expected


def _push_and_die(seed, warehouse, kill_after: float, env) -> None:
    """A child process: run the range against the emulators at `env`, killed by the parent."""
    import os

    os.environ.update(env)
    from loyalty_assets.defs.resources import build_resources

    resources = build_resources()
    resources["warehouse"] = resources["warehouse"].model_copy(update={"database": str(warehouse)})
    materialize_range(START, END, resources)


@pytest.mark.parametrize("trial", range(2))
def test_killed_pusher_converges_without_duplicates(seed, tmp_path, isolated_env, monkeypatch, trial):
    monkeypatch.setenv("LOYALTY_SYNC_SETTLE_SECONDS", "0")  # a killed pusher's requests end with it
    with Sandbox(seed, now=NOW) as clean:
        assert materialize_range(START, END, sandbox_resources(clean, tmp_path / "clean.duckdb", monkeypatch)).success
        expected = final_state(clean, tmp_path / "clean.duckdb")
    with Sandbox(seed, now=NOW) as box:
        warehouse = tmp_path / "crashed.duckdb"
        env = {**box.env(), "LOYALTY_WAREHOUSE": str(warehouse)}
        delay = random.Random(trial).uniform(4.0, 14.0)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_push_and_die, args=(seed, warehouse, delay, env))
        child.start()
        child.join(delay)
        if child.is_alive():
            child.kill()  # anywhere: mid-fetch, mid-booking, between a write and its outcome
            child.join()
        resources = sandbox_resources(box, warehouse, monkeypatch)
        for _ in range(3):
            materialize_range(START, END, resources)
            if open_batches(warehouse) == 0:
                break
        got = final_state(box, warehouse)
    assert got == expected
