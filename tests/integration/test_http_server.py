"""The HTTP/1.1 server itself (switchboard.server), spoken to over raw sockets: keep-alive,
pipelining, request body framings, Expect: 100-continue, HEAD, HTTP/1.0, and bad requests."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import IO

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    proc = SwitchboardProcess(f"""
providers:
  up: {{type: openai, base_url: "{fake_openai.base_url}"}}
models:
  m: {{route: up/m}}
""").start()
    yield proc
    proc.stop()


class _Unclosed:
    """The connection's read stream, which http.client must not close after each response."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)

    def close(self) -> None:
        pass


class Conn:
    """A raw client connection that reads responses one after another from one buffered stream."""

    def __init__(self, server: SwitchboardProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.file: IO[bytes] = self.sock.makefile("rb")

    def makefile(self, *args: object, **kwargs: object) -> _Unclosed:  # what http.client asks of a socket
        return _Unclosed(self.file)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp, resp.read()

    def closed_by_server(self) -> bool:
        self.sock.settimeout(5)
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def conn(server: SwitchboardProcess) -> Iterator[Conn]:
    c = Conn(server)
    yield c
    c.close()


def chat_request(extra: str = "", body: bytes = CHAT) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_keep_alive_answers_several_requests_on_one_connection(conn: Conn) -> None:
    for _ in range(3):
        conn.send(chat_request())
        resp, body = conn.response()
        assert resp.status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == "Hello from m"
        assert resp.getheader("date") and resp.getheader("x-request-id")
        assert len(resp.headers.get_all("content-length") or []) == 1
        assert resp.getheader("connection") is None


def test_pipelined_requests_are_answered_in_order(conn: Conn) -> None:
    conn.send(b"".join(
        f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-{i}\r\n\r\n".encode() for i in range(3))
        + chat_request("X-Request-Id: pipe-chat\r\n"))
    for i in range(3):
        resp, body = conn.response()
        assert (resp.status, resp.getheader("x-request-id"), json.loads(body)) == (200, f"pipe-{i}", {"status": "ok"})
    resp, body = conn.response()
    assert resp.getheader("x-request-id") == "pipe-chat" and json.loads(body)["object"] == "chat.completion"


def test_chunked_request_body_arriving_in_pieces(conn: Conn) -> None:
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    for start in range(0, len(CHAT), 10):
        piece = CHAT[start:start + 10]
        conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
        time.sleep(0.01)
    conn.send(b"0\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "Hello from m"


def test_expect_100_continue(conn: Conn) -> None:
    head = chat_request("Expect: 100-continue\r\n")
    conn.send(head[:-len(CHAT)])
    interim = conn.file.readline()
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert conn.file.readline() == b"\r\n"
    conn.send(CHAT)
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body)["object"] == "chat.completion"


def test_head_sends_headers_only_and_the_connection_goes_on(conn: Conn) -> None:
    conn.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body = conn.response("HEAD")
    assert body == b"" and resp.getheader("content-length") not in (None, "0")
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body) == {"status": "ok"}


def test_http_1_0_gets_an_answer_then_the_connection_closes(conn: Conn) -> None:
    conn.send(chat_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body)["object"] == "chat.completion"
    assert conn.closed_by_server()


def test_a_streamed_answer_is_chunked_and_ends_with_the_last_chunk(conn: Conn) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    conn.send(chat_request(body=body))
    resp, data = conn.response()
    assert resp.getheader("transfer-encoding") == "chunked" and resp.getheader("content-type") == "text/event-stream"
    assert data.rstrip().endswith(b"data: [DONE]")
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # still usable afterwards
    assert conn.response()[0].status == 200


def test_connection_close_from_the_client_is_honoured(conn: Conn) -> None:
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resp, _ = conn.response()
    assert resp.status == 200 and resp.getheader("connection") == "close"
    assert conn.closed_by_server()


def test_malformed_request_gets_an_openai_error_and_a_close(conn: Conn) -> None:
    conn.send(b"THIS IS NOT HTTP\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http_request"
    assert conn.closed_by_server()


def test_oversized_headers_get_431(conn: Conn) -> None:
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"


def test_absolute_form_and_percent_encoded_paths(conn: Conn) -> None:
    conn.send(b"GET http://x/%68ealth HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body) == {"status": "ok"}


def test_server_still_serves_after_all_that(server: SwitchboardProcess) -> None:
    c = Conn(server)
    try:
        c.send(chat_request())
        assert c.response()[0].status == 200
    finally:
        c.close()


def test_a_request_with_connection_close_and_more_bytes_after_it_is_answered_then_closed(conn: Conn) -> None:
    # Issue 11: llhttp's "data after Connection: close" used to drop the pending request.
    conn.send(chat_request("Connection: close\r\n") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body)["object"] == "chat.completion"
    assert resp.getheader("connection") == "close" and conn.closed_by_server()


def test_an_http_1_0_request_with_more_bytes_after_it_is_answered_then_closed(conn: Conn) -> None:
    conn.send(b"GET /health HTTP/1.0\r\n\r\nGET /health HTTP/1.0\r\n\r\n")
    resp, body = conn.response()
    assert resp.status == 200 and json.loads(body) == {"status": "ok"} and conn.closed_by_server()


def test_a_bad_request_pipelined_after_good_ones_is_answered_last_with_a_400(conn: Conn) -> None:
    conn.send(chat_request("X-Request-Id: good-1\r\n") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
              + b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
    first, body = conn.response()
    assert first.status == 200 and first.getheader("x-request-id") == "good-1" and json.loads(body)["choices"]
    assert conn.response()[0].status == 200
    resp, body = conn.response()
    assert resp.status == 400 and json.loads(body)["error"]["code"] == "invalid_http_request"
    assert conn.closed_by_server()


def test_a_deep_pipeline_is_answered_in_full_and_in_order(conn: Conn) -> None:
    depth = 100
    conn.send(b"".join(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: deep-{i}\r\n\r\n".encode()
                       for i in range(depth)))
    for i in range(depth):
        resp, _ = conn.response()
        assert (resp.status, resp.getheader("x-request-id")) == (200, f"deep-{i}")
