"""The client's one ``httpx.AsyncClient``: the token as its auth, the lanes, the rate, the counting
and the bounds as the transports under it, and the retry loop around each call.

An API request goes: retry loop -> auth flow (a token to hand; on a 401, one new token and one
more try) -> :class:`~sync.protime._transports.Lanes` -> :class:`~sync.protime._transports.Paced`
(rate slot, then the bearer) -> :class:`~sync.protime._transports.Recorded` ->
:class:`~sync.protime._bounds.BoundedBody` -> the lane's network. The token request takes the same
way without the auth, the lanes and the rate.

What the client does not need of ``AsyncClient`` is made cheap, not bypassed (issue 20;
docs/benchmarks.md, "CPU per write"): an API request is built from headers merged once per client,
the client keeps no cookies (:class:`_Http`), an answer read whole lets go of its stream
(:func:`_let_go`), and httpx writes no line of its own per API request
(:func:`~sync.protime._stats.quiet_httpx_api_lines`).
"""

from __future__ import annotations

import http.cookiejar
import urllib.request
from typing import TYPE_CHECKING, Any

import httpx

from sync.config import redact_http_url, url_credentials
from sync.protime._auth import BearerAuth, TokenCache, TokenEndpoint
from sync.protime._bounds import BoundedBody
from sync.protime._errors import Errors
from sync.protime._rate import rate_limiter
from sync.protime._retry import Backoff, Retrier
from sync.protime._stats import (
    CALL,
    Call,
    ClientStats,
    Recorder,
    RequestKind,
    api_sending,
    path_of,
    quiet_httpx_api_lines,
)
from sync.protime._transports import ClientTransport, Lanes, Paced, Pacing, Recorded

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Container

    from sync.config import ProtimeSettings
    from sync.protime._rate import RateLimiter
    from sync.protime._stats import RequestEvent


