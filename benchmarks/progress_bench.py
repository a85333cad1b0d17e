"""How often a run without a terminal says where it is: `run.progress` lines over a long run.

One run over N employees (SQLite HR and state, the simulator in-process) of which WRITES need a
reference, at the default client-side rate of 50 requests/s, so the writing phase lasts minutes
the way a first sync does. Prints the run's duration, the progress lines by phase, the largest gap
between two consecutive lines (run.start and run.finish included) and the peak RSS.

    .venv/bin/python benchmarks/progress_bench.py --people 100000 --writes 3000
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from sync.config import HRSettings, LogSettings, ProtimeSettings, Settings
from sync.logging import configure_logging
from sync.protime import ProtimeClient
from sync.reconcile import run
from sync.simulator import ClientSpec, Simulator, SimulatorConfig
from sync.state import open_database, upgrade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=3_000)
    parser.add_argument("--rate", type=float, default=50.0, help="client-side requests/s")
    parser.add_argument("--interval", type=float, default=15.0, help="IDSYNC_LOG__PROGRESS_SECONDS")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="idsync-progress-"))
    sim = Simulator(
        SimulatorConfig(
            tenant="acme",
            people=args.people,
            seed=5,
            clients=(ClientSpec("bench", "bench-secret"),),
        )
    )
    people = sim.world.people_list()
    for i, person in enumerate(people[args.writes :], start=args.writes):
        sim.world.set_reference(f"E{i:07d}", person.id)
    with sqlite3.connect(folder / "hr.db") as conn:
        conn.execute("CREATE TABLE employees (employee_id TEXT PRIMARY KEY, employee_number TEXT)")
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?)",
            [(f"E{i:07d}", p.employee_number) for i, p in enumerate(people)],
        )
    conn.close()
    state_url = f"sqlite:///{folder / 'state.db'}"
    state = open_database(state_url)
    upgrade(state)
    state.dispose()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=state_url,
        hr=HRSettings(
            url=f"sqlite:///{folder / 'hr.db'}",
            table="employees",
            employee_number_column="employee_number",
        ),
        protime=ProtimeSettings(
            base_url=sim.base_url,
            tenant="acme",
            token_url=sim.base_url + sim.token_path,
            client_id="bench",
            client_secret="bench-secret",  # noqa: S106 - the simulator's test client
            rate_limit_per_second=args.rate,
        ),
        log=LogSettings(progress_seconds=args.interval, format="json"),
    )
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    started = time.monotonic()
    result = run(
        settings=settings, protime=ProtimeClient(settings.protime, transport=sim.transport())
    )
    wall = time.monotonic() - started
    events = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "run.progress"]
    marks = [e for e in events if e["event"] in {"run.start", "run.finish", "run.progress"}]
    times = sorted(datetime.fromisoformat(e["timestamp"]).timestamp() for e in marks)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(f"status {result.status.value}, actions {result.actions_by_outcome}")
    print(
        f"people {args.people}, writes {args.writes}, rate {args.rate}/s, interval {args.interval} s"
    )
    print(
        f"run wall {wall:.1f} s; run.progress lines {len(progress)} by phase {dict(Counter(e['phase'] for e in progress))}"
    )
    print(f"largest gap between run.start / run.progress / run.finish lines: {max(gaps):.1f} s")
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (this process, simulator included)"
    )
    if progress:
        last = progress[-1]
        print(
            f"last line: phase {last['phase']} {last['done']}/{last['total']} rate {last['rate_per_second']}/s eta {last['eta_seconds']} s"
        )


if __name__ == "__main__":
    main()
