"""Shared helpers of the simulator tests (data of the Protime guide, the harness, a fake clock)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from sync.simulator import Simulator

API = "/connector/protimeapi/api/v1"
UA = "idsync-tests/1.0 (idsync)"
AUTO_TOKEN = "auto"  # Harness.client: mint a valid token without HTTP

# The people of the Protime guide's examples (person 123152 with badge 6767676) plus person 4781,
# the internal id of the guide's PUT example, and a few more for paging and filters.
GUIDE_PEOPLE = [
    {
        "id": 4781,
        "firstName": "Els",
        "lastName": "Peeters",
        "email": "els.peeters@acme.example",
        "employeeNumber": "E-4781",
        "badgeNumber": "1004781",
        "inServiceDate": "2015-03-01",
        "outOfServiceDate": None,
    },
    {
        "id": 123152,
        "firstName": "Jan",
        "lastName": "Janssens",
        "email": "jan.janssens@acme.example",
        "employeeNumber": "E-4821",
        "badgeNumber": "6767676",
        "inServiceDate": "2019-09-16",
        "outOfServiceDate": None,
        "externalReferences": {"HRMID": "6767676"},
    },
    {
        "id": 123153,
        "firstName": "Léa",
        "lastName": "Dubois",
        "email": "lea.dubois@acme.example",
        "employeeNumber": "E-4822",
        "badgeNumber": "6767677",
        "inServiceDate": "2020-01-06",
        "outOfServiceDate": "2024-06-30",
    },
]


@dataclass
class Harness:
    """One simulator and the way this test reaches it (in-process transport or a real socket)."""

    sim: Simulator
    base_url: str
    mode: str

    def client(
        self, *, token: str | None = AUTO_TOKEN, user_agent: str | None = UA
    ) -> httpx.AsyncClient:
        """A client for the API; ``token="auto"`` mints a valid token without HTTP."""
        headers: dict[str, str] = {}
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        if token == AUTO_TOKEN:
            token = self.sim.issue_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        transport = self.sim.transport() if self.mode == "in-process" else None
        client = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, headers=headers, timeout=10
        )
        if user_agent is None:
            # httpx adds its own User-Agent by default; the test wants none at all.
            del client.headers["User-Agent"]
        return client


class FakeClock:
    """A settable clock for token and delta-token expiry."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


DELTA = f"{API}/delta/people"
CHANGE_VERSION = r"[0-9A-F]{20}"


async def read_pages(client: httpx.AsyncClient, url: str) -> list[dict]:
    """Every page from ``url`` on, following ``nextLink`` until a page has none (asserting 200)."""
    pages: list[dict] = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        next_url = body.get("nextLink")
    return pages


async def read_delta(client: httpx.AsyncClient, url: str) -> tuple[list[dict], str]:
    """The items of a delta round or set of changes, and the deltaLink of its last page."""
    pages = await read_pages(client, url)
    return [item for body in pages for item in body["value"]], pages[-1]["deltaLink"]
