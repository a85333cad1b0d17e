"""The reconcile benchmark of issue 5: idsync as its own process against the simulator over HTTP.

    make bench                                   # the full run (about 40 minutes on 2 cores)
    .venv/bin/python benchmarks/reconcile_bench.py --quick     # a smoke check with small N
    .venv/bin/python benchmarks/reconcile_bench.py --help      # every option

Every scenario starts ``idsync simulator`` as a separate process on a free port, with the options of
the scenario (people, latency, rate limit), seeds it and an HR SQLite database through the
simulator's admin surface, and runs ``idsync reconcile --json`` as a separate process configured
by ``IDSYNC_*`` variables. What is measured per run:

* wall time of the idsync process (start to exit, Python start-up included) and the run's own
  ``duration_seconds``;
* peak RSS and CPU time of the idsync process (``os.wait4`` in a small launcher process, so that
  this script's own memory does not count: a forked child's peak RSS starts at its parent's);
* planning CPU time (the ``planning_cpu_seconds`` field of the ``run.planned`` log event);
* API calls by kind as idsync counted them (``api_calls`` of ``--json``) and as the simulator
  answered them (``/_sim/counters``), and the simulator's CPU time during the run (``/proc``), which
  shows whether the simulator was the limit.

Each figure is the median of ``--runs`` runs. The naive baseline (a sequential lookup-then-PUT
script without state) runs in this process on a sample of employees and is extrapolated linearly
to N; the table says so. Results go to ``benchmarks/results/reconcile-<time>.json``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import http.client
import json
import math
import os
import platform
import queue
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IDSYNC = str(Path(sys.executable).parent / "idsync")
TENANT = "acme"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"  # noqa: S105 - the simulator's published demo credential
API = "/connector/protimeapi/api/v1"
REFERENCE = "HRMID"
PEOPLE_QUERY = (
    f"externalReferences=(people,@employee-number)(people,@badge-number)(people,{REFERENCE})"
)
USER_AGENT = "idsync-bench/1.0 (idsync benchmark)"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "idsync_bench"
SEED = 7
START_TIMEOUT = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    small: int  # N of the initial sync and the small steady state
    large: int  # N of the large steady state and the 1 % change
    runs: int  # runs per scenario (median)
    large_runs: int  # runs per scenario at the large N
    latency_ms: float
    rate_limit: float
    rate_burst: int
    hidden_limits: tuple[float, ...]  # the simulator's undisclosed limits of adaptive_rate
    concurrency: int  # IDSYNC_PROTIME__CONCURRENCY of the initial sync
    concurrency_sweep: tuple[int, ...]  # extra single runs of the unlimited initial sync
    page_size: int
    change_share: float
    naive_sample: int
    naive_latency_sample: int
    postgres: str | None  # URL of the PostgreSQL state database, None: SQLite only
    scenarios: frozenset[str]
    out: Path
    profile: bool
    keep: Path | None


SCENARIOS = (
    "adaptive_rate",
    "initial_rate_limited",
    "initial_unlimited",
    "steady_small",
    "steady_large",
    "change_large",
    "steady_large_latency",
    "naive",
)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Benchmark idsync reconcile against the simulator over real HTTP (issue 5).",
    )
    parser.add_argument("--quick", action="store_true", help="small N, one run: a smoke check")
    parser.add_argument("--small", type=int, help="N of the initial sync and small steady state")
    parser.add_argument("--large", type=int, help="N of the large steady state and 1%% change")
    parser.add_argument("--runs", type=int, help="runs per scenario (median); default 3")
    parser.add_argument("--large-runs", type=int, help="runs per scenario at the large N")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="initial sync latency")
    parser.add_argument("--rate-limit", type=float, default=200.0, help="requests/s")
    parser.add_argument("--rate-burst", type=int, default=20, help="simulator bucket size")
    parser.add_argument(
        "--hidden-limits",
        default="30,120",
        help="adaptive_rate: comma-separated limits (requests/s) the simulator enforces unseen",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="idsync concurrency")
    parser.add_argument(
        "--concurrency-sweep",
        default="",
        help="comma-separated concurrencies: one unlimited initial sync run each (sweep_c<C>)",
    )
    parser.add_argument("--page-size", type=int, default=100, help="simulator page size")
    parser.add_argument("--change-share", type=float, default=0.01, help="share changed")
    parser.add_argument("--naive-sample", type=int, help="employees the naive script handles")
    parser.add_argument("--naive-latency-sample", type=int, help="same, at the added latency")
    parser.add_argument(
        "--postgres",
        default="auto",
        help=f"state on PostgreSQL too: 'auto' (when {PG_URL} answers), 'off', or a URL",
    )
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only these scenarios (repeat)"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/...)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one extra run of the unlimited initial sync and the large steady state under "
        "pyinstrument; text reports next to the JSON",
    )
    parser.add_argument("--keep", type=Path, help="keep the databases and logs in this folder")
    args = parser.parse_args(argv)
    quick = args.quick
    small = args.small or (200 if quick else 10_000)
    large = args.large or (1_000 if quick else 100_000)
    runs = args.runs or (1 if quick else 3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Options(
        small=small,
        large=large,
        runs=runs,
        large_runs=args.large_runs or runs,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        hidden_limits=tuple(float(x) for x in args.hidden_limits.split(",") if x.strip()),
        concurrency=args.concurrency,
        concurrency_sweep=tuple(int(c) for c in args.concurrency_sweep.split(",") if c.strip()),
        page_size=args.page_size,
        change_share=args.change_share,
        naive_sample=min(args.naive_sample or (50 if quick else 2_000), small),
        naive_latency_sample=min(args.naive_latency_sample or (20 if quick else 250), small),
        postgres=_postgres_url(args.postgres),
        scenarios=frozenset(args.only or SCENARIOS),
        out=args.out or RESULTS / f"reconcile-{stamp}{'-quick' if quick else ''}.json",
        profile=args.profile,
        keep=args.keep,
    )


def _postgres_url(choice: str) -> str | None:
    if choice == "off":
        return None
    url = PG_URL if choice == "auto" else choice
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if choice != "auto":
            raise SystemExit(f"PostgreSQL at {url} is not reachable: {exc}") from None
        print(f"PostgreSQL not reachable at {url}: state on SQLite only", file=sys.stderr)
        return None
    return url


# ------------------------------------------------------------------------------------- simulator


class SimulatorProcess:
    """``idsync simulator`` on a free port, driven through its admin surface."""

    def __init__(
        self,
        *,
        people: int,
        page_size: int,
        workdir: Path,
        latency_ms: float = 0.0,
        rate_limit: float | None = None,
        burst: int = 10,
        extra: Sequence[str] = (),
    ) -> None:
        args = [
            IDSYNC,
            "simulator",
            "--port",
            "0",
            "--people",
            str(people),
            "--seed",
            str(SEED),
            "--page-size",
            str(page_size),
            "--latency-ms",
            str(latency_ms),
        ]
        if rate_limit:
            args += ["--rate-limit", str(rate_limit), "--rate-limit-burst", str(burst)]
        args += list(extra)
        self.description = {
            "people": people,
            "page_size": page_size,
            "latency_ms": latency_ms,
            "rate_limit": rate_limit,
            "rate_limit_burst": burst if rate_limit else None,
        }
        self._log = (workdir / f"simulator-{time.monotonic_ns()}.log").open("w")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_clean_env(),
            cwd=workdir,
        )
        self.base_url = self._wait_ready()
        self.admin = httpx.Client(base_url=self.base_url, timeout=300)

    def _wait_ready(self) -> str:
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self.proc.returncode}")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if "API base URL" in line:
                return line.split(":", 1)[1].strip().removesuffix(API)
        raise RuntimeError("the simulator did not start in time")

    def close(self) -> None:
        self.admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- admin

    def people(self) -> list[dict[str, Any]]:
        response = self.admin.get("/_sim/people")
        response.raise_for_status()
        people: list[dict[str, Any]] = response.json()["people"]
        return people

    def set_references(self, pairs: Sequence[tuple[str, int]]) -> None:
        for start in range(0, len(pairs), 20_000):
            body = {
                "references": [
                    {"name": REFERENCE, "value": value, "internalReference": str(pid)}
                    for value, pid in pairs[start : start + 20_000]
                ]
            }
            self.admin.post("/_sim/references", json=body).raise_for_status()

    def clear_references(self) -> None:
        self.admin.delete("/_sim/references").raise_for_status()

    def reference_count(self) -> int:
        refs = self.admin.get("/_sim/state").json()["references"]
        return int(refs.get(f"people/{REFERENCE}", 0))

    def put_person(self, person: dict[str, Any]) -> None:
        self.admin.put(f"/_sim/people/{person['id']}", json=person).raise_for_status()

    def reset_counters(self) -> None:
        self.admin.delete("/_sim/counters").raise_for_status()

    def counters(self) -> dict[str, int]:
        """Answers by endpoint and status, flattened to ``endpoint:status``."""
        data = self.admin.get("/_sim/counters").json()["requests"]
        return {f"{ep}:{st}": n for ep, by in data.items() for st, n in by.items()}

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the simulator process so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -------------------------------------------------------------------------------------- HR world


@dataclass(slots=True)
class Employee:
    hr_id: str
    employee_number: str | None
    badge_number: str | None
    email: str | None
    active: int = 1
    protime_id: int = 0


def employees_for(people: Sequence[dict[str, Any]]) -> list[Employee]:
    """One HR employee per simulated person, matching by employee number (and badge)."""
    return [
        Employee(
            hr_id=f"E{p['employeeNumber']}",
            employee_number=p["employeeNumber"],
            badge_number=p["badgeNumber"],
            email=p["email"],
            protime_id=p["id"],
        )
        for p in people
    ]


def write_hr(path: Path, employees: Sequence[Employee]) -> None:
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE employees (employee_id TEXT PRIMARY KEY, employee_number TEXT,"
            " badge_number TEXT, email TEXT, active INTEGER NOT NULL DEFAULT 1)"
        )
        conn.executemany(
            "INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
            [(e.hr_id, e.employee_number, e.badge_number, e.email, e.active) for e in employees],
        )


# ------------------------------------------------------------------------------------ state DBs


@dataclass(frozen=True, slots=True)
class StateDB:
    label: str  # sqlite | postgresql
    url: str


@contextlib.contextmanager
def state_db(
    kind: str, *, workdir: Path, name: str, postgres: str | None, schema: str | None = None
) -> Iterator[StateDB]:
    """A fresh, migrated state database: a SQLite file, or a dedicated PostgreSQL schema
    (``schema``, default ``PG_SCHEMA``: a benchmark that may run beside this one names its own)."""
    if kind == "sqlite":
        path = workdir / f"state-{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = StateDB("sqlite", f"sqlite:///{path}")
        _migrate(db.url)
        yield db
        return
    assert postgres is not None
    from sqlalchemy import create_engine, text

    schema = schema or PG_SCHEMA
    engine = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in postgres else "?"
    db = StateDB("postgresql", f"{postgres}{sep}options=-csearch_path%3D{schema}")
    try:
        _migrate(db.url)
        yield db
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


def _migrate(url: str) -> None:
    """What ``idsync db upgrade`` does, in this process (one process start less per database)."""
    from sync.state import open_database, upgrade

    db = open_database(url)
    try:
        upgrade(db)
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------- idsync runs


@dataclass(slots=True)
class Run:
    """One ``idsync reconcile`` process."""

    exit_code: int
    status: str
    wall_seconds: float
    run_seconds: float  # the run's own duration (no interpreter start-up)
    max_rss_mb: float
    cpu_seconds: float  # user + system of the idsync process
    planning_cpu_seconds: float | None
    phases: dict[str, float]  # seconds from the run start to each log event
    actions: dict[str, int]
    situations: dict[str, int]
    api_requests: dict[str, int]
    simulator_requests: dict[str, int]
    simulator_cpu_seconds: float | None
    writes: int  # reference PUTs and DELETEs idsync sent (all statuses)
    reads: int  # people pages idsync read (all statuses)
    requests: int  # every API request idsync sent, token included
    protime_people: int  # persons the run read
    rate_per_second: float | None = None  # the client-side rate at the end (auto: learned)
    settled_since: str | None = None  # a settled run: the run whose plan it took

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.wall_seconds if self.wall_seconds else 0.0


_PHASE_EVENTS = (
    "run.start",
    "run.hr_read",
    "run.protime_read",
    "run.settled",
    "run.planned",
    "run.finish",
)


def idsync_env(
    *, sim: SimulatorProcess, db: StateDB, hr_path: Path, workdir: Path, **settings: object
) -> dict[str, str]:
    env = {
        **_clean_env(),
        "IDSYNC_SECRETS_DIR": str(workdir / "no-secrets"),
        "IDSYNC_DATABASE_URL": db.url,
        "IDSYNC_HR__URL": f"sqlite:///{hr_path}",
        "IDSYNC_HR__TABLE": "employees",
        "IDSYNC_HR__ID_COLUMN": "employee_id",
        "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
        "IDSYNC_HR__BADGE_NUMBER_COLUMN": "badge_number",
        "IDSYNC_HR__ACTIVE_COLUMN": "active",
        "IDSYNC_PROTIME__BASE_URL": sim.base_url,
        "IDSYNC_PROTIME__TENANT": TENANT,
        "IDSYNC_PROTIME__TOKEN_URL": f"{sim.base_url}/tenants/{TENANT}/connect/token",
        "IDSYNC_PROTIME__CLIENT_ID": CLIENT_ID,
        "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
        "IDSYNC_PROTIME__USER_AGENT_COMPANY": "idsync benchmark",
        "IDSYNC_LOG__FORMAT": "json",
        "IDSYNC_LOG__LEVEL": "INFO",
        # These scenarios measure full reads of Protime; benchmarks/incremental_bench.py the delta.
        "IDSYNC_SCHEDULE__FULL_READ_EVERY": "0",
    }
    for name, value in settings.items():
        env[f"IDSYNC_{name.upper()}"] = str(value)
    return env


# idsync is started by this small launcher, not by the benchmark itself: a child's peak RSS
# (ru_maxrss) starts at what its parent held when it was forked, and this script holds a few
# hundred MB of people by the end. The launcher is a fresh interpreter of about 10 MB; it times
# and waits for idsync and writes idsync's own figures to the file named first.
_LAUNCHER = """
import json, os, sys, time
out, command = sys.argv[1], sys.argv[2:]
started_at, started = time.time(), time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
figures = {
    "wall_seconds": time.perf_counter() - started,
    "started_at": started_at,
    "ended_at": time.time(),
    "exit_code": os.waitstatus_to_exitcode(status),
    "max_rss_kb": usage.ru_maxrss,
    "cpu_seconds": usage.ru_utime + usage.ru_stime,
}
with open(out, "w") as f:
    json.dump(figures, f)
