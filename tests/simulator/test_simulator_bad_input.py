"""Bad input never crashes the simulator: a corpus of malformed requests, in-process and over HTTP,
each answered with its documented 4xx; raw-socket oddities over HTTP; and a fuzz run in-process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_helpers import API, UA
from sync.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.anyio

REF = f"{API}/external-references/people/HRMID"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN = "/tenants/acme/connect/token"

# (id, method, url, headers, body, expected status)
CORPUS: list[tuple[str, str, str, dict[str, str], bytes | None, int]] = [
    # malformed and odd JSON bodies
    ("open-object", "PUT", f"{REF}/v", JSON, b"{", 400),
    ("missing-value", "PUT", f"{REF}/v", JSON, b'{"internalReference":}', 400),
    ("bare-word", "PUT", f"{REF}/v", JSON, b"nul", 400),
    ("nul-byte", "PUT", f"{REF}/v", JSON, b"\x00", 400),
    ("deep-nesting", "PUT", f"{REF}/v", JSON, b"[" * 20_000 + b"]" * 20_000, 400),
    ("deep-object", "PUT", f"{REF}/v", JSON, b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
    ("huge-exponent", "PUT", f"{REF}/v", JSON, b'{"internalReference": 1e999999}', 400),
    ("many-digits", "PUT", f"{REF}/v", JSON, b'{"internalReference": ' + b"9" * 5000 + b"}", 400),
    ("big-int", "PUT", f"{REF}/v", JSON, b'{"internalReference": 99999999999999999999}', 400),
    ("dup-keys", "PUT", f"{REF}/v", JSON, b'{"internalReference":"1","internalReference":"x"}', 400),
    ("infinity", "PUT", f"{REF}/v", JSON, b'{"internalReference": Infinity}', 400),
    ("bad-utf8", "PUT", f"{REF}/v", JSON, b'{"internalReference": "\xc3\x28"}', 400),
    ("utf16-body", "PUT", f"{REF}/v", JSON, '{"internalReference": "1"}'.encode("utf-16"), 400),
    ("latin1-body", "PUT", f"{REF}/v", JSON, '{"internalReference": "é"}'.encode("latin-1"), 400),
    ("lone-surrogate", "PUT", f"{REF}/v", JSON, b'{"internalReference": "\\ud800"}', 400),
    ("array-body", "PUT", f"{REF}/v", JSON, b"[]", 400),
    ("string-body", "PUT", f"{REF}/v", JSON, b'"4781"', 400),
    ("null-body", "PUT", f"{REF}/v", JSON, b"null", 400),
    ("object-ref", "PUT", f"{REF}/v", JSON, b'{"internalReference": {"id": 4781}}', 400),
    ("unicode-digits", "PUT", f"{REF}/v", JSON, '{"internalReference": "٤٧٨١"}'.encode(), 400),
    ("oversized", "PUT", f"{REF}/v", JSON, b'{"pad": "' + b"x" * 70_000 + b'"}', 400),
    # wrong content types
    ("text-plain", "PUT", f"{REF}/v", {"Content-Type": "text/plain"}, b"{}", 400),
    ("xml", "PUT", f"{REF}/v", {"Content-Type": "application/xml"}, b"<a/>", 400),
    ("form", "PUT", f"{REF}/v", FORM, b"internalReference=4781", 400),
    ("multipart", "PUT", f"{REF}/v", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 400),
    ("latin1-charset", "PUT", f"{REF}/v", {"Content-Type": "application/json; charset=latin-1"}, b"{}", 400),
    ("empty-type", "PUT", f"{REF}/v", {"Content-Type": ""}, b"{}", 400),
    # odd paths
    ("lone-percent", "PUT", f"{REF}/%", JSON, b'{"internalReference":"4781"}', 400),
    ("bad-escape", "PUT", f"{REF}/%ZZ", JSON, b'{"internalReference":"4781"}', 400),
    ("cut-utf8", "PUT", f"{REF}/%C3", JSON, b'{"internalReference":"4781"}', 400),
    ("ff-byte", "PUT", f"{REF}/%FF", JSON, b'{"internalReference":"4781"}', 400),
    ("nul-escape", "PUT", f"{REF}/a%00", JSON, b'{"internalReference":"4781"}', 400),
    ("dot-dot", "PUT", f"{REF}/%2E%2E", JSON, b'{"internalReference":"4781"}', 400),
    ("too-many-segments", "PUT", f"{REF}/a/b", JSON, b'{"internalReference":"4781"}', 404),
    ("too-few-segments", "GET", f"{API}/external-references/people", {}, None, 404),
    ("bad-collection-bytes", "GET", f"{API}/external-references/%FF/HRMID/x", {}, None, 400),
    ("bad-name-bytes", "GET", f"{API}/external-references/people/%FF/x", {}, None, 400),
    ("unknown-collection", "DELETE", f"{API}/external-references/widgets/HRMID/x", {}, None, 404),
    ("unknown-predefined", "GET", f"{API}/external-references/people/@nope/x", {}, None, 400),
    ("person-bytes", "GET", f"{API}/people/%FF", {}, None, 400),
    ("person-deep", "GET", f"{API}/people/1/2", {}, None, 404),
    ("person-huge-id", "GET", f"{API}/people/99999999999999999999999", {}, None, 400),
    ("person-negative", "GET", f"{API}/people/-1", {}, None, 400),
    ("person-zero", "GET", f"{API}/people/0", {}, None, 400),
    ("person-empty", "GET", f"{API}/people/", {}, None, 400),
    ("long-value", "PUT", f"{REF}/{'v' * 5000}", JSON, b'{"internalReference":"4781"}', 414),
    # odd query strings
    ("refs-bytes", "GET", f"{API}/people?externalReferences=%FF", {}, None, 400),
    ("filter-bytes", "GET", f"{API}/people?filter=%FF", {}, None, 400),
    ("filter-empty", "GET", f"{API}/people?filter=", {}, None, 400),
    ("filter-nul", "GET", f"{API}/people?filter=id%20eq%20%00", {}, None, 400),
    ("filter-long-in", "GET", f"{API}/people?filter=id%20in%20(" + "1," * 1100 + "1)", {}, None, 400),
    ("repeated", "GET", f"{API}/people?filter=id%20eq%201&filter=id%20eq%202", {}, None, 400),
    ("ampersands", "GET", f"{API}/people?&&&", {}, None, 200),
    ("bare-equals", "GET", f"{API}/people?=", {}, None, 400),
    ("token-nul", "GET", f"{API}/people?continuationToken=%00", {}, None, 400),
    ("token-negative", "GET", f"{API}/people?continuationToken=cDotNQ", {}, None, 200),
    ("too-many-params", "GET", f"{API}/people?" + "&".join(f"x{i}=1" for i in range(30)), {}, None, 400),
    ("delta-twice", "GET", f"{API}/people?delta&delta", {}, None, 400),
    ("delta-forged", "GET", f"{API}/people?delta&continuationToken=ZGM6MTox", {}, None, 400),
    ("delta-token-alone", "GET", f"{API}/people?delta&deltaToken=e30", {}, None, 400),
    ("changes-no-token", "GET", f"{API}/delta/people", {}, None, 400),
    ("changes-empty-json", "GET", f"{API}/delta/people?deltaToken=e30", {}, None, 400),
    ("changes-bytes", "GET", f"{API}/delta/people?deltaToken=%FF", {}, None, 400),
    ("changes-post", "POST", f"{API}/delta/people", JSON, b"{}", 405),
    ("changes-other", "GET", f"{API}/delta/absences", {}, None, 404),
    ("ref-list-param", "GET", f"{REF}?filter=x", {}, None, 400),
    ("ref-one-param", "GET", f"{REF}/v?x=1", {}, None, 400),
    # methods
    ("patch", "PATCH", f"{REF}/v", JSON, b"{}", 405),
    ("options", "OPTIONS", f"{API}/people", {}, None, 405),
    ("post-list", "POST", REF, JSON, b"{}", 405),
    # token endpoint
    ("token-bytes", "POST", TOKEN, FORM, b"grant_type=%FF", 400),
    ("token-garbage", "POST", TOKEN, FORM, b"\xff\xfe\x00", 400),
    ("token-huge", "POST", TOKEN, FORM, b"grant_type=" + b"x" * 70_000, 400),
    ("token-multipart", "POST", TOKEN, {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 400),
    ("token-bad-basic", "POST", TOKEN, {**FORM, "Authorization": "Basic !!!"}, b"grant_type=client_credentials", 400),
    (
        "token-basic-bytes",
        "POST",
        TOKEN,
        {**FORM, "Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
        b"grant_type=client_credentials",
        400,
    ),
    ("token-deep-path", "POST", "/tenants/acme/connect/token/x", FORM, b"", 404),
    ("token-bad-tenant", "POST", "/tenants/%FF/connect/token", FORM, b"grant_type=client_credentials", 400),
    ("token-many-fields", "POST", TOKEN, FORM, "&".join(f"scope={i}" for i in range(30)).encode(), 400),
]  # fmt: skip


def _world() -> SimulatorConfig:
    return SimulatorConfig(people=5)


@pytest.mark.parametrize("case", CORPUS, ids=[case[0] for case in CORPUS])
async def test_bad_request_corpus(make_harness, case):
    """Each malformed request gets its documented 4xx answer in JSON, never a 500."""
    _, method, url, headers, body, expected = case
    harness = make_harness(config=_world())
    async with harness.client() as client:
        response = await client.request(method, url, headers=headers, content=body)
    assert response.status_code == expected, response.text
    if expected >= 400:
        payload = response.json()
        assert "error" in payload or "validationErrors" in payload
    assert harness.sim.world.references("HRMID") == {}


def _raw(base_url: str, request: bytes) -> bytes:
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in request:
                break
    return b"".join(chunks)


RAW_CASES = [
    ("raw-ff-in-path", b"GET " + API.encode() + b"/people/\xff HTTP/1.1\r\n"),
    ("raw-ff-in-value", b"PUT " + REF.encode() + b"/a\xffb HTTP/1.1\r\n"),
    ("raw-space-value", b"GET " + REF.encode() + b"/a%20 HTTP/1.1\r\n"),
    ("raw-ff-in-query", b"GET " + API.encode() + b"/people?filter=\xff HTTP/1.1\r\n"),
]


@pytest.mark.parametrize("line", [c[1] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_raw_socket_oddities(shared_server, line):
    """Raw non-ASCII bytes in the request line never produce a 500 over a real socket."""
    switch, base_url = shared_server
    sim = Simulator(_world())
    switch.current = sim
    token = sim.issue_token()
    request = (
        line
        + b"Host: sim\r\nUser-Agent: "
        + UA.encode()
        + b"\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    answer = _raw(base_url, request)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]


def test_raw_header_with_odd_bytes(shared_server):
    """An Authorization or User-Agent header with non-ASCII bytes answers 401, not a crash."""
    switch, base_url = shared_server
    switch.current = Simulator(_world())
    request = (
        b"GET " + API.encode() + b"/people HTTP/1.1\r\nHost: sim\r\n"
        b"User-Agent: \xe9t\xe9/1\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    answer = _raw(base_url, request)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "Unauthorized"


_SEGMENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request_parts=st.tuples(
        st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH"]),
        st.sampled_from(["people", "delta", "external-references", "tenants", "_x", ""]),
        st.lists(_SEGMENT, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["filter", "externalReferences", "continuationToken", "delta", "deltaToken", "x"]
            ),
            _SEGMENT,
            max_size=3,
        ),
        st.one_of(st.none(), st.binary(max_size=200), st.text(max_size=60).map(str.encode)),
        st.sampled_from(
            [None, "application/json", "text/plain", "application/x-www-form-urlencoded"]
        ),
    )
)
def test_fuzzed_requests_never_crash(request_parts):
    """Random methods, paths, queries and bodies always get a non-5xx answer in-process."""
    method, head, segments, query, body, content_type = request_parts
    sim = Simulator(_world())
    token = sim.issue_token()
    encoded = [quote(segment, safe="") for segment in segments]
    path = "/".join([API, head, *encoded]) if head != "tenants" else "/tenants/" + "/".join(encoded)
    headers = {"User-Agent": UA, "Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as client:
            return await client.request(method, path, params=query, headers=headers, content=body)

    response = asyncio.run(call())
    assert response.status_code < 500, response.text
