"""Differential fuzz of our HTTP/1.1 server (server/protocol.py) against h11.

Seeded random byte streams of pipelined requests, valid and subtly invalid (methods, targets,
versions, header lines, Content-Length and chunked bodies, Connection, junk after the last request),
are sent to our server on a free port (under uvloop, as in production), split at random points
across reads. What our server does (which requests reach the app, with which method, path, query,
headers, body; whether the connection ends with an error response or a close after the last
answer) is compared with what h11 parses from the same bytes.

Where our server deliberately differs from h11, the difference is written down below (`DEVIATIONS`
and the rules in `expected`), each with why; anything else that differs fails the test with the
seed's case number, the bytes and both outcomes.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
import uvloop

from switchboard.server.protocol import HttpProtocol, ServerState

SEED = int(os.environ.get("FUZZ_SEED", "102026"))
CASES = int(os.environ.get("FUZZ_CASES", "500"))
SENTINEL = b"GET /__end__ HTTP/1.1\r\nHost: s\r\n\r\n"  # after every case: answered only if the stream stayed in sync

# llhttp knows a fixed list of methods and refuses any other token with a 400; h11 takes any token.
# Ours is stricter on purpose: no endpoint of the gateway has a custom method.
LLHTTP_METHODS = {
    "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE",
    "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY",
    "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK",
    "UNLINK", "SOURCE", "QUERY",
}

# What ours refuses (400) although h11 accepts it, each on purpose. A request generated with one of
# these is expected to end the connection with an error where h11 would go on.
DEVIATIONS = {
    "bare-lf": "lines ended by LF alone: llhttp wants CRLF (RFC 9112 2.2 lets a recipient accept LF, "
               "but a lone LF is also how smuggling payloads disagree between hops)",
    "obs-fold": "a header continued on the next line: obsolete (RFC 9112 5.2), a server may reject it with 400",
    "chunk-size-space": "whitespace after a chunk size: not in the grammar (RFC 9112 7.1); h11 allows it",
    "cl-dup-same": "Content-Length twice, even with one value: RFC 9112 6.3 lets a recipient merge equal values, "
                   "llhttp refuses what is a classic smuggling ingredient (h11 merges)",
    "del-value": "DEL (0x7f) in a header value: not a field-vchar (RFC 9110 5.5); h11 takes it",
}

App = Any


@dataclass
class Seen:
    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: str


@dataclass
class Outcome:
    requests: list[Seen] = field(default_factory=list)
    end: str = "open"  # "open" (the sentinel was answered), "close" (closed after the last answer), "error"


@dataclass
class Req:
    """One generated request: `wire` goes to our server; `model` is what h11 is given for it (the
    same bytes unless ours is deliberately more lenient there, see `generate`)."""

    wire: bytes
    model: bytes
    deviation: str | None = None  # a key of DEVIATIONS: ours refuses it
    host_differs: bool = False  # ours accepts a missing/repeated Host; h11 got exactly one
    version: str | None = None  # the version our app sees, when the model was given another


# --- the generator


NAMES = ["X-A", "x-b", "Accept", "Content-Type", "User-Agent", "X-Long-Name-With-Dashes", "x_under", "X.Dot",
         "!#$%&'*+-.^_`|~"]
VALUES = ["", "v", "a b  c", "  lead", "trail  ", "\ttabs\t", "comma, list", '"quoted"', "obs\x80\xfftext",
          "=?utf-8?q?x?=", "x" * 300, "application/json; charset=utf-8"]
TARGETS = ["/", "/v1/chat/completions", "/v1/models?limit=2&after=x", "/a%20b", "/%7Euser/%41", "/a/./b/../c",
           "/x#frag", "/x?q=1#frag?no", "http://example.com/v1/models?x=1", "http://example.com:8080", "/a;b=c",
           "/q?a=%zz", "/~!$&'()*+,;=:@", "/{}|^`", "/\"<>"]


# One subtle defect per request at most; both refuse most of them, ours refuses also the DEVIATIONS.
DEFECTS = ["bad-name", "space-before-colon", "no-colon", "nul-value", "del-value", "cl-plus-te", "cl-dup-same",
           "cl-dup-diff", "cl-bad", "cl-short", "te-gzip", "chunk-bad-size", "chunk-no-crlf", "bare-lf", "obs-fold",
           "chunk-size-space"]


def _token_method(rng: random.Random) -> str:
    return rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"] * 6
                      + ["FOO", "get", "X-CUSTOM", "M-SEARCH"])


def _body(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"abcdefghij{}\":, \r\n\x00\xff") for _ in range(rng.randint(0, 40)))


def _chunked(rng: random.Random, body: bytes, bad: str | None) -> bytes:
    out, at = [], 0
    while at < len(body):
        size = rng.randint(1, 12)
        piece = body[at:at + size]
        at += size
        hexsize = f"{len(piece):x}"
        hexsize = hexsize.upper() if rng.random() < 0.3 else hexsize
        ext = rng.choice(["", "", "", ";a=b", ";x"])
        space = " " if bad == "chunk-size-space" and not out else ""
        out.append(f"{hexsize}{space}{ext}\r\n".encode() + piece + b"\r\n")
    if bad == "chunk-size-space" and not out:
        out.append(b"1 \r\nz\r\n")
    if bad == "chunk-bad-size":
        out.append(b"zz\r\n")
    if bad == "chunk-no-crlf" and out:
        out[-1] = out[-1][:-2] + b"XX"
    trailer = rng.choice([b"", b"", b"X-T: 1\r\n"])
    return b"".join(out) + b"0\r\n" + trailer + b"\r\n"


def generate(rng: random.Random) -> Req:
    """One request: mostly valid, sometimes with one subtle defect (or a documented deviation)."""
    version = rng.choice(["1.1"] * 8 + ["1.0", "1.2"])
    method = _token_method(rng)
    target = rng.choice([*TARGETS, "/a b", "/a\x7f", "/\xc3\xa9", "/a\tb"] if rng.random() < 0.1 else TARGETS)
    if method == "OPTIONS" and rng.random() < 0.3:
        target = "*"
    lines: list[str] = []
    hosts: list[str] = []  # the Host lines ours gets
    model_hosts: list[str] | None = None  # the Host lines h11 gets instead, where ours is more lenient
    version_seen: str | None = None
    host = rng.random()
    if version == "1.1" and host < 0.05:  # no Host: ours accepts it (the gateway does not route by Host);
        model_hosts = ["Host: example.com"]  # h11 requires one (RFC 9112 3.2: MUST 400): it gets one
    elif version == "1.1" and host < 0.08:
        hosts = ["Host: a.example", "Host: b.example"]  # the same leniency for a repeated Host
        model_hosts = ["Host: a.example"]
    elif version == "1.1" or host < 0.5:
        hosts = ["Host: example.com"]
    for _ in range(rng.randint(0, 4)):
        lines.append(f"{rng.choice(NAMES)}: {rng.choice(VALUES)}")
    defect = None if rng.random() < 0.7 else rng.choice(DEFECTS)
    body = _body(rng) if method in ("POST", "PUT", "PATCH") or rng.random() < 0.1 else b""
    framing = rng.choice(["cl", "cl", "chunked"]) if body or rng.random() < 0.3 else "none"
    if defect in ("chunk-bad-size", "chunk-no-crlf", "chunk-size-space", "cl-plus-te", "te-gzip"):
        framing = "chunked"
    elif defect in ("cl-dup-same", "cl-dup-diff", "cl-bad", "cl-short"):
        framing = "cl"
    tail = b""
    if framing == "cl":
        length = len(body)
        if defect == "cl-short":
            body += b"-overrun"  # the rest reads as the start of the next request
        value = {"cl-bad": rng.choice(["5x", "+5", "-1", "0x5", "5 5"])}.get(defect or "", str(length))
        lines.append(f"Content-Length: {value}")
        if defect == "cl-dup-same":
            lines.append(f"Content-Length: {length}")
        if defect == "cl-dup-diff":
            lines.append(f"Content-Length: {length + 1}")
        tail = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: " + ("gzip" if defect == "te-gzip" else rng.choice(["chunked", "Chunked"])))
        if defect == "cl-plus-te":
            lines.append(f"Content-Length: {len(body)}")
        tail = _chunked(rng, body, defect)
    if defect == "bad-name":
        lines.insert(rng.randint(0, len(lines)), "Bad Name: v")
    elif defect == "space-before-colon":
        lines.insert(rng.randint(0, len(lines)), "X-Sp : v")
    elif defect == "no-colon":
        lines.insert(rng.randint(0, len(lines)), "JustAName")
    elif defect == "nul-value":
        lines.insert(rng.randint(0, len(lines)), "X-Nul: a\x00b")
    elif defect == "del-value":  # DEL is not a field-vchar (RFC 9110 5.5): llhttp refuses it, h11 takes it
        lines.insert(rng.randint(0, len(lines)), "X-Del: a\x7fb")
    elif defect == "obs-fold":
        lines += ["X-Fold: a", " b"]
    connection = rng.random()
    if connection < 0.1:
        lines.append(rng.choice(["Connection: close", "Connection: Close", "Connection: foo, close"]))
    elif connection < 0.2 and version == "1.0":
        # HTTP/1.0 keep-alive: ours keeps such a connection open, as uvicorn does; h11 never does keep-alive
        # with HTTP/1.0 and closes. h11 is given the same request as HTTP/1.1 (with a Host, not compared).
        lines.append("Connection: keep-alive")
        version_seen = "1.0"
        model_hosts = hosts or ["Host: example.com"]
    if rng.random() < 0.05:
        lines.append("Expect: 100-continue")

    def render(head_lines: list[str], ver: str, eol: str = "\r\n") -> bytes:
        head = f"{method} {target} HTTP/{ver}{eol}" + "".join(line + eol for line in head_lines) + eol
        return head.encode("latin-1") + tail

    wire = render(hosts + lines, version, "\n" if defect == "bare-lf" else "\r\n")
    model = render((hosts if model_hosts is None else model_hosts) + lines, "1.1" if version_seen else version)
    leading = rng.choice([b""] * 8 + [b"\r\n", b"\r\n\r\n"])
    # Empty lines before a request line: ours skips them (RFC 9112 2.2: a server SHOULD ignore at least
    # one); h11 refuses even one. h11 is given the request without them.
    return Req(leading + wire, model, defect if defect in DEVIATIONS else None, model_hosts is not None, version_seen)


def deep_case(rng: random.Random) -> list[Req]:
    """A deep pipeline of valid requests, longer than one piece the server parses at a time (8 KB),
    so that it stops parsing past its bound and goes on as answers go out."""
    reqs = []
    for i in range(rng.randint(40, 400)):
        body = _body(rng) if rng.random() < 0.3 else b""
        framing = f"Content-Length: {len(body)}\r\n" if body else ""
        wire = f"POST /deep/{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * rng.randint(0, 200)}\r\n{framing}\r\n".encode()
        reqs.append(Req(wire + body, wire + body))
    return reqs


def generate_case(rng: random.Random) -> list[Req]:
    if rng.random() < 0.03:
        return deep_case(rng)
    reqs = [generate(rng) for _ in range(rng.choice([1, 1, 2, 3, 5]))]
    if rng.random() < 0.08:
        junk = rng.choice([b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x00", b" GET / HTTP/1.1\r\n\r\n"])
        reqs.append(Req(junk, junk))
    return reqs


# --- the model: h11, plus the documented deviations


def _path_of(target: bytes) -> tuple[str, bytes, bytes]:
    """path, raw_path, query from a target, as the server defines them (a fragment is dropped)."""
    target = target.partition(b"#")[0]
    if target[:1] == b"/":
        raw, _, query = target.partition(b"?")
    else:  # absolute-form (or "*")
        parts = urlsplit(target)
        raw, query = (parts.path or b"/") if parts.scheme else target, parts.query
    path = raw.decode("latin-1")
    return (unquote(path) if "%" in path else path), raw, query


def expected(reqs: list[Req]) -> Outcome:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"".join(r.model for r in reqs) + SENTINEL)
    out = Outcome()
    current: h11.Request | None = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                out.end = "hang"  # h11 waits for more: a case that should not be generated
                return out
            if isinstance(event, h11.Request):
                index = len(out.requests)
                req = reqs[index] if index < len(reqs) else None
                names = [name for name, _ in event.headers]
                if (event.method.decode() not in LLHTTP_METHODS  # see LLHTTP_METHODS
                        or event.http_version not in (b"1.0", b"1.1")  # llhttp: no HTTP/1.2 nor 2.0 in HTTP/1.x
                        # Content-Length with Transfer-Encoding, or twice even if equal: llhttp refuses what
                        # RFC 9112 6.1/6.3 call a smuggling sign; h11 lets chunked win / merges equal values.
                        or names.count(b"content-length") > 1
                        or (b"content-length" in names and b"transfer-encoding" in names)
                        or (req is not None and req.deviation is not None)):
                    out.end = "error"
                    return out
                current, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                index = len(out.requests)
                req = reqs[index] if index < len(reqs) else None
                headers = list(current.headers)
                path, raw, query = _path_of(current.target)
                version = req.version if req is not None and req.version else current.http_version.decode()
                out.requests.append(Seen(current.method.decode(), path, raw, query, headers, body, version))
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    out.end = "close"
                    return out
                if current.target == b"/__end__":
                    return out
                conn.start_next_cycle()
    except h11.RemoteProtocolError:
        out.end = "error"
        return out


def comparable(outcome: Outcome, reqs: list[Req]) -> Outcome:
    """What is compared: the Host lines are left out where ours got others than h11 (see
    `generate`), and a Transfer-Encoding value is compared in lower case (h11 lowers it; the app
    sees it as sent, which is fine: its coding names are case-insensitive)."""
    requests = []
    for index, seen in enumerate(outcome.requests):
        skip_host = index < len(reqs) and reqs[index].host_differs
        headers = [(name, value.lower() if name == b"transfer-encoding" else value) for name, value in seen.headers
                   if not (skip_host and name == b"host")]
        requests.append(Seen(seen.method, seen.path, seen.raw_path, seen.query, headers, seen.body, seen.version))
    return Outcome(requests, outcome.end)


# --- our server


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        headers = [(name, value) for name, value in scope["headers"]]
        self.seen.append(Seen(scope["method"], scope["path"], scope["raw_path"], scope["query_string"], headers,
                              body, scope["http_version"]))
        answer = b"__end__" if scope["path"] == "/__end__" else b"ok"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


_HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n")


def _statuses(raw: bytes, seen: list[Seen]) -> tuple[list[int], bool]:
    """The final statuses in a response stream (HEAD answers have no body), and whether the stream
    ends in the middle of a response."""
    statuses, at = [], 0
    while match := _HEAD.match(raw, at):
        status = int(match.group(1))
        at = match.end()
        if status < 200:
            continue
        length = re.search(rb"(?im)^content-length: *(\d+)", match.group(2))
        answered = len(statuses)
        if length and not (answered < len(seen) and seen[answered].method == "HEAD" and status == 200):
            at += int(length.group(1))
        statuses.append(status)
    return statuses, at != len(raw)


async def observe(port: int, app: Recorder, data: bytes, rng: random.Random) -> tuple[Outcome, bytes]:
    app.seen = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice([0, 1, 3, 8, 30]))))
    if rng.random() < 0.03:
        cuts = list(range(1, len(data)))  # byte by byte
    raw = b""
    try:
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            writer.write(data[start:end])
            await writer.drain()
            await asyncio.sleep(0)  # one loop turn: the server reads this piece on its own
        eof = False
        async with asyncio.timeout(5):  # a hang fails the case
            while not raw.endswith(b"\r\n\r\n__end__"):
                chunk = await reader.read(65536)
                if not chunk:
                    eof = True
                    break
                raw += chunk
    except ConnectionError:
        eof = True
    except TimeoutError:
        return Outcome(list(app.seen), "hang"), raw
    finally:
        writer.close()
    statuses, cut = _statuses(raw, app.seen)
    extra = statuses[len(app.seen):]
    if cut or statuses[:len(app.seen)] != [200] * len(app.seen) or len(extra) > 1 or any(s < 400 for s in extra):
        return Outcome(list(app.seen), f"garbled: statuses {statuses}, cut {cut}"), raw
    end = "error" if extra else "close" if eof else "open"
    return Outcome(list(app.seen), end), raw


async def _run_cases() -> list[str]:
    rng = random.Random(SEED)
    app = Recorder()
    state = ServerState(app)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    failures: list[str] = []
    kinds: dict[str, int] = {}
    async with server:
        for case in range(CASES):
            reqs = generate_case(rng)
            want = comparable(expected(reqs), reqs)
            if want.end == "hang":
                continue  # h11 needs more bytes (e.g. a Content-Length over what follows): not a wire case
            data = b"".join(r.wire for r in reqs) + SENTINEL
            got, raw = await observe(port, app, data, rng)
            got = comparable(got, reqs)
            kinds[want.end] = kinds.get(want.end, 0) + 1
            if (got.requests, got.end) != (want.requests, want.end):
                failures.append(f"case {case}: sent {data!r}\n  h11 (+deviations): {want}\n  ours: {got}\n"
                                f"  ours sent: {raw[:600]!r}")
        for conn in list(state.connections):
            conn.transport.abort()
        await asyncio.sleep(0)
    # The generator must keep reaching every outcome, or the comparison proves little.
    assert all(kinds.get(end, 0) >= CASES // 20 for end in ("open", "close", "error")), kinds
    return failures


def test_our_server_parses_what_h11_parses_except_where_documented() -> None:
    failures = uvloop.run(_run_cases())
    assert not failures, f"{len(failures)} of {CASES} cases differ:\n" + "\n".join(failures[:5])
