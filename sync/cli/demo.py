"""`idsync demo`: a whole reconcile against the simulator over real HTTP, in a scratch folder.

Builds a sample HR SQLite database and a matching simulated Protime tenant that holds every kind
of case (already linked, to write, drifted, orphaned, unmatched, disputed, invalid), then runs a
dry run, a real reconcile, a second reconcile that plans nothing, and a few lookups both ways.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sync.cli._common import err, out, require_simulator
from sync.status import RunStatus

if TYPE_CHECKING:
    from sync.config import Settings
    from sync.simulator import Simulator

TENANT = "acme"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"  # noqa: S105 - the simulator's published demo credential
PAGE_SIZE = 10
_ALREADY_LINKED = 3


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    folder: Annotated[
        Path, typer.Option("--folder", help="Where to put the demo databases (recreated).")
    ] = Path("demo"),
    people: Annotated[int, typer.Option("--people", min=20, help="Simulated people.")] = 40,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=1,
            max=65535,
            help="Port the saved tenant is served on afterwards (in idsync.env and the command"
            " printed at the end).",
        ),
    ] = 8089,
) -> None:
    """Run idsync end to end against the simulator and show what it did."""
    require_simulator("demo")
    from sync.config import HRSettings, ProtimeSettings, Settings
    from sync.logging import configure_logging
    from sync.reconcile import run
    from sync.simulator import Simulator, SimulatorConfig, serve_in_thread
    from sync.state import StateStore, open_database, upgrade

    configure_logging(level="WARNING", fmt="auto")
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()  # absolute: the env file and the commands work from anywhere
    hr_db, state_db = folder / "hr.db", folder / "state.db"
    people_file, env_file = folder / PEOPLE_FILE, folder / ENV_FILE
    for path in (hr_db, state_db, people_file, env_file):
        path.unlink(missing_ok=True)

    sim = Simulator(SimulatorConfig(tenant=TENANT, people=people, seed=7, page_size=PAGE_SIZE))
    hr_rows = _stage_world(sim)
    _write_hr(hr_db, hr_rows)
    out.rule("[bold]idsync demo[/bold]")
    out.print(f"HR database: {hr_db} ({len(hr_rows)} rows); state database: {state_db}")

    with serve_in_thread(sim) as base_url:
        settings = Settings(
            database_url=f"sqlite:///{state_db}",
            hr=HRSettings(
                url=f"sqlite:///{hr_db}",
                table="employees",
                id_column="employee_id",
                employee_number_column="employee_number",
                badge_number_column="badge",
                email_column="email",
                active_column="active",
            ),
            protime=ProtimeSettings(
                base_url=base_url,
                tenant=TENANT,
                token_url=f"{base_url}/tenants/{TENANT}/connect/token",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                user_agent_company="idsync demo",
            ),
        )
        out.print(f"Simulated Protime tenant {TENANT!r} at {base_url} with {people} people\n")
        db = open_database(settings.state_url, timeout=settings.state_timeout_seconds)
        upgrade(db)

        from sync.cli.reconcile import _print

        out.rule("1. dry run: the plan, nothing written")
        _print(run(settings=settings, dry_run=True))
        out.rule("2. reconcile")
        _print(run(settings=settings))
        out.rule("3. reconcile again: nothing left to do")
        again = run(settings=settings)
        _print(again)
        planned = len(again.plan.actions) if again.plan is not None else 0
        converged = again.status is RunStatus.SUCCEEDED and planned == 0
        if converged:
            out.print("The second reconcile planned 0 actions: everything that can be linked is.")

        out.rule("4. lookups from the state database, both ways")
        store = StateStore(db)
        for hr_id in ("E1001", "E1006", "E2903", "E2901"):
            row = store.map.mapping(hr_id)
            if row is not None:
                out.print(
                    f"HR id {hr_id} -> Protime person {row.protime_id or '-'}: {row.situation}"
                    f" ({row.evidence or row.reason})"
                )
        first = store.map.mapping("E1006")
        if first is not None and first.protime_id is not None:
            for row in store.map.mapping_by_protime_id(first.protime_id):
                out.print(f"Protime person {first.protime_id} -> HR id {row.hr_id}")
        db.dispose()
        _save(sim, settings, folder, port)
    if not converged:
        # The demo doubles as a smoke test (`make demo`): a second run must converge.
        err.print(f"[red]the second reconcile planned {planned} action(s): not converged[/red]")
        raise typer.Exit(1)
    _print_next_steps(people_file, env_file, port)


def _print_next_steps(people_file: Path, env_file: Path, port: int) -> None:
    out.rule("5. carry on with the same tenant")
    out.print(
        f"The simulated tenant stopped with the demo; its people and references are saved in"
        f" {people_file}.\nServe it again (in another terminal; it runs until Ctrl+C):\n"
    )
    out.print(
        f"  {restart_command(people_file, port)}\n", markup=False, highlight=False, soft_wrap=True
    )
    out.print("Then, in this terminal, take every setting the demo used and look around:\n")
    out.print(
        f"  source {shlex.quote(str(env_file))}", markup=False, highlight=False, soft_wrap=True
    )
    idsync = shlex.quote(idsync_command())
    out.print(
        f"  {idsync} status; {idsync} show E1001; {idsync} runs; {idsync} reconcile --dry-run",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def idsync_command() -> str:
    """How to call idsync from another terminal: ``idsync`` when that is what the shell finds,
    else the full path of the one running (``make demo`` runs ``.venv/bin/idsync``, which a new
    terminal does not have on its PATH)."""
    beside = Path(sys.executable).parent / "idsync"
    if not beside.exists():
        return "idsync"
    found = shutil.which("idsync")
    if found is not None and Path(found).resolve() == beside.resolve():
        return "idsync"
    return str(beside.absolute())


PEOPLE_FILE = "protime.json"
ENV_FILE = "idsync.env"


def restart_command(people_file: Path, port: int) -> str:
    """The command that serves the saved demo tenant again: same people, references, client."""
    return shlex.join(
        [
            idsync_command(),
            "simulator",
            "--people-file",
            str(people_file),
            "--port",
            str(port),
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--page-size",
            str(PAGE_SIZE),
        ]
    )


def _save(sim: Simulator, settings: Settings, folder: Path, port: int) -> None:
    """Leave ``folder`` ready to carry on: the tenant as the reconciles left it (served again by
    :func:`restart_command`) and the env file with every setting the demo used."""
    dump = json.dumps(sim.world.dump(), indent=1) + "\n"
    (folder / PEOPLE_FILE).write_text(dump, encoding="utf-8")
    _write_env(folder / ENV_FILE, _env(settings, base_url=f"http://127.0.0.1:{port}"))


def _env(settings: Settings, *, base_url: str) -> dict[str, str]:
    """Every IDSYNC_* variable the demo's runs used, with the restarted tenant's URLs."""
    hr, protime = settings.hr, settings.protime
    assert hr.url is not None  # the demo always sets it
    values = {
        "IDSYNC_DATABASE_URL": settings.state_url,
        "IDSYNC_HR__URL": hr.url.get_secret_value(),
        "IDSYNC_HR__TABLE": hr.table,
        "IDSYNC_HR__ID_COLUMN": hr.id_column,
        "IDSYNC_HR__EMPLOYEE_NUMBER_COLUMN": hr.employee_number_column,
        "IDSYNC_HR__BADGE_NUMBER_COLUMN": hr.badge_number_column,
        "IDSYNC_HR__EMAIL_COLUMN": hr.email_column,
        "IDSYNC_HR__ACTIVE_COLUMN": hr.active_column,
        "IDSYNC_PROTIME__BASE_URL": base_url,
        "IDSYNC_PROTIME__TENANT": protime.tenant,
        "IDSYNC_PROTIME__TOKEN_URL": f"{base_url}/tenants/{TENANT}/connect/token",
        "IDSYNC_PROTIME__CLIENT_ID": protime.client_id,
        "IDSYNC_PROTIME__CLIENT_SECRET": CLIENT_SECRET,
        "IDSYNC_PROTIME__USER_AGENT_COMPANY": protime.user_agent_company,
    }
    return {name: value for name, value in values.items() if value is not None}


def _write_env(path: Path, values: dict[str, str]) -> None:
    lines = [
        "# Written by `idsync demo`: every setting its runs used, against the saved tenant served",
        "# again by the command the demo printed. Use with: source <this file>",
        *(f"export {name}={shlex.quote(value)}" for name, value in values.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _stage_world(sim: Simulator) -> list[tuple[object, ...]]:
    """Shape the simulated people and return HR rows that hold every kind of case."""
    world = sim.world
    people = world.people_list()
    matched, spare = people[:-8], people[-8:]
    rows: list[tuple[object, ...]] = []
    for i, person in enumerate(matched):
        hr_id = f"E{1001 + i}"
        active = 1
        if i < _ALREADY_LINKED:
            world.set_reference(hr_id, person.id)  # linked already: nothing to do
        elif i == _ALREADY_LINKED:
            world.set_reference("OLD-7", person.id)  # drifted: holds a stale value, re-pointed
        elif i == _ALREADY_LINKED + 1:
            world.set_reference(hr_id, person.id)  # HR marks this one inactive: orphaned
            active = 0
        rows.append((hr_id, person.employee_number, person.badge_number, person.email, active))
    # unmatched: nobody in Protime has these numbers
    rows.append(("E2901", "X-9001", None, None, 1))
    rows.append(("E2902", "X-9002", None, None, 1))
    # disputed: two people share one employee number
    world.update_person(spare[0].id, employee_number="DUP-1")
    world.update_person(spare[1].id, employee_number="DUP-1")
    rows.append(("E2903", "DUP-1", None, None, 1))
    # orphaned: Protime holds an HR id that HR no longer has
    world.set_reference("E0999", spare[2].id)
    # invalid: empty id, a forbidden character, padded with white space, a duplicate id
    rows.append(("", "X-9100", None, None, 1))
    rows.append(("E/2905", "X-9101", None, None, 1))
    rows.append((" E2906", "X-9102", None, None, 1))
    rows.append(("E2907", "X-9103", None, None, 1))
    rows.append(("E2907", "X-9104", None, None, 1))
    return rows


def _write_hr(path: Path, rows: list[tuple[object, ...]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE employees (employee_id TEXT, employee_number TEXT, badge TEXT,"
            " email TEXT, active INTEGER)"
        )
        conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", rows)
