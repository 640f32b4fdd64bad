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
from typing import Any

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
                    _secrets(config), encode=export.exporter.sends_bytes)

    async def close() -> None:
        tracer.flush()  # spans that ended lately
        await export.aclose()

    return tracer, close


def finish_trace(record: RequestRecord) -> None:
    """Gateway observer: a finished request's server span gets its name and attributes from the
    record, and ends (exported when sampled). What requests have in common (route, status, key,
    model...) is a shared preset, which names the span too; the request id, timings and an agent's
    usage are the span's own."""
    trace = record.trace
    if trace is None or not trace.sampled_flag:
        return
    own = trace.attributes
    own["switchboard.request_id"] = record.request_id  # ours: short
    agent = record.agent
    operation = "invoke_agent" if agent is not None else operation_of(record.endpoint)
    model = bounded(record.model) if record.model is not None else None
    if operation is not None:
        if agent is not None and record.usage is not None:  # every turn's (each attempt span has its own)
            usage_attributes(own, record.usage)
        if record.stream and record.first_token_s is not None:
            own["gen_ai.response.time_to_first_chunk"] = record.first_token_s
    status, error_type = record.status, record.error_type
    if error_type is not None and status >= 500:  # HTTP server spans: a 4xx is the client's
        trace.error = f"{status} {error_type}"
    tracer = trace.tracer
    key = ("request", trace.method, trace.route, status, record.key_id, record.facade, agent, operation, model,
           record.upstream_model, record.stream, record.attempts, record.fallback, error_type)
    preset = tracer.presets.get(key)
    if preset is None:
        tracer.new_preset(trace, key, _stable_attributes(trace, record, operation, model),
                          _span_name(trace, agent, operation, model))
    else:
        trace.preset = preset
        trace.name = preset.name
    start = trace.start_ns = int(record.started_wall * 1e9)
    trace.end(start + int((record.latency_s or 0.0) * 1e9))


def _span_name(trace: RequestTrace, agent: str | None, operation: str | None, model: str | None) -> str:
    if operation is not None:
        if agent is not None:
            return f"invoke_agent {agent}"
        if model is not None:
            return f"{operation} {model}"
    return f"{trace.method} {trace.route}"


def _stable_attributes(trace: RequestTrace, record: RequestRecord, operation: str | None,
                       model: str | None) -> dict[str, Any]:
    """The server span's attributes that many requests share (made once per distinct set)."""
    stable: dict[str, Any] = {"http.request.method": trace.method, "http.route": trace.route,
                              "http.response.status_code": record.status}
    if record.key_id is not None:
        stable["switchboard.key_id"] = record.key_id
    if record.facade is not None:
        stable["switchboard.facade"] = record.facade
    if record.agent is not None:
        stable["gen_ai.agent.name"] = record.agent
    if operation is not None:
        stable["gen_ai.operation.name"] = operation
        if model is not None:
            stable["gen_ai.request.model"] = model
        if record.upstream_model is not None:
            stable["gen_ai.response.model"] = bounded(record.upstream_model)
        stable["gen_ai.request.stream"] = record.stream
        if record.attempts:
            stable["switchboard.attempts"] = record.attempts
            stable["switchboard.fallback"] = record.fallback
    if record.error_type is not None:
        stable["error.type"] = bounded(record.error_type)
    return stable
