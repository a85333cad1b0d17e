"""A Retry-After longer than IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS becomes ProtimeBackoffError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sync.errors import ProtimeBackoffError, ProtimeError
from sync.protime._errors import Errors
from sync.protime._stats import Call, RequestKind


def _errors(max_retry_after: float) -> Errors:
    return Errors(
        secrets=["s3cret-value"],
        client_id="idsync",
        scopes="people.read",
        token_url_shown=None,
        max_retry_after=max_retry_after,
    )


def _refused(retry_after: str) -> httpx.Response:
    request = httpx.Request("PUT", "https://protime.example/x/HRMID/E1")
    return httpx.Response(429, headers={"Retry-After": retry_after}, request=request)


def test_a_retry_after_past_the_setting_says_when_and_names_the_setting() -> None:
    """A 429 asking for a day is a ProtimeBackoffError carrying when to call again, and its
    message names the setting; one within the setting stays an ordinary retriable error."""
    call = Call(kind=RequestKind.PUT_REFERENCE, method="PUT", path="/x/HRMID/E1", started=0.0)
    before = datetime.now(UTC)
    exc = _errors(300.0).api_error(call, _refused("86400"))
    assert isinstance(exc, ProtimeBackoffError)
    assert exc.retriable
    assert exc.retry_at - before >= timedelta(seconds=86_399)
    assert "IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS=300" in str(exc)
    assert f"{exc.retry_at:%Y-%m-%d %H:%M} UTC" in str(exc)
    short = _errors(300.0).api_error(call, _refused("300"))
    assert type(short) is ProtimeError
    assert short.retry_after == pytest.approx(300.0)
