"""A dead end for a client's other hosts: an HTTP proxy on 127.0.0.1 that records what it was asked
for (`CONNECT chatgpt.com:443 HTTP/1.1`, `GET http://...`) and refuses every request with 403.

Point HTTPS_PROXY / HTTP_PROXY / ALL_PROXY at it (NO_PROXY=127.0.0.1,localhost keeps the gateway
direct): nothing leaves the machine, and `requests` tells a test which hosts the client tried.
"""

from __future__ import annotations

import socket
import threading
from typing import Self

_REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class DeadEndProxy:
    def __init__(self) -> None:
        self.requests: list[str] = []  # the request line of every connection
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._sock.listen(64)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed by stop()
                return
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(4096)
                    self.requests.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                    conn.sendall(_REFUSAL)
                except OSError:
                    pass

    def stop(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing alone may not)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)
