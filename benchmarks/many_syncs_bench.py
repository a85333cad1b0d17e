"""Many syncs under `idsync serve` (issue 21): 200 syncs x 2,000 employees, 1 and 2 replicas.

    PYTHONPATH=. .venv/bin/python benchmarks/many_syncs_bench.py                  # 200 x 2,000, 1,2
    PYTHONPATH=. .venv/bin/python benchmarks/many_syncs_bench.py --employees 200  # make bench
    PYTHONPATH=. .venv/bin/python benchmarks/many_syncs_bench.py --syncs 3 --employees 20 --replicas 1

One simulator process (``idsync simulator --tenants-file``: its own process, so its CPU is not the
replicas') serves one tenant per sync, each of ``--employees`` people (no latency, no rate limit,
no one out of service). One HR SQLite file holds every sync's employees in one table ``staff``
with a ``tenant`` column (indexed); each sync reads its rows through its own ``query``. The
settings file has one ``[syncs.NAME]`` per tenant, ``max_concurrent_runs = --workers``, the state
on a fresh PostgreSQL schema per scenario (dropped after), ``run_at_start = false`` and full reads
every 24 h.

A *round* is one tick of every sync: the replicas are started (``idsync serve --config``, each
with its own ``IDSYNC_PROTIME__USER_AGENT_COMPANY`` and port), and the settings file's
``interval_seconds`` is chosen for the round so that one of its ticks falls ``--lead`` seconds
after the start and the next at least 2 h later. Interval ticks fall on multiples of the interval
since the epoch, the same moment on every replica: the replicas share the tick and a replica skips
a sync another already ran (``scheduler.already_run``) or is running (the run lock: a run recorded
``skipped``), as in a deployment. (``run_at_start`` would give each replica a tick of its own, at
its own start: a sync that one replica ran before the other started would run on both.) The round
ends when every sync has a finished run started at or after the tick; the replicas' peak RSS
(``VmHWM``) and CPU are read from ``/proc`` and they are stopped with SIGTERM.

Per replica count (``--replicas 1,2``): round ``first``, the first sync of every tenant (a full
read and ``--employees`` PUTs per sync), then round ``no-change`` (each sync: a token and one delta
request). ``--first-round once`` runs round ``first`` for the first replica count only and the
later counts' no-change rounds on its state; ``each`` (the default) resets the simulator (no
references) and starts a fresh schema for every replica count.

Figures per round: wall time (the tick to the last run's ``finished_at``, from the state
database's ``runs`` table), requests (the runs' ``api_calls``, and the simulator's request records,
cleared before each round), runs per replica (``runs.pid``), ticks skipped as already run
(``scheduler.already_run`` in the replicas' JSON logs) or at the lock (``skipped`` runs), peak RSS
and CPU per replica, the simulator's CPU, the longest wait of a due sync (its run's ``started_at``
minus the tick's scheduled time), the longest and mean run, and the mean ``phase_seconds`` of a
run (``run.finish``). The targets of issue 21 are checked and printed PASS/MISS; a MISS does not
fail the process (a benchmark reports). Results: a table on stdout and
``benchmarks/results/many-syncs-<time>.json`` (or ``--json OUT``), written after every round.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from reconcile_bench import CLK_TCK, PG_URL, RESULTS, ROOT, byte_compile
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from sqlalchemy.engine import Engine

CLIENT_ID = "idsync"
CLIENT_SECRET = "s3cret"  # noqa: S105 - the simulator's tenants' own test credential
QUERY = "SELECT employee_id, employee_number FROM staff WHERE tenant = '{tenant}'"
START_TIMEOUT = 600.0
# Every sync's schedule: an interval with a tick --lead seconds after the replicas start (chosen
# per round) and the next one hours later.
MIN_INTERVAL = 7_200
MAX_INTERVAL = 86_400

# Targets of issue 21 (a benchmark's, not a timed test's).
TARGET_NO_CHANGE_SECONDS = 60.0
TARGET_SPEEDUP = 1.7
TARGET_RSS_MB = 500.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--syncs", type=int, default=200, help="syncs, one tenant each (200)")
    parser.add_argument("--employees", type=int, default=2000, help="employees per sync (2000)")
    parser.add_argument("--replicas", default="1,2", help="replica counts, comma separated (1,2)")
    parser.add_argument("--workers", type=int, default=4, help="max_concurrent_runs (4)")
    parser.add_argument(
        "--postgres", default=PG_URL, help=f"PostgreSQL URL of the state ({PG_URL})"
    )
    parser.add_argument(
        "--lead",
        type=float,
        default=20.0,
        help="at least this many seconds between starting the replicas and the round's tick (20)",
    )
    parser.add_argument(
        "--first-round",
        choices=("each", "once"),
        default="each",
        help="round 1 for each replica count on a fresh world, or once (default each)",
    )
    parser.add_argument("--log-level", default="INFO", help="IDSYNC_LOG__LEVEL of the replicas")
    parser.add_argument("--round-timeout", type=float, default=3600.0, help="seconds per round")
    parser.add_argument("--json", type=Path, help="write the figures here (default: results/)")
    parser.add_argument("--keep", type=Path, help="keep the work folder (logs) here")
    return parser.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    """The replicas' and the simulator's environment: no IDSYNC_* of ours, this checkout first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _idsync() -> list[str]:
    return [sys.executable, "-m", "sync"]


