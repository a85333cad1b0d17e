"""Small HTTP helpers shared by the API and the token endpoint: responses, bodies, query strings.

The API is plain ASGI rather than Starlette routes on purpose: it routes on ``raw_path`` so an
encoded ``/`` (``%2F``) inside a reference value stays inside its segment (and is then rejected as
§7 says), and it keeps the per-request cost of the hot paths (PUT, a page of 100 people) low.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = b"application/json; charset=utf-8"
_DIGITS = re.compile(r"[0-9]{1,18}")


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON, the one serialiser of the simulator."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Resp:
    """A response before it is sent (so counters and fault drops live in one place)."""

    status: int
    body: bytes = b""
    headers: Headers = field(default_factory=list)
    json: bool = True


def error(
    status: int,
    code: str,
    message: str,
    reasons: list[str] | None = None,
    headers: Headers | None = None,
) -> Resp:
    """The documented error envelope ``{"error": {"code", "message", "reasons"?}}``."""
    inner: dict[str, Any] = {"code": code, "message": message}
    if reasons:
        inner["reasons"] = reasons
    return Resp(status, dumps({"error": inner}), headers or [])


def validation(*problems: tuple[str, str]) -> Resp:
    """A model-validation failure: 400 with a top-level ``validationErrors`` array (no wrapper)."""
    items = [{"field": f, "message": m} for f, m in problems]
    return Resp(400, dumps({"validationErrors": items}))


def oauth_error(status: int, code: str, description: str, headers: Headers | None = None) -> Resp:
    """An OAuth2 (RFC 6749 §5.2) error answer of the token endpoint."""
    body = dumps({"error": code, "error_description": description})
    return Resp(status, body, [(b"cache-control", b"no-store"), *(headers or [])])


async def send_resp(send: Send, resp: Resp, *, extra_length: int = 0) -> None:
    """Send ``resp``; ``extra_length`` > 0 announces more bytes than sent (a dropped connection)."""
    headers: Headers = []
    if resp.body or (resp.json and resp.status not in (204, 304)):
        headers.append((b"content-type", JSON_TYPE))
    if resp.status not in (204, 304) or extra_length:
        headers.append((b"content-length", str(len(resp.body) + extra_length).encode()))
    headers.extend(resp.headers)
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body, "more_body": bool(extra_length)})


def page(items: list[bytes], next_link: str | None, delta_link: str | None = None) -> Resp:
    """A list page ``{"value": [...], "nextLink"?, "deltaLink"?}`` from items already in JSON."""
    body = b'{"value":[' + b",".join(items) + b"]"
    if next_link is not None:
        body += b',"nextLink":' + dumps(next_link)
    if delta_link is not None:
        body += b',"deltaLink":' + dumps(delta_link)
    return Resp(200, body + b"}")


def link(path: str, params: list[tuple[str, str | None]]) -> str:
    """A link path with its query; ``None`` values give a bare flag (``?delta``)."""
    # Readable but unambiguous: the characters the API uses stay as they are, the rest is encoded.
    query = "&".join(k if v is None else f"{k}={quote(v, safe='(),@')}" for k, v in params)
    return f"{path}?{query}" if query else path


def b64(text: str) -> str:
    """URL-safe Base64 without padding: the simulator's opaque continuation tokens."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unb64(token: str) -> bytes | None:
    """The bytes of a Base64 token (standard or URL-safe, padded or not); None when it is not."""
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def token_ints(token: str | None, kind: str, count: int) -> list[int] | None:
    """Decode an opaque token of ``kind`` with ``count`` integers; None when it is not one."""
    if token is None:
        return None
    raw = unb64(token)
    if raw is None:
        return None
    try:
        parts = raw.decode("ascii").split(":")
        if parts[0] != kind or len(parts) != count + 1:
            return None
        return [int(p) for p in parts[1:]]
    except (UnicodeDecodeError, ValueError):
        return None


def list_cursor(params: dict[str, str], kind: str) -> int | Resp:
    """Where a list continues: the id in its ``continuationToken`` of ``kind`` (0 without one),
    or a 400 for a token that is not one."""
    if "continuationToken" not in params:
        return 0
    decoded = token_ints(params["continuationToken"], kind, 1)
    if decoded is None:
        return error(400, "BadRequest", "invalid continuationToken")
    return decoded[0]


class BodyTooLargeError(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, or ``BodyTooLargeError`` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def decode_segment(segment: bytes) -> str:
    """One path segment, percent-decoded as UTF-8; ``UnicodeDecodeError`` for odd encodings."""
    if b"%" in segment:
        return unquote_to_bytes(segment).decode("utf-8")
    return segment.decode("utf-8")


class QueryError(ValueError):
    pass


def parse_query(query_string: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters as a dict; ``QueryError`` for unknown, repeated or badly encoded ones.

    Unknown parameters are rejected (not ignored) so a client typo like ``externalReference``
    fails loudly in tests instead of silently reading people without references.
    """
    if not query_string:
        return {}
    try:
        pairs = parse_qsl(
            query_string.decode("latin-1"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=20,
        )
    except UnicodeDecodeError:
        raise QueryError("query string is not valid UTF-8 after percent-decoding") from None
    except ValueError:
        raise QueryError("too many query parameters") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise QueryError(f"unknown query parameter {key!r} (accepted here: {known})")
        if key in out:
            raise QueryError(f"query parameter {key!r} given more than once")
        out[key] = value
    return out


def internal_id(value: object) -> int | None:
    """An internal id from a JSON string of digits or a JSON integer (§7), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 10**18 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
        return number if number > 0 else None
    return None