"""


@functools.cache
def byte_compile() -> None:
    """Byte-compile idsync's modules once, as a pip-installed wheel has them. The editable dev
    install has none, and PYTHONDONTWRITEBYTECODE (set here, and in the image) keeps Python from
    writing them: every process would compile the package again (0.15-0.2 s of each start)."""
    compileall.compile_dir(ROOT / "sync", quiet=1)


def run_idsync(
    env: dict[str, str],
    *,
    sim: SimulatorProcess,
    workdir: Path,
    label: str,
    profile_to: Path | None = None,
    extra: Sequence[str] = (),
) -> Run:
    """``idsync reconcile --json`` (and ``extra`` arguments) as a separate process; its own
    rusage via ``os.wait4``."""
    byte_compile()
    sim.reset_counters()
    sim_cpu = sim.cpu_seconds()
    stamp = time.monotonic_ns()
    out_path, err_path = workdir / f"{label}-{stamp}.out", workdir / f"{label}-{stamp}.err"
    command = [IDSYNC, "reconcile", "--json"]
    if profile_to is not None:
        command = [
            sys.executable, "-m", "pyinstrument", "--renderer", "text", "--no-color",
            "--outfile", str(profile_to), "-m", "sync", "reconcile", "--json",
        ]  # fmt: skip
    command += extra
    figures_path = workdir / f"{label}-{stamp}.rusage"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(figures_path),
                shutil.which(command[0]) or command[0],
                *command[1:],
            ],
            stdout=out,
            stderr=err,
            env=env,
            cwd=workdir,
            check=False,
        )
    figures = json.loads(figures_path.read_text())
    exit_code = int(figures["exit_code"])
    sim_cpu_after = sim.cpu_seconds()
    stdout = out_path.read_text()
    try:
        result = json.loads(stdout)
    except ValueError:
        tail = err_path.read_text()[-3000:]
        raise RuntimeError(f"{label}: no JSON result (exit {exit_code}): {tail}") from None
    planning, phases = _log_figures(
        err_path, started_at=figures["started_at"], ended_at=figures["ended_at"]
    )
    api = {str(k): int(v) for k, v in result.get("api_calls", {}).items()}
    # The --json contract (docs/schemas/reconcile.schema.json) nests actions by kind and outcome;
    # the benchmark's tables keep the flat "kind:outcome" keys.
    actions = {
        f"{kind}:{outcome}": int(n)
        for kind, outcomes in result.get("actions", {}).items()
        for outcome, n in outcomes.items()
    }
    return Run(
        exit_code=exit_code,
        status=result["status"],
        wall_seconds=figures["wall_seconds"],
        run_seconds=float(result["duration_seconds"]),
        max_rss_mb=figures["max_rss_kb"] / 1024,
        cpu_seconds=figures["cpu_seconds"],
        planning_cpu_seconds=planning,
        phases=phases,
        actions=actions,
        situations=result.get("situations", {}),
        api_requests=api,
        simulator_requests=sim.counters(),
        simulator_cpu_seconds=(
            sim_cpu_after - sim_cpu if sim_cpu is not None and sim_cpu_after is not None else None
        ),
        writes=sum(n for k, n in api.items() if k.startswith(("put_", "delete_"))),
        reads=sum(n for k, n in api.items() if k.startswith("people:")),
        requests=sum(api.values()),
        protime_people=int(result.get("protime_count") or 0),
        rate_per_second=result.get("rate_per_second"),
        settled_since=result.get("settled_since"),
    )


def _log_figures(
    err_path: Path, *, started_at: float, ended_at: float
) -> tuple[float | None, dict[str, float]]:
    """``planning_cpu_seconds`` and the seconds from ``run.start`` to each phase's log event.

    ``startup`` is the time from the process start to ``run.start`` (interpreter, imports,
    settings, schema check, lock) and ``exit`` the time from ``run.finish`` to the process end.
    """
    planning: float | None = None
    stamps: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for line in err_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        name = event.get("event")
        if name == "run.planned":
            planning = event.get("planning_cpu_seconds")
        if name in _PHASE_EVENTS and "timestamp" in event:
            stamps[name] = datetime.fromisoformat(event["timestamp"])
        if name == "run.finish":
            # The run's own seconds per phase (starting, reading, planning, saving, writing, ...).
            seconds.update(
                {f"phase:{k}": float(v) for k, v in event.get("phase_seconds", {}).items()}
            )
    start = stamps.get("run.start")
    phases = {
        name.removeprefix("run."): (at - start).total_seconds()
        for name, at in stamps.items()
        if start is not None and name != "run.start"
    }
    if start is not None:
        phases["startup"] = start.timestamp() - started_at
    if "run.finish" in stamps:
        phases["exit"] = ended_at - stamps["run.finish"].timestamp()
    phases.update(seconds)
    return planning, phases


# -------------------------------------------------------------------------- raw-client baselines


def _token(client: httpx.Client) -> str:
    response = client.post(
        f"/tenants/{TENANT}/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def pages_baseline(sim: SimulatorProcess) -> dict[str, float]:
    """What the simulator alone needs to serve every people page: one token, sequential GETs.

    The client is the lightest there is (``http.client`` on one keep-alive connection) and does
    nothing else: it finds ``nextLink`` at the end of each body without parsing the page.
    """
    with httpx.Client(base_url=sim.base_url, headers={"User-Agent": USER_AGENT}) as client:
        token = _token(client)
    parsed = urlsplit(sim.base_url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {token}"}
    url: str | None = f"{API}/people?{PEOPLE_QUERY}"
    pages = 0
    started = time.perf_counter()
    while url is not None:
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"people page answered {response.status}")
        pages += 1
        at = body.rfind(b'"nextLink":')
        url = json.loads(body[at + 11 : -1]) if at >= 0 else None
    seconds = time.perf_counter() - started
    conn.close()
    return {"pages": pages, "seconds": seconds, "pages_per_second": pages / seconds}


def roundtrip_baseline(sim: SimulatorProcess, pids: Sequence[int]) -> dict[str, float]:
    """The round trip of one small API request to the simulator alone: sequential GETs of a
    person with ``http.client`` on one keep-alive connection; the added latency plus whatever
    the simulator, the loopback and the lightest client add to it."""
    with httpx.Client(base_url=sim.base_url, headers={"User-Agent": USER_AGENT}) as client:
        token = _token(client)
    parsed = urlsplit(sim.base_url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {token}"}
    times: list[float] = []
    for pid in pids:
        started = time.perf_counter()
        conn.request("GET", f"{API}/people/{pid}", headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
    conn.close()
    return {"requests": len(times), "median_seconds": statistics.median(times)}


def naive_baseline(sim: SimulatorProcess, employees: Sequence[Employee]) -> dict[str, Any]:
    """The script a user would write without idsync: per employee, look up, then PUT. No state."""
    headers = {"User-Agent": USER_AGENT}
    counts: dict[str, int] = {}
    linked = 0
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {_token(client)}"
        started = time.perf_counter()
        for e in employees:
            number = (e.employee_number or "").replace("'", "''")
            response = client.get(
                f"{API}/people", params={"filter": f"employeeNumber eq '{number}'"}
            )
            key = f"people.filter:{response.status_code}"
            counts[key] = counts.get(key, 0) + 1
            found = response.json().get("value", []) if response.status_code == 200 else []
            if len(found) != 1:
                continue
            response = client.put(
                f"{API}/external-references/people/{REFERENCE}/{quote(e.hr_id, safe='')}",
                json={"internalReference": str(found[0]["id"])},
            )
            key = f"references.put:{response.status_code}"
            counts[key] = counts.get(key, 0) + 1
            linked += response.status_code in (200, 201)
        seconds = time.perf_counter() - started
    return {
        "employees": len(employees),
        "linked": linked,
        "seconds": seconds,
        "requests": counts,
        "seconds_per_employee": seconds / max(1, len(employees)),
    }


# -------------------------------------------------------------------------------- the scenarios


@dataclass(slots=True)
class Scenario:
    name: str
    title: str
    n: int
    state: str
    settings: Mapping[str, object]
    simulator: Mapping[str, object]
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, pick: Callable[[Run], float | None]) -> float | None:
        values = [v for v in (pick(r) for r in self.runs) if v is not None]
        return statistics.median(values) if values else None

    def summary(self) -> dict[str, Any]:
        last = self.runs[-1] if self.runs else None
        apply_seconds = self.median(_apply_seconds)
        writes = self.median(lambda r: r.writes)
        return {
            "name": self.name,
            "title": self.title,
            "n": self.n,
            "state": self.state,
            "runs": len(self.runs),
            "settings": self.settings,
            "simulator": self.simulator,
            "median": {
                "wall_seconds": self.median(lambda r: r.wall_seconds),
                "run_seconds": self.median(lambda r: r.run_seconds),
                "max_rss_mb": self.median(lambda r: r.max_rss_mb),
                "cpu_seconds": self.median(lambda r: r.cpu_seconds),
                "planning_cpu_seconds": self.median(lambda r: r.planning_cpu_seconds),
                "requests": self.median(lambda r: r.requests),
                "reads": self.median(lambda r: r.reads),
                "writes": writes,
                "requests_per_second": self.median(lambda r: r.requests_per_second),
                "apply_seconds": apply_seconds,
                "writes_per_second_in_apply": self.median(_apply_rate),
                "simulator_cpu_share": self.median(_simulator_share),
            },
            "max": {
                "max_rss_mb": max((r.max_rss_mb for r in self.runs), default=None),
                "planning_cpu_seconds": max(
                    (r.planning_cpu_seconds or 0.0 for r in self.runs), default=None
                ),
            },
            "api_requests_last_run": last.api_requests if last else {},
            "simulator_requests_last_run": last.simulator_requests if last else {},
            "actions_last_run": last.actions if last else {},
            "situations_last_run": last.situations if last else {},
            "notes": self.notes,
            "extra": self.extra,
            "all_runs": [asdict(r) for r in self.runs],
        }


def _apply_seconds(run: Run) -> float | None:
    planned, finish = run.phases.get("planned"), run.phases.get("finish")
    return finish - planned if planned is not None and finish is not None else None


def _apply_rate(run: Run) -> float | None:
    seconds = _apply_seconds(run)
    return run.writes / seconds if seconds and run.writes else None


def _simulator_share(run: Run) -> float | None:
    if run.simulator_cpu_seconds is None or not run.run_seconds:
        return None
    return run.simulator_cpu_seconds / run.run_seconds


# The simulator of the steady-state and change scenarios has no rate limit; idsync's client-side
# limit matches it (its default, 50/s, would pace 1,000 pages to 20 s).
_UNLIMITED: dict[str, object] = {"protime__rate_limit_per_second": 0}
# What IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND was before "auto" (issue 12): the fixed comparison.
_FORMER_DEFAULT_RATE = "50"


class Bench:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.o = options
        self.workdir = workdir
        (workdir / "no-secrets").mkdir(exist_ok=True)
        self.scenarios: list[Scenario] = []
        self.baselines: dict[str, Any] = {}
        self.checks: list[dict[str, Any]] = []
        self.states = ["sqlite"] + (["postgresql"] if options.postgres else [])
        self.rtt = 0.0  # seconds: one request's round trip to the current simulator, alone

    def want(self, name: str) -> bool:
        return name in self.o.scenarios

    def log(self, text: str) -> None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"[{time.strftime('%H:%M:%S')} load {load:.2f}] {text}", file=sys.stderr, flush=True)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail})
        self.log(f"{'PASS' if ok else 'MISS'} {name}: {detail}")

    def _run(self, scenario: Scenario, env: dict[str, str], sim: SimulatorProcess) -> Run:
        run = run_idsync(env, sim=sim, workdir=self.workdir, label=scenario.name)
        scenario.runs.append(run)
        self.log(
            f"{scenario.name} [{scenario.state}] run {len(scenario.runs)}: {run.status} "
            f"wall {run.wall_seconds:.2f}s, {run.reads} reads, {run.writes} writes, "
            f"RSS {run.max_rss_mb:.0f} MB, planning {run.planning_cpu_seconds}s CPU"
        )
        return run

    def _profile(self, name: str, env: dict[str, str], sim: SimulatorProcess) -> None:
        target = self.o.out.with_name(self.o.out.stem + f"-profile-{name}.txt")
        run_idsync(env, sim=sim, workdir=self.workdir, label=f"profile-{name}", profile_to=target)
        self.log(f"profile of {name}: {target}")

    # ---- 1. initial sync

    def initial(self, *, limited: bool) -> None:
        o = self.o
        name = "initial_rate_limited" if limited else "initial_unlimited"
        rate = o.rate_limit if limited else 0.0
        with SimulatorProcess(
            people=o.small,
            page_size=o.page_size,
            workdir=self.workdir,
            latency_ms=o.latency_ms,
            rate_limit=rate or None,
            burst=o.rate_burst,
        ) as sim:
            employees = employees_for(sim.people())
            hr = self.workdir / f"hr-{name}.db"
            write_hr(hr, employees)
            rtt = roundtrip_baseline(sim, [e.protime_id for e in employees[:200]])
            self.rtt = rtt["median_seconds"]
            self.baselines[f"roundtrip_{o.latency_ms:g}ms{'_limited' if limited else ''}"] = rtt
            self.log(f"one request round trip, simulator alone: {1000 * self.rtt:.2f} ms")
            states = (self.states if not limited else ["sqlite"]) if self.want(name) else []
            runs = [(state, o.concurrency, name, o.runs) for state in states]
            if not limited:
                runs += [("sqlite", c, f"sweep_c{c}", 1) for c in o.concurrency_sweep]
            for state, concurrency, label, count in runs:
                settings = {
                    "protime__concurrency": concurrency,
                    "protime__rate_limit_per_second": rate,
                }
                scenario = Scenario(
                    name=label,
                    title=(
                        f"initial sync, {o.latency_ms:g} ms latency, "
                        + (f"rate limit {rate:g}/s" if limited else "no rate limit")
                        + f", concurrency {concurrency}"
                    ),
                    n=o.small,
                    state=state,
                    settings=settings,
                    simulator=sim.description,
                )
                self.scenarios.append(scenario)
                for index in range(count):
                    sim.clear_references()
                    with state_db(
                        state, workdir=self.workdir, name=f"{name}-{index}", postgres=o.postgres
                    ) as db:
                        env = idsync_env(
                            sim=sim, db=db, hr_path=hr, workdir=self.workdir, **settings
                        )
                        self._run(scenario, env, sim)
                        if (
                            o.profile
                            and label == "initial_unlimited"
                            and index == 0
                            and state == "sqlite"
                        ):
                            sim.clear_references()
                            with state_db(
                                state, workdir=self.workdir, name="profile", postgres=o.postgres
                            ) as pdb:
                                penv = idsync_env(
                                    sim=sim, db=pdb, hr_path=hr, workdir=self.workdir, **settings
                                )
                                self._profile(name, penv, sim)
                self._judge_initial(scenario, rate=rate, concurrency=concurrency)
            if not limited and self.want("naive"):
                sample = employees[: o.naive_latency_sample]
                self.log(f"naive baseline at {o.latency_ms:g} ms latency on {len(sample)}")
                naive = naive_baseline(sim, sample)
                naive["extrapolated_seconds_for_n"] = naive["seconds_per_employee"] * o.small
                naive["n"] = o.small
                self.baselines[f"naive_latency_{o.small}"] = naive

    def _judge_initial(self, scenario: Scenario, *, rate: float, concurrency: int) -> None:
        o = self.o
        ceiling = concurrency / (o.latency_ms / 1000) if o.latency_ms else math.inf
        # The same with the measured round trip of one request instead of the added latency.
        measured = concurrency / self.rtt if self.rtt else math.inf
        if rate:
            ceiling = min(rate, ceiling)
            measured = min(rate, measured)
        run_rate = scenario.median(_apply_rate) or 0.0
        whole = scenario.median(lambda r: r.requests_per_second) or 0.0
        failed = sum(
            n for r in scenario.runs for k, n in r.actions.items() if not k.endswith(":succeeded")
        )
        scenario.extra["ceiling_requests_per_second"] = ceiling
        scenario.extra["ceiling_with_measured_round_trip"] = measured
        scenario.extra["failed_records"] = failed
        scenario.extra["http_429"] = sum(
            n for r in scenario.runs for k, n in r.api_requests.items() if k.endswith(":429")
        )
        self.check(
            f"{scenario.name}[{scenario.state}] throughput",
            run_rate >= 0.9 * ceiling and failed == 0,
            f"{run_rate:.0f} writes/s in the apply phase ({whole:.0f} requests/s over the "
            f"whole process) vs 90% of {ceiling:.0f}/s = {0.9 * ceiling:.0f}/s "
            f"({run_rate / ceiling:.0%}; {run_rate / measured:.0%} of {measured:.0f}/s with the "
            f"measured round trip); {failed} failed records",
        )

    # ---- 2. steady state (and 3. the 1 % change, and 4. the naive baseline, at the large N)

    def steady(self, *, n: int, runs: int, large: bool, latency_ms: float = 0.0) -> None:
        """Steady state at ``n`` (and, at the large N, the 1 % change on the same state).

        With ``latency_ms`` only the steady state runs (``steady_large_latency``): the same
        comparison with the simulator alone when every page takes as long as in the initial sync.
        """
        o = self.o
        name = "steady_large" if large else "steady_small"
        if latency_ms:
            name = "steady_large_latency"
        with SimulatorProcess(
            people=n, page_size=o.page_size, workdir=self.workdir, latency_ms=latency_ms
        ) as sim:
            employees = employees_for(sim.people())
            hr = self.workdir / f"hr-{name}.db"
            write_hr(hr, employees)
            # Protime already holds every reference: the first run adopts them (no writes).
            sim.set_references([(e.hr_id, e.protime_id) for e in employees])
            pages = [pages_baseline(sim) for _ in range(max(1, min(runs, 3)))]
            baseline = {
                "pages": pages[0]["pages"],
                "seconds": statistics.median(p["seconds"] for p in pages),
                "all_seconds": [p["seconds"] for p in pages],
            }
            self.baselines[f"pages_{n}" + (f"_latency_{latency_ms:g}ms" if latency_ms else "")] = (
                baseline
            )
            self.log(f"simulator alone: {baseline['pages']} pages in {baseline['seconds']:.2f}s")
            if self.want("naive") and not latency_ms:
                sample = employees[: o.naive_sample]
                self.log(f"naive baseline on {len(sample)} of {n} employees")
                naive = naive_baseline(sim, sample)
                naive["n"] = n
                naive["extrapolated_seconds_for_n"] = naive["seconds_per_employee"] * n
                naive["extrapolated"] = len(sample) < n
                self.baselines[f"naive_{n}"] = naive
            change = large and self.want("change_large") and not latency_ms
            if not (self.want(name) or change):
                return
            # Every state database sees the same N in its steady runs: the 1 % change rounds,
            # which add and remove people, come after all of them.
            dbs: dict[str, tuple[StateDB, dict[str, str]]] = {}
            with contextlib.ExitStack() as stack:
                for state in self.states if not latency_ms else ["sqlite"]:
                    db = stack.enter_context(
                        state_db(state, workdir=self.workdir, name=name, postgres=o.postgres)
                    )
                    env = idsync_env(sim=sim, db=db, hr_path=hr, workdir=self.workdir, **_UNLIMITED)
                    dbs[state] = (db, env)
                    adopt = run_idsync(env, sim=sim, workdir=self.workdir, label=f"{name}-adopt")
                    self.log(
                        f"{name} [{state}] adoption run: {adopt.status} {adopt.writes} writes, "
                        f"wall {adopt.wall_seconds:.2f}s"
                    )
                    if adopt.writes or adopt.status != "succeeded":
                        raise RuntimeError(f"the adoption run wrote or failed: {adopt.actions}")
                    if self.want(name):
                        self._steady_state(
                            name=name,
                            n=n,
                            runs=runs,
                            state=state,
                            sim=sim,
                            env=env,
                            baseline=baseline,
                            adopt=adopt,
                        )
                for state, (db, _) in dbs.items() if change else ():
                    self._change(
                        n=n, runs=runs, state=state, sim=sim, db=db, hr=hr, employees=employees
                    )

    def _steady_state(
        self,
        *,
        name: str,
        n: int,
        runs: int,
        state: str,
        sim: SimulatorProcess,
        env: dict[str, str],
        baseline: dict[str, Any],
        adopt: Run,
    ) -> None:
        o = self.o
        scenario = Scenario(
            name=name,
            title="steady state, nothing changed"
            + (
                f", {sim.description['latency_ms']:g} ms latency"
                if sim.description["latency_ms"]
                else ""
            ),
            n=n,
            state=state,
            settings=_UNLIMITED,
            simulator=sim.description,
        )
        scenario.extra["adoption_run"] = asdict(adopt)
        self.scenarios.append(scenario)
        for _ in range(runs):
            self._run(scenario, env, sim)
        if o.profile and name == "steady_large" and state == "sqlite":
            self._profile(name, env, sim)
        people = max((r.protime_people for r in scenario.runs), default=n)
        limit_reads = math.ceil(people / o.page_size) + 2
        wall = scenario.median(lambda r: r.wall_seconds) or 0.0
        run_s = scenario.median(lambda r: r.run_seconds) or 0.0
        writes = max((r.writes for r in scenario.runs), default=0)
        reads = max((r.reads for r in scenario.runs), default=0)
        tag = f"{name}[{state}]"
        self.check(f"{tag} zero writes", writes == 0, f"{writes} writes")
        self.check(f"{tag} reads", reads <= limit_reads, f"{reads} reads, limit {limit_reads}")
        self.check(
            f"{tag} wall vs pages",
            wall <= 2 * baseline["seconds"],
            f"{wall:.2f}s process wall ({run_s:.2f}s run) vs 2 x {baseline['seconds']:.2f}s "
            f"= {2 * baseline['seconds']:.2f}s",
        )
        scenario.extra["pages_baseline_seconds"] = baseline["seconds"]
        scenario.extra["reads_limit"] = limit_reads

    def _change(
        self,
        *,
        n: int,
        runs: int,
        state: str,
        sim: SimulatorProcess,
        db: StateDB,
        hr: Path,
        employees: list[Employee],
    ) -> None:
        """Rounds of changes on the converged state; each round's run must write just them."""
        o = self.o
        settings = {
            **_UNLIMITED,
            "reactions__orphaned": "delete",
            "safety__max_deletes": n,
            "safety__max_repoints": n,
        }
        scenario = Scenario(
            name="change_large",
            title=f"{o.change_share:.0%} changed: new hires, leavers, re-keyed ids",
            n=n,
            state=state,
            settings=settings,
            simulator=sim.description,
        )
        self.scenarios.append(scenario)
        expected: list[int] = []
        env = idsync_env(sim=sim, db=db, hr_path=hr, workdir=self.workdir, **settings)
        for index in range(runs):
            calls, description = self._make_changes(sim, hr, employees, round_=index, state=state)
            expected.append(calls)
            run = self._run(scenario, env, sim)
            self.log(f"  changes: {description}; expected {calls} calls, got {run.writes}")
        after = run_idsync(env, sim=sim, workdir=self.workdir, label="change-converged")
        scenario.extra["converged_after"] = {"writes": after.writes, "status": after.status}
        scenario.extra["expected_writes"] = expected
        scenario.notes.append(
            "a new hire is one PUT; a leaver (row gone from HR) is one DELETE of its orphaned "
            "reference because IDSYNC_REACTIONS__ORPHANED=delete (with the default 'report' it "
            "is reported and costs no call); a re-keyed id is a DELETE of the old value then a "
            "PUT of the new one (one value per person, protime-api.md section 7)"
        )
        got = [r.writes for r in scenario.runs]
        failed = sum(
            n for r in scenario.runs for k, n in r.actions.items() if not k.endswith(":succeeded")
        )
        self.check(
            f"change_large[{state}] writes == changes",
            got == expected and failed == 0 and after.writes == 0,
            f"writes {got} vs expected {expected}; {failed} failed; "
            f"{after.writes} writes in the run after",
        )

    def _make_changes(
        self,
        sim: SimulatorProcess,
        hr: Path,
        employees: list[Employee],
        *,
        round_: int,
        state: str,
    ) -> tuple[int, str]:
        """Change ``change_share`` of the employees on both sides; the calls a run should make."""
        o = self.o
        total = max(3, round(len(employees) * o.change_share))
        hires, leavers = total * 4 // 10, total * 3 // 10
        rekeys = total - hires - leavers
        tag = f"{state[0]}{round_}"
        # Leavers and re-keys are taken from the front, new hires appended at the back, so each
        # round touches different employees.
        leaving, rekeyed = employees[:leavers], employees[leavers : leavers + rekeys]
        del employees[: leavers + rekeys]
        next_id = max(e.protime_id for e in employees) + 1
        new: list[Employee] = []
        for i in range(hires):
            pid, number, badge = next_id + i, f"N{tag}-{i:05d}", f"B{tag}-{i:05d}"
            sim.put_person(
                {
                    "id": pid,
                    "firstName": "New",
                    "lastName": f"Hire {i}",
                    "employeeNumber": number,
                    "badgeNumber": badge,
                }
            )
            new.append(Employee(f"H{tag}-{i:05d}", number, badge, None, 1, pid))
        for e in rekeyed:
            e.hr_id = f"K{tag}-{e.hr_id}"
        with contextlib.closing(sqlite3.connect(hr)) as conn, conn:
            conn.executemany(
                "DELETE FROM employees WHERE employee_id = ?", [(e.hr_id,) for e in leaving]
            )
            conn.executemany(
                "UPDATE employees SET employee_id = ? WHERE employee_number = ?",
                [(e.hr_id, e.employee_number) for e in rekeyed],
            )
            conn.executemany(
                "INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
                [(e.hr_id, e.employee_number, e.badge_number, e.email, e.active) for e in new],
            )
        employees.extend(rekeyed)
        employees.extend(new)
        description = f"{hires} new hires, {leavers} leavers, {rekeys} re-keyed ids"
        return hires + leavers + 2 * rekeys, description

    # ---- 0. the adaptive rate against an undisclosed limit

    def adaptive(self) -> None:
        """Initial syncs against a token bucket idsync is not told about: ``auto`` vs fixed.

        The simulator keeps its default bucket size (10) and ``Retry-After`` in whole seconds,
        as protime-api.md describes Protime. Each run starts from a fresh state database, so
        ``auto`` starts at 10/s with nothing learned; the fixed rate is the former default, 50/s.
        """
        o = self.o
        for limit in o.hidden_limits:
            with SimulatorProcess(
                people=o.small,
                page_size=o.page_size,
                workdir=self.workdir,
                latency_ms=o.latency_ms,
                rate_limit=limit,
            ) as sim:
                employees = employees_for(sim.people())
                hr = self.workdir / f"hr-adaptive-{limit:g}.db"
                write_hr(hr, employees)
                for rate in ("auto", _FORMER_DEFAULT_RATE):
                    settings = {
                        "protime__concurrency": o.concurrency,
                        "protime__rate_limit_per_second": rate,
                    }
                    scenario = Scenario(
                        name=f"adaptive_{limit:g}_{rate}",
                        title=(
                            f"initial sync, undisclosed limit {limit:g}/s (bucket 10), "
                            f"{o.latency_ms:g} ms latency, rate {rate}"
                            + (" (the former fixed default)" if rate != "auto" else "")
                        ),
                        n=o.small,
                        state="sqlite",
                        settings=settings,
                        simulator=sim.description,
                    )
                    self.scenarios.append(scenario)
                    for index in range(o.runs if rate == "auto" else 1):
                        sim.clear_references()
                        with state_db(
                            "sqlite", workdir=self.workdir, name=f"adaptive-{index}", postgres=None
                        ) as db:
                            env = idsync_env(
                                sim=sim, db=db, hr_path=hr, workdir=self.workdir, **settings
                            )
                            self._run(scenario, env, sim)
                    self._judge_adaptive(scenario, limit=limit, auto=rate == "auto")

    def _judge_adaptive(self, scenario: Scenario, *, limit: float, auto: bool) -> None:
        """Accepted requests per second over the whole run against the limit; 429s; failures."""

        def accepted(run: Run) -> float:
            api = {k: n for k, n in run.api_requests.items() if not k.startswith("token:")}
            ok = sum(n for k, n in api.items() if not k.endswith(":429"))
            return ok / run.run_seconds if run.run_seconds else 0.0

        def share_429(run: Run) -> float:
            total = sum(n for k, n in run.api_requests.items() if not k.startswith("token:"))
            refused = sum(n for k, n in run.api_requests.items() if k.endswith(":429"))
            return refused / total if total else 0.0

        rate = scenario.median(accepted) or 0.0
        share = max((share_429(r) for r in scenario.runs), default=0.0)
        apply_rate = scenario.median(_apply_rate) or 0.0
        failed = sum(
            n for r in scenario.runs for k, n in r.actions.items() if not k.endswith(":succeeded")
        )
        learned = [r.rate_per_second for r in scenario.runs]
        scenario.extra.update(
            limit=limit,
            accepted_per_second=rate,
            share_of_limit=rate / limit,
            apply_writes_per_second=apply_rate,
            share_429_max=share,
            failed_records=failed,
            learned_rate_per_run=learned,
        )
        detail = (
            f"{rate:.1f} accepted requests/s over the run = {rate / limit:.0%} of {limit:g}/s "
            f"(apply phase {apply_rate:.1f} writes/s); 429s {share:.2%} of requests at most; "
            f"{failed} failed records; learned rate {learned}"
        )
        if auto:
            self.check(
                f"{scenario.name} >= 85% of the limit, 429s < 3%, no failure",
                rate >= 0.85 * limit and share < 0.03 and failed == 0,
                detail,
            )
        else:
            self.log(f"{scenario.name} (shown beside auto): {detail}")
            scenario.notes.append(detail)

    # ---- all

    def run_all(self) -> None:
        o = self.o
        if self.want("adaptive_rate"):
            self.adaptive()
        if self.want("initial_rate_limited"):
            self.initial(limited=True)
        if self.want("initial_unlimited") or self.want("naive") or o.concurrency_sweep:
            self.initial(limited=False)
        if self.want("steady_small") or self.want("naive"):
            self.steady(n=o.small, runs=o.runs, large=False)
        if self.want("steady_large") or self.want("change_large") or self.want("naive"):
            self.steady(n=o.large, runs=o.large_runs, large=True)
        if self.want("steady_large_latency"):
            self.steady(n=o.large, runs=o.large_runs, large=True, latency_ms=o.latency_ms)
        self._judge_across()

    def _judge_across(self) -> None:
        """The targets that compare scenarios with the naive baseline, and the large-N limits."""
        o = self.o
        for n in (o.small, o.large):
            naive = self.baselines.get(f"naive_{n}")
            for s in self.scenarios:
                steady = s.name in ("steady_small", "steady_large")
                if steady and s.n == n and naive and s.state == "sqlite":
                    wall = s.median(lambda r: r.wall_seconds) or math.inf
                    speedup = naive["extrapolated_seconds_for_n"] / wall
                    s.extra["speedup_vs_naive"] = speedup
                    self.check(
                        f"{s.name}[{s.state}] vs naive",
                        speedup >= 20,
                        f"{speedup:.0f}x faster than the naive script "
                        f"({naive['extrapolated_seconds_for_n']:.0f}s"
                        f"{', extrapolated' if naive.get('extrapolated') else ''})",
                    )
        for s in self.scenarios:
            if s.n == o.large and s.runs:
                rss = max(r.max_rss_mb for r in s.runs)
                plan = max(r.planning_cpu_seconds or 0.0 for r in s.runs)
                tag = f"{s.name}[{s.state}]"
                self.check(f"{tag} peak RSS", rss <= 250, f"{rss:.0f} MB (limit 250)")
                self.check(f"{tag} planning CPU", plan <= 2, f"{plan:.2f}s (limit 2)")