def _tenants(count: int) -> list[str]:
    return [f"s{n:03d}" for n in range(count)]


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the simulator -------------------------------------------------------------------------------


class Simulator:
    """``idsync simulator --tenants-file``: one tenant per sync, in a process of its own."""

    def __init__(self, tenants: list[str], employees: int, workdir: Path) -> None:
        lines = [
            "[defaults]",
            f"people = {employees}",
            "out_of_service_share = 0.0",
            f'client_id = "{CLIENT_ID}"',
            f'client_secret = "{CLIENT_SECRET}"',
        ]
        for n, tenant in enumerate(tenants):
            lines += [f"[tenants.{tenant}]", f"seed = {n + 1}"]
        path = workdir / "tenants.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = (workdir / "simulator.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *_idsync(),
                "simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--tenants-file",
                str(path),
            ],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.admin = httpx.Client(base_url=self.base_url, timeout=600)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if self.admin.get("/_sim/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start in time")
            time.sleep(0.5)

    def urls(self, tenant: str) -> tuple[str, str]:
        base = f"{self.base_url}/t/{tenant}"
        return base, f"{base}/tenants/{tenant}/connect/token"

    def employee_numbers(self, tenant: str) -> list[str]:
        answer = self.admin.get(f"/t/{tenant}/_sim/people")
        answer.raise_for_status()
        return [p["employeeNumber"] for p in answer.json()["people"]]

    def reset(self) -> None:
        self.admin.post("/_sim/reset").raise_for_status()

    def clear_records(self) -> None:
        self.admin.delete("/_sim/request-records").raise_for_status()

    def requests_logged(self) -> int:
        answer = self.admin.get("/_sim/tenants")
        answer.raise_for_status()
        return sum(t["requestsLogged"] for t in answer.json()["tenants"])

    def records(self) -> list[dict[str, Any]]:
        answer = self.admin.get("/_sim/request-records")
        answer.raise_for_status()
        records: list[dict[str, Any]] = answer.json()["records"]
        return records

    def references(self, tenant: str) -> int:
        state = self.admin.get(f"/t/{tenant}/_sim/state").json()
        return int(state["references"].get("people/HRMID", 0))

    def close(self) -> None:
        self.admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# -- HR, state, settings ---------------------------------------------------------------------------


