"""Configuration of the simulator: the world it starts with and every behaviour that the API
marks *configurable*. Frozen, validated once at construction; runtime changes go through
``Simulator.set_faults`` (faults only) so a running world never sees half a configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

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
class Faults:
    """The behaviours a test may switch at runtime: rate limit, injected errors, latency, drops.

    Shares are probabilities drawn per API request from one RNG seeded with ``fault_seed``; the
    sequence of decisions is therefore reproducible for a given order of requests.
    """

    rate_limit_per_second: float | None = None
    rate_limit_burst: int = 10
    retry_after_style: RetryAfterStyle = "whole"
    fault_rate_429: float = 0.0
    fault_rate_500: float = 0.0
    fault_rate_503: float = 0.0
    fault_drop_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    empty_page_rate: float = 0.0
    retry_after_seconds: float = 1.0
    faults_on_token: bool = False
    fault_seed: int = 7
    fault_every_429: int = 0  # every Nth API request answers 429, whatever the RNG says (0: off)
    # Share of GETs on /people, /people/{id} and /delta/people answered 409 Conflict (the docs
    # list 409 among a GET's answers on collections with delta).
    fault_rate_409_get: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "fault_rate_429",
            "fault_rate_500",
            "fault_rate_503",
            "fault_rate_409_get",
            "fault_drop_rate",
            "empty_page_rate",
        ):
            _check_share(name, getattr(self, name))
        total = self.fault_rate_429 + self.fault_rate_500 + self.fault_rate_503
        if total + self.fault_rate_409_get + self.fault_drop_rate > 1.0 + 1e-9:
            raise ValueError(
                "fault_rate_429 + fault_rate_500 + fault_rate_503 + fault_rate_409_get"
                " + fault_drop_rate > 1"
            )
        if self.rate_limit_per_second is not None and not self.rate_limit_per_second > 0:
            raise ValueError("rate_limit_per_second must be > 0 (or None for no limit)")
        if self.rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be >= 1")
        if self.fault_every_429 < 0:
            raise ValueError("fault_every_429 must be >= 0 (0: off)")
        if self.retry_after_style not in ("whole", "fractional", "none"):
            raise ValueError("retry_after_style must be 'whole', 'fractional' or 'none'")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.retry_after_seconds < 0:
            raise ValueError("latency and retry_after_seconds must be >= 0")


DEFAULT_CLIENTS: tuple[ClientSpec, ...] = (ClientSpec("demo-client", "demo-secret"),)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator starts from. Defaults follow the API assumptions in docs/simulator.md."""

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
    # Faults (also changeable at runtime through Simulator.set_faults).
    rate_limit_per_second: float | None = None
    rate_limit_burst: int = 10
    retry_after_style: RetryAfterStyle = "whole"
    fault_rate_429: float = 0.0
    fault_rate_500: float = 0.0
    fault_rate_503: float = 0.0
    fault_drop_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    empty_page_rate: float = 0.0
    retry_after_seconds: float = 1.0
    faults_on_token: bool = False
    fault_seed: int | None = None
    fault_every_429: int = 0
    fault_rate_409_get: float = 0.0
    # Where the in-process transport pretends to live; any host works, this one reads well in logs.
    host_suffix: str = "sim.local"

    def __post_init__(self) -> None:
        self._check_world()
        self._check_behaviour()
        self.faults()  # validates the fault fields with the same rules as set_faults

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
        """The fault settings this configuration starts with."""
        return Faults(
            rate_limit_per_second=self.rate_limit_per_second,
            rate_limit_burst=self.rate_limit_burst,
            retry_after_style=self.retry_after_style,
            fault_rate_429=self.fault_rate_429,
            fault_rate_500=self.fault_rate_500,
            fault_rate_503=self.fault_rate_503,
            fault_drop_rate=self.fault_drop_rate,
            latency_ms=self.latency_ms,
            latency_jitter_ms=self.latency_jitter_ms,
            empty_page_rate=self.empty_page_rate,
            retry_after_seconds=self.retry_after_seconds,
            faults_on_token=self.faults_on_token,
            fault_seed=self.seed if self.fault_seed is None else self.fault_seed,
            fault_every_429=self.fault_every_429,
            fault_rate_409_get=self.fault_rate_409_get,
        )

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
