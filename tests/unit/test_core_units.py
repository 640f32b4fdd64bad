from __future__ import annotations

import base64
import struct
from collections import Counter

import pytest

from switchboard.config import parse_config
from switchboard.errors import GatewayError, redact_secrets, upstream_error
from switchboard.headends.embeddings import base64_to_floats, floats_to_base64
from switchboard.headends.validation import validate_chat
from switchboard.providers import build_provider
from switchboard.routing.router import Deployment, Router

CONFIG = """
providers:
  a:
    type: openai
    base_url: http://127.0.0.1:1/v1
    keys:
      - {value: k1, weight: 3}
      - {value: k2, weight: 1}
      - {value: k3, weight: 1, models: [special]}
    retries: {max: 2, backoff_initial_ms: 1, backoff_max_ms: 2}
  b:
    type: openai
    base_url: http://127.0.0.1:2/v1
    retries: {max: 0}
models:
  m: {route: a/base, fallbacks: [b/other]}
"""


def make_router() -> Router:
    cfg = parse_config(CONFIG, environ={})
    return Router(cfg, {name: build_provider(p) for name, p in cfg.providers.items()})


async def test_weighted_key_choice_respects_model_lists() -> None:
    router = make_router()
    seen: Counter[str] = Counter()

    async def attempt(d: Deployment) -> str:
        assert d.key is not None
        seen[d.key.value] += 1
        return "ok"

    for _ in range(2000):
        await router.execute("m", attempt)
    assert set(seen) == {"k1", "k2"}  # k3 is only for `special`
    assert 2.3 < seen["k1"] / seen["k2"] < 3.9
    seen.clear()
    for _ in range(50):
        await router.execute("a/special", attempt)
    assert set(seen) == {"k1", "k2", "k3"}


async def test_retries_then_fallback_then_error() -> None:
    router = make_router()
    calls: list[tuple[str, str | None]] = []

    async def failing(d: Deployment) -> str:
        calls.append((d.provider.name, d.key_value))
        if d.provider.name == "a":
            raise GatewayError(503, "down")
        return "from b"

    result, outcome = await router.execute("m", failing)
    assert result == "from b" and outcome.attempts == 4 and outcome.fallback
    assert [c[0] for c in calls] == ["a", "a", "a", "b"]
    assert {c[1] for c in calls[:2]} == {"k1", "k2"}  # a retry prefers a key that has not failed yet


async def test_non_retryable_error_is_raised_at_once() -> None:
    router = make_router()
    calls = 0

    async def bad(d: Deployment) -> str:
        nonlocal calls
        calls += 1
        raise GatewayError(400, "bad request")

    with pytest.raises(GatewayError) as err:
        await router.execute("m", bad)
    assert err.value.status == 400 and calls == 1


async def test_unknown_model() -> None:
    with pytest.raises(GatewayError) as err:
        make_router().routes("zzz")
    assert err.value.status == 404 and err.value.code == "model_not_found"


def test_sse_parser() -> None:
    from switchboard.sse import SSEDecoder

    raw = b'event: message_start\ndata: {"a":1}\n\n: ping\n\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n'
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.finish()
    assert events == [("message_start", '{"a":1}'), (None, "line1\nline2"), (None, "[DONE]")]


def test_base64_embeddings_are_little_endian_float32() -> None:
    encoded = floats_to_base64([1.0, -2.5])
    assert base64.b64decode(encoded) == struct.pack("<2f", 1.0, -2.5)
    assert base64_to_floats(encoded) == [1.0, -2.5]


def test_redaction() -> None:
    assert "sk-abc" not in redact_secrets("bad key sk-abcdef123456 here")
    assert "mysecret" not in redact_secrets("key mysecret1", ("mysecret1",))
    err = upstream_error(401, {"error": {"message": "Incorrect API key provided: sk-proj-****abcd"}}, "p")
    assert "sk-proj" not in err.message and err.status == 401
    assert upstream_error(302, "moved", "p").status == 502


def test_validation_accepts_client_quirks() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "user": {"id": 1},
            "metadata": {"a": {"b": 1}}, "call": {}, "stream_options": None}
    assert validate_chat(body) == "m"
    with pytest.raises(GatewayError) as err:
        validate_chat({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "stream_options": {"include_usage": "yes"}})
    assert err.value.param == "stream_options.include_usage"


def test_sse_decoder_any_split() -> None:
    from switchboard.sse import SSEDecoder

    raw = b'event: a\r\ndata: {"x": 1}\r\n\r\ndata: one\ndata: two\n\n: ping\n\ndata: [DONE]\n\ndata: tail'
    want = [("a", '{"x": 1}'), (None, "one\ntwo"), (None, "[DONE]"), (None, "tail")]
    for size in (1, 2, 3, 7, len(raw)):
        decoder = SSEDecoder()
        got = []
        for i in range(0, len(raw), size):
            got += decoder.feed(raw[i:i + size])
        got += decoder.finish()
        assert got == want, size
