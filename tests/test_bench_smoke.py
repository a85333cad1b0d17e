"""The reconcile benchmark still runs end to end (``--quick`` with tiny N); no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "reconcile_bench.py"
SCENARIOS = {
    "adaptive_30_auto",
    "adaptive_30_50",
    "adaptive_120_auto",
    "adaptive_120_50",
    "initial_rate_limited",
    "initial_unlimited",
    "steady_small",
    "steady_large",
    "change_large",
    "steady_large_latency",
}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_benchmark_completes_and_reports_every_scenario(tmp_path: Path) -> None:
    """`reconcile_bench.py --quick` with tiny N exits 0 and writes a result for every scenario."""
    out = tmp_path / "result.json"
    tiny = ["--small", "40", "--large", "80", "--naive-sample", "5", "--naive-latency-sample", "3"]
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        *tiny,
        "--postgres",
        "off",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {s["name"] for s in result["scenarios"]} == SCENARIOS
    assert all(s["runs"] == 1 for s in result["scenarios"])
    assert {"naive_40", "naive_80", "pages_40", "pages_80", "pages_80_latency_20ms"} <= set(
        result["baselines"]
    )
    change = next(s for s in result["scenarios"] if s["name"] == "change_large")
    # The one outcome the script checks that is not a timing: the change round wrote its changes.
    assert change["all_runs"][0]["writes"] == change["extra"]["expected_writes"][0]
    assert "scenario" in done.stdout  # the printed table


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_suggest_benchmark_completes_at_tiny_n(tmp_path: Path) -> None:
    """`suggest_bench.py` with tiny N exits 0 and reports every near miss; no timing is asserted."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "suggest_bench.py"),
            "--people",
            "300",
            "--unmatched",
            "20",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["people"] == 300
    assert result["phases"]["suggest.scored"]["suggestions"] == 20


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_delta_benchmark_stays_exact_at_tiny_n(tmp_path: Path) -> None:
    """`delta_bench.py` at tiny N passes its checks in one delta order: every run exact."""
    out = tmp_path / "delta.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "delta_bench.py"),
            "--n",
            "300",
            "--orders",
            "newest-first",
            "--postgres",
            "off",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text(encoding="utf-8"))
    assert all(result["checks"].values())
    assert [r["exact"] for r in result["runs"]] == [True] * 5


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_many_syncs_benchmark_runs_both_rounds_at_tiny_n(tmp_path: Path, postgres_url: str) -> None:
    """`many_syncs_bench.py` with 3 syncs x 20 employees on one replica exits 0 and reports both
    rounds: every sync ran once, the first round wrote every reference, the no-change round made
    a token and a delta request per sync; no timing is asserted."""
    out = tmp_path / "many.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "many_syncs_bench.py"),
            *("--syncs", "3", "--employees", "20", "--replicas", "1", "--lead", "3"),
            *("--postgres", postgres_url, "--json", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    first, no_change = result["rounds"]
    assert (first["round"], no_change["round"]) == ("first", "no-change")
    assert first["complete"]
    assert no_change["complete"]
    assert first["runs"] == no_change["runs"] == 3
    assert first["runs_by_status"] == no_change["runs_by_status"] == {"succeeded": 3}
    assert first["requests_by_kind"]["put_reference:201"] == 3 * 20
    assert no_change["requests_by_runs"] == no_change["requests_at_simulator"] == 3 * 2
    assert result["references_checked"]["1"]["references"] == 3 * 20
    assert {t["verdict"] for t in result["targets"]} <= {"PASS", "MISS", "-"}
    assert "| replicas | round |" in done.stdout  # the printed table
