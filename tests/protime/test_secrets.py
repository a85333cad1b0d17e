"""The client secret and the tokens never reach a message, a log line or a repr."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from structlog.testing import capture_logs

from protime_fakes import API_PATH, REFERENCE_PREFIX, SECRET, error_body, person
from sync.errors import ProtimeError

TOKEN_PATH = "/tenants/acme/connect/token"
PEOPLE_PATH = f"{API_PATH}/people"
PUT_PATH = f"{REFERENCE_PREFIX}H1"


def _echo(status, *, header=None):
    """An answer that repeats the request's Authorization header back, as a careless server might."""

    def answer(request):
        auth = request.headers.get("Authorization", "")
        body = error_body("Echo", f"you sent {auth}")
        headers = {"Retry-After": "0"} if header else None
        return httpx.Response(status, json=body, headers=headers)

    return answer


def _echo_form(status):
    """A token endpoint answer that repeats the posted form, secret included."""

    def answer(request):
        return httpx.Response(
            status,
            json={"error": "invalid_client", "error_description": request.content.decode()},
        )

    return answer


def _token_leak_in_text(request):
    return httpx.Response(200, text=f"access_token=tok-plain-SENSITIVE&secret={SECRET}")


class _Scenario:
    def __init__(self, name, setup, call, **overrides):
        self.name, self.setup, self.call, self.overrides = name, setup, call, overrides


def _put(client):
    return client.put_reference(value="H1", protime_id=1)


def _people(client):
    return client.read_people()


async def _bad_value_after_token(client):
    await client.check_token()
    await client.delete_reference(value="a/b")


SCENARIOS = [
    _Scenario(
        "token refused, form echoed",
        lambda f: f.script("POST", TOKEN_PATH, _echo_form(401)),
        lambda c: c.check_token(),
    ),
    _Scenario(
        "token endpoint 500s, form echoed",
        lambda f: f.script("POST", TOKEN_PATH, *[_echo_form(500)] * 3),
        lambda c: c.check_token(),
    ),
    _Scenario(
        "token answer not JSON",
        lambda f: f.script("POST", TOKEN_PATH, _token_leak_in_text),
        lambda c: c.check_token(),
    ),
    _Scenario(
        "token endpoint unreachable, secret in the transport message",
        lambda f: f.script("POST", TOKEN_PATH, *[httpx.ConnectError(f"refused {SECRET}")] * 3),
        lambda c: c.check_token(),
    ),
    _Scenario(
        "401 twice, header echoed",
        lambda f: f.script("PUT", PUT_PATH, _echo(401), _echo(401)),
        _put,
    ),
    _Scenario("403, header echoed", lambda f: f.script("PUT", PUT_PATH, _echo(403)), _put),
    _Scenario("409, header echoed", lambda f: f.script("PUT", PUT_PATH, _echo(409)), _put),
    _Scenario(
        "503 exhausted, header echoed",
        lambda f: f.script("PUT", PUT_PATH, *[_echo(503, header=True)] * 3),
        _put,
    ),
    _Scenario(
        "429 exhausted, header echoed",
        lambda f: f.script("GET", PEOPLE_PATH, *[_echo(429, header=True)] * 3),
        _people,
    ),
    _Scenario(
        "network errors",
        lambda f: f.script("PUT", PUT_PATH, *[httpx.ReadError("reset")] * 3),
        _put,
    ),
    _Scenario(
        "malformed people page",
        lambda f: f.script("GET", PEOPLE_PATH, httpx.Response(200, json={"value": [{"id": "x"}]})),
        _people,
    ),
    _Scenario(
        "nextLink to another host",
        lambda f: f.script(
            "GET",
            PEOPLE_PATH,
            httpx.Response(200, json={"value": [], "nextLink": "https://x.eu/p"}),
        ),
        _people,
    ),
    _Scenario("bad value after a token", lambda _: None, _bad_value_after_token),
]


def _chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_no_secret_or_token_in_errors_logs_or_reprs(fake, make_client, caplog, scenario):
    """Every error path: the message, repr, logs and reprs hold neither the secret nor a token."""
    fake.people = [person(1)]
    scenario.setup(fake)
    caplog.set_level(logging.DEBUG)
    texts = []

    async def run():
        async with make_client(retry_attempts=3) as client:
            try:
                await scenario.call(client)
            finally:
                texts.extend([repr(client), repr(client._session.tokens), repr(client.stats)])

    with capture_logs() as logs, pytest.raises(ProtimeError) as info:
        asyncio.run(run())

    error = info.value
    texts.extend([str(error), repr(error)])
    if not scenario.name.endswith("in the transport message"):
        # Chained causes are printed in tracebacks; a realistic transport message has no secret.
        texts.extend(f"{e!s} {e!r}" for e in _chain(error))
    texts.extend(repr(entry) for entry in logs)
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(repr(error.__dict__))
    secrets = [SECRET, *fake.tokens, "tok-plain-SENSITIVE"]
    assert fake.requests, "the scenario must have talked to the fake"
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{scenario.name}: secret found in {text!r}"
    assert "SENSITIVE" not in " ".join(texts)
    if "echoed" in scenario.name:
        assert "***" in str(error)  # the echo was scrubbed, not lost with the whole message


def test_short_secret_is_scrubbed_where_it_stands_without_mangling_words(fake):
    """A short secret is removed where it appears on its own, and ordinary words stay readable."""
    from protime_fakes import make_settings
    from sync.protime import ProtimeClient

    fake.script(
        "POST",
        TOKEN_PATH,
        httpx.Response(
            400, json={"error": "invalid_client", "error_description": "secret s answered wrong"}
        ),
    )

    async def run():
        settings = make_settings(client_secret="s")
        async with ProtimeClient(settings, transport=fake.transport()) as client:
            await client.check_token()

    with pytest.raises(ProtimeError) as info:
        asyncio.run(run())
    message = str(info.value)
    assert "secret *** answered wrong" in message
    assert "IDSYNC_PROTIME__CLIENT_SECRET" in message
