"""A whole idsync installation for end-to-end tests: HR database, state database, simulator.

:class:`Harness` holds a :class:`~sync.simulator.Simulator`, an HR SQLite database with one
``employees`` table, a state database (SQLite, or a PostgreSQL schema of its own) migrated to head,
and the :class:`~sync.config.Settings` that tie them together. ``run()`` calls
:func:`sync.reconcile.run` in-process; ``env()`` gives the same installation as ``IDSYNC_*``
variables for the CLI (CliRunner or a subprocess) when the simulator is served over real HTTP.

Imported as ``e2e.harness`` (``tests/`` is on ``sys.path`` through the root conftest) by the e2e
and the CLI tests alike.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import text

from sync.config import (
    HRSettings,
    ProtimeSettings,
    ReactionSettings,
    SafetySettings,
    ScheduleSettings,
    Settings,
)
from sync.domain import Rule
from sync.protime import Backoff, ProtimeClient
from sync.reconcile import run
from sync.simulator import ClientSpec, Simulator, SimulatorConfig
from sync.state import StateStore, open_database, upgrade

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from sync.reconcile import RunResult
    from sync.simulator import SimPerson

TENANT = "acme"
CLIENT_ID = "e2e-client"
# Long and unlike any word, so a search of the output for it cannot miss or match by chance.
CLIENT_SECRET = "e2e-S3cr3t-7f1c9d0a5b2e"
# Retries in milliseconds, not seconds: a Retry-After from the simulator is still the floor.
FAST_BACKOFF = Backoff(initial=0.005, maximum=0.05, jitter=0.5, retry_after_jitter=0.1)


@dataclass(frozen=True, slots=True)
class HRRow:
    """One row of the HR ``employees`` table (any type may go in ``employee_id``: it is a corpus)."""

    employee_id: object
    employee_number: str | None = None
    badge: str | None = None
    email: str | None = None
    active: int = 1


def row_for(person: SimPerson, hr_id: str, *, active: int = 1) -> HRRow:
    """The HR row of an employee that matches ``person`` by employee number."""
    return HRRow(hr_id, employee_number=person.employee_number, active=active)


def write_hr(path: Path, rows: Iterable[HRRow]) -> None:
    """(Re)create the ``employees`` table of the HR database at ``path`` with these rows."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS employees")
        # No declared type on employee_id: SQLite then keeps integers, reals and blobs as given,
        # which is what a corpus of odd ids needs.
        conn.execute(
            "CREATE TABLE employees (row_id INTEGER PRIMARY KEY, employee_id, "
            "employee_number TEXT, badge TEXT, email TEXT, active INTEGER, protime_id INTEGER)"
        )
        conn.executemany(
            "INSERT INTO employees (employee_id, employee_number, badge, email, active)"
            " VALUES (?, ?, ?, ?, ?)",
            [(r.employee_id, r.employee_number, r.badge, r.email, r.active) for r in rows],
        )
    conn.close()


def sim_config(**overrides: Any) -> SimulatorConfig:
    """A simulator for tenant ``acme`` that knows the harness's client (all scopes by default)."""
    scopes = overrides.pop("scopes", None)
    client = (
        ClientSpec(CLIENT_ID, CLIENT_SECRET)
        if scopes is None
        else ClientSpec(CLIENT_ID, CLIENT_SECRET, frozenset(scopes))
    )
    defaults: dict[str, Any] = {"tenant": TENANT, "people": 40, "seed": 11, "clients": (client,)}
    return SimulatorConfig(**{**defaults, **overrides})


