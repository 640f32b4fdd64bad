"""Span export over OTLP/HTTP with the official OpenTelemetry SDK: the `.[otel]` extra.

Imported only when `observability.otlp` is configured (gateway.py): without it nothing of
`opentelemetry` is loaded. Finished spans (observability/spans.py) go to the SDK's
`BatchSpanProcessor` (a bounded queue, a worker thread exporting in batches: off the request path)
and from it to the SDK's `OTLPSpanExporter` (its HTTP transport, headers, retries with backoff,
timeouts). One step differs from the SDK's own pipeline: the batch is encoded by
`otlp_encoding.encode_request` (same wire format, a fraction of the CPU; see that module) and
handed to the exporter's HTTP client. Should a future exporter lack that client, the exporter's
own `export` runs on the spans turned into the SDK's `ReadableSpan`s: slower, still correct.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import ConfigError
from .otlp_encoding import encode_attributes, encode_request, encode_scope
from .spans import Span
from .tracing_config import OtlpConfig

try:
    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
except ImportError as exc:  # pragma: no cover - exercised by tests/integration/test_tracing_off.py
    raise ConfigError("`observability.otlp` is configured but the OpenTelemetry SDK is not installed "
                      f"({exc.name or exc}): install the `otel` extra, pip install 'switchboard[otel]'") from None

__all__ = ["SCOPE_NAME", "OtlpExport", "readable_span"]

log = logging.getLogger("switchboard.tracing")

SCOPE_NAME = "switchboard"
SCOPE_VERSION = "0.1.0"
# The queue's items are batches of encoded spans, spans.SPANS_PER_ITEM (64; fewer when 0.1 s passed): at most
# MAX_QUEUE_ITEMS wait (16k spans; past that the newest are dropped, logged once a minute), BATCH_ITEMS go
# per export request (up to 2048 spans, ~1 MB: each HTTP request costs the export thread as much as
# encoding a few hundred spans would).
MAX_QUEUE_ITEMS = 256
BATCH_ITEMS = 32
EXPORT_EVERY_MS = 1000

_KINDS = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def readable_span(span: Span, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The SDK's form of one of our spans."""
    trace = span.request()
    state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
    context = SpanContext(trace.trace_id, span.span_id, False, _SAMPLED, state)
    parent = (SpanContext(trace.trace_id, span.parent_id, span.remote_parent, _SAMPLED, state)
              if span.parent_id is not None else None)
    status = Status(StatusCode.ERROR, span.error) if span.error is not None else Status(StatusCode.UNSET)
    return ReadableSpan(span.name, context, parent, resource, span.all_attributes(), kind=_KINDS[span.kind],
                        status=status, start_time=span.start_ns, end_time=span.end_ns, instrumentation_scope=scope)


class _Exporter(OTLPSpanExporter):
    """The SDK's exporter, sending our encoding of the batch (see the module docstring)."""

    def __init__(self, config: OtlpConfig, resource: Resource, scope: InstrumentationScope) -> None:
        # requests' environment lookups (netrc files, proxy variables) cost a stat() per file on every export:
        # the collector is reached directly (the endpoint's URL is the whole configuration).
        session = requests.Session()
        session.trust_env = False
        super().__init__(endpoint=config.endpoint, headers=config.headers or None, timeout=10, session=session)
        self.resource = resource
        self.scope = scope
        self._resource_bytes = encode_attributes(b"\x0a", dict(resource.attributes))
        self._scope_bytes = encode_scope(scope.name, scope.version)

    @property
    def sends_bytes(self) -> bool:
        """Whether the SDK's HTTP client takes our encoding (else spans go through the SDK's own `export`)."""
        client = getattr(self, "_client", None)
        return client is not None and callable(getattr(client, "export", None))

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if not self.sends_bytes:
            return super().export([readable_span(s, self.resource, self.scope) for s in spans])
        try:
            result = self._client.export(encode_request(spans, self._resource_bytes, self._scope_bytes))
        except Exception:
            log.exception("exporting %d spans failed", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if getattr(result, "success", False) else SpanExportResult.FAILURE


class _OncePerMinute(logging.Filter):
    """The batch processor warns for every span it drops; under overload that is a storm of lines."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -60.0) < 60.0:
            return False
        self._last[key] = now
        return True


class OtlpExport:
    """Where finished spans go: `export(span)` (from the event loop) queues it for the batch processor."""

    def __init__(self, config: OtlpConfig) -> None:
        self.resource = Resource.create({"service.name": config.service_name})
        self.scope = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)
        self.exporter = _Exporter(config, self.resource, self.scope)
        self.processor = BatchSpanProcessor(self.exporter, max_queue_size=MAX_QUEUE_ITEMS,
                                            schedule_delay_millis=EXPORT_EVERY_MS, max_export_batch_size=BATCH_ITEMS)
        logging.getLogger("opentelemetry.sdk._shared_internal").addFilter(_OncePerMinute())

    @property
    def sink(self) -> Callable[[Span], None]:
        """What the tracer calls with each finished span: the batch processor's `on_end`, which queues
        any span whose `context.trace_flags.sampled` is true (ours say so: only sampled ones are exported)."""
        on_end: Callable[[Span], None] = self.processor.on_end  # type: ignore[assignment]
        return on_end

    async def aclose(self) -> None:
        """Shutdown: what is queued is exported (bounded by the exporter's timeout), off the event loop."""
        await asyncio.to_thread(self.processor.shutdown)
