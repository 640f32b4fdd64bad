"""The upstream SSE decoder: the same events however the bytes are split, linear work, bounded events."""

from __future__ import annotations

import random
from typing import Any, SupportsIndex

import pytest

from switchboard.sse import EventTooLarge, SSEDecoder

STREAM = (b'event: message_start\r\ndata: {"a":1}\r\n\r\n: ping\n\ndata: line1\ndata:line2\n\n'
          b"id: 7\nretry: 10\ndata:  two spaces\n\nevent: e\n\n\ndata: \xc3\xa9t\xc3\xa9\n\ndata: [DONE]\n\n"
          b"data: no blank line at the end")
EVENTS = [("message_start", '{"a":1}'), (None, "line1\nline2"), (None, " two spaces"), (None, "été"),
          (None, "[DONE]"), (None, "no blank line at the end")]


def decode(pieces: list[bytes], max_event_bytes: int = 1 << 20) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder(max_event_bytes)
    events = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.finish()


def test_whole_and_byte_by_byte() -> None:
    assert decode([STREAM]) == EVENTS
    assert decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EVENTS


def test_any_split_gives_the_same_events() -> None:
    rng = random.Random(10)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert decode(pieces) == EVENTS, cuts


class CountingBytes(bytes):
    """Bytes that count the work done on them and on what is sliced or concatenated from them: bytes
    scanned by `find`, bytes copied by slicing and `+`. (`b"".join` returns plain bytes: a join is
    counted by the scans and slices on its result only if the decoder scans it again.)"""

    work = 0

    def find(self, sub: Any, start: SupportsIndex | None = None, end: SupportsIndex | None = None) -> int:
        begin = 0 if start is None else int(start)
        found = super().find(sub, begin, len(self) if end is None else end)
        CountingBytes.work += (found + 1 if found >= 0 else len(self)) - begin
        return found

    def __getitem__(self, key: Any) -> Any:
        part = super().__getitem__(key)
        if isinstance(key, slice):
            CountingBytes.work += len(part)
            return CountingBytes(part)
        return part

    def __add__(self, other: Any) -> CountingBytes:
        CountingBytes.work += len(self) + len(other)
        return CountingBytes(super().__add__(other))


