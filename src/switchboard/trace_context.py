"""W3C Trace Context (`traceparent` / `tracestate`): parsing a client's, writing ours, and the
context variable through which a traced upstream attempt hands its header to the HTTP client.

Imports nothing but the standard library (and the optional C formatter of `traceparent_line`), and
nothing here runs unless tracing is configured: the upstream client reads `UPSTREAM_TRACE_HEADERS`
only when it was built with `propagate=True`.

Parsing follows the W3C Trace Context recommendation, level 1: `version-traceid-parentid-flags`,
lowercase hex; version `ff`, an all-zero trace id or parent id are invalid; a future version may
carry more fields after the four, which are ignored. A `tracestate` is kept only with a valid
`traceparent`, at most 512 characters and 32 list members (the spec's limits), else dropped.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["UPSTREAM_TRACE_HEADERS", "ParentContext", "format_traceparent", "parse_trace_context", "trace_headers",
           "trace_meta", "traceparent_line", "traceparent_line_python"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_MAX_TRACESTATE_CHARS = 512
_MAX_TRACESTATE_MEMBERS = 32

# The header lines (`traceparent: ...\r\n`, `tracestate: ...\r\n` when there is one) the upstream
# attempt running in this context sends; b"" outside a traced attempt.
UPSTREAM_TRACE_HEADERS: ContextVar[bytes] = ContextVar("switchboard_upstream_trace_headers", default=b"")


@dataclass(slots=True, frozen=True)
class ParentContext:
    """A span context received from a client: the trace it belongs to, its span, whether it was sampled."""

    trace_id: int
    span_id: int
    sampled: bool
    tracestate: str | None = None


def parse_trace_context(traceparent: str | None, tracestate: str | None) -> ParentContext | None:
    """The client's span context, or None when its `traceparent` is missing or invalid."""
    if not traceparent or len(traceparent) > 512:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = tracestate.strip() if tracestate else None
    if state and (len(state) > _MAX_TRACESTATE_CHARS or state.count(",") >= _MAX_TRACESTATE_MEMBERS
                  or not state.isascii() or not state.isprintable()):
        state = None
    return ParentContext(trace_id, span_id, bool(int(flags_hex, 16) & 1), state or None)


def trace_meta(headers: bytes) -> dict[str, str]:
    """`trace_headers` lines as a mapping (an MCP request's `params._meta` carries them so)."""
    out: dict[str, str] = {}
    for line in headers.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep:
            out[name] = value
    return out


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def traceparent_line_python(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """The `traceparent` request header line continuing trace `trace_id` at span `span_id` (the
    reference of `traceparent_line`, which is C where it is built: observability/_otlp_span.c)."""
    if trace_id.__class__ is not int or span_id.__class__ is not int \
            or not (0 <= trace_id < 1 << 128 and 0 <= span_id < 1 << 64):
        raise ValueError("traceparent: ids must be ints of 128 and 64 bits")
    return b"traceparent: 00-%032x-%016x-%s\r\n" % (trace_id, span_id, b"01" if sampled else b"00")


try:  # formatting a 128-bit int in hex is most of what a traced attempt's header costs in Python
    from .observability._otlp_span import traceparent as traceparent_line
except ImportError:  # not built (no compiler where it was installed)
    traceparent_line = traceparent_line_python


def trace_headers(trace_id: int, span_id: int, sampled: bool, tracestate: str | None) -> bytes:
    """The request header lines that continue the trace at `span_id`."""
    line = traceparent_line(trace_id, span_id, sampled)
    return line + b"tracestate: %s\r\n" % tracestate.encode() if tracestate else line