# ---------------------------------------------------------------------------------- the report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        ram = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _calls(requests: dict[str, int]) -> str:
    by_kind: dict[str, int] = {}
    for key, n in requests.items():
        kind = key.rsplit(":", 1)[0]
        by_kind[kind] = by_kind.get(kind, 0) + n
    return " ".join(f"{k}={v}" for k, v in sorted(by_kind.items()))


def table(results: dict[str, Any], *, markdown: bool = False) -> str:
    """The figures and the target checks, aligned for a terminal or as a Markdown table."""
    head = (
        "scenario", "state", "N", "runs", "wall s", "run s", "req/s", "writes/s apply",
        "RSS MB", "plan CPU s", "sim CPU", "API calls (median run, by kind)",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for s in results["scenarios"]:
        m = s["median"]
        share = m["simulator_cpu_share"]
        rows.append(
            (
                s["name"],
                s["state"],
                f"{s['n']:,}",
                str(s["runs"]),
                _fmt(m["wall_seconds"]),
                _fmt(m["run_seconds"]),
                _fmt(m["requests_per_second"], 0),
                _fmt(m["writes_per_second_in_apply"], 0),
                _fmt(m["max_rss_mb"], 0),
                _fmt(m["planning_cpu_seconds"], 3),
                "-" if share is None else f"{share:.0%}",
                _calls(s["api_requests_last_run"]),
            )
        )
    for key, b in results["baselines"].items():
        if key.startswith("naive"):
            label = "naive, extrapolated" if b.get("extrapolated", True) else "naive"
            if b["employees"] == b["n"]:
                label = "naive"
            rows.append(
                (
                    key,
                    "-",
                    f"{b['n']:,}",
                    f"sample {b['employees']:,}",
                    _fmt(b["extrapolated_seconds_for_n"], 1) + ("*" if "extra" in label else ""),
                    _fmt(b["seconds"], 2) + " (sample)",
                    _fmt(sum(b["requests"].values()) / b["seconds"], 0),
                    "-",
                    "-",
                    "-",
                    "-",
                    _calls(b["requests"]) + " (sample)",
                )
            )
        elif key.startswith("roundtrip"):
            rows.append(
                (key, "-", "-", str(b["requests"]), f"{1000 * b['median_seconds']:.2f} ms")
                + ("-",) * 6
                + ("median round trip of one GET, simulator alone",)
            )
        else:
            rows.append(
                (
                    key,
                    "-",
                    "-",
                    str(len(b["all_seconds"])),
                    _fmt(b["seconds"]),
                    "-",
                    _fmt(b["pages"] / b["seconds"], 0),
                    "-",
                    "-",
                    "-",
                    "-",
                    f"people pages={b['pages']} (simulator alone)",
                )
            )
    checks = [
        f"{'PASS' if c['ok'] else 'MISS'}  {c['check']}: {c['detail']}" for c in results["checks"]
    ]
    note = "* extrapolated linearly from the sample to N"
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines.extend("| " + " | ".join(r) + " |" for r in rows)
        return "\n".join([*lines, "", note, "", *(f"- {c}" for c in checks)])
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join([*lines, note, "", *checks])


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    workdir = (
        Path(tempfile.mkdtemp(prefix="idsync-bench-")) if options.keep is None else options.keep
    )
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(options, workdir)
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        bench.run_all()
    finally:
        if options.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "options": {
            k: sorted(v) if isinstance(v, frozenset) else str(v) if isinstance(v, Path) else v
            for k, v in asdict(options).items()
        },
        "machine": {**machine(), "load_average_at_start": load_before},
        "elapsed_seconds": time.perf_counter() - started,
        "scenarios": [s.summary() for s in bench.scenarios],
        "baselines": bench.baselines,
        "checks": bench.checks,
    }
    options.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    options.out.with_suffix(".md").write_text(table(results, markdown=True) + "\n")
    print(table(results))
    print(f"\nresults: {options.out} (and the table in Markdown: {options.out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