class _NoCookieJar(http.cookiejar.CookieJar):
    """A jar that keeps nothing: the API is bearer-token only, and an answer must not change what
    the next request carries (the lanes never sent cookies)."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass

    def add_cookie_header(self, request: Any) -> None:
        pass


class _NoCookies(httpx.Cookies):
    """The client's cookies: none, ever, and nothing spent on them. httpx's ``Cookies`` builds
    two urllib stand-ins for every answer before its jar sees it (20 us a request)."""

    def __init__(self) -> None:
        super().__init__(_NoCookieJar())

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


class _Http(httpx.AsyncClient):
    """The client's ``AsyncClient``, keeping no cookies.

    The one place that leans on how httpx works inside, not on what it documents: httpx
    0.28 hands every answer to ``client.cookies.extract_cookies`` (and merges ``client.cookies``
    into a request it builds), so the public ``cookies`` property is where the per-answer cookie
    work is turned off. Should httpx stop going through the property, nothing is kept or sent all
    the same (the jar refuses every cookie), only the time is spent again:
    tests/protime/test_session.py fails loudly then.
    """

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:  # noqa: ARG002 - the setter's signature
        raise AttributeError("the Protime client keeps no cookies")


# The methods for which httpx sends "Content-Length: 0" when there is no body.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# What an answer's stream becomes once the answer is read (see _let_go).
_READ_WHOLE = httpx.ByteStream(b"")


async def _let_go(response: httpx.Response) -> None:
    """The client's one response hook: an answer read whole lets go of its stream.

    httpx ties each answer to its stream and the stream back to the answer: a reference cycle
    that only the cyclic garbage collector frees, and with it the request, its headers, URL and
    :class:`Call` (0.02 ms a write at 8 workers). Every answer is read whole below the client
    (:class:`~sync.protime._bounds.BoundedBody`), so its stream is done with.
    """
    if response.is_closed:
        response.stream = _READ_WHOLE


class Session:
    """Sends the client's calls. ``transport``: the network for every request (tests, the
    simulator); None: a network of its own per lane, and one for the token."""

    def __init__(
        self,
        settings: ProtimeSettings,
        *,
        transport: httpx.AsyncBaseTransport | None,
        user_agent: str,
        on_request: Callable[[RequestEvent], None] | None,
        clock: Callable[[], float],
        backoff: Backoff | None,
    ) -> None:
        token_url = settings.resolved_token_url
        # The client checked these; the checks only narrow the types.
        if not (settings.base_url and token_url and settings.client_id and settings.client_secret):
            raise AssertionError("the settings were not checked")
        self._settings = settings
        self._clock = clock
        self.stats = ClientStats()
        secret = settings.client_secret.get_secret_value()
        self.errors = Errors(
            # Credentials in a URL's user-info are secrets too: scrubbed from every message.
            secrets=[secret, *url_credentials(settings.base_url), *url_credentials(token_url)],
            client_id=settings.client_id,
            scopes=settings.scopes,
            token_url_shown=redact_http_url(token_url),
            max_retry_after=settings.max_retry_after_seconds,
        )
        self._retrier = Retrier(
            attempts=settings.retry_attempts,
            timeout=settings.retry_timeout_seconds,
            backoff=backoff or Backoff(),
            clock=clock,
            stats=self.stats,
        )
        self._recorder = Recorder(self.stats, on_request)
        self._client_options: dict[str, Any] = {
            "headers": {
                "User-Agent": user_agent,
                "Accept": "application/json",
                # What BoundedBody inflates within the size cap; nothing else is accepted.
                "Accept-Encoding": "gzip, deflate",
            },
            "timeout": httpx.Timeout(
                settings.read_timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            "follow_redirects": False,  # a redirect must not carry our token to another place
        }
        # One CA bundle load for the token and every lane (each would load its own, 50 ms or
        # more each). A given transport brings its own TLS, or none.
        self._ssl_context: ssl.SSLContext | None = (
            httpx.create_ssl_context() if transport is None else None
        )
        self._given_transport = transport
        # Only when the environment names a proxy are the networks clients (which mount it).
        self._proxied = transport is None and bool(urllib.request.getproxies())
        self.lane_owned: list[httpx.AsyncBaseTransport] = []
        self._pacing = Pacing(rate_limiter(settings, learned_rate=None))
        lanes = Lanes(
            count=settings.concurrency,
            new_lane=lambda: Paced(self._bounded(self.new_lane()), pacing=self._pacing),
            other=self._bounded(transport or self._network(settings.concurrency + 1)),
        )
        # trust_env=False: the proxies are the networks' business; mounted here they would
        # bypass the lanes, the rate and the bounds.
        self._http = _Http(
            transport=lanes,
            trust_env=False,
            cookies=_NoCookieJar(),
            event_hooks={"response": [_let_go]},
            **self._client_options,
        )
        # What build_request would make of every API request, made once: the Host, the client's
        # headers (then Content-Type for a body) and its timeouts.
        self._netloc = httpx.URL(settings.base_url).netloc
        host = [(b"Host", self._netloc), *httpx.Headers(self._http.headers).raw]
        self._api_headers = {
            False: httpx.Headers(host),
            True: httpx.Headers([*host, (b"Content-Type", b"application/json")]),
        }
        self._timeout = self._http.timeout.as_dict()
        quiet_httpx_api_lines()
        self.tokens = TokenCache(
            TokenEndpoint(
                http=self._http,
                url=httpx.URL(token_url),
                form={
                    "grant_type": "client_credentials",
                    "client_id": settings.client_id,
                    "client_secret": secret,
                    "scope": settings.scopes,
                },
                retrier=self._retrier,
                errors=self.errors,
                stats=self.stats,
                clock=clock,
            ).fetch,
            clock=clock,
            margin=settings.token_refresh_margin_seconds,
        )
        self._auth = BearerAuth(self.tokens)

    def __repr__(self) -> str:
        return f"<Session lanes={self._settings.concurrency}>"

    async def aclose(self) -> None:
        for lane in self.lane_owned:
            await lane.aclose()
        await self._http.aclose()

    @property
    def limiter(self) -> RateLimiter | None:
        """The client-side rate limit every lane shares; None: off."""
        return self._pacing.limiter

    def resume_rate(self, rate: float) -> None:
        """Start an ``auto`` rate at ``rate`` (the last run's)."""
        self._pacing.limiter = rate_limiter(self._settings, learned_rate=rate)

    async def call(
        self,
        kind: RequestKind,
        method: str,
        url: httpx.URL,
        *,
        expected: Container[int],
        content: bytes | None = None,
    ) -> httpx.Response:
        """One API call, its answer read whole: retried, signed, paced and bounded; an answer
        not in ``expected`` is the error it means."""
        call = Call(kind=kind, method=method, path=path_of(url), started=self._clock())

        async def attempt() -> httpx.Response:
            request = self._request(method, url, content, call)
            sending = api_sending.set(True)
            try:
                response = await self._http.send(request, auth=self._auth)
            finally:
                api_sending.reset(sending)
            if response.status_code in expected:
                return response
            raise self.errors.api_error(call, response)

        return await self._retrier.run(call, attempt)

    def _request(
        self, method: str, url: httpx.URL, content: bytes | None, call: Call
    ) -> httpx.Request:
        """The request ``build_request`` would make (tests/protime/test_session.py holds the two
        together), at a third of the cost: the headers are merged once per client, not per
        request, and httpx has nothing left to infer from the body (9 us a request)."""
        extensions = {CALL: call, "timeout": self._timeout}
        if url.netloc != self._netloc or (not content and method in _BODY_METHODS):
            # Not an API call's usual shape (another Host, an empty body): httpx fills it in.
            headers = self._api_headers[content is not None].copy()
            del headers["Host"]
            return httpx.Request(
                method, url, content=content, headers=headers, extensions=extensions
            )
        headers = self._api_headers[content is not None]
        if content:
            headers = headers.copy()
            headers["Content-Length"] = str(len(content))
        request = httpx.Request(
            method,
            url,
            headers=headers,
            stream=httpx.ByteStream(content or b""),
            extensions=extensions,
        )
        request.read()  # as httpx does for a body given whole: the 401's retry sends it again
        return request

    # ------------------------------------------------------------------------ the stack's parts

    def _bounded(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        """``inner`` with the bounds on each exchange, each exchange counted."""
        bounded = BoundedBody(
            inner,
            max_bytes=self._settings.max_response_bytes,
            deadline=self._settings.request_deadline,
        )
        return Recorded(bounded, recorder=self._recorder, errors=self.errors)

    def _network(self, connections: int) -> httpx.AsyncBaseTransport:
        """A network of its own with at most ``connections`` connections."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        verify = self._ssl_context or True
        if self._proxied:
            return ClientTransport(
                httpx.AsyncClient(limits=limits, verify=verify, **self._client_options)
            )
        return httpx.AsyncHTTPTransport(limits=limits, verify=verify)

    def new_lane(self) -> httpx.AsyncBaseTransport:
        """The network of a new lane: one connection, or the given transport (shared)."""
        if self._given_transport is not None:
            return self._given_transport
        lane = self._network(1)
        self.lane_owned.append(lane)
        return lane
