"""`idsync config show` (secrets redacted) and `idsync config check` (reach everything once)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from sync.cli._common import (
    ConfigOption,
    SyncOption,
    deployment_and_logging,
    err,
    out,
    print_json,
    settings_and_logging,
    shown,
    state_database,
)
from sync.cli._contracts import document
from sync.config import Settings, redact_http_url, redact_url

if TYPE_CHECKING:
    from sync.hr import Check


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


def show(sync: SyncOption = None, config: ConfigOption = None) -> None:
    """Print the effective settings as JSON, secrets redacted."""
    print_json(redacted(settings_and_logging(sync=sync, config=config)))


def check(
    skip_protime: Annotated[
        bool, typer.Option("--skip-protime", help="Do not contact Protime.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Check everything a run touches, before any write, and create nothing.

    The state database (reachable, schema at head); the HR table or query, every configured column
    and its type, the active column's values, the write-back column and the right to write it (in a
    rolled-back transaction): the HR checks every run makes before it reads; the Protime token
    (with the scopes asked for) and one page of people. A missing active column is a warning.
    Exit 2 when a check fails on a configuration error (the line names the variable), 1 when
    something cannot be reached, 0 when all pass. ``--json`` prints the checks as one document
    (for a deploy pipeline's gate), with the same exit code.
    """

    deployment = deployment_and_logging(config=config)
    names = [sync] if sync is not None else list(deployment.syncs)
    chosen = {name: deployment.settings_for(name) for name in names}
    # The state database is shared: checked once. Each sync's own checks name it, unless the
    # environment alone describes the one sync (its lines read as before there were many).
    checks: list[Check] = [_check_state(next(iter(chosen.values())))]
    for name, settings in chosen.items():
        own = [*_check_hr(settings)]
        if not skip_protime:
            own += _check_protime(settings)
        if deployment.source is not None:
            own = [dataclasses.replace(c, name=f"[{name}] {c.name}") for c in own]
        checks += own
    failed = [c for c in checks if not c.ok]
    code = _CONFIG_EXIT if any(c.config for c in failed) else 1 if failed else 0
    if as_json:
        print_json(
            document(
                "config-check",
                {
                    "ok": not failed,
                    "exit_code": code,
                    "checks": [
                        {"name": c.name, "ok": c.ok, "detail": c.detail, "config_error": c.config}
                        for c in checks
                    ],
                },
            )
        )
    else:
        for c in checks:
            mark = (
                "[red]FAIL[/red]"
                if not c.ok
                else "[yellow]warn[/yellow]"
                if c.warning
                else "[green]ok[/green]  "
            )
            (out if c.ok else err).print(f"{mark} {shown(c.name)}: {shown(c.detail)}")
    if code:
        raise typer.Exit(code)


def _check_state(settings: Settings) -> Check:
    from sync.errors import IdsyncError
    from sync.hr import Check
    from sync.state import check_schema

    name = f"state database {redact_url(settings.state_url)}"
    try:
        db = state_database(settings)
    except IdsyncError as exc:
        return Check(name, ok=False, detail=str(exc), config=exc.exit_code == _CONFIG_EXIT)
    try:
        check_schema(db)  # a missing SQLite file is reported, never created
    except IdsyncError as exc:
        return Check(name, ok=False, detail=str(exc), config=exc.exit_code == _CONFIG_EXIT)
    except Exception as exc:
        return Check(name, ok=False, detail=f"unreachable: {type(exc).__name__}")
    finally:
        db.dispose()
    return Check(name, ok=True, detail="reachable, schema at head")


def _check_hr(settings: Settings) -> list[Check]:
    from sync.errors import IdsyncError
    from sync.hr import Check, probe_hr, read_hr

    try:
        settings.hr.require()
    except IdsyncError as exc:
        return [Check("HR source", ok=False, detail=str(exc), config=True)]
    checks = probe_hr(settings=settings.hr, url=settings.hr_url)
    if not all(c.ok for c in checks):
        return checks
    name = f"HR employees {redact_url(settings.hr_url)}"
    try:
        snapshot = read_hr(
            settings=settings.hr,
            url=settings.hr_url,
            max_value_length=settings.protime.max_value_length,
        )
    except IdsyncError as exc:
        return [
            *checks,
            Check(name, ok=False, detail=str(exc), config=exc.exit_code == _CONFIG_EXIT),
        ]
    detail = f"{len(snapshot.employees)} valid employee(s), {len(snapshot.invalid)} invalid row(s)"
    return [*checks, Check(name, ok=True, detail=detail)]


def _check_protime(settings: Settings) -> list[Check]:
    from sync.errors import IdsyncError
    from sync.hr import Check
    from sync.protime import ProtimeClient

    token_url = settings.protime.resolved_token_url
    name = (
        f"Protime token endpoint {redact_http_url(token_url)}"
        if token_url
        else "Protime token endpoint (IDSYNC_PROTIME__TENANT or IDSYNC_PROTIME__TOKEN_URL not set)"
    )
    try:
        settings.protime.require()
    except IdsyncError as exc:
        return [Check(name, ok=False, detail=str(exc), config=True)]
    unresolved = _unresolved_host(settings)
    if unresolved is not None:
        return [Check(name, ok=False, detail=unresolved)]
    results: list[Check] = []

    async def probe() -> None:
        async with ProtimeClient(settings.protime) as client:
            await client.check_token()
            results.append(
                Check(name, ok=True, detail=f"token granted for {settings.protime.scopes}")
            )
            async for page in client.iter_people():
                results.append(
                    Check(
                        "Protime people",
                        ok=True,
                        detail=f"first page read: {len(page)} person(s)",
                    )
                )
                break

    try:
        asyncio.run(probe())
    except IdsyncError as exc:
        what = name if not results else "Protime people"
        results.append(Check(what, ok=False, detail=str(exc)))
    return results


def _unresolved_host(settings: Settings) -> str | None:
    """Why a Protime host name does not resolve, naming the variable to fix; None when all do.

    Resolved once, before the client: the client retries a connection error with backoff (half a
    minute and more), and a name that does not resolve now will not resolve on the next try of
    the same check either (issue 22).
    """
    protime = settings.protime
    hosts: list[tuple[str | None, str]] = []
    if protime.token_url:
        hosts.append((protime.token_url, "IDSYNC_PROTIME__TOKEN_URL"))
    else:
        hosts.append(
            (
                protime.resolved_token_url,
                (
                    "IDSYNC_PROTIME__TOKEN_URL (unset, so derived from IDSYNC_PROTIME__TENANT"
                    " and IDSYNC_PROTIME__ENVIRONMENT; set it to the token endpoint to use)"
                ),
            )
        )
    hosts.append((protime.base_url, "IDSYNC_PROTIME__BASE_URL"))
    for url, variable in hosts:
        parts = urlsplit(url or "")
        if not parts.hostname:
            continue
        try:
            socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return (
                f"the host {parts.hostname!r} does not resolve ({exc.strerror or exc}):"
                f" check {variable}"
            )
        except (OSError, UnicodeError, ValueError):
            continue  # not a name-resolution failure: the client reports it as it is
    return None


_CONFIG_EXIT = 2
