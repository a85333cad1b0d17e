"""Serving the simulator over real HTTP: uvicorn (httptools) in a thread for tests, or blocking."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Protocol

from sync.simulator._api import DroppedConnectionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import uvicorn

    from sync.simulator._http import Receive, Scope, Send

_START_TIMEOUT = 10.0


class Servable(Protocol):
    """What the server runs: a ``Simulator`` or a ``MultiSimulator`` (anything with an ASGI
    ``app``)."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _DropFilter(logging.Filter):
    """Hide uvicorn's traceback for the connection drops the simulator injects on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnectionError)


def _install_drop_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in logger.filters):
        logger.addFilter(_DropFilter())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _server(sim: Servable, *, log_level: str) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        sim.app,
        http="httptools",
        loop="auto",
        lifespan="off",
        interface="asgi3",
        proxy_headers=False,
        access_log=False,
        log_level=log_level,
        # Keep idle keep-alive connections of a benchmark's client pool open between bursts.
        timeout_keep_alive=30,
    )
    _install_drop_filter()
    return uvicorn.Server(config)


@contextlib.contextmanager
def serve_in_thread(sim: Servable, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``sim`` on ``host:port`` (0 = a free port) in a background thread; yield the base URL.

    The world stays shared: a test may change ``sim.world`` or call ``sim.set_faults`` while the
    server runs. Leaving the block stops the server and joins the thread.
    """
    sock = _bind(host, port)
    server = _server(sim, log_level="warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="simulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the simulator server did not start")
        time.sleep(0.01)
    try:
        yield _url(host, sock)
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT)
        sock.close()


def run_server(
    sim: Servable,
    host: str = "127.0.0.1",
    port: int = 8089,
    *,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``sim`` until SIGINT/SIGTERM; ``on_ready`` gets the base URL once the port is bound."""
    sock = _bind(host, port)
    server = _server(sim, log_level=log_level)
    restore = _quiet_stop_signals()
    try:
        if on_ready is not None:
            on_ready(_url(host, sock))
        server.run(sockets=[sock])
    except _StopRequestedError:
        pass
    finally:
        restore()
        sock.close()


class _StopRequestedError(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _StopRequestedError


def _quiet_stop_signals() -> Callable[[], None]:
    """SIGINT/SIGTERM end ``run_server`` normally (exit 0) instead of a re-raised signal.

    uvicorn handles the signals while it serves, then re-raises them once stopped; with these
    handlers installed underneath, that re-raise (or a signal before uvicorn took over) becomes a
    clean return.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
