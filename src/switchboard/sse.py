"""Server-Sent Events: the only module that writes SSE frames, and the upstream SSE parser.

Frames written: `data: <json>` events, `event: <name>` + data events (Anthropic format),
the `[DONE]` terminator, `: ping` keep-alive comments and the mid-stream error frame.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

__all__ = ["DONE", "PING", "data_frame", "error_frame", "event_frame", "iter_sse"]

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def data_frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def event_frame(event: str, obj: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def error_frame(error: dict[str, Any]) -> bytes:
    """The mid-stream failure frame: a data-only event (no `event:` line); the stream then closes."""
    return data_frame(error)


async def iter_sse(lines: AsyncIterable[bytes]) -> AsyncIterator[tuple[str | None, str]]:
    """Parse an SSE byte stream (already split into lines) into (event, data) pairs."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            data.append(value.decode("utf-8"))
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8")
        # comments (":") and other fields (id, retry) are ignored
    if data:  # a final event not followed by a blank line
        yield event, "\n".join(data)
