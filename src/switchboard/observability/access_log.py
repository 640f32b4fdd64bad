"""The structured access log: one JSON line per API request on the `switchboard.access` logger.

Written by a gateway observer from the `RequestRecord`. The client's key appears only as its id
(the configured key name), never its value. Unless the deployment configured handlers of its own for
`switchboard.access` (then every line goes through them), the lines skip the `logging` machinery:
they are buffered and written to stderr together, at most 20 ms after they were made (sooner when
64 wait, and at shutdown), one whole line per request. The logger's level still applies.

Strings a client (or an upstream) chooses are cut to `MAX_FIELD_CHARS`, marked with how long they
were: the model name and what it routes to, the request id a client may send, the error type (an
upstream's). The other fields are ours (numbers, configured names, the endpoint of a known route).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
from typing import Any

import orjson

from ..gateway import Gateway
from ..hub import milliseconds
from ..request_record import RequestRecord

__all__ = ["ACCESS_LOGGER", "MAX_FIELD_CHARS", "AccessLog", "access_entry", "bounded"]

ACCESS_LOGGER = "switchboard.access"
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)
# Lines are written FLUSH_AFTER_S after the first one waiting, or as soon as FLUSH_LINES wait: under
# load that is a few large writes a second instead of one small write per event-loop pass.
FLUSH_AFTER_S = 0.02
FLUSH_LINES = 64
MAX_FIELD_CHARS = 256


def bounded(value: str | None) -> str | None:
    """`value`, or its first MAX_FIELD_CHARS characters and a mark saying how long it was."""
    if value is None or len(value) <= MAX_FIELD_CHARS:
        return value
    return f"{value[:MAX_FIELD_CHARS]}...(truncated, {len(value)} chars)"


def access_entry(record: RequestRecord) -> dict[str, Any]:
    usage, latency, ttft = record.usage, record.latency_s, record.first_token_s
    entry: dict[str, Any] = {
        "ts": round(record.started_wall * 1000) / 1000,
        "request_id": bounded(record.request_id),
        "endpoint": record.endpoint,
        "key_id": record.key_id,
        "model": bounded(record.model),
        "provider": record.provider,
        "upstream_model": bounded(record.upstream_model),
        "status": record.status,
        "error_type": bounded(record.error_type),
        "stream": record.stream,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "latency_ms": milliseconds(latency),
        "ttft_ms": milliseconds(ttft),
        "attempts": record.attempts,
        "fallback": record.fallback,
    }
    if record.trace is not None:  # tracing configured
        entry["trace_id"] = record.trace.trace_id_hex
    if record.facade is not None:
        entry["facade"] = record.facade
    if record.path is not None:  # a URL no route took
        entry["path"] = bounded(record.path)
    if record.agent is not None:  # an agent's request: every model call it made
        entry["agent"] = record.agent
        entry["turns"] = [{"provider": t.provider, "model": t.model, "attempts": t.attempts, "fallback": t.fallback}
                          for t in record.turns or ()]
    return entry


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        # Direct writes only while the lines would reach our own bare handler anyway.
        self._direct = not self.logger.handlers
        if self._direct:
            # A bare JSON line, not wrapped in the human log format of the root handler.
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.propagate = False
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO)
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    def install(self, gateway: Gateway) -> None:
        gateway.observers.append(self.observe)
        gateway.on_close(self.aclose)

    def observe(self, record: RequestRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        line = orjson.dumps(access_entry(record))
        if not self._direct:
            self.logger.info("%s", line.decode())
            return
        self._pending.append(line)
        if len(self._pending) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self._flush_due)
            except RuntimeError:  # no event loop (called from plain code): write at once
                self.flush()

    def _flush_due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        stream = sys.stderr
        try:
            stream.flush()  # whatever `logging` wrote before stays before
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not a real file (captured output)
                stream.write("".join(line.decode() + "\n" for line in lines))
                stream.flush()
                return
            _write_lines(fd, lines)
        except (OSError, ValueError):
            pass  # stderr closed or gone: like logging's handlers, never fail the request path

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()


def _write_lines(fd: int, lines: list[bytes]) -> None:
    """Whole lines, at most PIPE_BUF bytes per write: the kernel keeps such writes to a pipe atomic, so
    the lines of several worker processes sharing stderr never interleave mid-line."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > _ATOMIC_WRITE:
            _write_all(fd, b"".join(chunk))
            chunk.clear()
            size = 0
        chunk += (line, b"\n")
        size += len(line) + 1
    if chunk:
        _write_all(fd, b"".join(chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
