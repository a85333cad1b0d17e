"""Configuration of the simulator: the world it starts with and every behaviour that the API
marks *configurable*. Frozen, validated once at construction; runtime changes go through
``Simulator.set_faults`` (faults only) so a running world never sees half a configuration.

This module imports nothing heavy: every ``idsync`` start reads the fault settings' declaration
here to build the options of ``idsync simulator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, get_args, get_type_hints

if TYPE_CHECKING:
    from pathlib import Path

PEOPLE_READ = "connector-protimeapi-people.read"
REFERENCES_WRITE = "connector-protimeapi-external-references.write"
REFERENCES_READ = "connector-protimeapi-external-references.read"
IDSYNC_SCOPES: frozenset[str] = frozenset({PEOPLE_READ, REFERENCES_WRITE})

API_PREFIX = "/connector/protimeapi/api/v1"
_MAX_PAGE_SIZE = 10_000
_MIN_LIMIT = 64

RetryAfterStyle = Literal["whole", "fractional", "none"]
OneValuePolicy = Literal["conflict", "replace"]
# The order of the items in one set of delta changes (the docs promise no order).
DeltaOrder = Literal["chronological", "newest-first", "shuffled"]
DELTA_ORDERS: tuple[DeltaOrder, ...] = ("chronological", "newest-first", "shuffled")

_T = TypeVar("_T")
_OPTION = "fault_option"  # the field metadata key of a fault setting's FaultOption


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """A registered API client: its credentials and the scopes it may be granted."""

    client_id: str
    client_secret: str
    scopes: frozenset[str] = IDSYNC_SCOPES

    def __repr__(self) -> str:
        # The secret never reaches a log line, even through a debug repr of the config.
        return f"ClientSpec(client_id={self.client_id!r}, scopes={sorted(self.scopes)!r})"


def _check_share(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class FaultOption:
    """What a fault setting declares besides its name, type and default: its help and bounds."""

    help: str
    flag: str = ""  # its option of `idsync simulator`; empty: the name in dashes
    on_cli: bool = True
    low: float | None = None
    high: float | None = None
    above: bool = False  # ``low`` itself is refused
    note: str = ""  # what a refusal adds, e.g. what 0 or None means
    choices: tuple[str, ...] = ()

    def problem(self, name: str, value: object) -> str | None:
        """Why ``value`` is refused for the setting ``name``, or None when it is allowed."""
        if self.choices:
            if value in self.choices:
                return None
            *most, last = (repr(c) for c in self.choices)
            return f"{name} must be {', '.join(most)} or {last}"
        low, high = self.low, self.high
        if low is None and high is None:
            return None
        if not isinstance(value, int | float):
            return f"{name} must be a number, got {value!r}"
        if low is not None and high is not None:
            if low <= value <= high:
                return None
            return f"{name} must be between {low:g} and {high:g}, got {value!r}"
        if low is not None and not (value > low if self.above else value >= low):
            return f"{name} must be {'>' if self.above else '>='} {low:g}{self.note}"
        return None


class FaultSetting(NamedTuple):
    """One fault setting as the command line needs it."""

    name: str
    type: Any
    default: Any
    option: FaultOption


def _fault(default: _T, help: str, **option: Any) -> _T:  # noqa: A002 - the option's help
    """Declare a fault setting: the ``Faults`` field with its help and bounds."""
    return field(default=default, metadata={_OPTION: FaultOption(help, **option)})


def _share(default: float, help: str, **option: Any) -> float:  # noqa: A002 - the option's help
    return _fault(default, help, low=0.0, high=1.0, **option)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """The behaviours a test may switch at runtime: rate limit, injected errors, latency, drops.

    Each is declared once, here: its type, default, help and bounds make the option of
    ``idsync simulator`` (in this order), the ``SimulatorConfig`` field of the same name and the
    checks of both. Shares are probabilities drawn per API request from one RNG seeded with
    ``fault_seed``; the sequence of decisions is therefore reproducible for a given order of
    requests.
    """

    rate_limit_per_second: float | None = _fault(
        None,
        "Requests per second per client (token bucket); unset = no limit.",
        flag="--rate-limit",
        low=0.0,
        above=True,
        note=" (or None for no limit)",
    )
    rate_limit_burst: int = _fault(10, "Token bucket size.", low=1)
    retry_after_style: RetryAfterStyle = _fault(  # noqa: RUF009 - _fault gives a dataclass field
        "whole",
        "Retry-After on 429/503: 'whole' seconds, 'fractional' or 'none'.",
        flag="--retry-after",
        choices=get_args(RetryAfterStyle),
    )
    retry_after_seconds: float = _fault(1.0, "Retry-After of injected 429/503.", low=0.0)
    fault_rate_429: float = _share(0.0, "Share of API requests answered 429.", flag="--fault-429")
    fault_rate_500: float = _share(0.0, "Share of API requests answered 500.", flag="--fault-500")
    fault_rate_503: float = _share(0.0, "Share of API requests answered 503.", flag="--fault-503")
    # The docs list 409 among a GET's answers on collections with delta.
    fault_rate_409_get: float = _share(
        0.0, "Share of GETs on people and the delta answered 409 Conflict.", flag="--fault-409-get"
    )
    fault_drop_rate: float = _share(
        0.0, "Share of API requests whose connection is dropped mid-answer.", flag="--fault-drop"
    )
    latency_ms: float = _fault(0.0, "Added latency per API request, ms.", low=0.0)
    latency_jitter_ms: float = _fault(0.0, "Extra random latency 0..N ms.", low=0.0)
    empty_page_rate: float = _share(0.0, "Share of list pages answered empty with a nextLink.")
    faults_on_token: bool = _fault(False, "Apply faults to the token endpoint too.")  # noqa: FBT003
    # None: the world's seed, which SimulatorConfig.faults() fills in.
    fault_seed: int | None = _fault(None, "Seed of fault decisions (default: --seed).")
    # A steady rate-limit storm for the chaos suite; set in code or through /_sim/faults only.
    fault_every_429: int = _fault(
        0,
        "Every Nth API request answers 429, whatever the RNG says (0: off).",
        on_cli=False,
        low=0,
        note=" (0: off)",
    )

    def __post_init__(self) -> None:
        self._check_faults()

    def _check_faults(self) -> None:
        for f in fields(Faults):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            problem = f.metadata[_OPTION].problem(f.name, value)
            if problem is not None:
                raise ValueError(problem)
        total = self.fault_rate_429 + self.fault_rate_500 + self.fault_rate_503
        if total + self.fault_rate_409_get + self.fault_drop_rate > 1.0 + 1e-9:
            raise ValueError(
                "fault_rate_429 + fault_rate_500 + fault_rate_503 + fault_rate_409_get"
                " + fault_drop_rate > 1"
            )


def fault_settings() -> list[FaultSetting]:
    """The fault settings that are options of ``idsync simulator``, in declaration order."""
    hints = get_type_hints(Faults)
    return [
        FaultSetting(f.name, hints[f.name], f.default, f.metadata[_OPTION])
        for f in fields(Faults)
        if f.metadata[_OPTION].on_cli
    ]


DEFAULT_CLIENTS: tuple[ClientSpec, ...] = (ClientSpec("demo-client", "demo-secret"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig(Faults):
    """Everything the simulator starts from. Defaults follow the API assumptions in docs/simulator.md.

    The fault settings it starts with are the inherited ``Faults`` fields (also changeable at
    runtime through ``Simulator.set_faults``).
    """

    tenant: str = "acme"
    people: int = 0
    seed: int = 7
    people_file: Path | None = None
    out_of_service_share: float = 0.05
    page_size: int = 100
    clients: tuple[ClientSpec, ...] = DEFAULT_CLIENTS
    token_ttl_seconds: float = 1800.0
    user_agent_required: bool = True
    scope_error_status: Literal[401, 403] = 403
    invalid_client_status: Literal[400, 401] = 400
    predefined_write_status: Literal[400, 403] = 400
    one_value_per_person: OneValuePolicy = "conflict"
    max_value_length: int = 255
    max_uri_length: int = 4096
    max_body_bytes: int = 64 * 1024
    delta_token_ttl_seconds: float = 72 * 3600.0
    delta_order: DeltaOrder = "chronological"
    # Where the in-process transport pretends to live; any host works, this one reads well in logs.
    host_suffix: str = "sim.local"

    def __post_init__(self) -> None:
        self._check_world()
        self._check_behaviour()
        self._check_faults()

    def _check_world(self) -> None:
        if not self.tenant or not all(c.isalnum() or c == "-" for c in self.tenant):
            raise ValueError("tenant must be letters, digits and '-'")
        if self.people < 0:
            raise ValueError("people must be >= 0")
        if not 1 <= self.page_size <= _MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {_MAX_PAGE_SIZE}")
        if not self.clients:
            raise ValueError("at least one client is needed")
        if len({c.client_id for c in self.clients}) != len(self.clients):
            raise ValueError("client ids must be unique")
        _check_share("out_of_service_share", self.out_of_service_share)

    def _check_behaviour(self) -> None:
        if self.token_ttl_seconds <= 0 or self.delta_token_ttl_seconds <= 0:
            raise ValueError("token lifetimes must be > 0")
        choices: dict[str, tuple[object, ...]] = {
            "scope_error_status": (401, 403),
            "invalid_client_status": (400, 401),
            "predefined_write_status": (400, 403),
            "one_value_per_person": ("conflict", "replace"),
            "delta_order": DELTA_ORDERS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}")
        if self.max_value_length < 1:
            raise ValueError("max_value_length must be >= 1")
        if self.max_uri_length < _MIN_LIMIT or self.max_body_bytes < _MIN_LIMIT:
            raise ValueError(f"max_uri_length and max_body_bytes must be >= {_MIN_LIMIT}")

    def faults(self) -> Faults:
        """The fault settings this configuration starts with (``fault_seed`` filled in)."""
        values = {f.name: getattr(self, f.name) for f in fields(Faults)}
        return Faults(**{**values, "fault_seed": self.order_seed})

    @property
    def order_seed(self) -> int:
        """The seed of the ``shuffled`` delta order: ``fault_seed``, else ``seed`` (fixed for the
        simulator's life, so the order of one set of changes never moves between its pages)."""
        return self.seed if self.fault_seed is None else self.fault_seed

    def client(self, client_id: str) -> ClientSpec | None:
        """The registered client with this id, if any."""
        for spec in self.clients:
            if spec.client_id == client_id:
                return spec
        return None
