"""The one logging setup: JSON lines, context fields, third-party loggers, and no secret ever."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest
import structlog

from sync.config import Settings
from sync.logging import (
    bind_context,
    configure_logging,
    get_logger,
    redact_text,
    register_secret,
    register_settings_secrets,
    unbind_context,
)

if TYPE_CHECKING:
    from service_support import LogCapture

CLIENT_SECRET = "cs-Zq8v3Xw1Lr5Tn0Pa"
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJpZHN5bmMifQ.c2lnbmF0dXJl"
DB_PASSWORD = "pg-P4ssw0rd-k7"
SECRETS = (CLIENT_SECRET, ACCESS_TOKEN, DB_PASSWORD)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "***" in text  # the lines were written, with the secrets masked


def test_structlog_event_masks_secret_keys_and_patterns(logs: LogCapture) -> None:
    """A structlog event's secret-named fields and secret-looking strings are masked."""
    log = get_logger("sync.test")
    log.info(
        "token.received",
        client_secret=CLIENT_SECRET,
        access_token=ACCESS_TOKEN,
        headers={"Authorization": f"Bearer {ACCESS_TOKEN}", "Accept": "application/json"},
        body=f"grant_type=client_credentials&client_secret={CLIENT_SECRET}&scope=x",
        url=f"postgresql+psycopg://idsync:{DB_PASSWORD}@db:5432/idsync",
        response=json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 1800}),
        token_url="https://auth.example/connect/token",
    )
    _assert_clean(logs.getvalue())
    (event,) = logs.named("token.received")
    assert event["url"] == "postgresql+psycopg://idsync:***@db:5432/idsync"
    assert event["headers"]["Accept"] == "application/json"
    assert event["token_url"] == "https://auth.example/connect/token"  # not a secret: kept


def _fail_with_token() -> None:
    raise RuntimeError(f"connect failed: Authorization: Bearer {ACCESS_TOKEN}")


def test_stdlib_logger_and_traceback_are_masked(logs: LogCapture) -> None:
    """A stdlib logger's message, %-arguments and exception traceback go through the same mask."""
    stdlib = logging.getLogger("some.library")
    stdlib.warning("posting %s", {"client_secret": CLIENT_SECRET})
    try:
        _fail_with_token()
    except RuntimeError:
        stdlib.exception("call failed for postgresql://u:%s@h/db", DB_PASSWORD)
    _assert_clean(logs.getvalue())
    failed = [e for e in logs.events() if e["event"].startswith("call failed")]
    assert "Bearer ***" in failed[0]["exception"]


def test_registered_secret_is_masked_without_any_pattern(logs: LogCapture) -> None:
    """A value registered as a secret is masked wherever it appears, even in plain prose."""
    register_secret(CLIENT_SECRET)
    logging.getLogger("anything").info("the value is %s, really", CLIENT_SECRET)
    get_logger().info("repr", obj=object.__repr__, note=f"x{CLIENT_SECRET}y")
    assert CLIENT_SECRET not in logs.getvalue()
    assert "the value is ***, really" in logs.getvalue()


class _EchoAuth(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 1800}).encode()
        self.send_response(200)
        # Echo the credential back in a header: httpcore logs response headers at DEBUG.
        self.send_header("X-Echo-Authorization", self.headers["Authorization"])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        logging.getLogger("test.echo").info(format, *args)


def test_httpx_and_httpcore_at_debug_never_show_a_secret(logs: LogCapture) -> None:
    """A real HTTP exchange at DEBUG, with the secret and token on the wire, logs neither."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/connect/token"
        with httpx.Client() as client:
            response = client.post(
                url,
                headers={"Authorization": f"Bearer {ACCESS_TOKEN}"},
                data={"grant_type": "client_credentials", "client_secret": CLIENT_SECRET},
            )
        assert response.json()["access_token"] == ACCESS_TOKEN
        logging.getLogger("httpx").debug("response headers %s", response.headers)
    finally:
        server.shutdown()
        server.server_close()
    text = logs.getvalue()
    loggers = {e["logger"] for e in logs.events()}
    assert {"httpx", "httpcore.http11"} <= loggers  # both paths really logged at DEBUG
    _assert_clean(text)


def test_json_lines_carry_context_fields_from_every_logger(logs: LogCapture) -> None:
    """Bound run_id / hr_id appear on structlog and stdlib lines alike, one JSON object per line."""
    bind_context(run_id="run-42", hr_id="E-1")
    try:
        get_logger("sync.x").info("write.done", outcome="succeeded")
        logging.getLogger("apscheduler.x").warning("third party line")
    finally:
        unbind_context("run_id", "hr_id")
    get_logger("sync.x").info("after")
    lines = logs.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["write.done", "third party line", "after"]
    assert all(e["run_id"] == "run-42" and e["hr_id"] == "E-1" for e in events[:2])
    assert "run_id" not in events[2]
    assert events[1]["level"] == "warning"
    assert events[1]["logger"] == "apscheduler.x"


def test_configuring_twice_keeps_one_handler(reset_logging: None) -> None:
    """A second configure_logging replaces the first: each event is written once, to the new stream."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=first)
    configure_logging(level="INFO", fmt="json", stream=second)
    get_logger("sync.x").info("once")
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "idsync"]
    assert len(ours) == 1
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_console_on_a_terminal_and_still_masks(reset_logging: None) -> None:
    """`auto` renders for humans on a TTY (not JSON), and the mask applies to that rendering too."""
    stream = _Terminal()
    configure_logging(level="INFO", fmt="auto", stream=stream)
    get_logger("sync.x").info("hello", header=f"Bearer {ACCESS_TOKEN}")
    text = stream.getvalue()
    assert "hello" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
    assert ACCESS_TOKEN not in text


