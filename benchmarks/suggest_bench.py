"""The `idsync suggest` benchmark (issue 13): N employees, U of them near misses the rules miss.

    .venv/bin/python benchmarks/suggest_bench.py                      # N = 250,000, U = 5,000
    .venv/bin/python benchmarks/suggest_bench.py --people 2000 --unmatched 100   # a quick check

``idsync simulator`` runs as its own process with N generated people; the HR SQLite table has the
N - U employees whose employee number equals their person's, and U near misses whose number
differs only by leading zeros, case or a dash (unmatched without normalization), each with the
person's name (a tenth of them with one letter wrong) and a birth date. ``idsync suggest
--format csv --out FILE`` then runs as a separate process (through reconcile_bench's launcher,
so its peak RSS is its own) on a fresh state database. Printed and written to
``benchmarks/results/suggest-<time>.json``: wall time, peak RSS, CPU, and how many near misses
have their right person ranked first.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile_bench import (
    _LAUNCHER,
    IDSYNC,
    RESULTS,
    SimulatorProcess,
    idsync_env,
    machine,
    state_db,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def _near_miss(number: str, rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return "00" + number
    if kind == 1:
        return number.swapcase() if number.swapcase() != number else "0" + number
    return number[:2] + "-" + number[2:] if len(number) > 2 else "0" + number


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 3:
        return name
    i = rng.randrange(1, len(name))
    return name[:i] + rng.choice("aeiou") + name[i + 1 :]


def write_hr(
    path: Path, people: Sequence[dict[str, Any]], unmatched: int, seed: int
) -> dict[str, int]:
    """The HR table; returns each near miss's HR id -> its right person."""
    rng = random.Random(seed)
    misses = set(rng.sample(range(len(people)), unmatched))
    rows = []
    right: dict[str, int] = {}
    for i, p in enumerate(people):
        number = p.get("employeeNumber") or f"N{p['id']}"
        hr_id = f"H{i:07d}"
        first, last = p.get("firstName"), p.get("lastName")
        born = f"{1960 + rng.randrange(45)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}"
        if i in misses:
            number = _near_miss(number, rng)
            right[hr_id] = p["id"]
            if rng.random() < 0.1:
                last = _typo(last or "", rng)
        rows.append((hr_id, number, first, last, born))
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE employees (employee_id TEXT PRIMARY KEY, employee_number TEXT,"
            " badge_number TEXT, email TEXT, active INTEGER NOT NULL DEFAULT 1,"
            " first_name TEXT, last_name TEXT, birth_date TEXT)"
        )
        conn.executemany(
            "INSERT INTO employees (employee_id, employee_number, first_name, last_name,"
            " birth_date) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return right


def _phases(err_path: Path) -> dict[str, Any]:
    """The suggest.read and suggest.scored log events (JSON lines on stderr)."""
    found: dict[str, Any] = {}
    for line in err_path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and str(event.get("event", "")).startswith("suggest."):
            found[event["event"]] = {
                k: v for k, v in event.items() if k not in {"event", "timestamp", "level", "logger"}
            }
    return found


def _launch(
    command: list[str], *, env: dict[str, str], workdir: Path, label: str
) -> dict[str, Any]:
    """One idsync process through the launcher: wall, peak RSS and CPU of that process alone."""
    figures_path = workdir / f"{label}.rusage"
    subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(figures_path), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=workdir,
        check=False,
    )
    figures = json.loads(figures_path.read_text())
    return {
        "exit_code": figures["exit_code"],
        "wall_seconds": round(figures["wall_seconds"], 2),
        "max_rss_mb": round(figures["max_rss_kb"] / 1024, 1),
        "cpu_seconds": round(figures["cpu_seconds"], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=250_000)
    parser.add_argument("--unmatched", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure `idsync reconcile --dry-run --json` on the same world",
    )
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="idsync-suggest-bench-"))
    try:
        with SimulatorProcess(people=options.people, page_size=100, workdir=workdir) as sim:
            people = sim.people()
            hr_path = workdir / "hr.db"
            right = write_hr(hr_path, people, options.unmatched, options.seed)
            del people
            with state_db("sqlite", workdir=workdir, name="suggest", postgres=None) as db:
                env = idsync_env(sim=sim, db=db, hr_path=hr_path, workdir=workdir)
                env.pop("IDSYNC_HR__BADGE_NUMBER_COLUMN")
                env |= {
                    "IDSYNC_HR__FIRST_NAME_COLUMN": "first_name",
                    "IDSYNC_HR__LAST_NAME_COLUMN": "last_name",
                    "IDSYNC_HR__BIRTH_DATE_COLUMN": "birth_date",
                    "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND": "0",
                }
                report = workdir / "suggest.csv"
                figures_path = workdir / "suggest.rusage"
                err_path = workdir / "suggest.err"
                command = [shutil.which(IDSYNC) or IDSYNC, "suggest", "--out", str(report)]
                with err_path.open("wb") as err:
                    subprocess.run(
                        [sys.executable, "-c", _LAUNCHER, str(figures_path), *command],
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        env=env,
                        cwd=workdir,
                        check=False,
                    )
                figures = json.loads(figures_path.read_text())
                phases = _phases(err_path)
                dry = (
                    _launch(
                        [shutil.which(IDSYNC) or IDSYNC, "reconcile", "--dry-run", "--json"],
                        env=env,
                        workdir=workdir,
                        label="dry-run",
                    )
                    if options.compare
                    else None
                )
                first: dict[str, int] = {}
                with report.open(encoding="utf-8", newline="") as stream:
                    for row in csv.DictReader(stream):
                        if row["kind"] == "suggestion" and row["rank"] == "1":
                            first[row["hr_id"]] = int(row["protime_id"])
                hits = sum(1 for hr_id, pid in right.items() if first.get(hr_id) == pid)
                summary = [
                    line
                    for line in err_path.read_text().splitlines()
                    if "unmatched or disputed" in line
                ]
        result: dict[str, Any] = {
            "people": options.people,
            "unmatched": options.unmatched,
            "exit_code": figures["exit_code"],
            "wall_seconds": round(figures["wall_seconds"], 2),
            "max_rss_mb": round(figures["max_rss_kb"] / 1024, 1),
            "cpu_seconds": round(figures["cpu_seconds"], 2),
            "right_person_first": hits,
            "phases": phases,
            "dry_run_reconcile": dry,
            "summary": summary,
            "machine": machine(),
        }
        print(json.dumps(result, indent=1))
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        (RESULTS / f"suggest-{stamp}.json").write_text(json.dumps(result, indent=1))
        return 0 if figures["exit_code"] == 0 else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
