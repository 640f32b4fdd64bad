"""OpenAI-format chunks relayed as the bytes they came as (issue 14): an OpenAI-compatible upstream's
plain `data: <json>` frames become `WireBatch`es, and the OpenAI encoder writes their bytes unless a
chunk has to change on the way (a usage chunk the client did not ask for, an id to make uniform)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.asgi import LastChunk
from switchboard.errors import GatewayError
from switchboard.headends.relay import OpenAIStreamEncoder, relay
from switchboard.hub import WireBatch
from switchboard.providers.base import SSEChunkStream
from switchboard.providers.openai import _openai_event
from switchboard.request_record import RequestRecord
from tests.fakes.scripted_response import ScriptedResponse


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


ROLE = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
TEXT = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
USAGE = {"id": "c1", "object": "chat.completion.chunk", "choices": [],
         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
SPACED = b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'  # not orjson's spacing


async def batches(pieces: list[bytes]) -> list[list[dict[str, Any]]]:
    stream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    return [batch async for batch in stream.batches()]


async def test_plain_frames_become_wire_batches_without_the_done_frame() -> None:
    got = await batches([frame(ROLE) + SPACED, frame(USAGE) + b"data: [DONE]\n\n"])
    assert [type(b) for b in got] == [WireBatch, WireBatch]
    assert isinstance(got[0], WireBatch) and got[0].wire == frame(ROLE) + SPACED
    assert isinstance(got[1], WireBatch) and got[1].wire == frame(USAGE)
    assert got[1] == [USAGE]


async def test_a_skipped_event_or_an_event_split_across_reads_gives_plain_batches() -> None:
    whole = frame(ROLE) + frame(TEXT)
    got = await batches([whole[:10], whole[10:] + b"data: 7\n\n", b"data: [DONE]\n\n"])
    assert all(type(b) is list for b in got[:2])  # began mid-event; `7` is no chunk
    assert [c for b in got for c in b] == [ROLE, TEXT]


async def test_an_error_event_fails_the_stream_after_the_chunks_before_it() -> None:
    stream = SSEChunkStream(ScriptedResponse([frame(ROLE) + frame({"error": {"message": "boom"}})]),  # type: ignore[arg-type]
                            "up", _openai_event, wire=True)
    source = stream.batches()
    first = await source.__anext__()
    assert type(first) is list and first == [ROLE]
    with pytest.raises(GatewayError):
        await source.__anext__()


def test_the_encoder_writes_the_wire_when_nothing_changes() -> None:
    encoder = OpenAIStreamEncoder(include_usage=True)
    assert encoder.encode(WireBatch([ROLE, TEXT], b"<exact bytes>")) == b"<exact bytes>"
    assert encoder.encode(WireBatch([dict(USAGE)], b"<usage bytes>")) == b"<usage bytes>"


def test_a_usage_chunk_the_client_did_not_ask_for_is_dropped_not_relayed() -> None:
    encoder = OpenAIStreamEncoder(include_usage=False)
    out = encoder.encode(WireBatch([dict(TEXT), dict(USAGE)], frame(TEXT) + frame(USAGE)))
    assert out == frame(TEXT)


def test_the_usage_tail_is_cut_from_the_wire_not_written_again() -> None:
    encoder = OpenAIStreamEncoder(include_usage=False)
    wire = SPACED + frame(USAGE)  # the client's frames stay the upstream's own bytes
    assert encoder.encode(WireBatch([orjson.loads(SPACED[6:]), dict(USAGE)], wire)) == SPACED
    assert encoder.encode(WireBatch([dict(USAGE)], frame(USAGE))) == b""


def parsed(frames: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) for line in frames.split(b"\n\n") if line]


WIRE_CHUNK = st.fixed_dictionaries({
    "id": st.sampled_from(["c1", "c1", "c1", "c2", None]),
    "choices": st.sampled_from([[], [{"index": 0, "delta": {"content": "x"}}], [{"index": 0, "delta": {}}]]),
    "usage": st.sampled_from([None, None, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}])})


@settings(max_examples=500, derandomize=True)
@given(st.lists(WIRE_CHUNK, min_size=1, max_size=5), st.lists(WIRE_CHUNK, max_size=2), st.booleans())
def test_the_encoder_sends_what_writing_every_chunk_again_sends(batch: list[Any], before: list[Any],
                                                                include_usage: bool) -> None:
    """With the wire (relayed or cut) or without it (each chunk written again), the client gets
    the same chunks, and the encoders keep the same stream id."""
    fast, slow = OpenAIStreamEncoder(include_usage), OpenAIStreamEncoder(include_usage)
    if before:  # an earlier batch sets the stream's id
        fast.encode([dict(c) for c in before])
        slow.encode([dict(c) for c in before])
    wire = b"".join(frame(c) for c in batch)
    got = fast.encode(WireBatch([dict(c) for c in batch], wire))
    assert parsed(got) == parsed(slow.encode([dict(c) for c in batch]))
    assert fast.stream_id == slow.stream_id


def test_chunks_with_another_id_are_given_the_streams_first_id() -> None:
    encoder = OpenAIStreamEncoder(include_usage=True)
    assert encoder.encode(WireBatch([dict(ROLE)], frame(ROLE))) == frame(ROLE)
    other = dict(TEXT, id="c2")
    assert encoder.encode(WireBatch([other], frame(other))) == frame(TEXT)


class _Hub:
    """The router's HubStream over one SSEChunkStream (what RoutedStream does, without routing)."""

    def __init__(self, upstream: SSEChunkStream, first: list[dict[str, Any]], rest: Any) -> None:
        self.headers: dict[str, str] = {}
        self.first = first
        self._upstream = upstream
        self._rest = rest

    @property
    def complete(self) -> bool:
        return self._upstream.complete

    def rest(self) -> Any:
        return self._rest

    async def aclose(self) -> None:
        await self._upstream.aclose()