def test_auto_format_is_json_off_a_terminal(reset_logging: None) -> None:
    """`auto` writes JSON when the stream is a pipe or a file."""
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="auto", stream=stream)
    get_logger("sync.x").info("hello", n=1)
    assert json.loads(stream.getvalue())["n"] == 1


@pytest.mark.parametrize(
    ("level", "httpx_level", "sql_level"),
    [("INFO", logging.WARNING, logging.WARNING), ("DEBUG", logging.DEBUG, logging.WARNING)],
)
def test_third_party_levels(
    reset_logging: None, level: str, httpx_level: int, sql_level: int
) -> None:
    """httpx is quiet unless DEBUG; SQLAlchemy never logs statements or rows, even at DEBUG."""
    configure_logging(level=level, fmt="json", stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == httpx_level
    assert logging.getLogger("httpcore").getEffectiveLevel() == httpx_level
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == sql_level
    assert logging.getLogger("alembic").getEffectiveLevel() == max(
        logging.INFO, logging.getLevelName(level)
    )


def test_dependency_reconfiguration_is_undone(reset_logging: None) -> None:
    """A dependency that disables a logger or adds its own handler (alembic's fileConfig) is undone."""
    stream = io.StringIO()
    logging.getLogger("alembic").addHandler(logging.StreamHandler(io.StringIO()))
    logging.getLogger("sync.some.module").disabled = True
    configure_logging(level="INFO", fmt="json", stream=stream)
    logging.getLogger("alembic").info("Running upgrade")
    structlog.get_logger("sync.some.module").info("still heard")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["Running upgrade", "still heard"]


def test_redact_text_masks_each_pattern() -> None:
    """Each pattern of the defence in depth masks the value and keeps the context."""
    cases = {
        "Authorization: Bearer abc.def-ghi": "Authorization: Bearer ***",
        "Basic dXNlcjpwYXNzd29yZA==": "Basic ***",
        "a=1&client_secret=s%2Fx&b=2": "a=1&client_secret=***&b=2",
        "{'password': 'hunter22'}": "{'password': '***'}",
        '{"refresh_token": "r-1"}': '{"refresh_token": "***"}',
        "mysql+pymysql://root:pw@127.0.0.1/test": "mysql+pymysql://root:***@127.0.0.1/test",
        "http://127.0.0.1:9464/healthz": "http://127.0.0.1:9464/healthz",
        "sqlite:////var/lib/idsync/idsync.db": "sqlite:////var/lib/idsync/idsync.db",
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected


def test_settings_secrets_are_registered(logs: LogCapture) -> None:
    """The client secret and the database passwords of the settings are masked even as bare words."""
    settings = Settings(
        _env_file=None,
        database_url="postgresql+psycopg://idsync:st4te-Pw-91@db/idsync",
        hr={"url": "mysql+pymysql://hr:hr-Pw-77x@hr/hr", "table": "employees"},
        protime={"client_secret": "cs-bare-Word-55"},
    )
    register_settings_secrets(settings)
    get_logger("sync.x").info("words st4te-Pw-91 hr-Pw-77x cs-bare-Word-55")
    text = logs.getvalue()
    for secret in ("st4te-Pw-91", "hr-Pw-77x", "cs-bare-Word-55"):
        assert secret not in text
    assert "words *** *** ***" in text


def test_console_lines_show_bidi_and_control_characters_escaped() -> None:
    """On a console an id's U+202E or escape sequence is printed escaped; JSON lines escape too."""
    for fmt in ("console", "json"):
        stream = io.StringIO()
        configure_logging(level="INFO", fmt=fmt, stream=stream)
        try:
            get_logger("test.bidi").warning("write.not_done", hr_id="E\u202eX1", error="a\x1b[31mb")
        finally:
            configure_logging(level="INFO", fmt="json", stream=io.StringIO())
        text = stream.getvalue()
        assert "\u202e" not in text, fmt
        assert "\x1b[31m" not in text, fmt
        assert "202e" in text.lower(), fmt
