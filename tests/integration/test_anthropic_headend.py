"""`POST /v1/messages` through the real server, driven by the official anthropic SDK and raw HTTP,
routed to the OpenAI-compatible fake upstream (the hub translation both ways)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import APP_KEY, MASTER
from tests.server import SwitchboardProcess

HI = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {"name": "get_weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()

_clients: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(gateway: SwitchboardProcess, key: str = MASTER, base: str = "") -> anthropic.Anthropic:
    c = anthropic.Anthropic(base_url=gateway.url + base, api_key=key, max_retries=0)
    _clients.append(c)
    return c


def raw_events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Parse an SSE body into (event name, data) pairs, keeping events without an `event:` line."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        if data is not None:
            out.append((name, data))
    return out


def test_non_stream_text_and_system(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=64, system=[{"type": "text", "text": "Be brief."}], messages=HI)
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello from gpt-4o-mini")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 3)
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert raw.headers["content-type"] == "application/json"
    sent = fake_openai.last()["body"]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["max_completion_tokens"] == 64
    assert "stream" not in sent


async def test_async_non_stream_parameters(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=MASTER, max_retries=0) as c:
        message = await c.messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=HI, stop_sequences=["END"], metadata={"user_id": "user-42"},
            # this SDK release no longer lists sampling parameters; the API still takes them
            extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40})
    assert message.content[0].type == "text"
    sent = fake_openai.last()["body"]
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.5, 0.9, 40)
    assert sent["stop"] == ["END"] and sent["user"] == "user-42"
    assert "metadata" not in sent and "stop_sequences" not in sent


def test_images_reach_upstream_as_image_parts(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    client(gateway).messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]}])
    assert fake_openai.last()["body"]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]


def test_tools_round_trip(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    c = client(gateway)
    first = c.messages.create(model="up/tools", max_tokens=100, messages=[{"role": "user", "content": "Paris?"}],
                              tools=[WEATHER_TOOL], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    sent = fake_openai.last()["body"]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL["input_schema"], "description": "Weather of a city"}}]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [("call_a", "get_weather", {"city": "Paris"}),
                                                       ("call_b", "get_time", {"tz": "CET"})]

    second = c.messages.create(model="gpt-4o-mini", max_tokens=100, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "18C and sunny"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": [{"type": "text", "text": "no clock"}],
             "is_error": True},
            {"type": "text", "text": "Summarise."},
        ]},
    ])
    assert second.content[0].type == "text"
    history = fake_openai.last()["body"]["messages"]
    assert history[1]["role"] == "assistant" and history[1]["content"] is None
    assert [(t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
            for t in history[1]["tool_calls"]] == [("call_a", "get_weather", {"city": "Paris"}),
                                                   ("call_b", "get_time", {"tz": "CET"})]
    assert history[2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "18C and sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Error: no clock"},
        {"role": "user", "content": "Summarise."},
    ]


def test_stream_with_sdk_helper(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    with client(gateway).messages.stream(model="gpt-4o-mini", max_tokens=10, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from gpt-4o-mini"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens == 5
    # the gateway always asks for usage, so message_delta carries real token counts
    assert fake_openai.last()["body"]["stream_options"] == {"include_usage": True}


def test_stream_tool_calls_with_sdk_helper(gateway: SwitchboardProcess) -> None:
    with client(gateway).messages.stream(model="up/tools", max_tokens=10, messages=HI,
                                         tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    # the fake interleaves the two calls' argument fragments; Anthropic blocks come out one after the other
    assert [(b.type, b.id, b.input) for b in final.content] == [("tool_use", "call_a", {"city": "Paris"}),
                                                               ("tool_use", "call_b", {"tz": "CET"})]
    assert final.stop_reason == "tool_use"
    starts = [e.index for e in events if e.type == "content_block_start"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert starts == stops == [0, 1]


async def test_async_create_stream_event_order(gateway: SwitchboardProcess) -> None:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=MASTER, max_retries=0) as c:
        stream = await c.messages.create(model="gpt-4o-mini", max_tokens=10, messages=HI, stream=True)
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds == ["message_start", "content_block_start"] + ["content_block_delta"] * 3 + [
        "content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.output_tokens == 0
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Hello from gpt-4o-mini"
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 3


def test_stream_raw_framing(gateway: SwitchboardProcess) -> None:
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": MASTER},
                      json={"model": "gpt-4o-mini", "max_tokens": 10, "messages": HI, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"] == resp.headers["x-request-id"]
        body = resp.read().decode()
    events = raw_events(body)
    # every event names itself, and the name matches the data's type (the SDK drops data-only events)
    assert all(name is not None and name == data["type"] for name, data in events)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                            "content_block_delta", "content_block_delta", "content_block_stop",
                                            "message_delta", "message_stop"]
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[7][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert "[DONE]" not in body


@pytest.mark.parametrize("model", ["up/cut", "up/midstream-error"])
def test_mid_stream_failure_is_an_error_event(gateway: SwitchboardProcess, model: str) -> None:
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": MASTER},
                      json={"model": model, "max_tokens": 10, "messages": HI, "stream": True}) as resp:
        assert resp.status_code == 200
        events = raw_events(resp.read().decode())
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "message_stop" not in names and "message_delta" not in names
    name, data = events[-1]
    assert name == "error" and data["type"] == "error"
    assert data["error"]["type"] == "api_error" and data["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as info:
        with client(gateway).messages.stream(model=model, max_tokens=10, messages=HI) as stream:
            for _ in stream:
                pass
    assert "api_error" in str(info.value)


def test_validation_errors_in_anthropic_shape(gateway: SwitchboardProcess) -> None:
    c = client(gateway)
    with pytest.raises(anthropic.BadRequestError) as info:
        c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "tool", "content": "x"}])
    assert info.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "messages.0.role: Input should be 'user', 'assistant' or 'system'"}}
    assert info.value.request_id and info.value.request_id.startswith("req_")
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.content\.0\.source\.media_type"):
        c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": PNG}}]}])
    # the SDK refuses to send a body without max_tokens; raw HTTP can
    resp = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": MASTER},
                      json={"model": "gpt-4o-mini", "messages": HI})
    assert (resp.status_code, resp.json()) == (400, {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}})
    resp = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": MASTER}, content=b"{not json")
    assert resp.status_code == 400
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers["request-id"] == resp.headers["x-request-id"]


def test_auth_errors_and_both_auth_headers(gateway: SwitchboardProcess) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(gateway, key="sk-wrong").messages.create(model="gpt-4o-mini", max_tokens=5, messages=HI)
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client(gateway, key=APP_KEY).messages.create(model="strict-model", max_tokens=5, messages=HI)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    # the SDK's x-api-key, and a bearer token (auth_token), both authenticate
    assert client(gateway, key=APP_KEY).messages.create(model="gpt-4o-mini", max_tokens=5, messages=HI).content
    bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=MASTER, max_retries=0)
    _clients.append(bearer)
    assert bearer.messages.create(model="gpt-4o-mini", max_tokens=5, messages=HI).content


def test_routing_and_upstream_errors(gateway: SwitchboardProcess) -> None:
    c = client(gateway)
    with pytest.raises(anthropic.NotFoundError) as missing:
        c.messages.create(model="no-such-model", max_tokens=5, messages=HI)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        c.messages.create(model="up/error-429", max_tokens=5, messages=HI)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as failed:
        c.messages.create(model="up/error-500", max_tokens=5, messages=HI, stream=True)
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_served_under_path_prefixes(gateway: SwitchboardProcess) -> None:
    message = client(gateway, base="/openai").messages.create(model="gpt-4o-mini", max_tokens=5, messages=HI)
    assert message.content[0].type == "text"


def test_count_tokens_without_an_anthropic_provider_is_an_estimate(gateway: SwitchboardProcess) -> None:
    raw = client(gateway).messages.with_raw_response.count_tokens(model="gpt-4o-mini", messages=HI)
    assert raw.parse().input_tokens == 1 + 3  # "hi": one token of text, three of message framing
    assert raw.headers["x-switchboard-token-count"] == "estimate"
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client(gateway).messages.count_tokens(model="gpt-4o-mini", messages=[])