def write_hr(path: Path, sim: Simulator, tenants: list[str]) -> int:
    """One table of every sync's employees; the employee ids are the sync's own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE staff (tenant TEXT, employee_id TEXT, employee_number TEXT)")
        rows = 0
        for tenant in tenants:
            numbers = sim.employee_numbers(tenant)
            conn.executemany(
                "INSERT INTO staff VALUES (?, ?, ?)",
                [(tenant, f"{tenant}-E{i:05d}", number) for i, number in enumerate(numbers)],
            )
            rows += len(numbers)
        conn.execute("CREATE INDEX ix_staff_tenant ON staff (tenant)")
        conn.commit()
    return rows


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; dropped afterwards (tests/db_support.py)."""
    schema = f"idsync_bench_many_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def write_settings(
    path: Path,
    *,
    sim: Simulator,
    tenants: list[str],
    hr: Path,
    state_url: str,
    args: Any,
    interval: int,
) -> None:
    """The deployment: every sync due on the ticks of ``interval`` seconds, not at start."""
    lines = [
        f'database_url = "{state_url}"',
        f"max_concurrent_runs = {args.workers}",
        '[log]\nformat = "json"',
        "[defaults.protime]",
        "rate_limit_per_second = 0",
        f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"',
        "[defaults.hr]",
        f'url = "sqlite:///{hr}"',
        'employee_number_column = "employee_number"',
        "[defaults.schedule]",
        f"interval_seconds = {interval}",
        "run_at_start = false",
        'full_read_every = "24h"',
    ]
    for tenant in tenants:
        base_url, token_url = sim.urls(tenant)
        lines += [
            f"[syncs.{tenant}.protime]",
            f'tenant = "{tenant}"\nbase_url = "{base_url}"\ntoken_url = "{token_url}"',
            f"[syncs.{tenant}.hr]",
            f'query = "{QUERY.format(tenant=tenant)}"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tick_and_interval(earliest: float) -> tuple[datetime, int]:
    """The round's tick and an interval with a tick on it: the first whole second T from
    ``earliest`` that a whole number of seconds I in [MIN_INTERVAL, MAX_INTERVAL] divides.

    Interval ticks fall on multiples of the interval since the epoch (sync/service/_scheduler.py),
    the same moments on every replica: the replicas share the tick, and one runs a sync while
    the others skip it (already run, or at the run lock), as in a deployment. The next tick is
    at least MIN_INTERVAL later, past the end of the round."""
    start = int(earliest) + 1
    for moment in range(start, start + 600):
        for interval in range(MIN_INTERVAL, MAX_INTERVAL + 1):
            if moment % interval == 0:
                return datetime.fromtimestamp(moment, UTC), interval
    raise RuntimeError("no interval has a tick in the next 10 minutes")  # never seen


def _settings_at(path: Path, interval: int, **parts: Any) -> None:
    write_settings(path, interval=interval, **parts)


# -- a round ---------------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None


@dataclass
class RoundResult:
    replicas: int
    round: str
    complete: bool
    interval_seconds: int
    wall_seconds: float
    runs_span_seconds: float
    runs: int
    runs_by_status: dict[str, int]
    syncs_ran_twice: int
    requests_by_runs: int
    requests_by_kind: dict[str, int]
    requests_at_simulator: int
    runs_by_replica: dict[str, int]
    already_run: dict[str, int]
    skipped_locked: dict[str, int]
    peak_rss_mb: dict[str, float | None]
    cpu_seconds: dict[str, float | None]
    simulator_cpu_seconds: float | None
    longest_wait_seconds: float | None
    longest_run_seconds: float
    mean_run_seconds: float
    mean_phase_seconds: dict[str, float]
    tenants_with_two_callers: int | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)