async def relayed_writes(pieces: list[bytes]) -> tuple[list[bytes], RequestRecord]:
    """What the relay hands the server to write, body part by body part, for an upstream sending `pieces`."""
    upstream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    source = upstream.batches()
    hub = _Hub(upstream, await source.__anext__(), source)
    record = RequestRecord(request_id="r", endpoint="/chat/completions", model="m")
    response = relay(hub, record, OpenAIStreamEncoder(include_usage=True), lambda r: None)
    parts = [part async for part in response.body]
    return parts, record


async def test_the_read_that_carries_the_end_goes_out_with_the_responses_end_in_one_write() -> None:
    parts, record = await relayed_writes([frame(ROLE) + frame(TEXT), frame(USAGE) + b"data: [DONE]\n\n"])
    assert parts == [frame(ROLE) + frame(TEXT), frame(USAGE) + b"data: [DONE]\n\n"]
    assert type(parts[0]) is bytes and type(parts[1]) is LastChunk  # the usage frame is not a write of its own
    assert record.usage is not None and record.usage.completion_tokens == 1 and record.first_token_s is not None


async def test_a_whole_stream_in_one_read_is_one_write() -> None:
    parts, _ = await relayed_writes([frame(ROLE) + frame(TEXT) + frame(USAGE) + b"data: [DONE]\n\n"])
    assert parts == [frame(ROLE) + frame(TEXT) + frame(USAGE) + b"data: [DONE]\n\n"]
    assert type(parts[0]) is LastChunk


async def test_a_stream_cut_before_its_end_sends_what_came_then_the_error_frame() -> None:
    parts, record = await relayed_writes([frame(ROLE) + frame(TEXT)])
    assert parts[0] == frame(ROLE) + frame(TEXT)
    assert type(parts[-1]) is LastChunk and b"upstream_stream_truncated" in parts[-1]
    assert record.status == 502


async def _outcome(pieces: list[bytes], wire: bool) -> tuple[list[list[dict[str, Any]]], str | None, bool]:
    """The chunks of each batch, the code of the error that ended the stream (None: none) and whether
    the stream saw its proper end, for a stream read with or without the wire (and its fast path)."""
    stream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=wire)  # type: ignore[arg-type]
    got: list[list[dict[str, Any]]] = []
    code = None
    try:
        async for batch in stream.batches():
            got.append(list(batch))
    except GatewayError as err:
        code = err.code or err.type
    return got, code, stream.complete


ERROR_KEY_ESCAPED = b'data: {"id":"c1","\\u0065rror":{"message":"boom"}}\n\n'  # orjson reads the key as "error"
READS: list[list[bytes]] = [
    [frame(ROLE) + frame(TEXT) + frame(USAGE) + b"data: [DONE]\n\n"],
    [frame(ROLE) + b"data: [DONE]\n\n" + frame(TEXT)],  # [DONE] before the last frame: what follows is not read
    [frame(ROLE) + b"data: [1, 2]\n\n" + frame(TEXT), b"data: [DONE]\n\n"],  # not an object: skipped
    [frame(ROLE) + b'data: "text"\n\n', b"data: [DONE]\n\n"],
    [frame(ROLE) + frame({"error": {"message": "boom"}})],
    [frame(ROLE) + ERROR_KEY_ESCAPED],
    [frame(ROLE) + frame({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                          "error": {"message": "cut"}})],
    [frame({"id": "c1", "choices": [{"delta": {"content": "an \"error\" in the text"}}]}), b"data: [DONE]\n\n"],
    [frame(TEXT) + b"data: {not json}\n\n"],
    [frame({"id": "c1", "choices": [{"delta": {"content": "\u00e9t\u00e9 \\u sans \u00e9chappement"}}]}),
     b"data: [DONE]\n\n"],
    [SPACED + b"data: [DONE]\n\n"],
    [frame(TEXT) + b"data: []\n\n" + b"data: [DONE]\n\n"],
]


@pytest.mark.parametrize("pieces", READS)
async def test_the_fast_path_for_plain_frames_reads_what_the_event_by_event_path_reads(pieces: list[bytes]) -> None:
    assert await _outcome(pieces, wire=True) == await _outcome(pieces, wire=False)


async def test_plain_frames_are_read_without_a_convert_call_per_event() -> None:
    calls: list[str] = []

    def counting(event: str | None, data: str) -> dict[str, Any] | None:
        calls.append(data)
        return _openai_event(event, data)

    pieces = [frame(ROLE) + frame(TEXT), frame(USAGE) + b"data: [DONE]\n\n"]
    stream = SSEChunkStream(ScriptedResponse(pieces), "up", counting, wire=True)  # type: ignore[arg-type]
    got = [batch async for batch in stream.batches()]
    assert got == [[ROLE, TEXT], [USAGE]] and all(type(b) is WireBatch for b in got)
    assert calls == [] and stream.complete
    escaped = [frame(ROLE) + ERROR_KEY_ESCAPED]  # may hold an error: every event goes through convert
    stream = SSEChunkStream(ScriptedResponse(escaped), "up", counting, wire=True)  # type: ignore[arg-type]
    with pytest.raises(GatewayError):
        _ = [batch async for batch in stream.batches()]
    assert len(calls) == 2
