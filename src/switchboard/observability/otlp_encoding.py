"""The OTLP `ExportTraceServiceRequest` protobuf encoding of the gateway's spans, written directly.

Why not the exporter's own encoder (`encode_spans`): it builds a protobuf object per span, per
attribute and per value, ~80 µs per span on the benchmark machine, several times the budget of a
whole traced request (issue 17: ≤ 25 µs). This writes the same wire format with byte operations
(the keys and values that repeat, such as attribute names and the resource, are encoded once) at a
few µs per span. `tests/unit/test_otlp_encoding.py` checks it against `encode_spans` message for
message. Imports nothing: it reads the spans' plain fields (observability/spans.py).

Field numbers are opentelemetry-proto's (trace/v1/trace.proto, common/v1/common.proto).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["SAMPLED_CONTEXT", "EncodedSpan", "encode_attributes", "encode_request", "encode_scope", "encode_span"]


class _Flags:
    sampled = True


class _Context:
    trace_flags = _Flags()


# What the SDK's span processors read of a finished span before queueing it (only sampled spans are exported).
SAMPLED_CONTEXT = _Context()


class _Trace(Protocol):
    """What is read of a span's request trace (spans.RequestTrace; not imported: it imports this module)."""

    trace_id: int
    tracestate: str | None
    encoded_ids: bytes | None


class _Preset(Protocol):
    encoded: bytes


class Span(Protocol):
    """What is read of a span (spans.Span)."""

    span_id: int
    parent_id: int | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    preset: Any
    error: str | None
    remote_parent: bool

    def request(self) -> Any: ...


class EncodedSpan(bytes):
    """Finished spans in their OTLP encoding (`encode_span`s, concatenated: `spans` is a repeated
    field), as the batch processor queues them."""

    __slots__ = ()
    context = SAMPLED_CONTEXT

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


_SMALL = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the length, the bytes."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _any_value(value: Any) -> bytes:
    """An `AnyValue` message."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode attribute value of type {type(value).__name__}")


_KEYS: dict[str, bytes] = {}  # attribute names, encoded once (KeyValue.key): a few dozen


def _key_value(key: str, value: Any) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", key.encode())
        if len(_KEYS) < 1024:
            _KEYS[key] = encoded
    return encoded + _field(b"\x12", _any_value(value))


# Attributes whose values are new on every request (ids, timings, contents): never cached.
_UNIQUE = frozenset({"switchboard.request_id", "gen_ai.response.id", "switchboard.upstream_request_id",
                     "gen_ai.tool.call.id", "gen_ai.response.time_to_first_chunk", "gen_ai.input.messages",
                     "gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"})
_CACHE_MAX = 8192
# Most attributes repeat from request to request (operation, route, model, provider, status, key id,
# token counts): their whole encoded field is kept, by name then value (with the value's type, so
# that True and 1 never share an entry); emptied when it holds _CACHE_MAX values.
_encoded: dict[bytes, dict[str, dict[Any, tuple[type, bytes]]]] = {}
_cached_values = 0


def encode_attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated `KeyValue` fields with `tag`."""
    global _cached_values
    out: list[bytes] = []
    by_key = _encoded.get(tag)
    if by_key is None:
        by_key = _encoded[tag] = {}
    for key, value in attributes.items():
        kind = value.__class__
        if key in _UNIQUE:
            if kind is str:  # ids: a KeyValue of a string, written flat
                encoded_key = _KEYS.get(key) or _field(b"\x0a", key.encode())
                raw = value.encode()
                any_value = b"\x0a" + _length(len(raw)) + raw
                kv = encoded_key + b"\x12" + _length(len(any_value)) + any_value
                out.append(tag + _length(len(kv)) + kv)
            else:
                out.append(_field(tag, _key_value(key, value)))
            continue
        values = by_key.get(key)
        if values is None:
            values = by_key[key] = {}
        lookup = tuple(value) if kind is list else value
        try:
            hit = values.get(lookup)
        except TypeError:  # a list of unhashable values
            out.append(_field(tag, _key_value(key, value)))
            continue
        if hit is not None and hit[0] is kind:
            out.append(hit[1])
            continue
        field = _field(tag, _key_value(key, value))
        if _cached_values >= _CACHE_MAX:
            _encoded.clear()
            _cached_values = 0
            by_key = _encoded[tag] = {}
            values = by_key[key] = {}
        values[lookup] = (kind, field)
        _cached_values += 1
        out.append(field)
    return b"".join(out)


def encode_scope(name: str, version: str | None) -> bytes:
    """An `InstrumentationScope` message."""
    return _field(b"\x0a", name.encode()) + (_field(b"\x12", version.encode()) if version else b"")


_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)  # ... | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_STATUS_UNSET = b"\x7a\x00"


_HEADS_MAX = 4096
_heads: dict[tuple[str, int], bytes] = {}  # a span's name and kind fields, by name (names repeat: "chat gpt-4o")


def _length(n: int) -> bytes:
    return _SMALL[n] if n < 0x80 else _varint(n)


def encode_span(span: Span) -> bytes:
    """One span as the `spans` field of a `ScopeSpans` message (this runs for every span: it is
    written flat, with the parts that repeat across spans cached)."""
    trace: _Trace = span.request()
    ids = trace.encoded_ids
    if ids is None:
        state = trace.tracestate
        ids = trace.encoded_ids = b"\x0a\x10" + trace.trace_id.to_bytes(16, "big") + (
            _field(b"\x1a", state.encode()) if state else b"")
    head = _heads.get((span.name, span.kind))
    if head is None:
        head = _field(b"\x2a", span.name.encode()) + b"\x30" + _SMALL[span.kind]
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        _heads[(span.name, span.kind)] = head
    parent = b"" if span.parent_id is None else b"\x22\x08" + span.parent_id.to_bytes(8, "big")
    error = span.error
    status = _STATUS_UNSET if error is None else _field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18\x02")
    preset: _Preset | None = span.preset
    body = b"".join((ids, b"\x12\x08", span.span_id.to_bytes(8, "big"), parent, head,
                     b"\x39", _pack_fixed64(span.start_ns), b"\x41", _pack_fixed64(span.end_ns),
                     preset.encoded if preset is not None else b"", encode_attributes(b"\x4a", span.attributes),
                     status, _FLAGS_REMOTE if span.remote_parent else _FLAGS_LOCAL))
    return b"\x12" + _length(len(body)) + body


def encode_request(spans: Iterable[Span | bytes], resource: bytes, scope: bytes) -> bytes:
    """An `ExportTraceServiceRequest` of `spans`, all of one resource (an encoded `Resource`
    message) and one instrumentation scope (an encoded `InstrumentationScope` message). A span
    already encoded (an `EncodedSpan`, see spans.Tracer) is taken as it is."""
    encoded = [span if isinstance(span, bytes) else encode_span(span) for span in spans]
    scope_spans = _field(b"\x0a", scope) + b"".join(encoded)
    resource_spans = _field(b"\x0a", resource) + _field(b"\x12", scope_spans)
    return _field(b"\x0a", resource_spans)