def _start_replicas(
    count: int, config: Path, workdir: Path, label: str, level: str
) -> list[Replica]:
    replicas = []
    for n in range(count):
        name = f"replica-{chr(ord('a') + n)}"
        port = _free_port()
        log_path = workdir / f"{label}-{name}.log"
        env = _env(
            IDSYNC_PROTIME__USER_AGENT_COMPANY=name,  # tells the replicas apart in the records
            IDSYNC_HTTP__HOST="127.0.0.1",
            IDSYNC_HTTP__PORT=str(port),
            IDSYNC_LOG__LEVEL=level,
        )
        with log_path.open("wb") as sink:
            proc = subprocess.Popen(
                [*_idsync(), "serve", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        replicas.append(Replica(name, proc, log_path, port))
    return replicas


def _wait_ready(replicas: list[Replica], tick: datetime) -> dict[str, datetime | None]:
    """When each replica's listener answered /healthz (None: not by the tick + 60 s)."""
    ready: dict[str, datetime | None] = dict.fromkeys((r.name for r in replicas), None)
    deadline = tick.timestamp() + 60
    with httpx.Client(timeout=5) as client:
        while time.time() < deadline and any(v is None for v in ready.values()):
            for replica in replicas:
                if ready[replica.name] is not None:
                    continue
                if replica.proc.poll() is not None:
                    raise RuntimeError(f"{replica.name} exited with {replica.proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{replica.port}/healthz"
                    if client.get(url).status_code == 200:
                        ready[replica.name] = datetime.now(UTC)
            time.sleep(0.2)
    return ready


def _stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.peak_rss_mb = _peak_rss_mb(replica.proc.pid)
        replica.cpu_seconds = _cpu_seconds(replica.proc.pid)
    for replica in replicas:
        if replica.proc.poll() is None:
            replica.proc.send_signal(signal.SIGTERM)
    for replica in replicas:
        try:
            replica.proc.wait(120)
        except subprocess.TimeoutExpired:
            log(f"{replica.name} did not stop within 120 s: killed")
            replica.proc.kill()
            replica.proc.wait()


def _runs_since(engine: Engine, since: datetime) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT sync, status, started_at, finished_at, duration_seconds, pid, api_calls"
                " FROM runs WHERE started_at >= :since"
            ),
            {"since": since},
        )
        return [dict(r._mapping) for r in rows]  # noqa: SLF001 - SQLAlchemy's public row mapping


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


def _when(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_round(  # noqa: C901, PLR0912, PLR0915 - one round, measured top to bottom
    *,
    label: str,
    count: int,
    config: Path,
    settings: Callable[[int], None],
    sim: Simulator,
    engine: Engine,
    tenants: list[str],
    workdir: Path,
    args: Any,
) -> RoundResult:
    sim.clear_records()
    tick, interval = _tick_and_interval(time.time() + args.lead)
    settings(interval)
    replicas = _start_replicas(count, config, workdir, f"{count}r-{label}", args.log_level)
    ready_at = _wait_ready(replicas, tick)
    late = [name for name, when in ready_at.items() if when is None or when >= tick]
    if late:
        log(f"replica(s) not ready before the tick: {late}")
    log(f"tick at {tick:%H:%M:%S} UTC; replicas ready")
    time.sleep(max(0.0, (tick - datetime.now(UTC)).total_seconds() - 1.0))
    load_before = os.getloadavg()
    sim_cpu = _cpu_seconds(sim.proc.pid)
    start = tick
    started = time.monotonic()
    complete = False
    runs: list[dict[str, Any]] = []
    try:
        while time.monotonic() - started < args.round_timeout:
            time.sleep(0.5)
            runs = _runs_since(engine, start)
            done = {
                r["sync"] for r in runs if r["finished_at"] is not None and r["status"] != "skipped"
            }
            if len(done) == len(tenants):
                complete = True
                break
            dead = [r.name for r in replicas if r.proc.poll() is not None]
            if dead:
                log(f"replica(s) exited during the round: {dead}")
                break
        time.sleep(1.0)  # anything a replica was about to start shows as a second run
    finally:
        _stop(replicas)
    sim_cpu_after = _cpu_seconds(sim.proc.pid)
    load_after = os.getloadavg()
    every = _runs_since(engine, start)
    # A replica that meets the run lock held records a run `skipped` (run.skipped_locked): not a
    # run of the sync, the tick taken by another replica.
    runs = [r for r in every if r["status"] != "skipped"]
    finished = [r for r in runs if r["finished_at"] is not None]
    first_start = min((_when(r["started_at"]) for r in runs), default=start)
    last_end = max((_when(r["finished_at"]) for r in finished), default=start)
    per_sync = Counter(r["sync"] for r in runs)
    by_pid = {r.proc.pid: r.name for r in replicas}
    kinds: Counter[str] = Counter()
    for r in finished:
        for key, value in json.loads(r["api_calls"] or "{}").items():
            kinds[key] += int(value)
    events = {r.name: _events(r.log) for r in replicas}
    ticks: dict[str, datetime] = {}
    phases: defaultdict[str, float] = defaultdict(float)
    finishes = 0
    for items in events.values():
        for e in items:
            if e.get("event") == "scheduler.tick" and "timestamp" in e:
                moment = _when(e["timestamp"])
                ticks[e["sync"]] = min(ticks.get(e["sync"], moment), moment)
            if e.get("event") == "run.finish" and _when(e["timestamp"]) >= tick:
                finishes += 1
                for phase, seconds in (e.get("phase_seconds") or {}).items():
                    phases[phase] += float(seconds)
    first_run: dict[str, datetime] = {}
    for r in runs:
        moment = _when(r["started_at"])
        first_run[r["sync"]] = min(first_run.get(r["sync"], moment), moment)
    # A due sync's wait: its run's started_at minus the tick's scheduled time (the logged
    # scheduler.tick lines are within milliseconds of it; their spread is in `extra`).
    waits = [(first_run[s] - tick).total_seconds() for s in first_run]
    tick_spread = [(t - tick).total_seconds() for t in ticks.values()]
    durations = [float(r["duration_seconds"] or 0.0) for r in finished]
    two_callers = None
    if label == "no-change":
        callers: defaultdict[str, set[str]] = defaultdict(set)
        for record in sim.records():
            who = next((n for n in by_pid.values() if n in record["caller"]), record["caller"])
            callers[record["tenant"]].add(who)
        two_callers = sum(1 for names in callers.values() if len(names) > 1)
    return RoundResult(
        replicas=count,
        round=label,
        complete=complete,
        interval_seconds=interval,
        wall_seconds=round((last_end - start).total_seconds(), 2),
        runs_span_seconds=round((last_end - first_start).total_seconds(), 2),
        runs=len(runs),
        runs_by_status=dict(Counter(r["status"] for r in every)),
        syncs_ran_twice=sum(1 for n in per_sync.values() if n > 1),
        requests_by_runs=sum(kinds.values()),
        requests_by_kind=dict(sorted(kinds.items())),
        requests_at_simulator=sim.requests_logged(),
        runs_by_replica={
            name: sum(1 for r in runs if by_pid.get(r["pid"]) == name) for name in by_pid.values()
        },
        already_run={
            n: sum(e.get("event") == "scheduler.already_run" for e in items)
            for n, items in events.items()
        },
        skipped_locked={
            n: sum(e.get("event") == "run.skipped_locked" for e in items)
            for n, items in events.items()
        },
        peak_rss_mb={r.name: r.peak_rss_mb for r in replicas},
        cpu_seconds={r.name: r.cpu_seconds for r in replicas},
        simulator_cpu_seconds=(
            round(sim_cpu_after - sim_cpu, 2)
            if sim_cpu is not None and sim_cpu_after is not None
            else None
        ),
        longest_wait_seconds=round(max(waits), 2) if waits else None,
        longest_run_seconds=round(max(durations, default=0.0), 2),
        mean_run_seconds=round(sum(durations) / len(durations), 3) if durations else 0.0,
        mean_phase_seconds={k: round(v / finishes, 3) for k, v in phases.items()}
        if finishes
        else {},
        tenants_with_two_callers=two_callers,
        load_before=load_before,
        load_after=load_after,
        extra={
            "tick": tick.isoformat(),
            "replicas_ready_before_tick_seconds": {
                n: round((tick - w).total_seconds(), 2) if w else None for n, w in ready_at.items()
            },
            "logged_tick_after_scheduled_seconds": [
                round(min(tick_spread), 3) if tick_spread else None,
                round(max(tick_spread), 3) if tick_spread else None,
            ],
            "replica_exit_codes": {r.name: r.proc.returncode for r in replicas},
        },
    )


# -- the report ------------------------------------------------------------------------------------


def _mb(values: dict[str, float | None]) -> str:
    return " / ".join(f"{v:.0f}" if v is not None else "-" for v in values.values())


def _s(values: dict[str, float | None]) -> str:
    return " / ".join(f"{v:.1f}" if v is not None else "-" for v in values.values())


def table(rounds: list[RoundResult]) -> str:
    head = (
        "| replicas | round | wall s | runs | requests (runs / simulator) | runs per replica"
        " | ticks skipped (already run / at lock) | peak RSS MB per replica | CPU s per replica"
        " | simulator CPU s | longest wait s | longest run s | mean run s |"
    )
    lines = [head, "|" + "---|" * 13]
    lines.extend(
        f"| {r.replicas} | {r.round}{'' if r.complete else ' (INCOMPLETE)'}"
        f" | {r.wall_seconds:.1f} | {r.runs} | {r.requests_by_runs:,} / "
        f"{r.requests_at_simulator:,} | {' / '.join(map(str, r.runs_by_replica.values()))}"
        f" | {sum(r.already_run.values())} / {sum(r.skipped_locked.values())}"
        f" | {_mb(r.peak_rss_mb)} | {_s(r.cpu_seconds)} | {r.simulator_cpu_seconds}"
        f" | {r.longest_wait_seconds} | {r.longest_run_seconds} | {r.mean_run_seconds} |"
        for r in rounds
    )
    return "\n".join(lines)


def targets(rounds: list[RoundResult]) -> list[dict[str, Any]]:
    """Each target of issue 21 with the figure that decides it: PASS, MISS or n/a."""
    no_change = {r.replicas: r for r in rounds if r.round == "no-change" and r.complete}
    checks: list[dict[str, Any]] = []
    one = no_change.get(1)
    checks.append(
        {
            "target": f"no-change round of every sync on 1 replica <= {TARGET_NO_CHANGE_SECONDS:g} s",
            "figure": f"{one.wall_seconds:.1f} s" if one else "not measured",
            "verdict": ("PASS" if one.wall_seconds <= TARGET_NO_CHANGE_SECONDS else "MISS")
            if one
            else "n/a",
        }
    )
    two = no_change.get(2)
    if one and two:
        speedup = one.wall_seconds / two.wall_seconds
        checks.append(
            {
                "target": f"2 replicas >= {TARGET_SPEEDUP}x 1 replica (no-change round)",
                "figure": f"{one.wall_seconds:.1f} s / {two.wall_seconds:.1f} s = {speedup:.2f}x",
                "verdict": "PASS" if speedup >= TARGET_SPEEDUP else "MISS",
            }
        )
    first = {r.replicas: r for r in rounds if r.round == "first" and r.complete}
    if 1 in first and 2 in first:
        speedup = first[1].wall_seconds / first[2].wall_seconds
        checks.append(
            {
                "target": "(for information) 2 replicas vs 1 on the first round",
                "figure": f"{first[1].wall_seconds:.1f} s / {first[2].wall_seconds:.1f} s"
                f" = {speedup:.2f}x",
                "verdict": "-",
            }
        )
    peaks = [v for r in rounds for v in r.peak_rss_mb.values() if v is not None]
    checks.append(
        {
            "target": f"peak RSS per replica <= {TARGET_RSS_MB:g} MB",
            "figure": f"largest {max(peaks):.0f} MB" if peaks else "not measured",
            "verdict": ("PASS" if max(peaks) <= TARGET_RSS_MB else "MISS") if peaks else "n/a",
        }
    )
    for r in rounds:
        if r.longest_wait_seconds is None:
            continue
        bound = r.interval_seconds + r.longest_run_seconds
        checks.append(
            {
                "target": f"{r.replicas} replica(s), {r.round}: longest wait of a due sync <="
                f" interval + longest run",
                "figure": f"{r.longest_wait_seconds:.1f} s <= {r.interval_seconds} + "
                f"{r.longest_run_seconds:.1f} s; holds for any interval >= "
                f"{max(0.0, r.longest_wait_seconds - r.longest_run_seconds):.1f} s",
                "verdict": "PASS" if r.longest_wait_seconds <= bound else "MISS",
            }
        )
    checks.extend(
        {
            "target": f"{r.replicas} replica(s), {r.round}: one run per sync per round",
            "figure": f"{r.syncs_ran_twice} sync(s) ran twice; "
            f"{r.tenants_with_two_callers} tenant(s) called by two replicas;"
            f" complete={r.complete}",
            "verdict": "MISS",
        }
        for r in rounds
        if r.syncs_ran_twice or r.tenants_with_two_callers or not r.complete
    )
    return checks


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 1024 / 1024:.1f} GB"
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "ram": ram,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0915 - the whole benchmark, in order
    args = _args(argv)
    counts = [int(n) for n in args.replicas.split(",") if n.strip()]
    tenants = _tenants(args.syncs)
    byte_compile()
    began = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine(),
        "load_at_start": os.getloadavg(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "syncs": args.syncs,
        "employees": args.employees,
        "workers": args.workers,
        "schedule": "interval_seconds chosen per round (>= 2 h) with a tick --lead s after the"
        " replicas start; run_at_start = false",
        "first_round": args.first_round,
        "hr": "one SQLite file, table staff (tenant, employee_id, employee_number), indexed",
        "state": "PostgreSQL, a fresh schema per scenario",
        "rounds": [],
    }
    rounds: list[RoundResult] = []
    out = args.json
    if out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"many-syncs-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idsync-many-")))
        log(f"simulator: {args.syncs} tenants x {args.employees} people")
        sim = Simulator(tenants, args.employees, workdir)
        stack.callback(sim.close)
        hr = workdir / "hr.db"
        rows = write_hr(hr, sim, tenants)
        log(f"HR: {rows} employees in {hr}")
        config = workdir / "idsync.toml"
        schema_url: str | None = None
        for index, count in enumerate(counts):
            fresh = args.first_round == "each" or index == 0
            if fresh:
                # Each scenario's schema is dropped at the end, with the simulator.
                schema_url = stack.enter_context(fresh_schema(args.postgres))
                if index:
                    sim.reset()  # every tenant back to its start: no references
                write_settings(
                    config,
                    sim=sim,
                    tenants=tenants,
                    hr=hr,
                    state_url=schema_url,
                    args=args,
                    interval=MAX_INTERVAL,
                )
                upgrade = subprocess.run(
                    [*_idsync(), "db", "upgrade", "--config", str(config)],
                    env=_env(),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if upgrade.returncode != 0:
                    raise RuntimeError(f"idsync db upgrade failed: {upgrade.stderr[-2000:]}")
            assert schema_url is not None
            engine = create_engine(schema_url)
            labels = ("first", "no-change") if fresh else ("no-change",)
            for label in labels:
                log(f"{count} replica(s), round {label}: starting")
                result = run_round(
                    label=label,
                    count=count,
                    config=config,
                    settings=functools.partial(
                        _settings_at,
                        config,
                        sim=sim,
                        tenants=tenants,
                        hr=hr,
                        state_url=schema_url,
                        args=args,
                    ),
                    sim=sim,
                    engine=engine,
                    tenants=tenants,
                    workdir=workdir,
                    args=args,
                )
                rounds.append(result)
                results["rounds"].append(asdict(result))
                # Written after every round: a long benchmark cut short keeps what it measured.
                out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
                log(
                    f"{count} replica(s), round {label}: {result.wall_seconds:.1f} s, "
                    f"{result.runs} runs, {result.requests_by_runs} requests, peak RSS "
                    f"{_mb(result.peak_rss_mb)} MB, complete={result.complete}"
                )
            if fresh:
                written = sum(sim.references(t) for t in tenants[:3])
                results.setdefault("references_checked", {})[str(count)] = {
                    "tenants": tenants[:3],
                    "references": written,
                    "expected": len(tenants[:3]) * args.employees,
                }
            engine.dispose()
    results["load_at_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - began, 1)
    checks = targets(rounds)
    results["targets"] = checks
    print(table(rounds))
    print()
    phases = [
        f"| {r.replicas} | {r.round} | "
        + " ".join(f"{k}={v}" for k, v in r.mean_phase_seconds.items())
        + " |"
        for r in rounds
    ]
    print("| replicas | round | mean phase_seconds of a run |\n|---|---|---|\n" + "\n".join(phases))
    print()
    for check in checks:
        print(f"{check['verdict']:<5} {check['target']}: {check['figure']}")
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
