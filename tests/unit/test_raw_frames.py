"""Chunk frames read raw (`_sse_frames.raw_frames`, issue 14): a read of plain OpenAI chunk frames the
relay writes as it came is not parsed; the C reads what the relay needs from the bytes. Held to the
Python it stands in for: wherever it takes a read, (1) orjson parses every payload (what it takes is
valid JSON: an upstream's invalid frame must still fail the stream), (2) its readings are relay.py's
reference readings of the parsed chunks, (3) the OpenAI encoder writes the same bytes for it as for
the parsed batch, and (4) a whole stream read raw comes out as the same batches, end and error."""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard import sse
from switchboard.errors import GatewayError
from switchboard.headends.relay import OpenAIStreamEncoder, _content_chars, _has_first_token, relay
from switchboard.hub import WireBatch, parsed
from switchboard.providers.base import SSEChunkStream
from switchboard.providers.openai import _openai_event
from switchboard.request_record import RequestRecord
from switchboard.routing.deployment import Outcome
from switchboard.routing.streams import RoutedStream, open_first_batch
from tests.fakes.scripted_response import ScriptedResponse
from tests.unit.test_chunk_facts import chunks
from tests.unit.test_sse_frames import reads

if sse.read_raw_frames is None:  # not built: no C compiler at install time
    if os.environ.get("SWITCHBOARD_REQUIRE_NATIVE"):
        raise AssertionError("the C frame reader (_sse_frames.c) was not built")
    pytest.skip("the C frame reader is not built here", allow_module_level=True)

from switchboard._sse_frames import RawFrames  # (built: checked above)

LIMIT = 1 << 20
DONE = b"data: [DONE]\n\n"


def raw_frames(piece: bytes, limit: int) -> RawFrames | None:
    """The C's RawFrames of a read; where it does not take every chunk, its answer must be the split
    `plain_frames` gives (the payloads the caller parses instead), and this returns None."""
    found = sse.read_raw_frames(piece, limit)
    if isinstance(found, RawFrames):
        return found
    assert found == sse.split_plain_frames(piece, limit)
    return None


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def serialised(chunk: Any, style: int) -> bytes:
    """A chunk as upstreams write it: orjson's compact form, Python's with spaces or without (UTF-8 as
    it is), or Python's default, every character past ASCII as a `\\u` escape (surrogate pairs too)."""
    if style == 0:
        return orjson.dumps(chunk)
    separators = (", ", ": ") if style == 1 else (",", ":")
    return json.dumps(chunk, ensure_ascii=style == 3, separators=separators).encode()


def frames_of(piece: bytes) -> list[bytes]:
    """The payloads of a piece of plain frames, by hand (plain_frames leaves a `\\u` piece alone)."""
    return [line[6:] for line in piece.split(b"\n\n") if line and line != b"data: [DONE]"]


def needs_escape(text: str) -> bool:
    return any(c in '"\\' or ord(c) < 0x20 for c in text)


def reference(batch: list[Any]) -> tuple[Any, ...] | type[Exception]:
    """What the relay reads of parsed chunks, by its Python: content characters, first token, the usage
    chunks' positions, the shared id, the finish reasons, whether the last is a usage-only chunk."""
    try:
        reasons: list[str] = []
        chars = _content_chars(batch, reasons)
        first = _has_first_token(batch)
        usage = tuple(i for i, chunk in enumerate(batch) if chunk.get("usage") is not None)
        ids = [chunk.get("id") for chunk in batch]
    except Exception as exc:  # what the Python makes of a malformed batch
        return type(exc)
    shared = ids[0] if batch and all(type(i) is str and i == ids[0] for i in ids) else None
    last = batch[-1] if batch else {}
    tail = bool(batch) and last.get("usage") is not None and not last.get("choices")
    return chars, first, usage, shared, tuple(reasons) or None, tail


