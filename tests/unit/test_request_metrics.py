"""The per-request metric series kept as plain numbers scrape exactly as prometheus_client's own would."""

from __future__ import annotations

import random
import re
from pathlib import Path

import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from switchboard.config import parse_config
from switchboard.gateway import Gateway, RequestRecord
from switchboard.hub import Usage
from switchboard.observability.metrics import Metrics
from switchboard.observability.request_metrics import CounterFamily, FamiliesCollector, HistogramFamily

_CREATED = re.compile(r"^(\S+_created(?:\{.*\})?) \S+$", re.MULTILINE)


def _text(registry: CollectorRegistry) -> str:
    """The exposition with the `_created` timestamps blanked (they differ by the microseconds between)."""
    return _CREATED.sub(r"\1 <created>", generate_latest(registry).decode())


@pytest.mark.parametrize("created", [True, False])
def test_families_render_like_prometheus_client(monkeypatch: pytest.MonkeyPatch, created: bool) -> None:
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created)
    bounds = (0.05, 0.1, 1, 2.5, float("inf"))
    ours_c = CounterFamily("t_requests", "Requests.", ["a", "b"])
    ours_h = HistogramFamily("t_seconds", "Seconds.", ["a"], bounds)
    mine = CollectorRegistry()
    mine.register(FamiliesCollector([ours_c, ours_h]))  # type: ignore[arg-type]
    theirs = CollectorRegistry()
    ref_c = Counter("t_requests", "Requests.", ["a", "b"], registry=theirs)
    ref_h = Histogram("t_seconds", "Seconds.", ["a"], buckets=bounds, registry=theirs)
    assert _text(mine) == _text(theirs)  # nothing observed yet: HELP and TYPE only

    rng = random.Random(7)
    edge = [0.0, 0.05, 0.1, 1.0, 2.5, 2.5000001, 1e9, float("inf"), float("nan"), -3.0]
    for i in range(400):
        a, b = rng.choice(["x", "y", "z"]), rng.choice(["1", "2"])
        amount = rng.choice([1, 3, 0.5, 12])
        ours_c.cell(a, b).value += amount
        ref_c.labels(a, b).inc(amount)
        value = edge[i] if i < len(edge) else rng.expovariate(1.5)
        ours_h.cell(a).observe(value)
        ref_h.labels(a).observe(value)
    assert _text(mine) == _text(theirs)


CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", keys: [sk-up]}
  alt: {type: openai, base_url: "http://127.0.0.1:9", keys: [sk-alt]}
models:
  chat: {route: up/m1}
  embed: {route: alt/e1}
"""


class _Reference:
    """What the observer did with prometheus_client's own Counter/Histogram and `labels()`."""

    def __init__(self, metrics: Metrics) -> None:
        self.registry = CollectorRegistry()
        r, m = self.registry, metrics
        self.requests = Counter(m.requests.name, m.requests.documentation, m.requests.labelnames, registry=r)
        self.latency = Histogram(m.latency.name, m.latency.documentation, m.latency.labelnames,
                                 buckets=m.latency.bounds, registry=r)
        self.ttft = Histogram(m.ttft.name, m.ttft.documentation, m.ttft.labelnames, buckets=m.ttft.bounds, registry=r)
        self.tokens = Counter(m.tokens.name, m.tokens.documentation, m.tokens.labelnames, registry=r)

    def observe(self, record: RequestRecord, model: str) -> None:
        provider = record.provider or ""
        self.requests.labels(record.endpoint, model, provider, str(record.status)).inc()
        if record.latency_s is not None:
            self.latency.labels(record.endpoint, model, provider, "true" if record.stream else "false").observe(
                record.latency_s)
        if record.stream and record.first_token_s is not None:
            self.ttft.labels(model, provider).observe(record.first_token_s)
        if record.usage is not None:
            self.tokens.labels(model, provider, "in").inc(record.usage.prompt_tokens)
            self.tokens.labels(model, provider, "out").inc(record.usage.completion_tokens)


def _per_request_lines(text: str, metrics: Metrics) -> str:
    names = "|".join(f.name for f in (metrics.requests, metrics.latency, metrics.ttft, metrics.tokens))
    keep = re.compile(rf"^(# (HELP|TYPE) )?({names})[_ {{]")
    return "\n".join(line for line in text.splitlines() if keep.match(line))


def test_observer_scrapes_as_prometheus_client_counting_would(tmp_path: Path) -> None:
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path))
    metrics = Metrics(gateway)
    reference = _Reference(metrics)
    rng = random.Random(11)
    for i in range(600):
        record = RequestRecord(request_id=f"r{i}", endpoint=rng.choice(["/chat/completions", "/embeddings", "/models"]))
        record.model = rng.choice(["chat", "embed", "up/direct", "nope/x", None])
        record.provider = rng.choice(["up", "alt", None])
        record.status = rng.choice([200, 200, 200, 400, 429, 502])
        record.stream = rng.random() < 0.4
        record.latency_s = None if rng.random() < 0.1 else rng.expovariate(2.0)
        record.first_token_s = rng.choice([None, rng.random() / 10])
        record.usage = None if rng.random() < 0.3 else Usage(rng.randrange(500), rng.randrange(500))
        model = metrics.labels.label(record.model)
        metrics.observe(record)
        reference.observe(record, model)
        if i in (0, 1, 50, 599):  # series appear exactly when prometheus_client would create them
            assert _per_request_lines(_text(metrics.registry), metrics) == _text(reference.registry).rstrip("\n")


def test_negative_tokens_are_refused_like_counter_inc(tmp_path: Path) -> None:
    metrics = Metrics(Gateway(parse_config(CONFIG, base_dir=tmp_path)))
    record = RequestRecord(request_id="r", endpoint="/chat/completions", model="chat", provider="up",
                           usage=Usage(-1, 2))
    with pytest.raises(ValueError):
        metrics.observe(record)
    with pytest.raises(ValueError):
        Counter("t", "T.", registry=None).inc(-1)


def test_upstream_wire_failures_have_their_error_class() -> None:
    from switchboard.errors import GatewayError
    from switchboard.observability.metrics import error_class

    def err(code: str) -> GatewayError:
        return GatewayError(502, "x", "api_error", code=code)

    assert error_class(err("upstream_connection_closed")) == "connection"
    for code in ("upstream_headers_too_large", "upstream_response_too_large", "upstream_event_too_large"):
        assert error_class(err(code)) == "invalid_response"
