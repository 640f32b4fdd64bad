"""The `type: anthropic` provider through the real server, driven by the official openai SDK.

The fake Anthropic upstream validates requests as strictly as the real API (it rejects unknown
fields, bad role order, misplaced tool results...), so every successful call here also proves the
request translation is acceptable to Anthropic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec

UPSTREAM_KEY = "sk-ant-upstream-secret-1"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
HI = [{"role": "user", "content": "hi"}]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}}}},
]


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_keys={UPSTREAM_KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(fake_anthropic: FakeAnthropic) -> Iterator[SwitchboardProcess]:
    config = f"""
providers:
  claude:
    type: anthropic
    base_url: {fake_anthropic.base_url}
    keys: [{{value: {UPSTREAM_KEY}}}]
    anthropic_version: "2023-01-01"
    default_max_tokens: 1000
    max_tokens_by_model: {{claude-big: 64000}}
    retries: {{max: 0}}
  lenient:
    type: anthropic
    base_url: {fake_anthropic.base_url}/v1
    keys: [{{value: {UPSTREAM_KEY}}}]
    drop_unsupported: true
    retries: {{max: 0}}
models:
  sonnet: {{route: claude/claude-sonnet-test}}
"""
    server = SwitchboardProcess(config).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


def upstream(fake: FakeAnthropic) -> dict[str, Any]:
    body = fake.last()["body"]
    assert isinstance(body, dict)
    return body


def test_non_stream_text(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="sonnet", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from claude-sonnet-test"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 3)
    assert raw.headers["x-upstream-request-id"].startswith("req_fake")
    validate_against_spec("CreateChatCompletionResponse", json.loads(raw.content))
    sent = fake_anthropic.last()
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["headers"]["anthropic-version"] == "2023-01-01"  # from the config
    assert "Authorization" not in sent["headers"]
    assert sent["body"] == {"model": "claude-sonnet-test", "max_tokens": 1000, "messages": HI,
                            "system": [{"type": "text", "text": "Be brief."}]}


def test_provider_model_path_and_max_tokens_by_model(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    client.chat.completions.create(model="claude/claude-big", messages=HI)
    assert upstream(fake_anthropic)["max_tokens"] == 64000
    client.chat.completions.create(model="claude/claude-big", messages=HI, max_completion_tokens=12)
    assert upstream(fake_anthropic)["max_tokens"] == 12


def test_client_only_fields_do_not_reach_anthropic(gateway: SwitchboardProcess, fake_anthropic: FakeAnthropic) -> None:
    # Vapi- and Open WebUI-style extras; the fake rejects any unknown top-level field with a 400.
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "sonnet", "messages": HI, "call": {"id": "c1"}, "metadata": {"k": {"nested": 1}},
        "user": {"id": "u"}, "store": True, "service_tier": "auto", "n": 1, "presence_penalty": 0,
        "stream_options": None, "top_k": 4})
    assert resp.status_code == 200, resp.text
    assert upstream(fake_anthropic) == {"model": "claude-sonnet-test", "max_tokens": 1000, "messages": HI,
                                        "top_k": 4}


def test_stream_text_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sonnet", messages=HI, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from claude-sonnet-test"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)


def test_stream_include_usage_with_cache(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="claude/cached", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (130, 3, 133)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 100
    assert all(c.usage is None for c in chunks[:-1])


def test_tools_round_trip(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    first = client.chat.completions.create(model="claude/tools", messages=HI, tools=TOOLS, tool_choice="auto")
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]  # type: ignore[union-attr]
    assert calls == [("toolu_weather01", "get_weather", {"city": "Paris"}), ("toolu_time02", "get_time", {"tz": "CET"})]
    sent = upstream(fake_anthropic)
    assert sent["tools"][0] == {"name": "get_weather", "description": "Weather of a city",
                                "input_schema": TOOLS[0]["function"]["parameters"]}
    assert sent["tool_choice"] == {"type": "auto"}

    history: list[Any] = [*HI, message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": "toolu_weather01", "content": "sunny"},
                          {"role": "tool", "tool_call_id": "toolu_time02", "content": "noon"}]
    second = client.chat.completions.create(model="claude/tools", messages=history, tools=TOOLS)
    assert second.choices[0].message.content == "Results: sunny; noon"
    assert second.choices[0].finish_reason == "stop"
    turns = upstream(fake_anthropic)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_weather01", "content": "sunny"},
                                   {"type": "tool_result", "tool_use_id": "toolu_time02", "content": "noon"}]


def test_stream_parallel_tool_calls_have_distinct_indices(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="claude/tools", messages=HI, tools=TOOLS, stream=True))
    fragments = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    by_index: dict[int, dict[str, Any]] = {}
    for frag in fragments:
        entry = by_index.setdefault(frag.index, {"ids": [], "names": [], "args": ""})
        if frag.id:
            entry["ids"].append(frag.id)
        if frag.function and frag.function.name:
            entry["names"].append(frag.function.name)
        if frag.function and frag.function.arguments:
            entry["args"] += frag.function.arguments
    # the text block is Anthropic block 0, but tool calls are numbered from 0 among themselves
    assert sorted(by_index) == [0, 1]
    assert by_index[0] == {"ids": ["toolu_weather01"], "names": ["get_weather"], "args": by_index[0]["args"]}
    assert by_index[1]["ids"] == ["toolu_time02"] and by_index[1]["names"] == ["get_time"]
    assert json.loads(by_index[0]["args"]) == {"city": "Paris"} and json.loads(by_index[1]["args"]) == {"tz": "CET"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_tool_calls_accumulate_with_sdk_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="claude/tools", messages=HI, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "CET"}')]


def test_parallel_tool_calls_false(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    completion = client.chat.completions.create(model="claude/tools", messages=HI, tools=TOOLS,
                                                parallel_tool_calls=False, tool_choice="required")
    assert len(completion.choices[0].message.tool_calls or []) == 1
    assert upstream(fake_anthropic)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_images(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])
    blocks = upstream(fake_anthropic)["messages"][0]["content"]
    assert blocks == [{"type": "text", "text": "Compare"},
                      {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                      {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


@pytest.mark.parametrize(("model", "expected"), [("stop-max_tokens", "length"), ("stop-refusal", "content_filter"),
                                                 ("stop-stop_sequence", "stop"), ("stop-pause_turn", "stop")])
def test_stop_reasons(client: openai.OpenAI, fake_anthropic: FakeAnthropic, model: str, expected: str) -> None:
    completion = client.chat.completions.create(model=f"claude/{model}", messages=HI, stop=["END"], temperature=0.2)
    assert completion.choices[0].finish_reason == expected
    assert upstream(fake_anthropic)["stop_sequences"] == ["END"]
    chunks = list(client.chat.completions.create(model=f"claude/{model}", messages=HI, stream=True))
    assert chunks[-1].choices[0].finish_reason == expected


def test_thinking_becomes_reasoning_content(client: openai.OpenAI, gateway: SwitchboardProcess) -> None:
    completion = client.chat.completions.create(model="claude/thinking", messages=HI)
    assert (completion.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."
    assert completion.choices[0].message.content == "Hello from thinking"
    chunks = list(client.chat.completions.create(model="claude/thinking", messages=HI, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    assert reasoning == "Let me think."


def test_reasoning_effort_turns_on_thinking(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    # The fake, like the API, rejects a temperature other than 1 when thinking is on.
    completion = client.chat.completions.create(model="claude/thinking", messages=HI, reasoning_effort="low",
                                                temperature=0.5, max_completion_tokens=100)
    assert (completion.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."
    sent = upstream(fake_anthropic)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent["max_tokens"] == 1124
    assert "temperature" not in sent


def test_response_format_json_schema(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    completion = client.chat.completions.create(model="sonnet", messages=HI, response_format=fmt)
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "Hello from claude-sonnet-test"}
    assert completion.choices[0].finish_reason == "stop"
    assert upstream(fake_anthropic)["tool_choice"] == {"type": "tool", "name": "json_response"}
    chunks = list(client.chat.completions.create(model="sonnet", messages=HI, response_format=fmt, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"answer": "Hello from claude-sonnet-test"}
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_overloaded_529_is_a_503(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="claude/error-529", messages=HI)
    assert info.value.status_code == 503
    assert info.value.type == "overloaded_error"
    assert "Overloaded" in info.value.message


def test_rate_limit_keeps_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="claude/error-429", messages=HI)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.type == "rate_limit_error"


@pytest.mark.parametrize(("status", "exc"), [(400, openai.BadRequestError), (401, openai.AuthenticationError),
                                             (403, openai.PermissionDeniedError), (404, openai.NotFoundError)])
def test_upstream_errors_map_to_sdk_exceptions(client: openai.OpenAI, status: int, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=f"claude/error-{status}", messages=HI)
    assert f"fake upstream error {status}" in str(info.value)


def test_upstream_rejection_is_relayed_with_its_message(client: openai.OpenAI) -> None:
    # A tool result that answers no tool call is rejected by Anthropic: the client sees that 400.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sonnet", messages=[
            *HI, {"role": "assistant", "content": "ok"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}])
    assert "unexpected `tool_use_id`" in info.value.message


def test_unsupported_parameter_is_a_400_naming_it(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    before = len(fake_anthropic.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sonnet", messages=HI, n=2)
    body: Any = info.value.body
    assert body["param"] == "n" and "'n'" in body["message"]
    assert len(fake_anthropic.requests) == before  # never sent upstream


def test_drop_unsupported(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    completion = client.chat.completions.create(model="lenient/claude-x", messages=HI, n=2, seed=3, logprobs=True,
                                                frequency_penalty=0.5)
    assert completion.choices[0].message.content == "Hello from claude-x"
    sent = fake_anthropic.last()
    assert sent["path"] == "/v1/messages"  # a base_url ending in /v1 is tolerated
    assert set(upstream(fake_anthropic)) == {"model", "messages", "max_tokens"}


def _raw_stream(gateway: SwitchboardProcess, model: str) -> tuple[int, list[str]]:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      json={"model": model, "messages": HI, "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
        return resp.status_code, lines


def test_midstream_error_event_ends_with_error_frame(gateway: SwitchboardProcess, client: openai.OpenAI) -> None:
    status, lines = _raw_stream(gateway, "claude/midstream-error")
    assert status == 200
    assert "data: [DONE]" not in lines
    assert not any(line.startswith("event:") for line in lines)
    last = json.loads(lines[-1][len("data: "):])
    assert last["error"]["type"] == "overloaded_error" and "Overloaded" in last["error"]["message"]
    first = json.loads(lines[0][len("data: "):])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="claude/midstream-error", messages=HI, stream=True))


@pytest.mark.parametrize("model", ["claude/cut", "claude/truncated"])
def test_broken_stream_is_never_a_clean_finish(gateway: SwitchboardProcess, model: str) -> None:
    status, lines = _raw_stream(gateway, model)
    assert status == 200
    assert "data: [DONE]" not in lines
    assert "error" in json.loads(lines[-1][len("data: "):])
