"""A scriptable fake Protime for httpx.MockTransport, and the settings the client tests use."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from sync.config import ProtimeSettings
from sync.protime import API_PATH

SECRET = "cl13nt-s3cr3t-Zq9"
BASE = "https://acme.myprotime.eu"
TOKEN_URL = "https://authentication.test/tenants/acme/connect/token"
REFERENCE_PREFIX = f"{API_PATH}/external-references/people/HRMID/"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProtime:
    """Just enough of Protime for protocol tests, with scripted answers taking precedence.

    ``script(method, path, *answers)`` queues answers (a response, an exception to raise, or a
    function of the request) for requests whose path (without query) equals ``path``; once the
    queue is empty the default behaviour answers again.
    """

    def __init__(self, *, people: list[dict[str, Any]] | None = None, page_size: int = 2) -> None:
        self.people = people if people is not None else []
        self.page_size = page_size
        self.requests: list[httpx.Request] = []
        self.tokens: list[str] = []
        self.valid_tokens: set[str] = set()
        self.token_ttl = 1800
        self.token_latency_yields = 0  # event-loop turns the token endpoint takes to answer
        self.references: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.api_latency_yields = 0
        self._scripts: dict[tuple[str, str], deque[Answer]] = {}

    # -- test helpers
    def script(self, method: str, path: str, *answers: Answer) -> None:
        self._scripts.setdefault((method, path), deque()).extend(answers)

    def revoke_tokens(self) -> None:
        self.valid_tokens.clear()

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "acme.myprotime.eu"]

    @property
    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "authentication.test"]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- the fake server
    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.partition(b"?")[0].decode()
        if request.url.host == "authentication.test":
            for _ in range(self.token_latency_yields):
                await asyncio.sleep(0)
        queued = self._scripts.get((request.method, path))
        if queued:
            answer = queued.popleft()
            if isinstance(answer, Exception):
                raise answer
            return answer(request) if callable(answer) else answer
        if request.url.host == "authentication.test":
            return self._token()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.api_latency_yields):
                await asyncio.sleep(0)
            return self._api(request, path)
        finally:
            self.in_flight -= 1

    def _token(self) -> httpx.Response:
        token = f"tok-{len(self.tokens) + 1}-SENSITIVE"
        self.tokens.append(token)
        self.valid_tokens.add(token)
        return httpx.Response(
            200, json={"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    def _api(self, request: httpx.Request, path: str) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return httpx.Response(401, json=error_body("Unauthorized", "token expired"))
        if path == f"{API_PATH}/people":
            return self._people_page(request)
        if path.startswith(REFERENCE_PREFIX):
            return self._reference(request, unquote(path.removeprefix(REFERENCE_PREFIX)))
        return httpx.Response(404, json=error_body("NotFound", "no such route"))

    def _people_page(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        start = int(query.get("continuationToken", ["0"])[0])
        end = start + self.page_size
        body: dict[str, Any] = {"value": self.people[start:end]}
        if end < len(self.people):
            body["nextLink"] = f"{API_PATH}/people?continuationToken={end}"
        return httpx.Response(200, json=body)

    def _reference(self, request: httpx.Request, value: str) -> httpx.Response:
        if request.method == "PUT":
            internal = int(json.loads(request.content)["internalReference"])
            created = value not in self.references
            self.references[value] = internal
            body = {"collection": "people", "name": "HRMID", "value": value}
            body["internalReference"] = str(internal)
            return httpx.Response(201 if created else 200, json=body)
        if value not in self.references:
            return httpx.Response(404, json=error_body("NotFound", "unknown value"))
        if request.method == "DELETE":
            del self.references[value]
            return httpx.Response(204)
        return httpx.Response(
            200, json={"value": value, "internalReference": str(self.references[value])}
        )


def person(person_id: int, **fields: Any) -> dict[str, Any]:
    return {"id": person_id, "firstName": "A", "lastName": f"P{person_id}", **fields}


def make_settings(**overrides: Any) -> ProtimeSettings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "tenant": "acme",
        "token_url": TOKEN_URL,
        "client_id": "idsync-test",
        "client_secret": SECRET,
        "user_agent_company": "Acme NV",
        "rate_limit_per_second": 0,
        "retry_attempts": 4,
        "retry_timeout_seconds": 30,
        "token_refresh_margin_seconds": 120,
    }
    values.update(overrides)
    return ProtimeSettings(**values)
