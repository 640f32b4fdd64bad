"""Prometheus metrics for one gateway, served at `GET /metrics`.

Owns a `CollectorRegistry` per gateway (never the process-global default registry, so several
apps in one process do not mix). Fed three ways: a request observer (one `RequestRecord` per
finished request, into the plain-number series of `request_metrics`), router events (retries,
fallbacks, upstream errors), and a collector read at scrape time (in-flight and queue depth of every
limiter, circuit state of every deployment).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..asgi import Request, Response
from ..errors import GatewayError
from ..gateway import Gateway, RequestRecord
from ..routing.health import CLOSED, HALF_OPEN, OPEN, Breaker
from ..routing.router import RouterEvent
from .request_metrics import CounterCell, CounterFamily, FamiliesCollector, HistogramCell, HistogramFamily

__all__ = ["Metrics", "error_class"]

CIRCUIT_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
# LLM calls last from tens of milliseconds (cached, small) to minutes (long generations).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, float("inf"))
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, float("inf"))


def error_class(err: GatewayError) -> str:
    """A small fixed set of upstream error types, so upstream-chosen strings never become labels."""
    code = err.code or ""
    if code == "deadline_exceeded":
        return "deadline"
    if code == "queue_full":
        return "queue_full"
    if err.status in (408, 504) or code == "upstream_timeout":
        return "timeout"
    if code == "upstream_connection_error":
        return "connection"
    if code in ("upstream_invalid_response", "upstream_stream_truncated"):
        return "invalid_response"
    if err.status == 429:
        return "rate_limit"
    if err.status >= 500:
        return "server_error"
    return "client_error"


class _LiveState:
    """Read at scrape time: limiter occupancy, circuit states, event-loop tasks."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterable[Metric]:
        router = self.gateway.router
        in_flight = GaugeMetricFamily("switchboard_in_flight", "Requests holding a concurrency slot.",
                                      labels=["scope", "name"])
        queued = GaugeMetricFamily("switchboard_queue_depth", "Requests waiting for a concurrency slot.",
                                   labels=["scope", "name"])
        rejected = CounterMetricFamily("switchboard_queue_rejections", "Requests refused with 503 queue_full.",
                                       labels=["scope", "name"])
        for limiter in router.limits:
            in_flight.add_metric([limiter.scope, limiter.name], limiter.in_flight)
            queued.add_metric([limiter.scope, limiter.name], limiter.waiting)
            rejected.add_metric([limiter.scope, limiter.name], limiter.rejected)
        circuit = GaugeMetricFamily("switchboard_deployment_circuit_state",
                                    "Circuit state per deployment: 0 closed, 1 open (cooling down), 2 half-open.",
                                    labels=["provider", "deployment"])
        for name, provider in self.gateway.providers.items():
            ids = [k.id for k in provider.config.keys] or [name]
            for deployment in ids:
                circuit.add_metric([name, deployment], CIRCUIT_VALUES[router.health.state(deployment)])
        yield from (in_flight, queued, rejected, circuit)
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the event loop (tests)
            return
        yield GaugeMetricFamily("switchboard_event_loop_tasks", "Asyncio tasks alive (a leak shows as growth).",
                                value=tasks)


class _Series:
    """The cells that requests of one (endpoint, model, provider, status, stream) update; bound on first use."""

    __slots__ = ("latency", "requests", "tokens", "ttft")

    def __init__(self, requests: CounterCell) -> None:
        self.requests = requests
        self.latency: HistogramCell | None = None
        self.ttft: HistogramCell | None = None
        self.tokens: tuple[CounterCell, CounterCell] | None = None  # in, out


