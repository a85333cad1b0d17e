"""A hostile Protime over a real loopback socket against the real client (issue 9).

Each scenario runs in its own process (``python benchmarks/hostile_bench.py MODE``; without a mode
it runs them all, one process each) and prints how the read ended, how many people GETs it made,
how long it took and the process's peak RSS:

* ``bomb``: a gzip answer that inflates to 400 MB;
* ``endless``: a chunked body that never ends;
* ``fresh``: a fresh ``nextLink`` on every page, serving the same people;
* ``trickle``: headers trickled one byte a second (read timeout 5 s, request deadline 20 s,
  2 attempts).
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import threading
import time
import zlib
from typing import BinaryIO

from sync.config import ProtimeSettings
from sync.protime import ProtimeClient

MODES = ("bomb", "endless", "fresh", "trickle")
PEOPLE = "/connector/protimeapi/api/v1/people"


def _bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = b" " * (1 << 20)
    parts = [packer.compress(b"[")]
    parts += [packer.compress(chunk) for _ in range(400)]
    parts += [packer.compress(b"]"), packer.flush()]
    return b"".join(parts)


def _read_request(stream: BinaryIO) -> str | None:
    line = stream.readline()
    if not line:
        return None
    length = 0
    while (header := stream.readline()) not in (b"\r\n", b""):
        if header.lower().startswith(b"content-length"):
            length = int(header.split(b":")[1])
    stream.read(length)
    return line.decode().strip()


class _Hostile:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[str] = []
        self.bomb = _bomb() if mode == "bomb" else b""

    def answer(self, sock: socket.socket, line: str) -> None:
        if "token" in line:
            body = json.dumps({"access_token": "t", "expires_in": 600}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif self.mode == "bomb":
            head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            sock.sendall(head % len(self.bomb) + self.bomb)
        elif self.mode == "endless":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b" " * 65536
            framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            while True:
                sock.sendall(framed)
        elif self.mode == "fresh":
            link = f"{PEOPLE}?continuationToken=x{len(self.requests)}"
            body = json.dumps({"value": [{"id": 1}, {"id": 2}], "nextLink": link}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                sock.sendall(b"a")
                time.sleep(1)

    def handle(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as stream:
            try:
                while (line := _read_request(stream)) is not None:
                    self.requests.append(line)
                    self.answer(sock, line)
            except OSError:
                return  # the client hung up: what the bounds make it do


def run_one(mode: str) -> None:
    hostile = _Hostile(mode)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=hostile.handle, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    settings = ProtimeSettings(
        base_url=base,
        tenant="acme",
        token_url=f"{base}/connect/token",
        client_id="bench",
        client_secret="bench-secret",  # noqa: S106 - a local benchmark's dummy
        rate_limit_per_second=0,
        read_timeout_seconds=5,
        retry_attempts=2,
    )

    async def read() -> None:
        async with ProtimeClient(settings) as client:
            await client.read_people()

    started = time.monotonic()
    try:
        asyncio.run(read())
        outcome = "read to the end"
    except Exception as exc:  # the point: how it ends
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    gets = sum(PEOPLE in r for r in hostile.requests)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {mode} | {seconds:.1f} s | {gets} | {peak:.0f} MiB | {outcome[:160]} |")


def main() -> None:
    if len(sys.argv) > 1:
        run_one(sys.argv[1])
        return
    print("| scenario | ended after | people GETs | peak RSS | how |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        subprocess.run([sys.executable, __file__, mode], check=False, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
