"""How fast the Protime simulator answers over loopback: custom-reference PUTs and people pages.

Starts `idsync simulator` as its own process on a free port, then drives it from this process with
a lean keep-alive HTTP/1.1 client (raw asyncio streams: httpx would cost more CPU than the server
on a 2-core box and measure itself). An httpx run is reported too, for what a real client sees.

    .venv/bin/python benchmarks/simulator_bench.py            # N=100,000 people, 20,000 PUTs
    .venv/bin/python benchmarks/simulator_bench.py --quick    # smaller, for a smoke run

Not a test: it prints a table (and optionally JSON) and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from collections.abc import Coroutine

API = "/connector/protimeapi/api/v1"
UA = "idsync-bench/1.0 (idsync)"
REFS = "(people,@badge-number)(people,@employee-number)(people,HRMID)"


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    statuses: dict[int, int]
    server_cpu: float = 0.0  # seconds of CPU the server process used during the measure

    @property
    def server_ms_per_request(self) -> float:
        return self.server_cpu / self.requests * 1000 if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class RawConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.fixed}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_and_headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(status_and_headers[9:12])
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", status_and_headers)
        length = int(match[1]) if match else 0
        return status, await self.reader.readexactly(length) if length else b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def start_simulator(people: int, page_size: int) -> tuple[subprocess.Popen[str], str, list[str]]:
    command = [
        sys.executable, "-m", "sync", "simulator", "--host", "127.0.0.1", "--port", "0",
        "--people", str(people), "--page-size", str(page_size), "--seed", "7",
        "--client-id", "demo-client", "--client-secret", "demo-secret",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith("API base URL"):
            api = line.split(":", 1)[1].strip()
            return process, api[: -len(API)], command
    process.kill()
    raise SystemExit("the simulator did not start")


def get_token(base: str) -> str:
    response = httpx.post(
        f"{base}/tenants/acme/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
        headers={"User-Agent": UA},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def person_ids(base: str) -> list[int]:
    people = httpx.get(f"{base}/_sim/people", timeout=120).json()["people"]
    return [int(p["id"]) for p in people]


async def raw_puts(base: str, token: str, ids: list[int], connections: int, tag: str) -> Result:
    parts = urlsplit(base)
    headers = {"User-Agent": UA, "Authorization": f"Bearer {token}", "Accept": "application/json"}
    conns = [
        RawConnection(parts.hostname or "", parts.port or 80, headers) for _ in range(connections)
    ]
    await asyncio.gather(*(c.open() for c in conns))
    statuses: dict[int, int] = {}
    queue = iter(ids)

    async def worker(conn: RawConnection) -> None:
        for pid in queue:
            path = f"{API}/external-references/people/HRMID/{tag}{pid}"
            status, _ = await conn.request("PUT", path, b'{"internalReference":"%d"}' % pid)
            statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    seconds = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    return Result(f"PUT (raw client, {connections} conns)", len(ids), seconds, statuses)


def next_link(body: bytes) -> str | None:
    """The nextLink of a page without parsing the page (the link holds no quote or backslash)."""
    start = body.rfind(b'"nextLink":"')
    if start < 0:
        return None
    start += len(b'"nextLink":"')
    return body[start : body.index(b'"', start)].decode()


async def raw_pages(
    base: str, token: str, chains: int, limit_pages: int, label: str = ""
) -> Result:
    """`chains` concurrent full reads, each following its own nextLink chain to the end."""
    parts = urlsplit(base)
    headers = {"User-Agent": UA, "Authorization": f"Bearer {token}", "Accept": "application/json"}
    statuses: dict[int, int] = {}
    pages = 0

    async def chain() -> None:
        nonlocal pages
        conn = RawConnection(parts.hostname or "", parts.port or 80, headers)
        await conn.open()
        url: str | None = f"{API}/people?externalReferences={REFS}"
        count = 0
        while url and count < limit_pages:
            status, body = await conn.request("GET", url)
            statuses[status] = statuses.get(status, 0) + 1
            if count == 0:  # check one page in full; after that only find the link (cheap client)
                assert len(json.loads(body)["value"]) == min(100, limit_pages * 100)
            url = next_link(body)
            count += 1
        pages += count
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(chain() for _ in range(chains)))
    seconds = time.perf_counter() - start
    name = f"pages of 100 (raw client, {chains} chain{'s' if chains > 1 else ''}{label})"
    return Result(name, pages, seconds, statuses)


async def httpx_puts(base: str, token: str, ids: list[int], connections: int) -> Result:
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"User-Agent": UA, "Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        queue = iter(ids)

        async def worker() -> None:
            for pid in queue:
                response = await client.put(
                    f"{API}/external-references/people/HRMID/X{pid}",
                    json={"internalReference": str(pid)},
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - start
    return Result(f"PUT (httpx AsyncClient, {connections} conns)", len(ids), seconds, statuses)


async def httpx_pages(base: str, token: str, limit_pages: int) -> Result:
    statuses: dict[int, int] = {}
    headers = {"User-Agent": UA, "Authorization": f"Bearer {token}"}
    pages = 0
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        url: str | None = f"{API}/people?externalReferences={REFS}"
        start = time.perf_counter()
        while url and pages < limit_pages:
            response = await client.get(url)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            url = response.json().get("nextLink")
            pages += 1
        seconds = time.perf_counter() - start
    return Result("pages of 100 (httpx, 1 chain, warm)", pages, seconds, statuses)


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Coroutine[Any, Any, Result]) -> Result:
    before = server_cpu_seconds(pid)
    result = asyncio.run(run)
    result.server_cpu = server_cpu_seconds(pid) - before
    return result


def table(results: list[Result]) -> str:
    header = (
        f"{'measure':<48} {'requests':>8} {'seconds':>7} {'per second':>10} "
        f"{'server CPU ms/req':>17}  statuses"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"{r.name:<48} {r.requests:>8} {r.seconds:>7.2f} {r.rate:>10.0f} "
            f"{r.server_ms_per_request:>17.3f}  {statuses}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="10,000 people, 3,000 PUTs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.people, args.puts = 10_000, 3_000

    process, base, command = start_simulator(args.people, 100)
    try:
        token = get_token(base)
        ids = person_ids(base)
        pages_limit = (len(ids) + 99) // 100
        puts = ids[: args.puts]
        pid = process.pid
        results = [
            measured(pid, raw_puts(base, token, puts, args.connections, "H")),
            # The first read fills the server's per-person JSON cache; later reads are warm.
            measured(pid, raw_pages(base, token, 1, pages_limit, ", cold")),
            measured(pid, raw_pages(base, token, 1, pages_limit, ", warm")),
            measured(pid, raw_pages(base, token, args.chains, pages_limit, ", warm")),
            # Other people than the raw run's: one value per person, so re-using them would 409.
            measured(
                pid, httpx_puts(base, token, ids[-max(1, len(puts) // 4) :], args.connections)
            ),
            measured(pid, httpx_pages(base, token, min(pages_limit, 250))),
        ]
    finally:
        process.terminate()
        process.wait(timeout=30)
    info = machine()
    print(f"machine : {info['nproc']} cores, {info['cpu']}, Python {info['python']}")
    print(f"server  : {' '.join(['idsync', *command[3:]])}")
    print(f"client  : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"people  : {len(ids)}  (pages read with externalReferences={REFS})")
    print(
        f"load    : {os.getloadavg()[0]:.2f} (1-minute load average at the end; other work competes)"
    )
    print()
    print(table(results))
    print()
    print("server CPU ms/req = CPU the server process spent per answer; 1000 / it = what one core")
    print("can serve when the client is not the limit.")
    if args.json:
        payload = {
            "machine": info,
            "server": command[3:],
            "results": [
                {
                    "name": r.name,
                    "requests": r.requests,
                    "seconds": r.seconds,
                    "rate": r.rate,
                    "server_cpu_ms_per_request": r.server_ms_per_request,
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
