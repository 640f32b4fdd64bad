"""Our OTLP encoding (observability/otlp_encoding.py) against the exporter's own `encode_spans`: the same
spans, turned into the SDK's `ReadableSpan`s for the reference, must decode to the same
`ExportTraceServiceRequest`, field for field."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra")

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from switchboard.observability.otlp import readable_span
from switchboard.observability.otlp_encoding import encode_attributes, encode_request, encode_scope
from switchboard.observability.spans import CLIENT, INTERNAL, SERVER, Preset, RequestTrace, Span, Tracer

VALUES = ["chat gpt-4o", "", "ünïcödé ✓", "x" * 300, 0, 1, -1, 2**63 - 1, -(2**63), 300, True, False, 0.5, -1e300,
          ["stop"], ["a", "b", "c"], [1, 2], [True, False], []]


def _spans(seed: int) -> list[Span]:
    rng = random.Random(seed)
    tracer = Tracer(lambda s: None, 1.0, False, {}, ())
    headers = {"traceparent": f"00-{rng.getrandbits(128) | 1:032x}-{rng.getrandbits(64) | 1:016x}-01"}
    if rng.random() < 0.5:
        headers["tracestate"] = "vendor=abc,other=1"
    trace = tracer.begin(headers if rng.random() < 0.5 else {}, "POST", "/v1/chat/completions")
    spans: list[Span] = [trace]
    for _ in range(rng.randint(0, 5)):
        spans.append(Span(tracer, trace, rng.choice([trace.span_id, rng.getrandbits(64) | 1]), "child",
                          rng.choice([INTERNAL, CLIENT]), {}))
    for span in spans:
        for n in range(rng.randint(0, 12)):
            span.attributes[f"key.{n}.{rng.randint(0, 3)}"] = rng.choice(VALUES)
        for unique in ("switchboard.request_id", "gen_ai.response.id", "gen_ai.input.messages",
                       "gen_ai.response.time_to_first_chunk"):  # never cached; strings and floats written flat
            if rng.random() < 0.5:
                span.attributes[unique] = rng.choice(["req_1", "", "ü" * 70, "x" * 300, "y" * 95, 7, 0.25, -1.5e300])
        if rng.random() < 0.5:  # shared attributes, encoded once
            span.preset = Preset({f"preset.{n}": rng.choice(VALUES) for n in range(rng.randint(0, 6))})
        if rng.random() < 0.3:
            span.error = rng.choice(["boom", "", "fake 500 ✗"])
        span.start_ns = rng.getrandbits(62)
        span.end_ns = span.start_ns + rng.getrandbits(40)
        span.name = rng.choice(["chat gpt-4o", "execute_tool add", "POST /v1/models", "ü", "n" * 200])
    return spans


@pytest.mark.parametrize("seed", range(60))
def test_matches_the_exporters_encoder(seed: int) -> None:
    resource = Resource.create({"service.name": "svc", "deployment.environment": "test", "n": 3})
    scope = InstrumentationScope("switchboard", "0.1.0")
    spans = _spans(seed)
    ours = ExportTraceServiceRequest()
    ours.ParseFromString(encode_request(spans, encode_attributes(b"\x0a", dict(resource.attributes)),
                                        encode_scope(scope.name, scope.version)))
    reference = encode_spans([readable_span(s, resource, scope) for s in spans])
    assert ours == reference
    assert ours.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)


def test_server_span_kind_and_remote_parent_flags() -> None:
    tracer = Tracer(lambda s: None, 1.0, False, {}, ())
    trace = tracer.begin({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "POST", "/v1/x")
    trace.end_ns = trace.start_ns + 1
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_request([trace], b"", encode_scope("s", None)))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.kind == SERVER and span.parent_span_id.hex() == "b7ad6b7169203331"
    assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c" and span.flags == 0x300
    assert isinstance(trace, RequestTrace)


def test_attribute_names_are_the_conventions() -> None:
    """Every gen_ai.* / mcp.* name the span modules write exists in the semantic conventions package
    (opentelemetry-semantic-conventions, which the SDK brings)."""
    import re
    from pathlib import Path

    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes, mcp_attributes

    known = {v for mod in (gen_ai_attributes, mcp_attributes) for v in vars(mod).values() if isinstance(v, str)}
    src = Path(__file__).resolve().parents[2] / "src" / "switchboard" / "observability"
    used = {m for f in ("spans.py", "tracing.py") for m in re.findall(r'"((?:gen_ai|mcp)\.[a-z_.]+)"',
                                                                        (src / f).read_text())}
    assert len(used) > 20
    assert used <= known, sorted(used - known)