def readings(raw: RawFrames) -> tuple[Any, ...]:
    return raw.chars, raw.first_token, raw.usage, raw.id, raw.reasons, raw.usage_tail


def check_taken(piece: bytes, raw: RawFrames) -> None:
    """A read the C took: valid JSON throughout, the Python's readings, its own bytes."""
    payloads = raw.payloads()
    assert payloads == frames_of(piece)
    batch = [orjson.loads(payload) for payload in payloads]  # (raises if the C took invalid JSON)
    expected = reference(batch)
    assert isinstance(expected, tuple), "the C took chunks the Python cannot read"
    chars, first, usage, shared, reasons, tail = expected
    if shared is not None and needs_escape(shared):
        shared = None  # (an escaped id is not read in C: the encoder then parses the batch)
    assert readings(raw) == (chars, first, usage, shared, reasons, tail)
    assert raw.done == piece.endswith(DONE) and len(raw) == len(batch)
    assert raw.wire == (piece[:-len(DONE)] if raw.done else piece)
    assert [raw.payload(i) for i in range(len(raw))] == payloads
    if batch:
        assert raw.head() == b"".join(frame(p) for p in payloads[:-1])


@settings(max_examples=1500, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(chunks(odd=False), chunks(odd=True)), st.integers(0, 3), st.booleans())
def test_what_the_c_takes_it_reads_as_the_python_reads_the_parsed_chunks(batch: list[Any], style: int,
                                                                          done: bool) -> None:
    try:
        piece = b"".join(frame(serialised(chunk, style)) for chunk in batch) + (DONE if done else b"")
    except (TypeError, ValueError):  # (json.dumps of a float orjson writes as null, say)
        return
    if not piece:
        return
    raw = raw_frames(piece, LIMIT)
    if raw is not None:
        check_taken(piece, raw)
    elif isinstance(reference(batch), type):
        pass  # the Python fails on it: the C must have handed it back, and it did


PRINTABLE = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), max_size=8)


@settings(max_examples=400, derandomize=True)
@given(st.lists(st.fixed_dictionaries({
    "id": st.sampled_from(["c1", "c1", "c2"]), "object": st.just("chat.completion.chunk"),
    "choices": st.lists(st.fixed_dictionaries({"index": st.integers(0, 1)}, optional={
        "delta": st.fixed_dictionaries({}, optional={
            "role": st.just("assistant"), "content": st.one_of(st.none(), PRINTABLE),
            "reasoning_content": PRINTABLE, "refusal": st.one_of(st.none(), PRINTABLE),
            "tool_calls": st.lists(st.fixed_dictionaries({"index": st.just(0)}, optional={
                "id": PRINTABLE, "type": st.just("function"),
                "function": st.fixed_dictionaries({}, optional={"name": PRINTABLE, "arguments": PRINTABLE})}),
                max_size=2)}),
        "text": PRINTABLE, "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls"])),
        "logprobs": st.one_of(st.none(), st.just({"content": [{"token": "a", "logprob": -0.25, "bytes": [97]}]}))}),
        max_size=2)}, optional={
    "usage": st.one_of(st.none(), st.just({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
                                           "prompt_tokens_details": {"cached_tokens": 1}})),
    "created": st.integers(0, 2 ** 40), "model": PRINTABLE, "system_fingerprint": st.none()}),
    min_size=1, max_size=6), st.integers(0, 3))
def test_the_c_takes_every_read_of_the_real_format(batch: list[Any], style: int) -> None:
    """Chunks as OpenAI-compatible servers write them, UTF-8 as it is or escaped (any text but control
    characters: orjson writes them as `\\u` escapes too, which is fine, but hypothesis would make
    every other one a control character): the C takes the read, so the stream is not parsed."""
    piece = b"".join(frame(serialised(chunk, style)) for chunk in batch)
    raw = raw_frames(piece, LIMIT)
    assert raw is not None, piece
    check_taken(piece, raw)


