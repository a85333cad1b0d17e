"""`idsync simulator`: serve the Protime Connector API simulator over HTTP (docs/simulator.md)."""

from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, get_origin

import typer

from sync.simulator._config import FaultOption, fault_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.simulator import MultiSimulator
    from sync.simulator._config import DeltaOrder

_BEHAVIOUR = "Behaviour (the API assumptions in docs/simulator.md)"
_FAULTS = "Faults and rate limit"
_DATA = "Data"


def _with_fault_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` one option per fault setting in place of its ``**faults``.

    The settings are declared once, as the fields of ``sync.simulator.Faults``; typer reads the
    options from the signature, so the generated ones go there, each under its field's name.
    """
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    generated = [
        inspect.Parameter(
            setting.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=setting.default,
            annotation=_annotation(setting.type, setting.option),
        )
        for setting in fault_settings()
    ]
    command.__signature__ = signature.replace(parameters=[*kept, *generated])  # type: ignore[attr-defined]
    return command


def _annotation(kind: Any, option: FaultOption) -> Any:
    """``Annotated[type, typer.Option(...)]`` of one fault setting, as typer reads it."""
    # A choice stays a plain str option, as it was: the simulator's check names the values.
    shown = str if get_origin(kind) is Literal else kind
    decls = [option.flag] if option.flag else []
    info = typer.Option(*decls, help=option.help, rich_help_panel=_FAULTS)
    return Annotated[shown, info]


def register(app: typer.Typer) -> None:
    @app.command("simulator")
    @_with_fault_options
    def simulator(
        *,
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on (0 = a free port).")] = 8089,
        tenant: Annotated[
            str, typer.Option(help="Tenant name (token URL /tenants/<tenant>/connect/token).")
        ] = "acme",
        people: Annotated[
            int, typer.Option(help="Generate this many people.", rich_help_panel=_DATA)
        ] = 1000,
        seed: Annotated[
            int,
            typer.Option(
                help="Seed of the generated people (and of faults unless --fault-seed).",
                rich_help_panel=_DATA,
            ),
        ] = 7,
        people_file: Annotated[
            Path | None,
            typer.Option(
                help="Load people (and references) from this JSON file instead of generating.",
                rich_help_panel=_DATA,
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        out_of_service_share: Annotated[
            float,
            typer.Option(
                help="Share of generated people who are out of service.", rich_help_panel=_DATA
            ),
        ] = 0.05,
        page_size: Annotated[
            int, typer.Option(help="Items per list page.", rich_help_panel=_BEHAVIOUR)
        ] = 100,
        client_id: Annotated[str, typer.Option(help="Accepted client id.")] = "demo-client",
        client_secret: Annotated[
            str,
            typer.Option(help="Accepted client secret.", envvar="IDSYNC_SIMULATOR_CLIENT_SECRET"),
        ] = "demo-secret",  # noqa: S107 - the simulator's documented demo credential
        scopes: Annotated[
            str,
            typer.Option(help="Space-separated scopes the client may be granted."),
        ] = "connector-protimeapi-people.read connector-protimeapi-external-references.write",
        token_ttl: Annotated[
            float,
            typer.Option(
                help="Access token lifetime (expires_in), seconds.", rich_help_panel=_BEHAVIOUR
            ),
        ] = 1800.0,
        user_agent: Annotated[
            str,
            typer.Option(
                help="Missing User-Agent: 'required' (400) or 'optional'.",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = "required",
        scope_error_status: Annotated[
            int,
            typer.Option(
                help="Status for a missing scope: 403 or 401.", rich_help_panel=_BEHAVIOUR
            ),
        ] = 403,
        invalid_client_status: Annotated[
            int,
            typer.Option(
                help="Status for a bad client on the token endpoint: 400 or 401.",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = 400,
        predefined_write_status: Annotated[
            int,
            typer.Option(
                help="Status for '@' names on reference endpoints: 400 or 403.",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = 400,
        one_value_per_person: Annotated[
            str,
            typer.Option(
                help="Second value for the same person and name: 'conflict' (409) or 'replace'.",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = "conflict",
        max_value_length: Annotated[
            int, typer.Option(help="Longest accepted reference value.", rich_help_panel=_BEHAVIOUR)
        ] = 255,
        max_uri_length: Annotated[
            int, typer.Option(help="Longer URIs answer 414.", rich_help_panel=_BEHAVIOUR)
        ] = 4096,
        max_body_bytes: Annotated[
            int, typer.Option(help="Larger request bodies answer 400.", rich_help_panel=_BEHAVIOUR)
        ] = 65536,
        delta_token_ttl: Annotated[
            float,
            typer.Option(
                help="A delta's lifetime after its last request, seconds (then 410).",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = 72 * 3600.0,
        delta_order: Annotated[
            str,
            typer.Option(
                help="Order of the items in one set of delta changes: 'chronological',"
                " 'newest-first' or 'shuffled' (seeded).",
                rich_help_panel=_BEHAVIOUR,
            ),
        ] = "chronological",
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
        tenants_file: Annotated[
            Path | None,
            typer.Option(
                help="Serve many tenants from this TOML file (one [tenants.<name>] table each;"
                " docs/simulator.md, 'Many tenants'). Only --host, --port and --log-level"
                " combine with it.",
                dir_okay=False,
            ),
        ] = None,
        ctx: typer.Context,
        **faults: Any,  # the fault settings' options, made by _with_fault_options
    ) -> None:
        """Serve a Protime Connector API simulator until SIGINT/SIGTERM.

        Test-only admin surface (no token): /_sim/people, /_sim/references, /_sim/counters,
        /_sim/requests, /_sim/faults, /_sim/reset, /_sim/state, /_sim/expire-tokens, /_sim/clock.
        """
        from sync.cli._common import require_simulator
        from sync.errors import ConfigError

        require_simulator("simulator")
        if tenants_file is not None:
            _serve_tenants(ctx, tenants_file, host, port, log_level)
            return
        from sync.simulator import ClientSpec, Simulator, SimulatorConfig, run_server

        if people_file is not None and not people_file.is_file():
            raise ConfigError(f"--people-file {people_file}: no such file")
        if user_agent not in ("required", "optional"):
            raise ConfigError("--user-agent must be 'required' or 'optional'")
        try:
            config = SimulatorConfig(
                tenant=tenant,
                people=people,
                seed=seed,
                people_file=people_file,
                out_of_service_share=out_of_service_share,
                page_size=page_size,
                clients=(ClientSpec(client_id, client_secret, frozenset(scopes.split())),),
                token_ttl_seconds=token_ttl,
                user_agent_required=user_agent == "required",
                scope_error_status=cast("Literal[401, 403]", scope_error_status),
                invalid_client_status=cast("Literal[400, 401]", invalid_client_status),
                predefined_write_status=cast("Literal[400, 403]", predefined_write_status),
                one_value_per_person=cast("Literal['conflict', 'replace']", one_value_per_person),
                max_value_length=max_value_length,
                max_uri_length=max_uri_length,
                max_body_bytes=max_body_bytes,
                delta_token_ttl_seconds=delta_token_ttl,
                delta_order=cast("DeltaOrder", delta_order),
                **faults,
            )
            sim = Simulator(config)
        except (ValueError, OSError) as exc:
            # ConfigError, not typer.BadParameter: the entry point maps it to exit code 2.
            raise ConfigError(f"simulator settings: {exc}") from None

        def ready(base_url: str) -> None:
            # The secret is printed on purpose: it is the simulator's own demo credential, chosen
            # on this command line, and the caller needs it to configure idsync.
            lines = [
                f"Protime simulator for tenant {tenant!r}: {len(sim.world.people)} people",
                "idsync settings (each the exact value the variable wants):",
                *(f"  {line}" for line in banner_settings(base_url, sim.token_path)),
                "For curl and scripts (not idsync settings; idsync adds the API path itself):",
                f"  API base URL : {base_url}{sim.api_path}",
                f"  token URL    : {base_url}{sim.token_path}",
                f"  client id    : {client_id}",
                f"  client secret: {client_secret}",
                f"  scopes       : {scopes}",
                f"  admin (test-only, no token): {base_url}/_sim/state",
                "Press Ctrl+C to stop.",
            ]
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()

        def banner_settings(base_url: str, token_path: str) -> list[str]:
            from sync.config import DEFAULT_SCOPES

            shown = {
                "BASE_URL": base_url,
                "TENANT": tenant,
                "TOKEN_URL": f"{base_url}{token_path}",
                "CLIENT_ID": client_id,
                "CLIENT_SECRET": client_secret,
            }
            if set(scopes.split()) != set(DEFAULT_SCOPES.split()):
                shown["SCOPES"] = scopes
            # Quoted for a shell only when a value needs it; a URL or plain name shows as it is.
            return [f"IDSYNC_PROTIME__{k}={shlex.quote(v)}" for k, v in shown.items()]

        try:
            run_server(sim, host, port, on_ready=ready, log_level=log_level)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# The options a tenants file does not replace: where to listen and how much to log.
_SERVER_OPTIONS = frozenset({"host", "port", "log_level", "tenants_file"})


def _serve_tenants(
    ctx: typer.Context, tenants_file: Path, host: str, port: int, log_level: str
) -> None:
    """``idsync simulator --tenants-file``: every tenant of the file in one server."""
    from sync.errors import ConfigError
    from sync.simulator import MultiSimulator, TenantsFileError, load_tenants_file, run_server

    given = [
        param.opts[0]
        for param in ctx.command.params
        if param.name is not None
        and param.name not in _SERVER_OPTIONS
        and _given(ctx.get_parameter_source(param.name))
    ]
    if given:
        flags = ", ".join(given)
        raise ConfigError(
            f"{flags} cannot be combined with --tenants-file: set it per tenant in the file"
            " (or in its [defaults] table)"
        )
    try:
        multi = MultiSimulator(load_tenants_file(tenants_file))
    except TenantsFileError as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"tenants file {tenants_file}: {exc}") from None

    def ready(base_url: str) -> None:
        sys.stdout.write("\n".join(tenants_banner(multi, base_url)) + "\n")
        sys.stdout.flush()

    try:
        run_server(multi, host, port, on_ready=ready, log_level=log_level)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _given(source: object) -> bool:
    """Whether an option's value came from the command line or the environment, not its default.

    By the source's name: typer carries its own copy of click, whose ParameterSource is another
    class than the one ``click`` would import.
    """
    return source is not None and getattr(source, "name", "DEFAULT") not in (
        "DEFAULT",
        "DEFAULT_MAP",
    )


def tenants_banner(multi: MultiSimulator, base_url: str) -> list[str]:
    """What ``--tenants-file`` prints once bound: per tenant, the settings idsync wants."""
    from sync.config import DEFAULT_SCOPES

    lines = [
        f"Protime simulator for {len(multi)} tenants: {multi.people} people",
        "idsync settings per tenant (each the exact value the variable wants):",
    ]
    for name in multi.tenants:
        sim = multi.tenant(name)
        urls = multi.urls(name, base_url)
        client = sim.config.clients[0]
        shown = {
            "BASE_URL": urls.base_url,
            "TENANT": name,
            "TOKEN_URL": urls.token_url,
            "CLIENT_ID": client.client_id,
            "CLIENT_SECRET": client.client_secret,
        }
        if client.scopes != frozenset(DEFAULT_SCOPES.split()):
            shown["SCOPES"] = " ".join(sorted(client.scopes))
        lines.append(f"tenant {name!r}: {len(sim.world.people)} people")
        lines += [f"  IDSYNC_PROTIME__{k}={shlex.quote(v)}" for k, v in shown.items()]
    lines += [
        "For curl and scripts: a tenant's API is its BASE_URL + /connector/protimeapi/api/v1",
        (
            f"  admin (test-only, no token): {base_url}/_sim/tenants,"
            f" {base_url}/_sim/request-records, and BASE_URL/_sim/state per tenant"
        ),
        "Press Ctrl+C to stop.",
    ]
    return lines
