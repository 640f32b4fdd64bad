"""Prometheus metrics for one gateway, served at `GET /metrics`.

Owns a `CollectorRegistry` per gateway (never the process-global default registry, so several
apps in one process do not mix). Fed three ways: a request observer (one `RequestRecord` per
finished request, into the plain-number series of `request_metrics`), router events (retries,
fallbacks, upstream errors), and a collector read at scrape time (in-flight and queue depth of every
limiter, circuit state of every deployment).

Model labels are the configured names only (`labels.ModelLabels`; others count under `other`), so
the number of series is bounded by the config, not by what clients send. A scrape reads the live
state on the event loop (bounded by the config) and renders the exposition in a worker thread of
its own; scrapes that arrive while one renders share its result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..asgi import Request, Response
from ..background_threads import background_thread
from ..errors import GatewayError
from ..gateway import Gateway, RequestRecord
from ..routing.health import CLOSED, HALF_OPEN, OPEN, Breaker
from ..routing.router import RouterEvent
from .labels import ModelLabels
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
    if code in ("upstream_connection_error", "upstream_connection_closed"):
        return "connection"
    if code in ("upstream_invalid_response", "upstream_stream_truncated", "upstream_headers_too_large",
                "upstream_response_too_large", "upstream_event_too_large"):
        return "invalid_response"
    if err.status == 429:
        return "rate_limit"
    if err.status >= 500:
        return "server_error"
    return "client_error"


class _LiveState:
    """Read at scrape time, on the event loop: limiter occupancy, circuit states, event-loop tasks."""

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
        # Requests that came through a facade (configured names only: a bounded label set).
        self.facade_requests = CounterFamily("switchboard_facade_requests",
                                             "API requests through each endpoint facade, by endpoint and status.",
                                             ["facade", "endpoint", "status"])
        self._facade_cells: dict[tuple[str, str, int], CounterCell] = {}
        per_request = FamiliesCollector([self.requests, self.latency, self.ttft, self.tokens, self.facade_requests])
        r.register(per_request)
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
        # Not in the registry: it reads loop-only state, so `handle` collects it on the loop.
        self.live = _LiveState(gateway)
        self.labels = ModelLabels(gateway)
        self._renderer: ThreadPoolExecutor | None = None
        self._rendering: asyncio.Future[bytes] | None = None

    def install(self) -> None:
        self.gateway.observers.append(self.observe)
        self.gateway.router.listeners.append(self.on_router_event)
        self.gateway.router.health.listeners.append(self.on_circuit)
        self.gateway.on_close(self.aclose)

    def observe(self, record: RequestRecord) -> None:
        if record.facade is not None:
            facade_key = (record.facade, record.endpoint, record.status)
            cell = self._facade_cells.get(facade_key)
            if cell is None:
                cell = self._facade_cells[facade_key] = self.facade_requests.cell(
                    record.facade, record.endpoint, str(record.status))
            cell.value += 1.0
        model = self.labels.label(record.model)
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
        model = self.labels.label(event.model)
        if event.kind == "upstream_error" and event.error is not None:
            self.upstream_errors.labels(event.provider, error_class(event.error)).inc()
        elif event.kind == "retry":
            self.retries.labels(model, event.provider).inc()
        elif event.kind == "fallback":
            self.fallbacks.labels(model, event.provider).inc()

    def on_circuit(self, breaker: Breaker, state: str) -> None:
        self.circuit_changes.labels(breaker.provider, breaker.deployment, state).inc()

    def render(self, live: Sequence[Metric] = ()) -> bytes:
        """The exposition text: the registry's collectors (safe to read from any thread), then `live`."""
        return generate_latest(_Exposition(self.registry, live))

    async def handle(self, request: Request) -> Response:
        rendering = self._rendering
        if rendering is None:  # else share the render under way: a burst of scrapes costs one
            live = list(self.live.collect())
            if self._renderer is None:
                self._renderer = ThreadPoolExecutor(1, thread_name_prefix="switchboard-metrics",
                                                    initializer=background_thread)
            rendering = asyncio.get_running_loop().run_in_executor(self._renderer, self.render, live)
            self._rendering = rendering
            rendering.add_done_callback(self._rendered)
        body = await asyncio.shield(rendering)  # a scraper that goes away does not cancel the others' render
        return Response(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)

    def _rendered(self, rendering: asyncio.Future[bytes]) -> None:
        if self._rendering is rendering:
            self._rendering = None
        if not rendering.cancelled():
            rendering.exception()  # retrieved here, so a render nobody awaits any more is not reported

    async def aclose(self) -> None:
        if self._renderer is not None:
            renderer, self._renderer = self._renderer, None
            with contextlib.suppress(RuntimeError):
                renderer.shutdown(wait=False)


class _Exposition:
    """What `generate_latest` reads: the registry's metrics followed by those collected on the loop."""

    def __init__(self, registry: CollectorRegistry, live: Sequence[Metric]) -> None:
        self.registry = registry
        self.live = live

    def collect(self) -> Iterable[Metric]:
        yield from self.registry.collect()
        yield from self.live
