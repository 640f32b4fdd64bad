"""W3C Trace Context parsing and the sampling rule (trace_context.py, observability/spans.py)."""

from __future__ import annotations

import random

import pytest

from switchboard.config import ConfigError, parse_config
from switchboard.observability.spans import Tracer
from switchboard.trace_context import (
    format_traceparent,
    parse_trace_context,
    trace_headers,
    trace_meta,
    traceparent_line,
    traceparent_line_python,
)

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_valid_traceparent() -> None:
    ctx = parse_trace_context(VALID, "rojo=00f067aa0ba902b7")
    assert ctx is not None and ctx.sampled and ctx.tracestate == "rojo=00f067aa0ba902b7"
    assert format_traceparent(ctx.trace_id, ctx.span_id, ctx.sampled) == VALID
    unsampled = parse_trace_context(VALID[:-2] + "00", None)
    assert unsampled is not None and not unsampled.sampled and unsampled.tracestate is None


@pytest.mark.parametrize("value", [
    None, "", "garbage", VALID.upper(), "ff" + VALID[2:], "00-" + "0" * 32 + "-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", VALID + "-extra", VALID[:-1], "0" + VALID,
])
def test_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_trace_context(value, "a=b") is None


def test_future_version_may_carry_more_fields() -> None:
    assert parse_trace_context("01" + VALID[2:] + "-what-ever", None) is not None


def test_tracestate_beyond_the_limits_is_dropped() -> None:
    assert parse_trace_context(VALID, "a=" + "x" * 600).tracestate is None  # type: ignore[union-attr]
    assert parse_trace_context(VALID, ",".join(f"k{i}=v" for i in range(40))).tracestate is None  # type: ignore[union-attr]
    assert parse_trace_context(VALID, "a=b\nc").tracestate is None  # type: ignore[union-attr]


def test_headers_and_meta_round_trip() -> None:
    raw = trace_headers(1, 2, True, "a=b")
    assert raw == b"traceparent: 00-00000000000000000000000000000001-0000000000000002-01\r\ntracestate: a=b\r\n"
    assert trace_meta(raw) == {"traceparent": "00-00000000000000000000000000000001-0000000000000002-01",
                               "tracestate": "a=b"}


def test_the_c_traceparent_writes_the_python_ones_bytes() -> None:
    rng = random.Random(17)
    for _ in range(20000):
        trace_id = rng.getrandbits(rng.choice([1, 4, 63, 64, 65, 127, 128]))
        span_id = rng.getrandbits(rng.choice([1, 33, 63, 64]))
        sampled = rng.random() < 0.5
        line = traceparent_line(trace_id, span_id, sampled)
        assert line == traceparent_line_python(trace_id, span_id, sampled)
        assert parse_trace_context(line.decode()[len("traceparent: "):-2], None) in (
            None, parse_trace_context(format_traceparent(trace_id, span_id, sampled), None))
    assert traceparent_line((1 << 128) - 1, (1 << 64) - 1, True) == (
        b"traceparent: 00-" + b"f" * 32 + b"-" + b"f" * 16 + b"-01\r\n")


@pytest.mark.parametrize("ids", [(-1, 1), (1 << 128, 1), (1, 1 << 64), (1, -1), (1.0, 1), (1, True), ("1", 1),
                                 (None, 1)])
def test_traceparent_ids_out_of_range_are_refused_by_both(ids: tuple[object, object]) -> None:
    for write in (traceparent_line, traceparent_line_python):
        with pytest.raises(ValueError):
            write(*ids, True)  # type: ignore[arg-type]


def test_sampling_ratio_and_parent_decision() -> None:
    exported: list[object] = []
    for ratio, low, high in ((0.0, 0, 0), (1.0, 2000, 2000), (0.25, 380, 620)):
        tracer = Tracer(exported.append, ratio, False, {}, ())
        sampled = sum(tracer.begin({}, "POST", "/v1/x").sampled for _ in range(2000))
        assert low <= sampled <= high
    never = Tracer(exported.append, 0.0, False, {}, ())
    assert never.begin({"traceparent": VALID}, "POST", "/v1/x").sampled  # the client's sampled flag is followed
    always = Tracer(exported.append, 1.0, False, {}, ())
    trace = always.begin({"traceparent": VALID[:-2] + "00"}, "POST", "/v1/x")
    assert not trace.sampled
    trace.end()
    assert exported == []  # unsampled spans are never exported


def test_config_errors() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("observability: {otlp: {sample_ratio: 0.5}}")
    assert "observability.otlp.endpoint" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config("observability: {otlp: {endpoint: collector:4318, sampl_ratio: 1}}")
    assert "http:// or https://" in str(err.value) and "did you mean `sample_ratio`" in str(err.value)
    cfg = parse_config("observability: {otlp: {endpoint: 'https://c.example/otlp/v1/traces'}}").observability
    assert cfg.otlp is not None and cfg.otlp.endpoint == "https://c.example/otlp/v1/traces"
    assert parse_config("").observability.otlp is None
