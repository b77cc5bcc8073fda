"""`loyalty bench` at a tiny scale: it runs, its report has every field, and it agrees with the baseline."""

from __future__ import annotations

import argparse
import json

import pytest

from loyalty_assets import bench

CONTRACT_KEYS = (
    "baseline_seconds", "total_seconds", "ratio_total_to_baseline", "peak_rss_bytes", "stages",
    "incremental_seconds_small", "incremental_seconds_large", "incremental_ratio",
)  # fmt: skip
STAGES = ["normalize", "identity", "facts", "ledger", "tiers", "member_status", "push_prep"]


@pytest.fixture(autouse=True)
def _default_program(monkeypatch):
    monkeypatch.delenv("LOYALTY_PROGRAM_FILE", raising=False)
    monkeypatch.delenv("LOYALTY_FX_FILE", raising=False)


def _check_report(report: dict) -> None:
    for key in CONTRACT_KEYS:
        assert key in report, key
    assert report["baseline_seconds"] > 0
    assert report["total_seconds"] > 0
    assert report["ratio_total_to_baseline"] > 0
    assert 50 * 2**20 < report["peak_rss_bytes"] < 8 * 2**30
    assert [s["name"] for s in report["stages"]] == STAGES
    for stage in report["stages"]:
        assert stage["seconds"] > 0, stage["name"]
        assert stage["ratio_to_baseline"] > 0, stage["name"]
        assert stage["peak_rss_bytes"] > 0, stage["name"]
    assert report["total_seconds"] == pytest.approx(sum(s["seconds"] for s in report["stages"]), abs=1e-3)
    assert report["ratio_total_to_baseline"] == pytest.approx(
        report["total_seconds"] / report["baseline_seconds"], rel=0.01
    )
    assert report["incremental_seconds_small"] > 0
    assert report["incremental_seconds_large"] > 0
    assert report["incremental_ratio"] == pytest.approx(
        report["incremental_seconds_large"] / report["incremental_seconds_small"], rel=0.01
    )
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["duckdb_threads"] == 2 and report["machine"]["duckdb_memory_limit"] == "4GB"


def test_bench_without_refunds_agrees_with_the_baseline(tmp_path):
    """No credit memos: the warehouse's earned points equal the single-pass baseline, shopper by shopper."""
    out = tmp_path / "bench.json"
    report = bench.run_bench(
        300, 60, 5, ["magento"], out, tmp_path / "work", memo_rate=0.0, print_table=False
    )
    written = json.loads(out.read_text())
    _check_report(written)
    assert written["sizes"]["orders"] == 300 and written["sizes"]["members"] == 60
    assert written["sizes"]["credit_memos"] == 0
    assert written["sizes"]["order_versions"] > 300  # some orders have 2-3 versions
    assert written["baseline"]["points"] > 0
    assert written["pipeline"]["earned_points"] == written["baseline"]["points"]
    assert written["pipeline"]["shoppers_disagreeing_with_baseline"] == 0
    assert written["baseline"]["shoppers"] == written["pipeline"]["members"] == 60
    assert written["incremental"]["changed_orders"] == 30
    assert report["baseline_seconds"] == written["baseline_seconds"]


def test_bench_command_with_credit_memos(tmp_path, capsys):
    """Through `main` as `loyalty bench` calls it: prints the table, writes the JSON; refunds lower the points."""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(
        [
            "--orders",
            "300",
            "--members",
            "60",
            "--days",
            "5",
            "--platforms",
            "magento",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ]
    )
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    for label in (
        "baseline (single query)",
        "raw -> facts (normalize)",
        "ledger (book_through)",
        "push preparation",
        "TOTAL",
        "incremental day",
        "only Magento",
    ):
        assert label in printed
    report = json.loads(out.read_text())
    _check_report(report)
    assert report["sizes"]["credit_memos"] == 15
    assert 0 < report["pipeline"]["earned_points"] < report["baseline"]["points"]


def test_bench_refuses_unsupported_platforms(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--orders", "100", "--platforms", "magento,sfcc", "--workdir", str(tmp_path)])
    assert bench.main(args) == 2
    assert "sfcc" in capsys.readouterr().err
