"""The public names of ``sync.simulator``, imported together on the first use of any of them."""

from __future__ import annotations

from sync.simulator._api import DroppedConnectionError
from sync.simulator._config import (
    API_PREFIX,
    DEFAULT_CLIENTS,
    DELTA_ORDERS,
    IDSYNC_SCOPES,
    PEOPLE_READ,
    REFERENCES_READ,
    REFERENCES_WRITE,
    ClientSpec,
    Faults,
    SimulatorConfig,
)
from sync.simulator._multi import (
    TENANT_NAME_PATTERN,
    TENANT_PREFIX,
    MultiSimulator,
    TenantUrls,
    tenant_name_problem,
)
from sync.simulator._people import (
    PeopleDocumentError,
    SimPerson,
    change_version_text,
    generate_people,
)
from sync.simulator._server import run_server, serve_in_thread
from sync.simulator._simulator import Simulator
from sync.simulator._tenants_file import TenantsFileError, load_tenants_file, parse_tenants
from sync.simulator._types import LoggedRequest, RequestRecord, Token
from sync.simulator._world import (
    Change,
    PutOutcome,
    RequestCounters,
    World,
    parse_people_document,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_CLIENTS",
    "DELTA_ORDERS",
    "IDSYNC_SCOPES",
    "PEOPLE_READ",
    "REFERENCES_READ",
    "REFERENCES_WRITE",
    "TENANT_NAME_PATTERN",
    "TENANT_PREFIX",
    "Change",
    "ClientSpec",
    "DroppedConnectionError",
    "Faults",
    "LoggedRequest",
    "MultiSimulator",
    "PeopleDocumentError",
    "PutOutcome",
    "RequestCounters",
    "RequestRecord",
    "SimPerson",
    "Simulator",
    "SimulatorConfig",
    "TenantUrls",
    "TenantsFileError",
    "Token",
    "World",
    "change_version_text",
    "generate_people",
    "load_tenants_file",
    "parse_people_document",
    "parse_tenants",
    "run_server",
    "serve_in_thread",
    "tenant_name_problem",
]
