"""`idsync demo`: a whole reconcile against the simulator over real HTTP, in a scratch folder.

Builds a sample HR SQLite database and a matching simulated Protime tenant that holds every kind
of case (already linked, to write, drifted, orphaned, unmatched, disputed, invalid), then runs a
dry run, a real reconcile, a second reconcile that plans nothing, and a few lookups both ways.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sync.cli._common import err, out, require_simulator

if TYPE_CHECKING:
    from sync.simulator import Simulator

TENANT = "acme"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"  # noqa: S105 - the simulator's published demo credential
_ALREADY_LINKED = 3


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    folder: Annotated[
        Path, typer.Option("--folder", help="Where to put the demo databases (recreated).")
    ] = Path("demo"),
    people: Annotated[int, typer.Option("--people", min=20, help="Simulated people.")] = 40,
) -> None:
    """Run idsync end to end against the simulator and show what it did."""
    require_simulator("demo")
    from sync.config import HRSettings, ProtimeSettings, Settings
    from sync.logging import configure_logging
    from sync.reconcile import RunStatus, run
    from sync.simulator import Simulator, SimulatorConfig, serve_in_thread
    from sync.state import StateStore, create_state_engine, upgrade

    configure_logging(level="WARNING", fmt="auto")
    folder.mkdir(parents=True, exist_ok=True)
    hr_db, state_db = folder / "hr.db", folder / "state.db"
    for path in (hr_db, state_db):
        path.unlink(missing_ok=True)

    sim = Simulator(SimulatorConfig(tenant=TENANT, people=people, seed=7, page_size=10))
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
        engine = create_state_engine(settings.state_url)
        upgrade(engine)

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
        store = StateStore(engine)
        for hr_id in ("E1001", "E1006", "E2903", "E2901"):
            row = store.mapping(hr_id)
            if row is not None:
                out.print(
                    f"HR id {hr_id} -> Protime person {row.protime_id or '-'}: {row.situation}"
                    f" ({row.evidence or row.reason})"
                )
        first = store.mapping("E1006")
        if first is not None and first.protime_id is not None:
            for row in store.mapping_by_protime_id(first.protime_id):
                out.print(f"Protime person {first.protime_id} -> HR id {row.hr_id}")
        engine.dispose()
    if not converged:
        # The demo doubles as a smoke test (`make demo`): a second run must converge.
        err.print(f"[red]the second reconcile planned {planned} action(s): not converged[/red]")
        raise typer.Exit(1)
    out.print(
        f"\nLook around: export IDSYNC_DATABASE_URL=sqlite:///{state_db}\n"
        "then: idsync status, idsync show E1001, idsync runs, idsync export --format json"
    )


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
