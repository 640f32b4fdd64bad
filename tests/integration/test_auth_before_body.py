"""Issue 10, defect 1, on the wire: a caller without a valid key is answered from its headers, before
any of its body is read, so connections holding back large bodies cannot pin memory."""

from __future__ import annotations

import socket

from tests.server import SwitchboardProcess


def _head(extra: str = "") -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: 15000000\r\n{extra}\r\n").encode()


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


def test_missing_or_wrong_key_is_answered_before_the_body(gateway: SwitchboardProcess) -> None:
    for extra in ("", "authorization: Bearer sk-wrong\r\n"):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(_head(extra) + b'{"model": "gpt-4o-mini", "messages": [')  # and never the rest
            head = _answer(sock)
        assert head.startswith(b"HTTP/1.1 401 "), head[:200]
