"""The client's one AsyncClient costs what the old direct sends cost (issue 20): no cookies, one
request built per call, no httpx line per API request, no reference cycle per call. Each test here
holds one of those to what httpx does inside, so a new httpx that changes it fails loudly."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING

import httpx
import pytest

from protime_fakes import REFERENCE_PREFIX, SECRET, person
from sync.protime._session import _Http, _NoCookies
from sync.protime._stats import CALL, Call, RequestKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from protime_fakes import FakeProtime
    from sync.protime import ProtimeClient
    from sync.protime._session import Session


def _with_a_cookie(request: httpx.Request) -> httpx.Response:
    del request
    return httpx.Response(204, headers={"Set-Cookie": "session=abc123; Path=/"})


def test_no_cookie_is_kept_or_sent_and_none_is_even_looked_at(
    fake: FakeProtime, make_client: Callable[..., ProtimeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Set-Cookie answer changes nothing the next request carries; httpx hands every answer to
    the client's no-op cookies (the property _Http overrides), not to a jar of its own."""
    fake.references["H1"] = 1
    fake.script("DELETE", f"{REFERENCE_PREFIX}H1", _with_a_cookie)
    handed: list[httpx.Response] = []
    monkeypatch.setattr(_NoCookies, "extract_cookies", lambda _self, answer: handed.append(answer))

    async def scenario() -> httpx.Cookies:
        async with make_client() as client:
            assert await client.delete_reference(value="H1") is True
            await client.get_reference(value="H1")
            return client._session._http.cookies

    cookies = asyncio.run(scenario())
    assert [r.headers.get("Cookie") for r in fake.requests] == [None, None, None]
    assert not list(cookies.jar)
    assert len(handed) == 3  # the token and both API answers: httpx still goes through .cookies
    with pytest.raises(AttributeError, match="no cookies"):
        _Http().cookies = {"a": "b"}


def _same_request(sent: httpx.Request, expected: httpx.Request) -> None:
    assert (sent.method, sent.url) == (expected.method, expected.url)
    raw = [(k, v) for k, v in sent.headers.raw if k.lower() != b"authorization"]
    assert raw == expected.headers.raw  # header for header, order included
    assert sent.content == expected.content
    assert sent.extensions["timeout"] == expected.extensions["timeout"]


def test_an_api_request_is_what_build_request_would_have_made(
    fake: FakeProtime, make_client: Callable[..., ProtimeClient]
) -> None:
    """Headers merged once per client, the timeouts as extensions: the same request as httpx's
    own build_request, for every shape a call can take."""

    async def scenario() -> Session:
        async with make_client() as client:
            await client.put_reference(value="H1", protime_id=1)
            await client.get_reference(value="H1")
            await client.delete_reference(value="H1")
            return client._session

    session = asyncio.run(scenario())
    http = session._http
    body = {"Content-Type": "application/json"}
    put, get, delete = fake.api_requests
    assert put.headers["Authorization"].startswith("Bearer tok-")
    _same_request(put, http.build_request("PUT", put.url, content=put.content, headers=body))
    _same_request(get, http.build_request("GET", get.url))
    _same_request(delete, http.build_request("DELETE", delete.url))
    call = Call(kind=RequestKind.PUT_REFERENCE, method="PUT", path="/x", started=0.0)
    elsewhere = httpx.URL("https://other.example:8443/x?y=1")
    for method, url, content in [
        ("PUT", put.url, b""),  # httpx's own "Content-Length: 0"
        ("PUT", elsewhere, b"{}"),  # another Host
        ("GET", elsewhere, None),
        ("GET", get.url, b""),
    ]:
        request = session._request(method, url, content, call)
        headers = body if content is not None else None
        expected = http.build_request(method, url, content=content, headers=headers)
        _same_request(request, expected)
        assert request.extensions[CALL] is call


def test_httpx_writes_no_line_for_an_api_request_even_at_debug(
    fake: FakeProtime,
    make_client: Callable[..., ProtimeClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As before issue 20, httpx's "HTTP Request: <URL>" line (the continuation tokens and
    reference values in it) is written for the token request only; the client's own DEBUG line
    names the path of each request."""
    fake.people = [person(1), person(2), person(3)]
    caplog.set_level(logging.DEBUG)
    # The httpx logger's own level too: an earlier configure_logging (another test, or a run in
    # this process) leaves it at WARNING, which would hide the line whatever the filter does.
    caplog.set_level(logging.DEBUG, logger="httpx")

    async def scenario() -> None:
        async with make_client() as client:
            await client.read_people()
            await client.put_reference(value="H1", protime_id=1)

    asyncio.run(scenario())
    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(httpx_lines) == 1
    assert httpx_lines[0].startswith("HTTP Request: POST https://authentication.test/")
    assert not any(SECRET in r.getMessage() or "tok-" in r.getMessage() for r in caplog.records)
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.warning("a warning of httpx still passes")
    assert caplog.records[-1].getMessage() == "a warning of httpx still passes"


def test_a_call_leaves_no_reference_cycle_behind(
    fake: FakeProtime, make_client: Callable[..., ProtimeClient]
) -> None:
    """httpx ties an answer and its stream to each other; the client's response hook unties
    them, so a call's request, answer and Call go with their last reference, not with a GC pass
    (which cost 0.02 ms a write)."""

    async def scenario() -> list[object]:
        async with make_client() as client:
            await client.put_reference(value="H0", protime_id=1)  # the token, the first lane
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for n in range(1, 6):
                    await client.put_reference(value=f"H{n}", protime_id=n)
                    await client.get_reference(value=f"H{n}")
                gc.collect()
                return list(gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()

    leftovers = asyncio.run(scenario())
    assert not [type(o).__name__ for o in leftovers]
