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
from .spans import Tracer

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
    """Gateway observer: a finished request's server span ends (exported when sampled). Its name and
    attributes come from the record when the tracer completes the batch it ends in
    (RequestTrace.complete): that code then runs for many requests in a row."""
    trace = record.trace
    if trace is None or not trace.sampled_flag:
        return
    trace.record = record
    start = trace.start_ns = int(record.started_wall * 1e9)
    trace.end(start + int((record.latency_s or 0.0) * 1e9))
