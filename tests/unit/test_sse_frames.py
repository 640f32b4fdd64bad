"""The C split of plain chunk frames (`_sse_frames.c`) against the Python it stands in for: an
upstream read must come out as the same batches, with the same bytes, the same end and the same
error, whether the C splits it, the SSE decoder's fast path and `_plain_chunks` do, or every event
goes through `convert` one by one. Random reads mix plain frames with everything that must take
the general path (an upstream may send anything, split anywhere)."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard import sse
from switchboard.errors import GatewayError
from switchboard.providers.base import SSEChunkStream
from switchboard.providers.openai import _openai_event
from tests.fakes.scripted_response import ScriptedResponse

if sse.split_plain_frames is None:  # not built: no C compiler at install time
    if os.environ.get("SWITCHBOARD_REQUIRE_NATIVE"):
        raise AssertionError("the C frame splitter (_sse_frames.c) was not built")
    pytest.skip("the C frame splitter is not built here", allow_module_level=True)

plain_frames = sse.split_plain_frames


def chunk(content: str, cid: str = "c1") -> bytes:
    return orjson.dumps({"id": cid, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})


# Frames as an upstream may send them: plain ones, and every kind that must take the general path.
FRAME = st.one_of(
    st.text(max_size=12).map(lambda t: b"data: " + chunk(t) + b"\n\n"),
    st.just(b"data: [DONE]\n\n"),
    st.just(b'data: {"error":{"message":"boom","type":"server_error"}}\n\n'),
    st.just(b'data: {"id":"c1","\\u0065rror":{"message":"boom"}}\n\n'),
    st.just(b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"a \\\\u b \\n c"}}]}\n\n'),
    st.just(b"data: [1, 2]\n\n"), st.just(b'data: "text"\n\n'), st.just(b"data: {not json}\n\n"),
    st.just(b"data:  " + chunk("spaced") + b"\n\n"), st.just(b"data:" + chunk("tight") + b"\n\n"),
    st.just(b"data: " + chunk("crlf") + b"\r\n\r\n"), st.just(b"event: ping\ndata: {}\n\n"),
    st.just(b": keep-alive\n\n"), st.just(b"data: {\"a\":\ndata: 1}\n\n"), st.just(b"\n"),
    st.just(b"data: " + chunk("caf\u00e9 \u2603") + b"\n\n"), st.just(b"data: \xff\xfe\n\n"),
    st.just(b"data: {}\n\ndata: {}\n\n"), st.just(b"data: [DONE]\n\ndata: [DONE]\n\n"),
    st.just(b"data: " + chunk("cr") + b"\r\n\n"), st.just(b'data: {"a":1}\rdata: {}\n\n'),
    st.just(b"data: {}\nxdata: {}\n\n"), st.just(b"data: {}\n\n\n"),
    st.just(b"id: 1\n"), st.just(b"retry: 5\n"), st.just(b": ping\n"),  # lines of an event under way
)


@st.composite
def reads(draw: st.DrawFn) -> list[bytes]:
    """A stream's bytes, cut into network reads: mostly at frame ends, sometimes anywhere."""
    body = b"".join(draw(st.lists(FRAME, min_size=1, max_size=8)))
    if draw(st.booleans()):
        body += b"data: [DONE]\n\n"
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4))))
    if draw(st.booleans()):  # at frame ends only
        ends = [i + 2 for i in range(len(body) - 1) if body[i:i + 2] == b"\n\n"]
        cuts = sorted(set(draw(st.lists(st.sampled_from(ends), max_size=4)))) if ends else []
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if body[a:b]]


async def outcome(pieces: list[bytes], wire: bool, limit: int = sse.DEFAULT_MAX_EVENT_BYTES
                  ) -> tuple[list[tuple[list[dict[str, Any]], bytes | None]], str | None, bool]:
    """Each batch's chunks and bytes, the code of the error that ended the stream, and its end."""
    stream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, limit, wire=wire)  # type: ignore[arg-type]
    got: list[tuple[list[dict[str, Any]], bytes | None]] = []
    code = None
    try:
        async for batch in stream.batches():
            got.append((list(batch), getattr(batch, "wire", None)))
    except GatewayError as err:
        code = err.code or err.type
    return got, code, stream.complete


async def in_python(pieces: list[bytes], wire: bool, limit: int = sse.DEFAULT_MAX_EVENT_BYTES) -> Any:
    saved, sse.split_plain_frames = sse.split_plain_frames, None
    try:
        return await outcome(pieces, wire, limit)
    finally:
        sse.split_plain_frames = saved


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads(), st.one_of(st.just(sse.DEFAULT_MAX_EVENT_BYTES), st.integers(8, 120)))
async def test_reads_split_in_c_come_out_as_the_python_makes_them(pieces: list[bytes], limit: int) -> None:
    native = await outcome(pieces, wire=True, limit=limit)
    assert native == await in_python(pieces, wire=True, limit=limit)
    chunks = ([c for c, _ in native[0]], native[1], native[2])
    every_event = await in_python(pieces, wire=False, limit=limit)  # convert per event: the chunks, not the bytes
    assert chunks == ([c for c, _ in every_event[0]], every_event[1], every_event[2])


def test_plain_frames_are_split_and_anything_else_is_left_to_the_python() -> None:
    one, two = b"data: " + chunk("a") + b"\n\n", b"data: " + chunk("b") + b"\n\n"
    assert plain_frames(one + two, 1 << 20) == ([chunk("a"), chunk("b")], False)
    assert plain_frames(one + b"data: [DONE]\n\n", 1 << 20) == ([chunk("a")], True)
    assert plain_frames(b"data: [DONE]\n\n", 1 << 20) == ([], True)
    for odd in [one + two[:-1], one + b"data: [DONE]\n\n" + two, one.replace(b"\n\n", b"\r\n\r\n"),
                b"data: " + b'{"x":"\\u0041"}' + b"\n\n", b'data: {"error":{}}\n\n', b"data: [1]\n\n",
                b"data:\n\n", b"data: \n\n", b"event: x\n" + one, b"\n" + one, one + b"\n", b"", b"data: {\n\n"[:-1]]:
        assert plain_frames(odd, 1 << 20) is None, odd
    assert plain_frames(one, len(one)) is not None and plain_frames(one, len(one) - 1) is None  # the size limit


async def test_a_line_before_plain_frames_counts_toward_no_later_event() -> None:
    """An `id:` line with no blank line after it, then plain frames split in C: the event it began is
    over, so its bytes do not count toward the size of the next event the Python reads."""
    pieces = [b"id: 1\n", b'data: {"id":"c1"}\n\n', b'data:{"id":"c1","choices":[]}\n\n']
    native = await outcome(pieces, wire=True, limit=31)
    assert native == await in_python(pieces, wire=True, limit=31)
    assert native[1] == "upstream_stream_truncated" and len(native[0]) == 2


def test_limits_beyond_any_piece_or_below_zero() -> None:
    one = b"data: " + chunk("a") + b"\n\n"
    assert plain_frames(one, 2 ** 70) == plain_frames(one, 1 << 20) == ([chunk("a")], False)
    assert plain_frames(one, -1) is None and plain_frames(one, -(2 ** 70)) is None


def test_what_is_not_bytes_is_refused() -> None:
    with pytest.raises(TypeError):
        plain_frames(bytearray(b"data: {}\n\n"), 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        plain_frames(b"data: {}\n\n")  # type: ignore[call-arg]
