"""Server-Sent Events: the only module that writes SSE frames, and the upstream SSE parser.

Frames written: `data: <json>` events, `event: <name>` + data events (Anthropic format),
the `[DONE]` terminator, `: ping` keep-alive comments and the mid-stream error frame.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DONE", "PING", "EventTooLarge", "SSEDecoder", "data_frame", "error_frame",
           "event_frame"]

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024  # see ProviderConfig.max_event_bytes


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
    never what came before it; a line spread over several pieces is kept as a list of them and
    joined once, when its end arrives. An event whose data lines (with any line still unfinished)
    pass `max_event_bytes` raises `EventTooLarge`: memory stays bounded by the limit.
    """

    __slots__ = ("_data", "_event", "_line", "_line_bytes", "_size", "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._line: list[bytes] = []  # the pieces of a line whose end has not arrived yet
        self._line_bytes = 0
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0  # bytes of the current event's data lines

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        events: list[tuple[str | None, str]] = []
        search = 0  # where the scan for a line end starts: bytes before it hold none
        if self._line:
            end = chunk.find(b"\n")
            if end < 0:  # the line goes on
                self._line.append(chunk)
                self._line_bytes += len(chunk)
                if self._size + self._line_bytes > self.max_event_bytes:
                    raise self._too_large()
                return events
            pieces = self._line
            search = self._line_bytes
            pieces.append(chunk)
            data = b"".join(pieces)  # the line's pieces and this chunk, copied once
            self._line = []
        else:
            data = chunk
        start = 0
        size = self._size
        while (end := data.find(b"\n", search)) >= 0:
            line = data[start:end]
            start = search = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    if size > self.max_event_bytes:
                        raise self._too_large()
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                size = 0
            elif line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                size += len(value)
                self._data.append(value.decode("utf-8"))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8")
            # comments (":") and other fields (id, retry) are ignored
        self._size = size
        if start < len(data):
            rest = data[start:]
            self._line = [rest]
            self._line_bytes = len(rest)
            if size + len(rest) > self.max_event_bytes:
                raise self._too_large()
        elif size > self.max_event_bytes:
            raise self._too_large()
        return events

    def finish(self) -> list[tuple[str | None, str]]:
        """The stream ended: an event not followed by a blank line still counts."""
        events = self.feed(b"\n") if self._line else []
        if self._data:
            events.append((self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return events

    def _too_large(self) -> EventTooLarge:
        self._line, self._data = [], []  # give the memory back at once
        return EventTooLarge(f"a stream event exceeds {self.max_event_bytes} bytes")
