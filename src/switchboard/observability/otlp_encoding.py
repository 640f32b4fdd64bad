"""The OTLP `ExportTraceServiceRequest` protobuf encoding of the gateway's spans, written directly.

Why not the exporter's own encoder (`encode_spans`): it builds a protobuf object per span, per
attribute and per value, ~80 µs per span on the benchmark machine, several times the budget of a
whole traced request (issue 17: ≤ 25 µs). This writes the same wire format with byte operations
(the keys and values that repeat, such as attribute names and the resource, are encoded once) at a
few µs per span; `_otlp_span.c`, built with the package where a C compiler is at hand, writes the
same bytes in a fraction of that (`encode_span`; this module's Python is its reference and its
fallback). `tests/unit/test_otlp_encoding.py` checks both against `encode_spans` message for
message. Imports nothing else: it reads the spans' plain fields (observability/spans.py).

Field numbers are opentelemetry-proto's (trace/v1/trace.proto, common/v1/common.proto).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["NATIVE", "SAMPLED_CONTEXT", "EncodedSpan", "encode_attributes", "encode_request", "encode_scope",
           "encode_span", "encode_span_python"]


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
    trace: Any  # the request's own span (spans.RequestTrace), None for that span itself
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
_pack_fixed32 = struct.Struct("<I").pack
_pack_times = struct.Struct("<BQBQ").pack  # a span's start and end fields (fixed64), with their tags


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
# token counts): their whole encoded field is kept, by tag and then by the (name, value) pair itself
# (a dict's item: no tuple is built on a hit), with the value's type (so that True and 1 never share an
# entry); only for strings, ints, bools, bytes and sequences of strings, whose equal values encode
# alike. A tag's entries are dropped when it holds _CACHE_MAX of them.
_encoded: dict[bytes, dict[tuple[str, Any], tuple[type, bytes]]] = {}


def encode_attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated `KeyValue` fields with `tag`."""
    cache = _encoded.get(tag)
    if cache is None:
        cache = _encoded[tag] = {}
    out: list[bytes] = []
    for item in attributes.items():
        key, value = item
        if key in _UNIQUE:
            if value.__class__ is str:  # an id, mostly: written flat
                encoded_key = _KEYS.get(key)
                if encoded_key is None:
                    encoded_key = _KEYS[key] = _field(b"\x0a", key.encode())
                raw = value.encode()
                n, m = len(raw), len(encoded_key)
                if n + m < 0x7C:  # every length fits one byte (the field is < 128)
                    out.append(b"".join((tag, _SMALL[m + n + 4], encoded_key, b"\x12", _SMALL[n + 2], b"\x0a",
                                         _SMALL[n], raw)))
                    continue
            elif value.__class__ is float:  # a timing
                encoded_key = _KEYS.get(key)
                if encoded_key is not None and len(encoded_key) < 0x74:
                    out.append(b"".join((tag, _SMALL[len(encoded_key) + 11], encoded_key, b"\x12\x09\x21",
                                         _pack_double(value))))
                    continue
            out.append(_field(tag, _key_value(key, value)))  # long, or of another type: the general way
            continue
        cls = value.__class__
        if cls is list or cls is tuple:  # finish reasons, mostly: looked up as a tuple, when of strings only
            if not all(v.__class__ is str for v in value):
                out.append(_field(tag, _key_value(key, value)))
                continue
            item = (key, tuple(value))
        elif not (cls is str or cls is int or cls is bool or cls is bytes):
            # Not cached: where equal values can encode differently (0.0 and -0.0; 1 and 1.0 in a list),
            # or a dict (which a tuple of it would reduce to its keys)
            out.append(_field(tag, _key_value(key, value)))
            continue
        hit = cache.get(item)
        if hit is not None and hit[0] is cls:
            out.append(hit[1])
            continue
        field = _field(tag, _key_value(key, value))
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[item] = (cls, field)
        out.append(field)
    return b"".join(out)


def encode_scope(name: str, version: str | None) -> bytes:
    """An `InstrumentationScope` message."""
    return _field(b"\x0a", name.encode()) + (_field(b"\x12", version.encode()) if version else b"")


_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)  # ... | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_STATUS_UNSET = b"\x7a\x00"


_HEADS_MAX = 4096
_heads: dict[str, tuple[int, bytes]] = {}  # a span's name and kind fields, by name (names repeat: "chat gpt-4o")


def _length(n: int) -> bytes:
    return _SMALL[n] if n < 0x80 else _varint(n)


def encode_span_python(span: Span) -> bytes:
    """One span as the `spans` field of a `ScopeSpans` message (this runs for every span: it is
    written flat, with the parts that repeat across spans cached). The reference encoder, and what
    `encode_span` is where the C one is not built."""
    trace: _Trace = span.trace or span  # type: ignore[assignment]  # a request's own span has none
    ids = trace.encoded_ids
    if ids is None:
        state = trace.tracestate
        ids = trace.encoded_ids = b"\x0a\x10" + trace.trace_id.to_bytes(16, "big") + (
            _field(b"\x1a", state.encode()) if state else b"")
    name, kind = span.name, span.kind
    head = _heads.get(name)
    if head is None or head[0] != kind:
        head = (kind, _field(b"\x2a", name.encode()) + b"\x30" + _SMALL[kind])
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        _heads[name] = head
    parent_id = span.parent_id
    error = span.error
    preset: _Preset | None = span.preset
    attributes = span.attributes
    body = b"".join((ids, b"\x12\x08", span.span_id.to_bytes(8, "big"),
                     b"" if parent_id is None else b"\x22\x08" + parent_id.to_bytes(8, "big"), head[1],
                     _pack_times(0x39, span.start_ns, 0x41, span.end_ns),
                     b"" if preset is None else preset.encoded,
                     encode_attributes(b"\x4a", attributes) if attributes else b"",
                     _STATUS_UNSET if error is None else _field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18\x02"),
                     _FLAGS_REMOTE if span.remote_parent else _FLAGS_LOCAL))
    n = len(body)
    return b"\x12" + (_SMALL[n] if n < 0x80 else _varint(n)) + body


try:  # the same bytes from C (_otlp_span.c), a few times faster; it hands what it cannot write to the Python one
    from . import _otlp_span
except ImportError:  # not built (no compiler where it was installed)
    encode_span: Callable[[Span], bytes] = encode_span_python
    NATIVE = False
else:
    _otlp_span.set_fallback(encode_span_python)
    encode_span = _otlp_span.encode_span
    NATIVE = True


def encode_request(spans: Iterable[Span | bytes], resource: bytes, scope: bytes) -> bytes:
    """An `ExportTraceServiceRequest` of `spans`, all of one resource (an encoded `Resource`
    message) and one instrumentation scope (an encoded `InstrumentationScope` message). A span
    already encoded (an `EncodedSpan`, see spans.Tracer) is taken as it is."""
    # Written with one join: a batch is up to ~1 MB, and each concatenation of it would be another
    # allocation of that size (fresh pages from the kernel: page faults in the export thread).
    encoded = [span if isinstance(span, bytes) else encode_span(span) for span in spans]
    scope_field = _field(b"\x0a", scope)
    scope_spans_n = len(scope_field) + sum(map(len, encoded))
    resource_field = _field(b"\x0a", resource)
    scope_spans_head = b"\x12" + _length(scope_spans_n)
    resource_spans_n = len(resource_field) + len(scope_spans_head) + scope_spans_n
    return b"".join((b"\x0a", _length(resource_spans_n), resource_field, scope_spans_head, scope_field, *encoded))
