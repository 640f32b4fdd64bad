"""Turning tracing on for a gateway: the `Tracer` and its OTLP export when `observability.otlp` is
configured, nothing (None) otherwise.

The one place that imports observability/otlp.py (and with it OpenTelemetry), and only when
configured; a missing `.[otel]` extra is a startup error naming it. What the gateway wires with the
tracer (gateway.py): the server span of each API request (app.py, ended by the observer here), the
router's attempt and turn spans, the agents' tool spans, and `traceparent` propagation by the
upstream HTTP clients and the MCP clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config import Config
from ..request_record import RequestRecord
from .spans import RequestTrace, Tracer, bounded, operation_of, usage_attributes

__all__ = ["build_tracer", "finish_trace"]


def _secrets(config: Config) -> tuple[str, ...]:
    """Every credential the gateway knows: never on a span, even with `trace_contents`."""
    values = [k.value for p in config.providers.values() for k in p.keys]
    if config.auth.master_key:
        values.append(config.auth.master_key)
    values += [k.value for k in config.auth.keys]
    return tuple(values)


def build_tracer(config: Config) -> tuple[Tracer, Callable[[], Awaitable[None]]] | None:
    """The tracer and its closer (exports what is queued), or None when tracing is not configured."""
    otlp = config.observability.otlp
    if otlp is None:
        return None
    from .otlp import OtlpExport  # OpenTelemetry: imported here only

    export = OtlpExport(otlp)
    tracer = Tracer(export.sink, otlp.sample_ratio, config.observability.trace_contents, config.providers,
                    _secrets(config))
    return tracer, export.aclose


def finish_trace(record: RequestRecord) -> None:
    """Gateway observer: a finished request's server span gets its name and attributes from the
    record, and ends (exported when sampled)."""
    trace = record.trace
    if not isinstance(trace, RequestTrace):
        return
    attributes = trace.attributes
    attributes["switchboard.request_id"] = bounded(record.request_id)
    attributes["http.response.status_code"] = record.status
    if record.key_id is not None:
        attributes["switchboard.key_id"] = record.key_id
    if record.facade is not None:
        attributes["switchboard.facade"] = record.facade
    operation = operation_of(record.endpoint)
    if record.agent is not None:
        operation = "invoke_agent"
        attributes["gen_ai.agent.name"] = record.agent
        trace.name = f"invoke_agent {record.agent}"
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
        if record.model is not None:
            model = bounded(record.model)
            attributes["gen_ai.request.model"] = model
            if record.agent is None:
                trace.name = f"{operation} {model}"
        if record.upstream_model is not None:
            attributes["gen_ai.response.model"] = bounded(record.upstream_model)
        attributes["gen_ai.request.stream"] = record.stream
        if record.usage is not None:
            usage_attributes(attributes, record.usage)
        if record.stream and record.first_token_s is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = record.first_token_s
        if record.attempts:
            attributes["switchboard.attempts"] = record.attempts
            attributes["switchboard.fallback"] = record.fallback
    if record.error_type is not None:
        attributes["error.type"] = bounded(record.error_type)
        if record.status >= 500:  # HTTP server spans: a 4xx is the client's error, not ours
            trace.error = f"{record.status} {record.error_type}"
    trace.start_ns = int(record.started_wall * 1e9)
    trace.end(trace.start_ns + int((record.latency_s or 0.0) * 1e9))
