"""`idsync config show` (secrets redacted) and `idsync config check` (reach everything once)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from sync.cli._common import err, out, print_json, settings_and_logging, shown
from sync.config import Settings, redact_http_url, redact_url


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
    config_app.command("show")(show)
    config_app.command("check")(check)
    app.add_typer(config_app, name="config")


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict with every secret replaced: fit to print or log."""
    data = settings.model_dump(mode="json")
    data["database_url"] = redact_url(settings.state_url)
    data["hr"]["url"] = redact_url(settings.hr_url) if settings.hr.url else "(the state database)"
    if settings.protime.client_secret is not None:
        data["protime"]["client_secret"] = "********"  # noqa: S105 - a mask, not a secret
    data["protime"]["token_url"] = redact_http_url(settings.protime.resolved_token_url)
    data["protime"]["base_url"] = redact_http_url(settings.protime.base_url)
    return data


def show() -> None:
    """Print the effective settings as JSON, secrets redacted."""
    print_json(redacted(settings_and_logging()))


def check(
    skip_protime: Annotated[
        bool, typer.Option("--skip-protime", help="Do not contact the token endpoint.")
    ] = False,
) -> None:
    """Reach the state DB, the HR DB and the Protime token endpoint; say what failed (exit 1)."""
    settings = settings_and_logging()
    results: list[tuple[str, bool, str]] = [_check_state(settings), _check_hr(settings)]
    if not skip_protime:
        results.append(_check_protime(settings))
    for name, ok, detail in results:
        mark = "[green]ok[/green]  " if ok else "[red]FAIL[/red]"
        (out if ok else err).print(f"{mark} {shown(name)}: {shown(detail)}")
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(1)


def _check_state(settings: Settings) -> tuple[str, bool, str]:
    from sync.errors import IdsyncError
    from sync.state import check_schema, create_state_engine

    name = f"state database {redact_url(settings.state_url)}"
    engine = create_state_engine(settings.state_url)
    try:
        check_schema(engine)
    except IdsyncError as exc:
        return name, False, str(exc)
    except Exception as exc:
        return name, False, f"unreachable: {type(exc).__name__}"
    finally:
        engine.dispose()
    return name, True, "reachable, schema at head"


def _check_hr(settings: Settings) -> tuple[str, bool, str]:
    from sync.errors import IdsyncError
    from sync.hr import read_hr

    name = f"HR source {redact_url(settings.hr_url)}"
    try:
        snapshot = read_hr(
            settings=settings.hr,
            url=settings.hr_url,
            max_value_length=settings.protime.max_value_length,
        )
    except IdsyncError as exc:
        return name, False, str(exc)
    return (
        name,
        True,
        f"{len(snapshot.employees)} valid employee(s), {len(snapshot.invalid)} invalid row(s)",
    )


def _check_protime(settings: Settings) -> tuple[str, bool, str]:
    from sync.errors import IdsyncError
    from sync.protime import ProtimeClient

    name = f"Protime token endpoint {redact_http_url(settings.protime.resolved_token_url)}"
    try:
        settings.protime.require()

        async def fetch() -> None:
            async with ProtimeClient(settings.protime) as client:
                await client.check_token()

        asyncio.run(fetch())
    except IdsyncError as exc:
        return name, False, str(exc)
    return name, True, "token granted"