# Bytes that matter to a JSON reader, and UTF-8 in every form (well-formed, overlong, surrogate, past U+10FFFF).
EDIT = st.sampled_from([b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\t", b"0", b"-", b"+", b".",
                        b"e", b"E", b"1", b"9", b"n", b"u", b"ll", b"true", b"fals", b"null", b"\xc3\xa9", b"\xc3",
                        b"\xa9", b"\xe2\x98\x83", b"\xe2\x98", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80",
                        b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xff", b"\x00", b"\x1f", b"\x7f",
                        b'"id"', b'"usage"', b'"choices"', b'"content"', b'"delta"', b"1e99", b"1e999",
                        b"01", b"\\/", b"\\q", b"\\u", b"\\u00e9", b"\\u00", b"\\ud83d", b"\\ude00",
                        b"\\ud83d\\ude00", b"\\uDBFF\\uDFFF", b"\\u0000", b"\\u0063ontent", b"\\u00G0"])


@settings(max_examples=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(odd=False), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 2), EDIT), min_size=1, max_size=4))
def test_what_the_c_takes_of_damaged_frames_orjson_parses(batch: list[Any], edits: list[tuple[int, int, bytes]]
                                                           ) -> None:
    """Valid frames with bytes replaced, inserted or deleted: whatever the C takes, orjson must parse
    (else an upstream's broken frame would reach the client), and read as the Python reads it."""
    payloads = [bytearray(orjson.dumps(chunk)) for chunk in batch] or [bytearray(b"{}")]
    for at, how, data in edits:
        target = payloads[at % len(payloads)]
        at %= len(target) + 1
        if how == 0:
            target[at:at + len(data)] = data
        elif how == 1:
            target[at:at] = data
        else:
            del target[at:at + len(data)]
    piece = b"".join(frame(bytes(p).replace(b"\n", b" ")) for p in payloads)
    raw = raw_frames(piece, LIMIT)
    if raw is not None:
        check_taken(piece, raw)


@pytest.mark.parametrize("payload", [
    b'{"a":1e99}', b'{"a":-0.5E-7}', b'{"a":' + b"9" * 200 + b"}", b'{"a":[[[[1]]]]}', b'{"a":"\\/\\b\\f\\n\\r\\t"}',
    b'{"a":"\x7f\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf"}', b'{"x":{"id":1,"id":2}}',
    b'{ "id" : "c" , "a" : [ ] }', b'{"id":"c","choices":[{"delta":{"content":"a","x":{"content":5}}}]}',
    b'{"usage":{"prompt_tokens":1},"choices":null}',
    b'{"id":"c","choices":[{"delta":{"content":"\\u00e9\\ud83d\\ude00\\u003c\\u0000\\uDBFF\\uDFFF"}}]}',
])
def test_valid_json_the_c_takes(payload: bytes) -> None:
    raw = raw_frames(frame(payload), LIMIT)
    assert raw is not None
    check_taken(frame(payload), raw)


@pytest.mark.parametrize("payload", [
    b'{"a":1e100}', b'{"a":1e-100}', b'{"a":' + b"9" * 201 + b"}", b'{"a":' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"a":"\\ud800"}', b'{"a":"\\udc00"}', b'{"a":"\\ud83dx"}', b'{"a":"\\ud83d\\u0041"}', b'{"a":"\\u12"}',
    b'{"\\u0063hoices":[]}', b'{"a\\/b":1}',
    b'{"a":"\xc0\xaf"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xf4\x90\x80\x80"}', b'{"a":"\x1f"}',
    b'{"a":tru}', b'{"a":nul}', b'{"a":01}', b'{"a":1.}', b'{"a":.5}', b'{"a":+1}', b'{"a":1,}', b'{"a" 1}',
    b'{"a":1} {}', b'{"a":"x\\q"}', b'{"id":"a","id":"b"}', b'{"usage":null,"usage":{}}',
    b'{"choices":[{"delta":{"content":"a","content":"b"}}]}', b'{"choices":{}}', b'{"choices":[1]}',
    b'{"choices":[{"text":5}]}', b'{"choices":[{"finish_reason":1}]}', b'{"choices":[{"finish_reason":"st\\/op"}]}',
    b'{"choices":[{"delta":{"tool_calls":{}}}]}', b'{"choices":[{"delta":{"tool_calls":[{"function":[]}]}}]}',
    b'{"a":NaN}', b'{"a":Infinity}', b"{'a':1}", b'{"a":"unclosed}',
])
def test_what_the_c_hands_back(payload: bytes) -> None:
    """Beyond its conservative bounds (numbers, depth, `\\u`), invalid JSON, a field the relay reads
    with another type, a key it reads twice: the caller parses, and decides as before."""
    assert raw_frames(frame(payload), LIMIT) is None


