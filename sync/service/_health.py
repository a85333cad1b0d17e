"""The service's one HTTP listener: ``/healthz``, ``/readyz``, ``/metrics`` and ``/syncs``.

A standard-library :class:`ThreadingHTTPServer` in a daemon thread (docs/operations.md says why
not uvicorn): three GET routes scraped every few seconds, with blocking probes (a database query)
that fit a thread per request, and no event loop or signal handling to share with the scheduler.
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

from sync.logging import get_logger, redact_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from sync.service._metrics import Metrics

    # A probe answers None when all is well, else the reason, one line, for the JSON answer.
    Probe = Callable[[], str | None]
    # The document of every sync (`idsync syncs --json`'s), built when asked.
    SyncsDocument = Callable[[], dict[str, Any]]

log = get_logger(__name__)


def run_probe(probe: Probe) -> str | None:
    """The probe's answer; an exception is an answer too (its type and redacted message)."""
    try:
        return probe()
    except Exception as exc:
        return redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck probe never holds the process at exit
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        *,
        metrics: Metrics,
        liveness: Probe,
        readiness: Probe,
        syncs: SyncsDocument | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.metrics = metrics
        self.liveness = liveness
        self.readiness = readiness
        self.syncs = syncs
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "idsync"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    _routes: ClassVar[dict[str, str]] = {
        "/healthz": "_healthz",
        "/readyz": "_readyz",
        "/metrics": "_metrics",
        "/syncs": "_syncs",
    }

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self._routes.get(path)
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found", "paths": sorted(self._routes)})
            return
        getattr(self, route)()

    def _healthz(self) -> None:
        reason = run_probe(self.server.liveness)
        if reason is None:
            self._json(HTTPStatus.OK, {"alive": True})
        else:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"alive": False, "reason": reason})

    def _readyz(self) -> None:
        reason = run_probe(self.server.readiness)
        if reason is None:
            self._json(HTTPStatus.OK, {"ready": True})
        else:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"ready": False, "reason": reason})

    def _metrics(self) -> None:
        body, content_type = self.server.metrics.render()
        self._send(HTTPStatus.OK, body, content_type)

    def _syncs(self) -> None:
        build = self.server.syncs
        if build is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no sync document in this service"})
            return
        try:
            payload = build()
        except Exception as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": reason})
            return
        self._json(HTTPStatus.OK, payload)

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        # Probes arrive every few seconds: a debug line each, through our formatter (the default
        # writes straight to stderr).
        log.debug("http.request", client=self.client_address[0], request=format % args)


class HealthServer:
    """Serves the probes and the metrics on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        liveness: Probe,
        readiness: Probe,
        syncs: SyncsDocument | None = None,
    ) -> None:
        self._server = _Server(
            (host, port), metrics=metrics, liveness=liveness, readiness=readiness, syncs=syncs
        )
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port: the configured one, or the one the OS chose for port 0."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="idsync-http",
            daemon=True,
        )
        self._thread.start()
        log.info("http.listening", host=self.host, port=self.port)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
