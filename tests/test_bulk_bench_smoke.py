"""The bulk-write benchmark still runs end to end at a tiny N; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bulk_bench.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bulk_bench_reports_every_step(tmp_path: Path) -> None:
    """`bulk_bench.py -n 60` on SQLite exits 0 and reports every state step and write-back step."""
    out = tmp_path / "bulk.json"
    done = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "-n", "60", "--state", "sqlite", "--hr", "sqlite"),
            *("--postgres", "off", "--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    sqlite = result["state"]["sqlite"]
    assert set(sqlite["steps"]) == {
        "saving (new map)",
        "saving (unchanged)",
        "record_pending",
        "record_outcomes",
        "saving (all changed)",
    }
    assert set(sqlite["write_back"]["sqlite"]) == {
        "write_back (first)",
        "write_back (unchanged)",
        "write_back (1 % changed)",
    }