class Metrics:
    """The gateway's metrics; `install` wires observers and listeners, `handle` serves the scrape."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The per-request series: plain numbers updated by `observe` (see request_metrics), scraped first.
        self.requests = CounterFamily("switchboard_requests", "API requests by endpoint, model, provider and status.",
                                      ["endpoint", "model", "provider", "status"])
        self.latency = HistogramFamily("switchboard_request_duration_seconds",
                                       "Request latency, to the last byte (streams included).",
                                       ["endpoint", "model", "provider", "stream"], LATENCY_BUCKETS)
        self.ttft = HistogramFamily("switchboard_time_to_first_token_seconds", "Time to the first streamed chunk.",
                                    ["model", "provider"], TTFT_BUCKETS)
        self.tokens = CounterFamily("switchboard_tokens", "Tokens by direction (in: prompt, out: completion).",
                                    ["model", "provider", "direction"])
        per_request = FamiliesCollector([self.requests, self.latency, self.ttft, self.tokens])
        r.register(per_request)  # type: ignore[arg-type]
        self._series: dict[tuple[str, str, str, int, bool], _Series] = {}
        self.upstream_errors = Counter("switchboard_upstream_errors", "Failed upstream attempts by error type.",
                                       ["provider", "type"], registry=r)
        self.retries = Counter("switchboard_retries", "Retries of an upstream call (after backoff).",
                               ["model", "provider"], registry=r)
        self.fallbacks = Counter("switchboard_fallbacks", "Moves to the next route of a model (from provider).",
                                 ["model", "provider"], registry=r)
        self.circuit_changes = Counter("switchboard_deployment_circuit_changes",
                                       "Circuit breaker transitions per deployment, by new state.",
                                       ["provider", "deployment", "state"], registry=r)
        r.register(_LiveState(gateway))  # type: ignore[arg-type]

    def install(self) -> None:
        self.gateway.observers.append(self.observe)
        self.gateway.router.listeners.append(self.on_router_event)
        self.gateway.router.health.listeners.append(self.on_circuit)

    def _model_label(self, record: RequestRecord) -> str:
        model = record.model
        if model is None:
            return ""
        if model in self.gateway.config.models:
            return model
        # Direct `provider/model` names are free text from clients: label them only once an upstream accepted them.
        if record.provider is not None and record.status < 400 and self.gateway.router.knows(model):
            return model
        return "other"

    def observe(self, record: RequestRecord) -> None:
        model = self._model_label(record)
        provider = record.provider or ""
        endpoint, status, stream = record.endpoint, record.status, record.stream
        key = (endpoint, model, provider, status, stream)
        series = self._series.get(key)
        if series is None:  # the label sets in use are few and bounded
            series = self._series[key] = _Series(self.requests.cell(endpoint, model, provider, str(status)))
        series.requests.value += 1.0
        # Each series is created on first use only, as prometheus_client's `labels()` would: no empty series.
        latency_s = record.latency_s
        if latency_s is not None:
            latency = series.latency
            if latency is None:
                latency = series.latency = self.latency.cell(endpoint, model, provider, "true" if stream else "false")
            latency.observe(latency_s)
        if stream and record.first_token_s is not None:
            ttft = series.ttft
            if ttft is None:
                ttft = series.ttft = self.ttft.cell(model, provider)
            ttft.observe(record.first_token_s)
        usage = record.usage
        if usage is not None:
            tokens = series.tokens
            if tokens is None:
                tokens = series.tokens = (self.tokens.cell(model, provider, "in"),
                                          self.tokens.cell(model, provider, "out"))
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            if prompt < 0 or completion < 0:  # an upstream's bogus usage: refused, as Counter.inc would
                raise ValueError("Counters can only be incremented by non-negative amounts.")
            tokens[0].value += prompt
            tokens[1].value += completion

    def on_router_event(self, event: RouterEvent) -> None:
        model = event.model if event.model in self.gateway.config.models else "other"
        if event.kind == "upstream_error" and event.error is not None:
            self.upstream_errors.labels(event.provider, error_class(event.error)).inc()
        elif event.kind == "retry":
            self.retries.labels(model, event.provider).inc()
        elif event.kind == "fallback":
            self.fallbacks.labels(model, event.provider).inc()

    def on_circuit(self, breaker: Breaker, state: str) -> None:
        self.circuit_changes.labels(breaker.provider, breaker.deployment, state).inc()

    async def handle(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
