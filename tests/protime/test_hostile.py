"""Hostile or broken Protime answers end a call with a clear error: never a hang, a memory blow-up,
a RecursionError or a write counted on an answer that does not prove it (issue 9)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from protime_fakes import API_PATH, REFERENCE_PREFIX, SECRET, make_settings, person
from sync.errors import ProtimeConnectError
from sync.protime import MalformedAnswerError, ProtimeClient, is_retriable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PEOPLE_PATH = f"{API_PATH}/people"


def _read_people(make_client: Callable[..., ProtimeClient], **overrides: Any) -> list[Any]:
    async def scenario() -> list[Any]:
        async with make_client(**overrides) as client:
            return await client.read_people()

    return asyncio.run(scenario())


def _no_secret_no_traceback(exc: BaseException) -> None:
    text = str(exc)
    assert SECRET not in text
    assert "Traceback" not in text
    assert "tok-" not in text


def test_fresh_next_links_serving_the_same_people_stop_the_read(fake, make_client):
    """A new nextLink on every page with the same people stops at the first repeat."""
    calls = []

    def same_people(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        link = f"{PEOPLE_PATH}?continuationToken=fresh{len(calls)}"
        return httpx.Response(200, json={"value": [person(1), person(2)], "nextLink": link})

    fake.script("GET", PEOPLE_PATH, *[same_people] * 50)
    with pytest.raises(MalformedAnswerError, match="repeats 2 person") as info:
        _read_people(make_client)
    assert len(calls) == 2
    assert not is_retriable(info.value)
    _no_secret_no_traceback(info.value)


def test_a_page_repeating_a_person_within_itself_is_refused(fake, make_client):
    """One person twice on one page is as inconsistent as across pages."""
    fake.script("GET", PEOPLE_PATH, httpx.Response(200, json={"value": [person(1), person(1)]}))
    with pytest.raises(MalformedAnswerError, match="page 1: the page repeats 1 person"):
        _read_people(make_client)


def test_empty_pages_beyond_what_the_people_make_plausible_stop_the_read(
    fake, make_client, monkeypatch
):
    """Empty pages interleaved with people pages are bounded by the pages that held people."""
    monkeypatch.setattr("sync.protime._paging._MAX_EMPTY_PAGES_IN_A_ROW", 3)
    pages = []

    def alternate(request: httpx.Request) -> httpx.Response:
        pages.append(request)
        n = len(pages)
        value = [person(n)] if n == 1 else []
        return httpx.Response(200, json={"value": value, "nextLink": f"{PEOPLE_PATH}?ct={n}"})

    fake.script("GET", PEOPLE_PATH, *[alternate] * 20)
    with pytest.raises(MalformedAnswerError, match="not plausible"):
        _read_people(make_client)


def test_a_gzip_bomb_is_refused_after_decompression(fake, make_client):
    """A small compressed answer inflating past the cap is refused, counted as it inflates."""
    bomb = gzip.compress(b"[" + b" " * (4 * 1024 * 1024) + b"]")
    assert len(bomb) < 64 * 1024
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=bomb),
    )
    with pytest.raises(MalformedAnswerError, match="IDSYNC_PROTIME__MAX_RESPONSE_BYTES") as info:
        _read_people(make_client, max_response_bytes=256 * 1024)
    assert "262144 bytes after decompression" in str(info.value)
    assert not is_retriable(info.value)
    _no_secret_no_traceback(info.value)


def test_an_answer_declaring_a_huge_length_is_refused_unread(fake, make_client):
    """A Content-Length beyond the cap is refused before the body is read."""
    fake.script(
        "GET",
        PEOPLE_PATH,
        httpx.Response(200, headers={"Content-Length": str(10**12)}, content=b"{}"),
    )
    with pytest.raises(MalformedAnswerError, match="larger than"):
        _read_people(make_client, max_response_bytes=2048)


@pytest.mark.parametrize("where", ["people", "token", "error"])
def test_too_deep_json_is_a_clean_failure(fake, make_client, where):
    """JSON nested 200,000 deep is 'nested too deeply', never a RecursionError."""
    deep = b"[" * 200_000 + b"]" * 200_000
    if where == "people":
        fake.script("GET", PEOPLE_PATH, httpx.Response(200, content=deep))
        with pytest.raises(MalformedAnswerError, match="nested too deeply") as info:
            _read_people(make_client)
        _no_secret_no_traceback(info.value)
    elif where == "token":
        fake.script("POST", "/tenants/acme/connect/token", httpx.Response(200, content=deep))
        with pytest.raises(MalformedAnswerError, match="token answer: the answer is nested"):
            _read_people(make_client)
    else:
        fake.script("GET", PEOPLE_PATH, httpx.Response(400, content=deep))
        with pytest.raises(Exception, match="answered 400") as info:
            _read_people(make_client)
        assert not isinstance(info.value, RecursionError)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (httpx.Response(200, text="<html>written!</html>"), "not JSON"),
        (httpx.Response(202, text="<html>queued</html>"), "not JSON"),
        (httpx.Response(202, json={"value": "H2"}), "names another value"),
        (httpx.Response(202, json={"value": "H1", "internalReference": 4}), "not the 3 sent"),
        (httpx.Response(200, json=[]), "write answer is list"),
        (httpx.Response(200, json={"internalReference": "3"}), "does not hold the value sent"),
        (httpx.Response(200, json={"value": "H2", "internalReference": "3"}), "value sent"),
        (httpx.Response(200, json={"value": "H1", "internalReference": "4"}), "not the 3 sent"),
        (httpx.Response(200, json={"value": "H1"}), "'internalReference' is null"),
    ],
)
def test_a_write_counts_only_on_the_documented_answer(fake, make_client, answer, fragment):
    """A PUT whose answer is not the pair asked for is a final, non-retriable failure."""
    fake.script("PUT", f"{REFERENCE_PREFIX}H1", answer)

    async def scenario() -> bool:
        async with make_client() as client:
            return await client.put_reference(value="H1", protime_id=3)

    with pytest.raises(MalformedAnswerError, match=fragment) as info:
        asyncio.run(scenario())
    assert f"PUT {REFERENCE_PREFIX}H1" in str(info.value)
    assert not is_retriable(info.value)
    _no_secret_no_traceback(info.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(202),
        httpx.Response(202, headers={"Operation-Location": "/operations/17"}),
        httpx.Response(202, json={"status": "Running"}),
        httpx.Response(202, json={"value": "H1", "internalReference": "3"}),
        httpx.Response(200),
        httpx.Response(201),
        httpx.Response(204),
    ],
)
def test_an_accepted_write_is_pending_not_refused(fake, make_client, answer):
    """202 Accepted, or a 2xx with an empty body, is a write accepted without confirmation (None)."""
    fake.script("PUT", f"{REFERENCE_PREFIX}H1", answer)

    async def scenario() -> bool | None:
        async with make_client() as client:
            return await client.put_reference(value="H1", protime_id=3)

    assert asyncio.run(scenario()) is None


def test_a_documented_write_answer_counts(fake, make_client):
    """The documented answer (the value and the internal reference sent) is a success."""

    async def scenario() -> bool:
        async with make_client() as client:
            return await client.put_reference(value="H1", protime_id=3)

    assert asyncio.run(scenario()) is True


# --------------------------------------------------------------- a real server over loopback


class _RawServer:
    """A loopback HTTP server whose answers a test writes byte by byte on the socket.

    The token endpoint answers at once; every other request goes to ``handler(sock)``, which
    writes whatever it likes (trickled headers, a trickled or endless body) until ``stop`` is set
    or the client hangs up.
    """

    def __init__(self, handler: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._one, args=(sock,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _one(self, sock: socket.socket) -> None:
        with sock:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                line = head.split(b"\r\n", 1)[0].decode()
                self.requests.append(line)
                if "/connect/token" in line:
                    body = json.dumps({"access_token": "tok-loopback", "expires_in": 600}).encode()
                    sock.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    # Keep-alive: serve the next request on this connection too.
                    self._one_more(sock)
                    return
                self.handler(sock, self.stop)
            except OSError:
                return  # the client hung up: what a deadline does
            except Exception:  # a broken test server must say so, not hang the test
                self.errors.append(traceback.format_exc())

    def _one_more(self, sock: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return
            head += chunk
        self.requests.append(head.split(b"\r\n", 1)[0].decode())
        self.handler(sock, self.stop)


@contextmanager
def _server(handler: Callable[[socket.socket, threading.Event], None]) -> Iterator[_RawServer]:
    server = _RawServer(handler)
    acceptor = threading.Thread(target=server.serve, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stop.set()
        acceptor.join(timeout=10)
        server.listener.close()
        for thread in server.threads:
            thread.join(timeout=10)
        assert not acceptor.is_alive()
        assert not server.errors, server.errors


def _trickle(sock: socket.socket, stop: threading.Event, data: bytes) -> None:
    for byte in data:
        if stop.wait(0.02):
            return
        sock.sendall(bytes([byte]))


def _trickle_headers(sock: socket.socket, stop: threading.Event) -> None:
    _trickle(sock, stop, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 100_000)


def _trickle_body(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999\r\n\r\n"
    )
    _trickle(sock, stop, b'{"value": [' + b" " * 100_000)


def _endless_body(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    while not stop.is_set():
        sock.sendall(framed)


def _client(port: int, **overrides: Any) -> ProtimeClient:
    base = f"http://127.0.0.1:{port}"
    overrides.setdefault("token_url", f"{base}/tenants/acme/connect/token")
    settings = make_settings(base_url=base, **overrides)
    return ProtimeClient(settings)


@pytest.mark.parametrize("handler", [_trickle_headers, _trickle_body], ids=["headers", "body"])
@pytest.mark.parametrize("kind", ["people", "write", "token"])
def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(handler, kind):
    """Headers or a body trickled a byte at a time end the call at the request deadline."""
    with _server(handler) as server:

        async def scenario() -> None:
            token_url = None
            if kind == "token":
                # The token endpoint itself trickles: point it at a path the handler serves.
                token_url = f"http://127.0.0.1:{server.port}/slow/token"
            overrides: dict[str, Any] = {
                "read_timeout_seconds": 5.0,
                "request_deadline_seconds": 0.5,
                "retry_attempts": 2,
            }
            if token_url is not None:
                overrides["token_url"] = token_url
            async with _client(server.port, **overrides) as client:
                if kind == "write":
                    await client.put_reference(value="H1", protime_id=3)
                else:
                    await client.read_people()

        with pytest.raises(ProtimeConnectError, match=r"request deadline of 0\.5 s") as info:
            asyncio.run(scenario())
        assert "IDSYNC_PROTIME__REQUEST_DEADLINE_SECONDS" in str(info.value)
        assert "gave up after 2 attempts" in str(info.value)
        _no_secret_no_traceback(info.value)


def test_an_endless_chunked_body_stops_at_the_size_cap():
    """An answer that never ends is cut at IDSYNC_PROTIME__MAX_RESPONSE_BYTES, read once."""
    with _server(_endless_body) as server:

        async def scenario() -> None:
            async with _client(server.port, max_response_bytes=1024 * 1024) as client:
                await client.read_people()

        with pytest.raises(MalformedAnswerError, match="larger than") as info:
            asyncio.run(scenario())
        _no_secret_no_traceback(info.value)
        people_requests = [r for r in server.requests if "/people" in r]
        assert len(people_requests) == 1  # final, not retried


def _bomb(sock: socket.socket, stop: threading.Event) -> None:
    del stop
    body = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _gzip_page(sock: socket.socket, stop: threading.Event) -> None:
    del stop
    body = gzip.compress(json.dumps({"value": [person(1), person(2)]}).encode())
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _encoded_as(encoding: bytes, body: bytes) -> Callable[[socket.socket, threading.Event], None]:
    def handler(sock: socket.socket, stop: threading.Event) -> None:
        del stop
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: "
            + encoding
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return handler


def test_a_gzip_bomb_over_the_network_is_cut_while_it_inflates():
    """Over a real socket the body is inflated by the client within the cap, not past it."""
    with _server(_bomb) as server:

        async def scenario() -> None:
            async with _client(server.port, max_response_bytes=1024 * 1024) as client:
                await client.read_people()

        with pytest.raises(MalformedAnswerError, match="1048576 bytes after decompression"):
            asyncio.run(scenario())


def test_a_gzip_page_over_the_network_is_read():
    """A well-formed gzip answer is inflated and parsed as before."""
    with _server(_gzip_page) as server:

        async def scenario() -> list[Any]:
            async with _client(server.port) as client:
                return await client.read_people()

        assert [p.id for p in asyncio.run(scenario())] == [1, 2]
        assert "Accept-Encoding" not in server.requests[-1]  # the request line only


@pytest.mark.parametrize(
    ("encoding", "body", "fragment"),
    [
        (b"br", b"\x00\x01", "encoded as 'br', which was not asked for"),
        (b"gzip", b"not gzip at all", "compressed body is corrupt"),
    ],
)
def test_unasked_or_corrupt_encodings_are_refused(encoding, body, fragment):
    """An encoding we did not ask for, or a corrupt compressed body, is a clean final error."""
    with _server(_encoded_as(encoding, body)) as server:

        async def scenario() -> None:
            async with _client(server.port) as client:
                await client.read_people()

        with pytest.raises(MalformedAnswerError, match=fragment) as info:
            asyncio.run(scenario())
        assert not is_retriable(info.value)
