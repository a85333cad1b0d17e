"""A loopback TCP proxy a test can break: cut every connection, refuse new ones, or blackhole.

Put it between idsync and its state database (``TcpProxy("127.0.0.1", 5432)``, then point the
URL at ``proxy.port``) to play a database that goes away mid-run:

* :meth:`cut` closes every open connection (FIN both ways) and refuses new ones, as a server that
  went down does; :meth:`resume` lets new connections through again (the server is back).
* :meth:`blackhole` keeps every connection open but forwards nothing more in either direction,
  and new connections are accepted and then ignored: a half-open connection (a firewall or NAT
  that silently dropped the flow). The kernel still acknowledges what idsync sends, so TCP
  keepalives do not see it either; only idsync's own deadlines can.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; see the module doc for the faults."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._mode = "forward"
        self._guard = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    # -- faults ----------------------------------------------------------------------------------

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`resume`."""
        with self._guard:
            self._mode = "refuse"
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def blackhole(self) -> None:
        """Forward nothing more, either way, on old and new connections alike."""
        with self._guard:
            self._mode = "blackhole"

    def resume(self) -> None:
        """Forward new connections again (connections cut stay cut)."""
        with self._guard:
            self._mode = "forward"

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            with self._guard:
                mode = self._mode
            if mode == "refuse":
                client.close()
                continue
            with self._guard:
                self._sockets.append(client)
            if mode == "blackhole":
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._guard:
                self._sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with self._guard:
                forward = self._mode in {"forward", "refuse"}
            if not forward:
                continue  # blackholed: swallowed
            try:
                dst.sendall(data)
            except OSError:
                return
