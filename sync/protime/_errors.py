"""How an answer or a failed exchange becomes one of idsync's errors, with no secret in its text."""

from __future__ import annotations

import math
import re
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sync.contract import (
    PEOPLE_READ_SCOPE,
    REFERENCES_READ_SCOPE,
    REFERENCES_WRITE_SCOPE,
)
from sync.errors import (
    ProtimeAuthError,
    ProtimeBackoffError,
    ProtimeConnectError,
    ProtimeError,
)
from sync.protime._parse import parse_error_body
from sync.protime._retry import is_retriable, is_retriable_status, parse_retry_after
from sync.protime._stats import Call, RequestKind

if TYPE_CHECKING:
    import httpx

_MIN_PLAIN_REDACT = 8
_MAX_SHOWN_VALUE = 80

_SCOPE_NEEDED = {
    RequestKind.PEOPLE: PEOPLE_READ_SCOPE,
    RequestKind.PUT_REFERENCE: REFERENCES_WRITE_SCOPE,
    RequestKind.DELETE_REFERENCE: REFERENCES_WRITE_SCOPE,
    RequestKind.GET_REFERENCE: f"{REFERENCES_READ_SCOPE} (or .write)",
}


def show(value: object) -> str:
    """``value`` for a message, cut short: a hostile value must not flood the log."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 4] + "...'"


class Errors:
    """Builds the client's errors: the secret, URL credentials and recent tokens scrubbed."""

    __slots__ = (
        "_client_id",
        "_issued",
        "_max_retry_after",
        "_scopes",
        "_secrets",
        "_token_url_shown",
    )

    def __init__(
        self,
        *,
        secrets: list[str],
        client_id: str,
        scopes: str,
        token_url_shown: str | None,
        max_retry_after: float = math.inf,
    ) -> None:
        self._max_retry_after = max_retry_after
        self._secrets = secrets
        self._client_id = client_id
        self._scopes = scopes
        self._token_url_shown = token_url_shown
        self._issued: deque[str] = deque(maxlen=4)  # recent tokens, scrubbed from any message

    def issued(self, token: str) -> None:
        """A token was fetched: from now on it is scrubbed from messages too."""
        self._issued.append(token)

    def redact(self, text: str) -> str:
        for secret in (*self._secrets, *self._issued):
            if len(secret) >= _MIN_PLAIN_REDACT:
                text = text.replace(secret, "***")
            elif secret:
                # A short secret also hides inside ordinary words; scrub it where it stands alone.
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
        return text

    def no_answer(self, call: Call, exc: BaseException) -> ProtimeConnectError:
        """The exchange failed before an answer came (connection, timeout, protocol)."""
        where = "the token endpoint" if call.kind is RequestKind.TOKEN else "Protime"
        detail = str(exc) or "no detail"
        return ProtimeConnectError(
            self.redact(
                f"{call.method} {call.path}: no answer from {where} "
                f"({type(exc).__name__}: {detail})"
            ),
            retriable=is_retriable(exc),
        )

    def api_error(self, call: Call, response: httpx.Response) -> ProtimeError:
        """An API answer the call did not expect."""
        status = response.status_code
        code, message = parse_error_body(response.content)
        detail = f"{call.method} {call.path} answered {status}"
        detail += f" {code}" if code else ""
        detail += f": {message}" if message else ""
        scope = _SCOPE_NEEDED.get(call.kind, "?")
        scopes = self._scopes
        if status == 401:  # noqa: PLR2004
            refused = (
                f"{detail} (even with a fresh token): the credentials are no longer accepted, "
                f"or the API client lacks the scope {scope} (configured scopes: {scopes})"
            )
        elif status == 403:  # noqa: PLR2004
            refused = (
                f"{detail}: the API client lacks the scope {scope} (configured scopes: "
                f"{scopes}); grant it in Protime or set IDSYNC_PROTIME__SCOPES"
            )
        else:
            refused = None
        if refused is not None:
            return ProtimeAuthError(self.redact(refused), status=status, code=code)
        return self._maybe_retriable(detail, code, response, method=call.method) or ProtimeError(
            self.redact(detail), status=status, code=code
        )

    def token_error(self, response: httpx.Response) -> ProtimeError:
        """A token endpoint's answer other than 200."""
        status = response.status_code
        code, message = parse_error_body(response.content)
        detail = f"the token endpoint {self._token_url_shown} answered {status}"
        detail += f" {code}" if code else ""
        detail += f": {message}" if message else ""
        return self._maybe_retriable(detail, code, response, method="POST") or ProtimeAuthError(
            self.redact(
                f"{detail}; check IDSYNC_PROTIME__CLIENT_ID ({self._client_id!r}), "
                "IDSYNC_PROTIME__CLIENT_SECRET, IDSYNC_PROTIME__TOKEN_URL and the scopes "
                f"({self._scopes})"
            ),
            status=status,
            code=code,
        )

    def _maybe_retriable(
        self, detail: str, code: str | None, response: httpx.Response, *, method: str
    ) -> ProtimeError | None:
        status = response.status_code
        if not is_retriable_status(status, method=method):
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None and retry_after > self._max_retry_after:
            # Hours, not seconds: waiting would hold the run, its lock and every other call.
            retry_at = datetime.now(UTC) + timedelta(seconds=retry_after)
            return ProtimeBackoffError(
                self.redact(
                    f"{detail}; Protime asked to be called again in {retry_after:,.0f} s, at"
                    f" {retry_at:%Y-%m-%d %H:%M} UTC: longer than"
                    f" IDSYNC_PROTIME__MAX_RETRY_AFTER_SECONDS={self._max_retry_after:g}, so the"
                    " run stops here"
                ),
                status=status,
                retry_after=retry_after,
                retry_at=retry_at,
            )
        return ProtimeError(
            self.redact(detail),
            status=status,
            code=code,
            retriable=True,
            retry_after=retry_after,
        )
