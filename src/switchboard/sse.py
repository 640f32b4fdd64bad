"""Server-Sent Events: the only module that writes SSE frames, and the upstream SSE parser.

Frames written: `data: <json>` events, `event: <name>` + data events (Anthropic format),
the `[DONE]` terminator, `: ping` keep-alive comments and the mid-stream error frame.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["DONE", "PING", "SSEDecoder", "data_frame", "error_frame", "event_frame"]

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def data_frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(event: str, obj: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def error_frame(error: dict[str, Any]) -> bytes:
    """The mid-stream failure frame: a data-only event (no `event:` line); the stream then closes."""
    return data_frame(error)


class SSEDecoder:
    """Incremental SSE parser: feed it bytes as they arrive (any split), get complete events."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        data = self._buffer + chunk if self._buffer else chunk
        events: list[tuple[str | None, str]] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            line = data[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append((value[1:] if value.startswith(b" ") else value).decode("utf-8"))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8")
            # comments (":") and other fields (id, retry) are ignored
        self._buffer = data[start:]
        return events

    def finish(self) -> list[tuple[str | None, str]]:
        """The stream ended: an event not followed by a blank line still counts."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append((self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return events

