"""The OAuth2 client-credentials token endpoint (``POST /tenants/<tenant>/connect/token``)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import unquote

from sync.simulator._http import (
    BodyTooLargeError,
    QueryError,
    Receive,
    Resp,
    decode_segment,
    dumps,
    oauth_error,
    parse_query,
    read_body,
)

if TYPE_CHECKING:
    from sync.simulator._config import ClientSpec, SimulatorConfig
    from sync.simulator._types import SimHost

_TOKEN_FORM = frozenset({"grant_type", "client_id", "client_secret", "scope"})
_UNAUTHORIZED = 401


async def issue_token(
    sim: SimHost, tenant_segment: bytes, headers: dict[bytes, bytes], receive: Receive
) -> Resp:
    """Answer one token request (after the path, method, User-Agent and fault checks)."""
    config = sim.config
    try:
        tenant = decode_segment(tenant_segment)
    except UnicodeDecodeError:
        tenant = ""
    if tenant != config.tenant:
        return oauth_error(400, "invalid_request", "unknown tenant")
    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if ctype != b"application/x-www-form-urlencoded":
        message = "the body must be application/x-www-form-urlencoded"
        return oauth_error(400, "invalid_request", message)
    try:
        form = parse_query(await read_body(receive, config.max_body_bytes), _TOKEN_FORM)
    except BodyTooLargeError:
        return oauth_error(400, "invalid_request", "the body is too large")
    except QueryError as exc:
        return oauth_error(400, "invalid_request", str(exc))
    grant = form.get("grant_type")
    if grant is None:
        return oauth_error(400, "invalid_request", "grant_type is required")
    if grant != "client_credentials":
        message = "only client_credentials is supported"
        return oauth_error(400, "unsupported_grant_type", message)
    spec = _authenticate(config, form, headers)
    if isinstance(spec, Resp):
        return spec
    requested = form.get("scope")
    scopes = frozenset(requested.split()) if requested else spec.scopes
    if not scopes <= spec.scopes:
        missing = " ".join(sorted(scopes - spec.scopes))
        message = f"scope(s) not granted to this client: {missing}"
        return oauth_error(400, "invalid_scope", message)
    access = secrets.token_urlsafe(32)
    sim.register_token(access, spec.client_id, scopes)
    body = {
        "access_token": access,
        "expires_in": int(config.token_ttl_seconds),
        "token_type": "Bearer",
        "scope": " ".join(sorted(scopes)),
    }
    return Resp(200, dumps(body), [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")])


def _authenticate(
    config: SimulatorConfig, form: dict[str, str], headers: dict[bytes, bytes]
) -> ClientSpec | Resp:
    client_id, secret, basic = _client_credentials(form, headers)
    if client_id is None:
        message = "client credentials are missing or given twice"
        return oauth_error(400, "invalid_request", message)
    spec = config.client(client_id)
    if spec is None or not hmac.compare_digest(spec.client_secret.encode(), secret.encode()):
        status = _UNAUTHORIZED if basic else config.invalid_client_status
        extra = [(b"www-authenticate", b'Basic realm="token"')] if status == _UNAUTHORIZED else []
        return oauth_error(status, "invalid_client", "unknown client or wrong secret", extra)
    return spec


def _client_credentials(
    form: dict[str, str], headers: dict[bytes, bytes]
) -> tuple[str | None, str, bool]:
    """``(client_id, secret, used_basic_auth)`` from the form or an HTTP Basic header."""
    auth = headers.get(b"authorization", b"")
    if auth[:6].lower() == b"basic ":
        if "client_id" in form or "client_secret" in form:
            return None, "", True
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None, "", True
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret), True
    if "client_id" not in form:
        return None, "", False
    return form["client_id"], form.get("client_secret", ""), False