@dataclass
class Harness:
    """One installation. ``base_url`` set: the simulator is served over HTTP there."""

    sim: Simulator
    hr_path: Path
    state_url: str
    base_url: str | None = None
    protime: dict[str, Any] = field(default_factory=dict)  # ProtimeSettings overrides
    hr: dict[str, Any] = field(default_factory=dict)  # HRSettings overrides
    reactions: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, Any] = field(default_factory=dict)
    # Runs read Protime in full unless a test asks for the delta ({"full_read_every": "24h"}):
    # most tests change references in the simulator directly, which a delta never shows.
    schedule: dict[str, Any] = field(default_factory=dict)
    backoff: Backoff | None = FAST_BACKOFF
    # Wraps the in-process transport (fault hooks); None: the simulator's own.
    wrap_transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None

    # ------------------------------------------------------------------ settings

    @property
    def api_base(self) -> str:
        return self.base_url or self.sim.base_url

    @property
    def settings(self) -> Settings:
        protime = {
            "base_url": self.api_base,
            "tenant": TENANT,
            "token_url": self.api_base + self.sim.token_path,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "user_agent_company": "idsync e2e",
            "rate_limit_per_second": 0,  # the simulator is the one that limits, when asked
            "retry_attempts": 8,
            **self.protime,
        }
        return Settings(
            _env_file=None,  # type: ignore[call-arg]  # pydantic-settings init option
            database_url=self.state_url,
            hr=HRSettings(
                url=f"sqlite:///{self.hr_path}",
                table="employees",
                id_column="employee_id",
                employee_number_column="employee_number",
                badge_number_column="badge",
                email_column="email",
                active_column="active",
                **self.hr,
            ),
            protime=ProtimeSettings(**protime),
            reactions=ReactionSettings(**self.reactions),
            safety=SafetySettings(**self.safety),
            schedule=ScheduleSettings(**{"full_read_every": "0", **self.schedule}),
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The installation as ``IDSYNC_*`` variables (needs the simulator served over HTTP)."""
        if self.base_url is None:
            raise RuntimeError("env() needs the simulator served over HTTP (Harness.serve)")
        variables = {
            "IDSYNC_DATABASE_URL": self.state_url,
            "IDSYNC_HR__URL": f"sqlite:///{self.hr_path}",
            "IDSYNC_HR__TABLE": "employees",
            "IDSYNC_HR__ID_COLUMN": "employee_id",
            "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": "employee_number",
            "IDSYNC_HR__BADGE_NUMBER_COLUMN": "badge",
            "IDSYNC_HR__EMAIL_COLUMN": "email",
            "IDSYNC_HR__ACTIVE_COLUMN": "active",
            "IDSYNC_PROTIME__BASE_URL": self.base_url,
            "IDSYNC_PROTIME__TENANT": TENANT,
            "IDSYNC_PROTIME__TOKEN_URL": self.base_url + self.sim.token_path,
            "IDSYNC_PROTIME__CLIENT_ID": CLIENT_ID,
            "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
            "IDSYNC_PROTIME__USER_AGENT_COMPANY": "idsync e2e",
            "IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND": "0",
            "IDSYNC_LOG__FORMAT": "json",
            "IDSYNC_SCHEDULE__FULL_READ_EVERY": str(self.schedule.get("full_read_every", "0")),
        }
        variables.update(extra)
        return variables

    # ------------------------------------------------------------------ actions

    def set_hr(self, rows: Iterable[HRRow]) -> None:
        write_hr(self.hr_path, rows)

    def client(self, settings: Settings | None = None) -> ProtimeClient:
        """A Protime client for one run, on the simulator (in-process transport or HTTP)."""
        settings = settings or self.settings
        transport = None
        if self.base_url is None:
            transport = self.sim.transport()
            if self.wrap_transport is not None:
                transport = self.wrap_transport(transport)
        return ProtimeClient(
            settings.protime,
            transport=transport,
            backoff=self.backoff,
            read_email=Rule.EMAIL in settings.match.rules,
        )

    def run(self, **kwargs: Any) -> RunResult:
        """One reconcile in-process, against the simulator (in-process transport or HTTP)."""
        return run(settings=self.settings, protime=self.client(), **kwargs)

    @contextmanager
    def store(self) -> Iterator[StateStore]:
        db = open_database(self.state_url)
        try:
            yield StateStore(db)
        finally:
            db.dispose()

    def references(self) -> dict[str, int]:
        """The HRMID values Protime holds now: value -> person id."""
        return dict(self.sim.world.references())

    def writes(self) -> int:
        """PUT and DELETE calls the simulator answered so far."""
        return self.sim.counters.count("references.put") + self.sim.counters.count(
            "references.delete"
        )

    def pending_events(self) -> int:
        with self.store() as store, store_engine(store).connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM events WHERE outcome = 'pending'")).scalar()
                or 0
            )


class HookTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; ``before`` sees every request first (to change the world mid-run)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, before: Callable[[httpx.Request], None]
    ) -> None:
        self.inner = inner
        self.before = before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.before(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def hook(before: Callable[[httpx.Request], None]) -> Callable[..., Any]:
    """A ``Harness.wrap_transport`` that calls ``before`` on every request."""
    return lambda inner: HookTransport(inner, before)


def is_put(request: httpx.Request, value: str | None = None) -> bool:
    """Whether ``request`` is a reference PUT (of ``value``, when given)."""
    if request.method != "PUT" or "/external-references/" not in request.url.path:
        return False
    return value is None or request.url.path.endswith("/" + value)


def store_engine(store: StateStore) -> Any:
    """The engine behind a store (tests read the events table directly)."""
    return store.db.engine


def migrate(state_url: str) -> None:
    db = open_database(state_url)
    try:
        upgrade(db)
    finally:
        db.dispose()


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