@pytest.mark.parametrize("shape", ["one-line", "many-lines"])
def test_a_large_event_in_small_pieces_costs_linear_work(shape: str) -> None:
    """Issue 10, defect 9: the decoder rebuilt and rescanned its buffer on every piece (a 50 MB event
    cost 12 s of CPU). Now each byte is scanned and copied a bounded number of times."""
    size, piece = 1 << 20, 1024
    if shape == "one-line":
        raw = b"data: " + b"x" * size + b"\n\n"
    else:  # a long event of many short data lines, split mid-line
        raw = b"".join(b"data: %0100d\n" % i for i in range(size // 107)) + b"\n"
    CountingBytes.work = 0
    events = decode([CountingBytes(raw[at:at + piece]) for at in range(0, len(raw), piece)], max_event_bytes=2 << 20)
    assert len(events) == 1 and len(events[0][1]) >= size * 0.9
    # One long line: the quadratic decoder did ~len(raw)**2 / piece = 1.6 GB of work (1540x). Many
    # short lines were not quadratic before (5x): they guard the short-line path.
    assert CountingBytes.work <= 6 * len(raw), CountingBytes.work


@pytest.mark.parametrize("how", ["one-line-in-pieces", "many-lines-in-pieces", "ending-in-the-piece-past-the-limit",
                                 "under-way-at-the-end-of-one-read"])
def test_an_event_over_max_event_bytes_raises(how: str) -> None:
    limit = 64 * 1024
    if how == "many-lines-in-pieces":
        raw = b"".join(b"data: %01000d\n" % i for i in range(2 * limit // 1000)) + b"\n"
    elif how == "ending-in-the-piece-past-the-limit":  # one byte too many, and its end in the same piece
        raw = b"data: " + b"y" * (limit - 7) + b"\n\n"
    else:
        raw = b"data: " + b"y" * (2 * limit) + b"\n\n"
    assert len(raw) > limit
    if how == "under-way-at-the-end-of-one-read":
        pieces = [raw[:-2]]
    else:
        pieces = [raw[at:at + 1000] for at in range(0, len(raw), 1000)]
    decoder = SSEDecoder(limit)
    fed = 0
    with pytest.raises(EventTooLarge, match=str(limit)):
        for piece in pieces:
            fed += len(piece)
            decoder.feed(piece)
    assert fed - len(piece) <= limit  # in the piece that took it past the limit: nothing held beyond


def test_events_up_to_max_event_bytes_and_many_small_ones_are_fine() -> None:
    limit = 64 * 1024
    at_limit = b"data: " + b"z" * (limit - 8) + b"\n\n"  # the event's bytes: its lines, with their ends
    small = b"data: {}\n\n: ping\n\n" * 10_000  # far more than the limit in all, each event small
    assert len(at_limit) == limit
    for size in (999, 4096, limit):
        pieces = [at_limit[i:i + size] for i in range(0, len(at_limit), size)]
        assert decode(pieces, limit) == [(None, "z" * (limit - 8))]
    assert len(decode([small[i:i + 4096] for i in range(0, len(small), 4096)], limit)) == 10_000


# --- the fast path for plain `data: <x>\n\n` frames (issue 14), and `wire`: the bytes of those events

PLAIN = b"".join(b"data: " + payload + b"\n\n" for payload in
                 (b'{"id":"c1","choices":[{"delta":{"content":"data: x"}}]}', b'{"id":"c1"}', b"[DONE]"))


def reference(pieces: list[bytes]) -> list[tuple[str | None, str]]:
    """The line-by-line decoder alone (the fast path bypassed)."""
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events += decoder._feed_lines(piece)
    return events + decoder.finish()


def test_plain_frames_take_the_fast_path_and_keep_their_bytes() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(PLAIN)
    assert events == reference([PLAIN]) == [(None, '{"id":"c1","choices":[{"delta":{"content":"data: x"}}]}'),
                                            (None, '{"id":"c1"}'), (None, "[DONE]")]
    assert decoder.wire == PLAIN


def test_wire_is_only_the_complete_frames_and_the_rest_waits() -> None:
    decoder = SSEDecoder()
    cut = PLAIN.index(b"data: [DONE]") + 3
    first = decoder.feed(PLAIN[:cut])
    assert decoder.wire == PLAIN[:PLAIN.index(b"data: [DONE]")] and len(first) == 2
    assert decoder.feed(PLAIN[cut:]) == [(None, "[DONE]")]
    assert decoder.wire is None  # this piece began inside an event: the line decoder finished it


@pytest.mark.parametrize("stream", [
    b"data: a\r\n\r\n", b"data:a\n\n", b"data: a\ndata: b\n\n", b"event: e\ndata: a\n\n", b"data: a\n\n: ping\n\n",
    b"data: a\n\n\ndata: b\n\n", b"data: a\n\nid: 1\n\n", b"data: a\n\ndata: b\r\n\r\n", b"data: a\n\ndata:b\n\n",
])
def test_anything_but_plain_frames_gives_the_line_decoders_events_and_no_wire(stream: bytes) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(stream) + decoder.finish()
    assert events == reference([stream])
    assert decoder.wire is None or (decoder.wire == stream and all(e is None for e, _ in events))


def test_random_streams_split_anywhere_decode_as_the_line_decoder_does() -> None:
    rng = random.Random(14)
    parts = [b"data: {\"a\":1}\n\n", b"data: [DONE]\n\n", b"event: x\n", b"data: y\n", b"\n", b": c\n", b"\r\n",
             b"data:z\n\n", b"data: \xc3\xa9\n\n", b"id: 3\n"]
    for _ in range(500):
        stream = b"".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 4))))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        decoder = SSEDecoder()
        events: list[tuple[str | None, str]] = []
        for piece in pieces:
            got = decoder.feed(piece)
            if decoder.wire is not None:  # the wire is exactly the frames of these events
                assert decoder.wire == b"".join(b"data: " + d.encode() + b"\n\n" for _, d in got), (stream, cuts)
            events += got
        assert events + decoder.finish() == reference(pieces), (stream, cuts)


def test_the_fast_path_still_bounds_an_event() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")
