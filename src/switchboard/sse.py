"""Server-Sent Events: the only module that writes SSE frames, and the upstream SSE parser.

Frames written: `data: <json>` events, `event: <name>` + data events (Anthropic format),
the `[DONE]` terminator, `: ping` keep-alive comments and the mid-stream error frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ._sse_frames import RawFrames

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DONE", "PING", "EventTooLarge", "SSEDecoder", "data_frame", "error_frame",
           "event_frame"]

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024  # see ProviderConfig.max_event_bytes

try:  # plain data frames split, or read unparsed, in C (_sse_frames.c) where it is built; `feed` is the reference
    from ._sse_frames import plain_frames as split_plain_frames
    from ._sse_frames import raw_frames as read_raw_frames
except ImportError:  # pragma: no cover  (no C compiler at install time)
    split_plain_frames = read_raw_frames = None  # type: ignore[assignment]

_SHORT_LINE = 4096  # a line not ended after this many bytes is gathered in a list (SSEDecoder.feed)


def data_frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(event: str, obj: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def error_frame(error: dict[str, Any]) -> bytes:
    """The mid-stream failure frame: a data-only event (no `event:` line); the stream then closes."""
    return data_frame(error)


class EventTooLarge(ValueError):
    """An upstream event grew past the decoder's `max_event_bytes`."""


class SSEDecoder:
    """Incremental SSE parser: feed it bytes as they arrive (any split), get complete events.

    Linear in the bytes fed, however they are split: only a fed piece is scanned for line ends,
    never what came before it. A line spread over several pieces is extended by copying while it
    is short (the common case, and cheapest); past `_SHORT_LINE` its pieces are kept in a list and
    joined once, when its end arrives.

    An event (its bytes from the blank line before it to the one that ends it) larger than
    `max_event_bytes` raises `EventTooLarge`: when it ends, or at the end of the piece that took
    the event under way past the limit, so memory stays bounded by the limit and one piece.
    """

    __slots__ = ("_buffer", "_data", "_event", "_pending", "_pieces", "_size", "max_event_bytes", "wire")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = b""  # the start of a line whose end has not arrived yet
        self._pieces: list[bytes] = []  # the rest of that line, once it is long
        self._pending = 0  # bytes in _buffer and _pieces, while the line is long
        self._size = 0  # bytes of the event under way
        self._event: str | None = None
        self._data: list[str] = []
        # After `feed`: the bytes the returned events were, exactly, when every one was a single
        # `data: ` line ended by a blank line (`data: <json>\n\n`, as OpenAI-compatible servers send
        # them); else None. A relay to an OpenAI-format client can write these bytes as they came.
        self.wire: bytes | None = None

    def plain_frames(self, piece: bytes, raw: bool = False) -> tuple[list[bytes], bool] | RawFrames | None:
        """The JSON payloads of `piece` and whether a `[DONE]` frame closed it, split in C
        (`_sse_frames.c`), when the piece starts where `feed`'s fast path starts and is nothing but
        complete `data: {...}` frames: the events that path would return. None otherwise, or where the
        C is not built; then `feed` the piece. With `raw`, the same frames not parsed where the C takes
        every chunk as it is (`_sse_frames.raw_frames`: a RawFrames), else the same answer."""
        split = read_raw_frames if raw else split_plain_frames
        if self._buffer or self._data or self._event is not None or split is None:
            return None
        found = split(piece, self.max_event_bytes)
        if found is not None:
            self._size = 0  # (as the fast path does: lines before them without data or a name are dropped)
        return found

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self.wire = None
        if not self._buffer and not self._data and self._event is None and chunk.startswith(b"data: "):
            events = self._feed_data_frames(chunk)
            if events is not None:
                return events
        return self._feed_lines(chunk)

    def _feed_data_frames(self, chunk: bytes) -> list[tuple[str | None, str]] | None:
        """The fast path, for a piece that starts at an event: the events of its complete `data: <x>\n\n`
        frames found with a few scans in C instead of a Python step per line. None when the piece holds
        anything else (CR, other fields, multi-line data, an event past the size limit, none complete)."""
        end = chunk.rfind(b"\n\n")
        if end < 0 or end + 2 > self.max_event_bytes:
            return None
        region = chunk[:end]
        frames = region.count(b"\n\ndata: ") + 1  # JSON has no raw line ends: these are event bounds
        if region.count(b"\n") != 2 * (frames - 1) or b"\r" in region:
            return None
        texts = region[6:].decode("utf-8").split("\n\ndata: ")
        events: list[tuple[str | None, str]] = [(None, text) for text in texts]
        self._size = 0
        rest = chunk[end + 2:]
        if rest:
            more = self._feed_lines(rest)
            if more:  # an event ended inside `rest` too (CR line ends): not all were plain frames
                events += more
                return events
        self.wire = chunk[:end + 2] if rest else chunk
        return events

    def _feed_lines(self, chunk: bytes) -> list[tuple[str | None, str]]:
        buffer = self._buffer
        if not buffer:
            data = chunk
            search = 0
        elif len(buffer) < 4096:  # (_SHORT_LINE, as a constant)
            data = buffer + chunk  # a short line: one small copy beats a list
            search = len(buffer)  # (the bytes before hold no line end)
        else:  # a long line: its pieces are gathered, and joined once its end arrives
            if not self._pieces:
                self._pending = len(buffer)
            self._pieces.append(chunk)
            search = self._pending
            self._pending += len(chunk)
            if chunk.find(b"\n") < 0:
                self._size += len(chunk)
                if self._size > self.max_event_bytes:
                    raise self._too_large()
                return []
            data = b"".join((buffer, *self._pieces))
            self._pieces = []
        events: list[tuple[str | None, str]] = []
        start = 0
        last = search - self._size  # where the event under way began, as an offset in data (search is where chunk is)
        end = data.find(b"\n", search)
        while end >= 0:
            line = data[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    if start - last > self.max_event_bytes:
                        raise self._too_large()
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                last = start
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append((value[1:] if value.startswith(b" ") else value).decode("utf-8"))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8")
            # comments (":") and other fields (id, retry) are ignored
            end = data.find(b"\n", start)
        size = len(data) - last
        if size > self.max_event_bytes:
            raise self._too_large()
        self._size = size
        self._buffer = data[start:]  # (the same bytes, no copy, when no line ended)
        return events

    def finish(self) -> list[tuple[str | None, str]]:
        """The stream ended: an event not followed by a blank line still counts."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append((self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return events

    def _too_large(self) -> EventTooLarge:
        self._buffer, self._pieces, self._data = b"", [], []  # give the memory back at once
        return EventTooLarge(f"a stream event exceeds {self.max_event_bytes} bytes")