def test_ids_that_differ_or_are_escaped_are_no_shared_id() -> None:
    one, two = frame(b'{"id":"c1"}'), frame(b'{"id":"c2"}')
    assert raw_frames(one + one, LIMIT).id == "c1"  # type: ignore[union-attr]
    assert raw_frames(one + two, LIMIT).id is None  # type: ignore[union-attr]
    assert raw_frames(one + frame(b"{}"), LIMIT).id is None  # type: ignore[union-attr]
    assert raw_frames(frame(b'{"id":"c\\"1"}'), LIMIT).id is None  # type: ignore[union-attr]
    assert raw_frames(frame(b'{"id":7}'), LIMIT).id is None  # type: ignore[union-attr]


def test_an_error_key_goes_to_the_general_path_and_the_word_error_does_not() -> None:
    """An `error` key, at the top (an upstream's failure in the stream) or deeper, is left to the general
    path, as plain_frames leaves it; `"error"` as a string that is no key (a content token, a finish
    reason) is taken, where the up-front scan for the bytes `"error"` used to hand the read back."""
    for payload in (b'{"error":{"message":"boom"}}', b'{"id":"c","choices":[],"error":{"message":"boom"}}',
                    b'{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"error":1}]}',
                    b'{"id":"c","x":[{"y":{"error":null}}]}', b'{"id":"c","\\u0065rror":{}}'):
        assert raw_frames(frame(payload), LIMIT) is None, payload
        assert sse.split_plain_frames is not None and sse.split_plain_frames(frame(payload), LIMIT) is None
    for payload in (b'{"id":"c","choices":[{"index":0,"delta":{"content":"error"},"finish_reason":null}]}',
                    b'{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"error"}]}',
                    b'{"id":"c","errors":1,"x":"\\"error\\"","choices":[]}'):
        raw = raw_frames(frame(payload) + DONE, LIMIT)
        assert raw is not None, payload
        check_taken(frame(payload) + DONE, raw)
    assert raw_frames(frame(b'{"id":"c","choices":[{"index":0,"delta":{"content":"error"}}]}'), LIMIT).chars == 5  # type: ignore[union-attr]


def test_long_strings_are_read_8_bytes_at_a_time_up_to_what_stops_them() -> None:
    """The C reads a string's plain ASCII 8 bytes at a time: whatever byte stops a string (its quote,
    an escape, UTF-8, a control character) is found at every offset, up to the piece's last bytes."""
    for n in range(0, 40):
        for stop in (b"", b"\\n", b"\xc3\xa9", b"\\u00e9", b"\x01", b'"x'):
            text = b"a" * n + stop + b"b" * (n % 9)
            payload = b'{"id":"c","choices":[{"index":0,"delta":{"content":"' + text + b'"}}]}'
            raw = raw_frames(frame(payload), LIMIT)
            try:
                parsed_chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                assert raw is None, payload
                continue
            content = parsed_chunk["choices"][0]["delta"]["content"]
            if stop == b"\x01":  # (a control character: orjson refuses it too)
                raise AssertionError(payload)
            assert raw is not None and raw.chars == len(content), payload
            check_taken(frame(payload), raw)
        piece = frame(b'{"id":"' + b"c" * n + b'"}')  # a string that ends a few bytes before the piece does
        assert raw_frames(piece, LIMIT).id == "c" * n  # type: ignore[union-attr]


