"""A recording TCP relay on loopback: the "traffic capture" of an end-to-end test.

`Capture(upstream_port)` listens on a free port and relays every connection to the node,
keeping every byte in both directions. A node whose `SIGNET_PUBLIC_URL` is the relay's URL is
reached only through it (peers sign and send to that URL), so `capture.data()` is everything
that node sent and received over the network, as a packet capture of plain HTTP would show.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.e2e.node_proc import free_port


class Capture:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def data(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            except OSError:
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                with self._lock:
                    self._buf += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