def test_a_read_of_only_done_is_an_empty_raw_batch() -> None:
    raw = raw_frames(DONE, LIMIT)
    assert raw is not None and len(raw) == 0 and not raw and raw.done and raw.wire == b"" and raw.head() == b""
    with pytest.raises(IndexError):
        raw.payload(0)


def test_more_usage_chunks_than_it_counts_are_handed_back() -> None:
    usage = frame(b'{"id":"c","usage":{"total_tokens":1}}')
    assert raw_frames(usage * 64, LIMIT).usage == tuple(range(64))  # type: ignore[union-attr]
    assert raw_frames(usage * 65, LIMIT) is None


def test_raw_frames_are_made_only_by_the_reader() -> None:
    with pytest.raises(TypeError):
        RawFrames()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        raw_frames(bytearray(b"data: {}\n\n"), 10)  # type: ignore[arg-type]


@settings(max_examples=800, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(odd=False), st.lists(st.fixed_dictionaries({"id": st.sampled_from(["c1", "c2"])}), max_size=1),
       st.booleans(), st.integers(0, 2))
def test_the_encoder_writes_a_raw_batch_as_it_writes_the_parsed_one(batch: list[Any], before: list[Any],
                                                                    include_usage: bool, style: int) -> None:
    piece = b"".join(frame(serialised(chunk, style)) for chunk in batch)
    raw = raw_frames(piece, LIMIT) if piece else None
    if raw is None:
        return
    fast, slow = OpenAIStreamEncoder(include_usage), OpenAIStreamEncoder(include_usage)
    if before:  # an earlier batch sets the stream's id
        fast.encode([dict(c) for c in before])
        slow.encode([dict(c) for c in before])
    as_parsed = WireBatch([orjson.loads(p) for p in raw.payloads()], raw.wire)
    assert fast.encode(raw) == slow.encode(as_parsed)
    assert fast.stream_id == slow.stream_id


async def outcome(pieces: list[bytes], raw: bool) -> tuple[list[tuple[list[dict[str, Any]], bytes | None]],
                                                          str | None, bool]:
    stream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    stream.raw = raw
    got: list[tuple[list[dict[str, Any]], bytes | None]] = []
    code = None
    try:
        async for batch in stream.batches():
            chunks_of = parsed(batch)  # type: ignore[arg-type]  # (a RawBatch, when read raw)
            got.append((list(chunks_of), getattr(chunks_of, "wire", None)))
    except GatewayError as err:
        code = err.code or err.type
    return got, code, stream.complete


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads())
async def test_a_stream_read_raw_comes_out_as_it_does_parsed(pieces: list[bytes]) -> None:
    assert await outcome(pieces, raw=True) == await outcome(pieces, raw=False)


async def test_reads_are_raw_only_while_asked_and_never_chunk_by_chunk() -> None:
    one = frame(orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}))
    stream = SSEChunkStream(ScriptedResponse([one, one, one + DONE]), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    stream.raw = True
    source = stream.batches()
    assert type(await source.__anext__()) is RawFrames
    stream.raw = False
    assert type(await source.__anext__()) is WireBatch
    stream = SSEChunkStream(ScriptedResponse([one, one + DONE]), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    stream.raw = True
    assert [chunk["choices"][0]["delta"]["content"] async for chunk in stream] == ["a", "a"]


class _RawHub:
    """A router stream handing the relay raw batches (what RoutedStream.raw_first / raw_rest do)."""

    def __init__(self, upstream: SSEChunkStream, first: Any, rest: Any) -> None:
        self.headers: dict[str, str] = {}
        self.raw_first = first
        self._upstream = upstream
        self._rest = rest

    @property
    def first(self) -> Any:
        return parsed(self.raw_first)

    @property
    def complete(self) -> bool:
        return self._upstream.complete

    def raw_rest(self) -> Any:
        return self._rest

    def rest(self) -> Any:
        self._upstream.raw = False
        return self._rest

    async def aclose(self) -> None:
        await self._upstream.aclose()


async def relayed(pieces: list[bytes], raw: bool, include_usage: bool) -> tuple[list[bytes], Any]:
    upstream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=True)  # type: ignore[arg-type]
    upstream.raw = raw
    source = upstream.batches()
    hub = _RawHub(upstream, await source.__anext__(), source)
    record = RequestRecord(request_id="r", endpoint="/chat/completions", model="m")
    response = relay(hub, record, OpenAIStreamEncoder(include_usage), lambda r: None)  # type: ignore[arg-type]
    parts = [bytes(part) async for part in response.body]
    return parts, (record.usage, record.status, record.first_token_s is not None)


def chunk(content: str | None, **more: Any) -> bytes:
    delta = {"content": content} if content is not None else {}
    return orjson.dumps({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **more})


USAGE = orjson.dumps({"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                                           "total_tokens": 6}})


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("pieces", [
    [frame(chunk(None)) + frame(chunk("Hel")), frame(chunk("lo")) + frame(USAGE) + DONE],
    [frame(chunk(None)) + frame(chunk("Hé☃")) + frame(USAGE) + DONE],
    [frame(chunk("a")) + frame(orjson.dumps({"id": "c2", "choices": []})), frame(USAGE) + DONE],  # another id
    [frame(chunk("a")) + frame(USAGE) + frame(chunk("b")) + DONE],  # usage not last
    [frame(chunk("cut"))],  # no end: the error frame, usage estimated
    [frame(chunk("a")) + frame(b'{"id":"c1","choices":[{"index":0,"delta":{"content":"\\u0062"}}]}') + DONE],
])
async def test_the_relay_sends_and_records_the_same_from_raw_batches(pieces: list[bytes], include_usage: bool) -> None:
    assert await relayed(pieces, raw=True, include_usage=include_usage) == \
        await relayed(pieces, raw=False, include_usage=include_usage)


async def routed(pieces: list[bytes]) -> RoutedStream:
    """The router's stream over an OpenAI upstream sending `pieces` (open_first_batch, as router.py opens it)."""
    upstream = SSEChunkStream(ScriptedResponse(pieces), "up", _openai_event, wire=True)  # type: ignore[arg-type]

    async def opening() -> SSEChunkStream:
        return upstream

    opened = await open_first_batch(opening())
    return RoutedStream(opened, Outcome(None, 1, False), {})  # type: ignore[arg-type]  # (no deployment is read)


async def test_the_router_reads_raw_and_parses_for_every_consumer_but_the_relay_that_asks() -> None:
    pieces = [frame(chunk("a")), frame(chunk("b")), frame(USAGE) + DONE]
    stream = await routed(pieces)
    assert type(stream.raw_first) is RawFrames  # read raw from the first read
    assert type(stream.first) is WireBatch and stream.first == [orjson.loads(chunk("a"))]
    later = [batch async for batch in stream.rest()]
    assert [type(batch) for batch in later] == [WireBatch, WireBatch]  # rest(): parsed as they arrive
    assert later == [[orjson.loads(chunk("b"))], [orjson.loads(USAGE)]]
    await stream.aclose()
    stream = await routed(pieces)
    raw_rest = stream.raw_rest()
    assert raw_rest is not None
    assert [type(batch) for batch in [stream.raw_first, *[b async for b in raw_rest]]] == [RawFrames] * 3
    await stream.aclose()
